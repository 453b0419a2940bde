//! PostgreSQL: two-phase commit with `PREPARE TRANSACTION`.
//!
//! What each phase sends:
//!
//! | step | SQL |
//! |---|---|
//! | first use | `BEGIN` (through Diesel, so nested `transaction()` calls are savepoints) |
//! | vote, after a statement that may write | `PREPARE TRANSACTION '<gid>'` |
//! | vote, after reads only | `SELECT (CASE WHEN txid_current_if_assigned() IS NULL THEN '<sentinel>' END)::int; PREPARE TRANSACTION '<gid>'` in one round trip |
//! | finish | `COMMIT PREPARED '<gid>'` |
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
//! whether it wrote anything: the `SELECT` before `PREPARE` raises an error carrying a
//! sentinel when no transaction id was assigned, and the session votes read-only and rolls
//! back. The SQL text only decides whether to ask; the answer always comes from the server,
//! so a write is never dropped.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};

use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::options::EngineOptions;
use crate::url::DatabaseUrl;

const READ_ONLY_SENTINEL: &str = "sqlassist-vote-read-only";

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

/// Same check, on a pooled connection outside any transaction.
pub(crate) fn check_two_phase_conn(conn: &mut Conn, url: &DatabaseUrl) -> Result<()> {
    #[allow(irrefutable_let_patterns)]
    if let Conn::Pg(c) = conn {
        return check_two_phase(c, url);
    }
    Ok(())
}

/// What the vote found.
pub(crate) enum Prepared {
    /// The transaction is prepared under the gid.
    Yes,
    /// The transaction wrote nothing and was rolled back.
    ReadOnly,
}

/// The vote. The session has already checked (without a round trip) that the transaction
/// did not fail. When a statement that may write ran, this sends `PREPARE TRANSACTION`
/// alone; otherwise it first asks the server, in the same round trip, whether a
/// transaction id was assigned: if not, nothing was written and the session rolls back and
/// votes read-only.
pub(crate) fn prepare(conn: &mut Conn, gid: &str) -> std::result::Result<Prepared, DieselError> {
    let may_have_written = conn.tracker().is_none_or(|t| t.may_have_written());
    let sql = if may_have_written {
        format!("PREPARE TRANSACTION '{gid}'")
    } else {
        format!(
            "SELECT (CASE WHEN txid_current_if_assigned() IS NULL THEN '{READ_ONLY_SENTINEL}' END)::int; PREPARE TRANSACTION '{gid}'"
        )
    };
    match conn.batch_execute(&sql) {
        Ok(()) => {
            // libpq reports the session idle after PREPARE and Diesel resets its depth;
            // make sure of it whatever the Diesel version does.
            if conn.depth().unwrap_or(0) != 0 {
                conn.forget_transaction();
            }
            Ok(Prepared::Yes)
        }
        Err(DieselError::DatabaseError(_, info)) if info.message().contains(READ_ONLY_SENTINEL) => {
            conn.rollback()?;
            Ok(Prepared::ReadOnly)
        }
        Err(e) => Err(e),
    }
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
/// failure (40001, classified by Diesel from the SQLSTATE) or deadlock (40P01, which
/// Diesel does not classify; recognised by the server's message).
pub(crate) fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => info.message().starts_with("deadlock detected"),
        _ => false,
    }
}
