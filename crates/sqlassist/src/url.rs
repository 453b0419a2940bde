//! Database URLs as SQLAlchemy users write them, translated to what Diesel opens.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::redact::{self, redact_query};

/// Every scheme accepted, in the order [`SUPPORTED_SCHEMES`] lists them.
const SCHEMES: &[(&str, Backend)] = &[
    ("postgresql", Backend::Postgres),
    ("postgres", Backend::Postgres),
    ("postgresql+psycopg2", Backend::Postgres),
    ("postgresql+psycopg", Backend::Postgres),
    ("postgresql+pg8000", Backend::Postgres),
    ("postgresql+asyncpg", Backend::Postgres),
    ("mysql", Backend::Mysql),
    ("mariadb", Backend::Mysql),
    ("mysql+pymysql", Backend::Mysql),
    ("mysql+mysqldb", Backend::Mysql),
    ("mysql+mariadbconnector", Backend::Mysql),
    ("mariadb+mariadbconnector", Backend::Mysql),
    ("mysql+aiomysql", Backend::Mysql),
    ("mysql+asyncmy", Backend::Mysql),
    ("sqlite", Backend::Sqlite),
    ("sqlite+pysqlite", Backend::Sqlite),
    ("sqlite+aiosqlite", Backend::Sqlite),
];

/// [`SCHEMES`] as shown in [`Error::UnknownScheme`].
const SUPPORTED_SCHEMES: &str = "postgresql, postgres, postgresql+psycopg2, postgresql+psycopg, \
postgresql+pg8000, postgresql+asyncpg, mysql, mariadb, mysql+pymysql, mysql+mysqldb, \
mysql+mariadbconnector, mariadb+mariadbconnector, mysql+aiomysql, mysql+asyncmy, sqlite, \
sqlite+pysqlite, sqlite+aiosqlite";

/// A parsed database URL: the backend, the URL Diesel opens, and a redacted copy for logs.
///
/// | written (SQLAlchemy)                                   | given to Diesel                |
/// |--------------------------------------------------------|--------------------------------|
/// | `postgresql://`, `postgres://`, `postgresql+psycopg2://`, `postgresql+psycopg://`, `postgresql+pg8000://`, `postgresql+asyncpg://` | `postgres://…` (user, password, host, port, database and query kept as written) |
/// | `mysql://`, `mariadb://`, `mysql+pymysql://`, `mysql+mysqldb://`, `mysql+mariadbconnector://`, `mariadb+mariadbconnector://`, `mysql+aiomysql://`, `mysql+asyncmy://` | `mysql://…` (same) |
/// | `sqlite:///relative.db`                                | `file:/<base dir>/relative.db` |
/// | `sqlite:////absolute/path.db`                          | `file:/absolute/path.db`       |
/// | `sqlite://`, `sqlite:///`, `sqlite:///:memory:`        | `:memory:`                     |
/// | `sqlite:///app.db?mode=ro`                             | `file:/<base dir>/app.db?mode=ro` |
///
/// `sqlite+pysqlite://` and `sqlite+aiosqlite://` are read like `sqlite://`.
///
/// Notes on the translation:
///
/// - User names and passwords are kept byte for byte, so percent-encoded passwords
///   (`p%40ss`) reach libpq and Diesel's MySQL client unchanged and are decoded there.
///   A raw `/`, `?` or `#` in a password (which SQLAlchemy accepts) is percent-encoded,
///   because libpq and the `url` crate would otherwise cut the URL there. A raw `:` in a
///   password is part of it (only the first `:` ends the user name). A raw `@` in the user
///   name is read as Azure writes it (`user@server:password@host`) and percent-encoded; a
///   raw `@` in a password cannot be told apart from the host separator and is refused
///   with an error that asks for `%40`.
/// - A relative SQLite path is resolved against a base directory (the directory of the
///   settings file, see [`Settings::here`](crate::Settings::here)), never against the
///   filesystem root as Diesel would read `sqlite:///rel.db`. Diesel opens SQLite with URI
///   support, so the file is given as a `file:` URI whose `%`, `?` and `#` are
///   percent-encoded; query parameters (`mode`, `cache`, `immutable`, …) are kept, except
///   SQLAlchemy's `uri=true` switch. `sqlite:///file:app.db?uri=true` is read as `app.db`.
/// - A PostgreSQL URL without a host (`postgresql:///db`, `postgresql://user@/db`)
///   connects through libpq's default Unix socket directory, as libpq reads it; another
///   directory is given as `?host=/path`. MySQL URLs need a host, or a socket given as
///   `?unix_socket=/path`. Several comma-separated hosts are accepted for PostgreSQL
///   (libpq's multi-host form).
/// - [`Debug`] and [`Display`](fmt::Display) print the redacted form: the password, and the
///   value of any query parameter whose name contains `pass`, `pwd`, `secret`, `token` or
///   `key` (SQLite URLs too), become `***`. Errors about a URL that does not parse hide
///   everything from its first `:` after the scheme to its last `@`.
///
/// # Examples
///
/// ```
/// use sqlassist::{Backend, DatabaseUrl};
/// use std::path::Path;
///
/// let url = DatabaseUrl::parse_with_base("sqlite:///data/app.db", Path::new("/srv/myapp"))?;
/// assert_eq!(url.backend(), Backend::Sqlite);
/// assert_eq!(url.sqlite_path(), Some(Path::new("/srv/myapp/data/app.db")));
///
/// let memory = DatabaseUrl::parse("sqlite://")?;
/// assert!(memory.is_memory());
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    /// The URL given to Diesel; may contain the password.
    connection: String,
    /// `connection` with the password replaced by `***`.
    redacted: String,
    /// The database part as written (database name, or SQLite path as written).
    database: Option<String>,
    /// SQLite only: the file and the URI parameters.
    sqlite: Option<SqliteTarget>,
}

/// Where a SQLite URL points.
#[derive(Clone, PartialEq, Eq)]
struct SqliteTarget {
    /// Absolute path of the file; `None` for an in-memory database.
    path: Option<PathBuf>,
    /// URI query parameters (`key=value`), as written, without SQLAlchemy's `uri`.
    params: Vec<String>,
}

/// How to resolve a relative SQLite path.
#[derive(Clone, Copy)]
enum Base<'a> {
    CurrentDir,
    Dir(&'a Path),
}

impl DatabaseUrl {
    /// Parses a SQLAlchemy-style URL; a relative SQLite path is resolved against the
    /// current directory.
    ///
    /// Prefer [`parse_with_base`](Self::parse_with_base) with the settings' base directory
    /// for anything read from a settings file.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for an empty or malformed URL (no `://`, missing host, bad
    /// port, a SQLite URL with a host), [`Error::UnknownScheme`] for a scheme this crate
    /// does not know, [`Error::BackendNotEnabled`] when the backend's cargo feature is off.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::DatabaseUrl;
    /// let url: DatabaseUrl = DatabaseUrl::parse("sqlite:///:memory:")?;
    /// assert!(url.is_memory());
    /// assert!(DatabaseUrl::parse("oracle://scott:tiger@db/orcl").is_err());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        Self::parse_unchecked(s, Base::CurrentDir)?.ensure_enabled()
    }

    /// Parses a SQLAlchemy-style URL, resolving a relative SQLite path against `base_dir`
    /// (itself made absolute against the current directory if it is relative).
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse).
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::DatabaseUrl;
    /// use std::path::Path;
    /// let url = DatabaseUrl::parse_with_base("sqlite:///app.db?mode=rwc", Path::new("/srv"))?;
    /// assert_eq!(url.redacted(), "file:/srv/app.db?mode=rwc");
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn parse_with_base(s: &str, base_dir: &Path) -> Result<Self> {
        Self::parse_unchecked(s, Base::Dir(base_dir))?.ensure_enabled()
    }

    /// The backend the URL's scheme selects.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Backend, DatabaseUrl, Error};
    ///
    /// assert_eq!(DatabaseUrl::parse("sqlite+pysqlite://")?.backend(), Backend::Sqlite);
    /// // Whether `postgres` is compiled in or not:
    /// match DatabaseUrl::parse("postgresql+psycopg2://app@db.example.com/app") {
    ///     Ok(url) => assert_eq!(url.backend(), Backend::Postgres),
    ///     Err(Error::BackendNotEnabled { feature, .. }) => assert_eq!(feature, "postgres"),
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL to give Diesel's `establish` or r2d2's `ConnectionManager`.
    ///
    /// It may contain the password: never log it; log [`redacted`](Self::redacted).
    pub(crate) fn connection_string(&self) -> &str {
        &self.connection
    }

    /// The read-only form of a SQLite file URL: `file:/abs/x.db?mode=ro`, with any other
    /// query parameter kept and any `mode` replaced.
    ///
    /// `None` for an in-memory SQLite database (private to its connection, so there is
    /// nothing to protect; use `PRAGMA query_only` if needed) and for PostgreSQL and MySQL,
    /// where read-only is a session characteristic, not part of the URL.
    pub(crate) fn read_only_connection_string(&self) -> Option<String> {
        let target = self.sqlite.as_ref()?;
        let path = target.path.as_ref()?;
        let mut params: Vec<&str> = target
            .params
            .iter()
            .map(String::as_str)
            .filter(|p| param_key(p) != "mode")
            .collect();
        params.push("mode=ro");
        // `path` came from a `&str` URL or was checked to be UTF-8 when parsed.
        let path = path.to_str().unwrap_or_default();
        Some(format!(
            "file:{}?{}",
            encode_sqlite_path(path),
            params.join("&")
        ))
    }

    /// The password in the connection URL, to scrub it from driver messages.
    pub(crate) fn password(&self) -> Option<&str> {
        let rest = self.connection.split_once("://")?.1;
        let authority = rest.split(['/', '?']).next()?;
        let userinfo = authority.rsplit_once('@')?.0;
        userinfo.split_once(':').map(|(_, pw)| pw)
    }

    /// Every secret in the connection URL, as written there: the password and the value of
    /// every query parameter whose name looks secret. [`redact::message`] scrubs them (and
    /// their percent-decoded forms) from driver and pool messages.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        let mut secrets: Vec<&str> = self.password().into_iter().collect();
        // User names have no raw `?` and passwords and paths have theirs percent-encoded:
        // the first `?` starts the query.
        if let Some((_, query)) = self.connection.split_once('?') {
            secrets.extend(query.split('&').filter_map(|param| {
                param
                    .split_once('=')
                    .filter(|(name, _)| redact::is_secret_param(name))
                    .map(|(_, value)| value)
            }));
        }
        secrets
    }

    /// The URL with its password replaced by `***`: safe to log and to show.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::DatabaseUrl;
    /// let url = DatabaseUrl::parse("sqlite://")?;
    /// assert_eq!(url.redacted(), ":memory:");
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The absolute path of a SQLite database file; `None` for an in-memory database and for
    /// PostgreSQL and MySQL.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::DatabaseUrl;
    /// use std::path::Path;
    ///
    /// let url = DatabaseUrl::parse_with_base("sqlite:///data/app.db", Path::new("/srv/myapp"))?;
    /// assert_eq!(url.sqlite_path(), Some(Path::new("/srv/myapp/data/app.db")));
    /// let absolute = DatabaseUrl::parse("sqlite:////var/lib/app.db")?;
    /// assert_eq!(absolute.sqlite_path(), Some(Path::new("/var/lib/app.db")));
    /// assert_eq!(DatabaseUrl::parse("sqlite://")?.sqlite_path(), None);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.sqlite.as_ref()?.path.as_deref()
    }

    /// Whether this is an in-memory SQLite database.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::DatabaseUrl;
    ///
    /// for memory in ["sqlite://", "sqlite:///", "sqlite:///:memory:"] {
    ///     assert!(DatabaseUrl::parse(memory)?.is_memory());
    /// }
    /// assert!(!DatabaseUrl::parse("sqlite:////var/lib/app.db")?.is_memory());
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn is_memory(&self) -> bool {
        self.sqlite.as_ref().is_some_and(|t| t.path.is_none())
    }

    /// The database part of the URL as written: the database name for PostgreSQL and
    /// MySQL, the file path as written for SQLite; `None` when absent or in memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::DatabaseUrl;
    /// use std::path::Path;
    /// let url = DatabaseUrl::parse_with_base("sqlite:///app.db", Path::new("/srv"))?;
    /// assert_eq!(url.database_name(), Some("app.db"));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn database_name(&self) -> Option<&str> {
        self.database.as_deref()
    }

    fn ensure_enabled(self) -> Result<Self> {
        if self.backend.is_enabled() {
            Ok(self)
        } else {
            Err(Error::BackendNotEnabled {
                backend: self.backend,
                feature: self.backend.feature(),
            })
        }
    }

    /// Parses without checking that the backend is compiled in, so every form can be
    /// tested whatever the features.
    fn parse_unchecked(s: &str, base: Base<'_>) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::InvalidUrl {
                url: String::new(),
                reason: "the url is empty; expected e.g. postgresql://user:password@host/db \
                         or sqlite:///relative/path.db"
                    .to_owned(),
            });
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(Error::InvalidUrl {
                url: redact::url(s),
                reason: "missing `://`; expected scheme://..., e.g. \
                         postgresql://user:password@host/db or sqlite:///relative/path.db"
                    .to_owned(),
            });
        };
        let lower = scheme.to_ascii_lowercase();
        let Some(&(_, backend)) = SCHEMES.iter().find(|(name, _)| *name == lower) else {
            return Err(Error::UnknownScheme {
                scheme: redact::url(scheme),
                supported: SUPPORTED_SCHEMES,
            });
        };
        match backend {
            Backend::Sqlite => parse_sqlite(s, rest, base),
            Backend::Postgres | Backend::Mysql => parse_server(s, backend, rest),
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = Error;

    /// As [`DatabaseUrl::parse`].
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.redacted).finish()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// Parses the part after `scheme://` of a PostgreSQL or MySQL URL.
fn parse_server(original: &str, backend: Backend, rest: &str) -> Result<DatabaseUrl> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: redact::url(original),
        reason: reason.to_owned(),
    };

    let (userinfo, after) = split_userinfo(rest);
    let host_end = after.find(['/', '?']).unwrap_or(after.len());
    let hostport = &after[..host_end];
    let tail = &after[host_end..];
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };

    let (user, password) = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((user, password)) => (Some(user), Some(password)),
            None => (Some(info), None),
        },
        None => (None, None),
    };
    // Both mean a raw `@` or `/` in the user info that the split above could not place;
    // checked before the host and port, whose errors would mislead.
    if password.is_some_and(|p| p.contains('@')) {
        return Err(invalid(
            "the password contains a raw `@`: percent-encode `@` in the password as %40",
        ));
    }
    if path.contains('@') {
        return Err(invalid(
            "the database name contains `@`: if the user name or password holds a raw `@` \
             or `/`, percent-encode them as %40 and %2F",
        ));
    }
    if hostport.contains('@') {
        return Err(invalid(
            "the host contains `@`: percent-encode `@` in the user name or password as %40",
        ));
    }
    if hostport.is_empty() {
        // libpq reads an empty host as its default Unix socket directory
        // (`postgresql:///db`, `postgresql://user@/db`); MySQL needs the socket named.
        let has_socket = query.is_some_and(|q| q.split('&').any(|p| param_key(p) == "unix_socket"));
        if backend == Backend::Mysql && !has_socket {
            return Err(invalid(
                "no host; write mysql://user@localhost/db, or give a socket with \
                 ?unix_socket=/run/mysqld/mysqld.sock",
            ));
        }
    } else {
        if backend == Backend::Mysql && hostport.contains(',') {
            return Err(invalid("mysql urls take a single host"));
        }
        for item in hostport.split(',') {
            check_host_port(item).map_err(invalid)?;
        }
    }

    let database = path
        .strip_prefix('/')
        .filter(|db| !db.is_empty())
        .map(str::to_owned);

    let diesel_scheme = match backend {
        Backend::Postgres => "postgres",
        _ => "mysql",
    };
    let query_suffix = |q: Option<&str>| q.map(|q| format!("?{q}")).unwrap_or_default();
    let userinfo_for = |password: Option<&str>| match (user, password) {
        (Some(user), Some(password)) => format!("{}:{}@", encode_userinfo(user), password),
        (Some(user), None) => format!("{}@", encode_userinfo(user)),
        _ => String::new(),
    };
    let connection = format!(
        "{diesel_scheme}://{}{hostport}{path}{}",
        userinfo_for(password.map(encode_userinfo).as_deref()),
        query_suffix(query),
    );
    let redacted = format!(
        "{diesel_scheme}://{}{hostport}{path}{}",
        userinfo_for(password.map(|_| "***")),
        query_suffix(query.map(redact_query).as_deref()),
    );
    Ok(DatabaseUrl {
        backend,
        connection,
        redacted,
        database,
        sqlite: None,
    })
}

/// Splits `user[:password]@` off the front.
///
/// As SQLAlchemy reads it, the password runs to the first `@` and the user name has no `:`
/// or `/` (nor `?`: that starts the query). One more rule finds Azure's user names
/// (`user@server:password@host`): when the host part after that `@` holds another `@`
/// before the path or query starts, the user info runs to the last such `@`. A raw `@` in
/// the password is then seen by the caller, which asks for `%40`.
fn split_userinfo(rest: &str) -> (Option<&str>, &str) {
    let Some(first_at) = rest.find('@') else {
        return (None, rest);
    };
    let user = rest[..first_at].split(':').next().unwrap_or_default();
    if user.contains(['/', '?', '#']) {
        return (None, rest);
    }
    let after = &rest[first_at + 1..];
    let host_end = after.find(['/', '?']).unwrap_or(after.len());
    let end = match after[..host_end].rfind('@') {
        Some(i) => first_at + 1 + i,
        None => first_at,
    };
    (Some(&rest[..end]), &rest[end + 1..])
}

/// Checks one `host[:port]` item (`[v6addr][:port]` too). The reason never quotes the port.
fn check_host_port(item: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(v6) = item.strip_prefix('[') {
        let Some(close) = v6.find(']') else {
            return Err("unclosed `[` in an IPv6 host");
        };
        let after = &v6[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err("unexpected text after an IPv6 host; expected `]:port`"),
        };
        (&v6[..close], port)
    } else {
        match item.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (item, None),
        }
    };
    if host.is_empty() {
        return Err("missing host name before the port");
    }
    if host.chars().any(char::is_whitespace) {
        return Err("the host contains whitespace");
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !valid {
            return Err("the port is not a number from 1 to 65535");
        }
    }
    Ok(())
}

/// Parses the part after `sqlite://`.
fn parse_sqlite(original: &str, rest: &str, base: Base<'_>) -> Result<DatabaseUrl> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: redact::url(original),
        reason,
    };
    let (path_part, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let db = if path_part.is_empty() {
        ""
    } else if let Some(db) = path_part.strip_prefix('/') {
        db
    } else {
        return Err(invalid(
            "sqlite urls have no host: write sqlite:///relative/path.db, \
             sqlite:////absolute/path.db, or sqlite:// for an in-memory database"
                .to_owned(),
        ));
    };
    let params: Vec<String> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && param_key(p) != "uri")
        .map(str::to_owned)
        .collect();
    let db = db.strip_prefix("file:").unwrap_or(db);

    if db.is_empty() || db == ":memory:" {
        let (connection, redacted) = if params.is_empty() {
            (":memory:".to_owned(), ":memory:".to_owned())
        } else {
            let params = params.join("&");
            (
                format!("file::memory:?{params}"),
                format!("file::memory:?{}", redact_query(&params)),
            )
        };
        return Ok(DatabaseUrl {
            backend: Backend::Sqlite,
            redacted,
            connection,
            database: None,
            sqlite: Some(SqliteTarget { path: None, params }),
        });
    }

    let written = Path::new(db);
    let path = if written.is_absolute() {
        written.to_path_buf()
    } else {
        let resolved = match base {
            Base::CurrentDir => std::path::absolute(written),
            Base::Dir(dir) => std::path::absolute(dir.join(written)),
        };
        resolved.map_err(|e| invalid(format!("cannot resolve the relative path: {e}")))?
    };
    // Drop `.` and repeated separators; a leading `//` would read as a URI authority.
    let path: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let Some(path_str) = path.to_str() else {
        return Err(invalid(
            "the resolved path is not valid UTF-8; give an absolute path".to_owned(),
        ));
    };
    let mut connection = format!("file:{}", encode_sqlite_path(path_str));
    let mut redacted = connection.clone();
    if !params.is_empty() {
        let params = params.join("&");
        connection.push('?');
        connection.push_str(&params);
        redacted.push('?');
        redacted.push_str(&redact_query(&params));
    }
    Ok(DatabaseUrl {
        backend: Backend::Sqlite,
        redacted,
        connection,
        database: Some(db.to_owned()),
        sqlite: Some(SqliteTarget {
            path: Some(path),
            params,
        }),
    })
}

/// The key of a `key=value` query parameter, lowercased.
fn param_key(param: &str) -> String {
    param
        .split_once('=')
        .map_or(param, |(key, _)| key)
        .to_ascii_lowercase()
}

/// Percent-encodes the characters that would end the user info early for libpq or the
/// `url` crate (`/`, `?`, `#`, and `@` in an Azure-style user name); everything else (including existing `%XX` escapes) is kept.
fn encode_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '/' => out.push_str("%2F"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            '@' => out.push_str("%40"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes the characters SQLite's URI parser would treat specially in a path.
fn encode_sqlite_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "s3cr3t-PW";

    fn parse_any(s: &str) -> Result<DatabaseUrl> {
        DatabaseUrl::parse_unchecked(s, Base::Dir(Path::new("/srv/app")))
    }

    fn ok(s: &str) -> DatabaseUrl {
        match parse_any(s) {
            Ok(url) => url,
            Err(e) => panic!("{s} should parse: {e}"),
        }
    }

    fn err(s: &str) -> Error {
        match parse_any(s) {
            Ok(url) => panic!("{s} should not parse, got {url:?}"),
            Err(e) => e,
        }
    }

    fn assert_no_secret(text: &str) {
        assert!(!text.contains("s3cr3t"), "password leaked: {text}");
    }

    #[test]
    fn supported_schemes_text_lists_exactly_the_scheme_table() {
        let listed: Vec<&str> = SUPPORTED_SCHEMES.split(", ").collect();
        let table: Vec<&str> = SCHEMES.iter().map(|(name, _)| *name).collect();
        assert_eq!(listed, table);
    }

    #[test]
    fn backend_displays_as_its_dialect_name() {
        assert_eq!(Backend::Postgres.to_string(), "postgresql");
        assert_eq!(Backend::Mysql.to_string(), "mysql");
        assert_eq!(Backend::Sqlite.to_string(), "sqlite");
    }

    #[test]
    fn every_postgres_scheme_maps_to_a_libpq_url() {
        for scheme in [
            "postgresql",
            "postgres",
            "postgresql+psycopg2",
            "postgresql+psycopg",
            "postgresql+pg8000",
            "postgresql+asyncpg",
            "PostgreSQL",
        ] {
            let url = ok(&format!(
                "{scheme}://reader:{PW}@db.example:5433/myapp?sslmode=require"
            ));
            assert_eq!(url.backend(), Backend::Postgres);
            assert_eq!(
                url.connection_string(),
                format!("postgres://reader:{PW}@db.example:5433/myapp?sslmode=require")
            );
            assert_eq!(
                url.redacted(),
                "postgres://reader:***@db.example:5433/myapp?sslmode=require"
            );
            assert_eq!(url.database_name(), Some("myapp"));
            assert_eq!(url.sqlite_path(), None);
            assert!(!url.is_memory());
        }
    }

    #[test]
    fn every_mysql_scheme_maps_to_a_mysql_url() {
        for scheme in [
            "mysql",
            "mariadb",
            "mysql+pymysql",
            "mysql+mysqldb",
            "mysql+mariadbconnector",
            "mariadb+mariadbconnector",
            "mysql+aiomysql",
            "mysql+asyncmy",
        ] {
            let url = ok(&format!(
                "{scheme}://writer:{PW}@127.0.0.1/app?charset=utf8mb4"
            ));
            assert_eq!(url.backend(), Backend::Mysql);
            assert_eq!(
                url.connection_string(),
                format!("mysql://writer:{PW}@127.0.0.1/app?charset=utf8mb4")
            );
            assert_eq!(
                url.redacted(),
                "mysql://writer:***@127.0.0.1/app?charset=utf8mb4"
            );
            assert_eq!(url.database_name(), Some("app"));
        }
    }

    #[test]
    fn percent_encoded_passwords_survive_unchanged_for_both_postgres_spellings() {
        for scheme in ["postgres", "postgresql", "postgresql+psycopg2"] {
            let url = ok(&format!("{scheme}://u%40x:p%40ss%2Fw%25rd@h/db"));
            assert_eq!(
                url.connection_string(),
                "postgres://u%40x:p%40ss%2Fw%25rd@h/db"
            );
            assert_eq!(url.redacted(), "postgres://u%40x:***@h/db");
        }
        let url = ok("mysql://u:p%40ss%2Fw%25rd@h/db");
        assert_eq!(url.connection_string(), "mysql://u:p%40ss%2Fw%25rd@h/db");
    }

    #[test]
    fn raw_url_delimiters_in_a_password_are_percent_encoded() {
        let url = ok("postgresql://u:pa/ss?w#rd@h/db");
        assert_eq!(
            url.connection_string(),
            "postgres://u:pa%2Fss%3Fw%23rd@h/db"
        );
        assert_eq!(url.redacted(), "postgres://u:***@h/db");
        assert_eq!(url.database_name(), Some("db"));
    }

    #[test]
    fn server_urls_keep_user_host_port_and_query_forms() {
        assert_eq!(
            ok("postgresql://localhost/db").connection_string(),
            "postgres://localhost/db"
        );
        let no_db = ok("postgresql://u@localhost:5432");
        assert_eq!(no_db.connection_string(), "postgres://u@localhost:5432");
        assert_eq!(no_db.database_name(), None);
        assert_eq!(
            ok("postgresql://u@[::1]:5432/db").connection_string(),
            "postgres://u@[::1]:5432/db"
        );
        assert_eq!(
            ok("postgresql://u@h1:5432,h2:5433/db?target_session_attrs=read-write")
                .connection_string(),
            "postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write"
        );
        let empty_password = ok("postgresql://u:@h/db");
        assert_eq!(empty_password.connection_string(), "postgres://u:@h/db");
        assert_eq!(empty_password.redacted(), "postgres://u:***@h/db");
    }

    #[test]
    fn a_socket_in_the_query_replaces_the_host() {
        let pg = ok("postgresql:///myapp?host=/var/run/postgresql");
        assert_eq!(
            pg.connection_string(),
            "postgres:///myapp?host=/var/run/postgresql"
        );
        assert_eq!(pg.database_name(), Some("myapp"));
        let my = ok("mysql://root@/app?unix_socket=/run/mysqld/mysqld.sock");
        assert_eq!(
            my.connection_string(),
            "mysql://root@/app?unix_socket=/run/mysqld/mysqld.sock"
        );
    }

    #[test]
    fn password_query_parameters_are_redacted() {
        let url = ok(&format!(
            "postgresql://u@h/db?sslmode=require&password={PW}"
        ));
        assert_eq!(
            url.redacted(),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        assert_no_secret(&url.to_string());
        assert_no_secret(&format!("{url:?}"));
    }

    #[test]
    fn sqlite_relative_path_resolves_against_the_base_dir() {
        let url = ok("sqlite:///data/app.db");
        assert_eq!(url.backend(), Backend::Sqlite);
        assert_eq!(url.connection_string(), "file:/srv/app/data/app.db");
        assert_eq!(url.sqlite_path(), Some(Path::new("/srv/app/data/app.db")));
        assert_eq!(url.database_name(), Some("data/app.db"));
        assert!(!url.is_memory());
        let dotted = ok("sqlite:///./app.db");
        assert_eq!(dotted.sqlite_path(), Some(Path::new("/srv/app/app.db")));
    }

    #[test]
    fn sqlite_relative_path_without_base_uses_the_current_dir() -> Result<()> {
        let url = DatabaseUrl::parse_unchecked("sqlite:///app.db", Base::CurrentDir)?;
        let cwd = std::env::current_dir().expect("tests run in an existing directory");
        assert_eq!(url.sqlite_path(), Some(cwd.join("app.db").as_path()));
        Ok(())
    }

    #[test]
    fn sqlite_absolute_path_is_kept() {
        let url = ok("sqlite:////var/lib/app/app.db");
        assert_eq!(url.connection_string(), "file:/var/lib/app/app.db");
        assert_eq!(url.sqlite_path(), Some(Path::new("/var/lib/app/app.db")));
        let doubled = ok("sqlite://////var//app.db");
        assert_eq!(doubled.connection_string(), "file:/var/app.db");
    }

    #[test]
    fn sqlite_memory_forms() {
        for s in [
            "sqlite://",
            "sqlite:///",
            "sqlite:///:memory:",
            "sqlite+pysqlite:///:memory:",
        ] {
            let url = ok(s);
            assert!(url.is_memory(), "{s}");
            assert_eq!(url.connection_string(), ":memory:");
            assert_eq!(url.sqlite_path(), None);
            assert_eq!(url.database_name(), None);
            assert_eq!(url.read_only_connection_string(), None);
        }
        let shared = ok("sqlite:///:memory:?cache=shared");
        assert_eq!(shared.connection_string(), "file::memory:?cache=shared");
    }

    #[test]
    fn sqlite_query_parameters_are_kept_and_read_only_form_sets_mode_ro() {
        let url = ok("sqlite:///app.db?mode=rwc&cache=shared");
        assert_eq!(
            url.connection_string(),
            "file:/srv/app/app.db?mode=rwc&cache=shared"
        );
        assert_eq!(
            url.read_only_connection_string().as_deref(),
            Some("file:/srv/app/app.db?cache=shared&mode=ro")
        );
        let plain = ok("sqlite:////x.db");
        assert_eq!(
            plain.read_only_connection_string().as_deref(),
            Some("file:/x.db?mode=ro")
        );
        let ro = ok("sqlite:///app.db?mode=ro");
        assert_eq!(ro.connection_string(), "file:/srv/app/app.db?mode=ro");
        assert_eq!(ok("postgresql://h/db").read_only_connection_string(), None);
    }

    #[test]
    fn sqlalchemy_uri_switch_and_file_prefix_are_understood() {
        let url = ok("sqlite:///file:app.db?mode=ro&uri=true");
        assert_eq!(url.connection_string(), "file:/srv/app/app.db?mode=ro");
    }

    #[test]
    fn sqlite_paths_with_uri_special_characters_are_encoded() {
        // `%` and `#` are path characters in the SQLAlchemy URL, not escapes or fragments.
        let url = ok("sqlite:////tmp/50%#1.db?cache=shared");
        assert_eq!(
            url.connection_string(),
            "file:/tmp/50%25%231.db?cache=shared"
        );
        assert_eq!(url.sqlite_path(), Some(Path::new("/tmp/50%#1.db")));
    }

    #[test]
    fn empty_url_is_rejected() {
        for s in ["", "   "] {
            assert!(matches!(err(s), Error::InvalidUrl { .. }));
        }
    }

    #[test]
    fn url_without_scheme_separator_is_rejected_without_leaking() {
        let e = err(&format!("postgres:reader:{PW}@localhost/db"));
        assert!(matches!(e, Error::InvalidUrl { .. }));
        assert!(e.to_string().contains("missing `://`"), "{e}");
        assert_no_secret(&e.to_string());
        assert_no_secret(&format!("{e:?}"));
        let e = err("app.db");
        assert!(e.to_string().contains("`app.db`"), "{e}");
    }

    #[test]
    fn unknown_scheme_names_it_and_lists_supported_ones() {
        let e = err(&format!("oracle://scott:{PW}@db/orcl"));
        match &e {
            Error::UnknownScheme { scheme, supported } => {
                assert_eq!(scheme, "oracle");
                assert!(supported.contains("postgresql+psycopg2"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.to_string().contains("`oracle`"));
        assert_no_secret(&e.to_string());
        assert_no_secret(&format!("{e:?}"));
    }

    #[test]
    fn postgres_urls_without_a_host_are_left_to_libpq_default_socket() {
        for (written, connection) in [
            ("postgresql:///db", "postgres:///db"),
            ("postgresql://reader@/db", "postgres://reader@/db"),
            (
                "postgresql+psycopg2:///db?user=app",
                "postgres:///db?user=app",
            ),
        ] {
            let url = ok(written);
            assert_eq!(url.connection_string(), connection);
            assert_eq!(url.database_name(), Some("db"));
        }
        assert_eq!(
            ok(&format!("postgresql://reader:{PW}@/db")).redacted(),
            "postgres://reader:***@/db"
        );
    }

    #[test]
    fn missing_host_is_rejected_without_leaking() {
        for s in [
            format!("mysql://reader:{PW}@/db"),
            "mariadb:///db".to_owned(),
            format!("postgresql://reader:{PW}@:5432/db"),
        ] {
            let e = err(&s);
            assert!(matches!(e, Error::InvalidUrl { .. }), "{s}: {e:?}");
            assert!(e.to_string().contains("host"), "{e}");
            assert_no_secret(&e.to_string());
            assert_no_secret(&format!("{e:?}"));
        }
    }

    #[test]
    fn malformed_port_is_rejected_without_leaking() {
        for s in [
            format!("postgresql://reader:{PW}@localhost:54x2/db"),
            format!("postgresql://reader:{PW}@localhost:/db"),
            format!("postgresql://reader:{PW}@localhost:99999/db"),
            format!("postgresql://reader:{PW}@localhost:0/db"),
            format!("mysql://reader:{PW}@[::1]:abc/db"),
            // No `@`: the password reads as the port.
            format!("postgresql://reader:{PW}/db"),
            format!("postgresql://reader:{PW}"),
        ] {
            let e = err(&s);
            assert!(matches!(e, Error::InvalidUrl { .. }), "{s}: {e:?}");
            assert!(e.to_string().contains("port"), "{e}");
            assert_no_secret(&e.to_string());
            assert_no_secret(&format!("{e:?}"));
        }
    }

    #[test]
    fn raw_at_sign_in_password_is_rejected_without_leaking() {
        let e = err("postgresql://reader:s3c@r3t-PW@localhost/db");
        assert!(e.to_string().contains("%40"), "{e}");
        assert_no_secret(&e.to_string());
        assert_no_secret(&format!("{e:?}"));
    }

    #[test]
    fn other_bad_hosts_are_rejected() {
        for s in [
            format!("mysql://u:{PW}@h1,h2/db"),
            format!("postgresql://u:{PW}@[::1/db"),
            format!("postgresql://u:{PW}@[::1]x/db"),
            format!("postgresql://u:{PW}@my host/db"),
        ] {
            let e = err(&s);
            assert!(matches!(e, Error::InvalidUrl { .. }), "{s}: {e:?}");
            assert_no_secret(&e.to_string());
        }
    }

    #[test]
    fn sqlite_url_with_a_host_is_rejected() {
        let e = err("sqlite://app.db");
        assert!(e.to_string().contains("sqlite:///relative/path.db"), "{e}");
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn postgres_url_without_the_feature_names_the_feature() {
        let e = DatabaseUrl::parse(&format!("postgresql://u:{PW}@h/db"))
            .expect_err("the postgres feature is off");
        assert!(matches!(
            e,
            Error::BackendNotEnabled {
                backend: Backend::Postgres,
                feature: "postgres"
            }
        ));
        assert!(e.to_string().contains("`postgres`"));
        assert_no_secret(&e.to_string());
    }

    #[cfg(not(feature = "mysql"))]
    #[test]
    fn mysql_url_without_the_feature_names_the_feature() {
        let e = DatabaseUrl::parse("mariadb://u@h/db").expect_err("the mysql feature is off");
        assert!(matches!(
            e,
            Error::BackendNotEnabled {
                backend: Backend::Mysql,
                feature: "mysql"
            }
        ));
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn public_parse_accepts_sqlite_with_the_default_feature() -> Result<()> {
        let url: DatabaseUrl = "sqlite://".parse()?;
        assert!(url.is_memory());
        Ok(())
    }

    /// The translated URLs open the intended files with Diesel, and the read-only form
    /// refuses writes.
    #[cfg(feature = "sqlite")]
    #[test]
    fn diesel_opens_the_translated_sqlite_urls() {
        use diesel::sqlite::SqliteConnection;
        use diesel::{Connection, RunQueryDsl};

        let base = std::env::temp_dir().join(format!("sqlassist-url-{}", std::process::id()));
        std::fs::create_dir_all(base.join("sub dir")).expect("temp dir is writable");
        let url = DatabaseUrl::parse_with_base("sqlite:///sub dir/50%#1.db?mode=rwc", &base)
            .expect("valid url");
        let mut conn =
            SqliteConnection::establish(url.connection_string()).expect("opens read-write");
        diesel::sql_query("CREATE TABLE t (x INTEGER)")
            .execute(&mut conn)
            .expect("writable");
        assert!(base.join("sub dir/50%#1.db").is_file());

        let read_only = url
            .read_only_connection_string()
            .expect("a file has a read-only form");
        let mut ro = SqliteConnection::establish(&read_only).expect("opens read-only");
        let denied = diesel::sql_query("INSERT INTO t VALUES (1)")
            .execute(&mut ro)
            .expect_err("read-only");
        assert!(denied.to_string().contains("readonly"), "{denied}");

        let memory = DatabaseUrl::parse("sqlite://").expect("valid url");
        SqliteConnection::establish(memory.connection_string()).expect("opens in memory");
        drop((conn, ro));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn debug_and_display_show_only_the_redacted_form() {
        let url = ok(&format!("postgresql://reader:{PW}@h/db"));
        assert_eq!(url.to_string(), "postgres://reader:***@h/db");
        assert_eq!(
            format!("{url:?}"),
            "DatabaseUrl(\"postgres://reader:***@h/db\")"
        );
    }

    #[test]
    fn sqlite_query_secrets_are_redacted() {
        for s in [
            "sqlite://?password=s3cr3t",
            "sqlite:///app.db?key=s3cr3t&mode=rwc",
            "sqlite+pysqlite:////var/app.db?cache=shared&auth_token=s3cr3t",
        ] {
            let url = ok(s);
            assert!(url.connection_string().contains("s3cr3t"), "{s}");
            assert_no_secret(&url.to_string());
            assert_no_secret(&format!("{url:?}"));
        }
        assert_eq!(
            ok("sqlite://?password=s3cr3t").redacted(),
            "file::memory:?password=***"
        );
    }

    #[test]
    fn query_parameters_named_like_secrets_are_redacted() {
        for (param, shown) in [
            ("sslpassword", "sslpassword=***"),
            ("client_secret", "client_secret=***"),
            ("auth_token", "auth_token=***"),
            ("api_key", "api_key=***"),
            ("PassWord", "PassWord=***"),
            ("pass%77ord", "pass%77ord=***"),
        ] {
            let url = ok(&format!(
                "postgresql://u@h/db?sslmode=require&{param}={PW}&application_name=app"
            ));
            assert_eq!(
                url.redacted(),
                format!("postgres://u@h/db?sslmode=require&{shown}&application_name=app")
            );
            assert_no_secret(&format!("{url} {url:?}"));
        }
    }

    #[test]
    fn an_at_sign_in_the_query_hides_no_secret_parameter() {
        let url = ok(&format!(
            "postgresql://app@db:5432/app?sslcert=/home/me@corp/c.crt&sslpassword={PW}"
        ));
        assert_eq!(
            url.redacted(),
            "postgres://app@db:5432/app?sslcert=/home/me@corp/c.crt&sslpassword=***"
        );
        assert_eq!(url.database_name(), Some("app"));
        let e = err(&format!("postgresql://u@h:x/db?a=@&password={PW}"));
        assert!(matches!(e, Error::InvalidUrl { .. }), "{e:?}");
        assert_no_secret(&format!("{e} {e:?}"));
    }

    #[test]
    fn a_raw_at_sign_in_the_user_name_is_read_as_azure_writes_it() {
        let url = ok(&format!("postgresql://user@server:{PW}@host/db"));
        assert_eq!(
            url.connection_string(),
            format!("postgres://user%40server:{PW}@host/db")
        );
        assert_eq!(url.redacted(), "postgres://user%40server:***@host/db");
        assert_eq!(url.password(), Some(PW));
        assert_eq!(url.database_name(), Some("db"));
        let no_password = ok("mysql://user@server@host/db");
        assert_eq!(
            no_password.connection_string(),
            "mysql://user%40server@host/db"
        );
    }

    #[test]
    fn a_raw_colon_in_the_password_is_part_of_it() {
        let url = ok("postgresql://u:s3:cr3t@h:5432/db");
        assert_eq!(url.password(), Some("s3:cr3t"));
        assert_eq!(url.redacted(), "postgres://u:***@h:5432/db");
    }

    #[test]
    fn userinfo_with_raw_delimiters_asks_for_percent_encoding_without_leaking() {
        for s in [
            // A raw `@` in the password.
            format!("postgresql://u:p@ss{PW}@host/db"),
            // Raw `@` and `:` in the password: not "the port is not a number".
            format!("postgresql://u:p@ss:{PW}@host/db"),
            format!("postgresql://u:p@ss:wo/rd{PW}@host/db"),
            format!("mysql://u:p@ss:1{PW}@host:3306/db"),
            // A raw `/` in the user name.
            format!("postgresql://u/x:{PW}@host/db"),
        ] {
            let e = err(&s);
            assert!(matches!(e, Error::InvalidUrl { .. }), "{s}: {e:?}");
            let text = e.to_string();
            assert!(text.contains("percent-encode"), "{s}: {text}");
            assert!(!text.contains("port"), "{s}: {text}");
            assert_no_secret(&format!("{e} {e:?}"));
        }
    }

    #[test]
    fn redact_url_str_hides_passwords_in_malformed_strings() {
        for (input, expected) in [
            ("postgres://u:s3cr3t-PW@h/db", "postgres://u:***@h/db"),
            ("postgres://u:s3c@r3t-PW@h/db", "postgres://u:***@h/db"),
            ("postgres://u:s3cr3t-PW", "postgres://u:***"),
            ("postgres://u:s3cr3t-PW/x", "postgres://u:***"),
            ("postgres://h:5432/db", "postgres://h:5432/db"),
            (
                "postgres://u@h/db?password=s3cr3t-PW",
                "postgres://u@h/db?password=***",
            ),
            ("u:s3cr3t-PW@h", "u:***"),
            ("sqlite:///x.db", "sqlite:///x.db"),
            ("", ""),
        ] {
            assert_eq!(redact::url(input), expected, "{input}");
        }
    }
}
