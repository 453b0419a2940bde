//! The protocol between the coordinator and a resource.

use crate::{DecisionRecord, ResourceError, Transaction};

/// What a resource did when asked to vote.
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
/// txn.join(ScriptedDataManager::new("reader", Kind::ReadOnly, &journal))?;
/// txn.join(ScriptedDataManager::new("writer", Kind::TwoPhase, &journal))?;
/// manager.commit()?;
/// // Vote::ReadOnly gets no second phase; Vote::Prepared gets tpc_finish.
/// assert_eq!(journal.calls_of("reader").last(), Some(&Call::TpcVote));
/// assert_eq!(journal.calls_of("writer").last(), Some(&Call::TpcFinish));
/// # Ok::<(), transaction::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vote {
    /// The resource prepared its work durably and waits for
    /// [`tpc_finish`](DataManager::tpc_finish) or [`tpc_abort`](DataManager::tpc_abort).
    Prepared,
    /// The resource had nothing to commit and has already released its work: it gets no
    /// second phase (`tpc_finish` is not called).
    ReadOnly,
    /// The resource cannot prepare and committed in the vote (SQLite, for example). It gets
    /// no second phase. Such resources say so with
    /// [`is_one_phase`](DataManager::is_one_phase) and are voted last.
    Committed,
}

/// What a resource knows about its writes in a transaction, asked before the votes by
/// [`DataManager::write_state`].
///
/// The coordinator votes resources that report [`Clean`](Self::Clean) first, then those
/// that report [`Unknown`](Self::Unknown), then those that report [`Dirty`](Self::Dirty)
/// (one-phase resources still come last). The last resource to vote commits in one phase
/// instead when every resource before it voted [`Vote::ReadOnly`], none is
/// [one-phase](DataManager::is_one_phase) and it
/// [supports one-phase commit](DataManager::supports_one_phase_commit). So a lone writer
/// commits in one phase whatever its sort key, while a resource that may have written is
/// always asked through [`tpc_vote`](DataManager::tpc_vote), never assumed read-only.
///
/// # Examples
///
/// ```
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
/// use transaction::{TransactionManager, WriteState};
///
/// let journal = Journal::new();
/// // The writer sorts first, yet it is the only resource that wrote.
/// let writer = ScriptedDataManager::new("a-writer", Kind::TwoPhase, &journal)
///     .with_one_phase_commit()
///     .with_write_state(WriteState::Dirty);
/// let reader = ScriptedDataManager::new("b-reader", Kind::ReadOnly, &journal)
///     .with_write_state(WriteState::Clean);
/// let manager = TransactionManager::new();
/// let txn = manager.begin()?;
/// txn.join(writer.clone())?;
/// txn.join(reader)?;
/// manager.commit()?;
/// assert_eq!(journal.calls_of("a-writer"), [Call::TpcBegin, Call::Commit, Call::CommitOnePhase]);
/// assert_eq!(journal.calls_of("b-reader"), [Call::TpcBegin, Call::Commit, Call::TpcVote]);
/// # Ok::<(), transaction::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteState {
    /// The resource knows it wrote nothing in this transaction: its vote will be
    /// [`Vote::ReadOnly`]. It votes before every resource that may have written. (It is
    /// still asked: should it vote [`Vote::Prepared`] after all, the commit is two-phase
    /// and stays correct.)
    Clean,
    /// The resource may have written and cannot tell without being asked (a query that
    /// may have called a function that writes, say): it is voted through
    /// [`tpc_vote`](DataManager::tpc_vote) after the clean resources and before the dirty
    /// ones, so that if it turns out read-only a lone writer after it still commits in one
    /// phase. The default.
    Unknown,
    /// The resource wrote in this transaction. It votes after every other two-phase
    /// resource.
    Dirty,
}

/// A resource that takes part in transactions: a database session, a queue, a file.
///
/// The verbs are zope.transaction's `IDataManager`, so its documentation maps one to one.
/// Every method takes `&self`: the coordinator never holds a borrow of its own state while
/// it calls a resource, and a resource may call back into the manager (join another
/// resource, read the transaction, add a note). Keep mutable state in a `Cell` or
/// `RefCell`.
///
/// # The protocol
///
/// For a successful commit, the coordinator calls, for every joined resource in
/// [`sort_key`](Self::sort_key) order (resources that are [one-phase](Self::is_one_phase)
/// last):
///
/// 1. `tpc_begin` on every resource;
/// 2. `commit` on every resource (send pending work, do not make it durable);
/// 3. [`write_state`](Self::write_state) on every resource, which orders the votes:
///    [clean](WriteState::Clean) resources first, then [unknown](WriteState::Unknown), then
///    [dirty](WriteState::Dirty) ones, one-phase resources still last, each group in
///    `sort_key` order;
/// 4. `tpc_vote` on every resource in that order, which prepares ([`Vote::Prepared`]),
///    reports nothing to do ([`Vote::ReadOnly`]) or commits a one-phase resource
///    ([`Vote::Committed`]). When the last resource to vote [supports
///    it](Self::supports_one_phase_commit), every resource before it voted read-only and
///    none is one-phase, [`commit_one_phase`](Self::commit_one_phase) is called instead of
///    its vote;
/// 5. the decision is recorded: in the [`DecisionLog`](crate::DecisionLog), or, when the
///    last resource to vote [carries it](Self::carries_decision), inside that resource's
///    one-phase commit (then step 4 handed it the record just before its commit);
/// 6. `tpc_finish` on every resource that voted [`Vote::Prepared`].
///
/// If anything fails before the decision, `abort` is called on every resource that had not
/// voted and `tpc_abort` on every resource that saw `tpc_begin`. A resource must accept
/// `tpc_abort` in any state it can be in after `tpc_begin`, including after voting
/// read-only or after a failed step, and accept `abort` whether or not `tpc_begin` ran.
///
/// Outside a commit, [`abort`](Self::abort) is called when the transaction is aborted.
/// Resources stay joined after a failed commit, and the application's `abort()` then
/// calls `abort` on each of them once more, as zope does: by then a resource has been
/// cleaned up already, or (after a failed `tpc_finish`) holds a branch the decision
/// committed, which `abort` must leave to recovery rather than roll back.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use transaction::{DataManager, ResourceError, Transaction, TransactionManager, Vote};
///
/// /// A counter that only changes when the transaction commits.
/// struct Counter { committed: Cell<u32>, pending: Cell<u32> }
///
/// impl DataManager for Counter {
///     fn sort_key(&self) -> &str { "counter" }
///     fn abort(&self, _: &Transaction) -> Result<(), ResourceError> {
///         self.pending.set(0);
///         Ok(())
///     }
///     fn tpc_vote(&self, _: &Transaction) -> Result<Vote, ResourceError> {
///         Ok(if self.pending.get() == 0 { Vote::ReadOnly } else { Vote::Prepared })
///     }
///     fn tpc_finish(&self, _: &Transaction) -> Result<(), ResourceError> {
///         self.committed.set(self.committed.get() + self.pending.replace(0));
///         Ok(())
///     }
///     fn tpc_abort(&self, t: &Transaction) -> Result<(), ResourceError> { self.abort(t) }
/// }
///
/// let manager = TransactionManager::new();
/// let counter = Rc::new(Counter { committed: Cell::new(0), pending: Cell::new(0) });
/// let txn = manager.begin()?;
/// txn.join(counter.clone())?;
/// counter.pending.set(3);
/// manager.commit()?;
/// assert_eq!(counter.committed.get(), 3);
/// # Ok::<(), transaction::Error>(())
/// ```
pub trait DataManager {
    /// The key that orders resources within a commit. Resources are sorted by it (stably)
    /// so that every transaction touches resources in the same order; it also names the
    /// resource in errors and logs. Never put a password in it.
    fn sort_key(&self) -> &str;

    /// Whether this resource can only commit in one phase (it cannot prepare). Such a
    /// resource commits in [`tpc_vote`](Self::tpc_vote), returning [`Vote::Committed`],
    /// and is voted after every two-phase resource. Default: `false`.
    fn is_one_phase(&self) -> bool {
        false
    }

    /// What the resource knows about its writes in `txn`, asked once per commit after
    /// [`commit`](Self::commit) on every resource and before any vote. It orders the votes
    /// (see [`WriteState`]): report [`WriteState::Clean`] only when the resource is sure
    /// it wrote nothing, [`WriteState::Dirty`] when it wrote, and [`WriteState::Unknown`]
    /// otherwise. A wrong `Clean` costs no correctness (the resource is still voted), only
    /// the one-phase optimisation. Default: [`WriteState::Unknown`], which votes resources
    /// in `sort_key` order.
    fn write_state(&self, txn: &Transaction) -> WriteState {
        let _ = txn;
        WriteState::Unknown
    }

    /// Discards the resource's work in this transaction.
    ///
    /// # Errors
    ///
    /// The resource's failure; the coordinator logs it and goes on aborting the others.
    fn abort(&self, txn: &Transaction) -> Result<(), ResourceError>;

    /// Starts the two-phase commit. Default: does nothing.
    ///
    /// # Errors
    ///
    /// A failure aborts the whole commit.
    fn tpc_begin(&self, txn: &Transaction) -> Result<(), ResourceError> {
        let _ = txn;
        Ok(())
    }

    /// Sends pending work without making it durable (the flush step). Default: does nothing.
    ///
    /// # Errors
    ///
    /// A failure aborts the whole commit.
    fn commit(&self, txn: &Transaction) -> Result<(), ResourceError> {
        let _ = txn;
        Ok(())
    }

    /// Prepares the work durably, or reports it has none, or commits a one-phase resource.
    ///
    /// # Errors
    ///
    /// A failure aborts the whole commit.
    fn tpc_vote(&self, txn: &Transaction) -> Result<Vote, ResourceError>;

    /// Commits prepared work. Called only after every resource voted, and only on
    /// resources that voted [`Vote::Prepared`].
    ///
    /// # Errors
    ///
    /// A failure here is a heuristic outcome: other resources may already have committed.
    fn tpc_finish(&self, txn: &Transaction) -> Result<(), ResourceError>;

    /// Rolls back work after `tpc_begin`, prepared or not.
    ///
    /// # Errors
    ///
    /// The resource's failure; the coordinator logs it and goes on with the others.
    fn tpc_abort(&self, txn: &Transaction) -> Result<(), ResourceError>;

    /// Whether [`commit_one_phase`](Self::commit_one_phase) may be used when this is the
    /// only resource with work: that is, when it votes last, every resource before it
    /// voted read-only and none is one-phase. Default: `false`.
    fn supports_one_phase_commit(&self) -> bool {
        false
    }

    /// Commits the work in one step, without preparing. Called instead of `tpc_vote` and
    /// `tpc_finish` when this resource votes last (see [`WriteState`] for the order), every
    /// resource before it voted read-only, none is [one-phase](Self::is_one_phase) and
    /// [`supports_one_phase_commit`](Self::supports_one_phase_commit) is true. (A resource
    /// with work that votes before a read-only one, because both report the same write
    /// state and it sorts first, is voted and finished as usual.) On failure the work must
    /// not have committed.
    ///
    /// # Errors
    ///
    /// A failure aborts the whole commit. The default reports that the resource does not
    /// support one-phase commit.
    fn commit_one_phase(&self, txn: &Transaction) -> Result<(), ResourceError> {
        let _ = txn;
        Err(ResourceError::new(format!(
            "resource {} does not support one-phase commit",
            self.sort_key()
        )))
    }

    /// The transaction's outcome is unknown (its commit decision may or may not be durable):
    /// forget this transaction's prepared branch WITHOUT rolling it back, so that recovery
    /// finishes it from the decision log. Called instead of `tpc_abort` on every resource
    /// that voted [`Vote::Prepared`]; a later `abort` must not touch the branch either.
    /// Default: nothing (a resource that never prepares has nothing to leave).
    fn leave_prepared(&self, txn: &Transaction) {
        let _ = txn;
    }

    /// Whether this resource can carry the commit decision of `txn` inside its own
    /// one-phase commit, asked when it is the last resource to vote and a resource before
    /// it prepared. Default: `false`.
    ///
    /// A resource that answers `true` makes its commit the commit point (the
    /// "commit-markable resource" of Narayana, Citus' `pg_dist_transaction`): the
    /// coordinator hands it the decision record with
    /// [`carry_decision`](Self::carry_decision), then commits it in one phase (its
    /// [`tpc_vote`](Self::tpc_vote) when it is [one-phase](Self::is_one_phase), which must
    /// answer [`Vote::Committed`]). The decision is then durable exactly when the
    /// resource's work is, so no crash can leave the resource committed while the prepared
    /// resources have no decision, and the decision log is not written: recovery must read
    /// the resource's copy of the record instead (as sqlassist's recovery reads its SQLite
    /// engines' `sqlassist_decision` tables). The coordinator asks only when a
    /// [decision log](crate::DecisionLog) is enabled: without one, nothing recovers.
    fn carries_decision(&self, txn: &Transaction) -> bool {
        let _ = txn;
        false
    }

    /// Writes `decision` (the transaction and the branches every resource before this one
    /// prepared: the record a [`DecisionLog`](crate::DecisionLog) would get) into this
    /// resource's open work, so that its coming one-phase commit makes the decision durable
    /// in the same atomic step as its data. Called only when
    /// [`carries_decision`](Self::carries_decision) answered `true`, right before the
    /// commit. If the commit then fails, the work and the record must both be gone (or the
    /// resource must find out which before returning): the coordinator rolls every
    /// prepared resource back.
    ///
    /// # Errors
    ///
    /// A failure aborts the whole commit, as a failed vote does. The default reports that
    /// the resource cannot carry a decision.
    fn carry_decision(
        &self,
        txn: &Transaction,
        decision: &DecisionRecord,
    ) -> Result<(), ResourceError> {
        let _ = (txn, decision);
        Err(ResourceError::new(format!(
            "resource {} cannot carry a commit decision",
            self.sort_key()
        )))
    }

    /// The name of this resource's branch of the transaction, as the resource knows it
    /// (a PostgreSQL gid, an XA xid). Recorded with the commit decision so that recovery
    /// can find the branch. Default: `None`.
    fn branch_id(&self, txn: &Transaction) -> Option<String> {
        let _ = txn;
        None
    }

    /// Whether the resource can take savepoints. The coordinator asks every joined resource
    /// before any takes one, so that [`Transaction::savepoint`] refuses (non-optimistic)
    /// without leaving a savepoint behind in some resources; [`savepoint`](Self::savepoint)
    /// is called only on resources that answer `true`. Default: `false`.
    fn supports_savepoints(&self) -> bool {
        false
    }

    /// Takes a savepoint of the resource's current state. Called only when
    /// [`supports_savepoints`](Self::supports_savepoints) is true; `None` says the
    /// resource could not take one after all (the savepoint is then refused, or, when
    /// optimistic, cannot be rolled back). Default: `None`.
    ///
    /// # Errors
    ///
    /// `Some(Err(..))` when the resource supports savepoints but could not take one.
    fn savepoint(
        &self,
        txn: &Transaction,
    ) -> Option<Result<Box<dyn ResourceSavepoint>, ResourceError>> {
        let _ = txn;
        None
    }
}

/// One resource's part of a [`Savepoint`](crate::Savepoint).
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use transaction::{ResourceError, ResourceSavepoint};
///
/// /// Restores a cell to the value it had when the savepoint was taken.
/// struct Saved { cell: Rc<Cell<i32>>, value: i32 }
///
/// impl ResourceSavepoint for Saved {
///     fn rollback(&self) -> Result<(), ResourceError> {
///         self.cell.set(self.value);
///         Ok(())
///     }
/// }
///
/// let cell = Rc::new(Cell::new(1));
/// let sp = Saved { cell: cell.clone(), value: cell.get() };
/// cell.set(2);
/// sp.rollback()?;
/// assert_eq!(cell.get(), 1);
/// # Ok::<(), ResourceError>(())
/// ```
pub trait ResourceSavepoint {
    /// Restores the resource to the state it had when the savepoint was taken. May be
    /// called more than once.
    ///
    /// # Errors
    ///
    /// A failure puts the transaction in the commit-failed state.
    fn rollback(&self) -> Result<(), ResourceError>;
}
