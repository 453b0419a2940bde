//! The process-wide default decision log: set once, shared by every thread's default
//! manager and by builder-made managers, including those created before it was set.
//! Its own test binary, since the default is set once per process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use transaction::testing::{Journal, Kind, ScriptedDataManager};
use transaction::{BoxError, Branch, DecisionLog, Error, TransactionId, TransactionManager};

#[derive(Default)]
struct Counting {
    recorded: AtomicUsize,
    forgotten: AtomicUsize,
}

impl DecisionLog for Counting {
    fn record_commit(&self, _: TransactionId, _: &[Branch]) -> Result<(), BoxError> {
        self.recorded.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn forget(&self, _: TransactionId) -> Result<(), BoxError> {
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn commit_two_phase(manager: &TransactionManager) {
    let journal = Journal::new();
    let txn = manager.begin().expect("begin");
    for key in ["a", "b"] {
        txn.join(ScriptedDataManager::new(key, Kind::TwoPhase, &journal))
            .expect("join");
    }
    manager.commit().expect("commit");
}

#[test]
fn every_thread_records_its_decisions_in_the_default_log_set_once() {
    // Built before the default is set: it records there too.
    let early = TransactionManager::builder().explicit(true).build();
    let log = Arc::new(Counting::default());
    transaction::set_default_decision_log(log.clone()).expect("first set");
    assert!(matches!(
        transaction::set_default_decision_log(Arc::new(Counting::default())),
        Err(Error::DecisionLogAlreadySet)
    ));

    commit_two_phase(&early);
    let threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| transaction::with_manager(commit_two_phase)))
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(log.recorded.load(Ordering::SeqCst), 5);
    assert_eq!(log.forgotten.load(Ordering::SeqCst), 5);
    // An explicit log still wins over the default.
    let own = std::rc::Rc::new(transaction::MemoryDecisionLog::new());
    let manager = TransactionManager::builder()
        .explicit(true)
        .decision_log(own.clone())
        .build();
    commit_two_phase(&manager);
    assert_eq!(own.forgotten().len(), 1);
    assert_eq!(log.recorded.load(Ordering::SeqCst), 5);
}
