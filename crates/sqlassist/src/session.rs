//! Sessions: this thread's unit of work on one engine.

use std::cell::{RefCell, RefMut};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::rc::{Rc, Weak};

use transaction::{
    DataManager, PhaseJob, PhaseOutput, ResourceError, ResourceSavepoint, Transaction,
    TransactionId, Vote, WriteState,
};

use crate::backend::{dispatch, AfterFailure, Ctx, Failed, Left, PhaseTwo, Protocol, Voted};
use crate::branch::{BranchName, Identity};
use crate::conn::{BackendConnection, Conn};
use crate::engine::Engine;
use crate::error::{Error, Result};

thread_local! {
    /// This thread's open sessions, one per (registry, engine name).
    static SESSIONS: RefCell<Vec<Session>> = const { RefCell::new(Vec::new()) };
}

/// This thread's session for one engine: a connection checked out of the engine's pool
/// and a database transaction, both opened lazily on first use (SQLAlchemy's scoped
/// session).
///
/// A *managed* session (pyramid_sqlassist's `use_zope=True`) joins the thread's current
/// transaction on first use in each transaction, and commits only through
/// [`transaction::commit`]; its own [`commit`](Self::commit) fails with
/// [`Error::CommitThroughTransactionManager`]. An *unmanaged* session commits and rolls
/// back on its own.
///
/// The connection goes back to the pool when the session's transaction ends, as
/// zope.sqlalchemy closes its sessions after commit and abort: for a managed session when
/// the transaction manager commits, aborts or fails to commit (a prepared branch keeps its
/// connection until phase two); for an unmanaged session at its own
/// [`commit`](Self::commit) or [`rollback`](Self::rollback). The next statement checks a
/// connection out again (cheaply: see
/// [`EngineOptions::pool_pre_ping_window`](crate::EngineOptions::pool_pre_ping_window)).
/// So a thread that never calls [`crate::close_sessions`] holds no connection between
/// transactions. With the engine option `keep_session = true` the session keeps its
/// connection between transactions instead (connection-level state such as `SET` or
/// temporary tables survives) until [`close`](Self::close) or [`crate::close_sessions`].
///
/// [`close`](Self::close) or [`crate::close_sessions`] (at the end of a request) rolls
/// back what was never committed and returns the connection to the pool. A session is
/// bound to its thread (`!Send`).
///
/// # Examples
///
/// ```
/// use diesel::prelude::*;
/// use sqlassist::{Engine, EngineOptions, InitOptions, Registry, DatabaseUrl};
///
/// let mut registry = Registry::new();
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
/// registry.init_engine("writer", engine, InitOptions::new().managed(true))?;
///
/// let writer = registry.session("writer")?;
/// diesel::sql_query("CREATE TABLE t (v INTEGER)").execute(&mut *writer.conn::<SqliteConnection>()?)?;
/// diesel::sql_query("INSERT INTO t VALUES (1)").execute(&mut *writer.conn::<SqliteConnection>()?)?;
/// assert!(writer.commit().is_err()); // managed: commit through the transaction manager
/// transaction::commit()?;
/// writer.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Rc<SessionInner>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("engine", &self.inner.name)
            .field("managed", &self.inner.managed)
            .field("url", &self.inner.engine.url())
            .finish_non_exhaustive()
    }
}

pub(crate) struct SessionInner {
    registry: u64,
    /// Who names the branches this session prepares.
    identity: std::sync::Arc<Identity>,
    name: String,
    engine: Engine,
    managed: bool,
    /// The database decision log when this session's engine is its database: the session
    /// then carries the decision in its own commit.
    #[cfg(feature = "postgres")]
    carrier: Option<std::sync::Arc<crate::DatabaseDecisionLog>>,
    me: Weak<SessionInner>,
    state: RefCell<State>,
    /// Counts this session in its engine's open sessions while it lives.
    _open: crate::engine::OpenSession,
}

#[derive(Default)]
struct State {
    conn: Option<Conn>,
    /// A database transaction begun by this session is open on `conn`.
    open: bool,
    /// The transaction this session last joined.
    joined: Option<TransactionId>,
    /// The gid of a prepared transaction waiting for phase two.
    prepared: Option<String>,
    /// Raw SQL (`COMMIT`, `ROLLBACK`) ended the open transaction: every statement is
    /// refused until the session is rolled back or the transaction aborted.
    ended_outside: bool,
    /// The id of the open branch, when the backend names it as it begins (the xid of a
    /// managed MariaDB/MySQL session's XA branch).
    branch: Option<String>,
    /// The log database's id of the open transaction once it carries the decision, to
    /// settle an unanswered COMMIT.
    carried_xid: Option<String>,
    next_savepoint: u32,
}

/// A `&mut` Diesel connection inside a session's transaction.
///
/// It dereferences to the backend's connection type, so any Diesel query works:
/// `query.execute(&mut *guard)`. Nested `guard.transaction(..)` calls become savepoints.
/// Drop it before committing: a commit cannot use a session whose connection is borrowed.
///
/// # Examples
///
/// ```
/// use diesel::prelude::*;
/// use sqlassist::{Error, Registry, Settings};
///
/// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
/// let session = registry.session("main")?;
/// let mut conn = session.conn::<SqliteConnection>()?;
/// diesel::sql_query("CREATE TABLE t (v INTEGER)").execute(&mut *conn)?;
///
/// // A nested transaction is a savepoint: rolling it back keeps the outer work.
/// let nested: Result<(), diesel::result::Error> = conn.transaction(|c| {
///     diesel::sql_query("INSERT INTO t VALUES (1)").execute(c)?;
///     Err(diesel::result::Error::RollbackTransaction)
/// });
/// assert!(nested.is_err());
///
/// assert!(matches!(session.commit(), Err(Error::SessionBusy { .. }))); // guard alive
/// drop(conn);
/// session.commit()?;
/// assert_eq!(session.query_i64("SELECT COUNT(*) FROM t")?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ConnectionGuard<'a, C> {
    state: RefMut<'a, State>,
    session: &'a SessionInner,
    _conn: PhantomData<&'a mut C>,
}

impl<C> Drop for ConnectionGuard<'_, C> {
    fn drop(&mut self) {
        // The guard ran statements the session did not see: notice a raw COMMIT among
        // them now, before anything else uses the session.
        self.session.note_ended_outside(&mut self.state);
    }
}

impl<C: BackendConnection> Deref for ConnectionGuard<'_, C> {
    type Target = C;
    fn deref(&self) -> &C {
        // The guard is built only after checking the connection is a `C`.
        unreachable_conn(self.state.conn.as_ref().and_then(|c| C::from_conn_ref(c)))
    }
}

impl<C: BackendConnection> DerefMut for ConnectionGuard<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        unreachable_conn(self.state.conn.as_mut().and_then(|c| C::from_conn(c)))
    }
}

#[allow(clippy::expect_used)]
fn unreachable_conn<T>(conn: Option<T>) -> T {
    conn.expect("a ConnectionGuard is built only over a connection of its type")
}

impl Session {
    pub(crate) fn lookup_or_open(
        registry: u64,
        identity: &std::sync::Arc<Identity>,
        name: &str,
        engine: &Engine,
        managed: bool,
        #[cfg(feature = "postgres")] carrier: Option<std::sync::Arc<crate::DatabaseDecisionLog>>,
    ) -> Session {
        SESSIONS.with(|sessions| {
            let mut sessions = sessions.borrow_mut();
            if let Some(s) = sessions
                .iter()
                .find(|s| s.inner.registry == registry && s.inner.name == name)
            {
                return s.clone();
            }
            let session = Session {
                inner: Rc::new_cyclic(|me| SessionInner {
                    registry,
                    identity: identity.clone(),
                    name: name.to_owned(),
                    engine: engine.clone(),
                    managed,
                    #[cfg(feature = "postgres")]
                    carrier,
                    me: me.clone(),
                    state: RefCell::new(State::default()),
                    _open: crate::engine::OpenSession::new(engine),
                }),
            };
            sessions.push(session.clone());
            session
        })
    }

    /// The engine's name in its registry.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_reader.url", "sqlite://")]))?;
    /// assert_eq!(registry.session("reader")?.name(), "reader");
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The engine.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_reader.url", "sqlite://")]))?;
    /// assert!(registry.session("reader")?.engine().url().is_memory());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Whether the session commits through the transaction manager.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([
    ///     ("sqlalchemy_writer.url", "sqlite://"),
    ///     ("sqlalchemy_writer.managed", "true"),
    ///     ("sqlalchemy_log.url", "sqlite://"),
    /// ]))?;
    /// assert!(registry.session("writer")?.is_managed());
    /// assert!(!registry.session("log")?.is_managed());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn is_managed(&self) -> bool {
        self.inner.managed
    }

    /// Whether a database transaction is open (work not yet committed or rolled back).
    ///
    /// While a [`ConnectionGuard`] of the session is alive this is `true`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
    /// let session = registry.session("main")?;
    /// assert!(!session.in_transaction()); // opened lazily
    /// session.execute("CREATE TABLE t (v INTEGER)")?;
    /// assert!(session.in_transaction());
    /// session.commit()?;
    /// assert!(!session.in_transaction());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn in_transaction(&self) -> bool {
        self.inner
            .state
            .try_borrow()
            .map(|s| s.open)
            .unwrap_or(true)
    }

    /// Whether two handles are the same session.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([
    ///     ("sqlalchemy_reader.url", "sqlite://"),
    ///     ("sqlalchemy_writer.url", "sqlite://"),
    /// ]))?;
    /// let reader = registry.session("reader")?;
    /// assert!(reader.ptr_eq(&registry.session("reader")?));
    /// assert!(!reader.ptr_eq(&registry.session("writer")?));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn ptr_eq(&self, other: &Session) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// The session's Diesel connection, inside its database transaction.
    ///
    /// On first use this checks a connection out of the engine's pool and begins a
    /// transaction; a managed session also joins the thread's current transaction (once
    /// per transaction).
    ///
    /// # Errors
    ///
    /// [`Error::WrongBackend`] when `C` is not the engine's connection type;
    /// [`Error::Connect`] when no connection can be had; [`Error::Transaction`] when the
    /// current transaction cannot be joined (it failed, or explicit mode without
    /// `begin()`); [`Error::SessionBusy`] while another guard of this session is alive;
    /// [`Error::Database`] when `BEGIN` fails (SQLite: another writer holds the lock past
    /// `busy_timeout`).
    ///
    /// # Examples
    ///
    /// ```
    /// use diesel::prelude::*;
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
    /// let session = registry.session("main")?;
    /// {
    ///     let mut conn = session.conn::<SqliteConnection>()?;
    ///     diesel::sql_query("CREATE TABLE t (v INTEGER)").execute(&mut *conn)?;
    ///     diesel::sql_query("INSERT INTO t VALUES (1), (2)").execute(&mut *conn)?;
    /// } // the guard must be gone before the commit
    /// session.commit()?;
    /// assert_eq!(session.query_i64("SELECT COUNT(*) FROM t")?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn conn<C: BackendConnection>(&self) -> Result<ConnectionGuard<'_, C>> {
        let backend = self.inner.engine.backend();
        if C::BACKEND != backend {
            return Err(Error::WrongBackend {
                engine: self.inner.name.clone(),
                expected: backend,
                requested: C::BACKEND,
            });
        }
        self.inner.ensure_begun()?;
        let state = self.inner.borrow_state()?;
        Ok(ConnectionGuard {
            state,
            session: &self.inner,
            _conn: PhantomData,
        })
    }

    /// Runs `f` with the session's connection; Diesel errors become [`Error::Database`]
    /// naming this engine.
    ///
    /// # Errors
    ///
    /// Those of [`conn`](Self::conn), and `f`'s.
    ///
    /// # Examples
    ///
    /// ```
    /// use diesel::prelude::*;
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry};
    ///
    /// let mut registry = Registry::new();
    /// registry.init_engine("log", Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?, InitOptions::new())?;
    /// let log = registry.session("log")?;
    /// let n = log.run(|c: &mut SqliteConnection| diesel::sql_query("CREATE TABLE l (m TEXT)").execute(c))?;
    /// log.commit()?; // unmanaged: commits on its own
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn run<C, R>(&self, f: impl FnOnce(&mut C) -> diesel::QueryResult<R>) -> Result<R>
    where
        C: BackendConnection,
    {
        let mut guard = self.conn::<C>()?;
        f(&mut guard).map_err(|e| self.inner.statement_error(guard.state.conn.as_mut(), e))
    }

    /// Executes one SQL statement on whatever backend the engine uses; returns the number
    /// of rows affected.
    ///
    /// # Errors
    ///
    /// Those of [`conn`](Self::conn), and [`Error::Database`] when the statement fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
    /// let session = registry.session("main")?;
    /// session.execute("CREATE TABLE t (v INTEGER)")?;
    /// assert_eq!(session.execute("INSERT INTO t VALUES (1), (2), (3)")?, 3);
    /// assert_eq!(session.execute("DELETE FROM t WHERE v > 1")?, 2);
    /// assert!(session.execute("INSERT INTO missing VALUES (1)").is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn execute(&self, sql: &str) -> Result<usize> {
        use diesel::RunQueryDsl;
        self.inner.ensure_begun()?;
        let mut st = self.inner.borrow_state()?;
        let conn = st.conn.as_mut().ok_or_else(|| self.inner.no_connection())?;
        let outcome = crate::conn::with_conn!(conn, c => diesel::sql_query(sql).execute(c))
            .map_err(|e| self.inner.statement_error(Some(conn), e));
        self.inner.note_ended_outside(&mut st);
        outcome
    }

    /// Runs a query that returns one integer (`SELECT COUNT(*) FROM t`) on whatever backend
    /// the engine uses.
    ///
    /// # Errors
    ///
    /// Those of [`conn`](Self::conn), and [`Error::Database`] when the query fails or does
    /// not return exactly one integer.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
    /// let session = registry.session("main")?;
    /// assert_eq!(session.query_i64("SELECT 40 + 2")?, 42);
    /// session.execute("CREATE TABLE t (v INTEGER)")?;
    /// session.execute("INSERT INTO t VALUES (5), (7)")?;
    /// assert_eq!(session.query_i64("SELECT SUM(v) FROM t")?, 12);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn query_i64(&self, sql: &str) -> Result<i64> {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Value {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            value: i64,
        }
        self.inner.ensure_begun()?;
        let mut st = self.inner.borrow_state()?;
        let conn = st.conn.as_mut().ok_or_else(|| self.inner.no_connection())?;
        let wrapped = dispatch!(conn, B => B::select_i64(sql));
        let outcome =
            crate::conn::with_conn!(conn, c => diesel::sql_query(&wrapped).get_result::<Value>(c))
                .map(|v| v.value)
                .map_err(|e| self.inner.statement_error(Some(conn), e));
        self.inner.note_ended_outside(&mut st);
        outcome
    }

    /// Commits an unmanaged session's transaction. This ends the transaction: the
    /// connection goes back to the pool (unless the engine has `keep_session = true`), and
    /// the next statement checks one out again.
    ///
    /// # Errors
    ///
    /// [`Error::CommitThroughTransactionManager`] for a managed session: the work stays
    /// pending and a later `transaction::commit()` commits it (call
    /// [`rollback`](Self::rollback) to discard it, as zope.sqlalchemy's docs say).
    /// [`Error::Database`] when the commit fails; [`Error::TransactionEndedOutside`] when
    /// raw SQL ended the transaction; [`Error::TransactionFailedEarlier`] when a statement
    /// failed in it (call [`rollback`](Self::rollback)); [`Error::SavepointStillOpen`] when a
    /// nested `conn.transaction(..)` is still open; [`Error::SessionBusy`] while a
    /// connection guard is alive.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([
    ///     ("sqlalchemy_log.url", "sqlite://"),
    ///     ("sqlalchemy_writer.url", "sqlite://"),
    ///     ("sqlalchemy_writer.managed", "true"),
    /// ]))?;
    /// let log = registry.session("log")?;
    /// log.execute("CREATE TABLE l (m TEXT)")?;
    /// log.commit()?; // unmanaged: commits on its own
    ///
    /// let writer = registry.session("writer")?;
    /// writer.execute("CREATE TABLE t (v INTEGER)")?;
    /// assert!(matches!(writer.commit(), Err(Error::CommitThroughTransactionManager { .. })));
    /// transaction::commit()?; // the managed way
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(&self) -> Result<()> {
        if self.inner.managed {
            return Err(Error::CommitThroughTransactionManager {
                engine: self.inner.name.clone(),
            });
        }
        let mut st = self.inner.ending_state()?; // releases the connection once done
        if !st.open {
            return Ok(());
        }
        self.inner.check_committable(&mut st)?;
        st.open = false;
        self.inner.commit_open(&mut st).map_err(|f| f.error)
    }

    /// Rolls back this session's work only. A managed session stays joined to the current
    /// transaction and usable: its next query begins a new database transaction. The
    /// connection goes back to the pool (unless the engine has `keep_session = true`); the
    /// next query checks one out again.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the rollback fails; [`Error::SessionBusy`] while a
    /// connection guard is alive.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
    /// let session = registry.session("main")?;
    /// session.execute("CREATE TABLE t (v INTEGER)")?;
    /// session.commit()?;
    /// session.execute("INSERT INTO t VALUES (1)")?;
    /// session.rollback()?;
    /// assert_eq!(session.query_i64("SELECT COUNT(*) FROM t")?, 0);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn rollback(&self) -> Result<()> {
        let mut st = self.inner.ending_state()?; // releases the connection once done
        self.inner
            .rollback_open(&mut st)
            .map_err(|e| self.inner.db_error(e))
    }

    /// Ends the session: rolls back uncommitted work (with a warning), returns the
    /// connection to the pool and forgets the session, so the next
    /// [`Registry::session`](crate::Registry::session) opens a new one.
    ///
    /// Closing a managed session that wrote in a transaction still open also dooms that
    /// transaction: its `commit()` then fails with
    /// [`transaction::Error::Doomed`] instead of committing the other resources without
    /// the discarded writes.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the rollback fails (the connection is then discarded, not
    /// returned to the pool); [`Error::SessionBusy`] while a connection guard is alive.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([
    ///     ("sqlalchemy_writer.url", "sqlite://"),
    ///     ("sqlalchemy_writer.managed", "true"),
    /// ]))?;
    /// let writer = registry.session("writer")?;
    /// writer.execute("CREATE TABLE t (v INTEGER)")?;
    /// writer.close()?; // rolls the write back and dooms the transaction
    /// assert!(matches!(transaction::commit(), Err(transaction::Error::Doomed)));
    /// transaction::abort()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) -> Result<()> {
        let result = self.inner.release();
        SESSIONS.with(|sessions| {
            if let Ok(mut sessions) = sessions.try_borrow_mut() {
                sessions.retain(|s| !s.ptr_eq(self));
            }
        });
        result
    }
}

/// Closes every session of this thread (what pyramid_sqlassist does at the end of a request): rolls back work
/// that was never committed (with a warning), and returns every connection to its pool.
///
/// Call it at the end of each unit of work (a web request, a job). Managed work should
/// have been committed or aborted through the transaction manager first.
///
/// # Errors
///
/// The first error met; every session is closed regardless.
///
/// # Examples
///
/// ```
/// sqlassist::close_sessions()?; // nothing open: nothing to do
/// # Ok::<(), sqlassist::Error>(())
/// ```
pub fn close_sessions() -> Result<()> {
    let sessions = SESSIONS.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut first = None;
    for session in sessions {
        if let Err(e) = session.inner.release() {
            tracing::error!(engine = %session.inner.name, error = %e, "closing a session failed");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// How many sessions this thread has open.
///
/// # Examples
///
/// ```
/// use sqlassist::{Registry, Settings};
///
/// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
/// assert_eq!(sqlassist::open_sessions(), 0);
/// let session = registry.session("main")?;
/// assert_eq!(sqlassist::open_sessions(), 1);
/// session.close()?;
/// assert_eq!(sqlassist::open_sessions(), 0);
/// # Ok::<(), sqlassist::Error>(())
/// ```
pub fn open_sessions() -> usize {
    SESSIONS.with(|s| s.borrow().len())
}

impl SessionInner {
    fn borrow_state(&self) -> Result<RefMut<'_, State>> {
        self.state.try_borrow_mut().map_err(|_| Error::SessionBusy {
            engine: self.name.clone(),
        })
    }

    fn resource_state(&self) -> std::result::Result<RefMut<'_, State>, ResourceError> {
        self.borrow_state().map_err(ResourceError::new)
    }

    /// A database error met without the connection at hand (classified by Diesel's kind).
    pub(crate) fn db_error(&self, source: diesel::result::Error) -> Error {
        self.statement_error(None, source)
    }

    /// The error of a statement that just failed on `conn`, with nothing sent since.
    ///
    /// Each backend classifies its own errors by SQLSTATE or error number: serialization
    /// failures, deadlocks and lock timeouts may succeed when retried in a new transaction.
    /// MariaDB/MySQL asks the connection for the error number (Diesel keeps only the
    /// message of most errors, in the server's language).
    fn statement_error(&self, conn: Option<&mut Conn>, source: diesel::result::Error) -> Error {
        dispatch!(self.engine, B => self.ctx().db_error::<B>(conn, source))
    }

    /// The name of this session's branch of transaction `txn`.
    fn branch_name(&self, txn: TransactionId) -> BranchName<'_> {
        BranchName {
            node: &self.identity.node,
            incarnation: self.identity.incarnation,
            sequence: txn.sequence(),
            engine: &self.name,
        }
    }

    /// The database decision log this session's commit may carry the decision of.
    #[cfg(feature = "postgres")]
    fn carrier(&self) -> Option<&crate::DatabaseDecisionLog> {
        self.carrier.as_deref()
    }

    #[cfg(not(feature = "postgres"))]
    fn carrier(&self) -> Option<std::convert::Infallible> {
        None
    }

    /// What a backend needs to know of the session.
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            name: &self.name,
            engine: &self.engine,
        }
    }

    /// A failed vote or one-phase commit, for the transaction manager, after applying
    /// what it left to the session's state.
    fn failed(&self, st: &mut State, failed: Failed) -> ResourceError {
        if failed.left != Left::Open {
            st.open = false;
            st.branch = None;
        }
        if failed.left == Left::Discard {
            st.conn = None;
        }
        if failed.transient {
            ResourceError::transient(failed.error)
        } else {
            ResourceError::new(failed.error)
        }
    }

    /// Commits the open transaction in one phase (the caller has checked it may, and marked
    /// it closed).
    fn commit_open(&self, st: &mut State) -> std::result::Result<(), Failed> {
        let branch = st.branch.take();
        let Some(conn) = st.conn.as_mut() else {
            return Err(Failed::lasting(Left::Ended, self.no_connection()));
        };
        let outcome = dispatch!(conn, B => B::commit(conn, &self.ctx(), branch.as_deref()));
        if let Err(Failed {
            left: Left::Discard,
            ..
        }) = outcome
        {
            st.conn = None;
        }
        outcome
    }

    fn resource_error(&self, source: diesel::result::Error) -> ResourceError {
        self.resource_error_on(None, source)
    }

    /// [`statement_error`](Self::statement_error) for the transaction manager.
    fn resource_error_on(
        &self,
        conn: Option<&mut Conn>,
        source: diesel::result::Error,
    ) -> ResourceError {
        let err = self.statement_error(conn, source);
        if crate::error::Transient::is_transient(&err) {
            ResourceError::transient(err)
        } else {
            ResourceError::new(err)
        }
    }

    /// The session's state does not allow the operation any more (`what` says why).
    fn lost(&self, what: &'static str) -> Error {
        Error::SessionStateLost {
            engine: self.name.clone(),
            what,
        }
    }

    fn no_connection(&self) -> Error {
        self.lost("its connection was discarded after an earlier failure")
    }

    fn ensure_begun(&self) -> Result<()> {
        if self.managed {
            let txn = transaction::get()?;
            let joined = self.borrow_state()?.joined == Some(txn.id());
            if !joined {
                let me: Rc<dyn DataManager> = self
                    .me
                    .upgrade()
                    .ok_or_else(|| self.lost("the session was dropped"))?;
                txn.join(me)?;
                self.borrow_state()?.joined = Some(txn.id());
            }
        }
        let mut st = self.borrow_state()?;
        self.note_ended_outside(&mut st);
        if st.ended_outside {
            return Err(Error::TransactionEndedOutside {
                engine: self.name.clone(),
            });
        }
        if st.conn.is_none() {
            st.conn = Some(self.engine.checkout()?);
        }
        if !st.open {
            // A managed session's branch belongs to the transaction it joined.
            let txn = if self.managed { st.joined } else { None };
            let branch = txn.map(|txn| self.branch_name(txn));
            let conn = st.conn.as_mut().ok_or_else(|| self.no_connection())?;
            if let Some(tracker) = conn.tracker() {
                tracker.skip_next();
            }
            let branch = match dispatch!(conn, B => B::begin(conn, &self.ctx(), branch)) {
                Ok(branch) => branch,
                Err(e) => {
                    // A connection that cannot begin is not worth keeping.
                    st.conn = None;
                    return Err(self.db_error(e));
                }
            };
            if let Some(tracker) = conn.tracker() {
                tracker.reset();
            }
            st.branch = branch;
            st.open = true;
        }
        Ok(())
    }

    /// After statements the session ran or handed out a connection for: when the session's
    /// transaction is open but the connection is outside any transaction, raw SQL
    /// (`COMMIT`, `ROLLBACK`) ended it. PostgreSQL connections know it without a round trip:
    /// Diesel records libpq's transaction status after every statement and resets its depth
    /// when the server reports the session idle. SQLite connections are asked in process,
    /// only after a statement that may have ended the transaction ran (see
    /// `Protocol::refresh_status`); MariaDB refuses a raw `COMMIT` inside
    /// an XA branch, so a managed MariaDB session never gets here.
    ///
    /// The transaction a managed session joined is doomed at once (what ran before the
    /// raw SQL may be committed: the transaction can no longer commit as a whole), and the
    /// session refuses statements until it is rolled back or the transaction aborted: a
    /// statement after a raw `COMMIT` would otherwise run, and commit, on its own.
    fn note_ended_outside(&self, st: &mut State) {
        if !st.open || st.ended_outside {
            return;
        }
        let Some(conn) = st.conn.as_mut() else {
            return;
        };
        dispatch!(conn, B => B::refresh_status(conn));
        if !matches!(conn.depth(), Ok(0)) {
            return;
        }
        st.ended_outside = true;
        if !self.managed {
            tracing::warn!(engine = %self.name, "raw SQL (COMMIT or ROLLBACK) ended the session's transaction: refusing further statements until the session is rolled back");
            return;
        }
        tracing::error!(engine = %self.name, "raw SQL (COMMIT or ROLLBACK) ended the managed session's transaction: what ran before it may be committed; refusing further statements and dooming the transaction");
        if let Some(txn) = transaction::manager().current() {
            if st.joined == Some(txn.id()) {
                let _ = txn.doom();
            }
        }
    }

    /// Before a commit or a vote: Diesel's depth must be 1 (our transaction, no savepoint
    /// left open) and the transaction must not have failed. No round trip.
    fn check_committable(&self, st: &mut State) -> Result<()> {
        let conn = st.conn.as_mut().ok_or_else(|| self.no_connection())?;
        let outcome = match conn.depth() {
            Ok(1) if conn.transaction_failed() => Err(Error::TransactionFailedEarlier {
                engine: self.name.clone(),
            }),
            Ok(1) => return Ok(()),
            Ok(0) => Err(Error::TransactionEndedOutside {
                engine: self.name.clone(),
            }),
            Ok(depth) => Err(Error::SavepointStillOpen {
                engine: self.name.clone(),
                depth: depth - 1,
            }),
            Err(e) => Err(self.db_error(e)),
        };
        if matches!(outcome, Err(Error::TransactionEndedOutside { .. })) {
            // Raw SQL ended it: there is nothing left to roll back.
            st.open = false;
        }
        outcome
    }

    fn rollback_open(&self, st: &mut State) -> diesel::QueryResult<()> {
        st.ended_outside = false;
        if !st.open {
            return Ok(());
        }
        st.open = false;
        let branch = st.branch.take();
        let Some(conn) = st.conn.as_mut() else {
            return Ok(());
        };
        let outcome = dispatch!(conn, B => B::rollback(conn, branch.as_deref()));
        if outcome.is_err() {
            // Never hand a connection with an open transaction back to the pool.
            st.conn = None;
        }
        outcome
    }

    /// A borrow of the state for an operation that ends the session's transaction (a
    /// commit, a rollback, a vote, phase two, an abort): when it is dropped the connection
    /// goes back to the pool if the transaction is over (see [`Ending`]).
    fn ending_state(&self) -> Result<Ending<'_>> {
        Ok(Ending {
            session: self,
            state: self.borrow_state()?,
        })
    }

    fn ending_resource_state(&self) -> std::result::Result<Ending<'_>, ResourceError> {
        self.ending_state().map_err(ResourceError::new)
    }

    fn release(&self) -> Result<()> {
        let mut st = self.borrow_state()?;
        if st.open {
            let wrote = st
                .conn
                .as_mut()
                .and_then(|c| c.tracker())
                .is_none_or(|t| t.may_have_written());
            if self.managed && wrote {
                // The transaction must not commit as if these writes had never been asked
                // for: doom it, so its commit fails and says why.
                tracing::warn!(engine = %self.name, "closing a managed session with uncommitted writes: rolling them back and dooming the transaction");
                if let Some(txn) = transaction::manager().current() {
                    if st.joined == Some(txn.id()) {
                        let _ = txn.doom();
                    }
                }
            } else {
                tracing::warn!(engine = %self.name, managed = self.managed, "closing a session with uncommitted work: rolling it back");
            }
        }
        let result = self.rollback_open(&mut st).map_err(|e| self.db_error(e));
        if st.prepared.is_none() {
            st.conn = None;
        }
        st.joined = None;
        result
    }

    /// Runs phase two (`op`) for a prepared branch: on the session's connection, or, if
    /// that connection is gone or broken, on a fresh one from the pool.
    fn finish_prepared(
        &self,
        st: &mut State,
        gid: &str,
        op: PhaseTwo,
    ) -> std::result::Result<(), ResourceError> {
        finish_prepared(&self.name, &self.engine, &mut st.conn, gid, op)
    }

    /// Whether the open transaction may be voted on as it stands (the checks of
    /// [`check_committable`](Self::check_committable), without changing anything).
    fn is_committable(st: &mut State) -> bool {
        st.conn
            .as_mut()
            .is_some_and(|c| matches!(c.depth(), Ok(1)) && !c.transaction_failed())
    }

    /// A vote's outcome applied to the session's state, for the transaction manager.
    fn apply_vote(
        &self,
        st: &mut State,
        voted: std::result::Result<Voted, Failed>,
    ) -> std::result::Result<Vote, ResourceError> {
        match voted {
            Ok(voted) => {
                st.open = false;
                st.branch = None;
                Ok(match voted {
                    Voted::ReadOnly => Vote::ReadOnly,
                    Voted::Committed => Vote::Committed,
                    Voted::Prepared(gid) => {
                        st.prepared = Some(gid);
                        Vote::Prepared
                    }
                })
            }
            Err(failed) => Err(self.failed(st, failed)),
        }
    }
}

/// Runs phase two (`op`) for the prepared branch `gid` of engine `name`: on `conn`, or,
/// if that connection is gone or broken, on a fresh one from the pool (left in `conn`).
/// Runs on the session's thread or, in a [`FinishJob`], on the coordinator's worker.
fn finish_prepared(
    name: &str,
    engine: &Engine,
    conn: &mut Option<Conn>,
    gid: &str,
    op: PhaseTwo,
) -> std::result::Result<(), ResourceError> {
    let first = match conn.as_mut() {
        Some(conn) => op(conn, gid),
        None => Err(diesel::result::Error::BrokenTransactionManager),
    };
    let first_err = match first {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if let Some(definitive) = definitive_phase_two_failure(name, conn, gid, &first_err) {
        return Err(ResourceError::new(definitive));
    }
    tracing::warn!(engine = %name, gid, error = %first_err, "phase two failed on the session's connection; retrying on a fresh connection");
    if let Some(c) = conn.as_mut() {
        // A connection on which phase two failed is closed, not pooled. MariaDB keeps
        // the prepared branch attached to it: closing it detaches the branch for the
        // fresh connection.
        c.mark_broken();
    }
    *conn = None;
    let retried = engine
        .checkout()
        .map_err(|e| e.to_string())
        .and_then(|mut fresh| {
            let outcome = op(&mut fresh, gid);
            let outcome = dispatch!(fresh, B => B::retry_on_fresh(&mut fresh, gid, outcome, op));
            let outcome = outcome.map_err(|e| e.to_string());
            *conn = Some(fresh);
            outcome
        });
    retried.map_err(|second| {
        ResourceError::new(Error::InDoubt {
            engine: name.to_owned(),
            gid: gid.to_owned(),
            reason: format!(
                "on the session's connection: {first_err}; on a fresh connection: {second}"
            ),
        })
    })
}

/// After phase two failed on the session's connection: the error when the server gave
/// a definitive answer, `None` after a connection-level failure (then phase two is
/// retried on a fresh connection). The answer is read from the server's state or error
/// number, never from its message: PostgreSQL is asked whether the branch is still
/// prepared (one round trip, on this failure path only); MariaDB answers `XAER_NOTA`
/// (1397) on the connection that owns the branch only when the branch is gone.
fn definitive_phase_two_failure(
    name: &str,
    conn: &mut Option<Conn>,
    gid: &str,
    error: &diesel::result::Error,
) -> Option<Error> {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};
    let server_answered = matches!(error, DieselError::DatabaseError(kind, _) if *kind != DatabaseErrorKind::ClosedConnection);
    let conn = conn.as_mut()?;
    if !server_answered || conn.depth().is_err() {
        return None;
    }
    let resolved = || Error::BranchResolvedOutside {
        engine: name.to_owned(),
        gid: gid.to_owned(),
    };
    match dispatch!(conn, B => B::after_failure(conn, gid))? {
        AfterFailure::Resolved => Some(resolved()),
        AfterFailure::StillPrepared => Some(Error::InDoubt {
            engine: name.to_owned(),
            gid: gid.to_owned(),
            reason: error.to_string(),
        }),
    }
}

/// What a vote job hands back to its session: the connection, and the vote (or the
/// injected fault of a test).
struct VoteDone {
    conn: Conn,
    voted: std::result::Result<Voted, Failed>,
}

/// What a finish job hands back to its session: the connection phase two ended on (a
/// fresh one after a retry, none if it was discarded), and the outcome.
struct FinishDone {
    conn: Option<Conn>,
    outcome: std::result::Result<(), ResourceError>,
}

/// The session's state, borrowed by an operation that may end its transaction. On drop,
/// if the transaction is over (none open, no prepared branch waiting for phase two, no
/// XA branch) and the engine does not keep sessions (`keep_session`), the connection goes
/// back to the pool, as zope.sqlalchemy closes its sessions after commit and abort. A
/// prepared MariaDB branch can only be finished on its own connection: it keeps it until
/// phase two. The session's next statement checks a connection out again.
struct Ending<'a> {
    session: &'a SessionInner,
    state: RefMut<'a, State>,
}

impl Deref for Ending<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl DerefMut for Ending<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        let st = &mut *self.state;
        if st.branch.is_some() {
            return;
        }
        if !st.open && st.prepared.is_none() && !self.session.engine.options().keep_session() {
            // Dropping the pooled connection returns it; r2d2 closes it instead if Diesel
            // sees a transaction still open on it.
            st.conn = None;
        }
    }
}

impl DataManager for SessionInner {
    fn sort_key(&self) -> &str {
        &self.name
    }

    fn is_one_phase(&self) -> bool {
        !self.engine.backend().can_prepare() && !self.engine.is_read_only()
    }

    /// What the session knows before the votes, so that a lone writer votes last and
    /// commits in one phase whatever its engine is called:
    ///
    /// - no database transaction open: [`WriteState::Clean`] (its vote is read-only);
    /// - an engine declared read-only on MariaDB/MySQL or SQLite: `Clean` (the server
    ///   refuses its writes in every transaction, and its vote never commits anything);
    /// - a statement that may write ran (by the instrumentation's note): [`WriteState::Dirty`];
    /// - otherwise, reads only (or a PostgreSQL engine declared read-only, which
    ///   `SET TRANSACTION READ WRITE` could lift): [`WriteState::Unknown`]. A `SELECT` may
    ///   call a function that writes: the vote asks the server, never assumes.
    fn write_state(&self, _txn: &Transaction) -> WriteState {
        let Ok(mut st) = self.state.try_borrow_mut() else {
            return WriteState::Unknown;
        };
        if !st.open {
            return WriteState::Clean;
        }
        let read_only = self.engine.is_read_only();
        if read_only && self.engine.backend().enforces_read_only() {
            return WriteState::Clean;
        }
        let may_have_written = st
            .conn
            .as_mut()
            .and_then(|c| c.tracker())
            .is_none_or(|t| t.may_have_written());
        if may_have_written && !read_only {
            WriteState::Dirty
        } else {
            WriteState::Unknown
        }
    }

    fn abort(&self, _txn: &Transaction) -> std::result::Result<(), ResourceError> {
        let mut st = self.ending_resource_state()?; // releases the connection once done
        st.joined = None;
        st.ended_outside = false;
        if let Some(gid) = st.prepared.take() {
            let op: PhaseTwo = dispatch!(self.engine, B => B::rollback_prepared);
            return self.finish_prepared(&mut st, &gid, op);
        }
        self.rollback_open(&mut st)
            .map_err(|e| self.resource_error(e))
    }

    fn tpc_vote(&self, txn: &Transaction) -> std::result::Result<Vote, ResourceError> {
        let mut guard = self.ending_resource_state()?; // releases the connection once done
        let st = &mut *guard;
        if !st.open {
            return Ok(Vote::ReadOnly);
        }
        self.check_committable(st).map_err(ResourceError::new)?;
        #[cfg(feature = "fault-injection")]
        crate::fault::check(&self.name, crate::fault::Phase::Vote)
            .map_err(|e| self.resource_error(e))?;
        let conn = st
            .conn
            .as_mut()
            .ok_or_else(|| ResourceError::new(self.no_connection()))?;
        let ctx = self.ctx();
        let voted = dispatch!(conn, B => B::vote(conn, &ctx, st.branch.as_deref(), self.branch_name(txn.id())));
        self.apply_vote(st, voted)
    }

    /// PostgreSQL and MariaDB/MySQL sessions vote on the coordinator's worker thread: the
    /// pooled connection moves into the job and comes back with the vote. The checks of
    /// [`tpc_vote`](DataManager::tpc_vote) that need the session run here first; a session
    /// that has nothing to vote, fails a check, or is SQLite votes on its own thread.
    fn vote_job(&self, txn: &Transaction) -> Option<PhaseJob> {
        if !self.engine.backend().can_prepare() {
            return None;
        }
        let mut st = self.state.try_borrow_mut().ok()?;
        if !st.open || !Self::is_committable(&mut st) {
            return None;
        }
        #[cfg(feature = "fault-injection")]
        let fault = crate::fault::check(&self.name, crate::fault::Phase::Vote).err();
        let mut conn = st.conn.take()?;
        let branch = st.branch.clone();
        let name = self.name.clone();
        let engine = self.engine.clone();
        let identity = std::sync::Arc::clone(&self.identity);
        let sequence = txn.id().sequence();
        Some(PhaseJob::new(move || {
            #[cfg(feature = "fault-injection")]
            if let Some(e) = fault {
                let error = Error::Database {
                    engine: name,
                    transient: false,
                    source: e,
                };
                return VoteDone {
                    conn,
                    voted: Err(Failed::new(Left::Open, error)),
                };
            }
            let ctx = Ctx {
                name: &name,
                engine: &engine,
            };
            let branch_name = BranchName {
                node: &identity.node,
                incarnation: identity.incarnation,
                sequence,
                engine: &name,
            };
            let voted =
                dispatch!(conn, B => B::vote(&mut conn, &ctx, branch.as_deref(), branch_name));
            VoteDone { conn, voted }
        }))
    }

    fn complete_vote(
        &self,
        _txn: &Transaction,
        output: PhaseOutput,
    ) -> std::result::Result<Vote, ResourceError> {
        let done = output
            .downcast::<VoteDone>()
            .map_err(|_| ResourceError::new(self.lost("a vote job returned something else")))?;
        let mut guard = self.ending_resource_state()?; // releases the connection once done
        let st = &mut *guard;
        st.conn = Some(done.conn);
        self.apply_vote(st, done.voted)
    }

    /// A prepared PostgreSQL or MariaDB/MySQL branch is finished on the coordinator's worker
    /// thread: the connection moves into the job (MariaDB's branch is pinned to it) and
    /// comes back with the outcome.
    fn finish_job(&self, _txn: &Transaction) -> Option<PhaseJob> {
        let mut st = self.state.try_borrow_mut().ok()?;
        let gid = st.prepared.take()?;
        #[cfg(feature = "fault-injection")]
        let op: PhaseTwo = if crate::fault::is_set(&self.name, crate::fault::Phase::Finish) {
            crate::fault::fail_finish
        } else {
            dispatch!(self.engine, B => B::commit_prepared)
        };
        #[cfg(not(feature = "fault-injection"))]
        let op: PhaseTwo = dispatch!(self.engine, B => B::commit_prepared);
        let mut conn = st.conn.take();
        let name = self.name.clone();
        let engine = self.engine.clone();
        Some(PhaseJob::new(move || {
            let outcome = finish_prepared(&name, &engine, &mut conn, &gid, op);
            FinishDone { conn, outcome }
        }))
    }

    fn complete_finish(
        &self,
        _txn: &Transaction,
        output: PhaseOutput,
    ) -> std::result::Result<(), ResourceError> {
        let done = output
            .downcast::<FinishDone>()
            .map_err(|_| ResourceError::new(self.lost("a finish job returned something else")))?;
        let mut st = self.ending_resource_state()?; // releases the connection once done
        st.conn = done.conn;
        done.outcome
    }

    fn tpc_finish(&self, _txn: &Transaction) -> std::result::Result<(), ResourceError> {
        let mut st = self.ending_resource_state()?; // releases the connection once done
        let Some(gid) = st.prepared.take() else {
            return Ok(());
        };
        #[cfg(feature = "fault-injection")]
        if crate::fault::is_set(&self.name, crate::fault::Phase::Finish) {
            return self.finish_prepared(&mut st, &gid, crate::fault::fail_finish);
        }
        let op: PhaseTwo = dispatch!(self.engine, B => B::commit_prepared);
        self.finish_prepared(&mut st, &gid, op)
    }

    fn tpc_abort(&self, txn: &Transaction) -> std::result::Result<(), ResourceError> {
        DataManager::abort(self, txn)
    }

    fn leave_prepared(&self, _txn: &Transaction) {
        let Ok(mut st) = self.ending_resource_state() else {
            tracing::error!(engine = %self.name, "cannot leave a prepared branch for recovery: the session is in use; it stays until the session closes");
            return;
        };
        let Some(gid) = st.prepared.take() else {
            return;
        };
        tracing::warn!(engine = %self.name, gid, "leaving a prepared branch for recovery: the commit decision's outcome is unknown");
        st.joined = None;
        st.open = false;
        st.branch = None;
        // Close the connection rather than pool it: MariaDB keeps a prepared XA branch
        // attached to its connection, and only a closed one lets recovery finish it.
        if let Some(mut conn) = st.conn.take() {
            conn.mark_broken();
        }
    }

    #[cfg(feature = "fault-injection")]
    fn tpc_begin(&self, _txn: &Transaction) -> std::result::Result<(), ResourceError> {
        crate::fault::check(&self.name, crate::fault::Phase::Begin)
            .map_err(|e| self.resource_error(e))
    }

    fn supports_one_phase_commit(&self) -> bool {
        self.engine.backend().can_prepare()
    }

    fn commit_one_phase(&self, _txn: &Transaction) -> std::result::Result<(), ResourceError> {
        let mut st = self.ending_resource_state()?; // releases the connection once done
        if !st.open {
            return Ok(());
        }
        self.check_committable(&mut st)
            .map_err(ResourceError::new)?;
        #[cfg(feature = "fault-injection")]
        crate::fault::check(&self.name, crate::fault::Phase::Vote)
            .map_err(|e| self.resource_error(e))?;
        st.open = false;
        let carried = st.carried_xid.take();
        let outcome = self.commit_open(&mut st);
        #[cfg(feature = "postgres")]
        if let (Err(failed), Some(xid), Some(log)) = (&outcome, &carried, self.carrier()) {
            // This COMMIT was the decision: what became of it is asked, never guessed.
            let why: transaction::BoxError = failed.error.to_string().into();
            return match log.settle_carried(xid, why) {
                Ok(()) => {
                    tracing::warn!(engine = %self.name, "the COMMIT carrying the decision failed, but the server committed it");
                    Ok(())
                }
                Err(e @ crate::DatabaseLogError::OutcomeUnknown { .. }) => {
                    Err(ResourceError::outcome_unknown(e))
                }
                Err(_) => match outcome {
                    Err(failed) => Err(self.failed(&mut st, failed)),
                    Ok(()) => Ok(()),
                },
            };
        }
        let _ = carried;
        outcome.map_err(|failed| self.failed(&mut st, failed))
    }

    /// A managed writer of a backend that cannot prepare (SQLite) carries the decision:
    /// it commits last, and its commit must be the commit point, or a crash right after it
    /// would leave it committed and the prepared databases without a decision.
    fn carries_decision(&self, _txn: &Transaction) -> bool {
        self.managed
            && (dispatch!(self.engine, B => B::CARRIES_DECISION) || self.carrier().is_some())
            && !self.engine.is_read_only()
            && self.state.try_borrow().is_ok_and(|st| st.open)
    }

    /// Writes the decision into the open transaction (SQLite: rows of
    /// `sqlassist_decision`, after checking `PRAGMA synchronous` is `FULL`); the vote then
    /// commits it with the session's work.
    fn carry_decision(
        &self,
        _txn: &Transaction,
        decision: &transaction::DecisionRecord,
    ) -> std::result::Result<(), ResourceError> {
        let mut guard = self.resource_state()?;
        let st = &mut *guard;
        self.check_committable(st).map_err(ResourceError::new)?;
        st.carried_xid = None;
        let conn = st
            .conn
            .as_mut()
            .ok_or_else(|| ResourceError::new(self.no_connection()))?;
        #[cfg(feature = "postgres")]
        if let (Some(log), crate::conn::Conn::Pg(c)) = (self.carrier(), &mut *conn) {
            // The log's database: the fenced decision INSERT in this very transaction.
            let xid = log.carry(c, decision).map_err(ResourceError::new)?;
            st.carried_xid = Some(xid);
            return Ok(());
        }
        let ctx = self.ctx();
        dispatch!(conn, B => B::carry_decision(conn, &ctx, decision)).map_err(|e| {
            if crate::error::Transient::is_transient(&e) {
                ResourceError::transient(e)
            } else {
                ResourceError::new(e)
            }
        })
    }

    fn branch_id(&self, _txn: &Transaction) -> Option<String> {
        self.state
            .try_borrow()
            .ok()
            .and_then(|s| s.prepared.clone())
    }

    fn supports_savepoints(&self) -> bool {
        true
    }

    fn savepoint(
        &self,
        _txn: &Transaction,
    ) -> Option<std::result::Result<Box<dyn ResourceSavepoint>, ResourceError>> {
        let session = self.me.upgrade()?;
        let mut st = match self.resource_state() {
            Ok(st) => st,
            Err(e) => return Some(Err(e)),
        };
        if !st.open {
            return Some(Ok(Box::new(SessionSavepoint {
                session: session.clone(),
                name: None,
            })));
        }
        st.next_savepoint += 1;
        let name = format!("sqlassist_sp_{}", st.next_savepoint);
        let conn = st.conn.as_mut()?;
        Some(match conn.batch_execute(&format!("SAVEPOINT {name}")) {
            Ok(()) => Ok(Box::new(SessionSavepoint {
                session: session.clone(),
                name: Some(name),
            })),
            Err(e) => Err(self.resource_error(e)),
        })
    }
}

/// A session's part of a transaction savepoint: a database `SAVEPOINT`, or nothing when
/// the session had no open transaction (rolling back then discards whatever began since).
struct SessionSavepoint {
    session: Rc<SessionInner>,
    name: Option<String>,
}

impl ResourceSavepoint for SessionSavepoint {
    fn rollback(&self) -> std::result::Result<(), ResourceError> {
        let inner = &self.session;
        let mut st = inner.resource_state()?;
        match &self.name {
            Some(name) if st.open => {
                let conn = st
                    .conn
                    .as_mut()
                    .ok_or_else(|| ResourceError::new(inner.no_connection()))?;
                conn.batch_execute(&format!("ROLLBACK TO SAVEPOINT {name}"))
                    .map_err(|e| inner.resource_error(e))
            }
            Some(_) => Err(ResourceError::new(inner.lost("the database transaction the savepoint was taken in has ended (rolled back or committed since)"))),
            None => inner
                .rollback_open(&mut st)
                .map_err(|e| inner.resource_error(e)),
        }
    }
}
