//! Embedded migrations (`diesel_migrations`) run on an engine at start-up.

use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

use crate::error::{Error, Result};
use crate::registry::Registry;

/// Runs the pending migrations of `migrations` (from `diesel_migrations::embed_migrations!`)
/// on engine `engine` of `registry`, and returns the versions it applied, in order.
///
/// Call it at start-up where the application wants its schema brought up to date, on
/// the writer. The migrations run on a connection of their own, outside any session and
/// outside the thread's transaction: DDL cannot take part in a two-phase branch
/// (MariaDB commits DDL implicitly), and a migration must not commit or abort with the
/// application's work. The harness runs each migration in its own transaction where the
/// backend allows; one that fails leaves the ones before it applied.
///
/// # Errors
///
/// [`Error::UnknownEngine`]; [`Error::MigrationsOnReadOnlyEngine`] for a read-only engine,
/// before anything runs; [`Error::Connect`]; [`Error::Migration`] naming the engine, with
/// the harness's error as its source.
///
/// # Examples
///
/// ```
/// use sqlassist::{Registry, Settings};
///
/// const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
///     diesel_migrations::embed_migrations!("tests/migrations/sqlite");
///
/// let dir = std::env::temp_dir().join(format!("sqlassist-doc-migrate-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let url = format!("sqlite:///{}", dir.join("app.db").display());
/// let registry = Registry::from_settings(&Settings::from_pairs([
///     ("sqlalchemy_writer.url", url.as_str()),
///     ("sqlalchemy_reader.url", url.as_str()),
///     ("sqlalchemy_reader.read_only", "true"),
/// ]))?;
/// assert!(sqlassist::run_pending_migrations(&registry, "reader", MIGRATIONS).is_err());
/// let applied = sqlassist::run_pending_migrations(&registry, "writer", MIGRATIONS)?;
/// assert_eq!(applied.len(), 1);
/// assert!(sqlassist::run_pending_migrations(&registry, "writer", MIGRATIONS)?.is_empty());
/// # drop(registry);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_pending_migrations(
    registry: &Registry,
    engine: &str,
    migrations: EmbeddedMigrations,
) -> Result<Vec<String>> {
    let handle = registry.engine(engine)?;
    if handle.is_read_only() {
        return Err(Error::MigrationsOnReadOnlyEngine {
            engine: engine.to_owned(),
        });
    }
    let mut conn = handle.checkout()?;
    let applied = crate::conn::with_conn!(&mut conn, c => c
        .run_pending_migrations(migrations)
        .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>()));
    applied.map_err(|source| Error::Migration {
        engine: engine.to_owned(),
        source,
    })
}
