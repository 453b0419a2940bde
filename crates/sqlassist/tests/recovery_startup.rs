//! Recovery at start-up never waits long for an engine that does not answer, the
//! periodic passes cover engines registered after they started, and a second process
//! with the same node id (and another decision log directory) refuses to start. Against the real
//! PostgreSQL server and real loopback sockets: one that accepts connections and never
//! answers (a hung server), one that refuses them (a server that is down).
//! Its own test binary: the registry from settings installs the process's default
//! decision log.

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::Connection;
use sqlassist::{
    BranchId, DatabaseUrl, Engine, EngineOptions, Error, InitOptions, NodeId, Registry, Settings,
};
use transaction::FileDecisionLog;

use common::{unique, Table, TempDir};

/// A loopback port that accepts connections and never says a word. The connections are
/// held until the process ends.
fn hung_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Prepares, by hand, a PostgreSQL branch inserting `value` with gid `gid`.
fn pg_prepare(url: &str, table: &str, value: &str, gid: &str) {
    let mut c = diesel::PgConnection::establish(url).unwrap();
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO {table} VALUES ('{value}'); PREPARE TRANSACTION '{gid}'"
    ))
    .unwrap();
}

/// Waits up to a minute for `done`.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn start_up_recovery_does_not_wait_for_an_engine_that_does_not_answer() {
    let Some(pg) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    let table = Table::pg(&pg, "groupcommit_startup", "name TEXT");
    let dir = TempDir::new("groupcommit-startup");
    let node = unique("gs").replace('_', "-");
    // A branch an earlier run of this node left prepared, without a decision.
    let gid = BranchId::new(NodeId::new(&node).unwrap(), 1, u64::MAX - 1, "pg").unwrap();
    pg_prepare(&pg, &table, "undecided", &gid.to_string());

    let hung = format!("postgres://nobody:secret@127.0.0.1:{}/none", hung_server());
    let down = format!("postgres://nobody:secret@127.0.0.1:{}/none", closed_port());
    let settings = Settings::builder()
        .here(dir.path())
        .pairs([
            ("sqlalchemy_pg.url", pg.as_str()),
            ("sqlalchemy_pg.managed", "true"),
            ("sqlalchemy_hung.url", hung.as_str()),
            ("sqlalchemy_hung.managed", "true"),
            ("sqlalchemy_hung.pool_timeout", "3600"),
            ("sqlalchemy_down.url", down.as_str()),
            ("sqlalchemy_down.managed", "true"),
            ("sqlalchemy_down.pool_timeout", "3600"),
            ("sqlassist.node_id", node.as_str()),
            ("sqlassist.decision_log", "txlog"),
        ])
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let started = Registry::from_settings(&settings).map(|r| {
            let recovering = r.is_recovering();
            // Keep the registry (and its log) alive: the test process ends soon.
            std::mem::forget(r);
            recovering
        });
        let _ = tx.send(started.map_err(|e| e.to_string()));
    });
    // The hung engine would hold the start for its hour of pool timeout, or forever.
    let started = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("start-up waited for an engine that does not answer");
    assert_eq!(started, Ok(true));
    // The engine that answered was recovered at start-up.
    assert_eq!(common::pg::prepared(&pg, &node), 0);
    assert_eq!(common::pg::count(&pg, &table), 0);
}

#[test]
fn periodic_passes_cover_an_engine_registered_after_they_started() {
    let Some(pg) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    let table = Table::pg(&pg, "groupcommit_later", "name TEXT");
    let dir = TempDir::new("groupcommit-later");
    let node = NodeId::new(&unique("gl").replace('_', "-")).unwrap();
    let mut registry = Registry::new();
    registry.set_node_id(node.clone());
    registry.use_decision_log(Arc::new(FileDecisionLog::open(dir.path()).unwrap()));
    registry.start_recovery(Duration::from_secs(1)).unwrap();

    let gid = BranchId::new(node.clone(), registry.incarnation(), u64::MAX - 1, "later").unwrap();
    pg_prepare(&pg, &table, "undecided", &gid.to_string());
    let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse(&pg).unwrap())).unwrap();
    registry
        .init_engine("later", engine, InitOptions::new().managed(true))
        .unwrap();
    eventually("no periodic pass rolled back the branch", || {
        common::pg::prepared(&pg, node.as_str()) == 0
    });
    assert_eq!(common::pg::count(&pg, &table), 0);
}

const HOLD_NODE: &str = "SQLASSIST_TEST_HOLD_NODE";
const HOLD_DIR: &str = "SQLASSIST_TEST_HOLD_DIR";
const HOLDING: &str = "holding the node id";

/// Settings of node `node` with managed engines on the test PostgreSQL and MariaDB
/// databases (`which`: "pg", "my" or both) and a decision log in `dir`.
fn node_settings(node: &str, dir: &std::path::Path, which: &[&str]) -> Settings {
    let pg = std::env::var("SQLASSIST_TEST_PG_URL").unwrap();
    let my = std::env::var("SQLASSIST_TEST_MYSQL_URL").unwrap();
    let mut pairs = vec![
        ("sqlassist.node_id".to_owned(), node.to_owned()),
        ("sqlassist.decision_log".to_owned(), "txlog".to_owned()),
        ("sqlassist.recovery_interval".to_owned(), "0".to_owned()),
    ];
    for (name, url) in [("pg", pg), ("my", my)] {
        if which.contains(&name) {
            pairs.push((format!("sqlalchemy_{name}.url"), url));
            pairs.push((format!("sqlalchemy_{name}.managed"), "true".to_owned()));
        }
    }
    Settings::builder().here(dir).pairs(pairs).build().unwrap()
}

#[test]
fn child_holding_a_node_id() {
    let (Ok(node), Ok(dir)) = (std::env::var(HOLD_NODE), std::env::var(HOLD_DIR)) else {
        return;
    };
    let registry = Registry::from_settings(&node_settings(
        &node,
        std::path::Path::new(&dir),
        &["pg", "my"],
    ))
    .unwrap();
    // libtest prints "test <name> ... " without a newline first.
    println!("\n{HOLDING}");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(registry);
}

#[test]
fn a_second_process_with_the_same_node_id_and_another_log_refuses_to_start() {
    if common::pg_url("SQLASSIST_TEST_PG_URL").is_none()
        || common::mysql_url("SQLASSIST_TEST_MYSQL_URL").is_none()
    {
        return;
    }
    let node = unique("gp").replace('_', "-");
    let (first_dir, second_dir) = (
        TempDir::new("groupcommit-presence-1"),
        TempDir::new("groupcommit-presence-2"),
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holding_a_node_id",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLD_NODE, &node)
        .env(HOLD_DIR, first_dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("the child started with the node id")
            .unwrap();
        if line.trim() == HOLDING {
            break;
        }
    }

    // Same node id, its own log directory: refused on each kind of server, before the log
    // is opened.
    for (engine, holder) in [("pg", "server backend pid"), ("my", "server connection id")] {
        let err = Registry::from_settings(&node_settings(&node, second_dir.path(), &[engine]))
            .expect_err("a second process with the node id started");
        match &err {
            Error::NodeInUse {
                node: n,
                engine: e,
                holder: h,
            } => {
                assert_eq!((n.as_str(), e.as_str()), (node.as_str(), engine));
                assert!(h.starts_with(holder), "{h}");
            }
            other => panic!("unexpected: {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains(&node) && message.contains(engine),
            "{message}"
        );
    }
    assert!(!second_dir.path().join("txlog").exists());
    // Another node id is not refused.
    let mut other = Registry::new();
    other.set_node_id(NodeId::new(&format!("{node}-x")).unwrap());
    other.set_presence_lock(true);
    let pg = std::env::var("SQLASSIST_TEST_PG_URL").unwrap();
    let my = std::env::var("SQLASSIST_TEST_MYSQL_URL").unwrap();
    for (name, url) in [("pg", &pg), ("my", &my)] {
        let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse(url).unwrap())).unwrap();
        other
            .init_engine(name, engine, InitOptions::new().managed(true))
            .unwrap();
    }
    other.hold_presence_locks(Duration::from_secs(30)).unwrap();

    // Once the first process is gone (killed, and restarted at once), the node id is
    // free; two engines of one registry on the same database share its lock.
    child.kill().unwrap();
    child.wait().unwrap();
    let mut second = Registry::new();
    second.set_node_id(NodeId::new(&node).unwrap());
    second.set_presence_lock(true);
    for (name, url) in [
        ("pg", &pg),
        ("pg-again", &pg),
        ("my", &my),
        ("my-again", &my),
    ] {
        let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse(url).unwrap())).unwrap();
        second
            .init_engine(name, engine, InitOptions::new().managed(true))
            .unwrap();
    }
    second.hold_presence_locks(Duration::from_secs(30)).unwrap();
}
