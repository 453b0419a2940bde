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

/// One row holding one integer, for the helpers below.
#[derive(diesel::QueryableByName)]
struct Value {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// One row holding one text, for the helpers below.
#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

/// The `name` column of `table`, sorted, read on `conn`.
fn names_on<C>(conn: &mut C, table: &str) -> Vec<String>
where
    C: diesel::Connection,
    diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'static, C, Name>,
{
    use diesel::RunQueryDsl;
    diesel::sql_query(format!("SELECT name FROM {table} ORDER BY name"))
        .load::<Name>(conn)
        .expect("load names")
        .into_iter()
        .map(|n| n.name)
        .collect()
}

/// PostgreSQL helpers that run on a plain connection outside sqlassist.
#[cfg(feature = "postgres")]
pub mod pg {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, PgConnection, RunQueryDsl};

    /// A plain Diesel connection.
    pub fn raw(url: &str) -> PgConnection {
        PgConnection::establish(url).expect("a plain postgresql connection")
    }

    /// Raw SQL on a fresh plain connection.
    pub fn exec(url: &str, sql: &str) {
        raw(url)
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// One integer: `sql` is wrapped as `SELECT CAST((sql) AS BIGINT)`.
    pub fn scalar(url: &str, sql: &str) -> i64 {
        diesel::sql_query(format!("SELECT CAST(({sql}) AS BIGINT) AS n"))
            .get_result::<super::Value>(&mut raw(url))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .n
    }

    /// Rows in `table`.
    pub fn count(url: &str, table: &str) -> i64 {
        scalar(url, &format!("SELECT COUNT(*) FROM {table}"))
    }

    /// The `name` column of `table`, sorted.
    pub fn names(url: &str, table: &str) -> Vec<String> {
        super::names_on(&mut raw(url), table)
    }

    /// Prepared transactions whose gid contains `needle` (an engine name: gids are
    /// `sqlassist_<node>_<incarnation>_<sequence>_<engine>`).
    pub fn prepared(admin: &str, needle: &str) -> i64 {
        scalar(
            admin,
            &format!("SELECT COUNT(*) FROM pg_prepared_xacts WHERE strpos(gid, '{needle}') > 0"),
        )
    }
}

/// MariaDB/MySQL helpers that run on a plain connection outside sqlassist.
#[cfg(feature = "mysql")]
pub mod my {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, MysqlConnection, RunQueryDsl};

    /// A plain Diesel connection.
    pub fn raw(url: &str) -> MysqlConnection {
        MysqlConnection::establish(url).expect("a plain mariadb connection")
    }

    /// Raw SQL on a fresh plain connection.
    pub fn exec(url: &str, sql: &str) {
        raw(url)
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// One integer: `sql` is wrapped as `SELECT CAST((sql) AS SIGNED)`.
    pub fn scalar(url: &str, sql: &str) -> i64 {
        diesel::sql_query(format!("SELECT CAST(({sql}) AS SIGNED) AS n"))
            .get_result::<super::Value>(&mut raw(url))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .n
    }

    /// Rows in `table`.
    pub fn count(url: &str, table: &str) -> i64 {
        scalar(url, &format!("SELECT COUNT(*) FROM {table}"))
    }

    /// The `name` column of `table`, sorted.
    pub fn names(url: &str, table: &str) -> Vec<String> {
        super::names_on(&mut raw(url), table)
    }

    /// Prepared XA branches (any connection's) whose xid contains `needle`.
    pub fn xa_prepared(admin: &str, needle: &str) -> usize {
        #[derive(diesel::QueryableByName)]
        struct Xid {
            #[diesel(sql_type = diesel::sql_types::Text)]
            data: String,
        }
        diesel::sql_query("XA RECOVER")
            .load::<Xid>(&mut raw(admin))
            .expect("XA RECOVER as root")
            .into_iter()
            .filter(|x| x.data.contains(needle))
            .count()
    }
}

/// SQLite helpers that run on a plain connection outside sqlassist.
#[cfg(feature = "sqlite")]
pub mod lite {
    use std::path::Path;

    use diesel::connection::SimpleConnection;
    use diesel::{Connection, RunQueryDsl, SqliteConnection};

    /// A plain Diesel connection to the file.
    pub fn raw(path: &Path) -> SqliteConnection {
        SqliteConnection::establish(&path.display().to_string()).expect("open the sqlite file")
    }

    /// Raw SQL on a fresh plain connection.
    pub fn exec(path: &Path, sql: &str) {
        raw(path)
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Rows in `table`.
    pub fn count(path: &Path, table: &str) -> i64 {
        diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .get_result::<super::Value>(&mut raw(path))
            .expect("count rows")
            .n
    }

    /// The `name` column of `table`, sorted.
    pub fn names(path: &Path, table: &str) -> Vec<String> {
        super::names_on(&mut raw(path), table)
    }
}

/// The server a [`Table`] lives on.
#[derive(Clone, Copy)]
enum Server {
    #[cfg(feature = "postgres")]
    Pg,
    #[cfg(feature = "mysql")]
    My,
}

/// A uniquely named table created on a server, dropped (after closing this thread's
/// sessions) when the guard goes out of scope, even when the test panicked.
pub struct Table {
    url: String,
    name: String,
    server: Server,
}

impl Table {
    /// `CREATE TABLE <prefix>_<unique> (columns)` on PostgreSQL.
    #[cfg(feature = "postgres")]
    pub fn pg(url: &str, prefix: &str, columns: &str) -> Self {
        let name = unique(prefix);
        pg::exec(url, &format!("CREATE TABLE {name} ({columns})"));
        Self {
            url: url.to_owned(),
            name,
            server: Server::Pg,
        }
    }

    /// `CREATE TABLE <prefix>_<unique> (columns) ENGINE=InnoDB` on MariaDB.
    #[cfg(feature = "mysql")]
    pub fn mysql(url: &str, prefix: &str, columns: &str) -> Self {
        let name = unique(prefix);
        my::exec(
            url,
            &format!("CREATE TABLE {name} ({columns}) ENGINE=InnoDB"),
        );
        Self {
            url: url.to_owned(),
            name,
            server: Server::My,
        }
    }
}

impl std::ops::Deref for Table {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        #[cfg(any(feature = "postgres", feature = "mysql"))]
        use diesel::{connection::SimpleConnection, Connection};
        reset_thread();
        match self.server {
            #[cfg(feature = "postgres")]
            Server::Pg => {
                if let Ok(mut c) = diesel::PgConnection::establish(&self.url) {
                    let _ = c.batch_execute(&format!(
                        "SET lock_timeout = '5s'; DROP TABLE IF EXISTS {}",
                        self.name
                    ));
                }
            }
            #[cfg(feature = "mysql")]
            Server::My => {
                if let Ok(mut c) = diesel::MysqlConnection::establish(&self.url) {
                    let _ = c.batch_execute(&format!(
                        "SET SESSION lock_wait_timeout = 5; DROP TABLE IF EXISTS {}",
                        self.name
                    ));
                }
            }
        }
    }
}

/// The PostgreSQL server's log, read through the superuser connection from the point where
/// [`ServerLog::open`] found its end: what the server logged since then.
///
/// The file is `pg_current_logfile()` when the server runs a logging collector, otherwise
/// the path in `SQLASSIST_TEST_PG_LOG` (`scripts/test` sets it from `pg_lsclusters`).
#[cfg(feature = "postgres")]
pub struct ServerLog {
    admin: String,
    path: String,
    start: i64,
}

#[cfg(feature = "postgres")]
impl ServerLog {
    /// Starts reading at the log's current end, or skips/fails when it cannot be found.
    #[track_caller]
    pub fn open(admin: &str) -> Option<Self> {
        #[derive(diesel::QueryableByName)]
        struct Path {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            path: Option<String>,
        }
        use diesel::RunQueryDsl;
        let current = diesel::sql_query("SELECT pg_current_logfile() AS path")
            .get_result::<Path>(&mut pg::raw(admin))
            .expect("pg_current_logfile()")
            .path;
        let path = match current.or_else(|| std::env::var("SQLASSIST_TEST_PG_LOG").ok()) {
            Some(p) if !p.is_empty() => p,
            _ => {
                skip_or_fail(
                    "SQLASSIST_TEST_PG_LOG",
                    "is not set and the server has no logging collector",
                )?;
                return None;
            }
        };
        let start = Self::size(admin, &path);
        Some(Self {
            admin: admin.to_owned(),
            path,
            start,
        })
    }

    fn size(admin: &str, path: &str) -> i64 {
        pg::scalar(admin, &format!("SELECT size FROM pg_stat_file('{path}')"))
    }

    /// Everything logged since [`open`](Self::open).
    pub fn since_open(&self) -> String {
        #[derive(diesel::QueryableByName)]
        struct Text {
            #[diesel(sql_type = diesel::sql_types::Text)]
            text: String,
        }
        use diesel::RunQueryDsl;
        let end = Self::size(&self.admin, &self.path);
        diesel::sql_query(format!(
            "SELECT convert_from(pg_read_binary_file('{}', {}, {}), 'UTF8') AS text",
            self.path,
            self.start,
            end - self.start
        ))
        .get_result::<Text>(&mut pg::raw(&self.admin))
        .expect("read the server log")
        .text
    }
}

/// Records the SQL that sessions of engines with `echo = true` send on this thread (the
/// crate's instrumentation logs every statement at target `sqlassist::sql`), while the
/// closure given to [`SqlCapture::run`] runs.
#[derive(Clone, Default)]
pub struct SqlCapture {
    statements: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl SqlCapture {
    /// Runs `f` with this thread's `tracing` events going to the capture.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::subscriber::with_default(self.clone(), f)
    }

    /// Every statement captured so far.
    pub fn statements(&self) -> Vec<String> {
        self.statements.lock().expect("not poisoned").clone()
    }

    /// The captured statements that contain `needle`.
    pub fn containing(&self, needle: &str) -> Vec<String> {
        self.statements()
            .into_iter()
            .filter(|s| s.contains(needle))
            .collect()
    }
}

impl tracing::Subscriber for SqlCapture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "sqlassist::sql"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        if event.metadata().target() != "sqlassist::sql" {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.statements
            .lock()
            .expect("not poisoned")
            .push(message.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
