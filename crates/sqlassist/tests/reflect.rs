//! Reflection against real PostgreSQL and MariaDB servers and real SQLite files: every
//! column's catalog type, normalised kind, nullability and default; primary keys (composite
//! ones in key order), foreign keys (self-referencing, composite, across schemas), unique
//! constraints and views; the cache and its refresh; the typed errors.
//!
//! Every test creates its own uniquely named tables (PostgreSQL: its own schema) and drops
//! them at the end; other tests' tables may appear in a reflection at the same time, so the
//! assertions look only at this test's own.

mod common;

use sqlassist::{
    ColumnKind, DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry, Schema,
    SchemaCache, Table, TableKind, TableName,
};

use common::{unique, TempDir};

fn engine(url: &str) -> Engine {
    let options = EngineOptions::builder(DatabaseUrl::parse(url).expect("a valid url"))
        .pool_size(2)
        .build()
        .expect("valid options");
    Engine::new(options).expect("an engine")
}

fn read_only_engine(url: &str) -> Engine {
    let options = EngineOptions::builder(DatabaseUrl::parse(url).expect("a valid url"))
        .read_only(true)
        .pool_size(1)
        .build()
        .expect("valid options");
    Engine::new(options).expect("an engine")
}

fn int(bytes: u8) -> ColumnKind {
    ColumnKind::Integer {
        bytes,
        unsigned: false,
    }
}

/// Asserts one column's reflected metadata.
#[track_caller]
fn assert_column(
    table: &Table,
    name: &str,
    sql_type: &str,
    kind: ColumnKind,
    nullable: bool,
    default: Option<&str>,
) {
    let column = table
        .column(name)
        .unwrap_or_else(|e| panic!("{}: {e}", table.name()));
    assert_eq!(
        (
            column.sql_type(),
            column.kind(),
            column.is_nullable(),
            column.default()
        ),
        (sql_type, &kind, nullable, default),
        "column {name} of {}",
        table.name()
    );
}

fn column_names(table: &Table) -> Vec<&str> {
    table.columns().iter().map(|c| c.name()).collect()
}

/// Drops what a test created, even when it panicked.
struct Cleanup(Box<dyn FnMut()>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        common::reset_thread();
        (self.0)();
    }
}

#[test]
fn postgres_reflection_reads_every_type_key_and_view_in_any_schema() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    let s = unique("refl");
    let public = unique("refl_pub");
    let cleanup_url = url.clone();
    let (cs, cp) = (s.clone(), public.clone());
    let _cleanup = Cleanup(Box::new(move || {
        common::pg::exec(
            &cleanup_url,
            &format!("DROP TABLE IF EXISTS public.{cp}; DROP SCHEMA IF EXISTS {cs} CASCADE"),
        )
    }));
    common::pg::exec(
        &url,
        &format!(
            "CREATE SCHEMA {s};
             CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'happy');
             CREATE TABLE {s}.kinds (
                 id bigserial PRIMARY KEY,
                 small smallint NOT NULL DEFAULT 0,
                 plain integer,
                 exact numeric(12, 3),
                 any_numeric numeric,
                 f4 real,
                 f8 double precision,
                 name varchar(40) NOT NULL,
                 code char(3),
                 body text,
                 flag boolean NOT NULL DEFAULT false,
                 born date,
                 at_time time,
                 ts timestamp,
                 tstz timestamptz DEFAULT now(),
                 doc json,
                 docb jsonb,
                 uid uuid,
                 raw bytea,
                 tags text[],
                 scores integer[],
                 mood {s}.mood,
                 moods {s}.mood[],
                 span interval,
                 CONSTRAINT kinds_name_code UNIQUE (name, code)
             );
             CREATE TABLE {s}.node (id integer PRIMARY KEY, parent integer REFERENCES {s}.node (id));
             CREATE TABLE {s}.line (
                 invoice integer, n integer, qty integer NOT NULL,
                 PRIMARY KEY (n, invoice)
             );
             CREATE TABLE {s}.line_note (
                 invoice integer, n integer, note text,
                 CONSTRAINT line_note_line FOREIGN KEY (invoice, n) REFERENCES {s}.line (invoice, n)
             );
             CREATE VIEW {s}.happy AS SELECT id, name FROM {s}.kinds WHERE mood = 'happy';
             CREATE TABLE public.{public} (id integer PRIMARY KEY, kind bigint REFERENCES {s}.kinds (id));"
        ),
    );

    let schema = Schema::reflect(&engine(&url)).expect("reflect");
    assert_eq!(schema.default_schema(), "public");
    let kinds = schema.table(&format!("{s}.kinds")).expect("kinds");
    assert_eq!(kinds.name(), &TableName::new(s.clone(), "kinds"));
    assert_eq!(kinds.kind(), TableKind::Table);
    assert_eq!(kinds.primary_key(), ["id"]);
    let seq = format!("nextval('{s}.kinds_id_seq'::regclass)");
    assert_column(kinds, "id", "bigint", int(8), false, Some(&seq));
    assert_column(kinds, "small", "smallint", int(2), false, Some("0"));
    assert_column(kinds, "plain", "integer", int(4), true, None);
    let numeric = |p, s| ColumnKind::Numeric {
        precision: p,
        scale: s,
    };
    assert_column(
        kinds,
        "exact",
        "numeric(12,3)",
        numeric(Some(12), Some(3)),
        true,
        None,
    );
    assert_column(
        kinds,
        "any_numeric",
        "numeric",
        numeric(None, None),
        true,
        None,
    );
    assert_column(
        kinds,
        "f4",
        "real",
        ColumnKind::Float { bytes: 4 },
        true,
        None,
    );
    let f8 = ColumnKind::Float { bytes: 8 };
    assert_column(kinds, "f8", "double precision", f8, true, None);
    let varchar = ColumnKind::Varchar {
        max_length: Some(40),
    };
    assert_column(kinds, "name", "character varying(40)", varchar, false, None);
    let char3 = ColumnKind::Char { length: Some(3) };
    assert_column(kinds, "code", "character(3)", char3, true, None);
    assert_column(kinds, "body", "text", ColumnKind::Text, true, None);
    assert_column(
        kinds,
        "flag",
        "boolean",
        ColumnKind::Bool,
        false,
        Some("false"),
    );
    assert_column(kinds, "born", "date", ColumnKind::Date, true, None);
    let time = "time without time zone";
    assert_column(kinds, "at_time", time, ColumnKind::Time, true, None);
    let ts = "timestamp without time zone";
    assert_column(kinds, "ts", ts, ColumnKind::Timestamp, true, None);
    let tstz = "timestamp with time zone";
    assert_column(
        kinds,
        "tstz",
        tstz,
        ColumnKind::TimestampTz,
        true,
        Some("now()"),
    );
    assert_column(kinds, "doc", "json", ColumnKind::Json, true, None);
    assert_column(kinds, "docb", "jsonb", ColumnKind::Jsonb, true, None);
    assert_column(kinds, "uid", "uuid", ColumnKind::Uuid, true, None);
    assert_column(kinds, "raw", "bytea", ColumnKind::Binary, true, None);
    let array = |k| ColumnKind::Array(Box::new(k));
    assert_column(kinds, "tags", "text[]", array(ColumnKind::Text), true, None);
    assert_column(kinds, "scores", "integer[]", array(int(4)), true, None);
    let mood = ColumnKind::Enum {
        name: Some("mood".into()),
        values: vec!["sad".into(), "ok".into(), "happy".into()],
    };
    assert_column(
        kinds,
        "mood",
        &format!("{s}.mood"),
        mood.clone(),
        true,
        None,
    );
    assert_column(
        kinds,
        "moods",
        &format!("{s}.mood[]"),
        array(mood),
        true,
        None,
    );
    let interval = ColumnKind::Unknown("interval".into());
    assert_column(kinds, "span", "interval", interval, true, None);
    assert_eq!(kinds.columns().len(), 24);
    assert_eq!(kinds.unique_constraints().len(), 1);
    assert_eq!(
        kinds.unique_constraints()[0].name(),
        Some("kinds_name_code")
    );
    assert_eq!(kinds.unique_constraints()[0].columns(), ["name", "code"]);
    assert!(kinds.foreign_keys().is_empty());

    // An unsupported type is reported by name, not a panic.
    match kinds.supported_kind("span") {
        Err(Error::UnsupportedType {
            table,
            column,
            type_name,
        }) => assert_eq!(
            (table, column, type_name),
            (
                format!("{s}.kinds"),
                "span".to_owned(),
                "interval".to_owned()
            )
        ),
        other => panic!("expected UnsupportedType, got {other:?}"),
    }

    let node = schema.table_in(&s, "node").expect("node");
    assert_eq!(node.primary_key(), ["id"]);
    let fk = &node.foreign_keys()[0];
    assert_eq!(node.foreign_keys().len(), 1);
    assert_eq!(
        (fk.columns(), fk.referenced_table(), fk.referenced_columns()),
        (
            &["parent".to_owned()][..],
            &TableName::new(s.clone(), "node"),
            &["id".to_owned()][..]
        )
    );

    let line = schema.table_in(&s, "line").expect("line");
    assert_eq!(
        line.primary_key(),
        ["n", "invoice"],
        "key order, not column order"
    );
    assert_column(line, "invoice", "integer", int(4), false, None);
    assert_column(line, "qty", "integer", int(4), false, None);
    let note = schema.table_in(&s, "line_note").expect("line_note");
    let fk = &note.foreign_keys()[0];
    assert_eq!(fk.name(), Some("line_note_line"));
    assert_eq!(fk.columns(), ["invoice", "n"]);
    assert_eq!(fk.referenced_columns(), ["invoice", "n"]);
    assert!(note.primary_key().is_empty());

    let happy = schema.table_in(&s, "happy").expect("the view");
    assert_eq!(happy.kind(), TableKind::View);
    assert_eq!(column_names(happy), ["id", "name"]);
    assert!(happy.primary_key().is_empty());

    // An unqualified name is looked up in `public`, and a foreign key crosses schemas.
    let p = schema.table(&public).expect("the public table");
    assert_eq!(p.name().schema(), "public");
    let fk = &p.foreign_keys()[0];
    assert_eq!(fk.referenced_table(), &TableName::new(s.clone(), "kinds"));
    assert!(matches!(
        schema.table("kinds"),
        Err(Error::UnknownTable { .. })
    ));

    // A read-only engine of another role (a reader replica's) reflects the same metadata.
    if let Some(reader) = common::pg_url("SQLASSIST_TEST_PG_READER_URL") {
        let seen = Schema::reflect(&read_only_engine(&reader)).expect("reflect as reader");
        assert_eq!(seen.table_in(&s, "kinds").expect("kinds"), kinds);
    }

    // Named tables only; one that does not exist is named in the error.
    let some = Schema::reflect_tables(&engine(&url), &[&format!("{s}.node"), &public])
        .expect("named tables");
    assert_eq!(some.tables().count(), 2);
    let missing = format!("{s}.nothing");
    match Schema::reflect_tables(&engine(&url), &[&format!("{s}.node"), &missing]) {
        Err(Error::UnknownTable { table, schema }) => {
            assert_eq!(
                (table.as_str(), schema.as_str()),
                (missing.as_str(), "public")
            )
        }
        other => panic!("expected UnknownTable, got {other:?}"),
    }
}

#[test]
fn mariadb_reflection_reads_every_type_key_and_view_of_the_current_database() {
    let Some(url) = common::mysql_url("SQLASSIST_TEST_MYSQL_URL") else {
        return;
    };
    let p = unique("refl");
    let cleanup_url = url.clone();
    let cp = p.clone();
    let _cleanup = Cleanup(Box::new(move || {
        common::my::exec(
            &cleanup_url,
            &format!(
                "DROP VIEW IF EXISTS {cp}_happy; DROP TABLE IF EXISTS {cp}_line_note, {cp}_line, \
                 {cp}_node, {cp}_kinds"
            ),
        )
    }));
    common::my::exec(
        &url,
        &format!(
            "CREATE TABLE {p}_kinds (
                 id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                 tiny TINYINT, small SMALLINT NOT NULL DEFAULT 0, medium MEDIUMINT, plain INT,
                 exact DECIMAL(12, 3), f4 FLOAT, f8 DOUBLE,
                 name VARCHAR(40) NOT NULL, code CHAR(3), body TEXT,
                 flag BOOL NOT NULL DEFAULT 0,
                 born DATE, at_time TIME, dt DATETIME, ts TIMESTAMP NULL,
                 doc JSON, uid UUID, raw BLOB,
                 mood ENUM('sad', 'ok', 'happy') NOT NULL DEFAULT 'ok',
                 yr YEAR,
                 CONSTRAINT {p}_name_code UNIQUE (name, code)
             ) ENGINE=InnoDB;
             CREATE TABLE {p}_node (
                 id INT PRIMARY KEY, parent INT,
                 CONSTRAINT {p}_node_parent FOREIGN KEY (parent) REFERENCES {p}_node (id)
             ) ENGINE=InnoDB;
             CREATE TABLE {p}_line (
                 invoice INT, n INT, qty INT NOT NULL, PRIMARY KEY (n, invoice)
             ) ENGINE=InnoDB;
             CREATE TABLE {p}_line_note (
                 invoice INT, n INT, note TEXT,
                 CONSTRAINT {p}_line_note_line FOREIGN KEY (n, invoice) REFERENCES {p}_line (n, invoice)
             ) ENGINE=InnoDB;
             CREATE VIEW {p}_happy AS SELECT id, name FROM {p}_kinds WHERE mood = 'happy';"
        ),
    );

    let schema = Schema::reflect(&engine(&url)).expect("reflect");
    assert_eq!(schema.default_schema(), "sqlassist_test");
    let kinds = schema.table(&format!("{p}_kinds")).expect("kinds");
    assert_eq!(kinds.primary_key(), ["id"]);
    let unsigned = ColumnKind::Integer {
        bytes: 8,
        unsigned: true,
    };
    assert_column(kinds, "id", "bigint(20) unsigned", unsigned, false, None);
    assert_column(kinds, "tiny", "tinyint(4)", int(1), true, None);
    assert_column(kinds, "small", "smallint(6)", int(2), false, Some("0"));
    assert_column(kinds, "medium", "mediumint(9)", int(3), true, None);
    assert_column(kinds, "plain", "int(11)", int(4), true, None);
    let exact = ColumnKind::Numeric {
        precision: Some(12),
        scale: Some(3),
    };
    assert_column(kinds, "exact", "decimal(12,3)", exact, true, None);
    assert_column(
        kinds,
        "f4",
        "float",
        ColumnKind::Float { bytes: 4 },
        true,
        None,
    );
    assert_column(
        kinds,
        "f8",
        "double",
        ColumnKind::Float { bytes: 8 },
        true,
        None,
    );
    let varchar = ColumnKind::Varchar {
        max_length: Some(40),
    };
    assert_column(kinds, "name", "varchar(40)", varchar, false, None);
    let char3 = ColumnKind::Char { length: Some(3) };
    assert_column(kinds, "code", "char(3)", char3, true, None);
    assert_column(kinds, "body", "text", ColumnKind::Text, true, None);
    assert_column(
        kinds,
        "flag",
        "tinyint(1)",
        ColumnKind::Bool,
        false,
        Some("0"),
    );
    assert_column(kinds, "born", "date", ColumnKind::Date, true, None);
    assert_column(kinds, "at_time", "time", ColumnKind::Time, true, None);
    assert_column(kinds, "dt", "datetime", ColumnKind::Timestamp, true, None);
    assert_column(kinds, "ts", "timestamp", ColumnKind::Timestamp, true, None);
    assert_column(kinds, "doc", "longtext", ColumnKind::Json, true, None);
    assert_column(kinds, "uid", "uuid", ColumnKind::Uuid, true, None);
    assert_column(kinds, "raw", "blob", ColumnKind::Binary, true, None);
    let mood = ColumnKind::Enum {
        name: None,
        values: vec!["sad".into(), "ok".into(), "happy".into()],
    };
    let enum_type = "enum('sad','ok','happy')";
    assert_column(kinds, "mood", enum_type, mood, false, Some("'ok'"));
    let year = ColumnKind::Unknown("year(4)".into());
    assert_column(kinds, "yr", "year(4)", year, true, None);
    assert_eq!(kinds.columns().len(), 21);
    assert_eq!(kinds.unique_constraints().len(), 1);
    assert_eq!(kinds.unique_constraints()[0].columns(), ["name", "code"]);
    assert!(matches!(
        kinds.supported_kind("yr"),
        Err(Error::UnsupportedType { type_name, .. }) if type_name == "year(4)"
    ));

    let node = schema.table(&format!("{p}_node")).expect("node");
    let fk = &node.foreign_keys()[0];
    assert_eq!(fk.name(), Some(format!("{p}_node_parent").as_str()));
    assert_eq!(fk.columns(), ["parent"]);
    assert_eq!(
        fk.referenced_table(),
        &TableName::new("sqlassist_test", format!("{p}_node"))
    );
    assert_eq!(fk.referenced_columns(), ["id"]);

    let line = schema.table(&format!("{p}_line")).expect("line");
    assert_eq!(
        line.primary_key(),
        ["n", "invoice"],
        "key order, not column order"
    );
    let note = schema.table(&format!("{p}_line_note")).expect("line_note");
    assert_eq!(note.foreign_keys()[0].columns(), ["n", "invoice"]);
    assert_eq!(
        note.foreign_keys()[0].referenced_columns(),
        ["n", "invoice"]
    );

    let happy = schema.table(&format!("{p}_happy")).expect("the view");
    assert_eq!(happy.kind(), TableKind::View);
    assert_eq!(column_names(happy), ["id", "name"]);

    assert!(matches!(
        Schema::reflect_tables(&engine(&url), &[&format!("{p}_nothing")]),
        Err(Error::UnknownTable { .. })
    ));
}

#[test]
fn sqlite_reflection_reads_declared_types_keys_and_views_of_a_file() {
    let dir = TempDir::new("reflect");
    let path = dir.file("app.db");
    common::lite::exec(
        &path,
        "CREATE TABLE kinds (
             id INTEGER PRIMARY KEY,
             small SMALLINT NOT NULL DEFAULT 0,
             big BIGINT,
             exact NUMERIC(12, 3),
             f8 DOUBLE,
             name VARCHAR(40) NOT NULL,
             body TEXT,
             flag BOOLEAN NOT NULL DEFAULT 0,
             born DATE,
             ts DATETIME DEFAULT CURRENT_TIMESTAMP,
             doc JSON,
             raw BLOB,
             shape GEOMETRY,
             CONSTRAINT kinds_name UNIQUE (name, body)
         );
         CREATE TABLE node (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES node (id));
         CREATE TABLE line (invoice INTEGER, n INTEGER, qty INTEGER NOT NULL, PRIMARY KEY (n, invoice));
         CREATE TABLE line_note (invoice INTEGER, n INTEGER, note TEXT,
             FOREIGN KEY (invoice, n) REFERENCES line (invoice, n),
             FOREIGN KEY (note) REFERENCES kinds);
         CREATE VIEW happy AS SELECT id, name FROM kinds WHERE flag;",
    );
    let url = format!("sqlite:///{}", path.display());
    let schema = Schema::reflect(&engine(&url)).expect("reflect");
    let names: Vec<String> = schema.tables().map(|t| t.name().to_string()).collect();
    assert_eq!(
        names,
        [
            "main.happy",
            "main.kinds",
            "main.line",
            "main.line_note",
            "main.node"
        ]
    );

    let kinds = schema.table("kinds").expect("kinds");
    assert_eq!(kinds.primary_key(), ["id"]);
    assert_column(kinds, "id", "INTEGER", int(4), false, None);
    assert_column(kinds, "small", "SMALLINT", int(2), false, Some("0"));
    assert_column(kinds, "big", "BIGINT", int(8), true, None);
    let exact = ColumnKind::Numeric {
        precision: Some(12),
        scale: Some(3),
    };
    assert_column(kinds, "exact", "NUMERIC(12, 3)", exact, true, None);
    assert_column(
        kinds,
        "f8",
        "DOUBLE",
        ColumnKind::Float { bytes: 8 },
        true,
        None,
    );
    let varchar = ColumnKind::Varchar {
        max_length: Some(40),
    };
    assert_column(kinds, "name", "VARCHAR(40)", varchar, false, None);
    assert_column(kinds, "body", "TEXT", ColumnKind::Text, true, None);
    assert_column(kinds, "flag", "BOOLEAN", ColumnKind::Bool, false, Some("0"));
    assert_column(kinds, "born", "DATE", ColumnKind::Date, true, None);
    let now = Some("CURRENT_TIMESTAMP");
    assert_column(kinds, "ts", "DATETIME", ColumnKind::Timestamp, true, now);
    assert_column(kinds, "doc", "JSON", ColumnKind::Json, true, None);
    assert_column(kinds, "raw", "BLOB", ColumnKind::Binary, true, None);
    let geometry = ColumnKind::Unknown("GEOMETRY".into());
    assert_column(kinds, "shape", "GEOMETRY", geometry, true, None);
    assert_eq!(kinds.unique_constraints()[0].columns(), ["name", "body"]);
    assert!(matches!(
        kinds.supported_kind("shape"),
        Err(Error::UnsupportedType { type_name, .. }) if type_name == "GEOMETRY"
    ));

    let node = schema.table("node").expect("node");
    let fk = &node.foreign_keys()[0];
    assert_eq!(fk.columns(), ["parent"]);
    assert_eq!(fk.referenced_table(), &TableName::new("main", "node"));

    let line = schema.table("line").expect("line");
    assert_eq!(
        line.primary_key(),
        ["n", "invoice"],
        "key order, not column order"
    );
    // In a composite key an INTEGER column is no rowid alias: SQLite accepts NULL in it.
    assert_column(line, "invoice", "INTEGER", int(4), true, None);
    assert_column(line, "qty", "INTEGER", int(4), false, None);

    let note = schema.table("line_note").expect("line_note");
    let fks = note.foreign_keys();
    assert_eq!(fks.len(), 2);
    assert_eq!(
        (fks[0].columns(), fks[0].referenced_columns()),
        (
            &["invoice".to_owned(), "n".to_owned()][..],
            &["invoice".to_owned(), "n".to_owned()][..]
        ),
        "declaration order"
    );
    // `REFERENCES kinds` without columns: the referenced table's primary key.
    assert_eq!(fks[1].referenced_columns(), ["id"]);

    let happy = schema.table("happy").expect("the view");
    assert_eq!(happy.kind(), TableKind::View);
    assert_eq!(column_names(happy), ["id", "name"]);

    // A read-only engine on the same file reflects the same schema.
    let read_only = Schema::reflect(&read_only_engine(&url)).expect("reflect read-only");
    assert_eq!(read_only, schema);
}

#[test]
fn cached_schema_sees_an_alter_only_after_refresh_on_sqlite_and_postgres() {
    let dir = TempDir::new("reflect-cache");
    let path = dir.file("app.db");
    common::lite::exec(&path, "CREATE TABLE t (a INTEGER)");
    let mut registry = Registry::new();
    let sqlite_url = format!("sqlite:///{}", path.display());
    registry
        .init_engine("lite", engine(&sqlite_url), InitOptions::new())
        .expect("register sqlite");

    let pg = common::pg_url("SQLASSIST_TEST_PG_URL");
    let s = unique("refl_cache");
    let _cleanup = pg.clone().map(|url| {
        let s = s.clone();
        Cleanup(Box::new(move || {
            common::pg::exec(&url, &format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
        }))
    });
    if let Some(url) = &pg {
        common::pg::exec(
            url,
            &format!("CREATE SCHEMA {s}; CREATE TABLE {s}.t (a integer)"),
        );
        registry
            .init_engine("pg", engine(url), InitOptions::new())
            .expect("register postgres");
    }

    let schemas = SchemaCache::from_registry(&registry);
    let table = |name: &str| {
        if name == "pg" {
            format!("{s}.t")
        } else {
            "t".into()
        }
    };
    let engines: &[&str] = if pg.is_some() {
        &["lite", "pg"]
    } else {
        &["lite"]
    };
    for &name in engines {
        let first = schemas.schema(name).expect("reflect");
        assert_eq!(first.table(&table(name)).expect("t").columns().len(), 1);
        let again = schemas.schema(name).expect("cached");
        assert!(
            std::sync::Arc::ptr_eq(&first, &again),
            "{name}: reflected once"
        );
    }

    common::lite::exec(&path, "ALTER TABLE t ADD COLUMN b TEXT");
    if let Some(url) = &pg {
        common::pg::exec(url, &format!("ALTER TABLE {s}.t ADD COLUMN b text"));
    }
    for &name in engines {
        let cached = schemas.schema(name).expect("cached");
        assert_eq!(
            column_names(cached.table(&table(name)).expect("t")),
            ["a"],
            "{name}: the cache keeps what it reflected"
        );
        let fresh = schemas.refresh(name).expect("refresh");
        assert_eq!(
            column_names(fresh.table(&table(name)).expect("t")),
            ["a", "b"]
        );
        let after = schemas.schema(name).expect("cached again");
        assert!(
            std::sync::Arc::ptr_eq(&fresh, &after),
            "{name}: refresh replaced it"
        );
        // A value handed out before the refresh stays as it was.
        assert_eq!(cached.table(&table(name)).expect("t").columns().len(), 1);
    }

    assert!(matches!(
        schemas.schema("nope"),
        Err(Error::UnknownEngine { name, known }) if name == "nope" && known.starts_with("lite")
    ));
}
