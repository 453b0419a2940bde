//! A select of one row by primary key through a reflected [`DynamicTable`] against the same
//! select through a Diesel `table!`, on the same session, in the same run.
//!
//! ```text
//! source /work/briefs/testenv.sh   # or: eval "$(scripts/test --setup-only)"
//! cargo bench -p sqlassist --features postgres --bench dynamic_select
//! cargo bench -p sqlassist --features postgres,mysql,sqlite --bench dynamic_select  # + MariaDB, SQLite
//! ```
//!
//! For each backend whose URL is set (`SQLASSIST_TEST_PG_URL`, `SQLASSIST_TEST_MYSQL_URL`;
//! SQLite always, on a file under the system temp dir) the bench creates a table
//! `dynamic_select_bench` (a fixed name: `table!` needs one) of 1000 rows with six columns
//! (`bigint` key, text, integer, double, boolean, nullable text), reflects the schema once
//! (as [`sqlassist::SchemaCache`] would) and checks that both ways read the same row. Then,
//! in `SQLASSIST_BENCH_ROUNDS` rounds (default 30), each way selects
//! `SQLASSIST_BENCH_N` / rounds rows (default 30000 in all) by key on one unmanaged session,
//! the two ways alternating which goes first. Prints one JSON line per backend: total
//! selects per second of each way, and the median, minimum and maximum of the per-round
//! ratios of time per select (dynamic over `table!`: 1.10 means 10 % slower).
//! `SQLASSIST_BENCH_ONLY=postgres,mysql,sqlite` chooses backends;
//! `SQLASSIST_BENCH_WAY=dynamic` (or `table`) runs only that way's rounds, for counting
//! instructions with callgrind (the ratios are then meaningless);
//! `SQLASSIST_BENCH_LIMIT=1` adds `.limit(1)` to the dynamic query, as `first()` does to the
//! `table!` one.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use diesel::prelude::*;
use sqlassist::{
    Cmp, DatabaseUrl, DynamicTable, Engine, EngineOptions, InitOptions, Registry, Schema, Session,
    Value,
};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const TABLE: &str = "dynamic_select_bench";
const ROWS: i64 = 1000;

diesel::table! {
    dynamic_select_bench (id) {
        id -> BigInt,
        name -> Text,
        qty -> Integer,
        price -> Double,
        flag -> Bool,
        note -> Nullable<Text>,
    }
}

type Typed = (i64, String, i32, f64, bool, Option<String>);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn key(i: usize) -> i64 {
    // Spread over the table, not the same row every time.
    (i as i64 * 7919) % ROWS + 1
}

fn to_values(row: Typed) -> Vec<Value> {
    vec![
        Value::Int(row.0),
        Value::Text(row.1),
        Value::Int(row.2.into()),
        Value::Float(row.3),
        Value::Bool(row.4),
        row.5.map_or(Value::Null, Value::Text),
    ]
}

fn dynamic(session: &Session, table: &DynamicTable<'_>, id: i64) -> Res<Vec<Value>> {
    let mut query = table.select().filter("id", Cmp::Eq, id)?;
    if std::env::var_os("SQLASSIST_BENCH_LIMIT").is_some() {
        query = query.limit(1);
    }
    let rows = query.load(session)?;
    let row = rows.into_iter().next().ok_or("no row")?;
    Ok(row.into_values())
}

/// One backend's comparison; `typed` runs the `table!` query on the session's connection.
fn compare(
    backend: &str,
    url: &str,
    create: &str,
    n: usize,
    rounds: usize,
    typed: impl Fn(&Session, i64) -> Res<Typed>,
) -> Res<()> {
    let engine = Engine::new(
        EngineOptions::builder(DatabaseUrl::parse(url)?)
            .pool_size(1)
            .build()?,
    )?;
    let mut registry = Registry::new();
    registry.init_engine(backend, engine.clone(), InitOptions::new())?;
    let session = registry.session(backend)?;
    for statement in create.split(';').filter(|s| !s.trim().is_empty()) {
        session.execute(statement)?;
    }
    session.commit()?;
    let schema = Schema::reflect(&engine)?;
    let table = DynamicTable::new(&schema, TABLE)?;

    for i in 0..50 {
        let (a, b) = (dynamic(&session, &table, key(i))?, typed(&session, key(i))?);
        if a != to_values(b) {
            return Err(format!("{backend}: the two ways read different rows: {a:?}").into());
        }
    }
    session.commit()?;

    let way = std::env::var("SQLASSIST_BENCH_WAY").unwrap_or_default();
    let per_round = (n / rounds).max(1);
    let (mut dyn_total, mut typed_total) = (Duration::ZERO, Duration::ZERO);
    let mut ratios = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let run_dynamic = || -> Res<Duration> {
            if way == "table" {
                return Ok(Duration::from_nanos(1));
            }
            let start = Instant::now();
            for i in 0..per_round {
                std::hint::black_box(dynamic(&session, &table, key(i))?);
            }
            Ok(start.elapsed())
        };
        let run_typed = || -> Res<Duration> {
            if way == "dynamic" {
                return Ok(Duration::from_nanos(1));
            }
            let start = Instant::now();
            for i in 0..per_round {
                std::hint::black_box(typed(&session, key(i))?);
            }
            Ok(start.elapsed())
        };
        let (d, t) = if round % 2 == 0 {
            let d = run_dynamic()?;
            (d, run_typed()?)
        } else {
            let t = run_typed()?;
            (run_dynamic()?, t)
        };
        session.commit()?;
        dyn_total += d;
        typed_total += t;
        ratios.push(d.as_secs_f64() / t.as_secs_f64());
    }
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(0.0, f64::max);
    let total = (per_round * rounds) as f64;
    println!(
        "{{\"backend\":\"{backend}\",\"selects\":{total},\"rounds\":{rounds},\"dynamic_per_s\":{:.0},\"table_per_s\":{:.0},\"dynamic_us\":{:.1},\"table_us\":{:.1},\"ratio_median\":{:.3},\"ratio_min\":{min:.3},\"ratio_max\":{max:.3}}}",
        total / dyn_total.as_secs_f64(),
        total / typed_total.as_secs_f64(),
        dyn_total.as_secs_f64() * 1e6 / total,
        typed_total.as_secs_f64() * 1e6 / total,
        median(ratios),
    );
    session.execute(&format!("DROP TABLE {TABLE}"))?;
    session.commit()?;
    Ok(())
}

fn create_sql(id: &str, text: &str, double: &str, rows: &str) -> String {
    format!(
        "DROP TABLE IF EXISTS {TABLE}; \
         CREATE TABLE {TABLE} (id {id} PRIMARY KEY, name {text} NOT NULL, qty INTEGER NOT NULL, \
         price {double} NOT NULL, flag BOOLEAN NOT NULL, note {text}); {rows}"
    )
}

fn insert_rows() -> String {
    let values: Vec<String> = (1..=ROWS)
        .map(|i| {
            let note = if i % 3 == 0 {
                "NULL".to_owned()
            } else {
                format!("'note {i}'")
            };
            format!(
                "({i}, 'name {i}', {}, {}.25, {}, {note})",
                i % 97,
                i,
                i % 2 == 0
            )
        })
        .collect();
    format!("INSERT INTO {TABLE} VALUES {}", values.join(", "))
}

fn wanted(backend: &str) -> bool {
    std::env::var("SQLASSIST_BENCH_ONLY")
        .map(|only| only.split(',').any(|b| b.trim() == backend))
        .unwrap_or(true)
}

fn main() -> Res<()> {
    let rounds = env_usize("SQLASSIST_BENCH_ROUNDS", 30).max(1);
    let n = env_usize("SQLASSIST_BENCH_N", 30_000);

    #[cfg(feature = "postgres")]
    if wanted("postgres") {
        let url = std::env::var("SQLASSIST_TEST_PG_URL")
            .map_err(|_| "set SQLASSIST_TEST_PG_URL (see docs/testing.md)")?;
        let create = create_sql("BIGINT", "TEXT", "DOUBLE PRECISION", &insert_rows());
        compare("postgres", &url, &create, n, rounds, |session, id| {
            Ok(session.run(|c: &mut PgConnection| {
                dynamic_select_bench::table.find(id).first::<Typed>(c)
            })?)
        })?;
    }
    #[cfg(feature = "mysql")]
    if wanted("mysql") {
        if let Ok(url) = std::env::var("SQLASSIST_TEST_MYSQL_URL") {
            let create = create_sql("BIGINT", "TEXT", "DOUBLE", &insert_rows());
            compare("mysql", &url, &create, n, rounds, |session, id| {
                Ok(session.run(|c: &mut MysqlConnection| {
                    dynamic_select_bench::table.find(id).first::<Typed>(c)
                })?)
            })?;
        }
    }
    #[cfg(feature = "sqlite")]
    if wanted("sqlite") {
        let path = std::env::temp_dir().join(format!("dynamic_select_{}.db", std::process::id()));
        let url = format!("sqlite:///{}", path.display());
        let create = create_sql("INTEGER", "TEXT", "DOUBLE", &insert_rows());
        let outcome = compare("sqlite", &url, &create, n, rounds, |session, id| {
            Ok(session.run(|c: &mut SqliteConnection| {
                dynamic_select_bench::table.find(id).first::<Typed>(c)
            })?)
        });
        let _ = std::fs::remove_file(&path);
        outcome?;
    }
    Ok(())
}
