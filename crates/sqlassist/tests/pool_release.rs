//! Connections go back to the pool when the transaction ends, as zope.sqlalchemy closes
//! its sessions after commit and abort: after `transaction::commit()`, `transaction::abort()`
//! and a failed commit (managed sessions), after `Session::commit()` and
//! `Session::rollback()` (unmanaged sessions); only after phase two for a prepared branch.
//! `keep_session = true` keeps the connection until `close_sessions()`. An application that
//! never calls `close_sessions()` does not starve its pool.
//!
//! SQLite tests use files in a temporary directory; PostgreSQL and MariaDB tests read
//! `SQLASSIST_TEST_PG_URL`(`_2`) and `SQLASSIST_TEST_MYSQL_URL`(`_2`) (see
//! `tests/common/mod.rs` for skipping and `SQLASSIST_REQUIRE_SERVERS`). Every test uses its
//! own uniquely named tables and drops them at the end.
#![allow(clippy::unwrap_used)]

mod common;

#[cfg(any(feature = "postgres", feature = "mysql"))]
use std::cell::RefCell;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use std::rc::Rc;
use std::sync::Barrier;
use std::time::Duration;

use sqlassist::{
    DatabaseUrl, Engine, EngineOptions, EngineOptionsBuilder, InitOptions, PoolState, Registry,
};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use transaction::{BoxError, Branch, DecisionLog, TransactionId, TransactionManager};

use common::{reset_thread, unique, TempDir};

fn engine_with(url: &str, f: impl FnOnce(EngineOptionsBuilder) -> EngineOptionsBuilder) -> Engine {
    let options = f(
        EngineOptions::builder(DatabaseUrl::parse(url).expect("a valid url"))
            .pool_size(2)
            .busy_timeout(Duration::from_secs(10)),
    )
    .build()
    .expect("valid options");
    Engine::new(options).expect("an engine")
}

/// A uniquely named table with one integer column `v`, created and counted on plain
/// connections outside sqlassist. Server tables drop themselves; a SQLite table goes with
/// its test's directory.
struct Table {
    url: String,
    name: String,
    _drop: Option<common::Table>,
}

/// The file of a `sqlite:///<absolute path>` URL.
fn sqlite_file(url: &str) -> Option<&std::path::Path> {
    url.strip_prefix("sqlite:///").map(std::path::Path::new)
}

impl Table {
    fn create(url: &str) -> Self {
        let columns = "v INTEGER NOT NULL";
        let (name, drop) = if let Some(file) = sqlite_file(url) {
            let name = unique("pool");
            common::lite::exec(file, &format!("CREATE TABLE {name} ({columns})"));
            (name, None)
        } else {
            let table = server_table(url, columns);
            (table.to_string(), Some(table))
        };
        Self {
            url: url.to_owned(),
            name,
            _drop: drop,
        }
    }

    fn rows(&self) -> i64 {
        if let Some(file) = sqlite_file(&self.url) {
            return common::lite::count(file, &self.name);
        }
        #[cfg(feature = "mysql")]
        if self.url.starts_with("mysql") {
            return common::my::count(&self.url, &self.name);
        }
        #[cfg(feature = "postgres")]
        return common::pg::count(&self.url, &self.name);
        #[allow(unreachable_code)]
        {
            panic!("no backend for {}", self.url)
        }
    }
}

#[allow(unused_variables)]
fn server_table(url: &str, columns: &str) -> common::Table {
    #[cfg(feature = "mysql")]
    if url.starts_with("mysql") {
        return common::Table::mysql(url, "pool", columns);
    }
    #[cfg(feature = "postgres")]
    return common::Table::pg(url, "pool", columns);
    #[allow(unreachable_code)]
    {
        panic!("no backend for {url}")
    }
}

impl std::ops::Deref for Table {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

#[track_caller]
fn assert_all_idle(engine: &Engine, when: &str) {
    let state = engine.pool_state();
    assert!(state.connections >= 1, "{when}: {state:?}");
    assert_eq!(
        state.idle, state.connections,
        "{when}: the connection is back in the pool: {state:?}"
    );
}

#[track_caller]
fn assert_held(engine: &Engine, when: &str) {
    let state = engine.pool_state();
    assert_eq!(
        state.idle + 1,
        state.connections,
        "{when}: the session holds its connection: {state:?}"
    );
}

fn sqlite_url(dir: &TempDir, name: &str) -> String {
    format!("sqlite:///{}", dir.file(name).display())
}

/// Makes the pending commit of a session fail until what it returns is dropped.
type MakeCommitFail<'a> = dyn Fn(&sqlassist::Session) -> Box<dyn std::any::Any> + 'a;

/// One managed engine `w` on `url`: commit, abort, a read-only transaction and (with
/// `fail`, which makes the pending commit fail until what it returns is dropped) a failed
/// commit each return the connection; the session stays open.
fn every_end_returns_the_connection(
    url: &str,
    configure: fn(EngineOptionsBuilder) -> EngineOptionsBuilder,
    fail: Option<&MakeCommitFail<'_>>,
) {
    reset_thread();
    let table = Table::create(url);
    let engine = engine_with(url, configure);
    let mut registry = Registry::new();
    registry
        .init_engine("w", engine.clone(), InitOptions::new().managed(true))
        .unwrap();
    let w = registry.session("w").unwrap();
    let insert = format!("INSERT INTO {} VALUES (1)", &*table);

    w.execute(&insert).unwrap();
    assert_held(&engine, "while the transaction is open");
    transaction::commit().unwrap();
    assert_all_idle(&engine, "after transaction::commit()");

    w.execute(&insert).unwrap();
    transaction::abort().unwrap();
    assert_all_idle(&engine, "after transaction::abort()");

    w.query_i64(&format!("SELECT COUNT(*) FROM {}", &*table))
        .unwrap();
    transaction::commit().unwrap();
    assert_all_idle(&engine, "after a read-only transaction");

    if let Some(fail) = fail {
        w.execute(&insert).unwrap();
        let failing = fail(&w);
        assert!(
            transaction::commit().is_err(),
            "the commit was made to fail"
        );
        drop(failing);
        assert_all_idle(&engine, "after a failed commit, before abort()");
        transaction::abort().unwrap();
        assert_all_idle(&engine, "after the abort that follows a failed commit");
    }

    assert_eq!(
        sqlassist::open_sessions(),
        1,
        "the session itself stays open"
    );
    w.execute(&insert).unwrap();
    transaction::commit().unwrap();
    assert_eq!(table.rows(), 2, "the two committed rows, nothing else");
    assert_eq!(
        engine.pool_state().connections,
        1,
        "one connection served all"
    );
    sqlassist::close_sessions().unwrap();
}

/// `keep_session = true`: the session keeps its connection across transactions until
/// `close_sessions()`.
fn keep_session_keeps_the_connection(url: &str) {
    reset_thread();
    let table = Table::create(url);
    let engine = engine_with(url, |b| b.keep_session(true));
    let mut registry = Registry::new();
    registry
        .init_engine("w", engine.clone(), InitOptions::new().managed(true))
        .unwrap();
    let w = registry.session("w").unwrap();
    w.execute(&format!("INSERT INTO {} VALUES (1)", &*table))
        .unwrap();
    transaction::commit().unwrap();
    assert_held(&engine, "after commit with keep_session");
    w.execute(&format!("INSERT INTO {} VALUES (2)", &*table))
        .unwrap();
    transaction::abort().unwrap();
    assert_held(&engine, "after abort with keep_session");
    sqlassist::close_sessions().unwrap();
    assert_all_idle(&engine, "after close_sessions()");
    assert_eq!(table.rows(), 1);
}

/// An unmanaged session's own `commit()` and `rollback()` end its transaction and return
/// the connection.
fn unmanaged_commit_and_rollback_return_the_connection(url: &str) {
    reset_thread();
    let table = Table::create(url);
    let engine = engine_with(url, |b| b);
    let mut registry = Registry::new();
    registry
        .init_engine("log", engine.clone(), InitOptions::new())
        .unwrap();
    let log = registry.session("log").unwrap();
    log.execute(&format!("INSERT INTO {} VALUES (1)", &*table))
        .unwrap();
    assert_held(&engine, "while the unmanaged transaction is open");
    log.commit().unwrap();
    assert_all_idle(&engine, "after Session::commit()");
    log.execute(&format!("INSERT INTO {} VALUES (2)", &*table))
        .unwrap();
    log.rollback().unwrap();
    assert_all_idle(&engine, "after Session::rollback()");
    assert_eq!(table.rows(), 1);
    sqlassist::close_sessions().unwrap();
}

/// Eight workers on a pool of three, each doing transactions (commits and aborts) and
/// never calling `close_sessions()`; every worker keeps its thread (and so its sessions)
/// until all are done. Returns the number of committed rows.
fn eight_workers_without_close_sessions(url: &str, table: &str) -> i64 {
    reset_thread();
    let engine = engine_with(url, |b| b.pool_size(3).pool_timeout(Duration::from_secs(2)));
    let mut registry = Registry::new();
    registry
        .init_engine("w", engine.clone(), InitOptions::new().managed(true))
        .unwrap();
    let barrier = Barrier::new(8);
    let outcomes: Vec<Result<i64, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (registry, barrier) = (&registry, &barrier);
                s.spawn(move || {
                    let work = || -> Result<i64, String> {
                        let mut committed = 0;
                        for i in 0..10 {
                            let w = registry.session("w").map_err(|e| e.to_string())?;
                            w.execute(&format!("INSERT INTO {table} VALUES ({})", t * 100 + i))
                                .map_err(|e| format!("worker {t}, transaction {i}: {e}"))?;
                            if i % 3 == 2 {
                                transaction::abort().map_err(|e| e.to_string())?;
                            } else {
                                transaction::commit().map_err(|e| e.to_string())?;
                                committed += 1;
                            }
                        }
                        Ok(committed)
                    };
                    let outcome = work();
                    let _ = transaction::abort();
                    // Hold this thread's sessions until every worker is done.
                    barrier.wait();
                    outcome
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(failures.is_empty(), "workers failed: {failures:#?}");
    let state: PoolState = engine.pool_state();
    assert!(state.connections <= 3, "{state:?}");
    assert_eq!(
        state.idle, state.connections,
        "no connection leaked: {state:?}"
    );
    outcomes.into_iter().map(|o| o.unwrap_or(0)).sum()
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
/// A decision log that notes, when the coordinator records its decision (every branch
/// prepared, none finished), how many connections each engine's pool has idle.
struct IdleAtDecision {
    engines: Vec<Engine>,
    seen: RefCell<Vec<Vec<PoolState>>>,
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl DecisionLog for IdleAtDecision {
    fn record_commit(&self, _txn: TransactionId, _branches: &[Branch]) -> Result<(), BoxError> {
        self.seen
            .borrow_mut()
            .push(self.engines.iter().map(Engine::pool_state).collect());
        Ok(())
    }

    fn forget(&self, _txn: TransactionId) -> Result<(), BoxError> {
        Ok(())
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
/// Two managed engines that both write: the connections stay with their prepared branches
/// until phase two, then both go back.
fn two_phase_returns_connections_only_after_phase_two(url1: &str, url2: &str) {
    reset_thread();
    let t1 = Table::create(url1);
    let t2 = Table::create(url2);
    let (e1, e2) = (engine_with(url1, |b| b), engine_with(url2, |b| b));
    let mut registry = Registry::new();
    registry
        .init_engine("one", e1.clone(), InitOptions::new().managed(true))
        .unwrap();
    registry
        .init_engine("two", e2.clone(), InitOptions::new().managed(true))
        .unwrap();
    let log = Rc::new(IdleAtDecision {
        engines: vec![e1.clone(), e2.clone()],
        seen: RefCell::new(Vec::new()),
    });
    let manager = TransactionManager::builder()
        .decision_log(log.clone() as Rc<dyn DecisionLog>)
        .build();
    manager.scope(|| {
        for round in 0..2 {
            registry
                .session("one")
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES ({round})", &*t1))
                .unwrap();
            registry
                .session("two")
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES ({round})", &*t2))
                .unwrap();
            transaction::commit().unwrap();
            assert_all_idle(&e1, "after phase two");
            assert_all_idle(&e2, "after phase two");
        }
        sqlassist::close_sessions().unwrap();
    });
    let seen = log.seen.borrow();
    assert_eq!(seen.len(), 2, "two two-phase commits: {seen:?}");
    for states in seen.iter() {
        for state in states {
            assert_eq!(
                state.idle + 1,
                state.connections,
                "a prepared branch keeps its connection until phase two: {states:?}"
            );
        }
    }
    assert_eq!((t1.rows(), t2.rows()), (2, 2));
}

// ---------------------------------------------------------------------------------------
// SQLite

#[test]
fn sqlite_every_end_of_a_managed_transaction_returns_the_connection() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let dir = TempDir::new("pool");
    let path = dir.file("db.sqlite").display().to_string();
    // A reader inside a transaction holds a shared lock: the writer's COMMIT cannot take
    // the exclusive lock within its (short) busy timeout and fails.
    let block_commit = |_: &sqlassist::Session| -> Box<dyn std::any::Any> {
        let mut reader = diesel::SqliteConnection::establish(&path).unwrap();
        reader
            .batch_execute("BEGIN; SELECT COUNT(*) FROM sqlite_master;")
            .unwrap();
        Box::new(reader)
    };
    every_end_returns_the_connection(
        &sqlite_url(&dir, "db.sqlite"),
        |b| b.busy_timeout(Duration::from_millis(100)),
        Some(&block_commit),
    );
}

#[test]
fn sqlite_keep_session_keeps_the_connection_until_close_sessions() {
    let dir = TempDir::new("pool");
    keep_session_keeps_the_connection(&sqlite_url(&dir, "db.sqlite"));
}

#[test]
fn sqlite_unmanaged_commit_and_rollback_return_the_connection() {
    let dir = TempDir::new("pool");
    unmanaged_commit_and_rollback_return_the_connection(&sqlite_url(&dir, "db.sqlite"));
}

#[test]
fn sqlite_eight_workers_on_a_pool_of_three_without_close_sessions_never_time_out() {
    let dir = TempDir::new("pool");
    let url = sqlite_url(&dir, "db.sqlite");
    let table = Table::create(&url);
    let committed = eight_workers_without_close_sessions(&url, &table);
    assert_eq!(committed, 8 * 7);
    assert_eq!(table.rows(), committed);
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

#[cfg(feature = "postgres")]
#[test]
fn postgres_every_end_of_a_managed_transaction_returns_the_connection() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    // A statement that fails leaves the PostgreSQL transaction failed: its commit fails.
    let fail_a_statement = |w: &sqlassist::Session| -> Box<dyn std::any::Any> {
        assert!(w.execute("SELECT no_such_column_anywhere").is_err());
        Box::new(())
    };
    every_end_returns_the_connection(&url, |b| b, Some(&fail_a_statement));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_keep_session_keeps_the_connection_until_close_sessions() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    keep_session_keeps_the_connection(&url);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_unmanaged_commit_and_rollback_return_the_connection() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    unmanaged_commit_and_rollback_return_the_connection(&url);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_eight_workers_on_a_pool_of_three_without_close_sessions_never_time_out() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    let table = Table::create(&url);
    let committed = eight_workers_without_close_sessions(&url, &table);
    assert_eq!(committed, 8 * 7);
    assert_eq!(table.rows(), committed);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_two_phase_commit_returns_connections_only_after_phase_two() {
    let (Some(url1), Some(url2)) = (
        common::pg_url("SQLASSIST_TEST_PG_URL"),
        common::pg_url("SQLASSIST_TEST_PG_URL_2"),
    ) else {
        return;
    };
    two_phase_returns_connections_only_after_phase_two(&url1, &url2);
}

// ---------------------------------------------------------------------------------------
// MariaDB

#[cfg(feature = "mysql")]
#[test]
fn mariadb_every_end_of_a_managed_transaction_returns_the_connection() {
    let Some(url) = common::mysql_url("SQLASSIST_TEST_MYSQL_URL") else {
        return;
    };
    every_end_returns_the_connection(&url, |b| b, None);
}

#[cfg(feature = "mysql")]
#[test]
fn mariadb_keep_session_keeps_the_connection_until_close_sessions() {
    let Some(url) = common::mysql_url("SQLASSIST_TEST_MYSQL_URL") else {
        return;
    };
    keep_session_keeps_the_connection(&url);
}

#[cfg(feature = "mysql")]
#[test]
fn mariadb_unmanaged_commit_and_rollback_return_the_connection() {
    let Some(url) = common::mysql_url("SQLASSIST_TEST_MYSQL_URL") else {
        return;
    };
    unmanaged_commit_and_rollback_return_the_connection(&url);
}

#[cfg(feature = "mysql")]
#[test]
fn mariadb_eight_workers_on_a_pool_of_three_without_close_sessions_never_time_out() {
    let Some(url) = common::mysql_url("SQLASSIST_TEST_MYSQL_URL") else {
        return;
    };
    let table = Table::create(&url);
    let committed = eight_workers_without_close_sessions(&url, &table);
    assert_eq!(committed, 8 * 7);
    assert_eq!(table.rows(), committed);
}

#[cfg(feature = "mysql")]
#[test]
fn mariadb_xa_branches_keep_their_connections_until_phase_two() {
    let (Some(url1), Some(url2)) = (
        common::mysql_url("SQLASSIST_TEST_MYSQL_URL"),
        common::mysql_url("SQLASSIST_TEST_MYSQL_URL_2"),
    ) else {
        return;
    };
    two_phase_returns_connections_only_after_phase_two(&url1, &url2);
}

// ---------------------------------------------------------------------------------------
// Checkout tests (pool_pre_ping) skipped within pool_pre_ping_window

/// Runs `n` managed transactions of one insert each on `engine`.
fn transactions(engine: &Engine, table: &str, n: usize) {
    let mut registry = Registry::new();
    registry
        .init_engine("w", engine.clone(), InitOptions::new().managed(true))
        .unwrap();
    let w = registry.session("w").unwrap();
    for i in 0..n {
        w.execute(&format!("INSERT INTO {table} VALUES ({i})"))
            .unwrap();
        transaction::commit().unwrap();
    }
    sqlassist::close_sessions().unwrap();
}

/// A connection returned just now is handed out untested; with a zero window every
/// checkout is tested; a connection idle past the window is tested once.
fn checkout_tests_follow_the_window(url: &str) {
    reset_thread();
    let table = Table::create(url);

    let hot = engine_with(url, |b| b.pool_pre_ping_window(Duration::from_secs(3600)));
    transactions(&hot, &table, 5);
    assert_eq!(
        hot.pool_state().pings,
        0,
        "connections used within the window are not tested: {:?}",
        hot.pool_state()
    );

    let always = engine_with(url, |b| b.pool_pre_ping_window(Duration::ZERO));
    transactions(&always, &table, 5);
    assert_eq!(
        always.pool_state().pings,
        5,
        "a zero window tests every checkout: {:?}",
        always.pool_state()
    );

    let window = Duration::from_millis(100);
    let idle = engine_with(url, |b| b.pool_pre_ping_window(window));
    transactions(&idle, &table, 1);
    let before = idle.pool_state().pings;
    std::thread::sleep(window * 3);
    transactions(&idle, &table, 1);
    assert_eq!(
        idle.pool_state().pings,
        before + 1,
        "a connection idle past the window is tested at checkout"
    );

    let off = engine_with(url, |b| {
        b.pool_pre_ping(false).pool_pre_ping_window(Duration::ZERO)
    });
    transactions(&off, &table, 3);
    assert_eq!(
        off.pool_state().pings,
        0,
        "pool_pre_ping = false tests nothing"
    );
    assert_eq!(table.rows(), 5 + 5 + 2 + 3);
}

#[test]
fn sqlite_checkout_tests_are_skipped_for_a_connection_used_within_the_window() {
    let dir = TempDir::new("pool");
    checkout_tests_follow_the_window(&sqlite_url(&dir, "db.sqlite"));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_checkout_tests_are_skipped_for_a_connection_used_within_the_window() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    checkout_tests_follow_the_window(&url);
}

/// A PostgreSQL connection killed while idle in the pool, past the window: the checkout
/// test notices, and the session gets a fresh connection.
#[cfg(feature = "postgres")]
#[test]
fn postgres_a_dead_connection_idle_past_the_window_is_replaced_at_checkout() {
    let (Some(url), Some(admin)) = (
        common::pg_url("SQLASSIST_TEST_PG_URL"),
        common::pg_url("SQLASSIST_TEST_PG_ADMIN_URL"),
    ) else {
        return;
    };
    reset_thread();
    let window = Duration::from_millis(100);
    let engine = engine_with(&url, |b| b.pool_size(1).pool_pre_ping_window(window));
    let mut registry = Registry::new();
    registry
        .init_engine("w", engine.clone(), InitOptions::new().managed(true))
        .unwrap();
    let w = registry.session("w").unwrap();
    let first = w.query_i64("SELECT pg_backend_pid()").unwrap();
    transaction::commit().unwrap();
    assert_all_idle(&engine, "after the first transaction");

    let killed = common::pg::scalar(
        &admin,
        &format!("SELECT CASE WHEN pg_terminate_backend({first}) THEN 1 ELSE 0 END"),
    );
    assert_eq!(killed, 1, "the idle pooled connection was terminated");
    for _ in 0..50 {
        let alive = common::pg::scalar(
            &admin,
            &format!("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = {first}"),
        );
        if alive == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(window * 3);

    let before = engine.pool_state().pings;
    let second = w.query_i64("SELECT pg_backend_pid()").unwrap();
    transaction::commit().unwrap();
    assert_ne!(second, first, "a fresh connection replaced the dead one");
    assert!(
        engine.pool_state().pings > before,
        "the dead connection was tested: {:?}",
        engine.pool_state()
    );
    sqlassist::close_sessions().unwrap();
}
