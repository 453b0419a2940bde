//! `initialize_sql`: an application's setup routine for one engine, run at start-up in one
//! transaction.

use transaction::BoxError;

use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::session::Session;

/// Runs the application's setup routine `setup` once for the engine `engine` of
/// `registry` (pyramid_sqlassist's `initialize_sql(engine, callback)`): creating tables,
/// seeding rows, checking what must exist. Call it at start-up, before serving.
///
/// `setup` gets the engine's session and runs inside a new transaction of this thread's
/// transaction manager. When it returns `Ok`, a managed engine's work commits through the
/// manager (`transaction::commit()`), an unmanaged engine's through its session; when it
/// returns `Err`, or the commit fails, everything it did is rolled back (PostgreSQL and
/// SQLite roll back DDL too; MariaDB commits DDL implicitly, so keep DDL out of a
/// MariaDB setup routine) and the error names the engine.
///
/// # Errors
///
/// [`Error::UnknownEngine`]; [`Error::InitializeSql`] naming the engine, with the routine's
/// error (or the commit's) as its source, when the routine fails, when the commit fails,
/// or when this thread's transaction already holds other work (which the setup's commit
/// would otherwise commit or discard with it).
///
/// # Examples
///
/// ```
/// use sqlassist::{Error, Registry, Settings};
///
/// let registry = Registry::from_settings(&Settings::from_pairs([
///     ("sqlalchemy_writer.url", "sqlite://"),
///     ("sqlalchemy_writer.managed", "true"),
/// ]))?;
/// sqlassist::initialize_sql(&registry, "writer", |session| {
///     session.execute("CREATE TABLE setting (key TEXT PRIMARY KEY, value TEXT)")?;
///     session.execute("INSERT INTO setting VALUES ('theme', 'dark')")?;
///     Ok::<(), Error>(())
/// })?;
/// assert_eq!(registry.session("writer")?.query_i64("SELECT COUNT(*) FROM setting")?, 1);
/// transaction::commit()?; // the read joined this thread's transaction: end it
///
/// // A routine that fails leaves nothing of its work behind, and the error names the engine.
/// let err = sqlassist::initialize_sql(&registry, "writer", |session| {
///     session.execute("INSERT INTO setting VALUES ('lang', 'fr')")?;
///     Err::<(), transaction::BoxError>("the lang table is missing".into())
/// })
/// .expect_err("the routine failed");
/// match &err {
///     Error::InitializeSql { engine, source } => {
///         assert_eq!((engine.as_str(), source.to_string().as_str()), ("writer", "the lang table is missing"))
///     }
///     other => panic!("unexpected: {other:?}"),
/// }
/// assert_eq!(registry.session("writer")?.query_i64("SELECT COUNT(*) FROM setting")?, 1);
/// # transaction::abort()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn initialize_sql<E>(
    registry: &Registry,
    engine: &str,
    setup: impl FnOnce(&Session) -> std::result::Result<(), E>,
) -> Result<()>
where
    E: Into<BoxError>,
{
    let failed = |source: BoxError| Error::InitializeSql {
        engine: engine.to_owned(),
        source,
    };
    let managed = registry.is_managed(engine)?;
    let session = registry.session(engine)?;
    if session.in_transaction() {
        return Err(failed(
            "the engine's session already has a transaction open on this thread".into(),
        ));
    }
    if let Ok(current) = transaction::get() {
        if current.resource_count() > 0 {
            return Err(failed(
                "this thread's transaction already holds other work; commit or abort it first"
                    .into(),
            ));
        }
    }
    let txn = transaction::begin().map_err(|e| failed(e.into()))?;
    let outcome = setup(&session).map_err(Into::into).and_then(|()| {
        if managed {
            txn.commit().map_err(BoxError::from)
        } else {
            session
                .commit()
                .map_err(BoxError::from)
                .and_then(|()| txn.commit().map_err(BoxError::from))
        }
    });
    match outcome {
        Ok(()) => Ok(()),
        Err(source) => {
            // Nothing of the routine may stay: roll back the session's work, whatever
            // state the transaction is in. Their own errors add nothing to `source`.
            if let Err(e) = txn.abort() {
                tracing::debug!(engine, error = %e, "abort after a failed setup routine");
            }
            if let Err(e) = session.rollback() {
                tracing::debug!(engine, error = %e, "rollback after a failed setup routine");
            }
            Err(failed(source))
        }
    }
}
