//! Errors of the coordinator and of the resources it drives.

use std::fmt;

use crate::{Status, TransactionId};

/// A boxed error from user code or a resource, as carried in [`Error`]'s `source()`.
///
/// # Examples
///
/// ```
/// use transaction::BoxError;
///
/// let err: BoxError = "disk full".into();
/// assert_eq!(err.to_string(), "disk full");
/// let err: BoxError = std::io::Error::other("broken pipe").into();
/// assert!(err.downcast_ref::<std::io::Error>().is_some());
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error defaults to this crate's [`Error`].
///
/// # Examples
///
/// ```
/// use transaction::{Error, TransactionManager};
///
/// let committed: transaction::Result<()> = TransactionManager::new().commit();
/// assert!(committed.is_ok());
///
/// fn parse(s: &str) -> transaction::Result<u8, std::num::ParseIntError> {
///     s.parse()
/// }
/// assert!(parse("x").is_err());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Answers "should this unit of work be tried again in a fresh transaction?".
///
/// [`TransactionManager::run`](crate::TransactionManager::run) retries only errors that
/// say they are transient: a serialization failure or a deadlock reported by a database,
/// for example. Implement it for your application's error type so that errors from your
/// own code can take part in the decision.
///
/// # Examples
///
/// ```
/// use transaction::Transient;
///
/// #[derive(Debug)]
/// enum AppError { Conflict, Invalid }
///
/// impl Transient for AppError {
///     fn is_transient(&self) -> bool {
///         matches!(self, AppError::Conflict)
///     }
/// }
/// assert!(AppError::Conflict.is_transient());
/// assert!(!AppError::Invalid.is_transient());
/// ```
pub trait Transient {
    /// Whether the same work, retried in a new transaction, may succeed.
    fn is_transient(&self) -> bool;
}

/// An error reported by a resource (a [`DataManager`](crate::DataManager)).
///
/// It wraps the resource's own error and says whether retrying may help. Its `Display`
/// and `source()` are those of the wrapped error, so it adds no noise to an error chain.
///
/// # Examples
///
/// ```
/// use transaction::{ResourceError, Transient};
///
/// let err = ResourceError::transient(std::io::Error::other("deadlock detected"));
/// assert!(err.is_transient());
/// assert_eq!(err.to_string(), "deadlock detected");
/// ```
pub struct ResourceError {
    inner: BoxError,
    transient: bool,
    outcome_unknown: bool,
}

impl ResourceError {
    /// Wraps a resource's error that retrying will not fix.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::ResourceError;
    ///
    /// let err = ResourceError::new("duplicate key value violates unique constraint");
    /// assert!(!err.is_transient());
    /// assert_eq!(err.to_string(), "duplicate key value violates unique constraint");
    /// ```
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self {
            inner: error.into(),
            transient: false,
            outcome_unknown: false,
        }
    }

    /// Wraps a resource's error that a retry in a fresh transaction may not meet again
    /// (a serialization failure, a deadlock, a lock wait timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::ResourceError;
    ///
    /// let err = ResourceError::transient("could not serialize access");
    /// assert!(err.is_transient());
    /// assert_eq!(err.to_string(), "could not serialize access");
    /// ```
    pub fn transient(error: impl Into<BoxError>) -> Self {
        Self {
            inner: error.into(),
            transient: true,
            outcome_unknown: false,
        }
    }

    /// Wraps the error of a resource that cannot tell whether its commit happened (its
    /// COMMIT got no answer and the server could not be asked since). Only meaningful from
    /// a resource that [carries the decision](crate::DataManager::carries_decision): the
    /// coordinator then leaves every prepared resource for recovery, which decides from the
    /// resource's copy of the decision, and fails with
    /// [`Error::OutcomeUnknown`].
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::ResourceError;
    ///
    /// let err = ResourceError::outcome_unknown("connection lost during COMMIT");
    /// assert!(err.is_outcome_unknown() && !err.is_transient());
    /// ```
    pub fn outcome_unknown(error: impl Into<BoxError>) -> Self {
        Self {
            inner: error.into(),
            transient: false,
            outcome_unknown: true,
        }
    }

    /// Whether the resource cannot tell if its commit happened (see
    /// [`outcome_unknown`](Self::outcome_unknown)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!transaction::ResourceError::new("syntax error").is_outcome_unknown());
    /// ```
    pub fn is_outcome_unknown(&self) -> bool {
        self.outcome_unknown
    }

    /// Whether retrying the work in a new transaction may succeed.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::ResourceError;
    ///
    /// assert!(ResourceError::transient("deadlock detected").is_transient());
    /// assert!(!ResourceError::new("syntax error").is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The resource's own error.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::ResourceError;
    ///
    /// let err = ResourceError::new(std::io::Error::other("broken pipe"));
    /// assert_eq!(err.inner().to_string(), "broken pipe");
    /// ```
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.inner
    }

    /// Takes the resource's own error out.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{BoxError, ResourceError};
    ///
    /// let err = ResourceError::new(std::io::Error::other("broken pipe"));
    /// let inner: BoxError = err.into_inner();
    /// assert!(inner.downcast_ref::<std::io::Error>().is_some());
    /// ```
    pub fn into_inner(self) -> BoxError {
        self.inner
    }

    /// Tries to view the resource's own error as a concrete type.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Error as IoError, ErrorKind};
    /// use transaction::ResourceError;
    ///
    /// let err = ResourceError::new(IoError::new(ErrorKind::TimedOut, "lock wait timeout"));
    /// let kind = err.downcast_ref::<IoError>().map(IoError::kind);
    /// assert_eq!(kind, Some(ErrorKind::TimedOut));
    /// assert!(err.downcast_ref::<std::fmt::Error>().is_none());
    /// ```
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.inner.downcast_ref::<E>()
    }
}

impl Transient for ResourceError {
    fn is_transient(&self) -> bool {
        self.transient
    }
}

impl fmt::Debug for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceError")
            .field("inner", &self.inner)
            .field("transient", &self.transient)
            .finish()
    }
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for ResourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

/// The step of the protocol in which a resource or hook failed.
///
/// # Examples
///
/// ```
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
/// use transaction::{Phase, TransactionManager};
///
/// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()).fail_on(Call::TpcBegin);
/// let manager = TransactionManager::new();
/// manager.begin()?.join(db)?;
/// let err = manager.commit().unwrap_err();
/// assert_eq!(err.phase(), Some(Phase::TpcBegin));
/// # Ok::<(), transaction::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// A before-commit hook.
    BeforeCommitHook,
    /// An after-commit hook (its failure is logged and never changes the outcome).
    AfterCommitHook,
    /// A before-abort hook.
    BeforeAbortHook,
    /// An after-abort hook.
    AfterAbortHook,
    /// A synchronizer's `before_completion`.
    BeforeCompletion,
    /// [`DataManager::tpc_begin`](crate::DataManager::tpc_begin).
    TpcBegin,
    /// [`DataManager::commit`](crate::DataManager::commit) (the flush step).
    Commit,
    /// [`DataManager::tpc_vote`](crate::DataManager::tpc_vote).
    Vote,
    /// [`DataManager::commit_one_phase`](crate::DataManager::commit_one_phase).
    OnePhaseCommit,
    /// Recording the commit decision in the [`DecisionLog`](crate::DecisionLog).
    DecisionLog,
    /// [`DataManager::tpc_finish`](crate::DataManager::tpc_finish).
    Finish,
    /// [`DataManager::abort`](crate::DataManager::abort) during an explicit abort.
    Abort,
    /// Taking a savepoint.
    Savepoint,
    /// Rolling a savepoint back.
    SavepointRollback,
}

impl Phase {
    /// The phase's name as the documentation spells it (`tpc_vote`, `tpc_finish`, ...).
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::Phase;
    ///
    /// assert_eq!(Phase::Vote.as_str(), "tpc_vote");
    /// assert_eq!(Phase::BeforeCommitHook.as_str(), "before-commit hook");
    /// assert_eq!(Phase::Finish.to_string(), "tpc_finish"); // Display is as_str
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::BeforeCommitHook => "before-commit hook",
            Phase::AfterCommitHook => "after-commit hook",
            Phase::BeforeAbortHook => "before-abort hook",
            Phase::AfterAbortHook => "after-abort hook",
            Phase::BeforeCompletion => "before_completion",
            Phase::TpcBegin => "tpc_begin",
            Phase::Commit => "commit",
            Phase::Vote => "tpc_vote",
            Phase::OnePhaseCommit => "one-phase commit",
            Phase::DecisionLog => "decision log",
            Phase::Finish => "tpc_finish",
            Phase::Abort => "abort",
            Phase::Savepoint => "savepoint",
            Phase::SavepointRollback => "savepoint rollback",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A commit whose outcome differs between resources: some committed and at least one did
/// not.
///
/// It arises in exactly two ways, told apart by [`phase`](Self::phase):
///
/// - [`Phase::Finish`]: the decision to commit was taken (every resource voted yes) and at
///   least one resource failed `tpc_finish`. Those in [`failed`](Self::failed) hold a
///   prepared branch in doubt: recovery, or an operator, must commit them.
/// - [`Phase::Vote`]: before the decision, a resource had already committed in its vote
///   ([`Vote::Committed`](crate::Vote::Committed)) and a resource voting after it failed
///   its vote. The failed resource, and every resource not yet committed, were rolled back.
///   Since one-phase resources vote last, this takes several of them (accepted with
///   [`allow_multiple_one_phase`](crate::TransactionManagerBuilder::allow_multiple_one_phase)),
///   or a resource that commits in its vote without declaring itself
///   [one-phase](crate::DataManager::is_one_phase).
///
/// Resources listed in [`committed`](Self::committed) have committed in both cases.
///
/// # Examples
///
/// ```
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
/// use transaction::{Error, TransactionManager};
///
/// let journal = Journal::new();
/// let manager = TransactionManager::new();
/// let txn = manager.begin()?;
/// txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))?;
/// txn.join(ScriptedDataManager::new("b", Kind::TwoPhase, &journal).fail_on(Call::TpcFinish))?;
/// let Err(Error::Heuristic(outcome)) = manager.commit() else { panic!("expected a mixed outcome") };
/// assert_eq!(outcome.committed(), ["a"]);
/// assert_eq!(outcome.failed()[0].0, "b"); // prepared, in doubt
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
pub struct HeuristicError {
    transaction: TransactionId,
    phase: Phase,
    committed: Vec<String>,
    failed: Vec<(String, ResourceError)>,
}

impl HeuristicError {
    pub(crate) fn new(
        transaction: TransactionId,
        phase: Phase,
        committed: Vec<String>,
        failed: Vec<(String, ResourceError)>,
    ) -> Self {
        Self {
            transaction,
            phase,
            committed,
            failed,
        }
    }

    /// The phase that failed, one of two: [`Phase::Finish`] when a `tpc_finish` failed
    /// after the commit decision (the failed resources are prepared and in doubt), or
    /// [`Phase::Vote`] when a vote failed after another resource had committed in its vote
    /// (the failed resources were rolled back). See the type's documentation.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::{Error, Phase, TransactionManager};
    ///
    /// let journal = Journal::new();
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))?;
    /// txn.join(ScriptedDataManager::new("b", Kind::TwoPhase, &journal).fail_on(Call::TpcFinish))?;
    /// let Err(Error::Heuristic(outcome)) = manager.commit() else { panic!("expected a mixed outcome") };
    /// assert_eq!(outcome.phase(), Phase::Finish); // b is prepared and in doubt
    /// manager.abort()?;
    ///
    /// // Two one-phase resources, accepted: the second fails after the first committed.
    /// let manager = TransactionManager::builder().allow_multiple_one_phase(true).build();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("x", Kind::OnePhase, &journal))?;
    /// txn.join(ScriptedDataManager::new("y", Kind::OnePhase, &journal).fail_on(Call::TpcVote))?;
    /// let Err(Error::Heuristic(outcome)) = manager.commit() else { panic!("expected a mixed outcome") };
    /// assert_eq!(outcome.phase(), Phase::Vote); // y was rolled back
    /// assert_eq!(outcome.committed(), ["x"]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The transaction whose commit had a mixed outcome.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::{Error, TransactionManager};
    ///
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()).fail_on(Call::TpcFinish))?;
    /// let Err(Error::Heuristic(outcome)) = manager.commit() else { panic!("expected a mixed outcome") };
    /// assert_eq!(outcome.transaction(), txn.id());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn transaction(&self) -> TransactionId {
        self.transaction
    }

    /// Sort keys of the resources that committed.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::{Error, TransactionManager};
    ///
    /// let journal = Journal::new();
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))?;
    /// txn.join(ScriptedDataManager::new("b", Kind::TwoPhase, &journal))?;
    /// txn.join(ScriptedDataManager::new("c", Kind::TwoPhase, &journal).fail_on(Call::TpcFinish))?;
    /// let Err(Error::Heuristic(outcome)) = manager.commit() else { panic!("expected a mixed outcome") };
    /// assert_eq!(outcome.committed(), ["a", "b"]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn committed(&self) -> &[String] {
        &self.committed
    }

    /// Sort keys of the resources that did not (or may not) have committed, with why.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::{Error, TransactionManager};
    ///
    /// let journal = Journal::new();
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal).fail_on(Call::TpcFinish))?;
    /// txn.join(ScriptedDataManager::new("b", Kind::TwoPhase, &journal))?;
    /// let Err(Error::Heuristic(outcome)) = manager.commit() else { panic!("expected a mixed outcome") };
    /// let (key, why) = &outcome.failed()[0];
    /// assert_eq!((key.as_str(), why.to_string().as_str()), ("a", "scripted failure of TpcFinish in a"));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn failed(&self) -> &[(String, ResourceError)] {
        &self.failed
    }
}

impl fmt::Display for HeuristicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "transaction {} committed in some resources but not in others: committed [{}]; not committed [",
            self.transaction,
            self.committed.join(", ")
        )?;
        for (i, (key, err)) in self.failed.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{key}: {err}")?;
        }
        if self.phase == Phase::Finish {
            f.write_str("]; resolve the branches left in doubt with recovery")
        } else {
            write!(f, "] (failed at {}; they were rolled back)", self.phase)
        }
    }
}

impl std::error::Error for HeuristicError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failed
            .first()
            .map(|(_, e)| e as &(dyn std::error::Error + 'static))
    }
}

/// Everything that can go wrong in the coordinator.
///
/// The variants say what happened and what was committed: every variant but
/// [`Error::Heuristic`] means nothing was committed by the operation that returned it.
///
/// # Examples
///
/// ```
/// use transaction::{Error, TransactionManager};
///
/// let manager = TransactionManager::builder().explicit(true).build();
/// let err = manager.commit().unwrap_err();
/// assert!(matches!(err, Error::NoTransaction));
/// assert!(!err.is_transient() && !err.is_heuristic()); // nothing was committed
/// assert!(err.to_string().starts_with("no transaction has begun"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transaction was doomed; it can only be aborted. Nothing was changed.
    #[error("the transaction is doomed and cannot be committed: call abort()")]
    Doomed,

    /// A previous commit (or savepoint rollback) of this transaction failed; only
    /// `abort()` is accepted until the transaction ends.
    #[error("a previous operation of this transaction failed: call abort() before using it again")]
    TransactionFailed,

    /// The manager is in explicit mode and no transaction has begun.
    #[error("no transaction has begun: call begin() first (the manager is in explicit mode)")]
    NoTransaction,

    /// The manager is in explicit mode and a transaction is already in progress.
    #[error("a transaction is already in progress: commit or abort it before begin() (the manager is in explicit mode)")]
    AlreadyInTransaction,

    /// The operation does not apply to a transaction in this status.
    #[error("cannot {operation} a transaction whose status is {status}")]
    InvalidState {
        /// What was attempted (`commit`, `join`, ...).
        operation: &'static str,
        /// The transaction's status at the time.
        status: Status,
    },

    /// A resource failed before the commit decision, or during an abort or a savepoint.
    /// Nothing was committed; every resource was rolled back.
    #[error("{phase} failed in resource {resource}; nothing was committed")]
    Resource {
        /// The step that failed.
        phase: Phase,
        /// The failing resource's sort key.
        resource: String,
        /// The resource's error.
        #[source]
        source: ResourceError,
    },

    /// A hook or a synchronizer's `before_completion` failed; nothing was committed.
    ///
    /// From `commit()`: a before-commit hook or `before_completion` failed, and every
    /// resource was aborted. From `abort()`: a before-abort hook, `before_completion` or an
    /// after-abort hook failed, and the abort still completed (an after-commit hook's
    /// failure is only logged).
    #[error("{phase} failed; nothing was committed")]
    Hook {
        /// [`Phase::BeforeCommitHook`] or [`Phase::BeforeCompletion`] from `commit()`;
        /// [`Phase::BeforeAbortHook`], [`Phase::BeforeCompletion`] or
        /// [`Phase::AfterAbortHook`] from `abort()`.
        phase: Phase,
        /// The hook's error.
        #[source]
        source: BoxError,
    },

    /// The commit decision could not be recorded; every resource was rolled back.
    #[error("could not record the commit decision; nothing was committed")]
    DecisionLog {
        /// The log's error.
        #[source]
        source: BoxError,
    },

    /// Recording the commit decision failed in a way that may still have made it durable
    /// (see [`DecisionLog::is_outcome_unknown`](crate::DecisionLog::is_outcome_unknown)).
    /// The transaction may commit or roll back: every prepared branch was left prepared for
    /// recovery, which decides from what the log holds. Nothing was rolled back.
    #[error("could not tell whether the commit decision was recorded: the outcome is unknown until recovery finishes the prepared branches")]
    OutcomeUnknown {
        /// The log's error.
        #[source]
        source: BoxError,
    },

    /// [`set_default_decision_log`](crate::set_default_decision_log) was called a second
    /// time; the first log stays.
    #[error("a default decision log is already set for this process; set it once, at start-up")]
    DecisionLogAlreadySet,

    /// More than one resource that can only commit in one phase joined the transaction.
    /// Committing them one after the other could commit one and not the other, so nothing
    /// was committed. Use a single one-phase resource per transaction, or accept the risk
    /// with [`TransactionManagerBuilder::allow_multiple_one_phase`](crate::TransactionManagerBuilder::allow_multiple_one_phase).
    #[error("resources [{}] can only commit in one phase; more than one per transaction could commit partially, so nothing was committed", .resources.join(", "))]
    TooManyOnePhase {
        /// Sort keys of the one-phase resources.
        resources: Vec<String>,
    },

    /// A resource cannot take savepoints (or cannot roll back an optimistic one).
    #[error("resource {resource} does not support savepoints")]
    SavepointNotSupported {
        /// The resource's sort key.
        resource: String,
    },

    /// The savepoint was invalidated: by the end of its transaction, or by rolling back to
    /// an earlier savepoint.
    #[error("the savepoint is no longer valid: its transaction ended or an earlier savepoint was rolled back")]
    InvalidSavepoint,

    /// [`run`](crate::TransactionManager::run) was given 0 attempts: the work was not
    /// called and no transaction began.
    #[error("run() needs at least 1 attempt, it was given 0")]
    NoAttempts,

    /// Resources disagree: some committed, some did not. See [`HeuristicError`].
    #[error(transparent)]
    Heuristic(Box<HeuristicError>),
}

impl Error {
    /// Whether retrying the whole unit of work in a fresh transaction may succeed.
    ///
    /// True only for an [`Error::Resource`] whose error is transient (see
    /// [`ResourceError::transient`]) and that came from a commit before its decision or
    /// from taking a savepoint; never for a failed abort or savepoint rollback. A
    /// heuristic outcome is never transient: something already committed.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new())
    ///     .fail_on(Call::TpcVote)
    ///     .transient(); // say, a serialization failure
    /// let manager = TransactionManager::new();
    /// manager.begin()?.join(db)?;
    /// assert!(manager.commit().unwrap_err().is_transient());
    /// assert!(!transaction::Error::Doomed.is_transient());
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Resource { source, phase, .. } => {
                source.is_transient() && !matches!(phase, Phase::Abort | Phase::SavepointRollback)
            }
            _ => false,
        }
    }

    /// The phase that failed, where one resource or hook is to blame.
    ///
    /// [`Error::DecisionLog`] gives [`Phase::DecisionLog`]. [`Error::Heuristic`] gives its
    /// [`HeuristicError::phase`]: [`Phase::Finish`] when a `tpc_finish` failed after the
    /// decision, [`Phase::Vote`] when a vote failed after another resource had committed
    /// in its vote.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::{Error, Phase, TransactionManager};
    ///
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()).fail_on(Call::TpcVote);
    /// let manager = TransactionManager::new();
    /// manager.begin()?.join(db)?;
    /// assert_eq!(manager.commit().unwrap_err().phase(), Some(Phase::Vote));
    /// assert_eq!(Error::Doomed.phase(), None);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn phase(&self) -> Option<Phase> {
        match self {
            Error::Resource { phase, .. } | Error::Hook { phase, .. } => Some(*phase),
            Error::DecisionLog { .. } | Error::OutcomeUnknown { .. } => Some(Phase::DecisionLog),
            Error::Heuristic(h) => Some(h.phase()),
            _ => None,
        }
    }

    /// The sort key of the resource to blame, where there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::{Error, TransactionManager};
    ///
    /// let journal = Journal::new();
    /// let manager = TransactionManager::new();
    /// let txn = manager.begin()?;
    /// txn.join(ScriptedDataManager::new("orders", Kind::TwoPhase, &journal))?;
    /// txn.join(ScriptedDataManager::new("stock", Kind::TwoPhase, &journal).fail_on(Call::Commit))?;
    /// assert_eq!(manager.commit().unwrap_err().resource(), Some("stock"));
    /// assert_eq!(Error::Doomed.resource(), None);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn resource(&self) -> Option<&str> {
        match self {
            Error::Resource { resource, .. } | Error::SavepointNotSupported { resource } => {
                Some(resource)
            }
            _ => None,
        }
    }

    /// Whether some resource may have committed: true only for [`Error::Heuristic`].
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    /// use transaction::{Error, TransactionManager};
    ///
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()).fail_on(Call::TpcFinish);
    /// let manager = TransactionManager::new();
    /// manager.begin()?.join(db)?;
    /// assert!(manager.commit().unwrap_err().is_heuristic()); // failed after the decision
    /// assert!(!Error::Doomed.is_heuristic());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn is_heuristic(&self) -> bool {
        matches!(self, Error::Heuristic(_))
    }
}

impl Transient for Error {
    fn is_transient(&self) -> bool {
        Error::is_transient(self)
    }
}
