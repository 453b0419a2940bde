//! Settings: a flat map of string keys to string values, plus the base directory `here`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use config::{ConfigError, FileFormat, FileStoredFormat, Map, Source, Value, ValueKind};

use crate::error::{Error, Result};
use crate::ini::PasteIni;
use crate::redact;

/// The single top-level key under which every source hands its flat map to `config`, so
/// that `config` never splits a dotted key into a path.
const ROOT: &str = "settings";

/// A flat map of settings, with the directory relative paths are resolved against.
///
/// Pyramid hands an application its settings as a flat dictionary whose keys are literal
/// dotted strings (`sqlalchemy_reader.url`, `sqlalchemy_reader.pool_size`), read from the
/// `[app:main]` section of an INI file. [`Settings`] is that dictionary. It is built by
/// layering sources through the `config` crate with [`Settings::builder`]:
///
/// - **Pyramid/PasteDeploy INI** ([`SettingsBuilder::ini_file`], [`SettingsBuilder::ini_str`]):
///   one section is read (`[app:main]`, say), with Python `configparser` rules: `key = value`
///   or `key: value` (split at the first `=` or `:`); full-line comments starting with `#` or
///   `;` (there are no inline comments: `a = b # c` keeps `b # c`); a value continues on
///   the following lines indented deeper than its key, joined with `\n`; keys are
///   lowercased, values trimmed; `[DEFAULT]` keys apply to every section unless the section
///   sets them too; `%(name)s` is replaced by the value of `name` from the same section or
///   `[DEFAULT]`, `%(here)s` by the directory of the file and `%(__file__)s` by its path, and
///   `%%` is a literal `%`. Any other `%` is an error, as in Pyramid, so a percent-encoded
///   password in an INI file is written `p%%40ss`. A duplicate key in a section or a
///   duplicate section is an error. The resulting settings hold the section's keys and the
///   `[DEFAULT]` keys (what `pyramid.paster.get_appsettings` returns), without the
///   built-in `here` and `__file__`.
/// - **TOML** ([`SettingsBuilder::toml_file`], [`SettingsBuilder::toml_str`]): tables are
///   flattened to dotted keys, so `[sqlalchemy_writer]` + `url = "…"` gives
///   `sqlalchemy_writer.url`, as does the quoted top-level key `"sqlalchemy_writer.url"`.
///   Numbers and booleans become their text (`10`, `true`), arrays become their elements
///   joined with `\n` (Pyramid's multi-line list form). Keys keep their case.
/// - **A plain map** ([`SettingsBuilder::pairs`]), keys taken literally.
/// - **Environment overrides** ([`SettingsBuilder::env_overrides`]): with prefix `SQLASSIST`,
///   the variable `SQLASSIST__SQLALCHEMY_WRITER__URL` sets `sqlalchemy_writer.url`. The name
///   after `PREFIX__` is lowercased and every `__` in it becomes `.`; single `_` stay. The
///   prefix is matched case-insensitively. Keys with upper-case letters, `-` or `:` cannot be
///   set this way. Environment overrides are applied after every other source, whatever the
///   order of the builder calls, so the environment always wins.
///
/// Sources are applied in the order they were added (environment last) and a later source
/// wins key by key. Each source is flattened to literal dotted keys *before* it reaches the
/// `config` crate's merge, so `sqlalchemy_writer.url` from an INI file, from a TOML table and
/// from the environment are one and the same key.
///
/// # Examples
///
/// ```
/// use sqlassist::Settings;
///
/// let ini = "
/// [app:main]
/// use = egg:myapp
/// sqlalchemy_reader.url = sqlite:///%(here)s/app.db?mode=ro
/// sqlalchemy_writer.url = sqlite:///app.db
/// sqlalchemy_writer.pool_size = 5
/// ";
/// let settings = Settings::from_ini_str(ini, "app:main", "/srv/myapp")?;
/// assert_eq!(settings.get("sqlalchemy_writer.pool_size"), Some("5"));
/// assert_eq!(
///     settings.require("sqlalchemy_reader.url")?,
///     "sqlite:////srv/myapp/app.db?mode=ro"
/// );
/// assert_eq!(
///     settings.engine_prefixes(),
///     ["sqlalchemy_reader.", "sqlalchemy_writer."]
/// );
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<String, String>,
    here: PathBuf,
}

impl Settings {
    /// A builder that layers INI, TOML, map and environment sources.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    ///
    /// let settings = Settings::builder()
    ///     .toml_str("[sqlalchemy]\nurl = \"sqlite://\"\npool_size = 4\n")
    ///     .pairs([("sqlalchemy.pool_size", "8")])
    ///     .env_overrides("MYAPP_DOCS_EXAMPLE")
    ///     .here("/srv/myapp")
    ///     .build()?;
    /// assert_eq!(settings.get("sqlalchemy.pool_size"), Some("8"));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn builder() -> SettingsBuilder {
        SettingsBuilder::default()
    }

    /// Reads one section (such as `app:main`) of a Pyramid-style INI file; `here` is the
    /// file's directory.
    ///
    /// # Errors
    ///
    /// [`Error::SettingsFile`] if the file cannot be read, [`Error::SettingsSyntax`] for a
    /// malformed line or interpolation, [`Error::MissingSection`] if the section is absent.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, Settings};
    ///
    /// let dir = std::env::temp_dir().join(format!("sqlassist-doc-ini-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("production.ini");
    /// std::fs::write(&path, "[app:main]\nsqlalchemy.url = sqlite:///%(here)s/app.db\n")?;
    ///
    /// let settings = Settings::from_ini_file(&path, "app:main")?;
    /// assert_eq!(settings.here(), dir);
    /// let expected = format!("sqlite:///{}/app.db", dir.display());
    /// assert_eq!(settings.get("sqlalchemy.url"), Some(expected.as_str()));
    /// assert!(matches!(
    ///     Settings::from_ini_file(&path, "app:other"),
    ///     Err(Error::MissingSection { .. })
    /// ));
    /// std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_ini_file(path: impl AsRef<Path>, section: &str) -> Result<Self> {
        Self::builder().ini_file(path, section).build()
    }

    /// Reads one section of Pyramid-style INI text; `here` gives `%(here)s` and the base
    /// directory.
    ///
    /// # Errors
    ///
    /// [`Error::SettingsSyntax`] for a malformed line or interpolation,
    /// [`Error::MissingSection`] if the section is absent.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    /// let ini = "[DEFAULT]\ndb = app\n\n[app:main]\nsqlalchemy.url = sqlite:///%(db)s.db\n";
    /// let settings = Settings::from_ini_str(ini, "app:main", "/srv")?;
    /// assert_eq!(settings.get("sqlalchemy.url"), Some("sqlite:///app.db"));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn from_ini_str(text: &str, section: &str, here: impl AsRef<Path>) -> Result<Self> {
        let here = here.as_ref();
        Self::builder()
            .ini_str(text, section, here)
            .here(here)
            .build()
    }

    /// Reads a TOML file, tables flattened to dotted keys; `here` is the file's directory.
    ///
    /// # Errors
    ///
    /// [`Error::SettingsFile`] if the file cannot be read, [`Error::SettingsSyntax`] if it is
    /// not valid TOML or holds a list of tables.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, Settings};
    ///
    /// let dir = std::env::temp_dir().join(format!("sqlassist-doc-toml-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("settings.toml");
    /// std::fs::write(&path, "[sqlalchemy_writer]\nurl = \"sqlite:///app.db\"\npool_size = 5\n")?;
    ///
    /// let settings = Settings::from_toml_file(&path)?;
    /// assert_eq!(settings.get("sqlalchemy_writer.pool_size"), Some("5"));
    /// assert_eq!(settings.here(), dir);
    /// assert!(matches!(
    ///     Settings::from_toml_file(dir.join("missing.toml")),
    ///     Err(Error::SettingsFile { .. })
    /// ));
    /// std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder().toml_file(path).build()
    }

    /// Reads TOML text, tables flattened to dotted keys.
    ///
    /// # Errors
    ///
    /// [`Error::SettingsSyntax`] if the text is not valid TOML or holds a list of tables.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    /// let toml = r#"
    /// "sqlalchemy_reader.url" = "sqlite:///app.db"
    /// [sqlalchemy_writer]
    /// url = "sqlite:///app.db"
    /// pool_pre_ping = false
    /// "#;
    /// let settings = Settings::from_toml_str(toml, "/srv")?;
    /// assert_eq!(settings.get("sqlalchemy_writer.pool_pre_ping"), Some("false"));
    /// assert_eq!(settings.engine_prefixes().len(), 2);
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn from_toml_str(text: &str, here: impl AsRef<Path>) -> Result<Self> {
        Self::builder().toml_str(text).here(here).build()
    }

    /// Settings from literal key/value pairs; `here` is the current directory.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    /// let settings = Settings::from_pairs([("sqlalchemy.url", "sqlite://")]);
    /// assert_eq!(settings.get("sqlalchemy.url"), Some("sqlite://"));
    /// ```
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Settings {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            here: current_dir(),
        }
    }

    /// The value of `key`, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    ///
    /// let settings = Settings::from_pairs([("sqlalchemy.url", "sqlite://")]);
    /// assert_eq!(settings.get("sqlalchemy.url"), Some("sqlite://"));
    /// assert_eq!(settings.get("sqlalchemy.echo"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of `key`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingSetting`] naming the key if it is not set.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, Settings};
    ///
    /// let settings = Settings::from_pairs([("sqlalchemy.url", "sqlite://")]);
    /// assert_eq!(settings.require("sqlalchemy.url")?, "sqlite://");
    /// assert!(matches!(
    ///     settings.require("sqlalchemy.echo"),
    ///     Err(Error::MissingSetting { key }) if key == "sqlalchemy.echo"
    /// ));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| Error::MissingSetting {
            key: key.to_owned(),
        })
    }

    /// Every key starting with `prefix`, as `(rest of the key, value)`, in key order.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    /// let settings = Settings::from_pairs([
    ///     ("sqlalchemy.url", "sqlite://"),
    ///     ("sqlalchemy.echo", "true"),
    ///     ("sqlalchemy_reader.url", "sqlite://"),
    /// ]);
    /// let keys: Vec<_> = settings.keys_with_prefix("sqlalchemy.").collect();
    /// assert_eq!(keys, [("echo", "true"), ("url", "sqlite://")]);
    /// ```
    pub fn keys_with_prefix(&self, prefix: &str) -> impl Iterator<Item = (&str, &str)> + '_ {
        let prefix = prefix.to_owned();
        let len = prefix.len();
        self.values
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(&prefix))
            // Every key here starts with the prefix, so `len` is a char boundary.
            .map(move |(key, value)| (&key[len..], value.as_str()))
    }

    /// Directory that relative paths (SQLite files) are resolved against: the directory of
    /// the settings file, or the one given to the builder, or the current directory.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    /// use std::path::Path;
    ///
    /// let settings = Settings::from_ini_str("[app:main]\nsqlalchemy.url = sqlite:///app.db\n", "app:main", "/srv/myapp")?;
    /// assert_eq!(settings.here(), Path::new("/srv/myapp"));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn here(&self) -> &Path {
        &self.here
    }

    /// The engine prefixes these settings describe, sorted, as SQLAlchemy applications
    /// name them: `sqlalchemy.` and every `sqlalchemy_<name>.` under which a key is set.
    /// Other prefixes (`redis.`, `cache.`) belong to other services.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    ///
    /// let settings = Settings::from_pairs([
    ///     ("sqlalchemy_writer.url", "sqlite://"),
    ///     ("sqlalchemy_writer.pool_size", "5"),
    ///     ("sqlalchemy_reader.url", "sqlite://"),
    ///     ("cache.url", "memcached://127.0.0.1:11211"), // not an engine
    /// ]);
    /// assert_eq!(settings.engine_prefixes(), ["sqlalchemy_reader.", "sqlalchemy_writer."]);
    /// ```
    pub fn engine_prefixes(&self) -> Vec<String> {
        crate::registry::engine_prefixes(self, &[])
    }

    /// Every `(key, value)` in key order.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    ///
    /// let settings = Settings::from_pairs([("b.url", "sqlite://"), ("a.url", "sqlite://")]);
    /// let keys: Vec<&str> = settings.iter().map(|(key, _)| key).collect();
    /// assert_eq!(keys, ["a.url", "b.url"]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of keys.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    ///
    /// let settings = Settings::from_pairs([("a.url", "sqlite://"), ("a.echo", "true")]);
    /// assert_eq!(settings.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no keys at all.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    ///
    /// assert!(Settings::from_pairs(Vec::<(String, String)>::new()).is_empty());
    /// assert!(!Settings::from_pairs([("a.url", "sqlite://")]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for Settings {
    /// Values of keys ending in `url` have their password redacted; values of keys ending
    /// in `password` are replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted<'a>(&'a BTreeMap<String, String>);
        impl fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(k, v)| (k, redact::setting(k, v))))
                    .finish()
            }
        }
        f.debug_struct("Settings")
            .field("here", &self.here)
            .field("values", &Redacted(&self.values))
            .finish()
    }
}

/// Layers settings sources through the `config` crate; see [`Settings`] for the formats.
///
/// # Examples
///
/// A file's settings, then the deployment's environment on top:
///
/// ```
/// use sqlassist::Settings;
///
/// std::env::set_var("MYAPP_DOC__SQLALCHEMY_WRITER__POOL_SIZE", "20");
/// let settings = Settings::builder()
///     .env_overrides("MYAPP_DOC")
///     .ini_str(
///         "[app:main]\nsqlalchemy_writer.url = sqlite://\nsqlalchemy_writer.pool_size = 5\n",
///         "app:main",
///         "/srv/myapp",
///     )
///     .build()?;
/// assert_eq!(settings.get("sqlalchemy_writer.pool_size"), Some("20")); // the environment wins
/// assert_eq!(settings.get("sqlalchemy_writer.url"), Some("sqlite://"));
/// # Ok::<(), sqlassist::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SettingsBuilder {
    layers: Vec<Layer>,
    env_prefixes: Vec<String>,
    here: Option<PathBuf>,
}

impl SettingsBuilder {
    /// Adds one section (such as `app:main`) of a Pyramid-style INI file. The file is read
    /// by [`build`](Self::build); `%(here)s` is its directory.
    ///
    /// # Examples
    ///
    /// The file is read by `build`, not here:
    ///
    /// ```
    /// use sqlassist::{Error, Settings};
    ///
    /// let builder = Settings::builder().ini_file("/nonexistent-sqlassist-doc/app.ini", "app:main");
    /// assert!(matches!(builder.build(), Err(Error::SettingsFile { .. })));
    /// ```
    pub fn ini_file(mut self, path: impl AsRef<Path>, section: &str) -> Self {
        self.layers.push(Layer::IniFile {
            path: path.as_ref().to_path_buf(),
            section: section.to_owned(),
        });
        self
    }

    /// Adds one section of Pyramid-style INI text; `here` is the value of `%(here)s`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    ///
    /// let settings = Settings::builder()
    ///     .ini_str("[app:main]\nsqlalchemy.url = sqlite:///%(here)s/app.db\n", "app:main", "/srv/myapp")
    ///     .build()?;
    /// assert_eq!(settings.get("sqlalchemy.url"), Some("sqlite:////srv/myapp/app.db"));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn ini_str(mut self, text: &str, section: &str, here: impl AsRef<Path>) -> Self {
        self.layers.push(Layer::IniText {
            text: text.to_owned(),
            section: section.to_owned(),
            here: here.as_ref().to_path_buf(),
        });
        self
    }

    /// Adds a TOML file, tables flattened to dotted keys. The file is read by
    /// [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// The file is read by `build`, not here:
    ///
    /// ```
    /// use sqlassist::{Error, Settings};
    ///
    /// let builder = Settings::builder().toml_file("/nonexistent-sqlassist-doc/settings.toml");
    /// assert!(matches!(builder.build(), Err(Error::SettingsFile { .. })));
    /// ```
    pub fn toml_file(mut self, path: impl AsRef<Path>) -> Self {
        self.layers.push(Layer::TomlFile {
            path: path.as_ref().to_path_buf(),
        });
        self
    }

    /// Adds TOML text, tables flattened to dotted keys.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    ///
    /// let settings = Settings::builder()
    ///     .toml_str("[sqlalchemy]\nurl = \"sqlite://\"\npool_pre_ping = false\nhosts = [\"a\", \"b\"]\n")
    ///     .build()?;
    /// assert_eq!(settings.get("sqlalchemy.pool_pre_ping"), Some("false"));
    /// assert_eq!(settings.get("sqlalchemy.hosts"), Some("a\nb")); // arrays: one item a line
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn toml_str(mut self, text: &str) -> Self {
        self.layers.push(Layer::TomlText {
            text: text.to_owned(),
        });
        self
    }

    /// Adds literal key/value pairs.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    ///
    /// let settings = Settings::builder()
    ///     .pairs([("sqlalchemy.url", "sqlite://"), ("sqlalchemy.pool_size", "4")])
    ///     .pairs([("sqlalchemy.pool_size", "8")]) // a later source wins
    ///     .build()?;
    /// assert_eq!(settings.get("sqlalchemy.pool_size"), Some("8"));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn pairs<I, K, V>(mut self, pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.layers.push(Layer::Pairs(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        ));
        self
    }

    /// Lets environment variables `PREFIX__KEY__PART` override the key `key.part`.
    ///
    /// The part after `PREFIX__` is lowercased and each `__` becomes `.`, so with prefix
    /// `SQLASSIST`, `SQLASSIST__SQLALCHEMY_WRITER__URL` sets `sqlalchemy_writer.url`. The
    /// environment is read by [`build`](Self::build) and always wins over the other sources,
    /// whatever the order of the calls. The prefix must not be empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, Settings};
    ///
    /// std::env::set_var("MYAPP_DOC__SQLALCHEMY_WRITER__URL", "sqlite://");
    /// let settings = Settings::builder()
    ///     .env_overrides("MYAPP_DOC")
    ///     .pairs([("sqlalchemy_writer.url", "sqlite:///app.db")]) // added later, still loses
    ///     .build()?;
    /// assert_eq!(settings.get("sqlalchemy_writer.url"), Some("sqlite://"));
    ///
    /// assert!(matches!(Settings::builder().env_overrides("").build(), Err(Error::Settings { .. })));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn env_overrides(mut self, prefix: &str) -> Self {
        self.env_prefixes.push(prefix.to_owned());
        self
    }

    /// Sets the base directory for relative paths (made absolute against the current
    /// directory).
    ///
    /// Default: the directory of the first INI or TOML file added (or the `here` of the
    /// first INI text), else the current directory. It does not change `%(here)s`, which is
    /// always the directory of the INI file being read.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::Settings;
    /// use std::path::Path;
    ///
    /// let settings = Settings::builder()
    ///     .ini_str("[app:main]\nsqlalchemy.url = sqlite:///%(here)s/app.db\n", "app:main", "/srv/a")
    ///     .here("/srv/b")
    ///     .build()?;
    /// assert_eq!(settings.here(), Path::new("/srv/b"));
    /// // `%(here)s` stays the INI text's own directory.
    /// assert_eq!(settings.get("sqlalchemy.url"), Some("sqlite:////srv/a/app.db"));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn here(mut self, dir: impl AsRef<Path>) -> Self {
        self.here = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Reads every source and merges them, later sources winning, environment last.
    ///
    /// # Errors
    ///
    /// [`Error::SettingsFile`] for a file that cannot be read, [`Error::SettingsSyntax`]
    /// for malformed INI or TOML, [`Error::MissingSection`] for an absent INI section,
    /// [`Error::Settings`] for an empty environment prefix or a non-Unicode environment
    /// variable under the prefix.
    ///
    /// # Examples
    ///
    /// ```
    /// use sqlassist::{Error, Settings};
    ///
    /// let settings = Settings::builder().pairs([("sqlalchemy.url", "sqlite://")]).build()?;
    /// assert_eq!(settings.len(), 1);
    ///
    /// let missing = Settings::builder().ini_str("[app:main]\n", "app:other", "/srv").build();
    /// assert!(matches!(missing, Err(Error::MissingSection { .. })));
    /// let malformed = Settings::builder().toml_str("url = ").build();
    /// assert!(matches!(malformed, Err(Error::SettingsSyntax { .. })));
    /// # Ok::<(), sqlassist::Error>(())
    /// ```
    pub fn build(self) -> Result<Settings> {
        let here = self
            .here
            .clone()
            .or_else(|| self.layers.iter().find_map(Layer::default_here))
            .map(|dir| std::path::absolute(&dir).unwrap_or(dir))
            .unwrap_or_else(current_dir);

        let mut builder = config::Config::builder();
        for layer in self.layers {
            builder = builder.add_source(layer);
        }
        for prefix in self.env_prefixes {
            if prefix.is_empty() {
                return Err(Error::Settings {
                    source: ConfigError::Message(
                        "the environment override prefix must not be empty".to_owned(),
                    ),
                });
            }
            builder = builder.add_source(Layer::Env { prefix });
        }
        let config = builder.build().map_err(from_config_error)?;
        // Every layer stores strings under ROOT: serde reads them back as one flat map.
        let values = match config.get::<BTreeMap<String, String>>(ROOT) {
            Ok(values) => values,
            Err(ConfigError::NotFound(_)) => BTreeMap::new(),
            Err(e) => return Err(from_config_error(e)),
        };
        Ok(Settings { values, here })
    }
}

/// Turns a `config` error back into ours when one of our layers produced it.
fn from_config_error(error: ConfigError) -> Error {
    match error {
        ConfigError::Foreign(cause) => match cause.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(cause) => Error::Settings {
                source: ConfigError::Foreign(cause),
            },
        },
        source => Error::Settings { source },
    }
}

fn current_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// One source of settings, handed to `config` as `{ROOT: {literal key: string}}`.
#[derive(Clone)]
enum Layer {
    IniFile {
        path: PathBuf,
        section: String,
    },
    IniText {
        text: String,
        section: String,
        here: PathBuf,
    },
    TomlFile {
        path: PathBuf,
    },
    TomlText {
        text: String,
    },
    Pairs(Vec<(String, String)>),
    Env {
        prefix: String,
    },
}

impl Layer {
    /// What error messages call this source.
    fn origin(&self) -> String {
        match self {
            Layer::IniFile { path, .. } | Layer::TomlFile { path } => path.display().to_string(),
            Layer::IniText { .. } => "INI text".to_owned(),
            Layer::TomlText { .. } => "TOML text".to_owned(),
            Layer::Pairs(_) => "settings pairs".to_owned(),
            Layer::Env { prefix } => format!("environment variables {prefix}__*"),
        }
    }

    /// The base directory this layer suggests when the builder was given none.
    fn default_here(&self) -> Option<PathBuf> {
        match self {
            Layer::IniFile { path, .. } | Layer::TomlFile { path } => {
                let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                path.parent().map(Path::to_path_buf)
            }
            Layer::IniText { here, .. } => Some(here.clone()),
            _ => None,
        }
    }

    /// Reads the layer into literal keys and string values.
    fn collect_flat(&self) -> Result<BTreeMap<String, String>> {
        let origin = self.origin();
        match self {
            Layer::IniFile { path, section } => {
                let text = read_file(path)?;
                let file = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                let here = file.parent().map(Path::to_path_buf).unwrap_or_default();
                let format = PasteIni {
                    section: section.clone(),
                    here,
                    file: Some(file),
                    origin: origin.clone(),
                };
                parse_with(&text, format, &origin)
            }
            Layer::IniText {
                text,
                section,
                here,
            } => {
                let here = std::path::absolute(here).unwrap_or_else(|_| here.clone());
                let format = PasteIni {
                    section: section.clone(),
                    here,
                    file: None,
                    origin: origin.clone(),
                };
                parse_with(text, format, &origin)
            }
            Layer::TomlFile { path } => parse_with(&read_file(path)?, FileFormat::Toml, &origin),
            Layer::TomlText { text } => parse_with(text, FileFormat::Toml, &origin),
            Layer::Pairs(pairs) => Ok(pairs.iter().cloned().collect()),
            Layer::Env { prefix } => {
                let env = config::Environment::with_prefix(prefix)
                    .prefix_separator("__")
                    .separator("__");
                // `config`'s only error here quotes the variable's value; say less.
                let map = env.collect().map_err(|_| Error::Settings {
                    source: ConfigError::Message(format!(
                        "an environment variable named {prefix}__* is not valid unicode"
                    )),
                })?;
                let mut flat = BTreeMap::new();
                for (key, value) in map {
                    if !key.is_empty() {
                        flatten_value(&origin, key, value, &mut flat)?;
                    }
                }
                Ok(flat)
            }
        }
    }
}

impl fmt::Debug for Layer {
    /// Names the source only: INI and TOML text and pairs may hold passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::IniFile { section, .. } | Layer::IniText { section, .. } => {
                write!(f, "Layer({} [{section}])", self.origin())
            }
            _ => write!(f, "Layer({})", self.origin()),
        }
    }
}

impl Source for Layer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, ConfigError> {
        let origin = self.origin();
        let flat = self
            .collect_flat()
            .map_err(|e| ConfigError::Foreign(Box::new(e)))?;
        let table: Map<String, Value> = flat
            .into_iter()
            .map(|(key, value)| (key, Value::new(Some(&origin), ValueKind::String(value))))
            .collect();
        let mut root = Map::new();
        root.insert(ROOT.to_owned(), Value::new(Some(&origin), table));
        Ok(root)
    }
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::SettingsFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses `text` with a `config` format and flattens the result to dotted keys.
fn parse_with<F>(text: &str, format: F, origin: &str) -> Result<BTreeMap<String, String>>
where
    F: FileStoredFormat + fmt::Debug + Clone + Send + Sync + 'static,
{
    let map = config::File::from_str(text, format)
        .collect()
        .map_err(|e| match e {
            ConfigError::FileParse { cause, .. } => match cause.downcast::<Error>() {
                Ok(ours) => *ours,
                // Only the TOML parser gets here. Its message quotes the offending line,
                // which may hold a password: keep the line number and the message only.
                Err(cause) => {
                    let (line, reason) = sanitize_toml_error(&cause.to_string());
                    Error::SettingsSyntax {
                        path_or_origin: origin.to_owned(),
                        line,
                        reason,
                    }
                }
            },
            other => from_config_error(other),
        })?;
    let mut flat = BTreeMap::new();
    for (key, value) in map {
        flatten_value(origin, key, value, &mut flat)?;
    }
    Ok(flat)
}

/// Adds `value` under `key`, tables recursively as `key.subkey`.
fn flatten_value(
    origin: &str,
    key: String,
    value: Value,
    out: &mut BTreeMap<String, String>,
) -> Result<()> {
    let text = match value.kind {
        ValueKind::Table(table) => {
            for (sub, value) in table {
                flatten_value(origin, format!("{key}.{sub}"), value, out)?;
            }
            return Ok(());
        }
        ValueKind::Nil => return Ok(()),
        ValueKind::Array(items) => {
            let mut lines = Vec::with_capacity(items.len());
            for item in items {
                match scalar_text(item.kind) {
                    Some(text) => lines.push(text),
                    None => {
                        return Err(Error::SettingsSyntax {
                            path_or_origin: origin.to_owned(),
                            line: 0,
                            reason: format!(
                                "`{key}` is a list of tables or lists; settings take strings, \
                                 numbers, booleans or lists of those"
                            ),
                        })
                    }
                }
            }
            lines.join("\n")
        }
        kind => scalar_text(kind).unwrap_or_default(),
    };
    if out.insert(key.clone(), text).is_some() {
        return Err(Error::SettingsSyntax {
            path_or_origin: origin.to_owned(),
            line: 0,
            reason: format!("`{key}` is given twice (as a table key and as a dotted key)"),
        });
    }
    Ok(())
}

/// The text of a scalar value; `None` for tables, arrays and nil.
fn scalar_text(kind: ValueKind) -> Option<String> {
    Some(match kind {
        ValueKind::String(s) => s,
        ValueKind::Boolean(b) => b.to_string(),
        ValueKind::I64(n) => n.to_string(),
        ValueKind::I128(n) => n.to_string(),
        ValueKind::U64(n) => n.to_string(),
        ValueKind::U128(n) => n.to_string(),
        ValueKind::Float(x) => x.to_string(),
        ValueKind::Nil | ValueKind::Table(_) | ValueKind::Array(_) => return None,
    })
}

/// Keeps the line number and the message of a `toml` parse error, dropping the quoted
/// source line and its gutter.
fn sanitize_toml_error(display: &str) -> (usize, String) {
    let mut lines = display.lines();
    let first = lines.next().unwrap_or_default();
    let (line, rest): (usize, Vec<&str>) = match first.strip_prefix("TOML parse error at line ") {
        Some(position) => (
            position
                .split(',')
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0),
            lines.collect(),
        ),
        None => (0, std::iter::once(first).chain(lines).collect()),
    };
    let is_snippet = |l: &str| {
        let t = l.trim_start();
        t.starts_with('|')
            || t.split_once(" |")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let message: Vec<&str> = rest
        .into_iter()
        .filter(|l| !is_snippet(l))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let reason = if message.is_empty() {
        "invalid TOML".to_owned()
    } else {
        format!("invalid TOML: {}", message.join("; "))
    };
    (line, reason)
}
