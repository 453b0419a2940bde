//! PostgreSQL's catalog: `pg_class`, `pg_attribute`, `pg_type`, `pg_enum` and
//! `pg_constraint`, one query per kind for every schema at once, in one read-only
//! repeatable-read transaction.

use std::collections::{BTreeMap, HashMap};

use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
use diesel::{PgConnection, QueryResult, RunQueryDsl};

use super::{column, table, ColumnKind, Table, TableKind, TableName};

/// The schemas a user's tables never live in.
const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

#[derive(diesel::QueryableByName)]
struct Current {
    #[diesel(sql_type = Text)]
    schema: String,
}

#[derive(diesel::QueryableByName)]
struct Relation {
    #[diesel(sql_type = BigInt)]
    oid: i64,
    #[diesel(sql_type = Text)]
    schema: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    kind: String,
}

#[derive(diesel::QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = BigInt)]
    rel: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    sql_type: String,
    #[diesel(sql_type = BigInt)]
    type_oid: i64,
    #[diesel(sql_type = Text)]
    type_name: String,
    #[diesel(sql_type = Text)]
    type_kind: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    elem_oid: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    elem_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    elem_kind: Option<String>,
    #[diesel(sql_type = Integer)]
    typmod: i32,
    #[diesel(sql_type = Bool)]
    not_null: bool,
    #[diesel(sql_type = Nullable<Text>)]
    default_value: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct EnumRow {
    #[diesel(sql_type = BigInt)]
    type_oid: i64,
    #[diesel(sql_type = Text)]
    label: String,
}

#[derive(diesel::QueryableByName)]
struct ConstraintRow {
    #[diesel(sql_type = BigInt)]
    rel: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Array<Text>)]
    columns: Vec<String>,
    #[diesel(sql_type = Nullable<Text>)]
    ref_schema: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    ref_table: Option<String>,
    #[diesel(sql_type = Array<Text>)]
    ref_columns: Vec<String>,
}

pub(super) fn reflect(conn: &mut PgConnection) -> QueryResult<(String, Vec<Table>)> {
    conn.build_transaction()
        .read_only()
        .repeatable_read()
        .run(|conn| {
            let current: Current =
                diesel::sql_query("SELECT current_schema()::text AS schema").get_result(conn)?;

            let relations: Vec<Relation> = diesel::sql_query(format!(
                "SELECT c.oid::int8 AS oid, n.nspname::text AS schema, c.relname::text AS name, \
                        c.relkind::text AS kind \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND {USER_SCHEMAS}"
            ))
            .load(conn)?;
            let mut tables: HashMap<i64, Table> = relations
                .into_iter()
                .map(|r| {
                    let kind = match r.kind.as_str() {
                        "v" => TableKind::View,
                        "m" => TableKind::MaterializedView,
                        _ => TableKind::Table,
                    };
                    (r.oid, table(TableName::new(r.schema, r.name), kind))
                })
                .collect();

            let mut enums: HashMap<i64, Vec<String>> = HashMap::new();
            let labels: Vec<EnumRow> = diesel::sql_query(
                "SELECT enumtypid::int8 AS type_oid, enumlabel::text AS label \
                 FROM pg_enum ORDER BY enumtypid, enumsortorder",
            )
            .load(conn)?;
            for row in labels {
                enums.entry(row.type_oid).or_default().push(row.label);
            }

            let columns: Vec<ColumnRow> = diesel::sql_query(format!(
                "SELECT c.oid::int8 AS rel, a.attname::text AS name, \
                        format_type(a.atttypid, a.atttypmod) AS sql_type, \
                        t.oid::int8 AS type_oid, t.typname::text AS type_name, \
                        t.typtype::text AS type_kind, \
                        e.oid::int8 AS elem_oid, e.typname::text AS elem_name, \
                        e.typtype::text AS elem_kind, \
                        a.atttypmod AS typmod, a.attnotnull AS not_null, \
                        pg_get_expr(d.adbin, d.adrelid) AS default_value \
                 FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_type t ON t.oid = a.atttypid \
                 LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' \
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE a.attnum > 0 AND NOT a.attisdropped \
                   AND c.relkind IN ('r', 'p', 'f', 'v', 'm') AND {USER_SCHEMAS} \
                 ORDER BY c.oid, a.attnum"
            ))
            .load(conn)?;
            for row in columns {
                let Some(t) = tables.get_mut(&row.rel) else {
                    continue;
                };
                let kind = match (row.elem_oid, row.elem_name, row.elem_kind) {
                    (Some(oid), Some(name), Some(kind)) => ColumnKind::Array(Box::new(
                        kind_of(oid, &name, &kind, row.typmod, &enums, &row.sql_type),
                    )),
                    _ => kind_of(
                        row.type_oid,
                        &row.type_name,
                        &row.type_kind,
                        row.typmod,
                        &enums,
                        &row.sql_type,
                    ),
                };
                t.push_column(column(
                    row.name,
                    row.sql_type,
                    kind,
                    !row.not_null,
                    row.default_value,
                ));
            }

            let constraints: Vec<ConstraintRow> = diesel::sql_query(format!(
                "SELECT con.conrelid::int8 AS rel, con.conname::text AS name, \
                        con.contype::text AS kind, \
                        ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(num, ord) \
                              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num \
                              ORDER BY k.ord) AS columns, \
                        fn.nspname::text AS ref_schema, fc.relname::text AS ref_table, \
                        ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(num, ord) \
                              JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num \
                              ORDER BY k.ord) AS ref_columns \
                 FROM pg_constraint con \
                 JOIN pg_class c ON c.oid = con.conrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_class fc ON fc.oid = con.confrelid \
                 LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace \
                 WHERE con.contype IN ('p', 'u', 'f') AND {USER_SCHEMAS} \
                 ORDER BY con.conrelid, con.conname"
            ))
            .load(conn)?;
            for row in constraints {
                let Some(t) = tables.get_mut(&row.rel) else {
                    continue;
                };
                match (row.kind.as_str(), row.ref_schema, row.ref_table) {
                    ("p", _, _) => t.set_primary_key(row.columns),
                    ("u", _, _) => t.push_unique(Some(row.name), row.columns),
                    ("f", Some(schema), Some(name)) => t.push_foreign_key(
                        Some(row.name),
                        row.columns,
                        TableName::new(schema, name),
                        row.ref_columns,
                    ),
                    _ => {}
                }
            }

            let sorted: BTreeMap<TableName, Table> = tables
                .into_values()
                .map(|t| (t.name.clone(), t))
                .collect();
            Ok((current.schema, sorted.into_values().collect()))
        })
}

/// The kind of a PostgreSQL type, by its `pg_type` name (`int4`, `timestamptz`) and type
/// category; `sql_type` (`format_type`'s spelling) names an unknown one.
fn kind_of(
    oid: i64,
    name: &str,
    typtype: &str,
    typmod: i32,
    enums: &HashMap<i64, Vec<String>>,
    sql_type: &str,
) -> ColumnKind {
    // `atttypmod` is the declared length + 4 for character types, and
    // ((precision << 16) | scale) + 4 for numeric; -1 when none was declared.
    let length = (typmod >= 4).then(|| (typmod - 4) as u32);
    let integer = |bytes| ColumnKind::Integer {
        bytes,
        unsigned: false,
    };
    if typtype == "e" {
        return ColumnKind::Enum {
            name: Some(name.to_owned()),
            values: enums.get(&oid).cloned().unwrap_or_default(),
        };
    }
    match name {
        "int2" => integer(2),
        "int4" => integer(4),
        "int8" => integer(8),
        "float4" => ColumnKind::Float { bytes: 4 },
        "float8" => ColumnKind::Float { bytes: 8 },
        "numeric" => ColumnKind::Numeric {
            precision: length.map(|m| (m >> 16) & 0xffff),
            scale: length.map(|m| m & 0xffff),
        },
        "text" => ColumnKind::Text,
        "varchar" => ColumnKind::Varchar { max_length: length },
        "bpchar" => ColumnKind::Char { length },
        "bool" => ColumnKind::Bool,
        "date" => ColumnKind::Date,
        "time" => ColumnKind::Time,
        "timestamp" => ColumnKind::Timestamp,
        "timestamptz" => ColumnKind::TimestampTz,
        "json" => ColumnKind::Json,
        "jsonb" => ColumnKind::Jsonb,
        "uuid" => ColumnKind::Uuid,
        "bytea" => ColumnKind::Binary,
        _ => {
            // An array's `format_type` spelling ends in `[]`; the element's is the name
            // without it.
            ColumnKind::Unknown(sql_type.trim_end_matches("[]").to_owned())
        }
    }
}
