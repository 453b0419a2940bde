//! The database decision log as an operator reads it: every node's lease and every open
//! decision, read without claiming a node, and manual actions recorded in a table of the
//! log's database (`sqlassist_manual_action`, created on first use).

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use transaction::DecisionRecord;

use crate::branch::NodeId;
use crate::db_log::{pg, DatabaseDecisionLog, DecisionRow, SETTLED};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::in_doubt::{ManualAction, NodeLease};

const CREATE_MANUAL_TABLE: &str = "CREATE TABLE IF NOT EXISTS sqlassist_manual_action (\
    at timestamptz NOT NULL DEFAULT statement_timestamp(), \
    node text NOT NULL, \
    engine text NOT NULL, \
    branch text NOT NULL, \
    action text NOT NULL, \
    decision text NOT NULL, \
    forced boolean NOT NULL, \
    outcome text NOT NULL)";

/// One row of `sqlassist_node`: a node id that claimed a lease in the log.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NodeRecord {
    /// The node id as stored.
    pub node: String,
    /// Its last incarnation.
    pub incarnation: i64,
    /// Its lease.
    pub lease: NodeLease,
    /// Seconds until the lease ends (negative: ended that long ago), by the log server's
    /// clock.
    pub lease_remaining: f64,
    /// The host that last claimed it (`HOSTNAME`), if known.
    pub host: Option<String>,
    /// The process id that last claimed it.
    pub pid: Option<i32>,
}

/// The database decision log's tables, read without claiming a node
/// ([`DatabaseDecisionLog::inspect`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DatabaseLogInspection {
    /// Whether the log's tables exist (the application creates them at its first start).
    pub tables: bool,
    /// Every node row.
    pub nodes: Vec<NodeRecord>,
    /// Every open commit decision, with the node that recorded it.
    pub decisions: Vec<(String, DecisionRecord)>,
}

impl DatabaseLogInspection {
    /// The row of `node`, if it ever claimed a lease.
    ///
    /// # Examples
    ///
    /// ```
    /// let inspection = sqlassist::DatabaseLogInspection::default();
    /// assert!(inspection.node("orders-0").is_none());
    /// ```
    pub fn node(&self, node: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.node == node)
    }

    /// Whether a recovery pass of node `me` would settle branch `branch` of another node
    /// (as the pass does): its node's lease ended or `me` took it over before, or its
    /// node's takeover ended and the branch is of that incarnation or an older one (a
    /// PREPARE finished after its client died).
    pub(crate) fn is_takeable_by(&self, branch: &crate::BranchId, me: &NodeId) -> bool {
        let node = branch.node().as_str();
        node != me.as_str()
            && self.node(node).is_some_and(|n| match &n.lease {
                NodeLease::Settled => i64::from(branch.incarnation()) <= n.incarnation,
                NodeLease::TakenOver { by, .. } if by == me.as_str() => true,
                NodeLease::Live | NodeLease::TakenOver { live: true, .. } => false,
                _ => true,
            })
    }
}

#[derive(QueryableByName)]
struct Present {
    #[diesel(sql_type = Bool)]
    present: bool,
}

#[derive(QueryableByName)]
struct NodeRow {
    #[diesel(sql_type = Text)]
    node: String,
    #[diesel(sql_type = BigInt)]
    incarnation: i64,
    #[diesel(sql_type = Nullable<Text>)]
    taken_over_by: Option<String>,
    #[diesel(sql_type = Bool)]
    live: bool,
    #[diesel(sql_type = Double)]
    remaining: f64,
    #[diesel(sql_type = Nullable<Text>)]
    host: Option<String>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Integer>)]
    pid: Option<i32>,
}

fn require_postgres(engine: &Engine) -> Result<()> {
    if engine.backend() == crate::Backend::Postgres {
        Ok(())
    } else {
        Err(Error::invalid_setting(
            "sqlassist.decision_log",
            engine.url().redacted(),
            "a PostgreSQL engine",
        ))
    }
}

impl DatabaseDecisionLog {
    /// Reads every node's lease and every open decision from the log's tables in
    /// `engine`'s database, without claiming a node or writing anything: for tools that
    /// look at a log a running application holds. Missing tables read as an empty log
    /// (`tables: false`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] when `engine` is not PostgreSQL; [`Error::Connect`] /
    /// [`Error::Database`] when the database cannot be read.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sqlassist::{DatabaseDecisionLog, DatabaseUrl, Engine, EngineOptions};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("postgresql://app@localhost/app")?))?;
    /// let log = DatabaseDecisionLog::inspect(&engine)?;
    /// for node in &log.nodes {
    ///     println!("{} {}", node.node, node.lease);
    /// }
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn inspect(engine: &Engine) -> Result<DatabaseLogInspection> {
        require_postgres(engine)?;
        let mut conn = engine.checkout()?;
        let present: Present = diesel::sql_query(
            "SELECT to_regclass('sqlassist_node') IS NOT NULL \
               AND to_regclass('sqlassist_decision') IS NOT NULL AS present",
        )
        .get_result(pg(&mut conn))
        .map_err(|e| engine.database_error(&mut conn, e))?;
        if !present.present {
            return Ok(DatabaseLogInspection::default());
        }
        let nodes: Vec<NodeRow> = diesel::sql_query(
            "SELECT node, incarnation, taken_over_by, host, pid, \
               lease_until > statement_timestamp() AS live, \
               CAST(EXTRACT(EPOCH FROM lease_until - statement_timestamp()) AS float8) AS remaining \
             FROM sqlassist_node ORDER BY node",
        )
        .load(pg(&mut conn))
        .map_err(|e| engine.database_error(&mut conn, e))?;
        let decisions: Vec<DecisionRow> = diesel::sql_query(
            "SELECT node, coordinator, sequence, resources, branch_ids FROM sqlassist_decision \
             ORDER BY node, incarnation, coordinator, sequence",
        )
        .load(pg(&mut conn))
        .map_err(|e| engine.database_error(&mut conn, e))?;
        Ok(DatabaseLogInspection {
            tables: true,
            nodes: nodes
                .into_iter()
                .map(|n| NodeRecord {
                    lease: match n.taken_over_by {
                        Some(by) if by == SETTLED => NodeLease::Settled,
                        Some(by) => NodeLease::TakenOver { by, live: n.live },
                        None if n.live => NodeLease::Live,
                        None => NodeLease::Expired,
                    },
                    node: n.node,
                    incarnation: n.incarnation,
                    lease_remaining: n.remaining,
                    host: n.host,
                    pid: n.pid,
                })
                .collect(),
            decisions: decisions
                .into_iter()
                .map(|mut r| (std::mem::take(&mut r.node), r.into_record()))
                .collect(),
        })
    }

    /// Records a manual action on a prepared branch, taken as node `node`, as one row of
    /// `sqlassist_manual_action` in `engine`'s database (the table is created on first
    /// use), committed with `synchronous_commit = on`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] when `engine` is not PostgreSQL; [`Error::Connect`] /
    /// [`Error::Database`] when the row cannot be written.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sqlassist::{DatabaseDecisionLog, DatabaseUrl, Engine, EngineOptions, ManualAction, NodeId};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("postgresql://app@localhost/app")?))?;
    /// let mut action = ManualAction::new("rollback", "orders", "sqlassist_n1_1_7_orders");
    /// action.outcome = "done".into();
    /// DatabaseDecisionLog::record_manual_action(&engine, &NodeId::new("orders-0")?, &action)?;
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn record_manual_action(
        engine: &Engine,
        node: &NodeId,
        record: &ManualAction<'_>,
    ) -> Result<()> {
        require_postgres(engine)?;
        let mut conn = engine.checkout()?;
        // Two tools creating the table at once: the loser's CREATE fails on the catalog's
        // unique index; once more finds it there.
        if pg(&mut conn).batch_execute(CREATE_MANUAL_TABLE).is_err() {
            pg(&mut conn)
                .batch_execute(CREATE_MANUAL_TABLE)
                .map_err(|e| engine.database_error(&mut conn, e))?;
        }
        pg(&mut conn)
            .transaction(|c| {
                c.batch_execute("SET LOCAL synchronous_commit = on")?;
                diesel::sql_query(
                    "INSERT INTO sqlassist_manual_action \
                     (node, engine, branch, action, decision, forced, outcome) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind::<Text, _>(node.as_str())
                .bind::<Text, _>(record.engine)
                .bind::<Text, _>(record.branch)
                .bind::<Text, _>(record.action)
                .bind::<Text, _>(record.decision.as_str())
                .bind::<Bool, _>(record.forced)
                .bind::<Text, _>(&record.outcome)
                .execute(c)
                .map(drop)
            })
            .map_err(|e| engine.database_error(&mut conn, e))
    }
}
