//! Commit throughput against real PostgreSQL: hand-written Diesel against sqlassist.
//!
//! ```text
//! eval "$(scripts/test --setup-only)"
//! cargo bench -p sqlassist --features postgres --bench pg_commit
//! cargo bench -p sqlassist --features postgres,mysql --bench pg_commit   # + MariaDB
//! ```
//!
//! The `decision_log` scenario runs first: two-phase commit over the two databases with
//! the file decision log against without, at 1 and 8 threads, with the log's fdatasyncs
//! per transaction (`SQLASSIST_BENCH_ONLY=decision_log` runs it alone). The `db_log`
//! scenario compares no log, the file log and the database log kept in the first
//! database, which takes part and carries the decision in its own commit, with the
//! server's WAL flushes per transaction (`pg_stat_wal`).
//!
//! With the `mysql` feature and `SQLASSIST_TEST_MYSQL_URL` set, two more scenarios run:
//! `raw_2pc_pg_mariadb` (hand-written PREPARE TRANSACTION + XA) and
//! `sqlassist_2pc_pg_mariadb`.
//!
//! Reads `SQLASSIST_TEST_PG_URL` and `SQLASSIST_TEST_PG_URL_2` (two databases), and
//! `SQLASSIST_BENCH_N` (transactions per scenario, default 3000), `SQLASSIST_BENCH_ROUNDS`
//! (interleaved rounds, default 5) and `SQLASSIST_BENCH_ONLY` (comma-separated scenario
//! names). Scenarios run interleaved, round by round (in reverse order every other round).
//! Prints one JSON line per scenario: `{"scenario", "n", "seconds", "tx_per_s", "p50_ms",
//! "p99_ms", "client_cpu_ms_per_tx"}`, then one per compared pair with the median, minimum
//! and maximum of the per-round throughput ratios, and the median of the per-round ratios
//! of median latencies (as a speed ratio): `{"ratio", "of", "to", "median", "min", "max",
//! "p50_median", "rounds"}`, and checks every scenario's row counts afterwards. Its tables are
//! named `bench_<scenario>_<process id>`, so runs on shared servers do not collide.
//!
//! The sqlassist scenarios use the default engine options: a session returns its connection
//! to the pool when the transaction ends and checks one out at its next statement.
//! `sqlassist_1pc_reuse` keeps it (`keep_session = true`); `sqlassist_1pc_per_request`
//! also opens and closes its session around every transaction, as a web request does.
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

/// This process's user + system CPU time, from `/proc/self/stat` (Linux; zero elsewhere).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 of the file (utime, stime) are at 11 and 12 after the command name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn report(scenario: &str, mut lat: Vec<Duration>, total: Duration, cpu: Duration) {
    lat.sort();
    let n = lat.len();
    let pct = |p: f64| lat[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1e3;
    println!(
        "{{\"scenario\":\"{scenario}\",\"n\":{n},\"seconds\":{:.3},\"tx_per_s\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"client_cpu_ms_per_tx\":{:.4}}}",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        cpu.as_secs_f64() * 1e3 / n as f64
    );
}

fn warmup(n: usize) -> usize {
    (n / 10).max(10)
}

fn timed(
    n: usize,
    mut f: impl FnMut(usize) -> Res<()>,
) -> Res<(Vec<Duration>, Duration, Duration)> {
    for i in 0..warmup(n) {
        f(n + i)?; // warm-up
    }
    let mut lat = Vec::with_capacity(n);
    let cpu = cpu_time();
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        f(i)?;
        lat.push(t.elapsed());
    }
    Ok((lat, start.elapsed(), cpu_time().saturating_sub(cpu)))
}

fn reset(conn: &mut PgConnection, table: &str) -> Res<()> {
    conn.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v INTEGER NOT NULL)"
    ))?;
    Ok(())
}

/// One measured scenario: its name, the tables it writes (database a, database b), and
/// whether its rows must persist. With `maria`, database b is MariaDB
/// (`SQLASSIST_TEST_MYSQL_URL`) instead of the second PostgreSQL database.
struct Scenario {
    name: &'static str,
    tables: (&'static str, Option<&'static str>),
    persists: bool,
    maria: bool,
}

/// PostgreSQL + MariaDB scenarios: built with the `mysql` feature and run when
/// `SQLASSIST_TEST_MYSQL_URL` is set.
#[cfg(feature = "mysql")]
const MARIA_SCENARIOS: [Scenario; 2] = [
    Scenario {
        name: "raw_2pc_pg_mariadb",
        tables: ("bench_rawm", Some("bench_rawm")),
        persists: true,
        maria: true,
    },
    Scenario {
        name: "sqlassist_2pc_pg_mariadb",
        tables: ("bench_sam", Some("bench_sam")),
        persists: true,
        maria: true,
    },
];

fn scenarios() -> Vec<&'static Scenario> {
    #[allow(unused_mut)]
    let mut all: Vec<&'static Scenario> = SCENARIOS.iter().collect();
    #[cfg(feature = "mysql")]
    if std::env::var_os("SQLASSIST_TEST_MYSQL_URL").is_some() {
        all.extend(MARIA_SCENARIOS.iter());
    }
    // SQLASSIST_BENCH_ONLY=raw_1pc_one_db,sqlassist_1pc_one_db runs a subset.
    if let Ok(only) = std::env::var("SQLASSIST_BENCH_ONLY") {
        all.retain(|s| only.split(',').any(|name| name.trim() == s.name));
    }
    all
}

#[cfg(feature = "mysql")]
fn maria_insert(conn: &mut MysqlConnection, table: &str, v: i32) -> QueryResult<usize> {
    diesel::sql_query(format!("INSERT INTO {table} (v) VALUES (?)"))
        .bind::<Integer, _>(v)
        .execute(conn)
}

#[cfg(feature = "mysql")]
fn maria_count(conn: &mut MysqlConnection, table: &str) -> Res<i64> {
    Ok(
        diesel::sql_query(format!("SELECT CAST(COUNT(*) AS SIGNED) AS n FROM {table}"))
            .get_result::<Count>(conn)?
            .n,
    )
}

const SCENARIOS: [Scenario; 10] = [
    Scenario {
        name: "raw_1pc_one_db",
        tables: ("bench_raw1", None),
        persists: true,
        maria: false,
    },
    Scenario {
        name: "raw_2pc_two_db",
        tables: ("bench_raw2", Some("bench_raw2")),
        persists: true,
        maria: false,
    },
    Scenario {
        name: "raw_2pc_two_db_parallel",
        tables: ("bench_raw2p", Some("bench_raw2p")),
        persists: true,
        maria: false,
    },
    Scenario {
        name: "sqlassist_2pc_two_db_sequential",
        tables: ("bench_sa2s", Some("bench_sa2s")),
        persists: true,
        maria: false,
    },
    Scenario {
        name: "raw_2pc_two_db_per_db",
        tables: ("bench_raw2s", Some("bench_raw2s")),
        persists: true,
        maria: false,
    },
    Scenario {
        name: "sqlassist_1pc_one_db",
        tables: ("bench_sa1", None),
        persists: true,
        maria: false,
    },
    Scenario {
        name: "sqlassist_2pc_two_db",
        tables: ("bench_sa2", Some("bench_sa2")),
        persists: true,
        maria: false,
    },
    Scenario {
        name: "sqlassist_abort_two_db",
        tables: ("bench_sa3", Some("bench_sa3")),
        persists: false,
        maria: false,
    },
    Scenario {
        name: "sqlassist_1pc_reuse",
        tables: ("bench_sru", None),
        persists: true,
        maria: false,
    },
    Scenario {
        name: "sqlassist_1pc_per_request",
        tables: ("bench_spr", None),
        persists: true,
        maria: false,
    },
];

/// Pairs whose per-round throughput ratio (first / second) is reported.
const RATIOS: [(&str, &str); 8] = [
    ("sqlassist_1pc_one_db", "raw_1pc_one_db"),
    ("sqlassist_2pc_two_db", "raw_2pc_two_db"),
    ("sqlassist_2pc_two_db", "raw_2pc_two_db_parallel"),
    ("raw_2pc_two_db_parallel", "raw_2pc_two_db"),
    ("sqlassist_2pc_two_db", "sqlassist_2pc_two_db_sequential"),
    ("sqlassist_2pc_two_db_sequential", "raw_2pc_two_db"),
    ("sqlassist_2pc_pg_mariadb", "raw_2pc_pg_mariadb"),
    ("sqlassist_1pc_per_request", "sqlassist_1pc_reuse"),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Two-phase commit over the two PostgreSQL databases with the file decision log against
/// without, at 1 and 8 threads: per thread count and round, every registry runs the same
/// number of transactions (in an order reversed every other round); prints each one's
/// throughput, the per-round ratios (file log / no log) and the log's fdatasyncs per
/// transaction ([`transaction::LogStats::syncs`]). Two file logs run: `file_log` with the
/// default options, and `file_log_nowait` with `group_wait(0)` (a group leader writes at
/// once, without waiting for voting commits). Scenario name `decision_log`, selected like
/// the others with `SQLASSIST_BENCH_ONLY`; `SQLASSIST_BENCH_THREADS=8` runs one thread
/// count, `SQLASSIST_BENCH_GROUP_WAIT_US` sets the `file_log` group wait.
fn decision_log_scenarios(url_a: &str, url_b: &str, n: usize, rounds: usize) -> Res<()> {
    use std::sync::Arc;
    use transaction::{FileDecisionLog, FileLogOptions};
    let table = "bench_dlog";
    for url in [url_a, url_b] {
        reset(&mut PgConnection::establish(url)?, table)?;
    }
    let dir = |name: &str| {
        std::env::temp_dir().join(format!("sqlassist-bench-{name}-{}", std::process::id()))
    };
    let mut options = FileLogOptions::new();
    if let Ok(us) = std::env::var("SQLASSIST_BENCH_GROUP_WAIT_US") {
        options = options.group_wait(Duration::from_micros(us.parse()?));
    }
    let _ = std::fs::remove_dir_all(dir("dlog"));
    let _ = std::fs::remove_dir_all(dir("dlog-nowait"));
    let log = Arc::new(options.open(dir("dlog"))?);
    let nowait = Arc::new(
        FileLogOptions::new()
            .group_wait(Duration::ZERO)
            .open(dir("dlog-nowait"))?,
    );
    let registry = |log: Option<&Arc<FileDecisionLog>>| -> Res<Registry> {
        let mut r = Registry::new();
        for (name, url) in [("a", url_a), ("b", url_b)] {
            let options = EngineOptions::builder(DatabaseUrl::parse(url)?)
                .pool_size(8)
                .build()?;
            r.init_engine(
                name,
                Engine::new(options)?,
                InitOptions::new().managed(true),
            )?;
        }
        if let Some(log) = log {
            r.use_decision_log(log.clone());
        }
        Ok(r)
    };
    let variants = [
        ("no_log", registry(None)?, None),
        ("file_log", registry(Some(&log))?, Some(&log)),
        ("file_log_nowait", registry(Some(&nowait))?, Some(&nowait)),
    ];
    let threads_list: Vec<usize> = match std::env::var("SQLASSIST_BENCH_THREADS") {
        Ok(t) => t
            .split(',')
            .map(|t| t.trim().parse())
            .collect::<Result<_, _>>()?,
        Err(_) => vec![1, 8],
    };
    let mut written = 0usize;
    for threads in threads_list {
        let per_thread = (n / rounds / threads).max(1);
        let total = per_thread * threads;
        let mut tps = vec![Vec::new(); variants.len()];
        let mut syncs = vec![Vec::new(); variants.len()];
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..variants.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for v in order {
                let (_, r, log) = &variants[v];
                let before = log.map_or(0, |l| l.stats().syncs);
                let start = Instant::now();
                std::thread::scope(|s| -> Res<()> {
                    let handles: Vec<_> = (0..threads)
                        .map(|_| {
                            s.spawn(move || -> Result<(), String> {
                                let run = || -> Res<()> {
                                    r.transaction_manager().scope(|| -> Res<()> {
                                        for i in 0..per_thread {
                                            transaction::begin()?;
                                            for name in ["a", "b"] {
                                                let session = r.session(name)?;
                                                insert(
                                                    &mut *session.conn::<PgConnection>()?,
                                                    table,
                                                    i as i32,
                                                )?;
                                            }
                                            transaction::commit()?;
                                        }
                                        sqlassist::close_sessions()?;
                                        Ok(())
                                    })
                                };
                                run().map_err(|e| e.to_string())
                            })
                        })
                        .collect();
                    for h in handles {
                        h.join().map_err(|_| "a bench thread panicked")??;
                    }
                    Ok(())
                })?;
                tps[v].push(total as f64 / start.elapsed().as_secs_f64());
                if let Some(log) = log {
                    syncs[v].push((log.stats().syncs - before) as f64 / total as f64);
                }
                written += total;
            }
        }
        for v in 1..variants.len() {
            let ratios: Vec<f64> = tps[v].iter().zip(&tps[0]).map(|(l, p)| l / p).collect();
            let (min, max) = ratios
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            println!(
                "{{\"scenario\":\"2pc_two_db_{threads}t\",\"log\":\"{}\",\"threads\":{threads},\"rounds\":{rounds},\"tx_per_round\":{total},\"no_log_tx_per_s\":{:.1},\"file_log_tx_per_s\":{:.1},\"ratio_median\":{:.3},\"ratio_min\":{min:.3},\"ratio_max\":{max:.3},\"fdatasync_per_tx\":{:.3}}}",
                variants[v].0,
                median(tps[0].clone()),
                median(tps[v].clone()),
                median(ratios),
                median(syncs[v].clone())
            );
        }
    }
    for url in [url_a, url_b] {
        let got = count(&mut PgConnection::establish(url)?, table)?;
        if got != written as i64 {
            return Err(format!("decision_log: {got} rows, expected {written}").into());
        }
        PgConnection::establish(url)?.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))?;
    }
    drop(variants);
    drop((log, nowait));
    let _ = std::fs::remove_dir_all(dir("dlog"));
    let _ = std::fs::remove_dir_all(dir("dlog-nowait"));
    Ok(())
}

type Moved = (PgConnection, String);

/// A thread that runs statements on connections moved to it and moves them back with the
/// outcome: the hand-written way to run a phase on two connections at once (the other on
/// the calling thread), started once for the whole run.
fn helper() -> (
    std::sync::mpsc::Sender<Moved>,
    std::sync::mpsc::Receiver<(PgConnection, QueryResult<()>)>,
) {
    let (to, requests) = std::sync::mpsc::channel::<Moved>();
    let (replies, from) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (mut conn, sql) in requests {
            let outcome = conn.batch_execute(&sql);
            if replies.send((conn, outcome)).is_err() {
                return;
            }
        }
    });
    (to, from)
}

#[derive(QueryableByName)]
struct WalSyncs {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Makes every pooled connection of `r`'s engines report its pending statistics now: a
/// busy PostgreSQL backend adds its WAL counters to `pg_stat_wal` at most once a second,
/// an idle one only after 10 s, so without this a short round's flushes land in a later
/// round. Each of `POOL` threads holds one connection of every engine at once (so every
/// connection of a pool of `POOL` is reached), asks `pg_stat_force_next_flush()` and
/// ends its transaction; the backend reports when it goes idle.
fn flush_statistics(r: &Registry) -> Res<()> {
    const POOL: usize = 10;
    let names: Vec<String> = r.names().map(str::to_owned).collect();
    let barrier = std::sync::Barrier::new(POOL);
    std::thread::scope(|s| -> Res<()> {
        let handles: Vec<_> = (0..POOL)
            .map(|_| {
                let (names, barrier) = (&names, &barrier);
                s.spawn(move || -> Result<(), String> {
                    let run = || -> Res<()> {
                        r.transaction_manager().scope(|| -> Res<()> {
                            transaction::begin()?;
                            let sessions = names
                                .iter()
                                .map(|n| r.session(n))
                                .collect::<Result<Vec<_>, _>>()?;
                            for session in &sessions {
                                session.execute("SELECT pg_stat_force_next_flush()")?;
                            }
                            barrier.wait();
                            transaction::abort()?;
                            drop(sessions);
                            sqlassist::close_sessions()?;
                            Ok(())
                        })
                    };
                    run().map_err(|e| e.to_string())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a statistics thread panicked")??;
        }
        Ok(())
    })?;
    // The backends report right after their ROLLBACK; give them a moment.
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

/// `pg_stat_wal.wal_sync` of the server (cluster-wide: other clients' flushes count too).
fn wal_syncs(conn: &mut PgConnection) -> Res<i64> {
    Ok(
        diesel::sql_query("SELECT wal_sync::bigint AS n FROM pg_stat_wal")
            .get_result::<WalSyncs>(conn)?
            .n,
    )
}

/// Two-phase commit over the two databases with no decision log, the file log, the
/// database log kept in database `a`, which takes part and carries each decision in its
/// one-phase commit (not prepared), and the database log in `a` reached over a pool of its
/// own, so that it takes no part (a separate INSERT and COMMIT per decision): per thread
/// count (1, 8) and round, these four and no log with sequential phases run the same number
/// of transactions in rotating order. Prints each one's
/// median throughput, the median per-round ratios to no log (parallel phases) and to no
/// log with sequential phases, and the server's WAL
/// flushes per transaction (`pg_stat_wal.wal_sync`, cluster-wide). Scenario name `db_log`.
fn db_log_scenarios(url_a: &str, url_b: &str, n: usize, rounds: usize) -> Res<()> {
    use std::sync::Arc;
    let table = "bench_dblog";
    for url in [url_a, url_b] {
        reset(&mut PgConnection::establish(url)?, table)?;
    }
    let dir = std::env::temp_dir().join(format!("sqlassist-bench-dblog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file_log = Arc::new(transaction::FileDecisionLog::open(&dir)?);
    let engines = || -> Res<Vec<(&str, Engine)>> {
        let mut v = Vec::new();
        for (name, url) in [("a", url_a), ("b", url_b)] {
            let options = EngineOptions::builder(DatabaseUrl::parse(url)?)
                .pool_size(10)
                .build()?;
            v.push((name, Engine::new(options)?));
        }
        Ok(v)
    };
    // One pool per database, shared by every registry (they never run at once): five
    // registries with pools of their own would need more connections than the server's
    // default limit, and a pool short of connections would decide the figures.
    let engines = engines()?;
    let registry = |mode: usize| -> Res<Registry> {
        let mut r = Registry::new();
        for (name, engine) in &engines {
            r.init_engine(name, engine.clone(), InitOptions::new().managed(true))?;
        }
        match mode {
            1 => r.use_decision_log(file_log.clone()),
            2 | 3 => {
                let node = sqlassist::NodeId::new(&format!("bench-{mode}-{}", std::process::id()))?;
                r.set_node_id(node.clone());
                // Mode 3: the same database over a pool of its own (another application
                // name), so the log takes no part and records each decision with a
                // separate INSERT and COMMIT.
                let log_engine = if mode == 2 {
                    engines[0].1.clone()
                } else {
                    let url = format!(
                        "{url_a}{}application_name=sqlassist_decision_log",
                        if url_a.contains('?') { '&' } else { '?' }
                    );
                    Engine::new(
                        EngineOptions::builder(DatabaseUrl::parse(&url)?)
                            .pool_size(10)
                            .build()?,
                    )?
                };
                if mode == 3 {
                    // Unmanaged (it takes no part): registered only so that its pool's
                    // statistics can be flushed before they are read.
                    r.init_engine("log", log_engine.clone(), InitOptions::new())?;
                }
                let log = sqlassist::DatabaseDecisionLog::open(
                    log_engine,
                    &node,
                    Duration::from_secs(30),
                )?;
                r.use_database_decision_log(log);
            }
            _ => {}
        }
        Ok(r)
    };
    // Mode 4: no log, with the phases sent one resource after the other.
    let registries = [
        registry(0)?,
        registry(1)?,
        registry(2)?,
        registry(3)?,
        registry(0)?,
    ];
    let names = [
        "no_log",
        "file_log",
        "db_log_riding",
        "db_log_separate",
        "no_log_sequential",
    ];
    let mut stat = PgConnection::establish(url_a)?;
    let mut written = 0usize;
    for threads in [1usize, 8] {
        let per_thread = (n / rounds / threads).max(1);
        let total = per_thread * threads;
        let mut tps: [Vec<f64>; 5] = Default::default();
        let mut flushes: [Vec<f64>; 5] = Default::default();
        let mut ratios: [Vec<f64>; 5] = Default::default();
        let mut ratios_sequential: [Vec<f64>; 5] = Default::default();
        for round in 0..rounds {
            let mut order = [0usize, 1, 2, 3, 4];
            order.rotate_left(round % 5);
            let mut rate = [0.0f64; 5];
            for mode in order {
                let r = &registries[mode];
                flush_statistics(r)?;
                let before = wal_syncs(&mut stat)?;
                let start = Instant::now();
                std::thread::scope(|s| -> Res<()> {
                    let handles: Vec<_> = (0..threads)
                        .map(|_| {
                            s.spawn(move || -> Result<(), String> {
                                let run = || -> Res<()> {
                                    let manager = r.transaction_manager();
                                    manager.set_parallel_phases(mode != 4);
                                    manager.scope(|| -> Res<()> {
                                        for i in 0..per_thread {
                                            transaction::begin()?;
                                            for name in ["a", "b"] {
                                                let session = r.session(name)?;
                                                insert(
                                                    &mut *session.conn::<PgConnection>()?,
                                                    table,
                                                    i as i32,
                                                )?;
                                            }
                                            transaction::commit()?;
                                        }
                                        sqlassist::close_sessions()?;
                                        Ok(())
                                    })
                                };
                                run().map_err(|e| e.to_string())
                            })
                        })
                        .collect();
                    for h in handles {
                        h.join().map_err(|_| "a bench thread panicked")??;
                    }
                    Ok(())
                })?;
                rate[mode] = total as f64 / start.elapsed().as_secs_f64();
                flush_statistics(r)?;
                flushes[mode].push((wal_syncs(&mut stat)? - before) as f64 / total as f64);
                written += total;
                if mode == 2 || mode == 3 {
                    // The riding decisions stay until recovery finds them finished.
                    r.recover()?;
                }
            }
            for mode in 0..5 {
                tps[mode].push(rate[mode]);
                ratios[mode].push(rate[mode] / rate[0]);
                ratios_sequential[mode].push(rate[mode] / rate[4]);
            }
        }
        for mode in 0..5 {
            println!(
                "{{\"scenario\":\"2pc_two_db_{}_{threads}t\",\"threads\":{threads},\"rounds\":{rounds},\"tx_per_round\":{total},\"tx_per_s\":{:.1},\"ratio_to_no_log_median\":{:.3},\"ratio_to_sequential_no_log_median\":{:.3},\"wal_sync_per_tx_median\":{:.2}}}",
                names[mode],
                median(tps[mode].clone()),
                median(ratios[mode].clone()),
                median(ratios_sequential[mode].clone()),
                median(flushes[mode].clone())
            );
        }
    }
    for url in [url_a, url_b] {
        let got = count(&mut PgConnection::establish(url)?, table)?;
        if got != written as i64 {
            return Err(format!("db_log: {got} rows, expected {written}").into());
        }
        PgConnection::establish(url)?.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))?;
    }
    drop(registries);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

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

    let only = std::env::var("SQLASSIST_BENCH_ONLY").ok();
    if only
        .as_deref()
        .is_none_or(|o| o.split(',').any(|s| s.trim() == "decision_log"))
    {
        decision_log_scenarios(&url_a, &url_b, n, rounds)?;
    }
    if only
        .as_deref()
        .is_none_or(|o| o.split(',').any(|s| s.trim() == "db_log"))
    {
        db_log_scenarios(&url_a, &url_b, n, rounds)?;
    }
    let scenarios = scenarios();
    if scenarios.is_empty() {
        return Ok(());
    }
    let mut a = PgConnection::establish(&url_a)?;
    let mut b = PgConnection::establish(&url_b)?;
    #[cfg(feature = "mysql")]
    let url_m = std::env::var("SQLASSIST_TEST_MYSQL_URL").ok();
    #[cfg(feature = "mysql")]
    let mut m = url_m
        .as_deref()
        .map(MysqlConnection::establish)
        .transpose()?;
    // Table names carry the process id: two runs on the same servers do not collide.
    let tn: std::collections::HashMap<&str, String> = scenarios
        .iter()
        .flat_map(|s| std::iter::once(s.tables.0).chain(s.tables.1))
        .map(|t| (t, format!("{t}_{}", std::process::id())))
        .collect();
    for s in &scenarios {
        reset(&mut a, &tn[s.tables.0])?;
        match (s.tables.1.map(|t| &tn[t]), s.maria) {
            (Some(t), false) => reset(&mut b, t)?,
            #[cfg(feature = "mysql")]
            (Some(t), true) => m.as_mut().ok_or("no MariaDB")?.batch_execute(&format!(
                "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (v INTEGER NOT NULL) ENGINE=InnoDB"
            ))?,
            _ => {}
        }
    }

    let mut registry = Registry::new();
    let engine_with = |url: &str, keep_session: bool| -> Res<Engine> {
        Ok(Engine::new(
            EngineOptions::builder(DatabaseUrl::parse(url)?)
                .pool_size(2)
                .keep_session(keep_session)
                .build()?,
        )?)
    };
    let engine = |url: &str| engine_with(url, false);
    registry.init_engine("a", engine(&url_a)?, InitOptions::new().managed(true))?;
    registry.init_engine("b", engine(&url_b)?, InitOptions::new().managed(true))?;
    // The same database, for the reuse and per-request scenarios.
    registry.init_engine(
        "kept",
        engine_with(&url_a, true)?,
        InitOptions::new().managed(true),
    )?;
    registry.init_engine("request", engine(&url_a)?, InitOptions::new().managed(true))?;
    let kept = registry.session("kept")?;
    let sa = registry.session("a")?;
    let sb = registry.session("b")?;
    #[cfg(feature = "mysql")]
    let sm = match &url_m {
        Some(url) => {
            registry.init_engine("m", engine(url)?, InitOptions::new().managed(true))?;
            Some(registry.session("m")?)
        }
        None => None,
    };
    let pid = std::process::id();
    let (to_helper, from_helper) = helper();
    // Database b's connection of the parallel hand-written scenario, while on this thread.
    let mut b_parallel = Some(PgConnection::establish(&url_b)?);

    let mut results: Vec<(Vec<Duration>, Duration, usize, Duration)> = scenarios
        .iter()
        .map(|_| (Vec::new(), Duration::ZERO, 0, Duration::ZERO))
        .collect();
    // Per round, each scenario's throughput (transactions per second).
    let mut per_round_tps: Vec<Vec<f64>> = vec![Vec::new(); scenarios.len()];
    // Per round, each scenario's median latency (seconds): unlike throughput, not moved by
    // the few transactions of a round that wait behind another process's fsync.
    let mut per_round_p50: Vec<Vec<f64>> = vec![Vec::new(); scenarios.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..scenarios.len()).collect();
        if round % 2 == 1 {
            order.reverse(); // no scenario always runs right after the same other one
        }
        for k in order {
            let s = scenarios[k];
            let (lat, total, cpu) = timed(per_round, |i| {
                let v = (round * per_round + i) as i32;
                match s.name {
                    // BEGIN / INSERT / COMMIT through Diesel.
                    "raw_1pc_one_db" => {
                        a.transaction(|c| insert(c, &tn["bench_raw1"], v))?;
                    }
                    // BEGIN / INSERT / PREPARE TRANSACTION on each, COMMIT PREPARED on each.
                    "raw_2pc_two_db" => {
                        // gids are global to the server: one per database.
                        let gid = format!("bench_raw_{pid}_{round}_{i}");
                        // The textbook sequence: insert in both databases, then PREPARE
                        // TRANSACTION on each, then COMMIT PREPARED on each.
                        for c in [&mut a, &mut b] {
                            c.batch_execute("BEGIN")?;
                            insert(c, &tn["bench_raw2"], v)?;
                        }
                        for (db, c) in [("a", &mut a), ("b", &mut b)] {
                            c.batch_execute(&format!("PREPARE TRANSACTION '{gid}_{db}'"))?;
                        }
                        for (db, c) in [("a", &mut a), ("b", &mut b)] {
                            c.batch_execute(&format!("COMMIT PREPARED '{gid}_{db}'"))?;
                        }
                    }
                    // The textbook sequence with each phase on both connections at
                    // once: the work (BEGIN, INSERT) in each database as the application
                    // does it, then PREPARE TRANSACTION on both at once (database b's
                    // connection moved to a helper thread and back), then COMMIT PREPARED
                    // on both at once.
                    "raw_2pc_two_db_parallel" => {
                        let gid = format!("bench_rawp_{pid}_{round}_{i}");
                        let table = &tn["bench_raw2p"];
                        let mut b = b_parallel.take().ok_or("connection b lost")?;
                        for c in [&mut a, &mut b] {
                            c.batch_execute("BEGIN")?;
                            insert(c, table, v)?;
                        }
                        for sql in ["PREPARE TRANSACTION", "COMMIT PREPARED"] {
                            to_helper
                                .send((b, format!("{sql} '{gid}_b'")))
                                .map_err(|_| "the helper thread ended")?;
                            let here = a.batch_execute(&format!("{sql} '{gid}_a'"));
                            let (back, there) =
                                from_helper.recv().map_err(|_| "the helper thread ended")?;
                            b = back;
                            here?;
                            there?;
                        }
                        b_parallel = Some(b);
                    }
                    // The same statements, database by database: BEGIN / INSERT /
                    // PREPARE on one, then on the other. A coordinator cannot use this
                    // order (the work in every resource precedes the votes); it is here
                    // to show what the order costs.
                    "raw_2pc_two_db_per_db" => {
                        let gid = format!("bench_raws_{pid}_{round}_{i}");
                        for (db, c) in [("a", &mut a), ("b", &mut b)] {
                            c.batch_execute("BEGIN")?;
                            insert(c, &tn["bench_raw2s"], v)?;
                            c.batch_execute(&format!("PREPARE TRANSACTION '{gid}_{db}'"))?;
                        }
                        for (db, c) in [("a", &mut a), ("b", &mut b)] {
                            c.batch_execute(&format!("COMMIT PREPARED '{gid}_{db}'"))?;
                        }
                    }
                    // One managed engine: the coordinator commits it in one phase.
                    "sqlassist_1pc_one_db" => {
                        insert(&mut *sa.conn::<PgConnection>()?, &tn["bench_sa1"], v)?;
                        transaction::commit()?;
                    }
                    // A session kept across transactions with its connection.
                    "sqlassist_1pc_reuse" => {
                        insert(&mut *kept.conn::<PgConnection>()?, &tn["bench_sru"], v)?;
                        transaction::commit()?;
                    }
                    // A request: open the session, insert, commit, close the session.
                    "sqlassist_1pc_per_request" => {
                        let session = registry.session("request")?;
                        insert(&mut *session.conn::<PgConnection>()?, &tn["bench_spr"], v)?;
                        transaction::commit()?;
                        session.close()?;
                    }
                    // Two managed engines, one transaction::commit().
                    "sqlassist_2pc_two_db" => {
                        insert(&mut *sa.conn::<PgConnection>()?, &tn["bench_sa2"], v)?;
                        insert(&mut *sb.conn::<PgConnection>()?, &tn["bench_sa2"], v)?;
                        transaction::commit()?;
                    }
                    // The same with parallel phases off: one vote after the other.
                    "sqlassist_2pc_two_db_sequential" => {
                        insert(&mut *sa.conn::<PgConnection>()?, &tn["bench_sa2s"], v)?;
                        insert(&mut *sb.conn::<PgConnection>()?, &tn["bench_sa2s"], v)?;
                        let manager = transaction::manager();
                        manager.set_parallel_phases(false);
                        let outcome = transaction::commit();
                        manager.set_parallel_phases(true);
                        outcome?;
                    }
                    // Hand-written XA next to PREPARE TRANSACTION: the same statements
                    // sqlassist sends (XA END and XA PREPARE in one round trip).
                    #[cfg(feature = "mysql")]
                    "raw_2pc_pg_mariadb" => {
                        let m = m.as_mut().ok_or("no MariaDB")?;
                        let gid = format!("bench_rawm_{pid}_{round}_{i}");
                        let xid = format!("'{gid}','m'");
                        a.batch_execute("BEGIN")?;
                        insert(&mut a, &tn["bench_rawm"], v)?;
                        m.batch_execute(&format!("XA START {xid}"))?;
                        maria_insert(m, &tn["bench_rawm"], v)?;
                        a.batch_execute(&format!("PREPARE TRANSACTION '{gid}'"))?;
                        m.batch_execute(&format!("XA END {xid}; XA PREPARE {xid}"))?;
                        a.batch_execute(&format!("COMMIT PREPARED '{gid}'"))?;
                        m.batch_execute(&format!("XA COMMIT {xid}"))?;
                    }
                    #[cfg(feature = "mysql")]
                    "sqlassist_2pc_pg_mariadb" => {
                        let sm = sm.as_ref().ok_or("no MariaDB")?;
                        insert(&mut *sa.conn::<PgConnection>()?, &tn["bench_sam"], v)?;
                        maria_insert(&mut *sm.conn::<MysqlConnection>()?, &tn["bench_sam"], v)?;
                        transaction::commit()?;
                    }
                    // The same work, aborted.
                    _ => {
                        insert(&mut *sa.conn::<PgConnection>()?, &tn["bench_sa3"], v)?;
                        insert(&mut *sb.conn::<PgConnection>()?, &tn["bench_sa3"], v)?;
                        transaction::abort()?;
                    }
                }
                Ok(())
            })?;
            per_round_tps[k].push(per_round as f64 / total.as_secs_f64());
            per_round_p50[k].push(median(lat.iter().map(Duration::as_secs_f64).collect()));
            let r = &mut results[k];
            r.0.extend(lat);
            r.1 += total;
            r.2 += per_round + warmup(per_round);
            r.3 += cpu;
        }
    }
    sqlassist::close_sessions()?;

    for (s, (lat, total, _, cpu)) in scenarios.iter().zip(results.iter()) {
        report(s.name, lat.clone(), *total, *cpu);
    }
    for (of, to) in RATIOS {
        let index = |name: &str| scenarios.iter().position(|s| s.name == name);
        let (Some(i), Some(j)) = (index(of), index(to)) else {
            continue;
        };
        let ratios: Vec<f64> = per_round_tps[i]
            .iter()
            .zip(&per_round_tps[j])
            .map(|(a, b)| a / b)
            .collect();
        let (min, max) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        // Speed ratio from the rounds' median latencies (the other's over this one's).
        let p50_ratios: Vec<f64> = per_round_p50[i]
            .iter()
            .zip(&per_round_p50[j])
            .map(|(a, b)| b / a)
            .collect();
        println!(
            "{{\"ratio\":\"{of}/{to}\",\"of\":\"{of}\",\"to\":\"{to}\",\"median\":{:.3},\"min\":{min:.3},\"max\":{max:.3},\"p50_median\":{:.3},\"rounds\":{}}}",
            median(ratios.clone()),
            median(p50_ratios),
            ratios.len()
        );
    }

    for (s, (_, _, written, _)) in scenarios.iter().zip(results) {
        let expected = if s.persists { written as i64 } else { 0 };
        let got_a = count(&mut a, &tn[s.tables.0])?;
        if got_a != expected {
            return Err(format!(
                "{}: database a has {got_a} rows, expected {expected}",
                s.name
            )
            .into());
        }
        if let Some(t) = s.tables.1.map(|t| &tn[t]) {
            #[cfg(feature = "mysql")]
            let got_b = if s.maria {
                maria_count(m.as_mut().ok_or("no MariaDB")?, t)?
            } else {
                count(&mut b, t)?
            };
            #[cfg(not(feature = "mysql"))]
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
    for s in &scenarios {
        a.batch_execute(&format!("DROP TABLE IF EXISTS {}", tn[s.tables.0]))?;
        match (s.tables.1.map(|t| &tn[t]), s.maria) {
            (Some(t), false) => b.batch_execute(&format!("DROP TABLE IF EXISTS {t}"))?,
            #[cfg(feature = "mysql")]
            (Some(t), true) => m
                .as_mut()
                .ok_or("no MariaDB")?
                .batch_execute(&format!("DROP TABLE IF EXISTS {t}"))?,
            _ => {}
        }
    }
    Ok(())
}
