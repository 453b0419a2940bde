//! Helpers shared by the integration tests in `tests/`.
//!
//! # Tests that need a server
//!
//! A test that needs a database server reads its URL from an environment variable
//! (`SQLASSIST_TEST_PG_URL` and the others listed in `docs/testing.md`) through
//! [`server_url`] or [`pg_url`]. When the variable is unset, or the server does not answer:
//!
//! - if `SQLASSIST_REQUIRE_SERVERS` (any value but `0` or empty) or `CI` is set, the test
//!   **fails**, naming the variable and the connection error: a server that is down can
//!   never make CI green by skipping tests (`scripts/test` always sets
//!   `SQLASSIST_REQUIRE_SERVERS=1`);
//! - otherwise the test prints `skipped: ...` to stderr and returns, so that a plain
//!   `cargo test` stays usable on a machine without database servers.
//!
//! Use it as `let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else { return };`.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether a missing or unreachable server fails the test instead of skipping it.
pub fn servers_required() -> bool {
    let set = |name: &str| {
        std::env::var(name)
            .map(|v| !v.is_empty() && v != "0")
            .unwrap_or(false)
    };
    set("SQLASSIST_REQUIRE_SERVERS") || set("CI")
}

/// Fails (servers required) or prints a skip note and returns `None`.
#[track_caller]
pub fn skip_or_fail(var: &str, why: &str) -> Option<String> {
    if servers_required() {
        panic!(
            "{var}: {why}; this test needs that server (SQLASSIST_REQUIRE_SERVERS or CI is set, \
             so it fails instead of skipping): run `eval \"$(scripts/test --setup-only)\"` first"
        );
    }
    eprintln!("skipped: {var} {why} (set SQLASSIST_REQUIRE_SERVERS=1 to make this a failure)");
    None
}

/// The URL in `var`, or `None` (after a skip note) when it is unset and servers are not
/// required. Does not connect.
#[track_caller]
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => skip_or_fail(var, "is not set"),
    }
}

/// The PostgreSQL URL in `var`, checked by connecting once.
#[cfg(feature = "postgres")]
#[track_caller]
pub fn pg_url(var: &str) -> Option<String> {
    use diesel::Connection;
    let url = server_url(var)?;
    match diesel::PgConnection::establish(&url) {
        Ok(_) => Some(url),
        Err(e) => skip_or_fail(var, &format!("names a server that cannot be reached ({e})")),
    }
}

/// The MariaDB/MySQL URL in `var`, checked by connecting once.
#[cfg(feature = "mysql")]
#[track_caller]
pub fn mysql_url(var: &str) -> Option<String> {
    use diesel::Connection;
    let url = server_url(var)?;
    match diesel::MysqlConnection::establish(&url) {
        Ok(_) => Some(url),
        Err(e) => skip_or_fail(var, &format!("names a server that cannot be reached ({e})")),
    }
}

/// A name no other test (in this process or another) uses: `prefix_<pid>_<n>_<nanos>`,
/// lowercase ASCII, usable as a table or engine name.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<temp>/sqlassist-test-<unique>`.
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(unique(&format!("sqlassist-test-{tag}")));
        std::fs::create_dir_all(&path).expect("the temp dir is writable");
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Puts this thread's transaction and sessions back in a clean state (after a test
/// step that may have failed half-way).
pub fn reset_thread() {
    let _ = transaction::abort();
    let _ = sqlassist::close_sessions();
}

/// Asserts that neither `Display` nor `Debug` of `err` (nor its sources) contains
/// `secret`.
#[track_caller]
pub fn assert_no_secret(err: &(dyn std::error::Error + 'static), secret: &str) {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let display = e.to_string();
        let debug = format!("{e:?}");
        assert!(
            !display.contains(secret) && !debug.contains(secret),
            "an error leaks the password: {display} / {debug}"
        );
        cur = e.source();
    }
}
