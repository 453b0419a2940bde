//! A web handler's scenario in pyramid_sqlassist's style (reader, managed writers, unmanaged
//! log) against real MariaDB, through XA two-phase commit, plus the MariaDB-specific behaviour: one-phase
//! `XA COMMIT ... ONE PHASE` for a lone engine, nested Diesel transactions as savepoints
//! inside an XA branch, lock wait timeouts reported as transient, unmanaged sessions.
//!
//! URLs come from `SQLASSIST_TEST_MYSQL_URL`, `SQLASSIST_TEST_MYSQL_URL_2`,
//! `SQLASSIST_TEST_MYSQL_READER_URL` and `SQLASSIST_TEST_MYSQL_ADMIN_URL` (see
//! `docs/testing.md`); without them the tests skip, or fail when servers are required.
//! `XA RECOVER` (as root) shows whether a branch was left prepared; every xid carries the
//! engine name, and every test uses unique engine names.

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry};
use transaction::{BoxError, Branch, DecisionLog, TransactionId, TransactionManager};

use common::lite::{count as sqlite_count, raw as raw_sqlite};
use common::my::{names, raw, xa_prepared};
use common::{reset_thread, unique, Table, TempDir};

macro_rules! urls {
    ($($var:literal),+) => {
        ($(match common::mysql_url($var) { Some(u) => u, None => return },)+)
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
        DatabaseUrl::parse(url).expect("a valid mysql url"),
    ))
    .pool_size(2)
    .build()
    .expect("valid options");
    Engine::new(options).expect("an engine")
}

/// A decision log that counts, when the decision is recorded, the branches MariaDB lists
/// as prepared.
struct Probe {
    admin: String,
    needles: Vec<String>,
    seen: RefCell<Vec<(Vec<String>, usize)>>,
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
        let prepared = self
            .needles
            .iter()
            .map(|n| xa_prepared(&self.admin, n))
            .sum();
        self.seen.borrow_mut().push((
            branches.iter().map(|b| b.resource.clone()).collect(),
            prepared,
        ));
        Ok(())
    }

    fn forget(&self, _txn: TransactionId) -> Result<(), BoxError> {
        Ok(())
    }
}

// --- the handler scenario -----------------------------------------------------------

#[test]
fn reader_user_queries_work_insert_is_denied_and_reader_stays_usable_after_rollback() {
    let (url, reader_url) = urls!(
        "SQLASSIST_TEST_MYSQL_URL",
        "SQLASSIST_TEST_MYSQL_READER_URL"
    );
    reset_thread();
    let table = Table::mysql(&url, "s1", "name VARCHAR(64) NOT NULL");
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
        .expect_err("the reader user may not insert");
    match &err {
        Error::Database {
            source: DieselError::DatabaseError(_, info),
            ..
        } => assert!(
            info.message().contains("INSERT command denied"),
            "expected MariaDB's permission error, got {err}"
        ),
        other => panic!("expected a database error, got {other:?}"),
    }
    reader.rollback().unwrap();
    assert_eq!(reader.query_i64(&count_sql).unwrap(), 1, "usable");
    reader.rollback().unwrap();
    assert_eq!(names(&url, &table), ["seed"]);
}

#[test]
fn read_only_engine_on_the_writer_url_fails_writes_with_read_only_transaction() {
    let (url, admin) = urls!("SQLASSIST_TEST_MYSQL_URL", "SQLASSIST_TEST_MYSQL_ADMIN_URL");
    reset_thread();
    let table = Table::mysql(&url, "s1ro", "name VARCHAR(64) NOT NULL");
    // Unmanaged, and managed (inside an XA branch): the server refuses the write.
    for managed in [false, true] {
        let name = unique("ro");
        let mut registry = Registry::new();
        registry
            .init_engine(
                &name,
                engine_with(&url, |b| b.read_only(true)),
                InitOptions::new().managed(managed),
            )
            .unwrap();
        let reader = registry.session(&name).unwrap();
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
            "managed={managed}: expected error 1792 (ReadOnlyTransaction), got {err:?}"
        );
        reader.rollback().unwrap();
        assert_eq!(reader.query_i64(&count_sql).unwrap(), 0);
        if managed {
            // A read-only engine votes read-only: nothing is left prepared.
            transaction::commit().unwrap();
            assert_eq!(xa_prepared(&admin, &name), 0);
        } else {
            reader.rollback().unwrap();
        }
        sqlassist::close_sessions().unwrap();
    }
}

#[test]
fn a_lone_managed_writer_commits_in_one_phase_without_preparing() {
    let (url, admin) = urls!("SQLASSIST_TEST_MYSQL_URL", "SQLASSIST_TEST_MYSQL_ADMIN_URL");
    reset_thread();
    let table = Table::mysql(&url, "s2", "name VARCHAR(64) NOT NULL");
    let name = unique("writer");
    let mut registry = Registry::new();
    registry
        .init_engine(&name, engine(&url), InitOptions::new().managed(true))
        .unwrap();
    let probe = Probe::new(&admin, &[&name]);
    probe.manager().scope(|| {
        let writer = registry.session(&name).unwrap();
        writer
            .execute(&format!("INSERT INTO {} VALUES ('Test Case 2')", &*table))
            .unwrap();
        assert!(names(&url, &table).is_empty(), "not committed yet");
        transaction::commit().unwrap();
    });
    assert!(
        probe.seen.borrow().is_empty(),
        "no decision: nothing was prepared"
    );
    assert_eq!(names(&url, &table), ["Test Case 2"]);
    assert_eq!(xa_prepared(&admin, &name), 0);
}

struct TwoWriters {
    registry: Registry,
    w1: String,
    w2: String,
    t1: Table,
    t2: Table,
}

fn two_writers(url1: &str, url2: &str) -> TwoWriters {
    let t1 = Table::mysql(url1, "w1", "name VARCHAR(64) PRIMARY KEY");
    let t2 = Table::mysql(url2, "w2", "name VARCHAR(64) PRIMARY KEY");
    let w1 = unique("a_writer1");
    let w2 = unique("b_writer2");
    let mut registry = Registry::new();
    registry
        .init_engine(&w1, engine(url1), InitOptions::new().managed(true))
        .unwrap();
    registry
        .init_engine(&w2, engine(url2), InitOptions::new().managed(true))
        .unwrap();
    TwoWriters {
        registry,
        w1,
        w2,
        t1,
        t2,
    }
}

#[test]
fn managed_commit_is_refused_and_transaction_commit_persists_both_writers_through_xa() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_MYSQL_URL",
        "SQLASSIST_TEST_MYSQL_URL_2",
        "SQLASSIST_TEST_MYSQL_ADMIN_URL"
    );
    reset_thread();
    let tw = two_writers(&url1, &url2);
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
    assert_eq!(seen.len(), 1, "{:?}", *seen);
    assert_eq!(seen[0].0, [tw.w1.clone(), tw.w2.clone()]);
    assert_eq!(seen[0].1, 2, "both branches were prepared at decision time");
    assert_eq!(xa_prepared(&admin, &tw.w1), 0);
    assert_eq!(xa_prepared(&admin, &tw.w2), 0);
}

#[test]
fn rollback_after_refused_commit_discards_writer1_and_transaction_commit_keeps_writer2() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_MYSQL_URL",
        "SQLASSIST_TEST_MYSQL_URL_2",
        "SQLASSIST_TEST_MYSQL_ADMIN_URL"
    );
    reset_thread();
    let tw = two_writers(&url1, &url2);
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
    // writer1 rolled back its branch and starts a new one (same xid) in the next
    // transaction; its connection was never broken.
    writer1
        .execute(&format!("INSERT INTO {} VALUES ('later')", &*tw.t1))
        .unwrap();
    transaction::commit().unwrap();
    assert_eq!(names(&url1, &tw.t1), ["later"]);
    assert_eq!(xa_prepared(&admin, &tw.w1), 0);
    assert_eq!(xa_prepared(&admin, &tw.w2), 0);
}

#[test]
fn abort_after_a_failure_persists_nothing_from_any_managed_engine() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_MYSQL_URL",
        "SQLASSIST_TEST_MYSQL_URL_2",
        "SQLASSIST_TEST_MYSQL_ADMIN_URL"
    );
    reset_thread();
    let tw = two_writers(&url1, &url2);
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
    let err = writer2
        .execute(&format!("INSERT INTO {} VALUES ('taken')", &*tw.t2))
        .expect_err("duplicate key");
    assert!(matches!(
        err,
        Error::Database {
            source: DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _),
            ..
        }
    ));
    transaction::abort().unwrap();
    assert!(names(&url1, &tw.t1).is_empty());
    assert_eq!(names(&url2, &tw.t2), ["taken"]);
    assert_eq!(xa_prepared(&admin, &tw.w1), 0);
    assert_eq!(xa_prepared(&admin, &tw.w2), 0);
    // Both sessions are usable afterwards: the branches were ended with XA statements.
    writer2
        .execute(&format!("INSERT INTO {} VALUES ('after')", &*tw.t2))
        .unwrap();
    transaction::commit().unwrap();
    assert_eq!(names(&url2, &tw.t2), ["after", "taken"]);
}

#[test]
fn a_vote_failure_in_the_second_database_commits_neither_and_leaves_nothing_prepared() {
    let (url1, url2, admin) = urls!(
        "SQLASSIST_TEST_MYSQL_URL",
        "SQLASSIST_TEST_MYSQL_URL_2",
        "SQLASSIST_TEST_MYSQL_ADMIN_URL"
    );
    reset_thread();
    let tw = two_writers(&url1, &url2);
    let writer1 = tw.registry.session(&tw.w1).unwrap();
    let writer2 = tw.registry.session(&tw.w2).unwrap();
    writer1
        .execute(&format!("INSERT INTO {} VALUES ('object1')", &*tw.t1))
        .unwrap();
    writer2
        .execute(&format!("INSERT INTO {} VALUES ('object2')", &*tw.t2))
        .unwrap();
    // MariaDB has no deferred constraints: the server kills writer2's connection instead,
    // so its XA END / XA PREPARE fails after writer1 prepared.
    let id = writer2.query_i64("SELECT CONNECTION_ID()").unwrap();
    raw(&admin).batch_execute(&format!("KILL {id}")).unwrap();
    let err = transaction::commit().expect_err("writer2's vote fails");
    assert_eq!(err.phase(), Some(transaction::Phase::Vote), "{err:?}");
    assert_eq!(err.resource(), Some(tw.w2.as_str()), "{err:?}");
    transaction::abort().unwrap();
    assert!(names(&url1, &tw.t1).is_empty(), "writer1 was rolled back");
    assert!(names(&url2, &tw.t2).is_empty());
    assert_eq!(
        xa_prepared(&admin, &tw.w1),
        0,
        "writer1's branch was rolled back"
    );
    assert_eq!(xa_prepared(&admin, &tw.w2), 0);
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
fn sqlite_commits_last_while_mariadb_is_prepared_and_a_failed_sqlite_commit_rolls_mariadb_back() {
    let (url, admin) = urls!("SQLASSIST_TEST_MYSQL_URL", "SQLASSIST_TEST_MYSQL_ADMIN_URL");
    reset_thread();
    let table = Table::mysql(&url, "s7", "name VARCHAR(64) NOT NULL");
    let dir = TempDir::new("s7my");
    let db = dir.file("embedded.db");
    raw_sqlite(&db)
        .batch_execute("CREATE TABLE t (name TEXT)")
        .unwrap();
    let my = unique("z_maria");
    let mut registry = Registry::new();
    registry
        .init_engine(&my, engine(&url), InitOptions::new().managed(true))
        .unwrap();
    registry
        .init_engine(
            "a_sqlite",
            sqlite_writer(&db, 100),
            InitOptions::new().managed(true),
        )
        .unwrap();
    let probe = Probe::new(&admin, &[&my]);
    // Success: SQLite, voted last after MariaDB prepared, carries the decision inside its
    // own commit (a row naming MariaDB's branch): the log records nothing.
    probe.manager().scope(|| {
        registry
            .session(&my)
            .unwrap()
            .execute(&format!("INSERT INTO {} VALUES ('maria')", &*table))
            .unwrap();
        registry
            .session("a_sqlite")
            .unwrap()
            .execute("INSERT INTO t VALUES ('sqlite')")
            .unwrap();
        transaction::commit().unwrap();
    });
    assert!(probe.seen.borrow().is_empty());
    assert_eq!(names(&url, &table), ["maria"]);
    let carried = registry
        .engine("a_sqlite")
        .unwrap()
        .carried_decisions()
        .unwrap();
    assert_eq!(carried.len(), 1);
    assert_eq!(carried[0].branches.len(), 1);
    assert_eq!(carried[0].branches[0].resource, my);

    // Failure: another reader holds SQLite's shared lock, so its COMMIT fails after
    // MariaDB prepared; MariaDB's branch is rolled back.
    registry
        .session(&my)
        .unwrap()
        .execute(&format!("INSERT INTO {} VALUES ('maria2')", &*table))
        .unwrap();
    registry
        .session("a_sqlite")
        .unwrap()
        .execute("INSERT INTO t VALUES ('sqlite2')")
        .unwrap();
    let mut blocker = raw_sqlite(&db);
    blocker
        .batch_execute("BEGIN; SELECT COUNT(*) FROM t;")
        .unwrap();
    let err = transaction::commit().expect_err("SQLite's commit fails");
    assert_eq!(err.resource(), Some("a_sqlite"), "{err:?}");
    transaction::abort().unwrap();
    blocker.batch_execute("ROLLBACK").unwrap();
    assert_eq!(names(&url, &table), ["maria"], "MariaDB was rolled back");
    assert_eq!(xa_prepared(&admin, &my), 0);
    let rows = sqlite_count(&db, "t");
    assert_eq!(rows, 1);
}

// --- MariaDB specifics ----------------------------------------------------------------

#[test]
fn nested_diesel_transaction_inside_an_xa_branch_is_a_savepoint() {
    let (url,) = urls!("SQLASSIST_TEST_MYSQL_URL");
    reset_thread();
    let table = Table::mysql(&url, "nested", "name VARCHAR(64) NOT NULL");
    let mut registry = Registry::new();
    registry
        .init_engine("writer", engine(&url), InitOptions::new().managed(true))
        .unwrap();
    let writer = registry.session("writer").unwrap();
    {
        let mut conn = writer.conn::<MysqlConnection>().unwrap();
        diesel::sql_query(format!("INSERT INTO {} VALUES ('outer')", &*table))
            .execute(&mut *conn)
            .unwrap();
        let inner = conn.transaction::<(), DieselError, _>(|c| {
            diesel::sql_query(format!("INSERT INTO {} VALUES ('inner')", &*table)).execute(c)?;
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
fn a_lock_wait_timeout_is_transient() {
    let (url,) = urls!("SQLASSIST_TEST_MYSQL_URL");
    reset_thread();
    let table = Table::mysql(&url, "lwt", "id INT PRIMARY KEY, v INT NOT NULL");
    let mut holder = raw(&url);
    holder
        .batch_execute(&format!(
            "INSERT INTO {t} VALUES (1, 0); BEGIN; UPDATE {t} SET v = 1 WHERE id = 1",
            t = &*table
        ))
        .unwrap();
    let mut registry = Registry::new();
    registry
        .init_engine("writer", engine(&url), InitOptions::new().managed(true))
        .unwrap();
    let writer = registry.session("writer").unwrap();
    writer
        .execute("SET SESSION innodb_lock_wait_timeout = 1")
        .unwrap();
    let err = writer
        .execute(&format!("UPDATE {} SET v = 2 WHERE id = 1", &*table))
        .expect_err("the row is locked");
    assert!(err.is_transient(), "1205 must be transient: {err:?}");
    transaction::abort().unwrap();
    holder.batch_execute("ROLLBACK").unwrap();
    writer
        .execute("SET SESSION innodb_lock_wait_timeout = 50")
        .unwrap();
    transaction::abort().unwrap();
}

#[test]
fn unmanaged_session_commits_and_rolls_back_on_its_own_and_close_returns_connections() {
    let (url,) = urls!("SQLASSIST_TEST_MYSQL_URL");
    reset_thread();
    let table = Table::mysql(&url, "log", "name VARCHAR(64) NOT NULL");
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
    let log = registry.session("log").unwrap();
    log.execute(&format!("INSERT INTO {} VALUES ('committed')", &*table))
        .unwrap();
    log.commit().unwrap();
    log.execute(&format!("INSERT INTO {} VALUES ('pending')", &*table))
        .unwrap();
    transaction::abort().unwrap();
    assert!(log.in_transaction(), "abort() leaves unmanaged work alone");
    log.commit().unwrap();
    log.execute(&format!(
        "INSERT INTO {} VALUES ('never committed')",
        &*table
    ))
    .unwrap();
    // A managed session left with an open branch is rolled back by close_sessions().
    registry
        .session("writer")
        .unwrap()
        .execute(&format!(
            "INSERT INTO {} VALUES ('managed, dropped')",
            &*table
        ))
        .unwrap();
    transaction::get().unwrap().doom().unwrap();
    sqlassist::close_sessions().unwrap();
    transaction::abort().unwrap();
    for engine in [&log_engine, &writer_engine] {
        let state = engine.pool_state();
        assert!(state.connections >= 1, "{state:?}");
        assert_eq!(
            state.idle, state.connections,
            "every connection is back: {state:?}"
        );
    }
    assert_eq!(names(&url, &table), ["committed", "pending"]);
    // The pooled connections carry no open transaction or branch: they are reused.
    let writer = registry.session("writer").unwrap();
    writer
        .execute(&format!("INSERT INTO {} VALUES ('second')", &*table))
        .unwrap();
    transaction::commit().unwrap();
    assert_eq!(names(&url, &table), ["committed", "pending", "second"]);
}

// --- readers that cannot write, raw COMMIT ----------------------------------------------

#[test]
fn a_read_only_engine_cannot_write_after_set_session_transaction_read_write() {
    let (url,) = urls!("SQLASSIST_TEST_MYSQL_URL");
    reset_thread();
    let table = Table::mysql(&url, "ro_rw", "name VARCHAR(64) NOT NULL");
    for managed in [true, false] {
        let reader = unique("reader");
        let mut registry = Registry::new();
        registry
            .init_engine(
                &reader,
                engine_with(&url, |b| b.read_only(true)),
                InitOptions::new().managed(managed),
            )
            .unwrap();
        let session = registry.session(&reader).unwrap();
        // Inside a transaction MariaDB refuses to change the current one's access mode,
        // but accepts a new default for the next ones.
        session
            .execute("SET SESSION TRANSACTION READ WRITE")
            .unwrap();
        if managed {
            transaction::commit().unwrap();
        } else {
            session.commit().unwrap();
        }
        let err = session
            .execute(&format!("INSERT INTO {} VALUES ('sneaked')", &*table))
            .expect_err("a read-only engine's next transaction is read-only again");
        assert!(
            matches!(&err, Error::Database { source: DieselError::DatabaseError(_, info), .. }
                if !info.message().is_empty()),
            "managed={managed}: {err:?}"
        );
        if managed {
            let _ = transaction::commit();
            transaction::abort().unwrap();
        } else {
            session.rollback().unwrap();
        }
        session.close().unwrap();
        assert!(names(&url, &table).is_empty(), "managed={managed}");
    }
}

#[test]
fn a_raw_commit_inside_an_xa_branch_fails_and_the_branch_commits_whole() {
    let (url, admin) = urls!("SQLASSIST_TEST_MYSQL_URL", "SQLASSIST_TEST_MYSQL_ADMIN_URL");
    reset_thread();
    let table = Table::mysql(&url, "raw_c", "name VARCHAR(64) NOT NULL");
    let name = unique("writer");
    let mut registry = Registry::new();
    registry
        .init_engine(&name, engine(&url), InitOptions::new().managed(true))
        .unwrap();
    let writer = registry.session(&name).unwrap();
    writer
        .execute(&format!("INSERT INTO {} VALUES ('a')", &*table))
        .unwrap();
    for raw_end in ["COMMIT", "ROLLBACK"] {
        let err = writer
            .execute(raw_end)
            .expect_err("XA refuses a plain COMMIT/ROLLBACK");
        assert!(matches!(err, Error::Database { .. }), "{raw_end}: {err:?}");
    }
    assert!(
        names(&url, &table).is_empty(),
        "nothing committed by the raw COMMIT"
    );
    writer
        .execute(&format!("INSERT INTO {} VALUES ('b')", &*table))
        .unwrap();
    transaction::commit().unwrap();
    assert_eq!(names(&url, &table), ["a", "b"]);
    assert_eq!(xa_prepared(&admin, &name), 0);
}

#[test]
fn lock_errors_are_transient_by_error_number_whatever_the_message_language() {
    let (url,) = urls!("SQLASSIST_TEST_MYSQL_URL");
    reset_thread();
    let table = Table::mysql(&url, "lwt_de", "id INT PRIMARY KEY, v INT NOT NULL");
    let mut holder = raw(&url);
    holder
        .batch_execute(&format!(
            "INSERT INTO {t} VALUES (1, 0); BEGIN; UPDATE {t} SET v = 1 WHERE id = 1",
            t = &*table
        ))
        .unwrap();
    let name = unique("writer");
    let mut registry = Registry::new();
    registry
        .init_engine(&name, engine(&url), InitOptions::new().managed(true))
        .unwrap();
    let writer = registry.session(&name).unwrap();
    writer
        .execute("SET SESSION lc_messages = 'de_DE', SESSION innodb_lock_wait_timeout = 1")
        .unwrap();
    // A real lock wait timeout (1205), reported in German.
    let err = writer
        .execute(&format!("UPDATE {} SET v = 2 WHERE id = 1", &*table))
        .expect_err("the row is locked");
    assert!(
        !err.to_string().contains("Lock wait timeout"),
        "the message is German: {err}"
    );
    assert!(err.is_transient(), "1205 must be transient: {err:?}");
    transaction::abort().unwrap();
    holder.batch_execute("ROLLBACK").unwrap();
    // Error numbers raised with a message of the application's own.
    for (errno, transient) in [(1205, true), (1213, true), (1062, false)] {
        let err = writer
            .execute(&format!(
                "SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = {errno}, MESSAGE_TEXT = 'eigene Meldung'"
            ))
            .expect_err("SIGNAL fails");
        assert_eq!(err.is_transient(), transient, "{errno}: {err:?}");
        transaction::abort().unwrap();
    }
    sqlassist::close_sessions().unwrap();
}
