//! The decision log in a PostgreSQL database, against the real server and real processes:
//! a node claims its id with a lease (a second process on the same id refuses to start,
//! a killed one's lease expires), decisions are rows written by a fenced INSERT (refused
//! once the node is taken over), a node paused past its lease with `SIGSTOP` cannot
//! record a decision after `SIGCONT`, and recovery commits a prepared branch from the row.

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlassist::fault::{self, Phase as FaultPhase};
use sqlassist::{
    DatabaseDecisionLog, DatabaseLogError, DatabaseUrl, Engine, EngineOptions, Error, InitOptions,
    NodeId, RecoveryAction, Registry,
};
use transaction::{Branch, DecisionLog, TransactionId};

use common::{reset_thread, unique};

/// Set in a child process: `<node>` (claim and hold) or `<node>\n<table>` (claim, then
/// commit one transaction when told on stdin).
const CHILD: &str = "SQLASSIST_DBLOG_CHILD";
const TTL: Duration = Duration::from_secs(3);
/// Set with [`CHILD`]: the child claims the node, runs one recovery pass and exits.
const RECOVER: &str = "SQLASSIST_DBLOG_RECOVER";

fn engine(url: &str) -> Engine {
    Engine::new(EngineOptions::new(DatabaseUrl::parse(url).unwrap())).unwrap()
}

fn node() -> NodeId {
    let n = unique("dl").replace('_', "-");
    NodeId::new(n.chars().take(24).collect::<String>().trim_end_matches('-')).unwrap()
}

/// Two managed PostgreSQL engines (`a`, `b`: the two test databases) recording in a
/// database log kept in `a`'s database.
fn registry(node: &NodeId, log: Arc<DatabaseDecisionLog>) -> Registry {
    let mut registry = Registry::new();
    registry.set_node_id(node.clone());
    registry.use_database_decision_log(log);
    for (name, var) in [
        ("a", "SQLASSIST_TEST_PG_URL"),
        ("b", "SQLASSIST_TEST_PG_URL_2"),
    ] {
        registry
            .init_engine(
                name,
                engine(&std::env::var(var).unwrap()),
                InitOptions::new().managed(true),
            )
            .unwrap();
    }
    registry
}

/// The tests of this file that let a lease expire or take nodes over run one at a time:
/// a recovery pass takes over every expired node of the database, other tests' included.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn urls() -> Option<(String, String)> {
    Some((
        common::pg_url("SQLASSIST_TEST_PG_URL")?,
        common::pg_url("SQLASSIST_TEST_PG_URL_2")?,
    ))
}

/// The child: claims the node, says so, then either holds it until killed or commits one
/// transaction over both databases when a line arrives on stdin.
#[test]
fn db_log_child() {
    let Ok(text) = std::env::var(CHILD) else {
        return;
    };
    let mut lines = text.lines();
    let node = NodeId::new(lines.next().unwrap()).unwrap();
    let (table, mode) = (lines.next(), lines.next());
    // `hang`: the log in `b`'s database, where no other test's recovery takes nodes over.
    let log_url = if mode == Some("hang") {
        "SQLASSIST_TEST_PG_URL_2"
    } else {
        "SQLASSIST_TEST_PG_URL"
    };
    let url = std::env::var(log_url).unwrap();
    let log = DatabaseDecisionLog::open(engine(&url), &node, TTL).unwrap();
    println!("claimed {}", log.incarnation());
    if std::env::var_os(RECOVER).is_some() {
        let report = registry(&node, log).recover().unwrap();
        let count = |f: fn(&RecoveryAction) -> bool| {
            report.branches.iter().filter(|b| f(&b.action)).count()
        };
        println!(
            "recovered committed {} rolled back {}",
            count(|a| matches!(a, RecoveryAction::Committed(_))),
            count(|a| matches!(a, RecoveryAction::RolledBack(_)))
        );
        return;
    }
    let Some(table) = table else {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    };
    let registry = registry(&node, log);
    if mode == Some("hang") {
        leave_decided_and_undecided_then_hang(&registry, table);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let manager = registry.transaction_manager();
    let outcome = manager.scope(|| {
        manager.begin().unwrap();
        for name in ["a", "b"] {
            registry
                .session(name)
                .unwrap()
                .execute(&format!("INSERT INTO {table} (id) VALUES (1)"))
                .unwrap();
        }
        manager.commit()
    });
    match outcome {
        Ok(()) => println!("committed"),
        Err(e) => println!("failed {e}"),
    }
}

/// In the child, with the log in `b`'s database: a first transaction whose decision is
/// durable (carried by `b`'s commit) but whose `a` branch stays prepared (phase two
/// fails), then a second one whose `a` branch is prepared with no decision: the process
/// hangs in that vote until killed.
fn leave_decided_and_undecided_then_hang(registry: &Registry, table: &str) -> ! {
    use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    let manager = registry.transaction_manager();
    manager.scope(|| {
        manager.begin().unwrap();
        for name in ["a", "b"] {
            registry
                .session(name)
                .unwrap()
                .execute(&format!("INSERT INTO {table} (id) VALUES (1)"))
                .unwrap();
        }
        let _fault = fault::inject("a", FaultPhase::Finish);
        assert!(manager.commit().unwrap_err().is_heuristic());
        manager.abort().unwrap();

        let txn = manager.begin().unwrap();
        registry
            .session("a")
            .unwrap()
            .execute(&format!("INSERT INTO {table} (id) VALUES (2)"))
            .unwrap();
        // Dirty and sorting after `a`; with parallel phases `a` may still be preparing
        // when this vote starts: it hangs once both branches of the node are prepared.
        let hang = ScriptedDataManager::new("zzz", Kind::TwoPhase, &Journal::new())
            .with_write_state(transaction::WriteState::Dirty);
        let (url, node) = (
            std::env::var("SQLASSIST_TEST_PG_URL").unwrap(),
            registry.node_id().to_string(),
        );
        hang.on_call(move |call, _| {
            if call == Call::TpcVote {
                while common::pg::prepared(&url, &node) < 2 {
                    std::thread::sleep(Duration::from_millis(20));
                }
                println!("hanging");
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        });
        txn.join(hang).unwrap();
        let _ = manager.commit();
    });
    unreachable!("the vote hangs until the process is killed");
}

fn child(
    node: &NodeId,
    table: Option<&str>,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    child_with(node, table, &[])
}

fn child_with(
    node: &NodeId,
    table: Option<&str>,
    env: &[(&str, &str)],
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut text = node.to_string();
    if let Some(t) = table {
        text.push('\n');
        text.push_str(t);
    }
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "db_log_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, text)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("claimed ") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child died before claiming"
        );
    }
    (c, out)
}

#[test]
fn a_second_process_on_the_same_node_id_refuses_to_start_until_the_first_lease_expires() {
    let _serial = serial();
    let Some((url, _)) = urls() else { return };
    let node = node();
    let (mut first, _out) = child(&node, None);
    let err = DatabaseDecisionLog::open(engine(&url), &node, TTL).unwrap_err();
    match &err {
        Error::NodeLeaseHeld { node: n, holder } => {
            assert_eq!(n, node.as_str());
            assert!(holder.contains(&format!("pid {}", first.id())), "{holder}");
        }
        other => panic!("expected NodeLeaseHeld, got {other:?}"),
    }
    // Killed for good: its lease expires, and the id can be claimed again, one
    // incarnation later.
    first.kill().unwrap();
    first.wait().unwrap();
    let deadline = Instant::now() + TTL * 3;
    let log = loop {
        match DatabaseDecisionLog::open(engine(&url), &node, TTL) {
            Ok(log) => break log,
            Err(Error::NodeLeaseHeld { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(log.incarnation(), 2);
    assert!(log.is_live());
    // Released on drop: the next claim succeeds at once.
    drop(log);
    let again = DatabaseDecisionLog::open(engine(&url), &node, TTL).unwrap();
    assert_eq!(again.incarnation(), 3);
}

#[test]
fn a_taken_over_node_cannot_record_a_decision() {
    let _serial = serial();
    let Some((url, _)) = urls() else { return };
    let node = node();
    let log = DatabaseDecisionLog::open(engine(&url), &node, TTL).unwrap();
    let branch = |id: &str| Branch {
        resource: "a".to_owned(),
        branch_id: Some(id.to_owned()),
    };
    let txn = TransactionId::next();
    log.record_commit(txn, &[branch("g1")]).unwrap();
    let open = log.open_decisions().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].transaction, txn);
    assert_eq!(open[0].branches, [branch("g1")]);
    log.forget(txn).unwrap();
    assert!(log.open_decisions().unwrap().is_empty());

    // Another node takes this one over (as recovery's takeover does, in one transaction).
    common::pg::exec(
        &url,
        &format!(
            "BEGIN; SELECT 1 FROM sqlassist_node WHERE node = '{node}' FOR UPDATE; \
             UPDATE sqlassist_node SET taken_over_by = 'someone-else' WHERE node = '{node}'; COMMIT"
        ),
    );
    assert!(log.is_live(), "the local lease has not expired yet");
    let err = log
        .record_commit(TransactionId::next(), &[branch("g2")])
        .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<DatabaseLogError>(),
            Some(DatabaseLogError::Fenced { .. })
        ),
        "{err}"
    );
    assert!(!log.is_outcome_unknown(&*err));
    assert!(log.open_decisions().unwrap().is_empty());
}

#[test]
fn a_node_paused_past_its_lease_and_taken_over_commits_nothing_after_it_resumes() {
    let _serial = serial();
    let Some((url, url2)) = urls() else { return };
    let node = node();
    let table = unique("lastres_paused");
    for u in [&url, &url2] {
        common::pg::exec(u, &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"));
    }
    let (mut c, mut out) = child(&node, Some(&table));
    let pid = c.id().to_string();
    let signal = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    std::thread::sleep(TTL + Duration::from_secs(1));
    // Another node takes the expired one over.
    common::pg::exec(
        &url,
        &format!(
            "BEGIN; SELECT 1 FROM sqlassist_node WHERE node = '{node}' FOR UPDATE; \
             UPDATE sqlassist_node SET taken_over_by = 'taker', lease_until = statement_timestamp() + interval '30 seconds' \
             WHERE node = '{node}' AND lease_until < statement_timestamp(); COMMIT"
        ),
    );
    signal("-CONT");
    writeln!(c.stdin.as_mut().unwrap(), "go").unwrap();
    let mut text = String::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        text.push_str(&line);
        line.clear();
    }
    c.wait().unwrap();
    assert!(
        text.contains("failed "),
        "the paused node committed: {text}"
    );
    assert!(!text.lines().any(|l| l.trim() == "committed"), "{text}");
    // One outcome: nothing anywhere, and nothing of the node left prepared.
    for u in [&url, &url2] {
        assert_eq!(common::pg::count(u, &table), 0);
        assert_eq!(common::pg::prepared(u, node.as_str()), 0);
        common::pg::exec(u, &format!("DROP TABLE {table}"));
    }
}

#[test]
fn recovery_commits_a_prepared_branch_from_the_decision_row() {
    let _serial = serial();
    reset_thread();
    let Some((url, url2)) = urls() else { return };
    let node = node();
    let table = unique("lastres_dbrec");
    for u in [&url, &url2] {
        common::pg::exec(u, &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"));
    }
    let log = DatabaseDecisionLog::open(engine(&url), &node, TTL).unwrap();
    let registry = registry(&node, log.clone());
    let manager = registry.transaction_manager();
    manager.scope(|| {
        manager.begin().unwrap();
        for name in ["a", "b"] {
            registry
                .session(name)
                .unwrap()
                .execute(&format!("INSERT INTO {table} (id) VALUES (9)"))
                .unwrap();
        }
        let _fault = fault::inject("b", FaultPhase::Finish);
        assert!(manager.commit().unwrap_err().is_heuristic());
        manager.abort().unwrap();
    });
    assert_eq!(
        (
            common::pg::count(&url, &table),
            common::pg::count(&url2, &table)
        ),
        (1, 0)
    );
    assert_eq!(log.open_decisions().unwrap().len(), 1);
    let report = registry.recover().unwrap();
    let committed: Vec<&str> = report
        .branches
        .iter()
        .filter(|b| matches!(b.action, RecoveryAction::Committed(_)))
        .filter(|b| b.branch_id().is_some_and(|id| id.node() == &node))
        .map(|b| b.engine.as_str())
        .collect();
    assert_eq!(committed, ["b"], "{report:?}");
    assert_eq!(common::pg::count(&url2, &table), 1);
    assert_eq!(report.forgotten.len(), 1);
    assert!(log.open_decisions().unwrap().is_empty());
    for u in [&url, &url2] {
        common::pg::exec(u, &format!("DROP TABLE {table}"));
    }
}

/// Rows of this node in the decision table of `url`'s database.
fn decision_rows(url: &str, node: &NodeId) -> i64 {
    common::pg::scalar(
        url,
        &format!("SELECT COUNT(*) FROM sqlassist_decision WHERE node = '{node}'"),
    )
}

#[test]
fn the_log_database_takes_part_unprepared_and_its_commit_is_the_decision() {
    let _serial = serial();
    reset_thread();
    let Some((url, url2)) = urls() else { return };
    let node = node();
    let table = unique("lastres_ride");
    for u in [&url, &url2] {
        common::pg::exec(u, &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"));
    }
    let log = DatabaseDecisionLog::open(engine(&url), &node, TTL).unwrap();
    let registry = registry(&node, log.clone());
    let manager = registry.transaction_manager();
    manager.scope(|| {
        manager.begin().unwrap();
        for name in ["a", "b"] {
            registry
                .session(name)
                .unwrap()
                .execute(&format!("INSERT INTO {table} (id) VALUES (1)"))
                .unwrap();
        }
        // `a` is the log's database: it votes last, is not prepared, and its one-phase
        // commit holds the decision row (which the coordinator does not delete: recovery
        // does, once every branch is finished).
        manager.commit().unwrap();
    });
    assert_eq!(
        (
            common::pg::count(&url, &table),
            common::pg::count(&url2, &table)
        ),
        (1, 1)
    );
    assert_eq!(decision_rows(&url, &node), 1);
    let decided = log.open_decisions().unwrap();
    let resources: Vec<&str> = decided[0]
        .branches
        .iter()
        .map(|b| b.resource.as_str())
        .collect();
    assert_eq!(resources, ["b"], "only b was prepared");
    let report = registry.recover().unwrap();
    assert_eq!(report.forgotten.len(), 1);
    assert_eq!(decision_rows(&url, &node), 0);

    // Taken over: the decision INSERT inside `a`'s transaction is fenced, and nothing
    // commits anywhere.
    common::pg::exec(
        &url,
        &format!(
            "BEGIN; SELECT 1 FROM sqlassist_node WHERE node = '{node}' FOR UPDATE; \
             UPDATE sqlassist_node SET taken_over_by = 'someone-else' WHERE node = '{node}'; COMMIT"
        ),
    );
    manager.scope(|| {
        manager.begin().unwrap();
        for name in ["a", "b"] {
            registry
                .session(name)
                .unwrap()
                .execute(&format!("INSERT INTO {table} (id) VALUES (2)"))
                .unwrap();
        }
        let err = manager.commit().unwrap_err();
        assert_eq!(err.resource(), Some("a"), "{err:?}");
        manager.abort().unwrap();
    });
    assert_eq!(
        (
            common::pg::count(&url, &table),
            common::pg::count(&url2, &table)
        ),
        (1, 1)
    );
    assert_eq!(common::pg::prepared(&url, node.as_str()), 0);
    for u in [&url, &url2] {
        common::pg::exec(u, &format!("DROP TABLE {table}"));
    }
}

#[test]
fn a_node_killed_for_good_is_taken_over_and_its_transactions_settled_by_another() {
    let _serial = serial();
    reset_thread();
    let Some((url, url2)) = urls() else { return };
    let dead = node();
    let table = unique("lastres_takeover");
    for u in [&url, &url2] {
        common::pg::exec(u, &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"));
    }
    // The node dies right after its decision is durable (carried by `a`'s commit): `b`'s
    // branch stays prepared, and only the decision row says it commits.
    let (mut c, _out) = child_with(
        &dead,
        Some(&table),
        &[("SQLASSIST_CRASH_POINT", "after_decision")],
    );
    writeln!(c.stdin.as_mut().unwrap(), "go").unwrap();
    let status = c.wait().unwrap();
    assert!(!status.success());
    assert_eq!(common::pg::prepared(&url2, dead.as_str()), 1);
    assert_eq!(
        (
            common::pg::count(&url, &table),
            common::pg::count(&url2, &table)
        ),
        (1, 0)
    );

    // Another node, once the dead one's lease expired, takes it over in its recovery.
    let me = node();
    let log = DatabaseDecisionLog::open(engine(&url), &me, TTL).unwrap();
    let registry = registry(&me, log);
    std::thread::sleep(TTL + Duration::from_millis(500));
    let report = registry.recover().unwrap();
    let committed: Vec<&str> = report
        .branches
        .iter()
        .filter(|b| matches!(b.action, RecoveryAction::Committed(_)))
        .filter(|b| b.branch_id().is_some_and(|id| id.node() == &dead))
        .map(|b| b.engine.as_str())
        .collect();
    assert_eq!(committed, ["b"], "{report:?}");
    assert_eq!(
        (
            common::pg::count(&url, &table),
            common::pg::count(&url2, &table)
        ),
        (1, 1)
    );
    assert_eq!(common::pg::prepared(&url2, dead.as_str()), 0);
    // Nothing of the dead node is left: its decisions are gone and its id is free again.
    assert_eq!(decision_rows(&url, &dead), 0);
    // Settled: no later pass takes it again.
    let settled = format!(
        "SELECT COUNT(*) FROM sqlassist_node WHERE node = '{dead}' AND taken_over_by = 'settled!'"
    );
    assert_eq!(common::pg::scalar(&url, &settled), 1);
    let lease = format!(
        "SELECT (extract(epoch FROM lease_until) * 1000000)::bigint FROM sqlassist_node WHERE node = '{dead}'"
    );
    let before = common::pg::scalar(&url, &lease);
    registry.recover().unwrap();
    assert_eq!(common::pg::scalar(&url, &settled), 1);
    assert_eq!(common::pg::scalar(&url, &lease), before, "taken over again");
    let again = DatabaseDecisionLog::open(engine(&url), &dead, TTL).unwrap();
    assert_eq!(again.incarnation(), 2);
    for u in [&url, &url2] {
        common::pg::exec(u, &format!("DROP TABLE {table}"));
    }
}

/// A process that claims a node id again once the lease expired (a restart, or a second
/// process on the id) while the old incarnation's decision is still in flight (inserted,
/// not yet committed: here its COMMIT runs a deferred trigger that takes seconds) must wait
/// for that decision: its start-up recovery then sees it and commits the prepared branch
/// instead of rolling it back under a decision that commits a moment later.
#[test]
fn a_node_claimed_again_while_a_decision_is_in_flight_waits_for_that_decision() {
    let _serial = serial();
    reset_thread();
    let Some((url, url2)) = urls() else { return };
    let admin = std::env::var("SQLASSIST_TEST_PG_ADMIN_URL").unwrap();
    let node = node();
    let table = unique("lastres_reclaim");
    for u in [&url, &url2] {
        common::pg::exec(u, &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"));
    }
    common::pg::exec(
        &url,
        &format!(
            "CREATE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS \
               'BEGIN PERFORM pg_sleep(3); RETURN NULL; END'; \
             CREATE CONSTRAINT TRIGGER {table}_slow AFTER INSERT ON {table} \
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_slow()"
        ),
    );
    // This process's lease is long: no renewal runs while the test expires it by hand,
    // as a pause would.
    let log = DatabaseDecisionLog::open(engine(&url), &node, Duration::from_secs(3600)).unwrap();
    let committer = {
        let (node, table) = (node.clone(), table.clone());
        std::thread::spawn(move || {
            let registry = registry(&node, log);
            let manager = registry.transaction_manager();
            manager.scope(|| {
                manager.begin().unwrap();
                for name in ["a", "b"] {
                    registry
                        .session(name)
                        .unwrap()
                        .execute(&format!("INSERT INTO {table} (id) VALUES (1)"))
                        .unwrap();
                }
                let outcome = manager.commit().map_err(|e| e.to_string());
                if outcome.is_err() {
                    let _ = manager.abort();
                }
                outcome
            })
        })
    };
    // `b` is prepared and `a`'s COMMIT, carrying the decision, sleeps in its trigger.
    let deadline = Instant::now() + Duration::from_secs(20);
    let sleeping = format!(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = '{}'",
        url.rsplit('/').next().unwrap()
    );
    while common::pg::scalar(&admin, &sleeping) == 0 {
        assert!(
            Instant::now() < deadline,
            "the decision's COMMIT never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(common::pg::prepared(&url2, node.as_str()), 1);
    common::pg::exec(
        &url,
        &format!(
            "UPDATE sqlassist_node SET lease_until = statement_timestamp() - interval '1 second' \
             WHERE node = '{node}'"
        ),
    );
    // Another process claims the id and recovers at once.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "db_log_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, node.to_string())
        .env(RECOVER, "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("recovered "), "{said}");
    let outcome = committer.join().unwrap();
    let counts = (
        common::pg::count(&url, &table),
        common::pg::count(&url2, &table),
    );
    assert_eq!(
        counts,
        (1, 1),
        "one outcome, the decided one (commit: {outcome:?}; the claimer said {said})"
    );
    for u in [&url, &url2] {
        assert_eq!(common::pg::prepared(u, node.as_str()), 0);
        common::pg::exec(u, &format!("DROP TABLE {table}"));
    }
    common::pg::exec(&url, &format!("DROP FUNCTION {table}_slow()"));
}

/// The participant that carries the decision commits it durably even when its session
/// runs with `synchronous_commit = off`: the setting in force at its COMMIT (read by a
/// deferred trigger, which runs inside the COMMIT) is `on`, and the session's own setting
/// is back afterwards.
#[test]
fn the_carried_decision_commits_durably_in_a_session_without_synchronous_commit() {
    reset_thread();
    let Some((url, url2)) = urls() else { return };
    let node = node();
    let table = unique("lastres_sync");
    for u in [&url, &url2] {
        common::pg::exec(u, &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"));
    }
    common::pg::exec(
        &url,
        &format!(
            "CREATE TABLE {table}_seen (name text); \
             CREATE FUNCTION {table}_seen() RETURNS trigger LANGUAGE plpgsql AS \
               'BEGIN INSERT INTO {table}_seen VALUES (current_setting(''synchronous_commit'')); RETURN NULL; END'; \
             CREATE CONSTRAINT TRIGGER {table}_seen AFTER INSERT ON {table} \
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_seen()"
        ),
    );
    let log = DatabaseDecisionLog::open(engine(&url), &node, TTL).unwrap();
    let registry = registry(&node, log);
    let manager = registry.transaction_manager();
    manager.scope(|| {
        manager.begin().unwrap();
        let a = registry.session("a").unwrap();
        a.execute("SET synchronous_commit = off").unwrap();
        a.execute(&format!("INSERT INTO {table} (id) VALUES (1)"))
            .unwrap();
        registry
            .session("b")
            .unwrap()
            .execute(&format!("INSERT INTO {table} (id) VALUES (1)"))
            .unwrap();
        manager.commit().unwrap();
    });
    let seen = common::pg::names(&url, &format!("{table}_seen"));
    assert_eq!(
        seen,
        ["on"],
        "synchronous_commit in force at the decision's COMMIT"
    );
    assert_eq!(common::pg::count(&url2, &table), 1);
    registry.recover().unwrap();
    common::pg::exec(
        &url,
        &format!("DROP TABLE {table}; DROP TABLE {table}_seen; DROP FUNCTION {table}_seen()"),
    );
    common::pg::exec(&url2, &format!("DROP TABLE {table}"));
}

/// A node killed while the COMMIT that carries its decision is in flight (sent, not yet
/// answered: a deferred trigger holds it in the server): whatever the server made of that
/// COMMIT decides, and recovery follows it on every database. With the server left alone,
/// the COMMIT completes after the client died (the decision holds: both committed); with
/// `client_connection_check_interval` the server notices the dead client and rolls it back
/// (no decision: both rolled back).
#[test]
fn a_node_killed_while_its_decision_commits_ends_with_the_servers_outcome_everywhere() {
    reset_thread();
    let _serial = serial();
    let Some((url, url2)) = urls() else { return };
    let admin = std::env::var("SQLASSIST_TEST_PG_ADMIN_URL").unwrap();
    for (check_client, expected) in [(false, 1), (true, 0)] {
        let node = node();
        let table = unique("lastres_inflight");
        for u in [&url, &url2] {
            common::pg::exec(u, &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"));
        }
        common::pg::exec(
            &url,
            &format!(
                "CREATE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS \
                   'BEGIN PERFORM pg_sleep(2); RETURN NULL; END'; \
                 CREATE CONSTRAINT TRIGGER {table}_slow AFTER INSERT ON {table} \
                   DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_slow()"
            ),
        );
        let child_url = if check_client {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}options=-cclient_connection_check_interval%3D100")
        } else {
            url.clone()
        };
        let (mut c, _out) = child_with(
            &node,
            Some(&table),
            &[("SQLASSIST_TEST_PG_URL", child_url.as_str())],
        );
        writeln!(c.stdin.as_mut().unwrap(), "go").unwrap();
        let sleeping = format!(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = '{}'",
            url.rsplit('/').next().unwrap()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while common::pg::scalar(&admin, &sleeping) == 0 {
            assert!(
                Instant::now() < deadline,
                "the decision's COMMIT never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        c.kill().unwrap();
        c.wait().unwrap();
        // The server finishes (or abandons) the COMMIT on its own.
        while common::pg::scalar(&admin, &sleeping) > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        // The node restarts once its lease expired, and recovers.
        let deadline = Instant::now() + TTL * 3;
        let log = loop {
            match DatabaseDecisionLog::open(engine(&url), &node, TTL) {
                Ok(log) => break log,
                Err(Error::NodeLeaseHeld { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("{e}"),
            }
        };
        registry(&node, log).recover().unwrap();
        assert_eq!(
            (
                common::pg::count(&url, &table),
                common::pg::count(&url2, &table)
            ),
            (expected, expected),
            "client_connection_check_interval {check_client}"
        );
        for u in [&url, &url2] {
            assert_eq!(common::pg::prepared(u, node.as_str()), 0);
            common::pg::exec(u, &format!("DROP TABLE {table}"));
        }
        common::pg::exec(&url, &format!("DROP FUNCTION {table}_slow()"));
    }
}

#[test]
fn periodic_passes_take_over_a_node_killed_for_good_without_any_call_to_recover() {
    let _serial = serial();
    reset_thread();
    let Some((url, url2)) = urls() else { return };
    let dead = node();
    let table = unique("lastres_periodic");
    for u in [&url, &url2] {
        common::pg::exec(u, &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"));
    }
    let (mut c, mut out) = child(&dead, Some(&format!("{table}\nhang")));
    let mut line = String::new();
    while !line.contains("hanging") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child died");
    }
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();
    // One decided branch (its decision row carried by `b`'s commit), one undecided.
    assert_eq!(common::pg::prepared(&url, dead.as_str()), 2);
    assert_eq!(decision_rows(&url2, &dead), 1);

    // Another node, started from settings with short passes and lease: it never calls
    // `recover()`; its start-up pass runs while the dead node's lease still holds.
    let me = node();
    let settings = sqlassist::Settings::from_pairs([
        ("sqlassist.node_id", me.as_str()),
        ("sqlalchemy_a.url", url.as_str()),
        ("sqlalchemy_a.managed", "true"),
        ("sqlalchemy_b.url", url2.as_str()),
        ("sqlalchemy_b.managed", "true"),
        ("sqlassist.decision_log", "engine:b"),
        ("sqlassist.decision_log_ttl", "3"),
        ("sqlassist.recovery_interval", "1"),
    ]);
    let registry = Registry::from_settings(&settings).unwrap();
    assert!(registry.is_recovering());
    assert_eq!(
        common::pg::prepared(&url, dead.as_str()),
        2,
        "taken over at start-up, before the lease expired"
    );
    let deadline = Instant::now() + TTL * 6;
    while common::pg::prepared(&url, dead.as_str()) > 0 || decision_rows(&url2, &dead) > 0 {
        assert!(
            Instant::now() < deadline,
            "the periodic passes did not settle the dead node: {} prepared, {} decisions",
            common::pg::prepared(&url, dead.as_str()),
            decision_rows(&url2, &dead)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The decided transaction committed everywhere, the undecided one nowhere.
    let ids = |u: &str| common::pg::scalar(u, &format!("SELECT COALESCE(SUM(id), 0) FROM {table}"));
    assert_eq!((ids(&url), ids(&url2)), (1, 1));
    let settled = format!(
        "SELECT COUNT(*) FROM sqlassist_node WHERE node = '{dead}' AND taken_over_by = 'settled!'"
    );
    // The takeover is ended in the same pass that settled the last branch.
    let deadline = Instant::now() + TTL;
    while common::pg::scalar(&url2, &settled) != 1 {
        assert!(Instant::now() < deadline, "the takeover was never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(registry);
    for u in [&url, &url2] {
        common::pg::exec(u, &format!("DROP TABLE {table}"));
    }
}

/// PostgreSQL can finish a PREPARE seconds after its client died. A branch of a node whose
/// takeover already ended (settled) that appears afterwards has no decision (a decision
/// follows every answered vote, and this vote was never answered): a later pass of any
/// live node rolls it back, and leaves alone a branch of a newer incarnation of that node.
#[test]
fn a_branch_prepared_late_by_a_settled_node_is_rolled_back_by_a_later_pass() {
    let _serial = serial();
    reset_thread();
    let Some((url, url2)) = urls() else { return };
    let table = unique("lastres_late");
    common::pg::exec(
        &url2,
        &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"),
    );
    let dead = node();
    let incarnation = {
        let log = DatabaseDecisionLog::open(engine(&url), &dead, TTL).unwrap();
        log.incarnation()
    }; // released: its lease ended
    let me = node();
    let registry = registry(
        &me,
        DatabaseDecisionLog::open(engine(&url), &me, TTL).unwrap(),
    );
    registry.recover().unwrap();
    let settled = format!(
        "SELECT COUNT(*) FROM sqlassist_node WHERE node = '{dead}' AND taken_over_by = 'settled!'"
    );
    assert_eq!(
        common::pg::scalar(&url, &settled),
        1,
        "taken over and settled"
    );

    // The dead node's late PREPARE lands now.
    let late = sqlassist::BranchId::new(dead.clone(), incarnation, 7, "b").unwrap();
    let newer = sqlassist::BranchId::new(dead.clone(), incarnation + 1, 1, "b").unwrap();
    for (id, v) in [(&late, 1), (&newer, 2)] {
        common::pg::exec(
            &url2,
            &format!("BEGIN; INSERT INTO {table} (id) VALUES ({v}); PREPARE TRANSACTION '{id}'"),
        );
    }
    // The operator's list plans what the pass then does.
    let inspection = DatabaseDecisionLog::inspect(&engine(&url)).unwrap();
    let planned = registry.in_doubt_database(&inspection, true);
    let plan = |id: &sqlassist::BranchId| {
        planned
            .branches
            .iter()
            .find(|b| b.id == id.to_string())
            .map(|b| b.action)
    };
    assert_eq!(plan(&late), Some(sqlassist::PlannedAction::Rollback));
    assert_eq!(plan(&newer), Some(sqlassist::PlannedAction::LeaveAlone));
    let report = registry.recover().unwrap();
    let action = |id: &sqlassist::BranchId| {
        report
            .branches
            .iter()
            .find(|b| b.id == id.to_string())
            .map(|b| b.action)
    };
    assert!(
        matches!(action(&late), Some(RecoveryAction::RolledBack(_))),
        "{report:?}"
    );
    assert!(
        matches!(action(&newer), Some(RecoveryAction::OtherNode)),
        "a newer incarnation is its own process's: {report:?}"
    );
    assert_eq!(common::pg::prepared(&url2, &late.to_string()), 0);
    assert_eq!(common::pg::prepared(&url2, &newer.to_string()), 1);
    common::pg::exec(&url2, &format!("ROLLBACK PREPARED '{newer}'"));
    common::pg::exec(&url2, &format!("DROP TABLE {table}"));
}

/// A finished decision is deleted lazily, in batches (no DELETE round trip per commit),
/// and no longer counts as open at once; release deletes what waits.
#[test]
fn finished_decisions_are_deleted_in_batches_and_at_release() {
    let Some((url, _)) = urls() else { return };
    let node = node();
    // A lease long enough that no renewal (which deletes what waits) falls inside the test.
    let log = DatabaseDecisionLog::open(engine(&url), &node, Duration::from_secs(300)).unwrap();
    let branch = |i: u64| Branch {
        resource: "a".to_owned(),
        branch_id: Some(format!("g{i}")),
    };
    let txns: Vec<TransactionId> = (0..70).map(|_| TransactionId::next()).collect();
    for (i, txn) in txns.iter().enumerate() {
        log.record_commit(*txn, &[branch(i as u64)]).unwrap();
    }
    assert_eq!(decision_rows(&url, &node), 70);
    log.forget(txns[0]).unwrap();
    assert_eq!(decision_rows(&url, &node), 70, "no DELETE per forget");
    assert_eq!(log.open_decisions().unwrap().len(), 69);
    for txn in &txns[1..] {
        log.forget(*txn).unwrap();
    }
    // One batch of 64 went; 6 wait.
    assert_eq!(decision_rows(&url, &node), 6);
    assert!(log.open_decisions().unwrap().is_empty());
    log.release().unwrap();
    assert_eq!(decision_rows(&url, &node), 0);
}
