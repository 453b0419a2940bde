//! `sqlassist in-doubt list`, `recover`, `commit`, `rollback`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlassist::{
    InDoubtBranch, InDoubtReport, LoggedDecision, ManualAction, PlannedAction, RecoveryAction,
    Registry, Settings,
};
use transaction::{FileDecisionLog, LogInspection};

use crate::{fail, SettingsArgs, CLEAN, ERROR, IN_DOUBT, OPERATOR};

/// The log's records read without its lock, or `None` without a configured log.
fn inspect(settings: &Settings) -> Result<Option<(PathBuf, LogInspection)>, u8> {
    let Some(dir) = Registry::decision_log_dir(settings) else {
        return Ok(None);
    };
    if !dir.exists() {
        return Ok(Some((dir, LogInspection::default())));
    }
    match FileDecisionLog::inspect(&dir) {
        Ok(inspection) => Ok(Some((dir, inspection))),
        Err(e) => Err(fail(
            &format!("cannot read the decision log {}", dir.display()),
            &e,
        )),
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
    let log = match inspect(&settings) {
        Ok(log) => log,
        Err(code) => return code,
    };
    eprintln!(
        "listing prepared branches of node `{}`",
        registry.node_id().as_str()
    );
    let report = registry.in_doubt(log.as_ref().map(|(_, i)| i), all);
    if json {
        let unreachable: Vec<serde_json::Value> = report
            .unreachable
            .iter()
            .map(|(engine, e)| serde_json::json!({"engine": engine, "error": e.to_string()}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "node": registry.node_id().as_str(),
                "branches": report.branches.iter().map(branch_json).collect::<Vec<_>>(),
                "unreachable": unreachable,
            })
        );
    } else {
        println!(
            "{:<12} {:<64} {:<20} {:>11} {:>8} {:<14} action",
            "engine", "branch", "node", "incarnation", "age", "decision"
        );
        for b in &report.branches {
            let age = b
                .age
                .map_or_else(|| "-".to_owned(), |a| format!("{}s", a.as_secs()));
            let (node, incarnation) = b.branch.as_ref().map_or_else(
                || ("-".to_owned(), "-".to_owned()),
                |p| (p.node().as_str().to_owned(), p.incarnation().to_string()),
            );
            println!(
                "{:<12} {:<64} {:<20} {:>11} {:>8} {:<14} {}",
                b.engine, b.id, node, incarnation, age, b.decision, b.action
            );
        }
        for (engine, e) in &report.unreachable {
            println!("{engine}: cannot list prepared branches: {e}");
        }
    }
    exit_of(&report)
}

/// `recover`: one pass now, with the decision log's lock (the application must not be
/// running: its own passes recover while it runs).
pub(crate) fn recover(args: &SettingsArgs, json: bool) -> u8 {
    let (settings, mut registry) = match args.load() {
        Ok(loaded) => loaded,
        Err(e) => return fail("cannot read the settings", &e),
    };
    let Some(dir) = Registry::decision_log_dir(&settings) else {
        eprintln!("sqlassist: `sqlassist.decision_log` is not set: without a log no branch can be told committed from undecided");
        return OPERATOR;
    };
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
    let report = match registry.recover() {
        Ok(report) => report,
        Err(e) => return fail("recovery failed", &e),
    };
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

/// `commit GID` / `rollback GID`: one branch by hand, recorded in the log directory.
pub(crate) fn finish(args: &SettingsArgs, gid: &str, commit: bool, force: bool, json: bool) -> u8 {
    let verb = if commit { "commit" } else { "rollback" };
    let (settings, registry) = match args.load() {
        Ok(loaded) => loaded,
        Err(e) => return fail("cannot read the settings", &e),
    };
    let Some(dir) = Registry::decision_log_dir(&settings) else {
        eprintln!("sqlassist: `sqlassist.decision_log` is not set: a manual action is recorded in the log directory");
        return ERROR;
    };
    // Hold the log while acting, so that the application cannot start recovering the same
    // branch; a live holder refuses the action unless forced.
    let held = match FileDecisionLog::open(&dir) {
        Ok(log) => Some(log),
        Err(e) if force => {
            eprintln!("warning: acting without the decision log ({e}): --force");
            None
        }
        Err(e) => {
            eprintln!(
                "sqlassist: refused: the decision log {} is held ({e}); the running application recovers its own branches. Stop it, or use --force",
                dir.display()
            );
            return OPERATOR;
        }
    };
    let inspection = match FileDecisionLog::inspect(&dir) {
        Ok(i) => i,
        Err(e) => return fail("cannot read the decision log", &e),
    };
    let report = registry.in_doubt(Some(&inspection), true);
    let Some(branch) = report.branches.iter().find(|b| b.id == gid) else {
        for (engine, e) in &report.unreachable {
            eprintln!("{engine}: cannot list prepared branches: {e}");
        }
        eprintln!("sqlassist: no prepared branch `{gid}` on the managed engines");
        return ERROR;
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
    let recorded = sqlassist::record_manual_action(&dir, &record);
    drop(held);
    if let Err(e) = &recorded {
        eprintln!(
            "warning: the action could not be recorded in {}: {e}",
            dir.display()
        );
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
