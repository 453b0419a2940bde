//! Diesel code for a reflected schema: `table!`, `joinable!` and
//! `allow_tables_to_appear_in_same_query!`, compilable as printed.
//!
//! Tables of the schema's default schema (PostgreSQL `public`, the MariaDB/MySQL database,
//! SQLite `main`) are printed at the top level; tables of other PostgreSQL schemas in a
//! `pub mod <schema>` each, declared as `schema.table`. PostgreSQL enums get a marker type
//! in a `sql_types` module, as `diesel print-schema` does. A column whose type Diesel has
//! no mapping for is left out, with a comment in the code and an [`UnmappedColumn`] in
//! [`PrintedSchema::unmapped`]; a table whose primary key needs such a column is left out
//! the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::backend::Backend;
use crate::reflect::{Column, ColumnKind, Schema, Table, TableKind, TableName};

/// What [`Schema::to_diesel`] prints besides the `table!`s.
///
/// # Examples
///
/// ```
/// let options = sqlassist::PrintOptions::new().declared_tables(true);
/// assert!(options.is_declared_tables());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrintOptions {
    declared: bool,
}

impl PrintOptions {
    /// The default: `table!`, `joinable!` and `allow_tables_to_appear_in_same_query!` only.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!sqlassist::PrintOptions::new().is_declared_tables());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Also print `pub fn declared_tables() -> Vec<sqlassist::DeclaredTable>` listing every
    /// printed column, for [`check_drift`](crate::check_drift) at start-up (default: no).
    /// The printed code then depends on the `sqlassist` crate.
    ///
    /// # Examples
    ///
    /// See [`PrintOptions`].
    pub fn declared_tables(mut self, yes: bool) -> Self {
        self.declared = yes;
        self
    }

    /// Whether `declared_tables()` is printed.
    ///
    /// # Examples
    ///
    /// See [`PrintOptions`].
    pub fn is_declared_tables(&self) -> bool {
        self.declared
    }
}

/// A column (or a whole table) left out of printed code: Diesel has no type for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnmappedColumn {
    /// The table, as `schema.name`.
    pub table: String,
    /// The column.
    pub column: String,
    /// The type as the catalog names it.
    pub type_name: String,
    /// Whether the whole table was left out (the column is part of its primary key).
    pub table_skipped: bool,
}

impl std::fmt::Display for UnmappedColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "table `{}`, column `{}`: type `{}` has no Diesel mapping; {} left out",
            self.table,
            self.column,
            self.type_name,
            if self.table_skipped {
                "the table (the column is in its primary key) is"
            } else {
                "the column is"
            }
        )
    }
}

/// Printed Diesel code and what it had to leave out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrintedSchema {
    /// The Rust code.
    pub code: String,
    /// Columns and tables left out, each named with its type.
    pub unmapped: Vec<UnmappedColumn>,
}

const KEYWORDS: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "Self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
    "star",
    "columns",
    "table",
    "dsl",
    "all_columns",
    "SqlType",
    "is_nullable",
];

/// A Rust identifier for a SQL name: lowercase ASCII letters, digits and `_`; a keyword
/// or a name that needs changes gets a trailing `_` (and `#[sql_name]` in the output).
fn ident(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if KEYWORDS.contains(&out.as_str()) || out == "_" {
        out.push('_');
    }
    out
}

fn camel(name: &str) -> String {
    let mut out = String::new();
    for part in ident(name).split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'T');
    }
    out
}

/// Diesel's SQL type for a kind on a backend, `None` when Diesel has none. PostgreSQL enum
/// types are named by the marker type printed in `sql_types`.
fn diesel_type(backend: Backend, kind: &ColumnKind) -> Option<String> {
    let pg = matches!(backend, Backend::Postgres);
    let mysql = matches!(backend, Backend::Mysql);
    let t = match kind {
        ColumnKind::Integer { bytes, unsigned } => {
            let base = match bytes {
                1 if mysql => "TinyInt",
                1 | 2 => "SmallInt",
                3 | 4 => "Integer",
                _ => "BigInt",
            };
            if *unsigned && mysql {
                format!("Unsigned<{base}>")
            } else {
                base.to_owned()
            }
        }
        ColumnKind::Float { bytes: 4 } => "Float".into(),
        ColumnKind::Float { .. } => "Double".into(),
        ColumnKind::Numeric { .. } => "Numeric".into(),
        ColumnKind::Text | ColumnKind::Varchar { .. } | ColumnKind::Char { .. } => "Text".into(),
        ColumnKind::Bool => "Bool".into(),
        ColumnKind::Date => "Date".into(),
        ColumnKind::Time => "Time".into(),
        ColumnKind::Timestamp => "Timestamp".into(),
        ColumnKind::TimestampTz if pg => "Timestamptz".into(),
        ColumnKind::Json => "Json".into(),
        ColumnKind::Jsonb if pg => "Jsonb".into(),
        ColumnKind::Uuid if pg => "Uuid".into(),
        ColumnKind::Binary => "Binary".into(),
        ColumnKind::Array(inner) if pg => {
            format!("Array<Nullable<{}>>", diesel_type(backend, inner)?)
        }
        ColumnKind::Enum {
            name: Some(name), ..
        } if pg => format!("sql_types::{}", camel(name)),
        // MariaDB/MySQL `ENUM(...)` columns read and write as text.
        ColumnKind::Enum { name: None, .. } if !pg => "Text".into(),
        _ => return None,
    };
    Some(t)
}

/// The PostgreSQL enum types a kind names (inside arrays too).
fn enums_of(kind: &ColumnKind, out: &mut BTreeSet<String>) {
    match kind {
        ColumnKind::Enum { name: Some(n), .. } => {
            out.insert(n.clone());
        }
        ColumnKind::Array(inner) => enums_of(inner, out),
        _ => {}
    }
}

/// Whether the drift check can compare the kind (arrays have no declared family).
fn is_drift_checked(kind: &ColumnKind) -> bool {
    !matches!(kind, ColumnKind::Array(_))
}

struct Planned<'a> {
    table: &'a Table,
    ident: String,
    /// (column, Rust name, Diesel type)
    columns: Vec<(&'a Column, String, String)>,
    key: Vec<String>,
    key_note: Option<&'static str>,
}

impl Schema {
    /// Diesel code for every table and view of this schema (tables chosen with
    /// [`Schema::reflect_tables`] print alone), compilable as printed: `table!` for each,
    /// `joinable!` for each single-column foreign key to another printed table's primary
    /// key of the same type, `allow_tables_to_appear_in_same_query!` per module. Types
    /// Diesel has no mapping for are left out with a comment and listed in
    /// [`PrintedSchema::unmapped`]; nothing panics.
    ///
    /// A view (or a table without a primary key) uses `id` when it has such a column, else
    /// its first column, as Diesel requires a key; the output says so in a comment.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, PrintOptions, Registry, Schema};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// let mut registry = Registry::new();
    /// registry.init_engine("main", engine.clone(), InitOptions::new())?;
    /// let session = registry.session("main")?;
    /// session.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, shape POINT)")?;
    /// session.commit()?;
    ///
    /// let printed = Schema::reflect(&engine)?.to_diesel(PrintOptions::new());
    /// assert!(printed.code.contains("users (id) {"));
    /// assert!(printed.code.contains("name -> Text,"));
    /// assert_eq!(printed.unmapped[0].column, "shape");
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn to_diesel(&self, options: PrintOptions) -> PrintedSchema {
        let backend = self.backend();
        let mut unmapped = Vec::new();
        let mut out = String::new();
        out.push_str(
            "// @generated by `sqlassist schema print` from the live database.\n\
             #![allow(missing_docs)]\n\n",
        );

        // Plan every table: columns with their types, the key, what is left out.
        let mut groups: BTreeMap<&str, Vec<Planned<'_>>> = BTreeMap::new();
        let mut skipped_notes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut enums = BTreeSet::new();
        for table in self.tables() {
            let schema = table.name().schema();
            let mut columns = Vec::new();
            let mut left_out = Vec::new();
            let mut taken: BTreeSet<String> = BTreeSet::new();
            let table_ident = ident(table.name().name());
            for column in table.columns() {
                match diesel_type(backend, column.kind()) {
                    Some(ty) => {
                        let mut name = ident(column.name());
                        while name == table_ident || taken.contains(&name) {
                            name.push('_');
                        }
                        taken.insert(name.clone());
                        columns.push((column, name, ty));
                    }
                    None => left_out.push(column),
                }
            }
            let in_key = |c: &Column| table.primary_key().iter().any(|k| k == c.name());
            let skip_table = left_out.iter().any(|c| in_key(c)) || columns.is_empty();
            for c in &left_out {
                unmapped.push(UnmappedColumn {
                    table: table.name().to_string(),
                    column: c.name().to_owned(),
                    type_name: c.sql_type().to_owned(),
                    table_skipped: skip_table,
                });
            }
            if skip_table {
                let why = if left_out.is_empty() {
                    "it has no columns".to_owned()
                } else {
                    format!("Diesel has no type for {}", describe(&left_out))
                };
                skipped_notes
                    .entry(schema)
                    .or_default()
                    .push(format!("// `{}` left out: {why}\n", table.name()));
                continue;
            }
            let rust_of = |sql: &str| {
                columns
                    .iter()
                    .find(|(c, _, _)| c.name() == sql)
                    .map(|(_, r, _)| r.clone())
            };
            let (key, key_note) = if table.primary_key().is_empty() {
                let note = match table.kind() {
                    TableKind::Table => "has no primary key",
                    _ => "is a view",
                };
                let key = rust_of("id").unwrap_or_else(|| columns[0].1.clone());
                (vec![key], Some(note))
            } else {
                (
                    table
                        .primary_key()
                        .iter()
                        .filter_map(|k| rust_of(k))
                        .collect(),
                    None,
                )
            };
            for (c, _, _) in &columns {
                enums_of(c.kind(), &mut enums);
            }
            groups.entry(schema).or_default().push(Planned {
                table,
                ident: table_ident,
                columns,
                key,
                key_note,
            });
        }

        // Diesel's `table!` takes 16 columns unless a wider feature is enabled.
        if let Some(widest) = groups
            .values()
            .flatten()
            .max_by_key(|p| p.columns.len())
            .filter(|p| p.columns.len() > 16)
        {
            let n = widest.columns.len();
            let feature = match n {
                17..=32 => "32-column-tables",
                33..=64 => "64-column-tables",
                _ => "128-column-tables",
            };
            let _ = writeln!(
                out,
                "// Diesel needs its `{feature}` feature: `{}` has {n} columns.\n",
                widest.table.name()
            );
        }

        if !enums.is_empty() {
            out.push_str("pub mod sql_types {\n");
            for e in &enums {
                let _ = write!(
                    out,
                    "    /// The PostgreSQL enum `{e}` (reads and writes as its label).\n    \
                     #[derive(diesel::query_builder::QueryId, diesel::sql_types::SqlType)]\n    \
                     #[diesel(postgres_type(name = \"{e}\"))]\n    \
                     pub struct {};\n",
                    camel(e)
                );
                if options.declared {
                    let _ = writeln!(
                        out,
                        "    impl sqlassist::DeclaredType for {} {{\n        const FAMILY: &'static str = \"text\";\n    }}",
                        camel(e)
                    );
                }
            }
            out.push_str("}\n\n");
        }

        let default_schema = self.default_schema();
        let mut group_names: Vec<&str> = groups.keys().copied().collect();
        for s in skipped_notes.keys() {
            if !group_names.contains(s) {
                group_names.push(s);
            }
        }
        // The default schema first, then the others in name order.
        group_names.sort_by_key(|s| (*s != default_schema, s.to_string()));
        let mut declared = String::new();
        for schema in group_names {
            let top = schema == default_schema;
            let indent = if top { "" } else { "    " };
            let module = ident(schema);
            if !top {
                let _ = writeln!(out, "pub mod {module} {{");
            }
            for note in skipped_notes.get(schema).into_iter().flatten() {
                let _ = write!(out, "{indent}{note}");
            }
            let planned = groups.get(schema).map(Vec::as_slice).unwrap_or_default();
            let printed: BTreeMap<&TableName, &Planned<'_>> =
                planned.iter().map(|p| (p.table.name(), p)).collect();
            for p in planned {
                print_table(&mut out, indent, top, schema, p);
                if options.declared {
                    let path = if top {
                        p.ident.clone()
                    } else {
                        format!("{module}::{}", p.ident)
                    };
                    let name = if top {
                        p.table.name().name().to_owned()
                    } else {
                        p.table.name().to_string()
                    };
                    let _ = write!(declared, "        sqlassist::DeclaredTable::new({name:?})");
                    for (c, rust, _) in &p.columns {
                        if is_drift_checked(c.kind()) {
                            let _ = write!(declared, "\n            .column::<{path}::{rust}>()");
                        }
                    }
                    declared.push_str(",\n");
                }
            }
            // joinable!: a single-column foreign key to a printed table's one-column key,
            // of the same type, and not to the table itself.
            let mut pairs = BTreeSet::new();
            for p in planned {
                for fk in p.table.foreign_keys() {
                    let target = fk.referenced_table();
                    let parent = printed.get(target);
                    let ok = fk.columns().len() == 1
                        && target != p.table.name()
                        && parent.is_some_and(|parent| {
                            parent.key_note.is_none()
                                && parent.table.primary_key() == fk.referenced_columns()
                        });
                    let (Some(parent), true) = (parent, ok) else {
                        let _ = writeln!(
                            out,
                            "{indent}// {} ({}) references {} ({}): no joinable! (Diesel joins a one-column key of another printed table in this module)",
                            p.table.name(),
                            fk.columns().join(", "),
                            target,
                            fk.referenced_columns().join(", ")
                        );
                        continue;
                    };
                    let child_col = p
                        .columns
                        .iter()
                        .find(|(c, _, _)| c.name() == fk.columns()[0]);
                    let parent_col = parent
                        .columns
                        .iter()
                        .find(|(c, _, _)| c.name() == fk.referenced_columns()[0]);
                    match (child_col, parent_col) {
                        (Some((_, rust, cty)), Some((_, _, pty)))
                            if cty == pty && pairs.insert((&p.ident, &parent.ident)) =>
                        {
                            let _ = writeln!(
                                out,
                                "{indent}diesel::joinable!({} -> {} ({rust}));",
                                p.ident, parent.ident
                            );
                        }
                        _ => {
                            let _ = writeln!(
                                out,
                                "{indent}// {} ({}) references {}: no joinable! (another join between them is printed, or the column types differ)",
                                p.table.name(),
                                fk.columns()[0],
                                target
                            );
                        }
                    }
                }
            }
            if planned.len() > 1 {
                let names: Vec<&str> = planned.iter().map(|p| p.ident.as_str()).collect();
                let _ = writeln!(
                    out,
                    "{indent}diesel::allow_tables_to_appear_in_same_query!({});",
                    names.join(", ")
                );
            }
            if !top {
                out.push_str("}\n");
            }
            out.push('\n');
        }
        if options.declared {
            out.push_str(
                "/// Every printed table and column, for `sqlassist::check_drift` (array columns are not compared).\n\
                 pub fn declared_tables() -> Vec<sqlassist::DeclaredTable> {\n    vec![\n",
            );
            out.push_str(&declared);
            out.push_str("    ]\n}\n");
        }
        PrintedSchema {
            code: out,
            unmapped,
        }
    }
}

fn describe(columns: &[&Column]) -> String {
    columns
        .iter()
        .map(|c| format!("`{}` ({})", c.name(), c.sql_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_table(out: &mut String, indent: &str, top: bool, schema: &str, p: &Planned<'_>) {
    let table = p.table;
    let _ = writeln!(out, "{indent}diesel::table! {{");
    let uses_enum = p.columns.iter().any(|(c, _, _)| {
        let mut found = BTreeSet::new();
        enums_of(c.kind(), &mut found);
        !found.is_empty()
    });
    if uses_enum {
        let _ = writeln!(out, "{indent}    use diesel::sql_types::*;");
        let path = if top { "super" } else { "super::super" };
        let _ = writeln!(out, "{indent}    use {path}::sql_types;");
        let _ = writeln!(out);
    }
    if let Some(note) = p.key_note {
        let _ = writeln!(
            out,
            "{indent}    // `{}` {note}: `{}` stands in as the key Diesel requires",
            table.name(),
            p.key.join(", ")
        );
    }
    let sql_name = table.name().name();
    if ident(sql_name) != sql_name {
        let _ = writeln!(out, "{indent}    #[sql_name = {sql_name:?}]");
    }
    let qualified = if top {
        p.ident.clone()
    } else {
        format!("{}.{}", ident(schema), p.ident)
    };
    let _ = writeln!(out, "{indent}    {qualified} ({}) {{", p.key.join(", "));
    for column in table.columns() {
        match p.columns.iter().find(|(c, _, _)| c.name() == column.name()) {
            Some((c, rust, ty)) => {
                if rust != c.name() {
                    let _ = writeln!(out, "{indent}        #[sql_name = {:?}]", c.name());
                }
                let ty = if c.is_nullable() {
                    format!("Nullable<{ty}>")
                } else {
                    ty.clone()
                };
                let _ = writeln!(out, "{indent}        {rust} -> {ty},");
            }
            None => {
                let _ = writeln!(
                    out,
                    "{indent}        // `{}` ({}) left out: Diesel has no type for it",
                    column.name(),
                    column.sql_type()
                );
            }
        }
    }
    let _ = writeln!(out, "{indent}    }}\n{indent}}}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_avoid_keywords_and_invalid_characters() {
        assert_eq!(ident("type"), "type_");
        assert_eq!(ident("Order Lines"), "order_lines");
        assert_eq!(ident("2fa"), "_2fa");
        assert_eq!(ident(""), "__"); // `_` alone is no identifier
        assert_eq!(camel("order_status"), "OrderStatus");
        assert_eq!(camel("9x"), "T9x");
    }

    #[test]
    fn types_follow_the_backend() {
        let tiny = ColumnKind::Integer {
            bytes: 1,
            unsigned: true,
        };
        assert_eq!(
            diesel_type(Backend::Mysql, &tiny).as_deref(),
            Some("Unsigned<TinyInt>")
        );
        assert_eq!(
            diesel_type(Backend::Sqlite, &tiny).as_deref(),
            Some("SmallInt")
        );
        assert_eq!(diesel_type(Backend::Sqlite, &ColumnKind::Uuid), None);
        assert_eq!(diesel_type(Backend::Mysql, &ColumnKind::TimestampTz), None);
        let arr = ColumnKind::Array(Box::new(ColumnKind::Unknown("point".into())));
        assert_eq!(diesel_type(Backend::Postgres, &arr), None);
    }
}
