//! Crash drills against real servers and real processes: a child process (this test binary
//! re-executed with `SQLASSIST_DRILL_CHILD` set) commits numbered rows into PostgreSQL x2,
//! PostgreSQL + MariaDB, or PostgreSQL + MariaDB + SQLite with a file decision log, and
//! dies: at a crash point (`abort`), or by `SIGKILL` at a random moment under 4 threads of
//! load. Then recovery runs with the same log directory and node id, and every
//! transaction must have one outcome on every database (rows checked), the one the crash
//! point implies, with no branch of ours left prepared.
//!
//! `SQLASSIST_DRILL_ROUNDS=1000 cargo test -p sqlassist --all-features --test crash_drills
//! -- --ignored --nocapture random_kills_many_rounds` runs the long randomized drill and
//! prints a summary table (docs/operations.md).

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use sqlassist::RecoveryAction;
use sqlassist::{DatabaseDecisionLog, NodeId, Owner, Registry, Settings};
use transaction::{FileDecisionLog, FileLogOptions};

use common::{unique, TempDir};

/// Set in the child: the drill to run (see [`Drill::to_env`]).
const CHILD: &str = "SQLASSIST_DRILL_CHILD";
/// Set in a child that only runs one recovery pass (and may die in it).
const RECOVER_ONLY: &str = "SQLASSIST_DRILL_RECOVER_ONLY";
/// Log segments small enough that a few transactions move the log to a new segment
/// (compaction).
const SEGMENT_SIZE: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(clippy::enum_variant_names)] // every mix includes PostgreSQL
enum Mix {
    PgPg,
    PgMaria,
    PgMariaSqlite,
}

impl Mix {
    const ALL: [Mix; 3] = [Mix::PgPg, Mix::PgMaria, Mix::PgMariaSqlite];

    fn name(self) -> &'static str {
        match self {
            Mix::PgPg => "pg+pg",
            Mix::PgMaria => "pg+mariadb",
            Mix::PgMariaSqlite => "pg+mariadb+sqlite",
        }
    }

    fn parse(s: &str) -> Mix {
        *Mix::ALL.iter().find(|m| m.name() == s).expect("a mix name")
    }
}

/// One engine of a drill: its name in the registry and where its rows are.
#[derive(Debug, Clone)]
enum Db {
    Pg(String),
    Maria(String),
    Sqlite(PathBuf),
}

/// Everything parent and child agree on.
#[derive(Debug, Clone)]
struct Drill {
    mix: Mix,
    node: String,
    log_dir: PathBuf,
    sqlite: PathBuf,
    table: String,
    threads: u64,
    txns: u64,
    /// Decisions in the first PostgreSQL engine's database (`engine:e0`) instead of a
    /// directory.
    db_log: bool,
}

/// The lease of the drills' database decision log: a killed child's node id is free
/// again this long after its death.
const DB_LOG_TTL: Duration = Duration::from_secs(3);

impl Drill {
    fn new(mix: Mix, dir: &Path, threads: u64, txns: u64) -> Option<Drill> {
        // Every URL must be there (or the test fails under SQLASSIST_REQUIRE_SERVERS).
        common::pg_url("SQLASSIST_TEST_PG_URL")?;
        common::pg_url("SQLASSIST_TEST_PG_URL_2")?;
        common::mysql_url("SQLASSIST_TEST_MYSQL_URL")?;
        let n = unique("d");
        // A node id of its own (a-z, 0-9, -; at most 24): no other test's branches are ours.
        let node = format!("cd-{}", &n[2..].replace('_', "-"))
            .chars()
            .take(24)
            .collect::<String>()
            .trim_end_matches('-')
            .to_owned();
        let drill = Drill {
            mix,
            node,
            log_dir: dir.join("log"),
            sqlite: dir.join("lite.db"),
            table: unique("crash"),
            threads,
            txns,
            db_log: false,
        };
        for db in drill.dbs() {
            let sql = format!("CREATE TABLE {} (id BIGINT PRIMARY KEY)", drill.table);
            match db {
                Db::Pg(url) => common::pg::exec(&url, &sql),
                Db::Maria(url) => common::my::exec(&url, &format!("{sql} ENGINE=InnoDB")),
                Db::Sqlite(path) => common::lite::exec(&path, &sql),
            }
        }
        Some(drill)
    }

    fn to_env(&self, cmd: &mut Command) {
        let text = format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.mix.name(),
            self.node,
            self.log_dir.display(),
            self.sqlite.display(),
            self.table,
            self.threads,
            self.txns,
            self.db_log
        );
        cmd.env(CHILD, text);
    }

    fn from_env() -> Option<Drill> {
        let text = std::env::var(CHILD).ok()?;
        let f: Vec<&str> = text.lines().collect();
        Some(Drill {
            mix: Mix::parse(f[0]),
            node: f[1].to_owned(),
            log_dir: f[2].into(),
            sqlite: f[3].into(),
            table: f[4].to_owned(),
            threads: f[5].parse().unwrap(),
            txns: f[6].parse().unwrap(),
            db_log: f[7].parse().unwrap(),
        })
    }

    fn url(var: &str) -> String {
        std::env::var(var).unwrap()
    }

    /// Engine name -> where its rows are, in vote order.
    fn dbs(&self) -> Vec<Db> {
        let mut dbs = vec![Db::Pg(Self::url("SQLASSIST_TEST_PG_URL"))];
        match self.mix {
            Mix::PgPg => dbs.push(Db::Pg(Self::url("SQLASSIST_TEST_PG_URL_2"))),
            Mix::PgMaria => dbs.push(Db::Maria(Self::url("SQLASSIST_TEST_MYSQL_URL"))),
            Mix::PgMariaSqlite => {
                dbs.push(Db::Maria(Self::url("SQLASSIST_TEST_MYSQL_URL")));
                dbs.push(Db::Sqlite(self.sqlite.clone()));
            }
        }
        dbs
    }

    /// The settings an application would have: one managed engine per database and the
    /// node id.
    fn settings(&self) -> Settings {
        Settings::from_pairs(self.settings_pairs())
    }

    fn settings_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = vec![("sqlassist.node_id".to_owned(), self.node.clone())];
        for (i, db) in self.dbs().into_iter().enumerate() {
            let url = match db {
                Db::Pg(url) | Db::Maria(url) => url,
                Db::Sqlite(path) => format!("sqlite:///{}", path.display()),
            };
            let prefix = format!("sqlalchemy_e{i}.");
            pairs.push((format!("{prefix}url"), url));
            pairs.push((format!("{prefix}managed"), "true".to_owned()));
            pairs.push((format!("{prefix}pool_size"), (self.threads + 1).to_string()));
        }
        pairs
    }

    fn registry(&self) -> Registry {
        Registry::from_settings(&self.settings()).unwrap()
    }

    fn node_id(&self) -> NodeId {
        NodeId::new(&self.node).unwrap()
    }

    /// The ids each database holds.
    fn rows(&self) -> Vec<BTreeSet<i64>> {
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            id: i64,
        }
        let sql = format!("SELECT id FROM {}", self.table);
        self.dbs()
            .into_iter()
            .map(|db| {
                let ids: Vec<Id> = match db {
                    Db::Pg(url) => diesel::sql_query(&sql).load(&mut common::pg::raw(&url)),
                    Db::Maria(url) => diesel::sql_query(&sql).load(&mut common::my::raw(&url)),
                    Db::Sqlite(path) => diesel::sql_query(&sql).load(&mut common::lite::raw(&path)),
                }
                .unwrap();
                ids.into_iter().map(|i| i.id).collect()
            })
            .collect()
    }

    fn drop_tables(&self) {
        for db in self.dbs() {
            let sql = format!("DROP TABLE IF EXISTS {}", self.table);
            let _ = match db {
                Db::Pg(url) => PgConnection::establish(&url).map(|mut c| c.batch_execute(&sql)),
                Db::Maria(url) => {
                    MysqlConnection::establish(&url).map(|mut c| c.batch_execute(&sql))
                }
                Db::Sqlite(_) => Ok(Ok(())),
            };
        }
    }
}

/// The child: `threads` threads each commit `txns` transactions, each inserting its id
/// into every database; prints `drill-ok <id>` once a commit returned.
#[test]
fn drill_child() {
    let Some(drill) = Drill::from_env() else {
        return; // a normal test run: only the drills below run this as a child
    };
    // As an application starts: the registry from settings opens the decision log
    // (`sqlassist.decision_log`) and recovers before it returns. The settings have no
    // segment size, so the compaction drill opens a log of small segments itself.
    let registry = if std::env::var("SQLASSIST_CRASH_POINT").as_deref() == Ok("log_compaction")
        && !drill.db_log
    {
        let log = FileLogOptions::new()
            .segment_size(SEGMENT_SIZE)
            .preallocate(false)
            .open(&drill.log_dir)
            .unwrap();
        let mut registry = drill.registry();
        registry.use_decision_log(Arc::new(log));
        registry
    } else {
        let mut settings = drill.settings_pairs();
        let log = if drill.db_log {
            settings.push((
                "sqlassist.decision_log_ttl".to_owned(),
                DB_LOG_TTL.as_secs().to_string(),
            ));
            "engine:e0".to_owned()
        } else {
            drill.log_dir.display().to_string()
        };
        settings.push(("sqlassist.decision_log".to_owned(), log));
        Registry::from_settings(&Settings::from_pairs(settings)).unwrap()
    };
    if std::env::var_os(RECOVER_ONLY).is_some() {
        registry.recover().unwrap();
        return;
    }
    // Started (settings read, log open, start-up recovery done): the load begins.
    println!("drill-ready");
    let names: Vec<String> = registry.names().map(str::to_owned).collect();
    let out = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|s| {
        for t in 0..drill.threads {
            let (registry, names, out, drill) = (&registry, &names, &out, &drill);
            s.spawn(move || {
                registry.transaction_manager().scope(|| {
                    for i in 1..=drill.txns {
                        let id = t * 1_000_000 + i;
                        let work = || -> Result<(), Box<dyn std::error::Error>> {
                            transaction::begin()?;
                            for name in names {
                                registry.session(name)?.execute(&format!(
                                    "INSERT INTO {} (id) VALUES ({id})",
                                    drill.table
                                ))?;
                            }
                            transaction::commit()?;
                            Ok(())
                        };
                        let line = match work() {
                            Ok(()) => format!("drill-ok {id}"),
                            Err(e) => {
                                let _ = transaction::abort();
                                format!("drill-err {id} {e}")
                            }
                        };
                        let mut out = out.lock().unwrap();
                        writeln!(out, "{line}").unwrap();
                        out.flush().unwrap();
                    }
                });
            });
        }
    });
}

/// What the child reported: ids whose commit returned Ok, and failures.
#[derive(Debug, Default)]
struct Reported {
    ok: BTreeSet<i64>,
    errors: Vec<String>,
}

fn parse_output(text: &str) -> Reported {
    let mut r = Reported::default();
    for line in text.lines() {
        // The test harness prints `test drill_child ... ` without a newline first.
        if let Some((_, id)) = line.split_once("drill-ok ") {
            r.ok.insert(id.trim().parse().unwrap());
        } else if line.contains("drill-err ") {
            r.errors.push(line.to_owned());
        }
    }
    r
}

fn child_command(drill: &Drill) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "drill_child", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    drill.to_env(&mut cmd);
    cmd
}

/// What one recovery did.
#[derive(Debug, Default, Clone, Copy)]
struct Recovered {
    committed: usize,
    rolled_back: usize,
}

/// Recovery as a restarted process runs it: a registry from the same settings, the same
/// log directory and node id, [`Registry::recover`] passes until two in a row find
/// nothing of ours prepared.
fn recover(drill: &Drill) -> Recovered {
    let mut registry = drill.registry();
    if drill.db_log {
        // The dead child's lease expires first: until then its node id is refused.
        let engine = registry.engine("e0").unwrap().clone();
        let deadline = Instant::now() + DB_LOG_TTL * 4;
        let log = loop {
            match DatabaseDecisionLog::open(engine.clone(), &drill.node_id(), DB_LOG_TTL) {
                Ok(log) => break log,
                Err(sqlassist::Error::NodeLeaseHeld { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("{e}"),
            }
        };
        registry.use_database_decision_log(log);
    } else {
        let log = FileDecisionLog::open(&drill.log_dir).unwrap();
        assert!(
            log.may_presume_abort(),
            "a crash must not look like corruption"
        );
        registry.use_decision_log(Arc::new(log));
    }
    let mut done = Recovered::default();
    let mut clean_passes = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while clean_passes < 2 {
        assert!(Instant::now() < deadline, "recovery did not finish");
        let report = registry.recover().unwrap();
        let mut found = false;
        for b in &report.branches {
            if std::env::var_os("SQLASSIST_DRILL_DEBUG").is_some() {
                eprintln!("recovery: {} on {}: {}", b.id, b.engine, b.action);
            }
            match b.action {
                RecoveryAction::Committed(_) => done.committed += 1,
                RecoveryAction::RolledBack(_) => done.rolled_back += 1,
                RecoveryAction::OtherNode | RecoveryAction::Foreign => continue,
                _ => {}
            }
            found = true;
        }
        assert!(report.unreachable.is_empty(), "{:?}", report.unreachable);
        clean_passes = if found { 0 } else { clean_passes + 1 };
        std::thread::sleep(Duration::from_millis(100));
    }
    done
}

/// Every id is on every database or on none; returns the ids committed.
#[track_caller]
fn assert_one_outcome(drill: &Drill, what: &str) -> BTreeSet<i64> {
    let rows = drill.rows();
    let all: BTreeSet<i64> = rows.iter().flatten().copied().collect();
    for id in &all {
        let holders: Vec<bool> = rows.iter().map(|r| r.contains(id)).collect();
        assert!(
            holders.iter().all(|h| *h),
            "{what}: mixed outcome for id {id} in {}: held by {holders:?}",
            drill.mix.name()
        );
    }
    all
}

/// The decisions the SQLite engine's commits carried and recovery has not removed.
fn carried_rows(drill: &Drill) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = common::lite::raw(&drill.sqlite);
    let exists: N = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'sqlassist_decision'",
    )
    .get_result(&mut conn)
    .unwrap();
    if exists.n == 0 {
        return 0;
    }
    let n: N = diesel::sql_query("SELECT COUNT(*) AS n FROM sqlassist_decision")
        .get_result(&mut conn)
        .unwrap();
    n.n
}

/// The outcome a crash at `point` implies for the transaction it interrupts.
fn commits_after(point: &str) -> bool {
    match point {
        "before_prepare" | "after_prepare" | "before_decision" | "before_one_phase_commit" => false,
        "decision_unsynced"
        | "after_decision"
        | "after_commit"
        | "before_end"
        | "log_compaction"
        | "after_one_phase_commit" => true,
        other => panic!("no expected outcome for crash point {other}"),
    }
}

/// Whether a transaction of `mix` reaches `point`. Only a transaction with a one-phase
/// resource reaches the one-phase points; in such a transaction the SQLite commit carries
/// the decision, so the file log gets no record (no sync, no compaction).
fn reaches(mix: Mix, point: &str) -> bool {
    let sqlite = mix == Mix::PgMariaSqlite;
    match point {
        "before_one_phase_commit" | "after_one_phase_commit" => sqlite,
        "decision_unsynced" | "log_compaction" => !sqlite,
        _ => true,
    }
}

/// Whether a transaction of the PostgreSQL x2 drill with the database log reaches
/// `point`: the log's database (`e0`) takes part, carries the decision in its one-phase
/// commit and is not prepared, so only `e1` prepares (no `after_commit`), and the file
/// log's points do not exist.
fn reaches_with_db_log(point: &str) -> bool {
    !matches!(
        point,
        "decision_unsynced" | "log_compaction" | "after_commit"
    )
}

/// Rows of `drill`'s node in the database decision log.
fn db_log_rows(drill: &Drill) -> i64 {
    common::pg::scalar(
        &Drill::url("SQLASSIST_TEST_PG_URL"),
        &format!(
            "SELECT COUNT(*) FROM sqlassist_decision WHERE node = '{}'",
            drill.node
        ),
    )
}

/// One child dies at `point`; recovery; checks. Returns a description of what happened.
fn crash_at(mix: Mix, point: &str) -> Option<String> {
    crash_with(mix, point, false)
}

fn crash_with(mix: Mix, point: &str, db_log: bool) -> Option<String> {
    let dir = TempDir::new("crash");
    let mut drill = Drill::new(mix, dir.path(), 1, 6)?;
    drill.db_log = db_log;
    let mut cmd = child_command(&drill);
    cmd.env("SQLASSIST_CRASH_POINT", point)
        .env("SQLASSIST_CRASH_COUNT", "1");
    let out = cmd.output().unwrap();
    let reported = parse_output(&String::from_utf8_lossy(&out.stdout));
    assert!(reported.errors.is_empty(), "{:?}", reported.errors);
    use std::os::unix::process::ExitStatusExt;
    let reached = if db_log {
        reaches_with_db_log(point)
    } else {
        reaches(mix, point)
    };
    if !reached {
        assert!(out.status.success(), "{point} in {}: {out:?}", mix.name());
        assert_eq!(reported.ok.len(), 6);
        assert_eq!(assert_one_outcome(&drill, point), reported.ok);
        drill.drop_tables();
        return Some(format!("{point} {}: not reached", mix.name()));
    }
    assert_eq!(
        out.status.signal(),
        Some(6),
        "the child did not abort at {point} in {}: {out:?}",
        mix.name()
    );
    let crashed = reported.ok.len() as i64 + 1;
    let recovered = recover(&drill);
    let committed = assert_one_outcome(&drill, point);
    let mut expected: BTreeSet<i64> = (1..crashed).collect();
    if commits_after(point) {
        expected.insert(crashed);
    }
    assert_eq!(
        committed,
        expected,
        "{point} in {}: transaction {crashed} crashed",
        mix.name()
    );
    let registry = drill.registry();
    let left = registry
        .names()
        .flat_map(|n| {
            let engine = registry.engine(n).unwrap();
            engine.prepared_branches(&drill.node_id()).unwrap()
        })
        .filter(|b| matches!(b.owner(), Owner::Ours(_)))
        .count();
    assert_eq!(left, 0, "branches of ours still prepared");
    if mix == Mix::PgMariaSqlite {
        assert_eq!(
            carried_rows(&drill),
            0,
            "{point}: recovery left finished carried decisions"
        );
    }
    if db_log {
        assert_eq!(db_log_rows(&drill), 0, "{point}: finished decisions left");
    }
    drill.drop_tables();
    Some(format!(
        "{point} {}: txn {crashed} {}, recovery committed {} rolled back {}",
        mix.name(),
        if commits_after(point) {
            "committed"
        } else {
            "rolled back"
        },
        recovered.committed,
        recovered.rolled_back
    ))
}

#[test]
fn a_crash_at_every_point_ends_with_one_outcome_per_transaction_on_every_database() {
    for mix in Mix::ALL {
        for point in transaction::CRASH_POINTS.iter().copied() {
            let Some(what) = crash_at(mix, point) else {
                return;
            };
            eprintln!("{what}");
        }
    }
}

/// The PostgreSQL x2 drill with the decisions in the first database (`engine:e0`), which
/// takes part and carries each decision in its own one-phase commit.
#[test]
fn a_crash_at_every_point_with_the_database_log_ends_with_one_outcome() {
    for point in transaction::CRASH_POINTS.iter().copied() {
        let Some(what) = crash_with(Mix::PgPg, point, true) else {
            return;
        };
        eprintln!("db log: {what}");
    }
}

/// A recovering process dies after finishing one branch of a decided transaction; the
/// next recovery finishes the other: committed everywhere, nothing of ours prepared.
#[test]
fn a_crash_in_the_middle_of_a_recovery_pass_is_finished_by_the_next_one() {
    for mix in [Mix::PgPg, Mix::PgMaria] {
        let dir = TempDir::new("crash-rec");
        let Some(drill) = Drill::new(mix, dir.path(), 1, 6) else {
            return;
        };
        let out = child_command(&drill)
            .env("SQLASSIST_CRASH_POINT", "after_decision")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let out = child_command(&drill)
            .env(RECOVER_ONLY, "1")
            .env("SQLASSIST_CRASH_POINT", "recovery_mid_pass")
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(6), "{out:?}");
        // The dead recoverer committed one branch (the other engine's COMMIT, sent in
        // parallel, may still complete on the server); the next recovery commits what
        // is left and rolls back nothing.
        let rows = drill.rows();
        assert!(rows.iter().any(|r| r.contains(&1)), "{rows:?}");
        let recovered = recover(&drill);
        assert_eq!(recovered.rolled_back, 0);
        assert_eq!(
            assert_one_outcome(&drill, "recovery_mid_pass"),
            BTreeSet::from([1])
        );
        drill.drop_tables();
    }
}

/// The one-phase last resource (SQLite) commits in its vote, after every other resource
/// prepared: its commit carries the decision, so a crash right before it rolls back
/// everywhere and a crash right after it commits everywhere.
#[test]
fn a_crash_after_the_one_phase_resource_committed_commits_everywhere() {
    for point in ["before_decision", "after_one_phase_commit"] {
        let Some(what) = crash_at(Mix::PgMariaSqlite, point) else {
            return;
        };
        eprintln!("{what}");
    }
}

/// A small deterministic generator (splitmix64) seeded from the clock.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        eprintln!("random drill seed {seed}");
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Totals of the randomized drill for one mix.
#[derive(Debug, Default)]
struct Totals {
    rounds: u64,
    /// Rounds whose kill fell during the child's start-up (before its load began).
    during_start: u64,
    acknowledged: usize,
    recovered_commits: usize,
    recovered_rollbacks: usize,
}

/// `rounds` rounds per mix: a child under 4 threads of load is killed with `SIGKILL` (in
/// one round of five at a random moment from its spawn, else a random time up to 0.5 s
/// after its load began), then recovery, then the invariant: one outcome per id on every
/// database, every acknowledged commit present, nothing of ours prepared.
fn random_kills(rounds: u64) -> Option<BTreeMap<Mix, Totals>> {
    let mut rng = Rng::new();
    let mut totals = BTreeMap::new();
    for mix in Mix::ALL {
        let dir = TempDir::new("kill");
        let drill = Drill::new(mix, dir.path(), 4, 100_000)?;
        let t: &mut Totals = totals.entry(mix).or_default();
        for round in 0..rounds {
            let mut child = child_command(&drill).spawn().unwrap();
            let stdout = child.stdout.take().unwrap();
            let (ready, started) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                let mut text = String::new();
                for line in BufReader::new(stdout).lines() {
                    match line {
                        Ok(l) => {
                            if l.contains("drill-ready") {
                                let _ = ready.send(());
                            }
                            text.push_str(&l);
                            text.push('\n');
                        }
                        Err(_) => break,
                    }
                }
                text
            });
            // One round in five kills at a random moment from the spawn (often during the
            // start-up: settings, log, start-up recovery); the others under load, a
            // random time after the load began.
            if rng.below(5) == 0 {
                std::thread::sleep(Duration::from_millis(150 + rng.below(600)));
            } else {
                let _ = started.recv_timeout(Duration::from_secs(60));
                std::thread::sleep(Duration::from_millis(rng.below(500)));
            }
            child.kill().unwrap(); // SIGKILL
            let _ = child.wait();
            let text = reader.join().unwrap();
            let reported = parse_output(&text);
            assert!(reported.errors.is_empty(), "{:?}", reported.errors);
            if !text.contains("drill-ready") {
                t.during_start += 1;
            }
            let recovered = recover(&drill);
            let committed = assert_one_outcome(&drill, &format!("round {round}"));
            if mix == Mix::PgMariaSqlite {
                assert_eq!(
                    carried_rows(&drill),
                    0,
                    "round {round}: carried decisions left"
                );
            }
            let missing: Vec<_> = reported.ok.difference(&committed).collect();
            assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
            t.rounds += 1;
            t.acknowledged += reported.ok.len();
            t.recovered_commits += recovered.committed;
            t.recovered_rollbacks += recovered.rolled_back;
            // Progress for long runs (stderr, shown with --nocapture).
            eprintln!(
                "{} round {}/{rounds}: {} acknowledged, recovery committed {} and rolled back {}",
                mix.name(),
                round + 1,
                reported.ok.len(),
                recovered.committed,
                recovered.rolled_back
            );
            // Next round starts on a clean table: the child's ids restart at 1.
            for db in drill.dbs() {
                let sql = format!("DELETE FROM {}", drill.table);
                match db {
                    Db::Pg(url) => common::pg::exec(&url, &sql),
                    Db::Maria(url) => common::my::exec(&url, &sql),
                    Db::Sqlite(path) => common::lite::exec(&path, &sql),
                }
            }
        }
        drill.drop_tables();
    }
    Some(totals)
}

fn print_summary(totals: &BTreeMap<Mix, Totals>) {
    println!("| mix | rounds | killed during start-up | commits acknowledged | branches committed by recovery | branches rolled back by recovery | mixed outcomes |");
    println!("|---|---|---|---|---|---|---|");
    for (mix, t) in totals {
        println!(
            "| {} | {} | {} | {} | {} | {} | 0 |",
            mix.name(),
            t.rounds,
            t.during_start,
            t.acknowledged,
            t.recovered_commits,
            t.recovered_rollbacks
        );
    }
}

fn rounds(default: u64) -> u64 {
    std::env::var("SQLASSIST_DRILL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_kills_under_load_leave_one_outcome_per_transaction() {
    if let Some(totals) = random_kills(3) {
        print_summary(&totals);
    }
}

/// `SQLASSIST_DRILL_ROUNDS` kills in all (default 1,000), spread evenly over the three
/// engine mixes (a third each, rounded up).
#[test]
#[ignore = "long: SQLASSIST_DRILL_ROUNDS kill rounds in all, over the three engine mixes (default 1000)"]
fn random_kills_many_rounds() {
    let per_mix = rounds(1000).div_ceil(Mix::ALL.len() as u64);
    if let Some(totals) = random_kills(per_mix) {
        print_summary(&totals);
    }
}
