//! A decision log in a PostgreSQL database, for processes without a durable disk of their
//! own (containers): the commit decisions live where any replica can read them.
//!
//! Two tables, created at start-up when missing:
//!
//! - `sqlassist_node (node, incarnation, lease_until, taken_over_by, host, pid)`: a node
//!   claims its id with a lease at start-up, bumping its incarnation; a live lease on the
//!   same id is an error ([`Error::NodeLeaseHeld`]); a thread renews the lease every third
//!   of its time to live, and a node whose last renewal is older than the time to live less
//!   a margin refuses to record decisions (so starts no commit it could not finish);
//! - `sqlassist_decision (node, incarnation, coordinator, sequence, decided_at, resources,
//!   branch_ids)`: one row per commit decision (presumed abort: only commits are logged),
//!   deleted once every branch is finished.
//!
//! The decision INSERT is fenced by the lease: it inserts only while the node row still has
//! this incarnation, no taker and a lease in the future, read `FOR KEY SHARE` so that a
//! takeover (`SELECT ... FOR UPDATE`, then `UPDATE ... SET taken_over_by`) serializes with
//! it: a decision commits before a takeover (the taker sees it) or not at all. A node
//! paused past its lease and taken over cannot write a decision afterwards: 0 rows
//! inserted, the commit aborts. A claim of the id by a new incarnation locks the row
//! `FOR UPDATE` first, so it also waits for a decision still in flight.
//!
//! The INSERT runs on its own connection as one autocommit statement (with
//! `synchronous_commit = on`, and `ON CONFLICT DO NOTHING`): when it gets no answer it is
//! run again until the server answers, and a row already there means the first one
//! committed. Carried by a participant's transaction instead, its COMMIT is the decision:
//! when that gets no answer, the outcome is read from the server (`pg_xact_status`). It is
//! never guessed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use transaction::{BoxError, Branch, DecisionLog, DecisionRecord, TransactionId};

use crate::branch::NodeId;
use crate::conn::Conn;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// `taken_over_by` of a node whose takeover finished: never a valid node id, so no
/// pass takes it again, and its zombies stay fenced (the fence wants `NULL`).
pub(crate) const SETTLED: &str = "settled!";

/// The default time to live of a node's lease.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

const CREATE_NODE_TABLE: &str = "CREATE TABLE IF NOT EXISTS sqlassist_node (\
    node text PRIMARY KEY, \
    incarnation bigint NOT NULL, \
    lease_until timestamptz NOT NULL, \
    taken_over_by text, \
    host text, \
    pid integer)";

const CREATE_DECISION_TABLE: &str = "CREATE TABLE IF NOT EXISTS sqlassist_decision (\
    node text NOT NULL, \
    incarnation bigint NOT NULL, \
    coordinator bigint NOT NULL, \
    sequence bigint NOT NULL, \
    decided_at timestamptz NOT NULL, \
    resources text[] NOT NULL, \
    branch_ids text[] NOT NULL, \
    PRIMARY KEY (node, incarnation, coordinator, sequence))";

/// The errors of the database decision log that the coordinator sees through
/// [`DecisionLog::record_commit`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatabaseLogError {
    /// The node's lease was not renewed in time (or was taken over): it records no
    /// decision, so it starts no commit it may not be able to finish.
    #[error("node `{node}` has no live lease in the decision log: it records no decision")]
    LeaseLost {
        /// The node id.
        node: String,
    },
    /// The log released its lease ([`DatabaseDecisionLog::release`], done by
    /// [`Registry::shutdown`](crate::Registry::shutdown)): it records no more decisions,
    /// and another process may run with this node id by now.
    #[error("node `{node}` released its lease in the decision log: it records no more decisions")]
    Released {
        /// The node id.
        node: String,
    },
    /// The fenced decision INSERT inserted nothing: another node took this node over.
    #[error(
        "node `{node}` was taken over (or its lease expired): its commit decision was refused"
    )]
    Fenced {
        /// The node id.
        node: String,
    },
    /// The decision's COMMIT got no answer and the server could not be asked since: the
    /// decision may or may not be durable; recovery decides.
    #[error("the commit of node `{node}`'s decision ({xid}) got no answer and the server could not be asked in time: its outcome is unknown, and recovery settles the prepared branches from the decision log")]
    OutcomeUnknown {
        /// The node id.
        node: String,
        /// Which commit: `log transaction <id>` (the log database's transaction that holds
        /// the decision), or `transaction <id>` (the coordinator's, when the decision's
        /// autocommit INSERT itself got no answer).
        xid: String,
        /// The last error.
        #[source]
        source: BoxError,
    },
    /// The log database failed.
    #[error("decision log database: {source}")]
    Database {
        /// The error.
        #[source]
        source: Error,
    },
}

#[derive(QueryableByName)]
struct Incarnation {
    #[diesel(sql_type = BigInt)]
    incarnation: i64,
}

#[derive(QueryableByName)]
struct Holder {
    #[diesel(sql_type = Nullable<Text>)]
    host: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    pid: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    taken_over_by: Option<String>,
}

#[derive(QueryableByName)]
struct Xid {
    #[diesel(sql_type = Text)]
    xid: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Whether the server answered `error` (the statement ran and failed, so its implicit
/// transaction rolled back), rather than the connection failing with the outcome unknown.
fn server_answered(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};
    matches!(
        error,
        DieselError::DatabaseError(kind, _)
            if !matches!(kind, DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand)
    )
}

#[derive(QueryableByName)]
struct XactStatus {
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
}

#[derive(QueryableByName)]
pub(crate) struct DecisionRow {
    #[diesel(sql_type = Text)]
    pub(crate) node: String,
    #[diesel(sql_type = BigInt)]
    coordinator: i64,
    #[diesel(sql_type = BigInt)]
    sequence: i64,
    #[diesel(sql_type = Array<Text>)]
    resources: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    branch_ids: Vec<String>,
}

impl DecisionRow {
    /// The decision this row records (an empty branch id is a branch without one).
    pub(crate) fn into_record(self) -> DecisionRecord {
        DecisionRecord {
            transaction: TransactionId::from_parts(
                from_stored(self.coordinator),
                from_stored(self.sequence),
            ),
            branches: self
                .resources
                .into_iter()
                .zip(self.branch_ids)
                .map(|(resource, id)| Branch {
                    resource,
                    branch_id: (!id.is_empty()).then_some(id),
                })
                .collect(),
        }
    }
}

fn as_stored(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

fn from_stored(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

pub(crate) fn pg(conn: &mut Conn) -> &mut PgConnection {
    #[allow(irrefutable_let_patterns, unreachable_patterns)]
    match conn {
        Conn::Pg(c) => c,
        _ => unreachable!("the decision log engine is checked to be PostgreSQL"),
    }
}

/// The lease state shared with the heartbeat thread.
#[derive(Debug)]
struct Lease {
    /// When the request of the last successful renewal was sent.
    renewed: Mutex<Instant>,
    /// Taken over, or released: never live again.
    lost: AtomicBool,
    /// Released: no decision is recorded or read any more.
    released: AtomicBool,
    stop: (Mutex<bool>, Condvar),
    /// Decisions whose branches are all finished, not yet deleted: (coordinator, sequence).
    finished: Mutex<Vec<(i64, i64)>>,
}

/// Finished decisions are deleted in batches of this many (and at every lease renewal,
/// and at release): a DELETE per commit would add a round trip to every commit's latency.
const FORGET_BATCH: usize = 64;

impl Lease {
    fn finished(&self) -> std::sync::MutexGuard<'_, Vec<(i64, i64)>> {
        self.finished.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Deletes the finished decisions `batch` of `node` in one statement, without waiting for
/// its flush: a DELETE lost in a crash is harmless (recovery deletes the rows again).
fn delete_finished(engine: &Engine, node: &NodeId, batch: &[(i64, i64)]) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let (coordinators, sequences): (Vec<i64>, Vec<i64>) = batch.iter().copied().unzip();
    let mut conn = engine.checkout()?;
    diesel::sql_query(
        "WITH lazy AS (SELECT set_config('synchronous_commit', 'off', true) AS s) \
         DELETE FROM sqlassist_decision d USING lazy \
         WHERE d.node = $1 AND lazy.s = 'off' \
           AND (d.coordinator, d.sequence) IN (SELECT * FROM unnest($2::bigint[], $3::bigint[]))",
    )
    .bind::<Text, _>(node.as_str())
    .bind::<Array<BigInt>, _>(&coordinators)
    .bind::<Array<BigInt>, _>(&sequences)
    .execute(pg(&mut conn))
    .map_err(|e| engine.database_error(&mut conn, e))?;
    Ok(())
}

/// A [`DecisionLog`] in a PostgreSQL database (see the module docs): for processes whose
/// local disk does not outlive them.
///
/// # Examples
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # {
/// use std::time::Duration;
/// use sqlassist::{DatabaseDecisionLog, DatabaseUrl, Engine, EngineOptions, NodeId};
///
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("postgresql://app@localhost/app")?))?;
/// let log = DatabaseDecisionLog::open(engine, &NodeId::new("orders-0")?, Duration::from_secs(30))?;
/// assert!(log.incarnation() >= 1 && log.is_live());
/// # }
/// # Ok::<(), sqlassist::Error>(())
/// ```
pub struct DatabaseDecisionLog {
    engine: Engine,
    node: NodeId,
    incarnation: u32,
    ttl: Duration,
    lease: Arc<Lease>,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for DatabaseDecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseDecisionLog")
            .field("url", &self.engine.url())
            .field("node", &self.node)
            .field("incarnation", &self.incarnation)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl DatabaseDecisionLog {
    /// Creates (or checks) the tables in `engine`'s database, claims `node` with a lease of
    /// `ttl` (bumping its incarnation) and starts renewing it every `ttl / 3`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] when `engine` is not PostgreSQL or `ttl` is under 3
    /// seconds; [`Error::NodeLeaseHeld`] when a live lease holds `node` (another process
    /// runs with the same node id); [`Error::Connect`] / [`Error::Database`] when the
    /// database cannot be used.
    pub fn open(engine: Engine, node: &NodeId, ttl: Duration) -> Result<Arc<Self>> {
        if engine.backend() != crate::Backend::Postgres {
            return Err(Error::invalid_setting(
                "sqlassist.decision_log",
                engine.url().redacted(),
                "a PostgreSQL engine",
            ));
        }
        if ttl < Duration::from_secs(3) {
            return Err(Error::invalid_setting(
                "sqlassist.decision_log_ttl",
                &ttl.as_secs().to_string(),
                "at least 3 seconds",
            ));
        }
        let mut conn = engine.checkout()?;
        let db = |e: diesel::result::Error, conn: &mut Conn| engine.database_error(conn, e);
        // Two processes creating the tables at once: the loser's CREATE fails on the
        // catalog's unique index; once more finds them there.
        for sql in [CREATE_NODE_TABLE, CREATE_DECISION_TABLE] {
            if pg(&mut conn).batch_execute(sql).is_err() {
                pg(&mut conn)
                    .batch_execute(sql)
                    .map_err(|e| db(e, &mut conn))?;
            }
        }
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let sent = Instant::now();
        // The row is locked `FOR UPDATE` first, which waits for every decision INSERT of an
        // earlier incarnation still in flight (they hold it `FOR KEY SHARE`): such a
        // decision commits before the claim (and this process's start-up recovery sees it)
        // or is fenced. The upsert alone would not wait: an update of non-key columns
        // takes a lock that `FOR KEY SHARE` does not conflict with.
        let claimed: Vec<Incarnation> = pg(&mut conn)
            .build_transaction()
            .read_committed()
            .run(|c| {
                diesel::sql_query("SELECT node FROM sqlassist_node WHERE node = $1 FOR UPDATE")
                    .bind::<Text, _>(node.as_str())
                    .execute(c)?;
                diesel::sql_query(
                    "INSERT INTO sqlassist_node AS n (node, incarnation, lease_until, host, pid) \
                     VALUES ($1, 1, statement_timestamp() + $2 * interval '1 millisecond', $3, $4) \
                     ON CONFLICT (node) DO UPDATE SET incarnation = n.incarnation + 1, \
                       lease_until = EXCLUDED.lease_until, taken_over_by = NULL, \
                       host = EXCLUDED.host, pid = EXCLUDED.pid \
                     WHERE n.lease_until < statement_timestamp() \
                     RETURNING n.incarnation",
                )
                .bind::<Text, _>(node.as_str())
                .bind::<BigInt, _>(ttl_ms)
                .bind::<Text, _>(&host)
                .bind::<Integer, _>(i32::try_from(std::process::id()).unwrap_or(-1))
                .load(c)
            })
            .map_err(|e| db(e, &mut conn))?;
        let Some(claimed) = claimed.first() else {
            let holder: Vec<Holder> = diesel::sql_query(
                "SELECT host, pid, taken_over_by FROM sqlassist_node WHERE node = $1",
            )
            .bind::<Text, _>(node.as_str())
            .load(pg(&mut conn))
            .map_err(|e| db(e, &mut conn))?;
            let holder = holder
                .first()
                .map_or_else(String::new, |h| match &h.taken_over_by {
                    Some(taker) => format!("taken over by node `{taker}`"),
                    None => format!(
                        "held by host `{}`, pid {}",
                        h.host.as_deref().unwrap_or("?"),
                        h.pid.map_or_else(|| "?".to_owned(), |p| p.to_string())
                    ),
                });
            return Err(Error::NodeLeaseHeld {
                node: node.to_string(),
                holder,
            });
        };
        let incarnation = u32::try_from(claimed.incarnation).map_err(|_| Error::NodeLeaseHeld {
            node: node.to_string(),
            holder: format!("incarnation {} out of range", claimed.incarnation),
        })?;
        let log = Arc::new(Self {
            engine,
            node: node.clone(),
            incarnation,
            ttl,
            lease: Arc::new(Lease {
                renewed: Mutex::new(sent),
                lost: AtomicBool::new(false),
                released: AtomicBool::new(false),
                stop: (Mutex::new(false), Condvar::new()),
                finished: Mutex::new(Vec::new()),
            }),
            heartbeat: Mutex::new(None),
        });
        let handle = log.start_heartbeat()?;
        *log.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        tracing::info!(node = %log.node, incarnation, "claimed the node in the database decision log");
        Ok(log)
    }

    fn start_heartbeat(&self) -> Result<JoinHandle<()>> {
        let (engine, node, incarnation, ttl, lease) = (
            self.engine.clone(),
            self.node.clone(),
            self.incarnation,
            self.ttl,
            self.lease.clone(),
        );
        std::thread::Builder::new()
            .name("sqlassist-lease".to_owned())
            .spawn(move || loop {
                {
                    let (lock, wake) = &lease.stop;
                    let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                    let (guard, _) = wake
                        .wait_timeout_while(guard, ttl / 3, |stop| !*stop)
                        .unwrap_or_else(|p| p.into_inner());
                    if *guard {
                        return;
                    }
                }
                let sent = Instant::now();
                match renew(&engine, &node, incarnation, ttl) {
                    Ok(true) => {
                        *lease.renewed.lock().unwrap_or_else(|p| p.into_inner()) = sent;
                        let batch = std::mem::take(&mut *lease.finished());
                        if let Err(e) = delete_finished(&engine, &node, &batch) {
                            tracing::warn!(node = %node, error = %e, "could not delete finished decisions; recovery deletes them");
                        }
                    }
                    Ok(false) => {
                        tracing::error!(node = %node, incarnation, "the node's lease was taken over: recording no more decisions");
                        lease.lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(node = %node, error = %e, "could not renew the node's lease");
                    }
                }
            })
            .map_err(|source| Error::RecoveryThread { source })
    }

    /// The incarnation this process claimed (bumped at every start).
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// The node id this log records decisions of.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// Whether the lease is live: renewed less than its time to live less a margin (a
    /// sixth of it) ago, by the local monotonic clock from when the renewal was sent, and
    /// never taken over. While it is not, [`record_commit`](DecisionLog::record_commit)
    /// refuses, so no commit is started that could not be finished.
    pub fn is_live(&self) -> bool {
        !self.lease.lost.load(Ordering::SeqCst)
            && self
                .lease
                .renewed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                < self.ttl - self.ttl / 6
    }

    /// Stops renewing and releases the lease (the node row stays, keeping the incarnation
    /// count, with its lease ended), so another process may take the node id at once.
    /// From then on the log refuses to record decisions and to answer recovery
    /// ([`DatabaseLogError::Released`]): a process restarted on the same node id owns
    /// them. Run a last recovery pass first ([`Registry::shutdown`](crate::Registry::shutdown)
    /// does both). Also done when the log is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] / [`Error::Database`] when the database cannot be reached; the
    /// lease then expires by itself (the log refuses decisions all the same).
    pub fn release(&self) -> Result<()> {
        self.lease.released.store(true, Ordering::SeqCst);
        self.stop_heartbeat();
        let batch = std::mem::take(&mut *self.lease.finished());
        if let Err(e) = delete_finished(&self.engine, &self.node, &batch) {
            tracing::warn!(node = %self.node, error = %e, "could not delete finished decisions; recovery deletes them");
        }
        if self.lease.lost.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let mut conn = self.engine.checkout()?;
        diesel::sql_query(
            "UPDATE sqlassist_node SET lease_until = statement_timestamp() \
             WHERE node = $1 AND incarnation = $2 AND taken_over_by IS NULL",
        )
        .bind::<Text, _>(self.node.as_str())
        .bind::<BigInt, _>(i64::from(self.incarnation))
        .execute(pg(&mut conn))
        .map_err(|e| self.engine.database_error(&mut conn, e))?;
        tracing::info!(node = %self.node, incarnation = self.incarnation, "released the node's lease");
        Ok(())
    }

    /// Deletes the finished decisions waiting for their batch now (a recovery pass's
    /// forgotten decisions, once the pass is over).
    pub(crate) fn delete_forgotten(&self) -> Result<()> {
        let batch = std::mem::take(&mut *self.lease.finished());
        delete_finished(&self.engine, &self.node, &batch)
    }

    fn stop_heartbeat(&self) {
        let (lock, wake) = &self.lease.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        let handle = self
            .heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the lease thread panicked");
            }
        }
    }

    fn database(&self, conn: &mut Conn, e: diesel::result::Error) -> DatabaseLogError {
        DatabaseLogError::Database {
            source: self.engine.database_error(conn, e),
        }
    }

    /// The fenced INSERT as one statement in a transaction of its own (autocommit: one
    /// round trip, whose answer is the commit's). A statement left without an answer (the
    /// connection lost) is settled by running it again on a fresh connection: the
    /// decision's primary key makes the second INSERT wait for the first while that one
    /// runs, and skip it once it committed, so the server says which it was; never guessed.
    fn insert_decision(
        &self,
        txn: TransactionId,
        branches: &[Branch],
    ) -> std::result::Result<(), DatabaseLogError> {
        let mut conn = self
            .engine
            .checkout()
            .map_err(|source| DatabaseLogError::Database { source })?;
        match self.fenced_insert(pg(&mut conn), txn, branches) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => self.recorded_or_fenced(pg(&mut conn), txn),
            Err(e) if server_answered(&e) => Err(self.database(&mut conn, e)),
            Err(e) => {
                let first: BoxError = Box::new(self.database(&mut conn, e));
                drop(conn);
                self.insert_again(txn, branches, first)
            }
        }
    }

    /// The fenced INSERT inserted nothing: fenced, or (when it ran again after a lost
    /// answer) the decision was already there.
    fn recorded_or_fenced(
        &self,
        c: &mut PgConnection,
        txn: TransactionId,
    ) -> std::result::Result<(), DatabaseLogError> {
        let present: Count = diesel::sql_query(
            "SELECT COUNT(*) AS n FROM sqlassist_decision \
             WHERE node = $1 AND incarnation = $2 AND coordinator = $3 AND sequence = $4",
        )
        .bind::<Text, _>(self.node.as_str())
        .bind::<BigInt, _>(i64::from(self.incarnation))
        .bind::<BigInt, _>(as_stored(txn.coordinator()))
        .bind::<BigInt, _>(as_stored(txn.sequence()))
        .get_result(c)
        .map_err(|source| DatabaseLogError::Database {
            source: Error::Database {
                engine: self.engine.url().redacted().to_owned(),
                transient: false,
                source,
            },
        })?;
        if present.n == 0 {
            Err(DatabaseLogError::Fenced {
                node: self.node.to_string(),
            })
        } else {
            Ok(())
        }
    }

    /// The decision INSERT got no answer: runs it again on fresh connections, for up to
    /// the lease's time to live, until the server answers.
    fn insert_again(
        &self,
        txn: TransactionId,
        branches: &[Branch],
        first: BoxError,
    ) -> std::result::Result<(), DatabaseLogError> {
        tracing::warn!(node = %self.node, transaction = %txn, error = %first, "the decision INSERT got no answer; asking the server again");
        let deadline = Instant::now() + self.ttl;
        let mut last: BoxError;
        loop {
            std::thread::sleep(Duration::from_millis(100));
            match self.engine.checkout() {
                Ok(mut conn) => match self.fenced_insert(pg(&mut conn), txn, branches) {
                    Ok(Some(_)) => return Ok(()),
                    Ok(None) => return self.recorded_or_fenced(pg(&mut conn), txn),
                    Err(e) => last = Box::new(self.database(&mut conn, e)),
                },
                Err(e) => last = Box::new(e),
            }
            if Instant::now() >= deadline {
                return Err(DatabaseLogError::OutcomeUnknown {
                    node: self.node.to_string(),
                    xid: format!("transaction {txn}"),
                    source: last,
                });
            }
        }
    }

    /// The fenced decision INSERT in the transaction open on `c`: the log database's id of
    /// that transaction, or `None` when fenced (nothing inserted).
    fn fenced_insert(
        &self,
        c: &mut PgConnection,
        txn: TransactionId,
        branches: &[Branch],
    ) -> diesel::QueryResult<Option<String>> {
        let resources: Vec<&str> = branches.iter().map(|b| b.resource.as_str()).collect();
        let ids: Vec<&str> = branches
            .iter()
            .map(|b| b.branch_id.as_deref().unwrap_or(""))
            .collect();
        let inserted: Vec<Xid> = DecisionInsert {
            node: self.node.as_str(),
            incarnation: i64::from(self.incarnation),
            coordinator: as_stored(txn.coordinator()),
            sequence: as_stored(txn.sequence()),
            resources: &resources,
            branch_ids: &ids,
        }
        .load(c)?;
        Ok(inserted.into_iter().next().map(|x| x.xid))
    }

    /// [`DatabaseLogError::Released`] once [`release`](Self::release) was called.
    fn check_not_released(&self) -> std::result::Result<(), DatabaseLogError> {
        if self.lease.released.load(Ordering::SeqCst) {
            return Err(DatabaseLogError::Released {
                node: self.node.to_string(),
            });
        }
        Ok(())
    }

    /// Whether `engine` connects to this log's database, so that its session can carry
    /// the decision inside its own transaction.
    pub(crate) fn is_in(&self, engine: &Engine) -> bool {
        engine.backend() == crate::Backend::Postgres
            && engine.url().redacted() == self.engine.url().redacted()
    }

    /// The decision carried by a participant of the log's database: the fenced INSERT in
    /// the participant's own open transaction on `c`, whose one-phase commit then makes it
    /// durable. Returns that transaction's id, to settle an unanswered COMMIT.
    pub(crate) fn carry(
        &self,
        c: &mut PgConnection,
        decision: &DecisionRecord,
    ) -> std::result::Result<String, DatabaseLogError> {
        self.check_not_released()?;
        if !self.is_live() {
            return Err(DatabaseLogError::LeaseLost {
                node: self.node.to_string(),
            });
        }
        self.fenced_insert(c, decision.transaction, &decision.branches)
            .map_err(|source| DatabaseLogError::Database {
                source: Error::Database {
                    engine: self.engine.url().redacted().to_owned(),
                    transient: false,
                    source,
                },
            })?
            .ok_or_else(|| DatabaseLogError::Fenced {
                node: self.node.to_string(),
            })
    }

    /// After the COMMIT of a transaction that carried a decision (`xid`) failed: `Ok` when
    /// the server says it committed after all.
    pub(crate) fn settle_carried(
        &self,
        xid: &str,
        error: BoxError,
    ) -> std::result::Result<(), DatabaseLogError> {
        self.settle(xid, error)
    }

    /// The COMMIT of decision transaction `xid` failed with `error`: asks the server what
    /// became of it, from fresh connections, for up to the lease's time to live.
    fn settle(&self, xid: &str, error: BoxError) -> std::result::Result<(), DatabaseLogError> {
        let deadline = Instant::now() + self.ttl;
        let mut last = error;
        loop {
            match self.xact_status(xid) {
                Ok(Some(status)) if status == "committed" => return Ok(()),
                Ok(Some(status)) if status == "aborted" => {
                    return Err(DatabaseLogError::Database {
                        source: Error::DecisionNotRecorded {
                            reason: format!("the decision's transaction {xid} aborted"),
                        },
                    })
                }
                Ok(_) => {}
                Err(e) => last = Box::new(e),
            }
            if Instant::now() >= deadline {
                return Err(DatabaseLogError::OutcomeUnknown {
                    node: self.node.to_string(),
                    xid: format!("log transaction {xid}"),
                    source: last,
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn xact_status(&self, xid: &str) -> Result<Option<String>> {
        let mut conn = self.engine.checkout()?;
        let status: XactStatus =
            diesel::sql_query("SELECT pg_xact_status($1::xid8)::text AS status")
                .bind::<Text, _>(xid)
                .get_result(pg(&mut conn))
                .map_err(|e| self.engine.database_error(&mut conn, e))?;
        Ok(status.status)
    }
}

/// The fenced decision INSERT. Unlike `sql_query`, it lets the connection keep its
/// prepared statement (keyed by the SQL text), so the server parses and plans it once per
/// connection rather than at every commit.
///
/// `set_config(.., true)` is `SET LOCAL` inside the statement: the session may run with
/// synchronous_commit off, and this transaction's commit is the decision.
struct DecisionInsert<'a> {
    node: &'a str,
    incarnation: i64,
    coordinator: i64,
    sequence: i64,
    resources: &'a [&'a str],
    branch_ids: &'a [&'a str],
}

impl diesel::query_builder::QueryId for DecisionInsert<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for DecisionInsert<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<PgConnection> for DecisionInsert<'_> {}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for DecisionInsert<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql(
            "WITH durable AS (SELECT set_config('synchronous_commit', 'on', true) AS s) \
             INSERT INTO sqlassist_decision \
             (node, incarnation, coordinator, sequence, decided_at, resources, branch_ids) \
             SELECT ",
        );
        out.push_bind_param::<Text, _>(self.node)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.incarnation)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.coordinator)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.sequence)?;
        out.push_sql(", statement_timestamp(), ");
        out.push_bind_param::<Array<Text>, _>(self.resources)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(self.branch_ids)?;
        out.push_sql(" FROM sqlassist_node, durable WHERE node = ");
        out.push_bind_param::<Text, _>(self.node)?;
        out.push_sql(" AND incarnation = ");
        out.push_bind_param::<BigInt, _>(&self.incarnation)?;
        out.push_sql(
            " AND taken_over_by IS NULL AND lease_until > statement_timestamp() \
             AND durable.s = 'on' FOR KEY SHARE OF sqlassist_node \
             ON CONFLICT (node, incarnation, coordinator, sequence) DO NOTHING \
             RETURNING pg_current_xact_id()::text AS xid",
        );
        Ok(())
    }
}

#[derive(QueryableByName)]
struct SettledNode {
    #[diesel(sql_type = Text)]
    node: String,
    #[diesel(sql_type = BigInt)]
    incarnation: i64,
}

#[derive(QueryableByName)]
struct NodeName {
    #[diesel(sql_type = Text)]
    node: String,
}

impl DatabaseDecisionLog {
    /// Takes over every other node whose lease expired, or that this node took over
    /// before and has not finished (one winner per node: the row lock of `FOR UPDATE`
    /// and the lease check after it). `FOR UPDATE` waits for a decision INSERT holding the
    /// row `FOR KEY SHARE`, so a decision either committed before (and is read after this)
    /// or is fenced. Returns the nodes taken, with their open decisions.
    pub(crate) fn take_over_expired(&self) -> Result<Vec<(NodeId, Vec<DecisionRecord>)>> {
        if !self.is_live() {
            return Ok(Vec::new());
        }
        let mut conn = self.engine.checkout()?;
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let taken: Vec<NodeName> = diesel::sql_query(
            "WITH x AS (SELECT node FROM sqlassist_node WHERE node <> $1 \
               AND taken_over_by IS DISTINCT FROM $3 \
               AND (lease_until < statement_timestamp() OR taken_over_by = $1) FOR UPDATE) \
             UPDATE sqlassist_node n SET taken_over_by = $1, \
               lease_until = statement_timestamp() + $2 * interval '1 millisecond' \
             FROM x WHERE n.node = x.node AND n.taken_over_by IS DISTINCT FROM $3 \
               AND (n.lease_until < statement_timestamp() OR n.taken_over_by = $1) \
             RETURNING n.node",
        )
        .bind::<Text, _>(self.node.as_str())
        .bind::<BigInt, _>(ttl_ms)
        .bind::<Text, _>(SETTLED)
        .load(pg(&mut conn))
        .map_err(|e| self.engine.database_error(&mut conn, e))?;
        let mut out = Vec::new();
        for t in taken {
            let Ok(node) = NodeId::new(&t.node) else {
                tracing::warn!(
                    node = t.node,
                    "a node row with an invalid node id: left alone"
                );
                continue;
            };
            let decisions = self
                .decisions_of(&node)
                .map_err(|source| Error::DecisionLogUnavailable { source })?;
            tracing::info!(node = %node, by = %self.node, decisions = decisions.len(), "took over a node whose lease expired");
            out.push((node, decisions));
        }
        Ok(out)
    }

    /// The nodes whose takeover ended, with the incarnation they had: no decision of
    /// theirs is open, so a branch of such an incarnation that a pass finds (a PREPARE the
    /// server finished after its client died) is rolled back.
    pub(crate) fn settled_nodes(&self) -> Result<Vec<(NodeId, u32)>> {
        let mut conn = self.engine.checkout()?;
        let rows: Vec<SettledNode> = diesel::sql_query(
            "SELECT node, incarnation FROM sqlassist_node WHERE taken_over_by = $1",
        )
        .bind::<Text, _>(SETTLED)
        .load(pg(&mut conn))
        .map_err(|e| self.engine.database_error(&mut conn, e))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some((
                    NodeId::new(&r.node).ok()?,
                    u32::try_from(r.incarnation).ok()?,
                ))
            })
            .collect())
    }

    /// Every branch of taken-over `node` is finished: deletes its decisions and marks the
    /// row settled (no later pass takes it again; a zombie of it stays fenced). The row
    /// stays, with its incarnation count and no lease, so the node may start again.
    pub(crate) fn finish_takeover(&self, node: &NodeId) -> Result<()> {
        let mut conn = self.engine.checkout()?;
        let sql = format!(
            "BEGIN; DELETE FROM sqlassist_decision WHERE node = '{node}'; \
             UPDATE sqlassist_node SET taken_over_by = '{settled}', \
               lease_until = statement_timestamp() \
             WHERE node = '{node}' AND taken_over_by = '{me}'; COMMIT",
            node = node.as_str(),
            me = self.node.as_str(),
            settled = SETTLED
        );
        pg(&mut conn)
            .batch_execute(&sql)
            .map_err(|e| self.engine.database_error(&mut conn, e))?;
        tracing::info!(node = %node, by = %self.node, "settled every branch of a node taken over");
        Ok(())
    }

    fn decisions_of(&self, node: &NodeId) -> std::result::Result<Vec<DecisionRecord>, BoxError> {
        let mut conn = self.engine.checkout()?;
        let rows: Vec<DecisionRow> = diesel::sql_query(
            "SELECT node, coordinator, sequence, resources, branch_ids FROM sqlassist_decision \
             WHERE node = $1 ORDER BY incarnation, coordinator, sequence",
        )
        .bind::<Text, _>(node.as_str())
        .load(pg(&mut conn))
        .map_err(|e| Box::new(self.engine.database_error(&mut conn, e)) as BoxError)?;
        Ok(rows.into_iter().map(DecisionRow::into_record).collect())
    }
}

/// Renews `node`'s lease; `Ok(false)`: the row is no longer ours (taken over).
fn renew(engine: &Engine, node: &NodeId, incarnation: u32, ttl: Duration) -> Result<bool> {
    let mut conn = engine.checkout()?;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let n = diesel::sql_query(
        "UPDATE sqlassist_node SET lease_until = statement_timestamp() + $3 * interval '1 millisecond' \
         WHERE node = $1 AND incarnation = $2 AND taken_over_by IS NULL",
    )
    .bind::<Text, _>(node.as_str())
    .bind::<BigInt, _>(i64::from(incarnation))
    .bind::<BigInt, _>(ttl_ms)
    .execute(pg(&mut conn))
    .map_err(|e| engine.database_error(&mut conn, e))?;
    Ok(n == 1)
}

impl Drop for DatabaseDecisionLog {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::warn!(node = %self.node, error = %e, "could not release the node's lease; it expires by itself");
        }
    }
}

impl DecisionLog for DatabaseDecisionLog {
    fn record_commit(
        &self,
        txn: TransactionId,
        branches: &[Branch],
    ) -> std::result::Result<(), BoxError> {
        self.check_not_released()?;
        if !self.is_live() {
            return Err(Box::new(DatabaseLogError::LeaseLost {
                node: self.node.to_string(),
            }));
        }
        self.insert_decision(txn, branches)
            .map_err(|e| Box::new(e) as BoxError)
    }

    /// Deletes the decision of `txn` lazily: in a batch once 64 finished
    /// decisions wait, at the next lease renewal, or at release (recovery deletes what a
    /// crash left). It no longer counts among this log's open decisions at once.
    fn forget(&self, txn: TransactionId) -> std::result::Result<(), BoxError> {
        let batch = {
            let mut finished = self.lease.finished();
            finished.push((as_stored(txn.coordinator()), as_stored(txn.sequence())));
            if finished.len() < FORGET_BATCH {
                return Ok(());
            }
            std::mem::take(&mut *finished)
        };
        delete_finished(&self.engine, &self.node, &batch).map_err(|e| Box::new(e) as BoxError)
    }

    /// # Errors
    ///
    /// [`DatabaseLogError::Released`] once the lease was released: a process restarted on
    /// this node id owns its decisions, and its in-flight branches look like ours.
    fn open_decisions(&self) -> std::result::Result<Vec<DecisionRecord>, BoxError> {
        self.check_not_released()?;
        let mut open = self.decisions_of(&self.node)?;
        let finished = self.lease.finished();
        if !finished.is_empty() {
            open.retain(|d| {
                !finished.contains(&(
                    as_stored(d.transaction.coordinator()),
                    as_stored(d.transaction.sequence()),
                ))
            });
        }
        Ok(open)
    }

    fn is_outcome_unknown(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        matches!(
            error.downcast_ref::<DatabaseLogError>(),
            Some(DatabaseLogError::OutcomeUnknown { .. })
        )
    }
}
