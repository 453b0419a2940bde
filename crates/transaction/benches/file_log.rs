//! Throughput of the file decision log: records per second and fdatasyncs per record at
//! 1 and 8 threads, each thread recording a decision and forgetting it in a loop.
//!
//! Run with `cargo bench -p transaction --bench file_log`; figures go to
//! `docs/performance.md`. `FILE_LOG_BENCH_SECS` sets the seconds per case (default 5),
//! `FILE_LOG_BENCH_DIR` the parent directory of the log (default: the system temp dir,
//! which must be on the disk being measured, not a tmpfs).

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use transaction::{Branch, DecisionLog, FileLogOptions, TransactionId};

struct Figures {
    records: u64,
    syncs: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn run(threads: usize, preallocate: bool, seconds: f64) -> Figures {
    let parent = std::env::var_os("FILE_LOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = parent.join(format!("txlog-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let log = FileLogOptions::new()
        .preallocate(preallocate)
        .open(&dir)
        .expect("open the log");
    let branches = [
        Branch {
            resource: "orders_pg".into(),
            branch_id: Some("sqla:orders-0:00000001:0000000000000001:0".into()),
        },
        Branch {
            resource: "stock_pg".into(),
            branch_id: Some("sqla:orders-0:00000001:0000000000000001:1".into()),
        },
    ];
    let before = log.stats();
    let barrier = Arc::new(Barrier::new(threads + 1));
    let deadline = Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (log, barrier, branches) = (log.clone(), barrier.clone(), branches.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                barrier.wait();
                let start = Instant::now();
                while start.elapsed() < deadline {
                    let txn = TransactionId::next();
                    let t = Instant::now();
                    log.record_commit(txn, &branches).expect("record");
                    latencies.push(t.elapsed());
                    log.forget(txn).expect("forget");
                }
                latencies
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut latencies: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("bench thread"))
        .collect();
    let elapsed = start.elapsed();
    let after = log.stats();
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    latencies.sort();
    Figures {
        records: after.commits - before.commits,
        syncs: after.syncs - before.syncs,
        elapsed,
        latencies,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_micros()
}

fn main() {
    // `cargo test --benches` runs this binary too: keep that short.
    let benching = std::env::args().any(|a| a == "--bench");
    let seconds = std::env::var("FILE_LOG_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benching { 5.0 } else { 0.2 });
    println!("| threads | segments | records/s | fdatasync per record | latency p50 / p99 |");
    println!("|---|---|---|---|---|");
    for preallocate in [true, false] {
        for threads in [1, 8] {
            let f = run(threads, preallocate, seconds);
            println!(
                "| {threads} | {} | {:.0} | {:.3} | {} / {} us |",
                if preallocate {
                    "preallocated"
                } else {
                    "growing"
                },
                f.records as f64 / f.elapsed.as_secs_f64(),
                f.syncs as f64 / f.records.max(1) as f64,
                percentile(&f.latencies, 0.5),
                percentile(&f.latencies, 0.99),
            );
        }
    }
}
