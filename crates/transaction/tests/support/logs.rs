//! A tiny `tracing` subscriber that keeps every event, so tests can assert what the
//! coordinator logged and at which level (no `tracing-subscriber` needed).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

/// One logged event.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub level: Level,
    pub message: String,
    pub fields: BTreeMap<String, String>,
}

impl LogRecord {
    /// The value of a field, as text (`%` and `?` fields as formatted, `&str` unquoted).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// The events captured so far; clones share the same buffer.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    records: Arc<Mutex<Vec<LogRecord>>>,
}

impl Logs {
    /// Runs `f` with every event of this thread captured.
    pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Logs) {
        let logs = Logs::default();
        let value = tracing::dispatcher::with_default(&logs.dispatch(), f);
        (value, logs)
    }

    /// A dispatcher that records into this buffer.
    pub fn dispatch(&self) -> Dispatch {
        Dispatch::new(Capture {
            logs: self.clone(),
            next_span: AtomicU64::new(1),
        })
    }

    /// Every event, in order.
    pub fn records(&self) -> Vec<LogRecord> {
        self.records.lock().expect("log buffer poisoned").clone()
    }

    /// The events at exactly `level`.
    pub fn at(&self, level: Level) -> Vec<LogRecord> {
        self.records()
            .into_iter()
            .filter(|r| r.level == level)
            .collect()
    }

    /// Forgets every event.
    pub fn clear(&self) {
        self.records.lock().expect("log buffer poisoned").clear();
    }
}

struct Capture {
    logs: Logs,
    next_span: AtomicU64,
}

struct Fields<'a>(&'a mut LogRecord);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.0.message = value;
        } else {
            self.0.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut record = LogRecord {
            level: *event.metadata().level(),
            message: String::new(),
            fields: BTreeMap::new(),
        };
        event.record(&mut Fields(&mut record));
        self.logs
            .records
            .lock()
            .expect("log buffer poisoned")
            .push(record);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
