//! MariaDB's and MySQL's catalog: `information_schema` of the connection's current
//! database, one query per kind for every table at once.

use std::collections::HashSet;

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{MysqlConnection, QueryResult, RunQueryDsl};

use super::{column, relations_by_name, ColumnKind, Table, TableKind, TableName};

#[derive(diesel::QueryableByName)]
struct Current {
    #[diesel(sql_type = Nullable<Text>)]
    db: Option<String>,
    #[diesel(sql_type = Text)]
    version: String,
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
    column_type: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    nullable: String,
    #[diesel(sql_type = Nullable<Text>)]
    default_value: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    max_length: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    num_precision: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    num_scale: Option<i64>,
}

#[derive(diesel::QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Nullable<Text>)]
    ref_schema: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    ref_table: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    ref_column: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct CheckRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    clause: String,
}

pub(super) fn reflect(conn: &mut MysqlConnection) -> QueryResult<(String, Vec<Table>)> {
    let current: Current =
        diesel::sql_query("SELECT DATABASE() AS db, VERSION() AS version").get_result(conn)?;
    let Some(db) = current.db else {
        // No database selected: nothing to reflect.
        return Ok((String::new(), Vec::new()));
    };

    let relations: Vec<Relation> = diesel::sql_query(
        "SELECT TABLE_NAME AS name, TABLE_TYPE AS kind FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE()",
    )
    .load(conn)?;
    let mut tables = relations_by_name(
        &db,
        relations.into_iter().map(|r| {
            let kind = if r.kind == "VIEW" {
                TableKind::View
            } else {
                TableKind::Table
            };
            (r.name, kind)
        }),
    );

    // MariaDB's JSON is LONGTEXT with a `json_valid(col)` check named after the column.
    let mut json: HashSet<(String, String)> = HashSet::new();
    if current.version.contains("MariaDB") {
        let checks: Vec<CheckRow> = diesel::sql_query(
            "SELECT TABLE_NAME AS table_name, CHECK_CLAUSE AS clause \
             FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = DATABASE() AND CHECK_CLAUSE LIKE 'json\\_valid(%'",
        )
        .load(conn)?;
        for check in checks {
            let inner = check
                .clause
                .trim_start_matches("json_valid(")
                .trim_end_matches(')')
                .trim_matches('`');
            json.insert((check.table_name, inner.to_owned()));
        }
    }

    let columns: Vec<ColumnRow> = diesel::sql_query(
        "SELECT TABLE_NAME AS table_name, COLUMN_NAME AS name, COLUMN_TYPE AS column_type, \
                DATA_TYPE AS data_type, IS_NULLABLE AS nullable, COLUMN_DEFAULT AS default_value, \
                CAST(CHARACTER_MAXIMUM_LENGTH AS SIGNED) AS max_length, \
                CAST(NUMERIC_PRECISION AS SIGNED) AS num_precision, \
                CAST(NUMERIC_SCALE AS SIGNED) AS num_scale \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
         ORDER BY TABLE_NAME, ORDINAL_POSITION",
    )
    .load(conn)?;
    for row in columns {
        let Some(t) = tables.get_mut(&row.table_name) else {
            continue;
        };
        let is_json = json.contains(&(row.table_name.clone(), row.name.clone()));
        let kind = if is_json {
            ColumnKind::Json
        } else {
            kind(&row)
        };
        // MariaDB writes a missing default as the text `NULL`.
        let default = row.default_value.filter(|d| d != "NULL");
        t.push_column(column(
            row.name,
            row.column_type,
            kind,
            row.nullable == "YES",
            default,
        ));
    }

    let keys: Vec<KeyRow> = diesel::sql_query(
        "SELECT k.TABLE_NAME AS table_name, k.CONSTRAINT_NAME AS name, \
                c.CONSTRAINT_TYPE AS kind, k.COLUMN_NAME AS column_name, \
                k.REFERENCED_TABLE_SCHEMA AS ref_schema, k.REFERENCED_TABLE_NAME AS ref_table, \
                k.REFERENCED_COLUMN_NAME AS ref_column \
         FROM information_schema.KEY_COLUMN_USAGE k \
         JOIN information_schema.TABLE_CONSTRAINTS c \
           ON c.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND c.TABLE_SCHEMA = k.TABLE_SCHEMA \
          AND c.TABLE_NAME = k.TABLE_NAME AND c.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
         WHERE k.TABLE_SCHEMA = DATABASE() \
           AND c.CONSTRAINT_TYPE IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY') \
         ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
    )
    .load(conn)?;
    // Rows of one constraint are consecutive, in key order.
    let mut grouped: Vec<(KeyRow, Vec<String>, Vec<String>)> = Vec::new();
    for row in keys {
        match grouped.last_mut() {
            Some((first, cols, refs))
                if first.table_name == row.table_name && first.name == row.name =>
            {
                cols.push(row.column_name);
                refs.extend(row.ref_column);
            }
            _ => {
                let cols = vec![row.column_name.clone()];
                let refs = row.ref_column.clone().into_iter().collect();
                grouped.push((row, cols, refs));
            }
        }
    }
    for (row, cols, refs) in grouped {
        let Some(t) = tables.get_mut(&row.table_name) else {
            continue;
        };
        match (row.kind.as_str(), row.ref_schema, row.ref_table) {
            ("PRIMARY KEY", _, _) => t.set_primary_key(cols),
            ("UNIQUE", _, _) => t.push_unique(Some(row.name), cols),
            ("FOREIGN KEY", Some(schema), Some(name)) => {
                t.push_foreign_key(Some(row.name), cols, TableName::new(schema, name), refs)
            }
            _ => {}
        }
    }
    Ok((db, tables.into_values().collect()))
}

fn kind(row: &ColumnRow) -> ColumnKind {
    let unsigned = row.column_type.contains("unsigned");
    let integer = |bytes| ColumnKind::Integer { bytes, unsigned };
    let length = |n: Option<i64>| n.and_then(|n| u32::try_from(n).ok());
    match row.data_type.as_str() {
        "tinyint" if row.column_type.starts_with("tinyint(1)") => ColumnKind::Bool,
        "tinyint" => integer(1),
        "smallint" => integer(2),
        "mediumint" => integer(3),
        "int" | "integer" => integer(4),
        "bigint" => integer(8),
        "float" => ColumnKind::Float { bytes: 4 },
        "double" | "real" => ColumnKind::Float { bytes: 8 },
        "decimal" | "numeric" => ColumnKind::Numeric {
            precision: length(row.num_precision),
            scale: length(row.num_scale),
        },
        "varchar" => ColumnKind::Varchar {
            max_length: length(row.max_length),
        },
        "char" => ColumnKind::Char {
            length: length(row.max_length),
        },
        "tinytext" | "text" | "mediumtext" | "longtext" => ColumnKind::Text,
        "json" => ColumnKind::Json,
        "date" => ColumnKind::Date,
        "time" => ColumnKind::Time,
        "datetime" | "timestamp" => ColumnKind::Timestamp,
        "uuid" => ColumnKind::Uuid,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            ColumnKind::Binary
        }
        "enum" => ColumnKind::Enum {
            name: None,
            values: enum_values(&row.column_type),
        },
        _ => ColumnKind::Unknown(row.column_type.clone()),
    }
}

/// The labels of `enum('a','b''c')`, unquoted.
fn enum_values(column_type: &str) -> Vec<String> {
    let inner = column_type
        .strip_prefix("enum(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or("");
    let mut values = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    value.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(next) = chars.next() {
                        value.push(next);
                    }
                }
                c => value.push(c),
            }
        }
        values.push(value);
    }
    values
}

#[cfg(test)]
mod tests {
    use super::enum_values;

    #[test]
    fn enum_labels_are_unquoted_with_doubled_quotes_and_commas_kept() {
        assert_eq!(enum_values("enum('a','it''s','x,y')"), ["a", "it's", "x,y"]);
        assert!(enum_values("enum()").is_empty());
    }
}
