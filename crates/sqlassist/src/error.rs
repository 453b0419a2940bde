//! The crate's error type.
//!
//! One `#[non_exhaustive]` enum, [`Error`], whose variants are the cases a caller branches
//! on. Messages are lowercase, carry no trailing period, and never contain a password:
//! URLs are redacted before they are stored in a variant, and the value of a setting whose
//! key ends in `url` or `password` is never echoed.

use std::path::PathBuf;

use crate::url::Backend;

/// Errors from parsing database URLs, loading settings and reading engine options.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A database URL could not be understood.
    ///
    /// `url` is already redacted (password replaced by `***`); `reason` says what is wrong
    /// and never quotes the password or the offending port text.
    #[error("invalid database url `{url}`: {reason}")]
    InvalidUrl {
        /// The URL with its password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A database URL names a scheme (dialect) this crate does not know.
    #[error("unknown database url scheme `{scheme}`; supported schemes: {supported}")]
    UnknownScheme {
        /// The scheme as written, before `://`.
        scheme: String,
        /// Every scheme this crate accepts, comma separated.
        supported: &'static str,
    },

    /// A database URL is for a backend whose cargo feature was not enabled.
    #[error(
        "the {backend} backend is not compiled in: enable the cargo feature `{feature}` of sqlassist"
    )]
    BackendNotEnabled {
        /// The backend the URL asks for.
        backend: Backend,
        /// The cargo feature of `sqlassist` that enables it.
        feature: &'static str,
    },

    /// A required setting is absent.
    #[error("missing setting `{key}`")]
    MissingSetting {
        /// The full key, such as `sqlalchemy_reader.url`.
        key: String,
    },

    /// A setting has a value that cannot be used.
    ///
    /// Build it with `Error::invalid_setting`, which hides the value of `url` and `password`
    /// keys.
    #[error("invalid value {value:?} for setting `{key}`: expected {expected}")]
    InvalidSetting {
        /// The full key, such as `sqlalchemy_reader.pool_size`.
        key: String,
        /// The value as given (`***` for keys ending in `url` or `password`).
        value: String,
        /// What the setting accepts.
        expected: &'static str,
    },

    /// A key under an engine prefix is not a known option (usually a typo).
    #[error("unknown setting `{key}`; known keys under this prefix: {known}")]
    UnknownSetting {
        /// The full key, such as `sqlalchemy_reader.pool_sise`.
        key: String,
        /// The known option names, comma separated.
        known: String,
    },

    /// The `config` crate failed while layering settings sources.
    #[error("cannot load settings")]
    Settings {
        /// The error from the `config` crate.
        #[source]
        source: config::ConfigError,
    },

    /// A settings file could not be read.
    #[error("cannot read settings file `{}`", path.display())]
    SettingsFile {
        /// The file as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A settings file or string is malformed.
    ///
    /// `reason` never quotes the offending line, which might hold a password.
    #[error("invalid settings in {path_or_origin}, line {line}: {reason}")]
    SettingsSyntax {
        /// The file path, or a description such as `INI text` for a string source.
        path_or_origin: String,
        /// The 1-based line number (0 when unknown).
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// An INI source has no section of the requested name.
    #[error("no section [{section}] in {path_or_origin}; sections found: {found}")]
    MissingSection {
        /// The file path, or a description such as `INI text` for a string source.
        path_or_origin: String,
        /// The section asked for, such as `app:main`.
        section: String,
        /// The sections present, comma separated.
        found: String,
    },
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::InvalidSetting`] that never echoes the value of a secret key.
    ///
    /// Keys ending in `url` or `password` (case-insensitive) get `***` as their value.
    pub(crate) fn invalid_setting(
        key: impl Into<String>,
        value: &str,
        expected: &'static str,
    ) -> Self {
        let key = key.into();
        let value = if is_secret_key(&key) {
            "***".to_owned()
        } else {
            value.to_owned()
        };
        Error::InvalidSetting {
            key,
            value,
            expected,
        }
    }
}

/// Whether a setting's value may hold a password: keys ending in `url` or `password`.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.ends_with("url") || key.ends_with("password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_setting_hides_values_of_url_and_password_keys() {
        let err = Error::invalid_setting("db.url", "postgres://u:s3cr3t-PW@h/d", "a url");
        assert!(!err.to_string().contains("s3cr3t"));
        assert!(!format!("{err:?}").contains("s3cr3t"));
        let err = Error::invalid_setting("db.Password", "s3cr3t-PW", "text");
        assert!(!err.to_string().contains("s3cr3t"));
        let err = Error::invalid_setting("db.pool_size", "ten", "a positive integer");
        assert_eq!(
            err.to_string(),
            "invalid value \"ten\" for setting `db.pool_size`: expected a positive integer"
        );
    }

    #[test]
    fn error_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }

    #[test]
    fn backend_not_enabled_names_the_feature() {
        let err = Error::BackendNotEnabled {
            backend: Backend::Postgres,
            feature: "postgres",
        };
        assert_eq!(
            err.to_string(),
            "the postgresql backend is not compiled in: enable the cargo feature `postgres` of sqlassist"
        );
    }
}
