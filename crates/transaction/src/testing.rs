//! A scripted data manager that records every call and fails on demand, for tests of
//! code built on the coordinator. Enabled by the `testing` feature.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use crate::{DataManager, ResourceError, ResourceSavepoint, Transaction, Vote};

/// A call made by the coordinator to a [`ScriptedDataManager`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `abort`
    Abort,
    /// `tpc_begin`
    TpcBegin,
    /// `commit`
    Commit,
    /// `tpc_vote`
    TpcVote,
    /// `commit_one_phase`
    CommitOnePhase,
    /// `tpc_finish`
    TpcFinish,
    /// `tpc_abort`
    TpcAbort,
    /// `savepoint`
    Savepoint,
    /// a savepoint's `rollback`
    SavepointRollback,
}

/// A shared, ordered record of calls across several scripted resources.
#[derive(Debug, Default, Clone)]
pub struct Journal {
    calls: Rc<RefCell<Vec<(String, Call)>>>,
}

impl Journal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, as `(sort key, call)`, in order.
    pub fn calls(&self) -> Vec<(String, Call)> {
        self.calls.borrow().clone()
    }

    /// The calls made to the resource `key`, in order.
    pub fn calls_of(&self, key: &str) -> Vec<Call> {
        self.calls
            .borrow()
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, c)| *c)
            .collect()
    }

    /// Forgets every recorded call.
    pub fn clear(&self) {
        self.calls.borrow_mut().clear();
    }

    fn record(&self, key: &str, call: Call) {
        self.calls.borrow_mut().push((key.to_owned(), call));
    }
}

/// The error a [`ScriptedDataManager`] fails with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedFailure {
    /// The resource that failed.
    pub resource: String,
    /// The call that failed.
    pub call: Call,
}

impl fmt::Display for ScriptedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scripted failure of {:?} in {}",
            self.call, self.resource
        )
    }
}

impl std::error::Error for ScriptedFailure {}

/// What a [`ScriptedDataManager`] does when voting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Prepares and waits for phase 2.
    TwoPhase,
    /// Declares itself one-phase and commits in its vote.
    OnePhase,
    /// Votes read-only.
    ReadOnly,
}

type CallHook = Box<dyn Fn(Call, &Transaction)>;

/// A data manager driven by a script: it records each call in a [`Journal`], and fails the
/// calls it was told to fail.
///
/// # Examples
///
/// ```
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
/// use transaction::TransactionManager;
///
/// let journal = Journal::new();
/// let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
/// let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal).fail_on(Call::TpcVote);
/// let manager = TransactionManager::new();
/// let txn = manager.begin().unwrap();
/// txn.join(a.clone()).unwrap();
/// txn.join(b.clone()).unwrap();
/// assert!(manager.commit().is_err());
/// assert!(!a.committed());
/// assert_eq!(journal.calls_of("a").last(), Some(&Call::TpcAbort));
/// ```
pub struct ScriptedDataManager {
    key: String,
    kind: Kind,
    one_phase_commit: bool,
    savepoints: bool,
    fail_on: RefCell<Vec<Call>>,
    transient: bool,
    journal: Journal,
    committed: Cell<bool>,
    on_call: RefCell<Option<CallHook>>,
}

impl fmt::Debug for ScriptedDataManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedDataManager")
            .field("key", &self.key)
            .field("kind", &self.kind)
            .field("fail_on", &self.fail_on.borrow())
            .finish_non_exhaustive()
    }
}

impl ScriptedDataManager {
    /// A resource named `key` of the given kind, recording into `journal`.
    pub fn new(key: &str, kind: Kind, journal: &Journal) -> Rc<Self> {
        Rc::new(Self {
            key: key.to_owned(),
            kind,
            one_phase_commit: false,
            savepoints: false,
            fail_on: RefCell::new(Vec::new()),
            transient: false,
            journal: journal.clone(),
            committed: Cell::new(false),
            on_call: RefCell::new(None),
        })
    }

    fn edit(self: Rc<Self>, f: impl FnOnce(&mut Self)) -> Rc<Self> {
        let mut this = Rc::try_unwrap(self)
            .unwrap_or_else(|_| panic!("configure a ScriptedDataManager before sharing it"));
        f(&mut this);
        Rc::new(this)
    }

    /// Makes `call` fail (every time it is made).
    ///
    /// # Panics
    ///
    /// When the resource is already shared (configure it before cloning the `Rc`).
    pub fn fail_on(self: Rc<Self>, call: Call) -> Rc<Self> {
        self.edit(|s| s.fail_on.get_mut().push(call))
    }

    /// Makes failures report themselves transient.
    ///
    /// # Panics
    ///
    /// When the resource is already shared.
    pub fn transient(self: Rc<Self>) -> Rc<Self> {
        self.edit(|s| s.transient = true)
    }

    /// Offers one-phase commit when it is the only resource with work.
    ///
    /// # Panics
    ///
    /// When the resource is already shared.
    pub fn with_one_phase_commit(self: Rc<Self>) -> Rc<Self> {
        self.edit(|s| s.one_phase_commit = true)
    }

    /// Supports savepoints.
    ///
    /// # Panics
    ///
    /// When the resource is already shared.
    pub fn with_savepoints(self: Rc<Self>) -> Rc<Self> {
        self.edit(|s| s.savepoints = true)
    }

    /// Replaces the calls that fail.
    pub fn set_failures(&self, calls: &[Call]) {
        *self.fail_on.borrow_mut() = calls.to_vec();
    }

    /// Runs `f` at the start of every call, for re-entrancy tests.
    pub fn on_call(&self, f: impl Fn(Call, &Transaction) + 'static) {
        *self.on_call.borrow_mut() = Some(Box::new(f));
    }

    /// Whether the resource's work committed (in `tpc_finish`, in a one-phase vote or in
    /// `commit_one_phase`).
    pub fn committed(&self) -> bool {
        self.committed.get()
    }

    fn call(&self, call: Call, txn: &Transaction) -> Result<(), ResourceError> {
        self.journal.record(&self.key, call);
        if let Some(f) = self.on_call.borrow().as_ref() {
            f(call, txn);
        }
        if self.fail_on.borrow().contains(&call) {
            let err = ScriptedFailure {
                resource: self.key.clone(),
                call,
            };
            return Err(if self.transient {
                ResourceError::transient(err)
            } else {
                ResourceError::new(err)
            });
        }
        Ok(())
    }
}

struct ScriptedSavepoint {
    key: String,
    journal: Journal,
    fail: bool,
}

impl ResourceSavepoint for ScriptedSavepoint {
    fn rollback(&self) -> Result<(), ResourceError> {
        self.journal.record(&self.key, Call::SavepointRollback);
        if self.fail {
            return Err(ResourceError::new(ScriptedFailure {
                resource: self.key.clone(),
                call: Call::SavepointRollback,
            }));
        }
        Ok(())
    }
}

impl DataManager for ScriptedDataManager {
    fn sort_key(&self) -> &str {
        &self.key
    }

    fn is_one_phase(&self) -> bool {
        self.kind == Kind::OnePhase
    }

    fn abort(&self, txn: &Transaction) -> Result<(), ResourceError> {
        self.call(Call::Abort, txn)
    }

    fn tpc_begin(&self, txn: &Transaction) -> Result<(), ResourceError> {
        self.call(Call::TpcBegin, txn)
    }

    fn commit(&self, txn: &Transaction) -> Result<(), ResourceError> {
        self.call(Call::Commit, txn)
    }

    fn tpc_vote(&self, txn: &Transaction) -> Result<Vote, ResourceError> {
        self.call(Call::TpcVote, txn)?;
        Ok(match self.kind {
            Kind::TwoPhase => Vote::Prepared,
            Kind::ReadOnly => Vote::ReadOnly,
            Kind::OnePhase => {
                self.committed.set(true);
                Vote::Committed
            }
        })
    }

    fn tpc_finish(&self, txn: &Transaction) -> Result<(), ResourceError> {
        self.call(Call::TpcFinish, txn)?;
        self.committed.set(true);
        Ok(())
    }

    fn tpc_abort(&self, txn: &Transaction) -> Result<(), ResourceError> {
        self.call(Call::TpcAbort, txn)
    }

    fn supports_one_phase_commit(&self) -> bool {
        self.one_phase_commit
    }

    fn commit_one_phase(&self, txn: &Transaction) -> Result<(), ResourceError> {
        self.call(Call::CommitOnePhase, txn)?;
        self.committed.set(true);
        Ok(())
    }

    fn branch_id(&self, txn: &Transaction) -> Option<String> {
        Some(format!("{}:{}", txn.id(), self.key))
    }

    fn savepoint(
        &self,
        txn: &Transaction,
    ) -> Option<Result<Box<dyn ResourceSavepoint>, ResourceError>> {
        if !self.savepoints {
            return None;
        }
        if let Err(e) = self.call(Call::Savepoint, txn) {
            return Some(Err(e));
        }
        Some(Ok(Box::new(ScriptedSavepoint {
            key: self.key.clone(),
            journal: self.journal.clone(),
            fail: self.fail_on.borrow().contains(&Call::SavepointRollback),
        })))
    }
}
