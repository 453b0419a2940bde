//! Drift check: the application's declared tables against the live schema.
//!
//! A [`DeclaredTable`] lists a `table!`'s columns by their Diesel types
//! (`.column::<users::name>()`): the name comes from `diesel::Column::NAME`, the SQL type
//! and nullability from the column's `SqlType`. [`check_drift`] compares each with the
//! reflected [`Schema`] and reports every column that is missing, of another type family,
//! or of another nullability.

use std::fmt;

use crate::error::{Error, Result};
use crate::reflect::{ColumnKind, Schema};

/// A Diesel SQL type the drift check knows: its family and whether it is `Nullable`.
///
/// Implemented for Diesel's `SmallInt`, `Integer`, `BigInt`, `Float`, `Double`, `Numeric`,
/// `Text`, `Bool`, `Date`, `Time`, `Timestamp`, `Binary`, `Json`, PostgreSQL's
/// `Timestamptz`, `Jsonb` and `Uuid`, and `Nullable<T>` of each.
pub trait DeclaredType {
    /// The family name used in messages and comparisons (`"integer"`, `"text"`...).
    const FAMILY: &'static str;
    /// Whether the type is `Nullable<..>`.
    const NULLABLE: bool = false;
}

macro_rules! declared {
    ($($ty:ty => $family:literal),* $(,)?) => {
        $(impl DeclaredType for $ty {
            const FAMILY: &'static str = $family;
        })*
    };
}

declared! {
    diesel::sql_types::SmallInt => "smallint",
    diesel::sql_types::Integer => "integer",
    diesel::sql_types::BigInt => "bigint",
    diesel::sql_types::Float => "float",
    diesel::sql_types::Double => "double",
    diesel::sql_types::Numeric => "numeric",
    diesel::sql_types::Text => "text",
    diesel::sql_types::Bool => "bool",
    diesel::sql_types::Date => "date",
    diesel::sql_types::Time => "time",
    diesel::sql_types::Timestamp => "timestamp",
    diesel::sql_types::Binary => "binary",
    diesel::sql_types::Json => "json",
}

#[cfg(feature = "postgres")]
declared! {
    diesel::sql_types::Timestamptz => "timestamptz",
    diesel::sql_types::Jsonb => "jsonb",
    diesel::sql_types::Uuid => "uuid",
}

#[cfg(feature = "mysql")]
declared! {
    // MariaDB/MySQL `TINYINT`: reflected as a 1-byte integer, the `smallint` family.
    diesel::sql_types::TinyInt => "smallint",
}

/// MariaDB/MySQL `UNSIGNED` integers compare as their signed family.
#[cfg(feature = "mysql")]
impl<T: DeclaredType> DeclaredType for diesel::sql_types::Unsigned<T> {
    const FAMILY: &'static str = T::FAMILY;
}

impl<T: DeclaredType + diesel::sql_types::SqlType> DeclaredType for diesel::sql_types::Nullable<T> {
    const FAMILY: &'static str = T::FAMILY;
    const NULLABLE: bool = true;
}

/// The family of a reflected column kind, as [`DeclaredType::FAMILY`] spells it.
fn live_family(kind: &ColumnKind) -> String {
    match kind {
        ColumnKind::Integer { bytes: 1 | 2, .. } => "smallint".into(),
        ColumnKind::Integer { bytes: 3 | 4, .. } => "integer".into(),
        ColumnKind::Integer { .. } => "bigint".into(),
        ColumnKind::Float { bytes: 4 } => "float".into(),
        ColumnKind::Float { .. } => "double".into(),
        ColumnKind::Numeric { .. } => "numeric".into(),
        ColumnKind::Text | ColumnKind::Varchar { .. } | ColumnKind::Char { .. } => "text".into(),
        ColumnKind::Enum { .. } => "text".into(),
        ColumnKind::Bool => "bool".into(),
        ColumnKind::Date => "date".into(),
        ColumnKind::Time => "time".into(),
        ColumnKind::Timestamp => "timestamp".into(),
        ColumnKind::TimestampTz => "timestamptz".into(),
        ColumnKind::Json => "json".into(),
        ColumnKind::Jsonb => "jsonb".into(),
        ColumnKind::Uuid => "uuid".into(),
        ColumnKind::Binary => "binary".into(),
        other => format!("{other:?}"),
    }
}

/// One table as the application declares it: name and columns with Diesel types.
///
/// # Examples
///
/// ```
/// use sqlassist::{check_drift, DeclaredTable, DriftMode, Registry, Schema, Settings};
///
/// diesel::table! {
///     users (id) {
///         id -> Integer,
///         name -> Text,
///         email -> Nullable<Text>,
///     }
/// }
///
/// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT)")?;
/// session.commit()?;
/// let schema = Schema::reflect(registry.engine("main")?)?;
///
/// let declared = DeclaredTable::new("users")
///     .column::<users::id>()
///     .column::<users::name>()
///     .column::<users::email>();
/// assert!(check_drift(&schema, &[declared], DriftMode::Fail)?.is_empty());
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredTable {
    name: String,
    columns: Vec<(&'static str, &'static str, bool)>,
}

impl DeclaredTable {
    /// A declaration of table `name` (unqualified: the schema's default schema), with no
    /// columns yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            columns: Vec::new(),
        }
    }

    /// Adds the `table!` column `C` (`users::name`): its name and SQL type.
    pub fn column<C>(mut self) -> Self
    where
        C: diesel::Column,
        C::SqlType: DeclaredType,
    {
        self.columns.push((
            C::NAME,
            <C::SqlType as DeclaredType>::FAMILY,
            <C::SqlType as DeclaredType>::NULLABLE,
        ));
        self
    }
}

/// What [`check_drift`] does when declarations and database differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriftMode {
    /// Return [`Error::SchemaDrift`] for the first difference.
    Fail,
    /// Log every difference as a `tracing` warning and return them.
    Warn,
}

/// One difference between a declared column and the live one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The live table, `schema.name`.
    pub table: String,
    /// The column.
    pub column: String,
    /// What the declaration says (`"integer not null"`).
    pub declared: String,
    /// What the database has (`"bigint null (bigint)"`), or `"missing"`.
    pub live: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table `{}`, column `{}`: declared {}, live {}",
            self.table, self.column, self.declared, self.live
        )
    }
}

fn nullability(nullable: bool) -> &'static str {
    if nullable {
        "null"
    } else {
        "not null"
    }
}

/// Compares `declared` tables with the reflected `schema` of the engine they are used on.
///
/// A column differs when the database lacks it, when its type family differs (a
/// `VARCHAR`, `CHAR` or enum is `text`; integer sizes count), or when its nullability
/// differs. Returns the differences (empty when everything matches).
///
/// # Errors
///
/// [`Error::UnknownTable`] for a declared table the database lacks; with
/// [`DriftMode::Fail`], [`Error::SchemaDrift`] for the first difference.
///
/// # Examples
///
/// ```
/// use sqlassist::{check_drift, DeclaredTable, DriftMode, Error, Registry, Schema, Settings};
///
/// diesel::table! {
///     users (id) {
///         id -> Integer,
///         name -> Text,
///     }
/// }
///
/// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")?; // nullable
/// session.commit()?;
/// let schema = Schema::reflect(registry.engine("main")?)?;
/// let declared = [DeclaredTable::new("users").column::<users::id>().column::<users::name>()];
///
/// let drifts = check_drift(&schema, &declared, DriftMode::Warn)?;
/// assert_eq!(
///     drifts[0].to_string(),
///     "table `main.users`, column `name`: declared text not null, live text null (TEXT)"
/// );
/// let err = check_drift(&schema, &declared, DriftMode::Fail).expect_err("name is nullable");
/// assert!(matches!(err, Error::SchemaDrift { .. }));
/// # Ok::<(), sqlassist::Error>(())
/// ```
pub fn check_drift(
    schema: &Schema,
    declared: &[DeclaredTable],
    mode: DriftMode,
) -> Result<Vec<Drift>> {
    let mut drifts = Vec::new();
    for table in declared {
        let live = schema.table(&table.name)?;
        for &(name, family, nullable) in &table.columns {
            let live_column = live.columns().iter().find(|c| c.name() == name);
            let declared = format!("{family} {}", nullability(nullable));
            let found = match live_column {
                None => Some("missing".to_owned()),
                Some(c) => {
                    let live_family = live_family(c.kind());
                    (live_family != family || c.is_nullable() != nullable).then(|| {
                        format!(
                            "{live_family} {} ({})",
                            nullability(c.is_nullable()),
                            c.sql_type()
                        )
                    })
                }
            };
            if let Some(live_text) = found {
                let drift = Drift {
                    table: live.name().to_string(),
                    column: name.to_owned(),
                    declared,
                    live: live_text,
                };
                match mode {
                    DriftMode::Fail => {
                        return Err(Error::SchemaDrift {
                            drift: Box::new(drift),
                        })
                    }
                    DriftMode::Warn => {
                        tracing::warn!(%drift, "declared table differs from the database");
                        drifts.push(drift);
                    }
                }
            }
        }
    }
    Ok(drifts)
}
