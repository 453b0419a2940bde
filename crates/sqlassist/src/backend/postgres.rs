//! PostgreSQL: two-phase commit with `PREPARE TRANSACTION`.
//!
//! What each phase sends:
//!
//! | step | SQL |
//! |---|---|
//! | first use | `BEGIN` (through Diesel, so nested `transaction()` calls are savepoints) |
//! | vote, after a statement that may write | `PREPARE TRANSACTION '<gid>'` (the engine's first such vote runs `SHOW max_prepared_transactions` before it) |
//! | vote, after reads only | `SELECT txid_current_if_assigned() IS NOT NULL`, then `ROLLBACK` (nothing written: votes read-only) or `PREPARE TRANSACTION '<gid>'` |
//! | vote or commit of an engine declared read-only | `SELECT txid_current_if_assigned() IS NOT NULL`, then `ROLLBACK`; the commit fails if it wrote |
//! | finish | `COMMIT PREPARED '<gid>'`; after an error the server answered, whether `pg_prepared_xacts` still lists the gid |
//! | abort after vote | `ROLLBACK PREPARED '<gid>'` |
//! | abort before vote | `ROLLBACK` |
//! | one-phase commit | `COMMIT` |
//!
//! Before voting or committing, the session checks the transaction did not fail: Diesel
//! records libpq's transaction status after every statement, so this costs no round trip.
//! PostgreSQL would otherwise turn the `PREPARE` or `COMMIT` of a failed transaction into a
//! silent rollback.
//!
//! A session that ran only reads (by the first word of each statement) asks the server
//! whether it wrote anything: PostgreSQL assigns a transaction id at the first write, so
//! `txid_current_if_assigned()` is `NULL` exactly when nothing was written; the session
//! then rolls back and votes read-only. The SQL text only decides whether to ask; the
//! answer always comes from the server, so a write is never dropped. The question never
//! fails on purpose: normal operation writes no `ERROR` into the server log.
//!
//! An engine declared read-only always asks and always rolls back: if its transaction was
//! assigned an id anyway (`SET TRANSACTION READ WRITE` lifts the read-only default), the
//! commit fails with [`Error::ReadOnlyEngineWrote`] naming the engine.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};

use crate::backend::{AfterFailure, Ctx, Failed, Left, Protocol, Voted};
use crate::branch::{BranchName, Listed};
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::options::EngineOptions;
use crate::url::DatabaseUrl;

/// SQL run on every new connection: session characteristics from the engine options.
pub(crate) fn setup_sql(options: &EngineOptions) -> Result<String> {
    let mut sql = String::new();
    if let Some(level) = options.isolation_level() {
        sql.push_str(&format!(
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {};",
            level.as_sql()
        ));
    }
    if options.is_read_only() {
        sql.push_str("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;");
    }
    if let Some(timeout) = options.statement_timeout() {
        sql.push_str(&format!("SET statement_timeout = {};", timeout.as_millis()));
    }
    if let Some(name) = options.application_name() {
        sql.push_str(&format!("SET application_name = {};", quote_literal(name)?));
    }
    Ok(sql)
}

/// Quotes a string as a SQL literal; refuses control characters.
pub(crate) fn quote_literal(value: &str) -> Result<String> {
    if value.chars().any(|c| c.is_control()) {
        return Err(Error::InvalidSetting {
            key: "application_name".into(),
            value: crate::redact::setting("application_name", &value.escape_debug().to_string()),
            expected: "text without control characters",
        });
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    max_prepared_transactions: String,
}

/// Checks that the server accepts `PREPARE TRANSACTION`.
pub(crate) fn check_two_phase(conn: &mut PgConnection, url: &DatabaseUrl) -> Result<()> {
    let setting: Setting = diesel::sql_query("SHOW max_prepared_transactions")
        .get_result(conn)
        .map_err(|source| Error::Connect {
            url: url.redacted().to_owned(),
            reason: crate::redact::message(&source.to_string(), url),
        })?;
    if setting.max_prepared_transactions.trim() == "0" {
        return Err(Error::PreparedTransactionsDisabled {
            url: url.redacted().to_owned(),
        });
    }
    Ok(())
}

/// Same check, on a pooled connection (inside or outside a transaction).
pub(crate) fn check_two_phase_conn(conn: &mut Conn, url: &DatabaseUrl) -> Result<()> {
    #[allow(irrefutable_let_patterns)]
    if let Conn::Pg(c) = conn {
        return check_two_phase(c, url);
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Assigned {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    assigned: bool,
}

/// Whether the server assigned the open transaction a transaction id: PostgreSQL does so
/// at the transaction's first write (of any kind, through any function), and never for
/// reads. One round trip; the query cannot fail on a healthy transaction, so normal
/// operation writes no `ERROR` into the server log.
fn wrote(conn: &mut Conn) -> std::result::Result<bool, DieselError> {
    let Some(pg) = <PgConnection as crate::conn::sealed::Sealed>::from_conn(conn) else {
        return Ok(true); // not PostgreSQL: assume the worst
    };
    diesel::sql_query("SELECT txid_current_if_assigned() IS NOT NULL AS assigned")
        .get_result::<Assigned>(pg)
        .map(|a| a.assigned)
}

/// The first half of the vote. The session has already checked (without a round trip)
/// that the transaction did not fail. When a statement that may write ran, the transaction
/// must be prepared: returns `false` without a round trip. Otherwise asks the server
/// whether a transaction id was assigned: if not, nothing was written, the transaction is
/// rolled back and this returns `true` (the session votes read-only: two round trips, as a
/// commit of the reads would be).
pub(crate) fn rolled_back_read_only(conn: &mut Conn) -> std::result::Result<bool, DieselError> {
    let may_have_written = conn.tracker().is_none_or(|t| t.may_have_written());
    if may_have_written || wrote(conn)? {
        return Ok(false);
    }
    conn.rollback()?;
    Ok(true)
}

/// The second half of the vote: `PREPARE TRANSACTION`.
pub(crate) fn prepare(conn: &mut Conn, gid: &str) -> std::result::Result<(), DieselError> {
    conn.batch_execute(&format!("PREPARE TRANSACTION '{gid}'"))?;
    // libpq reports the session idle after PREPARE and Diesel resets its depth; make sure
    // of it whatever the Diesel version does.
    if conn.depth().unwrap_or(0) != 0 {
        conn.forget_transaction();
    }
    Ok(())
}

/// Ends the transaction of an engine declared read-only: asks the server whether it wrote
/// (`SET TRANSACTION READ WRITE` lifts the engine's read-only default), then rolls back in
/// every case, so nothing a read-only engine did is ever committed. Returns whether it
/// wrote; the caller then fails the commit.
pub(crate) fn end_read_only(conn: &mut Conn) -> std::result::Result<bool, DieselError> {
    let wrote = match wrote(conn) {
        Ok(wrote) => wrote,
        Err(e) => {
            let _ = conn.rollback();
            return Err(e);
        }
    };
    conn.rollback()?;
    Ok(wrote)
}

/// Whether the server still lists the prepared transaction `gid` (any session may read
/// `pg_prepared_xacts`). Asked only after phase two failed while the server answered: the
/// answer tells a branch resolved outside this transaction from one still in doubt,
/// whatever language the server's messages are in.
pub(crate) fn is_prepared(conn: &mut Conn, gid: &str) -> std::result::Result<bool, DieselError> {
    let Some(pg) = <PgConnection as crate::conn::sealed::Sealed>::from_conn(conn) else {
        return Ok(true);
    };
    diesel::sql_query(format!(
        "SELECT EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE gid = '{gid}') AS assigned"
    ))
    .get_result::<Assigned>(pg)
    .map(|a| a.assigned)
}

/// Phase two on any connection outside a transaction block.
pub(crate) fn commit_prepared(conn: &mut Conn, gid: &str) -> std::result::Result<(), DieselError> {
    conn.batch_execute(&format!("COMMIT PREPARED '{gid}'"))
}

/// Rolls back a prepared transaction.
pub(crate) fn rollback_prepared(
    conn: &mut Conn,
    gid: &str,
) -> std::result::Result<(), DieselError> {
    conn.batch_execute(&format!("ROLLBACK PREPARED '{gid}'"))
}

/// Whether a PostgreSQL error says the work may succeed if retried: serialization
/// failure (40001, classified by Diesel from the SQLSTATE) or deadlock (40P01).
///
/// Diesel 2.3 keeps the SQLSTATE of an error in a private type and maps only eight codes
/// to a [`DatabaseErrorKind`]; 40P01 is not one of them, and reading the field from the
/// error box would need `unsafe`, which this workspace forbids. A deadlock is therefore
/// still recognised by the server's English message: on a server whose `lc_messages` is
/// not English, or for an error raised with `RAISE ... USING ERRCODE = '40P01'`, it is not
/// classified as transient.
pub(crate) fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => info.message().starts_with("deadlock detected"),
        _ => false,
    }
}

/// Ends the transaction of an engine declared read-only: rolls it back, and fails with
/// [`Error::ReadOnlyEngineWrote`] when the server says it wrote.
fn end_read_only_checked(conn: &mut Conn, ctx: &Ctx<'_>) -> Result<()> {
    match end_read_only(conn) {
        Ok(false) => Ok(()),
        Ok(true) => {
            tracing::error!(engine = %ctx.name, "a read-only engine wrote (SET TRANSACTION READ WRITE?): rolled back");
            Err(Error::ReadOnlyEngineWrote {
                engine: ctx.name.to_owned(),
            })
        }
        Err(e) => Err(ctx.db_error::<Postgres>(None, e)),
    }
}

/// PostgreSQL's [`Protocol`]: `PREPARE TRANSACTION` (see the module docs).
pub(crate) struct Postgres;

impl Protocol for Postgres {
    const CAN_PREPARE: bool = true;
    const ENFORCES_READ_ONLY: bool = false;

    fn begin(
        conn: &mut Conn,
        _ctx: &Ctx<'_>,
        _branch: Option<BranchName<'_>>,
    ) -> diesel::QueryResult<Option<String>> {
        // The branch is named at the vote, by PREPARE TRANSACTION.
        conn.begin_with("BEGIN").map(|()| None)
    }

    fn vote(
        conn: &mut Conn,
        ctx: &Ctx<'_>,
        _open: Option<&str>,
        branch: BranchName<'_>,
    ) -> std::result::Result<Voted, Failed> {
        if ctx.engine.is_read_only() {
            return end_read_only_checked(conn, ctx)
                .map(|()| Voted::ReadOnly)
                .map_err(|e| Failed::lasting(Left::Ended, e));
        }
        match rolled_back_read_only(conn) {
            Ok(true) => return Ok(Voted::ReadOnly),
            Ok(false) => {}
            Err(e) => return Err(Failed::new(Left::Open, ctx.db_error::<Self>(None, e))),
        }
        // Only now is the server's setting needed (once per engine): a lone session, or one
        // that wrote nothing, commits on a server without prepared transactions. The
        // transaction stays open; abort rolls it back.
        if !ctx.engine.is_two_phase_verified() {
            check_two_phase_conn(conn, ctx.engine.url())
                .map_err(|e| Failed::lasting(Left::Open, e))?;
            ctx.engine.set_two_phase_verified();
        }
        // The gid (see `crate::branch`) needs no quoting and stays under 200 bytes.
        let gid = branch.to_gid();
        match prepare(conn, &gid) {
            Ok(()) => Ok(Voted::Prepared(gid)),
            Err(e) => Err(Failed::new(Left::Open, ctx.db_error::<Self>(None, e))),
        }
    }

    fn commit(
        conn: &mut Conn,
        ctx: &Ctx<'_>,
        _open: Option<&str>,
    ) -> std::result::Result<(), Failed> {
        if ctx.engine.is_read_only() {
            return end_read_only_checked(conn, ctx).map_err(|e| Failed::lasting(Left::Ended, e));
        }
        // The session refused a failed transaction, which PostgreSQL would otherwise answer
        // with a silent rollback: a plain COMMIT is safe here.
        conn.commit().map_err(|e| {
            let err = ctx.db_error::<Self>(Some(conn), e);
            let _ = conn.rollback();
            Failed::new(Left::Ended, err)
        })
    }

    fn commit_prepared(conn: &mut Conn, id: &str) -> diesel::QueryResult<()> {
        commit_prepared(conn, id)
    }

    fn rollback_prepared(conn: &mut Conn, id: &str) -> diesel::QueryResult<()> {
        rollback_prepared(conn, id)
    }

    fn after_failure(conn: &mut Conn, id: &str) -> Option<AfterFailure> {
        match is_prepared(conn, id) {
            Ok(false) => Some(AfterFailure::Resolved),
            // Still prepared, on a working connection: a fresh one would get the same
            // answer. The branch waits for recovery.
            Ok(true) => Some(AfterFailure::StillPrepared),
            Err(_) => None,
        }
    }

    fn is_transient(_conn: Option<&mut Conn>, error: &DieselError) -> bool {
        is_transient(error)
    }

    fn list_prepared(conn: &mut Conn) -> diesel::QueryResult<Vec<Listed>> {
        #[derive(QueryableByName)]
        struct Gid {
            #[diesel(sql_type = diesel::sql_types::Text)]
            gid: String,
        }
        let Some(pg) = <PgConnection as crate::conn::sealed::Sealed>::from_conn(conn) else {
            return Ok(Vec::new());
        };
        // The view is cluster-wide; a branch of another database can be finished only from
        // a connection to that database.
        diesel::sql_query(
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared, gid",
        )
        .load::<Gid>(pg)
        .map(|rows| rows.into_iter().map(|r| Listed::gid(r.gid)).collect())
    }
}

/// Takes the session-level advisory lock `key` on `conn` without waiting, after telling
/// `me` this session's backend pid: `None` when taken, or `Some(holder pid)` when another
/// session holds it (the holder's pid when `pg_locks` still shows it).
pub(crate) fn presence_lock(
    conn: &mut PgConnection,
    key: i64,
    me: impl FnOnce(i64),
) -> diesel::QueryResult<Option<Option<i64>>> {
    use diesel::sql_types::{BigInt, Bool, Nullable};
    #[derive(QueryableByName)]
    struct Me {
        #[diesel(sql_type = BigInt)]
        me: i64,
    }
    #[derive(QueryableByName)]
    struct Tried {
        #[diesel(sql_type = Bool)]
        taken: bool,
    }
    #[derive(QueryableByName)]
    struct Holder {
        #[diesel(sql_type = Nullable<BigInt>)]
        pid: Option<i64>,
    }
    me(diesel::sql_query("SELECT pg_backend_pid()::bigint AS me")
        .get_result::<Me>(conn)?
        .me);
    let tried = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS taken")
        .bind::<BigInt, _>(key)
        .get_result::<Tried>(conn)?;
    if tried.taken {
        return Ok(None);
    }
    // A bigint advisory key shows as its high half in classid, its low half in objid.
    let holder = diesel::sql_query(
        "SELECT (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = (($1 >> 32) & 4294967295)::bigint::oid \
         AND objid = ($1 & 4294967295)::bigint::oid AND objsubid = 1 LIMIT 1)::bigint AS pid",
    )
    .bind::<BigInt, _>(key)
    .get_result::<Holder>(conn)?;
    Ok(Some(holder.pid))
}
