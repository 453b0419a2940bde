//! The thread's current manager, and the free functions that use it.

use crate::error::{Error, Result, Transient};
use crate::{Savepoint, Transaction, TransactionManager};

thread_local! {
    static DEFAULT: TransactionManager = TransactionManager::new();
}

scoped_tls::scoped_thread_local!(static SCOPED: TransactionManager);

pub(crate) fn scope<R>(manager: &TransactionManager, f: impl FnOnce() -> R) -> R {
    SCOPED.set(manager, f)
}

/// Calls `f` with the thread's current manager, without cloning it.
///
/// # Panics
///
/// When called from a thread-local destructor after the default manager was destroyed.
///
/// # Examples
///
/// ```
/// // The thread's default manager is in implicit mode.
/// assert!(!transaction::with_manager(|m| m.is_explicit()));
///
/// let explicit = transaction::TransactionManager::builder().explicit(true).build();
/// explicit.scope(|| assert!(transaction::with_manager(|m| m.is_explicit())));
/// ```
pub fn with_manager<R>(f: impl FnOnce(&TransactionManager) -> R) -> R {
    if SCOPED.is_set() {
        SCOPED.with(f)
    } else {
        DEFAULT.with(f)
    }
}

/// The thread's current manager: the one installed by [`TransactionManager::scope`], or
/// else the thread's default manager.
///
/// # Examples
///
/// ```
/// let a = transaction::manager();
/// let b = transaction::manager();
/// assert!(a.ptr_eq(&b));
/// ```
pub fn manager() -> TransactionManager {
    with_manager(TransactionManager::clone)
}

/// Begins a new transaction on the current manager (see [`TransactionManager::begin`]).
///
/// # Errors
///
/// [`Error::AlreadyInTransaction`] in explicit mode.
///
/// # Examples
///
/// ```
/// use transaction::{Error, TransactionManager};
///
/// let manager = TransactionManager::builder().explicit(true).build();
/// manager.scope(|| {
///     let txn = transaction::begin()?;
///     assert!(matches!(transaction::begin(), Err(Error::AlreadyInTransaction)));
///     txn.abort()
/// })?;
/// # Ok::<(), Error>(())
/// ```
pub fn begin() -> Result<Transaction> {
    with_manager(|m| m.begin())
}

/// The current transaction (see [`TransactionManager::get`]).
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
/// let manager = TransactionManager::builder().explicit(true).build();
/// manager.scope(|| {
///     assert!(matches!(transaction::get(), Err(Error::NoTransaction)));
///     let txn = transaction::begin()?;
///     assert!(transaction::get()?.ptr_eq(&txn));
///     transaction::abort()
/// })?;
/// # Ok::<(), Error>(())
/// ```
pub fn get() -> Result<Transaction> {
    with_manager(|m| m.get())
}

/// Commits the current transaction (see [`Transaction::commit`]).
///
/// # Errors
///
/// Those of [`Transaction::commit`].
///
/// # Examples
///
/// ```
/// transaction::get()?.note("nothing to do")?;
/// transaction::commit()?;
/// # Ok::<(), transaction::Error>(())
/// ```
pub fn commit() -> Result<()> {
    manager().commit()
}

/// Aborts the current transaction (see [`Transaction::abort`]).
///
/// # Errors
///
/// Those of [`Transaction::abort`].
///
/// # Examples
///
/// ```
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
///
/// let journal = Journal::new();
/// let txn = transaction::get()?;
/// txn.join(ScriptedDataManager::new("orders", Kind::TwoPhase, &journal))?;
/// transaction::abort()?;
/// assert_eq!(txn.status(), transaction::Status::Aborted);
/// assert_eq!(journal.calls_of("orders"), [Call::Abort]);
/// # Ok::<(), transaction::Error>(())
/// ```
pub fn abort() -> Result<()> {
    manager().abort()
}

/// Dooms the current transaction (see [`Transaction::doom`]).
///
/// # Errors
///
/// Those of [`Transaction::doom`].
///
/// # Examples
///
/// ```
/// transaction::doom()?;
/// assert!(transaction::is_doomed()?);
/// assert!(matches!(transaction::commit(), Err(transaction::Error::Doomed)));
/// transaction::abort()?;
/// # Ok::<(), transaction::Error>(())
/// ```
pub fn doom() -> Result<()> {
    manager().doom()
}

/// Whether the current transaction is doomed (see [`TransactionManager::is_doomed`]).
///
/// # Errors
///
/// [`Error::NoTransaction`] when the current manager is explicit and no transaction has
/// begun.
///
/// # Examples
///
/// ```
/// assert!(!transaction::is_doomed()?);
/// transaction::doom()?;
/// assert!(transaction::is_doomed()?);
/// transaction::abort()?;
/// assert!(!transaction::is_doomed()?); // the doomed transaction has ended
/// # Ok::<(), transaction::Error>(())
/// ```
pub fn is_doomed() -> Result<bool> {
    with_manager(|m| m.is_doomed())
}

/// Takes a savepoint of the current transaction (see [`Transaction::savepoint`]).
///
/// # Errors
///
/// Those of [`Transaction::savepoint`].
///
/// # Examples
///
/// ```
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
///
/// let journal = Journal::new();
/// let db = ScriptedDataManager::new("db", Kind::TwoPhase, &journal).with_savepoints();
/// transaction::get()?.join(db)?;
/// let sp = transaction::savepoint(false)?;
/// sp.rollback()?;
/// assert_eq!(journal.calls_of("db"), [Call::Savepoint, Call::SavepointRollback]);
/// # Ok::<(), transaction::Error>(())
/// ```
pub fn savepoint(optimistic: bool) -> Result<Savepoint> {
    manager().savepoint(optimistic)
}

/// Runs `work` in fresh transactions of the current manager, retrying transient failures
/// (see [`TransactionManager::run`]).
///
/// # Errors
///
/// The last error of `work` or of the commit.
///
/// # Examples
///
/// ```
/// let n = transaction::run(3, |_txn| Ok::<_, transaction::Error>(1 + 1))?;
/// assert_eq!(n, 2);
/// # Ok::<(), transaction::Error>(())
/// ```
pub fn run<T, E, F>(tries: u32, work: F) -> std::result::Result<T, E>
where
    F: FnMut(&Transaction) -> std::result::Result<T, E>,
    E: From<Error> + Transient,
{
    manager().run(tries, work)
}
