//! The exhaustive fault matrix: every mix of 1 to 3 resources (two-phase, two-phase with
//! one-phase commit, one-phase, read-only, each saying nothing of its writes; a writer
//! with one-phase commit that says it wrote; a read-only resource that says it wrote
//! nothing), joined in every order, with no fault, every
//! single fault and every pair of faults (a failing call of a resource, or a failing
//! decision-log record), each checked against the reference model in `support::model`:
//! the calls each resource got and their order, the outcome (error kind, phase, resource,
//! cause, heuristic lists), the final status, what committed, what was logged, and what
//! the decision log holds.

// A panic is how a test reports failure: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

mod support;

use std::rc::Rc;

use tracing::Level;
use transaction::testing::{Call, Journal, Kind};
use transaction::{Error, MemoryDecisionLog, Status, TransactionManager, WriteState};

use support::logs::Logs;
use support::model::{predict_commit, predict_commit_with, Outcome, Spec};

/// The six kinds of resource, as (kind, supports one-phase commit, write state).
const KINDS: [(Kind, bool, WriteState); 6] = [
    (Kind::TwoPhase, false, WriteState::Unknown),
    (Kind::TwoPhase, true, WriteState::Unknown),
    (Kind::OnePhase, false, WriteState::Unknown),
    (Kind::ReadOnly, false, WriteState::Unknown),
    (Kind::TwoPhase, true, WriteState::Dirty),
    (Kind::ReadOnly, false, WriteState::Clean),
];

/// Every call that can be made to fail: the protocol's steps, and the cleanup calls.
const CALLS: [Call; 7] = [
    Call::TpcBegin,
    Call::Commit,
    Call::TpcVote,
    Call::CommitOnePhase,
    Call::TpcFinish,
    Call::Abort,
    Call::TpcAbort,
];

const KEYS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Resource `KEYS[i]` fails the call.
    Resource(usize, Call),
    /// The decision log fails to record.
    DecisionLog,
}

/// Every list of `n` kinds.
fn kind_mixes(n: usize) -> Vec<Vec<(Kind, bool, WriteState)>> {
    let mut mixes = vec![Vec::new()];
    for _ in 0..n {
        mixes = mixes
            .into_iter()
            .flat_map(|mix| {
                KINDS.iter().map(move |k| {
                    let mut next = mix.clone();
                    next.push(*k);
                    next
                })
            })
            .collect();
    }
    mixes
}

/// No fault, every single fault and every pair of distinct faults.
fn fault_plans(n: usize) -> Vec<Vec<Fault>> {
    let mut positions: Vec<Fault> = (0..n)
        .flat_map(|i| CALLS.iter().map(move |c| Fault::Resource(i, *c)))
        .collect();
    positions.push(Fault::DecisionLog);
    let mut plans = vec![Vec::new()];
    for (i, a) in positions.iter().enumerate() {
        plans.push(vec![*a]);
        for b in &positions[i + 1..] {
            plans.push(vec![*a, *b]);
        }
    }
    plans
}

/// Every permutation of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn go(rest: Vec<usize>, prefix: Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if rest.is_empty() {
            out.push(prefix);
            return;
        }
        for (i, x) in rest.iter().enumerate() {
            let mut r = rest.clone();
            r.remove(i);
            let mut p = prefix.clone();
            p.push(*x);
            go(r, p, out);
        }
    }
    let mut out = Vec::new();
    go((0..n).collect(), Vec::new(), &mut out);
    out
}

/// The error-level events that name a resource, as (resource, failed call).
fn logged_resource_errors(logs: &Logs) -> Vec<(String, Call)> {
    logs.at(Level::ERROR)
        .into_iter()
        .filter_map(|r| {
            let resource = r.field("resource")?.to_owned();
            let call = if r.message.contains("tpc_abort") {
                Call::TpcAbort
            } else if r.message.contains("tpc_finish") {
                Call::TpcFinish
            } else if r.message.contains("abort") {
                Call::Abort
            } else {
                return None;
            };
            Some((resource, call))
        })
        .collect()
}

/// Runs one commit and compares everything observable with the model.
fn check_case(
    specs: &[Spec],
    join_order: &[usize],
    log_fails: bool,
    allow_many: bool,
    parallel: bool,
    logs: &Logs,
) {
    let case = format!(
        "resources {specs:?}, joined in order {join_order:?}, decision log fails: {log_fails}, \
         several one-phase allowed: {allow_many}, parallel phases with jobs: {parallel}"
    );
    let expected = predict_commit_with(specs, allow_many, log_fails, parallel);

    logs.clear();
    let journal = Journal::new();
    let resources: Vec<_> = specs
        .iter()
        .map(|s| {
            let r = s.build(&journal);
            if parallel {
                r.with_phase_jobs(|_| {})
            } else {
                r
            }
        })
        .collect();
    let log = Rc::new(MemoryDecisionLog::new());
    if log_fails {
        log.fail_next_record("disk full");
    }
    let manager = TransactionManager::builder()
        .decision_log(log.clone())
        .allow_multiple_one_phase(allow_many)
        .parallel_phases(parallel)
        .build();
    let txn = manager.begin().expect("implicit manager begins");
    for &i in join_order {
        txn.join(resources[i].clone())
            .expect("an active transaction accepts joins");
    }
    let told = Rc::new(std::cell::Cell::new(None));
    let told_in_hook = told.clone();
    txn.add_after_commit_hook(move |_, ok| {
        told_in_hook.set(Some(ok));
        Ok(())
    });

    let result = manager.commit();

    assert_eq!(journal.calls(), expected.calls, "calls: {case}");
    assert_eq!(Outcome::of(&result), expected.outcome, "outcome: {case}");
    assert_eq!(txn.status(), expected.status(), "status: {case}");
    let committed: Vec<String> = specs
        .iter()
        .zip(&resources)
        .filter(|(_, r)| r.committed())
        .map(|(s, _)| s.key.clone())
        .collect();
    let mut expected_committed = expected.committed.clone();
    expected_committed.sort();
    assert_eq!(committed, expected_committed, "committed(): {case}");
    assert_eq!(
        told.get(),
        Some(result.is_ok()),
        "after-commit hook: {case}"
    );
    assert_eq!(
        logged_resource_errors(logs),
        expected.logged,
        "error logs: {case}"
    );
    match &result {
        Err(Error::Resource {
            phase, resource, ..
        }) => assert!(
            logs.at(Level::WARN)
                .iter()
                .any(|r| r.field("resource") == Some(resource)
                    && r.field("phase") == Some(phase.as_str())),
            "a resource failure is logged at warn level with resource and phase: {case}"
        ),
        Err(Error::Heuristic(_)) => assert!(
            logs.at(Level::ERROR)
                .iter()
                .any(|r| r.message.contains("heuristic")),
            "a heuristic outcome is logged at error level: {case}"
        ),
        _ => {}
    }

    // The decision log holds the prepared branches while in doubt, and only then.
    let pending = log.pending();
    if let (Some(branches), true) = (&expected.recorded, expected.kept) {
        assert_eq!(pending.len(), 1, "decision kept: {case}");
        assert_eq!(pending[0].transaction, txn.id(), "{case}");
        let keys: Vec<_> = pending[0]
            .branches
            .iter()
            .map(|b| b.resource.clone())
            .collect();
        assert_eq!(&keys, branches, "recorded branches: {case}");
        for b in &pending[0].branches {
            assert_eq!(
                b.branch_id,
                Some(format!("{}:{}", txn.id(), b.resource)),
                "{case}"
            );
        }
    } else {
        assert!(pending.is_empty(), "nothing in doubt: {case}");
    }
    let forgotten = if expected.forgotten {
        vec![txn.id()]
    } else {
        vec![]
    };
    assert_eq!(log.forgotten(), forgotten, "forgotten: {case}");

    // After a failure only abort() is accepted; as in zope it calls `abort` once more on
    // every joined resource, in join order, and reports the first failure.
    if result.is_err() {
        assert!(
            matches!(txn.commit(), Err(Error::TransactionFailed)),
            "{case}"
        );
        journal.clear();
        let aborted = manager.abort();
        assert_eq!(txn.status(), Status::Aborted, "{case}");
        let joined: Vec<&Spec> = join_order.iter().map(|&i| &specs[i]).collect();
        let expected_calls: Vec<(String, Call)> = joined
            .iter()
            .map(|s| (s.key.clone(), Call::Abort))
            .collect();
        assert_eq!(
            journal.calls(),
            expected_calls,
            "abort after failure: {case}"
        );
        let expected_outcome =
            joined
                .iter()
                .find(|s| s.fails(Call::Abort))
                .map_or(Outcome::Ok, |s| Outcome::Resource {
                    phase: transaction::Phase::Abort,
                    resource: s.key.clone(),
                    call: Call::Abort,
                });
        assert_eq!(
            Outcome::of(&aborted),
            expected_outcome,
            "abort after failure: {case}"
        );
    }
    assert!(manager.current().is_none(), "the transaction ended: {case}");
}

fn run_matrix(n: usize) -> usize {
    run_matrix_with(n, false)
}

/// The matrix with parallel phases, every resource offering its vote and finish as jobs
/// that run on the coordinator's worker threads.
fn run_matrix_with(n: usize, parallel: bool) -> usize {
    let logs = Logs::default();
    let _guard = tracing::dispatcher::set_default(&logs.dispatch());
    let mut cases = 0;
    for kinds in kind_mixes(n) {
        let one_phase = kinds
            .iter()
            .filter(|(k, _, _)| *k == Kind::OnePhase)
            .count();
        for plan in fault_plans(n) {
            let specs: Vec<Spec> = kinds
                .iter()
                .enumerate()
                .map(|(i, (kind, one_phase_commit, write_state))| {
                    let mut spec = Spec::new(KEYS[i], *kind);
                    spec.one_phase_commit = *one_phase_commit;
                    spec.write_state = *write_state;
                    spec.fails = plan
                        .iter()
                        .filter_map(|f| match f {
                            Fault::Resource(r, call) if *r == i => Some(*call),
                            _ => None,
                        })
                        .collect();
                    spec
                })
                .collect();
            let log_fails = plan.contains(&Fault::DecisionLog);
            for order in permutations(n) {
                check_case(&specs, &order, log_fails, false, parallel, &logs);
                cases += 1;
                if one_phase > 1 {
                    check_case(&specs, &order, log_fails, true, parallel, &logs);
                    cases += 1;
                }
            }
        }
    }
    cases
}

#[test]
fn every_fault_with_one_resource_matches_the_model() {
    assert_eq!(run_matrix(1), 6 * (1 + 8 + 28));
}

#[test]
fn every_fault_pair_with_two_resources_in_either_join_order_matches_the_model() {
    // 36 mixes, 1 of them with two one-phase resources (also run accepting the risk).
    assert_eq!(run_matrix(2), 37 * (1 + 15 + 105) * 2);
}

#[test]
fn every_fault_pair_with_three_resources_in_every_join_order_matches_the_model() {
    // 216 mixes, 16 of them with two or three one-phase resources.
    assert_eq!(run_matrix(3), 232 * (1 + 22 + 231) * 6);
}

/// The matrix must not be vacuous: the model predicts every kind of outcome somewhere.
#[test]
fn with_parallel_phases_every_fault_pair_with_two_resources_matches_the_model() {
    assert_eq!(run_matrix_with(2, true), 37 * (1 + 15 + 105) * 2);
}

#[test]
fn with_parallel_phases_every_fault_pair_with_three_resources_matches_the_model() {
    assert_eq!(run_matrix_with(3, true), 232 * (1 + 22 + 231) * 6);
}

#[test]
fn the_matrix_reaches_every_kind_of_outcome() {
    let mut seen = std::collections::BTreeSet::new();
    for n in 1..=3 {
        for kinds in kind_mixes(n) {
            for plan in fault_plans(n) {
                let specs: Vec<Spec> = kinds
                    .iter()
                    .enumerate()
                    .map(|(i, (kind, opc, write_state))| {
                        let mut s = Spec::new(KEYS[i], *kind);
                        s.one_phase_commit = *opc;
                        s.write_state = *write_state;
                        s.fails = plan
                            .iter()
                            .filter_map(|f| match f {
                                Fault::Resource(r, c) if *r == i => Some(*c),
                                _ => None,
                            })
                            .collect();
                        s
                    })
                    .collect();
                for allow in [false, true] {
                    let p = predict_commit(&specs, allow, plan.contains(&Fault::DecisionLog));
                    let label = match &p.outcome {
                        Outcome::Resource { phase, .. } => format!("resource {phase}"),
                        Outcome::Heuristic { .. } => "heuristic".to_owned(),
                        Outcome::TooManyOnePhase { .. } => "too many one-phase".to_owned(),
                        Outcome::DecisionLog => "decision log".to_owned(),
                        Outcome::Ok => "ok".to_owned(),
                        other => format!("{other:?}"),
                    };
                    seen.insert(label);
                    if p.calls.contains(&("a".to_owned(), Call::CommitOnePhase)) {
                        seen.insert("one-phase commit used".to_owned());
                    }
                    if !p.logged.is_empty() {
                        seen.insert("cleanup or finish failure logged".to_owned());
                    }
                    if p.kept {
                        seen.insert("decision kept in doubt".to_owned());
                    }
                }
            }
        }
    }
    let expected = [
        "ok",
        "resource tpc_begin",
        "resource commit",
        "resource tpc_vote",
        "resource one-phase commit",
        "heuristic",
        "too many one-phase",
        "decision log",
        "one-phase commit used",
        "cleanup or finish failure logged",
        "decision kept in doubt",
    ];
    for label in expected {
        assert!(seen.contains(label), "no case reaches {label}: {seen:?}");
    }
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
}
