//! Crash points abort the process where they say, and the file decision log holds the
//! decision exactly when the point comes after it. The test binary re-executes itself as
//! the child that dies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use transaction::testing::{Journal, Kind, ScriptedDataManager};
use transaction::{FileDecisionLog, FileLogOptions, TransactionManager};

const CHILD_DIR: &str = "TRANSACTION_CRASH_CHILD_DIR";

/// The child: commits one transaction over two two-phase resources and a one-phase one,
/// with a file decision log in the directory its parent gave. Does nothing in a normal run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let log = FileLogOptions::new()
        .preallocate(false)
        .open(&dir)
        .expect("open the log");
    let manager = TransactionManager::builder()
        .decision_log(Rc::new(log))
        .build();
    let journal = Journal::new();
    let txn = manager.begin().expect("begin");
    for key in ["a", "b"] {
        txn.join(ScriptedDataManager::new(key, Kind::TwoPhase, &journal))
            .expect("join");
    }
    txn.join(ScriptedDataManager::new("z", Kind::OnePhase, &journal))
        .expect("join");
    manager.commit().expect("commit");
}

fn dir(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("txcrash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

/// Runs the child with `point` armed; returns whether it was killed by `SIGABRT`.
fn run_child(dir: &Path, point: &str) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env("SQLASSIST_CRASH_POINT", point)
        .env("SQLASSIST_CRASH_COUNT", "1")
        .status()
        .expect("run the child");
    status.signal() == Some(6)
}

#[test]
fn every_crash_point_of_the_commit_aborts_and_leaves_the_decision_only_after_it() {
    let mut seen = Vec::new();
    for point in transaction::CRASH_POINTS {
        if *point == "log_compaction" {
            continue; // needs a segment switch: below
        }
        let dir = dir(point);
        assert!(run_child(&dir, point), "the child did not abort at {point}");
        let open = FileDecisionLog::inspect(&dir)
            .expect("inspect")
            .open_decisions;
        let decided = matches!(
            *point,
            "decision_unsynced" | "after_decision" | "after_commit" | "before_end"
        );
        assert_eq!(
            open.len(),
            usize::from(decided),
            "decisions open after {point}"
        );
        seen.push(*point);
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert_eq!(seen.len(), transaction::CRASH_POINTS.len() - 1);
}

#[test]
fn an_unarmed_or_other_point_lets_the_child_finish() {
    let dir = dir("other");
    assert!(!run_child(&dir, "no_such_point"));
    assert!(FileDecisionLog::inspect(&dir)
        .expect("inspect")
        .open_decisions
        .is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
