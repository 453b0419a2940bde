//! SQLite: a one-phase resource.
//!
//! SQLite cannot prepare. A managed SQLite session commits in its vote and is voted after
//! every two-phase resource, so every other resource is already prepared when it commits
//! (zope's "last resource" rule); a failed SQLite commit rolls the prepared ones back.
//! Writer connections begin with `BEGIN IMMEDIATE` (the write lock is taken at the start,
//! so two writers queue on `busy_timeout` instead of failing at their first write), and
//! read-only engines open the file with `mode=ro`.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use transaction::{Branch, DecisionRecord, TransactionId};

use crate::backend::{AfterFailure, Ctx, Failed, Left, Protocol, Voted};
use crate::branch::{BranchName, Listed};
use crate::conn::Conn;
use crate::error::Error;
use crate::options::EngineOptions;

/// The table in which a managed SQLite writer keeps the commit decisions its own commits
/// carried: one row per prepared branch of the decided transaction, written inside the
/// transaction that commits SQLite's work, removed by recovery once every branch is
/// finished.
pub(crate) const DECISION_TABLE: &str = "sqlassist_decision";

/// Creates [`DECISION_TABLE`] when it is missing (inside the carrying transaction).
const CREATE_DECISION_TABLE: &str = "CREATE TABLE IF NOT EXISTS sqlassist_decision (\
    coordinator INTEGER NOT NULL, \
    sequence INTEGER NOT NULL, \
    branch INTEGER NOT NULL, \
    resource TEXT NOT NULL, \
    branch_id TEXT, \
    decided_at INTEGER NOT NULL, \
    PRIMARY KEY (coordinator, sequence, branch))";

/// The `synchronous` setting a writer needs to carry decisions: `FULL`.
const SYNCHRONOUS_FULL: i32 = 2;

#[derive(QueryableByName)]
struct Synchronous {
    #[diesel(sql_type = Integer)]
    synchronous: i32,
}

/// `PRAGMA synchronous` on `conn`.
pub(crate) fn synchronous(conn: &mut diesel::SqliteConnection) -> diesel::QueryResult<i32> {
    diesel::sql_query("PRAGMA synchronous")
        .get_result::<Synchronous>(conn)
        .map(|s| s.synchronous)
}

/// Refuses a writer whose commits may not survive a power loss (see
/// [`Error::SqliteNotDurable`]); `engine` names it in the error.
pub(crate) fn check_durable(
    conn: &mut diesel::SqliteConnection,
    engine: &str,
) -> crate::Result<()> {
    let value = synchronous(conn).map_err(|source| Error::Database {
        engine: engine.to_owned(),
        transient: is_transient(&source),
        source,
    })?;
    if value < SYNCHRONOUS_FULL {
        return Err(Error::SqliteNotDurable {
            engine: engine.to_owned(),
            synchronous: value,
        });
    }
    Ok(())
}

#[derive(QueryableByName)]
struct CarriedRow {
    #[diesel(sql_type = BigInt)]
    coordinator: i64,
    #[diesel(sql_type = BigInt)]
    sequence: i64,
    #[diesel(sql_type = Text)]
    resource: String,
    #[diesel(sql_type = Nullable<Text>)]
    branch_id: Option<String>,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The SQLite connection inside `conn`, which [`dispatch!`](crate::backend::dispatch)
/// hands the SQLite protocol only.
fn sqlite(conn: &mut Conn) -> &mut diesel::SqliteConnection {
    #[allow(irrefutable_let_patterns, unreachable_patterns)]
    match conn {
        Conn::Sqlite(c) => c,
        _ => unreachable!("the SQLite protocol is given SQLite connections only"),
    }
}

/// Stored as SQLite's 64-bit integers, bit for bit.
fn as_stored(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

fn from_stored(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

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

    const CARRIES_DECISION: bool = true;

    fn carry_decision(
        conn: &mut Conn,
        ctx: &Ctx<'_>,
        decision: &DecisionRecord,
    ) -> Result<(), Error> {
        let c = sqlite(conn);
        {
            check_durable(c, ctx.name)?;
            let decided_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let db = |source| ctx.db_error::<Self>(None, source);
            diesel::sql_query(CREATE_DECISION_TABLE)
                .execute(c)
                .map_err(db)?;
            for (i, branch) in decision.branches.iter().enumerate() {
                diesel::sql_query(
                    "INSERT INTO sqlassist_decision \
                     (coordinator, sequence, branch, resource, branch_id, decided_at) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind::<BigInt, _>(as_stored(decision.transaction.coordinator()))
                .bind::<BigInt, _>(as_stored(decision.transaction.sequence()))
                .bind::<BigInt, _>(i64::try_from(i).unwrap_or(i64::MAX))
                .bind::<Text, _>(&branch.resource)
                .bind::<Nullable<Text>, _>(branch.branch_id.as_deref())
                .bind::<BigInt, _>(decided_at)
                .execute(c)
                .map_err(db)?;
            }
            Ok(())
        }
    }

    fn carried_decisions(conn: &mut Conn) -> diesel::QueryResult<Vec<DecisionRecord>> {
        let c = sqlite(conn);
        {
            let exists = diesel::sql_query(
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?",
            )
            .bind::<Text, _>(DECISION_TABLE)
            .get_result::<Count>(c)?;
            if exists.n == 0 {
                return Ok(Vec::new());
            }
            let rows = diesel::sql_query(
                "SELECT coordinator, sequence, resource, branch_id FROM sqlassist_decision \
                 ORDER BY coordinator, sequence, branch",
            )
            .load::<CarriedRow>(c)?;
            let mut decisions: Vec<DecisionRecord> = Vec::new();
            for row in rows {
                let txn = TransactionId::from_parts(
                    from_stored(row.coordinator),
                    from_stored(row.sequence),
                );
                let branch = Branch {
                    resource: row.resource,
                    branch_id: row.branch_id,
                };
                match decisions.last_mut() {
                    Some(d) if d.transaction == txn => d.branches.push(branch),
                    _ => decisions.push(DecisionRecord {
                        transaction: txn,
                        branches: vec![branch],
                    }),
                }
            }
            Ok(decisions)
        }
    }

    fn forget_carried(conn: &mut Conn, txns: &[TransactionId]) -> diesel::QueryResult<()> {
        if txns.is_empty() {
            return Ok(());
        }
        let c = sqlite(conn);
        {
            // One transaction (one sync) for the whole batch.
            diesel::connection::Connection::transaction(c, |c| {
                for txn in txns {
                    diesel::sql_query(
                        "DELETE FROM sqlassist_decision WHERE coordinator = ? AND sequence = ?",
                    )
                    .bind::<BigInt, _>(as_stored(txn.coordinator()))
                    .bind::<BigInt, _>(as_stored(txn.sequence()))
                    .execute(c)?;
                }
                Ok(())
            })
        }
    }
}

/// SQLite never prepares: a session never asks it to finish a prepared branch.
fn no_prepared_transactions() -> DieselError {
    DieselError::QueryBuilderError("sqlite has no prepared transactions".into())
}
