//! One transaction across PostgreSQL, MariaDB and SQLite: all three commit; a
//! failure injected in each of them at each phase it goes through; connections killed by
//! the server between vote and finish; no connection at all for phase two; savepoints
//! across PostgreSQL and MariaDB; many threads sharing small pools.
//!
//! Faults come from the `fault-injection` seam (`sqlassist::fault`), which makes a named
//! engine's session fail a phase before it sends any SQL; kills are real (`KILL`,
//! `pg_terminate_backend`), sent from a decision log, which the coordinator calls exactly
//! between the last vote and the first finish.

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use sqlassist::fault::{self, Phase as FaultPhase};
use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry};
use transaction::{BoxError, Branch, DecisionLog, TransactionId, TransactionManager};

use common::lite::count as sqlite_count;
use common::my::{scalar as my_count, xa_prepared};
use common::pg::{prepared as pg_prepared, scalar as pg_count};
use common::{reset_thread, unique, TempDir};

struct Urls {
    pg: String,
    pg_admin: String,
    my: String,
    my_admin: String,
}

fn urls() -> Option<Urls> {
    Some(Urls {
        pg: common::pg_url("SQLASSIST_TEST_PG_URL")?,
        pg_admin: common::pg_url("SQLASSIST_TEST_PG_ADMIN_URL")?,
        my: common::mysql_url("SQLASSIST_TEST_MYSQL_URL")?,
        my_admin: common::mysql_url("SQLASSIST_TEST_MYSQL_ADMIN_URL")?,
    })
}

fn engine_with(
    url: &str,
    f: impl FnOnce(sqlassist::EngineOptionsBuilder) -> sqlassist::EngineOptionsBuilder,
) -> Engine {
    let options = f(EngineOptions::builder(
        DatabaseUrl::parse(url).expect("a url"),
    ))
    .build()
    .expect("valid options");
    Engine::new(options).expect("an engine")
}

/// Runs `sql` as MariaDB's root, retrying while the server still attaches the branch to
/// a connection it is closing (`XAER_NOTA`).
fn my_admin_retry(admin: &str, sql: &str) {
    let mut conn = MysqlConnection::establish(admin).expect("mariadb admin");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match conn.batch_execute(sql) {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{sql}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}

/// Three managed engines, one table each: PostgreSQL (`a_pg_*`), MariaDB (`b_maria_*`)
/// and SQLite (`c_sqlite_*`, voted last as a one-phase resource anyway).
struct World {
    u: Urls,
    registry: Registry,
    pg: String,
    my: String,
    lite: String,
    table: String,
    db: PathBuf,
    _dir: TempDir,
    pg_engine: Engine,
    my_engine: Engine,
}

impl World {
    fn new(u: Urls) -> Self {
        Self::with(u, |b| b.pool_size(2), |b| b.pool_size(2))
    }

    fn with(
        u: Urls,
        pg_opts: impl FnOnce(sqlassist::EngineOptionsBuilder) -> sqlassist::EngineOptionsBuilder,
        my_opts: impl FnOnce(sqlassist::EngineOptionsBuilder) -> sqlassist::EngineOptionsBuilder,
    ) -> Self {
        Self::with_my_url(u, pg_opts, None, my_opts)
    }

    fn with_my_url(
        u: Urls,
        pg_opts: impl FnOnce(sqlassist::EngineOptionsBuilder) -> sqlassist::EngineOptionsBuilder,
        my_url: Option<&str>,
        my_opts: impl FnOnce(sqlassist::EngineOptionsBuilder) -> sqlassist::EngineOptionsBuilder,
    ) -> Self {
        reset_thread();
        let table = unique("het");
        PgConnection::establish(&u.pg)
            .unwrap()
            .batch_execute(&format!("CREATE TABLE {table} (v INT NOT NULL)"))
            .unwrap();
        MysqlConnection::establish(&u.my)
            .unwrap()
            .batch_execute(&format!(
                "CREATE TABLE {table} (v INT NOT NULL) ENGINE=InnoDB"
            ))
            .unwrap();
        let dir = TempDir::new("het");
        let db = dir.file("lite.db");
        SqliteConnection::establish(&db.display().to_string())
            .unwrap()
            .batch_execute(&format!("CREATE TABLE {table} (v INT NOT NULL)"))
            .unwrap();
        let pg = unique("a_pg");
        let my = unique("b_maria");
        let lite = unique("c_sqlite");
        let pg_engine = engine_with(&u.pg, pg_opts);
        let my_engine = engine_with(my_url.unwrap_or(&u.my), my_opts);
        let mut registry = Registry::new();
        let managed = InitOptions::new().managed(true);
        registry
            .init_engine(&pg, pg_engine.clone(), managed)
            .unwrap();
        registry
            .init_engine(&my, my_engine.clone(), managed)
            .unwrap();
        registry
            .init_engine(
                &lite,
                engine_with(&format!("sqlite:///{}", db.display()), |b| b),
                managed,
            )
            .unwrap();
        Self {
            u,
            registry,
            pg,
            my,
            lite,
            table,
            db,
            _dir: dir,
            pg_engine,
            my_engine,
        }
    }

    /// Inserts `v` through each engine named in `which`.
    fn insert(&self, which: &[&str], v: i32) {
        for name in which {
            self.registry
                .session(name)
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES ({v})", self.table))
                .unwrap();
        }
    }

    fn all(&self) -> [&str; 3] {
        [&self.pg, &self.my, &self.lite]
    }

    /// Rows in (PostgreSQL, MariaDB, SQLite).
    fn rows(&self) -> (i64, i64, i64) {
        let sql = format!("SELECT COUNT(*) FROM {}", self.table);
        (
            pg_count(&self.u.pg, &sql),
            my_count(&self.u.my, &sql),
            sqlite_count(&self.db, &self.table),
        )
    }

    fn nothing_prepared(&self) -> bool {
        pg_prepared(&self.u.pg_admin, &self.pg) == 0 && xa_prepared(&self.u.my_admin, &self.my) == 0
    }
}

impl Drop for World {
    fn drop(&mut self) {
        reset_thread();
        if let Ok(mut c) = PgConnection::establish(&self.u.pg) {
            let _ = c.batch_execute(&format!(
                "SET lock_timeout = '5s'; DROP TABLE IF EXISTS {}",
                self.table
            ));
        }
        if let Ok(mut c) = MysqlConnection::establish(&self.u.my) {
            let _ = c.batch_execute(&format!(
                "SET SESSION lock_wait_timeout = 5; DROP TABLE IF EXISTS {}",
                self.table
            ));
        }
    }
}

/// A decision log that runs an action when the decision is recorded: after every vote,
/// before any finish.
struct AtDecision {
    action: RefCell<Option<Box<dyn FnOnce()>>>,
    seen: RefCell<Vec<Vec<Branch>>>,
}

impl AtDecision {
    fn new(action: impl FnOnce() + 'static) -> Rc<Self> {
        Rc::new(Self {
            action: RefCell::new(Some(Box::new(action))),
            seen: RefCell::new(Vec::new()),
        })
    }

    fn manager(self: &Rc<Self>) -> TransactionManager {
        TransactionManager::builder()
            .decision_log(self.clone() as Rc<dyn DecisionLog>)
            .build()
    }
}

impl DecisionLog for AtDecision {
    fn record_commit(&self, _txn: TransactionId, branches: &[Branch]) -> Result<(), BoxError> {
        self.seen.borrow_mut().push(branches.to_vec());
        if let Some(action) = self.action.borrow_mut().take() {
            action();
        }
        Ok(())
    }

    fn forget(&self, _txn: TransactionId) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn one_transaction_commits_postgresql_mariadb_and_sqlite() {
    let Some(u) = urls() else { return };
    let w = World::new(u);
    let db = w.db.clone();
    let log = AtDecision::new(|| {});
    let txn = log.manager().scope(|| {
        let txn = transaction::get().unwrap();
        w.insert(&w.all(), 1);
        transaction::commit().unwrap();
        txn.id()
    });
    assert_eq!(w.rows(), (1, 1, 1));
    assert!(w.nothing_prepared());
    // SQLite, voted last after both servers prepared, carried the decision inside its own
    // commit: the log got no record, SQLite's decision table holds the branches.
    assert!(log.seen.borrow().is_empty(), "the log got a record");
    #[derive(diesel::QueryableByName)]
    struct Carried {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        sequence: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        resource: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        branch_id: Option<String>,
    }
    let branches: Vec<Carried> = diesel::sql_query(
        "SELECT sequence, resource, branch_id FROM sqlassist_decision ORDER BY branch",
    )
    .load(&mut common::lite::raw(&db))
    .unwrap();
    assert!(branches.iter().all(|b| b.sequence as u64 == txn.sequence()));
    assert_eq!(
        branches
            .iter()
            .map(|b| b.resource.as_str())
            .collect::<Vec<_>>(),
        [w.pg.as_str(), w.my.as_str()]
    );
    assert!(branches[1]
        .branch_id
        .as_deref()
        .is_some_and(|x| x.starts_with("'sqlassist_") && x.ends_with(&format!("','{}'", w.my))));
}

#[test]
fn a_failure_before_the_decision_in_any_engine_commits_nothing_anywhere() {
    let Some(u) = urls() else { return };
    let w = World::new(u);
    let mut cases = Vec::new();
    for engine in w.all() {
        cases.push((
            engine.to_owned(),
            FaultPhase::Begin,
            transaction::Phase::TpcBegin,
        ));
        cases.push((
            engine.to_owned(),
            FaultPhase::Vote,
            transaction::Phase::Vote,
        ));
    }
    for (engine, fault_phase, phase) in cases {
        w.insert(&w.all(), 1);
        let guard = fault::inject(&engine, fault_phase);
        let err = transaction::commit().expect_err("the injected fault fails the commit");
        drop(guard);
        assert!(
            !matches!(err, transaction::Error::Heuristic(_)),
            "{engine} {fault_phase:?}: nothing may commit before the decision: {err}"
        );
        assert_eq!(err.resource(), Some(engine.as_str()), "{err:?}");
        assert_eq!(err.phase(), Some(phase), "{err:?}");
        transaction::abort().unwrap();
        assert_eq!(w.rows(), (0, 0, 0), "{engine} {fault_phase:?}");
        assert!(w.nothing_prepared(), "{engine} {fault_phase:?}");
    }
    // Every session is still usable.
    w.insert(&w.all(), 2);
    transaction::commit().unwrap();
    assert_eq!(w.rows(), (1, 1, 1));
    sqlassist::close_sessions().unwrap();
    for e in [&w.pg_engine, &w.my_engine] {
        let s = e.pool_state();
        assert_eq!(s.idle, s.connections, "{s:?}");
    }
}

fn heuristic(err: transaction::Error) -> Box<transaction::HeuristicError> {
    match err {
        transaction::Error::Heuristic(h) => h,
        other => panic!("expected a heuristic outcome, got {other:?}"),
    }
}

fn in_doubt(h: &transaction::HeuristicError) -> (String, String) {
    assert_eq!(h.failed().len(), 1, "{h}");
    let (resource, source) = &h.failed()[0];
    match source.downcast_ref::<Error>() {
        Some(Error::InDoubt { engine, gid, .. }) => {
            assert_eq!(engine, resource);
            (engine.clone(), gid.clone())
        }
        other => panic!("expected InDoubt, got {other:?}"),
    }
}

#[test]
fn a_finish_failure_after_the_decision_is_a_heuristic_error_naming_who_committed() {
    let Some(u) = urls() else { return };
    let w = World::new(u);
    // PostgreSQL's phase two fails: MariaDB and SQLite committed.
    w.insert(&w.all(), 1);
    let guard = fault::inject(&w.pg, FaultPhase::Finish);
    let h = heuristic(transaction::commit().expect_err("phase two fails"));
    drop(guard);
    assert_eq!(h.committed(), [w.my.clone(), w.lite.clone()]);
    let (engine, gid) = in_doubt(&h);
    assert_eq!(engine, w.pg);
    assert_eq!(
        w.rows(),
        (0, 1, 1),
        "PostgreSQL's branch is prepared, in doubt"
    );
    assert_eq!(pg_prepared(&w.u.pg_admin, &w.pg), 1);
    // Recovery finishes it.
    PgConnection::establish(&w.u.pg)
        .unwrap()
        .batch_execute(&format!("COMMIT PREPARED '{gid}'"))
        .unwrap();
    assert_eq!(w.rows(), (1, 1, 1));
    transaction::abort().ok();
    sqlassist::close_sessions().unwrap();

    // MariaDB's phase two fails: PostgreSQL and SQLite committed. The session closes the
    // connection that held the branch (it cannot go back to the pool), which detaches
    // the branch for recovery from any connection.
    w.insert(&w.all(), 2);
    let guard = fault::inject(&w.my, FaultPhase::Finish);
    let h = heuristic(transaction::commit().expect_err("phase two fails"));
    drop(guard);
    assert_eq!(h.committed(), [w.pg.clone(), w.lite.clone()]);
    let (engine, xid) = in_doubt(&h);
    assert_eq!(engine, w.my);
    assert_eq!(w.rows(), (2, 1, 2));
    assert_eq!(xa_prepared(&w.u.my_admin, &w.my), 1);
    my_admin_retry(&w.u.my_admin, &format!("XA COMMIT {xid}"));
    assert_eq!(w.rows(), (2, 2, 2));
    assert!(w.nothing_prepared());
    transaction::abort().ok();
    sqlassist::close_sessions().unwrap();
    let s = w.my_engine.pool_state();
    assert_eq!(s.idle, s.connections, "{s:?}");
    // The pool keeps working.
    w.insert(&w.all(), 3);
    transaction::commit().unwrap();
    assert_eq!(w.rows(), (3, 3, 3));
}

#[test]
fn connections_killed_between_vote_and_finish_still_commit_through_fresh_connections() {
    let Some(u) = urls() else { return };
    let w = World::new(u);
    // The decision log's manager is this thread's only for the scope: work inside it.
    let manager = AtDecision::new(|| {}).manager();
    let (pg_pid, my_id) = manager.scope(|| {
        w.insert(&w.all(), 1);
        let pg_pid = w
            .registry
            .session(&w.pg)
            .unwrap()
            .query_i64("SELECT pg_backend_pid()")
            .unwrap();
        let my_id = w
            .registry
            .session(&w.my)
            .unwrap()
            .query_i64("SELECT CONNECTION_ID()")
            .unwrap();
        transaction::abort().unwrap();
        (pg_pid, my_id)
    });
    drop(manager);
    let (pg_admin, my_admin) = (w.u.pg_admin.clone(), w.u.my_admin.clone());
    let log = AtDecision::new(move || {
        assert_eq!(
            pg_count(&pg_admin, &format!("SELECT COUNT(*) FROM pg_terminate_backend({pg_pid}) WHERE pg_terminate_backend"),),
            1
        );
        MysqlConnection::establish(&my_admin)
            .unwrap()
            .batch_execute(&format!("KILL {my_id}"))
            .unwrap();
    });
    log.manager().scope(|| {
        w.insert(&w.all(), 1);
        transaction::commit().expect("phase two completes on fresh connections");
    });
    assert_eq!(w.rows(), (1, 1, 1));
    assert!(w.nothing_prepared());
    sqlassist::close_sessions().unwrap();
    // The dead connections were discarded; the pools keep working.
    for _ in 0..3 {
        w.insert(&w.all(), 2);
        transaction::commit().unwrap();
        sqlassist::close_sessions().unwrap();
    }
    assert_eq!(w.rows(), (4, 4, 4));
    for e in [&w.pg_engine, &w.my_engine] {
        let s = e.pool_state();
        assert!(s.connections <= 2, "{s:?}");
        assert_eq!(s.idle, s.connections, "{s:?}");
    }
}

#[test]
fn when_no_connection_can_be_had_for_phase_two_the_error_names_the_branch_in_doubt() {
    let Some(u) = urls() else { return };
    // A MariaDB account of this test's own, locked at the decision: the owner connection
    // is killed and no new one can log in.
    let user = unique("sqlassist_t");
    let my_admin = u.my_admin.clone();
    let admin = |sql: &str| {
        MysqlConnection::establish(&my_admin)
            .unwrap()
            .batch_execute(sql)
            .unwrap()
    };
    let db = u.my.rsplit('/').next().unwrap().to_owned();
    for host in ["%", "127.0.0.1", "localhost"] {
        admin(&format!(
            "CREATE USER '{user}'@'{host}' IDENTIFIED BY 'pw'; GRANT ALL ON {db}.* TO '{user}'@'{host}'"
        ));
    }
    let my_url = format!("mysql://{user}:pw@127.0.0.1:3306/{db}");
    let w = World::with_my_url(
        u,
        |b| b,
        Some(&my_url),
        |b| b.pool_size(1).pool_timeout(Duration::from_millis(500)),
    );
    let my_id = w
        .registry
        .session(&w.my)
        .unwrap()
        .query_i64("SELECT CONNECTION_ID()")
        .unwrap();
    transaction::abort().unwrap();
    let (admin_url, user2) = (w.u.my_admin.clone(), user.clone());
    let log = AtDecision::new(move || {
        let mut c = MysqlConnection::establish(&admin_url).unwrap();
        for host in ["%", "127.0.0.1", "localhost"] {
            c.batch_execute(&format!("ALTER USER '{user2}'@'{host}' ACCOUNT LOCK"))
                .unwrap();
        }
        c.batch_execute(&format!("KILL {my_id}")).unwrap();
    });
    // Without SQLite: with it, SQLite's commit would carry the decision and the log's
    // record (where the connection is cut) would not be written.
    let err = log.manager().scope(|| {
        w.insert(&[w.pg.as_str(), w.my.as_str()], 1);
        transaction::commit().expect_err("phase two cannot run")
    });
    let h = heuristic(err);
    assert_eq!(h.committed(), std::slice::from_ref(&w.pg));
    let (engine, xid) = in_doubt(&h);
    assert_eq!(engine, w.my);
    assert!(xid.contains(&w.my), "{xid}");
    assert!(h.to_string().contains(&w.my), "{h}");
    assert_eq!(w.rows(), (1, 0, 0));
    // Recovery: the branch is listed, and root commits it.
    assert_eq!(xa_prepared(&w.u.my_admin, &w.my), 1);
    my_admin_retry(&w.u.my_admin, &format!("XA COMMIT {xid}"));
    assert_eq!(w.rows(), (1, 1, 0));
    drop(w);
    for host in ["%", "127.0.0.1", "localhost"] {
        admin(&format!("DROP USER '{user}'@'{host}'"));
    }
}

#[test]
fn a_savepoint_rollback_across_postgresql_and_mariadb_keeps_only_earlier_work() {
    let Some(u) = urls() else { return };
    let w = World::new(u);
    let both = [w.pg.as_str(), w.my.as_str()];
    w.insert(&both, 1);
    let sp = transaction::savepoint(false).unwrap();
    w.insert(&both, 2);
    w.insert(&both, 3);
    sp.rollback().unwrap();
    transaction::commit().unwrap();
    let sql = |v: i32| format!("SELECT COUNT(*) FROM {} WHERE v = {v}", w.table);
    assert_eq!(pg_count(&w.u.pg, &sql(1)), 1);
    assert_eq!(my_count(&w.u.my, &sql(1)), 1);
    assert_eq!(
        w.rows(),
        (1, 1, 0),
        "only the work before the savepoint persists"
    );
    assert!(w.nothing_prepared());
}

#[test]
fn eight_threads_on_small_pools_commit_exact_counts_without_deadlock_or_leaks() {
    let Some(u) = urls() else { return };
    let w = World::with(u, |b| b.pool_size(3), |b| b.pool_size(3));
    let both = [w.pg.as_str(), w.my.as_str()];
    let deadline = Instant::now() + Duration::from_secs(3);
    let committed: i64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (registry, table) = (&w.registry, &w.table);
                s.spawn(move || {
                    let mut n = 0;
                    while Instant::now() < deadline {
                        for name in both {
                            registry
                                .session(name)
                                .unwrap()
                                .execute(&format!("INSERT INTO {table} VALUES ({t})"))
                                .unwrap();
                        }
                        transaction::commit().unwrap();
                        sqlassist::close_sessions().unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(committed > 8, "every thread made progress: {committed}");
    let (pg, my, _) = w.rows();
    assert_eq!((pg, my), (committed, committed));
    assert!(w.nothing_prepared());
    for e in [&w.pg_engine, &w.my_engine] {
        let s = e.pool_state();
        assert!(s.connections <= 3, "{s:?}");
        assert_eq!(s.idle, s.connections, "no connection leaked: {s:?}");
    }
}

#[test]
fn a_postgresql_writer_next_to_read_only_mariadb_and_sqlite_engines_commits_in_one_phase() {
    let Some(u) = urls() else { return };
    reset_thread();
    let pg_table = common::Table::pg(&u.pg, "het_one", "v INT NOT NULL");
    let my_table = common::Table::mysql(&u.my, "het_one", "v INT NOT NULL");
    let dir = TempDir::new("het-one");
    let db = dir.file("lite.db");
    common::lite::exec(&db, "CREATE TABLE t (v INT NOT NULL)");
    // The writer sorts first; the read-only engines say they are clean and vote before it.
    let pg = unique("a_pg");
    let my = unique("b_maria_ro");
    let lite = unique("c_sqlite_ro");
    let mut registry = Registry::new();
    let managed = InitOptions::new().managed(true);
    registry
        .init_engine(&pg, engine_with(&u.pg, |b| b.echo(true)), managed)
        .unwrap();
    registry
        .init_engine(
            &my,
            engine_with(&u.my, |b| b.read_only(true).echo(true)),
            managed,
        )
        .unwrap();
    registry
        .init_engine(
            &lite,
            engine_with(&format!("sqlite:///{}", db.display()), |b| {
                b.read_only(true).echo(true)
            }),
            managed,
        )
        .unwrap();
    let log = AtDecision::new(|| {});
    let sql = common::SqlCapture::default();
    sql.run(|| {
        log.manager().scope(|| {
            registry
                .session(&pg)
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES (1)", &*pg_table))
                .unwrap();
            registry
                .session(&my)
                .unwrap()
                .query_i64(&format!("SELECT COUNT(*) FROM {}", &*my_table))
                .unwrap();
            registry
                .session(&lite)
                .unwrap()
                .query_i64("SELECT COUNT(*) FROM t")
                .unwrap();
            transaction::commit().unwrap();
        })
    });
    assert!(
        log.seen.borrow().is_empty(),
        "no commit decision was needed"
    );
    let sent = sql.statements();
    assert!(
        !sent.iter().any(|s| s.contains("PREPARE")),
        "nothing was prepared: {sent:?}"
    );
    assert_eq!(
        pg_count(&u.pg, &format!("SELECT COUNT(*) FROM {}", &*pg_table)),
        1
    );
    assert_eq!(xa_prepared(&u.my_admin, &my), 0);
}
