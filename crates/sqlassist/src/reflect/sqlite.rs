//! SQLite's catalog: `sqlite_master` joined with the pragma table-valued functions, one
//! query per kind for every table at once.

use std::collections::BTreeMap;

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, QueryResult, RunQueryDsl, SqliteConnection};

use super::{column, relations_by_name, ColumnKind, Table, TableKind, TableName};

const MAIN: &str = "main";

/// The relation every catalog query starts from: the user's tables and views (`m.name`,
/// `m.type`), without SQLite's own `sqlite_*` tables. A macro, so that `concat!` builds
/// each query as one static string.
macro_rules! with_user_relations {
    ($query:literal) => {
        concat!(
            "WITH m AS (SELECT name, type FROM sqlite_master \
             WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\') ",
            $query
        )
    };
}

#[derive(diesel::QueryableByName)]
struct Relation {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    kind: String,
}

#[derive(diesel::QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    sql_type: String,
    #[diesel(sql_type = BigInt)]
    not_null: i64,
    #[diesel(sql_type = Nullable<Text>)]
    default_value: Option<String>,
    #[diesel(sql_type = BigInt)]
    pk: i64,
}

#[derive(diesel::QueryableByName)]
struct ForeignKeyRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    ref_table: String,
    #[diesel(sql_type = Text)]
    from_column: String,
    #[diesel(sql_type = Nullable<Text>)]
    to_column: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct UniqueRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    index_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

/// A foreign key's referenced table, its columns and the referenced columns (`None` when
/// the declaration named none), gathered from its rows.
type ForeignKeyParts = (String, Vec<String>, Vec<Option<String>>);

pub(super) fn reflect(conn: &mut SqliteConnection) -> QueryResult<(String, Vec<Table>)> {
    // One read transaction: the four queries see one state of the file.
    conn.transaction(|conn| {
        let relations: Vec<Relation> =
            diesel::sql_query(with_user_relations!("SELECT name, type AS kind FROM m"))
                .load(conn)?;
        let mut tables = relations_by_name(
            MAIN,
            relations.into_iter().map(|r| {
                let kind = if r.kind == "view" {
                    TableKind::View
                } else {
                    TableKind::Table
                };
                (r.name, kind)
            }),
        );

        let columns: Vec<ColumnRow> = diesel::sql_query(with_user_relations!(
            "SELECT m.name AS table_name, p.name AS name, p.type AS sql_type, \
                    p.\"notnull\" AS not_null, p.dflt_value AS default_value, p.pk AS pk \
             FROM m JOIN pragma_table_info(m.name) AS p \
             ORDER BY m.name, p.cid"
        ))
        .load(conn)?;
        let mut by_table: BTreeMap<String, Vec<ColumnRow>> = BTreeMap::new();
        for row in columns {
            by_table
                .entry(row.table_name.clone())
                .or_default()
                .push(row);
        }
        for (name, rows) in by_table {
            let Some(t) = tables.get_mut(&name) else {
                continue;
            };
            let mut key: Vec<(i64, String)> = rows
                .iter()
                .filter(|r| r.pk > 0)
                .map(|r| (r.pk, r.name.clone()))
                .collect();
            key.sort();
            // A rowid alias (an `INTEGER` column that is the whole primary key) is never
            // NULL; other primary key columns accept NULL unless declared NOT NULL (an
            // SQLite quirk kept for compatibility).
            let single_key = key.len() == 1;
            for row in rows {
                let rowid_alias =
                    single_key && row.pk > 0 && row.sql_type.eq_ignore_ascii_case("INTEGER");
                let kind = kind(&row.sql_type);
                t.push_column(column(
                    row.name,
                    row.sql_type,
                    kind,
                    row.not_null == 0 && !rowid_alias,
                    row.default_value,
                ));
            }
            t.set_primary_key(key.into_iter().map(|(_, c)| c).collect());
        }

        let fks: Vec<ForeignKeyRow> = diesel::sql_query(with_user_relations!(
            "SELECT m.name AS table_name, f.id AS id, f.\"table\" AS ref_table, \
                    f.\"from\" AS from_column, f.\"to\" AS to_column \
             FROM m JOIN pragma_foreign_key_list(m.name) AS f \
             WHERE m.type = 'table' \
             ORDER BY m.name, f.id, f.seq"
        ))
        .load(conn)?;
        let mut grouped: BTreeMap<(String, i64), ForeignKeyParts> = BTreeMap::new();
        for row in fks {
            let entry = grouped
                .entry((row.table_name, row.id))
                .or_insert_with(|| (row.ref_table, Vec::new(), Vec::new()));
            entry.1.push(row.from_column);
            entry.2.push(row.to_column);
        }
        // Declaration order: SQLite numbers foreign keys from the last declared.
        for ((name, _), (ref_table, from, to)) in grouped.into_iter().rev() {
            // `REFERENCES t` without columns references t's primary key.
            let to = if to.iter().all(Option::is_some) {
                to.into_iter().flatten().collect()
            } else {
                tables
                    .get(&ref_table)
                    .map(|r| r.primary_key.clone())
                    .unwrap_or_default()
            };
            if let Some(t) = tables.get_mut(&name) {
                t.push_foreign_key(None, from, TableName::new(MAIN, ref_table), to);
            }
        }

        let uniques: Vec<UniqueRow> = diesel::sql_query(with_user_relations!(
            "SELECT m.name AS table_name, il.name AS index_name, ii.name AS column_name \
             FROM m JOIN pragma_index_list(m.name) AS il \
                  JOIN pragma_index_info(il.name) AS ii \
             WHERE m.type = 'table' AND il.\"unique\" = 1 AND il.origin = 'u' \
             ORDER BY m.name, il.name, ii.seqno"
        ))
        .load(conn)?;
        let mut grouped: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for row in uniques {
            grouped
                .entry((row.table_name, row.index_name))
                .or_default()
                .push(row.column_name);
        }
        for ((name, index), columns) in grouped {
            if let Some(t) = tables.get_mut(&name) {
                t.push_unique(Some(index), columns);
            }
        }
        Ok((MAIN.to_owned(), tables.into_values().collect()))
    })
}

/// The kind of a declared SQLite type, by the names applications write (SQLite itself
/// keeps any name; its affinity rules decide storage, not meaning).
fn kind(declared: &str) -> ColumnKind {
    let upper = declared.to_ascii_uppercase();
    let base = upper.split('(').next().unwrap_or("").trim();
    let (first, second) = super::type_params(declared);
    match base {
        "TINYINT" => ColumnKind::Integer {
            bytes: 1,
            unsigned: false,
        },
        "SMALLINT" | "INT2" => ColumnKind::Integer {
            bytes: 2,
            unsigned: false,
        },
        "INTEGER" | "INT" | "INT4" | "MEDIUMINT" => ColumnKind::Integer {
            bytes: 4,
            unsigned: false,
        },
        "BIGINT" | "INT8" => ColumnKind::Integer {
            bytes: 8,
            unsigned: false,
        },
        "REAL" | "FLOAT" | "FLOAT4" => ColumnKind::Float { bytes: 4 },
        "DOUBLE" | "DOUBLE PRECISION" | "FLOAT8" => ColumnKind::Float { bytes: 8 },
        "NUMERIC" | "DECIMAL" => ColumnKind::Numeric {
            precision: first,
            scale: second,
        },
        "TEXT" | "CLOB" => ColumnKind::Text,
        "VARCHAR" | "CHARACTER VARYING" | "NVARCHAR" | "VARYING CHARACTER" => {
            ColumnKind::Varchar { max_length: first }
        }
        "CHAR" | "CHARACTER" | "NCHAR" | "NATIVE CHARACTER" => ColumnKind::Char { length: first },
        "BOOLEAN" | "BOOL" => ColumnKind::Bool,
        "DATE" => ColumnKind::Date,
        "TIME" => ColumnKind::Time,
        "DATETIME" | "TIMESTAMP" => ColumnKind::Timestamp,
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => ColumnKind::TimestampTz,
        "JSON" => ColumnKind::Json,
        "JSONB" => ColumnKind::Jsonb,
        "UUID" => ColumnKind::Uuid,
        "BLOB" | "BINARY" | "VARBINARY" | "BYTEA" => ColumnKind::Binary,
        _ => ColumnKind::Unknown(declared.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_map_to_kinds_by_name_not_by_affinity() {
        assert_eq!(
            kind("varchar(40)"),
            ColumnKind::Varchar {
                max_length: Some(40)
            }
        );
        assert_eq!(
            kind("DECIMAL(12,3)"),
            ColumnKind::Numeric {
                precision: Some(12),
                scale: Some(3)
            }
        );
        assert_eq!(kind("datetime"), ColumnKind::Timestamp);
        // No declared type: SQLite's BLOB affinity, but no meaning the library can use.
        assert_eq!(kind(""), ColumnKind::Unknown(String::new()));
        assert_eq!(kind("POINT"), ColumnKind::Unknown("POINT".into()));
    }
}
