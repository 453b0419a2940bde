//! The registry of named engines, and its process-wide install.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use transaction::{FileDecisionLog, TransactionManager};

use crate::branch::{Identity, NodeId};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::options::{IsolationLevel, EXPECTED_ISOLATION_MANAGED};
use crate::presence::Presence;
use crate::recovery::{RecoveryReport, RecoveryThread, SharedEngines};
use crate::session::Session;
use crate::settings::Settings;

/// The settings key of the registry's node id.
const NODE_ID_KEY: &str = "sqlassist.node_id";
const EXPECTED_NODE_ID: &str = "1 to 24 characters of a-z, 0-9 and -";
/// The settings key of the decision log directory (relative to `here`).
const DECISION_LOG_KEY: &str = "sqlassist.decision_log";
/// `sqlassist.decision_log = engine:<name>`: the decisions go to a table of that engine.
const ENGINE_LOG_PREFIX: &str = "engine:";
/// The settings key of the lease's time to live of a database decision log, in seconds.
#[cfg(feature = "postgres")]
const LEASE_TTL_KEY: &str = "sqlassist.decision_log_ttl";
/// Where an application's `sqlassist.decision_log` keeps its commit decisions
/// ([`Registry::decision_log_location`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecisionLogLocation {
    /// A file decision log in this directory.
    Directory(std::path::PathBuf),
    /// A database decision log in the database of the engine of this name
    /// (`engine:<name>`).
    Engine(String),
}

/// The settings key of the seconds between periodic recovery passes (0: none).
const RECOVERY_INTERVAL_KEY: &str = "sqlassist.recovery_interval";
/// The settings key that turns the presence lock off (`false`).
const PRESENCE_LOCK_KEY: &str = "sqlassist.presence_lock";
/// The settings key of the seconds the start-up recovery pass waits for an engine.
const RECOVERY_STARTUP_WAIT_KEY: &str = "sqlassist.recovery_startup_wait";
/// How long the start-up recovery pass of [`Registry::from_settings`] waits for an
/// engine's prepared branches before leaving the engine to the periodic passes
/// (`sqlassist.recovery_startup_wait`, whole seconds).
///
/// # Examples
///
/// ```
/// assert_eq!(sqlassist::DEFAULT_RECOVERY_STARTUP_WAIT.as_secs(), 5);
/// ```
pub const DEFAULT_RECOVERY_STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The default time between periodic recovery passes (`sqlassist.recovery_interval`).
///
/// # Examples
///
/// ```
/// assert_eq!(sqlassist::DEFAULT_RECOVERY_INTERVAL.as_secs(), 30);
/// ```
pub const DEFAULT_RECOVERY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// How often [`Registry::shutdown`] looks whether the in-flight transactions ended.
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(20);

static NEXT_REGISTRY: AtomicU64 = AtomicU64::new(1);
static INSTALLED: OnceLock<Registry> = OnceLock::new();

/// How an engine takes part in transactions (pyramid_sqlassist's `init_engine` keywords).
///
/// # Examples
///
/// ```
/// let opts = sqlassist::InitOptions::new().default_engine(true).managed(false);
/// assert!(opts.is_default() && !opts.is_managed());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct InitOptions {
    default: bool,
    managed: bool,
}

impl InitOptions {
    /// Unmanaged, not the default: pyramid_sqlassist's `init_engine(name, engine)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::InitOptions;
    ///
    /// let options = InitOptions::new();
    /// assert!(!options.is_default() && !options.is_managed());
    /// ```
    pub fn new() -> Self {
        <Self as Default>::default()
    }

    /// Makes this the registry's default engine. Default: `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// let mut registry = Registry::new();
    /// registry.init_engine("reader", engine.clone(), InitOptions::new().default_engine(true))?;
    /// assert_eq!(registry.default_name(), Some("reader"));
    /// assert!(matches!(
    ///     registry.init_engine("writer", engine, InitOptions::new().default_engine(true)),
    ///     Err(Error::DuplicateDefault { .. })
    /// ));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn default_engine(mut self, default: bool) -> Self {
        self.default = default;
        self
    }

    /// Makes sessions join the thread's transaction and commit only through
    /// `transaction::commit()` (pyramid_sqlassist's `use_zope=True`). Default: `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// let mut registry = Registry::new();
    /// registry.init_engine("writer", engine, InitOptions::new().managed(true))?;
    /// assert!(registry.session("writer")?.is_managed());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn managed(mut self, managed: bool) -> Self {
        self.managed = managed;
        self
    }

    /// Whether this is the default engine.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(sqlassist::InitOptions::new().default_engine(true).is_default());
    /// ```
    pub fn is_default(&self) -> bool {
        self.default
    }

    /// Whether sessions are managed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(sqlassist::InitOptions::new().managed(true).is_managed());
    /// ```
    pub fn is_managed(&self) -> bool {
        self.managed
    }
}

#[derive(Clone)]
struct Registered {
    engine: Engine,
    options: InitOptions,
}

/// Named engines (reader, writer, log, ...), as pyramid_sqlassist's engine registry holds them.
///
/// The registry is a value the application owns. Sessions come from
/// [`session`](Self::session); [`install`](Self::install) makes it the process-wide
/// registry behind [`crate::db_session`], once.
///
/// # Examples
///
/// ```
/// use sqlassist::{Registry, Settings};
///
/// let settings = Settings::from_pairs([
///     ("sqlalchemy_reader.url", "sqlite://"),
///     ("sqlalchemy_reader.default", "true"),
///     ("sqlalchemy_writer.url", "sqlite://"),
///     ("sqlalchemy_writer.managed", "true"),
/// ]);
/// let registry = Registry::from_settings(&settings)?;
/// assert_eq!(registry.names().collect::<Vec<_>>(), ["reader", "writer"]);
/// assert_eq!(registry.default_name(), Some("reader"));
/// assert!(registry.engine("nope").is_err());
/// # Ok::<(), sqlassist::Error>(())
/// ```
pub struct Registry {
    id: u64,
    identity: std::sync::Arc<Identity>,
    engines: BTreeMap<String, Registered>,
    default: Option<String>,
    decision_log: Option<Arc<FileDecisionLog>>,
    /// A decision log in a database, used instead of `decision_log` when set.
    #[cfg(feature = "postgres")]
    database_log: Option<Arc<crate::DatabaseDecisionLog>>,
    /// The periodic recovery passes; behind a lock so that [`Registry::shutdown`] can stop
    /// them through a shared registry.
    recovery: std::sync::Mutex<Option<RecoveryThread>>,
    /// The managed engines, shared with the periodic recovery thread.
    recovery_engines: SharedEngines,
    presence: Arc<Presence>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (name, r) in &self.engines {
            m.entry(name, &(r.engine.url(), r.options));
        }
        m.finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, Registry};
    ///
    /// let registry = Registry::new();
    /// assert_eq!(registry.names().count(), 0);
    /// assert!(matches!(registry.default_session(), Err(Error::NoDefaultEngine)));
    /// ```
    pub fn new() -> Self {
        Self {
            id: NEXT_REGISTRY.fetch_add(1, Ordering::Relaxed),
            identity: std::sync::Arc::new(Identity {
                node: NodeId::per_process(),
                incarnation: 0,
            }),
            engines: BTreeMap::new(),
            default: None,
            decision_log: None,
            #[cfg(feature = "postgres")]
            database_log: None,
            recovery: std::sync::Mutex::new(None),
            recovery_engines: SharedEngines::default(),
            presence: Arc::new(Presence::new(false)),
        }
    }

    /// Registers every engine the settings describe, as SQLAlchemy applications name them:
    /// `sqlalchemy.` (SQLAlchemy's own prefix; the engine is named `sqlalchemy`) and every
    /// `sqlalchemy_<name>.` (the engine is named `<name>`: `sqlalchemy_reader.url` gives
    /// `reader`). Keys under other prefixes (`redis.url`, `session.url`, `cache.url`)
    /// belong to other services and are ignored; name more engine prefixes with
    /// [`from_settings_with_prefixes`](Self::from_settings_with_prefixes).
    ///
    /// Under an engine prefix `P.`, `P.managed` (or `P.use_zope`) and `P.default` set the
    /// [`InitOptions`]; every other key is an engine option (see [`EngineOptions`](crate::EngineOptions)).
    /// `sqlassist.node_id` sets the [`node_id`](Self::node_id) its branches carry.
    /// `sqlassist.decision_log = <dir>` (relative to the settings' `here`) opens that
    /// file decision log ([`open_decision_log`](Self::open_decision_log): once per
    /// process), runs a recovery pass before returning, and starts periodic passes every
    /// `sqlassist.recovery_interval` seconds (default 30, `0` for none; see
    /// [`start_recovery`](Self::start_recovery)). The start-up pass waits at most
    /// `sqlassist.recovery_startup_wait` seconds (default 5) for an engine's branches
    /// ([`recover_within`](Self::recover_within)): an engine that does not answer by then
    /// does not hold up the start, and the periodic passes recover it. Before opening the
    /// log it takes the node id's presence locks
    /// ([`hold_presence_locks`](Self::hold_presence_locks)), unless
    /// `sqlassist.presence_lock = false`. `sqlassist.decision_log = engine:<name>`
    /// (feature `postgres`) keeps the decisions in the database of the registered
    /// PostgreSQL engine `<name>` instead (`DatabaseDecisionLog`, with a node lease of
    /// `sqlassist.decision_log_ttl` seconds, default 30), and makes it every thread's
    /// default manager's log.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] when `sqlassist.node_id` is not a valid [`NodeId`]. Those
    /// of [`Engine::from_settings`] and [`init_engine`](Self::init_engine): an engine
    /// prefix without its `url` ([`Error::MissingSetting`]) or with a key that is no
    /// option, such as a misspelt `url` ([`Error::UnknownSetting`]), a value that does not
    /// parse or is out of range ([`Error::InvalidSetting`]); [`Error::InvalidSetting`]
    /// when `P.managed`, `P.use_zope` or `P.default` is not a boolean, or when a managed
    /// engine asks for `isolation_level = AUTOCOMMIT`. With `sqlassist.decision_log`:
    /// those of [`open_decision_log`](Self::open_decision_log) and
    /// [`start_recovery`](Self::start_recovery), and [`Error::InvalidSetting`] when
    /// `sqlassist.recovery_interval` or `sqlassist.recovery_startup_wait` is not a whole
    /// number of seconds or `sqlassist.presence_lock` not a boolean; [`Error::NodeInUse`]
    /// when another process runs with this node id on a managed engine's database. With
    /// `engine:<name>`: [`Error::UnknownEngine`], [`Error::NodeLeaseHeld`] when another
    /// process holds the node id, [`Error::InvalidSetting`] for a ttl under 3 seconds or an
    /// engine that is not PostgreSQL, and the database's errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, Registry, Settings};
    ///
    /// let settings = Settings::from_pairs([
    ///     ("sqlalchemy_writer.url", "sqlite://"),
    ///     ("sqlalchemy_writer.use_zope", "true"), // pyramid_sqlassist's spelling of `managed`
    ///     ("sqlalchemy.url", "sqlite://"),
    ///     ("cache.url", "memcached://127.0.0.1:11211"), // another service's: ignored
    /// ]);
    /// let registry = Registry::from_settings(&settings)?;
    /// assert_eq!(registry.names().collect::<Vec<_>>(), ["sqlalchemy", "writer"]);
    /// assert!(registry.is_managed("writer")?);
    /// assert!(!registry.is_managed("sqlalchemy")?);
    ///
    /// let bad = Settings::from_pairs([("sqlalchemy_db.url", "sqlite://"), ("sqlalchemy_db.managed", "maybe")]);
    /// assert!(matches!(
    ///     Registry::from_settings(&bad),
    ///     Err(Error::InvalidSetting { key, .. }) if key == "sqlalchemy_db.managed"
    /// ));
    /// let misspelt = Settings::from_pairs([("sqlalchemy.uri", "sqlite://")]);
    /// assert!(matches!(
    ///     Registry::from_settings(&misspelt),
    ///     Err(Error::UnknownSetting { key, .. }) if key == "sqlalchemy.uri"
    /// ));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        Self::from_settings_with_prefixes(settings, &[])
    }

    /// Like [`from_settings`](Self::from_settings), with more engine prefixes that the
    /// application names (`"log."` or `"log"`): each becomes an engine named after the
    /// prefix (`log`), and must have its `url`.
    ///
    /// # Errors
    ///
    /// Those of [`from_settings`](Self::from_settings); [`Error::MissingSetting`] for a
    /// named prefix without its `url`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, Registry, Settings};
    ///
    /// let settings = Settings::from_pairs([
    ///     ("sqlalchemy_writer.url", "sqlite://"),
    ///     ("log.url", "sqlite://"),
    ///     ("redis.url", "redis://localhost"),
    /// ]);
    /// let registry = Registry::from_settings_with_prefixes(&settings, &["log."])?;
    /// assert_eq!(registry.names().collect::<Vec<_>>(), ["log", "writer"]);
    /// assert!(matches!(
    ///     Registry::from_settings_with_prefixes(&settings, &["audit"]),
    ///     Err(Error::MissingSetting { key }) if key == "audit.url"
    /// ));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn from_settings_with_prefixes(settings: &Settings, prefixes: &[&str]) -> Result<Self> {
        let mut registry = Self::new_from_settings(settings, prefixes)?;
        let Some(dir) = settings.get(DECISION_LOG_KEY) else {
            return Ok(registry);
        };
        let seconds = |key: &str, default: std::time::Duration| match settings.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(std::time::Duration::from_secs)
                .map_err(|_| Error::invalid_setting(key, v, "a whole number of seconds")),
        };
        let interval = seconds(RECOVERY_INTERVAL_KEY, DEFAULT_RECOVERY_INTERVAL)?;
        let startup_wait = seconds(RECOVERY_STARTUP_WAIT_KEY, DEFAULT_RECOVERY_STARTUP_WAIT)?;
        let presence = settings
            .get(PRESENCE_LOCK_KEY)
            .map(|v| crate::options::parse_bool(PRESENCE_LOCK_KEY, v))
            .transpose()?
            .unwrap_or(true);
        registry.set_presence_lock(presence);
        // Before the log is opened: a process refused here leaves no trace.
        registry.hold_presence_locks(startup_wait)?;
        match dir.strip_prefix(ENGINE_LOG_PREFIX) {
            #[cfg(feature = "postgres")]
            Some(name) => {
                let ttl = match settings.get(LEASE_TTL_KEY) {
                    None => crate::DEFAULT_LEASE_TTL,
                    Some(v) => v
                        .trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|s| *s >= 3)
                        .map(std::time::Duration::from_secs)
                        .ok_or_else(|| {
                            Error::invalid_setting(
                                LEASE_TTL_KEY,
                                v,
                                "a whole number of seconds, 3 or more",
                            )
                        })?,
                };
                let engine = registry.engine(name.trim())?.clone();
                let log = crate::DatabaseDecisionLog::open(engine, registry.node_id(), ttl)?;
                transaction::set_default_decision_log(log.clone())?;
                registry.use_database_decision_log(log);
            }
            #[cfg(not(feature = "postgres"))]
            Some(_) => {
                return Err(Error::invalid_setting(
                    DECISION_LOG_KEY,
                    dir,
                    "a directory (a database decision log needs the `postgres` feature)",
                ))
            }
            None => registry.open_decision_log(settings.here().join(dir))?,
        }
        // Start-up: finish what an earlier run left before the registry serves sessions,
        // without waiting long for an engine that does not answer.
        let report = registry.recover_within(startup_wait)?;
        for (engine, error) in &report.unreachable {
            tracing::warn!(engine = engine.as_str(), error = %error, "start-up recovery could not list an engine's prepared branches; the periodic passes will");
        }
        tracing::info!(
            branches = report.branches.len(),
            unreachable = report.unreachable.len(),
            forgotten = report.forgotten.len(),
            "start-up recovery pass done"
        );
        if !interval.is_zero() {
            registry.start_recovery(interval)?;
        }
        Ok(registry)
    }

    /// The engines of [`from_settings_with_prefixes`](Self::from_settings_with_prefixes)
    /// and their node id, and nothing else: the decision log is not opened (its lock stays
    /// with the application), no recovery pass runs and no periodic passes start. For
    /// tools that inspect an application's databases and must not act unless asked (the
    /// `sqlassist` command); [`decision_log_dir`](Self::decision_log_dir) says where the
    /// log is.
    ///
    /// # Errors
    ///
    /// Those of [`from_settings_with_prefixes`](Self::from_settings_with_prefixes) about
    /// engines and the node id.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let settings = Settings::from_pairs([
    ///     ("sqlalchemy_main.url", "sqlite://"),
    ///     ("sqlassist.decision_log", "/nonexistent-sqlassist-doc/log"),
    /// ]);
    /// let registry = Registry::from_settings_inert(&settings, &[])?;
    /// assert!(registry.decision_log().is_none());
    /// assert!(Registry::decision_log_dir(&settings).is_some());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn from_settings_inert(settings: &Settings, prefixes: &[&str]) -> Result<Self> {
        Self::new_from_settings(settings, prefixes)
    }

    /// The decision log directory `sqlassist.decision_log` names, relative to the
    /// settings' `here`, if set.
    ///
    /// # Examples
    ///
    /// See [`from_settings_inert`](Self::from_settings_inert).
    /// (`None` as well for a database log, `engine:<name>`: see
    /// [`decision_log_location`](Self::decision_log_location)).
    pub fn decision_log_dir(settings: &Settings) -> Option<std::path::PathBuf> {
        match Self::decision_log_location(settings)? {
            DecisionLogLocation::Directory(dir) => Some(dir),
            DecisionLogLocation::Engine(_) => None,
        }
    }

    /// Where `sqlassist.decision_log` keeps the commit decisions, if set: a directory
    /// (relative to the settings' `here`) or, for `engine:<name>`, a table of that engine's
    /// database.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DecisionLogLocation, Registry, Settings};
    ///
    /// let settings = Settings::from_pairs([("sqlassist.decision_log", "engine:log")]);
    /// assert_eq!(
    ///     Registry::decision_log_location(&settings),
    ///     Some(DecisionLogLocation::Engine("log".into()))
    /// );
    /// assert_eq!(Registry::decision_log_dir(&settings), None);
    /// ```
    pub fn decision_log_location(settings: &Settings) -> Option<DecisionLogLocation> {
        let value = settings.get(DECISION_LOG_KEY)?;
        Some(match value.strip_prefix(ENGINE_LOG_PREFIX) {
            Some(name) => DecisionLogLocation::Engine(name.trim().to_owned()),
            None => DecisionLogLocation::Directory(settings.here().join(value)),
        })
    }

    /// The lease time to live of a database decision log, `sqlassist.decision_log_ttl`
    /// (default [`DEFAULT_LEASE_TTL`](crate::DEFAULT_LEASE_TTL)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] when it is not a whole number of seconds, 3 or more.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let settings = Settings::from_pairs([("sqlassist.decision_log_ttl", "9")]);
    /// assert_eq!(Registry::decision_log_ttl(&settings)?.as_secs(), 9);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    #[cfg(feature = "postgres")]
    pub fn decision_log_ttl(settings: &Settings) -> Result<std::time::Duration> {
        match settings.get(LEASE_TTL_KEY) {
            None => Ok(crate::DEFAULT_LEASE_TTL),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s >= 3)
                .map(std::time::Duration::from_secs)
                .ok_or_else(|| {
                    Error::invalid_setting(LEASE_TTL_KEY, v, "a whole number of seconds, 3 or more")
                }),
        }
    }

    fn new_from_settings(settings: &Settings, prefixes: &[&str]) -> Result<Self> {
        let mut registry = Self::new();
        if let Some(node) = settings.get(NODE_ID_KEY) {
            let node = NodeId::new(node)
                .map_err(|_| Error::invalid_setting(NODE_ID_KEY, node, EXPECTED_NODE_ID))?;
            registry.set_node_id(node);
        }
        for prefix in engine_prefixes(settings, prefixes) {
            let name = prefix.trim_end_matches('.');
            let name = name.strip_prefix("sqlalchemy_").unwrap_or(name);
            let flag = |key: &str| -> Result<Option<bool>> {
                settings
                    .get(&format!("{prefix}{key}"))
                    .map(|v| crate::options::parse_bool(&format!("{prefix}{key}"), v))
                    .transpose()
            };
            let managed = flag("managed")?.or(flag("use_zope")?).unwrap_or(false);
            let default = flag("default")?.unwrap_or(false);
            let isolation_key = format!("{prefix}isolation_level");
            if let Some(level) = settings.get(&isolation_key) {
                if managed && IsolationLevel::is_autocommit(level) {
                    return Err(Error::invalid_setting(
                        isolation_key,
                        level,
                        EXPECTED_ISOLATION_MANAGED,
                    ));
                }
            }
            let engine = Engine::from_settings(settings, &prefix)?;
            registry.init_engine(
                name,
                engine,
                InitOptions::new().managed(managed).default_engine(default),
            )?;
        }
        Ok(registry)
    }

    /// The node id every branch prepared through this registry carries. Default:
    /// [`NodeId::per_process`], drawn at random once per process, so that no two processes
    /// ever share one; set a stable id ([`set_node_id`](Self::set_node_id)) for a restarted
    /// process to recognise the branches its predecessor left prepared.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{NodeId, Registry};
    ///
    /// let mut registry = Registry::new();
    /// assert_eq!(registry.node_id(), &NodeId::per_process());
    /// registry.set_node_id(NodeId::new("orders-0")?);
    /// assert_eq!(registry.node_id().as_str(), "orders-0");
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn node_id(&self) -> &NodeId {
        &self.identity.node
    }

    /// Sets the node id (see [`node_id`](Self::node_id)). Set it before the first session:
    /// a session already open on a thread keeps the identity it was opened with.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{NodeId, Registry};
    ///
    /// let mut registry = Registry::new();
    /// registry.set_node_id("web-1".parse()?);
    /// assert_eq!(registry.node_id().to_string(), "web-1");
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn set_node_id(&mut self, node: NodeId) {
        std::sync::Arc::make_mut(&mut self.identity).node = node;
        // Locks taken for the old id are released.
        self.presence = Arc::new(Presence::new(self.presence.is_enabled()));
    }

    /// Whether recovery first takes, on every managed engine, a lock that only one
    /// process per node id can hold (see [`hold_presence_locks`](Self::hold_presence_locks)).
    /// Default: off for a registry built by hand, on for one built
    /// [`from_settings`](Self::from_settings) with a decision log (`sqlassist.presence_lock
    /// = false` turns it off there). Turning it off releases the locks held.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut registry = sqlassist::Registry::new();
    /// registry.set_presence_lock(true);
    /// assert!(registry.is_presence_locked());
    /// ```
    pub fn set_presence_lock(&mut self, on: bool) {
        if on != self.presence.is_enabled() {
            self.presence = Arc::new(Presence::new(on));
        }
    }

    /// Whether presence locks are on ([`set_presence_lock`](Self::set_presence_lock)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!sqlassist::Registry::new().is_presence_locked());
    /// ```
    pub fn is_presence_locked(&self) -> bool {
        self.presence.is_enabled()
    }

    /// Takes the presence lock of this registry's node id on every managed engine, waiting
    /// about `limit` at most: two processes configured with one `sqlassist.node_id` (and
    /// different decision log directories, which the log's lock file cannot see) would
    /// each roll back the other's prepared branches as their own undecided ones.
    ///
    /// Each lock is a session-level lock on the engine's database (PostgreSQL
    /// `pg_try_advisory_lock` of a 64-bit hash of the node id, MariaDB/MySQL `GET_LOCK`
    /// of `sqlassist:<node>:<database hash>`) on a connection opened for it outside the
    /// pool and held while the registry lives: one more connection per managed server
    /// engine. SQLite engines need none. Two engines of this registry on one database
    /// share one lock. An engine that does not answer within `limit` is left: recovery
    /// takes its lock before it acts on it, and does not act on it without. Does nothing
    /// while presence locks are off.
    ///
    /// # Errors
    ///
    /// [`Error::NodeInUse`], naming the node id, the engine and the holder's server
    /// session, when another process holds a lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sqlassist::{Registry, Settings};
    ///
    /// let mut registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy.url", "sqlite://"), ("sqlalchemy.managed", "true")]))?;
    /// registry.set_presence_lock(true);
    /// registry.hold_presence_locks(Duration::from_secs(5))?; // SQLite needs no lock
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn hold_presence_locks(&self, limit: std::time::Duration) -> Result<()> {
        if !self.presence.is_enabled() {
            return Ok(());
        }
        let engines = self.managed_engines();
        let (presence, node) = (self.presence.clone(), self.identity.node.clone());
        let results = crate::recovery::on_each(
            &engines,
            Some(limit),
            Arc::new(move |name: &str, engine: &Engine| presence.ensure(name, engine, &node)),
        );
        for ((name, _), result) in engines.iter().zip(results) {
            match result {
                Ok(()) => {}
                Err(e @ Error::NodeInUse { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(engine = name.as_str(), error = %e, "could not take the presence lock of the node id; recovery takes it before it acts on this engine");
                }
            }
        }
        Ok(())
    }

    /// This start's incarnation of the node: every branch id carries it, beside the
    /// transaction's sequence number, which restarts at every process start. Default: 0.
    ///
    /// A durable incarnation, bumped at every start under exclusive ownership (a decision
    /// log supplies one), makes branch ids unique across restarts of one node, and lets
    /// recovery tell the branches of a dead incarnation (finish them) from those of the
    /// running one (in flight). With the default, a restarted process may reuse the ids of
    /// branches its predecessor left prepared (such a `PREPARE` fails and the transaction
    /// aborts).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut registry = sqlassist::Registry::new();
    /// assert_eq!(registry.incarnation(), 0);
    /// registry.set_incarnation(7);
    /// assert_eq!(registry.incarnation(), 7);
    /// ```
    pub fn incarnation(&self) -> u32 {
        self.identity.incarnation
    }

    /// Sets the incarnation (see [`incarnation`](Self::incarnation)). Set it before the
    /// first session, as [`set_node_id`](Self::set_node_id).
    ///
    /// # Examples
    ///
    /// The incarnation of a file decision log, which counts its openings:
    ///
    /// ```
    /// use transaction::FileDecisionLog;
    ///
    /// let dir = std::env::temp_dir().join(format!("sqlassist-doc-inc-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = FileDecisionLog::open(&dir)?;
    /// let mut registry = sqlassist::Registry::new();
    /// registry.set_node_id("orders-0".parse()?);
    /// registry.set_incarnation(log.incarnation());
    /// assert_eq!(registry.incarnation(), 1); // a new directory
    /// # drop(log);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_incarnation(&mut self, incarnation: u32) {
        std::sync::Arc::make_mut(&mut self.identity).incarnation = incarnation;
    }

    /// Registers `engine` under `name` (pyramid_sqlassist's `init_engine`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEngineName`] unless the name is 1 to 64 characters of
    /// `[A-Za-z0-9_.-]` (it names database branches); [`Error::DuplicateEngine`];
    /// [`Error::DuplicateDefault`] when another engine is already the default.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry};
    ///
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// let mut registry = Registry::new();
    /// registry.init_engine("writer", engine.clone(), InitOptions::new())?;
    /// assert!(matches!(
    ///     registry.init_engine("writer", engine.clone(), InitOptions::new()),
    ///     Err(Error::DuplicateEngine { .. })
    /// ));
    /// assert!(matches!(
    ///     registry.init_engine("my writer", engine, InitOptions::new()),
    ///     Err(Error::InvalidEngineName { .. })
    /// ));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn init_engine(&mut self, name: &str, engine: Engine, options: InitOptions) -> Result<()> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(Error::InvalidEngineName {
                name: name.escape_debug().to_string(),
            });
        }
        if self.engines.contains_key(name) {
            return Err(Error::DuplicateEngine {
                name: name.to_owned(),
            });
        }
        if options.is_default() {
            if let Some(existing) = &self.default {
                return Err(Error::DuplicateDefault {
                    existing: existing.clone(),
                    name: name.to_owned(),
                });
            }
            self.default = Some(name.to_owned());
        }
        tracing::debug!(engine = name, url = %engine.url().redacted(), managed = options.is_managed(), "engine registered");
        if options.is_managed() {
            self.recovery_engines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((name.to_owned(), engine.clone()));
        }
        self.engines
            .insert(name.to_owned(), Registered { engine, options });
        Ok(())
    }

    fn registered(&self, name: &str) -> Result<&Registered> {
        self.engines.get(name).ok_or_else(|| Error::UnknownEngine {
            name: name.to_owned(),
            known: self.engines.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// The engine registered under `name`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownEngine`], listing the registered names.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Backend, Error, Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_reader.url", "sqlite://")]))?;
    /// assert_eq!(registry.engine("reader")?.backend(), Backend::Sqlite);
    /// match registry.engine("writer") {
    ///     Err(Error::UnknownEngine { name, known }) => assert_eq!((name.as_str(), known.as_str()), ("writer", "reader")),
    ///     other => panic!("unexpected: {other:?}"),
    /// }
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn engine(&self, name: &str) -> Result<&Engine> {
        Ok(&self.registered(name)?.engine)
    }

    /// Whether the engine `name` is managed.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownEngine`].
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
    /// assert!(registry.is_managed("writer")?);
    /// assert!(registry.is_managed("reader").is_err()); // not registered
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn is_managed(&self, name: &str) -> Result<bool> {
        Ok(self.registered(name)?.options.is_managed())
    }

    /// The registered names, sorted.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([
    ///     ("sqlalchemy_writer.url", "sqlite://"),
    ///     ("sqlalchemy_log.url", "sqlite://"),
    /// ]))?;
    /// assert_eq!(registry.names().collect::<Vec<_>>(), ["log", "writer"]);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.engines.keys().map(String::as_str)
    }

    /// The default engine's name.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_log.url", "sqlite://")]))?;
    /// assert_eq!(registry.default_name(), None);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn default_name(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// This thread's session for the engine `name`: the same session until it is closed.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownEngine`].
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_writer.url", "sqlite://")]))?;
    /// let first = registry.session("writer")?;
    /// assert!(first.ptr_eq(&registry.session("writer")?)); // the same session on this thread
    /// first.close()?;
    /// assert!(!first.ptr_eq(&registry.session("writer")?)); // closed: a new one
    /// assert!(registry.session("reader").is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn session(&self, name: &str) -> Result<Session> {
        let registered = self.registered(name)?;
        Ok(Session::lookup_or_open(
            self.id,
            &self.identity,
            name,
            &registered.engine,
            registered.options.is_managed(),
            #[cfg(feature = "postgres")]
            self.database_log
                .clone()
                .filter(|log| log.is_in(&registered.engine)),
        ))
    }

    /// This thread's session for the default engine.
    ///
    /// # Errors
    ///
    /// [`Error::NoDefaultEngine`] when no engine was registered as the default.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([
    ///     ("sqlalchemy_reader.url", "sqlite://"),
    ///     ("sqlalchemy_reader.default", "true"),
    /// ]))?;
    /// assert_eq!(registry.default_session()?.name(), "reader");
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn default_session(&self) -> Result<Session> {
        let name = self.default.as_deref().ok_or(Error::NoDefaultEngine)?;
        self.session(name)
    }

    /// Connects to every engine once and checks it is usable: PostgreSQL engines that are
    /// managed must accept prepared transactions. Use it at start-up to fail fast.
    ///
    /// # Errors
    ///
    /// The first engine's error, as [`Engine::check`] reports it.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, Registry, Settings};
    ///
    /// let good = Registry::from_settings(&Settings::from_pairs([("sqlalchemy_main.url", "sqlite://")]))?;
    /// good.check()?;
    ///
    /// let bad = Registry::from_settings(&Settings::from_pairs([
    ///     ("sqlalchemy_main.url", "sqlite:////nonexistent-sqlassist-doc/app.db"),
    /// ]))?;
    /// assert!(matches!(bad.check(), Err(Error::Connect { .. })));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn check(&self) -> Result<()> {
        for r in self.engines.values() {
            r.engine.check(r.options.is_managed())?;
        }
        Ok(())
    }

    /// Records this registry's commit decisions in `log` and takes its incarnation for
    /// every branch id (see [`incarnation`](Self::incarnation)). Managers from
    /// [`transaction_manager`](Self::transaction_manager) record in it; to make every
    /// thread's default manager record in it too, also pass it to
    /// [`transaction::set_default_decision_log`] (as
    /// [`open_decision_log`](Self::open_decision_log) does). Set it before the first
    /// session.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sqlassist::Registry;
    /// use transaction::FileDecisionLog;
    ///
    /// let dir = std::env::temp_dir().join(format!("sqlassist-doc-uselog-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let mut registry = Registry::new();
    /// registry.use_decision_log(Arc::new(FileDecisionLog::open(&dir)?));
    /// assert_eq!(registry.incarnation(), 1);
    /// assert!(registry.decision_log().is_some());
    /// # drop(registry);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn use_decision_log(&mut self, log: Arc<FileDecisionLog>) {
        self.set_incarnation(log.incarnation());
        self.decision_log = Some(log);
    }

    /// Opens the file decision log in `dir`, uses it for this registry
    /// ([`use_decision_log`](Self::use_decision_log)) and makes it the decision log of
    /// every thread's default transaction manager
    /// ([`transaction::set_default_decision_log`]). Once per process.
    ///
    /// # Errors
    ///
    /// [`Error::DecisionLog`] when the log cannot be opened (another process holds the
    /// directory, an I/O error, a damaged incarnation file); [`Error::Transaction`] with
    /// [`transaction::Error::DecisionLogAlreadySet`] when the process has a default log
    /// already.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Registry;
    ///
    /// let dir = std::env::temp_dir().join(format!("sqlassist-doc-openlog-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let mut registry = Registry::new();
    /// registry.open_decision_log(&dir)?;
    /// assert!(transaction::default_decision_log().is_some());
    /// # drop(registry);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_decision_log(&mut self, dir: impl AsRef<std::path::Path>) -> Result<()> {
        let log =
            Arc::new(FileDecisionLog::open(dir).map_err(|source| Error::DecisionLog { source })?);
        transaction::set_default_decision_log(log.clone())?;
        self.use_decision_log(log);
        Ok(())
    }

    /// The decision log this registry records in and recovers from, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(sqlassist::Registry::new().decision_log().is_none());
    /// ```
    pub fn decision_log(&self) -> Option<&Arc<FileDecisionLog>> {
        self.decision_log.as_ref()
    }

    /// A new explicit-mode transaction manager recording its decisions in this registry's
    /// decision log (with none, in the process default, if any).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = sqlassist::Registry::new().transaction_manager();
    /// assert!(manager.is_explicit());
    /// ```
    pub fn transaction_manager(&self) -> TransactionManager {
        let builder = TransactionManager::builder().explicit(true);
        #[cfg(feature = "postgres")]
        if let Some(log) = &self.database_log {
            return builder.decision_log(Rc::new(log.clone())).build();
        }
        match &self.decision_log {
            Some(log) => builder.decision_log(Rc::new(log.clone())).build(),
            None => builder.build(),
        }
    }

    /// Runs one recovery pass now and says what it did.
    ///
    /// Per managed engine, in this order: list our prepared branches, then snapshot this
    /// process's in-flight transactions ([`transaction::in_flight`]), then the decision
    /// log's open decisions. A branch in flight is skipped; a branch with a decision is
    /// committed; a branch of ours with neither is rolled back (presumed abort), unless the
    /// log refuses presumed aborts. "Does not exist" counts as done. A decision whose every
    /// branch is finished is forgotten (an END record). Branches of another node, foreign
    /// and malformed ones are reported and left alone. An engine that cannot be reached is
    /// reported in [`RecoveryReport::unreachable`] and delays no other engine. Each action
    /// is also a `tracing` event.
    ///
    /// # Errors
    ///
    /// [`Error::NoDecisionLog`] when the registry has no decision log: without one, no
    /// branch can be told committed from undecided.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, Registry, Settings};
    ///
    /// let registry = Registry::from_settings(&Settings::from_pairs([("sqlalchemy.url", "sqlite://")]))?;
    /// assert!(matches!(registry.recover(), Err(Error::NoDecisionLog)));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn recover(&self) -> Result<RecoveryReport> {
        self.recover_inner(None)
    }

    /// Like [`recover`](Self::recover), but returns after about `limit` whatever the
    /// engines do: an engine whose prepared branches are not listed by then (a server that
    /// does not answer, a pool waiting for its timeout) is reported in
    /// [`RecoveryReport::unreachable`] and left to the periodic passes; its listing goes
    /// on in the background and its answer is dropped. The engines that answered are
    /// recovered as by [`recover`](Self::recover). [`from_settings`](Self::from_settings)
    /// runs its start-up pass this way (`sqlassist.recovery_startup_wait`, default 5 s).
    ///
    /// # Errors
    ///
    /// [`Error::NoDecisionLog`] when the registry has no decision log.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sqlassist::{Error, Registry};
    ///
    /// let registry = Registry::new();
    /// assert!(matches!(registry.recover_within(Duration::from_secs(1)), Err(Error::NoDecisionLog)));
    /// ```
    pub fn recover_within(&self, limit: std::time::Duration) -> Result<RecoveryReport> {
        self.recover_inner(Some(limit))
    }

    /// [`recover`](Self::recover) with an optional time limit per engine listing.
    /// Like [`recover`](Self::recover), calling `progress` as the pass goes: once per
    /// engine when its prepared branches are listed, then once per branch acted on (from
    /// the engines' threads, so possibly at once), for a view of a pass over many
    /// branches (the `sqlassist recover` command prints it on stderr).
    ///
    /// # Errors
    ///
    /// As [`recover`](Self::recover).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use sqlassist::{Error, RecoveryProgress, Registry};
    ///
    /// let seen = AtomicUsize::new(0);
    /// let registry = Registry::new();
    /// let outcome = registry.recover_with_progress(|p| {
    ///     if let RecoveryProgress::Branch(_) = p {
    ///         seen.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// assert!(matches!(outcome, Err(Error::NoDecisionLog)));
    /// ```
    pub fn recover_with_progress(
        &self,
        progress: impl Fn(crate::RecoveryProgress<'_>) + Sync,
    ) -> Result<RecoveryReport> {
        self.recover_observed(None, &progress)
    }

    fn recover_inner(&self, limit: Option<std::time::Duration>) -> Result<RecoveryReport> {
        self.recover_observed(limit, &crate::recovery::no_progress)
    }

    fn recover_observed(
        &self,
        limit: Option<std::time::Duration>,
        progress: crate::recovery::Progress<'_>,
    ) -> Result<RecoveryReport> {
        let log = self.recovery_log().ok_or(Error::NoDecisionLog)?;
        // With a database log: nodes whose lease expired are taken over (one winner) and
        // their branches settled in this pass too.
        let report = crate::recovery::recover_once(
            &self.managed_engines(),
            true,
            &self.identity,
            &*log,
            self.takeover_log(),
            &self.presence,
            limit,
            progress,
        );
        Ok(report)
    }

    /// The database log whose expired nodes recovery takes over, if any.
    fn takeover_log(&self) -> Option<&crate::recovery::TakeoverLog> {
        #[cfg(feature = "postgres")]
        return self.database_log.as_ref();
        #[cfg(not(feature = "postgres"))]
        None
    }

    /// The log recovery decides from: the database log when set, else the file log.
    fn recovery_log(&self) -> Option<transaction::SharedDecisionLog> {
        #[cfg(feature = "postgres")]
        if let Some(log) = &self.database_log {
            return Some(log.clone());
        }
        self.decision_log
            .clone()
            .map(|l| l as transaction::SharedDecisionLog)
    }

    /// Records this registry's commit decisions in a database decision log and takes its
    /// incarnation for every branch id; recovery then decides from it. Managers from
    /// [`transaction_manager`](Self::transaction_manager) record in it; pass it to
    /// [`transaction::set_default_decision_log`] too for every thread's default manager
    /// (`sqlassist.decision_log = engine:<name>` does both). Set it before the first
    /// session.
    #[cfg(feature = "postgres")]
    pub fn use_database_decision_log(&mut self, log: Arc<crate::DatabaseDecisionLog>) {
        self.set_incarnation(log.incarnation());
        self.database_log = Some(log);
    }

    pub(crate) fn managed_engines(&self) -> Vec<(String, Engine)> {
        self.engines
            .iter()
            .filter(|(_, r)| r.options.is_managed())
            .map(|(name, r)| (name.clone(), r.engine.clone()))
            .collect()
    }

    /// Starts periodic recovery passes every `interval`, jittered by +-20%, on a background
    /// thread that stops when the registry is dropped (or on
    /// [`stop_recovery`](Self::stop_recovery)). An engine that cannot be listed is skipped
    /// for a doubling time, up to 5 minutes, so a down server delays no pass. The passes
    /// cover every managed engine, also those registered after this call; a running
    /// thread is replaced.
    /// [`from_settings`](Self::from_settings) starts it when `sqlassist.decision_log` is
    /// set (every `sqlassist.recovery_interval` seconds, default 30, 0 for none).
    ///
    /// # Errors
    ///
    /// [`Error::NoDecisionLog`] without a decision log; [`Error::RecoveryThread`] when the
    /// thread cannot be spawned.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use sqlassist::{Error, Registry};
    /// use transaction::FileDecisionLog;
    ///
    /// let mut registry = Registry::new();
    /// assert!(matches!(registry.start_recovery(Duration::from_secs(30)), Err(Error::NoDecisionLog)));
    /// let dir = std::env::temp_dir().join(format!("sqlassist-doc-periodic-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// registry.use_decision_log(Arc::new(FileDecisionLog::open(&dir)?));
    /// registry.start_recovery(Duration::from_secs(30))?;
    /// assert!(registry.is_recovering());
    /// drop(registry); // stops the thread
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_recovery(&mut self, interval: std::time::Duration) -> Result<()> {
        let log = self.recovery_log().ok_or(Error::NoDecisionLog)?;
        self.stop_recovery();
        let thread = RecoveryThread::start(
            self.recovery_engines.clone(),
            self.identity.clone(),
            log,
            self.takeover_log().cloned(),
            self.presence.clone(),
            interval,
        )
        .map_err(|source| Error::RecoveryThread { source })?;
        *self.recovery_thread() = Some(thread);
        Ok(())
    }

    fn recovery_thread(&self) -> std::sync::MutexGuard<'_, Option<RecoveryThread>> {
        // Only ever replaced whole: a panic elsewhere leaves it consistent.
        self.recovery.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the periodic recovery passes, waiting for a running pass to end.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut registry = sqlassist::Registry::new();
    /// registry.stop_recovery();
    /// assert!(!registry.is_recovering());
    /// ```
    pub fn stop_recovery(&mut self) {
        let running = self.recovery_thread().take();
        // Joined outside the lock.
        drop(running);
    }

    /// Whether periodic recovery passes are running.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!sqlassist::Registry::new().is_recovering());
    /// ```
    pub fn is_recovering(&self) -> bool {
        self.recovery_thread().is_some()
    }

    /// Ends this registry's part in two-phase commits, for a graceful stop of the process
    /// (after the server stopped taking requests):
    ///
    /// 1. stops the periodic recovery passes (waiting for a running one);
    /// 2. waits up to `drain` for this process's transactions between their first PREPARE
    ///    and their end ([`transaction::in_flight`]) to end; transactions still doing
    ///    their work are not waited for;
    /// 3. runs a last recovery pass ([`recover`](Self::recover)), which settles this
    ///    node's branches left prepared (a transaction still in flight after `drain` is
    ///    left to its commit, and reported as such);
    /// 4. releases the decision log: a database log's lease ends
    ///    ([`DatabaseDecisionLog::release`](crate::DatabaseDecisionLog::release)), so a
    ///    process restarted on the same node id starts at once; a file log is closed
    ///    ([`transaction::FileDecisionLog::close`]), so its directory is free.
    ///
    /// From step 4 on, a commit that asks the log for its decision is refused with a
    /// typed error (`DatabaseLogError::Released`, [`transaction::FileLogError::Closed`]),
    /// and rolls back; so does [`recover`](Self::recover)'s reading of the log, so that
    /// nothing here acts on the branches of a process restarted with this node id.
    /// Sessions still work for reading and for commits that need no decision. Without a
    /// decision log, only steps 1 and 2 are done and the report is empty.
    ///
    /// # Errors
    ///
    /// Those of releasing the log: [`Error::Connect`] / [`Error::Database`] when a
    /// database log cannot be reached (its lease then expires by itself, and it refuses
    /// decisions all the same), [`Error::DecisionLog`] when a file log's lock cannot be
    /// released. The last pass's own failures are in the report.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sqlassist::Registry;
    ///
    /// let dir = std::env::temp_dir().join(format!("sqlassist-doc-shutdown-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let mut registry = Registry::new();
    /// registry.use_decision_log(std::sync::Arc::new(transaction::FileDecisionLog::open(&dir)?));
    /// registry.start_recovery(Duration::from_secs(30))?;
    /// let report = registry.shutdown(Duration::from_secs(10))?;
    /// assert!(report.is_clean() && !registry.is_recovering());
    /// assert!(registry.decision_log().is_some_and(|log| log.is_closed()));
    /// # drop(registry);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(&self, drain: std::time::Duration) -> Result<RecoveryReport> {
        let running = self.recovery_thread().take();
        drop(running);
        let deadline = std::time::Instant::now() + drain;
        loop {
            let left = transaction::in_flight().len();
            let now = std::time::Instant::now();
            if left == 0 {
                break;
            }
            if now >= deadline {
                tracing::warn!(
                    transactions = left,
                    "shutdown: transactions still committing after the drain time; the last recovery pass leaves them to their commits"
                );
                break;
            }
            std::thread::sleep(DRAIN_POLL.min(deadline - now));
        }
        let report = match self.recovery_log() {
            Some(_) => self.recover()?,
            None => RecoveryReport::default(),
        };
        #[cfg(feature = "postgres")]
        if let Some(log) = &self.database_log {
            log.release()?;
        }
        if let Some(log) = &self.decision_log {
            log.close()
                .map_err(|source| Error::DecisionLog { source })?;
        }
        tracing::info!(
            branches = report.branches.len(),
            clean = report.is_clean(),
            "registry shut down"
        );
        Ok(report)
    }

    /// Makes this registry the process-wide one, used by [`crate::db_session`].
    ///
    /// # Errors
    ///
    /// [`Error::RegistryAlreadyInstalled`]: a registry is installed once per process.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, Registry, Settings};
    ///
    /// let settings = Settings::from_pairs([("sqlalchemy_writer.url", "sqlite://")]);
    /// let registry = Registry::from_settings(&settings)?.install()?;
    /// assert_eq!(registry.names().collect::<Vec<_>>(), ["writer"]);
    /// assert_eq!(sqlassist::db_session("writer")?.name(), "writer");
    ///
    /// // Once per process.
    /// assert!(matches!(Registry::new().install(), Err(Error::RegistryAlreadyInstalled)));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn install(self) -> Result<&'static Registry> {
        let mut slot = Some(self);
        let installed = INSTALLED.get_or_init(|| slot.take().unwrap_or_default());
        if slot.is_some() {
            return Err(Error::RegistryAlreadyInstalled);
        }
        Ok(installed)
    }
}

/// The engine prefixes of `settings`, sorted: `sqlalchemy.` and every `sqlalchemy_<name>.`
/// under which some key is set, and each of `named` (a missing trailing `.` added).
pub(crate) fn engine_prefixes(settings: &Settings, named: &[&str]) -> Vec<String> {
    let mut prefixes: BTreeSet<String> = named
        .iter()
        .map(|p| {
            if p.ends_with('.') {
                (*p).to_owned()
            } else {
                format!("{p}.")
            }
        })
        .collect();
    for (key, _) in settings.keys_with_prefix("sqlalchemy") {
        let prefix_len = match key.strip_prefix('_') {
            // `sqlalchemy_<name>.`: up to the first dot.
            Some(rest) => rest.find('.').map(|dot| dot + 2),
            // `sqlalchemy.`
            None => key.starts_with('.').then_some(1),
        };
        if let Some(len) = prefix_len {
            prefixes.insert(format!("sqlalchemy{}", &key[..len]));
        }
    }
    prefixes.into_iter().collect()
}

/// The process-wide registry set by [`Registry::install`].
///
/// # Errors
///
/// [`Error::NoRegistry`] before `install`.
///
/// # Examples
///
/// ```
/// use sqlassist::{Error, Registry};
///
/// assert!(matches!(sqlassist::registry(), Err(Error::NoRegistry)));
/// Registry::new().install()?;
/// assert_eq!(sqlassist::registry()?.names().count(), 0);
/// # Ok::<(), sqlassist::Error>(())
/// ```
pub fn registry() -> Result<&'static Registry> {
    INSTALLED.get().ok_or(Error::NoRegistry)
}

/// This thread's session for the engine `name` of the installed registry: pyramid_sqlassist's
/// `dbSession("writer")`.
///
/// # Errors
///
/// [`Error::NoRegistry`] before [`Registry::install`]; [`Error::UnknownEngine`].
///
/// # Examples
///
/// ```
/// use sqlassist::{Error, Registry, Settings};
///
/// assert!(matches!(sqlassist::db_session("writer"), Err(Error::NoRegistry)));
///
/// Registry::from_settings(&Settings::from_pairs([("sqlalchemy_writer.url", "sqlite://")]))?.install()?;
/// let writer = sqlassist::db_session("writer")?;
/// writer.execute("CREATE TABLE t (v INTEGER)")?;
/// writer.commit()?;
/// assert!(matches!(sqlassist::db_session("reader"), Err(Error::UnknownEngine { .. })));
/// # Ok::<(), sqlassist::Error>(())
/// ```
pub fn db_session(name: &str) -> Result<Session> {
    registry()?.session(name)
}
