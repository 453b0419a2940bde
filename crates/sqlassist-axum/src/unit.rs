//! The unit of work: one closure on a blocking thread, in a transaction of its own.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use sqlassist::{Backend, Session};
use transaction::{TransactionManager, Transient};

use crate::error::TmError;
use crate::layer::{Config, RequestMeta, Tm, TM_HEADER};
use crate::observe;
use crate::route::{ReaderDown, Sent, WalPosition, POSITION_NAME};

/// The writer's WAL position, as a number (`pg_lsn` minus `0/0`).
const CURRENT_POSITION_SQL: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint";
/// How far a replica has replayed; a server that is not in recovery is never behind.
const REPLAYED_POSITION_SQL: &str = "SELECT CASE WHEN pg_is_in_recovery() \
     THEN COALESCE((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0) \
     ELSE 9223372036854775807 END";

impl Tm {
    /// Runs `work` as this request's unit of work and returns the response to send.
    ///
    /// On a blocking thread (`spawn_blocking`), inside a transaction of a fresh explicit
    /// [`TransactionManager`] (the registry's, with its decision log) installed for the
    /// closure's duration:
    ///
    /// - `Ok(r)`: `r` becomes a response; the transaction aborts when it is doomed or the
    ///   layer's veto refuses the response (default: 4xx/5xx or `x-tm: abort`), else it
    ///   commits; the response is sent only once the commit has succeeded. A failed commit
    ///   is answered through the layer's error mapper, or retried when transient and
    ///   attempts remain.
    /// - `Err(e)`: the transaction aborts; when `e` is transient and attempts remain,
    ///   `work` runs again in a fresh transaction; else `e` becomes the response.
    /// - a panic: the transaction aborts on that thread; the answer is 500 (the mapper's
    ///   [`TmError::Panicked`]).
    ///
    /// Every session the attempt opened is closed after each attempt, whatever happened,
    /// so its connections are back in their pools. The closure keeps running when the
    /// client goes away (a blocking task cannot be cancelled): a commit is never cut
    /// between its two phases. Before the closure runs, the request waits for a slot of
    /// the layer's gate; past the layer's wait time it is answered 503.
    pub async fn run<F, R, E>(self, work: F) -> Response
    where
        F: Fn(&Attempt<'_>) -> Result<R, E> + Send + 'static,
        R: IntoResponse,
        E: IntoResponse + Transient + fmt::Display,
    {
        let Tm { cfg, meta } = self;
        let started = Instant::now();
        let permit = match tokio::time::timeout(cfg.wait, cfg.gate.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                observe::finished("overloaded");
                let error = TmError::Overloaded {
                    waited: started.elapsed(),
                };
                tracing::warn!(uri = %meta.uri, error = %error, "request refused");
                return (cfg.error_response)(&error);
            }
        };
        metrics::histogram!(observe::GATE_WAIT_SECONDS).record(started.elapsed().as_secs_f64());
        let mapper = cfg.error_response.clone();
        let parent = tracing::Span::current();
        let task = tokio::task::spawn_blocking(move || {
            // The permit lives as long as the work, not as long as the request's future.
            let _permit = permit;
            let span = tracing::info_span!(parent: &parent, "sqlassist.request", method = %meta.method, path = %meta.uri.path());
            let _entered = span.enter();
            let _holder =
                sqlassist::hold_sessions_as(&format!("{} {}", meta.method, meta.uri.path()));
            unit_of_work(&cfg, &meta, &work)
        });
        match task.await {
            Ok(response) => response,
            Err(e) => {
                tracing::error!(error = %e, "the unit of work did not finish");
                mapper(&TmError::Panicked)
            }
        }
    }
}

/// One try of the closure, as the closure sees it: its number, the request, and the
/// sessions chosen by intent (read or write).
pub struct Attempt<'a> {
    number: u32,
    attempts: u32,
    cfg: &'a Config,
    meta: &'a RequestMeta,
    manager: &'a TransactionManager,
    wrote: Cell<bool>,
    reader: RefCell<Option<String>>,
}

impl fmt::Debug for Attempt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("number", &self.number)
            .field("attempts", &self.attempts)
            .field("wrote", &self.wrote.get())
            .finish_non_exhaustive()
    }
}

impl Attempt<'_> {
    /// This attempt's number, from 1.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Whether no attempt follows this one.
    pub fn is_last(&self) -> bool {
        self.number >= self.attempts
    }

    /// The request being served.
    pub fn request(&self) -> &RequestMeta {
        self.meta
    }

    /// The transaction manager of this unit of work (also the thread's current one while
    /// the closure runs).
    pub fn manager(&self) -> &TransactionManager {
        self.manager
    }

    /// Dooms the transaction: the response is sent as it is, and nothing commits.
    ///
    /// # Errors
    ///
    /// [`transaction::Error`] when the transaction can no longer be doomed.
    pub fn doom(&self) -> Result<(), transaction::Error> {
        self.manager.doom()
    }

    /// This thread's session on the engine `name`, whatever the routes say.
    ///
    /// # Errors
    ///
    /// [`sqlassist::Error::UnknownEngine`] when the registry has no such engine.
    pub fn session(&self, name: &str) -> sqlassist::Result<Session> {
        self.cfg.registry.session(name)
    }

    /// The writer's session. Every read of this attempt after this call goes to the
    /// writer too, and the response carries the writer's position after the commit.
    ///
    /// # Errors
    ///
    /// As [`session`](Self::session).
    pub fn writer(&self) -> sqlassist::Result<Session> {
        self.wrote.set(true);
        self.session(&self.cfg.routes.writer)
    }

    /// A session for reading: a reader engine when one can serve this request, else the
    /// writer (see [`Routes`](crate::Routes) for the rules and their cost). The choice is
    /// made once per attempt.
    ///
    /// # Errors
    ///
    /// With [`ReaderDown::Fail`], the error of the last reader tried when none answers;
    /// else as [`session`](Self::session).
    pub fn reader(&self) -> sqlassist::Result<Session> {
        let routes = &self.cfg.routes;
        if self.wrote.get() || routes.readers.is_empty() {
            return self.session(&routes.writer);
        }
        if let Some(name) = self.reader.borrow().as_deref() {
            return self.session(name);
        }
        let position = match (routes.read_your_writes, self.meta.sent) {
            (true, Sent::Garbled) => return self.session(&routes.writer),
            (true, Sent::Position(p)) => Some(p),
            _ => None,
        };
        let mut last_error = None;
        for name in routes.reader_order() {
            let session = self.session(name)?;
            let is_pg = session.engine().backend() == Backend::Postgres;
            let probe = match position {
                Some(p) if is_pg => session
                    .query_i64(REPLAYED_POSITION_SQL)
                    .map(|replayed| replayed >= 0 && replayed.unsigned_abs() >= p.0),
                _ if routes.reader_down == ReaderDown::UseWriter => {
                    session.query_i64("SELECT 1").map(|_| true)
                }
                _ => Ok(true),
            };
            match probe {
                Ok(true) => {
                    *self.reader.borrow_mut() = Some(name.to_owned());
                    return Ok(session);
                }
                Ok(false) => {
                    tracing::debug!(reader = name, position = %position.unwrap_or(WalPosition(0)), "reader behind the client's last write");
                    let _ = session.close();
                }
                Err(e) => {
                    tracing::warn!(reader = name, error = %e, "reader unavailable");
                    let _ = session.close();
                    last_error = Some(e);
                }
            }
        }
        match last_error {
            Some(e) if routes.reader_down == ReaderDown::Fail => Err(e),
            _ => self.session(&routes.writer),
        }
    }

    /// The session for reading `key`: the router's engine when it names one, else
    /// [`reader`](Self::reader).
    ///
    /// # Errors
    ///
    /// As [`reader`](Self::reader).
    pub fn reader_for(&self, key: &str) -> sqlassist::Result<Session> {
        match self
            .cfg
            .routes
            .router
            .as_ref()
            .and_then(|r| r.db_for_read(key))
        {
            Some(name) => self.session(&name),
            None => self.reader(),
        }
    }

    /// The session for writing `key`: the router's engine when it names one, else
    /// [`writer`](Self::writer).
    ///
    /// # Errors
    ///
    /// As [`session`](Self::session).
    pub fn writer_for(&self, key: &str) -> sqlassist::Result<Session> {
        match self
            .cfg
            .routes
            .router
            .as_ref()
            .and_then(|r| r.db_for_write(key))
        {
            Some(name) => {
                if name == self.cfg.routes.writer {
                    self.wrote.set(true);
                }
                self.session(&name)
            }
            None => self.writer(),
        }
    }
}

/// Closes this thread's sessions when dropped: after every attempt, also on a panic.
struct CloseSessions;

impl Drop for CloseSessions {
    fn drop(&mut self) {
        if let Err(e) = sqlassist::close_sessions() {
            tracing::error!(error = %e, "closing the sessions of a unit of work failed");
        }
    }
}

enum Step {
    Done(Response),
    Retry,
}

fn unit_of_work<F, R, E>(cfg: &Config, meta: &RequestMeta, work: &F) -> Response
where
    F: Fn(&Attempt<'_>) -> Result<R, E>,
    R: IntoResponse,
    E: IntoResponse + Transient + fmt::Display,
{
    // A thread of the blocking pool may have served another unit before: start clean.
    let _ = sqlassist::close_sessions();
    let unit = cfg
        .units
        .start(meta.method.to_string(), meta.uri.path().to_owned());
    let manager = cfg.registry.transaction_manager();
    manager.scope(|| {
        let mut number = 1;
        loop {
            match attempt(cfg, meta, &manager, work, number, &unit) {
                Step::Done(response) => return response,
                Step::Retry => {
                    tracing::info!(uri = %meta.uri, attempt = number, "transient failure; running the request's work again");
                    number += 1;
                }
            }
        }
    })
}

fn abort(manager: &TransactionManager) {
    if let Err(e) = manager.abort() {
        tracing::warn!(error = %e, "aborting the request's transaction failed");
    }
}

fn attempt<F, R, E>(
    cfg: &Config,
    meta: &RequestMeta,
    manager: &TransactionManager,
    work: &F,
    number: u32,
    unit: &observe::UnitGuard<'_>,
) -> Step
where
    F: Fn(&Attempt<'_>) -> Result<R, E>,
    R: IntoResponse,
    E: IntoResponse + Transient + fmt::Display,
{
    let _close = CloseSessions;
    let txn = match manager.begin() {
        Ok(txn) => txn,
        Err(e) => {
            tracing::error!(error = %e, "beginning the request's transaction failed");
            return Step::Done((cfg.error_response)(&TmError::Begin(e)));
        }
    };
    let _ = txn.note(&format!("{} {}", meta.method, meta.uri.path()));
    unit.phase(number, Some(txn.id().to_string()), "work");
    let phase = |name: &'static str| unit.phase(number, None, name);
    let att = Attempt {
        number,
        attempts: cfg.attempts,
        cfg,
        meta,
        manager,
        wrote: Cell::new(false),
        reader: RefCell::new(None),
    };
    let retry_left = number < cfg.attempts;
    let span = tracing::info_span!("sqlassist.attempt", number, outcome = tracing::field::Empty);
    let _entered = span.enter();
    let outcome_is = |outcome: &'static str| {
        span.record("outcome", outcome);
        if outcome == "retry" {
            metrics::counter!(observe::RETRIES).increment(1);
        } else {
            observe::finished(outcome);
        }
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        work(&att).map(|r| {
            let response = r.into_response();
            let vetoed = cfg.veto.as_ref().is_some_and(|veto| veto(&response));
            (response, vetoed)
        })
    }));
    match outcome {
        Err(_) => {
            tracing::error!(uri = %meta.uri, "the request's work panicked; its transaction is aborted");
            phase("aborting");
            abort(manager);
            outcome_is("panicked");
            Step::Done((cfg.error_response)(&TmError::Panicked))
        }
        Ok(Err(e)) => {
            // Asked before the abort, as zope's `run` asks.
            let transient = e.is_transient();
            phase("aborting");
            abort(manager);
            if transient && retry_left {
                outcome_is("retry");
                Step::Retry
            } else {
                tracing::debug!(error = %e, "the request's work failed; its transaction is aborted");
                outcome_is("error");
                Step::Done(e.into_response())
            }
        }
        Ok(Ok((mut response, vetoed))) => {
            response.headers_mut().remove(TM_HEADER);
            if vetoed || txn.is_doomed() {
                phase("aborting");
                abort(manager);
                outcome_is("aborted");
                return Step::Done(response);
            }
            phase("committing");
            let committing = Instant::now();
            let committed = manager.commit();
            metrics::histogram!(observe::COMMIT_SECONDS).record(committing.elapsed().as_secs_f64());
            match committed {
                Ok(()) => {
                    outcome_is("committed");
                    if att.wrote.get() && cfg.routes.read_your_writes {
                        attach_position(cfg, manager, &mut response);
                    }
                    Step::Done(response)
                }
                Err(e) => {
                    abort(manager);
                    if e.is_transient() && retry_left {
                        outcome_is("retry");
                        Step::Retry
                    } else {
                        outcome_is(if e.is_heuristic() {
                            "heuristic"
                        } else {
                            "commit_failed"
                        });
                        tracing::error!(uri = %meta.uri, error = %e, "the request's commit failed");
                        Step::Done((cfg.error_response)(&TmError::Commit(e)))
                    }
                }
            }
        }
    }
}

/// Puts the writer's WAL position after the commit on the response (header and cookie).
fn attach_position(cfg: &Config, manager: &TransactionManager, response: &mut Response) {
    let Ok(writer) = cfg.registry.session(&cfg.routes.writer) else {
        return;
    };
    if writer.engine().backend() != Backend::Postgres {
        return;
    }
    let position = manager
        .begin()
        .map_err(sqlassist::Error::from)
        .and_then(|_| writer.query_i64(CURRENT_POSITION_SQL));
    abort(manager);
    let position = match position {
        Ok(p) => WalPosition(p.unsigned_abs()),
        Err(e) => {
            // The commit stands; without a position, later reads may be stale.
            tracing::warn!(error = %e, "reading the writer's WAL position failed");
            return;
        }
    };
    let text = position.to_string();
    let cookie = format!(
        "{POSITION_NAME}={text}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        cfg.routes.max_age.as_secs()
    );
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&text) {
        headers.insert(POSITION_NAME, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        headers.append(http::header::SET_COOKIE, v);
    }
}
