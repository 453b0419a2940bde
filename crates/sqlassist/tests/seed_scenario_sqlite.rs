//! A web handler's scenario in pyramid_sqlassist's style on real SQLite files, plus session behaviour that
//! needs no server.
//!
//! Each test builds its own [`Registry`] over files in its own temporary directory, and
//! checks what persisted through a separate, plain Diesel connection.
//!
//! SQLite cannot prepare, so a transaction may hold only one managed SQLite engine unless
//! the manager allows several one-phase resources (accepting that a failure between their
//! commits could commit one and not the other). The scenarios with two managed writers
//! (3, 4, 5) therefore run under a manager built with `allow_multiple_one_phase(true)`;
//! `two_managed_sqlite_writers_are_refused_by_the_default_manager` checks the default.

mod common;

use std::path::Path;

use diesel::prelude::*;
use diesel::result::Error as DieselError;
use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry};

use common::lite::{count, names, raw};
use common::{reset_thread, TempDir};

fn url(path: &Path) -> DatabaseUrl {
    // SQLAlchemy's absolute form: four slashes before an absolute path.
    DatabaseUrl::parse(&format!("sqlite:///{}", path.display())).expect("a valid sqlite url")
}

fn engine(path: &Path, read_only: bool) -> Engine {
    let options = EngineOptions::builder(url(path))
        .read_only(read_only)
        .build()
        .expect("valid options");
    Engine::new(options).expect("an engine")
}

fn setup(path: &Path, sql: &str) {
    use diesel::connection::SimpleConnection;
    raw(path).batch_execute(sql).expect("setup sql");
}

/// A manager that lets two managed SQLite writers share a transaction (see the module docs).
fn permissive_manager() -> transaction::TransactionManager {
    transaction::TransactionManager::builder()
        .allow_multiple_one_phase(true)
        .build()
}

#[test]
fn reader_queries_work_reader_insert_fails_read_only_and_reader_stays_usable_after_rollback() {
    reset_thread();
    let dir = TempDir::new("s1");
    let db = dir.file("app.db");
    setup(
        &db,
        "CREATE TABLE test_table (name TEXT NOT NULL); INSERT INTO test_table VALUES ('seed');",
    );
    let mut registry = Registry::new();
    registry
        .init_engine(
            "reader",
            engine(&db, true),
            InitOptions::new().default_engine(true),
        )
        .unwrap();
    let reader = registry.session("reader").unwrap();

    assert_eq!(
        reader.query_i64("SELECT COUNT(*) FROM test_table").unwrap(),
        1
    );
    let err = reader
        .execute("INSERT INTO test_table (name) VALUES ('Test Case 1')")
        .expect_err("a read-only SQLite engine must refuse writes");
    match &err {
        Error::Database {
            source: DieselError::DatabaseError(_, info),
            ..
        } => assert!(
            info.message().contains("readonly"),
            "expected SQLite's read-only error, got {err}"
        ),
        other => panic!("expected a database error, got {other:?}"),
    }
    reader.rollback().unwrap();
    assert_eq!(
        reader.query_i64("SELECT COUNT(*) FROM test_table").unwrap(),
        1
    );
    reader.rollback().unwrap();
    assert_eq!(count(&db, "test_table"), 1);
    sqlassist::close_sessions().unwrap();
}

#[test]
fn managed_writer_insert_persists_after_transaction_commit() {
    reset_thread();
    let dir = TempDir::new("s2");
    let db = dir.file("app.db");
    setup(&db, "CREATE TABLE test_table (name TEXT NOT NULL)");
    let mut registry = Registry::new();
    registry
        .init_engine(
            "writer",
            engine(&db, false),
            InitOptions::new().managed(true),
        )
        .expect("a new name");
    let writer = registry.session("writer").unwrap();
    writer
        .execute("INSERT INTO test_table (name) VALUES ('Test Case 2')")
        .unwrap();
    assert_eq!(count(&db, "test_table"), 0, "not committed yet");
    transaction::commit().unwrap();
    assert_eq!(names(&db, "test_table"), ["Test Case 2"]);
    sqlassist::close_sessions().unwrap();
}

fn two_writers(dir: &TempDir) -> (Registry, std::path::PathBuf, std::path::PathBuf) {
    let db1 = dir.file("one.db");
    let db2 = dir.file("two.db");
    setup(&db1, "CREATE TABLE t (name TEXT PRIMARY KEY)");
    setup(&db2, "CREATE TABLE t (name TEXT PRIMARY KEY)");
    let mut registry = Registry::new();
    registry
        .init_engine(
            "writer1",
            engine(&db1, false),
            InitOptions::new().managed(true),
        )
        .expect("a new name");
    registry
        .init_engine(
            "writer2",
            engine(&db2, false),
            InitOptions::new().managed(true),
        )
        .expect("a new name");
    (registry, db1, db2)
}

#[test]
fn managed_commit_is_refused_and_transaction_commit_persists_both_writers() {
    reset_thread();
    let dir = TempDir::new("s3");
    let (registry, db1, db2) = two_writers(&dir);
    permissive_manager().scope(|| {
        let writer1 = registry.session("writer1").unwrap();
        let writer2 = registry.session("writer2").unwrap();
        writer1.execute("INSERT INTO t VALUES ('object1')").unwrap();
        match writer1.commit() {
            Err(Error::CommitThroughTransactionManager { engine }) => assert_eq!(engine, "writer1"),
            other => panic!("expected CommitThroughTransactionManager, got {other:?}"),
        }
        assert_eq!(count(&db1, "t"), 0, "the refused commit committed nothing");
        writer2.execute("INSERT INTO t VALUES ('object2')").unwrap();
        transaction::commit().unwrap();
    });
    assert_eq!(names(&db1, "t"), ["object1"]);
    assert_eq!(names(&db2, "t"), ["object2"]);
    sqlassist::close_sessions().unwrap();
}

#[test]
fn rollback_after_refused_commit_discards_writer1_and_transaction_commit_keeps_writer2() {
    reset_thread();
    let dir = TempDir::new("s4");
    let (registry, db1, db2) = two_writers(&dir);
    permissive_manager().scope(|| {
        let writer1 = registry.session("writer1").unwrap();
        let writer2 = registry.session("writer2").unwrap();
        writer1.execute("INSERT INTO t VALUES ('object1')").unwrap();
        assert!(matches!(
            writer1.commit(),
            Err(Error::CommitThroughTransactionManager { .. })
        ));
        writer1.rollback().unwrap();
        writer2.execute("INSERT INTO t VALUES ('object2')").unwrap();
        transaction::commit().unwrap();
    });
    assert_eq!(count(&db1, "t"), 0);
    assert_eq!(names(&db2, "t"), ["object2"]);
    sqlassist::close_sessions().unwrap();
}

#[test]
fn abort_after_a_failure_persists_nothing_from_any_managed_engine() {
    reset_thread();
    let dir = TempDir::new("s5");
    let (registry, db1, db2) = two_writers(&dir);
    setup(&db2, "INSERT INTO t VALUES ('taken')");
    permissive_manager().scope(|| {
        let writer1 = registry.session("writer1").unwrap();
        let writer2 = registry.session("writer2").unwrap();
        writer1.execute("INSERT INTO t VALUES ('object1')").unwrap();
        writer2.execute("INSERT INTO t VALUES ('object2')").unwrap();
        writer2
            .execute("INSERT INTO t VALUES ('taken')")
            .expect_err("a duplicate primary key must fail");
        transaction::abort().unwrap();
    });
    assert_eq!(count(&db1, "t"), 0);
    assert_eq!(names(&db2, "t"), ["taken"]);
    sqlassist::close_sessions().unwrap();
}

#[test]
fn two_managed_sqlite_writers_are_refused_by_the_default_manager() {
    reset_thread();
    let dir = TempDir::new("one-phase");
    let (registry, db1, db2) = two_writers(&dir);
    registry
        .session("writer1")
        .unwrap()
        .execute("INSERT INTO t VALUES ('a')")
        .unwrap();
    registry
        .session("writer2")
        .unwrap()
        .execute("INSERT INTO t VALUES ('b')")
        .unwrap();
    let err = transaction::commit().expect_err("two one-phase resources cannot commit atomically");
    assert!(
        matches!(err, transaction::Error::TooManyOnePhase { .. }),
        "{err:?}"
    );
    transaction::abort().unwrap();
    assert_eq!(count(&db1, "t"), 0);
    assert_eq!(count(&db2, "t"), 0);
    sqlassist::close_sessions().unwrap();
}

#[test]
fn unmanaged_session_commits_and_rolls_back_on_its_own_whatever_abort_does() {
    reset_thread();
    let dir = TempDir::new("unmanaged");
    let db = dir.file("log.db");
    setup(&db, "CREATE TABLE log (name TEXT NOT NULL)");
    let mut registry = Registry::new();
    registry
        .init_engine("log", engine(&db, false), InitOptions::new())
        .unwrap();
    let log = registry.session("log").unwrap();
    log.execute("INSERT INTO log VALUES ('committed')").unwrap();
    log.commit().unwrap();
    log.execute("INSERT INTO log VALUES ('pending')").unwrap();
    transaction::abort().unwrap();
    assert!(
        log.in_transaction(),
        "abort() does not touch unmanaged work"
    );
    log.commit().unwrap();
    log.execute("INSERT INTO log VALUES ('rolled back')")
        .unwrap();
    transaction::commit().unwrap();
    assert!(
        log.in_transaction(),
        "commit() does not touch unmanaged work"
    );
    log.rollback().unwrap();
    assert_eq!(names(&db, "log"), ["committed", "pending"]);
    sqlassist::close_sessions().unwrap();
}

#[test]
fn close_sessions_rolls_back_unmanaged_work_and_returns_every_connection() {
    reset_thread();
    let dir = TempDir::new("close");
    let db = dir.file("log.db");
    setup(&db, "CREATE TABLE log (name TEXT NOT NULL)");
    let log_engine = engine(&db, false);
    let mut registry = Registry::new();
    registry
        .init_engine("log", log_engine.clone(), InitOptions::new())
        .unwrap();
    let log = registry.session("log").unwrap();
    log.execute("INSERT INTO log VALUES ('never committed')")
        .unwrap();
    let state = log_engine.pool_state();
    assert_eq!(state.connections - state.idle, 1, "one connection in use");
    assert_eq!(sqlassist::open_sessions(), 1);

    sqlassist::close_sessions().unwrap();
    assert_eq!(sqlassist::open_sessions(), 0);
    let state = log_engine.pool_state();
    assert!(state.connections >= 1);
    assert_eq!(
        state.idle, state.connections,
        "every connection is back in the pool"
    );
    assert_eq!(count(&db, "log"), 0, "uncommitted work was rolled back");

    // The returned connection has no transaction open: it is reused and works.
    let log = registry.session("log").unwrap();
    log.execute("INSERT INTO log VALUES ('second')").unwrap();
    log.commit().unwrap();
    assert_eq!(names(&db, "log"), ["second"]);
    sqlassist::close_sessions().unwrap();
}

#[test]
fn nested_diesel_transaction_inside_a_session_is_a_savepoint() {
    reset_thread();
    let dir = TempDir::new("nested");
    let db = dir.file("app.db");
    setup(&db, "CREATE TABLE t (name TEXT NOT NULL)");
    let mut registry = Registry::new();
    registry
        .init_engine(
            "writer",
            engine(&db, false),
            InitOptions::new().managed(true),
        )
        .expect("a new name");
    let writer = registry.session("writer").unwrap();
    {
        let mut conn = writer.conn::<SqliteConnection>().unwrap();
        diesel::sql_query("INSERT INTO t VALUES ('outer')")
            .execute(&mut *conn)
            .unwrap();
        let inner = conn.transaction::<(), DieselError, _>(|c| {
            diesel::sql_query("INSERT INTO t VALUES ('inner')").execute(c)?;
            Err(DieselError::RollbackTransaction)
        });
        assert!(matches!(inner, Err(DieselError::RollbackTransaction)));
        conn.transaction::<_, DieselError, _>(|c| {
            diesel::sql_query("INSERT INTO t VALUES ('kept')").execute(c)
        })
        .unwrap();
    }
    assert!(
        writer.in_transaction(),
        "the savepoints left the session's transaction open"
    );
    assert_eq!(count(&db, "t"), 0);
    transaction::commit().unwrap();
    assert_eq!(names(&db, "t"), ["kept", "outer"]);
    sqlassist::close_sessions().unwrap();
}

#[test]
fn a_failed_one_phase_commit_persists_nothing_and_needs_abort() {
    // A reader holding a shared lock makes the writer's COMMIT fail with SQLITE_BUSY
    // (rollback-journal mode): a failure that happens at COMMIT itself.
    reset_thread();
    let dir = TempDir::new("busy");
    let db = dir.file("app.db");
    setup(&db, "CREATE TABLE t (name TEXT NOT NULL)");
    let options = EngineOptions::builder(url(&db))
        .busy_timeout(std::time::Duration::from_millis(100))
        .build()
        .unwrap();
    let mut registry = Registry::new();
    registry
        .init_engine(
            "writer",
            Engine::new(options).unwrap(),
            InitOptions::new().managed(true),
        )
        .expect("a new name");
    let writer = registry.session("writer").unwrap();
    writer.execute("INSERT INTO t VALUES ('x')").unwrap();

    let mut blocker = raw(&db);
    {
        use diesel::connection::SimpleConnection;
        blocker
            .batch_execute("BEGIN; SELECT COUNT(*) FROM t;")
            .unwrap();
    }
    let err = transaction::commit().expect_err("the COMMIT cannot get its exclusive lock");
    assert!(err.to_string().contains("nothing was committed"), "{err}");
    transaction::abort().unwrap();
    {
        use diesel::connection::SimpleConnection;
        blocker.batch_execute("ROLLBACK").unwrap();
    }
    assert_eq!(count(&db, "t"), 0);
    // The session is usable in the next transaction.
    writer.execute("INSERT INTO t VALUES ('y')").unwrap();
    transaction::commit().unwrap();
    assert_eq!(names(&db, "t"), ["y"]);
    sqlassist::close_sessions().unwrap();
}

#[test]
fn closing_a_managed_session_with_uncommitted_writes_dooms_the_transaction() {
    reset_thread();
    let dir = TempDir::new("close-doom");
    let db = dir.file("app.db");
    setup(&db, "CREATE TABLE test_table (name TEXT NOT NULL)");
    let mut registry = Registry::new();
    registry
        .init_engine(
            "writer",
            engine(&db, false),
            InitOptions::new().managed(true),
        )
        .expect("a new name");
    let writer = registry.session("writer").unwrap();
    writer
        .execute("INSERT INTO test_table (name) VALUES ('discarded')")
        .unwrap();
    sqlassist::close_sessions().unwrap();
    // The writes were rolled back: the transaction must not commit as if they never were.
    assert!(matches!(
        transaction::commit(),
        Err(transaction::Error::Doomed)
    ));
    transaction::abort().unwrap();
    assert_eq!(count(&db, "test_table"), 0);

    // A managed session that only read is closed without dooming anything.
    let writer = registry.session("writer").unwrap();
    assert_eq!(
        writer.query_i64("SELECT COUNT(*) FROM test_table").unwrap(),
        0
    );
    sqlassist::close_sessions().unwrap();
    transaction::commit().unwrap();
}

#[test]
fn a_read_only_in_memory_engine_refuses_writes_too() {
    reset_thread();
    let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://").unwrap())
        .read_only(true)
        .build()
        .unwrap();
    let mut registry = Registry::new();
    registry
        .init_engine("reader", Engine::new(options).unwrap(), InitOptions::new())
        .unwrap();
    let reader = registry.session("reader").unwrap();
    assert_eq!(reader.query_i64("SELECT 1").unwrap(), 1);
    let err = reader.execute("CREATE TABLE t (a INTEGER)").unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
    sqlassist::close_sessions().unwrap();
}

#[test]
fn a_raw_commit_or_rollback_in_a_managed_session_fails_the_next_statement_and_dooms_the_transaction(
) {
    reset_thread();
    for raw_end in ["COMMIT", "END", "ROLLBACK"] {
        for via_guard in [false, true] {
            let case = format!("{raw_end} via_guard={via_guard}");
            let dir = TempDir::new("raw");
            let db = dir.file("app.db");
            setup(&db, "CREATE TABLE t (name TEXT NOT NULL)");
            let mut registry = Registry::new();
            registry
                .init_engine(
                    "writer",
                    engine(&db, false),
                    InitOptions::new().managed(true),
                )
                .unwrap();
            let writer = registry.session("writer").unwrap();
            writer.execute("INSERT INTO t VALUES ('x')").unwrap();
            if via_guard {
                let mut conn = writer.conn::<SqliteConnection>().unwrap();
                diesel::sql_query(raw_end).execute(&mut *conn).unwrap();
            } else {
                writer.execute(raw_end).unwrap();
            }
            let expected: &[&str] = if raw_end == "ROLLBACK" { &[] } else { &["x"] };
            let err = writer
                .execute("INSERT INTO t VALUES ('z')")
                .expect_err("the statement after a raw COMMIT fails");
            assert!(
                matches!(&err, Error::TransactionEndedOutside { engine } if engine == "writer"),
                "{case}: {err:?}"
            );
            assert_eq!(names(&db, "t"), expected, "{case}");
            let err = transaction::commit().expect_err("the transaction is doomed");
            assert!(matches!(err, transaction::Error::Doomed), "{case}: {err:?}");
            transaction::abort().unwrap();
            assert_eq!(names(&db, "t"), expected, "{case}");
            // Savepoints are no raw end: a nested transaction rolled back keeps the session.
            writer.execute("INSERT INTO t VALUES ('next')").unwrap();
            {
                let mut conn = writer.conn::<SqliteConnection>().unwrap();
                let nested: Result<(), DieselError> = conn.transaction(|c| {
                    diesel::sql_query("INSERT INTO t VALUES ('nested')").execute(c)?;
                    Err(DieselError::RollbackTransaction)
                });
                assert!(nested.is_err());
            }
            writer.execute("INSERT INTO t VALUES ('after')").unwrap();
            transaction::commit().unwrap();
            assert!(names(&db, "t").contains(&"after".to_owned()), "{case}");
            sqlassist::close_sessions().unwrap();
        }
    }
}
