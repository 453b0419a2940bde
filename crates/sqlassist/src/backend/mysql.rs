//! MariaDB and MySQL: two-phase commit through XA; plain `BEGIN` / `COMMIT` when unmanaged.
//!
//! What each step of a *managed* session sends (`<xid>` is `'<gtrid>','<bqual>'`, see
//! [`xid`]):
//!
//! | step | SQL |
//! |---|---|
//! | first use | `XA START <xid>` (through Diesel, so nested `transaction()` calls are savepoints); a read-only engine sends `SET TRANSACTION READ ONLY` before it in the same round trip |
//! | vote | `XA END <xid>; XA PREPARE <xid>` in one round trip |
//! | vote, read-only engine | `XA END <xid>; XA COMMIT <xid> ONE PHASE`, votes read-only |
//! | finish | `XA COMMIT <xid>`, on the connection that prepared it |
//! | abort after vote | `XA ROLLBACK <xid>`, on the connection that prepared it |
//! | abort before vote | `XA END <xid>` (an error is ignored: the branch may be idle already), then `XA ROLLBACK <xid>` |
//! | one-phase commit | `XA END <xid>; XA COMMIT <xid> ONE PHASE` in one round trip |
//!
//! Unmanaged sessions use `BEGIN` / `COMMIT` / `ROLLBACK` like the other backends
//! (`START TRANSACTION READ ONLY` for a read-only engine).
//!
//! # Rules MariaDB imposes
//!
//! - Inside an XA branch, plain `COMMIT` and `ROLLBACK` fail with `XAER_RMFAIL` (and Diesel
//!   would then mark the connection broken): a branch is ended only with XA statements, so
//!   every path that ends a managed session's transaction goes through this module.
//! - After `XA PREPARE`, Diesel still believes a transaction is open (MySQL connections do
//!   not reset the depth as PostgreSQL's do); the session resets it, or r2d2 would discard
//!   the connection as broken.
//! - On MariaDB 10.11 a prepared branch stays attached to the connection that prepared it
//!   until that connection disconnects: other connections get `XAER_NOTA`. Phase two runs
//!   on the same connection. If that fails, the connection is marked broken so that the
//!   pool closes it instead of reusing it (a connection holding a prepared branch cannot
//!   start new work), and phase two is retried on a fresh connection, which works once the
//!   server has noticed the disconnect.
//! - MariaDB gives no signal that a branch wrote nothing: `XA PREPARE` of a read-only
//!   branch succeeds and the branch is listed by `XA RECOVER` like any other. A writable
//!   engine's session therefore always prepares; only engines declared read-only (the
//!   server refuses their writes) vote read-only.
//!
//! Error classification: Diesel exposes no MySQL error number, only a
//! [`DatabaseErrorKind`] for some numbers on prepared statements (1213 becomes
//! `SerializationFailure`) and the server's message otherwise (always for `batch_execute`),
//! in the language of the server's `lc_messages`. After a statement fails, the session
//! therefore reads the error number from the server's diagnostics area
//! (`GET DIAGNOSTICS CONDITION 1 @e = MYSQL_ERRNO`, two round trips on the failure path
//! only): deadlocks (1213), lock wait timeouts (1205) and their XA forms (1613, 1614) are
//! transient; `XAER_NOTA` (1397) means an unknown branch. Messages are never read.

use crate::backend::{AfterFailure, Ctx, Failed, Left, PhaseTwo, Protocol, Voted};
use crate::branch::{BranchName, Listed, Owner};
use crate::conn::Conn;
use crate::error::Result;
use crate::options::EngineOptions;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// SQL run on every new connection.
pub(crate) fn setup_sql(options: &EngineOptions) -> Result<String> {
    let mut sql = String::new();
    if let Some(level) = options.isolation_level() {
        sql.push_str(&format!(
            "SET SESSION TRANSACTION ISOLATION LEVEL {};",
            level.as_sql()
        ));
    }
    if options.is_read_only() {
        sql.push_str("SET SESSION TRANSACTION READ ONLY;");
    }
    if let Some(timeout) = options.statement_timeout() {
        sql.push_str(&format!(
            "SET SESSION max_statement_time = {};",
            timeout.as_secs_f64()
        ));
    }
    Ok(sql)
}

/// The XA xid of a session's branch, as SQL: `'<gtrid>','<engine>'` (format id 1, the
/// server's default).
///
/// The gtrid names the coordinator's transaction (every branch of one transaction shares
/// it: `sqlassist_<node>_<incarnation>_<sequence>`, at most 60 bytes) and the bqual names
/// the engine. Node ids are `[a-z0-9-]`, engine names `[A-Za-z0-9_.-]` and at most 64 bytes
/// (checked by the registry), so both parts fit XA's 64-byte limits and need no quoting;
/// nothing comes from user input (see `crate::branch`).
pub(crate) fn xid(branch: BranchName<'_>) -> String {
    debug_assert!(branch.engine.len() <= 64 && !branch.engine.contains('\''));
    branch.to_xid_sql()
}

/// How a managed session opens its branch. A read-only engine's branch is made read-only
/// again each time: `SET SESSION TRANSACTION READ WRITE` would otherwise lift the engine's
/// default for the branches after it (MariaDB refuses to change the access mode of a
/// transaction in progress, so the branch itself stays read-only).
pub(crate) fn begin_sql(xid: &str, read_only: bool) -> String {
    if read_only {
        format!("SET TRANSACTION READ ONLY; XA START {xid}")
    } else {
        format!("XA START {xid}")
    }
}

/// How an unmanaged session opens its transaction (read-only engines: read-only whatever
/// the session's default has become).
pub(crate) fn begin_unmanaged_sql(read_only: bool) -> &'static str {
    if read_only {
        "START TRANSACTION READ ONLY"
    } else {
        "BEGIN"
    }
}

/// The vote of a writable engine: ends and prepares the branch in one round trip, then
/// tells Diesel the transaction is over.
pub(crate) fn prepare(conn: &mut Conn, xid: &str) -> std::result::Result<(), DieselError> {
    conn.batch_execute(&format!("XA END {xid}; XA PREPARE {xid}"))?;
    conn.forget_transaction();
    Ok(())
}

/// Ends and commits a branch that was never prepared: the one-phase commit of a lone
/// writer, and the vote of a read-only engine. On failure the branch is rolled back (or,
/// if even that fails, the connection is marked broken so that closing it rolls back);
/// the error comes with whether it is transient, read before the rollback.
pub(crate) fn commit_one_phase(
    conn: &mut Conn,
    xid: &str,
) -> std::result::Result<(), (DieselError, bool)> {
    match conn.batch_execute(&format!("XA END {xid}; XA COMMIT {xid} ONE PHASE")) {
        Ok(()) => {
            conn.forget_transaction();
            Ok(())
        }
        Err(e) => {
            let transient = is_transient(Some(conn), &e);
            if rollback_active(conn, xid).is_err() {
                conn.mark_broken();
            }
            Err((e, transient))
        }
    }
}

/// Phase two, on the connection that prepared the branch or (once it is gone) any other.
pub(crate) fn commit_prepared(conn: &mut Conn, xid: &str) -> std::result::Result<(), DieselError> {
    conn.batch_execute(&format!("XA COMMIT {xid}"))
}

/// Rolls back a prepared branch.
pub(crate) fn rollback_prepared(
    conn: &mut Conn,
    xid: &str,
) -> std::result::Result<(), DieselError> {
    conn.batch_execute(&format!("XA ROLLBACK {xid}"))
}

/// Rolls back a branch that was not prepared, whether still active or already ended (a
/// failed vote may leave it either way), and resets Diesel's depth. A branch the server no
/// longer knows (`XAER_NOTA`: a deadlock or a failed `XA PREPARE` rolled it back already)
/// counts as rolled back.
pub(crate) fn rollback_active(conn: &mut Conn, xid: &str) -> std::result::Result<(), DieselError> {
    // Fails harmlessly with XAER_RMFAIL when the branch is already idle, or with an
    // XA_RB* error when the server already rolled it back.
    let _ = conn.batch_execute(&format!("XA END {xid}"));
    if let Err(e) = conn.batch_execute(&format!("XA ROLLBACK {xid}")) {
        if !is_unknown_xid(conn) {
            return Err(e);
        }
    }
    conn.forget_transaction();
    Ok(())
}

/// `ER_XAER_NOTA`: the server does not know the xid (or, on MariaDB, another live
/// connection owns the branch).
pub(crate) const XAER_NOTA: u32 = 1397;

#[derive(diesel::QueryableByName)]
struct Number {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    n: Option<i64>,
}

/// The error number of the statement that just failed on `conn`, read from the server's
/// diagnostics area (`GET DIAGNOSTICS`), or `None` when the server cannot be asked (the
/// connection is gone: a connection-level failure). Diesel keeps only the message of a
/// failed text-protocol statement, and messages follow the server's `lc_messages`, so the
/// number is the only language-independent answer. Costs two round trips, on failure
/// paths only.
pub(crate) fn error_number(conn: &mut Conn) -> Option<u32> {
    let my = <diesel::MysqlConnection as crate::conn::sealed::Sealed>::from_conn(conn)?;
    diesel::connection::SimpleConnection::batch_execute(
        my,
        "GET DIAGNOSTICS CONDITION 1 @sqlassist_errno = MYSQL_ERRNO",
    )
    .ok()?;
    diesel::RunQueryDsl::get_result::<Number>(
        diesel::sql_query("SELECT CAST(@sqlassist_errno AS SIGNED) AS n"),
        my,
    )
    .ok()?
    .n
    .and_then(|n| u32::try_from(n).ok())
}

/// How often, and how long apart, a fresh connection retries phase two while MariaDB has
/// not yet detached the branch from the closed connection that prepared it.
const DETACH_RETRIES: u32 = 20;
const DETACH_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Retries phase two on a fresh connection while the server answers `XAER_NOTA`: after
/// the owner connection is closed or killed, the server detaches its prepared branch
/// asynchronously. Gives up after about a second (the branch may also be unknown because
/// it was already finished; the caller then reports it in doubt).
pub(crate) fn retry_until_detached(
    conn: &mut Conn,
    xid: &str,
    mut outcome: std::result::Result<(), DieselError>,
    op: fn(&mut Conn, &str) -> std::result::Result<(), DieselError>,
) -> std::result::Result<(), DieselError> {
    for _ in 0..DETACH_RETRIES {
        if outcome.is_ok() || !is_unknown_xid(conn) {
            break;
        }
        std::thread::sleep(DETACH_WAIT);
        outcome = op(conn, xid);
    }
    outcome
}

/// Whether the statement that just failed on `conn` failed with `XAER_NOTA` (1397): the
/// server does not know the xid, or (MariaDB) the branch is attached to another connection
/// that is still alive.
pub(crate) fn is_unknown_xid(conn: &mut Conn) -> bool {
    error_number(conn) == Some(XAER_NOTA)
}

/// Error numbers after which the same work may succeed in a new transaction:
/// `ER_LOCK_WAIT_TIMEOUT` (1205), `ER_LOCK_DEADLOCK` (1213), and the XA forms of the same,
/// `XA_RBTIMEOUT` (1613) and `XA_RBDEADLOCK` (1614), which a branch rolled back by a
/// timeout or a deadlock reports at `XA END` or `XA PREPARE`.
const TRANSIENT_ERRORS: [u32; 4] = [1205, 1213, 1613, 1614];

/// Whether the statement that just failed on `conn` with `error` may succeed if retried in
/// a new transaction, by error number: Diesel's kind where it has one (it classifies 1213
/// on prepared statements as a serialization failure), otherwise the number from the
/// server's diagnostics area (see [`error_number`]). Without the connection, or when the
/// server cannot be asked, the error counts as not transient. Messages are never read:
/// they follow the server's `lc_messages`.
pub(crate) fn is_transient(conn: Option<&mut Conn>, error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        // Only errors Diesel could not classify cost the two round trips: a unique
        // violation (say) was classified from its number and is not transient.
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, _) => conn
            .and_then(error_number)
            .is_some_and(|n| TRANSIENT_ERRORS.contains(&n)),
        _ => false,
    }
}

/// MariaDB's and MySQL's [`Protocol`]: XA (see the module docs).
pub(crate) struct Mysql;

impl Protocol for Mysql {
    const CAN_PREPARE: bool = true;
    const ENFORCES_READ_ONLY: bool = true;

    fn begin(
        conn: &mut Conn,
        ctx: &Ctx<'_>,
        branch: Option<BranchName<'_>>,
    ) -> diesel::QueryResult<Option<String>> {
        let read_only = ctx.engine.is_read_only();
        match branch {
            Some(branch) => {
                let xid = xid(branch);
                conn.begin_with(&begin_sql(&xid, read_only))?;
                Ok(Some(xid))
            }
            None => conn
                .begin_with(begin_unmanaged_sql(read_only))
                .map(|()| None),
        }
    }

    fn vote(
        conn: &mut Conn,
        ctx: &Ctx<'_>,
        open: Option<&str>,
        _branch: BranchName<'_>,
    ) -> std::result::Result<Voted, Failed> {
        let xid =
            open.ok_or_else(|| Failed::lasting(Left::Open, ctx.lost("it has no XA branch open")))?;
        if ctx.engine.is_read_only() {
            // The server refuses this engine's writes: committing now releases the branch
            // without a prepared state, and drops nothing.
            return commit_branch(conn, ctx, xid).map(|()| Voted::ReadOnly);
        }
        // MariaDB cannot tell whether the branch wrote anything: always prepare.
        match prepare(conn, xid) {
            Ok(()) => Ok(Voted::Prepared(xid.to_owned())),
            // The branch stays open (active or idle): abort rolls it back.
            Err(e) => Err(Failed::new(Left::Open, ctx.db_error::<Self>(Some(conn), e))),
        }
    }

    fn commit(
        conn: &mut Conn,
        ctx: &Ctx<'_>,
        open: Option<&str>,
    ) -> std::result::Result<(), Failed> {
        if let Some(xid) = open {
            return commit_branch(conn, ctx, xid);
        }
        conn.commit().map_err(|e| {
            let err = ctx.db_error::<Self>(Some(conn), e);
            let _ = conn.rollback();
            Failed::new(Left::Ended, err)
        })
    }

    fn rollback(conn: &mut Conn, open: Option<&str>) -> diesel::QueryResult<()> {
        let Some(xid) = open else {
            return crate::backend::generic_rollback(conn);
        };
        // Inside an XA branch MariaDB refuses ROLLBACK (XAER_RMFAIL): end it with XA.
        let outcome = rollback_active(conn, xid);
        if outcome.is_err() {
            // Closing the connection rolls the branch back; never pool it.
            conn.mark_broken();
        }
        outcome
    }

    fn commit_prepared(conn: &mut Conn, id: &str) -> diesel::QueryResult<()> {
        commit_prepared(conn, id)
    }

    fn rollback_prepared(conn: &mut Conn, id: &str) -> diesel::QueryResult<()> {
        rollback_prepared(conn, id)
    }

    fn retry_on_fresh(
        conn: &mut Conn,
        id: &str,
        outcome: diesel::QueryResult<()>,
        op: PhaseTwo,
    ) -> diesel::QueryResult<()> {
        retry_until_detached(conn, id, outcome, op)
    }

    fn after_failure(conn: &mut Conn, _id: &str) -> Option<AfterFailure> {
        // On the connection that owns the branch, XAER_NOTA means the branch is gone.
        (error_number(conn) == Some(XAER_NOTA)).then_some(AfterFailure::Resolved)
    }

    fn is_transient(conn: Option<&mut Conn>, error: &DieselError) -> bool {
        is_transient(conn, error)
    }

    fn select_i64(sql: &str) -> String {
        format!("SELECT CAST(({sql}) AS SIGNED) AS value")
    }

    fn list_prepared(conn: &mut Conn) -> diesel::QueryResult<Vec<Listed>> {
        recover(conn).map(|xids| {
            xids.into_iter()
                .map(|x| Listed {
                    id: x.id,
                    owner: |l, me| match &l.xa {
                        Some((format_id, gtrid, bqual)) => {
                            Owner::of_xa(*format_id, gtrid, bqual, me)
                        }
                        None => Owner::Foreign,
                    },
                    xa: Some((x.format_id, x.gtrid, x.bqual)),
                })
                .collect()
        })
    }
}

/// The one-phase commit of an XA branch (a lone writer, or a read-only engine's vote).
fn commit_branch(conn: &mut Conn, ctx: &Ctx<'_>, xid: &str) -> std::result::Result<(), Failed> {
    commit_one_phase(conn, xid).map_err(|(e, transient)| {
        let left = if conn.depth().is_err() {
            Left::Discard // marked broken: closing it rolls the branch back
        } else {
            Left::Ended
        };
        let error = crate::error::Error::Database {
            engine: ctx.name.to_owned(),
            transient,
            source: e,
        };
        Failed::new(left, error)
    })
}

/// One row of `XA RECOVER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecoveredXid {
    /// The xid as SQL (`X'<gtrid hex>',X'<bqual hex>',<formatID>`): the id
    /// [`Protocol::commit_prepared`] takes, whatever bytes the parts hold.
    pub id: String,
    /// The format id.
    pub format_id: i64,
    /// The global transaction id.
    pub gtrid: Vec<u8>,
    /// The branch qualifier.
    pub bqual: Vec<u8>,
}

/// The prepared XA branches the server lists (`XA RECOVER`: every user's for a user with
/// `XA_RECOVER_ADMIN` or, on MariaDB, `SUPER`; otherwise the user's own).
pub(crate) fn recover(conn: &mut Conn) -> diesel::QueryResult<Vec<RecoveredXid>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        #[diesel(column_name = formatID)]
        format_id: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        gtrid_length: i64,
        #[diesel(sql_type = diesel::sql_types::Binary)]
        data: Vec<u8>,
    }
    let Some(my) = <diesel::MysqlConnection as crate::conn::sealed::Sealed>::from_conn(conn) else {
        return Ok(Vec::new());
    };
    let rows: Vec<Row> = diesel::RunQueryDsl::load(diesel::sql_query("XA RECOVER"), my)?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let split = usize::try_from(row.gtrid_length).ok()?;
            let gtrid = row.data.get(..split)?.to_vec();
            let bqual = row.data.get(split..)?.to_vec();
            Some(RecoveredXid {
                id: format!("X'{}',X'{}',{}", hex(&gtrid), hex(&bqual), row.format_id),
                format_id: row.format_id,
                gtrid,
                bqual,
            })
        })
        .collect())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Takes the named lock of node `node` on `conn`'s database without waiting (`GET_LOCK`,
/// named `sqlassist:<node>:<16 hex of the database name's md5>`, at most 51 characters:
/// lock names are server-wide and limited to 64), after telling `me` this connection's
/// id: `None` when taken, or `Some(holder connection id)` when another session holds it.
pub(crate) fn presence_lock(
    conn: &mut diesel::MysqlConnection,
    node: &str,
    me: impl FnOnce(i64),
) -> diesel::QueryResult<Option<Option<i64>>> {
    use diesel::sql_types::{BigInt, Nullable, Text};
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Me {
        #[diesel(sql_type = BigInt)]
        me: i64,
    }
    #[derive(diesel::QueryableByName)]
    struct Value {
        #[diesel(sql_type = Nullable<BigInt>)]
        value: Option<i64>,
    }
    const NAME: &str = "CONCAT('sqlassist:', ?, ':', LEFT(MD5(COALESCE(DATABASE(), '')), 16))";
    me(
        diesel::sql_query("SELECT CAST(CONNECTION_ID() AS SIGNED) AS me")
            .get_result::<Me>(conn)?
            .me,
    );
    let taken = diesel::sql_query(format!(
        "SELECT CAST(GET_LOCK({NAME}, 0) AS SIGNED) AS value"
    ))
    .bind::<Text, _>(node)
    .get_result::<Value>(conn)?;
    if taken.value == Some(1) {
        return Ok(None);
    }
    let holder = diesel::sql_query(format!(
        "SELECT CAST(IS_USED_LOCK({NAME}) AS SIGNED) AS value"
    ))
    .bind::<Text, _>(node)
    .get_result::<Value>(conn)?;
    Ok(Some(holder.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xids_fit_xa_limits_for_the_longest_node_and_engine_name() {
        let node = crate::NodeId::new(&"n".repeat(crate::MAX_NODE_ID_LEN)).expect("valid");
        let engine = "e".repeat(64);
        let x = xid(BranchName {
            node: &node,
            incarnation: u32::MAX,
            sequence: u64::MAX,
            engine: &engine,
        });
        let parts: Vec<&str> = x.split(',').map(|p| p.trim_matches('\'')).collect();
        assert_eq!(parts.len(), 2);
        assert!(parts[0].len() <= 64 && parts[0].starts_with("sqlassist_"));
        assert!(parts[1].len() <= 64);
        assert_eq!(begin_sql(&x, false), format!("XA START {x}"));
    }

    #[test]
    fn a_serialization_failure_is_transient_without_asking_the_server() {
        assert!(is_transient(
            None,
            &DieselError::DatabaseError(
                DatabaseErrorKind::SerializationFailure,
                Box::new(String::new())
            )
        ));
        // Without a connection to ask for the number, the message is not read.
        let english = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("Lock wait timeout exceeded; try restarting transaction".to_owned()),
        );
        assert!(!is_transient(None, &english));
    }
}
