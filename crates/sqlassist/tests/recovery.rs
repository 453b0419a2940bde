//! Recovery against real PostgreSQL and MariaDB servers: branches a failed phase two (or a
//! dead process) left prepared are committed when the durable decision log holds their
//! decision and rolled back when it does not; a pass never touches a transaction still
//! being committed, other nodes' branches or foreign ones.

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use diesel::connection::SimpleConnection;
use diesel::Connection;
use sqlassist::fault::{self, Phase as FaultPhase};
use sqlassist::{
    BranchId, DatabaseUrl, Engine, EngineOptions, Finished, InitOptions, NodeId, Owner,
    RecoveryAction, Registry,
};
use transaction::FileDecisionLog;

use common::{reset_thread, unique, Table, TempDir};

fn engine(url: &str) -> Engine {
    Engine::new(EngineOptions::new(DatabaseUrl::parse(url).unwrap())).unwrap()
}

/// A node id no other test uses.
fn test_node() -> NodeId {
    NodeId::new(&unique("r").replace('_', "-")).unwrap()
}

struct Servers {
    pg: String,
    my: String,
}

fn servers() -> Option<Servers> {
    Some(Servers {
        pg: common::pg_url("SQLASSIST_TEST_PG_URL")?,
        my: common::mysql_url("SQLASSIST_TEST_MYSQL_URL")?,
    })
}

/// A registry of node `node` with managed engines `pg` and `my`, recording in `log`.
fn registry(
    node: &NodeId,
    s: &Servers,
    names: &(String, String),
    log: Arc<FileDecisionLog>,
) -> Registry {
    let mut registry = Registry::new();
    registry.set_node_id(node.clone());
    registry.use_decision_log(log);
    registry
        .init_engine(&names.0, engine(&s.pg), InitOptions::new().managed(true))
        .unwrap();
    registry
        .init_engine(&names.1, engine(&s.my), InitOptions::new().managed(true))
        .unwrap();
    registry
}

/// Prepares, by hand, a PostgreSQL branch inserting `value` with gid `gid`.
fn pg_prepare(url: &str, table: &str, value: &str, gid: &str) {
    let mut c = diesel::PgConnection::establish(url).unwrap();
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO {table} VALUES ('{value}'); PREPARE TRANSACTION '{gid}'"
    ))
    .unwrap();
}

/// Prepares, by hand, a MariaDB XA branch inserting `value` with xid `xid` (SQL form).
fn my_prepare(url: &str, table: &str, value: &str, xid: &str) {
    let mut c = diesel::MysqlConnection::establish(url).unwrap();
    c.batch_execute(&format!(
        "XA START {xid}; INSERT INTO {table} VALUES ('{value}'); XA END {xid}; XA PREPARE {xid}"
    ))
    .unwrap();
}

/// The xid, in SQL, of sqlassist's branch `id` on MariaDB: `'<gtrid>','<engine>'`.
fn xid_sql(id: &BranchId) -> String {
    let gid = id.to_string();
    let gtrid = &gid[..gid.len() - id.engine().len() - 1];
    format!("'{gtrid}','{}'", id.engine())
}

/// Whether a listed branch id names `text`: as is (PostgreSQL) or in lowercase hex (an XA
/// id as `XA RECOVER CONVERT XID` lists it).
fn mentions(id: &str, text: &str) -> bool {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    id.contains(text) || id.contains(&hex)
}

/// How many branches of `node` the engine lists as prepared.
fn ours_prepared(registry: &Registry, name: &str) -> usize {
    registry
        .engine(name)
        .unwrap()
        .prepared_branches(registry.node_id())
        .unwrap()
        .iter()
        .filter(|b| matches!(b.owner(), Owner::Ours(_)))
        .count()
}

#[test]
fn a_new_registry_commits_decided_branches_and_rolls_back_undecided_ones_from_the_log() {
    let Some(s) = servers() else {
        return;
    };
    let pg_table = Table::pg(&s.pg, "rc_pg", "name TEXT");
    let my_table = Table::mysql(&s.my, "rc_my", "name VARCHAR(32)");
    let dir = TempDir::new("recovery-restart");
    let node = test_node();
    let names = (unique("pg"), unique("my"));

    // A first "process": one transaction decides to commit, but phase two fails on both
    // engines; one more branch per engine is prepared by a transaction that never decided.
    let first_log = Arc::new(FileDecisionLog::open(dir.path()).unwrap());
    let first = registry(&node, &s, &names, first_log.clone());
    let manager = first.transaction_manager();
    manager.scope(|| {
        manager.begin().unwrap();
        for (name, table) in [(&names.0, &*pg_table), (&names.1, &*my_table)] {
            first
                .session(name)
                .unwrap()
                .execute(&format!("INSERT INTO {table} VALUES ('decided')"))
                .unwrap();
        }
        let _pg = fault::inject(&names.0, FaultPhase::Finish);
        let _my = fault::inject(&names.1, FaultPhase::Finish);
        let err = manager.commit().unwrap_err();
        assert!(err.is_heuristic(), "{err}");
    });
    let undecided = |engine: &str| {
        BranchId::new(node.clone(), first.incarnation(), u64::MAX - 1, engine).unwrap()
    };
    pg_prepare(
        &s.pg,
        &pg_table,
        "undecided",
        &undecided(&names.0).to_string(),
    );
    my_prepare(
        &s.my,
        &my_table,
        "undecided",
        &xid_sql(&undecided(&names.1)),
    );
    assert_eq!(first_log.open_decisions().len(), 1);
    assert_eq!(ours_prepared(&first, &names.0), 2);
    assert_eq!(ours_prepared(&first, &names.1), 2);
    // The process dies: nothing of it finishes phase two.
    reset_thread();
    drop(manager);
    drop(first);
    drop(first_log);

    // A new process on the same log and node.
    let second = registry(
        &node,
        &s,
        &names,
        Arc::new(FileDecisionLog::open(dir.path()).unwrap()),
    );
    assert_eq!(second.incarnation(), 2);
    let report = second.recover().unwrap();
    let ours = |action: RecoveryAction| {
        report
            .branches
            .iter()
            .filter(|b| b.action == action && mentions(&b.id, node.as_str()))
            .count()
    };
    assert_eq!(
        ours(RecoveryAction::Committed(Finished::Done)),
        2,
        "{report:#?}"
    );
    assert_eq!(
        ours(RecoveryAction::RolledBack(Finished::Done)),
        2,
        "{report:#?}"
    );
    assert_eq!(report.forgotten.len(), 1, "{report:#?}");
    assert!(report.unreachable.is_empty());
    assert_eq!(common::pg::names(&s.pg, &pg_table), ["decided"]);
    assert_eq!(common::my::names(&s.my, &my_table), ["decided"]);
    assert_eq!(ours_prepared(&second, &names.0), 0);
    assert_eq!(ours_prepared(&second, &names.1), 0);
    assert!(second.decision_log().unwrap().open_decisions().is_empty());

    // A second pass finds nothing of ours left.
    let again = second.recover().unwrap();
    assert!(
        !again
            .branches
            .iter()
            .any(|b| mentions(&b.id, node.as_str())),
        "{again:#?}"
    );
}

#[test]
fn other_nodes_and_foreign_branches_are_reported_and_left_prepared() {
    let Some(s) = servers() else {
        return;
    };
    let pg_table = Table::pg(&s.pg, "rc_foreign_pg", "name TEXT");
    let my_table = Table::mysql(&s.my, "rc_foreign_my", "name VARCHAR(32)");
    let dir = TempDir::new("recovery-foreign");
    let (node, other) = (test_node(), test_node());
    let names = (unique("pg"), unique("my"));
    let registry = registry(
        &node,
        &s,
        &names,
        Arc::new(FileDecisionLog::open(dir.path()).unwrap()),
    );

    let theirs_pg = BranchId::new(other.clone(), 1, 7, &names.0)
        .unwrap()
        .to_string();
    let theirs_my = BranchId::new(other.clone(), 1, 7, &names.1).unwrap();
    let foreign_pg = unique("someone_else");
    let foreign_my = format!("'{}','x'", unique("someone_else"));
    pg_prepare(&s.pg, &pg_table, "theirs", &theirs_pg);
    pg_prepare(&s.pg, &pg_table, "foreign", &foreign_pg);
    my_prepare(&s.my, &my_table, "theirs", &xid_sql(&theirs_my));
    my_prepare(&s.my, &my_table, "foreign", &foreign_my);

    let report = registry.recover().unwrap();
    let action = |needle: &str, engine: &str| {
        report
            .branches
            .iter()
            .find(|b| b.engine == engine && mentions(&b.id, needle))
            .map(|b| b.action)
    };
    assert_eq!(
        action(&theirs_pg, &names.0),
        Some(RecoveryAction::OtherNode)
    );
    assert_eq!(action(&foreign_pg, &names.0), Some(RecoveryAction::Foreign));
    assert_eq!(
        action(other.as_str(), &names.1),
        Some(RecoveryAction::OtherNode)
    );
    let foreign_gtrid = foreign_my.split('\'').nth(1).unwrap();
    assert_eq!(
        action(foreign_gtrid, &names.1),
        Some(RecoveryAction::Foreign)
    );
    // Still prepared: finish them by hand.
    assert_eq!(common::pg::prepared(&s.pg, &theirs_pg), 1);
    assert_eq!(common::pg::prepared(&s.pg, &foreign_pg), 1);
    assert_eq!(common::my::xa_prepared(&s.my, other.as_str()), 1);
    assert_eq!(common::my::xa_prepared(&s.my, foreign_gtrid), 1);
    common::pg::exec(&s.pg, &format!("ROLLBACK PREPARED '{theirs_pg}'"));
    common::pg::exec(&s.pg, &format!("ROLLBACK PREPARED '{foreign_pg}'"));
    common::my::exec(&s.my, &format!("XA ROLLBACK {}", xid_sql(&theirs_my)));
    common::my::exec(&s.my, &format!("XA ROLLBACK {foreign_my}"));
    assert_eq!(common::pg::count(&s.pg, &pg_table), 0);
    assert_eq!(common::my::count(&s.my, &my_table), 0);
}

#[test]
fn a_branch_prepared_after_a_pass_listed_the_branches_is_caught_by_the_next_pass() {
    let Some(s) = servers() else {
        return;
    };
    let pg_table = Table::pg(&s.pg, "rc_late_pg", "name TEXT");
    let dir = TempDir::new("recovery-late");
    let node = test_node();
    let names = (unique("pg"), unique("my"));
    let registry = registry(
        &node,
        &s,
        &names,
        Arc::new(FileDecisionLog::open(dir.path()).unwrap()),
    );
    // A slow client of a dead incarnation finishes its PREPARE after this pass listed.
    let first = registry.recover().unwrap();
    let late = BranchId::new(node.clone(), 0, 3, &names.0)
        .unwrap()
        .to_string();
    pg_prepare(&s.pg, &pg_table, "late", &late);
    assert!(first
        .ids(RecoveryAction::RolledBack(Finished::Done))
        .all(|id| id != late));
    let next = registry.recover().unwrap();
    assert_eq!(
        next.ids(RecoveryAction::RolledBack(Finished::Done))
            .collect::<Vec<_>>(),
        [late.as_str()]
    );
    assert_eq!(common::pg::count(&s.pg, &pg_table), 0);
}

#[test]
fn passes_every_few_milliseconds_never_roll_back_a_transaction_being_committed() {
    let Some(s) = servers() else {
        return;
    };
    const THREADS: usize = 4;
    /// Each thread commits at least this many, and goes on until the passes below ran.
    const PER_THREAD: usize = 40;
    const MIN_PASSES: usize = 20;
    let pg_table = Table::pg(&s.pg, "rc_busy_pg", "name TEXT");
    let my_table = Table::mysql(&s.my, "rc_busy_my", "name VARCHAR(32)");
    let dir = TempDir::new("recovery-busy");
    let node = test_node();
    let names = (unique("pg"), unique("my"));
    let registry = registry(
        &node,
        &s,
        &names,
        Arc::new(FileDecisionLog::open(dir.path()).unwrap()),
    );
    let done = AtomicBool::new(false);
    let passes = AtomicUsize::new(0);
    let skipped = AtomicUsize::new(0);
    let committed = std::thread::scope(|scope| {
        let recoverer = scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let report = registry.recover().unwrap();
                for b in report
                    .branches
                    .iter()
                    .filter(|b| mentions(&b.id, node.as_str()))
                {
                    assert!(
                        !matches!(
                            b.action,
                            RecoveryAction::RolledBack(Finished::Done)
                                | RecoveryAction::Committed(Finished::Done)
                                | RecoveryAction::Failed
                        ),
                        "a pass finished a branch being committed: {b:?}"
                    );
                    if b.action == RecoveryAction::InFlight {
                        skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                passes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (registry, names, pg_table, my_table, passes) =
                    (&registry, &names, &*pg_table, &*my_table, &passes);
                scope.spawn(move || {
                    let manager = registry.transaction_manager();
                    let mut committed = 0usize;
                    manager.scope(|| {
                        for i in 0.. {
                            if i >= PER_THREAD && passes.load(Ordering::Relaxed) >= MIN_PASSES {
                                break;
                            }
                            manager.begin().unwrap();
                            for (name, table) in [(&names.0, pg_table), (&names.1, my_table)] {
                                registry
                                    .session(name)
                                    .unwrap()
                                    .execute(&format!("INSERT INTO {table} VALUES ('{t}-{i}')"))
                                    .unwrap();
                            }
                            manager.commit().unwrap();
                            committed += 1;
                        }
                    });
                    reset_thread();
                    committed
                })
            })
            .collect();
        let committed: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        done.store(true, Ordering::Relaxed);
        recoverer.join().unwrap();
        committed
    });
    let expected = i64::try_from(committed).unwrap();
    assert_eq!(common::pg::count(&s.pg, &pg_table), expected);
    assert_eq!(common::my::count(&s.my, &my_table), expected);
    assert_eq!(ours_prepared(&registry, &names.0), 0);
    assert_eq!(ours_prepared(&registry, &names.1), 0);
    assert!(registry.decision_log().unwrap().open_decisions().is_empty());
    eprintln!(
        "{committed} commits, {} passes, {} in-flight branches skipped",
        passes.load(Ordering::Relaxed),
        skipped.load(Ordering::Relaxed)
    );
    assert!(passes.load(Ordering::Relaxed) >= MIN_PASSES);
}

/// Syncs for real until armed, then fails every call (an `EIO` from `fdatasync`).
#[derive(Default)]
struct FailingSync(AtomicBool);

impl transaction::DataSync for FailingSync {
    fn sync_data(&self, file: &std::fs::File) -> std::io::Result<()> {
        if self.0.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fdatasync failure"));
        }
        file.sync_data()
    }
}

#[test]
fn a_decision_of_unknown_outcome_leaves_the_branches_prepared_and_recovery_finishes_them() {
    let Some(s) = servers() else {
        return;
    };
    let pg_table = Table::pg(&s.pg, "rc_unknown_pg", "name TEXT");
    let my_table = Table::mysql(&s.my, "rc_unknown_my", "name VARCHAR(32)");
    let dir = TempDir::new("recovery-unknown");
    let node = test_node();
    let names = (unique("pg"), unique("my"));
    let sync = Arc::new(FailingSync::default());
    let log = Arc::new(
        transaction::FileLogOptions::new()
            .data_sync(sync.clone())
            .open(dir.path())
            .unwrap(),
    );
    let first = registry(&node, &s, &names, log.clone());
    let manager = first.transaction_manager();
    manager.scope(|| {
        manager.begin().unwrap();
        for (name, table) in [(&names.0, &*pg_table), (&names.1, &*my_table)] {
            first
                .session(name)
                .unwrap()
                .execute(&format!("INSERT INTO {table} VALUES ('unknown')"))
                .unwrap();
        }
        sync.0.store(true, Ordering::SeqCst);
        let err = manager.commit().unwrap_err();
        assert!(
            matches!(err, transaction::Error::OutcomeUnknown { .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("nothing was committed"), "{err}");
        manager.abort().unwrap();
    });
    reset_thread();
    // Nothing was rolled back: both branches wait for recovery.
    assert_eq!(ours_prepared(&first, &names.0), 1);
    assert_eq!(ours_prepared(&first, &names.1), 1);
    drop(manager);
    drop(first);
    drop(log);

    // The write reached the file: a restart finds the decision and commits.
    let second = registry(
        &node,
        &s,
        &names,
        Arc::new(FileDecisionLog::open(dir.path()).unwrap()),
    );
    let report = second.recover().unwrap();
    assert_eq!(
        report
            .ids(RecoveryAction::Committed(Finished::Done))
            .filter(|id| mentions(id, node.as_str()))
            .count(),
        2,
        "{report:#?}"
    );
    assert_eq!(common::pg::names(&s.pg, &pg_table), ["unknown"]);
    assert_eq!(common::my::names(&s.my, &my_table), ["unknown"]);
}
