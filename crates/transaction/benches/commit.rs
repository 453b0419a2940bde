//! Coordinator overhead: begin + join N no-op resources + commit.
#![allow(missing_docs)] // criterion_group! generates undocumented items
//!
//! Run with `cargo bench -p transaction`; figures go to `docs/performance.md`.

use std::hint::black_box;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use transaction::{DataManager, ResourceError, Transaction, TransactionManager, Vote};

/// A resource that prepares and finishes without doing anything.
struct Noop(&'static str);

impl DataManager for Noop {
    fn sort_key(&self) -> &str {
        self.0
    }
    fn abort(&self, _: &Transaction) -> Result<(), ResourceError> {
        Ok(())
    }
    fn tpc_vote(&self, _: &Transaction) -> Result<Vote, ResourceError> {
        Ok(Vote::Prepared)
    }
    fn tpc_finish(&self, _: &Transaction) -> Result<(), ResourceError> {
        Ok(())
    }
    fn tpc_abort(&self, _: &Transaction) -> Result<(), ResourceError> {
        Ok(())
    }
}

const KEYS: [&str; 8] = ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"];

fn commit_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("begin_join_commit");
    for n in [0usize, 1, 2, 8] {
        let manager = TransactionManager::new();
        // Resources outlive the transactions, as database sessions do.
        let resources: Vec<Rc<dyn DataManager>> = KEYS[..n]
            .iter()
            .rev()
            .map(|k| Rc::new(Noop(k)) as Rc<dyn DataManager>)
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let txn = manager.begin().expect("begin");
                for r in &resources {
                    txn.join(r.clone()).expect("join");
                }
                manager.commit().expect("commit");
                black_box(txn);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, commit_cycle);
criterion_main!(benches);
