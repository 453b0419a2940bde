//! Parallel phases with scripted resources that hand their vote and finish to the
//! coordinator's worker threads: the phases overlap, the decision waits for every vote, a
//! one-phase resource still votes last and alone, and failures keep the failure matrix.

// A panic is how a test reports failure: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
use transaction::{
    BoxError, Branch, DecisionLog, Error, MemoryDecisionLog, Phase, Status, TransactionId,
    TransactionManager, WriteState,
};

/// Jobs that wait (up to 5 s) until `n` of them are running at once, and record whether
/// they ever were, per call.
#[derive(Clone)]
struct Rendezvous {
    n: usize,
    inside: Arc<AtomicUsize>,
    met: Arc<Mutex<Vec<(Call, bool)>>>,
}

impl Rendezvous {
    fn new(n: usize) -> Self {
        Self {
            n,
            inside: Arc::new(AtomicUsize::new(0)),
            met: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn work(&self) -> impl Fn(Call) + Send + Sync + 'static {
        let this = self.clone();
        move |call| {
            let now = this.inside.fetch_add(1, Ordering::SeqCst) + 1;
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut met = now >= this.n;
            while !met && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
                met = this.inside.load(Ordering::SeqCst) >= this.n;
            }
            // Stay inside long enough for the others to see us.
            std::thread::sleep(Duration::from_millis(20));
            this.inside.fetch_sub(1, Ordering::SeqCst);
            this.met.lock().unwrap().push((call, met));
        }
    }

    fn met(&self, call: Call) -> Vec<bool> {
        self.met
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| *c == call)
            .map(|(_, m)| *m)
            .collect()
    }
}

fn parallel_manager() -> TransactionManager {
    TransactionManager::builder().parallel_phases(true).build()
}

#[test]
fn votes_and_finishes_of_two_resources_run_at_the_same_time() {
    let journal = Journal::new();
    let meet = Rendezvous::new(2);
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal).with_phase_jobs(meet.work());
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal).with_phase_jobs(meet.work());
    let manager = parallel_manager();
    let txn = manager.begin().unwrap();
    txn.join(a.clone()).unwrap();
    txn.join(b.clone()).unwrap();
    manager.commit().unwrap();
    assert!(a.committed() && b.committed());
    assert_eq!(
        meet.met(Call::TpcVote),
        [true, true],
        "the votes did not overlap"
    );
    assert_eq!(
        meet.met(Call::TpcFinish),
        [true, true],
        "the finishes did not overlap"
    );
    // The calls each resource sees are those of a sequential commit.
    let expected = [Call::TpcBegin, Call::Commit, Call::TpcVote, Call::TpcFinish];
    assert_eq!(journal.calls_of("a"), expected);
    assert_eq!(journal.calls_of("b"), expected);
}

#[test]
fn without_parallel_phases_the_jobs_run_one_after_the_other() {
    let journal = Journal::new();
    let meet = Rendezvous::new(2);
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal).with_phase_jobs(meet.work());
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal).with_phase_jobs(meet.work());
    let manager = TransactionManager::builder().parallel_phases(false).build();
    let txn = manager.begin().unwrap();
    txn.join(a.clone()).unwrap();
    txn.join(b.clone()).unwrap();
    manager.commit().unwrap();
    assert!(a.committed() && b.committed());
    // Sequential phases call tpc_vote / tpc_finish on this thread: no job runs.
    assert!(meet.met(Call::TpcVote).is_empty());
}

#[test]
fn a_vote_failure_while_the_other_is_still_preparing_rolls_back_both_and_names_it() {
    let journal = Journal::new();
    let slow = Rendezvous::new(1);
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal)
        .fail_on(Call::TpcVote)
        .with_phase_jobs(|_| {});
    // b is still preparing when a's vote has failed.
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal).with_phase_jobs(move |c| {
        std::thread::sleep(Duration::from_millis(50));
        slow.work()(c);
    });
    let log = Rc::new(MemoryDecisionLog::new());
    let manager = TransactionManager::builder()
        .parallel_phases(true)
        .decision_log(log.clone())
        .build();
    let txn = manager.begin().unwrap();
    txn.join(a.clone()).unwrap();
    txn.join(b.clone()).unwrap();
    let err = manager.commit().unwrap_err();
    assert!(
        matches!(&err, Error::Resource { phase: Phase::Vote, resource, .. } if resource == "a"),
        "{err:?}"
    );
    assert!(!a.committed() && !b.committed());
    assert_eq!(
        journal.calls_of("a"),
        [
            Call::TpcBegin,
            Call::Commit,
            Call::TpcVote,
            Call::Abort,
            Call::TpcAbort
        ]
    );
    // b prepared: it is rolled back with tpc_abort.
    assert_eq!(
        journal.calls_of("b"),
        [Call::TpcBegin, Call::Commit, Call::TpcVote, Call::TpcAbort]
    );
    assert!(log.pending().is_empty());
    assert_eq!(txn.status(), Status::CommitFailed);
    txn.abort().unwrap();
}

#[test]
fn a_finish_failure_while_the_other_commits_is_heuristic_and_names_each() {
    let journal = Journal::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal)
        .fail_on(Call::TpcFinish)
        .with_phase_jobs(|_| {});
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal)
        .with_phase_jobs(|_| std::thread::sleep(Duration::from_millis(30)));
    let log = Rc::new(MemoryDecisionLog::new());
    let manager = TransactionManager::builder()
        .parallel_phases(true)
        .decision_log(log.clone())
        .build();
    let txn = manager.begin().unwrap();
    txn.join(a.clone()).unwrap();
    txn.join(b.clone()).unwrap();
    let Err(Error::Heuristic(h)) = manager.commit() else {
        panic!("expected a heuristic outcome");
    };
    assert_eq!(h.phase(), Phase::Finish);
    assert_eq!(h.committed(), ["b"]);
    let failed: Vec<&str> = h.failed().iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(failed, ["a"]);
    assert!(b.committed() && !a.committed());
    // The decision stays pending for recovery.
    assert_eq!(log.pending().len(), 1);
}

/// A decision log that checks, when the decision is recorded, that every resource voted.
struct VotesBeforeDecision {
    journal: Journal,
    keys: Vec<&'static str>,
    checked: std::cell::Cell<bool>,
}

impl DecisionLog for VotesBeforeDecision {
    fn is_enabled(&self) -> bool {
        true
    }
    fn record_commit(&self, _: TransactionId, branches: &[Branch]) -> Result<(), BoxError> {
        for key in &self.keys {
            assert!(
                self.journal.calls_of(key).contains(&Call::TpcVote),
                "{key} had not voted when the decision was recorded"
            );
            assert!(!self.journal.calls_of(key).contains(&Call::TpcFinish));
        }
        assert_eq!(branches.len(), self.keys.len());
        self.checked.set(true);
        Ok(())
    }
    fn forget(&self, _: TransactionId) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn the_decision_is_recorded_after_every_vote_is_in() {
    let journal = Journal::new();
    let keys = vec!["a", "b", "c"];
    let log = Rc::new(VotesBeforeDecision {
        journal: journal.clone(),
        keys: keys.clone(),
        checked: std::cell::Cell::new(false),
    });
    let manager = TransactionManager::builder()
        .parallel_phases(true)
        .decision_log(log.clone())
        .build();
    let txn = manager.begin().unwrap();
    for (i, key) in keys.iter().enumerate() {
        // c votes on this thread while a and b vote on workers, at different speeds.
        let r = ScriptedDataManager::new(key, Kind::TwoPhase, &journal);
        let r = if i < 2 {
            r.with_phase_jobs(move |_| std::thread::sleep(Duration::from_millis(10 * i as u64)))
        } else {
            r
        };
        txn.join(r).unwrap();
    }
    manager.commit().unwrap();
    assert!(log.checked.get());
}

#[test]
fn a_one_phase_resource_still_votes_last_and_alone() {
    let journal = Journal::new();
    let meet = Rendezvous::new(2);
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal).with_phase_jobs(meet.work());
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal).with_phase_jobs(meet.work());
    // Sorts first, votes last.
    let one = ScriptedDataManager::new("0-sqlite", Kind::OnePhase, &journal);
    let manager = parallel_manager();
    let txn = manager.begin().unwrap();
    txn.join(one.clone()).unwrap();
    txn.join(a.clone()).unwrap();
    txn.join(b.clone()).unwrap();
    manager.commit().unwrap();
    assert_eq!(meet.met(Call::TpcVote), [true, true]);
    let votes: Vec<String> = journal
        .calls()
        .into_iter()
        .filter(|(_, c)| *c == Call::TpcVote)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(votes, ["a", "b", "0-sqlite"]);
    assert!(one.committed() && a.committed() && b.committed());
}

#[test]
fn a_one_phase_vote_failure_after_parallel_prepares_rolls_back_every_prepared_resource() {
    let journal = Journal::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal).with_phase_jobs(|_| {});
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal).with_phase_jobs(|_| {});
    let one = ScriptedDataManager::new("c", Kind::OnePhase, &journal).fail_on(Call::TpcVote);
    let manager = parallel_manager();
    let txn = manager.begin().unwrap();
    for r in [&a, &b, &one] {
        txn.join(r.clone()).unwrap();
    }
    let err = manager.commit().unwrap_err();
    assert_eq!(
        (err.phase(), err.resource()),
        (Some(Phase::Vote), Some("c"))
    );
    for key in ["a", "b"] {
        assert_eq!(journal.calls_of(key).last(), Some(&Call::TpcAbort));
        assert!(!journal.calls_of(key).contains(&Call::TpcFinish));
    }
}

#[test]
fn a_lone_writer_after_resources_that_may_have_written_still_waits_and_commits_in_one_phase() {
    let journal = Journal::new();
    let meet = Rendezvous::new(2);
    let reader =
        ScriptedDataManager::new("z-reader", Kind::ReadOnly, &journal).with_phase_jobs(meet.work());
    let writer = ScriptedDataManager::new("a-writer", Kind::TwoPhase, &journal)
        .with_one_phase_commit()
        .with_write_state(WriteState::Dirty)
        .with_phase_jobs(meet.work());
    let manager = parallel_manager();
    let txn = manager.begin().unwrap();
    txn.join(writer.clone()).unwrap();
    txn.join(reader.clone()).unwrap();
    manager.commit().unwrap();
    assert_eq!(
        journal.calls_of("a-writer"),
        [Call::TpcBegin, Call::Commit, Call::CommitOnePhase]
    );
    assert_eq!(journal.calls_of("z-reader").last(), Some(&Call::TpcVote));
}

#[test]
fn two_dirty_writers_that_could_commit_in_one_phase_prepare_at_the_same_time() {
    let journal = Journal::new();
    let meet = Rendezvous::new(2);
    let make = |key| {
        ScriptedDataManager::new(key, Kind::TwoPhase, &journal)
            .with_one_phase_commit()
            .with_write_state(WriteState::Dirty)
            .with_phase_jobs(meet.work())
    };
    let (a, b) = (make("a"), make("b"));
    let manager = parallel_manager();
    let txn = manager.begin().unwrap();
    txn.join(a.clone()).unwrap();
    txn.join(b.clone()).unwrap();
    manager.commit().unwrap();
    assert_eq!(meet.met(Call::TpcVote), [true, true]);
    for key in ["a", "b"] {
        assert_eq!(
            journal.calls_of(key),
            [Call::TpcBegin, Call::Commit, Call::TpcVote, Call::TpcFinish]
        );
    }
}

#[test]
fn commits_reuse_the_worker_threads() {
    let manager = parallel_manager();
    for _ in 0..200 {
        let journal = Journal::new();
        let txn = manager.begin().unwrap();
        for key in ["a", "b", "c"] {
            txn.join(
                ScriptedDataManager::new(key, Kind::TwoPhase, &journal).with_phase_jobs(|_| {}),
            )
            .unwrap();
        }
        manager.commit().unwrap();
    }
    // Three jobs per phase, one of them on the committing thread: two workers, plus what
    // the other tests of this binary run at the same time.
    assert!(
        transaction::phase_workers() <= 2 * 4,
        "{} worker threads",
        transaction::phase_workers()
    );
}

#[test]
fn idle_worker_threads_end_so_none_is_left_behind() {
    let manager = parallel_manager();
    let journal = Journal::new();
    let txn = manager.begin().unwrap();
    for key in ["a", "b"] {
        txn.join(ScriptedDataManager::new(key, Kind::TwoPhase, &journal).with_phase_jobs(|_| {}))
            .unwrap();
    }
    manager.commit().unwrap();
    assert!(transaction::phase_workers() >= 1);
    // The other tests of this binary end within a second; then every worker idles out.
    let deadline = Instant::now() + transaction::IDLE_TIMEOUT + Duration::from_secs(20);
    while transaction::phase_workers() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(transaction::phase_workers(), 0);
}
