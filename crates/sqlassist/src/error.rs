//! The crate's error type.
//!
//! One `#[non_exhaustive]` enum, [`Error`], whose variants are the cases a caller branches
//! on. Messages are lowercase, carry no trailing period, and never contain a password:
//! URLs and setting values are redacted (see the `redact` module) before they are stored
//! in a variant.

use std::path::PathBuf;

use crate::backend::Backend;

/// Errors from parsing database URLs, loading settings and reading engine options.
///
/// # Examples
///
/// Branch on the variant, not on the message:
///
/// ```
/// use sqlassist::{DatabaseUrl, Error};
///
/// match DatabaseUrl::parse("oracle://scott:tiger@db/orcl") {
///     Err(Error::UnknownScheme { scheme, .. }) => assert_eq!(scheme, "oracle"),
///     other => panic!("unexpected: {other:?}"),
/// }
///
/// // Messages never contain the password.
/// let err = DatabaseUrl::parse("postgresql://app:s3cret@db:notaport/app")
///     .expect_err("the port is not a number");
/// assert!(matches!(err, Error::InvalidUrl { .. }));
/// assert!(!err.to_string().contains("s3cret"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A database URL could not be understood.
    ///
    /// `url` is already redacted (password replaced by `***`); `reason` says what is wrong
    /// and never quotes the password or the offending port text.
    #[error("invalid database url `{url}`: {reason}")]
    InvalidUrl {
        /// The URL with its password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A database URL names a scheme (dialect) this crate does not know.
    #[error("unknown database url scheme `{scheme}`; supported schemes: {supported}")]
    UnknownScheme {
        /// The scheme as written, before `://`.
        scheme: String,
        /// Every scheme this crate accepts, comma separated.
        supported: &'static str,
    },

    /// A database URL is for a backend whose cargo feature was not enabled.
    #[error(
        "the {backend} backend is not compiled in: enable the cargo feature `{feature}` of sqlassist"
    )]
    BackendNotEnabled {
        /// The backend the URL asks for.
        backend: Backend,
        /// The cargo feature of `sqlassist` that enables it.
        feature: &'static str,
    },

    /// A required setting is absent.
    #[error("missing setting `{key}`")]
    MissingSetting {
        /// The full key, such as `sqlalchemy_reader.url`.
        key: String,
    },

    /// A setting has a value that cannot be used.
    ///
    /// Build it with `Error::invalid_setting`, which hides the value of keys that look
    /// secret (`secret`, `password`, `token`, `key`, `dsn`, `url`) and redacts URLs.
    #[error("invalid value {value:?} for setting `{key}`: expected {expected}")]
    InvalidSetting {
        /// The full key, such as `sqlalchemy_reader.pool_size`.
        key: String,
        /// The value as given, redacted (`***` for keys that look secret, URLs with their
        /// passwords hidden).
        value: String,
        /// What the setting accepts.
        expected: &'static str,
    },

    /// A key under an engine prefix is not a known option (usually a typo).
    #[error("unknown setting `{key}`; known keys under this prefix: {known}")]
    UnknownSetting {
        /// The full key, such as `sqlalchemy_reader.pool_sise`.
        key: String,
        /// The known option names, comma separated.
        known: String,
    },

    /// The `config` crate failed while layering settings sources.
    #[error("cannot load settings")]
    Settings {
        /// The error from the `config` crate.
        #[source]
        source: config::ConfigError,
    },

    /// A settings file could not be read.
    #[error("cannot read settings file `{}`", path.display())]
    SettingsFile {
        /// The file as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A settings file or string is malformed.
    ///
    /// `reason` never quotes the offending line, which might hold a password.
    #[error("invalid settings in {path_or_origin}, line {line}: {reason}")]
    SettingsSyntax {
        /// The file path, or a description such as `INI text` for a string source.
        path_or_origin: String,
        /// The 1-based line number (0 when unknown).
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// An INI source has no section of the requested name.
    #[error("no section [{section}] in {path_or_origin}; sections found: {found}")]
    MissingSection {
        /// The file path, or a description such as `INI text` for a string source.
        path_or_origin: String,
        /// The section asked for, such as `app:main`.
        section: String,
        /// The sections present, comma separated.
        found: String,
    },

    /// No engine is registered under this name.
    #[error("unknown engine `{name}`; registered engines: [{known}]")]
    UnknownEngine {
        /// The name asked for.
        name: String,
        /// The registered names, comma separated.
        known: String,
    },

    /// An engine is already registered under this name.
    #[error("an engine named `{name}` is already registered")]
    DuplicateEngine {
        /// The name.
        name: String,
    },

    /// A second engine was registered as the default.
    #[error("engine `{name}` cannot be the default: `{existing}` already is")]
    DuplicateDefault {
        /// The current default.
        existing: String,
        /// The engine being registered.
        name: String,
    },

    /// No engine was registered as the default.
    #[error("no default engine: register one with InitOptions::new().default_engine(true) or `<prefix>.default = true`")]
    NoDefaultEngine,

    /// An engine name that cannot name database branches.
    #[error(
        "invalid engine name `{name}`: use 1 to 64 characters of letters, digits, `_`, `.` and `-`"
    )]
    InvalidEngineName {
        /// The name, escaped.
        name: String,
    },

    /// A node id that branch ids cannot carry (see [`NodeId`](crate::NodeId)).
    #[error("invalid node id `{value}`: use 1 to 24 characters of `a-z`, `0-9` and `-`")]
    InvalidNodeId {
        /// The id, escaped.
        value: String,
    },

    /// A branch id that does not parse as sqlassist's (see
    /// [`BranchId::parse`](crate::BranchId::parse)).
    #[error("malformed branch id `{id}`: bad {field}")]
    MalformedBranchId {
        /// The id, escaped.
        id: String,
        /// The first field that does not parse: `prefix`, `format id`, `node`,
        /// `incarnation`, `sequence` or `engine`.
        field: &'static str,
    },

    /// [`Registry::install`](crate::Registry::install) was called a second time.
    #[error("a registry is already installed for this process; install it once, at start-up")]
    RegistryAlreadyInstalled,

    /// [`db_session`](crate::db_session) was called before any registry was installed.
    #[error("no registry is installed: call Registry::install() at start-up before db_session()")]
    NoRegistry,

    /// A connection could not be opened or set up.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL with its password redacted.
        url: String,
        /// The driver's message, with the password removed.
        reason: String,
    },

    /// A managed PostgreSQL engine's server refuses `PREPARE TRANSACTION`.
    #[error("the server at {url} has prepared transactions disabled (max_prepared_transactions = 0): set max_prepared_transactions above 0 in postgresql.conf and restart the server, or register the engine unmanaged")]
    PreparedTransactionsDisabled {
        /// The URL with its password redacted.
        url: String,
    },

    /// A database error on one engine.
    #[error("database error on engine `{engine}`: {source}")]
    Database {
        /// The engine's name.
        engine: String,
        /// Whether retrying in a new transaction may succeed (serialization failure,
        /// deadlock, lock timeout).
        transient: bool,
        /// Diesel's error.
        #[source]
        source: diesel::result::Error,
    },

    /// The decision log could not be opened or used.
    #[error("decision log: {source}")]
    DecisionLog {
        /// The log's error.
        #[source]
        source: transaction::FileLogError,
    },

    /// A managed SQLite writer runs with `PRAGMA synchronous` below `FULL`: its commit
    /// carries the commit decision of transactions over several databases, and with
    /// `NORMAL` (in WAL mode) or `OFF` a power loss may lose a commit the other databases
    /// then finish, or roll back. Set `PRAGMA synchronous = FULL` (the default) or `EXTRA`.
    #[error("engine `{engine}` is a managed SQLite writer with PRAGMA synchronous = {synchronous}: its commits carry commit decisions, which need synchronous = FULL (2) or EXTRA (3)")]
    SqliteNotDurable {
        /// The engine's name (from [`Engine::check`](crate::Engine::check): its URL,
        /// password redacted).
        engine: String,
        /// The value SQLite reported (0 OFF, 1 NORMAL).
        synchronous: i32,
    },

    /// Another process holds a live lease on this node id in the database decision log
    /// (two processes configured with one `sqlassist.node_id`), or another node took it
    /// over and is still settling its transactions.
    #[error("node id `{node}` has a live lease in the decision log ({holder}): another process runs with this node id")]
    NodeLeaseHeld {
        /// The node id.
        node: String,
        /// Who holds it, as the log knows.
        holder: String,
    },

    /// The database decision log's record of a decision did not commit.
    #[error("the commit decision was not recorded: {reason}")]
    DecisionNotRecorded {
        /// Why.
        reason: String,
    },

    /// The decisions of the decision log could not be read (recovery then rolls nothing
    /// back).
    #[error("cannot read the decision log: {source}")]
    DecisionLogUnavailable {
        /// The log's error.
        #[source]
        source: transaction::BoxError,
    },

    /// The periodic recovery thread could not be spawned.
    #[error("cannot start the recovery thread")]
    RecoveryThread {
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Another process holds this node id's presence lock on an engine's database: two
    /// processes with one `sqlassist.node_id` would each take the other's prepared
    /// branches for their own and roll them back. Give each process its own node id.
    #[error("node id `{node}` is in use by another process on engine `{engine}` ({holder}): each process needs its own sqlassist.node_id")]
    NodeInUse {
        /// The node id.
        node: String,
        /// The engine's name.
        engine: String,
        /// Who holds it, as the server tells (a PostgreSQL backend pid, a MariaDB
        /// connection id), or `holder unknown`.
        holder: String,
    },

    /// Recovery needs a decision log: without one, no prepared branch can be told
    /// committed from undecided.
    #[error("no decision log is configured: set `sqlassist.decision_log` or call Registry::use_decision_log() before recovering")]
    NoDecisionLog,

    /// The transaction manager refused or failed.
    #[error(transparent)]
    Transaction(#[from] transaction::Error),

    /// `commit()` was called on a managed session: zope.sqlalchemy's `AssertionError`. The work is
    /// still pending; `transaction::commit()` commits it, `session.rollback()` discards it.
    #[error("engine `{engine}` is managed: commit it with transaction::commit(), or call rollback() on the session to discard its work")]
    CommitThroughTransactionManager {
        /// The engine's name.
        engine: String,
    },

    /// A session was asked for a connection type that is not its engine's.
    #[error(
        "engine `{engine}` is a {expected} engine, but a {requested} connection was asked for"
    )]
    WrongBackend {
        /// The engine's name.
        engine: String,
        /// The engine's backend.
        expected: Backend,
        /// The backend of the connection type asked for.
        requested: Backend,
    },

    /// The session's connection is borrowed (a [`ConnectionGuard`](crate::ConnectionGuard)
    /// is alive) while something else needs it.
    #[error("the session of engine `{engine}` is in use: drop its connection guard first")]
    SessionBusy {
        /// The engine's name.
        engine: String,
    },

    /// Raw SQL (`COMMIT`, `ROLLBACK`) ended the session's transaction behind its back.
    ///
    /// What ran before the raw SQL may be committed (a raw `COMMIT`) or rolled back; the
    /// session noticed at the next statement (PostgreSQL) and refused it, so nothing ran
    /// outside the transaction. A managed session's transaction is doomed: abort it. An
    /// unmanaged session works again after [`Session::rollback`](crate::Session::rollback).
    #[error("the transaction of engine `{engine}` was ended by raw SQL (COMMIT or ROLLBACK): what ran before it may be committed; further statements are refused until the transaction is aborted or the session rolled back")]
    TransactionEndedOutside {
        /// The engine's name.
        engine: String,
    },

    /// An engine declared read-only wrote in its transaction (PostgreSQL assigned it a
    /// transaction id, say after `SET TRANSACTION READ WRITE`): its work was rolled back
    /// and the commit refused.
    #[error("engine `{engine}` is read-only but its transaction wrote: its work was rolled back and nothing of it was committed")]
    ReadOnlyEngineWrote {
        /// The engine's name.
        engine: String,
    },

    /// A statement failed earlier in the transaction and the error was not handled by
    /// rolling back to a savepoint: the database can only roll the transaction back.
    #[error("a statement failed earlier in the transaction of engine `{engine}`: it can only be rolled back (handle statement errors inside conn.transaction(..) to keep the transaction usable)")]
    TransactionFailedEarlier {
        /// The engine's name.
        engine: String,
    },

    /// The session can no longer do what was asked: its connection was discarded after an
    /// earlier failure, or the database transaction an operation belonged to has ended.
    #[error("the session of engine `{engine}` cannot continue: {what}; roll it back or abort the transaction and start again")]
    SessionStateLost {
        /// The engine's name.
        engine: String,
        /// Why.
        what: &'static str,
    },

    /// A nested `conn.transaction(..)` (a savepoint) was still open at commit time.
    #[error("engine `{engine}` still has {depth} nested transaction(s) open at commit time")]
    SavepointStillOpen {
        /// The engine's name.
        engine: String,
        /// How many savepoints are open.
        depth: u32,
    },

    /// Phase two of a prepared branch could not run: the branch is left for recovery.
    #[error("engine `{engine}`: prepared transaction `{gid}` is in doubt: {reason}; finish it with COMMIT PREPARED / ROLLBACK PREPARED (PostgreSQL) or XA COMMIT / XA ROLLBACK (MariaDB, MySQL)")]
    InDoubt {
        /// The engine's name.
        engine: String,
        /// The branch's gid.
        gid: String,
        /// Why phase two failed.
        reason: String,
    },

    /// Phase two found the prepared branch gone: something outside this transaction (an
    /// operator, a recovery tool) committed or rolled it back between the vote and the
    /// finish. The server's answer is definitive, so nothing is retried and the session
    /// keeps its connection; which way the branch went is not known to this transaction.
    #[error("engine `{engine}`: prepared transaction `{gid}` no longer exists: it was resolved (committed or rolled back) outside this transaction, so its outcome is not known here; check its data")]
    BranchResolvedOutside {
        /// The engine's name.
        engine: String,
        /// The branch's gid (PostgreSQL) or xid (MariaDB, MySQL).
        gid: String,
    },

    /// Reflection named a table or view the database does not have.
    #[error("no table or view `{table}` in the database (unqualified names are looked up in schema `{schema}`)")]
    UnknownTable {
        /// The name as given.
        table: String,
        /// The schema unqualified names are looked up in.
        schema: String,
    },

    /// A reflected table has no column of this name.
    #[error("table `{table}` has no column `{column}`")]
    UnknownColumn {
        /// The table, as `schema.name`.
        table: String,
        /// The column asked for.
        column: String,
    },

    /// A reflected column's SQL type is one the library does not understand.
    #[error("column `{column}` of table `{table}` has type `{type_name}`, which sqlassist does not support")]
    UnsupportedType {
        /// The table, as `schema.name`.
        table: String,
        /// The column.
        column: String,
        /// The type as the catalog names it.
        type_name: String,
    },

    /// A catalog query failed while reflecting a database.
    #[error("cannot reflect the schema of {url}: {source}")]
    Reflect {
        /// The URL with its password redacted.
        url: String,
        /// Diesel's error.
        #[source]
        source: diesel::result::Error,
    },

    /// An application's setup routine ([`initialize_sql`](crate::initialize_sql)) failed,
    /// or its commit did: nothing of it was committed.
    #[error(
        "the setup routine of engine `{engine}` failed and nothing of it was applied: {source}"
    )]
    InitializeSql {
        /// The engine's name.
        engine: String,
        /// The routine's error, or the commit's.
        #[source]
        source: transaction::BoxError,
    },

    /// A value given to a query over a reflected table does not fit its column's type.
    #[error(
        "column `{column}` of table `{table}` has type `{type_name}`, which cannot take {value}"
    )]
    ValueDoesNotFit {
        /// The table, `schema.name`.
        table: Box<str>,
        /// The column.
        column: Box<str>,
        /// The column's SQL type as the catalog spells it.
        type_name: Box<str>,
        /// What was given (its kind, never its content).
        value: &'static str,
    },

    /// A query over a reflected table is incomplete (an insert or update with no value).
    #[error("invalid query on table `{table}`: {reason}")]
    InvalidQuery {
        /// The table, `schema.name`.
        table: String,
        /// What is missing.
        reason: String,
    },

    /// A declared table differs from the live database (see `check_drift`).
    #[error("schema drift: {drift}")]
    SchemaDrift {
        /// The difference: table, column, declared and live type and nullability.
        drift: Box<crate::drift::Drift>,
    },

    /// Migrations were asked to run on a read-only engine.
    #[error("engine `{engine}` is read-only: run migrations on the writer")]
    MigrationsOnReadOnlyEngine {
        /// The engine's name.
        engine: String,
    },

    /// A migration failed; the ones before it stay applied.
    #[error("migrations of engine `{engine}` failed: {source}")]
    Migration {
        /// The engine's name.
        engine: String,
        /// The migration harness's error.
        #[source]
        source: transaction::BoxError,
    },

    /// The engine's backend cannot do what was asked.
    #[error("engine `{engine}` does not support {what}")]
    Unsupported {
        /// The engine's name.
        engine: String,
        /// What was asked.
        what: String,
    },
}

/// `Result` with this crate's [`Error`] as the default error type.
///
/// # Examples
///
/// ```
/// use sqlassist::{EngineOptions, Settings};
///
/// fn pool_size(settings: &Settings) -> sqlassist::Result<u32> {
///     Ok(EngineOptions::from_settings(settings, "sqlalchemy.")?.pool_size())
/// }
///
/// assert_eq!(pool_size(&Settings::from_pairs([("sqlalchemy.url", "sqlite://")]))?, 10);
/// assert!(pool_size(&Settings::from_pairs([("sqlalchemy.pool_size", "4")])).is_err());
/// # Ok::<(), sqlassist::Error>(())
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether retrying the unit of work in a new transaction may succeed: a transient
    /// database error, or a transaction error that says so.
    ///
    /// # Examples
    ///
    /// Two engines on one SQLite file: the second writer cannot take the lock the first holds
    /// (with `busy_timeout` 0 it does not wait), which a retry may overcome. A configuration
    /// error never is transient.
    ///
    /// ```
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry};
    /// use std::time::Duration;
    ///
    /// let dir = std::env::temp_dir().join(format!("sqlassist-doc-transient-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).expect("temporary directory");
    /// let url = DatabaseUrl::parse_with_base("sqlite:///app.db", &dir)?;
    /// let mut registry = Registry::new();
    /// for name in ["first", "second"] {
    ///     let options = EngineOptions::builder(url.clone()).busy_timeout(Duration::ZERO).build()?;
    ///     registry.init_engine(name, Engine::new(options)?, InitOptions::new())?;
    /// }
    /// let first = registry.session("first")?;
    /// first.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")?; // holds the write lock
    ///
    /// let err = registry.session("second")?.execute("INSERT INTO t VALUES (1)").expect_err("locked");
    /// assert!(matches!(err, Error::Database { .. }));
    /// assert!(err.is_transient());
    ///
    /// assert!(!DatabaseUrl::parse("oracle://db").expect_err("unknown scheme").is_transient());
    /// sqlassist::close_sessions()?;
    /// std::fs::remove_dir_all(&dir).expect("temporary directory");
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database { transient, .. } => *transient,
            Error::Transaction(e) => e.is_transient(),
            _ => false,
        }
    }

    /// An [`Error::InvalidSetting`] that never echoes a secret: the value is shown as
    /// `redact::setting` shows it (`***` for keys that look secret, URLs redacted).
    pub(crate) fn invalid_setting(
        key: impl Into<String>,
        value: &str,
        expected: &'static str,
    ) -> Self {
        let key = key.into();
        let value = crate::redact::setting(&key, value);
        Error::InvalidSetting {
            key,
            value,
            expected,
        }
    }
}

impl transaction::Transient for Error {
    fn is_transient(&self) -> bool {
        Error::is_transient(self)
    }
}

pub(crate) use transaction::Transient;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_setting_hides_values_of_url_and_password_keys() {
        let err = Error::invalid_setting("db.url", "postgres://u:s3cr3t-PW@h/d", "a url");
        assert!(!err.to_string().contains("s3cr3t"));
        assert!(!format!("{err:?}").contains("s3cr3t"));
        let err = Error::invalid_setting("db.Password", "s3cr3t-PW", "text");
        assert!(!err.to_string().contains("s3cr3t"));
        let err = Error::invalid_setting("db.pool_size", "ten", "a positive integer");
        assert_eq!(
            err.to_string(),
            "invalid value \"ten\" for setting `db.pool_size`: expected a positive integer"
        );
    }

    #[test]
    fn invalid_setting_hides_values_of_every_secret_looking_key() {
        for key in ["a.secret", "a.api_token", "a.key", "a.dsn", "a.sslpassword"] {
            let err = Error::invalid_setting(key, "s3cr3t-PW", "text");
            assert!(!format!("{err} {err:?}").contains("s3cr3t"), "{key}");
        }
        let err =
            Error::invalid_setting("a.broker", "amqp://guest:s3cr3t-PW@rabbit:5672//", "text");
        assert!(!format!("{err} {err:?}").contains("s3cr3t"));
    }

    #[test]
    fn error_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }

    #[test]
    fn backend_not_enabled_names_the_feature() {
        let err = Error::BackendNotEnabled {
            backend: Backend::Postgres,
            feature: "postgres",
        };
        assert_eq!(
            err.to_string(),
            "the postgresql backend is not compiled in: enable the cargo feature `postgres` of sqlassist"
        );
    }
}
