//! SQLite: a one-phase resource.
//!
//! SQLite cannot prepare. A managed SQLite session commits in its vote and is voted after
//! every two-phase resource, so every other resource is already prepared when it commits
//! (zope's "last resource" rule); a failed SQLite commit rolls the prepared ones back.
//! Writer connections begin with `BEGIN IMMEDIATE` (the write lock is taken at the start,
//! so two writers queue on `busy_timeout` instead of failing at their first write), and
//! read-only engines open the file with `mode=ro`.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::backend::{AfterFailure, Ctx, Failed, Left, Protocol, Voted};
use crate::branch::{BranchName, Listed};
use crate::conn::Conn;
use crate::options::EngineOptions;

/// SQL run on every new connection. A read-only engine also sets `query_only`, so that
/// writes fail even where `mode=ro` does not apply (an in-memory database).
pub(crate) fn setup_sql(options: &EngineOptions) -> String {
    let mut sql = format!(
        "PRAGMA busy_timeout = {};",
        options.busy_timeout().as_millis()
    );
    if options.is_read_only() {
        sql.push_str("PRAGMA query_only = ON;");
    }
    sql
}

/// How a session opens its transaction.
pub(crate) fn begin_sql(read_only: bool) -> &'static str {
    if read_only {
        "BEGIN"
    } else {
        "BEGIN IMMEDIATE"
    }
}

/// SQLite reports lock contention as `SQLITE_BUSY` ("database is locked"); a retry in a
/// new transaction may succeed.
pub(crate) fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => info.message().contains("database is locked"),
        _ => false,
    }
}

/// Makes Diesel re-read whether SQLite still has a transaction open, after a statement that
/// may have ended it (`COMMIT`, `END`, `ROLLBACK` sent as raw SQL). Diesel asks SQLite
/// (`sqlite3_get_autocommit`) only after a failed `batch_execute`, and then resets its
/// depth to 0 when no transaction is open: this sends a statement that fails to compile
/// (in process: nothing reaches a server, nothing changes in the transaction), so that
/// [`Conn::depth`] tells the truth afterwards.
pub(crate) fn refresh_transaction_status(conn: &mut Conn) {
    let _ = conn.batch_execute("SELECT sqlassist_transaction_status()");
}

/// SQLite's [`Protocol`]: a one-phase resource (see the module docs).
pub(crate) struct Sqlite;

impl Protocol for Sqlite {
    const CAN_PREPARE: bool = false;
    const ENFORCES_READ_ONLY: bool = true;

    fn begin(
        conn: &mut Conn,
        ctx: &Ctx<'_>,
        _branch: Option<BranchName<'_>>,
    ) -> diesel::QueryResult<Option<String>> {
        conn.begin_with(begin_sql(ctx.engine.is_read_only()))
            .map(|()| None)
    }

    fn vote(
        conn: &mut Conn,
        ctx: &Ctx<'_>,
        _open: Option<&str>,
        _branch: BranchName<'_>,
    ) -> Result<Voted, Failed> {
        if ctx.engine.is_read_only() {
            return conn
                .rollback()
                .map(|()| Voted::ReadOnly)
                .map_err(|e| Failed::new(Left::Ended, ctx.db_error::<Self>(None, e)));
        }
        match conn.commit() {
            Ok(()) => Ok(Voted::Committed),
            Err(e) => {
                let _ = conn.rollback();
                Err(Failed::new(Left::Ended, ctx.db_error::<Self>(None, e)))
            }
        }
    }

    fn commit(conn: &mut Conn, ctx: &Ctx<'_>, _open: Option<&str>) -> Result<(), Failed> {
        conn.commit().map_err(|e| {
            let err = ctx.db_error::<Self>(Some(conn), e);
            let _ = conn.rollback();
            Failed::new(Left::Ended, err)
        })
    }

    fn commit_prepared(_conn: &mut Conn, _id: &str) -> diesel::QueryResult<()> {
        Err(no_prepared_transactions())
    }

    fn rollback_prepared(_conn: &mut Conn, _id: &str) -> diesel::QueryResult<()> {
        Err(no_prepared_transactions())
    }

    fn after_failure(_conn: &mut Conn, _id: &str) -> Option<AfterFailure> {
        None
    }

    fn is_transient(_conn: Option<&mut Conn>, error: &DieselError) -> bool {
        is_transient(error)
    }

    fn refresh_status(conn: &mut Conn) {
        if conn.tracker().is_some_and(|t| t.take_may_have_ended()) {
            refresh_transaction_status(conn);
        }
    }

    fn list_prepared(_conn: &mut Conn) -> diesel::QueryResult<Vec<Listed>> {
        Ok(Vec::new()) // SQLite never prepares
    }
}

/// SQLite never prepares: a session never asks it to finish a prepared branch.
fn no_prepared_transactions() -> DieselError {
    DieselError::QueryBuilderError("sqlite has no prepared transactions".into())
}
