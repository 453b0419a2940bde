//! A scripted data manager that records every call and fails on demand, for tests of
//! code built on the coordinator. Enabled by the `testing` feature.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use std::sync::Arc;

use crate::{
    DataManager, DecisionRecord, PhaseJob, PhaseOutput, ResourceError, ResourceSavepoint,
    Transaction, Vote, WriteState,
};

pub mod spans;

/// Work a [`ScriptedDataManager`] runs inside its phase jobs, on the thread that runs them.
type JobWork = Arc<dyn Fn(Call) + Send + Sync>;

/// A call made by the coordinator to a [`ScriptedDataManager`].
///
/// # Examples
///
/// ```
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
/// use transaction::TransactionManager;
///
/// let journal = Journal::new();
/// let manager = TransactionManager::new();
/// manager.begin()?.join(ScriptedDataManager::new("db", Kind::TwoPhase, &journal))?;
/// manager.commit()?;
/// let expected = [Call::TpcBegin, Call::Commit, Call::TpcVote, Call::TpcFinish];
/// assert_eq!(journal.calls_of("db"), expected);
/// # Ok::<(), transaction::Error>(())
/// ```
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
    /// `leave_prepared`
    LeavePrepared,
    /// `carry_decision`
    CarryDecision,
    /// `savepoint`
    Savepoint,
    /// a savepoint's `rollback`
    SavepointRollback,
}

/// A shared, ordered record of calls across several scripted resources.
///
/// # Examples
///
/// ```
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
/// use transaction::TransactionManager;
///
/// let journal = Journal::new();
/// let manager = TransactionManager::new();
/// let txn = manager.begin()?;
/// txn.join(ScriptedDataManager::new("b", Kind::TwoPhase, &journal))?;
/// txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))?;
/// manager.abort()?; // resources abort in join order
/// assert_eq!(journal.calls(), [("b".to_owned(), Call::Abort), ("a".to_owned(), Call::Abort)]);
/// # Ok::<(), transaction::Error>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct Journal {
    calls: Rc<RefCell<Vec<(String, Call)>>>,
}

impl Journal {
    /// An empty journal.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::Journal;
    ///
    /// let journal = Journal::new();
    /// assert!(journal.calls().is_empty());
    /// let shared = journal.clone(); // clones record into the same journal
    /// assert!(shared.calls().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, as `(sort key, call)`, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let journal = Journal::new();
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("db", Kind::ReadOnly, &journal))?;
    /// txn.commit()?;
    /// assert_eq!(journal.calls()[0], ("db".to_owned(), Call::TpcBegin));
    /// assert_eq!(journal.calls().len(), 3); // tpc_begin, commit, tpc_vote
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn calls(&self) -> Vec<(String, Call)> {
        self.calls.borrow().clone()
    }

    /// The calls made to the resource `key`, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let journal = Journal::new();
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))?;
    /// txn.join(ScriptedDataManager::new("b", Kind::TwoPhase, &journal))?;
    /// txn.abort()?;
    /// assert_eq!(journal.calls_of("b"), [Call::Abort]);
    /// assert!(journal.calls_of("c").is_empty());
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn calls_of(&self, key: &str) -> Vec<Call> {
        self.calls
            .borrow()
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, c)| *c)
            .collect()
    }

    /// Forgets every recorded call.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let journal = Journal::new();
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("db", Kind::TwoPhase, &journal))?;
    /// txn.abort()?;
    /// journal.clear();
    /// assert!(journal.calls().is_empty());
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn clear(&self) {
        self.calls.borrow_mut().clear();
    }

    fn record(&self, key: &str, call: Call) {
        self.calls.borrow_mut().push((key.to_owned(), call));
    }
}

/// The error a [`ScriptedDataManager`] fails with.
///
/// # Examples
///
/// ```
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager, ScriptedFailure};
/// use transaction::{Error, TransactionManager};
///
/// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()).fail_on(Call::TpcVote);
/// let manager = TransactionManager::new();
/// manager.begin()?.join(db)?;
/// let Err(Error::Resource { source, .. }) = manager.commit() else { panic!("expected a vote failure") };
/// let failure = source.downcast_ref::<ScriptedFailure>().expect("a scripted failure");
/// assert_eq!((failure.resource.as_str(), failure.call), ("db", Call::TpcVote));
/// assert_eq!(source.to_string(), "scripted failure of TpcVote in db");
/// # Ok::<(), Error>(())
/// ```
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
///
/// # Examples
///
/// ```
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
/// use transaction::TransactionManager;
///
/// let journal = Journal::new();
/// let pg = ScriptedDataManager::new("pg", Kind::TwoPhase, &journal);
/// let sqlite = ScriptedDataManager::new("sqlite", Kind::OnePhase, &journal);
/// let cache = ScriptedDataManager::new("cache", Kind::ReadOnly, &journal);
/// let manager = TransactionManager::new();
/// let txn = manager.begin()?;
/// for r in [&pg, &sqlite, &cache] {
///     txn.join(r.clone())?;
/// }
/// manager.commit()?;
/// assert!(pg.committed() && sqlite.committed() && !cache.committed());
/// assert_eq!(journal.calls_of("sqlite").last(), Some(&Call::TpcVote)); // committed in its vote
/// # Ok::<(), transaction::Error>(())
/// ```
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
    write_state: WriteState,
    fail_on: RefCell<Vec<Call>>,
    transient: bool,
    journal: Journal,
    committed: Cell<bool>,
    on_call: RefCell<Option<CallHook>>,
    carries: bool,
    carried: RefCell<Vec<DecisionRecord>>,
    jobs: Option<JobWork>,
}

impl fmt::Debug for ScriptedDataManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedDataManager")
            .field("key", &self.key)
            .field("kind", &self.kind)
            .field("write_state", &self.write_state)
            .field("fail_on", &self.fail_on.borrow())
            .finish_non_exhaustive()
    }
}

impl ScriptedDataManager {
    /// A resource named `key` of the given kind, recording into `journal`.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::DataManager;
    ///
    /// let journal = Journal::new();
    /// let db = ScriptedDataManager::new("db", Kind::OnePhase, &journal);
    /// assert_eq!(db.sort_key(), "db");
    /// assert!(db.is_one_phase());
    /// assert!(!db.committed());
    /// ```
    pub fn new(key: &str, kind: Kind, journal: &Journal) -> Rc<Self> {
        Rc::new(Self {
            key: key.to_owned(),
            kind,
            one_phase_commit: false,
            savepoints: false,
            write_state: WriteState::Unknown,
            fail_on: RefCell::new(Vec::new()),
            transient: false,
            journal: journal.clone(),
            committed: Cell::new(false),
            on_call: RefCell::new(None),
            carries: false,
            carried: RefCell::new(Vec::new()),
            jobs: None,
        })
    }

    fn edit(self: Rc<Self>, f: impl FnOnce(&mut Self)) -> Rc<Self> {
        let mut this = Rc::try_unwrap(self)
            .unwrap_or_else(|_| panic!("configure a ScriptedDataManager before sharing it"));
        f(&mut this);
        Rc::new(this)
    }

    /// Offers the vote and the finish as phase jobs ([`DataManager::vote_job`],
    /// [`DataManager::finish_job`]) that run `work` (given [`Call::TpcVote`] or
    /// [`Call::TpcFinish`]) on whatever thread runs them; the call is journalled, and fails
    /// if scripted to, when the coordinator completes it on the transaction's thread.
    ///
    /// # Panics
    ///
    /// When the resource is already shared (configure it before cloning the `Rc`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let threads = Arc::new(Mutex::new(Vec::new()));
    /// let seen = threads.clone();
    /// let journal = Journal::new();
    /// let work = move |_: Call| seen.lock().unwrap().push(std::thread::current().id());
    /// let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal).with_phase_jobs(work.clone());
    /// let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal).with_phase_jobs(work);
    /// let manager = TransactionManager::builder().parallel_phases(true).build();
    /// let txn = manager.begin()?;
    /// txn.join(a.clone())?;
    /// txn.join(b.clone())?;
    /// manager.commit()?;
    /// assert!(a.committed() && b.committed());
    /// assert_eq!(threads.lock().unwrap().len(), 4); // two votes, two finishes
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn with_phase_jobs(
        self: Rc<Self>,
        work: impl Fn(Call) + Send + Sync + 'static,
    ) -> Rc<Self> {
        self.edit(|s| s.jobs = Some(Arc::new(work)))
    }

    /// Makes `call` fail (every time it is made).
    ///
    /// # Panics
    ///
    /// When the resource is already shared (configure it before cloning the `Rc`).
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::{Phase, TransactionManager};
    ///
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()).fail_on(Call::Commit);
    /// let manager = TransactionManager::new();
    /// manager.begin()?.join(db.clone())?;
    /// let err = manager.commit().unwrap_err();
    /// assert_eq!((err.phase(), err.resource()), (Some(Phase::Commit), Some("db")));
    /// assert!(!db.committed());
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn fail_on(self: Rc<Self>, call: Call) -> Rc<Self> {
        self.edit(|s| s.fail_on.get_mut().push(call))
    }

    /// Makes failures report themselves transient (except a savepoint's rollback, whose
    /// failure is never transient).
    ///
    /// # Panics
    ///
    /// When the resource is already shared.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new())
    ///     .fail_on(Call::TpcVote)
    ///     .transient();
    /// let mut attempts = 0;
    /// let outcome = TransactionManager::new().run(3, |txn| {
    ///     attempts += 1;
    ///     txn.join(db.clone())
    /// });
    /// assert!(outcome.unwrap_err().is_transient());
    /// assert_eq!(attempts, 3); // retried while attempts remained
    /// ```
    pub fn transient(self: Rc<Self>) -> Rc<Self> {
        self.edit(|s| s.transient = true)
    }

    /// Offers one-phase commit when it is the only resource with work.
    ///
    /// # Panics
    ///
    /// When the resource is already shared.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let journal = Journal::new();
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &journal).with_one_phase_commit();
    /// let manager = TransactionManager::new();
    /// manager.begin()?.join(db.clone())?;
    /// manager.commit()?;
    /// assert_eq!(journal.calls_of("db"), [Call::TpcBegin, Call::Commit, Call::CommitOnePhase]);
    /// assert!(db.committed());
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn with_one_phase_commit(self: Rc<Self>) -> Rc<Self> {
        self.edit(|s| s.one_phase_commit = true)
    }

    /// Reports `state` from [`write_state`](DataManager::write_state) (default:
    /// [`WriteState::Unknown`], as the trait's default). The state is reported as scripted,
    /// whatever the resource's [`Kind`] makes it vote: a resource scripted
    /// [`WriteState::Clean`] that prepares tests a resource that misjudged its writes.
    ///
    /// # Panics
    ///
    /// When the resource is already shared.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::{TransactionManager, WriteState};
    ///
    /// let journal = Journal::new();
    /// let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal).with_write_state(WriteState::Dirty);
    /// let b = ScriptedDataManager::new("b", Kind::ReadOnly, &journal).with_write_state(WriteState::Clean);
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(a)?;
    /// txn.join(b)?;
    /// manager.commit()?;
    /// let votes: Vec<String> = journal.calls().into_iter()
    ///     .filter(|(_, call)| *call == Call::TpcVote)
    ///     .map(|(key, _)| key)
    ///     .collect();
    /// assert_eq!(votes, ["b", "a"]); // the clean resource votes first
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn with_write_state(self: Rc<Self>, state: WriteState) -> Rc<Self> {
        self.edit(|s| s.write_state = state)
    }

    /// Supports savepoints.
    ///
    /// # Panics
    ///
    /// When the resource is already shared.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let journal = Journal::new();
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("db", Kind::TwoPhase, &journal).with_savepoints())?;
    /// let sp = txn.savepoint(false)?; // every resource supports savepoints
    /// sp.rollback()?;
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn with_savepoints(self: Rc<Self>) -> Rc<Self> {
        self.edit(|s| s.savepoints = true)
    }

    /// Makes the resource [carry the commit decision](DataManager::carries_decision) when
    /// it votes last after a prepared resource; [`carried`](Self::carried) lists the
    /// records it got (kept even if its commit then fails).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::{MemoryDecisionLog, TransactionManager};
    ///
    /// let journal = Journal::new();
    /// let log = Rc::new(MemoryDecisionLog::new());
    /// let manager = TransactionManager::builder().decision_log(log.clone()).build();
    /// let lite = ScriptedDataManager::new("lite", Kind::OnePhase, &journal).with_decision_carrying();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("pg", Kind::TwoPhase, &journal))?;
    /// txn.join(lite.clone())?;
    /// manager.commit()?;
    /// assert_eq!(lite.carried()[0].branches[0].resource, "pg");
    /// assert!(log.forgotten().is_empty()); // the log recorded nothing
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn with_decision_carrying(self: Rc<Self>) -> Rc<Self> {
        self.edit(|s| s.carries = true)
    }

    /// The decision records handed to this resource by
    /// [`carry_decision`](DataManager::carry_decision), in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    ///
    /// let lite = ScriptedDataManager::new("lite", Kind::OnePhase, &Journal::new());
    /// assert!(lite.carried().is_empty());
    /// ```
    pub fn carried(&self) -> Vec<DecisionRecord> {
        self.carried.borrow().clone()
    }

    /// Replaces the calls that fail. A savepoint already taken keeps the
    /// [`Call::SavepointRollback`] failure (or not) it was taken with.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new());
    /// let manager = TransactionManager::new();
    /// manager.begin()?.join(db.clone())?; // db is shared from here on
    /// db.set_failures(&[Call::TpcBegin]);
    /// assert!(manager.commit().is_err());
    /// manager.abort()?;
    /// db.set_failures(&[]);
    /// manager.begin()?.join(db.clone())?;
    /// manager.commit()?;
    /// assert!(db.committed());
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn set_failures(&self, calls: &[Call]) {
        *self.fail_on.borrow_mut() = calls.to_vec();
    }

    /// Runs `f` at the start of every call, for re-entrancy tests.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new());
    /// db.on_call(|call, txn| {
    ///     if call == Call::TpcVote {
    ///         txn.note("db voted").expect("notes are accepted while committing");
    ///     }
    /// });
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(db)?;
    /// txn.commit()?;
    /// assert_eq!(txn.description(), "db voted");
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn on_call(&self, f: impl Fn(Call, &Transaction) + 'static) {
        *self.on_call.borrow_mut() = Some(Box::new(f));
    }

    /// Whether the resource's work committed (in `tpc_finish`, in a one-phase vote or in
    /// `commit_one_phase`).
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let journal = Journal::new();
    /// let kept = ScriptedDataManager::new("kept", Kind::TwoPhase, &journal);
    /// let dropped = ScriptedDataManager::new("dropped", Kind::TwoPhase, &journal);
    /// let manager = TransactionManager::new();
    /// manager.begin()?.join(dropped.clone())?;
    /// manager.abort()?;
    /// manager.begin()?.join(kept.clone())?;
    /// manager.commit()?;
    /// assert!(kept.committed() && !dropped.committed());
    /// # Ok::<(), transaction::Error>(())
    /// ```
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

    fn write_state(&self, _: &Transaction) -> WriteState {
        self.write_state
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

    fn vote_job(&self, _: &Transaction) -> Option<PhaseJob> {
        let work = self.jobs.clone()?;
        Some(PhaseJob::new(move || work(Call::TpcVote)))
    }

    fn complete_vote(&self, txn: &Transaction, _: PhaseOutput) -> Result<Vote, ResourceError> {
        self.tpc_vote(txn)
    }

    fn finish_job(&self, _: &Transaction) -> Option<PhaseJob> {
        let work = self.jobs.clone()?;
        Some(PhaseJob::new(move || work(Call::TpcFinish)))
    }

    fn complete_finish(&self, txn: &Transaction, _: PhaseOutput) -> Result<(), ResourceError> {
        self.tpc_finish(txn)
    }

    fn tpc_abort(&self, txn: &Transaction) -> Result<(), ResourceError> {
        self.call(Call::TpcAbort, txn)
    }

    fn leave_prepared(&self, txn: &Transaction) {
        // Journalled only: leaving a branch cannot fail.
        let _ = self.call(Call::LeavePrepared, txn);
    }

    fn supports_one_phase_commit(&self) -> bool {
        self.one_phase_commit
    }

    fn carries_decision(&self, _: &Transaction) -> bool {
        self.carries
    }

    fn carry_decision(
        &self,
        txn: &Transaction,
        decision: &DecisionRecord,
    ) -> Result<(), ResourceError> {
        self.call(Call::CarryDecision, txn)?;
        self.carried.borrow_mut().push(decision.clone());
        Ok(())
    }

    fn commit_one_phase(&self, txn: &Transaction) -> Result<(), ResourceError> {
        self.call(Call::CommitOnePhase, txn)?;
        self.committed.set(true);
        Ok(())
    }

    fn branch_id(&self, txn: &Transaction) -> Option<String> {
        Some(format!("{}:{}", txn.id(), self.key))
    }

    fn supports_savepoints(&self) -> bool {
        self.savepoints
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
