//! Recovery: finishing the prepared branches a crash or a lost connection left behind.
//!
//! A pass, per managed engine, in this order: list our prepared branches; THEN snapshot
//! this process's in-flight transactions ([`transaction::in_flight`]); THEN snapshot the
//! durable open decisions. A branch whose transaction is in flight is left to its commit;
//! one with a decision is committed; one of ours with neither is rolled back (presumed
//! abort), unless the log refuses presumed aborts. A listed branch was prepared before the
//! listing, so its transaction entered the in-flight set before it; if it left the set
//! before the snapshot, its decision (if any) was durable before that, so it is in the
//! decision snapshot. A branch prepared after the listing is caught by the next pass.
//!
//! The durable decisions are the file log's and those carried by managed SQLite writers'
//! own commits (rows of their `sqlassist_decision` tables). A decision is forgotten (its
//! END written, its rows deleted) only if it was already durable before the listing: its
//! branches were all prepared before the decision, so a branch still prepared is in the
//! listing. A decision made after the listing may have a branch the listing missed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use transaction::{DecisionLog, DecisionRecord, SharedDecisionLog, TransactionId};

use crate::backend::{dispatch, Protocol};
use crate::branch::{BranchId, Finished, Identity, NodeId, Owner, PreparedBranch, XA_FORMAT_ID};
use crate::engine::Engine;
use crate::error::Error;
use crate::presence::Presence;

/// What a recovery pass did to (or saw of) one prepared branch.
///
/// # Examples
///
/// ```
/// use sqlassist::{Finished, RecoveryAction};
///
/// let done = RecoveryAction::Committed(Finished::Done);
/// assert_eq!(done.to_string(), "committed");
/// assert_eq!(RecoveryAction::RolledBack(Finished::Absent).to_string(), "rolled back (already gone)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryAction {
    /// A durable commit decision exists: the branch was committed (`Absent`: it was gone
    /// already, which counts as done).
    Committed(Finished),
    /// Ours, undecided and not in flight: rolled back (presumed abort).
    RolledBack(Finished),
    /// Its transaction is still being committed by this process: left alone.
    InFlight,
    /// Ours and undecided, but the decision log refuses presumed-abort rollbacks (it found
    /// corruption an operator has not accepted): left prepared.
    Undecided,
    /// A branch id of another node: reported, left alone.
    OtherNode,
    /// A branch id that is not ours at all: reported, left alone.
    Foreign,
    /// Our prefix, but a field does not parse: reported, never touched.
    Malformed,
    /// Committing or rolling back failed; the next pass tries again (see the error).
    Failed,
}

impl fmt::Display for RecoveryAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gone = |done: &Finished| match done {
            Finished::Absent => " (already gone)",
            _ => "",
        };
        match self {
            Self::Committed(d) => write!(f, "committed{}", gone(d)),
            Self::RolledBack(d) => write!(f, "rolled back{}", gone(d)),
            Self::InFlight => f.write_str("in flight, skipped"),
            Self::Undecided => f.write_str("undecided, kept (presumed abort refused)"),
            Self::OtherNode => f.write_str("another node's, left alone"),
            Self::Foreign => f.write_str("foreign, left alone"),
            Self::Malformed => f.write_str("malformed, left alone"),
            Self::Failed => f.write_str("failed, retried next pass"),
        }
    }
}

/// One prepared branch a pass saw.
#[derive(Debug)]
#[non_exhaustive]
pub struct RecoveredBranch {
    /// The engine's name.
    pub engine: String,
    /// The branch id as the database lists it.
    pub id: String,
    /// What was done.
    pub action: RecoveryAction,
    /// The error, for [`RecoveryAction::Failed`].
    pub error: Option<Error>,
    /// The parsed id, for a branch of ours.
    parsed: Option<BranchId>,
}

impl RecoveredBranch {
    /// The parsed branch id, when the branch is ours.
    ///
    /// # Examples
    ///
    /// ```
    /// fn ours(report: &sqlassist::RecoveryReport) -> usize {
    ///     report.branches.iter().filter(|b| b.branch_id().is_some()).count()
    /// }
    /// assert_eq!(ours(&sqlassist::RecoveryReport::default()), 0);
    /// ```
    pub fn branch_id(&self) -> Option<&BranchId> {
        self.parsed.as_ref()
    }
}

/// What one recovery pass did: see [`Registry::recover`](crate::Registry::recover).
///
/// # Examples
///
/// ```
/// use sqlassist::{RecoveryAction, RecoveryReport};
///
/// let report = RecoveryReport::default();
/// assert!(report.is_clean());
/// assert_eq!(report.ids(RecoveryAction::InFlight).count(), 0);
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Every prepared branch listed, with what was done to it.
    pub branches: Vec<RecoveredBranch>,
    /// Engines whose branches could not be listed, with the error; retried later.
    pub unreachable: Vec<(String, Error)>,
    /// Decisions whose every branch is finished, closed with an END record.
    pub forgotten: Vec<TransactionId>,
}

impl RecoveryReport {
    /// The ids of the branches given `action`.
    ///
    /// # Examples
    ///
    /// ```
    /// let report = sqlassist::RecoveryReport::default();
    /// assert!(report.ids(sqlassist::RecoveryAction::Foreign).next().is_none());
    /// ```
    pub fn ids(&self, action: RecoveryAction) -> impl Iterator<Item = &str> + '_ {
        self.branches
            .iter()
            .filter(move |b| b.action == action)
            .map(|b| b.id.as_str())
    }

    /// Whether the pass reached every engine and left none of our branches prepared
    /// (other nodes' and foreign branches do not count; in-flight ones do).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(sqlassist::RecoveryReport::default().is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        self.unreachable.is_empty()
            && self.branches.iter().all(|b| {
                matches!(
                    b.action,
                    RecoveryAction::Committed(_)
                        | RecoveryAction::RolledBack(_)
                        | RecoveryAction::OtherNode
                        | RecoveryAction::Foreign
                )
            })
    }
}

/// A step run on each engine (its name, the engine).
pub(crate) type EngineStep<T> = Arc<dyn Fn(&str, &Engine) -> crate::Result<T> + Send + Sync>;

/// `f` on every engine in parallel (a slow engine delays no other). With a `limit`, an
/// engine that has not answered by then gets an [`Error::Connect`]: its call goes on in
/// the background and its answer is dropped.
pub(crate) fn on_each<T: Send + 'static>(
    engines: &[(String, Engine)],
    limit: Option<Duration>,
    f: EngineStep<T>,
) -> Vec<crate::Result<T>> {
    let Some(limit) = limit else {
        return std::thread::scope(|s| {
            let handles: Vec<_> = engines
                .iter()
                .map(|(name, engine)| {
                    let f = &f;
                    s.spawn(move || f(name, engine))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a recovery step does not panic"))
                .collect()
        });
    };
    let deadline = Instant::now() + limit;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut results: Vec<Option<crate::Result<T>>> = engines.iter().map(|_| None).collect();
    for (i, (name, engine)) in engines.iter().enumerate() {
        let (tx, f, name, engine) = (tx.clone(), f.clone(), name.clone(), engine.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("sqlassist-recover-{name}"))
            .spawn(move || {
                // The receiver is gone once the pass has moved on: nothing to do then.
                let _ = tx.send((i, f(&name, &engine)));
            });
        if let Err(e) = spawned {
            results[i] = Some(Err(Error::RecoveryThread { source: e }));
        }
    }
    drop(tx);
    while results.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, result)) => results[i] = Some(result),
            Err(_) => break,
        }
    }
    results
        .into_iter()
        .zip(engines)
        .map(|(result, (_, engine))| {
            result.unwrap_or_else(|| {
                Err(Error::Connect {
                    url: engine.url().redacted().to_owned(),
                    reason: format!(
                        "no answer within {} ms; left to the periodic recovery passes",
                        limit.as_millis()
                    ),
                })
            })
        })
        .collect()
}

/// Every engine's prepared branches, once this registry holds the engine's presence lock
/// (see [`on_each`] for `limit`).
fn list(
    engines: &[(String, Engine)],
    identity: &Identity,
    presence: &Arc<Presence>,
    limit: Option<Duration>,
) -> Vec<crate::Result<Vec<PreparedBranch>>> {
    let (node, presence) = (identity.node.clone(), presence.clone());
    on_each(
        engines,
        limit,
        Arc::new(move |name: &str, engine: &Engine| {
            presence.ensure(name, engine, &node)?;
            engine.prepared_branches(&node)
        }),
    )
}

/// What a recovery pass reports while it runs, to show progress over many branches
/// ([`Registry::recover_with_progress`](crate::Registry::recover_with_progress)).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RecoveryProgress<'a> {
    /// An engine's prepared branches were listed; acting on them follows.
    Listed {
        /// The engine's name.
        engine: &'a str,
        /// How many prepared branches it holds (every owner's).
        branches: usize,
    },
    /// One branch was acted on (or left alone), as the report will say.
    Branch(&'a RecoveredBranch),
}

/// The progress callback of a pass (the no-op one when nobody watches).
pub(crate) type Progress<'a> = &'a (dyn Fn(RecoveryProgress<'_>) + Sync);

/// A progress callback that ignores everything.
pub(crate) fn no_progress(_: RecoveryProgress<'_>) {}

/// One pass over `engines` (name, engine), deciding from `log`. `complete` says whether
/// `engines` are all the managed engines (a periodic pass skips engines in backoff): only
/// a complete pass may forget a decision. With `limit`, an engine whose branches are not
/// listed within it is reported unreachable (see [`list`]). `taken` are the nodes taken
/// over in this step, with their open decisions; `settled`, the nodes whose takeover
/// ended, with their last incarnation.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pass(
    engines: &[(String, Engine)],
    complete: bool,
    identity: &Identity,
    log: &(dyn DecisionLog + Send + Sync),
    taken: &[(NodeId, Vec<DecisionRecord>)],
    settled: &[(NodeId, u32)],
    presence: &Arc<Presence>,
    limit: Option<Duration>,
    progress: Progress<'_>,
) -> RecoveryReport {
    let mut report = RecoveryReport::default();
    let carriers: Vec<&(String, Engine)> = engines
        .iter()
        .filter(|(_, e)| e.carries_decisions())
        .collect();

    // 0. The decisions durable before the listing: only they may be forgotten below.
    let durable_before: BTreeSet<TransactionId> = log
        .open_decisions()
        .unwrap_or_default()
        .into_iter()
        .chain(
            carriers
                .iter()
                .filter_map(|(_, e)| e.carried_decisions().ok())
                .flatten(),
        )
        .map(|d| d.transaction)
        .collect();

    // 1. P: every engine's prepared branches.
    let listed: Vec<(&str, &Engine, crate::Result<Vec<PreparedBranch>>)> = engines
        .iter()
        .zip(list(engines, identity, presence, limit))
        .map(|((name, engine), result)| (name.as_str(), engine, result))
        .collect();
    // 2. A: after P.
    let active: BTreeSet<TransactionId> = transaction::in_flight().into_iter().collect();
    let in_flight: BTreeSet<u64> = active.iter().map(|t| t.sequence()).collect();
    // 3. D: after A: the log's decisions and those the carriers' commits hold. A carrier
    //    that cannot be read may hold a decision: nothing is presumed aborted this pass.
    let mut presume_abort = log.may_presume_abort();
    let decisions = match log.open_decisions() {
        Ok(d) => d,
        Err(source) => {
            tracing::warn!(error = %source, "recovery could not read the decision log; no branch is rolled back this pass");
            presume_abort = false;
            report.unreachable.push((
                "decision log".to_owned(),
                Error::DecisionLogUnavailable { source },
            ));
            Vec::new()
        }
    };
    let mut carried: Vec<(&str, &Engine, Vec<DecisionRecord>)> = Vec::new();
    for (name, engine) in &carriers {
        match engine.carried_decisions() {
            Ok(d) => carried.push((name.as_str(), engine, d)),
            Err(e) => {
                tracing::warn!(engine = name.as_str(), error = %e, "recovery could not read the decisions this engine carried; no branch is rolled back this pass");
                presume_abort = false;
                report.unreachable.push((name.clone(), e));
            }
        }
    }
    // The nodes whose branches this pass settles: those taken over now (any incarnation),
    // and those whose takeover ended (their incarnations up to the settled one: a branch
    // one of them prepared after the takeover listed its branches has no decision).
    let taken_nodes: BTreeMap<&NodeId, Option<u32>> = settled
        .iter()
        .map(|(n, incarnation)| (n, Some(*incarnation)))
        .chain(taken.iter().map(|(n, _)| (n, None)))
        .collect();
    let decided: BTreeMap<BranchId, TransactionId> = decisions
        .iter()
        .chain(carried.iter().flat_map(|(_, _, d)| d))
        .chain(taken.iter().flat_map(|(_, d)| d))
        .flat_map(|d| {
            d.branches
                .iter()
                .filter_map(|b| b.branch_id.as_deref().and_then(recorded_branch_id))
                .map(|id| (id, d.transaction))
        })
        .collect();

    // 4. Act, engine by engine in parallel.
    let mut reachable = Vec::new();
    for (name, engine, branches) in listed {
        match branches {
            Ok(branches) => {
                progress(RecoveryProgress::Listed {
                    engine: name,
                    branches: branches.len(),
                });
                reachable.push((name, engine, branches));
            }
            Err(e) => {
                tracing::warn!(engine = name, error = %e, "recovery could not list prepared branches; retrying later");
                report.unreachable.push((name.to_owned(), e));
            }
        }
    }
    let acted: Vec<Vec<RecoveredBranch>> = std::thread::scope(|s| {
        let handles: Vec<_> = reachable
            .iter()
            .map(|(name, engine, branches)| {
                let (in_flight, decided, taken) = (&in_flight, &decided, &taken_nodes);
                s.spawn(move || {
                    branches
                        .iter()
                        .map(|b| {
                            let acted = act(
                                name,
                                engine,
                                b,
                                identity,
                                (in_flight, decided, taken),
                                presume_abort,
                            );
                            progress(RecoveryProgress::Branch(&acted));
                            acted
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .expect("finishing prepared branches does not panic")
            })
            .collect()
    });
    report.branches = acted.into_iter().flatten().collect();

    // 5. END for decisions whose every branch is finished: only when every engine was
    //    listed (a branch on an unreachable engine may still be prepared), and never for a
    //    transaction still in flight (its own commit forgets it).
    if complete && report.unreachable.is_empty() {
        let still_prepared: BTreeSet<&BranchId> = report
            .branches
            .iter()
            .filter(|b| {
                !matches!(
                    b.action,
                    RecoveryAction::Committed(_) | RecoveryAction::RolledBack(_)
                )
            })
            .filter_map(|b| b.parsed.as_ref())
            .collect();
        let finished = |d: &DecisionRecord| {
            durable_before.contains(&d.transaction)
                && !active.contains(&d.transaction)
                && !d.branches.iter().any(|b| {
                    match b.branch_id.as_deref().map(recorded_branch_id) {
                        Some(Some(id)) => still_prepared.contains(&id),
                        // An id recovery cannot read: keep the decision for an operator.
                        _ => true,
                    }
                })
        };
        for (name, engine, carried) in &carried {
            let done: Vec<TransactionId> = carried
                .iter()
                .filter(|d| finished(d))
                .map(|d| d.transaction)
                .collect();
            match engine.forget_carried(&done) {
                Ok(()) => {
                    for txn in done {
                        tracing::info!(engine = name, transaction = %txn, "recovery finished every branch of a carried decision: removed");
                        report.forgotten.push(txn);
                    }
                }
                Err(e) => {
                    tracing::warn!(engine = name, error = %e, "recovery could not remove finished carried decisions");
                }
            }
        }
        for d in &decisions {
            if !finished(d) {
                continue;
            }
            match log.forget(d.transaction) {
                Ok(()) => {
                    tracing::info!(transaction = %d.transaction, "recovery finished every branch of a decision: forgotten");
                    report.forgotten.push(d.transaction);
                }
                Err(e) => {
                    tracing::warn!(transaction = %d.transaction, error = %e, "recovery could not forget a finished decision");
                }
            }
        }
    }
    report
}

/// The database decision log whose expired nodes a recovery step takes over (feature
/// `postgres`; without it there is none).
#[cfg(feature = "postgres")]
pub(crate) type TakeoverLog = Arc<crate::DatabaseDecisionLog>;
/// The database decision log whose expired nodes a recovery step takes over (feature
/// `postgres`; without it there is none).
#[cfg(not(feature = "postgres"))]
pub(crate) type TakeoverLog = std::convert::Infallible;

/// One recovery step, the same for [`Registry::recover`](crate::Registry::recover) and
/// the periodic passes: with a database log, first takes over every node whose lease
/// expired (one winner per node); then a [`pass`] over `engines` that settles their
/// branches too; then, when the pass was `complete` and reached every engine, ends the
/// takeover of each taken node none of whose branches is left prepared (its decisions
/// deleted, its row marked settled). A takeover not ended is taken again by the next step.
#[allow(clippy::too_many_arguments)]
pub(crate) fn recover_once(
    engines: &[(String, Engine)],
    complete: bool,
    identity: &Identity,
    log: &(dyn DecisionLog + Send + Sync),
    takeover: Option<&TakeoverLog>,
    presence: &Arc<Presence>,
    limit: Option<Duration>,
    progress: Progress<'_>,
) -> RecoveryReport {
    #[cfg(feature = "postgres")]
    let taken = match takeover {
        Some(db) => db.take_over_expired().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not take over expired nodes; retrying next pass");
            Vec::new()
        }),
        None => Vec::new(),
    };
    #[cfg(feature = "postgres")]
    let settled = match takeover {
        Some(db) => db.settled_nodes().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read the settled nodes; retrying next pass");
            Vec::new()
        }),
        None => Vec::new(),
    };
    #[cfg(not(feature = "postgres"))]
    let (taken, settled) = {
        let _ = takeover;
        (Vec::new(), Vec::new())
    };
    let report = pass(
        engines, complete, identity, log, &taken, &settled, presence, limit, progress,
    );
    #[cfg(feature = "postgres")]
    if let Some(db) = takeover {
        // The decisions the pass forgot are deleted now, not with a later batch.
        if let Err(e) = db.delete_forgotten() {
            tracing::warn!(error = %e, "could not delete forgotten decisions; the next pass does");
        }
        if complete && report.unreachable.is_empty() {
            for (node, _) in &taken {
                let left = report.branches.iter().any(|b| {
                    b.branch_id().is_some_and(|id| id.node() == node)
                        && !matches!(
                            b.action,
                            RecoveryAction::Committed(_) | RecoveryAction::RolledBack(_)
                        )
                });
                if !left {
                    if let Err(e) = db.finish_takeover(node) {
                        tracing::warn!(node = %node, error = %e, "could not end a takeover; retrying next pass");
                    }
                }
            }
        }
    }
    report
}

/// The branch id a decision record holds, as the session reported it: a PostgreSQL gid
/// (`sqlassist_…`) or a MariaDB/MySQL xid in SQL (`'<gtrid>','<engine>'`). A listed XA
/// branch is named differently (`XA RECOVER CONVERT XID` gives hex), so decisions and
/// listed branches are matched by the parsed id, never by text.
pub(crate) fn recorded_branch_id(recorded: &str) -> Option<BranchId> {
    match recorded
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .and_then(|r| r.split_once("','"))
    {
        Some((gtrid, bqual)) => {
            BranchId::parse_xa(XA_FORMAT_ID, gtrid.as_bytes(), bqual.as_bytes()).ok()
        }
        None => BranchId::parse(recorded).ok(),
    }
}

/// What a pass knows when it acts: this process's in-flight sequences, the decided
/// branches, the nodes taken over.
type Known<'a> = (
    &'a BTreeSet<u64>,
    &'a BTreeMap<BranchId, TransactionId>,
    &'a BTreeMap<&'a NodeId, Option<u32>>,
);

/// Whether `b` belongs to a node this pass settles (see [`pass`]).
fn is_taken(taken: &BTreeMap<&NodeId, Option<u32>>, b: &BranchId) -> bool {
    taken
        .get(b.node())
        .is_some_and(|upto| upto.is_none_or(|last| b.incarnation() <= last))
}

fn act(
    engine_name: &str,
    engine: &Engine,
    branch: &PreparedBranch,
    identity: &Identity,
    (in_flight, decided, taken): Known<'_>,
    presume_abort: bool,
) -> RecoveredBranch {
    let id = branch.id();
    let parsed = match branch.owner() {
        Owner::Ours(b) => Some(b.clone()),
        Owner::OtherNode(b) if is_taken(taken, b) => Some(b.clone()),
        _ => None,
    };
    let done = |action: RecoveryAction, error: Option<Error>| RecoveredBranch {
        engine: engine_name.to_owned(),
        id: id.to_owned(),
        parsed: parsed.clone(),
        action,
        error,
    };
    let finish = |commit: bool| {
        let outcome = if commit {
            engine.commit_prepared(branch)
        } else {
            engine.rollback_prepared(branch)
        };
        match outcome {
            Ok(f) => {
                let action = if commit {
                    RecoveryAction::Committed(f)
                } else {
                    RecoveryAction::RolledBack(f)
                };
                tracing::info!(engine = engine_name, branch = id, action = %action, "recovery finished a prepared branch");
                transaction::crash_point("recovery_mid_pass");
                done(action, None)
            }
            Err(e) => {
                tracing::warn!(engine = engine_name, branch = id, commit, error = %e, "recovery could not finish a prepared branch; retrying next pass");
                done(RecoveryAction::Failed, Some(e))
            }
        }
    };
    let action = match branch.owner() {
        Owner::Ours(b) => {
            if b.incarnation() == identity.incarnation && in_flight.contains(&b.sequence()) {
                RecoveryAction::InFlight
            } else if decided.contains_key(b) {
                return finish(true);
            } else if presume_abort {
                return finish(false);
            } else {
                RecoveryAction::Undecided
            }
        }
        // A node this one took over, or whose takeover ended: its branches are settled
        // like a dead incarnation's.
        Owner::OtherNode(b) if is_taken(taken, b) => {
            if decided.contains_key(b) {
                return finish(true);
            } else if presume_abort {
                return finish(false);
            } else {
                RecoveryAction::Undecided
            }
        }
        Owner::OtherNode(_) => RecoveryAction::OtherNode,
        Owner::Malformed { .. } => RecoveryAction::Malformed,
        _ => RecoveryAction::Foreign,
    };
    tracing::info!(engine = engine_name, branch = id, action = %action, "recovery left a prepared branch alone");
    done(action, None)
}

impl Engine {
    /// Whether this engine's commits carry commit decisions: a SQLite writer, which
    /// commits last in a transaction over several databases and writes the decision into
    /// its own `sqlassist_decision` table inside that commit (when its session is managed
    /// and a decision log is kept).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// assert!(engine.carries_decisions());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn carries_decisions(&self) -> bool {
        dispatch!(self, B => B::CARRIES_DECISION) && !self.is_read_only()
    }

    /// The commit decisions this engine's own commits carried and recovery has not yet
    /// removed (see [`carries_decisions`](Self::carries_decisions)): recovery commits the
    /// prepared branches they list, like the decision log's. Empty for an engine that
    /// carries none.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] or [`Error::Database`] when the database cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// assert!(engine.carried_decisions()?.is_empty());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn carried_decisions(&self) -> crate::Result<Vec<DecisionRecord>> {
        if !self.carries_decisions() {
            return Ok(Vec::new());
        }
        let mut conn = self.checkout()?;
        dispatch!(conn, B => B::carried_decisions(&mut conn))
            .map_err(|e| self.database_error(&mut conn, e))
    }

    /// Removes the carried decisions of `txns` (their every branch is finished).
    pub(crate) fn forget_carried(&self, txns: &[TransactionId]) -> crate::Result<()> {
        if txns.is_empty() {
            return Ok(());
        }
        let mut conn = self.checkout()?;
        dispatch!(conn, B => B::forget_carried(&mut conn, txns))
            .map_err(|e| self.database_error(&mut conn, e))
    }
}

/// The longest wait before an unreachable engine is tried again by the periodic passes.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The managed engines periodic passes cover; the registry adds engines registered later.
pub(crate) type SharedEngines = Arc<Mutex<Vec<(String, Engine)>>>;

/// The periodic recovery passes of a registry, on a thread that stops when this is dropped.
pub(crate) struct RecoveryThread {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl fmt::Debug for RecoveryThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryThread").finish_non_exhaustive()
    }
}

/// `interval` scaled by a factor in [0.8, 1.2), so that processes started together do not
/// recover in step.
fn jittered(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // A cheap mix of the clock's low bits; no cryptographic quality is needed.
    let mixed = u64::from(nanos).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    let fraction = f64::from(u32::try_from(mixed & 0xff_ffff).unwrap_or(0)) / f64::from(1u32 << 24);
    interval.mul_f64(0.8 + 0.4 * fraction)
}

impl RecoveryThread {
    /// Starts passes every `interval` (jittered by +-20%) over `engines` (as they are at
    /// each pass), each a [`recover_once`] (taking over expired nodes of `takeover`'s
    /// database as [`Registry::recover`](crate::Registry::recover) does); an engine that could not be listed is skipped for an exponentially
    /// growing time (capped at 5 min).
    pub(crate) fn start(
        engines: SharedEngines,
        identity: Arc<Identity>,
        log: SharedDecisionLog,
        takeover: Option<TakeoverLog>,
        presence: Arc<Presence>,
        interval: Duration,
    ) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopped = stop.clone();
        let handle = std::thread::Builder::new()
            .name("sqlassist-recovery".to_owned())
            .spawn(move || {
                let mut backoff: BTreeMap<String, (u32, Instant)> = BTreeMap::new();
                loop {
                    {
                        let (lock, wake) = &*stopped;
                        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                        let (guard, _) = wake
                            .wait_timeout_while(guard, jittered(interval), |stop| !*stop)
                            .unwrap_or_else(|p| p.into_inner());
                        if *guard {
                            return;
                        }
                    }
                    let now = Instant::now();
                    let engines = engines.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let due: Vec<(String, Engine)> = engines
                        .iter()
                        .filter(|(name, _)| backoff.get(name).is_none_or(|(_, at)| *at <= now))
                        .cloned()
                        .collect();
                    let report = recover_once(
                        &due,
                        due.len() == engines.len(),
                        &identity,
                        &*log,
                        takeover.as_ref(),
                        &presence,
                        None,
                        &no_progress,
                    );
                    for (name, _) in &due {
                        if !report.unreachable.iter().any(|(n, _)| n == name) {
                            backoff.remove(name);
                            continue;
                        }
                        let failures = backoff.get(name).map_or(0, |(n, _)| *n) + 1;
                        let wait = interval
                            .saturating_mul(1 << failures.min(10))
                            .min(MAX_BACKOFF);
                        backoff.insert(name.clone(), (failures, Instant::now() + wait));
                    }
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for RecoveryThread {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(handle) = self.handle.take() {
            if handle.join().is_err() {
                tracing::error!("the recovery thread panicked");
            }
        }
    }
}
