//! The tower layer: configuration, the in-flight gate, and the `Tm` extractor.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{Request, StatusCode};
use sqlassist::Registry;
use tokio::sync::Semaphore;

use crate::error::TmError;
use crate::route::{sent_position, Routes, Sent};

type Veto = Arc<dyn Fn(&Response) -> bool + Send + Sync>;
type ErrorMapper = Arc<dyn Fn(&TmError) -> Response + Send + Sync>;

/// pyramid_tm's `default_commit_veto`: abort when the response says `x-tm: abort` (any
/// value other than `commit`), else when its status is 4xx or 5xx.
///
/// # Examples
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use http::StatusCode;
/// use sqlassist_axum::default_commit_veto;
///
/// assert!(!default_commit_veto(&StatusCode::OK.into_response()));
/// assert!(default_commit_veto(&StatusCode::UNPROCESSABLE_ENTITY.into_response()));
/// assert!(default_commit_veto(&([("x-tm", "abort")], "ok").into_response()));
/// assert!(!default_commit_veto(&(StatusCode::NOT_FOUND, [("x-tm", "commit")]).into_response()));
/// ```
pub fn default_commit_veto(response: &Response) -> bool {
    if let Some(value) = response.headers().get(TM_HEADER) {
        return value.as_bytes() != b"commit";
    }
    response.status().is_client_error() || response.status().is_server_error()
}

/// The response header a handler sets to force the decision: `commit` or `abort`.
pub const TM_HEADER: &str = "x-tm";

pub(crate) struct Config {
    pub(crate) registry: Arc<Registry>,
    pub(crate) routes: Routes,
    pub(crate) veto: Option<Veto>,
    pub(crate) attempts: u32,
    pub(crate) error_response: ErrorMapper,
    pub(crate) gate: Arc<Semaphore>,
    pub(crate) max_in_flight: usize,
    pub(crate) wait: Duration,
    pub(crate) units: Arc<crate::observe::Units>,
}

/// A tower layer that gives each request of the routes it wraps a [`Tm`]: one unit of
/// work on a blocking thread, in a transaction of its own, committed or aborted before
/// the response leaves.
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
/// let layer = TmLayer::new(Arc::new(registry), Routes::new("writer")).attempts(3);
/// assert_eq!(layer.max_in_flight(), 1); // an in-memory SQLite pool has one connection
/// let app: axum::Router = axum::Router::new().layer(layer);
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct TmLayer {
    cfg: Arc<Config>,
}

impl fmt::Debug for TmLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TmLayer")
            .field("routes", &self.cfg.routes)
            .field("veto", &self.cfg.veto.is_some())
            .field("attempts", &self.cfg.attempts)
            .field("max_in_flight", &self.cfg.max_in_flight)
            .field("wait", &self.cfg.wait)
            .finish_non_exhaustive()
    }
}

impl TmLayer {
    /// A layer over `registry`'s engines, routed by `routes`.
    ///
    /// Defaults: [`default_commit_veto`], 1 attempt, units in flight bounded by the
    /// smallest pool among the engines `routes` names (so a unit never waits inside a
    /// pool), 5 s wait for a slot, then 503.
    pub fn new(registry: Arc<Registry>, routes: Routes) -> Self {
        let names = std::iter::once(routes.writer.as_str())
            .chain(routes.readers.iter().map(String::as_str));
        let max_in_flight = names
            .filter_map(|name| registry.engine(name).ok())
            .map(effective_pool_size)
            .min()
            .unwrap_or(1)
            .max(1);
        crate::observe::report_pool_waits(&registry);
        TmLayer {
            cfg: Arc::new(Config {
                registry,
                routes,
                veto: Some(Arc::new(default_commit_veto)),
                attempts: 1,
                error_response: Arc::new(TmError::default_response),
                gate: Arc::new(Semaphore::new(max_in_flight)),
                max_in_flight,
                wait: Duration::from_secs(5),
                units: Arc::default(),
            }),
        }
    }

    fn map(self, f: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = Arc::try_unwrap(self.cfg).unwrap_or_else(|shared| Config {
            registry: shared.registry.clone(),
            routes: shared.routes.clone(),
            veto: shared.veto.clone(),
            attempts: shared.attempts,
            error_response: shared.error_response.clone(),
            gate: shared.gate.clone(),
            max_in_flight: shared.max_in_flight,
            wait: shared.wait,
            units: shared.units.clone(),
        });
        f(&mut cfg);
        TmLayer { cfg: Arc::new(cfg) }
    }

    /// Decides from the handler's response whether to abort (`true`) instead of
    /// committing. Default: [`default_commit_veto`].
    pub fn commit_veto(self, veto: impl Fn(&Response) -> bool + Send + Sync + 'static) -> Self {
        self.map(|c| c.veto = Some(Arc::new(veto)))
    }

    /// Commits every `Ok` response that is not doomed, whatever its status
    /// (pyramid_tm's behaviour without a veto).
    pub fn no_commit_veto(self) -> Self {
        self.map(|c| c.veto = None)
    }

    /// Runs the handler's closure up to `n` times, each in a fresh transaction, while it
    /// fails with a transient error (serialization failure, deadlock). Default: 1.
    /// 0 counts as 1.
    pub fn attempts(self, n: u32) -> Self {
        self.map(|c| c.attempts = n.max(1))
    }

    /// Maps failures of the unit of work (overload, commit failure, panic) to responses.
    /// Default: [`TmError::default_response`].
    pub fn error_response(self, f: impl Fn(&TmError) -> Response + Send + Sync + 'static) -> Self {
        self.map(|c| c.error_response = Arc::new(f))
    }

    /// Bounds the units of work in flight. Default: the smallest pool the routes name.
    pub fn max_in_flight(&self) -> usize {
        self.cfg.max_in_flight
    }

    /// Sets the bound on units of work in flight (at least 1).
    pub fn with_max_in_flight(self, n: usize) -> Self {
        let n = n.max(1);
        self.map(|c| {
            c.max_in_flight = n;
            c.gate = Arc::new(Semaphore::new(n));
        })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.cfg
    }

    /// How long a request waits for a slot before it is answered 503. Default: 5 s.
    pub fn wait(self, wait: Duration) -> Self {
        self.map(|c| c.wait = wait)
    }
}

/// The connections an engine's pool can hand out at once: an in-memory SQLite database
/// lives in its one connection, whatever the options say.
fn effective_pool_size(engine: &sqlassist::Engine) -> usize {
    if engine.url().is_memory() {
        return 1;
    }
    usize::try_from(engine.options().max_connections()).unwrap_or(usize::MAX)
}

impl<S> tower_layer::Layer<S> for TmLayer {
    type Service = TmService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TmService {
            inner,
            cfg: self.cfg.clone(),
        }
    }
}

/// The service [`TmLayer`] wraps around each route.
#[derive(Clone)]
pub struct TmService<S> {
    inner: S,
    cfg: Arc<Config>,
}

impl<S> fmt::Debug for TmService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TmService").finish_non_exhaustive()
    }
}

/// What the layer leaves in the request's extensions for [`Tm`] to take, once.
#[derive(Clone)]
struct Slot {
    cfg: Arc<Config>,
    taken: Arc<AtomicBool>,
}

impl<S, B> tower_service::Service<Request<B>> for TmService<S>
where
    S: tower_service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(Slot {
            cfg: self.cfg.clone(),
            taken: Arc::new(AtomicBool::new(false)),
        });
        self.inner.call(req)
    }
}

/// What the unit of work knows about its request.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The request method.
    pub method: http::Method,
    /// The request URI.
    pub uri: http::Uri,
    /// The request headers.
    pub headers: http::HeaderMap,
    pub(crate) sent: Sent,
}

/// The extractor of a request's unit of work; [`Tm::run`] runs it.
///
/// A request has one: a second `Tm` in the same request is refused (500), and a route
/// without [`TmLayer`] answers 500 naming the missing layer.
pub struct Tm {
    pub(crate) cfg: Arc<Config>,
    pub(crate) meta: RequestMeta,
}

impl fmt::Debug for Tm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tm")
            .field("method", &self.meta.method)
            .field("uri", &self.meta.uri)
            .finish_non_exhaustive()
    }
}

/// Why a [`Tm`] could not be extracted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TmRejection {
    /// The route is not wrapped in a [`TmLayer`].
    #[error("sqlassist_axum::TmLayer is not installed on this route")]
    MissingLayer,
    /// The request's `Tm` was already taken (a second `Tm` extractor).
    #[error("the request's sqlassist_axum::Tm was already taken")]
    AlreadyTaken,
}

impl IntoResponse for TmRejection {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "no unit of work for this request");
        (StatusCode::INTERNAL_SERVER_ERROR, format!("{self}\n")).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Tm {
    type Rejection = TmRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let slot = parts
            .extensions
            .get::<Slot>()
            .ok_or(TmRejection::MissingLayer)?;
        if slot.taken.swap(true, Ordering::AcqRel) {
            return Err(TmRejection::AlreadyTaken);
        }
        Ok(Tm {
            cfg: slot.cfg.clone(),
            meta: RequestMeta {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                headers: parts.headers.clone(),
                sent: sent_position(&parts.headers),
            },
        })
    }
}
