//! Parallel phases against real servers: two PostgreSQL databases whose `PREPARE
//! TRANSACTION`s must run at the same time to succeed (a deferred trigger in each waits
//! until it sees the other's `PREPARE` in `pg_stat_activity`), a vote failure in MariaDB
//! while PostgreSQL is still preparing, and a finish failure in one database while the
//! other commits.

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use diesel::prelude::*;
use sqlassist::fault::{self, Phase as FaultPhase};
use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, NodeId, Registry};
use transaction::{Error, Phase};

use common::pg::{exec as pg_exec, prepared as pg_prepared, scalar as pg_scalar};
use common::{reset_thread, unique, Table};

fn engine(url: &str) -> Engine {
    Engine::new(EngineOptions::new(DatabaseUrl::parse(url).unwrap())).unwrap()
}

/// A node id no other test uses.
fn test_node() -> NodeId {
    NodeId::new(&unique("par").replace('_', "-")).unwrap()
}

/// A deferred constraint trigger on `table` that, at `PREPARE TRANSACTION`, waits (up to
/// 5 s) until another session of the same role is running a `PREPARE TRANSACTION` of a
/// branch of `node`, then stays 1 s so that the other sees it too; fails the statement
/// if none came.
fn meet_at_prepare(url: &str, table: &str, node: &NodeId) {
    pg_exec(
        url,
        &format!(
            "CREATE FUNCTION {table}_meet() RETURNS trigger LANGUAGE plpgsql AS $f$
             DECLARE deadline timestamptz := clock_timestamp() + interval '5 s';
             BEGIN
               LOOP
                 -- pg_stat_activity is read once per transaction unless the snapshot is
                 -- dropped.
                 PERFORM pg_stat_clear_snapshot();
                 IF EXISTS (SELECT 1 FROM pg_stat_activity
                            WHERE pid <> pg_backend_pid() AND state = 'active'
                              AND query LIKE 'PREPARE TRANSACTION ''sqlassist_{node}_%') THEN
                   PERFORM pg_sleep(1);
                   RETURN NULL;
                 END IF;
                 IF clock_timestamp() > deadline THEN
                   RAISE EXCEPTION 'no other PREPARE TRANSACTION of node {node} ran meanwhile';
                 END IF;
                 PERFORM pg_sleep(0.01);
               END LOOP;
             END $f$;
             CREATE CONSTRAINT TRIGGER {table}_meet AFTER INSERT ON {table}
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_meet();"
        ),
    );
}

fn drop_meet(url: &str, table: &str) {
    pg_exec(
        url,
        &format!("DROP FUNCTION IF EXISTS {table}_meet() CASCADE"),
    );
}

struct TwoPg {
    registry: Registry,
    node: NodeId,
    urls: [String; 2],
    tables: [Table; 2],
    names: [String; 2],
}

impl TwoPg {
    fn new() -> Option<Self> {
        let one = common::pg_url("SQLASSIST_TEST_PG_URL")?;
        let two = common::pg_url("SQLASSIST_TEST_PG_URL_2")?;
        reset_thread();
        let node = test_node();
        let mut registry = Registry::new();
        registry.set_node_id(node.clone());
        let names = [unique("par_a"), unique("par_b")];
        for (name, url) in names.iter().zip([&one, &two]) {
            registry
                .init_engine(name, engine(url), InitOptions::new().managed(true))
                .unwrap();
        }
        let tables = [
            Table::pg(&one, "parallel", "v INT NOT NULL"),
            Table::pg(&two, "parallel", "v INT NOT NULL"),
        ];
        Some(Self {
            registry,
            node,
            urls: [one, two],
            tables,
            names,
        })
    }

    fn insert(&self, v: i32) {
        for (name, table) in self.names.iter().zip(&self.tables) {
            let session = self.registry.session(name).unwrap();
            diesel::sql_query(format!("INSERT INTO {} VALUES ({v})", &**table))
                .execute(&mut *session.conn::<PgConnection>().unwrap())
                .unwrap();
        }
    }

    fn count(&self, i: usize) -> i64 {
        pg_scalar(
            &self.urls[i],
            &format!("SELECT COUNT(*) FROM {}", &*self.tables[i]),
        )
    }

    fn prepared(&self) -> i64 {
        pg_prepared(&self.urls[0], &format!("sqlassist_{}_", self.node))
    }
}

impl Drop for TwoPg {
    fn drop(&mut self) {
        let _ = sqlassist::close_sessions();
        let _ = transaction::abort();
        for (url, table) in self.urls.iter().zip(&self.tables) {
            drop_meet(url, table);
        }
    }
}

#[test]
fn the_prepares_of_two_postgresql_databases_run_at_the_same_time() {
    let Some(w) = TwoPg::new() else { return };
    for (url, table) in w.urls.iter().zip(&w.tables) {
        meet_at_prepare(url, table, &w.node);
    }
    assert!(transaction::manager().parallel_phases());
    transaction::begin().unwrap();
    w.insert(1);
    transaction::commit().unwrap();
    assert_eq!((w.count(0), w.count(1)), (1, 1));

    // The same commit one vote after the other cannot pass the triggers: the first
    // PREPARE waits in vain for the second.
    transaction::manager().set_parallel_phases(false);
    transaction::begin().unwrap();
    w.insert(2);
    let err = transaction::commit().unwrap_err();
    transaction::manager().set_parallel_phases(transaction::PARALLEL_PHASES_DEFAULT);
    assert_eq!(err.phase(), Some(Phase::Vote), "{err}");
    transaction::abort().unwrap();
    assert_eq!((w.count(0), w.count(1)), (1, 1));
    assert_eq!(w.prepared(), 0);
}

#[test]
fn a_vote_failure_in_mariadb_while_postgresql_is_still_preparing_commits_nothing() {
    let Some(pg) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    let Some(my) = common::mysql_url("SQLASSIST_TEST_MYSQL_URL") else {
        return;
    };
    let Some(my_admin) = common::mysql_url("SQLASSIST_TEST_MYSQL_ADMIN_URL") else {
        return;
    };
    reset_thread();
    let node = test_node();
    let mut registry = Registry::new();
    registry.set_node_id(node.clone());
    let (pg_name, my_name) = (unique("par_pg"), unique("par_my"));
    let managed = InitOptions::new().managed(true);
    registry
        .init_engine(&pg_name, engine(&pg), managed)
        .unwrap();
    registry
        .init_engine(&my_name, engine(&my), managed)
        .unwrap();
    let pg_table = Table::pg(&pg, "parallel", "v INT NOT NULL");
    let my_table = Table::mysql(&my, "parallel", "v INT NOT NULL");
    // PostgreSQL's PREPARE takes 0.3 s: MariaDB's vote fails meanwhile.
    pg_exec(
        &pg,
        &format!(
            "CREATE FUNCTION {t}_slow() RETURNS trigger LANGUAGE plpgsql AS $f$
             BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $f$;
             CREATE CONSTRAINT TRIGGER {t}_slow AFTER INSERT ON {t}
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {t}_slow();",
            t = &*pg_table
        ),
    );

    transaction::begin().unwrap();
    let s = registry.session(&pg_name).unwrap();
    diesel::sql_query(format!("INSERT INTO {} VALUES (1)", &*pg_table))
        .execute(&mut *s.conn::<PgConnection>().unwrap())
        .unwrap();
    let s = registry.session(&my_name).unwrap();
    diesel::sql_query(format!("INSERT INTO {} VALUES (1)", &*my_table))
        .execute(&mut *s.conn::<MysqlConnection>().unwrap())
        .unwrap();
    let fault = fault::inject(&my_name, FaultPhase::Vote);
    let err = transaction::commit().unwrap_err();
    drop(fault);
    assert!(
        matches!(&err, Error::Resource { phase: Phase::Vote, resource, .. } if *resource == my_name),
        "{err:?}"
    );
    transaction::abort().unwrap();
    sqlassist::close_sessions().unwrap();
    assert_eq!(
        pg_scalar(&pg, &format!("SELECT COUNT(*) FROM {}", &*pg_table)),
        0
    );
    assert_eq!(
        common::my::scalar(&my, &format!("SELECT COUNT(*) FROM {}", &*my_table)),
        0
    );
    let ours = format!("sqlassist_{node}_");
    assert_eq!(pg_prepared(&pg, &ours), 0);
    assert_eq!(common::my::xa_prepared(&my_admin, &ours), 0);
    pg_exec(
        &pg,
        &format!("DROP FUNCTION IF EXISTS {}_slow() CASCADE", &*pg_table),
    );
}

#[test]
fn a_finish_failure_in_one_database_while_the_other_commits_names_each() {
    let Some(w) = TwoPg::new() else { return };
    transaction::begin().unwrap();
    w.insert(1);
    let fault = fault::inject(&w.names[1], FaultPhase::Finish);
    let err = transaction::commit().unwrap_err();
    drop(fault);
    let Error::Heuristic(h) = err else {
        panic!("expected a heuristic outcome, got {err:?}")
    };
    assert_eq!(h.phase(), Phase::Finish);
    assert_eq!(h.committed(), [w.names[0].clone()]);
    let failed: Vec<&str> = h.failed().iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(failed, [w.names[1].as_str()]);
    transaction::abort().unwrap();
    assert_eq!(w.count(0), 1);
    // The failed branch is still prepared, in doubt: the test rolls it back itself.
    #[derive(QueryableByName)]
    struct Gid {
        #[diesel(sql_type = diesel::sql_types::Text)]
        gid: String,
    }
    let mut conn = PgConnection::establish(&w.urls[1]).unwrap();
    let gids: Vec<Gid> = diesel::sql_query(format!(
        "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'sqlassist_{}_%'",
        w.node
    ))
    .load(&mut conn)
    .unwrap();
    assert_eq!(gids.len(), 1);
    assert!(gids[0].gid.ends_with(&w.names[1]), "{}", gids[0].gid);
    diesel::sql_query(format!("ROLLBACK PREPARED '{}'", gids[0].gid))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(w.prepared(), 0);
}
