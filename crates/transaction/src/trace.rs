//! `tracing` spans for a commit and for each phase of each resource.
//!
//! A commit runs in a span `commit` (target `transaction::commit`, level INFO) with the
//! fields `transaction`, `resources`, and, when it closes, `duration_us` and `outcome`.
//! Each resource's vote, one-phase commit, finish and abort runs in a span `resource_phase`
//! (target `transaction::phase`, level INFO) with the fields `engine` (the resource's
//! [`sort_key`](crate::DataManager::sort_key), for sqlassist the engine's name), `gid` (its
//! [`branch_id`](crate::DataManager::branch_id), when it has one), `phase`, `transaction`,
//! and, when it closes, `duration_us` and `outcome`: `ok`, or the kind of error
//! (`transient`, `outcome_unknown`, `error`; for a commit also `heuristic`).
//!
//! A phase run on a worker thread (parallel phases) enters its span there around the
//! work; its duration runs from the start of the phase to the moment its outcome is known
//! on the transaction's thread.
//!
//! With no subscriber listening, a span costs a callsite check and nothing is computed for
//! its fields (no gid is built, no clock is read).

use std::rc::Rc;
use std::time::Instant;

use tracing::field::{display, Empty};
use tracing::{Level, Span};

use crate::{DataManager, Error, PhaseJob, ResourceError, Transaction};

/// The target of the phase spans.
pub(crate) const PHASE_TARGET: &str = "transaction::phase";

/// Whether a subscriber may want phase spans: when not, callers skip building them.
pub(crate) fn phases_enabled() -> bool {
    tracing::span_enabled!(target: PHASE_TARGET, Level::INFO)
}

/// The span of one phase of one resource, with the time it started (`None` when no
/// subscriber listens: then every method does nothing but run the work).
pub(crate) struct PhaseSpan {
    span: Span,
    start: Option<Instant>,
    /// Whether the gid was known when the span opened (else it is asked again at the
    /// end: a branch may get its id as it prepares).
    gid: bool,
}

/// Opens the span of `phase` for resource `r` in `txn`.
pub(crate) fn phase(txn: &Transaction, r: &Rc<dyn DataManager>, phase: &'static str) -> PhaseSpan {
    let span = tracing::span!(
        target: PHASE_TARGET,
        Level::INFO,
        "resource_phase",
        engine = Empty,
        gid = Empty,
        phase = phase,
        transaction = Empty,
        duration_us = Empty,
        outcome = Empty,
    );
    if span.is_disabled() {
        return PhaseSpan {
            span,
            start: None,
            gid: false,
        };
    }
    span.record("engine", r.sort_key());
    let gid = r.branch_id(txn);
    if let Some(gid) = &gid {
        span.record("gid", gid.as_str());
    }
    span.record("transaction", display(txn.id()));
    PhaseSpan {
        span,
        start: Some(Instant::now()),
        gid: gid.is_some(),
    }
}

/// The phase spans of the resources of `resources` that `wanted` selects (`None` for the
/// others), or nothing at all when no subscriber listens.
#[inline]
pub(crate) fn phases(
    txn: &Transaction,
    resources: &[Rc<dyn DataManager>],
    phase_name: &'static str,
    wanted: impl Fn(usize) -> bool,
) -> Vec<Option<PhaseSpan>> {
    if !txn.phase_spans() {
        return Vec::new();
    }
    resources
        .iter()
        .enumerate()
        .map(|(i, r)| wanted(i).then(|| phase(txn, r, phase_name)))
        .collect()
}

impl PhaseSpan {
    /// Runs `work` inside the span.
    pub(crate) fn in_scope<T>(&self, work: impl FnOnce() -> T) -> T {
        if self.start.is_none() {
            return work();
        }
        self.span.in_scope(work)
    }

    /// `job`, entering the span around its work on whichever thread runs it.
    pub(crate) fn wrap(&self, job: PhaseJob) -> PhaseJob {
        if self.start.is_none() {
            return job;
        }
        job.in_span(self.span.clone())
    }

    /// Records the duration, the outcome and (if it was not known at the start) the gid of
    /// `r`, and closes the span.
    pub(crate) fn end<T>(
        self,
        txn: &Transaction,
        r: &Rc<dyn DataManager>,
        outcome: &Result<T, ResourceError>,
    ) {
        if let Some(start) = self.start {
            if !self.gid {
                if let Some(gid) = r.branch_id(txn) {
                    self.span.record("gid", gid.as_str());
                }
            }
            record_end(&self.span, start, resource_outcome(outcome));
        }
    }
}

/// Runs `work` in the span of `phase` for `r`, recording its outcome.
#[inline]
pub(crate) fn run<T>(
    txn: &Transaction,
    r: &Rc<dyn DataManager>,
    phase_name: &'static str,
    work: impl FnOnce() -> Result<T, ResourceError>,
) -> Result<T, ResourceError> {
    if !txn.phase_spans() {
        return work();
    }
    run_in_span(txn, r, phase_name, work)
}

fn run_in_span<T>(
    txn: &Transaction,
    r: &Rc<dyn DataManager>,
    phase_name: &'static str,
    work: impl FnOnce() -> Result<T, ResourceError>,
) -> Result<T, ResourceError> {
    let span = phase(txn, r, phase_name);
    let outcome = span.in_scope(work);
    span.end(txn, r, &outcome);
    outcome
}

/// The span of a whole commit.
pub(crate) struct CommitSpan {
    span: Span,
    start: Option<Instant>,
}

/// Opens the span of the commit of `txn`.
pub(crate) fn commit(txn: &Transaction) -> CommitSpan {
    let span = tracing::span!(
        target: "transaction::commit",
        Level::INFO,
        "commit",
        transaction = Empty,
        resources = Empty,
        duration_us = Empty,
        outcome = Empty,
    );
    if span.is_disabled() {
        return CommitSpan { span, start: None };
    }
    span.record("transaction", display(txn.id()));
    span.record("resources", txn.resource_count());
    CommitSpan {
        span,
        start: Some(Instant::now()),
    }
}

impl CommitSpan {
    /// Runs `work` inside the span.
    pub(crate) fn in_scope<T>(&self, work: impl FnOnce() -> T) -> T {
        if self.start.is_none() {
            return work();
        }
        self.span.in_scope(work)
    }

    /// Records the duration and the outcome, and closes the span.
    pub(crate) fn end(self, outcome: &Result<(), Error>) {
        if let Some(start) = self.start {
            let kind = match outcome {
                Ok(()) => "ok",
                Err(e) if e.is_heuristic() => "heuristic",
                Err(Error::OutcomeUnknown { .. }) => "outcome_unknown",
                Err(e) if e.is_transient() => "transient",
                Err(_) => "error",
            };
            record_end(&self.span, start, kind);
        }
    }
}

fn resource_outcome<T>(outcome: &Result<T, ResourceError>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(e) if e.is_outcome_unknown() => "outcome_unknown",
        Err(e) if e.is_transient() => "transient",
        Err(_) => "error",
    }
}

fn record_end(span: &Span, start: Instant, outcome: &'static str) {
    let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.record("duration_us", micros);
    span.record("outcome", outcome);
}

/// Runs `work` in the span at `i` of `spans` (from [`phases`]), if there is one.
#[inline]
pub(crate) fn in_slot<T>(spans: &[Option<PhaseSpan>], i: usize, work: impl FnOnce() -> T) -> T {
    match spans.get(i) {
        Some(Some(span)) => span.in_scope(work),
        _ => work(),
    }
}

/// `job` wrapped in the span at `i` of `spans` (from [`phases`]), if there is one.
#[inline]
pub(crate) fn wrap_slot(spans: &[Option<PhaseSpan>], i: usize, job: PhaseJob) -> PhaseJob {
    match spans.get(i) {
        Some(Some(span)) => span.wrap(job),
        _ => job,
    }
}

/// Closes every span of `spans` whose outcome is in `outcomes` (same indices).
pub(crate) fn end_slots<T>(
    txn: &Transaction,
    resources: &[Rc<dyn DataManager>],
    spans: Vec<Option<PhaseSpan>>,
    outcomes: &[Option<Result<T, ResourceError>>],
) {
    for ((span, outcome), r) in spans.into_iter().zip(outcomes).zip(resources) {
        if let (Some(span), Some(outcome)) = (span, outcome) {
            span.end(txn, r, outcome);
        }
    }
}
