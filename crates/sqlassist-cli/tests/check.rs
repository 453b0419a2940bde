//! `sqlassist check` run as a process against the real servers: a setup with prepared
//! transactions off, a reader that can write, an unreachable engine and a wrong password
//! reports each by name without showing a password; a sound setup exits 0.

#![allow(clippy::unwrap_used)] // a test fails loudly on any unexpected error

mod common;

use std::collections::BTreeMap;

use common::{ini, parts, sqlassist, TempDir};

/// Each `(subject, check)` with its `(outcome, detail)`.
type Items = BTreeMap<(String, String), (String, String)>;

/// Runs `check --json` on `lines`; returns the exit code, the outcome of each
/// `(subject, check)` with its detail, and the raw stdout and stderr.
fn check(dir: &TempDir, lines: &[String]) -> (i32, Items, String) {
    let settings = ini(dir, "app.ini", lines);
    let (code, stdout, stderr) =
        parts(&sqlassist(&["check", settings.to_str().unwrap(), "--json"]));
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"));
    let items = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                (
                    i["subject"].as_str().unwrap().to_owned(),
                    i["check"].as_str().unwrap().to_owned(),
                ),
                (
                    i["outcome"].as_str().unwrap().to_owned(),
                    i["detail"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    (code, items, format!("{stdout}\n{stderr}"))
}

#[track_caller]
fn outcome<'a>(items: &'a Items, subject: &str, check: &str) -> (&'a str, &'a str) {
    let (o, d) = items
        .get(&(subject.to_owned(), check.to_owned()))
        .unwrap_or_else(|| panic!("no `{check}` item for `{subject}`: {items:?}"));
    (o, d)
}

#[test]
fn a_misconfigured_setup_is_reported_by_name_without_passwords() {
    let (Some(pg), Some(no2pc), Some(pg_reader), Some(mysql), Some(mysql_reader)) = (
        common::server_url("SQLASSIST_TEST_PG_URL"),
        common::server_url("SQLASSIST_TEST_PG_NO2PC_URL"),
        common::server_url("SQLASSIST_TEST_PG_READER_URL"),
        common::server_url("SQLASSIST_TEST_MYSQL_URL"),
        common::server_url("SQLASSIST_TEST_MYSQL_READER_URL"),
    ) else {
        return;
    };
    let dir = TempDir::new("check");
    std::fs::create_dir_all(dir.file("log")).unwrap();
    let wrong_password = mysql.replace("writer_pw", "cli_wrong_secret");
    assert_ne!(wrong_password, mysql, "the MariaDB URL carries a password");
    let (code, items, raw) = check(
        &dir,
        &[
            "sqlassist.node_id = cli-check".into(),
            "sqlassist.decision_log = log".into(),
            format!("sqlalchemy_writer.url = {pg}"),
            "sqlalchemy_writer.managed = true".into(),
            format!("sqlalchemy_no2pc.url = {no2pc}"),
            "sqlalchemy_no2pc.managed = true".into(),
            format!("sqlalchemy_reader.url = {pg_reader}"),
            "sqlalchemy_reader.read_only = true".into(),
            format!("sqlalchemy_leaky.url = {pg}"),
            "sqlalchemy_leaky.read_only = true".into(),
            format!("sqlalchemy_mreader.url = {mysql_reader}"),
            "sqlalchemy_mreader.read_only = true".into(),
            "sqlalchemy_down.url = postgresql://sqlassist_writer:cli_down_secret@127.0.0.1:1/sqlassist_test".into(),
            format!("sqlalchemy_badpw.url = {wrong_password}"),
            "sqlalchemy_lite.url = sqlite:///%(here)s/app.db".into(),
            "sqlalchemy_lite.managed = true".into(),
        ],
    );
    assert_eq!(code, 2, "a failed check asks for an operator: {raw}");
    for secret in [
        "writer_pw",
        "reader_pw",
        "cli_wrong_secret",
        "cli_down_secret",
    ] {
        assert!(
            !raw.contains(secret),
            "the output shows a password ({secret}): {raw}"
        );
    }
    let (o, d) = outcome(&items, "no2pc", "prepared transactions");
    assert_eq!(o, "fail", "{d}");
    assert!(d.contains("max_prepared_transactions = 0"), "{d}");
    assert_eq!(outcome(&items, "writer", "prepared transactions").0, "pass");
    let (o, d) = outcome(&items, "leaky", "read-only");
    assert_eq!(o, "fail", "{d}");
    assert!(d.contains("the connection can write"), "{d}");
    let (o, d) = outcome(&items, "reader", "read-only");
    assert_eq!(o, "pass", "{d}");
    let (o, d) = outcome(&items, "mreader", "read-only");
    assert_eq!(o, "pass", "{d}");
    let (o, d) = outcome(&items, "down", "reachable");
    assert_eq!(o, "fail", "{d}");
    assert!(d.contains("127.0.0.1:1"), "{d}");
    let (o, d) = outcome(&items, "badpw", "reachable");
    assert_eq!(o, "fail", "{d}");
    assert!(d.contains("Access denied"), "{d}");
    let (o, d) = outcome(&items, "lite", "durability");
    assert_eq!(o, "pass", "{d}");
    let (o, d) = outcome(&items, "writer", "server");
    assert_eq!(o, "pass", "{d}");
    assert!(d.starts_with("postgresql 1"), "{d}");
    assert_eq!(outcome(&items, "decision log", "decision log").0, "pass");
    assert_eq!(outcome(&items, "node id", "node id").0, "pass");
}

#[test]
fn a_sound_setup_passes_and_a_missing_node_id_fails() {
    let Some(pg) = common::server_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    let dir = TempDir::new("check-sound");
    std::fs::create_dir_all(dir.file("log")).unwrap();
    let sound = [
        "sqlassist.node_id = cli-check".to_owned(),
        "sqlassist.decision_log = log".into(),
        format!("sqlalchemy_writer.url = {pg}"),
        "sqlalchemy_writer.managed = true".into(),
    ];
    let (code, items, raw) = check(&dir, &sound);
    assert_eq!(code, 0, "{raw}");
    assert!(items.values().all(|(o, _)| o == "pass"), "{raw}");

    // A decision log without a stable node id: a restart cannot recognise its branches.
    let weak = [
        "sqlassist.decision_log = log".to_owned(),
        format!("sqlalchemy_writer.url = {pg}"),
        "sqlalchemy_writer.managed = true".into(),
    ];
    let (code, items, raw) = check(&dir, &weak);
    assert_eq!(code, 2, "{raw}");
    let (o, d) = outcome(&items, "node id", "node id");
    assert_eq!(o, "fail", "{d}");
    assert!(d.contains("sqlassist.node_id"), "{d}");
}

#[test]
fn errors_exit_with_3_and_name_what_is_wrong() {
    let dir = TempDir::new("errors");
    let settings = ini(
        &dir,
        "app.ini",
        &["sqlalchemy_main.url = sqlite:///%(here)s/app.db".into()],
    );
    let settings = settings.to_str().unwrap();
    let missing = dir.file("missing.ini");
    let nowhere = dir.file("no-log");
    for (args, expected) in [
        (
            vec!["schema", "print", settings, "--engine", "nope"],
            "nope",
        ),
        (
            vec![
                "schema", "print", settings, "--engine", "main", "--tables", "absent",
            ],
            "absent",
        ),
        (vec!["check", missing.to_str().unwrap()], "missing.ini"),
        (vec!["log", "verify", nowhere.to_str().unwrap()], "no-log"),
    ] {
        let (code, stdout, stderr) = parts(&sqlassist(&args));
        assert_eq!(code, 3, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
