//! MariaDB and MySQL: unmanaged sessions (plain `BEGIN` / `COMMIT`).
//!
//! Two-phase commit through XA is not implemented yet: registering a *managed* MySQL
//! engine fails with [`Error::Unsupported`](crate::Error::Unsupported), so no transaction
//! can believe it committed such an engine atomically.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::error::Result;
use crate::options::EngineOptions;

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

/// Deadlocks (1213) and lock wait timeouts (1205): Diesel reports them as serialization
/// failures or with the server's message.
pub(crate) fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => {
            let m = info.message();
            m.starts_with("Deadlock found") || m.starts_with("Lock wait timeout exceeded")
        }
        _ => false,
    }
}
