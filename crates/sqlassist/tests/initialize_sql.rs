//! `initialize_sql` against real PostgreSQL and MariaDB servers and real SQLite files: the routine runs once and
//! commits through the transaction manager; a routine that fails, or whose commit fails,
//! leaves nothing applied and the error names the engine; other work already in the
//! thread's transaction is refused, not committed with the setup.

mod common;

use std::cell::Cell;
use std::path::Path;

use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry};
use transaction::BoxError;

use common::{reset_thread, unique, TempDir};

fn registry(name: &str, url: &str, managed: bool) -> Registry {
    let options = EngineOptions::builder(DatabaseUrl::parse(url).expect("a valid url"))
        .pool_size(2)
        .build()
        .expect("valid options");
    let mut registry = Registry::new();
    registry
        .init_engine(
            name,
            Engine::new(options).expect("an engine"),
            InitOptions::new().managed(managed),
        )
        .expect("register");
    registry
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite:///{}", path.display())
}

#[track_caller]
fn assert_names_engine(err: &Error, expected: &str) {
    match err {
        Error::InitializeSql { engine, .. } => assert_eq!(engine, expected),
        other => panic!("expected InitializeSql, got {other:?}"),
    }
    assert!(err.to_string().contains(&format!("`{expected}`")), "{err}");
}

#[test]
fn the_routine_runs_once_and_commits_through_the_manager_on_sqlite_and_postgres() {
    let dir = TempDir::new("init-sql");
    let path = dir.file("app.db");
    let lite = registry("lite_writer", &sqlite_url(&path), true);
    let calls = Cell::new(0);
    sqlassist::initialize_sql(&lite, "lite_writer", |session| {
        calls.set(calls.get() + 1);
        session.execute("CREATE TABLE setting (key TEXT PRIMARY KEY, value TEXT)")?;
        session.execute("INSERT INTO setting VALUES ('theme', 'dark'), ('lang', 'fr')")?;
        Ok::<(), Error>(())
    })
    .expect("setup on sqlite");
    assert_eq!(calls.get(), 1);
    assert_eq!(common::lite::count(&path, "setting"), 2, "committed");
    assert_eq!(
        lite.engine("lite_writer")
            .expect("engine")
            .pool_state()
            .idle,
        1
    );

    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    let table = unique("init_sql");
    let _drop = Drop(url.clone(), table.clone());
    let pg = registry("pg_writer", &url, true);
    sqlassist::initialize_sql(&pg, "pg_writer", |session| {
        calls.set(calls.get() + 1);
        session.execute(&format!("CREATE TABLE {table} (name text PRIMARY KEY)"))?;
        session.execute(&format!("INSERT INTO {table} VALUES ('a'), ('b')"))?;
        Ok::<(), Error>(())
    })
    .expect("setup on postgres");
    assert_eq!(calls.get(), 2);
    assert_eq!(common::pg::names(&url, &table), ["a", "b"]);
    // The manager committed: the thread has no transaction with work left.
    assert_eq!(transaction::get().expect("current").resource_count(), 0);
}

/// Drops a PostgreSQL table at the end of a test.
struct Drop(String, String);

impl std::ops::Drop for Drop {
    fn drop(&mut self) {
        reset_thread();
        common::pg::exec(&self.0, &format!("DROP TABLE IF EXISTS {}", self.1));
    }
}

#[test]
fn a_failing_routine_leaves_nothing_applied_and_names_the_engine() {
    let dir = TempDir::new("init-sql-fail");
    let path = dir.file("app.db");
    common::lite::exec(&path, "CREATE TABLE setting (key TEXT PRIMARY KEY)");
    let lite = registry("lite_writer", &sqlite_url(&path), true);
    let err = sqlassist::initialize_sql(&lite, "lite_writer", |session| {
        session.execute("INSERT INTO setting VALUES ('theme')")?;
        session.execute("CREATE TABLE extra (v INTEGER)")?;
        Err::<(), BoxError>("the routine gave up".into())
    })
    .expect_err("the routine failed");
    assert_names_engine(&err, "lite_writer");
    // Whatever the application commits next, the routine's work is not part of it.
    transaction::commit().expect("commit what the thread has");
    assert_eq!(
        common::lite::count(&path, "setting"),
        0,
        "the insert was rolled back"
    );
    let tables = common::lite::count(&path, "sqlite_master WHERE name = 'extra'");
    assert_eq!(tables, 0, "the DDL was rolled back");

    // A statement of the routine that fails is the routine's error.
    let err = sqlassist::initialize_sql(&lite, "lite_writer", |session| {
        session.execute("INSERT INTO setting VALUES ('theme')")?;
        session.execute("INSERT INTO missing_table VALUES (1)")?;
        Ok::<(), Error>(())
    })
    .expect_err("the second statement failed");
    assert_names_engine(&err, "lite_writer");
    assert_eq!(common::lite::count(&path, "setting"), 0);

    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    let table = unique("init_sql_fail");
    let _drop = Drop(url.clone(), table.clone());
    let pg = registry("pg_writer", &url, true);
    let err = sqlassist::initialize_sql(&pg, "pg_writer", |session| {
        session.execute(&format!("CREATE TABLE {table} (name text)"))?;
        session.execute(&format!("INSERT INTO {table} VALUES ('a')"))?;
        Err::<(), BoxError>("the routine gave up".into())
    })
    .expect_err("the routine failed");
    assert_names_engine(&err, "pg_writer");
    transaction::commit().expect("commit what the thread has");
    let exists = common::pg::scalar(
        &url,
        &format!("SELECT COUNT(*) FROM pg_class WHERE relname = '{table}'"),
    );
    assert_eq!(exists, 0, "the CREATE TABLE was rolled back");
}

#[test]
fn a_failed_commit_leaves_nothing_applied_and_names_the_engine() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    // A deferred unique constraint fails only at COMMIT.
    let table = common::Table::pg(
        &url,
        "init_sql_commit",
        "v integer, CONSTRAINT one UNIQUE (v) DEFERRABLE INITIALLY DEFERRED",
    );
    let pg = registry("pg_writer", &url, true);
    let name = table.to_string();
    let err = sqlassist::initialize_sql(&pg, "pg_writer", |session| {
        session.execute(&format!("INSERT INTO {name} VALUES (1), (2), (1)"))?;
        Ok::<(), Error>(())
    })
    .expect_err("the commit fails on the deferred constraint");
    assert_names_engine(&err, "pg_writer");
    assert_eq!(common::pg::count(&url, &table), 0);
    // The thread can work again at once.
    sqlassist::initialize_sql(&pg, "pg_writer", |session| {
        session.execute(&format!("INSERT INTO {name} VALUES (1)"))?;
        Ok::<(), Error>(())
    })
    .expect("a later setup commits");
    assert_eq!(common::pg::count(&url, &table), 1);
}

#[test]
fn an_unmanaged_engine_commits_through_its_session() {
    let dir = TempDir::new("init-sql-unmanaged");
    let path = dir.file("app.db");
    let lite = registry("log", &sqlite_url(&path), false);
    sqlassist::initialize_sql(&lite, "log", |session| {
        session.execute("CREATE TABLE entry (m TEXT)")?;
        session.execute("INSERT INTO entry VALUES ('started')")?;
        Ok::<(), Error>(())
    })
    .expect("setup");
    assert_eq!(common::lite::count(&path, "entry"), 1);
}

#[test]
fn other_work_in_the_thread_transaction_is_refused_not_committed_with_the_setup() {
    let dir = TempDir::new("init-sql-busy");
    let path = dir.file("app.db");
    common::lite::exec(&path, "CREATE TABLE t (v INTEGER)");
    let mut lite = registry("writer", &sqlite_url(&path), true);
    let other = dir.file("other.db");
    common::lite::exec(&other, "CREATE TABLE t (v INTEGER)");
    let options = EngineOptions::new(DatabaseUrl::parse(&sqlite_url(&other)).expect("url"));
    lite.init_engine(
        "other",
        Engine::new(options).expect("engine"),
        InitOptions::new().managed(true),
    )
    .expect("register");

    lite.session("other")
        .expect("session")
        .execute("INSERT INTO t VALUES (1)")
        .expect("pending work");
    let calls = Cell::new(0);
    let err = sqlassist::initialize_sql(&lite, "writer", |_| {
        calls.set(calls.get() + 1);
        Ok::<(), Error>(())
    })
    .expect_err("the thread's transaction holds other work");
    assert_names_engine(&err, "writer");
    assert_eq!(calls.get(), 0, "the routine did not run");
    transaction::abort().expect("abort the other work");
    sqlassist::close_sessions().expect("close");
    assert_eq!(
        common::lite::count(&other, "t"),
        0,
        "the other work was not committed"
    );
}

/// Drops a MariaDB table at the end of a test.
struct DropMy(String, String);

impl std::ops::Drop for DropMy {
    fn drop(&mut self) {
        reset_thread();
        common::my::exec(&self.0, &format!("DROP TABLE IF EXISTS {}", self.1));
    }
}

#[test]
fn on_mariadb_the_routine_commits_through_the_manager_and_a_failing_one_leaves_nothing() {
    let Some(url) = common::mysql_url("SQLASSIST_TEST_MYSQL_URL") else {
        return;
    };
    // MariaDB commits DDL implicitly, so the table exists first and the routine only
    // writes rows, as a routine on MariaDB should.
    let table = unique("reflect_init_sql");
    common::my::exec(
        &url,
        &format!("CREATE TABLE {table} (name VARCHAR(20) PRIMARY KEY)"),
    );
    let _drop = DropMy(url.clone(), table.clone());
    let my = registry("my_writer", &url, true);
    let calls = Cell::new(0);
    sqlassist::initialize_sql(&my, "my_writer", |session| {
        calls.set(calls.get() + 1);
        session.execute(&format!("INSERT INTO {table} VALUES ('a'), ('b')"))?;
        Ok::<(), Error>(())
    })
    .expect("setup on mariadb");
    assert_eq!(calls.get(), 1);
    assert_eq!(common::my::names(&url, &table), ["a", "b"]);
    assert_eq!(transaction::get().expect("current").resource_count(), 0);

    let err = sqlassist::initialize_sql(&my, "my_writer", |session| {
        session.execute(&format!("INSERT INTO {table} VALUES ('c')"))?;
        Err::<(), BoxError>("the routine gave up".into())
    })
    .expect_err("the routine failed");
    assert_names_engine(&err, "my_writer");
    transaction::commit().expect("commit what the thread has");
    assert_eq!(
        common::my::names(&url, &table),
        ["a", "b"],
        "the insert was rolled back"
    );
}
