//! Queries over reflected tables: select, insert, update and delete by table and column
//! names chosen at run time, without a `table!` declaration.
//!
//! A [`DynamicTable`] is a table of a reflected [`Schema`]; its queries check every column
//! name against the schema (an unknown one is [`Error::UnknownColumn`], an unsupported
//! type [`Error::UnsupportedType`]), quote identifiers for the engine's backend and send
//! every value as a bound parameter. They run on a [`Session`], so the writes of a managed
//! session join the thread's transaction like any other statement.
//!
//! Values travel as [`Value`]s, typed from the reflected column kinds. Reading, each column
//! is converted to text by the server (bytes to hex) and parsed into the variant of its
//! kind (a PostgreSQL array element by element), which keeps one code path for the three
//! backends. Writing, PostgreSQL parameters are cast to the column's declared type
//! (`CAST($1 AS numeric(10,2))`, an array sent as its text form), while MariaDB and SQLite
//! convert them on assignment themselves.
//!
//! A query's prepared statement is cached by the connection (keyed by its SQL text and
//! bind types; `LIMIT` is bound too, except on SQLite), so running a query shape again
//! costs one round trip, as the same query through a `table!` does.

use std::fmt;
use std::sync::Arc;

use diesel::connection::LoadConnection;
use diesel::deserialize::FromSql;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::row::{Field, Row as _};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Binary, Bool, Double, HasSqlType, Nullable, Text, Untyped};
use diesel::RunQueryDsl;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::reflect::{Column, ColumnKind, Schema, Table, TableName};
use crate::session::Session;

/// One value of a reflected column, typed from the column's [`ColumnKind`].
///
/// Exact numbers, dates and times are kept in the server's own text form (`"12.50"`,
/// `"2024-02-29"`, `"2024-02-29 13:45:00"`), so nothing is lost to a conversion.
///
/// # Examples
///
/// ```
/// use sqlassist::Value;
///
/// assert_eq!(Value::from(7), Value::Int(7));
/// assert_eq!(Value::from("x"), Value::Text("x".into()));
/// assert_eq!(Value::from(None::<i64>), Value::Null);
/// assert_eq!(Value::Int(7).kind_name(), "an integer");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// An integer column's value.
    Int(i64),
    /// A floating-point column's value.
    Float(f64),
    /// An exact decimal (`NUMERIC`, `DECIMAL`), as its text.
    Numeric(String),
    /// A text, varchar, char or enum column's value.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// A binary column's bytes.
    Bytes(Vec<u8>),
    /// A date, `YYYY-MM-DD`.
    Date(String),
    /// A time of day, `HH:MM:SS[.ffffff]`.
    Time(String),
    /// A date and time without time zone, `YYYY-MM-DD HH:MM:SS[.ffffff]`.
    Timestamp(String),
    /// A date and time with time zone, as the server writes it (`2024-02-29 13:45:00+00`).
    TimestampTz(String),
    /// JSON text.
    Json(String),
    /// A UUID in its hyphenated text form.
    Uuid(String),
    /// A PostgreSQL array: its elements, each a value of the element type (or `Null`);
    /// a multidimensional array nests `Array`s.
    Array(Vec<Value>),
}

impl Value {
    /// What kind of value this is, for messages: `"an integer"`, `"text"`, `"null"`...
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(sqlassist::Value::Bytes(vec![1]).kind_name(), "bytes");
    /// ```
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Numeric(_) => "a numeric",
            Value::Text(_) => "text",
            Value::Bool(_) => "a bool",
            Value::Bytes(_) => "bytes",
            Value::Date(_) => "a date",
            Value::Time(_) => "a time",
            Value::Timestamp(_) => "a timestamp",
            Value::TimestampTz(_) => "a timestamp with time zone",
            Value::Json(_) => "json",
            Value::Uuid(_) => "a uuid",
            Value::Array(_) => "an array",
        }
    }

    /// Whether a column of kind `kind` takes this value.
    fn fits(&self, kind: &ColumnKind) -> bool {
        use ColumnKind as K;
        matches!(
            (self, kind),
            (Value::Null, _)
                | (
                    Value::Int(_),
                    K::Integer { .. } | K::Numeric { .. } | K::Float { .. }
                )
                | (Value::Float(_), K::Float { .. } | K::Numeric { .. })
                | (
                    Value::Numeric(_),
                    K::Numeric { .. } | K::Float { .. } | K::Integer { .. }
                )
                | (Value::Text(_), _)
                | (Value::Bool(_), K::Bool)
                | (Value::Bytes(_), K::Binary)
                | (Value::Date(_), K::Date | K::Timestamp | K::TimestampTz)
                | (Value::Time(_), K::Time)
                | (
                    Value::Timestamp(_) | Value::TimestampTz(_),
                    K::Timestamp | K::TimestampTz
                )
                | (Value::Json(_), K::Json | K::Jsonb)
                | (Value::Uuid(_), K::Uuid | K::Char { .. } | K::Varchar { .. })
        ) || matches!((self, kind), (Value::Array(items), K::Array(inner)) if items.iter().all(|item| item.fits_element(inner)))
    }

    /// Whether an array whose elements are of kind `inner` takes this value as an element
    /// (a nested array: every one of its elements).
    fn fits_element(&self, inner: &ColumnKind) -> bool {
        match self {
            Value::Array(items) => items.iter().all(|item| item.fits_element(inner)),
            other => other.fits(inner),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One row read by [`DynamicQuery::load`]: the selected columns' values, in order.
///
/// # Examples
///
/// ```
/// use sqlassist::{DynamicTable, Registry, Schema, Settings, Value};
///
/// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")?;
/// session.execute("INSERT INTO t VALUES (1, 'a')")?;
/// session.commit()?;
/// let schema = Schema::reflect(registry.engine("main")?)?;
/// let rows = DynamicTable::new(&schema, "t")?.select().load(&session)?;
/// assert_eq!(rows[0].columns(), ["id", "name"]);
/// assert_eq!(rows[0].get("name"), Some(&Value::Text("a".into())));
/// assert_eq!(rows[0].values(), [Value::Int(1), Value::Text("a".into())]);
/// # session.rollback()?;
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The selected columns' names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The values, in the order of [`columns`](Self::columns).
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The value of column `name`, if it was selected.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.columns
            .iter()
            .position(|c| c == name)
            .map(|i| &self.values[i])
    }

    /// The values, by move.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }
}

/// A comparison in a [`DynamicQuery::filter`].
///
/// Comparing with [`Value::Null`] through [`Cmp::Eq`] or [`Cmp::Ne`] writes `IS NULL` or
/// `IS NOT NULL`; the other comparisons with `NULL` are refused.
///
/// # Examples
///
/// ```
/// assert_eq!(sqlassist::Cmp::Le.to_string(), "<=");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Cmp {
    fn as_sql(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ne => "<>",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

impl fmt::Display for Cmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_sql())
    }
}

/// A sort direction in a [`DynamicQuery::order_by`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

/// A table of a reflected [`Schema`], to query by column names chosen at run time.
///
/// # Examples
///
/// ```
/// use sqlassist::{Cmp, DynamicTable, Order, Registry, Schema, Settings, Value};
///
/// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER)")?;
/// session.commit()?;
/// let schema = Schema::reflect(registry.engine("main")?)?;
/// let people = DynamicTable::new(&schema, "people")?;
///
/// for (id, name, age) in [(1, "ann", 31), (2, "bob", 25), (3, "cy", 40)] {
///     people.insert().value("id", id)?.value("name", name)?.value("age", age)?.execute(&session)?;
/// }
/// people.update().set("age", 26)?.filter("name", Cmp::Eq, "bob")?.execute(&session)?;
/// assert_eq!(people.delete().filter("age", Cmp::Gt, 35)?.execute(&session)?, 1);
/// let rows = people
///     .select_columns(&["name", "age"])?
///     .order_by("age", Order::Desc)?
///     .limit(10)
///     .load(&session)?;
/// let names: Vec<_> = rows.iter().map(|r| r.values().to_vec()).collect();
/// assert_eq!(names, [
///     vec![Value::Text("ann".into()), Value::Int(31)],
///     vec![Value::Text("bob".into()), Value::Int(26)],
/// ]);
/// assert!(people.select().filter("nickname", Cmp::Eq, "x").is_err()); // no such column
/// # session.commit()?;
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct DynamicTable<'s> {
    backend: Backend,
    table: &'s Table,
}

impl<'s> DynamicTable<'s> {
    /// Table `name` of `schema` (unqualified names are looked up in the schema's default
    /// schema, `schema.name` otherwise).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTable`].
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, DynamicTable, Engine, EngineOptions, Error, Schema};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// let schema = Schema::reflect(&engine)?;
    /// assert!(matches!(DynamicTable::new(&schema, "nope"), Err(Error::UnknownTable { .. })));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn new(schema: &'s Schema, name: &str) -> Result<Self> {
        Ok(Self {
            backend: schema.backend(),
            table: schema.table(name)?,
        })
    }

    /// The reflected table.
    pub fn table(&self) -> &'s Table {
        self.table
    }

    /// A `SELECT` of every column (in the table's order).
    ///
    /// Selecting a column whose type is not supported fails when the query runs; use
    /// [`select_columns`](Self::select_columns) to leave it out.
    pub fn select(&self) -> DynamicQuery<'s> {
        let mut query = self.query(Kind::Select);
        query.columns = self.table.columns().iter().collect();
        query
    }

    /// A `SELECT` of the named columns.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownColumn`]; [`Error::UnsupportedType`] for a column whose type
    /// sqlassist cannot read.
    pub fn select_columns(&self, columns: &[&str]) -> Result<DynamicQuery<'s>> {
        let mut query = self.query(Kind::Select);
        for name in columns {
            self.table.supported_kind(name)?;
            query.columns.push(self.table.column(name)?);
        }
        Ok(query)
    }

    /// An `INSERT` of one row; give its values with [`DynamicQuery::value`].
    pub fn insert(&self) -> DynamicQuery<'s> {
        self.query(Kind::Insert)
    }

    /// An `UPDATE`; give new values with [`DynamicQuery::set`] and the rows with
    /// [`DynamicQuery::filter`] (no filter updates every row).
    pub fn update(&self) -> DynamicQuery<'s> {
        self.query(Kind::Update)
    }

    /// A `DELETE` of the rows [`DynamicQuery::filter`] chooses (no filter deletes every row).
    pub fn delete(&self) -> DynamicQuery<'s> {
        self.query(Kind::Delete)
    }

    fn query(&self, kind: Kind) -> DynamicQuery<'s> {
        DynamicQuery {
            backend: self.backend,
            table: self.table,
            kind,
            columns: Vec::new(),
            assignments: Vec::new(),
            filters: Vec::new(),
            order: Vec::new(),
            limit: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Select,
    Insert,
    Update,
    Delete,
}

/// A query over a [`DynamicTable`], built step by step; every column name is checked
/// against the reflected table as it is given.
///
/// See [`DynamicTable`] for an example.
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until it is loaded or executed"]
pub struct DynamicQuery<'s> {
    backend: Backend,
    table: &'s Table,
    kind: Kind,
    columns: Vec<&'s Column>,
    assignments: Vec<(&'s Column, Value)>,
    filters: Vec<(&'s Column, Cmp, Value)>,
    order: Vec<(&'s Column, Order)>,
    limit: Option<u64>,
}

impl<'s> DynamicQuery<'s> {
    /// The value of `column` in the row an `INSERT` writes.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownColumn`], [`Error::UnsupportedType`], [`Error::ValueDoesNotFit`].
    pub fn value(self, column: &str, value: impl Into<Value>) -> Result<Self> {
        self.set(column, value)
    }

    /// `SET column = value` in an `UPDATE` (the same as [`value`](Self::value)).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownColumn`], [`Error::UnsupportedType`], [`Error::ValueDoesNotFit`].
    pub fn set(mut self, column: &str, value: impl Into<Value>) -> Result<Self> {
        let (column, value) = self.checked(column, value.into())?;
        self.assignments.push((column, value));
        Ok(self)
    }

    /// `WHERE column <cmp> value`; several filters are joined by `AND`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownColumn`], [`Error::UnsupportedType`], [`Error::ValueDoesNotFit`];
    /// [`Error::InvalidQuery`] for an ordering comparison with `NULL`.
    pub fn filter(mut self, column: &str, cmp: Cmp, value: impl Into<Value>) -> Result<Self> {
        let (column, value) = self.checked(column, value.into())?;
        if value == Value::Null && !matches!(cmp, Cmp::Eq | Cmp::Ne) {
            return Err(self.invalid(format!("`{}` {cmp} null is never true", column.name())));
        }
        self.filters.push((column, cmp, value));
        Ok(self)
    }

    /// `ORDER BY column`; several are applied in the order given.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownColumn`].
    pub fn order_by(mut self, column: &str, order: Order) -> Result<Self> {
        let column = self.table.column(column)?;
        self.order.push((column, order));
        Ok(self)
    }

    /// `LIMIT n`.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Runs a `SELECT` on `session` and returns its rows.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQuery`] when this is not a `SELECT`; [`Error::UnsupportedType`]
    /// for a selected column sqlassist cannot read; those of [`Session::run`].
    pub fn load(&self, session: &Session) -> Result<Vec<Row>> {
        if self.kind != Kind::Select {
            return Err(self.invalid("only a select returns rows; use execute()".into()));
        }
        for column in &self.columns {
            self.table.supported_kind(column.name())?;
        }
        let statement = self.to_sql();
        let names: Arc<[String]> = self.columns.iter().map(|c| c.name().to_owned()).collect();
        let kinds: Vec<&ColumnKind> = self.columns.iter().map(|c| c.kind()).collect();
        let rows: Vec<Vec<Cell>> =
            match session.engine().backend() {
                #[cfg(feature = "postgres")]
                Backend::Postgres => {
                    session.run(|c: &mut diesel::PgConnection| load_cells(c, &statement, &kinds))?
                }
                #[cfg(feature = "mysql")]
                Backend::Mysql => session
                    .run(|c: &mut diesel::MysqlConnection| load_cells(c, &statement, &kinds))?,
                #[cfg(feature = "sqlite")]
                Backend::Sqlite => session
                    .run(|c: &mut diesel::SqliteConnection| load_cells(c, &statement, &kinds))?,
                #[allow(unreachable_patterns)]
                other => return Err(not_enabled(other)),
            };
        rows.into_iter()
            .map(|cells| {
                let values = cells
                    .into_iter()
                    .zip(&kinds)
                    .zip(self.columns.iter())
                    .map(|((cell, kind), column)| match cell {
                        Cell::Value(value) => Ok(value),
                        Cell::Text(text) => self.decode(column, kind, text),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Row {
                    columns: names.clone(),
                    values,
                })
            })
            .collect()
    }

    /// Runs an `INSERT`, `UPDATE` or `DELETE` on `session`; returns the number of rows
    /// affected.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQuery`] for a `SELECT`, or an `INSERT`/`UPDATE` without values;
    /// those of [`Session::run`].
    pub fn execute(&self, session: &Session) -> Result<usize> {
        match self.kind {
            Kind::Select => return Err(self.invalid("a select is run with load()".into())),
            Kind::Insert | Kind::Update if self.assignments.is_empty() => {
                return Err(self.invalid("no column values given".into()))
            }
            _ => {}
        }
        let statement = self.to_sql();
        match session.engine().backend() {
            #[cfg(feature = "postgres")]
            Backend::Postgres => session.run(|c: &mut diesel::PgConnection| statement.execute(c)),
            #[cfg(feature = "mysql")]
            Backend::Mysql => session.run(|c: &mut diesel::MysqlConnection| statement.execute(c)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => session.run(|c: &mut diesel::SqliteConnection| statement.execute(c)),
            #[allow(unreachable_patterns)]
            other => Err(not_enabled(other)),
        }
    }

    /// The SQL text this query sends, with its parameter placeholders: for logs and tests.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Cmp, DatabaseUrl, DynamicTable, Engine, EngineOptions, InitOptions, Registry, Schema};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// let mut registry = Registry::new();
    /// registry.init_engine("main", engine.clone(), InitOptions::new())?;
    /// let session = registry.session("main")?;
    /// session.execute(r#"CREATE TABLE "odd""name" (v INTEGER)"#)?;
    /// session.commit()?;
    /// let schema = Schema::reflect(&engine)?;
    /// let query = DynamicTable::new(&schema, "odd\"name")?.delete().filter("v", Cmp::Lt, 3)?;
    /// assert_eq!(query.sql(), r#"DELETE FROM "main"."odd""name" WHERE "v" < ?"#);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn sql(&self) -> String {
        self.to_sql().text()
    }

    fn checked(&self, column: &str, value: Value) -> Result<(&'s Column, Value)> {
        let kind = self.table.supported_kind(column)?;
        let column = self.table.column(column)?;
        if !value.fits(kind) {
            return Err(Error::ValueDoesNotFit {
                table: self.table.name().to_string().into(),
                column: column.name().into(),
                type_name: column.sql_type().into(),
                value: value.kind_name(),
            });
        }
        Ok((column, value))
    }

    fn invalid(&self, reason: String) -> Error {
        Error::InvalidQuery {
            table: self.table.name().to_string(),
            reason,
        }
    }

    fn to_sql(&self) -> Statement {
        let mut w = Writer {
            backend: self.backend,
            sql: String::with_capacity(128),
            chunks: Vec::with_capacity(self.assignments.len() + self.filters.len() + 2),
            binds: Vec::with_capacity(self.assignments.len() + self.filters.len() + 1),
        };
        let table = self.table.name();
        match self.kind {
            Kind::Select => {
                w.sql.push_str("SELECT ");
                for (i, column) in self.columns.iter().enumerate() {
                    if i > 0 {
                        w.sql.push_str(", ");
                    }
                    w.as_text(column);
                }
                w.sql.push_str(" FROM ");
                w.table(table);
            }
            Kind::Insert => {
                w.sql.push_str("INSERT INTO ");
                w.table(table);
                w.sql.push_str(" (");
                for (i, (column, _)) in self.assignments.iter().enumerate() {
                    if i > 0 {
                        w.sql.push_str(", ");
                    }
                    w.ident(column.name());
                }
                w.sql.push_str(") VALUES (");
                for (i, (column, value)) in self.assignments.iter().enumerate() {
                    if i > 0 {
                        w.sql.push_str(", ");
                    }
                    w.param(column, value.clone());
                }
                w.sql.push(')');
            }
            Kind::Update => {
                w.sql.push_str("UPDATE ");
                w.table(table);
                w.sql.push_str(" SET ");
                for (i, (column, value)) in self.assignments.iter().enumerate() {
                    if i > 0 {
                        w.sql.push_str(", ");
                    }
                    w.ident(column.name());
                    w.sql.push_str(" = ");
                    w.param(column, value.clone());
                }
            }
            Kind::Delete => {
                w.sql.push_str("DELETE FROM ");
                w.table(table);
            }
        }
        for (i, (column, cmp, value)) in self.filters.iter().enumerate() {
            w.sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            w.ident(column.name());
            match (value, cmp) {
                (Value::Null, Cmp::Eq) => w.sql.push_str(" IS NULL"),
                (Value::Null, _) => w.sql.push_str(" IS NOT NULL"),
                _ => {
                    w.sql.push(' ');
                    w.sql.push_str(cmp.as_sql());
                    w.sql.push(' ');
                    w.param(column, value.clone());
                }
            }
        }
        if self.kind == Kind::Select {
            for (i, (column, order)) in self.order.iter().enumerate() {
                w.sql.push_str(if i == 0 { " ORDER BY " } else { ", " });
                w.ident(column.name());
                w.sql.push_str(match order {
                    Order::Asc => " ASC",
                    Order::Desc => " DESC",
                });
            }
            if let Some(n) = self.limit {
                w.sql.push_str(" LIMIT ");
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                match self.backend {
                    // SQLite (built with STAT4) prepares a statement with a bound LIMIT
                    // again on every run, which costs three times the select itself:
                    // a number this library formats is written instead.
                    Backend::Sqlite => w.sql.push_str(&n.to_string()),
                    // Bound, not written: one prepared statement serves every limit.
                    Backend::Postgres | Backend::Mysql => w.bind(Value::Int(n)),
                }
            }
        }
        w.chunks.push(w.sql);
        Statement {
            backend: w.backend,
            chunks: w.chunks,
            binds: w.binds,
        }
    }

    fn decode(&self, column: &Column, kind: &ColumnKind, text: Option<String>) -> Result<Value> {
        let Some(text) = text else {
            return Ok(Value::Null);
        };
        let bad = || Error::InvalidQuery {
            table: self.table.name().to_string(),
            reason: format!(
                "column `{}` ({}) returned a value sqlassist cannot read",
                column.name(),
                column.sql_type()
            ),
        };
        use ColumnKind as K;
        Ok(match kind {
            K::Integer { .. } => match text.parse::<i64>() {
                Ok(v) => Value::Int(v),
                // An unsigned BIGINT above i64::MAX: keep its digits.
                Err(_) => Value::Numeric(text),
            },
            K::Float { .. } => Value::Float(text.parse().map_err(|_| bad())?),
            K::Numeric { .. } => Value::Numeric(text),
            K::Bool => Value::Bool(match text.as_str() {
                "t" | "true" | "1" => true,
                "f" | "false" | "0" => false,
                _ => return Err(bad()),
            }),
            K::Date => Value::Date(text),
            K::Time => Value::Time(text),
            K::Timestamp => Value::Timestamp(text),
            K::TimestampTz => Value::TimestampTz(text),
            K::Json | K::Jsonb => Value::Json(text),
            K::Uuid => Value::Uuid(text),
            K::Binary => Value::Bytes(from_hex(&text).ok_or_else(bad)?),
            K::Array(inner) => {
                let elements = parse_array(&text).ok_or_else(bad)?;
                self.decode_elements(column, inner, elements)?
            }
            _ => Value::Text(text),
        })
    }

    /// The [`Value::Array`] of parsed array elements, each decoded as kind `inner`.
    fn decode_elements(
        &self,
        column: &Column,
        inner: &ColumnKind,
        elements: Vec<Element>,
    ) -> Result<Value> {
        elements
            .into_iter()
            .map(|element| match element {
                Element::Array(nested) => self.decode_elements(column, inner, nested),
                // An array writes its bytea elements as `\x` and hex.
                Element::Item(Some(text)) if *inner == ColumnKind::Binary => self.decode(
                    column,
                    inner,
                    Some(text.strip_prefix("\\x").unwrap_or(&text).to_owned()),
                ),
                Element::Item(text) => self.decode(column, inner, text),
            })
            .collect::<Result<Vec<_>>>()
            .map(Value::Array)
    }
}

fn not_enabled(backend: Backend) -> Error {
    Error::BackendNotEnabled {
        backend,
        feature: backend.feature(),
    }
}

/// Builds the SQL text and collects the values to bind, in placeholder order: the text
/// before each placeholder is a finished chunk, `sql` the one being written.
struct Writer {
    backend: Backend,
    sql: String,
    chunks: Vec<String>,
    binds: Vec<Value>,
}

impl Writer {
    /// Writes `name` quoted for the backend. (Written in place, without `format!`: the
    /// text of a dynamic query is built on every call, and formatting showed in profiles.)
    fn ident(&mut self, name: &str) {
        let quote = match self.backend {
            Backend::Mysql => '`',
            Backend::Postgres | Backend::Sqlite => '"',
        };
        self.sql.push(quote);
        for c in name.chars() {
            if c == quote {
                self.sql.push(quote);
            }
            self.sql.push(c);
        }
        self.sql.push(quote);
    }

    /// Writes `schema.table`, each part quoted.
    fn table(&mut self, name: &TableName) {
        self.ident(name.schema());
        self.sql.push('.');
        self.ident(name.name());
    }

    /// Writes the select-list expression that reads `column`: as text (bytes as hex), or
    /// as it is where the backend's binary form is read directly ([`NativeRead`]).
    fn as_text(&mut self, column: &Column) {
        if self.backend == Backend::Postgres && pg_native(column.kind()) {
            self.ident(column.name());
            return;
        }
        let (before, after) = match (self.backend, column.kind()) {
            (Backend::Postgres, ColumnKind::Binary) => ("encode(", ", 'hex')"),
            (Backend::Mysql, ColumnKind::Binary) => ("hex(", ")"),
            // SQLite's hex(NULL) is '', the same as an empty blob's.
            (Backend::Sqlite, ColumnKind::Binary) => {
                self.sql.push_str("CASE WHEN ");
                self.ident(column.name());
                (" IS NULL THEN NULL ELSE hex(", ") END")
            }
            (Backend::Mysql, _) => ("CAST(", " AS CHAR)"),
            (Backend::Postgres | Backend::Sqlite, _) => ("CAST(", " AS TEXT)"),
        };
        self.sql.push_str(before);
        self.ident(column.name());
        self.sql.push_str(after);
    }

    /// Ends the current chunk at a placeholder for `value`.
    fn bind(&mut self, value: Value) {
        self.binds.push(value);
        self.chunks.push(std::mem::take(&mut self.sql));
    }

    /// Writes a placeholder for `value`, bound for `column`.
    fn param(&mut self, column: &Column, value: Value) {
        // An array travels as its text form, which the cast below reads.
        let value = match value {
            Value::Array(items) => Value::Text(array_literal(&items)),
            other => other,
        };
        match (self.backend, column.kind()) {
            // An explicit cast to varchar(n) truncates; assignment checks the length.
            (
                Backend::Postgres,
                ColumnKind::Text | ColumnKind::Varchar { .. } | ColumnKind::Char { .. },
            )
            | (Backend::Mysql | Backend::Sqlite, _) => self.bind(value),
            // Parameters are typed (int8, float8, text): the column's own type makes
            // numeric, date, json, enum, array... comparisons and assignments work.
            (Backend::Postgres, kind) => {
                self.sql.push_str("CAST(");
                self.bind(value);
                self.sql.push_str(" AS ");
                self.sql.push_str(match kind {
                    // As for text columns: an explicit cast to `varchar(n)[]` would cut
                    // long elements; the cast without a length leaves the check to the
                    // assignment (the dimensions are not part of the type).
                    ColumnKind::Array(inner) if matches!(**inner, ColumnKind::Varchar { .. }) => {
                        "varchar[]"
                    }
                    ColumnKind::Array(inner) if matches!(**inner, ColumnKind::Char { .. }) => {
                        "bpchar[]"
                    }
                    _ => column.sql_type(),
                });
                self.sql.push(')');
            }
        }
    }
}

/// A dynamic query's SQL, cut at its placeholders, and the values they bind.
///
/// Unlike Diesel's `sql_query`, it lets the connection cache its prepared statement (keyed
/// by the SQL text and the bind types), so a query run again costs one round trip, as the
/// same query through a `table!` does.
struct Statement {
    backend: Backend,
    /// The SQL before each placeholder, then the SQL after the last: one more than `binds`.
    chunks: Vec<String>,
    binds: Vec<Value>,
}

impl Statement {
    /// The SQL with the backend's placeholders written in (`$1`, `?`).
    fn text(&self) -> String {
        let mut sql = String::new();
        for (i, chunk) in self.chunks.iter().enumerate() {
            sql.push_str(chunk);
            if i < self.binds.len() {
                match self.backend {
                    Backend::Postgres => sql.push_str(&format!("${}", i + 1)),
                    Backend::Mysql | Backend::Sqlite => sql.push('?'),
                }
            }
        }
        sql
    }
}

impl QueryId for Statement {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Statement {
    type SqlType = Untyped;
}

impl<C: diesel::Connection> RunQueryDsl<C> for Statement {}

static NULL_TEXT: Option<String> = None;

impl<DB> QueryFragment<DB> for Statement
where
    DB: diesel::backend::Backend
        + HasSqlType<BigInt>
        + HasSqlType<Double>
        + HasSqlType<Bool>
        + HasSqlType<Binary>
        + HasSqlType<Text>,
    i64: ToSql<BigInt, DB>,
    f64: ToSql<Double, DB>,
    bool: ToSql<Bool, DB>,
    Vec<u8>: ToSql<Binary, DB>,
    String: ToSql<Text, DB>,
    Option<String>: ToSql<Nullable<Text>, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> diesel::QueryResult<()> {
        for (i, chunk) in self.chunks.iter().enumerate() {
            out.push_sql(chunk);
            let Some(value) = self.binds.get(i) else {
                continue;
            };
            match value {
                Value::Null => out.push_bind_param::<Nullable<Text>, _>(&NULL_TEXT)?,
                Value::Int(v) => out.push_bind_param::<BigInt, _>(v)?,
                Value::Float(v) => out.push_bind_param::<Double, _>(v)?,
                Value::Bool(v) => out.push_bind_param::<Bool, _>(v)?,
                Value::Bytes(v) => out.push_bind_param::<Binary, _>(v)?,
                Value::Numeric(s)
                | Value::Text(s)
                | Value::Date(s)
                | Value::Time(s)
                | Value::Timestamp(s)
                | Value::TimestampTz(s)
                | Value::Json(s)
                | Value::Uuid(s) => out.push_bind_param::<Text, _>(s)?,
                Value::Array(_) => {
                    return Err(diesel::result::Error::SerializationError(
                        "an array is bound as its text form".into(),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// A selected field as read: text to parse by its kind, or a value read directly.
enum Cell {
    Text(Option<String>),
    Value(Value),
}

/// Reading a field in the backend's own binary form, for the kinds where that is exact
/// and cheaper than a text conversion on the server and a parse here.
trait NativeRead: diesel::backend::Backend {
    /// Whether a column of kind `kind` is selected as it is and read here, not as text.
    fn is_native(kind: &ColumnKind) -> bool;

    /// The value of a non-null field of a native kind.
    fn read_native(
        kind: &ColumnKind,
        raw: <Self as diesel::backend::Backend>::RawValue<'_>,
    ) -> diesel::deserialize::Result<Value>;
}

/// Whether a PostgreSQL column of kind `kind` is read in binary: integers, `float8` and
/// `bool` (`float4` stays text: widened to f64 it would not print as PostgreSQL does).
fn pg_native(kind: &ColumnKind) -> bool {
    matches!(
        kind,
        ColumnKind::Integer { .. } | ColumnKind::Float { bytes: 8 } | ColumnKind::Bool
    )
}

#[cfg(feature = "postgres")]
impl NativeRead for diesel::pg::Pg {
    fn is_native(kind: &ColumnKind) -> bool {
        pg_native(kind)
    }

    fn read_native(
        kind: &ColumnKind,
        raw: diesel::pg::PgValue<'_>,
    ) -> diesel::deserialize::Result<Value> {
        use diesel::sql_types::{Float8, Int2, Int4, Int8};
        match kind {
            ColumnKind::Integer { bytes: 2, .. } => {
                <i16 as FromSql<Int2, Self>>::from_sql(raw).map(|v| Value::Int(v.into()))
            }
            ColumnKind::Integer { bytes: 4, .. } => {
                <i32 as FromSql<Int4, Self>>::from_sql(raw).map(|v| Value::Int(v.into()))
            }
            ColumnKind::Integer { .. } => {
                <i64 as FromSql<Int8, Self>>::from_sql(raw).map(Value::Int)
            }
            ColumnKind::Float { bytes: 8 } => {
                <f64 as FromSql<Float8, Self>>::from_sql(raw).map(Value::Float)
            }
            ColumnKind::Bool => <bool as FromSql<Bool, Self>>::from_sql(raw).map(Value::Bool),
            other => Err(format!("{other:?} is not read natively").into()),
        }
    }
}

#[cfg(feature = "mysql")]
impl NativeRead for diesel::mysql::Mysql {
    fn is_native(_: &ColumnKind) -> bool {
        false
    }

    fn read_native(
        _: &ColumnKind,
        _: diesel::mysql::MysqlValue<'_>,
    ) -> diesel::deserialize::Result<Value> {
        Err("no kind is read natively".into())
    }
}

#[cfg(feature = "sqlite")]
impl NativeRead for diesel::sqlite::Sqlite {
    fn is_native(_: &ColumnKind) -> bool {
        false
    }

    fn read_native(
        _: &ColumnKind,
        _: diesel::sqlite::SqliteValue<'_, '_, '_>,
    ) -> diesel::deserialize::Result<Value> {
        Err("no kind is read natively".into())
    }
}

/// Runs `statement` and reads every field of every row: natively where the backend says
/// so for the column's kind (`kinds`, in select order), as (nullable) text otherwise.
fn load_cells<C>(
    conn: &mut C,
    statement: &Statement,
    kinds: &[&ColumnKind],
) -> diesel::QueryResult<Vec<Vec<Cell>>>
where
    C: LoadConnection,
    C::Backend: diesel::expression::QueryMetadata<Untyped> + NativeRead,
    Statement: QueryFragment<C::Backend>,
    String: FromSql<Text, C::Backend>,
{
    let cursor = conn.load(statement)?;
    let mut rows = Vec::new();
    for row in cursor {
        let row = row?;
        let mut cells = Vec::with_capacity(row.field_count());
        for i in 0..row.field_count() {
            let field = row.get(i).ok_or_else(|| {
                diesel::result::Error::DeserializationError(
                    "a row has fewer fields than announced".into(),
                )
            })?;
            let kind = kinds.get(i).ok_or_else(|| {
                diesel::result::Error::DeserializationError(
                    "a row has more fields than selected".into(),
                )
            })?;
            cells.push(match field.value() {
                None => Cell::Text(None),
                Some(raw) if C::Backend::is_native(kind) => Cell::Value(
                    C::Backend::read_native(kind, raw)
                        .map_err(diesel::result::Error::DeserializationError)?,
                ),
                Some(raw) => Cell::Text(Some(
                    <String as FromSql<Text, C::Backend>>::from_sql(raw)
                        .map_err(diesel::result::Error::DeserializationError)?,
                )),
            });
        }
        rows.push(cells);
    }
    Ok(rows)
}

/// One element of a PostgreSQL array's text form: a nested array, or an item's text
/// (`None` for `NULL`).
#[derive(Debug, PartialEq)]
enum Element {
    Array(Vec<Element>),
    Item(Option<String>),
}

/// The elements of a PostgreSQL array's text form (`{1,NULL,"a b"}`, `{{1,2},{3,4}}`,
/// `[0:1]={5,6}`); `None` when `text` is not one.
fn parse_array(text: &str) -> Option<Vec<Element>> {
    // Bounds other than the default are written before the array: `[0:1]={5,6}`.
    let body = match text.strip_prefix('[') {
        Some(_) => text.split_once('=')?.1,
        None => text,
    };
    let mut chars = body.chars().peekable();
    let elements = parse_elements(&mut chars)?;
    chars.next().is_none().then_some(elements)
}

fn parse_elements(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Vec<Element>> {
    if chars.next()? != '{' {
        return None;
    }
    let mut elements = Vec::new();
    if chars.peek() == Some(&'}') {
        chars.next();
        return Some(elements);
    }
    loop {
        match chars.peek()? {
            '{' => elements.push(Element::Array(parse_elements(chars)?)),
            '"' => {
                chars.next();
                let mut item = String::new();
                loop {
                    match chars.next()? {
                        '\\' => item.push(chars.next()?),
                        '"' => break,
                        c => item.push(c),
                    }
                }
                elements.push(Element::Item(Some(item)));
            }
            _ => {
                let mut item = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '}' {
                        break;
                    }
                    item.push(c);
                    chars.next();
                }
                let item = item.trim();
                elements.push(Element::Item(
                    (!item.eq_ignore_ascii_case("NULL")).then(|| item.to_owned()),
                ));
            }
        }
        match chars.next()? {
            ',' => continue,
            '}' => return Some(elements),
            _ => return None,
        }
    }
}

/// The PostgreSQL text form of an array of `items`: every element quoted and escaped,
/// `NULL` unquoted, nested arrays in braces.
fn array_literal(items: &[Value]) -> String {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let text = match item {
            Value::Null => {
                out.push_str("NULL");
                continue;
            }
            Value::Array(nested) => {
                out.push_str(&array_literal(nested));
                continue;
            }
            Value::Int(v) => v.to_string(),
            Value::Float(v) if v.is_nan() => "NaN".to_owned(),
            Value::Float(v) if v.is_infinite() => {
                if *v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
            }
            Value::Float(v) => v.to_string(),
            Value::Bool(v) => if *v { "t" } else { "f" }.to_owned(),
            Value::Bytes(v) => {
                let mut hex = String::from("\\x");
                for byte in v {
                    hex.push_str(&format!("{byte:02x}"));
                }
                hex
            }
            Value::Numeric(s)
            | Value::Text(s)
            | Value::Date(s)
            | Value::Time(s)
            | Value::Timestamp(s)
            | Value::TimestampTz(s)
            | Value::Json(s)
            | Value::Uuid(s) => s.clone(),
        };
        out.push('"');
        for c in text.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(s: &str) -> Element {
        Element::Item(Some(s.to_owned()))
    }

    #[test]
    fn array_text_forms_parse_with_quotes_nulls_nesting_and_bounds() {
        assert_eq!(parse_array("{}"), Some(vec![]));
        assert_eq!(
            parse_array(r#"{1,NULL,"NULL","a \"b\", c\\d",{}}"#),
            Some(vec![
                item("1"),
                Element::Item(None),
                item("NULL"),
                item(r#"a "b", c\d"#),
                Element::Array(vec![]),
            ])
        );
        assert_eq!(
            parse_array("{{1,2},{3,4}}"),
            Some(vec![
                Element::Array(vec![item("1"), item("2")]),
                Element::Array(vec![item("3"), item("4")]),
            ])
        );
        assert_eq!(parse_array("[0:1]={5,6}"), Some(vec![item("5"), item("6")]));
        for bad in ["", "{", "{1,2", "{1}x", "1,2", r#"{"a}"#] {
            assert_eq!(parse_array(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn array_literals_quote_every_element_and_parse_back() {
        let items = vec![
            Value::Int(-3),
            Value::Null,
            Value::Text(r#"a "b", {c}\d"#.into()),
            Value::Bool(true),
            Value::Bytes(vec![0, 0xff]),
            Value::Float(f64::NEG_INFINITY),
            Value::Array(vec![Value::Text("NULL".into())]),
        ];
        let literal = array_literal(&items);
        assert_eq!(
            literal,
            r#"{"-3",NULL,"a \"b\", {c}\\d","t","\\x00ff","-Infinity",{"NULL"}}"#
        );
        assert_eq!(
            parse_array(&literal),
            Some(vec![
                item("-3"),
                Element::Item(None),
                item(r#"a "b", {c}\d"#),
                item("t"),
                item(r"\x00ff"),
                item("-Infinity"),
                Element::Array(vec![item("NULL")]),
            ])
        );
    }
}
