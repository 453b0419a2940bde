//! Helpers shared by the `sqlassist` command's tests: server URLs (a missing server fails
//! the test when `SQLASSIST_REQUIRE_SERVERS` or `CI` is set, else skips it), raw SQL, and
//! running the built binary.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Output;

use diesel::connection::SimpleConnection;
use diesel::Connection;

/// Whether a missing or unreachable server fails the test instead of skipping it.
pub fn servers_required() -> bool {
    let set = |name: &str| {
        std::env::var(name)
            .map(|v| !v.is_empty() && v != "0")
            .unwrap_or(false)
    };
    set("SQLASSIST_REQUIRE_SERVERS") || set("CI")
}

/// The URL in `var`; `None` after a skip note when unset and servers are not required.
#[track_caller]
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if servers_required() => panic!(
            "{var} is not set; this test needs that server (SQLASSIST_REQUIRE_SERVERS or CI is set)"
        ),
        _ => {
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}

/// Raw SQL on a fresh PostgreSQL connection.
#[track_caller]
pub fn pg_exec(url: &str, sql: &str) {
    diesel::PgConnection::establish(url)
        .unwrap_or_else(|e| panic!("connect {var}: {e}", var = "postgresql"))
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Raw SQL on a fresh MariaDB/MySQL connection.
#[track_caller]
pub fn mysql_exec(url: &str, sql: &str) {
    diesel::MysqlConnection::establish(url)
        .unwrap_or_else(|e| panic!("connect mariadb: {e}"))
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Raw SQL on a SQLite file.
#[track_caller]
pub fn sqlite_exec(path: &Path, sql: &str) {
    diesel::SqliteConnection::establish(&path.display().to_string())
        .unwrap_or_else(|e| panic!("open sqlite: {e}"))
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<temp>/sqlassist-cli-<tag>-<pid>-<nanos>`.
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "sqlassist-cli-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("the temp dir is writable");
        Self { path }
    }

    /// A file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes an INI settings file with `[app:main]` and `lines`, returns its path.
pub fn ini(dir: &TempDir, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.file(name);
    let mut text = String::from("[app:main]\n");
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write settings");
    path
}

/// Runs the built `sqlassist` binary with `args`.
pub fn sqlassist(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sqlassist"))
        .args(args)
        .output()
        .expect("the sqlassist binary runs")
}

/// The exit code, stdout and stderr of a run, as text.
pub fn parts(out: &Output) -> (i32, String, String) {
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
