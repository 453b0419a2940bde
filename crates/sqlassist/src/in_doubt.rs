//! In-doubt branches as an operator sees them: every prepared branch on the managed
//! engines, what the decision log says about it, and what a recovery pass would do, read
//! without acting and without the log's lock (the running application keeps it).

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use diesel::QueryableByName;
#[cfg(feature = "postgres")]
use diesel::RunQueryDsl;
use transaction::LogInspection;

use crate::branch::{BranchId, Owner, PreparedBranch};
use crate::engine::Engine;
use crate::error::Error;
use crate::registry::Registry;

/// What the decision log says about a prepared branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoggedDecision {
    /// A commit decision names the branch: it must be committed.
    CommitLogged,
    /// Ours, and no decision names it: it was never decided (presumed abort).
    None,
    /// Another node's branch (its own recovery decides it).
    OtherNode,
    /// Not a sqlassist branch id at all.
    Foreign,
    /// Looks like a sqlassist id but does not parse.
    Unparseable,
}

impl LoggedDecision {
    /// The word the `sqlassist` command prints (`commit logged`, `none`, `foreign`,
    /// `other node`, `unparseable`).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(sqlassist::LoggedDecision::CommitLogged.as_str(), "commit logged");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::CommitLogged => "commit logged",
            Self::None => "none",
            Self::OtherNode => "other node",
            Self::Foreign => "foreign",
            Self::Unparseable => "unparseable",
        }
    }
}

impl fmt::Display for LoggedDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a recovery pass of the branch's node would do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PlannedAction {
    /// Commit it (a decision is logged).
    Commit,
    /// Roll it back (ours, undecided, and the log allows presumed abort), unless its
    /// transaction is still in flight in the running application.
    Rollback,
    /// Keep it: undecided, and the log refuses presumed aborts (damaged records).
    KeepUndecided,
    /// Leave it to another node or to an operator.
    LeaveAlone,
}

impl PlannedAction {
    /// The words the `sqlassist` command prints.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(sqlassist::PlannedAction::Commit.as_str(), "commit");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Rollback => "rollback",
            Self::KeepUndecided => "keep (undecided, presumed abort refused)",
            Self::LeaveAlone => "leave alone",
        }
    }
}

impl fmt::Display for PlannedAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The lease of a node in the database decision log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeLease {
    /// A process holds the node and renews its lease: it recovers its own branches.
    Live,
    /// The lease ended (the process stopped or died): the next recovery pass of another
    /// node sharing the log takes the node over.
    Expired,
    /// Node `by` took it over to settle its branches; `live` while that takeover is
    /// fresh (after it, another node's pass may take it over again).
    TakenOver {
        /// The node that took it over.
        by: String,
        /// Whether the takeover's lease is still running.
        live: bool,
    },
    /// Taken over and every branch settled: no pass takes it again.
    Settled,
}

impl fmt::Display for NodeLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Live => f.pad("live"),
            Self::Expired => f.pad("expired"),
            Self::TakenOver { by, live: true } => f.pad(&format!("taken over by {by}")),
            Self::TakenOver { by, live: false } => f.pad(&format!("taken over by {by} (expired)")),
            Self::Settled => f.pad("settled"),
        }
    }
}

/// One prepared branch on one engine.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InDoubtBranch {
    /// The engine's name.
    pub engine: String,
    /// The branch as the server lists it (a PostgreSQL gid, a MariaDB/MySQL xid).
    pub id: String,
    /// The parsed sqlassist branch id (ours or another node's).
    pub branch: Option<BranchId>,
    /// How long ago it was prepared (PostgreSQL's `prepared`; MariaDB/MySQL keep no time).
    pub age: Option<Duration>,
    /// What the decision log says.
    pub decision: LoggedDecision,
    /// What a recovery pass would do.
    pub action: PlannedAction,
    /// The lease of the branch's node, with a database decision log (`None` with a file
    /// log, or for a node that never claimed one).
    pub lease: Option<NodeLease>,
    pub(crate) listed: PreparedBranch,
}

/// Every prepared branch of the managed engines, and the engines that could not be listed.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct InDoubtReport {
    /// The branches, engine by engine.
    pub branches: Vec<InDoubtBranch>,
    /// Engines whose branches could not be listed, with the error.
    pub unreachable: Vec<(String, Error)>,
}

#[derive(QueryableByName)]
struct Age {
    #[diesel(sql_type = diesel::sql_types::Text)]
    gid: String,
    #[diesel(sql_type = diesel::sql_types::Double)]
    seconds: f64,
}

/// The branch ids the decisions name.
fn decided_branches<'a>(
    decisions: impl Iterator<Item = &'a transaction::DecisionRecord>,
) -> BTreeSet<BranchId> {
    decisions
        .flat_map(|d| d.branches.iter())
        .filter_map(|b| {
            b.branch_id
                .as_deref()
                .and_then(crate::recovery::recorded_branch_id)
        })
        .collect()
}

/// The ages of an engine's prepared transactions (PostgreSQL only).
fn ages(engine: &Engine) -> Vec<(String, Duration)> {
    let Ok(mut conn) = engine.checkout() else {
        return Vec::new();
    };
    #[allow(irrefutable_let_patterns)]
    let listed: Vec<Age> = match &mut conn {
        #[cfg(feature = "postgres")]
        crate::conn::Conn::Pg(c) => diesel::sql_query(
            "SELECT gid, CAST(EXTRACT(EPOCH FROM now() - prepared) AS float8) AS seconds \
             FROM pg_prepared_xacts WHERE database = current_database()",
        )
        .load::<Age>(&mut ****c)
        .unwrap_or_default(),
        #[allow(unreachable_patterns)]
        _ => Vec::new(),
    };
    listed
        .into_iter()
        .map(|a| (a.gid, Duration::from_secs_f64(a.seconds.max(0.0))))
        .collect()
}

impl Registry {
    /// Lists the prepared branches of every managed engine (this registry's node's only,
    /// unless `all`: then other nodes' and foreign ones too) with what `log` (the decision
    /// log read with [`transaction::FileDecisionLog::inspect`], which needs no lock) says
    /// about each and what a recovery pass of this registry's node would do. Acts on
    /// nothing. Without a log, no branch counts as decided.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let settings = Settings::from_pairs([("sqlalchemy_main.url", "sqlite://"), ("sqlalchemy_main.managed", "true")]);
    /// let registry = Registry::from_settings_inert(&settings, &[])?;
    /// let report = registry.in_doubt(None, false);
    /// assert!(report.branches.is_empty() && report.unreachable.is_empty());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn in_doubt(&self, log: Option<&LogInspection>, all: bool) -> InDoubtReport {
        let decided = decided_branches(log.map(|l| l.open_decisions.iter()).into_iter().flatten());
        let presume_abort = log.is_some_and(|l| l.corruption.is_empty());
        self.in_doubt_with(&decided, presume_abort, |_| None, |_| false, all)
    }

    /// Like [`in_doubt`](Self::in_doubt), with the database decision log read by
    /// [`DatabaseDecisionLog::inspect`](crate::DatabaseDecisionLog::inspect): the
    /// decisions of every node, each branch's node lease, and the actions of a pass of
    /// this registry's node, which also takes over the nodes whose lease ended (their
    /// branches are committed where a decision names them, else rolled back).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseLogInspection, Registry, Settings};
    ///
    /// let settings = Settings::from_pairs([("sqlalchemy_main.url", "sqlite://"), ("sqlalchemy_main.managed", "true")]);
    /// let registry = Registry::from_settings_inert(&settings, &[])?;
    /// let report = registry.in_doubt_database(&DatabaseLogInspection::default(), true);
    /// assert!(report.branches.is_empty());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    #[cfg(feature = "postgres")]
    pub fn in_doubt_database(
        &self,
        log: &crate::DatabaseLogInspection,
        all: bool,
    ) -> InDoubtReport {
        let decided = decided_branches(log.decisions.iter().map(|(_, d)| d));
        let me = self.node_id();
        self.in_doubt_with(
            &decided,
            true,
            |node| log.node(node.as_str()).map(|n| n.lease.clone()),
            |branch| log.is_takeable_by(branch, me),
            all,
        )
    }

    fn in_doubt_with(
        &self,
        decided: &BTreeSet<BranchId>,
        presume_abort: bool,
        lease: impl Fn(&crate::NodeId) -> Option<NodeLease>,
        takeable: impl Fn(&BranchId) -> bool,
        all: bool,
    ) -> InDoubtReport {
        let mut report = InDoubtReport::default();
        for (name, engine) in self.managed_engines() {
            let listed = match engine.prepared_branches(self.node_id()) {
                Ok(listed) => listed,
                Err(e) => {
                    report.unreachable.push((name, e));
                    continue;
                }
            };
            let ages = if listed.is_empty() {
                Vec::new()
            } else {
                ages(&engine)
            };
            for branch in listed {
                if !all && !matches!(branch.owner(), Owner::Ours(_)) {
                    continue;
                }
                let (parsed, decision, action) = match branch.owner() {
                    Owner::Ours(b) if decided.contains(b) => (
                        Some(b.clone()),
                        LoggedDecision::CommitLogged,
                        PlannedAction::Commit,
                    ),
                    Owner::Ours(b) => (
                        Some(b.clone()),
                        LoggedDecision::None,
                        if presume_abort {
                            PlannedAction::Rollback
                        } else {
                            PlannedAction::KeepUndecided
                        },
                    ),
                    // A node a pass of ours takes over: settled like our own.
                    Owner::OtherNode(b) if takeable(b) => {
                        if decided.contains(b) {
                            (
                                Some(b.clone()),
                                LoggedDecision::CommitLogged,
                                PlannedAction::Commit,
                            )
                        } else {
                            (
                                Some(b.clone()),
                                LoggedDecision::None,
                                PlannedAction::Rollback,
                            )
                        }
                    }
                    Owner::OtherNode(b) => (
                        Some(b.clone()),
                        if decided.contains(b) {
                            LoggedDecision::CommitLogged
                        } else {
                            LoggedDecision::OtherNode
                        },
                        PlannedAction::LeaveAlone,
                    ),
                    Owner::Malformed { .. } => {
                        (None, LoggedDecision::Unparseable, PlannedAction::LeaveAlone)
                    }
                    _ => (None, LoggedDecision::Foreign, PlannedAction::LeaveAlone),
                };
                let node_lease = parsed.as_ref().and_then(|p| lease(p.node()));
                report.branches.push(InDoubtBranch {
                    engine: name.clone(),
                    id: branch.id().to_owned(),
                    branch: parsed,
                    age: ages
                        .iter()
                        .find(|(gid, _)| gid == branch.id())
                        .map(|(_, age)| *age),
                    decision,
                    action,
                    lease: node_lease,
                    listed: branch,
                });
            }
        }
        report
    }

    /// Commits (`commit = true`) or rolls back one prepared branch found by
    /// [`in_doubt`](Self::in_doubt), by hand. The caller decides whether the action is
    /// allowed (the `sqlassist` command refuses a rollback where a commit is logged, and
    /// any action while the application holds the log, unless forced).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownEngine`] when the branch's engine is not registered; those of
    /// [`Engine::commit_prepared`] and [`Engine::rollback_prepared`].
    ///
    /// # Examples
    ///
    /// See the `sqlassist commit` and `sqlassist rollback` commands.
    pub fn finish_in_doubt(
        &self,
        branch: &InDoubtBranch,
        commit: bool,
    ) -> crate::Result<crate::Finished> {
        let engine = self.engine(&branch.engine)?;
        if commit {
            engine.commit_prepared(&branch.listed)
        } else {
            engine.rollback_prepared(&branch.listed)
        }
    }
}

/// A manual action on a prepared branch, as [`record_manual_action`] writes it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ManualAction<'a> {
    /// `commit` or `rollback`.
    pub action: &'a str,
    /// The engine's name.
    pub engine: &'a str,
    /// The branch as the server listed it.
    pub branch: &'a str,
    /// What the decision log said when the operator acted.
    pub decision: LoggedDecision,
    /// Whether a refusal was overridden.
    pub forced: bool,
    /// What happened (`done`, `absent`, `failed: ...`).
    pub outcome: String,
}

/// The file in a decision log directory that records manual actions, one line each.
pub const MANUAL_LOG_FILE: &str = "manual.log";

/// Appends one line for `record` to [`MANUAL_LOG_FILE`] in the decision log directory
/// `dir` and syncs it: `<unix seconds> action="commit" engine="..." branch="..."
/// decision="commit logged" forced=false outcome="done"` (values quoted as Rust string
/// literals). The file sits beside the log's segments and never needs the log's lock.
///
/// # Errors
///
/// The I/O error when the file cannot be opened, written or synced.
///
/// # Examples
///
/// ```
/// use sqlassist::{record_manual_action, LoggedDecision, ManualAction, MANUAL_LOG_FILE};
///
/// let dir = std::env::temp_dir().join(format!("sqlassist-doc-manual-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let mut action = ManualAction::new("rollback", "orders", "sqlassist_n1_1_7_orders");
/// action.decision = LoggedDecision::None;
/// action.outcome = "done".into();
/// record_manual_action(&dir, &action)?;
/// let text = std::fs::read_to_string(dir.join(MANUAL_LOG_FILE))?;
/// assert!(text.contains("action=\"rollback\" engine=\"orders\""));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn record_manual_action(
    dir: &std::path::Path,
    record: &ManualAction<'_>,
) -> std::io::Result<()> {
    use std::io::Write as _;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let line = format!(
        "{secs} action={:?} engine={:?} branch={:?} decision={:?} forced={} outcome={:?}\n",
        record.action,
        record.engine,
        record.branch,
        record.decision.as_str(),
        record.forced,
        record.outcome
    );
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(MANUAL_LOG_FILE))?;
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

impl<'a> ManualAction<'a> {
    /// A record of `action` on `branch` of `engine`; decision `none`, not forced,
    /// outcome empty until set.
    ///
    /// # Examples
    ///
    /// See [`record_manual_action`].
    pub fn new(action: &'a str, engine: &'a str, branch: &'a str) -> Self {
        Self {
            action,
            engine,
            branch,
            decision: LoggedDecision::None,
            forced: false,
            outcome: String::new(),
        }
    }
}
