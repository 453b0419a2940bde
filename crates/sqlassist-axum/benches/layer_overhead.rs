//! Requests per second of a write endpoint (two-phase commit over the two PostgreSQL test
//! databases) through `TmLayer` versus the same work written by hand with
//! `spawn_blocking`, r2d2 and raw `PREPARE TRANSACTION` / `COMMIT PREPARED`, driven by
//! `wrk` over loopback with 8 connections, the two endpoints interleaved in one run.
//!
//! ```sh
//! apt-get install wrk
//! eval "$(scripts/test --setup-only)"
//! cargo bench -p sqlassist-axum --features postgres --bench layer_overhead
//! ```
//!
//! `BENCH_ROUNDS` (default 5) rounds of `BENCH_SECONDS` (default 5) per endpoint; the
//! order alternates each round. Prints each round and the median of the per-round ratios
//! layer / hand-written.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::{Connection, PgConnection, RunQueryDsl};
use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry};
use sqlassist_axum::{DbError, Routes, Tm, TmLayer};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

type PgPool = Pool<ConnectionManager<PgConnection>>;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: eval \"$(scripts/test --setup-only)\""))
}

/// The hand-written unit of work: both branches prepared, then both committed.
fn by_hand(p1: &PgPool, p2: &PgPool, table: &str, id: u64) -> diesel::QueryResult<()> {
    let mut c1 = p1.get().expect("pool 1");
    let mut c2 = p2.get().expect("pool 2");
    let gid = format!("bench_hand_{}_{id}", std::process::id());
    for (c, n) in [(&mut c1, 1), (&mut c2, 2)] {
        diesel::sql_query("BEGIN").execute(&mut **c)?;
        diesel::sql_query(format!("INSERT INTO {table} VALUES ({id}, 1)")).execute(&mut **c)?;
        diesel::sql_query(format!("PREPARE TRANSACTION '{gid}_{n}'")).execute(&mut **c)?;
    }
    for (c, n) in [(&mut c1, 1), (&mut c2, 2)] {
        diesel::sql_query(format!("COMMIT PREPARED '{gid}_{n}'")).execute(&mut **c)?;
    }
    Ok(())
}

fn wrk(url: &str, seconds: u64) -> f64 {
    let out = Command::new("wrk")
        .args(["-t2", "-c8", &format!("-d{seconds}s"), "-s"])
        .arg(std::env::temp_dir().join("sqlassist-bench-post.lua"))
        .arg(url)
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") {
        panic!("non-2xx responses:\n{text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"))
}

fn main() {
    let url1 = env("SQLASSIST_TEST_PG_URL");
    let url2 = env("SQLASSIST_TEST_PG_URL_2");
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let table = format!("axum_bench_{}", std::process::id());
    for url in [&url1, &url2] {
        let mut c = PgConnection::establish(url).expect("connect");
        diesel::sql_query(format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, v INT)"
        ))
        .execute(&mut c)
        .expect("create");
    }
    std::fs::write(
        std::env::temp_dir().join("sqlassist-bench-post.lua"),
        "wrk.method = \"POST\"\n",
    )
    .expect("lua script");

    let pool_size = 8;
    let mut registry = Registry::new();
    for (name, url) in [("writer", &url1), ("second", &url2)] {
        let options = EngineOptions::builder(DatabaseUrl::parse(url).expect("url"))
            .pool_size(pool_size)
            .build()
            .expect("options");
        registry
            .init_engine(
                name,
                Engine::new(options).expect("engine"),
                InitOptions::new().managed(true),
            )
            .expect("init");
    }
    let layer = TmLayer::new(
        Arc::new(registry),
        Routes::new("writer").read_your_writes(false),
    );
    // No `SELECT 1` at each checkout (r2d2's default): sqlassist's pools skip it for a
    // connection used within the last 500 ms, so the hand-written side skips it too.
    let hand_pool = |url: &str| {
        Pool::builder()
            .max_size(pool_size)
            .test_on_check_out(false)
            .build(ConnectionManager::new(url))
            .expect("pool")
    };
    let hand_pools: Arc<(PgPool, PgPool)> = Arc::new((hand_pool(&url1), hand_pool(&url2)));

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (t1, t2) = (table.clone(), table.clone());
    let app = axum::Router::new()
        .route(
            "/layer",
            post(move |tm: Tm| {
                let table = t1.clone();
                async move {
                    tm.run(move |att| -> Result<StatusCode, DbError> {
                        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                        att.writer()?
                            .execute(&format!("INSERT INTO {table} VALUES ({id}, 1)"))?;
                        att.session("second")?
                            .execute(&format!("INSERT INTO {table} VALUES ({id}, 1)"))?;
                        Ok(StatusCode::CREATED)
                    })
                    .await
                }
            }),
        )
        .layer(layer)
        .route(
            "/hand",
            post(move || {
                let (pools, table) = (hand_pools.clone(), t2.clone());
                async move {
                    let done = tokio::task::spawn_blocking(move || {
                        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                        by_hand(&pools.0, &pools.1, &table, id)
                    })
                    .await;
                    match done {
                        Ok(Ok(())) => StatusCode::CREATED.into_response(),
                        _ => Response::from(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
                    }
                }
            }),
        );
    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        addr
    });

    // Warm both up.
    wrk(&format!("http://{addr}/layer"), 1);
    wrk(&format!("http://{addr}/hand"), 1);
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let order: [&str; 2] = if round % 2 == 0 {
            ["layer", "hand"]
        } else {
            ["hand", "layer"]
        };
        let mut rps = [0.0; 2];
        for which in order {
            let r = wrk(&format!("http://{addr}/{which}"), seconds);
            rps[usize::from(which == "hand")] = r;
        }
        let ratio = rps[0] / rps[1];
        println!(
            "round {round}: layer {:.0} req/s, hand-written {:.0} req/s, ratio {ratio:.3}",
            rps[0], rps[1]
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median ratio layer / hand-written over {rounds} rounds: {:.3}",
        ratios[rounds / 2]
    );
    std::thread::sleep(Duration::from_millis(100));
    for url in [&url1, &url2] {
        let mut c = PgConnection::establish(url).expect("connect");
        diesel::sql_query(format!("DROP TABLE {table}"))
            .execute(&mut c)
            .expect("drop");
    }
}
