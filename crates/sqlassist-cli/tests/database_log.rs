//! `sqlassist in-doubt list`, `recover [--dry-run]`, `commit`/`rollback [--force]` and
//! `check` with the database decision log (`sqlassist.decision_log = engine:<name>`), run
//! as processes against real PostgreSQL: decisions and node leases read from the log's
//! tables, a live lease refusing a pass and a manual action, manual actions recorded in
//! `sqlassist_manual_action`.

#![allow(clippy::unwrap_used)] // a test fails loudly on any unexpected error

mod common;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, QueryableByName, RunQueryDsl};
use sqlassist::{BranchId, DatabaseDecisionLog, DatabaseUrl, Engine, EngineOptions, NodeId};
use transaction::{Branch, DecisionLog, TransactionId};

use common::{ini, parts, sqlassist, TempDir};

const TTL: Duration = Duration::from_secs(3);

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

fn pg_prepare(url: &str, table: &str, gid: &str, v: i64) {
    let mut c = diesel::PgConnection::establish(url).unwrap();
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO {table} (v) VALUES ({v}); PREPARE TRANSACTION '{gid}'"
    ))
    .unwrap();
}

fn engine(url: &str) -> Engine {
    Engine::new(EngineOptions::new(DatabaseUrl::parse(url).unwrap())).unwrap()
}

/// Claims `node` in the log at `url`, records one commit decision naming `decided`.
fn claim(url: &str, node: &NodeId, decided: &[&BranchId]) -> Arc<DatabaseDecisionLog> {
    let log = DatabaseDecisionLog::open(engine(url), node, TTL).unwrap();
    if !decided.is_empty() {
        let branches: Vec<Branch> = decided
            .iter()
            .map(|b| Branch {
                resource: b.engine().to_owned(),
                branch_id: Some(b.to_string()),
            })
            .collect();
        log.record_commit(TransactionId::next(), &branches).unwrap();
    }
    log
}

fn run_json(args: &[&str]) -> (i32, serde_json::Value, String) {
    let (code, stdout, stderr) = parts(&sqlassist(args));
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}\n{stderr}"));
    (code, value, stderr)
}

fn branch<'a>(list: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    list["branches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("{id} listed: {list}"))
}

#[derive(QueryableByName)]
struct Gid {
    #[diesel(sql_type = diesel::sql_types::Text)]
    gid: String,
}

/// Rolls back this test's prepared branches and drops its table and its log schema, even
/// when the test fails half-way: the servers are shared.
struct Cleanup {
    pg: String,
    /// The log database, without the schema option.
    log: String,
    schema: String,
    nodes: Vec<String>,
    table: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(mut c) = diesel::PgConnection::establish(&self.pg) {
            let gids = diesel::sql_query("SELECT gid FROM pg_prepared_xacts")
                .load::<Gid>(&mut c)
                .unwrap_or_default();
            for g in &gids {
                if self
                    .nodes
                    .iter()
                    .any(|n| g.gid.starts_with(&format!("sqlassist_{n}_")))
                {
                    let _ = c.batch_execute(&format!("ROLLBACK PREPARED '{}'", g.gid));
                }
            }
            let _ = c.batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table));
        }
        if let Ok(mut c) = diesel::PgConnection::establish(&self.log) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// A schema of its own in the log database for one test, and the URL whose connections
/// use it: a pass takes over every expired node of its log, so a test must not share a
/// log with other tests.
fn log_schema(url: &str, tag: &str) -> (String, String) {
    let schema = format!("cli_dblog_{tag}_{}", std::process::id());
    common::pg_exec(
        url,
        &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
    );
    let sep = if url.contains('?') { '&' } else { '?' };
    (
        schema.clone(),
        format!("{url}{sep}options=-csearch_path%3D{schema}"),
    )
}

fn node_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}-{}-{}", std::process::id(), nanos % 100_000)
}

#[test]
fn operators_list_recover_and_settle_branches_with_the_database_log() {
    let (Some(pg), Some(log_db)) = (
        common::server_url("SQLASSIST_TEST_PG_URL"),
        common::server_url("SQLASSIST_TEST_PG_URL_2"),
    ) else {
        return;
    };
    let dir = TempDir::new("dblog");
    let (schema, log_url) = log_schema(&log_db, "ops");
    // N: this settings file's node; M: a node whose lease expired (a pass takes it over);
    // L: a node with a live lease; T: a node another live node took over.
    let (n, m, l, t) = (
        node_name("cdn"),
        node_name("cdm"),
        node_name("cdl"),
        node_name("cdt"),
    );
    let table = format!("cli_dblog_{}", std::process::id());
    let _cleanup = Cleanup {
        pg: pg.clone(),
        log: log_db.clone(),
        schema,
        nodes: vec![n.clone(), m.clone(), l.clone(), t.clone()],
        table: table.clone(),
    };
    common::pg_exec(&pg, &format!("CREATE TABLE {table} (v BIGINT)"));
    let settings = ini(
        &dir,
        "app.ini",
        &[
            format!("sqlassist.node_id = {n}"),
            "sqlassist.decision_log = engine:log".into(),
            "sqlassist.decision_log_ttl = 3".into(),
            format!("sqlalchemy_pg.url = {pg}"),
            "sqlalchemy_pg.managed = true".into(),
            format!("sqlalchemy_log.url = {}", log_url.replace('%', "%%")),
        ],
    );
    let settings = settings.to_str().unwrap();
    let id = |node: &str, seq| BranchId::new(NodeId::new(node).unwrap(), 1, seq, "pg").unwrap();

    // N: A decided, B undecided; M (expired): E decided, F undecided; L (live): G;
    // T (taken over by a live node): H.
    let (a, b) = (id(&n, 1), id(&n, 2));
    let (e, f) = (id(&m, 3), id(&m, 4));
    let (g, h) = (id(&l, 5), id(&t, 6));
    for (i, branch) in [&a, &b, &e, &f, &g, &h].into_iter().enumerate() {
        pg_prepare(
            &pg,
            &table,
            &branch.to_string(),
            i64::try_from(i).unwrap() + 1,
        );
    }
    drop(claim(&log_url, &NodeId::new(&n).unwrap(), &[&a]));
    drop(claim(&log_url, &NodeId::new(&m).unwrap(), &[&e]));
    let live = claim(&log_url, &NodeId::new(&l).unwrap(), &[]);
    drop(claim(&log_url, &NodeId::new(&t).unwrap(), &[&h]));
    common::pg_exec(
        &log_url,
        &format!(
            "UPDATE sqlassist_node SET taken_over_by = 'someone-else', \
             lease_until = now() + interval '1 hour' WHERE node = '{t}'"
        ),
    );

    // The list: this node's branches, decisions from the log's table, the node's lease.
    let (code, list, stderr) = run_json(&["in-doubt", "list", settings, "--json"]);
    assert_eq!(code, 1, "in-doubt branches present: {list} {stderr}");
    assert_eq!(list["decision_log"]["engine"], "log", "{list}");
    assert_eq!(list["node_lease"], "expired", "{list}");
    let la = branch(&list, &a.to_string());
    assert_eq!(
        (&la["decision"], &la["action"], &la["lease"]),
        (&"commit logged".into(), &"commit".into(), &"expired".into()),
        "{la}"
    );
    let lb = branch(&list, &b.to_string());
    assert_eq!(
        (&lb["decision"], &lb["action"]),
        (&"none".into(), &"rollback".into())
    );
    assert_eq!(list["branches"].as_array().unwrap().len(), 2, "{list}");

    // --all: a pass of N takes over the expired M and settles its branches; L and T are
    // left to their live holders.
    let (code, all, _) = run_json(&["in-doubt", "list", settings, "--all", "--json"]);
    assert_eq!(code, 1, "{all}");
    let le = branch(&all, &e.to_string());
    assert_eq!(
        (&le["decision"], &le["action"], &le["lease"]),
        (&"commit logged".into(), &"commit".into(), &"expired".into()),
        "{le}"
    );
    let lf = branch(&all, &f.to_string());
    assert_eq!(
        (&lf["action"], &lf["lease"]),
        (&"rollback".into(), &"expired".into())
    );
    let lg = branch(&all, &g.to_string());
    assert_eq!(
        (&lg["action"], &lg["lease"]),
        (&"leave alone".into(), &"live".into())
    );
    let lh = branch(&all, &h.to_string());
    assert_eq!(
        (&lh["decision"], &lh["action"], &lh["lease"]),
        (
            &"commit logged".into(),
            &"leave alone".into(),
            &"taken over by someone-else".into()
        ),
        "{lh}"
    );

    // The text table names the lease too.
    let (code, text, _) = parts(&sqlassist(&["in-doubt", "list", settings]));
    assert_eq!(code, 1);
    assert!(text.contains("expired"), "{text}");

    // While the application holds N's lease: no pass, no manual action unless forced.
    {
        let _app = claim(&log_url, &NodeId::new(&n).unwrap(), &[]);
        let (code, _, stderr) = parts(&sqlassist(&["recover", settings]));
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("live lease"), "{stderr}");
        let (code, _, stderr) = parts(&sqlassist(&["commit", settings, &a.to_string()]));
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("live lease"), "{stderr}");
        let (code, list, _) = run_json(&["in-doubt", "list", settings, "--json"]);
        assert_eq!((code, &list["node_lease"]), (1, &"live".into()), "{list}");
    }
    // Another node's live lease refuses an action on its branch.
    let (code, _, stderr) = parts(&sqlassist(&["rollback", settings, &g.to_string()]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("live lease"), "{stderr}");

    // A rollback where a commit is logged is refused; --force does it, recorded in the log.
    let a_id = a.to_string();
    let (code, _, stderr) = parts(&sqlassist(&["rollback", settings, &a_id]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("a commit is logged"), "{stderr}");
    let prepared = |gid: &str| {
        pg_count(
            &pg,
            &format!("SELECT count(*) AS n FROM pg_prepared_xacts WHERE gid = '{gid}'"),
        )
    };
    assert_eq!(prepared(&a_id), 1, "the refused rollback left A prepared");
    let (code, forced, stderr) = run_json(&["rollback", settings, &a_id, "--force", "--json"]);
    assert_eq!(code, 0, "{forced} {stderr}");
    assert_eq!(
        (&forced["outcome"], &forced["recorded"]),
        (&"done".into(), &true.into())
    );
    assert_eq!(prepared(&a_id), 0, "A rolled back");
    let rows = pg_count(
        &log_url,
        &format!(
            "SELECT count(*) AS n FROM sqlassist_manual_action WHERE node = '{n}' \
             AND engine = 'pg' AND branch = '{a_id}' AND action = 'rollback' \
             AND decision = 'commit logged' AND forced AND outcome = 'done' \
             AND at > now() - interval '1 minute'"
        ),
    );
    assert_eq!(rows, 1, "the manual action is a row of the log database");

    // A dry run lists and does nothing.
    let (code, dry, _) = run_json(&["recover", settings, "--dry-run", "--json"]);
    assert_eq!(code, 1, "{dry}");
    assert_eq!(branch(&dry, &b.to_string())["action"], "rollback");
    assert_eq!(prepared(&b.to_string()), 1);

    // One pass: B rolled back, M taken over (E committed, F rolled back), L and T left
    // alone, and N's lease released afterwards.
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
    for gone in [&b, &e, &f] {
        assert_eq!(prepared(&gone.to_string()), 0, "{gone} finished: {pass}");
    }
    for kept in [&g, &h] {
        assert_eq!(prepared(&kept.to_string()), 1, "{kept} left alone: {pass}");
    }
    assert_eq!(
        pg_count(
            &pg,
            &format!("SELECT count(*) AS n FROM {table} WHERE v = 3")
        ),
        1,
        "E committed"
    );
    assert_eq!(
        pg_count(
            &log_url,
            &format!(
                "SELECT count(*) AS n FROM sqlassist_node WHERE node = '{n}' \
                 AND lease_until <= now()"
            )
        ),
        1,
        "the pass released N's lease"
    );
    let (code, list, _) = run_json(&["in-doubt", "list", settings, "--json"]);
    assert_eq!(code, 0, "{list}");

    // --force overrides a live lease (with a warning), and the row says it was forced.
    let g_id = g.to_string();
    let (code, forced, stderr) = run_json(&["rollback", settings, &g_id, "--force", "--json"]);
    assert_eq!(code, 0, "{forced} {stderr}");
    assert!(stderr.contains("holds a live lease"), "{stderr}");
    assert_eq!(prepared(&g_id), 0, "G rolled back");
    let rows = pg_count(
        &log_url,
        &format!(
            "SELECT count(*) AS n FROM sqlassist_manual_action WHERE node = '{n}' \
             AND branch = '{g_id}' AND decision = 'other node' AND forced AND outcome = 'done'"
        ),
    );
    assert_eq!(rows, 1, "the forced action is recorded");
    drop(live);
}

#[test]
fn check_reports_the_database_log_engine_its_tables_durability_and_lease() {
    let (Some(pg), Some(log_db)) = (
        common::server_url("SQLASSIST_TEST_PG_URL"),
        common::server_url("SQLASSIST_TEST_PG_URL_2"),
    ) else {
        return;
    };
    let dir = TempDir::new("dblog-check");
    let n = node_name("cdc");
    let (schema, log_url) = log_schema(&log_db, "check");
    let _cleanup = Cleanup {
        pg: pg.clone(),
        log: log_db.clone(),
        schema,
        nodes: vec![n.clone()],
        table: format!("cli_dblog_check_{}", std::process::id()),
    };
    let lines = |log: &str| {
        vec![
            format!("sqlassist.node_id = {n}"),
            "sqlassist.decision_log = engine:log".into(),
            format!("sqlalchemy_pg.url = {pg}"),
            "sqlalchemy_pg.managed = true".into(),
            format!("sqlalchemy_log.url = {}", log.replace('%', "%%")),
        ]
    };
    let item = |report: &serde_json::Value, check: &str| -> (String, String) {
        let i = report["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["subject"] == "decision log" && i["check"] == check)
            .unwrap_or_else(|| panic!("a `{check}` item of the decision log: {report}"));
        (
            i["outcome"].as_str().unwrap().to_owned(),
            i["detail"].as_str().unwrap().to_owned(),
        )
    };
    let settings = ini(&dir, "app.ini", &lines(&log_url));
    let (code, report, stderr) = run_json(&["check", settings.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{report} {stderr}");
    let (outcome, detail) = item(&report, "decision log");
    assert_eq!(outcome, "pass", "{detail}");
    assert!(detail.contains("engine `log`"), "{detail}");
    assert_eq!(item(&report, "tables").0, "pass", "{report}");
    let (outcome, detail) = item(&report, "durability");
    assert_eq!(outcome, "pass", "{detail}");
    assert!(detail.contains("fsync = on"), "{detail}");
    let (outcome, detail) = item(&report, "lease");
    assert_eq!(outcome, "pass", "{detail}");

    // A live lease is reported with its holder.
    {
        let _app = claim(&log_url, &NodeId::new(&n).unwrap(), &[]);
        let (_, report, _) = run_json(&["check", settings.to_str().unwrap(), "--json"]);
        let (_, detail) = item(&report, "lease");
        assert!(detail.contains("live"), "{detail}");
    }

    // A wrong password (on the private cluster that checks passwords) and an unreachable
    // server: the log engine named, the password never shown.
    let Some(no2pc) = common::server_url("SQLASSIST_TEST_PG_NO2PC_URL") else {
        return;
    };
    let wrong = no2pc.replacen("writer_pw", "not-the-pw-xyzzy", 1);
    assert_ne!(wrong, no2pc, "the test URL carries the writer's password");
    let unreachable = "postgres://sqlassist_writer:not-the-pw-xyzzy@127.0.0.1:1/sqlassist_test";
    for (file, url, words) in [
        ("wrong.ini", wrong.as_str(), "password"),
        ("down.ini", unreachable, "cannot be reached"),
    ] {
        let settings = ini(&dir, file, &lines(url));
        let (code, stdout, stderr) =
            parts(&sqlassist(&["check", settings.to_str().unwrap(), "--json"]));
        assert_eq!(code, 2, "{stdout} {stderr}");
        assert!(
            !stdout.contains("not-the-pw-xyzzy") && !stderr.contains("not-the-pw-xyzzy"),
            "{stdout} {stderr}"
        );
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let (outcome, detail) = item(&report, "decision log");
        assert_eq!(outcome, "fail", "{detail}");
        assert!(
            detail.contains("engine `log`") && detail.contains(words),
            "{detail}"
        );
    }

    // A log engine that is not registered, or not PostgreSQL.
    let mut other = lines(&log_url);
    other[1] = "sqlassist.decision_log = engine:nope".into();
    let settings = ini(&dir, "nope.ini", &other);
    let (code, report, _) = run_json(&["check", settings.to_str().unwrap(), "--json"]);
    assert_eq!(code, 2, "{report}");
    let (outcome, detail) = item(&report, "decision log");
    assert_eq!(outcome, "fail", "{detail}");
    assert!(detail.contains("nope"), "{detail}");
}
#[test]
fn a_database_log_is_never_taken_for_a_directory() {
    let settings = sqlassist::Settings::from_pairs([
        ("sqlalchemy_main.url", "sqlite://"),
        ("sqlassist.decision_log", "engine:main"),
    ]);
    assert_eq!(sqlassist::Registry::decision_log_dir(&settings), None);
    assert_eq!(
        sqlassist::Registry::decision_log_location(&settings),
        Some(sqlassist::DecisionLogLocation::Engine("main".into()))
    );
}
