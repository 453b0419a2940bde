//! What the layer reports: metrics through the `metrics` facade, and a snapshot of the
//! engines and units of work that an application can serve.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use crate::layer::TmLayer;

/// Counter of finished requests, labelled `outcome`: `committed`, `aborted` (veto or
/// doom), `error` (the closure's `Err`), `commit_failed`, `heuristic` (a commit that
/// failed after the decision: some resources committed), `panicked`, `overloaded`.
pub const REQUESTS: &str = "sqlassist_requests_total";
/// Counter of attempts run again after a transient failure.
pub const RETRIES: &str = "sqlassist_retries_total";
/// Histogram of the commit's duration, in seconds (all phases, all resources).
pub const COMMIT_SECONDS: &str = "sqlassist_commit_seconds";
/// Histogram of the wait for a slot of the gate, in seconds.
pub const GATE_WAIT_SECONDS: &str = "sqlassist_gate_wait_seconds";
/// Histogram of the wait of each pool checkout for a connection, in seconds, labelled
/// `engine` (the engine's name in the registry); zero when a connection was idle.
pub const POOL_WAIT_SECONDS: &str = "sqlassist_pool_wait_seconds";

/// Reports each checkout's wait of every engine of `registry` as [`POOL_WAIT_SECONDS`].
pub(crate) fn report_pool_waits(registry: &sqlassist::Registry) {
    for name in registry.names() {
        if let Ok(engine) = registry.engine(name) {
            let name = name.to_owned();
            // Looked up at each checkout: the recorder may be installed after the layer.
            engine.on_pool_wait(move |waited| {
                metrics::histogram!(POOL_WAIT_SECONDS, "engine" => name.clone())
                    .record(waited.as_secs_f64());
            });
        }
    }
}

pub(crate) fn finished(outcome: &'static str) {
    metrics::counter!(REQUESTS, "outcome" => outcome).increment(1);
}

/// One engine, as [`Snapshot`] shows it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EngineSnapshot {
    /// The engine's name in the registry.
    pub name: String,
    /// `writer`, `reader` or `other`: its part in the layer's routes.
    pub role: &'static str,
    /// `postgresql`, `mysql` or `sqlite`.
    pub backend: String,
    /// The URL with its password redacted.
    pub url: String,
    /// Whether its sessions join the request's transaction.
    pub managed: bool,
    /// Whether the engine is read-only.
    pub read_only: bool,
    /// Connections open, in use or idle.
    pub connections: u32,
    /// Connections idle in the pool.
    pub idle: u32,
    /// Sessions open on the engine right now, on every thread.
    pub open_sessions: u64,
    /// The units of work holding those sessions (`METHOD /path`), one entry per session
    /// opened inside a unit of work of a layer (sessions opened elsewhere are counted in
    /// `open_sessions` only).
    pub held_by: Vec<String>,
}

/// One unit of work in flight, as [`Snapshot`] shows it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct UnitSnapshot {
    /// The request's method.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// The attempt running, from 1.
    pub attempt: u32,
    /// The current transaction's id, once begun.
    pub transaction: Option<String>,
    /// `work` (the closure runs), `committing`, `aborting` or `cleanup`.
    pub phase: &'static str,
    /// Sessions open on the unit's thread when the phase began.
    pub open_sessions: usize,
}

/// The units of work of one layer, by a number of their own.
#[derive(Debug, Default)]
pub(crate) struct Units {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, UnitSnapshot>>,
}

impl Units {
    fn running(&self) -> MutexGuard<'_, BTreeMap<u64, UnitSnapshot>> {
        // Every update is one insert, change or remove: the map is whole after a panic.
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a unit; it is listed until the returned guard drops.
    pub(crate) fn start(&self, method: String, path: String) -> UnitGuard<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.running().insert(
            id,
            UnitSnapshot {
                method,
                path,
                attempt: 0,
                transaction: None,
                phase: "work",
                open_sessions: 0,
            },
        );
        UnitGuard { units: self, id }
    }
}

/// Lists a unit of work while it lives.
pub(crate) struct UnitGuard<'a> {
    units: &'a Units,
    id: u64,
}

impl UnitGuard<'_> {
    /// Records the unit's attempt, transaction and phase.
    pub(crate) fn phase(&self, attempt: u32, transaction: Option<String>, phase: &'static str) {
        if let Some(unit) = self.units.running().get_mut(&self.id) {
            unit.attempt = attempt;
            if transaction.is_some() {
                unit.transaction = transaction;
            }
            unit.phase = phase;
            unit.open_sessions = sqlassist::open_sessions();
        }
    }
}

impl Drop for UnitGuard<'_> {
    fn drop(&mut self) {
        self.units.running().remove(&self.id);
    }
}

/// The state of a layer's engines and units of work at one moment: serve it as JSON
/// (it is `Serialize`) or render it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// Every engine of the registry, by name.
    pub engines: Vec<EngineSnapshot>,
    /// Units of work holding a slot of the gate (running, or about to).
    pub units_in_flight: usize,
    /// The units of work running, with their transaction and its phase.
    pub units: Vec<UnitSnapshot>,
    /// The gate's bound on units in flight.
    pub max_in_flight: usize,
    /// Transactions of this process between their first PREPARE and their end, when a
    /// decision log is configured (else `None`): branches that would be in doubt if the
    /// process died now.
    pub in_doubt: Option<usize>,
}

impl TmLayer {
    /// A snapshot of the engines (URL redacted, pool state) and of the units of work.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry};
    /// use sqlassist_axum::{Routes, TmLayer};
    ///
    /// let mut registry = Registry::new();
    /// let engine = Engine::new(EngineOptions::new(DatabaseUrl::parse("sqlite://")?))?;
    /// registry.init_engine("writer", engine, InitOptions::new().managed(true))?;
    /// let snapshot = TmLayer::new(Arc::new(registry), Routes::new("writer")).snapshot();
    /// assert_eq!(snapshot.engines[0].role, "writer");
    /// assert_eq!((snapshot.units_in_flight, snapshot.max_in_flight), (0, 1));
    /// assert_eq!(snapshot.in_doubt, None); // no decision log
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        let cfg = self.config();
        let registry = &cfg.registry;
        let engines = registry
            .names()
            .filter_map(|name| {
                let engine = registry.engine(name).ok()?;
                let pool = engine.pool_state();
                let role = if name == cfg.routes.writer {
                    "writer"
                } else if cfg.routes.readers.iter().any(|r| r == name) {
                    "reader"
                } else {
                    "other"
                };
                Some(EngineSnapshot {
                    name: name.to_owned(),
                    role,
                    backend: engine.backend().to_string(),
                    url: engine.url().redacted().to_owned(),
                    managed: registry.is_managed(name).unwrap_or(false),
                    read_only: engine.is_read_only(),
                    connections: pool.connections,
                    idle: pool.idle,
                    open_sessions: engine.open_sessions(),
                    held_by: engine.session_holders(),
                })
            })
            .collect();
        Snapshot {
            engines,
            units_in_flight: cfg
                .max_in_flight
                .saturating_sub(cfg.gate.available_permits()),
            units: cfg.units.running().values().cloned().collect(),
            max_in_flight: cfg.max_in_flight,
            in_doubt: registry
                .decision_log()
                .map(|_| transaction::in_flight().len()),
        }
    }
}
