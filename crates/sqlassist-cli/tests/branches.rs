//! `sqlassist in-doubt list`, `recover [--dry-run]`, `commit`/`rollback [--force]` and
//! `log verify|dump`, run as processes against real PostgreSQL and MariaDB prepared
//! branches and a real file decision log.

#![allow(clippy::unwrap_used)] // a test fails loudly on any unexpected error

mod common;

use std::path::Path;

use diesel::connection::SimpleConnection;
use diesel::{Connection, QueryableByName, RunQueryDsl};
use sqlassist::{BranchId, NodeId};
use transaction::{Branch, DecisionLog, FileDecisionLog, TransactionId};

use common::{ini, parts, sqlassist, TempDir};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn pg_count(url: &str, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(&mut diesel::PgConnection::establish(url).unwrap())
        .unwrap()
        .n
}

/// Prepares a PostgreSQL branch `gid` that inserts `v` into `table`.
fn pg_prepare(url: &str, table: &str, gid: &str, v: i64) {
    let mut c = diesel::PgConnection::establish(url).unwrap();
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO {table} (v) VALUES ({v}); PREPARE TRANSACTION '{gid}'"
    ))
    .unwrap();
}

/// Prepares a MariaDB XA branch for `id` (gtrid = the gid without `_<engine>`).
fn mysql_prepare(url: &str, table: &str, id: &BranchId, v: i64) {
    let gid = id.to_string();
    let gtrid = gid.strip_suffix(&format!("_{}", id.engine())).unwrap();
    let xid = format!("'{gtrid}','{}'", id.engine());
    let mut c = diesel::MysqlConnection::establish(url).unwrap();
    c.batch_execute(&format!(
        "XA START {xid}; INSERT INTO {table} (v) VALUES ({v}); XA END {xid}; XA PREPARE {xid}"
    ))
    .unwrap();
}

fn run_json(args: &[&str]) -> (i32, serde_json::Value, String) {
    let (code, stdout, stderr) = parts(&sqlassist(args));
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}\n{stderr}"));
    (code, value, stderr)
}

fn branch<'a>(list: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    list["branches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
}

#[derive(QueryableByName)]
struct Gid {
    #[diesel(sql_type = diesel::sql_types::Text)]
    gid: String,
}

#[derive(QueryableByName)]
struct Xid {
    #[diesel(sql_type = diesel::sql_types::Text)]
    data: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    gtrid_length: i64,
}

/// Rolls back every branch of this test's node still prepared, and drops its tables, even
/// when the test fails half-way: the servers are shared.
struct Cleanup {
    pg: String,
    mysql: String,
    nodes: Vec<String>,
    table: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefixes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("sqlassist_{n}_"))
            .collect();
        let ours = |id: &str| prefixes.iter().any(|p| id.starts_with(p.as_str()));
        if let Ok(mut c) = diesel::PgConnection::establish(&self.pg) {
            let gids = diesel::sql_query("SELECT gid FROM pg_prepared_xacts")
                .load::<Gid>(&mut c)
                .unwrap_or_default();
            for g in gids.iter().filter(|g| ours(&g.gid)) {
                let _ = c.batch_execute(&format!("ROLLBACK PREPARED '{}'", g.gid));
            }
            let _ = c.batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table));
        }
        if let Ok(mut c) = diesel::MysqlConnection::establish(&self.mysql) {
            let xids = diesel::sql_query("XA RECOVER")
                .load::<Xid>(&mut c)
                .unwrap_or_default();
            for x in xids.iter().filter(|x| ours(&x.data)) {
                let split = usize::try_from(x.gtrid_length)
                    .unwrap_or(0)
                    .min(x.data.len());
                let (gtrid, bqual) = x.data.split_at(split);
                let _ = c.batch_execute(&format!("XA ROLLBACK '{gtrid}','{bqual}'"));
            }
            let _ = c.batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table));
        }
    }
}

#[test]
fn operators_list_recover_and_settle_in_doubt_branches() {
    let (Some(pg), Some(mysql)) = (
        common::server_url("SQLASSIST_TEST_PG_URL"),
        common::server_url("SQLASSIST_TEST_MYSQL_URL"),
    ) else {
        return;
    };
    let dir = TempDir::new("branches");
    let node_name = format!("cli-ind-{}", std::process::id());
    let node = NodeId::new(&node_name).unwrap();
    let other_name = format!("cli-oth-{}", std::process::id());
    let table = format!("cli_ind_{}", std::process::id());
    let _cleanup = Cleanup {
        pg: pg.clone(),
        mysql: mysql.clone(),
        nodes: vec![node_name.clone(), other_name.clone()],
        table: table.clone(),
    };
    common::pg_exec(&pg, &format!("CREATE TABLE {table} (v BIGINT)"));
    common::mysql_exec(&mysql, &format!("CREATE TABLE {table} (v BIGINT)"));
    let settings = ini(
        &dir,
        "app.ini",
        &[
            format!("sqlassist.node_id = {node_name}"),
            "sqlassist.decision_log = log".into(),
            format!("sqlalchemy_pg.url = {pg}"),
            "sqlalchemy_pg.managed = true".into(),
            format!("sqlalchemy_mysql.url = {mysql}"),
            "sqlalchemy_mysql.managed = true".into(),
        ],
    );
    let settings = settings.to_str().unwrap();
    let log_dir = dir.file("log");

    // A decided (commit logged) and B undecided on PostgreSQL, C decided, D undecided on
    // MariaDB; the decisions recorded by a coordinator that then died.
    let id = |seq, engine| BranchId::new(node.clone(), 1, seq, engine).unwrap();
    let (a, b, c, d) = (id(1, "pg"), id(2, "pg"), id(3, "pg"), id(4, "mysql"));
    pg_prepare(&pg, &table, &a.to_string(), 1);
    pg_prepare(&pg, &table, &b.to_string(), 2);
    pg_prepare(&pg, &table, &c.to_string(), 3);
    mysql_prepare(&mysql, &table, &d, 4);
    {
        let log = FileDecisionLog::open(&log_dir).unwrap();
        for decided in [&a, &c] {
            log.record_commit(
                TransactionId::next(),
                &[Branch {
                    resource: "pg".into(),
                    branch_id: Some(decided.to_string()),
                }],
            )
            .unwrap();
        }
    }

    // E: another node's branch, listed only with --all and never finished unless forced.
    let e = BranchId::new(NodeId::new(&other_name).unwrap(), 1, 5, "pg").unwrap();
    pg_prepare(&pg, &table, &e.to_string(), 5);

    // The list: each branch with its decision and the action recovery would take.
    let (code, list, stderr) = run_json(&["in-doubt", "list", settings, "--json"]);
    assert_eq!(code, 1, "in-doubt branches present: {list} {stderr}");
    let pg_a = branch(&list, &a.to_string()).expect("A listed");
    assert_eq!(pg_a["decision"], "commit logged");
    assert_eq!(pg_a["action"], "commit");
    assert_eq!(pg_a["node"], node_name.as_str());
    assert_eq!(pg_a["incarnation"], 1);
    assert!(
        pg_a["age_seconds"].is_u64(),
        "PostgreSQL has an age: {pg_a}"
    );
    let pg_b = branch(&list, &b.to_string()).expect("B listed");
    assert_eq!(
        (&pg_b["decision"], &pg_b["action"]),
        (&"none".into(), &"rollback".into())
    );
    let my_d = list["branches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["engine"] == "mysql")
        .expect("the MariaDB branch is listed");
    assert!(
        my_d["age_seconds"].is_null(),
        "MariaDB keeps no time: {my_d}"
    );
    assert_eq!(my_d["sequence"], 4);
    assert_eq!(list["branches"].as_array().unwrap().len(), 4, "{list}");

    let (_, all, _) = run_json(&["in-doubt", "list", settings, "--all", "--json"]);
    let other = branch(&all, &e.to_string()).expect("--all lists another node's branch");
    assert_eq!(
        (&other["decision"], &other["action"]),
        (&"other node".into(), &"leave alone".into())
    );
    let (code, _, stderr) = parts(&sqlassist(&["rollback", settings, &e.to_string()]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not a branch of node"), "{stderr}");
    let (code, forced, stderr) =
        run_json(&["rollback", settings, &e.to_string(), "--force", "--json"]);
    assert_eq!((code, &forced["outcome"]), (0, &"done".into()), "{stderr}");

    // The log: open decisions, no corruption.
    let (code, log, _) = run_json(&["log", "verify", log_dir.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{log}");
    assert_eq!(log["open_decisions"], 2);
    assert!(log["corruption"].as_array().unwrap().is_empty());
    let (_, dump, _) = run_json(&["log", "dump", settings, "--json"]);
    let dumped = dump["decisions"].to_string();
    assert!(
        dumped.contains(&a.to_string()) && dumped.contains(&c.to_string()),
        "{dump}"
    );

    // A rollback where a commit is logged is refused; --force does it, and it is recorded.
    let c_id = c.to_string();
    let (code, _, stderr) = parts(&sqlassist(&["rollback", settings, &c_id]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("a commit is logged"), "{stderr}");
    let prepared = format!("SELECT count(*) AS n FROM pg_prepared_xacts WHERE gid = '{c_id}'");
    assert_eq!(
        pg_count(&pg, &prepared),
        1,
        "the refused rollback left C prepared"
    );
    // Any action while a live process holds the log is refused.
    {
        let _held = FileDecisionLog::open(&log_dir).unwrap();
        let (code, _, stderr) = parts(&sqlassist(&["commit", settings, &c_id]));
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("is held"), "{stderr}");
    }
    let (code, forced, stderr) = run_json(&["rollback", settings, &c_id, "--force", "--json"]);
    assert_eq!(code, 0, "{forced} {stderr}");
    assert_eq!(forced["outcome"], "done");
    assert_eq!(pg_count(&pg, &prepared), 0, "C rolled back");
    let manual = std::fs::read_to_string(log_dir.join(sqlassist::MANUAL_LOG_FILE)).unwrap();
    assert!(
        manual.contains(&format!(
            "action=\"rollback\" engine=\"pg\" branch=\"{c_id}\" decision=\"commit logged\" forced=true outcome=\"done\""
        )),
        "{manual}"
    );

    // A pass needs the log's lock: refused while the application holds it.
    {
        let _held = FileDecisionLog::open(&log_dir).unwrap();
        let (code, _, stderr) = parts(&sqlassist(&["recover", settings]));
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("its own passes recover"), "{stderr}");
    }

    // A dry run says what a pass would do and does nothing.
    let (code, dry, _) = run_json(&["recover", settings, "--dry-run", "--json"]);
    assert_eq!(code, 1, "{dry}");
    assert_eq!(branch(&dry, &a.to_string()).unwrap()["action"], "commit");
    assert_eq!(
        pg_count(&pg, &format!("SELECT count(*) AS n FROM {table}")),
        0
    );

    // One pass: A committed, B and D rolled back, the decisions forgotten.
    let (code, pass, stderr) = run_json(&["recover", settings, "--json"]);
    assert_eq!(code, 0, "{pass} {stderr}");
    // Progress on stderr: each engine's listing, then the branches handled.
    assert!(stderr.contains(" prepared branch(es) listed"), "{stderr}");
    let handled = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_suffix(" listed branch(es) handled"))
        .and_then(|l| l.split_once(" of "))
        .unwrap_or_else(|| panic!("no progress line: {stderr}"));
    assert_eq!(handled.0, handled.1, "{stderr}");
    assert_ne!(handled.0, "0", "{stderr}");
    let actions = pass["branches"].to_string();
    assert!(
        actions.contains("committed") && actions.contains("rolled back"),
        "{pass}"
    );
    assert_eq!(
        pg_count(
            &pg,
            &format!("SELECT count(*) AS n FROM {table} WHERE v = 1")
        ),
        1,
        "A committed"
    );
    assert_eq!(
        pg_count(&pg, &format!("SELECT count(*) AS n FROM {table}")),
        1
    );
    let (code, list, _) = run_json(&["in-doubt", "list", settings, "--json"]);
    assert_eq!(code, 0, "{list}");
    let (code, log, _) = run_json(&["log", "verify", log_dir.to_str().unwrap(), "--json"]);
    assert_eq!((code, &log["open_decisions"]), (0, &0.into()), "{log}");
}

#[test]
fn log_verify_tells_a_torn_tail_from_corruption() {
    let dir = TempDir::new("logverify");
    let log_dir = dir.file("log");
    {
        let log = FileDecisionLog::open(&log_dir).unwrap();
        for _ in 0..3 {
            log.record_commit(TransactionId::next(), &[]).unwrap();
        }
    }
    let inspection = FileDecisionLog::inspect(&log_dir).unwrap();
    assert!(inspection.batches.len() >= 3);
    let path = |p: &Path| p.to_str().unwrap().to_owned();

    // Cut the last batch short: a torn tail, not corruption.
    let last = inspection.batches.last().unwrap().clone();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last.at.path)
        .unwrap()
        .set_len(last.at.offset + last.len - 2)
        .unwrap();
    let (code, v, _) = run_json(&["log", "verify", &path(&log_dir), "--json"]);
    assert!(v["torn_tail"].is_string(), "{v}");
    assert!(v["corruption"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(code, 1, "two decisions stay open: {v}");

    // Flip a byte inside the first batch: corruption, an operator is needed.
    let first = &inspection.batches[0];
    let mut bytes = std::fs::read(&first.at.path).unwrap();
    let at = usize::try_from(first.at.offset + first.len / 2).unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(&first.at.path, bytes).unwrap();
    let (code, stdout, _) = parts(&sqlassist(&["log", "verify", &path(&log_dir)]));
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("CORRUPTION at"), "{stdout}");
}
