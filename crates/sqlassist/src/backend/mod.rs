//! The database products sqlassist talks to, and each one's transaction protocol.
//!
//! Every backend implements one crate-private (so sealed) trait, [`Protocol`], in one file:
//! how a session begins, votes, finishes, commits in one phase and rolls back, how its
//! errors are classified, whether a branch is still prepared after a failed phase two, and
//! the operations recovery needs (list the prepared branches of the database, commit or
//! roll back one by id from any connection). Sessions reach a backend only through
//! [`dispatch!`], a `match` on the connection (or the [`Backend`]) that names the
//! implementing type: static dispatch, no allocation, no trait object. A new backend is one
//! file implementing [`Protocol`] plus one line in each `match` of this module.

use std::fmt;

#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

/// A database backend, chosen from the URL scheme.
///
/// # Examples
///
/// ```
/// use sqlassist::{Backend, DatabaseUrl};
///
/// let url = DatabaseUrl::parse("sqlite://")?;
/// assert_eq!(url.backend(), Backend::Sqlite);
/// // `Display` gives the dialect name, as in SQLAlchemy URLs.
/// assert_eq!(Backend::Postgres.to_string(), "postgresql");
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// PostgreSQL through libpq (`postgresql://`). Cargo feature `postgres`.
    Postgres,
    /// MySQL or MariaDB through libmysqlclient/libmariadb (`mysql://`). Cargo feature `mysql`.
    Mysql,
    /// SQLite, bundled or system (`sqlite://`). Cargo feature `sqlite`.
    Sqlite,
}

impl Backend {
    /// The cargo feature of `sqlassist` that compiles this backend in.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Backend;
    /// assert_eq!(Backend::Postgres.feature(), "postgres");
    /// ```
    pub fn feature(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
            Backend::Sqlite => "sqlite",
        }
    }

    /// Whether this build of `sqlassist` has the backend's cargo feature enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Backend;
    /// // `sqlite` is a default feature.
    /// assert!(Backend::Sqlite.is_enabled());
    /// ```
    pub fn is_enabled(self) -> bool {
        match self {
            Backend::Postgres => cfg!(feature = "postgres"),
            Backend::Mysql => cfg!(feature = "mysql"),
            Backend::Sqlite => cfg!(feature = "sqlite"),
        }
    }
}

impl Backend {
    /// Itself: lets [`dispatch!`] take a backend as well as a connection or an engine.
    pub(crate) fn backend(self) -> Backend {
        self
    }

    /// See [`Protocol::CAN_PREPARE`].
    pub(crate) fn can_prepare(self) -> bool {
        dispatch!(self, B => B::CAN_PREPARE)
    }

    /// See [`Protocol::ENFORCES_READ_ONLY`].
    pub(crate) fn enforces_read_only(self) -> bool {
        dispatch!(self, B => B::ENFORCES_READ_ONLY)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "postgresql",
            Backend::Mysql => "mysql",
            Backend::Sqlite => "sqlite",
        })
    }
}

use crate::branch::{BranchName, Listed};
use crate::conn::Conn;
use crate::engine::Engine;
use crate::error::Error;
use diesel::result::Error as DieselError;

/// What a session hands its backend: the engine and the name the registry gave it.
pub(crate) struct Ctx<'a> {
    /// The engine's name in its registry (errors name it).
    pub name: &'a str,
    /// The engine.
    pub engine: &'a Engine,
}

impl Ctx<'_> {
    /// The error of a statement that just failed on `conn` (nothing sent since), classified
    /// by backend `B`.
    pub(crate) fn db_error<B: Protocol>(
        &self,
        conn: Option<&mut Conn>,
        source: DieselError,
    ) -> Error {
        Error::Database {
            engine: self.name.to_owned(),
            transient: B::is_transient(conn, &source),
            source,
        }
    }

    /// The session's state does not allow the operation any more (`what` says why).
    pub(crate) fn lost(&self, what: &'static str) -> Error {
        Error::SessionStateLost {
            engine: self.name.to_owned(),
            what,
        }
    }
}

/// A successful vote.
// Which variants occur depends on the backends compiled in.
#[cfg_attr(
    not(all(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]
#[derive(Debug)]
pub(crate) enum Voted {
    /// Nothing to commit: the transaction was rolled back (or committed having written
    /// nothing).
    ReadOnly,
    /// Prepared under this branch id; phase two finishes it.
    Prepared(String),
    /// Committed in the vote (a one-phase resource).
    Committed,
}

/// A failed vote or one-phase commit, and what it left on the connection.
#[derive(Debug)]
pub(crate) struct Failed {
    /// What went wrong.
    pub error: Error,
    /// Whether the transaction manager may retry the whole transaction.
    pub transient: bool,
    /// What is left of the transaction.
    pub left: Left,
}

impl Failed {
    /// A failure, transient when `error` is.
    pub(crate) fn new(left: Left, error: Error) -> Self {
        Self {
            transient: error.is_transient(),
            error,
            left,
        }
    }

    /// A failure that a retry would meet again, whatever `error` says.
    pub(crate) fn lasting(left: Left, error: Error) -> Self {
        Self {
            error,
            transient: false,
            left,
        }
    }
}

/// What a failed vote or one-phase commit left on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Left {
    /// The transaction is still open: an abort rolls it back.
    Open,
    /// The transaction is over (rolled back).
    Ended,
    /// The transaction is over and the connection must not go back to the pool (closing it
    /// rolls back whatever the server still holds).
    Discard,
}

/// What the server says of a prepared branch after phase two failed with an answer.
#[cfg_attr(
    not(all(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// The branch is no longer prepared: it was resolved outside this transaction.
    Resolved,
    /// The branch is still prepared, on a working connection: it waits for recovery.
    StillPrepared,
}

/// Phase two, or the rollback of a prepared branch: one statement on any connection.
pub(crate) type PhaseTwo = fn(&mut Conn, &str) -> diesel::QueryResult<()>;

/// One backend's transaction protocol. Crate-private, so sealed: the backends are this
/// crate's three files.
///
/// Every function that takes a `conn` is called with a connection of this backend (the
/// [`dispatch!`] macro guarantees it).
pub(crate) trait Protocol {
    /// Whether the backend can prepare a transaction (two-phase commit). One that cannot is
    /// a one-phase resource: it commits in its vote, after every other resource voted.
    const CAN_PREPARE: bool;

    /// Whether the server itself refuses the writes of an engine declared read-only in
    /// every transaction (so its session is known clean without asking).
    const ENFORCES_READ_ONLY: bool;

    /// Begins the session's transaction. `branch` names the branch of the transaction a
    /// managed session joined; a backend that names its branch when it begins (XA)
    /// returns the branch id, which comes back to [`vote`](Self::vote),
    /// [`commit`](Self::commit) and [`rollback`](Self::rollback).
    fn begin(
        conn: &mut Conn,
        ctx: &Ctx<'_>,
        branch: Option<BranchName<'_>>,
    ) -> diesel::QueryResult<Option<String>>;

    /// Votes: prepares the transaction as `branch`, or ends it when it wrote nothing, or
    /// commits it (a one-phase resource). `open` is what [`begin`](Self::begin) returned.
    fn vote(
        conn: &mut Conn,
        ctx: &Ctx<'_>,
        open: Option<&str>,
        branch: BranchName<'_>,
    ) -> Result<Voted, Failed>;

    /// Commits the open transaction in one phase (an unmanaged commit, or the lone
    /// resource of a managed transaction). On failure the transaction is rolled back.
    fn commit(conn: &mut Conn, ctx: &Ctx<'_>, open: Option<&str>) -> Result<(), Failed>;

    /// Rolls back the open transaction (not prepared). On error the caller discards the
    /// connection.
    fn rollback(conn: &mut Conn, open: Option<&str>) -> diesel::QueryResult<()> {
        let _ = open;
        generic_rollback(conn)
    }

    /// Phase two: commits prepared branch `id` (as [`Voted::Prepared`] or
    /// [`list_prepared`](Self::list_prepared) named it), on any connection outside a
    /// transaction (MariaDB: the connection that prepared it, while it lives).
    fn commit_prepared(conn: &mut Conn, id: &str) -> diesel::QueryResult<()>;

    /// Rolls back prepared branch `id`, on any connection outside a transaction.
    fn rollback_prepared(conn: &mut Conn, id: &str) -> diesel::QueryResult<()>;

    /// Phase two retried on a fresh connection: `outcome` is the first try of `op`; a
    /// backend whose server releases a dead connection's branch asynchronously retries.
    fn retry_on_fresh(
        conn: &mut Conn,
        id: &str,
        outcome: diesel::QueryResult<()>,
        op: PhaseTwo,
    ) -> diesel::QueryResult<()> {
        let _ = (conn, id, op);
        outcome
    }

    /// After phase two on branch `id` failed with an answer from the server on `conn`
    /// (nothing sent since): what the server says of the branch, or `None` when it cannot
    /// tell (then phase two is retried on a fresh connection).
    fn after_failure(conn: &mut Conn, id: &str) -> Option<AfterFailure>;

    /// Whether `error`, which a statement on `conn` just raised, may succeed when the work
    /// is retried in a new transaction. Classified by SQLSTATE or error number.
    fn is_transient(conn: Option<&mut Conn>, error: &DieselError) -> bool;

    /// After statements the session did not see: makes Diesel's depth tell whether raw SQL
    /// ended the transaction. Most backends know without doing anything.
    fn refresh_status(conn: &mut Conn) {
        let _ = conn;
    }

    /// `sql` wrapped so that it returns one 64-bit integer column named `value`.
    fn select_i64(sql: &str) -> String {
        format!("SELECT CAST(({sql}) AS BIGINT) AS value")
    }

    /// The prepared branches of this database the server lists (any origin).
    fn list_prepared(conn: &mut Conn) -> diesel::QueryResult<Vec<Listed>>;

    /// Whether a managed writer session of this backend carries the commit decision
    /// inside its own one-phase commit ([`transaction::DataManager::carries_decision`]):
    /// a backend that cannot prepare commits last, and its commit must then be the
    /// decision.
    const CARRIES_DECISION: bool = false;

    /// Writes `decision` into the transaction open on `conn`, so that its commit makes
    /// the decision durable (see [`CARRIES_DECISION`](Self::CARRIES_DECISION)).
    fn carry_decision(
        conn: &mut Conn,
        ctx: &Ctx<'_>,
        decision: &transaction::DecisionRecord,
    ) -> Result<(), Error> {
        let _ = (conn, decision);
        Err(ctx.lost("its backend cannot carry a commit decision"))
    }

    /// The decisions carried by this database's own commits and not yet removed, for
    /// recovery. On a connection outside a transaction.
    fn carried_decisions(conn: &mut Conn) -> diesel::QueryResult<Vec<transaction::DecisionRecord>> {
        let _ = conn;
        Ok(Vec::new())
    }

    /// Removes carried decisions whose every branch is finished (the END). On a
    /// connection outside a transaction.
    fn forget_carried(
        conn: &mut Conn,
        txns: &[transaction::TransactionId],
    ) -> diesel::QueryResult<()> {
        let _ = (conn, txns);
        Ok(())
    }
}

/// Rolls back the transaction Diesel has open on `conn`, if any.
pub(crate) fn generic_rollback(conn: &mut Conn) -> diesel::QueryResult<()> {
    match conn.depth()? {
        0 => Ok(()),
        _ => match conn.rollback() {
            Ok(()) | Err(DieselError::NotInTransaction) => Ok(()),
            Err(e) => Err(e),
        },
    }
}

/// Runs `$body` with `$B` naming the [`Protocol`] type of `$conn`'s backend.
macro_rules! dispatch {
    ($conn:expr, $B:ident => $body:expr) => {
        match $conn.backend() {
            #[cfg(feature = "postgres")]
            $crate::backend::Backend::Postgres => {
                type $B = $crate::backend::postgres::Postgres;
                $body
            }
            #[cfg(feature = "mysql")]
            $crate::backend::Backend::Mysql => {
                type $B = $crate::backend::mysql::Mysql;
                $body
            }
            #[cfg(feature = "sqlite")]
            $crate::backend::Backend::Sqlite => {
                type $B = $crate::backend::sqlite::Sqlite;
                $body
            }
            #[allow(unreachable_patterns)]
            _ => unreachable!("an engine or connection exists only for an enabled backend"),
        }
    };
}
pub(crate) use dispatch;
