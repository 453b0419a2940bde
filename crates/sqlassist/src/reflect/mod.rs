//! Reflection: the tables, views, columns and keys of a live database, read from its catalog.
//!
//! [`Schema::reflect`] reads an engine's catalog with one query per kind of metadata
//! (relations, columns, keys; PostgreSQL also enum labels), never one query per table:
//! PostgreSQL through `pg_catalog` (every schema but the system ones), MariaDB/MySQL through
//! `information_schema` of the connection's current database, SQLite through
//! `sqlite_master` and the `pragma_table_info`, `pragma_foreign_key_list`,
//! `pragma_index_list` table-valued functions. [`SchemaCache`] reflects each engine of a
//! registry once and keeps the result until [`SchemaCache::refresh`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::backend::Backend;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::registry::Registry;

pub use print::{PrintOptions, PrintedSchema, UnmappedColumn};

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
mod print;
#[cfg(feature = "sqlite")]
mod sqlite;

/// A table's or view's name: the schema it lives in and its own name.
///
/// The schema is PostgreSQL's namespace (`public`, `audit`), the MariaDB/MySQL database,
/// or SQLite's `main`. `Display` writes `schema.name`.
///
/// # Examples
///
/// ```
/// use sqlassist::{DatabaseUrl, Engine, EngineOptions, Schema};
///
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
/// # let mut registry = sqlassist::Registry::new();
/// # registry.init_engine("main", engine.clone(), sqlassist::InitOptions::new())?;
/// # let session = registry.session("main")?;
/// # session.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")?;
/// # session.commit()?;
/// let schema = Schema::reflect(&engine)?;
/// let name = schema.table("users")?.name();
/// assert_eq!((name.schema(), name.name()), ("main", "users"));
/// assert_eq!(name.to_string(), "main.users");
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    schema: String,
    name: String,
}

impl TableName {
    /// A name from its parts.
    ///
    /// # Examples
    ///
    /// ```
    /// let name = sqlassist::TableName::new("audit", "events");
    /// assert_eq!(name.to_string(), "audit.events");
    /// ```
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// The schema (PostgreSQL namespace, MariaDB/MySQL database, SQLite `main`).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(sqlassist::TableName::new("audit", "events").schema(), "audit");
    /// ```
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The table's own name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(sqlassist::TableName::new("audit", "events").name(), "events");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Whether a relation is a table or a view.
///
/// # Examples
///
/// ```
/// use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry, Schema, TableKind};
///
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
/// let mut registry = Registry::new();
/// registry.init_engine("main", engine.clone(), InitOptions::new())?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE t (v INTEGER)")?;
/// session.execute("CREATE VIEW big AS SELECT v FROM t WHERE v > 10")?;
/// session.commit()?;
///
/// let schema = Schema::reflect(&engine)?;
/// assert_eq!(schema.table("t")?.kind(), TableKind::Table);
/// assert_eq!(schema.table("big")?.kind(), TableKind::View);
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TableKind {
    /// A table (PostgreSQL: also a partitioned or foreign table).
    Table,
    /// A view.
    View,
    /// A PostgreSQL materialized view.
    MaterializedView,
}

/// What a column's SQL type is, normalised across backends; the catalog's own spelling is
/// [`Column::sql_type`].
///
/// # Examples
///
/// ```
/// use sqlassist::{ColumnKind, DatabaseUrl, Engine, EngineOptions, InitOptions, Registry, Schema};
///
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
/// let mut registry = Registry::new();
/// registry.init_engine("main", engine.clone(), InitOptions::new())?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE t (n BIGINT, name VARCHAR(20), price NUMERIC(10, 2), shape GEOMETRY)")?;
/// session.commit()?;
///
/// let schema = Schema::reflect(&engine)?;
/// let t = schema.table("t")?;
/// assert_eq!(t.column("n")?.kind(), &ColumnKind::Integer { bytes: 8, unsigned: false });
/// assert_eq!(t.column("name")?.kind(), &ColumnKind::Varchar { max_length: Some(20) });
/// assert_eq!(t.column("price")?.kind(), &ColumnKind::Numeric { precision: Some(10), scale: Some(2) });
/// assert_eq!(t.column("shape")?.kind(), &ColumnKind::Unknown("GEOMETRY".into()));
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ColumnKind {
    /// An integer of `bytes` bytes (1 to 8; MariaDB's `MEDIUMINT` is 3), signed or not.
    Integer {
        /// Storage size in bytes.
        bytes: u8,
        /// MariaDB/MySQL `UNSIGNED`.
        unsigned: bool,
    },
    /// A binary floating-point number of 4 or 8 bytes.
    Float {
        /// Storage size in bytes.
        bytes: u8,
    },
    /// An exact decimal number, with its declared precision and scale if any.
    Numeric {
        /// Total digits.
        precision: Option<u32>,
        /// Digits after the point.
        scale: Option<u32>,
    },
    /// Text without a declared length.
    Text,
    /// Variable-length text with a maximum length in characters, if declared.
    Varchar {
        /// The declared maximum length.
        max_length: Option<u32>,
    },
    /// Fixed-length, blank-padded text.
    Char {
        /// The declared length.
        length: Option<u32>,
    },
    /// A boolean (MariaDB/MySQL: `TINYINT(1)`, which `BOOL` declares).
    Bool,
    /// A date.
    Date,
    /// A time of day without time zone.
    Time,
    /// A date and time without time zone (MariaDB/MySQL `DATETIME` and `TIMESTAMP`).
    Timestamp,
    /// A date and time with time zone (PostgreSQL `timestamptz`).
    TimestampTz,
    /// JSON text (MariaDB's `JSON`, a `LONGTEXT` checked by `json_valid`, included).
    Json,
    /// PostgreSQL's binary JSON.
    Jsonb,
    /// A UUID.
    Uuid,
    /// Bytes (`bytea`, `BLOB`, `VARBINARY`).
    Binary,
    /// A PostgreSQL array of the inner kind.
    Array(Box<ColumnKind>),
    /// An enumerated type: PostgreSQL's `CREATE TYPE ... AS ENUM` (named) or a MariaDB/MySQL
    /// `ENUM(...)` column (unnamed), with its labels in declaration order.
    Enum {
        /// The type's name (PostgreSQL), `None` for MariaDB/MySQL.
        name: Option<String>,
        /// The labels, in declaration order.
        values: Vec<String>,
    },
    /// A type the library does not understand, by the catalog's name for it.
    Unknown(String),
}

impl ColumnKind {
    /// Whether the library understands the kind (an array counts if its element does).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::ColumnKind;
    ///
    /// assert!(ColumnKind::Array(Box::new(ColumnKind::Text)).is_supported());
    /// assert!(!ColumnKind::Unknown("interval".into()).is_supported());
    /// ```
    pub fn is_supported(&self) -> bool {
        match self {
            ColumnKind::Unknown(_) => false,
            ColumnKind::Array(inner) => inner.is_supported(),
            _ => true,
        }
    }
}

/// One column of a reflected table or view.
///
/// # Examples
///
/// ```
/// use sqlassist::{ColumnKind, DatabaseUrl, Engine, EngineOptions, InitOptions, Registry, Schema};
///
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
/// let mut registry = Registry::new();
/// registry.init_engine("main", engine.clone(), InitOptions::new())?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, state TEXT NOT NULL DEFAULT 'new', note TEXT)")?;
/// session.commit()?;
///
/// let schema = Schema::reflect(&engine)?;
/// let state = schema.table("t")?.column("state")?;
/// assert_eq!((state.name(), state.sql_type()), ("state", "TEXT"));
/// assert_eq!(state.kind(), &ColumnKind::Text);
/// assert!(!state.is_nullable());
/// assert_eq!(state.default(), Some("'new'"));
/// assert!(schema.table("t")?.column("note")?.is_nullable());
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    name: String,
    sql_type: String,
    kind: ColumnKind,
    nullable: bool,
    default: Option<String>,
}

impl Column {
    /// The column's name.
    ///
    /// # Examples
    ///
    /// See [`Column`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SQL type as the catalog names it (`character varying(20)`, `int(10) unsigned`,
    /// `VARCHAR(20)`).
    ///
    /// # Examples
    ///
    /// See [`Column`].
    pub fn sql_type(&self) -> &str {
        &self.sql_type
    }

    /// The normalised type.
    ///
    /// # Examples
    ///
    /// See [`ColumnKind`].
    pub fn kind(&self) -> &ColumnKind {
        &self.kind
    }

    /// Whether the column accepts NULL.
    ///
    /// # Examples
    ///
    /// See [`Column`].
    pub fn is_nullable(&self) -> bool {
        self.nullable
    }

    /// The default expression as the catalog writes it (`'new'::text`, `nextval(...)`,
    /// `current_timestamp()`), `None` without one (or with `DEFAULT NULL`).
    ///
    /// # Examples
    ///
    /// See [`Column`].
    pub fn default(&self) -> Option<&str> {
        self.default.as_deref()
    }
}

/// A foreign key: columns of one table that reference columns of another (or the same).
///
/// # Examples
///
/// ```
/// use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry, Schema};
///
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
/// let mut registry = Registry::new();
/// registry.init_engine("main", engine.clone(), InitOptions::new())?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE node (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES node (id))")?;
/// session.commit()?;
///
/// let schema = Schema::reflect(&engine)?;
/// let fk = &schema.table("node")?.foreign_keys()[0];
/// assert_eq!(fk.columns(), ["parent"]);
/// assert_eq!(fk.referenced_table().name(), "node");
/// assert_eq!(fk.referenced_columns(), ["id"]);
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    name: Option<String>,
    columns: Vec<String>,
    referenced_table: TableName,
    referenced_columns: Vec<String>,
}

impl ForeignKey {
    /// The constraint's name (`None` on SQLite, which does not report it).
    ///
    /// # Examples
    ///
    /// See [`ForeignKey`].
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The referencing columns, in key order.
    ///
    /// # Examples
    ///
    /// See [`ForeignKey`].
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The referenced table.
    ///
    /// # Examples
    ///
    /// See [`ForeignKey`].
    pub fn referenced_table(&self) -> &TableName {
        &self.referenced_table
    }

    /// The referenced columns, in the order of [`columns`](Self::columns).
    ///
    /// # Examples
    ///
    /// See [`ForeignKey`].
    pub fn referenced_columns(&self) -> &[String] {
        &self.referenced_columns
    }
}

/// A unique constraint (a primary key is reported apart, by [`Table::primary_key`]).
///
/// # Examples
///
/// ```
/// use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry, Schema};
///
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
/// let mut registry = Registry::new();
/// registry.init_engine("main", engine.clone(), InitOptions::new())?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE t (a INTEGER, b INTEGER, UNIQUE (b, a))")?;
/// session.commit()?;
///
/// let schema = Schema::reflect(&engine)?;
/// assert_eq!(schema.table("t")?.unique_constraints()[0].columns(), ["b", "a"]);
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueConstraint {
    name: Option<String>,
    columns: Vec<String>,
}

impl UniqueConstraint {
    /// The constraint's (or on SQLite, its index's) name.
    ///
    /// # Examples
    ///
    /// See [`UniqueConstraint`].
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The columns, in constraint order.
    ///
    /// # Examples
    ///
    /// See [`UniqueConstraint`].
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
}

/// A reflected table or view.
///
/// # Examples
///
/// ```
/// use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry, Schema};
///
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
/// let mut registry = Registry::new();
/// registry.init_engine("main", engine.clone(), InitOptions::new())?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE line (invoice INTEGER, n INTEGER, amount NUMERIC, PRIMARY KEY (invoice, n))")?;
/// session.commit()?;
///
/// let schema = Schema::reflect(&engine)?;
/// let line = schema.table("line")?;
/// assert_eq!(line.primary_key(), ["invoice", "n"]);
/// let names: Vec<_> = line.columns().iter().map(|c| c.name()).collect();
/// assert_eq!(names, ["invoice", "n", "amount"]);
/// assert!(matches!(line.column("amout"), Err(Error::UnknownColumn { .. })));
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    name: TableName,
    kind: TableKind,
    columns: Vec<Column>,
    primary_key: Vec<String>,
    foreign_keys: Vec<ForeignKey>,
    unique_constraints: Vec<UniqueConstraint>,
}

impl Table {
    /// The table's name.
    ///
    /// # Examples
    ///
    /// See [`TableName`].
    pub fn name(&self) -> &TableName {
        &self.name
    }

    /// Table or view.
    ///
    /// # Examples
    ///
    /// See [`TableKind`].
    pub fn kind(&self) -> TableKind {
        self.kind
    }

    /// The columns, in table order.
    ///
    /// # Examples
    ///
    /// See [`Table`].
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The column `name`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownColumn`] when the table has no such column.
    ///
    /// # Examples
    ///
    /// See [`Table`].
    pub fn column(&self, name: &str) -> Result<&Column> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::UnknownColumn {
                table: self.name.to_string(),
                column: name.to_owned(),
            })
    }

    /// The kind of column `name`, when the library understands it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownColumn`]; [`Error::UnsupportedType`] naming the column's SQL type
    /// when its kind is [`ColumnKind::Unknown`] (or an array of it).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{ColumnKind, DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry, Schema};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// let mut registry = Registry::new();
    /// registry.init_engine("main", engine.clone(), InitOptions::new())?;
    /// let session = registry.session("main")?;
    /// session.execute("CREATE TABLE place (id INTEGER, shape GEOMETRY)")?;
    /// session.commit()?;
    ///
    /// let place = Schema::reflect(&engine)?.table("place")?.clone();
    /// assert_eq!(place.supported_kind("id")?, &ColumnKind::Integer { bytes: 4, unsigned: false });
    /// let err = place.supported_kind("shape").expect_err("no kind for GEOMETRY");
    /// assert!(matches!(&err, Error::UnsupportedType { type_name, .. } if type_name == "GEOMETRY"));
    /// assert_eq!(err.to_string(), "column `shape` of table `main.place` has type `GEOMETRY`, which sqlassist does not support");
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn supported_kind(&self, name: &str) -> Result<&ColumnKind> {
        let column = self.column(name)?;
        if column.kind.is_supported() {
            Ok(&column.kind)
        } else {
            Err(Error::UnsupportedType {
                table: self.name.to_string(),
                column: column.name.clone(),
                type_name: column.sql_type.clone(),
            })
        }
    }

    /// The primary key's columns, in key order (empty without a primary key, and for views).
    ///
    /// # Examples
    ///
    /// See [`Table`].
    pub fn primary_key(&self) -> &[String] {
        &self.primary_key
    }

    /// The foreign keys, sorted by name (SQLite: in declaration order).
    ///
    /// # Examples
    ///
    /// See [`ForeignKey`].
    pub fn foreign_keys(&self) -> &[ForeignKey] {
        &self.foreign_keys
    }

    /// The unique constraints, sorted by name.
    ///
    /// # Examples
    ///
    /// See [`UniqueConstraint`].
    pub fn unique_constraints(&self) -> &[UniqueConstraint] {
        &self.unique_constraints
    }
}

/// The tables and views of an engine's database, as its catalog described them when
/// reflected.
///
/// # Examples
///
/// ```
/// use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry, Schema};
///
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
/// let mut registry = Registry::new();
/// registry.init_engine("main", engine.clone(), InitOptions::new())?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE)")?;
/// session.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY, author INTEGER NOT NULL REFERENCES users (id))")?;
/// session.commit()?;
///
/// let schema = Schema::reflect(&engine)?;
/// assert_eq!(schema.default_schema(), "main");
/// let names: Vec<String> = schema.tables().map(|t| t.name().to_string()).collect();
/// assert_eq!(names, ["main.posts", "main.users"]);
///
/// // Only some tables; a missing one is an error that names it.
/// let users = Schema::reflect_tables(&engine, &["users"])?;
/// assert_eq!(users.tables().count(), 1);
/// assert!(matches!(
///     Schema::reflect_tables(&engine, &["user"]),
///     Err(Error::UnknownTable { table, .. }) if table == "user"
/// ));
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    backend: Backend,
    default_schema: String,
    tables: BTreeMap<TableName, Table>,
}

impl Schema {
    /// Reads every table and view of the engine's database from its catalog, on a
    /// connection of the engine's pool (PostgreSQL: in one read-only repeatable-read
    /// transaction, so the queries see one state of the catalog).
    ///
    /// PostgreSQL: every schema except `pg_catalog`, `information_schema` and the
    /// temporary and TOAST ones. MariaDB/MySQL: the connection's current database. SQLite:
    /// the `main` database.
    ///
    /// The connection comes from the pool, not from this thread's session: an in-memory
    /// SQLite engine has a single connection, so reflect it while no session holds it
    /// (after the session's commit or rollback), or reflection waits for the pool's
    /// timeout.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when no connection can be had (within the pool's timeout); [`Error::Reflect`] when a catalog
    /// query fails.
    ///
    /// # Examples
    ///
    /// See [`Schema`].
    pub fn reflect(engine: &Engine) -> Result<Self> {
        let mut conn = engine.checkout()?;
        let reflected = match &mut conn {
            #[cfg(feature = "postgres")]
            crate::conn::Conn::Pg(pooled) => postgres::reflect(pooled),
            #[cfg(feature = "sqlite")]
            crate::conn::Conn::Sqlite(pooled) => sqlite::reflect(pooled),
            #[cfg(feature = "mysql")]
            crate::conn::Conn::Mysql(pooled) => mysql::reflect(pooled),
        };
        let (default_schema, tables) = reflected.map_err(|source| Error::Reflect {
            url: engine.url().redacted().to_owned(),
            source,
        })?;
        Ok(Self {
            backend: engine.backend(),
            default_schema,
            tables: tables.into_iter().map(|t| (t.name.clone(), t)).collect(),
        })
    }

    /// Reads the named tables and views only, each named as [`table`](Self::table) finds
    /// it (`"users"` in the default schema, `"audit.events"` in another).
    ///
    /// # Errors
    ///
    /// Those of [`reflect`](Self::reflect); [`Error::UnknownTable`] naming the first table
    /// that does not exist.
    ///
    /// # Examples
    ///
    /// See [`Schema`].
    pub fn reflect_tables(engine: &Engine, tables: &[&str]) -> Result<Self> {
        let all = Self::reflect(engine)?;
        let mut chosen = BTreeMap::new();
        for name in tables {
            let table = all.table(name)?;
            chosen.insert(table.name.clone(), table.clone());
        }
        Ok(Self {
            backend: all.backend,
            default_schema: all.default_schema,
            tables: chosen,
        })
    }

    /// The backend the schema was read from.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Backend, DatabaseUrl, Engine, EngineOptions, Schema};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// assert_eq!(Schema::reflect(&engine)?.backend(), Backend::Sqlite);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The schema unqualified names are looked up in: PostgreSQL's `current_schema()`
    /// (usually `public`), the MariaDB/MySQL current database, SQLite's `main`.
    ///
    /// # Examples
    ///
    /// See [`Schema`].
    pub fn default_schema(&self) -> &str {
        &self.default_schema
    }

    /// Every table and view, sorted by schema and name.
    ///
    /// # Examples
    ///
    /// See [`Schema`].
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.values()
    }

    /// The table or view `name`: an unqualified name in the
    /// [default schema](Self::default_schema), or `schema.name`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTable`] naming it.
    ///
    /// # Examples
    ///
    /// See [`Schema`].
    pub fn table(&self, name: &str) -> Result<&Table> {
        let unqualified = TableName::new(self.default_schema.clone(), name);
        if let Some(table) = self.tables.get(&unqualified) {
            return Ok(table);
        }
        if let Some((schema, rest)) = name.split_once('.') {
            if let Some(table) = self.tables.get(&TableName::new(schema, rest)) {
                return Ok(table);
            }
        }
        Err(self.unknown_table(name))
    }

    /// The table or view `name` of schema `schema`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTable`] naming it.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, Schema};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// let schema = Schema::reflect(&engine)?;
    /// assert!(schema.table_in("main", "nothing").is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn table_in(&self, schema: &str, name: &str) -> Result<&Table> {
        let key = TableName::new(schema, name);
        self.tables
            .get(&key)
            .ok_or_else(|| self.unknown_table(&key.to_string()))
    }

    fn unknown_table(&self, name: &str) -> Error {
        Error::UnknownTable {
            table: name.to_owned(),
            schema: self.default_schema.clone(),
        }
    }
}

/// One engine's cached schema, reflected under its lock so that concurrent first uses
/// reflect once.
struct CacheEntry {
    engine: Engine,
    schema: Mutex<Option<Arc<Schema>>>,
}

/// Reflected schemas of named engines, each reflected on first use and kept until
/// [`refresh`](Self::refresh): what a service reads once at start-up instead of querying
/// the catalog on every request.
///
/// The cache is a value the application owns, beside its [`Registry`]; engines are keyed
/// by their registry names. It can be shared between threads.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use sqlassist::{Registry, SchemaCache, Settings};
///
/// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE t (a INTEGER)")?;
/// session.commit()?;
///
/// let schemas = SchemaCache::from_registry(&registry);
/// let first = schemas.schema("main")?;
/// assert!(Arc::ptr_eq(&first, &schemas.schema("main")?)); // reflected once
///
/// session.execute("ALTER TABLE t ADD COLUMN b TEXT")?;
/// session.commit()?;
/// assert_eq!(schemas.schema("main")?.table("t")?.columns().len(), 1); // still the cached one
/// assert_eq!(schemas.refresh("main")?.table("t")?.columns().len(), 2);
/// assert_eq!(schemas.schema("main")?.table("t")?.columns().len(), 2);
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Default)]
pub struct SchemaCache {
    entries: HashMap<String, CacheEntry>,
}

impl fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("SchemaCache")
            .field("engines", &names)
            .finish_non_exhaustive()
    }
}

impl SchemaCache {
    /// An empty cache; add engines with [`insert`](Self::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, SchemaCache};
    ///
    /// let mut schemas = SchemaCache::new();
    /// assert!(matches!(schemas.schema("log"), Err(Error::UnknownEngine { .. })));
    /// schemas.insert("log", Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?);
    /// assert_eq!(schemas.schema("log")?.tables().count(), 0);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache for every engine of `registry`, under its registry name. Reflects nothing
    /// yet.
    ///
    /// # Examples
    ///
    /// See [`SchemaCache`].
    pub fn from_registry(registry: &Registry) -> Self {
        let mut cache = Self::new();
        for name in registry.names() {
            if let Ok(engine) = registry.engine(name) {
                cache.insert(name, engine.clone());
            }
        }
        cache
    }

    /// Adds (or replaces, forgetting its schema) the engine `name`.
    ///
    /// # Examples
    ///
    /// See [`new`](Self::new).
    pub fn insert(&mut self, name: &str, engine: Engine) {
        self.entries.insert(
            name.to_owned(),
            CacheEntry {
                engine,
                schema: Mutex::new(None),
            },
        );
    }

    /// The schema of engine `name`: reflected on the first call, the same value afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownEngine`]; those of [`Schema::reflect`] (a failed reflection is not
    /// cached: the next call tries again).
    ///
    /// # Examples
    ///
    /// See [`SchemaCache`].
    pub fn schema(&self, name: &str) -> Result<Arc<Schema>> {
        let entry = self.entry(name)?;
        let mut cached = entry
            .schema
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(schema) = &*cached {
            return Ok(schema.clone());
        }
        let schema = Arc::new(Schema::reflect(&entry.engine)?);
        *cached = Some(schema.clone());
        Ok(schema)
    }

    /// Reflects engine `name` again and caches the result, which later
    /// [`schema`](Self::schema) calls return. Values returned before stay as they were.
    ///
    /// # Errors
    ///
    /// Those of [`schema`](Self::schema); on failure the previous schema stays cached.
    ///
    /// # Examples
    ///
    /// See [`SchemaCache`].
    pub fn refresh(&self, name: &str) -> Result<Arc<Schema>> {
        let entry = self.entry(name)?;
        let schema = Arc::new(Schema::reflect(&entry.engine)?);
        *entry
            .schema
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(schema.clone());
        Ok(schema)
    }

    fn entry(&self, name: &str) -> Result<&CacheEntry> {
        self.entries.get(name).ok_or_else(|| {
            let mut known: Vec<&str> = self.entries.keys().map(String::as_str).collect();
            known.sort_unstable();
            Error::UnknownEngine {
                name: name.to_owned(),
                known: known.join(", "),
            }
        })
    }
}

/// A column as a backend module found it, before its table is known.
pub(crate) fn column(
    name: String,
    sql_type: String,
    kind: ColumnKind,
    nullable: bool,
    default: Option<String>,
) -> Column {
    Column {
        name,
        sql_type,
        kind,
        nullable,
        default,
    }
}

/// A table under construction by a backend module.
pub(crate) fn table(name: TableName, kind: TableKind) -> Table {
    Table {
        name,
        kind,
        columns: Vec::new(),
        primary_key: Vec::new(),
        foreign_keys: Vec::new(),
        unique_constraints: Vec::new(),
    }
}

impl Table {
    pub(crate) fn push_column(&mut self, column: Column) {
        self.columns.push(column);
    }

    pub(crate) fn set_primary_key(&mut self, columns: Vec<String>) {
        self.primary_key = columns;
    }

    pub(crate) fn push_foreign_key(
        &mut self,
        name: Option<String>,
        columns: Vec<String>,
        referenced_table: TableName,
        referenced_columns: Vec<String>,
    ) {
        self.foreign_keys.push(ForeignKey {
            name,
            columns,
            referenced_table,
            referenced_columns,
        });
    }

    pub(crate) fn push_unique(&mut self, name: Option<String>, columns: Vec<String>) {
        self.unique_constraints
            .push(UniqueConstraint { name, columns });
    }
}

/// The number in the first parentheses of a type name: `VARCHAR(20)` gives 20,
/// `NUMERIC(10, 2)` gives 10 and 2.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) fn type_params(sql_type: &str) -> (Option<u32>, Option<u32>) {
    let Some(open) = sql_type.find('(') else {
        return (None, None);
    };
    let rest = &sql_type[open + 1..];
    let Some(close) = rest.find(')') else {
        return (None, None);
    };
    let mut parts = rest[..close]
        .split(',')
        .map(|p| p.trim().parse::<u32>().ok());
    (parts.next().flatten(), parts.next().flatten())
}
