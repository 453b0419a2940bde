//! A `tracing` subscriber that keeps every span it sees, for tests of the spans of a
//! commit (see the section on tracing in [the crate documentation](crate)).
//!
//! # Examples
//!
//! ```
//! use transaction::testing::spans::SpanCapture;
//!
//! let capture = SpanCapture::new();
//! tracing::subscriber::with_default(capture.clone(), || {
//!     let span = tracing::info_span!("work", engine = "db");
//!     span.in_scope(|| {});
//! });
//! let closed = capture.closed();
//! assert_eq!(closed[0].name, "work");
//! assert_eq!(closed[0].field("engine"), Some("db"));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A span as the capture saw it.
#[derive(Debug, Clone)]
pub struct CapturedSpan {
    /// The span's name.
    pub name: &'static str,
    /// The span's target.
    pub target: &'static str,
    /// Every field recorded, rendered (strings without quotes).
    pub fields: BTreeMap<String, String>,
    /// The name of the span it was opened in, if any.
    pub parent: Option<&'static str>,
    /// The threads it was entered on, once per entry.
    pub entered_on: Vec<ThreadId>,
}

impl CapturedSpan {
    /// The value of field `name`, if recorded.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct State {
    next: u64,
    open: HashMap<u64, (usize, CapturedSpan)>,
    closed: Vec<CapturedSpan>,
    stacks: HashMap<ThreadId, Vec<u64>>,
}

/// A subscriber that records every span (all levels, all targets) and ignores events.
/// Clones share what was captured.
#[derive(Clone, Default)]
pub struct SpanCapture {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SpanCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanCapture").finish_non_exhaustive()
    }
}

impl SpanCapture {
    /// A capture that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The spans closed so far, in the order they closed.
    pub fn closed(&self) -> Vec<CapturedSpan> {
        self.lock().closed.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for SpanCapture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut state = self.lock();
        state.next += 1;
        let id = state.next;
        let parent = match attrs.parent() {
            Some(p) => Some(p.into_u64()),
            None if attrs.is_contextual() => state
                .stacks
                .get(&std::thread::current().id())
                .and_then(|s| s.last().copied()),
            None => None,
        };
        let parent = parent.and_then(|p| state.open.get(&p).map(|(_, s)| s.name));
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let span = CapturedSpan {
            name: attrs.metadata().name(),
            target: attrs.metadata().target(),
            fields,
            parent,
            entered_on: Vec::new(),
        };
        state.open.insert(id, (1, span));
        Id::from_u64(id)
    }

    fn record(&self, id: &Id, values: &Record<'_>) {
        if let Some((_, span)) = self.lock().open.get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, id: &Id) {
        let thread = std::thread::current().id();
        let mut state = self.lock();
        if let Some((_, span)) = state.open.get_mut(&id.into_u64()) {
            span.entered_on.push(thread);
        }
        state.stacks.entry(thread).or_default().push(id.into_u64());
    }

    fn exit(&self, id: &Id) {
        let thread = std::thread::current().id();
        let mut state = self.lock();
        if let Some(stack) = state.stacks.get_mut(&thread) {
            if let Some(at) = stack.iter().rposition(|s| *s == id.into_u64()) {
                stack.remove(at);
            }
        }
    }

    fn clone_span(&self, id: &Id) -> Id {
        if let Some((refs, _)) = self.lock().open.get_mut(&id.into_u64()) {
            *refs += 1;
        }
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let mut state = self.lock();
        let key = id.into_u64();
        let Some((refs, _)) = state.open.get_mut(&key) else {
            return false;
        };
        *refs -= 1;
        if *refs > 0 {
            return false;
        }
        if let Some((_, span)) = state.open.remove(&key) {
            state.closed.push(span);
        }
        true
    }
}
