//! A managed SQLite writer carries the commit decision inside its own commit: against a real
//! PostgreSQL server and a real SQLite file, the decision rows are written with SQLite's
//! work, the file log gets no record, recovery commits prepared branches from those rows
//! and removes them once every branch is finished, and a writer that could lose a commit
//! on power loss (`synchronous` below `FULL`) refuses to carry.

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use sqlassist::fault::{self, Phase as FaultPhase};
use sqlassist::{
    DatabaseUrl, Engine, EngineOptions, Error, InitOptions, NodeId, RecoveryAction, Registry,
};
use transaction::FileDecisionLog;

use common::{reset_thread, unique, TempDir};

struct Setup {
    _dir: TempDir,
    pg_url: String,
    sqlite: std::path::PathBuf,
    table: String,
    pg_name: String,
    log: Arc<FileDecisionLog>,
    registry: Registry,
}

fn setup() -> Option<Setup> {
    let pg_url = common::pg_url("SQLASSIST_TEST_PG_URL")?;
    let dir = TempDir::new("carried");
    let sqlite = dir.file("lite.db");
    let table = unique("lastres_carry");
    common::pg::exec(
        &pg_url,
        &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"),
    );
    common::lite::exec(
        &sqlite,
        &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"),
    );
    let log = Arc::new(FileDecisionLog::open(dir.file("log")).unwrap());
    let mut registry = Registry::new();
    registry.set_node_id(NodeId::new(&unique("lr").replace('_', "-")).unwrap());
    registry.use_decision_log(log.clone());
    let pg_name = format!("pg_{table}");
    registry
        .init_engine(
            &pg_name,
            Engine::new(EngineOptions::new(DatabaseUrl::parse(&pg_url).unwrap())).unwrap(),
            InitOptions::new().managed(true),
        )
        .unwrap();
    let lite_url = format!("sqlite:///{}", sqlite.display());
    registry
        .init_engine(
            "lite",
            Engine::new(EngineOptions::new(DatabaseUrl::parse(&lite_url).unwrap())).unwrap(),
            InitOptions::new().managed(true),
        )
        .unwrap();
    Some(Setup {
        _dir: dir,
        pg_url,
        sqlite,
        table,
        pg_name,
        log,
        registry,
    })
}

impl Setup {
    fn insert_both(&self, id: i64) {
        let sql = format!("INSERT INTO {} (id) VALUES ({id})", self.table);
        self.registry
            .session(&self.pg_name)
            .unwrap()
            .execute(&sql)
            .unwrap();
        self.registry
            .session("lite")
            .unwrap()
            .execute(&sql)
            .unwrap();
    }

    fn counts(&self) -> (i64, i64) {
        (
            common::pg::count(&self.pg_url, &self.table),
            common::lite::count(&self.sqlite, &self.table),
        )
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        common::pg::exec(
            &self.pg_url,
            &format!("DROP TABLE IF EXISTS {}", self.table),
        );
    }
}

/// `(coordinator, sequence, resource, branch_id)` of every row of the decision table.
fn decision_rows(sqlite: &Path) -> Vec<(i64, i64, String, Option<String>)> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        coordinator: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        sequence: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        resource: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        branch_id: Option<String>,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT coordinator, sequence, resource, branch_id FROM sqlassist_decision",
    )
    .load(&mut common::lite::raw(sqlite))
    .unwrap_or_default();
    rows.into_iter()
        .map(|r| (r.coordinator, r.sequence, r.resource, r.branch_id))
        .collect()
}

#[test]
fn the_sqlite_commit_holds_the_decision_and_recovery_removes_it_once_finished() {
    reset_thread();
    let Some(s) = setup() else { return };
    s.registry.transaction_manager().scope(|| {
        let txn = transaction::begin().unwrap();
        s.insert_both(1);
        transaction::commit().unwrap();
        assert_eq!(s.counts(), (1, 1));

        // The decision is a row of SQLite's own table, naming PostgreSQL's branch; the file
        // log recorded nothing.
        let rows = decision_rows(&s.sqlite);
        assert_eq!(rows.len(), 1, "{rows:?}");
        let (coordinator, sequence, resource, branch_id) = &rows[0];
        assert_eq!(
            (*coordinator as u64, *sequence as u64),
            (txn.id().coordinator(), txn.id().sequence())
        );
        assert_eq!(resource, &s.pg_name);
        assert!(branch_id
            .as_deref()
            .is_some_and(|b| b.starts_with("sqlassist")));
        assert!(s.log.open_decisions().is_empty());
        let engine = s.registry.engine("lite").unwrap();
        assert_eq!(engine.carried_decisions().unwrap()[0].transaction, txn.id());

        // Every branch finished: recovery removes the row.
        let report = s.registry.recover().unwrap();
        assert_eq!(report.forgotten, [txn.id()]);
        assert!(decision_rows(&s.sqlite).is_empty());
        assert!(engine.carried_decisions().unwrap().is_empty());
    });
}

#[test]
fn recovery_commits_a_prepared_branch_from_the_decision_the_sqlite_commit_carried() {
    reset_thread();
    let Some(s) = setup() else { return };
    s.registry.transaction_manager().scope(|| {
        transaction::begin().unwrap();
        s.insert_both(7);
        {
            // PostgreSQL's phase two fails: its branch stays prepared, and only SQLite's
            // commit knows the transaction committed.
            let _fault = fault::inject(&s.pg_name, FaultPhase::Finish);
            let err = transaction::commit().unwrap_err();
            assert!(err.is_heuristic(), "{err:?}");
        }
        transaction::abort().unwrap();
        assert_eq!(s.counts(), (0, 1));
        assert!(s.log.open_decisions().is_empty());
        assert_eq!(decision_rows(&s.sqlite).len(), 1);

        let report = s.registry.recover().unwrap();
        let committed: Vec<&str> = report
            .branches
            .iter()
            .filter(|b| matches!(b.action, RecoveryAction::Committed(_)))
            .map(|b| b.engine.as_str())
            .collect();
        assert_eq!(committed, [s.pg_name.as_str()], "{report:?}");
        assert_eq!(s.counts(), (1, 1));
        // The decision was durable before the pass listed the branch: finished, removed.
        assert_eq!(report.forgotten.len(), 1);
        assert!(decision_rows(&s.sqlite).is_empty());
    });
}

#[test]
fn a_sqlite_writer_below_synchronous_full_refuses_to_carry_and_nothing_commits() {
    reset_thread();
    let Some(s) = setup() else { return };
    s.registry.transaction_manager().scope(|| {
        transaction::begin().unwrap();
        // The safety level cannot change inside a transaction: step out of the session's
        // transaction and back in behind Diesel's back, as a careless application could.
        let lite = s.registry.session("lite").unwrap();
        lite.conn::<diesel::SqliteConnection>()
            .unwrap()
            .batch_execute("COMMIT; PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE")
            .unwrap();
        s.insert_both(3);
        let err = transaction::commit().unwrap_err();
        let transaction::Error::Resource { source, .. } = &err else {
            panic!("expected the SQLite vote to fail: {err:?}");
        };
        let not_durable = source.downcast_ref::<Error>();
        assert!(
            matches!(
                not_durable,
                Some(Error::SqliteNotDurable { engine, synchronous: 1 }) if engine == "lite"
            ),
            "{err:?}"
        );
        transaction::abort().unwrap();
        assert_eq!(s.counts(), (0, 0));
        assert!(decision_rows(&s.sqlite).is_empty());
        assert!(s
            .registry
            .recover()
            .unwrap()
            .branches
            .iter()
            .all(|b| b.branch_id().is_none()));
    });
}

#[test]
fn a_lone_sqlite_writer_or_a_read_only_company_writes_no_decision() {
    reset_thread();
    let Some(s) = setup() else { return };
    s.registry.transaction_manager().scope(|| {
        transaction::begin().unwrap();
        s.registry
            .session("lite")
            .unwrap()
            .execute(&format!("INSERT INTO {} (id) VALUES (5)", s.table))
            .unwrap();
        s.registry
            .session(&s.pg_name)
            .unwrap()
            .query_i64("SELECT 1")
            .unwrap();
        transaction::commit().unwrap();
        assert_eq!(s.counts(), (0, 1));
        assert!(decision_rows(&s.sqlite).is_empty());
    });
}
