//! Reflection time of a 200-table schema on real PostgreSQL.
//!
//! ```text
//! eval "$(scripts/test --setup-only)"
//! cargo bench -p sqlassist --features postgres --bench reflect
//! ```
//!
//! Creates a schema of its own (`reflect_bench_<pid>`) in the database of
//! `SQLASSIST_TEST_PG_URL` with `SQLASSIST_BENCH_TABLES` tables (default 200), each with
//! ten columns of varied types, a primary key, a unique constraint and a foreign key to the
//! table before it; then reflects the whole database `SQLASSIST_BENCH_ROUNDS` times
//! (default 15) on a warm pool, and drops the schema. Prints one JSON line:
//! `{"tables", "columns", "rounds", "min_ms", "p50_ms", "max_ms"}` (`tables` and
//! `columns` count everything the reflection returned, other schemas' tables included).
#![allow(missing_docs)]

use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use sqlassist::{DatabaseUrl, Engine, EngineOptions, Schema};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Res<()> {
    let url = std::env::var("SQLASSIST_TEST_PG_URL")
        .map_err(|_| "set SQLASSIST_TEST_PG_URL (see docs/testing.md)")?;
    let tables = env_usize("SQLASSIST_BENCH_TABLES", 200);
    let rounds = env_usize("SQLASSIST_BENCH_ROUNDS", 15).max(1);
    let schema = format!("reflect_bench_{}", std::process::id());

    let mut ddl = format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; \
         CREATE TYPE {schema}.state AS ENUM ('new', 'open', 'closed');"
    );
    for i in 0..tables {
        let parent = if i == 0 {
            String::new()
        } else {
            format!(", parent bigint REFERENCES {schema}.t{} (id)", i - 1)
        };
        ddl.push_str(&format!(
            "CREATE TABLE {schema}.t{i} (id bigserial PRIMARY KEY, name varchar(80) NOT NULL, \
             amount numeric(12, 2), created timestamptz NOT NULL DEFAULT now(), seen timestamp, \
             doc jsonb, tags text[], state {schema}.state, flag boolean NOT NULL DEFAULT false, \
             UNIQUE (name){parent});"
        ));
    }
    let mut admin = PgConnection::establish(&url)?;
    admin.batch_execute(&ddl)?;

    let result = (|| -> Res<()> {
        let engine = Engine::new(
            EngineOptions::builder(DatabaseUrl::parse(&url)?)
                .pool_size(1)
                .build()?,
        )?;
        let warm = Schema::reflect(&engine)?; // opens the pooled connection
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let start = Instant::now();
            let reflected = Schema::reflect(&engine)?;
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            std::hint::black_box(reflected);
        }
        times.sort_by(f64::total_cmp);
        let ours = warm
            .tables()
            .filter(|t| t.name().schema() == schema)
            .count();
        if ours != tables {
            return Err(format!("reflected {ours} of the {tables} bench tables").into());
        }
        println!(
            "{{\"tables\": {}, \"columns\": {}, \"rounds\": {rounds}, \"min_ms\": {:.1}, \"p50_ms\": {:.1}, \"max_ms\": {:.1}}}",
            warm.tables().count(),
            warm.tables().map(|t| t.columns().len()).sum::<usize>(),
            times[0],
            times[times.len() / 2],
            times[times.len() - 1],
        );
        Ok(())
    })();
    admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))?;
    result
}
