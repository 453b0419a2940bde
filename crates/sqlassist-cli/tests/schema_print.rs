//! `sqlassist schema print` against the real PostgreSQL and MariaDB servers and a real
//! SQLite file: tables of varied types, a non-public PostgreSQL schema, composite keys,
//! self-referencing foreign keys, views, and types Diesel has no mapping for. The printed
//! code is compiled in a cargo project and its `declared_tables()` pass the drift check
//! against the same databases.

#![allow(clippy::unwrap_used)] // a test fails loudly on any unexpected error

mod common;

use std::path::{Path, PathBuf};

use common::{ini, parts, sqlassist, TempDir};

const PG_SETUP: &str = "
DROP SCHEMA IF EXISTS cli_sp_audit CASCADE;
DROP VIEW IF EXISTS cli_sp_names;
DROP TABLE IF EXISTS cli_sp_node, cli_sp_pair, cli_sp_weird, cli_sp_users CASCADE;
DROP TYPE IF EXISTS cli_sp_mood;
CREATE TYPE cli_sp_mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE cli_sp_users (
    id BIGSERIAL PRIMARY KEY,
    name VARCHAR(40) NOT NULL,
    email TEXT,
    code CHAR(3),
    score NUMERIC(10, 2),
    active BOOLEAN NOT NULL DEFAULT true,
    born DATE,
    wakes TIME,
    created TIMESTAMP NOT NULL DEFAULT now(),
    seen TIMESTAMPTZ,
    doc JSON,
    docb JSONB,
    token UUID,
    photo BYTEA,
    tags TEXT[],
    mood cli_sp_mood,
    moods cli_sp_mood[],
    ratio REAL,
    weight DOUBLE PRECISION,
    small SMALLINT NOT NULL DEFAULT 0,
    \"type\" TEXT,
    span INTERVAL
);
CREATE TABLE cli_sp_node (
    id INTEGER PRIMARY KEY,
    parent INTEGER REFERENCES cli_sp_node (id),
    owner BIGINT NOT NULL REFERENCES cli_sp_users (id)
);
CREATE TABLE cli_sp_pair (a INTEGER, b TEXT, v DOUBLE PRECISION, PRIMARY KEY (a, b));
CREATE TABLE cli_sp_weird (p POINT, n INTEGER);
ALTER TABLE cli_sp_weird ADD COLUMN id INTERVAL PRIMARY KEY;
CREATE VIEW cli_sp_names AS SELECT id, name FROM cli_sp_users;
CREATE SCHEMA cli_sp_audit;
CREATE TABLE cli_sp_audit.cli_sp_events (
    id INTEGER PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    what TEXT,
    node INTEGER REFERENCES public.cli_sp_node (id)
);
";

const PG_TABLES: &str =
    "cli_sp_users,cli_sp_node,cli_sp_pair,cli_sp_weird,cli_sp_names,cli_sp_audit.cli_sp_events";

const MYSQL_SETUP: &str = "
DROP VIEW IF EXISTS cli_sp_names;
DROP TABLE IF EXISTS cli_sp_node, cli_sp_pair, cli_sp_users;
CREATE TABLE cli_sp_users (
    id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(40) NOT NULL,
    tiny TINYINT,
    flag BOOL NOT NULL DEFAULT 0,
    mood ENUM('sad', 'ok', 'happy'),
    score DECIMAL(10, 2),
    created DATETIME NOT NULL,
    stamp TIMESTAMP NULL,
    doc JSON,
    photo BLOB,
    ratio FLOAT,
    weight DOUBLE,
    m MEDIUMINT UNSIGNED,
    born DATE,
    wakes TIME,
    g GEOMETRY
);
CREATE TABLE cli_sp_node (
    id INT PRIMARY KEY,
    parent INT REFERENCES cli_sp_node (id),
    owner BIGINT UNSIGNED NOT NULL,
    FOREIGN KEY (owner) REFERENCES cli_sp_users (id),
    FOREIGN KEY (parent) REFERENCES cli_sp_node (id)
);
CREATE TABLE cli_sp_pair (a INT, b VARCHAR(10), v DOUBLE, PRIMARY KEY (a, b));
CREATE VIEW cli_sp_names AS SELECT id, name FROM cli_sp_users;
";

const MYSQL_TABLES: &str = "cli_sp_users,cli_sp_node,cli_sp_pair,cli_sp_names";

const SQLITE_SETUP: &str = "
CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL, \"type\" TEXT,
    price NUMERIC(8, 2), at TIMESTAMP, blob BLOB, flag BOOLEAN NOT NULL, shape POINT);
CREATE TABLE node (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES node (id),
    owner INTEGER NOT NULL REFERENCES users (id));
CREATE TABLE pair (a INTEGER NOT NULL, b TEXT NOT NULL, v DOUBLE, PRIMARY KEY (a, b));
CREATE VIEW names AS SELECT id, name FROM users;
";

/// Prints an engine's tables with `declared_tables()`; returns the code and stderr.
fn print(dir: &TempDir, file: &str, url: &str, tables: Option<&str>) -> (i32, String, String) {
    let settings = ini(dir, file, &[format!("sqlalchemy_main.url = {url}")]);
    let settings = settings.to_str().unwrap();
    let mut args = vec![
        "schema",
        "print",
        settings,
        "--engine",
        "main",
        "--declared",
    ];
    if let Some(tables) = tables {
        args.extend(["--tables", tables]);
    }
    parts(&sqlassist(&args))
}

/// The directory of the compile check's cargo project: under the target dir this test
/// was built in (so that it is reused between runs and cleaned with it).
fn project_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_sqlassist"));
    // <target>/<profile>/sqlassist
    let target = exe
        .parent()
        .and_then(Path::parent)
        .expect("the binary lives in <target>/<profile>/");
    target.join("schema-print-check")
}

fn write_project(dir: &Path, modules: &[(&str, &str, &str)]) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/sqlassist-cli is two levels below the workspace");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let manifest = format!(
        r#"[package]
name = "schema-print-check"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
diesel = {{ version = "~2.3", default-features = false, features = ["postgres", "mysql", "sqlite", "32-column-tables", "r2d2", "i-implement-a-third-party-backend-and-opt-into-breaking-changes"] }}
sqlassist = {{ path = {path:?}, features = ["postgres", "mysql", "sqlite"] }}

[workspace]
"#,
        path = workspace.join("crates/sqlassist").display().to_string()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    // The workspace's versions, so the check builds offline with what is already fetched.
    std::fs::copy(workspace.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let mut main = String::from(
        "//! Compiles printed schemas and checks them for drift against the databases.\n",
    );
    let mut body = String::new();
    for (module, code, url_var) in modules {
        std::fs::write(dir.join(format!("src/{module}.rs")), code).unwrap();
        main.push_str(&format!("mod {module};\n"));
        body.push_str(&format!(
            "    check({url_var:?}, {module}::declared_tables());\n"
        ));
    }
    main.push_str(&format!(
        r#"
fn check(var: &str, declared: Vec<sqlassist::DeclaredTable>) {{
    let url = std::env::var(var).expect(var);
    let engine = sqlassist::Engine::new(sqlassist::EngineOptions::new(
        sqlassist::DatabaseUrl::parse(&url).expect("url"),
    ))
    .expect("engine");
    let schema = sqlassist::Schema::reflect(&engine).expect("reflect");
    let drift = sqlassist::check_drift(&schema, &declared, sqlassist::DriftMode::Fail);
    match drift {{
        Ok(d) if d.is_empty() => println!("{{var}}: {{}} tables, no drift", declared.len()),
        Ok(d) => panic!("{{var}}: {{d:?}}"),
        Err(e) => panic!("{{var}}: {{e}}"),
    }}
}}

fn main() {{
{body}}}
"#
    ));
    std::fs::write(dir.join("src/main.rs"), main).unwrap();
}

#[test]
fn printed_schemas_compile_and_match_the_live_databases() {
    let (Some(pg), Some(mysql)) = (
        common::server_url("SQLASSIST_TEST_PG_URL"),
        common::server_url("SQLASSIST_TEST_MYSQL_URL"),
    ) else {
        return;
    };
    let dir = TempDir::new("schema-print");

    // PostgreSQL.
    common::pg_exec(&pg, PG_SETUP);
    let (code, pg_code, stderr) = print(&dir, "pg.ini", &pg, Some(PG_TABLES));
    assert_eq!(code, 2, "unmapped types ask for an operator: {stderr}");
    for expected in [
        "table `public.cli_sp_users`, column `span`: type `interval` has no Diesel mapping; the column is left out",
        "table `public.cli_sp_weird`, column `id`: type `interval` has no Diesel mapping; the table (the column is in its primary key) is left out",
        "table `public.cli_sp_weird`, column `p`: type `point`",
    ] {
        assert!(stderr.contains(expected), "stderr lacks {expected:?}: {stderr}");
    }
    assert!(!stderr.contains("writer_pw"), "{stderr}");
    for expected in [
        "cli_sp_users (id) {",
        "id -> BigInt,",
        "name -> Text,",
        "score -> Nullable<Numeric>,",
        "seen -> Nullable<Timestamptz>,",
        "docb -> Nullable<Jsonb>,",
        "token -> Nullable<Uuid>,",
        "tags -> Nullable<Array<Nullable<Text>>>,",
        "mood -> Nullable<sql_types::CliSpMood>,",
        "#[sql_name = \"type\"]",
        "type_ -> Nullable<Text>,",
        "// `span` (interval) left out",
        "cli_sp_pair (a, b) {",
        "pub mod cli_sp_audit {",
        "cli_sp_audit.cli_sp_events (id) {",
        "diesel::joinable!(cli_sp_node -> cli_sp_users (owner));",
        "public.cli_sp_node (parent) references public.cli_sp_node (id): no joinable!",
        "#[diesel(postgres_type(name = \"cli_sp_mood\"))]",
        "// Diesel needs its `32-column-tables` feature: `public.cli_sp_users` has 21 columns.",
        "`public.cli_sp_names` is a view: `id` stands in",
        "// `public.cli_sp_weird` left out",
        "diesel::allow_tables_to_appear_in_same_query!(",
    ] {
        assert!(
            pg_code.contains(expected),
            "PostgreSQL output lacks {expected:?}:\n{pg_code}"
        );
    }

    // MariaDB.
    common::mysql_exec(&mysql, MYSQL_SETUP);
    let (code, mysql_code, stderr) = print(&dir, "mysql.ini", &mysql, Some(MYSQL_TABLES));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("column `g`: type `geometry` has no Diesel mapping"),
        "{stderr}"
    );
    for expected in [
        "id -> Unsigned<BigInt>,",
        "tiny -> Nullable<TinyInt>,",
        "flag -> Bool,",
        "mood -> Nullable<Text>,",
        "m -> Nullable<Unsigned<Integer>>,",
        "created -> Timestamp,",
        "cli_sp_pair (a, b) {",
        "diesel::joinable!(cli_sp_node -> cli_sp_users (owner));",
    ] {
        assert!(
            mysql_code.contains(expected),
            "MariaDB output lacks {expected:?}:\n{mysql_code}"
        );
    }

    // SQLite: every table, no --tables.
    let db = dir.file("app.db");
    common::sqlite_exec(&db, SQLITE_SETUP);
    let (code, sqlite_code, stderr) = print(&dir, "sqlite.ini", "sqlite:///%(here)s/app.db", None);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("table `main.users`, column `shape`: type `POINT`"),
        "{stderr}"
    );
    for expected in [
        "users (id) {",
        "pair (a, b) {",
        "diesel::joinable!(node -> users (owner));",
    ] {
        assert!(
            sqlite_code.contains(expected),
            "SQLite output lacks {expected:?}:\n{sqlite_code}"
        );
    }

    // Compile all three and check them for drift against the same databases.
    let project = project_dir();
    write_project(
        &project,
        &[
            ("pg_schema", &pg_code, "PG"),
            ("mysql_schema", &mysql_code, "MYSQL"),
            ("sqlite_schema", &sqlite_code, "SQLITE"),
        ],
    );
    let out = std::process::Command::new(env!("CARGO"))
        .args(["run", "--offline", "--quiet", "--manifest-path"])
        .arg(project.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", project.join("target"))
        .env("PG", &pg)
        .env("MYSQL", &mysql)
        .env("SQLITE", format!("sqlite:///{}", db.display()))
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    let (code, stdout, stderr) = parts(&out);
    assert_eq!(
        code, 0,
        "the printed code must compile and match:\n{stderr}\n{stdout}"
    );
    for var in ["PG", "MYSQL", "SQLITE"] {
        assert!(
            stdout.contains(&format!("{var}: ")) && stdout.contains("no drift"),
            "{stdout}"
        );
    }

    // The same compiled declarations against an altered column: the drift check names it.
    common::pg_exec(&pg, "ALTER TABLE cli_sp_pair ALTER COLUMN v TYPE INTEGER");
    let out = std::process::Command::new(project.join("target/debug/schema-print-check"))
        .env("PG", &pg)
        .env("MYSQL", &mysql)
        .env("SQLITE", format!("sqlite:///{}", db.display()))
        .output()
        .unwrap();
    let (code, _, stderr) = parts(&out);
    assert_ne!(code, 0);
    assert!(
        stderr.contains(
            "PG: schema drift: table `public.cli_sp_pair`, column `v`: declared double null, live integer null (integer)"
        ),
        "{stderr}"
    );
}
