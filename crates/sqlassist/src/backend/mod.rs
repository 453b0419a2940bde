//! The database products sqlassist talks to.

use std::fmt;

#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

/// A database backend, chosen from the URL scheme.
///
/// # Examples
///
/// ```
/// use sqlassist::{Backend, DatabaseUrl};
///
/// let url = DatabaseUrl::parse("sqlite://")?;
/// assert_eq!(url.backend(), Backend::Sqlite);
/// // `Display` gives the dialect name, as in SQLAlchemy URLs.
/// assert_eq!(Backend::Postgres.to_string(), "postgresql");
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// PostgreSQL through libpq (`postgresql://`). Cargo feature `postgres`.
    Postgres,
    /// MySQL or MariaDB through libmysqlclient/libmariadb (`mysql://`). Cargo feature `mysql`.
    Mysql,
    /// SQLite, bundled or system (`sqlite://`). Cargo feature `sqlite`.
    Sqlite,
}

impl Backend {
    /// The cargo feature of `sqlassist` that compiles this backend in.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Backend;
    /// assert_eq!(Backend::Postgres.feature(), "postgres");
    /// ```
    pub fn feature(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
            Backend::Sqlite => "sqlite",
        }
    }

    /// Whether this build of `sqlassist` has the backend's cargo feature enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Backend;
    /// // `sqlite` is a default feature.
    /// assert!(Backend::Sqlite.is_enabled());
    /// ```
    pub fn is_enabled(self) -> bool {
        match self {
            Backend::Postgres => cfg!(feature = "postgres"),
            Backend::Mysql => cfg!(feature = "mysql"),
            Backend::Sqlite => cfg!(feature = "sqlite"),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "postgresql",
            Backend::Mysql => "mysql",
            Backend::Sqlite => "sqlite",
        })
    }
}
