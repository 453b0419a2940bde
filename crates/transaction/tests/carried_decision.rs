//! A last resource that carries the commit decision inside its own one-phase commit
//! (`DataManager::carries_decision`): what the coordinator hands it, when, and what the
//! decision log then gets.

// A panic is how a test reports failure: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

use std::rc::Rc;

use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
use transaction::{Error, MemoryDecisionLog, Phase, TransactionManager};

fn logged() -> (Rc<MemoryDecisionLog>, TransactionManager) {
    let log = Rc::new(MemoryDecisionLog::new());
    let manager = TransactionManager::builder()
        .decision_log(log.clone())
        .build();
    (log, manager)
}

#[test]
fn the_carrier_gets_every_prepared_branch_before_its_commit_and_the_log_records_nothing() {
    let journal = Journal::new();
    let (log, manager) = logged();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal);
    let lite = ScriptedDataManager::new("lite", Kind::OnePhase, &journal).with_decision_carrying();
    let txn = manager.begin().unwrap();
    txn.join(lite.clone()).unwrap();
    txn.join(b.clone()).unwrap();
    txn.join(a.clone()).unwrap();
    manager.commit().unwrap();

    let carried = lite.carried();
    assert_eq!(carried.len(), 1);
    assert_eq!(carried[0].transaction, txn.id());
    let resources: Vec<&str> = carried[0]
        .branches
        .iter()
        .map(|b| b.resource.as_str())
        .collect();
    assert_eq!(resources, ["a", "b"]);
    assert_eq!(
        carried[0].branches[0].branch_id,
        Some(format!("{}:a", txn.id()))
    );
    // Both prepared before the carrier got the record; it committed right after it; the
    // prepared ones finished after that.
    let order: Vec<(String, Call)> = journal
        .calls()
        .into_iter()
        .filter(|(_, c)| !matches!(c, Call::TpcBegin | Call::Commit))
        .collect();
    let expected = [
        ("a", Call::TpcVote),
        ("b", Call::TpcVote),
        ("lite", Call::CarryDecision),
        ("lite", Call::TpcVote),
        ("a", Call::TpcFinish),
        ("b", Call::TpcFinish),
    ]
    .map(|(k, c)| (k.to_owned(), c));
    assert_eq!(order, expected);
    assert!(a.committed() && b.committed() && lite.committed());
    assert!(log.pending().is_empty());
    assert!(log.forgotten().is_empty(), "the log got a record");
}

#[test]
fn a_failed_carry_rolls_every_prepared_resource_back() {
    let journal = Journal::new();
    let (log, manager) = logged();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let lite = ScriptedDataManager::new("lite", Kind::OnePhase, &journal)
        .with_decision_carrying()
        .fail_on(Call::CarryDecision);
    let txn = manager.begin().unwrap();
    txn.join(a.clone()).unwrap();
    txn.join(lite.clone()).unwrap();
    let err = manager.commit().unwrap_err();
    assert!(
        matches!(err, Error::Resource { phase: Phase::Vote, ref resource, .. } if resource == "lite"),
        "{err:?}"
    );
    assert_eq!(journal.calls_of("a").last(), Some(&Call::TpcAbort));
    assert!(!journal.calls_of("lite").contains(&Call::TpcVote));
    assert!(!a.committed() && !lite.committed());
    assert!(log.pending().is_empty() && log.forgotten().is_empty());
    manager.abort().unwrap();
}

#[test]
fn a_failed_commit_of_the_carrier_rolls_every_prepared_resource_back() {
    let journal = Journal::new();
    let (_log, manager) = logged();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let lite = ScriptedDataManager::new("lite", Kind::OnePhase, &journal)
        .with_decision_carrying()
        .fail_on(Call::TpcVote);
    let txn = manager.begin().unwrap();
    txn.join(a.clone()).unwrap();
    txn.join(lite.clone()).unwrap();
    assert!(manager.commit().is_err());
    assert_eq!(lite.carried().len(), 1);
    assert_eq!(journal.calls_of("a").last(), Some(&Call::TpcAbort));
    assert!(!a.committed());
    manager.abort().unwrap();
}

#[test]
fn nothing_is_carried_when_nothing_prepared_or_no_log_is_kept() {
    let journal = Journal::new();
    // Read-only company: no decision to make.
    let (log, manager) = logged();
    let lite = ScriptedDataManager::new("lite", Kind::OnePhase, &journal).with_decision_carrying();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("r", Kind::ReadOnly, &journal))
        .unwrap();
    txn.join(lite.clone()).unwrap();
    manager.commit().unwrap();
    assert!(lite.carried().is_empty());
    assert!(lite.committed());
    assert!(log.forgotten().is_empty());

    // No decision log: nothing would recover, so nothing is carried either.
    let manager = TransactionManager::new();
    let lite = ScriptedDataManager::new("lite", Kind::OnePhase, &journal).with_decision_carrying();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))
        .unwrap();
    txn.join(lite.clone()).unwrap();
    manager.commit().unwrap();
    assert!(lite.carried().is_empty());
}

#[test]
fn a_one_phase_resource_that_does_not_carry_leaves_the_decision_to_the_log() {
    let journal = Journal::new();
    let (log, manager) = logged();
    let lite = ScriptedDataManager::new("lite", Kind::OnePhase, &journal);
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))
        .unwrap();
    txn.join(lite.clone()).unwrap();
    manager.commit().unwrap();
    assert!(lite.carried().is_empty());
    assert_eq!(log.forgotten(), [txn.id()]);
}
