//! A fault-injection seam for tests (cargo feature `fault-injection`): makes a named
//! engine's session fail one phase of the commit protocol *before* it sends any SQL, as a
//! lost connection would.
//!
//! Faults are per thread and stay set until the guard returned by [`inject`] is dropped.
//! Not part of the public API.

use std::cell::RefCell;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// The phase of the commit protocol a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `tpc_begin`.
    Begin,
    /// `tpc_vote` (and the one-phase commit of a lone writer, which replaces the vote).
    Vote,
    /// `tpc_finish`: phase two fails on the session's connection and on a fresh one.
    Finish,
}

thread_local! {
    static FAULTS: RefCell<Vec<(String, Phase)>> = const { RefCell::new(Vec::new()) };
}

/// Removes its fault when dropped.
#[must_use = "the fault is removed when the guard is dropped"]
#[derive(Debug)]
pub struct FaultGuard {
    engine: String,
    phase: Phase,
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        FAULTS.with(|f| {
            f.borrow_mut()
                .retain(|(e, p)| !(*e == self.engine && *p == self.phase))
        });
    }
}

/// Makes the session of `engine` fail `phase` on this thread until the guard is dropped.
pub fn inject(engine: &str, phase: Phase) -> FaultGuard {
    FAULTS.with(|f| f.borrow_mut().push((engine.to_owned(), phase)));
    FaultGuard {
        engine: engine.to_owned(),
        phase,
    }
}

pub(crate) fn is_set(engine: &str, phase: Phase) -> bool {
    FAULTS.with(|f| f.borrow().iter().any(|(e, p)| e == engine && *p == phase))
}

fn error(engine: &str, phase: Phase) -> DieselError {
    DieselError::DatabaseError(
        DatabaseErrorKind::ClosedConnection,
        Box::new(format!("injected fault: engine {engine}, phase {phase:?}")),
    )
}

/// The injected error when a fault is set for `engine` and `phase`.
pub(crate) fn check(engine: &str, phase: Phase) -> Result<(), DieselError> {
    if is_set(engine, phase) {
        Err(error(engine, phase))
    } else {
        Ok(())
    }
}

/// A phase-two operation that always fails (in place of `COMMIT PREPARED` / `XA COMMIT`).
pub(crate) fn fail_finish(_conn: &mut crate::conn::Conn, gid: &str) -> Result<(), DieselError> {
    Err(error(gid, Phase::Finish))
}
