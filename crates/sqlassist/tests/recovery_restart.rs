//! A PostgreSQL server restarted between PREPARE and COMMIT PREPARED: the periodic
//! recovery pass of the same process commits the branch once the server is back. Runs
//! against a private cluster (`SQLASSIST_TEST_PG_RESTART_URL`, data directory
//! `SQLASSIST_TEST_PG_RESTART_DATA`, set up by `scripts/test`), never the shared server.
//! Its own test binary: the registry installs the process's default decision log.

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use sqlassist::{Registry, Settings};
use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
use transaction::WriteState;

use common::{reset_thread, unique, Table, TempDir};

/// Runs `pg_ctl <args>` on the private cluster as the `postgres` OS user.
fn pg_ctl(data: &str, args: &[&str]) {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/pg_ctl"))
        .find(|p| p.exists())
        .unwrap();
    let status = Command::new("runuser")
        .current_dir("/")
        .args(["-u", "postgres", "--"])
        .arg(bin)
        .args(["-D", data])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctl {args:?}: {status}");
}

#[test]
fn a_branch_whose_server_restarted_before_commit_prepared_is_committed_by_the_periodic_pass() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_RESTART_URL") else {
        return;
    };
    let data = std::env::var("SQLASSIST_TEST_PG_RESTART_DATA").unwrap();
    let table = Table::pg(&url, "rc_restart", "name TEXT");
    let dir = TempDir::new("recovery-restart-server");
    let node = unique("rs").replace('_', "-");
    let settings = Settings::builder()
        .here(dir.path())
        .pairs([
            ("sqlalchemy_restart.url", url.as_str()),
            ("sqlalchemy_restart.managed", "true"),
            ("sqlalchemy_restart.pool_timeout", "1"),
            ("sqlassist.node_id", node.as_str()),
            ("sqlassist.decision_log", "txlog"),
            ("sqlassist.recovery_interval", "1"),
        ])
        .build()
        .unwrap();
    let registry = Registry::from_settings(&settings).unwrap();
    assert!(registry.is_recovering());
    assert!(dir.path().join("txlog").is_dir());

    // A one-phase resource, which votes last and alone once the PostgreSQL branch is
    // prepared, stops the server in its commit: the decision is then made durable, and
    // COMMIT PREPARED cannot reach the server. (Phase two of two-phase resources may run
    // at the same time, so a two-phase stopper could not come between them.)
    let journal = Journal::new();
    let stopper = ScriptedDataManager::new("a-stopper", Kind::OnePhase, &journal)
        .with_write_state(WriteState::Dirty);
    let stop_data = data.clone();
    stopper.on_call(move |call, _| {
        if call == Call::TpcVote {
            pg_ctl(&stop_data, &["stop", "-w", "-m", "fast"]);
        }
    });
    registry
        .session("restart")
        .unwrap()
        .execute(&format!("INSERT INTO {} VALUES ('restarted')", &*table))
        .unwrap();
    transaction::get().unwrap().join(stopper).unwrap();
    let err = transaction::commit().unwrap_err();
    assert!(err.is_heuristic(), "{err}");
    reset_thread();

    // The server comes back; nobody restarts the process or calls recover().
    let socket_dir = std::path::Path::new(&data)
        .parent()
        .unwrap()
        .display()
        .to_string();
    pg_ctl(
        &data,
        &[
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            &format!("{socket_dir}/server.log"),
            "-o",
            &format!("-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={socket_dir} -c max_prepared_transactions=20", url.rsplit(':').next().unwrap().split('/').next().unwrap()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::pg::count(&url, &table) == 0 {
        assert!(
            Instant::now() < deadline,
            "the periodic pass did not commit the branch"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(common::pg::names(&url, &table), ["restarted"]);
    assert_eq!(common::pg::prepared(&url, &node), 0);
}
