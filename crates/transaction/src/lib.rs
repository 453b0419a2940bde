//! A two-phase-commit transaction coordinator, modelled on Python's `transaction`
//! package (zope.transaction).
//!
//! A [`TransactionManager`] begins transactions; resources ([`DataManager`]s: database
//! sessions, queues, anything) [join](Transaction::join) the current transaction; one
//! [`commit`] commits every joined resource with two-phase commit, or none. The crate
//! knows nothing about databases: the `sqlassist` crate builds Diesel sessions on it.
//!
//! # Quick start
//!
//! ```
//! use std::rc::Rc;
//! use transaction::testing::{Journal, Kind, ScriptedDataManager};
//!
//! let journal = Journal::new();
//! let orders = ScriptedDataManager::new("orders", Kind::TwoPhase, &journal);
//! let stock = ScriptedDataManager::new("stock", Kind::TwoPhase, &journal);
//!
//! let txn = transaction::get()?; // the thread's current transaction
//! txn.join(orders.clone())?;
//! txn.join(stock.clone())?;
//! transaction::commit()?;        // tpc_begin, commit, tpc_vote, tpc_finish on both
//! assert!(orders.committed() && stock.committed());
//! # Ok::<(), transaction::Error>(())
//! ```
//!
//! # The protocol
//!
//! [`Transaction::commit`] runs, in order: before-commit hooks (which may join more
//! resources); synchronizers' `before_completion`; then, over the resources sorted by
//! [`DataManager::sort_key`] with one-phase resources last, `tpc_begin` on all and `commit`
//! on all; then `tpc_vote` on all, in the order their [write
//! state](DataManager::write_state) gives (resources that know they wrote nothing first,
//! then those that may have written, then those that wrote, one-phase resources last);
//! the decision (recorded in the [`DecisionLog`]); `tpc_finish` on every resource that
//! prepared; then synchronizers' `after_completion` and after-commit hooks. When the last
//! resource to vote [supports it](DataManager::supports_one_phase_commit), no resource is
//! one-phase and every resource before it voted read-only, that resource commits in one
//! phase instead of voting: a lone writer commits in one phase whatever its sort key, as
//! long as the other resources say they wrote nothing or vote read-only when asked (see
//! [`WriteState`]).
//!
//! A failure before the decision rolls every resource back and puts the transaction in
//! [`Status::CommitFailed`]: only [`abort`] is accepted until it ends, and it asks every
//! joined resource to abort once more, as zope does. A failure after the decision, or
//! after a resource has already committed in its vote (a one-phase resource), is a
//! heuristic outcome ([`Error::Heuristic`]) that lists which resources committed and which
//! did not.
//!
//! [`Transaction::abort`] runs before-abort hooks, synchronizers' `before_completion`,
//! `abort` on every joined resource, after-abort hooks, then synchronizers'
//! `after_completion`. Every step runs even when an earlier one failed; failures are
//! logged at error level and the first is returned. `docs/design.md` in the repository has
//! the state diagram, the invariants and the failure matrix.
//!
//! # Threads
//!
//! Each thread has its own default manager ([`manager`]); transactions and managers are
//! bound to their thread (`!Send`). [`TransactionManager::scope`] installs another manager
//! for the duration of a closure.
//!
//! # Tracing
//!
//! A commit runs in a `tracing` span `commit` (target `transaction::commit`, level INFO;
//! fields `transaction`, `resources`, and on close `duration_us` and `outcome`), and each
//! resource's vote, one-phase commit, finish, abort and `tpc_abort` in a span
//! `resource_phase` inside it (target `transaction::phase`; fields `engine`, the resource's
//! [`sort_key`](DataManager::sort_key); `gid`, its [`branch_id`](DataManager::branch_id);
//! `phase`: `vote`, `one_phase_commit`, `finish`, `abort` or `tpc_abort`; `transaction`;
//! and on close `duration_us` and `outcome`: `ok`, `transient`, `outcome_unknown`,
//! `error`, or for the commit also `heuristic`). A phase handed to a worker thread
//! (parallel phases) enters its span there. With no subscriber, the spans cost a callsite
//! check each: no field is computed and no clock read.
//!
//! # Features
//!
//! - `testing`: the [`testing`] module, a scripted data manager for tests of code built on
//!   this crate.
//! - `crash-points`: makes [`crash_point`] abort the process at the point named by the
//!   environment variable `SQLASSIST_CRASH_POINT`, for recovery drills.

#![cfg_attr(docsrs, feature(doc_auto_cfg))]
#![deny(missing_docs)]

mod crash;
mod current;
mod data_manager;
mod error;
mod file_log;
mod id;
mod in_flight;
mod log;
mod manager;
mod parallel;
mod savepoint;
mod trace;
mod transaction;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use crate::crash::{crash_point, CRASH_POINTS};
pub use crate::current::{
    abort, begin, commit, doom, get, is_doomed, manager, run, savepoint, with_manager,
};
pub use crate::data_manager::{DataManager, ResourceSavepoint, Vote, WriteState};
pub use crate::error::{BoxError, Error, HeuristicError, Phase, ResourceError, Result, Transient};
pub use crate::file_log::{
    BatchInfo, DataSync, FileDecisionLog, FileLogError, FileLogOptions, LogInspection, LogPosition,
    LogStats,
};
pub use crate::id::{coordinator_id, TransactionId};
pub use crate::in_flight::in_flight;
pub use crate::log::{
    deciding, default_decision_log, set_default_decision_log, Branch, DecisionLog, DecisionRecord,
    MemoryDecisionLog, NopDecisionLog, SharedDecisionLog,
};
pub use crate::manager::{
    Synchronizer, SynchronizerId, TransactionManager, TransactionManagerBuilder,
};
pub use crate::parallel::{
    phase_workers, PhaseJob, PhaseOutput, IDLE_TIMEOUT, MAX_WORKERS, PARALLEL_PHASES_DEFAULT,
};
pub use crate::savepoint::Savepoint;
pub use crate::transaction::{Status, Transaction};
