//! A web handler's scenario in pyramid_sqlassist's style against real PostgreSQL, plus
//! two-phase commit behaviour: one-phase commit for a lone engine, read-only
//! votes, a failure at PREPARE, PostgreSQL next to SQLite, savepoints, retries of
//! serialization failures, and transactions ended or broken behind the session's back.
//!
//! URLs come from `SQLASSIST_TEST_PG_URL`, `SQLASSIST_TEST_PG_URL_2`,
//! `SQLASSIST_TEST_PG_READER_URL` and `SQLASSIST_TEST_PG_ADMIN_URL` (see
//! `docs/testing.md`); without them the tests skip, or fail when servers are required
//! (see `tests/common/mod.rs`). Every test creates its own tables with unique names and
//! drops them at the end; what persisted is checked through separate plain connections,
//! and `pg_prepared_xacts` (as the superuser) shows whether a branch was left prepared.

mod common;

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, InitOptions, IsolationLevel, Registry};
use transaction::{BoxError, Branch, DecisionLog, TransactionId, TransactionManager};

use common::lite::{count as sqlite_count, raw as raw_sqlite};
use common::pg::{self, names, prepared as prepared_count, raw, scalar};
use common::{reset_thread, unique, Table, TempDir};

/// The URLs a test needs, or `None` when it skips.
macro_rules! urls {
    ($($var:literal),+) => {
        ($(match common::pg_url($var) { Some(u) => u, None => return },)+)
    };
}

fn engine(url: &str) -> Engine {
    engine_with(url, |b| b)
}

fn engine_with(
    url: &str,
    f: impl FnOnce(sqlassist::EngineOptionsBuilder) -> sqlassist::EngineOptionsBuilder,
) -> Engine {
    let options = f(EngineOptions::builder(
        DatabaseUrl::parse(url).expect("a valid postgres url"),
    ))
    .pool_size(2)
    .build()
    .expect("valid options");
    Engine::new(options).expect("an engine")
}

/// A decision log that, when the coordinator records its decision (every branch voted,
/// none finished), notes the branches and how many of them PostgreSQL lists as prepared.
struct Probe {
    admin: String,
    /// Engine names whose branches are counted in `pg_prepared_xacts`.
    needles: Vec<String>,
    seen: RefCell<Vec<Seen>>,
}

#[derive(Debug)]
struct Seen {
    resources: Vec<String>,
    prepared_in_pg: i64,
}

impl Probe {
    fn new(admin: &str, needles: &[&str]) -> Rc<Self> {
        Rc::new(Self {
            admin: admin.to_owned(),
            needles: needles.iter().map(|n| (*n).to_owned()).collect(),
            seen: RefCell::new(Vec::new()),
        })
    }

    fn manager(self: &Rc<Self>) -> TransactionManager {
        TransactionManager::builder()
            .decision_log(self.clone() as Rc<dyn DecisionLog>)
            .build()
    }
}

impl DecisionLog for Probe {
    fn record_commit(&self, _txn: TransactionId, branches: &[Branch]) -> Result<(), BoxError> {
        self.seen.borrow_mut().push(Seen {
            resources: branches.iter().map(|b| b.resource.clone()).collect(),
            prepared_in_pg: self
                .needles
                .iter()
                .map(|n| prepared_count(&self.admin, n))
                .sum(),
        });
        Ok(())
    }

    fn forget(&self, _txn: TransactionId) -> Result<(), BoxError> {
        Ok(())
    }
}

/// The `sqlassist::Error` inside a failed `transaction::commit()`.
fn resource_error(err: &transaction::Error) -> &Error {
    match err {
        transaction::Error::Resource { source, .. } => source
            .downcast_ref::<Error>()
            .unwrap_or_else(|| panic!("not a sqlassist error: {err:?}")),
        other => panic!("expected a resource error, got {other:?}"),
    }
}

// --- the handler scenario -----------------------------------------------------------

#[test]
fn reader_role_queries_work_insert_is_denied_and_reader_stays_usable_after_rollback() {
    let (url, reader_url) = urls!("SQLASSIST_TEST_PG_URL", "SQLASSIST_TEST_PG_READER_URL");
    reset_thread();
    let table = Table::pg(&url, "s1", "name TEXT NOT NULL");
    raw(&url)
        .batch_execute(&format!("INSERT INTO {} VALUES ('seed')", &*table))
        .unwrap();
    let mut registry = Registry::new();
    registry
        .init_engine(
            "reader",
            engine(&reader_url),
            InitOptions::new().default_engine(true),
        )
        .unwrap();
    let reader = registry.default_session().unwrap();

    let count_sql = format!("SELECT COUNT(*) FROM {}", &*table);
    assert_eq!(reader.query_i64(&count_sql).unwrap(), 1);
    let err = reader
        .execute(&format!("INSERT INTO {} VALUES ('Test Case 1')", &*table))
        .expect_err("the reader role may not insert");
    match &err {
        Error::Database {
            source: DieselError::DatabaseError(_, info),
            ..
        } => assert!(
            info.message().contains("permission denied"),
            "expected PostgreSQL's permission error, got {err}"
        ),
        other => panic!("expected a database error, got {other:?}"),
    }
    reader.rollback().unwrap();
    assert_eq!(
        reader.query_i64(&count_sql).unwrap(),
        1,
        "the reader is usable"
    );
    reader.rollback().unwrap();
    assert_eq!(names(&url, &table), ["seed"]);
}

#[test]
fn read_only_engine_on_the_writer_url_fails_writes_with_read_only_transaction() {
    let (url,) = urls!("SQLASSIST_TEST_PG_URL");
    reset_thread();
    let table = Table::pg(&url, "s1ro", "name TEXT NOT NULL");
    let mut registry = Registry::new();
    registry
        .init_engine(
            "reader",
            engine_with(&url, |b| b.read_only(true)),
            InitOptions::new(),
        )
        .unwrap();
    let reader = registry.session("reader").unwrap();
    let count_sql = format!("SELECT COUNT(*) FROM {}", &*table);
    assert_eq!(reader.query_i64(&count_sql).unwrap(), 0);
    let err = reader
        .execute(&format!("INSERT INTO {} VALUES ('x')", &*table))
        .expect_err("a read-only engine may not insert");
    assert!(
        matches!(
            err,
            Error::Database {
                source: DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _),
                ..
            }
        ),
        "expected SQLSTATE 25006 (ReadOnlyTransaction), got {err:?}"
    );
    reader.rollback().unwrap();
    assert_eq!(reader.query_i64(&count_sql).unwrap(), 0);
    reader.rollback().unwrap();
}

#[test]
fn managed_writer_insert_persists_after_transaction_commit() {
    let (url,) = urls!("SQLASSIST_TEST_PG_URL");
    reset_thread();
    let table = Table::pg(&url, "s2", "name TEXT NOT NULL");
    let mut registry = Registry::new();
    registry
        .init_engine("writer", engine(&url), InitOptions::new().managed(true))
        .unwrap();
    let writer = registry.session("writer").unwrap();
    writer
        .execute(&format!("INSERT INTO {} VALUES ('Test Case 2')", &*table))
        .unwrap();
    assert!(names(&url, &table).is_empty(), "not committed yet");
    transaction::commit().unwrap();
    assert_eq!(names(&url, &table), ["Test Case 2"]);
}

struct TwoWriters {
    registry: Registry,
    w1: String,
    w2: String,
    t1: Table,
    t2: Table,
}

fn two_writers(url1: &str, url2: &str, columns2: &str) -> TwoWriters {
    let t1 = Table::pg(url1, "w1", "name TEXT PRIMARY KEY");
    let t2 = Table::pg(url2, "w2", columns2);
    // Engine names sort writer1 before writer2, so writer2 votes last.
    let w1 = unique("a_writer1");
    let w2 = unique("b_writer2");
    let mut registry = Registry::new();
    registry
        .init_engine(&w1, engine(url1), InitOptions::new().managed(true))
        .expect("a new name");
    registry
        .init_engine(&w2, engine(url2), InitOptions::new().managed(true))
        .expect("a new name");
    TwoWriters {
        registry,
        w1,
        w2,
        t1,
        t2,
    }
}

#[test]
fn managed_commit_is_refused_and_transaction_commit_persists_both_writers_in_two_phases() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_PG_URL",
        "SQLASSIST_TEST_PG_URL_2",
        "SQLASSIST_TEST_PG_ADMIN_URL"
    );
    reset_thread();
    let tw = two_writers(&url1, &url2, "name TEXT PRIMARY KEY");
    let probe = Probe::new(&admin, &[&tw.w1, &tw.w2]);
    probe.manager().scope(|| {
        let writer1 = tw.registry.session(&tw.w1).unwrap();
        let writer2 = tw.registry.session(&tw.w2).unwrap();
        writer1
            .execute(&format!("INSERT INTO {} VALUES ('object1')", &*tw.t1))
            .unwrap();
        match writer1.commit() {
            Err(Error::CommitThroughTransactionManager { engine }) => assert_eq!(engine, tw.w1),
            other => panic!("expected CommitThroughTransactionManager, got {other:?}"),
        }
        assert!(writer1.in_transaction(), "the work stays pending");
        writer2
            .execute(&format!("INSERT INTO {} VALUES ('object2')", &*tw.t2))
            .unwrap();
        transaction::commit().unwrap();
    });
    assert_eq!(names(&url1, &tw.t1), ["object1"]);
    assert_eq!(names(&url2, &tw.t2), ["object2"]);
    let seen = probe.seen.borrow();
    assert_eq!(seen.len(), 1, "the decision was recorded once: {seen:?}");
    assert_eq!(seen[0].resources, [tw.w1.clone(), tw.w2.clone()]);
    assert_eq!(
        seen[0].prepared_in_pg, 2,
        "both branches were prepared: {seen:?}"
    );
    assert_eq!(prepared_count(&admin, &tw.w1), 0);
    assert_eq!(prepared_count(&admin, &tw.w2), 0);
}

#[test]
fn both_branches_are_prepared_when_the_decision_is_recorded() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_PG_URL",
        "SQLASSIST_TEST_PG_URL_2",
        "SQLASSIST_TEST_PG_ADMIN_URL"
    );
    reset_thread();
    let tw = two_writers(&url1, &url2, "name TEXT PRIMARY KEY");
    let probe = Probe::new(&admin, &[&tw.w1, &tw.w2]);
    probe.manager().scope(|| {
        for (name, table) in [(&tw.w1, &tw.t1), (&tw.w2, &tw.t2)] {
            tw.registry
                .session(name)
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES ('x')", &**table))
                .unwrap();
        }
        transaction::commit().unwrap();
    });
    let seen = probe.seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].prepared_in_pg, 2,
        "both branches were listed in pg_prepared_xacts at decision time"
    );
    assert_eq!(prepared_count(&admin, &tw.w1), 0, "and finished afterwards");
    assert_eq!(prepared_count(&admin, &tw.w2), 0, "and finished afterwards");
    assert_eq!(names(&url1, &tw.t1), ["x"]);
    assert_eq!(names(&url2, &tw.t2), ["x"]);
}

#[test]
fn rollback_after_refused_commit_discards_writer1_and_transaction_commit_keeps_writer2() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_PG_URL",
        "SQLASSIST_TEST_PG_URL_2",
        "SQLASSIST_TEST_PG_ADMIN_URL"
    );
    reset_thread();
    let tw = two_writers(&url1, &url2, "name TEXT PRIMARY KEY");
    let writer1 = tw.registry.session(&tw.w1).unwrap();
    let writer2 = tw.registry.session(&tw.w2).unwrap();
    writer1
        .execute(&format!("INSERT INTO {} VALUES ('object1')", &*tw.t1))
        .unwrap();
    assert!(matches!(
        writer1.commit(),
        Err(Error::CommitThroughTransactionManager { .. })
    ));
    writer1.rollback().unwrap();
    writer2
        .execute(&format!("INSERT INTO {} VALUES ('object2')", &*tw.t2))
        .unwrap();
    transaction::commit().unwrap();
    assert!(names(&url1, &tw.t1).is_empty());
    assert_eq!(names(&url2, &tw.t2), ["object2"]);
    assert_eq!(prepared_count(&admin, &tw.w1), 0);
    assert_eq!(prepared_count(&admin, &tw.w2), 0);
    // writer1 stays usable in the next transaction.
    writer1
        .execute(&format!("INSERT INTO {} VALUES ('later')", &*tw.t1))
        .unwrap();
    transaction::commit().unwrap();
    assert_eq!(names(&url1, &tw.t1), ["later"]);
}

#[test]
fn abort_after_a_failure_persists_nothing_from_any_managed_engine() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_PG_URL",
        "SQLASSIST_TEST_PG_URL_2",
        "SQLASSIST_TEST_PG_ADMIN_URL"
    );
    reset_thread();
    let tw = two_writers(&url1, &url2, "name TEXT PRIMARY KEY");
    raw(&url2)
        .batch_execute(&format!("INSERT INTO {} VALUES ('taken')", &*tw.t2))
        .unwrap();
    let writer1 = tw.registry.session(&tw.w1).unwrap();
    let writer2 = tw.registry.session(&tw.w2).unwrap();
    writer1
        .execute(&format!("INSERT INTO {} VALUES ('object1')", &*tw.t1))
        .unwrap();
    writer2
        .execute(&format!("INSERT INTO {} VALUES ('object2')", &*tw.t2))
        .unwrap();
    writer2
        .execute(&format!("INSERT INTO {} VALUES ('taken')", &*tw.t2))
        .expect_err("duplicate key");
    transaction::abort().unwrap();
    assert!(names(&url1, &tw.t1).is_empty());
    assert_eq!(names(&url2, &tw.t2), ["taken"]);
    assert_eq!(prepared_count(&admin, &tw.w1), 0);
    assert_eq!(prepared_count(&admin, &tw.w2), 0);
}

#[test]
fn a_failure_at_prepare_in_the_second_database_commits_neither_and_leaves_nothing_prepared() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_PG_URL",
        "SQLASSIST_TEST_PG_URL_2",
        "SQLASSIST_TEST_PG_ADMIN_URL"
    );
    reset_thread();
    let tw = two_writers(
        &url1,
        &url2,
        "name TEXT, CONSTRAINT one_name UNIQUE (name) DEFERRABLE INITIALLY DEFERRED",
    );
    let writer1 = tw.registry.session(&tw.w1).unwrap();
    let writer2 = tw.registry.session(&tw.w2).unwrap();
    writer1
        .execute(&format!("INSERT INTO {} VALUES ('object1')", &*tw.t1))
        .unwrap();
    // Both inserts succeed: the unique check is deferred to PREPARE TRANSACTION.
    writer2
        .execute(&format!("INSERT INTO {} VALUES ('dup'), ('dup')", &*tw.t2))
        .unwrap();
    let err = transaction::commit().expect_err("the deferred constraint fails at PREPARE");
    assert_eq!(err.phase(), Some(transaction::Phase::Vote), "{err:?}");
    assert_eq!(err.resource(), Some(tw.w2.as_str()), "{err:?}");
    match resource_error(&err) {
        Error::Database {
            source: DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _),
            ..
        } => {}
        other => panic!("expected the unique violation, got {other:?}"),
    }
    transaction::abort().unwrap();
    assert!(names(&url1, &tw.t1).is_empty(), "writer1 was rolled back");
    assert!(names(&url2, &tw.t2).is_empty(), "writer2 was rolled back");
    assert_eq!(
        prepared_count(&admin, &tw.w1),
        0,
        "writer1's branch was rolled back"
    );
    assert_eq!(prepared_count(&admin, &tw.w2), 0);
}

fn sqlite_writer(db: &Path, busy_ms: u64) -> Engine {
    let options = EngineOptions::builder(
        DatabaseUrl::parse(&format!("sqlite:///{}", db.display())).expect("a sqlite url"),
    )
    .busy_timeout(std::time::Duration::from_millis(busy_ms))
    .build()
    .expect("valid options");
    Engine::new(options).expect("an engine")
}

#[test]
fn sqlite_commits_last_while_postgresql_is_prepared_and_both_persist() {
    let (url, admin) = urls!("SQLASSIST_TEST_PG_URL", "SQLASSIST_TEST_PG_ADMIN_URL");
    reset_thread();
    let table = Table::pg(&url, "s7", "name TEXT NOT NULL");
    let dir = TempDir::new("s7");
    let db = dir.file("embedded.db");
    raw_sqlite(&db)
        .batch_execute("CREATE TABLE t (name TEXT)")
        .unwrap();
    // The SQLite engine's name sorts first: one-phase resources go last regardless.
    let pg = unique("z_pg");
    let mut registry = Registry::new();
    registry
        .init_engine(&pg, engine(&url), InitOptions::new().managed(true))
        .unwrap();
    registry
        .init_engine(
            "a_sqlite",
            sqlite_writer(&db, 5000),
            InitOptions::new().managed(true),
        )
        .unwrap();
    let probe = Probe::new(&admin, &[&pg]);
    probe.manager().scope(|| {
        registry
            .session(&pg)
            .unwrap()
            .execute(&format!("INSERT INTO {} VALUES ('pg')", &*table))
            .unwrap();
        registry
            .session("a_sqlite")
            .unwrap()
            .execute("INSERT INTO t VALUES ('sqlite')")
            .unwrap();
        transaction::commit().unwrap();
    });
    // SQLite, voted last once PostgreSQL prepared, carried the decision inside its own
    // commit: the log got no record, SQLite's decision table names PostgreSQL's branch.
    assert!(probe.seen.borrow().is_empty());
    let carried = registry
        .engine("a_sqlite")
        .unwrap()
        .carried_decisions()
        .unwrap();
    assert_eq!(carried.len(), 1);
    let resources: Vec<&str> = carried[0]
        .branches
        .iter()
        .map(|b| b.resource.as_str())
        .collect();
    assert_eq!(resources, [pg.as_str()], "only PostgreSQL prepared");
    assert_eq!(sqlite_count(&db, "t"), 1);
    assert_eq!(names(&url, &table), ["pg"]);
    assert_eq!(prepared_count(&admin, &pg), 0);
}

#[test]
fn a_failed_sqlite_commit_rolls_postgresql_back_and_leaves_nothing_prepared() {
    let (url, admin) = urls!("SQLASSIST_TEST_PG_URL", "SQLASSIST_TEST_PG_ADMIN_URL");
    reset_thread();
    let table = Table::pg(&url, "s7f", "name TEXT NOT NULL");
    let dir = TempDir::new("s7f");
    let db = dir.file("embedded.db");
    raw_sqlite(&db)
        .batch_execute("CREATE TABLE t (name TEXT)")
        .unwrap();
    let pg = unique("pg");
    let mut registry = Registry::new();
    registry
        .init_engine(&pg, engine(&url), InitOptions::new().managed(true))
        .unwrap();
    registry
        .init_engine(
            "sqlite",
            sqlite_writer(&db, 100),
            InitOptions::new().managed(true),
        )
        .unwrap();
    registry
        .session(&pg)
        .unwrap()
        .execute(&format!("INSERT INTO {} VALUES ('pg')", &*table))
        .unwrap();
    registry
        .session("sqlite")
        .unwrap()
        .execute("INSERT INTO t VALUES ('sqlite')")
        .unwrap();
    // Another connection's read transaction holds a shared lock, so SQLite's COMMIT cannot
    // take its exclusive lock (rollback-journal mode) and fails after the busy timeout:
    // a failure of the COMMIT itself, after PostgreSQL has prepared.
    let mut blocker = raw_sqlite(&db);
    blocker
        .batch_execute("BEGIN; SELECT COUNT(*) FROM t;")
        .unwrap();
    let err = transaction::commit().expect_err("SQLite's commit fails");
    assert_eq!(err.resource(), Some("sqlite"), "{err:?}");
    transaction::abort().unwrap();
    blocker.batch_execute("ROLLBACK").unwrap();
    assert!(names(&url, &table).is_empty(), "PostgreSQL was rolled back");
    assert_eq!(
        prepared_count(&admin, &pg),
        0,
        "no prepared transaction is left"
    );
    let rows = sqlite_count(&db, "t");
    assert_eq!(rows, 0);
}

// --- two-phase commit details --------------------------------------------------------

#[test]
fn a_lone_managed_engine_commits_in_one_phase_without_preparing() {
    let (url, admin) = urls!("SQLASSIST_TEST_PG_URL", "SQLASSIST_TEST_PG_ADMIN_URL");
    reset_thread();
    let table = Table::pg(&url, "one", "name TEXT NOT NULL");
    let name = unique("lone");
    let mut registry = Registry::new();
    registry
        .init_engine(&name, engine(&url), InitOptions::new().managed(true))
        .unwrap();
    let probe = Probe::new(&admin, &[&name]);
    let prepared_at_hook = Rc::new(Cell::new(-1));
    probe.manager().scope(|| {
        registry
            .session(&name)
            .unwrap()
            .execute(&format!("INSERT INTO {} VALUES ('x')", &*table))
            .unwrap();
        let txn = transaction::get().unwrap();
        let (seen, admin, needle) = (prepared_at_hook.clone(), admin.clone(), name.clone());
        txn.add_after_commit_hook(move |_, ok| {
            assert!(ok);
            seen.set(prepared_count(&admin, &needle));
            Ok(())
        });
        transaction::commit().unwrap();
    });
    assert!(
        probe.seen.borrow().is_empty(),
        "no decision was recorded: nothing was prepared"
    );
    assert_eq!(prepared_at_hook.get(), 0);
    assert_eq!(names(&url, &table), ["x"]);
}

#[test]
fn a_managed_session_that_only_selects_votes_read_only_next_to_a_writer() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_PG_URL",
        "SQLASSIST_TEST_PG_URL_2",
        "SQLASSIST_TEST_PG_ADMIN_URL"
    );
    reset_thread();
    let written = Table::pg(&url1, "ro_w", "name TEXT NOT NULL");
    let read = Table::pg(&url2, "ro_r", "name TEXT NOT NULL");
    // The writer sorts first; the selector, which only read, is asked first and votes
    // read-only, so the writer commits alone in one phase.
    let writer = unique("a_writer");
    let selector = unique("b_selector");
    let mut registry = Registry::new();
    registry
        .init_engine(&writer, engine(&url1), InitOptions::new().managed(true))
        .unwrap();
    registry
        .init_engine(&selector, engine(&url2), InitOptions::new().managed(true))
        .unwrap();
    let probe = Probe::new(&admin, &[&selector]);
    probe.manager().scope(|| {
        registry
            .session(&writer)
            .unwrap()
            .execute(&format!("INSERT INTO {} VALUES ('x')", &*written))
            .unwrap();
        let n = registry
            .session(&selector)
            .unwrap()
            .query_i64(&format!("SELECT COUNT(*) FROM {}", &*read))
            .unwrap();
        assert_eq!(n, 0);
        transaction::commit().unwrap();
    });
    let seen = probe.seen.borrow();
    assert!(
        seen.is_empty(),
        "the selector voted read-only and no decision was needed: {seen:?}"
    );
    assert_eq!(prepared_count(&admin, &selector), 0);
    assert_eq!(names(&url1, &written), ["x"]);
    assert_eq!(prepared_count(&admin, &writer), 0);
}

#[test]
fn unmanaged_session_commits_and_rolls_back_on_its_own_whatever_abort_does() {
    let (url,) = urls!("SQLASSIST_TEST_PG_URL");
    reset_thread();
    let table = Table::pg(&url, "log", "name TEXT NOT NULL");
    let mut registry = Registry::new();
    registry
        .init_engine("log", engine(&url), InitOptions::new())
        .unwrap();
    let log = registry.session("log").unwrap();
    log.execute(&format!("INSERT INTO {} VALUES ('committed')", &*table))
        .unwrap();
    log.commit().unwrap();
    log.execute(&format!("INSERT INTO {} VALUES ('pending')", &*table))
        .unwrap();
    transaction::abort().unwrap();
    assert!(log.in_transaction(), "abort() leaves unmanaged work alone");
    log.commit().unwrap();
    log.execute(&format!("INSERT INTO {} VALUES ('rolled back')", &*table))
        .unwrap();
    transaction::commit().unwrap();
    assert!(log.in_transaction(), "commit() leaves unmanaged work alone");
    log.rollback().unwrap();
    assert_eq!(names(&url, &table), ["committed", "pending"]);
}

#[test]
fn close_sessions_rolls_back_unmanaged_work_and_returns_every_connection() {
    let (url,) = urls!("SQLASSIST_TEST_PG_URL");
    reset_thread();
    let table = Table::pg(&url, "close", "name TEXT NOT NULL");
    let log_engine = engine(&url);
    let writer_engine = engine(&url);
    let mut registry = Registry::new();
    registry
        .init_engine("log", log_engine.clone(), InitOptions::new())
        .unwrap();
    registry
        .init_engine(
            "writer",
            writer_engine.clone(),
            InitOptions::new().managed(true),
        )
        .unwrap();
    registry
        .session("log")
        .unwrap()
        .execute(&format!(
            "INSERT INTO {} VALUES ('never committed')",
            &*table
        ))
        .unwrap();
    registry
        .session("writer")
        .unwrap()
        .execute(&format!("SELECT COUNT(*) FROM {}", &*table))
        .unwrap();
    transaction::commit().unwrap();
    sqlassist::close_sessions().unwrap();
    assert_eq!(sqlassist::open_sessions(), 0);
    for engine in [&log_engine, &writer_engine] {
        let state = engine.pool_state();
        assert!(state.connections >= 1, "{state:?}");
        assert_eq!(
            state.idle, state.connections,
            "every connection is back: {state:?}"
        );
    }
    assert!(
        names(&url, &table).is_empty(),
        "uncommitted work was rolled back"
    );
    // The connection went back without a transaction open: it is reused and works.
    let log = registry.session("log").unwrap();
    log.execute(&format!("INSERT INTO {} VALUES ('second')", &*table))
        .unwrap();
    log.commit().unwrap();
    assert_eq!(names(&url, &table), ["second"]);
}

#[test]
fn nested_diesel_transaction_inside_a_session_is_a_savepoint() {
    let (url,) = urls!("SQLASSIST_TEST_PG_URL");
    reset_thread();
    let table = Table::pg(&url, "nested", "name TEXT NOT NULL");
    let mut registry = Registry::new();
    registry
        .init_engine("writer", engine(&url), InitOptions::new().managed(true))
        .unwrap();
    let writer = registry.session("writer").unwrap();
    {
        let mut conn = writer.conn::<PgConnection>().unwrap();
        diesel::sql_query(format!("INSERT INTO {} VALUES ('outer')", &*table))
            .execute(&mut *conn)
            .unwrap();
        let inner = conn.transaction::<(), DieselError, _>(|c| {
            diesel::sql_query(format!("INSERT INTO {} VALUES ('inner')", &*table)).execute(c)?;
            // A failing statement inside the savepoint does not doom the outer transaction.
            diesel::sql_query("SELECT * FROM no_such_table_sqlassist").execute(c)?;
            Ok(())
        });
        assert!(inner.is_err());
        conn.transaction::<_, DieselError, _>(|c| {
            diesel::sql_query(format!("INSERT INTO {} VALUES ('kept')", &*table)).execute(c)
        })
        .unwrap();
    }
    assert!(names(&url, &table).is_empty());
    transaction::commit().unwrap();
    assert_eq!(names(&url, &table), ["kept", "outer"]);
}

#[test]
fn transaction_savepoint_rolls_back_both_postgresql_engines() {
    let (url1, url2) = urls!("SQLASSIST_TEST_PG_URL", "SQLASSIST_TEST_PG_URL_2");
    reset_thread();
    let tw = two_writers(&url1, &url2, "name TEXT PRIMARY KEY");
    let writer1 = tw.registry.session(&tw.w1).unwrap();
    let writer2 = tw.registry.session(&tw.w2).unwrap();
    writer1
        .execute(&format!("INSERT INTO {} VALUES ('before')", &*tw.t1))
        .unwrap();
    writer2
        .execute(&format!("INSERT INTO {} VALUES ('before')", &*tw.t2))
        .unwrap();
    let sp = transaction::savepoint(false).unwrap();
    writer1
        .execute(&format!("INSERT INTO {} VALUES ('after')", &*tw.t1))
        .unwrap();
    writer2
        .execute(&format!("INSERT INTO {} VALUES ('after')", &*tw.t2))
        .unwrap();
    sp.rollback().unwrap();
    writer2
        .execute(&format!("INSERT INTO {} VALUES ('again')", &*tw.t2))
        .unwrap();
    transaction::commit().unwrap();
    assert_eq!(names(&url1, &tw.t1), ["before"]);
    assert_eq!(names(&url2, &tw.t2), ["again", "before"]);
}

#[test]
fn a_serialization_failure_is_transient_and_retried_by_transaction_run() {
    let (url,) = urls!("SQLASSIST_TEST_PG_URL");
    reset_thread();
    let table = Table::pg(&url, "ser", "id INT PRIMARY KEY, v INT NOT NULL");
    raw(&url)
        .batch_execute(&format!("INSERT INTO {} VALUES (1, 0)", &*table))
        .unwrap();
    let mut registry = Registry::new();
    registry
        .init_engine(
            "writer",
            engine_with(&url, |b| b.isolation_level(IsolationLevel::Serializable)),
            InitOptions::new().managed(true),
        )
        .unwrap();
    let attempts = Cell::new(0);
    let first_error_was_transient = Cell::new(None);
    let value = transaction::run(3, |_txn| -> Result<i64, Error> {
        attempts.set(attempts.get() + 1);
        let writer = registry.session("writer")?;
        let v = writer.query_i64(&format!("SELECT v FROM {} WHERE id = 1", &*table))?;
        if attempts.get() == 1 {
            // Another transaction (another client) updates the row after this
            // transaction's snapshot was taken: this one's update must fail with 40001.
            raw(&url)
                .batch_execute(&format!("UPDATE {} SET v = v + 100 WHERE id = 1", &*table))
                .unwrap();
        }
        let outcome = writer.execute(&format!("UPDATE {} SET v = v + 1 WHERE id = 1", &*table));
        if let Err(e) = &outcome {
            first_error_was_transient.set(Some(e.is_transient()));
        }
        outcome?;
        Ok(v)
    })
    .unwrap();
    assert_eq!(attempts.get(), 2, "one retry");
    assert_eq!(first_error_was_transient.get(), Some(true));
    assert_eq!(value, 100, "the retry saw the other transaction's update");
    assert_eq!(
        scalar(&url, &format!("SELECT v FROM {} WHERE id = 1", &*table)),
        101
    );
}

#[test]
fn a_raw_commit_or_rollback_in_a_managed_session_fails_the_next_statement_and_dooms_the_transaction(
) {
    let (url1, url2) = urls!("SQLASSIST_TEST_PG_URL", "SQLASSIST_TEST_PG_URL_2");
    reset_thread();
    // Alone and next to another engine; through the session and through a connection
    // guard; with a statement after it, or straight to the commit.
    for raw_end in ["COMMIT", "ROLLBACK"] {
        for with_second in [false, true] {
            for via_guard in [false, true] {
                for next_statement in [true, false] {
                    let case = format!("{raw_end} with_second={with_second} via_guard={via_guard} next_statement={next_statement}");
                    let tw = two_writers(&url1, &url2, "name TEXT PRIMARY KEY");
                    let writer1 = tw.registry.session(&tw.w1).unwrap();
                    writer1
                        .execute(&format!("INSERT INTO {} VALUES ('x')", &*tw.t1))
                        .unwrap();
                    if with_second {
                        tw.registry
                            .session(&tw.w2)
                            .unwrap()
                            .execute(&format!("INSERT INTO {} VALUES ('y')", &*tw.t2))
                            .unwrap();
                    }
                    if via_guard {
                        let mut conn = writer1.conn::<PgConnection>().unwrap();
                        diesel::sql_query(raw_end).execute(&mut *conn).unwrap();
                    } else {
                        writer1.execute(raw_end).unwrap();
                    }
                    let expected: &[&str] = if raw_end == "COMMIT" { &["x"] } else { &[] };
                    if next_statement {
                        let err = writer1
                            .execute(&format!("INSERT INTO {} VALUES ('z')", &*tw.t1))
                            .expect_err("the statement after a raw COMMIT fails");
                        assert!(
                            matches!(&err, Error::TransactionEndedOutside { engine } if *engine == tw.w1),
                            "{case}: {err:?}"
                        );
                    }
                    // The raw COMMIT committed `x`; the refused statement never ran.
                    assert_eq!(names(&url1, &tw.t1), expected, "{case}");
                    let err = transaction::commit().expect_err("the transaction is doomed");
                    assert!(matches!(err, transaction::Error::Doomed), "{case}: {err:?}");
                    assert!(
                        !err.to_string().contains("nothing was committed"),
                        "{case}: {err}"
                    );
                    transaction::abort().unwrap();
                    assert!(
                        names(&url2, &tw.t2).is_empty(),
                        "{case}: writer2 was rolled back"
                    );
                    assert_eq!(names(&url1, &tw.t1), expected, "{case}");
                    // The session works again in the next transaction.
                    writer1
                        .execute(&format!("INSERT INTO {} VALUES ('next')", &*tw.t1))
                        .unwrap();
                    transaction::commit().unwrap();
                    assert!(names(&url1, &tw.t1).contains(&"next".to_owned()), "{case}");
                }
            }
        }
    }
}

#[test]
fn a_transaction_that_already_failed_is_not_prepared_and_nothing_persists() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_PG_URL",
        "SQLASSIST_TEST_PG_URL_2",
        "SQLASSIST_TEST_PG_ADMIN_URL"
    );
    reset_thread();
    for with_second in [false, true] {
        let tw = two_writers(&url1, &url2, "name TEXT PRIMARY KEY");
        if with_second {
            tw.registry
                .session(&tw.w2)
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES ('y')", &*tw.t2))
                .unwrap();
        }
        let writer1 = tw.registry.session(&tw.w1).unwrap();
        writer1
            .execute(&format!("INSERT INTO {} VALUES ('x')", &*tw.t1))
            .unwrap();
        // The error is ignored: PostgreSQL has failed the transaction, and would turn a
        // PREPARE or COMMIT into a silent rollback.
        let _ = writer1.execute("SELECT * FROM no_such_table_sqlassist");
        let err = transaction::commit().expect_err("a failed transaction cannot commit");
        assert_eq!(err.resource(), Some(tw.w1.as_str()), "{err:?}");
        transaction::abort().unwrap();
        assert!(names(&url1, &tw.t1).is_empty());
        assert!(names(&url2, &tw.t2).is_empty());
        assert_eq!(prepared_count(&admin, &tw.w1), 0);
        assert_eq!(prepared_count(&admin, &tw.w2), 0);
    }
}

#[test]
fn a_select_that_writes_through_a_function_is_prepared_and_committed_not_dropped() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_PG_URL",
        "SQLASSIST_TEST_PG_URL_2",
        "SQLASSIST_TEST_PG_ADMIN_URL"
    );
    reset_thread();
    let written = Table::pg(&url1, "fn_w", "name TEXT NOT NULL");
    let hidden = Table::pg(&url2, "fn_h", "name TEXT NOT NULL");
    let function = unique("fn_insert");
    raw(&url2)
        .batch_execute(&format!(
            "CREATE FUNCTION {function}() RETURNS integer LANGUAGE sql AS \
             $$ INSERT INTO {} VALUES ('through a function') RETURNING 1 $$",
            &*hidden
        ))
        .unwrap();
    let writer = unique("a_writer");
    let selector = unique("b_selector");
    let mut registry = Registry::new();
    registry
        .init_engine(&writer, engine(&url1), InitOptions::new().managed(true))
        .unwrap();
    registry
        .init_engine(&selector, engine(&url2), InitOptions::new().managed(true))
        .unwrap();
    let probe = Probe::new(&admin, &[&writer, &selector]);
    probe.manager().scope(|| {
        registry
            .session(&writer)
            .unwrap()
            .execute(&format!("INSERT INTO {} VALUES ('x')", &*written))
            .unwrap();
        // Only a SELECT, by its text; the server knows it wrote.
        let n = registry
            .session(&selector)
            .unwrap()
            .query_i64(&format!("SELECT {function}()"))
            .unwrap();
        assert_eq!(n, 1);
        transaction::commit().unwrap();
    });
    let seen = probe.seen.borrow();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].prepared_in_pg, 2, "both branches were prepared");
    assert_eq!(names(&url2, &hidden), ["through a function"]);
    assert_eq!(names(&url1, &written), ["x"]);
    raw(&url2)
        .batch_execute(&format!("DROP FUNCTION {function}()"))
        .unwrap();
}

// --- votes that err nowhere, readers that cannot write ---------------------------------

/// Log lines since `log` was opened that mention `needle`.
fn log_lines_with(log: &common::ServerLog, needle: &str) -> Vec<String> {
    log.since_open()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_read_only_participant_commits_without_an_error_in_the_server_log() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_PG_URL",
        "SQLASSIST_TEST_PG_URL_2",
        "SQLASSIST_TEST_PG_ADMIN_URL"
    );
    reset_thread();
    let Some(log) = common::ServerLog::open(&admin) else {
        return;
    };
    let written = Table::pg(&url1, "quiet_w", "name TEXT NOT NULL");
    let read = Table::pg(&url2, "quiet_r", "name TEXT NOT NULL");
    let writer = unique("a_writer");
    let selector = unique("b_selector");
    let mut registry = Registry::new();
    registry
        .init_engine(&writer, engine(&url1), InitOptions::new().managed(true))
        .unwrap();
    registry
        .init_engine(&selector, engine(&url2), InitOptions::new().managed(true))
        .unwrap();
    let probe = Probe::new(&admin, &[&selector]);
    probe.manager().scope(|| {
        for round in 0..3 {
            registry
                .session(&writer)
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES ('x{round}')", &*written))
                .unwrap();
            registry
                .session(&selector)
                .unwrap()
                .query_i64(&format!("SELECT COUNT(*) FROM {}", &*read))
                .unwrap();
            transaction::commit().unwrap();
        }
    });
    assert_eq!(pg::count(&url1, &written), 3);
    let seen = probe.seen.borrow();
    assert!(
        seen.iter().all(|s| s.prepared_in_pg == 0),
        "the selector voted read-only: {seen:?}"
    );
    // A control: an error with a marker of this test is found, so the log is read.
    let marker = unique("no_such_column");
    assert!(pg::raw(&url2)
        .batch_execute(&format!("SELECT {marker}"))
        .is_err());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while log_lines_with(&log, &marker).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the control error never reached the server log"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The selector's votes named its branch (`sqlassist_<txn>_<selector>`): the server
    // logged nothing about them, and nothing about a read-only sentinel.
    assert_eq!(log_lines_with(&log, &selector), Vec::<String>::new());
    assert_eq!(
        log_lines_with(&log, "sqlassist-vote-read-only"),
        Vec::<String>::new()
    );
}

/// A managed engine declared read-only, on the writer's URL (the role could write).
fn reader_engine(url: &str) -> Engine {
    engine_with(url, |b| b.read_only(true))
}

#[test]
fn a_read_only_engine_that_wrote_after_set_transaction_read_write_is_rolled_back_and_fails_the_commit(
) {
    let (url1, url2) = urls!("SQLASSIST_TEST_PG_URL", "SQLASSIST_TEST_PG_URL_2");
    reset_thread();
    // Alone (one-phase) and next to a writer (two-phase), sorting first and last.
    for (with_writer, reader_prefix) in
        [(false, "m_reader"), (true, "a_reader"), (true, "z_reader")]
    {
        let written = Table::pg(&url1, "rw_w", "name TEXT NOT NULL");
        let sneaked = Table::pg(&url2, "rw_r", "name TEXT NOT NULL");
        let writer = unique("m_writer");
        let reader = unique(reader_prefix);
        let mut registry = Registry::new();
        registry
            .init_engine(&writer, engine(&url1), InitOptions::new().managed(true))
            .unwrap();
        registry
            .init_engine(
                &reader,
                reader_engine(&url2),
                InitOptions::new().managed(true),
            )
            .unwrap();
        if with_writer {
            registry
                .session(&writer)
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES ('w')", &*written))
                .unwrap();
        }
        let session = registry.session(&reader).unwrap();
        session.execute("SET TRANSACTION READ WRITE").unwrap();
        session
            .execute(&format!("INSERT INTO {} VALUES ('sneaked')", &*sneaked))
            .unwrap();
        let err = transaction::commit().expect_err("a read-only engine wrote");
        assert!(
            matches!(resource_error(&err), Error::ReadOnlyEngineWrote { engine } if *engine == reader),
            "{reader_prefix}: {err:?}"
        );
        assert!(err.to_string().contains(&reader), "{err}");
        transaction::abort().unwrap();
        assert_eq!(pg::count(&url2, &sneaked), 0, "{reader_prefix}");
        assert_eq!(pg::count(&url1, &written), 0, "{reader_prefix}");
    }
}

#[test]
fn a_read_only_engine_that_only_read_commits_alone_and_next_to_a_writer() {
    let (url1, url2) = urls!("SQLASSIST_TEST_PG_URL", "SQLASSIST_TEST_PG_URL_2");
    reset_thread();
    for with_writer in [false, true] {
        let written = Table::pg(&url1, "ro_ok_w", "name TEXT NOT NULL");
        let read = Table::pg(&url2, "ro_ok_r", "name TEXT NOT NULL");
        let writer = unique("m_writer");
        let reader = unique("a_reader");
        let mut registry = Registry::new();
        registry
            .init_engine(&writer, engine(&url1), InitOptions::new().managed(true))
            .unwrap();
        registry
            .init_engine(
                &reader,
                reader_engine(&url2),
                InitOptions::new().managed(true),
            )
            .unwrap();
        if with_writer {
            registry
                .session(&writer)
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES ('w')", &*written))
                .unwrap();
        }
        let n = registry
            .session(&reader)
            .unwrap()
            .query_i64(&format!("SELECT COUNT(*) FROM {}", &*read))
            .unwrap();
        assert_eq!(n, 0);
        transaction::commit().unwrap();
        assert_eq!(pg::count(&url1, &written), i64::from(with_writer));
    }
}

// --- phase two on a definitive answer ---------------------------------------------------

/// A decision log that, between the last vote and the first finish, resolves the prepared
/// branch of one engine from another connection to its database (`COMMIT PREPARED` or
/// `ROLLBACK PREPARED`, as an operator or a recovery tool would).
struct ResolveAtDecision {
    url: String,
    engine: String,
    verb: &'static str,
}

impl DecisionLog for ResolveAtDecision {
    fn record_commit(&self, _txn: TransactionId, branches: &[Branch]) -> Result<(), BoxError> {
        let gid = branches
            .iter()
            .find(|b| b.resource == self.engine)
            .and_then(|b| b.branch_id.clone())
            .expect("the engine's branch is prepared");
        pg::exec(&self.url, &format!("{} '{gid}'", self.verb));
        Ok(())
    }

    fn forget(&self, _txn: TransactionId) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn a_branch_resolved_outside_between_vote_and_finish_is_reported_so_and_keeps_the_connection() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_PG_URL",
        "SQLASSIST_TEST_PG_URL_2",
        "SQLASSIST_TEST_PG_ADMIN_URL"
    );
    reset_thread();
    for (verb, expected) in [("COMMIT PREPARED", 1), ("ROLLBACK PREPARED", 0)] {
        let tw = two_writers(&url1, &url2, "name TEXT PRIMARY KEY");
        let writer1 = tw.registry.session(&tw.w1).unwrap();
        let backend_pid = writer1.query_i64("SELECT pg_backend_pid()").unwrap();
        let log = Rc::new(ResolveAtDecision {
            url: url1.clone(),
            engine: tw.w1.clone(),
            verb,
        });
        let manager = TransactionManager::builder()
            .decision_log(log as Rc<dyn DecisionLog>)
            .build();
        let err = manager.scope(|| {
            transaction::abort().unwrap();
            writer1
                .execute(&format!("INSERT INTO {} VALUES ('x')", &*tw.t1))
                .unwrap();
            tw.registry
                .session(&tw.w2)
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES ('y')", &*tw.t2))
                .unwrap();
            transaction::commit().expect_err("writer1's branch is gone at phase two")
        });
        let transaction::Error::Heuristic(h) = err else {
            panic!("{verb}: expected a heuristic outcome, got {err:?}");
        };
        assert_eq!(h.committed(), std::slice::from_ref(&tw.w2), "{verb}");
        assert_eq!(h.failed().len(), 1, "{verb}: {h}");
        let (resource, source) = &h.failed()[0];
        assert_eq!(resource, &tw.w1);
        assert!(
            matches!(source.downcast_ref::<Error>(), Some(Error::BranchResolvedOutside { engine, .. }) if *engine == tw.w1),
            "{verb}: {source:?}"
        );
        let message = source.to_string();
        assert!(
            !message.contains("in doubt") && !message.contains("finish it with"),
            "{verb}: {message}"
        );
        assert!(message.contains("resolved"), "{verb}: {message}");
        assert_eq!(pg::count(&url1, &tw.t1), expected, "{verb}");
        assert_eq!(names(&url2, &tw.t2), ["y"], "{verb}");
        assert_eq!(prepared_count(&admin, &tw.w1), 0, "{verb}");
        // No retry on a fresh connection: the session kept the connection it had.
        manager.scope(|| {
            let _ = transaction::abort();
            assert_eq!(
                writer1.query_i64("SELECT pg_backend_pid()").unwrap(),
                backend_pid,
                "{verb}"
            );
            transaction::abort().unwrap();
        });
    }
}

// --- a server without prepared transactions ----------------------------------------------

#[test]
fn a_managed_engine_without_prepared_transactions_commits_alone_and_fails_only_where_it_must_prepare(
) {
    let (no2pc, url) = urls!("SQLASSIST_TEST_PG_NO2PC_URL", "SQLASSIST_TEST_PG_URL");
    reset_thread();
    let lonely = Table::pg(&no2pc, "no2pc", "name TEXT NOT NULL");
    let other = Table::pg(&url, "with2pc", "name TEXT NOT NULL");
    let no = unique("m_no2pc");
    let first = unique("a_other");
    let last = unique("z_other");
    let mut registry = Registry::new();
    for (name, u) in [(&no, &no2pc), (&first, &url), (&last, &url)] {
        registry
            .init_engine(name, engine(u), InitOptions::new().managed(true))
            .unwrap();
    }
    // Engine::check() still reports the setting up front.
    let err = registry
        .engine(&no)
        .unwrap()
        .check(true)
        .expect_err("the server cannot prepare");
    assert!(
        matches!(err, Error::PreparedTransactionsDisabled { .. }),
        "{err:?}"
    );

    // A lone writer commits in one phase; a lone reader too.
    let session = registry.session(&no).unwrap();
    session
        .execute(&format!("INSERT INTO {} VALUES ('alone')", &*lonely))
        .unwrap();
    transaction::commit().unwrap();
    assert_eq!(names(&no2pc, &lonely), ["alone"]);
    assert_eq!(
        session
            .query_i64(&format!("SELECT COUNT(*) FROM {}", &*lonely))
            .unwrap(),
        1
    );
    transaction::commit().unwrap();

    // A reader next to a writer on a server that can prepare: it votes read-only.
    session
        .query_i64(&format!("SELECT COUNT(*) FROM {}", &*lonely))
        .unwrap();
    registry
        .session(&first)
        .unwrap()
        .execute(&format!(
            "INSERT INTO {} VALUES ('beside a reader')",
            &*other
        ))
        .unwrap();
    transaction::commit().unwrap();
    assert_eq!(names(&url, &other), ["beside a reader"]);

    // A writer next to another writer must prepare: the commit fails before anything
    // commits, whether the other engine votes before or after it.
    for partner in [&first, &last] {
        session
            .execute(&format!("INSERT INTO {} VALUES ('must prepare')", &*lonely))
            .unwrap();
        registry
            .session(partner)
            .unwrap()
            .execute(&format!("INSERT INTO {} VALUES ('partner')", &*other))
            .unwrap();
        let err = transaction::commit().expect_err("the engine cannot prepare");
        assert!(
            matches!(
                resource_error(&err),
                Error::PreparedTransactionsDisabled { .. }
            ),
            "{partner}: {err:?}"
        );
        assert_eq!(err.resource(), Some(no.as_str()), "{err:?}");
        assert!(
            resource_error(&err)
                .to_string()
                .contains("max_prepared_transactions"),
            "{err}"
        );
        transaction::abort().unwrap();
        assert_eq!(names(&no2pc, &lonely), ["alone"], "{partner}");
        assert_eq!(names(&url, &other), ["beside a reader"], "{partner}");
        assert_eq!(prepared_count(&url, partner), 0, "{partner}");
    }
}

// --- one writer commits in one phase -------------------------------------------------------

#[test]
fn a_lone_writer_among_three_managed_engines_commits_in_one_phase_wherever_it_sorts() {
    let (url1,) = urls!("SQLASSIST_TEST_PG_URL");
    reset_thread();
    let written = Table::pg(&url1, "one_w", "name TEXT NOT NULL");
    let read = Table::pg(&url1, "one_r", "name TEXT NOT NULL");
    // Three engines (three connections, three transactions) on one database.
    let names_of = [unique("aa_w"), unique("mm_w"), unique("zz_w")];
    let mut registry = Registry::new();
    for name in &names_of {
        registry
            .init_engine(
                name,
                engine_with(&url1, |b| b.echo(true)),
                InitOptions::new().managed(true),
            )
            .unwrap();
    }
    let sql = common::SqlCapture::default();
    for (round, writer) in names_of.iter().enumerate() {
        let probe = Probe::new(
            &url1,
            &names_of.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let before = sql.statements().len();
        sql.run(|| {
            probe.manager().scope(|| {
                for name in &names_of {
                    let session = registry.session(name).unwrap();
                    if name == writer {
                        session
                            .execute(&format!("INSERT INTO {} VALUES ('{name}')", &*written))
                            .unwrap();
                    } else {
                        session
                            .query_i64(&format!("SELECT COUNT(*) FROM {}", &*read))
                            .unwrap();
                    }
                }
                transaction::commit().unwrap();
            })
        });
        let sent = &sql.statements()[before..];
        assert!(
            probe.seen.borrow().is_empty(),
            "{writer}: no commit decision was needed"
        );
        assert!(
            !sent.iter().any(|s| s.contains("PREPARE")),
            "{writer}: nothing was prepared: {sent:?}"
        );
        assert_eq!(
            sent.iter().filter(|s| s.trim() == "COMMIT").count(),
            1,
            "{writer}: one COMMIT: {sent:?}"
        );
        // The readers were asked, not assumed read-only.
        assert_eq!(
            sent.iter()
                .filter(|s| s.contains("txid_current_if_assigned"))
                .count(),
            2,
            "{writer}: {sent:?}"
        );
        assert_eq!(pg::count(&url1, &written), round as i64 + 1);
    }
    // A control: two writers are prepared and the capture sees it.
    let before = sql.statements().len();
    sql.run(|| {
        for name in &names_of[..2] {
            registry
                .session(name)
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES ('two')", &*written))
                .unwrap();
        }
        transaction::commit().unwrap();
    });
    let sent = &sql.statements()[before..];
    assert_eq!(
        sent.iter()
            .filter(|s| s.contains("PREPARE TRANSACTION"))
            .count(),
        2,
        "{sent:?}"
    );
}

#[test]
fn a_raw_commit_in_an_unmanaged_session_refuses_the_next_statement_until_rollback() {
    let (url,) = urls!("SQLASSIST_TEST_PG_URL");
    reset_thread();
    let table = Table::pg(&url, "raw_un", "name TEXT NOT NULL");
    let log = unique("log");
    let mut registry = Registry::new();
    registry
        .init_engine(&log, engine(&url), InitOptions::new())
        .unwrap();
    let session = registry.session(&log).unwrap();
    session
        .execute(&format!("INSERT INTO {} VALUES ('x')", &*table))
        .unwrap();
    session.execute("ROLLBACK").unwrap();
    let err = session
        .execute(&format!(
            "INSERT INTO {} VALUES ('autocommitted?')",
            &*table
        ))
        .expect_err("refused");
    assert!(
        matches!(err, Error::TransactionEndedOutside { .. }),
        "{err:?}"
    );
    assert!(matches!(
        session.commit(),
        Err(Error::TransactionEndedOutside { .. })
    ));
    assert_eq!(pg::count(&url, &table), 0, "nothing ran on its own");
    session.rollback().unwrap();
    session
        .execute(&format!("INSERT INTO {} VALUES ('y')", &*table))
        .unwrap();
    session.commit().unwrap();
    assert_eq!(names(&url, &table), ["y"]);
}
