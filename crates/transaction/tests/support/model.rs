//! A small reference model of the commit protocol, written from the documentation of
//! `DataManager` and `Transaction::commit`, independent of the implementation:
//!
//! - resources are sorted with one-phase resources last, then by sort key (stably);
//! - after `commit` on all, they vote in another order: two-phase resources whose write
//!   state is `Clean`, then `Unknown`, then `Dirty`, then one-phase resources, each group
//!   in the first order; cleanup after a vote follows the vote order;
//! - more than one one-phase resource fails with `TooManyOnePhase` (every resource is
//!   aborted) unless the manager accepts the risk;
//! - `tpc_begin` all, `commit` all, then the votes; the last resource to vote is committed
//!   with `commit_one_phase` instead of voting when there is no one-phase resource, every earlier
//!   vote was read-only and it supports one-phase commit;
//! - the decision is recorded when some resource prepared; `tpc_finish` on prepared voters;
//! - a failure before the decision: `abort` on every resource that did not vote, then
//!   `tpc_abort` on every resource that saw `tpc_begin` (including the one whose
//!   `tpc_begin` failed); cleanup failures are logged and the first failure is reported;
//! - a `tpc_finish` failure is a heuristic outcome; the other finishes still run.
//!
//! The scripted data manager prepares (two-phase), votes read-only, or commits in its vote
//! (one-phase): a declared two-phase resource never votes `Committed`.

use std::rc::Rc;

use transaction::testing::{Call, Journal, Kind, ScriptedDataManager, ScriptedFailure};
use transaction::{Error, Phase, ResourceError, Status, WriteState};

/// How to build one scripted resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub key: String,
    pub kind: Kind,
    pub one_phase_commit: bool,
    pub savepoints: bool,
    pub write_state: WriteState,
    pub fails: Vec<Call>,
}

impl Spec {
    pub fn new(key: &str, kind: Kind) -> Self {
        Self {
            key: key.to_owned(),
            kind,
            one_phase_commit: false,
            savepoints: false,
            write_state: WriteState::Unknown,
            fails: Vec::new(),
        }
    }

    pub fn fails(&self, call: Call) -> bool {
        self.fails.contains(&call)
    }

    pub fn is_one_phase(&self) -> bool {
        self.kind == Kind::OnePhase
    }

    pub fn build(&self, journal: &Journal) -> Rc<ScriptedDataManager> {
        let mut r = ScriptedDataManager::new(&self.key, self.kind, journal);
        if self.one_phase_commit {
            r = r.with_one_phase_commit();
        }
        if self.savepoints {
            r = r.with_savepoints();
        }
        if self.write_state != WriteState::Unknown {
            r = r.with_write_state(self.write_state);
        }
        for call in &self.fails {
            r = r.fail_on(*call);
        }
        r
    }
}

/// What an operation returned, in terms a model can predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Doomed,
    TransactionFailed,
    NoTransaction,
    AlreadyInTransaction,
    InvalidState {
        operation: &'static str,
        status: Status,
    },
    InvalidSavepoint,
    SavepointNotSupported {
        resource: String,
    },
    /// A resource failed; `call` is the scripted call that failed (from `source()`).
    Resource {
        phase: Phase,
        resource: String,
        call: Call,
    },
    Hook {
        phase: Phase,
    },
    DecisionLog,
    TooManyOnePhase {
        resources: Vec<String>,
    },
    Heuristic {
        committed: Vec<String>,
        failed: Vec<(String, Call)>,
    },
    /// Anything a model does not predict (for example a cause that is not scripted).
    Other(String),
}

fn scripted_call(resource: &str, source: &ResourceError) -> Option<Call> {
    let failure = source.downcast_ref::<ScriptedFailure>()?;
    (failure.resource == resource).then_some(failure.call)
}

impl Outcome {
    pub fn of<T>(result: &Result<T, Error>) -> Self {
        let err = match result {
            Ok(_) => return Outcome::Ok,
            Err(err) => err,
        };
        match err {
            Error::Doomed => Outcome::Doomed,
            Error::TransactionFailed => Outcome::TransactionFailed,
            Error::NoTransaction => Outcome::NoTransaction,
            Error::AlreadyInTransaction => Outcome::AlreadyInTransaction,
            Error::InvalidState { operation, status } => Outcome::InvalidState {
                operation,
                status: *status,
            },
            Error::InvalidSavepoint => Outcome::InvalidSavepoint,
            Error::SavepointNotSupported { resource } => Outcome::SavepointNotSupported {
                resource: resource.clone(),
            },
            Error::Resource {
                phase,
                resource,
                source,
            } => match scripted_call(resource, source) {
                Some(call) => Outcome::Resource {
                    phase: *phase,
                    resource: resource.clone(),
                    call,
                },
                None => Outcome::Other(format!("{err:?}")),
            },
            Error::Hook { phase, .. } => Outcome::Hook { phase: *phase },
            Error::DecisionLog { .. } => Outcome::DecisionLog,
            Error::TooManyOnePhase { resources } => Outcome::TooManyOnePhase {
                resources: resources.clone(),
            },
            Error::Heuristic(h) => {
                let mut failed = Vec::new();
                for (key, source) in h.failed() {
                    match scripted_call(key, source) {
                        Some(call) => failed.push((key.clone(), call)),
                        None => return Outcome::Other(format!("{err:?}")),
                    }
                }
                Outcome::Heuristic {
                    committed: h.committed().to_vec(),
                    failed,
                }
            }
            other => Outcome::Other(format!("{other:?}")),
        }
    }
}

/// What the model predicts for one `commit()` of an active transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPrediction {
    /// Every call the resources receive, in order.
    pub calls: Vec<(String, Call)>,
    pub outcome: Outcome,
    /// Resources whose work commits during this commit.
    pub committed: Vec<String>,
    /// Error-level events naming a resource: failed cleanup calls (`Abort`, `TpcAbort`)
    /// and failed `TpcFinish`, in order.
    pub logged: Vec<(String, Call)>,
    /// The branches recorded in the decision log, if a decision was recorded.
    pub recorded: Option<Vec<String>>,
    /// Whether the recorded decision is still pending (in doubt) afterwards.
    pub kept: bool,
    /// Whether the log is told to forget the transaction (a decision was recorded and
    /// every prepared resource finished).
    pub forgotten: bool,
}

impl CommitPrediction {
    /// The status the transaction ends the commit in.
    pub fn status(&self) -> Status {
        if self.outcome == Outcome::Ok {
            Status::Committed
        } else {
            Status::CommitFailed
        }
    }

    /// Records `call` to `r`; returns whether it fails.
    fn call(&mut self, r: &Spec, call: Call) -> bool {
        self.calls.push((r.key.clone(), call));
        r.fails(call)
    }

    fn cleanup(&mut self, order: &[&Spec], begun: usize, voted: usize) {
        for r in &order[voted..] {
            if self.call(r, Call::Abort) {
                self.logged.push((r.key.clone(), Call::Abort));
            }
        }
        for r in &order[..begun] {
            if self.call(r, Call::TpcAbort) {
                self.logged.push((r.key.clone(), Call::TpcAbort));
            }
        }
    }

    /// A failure before the decision in `order[at]`.
    #[allow(clippy::too_many_arguments)]
    fn fail(
        &mut self,
        order: &[&Spec],
        votes: &[ModelVote],
        begun: usize,
        at: usize,
        phase: Phase,
        call: Call,
    ) {
        self.cleanup(order, begun, votes.len());
        let key = order[at].key.clone();
        let committed_early: Vec<String> = order
            .iter()
            .zip(votes)
            .filter(|(_, v)| **v == ModelVote::Committed)
            .map(|(r, _)| r.key.clone())
            .collect();
        self.outcome = if committed_early.is_empty() {
            Outcome::Resource {
                phase,
                resource: key,
                call,
            }
        } else {
            Outcome::Heuristic {
                committed: committed_early,
                failed: vec![(key, call)],
            }
        };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelVote {
    Prepared,
    ReadOnly,
    Committed,
}

/// Sorts resources the way the protocol says: one-phase last, then by sort key, stably.
pub fn commit_order(specs: &[Spec]) -> Vec<&Spec> {
    let mut order: Vec<&Spec> = specs.iter().collect();
    order.sort_by(|a, b| {
        a.is_one_phase()
            .cmp(&b.is_one_phase())
            .then_with(|| a.key.cmp(&b.key))
    });
    order
}

/// The order of the votes: after the commit order, stably by one-phase last and then by
/// write state, `Clean` before `Unknown` before `Dirty`.
pub fn vote_order<'a>(order: &[&'a Spec]) -> Vec<&'a Spec> {
    let rank = |s: &Spec| match s.write_state {
        WriteState::Clean => 0,
        WriteState::Unknown => 1,
        WriteState::Dirty => 2,
    };
    let mut votes = order.to_vec();
    votes.sort_by_key(|s| (s.is_one_phase(), rank(s)));
    votes
}

/// Predicts `commit()` of an active transaction whose joined resources are `specs` (in
/// join order), with a decision log that records (`log_fails`: its record fails).
pub fn predict_commit(
    specs: &[Spec],
    allow_many_one_phase: bool,
    log_fails: bool,
) -> CommitPrediction {
    predict_commit_with(specs, allow_many_one_phase, log_fails, false)
}

/// [`predict_commit`] with parallel phases, every resource offering its vote and finish
/// as jobs (`parallel`): the two-phase resources vote together, except the last when it
/// may commit in one phase and fewer than two of them report `Dirty`; their `tpc_vote`
/// calls are all made (completed in vote order) before a failure is handled; then
/// `abort` on every resource without a successful vote and `tpc_abort` on every resource.
/// The finishes make the same calls in the same order as without.
pub fn predict_commit_with(
    specs: &[Spec],
    allow_many_one_phase: bool,
    log_fails: bool,
    parallel: bool,
) -> CommitPrediction {
    let order = commit_order(specs);
    let n = order.len();
    let mut p = CommitPrediction {
        calls: Vec::new(),
        outcome: Outcome::Ok,
        committed: Vec::new(),
        logged: Vec::new(),
        recorded: None,
        kept: false,
        forgotten: false,
    };

    let one_phase: Vec<String> = order
        .iter()
        .filter(|r| r.is_one_phase())
        .map(|r| r.key.clone())
        .collect();
    if one_phase.len() > 1 && !allow_many_one_phase {
        p.cleanup(&order, 0, 0);
        p.outcome = Outcome::TooManyOnePhase {
            resources: one_phase,
        };
        return p;
    }

    for (i, r) in order.iter().enumerate() {
        if p.call(r, Call::TpcBegin) {
            p.fail(&order, &[], i + 1, i, Phase::TpcBegin, Call::TpcBegin);
            return p;
        }
    }
    for (i, r) in order.iter().enumerate() {
        if p.call(r, Call::Commit) {
            p.fail(&order, &[], n, i, Phase::Commit, Call::Commit);
            return p;
        }
    }

    let order = vote_order(&order);
    let mut votes: Vec<ModelVote> = Vec::new();
    let two_phase = order.iter().filter(|r| !r.is_one_phase()).count();
    if parallel && two_phase >= 2 {
        let dirty = order
            .iter()
            .filter(|r| !r.is_one_phase() && r.write_state == WriteState::Dirty)
            .count();
        let may_be_alone = one_phase.is_empty() && order[n - 1].one_phase_commit;
        let together = if may_be_alone && dirty < 2 {
            two_phase - 1
        } else {
            two_phase
        };
        if together >= 2 {
            let mut voted: Vec<Option<ModelVote>> = Vec::new();
            let mut first_failure = None;
            for (i, r) in order[..together].iter().enumerate() {
                if p.call(r, Call::TpcVote) {
                    voted.push(None);
                    first_failure.get_or_insert(i);
                } else {
                    voted.push(Some(match r.kind {
                        Kind::TwoPhase => ModelVote::Prepared,
                        Kind::ReadOnly => ModelVote::ReadOnly,
                        Kind::OnePhase => ModelVote::Committed,
                    }));
                }
            }
            if let Some(at) = first_failure {
                voted.resize(n, None);
                for (r, v) in order.iter().zip(&voted) {
                    if v.is_none() && p.call(r, Call::Abort) {
                        p.logged.push((r.key.clone(), Call::Abort));
                    }
                }
                for r in &order {
                    if p.call(r, Call::TpcAbort) {
                        p.logged.push((r.key.clone(), Call::TpcAbort));
                    }
                }
                p.outcome = Outcome::Resource {
                    phase: Phase::Vote,
                    resource: order[at].key.clone(),
                    call: Call::TpcVote,
                };
                return p;
            }
            votes.extend(voted.into_iter().flatten());
        }
    }
    for (i, r) in order.iter().enumerate().skip(votes.len()) {
        let alone = i + 1 == n
            && one_phase.is_empty()
            && votes.iter().all(|v| *v == ModelVote::ReadOnly)
            && r.one_phase_commit;
        if alone {
            if p.call(r, Call::CommitOnePhase) {
                p.fail(
                    &order,
                    &votes,
                    n,
                    i,
                    Phase::OnePhaseCommit,
                    Call::CommitOnePhase,
                );
                return p;
            }
            p.committed.push(r.key.clone());
            votes.push(ModelVote::Committed);
        } else {
            if p.call(r, Call::TpcVote) {
                p.fail(&order, &votes, n, i, Phase::Vote, Call::TpcVote);
                return p;
            }
            votes.push(match r.kind {
                Kind::TwoPhase => ModelVote::Prepared,
                Kind::ReadOnly => ModelVote::ReadOnly,
                Kind::OnePhase => {
                    p.committed.push(r.key.clone());
                    ModelVote::Committed
                }
            });
        }
    }

    let prepared: Vec<&Spec> = order
        .iter()
        .zip(&votes)
        .filter(|(_, v)| **v == ModelVote::Prepared)
        .map(|(r, _)| *r)
        .collect();
    if !prepared.is_empty() {
        if log_fails {
            if !votes.contains(&ModelVote::Committed) {
                p.cleanup(&order, n, n);
                p.outcome = Outcome::DecisionLog;
                return p;
            }
            // A one-phase resource already committed: the decision is made anyway.
        } else {
            p.recorded = Some(prepared.iter().map(|r| r.key.clone()).collect());
        }
    }

    let mut failed = Vec::new();
    for r in &prepared {
        if p.call(r, Call::TpcFinish) {
            p.logged.push((r.key.clone(), Call::TpcFinish));
            failed.push((r.key.clone(), Call::TpcFinish));
        } else {
            p.committed.push(r.key.clone());
        }
    }
    if failed.is_empty() {
        p.forgotten = p.recorded.is_some();
        return p;
    }
    p.kept = p.recorded.is_some();
    p.outcome = Outcome::Heuristic {
        committed: order
            .iter()
            .zip(&votes)
            .filter(|(r, v)| {
                **v == ModelVote::Committed
                    || (**v == ModelVote::Prepared && !failed.iter().any(|(k, _)| *k == r.key))
            })
            .map(|(r, _)| r.key.clone())
            .collect(),
        failed,
    };
    p
}
