//! SQLite: a one-phase resource.
//!
//! SQLite cannot prepare. A managed SQLite session commits in its vote and is voted after
//! every two-phase resource, so every other resource is already prepared when it commits
//! (zope's "last resource" rule); a failed SQLite commit rolls the prepared ones back.
//! Writer connections begin with `BEGIN IMMEDIATE` (the write lock is taken at the start,
//! so two writers queue on `busy_timeout` instead of failing at their first write), and
//! read-only engines open the file with `mode=ro`.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

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
