//! The pooled connection of one backend, behind one enum, and Diesel's transaction depth.

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::r2d2::PooledConnection;

#[cfg(feature = "mysql")]
use diesel::MysqlConnection;
#[cfg(feature = "postgres")]
use diesel::PgConnection;
#[cfg(feature = "sqlite")]
use diesel::SqliteConnection;

use crate::backend::Backend;
use crate::pool::Manager;

/// A connection checked out of an engine's pool (crate-internal; `pub` only so that the
/// sealed trait can name it).
///
/// The pooled connection is boxed: Diesel's connections are large (statement caches and
/// the pool's bookkeeping inline), and a session moves its connection several times per
/// transaction (into a phase job on a worker thread and back, in and out of its state).
/// Boxed, each move copies a pointer, and the jobs and their outputs stay small
/// allocations.
#[doc(hidden)]
pub enum Conn {
    #[cfg(feature = "postgres")]
    Pg(Box<PooledConnection<Manager<PgConnection>>>),
    #[cfg(feature = "sqlite")]
    Sqlite(Box<PooledConnection<Manager<SqliteConnection>>>),
    #[cfg(feature = "mysql")]
    Mysql(Box<PooledConnection<Manager<MysqlConnection>>>),
}

/// Runs `$body` with `$c` bound to the concrete `&mut XConnection`.
macro_rules! with_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            #[cfg(feature = "postgres")]
            $crate::conn::Conn::Pg(pooled) => {
                let $c: &mut diesel::PgConnection = &mut ****pooled;
                $body
            }
            #[cfg(feature = "sqlite")]
            $crate::conn::Conn::Sqlite(pooled) => {
                let $c: &mut diesel::SqliteConnection = &mut ****pooled;
                $body
            }
            #[cfg(feature = "mysql")]
            $crate::conn::Conn::Mysql(pooled) => {
                let $c: &mut diesel::MysqlConnection = &mut ****pooled;
                $body
            }
        }
    };
}
pub(crate) use with_conn;

impl Conn {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "postgres")]
            Conn::Pg(_) => Backend::Postgres,
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "mysql")]
            Conn::Mysql(_) => Backend::Mysql,
        }
    }

    /// Diesel's view of the transaction depth: `Ok(0)` outside a transaction, `Err` when
    /// Diesel considers the connection's transaction manager broken.
    pub(crate) fn depth(&mut self) -> diesel::QueryResult<u32> {
        with_conn!(self, c => depth_of(c))
    }

    pub(crate) fn batch_execute(&mut self, sql: &str) -> diesel::QueryResult<()> {
        with_conn!(self, c => diesel::connection::SimpleConnection::batch_execute(c, sql))
    }

    /// Opens the top-level transaction with `sql` through Diesel's transaction manager, so
    /// that nested `conn.transaction(..)` calls become savepoints.
    pub(crate) fn begin_with(&mut self, sql: &str) -> diesel::QueryResult<()> {
        with_conn!(self, c => AnsiTransactionManager::begin_transaction_sql(c, sql))
    }

    pub(crate) fn commit(&mut self) -> diesel::QueryResult<()> {
        with_conn!(self, c => AnsiTransactionManager::commit_transaction(c))
    }

    pub(crate) fn rollback(&mut self) -> diesel::QueryResult<()> {
        with_conn!(self, c => AnsiTransactionManager::rollback_transaction(c))
    }

    /// The connection's [`Tracker`](crate::instrument::Tracker), unless the application
    /// replaced the connection's instrumentation.
    pub(crate) fn tracker(&mut self) -> Option<&mut crate::instrument::Tracker> {
        with_conn!(self, c => diesel::Connection::instrumentation(c).downcast_mut::<crate::instrument::Tracker>())
    }

    /// Whether the server reported the open transaction failed (PostgreSQL: libpq's status
    /// after the last statement, as Diesel records it), or Diesel considers the connection
    /// broken. A failed transaction can only be rolled back.
    pub(crate) fn transaction_failed(&mut self) -> bool {
        use diesel::connection::{
            InTransactionStatus, TransactionManagerStatus, ValidTransactionManagerStatus,
        };
        with_conn!(self, c => match AnsiTransactionManager::transaction_manager_status_mut(c) {
            TransactionManagerStatus::InError => true,
            TransactionManagerStatus::Valid(ValidTransactionManagerStatus {
                in_transaction: Some(InTransactionStatus { requires_rollback_maybe_up_to_top_level, .. }),
                ..
            }) => *requires_rollback_maybe_up_to_top_level,
            TransactionManagerStatus::Valid(_) => false,
        })
    }

    /// Tells Diesel the top-level transaction ended without Diesel's knowledge (after
    /// `PREPARE TRANSACTION` or `XA PREPARE`), so the depth is back to 0.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) fn forget_transaction(&mut self) {
        with_conn!(self, c => reset_depth(c))
    }

    /// Marks Diesel's transaction manager broken, so that r2d2 closes the connection when
    /// it is dropped instead of reusing it (a MariaDB connection that still holds a
    /// prepared XA branch, say: closing it detaches the branch for recovery).
    pub(crate) fn mark_broken(&mut self) {
        with_conn!(self, c => AnsiTransactionManager::transaction_manager_status_mut(c).set_in_error())
    }
}

pub(crate) fn depth_of<C>(conn: &mut C) -> diesel::QueryResult<u32>
where
    C: Connection<TransactionManager = AnsiTransactionManager>,
{
    let status = AnsiTransactionManager::transaction_manager_status_mut(conn);
    Ok(status.transaction_depth()?.map_or(0, |d| d.get()))
}

#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
fn reset_depth<C>(conn: &mut C)
where
    C: Connection<TransactionManager = AnsiTransactionManager>,
{
    use diesel::connection::{TransactionDepthChange, TransactionManagerStatus};
    let status = AnsiTransactionManager::transaction_manager_status_mut(conn);
    if let TransactionManagerStatus::Valid(valid) = status {
        while valid.transaction_depth().is_some() {
            if valid
                .change_transaction_depth(TransactionDepthChange::DecreaseDepth)
                .is_err()
            {
                break;
            }
        }
    }
}

/// A Diesel connection type that an engine can hand out.
///
/// Implemented for the connection types of the enabled backends: `PgConnection`
/// (feature `postgres`), `SqliteConnection` (feature `sqlite`) and `MysqlConnection`
/// (feature `mysql`).
///
/// # Examples
///
/// The type parameter of [`Session::conn`](crate::Session::conn) and
/// [`Session::run`](crate::Session::run) is checked against the engine's backend:
///
/// ```
/// use diesel::SqliteConnection;
/// use sqlassist::{Backend, BackendConnection, Registry, Settings};
///
/// assert_eq!(<SqliteConnection as BackendConnection>::BACKEND, Backend::Sqlite);
///
/// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
/// let session = registry.session("main")?;
/// let conn = session.conn::<SqliteConnection>()?; // the engine is SQLite: accepted
/// drop(conn);
/// session.rollback()?;
/// # Ok::<(), sqlassist::Error>(())
/// ```
pub trait BackendConnection: Connection + sealed::Sealed + 'static {
    /// The backend this connection type talks to.
    const BACKEND: Backend;
}

pub(crate) mod sealed {
    use super::Conn;

    /// Keeps [`BackendConnection`](super::BackendConnection) closed to this crate's types,
    /// and finds the concrete connection inside a [`Conn`].
    pub trait Sealed {
        fn from_conn(conn: &mut Conn) -> Option<&mut Self>;
        fn from_conn_ref(conn: &Conn) -> Option<&Self>;
    }
}

#[cfg(feature = "postgres")]
impl BackendConnection for PgConnection {
    const BACKEND: Backend = Backend::Postgres;
}

#[cfg(feature = "postgres")]
impl sealed::Sealed for PgConnection {
    fn from_conn(conn: &mut Conn) -> Option<&mut Self> {
        #[allow(irrefutable_let_patterns, unreachable_patterns)]
        match conn {
            Conn::Pg(c) => Some(&mut ****c),
            _ => None,
        }
    }
    fn from_conn_ref(conn: &Conn) -> Option<&Self> {
        #[allow(irrefutable_let_patterns, unreachable_patterns)]
        match conn {
            Conn::Pg(c) => Some(&****c),
            _ => None,
        }
    }
}

#[cfg(feature = "sqlite")]
impl BackendConnection for SqliteConnection {
    const BACKEND: Backend = Backend::Sqlite;
}

#[cfg(feature = "sqlite")]
impl sealed::Sealed for SqliteConnection {
    fn from_conn(conn: &mut Conn) -> Option<&mut Self> {
        #[allow(irrefutable_let_patterns, unreachable_patterns)]
        match conn {
            Conn::Sqlite(c) => Some(&mut ****c),
            _ => None,
        }
    }
    fn from_conn_ref(conn: &Conn) -> Option<&Self> {
        #[allow(irrefutable_let_patterns, unreachable_patterns)]
        match conn {
            Conn::Sqlite(c) => Some(&****c),
            _ => None,
        }
    }
}

#[cfg(feature = "mysql")]
impl BackendConnection for MysqlConnection {
    const BACKEND: Backend = Backend::Mysql;
}

#[cfg(feature = "mysql")]
impl sealed::Sealed for MysqlConnection {
    fn from_conn(conn: &mut Conn) -> Option<&mut Self> {
        #[allow(irrefutable_let_patterns, unreachable_patterns)]
        match conn {
            Conn::Mysql(c) => Some(&mut ****c),
            _ => None,
        }
    }
    fn from_conn_ref(conn: &Conn) -> Option<&Self> {
        #[allow(irrefutable_let_patterns, unreachable_patterns)]
        match conn {
            Conn::Mysql(c) => Some(&****c),
            _ => None,
        }
    }
}
