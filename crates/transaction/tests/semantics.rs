//! One or more tests for each numbered semantic of the `transaction` crate (zope.transaction's
//! behaviour as its users rely on it), through the public API and `transaction::testing`.
//!
//! Tests use their own `TransactionManager` value where they can; those that use the
//! thread's default manager run on the test's own thread and leave no transaction open.

// A panic is how a test reports failure: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

mod support;

use std::cell::{Cell, RefCell};
use std::error::Error as _;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use tracing::Level;
use transaction::testing::{Call, Journal, Kind, ScriptedDataManager, ScriptedFailure};
use transaction::{
    BoxError, Branch, DataManager, DecisionLog, Error, MemoryDecisionLog, Phase, ResourceError,
    Status, Synchronizer, Transaction, TransactionId, TransactionManager, Transient,
};

use support::logs::Logs;

// ---------------------------------------------------------------------------------------
// Helpers

/// A shared, ordered list of what happened, across hooks, synchronizers and resources.
#[derive(Clone, Default)]
struct Events(Rc<RefCell<Vec<String>>>);

impl Events {
    fn push(&self, event: impl Into<String>) {
        self.0.borrow_mut().push(event.into());
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

/// A synchronizer that writes every notification into `Events`, and can fail
/// `before_completion`.
struct RecordingSynchronizer {
    events: Events,
    fail_before: bool,
}

impl Synchronizer for RecordingSynchronizer {
    fn before_completion(&self, txn: &Transaction) -> Result<(), BoxError> {
        self.events
            .push(format!("before_completion {}", txn.status()));
        if self.fail_before {
            return Err("synchronizer refuses".into());
        }
        Ok(())
    }

    fn after_completion(&self, txn: &Transaction) {
        self.events
            .push(format!("after_completion {}", txn.status()));
    }

    fn new_transaction(&self, _: &Transaction) {
        self.events.push("new_transaction");
    }
}

/// A decision log that writes into `Events`.
struct RecordingLog(Events);

impl DecisionLog for RecordingLog {
    fn record_commit(&self, _: TransactionId, branches: &[Branch]) -> Result<(), BoxError> {
        let keys: Vec<_> = branches.iter().map(|b| b.resource.as_str()).collect();
        self.0.push(format!("record_commit {}", keys.join(",")));
        Ok(())
    }

    fn forget(&self, _: TransactionId) -> Result<(), BoxError> {
        self.0.push("forget");
        Ok(())
    }
}

/// A scripted resource whose calls also go to `events` as "key Call".
fn traced(key: &str, kind: Kind, journal: &Journal, events: &Events) -> Rc<ScriptedDataManager> {
    let r = ScriptedDataManager::new(key, kind, journal);
    let (key, events) = (key.to_owned(), events.clone());
    r.on_call(move |call, _| events.push(format!("{key} {call:?}")));
    r
}

fn as_dyn(r: &Rc<ScriptedDataManager>) -> Rc<dyn DataManager> {
    r.clone()
}

/// The scripted failure at the bottom of an error's `source()` chain.
fn scripted_cause(err: &(dyn std::error::Error + 'static)) -> Option<ScriptedFailure> {
    let mut cur = err.source();
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<ResourceError>() {
            if let Some(f) = r.downcast_ref::<ScriptedFailure>() {
                return Some(f.clone());
            }
        }
        cur = e.source();
    }
    None
}

use Call::{Abort, Commit, CommitOnePhase, TpcAbort, TpcBegin, TpcFinish, TpcVote};

// ---------------------------------------------------------------------------------------
// 1. commit(): hooks, synchronizers, sorted resources through every phase, then after hooks

#[test]
fn commit_runs_hooks_synchronizers_and_phases_in_order() {
    let events = Events::default();
    let manager = TransactionManager::builder()
        .decision_log(Rc::new(RecordingLog(events.clone())))
        .build();
    manager.register_synchronizer(Rc::new(RecordingSynchronizer {
        events: events.clone(),
        fail_before: false,
    }));
    let journal = Journal::new();
    let a = traced("a", Kind::TwoPhase, &journal, &events);
    let b = traced("b", Kind::TwoPhase, &journal, &events);

    let txn = manager.begin().unwrap();
    txn.join(b.clone()).unwrap(); // joined out of order: sort keys decide
    txn.join(a.clone()).unwrap();
    let e = events.clone();
    txn.add_before_commit_hook(move |t| {
        e.push(format!("before-commit hook {}", t.status()));
        Ok(())
    });
    let e = events.clone();
    txn.add_after_commit_hook(move |t, ok| {
        e.push(format!("after-commit hook {ok} {}", t.status()));
        Ok(())
    });
    manager.commit().unwrap();

    assert_eq!(
        events.take(),
        [
            "new_transaction",
            "before-commit hook active",
            "before_completion active",
            "a TpcBegin",
            "b TpcBegin",
            "a Commit",
            "b Commit",
            "a TpcVote",
            "b TpcVote",
            "record_commit a,b",
            "a TpcFinish",
            "b TpcFinish",
            "forget",
            "after_completion committed",
            "after-commit hook true committed",
        ]
    );
    assert_eq!(txn.status(), Status::Committed);
    assert!(a.committed() && b.committed());
    assert!(
        manager.current().is_none(),
        "the manager forgets a committed transaction"
    );
}

#[test]
fn resources_with_equal_sort_keys_keep_their_join_order() {
    let journal = Journal::new();
    let first = ScriptedDataManager::new("same", Kind::TwoPhase, &journal);
    let second = ScriptedDataManager::new("same", Kind::TwoPhase, &journal);
    let order = Rc::new(RefCell::new(Vec::new()));
    for (r, name) in [(&first, "first"), (&second, "second")] {
        let order = order.clone();
        r.on_call(move |call, _| order.borrow_mut().push((name, call)));
    }
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(first.clone()).unwrap();
    txn.join(second.clone()).unwrap();
    manager.commit().unwrap();
    let begins: Vec<_> = order
        .borrow()
        .iter()
        .filter(|(_, c)| *c == TpcBegin)
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(begins, ["first", "second"]);
}

#[test]
fn joining_the_same_resource_twice_counts_once() {
    let journal = Journal::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(a.clone()).unwrap();
    txn.join(a.clone()).unwrap();
    assert_eq!(txn.resource_count(), 1);
    assert!(txn.has_joined(&as_dyn(&a)));
    manager.commit().unwrap();
    assert_eq!(
        journal.calls_of("a"),
        [TpcBegin, Commit, TpcVote, TpcFinish]
    );
}

#[test]
fn before_commit_hook_may_join_a_resource_that_is_then_committed() {
    let journal = Journal::new();
    let late = ScriptedDataManager::new("late", Kind::TwoPhase, &journal);
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    let joined = late.clone();
    txn.add_before_commit_hook(move |t| {
        t.join(joined)?;
        Ok(())
    });
    manager.commit().unwrap();
    assert!(late.committed());
    assert_eq!(
        journal.calls_of("late"),
        [TpcBegin, Commit, TpcVote, TpcFinish]
    );
}

#[test]
fn before_commit_hook_may_add_a_hook_that_also_runs_before_the_resources() {
    let events = Events::default();
    let journal = Journal::new();
    let a = traced("a", Kind::TwoPhase, &journal, &events);
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(a).unwrap();
    let e = events.clone();
    txn.add_before_commit_hook(move |t| {
        e.push("first hook");
        let e = e.clone();
        t.add_before_commit_hook(move |_| {
            e.push("hook added by a hook");
            Ok(())
        });
        Ok(())
    });
    manager.commit().unwrap();
    assert_eq!(
        events.take()[..3],
        ["first hook", "hook added by a hook", "a TpcBegin"]
    );
}

#[test]
fn before_commit_hook_error_fails_the_commit_and_aborts_every_resource() {
    let journal = Journal::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal);
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(a.clone()).unwrap();
    txn.join(b.clone()).unwrap();
    txn.add_before_commit_hook(|_| Err("validation failed".into()));
    let told = Rc::new(Cell::new(None));
    let t = told.clone();
    txn.add_after_commit_hook(move |_, ok| {
        t.set(Some(ok));
        Ok(())
    });

    let err = manager.commit().unwrap_err();

    assert!(
        matches!(
            err,
            Error::Hook {
                phase: Phase::BeforeCommitHook,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.phase(), Some(Phase::BeforeCommitHook));
    assert_eq!(err.source().unwrap().to_string(), "validation failed");
    assert_eq!(journal.calls(), [("a".into(), Abort), ("b".into(), Abort)]);
    assert_eq!(txn.status(), Status::CommitFailed);
    assert_eq!(told.get(), Some(false));
    assert!(matches!(manager.commit(), Err(Error::TransactionFailed)));
    manager.abort().unwrap();
    assert_eq!(txn.status(), Status::Aborted);
    assert!(!a.committed() && !b.committed());
}

#[test]
fn synchronizer_before_completion_error_fails_the_commit_like_a_hook() {
    let events = Events::default();
    let manager = TransactionManager::new();
    manager.register_synchronizer(Rc::new(RecordingSynchronizer {
        events: events.clone(),
        fail_before: true,
    }));
    let journal = Journal::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    manager.get().unwrap().join(a.clone()).unwrap();

    let err = manager.commit().unwrap_err();

    assert!(
        matches!(
            err,
            Error::Hook {
                phase: Phase::BeforeCompletion,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.source().unwrap().to_string(), "synchronizer refuses");
    assert_eq!(journal.calls_of("a"), [Abort]);
    assert_eq!(manager.get().unwrap().status(), Status::CommitFailed);
    // The synchronizer refuses again in abort(): the abort completes and says so.
    let err = manager.abort().unwrap_err();
    assert_eq!(err.phase(), Some(Phase::BeforeCompletion));
    assert_eq!(journal.calls_of("a"), [Abort, Abort]);
    assert!(manager.current().is_none());
}

#[test]
fn synchronizers_hear_of_new_transactions_and_of_every_completion() {
    let events = Events::default();
    let manager = TransactionManager::new();
    let id = manager.register_synchronizer(Rc::new(RecordingSynchronizer {
        events: events.clone(),
        fail_before: false,
    }));

    manager.begin().unwrap();
    manager.commit().unwrap();
    assert_eq!(
        events.take(),
        [
            "new_transaction",
            "before_completion active",
            "after_completion committed"
        ]
    );

    manager.get().unwrap(); // an implicit begin is not announced
    manager.abort().unwrap();
    assert_eq!(
        events.take(),
        ["before_completion active", "after_completion aborted"]
    );

    assert!(manager.unregister_synchronizer(id));
    assert!(!manager.unregister_synchronizer(id));
    manager.begin().unwrap();
    manager.commit().unwrap();
    assert!(
        events.take().is_empty(),
        "an unregistered synchronizer hears nothing"
    );
}

#[test]
fn after_commit_hooks_are_told_whether_the_commit_succeeded() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let told = Rc::new(RefCell::new(Vec::new()));

    let t = told.clone();
    manager.get().unwrap().add_after_commit_hook(move |_, ok| {
        t.borrow_mut().push(ok);
        Ok(())
    });
    manager.commit().unwrap();

    let t = told.clone();
    let txn = manager.get().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal).fail_on(TpcVote))
        .unwrap();
    txn.add_after_commit_hook(move |_, ok| {
        t.borrow_mut().push(ok);
        Ok(())
    });
    manager.commit().unwrap_err();
    manager.abort().unwrap();

    let t = told.clone();
    let txn = manager.get().unwrap();
    txn.add_after_commit_hook(move |_, ok| {
        t.borrow_mut().push(ok);
        Ok(())
    });
    manager.abort().unwrap(); // an aborted transaction runs no after-commit hook

    assert_eq!(*told.borrow(), [true, false]);
}

#[test]
fn abort_hooks_run_before_and_after_the_resources_abort() {
    let events = Events::default();
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(traced("a", Kind::TwoPhase, &journal, &events))
        .unwrap();
    let e = events.clone();
    txn.add_before_abort_hook(move |t| {
        e.push(format!("before-abort {}", t.status()));
        Ok(())
    });
    let e = events.clone();
    txn.add_after_abort_hook(move |t| {
        e.push(format!("after-abort {}", t.status()));
        Ok(())
    });
    manager.abort().unwrap();
    assert_eq!(
        events.take(),
        ["before-abort active", "a Abort", "after-abort aborted"]
    );
}

// ---------------------------------------------------------------------------------------
// 2. A failure before the decision rolls everything back; only abort() is accepted after

#[test]
fn failure_before_decision_aborts_every_resource_and_fails_the_transaction() {
    let journal = Journal::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal).fail_on(TpcVote);
    let c = ScriptedDataManager::new("c", Kind::TwoPhase, &journal);
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    for r in [&c, &b, &a] {
        txn.join(r.clone()).unwrap();
    }

    let err = manager.commit().unwrap_err();

    assert_eq!(err.resource(), Some("b"));
    assert_eq!(err.phase(), Some(Phase::Vote));
    assert!(!err.is_heuristic());
    // a voted: no abort, only tpc_abort; b (failed) and c did not vote: abort, then
    // tpc_abort on all three, which all saw tpc_begin.
    assert_eq!(journal.calls_of("a"), [TpcBegin, Commit, TpcVote, TpcAbort]);
    assert_eq!(
        journal.calls_of("b"),
        [TpcBegin, Commit, TpcVote, Abort, TpcAbort]
    );
    assert_eq!(journal.calls_of("c"), [TpcBegin, Commit, Abort, TpcAbort]);
    assert_eq!(txn.status(), Status::CommitFailed);
    assert!(!a.committed() && !b.committed() && !c.committed());
}

#[test]
fn tpc_begin_failure_tpc_aborts_the_failing_resource_and_those_before_it() {
    let journal = Journal::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal).fail_on(TpcBegin);
    let c = ScriptedDataManager::new("c", Kind::TwoPhase, &journal);
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    for r in [&a, &b, &c] {
        txn.join(r.clone()).unwrap();
    }
    let err = manager.commit().unwrap_err();
    assert_eq!(
        (err.phase(), err.resource()),
        (Some(Phase::TpcBegin), Some("b"))
    );
    assert_eq!(journal.calls_of("a"), [TpcBegin, Abort, TpcAbort]);
    assert_eq!(journal.calls_of("b"), [TpcBegin, Abort, TpcAbort]);
    assert_eq!(journal.calls_of("c"), [Abort]);
    manager.abort().unwrap();
}

#[test]
fn errors_carry_the_resource_sort_key_the_phase_and_the_cause_as_source() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    manager
        .get()
        .unwrap()
        .join(ScriptedDataManager::new("orders-db", Kind::TwoPhase, &journal).fail_on(Commit))
        .unwrap();
    let err = manager.commit().unwrap_err();
    match &err {
        Error::Resource {
            phase,
            resource,
            source,
        } => {
            assert_eq!(*phase, Phase::Commit);
            assert_eq!(resource, "orders-db");
            assert!(!source.is_transient());
        }
        other => panic!("expected a resource error, got {other:?}"),
    }
    assert_eq!(
        scripted_cause(&err),
        Some(ScriptedFailure {
            resource: "orders-db".into(),
            call: Commit
        })
    );
    let message = err.to_string();
    assert!(
        message.contains("orders-db") && message.contains("commit"),
        "{message}"
    );
    assert_eq!(
        err.source().unwrap().to_string(),
        "scripted failure of Commit in orders-db",
        "the resource's error is the source, not repeated in the message"
    );
    manager.abort().unwrap();
}

#[test]
fn failed_transaction_refuses_everything_but_abort_and_abort_clears_it() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal).fail_on(TpcVote))
        .unwrap();
    manager.commit().unwrap_err();

    let other = ScriptedDataManager::new("b", Kind::TwoPhase, &journal);
    assert!(matches!(txn.commit(), Err(Error::TransactionFailed)));
    assert!(matches!(manager.commit(), Err(Error::TransactionFailed)));
    assert!(matches!(
        txn.join(other.clone()),
        Err(Error::TransactionFailed)
    ));
    assert!(matches!(
        txn.savepoint(false),
        Err(Error::TransactionFailed)
    ));
    assert!(matches!(txn.savepoint(true), Err(Error::TransactionFailed)));
    assert!(matches!(txn.doom(), Err(Error::TransactionFailed)));
    assert!(matches!(txn.note("more"), Err(Error::TransactionFailed)));
    assert!(!txn.has_joined(&as_dyn(&other)));
    assert!(
        manager.current().unwrap().ptr_eq(&txn),
        "still current until aborted"
    );

    manager.abort().unwrap();
    assert_eq!(txn.status(), Status::Aborted);
    let next = manager.get().unwrap();
    assert!(!next.ptr_eq(&txn));
    assert_eq!(next.status(), Status::Active);
    next.join(other).unwrap();
    manager.commit().unwrap();
}

#[test]
fn cleanup_errors_are_logged_and_never_hide_the_first_error() {
    let journal = Journal::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal).fail_on(TpcAbort);
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal)
        .fail_on(Commit)
        .fail_on(Abort);
    let c = ScriptedDataManager::new("c", Kind::TwoPhase, &journal).fail_on(Abort);
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    for r in [&a, &b, &c] {
        txn.join(r.clone()).unwrap();
    }

    let (result, logs) = Logs::capture(|| manager.commit());

    let err = result.unwrap_err();
    assert_eq!(
        (err.phase(), err.resource()),
        (Some(Phase::Commit), Some("b"))
    );
    assert_eq!(scripted_cause(&err).map(|f| f.call), Some(Commit));
    // Every cleanup call was still made, failures or not.
    assert_eq!(journal.calls_of("a"), [TpcBegin, Commit, Abort, TpcAbort]);
    assert_eq!(journal.calls_of("b"), [TpcBegin, Commit, Abort, TpcAbort]);
    assert_eq!(journal.calls_of("c"), [TpcBegin, Abort, TpcAbort]);
    let errors: Vec<_> = logs
        .at(Level::ERROR)
        .into_iter()
        .map(|r| {
            (
                r.field("resource").unwrap_or("").to_owned(),
                r.field("error").unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("b".to_owned(), "scripted failure of Abort in b".to_owned()),
            ("c".to_owned(), "scripted failure of Abort in c".to_owned()),
            (
                "a".to_owned(),
                "scripted failure of TpcAbort in a".to_owned()
            ),
        ]
    );
    // abort() asks every joined resource once more: b's failure is the first again.
    let err = manager.abort().unwrap_err();
    assert_eq!(
        (err.phase(), err.resource()),
        (Some(Phase::Abort), Some("b"))
    );
    assert_eq!(txn.status(), Status::Aborted);
}

#[test]
fn explicit_abort_asks_every_resource_and_reports_the_first_failure() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    for r in [
        ScriptedDataManager::new("a", Kind::TwoPhase, &journal),
        ScriptedDataManager::new("b", Kind::TwoPhase, &journal).fail_on(Abort),
        ScriptedDataManager::new("c", Kind::TwoPhase, &journal).fail_on(Abort),
    ] {
        txn.join(r).unwrap();
    }
    let (result, logs) = Logs::capture(|| manager.abort());
    let err = result.unwrap_err();
    assert_eq!(
        (err.phase(), err.resource()),
        (Some(Phase::Abort), Some("b"))
    );
    assert!(!err.is_transient());
    assert_eq!(journal.calls().len(), 3, "every resource is asked to abort");
    assert_eq!(logs.at(Level::ERROR).len(), 2, "each failure is logged");
    assert_eq!(
        txn.status(),
        Status::Aborted,
        "the transaction ends regardless"
    );
    assert!(manager.current().is_none());
}

// ---------------------------------------------------------------------------------------
// 3. tpc_finish failure after the decision: a heuristic outcome, never swallowed

#[test]
fn finish_failure_is_a_heuristic_outcome_listing_who_committed() {
    let journal = Journal::new();
    let log = Rc::new(MemoryDecisionLog::new());
    let manager = TransactionManager::builder()
        .decision_log(log.clone())
        .build();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal).fail_on(TpcFinish);
    let c = ScriptedDataManager::new("c", Kind::TwoPhase, &journal);
    let r = ScriptedDataManager::new("r", Kind::ReadOnly, &journal);
    let txn = manager.begin().unwrap();
    for res in [&c, &r, &b, &a] {
        txn.join(res.clone()).unwrap();
    }

    let (result, logs) = Logs::capture(|| manager.commit());

    let err = result.unwrap_err();
    assert!(err.is_heuristic());
    assert!(!err.is_transient());
    assert_eq!(err.phase(), Some(Phase::Finish));
    let Error::Heuristic(h) = &err else {
        panic!("expected a heuristic outcome, got {err:?}")
    };
    assert_eq!(h.transaction(), txn.id());
    assert_eq!(h.committed(), ["a", "c"], "read-only r committed nothing");
    let failed: Vec<_> = h
        .failed()
        .iter()
        .map(|(k, e)| (k.as_str(), e.to_string()))
        .collect();
    assert_eq!(
        failed,
        [("b", "scripted failure of TpcFinish in b".to_owned())]
    );
    assert_eq!(
        scripted_cause(&err).map(|f| f.resource),
        Some("b".to_owned())
    );
    // c still got its tpc_finish after b failed, and nobody was rolled back.
    assert_eq!(
        journal.calls_of("c"),
        [TpcBegin, Commit, TpcVote, TpcFinish]
    );
    assert_eq!(journal.calls_of("r"), [TpcBegin, Commit, TpcVote]);
    assert!(a.committed() && !b.committed() && c.committed());
    let message = err.to_string();
    assert!(
        message.contains("committed [a, c]") && message.contains("b: "),
        "{message}"
    );
    // Logged at error level: the failing finish and the outcome itself.
    let errors = logs.at(Level::ERROR);
    assert!(errors.iter().any(|e| e.field("resource") == Some("b")));
    assert!(errors.iter().any(|e| e.message.contains("heuristic")));
    // The decision stays in the log: b's branch is in doubt.
    assert_eq!(log.pending().len(), 1);
    assert_eq!(txn.status(), Status::CommitFailed);
    manager.abort().unwrap();
}

// ---------------------------------------------------------------------------------------
// 4. One-phase resources vote last; at most one per transaction unless the risk is accepted

#[test]
fn one_phase_resource_votes_after_every_two_phase_resource() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    let sqlite = ScriptedDataManager::new("a-sqlite", Kind::OnePhase, &journal);
    let pg = ScriptedDataManager::new("z-postgres", Kind::TwoPhase, &journal);
    txn.join(sqlite.clone()).unwrap();
    txn.join(pg.clone()).unwrap();
    manager.commit().unwrap();
    let votes: Vec<_> = journal
        .calls()
        .into_iter()
        .filter(|(_, c)| *c == TpcVote)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(votes, ["z-postgres", "a-sqlite"]);
    assert_eq!(
        journal.calls_of("a-sqlite"),
        [TpcBegin, Commit, TpcVote],
        "no phase 2"
    );
    assert!(sqlite.committed() && pg.committed());
}

#[test]
fn second_one_phase_resource_fails_commit_before_anything_commits() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    let pg = ScriptedDataManager::new("pg", Kind::TwoPhase, &journal);
    let one = ScriptedDataManager::new("sqlite-1", Kind::OnePhase, &journal);
    let two = ScriptedDataManager::new("sqlite-2", Kind::OnePhase, &journal);
    for r in [&two, &pg, &one] {
        txn.join(r.clone()).unwrap();
    }

    let err = manager.commit().unwrap_err();

    match &err {
        Error::TooManyOnePhase { resources } => assert_eq!(resources, &["sqlite-1", "sqlite-2"]),
        other => panic!("expected TooManyOnePhase, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("one phase") && message.contains("partially"),
        "{message}"
    );
    // Nothing began: every resource was only aborted.
    assert_eq!(
        journal.calls(),
        [
            ("pg".into(), Abort),
            ("sqlite-1".into(), Abort),
            ("sqlite-2".into(), Abort)
        ]
    );
    assert!(!pg.committed() && !one.committed() && !two.committed());
    assert_eq!(txn.status(), Status::CommitFailed);
    manager.abort().unwrap();
}

/// On purpose even without a two-phase resource: two one-phase
/// resources could commit one and not the other.
#[test]
fn two_one_phase_resources_fail_even_without_a_two_phase_resource() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("x", Kind::OnePhase, &journal))
        .unwrap();
    txn.join(ScriptedDataManager::new("y", Kind::OnePhase, &journal))
        .unwrap();
    assert!(matches!(
        manager.commit(),
        Err(Error::TooManyOnePhase { .. })
    ));
    manager.abort().unwrap();
}

#[test]
fn accepting_the_risk_commits_several_one_phase_resources_with_a_warning() {
    let journal = Journal::new();
    let manager = TransactionManager::builder()
        .allow_multiple_one_phase(true)
        .build();
    let x = ScriptedDataManager::new("x", Kind::OnePhase, &journal);
    let y = ScriptedDataManager::new("y", Kind::OnePhase, &journal);
    let txn = manager.begin().unwrap();
    txn.join(x.clone()).unwrap();
    txn.join(y.clone()).unwrap();

    let (result, logs) = Logs::capture(|| manager.commit());

    result.unwrap();
    assert!(x.committed() && y.committed());
    let warnings = logs.at(Level::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].message.contains("one-phase"), "{warnings:?}");
    assert!(warnings[0].field("resources").unwrap().contains('x'));
}

#[test]
fn accepted_risk_that_materialises_is_reported_as_heuristic() {
    let journal = Journal::new();
    let manager = TransactionManager::builder()
        .allow_multiple_one_phase(true)
        .build();
    let x = ScriptedDataManager::new("x", Kind::OnePhase, &journal);
    let y = ScriptedDataManager::new("y", Kind::OnePhase, &journal).fail_on(TpcVote);
    let txn = manager.begin().unwrap();
    txn.join(x.clone()).unwrap();
    txn.join(y.clone()).unwrap();
    let err = manager.commit().unwrap_err();
    let Error::Heuristic(h) = &err else {
        panic!("expected a heuristic outcome, got {err:?}")
    };
    assert_eq!(h.committed(), ["x"]);
    assert_eq!(h.failed()[0].0, "y");
    assert!(x.committed() && !y.committed());
    manager.abort().unwrap();
}

// ---------------------------------------------------------------------------------------
// 5. One resource with work commits in one phase; read-only voters get no phase 2

#[test]
fn single_resource_with_work_commits_in_one_phase() {
    let journal = Journal::new();
    let log = Rc::new(MemoryDecisionLog::new());
    let manager = TransactionManager::builder()
        .decision_log(log.clone())
        .build();
    let pg = ScriptedDataManager::new("pg", Kind::TwoPhase, &journal).with_one_phase_commit();
    manager.get().unwrap().join(pg.clone()).unwrap();
    manager.commit().unwrap();
    assert_eq!(journal.calls_of("pg"), [TpcBegin, Commit, CommitOnePhase]);
    assert!(pg.committed());
    assert!(
        log.pending().is_empty() && log.forgotten().is_empty(),
        "nothing prepared"
    );
}

#[test]
fn resource_after_read_only_voters_commits_in_one_phase() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    let reader = ScriptedDataManager::new("a-reader", Kind::ReadOnly, &journal);
    let writer =
        ScriptedDataManager::new("b-writer", Kind::TwoPhase, &journal).with_one_phase_commit();
    txn.join(writer.clone()).unwrap();
    txn.join(reader.clone()).unwrap();
    manager.commit().unwrap();
    assert_eq!(journal.calls_of("a-reader"), [TpcBegin, Commit, TpcVote]);
    assert_eq!(
        journal.calls_of("b-writer"),
        [TpcBegin, Commit, CommitOnePhase]
    );
    assert!(writer.committed() && !reader.committed());
}

#[test]
fn read_only_voters_get_no_second_phase() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))
        .unwrap();
    txn.join(ScriptedDataManager::new("b", Kind::ReadOnly, &journal))
        .unwrap();
    manager.commit().unwrap();
    assert_eq!(
        journal.calls_of("a"),
        [TpcBegin, Commit, TpcVote, TpcFinish]
    );
    assert_eq!(journal.calls_of("b"), [TpcBegin, Commit, TpcVote]);
}

#[test]
fn resource_without_one_phase_support_is_prepared_even_when_alone() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    manager
        .get()
        .unwrap()
        .join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))
        .unwrap();
    manager.commit().unwrap();
    assert_eq!(
        journal.calls_of("a"),
        [TpcBegin, Commit, TpcVote, TpcFinish]
    );
}

#[test]
fn two_resources_with_work_never_commit_in_one_phase() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    for key in ["a", "b"] {
        txn.join(ScriptedDataManager::new(key, Kind::TwoPhase, &journal).with_one_phase_commit())
            .unwrap();
    }
    manager.commit().unwrap();
    assert!(journal.calls().iter().all(|(_, c)| *c != CommitOnePhase));
}

#[test]
fn one_phase_commit_is_not_used_next_to_a_one_phase_resource() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("pg", Kind::TwoPhase, &journal).with_one_phase_commit())
        .unwrap();
    txn.join(ScriptedDataManager::new("sqlite", Kind::OnePhase, &journal))
        .unwrap();
    manager.commit().unwrap();
    assert_eq!(
        journal.calls_of("pg"),
        [TpcBegin, Commit, TpcVote, TpcFinish]
    );
}

// ---------------------------------------------------------------------------------------
// 6. Doom

#[test]
fn doomed_transaction_cannot_commit_but_can_abort() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let txn = manager.begin().unwrap();
    txn.join(a.clone()).unwrap();
    let hook_ran = Rc::new(Cell::new(false));
    let h = hook_ran.clone();
    txn.add_before_commit_hook(move |_| {
        h.set(true);
        Ok(())
    });
    manager.doom().unwrap();
    assert!(manager.is_doomed().unwrap() && txn.is_doomed());

    let err = manager.commit().unwrap_err();
    assert!(matches!(err, Error::Doomed), "{err:?}");
    assert!(err.to_string().contains("doomed"));
    assert!(journal.calls().is_empty(), "nothing changed");
    assert!(!hook_ran.get(), "no hook ran");
    assert_eq!(txn.status(), Status::Doomed);
    assert!(
        matches!(manager.commit(), Err(Error::Doomed)),
        "doom is sticky"
    );

    manager.abort().unwrap();
    assert_eq!(journal.calls_of("a"), [Abort]);
    assert_eq!(txn.status(), Status::Aborted);
    assert!(
        !manager.is_doomed().unwrap(),
        "the next transaction is not doomed"
    );
    manager.commit().unwrap();
}

#[test]
fn doom_lasts_until_the_transaction_ends() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.doom().unwrap();
    txn.doom().unwrap(); // dooming twice is fine
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal).with_savepoints())
        .unwrap();
    txn.note("still usable").unwrap();
    let sp = txn.savepoint(false).unwrap();
    sp.rollback().unwrap();
    assert_eq!(txn.status(), Status::Doomed);
    txn.abort().unwrap();
    assert!(matches!(
        txn.doom(),
        Err(Error::InvalidState {
            operation: "doom",
            ..
        })
    ));
}

#[test]
fn before_commit_hook_that_dooms_stops_the_commit_before_any_resource() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))
        .unwrap();
    txn.add_before_commit_hook(|t| {
        t.doom()?;
        Ok(())
    });
    assert!(matches!(manager.commit(), Err(Error::Doomed)));
    assert!(journal.calls().is_empty());
    manager.abort().unwrap();
}

// ---------------------------------------------------------------------------------------
// 7. Savepoints

#[test]
fn savepoint_asks_every_joined_resource_and_fails_if_one_cannot() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal).with_savepoints())
        .unwrap();
    txn.join(ScriptedDataManager::new("b", Kind::TwoPhase, &journal).with_savepoints())
        .unwrap();
    let sp = txn.savepoint(false).unwrap();
    assert_eq!(
        journal.calls(),
        [("a".into(), Call::Savepoint), ("b".into(), Call::Savepoint)]
    );
    assert!(sp.is_valid() && sp.transaction().ptr_eq(&txn));

    txn.join(ScriptedDataManager::new("plain", Kind::TwoPhase, &journal))
        .unwrap();
    let err = txn.savepoint(false).unwrap_err();
    assert!(matches!(&err, Error::SavepointNotSupported { resource } if resource == "plain"));
    assert_eq!(err.resource(), Some("plain"));
    assert_eq!(
        txn.status(),
        Status::Active,
        "a refused savepoint changes nothing"
    );
    manager.abort().unwrap();
}

#[test]
fn savepoint_failure_in_a_resource_names_it_and_leaves_the_transaction_usable() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(
        ScriptedDataManager::new("a", Kind::TwoPhase, &journal)
            .with_savepoints()
            .fail_on(Call::Savepoint),
    )
    .unwrap();
    let err = txn.savepoint(false).unwrap_err();
    assert_eq!(
        (err.phase(), err.resource()),
        (Some(Phase::Savepoint), Some("a"))
    );
    assert_eq!(txn.status(), Status::Active);
    manager.commit().unwrap();
}

#[test]
fn optimistic_savepoint_accepts_resources_without_support_and_fails_only_on_rollback() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("plain", Kind::TwoPhase, &journal))
        .unwrap();
    let sp = txn.savepoint(true).unwrap();
    assert_eq!(txn.status(), Status::Active);

    let err = sp.rollback().unwrap_err();
    assert!(matches!(&err, Error::SavepointNotSupported { resource } if resource == "plain"));
    assert_eq!(
        txn.status(),
        Status::CommitFailed,
        "resources may now disagree"
    );
    assert!(!sp.is_valid());
    assert!(matches!(manager.commit(), Err(Error::TransactionFailed)));
    manager.abort().unwrap();
}

#[test]
fn savepoint_rollback_restores_resources_and_aborts_late_joiners() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    let early = ScriptedDataManager::new("early", Kind::TwoPhase, &journal).with_savepoints();
    txn.join(early.clone()).unwrap();
    let sp = txn.savepoint(false).unwrap();
    let late = ScriptedDataManager::new("late", Kind::TwoPhase, &journal).with_savepoints();
    txn.join(late.clone()).unwrap();
    journal.clear();

    sp.rollback().unwrap();

    assert_eq!(
        journal.calls(),
        [
            ("early".into(), Call::SavepointRollback),
            ("late".into(), Abort)
        ]
    );
    assert!(txn.has_joined(&as_dyn(&early)));
    assert!(
        !txn.has_joined(&as_dyn(&late)),
        "late joiners leave the transaction"
    );
    assert!(sp.is_valid(), "a savepoint can be rolled back to again");
    sp.rollback().unwrap();

    journal.clear();
    manager.commit().unwrap();
    assert_eq!(
        journal.calls_of("late"),
        [],
        "an aborted late joiner is not committed"
    );
    assert!(early.committed() && !late.committed());
}

/// A resource that joins while the savepoint is being taken has no state in it: rolling
/// back cannot restore it, so it is treated as a late joiner and aborted.
#[test]
fn resource_joined_while_taking_a_savepoint_is_aborted_on_rollback() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal).with_savepoints();
    let during = ScriptedDataManager::new("during", Kind::TwoPhase, &journal).with_savepoints();
    let joined = during.clone();
    a.on_call(move |call, txn| {
        if call == Call::Savepoint {
            txn.join(joined.clone()).unwrap();
        }
    });
    txn.join(a).unwrap();
    let sp = txn.savepoint(false).unwrap();
    assert!(txn.has_joined(&as_dyn(&during)));
    sp.rollback().unwrap();
    assert_eq!(journal.calls_of("during"), [Abort]);
    assert!(!txn.has_joined(&as_dyn(&during)));
    manager.abort().unwrap();
}

#[test]
fn rolling_back_invalidates_later_savepoints_only() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal).with_savepoints())
        .unwrap();
    let first = txn.savepoint(false).unwrap();
    let second = txn.savepoint(false).unwrap();
    let third = txn.savepoint(false).unwrap();
    second.rollback().unwrap();
    assert!(first.is_valid() && second.is_valid());
    assert!(!third.is_valid());
    assert!(matches!(third.rollback(), Err(Error::InvalidSavepoint)));
    first.rollback().unwrap();
    assert!(!second.is_valid());
    manager.abort().unwrap();
}

#[test]
fn commit_and_abort_invalidate_every_savepoint() {
    let manager = TransactionManager::new();
    let committed = manager.begin().unwrap().savepoint(false).unwrap();
    manager.commit().unwrap();
    let aborted = manager.begin().unwrap().savepoint(true).unwrap();
    manager.abort().unwrap();
    for sp in [committed, aborted] {
        assert!(!sp.is_valid());
        assert!(matches!(sp.rollback(), Err(Error::InvalidSavepoint)));
    }
}

#[test]
fn failed_commit_invalidates_every_savepoint() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(
        ScriptedDataManager::new("a", Kind::TwoPhase, &journal)
            .with_savepoints()
            .fail_on(TpcVote),
    )
    .unwrap();
    let sp = txn.savepoint(false).unwrap();
    manager.commit().unwrap_err();
    assert!(matches!(sp.rollback(), Err(Error::InvalidSavepoint)));
    manager.abort().unwrap();
}

#[test]
fn savepoint_rollback_failure_leaves_only_abort() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal)
        .with_savepoints()
        .fail_on(Call::SavepointRollback);
    txn.join(a).unwrap();
    let sp = txn.savepoint(false).unwrap();
    let late = ScriptedDataManager::new("late", Kind::TwoPhase, &journal);
    txn.join(late).unwrap();
    let err = sp.rollback().unwrap_err();
    assert_eq!(
        (err.phase(), err.resource()),
        (Some(Phase::SavepointRollback), Some("a"))
    );
    assert!(!err.is_transient());
    assert_eq!(
        journal.calls_of("late"),
        [Abort],
        "late joiners are aborted anyway"
    );
    assert_eq!(txn.status(), Status::CommitFailed);
    assert!(matches!(
        txn.join(ScriptedDataManager::new("x", Kind::ReadOnly, &journal)),
        Err(Error::TransactionFailed)
    ));
    manager.abort().unwrap();
}

// ---------------------------------------------------------------------------------------
// 8. Retry

/// An application error that converts from the coordinator's and says when to retry.
#[derive(Debug)]
enum AppError {
    Conflict,
    Invalid,
    Txn(Error),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Txn(e)
    }
}

impl Transient for AppError {
    fn is_transient(&self) -> bool {
        match self {
            AppError::Conflict => true,
            AppError::Invalid => false,
            AppError::Txn(e) => e.is_transient(),
        }
    }
}

#[test]
fn run_retries_only_transient_errors() {
    let manager = TransactionManager::new();

    let mut ids = Vec::new();
    let value = manager.run(3, |txn| {
        ids.push(txn.id());
        if ids.len() < 3 {
            Err(AppError::Conflict)
        } else {
            Ok("done")
        }
    });
    assert_eq!(value.unwrap(), "done");
    assert_eq!(ids.len(), 3);
    ids.dedup();
    assert_eq!(ids.len(), 3, "each attempt runs in a fresh transaction");

    let mut calls = 0;
    let result: Result<(), _> = manager.run(5, |_| {
        calls += 1;
        Err(AppError::Invalid)
    });
    assert!(matches!(result, Err(AppError::Invalid)));
    assert_eq!(calls, 1, "a permanent error returns at once");

    let mut calls = 0;
    let result: Result<(), _> = manager.run(4, |_| {
        calls += 1;
        Err(AppError::Conflict)
    });
    assert!(matches!(result, Err(AppError::Conflict)));
    assert_eq!(calls, 4, "gives up after the last attempt");
    assert!(manager.current().is_none(), "failed attempts are aborted");
}

#[test]
fn run_retries_a_transient_commit_failure_in_a_fresh_transaction() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let resources = RefCell::new(Vec::new());
    let value = manager.run(3, |txn| {
        let attempt = resources.borrow().len();
        let mut r = ScriptedDataManager::new(&format!("db{attempt}"), Kind::TwoPhase, &journal);
        if attempt == 0 {
            r = r.fail_on(TpcVote).transient();
        }
        txn.join(r.clone())?;
        resources.borrow_mut().push(r);
        Ok::<_, Error>(attempt)
    });
    assert_eq!(value.unwrap(), 1);
    let resources = resources.into_inner();
    assert!(!resources[0].committed() && resources[1].committed());
    assert_eq!(
        journal.calls_of("db0"),
        [TpcBegin, Commit, TpcVote, Abort, TpcAbort, Abort],
        "rolled back by the failed commit, then aborted by run()"
    );

    let mut calls = 0;
    let err = manager
        .run(3, |txn| {
            calls += 1;
            txn.join(ScriptedDataManager::new("db", Kind::TwoPhase, &journal).fail_on(TpcVote))?;
            Ok::<_, Error>(())
        })
        .unwrap_err();
    assert_eq!(calls, 1, "a permanent commit failure is not retried");
    assert_eq!(err.phase(), Some(Phase::Vote));
}

#[test]
fn only_pre_decision_resource_failures_are_transient() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let fail = |call| {
        manager
            .get()
            .unwrap()
            .join(
                ScriptedDataManager::new("a", Kind::TwoPhase, &journal)
                    .fail_on(call)
                    .transient(),
            )
            .unwrap();
        let err = manager.commit().unwrap_err();
        manager.abort().unwrap();
        err
    };
    assert!(fail(TpcVote).is_transient());
    assert!(fail(TpcBegin).is_transient());
    let heuristic = fail(TpcFinish);
    assert!(
        heuristic.is_heuristic() && !heuristic.is_transient(),
        "something committed"
    );
    assert!(!Error::Doomed.is_transient());
}

#[test]
fn run_aborts_instead_of_committing_when_the_work_dooms_the_transaction() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let value = manager.run(2, |txn| {
        txn.join(a.clone())?;
        txn.doom()?;
        Ok::<_, Error>(7)
    });
    assert_eq!(value.unwrap(), 7);
    assert_eq!(journal.calls_of("a"), [Abort]);
}

#[test]
fn free_run_uses_the_current_manager() {
    let mine = TransactionManager::new();
    let ran_in_mine = mine.scope(|| {
        transaction::run(1, |txn| {
            Ok::<_, Error>(mine.current().is_some_and(|c| c.ptr_eq(txn)))
        })
    });
    assert!(ran_in_mine.unwrap());
    assert!(mine.current().is_none(), "committed and forgotten");
}

// ---------------------------------------------------------------------------------------
// 9. Re-entrancy: call-outs may call back into the manager

#[test]
fn data_manager_may_call_back_into_the_manager_in_every_phase() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let seen = Rc::new(RefCell::new(Vec::new()));

    let reenter = |r: &Rc<ScriptedDataManager>| {
        let (m, seen, journal) = (manager.clone(), seen.clone(), journal.clone());
        r.on_call(move |call, txn| {
            // get, status, note and join must neither panic nor deadlock.
            let current = m.current().map(|c| c.ptr_eq(txn));
            let _ = m.get().unwrap().description();
            let note = txn.note("called back");
            let join = txn.join(ScriptedDataManager::new("extra", Kind::ReadOnly, &journal));
            seen.borrow_mut()
                .push((call, txn.status(), current, note.is_ok(), join.is_ok()));
        });
    };

    // A successful commit through every phase, and a one-phase commit.
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal).with_savepoints();
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal).with_savepoints();
    reenter(&a);
    reenter(&b);
    let txn = manager.begin().unwrap();
    txn.join(a.clone()).unwrap();
    txn.join(b.clone()).unwrap();
    let sp = txn.savepoint(false).unwrap();
    sp.rollback().unwrap();
    manager.commit().unwrap();
    assert!(a.committed() && b.committed());
    assert!(
        txn.description().contains("called back"),
        "notes are allowed while committing"
    );

    // A failing commit: abort and tpc_abort call back too.
    let c = ScriptedDataManager::new("c", Kind::TwoPhase, &journal).fail_on(TpcVote);
    let d = ScriptedDataManager::new("d", Kind::TwoPhase, &journal).with_one_phase_commit();
    reenter(&c);
    reenter(&d);
    let txn = manager.begin().unwrap();
    txn.join(c.clone()).unwrap();
    txn.join(d.clone()).unwrap();
    manager.commit().unwrap_err();
    manager.abort().unwrap();

    // One-phase commit and an explicit abort.
    let e = ScriptedDataManager::new("e", Kind::TwoPhase, &journal).with_one_phase_commit();
    reenter(&e);
    manager.get().unwrap().join(e.clone()).unwrap();
    manager.commit().unwrap();
    let f = ScriptedDataManager::new("f", Kind::TwoPhase, &journal);
    reenter(&f);
    manager.get().unwrap().join(f.clone()).unwrap();
    manager.abort().unwrap();

    let calls: std::collections::HashSet<_> = seen.borrow().iter().map(|s| s.0).collect();
    for call in [
        TpcBegin,
        Commit,
        TpcVote,
        CommitOnePhase,
        TpcFinish,
        TpcAbort,
        Abort,
        Call::Savepoint,
    ] {
        assert!(calls.contains(&call), "no call-back during {call:?}");
    }
    for (call, status, current, note_ok, _) in seen.borrow().iter() {
        assert_eq!(
            *current,
            Some(true),
            "{call:?}: the transaction is still current"
        );
        if *status == Status::Committing {
            assert!(note_ok, "{call:?}: note works while committing");
        }
    }
}

#[test]
fn hooks_and_synchronizers_may_call_back_into_the_manager() {
    struct Joiner {
        manager: TransactionManager,
        resource: Rc<ScriptedDataManager>,
    }
    impl Synchronizer for Joiner {
        fn before_completion(&self, txn: &Transaction) -> Result<(), BoxError> {
            assert!(self.manager.get()?.ptr_eq(txn));
            if txn.status() == Status::Active {
                txn.join(self.resource.clone())?;
            }
            Ok(())
        }
        fn after_completion(&self, txn: &Transaction) {
            let _ = self.manager.current();
            let _ = txn.note("after");
        }
        fn new_transaction(&self, txn: &Transaction) {
            txn.note("new").unwrap();
            assert!(self.manager.current().unwrap().ptr_eq(txn));
        }
    }
    let journal = Journal::new();
    // The synchronizer holds the manager: a cycle, leaked for the test's duration.
    let manager = TransactionManager::new();
    let synced = ScriptedDataManager::new("synced", Kind::TwoPhase, &journal);
    manager.register_synchronizer(Rc::new(Joiner {
        manager: manager.clone(),
        resource: synced.clone(),
    }));
    let txn = manager.begin().unwrap();
    let m = manager.clone();
    txn.add_after_commit_hook(move |t, ok| {
        assert!(ok);
        let _ = m.get().unwrap();
        let _ = t.note("too late");
        Ok(())
    });
    manager.commit().unwrap();
    assert!(
        synced.committed(),
        "a resource joined by a synchronizer is committed"
    );
    assert_eq!(txn.description(), "new");
}

#[test]
fn resource_joined_while_aborting_is_aborted_too() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let joined_late = ScriptedDataManager::new("joined-late", Kind::TwoPhase, &journal);
    let late = joined_late.clone();
    a.on_call(move |call, txn| {
        if call == Abort {
            txn.join(late.clone()).unwrap();
        }
    });
    manager.get().unwrap().join(a).unwrap();
    manager.abort().unwrap();
    assert_eq!(journal.calls_of("joined-late"), [Abort]);
}

// ---------------------------------------------------------------------------------------
// 10. Thread confinement

/// Compile-time proof that the handles are `!Send` (the trybuild test shows the error).
#[test]
fn handles_are_not_send() {
    trait AmbiguousIfSend<A> {
        fn some_item() {}
    }
    impl<T: ?Sized> AmbiguousIfSend<()> for T {}
    #[allow(dead_code)]
    struct Invalid;
    impl<T: ?Sized + Send> AmbiguousIfSend<Invalid> for T {}
    // Each line is ambiguous, and fails to compile, if the type implements `Send`.
    let _ = <transaction::Transaction as AmbiguousIfSend<_>>::some_item;
    let _ = <transaction::TransactionManager as AmbiguousIfSend<_>>::some_item;
    let _ = <transaction::Savepoint as AmbiguousIfSend<_>>::some_item;
}

#[test]
fn transaction_is_invisible_to_other_threads() {
    let manager = transaction::manager();
    manager.abort().unwrap();
    let txn = transaction::begin().unwrap();
    txn.note("main thread").unwrap();
    let mine = TransactionManager::new();

    let (other_id, other_current, other_note) = mine.scope(|| {
        std::thread::spawn(|| {
            let current = transaction::manager().current().map(|t| t.id());
            let txn = transaction::get().unwrap();
            let note = txn.description();
            transaction::abort().unwrap();
            (txn.id(), current, note)
        })
        .join()
        .unwrap()
    });

    assert_eq!(other_current, None, "the other thread has no transaction");
    assert_ne!(other_id, txn.id());
    assert_eq!(
        other_note, "",
        "the other thread did not see this thread's note"
    );
    assert!(
        transaction::get().unwrap().ptr_eq(&txn),
        "this thread's is untouched"
    );
    transaction::abort().unwrap();
}

// ---------------------------------------------------------------------------------------
// 11. Nothing is committed implicitly: abandoned transactions are aborted with a warning

#[test]
fn thread_end_aborts_an_open_transaction_with_a_warning() {
    let logs = Logs::default();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (dispatch, thread_calls) = (logs.dispatch(), calls.clone());
    std::thread::spawn(move || {
        // Installed for the rest of the thread, thread-local destructors included: the
        // dispatcher's thread-local is set up before the default manager's, so it is
        // destroyed after it.
        std::mem::forget(tracing::dispatcher::set_default(&dispatch));
        let journal = Journal::new();
        let r = ScriptedDataManager::new("open", Kind::TwoPhase, &journal);
        r.on_call(move |call, _| thread_calls.lock().unwrap().push(call));
        transaction::get().unwrap().join(r).unwrap();
        // The thread ends with the transaction open.
    })
    .join()
    .unwrap();

    assert_eq!(*calls.lock().unwrap(), [Abort], "aborted, never committed");
    let warnings = logs.at(Level::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].message.contains("thread ended"), "{warnings:?}");
}

#[test]
fn dropping_the_last_manager_handle_aborts_its_open_transaction_with_a_warning() {
    let journal = Journal::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let ((), logs) = Logs::capture(|| {
        let manager = TransactionManager::new();
        let txn = manager.begin().unwrap();
        txn.join(a.clone()).unwrap();
        drop(txn); // a handle dropped: the manager still holds the transaction
        assert!(journal.calls().is_empty());
        drop(manager);
    });
    assert_eq!(journal.calls_of("a"), [Abort]);
    assert!(!a.committed());
    assert_eq!(logs.at(Level::WARN).len(), 1);
}

#[test]
fn implicit_begin_replaces_an_open_transaction_by_aborting_it() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let first = manager.begin().unwrap();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    first.join(a.clone()).unwrap();

    let (second, logs) = Logs::capture(|| manager.begin().unwrap());

    assert_eq!(first.status(), Status::Aborted);
    assert_eq!(journal.calls_of("a"), [Abort]);
    assert!(!second.ptr_eq(&first));
    assert!(manager.get().unwrap().ptr_eq(&second));
    let warnings = logs.at(Level::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].message.contains("begin()"), "{warnings:?}");
    manager.abort().unwrap();
}

// ---------------------------------------------------------------------------------------
// The manager: explicit mode, scopes, ended transactions

#[test]
fn explicit_mode_requires_begin_and_refuses_a_nested_begin() {
    let manager = TransactionManager::builder().explicit(true).build();
    assert!(manager.is_explicit());
    assert!(matches!(manager.get(), Err(Error::NoTransaction)));
    assert!(matches!(manager.commit(), Err(Error::NoTransaction)));
    assert!(matches!(manager.abort(), Err(Error::NoTransaction)));
    assert!(matches!(manager.doom(), Err(Error::NoTransaction)));
    assert!(matches!(
        manager.savepoint(false),
        Err(Error::NoTransaction)
    ));
    assert!(matches!(manager.is_doomed(), Err(Error::NoTransaction)));
    assert!(manager.current().is_none(), "nothing began implicitly");

    let txn = manager.begin().unwrap();
    assert!(matches!(manager.begin(), Err(Error::AlreadyInTransaction)));
    assert_eq!(
        txn.status(),
        Status::Active,
        "the open transaction is untouched"
    );
    assert!(manager.get().unwrap().ptr_eq(&txn));
    manager.commit().unwrap();
    assert!(matches!(manager.get(), Err(Error::NoTransaction)));
    manager.begin().unwrap();
    manager.abort().unwrap();
}

#[test]
fn implicit_mode_begins_on_get_and_abort_without_a_transaction_does_nothing() {
    let manager = TransactionManager::new();
    assert!(!manager.is_explicit());
    manager.abort().unwrap();
    assert!(manager.current().is_none());
    let txn = manager.get().unwrap();
    assert!(manager.get().unwrap().ptr_eq(&txn));
    manager.commit().unwrap();
}

#[test]
fn scoped_manager_nests_and_is_restored_after_a_panic() {
    let default = transaction::manager();
    let outer = TransactionManager::new();
    let inner = TransactionManager::new();

    outer.scope(|| {
        assert!(transaction::manager().ptr_eq(&outer));
        let txn = transaction::begin().unwrap();
        assert!(outer.current().unwrap().ptr_eq(&txn));
        inner.scope(|| {
            assert!(transaction::manager().ptr_eq(&inner));
            assert!(transaction::with_manager(|m| m.ptr_eq(&inner)));
            assert!(inner.current().is_none());
        });
        assert!(transaction::manager().ptr_eq(&outer));

        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inner.scope(|| panic!("boom"));
        }));
        assert!(panicked.is_err());
        assert!(
            transaction::manager().ptr_eq(&outer),
            "restored after a panic"
        );
        transaction::commit().unwrap();
    });
    assert!(transaction::manager().ptr_eq(&default));
    assert!(!default.ptr_eq(&outer));
}

#[test]
fn ended_transactions_refuse_further_work() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let committed = manager.begin().unwrap();
    manager.commit().unwrap();
    let r = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    assert!(matches!(
        committed.commit(),
        Err(Error::InvalidState {
            operation: "commit",
            status: Status::Committed
        })
    ));
    assert!(matches!(
        committed.join(r.clone()),
        Err(Error::InvalidState { .. })
    ));
    assert!(matches!(committed.abort(), Err(Error::InvalidState { .. })));
    assert!(matches!(
        committed.savepoint(true),
        Err(Error::InvalidState { .. })
    ));
    assert!(matches!(
        committed.note("x"),
        Err(Error::InvalidState { .. })
    ));

    let aborted = manager.begin().unwrap();
    manager.abort().unwrap();
    aborted.abort().unwrap(); // aborting twice does nothing
    assert!(matches!(aborted.commit(), Err(Error::InvalidState { .. })));
    assert!(journal.calls().is_empty());
}

#[test]
fn metadata_can_be_set_in_any_status() {
    struct RequestId(u32);
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.note("  first  ").unwrap();
    txn.note("").unwrap();
    txn.note("second").unwrap();
    assert_eq!(txn.description(), "first\nsecond");
    txn.set_user("alice", "/accounts");
    assert_eq!(txn.user(), "/accounts alice");
    txn.set_user("bob", "");
    assert_eq!(txn.user(), "bob");
    manager.commit().unwrap();
    // Metadata setters work after the end, for after-commit bookkeeping.
    txn.set_extension("request", "42");
    txn.set_data(RequestId(7));
    assert_eq!(txn.extension("request").as_deref(), Some("42"));
    assert_eq!(txn.extensions().len(), 1);
    assert_eq!(txn.data::<RequestId>().map(|r| r.0), Some(7));
    assert!(txn.data::<String>().is_none());
}

#[test]
fn transaction_ids_are_unique_and_name_resource_branches() {
    let journal = Journal::new();
    let log = Rc::new(MemoryDecisionLog::new());
    let manager = TransactionManager::builder()
        .decision_log(log.clone())
        .build();
    let first = manager.begin().unwrap();
    let second = manager.begin().unwrap();
    assert_ne!(first.id(), second.id());
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal);
    second.join(a.clone()).unwrap();
    second.join(b.clone()).unwrap();
    assert_eq!(a.branch_id(&second), Some(format!("{}:a", second.id())));
    manager.commit().unwrap();
    assert_eq!(log.forgotten(), [second.id()]);
}

// ---------------------------------------------------------------------------------------
// The decision log

#[test]
fn decision_log_records_prepared_branches_before_the_first_finish_and_forgets_after() {
    let journal = Journal::new();
    let log = Rc::new(MemoryDecisionLog::new());
    let manager = TransactionManager::builder()
        .decision_log(log.clone())
        .build();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let reader = ScriptedDataManager::new("b-reader", Kind::ReadOnly, &journal);
    let c = ScriptedDataManager::new("c", Kind::TwoPhase, &journal);
    let pending_at_finish = Rc::new(RefCell::new(Vec::new()));
    let (l, p) = (log.clone(), pending_at_finish.clone());
    a.on_call(move |call, _| {
        if call == TpcFinish {
            p.borrow_mut().extend(l.pending());
        }
    });
    let txn = manager.begin().unwrap();
    for r in [&c, &reader, &a] {
        txn.join(r.clone()).unwrap();
    }
    manager.commit().unwrap();

    let recorded = pending_at_finish.borrow();
    assert_eq!(recorded.len(), 1, "recorded before the first tpc_finish");
    assert_eq!(recorded[0].transaction, txn.id());
    let branches: Vec<_> = recorded[0]
        .branches
        .iter()
        .map(|b| (b.resource.as_str(), b.branch_id.clone()))
        .collect();
    assert_eq!(
        branches,
        [
            ("a", Some(format!("{}:a", txn.id()))),
            ("c", Some(format!("{}:c", txn.id())))
        ],
        "only prepared branches"
    );
    assert!(log.pending().is_empty());
    assert_eq!(log.forgotten(), [txn.id()]);
}

#[test]
fn decision_log_keeps_the_decision_after_a_heuristic_outcome() {
    let journal = Journal::new();
    let log = Rc::new(MemoryDecisionLog::new());
    let manager = TransactionManager::builder()
        .decision_log(log.clone())
        .build();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))
        .unwrap();
    txn.join(ScriptedDataManager::new("b", Kind::TwoPhase, &journal).fail_on(TpcFinish))
        .unwrap();
    assert!(manager.commit().unwrap_err().is_heuristic());
    let pending = log.pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].transaction, txn.id());
    assert!(log.forgotten().is_empty());
    manager.abort().unwrap();
    assert_eq!(
        log.pending().len(),
        1,
        "abort does not resolve a branch in doubt"
    );
}

#[test]
fn decision_log_failure_aborts_everything() {
    let journal = Journal::new();
    let log = Rc::new(MemoryDecisionLog::new());
    log.fail_next_record("disk full");
    let manager = TransactionManager::builder()
        .decision_log(log.clone())
        .build();
    let txn = manager.begin().unwrap();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal);
    txn.join(a.clone()).unwrap();
    txn.join(b.clone()).unwrap();

    let err = manager.commit().unwrap_err();

    assert!(matches!(err, Error::DecisionLog { .. }), "{err:?}");
    assert_eq!(err.phase(), Some(Phase::DecisionLog));
    assert_eq!(err.source().unwrap().to_string(), "disk full");
    assert_eq!(journal.calls_of("a"), [TpcBegin, Commit, TpcVote, TpcAbort]);
    assert_eq!(journal.calls_of("b"), [TpcBegin, Commit, TpcVote, TpcAbort]);
    assert!(!a.committed() && !b.committed());
    assert!(log.pending().is_empty());
    assert_eq!(txn.status(), Status::CommitFailed);
    manager.abort().unwrap();
}

#[test]
fn nothing_is_recorded_when_no_resource_prepared() {
    let journal = Journal::new();
    let log = Rc::new(MemoryDecisionLog::new());
    let manager = TransactionManager::builder()
        .decision_log(log.clone())
        .build();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("r", Kind::ReadOnly, &journal))
        .unwrap();
    txn.join(ScriptedDataManager::new("s", Kind::OnePhase, &journal))
        .unwrap();
    manager.commit().unwrap();
    assert!(log.pending().is_empty() && log.forgotten().is_empty());
}

// ---------------------------------------------------------------------------------------
// zope's behaviour to the letter: abort after a failed commit, the abort order, failing
// hooks and synchronizers, synchronizer notifications, savepoints, run(0), is_doomed and
// what a committed transaction keeps

#[test]
fn abort_after_a_failed_commit_aborts_every_joined_resource_once_more_and_frees_it() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    for r in [
        ScriptedDataManager::new("b", Kind::TwoPhase, &journal).fail_on(TpcVote),
        ScriptedDataManager::new("a", Kind::TwoPhase, &journal),
        ScriptedDataManager::new("c", Kind::ReadOnly, &journal),
    ] {
        txn.join(r).unwrap();
    }
    manager.commit().unwrap_err();
    journal.clear();
    manager.abort().unwrap();
    assert_eq!(
        journal.calls(),
        [
            ("b".to_owned(), Abort),
            ("a".to_owned(), Abort),
            ("c".to_owned(), Abort)
        ],
        "every resource that had joined is aborted once more, in join order"
    );
    assert_eq!(txn.status(), Status::Aborted);
    assert!(manager.current().is_none(), "the transaction is freed");
}

#[test]
fn abort_after_a_failed_before_commit_hook_aborts_every_joined_resource_once_more() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))
        .unwrap();
    txn.add_before_commit_hook(|_| Err("refused".into()));
    manager.commit().unwrap_err();
    assert_eq!(journal.calls_of("a"), [Abort]);
    manager.abort().unwrap();
    assert_eq!(journal.calls_of("a"), [Abort, Abort]);
}

#[test]
fn abort_runs_after_abort_hooks_before_synchronizers_after_completion() {
    let events = Events::default();
    let journal = Journal::new();
    let manager = TransactionManager::new();
    manager.register_synchronizer(Rc::new(RecordingSynchronizer {
        events: events.clone(),
        fail_before: false,
    }));
    let txn = manager.begin().unwrap();
    events.take();
    txn.join(traced("a", Kind::TwoPhase, &journal, &events))
        .unwrap();
    let e = events.clone();
    txn.add_before_abort_hook(move |t| {
        e.push(format!("before-abort {}", t.status()));
        Ok(())
    });
    let e = events.clone();
    txn.add_after_abort_hook(move |t| {
        e.push(format!("after-abort {}", t.status()));
        Ok(())
    });
    manager.abort().unwrap();
    assert_eq!(
        events.take(),
        [
            "before-abort active",
            "before_completion active",
            "a Abort",
            "after-abort aborted",
            "after_completion aborted"
        ]
    );
}

#[test]
fn synchronizer_failing_before_completion_during_abort_is_logged_and_returned_after_a_full_abort() {
    let events = Events::default();
    let journal = Journal::new();
    let manager = TransactionManager::new();
    manager.register_synchronizer(Rc::new(RecordingSynchronizer {
        events: events.clone(),
        fail_before: true,
    }));
    let txn = manager.begin().unwrap();
    events.take();
    txn.join(traced("a", Kind::TwoPhase, &journal, &events))
        .unwrap();
    txn.join(traced("b", Kind::TwoPhase, &journal, &events))
        .unwrap();
    let e = events.clone();
    txn.add_after_abort_hook(move |_| {
        e.push("after-abort");
        Ok(())
    });
    let (result, logs) = Logs::capture(|| manager.abort());
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Hook {
                phase: Phase::BeforeCompletion,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.source().unwrap().to_string(), "synchronizer refuses");
    assert_eq!(
        events.take(),
        [
            "before_completion active",
            "a Abort",
            "b Abort",
            "after-abort",
            "after_completion aborted"
        ]
    );
    assert!(
        logs.at(Level::ERROR)
            .iter()
            .any(|r| r.message.contains("before_completion")),
        "logged at error level: {:?}",
        logs.records()
    );
    assert_eq!(txn.status(), Status::Aborted);
    assert!(manager.current().is_none());
}

#[test]
fn register_synchronizer_during_a_transaction_tells_it_of_that_transaction_at_once() {
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    struct Seen(Rc<RefCell<Vec<TransactionId>>>);
    impl Synchronizer for Seen {
        fn new_transaction(&self, txn: &Transaction) {
            self.0.borrow_mut().push(txn.id());
        }
    }
    manager.register_synchronizer(Rc::new(Seen(seen.clone())));
    assert_eq!(*seen.borrow(), [txn.id()]);
    manager.abort().unwrap();
    let idle = TransactionManager::new();
    idle.register_synchronizer(Rc::new(Seen(seen.clone())));
    assert_eq!(seen.borrow().len(), 1, "no transaction, no notification");
}

#[test]
fn only_an_explicit_begin_tells_synchronizers_of_a_new_transaction() {
    let events = Events::default();
    let manager = TransactionManager::new();
    manager.register_synchronizer(Rc::new(RecordingSynchronizer {
        events: events.clone(),
        fail_before: false,
    }));
    let journal = Journal::new();
    let db = ScriptedDataManager::new("db", Kind::TwoPhase, &journal).with_savepoints();
    manager.get().unwrap().join(db.clone()).unwrap();
    manager.abort().unwrap();
    manager.commit().unwrap();
    manager.doom().unwrap();
    manager.abort().unwrap();
    manager.savepoint(false).unwrap();
    manager.abort().unwrap();
    assert!(
        !events.take().contains(&"new_transaction".to_owned()),
        "implicitly begun transactions are not announced"
    );
    manager.begin().unwrap();
    assert_eq!(events.take(), ["new_transaction"]);
    manager.abort().unwrap();
}

#[test]
fn savepoint_is_refused_before_any_resource_takes_one_when_one_cannot() {
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal).with_savepoints())
        .unwrap();
    txn.join(ScriptedDataManager::new("b", Kind::TwoPhase, &journal))
        .unwrap();
    txn.join(ScriptedDataManager::new("c", Kind::TwoPhase, &journal).with_savepoints())
        .unwrap();
    let err = txn.savepoint(false).unwrap_err();
    assert!(
        matches!(&err, Error::SavepointNotSupported { resource } if resource == "b"),
        "{err:?}"
    );
    assert!(
        journal.calls().is_empty(),
        "no resource took a savepoint: {:?}",
        journal.calls()
    );
    assert_eq!(txn.status(), Status::Active, "the transaction stays usable");
    txn.commit().unwrap();
}

#[test]
fn run_with_zero_attempts_is_an_error_and_never_calls_the_work() {
    let manager = TransactionManager::new();
    let mut calls = 0;
    let result = manager.run(0, |_| {
        calls += 1;
        Ok::<_, Error>(())
    });
    assert!(result.is_err(), "0 attempts is not 1");
    assert_eq!(calls, 0);
    assert!(manager.current().is_none(), "no transaction was begun");
}

#[test]
fn a_committed_transaction_keeps_no_data_and_no_extensions() {
    struct RequestId(u32);
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.set_data(RequestId(7));
    txn.set_extension("request", "GET /");
    let seen_in_hook = Rc::new(Cell::new(None));
    let seen = seen_in_hook.clone();
    txn.add_after_commit_hook(move |t, _| {
        seen.set(t.data::<RequestId>().map(|r| r.0));
        Ok(())
    });
    manager.commit().unwrap();
    assert_eq!(
        seen_in_hook.get(),
        Some(7),
        "after-commit hooks still see it"
    );
    assert!(txn.data::<RequestId>().is_none());
    assert!(txn.extensions().is_empty());

    let aborted = manager.begin().unwrap();
    aborted.set_data(RequestId(8));
    aborted.set_extension("request", "POST /");
    manager.abort().unwrap();
    assert!(aborted.data::<RequestId>().is_none());
    assert!(aborted.extensions().is_empty());
}

#[test]
fn data_dropped_at_the_end_of_a_transaction_may_read_the_transaction() {
    struct ReadsOnDrop(Transaction, Rc<RefCell<Option<String>>>);
    impl Drop for ReadsOnDrop {
        fn drop(&mut self) {
            *self.1.borrow_mut() = Some(self.0.description());
        }
    }
    let seen = Rc::new(RefCell::new(None));
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.note("checkout").unwrap();
    txn.set_data(ReadsOnDrop(txn.clone(), seen.clone()));
    manager.commit().unwrap();
    assert_eq!(seen.borrow().as_deref(), Some("checkout"));
}

#[test]
fn after_commit_hook_error_is_logged_and_never_changes_the_outcome() {
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    let ran = Rc::new(Cell::new(0));
    txn.add_after_commit_hook(|_, _| Err("mail server down".into()));
    let r = ran.clone();
    txn.add_after_commit_hook(move |_, _| {
        r.set(r.get() + 1);
        Ok(())
    });
    let (result, logs) = Logs::capture(|| manager.commit());
    result.unwrap();
    assert_eq!(txn.status(), Status::Committed);
    assert_eq!(ran.get(), 1, "the next hook still runs");
    let errors = logs.at(Level::ERROR);
    assert!(
        errors
            .iter()
            .any(|r| r.message.contains("after-commit hook")
                && r.field("error") == Some("mail server down")),
        "{:?}",
        logs.records()
    );

    // On a failed commit the commit's own error is the one returned.
    let journal = Journal::new();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal).fail_on(TpcVote))
        .unwrap();
    txn.add_after_commit_hook(|_, _| Err("mail server down".into()));
    let err = manager.commit().unwrap_err();
    assert_eq!(
        (err.phase(), err.resource()),
        (Some(Phase::Vote), Some("a"))
    );
    manager.abort().unwrap();
}

#[test]
fn abort_hook_errors_are_logged_the_abort_completes_and_the_first_is_returned() {
    let events = Events::default();
    let journal = Journal::new();
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal).fail_on(Abort);
    let e = events.clone();
    a.on_call(move |call, _| e.push(format!("a {call:?}")));
    txn.join(a).unwrap();
    txn.add_before_abort_hook(|_| Err("before refuses".into()));
    let e = events.clone();
    txn.add_before_abort_hook(move |_| {
        e.push("second before-abort");
        Ok(())
    });
    txn.add_after_abort_hook(|_| Err("after refuses".into()));
    let e = events.clone();
    txn.add_after_abort_hook(move |_| {
        e.push("second after-abort");
        Ok(())
    });
    let (result, logs) = Logs::capture(|| manager.abort());
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Hook {
                phase: Phase::BeforeAbortHook,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.source().unwrap().to_string(), "before refuses");
    assert_eq!(
        events.take(),
        ["second before-abort", "a Abort", "second after-abort"]
    );
    assert_eq!(txn.status(), Status::Aborted);
    assert!(manager.current().is_none());
    let errors: Vec<_> = logs
        .at(Level::ERROR)
        .into_iter()
        .filter_map(|r| r.field("error").map(str::to_owned))
        .collect();
    assert_eq!(
        errors,
        [
            "before refuses",
            "scripted failure of Abort in a",
            "after refuses"
        ]
    );

    // Alone, an after-abort hook's error is the one returned.
    let txn = manager.begin().unwrap();
    txn.add_after_abort_hook(|_| Err("after refuses".into()));
    let err = manager.abort().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Hook {
                phase: Phase::AfterAbortHook,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(txn.status(), Status::Aborted);
}

#[test]
fn is_doomed_without_a_transaction_on_an_explicit_manager_is_an_error() {
    let manager = TransactionManager::builder().explicit(true).build();
    assert!(matches!(manager.is_doomed(), Err(Error::NoTransaction)));
    manager.begin().unwrap();
    assert!(!manager.is_doomed().unwrap());
    manager.doom().unwrap();
    assert!(manager.is_doomed().unwrap());
    manager.abort().unwrap();
    assert!(matches!(manager.is_doomed(), Err(Error::NoTransaction)));
    let implicit = TransactionManager::new();
    assert!(!implicit.is_doomed().unwrap());
}

#[test]
fn dropping_a_manager_after_a_heuristic_commit_aborts_again_without_claiming_nothing_committed() {
    let journal = Journal::new();
    let ((), logs) = Logs::capture(|| {
        let manager = TransactionManager::new();
        let txn = manager.begin().unwrap();
        txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))
            .unwrap();
        txn.join(ScriptedDataManager::new("b", Kind::TwoPhase, &journal).fail_on(TpcFinish))
            .unwrap();
        assert!(manager.commit().unwrap_err().is_heuristic());
        journal.clear();
        drop(manager);
        assert_eq!(txn.status(), Status::Aborted);
    });
    assert_eq!(
        journal.calls(),
        [("a".to_owned(), Abort), ("b".to_owned(), Abort)]
    );
    let warnings = logs.at(Level::WARN);
    assert!(
        warnings
            .iter()
            .any(|r| r.message.contains("after a failed commit")),
        "{warnings:?}"
    );
    assert!(
        !warnings
            .iter()
            .any(|r| r.message.contains("nothing is committed")),
        "a committed resource must not be reported as not committed: {warnings:?}"
    );
}

#[test]
fn the_description_can_be_set_as_well_as_noted() {
    let manager = TransactionManager::new();
    let txn = manager.begin().unwrap();
    txn.note("first").unwrap();
    txn.set_description("replaced");
    assert_eq!(txn.description(), "replaced");
    txn.note("then noted").unwrap();
    assert_eq!(txn.description(), "replaced\nthen noted");
}
