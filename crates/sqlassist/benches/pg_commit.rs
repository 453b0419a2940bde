//! Commit throughput against real PostgreSQL: hand-written Diesel against sqlassist.
//!
//! ```text
//! eval "$(scripts/test --setup-only)"
//! cargo bench -p sqlassist --features postgres --bench pg_commit
//! ```
//!
//! Reads `SQLASSIST_TEST_PG_URL` and `SQLASSIST_TEST_PG_URL_2` (two databases), and
//! `SQLASSIST_BENCH_N` (transactions per scenario, default 2000). Prints one JSON line per
//! scenario: `{"scenario", "n", "seconds", "tx_per_s", "p50_ms", "p99_ms"}`, and checks
//! every scenario's row counts afterwards.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer};
use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(conn: &mut PgConnection, table: &str) -> Res<i64> {
    Ok(
        diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .get_result::<Count>(conn)?
            .n,
    )
}

fn insert(conn: &mut PgConnection, table: &str, v: i32) -> QueryResult<usize> {
    diesel::sql_query(format!("INSERT INTO {table} (v) VALUES ($1)"))
        .bind::<Integer, _>(v)
        .execute(conn)
}

fn report(scenario: &str, mut lat: Vec<Duration>, total: Duration) {
    lat.sort();
    let n = lat.len();
    let pct = |p: f64| lat[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1e3;
    println!(
        "{{\"scenario\":\"{scenario}\",\"n\":{n},\"seconds\":{:.3},\"tx_per_s\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
}

fn warmup(n: usize) -> usize {
    (n / 10).max(10)
}

fn timed(n: usize, mut f: impl FnMut(usize) -> Res<()>) -> Res<(Vec<Duration>, Duration)> {
    for i in 0..warmup(n) {
        f(n + i)?; // warm-up
    }
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        f(i)?;
        lat.push(t.elapsed());
    }
    Ok((lat, start.elapsed()))
}

fn reset(conn: &mut PgConnection, table: &str) -> Res<()> {
    conn.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v INTEGER NOT NULL)"
    ))?;
    Ok(())
}

/// One measured scenario: its name, the tables it writes (database a, database b), and
/// whether its rows must persist.
struct Scenario {
    name: &'static str,
    tables: (&'static str, Option<&'static str>),
    persists: bool,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "raw_1pc_one_db",
        tables: ("bench_raw1", None),
        persists: true,
    },
    Scenario {
        name: "raw_2pc_two_db",
        tables: ("bench_raw2", Some("bench_raw2")),
        persists: true,
    },
    Scenario {
        name: "sqlassist_1pc_one_db",
        tables: ("bench_sa1", None),
        persists: true,
    },
    Scenario {
        name: "sqlassist_2pc_two_db",
        tables: ("bench_sa2", Some("bench_sa2")),
        persists: true,
    },
    Scenario {
        name: "sqlassist_abort_two_db",
        tables: ("bench_sa3", Some("bench_sa3")),
        persists: false,
    },
];

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return Ok(()); // `cargo test --benches` / `--list` probes: nothing to run
    }
    let url_a = std::env::var("SQLASSIST_TEST_PG_URL")
        .map_err(|_| "set SQLASSIST_TEST_PG_URL (eval \"$(scripts/test --setup-only)\")")?;
    let url_b =
        std::env::var("SQLASSIST_TEST_PG_URL_2").map_err(|_| "set SQLASSIST_TEST_PG_URL_2")?;
    let n: usize = std::env::var("SQLASSIST_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    // Scenarios run interleaved, in rounds, so that disk and CPU noise spread evenly.
    let rounds: usize = std::env::var("SQLASSIST_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let per_round = (n / rounds).max(1);

    let mut a = PgConnection::establish(&url_a)?;
    let mut b = PgConnection::establish(&url_b)?;
    for s in &SCENARIOS {
        reset(&mut a, s.tables.0)?;
        if let Some(t) = s.tables.1 {
            reset(&mut b, t)?;
        }
    }

    let mut registry = Registry::new();
    let engine = |url: &str| -> Res<Engine> {
        Ok(Engine::new(
            EngineOptions::builder(DatabaseUrl::parse(url)?)
                .pool_size(2)
                .build()?,
        )?)
    };
    registry.init_engine("a", engine(&url_a)?, InitOptions::new().managed(true))?;
    registry.init_engine("b", engine(&url_b)?, InitOptions::new().managed(true))?;
    let sa = registry.session("a")?;
    let sb = registry.session("b")?;
    let pid = std::process::id();

    let mut results: Vec<(Vec<Duration>, Duration, usize)> = SCENARIOS
        .iter()
        .map(|_| (Vec::new(), Duration::ZERO, 0))
        .collect();
    for round in 0..rounds {
        for (k, s) in SCENARIOS.iter().enumerate() {
            let (lat, total) = timed(per_round, |i| {
                let v = (round * per_round + i) as i32;
                match s.name {
                    // BEGIN / INSERT / COMMIT through Diesel.
                    "raw_1pc_one_db" => {
                        a.transaction(|c| insert(c, "bench_raw1", v))?;
                    }
                    // BEGIN / INSERT / PREPARE TRANSACTION on each, COMMIT PREPARED on each.
                    "raw_2pc_two_db" => {
                        // gids are global to the server: one per database.
                        let gid = format!("bench_raw_{pid}_{round}_{i}");
                        for (db, c) in [("a", &mut a), ("b", &mut b)] {
                            c.batch_execute("BEGIN")?;
                            insert(c, "bench_raw2", v)?;
                            c.batch_execute(&format!("PREPARE TRANSACTION '{gid}_{db}'"))?;
                        }
                        for (db, c) in [("a", &mut a), ("b", &mut b)] {
                            c.batch_execute(&format!("COMMIT PREPARED '{gid}_{db}'"))?;
                        }
                    }
                    // One managed engine: the coordinator commits it in one phase.
                    "sqlassist_1pc_one_db" => {
                        insert(&mut *sa.conn::<PgConnection>()?, "bench_sa1", v)?;
                        transaction::commit()?;
                    }
                    // Two managed engines, one transaction::commit().
                    "sqlassist_2pc_two_db" => {
                        insert(&mut *sa.conn::<PgConnection>()?, "bench_sa2", v)?;
                        insert(&mut *sb.conn::<PgConnection>()?, "bench_sa2", v)?;
                        transaction::commit()?;
                    }
                    // The same work, aborted.
                    _ => {
                        insert(&mut *sa.conn::<PgConnection>()?, "bench_sa3", v)?;
                        insert(&mut *sb.conn::<PgConnection>()?, "bench_sa3", v)?;
                        transaction::abort()?;
                    }
                }
                Ok(())
            })?;
            let r = &mut results[k];
            r.0.extend(lat);
            r.1 += total;
            r.2 += per_round + warmup(per_round);
        }
    }
    sqlassist::close_sessions()?;

    for (s, (lat, total, written)) in SCENARIOS.iter().zip(results) {
        report(s.name, lat, total);
        let expected = if s.persists { written as i64 } else { 0 };
        let got_a = count(&mut a, s.tables.0)?;
        if got_a != expected {
            return Err(format!(
                "{}: database a has {got_a} rows, expected {expected}",
                s.name
            )
            .into());
        }
        if let Some(t) = s.tables.1 {
            let got_b = count(&mut b, t)?;
            if got_b != expected {
                return Err(format!(
                    "{}: database b has {got_b} rows, expected {expected}",
                    s.name
                )
                .into());
            }
        }
    }
    for s in &SCENARIOS {
        a.batch_execute(&format!("DROP TABLE IF EXISTS {}", s.tables.0))?;
        if let Some(t) = s.tables.1 {
            b.batch_execute(&format!("DROP TABLE IF EXISTS {t}"))?;
        }
    }
    Ok(())
}
