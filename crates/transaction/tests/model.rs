//! Property test: random sequences of join / rejoin / note / savepoint / rollback / doom /
//! commit / abort, over scripted resources of random kinds and write states that fail
//! random calls, run against a manager and against a small reference model. After every operation the
//! outcome (error kind, phase, resource, cause), the calls each resource received, the
//! current transaction's status and resources, which resources committed, which
//! savepoints are valid and what the decision log holds in doubt must agree. Each sequence
//! runs twice: with sequential phases, and with parallel phases on and every resource
//! offering its vote and finish as phase jobs (the coordinator's other path).

// A panic is how a test reports failure: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

mod support;

use std::rc::Rc;

use proptest::prelude::*;
use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
use transaction::{
    DataManager, MemoryDecisionLog, Phase, Savepoint, Status, TransactionManager, WriteState,
};

use support::model::{predict_commit_with, Outcome, Spec};

#[derive(Debug, Clone)]
enum Op {
    /// Join a new resource (to the current transaction, begun implicitly if none).
    Join(Spec),
    /// Join an already created resource again (a no-op if it is joined).
    Rejoin(usize),
    Note,
    Savepoint {
        optimistic: bool,
    },
    /// Roll back the n-th savepoint ever taken (valid or not).
    Rollback(usize),
    Doom,
    Commit,
    Abort,
}

const FAILABLE: [Call; 9] = [
    Call::TpcBegin,
    Call::Commit,
    Call::TpcVote,
    Call::CommitOnePhase,
    Call::TpcFinish,
    Call::Abort,
    Call::TpcAbort,
    Call::Savepoint,
    Call::SavepointRollback,
];

fn spec_strategy() -> impl Strategy<Value = Spec> {
    let kind = prop_oneof![
        Just((Kind::TwoPhase, false)),
        Just((Kind::TwoPhase, true)),
        Just((Kind::OnePhase, false)),
        Just((Kind::ReadOnly, false)),
        // Unusual mixes the matrix leaves out: the protocol still defines them.
        Just((Kind::OnePhase, true)),
        Just((Kind::ReadOnly, true)),
    ];
    let fails = prop_oneof![
        3 => Just(Vec::new()),
        1 => proptest::collection::vec(proptest::sample::select(FAILABLE.to_vec()), 1..=2),
    ];
    // Every write state with every kind, including misjudged ones (a clean resource that
    // prepares, a dirty one that votes read-only): the coordinator must stay correct.
    let write_state = prop_oneof![
        Just(WriteState::Unknown),
        Just(WriteState::Clean),
        Just(WriteState::Dirty),
    ];
    // The rank orders resources by sort key independently of their join order; the key is
    // made unique when the operation runs.
    (0u8..10, kind, write_state, any::<bool>(), fails).prop_map(
        |(rank, (kind, opc), write_state, savepoints, fails)| {
            let mut spec = Spec::new(&format!("r{rank}"), kind);
            spec.one_phase_commit = opc;
            spec.write_state = write_state;
            spec.savepoints = savepoints;
            spec.fails = fails;
            spec
        },
    )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => spec_strategy().prop_map(Op::Join),
        1 => any::<usize>().prop_map(Op::Rejoin),
        1 => Just(Op::Note),
        2 => any::<bool>().prop_map(|optimistic| Op::Savepoint { optimistic }),
        2 => any::<usize>().prop_map(Op::Rollback),
        1 => Just(Op::Doom),
        2 => Just(Op::Commit),
        1 => Just(Op::Abort),
    ]
}

// ---------------------------------------------------------------------------------------
// The reference model

#[derive(Debug)]
struct ModelTxn {
    serial: u64,
    status: Status,
    joined: Vec<usize>,
    next_seq: u64,
}

#[derive(Debug)]
struct ModelSavepoint {
    txn: u64,
    seq: u64,
    valid: bool,
    /// How many resources had joined when it was taken.
    joined: usize,
    /// (resource, whether it took a savepoint) for each resource joined then.
    states: Vec<(usize, bool)>,
}

#[derive(Debug, Default)]
struct Model {
    /// Parallel phases on, every resource offering phase jobs.
    parallel: bool,
    specs: Vec<Spec>,
    committed: Vec<bool>,
    calls: Vec<(String, Call)>,
    current: Option<ModelTxn>,
    savepoints: Vec<ModelSavepoint>,
    next_serial: u64,
    in_doubt: usize,
}

impl Model {
    fn txn(&mut self) -> &mut ModelTxn {
        if self.current.is_none() {
            self.next_serial += 1;
            self.current = Some(ModelTxn {
                serial: self.next_serial,
                status: Status::Active,
                joined: Vec::new(),
                next_seq: 0,
            });
        }
        self.current.as_mut().expect("just begun")
    }

    fn key(&self, id: usize) -> String {
        self.specs[id].key.clone()
    }

    fn invalidate_savepoints(&mut self, serial: u64, after_seq: Option<u64>) {
        for sp in &mut self.savepoints {
            if sp.txn == serial && after_seq.is_none_or(|seq| sp.seq > seq) {
                sp.valid = false;
            }
        }
    }

    fn join(&mut self, id: usize) -> Outcome {
        let t = self.txn();
        match t.status {
            Status::Active | Status::Doomed => {
                if !t.joined.contains(&id) {
                    t.joined.push(id);
                }
                Outcome::Ok
            }
            _ => Outcome::TransactionFailed,
        }
    }

    fn note_or_doom(&mut self, doom: bool) -> Outcome {
        let t = self.txn();
        match t.status {
            Status::Active | Status::Doomed => {
                if doom {
                    t.status = Status::Doomed;
                }
                Outcome::Ok
            }
            _ => Outcome::TransactionFailed,
        }
    }

    fn savepoint(&mut self, optimistic: bool) -> Outcome {
        let t = self.txn();
        if t.status == Status::CommitFailed {
            return Outcome::TransactionFailed;
        }
        let (serial, joined) = (t.serial, t.joined.clone());
        // Refused before any resource takes one.
        if !optimistic {
            if let Some(&id) = joined.iter().find(|&&id| !self.specs[id].savepoints) {
                return Outcome::SavepointNotSupported {
                    resource: self.key(id),
                };
            }
        }
        let mut states = Vec::new();
        for id in joined.iter().copied() {
            let spec = &self.specs[id];
            if spec.savepoints {
                self.calls.push((spec.key.clone(), Call::Savepoint));
                if spec.fails(Call::Savepoint) {
                    return Outcome::Resource {
                        phase: Phase::Savepoint,
                        resource: spec.key.clone(),
                        call: Call::Savepoint,
                    };
                }
                states.push((id, true));
            } else if optimistic {
                states.push((id, false));
            } else {
                return Outcome::SavepointNotSupported {
                    resource: spec.key.clone(),
                };
            }
        }
        let t = self.txn();
        let seq = t.next_seq;
        t.next_seq += 1;
        self.savepoints.push(ModelSavepoint {
            txn: serial,
            seq,
            valid: true,
            joined: joined.len(),
            states,
        });
        Outcome::Ok
    }

    fn abort_each(&mut self, ids: &[usize]) -> Option<Outcome> {
        let mut first = None;
        for &id in ids {
            let key = self.key(id);
            self.calls.push((key.clone(), Call::Abort));
            if self.specs[id].fails(Call::Abort) && first.is_none() {
                first = Some(Outcome::Resource {
                    phase: Phase::Abort,
                    resource: key,
                    call: Call::Abort,
                });
            }
        }
        first
    }

    fn rollback(&mut self, n: usize) -> Outcome {
        let sp = &self.savepoints[n];
        if !sp.valid {
            return Outcome::InvalidSavepoint;
        }
        let (serial, seq, joined, states) = (sp.txn, sp.seq, sp.joined, sp.states.clone());
        let t = self
            .current
            .as_mut()
            .expect("a valid savepoint's transaction is current");
        assert_eq!(
            t.serial, serial,
            "a valid savepoint belongs to the current transaction"
        );
        assert!(matches!(t.status, Status::Active | Status::Doomed));
        let late = t.joined.split_off(joined);
        self.invalidate_savepoints(serial, Some(seq));
        for (id, supported) in states {
            let key = self.key(id);
            let failure = if supported {
                self.calls.push((key.clone(), Call::SavepointRollback));
                self.specs[id]
                    .fails(Call::SavepointRollback)
                    .then_some(Outcome::Resource {
                        phase: Phase::SavepointRollback,
                        resource: key,
                        call: Call::SavepointRollback,
                    })
            } else {
                Some(Outcome::SavepointNotSupported { resource: key })
            };
            if let Some(err) = failure {
                self.abort_each(&late);
                self.current.as_mut().expect("current").status = Status::CommitFailed;
                self.invalidate_savepoints(serial, None);
                return err;
            }
        }
        self.abort_each(&late);
        Outcome::Ok
    }

    fn commit(&mut self) -> Outcome {
        let t = self.txn();
        match t.status {
            Status::Doomed => return Outcome::Doomed,
            Status::CommitFailed => return Outcome::TransactionFailed,
            _ => {}
        }
        // The resources stay joined until the transaction ends: abort() after a failed
        // commit aborts each once more.
        let (serial, joined) = (t.serial, t.joined.clone());
        self.invalidate_savepoints(serial, None);
        let specs: Vec<Spec> = joined.iter().map(|&id| self.specs[id].clone()).collect();
        let p = predict_commit_with(&specs, false, false, self.parallel);
        self.calls.extend(p.calls.iter().cloned());
        for key in &p.committed {
            let id = self
                .specs
                .iter()
                .position(|s| &s.key == key)
                .expect("known key");
            self.committed[id] = true;
        }
        if p.kept {
            self.in_doubt += 1;
        }
        if p.outcome == Outcome::Ok {
            self.current = None;
        } else {
            self.txn().status = Status::CommitFailed;
        }
        p.outcome
    }

    fn abort(&mut self) -> Outcome {
        let Some(t) = self.current.take() else {
            return Outcome::Ok;
        };
        self.invalidate_savepoints(t.serial, None);
        self.abort_each(&t.joined).unwrap_or(Outcome::Ok)
    }
}

// ---------------------------------------------------------------------------------------
// Running both side by side

struct Real {
    journal: Journal,
    log: Rc<MemoryDecisionLog>,
    manager: TransactionManager,
    resources: Vec<Rc<ScriptedDataManager>>,
    savepoints: Vec<Savepoint>,
}

/// Runs `ops` against the manager and the model; with `parallel`, the manager runs parallel
/// phases and every resource offers its vote and finish as phase jobs.
fn check(ops: &[Op], parallel: bool) -> Result<(), TestCaseError> {
    let journal = Journal::new();
    let log = Rc::new(MemoryDecisionLog::new());
    let mut real = Real {
        manager: TransactionManager::builder()
            .decision_log(log.clone())
            .parallel_phases(parallel)
            .build(),
        journal,
        log,
        resources: Vec::new(),
        savepoints: Vec::new(),
    };
    let mut model = Model {
        parallel,
        ..Model::default()
    };

    for (step, op) in ops.iter().enumerate() {
        let (actual, expected) = match op {
            Op::Join(spec) => {
                let mut spec = spec.clone();
                spec.key = format!("{}-{}", spec.key, model.specs.len());
                let mut r = spec.build(&real.journal);
                if parallel {
                    r = r.with_phase_jobs(|_| {});
                }
                real.resources.push(r.clone());
                model.specs.push(spec);
                model.committed.push(false);
                let actual = Outcome::of(&real.manager.get().and_then(|t| t.join(r)));
                (actual, model.join(model.specs.len() - 1))
            }
            Op::Rejoin(n) => {
                if real.resources.is_empty() {
                    continue;
                }
                let id = n % real.resources.len();
                let r = real.resources[id].clone();
                let actual = Outcome::of(&real.manager.get().and_then(|t| t.join(r)));
                (actual, model.join(id))
            }
            Op::Note => (
                Outcome::of(&real.manager.get().and_then(|t| t.note("step"))),
                model.note_or_doom(false),
            ),
            Op::Doom => (Outcome::of(&real.manager.doom()), model.note_or_doom(true)),
            Op::Savepoint { optimistic } => {
                let result = real.manager.savepoint(*optimistic);
                let actual = Outcome::of(&result);
                if let Ok(sp) = result {
                    real.savepoints.push(sp);
                }
                (actual, model.savepoint(*optimistic))
            }
            Op::Rollback(n) => {
                if real.savepoints.is_empty() {
                    continue;
                }
                let n = n % real.savepoints.len();
                (
                    Outcome::of(&real.savepoints[n].rollback()),
                    model.rollback(n),
                )
            }
            Op::Commit => (Outcome::of(&real.manager.commit()), model.commit()),
            Op::Abort => (Outcome::of(&real.manager.abort()), model.abort()),
        };

        let at = format!("step {step}: {op:?}");
        prop_assert_eq!(actual, expected, "outcome at {}", at);
        prop_assert_eq!(real.journal.calls(), model.calls.clone(), "calls at {}", at);
        let current = real.manager.current();
        prop_assert_eq!(
            current.as_ref().map(|t| t.status()),
            model.current.as_ref().map(|t| t.status),
            "status at {}",
            at
        );
        if let (Some(txn), Some(t)) = (&current, &model.current) {
            prop_assert_eq!(txn.resource_count(), t.joined.len(), "resources at {}", at);
            for (id, r) in real.resources.iter().enumerate() {
                let r: Rc<dyn DataManager> = r.clone();
                prop_assert_eq!(
                    txn.has_joined(&r),
                    t.joined.contains(&id),
                    "joined {} at {}",
                    id,
                    at
                );
            }
        }
        let committed: Vec<bool> = real.resources.iter().map(|r| r.committed()).collect();
        prop_assert_eq!(&committed, &model.committed, "committed at {}", at);
        let valid: Vec<bool> = real.savepoints.iter().map(Savepoint::is_valid).collect();
        let model_valid: Vec<bool> = model.savepoints.iter().map(|s| s.valid).collect();
        prop_assert_eq!(valid, model_valid, "savepoint validity at {}", at);
        prop_assert_eq!(
            real.log.pending().len(),
            model.in_doubt,
            "decisions in doubt at {}",
            at
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operation_sequences_match_the_reference_model(
        ops in proptest::collection::vec(op_strategy(), 1..40)
    ) {
        check(&ops, false)?;
    }

    #[test]
    fn random_operation_sequences_with_parallel_phases_match_the_reference_model(
        ops in proptest::collection::vec(op_strategy(), 1..40)
    ) {
        check(&ops, true)?;
    }
}

/// A fixed sequence through every operation, so the test fails loudly if the model and
/// the strategies drift apart (for example if rollbacks were never reached).
#[test]
fn a_known_sequence_matches_the_reference_model() {
    let spec = |key: &str, kind, savepoints, fails: &[Call]| {
        let mut s = Spec::new(key, kind);
        s.savepoints = savepoints;
        s.fails = fails.to_vec();
        s
    };
    let ops = vec![
        Op::Join(spec("b", Kind::TwoPhase, true, &[])),
        Op::Savepoint { optimistic: false },
        Op::Join(spec("a", Kind::ReadOnly, false, &[])),
        Op::Savepoint { optimistic: false },
        Op::Savepoint { optimistic: true },
        Op::Rollback(0),
        Op::Rollback(1),
        Op::Note,
        Op::Join(spec("c", Kind::OnePhase, false, &[])),
        Op::Commit,
        Op::Join(spec("d", Kind::TwoPhase, true, &[Call::TpcVote])),
        Op::Rejoin(0),
        Op::Savepoint { optimistic: false },
        Op::Doom,
        Op::Commit,
        Op::Abort,
        Op::Rejoin(3),
        Op::Commit,
        Op::Abort,
        Op::Join(spec("e", Kind::OnePhase, false, &[])),
        Op::Join(spec("f", Kind::OnePhase, false, &[Call::Abort])),
        Op::Commit,
        Op::Note,
        Op::Abort,
        Op::Rollback(2),
    ];
    check(&ops, false).unwrap();
    check(&ops, true).unwrap();
}
