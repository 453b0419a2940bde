//! The transaction manager: begins, tracks and ends transactions for one thread.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use crate::error::{BoxError, Error, Result, Transient};
use crate::log::{DecisionLog, ProcessDefaultLog};
use crate::{DataManager, Savepoint, Transaction};

/// Observes every transaction of a manager (zope's `ISynchronizer`).
///
/// Register one with [`TransactionManager::register_synchronizer`]. Every method has a
/// default that does nothing.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use transaction::{Synchronizer, Transaction, TransactionManager};
///
/// #[derive(Default)]
/// struct Completions(Cell<u32>);
///
/// impl Synchronizer for Completions {
///     fn after_completion(&self, _: &Transaction) {
///         self.0.set(self.0.get() + 1);
///     }
/// }
///
/// let manager = TransactionManager::new();
/// let completions = Rc::new(Completions::default());
/// manager.register_synchronizer(completions.clone());
/// manager.begin()?.commit()?;
/// manager.begin()?.abort()?;
/// assert_eq!(completions.0.get(), 2);
/// # Ok::<(), transaction::Error>(())
/// ```
pub trait Synchronizer {
    /// Called at the start of `commit()` (after before-commit hooks) and of `abort()`
    /// (after before-abort hooks).
    ///
    /// # Errors
    ///
    /// During a commit, an error aborts every resource and fails the commit with
    /// [`Error::Hook`]. During an abort it is logged at error level, the abort still
    /// aborts every resource and runs the after-abort hooks and `after_completion`, and
    /// `abort()` returns its first error as [`Error::Hook`].
    fn before_completion(&self, txn: &Transaction) -> std::result::Result<(), BoxError> {
        let _ = txn;
        Ok(())
    }

    /// Called once a commit attempt or an abort has finished, whatever the outcome: after
    /// a commit, before the after-commit hooks; after an abort, after the after-abort
    /// hooks (zope's order).
    fn after_completion(&self, txn: &Transaction) {
        let _ = txn;
    }

    /// Called when [`TransactionManager::begin`] begins a transaction, and at registration
    /// for the current one. A transaction begun implicitly (by `get()`, or `commit()`,
    /// `doom()`, `savepoint()` with none current) is not announced, as in zope.
    fn new_transaction(&self, txn: &Transaction) {
        let _ = txn;
    }
}

/// Identifies a registered synchronizer, for [`TransactionManager::unregister_synchronizer`].
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use transaction::{Synchronizer, TransactionManager};
///
/// struct Quiet;
/// impl Synchronizer for Quiet {}
///
/// let manager = TransactionManager::new();
/// let id = manager.register_synchronizer(Rc::new(Quiet));
/// assert!(manager.unregister_synchronizer(id));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SynchronizerId(u64);

pub(crate) struct ManagerInner {
    explicit: bool,
    allow_multiple_one_phase: bool,
    parallel_phases: Cell<bool>,
    decision_log: Rc<dyn DecisionLog>,
    current: RefCell<Option<Transaction>>,
    synchronizers: RefCell<Vec<(SynchronizerId, Rc<dyn Synchronizer>)>>,
    next_sync: Cell<u64>,
    /// An empty resource list kept from a committed transaction for the next one, so
    /// that a transaction after the first allocates none.
    spare_resources: Cell<Vec<Rc<dyn DataManager>>>,
}

impl ManagerInner {
    pub(crate) fn allow_multiple_one_phase(&self) -> bool {
        self.allow_multiple_one_phase
    }

    pub(crate) fn parallel_phases(&self) -> bool {
        self.parallel_phases.get()
    }

    pub(crate) fn decision_log(&self) -> Rc<dyn DecisionLog> {
        self.decision_log.clone()
    }

    pub(crate) fn synchronizers(&self) -> Vec<Rc<dyn Synchronizer>> {
        let syncs = self.synchronizers.borrow();
        if syncs.is_empty() {
            return Vec::new();
        }
        syncs.iter().map(|(_, s)| s.clone()).collect()
    }

    /// Keeps the (emptied) resource list of a committed transaction for the next one.
    pub(crate) fn recycle_resources(&self, mut resources: Vec<Rc<dyn DataManager>>) {
        // A list grown for an unusually large transaction is not worth keeping.
        if resources.capacity() <= 64 {
            resources.clear();
            self.spare_resources.set(resources);
        }
    }

    /// Forgets `txn` as the current transaction if it is.
    pub(crate) fn free(&self, txn: &Transaction) {
        let mut current = self.current.borrow_mut();
        if current.as_ref().is_some_and(|c| c.ptr_eq(txn)) {
            *current = None;
        }
    }
}

impl Drop for ManagerInner {
    fn drop(&mut self) {
        let txn = self.current.get_mut().take();
        if let Some(txn) = txn {
            txn.abort_abandoned("transaction manager dropped (or its thread ended)");
        }
    }
}

/// Begins, tracks and ends transactions: zope's `TransactionManager`.
///
/// Each thread has a default manager, created lazily, that the free functions
/// ([`crate::begin`], [`crate::commit`], ...) use. A manager is also a plain value: create
/// one with [`TransactionManager::new`] or [`TransactionManager::builder`], use it
/// directly, or install it as the thread's current manager for a scope with
/// [`TransactionManager::scope`]. A manager is a cheap handle (`Clone` shares it) and is
/// bound to its thread (neither `Send` nor `Sync`).
///
/// When the last handle is dropped (for the default manager: when the thread ends) with a
/// transaction still open, that transaction is aborted and a warning is logged: nothing
/// is ever committed implicitly.
///
/// # Examples
///
/// ```
/// use transaction::TransactionManager;
///
/// let manager = TransactionManager::builder().explicit(true).build();
/// assert!(manager.get().is_err()); // explicit mode: begin() first
/// let txn = manager.begin()?;
/// assert!(manager.get()?.ptr_eq(&txn));
/// manager.commit()?;
/// # Ok::<(), transaction::Error>(())
/// ```
#[derive(Clone)]
pub struct TransactionManager {
    inner: Rc<ManagerInner>,
}

impl fmt::Debug for TransactionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionManager")
            .field("explicit", &self.inner.explicit)
            .field(
                "current",
                &self.inner.current.try_borrow().ok().map(|c| c.clone()),
            )
            .finish()
    }
}

impl Default for TransactionManager {
    fn default() -> Self {
        Self::new()
    }
}

/// Configures a [`TransactionManager`].
///
/// # Examples
///
/// ```
/// let manager = transaction::TransactionManager::builder()
///     .explicit(true)
///     .allow_multiple_one_phase(false)
///     .build();
/// assert!(manager.is_explicit());
/// ```
#[must_use]
pub struct TransactionManagerBuilder {
    explicit: bool,
    allow_multiple_one_phase: bool,
    parallel_phases: bool,
    decision_log: Rc<dyn DecisionLog>,
}

impl fmt::Debug for TransactionManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionManagerBuilder")
            .field("explicit", &self.explicit)
            .field("allow_multiple_one_phase", &self.allow_multiple_one_phase)
            .field("parallel_phases", &self.parallel_phases)
            .finish_non_exhaustive()
    }
}

impl TransactionManagerBuilder {
    /// Explicit mode: `get()`, `commit()` and `abort()` without `begin()` fail with
    /// [`Error::NoTransaction`], and `begin()` during a transaction fails with
    /// [`Error::AlreadyInTransaction`], instead of beginning or replacing one implicitly.
    /// Default: `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{Error, TransactionManager};
    ///
    /// let manager = TransactionManager::builder().explicit(true).build();
    /// assert!(matches!(manager.commit(), Err(Error::NoTransaction)));
    /// let _txn = manager.begin()?;
    /// assert!(matches!(manager.begin(), Err(Error::AlreadyInTransaction)));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn explicit(mut self, explicit: bool) -> Self {
        self.explicit = explicit;
        self
    }

    /// Accepts more than one one-phase resource in a transaction, with a warning logged
    /// at each such commit. They commit one after the other, so a failure of a later one
    /// leaves the earlier ones committed (reported as [`Error::Heuristic`]). Default:
    /// `false` (such a commit fails with [`Error::TooManyOnePhase`] before anything is
    /// committed).
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let journal = Journal::new();
    /// let a = ScriptedDataManager::new("a", Kind::OnePhase, &journal);
    /// let b = ScriptedDataManager::new("b", Kind::OnePhase, &journal);
    /// let manager = TransactionManager::builder().allow_multiple_one_phase(true).build();
    /// let txn = manager.begin()?;
    /// txn.join(a.clone())?;
    /// txn.join(b.clone())?;
    /// manager.commit()?;
    /// assert!(a.committed() && b.committed());
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn allow_multiple_one_phase(mut self, allow: bool) -> Self {
        self.allow_multiple_one_phase = allow;
        self
    }

    /// Parallel phases: the votes of the two-phase resources that offer their vote as a
    /// job ([`DataManager::vote_job`](crate::DataManager::vote_job)) run at the same time,
    /// on a small set of reusable worker threads, and so do their finishes
    /// ([`DataManager::finish_job`](crate::DataManager::finish_job)). The decision is still
    /// recorded only after every vote is in; a one-phase resource still votes last and
    /// alone; the resource that may commit in one phase still votes after the others
    /// unless one of them reported [`WriteState::Dirty`](crate::WriteState::Dirty); a
    /// failure still aborts every resource. Resources that offer no job vote and finish
    /// on the transaction's thread, as with `false`. Default: `true`
    /// ([`PARALLEL_PHASES_DEFAULT`](crate::PARALLEL_PHASES_DEFAULT); see
    /// docs/performance.md for the measurements behind it).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::builder().parallel_phases(false).build();
    /// assert!(!manager.parallel_phases());
    /// ```
    pub fn parallel_phases(mut self, parallel: bool) -> Self {
        self.parallel_phases = parallel;
        self
    }

    /// Where commit decisions are recorded. Default: the process's
    /// [`default_decision_log`](crate::default_decision_log) when one is set, else
    /// nothing is recorded (as [`NopDecisionLog`](crate::NopDecisionLog)).
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
    /// assert_eq!(log.forgotten(), [txn.id()]); // recorded, finished, forgotten
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn decision_log(mut self, log: Rc<dyn DecisionLog>) -> Self {
        self.decision_log = log;
        self
    }

    /// Builds the manager.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::builder().build();
    /// assert!(!manager.is_explicit());
    /// assert!(manager.current().is_none());
    /// ```
    pub fn build(self) -> TransactionManager {
        TransactionManager {
            inner: Rc::new(ManagerInner {
                explicit: self.explicit,
                allow_multiple_one_phase: self.allow_multiple_one_phase,
                parallel_phases: Cell::new(self.parallel_phases),
                decision_log: self.decision_log,
                current: RefCell::new(None),
                synchronizers: RefCell::new(Vec::new()),
                next_sync: Cell::new(0),
                spare_resources: Cell::new(Vec::new()),
            }),
        }
    }
}

impl TransactionManager {
    /// A manager with the default configuration (implicit mode, no decision log).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// assert!(!manager.is_explicit());
    /// let txn = manager.get()?; // implicit mode: begins one
    /// assert_eq!(txn.status(), transaction::Status::Active);
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for a configured manager.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::TransactionManager;
    ///
    /// let manager = TransactionManager::builder().explicit(true).build();
    /// assert!(manager.is_explicit());
    /// ```
    pub fn builder() -> TransactionManagerBuilder {
        TransactionManagerBuilder {
            explicit: false,
            allow_multiple_one_phase: false,
            parallel_phases: crate::PARALLEL_PHASES_DEFAULT,
            decision_log: Rc::new(ProcessDefaultLog),
        }
    }

    /// Whether this manager runs the phases of resources that offer jobs in parallel (see
    /// [`TransactionManagerBuilder::parallel_phases`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// assert_eq!(manager.parallel_phases(), transaction::PARALLEL_PHASES_DEFAULT);
    /// ```
    pub fn parallel_phases(&self) -> bool {
        self.inner.parallel_phases()
    }

    /// Turns parallel phases on or off for the following commits (see
    /// [`TransactionManagerBuilder::parallel_phases`]); for the thread's default manager:
    /// `transaction::manager().set_parallel_phases(false)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// manager.set_parallel_phases(false);
    /// assert!(!manager.parallel_phases());
    /// ```
    pub fn set_parallel_phases(&self, parallel: bool) {
        self.inner.parallel_phases.set(parallel);
    }

    /// Whether the manager is in explicit mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::TransactionManager;
    ///
    /// assert!(!TransactionManager::new().is_explicit());
    /// assert!(TransactionManager::builder().explicit(true).build().is_explicit());
    /// ```
    pub fn is_explicit(&self) -> bool {
        self.inner.explicit
    }

    /// Whether two handles refer to the same manager.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::TransactionManager;
    ///
    /// let a = TransactionManager::new();
    /// let b = a.clone();
    /// assert!(a.ptr_eq(&b));
    /// assert!(!a.ptr_eq(&TransactionManager::new()));
    /// ```
    pub fn ptr_eq(&self, other: &TransactionManager) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// Begins a new transaction and makes it current.
    ///
    /// In implicit mode a transaction still in progress is aborted first (with a warning
    /// when it had joined resources).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyInTransaction`] in explicit mode when a transaction is in progress.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{Status, TransactionManager};
    ///
    /// let manager = TransactionManager::new();
    /// let first = manager.begin()?;
    /// let second = manager.begin()?; // implicit mode: the first one is aborted
    /// assert_eq!(first.status(), Status::Aborted);
    /// assert!(manager.current().is_some_and(|t| t.ptr_eq(&second)));
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn begin(&self) -> Result<Transaction> {
        let previous = self.inner.current.borrow().clone();
        if let Some(previous) = previous {
            if self.inner.explicit {
                return Err(Error::AlreadyInTransaction);
            }
            previous.abort_abandoned("begin() called");
        }
        let txn = self.new_current();
        for sync in self.inner.synchronizers() {
            sync.new_transaction(&txn);
        }
        tracing::trace!(transaction = %txn.id(), "begin");
        Ok(txn)
    }

    /// A new transaction, made current without telling synchronizers.
    fn new_current(&self) -> Transaction {
        let txn = Transaction::new(
            Rc::downgrade(&self.inner),
            self.inner.spare_resources.take(),
        );
        *self.inner.current.borrow_mut() = Some(txn.clone());
        txn
    }

    /// The current transaction; in implicit mode one is begun if there is none. As in
    /// zope, a transaction begun this way (and by [`commit`](Self::commit),
    /// [`doom`](Self::doom) or [`savepoint`](Self::savepoint) with none current) is not
    /// announced to synchronizers: only [`begin`](Self::begin) calls their
    /// [`new_transaction`](Synchronizer::new_transaction).
    ///
    /// # Errors
    ///
    /// [`Error::NoTransaction`] in explicit mode when none has begun.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{Error, TransactionManager};
    ///
    /// let manager = TransactionManager::new();
    /// let txn = manager.get()?; // implicit mode: begins one
    /// assert!(manager.get()?.ptr_eq(&txn)); // then returns it
    /// let explicit = TransactionManager::builder().explicit(true).build();
    /// assert!(matches!(explicit.get(), Err(Error::NoTransaction)));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get(&self) -> Result<Transaction> {
        let current = self.inner.current.borrow().clone();
        match current {
            Some(txn) => Ok(txn),
            None if self.inner.explicit => Err(Error::NoTransaction),
            None => {
                let txn = self.new_current();
                tracing::trace!(transaction = %txn.id(), "begin (implicit)");
                Ok(txn)
            }
        }
    }

    /// The current transaction, if one has begun; never begins one.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// assert!(manager.current().is_none()); // unlike get(), does not begin one
    /// let txn = manager.begin()?;
    /// assert!(manager.current().is_some_and(|t| t.ptr_eq(&txn)));
    /// manager.commit()?;
    /// assert!(manager.current().is_none());
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn current(&self) -> Option<Transaction> {
        self.inner.current.borrow().clone()
    }

    /// Commits the current transaction (see [`Transaction::commit`]).
    ///
    /// # Errors
    ///
    /// Those of [`Transaction::commit`], and [`Error::NoTransaction`] in explicit mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::TransactionManager;
    ///
    /// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new());
    /// let manager = TransactionManager::new();
    /// manager.get()?.join(db.clone())?;
    /// manager.commit()?;
    /// assert!(db.committed());
    /// assert!(manager.current().is_none()); // the next get() begins a fresh one
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn commit(&self) -> Result<()> {
        self.get()?.commit()
    }

    /// Aborts the current transaction (see [`Transaction::abort`]). In implicit mode with
    /// no transaction, does nothing.
    ///
    /// # Errors
    ///
    /// Those of [`Transaction::abort`], and [`Error::NoTransaction`] in explicit mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{Error, TransactionManager};
    ///
    /// assert!(TransactionManager::new().abort().is_ok()); // nothing to abort
    /// let explicit = TransactionManager::builder().explicit(true).build();
    /// assert!(matches!(explicit.abort(), Err(Error::NoTransaction)));
    /// explicit.begin()?;
    /// explicit.abort()?;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn abort(&self) -> Result<()> {
        let current = self.inner.current.borrow().clone();
        match current {
            Some(txn) => txn.abort(),
            None if self.inner.explicit => Err(Error::NoTransaction),
            None => Ok(()),
        }
    }

    /// Dooms the current transaction (see [`Transaction::doom`]).
    ///
    /// # Errors
    ///
    /// Those of [`Transaction::doom`] and [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{Error, TransactionManager};
    ///
    /// let manager = TransactionManager::new();
    /// manager.doom()?;
    /// assert!(matches!(manager.commit(), Err(Error::Doomed)));
    /// manager.abort()?;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn doom(&self) -> Result<()> {
        self.get()?.doom()
    }

    /// Whether the current transaction is doomed. In implicit mode with no transaction the
    /// answer is `false` (the transaction `get()` would begin is not doomed; none is
    /// begun).
    ///
    /// # Errors
    ///
    /// [`Error::NoTransaction`] in explicit mode when none has begun.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{Error, TransactionManager};
    ///
    /// let manager = TransactionManager::new();
    /// assert!(!manager.is_doomed()?); // no transaction
    /// manager.doom()?;
    /// assert!(manager.is_doomed()?);
    /// let explicit = TransactionManager::builder().explicit(true).build();
    /// assert!(matches!(explicit.is_doomed(), Err(Error::NoTransaction)));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn is_doomed(&self) -> Result<bool> {
        match self.current() {
            Some(txn) => Ok(txn.is_doomed()),
            None if self.inner.explicit => Err(Error::NoTransaction),
            // zope's answer (it begins one, which is not doomed) without beginning one.
            None => Ok(false),
        }
    }

    /// Takes a savepoint of the current transaction (see [`Transaction::savepoint`]).
    ///
    /// # Errors
    ///
    /// Those of [`Transaction::savepoint`] and [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::testing::{Journal, Kind, ScriptedDataManager};
    /// use transaction::{Error, TransactionManager};
    ///
    /// let manager = TransactionManager::new();
    /// manager.get()?.join(ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()))?;
    /// assert!(matches!(manager.savepoint(false), Err(Error::SavepointNotSupported { .. })));
    /// let sp = manager.savepoint(true)?; // optimistic: taken, but cannot be rolled back
    /// assert!(matches!(sp.rollback(), Err(Error::SavepointNotSupported { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn savepoint(&self, optimistic: bool) -> Result<Savepoint> {
        self.get()?.savepoint(optimistic)
    }

    /// Registers a synchronizer, told about every transaction of this manager. When a
    /// transaction is current, its [`new_transaction`](Synchronizer::new_transaction) is
    /// called for it at once, as zope does.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use transaction::{Synchronizer, Transaction, TransactionManager};
    ///
    /// #[derive(Default)]
    /// struct Begun(Cell<u32>);
    /// impl Synchronizer for Begun {
    ///     fn new_transaction(&self, _: &Transaction) {
    ///         self.0.set(self.0.get() + 1);
    ///     }
    /// }
    ///
    /// let manager = TransactionManager::new();
    /// let begun = Rc::new(Begun::default());
    /// manager.register_synchronizer(begun.clone());
    /// manager.begin()?;
    /// manager.begin()?;
    /// assert_eq!(begun.0.get(), 2);
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn register_synchronizer(&self, sync: Rc<dyn Synchronizer>) -> SynchronizerId {
        let id = SynchronizerId(self.inner.next_sync.get());
        self.inner.next_sync.set(id.0 + 1);
        self.inner
            .synchronizers
            .borrow_mut()
            .push((id, sync.clone()));
        let current = self.current();
        if let Some(txn) = current {
            sync.new_transaction(&txn);
        }
        id
    }

    /// Removes a synchronizer; returns whether it was registered.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    /// use transaction::{Synchronizer, TransactionManager};
    ///
    /// struct Quiet;
    /// impl Synchronizer for Quiet {}
    ///
    /// let manager = TransactionManager::new();
    /// let id = manager.register_synchronizer(Rc::new(Quiet));
    /// assert!(manager.unregister_synchronizer(id));
    /// assert!(!manager.unregister_synchronizer(id)); // already removed
    /// ```
    pub fn unregister_synchronizer(&self, id: SynchronizerId) -> bool {
        let mut syncs = self.inner.synchronizers.borrow_mut();
        let before = syncs.len();
        syncs.retain(|(i, _)| *i != id);
        syncs.len() != before
    }

    /// Runs `work` in a fresh transaction, up to `tries` times (zope's `run`/`attempts`).
    ///
    /// Each attempt begins a new transaction and calls `work`. `Ok` commits (or, if the
    /// work doomed the transaction, aborts) and returns the value. An error from `work` or
    /// from the commit aborts the transaction; it is retried only when it reports itself
    /// [transient](Transient) and attempts remain, otherwise it is returned at once.
    ///
    /// # Errors
    ///
    /// The last error of `work` or of the commit, converted with `From<Error>`;
    /// [`Error::NoAttempts`] when `tries` is 0 (`work` is not called).
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{Error, TransactionManager};
    ///
    /// let manager = TransactionManager::new();
    /// let mut calls = 0;
    /// let value = manager.run(3, |txn| {
    ///     calls += 1;
    ///     txn.note("attempt")?;
    ///     Ok::<_, Error>(42)
    /// })?;
    /// assert_eq!((value, calls), (42, 1));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn run<T, E, F>(&self, tries: u32, mut work: F) -> std::result::Result<T, E>
    where
        F: FnMut(&Transaction) -> std::result::Result<T, E>,
        E: From<Error> + Transient,
    {
        if tries == 0 {
            return Err(E::from(Error::NoAttempts));
        }
        let mut attempt = 1;
        loop {
            let txn = self.begin()?;
            let outcome = match work(&txn) {
                Ok(value) if txn.is_doomed() => txn.abort().map(|()| value).map_err(E::from),
                Ok(value) => match txn.commit() {
                    Ok(()) => Ok(value),
                    Err(e) => Err(E::from(e)),
                },
                Err(e) => Err(e),
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(e) => {
                    if let Err(abort_err) = txn.abort() {
                        tracing::warn!(transaction = %txn.id(), error = %abort_err, "abort after a failed attempt failed");
                    }
                    if !e.is_transient() || attempt >= tries {
                        return Err(e);
                    }
                    tracing::debug!(transaction = %txn.id(), attempt, tries, "transient failure; retrying in a new transaction");
                    attempt += 1;
                }
            }
        }
    }

    /// Makes this manager the thread's current one while `f` runs; the previous one is
    /// restored afterwards, also when `f` panics. Scopes nest. Other threads never see it.
    ///
    /// # Examples
    ///
    /// ```
    /// let mine = transaction::TransactionManager::new();
    /// mine.scope(|| {
    ///     assert!(transaction::manager().ptr_eq(&mine));
    /// });
    /// assert!(!transaction::manager().ptr_eq(&mine));
    /// ```
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::current::scope(self, f)
    }
}
