//! The process-wide set of transactions between their first PREPARE and their end.

use std::sync::{Mutex, MutexGuard};

use crate::TransactionId;

/// Transactions of this process that may have a prepared branch and are still being
/// finished by their coordinator, with how many commits of each are running (one). A
/// vector rather than a map: it holds one entry per committing thread, and it keeps its
/// capacity, so that entering and leaving allocate nothing once it has grown.
static ACTIVE: Mutex<Vec<(TransactionId, usize)>> = Mutex::new(Vec::new());

fn active() -> MutexGuard<'static, Vec<(TransactionId, usize)>> {
    // The list stays consistent even if a holder panicked: every update is one call.
    ACTIVE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The transactions of this process that are between their first PREPARE and their end
/// (phase two done, rolled back, or left for recovery), in id order.
///
/// A recovery pass lists the prepared branches first and takes this snapshot after: a
/// listed branch whose transaction is in the snapshot belongs to a commit still running in
/// this process and must be left alone; one whose transaction is not had finished (or was
/// given up) before the snapshot, so its durable decision, if any, is already visible.
///
/// # Examples
///
/// ```
/// // No commit is running in this process.
/// assert!(transaction::in_flight().is_empty());
/// ```
pub fn in_flight() -> Vec<TransactionId> {
    let mut ids: Vec<TransactionId> = active().iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids
}

/// Keeps a transaction in the in-flight set while it lives.
pub(crate) struct InFlight(TransactionId);

impl InFlight {
    /// Enters `txn` into the set; it leaves when the guard drops (also on unwinding).
    pub(crate) fn enter(txn: TransactionId) -> Self {
        let mut active = active();
        match active.iter_mut().find(|(id, _)| *id == txn) {
            Some((_, n)) => *n += 1,
            None => active.push((txn, 1)),
        }
        Self(txn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut active = active();
        if let Some(i) = active.iter().position(|(id, _)| *id == self.0) {
            active[i].1 -= 1;
            if active[i].1 == 0 {
                active.swap_remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_is_in_flight_while_its_guard_lives() {
        let txn = TransactionId::next();
        assert!(!in_flight().contains(&txn));
        let guard = InFlight::enter(txn);
        let again = InFlight::enter(txn);
        assert!(in_flight().contains(&txn));
        drop(guard);
        assert!(in_flight().contains(&txn));
        drop(again);
        assert!(!in_flight().contains(&txn));
    }

    #[test]
    fn transactions_leave_in_any_order_and_are_listed_in_id_order() {
        let (a, b, c) = (
            TransactionId::next(),
            TransactionId::next(),
            TransactionId::next(),
        );
        let (gc, ga, gb) = (InFlight::enter(c), InFlight::enter(a), InFlight::enter(b));
        let mine = |ids: Vec<TransactionId>| -> Vec<TransactionId> {
            ids.into_iter()
                .filter(|id| [a, b, c].contains(id))
                .collect()
        };
        assert_eq!(mine(in_flight()), [a, b, c]);
        drop(ga);
        assert_eq!(mine(in_flight()), [b, c]);
        drop(gc);
        assert_eq!(mine(in_flight()), [b]);
        drop(gb);
        assert!(mine(in_flight()).is_empty());
    }
}
