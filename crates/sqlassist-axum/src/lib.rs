//! A transaction per request for [axum]: each request's database work runs as one
//! closure on a blocking thread, inside a transaction of its own, committed before the
//! response leaves (pyramid_tm for Rust), with reads routed to replicas and
//! read-your-writes across requests.
//!
//! sqlassist's transactions and sessions are bound to their thread, while axum handler
//! futures must be `Send`. So a handler hands the whole unit of work to
//! [`Tm::run`]: a `Fn` closure that tokio runs with `spawn_blocking`, where the
//! transaction begins, the closure's sessions join it, its result becomes a response,
//! the [commit veto](default_commit_veto) looks at that response, and the transaction
//! commits or aborts. Nothing thread-bound ever crosses an `.await`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{routing::post, Router};
//! use sqlassist::{Registry, Settings};
//! use sqlassist_axum::{Attempt, DbError, Routes, Tm, TmLayer};
//!
//! async fn create(tm: Tm) -> axum::response::Response {
//!     tm.run(|att: &Attempt<'_>| -> Result<&'static str, DbError> {
//!         att.writer()?.execute("INSERT INTO notes (body) VALUES ('hello')")?;
//!         Ok("created")
//!     })
//!     .await
//! }
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = Settings::from_ini_file("app.ini", "app:main")?;
//! let registry = Arc::new(Registry::from_settings(&settings)?);
//! let layer = TmLayer::new(registry, Routes::new("writer").readers(["reader"])).attempts(3);
//! let app = Router::new().route("/notes", post(create)).layer(layer);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # What happens to a request
//!
//! | the closure | the transaction | the client gets |
//! |---|---|---|
//! | `Ok(r)`, veto accepts, not doomed | commits (two-phase over every managed session) | `r`, after the commit |
//! | `Ok(r)`, 4xx/5xx or `x-tm: abort` (default veto), or doomed | aborts | `r` |
//! | `Err(e)`, transient, attempts left ([`TmLayer::attempts`]) | aborts; the closure runs again in a new transaction | — |
//! | `Err(e)` otherwise | aborts | `e`'s response |
//! | commit fails | aborted (retried when transient and attempts left) | the [error mapper](TmLayer::error_response)'s response, never `r` |
//! | panics | aborts on that thread | 500 |
//! | no slot within the wait time | never begins | 503 |
//! | client disconnects | unaffected: the closure and its commit run to the end | nothing |
//!
//! Every session is closed after every attempt, so each connection is back in its pool
//! before the response leaves. Units in flight are bounded by a semaphore sized to the
//! smallest pool among the routed engines, so a unit never waits inside a pool.
//!
//! # Routing and read-your-writes
//!
//! [`Attempt::writer`] and [`Attempt::reader`] choose the engine by intent; [`Routes`]
//! names the writer and the readers (balanced round robin), a [`Router`] adds the
//! application's own rule per key (table, tenant). After a write, the same attempt reads
//! from the writer. Across requests, the response to a write carries the writer's WAL
//! position (PostgreSQL), and the client's next read is served by a replica only once that
//! replica has replayed up to it; [`Routes`] documents the cost.
//!
//! # Observability
//!
//! Each unit of work runs in a `sqlassist.request` tracing span (method, path) whose
//! parent is the span of the handler that called [`Tm::run`], with one `sqlassist.attempt`
//! span per attempt (number, outcome). Counters and histograms go through the `metrics`
//! facade under the names [`REQUESTS`], [`RETRIES`], [`COMMIT_SECONDS`],
//! [`GATE_WAIT_SECONDS`] and [`POOL_WAIT_SECONDS`] (per engine: the layer sets each
//! engine's [`Engine::on_pool_wait`](sqlassist::Engine::on_pool_wait) observer); install any `metrics` recorder (the example renders them in
//! Prometheus text format). [`TmLayer::snapshot`] gives the engines, their pools and the
//! units in flight as a value to serve.
//!
//! # Limits
//!
//! - The database part of a handler is one synchronous closure; async work belongs before
//!   or after [`Tm::run`].
//! - A streamed response body is produced after the commit, when the sessions are closed:
//!   it must not use them.
//! - The closure may run more than once ([`TmLayer::attempts`]): side effects that are not
//!   transactional (mail, HTTP calls) run again.

#![deny(missing_docs)]

mod error;
mod layer;
mod observe;
mod route;
mod unit;

pub use error::{DbError, TmError};
pub use layer::{default_commit_veto, RequestMeta, Tm, TmLayer, TmRejection, TmService, TM_HEADER};
pub use observe::{
    EngineSnapshot, Snapshot, UnitSnapshot, COMMIT_SECONDS, GATE_WAIT_SECONDS, POOL_WAIT_SECONDS,
    REQUESTS, RETRIES,
};
pub use route::{ReaderDown, Router, Routes, WalPosition, POSITION_NAME};
pub use unit::Attempt;
