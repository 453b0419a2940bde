//! Graceful shutdown of a registry, against the real server: a transaction committing on
//! another thread is waited for and commits, a branch of ours left prepared is settled by
//! the last pass, the database log's lease is released (the same node id starts again at
//! once) and a file log's directory is freed, and a commit asking the released log for a
//! decision afterwards is refused with a typed error and rolls back.

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlassist::fault::{self, Phase as FaultPhase};
use sqlassist::{
    DatabaseDecisionLog, DatabaseLogError, DatabaseUrl, Engine, EngineOptions, InitOptions, NodeId,
    RecoveryAction, Registry,
};
use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
use transaction::{FileDecisionLog, FileLogError};

use common::{reset_thread, unique};

const TTL: Duration = Duration::from_secs(3);

fn engine(url: &str) -> Engine {
    Engine::new(EngineOptions::new(DatabaseUrl::parse(url).unwrap())).unwrap()
}

fn node() -> NodeId {
    let n = unique("sd").replace('_', "-");
    NodeId::new(n.chars().take(24).collect::<String>().trim_end_matches('-')).unwrap()
}

fn urls() -> Option<(String, String)> {
    Some((
        common::pg_url("SQLASSIST_TEST_PG_URL")?,
        common::pg_url("SQLASSIST_TEST_PG_URL_2")?,
    ))
}

/// Two managed PostgreSQL engines, `a` and `b` (the two test databases), on `node`.
fn registry(node: &NodeId, url: &str, url2: &str) -> Registry {
    let mut registry = Registry::new();
    registry.set_node_id(node.clone());
    for (name, u) in [("a", url), ("b", url2)] {
        registry
            .init_engine(name, engine(u), InitOptions::new().managed(true))
            .unwrap();
    }
    registry
}

/// The registry with a database log kept in `b`'s database (where the other tests'
/// recovery takes no node over), periodic passes running.
fn with_database_log(node: &NodeId, url: &str, url2: &str) -> (Registry, Arc<DatabaseDecisionLog>) {
    let log = DatabaseDecisionLog::open(engine(url2), node, TTL).unwrap();
    let mut registry = registry(node, url, url2);
    registry.use_database_decision_log(log.clone());
    registry.start_recovery(Duration::from_secs(1)).unwrap();
    (registry, log)
}

fn tables(url: &str, url2: &str, prefix: &str) -> String {
    let table = unique(prefix);
    for u in [url, url2] {
        common::pg::exec(u, &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"));
    }
    table
}

fn drop_tables(url: &str, url2: &str, table: &str) {
    for u in [url, url2] {
        common::pg::exec(u, &format!("DROP TABLE {table}"));
    }
}

/// Inserts `id` on both engines and commits through `registry`'s own manager.
fn commit_both(registry: &Registry, table: &str, id: i64) -> Result<(), transaction::Error> {
    let manager = registry.transaction_manager();
    manager.scope(|| {
        manager.begin().unwrap();
        for name in ["a", "b"] {
            registry
                .session(name)
                .unwrap()
                .execute(&format!("INSERT INTO {table} (id) VALUES ({id})"))
                .unwrap();
        }
        let outcome = manager.commit();
        if outcome.is_err() {
            let _ = manager.abort();
        }
        outcome
    })
}

/// The first error of type `E` in `err`'s source chain (looking into resource errors).
fn find<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        // A resource's error shows the wrapped one's message and sources, not itself.
        if let Some(found) = e
            .downcast_ref::<transaction::ResourceError>()
            .and_then(|r| r.downcast_ref::<E>())
        {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

fn counts(url: &str, url2: &str, table: &str) -> (i64, i64) {
    (
        common::pg::count(url, table),
        common::pg::count(url2, table),
    )
}

#[test]
fn shutdown_waits_for_a_transaction_committing_on_another_thread_and_it_commits() {
    reset_thread();
    let Some((url, url2)) = urls() else { return };
    let node = node();
    let table = tables(&url, &url2, "sd_drain");
    let (registry, _log) = with_database_log(&node, &url, &url2);
    let (voting, voted) = std::sync::mpsc::channel();
    let (took, outcome) = std::thread::scope(|s| {
        let committer = s.spawn(|| {
            let manager = registry.transaction_manager();
            manager.scope(|| {
                let txn = manager.begin().unwrap();
                for name in ["a", "b"] {
                    registry
                        .session(name)
                        .unwrap()
                        .execute(&format!("INSERT INTO {table} (id) VALUES (1)"))
                        .unwrap();
                }
                // Votes after `a` prepared and before `b` (the log's database) carries the
                // decision: the transaction is in flight for a while.
                let slow = ScriptedDataManager::new("slow", Kind::TwoPhase, &Journal::new())
                    .with_write_state(transaction::WriteState::Dirty);
                slow.on_call(move |call, _| {
                    if call == Call::TpcVote {
                        voting.send(()).unwrap();
                        std::thread::sleep(Duration::from_millis(1500));
                    }
                });
                txn.join(slow).unwrap();
                manager.commit()
            })
        });
        voted.recv().unwrap();
        // `a` prepares before this vote, or beside it with parallel phases.
        let deadline = Instant::now() + Duration::from_secs(1);
        while common::pg::prepared(&url, node.as_str()) < 1 {
            assert!(Instant::now() < deadline, "`a` was never prepared");
            std::thread::sleep(Duration::from_millis(20));
        }
        let started = Instant::now();
        let report = registry.shutdown(Duration::from_secs(20)).unwrap();
        let took = started.elapsed();
        assert!(report.is_clean(), "{report:?}");
        (took, committer.join().unwrap())
    });
    outcome.unwrap();
    assert!(took >= Duration::from_millis(500), "did not wait: {took:?}");
    assert!(!registry.is_recovering());
    assert_eq!(counts(&url, &url2, &table), (1, 1));
    assert_eq!(common::pg::prepared(&url, node.as_str()), 0);
    drop_tables(&url, &url2, &table);
}

#[test]
fn the_last_pass_of_shutdown_settles_a_branch_left_prepared_and_the_node_id_starts_again_at_once() {
    reset_thread();
    let Some((url, url2)) = urls() else { return };
    let node = node();
    let table = tables(&url, &url2, "sd_last");
    let (registry, log) = with_database_log(&node, &url, &url2);
    let incarnation = log.incarnation();
    {
        // The decision commits with `b`'s work; phase two fails on `a`, left prepared.
        let _fault = fault::inject("a", FaultPhase::Finish);
        assert!(commit_both(&registry, &table, 1)
            .unwrap_err()
            .is_heuristic());
    }
    assert_eq!(common::pg::prepared(&url, node.as_str()), 1);
    let report = registry.shutdown(Duration::from_secs(5)).unwrap();
    let committed: Vec<&str> = report
        .branches
        .iter()
        .filter(|b| matches!(b.action, RecoveryAction::Committed(_)))
        .map(|b| b.engine.as_str())
        .collect();
    assert_eq!(committed, ["a"], "{report:?}");
    assert_eq!(counts(&url, &url2, &table), (1, 1));
    assert_eq!(common::pg::prepared(&url, node.as_str()), 0);
    assert!(!log.is_live());

    // The lease is released: the same node id starts at once, one incarnation later.
    let started = Instant::now();
    let again = DatabaseDecisionLog::open(engine(&url2), &node, TTL).unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(again.incarnation(), incarnation + 1);

    // A commit through the shut-down registry asks a released log for its decision: a
    // typed refusal, and nothing committed anywhere.
    let err = commit_both(&registry, &table, 2).unwrap_err();
    assert!(
        matches!(
            find::<DatabaseLogError>(&err),
            Some(DatabaseLogError::Released { .. })
        ),
        "{err:?}"
    );
    assert_eq!(counts(&url, &url2, &table), (1, 1));
    assert_eq!(common::pg::prepared(&url, node.as_str()), 0);
    // Nor does its recovery act any more (the restarted node owns the branches).
    let report = registry.recover().unwrap();
    assert!(!report.unreachable.is_empty(), "{report:?}");
    drop(again);
    drop_tables(&url, &url2, &table);
}

#[test]
fn shutdown_closes_a_file_log_so_its_directory_opens_again_at_once() {
    reset_thread();
    let Some((url, url2)) = urls() else { return };
    let node = node();
    let table = tables(&url, &url2, "sd_file");
    let dir = common::TempDir::new("shutdown");
    let mut registry = registry(&node, &url, &url2);
    registry.use_decision_log(Arc::new(FileDecisionLog::open(dir.path()).unwrap()));
    registry.start_recovery(Duration::from_secs(1)).unwrap();
    commit_both(&registry, &table, 1).unwrap();
    let report = registry.shutdown(Duration::from_secs(5)).unwrap();
    assert!(report.is_clean(), "{report:?}");

    let again = FileDecisionLog::open(dir.path()).unwrap();
    assert_eq!(again.incarnation(), 2);
    let err = commit_both(&registry, &table, 2).unwrap_err();
    assert!(
        matches!(
            find::<FileLogError>(&err),
            Some(FileLogError::Closed { .. })
        ),
        "{err:?}"
    );
    assert_eq!(counts(&url, &url2, &table), (1, 1));
    assert_eq!(common::pg::prepared(&url, node.as_str()), 0);
    assert_eq!(common::pg::prepared(&url2, node.as_str()), 0);
    drop(again);
    drop_tables(&url, &url2, &table);
}
