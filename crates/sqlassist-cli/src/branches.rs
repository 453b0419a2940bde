//! `sqlassist in-doubt list`, `recover`, `commit`, `rollback`, with either decision log: a
//! directory (the file log) or a table of a PostgreSQL engine (`engine:<name>`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "postgres")]
use sqlassist::{DatabaseDecisionLog, DatabaseLogInspection, NodeLease};
use sqlassist::{
    DecisionLogLocation, InDoubtBranch, InDoubtReport, LoggedDecision, ManualAction, PlannedAction,
    RecoveryAction, RecoveryProgress, RecoveryReport, Registry, Settings,
};
use transaction::{FileDecisionLog, LogInspection};

use crate::{fail, SettingsArgs, CLEAN, ERROR, IN_DOUBT, OPERATOR};

/// The configured decision log, read without taking it.
enum Log {
    /// No `sqlassist.decision_log`.
    None,
    /// A file log: its directory and records.
    File(PathBuf, LogInspection),
    /// A database log: the engine's name and its tables.
    #[cfg(feature = "postgres")]
    Database(String, DatabaseLogInspection),
}

/// The log's records read without its lock (or lease).
fn inspect(settings: &Settings, registry: &Registry) -> Result<Log, u8> {
    match Registry::decision_log_location(settings) {
        None => Ok(Log::None),
        Some(DecisionLogLocation::Directory(dir)) => {
            if !dir.exists() {
                return Ok(Log::File(dir, LogInspection::default()));
            }
            match FileDecisionLog::inspect(&dir) {
                Ok(inspection) => Ok(Log::File(dir, inspection)),
                Err(e) => Err(fail(
                    &format!("cannot read the decision log {}", dir.display()),
                    &e,
                )),
            }
        }
        #[cfg(feature = "postgres")]
        Some(DecisionLogLocation::Engine(name)) => {
            let engine = registry
                .engine(&name)
                .map_err(|e| fail("the decision log's engine", &e))?;
            match DatabaseDecisionLog::inspect(engine) {
                Ok(inspection) => Ok(Log::Database(name, inspection)),
                Err(e) => Err(fail(
                    &format!("cannot read the decision log in engine `{name}`"),
                    &e,
                )),
            }
        }
        #[allow(unreachable_patterns)]
        Some(_) => {
            let _ = registry;
            eprintln!("sqlassist: a database decision log needs the `postgres` feature");
            Err(ERROR)
        }
    }
}

impl Log {
    fn report(&self, registry: &Registry, all: bool) -> InDoubtReport {
        match self {
            Self::None => registry.in_doubt(None, all),
            Self::File(_, inspection) => registry.in_doubt(Some(inspection), all),
            #[cfg(feature = "postgres")]
            Self::Database(_, inspection) => registry.in_doubt_database(inspection, all),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Self::None => serde_json::Value::Null,
            Self::File(dir, _) => serde_json::json!({"kind": "directory", "path": dir}),
            #[cfg(feature = "postgres")]
            Self::Database(name, _) => serde_json::json!({"kind": "engine", "engine": name}),
        }
    }

    /// The lease of `node` in a database log.
    #[cfg(feature = "postgres")]
    fn lease(&self, node: &str) -> Option<&sqlassist::NodeRecord> {
        match self {
            Self::Database(_, inspection) => inspection.node(node),
            _ => None,
        }
    }
}

/// Whether a node's lease says a running process holds it.
#[cfg(feature = "postgres")]
fn is_held(lease: &NodeLease) -> bool {
    matches!(
        lease,
        NodeLease::Live | NodeLease::TakenOver { live: true, .. }
    )
}

#[cfg(feature = "postgres")]
fn holder(n: &sqlassist::NodeRecord) -> String {
    match &n.lease {
        NodeLease::TakenOver { by, .. } => {
            format!(
                "taken over by node `{by}` for {:.0} s more",
                n.lease_remaining
            )
        }
        _ => format!(
            "host `{}`, pid {}, for {:.0} s more",
            n.host.as_deref().unwrap_or("?"),
            n.pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
            n.lease_remaining
        ),
    }
}

fn branch_json(b: &InDoubtBranch) -> serde_json::Value {
    serde_json::json!({
        "engine": b.engine,
        "id": b.id,
        "node": b.branch.as_ref().map(|p| p.node().as_str().to_owned()),
        "incarnation": b.branch.as_ref().map(|p| p.incarnation()),
        "sequence": b.branch.as_ref().map(|p| p.sequence()),
        "age_seconds": b.age.map(|a| a.as_secs()),
        "decision": b.decision.as_str(),
        "action": b.action.as_str(),
        "lease": b.lease.as_ref().map(ToString::to_string),
    })
}

fn exit_of(report: &InDoubtReport) -> u8 {
    let needs_operator = !report.unreachable.is_empty()
        || report.branches.iter().any(|b| {
            matches!(b.decision, LoggedDecision::Unparseable)
                || matches!(b.action, PlannedAction::KeepUndecided)
        });
    if needs_operator {
        OPERATOR
    } else if report
        .branches
        .iter()
        .any(|b| !matches!(b.decision, LoggedDecision::Foreign))
    {
        IN_DOUBT
    } else {
        CLEAN
    }
}

/// `in-doubt list` and `recover --dry-run`: what is prepared and what a pass would do.
pub(crate) fn list(args: &SettingsArgs, all: bool, json: bool) -> u8 {
    let (settings, registry) = match args.load() {
        Ok(loaded) => loaded,
        Err(e) => return fail("cannot read the settings", &e),
    };
    let log = match inspect(&settings, &registry) {
        Ok(log) => log,
        Err(code) => return code,
    };
    let node = registry.node_id().as_str();
    eprintln!("listing prepared branches of node `{node}`");
    let report = log.report(&registry, all);
    #[cfg(feature = "postgres")]
    let node_lease = log.lease(node).map(|n| n.lease.to_string());
    #[cfg(not(feature = "postgres"))]
    let node_lease: Option<String> = None;
    if json {
        let unreachable: Vec<serde_json::Value> = report
            .unreachable
            .iter()
            .map(|(engine, e)| serde_json::json!({"engine": engine, "error": e.to_string()}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "node": node,
                "decision_log": log.json(),
                "node_lease": node_lease,
                "branches": report.branches.iter().map(branch_json).collect::<Vec<_>>(),
                "unreachable": unreachable,
            })
        );
    } else {
        if let Some(lease) = &node_lease {
            println!("node `{node}`: lease {lease}");
        }
        println!(
            "{:<12} {:<64} {:<20} {:>11} {:>8} {:<14} {:<16} action",
            "engine", "branch", "node", "incarnation", "age", "decision", "lease"
        );
        for b in &report.branches {
            let age = b
                .age
                .map_or_else(|| "-".to_owned(), |a| format!("{}s", a.as_secs()));
            let (node, incarnation) = b.branch.as_ref().map_or_else(
                || ("-".to_owned(), "-".to_owned()),
                |p| (p.node().as_str().to_owned(), p.incarnation().to_string()),
            );
            let lease = b
                .lease
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string);
            println!(
                "{:<12} {:<64} {:<20} {:>11} {:>8} {:<14} {:<16} {}",
                b.engine, b.id, node, incarnation, age, b.decision, lease, b.action
            );
        }
        for (engine, e) in &report.unreachable {
            println!("{engine}: cannot list prepared branches: {e}");
        }
    }
    exit_of(&report)
}

/// `recover`: one pass now, holding the decision log (the file log's lock, or the node's
/// lease in a database log): the application must not be running, its own passes recover
/// while it runs.
pub(crate) fn recover(args: &SettingsArgs, json: bool) -> u8 {
    let (settings, mut registry) = match args.load() {
        Ok(loaded) => loaded,
        Err(e) => return fail("cannot read the settings", &e),
    };
    let report = match Registry::decision_log_location(&settings) {
        None => {
            eprintln!("sqlassist: `sqlassist.decision_log` is not set: without a log no branch can be told committed from undecided");
            return OPERATOR;
        }
        Some(DecisionLogLocation::Directory(dir)) => {
            let log = match FileDecisionLog::open(&dir) {
                Ok(log) => Arc::new(log),
                Err(e) => {
                    eprintln!(
                        "sqlassist: cannot take the decision log {} ({e}); while the application runs, its own passes recover: see `sqlassist recover --dry-run`",
                        dir.display()
                    );
                    return OPERATOR;
                }
            };
            registry.use_decision_log(log);
            eprintln!("recovery pass for node `{}`", registry.node_id().as_str());
            match recover_showing_progress(&registry) {
                Ok(report) => report,
                Err(e) => return fail("recovery failed", &e),
            }
        }
        #[cfg(feature = "postgres")]
        Some(DecisionLogLocation::Engine(name)) => {
            match recover_database(&settings, &mut registry, &name) {
                Ok(report) => report,
                Err(code) => return code,
            }
        }
        #[allow(unreachable_patterns)]
        Some(_) => {
            eprintln!("sqlassist: a database decision log needs the `postgres` feature");
            return ERROR;
        }
    };
    print_recovery(&report, json)
}

/// A pass with the database log: refused while the node's lease is live; otherwise the
/// node is claimed (which also lets the pass take over expired nodes), recovered and
/// released.
#[cfg(feature = "postgres")]
fn recover_database(
    settings: &Settings,
    registry: &mut Registry,
    name: &str,
) -> Result<RecoveryReport, u8> {
    let node = registry.node_id().clone();
    let engine = registry
        .engine(name)
        .map_err(|e| fail("the decision log's engine", &e))?
        .clone();
    let ttl = Registry::decision_log_ttl(settings).map_err(|e| fail("bad settings", &e))?;
    let inspection = DatabaseDecisionLog::inspect(&engine).map_err(|e| {
        fail(
            &format!("cannot read the decision log in engine `{name}`"),
            &e,
        )
    })?;
    if let Some(n) = inspection.node(node.as_str()).filter(|n| is_held(&n.lease)) {
        eprintln!(
            "sqlassist: refused: node `{node}` holds a live lease in the decision log ({}); the running application recovers its own branches. Stop it, or see `sqlassist recover --dry-run`",
            holder(n)
        );
        return Err(OPERATOR);
    }
    let log = match DatabaseDecisionLog::open(engine, &node, ttl) {
        Ok(log) => log,
        Err(sqlassist::Error::NodeLeaseHeld { holder, .. }) => {
            eprintln!(
                "sqlassist: refused: node `{node}` holds a live lease in the decision log ({holder}); the running application recovers its own branches"
            );
            return Err(OPERATOR);
        }
        Err(e) => return Err(fail("cannot claim the node in the decision log", &e)),
    };
    registry.use_database_decision_log(log.clone());
    eprintln!(
        "recovery pass for node `{node}` (incarnation {}), decision log in engine `{name}`",
        log.incarnation()
    );
    let report = recover_showing_progress(registry);
    if let Err(e) = log.release() {
        eprintln!("warning: the node's lease could not be released ({e}); it expires by itself");
    }
    report.map_err(|e| fail("recovery failed", &e))
}

/// Every this many branches acted on, a progress line.
const PROGRESS_EVERY: usize = 100;

/// One pass, with progress on stderr: each engine's count of prepared branches when
/// listed, then a line every [`PROGRESS_EVERY`] branches acted on.
fn recover_showing_progress(registry: &Registry) -> sqlassist::Result<RecoveryReport> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listed = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let report = registry.recover_with_progress(|p| match p {
        RecoveryProgress::Listed { engine, branches } => {
            listed.fetch_add(branches, Ordering::Relaxed);
            eprintln!("{engine}: {branches} prepared branch(es) listed");
        }
        RecoveryProgress::Branch(_) => {
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(PROGRESS_EVERY) {
                eprintln!(
                    "{n} of {} listed branch(es) handled",
                    listed.load(Ordering::Relaxed)
                );
            }
        }
        _ => {}
    })?;
    eprintln!(
        "{} of {} listed branch(es) handled",
        done.load(Ordering::Relaxed),
        listed.load(Ordering::Relaxed)
    );
    Ok(report)
}

fn print_recovery(report: &RecoveryReport, json: bool) -> u8 {
    if json {
        let branches: Vec<serde_json::Value> = report
            .branches
            .iter()
            .map(|b| {
                serde_json::json!({
                    "engine": b.engine,
                    "id": b.id,
                    "action": b.action.to_string(),
                    "error": b.error.as_ref().map(ToString::to_string),
                })
            })
            .collect();
        let unreachable: Vec<serde_json::Value> = report
            .unreachable
            .iter()
            .map(|(engine, e)| serde_json::json!({"engine": engine, "error": e.to_string()}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "branches": branches,
                "unreachable": unreachable,
                "forgotten": report.forgotten.len(),
            })
        );
    } else {
        for b in &report.branches {
            match &b.error {
                Some(e) => println!("{} {}: {} ({e})", b.engine, b.id, b.action),
                None => println!("{} {}: {}", b.engine, b.id, b.action),
            }
        }
        for (engine, e) in &report.unreachable {
            println!("{engine}: cannot list prepared branches: {e}");
        }
        println!("{} finished decision(s) forgotten", report.forgotten.len());
    }
    if report.is_clean() {
        CLEAN
    } else if !report.unreachable.is_empty()
        || report.branches.iter().any(|b| {
            matches!(
                b.action,
                RecoveryAction::Malformed | RecoveryAction::Undecided | RecoveryAction::Failed
            )
        })
    {
        OPERATOR
    } else {
        IN_DOUBT
    }
}

/// What a manual action holds while it acts, so that the application cannot start
/// recovering the same branch: the file log's lock or the node's lease.
enum Held {
    File(PathBuf, Option<FileDecisionLog>),
    #[cfg(feature = "postgres")]
    Database(sqlassist::Engine, Option<Arc<DatabaseDecisionLog>>),
}

/// `commit GID` / `rollback GID`: one branch by hand, recorded in the decision log (the
/// log directory's `manual.log`, or the log database's `sqlassist_manual_action`).
pub(crate) fn finish(args: &SettingsArgs, gid: &str, commit: bool, force: bool, json: bool) -> u8 {
    let verb = if commit { "commit" } else { "rollback" };
    let (settings, registry) = match args.load() {
        Ok(loaded) => loaded,
        Err(e) => return fail("cannot read the settings", &e),
    };
    let log = match inspect(&settings, &registry) {
        Ok(Log::None) => {
            eprintln!("sqlassist: `sqlassist.decision_log` is not set: a manual action is recorded in the decision log");
            return ERROR;
        }
        Ok(log) => log,
        Err(code) => return code,
    };
    let report = log.report(&registry, true);
    let Some(branch) = report.branches.iter().find(|b| b.id == gid) else {
        for (engine, e) in &report.unreachable {
            eprintln!("{engine}: cannot list prepared branches: {e}");
        }
        eprintln!("sqlassist: no prepared branch `{gid}` on the managed engines");
        return ERROR;
    };
    // A live process on the branch's node, or on ours, recovers the branch itself.
    #[cfg(feature = "postgres")]
    {
        let ours = registry.node_id().as_str();
        let owner = branch
            .branch
            .as_ref()
            .map(|b| b.node().as_str())
            .filter(|n| *n != ours);
        for node in owner.into_iter().chain([ours]) {
            if let Some(n) = log.lease(node).filter(|n| is_held(&n.lease)) {
                if force {
                    eprintln!(
                        "warning: node `{node}` holds a live lease ({}): --force",
                        holder(n)
                    );
                } else {
                    eprintln!(
                        "sqlassist: refused: node `{node}` holds a live lease in the decision log ({}); its running process recovers this branch. Stop it, or use --force",
                        holder(n)
                    );
                    return OPERATOR;
                }
            }
        }
    }
    let held = match &log {
        Log::None => return ERROR,
        // Hold the log while acting; a live holder refuses the action unless forced.
        Log::File(dir, _) => match FileDecisionLog::open(dir) {
            Ok(held) => Held::File(dir.clone(), Some(held)),
            Err(e) if force => {
                eprintln!("warning: acting without the decision log ({e}): --force");
                Held::File(dir.clone(), None)
            }
            Err(e) => {
                eprintln!(
                    "sqlassist: refused: the decision log {} is held ({e}); the running application recovers its own branches. Stop it, or use --force",
                    dir.display()
                );
                return OPERATOR;
            }
        },
        #[cfg(feature = "postgres")]
        Log::Database(name, _) => {
            let engine = match registry.engine(name) {
                Ok(engine) => engine.clone(),
                Err(e) => return fail("the decision log's engine", &e),
            };
            let ttl = match Registry::decision_log_ttl(&settings) {
                Ok(ttl) => ttl,
                Err(e) => return fail("bad settings", &e),
            };
            match DatabaseDecisionLog::open(engine.clone(), registry.node_id(), ttl) {
                Ok(held) => Held::Database(engine, Some(held)),
                Err(e) if force => {
                    eprintln!("warning: acting without the node's lease ({e}): --force");
                    Held::Database(engine, None)
                }
                Err(e) => {
                    eprintln!(
                        "sqlassist: refused: cannot claim node `{}` in the decision log ({e}); the running application recovers its own branches. Stop it, or use --force",
                        registry.node_id().as_str()
                    );
                    return OPERATOR;
                }
            }
        }
    };
    // A file log read again under its lock: a decision may have been logged since.
    let file_report;
    let branch = match (&held, &log) {
        (Held::File(dir, Some(_)), Log::File(..)) => match FileDecisionLog::inspect(dir) {
            Ok(i) => {
                file_report = registry.in_doubt(Some(&i), true);
                match file_report.branches.iter().find(|b| b.id == gid) {
                    Some(b) => b,
                    None => {
                        eprintln!("sqlassist: no prepared branch `{gid}` on the managed engines");
                        return ERROR;
                    }
                }
            }
            Err(e) => return fail("cannot read the decision log", &e),
        },
        _ => branch,
    };
    let ours = branch
        .branch
        .as_ref()
        .is_some_and(|b| b.node() == registry.node_id());
    if !ours && !force {
        eprintln!(
            "sqlassist: refused: `{gid}` is not a branch of node `{}` ({}); its owner recovers it. Use --force",
            registry.node_id().as_str(),
            branch.decision
        );
        return OPERATOR;
    }
    if !commit && branch.decision == LoggedDecision::CommitLogged && !force {
        eprintln!(
            "sqlassist: refused: a commit is logged for `{gid}`; rolling it back would split the transaction's outcome. Use `sqlassist commit`, or --force"
        );
        return OPERATOR;
    }
    let outcome = registry.finish_in_doubt(branch, commit);
    let mut record = ManualAction::new(verb, &branch.engine, &branch.id);
    record.decision = branch.decision;
    record.forced = force;
    record.outcome = match &outcome {
        Ok(done) => format!("{done:?}").to_lowercase(),
        Err(e) => format!("failed: {e}"),
    };
    let recorded: Result<(), String> = match &held {
        Held::File(dir, _) => sqlassist::record_manual_action(dir, &record)
            .map_err(|e| format!("in {}: {e}", dir.display())),
        #[cfg(feature = "postgres")]
        Held::Database(engine, _) => {
            DatabaseDecisionLog::record_manual_action(engine, registry.node_id(), &record)
                .map_err(|e| format!("in sqlassist_manual_action: {e}"))
        }
    };
    match held {
        Held::File(_, lock) => drop(lock),
        #[cfg(feature = "postgres")]
        Held::Database(_, lease) => {
            if let Some(Err(e)) = lease.map(|l| l.release()) {
                eprintln!(
                    "warning: the node's lease could not be released ({e}); it expires by itself"
                );
            }
        }
    }
    if let Err(e) = &recorded {
        eprintln!("warning: the action could not be recorded {e}");
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "action": verb,
                "engine": branch.engine,
                "id": branch.id,
                "decision": branch.decision.as_str(),
                "forced": force,
                "outcome": record.outcome,
                "recorded": recorded.is_ok(),
            })
        );
    } else {
        println!(
            "{verb} {} on {}: {}",
            branch.id, branch.engine, record.outcome
        );
    }
    match (outcome, recorded) {
        (Ok(_), Ok(())) => CLEAN,
        (Ok(_), Err(_)) => OPERATOR,
        (Err(_), _) => ERROR,
    }
}

/// `log verify` and `log dump` of the file decision log, read without its lock.
pub(crate) fn log(dir: &Path, dump: bool, json: bool) -> u8 {
    let inspection = match FileDecisionLog::inspect(dir) {
        Ok(i) => i,
        Err(e) => {
            return fail(
                &format!("cannot read the decision log {}", dir.display()),
                &e,
            )
        }
    };
    let pos = |p: &transaction::LogPosition| format!("{}@{}", p.path.display(), p.offset);
    if json {
        let mut value = serde_json::json!({
            "batches": inspection.batches.len(),
            "records": inspection.batches.iter().map(|b| u64::from(b.records)).sum::<u64>(),
            "open_decisions": inspection.open_decisions.len(),
            "torn_tail": inspection.torn_tail.as_ref().map(pos),
            "corruption": inspection.corruption.iter().map(pos).collect::<Vec<_>>(),
        });
        if dump {
            value["decisions"] = inspection
                .open_decisions
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "transaction": d.transaction.to_string(),
                        "branches": d.branches.iter().map(|b| serde_json::json!({
                            "resource": b.resource,
                            "branch_id": b.branch_id,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            value["batch_list"] = inspection
                .batches
                .iter()
                .map(|b| serde_json::json!({"at": pos(&b.at), "len": b.len, "records": b.records}))
                .collect();
        }
        println!("{value}");
    } else {
        if dump {
            for b in &inspection.batches {
                println!("batch {} len {} records {}", pos(&b.at), b.len, b.records);
            }
            for d in &inspection.open_decisions {
                println!("open decision {}:", d.transaction);
                for b in &d.branches {
                    println!("  {} {}", b.resource, b.branch_id.as_deref().unwrap_or("-"));
                }
            }
        }
        println!(
            "{} batch(es), {} open decision(s)",
            inspection.batches.len(),
            inspection.open_decisions.len()
        );
        if let Some(t) = &inspection.torn_tail {
            println!(
                "torn tail at {} (a write cut short by a crash; its batch never counted)",
                pos(t)
            );
        }
        for c in &inspection.corruption {
            println!(
                "CORRUPTION at {} (a checksum fails before the tail)",
                pos(c)
            );
        }
    }
    if !inspection.corruption.is_empty() {
        OPERATOR
    } else if !inspection.open_decisions.is_empty() {
        IN_DOUBT
    } else {
        CLEAN
    }
}
