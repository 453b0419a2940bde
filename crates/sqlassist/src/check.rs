//! Start-up checks of an application's setup against the live servers: every engine
//! reachable, its backend and server version, prepared transactions enabled where the
//! engine is managed, a read-only engine really read-only, durable settings, the node id
//! and the decision log.
//!
//! [`check_setup`] acts on nothing: the write it tries on a read-only engine runs in a
//! transaction that is rolled back and touches no row (`UPDATE t SET c = c WHERE 1 = 0`,
//! or a `CREATE TABLE` where DDL is transactional), and the decision log probe writes and
//! removes a scratch file of its own.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use diesel::connection::SimpleConnection;
use diesel::{QueryableByName, RunQueryDsl};

use crate::backend::Backend;
use crate::engine::Engine;
use crate::registry::{DecisionLogLocation, Registry};
use crate::settings::Settings;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CheckOutcome {
    /// As it should be.
    Pass,
    /// Works, but an operator should look (a setting that weakens durability).
    Warn,
    /// Broken: the application would fail, or lose a decision, with this setup.
    Fail,
}

impl CheckOutcome {
    /// `pass`, `warn` or `fail`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(sqlassist::CheckOutcome::Fail.as_str(), "fail");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Pass => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        })
    }
}

/// One check of one subject (an engine by name, `node id`, `decision log`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckItem {
    /// What was checked: an engine's name, `node id` or `decision log`.
    pub subject: String,
    /// The check: `reachable`, `server`, `prepared transactions`, `read-only`,
    /// `durability`, `node id`, `decision log`.
    pub check: &'static str,
    /// How it came out.
    pub outcome: CheckOutcome,
    /// What was found, in words (never a password).
    pub detail: String,
}

impl fmt::Display for CheckItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4} {}: {}: {}",
            self.outcome, self.subject, self.check, self.detail
        )
    }
}

/// Every check [`check_setup`] ran, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// The checks, engine by engine, then the node id and the decision log.
    pub items: Vec<CheckItem>,
}

impl CheckReport {
    /// The worst outcome (`Pass` for an empty report).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{CheckOutcome, CheckReport};
    ///
    /// assert_eq!(CheckReport::default().worst(), CheckOutcome::Pass);
    /// ```
    pub fn worst(&self) -> CheckOutcome {
        self.items
            .iter()
            .map(|i| i.outcome)
            .max()
            .unwrap_or(CheckOutcome::Pass)
    }

    fn push(
        &mut self,
        subject: &str,
        check: &'static str,
        outcome: CheckOutcome,
        detail: impl Into<String>,
    ) {
        // One line per item: drivers' messages carry newlines and tabs.
        let detail = detail
            .into()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        self.items.push(CheckItem {
            subject: subject.to_owned(),
            check,
            outcome,
            detail,
        });
    }
}

/// Checks every engine of `registry` and the node id and decision log `settings` name,
/// against the live servers. Acts on nothing (see the module docs); the registry should
/// come from [`Registry::from_settings_inert`], which runs no recovery.
///
/// Per engine: `reachable` (a connection opens; an unreachable server or a wrong password
/// fails here, named by the engine and its redacted URL), `server` (backend and version),
/// for a managed engine `prepared transactions` (PostgreSQL `max_prepared_transactions >
/// 0`; MariaDB 10.5+ or MySQL 5.7.7+, where a disconnect keeps a prepared XA branch;
/// SQLite cannot prepare and takes part as the last resource) and `durability`
/// (PostgreSQL `fsync` and `synchronous_commit`, MariaDB/MySQL
/// `innodb_flush_log_at_trx_commit`, SQLite `synchronous=FULL`); for a read-only engine
/// `read-only` (a write, tried in a transaction that is rolled back, must be refused by
/// the server, not only by the session's read-only setting, which any code can undo).
/// Then `node id` (a stable `sqlassist.node_id` where a decision log is set) and `decision
/// log`: for a directory, writable and `fsync` working, its records readable; for a
/// database log (`engine:<name>`), the engine registered, PostgreSQL and reachable
/// (`decision log`), its tables present or creatable (`tables`), `fsync` on
/// (`durability`) and the node's lease (`lease`: live, expired, taken over).
///
/// # Examples
///
/// ```
/// use sqlassist::{check_setup, CheckOutcome, Registry, Settings};
///
/// let settings = Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]);
/// let registry = Registry::from_settings_inert(&settings, &[])?;
/// let report = check_setup(&registry, &settings);
/// assert_eq!(report.worst(), CheckOutcome::Pass);
/// assert_eq!(report.items[0].check, "reachable");
/// # Ok::<(), sqlassist::Error>(())
/// ```
pub fn check_setup(registry: &Registry, settings: &Settings) -> CheckReport {
    let mut report = CheckReport::default();
    let mut names: Vec<&str> = registry.names().collect();
    names.sort_unstable();
    let mut any_managed = false;
    for name in names {
        let (Ok(engine), Ok(managed)) = (registry.engine(name), registry.is_managed(name)) else {
            continue;
        };
        any_managed |= managed;
        check_engine(&mut report, name, engine, managed);
    }
    let location = Registry::decision_log_location(settings);
    match (settings.get("sqlassist.node_id"), &location) {
        (Some(node), _) => report.push(
            "node id",
            "node id",
            CheckOutcome::Pass,
            format!("`{node}`"),
        ),
        (None, Some(_)) => report.push(
            "node id",
            "node id",
            CheckOutcome::Fail,
            "`sqlassist.node_id` is not set: each process draws a random id, so a restarted \
             process cannot recognise the branches its predecessor left prepared",
        ),
        (None, None) => report.push(
            "node id",
            "node id",
            CheckOutcome::Pass,
            "not set (a random id per process; no decision log)",
        ),
    }
    match location {
        Some(DecisionLogLocation::Directory(dir)) => check_log_dir(&mut report, &dir),
        Some(DecisionLogLocation::Engine(name)) => check_log_engine(&mut report, registry, &name),
        None if any_managed => report.push(
            "decision log",
            "decision log",
            CheckOutcome::Warn,
            "`sqlassist.decision_log` is not set: a crash during commit leaves prepared \
             branches that recovery cannot decide",
        ),
        None => {}
    }
    report
}

#[derive(QueryableByName)]
struct Text1 {
    #[diesel(sql_type = diesel::sql_types::Text)]
    v: String,
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
#[derive(QueryableByName)]
struct Target {
    #[diesel(sql_type = diesel::sql_types::Text)]
    target: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    col: String,
}

fn check_engine(report: &mut CheckReport, name: &str, engine: &Engine, managed: bool) {
    let url = engine.url().redacted().to_owned();
    let mut conn = match engine.checkout() {
        Ok(conn) => conn,
        Err(e) => {
            report.push(name, "reachable", CheckOutcome::Fail, e.to_string());
            return;
        }
    };
    report.push(name, "reachable", CheckOutcome::Pass, url.clone());
    let backend = engine.backend();
    let version_sql = match backend {
        Backend::Sqlite => "SELECT sqlite_version() AS v",
        Backend::Postgres => "SELECT current_setting('server_version') AS v",
        Backend::Mysql => "SELECT version() AS v",
    };
    let version = crate::conn::with_conn!(&mut conn, c => {
        diesel::sql_query(version_sql).get_result::<Text1>(c).map(|t| t.v)
    });
    let version = match version {
        Ok(v) => v,
        Err(e) => {
            report.push(name, "server", CheckOutcome::Fail, redact(&e, engine));
            return;
        }
    };
    report.push(
        name,
        "server",
        CheckOutcome::Pass,
        format!("{backend} {version}"),
    );
    let show = |sql: &str, conn: &mut crate::conn::Conn| -> Result<String, String> {
        crate::conn::with_conn!(conn, c => {
            diesel::sql_query(sql).get_result::<Text1>(c).map(|t| t.v)
        })
        .map_err(|e| redact(&e, engine))
    };
    if managed {
        match backend {
            Backend::Postgres => {
                match show(
                    "SELECT current_setting('max_prepared_transactions') AS v",
                    &mut conn,
                ) {
                    Ok(n) if n.trim() == "0" => report.push(
                        name,
                        "prepared transactions",
                        CheckOutcome::Fail,
                        "max_prepared_transactions = 0: PREPARE TRANSACTION is refused; set it \
                         above 0 (server restart) or register the engine unmanaged",
                    ),
                    Ok(n) => report.push(
                        name,
                        "prepared transactions",
                        CheckOutcome::Pass,
                        format!("max_prepared_transactions = {n}"),
                    ),
                    Err(e) => report.push(name, "prepared transactions", CheckOutcome::Fail, e),
                }
                let fsync = show("SELECT current_setting('fsync') AS v", &mut conn);
                let sync = show(
                    "SELECT current_setting('synchronous_commit') AS v",
                    &mut conn,
                );
                match (fsync, sync) {
                    (Ok(f), _) if f != "on" => report.push(
                        name,
                        "durability",
                        CheckOutcome::Fail,
                        format!("fsync = {f}: a server crash can lose prepared branches"),
                    ),
                    (Ok(_), Ok(s)) if s == "off" || s == "local" => report.push(
                        name,
                        "durability",
                        CheckOutcome::Warn,
                        format!(
                            "synchronous_commit = {s}: a one-phase commit may be lost in a crash"
                        ),
                    ),
                    (Ok(f), Ok(s)) => report.push(
                        name,
                        "durability",
                        CheckOutcome::Pass,
                        format!("fsync = {f}, synchronous_commit = {s}"),
                    ),
                    (Err(e), _) | (_, Err(e)) => {
                        report.push(name, "durability", CheckOutcome::Fail, e)
                    }
                }
            }
            Backend::Mysql => {
                let (outcome, detail) = mysql_xa_ready(&version);
                report.push(name, "prepared transactions", outcome, detail);
                match show(
                    "SELECT CAST(@@innodb_flush_log_at_trx_commit AS CHAR) AS v",
                    &mut conn,
                ) {
                    Ok(v) if v == "1" => report.push(
                        name,
                        "durability",
                        CheckOutcome::Pass,
                        "innodb_flush_log_at_trx_commit = 1",
                    ),
                    Ok(v) => report.push(
                        name,
                        "durability",
                        CheckOutcome::Warn,
                        format!("innodb_flush_log_at_trx_commit = {v}: a crash may lose a commit"),
                    ),
                    Err(e) => report.push(name, "durability", CheckOutcome::Fail, e),
                }
            }
            Backend::Sqlite => {
                report.push(
                    name,
                    "prepared transactions",
                    CheckOutcome::Pass,
                    "SQLite cannot prepare: it commits as the last resource",
                );
                match show(
                    "SELECT CAST(synchronous AS TEXT) AS v FROM pragma_synchronous",
                    &mut conn,
                ) {
                    Ok(v) if v == "2" || v == "3" => report.push(
                        name,
                        "durability",
                        CheckOutcome::Pass,
                        if v == "2" {
                            "synchronous = FULL"
                        } else {
                            "synchronous = EXTRA"
                        },
                    ),
                    Ok(v) => report.push(
                        name,
                        "durability",
                        CheckOutcome::Fail,
                        format!(
                            "synchronous = {} (not FULL): a power loss may lose a commit \
                             the decision counts on",
                            match v.as_str() {
                                "0" => "OFF",
                                "1" => "NORMAL",
                                other => other,
                            }
                        ),
                    ),
                    Err(e) => report.push(name, "durability", CheckOutcome::Fail, e),
                }
            }
        }
    }
    drop(conn);
    if engine.is_read_only() {
        let (outcome, detail) = read_only_probe(engine);
        report.push(name, "read-only", outcome, detail);
    }
}

/// Whether a MariaDB/MySQL server keeps a prepared XA branch when its connection drops:
/// MariaDB 10.5 and later (MDEV-742), MySQL 5.7.7 and later.
fn mysql_xa_ready(version: &str) -> (CheckOutcome, String) {
    let numbers: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    let v = |i: usize| numbers.get(i).copied().unwrap_or(0);
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    let ok = if mariadb {
        (v(0), v(1)) >= (10, 5)
    } else {
        (v(0), v(1), v(2)) >= (5, 7, 7)
    };
    if ok {
        (
            CheckOutcome::Pass,
            "XA branches survive a disconnect".to_owned(),
        )
    } else {
        (
            CheckOutcome::Fail,
            format!(
                "{version}: a disconnect rolls back a prepared XA branch (needs MariaDB 10.5+ or \
                 MySQL 5.7.7+)"
            ),
        )
    }
}

fn redact(error: &dyn fmt::Display, engine: &Engine) -> String {
    crate::redact::message(&error.to_string(), engine.url())
}

/// Tries a write that changes nothing, on a connection without the engine's session
/// settings, in a transaction that is rolled back.
fn read_only_probe(engine: &Engine) -> (CheckOutcome, String) {
    let refused = |e: &dyn fmt::Display| {
        (
            CheckOutcome::Pass,
            format!("a write is refused: {}", redact(e, engine)),
        )
    };
    let can_write = |what: &str| {
        (
            CheckOutcome::Fail,
            format!(
                "the connection can write ({what} succeeded, then was rolled back): only the \
                 session's read-only setting stops writes; give the engine a role without \
                 write privileges"
            ),
        )
    };
    let connect_failed = |e: &dyn fmt::Display| (CheckOutcome::Fail, redact(e, engine));
    match engine.backend() {
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let mut c = match engine.probe::<diesel::PgConnection>() {
                Ok(c) => c,
                Err(e) => return connect_failed(&e),
            };
            let target = diesel::sql_query(
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS target, \
                        quote_ident(a.attname) AS col \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg_%' \
                   AND has_table_privilege(c.oid, 'UPDATE') \
                 ORDER BY c.oid, a.attnum LIMIT 1",
            )
            .get_results::<Target>(&mut c);
            let statement = match target {
                Ok(t) => match t.into_iter().next() {
                    Some(t) => format!(
                        "UPDATE {} SET {col} = {col} WHERE false",
                        t.target,
                        col = t.col
                    ),
                    None => format!(
                        "CREATE TABLE sqlassist_check_{} (x integer)",
                        std::process::id()
                    ),
                },
                Err(e) => return connect_failed(&e),
            };
            let tried = c.batch_execute(&format!(
                "BEGIN; SET TRANSACTION READ WRITE; SET LOCAL lock_timeout = 2000; {statement}"
            ));
            let _ = c.batch_execute("ROLLBACK");
            match tried {
                Ok(()) => can_write(&statement),
                Err(e) => refused(&e),
            }
        }
        #[cfg(feature = "mysql")]
        Backend::Mysql => {
            let mut c = match engine.probe::<diesel::MysqlConnection>() {
                Ok(c) => c,
                Err(e) => return connect_failed(&e),
            };
            let target = diesel::sql_query(
                "SELECT CONCAT('`', REPLACE(c.table_name, '`', '``'), '`') AS target, \
                        CONCAT('`', REPLACE(c.column_name, '`', '``'), '`') AS col \
                 FROM information_schema.columns c JOIN information_schema.tables t \
                   ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                 WHERE c.table_schema = DATABASE() AND t.table_type = 'BASE TABLE' \
                   AND c.ordinal_position = 1 ORDER BY c.table_name LIMIT 1",
            )
            .get_results::<Target>(&mut c);
            let statement = match target {
                Ok(t) => match t.into_iter().next() {
                    Some(t) => format!(
                        "UPDATE {} SET {col} = {col} WHERE 1 = 0",
                        t.target,
                        col = t.col
                    ),
                    // DDL commits at once on MariaDB/MySQL: never try it.
                    None => {
                        return (
                            CheckOutcome::Warn,
                            "no table to try a write on: not verified".to_owned(),
                        )
                    }
                },
                Err(e) => return connect_failed(&e),
            };
            let tried = c.batch_execute(&format!(
                "SET SESSION lock_wait_timeout = 2; START TRANSACTION READ WRITE; {statement}"
            ));
            let _ = c.batch_execute("ROLLBACK");
            match tried {
                Ok(()) => can_write(&statement),
                Err(e) => refused(&e),
            }
        }
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => {
            let mut c = match engine.probe::<diesel::SqliteConnection>() {
                Ok(c) => c,
                Err(e) => return connect_failed(&e),
            };
            let statement = format!("CREATE TABLE sqlassist_check_{} (x)", std::process::id());
            let tried = c.batch_execute(&format!("BEGIN IMMEDIATE; {statement}"));
            let _ = c.batch_execute("ROLLBACK");
            match tried {
                Ok(()) => can_write(&statement),
                Err(e) => refused(&e),
            }
        }
        #[allow(unreachable_patterns)] // a backend compiled out
        _ => (CheckOutcome::Fail, "backend not compiled in".to_owned()),
    }
}

/// The decision log directory: exists (or its parent can hold it), a scratch file can be
/// written and `fsync`ed, and its records read without the lock.
fn check_log_dir(report: &mut CheckReport, dir: &Path) {
    const SUBJECT: &str = "decision log";
    if !dir.is_dir() {
        let parent_ok = dir.parent().is_some_and(Path::is_dir);
        report.push(
            SUBJECT,
            "decision log",
            if parent_ok {
                CheckOutcome::Warn
            } else {
                CheckOutcome::Fail
            },
            format!(
                "{} does not exist{}",
                dir.display(),
                if parent_ok {
                    " (the application creates it at start)"
                } else {
                    ", nor its parent directory"
                }
            ),
        );
        return;
    }
    let scratch = dir.join(format!(".sqlassist-check-{}", std::process::id()));
    let probe = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&scratch)?;
        f.write_all(b"sqlassist check\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::remove_file(&scratch)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = probe {
        let _ = std::fs::remove_file(&scratch);
        report.push(
            SUBJECT,
            "decision log",
            CheckOutcome::Fail,
            format!("{}: cannot write and fsync a file: {e}", dir.display()),
        );
        return;
    }
    match transaction::FileDecisionLog::inspect(dir) {
        Ok(inspection) if !inspection.corruption.is_empty() => report.push(
            SUBJECT,
            "decision log",
            CheckOutcome::Fail,
            format!(
                "{}: {} damaged record batch(es); run `sqlassist log verify`",
                dir.display(),
                inspection.corruption.len()
            ),
        ),
        Ok(inspection) => report.push(
            SUBJECT,
            "decision log",
            CheckOutcome::Pass,
            format!(
                "{}: writable, fsync works, {} open decision(s)",
                dir.display(),
                inspection.open_decisions.len()
            ),
        ),
        Err(e) => report.push(
            SUBJECT,
            "decision log",
            CheckOutcome::Fail,
            format!("{}: {e}", dir.display()),
        ),
    }
}

#[cfg(feature = "postgres")]
#[derive(QueryableByName)]
struct LogTables {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    node: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    decision: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    manual: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    can_create: bool,
    #[diesel(sql_type = diesel::sql_types::Text)]
    schema: String,
}

/// The database decision log: engine `name` registered, PostgreSQL and reachable, its
/// tables present or creatable, the server durable, and this node's lease. Writes nothing.
fn check_log_engine(report: &mut CheckReport, registry: &Registry, name: &str) {
    const SUBJECT: &str = "decision log";
    let engine = match registry.engine(name) {
        Ok(engine) => engine,
        Err(_) => {
            report.push(
                SUBJECT,
                "decision log",
                CheckOutcome::Fail,
                format!(
                    "`sqlassist.decision_log = engine:{name}`: no engine `{name}` is registered"
                ),
            );
            return;
        }
    };
    if engine.backend() != Backend::Postgres {
        report.push(
            SUBJECT,
            "decision log",
            CheckOutcome::Fail,
            format!(
                "engine `{name}` is {}: a database decision log needs PostgreSQL",
                engine.backend()
            ),
        );
    } else {
        #[cfg(feature = "postgres")]
        check_log_engine_pg(report, registry, name, engine);
    }
}

#[cfg(feature = "postgres")]
fn check_log_engine_pg(report: &mut CheckReport, registry: &Registry, name: &str, engine: &Engine) {
    const SUBJECT: &str = "decision log";
    let url = engine.url().redacted().to_owned();
    let mut conn = match engine.checkout() {
        Ok(conn) => conn,
        Err(e) => {
            report.push(
                SUBJECT,
                "decision log",
                CheckOutcome::Fail,
                format!("engine `{name}` cannot be reached: {}", redact(&e, engine)),
            );
            return;
        }
    };
    report.push(
        SUBJECT,
        "decision log",
        CheckOutcome::Pass,
        format!("engine `{name}` ({url}): reachable"),
    );
    let tables = crate::conn::with_conn!(&mut conn, c => {
        diesel::sql_query(
            "SELECT to_regclass('sqlassist_node') IS NOT NULL AS node, \
               to_regclass('sqlassist_decision') IS NOT NULL AS decision, \
               to_regclass('sqlassist_manual_action') IS NOT NULL AS manual, \
               COALESCE(has_schema_privilege(current_schema(), 'CREATE'), false) AS can_create, \
               COALESCE(current_schema(), '(none)') AS schema",
        )
        .get_result::<LogTables>(c)
    });
    match tables {
        Ok(t) if t.node && t.decision => report.push(
            SUBJECT,
            "tables",
            CheckOutcome::Pass,
            format!(
                "sqlassist_node and sqlassist_decision present in schema {}; \
                 sqlassist_manual_action {}",
                t.schema,
                if t.manual {
                    "present"
                } else if t.can_create {
                    "created on the first manual action"
                } else {
                    "missing and not creatable: manual actions cannot be recorded"
                }
            ),
        ),
        Ok(t) if t.can_create => report.push(
            SUBJECT,
            "tables",
            CheckOutcome::Pass,
            format!(
                "missing in schema {}: the application creates them at its first start",
                t.schema
            ),
        ),
        Ok(t) => report.push(
            SUBJECT,
            "tables",
            CheckOutcome::Fail,
            format!(
                "missing, and the role may not create tables in schema {}: create \
                 sqlassist_node and sqlassist_decision, or grant CREATE",
                t.schema
            ),
        ),
        Err(e) => report.push(SUBJECT, "tables", CheckOutcome::Fail, redact(&e, engine)),
    }
    let show = |sql: &str, conn: &mut crate::conn::Conn| -> Result<String, String> {
        crate::conn::with_conn!(conn, c => {
            diesel::sql_query(sql).get_result::<Text1>(c).map(|t| t.v)
        })
        .map_err(|e| redact(&e, engine))
    };
    let fsync = show("SELECT current_setting('fsync') AS v", &mut conn);
    let sync = show(
        "SELECT current_setting('synchronous_commit') AS v",
        &mut conn,
    );
    drop(conn);
    match (fsync, sync) {
        (Ok(f), _) if f != "on" => report.push(
            SUBJECT,
            "durability",
            CheckOutcome::Fail,
            format!("fsync = {f}: a server crash can lose commit decisions"),
        ),
        (Ok(f), Ok(s)) if s == "off" || s == "local" => report.push(
            SUBJECT,
            "durability",
            CheckOutcome::Pass,
            format!(
                "fsync = {f}, synchronous_commit = {s} (the log commits each decision with \
                 synchronous_commit = on)"
            ),
        ),
        (Ok(f), Ok(s)) => report.push(
            SUBJECT,
            "durability",
            CheckOutcome::Pass,
            format!("fsync = {f}, synchronous_commit = {s}"),
        ),
        (Err(e), _) | (_, Err(e)) => report.push(SUBJECT, "durability", CheckOutcome::Fail, e),
    }
    let node = registry.node_id().as_str();
    match crate::DatabaseDecisionLog::inspect(engine) {
        Ok(log) => {
            let open = log.decisions.iter().filter(|(n, _)| n == node).count();
            let (outcome, detail) = match log.node(node) {
                None => (
                    CheckOutcome::Pass,
                    format!("node `{node}` has not claimed a lease yet"),
                ),
                Some(n) => {
                    let (outcome, state) = match &n.lease {
                        crate::NodeLease::Live => (
                            CheckOutcome::Pass,
                            format!(
                                "live for {:.0} s more, held by host `{}`, pid {} (the \
                                 application runs and recovers its own branches)",
                                n.lease_remaining,
                                n.host.as_deref().unwrap_or("?"),
                                n.pid.map_or_else(|| "?".to_owned(), |p| p.to_string())
                            ),
                        ),
                        crate::NodeLease::Expired => (
                            CheckOutcome::Pass,
                            format!(
                                "expired {:.0} s ago (the application is stopped)",
                                -n.lease_remaining
                            ),
                        ),
                        crate::NodeLease::TakenOver { by, .. } => (
                            CheckOutcome::Warn,
                            format!(
                                "taken over by node `{by}`, which settles its branches; the \
                                 node starts again once that is done or expired"
                            ),
                        ),
                        other => (CheckOutcome::Pass, other.to_string()),
                    };
                    (
                        outcome,
                        format!(
                            "node `{node}` incarnation {}: {state}; {open} open decision(s)",
                            n.incarnation
                        ),
                    )
                }
            };
            report.push(SUBJECT, "lease", outcome, detail);
        }
        Err(e) => report.push(SUBJECT, "lease", CheckOutcome::Fail, redact(&e, engine)),
    }
}
