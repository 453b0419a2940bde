//! Engine options: what SQLAlchemy's `engine_from_config(settings, prefix)` reads.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, value::MapDeserializer, Deserializer, IntoDeserializer, Visitor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::url::DatabaseUrl;

/// Keys under an engine prefix that the engine registry reads (`managed`, `use_zope`,
/// `default`). [`EngineOptions::from_settings`] accepts and ignores them, so that its typo
/// check covers every key under the prefix.
const REGISTRY_KEYS: &[&str] = &["managed", "use_zope", "default"];

/// Parameters of SQLAlchemy's `create_engine` that an INI file written for SQLAlchemy may
/// carry and that mean nothing here: accepted with one warning naming the key.
const SQLALCHEMY_IGNORED_KEYS: &[&str] = &[
    "case_sensitive",
    "convert_unicode",
    "creator",
    "echo_pool",
    "empty_in_strategy",
    "enable_from_linting",
    "encoding",
    "future",
    "hide_parameters",
    "implicit_returning",
    "insertmanyvalues_page_size",
    "json_deserializer",
    "json_serializer",
    "label_length",
    "logging_name",
    "max_identifier_length",
    "module",
    "paramstyle",
    "plugins",
    "pool",
    "pool_logging_name",
    "pool_reset_on_return",
    "pool_use_lifo",
    "poolclass",
    "query_cache_size",
    "strategy",
    "use_insertmanyvalues",
];

/// Prefixes of SQLAlchemy's dictionary parameters written as dotted keys
/// (`connect_args.sslmode`): accepted with one warning naming the key.
const SQLALCHEMY_IGNORED_PREFIXES: &[&str] = &["connect_args.", "execution_options."];

/// Whether `name` (a key under an engine prefix) is a SQLAlchemy parameter ignored here.
fn is_sqlalchemy_ignored(name: &str) -> bool {
    SQLALCHEMY_IGNORED_KEYS.contains(&name)
        || SQLALCHEMY_IGNORED_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// Most connections one pool may hold: `pool_size + max_overflow`.
const MAX_CONNECTIONS: u32 = 1000;
/// The longest `pool_timeout`.
const MAX_POOL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The longest `pool_idle_timeout` and `pool_recycle`.
const MAX_POOL_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest `pool_pre_ping_window`.
const MAX_PRE_PING_WINDOW: Duration = Duration::from_secs(3600);
/// The longest `statement_timeout` and `busy_timeout`: PostgreSQL's and SQLite's largest
/// (a signed 32-bit count of milliseconds, about 24.8 days).
const MAX_SERVER_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

const RANGE_POOL_SIZE: &str = "an integer from 1 to 1000";
const RANGE_MAX_OVERFLOW: &str =
    "an integer from 0 to 1000 - pool_size (pool_size + max_overflow is at most 1000; \
     SQLAlchemy's -1, no limit, has no equivalent)";
const RANGE_MIN_IDLE: &str = "an integer from 0 to pool_size";
const RANGE_POOL_TIMEOUT: &str = "a duration from 1 ms to 24 h";
const RANGE_POOL_LIFETIME: &str = "a duration from 1 ms to 30 days, or `none` to disable";
const RANGE_PRE_PING_WINDOW: &str = "a duration from 0 to 1 h";
const RANGE_STATEMENT_TIMEOUT: &str =
    "a duration from 0 to 2147483647 ms (about 24 days; 0 or `none`: no limit)";
const RANGE_BUSY_TIMEOUT: &str = "a duration from 0 to 2147483647 ms (about 24 days)";

const EXPECTED_BOOL: &str = "a boolean (true/false, yes/no, on/off, 1/0)";
const EXPECTED_ECHO: &str = "a boolean (true/false, yes/no, on/off, 1/0) or `debug`";
const EXPECTED_SECONDS: &str = "a duration in seconds, such as 30, 2.5 or 500ms";
const EXPECTED_MILLIS: &str = "a duration in milliseconds, such as 5000, 250ms or 5s";
const EXPECTED_ISOLATION: &str =
    "one of READ UNCOMMITTED, READ COMMITTED, REPEATABLE READ, SERIALIZABLE";
const EXPECTED_ISOLATION_NOT_AUTOCOMMIT: &str =
    "one of READ UNCOMMITTED, READ COMMITTED, REPEATABLE READ, SERIALIZABLE; SQLAlchemy's \
     AUTOCOMMIT is refused: sessions always run in a transaction, committed by \
     session.commit()";
/// What a managed engine says about `isolation_level = AUTOCOMMIT`.
pub(crate) const EXPECTED_ISOLATION_MANAGED: &str =
    "one of READ UNCOMMITTED, READ COMMITTED, REPEATABLE READ, SERIALIZABLE; AUTOCOMMIT is \
     refused on a managed engine: its work commits only with the transaction, at \
     transaction::commit(), never statement by statement";

/// The isolation level every transaction of an engine runs at.
///
/// Parsing accepts SQLAlchemy's spellings in any case, with spaces, underscores or
/// hyphens: `SERIALIZABLE`, `repeatable_read`, `Read Committed`. SQLAlchemy's `AUTOCOMMIT`
/// is not an isolation level here: sessions are always transactional.
///
/// # Examples
///
/// ```
/// use sqlassist::IsolationLevel;
/// let level: IsolationLevel = "repeatable_read".parse()?;
/// assert_eq!(level, IsolationLevel::RepeatableRead);
/// assert_eq!(level.as_sql(), "REPEATABLE READ");
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsolationLevel {
    /// `READ UNCOMMITTED`.
    ReadUncommitted,
    /// `READ COMMITTED`.
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
}

impl IsolationLevel {
    /// The SQL spelling, as in `SET TRANSACTION ISOLATION LEVEL READ COMMITTED`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::IsolationLevel;
    ///
    /// assert_eq!(IsolationLevel::ReadCommitted.as_sql(), "READ COMMITTED");
    /// // `Display` writes the same text.
    /// assert_eq!(
    ///     format!("SET TRANSACTION ISOLATION LEVEL {}", IsolationLevel::Serializable),
    ///     "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"
    /// );
    /// ```
    pub fn as_sql(self) -> &'static str {
        match self {
            IsolationLevel::ReadUncommitted => "READ UNCOMMITTED",
            IsolationLevel::ReadCommitted => "READ COMMITTED",
            IsolationLevel::RepeatableRead => "REPEATABLE READ",
            IsolationLevel::Serializable => "SERIALIZABLE",
        }
    }

    /// Whether `s` is SQLAlchemy's `AUTOCOMMIT`, in any case.
    pub(crate) fn is_autocommit(s: &str) -> bool {
        s.trim().eq_ignore_ascii_case("autocommit")
    }

    /// The level `s` names; `Err` with what to expect.
    fn parse_setting(s: &str) -> std::result::Result<Self, &'static str> {
        if Self::is_autocommit(s) {
            return Err(EXPECTED_ISOLATION_NOT_AUTOCOMMIT);
        }
        Self::parse(s).ok_or(EXPECTED_ISOLATION)
    }

    fn parse(s: &str) -> Option<Self> {
        let normalized = s
            .split(|c: char| c.is_whitespace() || c == '_' || c == '-')
            .filter(|word| !word.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        Some(match normalized.as_str() {
            "READ UNCOMMITTED" => IsolationLevel::ReadUncommitted,
            "READ COMMITTED" => IsolationLevel::ReadCommitted,
            "REPEATABLE READ" => IsolationLevel::RepeatableRead,
            "SERIALIZABLE" => IsolationLevel::Serializable,
            _ => return None,
        })
    }
}

impl fmt::Display for IsolationLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_sql())
    }
}

impl FromStr for IsolationLevel {
    type Err = Error;

    /// Parses SQLAlchemy's spellings.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] for the key `isolation_level` if `s` names no level.
    fn from_str(s: &str) -> Result<Self> {
        Self::parse_setting(s)
            .map_err(|expected| Error::invalid_setting("isolation_level", s, expected))
    }
}

/// How to open and pool one engine's connections.
///
/// The keys under an engine prefix, in SQLAlchemy's spelling, map onto r2d2 and Diesel:
///
/// | key under the prefix | meaning | range | default |
/// |---|---|---|---|
/// | `url` | database URL ([`DatabaseUrl`]), relative SQLite paths resolved against [`Settings::here`] | | required |
/// | `pool_size` | connections the pool keeps | 1 to 1000 | `10` |
/// | `max_overflow` | connections opened beyond `pool_size` under load; r2d2's `max_size` is `pool_size + max_overflow`, as in SQLAlchemy's `QueuePool` | 0 to 1000 − `pool_size` | `0` |
/// | `pool_min_idle` | r2d2 `min_idle`: idle connections kept open | 0 to `pool_size` | `0` (nothing opened eagerly) |
/// | `pool_timeout` | r2d2 `connection_timeout`: wait for a connection (seconds) | 1 ms to 24 h | `30` |
/// | `pool_idle_timeout` | r2d2 `idle_timeout` (seconds; `none` disables) | 1 ms to 30 days | `600` |
/// | `pool_recycle` | r2d2 `max_lifetime` (seconds; `none` or `-1` disables) | 1 ms to 30 days | `1800` |
/// | `pool_pre_ping` | r2d2 `test_on_check_out`: test a connection before handing it out | boolean | `true` |
/// | `pool_pre_ping_window` | skip that test for a connection used this recently (milliseconds; `0` tests every checkout) | 0 to 1 h | `500` |
/// | `keep_session` | keep a session's connection after its transaction ends, instead of returning it to the pool | boolean | `false` |
/// | `read_only` | open the engine read-only | boolean | `false` |
/// | `isolation_level` | [`IsolationLevel`] of every transaction (not used by SQLite); `AUTOCOMMIT` is refused | a level | the server's |
/// | `statement_timeout` | per-statement time limit (milliseconds; PostgreSQL `statement_timeout`, MariaDB `max_statement_time` (MySQL names it differently and refuses it); not used by SQLite); `0` or `none`: no limit | 0 to 2147483647 ms (about 24 days) | none |
/// | `application_name` | name shown by the server (PostgreSQL `application_name`) | text | none |
/// | `busy_timeout` | SQLite: how long to wait for a lock (milliseconds) | 0 to 2147483647 ms | `5000` |
/// | `echo` | log every SQL statement at `debug` level; SQLAlchemy's `debug` is accepted and logs statements | boolean or `debug` | `false` |
///
/// Durations are a number in the key's unit (`30`, `2.5`) or a number with a unit: `ms`,
/// `s`, `m`, `h`, `d` (`250ms`, `5s`). They are counted in whole milliseconds, a fraction
/// rounded up: `0.4ms` is 1 ms, never 0 (which servers read as "no limit"). A value out
/// of its range is an error ([`Error::InvalidSetting`]) naming the key and the range.
/// Booleans accept `true/false`, `yes/no`, `on/off`, `t/f`, `y/n`, `1/0` in any case, like
/// Pyramid's `asbool`.
///
/// Parameters of SQLAlchemy's `create_engine` that an INI file written for SQLAlchemy
/// may carry but that mean nothing here are accepted with one warning (a `tracing` event
/// at `warn` level naming the key; the value is never logged): `case_sensitive`,
/// `convert_unicode`, `creator`, `echo_pool`, `empty_in_strategy`, `enable_from_linting`,
/// `encoding`, `future`, `hide_parameters`, `implicit_returning`,
/// `insertmanyvalues_page_size`, `json_deserializer`, `json_serializer`, `label_length`,
/// `logging_name`, `max_identifier_length`, `module`, `paramstyle`, `plugins`, `pool`,
/// `pool_logging_name`, `pool_reset_on_return`, `pool_use_lifo`, `poolclass`,
/// `query_cache_size`, `strategy`, `use_insertmanyvalues`, and keys under
/// `connect_args.` and `execution_options.`. The keys the engine registry reads under the
/// same prefix (`managed`, `use_zope`, `default`) are accepted and ignored here. Any other
/// key under the prefix is an error ([`Error::UnknownSetting`]), so a typo does not
/// silently fall back to a default.
///
/// Built from settings with [`from_settings`](Self::from_settings), or in code with
/// [`new`](Self::new) (all defaults) or [`builder`](Self::builder).
///
/// # Examples
///
/// ```
/// use sqlassist::{EngineOptions, Settings};
/// use std::time::Duration;
///
/// let settings = Settings::from_pairs([
///     ("sqlalchemy_reader.url", "sqlite://"),
///     ("sqlalchemy_reader.pool_size", "4"),
///     ("sqlalchemy_reader.read_only", "yes"),
///     ("sqlalchemy_reader.statement_timeout", "5s"),
/// ]);
/// let options = EngineOptions::from_settings(&settings, "sqlalchemy_reader.")?;
/// assert_eq!(options.pool_size(), 4);
/// assert!(options.is_read_only());
/// assert_eq!(options.statement_timeout(), Some(Duration::from_secs(5)));
/// assert_eq!(options.pool_min_idle(), 0);
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EngineOptions {
    url: DatabaseUrl,
    values: Values,
}

/// Every option but the URL, deserialized from the keys under an engine prefix: a key
/// absent from the settings keeps its default, a key that is no field is an error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Values {
    #[serde(deserialize_with = "pool_size")]
    pool_size: u32,
    #[serde(deserialize_with = "max_overflow")]
    max_overflow: u32,
    #[serde(deserialize_with = "pool_min_idle")]
    pool_min_idle: u32,
    #[serde(deserialize_with = "seconds")]
    pool_timeout: Duration,
    #[serde(deserialize_with = "seconds_or_none")]
    pool_idle_timeout: Option<Duration>,
    #[serde(deserialize_with = "seconds_or_none")]
    pool_recycle: Option<Duration>,
    #[serde(deserialize_with = "pyramid_bool")]
    pool_pre_ping: bool,
    #[serde(deserialize_with = "millis")]
    pool_pre_ping_window: Duration,
    #[serde(deserialize_with = "pyramid_bool")]
    keep_session: bool,
    #[serde(deserialize_with = "pyramid_bool")]
    read_only: bool,
    #[serde(deserialize_with = "isolation_level")]
    isolation_level: Option<IsolationLevel>,
    #[serde(deserialize_with = "millis_or_none")]
    statement_timeout: Option<Duration>,
    #[serde(deserialize_with = "text_or_none")]
    application_name: Option<String>,
    #[serde(deserialize_with = "millis")]
    busy_timeout: Duration,
    #[serde(deserialize_with = "echo")]
    echo: bool,
}

impl Default for Values {
    fn default() -> Self {
        Values {
            pool_size: 10,
            max_overflow: 0,
            pool_min_idle: 0,
            pool_timeout: Duration::from_secs(30),
            pool_idle_timeout: Some(Duration::from_secs(600)),
            pool_recycle: Some(Duration::from_secs(1800)),
            pool_pre_ping: true,
            pool_pre_ping_window: Duration::from_millis(500),
            keep_session: false,
            read_only: false,
            isolation_level: None,
            statement_timeout: None,
            application_name: None,
            busy_timeout: Duration::from_millis(5000),
            echo: false,
        }
    }
}

/// Declares an option's getter on [`EngineOptions`] and its setter on
/// [`EngineOptionsBuilder`] with one documentation, whose example shows both.
macro_rules! option_accessors {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        impl EngineOptions {$(
            $(#[$doc])*
            pub fn $name(&self) -> $ty {
                self.values.$name
            }
        )*}

        impl EngineOptionsBuilder {$(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.options.values.$name = value;
                self
            }
        )*}
    };
}

option_accessors! {
    /// Connections the pool keeps (the `pool_size` key): 1 to 1000, default 10.
    ///
    /// An in-memory SQLite engine's pool holds one connection whatever this says: the
    /// database lives in its connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_size", "4")]);
    /// assert_eq!(EngineOptions::from_settings(&settings, "db.")?.pool_size(), 4);
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// assert_eq!(EngineOptions::builder(url.clone()).pool_size(4).build()?.pool_size(), 4);
    /// assert!(EngineOptions::builder(url).pool_size(0).build().is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pool_size: u32;
    /// Connections the pool may open beyond `pool_size` under load (SQLAlchemy's
    /// `max_overflow`): default 0, and `pool_size + max_overflow` is at most 1000.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.max_overflow", "5")]);
    /// assert_eq!(EngineOptions::from_settings(&settings, "db.")?.max_overflow(), 5);
    /// let url = DatabaseUrl::parse("sqlite:///app.db")?;
    /// let options = EngineOptions::builder(url.clone()).pool_size(5).max_overflow(10).build()?;
    /// assert_eq!(options.max_connections(), 15);
    /// assert!(EngineOptions::builder(url).pool_size(5).max_overflow(1000).build().is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    max_overflow: u32;
    /// Idle connections the pool keeps open (r2d2 `min_idle`): 0 to `pool_size`, default
    /// 0, so building the pool opens no connection and cannot block.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_min_idle", "2")]);
    /// assert_eq!(EngineOptions::from_settings(&settings, "db.")?.pool_min_idle(), 2);
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// assert!(EngineOptions::builder(url).pool_size(1).pool_min_idle(2).build().is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pool_min_idle: u32;
    /// How long a checkout waits for a connection (r2d2 `connection_timeout`): 1 ms to
    /// 24 h, default 30 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Settings};
    /// use std::time::Duration;
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_timeout", "500ms")]);
    /// let options = EngineOptions::from_settings(&settings, "db.")?;
    /// assert_eq!(options.pool_timeout(), Duration::from_millis(500));
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// assert!(EngineOptions::builder(url).pool_timeout(Duration::ZERO).build().is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pool_timeout: Duration;
    /// How long an idle connection is kept (r2d2 `idle_timeout`); `None`: forever. 1 ms
    /// to 30 days, default 600 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Settings};
    /// use std::time::Duration;
    ///
    /// let disabled = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_idle_timeout", "none")]);
    /// assert_eq!(EngineOptions::from_settings(&disabled, "db.")?.pool_idle_timeout(), None);
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// assert_eq!(EngineOptions::new(url.clone()).pool_idle_timeout(), Some(Duration::from_secs(600)));
    /// assert!(EngineOptions::builder(url).pool_idle_timeout(Some(Duration::ZERO)).build().is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pool_idle_timeout: Option<Duration>;
    /// How long a connection lives before it is replaced (r2d2 `max_lifetime`); `None`:
    /// forever. 1 ms to 30 days, default 1800 s. An in-memory SQLite engine never
    /// replaces its connection, which holds the database.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Settings};
    /// use std::time::Duration;
    ///
    /// // SQLAlchemy's `pool_recycle = -1` disables recycling.
    /// let disabled = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_recycle", "-1")]);
    /// assert_eq!(EngineOptions::from_settings(&disabled, "db.")?.pool_recycle(), None);
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// let options = EngineOptions::builder(url).pool_recycle(Some(Duration::from_secs(300))).build()?;
    /// assert_eq!(options.pool_recycle(), Some(Duration::from_secs(300)));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pool_recycle: Option<Duration>;
    /// Whether a connection is tested before each checkout (r2d2 `test_on_check_out`):
    /// default true.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_pre_ping", "off")]);
    /// assert!(!EngineOptions::from_settings(&settings, "db.")?.pool_pre_ping());
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// assert!(!EngineOptions::builder(url).pool_pre_ping(false).build()?.pool_pre_ping());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pool_pre_ping: bool;
    /// How recently a connection must have been used for its checkout test to be skipped
    /// (see `pool_pre_ping`): 0 to 1 h, default 500 ms; zero tests every checkout.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Settings};
    /// use std::time::Duration;
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_pre_ping_window", "0")]);
    /// assert_eq!(EngineOptions::from_settings(&settings, "db.")?.pool_pre_ping_window(), Duration::ZERO);
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// let options = EngineOptions::builder(url).pool_pre_ping_window(Duration::from_millis(50)).build()?;
    /// assert_eq!(options.pool_pre_ping_window(), Duration::from_millis(50));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pool_pre_ping_window: Duration;
    /// Whether a session keeps its connection after its transaction ends. Default false:
    /// the connection goes back to the pool at every commit and abort, as zope.sqlalchemy
    /// closes its sessions.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.keep_session", "true")]);
    /// assert!(EngineOptions::from_settings(&settings, "db.")?.keep_session());
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// assert!(EngineOptions::builder(url).keep_session(true).build()?.keep_session());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    keep_session: bool;
    /// The per-statement time limit; `None`: the server's default. 0 to 2147483647 ms.
    ///
    /// Applied by PostgreSQL and MySQL/MariaDB engines; SQLite engines do not use it.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Settings};
    /// use std::time::Duration;
    ///
    /// // A bare number is in milliseconds.
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.statement_timeout", "250")]);
    /// let options = EngineOptions::from_settings(&settings, "db.")?;
    /// assert_eq!(options.statement_timeout(), Some(Duration::from_millis(250)));
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// let options = EngineOptions::builder(url).statement_timeout(Some(Duration::from_secs(5))).build()?;
    /// assert_eq!(options.statement_timeout(), Some(Duration::from_secs(5)));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    statement_timeout: Option<Duration>;
    /// SQLite: how long a connection waits for a lock before "database is locked": 0 to
    /// 2147483647 ms, default 5000 ms.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Settings};
    /// use std::time::Duration;
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.busy_timeout", "2s")]);
    /// assert_eq!(EngineOptions::from_settings(&settings, "db.")?.busy_timeout(), Duration::from_secs(2));
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// let options = EngineOptions::builder(url).busy_timeout(Duration::from_millis(250)).build()?;
    /// assert_eq!(options.busy_timeout(), Duration::from_millis(250));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    busy_timeout: Duration;
    /// Whether every SQL statement is logged at `debug` level: default false.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Settings};
    ///
    /// // SQLAlchemy's `echo = debug` logs statements here.
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.echo", "debug")]);
    /// assert!(EngineOptions::from_settings(&settings, "db.")?.echo());
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// assert!(EngineOptions::builder(url).echo(true).build()?.echo());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    echo: bool;
}

impl EngineOptions {
    /// Options for `url` with every default (see [`EngineOptions`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    /// let options = EngineOptions::new(DatabaseUrl::parse("sqlite://")?);
    /// assert_eq!(options.pool_size(), 10);
    /// assert!(options.pool_pre_ping());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn new(url: DatabaseUrl) -> Self {
        EngineOptions {
            url,
            values: Values::default(),
        }
    }

    /// A builder for options in code, starting from the defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, IsolationLevel};
    /// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?)
    ///     .pool_size(2)
    ///     .read_only(true)
    ///     .isolation_level(IsolationLevel::Serializable)
    ///     .build()?;
    /// assert_eq!(options.pool_size(), 2);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn builder(url: DatabaseUrl) -> EngineOptionsBuilder {
        EngineOptionsBuilder {
            options: Self::new(url),
        }
    }

    /// A builder starting from these options, to change some of them.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    ///
    /// let writer = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?).pool_size(4).build()?;
    /// let reader = writer.to_builder().read_only(true).build()?;
    /// assert!(reader.is_read_only() && !writer.is_read_only());
    /// assert_eq!(reader.pool_size(), 4); // the rest is kept
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn to_builder(&self) -> EngineOptionsBuilder {
        EngineOptionsBuilder {
            options: self.clone(),
        }
    }

    /// Reads the options under `prefix` (such as `sqlalchemy_reader.`; a missing trailing
    /// `.` is added), as SQLAlchemy's `engine_from_config` does.
    ///
    /// The URL is resolved against [`Settings::here`].
    ///
    /// # Errors
    ///
    /// [`Error::MissingSetting`] without `{prefix}url`; the URL's errors from
    /// [`DatabaseUrl::parse_with_base`]; [`Error::UnknownSetting`] for a key under the
    /// prefix that is not an option; [`Error::InvalidSetting`] for a value that does not
    /// parse, or a pool that r2d2 would refuse (`pool_size` 0, `pool_min_idle` larger than
    /// `pool_size`, a zero `pool_timeout`, `pool_idle_timeout` or `pool_recycle`).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Error, Settings};
    /// use std::time::Duration;
    ///
    /// let settings = Settings::from_pairs([
    ///     ("sqlalchemy.url", "sqlite://"),
    ///     ("sqlalchemy.pool_timeout", "2.5"),
    ///     ("sqlalchemy.managed", "true"), // read by the registry, ignored here
    /// ]);
    /// let options = EngineOptions::from_settings(&settings, "sqlalchemy")?; // `.` added
    /// assert_eq!(options.pool_timeout(), Duration::from_millis(2500));
    ///
    /// let missing = Settings::from_pairs([("db.pool_size", "5")]);
    /// assert!(matches!(
    ///     EngineOptions::from_settings(&missing, "db."),
    ///     Err(Error::MissingSetting { key }) if key == "db.url"
    /// ));
    /// let zero = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_size", "0")]);
    /// assert!(matches!(
    ///     EngineOptions::from_settings(&zero, "db."),
    ///     Err(Error::InvalidSetting { key, .. }) if key == "db.pool_size"
    /// ));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn from_settings(settings: &Settings, prefix: &str) -> Result<Self> {
        let prefix = if prefix.is_empty() || prefix.ends_with('.') {
            prefix.to_owned()
        } else {
            format!("{prefix}.")
        };
        let mut url = None;
        let mut options = Vec::new();
        for (name, value) in settings.keys_with_prefix(&prefix) {
            if name == "url" {
                url = Some(value);
            } else if is_sqlalchemy_ignored(name) {
                let key = format!("{prefix}{name}");
                tracing::warn!(
                    key = %key,
                    "setting `{key}` ignored: SQLAlchemy's `{name}` has no equivalent here"
                );
            } else if !REGISTRY_KEYS.contains(&name) {
                options.push((name, Setting { name, value }));
            }
        }
        // Unknown keys first: a misspelt `url` is named as such, not as a missing url.
        let values = Values::deserialize(MapDeserializer::new(options.into_iter()))
            .map_err(|e| e.into_error(&prefix))?;
        let url = url.ok_or_else(|| Error::MissingSetting {
            key: format!("{prefix}url"),
        })?;
        let options = EngineOptions {
            url: DatabaseUrl::parse_with_base(url, settings.here())?,
            values,
        };
        options.validate(&prefix)?;
        Ok(options)
    }

    /// The database URL.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://")]);
    /// let options = EngineOptions::from_settings(&settings, "db.")?;
    /// assert!(options.url().is_memory());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Most connections the pool holds at once: `pool_size + max_overflow`, as
    /// SQLAlchemy's `QueuePool` counts them (r2d2 `max_size`).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([
    ///     ("db.url", "sqlite:///app.db"),
    ///     ("db.pool_size", "5"),
    ///     ("db.max_overflow", "10"),
    /// ]);
    /// assert_eq!(EngineOptions::from_settings(&settings, "db.")?.max_connections(), 15);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn max_connections(&self) -> u32 {
        self.values.pool_size + self.values.max_overflow
    }

    /// Whether the engine is read-only (the `read_only` key).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.read_only", "yes")]);
    /// assert!(EngineOptions::from_settings(&settings, "db.")?.is_read_only());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn is_read_only(&self) -> bool {
        self.values.read_only
    }

    /// The isolation level of every transaction; `None`: the server's default.
    ///
    /// Applied by PostgreSQL and MySQL/MariaDB engines; SQLite engines do not use it
    /// (SQLite transactions are serializable).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, IsolationLevel, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.isolation_level", "serializable")]);
    /// let options = EngineOptions::from_settings(&settings, "db.")?;
    /// assert_eq!(options.isolation_level(), Some(IsolationLevel::Serializable));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn isolation_level(&self) -> Option<IsolationLevel> {
        self.values.isolation_level
    }

    /// The application name shown by the server.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.application_name", "myapp-web")]);
    /// let options = EngineOptions::from_settings(&settings, "db.")?;
    /// assert_eq!(options.application_name(), Some("myapp-web"));
    ///
    /// // An empty value means no name.
    /// let empty = Settings::from_pairs([("db.url", "sqlite://"), ("db.application_name", "")]);
    /// assert_eq!(EngineOptions::from_settings(&empty, "db.")?.application_name(), None);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn application_name(&self) -> Option<&str> {
        self.values.application_name.as_deref()
    }

    /// Rejects values outside their documented ranges (what r2d2 would panic on, and what
    /// a server would refuse on every connection); `prefix` makes the keys in errors.
    fn validate(&self, prefix: &str) -> Result<()> {
        let invalid = |name: &str, value: String, expected: &'static str| {
            Err(Error::invalid_setting(
                format!("{prefix}{name}"),
                &value,
                expected,
            ))
        };
        let ms = |d: Duration| format!("{} ms", d.as_millis());
        if !(1..=MAX_CONNECTIONS).contains(&self.values.pool_size) {
            return invalid(
                "pool_size",
                self.values.pool_size.to_string(),
                RANGE_POOL_SIZE,
            );
        }
        if self.values.max_overflow > MAX_CONNECTIONS - self.values.pool_size {
            return invalid(
                "max_overflow",
                self.values.max_overflow.to_string(),
                RANGE_MAX_OVERFLOW,
            );
        }
        if self.values.pool_min_idle > self.values.pool_size {
            return invalid(
                "pool_min_idle",
                self.values.pool_min_idle.to_string(),
                RANGE_MIN_IDLE,
            );
        }
        if self.values.pool_timeout.is_zero() || self.values.pool_timeout > MAX_POOL_TIMEOUT {
            return invalid(
                "pool_timeout",
                ms(self.values.pool_timeout),
                RANGE_POOL_TIMEOUT,
            );
        }
        for (name, value) in [
            ("pool_idle_timeout", self.values.pool_idle_timeout),
            ("pool_recycle", self.values.pool_recycle),
        ] {
            if let Some(d) = value.filter(|d| d.is_zero() || *d > MAX_POOL_LIFETIME) {
                return invalid(name, ms(d), RANGE_POOL_LIFETIME);
            }
        }
        if self.values.pool_pre_ping_window > MAX_PRE_PING_WINDOW {
            return invalid(
                "pool_pre_ping_window",
                ms(self.values.pool_pre_ping_window),
                RANGE_PRE_PING_WINDOW,
            );
        }
        if let Some(d) = self
            .values
            .statement_timeout
            .filter(|d| *d > MAX_SERVER_TIMEOUT)
        {
            return invalid("statement_timeout", ms(d), RANGE_STATEMENT_TIMEOUT);
        }
        if self.values.busy_timeout > MAX_SERVER_TIMEOUT {
            return invalid(
                "busy_timeout",
                ms(self.values.busy_timeout),
                RANGE_BUSY_TIMEOUT,
            );
        }
        Ok(())
    }
}

/// Sets [`EngineOptions`] in code; [`build`](Self::build) checks them.
///
/// # Examples
///
/// ```
/// use sqlassist::{DatabaseUrl, EngineOptions, IsolationLevel};
/// use std::time::Duration;
///
/// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?)
///     .pool_size(4)
///     .pool_timeout(Duration::from_secs(5))
///     .isolation_level(IsolationLevel::Serializable)
///     .build()?;
/// assert_eq!(options.pool_size(), 4);
/// assert_eq!(options.isolation_level(), Some(IsolationLevel::Serializable));
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct EngineOptionsBuilder {
    options: EngineOptions,
}

impl EngineOptionsBuilder {
    /// Whether the engine is read-only. Default: false.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    ///
    /// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?)
    ///     .read_only(true)
    ///     .build()?;
    /// assert!(options.is_read_only());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.options.values.read_only = read_only;
        self
    }

    /// The isolation level of every transaction. Default: none (the server's).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, IsolationLevel};
    ///
    /// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?)
    ///     .isolation_level(IsolationLevel::ReadCommitted)
    ///     .build()?;
    /// assert_eq!(options.isolation_level(), Some(IsolationLevel::ReadCommitted));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.options.values.isolation_level = Some(level);
        self
    }

    /// The application name shown by the server. Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    ///
    /// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?)
    ///     .application_name("myapp-worker")
    ///     .build()?;
    /// assert_eq!(options.application_name(), Some("myapp-worker"));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.options.values.application_name = Some(name.into());
        self
    }

    /// Checks and returns the options.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] for what r2d2 would refuse: `pool_size` 0,
    /// `pool_min_idle` above `pool_size`, a zero `pool_timeout`, `pool_idle_timeout` or
    /// `pool_recycle`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions, Error};
    ///
    /// let err = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?)
    ///     .pool_size(0)
    ///     .build()
    ///     .expect_err("r2d2 refuses an empty pool");
    /// assert!(matches!(err, Error::InvalidSetting { ref key, .. } if key == "pool_size"));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn build(self) -> Result<EngineOptions> {
        self.options.validate("")?;
        Ok(self.options)
    }
}

/// One setting's text, deserialized into a field of [`Values`]; a failure names its key.
struct Setting<'a> {
    name: &'a str,
    value: &'a str,
}

impl<'de> Deserializer<'de> for Setting<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, DeError> {
        visitor
            .visit_borrowed_str(self.value.trim())
            .map_err(|e| match e {
                DeError::Custom(expected) => DeError::Invalid {
                    name: self.name.to_owned(),
                    value: self.value.trim().to_owned(),
                    expected: EXPECTATIONS
                        .iter()
                        .find(|e| **e == expected)
                        .copied()
                        .unwrap_or("a valid value"),
                },
                other => other,
            })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, DeError> for Setting<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// Why the keys under a prefix do not deserialize; made an [`Error`] naming the full key.
#[derive(Debug)]
enum DeError {
    Invalid {
        name: String,
        value: String,
        expected: &'static str,
    },
    Unknown {
        name: String,
        known: &'static [&'static str],
    },
    Custom(String),
}

impl DeError {
    fn into_error(self, prefix: &str) -> Error {
        match self {
            DeError::Invalid {
                name,
                value,
                expected,
            } => Error::invalid_setting(format!("{prefix}{name}"), &value, expected),
            DeError::Unknown { name, known } => Error::UnknownSetting {
                key: format!("{prefix}{name}"),
                known: std::iter::once(&"url")
                    .chain(known)
                    .chain(REGISTRY_KEYS)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            // Only serde's own messages get here (every value is text, every key is
            // unique); they may quote a value, so say less.
            DeError::Custom(_) => Error::Settings {
                source: config::ConfigError::Message(format!(
                    "the options under `{prefix}` do not deserialize"
                )),
            },
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeError::Invalid { name, expected, .. } => write!(f, "`{name}`: expected {expected}"),
            DeError::Unknown { name, .. } => write!(f, "unknown setting `{name}`"),
            DeError::Custom(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        DeError::Custom(message.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::Unknown {
            name: field.to_owned(),
            known: expected,
        }
    }
}

/// What the deserializers below can expect, so that an error keeps the `'static` text.
const EXPECTATIONS: &[&str] = &[
    EXPECTED_BOOL,
    EXPECTED_ECHO,
    EXPECTED_SECONDS,
    EXPECTED_MILLIS,
    EXPECTED_ISOLATION,
    EXPECTED_ISOLATION_NOT_AUTOCOMMIT,
    RANGE_POOL_SIZE,
    RANGE_MAX_OVERFLOW,
    RANGE_MIN_IDLE,
    RANGE_POOL_LIFETIME,
];

/// Deserializes a setting's text with `parse`, whose error is what the key expects.
fn parsed<'de, D, T>(
    d: D,
    parse: impl FnOnce(&str) -> std::result::Result<T, &'static str>,
) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    d.deserialize_str(Parse(parse))
}

/// Parses inside the visitor, so that [`Setting`] sees the error and names its key.
struct Parse<F>(F);

impl<'de, T, F> Visitor<'de> for Parse<F>
where
    F: FnOnce(&str) -> std::result::Result<T, &'static str>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a setting's text")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<T, E> {
        (self.0)(text).map_err(E::custom)
    }
}

macro_rules! deserializers {
    ($($(#[$doc:meta])* $name:ident -> $ty:ty = $parse:expr;)*) => {$(
        $(#[$doc])*
        fn $name<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<$ty, D::Error> {
            parsed(d, $parse)
        }
    )*};
}

deserializers! {
    pool_size -> u32 = |s| s.parse().map_err(|_| RANGE_POOL_SIZE);
    max_overflow -> u32 = |s| s.parse().map_err(|_| RANGE_MAX_OVERFLOW);
    pool_min_idle -> u32 = |s| s.parse().map_err(|_| RANGE_MIN_IDLE);
    /// Pyramid's `asbool`.
    pyramid_bool -> bool = |s| parse_bool_text(s).ok_or(EXPECTED_BOOL);
    /// SQLAlchemy's `echo = debug` also logs result rows; statements are what is logged here.
    echo -> bool = |s| {
        if s.eq_ignore_ascii_case("debug") {
            Ok(true)
        } else {
            parse_bool_text(s).ok_or(EXPECTED_ECHO)
        }
    };
    seconds -> Duration = |s| parse_duration(s, 1000).ok_or(EXPECTED_SECONDS);
    millis -> Duration = |s| parse_duration(s, 1).ok_or(EXPECTED_MILLIS);
    /// SQLAlchemy disables a pool duration with `-1`; `none` and `off` say the same.
    seconds_or_none -> Option<Duration> = |s| {
        if ["none", "off", "-1"].iter().any(|v| s.eq_ignore_ascii_case(v)) {
            return Ok(None);
        }
        parse_duration(s, 1000).map(Some).ok_or(RANGE_POOL_LIFETIME)
    };
    millis_or_none -> Option<Duration> = |s| {
        if s.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        parse_duration(s, 1).map(Some).ok_or(EXPECTED_MILLIS)
    };
    isolation_level -> Option<IsolationLevel> = |s| IsolationLevel::parse_setting(s).map(Some);
    /// An empty value is no value.
    text_or_none -> Option<String> = |s| Ok(Some(s.to_owned()).filter(|s| !s.is_empty()));
}

/// Pyramid's `asbool`: `true/false`, `yes/no`, `on/off`, `t/f`, `y/n`, `1/0`, any case.
fn parse_bool_text(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "on" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Pyramid's `asbool` for the setting `key`.
///
/// # Errors
///
/// [`Error::InvalidSetting`] naming `key` for anything else.
pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool> {
    parse_bool_text(value).ok_or_else(|| Error::invalid_setting(key, value, EXPECTED_BOOL))
}

/// `30`, `2.5`, `250ms`, `5 s`, `1m`, `1h`, `1d`; a bare number counts `bare_millis`
/// milliseconds. Whole milliseconds, a fraction rounded up: `0.4ms` is 1 ms, never 0
/// (which a server reads as "no limit").
fn parse_duration(value: &str, bare_millis: u64) -> Option<Duration> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, suffix) = (&value[..split], value[split..].trim());
    let millis_per_unit: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" => bare_millis,
        "ms" | "msec" | "millis" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return None,
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(millis_per_unit)
            .map(Duration::from_millis);
    }
    // `millis_per_unit` is at most 8.64e7: exact as an f64.
    let millis = (number.parse::<f64>().ok()? * millis_per_unit as f64).ceil();
    // At most 1e15 after this check: exact as a u64.
    (0.0..=1e15)
        .contains(&millis)
        .then(|| Duration::from_millis(millis as u64))
}

// The tests parse SQLite URLs, which need the (default) `sqlite` feature.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_accept_pyramid_asbool_spellings() {
        for yes in ["true", "TRUE", "t", "yes", "Y", "on", "1"] {
            assert_eq!(parse_bool("k", yes).ok(), Some(true), "{yes}");
        }
        for no in ["false", "F", "no", "n", "OFF", "0"] {
            assert_eq!(parse_bool("k", no).ok(), Some(false), "{no}");
        }
        assert!(parse_bool("k", "maybe").is_err());
    }

    #[test]
    fn durations_accept_units_and_fractions() {
        let ms = |v: &str| parse_duration(v, 1);
        let s = |v: &str| parse_duration(v, 1000);
        assert_eq!(ms("1234"), Some(Duration::from_millis(1234)));
        assert_eq!(ms("0"), Some(Duration::ZERO));
        assert_eq!(ms("5s"), Some(Duration::from_secs(5)));
        assert_eq!(ms("5 S"), Some(Duration::from_secs(5)));
        assert_eq!(s("30"), Some(Duration::from_secs(30)));
        assert_eq!(s("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(s("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(s("2m"), Some(Duration::from_secs(120)));
        assert_eq!(s("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "ms", "-5", "5 parsecs", "1.2.3", "99999999999999999999"] {
            assert_eq!(s(bad), None, "{bad}");
        }
    }
}
