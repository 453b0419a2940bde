//! Savepoints across every joined resource.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use crate::data_manager::{DataManager, ResourceSavepoint};
use crate::error::{Error, Phase, Result};
use crate::Transaction;

/// One resource's state in a savepoint: `None` for a resource without savepoint support
/// under an optimistic savepoint.
pub(crate) type ResourceState = (Rc<dyn DataManager>, Option<Box<dyn ResourceSavepoint>>);

pub(crate) struct SavepointMark {
    sequence: u64,
    valid: Cell<bool>,
}

impl SavepointMark {
    pub(crate) fn new(sequence: u64) -> Self {
        Self {
            sequence,
            valid: Cell::new(true),
        }
    }

    pub(crate) fn sequence(&self) -> u64 {
        self.sequence
    }

    pub(crate) fn invalidate(&self) {
        self.valid.set(false);
    }
}

/// A point in a transaction that every joined resource can roll back to.
///
/// Rolling back restores every resource that had joined when the savepoint was taken,
/// aborts and removes resources that joined after it, and invalidates every later
/// savepoint. The savepoint itself stays valid and can be rolled back to again. Committing
/// or aborting the transaction invalidates every savepoint.
///
/// # Examples
///
/// ```
/// let manager = transaction::TransactionManager::new();
/// let txn = manager.begin()?;
/// let sp = txn.savepoint(false)?; // no resource joined: trivially supported
/// sp.rollback()?;
/// manager.commit()?;
/// assert!(!sp.is_valid());
/// # Ok::<(), transaction::Error>(())
/// ```
pub struct Savepoint {
    txn: Transaction,
    mark: Rc<SavepointMark>,
    states: Vec<ResourceState>,
    joined: usize,
}

impl fmt::Debug for Savepoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Savepoint")
            .field("transaction", &self.txn.id())
            .field("valid", &self.mark.valid.get())
            .field("resources", &self.states.len())
            .finish()
    }
}

impl Savepoint {
    pub(crate) fn new(
        txn: Transaction,
        mark: Rc<SavepointMark>,
        states: Vec<ResourceState>,
        joined: usize,
    ) -> Self {
        Self {
            txn,
            mark,
            states,
            joined,
        }
    }

    /// Whether the savepoint can still be rolled back to.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// let first = txn.savepoint(false)?;
    /// let second = txn.savepoint(false)?;
    /// first.rollback()?; // invalidates later savepoints, not itself
    /// assert!(first.is_valid());
    /// assert!(!second.is_valid());
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn is_valid(&self) -> bool {
        self.mark.valid.get()
    }

    /// The transaction the savepoint belongs to.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = transaction::TransactionManager::new();
    /// let txn = manager.begin()?;
    /// let sp = txn.savepoint(false)?;
    /// assert!(sp.transaction().ptr_eq(&txn));
    /// # Ok::<(), transaction::Error>(())
    /// ```
    pub fn transaction(&self) -> &Transaction {
        &self.txn
    }

    /// Rolls every resource back to this savepoint.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSavepoint`] when the savepoint was invalidated. When a resource
    /// fails to roll back, or cannot (an optimistic savepoint over a resource without
    /// savepoint support), the resources are no longer consistent with each other: the
    /// transaction enters [`Status::CommitFailed`](crate::Status::CommitFailed) and the
    /// error is [`Error::Resource`] with [`Phase::SavepointRollback`] or
    /// [`Error::SavepointNotSupported`].
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
    /// txn.join(ScriptedDataManager::new("early", Kind::TwoPhase, &journal).with_savepoints())?;
    /// let sp = txn.savepoint(false)?;
    /// txn.join(ScriptedDataManager::new("late", Kind::TwoPhase, &journal))?;
    /// sp.rollback()?;
    /// assert_eq!(journal.calls_of("early"), [Call::Savepoint, Call::SavepointRollback]);
    /// assert_eq!(journal.calls_of("late"), [Call::Abort]); // joined after: aborted, removed
    /// assert_eq!(txn.resource_count(), 1);
    /// txn.abort()?;
    /// assert!(matches!(sp.rollback(), Err(Error::InvalidSavepoint)));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn rollback(&self) -> Result<()> {
        if !self.is_valid() {
            return Err(Error::InvalidSavepoint);
        }
        let late = self.txn.rewind_to(&self.mark, self.joined)?;
        for (r, state) in &self.states {
            let outcome = match state {
                Some(sp) => sp.rollback().map_err(|source| Error::Resource {
                    phase: Phase::SavepointRollback,
                    resource: r.sort_key().to_owned(),
                    source,
                }),
                None => Err(Error::SavepointNotSupported {
                    resource: r.sort_key().to_owned(),
                }),
            };
            if let Err(err) = outcome {
                tracing::error!(transaction = %self.txn.id(), error = %err, "savepoint rollback failed: the transaction can only be aborted");
                self.abort_late(&late);
                self.txn.fail_savepoint();
                return Err(err);
            }
        }
        self.abort_late(&late);
        Ok(())
    }

    fn abort_late(&self, late: &[Rc<dyn DataManager>]) {
        for r in late {
            if let Err(e) = r.abort(&self.txn) {
                tracing::error!(transaction = %self.txn.id(), resource = r.sort_key(), error = %e, "abort of a resource that joined after the savepoint failed");
            }
        }
    }
}
