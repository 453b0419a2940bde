//! What sqlassist lets an application observe, against real PostgreSQL: the `tracing`
//! spans of a two-phase commit over two databases (engine names and prepared-transaction
//! ids in them, phases on the worker threads), and how long each pool checkout waited.

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::prelude::*;
use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, NodeId, Registry};
use transaction::testing::spans::SpanCapture;

use common::{reset_thread, unique, Table};

fn engine(url: &str, pool_size: u32) -> Engine {
    let options = EngineOptions::builder(DatabaseUrl::parse(url).unwrap())
        .pool_size(pool_size)
        .max_overflow(0)
        .build()
        .unwrap();
    Engine::new(options).unwrap()
}

#[test]
fn a_two_phase_commit_over_two_postgresql_databases_is_traced_per_engine_and_phase() {
    let Some(one) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    let Some(two) = common::pg_url("SQLASSIST_TEST_PG_URL_2") else {
        return;
    };
    reset_thread();
    let node = NodeId::new(&unique("obs").replace('_', "-")).unwrap();
    let mut registry = Registry::new();
    registry.set_node_id(node.clone());
    let names = [unique("observe_a"), unique("observe_b")];
    for (name, url) in names.iter().zip([&one, &two]) {
        registry
            .init_engine(name, engine(url, 2), InitOptions::new().managed(true))
            .unwrap();
    }
    let tables = [
        Table::pg(&one, "observe", "v INT NOT NULL"),
        Table::pg(&two, "observe", "v INT NOT NULL"),
    ];
    let capture = SpanCapture::new();
    tracing::subscriber::with_default(capture.clone(), || {
        transaction::begin().unwrap();
        for (name, table) in names.iter().zip(&tables) {
            let session = registry.session(name).unwrap();
            diesel::sql_query(format!("INSERT INTO {} VALUES (1)", &**table))
                .execute(&mut *session.conn::<PgConnection>().unwrap())
                .unwrap();
        }
        transaction::commit().unwrap();
    });
    let closed = capture.closed();
    let mut seen = Vec::new();
    for span in closed.iter().filter(|s| s.name == "resource_phase") {
        let engine = span.field("engine").unwrap().to_owned();
        let gid = span.field("gid").unwrap_or("");
        assert!(
            gid.starts_with(&format!("sqlassist_{node}_")),
            "a prepared transaction's id: {span:?}"
        );
        assert_eq!(span.parent, Some("commit"));
        assert_eq!(span.field("outcome"), Some("ok"), "{span:?}");
        assert!(span.field("duration_us").is_some(), "{span:?}");
        seen.push((engine, span.field("phase").unwrap().to_owned()));
    }
    seen.sort();
    let mut expected: Vec<(String, String)> = names
        .iter()
        .flat_map(|n| [(n.clone(), "finish".into()), (n.clone(), "vote".into())])
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    let commits: Vec<_> = closed.iter().filter(|s| s.name == "commit").collect();
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0].field("outcome"), Some("ok"));
    sqlassist::close_sessions().unwrap();
}

#[test]
fn each_checkout_reports_how_long_it_waited_for_a_connection() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    reset_thread();
    let engine = engine(&url, 1);
    let waits = Arc::new(Mutex::new(Vec::new()));
    let seen = waits.clone();
    engine.on_pool_wait(move |waited| seen.lock().unwrap().push(waited));
    let mut registry = Registry::new();
    let name = unique("observe_wait");
    registry
        .init_engine(&name, engine.clone(), InitOptions::new())
        .unwrap();
    let registry = Arc::new(registry);

    // The only connection is held for 300 ms while another thread asks for it.
    let session = registry.session(&name).unwrap();
    session.execute("SELECT 1").unwrap();
    let other = {
        let registry = registry.clone();
        let name = name.clone();
        std::thread::spawn(move || {
            let session = registry.session(&name).unwrap();
            session.execute("SELECT 1").unwrap();
            session.commit().unwrap();
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    session.commit().unwrap();
    other.join().unwrap();

    let waits = waits.lock().unwrap().clone();
    assert_eq!(waits.len(), 2, "{waits:?}");
    assert!(
        waits.iter().any(|w| *w >= Duration::from_millis(200)),
        "{waits:?}"
    );
    let state = engine.pool_state();
    assert_eq!(state.checkouts, 2);
    assert!(
        state.checkout_wait >= Duration::from_millis(200),
        "{state:?}"
    );
    assert!(state.checkout_wait <= waits.iter().sum::<Duration>() + Duration::from_millis(1));
    sqlassist::close_sessions().unwrap();
}

#[test]
fn an_engine_counts_the_sessions_open_on_it_across_threads() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    reset_thread();
    let engine = engine(&url, 2);
    let mut registry = Registry::new();
    let name = unique("observe_open");
    registry
        .init_engine(&name, engine.clone(), InitOptions::new())
        .unwrap();
    let registry = Arc::new(registry);
    assert_eq!(engine.open_sessions(), 0);
    let session = registry.session(&name).unwrap();
    session.execute("SELECT 1").unwrap();
    assert_eq!(engine.open_sessions(), 1);
    let (opened, close) = (
        Arc::new(std::sync::Barrier::new(2)),
        Arc::new(std::sync::Barrier::new(2)),
    );
    let other = {
        let (registry, name) = (registry.clone(), name.clone());
        let (opened, close) = (opened.clone(), close.clone());
        std::thread::spawn(move || {
            registry
                .session(&name)
                .unwrap()
                .execute("SELECT 1")
                .unwrap();
            opened.wait();
            close.wait();
            sqlassist::close_sessions().unwrap();
        })
    };
    opened.wait();
    assert_eq!(engine.open_sessions(), 2);
    close.wait();
    other.join().unwrap();
    assert_eq!(engine.open_sessions(), 1);
    drop(session);
    sqlassist::close_sessions().unwrap();
    assert_eq!(engine.open_sessions(), 0);
}
