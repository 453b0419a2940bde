//! The decision log: where the commit decision is recorded for recovery.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::{BoxError, Error, TransactionId};

/// One resource's branch of a transaction, as recorded with the commit decision.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
/// use transaction::{MemoryDecisionLog, TransactionManager};
///
/// let log = Rc::new(MemoryDecisionLog::new());
/// let manager = TransactionManager::builder().decision_log(log.clone()).build();
/// let txn = manager.begin()?;
/// txn.join(ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()).fail_on(Call::TpcFinish))?;
/// assert!(manager.commit().unwrap_err().is_heuristic()); // db is left in doubt
/// let branch = &log.pending()[0].branches[0];
/// assert_eq!(branch.resource, "db");
/// assert_eq!(branch.branch_id, Some(format!("{}:db", txn.id()))); // the resource's own name
/// # Ok::<(), transaction::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    /// The resource's sort key.
    pub resource: String,
    /// The branch name the resource gave, if any (see
    /// [`DataManager::branch_id`](crate::DataManager::branch_id)).
    pub branch_id: Option<String>,
}

/// Records the commit decision of two-phase commits, so that a coordinator that crashes
/// between the decision and the end of the second phase can finish the work on restart.
///
/// The manager calls [`record_commit`](Self::record_commit) once every resource has voted
/// yes and before the first `tpc_finish`: that call is the commit point. It calls
/// [`forget`](Self::forget) once every prepared resource has finished. A transaction that
/// is recorded and not forgotten is in doubt. When no resource prepared (everything was
/// read-only or committed in one phase), nothing is recorded.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use transaction::{MemoryDecisionLog, TransactionManager};
///
/// let log = Rc::new(MemoryDecisionLog::new());
/// let manager = TransactionManager::builder().decision_log(log.clone()).build();
/// manager.commit()?; // nothing joined: nothing to record
/// assert!(log.pending().is_empty());
/// # Ok::<(), transaction::Error>(())
/// ```
pub trait DecisionLog {
    /// Whether this log records anything; when false the manager skips building the
    /// branch list. Default: `true`.
    fn is_enabled(&self) -> bool {
        true
    }

    /// Durably records that `txn` commits, with the branches that must be finished.
    ///
    /// # Errors
    ///
    /// A failure aborts the commit: every resource is rolled back and the commit returns
    /// [`Error::DecisionLog`](crate::Error::DecisionLog). The exception is a commit in which
    /// a one-phase resource has already committed in its vote: the decision is then made,
    /// so the failure is only logged, the prepared resources are finished, and the commit
    /// succeeds without a record (and [`forget`](Self::forget) is not called).
    fn record_commit(&self, txn: TransactionId, branches: &[Branch]) -> Result<(), BoxError>;

    /// Forgets a transaction whose every branch finished.
    ///
    /// # Errors
    ///
    /// A failure is logged; the commit has happened regardless.
    fn forget(&self, txn: TransactionId) -> Result<(), BoxError>;

    /// The decisions recorded and not forgotten: what recovery must commit. Default:
    /// none (a log that keeps nothing has nothing to give back).
    ///
    /// # Errors
    ///
    /// A log that cannot read its decisions back; recovery must then not presume abort.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{DecisionLog, MemoryDecisionLog, NopDecisionLog, TransactionId};
    ///
    /// let log = MemoryDecisionLog::new();
    /// let txn = TransactionId::next();
    /// log.record_commit(txn, &[])?;
    /// assert_eq!(DecisionLog::open_decisions(&log)?[0].transaction, txn);
    /// assert!(NopDecisionLog.open_decisions()?.is_empty());
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    fn open_decisions(&self) -> Result<Vec<DecisionRecord>, BoxError> {
        Ok(Vec::new())
    }

    /// Whether recovery may roll back a prepared branch that has no open decision
    /// (presumed abort). A log that found damage that may have destroyed a decision
    /// answers `false` until an operator accepts the loss. Default: `true`.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{DecisionLog, NopDecisionLog};
    ///
    /// assert!(NopDecisionLog.may_presume_abort());
    /// ```
    fn may_presume_abort(&self) -> bool {
        true
    }

    /// Whether `error`, returned by this log's [`record_commit`](Self::record_commit), means
    /// the decision may have become durable anyway (a write or sync failed midway). The
    /// coordinator then leaves every prepared branch for recovery instead of rolling back,
    /// and fails with [`Error::OutcomeUnknown`]. Default: `false` (a failed record is no
    /// decision).
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{DecisionLog, FileLogError, NopDecisionLog};
    ///
    /// let err = FileLogError::Stopped { dir: "/tmp/txlog".into() };
    /// assert!(!NopDecisionLog.is_outcome_unknown(&err));
    /// ```
    fn is_outcome_unknown(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        let _ = error;
        false
    }
}

/// A log shared through an [`Arc`] records in the log it points to, so one log can serve
/// every thread's manager.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use std::sync::Arc;
/// use transaction::{DecisionLog, NopDecisionLog, TransactionManager};
///
/// let shared = Arc::new(NopDecisionLog);
/// let manager = TransactionManager::builder().decision_log(Rc::new(shared.clone())).build();
/// assert!(!shared.is_enabled());
/// # drop(manager);
/// ```
impl<T: DecisionLog + ?Sized> DecisionLog for Arc<T> {
    fn is_enabled(&self) -> bool {
        (**self).is_enabled()
    }

    fn record_commit(&self, txn: TransactionId, branches: &[Branch]) -> Result<(), BoxError> {
        (**self).record_commit(txn, branches)
    }

    fn forget(&self, txn: TransactionId) -> Result<(), BoxError> {
        (**self).forget(txn)
    }

    fn open_decisions(&self) -> Result<Vec<DecisionRecord>, BoxError> {
        (**self).open_decisions()
    }

    fn may_presume_abort(&self) -> bool {
        (**self).may_presume_abort()
    }

    fn is_outcome_unknown(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        (**self).is_outcome_unknown(error)
    }
}

/// Transactions of this process that are voting with a decision log enabled and have not
/// asked for their decision yet.
static DECIDING: AtomicUsize = AtomicUsize::new(0);

/// How many transactions of this process are in their vote phase with a decision log
/// enabled and will ask for a commit decision (or abort) next: a commit enters this count
/// before its first vote and leaves it just before it calls
/// [`record_commit`](DecisionLog::record_commit), or when a vote fails.
///
/// A log with group commit uses it to wait for exactly the commits that are about to
/// join a group: while the count is zero, nobody else is coming and waiting gains nothing.
///
/// # Examples
///
/// ```
/// // No commit is voting in this process.
/// assert_eq!(transaction::deciding(), 0);
/// ```
pub fn deciding() -> usize {
    DECIDING.load(Ordering::Acquire)
}

/// Keeps a voting transaction in the [`deciding`] count while it lives.
pub(crate) struct Deciding(());

impl Deciding {
    pub(crate) fn enter() -> Self {
        DECIDING.fetch_add(1, Ordering::AcqRel);
        Self(())
    }
}

impl Drop for Deciding {
    fn drop(&mut self) {
        DECIDING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A decision log every thread of the process can share.
pub type SharedDecisionLog = Arc<dyn DecisionLog + Send + Sync>;

static DEFAULT_LOG: OnceLock<SharedDecisionLog> = OnceLock::new();

/// Sets the decision log of every manager built without one: each thread's default
/// manager and [`TransactionManager::new`](crate::TransactionManager::new) /
/// [`builder`](crate::TransactionManager::builder) managers, including those created
/// before this call. Set it once, at start-up, before the first commit.
///
/// # Errors
///
/// [`Error::DecisionLogAlreadySet`] on a second call; the first log stays.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use transaction::{Error, NopDecisionLog};
///
/// transaction::set_default_decision_log(Arc::new(NopDecisionLog))?;
/// assert!(transaction::default_decision_log().is_some());
/// let again = transaction::set_default_decision_log(Arc::new(NopDecisionLog));
/// assert!(matches!(again, Err(Error::DecisionLogAlreadySet)));
/// # Ok::<(), transaction::Error>(())
/// ```
pub fn set_default_decision_log(log: SharedDecisionLog) -> Result<(), Error> {
    DEFAULT_LOG
        .set(log)
        .map_err(|_| Error::DecisionLogAlreadySet)
}

/// The log set by [`set_default_decision_log`], if any.
///
/// # Examples
///
/// ```
/// // Nothing set in this process.
/// assert!(transaction::default_decision_log().is_none());
/// ```
pub fn default_decision_log() -> Option<SharedDecisionLog> {
    DEFAULT_LOG.get().cloned()
}

/// The log of managers built without one: the process default when set, else nothing.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ProcessDefaultLog;

impl DecisionLog for ProcessDefaultLog {
    fn is_enabled(&self) -> bool {
        DEFAULT_LOG.get().is_some_and(|l| l.is_enabled())
    }

    fn record_commit(&self, txn: TransactionId, branches: &[Branch]) -> Result<(), BoxError> {
        match DEFAULT_LOG.get() {
            Some(log) => log.record_commit(txn, branches),
            None => Ok(()),
        }
    }

    fn forget(&self, txn: TransactionId) -> Result<(), BoxError> {
        match DEFAULT_LOG.get() {
            Some(log) => log.forget(txn),
            None => Ok(()),
        }
    }

    fn open_decisions(&self) -> Result<Vec<DecisionRecord>, BoxError> {
        match DEFAULT_LOG.get() {
            Some(log) => log.open_decisions(),
            None => Ok(Vec::new()),
        }
    }

    fn may_presume_abort(&self) -> bool {
        DEFAULT_LOG.get().is_none_or(|l| l.may_presume_abort())
    }

    fn is_outcome_unknown(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        DEFAULT_LOG
            .get()
            .is_some_and(|l| l.is_outcome_unknown(error))
    }
}

/// A decision log that records nothing: the default.
///
/// What it risks: the commit decision lives only in the coordinator's memory. If the
/// process dies (crash, `kill -9`, power loss, a panic that aborts) after every resource
/// prepared and before every one finished, the prepared branches stay behind on their
/// databases, holding their locks, and nothing knows whether they should commit: a restart
/// finds no record, so recovery can only presume abort and roll back branches of a
/// transaction that may already have committed on another database (a mixed outcome), or
/// an operator must decide by hand. Use it only where every transaction has at most one
/// writing resource, or where that risk is accepted; [`FileDecisionLog`](crate::FileDecisionLog)
/// records decisions durably.
///
/// # Examples
///
/// ```
/// use transaction::{DecisionLog, NopDecisionLog, TransactionId};
///
/// let log = NopDecisionLog;
/// assert!(!log.is_enabled()); // the manager does not even build the branch list
/// assert!(log.record_commit(TransactionId::next(), &[]).is_ok());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct NopDecisionLog;

impl DecisionLog for NopDecisionLog {
    fn is_enabled(&self) -> bool {
        false
    }

    fn record_commit(&self, _: TransactionId, _: &[Branch]) -> Result<(), BoxError> {
        Ok(())
    }

    fn forget(&self, _: TransactionId) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A recorded commit decision.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
/// use transaction::{MemoryDecisionLog, TransactionManager};
///
/// let log = Rc::new(MemoryDecisionLog::new());
/// let manager = TransactionManager::builder().decision_log(log.clone()).build();
/// let txn = manager.begin()?;
/// txn.join(ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()).fail_on(Call::TpcFinish))?;
/// assert!(manager.commit().is_err());
/// let record = &log.pending()[0];
/// assert_eq!(record.transaction, txn.id());
/// assert_eq!(record.branches.len(), 1);
/// # Ok::<(), transaction::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    /// The transaction that committed.
    pub transaction: TransactionId,
    /// Its prepared branches.
    pub branches: Vec<Branch>,
}

/// An in-memory decision log for tests: it keeps what would be in doubt after a crash and
/// can be told to fail.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use transaction::testing::{Journal, Kind, ScriptedDataManager};
/// use transaction::{MemoryDecisionLog, TransactionManager};
///
/// let log = Rc::new(MemoryDecisionLog::new());
/// let manager = TransactionManager::builder().decision_log(log.clone()).build();
/// let txn = manager.begin()?;
/// txn.join(ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()))?;
/// manager.commit()?;
/// assert!(log.pending().is_empty()); // recorded, then forgotten once finished
/// assert_eq!(log.forgotten(), [txn.id()]);
/// # Ok::<(), transaction::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryDecisionLog {
    pending: RefCell<Vec<DecisionRecord>>,
    forgotten: RefCell<Vec<TransactionId>>,
    fail_next_record: RefCell<Option<String>>,
}

impl MemoryDecisionLog {
    /// An empty log.
    ///
    /// # Examples
    ///
    /// ```
    /// let log = transaction::MemoryDecisionLog::new();
    /// assert!(log.pending().is_empty());
    /// assert!(log.forgotten().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Decisions recorded and not yet forgotten: the transactions in doubt.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::{MemoryDecisionLog, TransactionManager};
    ///
    /// let log = Rc::new(MemoryDecisionLog::new());
    /// let manager = TransactionManager::builder().decision_log(log.clone()).build();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()).fail_on(Call::TpcFinish))?;
    /// assert!(manager.commit().unwrap_err().is_heuristic());
    /// assert_eq!(log.pending()[0].transaction, txn.id()); // in doubt: recovery must finish it
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn pending(&self) -> Vec<DecisionRecord> {
        self.pending.borrow().clone()
    }

    /// Transactions forgotten, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::{MemoryDecisionLog, TransactionManager};
    ///
    /// let log = Rc::new(MemoryDecisionLog::new());
    /// let manager = TransactionManager::builder().decision_log(log.clone()).build();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()))?;
    /// manager.commit()?;
    /// assert_eq!(log.forgotten(), [txn.id()]);
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn forgotten(&self) -> Vec<TransactionId> {
        self.forgotten.borrow().clone()
    }

    /// Makes the next [`record_commit`](DecisionLog::record_commit) fail with `message`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::{Error, MemoryDecisionLog, TransactionManager};
    ///
    /// let log = Rc::new(MemoryDecisionLog::new());
    /// let manager = TransactionManager::builder().decision_log(log.clone()).build();
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new());
    /// manager.begin()?.join(db.clone())?;
    /// log.fail_next_record("disk full");
    /// assert!(matches!(manager.commit(), Err(Error::DecisionLog { .. })));
    /// assert!(!db.committed()); // rolled back
    /// # Ok::<(), Error>(())
    /// ```
    pub fn fail_next_record(&self, message: impl Into<String>) {
        *self.fail_next_record.borrow_mut() = Some(message.into());
    }
}

impl DecisionLog for MemoryDecisionLog {
    fn record_commit(&self, txn: TransactionId, branches: &[Branch]) -> Result<(), BoxError> {
        if let Some(message) = self.fail_next_record.borrow_mut().take() {
            return Err(message.into());
        }
        self.pending.borrow_mut().push(DecisionRecord {
            transaction: txn,
            branches: branches.to_vec(),
        });
        Ok(())
    }

    fn forget(&self, txn: TransactionId) -> Result<(), BoxError> {
        self.pending.borrow_mut().retain(|r| r.transaction != txn);
        self.forgotten.borrow_mut().push(txn);
        Ok(())
    }

    fn open_decisions(&self) -> Result<Vec<DecisionRecord>, BoxError> {
        Ok(self.pending())
    }
}
