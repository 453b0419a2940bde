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
    pub fn is_valid(&self) -> bool {
        self.mark.valid.get()
    }

    /// The transaction the savepoint belongs to.
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
