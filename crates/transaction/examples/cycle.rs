//! The coordinator cycle of the `commit` bench (begin, join two no-op resources, commit)
//! in a plain loop, for instruction counts: `valgrind --tool=callgrind` on two run lengths,
//! the difference divided by the difference of cycles (see `docs/performance.md`).
//!
//! ```text
//! cargo build --release -p transaction --example cycle
//! valgrind --tool=callgrind target/release/examples/cycle 10000
//! ```

use std::hint::black_box;
use std::rc::Rc;

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 10_000,
    };
    let manager = TransactionManager::new();
    let resources: [Rc<dyn DataManager>; 2] = [Rc::new(Noop("r1")), Rc::new(Noop("r0"))];
    for _ in 0..n {
        let txn = manager.begin()?;
        for r in &resources {
            txn.join(r.clone())?;
        }
        manager.commit()?;
        black_box(txn);
    }
    Ok(())
}
