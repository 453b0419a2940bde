//! Engines: a database URL, its options and an r2d2 pool.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use diesel::r2d2::{ConnectionManager, CustomizeConnection, ManageConnection, Pool};
use r2d2::event::{CheckoutEvent, HandleEvent};

#[cfg(feature = "mysql")]
use diesel::MysqlConnection;
#[cfg(feature = "postgres")]
use diesel::PgConnection;
#[cfg(feature = "sqlite")]
use diesel::SqliteConnection;

use crate::backend::Backend;
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::options::EngineOptions;
use crate::pool::{Manager, Timed};
use crate::settings::Settings;
use crate::url::DatabaseUrl;

enum Pools {
    #[cfg(feature = "postgres")]
    Pg(Pool<Manager<PgConnection>>),
    #[cfg(feature = "sqlite")]
    Sqlite(Pool<Manager<SqliteConnection>>),
    #[cfg(feature = "mysql")]
    Mysql(Pool<Manager<MysqlConnection>>),
}

struct EngineInner {
    options: EngineOptions,
    /// The server was seen to accept prepared transactions (checked once per engine, on
    /// the first managed use; a failed check is repeated, since it may be fixed).
    two_phase_verified: std::sync::atomic::AtomicBool,
    /// The URL the pool connects with (read-only form for read-only SQLite engines).
    connect_url: String,
    pool: Pools,
    /// SQL run on every new connection (session characteristics, pragmas).
    setup: Arc<Setup>,
    /// Checkout tests the pool has run (see [`PoolState::pings`]).
    pings: Arc<AtomicU64>,
    /// How long checkouts waited (see [`PoolState::checkout_wait`]).
    waits: Arc<PoolWaits>,
    /// Sessions open on this engine, on every thread (see [`Engine::open_sessions`]).
    sessions: AtomicU64,
    /// The named holders of open sessions (see [`hold_sessions_as`]).
    holders: std::sync::Mutex<Vec<(u64, Arc<str>)>>,
}

/// Counts a session as open on its engine while it lives, and lists its holder (see
/// [`hold_sessions_as`]) if its thread named one.
pub(crate) struct OpenSession {
    engine: Engine,
    held: Option<u64>,
}

std::thread_local! {
    /// What holds the sessions this thread opens (see [`hold_sessions_as`]).
    static HOLDER: std::cell::RefCell<Option<Arc<str>>> = const { std::cell::RefCell::new(None) };
}

static NEXT_HELD: AtomicU64 = AtomicU64::new(0);

impl OpenSession {
    pub(crate) fn new(engine: &Engine) -> Self {
        engine.inner.sessions.fetch_add(1, Ordering::Relaxed);
        let held = HOLDER.with(|h| h.borrow().clone()).map(|holder| {
            let id = NEXT_HELD.fetch_add(1, Ordering::Relaxed);
            engine.holders().push((id, holder));
            id
        });
        Self {
            engine: engine.clone(),
            held,
        }
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.engine.inner.sessions.fetch_sub(1, Ordering::Relaxed);
        if let Some(id) = self.held {
            self.engine.holders().retain(|(held, _)| *held != id);
        }
    }
}

/// Names what holds the sessions this thread opens from now until the guard drops (a
/// unit of work: `"POST /notes/1"`), for [`Engine::session_holders`]. The previous name
/// comes back when the guard drops.
///
/// # Examples
///
/// ```
/// use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry};
///
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
/// let mut registry = Registry::new();
/// registry.init_engine("main", engine.clone(), InitOptions::new())?;
/// let holder = sqlassist::hold_sessions_as("job 7");
/// let session = registry.session("main")?;
/// assert_eq!(engine.session_holders(), ["job 7"]);
/// drop((session, holder));
/// sqlassist::close_sessions()?;
/// assert!(engine.session_holders().is_empty());
/// # Ok::<(), sqlassist::Error>(())
/// ```
pub fn hold_sessions_as(holder: &str) -> HolderGuard {
    let previous = HOLDER.with(|h| h.borrow_mut().replace(Arc::from(holder)));
    HolderGuard {
        previous,
        _thread: std::marker::PhantomData,
    }
}

/// Restores the previous holder name of [`hold_sessions_as`] when dropped.
#[must_use = "the name holds only while the guard lives"]
#[derive(Debug)]
pub struct HolderGuard {
    previous: Option<Arc<str>>,
    /// The name belongs to the thread that set it.
    _thread: std::marker::PhantomData<std::rc::Rc<()>>,
}

impl Drop for HolderGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        HOLDER.with(|h| *h.borrow_mut() = previous);
    }
}

/// What an engine's pool reports of each checkout: how many, how long they waited in all,
/// and whom to tell of each wait.
#[derive(Default)]
struct PoolWaits {
    checkouts: AtomicU64,
    wait_nanos: AtomicU64,
    observer: RwLock<Option<PoolWaitObserver>>,
}

type PoolWaitObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// The pool's event handler: counts each checkout and its wait.
struct WaitHandler(Arc<PoolWaits>);

impl fmt::Debug for WaitHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitHandler").finish_non_exhaustive()
    }
}

impl HandleEvent for WaitHandler {
    fn handle_checkout(&self, event: CheckoutEvent) {
        let waited = event.duration();
        let waits = &self.0;
        waits.checkouts.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        waits.wait_nanos.fetch_add(nanos, Ordering::Relaxed);
        let observer = waits
            .observer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(observer) = observer {
            observer(waited);
        }
    }
}

/// A database to talk to: its URL, its options and a pool of connections (SQLAlchemy's
/// `Engine`, built like `engine_from_config`).
///
/// Building an engine opens no connection: the pool fills on first use. An engine is a
/// cheap handle (`Clone` shares the pool) and can be shared between threads.
///
/// # Examples
///
/// ```
/// use sqlassist::{Engine, EngineOptions, Settings};
///
/// let settings = Settings::from_pairs([("sqlalchemy_writer.url", "sqlite://")]);
/// let engine = Engine::from_settings(&settings, "sqlalchemy_writer.")?;
/// assert_eq!(engine.backend(), sqlassist::Backend::Sqlite);
/// assert_eq!(engine.pool_state().connections, 0); // nothing opened yet
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("url", &self.url().redacted())
            .field("read_only", &self.is_read_only())
            .finish_non_exhaustive()
    }
}

/// How many connections an engine's pool holds.
///
/// # Examples
///
/// ```
/// use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry};
///
/// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
/// assert_eq!(engine.pool_state().connections, 0); // the pool fills on first use
///
/// let mut registry = Registry::new();
/// registry.init_engine("main", engine.clone(), InitOptions::new())?;
/// let session = registry.session("main")?;
/// session.execute("CREATE TABLE t (v INTEGER)")?;
/// let state = engine.pool_state();
/// assert_eq!((state.connections, state.idle), (1, 0)); // held by the open transaction
///
/// session.commit()?; // the transaction ended: the connection is back in the pool
/// let state = engine.pool_state();
/// assert_eq!((state.connections, state.idle), (1, 1));
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolState {
    /// Connections open, in use or idle.
    pub connections: u32,
    /// Connections idle in the pool.
    pub idle: u32,
    /// How many times a connection was tested at checkout (a `SELECT 1` round trip each)
    /// since the engine was built. A connection returned to the pool, or opened, less than
    /// [`EngineOptions::pool_pre_ping_window`] ago is handed out untested.
    pub pings: u64,
    /// Connections handed out by the pool since the engine was built.
    pub checkouts: u64,
    /// How long those checkouts waited for a connection, in all (per checkout: see
    /// [`Engine::on_pool_wait`]).
    pub checkout_wait: Duration,
}

impl Engine {
    /// Builds an engine from the settings under `prefix` (`"sqlalchemy_reader."`): see
    /// [`EngineOptions::from_settings`] for the keys.
    ///
    /// # Errors
    ///
    /// The errors of [`EngineOptions::from_settings`] (missing `url`, malformed URL,
    /// unknown or malformed option).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Backend, Engine, Error, Settings};
    ///
    /// let settings = Settings::from_pairs([
    ///     ("sqlalchemy_writer.url", "sqlite://"),
    ///     ("sqlalchemy_writer.pool_size", "5"),
    /// ]);
    /// let engine = Engine::from_settings(&settings, "sqlalchemy_writer.")?;
    /// assert_eq!(engine.backend(), Backend::Sqlite);
    /// assert_eq!(engine.options().pool_size(), 5);
    ///
    /// let typo = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_sise", "5")]);
    /// assert!(matches!(
    ///     Engine::from_settings(&typo, "db."),
    ///     Err(Error::UnknownSetting { key, .. }) if key == "db.pool_sise"
    /// ));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn from_settings(settings: &Settings, prefix: &str) -> Result<Self> {
        Self::new(EngineOptions::from_settings(settings, prefix)?)
    }

    /// Builds an engine from options. Opens no connection.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] for an option the backend cannot apply (an
    /// `application_name` with control characters, say).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions};
    /// use std::time::Duration;
    ///
    /// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?)
    ///     .busy_timeout(Duration::from_secs(1))
    ///     .build()?;
    /// let engine = Engine::new(options)?;
    /// assert_eq!(engine.options().busy_timeout(), Duration::from_secs(1));
    /// assert_eq!(engine.pool_state().connections, 0); // no connection opened
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn new(options: EngineOptions) -> Result<Self> {
        let setup = Arc::new(Setup::new(&options)?);
        let connect_url = match (
            options.is_read_only(),
            options.url().read_only_connection_string(),
        ) {
            (true, Some(ro)) => ro,
            _ => options.url().connection_string().to_owned(),
        };
        let pings = Arc::new(AtomicU64::new(0));
        let waits = Arc::new(PoolWaits::default());
        let pool = match options.url().backend() {
            #[cfg(feature = "postgres")]
            Backend::Postgres => Pools::Pg(build_pool(
                &options,
                connect_url.clone(),
                setup.clone(),
                pings.clone(),
                waits.clone(),
            )),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => Pools::Sqlite(build_pool(
                &options,
                connect_url.clone(),
                setup.clone(),
                pings.clone(),
                waits.clone(),
            )),
            #[cfg(feature = "mysql")]
            Backend::Mysql => Pools::Mysql(build_pool(
                &options,
                connect_url.clone(),
                setup.clone(),
                pings.clone(),
                waits.clone(),
            )),
            #[allow(unreachable_patterns)]
            backend => {
                return Err(Error::BackendNotEnabled {
                    backend,
                    feature: backend.feature(),
                })
            }
        };
        tracing::debug!(url = %options.url().redacted(), "engine built");
        Ok(Self {
            inner: Arc::new(EngineInner {
                options,
                two_phase_verified: std::sync::atomic::AtomicBool::new(false),
                connect_url,
                pool,
                setup,
                pings,
                waits,
                sessions: AtomicU64::new(0),
                holders: std::sync::Mutex::default(),
            }),
        })
    }

    /// The database URL (its `Display` and `Debug` hide the password).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Engine, Settings};
    /// use std::path::Path;
    ///
    /// let settings = Settings::from_ini_str(
    ///     "[app:main]\nsqlalchemy.url = sqlite:///data/app.db\n",
    ///     "app:main",
    ///     "/srv/myapp",
    /// )?;
    /// let engine = Engine::from_settings(&settings, "sqlalchemy.")?; // opens nothing
    /// assert_eq!(engine.url().sqlite_path(), Some(Path::new("/srv/myapp/data/app.db")));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn url(&self) -> &DatabaseUrl {
        self.inner.options.url()
    }

    /// The backend the URL selects.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Backend, DatabaseUrl, Engine, EngineOptions};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// assert_eq!(engine.backend(), Backend::Sqlite);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn backend(&self) -> Backend {
        self.url().backend()
    }

    /// The options the engine was built with.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions};
    ///
    /// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?).echo(true).build()?;
    /// let engine = Engine::new(options.clone())?;
    /// assert_eq!(engine.options(), &options);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// Whether connections are opened read-only.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Engine, Settings};
    ///
    /// let settings = Settings::from_pairs([
    ///     ("sqlalchemy_reader.url", "sqlite://"),
    ///     ("sqlalchemy_reader.read_only", "true"),
    /// ]);
    /// let engine = Engine::from_settings(&settings, "sqlalchemy_reader.")?;
    /// assert!(engine.is_read_only());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn is_read_only(&self) -> bool {
        self.inner.options.is_read_only()
    }

    /// The pool's current size.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// let state = engine.pool_state();
    /// assert_eq!((state.connections, state.idle), (0, 0)); // nothing opened yet
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_state(&self) -> PoolState {
        let state = match &self.inner.pool {
            #[cfg(feature = "postgres")]
            Pools::Pg(p) => p.state(),
            #[cfg(feature = "sqlite")]
            Pools::Sqlite(p) => p.state(),
            #[cfg(feature = "mysql")]
            Pools::Mysql(p) => p.state(),
        };
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
            pings: self.inner.pings.load(Ordering::Relaxed),
            checkouts: self.inner.waits.checkouts.load(Ordering::Relaxed),
            checkout_wait: Duration::from_nanos(
                self.inner.waits.wait_nanos.load(Ordering::Relaxed),
            ),
        }
    }

    /// How many sessions are open on this engine right now, on every thread (a session
    /// counts from the first `Registry::session` call of its thread until it is closed and
    /// dropped).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// let mut registry = Registry::new();
    /// registry.init_engine("main", engine.clone(), InitOptions::new())?;
    /// let session = registry.session("main")?;
    /// assert_eq!(engine.open_sessions(), 1);
    /// drop(session);
    /// sqlassist::close_sessions()?;
    /// assert_eq!(engine.open_sessions(), 0);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn open_sessions(&self) -> u64 {
        self.inner.sessions.load(Ordering::Relaxed)
    }

    /// What holds the sessions open on this engine right now, one entry per session opened
    /// under a [`hold_sessions_as`] name, oldest first (sessions opened without a name are
    /// only counted, by [`Engine::open_sessions`]).
    pub fn session_holders(&self) -> Vec<String> {
        self.holders().iter().map(|(_, h)| h.to_string()).collect()
    }

    fn holders(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Arc<str>)>> {
        // Every change is one push or one retain: the list is whole after a panic.
        self.inner
            .holders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `observer` with how long each checkout from this engine's pool waited for a
    /// connection (zero when one was idle), on the thread that checked out, once it has
    /// the connection: for a histogram of pool waits. It replaces the observer set before.
    /// [`PoolState::checkouts`] and [`PoolState::checkout_wait`] hold the totals.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// let waits = Arc::new(Mutex::new(Vec::new()));
    /// let seen = waits.clone();
    /// engine.on_pool_wait(move |waited| seen.lock().unwrap().push(waited));
    ///
    /// let mut registry = Registry::new();
    /// registry.init_engine("main", engine.clone(), InitOptions::new())?;
    /// let session = registry.session("main")?;
    /// session.execute("CREATE TABLE t (v INTEGER)")?;
    /// session.commit()?;
    /// assert_eq!(waits.lock().unwrap().len(), 1);
    /// assert_eq!(engine.pool_state().checkouts, 1);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn on_pool_wait(&self, observer: impl Fn(Duration) + Send + Sync + 'static) {
        *self
            .inner
            .waits
            .observer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(observer));
    }

    /// Opens a connection now, outside the pool, and checks the server is usable (for
    /// PostgreSQL: that prepared transactions are enabled when `two_phase` is true). Use it
    /// at start-up to fail fast.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when no connection can be opened or set up;
    /// [`Error::PreparedTransactionsDisabled`] when two-phase commit is asked for and the
    /// server refuses it; [`Error::SqliteNotDurable`] when two-phase commit is asked of a
    /// SQLite writer running below `PRAGMA synchronous = FULL` (its commits carry commit
    /// decisions).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// engine.check(false)?;
    /// assert_eq!(engine.pool_state().connections, 0); // the check used no pooled connection
    ///
    /// // A directory that does not exist: the file cannot be created.
    /// let url = DatabaseUrl::parse("sqlite:////nonexistent-sqlassist-doc/app.db")?;
    /// let engine = Engine::new(EngineOptions::new(url))?; // builds: opens nothing
    /// assert!(matches!(engine.check(false), Err(Error::Connect { .. })));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    ///
    /// At start-up, a PostgreSQL engine that will take part in two-phase commit (needs a
    /// server, and the `postgres` feature):
    ///
    /// ```no_run
    /// # #[cfg(feature = "postgres")]
    /// # {
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error};
    ///
    /// let url = DatabaseUrl::parse("postgresql://myapp_writer@localhost/myapp")?;
    /// let engine = Engine::new(EngineOptions::new(url))?;
    /// match engine.check(true) {
    ///     Ok(()) => {}
    ///     Err(Error::PreparedTransactionsDisabled { .. }) => {
    ///         eprintln!("set max_prepared_transactions above 0, or register the engine unmanaged");
    ///     }
    ///     Err(other) => return Err(other),
    /// }
    /// # }
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn check(&self, two_phase: bool) -> Result<()> {
        // Only PostgreSQL needs a server setting for two-phase commit.
        #[cfg(not(feature = "postgres"))]
        let _ = two_phase;
        match &self.inner.pool {
            #[cfg(feature = "postgres")]
            Pools::Pg(_) => {
                let mut conn = self
                    .probe::<PgConnection>()
                    .map_err(|e| self.connect_error(e))?;
                self.inner
                    .setup
                    .apply(&mut conn)
                    .map_err(|e| self.connect_error(e))?;
                if two_phase {
                    crate::backend::postgres::check_two_phase(&mut conn, self.url())?;
                }
                Ok(())
            }
            #[cfg(feature = "sqlite")]
            Pools::Sqlite(_) => {
                let mut conn = self
                    .probe::<SqliteConnection>()
                    .map_err(|e| self.connect_error(e))?;
                self.inner
                    .setup
                    .apply(&mut conn)
                    .map_err(|e| self.connect_error(e))?;
                if two_phase && !self.is_read_only() {
                    // Its commits carry commit decisions: they must survive a power loss.
                    crate::backend::sqlite::check_durable(&mut conn, self.url().redacted())?;
                }
                Ok(())
            }
            #[cfg(feature = "mysql")]
            Pools::Mysql(_) => {
                let mut conn = self
                    .probe::<MysqlConnection>()
                    .map_err(|e| self.connect_error(e))?;
                self.inner
                    .setup
                    .apply(&mut conn)
                    .map_err(|e| self.connect_error(e))
            }
        }
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn is_two_phase_verified(&self) -> bool {
        self.inner
            .two_phase_verified
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn set_two_phase_verified(&self) {
        self.inner
            .two_phase_verified
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Opens a connection outside the pool, set up like the pool's, for the presence lock.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) fn presence_connection<C: diesel::r2d2::R2D2Connection + 'static>(
        &self,
    ) -> Result<C> {
        let mut conn = self.probe::<C>().map_err(|e| self.connect_error(e))?;
        self.inner
            .setup
            .apply(&mut conn)
            .map_err(|e| self.connect_error(e))?;
        Ok(conn)
    }

    /// A failed statement on a connection outside the pool.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) fn plain_database_error(&self, source: diesel::result::Error) -> Error {
        Error::Database {
            engine: self.url().redacted().to_owned(),
            transient: false,
            source,
        }
    }

    /// Opens a connection outside the pool.
    pub(crate) fn probe<C: diesel::r2d2::R2D2Connection + 'static>(
        &self,
    ) -> std::result::Result<C, diesel::r2d2::Error> {
        ConnectionManager::<C>::new(self.inner.connect_url.clone()).connect()
    }

    fn connect_error(&self, source: diesel::r2d2::Error) -> Error {
        Error::Connect {
            url: self.url().redacted().to_owned(),
            reason: redact(&source.to_string(), self.url()),
        }
    }

    /// Checks a connection out of the pool. When the pool holds no connection yet, one is
    /// opened directly first, so that a wrong password or an unreachable server is
    /// reported at once rather than after the pool's timeout.
    pub(crate) fn checkout(&self) -> Result<Conn> {
        macro_rules! get {
            ($pool:expr, $variant:ident, $conn:ty) => {{
                if $pool.state().connections == 0 {
                    let mut probe = self.probe::<$conn>().map_err(|e| self.connect_error(e))?;
                    self.inner
                        .setup
                        .apply(&mut probe)
                        .map_err(|e| self.connect_error(e))?;
                }
                $pool
                    .get()
                    .map(|c| Conn::$variant(Box::new(c)))
                    .map_err(|e| Error::Connect {
                        url: self.url().redacted().to_owned(),
                        reason: redact(&e.to_string(), self.url()),
                    })
            }};
        }
        match &self.inner.pool {
            #[cfg(feature = "postgres")]
            Pools::Pg(p) => get!(p, Pg, PgConnection),
            #[cfg(feature = "sqlite")]
            Pools::Sqlite(p) => get!(p, Sqlite, SqliteConnection),
            #[cfg(feature = "mysql")]
            Pools::Mysql(p) => get!(p, Mysql, MysqlConnection),
        }
    }
}

/// Removes the URL's secrets from a message, in case a driver echoes them.
pub(crate) fn redact(message: &str, url: &DatabaseUrl) -> String {
    crate::redact::message(message, url)
}

fn build_pool<C>(
    options: &EngineOptions,
    url: String,
    setup: Arc<Setup>,
    pings: Arc<AtomicU64>,
    waits: Arc<PoolWaits>,
) -> Pool<Manager<C>>
where
    C: diesel::r2d2::R2D2Connection + Send + 'static,
{
    // An in-memory SQLite database lives in its connection: one connection keeps one
    // database.
    let max_size = if options.url().is_memory() {
        1
    } else {
        options.max_connections()
    };
    Pool::builder()
        .max_size(max_size)
        .min_idle(Some(options.pool_min_idle().min(max_size)))
        .connection_timeout(options.pool_timeout())
        // Sessions return their connection at every transaction end: an in-memory
        // database's one connection must not be closed for idling (or age) in the pool.
        .idle_timeout(if options.url().is_memory() {
            None
        } else {
            options.pool_idle_timeout()
        })
        .max_lifetime(if options.url().is_memory() {
            None
        } else {
            options.pool_recycle()
        })
        .test_on_check_out(options.pool_pre_ping())
        .connection_customizer(Box::new(ArcSetup(setup)))
        .error_handler(Box::new(crate::redact::PoolErrorHandler::new(
            options.url().clone(),
        )))
        .event_handler(Box::new(WaitHandler(waits)))
        .build_unchecked(Manager::new(url, options.pool_pre_ping_window(), pings))
}

/// SQL applied to every new connection.
#[derive(Debug)]
pub(crate) struct Setup {
    sql: String,
    echo: bool,
    track_end: bool,
}

#[derive(Debug)]
struct ArcSetup(Arc<Setup>);

impl<C: diesel::Connection + Send + 'static> CustomizeConnection<Timed<C>, diesel::r2d2::Error>
    for ArcSetup
{
    fn on_acquire(&self, conn: &mut Timed<C>) -> std::result::Result<(), diesel::r2d2::Error> {
        self.0.apply(&mut **conn)
    }
}

impl Setup {
    fn new(options: &EngineOptions) -> Result<Self> {
        let sql = match options.url().backend() {
            #[cfg(feature = "postgres")]
            Backend::Postgres => crate::backend::postgres::setup_sql(options)?,
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => crate::backend::sqlite::setup_sql(options),
            #[cfg(feature = "mysql")]
            Backend::Mysql => crate::backend::mysql::setup_sql(options)?,
            #[allow(unreachable_patterns)]
            _ => String::new(),
        };
        Ok(Self {
            sql,
            echo: options.echo(),
            // Only SQLite reads whether a statement may have ended the transaction.
            track_end: options.url().backend() == Backend::Sqlite,
        })
    }

    fn apply<C: diesel::Connection>(
        &self,
        conn: &mut C,
    ) -> std::result::Result<(), diesel::r2d2::Error> {
        conn.set_instrumentation(crate::instrument::Tracker::new(self.echo, self.track_end));
        if self.sql.is_empty() {
            return Ok(());
        }
        conn.batch_execute(&self.sql)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}
