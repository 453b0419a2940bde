//! Crash points: named places in the commit protocol where a process can be made to die,
//! for recovery drills.
//!
//! With the cargo feature `crash-points`, the environment variable
//! `SQLASSIST_CRASH_POINT=<name>` arms one point, and `SQLASSIST_CRASH_COUNT=<n>` says which
//! hit kills (the first by default): the n-th time the named point is reached in the
//! process, [`crash_point`] calls [`std::process::abort`] (the process dies of `SIGABRT`,
//! exit status 134 in a shell). The environment is read once, at the first point reached.
//! Without the feature, [`crash_point`] is an empty inline function.
//!
//! | point | where | outcome after recovery |
//! |---|---|---|
//! | `before_prepare` | every resource did its work, none voted | rolled back |
//! | `after_prepare` | a resource prepared and another is still to vote (k of n, k < n; with parallel phases, another vote is still to be collected and may have prepared too) | rolled back |
//! | `before_decision` | every resource voted yes, the decision is not recorded | rolled back |
//! | `decision_unsynced` | the decision's batch is written, not yet synced | committed after a process crash (the bytes are in the page cache); either, the same on every database, after a power loss |
//! | `after_decision` | the decision is durable, no resource finished | committed |
//! | `after_commit` | a prepared resource finished and another has not (k of n, k < n; with parallel phases, another finish is still to be collected) | committed |
//! | `before_end` | every resource finished, the END record is not appended | committed |
//! | `before_one_phase_commit` | the one-phase (last) resource is about to commit | rolled back |
//! | `after_one_phase_commit` | the one-phase (last) resource committed | see `docs/operations.md` |
//! | `log_compaction` | the log moved to a new segment and copied the open decisions into it, the older segments are not deleted yet | no decision lost |
//!
//! The `sqlassist` crate adds `recovery_mid_pass`.

/// Names of the crash points this crate defines, in protocol order.
///
/// # Examples
///
/// ```
/// assert!(transaction::CRASH_POINTS.contains(&"after_decision"));
/// ```
pub const CRASH_POINTS: &[&str] = &[
    "before_prepare",
    "after_prepare",
    "before_decision",
    "decision_unsynced",
    "after_decision",
    "after_commit",
    "before_end",
    "before_one_phase_commit",
    "after_one_phase_commit",
    "log_compaction",
];

/// Marks crash point `name`: with the `crash-points` feature, aborts the process when
/// `SQLASSIST_CRASH_POINT` names it and this is its `SQLASSIST_CRASH_COUNT`-th hit.
/// Without the feature it does nothing and costs nothing.
///
/// # Examples
///
/// ```
/// // Not armed (no SQLASSIST_CRASH_POINT, or a build without the feature): returns.
/// transaction::crash_point("a_point_of_my_own");
/// ```
#[inline(always)]
pub fn crash_point(name: &str) {
    #[cfg(feature = "crash-points")]
    armed::hit(name);
    #[cfg(not(feature = "crash-points"))]
    let _ = name;
}

#[cfg(feature = "crash-points")]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    struct Armed {
        name: String,
        count: u64,
        hits: AtomicU64,
    }

    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

    fn armed() -> Option<&'static Armed> {
        ARMED
            .get_or_init(|| {
                let name = std::env::var("SQLASSIST_CRASH_POINT").ok()?;
                let count = std::env::var("SQLASSIST_CRASH_COUNT")
                    .ok()
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(1u64)
                    .max(1);
                Some(Armed {
                    name,
                    count,
                    hits: AtomicU64::new(0),
                })
            })
            .as_ref()
    }

    pub(super) fn hit(name: &str) {
        let Some(armed) = armed() else { return };
        if armed.name == name && armed.hits.fetch_add(1, Ordering::Relaxed) + 1 == armed.count {
            eprintln!("sqlassist: crash point {name} reached: aborting");
            std::process::abort();
        }
    }
}
