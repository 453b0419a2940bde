//! Routing: which engine serves a read and which a write, and read-your-writes.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An application's own routing rule, in the manner of Django's database routers.
///
/// [`Attempt::reader_for`](crate::Attempt::reader_for) and
/// [`Attempt::writer_for`](crate::Attempt::writer_for) pass a key (a table name, a tenant,
/// whatever the application routes by) to the router; `None` means "no opinion", and the
/// default routes ([`Routes::new`]'s writer, [`Routes::readers`]) apply.
///
/// # Examples
///
/// ```
/// use sqlassist_axum::Router;
///
/// /// Audit rows live in their own database.
/// struct AuditRouter;
/// impl Router for AuditRouter {
///     fn db_for_write(&self, key: &str) -> Option<String> {
///         (key == "audit").then(|| "audit".to_owned())
///     }
/// }
/// assert_eq!(AuditRouter.db_for_write("audit").as_deref(), Some("audit"));
/// assert_eq!(AuditRouter.db_for_read("users"), None);
/// ```
pub trait Router: Send + Sync + 'static {
    /// The engine that serves reads of `key`, or `None` for the default readers.
    fn db_for_read(&self, key: &str) -> Option<String> {
        let _ = key;
        None
    }

    /// The engine that serves writes of `key`, or `None` for the default writer.
    fn db_for_write(&self, key: &str) -> Option<String> {
        let _ = key;
        None
    }
}

/// What a read does when no reader can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReaderDown {
    /// Read from the writer instead (default).
    #[default]
    UseWriter,
    /// Fail: [`Attempt::reader`](crate::Attempt::reader) returns the reader's error.
    Fail,
}

/// The default routes of a service: one writer engine and any number of reader engines
/// (replicas), balanced round robin, with read-your-writes.
///
/// Within one request, reads that follow a write go to the writer. Across requests, when
/// [`read_your_writes`](Self::read_your_writes) is set (the default) and the writer is
/// PostgreSQL, the response to a request that wrote carries the writer's WAL position
/// after its commit (`pg_current_wal_lsn()`) in the `x-sqlassist-lsn` header and a cookie of
/// the same name; a later request that sends it back reads from a replica only once the
/// replica's `pg_last_wal_replay_lsn()` has reached that position, else from the writer.
///
/// Register readers unmanaged (`InitOptions::new()`, pyramid_sqlassist's reader): their
/// sessions do not join the request's two-phase commit, which a hot standby could not
/// prepare, and each attempt's reads are rolled back when its sessions close.
///
/// Costs: one extra round trip to the writer after each commit of a request that wrote
/// (to read the WAL position), and one round trip to the chosen reader at the first read
/// of a request that carries a position, or of any request when
/// [`ReaderDown::UseWriter`] is in force (the probe that finds a reader down).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sqlassist_axum::{ReaderDown, Routes};
///
/// let routes = Routes::new("writer")
///     .readers(["replica1", "replica2"])
///     .reader_down(ReaderDown::Fail)
///     .position_max_age(Duration::from_secs(30));
/// assert_eq!(routes.writer_name(), "writer");
/// assert_eq!(routes.reader_names().len(), 2);
/// ```
#[derive(Clone)]
#[must_use]
pub struct Routes {
    pub(crate) writer: String,
    pub(crate) readers: Vec<String>,
    pub(crate) router: Option<Arc<dyn Router>>,
    pub(crate) read_your_writes: bool,
    pub(crate) reader_down: ReaderDown,
    pub(crate) max_age: Duration,
    pub(crate) next: Arc<AtomicUsize>,
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("writer", &self.writer)
            .field("readers", &self.readers)
            .field("router", &self.router.is_some())
            .field("read_your_writes", &self.read_your_writes)
            .field("reader_down", &self.reader_down)
            .field("max_age", &self.max_age)
            .finish()
    }
}

/// The name of the response header and cookie that carry the writer's WAL position.
pub const POSITION_NAME: &str = "x-sqlassist-lsn";

impl Routes {
    /// Routes where `writer` serves writes and, until [`readers`](Self::readers) names
    /// some, reads too.
    pub fn new(writer: impl Into<String>) -> Self {
        Routes {
            writer: writer.into(),
            readers: Vec::new(),
            router: None,
            read_your_writes: true,
            reader_down: ReaderDown::default(),
            max_age: Duration::from_secs(300),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The engines that serve reads, balanced round robin. Default: none (the writer).
    pub fn readers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.readers = names.into_iter().map(Into::into).collect();
        self
    }

    /// The application's own rule for keyed reads and writes. Default: none.
    pub fn router(mut self, router: impl Router) -> Self {
        self.router = Some(Arc::new(router));
        self
    }

    /// Whether responses carry the writer's WAL position and reads wait for replicas to
    /// reach it (see the type's documentation for its cost). Default: `true`. Reads after
    /// a write within one request go to the writer either way.
    pub fn read_your_writes(mut self, on: bool) -> Self {
        self.read_your_writes = on;
        self
    }

    /// What a read does when no reader answers. Default: [`ReaderDown::UseWriter`].
    pub fn reader_down(mut self, policy: ReaderDown) -> Self {
        self.reader_down = policy;
        self
    }

    /// How long the client keeps the position cookie (its `Max-Age`). Default: 300 s.
    /// After it expires, reads go to replicas whatever their lag: set it above the
    /// replication lag you are prepared to hide.
    pub fn position_max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// The writer's engine name.
    pub fn writer_name(&self) -> &str {
        &self.writer
    }

    /// The readers' engine names.
    pub fn reader_names(&self) -> &[String] {
        &self.readers
    }

    /// The readers in the order to try them for the next read: round robin.
    pub(crate) fn reader_order(&self) -> Vec<&str> {
        if self.readers.is_empty() {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        (0..self.readers.len())
            .map(|i| self.readers[(start + i) % self.readers.len()].as_str())
            .collect()
    }
}

/// A PostgreSQL WAL position (`pg_lsn`), as `X/Y` in hexadecimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalPosition(pub u64);

impl WalPosition {
    /// Parses PostgreSQL's `X/Y` form (hexadecimal, each half at most 8 digits).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist_axum::WalPosition;
    ///
    /// let p = WalPosition::parse("16/B374D848").expect("valid");
    /// assert_eq!(p.to_string(), "16/B374D848");
    /// assert!(WalPosition::parse("16/B374D848'; DROP").is_none());
    /// ```
    pub fn parse(text: &str) -> Option<Self> {
        let (hi, lo) = text.trim().split_once('/')?;
        let valid =
            |h: &str| !h.is_empty() && h.len() <= 8 && h.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid(hi) || !valid(lo) {
            return None;
        }
        let hi = u64::from_str_radix(hi, 16).ok()?;
        let lo = u64::from_str_radix(lo, 16).ok()?;
        Some(WalPosition((hi << 32) | lo))
    }
}

impl fmt::Display for WalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// What the client sent back: no position, a position, or something unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    Nothing,
    Position(WalPosition),
    /// Unreadable: reads go to the writer, which is never stale.
    Garbled,
}

/// Reads the position from the request's `x-sqlassist-lsn` header or cookie.
pub(crate) fn sent_position(headers: &http::HeaderMap) -> Sent {
    let header = headers
        .get(POSITION_NAME)
        .map(|v| v.to_str().ok().map(str::to_owned));
    let cookie = || {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == POSITION_NAME)
            .map(|(_, value)| Some(value.to_owned()))
    };
    match header.or_else(cookie) {
        None => Sent::Nothing,
        Some(None) => Sent::Garbled,
        Some(Some(text)) => WalPosition::parse(&text).map_or(Sent::Garbled, Sent::Position),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_order() {
        let a = WalPosition::parse("0/3000000").expect("valid");
        let b = WalPosition::parse("1/0").expect("valid");
        assert!(a < b);
        assert_eq!(b.0, 1 << 32);
        assert_eq!(WalPosition::parse(&a.to_string()), Some(a));
        for bad in ["", "1", "/1", "1/", "g/1", "123456789/1", "1/2/3"] {
            assert_eq!(WalPosition::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn position_comes_from_header_or_cookie() {
        let mut h = http::HeaderMap::new();
        assert_eq!(sent_position(&h), Sent::Nothing);
        h.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=b; x-sqlassist-lsn=0/10"),
        );
        assert_eq!(sent_position(&h), Sent::Position(WalPosition(16)));
        h.insert(POSITION_NAME, http::HeaderValue::from_static("nonsense"));
        assert_eq!(sent_position(&h), Sent::Garbled);
    }

    #[test]
    fn readers_take_turns() {
        let routes = Routes::new("w").readers(["a", "b"]);
        assert_eq!(routes.reader_order(), ["a", "b"]);
        assert_eq!(routes.reader_order(), ["b", "a"]);
        assert!(Routes::new("w").reader_order().is_empty());
    }
}
