//! The presence lock: one process per node id on every managed database.
//!
//! The decision log's lock file keeps a second process off one log directory, but two
//! processes configured with one `sqlassist.node_id` and different log directories would
//! each take the other's prepared branches for their own and roll them back. So, before
//! its first recovery pass on an engine, a process takes a session-level lock named after
//! its node id on that engine's database (PostgreSQL `pg_try_advisory_lock`, MariaDB and
//! MySQL `GET_LOCK`), on a connection of its own kept for the process's lifetime; a lock
//! held by another session means another process runs with this node id, and recovery
//! refuses to act on that engine. It detects a duplicate node id on a shared database; it
//! cannot see one on databases the two processes do not share. SQLite has no prepared
//! branches and needs no lock.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::backend::Backend;
use crate::branch::NodeId;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// How long a lock held by another session is asked for again before the node id counts
/// as in use.
const RELEASE_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// A held presence lock: the connection that holds it.
enum Held {
    #[cfg(feature = "postgres")]
    Pg(#[allow(dead_code)] diesel::PgConnection),
    #[cfg(feature = "mysql")]
    Mysql(#[allow(dead_code)] diesel::MysqlConnection),
    /// Nothing to hold: the backend has no prepared branches, or another engine of this
    /// process holds the lock on the same database.
    Nothing,
}

/// The presence locks of one registry, by engine name. Released when dropped (the
/// connections close).
#[derive(Default)]
pub(crate) struct Presence {
    enabled: bool,
    held: Mutex<BTreeMap<String, Held>>,
    /// The server sessions (backend, id) of this registry's lock connections, entered
    /// before each asks for its lock: a lock held by one of them is this registry's own.
    sessions: Mutex<Vec<(Backend, i64)>>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.lock();
        f.debug_struct("Presence")
            .field("enabled", &self.enabled)
            .field("engines", &held.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A lock key of 64 bits for `node` (FNV-1a: stable across processes and versions).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn key(node: &NodeId) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"sqlassist-presence:"
        .iter()
        .chain(node.as_str().as_bytes())
    {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

impl Presence {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            held: Mutex::default(),
            sessions: Mutex::default(),
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Vec<(Backend, i64)>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this registry holds the engine's presence lock (or needs none).
    pub(crate) fn holds(&self, name: &str) -> bool {
        !self.enabled || self.lock().contains_key(name)
    }

    /// Takes the presence lock of `node` on engine `name`, unless held already.
    ///
    /// # Errors
    ///
    /// [`Error::NodeInUse`] when another session holds it; [`Error::Connect`] or
    /// [`Error::Database`] when the lock cannot be asked for.
    pub(crate) fn ensure(&self, name: &str, engine: &Engine, node: &NodeId) -> Result<()> {
        // The session of a process that was just killed may take a moment to end on the
        // server: a restarted process asks again for a little while before it gives up.
        let deadline = std::time::Instant::now() + RELEASE_GRACE;
        loop {
            match self.try_ensure(name, engine, node) {
                Err(Error::NodeInUse { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(RELEASE_GRACE / 20);
                }
                other => return other,
            }
        }
    }

    fn try_ensure(&self, name: &str, engine: &Engine, node: &NodeId) -> Result<()> {
        if self.holds(name) {
            return Ok(());
        }
        let backend = engine.backend();
        let mut mine = None;
        let outcome = take(engine, node, |id| {
            mine = Some(id);
            self.sessions().push((backend, id));
        });
        let forget_mine = || {
            if let Some(id) = mine {
                self.sessions().retain(|s| *s != (backend, id));
            }
        };
        let held = match outcome {
            Ok(held) => held,
            Err(Taken::InUse(holder)) => {
                forget_mine();
                // Another engine of this registry on the same database holds it.
                let ours = holder.is_some_and(|h| self.sessions().contains(&(backend, h)));
                if !ours {
                    return Err(Error::NodeInUse {
                        node: node.as_str().to_owned(),
                        engine: name.to_owned(),
                        holder: match (holder, backend) {
                            (Some(pid), Backend::Postgres) => format!("server backend pid {pid}"),
                            (Some(id), _) => format!("server connection id {id}"),
                            (None, _) => "holder unknown".to_owned(),
                        },
                    });
                }
                Held::Nothing
            }
            Err(Taken::Failed(e)) => {
                forget_mine();
                return Err(e);
            }
        };
        tracing::info!(
            engine = name,
            node = node.as_str(),
            "presence lock of the node id taken"
        );
        self.lock().insert(name.to_owned(), held);
        Ok(())
    }
}

#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
enum Taken {
    /// Held by another session (its id, when the server tells).
    InUse(Option<i64>),
    Failed(Error),
}

impl From<Error> for Taken {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

/// Opens a connection outside the pool and takes the lock on it, telling `me` the
/// connection's server session id before asking.
fn take(engine: &Engine, node: &NodeId, me: impl FnOnce(i64)) -> std::result::Result<Held, Taken> {
    match engine.backend() {
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let mut conn = engine.presence_connection::<diesel::PgConnection>()?;
            match crate::backend::postgres::presence_lock(&mut conn, key(node), me) {
                Ok(None) => Ok(Held::Pg(conn)),
                Ok(Some(holder)) => Err(Taken::InUse(holder)),
                Err(e) => Err(Taken::Failed(engine.plain_database_error(e))),
            }
        }
        #[cfg(feature = "mysql")]
        Backend::Mysql => {
            let mut conn = engine.presence_connection::<diesel::MysqlConnection>()?;
            match crate::backend::mysql::presence_lock(&mut conn, node.as_str(), me) {
                Ok(None) => Ok(Held::Mysql(conn)),
                Ok(Some(holder)) => Err(Taken::InUse(holder)),
                Err(e) => Err(Taken::Failed(engine.plain_database_error(e))),
            }
        }
        _ => {
            let _ = (node, me);
            Ok(Held::Nothing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_depends_on_the_node_only_and_is_stable() {
        let a = NodeId::new("orders-0").expect("valid");
        let b = NodeId::new("orders-1").expect("valid");
        assert_eq!(key(&a), key(&NodeId::new("orders-0").expect("valid")));
        assert_ne!(key(&a), key(&b));
        // Fixed by the algorithm (FNV-1a 64 of `sqlassist-presence:orders-0`, computed
        // apart): processes running other versions of the library must take the same lock.
        assert_eq!(key(&a), -4_905_672_929_396_922_668);
    }
}
