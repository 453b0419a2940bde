//! Named Diesel engines from Pyramid-style settings, sessions on r2d2 pools, and two-phase
//! commit across them: a Rust port of the Python `sqlassist` library.
//!
//! An application describes its databases in settings, one engine per key prefix, the way
//! SQLAlchemy's `engine_from_config(settings, prefix="sqlalchemy_reader.")` reads them:
//!
//! ```ini
//! [app:main]
//! sqlalchemy_reader.url = postgresql://myapp_reader:secret@localhost/myapp
//! sqlalchemy_reader.read_only = true
//! sqlalchemy_writer.url = postgresql://myapp_writer:secret@localhost/myapp
//! sqlalchemy_writer.pool_size = 5
//! ```
//!
//! - [`Settings`] reads such a section (or TOML, a plain map, environment overrides),
//!   layered through the `config` crate.
//! - [`DatabaseUrl`] understands SQLAlchemy's URL forms and produces the URL Diesel opens.
//! - [`EngineOptions`] holds one engine's URL and pool and session options.
//!
//! ```
//! use sqlassist::{EngineOptions, Settings};
//!
//! let settings = Settings::from_ini_str(
//!     "[app:main]\nsqlalchemy_reader.url = sqlite://\nsqlalchemy_reader.read_only = true\n",
//!     "app:main",
//!     "/srv/myapp",
//! )?;
//! for prefix in settings.engine_prefixes() {
//!     let options = EngineOptions::from_settings(&settings, &prefix)?;
//!     assert!(options.is_read_only());
//! }
//! # Ok::<(), sqlassist::Error>(())
//! ```
//!
//! Cargo features choose the backends: `sqlite` (default), `postgres`, `mysql`. A URL for
//! a backend that is not compiled in fails with [`Error::BackendNotEnabled`], which names
//! the feature to enable.

#![deny(missing_docs)]

#[cfg(not(any(feature = "postgres", feature = "sqlite", feature = "mysql")))]
compile_error!("enable at least one backend feature of sqlassist: `sqlite`, `postgres` or `mysql`");

mod backend;
mod branch;
mod check;
mod conn;
#[cfg(feature = "postgres")]
mod db_log;
#[cfg(feature = "postgres")]
mod db_log_inspect;
mod drift;
mod dynamic;
mod engine;
mod error;
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod fault;
mod in_doubt;
mod ini;
mod initialize;
mod instrument;
mod migrate;
mod options;
mod pool;
mod presence;
mod recovery;
mod redact;
mod reflect;
mod registry;
mod session;
mod settings;
mod url;

pub use backend::Backend;
pub use branch::{BranchId, Finished, NodeId, Owner, PreparedBranch, MAX_NODE_ID_LEN};
pub use check::{check_setup, CheckItem, CheckOutcome, CheckReport};
pub use conn::BackendConnection;
#[cfg(feature = "postgres")]
pub use db_log::{DatabaseDecisionLog, DatabaseLogError, DEFAULT_LEASE_TTL};
#[cfg(feature = "postgres")]
pub use db_log_inspect::{DatabaseLogInspection, NodeRecord};
pub use drift::{check_drift, DeclaredTable, DeclaredType, Drift, DriftMode};
pub use dynamic::{Cmp, DynamicQuery, DynamicTable, Order, Row, Value};
pub use engine::{hold_sessions_as, Engine, HolderGuard, PoolState};
pub use error::{Error, Result};
pub use in_doubt::{
    record_manual_action, InDoubtBranch, InDoubtReport, LoggedDecision, ManualAction, NodeLease,
    PlannedAction, MANUAL_LOG_FILE,
};
pub use initialize::initialize_sql;
pub use migrate::run_pending_migrations;
pub use options::{EngineOptions, EngineOptionsBuilder, IsolationLevel};
pub use recovery::{RecoveredBranch, RecoveryAction, RecoveryProgress, RecoveryReport};
pub use reflect::{
    Column, ColumnKind, ForeignKey, PrintOptions, PrintedSchema, Schema, SchemaCache, Table,
    TableKind, TableName, UniqueConstraint, UnmappedColumn,
};
pub use registry::{
    db_session, registry, DecisionLogLocation, InitOptions, Registry, DEFAULT_RECOVERY_INTERVAL,
    DEFAULT_RECOVERY_STARTUP_WAIT,
};
pub use session::{close_sessions, open_sessions, ConnectionGuard, Session};
pub use settings::{Settings, SettingsBuilder};
pub use url::DatabaseUrl;
