//! Embedded migrations on PostgreSQL, MariaDB and a SQLite file: applied once on the
//! writer, refused on a read-only engine before anything runs.
//!
//! The PostgreSQL and MariaDB migrations create `migrate_items_<backend>` and record their
//! version in Diesel's `__diesel_schema_migrations`; the test removes both afterwards.

#![allow(clippy::unwrap_used)] // a test fails loudly on any unexpected error

mod common;

use diesel::connection::SimpleConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use sqlassist::{
    run_pending_migrations, DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry,
};

const PG: EmbeddedMigrations = embed_migrations!("tests/migrations/postgres");
const MYSQL: EmbeddedMigrations = embed_migrations!("tests/migrations/mysql");
const SQLITE: EmbeddedMigrations = embed_migrations!("tests/migrations/sqlite");
const VERSION: &str = "20261207000001";

fn engine(url: &str, read_only: bool) -> Engine {
    let options = EngineOptions::builder(DatabaseUrl::parse(url).expect("a valid url"))
        .read_only(read_only)
        .pool_size(1)
        .build()
        .expect("valid options");
    Engine::new(options).expect("an engine")
}

fn scenario(
    writer_url: &str,
    reader_url: &str,
    migrations: fn() -> EmbeddedMigrations,
    table: &str,
) {
    let mut registry = Registry::new();
    registry
        .init_engine("reader", engine(reader_url, true), InitOptions::new())
        .unwrap();
    registry
        .init_engine("writer", engine(writer_url, false), InitOptions::new())
        .unwrap();
    let err = run_pending_migrations(&registry, "reader", migrations()).unwrap_err();
    assert!(
        matches!(err, Error::MigrationsOnReadOnlyEngine { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "engine `reader` is read-only: run migrations on the writer"
    );
    let writer = registry.session("writer").unwrap();
    assert!(
        writer
            .query_i64(&format!("SELECT COUNT(*) FROM {table}"))
            .is_err(),
        "nothing ran on the read-only engine"
    );
    writer.rollback().unwrap();

    assert_eq!(
        run_pending_migrations(&registry, "writer", migrations()).unwrap(),
        [VERSION]
    );
    assert!(run_pending_migrations(&registry, "writer", migrations())
        .unwrap()
        .is_empty());
    assert_eq!(
        writer
            .query_i64(&format!("SELECT COUNT(*) FROM {table}"))
            .unwrap(),
        0
    );
    writer.rollback().unwrap();
}

fn cleanup_sql(table: &str) -> String {
    format!(
        "DROP TABLE IF EXISTS {table}; DELETE FROM __diesel_schema_migrations WHERE version = '{VERSION}'"
    )
}

#[test]
fn postgres_migrations_run_once_on_the_writer_and_are_refused_on_a_read_only_engine() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    let table = "migrate_items_postgres";
    let clean = || {
        let _ = diesel::PgConnection::establish(&url)
            .unwrap()
            .batch_execute(&cleanup_sql(table));
    };
    clean();
    let outcome = std::panic::catch_unwind(|| scenario(&url, &url, || PG, table));
    let _ = sqlassist::close_sessions();
    clean();
    outcome.unwrap();
}

#[test]
fn mariadb_migrations_run_once_on_the_writer_and_are_refused_on_a_read_only_engine() {
    let Some(url) = common::mysql_url("SQLASSIST_TEST_MYSQL_URL") else {
        return;
    };
    let table = "migrate_items_mysql";
    let clean = || {
        let _ = diesel::MysqlConnection::establish(&url)
            .unwrap()
            .batch_execute(&cleanup_sql(table));
    };
    clean();
    let outcome = std::panic::catch_unwind(|| scenario(&url, &url, || MYSQL, table));
    let _ = sqlassist::close_sessions();
    clean();
    outcome.unwrap();
}

#[test]
fn sqlite_migrations_run_once_on_the_writer_and_are_refused_on_a_read_only_engine() {
    let dir = common::TempDir::new("migrate");
    let path = dir.file("m.db");
    let url = format!("sqlite:///{}", path.display());
    // A read-only engine cannot create the file: create it first.
    diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    scenario(
        &url,
        &format!("{url}?mode=ro"),
        || SQLITE,
        "migrate_items_sqlite",
    );
}
