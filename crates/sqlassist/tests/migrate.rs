//! Embedded migrations on PostgreSQL, MariaDB and a SQLite file: applied once on the
//! writer, refused on a read-only engine before anything runs.
//!
//! The PostgreSQL and MariaDB migrations create `migrate_items_<backend>` and record their
//! version in Diesel's `__diesel_schema_migrations`, both in a schema (PostgreSQL) or
//! database (MariaDB) the test creates for itself and drops afterwards, so that nothing
//! stays behind in the shared test databases.

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
    one_writer_only: bool,
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

    // Migrations run on a connection of their own, outside the thread's transaction: the
    // managed engine's uncommitted insert aborts after them (MariaDB commits DDL
    // implicitly: on the branch's connection it would have committed the insert too).
    // SQLite has one writer at a time: there the insert's lock would make them wait.
    writer
        .execute("CREATE TABLE migrate_marker (v INTEGER)")
        .unwrap();
    writer.commit().unwrap();
    registry
        .init_engine(
            "app",
            engine(writer_url, false),
            InitOptions::new().managed(true),
        )
        .unwrap();
    let app = registry.session("app").unwrap();
    if !one_writer_only {
        transaction::begin().unwrap();
        app.execute("INSERT INTO migrate_marker (v) VALUES (1)")
            .unwrap();
    }
    assert_eq!(
        run_pending_migrations(&registry, "writer", migrations()).unwrap(),
        [VERSION]
    );
    if !one_writer_only {
        transaction::abort().unwrap();
    }
    assert_eq!(
        writer
            .query_i64("SELECT COUNT(*) FROM migrate_marker")
            .unwrap(),
        0,
        "the insert aborted with the transaction"
    );
    writer.rollback().unwrap();
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

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// How many tables named `name` schema (PostgreSQL) or database (MariaDB) `schema` has.
fn tables_named_sql(schema: &str, name: &str, int: &str) -> String {
    format!(
        "SELECT CAST(COUNT(*) AS {int}) AS n FROM information_schema.tables \
         WHERE table_schema = '{schema}' AND table_name = '{name}'"
    )
}

fn pg_tables_named(conn: &mut diesel::PgConnection, schema: &str, name: &str) -> i64 {
    use diesel::RunQueryDsl;
    diesel::sql_query(tables_named_sql(schema, name, "BIGINT"))
        .get_result::<Count>(conn)
        .unwrap()
        .n
}

fn mysql_tables_named(conn: &mut diesel::MysqlConnection, schema: &str, name: &str) -> i64 {
    use diesel::RunQueryDsl;
    diesel::sql_query(tables_named_sql(schema, name, "SIGNED"))
        .get_result::<Count>(conn)
        .unwrap()
        .n
}

#[test]
fn postgres_migrations_run_once_on_the_writer_and_are_refused_on_a_read_only_engine() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    // A schema of its own, first on the search path: the migration's table and Diesel's
    // `__diesel_schema_migrations` go there and leave with it.
    let schema = common::unique("reflect_migrate");
    let mut raw = diesel::PgConnection::establish(&url).unwrap();
    raw.batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let in_schema = format!("{url}{sep}options=-csearch_path%3D{schema}");
    let table = "migrate_items_postgres";
    let outcome = std::panic::catch_unwind(|| {
        scenario(&in_schema, &in_schema, || PG, table, false);
        let mut raw = diesel::PgConnection::establish(&url).unwrap();
        assert_eq!(pg_tables_named(&mut raw, &schema, table), 1);
        assert_eq!(
            pg_tables_named(&mut raw, &schema, "__diesel_schema_migrations"),
            1
        );
    });
    let _ = sqlassist::close_sessions();
    let _ = raw.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    outcome.unwrap();
}

#[test]
fn mariadb_migrations_run_once_on_the_writer_and_are_refused_on_a_read_only_engine() {
    let Some(url) = common::mysql_url("SQLASSIST_TEST_MYSQL_URL") else {
        return;
    };
    let Some(admin_url) = common::mysql_url("SQLASSIST_TEST_MYSQL_ADMIN_URL") else {
        return;
    };
    // A database of its own (the writer may only use the test databases, so root makes
    // it and grants it): the migration's table and `__diesel_schema_migrations` go there
    // and leave with it.
    let database = common::unique("reflect_migrate");
    let mut admin = diesel::MysqlConnection::establish(&admin_url).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {database}; \
             GRANT ALL ON {database}.* TO 'sqlassist_writer'@'%'; \
             GRANT ALL ON {database}.* TO 'sqlassist_writer'@'localhost'; \
             GRANT ALL ON {database}.* TO 'sqlassist_writer'@'127.0.0.1'"
        ))
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    let in_database = format!("{base}/{database}");
    let table = "migrate_items_mysql";
    let outcome = std::panic::catch_unwind(|| {
        scenario(&in_database, &in_database, || MYSQL, table, false);
        let mut admin = diesel::MysqlConnection::establish(&admin_url).unwrap();
        assert_eq!(mysql_tables_named(&mut admin, &database, table), 1);
        assert_eq!(
            mysql_tables_named(&mut admin, &database, "__diesel_schema_migrations"),
            1
        );
    });
    let _ = sqlassist::close_sessions();
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {database}"));
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
        true,
    );
}
