//! The `tracing` spans of a commit: one for the commit, one per resource per phase, with
//! the resource's key and branch id, the phase, the duration and the outcome; a phase run
//! on a worker thread is entered there.

// A panic is how a test reports failure: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use transaction::testing::spans::{CapturedSpan, SpanCapture};
use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
use transaction::TransactionManager;

fn phase_spans(closed: &[CapturedSpan]) -> Vec<(String, String, String)> {
    let mut spans: Vec<_> = closed
        .iter()
        .filter(|s| s.name == "resource_phase")
        .map(|s| {
            (
                s.field("engine").unwrap_or("").to_owned(),
                s.field("phase").unwrap_or("").to_owned(),
                s.field("outcome").unwrap_or("").to_owned(),
            )
        })
        .collect();
    spans.sort();
    spans
}

#[test]
fn a_two_phase_commit_has_a_span_per_resource_and_phase_inside_the_commit_span() {
    let capture = SpanCapture::new();
    let journal = Journal::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal);
    let manager = TransactionManager::builder().parallel_phases(false).build();
    let id = tracing::subscriber::with_default(capture.clone(), || {
        let txn = manager.begin().unwrap();
        txn.join(a.clone()).unwrap();
        txn.join(b.clone()).unwrap();
        let id = txn.id();
        manager.commit().unwrap();
        id
    });
    let closed = capture.closed();
    let ok = |e: &str, p: &str| (e.to_owned(), p.to_owned(), "ok".to_owned());
    assert_eq!(
        phase_spans(&closed),
        vec![
            ok("a", "finish"),
            ok("a", "vote"),
            ok("b", "finish"),
            ok("b", "vote")
        ]
    );
    for span in closed.iter().filter(|s| s.name == "resource_phase") {
        let engine = span.field("engine").unwrap();
        assert_eq!(span.field("gid"), Some(format!("{id}:{engine}").as_str()));
        assert_eq!(span.field("transaction"), Some(id.to_string().as_str()));
        assert!(span.field("duration_us").unwrap().parse::<u64>().is_ok());
        assert_eq!(span.parent, Some("commit"));
        assert_eq!(span.entered_on.len(), 1);
    }
    let commit: Vec<_> = closed.iter().filter(|s| s.name == "commit").collect();
    assert_eq!(commit.len(), 1);
    assert_eq!(commit[0].field("outcome"), Some("ok"));
    assert_eq!(commit[0].field("resources"), Some("2"));
    assert!(commit[0]
        .field("duration_us")
        .unwrap()
        .parse::<u64>()
        .is_ok());
}

#[test]
fn a_lone_writer_commits_in_one_phase_and_a_failed_vote_reports_its_error_kind() {
    let capture = SpanCapture::new();
    let journal = Journal::new();
    let manager = TransactionManager::builder().parallel_phases(false).build();
    tracing::subscriber::with_default(capture.clone(), || {
        let one =
            ScriptedDataManager::new("solo", Kind::TwoPhase, &journal).with_one_phase_commit();
        manager.begin().unwrap().join(one).unwrap();
        manager.commit().unwrap();

        let good = ScriptedDataManager::new("good", Kind::TwoPhase, &journal);
        let bad = ScriptedDataManager::new("m_bad", Kind::TwoPhase, &journal)
            .transient()
            .fail_on(Call::TpcVote);
        let txn = manager.begin().unwrap();
        txn.join(good).unwrap();
        txn.join(bad).unwrap();
        assert!(manager.commit().is_err());
        manager.abort().unwrap();
    });
    let closed = capture.closed();
    let spans = phase_spans(&closed);
    let has = |e: &str, p: &str, o: &str| spans.contains(&(e.into(), p.into(), o.into()));
    assert!(has("solo", "one_phase_commit", "ok"), "{spans:?}");
    assert!(has("good", "vote", "ok"), "{spans:?}");
    assert!(has("m_bad", "vote", "transient"), "{spans:?}");
    assert!(has("good", "tpc_abort", "ok"), "{spans:?}");
    assert!(has("m_bad", "abort", "ok"), "{spans:?}");
    let outcomes: Vec<_> = closed
        .iter()
        .filter(|s| s.name == "commit")
        .map(|s| s.field("outcome").unwrap_or("").to_owned())
        .collect();
    assert_eq!(outcomes, ["ok", "transient"]);
}

#[test]
fn parallel_votes_and_finishes_enter_their_spans_on_the_worker_threads() {
    let capture = SpanCapture::new();
    let journal = Journal::new();
    // Each job waits (up to 5 s) until both jobs of its phase run at once, so one of them
    // runs on a worker thread; then stays 5 ms for the other to see it.
    let inside = Arc::new(AtomicUsize::new(0));
    let work = move |_: Call| {
        inside.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while inside.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(5));
        inside.fetch_sub(1, Ordering::SeqCst);
    };
    let a = ScriptedDataManager::new("pa", Kind::TwoPhase, &journal).with_phase_jobs(work.clone());
    let b = ScriptedDataManager::new("pb", Kind::TwoPhase, &journal).with_phase_jobs(work);
    let manager = TransactionManager::builder().parallel_phases(true).build();
    tracing::subscriber::with_default(capture.clone(), || {
        let txn = manager.begin().unwrap();
        txn.join(a.clone()).unwrap();
        txn.join(b.clone()).unwrap();
        manager.commit().unwrap();
    });
    let me = std::thread::current().id();
    let closed = capture.closed();
    let ok = |e: &str, p: &str| (e.to_owned(), p.to_owned(), "ok".to_owned());
    assert_eq!(
        phase_spans(&closed),
        vec![
            ok("pa", "finish"),
            ok("pa", "vote"),
            ok("pb", "finish"),
            ok("pb", "vote")
        ]
    );
    let mut elsewhere = 0;
    for span in closed.iter().filter(|s| s.name == "resource_phase") {
        // The job's work ran inside the span (5 ms of sleep), on a worker or on this thread.
        let micros: u64 = span.field("duration_us").unwrap().parse().unwrap();
        assert!(micros >= 5_000, "{span:?}");
        assert!(span.entered_on.len() >= 2, "{span:?}");
        elsewhere += usize::from(span.entered_on.iter().any(|t| *t != me));
        assert_eq!(span.parent, Some("commit"));
    }
    // Of each pair of jobs running at once, one runs on a worker thread.
    assert_eq!(elsewhere, 2, "{closed:?}");
}

/// A subscriber that wants phase spans only inside a commit span (as a filter on the
/// span context would): it counts the phase spans it is given.
#[derive(Default)]
struct PhasesOnlyInCommit {
    next_id: std::sync::atomic::AtomicU64,
    commits: std::sync::Mutex<Vec<u64>>,
    depth: AtomicUsize,
    phases: Arc<AtomicUsize>,
}

impl tracing::Subscriber for PhasesOnlyInCommit {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Asked again at every span: the answer depends on the context.
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() != "transaction::phase" || self.depth.load(Ordering::SeqCst) > 0
    }
    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        match attrs.metadata().name() {
            "commit" => self.commits.lock().unwrap().push(id),
            "resource_phase" => {
                self.phases.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        tracing::span::Id::from_u64(id)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, id: &tracing::span::Id) {
        if self.commits.lock().unwrap().contains(&id.into_u64()) {
            self.depth.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn exit(&self, id: &tracing::span::Id) {
        if self.commits.lock().unwrap().contains(&id.into_u64()) {
            self.depth.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn phase_spans_wanted_only_inside_the_commit_span_are_made() {
    let phases = Arc::new(AtomicUsize::new(0));
    let subscriber = PhasesOnlyInCommit {
        phases: phases.clone(),
        ..PhasesOnlyInCommit::default()
    };
    let journal = Journal::new();
    let a = ScriptedDataManager::new("a", Kind::TwoPhase, &journal);
    let b = ScriptedDataManager::new("b", Kind::TwoPhase, &journal);
    let manager = TransactionManager::builder().parallel_phases(false).build();
    tracing::subscriber::with_default(subscriber, || {
        let txn = manager.begin().unwrap();
        txn.join(a.clone()).unwrap();
        txn.join(b.clone()).unwrap();
        manager.commit().unwrap();
    });
    // A vote and a finish for each resource.
    assert_eq!(phases.load(Ordering::SeqCst), 4);
}
