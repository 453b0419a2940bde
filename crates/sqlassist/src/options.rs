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

    /// Most connections the pool holds (r2d2 `max_size`).
    ///
    /// An in-memory SQLite engine's pool holds one connection whatever this says: the
    /// database lives in its connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_size", "4")]);
    /// assert_eq!(EngineOptions::from_settings(&settings, "db.")?.pool_size(), 4);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_size(&self) -> u32 {
        self.values.pool_size
    }

    /// Connections the pool may open beyond [`pool_size`](Self::pool_size) under load
    /// (SQLAlchemy's `max_overflow`).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.max_overflow", "5")]);
    /// assert_eq!(EngineOptions::from_settings(&settings, "db.")?.max_overflow(), 5);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn max_overflow(&self) -> u32 {
        self.values.max_overflow
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

    /// Idle connections the pool keeps open (r2d2 `min_idle`).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_min_idle", "2")]);
    /// assert_eq!(EngineOptions::from_settings(&settings, "db.")?.pool_min_idle(), 2);
    ///
    /// let too_many = Settings::from_pairs([
    ///     ("db.url", "sqlite://"),
    ///     ("db.pool_size", "1"),
    ///     ("db.pool_min_idle", "2"),
    /// ]);
    /// assert!(EngineOptions::from_settings(&too_many, "db.").is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_min_idle(&self) -> u32 {
        self.values.pool_min_idle
    }

    /// How long a checkout waits for a connection (r2d2 `connection_timeout`).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    /// use std::time::Duration;
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_timeout", "500ms")]);
    /// let options = EngineOptions::from_settings(&settings, "db.")?;
    /// assert_eq!(options.pool_timeout(), Duration::from_millis(500));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_timeout(&self) -> Duration {
        self.values.pool_timeout
    }

    /// How long an idle connection is kept (r2d2 `idle_timeout`); `None`: forever.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    /// use std::time::Duration;
    ///
    /// let default = Settings::from_pairs([("db.url", "sqlite://")]);
    /// let options = EngineOptions::from_settings(&default, "db.")?;
    /// assert_eq!(options.pool_idle_timeout(), Some(Duration::from_secs(600)));
    ///
    /// let disabled = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_idle_timeout", "none")]);
    /// assert_eq!(EngineOptions::from_settings(&disabled, "db.")?.pool_idle_timeout(), None);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_idle_timeout(&self) -> Option<Duration> {
        self.values.pool_idle_timeout
    }

    /// How long a connection lives before it is replaced (r2d2 `max_lifetime`); `None`:
    /// forever.
    ///
    /// An in-memory SQLite engine never replaces its connection, which holds the database.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    /// use std::time::Duration;
    ///
    /// let default = Settings::from_pairs([("db.url", "sqlite://")]);
    /// let options = EngineOptions::from_settings(&default, "db.")?;
    /// assert_eq!(options.pool_recycle(), Some(Duration::from_secs(1800)));
    ///
    /// // SQLAlchemy's `pool_recycle = -1` disables recycling.
    /// let disabled = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_recycle", "-1")]);
    /// assert_eq!(EngineOptions::from_settings(&disabled, "db.")?.pool_recycle(), None);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_recycle(&self) -> Option<Duration> {
        self.values.pool_recycle
    }

    /// Whether a connection is tested before each checkout (r2d2 `test_on_check_out`).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_pre_ping", "off")]);
    /// assert!(!EngineOptions::from_settings(&settings, "db.")?.pool_pre_ping());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_pre_ping(&self) -> bool {
        self.values.pool_pre_ping
    }

    /// How recently a connection must have been used for its checkout test to be skipped
    /// (see [`pool_pre_ping`](Self::pool_pre_ping)). Zero tests every checkout.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    /// use std::time::Duration;
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.pool_pre_ping_window", "0")]);
    /// let options = EngineOptions::from_settings(&settings, "db.")?;
    /// assert_eq!(options.pool_pre_ping_window(), Duration::ZERO);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_pre_ping_window(&self) -> Duration {
        self.values.pool_pre_ping_window
    }

    /// Whether a session keeps its connection after its transaction ends. By default the
    /// connection goes back to the pool at every commit and abort, as zope.sqlalchemy
    /// closes its sessions.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.keep_session", "true")]);
    /// assert!(EngineOptions::from_settings(&settings, "db.")?.keep_session());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn keep_session(&self) -> bool {
        self.values.keep_session
    }

    /// Whether the engine is read-only.
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

    /// The per-statement time limit; `None`: the server's default.
    ///
    /// Applied by PostgreSQL and MySQL/MariaDB engines; SQLite engines do not use it.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    /// use std::time::Duration;
    ///
    /// // A bare number is in milliseconds.
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.statement_timeout", "250")]);
    /// let options = EngineOptions::from_settings(&settings, "db.")?;
    /// assert_eq!(options.statement_timeout(), Some(Duration::from_millis(250)));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.values.statement_timeout
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

    /// SQLite: how long a connection waits for a lock before "database is locked".
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    /// use std::time::Duration;
    ///
    /// let default = Settings::from_pairs([("db.url", "sqlite://")]);
    /// let options = EngineOptions::from_settings(&default, "db.")?;
    /// assert_eq!(options.busy_timeout(), Duration::from_millis(5000));
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.busy_timeout", "2s")]);
    /// let options = EngineOptions::from_settings(&settings, "db.")?;
    /// assert_eq!(options.busy_timeout(), Duration::from_secs(2));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn busy_timeout(&self) -> Duration {
        self.values.busy_timeout
    }

    /// Whether every SQL statement is logged at `debug` level.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{EngineOptions, Settings};
    ///
    /// let settings = Settings::from_pairs([("db.url", "sqlite://"), ("db.echo", "true")]);
    /// assert!(EngineOptions::from_settings(&settings, "db.")?.echo());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn echo(&self) -> bool {
        self.values.echo
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
    /// Most connections the pool holds (r2d2 `max_size`). Default: 10. Must be positive.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    ///
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// assert_eq!(EngineOptions::builder(url.clone()).pool_size(4).build()?.pool_size(), 4);
    /// assert!(EngineOptions::builder(url).pool_size(0).build().is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_size(mut self, size: u32) -> Self {
        self.options.values.pool_size = size;
        self
    }

    /// Connections the pool may open beyond `pool_size` under load (SQLAlchemy's
    /// `max_overflow`). Default: 0. `pool_size + max_overflow` is at most 1000.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    ///
    /// let url = DatabaseUrl::parse("sqlite:///app.db")?;
    /// let options = EngineOptions::builder(url.clone()).pool_size(5).max_overflow(10).build()?;
    /// assert_eq!(options.max_connections(), 15);
    /// assert!(EngineOptions::builder(url).pool_size(5).max_overflow(1000).build().is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn max_overflow(mut self, overflow: u32) -> Self {
        self.options.values.max_overflow = overflow;
        self
    }

    /// Idle connections the pool keeps open (r2d2 `min_idle`). Default: 0, so building the
    /// pool opens no connection and cannot block (r2d2's own default, `pool_size`, would).
    /// Must not exceed `pool_size`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    ///
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// let options = EngineOptions::builder(url.clone()).pool_min_idle(2).build()?;
    /// assert_eq!(options.pool_min_idle(), 2);
    /// assert!(EngineOptions::builder(url).pool_size(1).pool_min_idle(2).build().is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_min_idle(mut self, min_idle: u32) -> Self {
        self.options.values.pool_min_idle = min_idle;
        self
    }

    /// How long a checkout waits for a connection (r2d2 `connection_timeout`). Default:
    /// 30 s. Must be positive.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    /// use std::time::Duration;
    ///
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// let options = EngineOptions::builder(url.clone()).pool_timeout(Duration::from_secs(5)).build()?;
    /// assert_eq!(options.pool_timeout(), Duration::from_secs(5));
    /// assert!(EngineOptions::builder(url).pool_timeout(Duration::ZERO).build().is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_timeout(mut self, timeout: Duration) -> Self {
        self.options.values.pool_timeout = timeout;
        self
    }

    /// How long an idle connection is kept (r2d2 `idle_timeout`); `None` keeps it forever.
    /// Default: 600 s. Must not be zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    /// use std::time::Duration;
    ///
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// let options = EngineOptions::builder(url.clone()).pool_idle_timeout(None).build()?;
    /// assert_eq!(options.pool_idle_timeout(), None);
    /// let zero = EngineOptions::builder(url).pool_idle_timeout(Some(Duration::ZERO));
    /// assert!(zero.build().is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.options.values.pool_idle_timeout = timeout;
        self
    }

    /// How long a connection lives before it is replaced (r2d2 `max_lifetime`); `None`
    /// keeps it forever. Default: 1800 s. Must not be zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    /// use std::time::Duration;
    ///
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// let options = EngineOptions::builder(url)
    ///     .pool_recycle(Some(Duration::from_secs(300)))
    ///     .build()?;
    /// assert_eq!(options.pool_recycle(), Some(Duration::from_secs(300)));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_recycle(mut self, lifetime: Option<Duration>) -> Self {
        self.options.values.pool_recycle = lifetime;
        self
    }

    /// Whether a connection is tested before each checkout (r2d2 `test_on_check_out`).
    /// Default: true.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    ///
    /// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?)
    ///     .pool_pre_ping(false)
    ///     .build()?;
    /// assert!(!options.pool_pre_ping());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_pre_ping(mut self, pre_ping: bool) -> Self {
        self.options.values.pool_pre_ping = pre_ping;
        self
    }

    /// Skips the checkout test for a connection used within `window`. Default: 500 ms;
    /// zero tests every checkout.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    /// use std::time::Duration;
    ///
    /// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?)
    ///     .pool_pre_ping_window(Duration::ZERO)
    ///     .build()?;
    /// assert_eq!(options.pool_pre_ping_window(), Duration::ZERO);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pool_pre_ping_window(mut self, window: Duration) -> Self {
        self.options.values.pool_pre_ping_window = window;
        self
    }

    /// Keeps a session's connection after its transaction ends. Default: false (the
    /// connection goes back to the pool at every commit and abort).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    ///
    /// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?)
    ///     .keep_session(true)
    ///     .build()?;
    /// assert!(options.keep_session());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn keep_session(mut self, keep: bool) -> Self {
        self.options.values.keep_session = keep;
        self
    }

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

    /// The per-statement time limit; `None` leaves the server's. Default: `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    /// use std::time::Duration;
    ///
    /// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?)
    ///     .statement_timeout(Some(Duration::from_secs(5)))
    ///     .build()?;
    /// assert_eq!(options.statement_timeout(), Some(Duration::from_secs(5)));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.options.values.statement_timeout = timeout;
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

    /// SQLite: how long a connection waits for a lock. Default: 5000 ms.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    /// use std::time::Duration;
    ///
    /// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?)
    ///     .busy_timeout(Duration::from_millis(250))
    ///     .build()?;
    /// assert_eq!(options.busy_timeout(), Duration::from_millis(250));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.options.values.busy_timeout = timeout;
        self
    }

    /// Whether every SQL statement is logged at `debug` level. Default: false.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, EngineOptions};
    ///
    /// let options = EngineOptions::builder(DatabaseUrl::parse("sqlite://")?).echo(true).build()?;
    /// assert!(options.echo());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn echo(mut self, echo: bool) -> Self {
        self.options.values.echo = echo;
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
#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    const PREFIX: &str = "sqlalchemy_reader.";

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::builder()
            .pairs(
                std::iter::once(("sqlalchemy_reader.url", "sqlite:///app.db"))
                    .chain(pairs.iter().copied()),
            )
            .here("/srv/myapp")
            .build()
            .expect("pairs always build")
    }

    fn options(pairs: &[(&str, &str)]) -> Result<EngineOptions> {
        EngineOptions::from_settings(&settings(pairs), PREFIX)
    }

    fn invalid_key(e: &Error) -> &str {
        match e {
            Error::InvalidSetting { key, .. } => key,
            other => panic!("expected InvalidSetting, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_documented_values() -> Result<()> {
        let o = options(&[])?;
        assert_eq!(
            o.url().sqlite_path(),
            Some(std::path::Path::new("/srv/myapp/app.db"))
        );
        assert_eq!(o.pool_size(), 10);
        assert_eq!(o.pool_min_idle(), 0);
        assert_eq!(o.pool_timeout(), Duration::from_secs(30));
        assert_eq!(o.pool_idle_timeout(), Some(Duration::from_secs(600)));
        assert_eq!(o.pool_recycle(), Some(Duration::from_secs(1800)));
        assert!(o.pool_pre_ping());
        assert!(!o.is_read_only());
        assert_eq!(o.isolation_level(), None);
        assert_eq!(o.statement_timeout(), None);
        assert_eq!(o.application_name(), None);
        assert_eq!(o.busy_timeout(), Duration::from_millis(5000));
        assert!(!o.echo());
        assert_eq!(o, EngineOptions::new(o.url().clone()));
        Ok(())
    }

    #[test]
    fn every_key_is_parsed() -> Result<()> {
        let o = options(&[
            ("sqlalchemy_reader.pool_size", "20"),
            ("sqlalchemy_reader.pool_min_idle", " 2 "),
            ("sqlalchemy_reader.pool_timeout", "2.5"),
            ("sqlalchemy_reader.pool_idle_timeout", "none"),
            ("sqlalchemy_reader.pool_recycle", "3600"),
            ("sqlalchemy_reader.pool_pre_ping", "off"),
            ("sqlalchemy_reader.read_only", "Yes"),
            ("sqlalchemy_reader.isolation_level", "repeatable_read"),
            ("sqlalchemy_reader.statement_timeout", "250ms"),
            ("sqlalchemy_reader.application_name", "myapp-reader"),
            ("sqlalchemy_reader.busy_timeout", "2s"),
            ("sqlalchemy_reader.echo", "1"),
        ])?;
        assert_eq!(o.pool_size(), 20);
        assert_eq!(o.pool_min_idle(), 2);
        assert_eq!(o.pool_timeout(), Duration::from_millis(2500));
        assert_eq!(o.pool_idle_timeout(), None);
        assert_eq!(o.pool_recycle(), Some(Duration::from_secs(3600)));
        assert!(!o.pool_pre_ping());
        assert!(o.is_read_only());
        assert_eq!(o.isolation_level(), Some(IsolationLevel::RepeatableRead));
        assert_eq!(o.statement_timeout(), Some(Duration::from_millis(250)));
        assert_eq!(o.application_name(), Some("myapp-reader"));
        assert_eq!(o.busy_timeout(), Duration::from_secs(2));
        assert!(o.echo());
        Ok(())
    }

    #[test]
    fn prefix_without_trailing_dot_is_accepted() -> Result<()> {
        let s = settings(&[
            ("sqlalchemy_reader.pool_size", "3"),
            ("sqlalchemy_reader2.url", "x"),
        ]);
        assert_eq!(
            EngineOptions::from_settings(&s, "sqlalchemy_reader")?.pool_size(),
            3
        );
        Ok(())
    }

    #[test]
    fn other_prefixes_are_ignored() -> Result<()> {
        let o = options(&[
            ("sqlalchemy_writer.url", "not even a url"),
            ("sqlalchemy_writer.pool_sise", "3"),
            ("sqlalchemy.echo", "maybe"),
        ])?;
        assert_eq!(o.pool_size(), 10);
        Ok(())
    }

    #[test]
    fn booleans_accept_pyramid_asbool_spellings() {
        for yes in ["true", "TRUE", "t", "yes", "Y", "on", "1"] {
            assert_eq!(parse_bool("k", yes).ok(), Some(true), "{yes}");
        }
        for no in ["false", "F", "no", "n", "OFF", "0"] {
            assert_eq!(parse_bool("k", no).ok(), Some(false), "{no}");
        }
        let e = options(&[("sqlalchemy_reader.echo", "maybe")]).expect_err("not a bool");
        assert_eq!(invalid_key(&e), "sqlalchemy_reader.echo");
        assert!(e.to_string().contains("\"maybe\""), "{e}");
    }

    #[test]
    fn isolation_level_accepts_sqlalchemy_spellings() {
        for (text, level) in [
            ("SERIALIZABLE", IsolationLevel::Serializable),
            ("serializable", IsolationLevel::Serializable),
            ("READ COMMITTED", IsolationLevel::ReadCommitted),
            ("read_committed", IsolationLevel::ReadCommitted),
            ("Read-Uncommitted", IsolationLevel::ReadUncommitted),
            ("  repeatable   read ", IsolationLevel::RepeatableRead),
        ] {
            assert_eq!(text.parse::<IsolationLevel>().ok(), Some(level), "{text}");
        }
        let e = options(&[("sqlalchemy_reader.isolation_level", "AUTOCOMMIT")])
            .expect_err("not a level");
        assert_eq!(invalid_key(&e), "sqlalchemy_reader.isolation_level");
        assert!(e.to_string().contains("SERIALIZABLE"), "{e}");
        assert_eq!(IsolationLevel::ReadCommitted.to_string(), "READ COMMITTED");
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

    #[test]
    fn statement_timeout_none_and_zero() -> Result<()> {
        let o = options(&[("sqlalchemy_reader.statement_timeout", "none")])?;
        assert_eq!(o.statement_timeout(), None);
        let o = options(&[("sqlalchemy_reader.statement_timeout", "0")])?;
        assert_eq!(o.statement_timeout(), Some(Duration::ZERO));
        Ok(())
    }

    #[test]
    fn pool_recycle_minus_one_disables_like_sqlalchemy() -> Result<()> {
        let o = options(&[("sqlalchemy_reader.pool_recycle", "-1")])?;
        assert_eq!(o.pool_recycle(), None);
        Ok(())
    }

    #[test]
    fn bad_integer_names_the_full_key() {
        for (key, value) in [
            ("sqlalchemy_reader.pool_size", "ten"),
            ("sqlalchemy_reader.pool_size", "-1"),
            ("sqlalchemy_reader.pool_min_idle", "1.5"),
            ("sqlalchemy_reader.pool_timeout", "soon"),
            ("sqlalchemy_reader.pool_recycle", "never"),
            ("sqlalchemy_reader.busy_timeout", "5 parsecs"),
        ] {
            let e = options(&[(key, value)]).expect_err(value);
            assert_eq!(invalid_key(&e), key, "{e}");
            assert!(e.to_string().contains(&format!("{value:?}")), "{e}");
        }
    }

    #[test]
    fn values_r2d2_would_panic_on_are_rejected() {
        for (key, value) in [
            ("sqlalchemy_reader.pool_size", "0"),
            ("sqlalchemy_reader.pool_min_idle", "11"),
            ("sqlalchemy_reader.pool_timeout", "0"),
            ("sqlalchemy_reader.pool_idle_timeout", "0"),
            ("sqlalchemy_reader.pool_recycle", "0ms"),
        ] {
            let e = options(&[(key, value)]).expect_err(value);
            assert_eq!(invalid_key(&e), key, "{e}");
        }
    }

    #[test]
    fn unknown_key_names_it_and_lists_the_known_ones() {
        let e = options(&[("sqlalchemy_reader.pool_sise", "3")]).expect_err("typo");
        match &e {
            Error::UnknownSetting { key, known } => {
                assert_eq!(key, "sqlalchemy_reader.pool_sise");
                assert!(known.contains("pool_size"));
                assert!(known.contains("busy_timeout"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = options(&[("sqlalchemy_reader.ulr", "sqlite://")]).expect_err("typo");
        assert!(e.to_string().contains("`sqlalchemy_reader.ulr`"), "{e}");
    }

    #[test]
    fn registry_keys_under_the_prefix_are_accepted_and_ignored() -> Result<()> {
        let o = options(&[
            ("sqlalchemy_reader.managed", "true"),
            ("sqlalchemy_reader.use_zope", "false"),
            ("sqlalchemy_reader.default", "yes"),
        ])?;
        assert_eq!(o, EngineOptions::new(o.url().clone()));
        let e = options(&[("sqlalchemy_reader.managd", "true")]).expect_err("typo");
        assert!(e.to_string().contains("managed"), "{e}");
        Ok(())
    }

    #[test]
    fn missing_url_names_the_key() {
        let s = Settings::from_pairs([("sqlalchemy_writer.pool_size", "1")]);
        let e = EngineOptions::from_settings(&s, "sqlalchemy_writer.").expect_err("no url");
        assert_eq!(e.to_string(), "missing setting `sqlalchemy_writer.url`");
    }

    #[test]
    fn bad_url_error_does_not_leak_the_password() {
        let s = Settings::from_pairs([("db.url", "postgresql://u:s3cr3t-PW@h:port/db")]);
        let e = EngineOptions::from_settings(&s, "db.").expect_err("bad port");
        assert!(matches!(e, Error::InvalidUrl { .. }));
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(!format!("{e:?}").contains("s3cr3t"), "{e:?}");
    }

    /// Records the message and fields of every `WARN` event.
    #[derive(Clone, Default)]
    struct Warnings(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl Warnings {
        fn lines(&self) -> Vec<String> {
            self.0.lock().expect("not poisoned").clone()
        }
    }

    struct Fields(String);

    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
            self.0.push_str(&format!("{}={value:?} ", field.name()));
        }
    }

    impl tracing::Subscriber for Warnings {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                let mut fields = Fields(String::new());
                event.record(&mut fields);
                self.0.lock().expect("not poisoned").push(fields.0);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn sqlalchemy_keys_of_a_ported_ini_are_accepted_with_one_warning_each() -> Result<()> {
        let ignored = [
            "echo_pool",
            "pool_use_lifo",
            "pool_reset_on_return",
            "hide_parameters",
            "logging_name",
            "pool_logging_name",
            "query_cache_size",
            "future",
            "connect_args.sslmode",
            "execution_options.isolation_level",
        ];
        let mut pairs: Vec<(String, &str)> = ignored
            .iter()
            .map(|name| (format!("{PREFIX}{name}"), "true"))
            .collect();
        pairs.push((format!("{PREFIX}max_overflow"), "5"));
        pairs.push((format!("{PREFIX}pool_size"), "3"));
        pairs.push((format!("{PREFIX}echo"), "debug"));
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let warnings = Warnings::default();
        let o = tracing::subscriber::with_default(warnings.clone(), || options(&pairs))?;
        assert_eq!(o.pool_size(), 3);
        assert_eq!(o.max_overflow(), 5);
        assert_eq!(o.max_connections(), 8);
        assert!(o.echo(), "echo = debug logs statements");
        let lines = warnings.lines();
        for name in ignored {
            let key = format!("{PREFIX}{name}");
            let naming = lines.iter().filter(|l| l.contains(&key)).count();
            assert_eq!(naming, 1, "one warning names {key}: {lines:?}");
        }
        assert_eq!(lines.len(), ignored.len(), "{lines:?}");
        // A real typo is still an error.
        let e = options(&[("sqlalchemy_reader.max_overflw", "5")]).expect_err("typo");
        assert!(matches!(e, Error::UnknownSetting { .. }), "{e:?}");
        Ok(())
    }

    #[test]
    fn sub_millisecond_durations_round_up_and_never_mean_no_limit() -> Result<()> {
        let o = options(&[
            ("sqlalchemy_reader.statement_timeout", "0.4ms"),
            ("sqlalchemy_reader.busy_timeout", "0.0001s"),
            ("sqlalchemy_reader.pool_timeout", "1.5ms"),
        ])?;
        assert_eq!(o.statement_timeout(), Some(Duration::from_millis(1)));
        assert_eq!(o.busy_timeout(), Duration::from_millis(1));
        assert_eq!(o.pool_timeout(), Duration::from_millis(2));
        Ok(())
    }

    #[test]
    fn numbers_and_durations_out_of_their_range_are_refused_naming_key_and_range() {
        for (name, value) in [
            ("pool_size", "4294967295"),
            ("pool_size", "1001"),
            ("max_overflow", "1000"),
            ("max_overflow", "-1"),
            ("pool_min_idle", "4294967295"),
            ("pool_timeout", "100000000000"),
            ("pool_timeout", "2d"),
            ("pool_idle_timeout", "100000000000"),
            ("pool_recycle", "100000000000"),
            ("pool_pre_ping_window", "100000000000"),
            ("statement_timeout", "2147483648"),
            ("statement_timeout", "25d"),
            ("busy_timeout", "2147483648"),
        ] {
            let key = format!("{PREFIX}{name}");
            let e = options(&[(&key, value)]).expect_err(&key);
            assert_eq!(invalid_key(&e), key, "{e}");
            let Error::InvalidSetting { expected, .. } = &e else {
                unreachable!()
            };
            assert!(expected.contains(" to "), "{key} = {value}: {e}");
        }
        // The builder checks the same ranges.
        let url = DatabaseUrl::parse("sqlite://").expect("a memory url");
        for builder in [
            EngineOptions::builder(url.clone()).pool_size(u32::MAX),
            EngineOptions::builder(url.clone())
                .statement_timeout(Some(Duration::from_secs(1 << 40))),
            EngineOptions::builder(url.clone()).busy_timeout(Duration::from_secs(1 << 40)),
            EngineOptions::builder(url.clone()).pool_timeout(Duration::from_secs(1 << 40)),
        ] {
            builder.build().expect_err("out of range");
        }
    }

    #[test]
    fn builder_sets_every_option_and_checks_pool_values() -> Result<()> {
        let url = DatabaseUrl::parse("sqlite://")?;
        let o = EngineOptions::builder(url.clone())
            .pool_size(3)
            .pool_min_idle(1)
            .pool_timeout(Duration::from_secs(1))
            .pool_idle_timeout(None)
            .pool_recycle(Some(Duration::from_secs(60)))
            .pool_pre_ping(false)
            .read_only(true)
            .isolation_level(IsolationLevel::Serializable)
            .statement_timeout(Some(Duration::from_millis(100)))
            .application_name("job")
            .busy_timeout(Duration::from_millis(10))
            .echo(true)
            .build()?;
        assert_eq!(o.pool_size(), 3);
        assert_eq!(o.pool_min_idle(), 1);
        assert_eq!(o.pool_timeout(), Duration::from_secs(1));
        assert_eq!(o.pool_idle_timeout(), None);
        assert_eq!(o.pool_recycle(), Some(Duration::from_secs(60)));
        assert!(!o.pool_pre_ping());
        assert!(o.is_read_only());
        assert_eq!(o.isolation_level(), Some(IsolationLevel::Serializable));
        assert_eq!(o.statement_timeout(), Some(Duration::from_millis(100)));
        assert_eq!(o.application_name(), Some("job"));
        assert_eq!(o.busy_timeout(), Duration::from_millis(10));
        assert!(o.echo());
        assert_eq!(o.to_builder().build()?, o);

        let e = EngineOptions::builder(url.clone())
            .pool_size(0)
            .build()
            .expect_err("zero pool");
        assert_eq!(invalid_key(&e), "pool_size");
        let e = EngineOptions::builder(url)
            .pool_size(2)
            .pool_min_idle(3)
            .build()
            .expect_err("min_idle > size");
        assert_eq!(invalid_key(&e), "pool_min_idle");
        Ok(())
    }
}
