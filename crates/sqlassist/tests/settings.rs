//! Settings as applications write them: Pyramid INI sections, TOML, pairs and the
//! environment layered into one flat map, and the engine options read from its keys.

mod sources {
    use std::path::{Path, PathBuf};

    use sqlassist::{Error, Settings};

    type Result<T> = std::result::Result<T, Error>;

    const PW: &str = "s3cr3t-PW";

    fn ini(text: &str, section: &str) -> Result<Settings> {
        Settings::from_ini_str(text, section, "/srv/myapp")
    }

    fn syntax_line(e: &Error) -> usize {
        match e {
            Error::SettingsSyntax { line, .. } => *line,
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    /// A directory of its own under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("sqlassist-settings-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir is writable");
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).expect("temp dir is writable");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const PYRAMID_INI: &str = "\
# Pyramid application configuration
; another comment style

[DEFAULT]
db_host = db.example
db_name = myapp

[app:main]
use = egg:myapp
pyramid.includes =
    pyramid_tm
    pyramid_debugtoolbar

    # a comment inside the list is skipped
    pyramid_mako
Sqlalchemy_Reader.URL = postgresql://reader:%(reader_password)s@%(db_host)s/%(db_name)s
reader_password = p%%40ss
sqlalchemy_writer.url: sqlite:///%(here)s/writer.db
sqlalchemy_writer.pool_size = 5
not_a_comment = a # b
empty =

[server:main]
use = egg:waitress#main
port = 6543
";

    #[test]
    fn ini_reads_the_app_section_with_defaults_interpolation_and_lists() -> Result<()> {
        let s = ini(PYRAMID_INI, "app:main")?;
        assert_eq!(s.get("use"), Some("egg:myapp"));
        assert_eq!(
            s.get("pyramid.includes"),
            Some("\npyramid_tm\npyramid_debugtoolbar\n\npyramid_mako")
        );
        assert_eq!(
            s.get("sqlalchemy_reader.url"),
            Some("postgresql://reader:p%40ss@db.example/myapp")
        );
        assert_eq!(
            s.get("sqlalchemy_writer.url"),
            Some("sqlite:////srv/myapp/writer.db")
        );
        assert_eq!(s.get("sqlalchemy_writer.pool_size"), Some("5"));
        assert_eq!(s.get("not_a_comment"), Some("a # b"));
        assert_eq!(s.get("empty"), Some(""));
        // [DEFAULT] keys are part of the settings; built-ins and other sections are not.
        assert_eq!(s.get("db_host"), Some("db.example"));
        assert_eq!(s.get("here"), None);
        assert_eq!(s.get("__file__"), None);
        assert_eq!(s.get("port"), None);
        assert_eq!(s.here(), Path::new("/srv/myapp"));
        assert_eq!(
            s.engine_prefixes(),
            ["sqlalchemy_reader.", "sqlalchemy_writer."]
        );
        Ok(())
    }

    #[test]
    fn ini_section_keys_override_default_keys() -> Result<()> {
        let s = ini(
            "[DEFAULT]\nname = default\nurl = sqlite:///%(name)s.db\n[app:main]\nname = app\n",
            "app:main",
        )?;
        assert_eq!(s.get("name"), Some("app"));
        // Interpolation sees the section's value, as configparser does.
        assert_eq!(s.get("url"), Some("sqlite:///app.db"));
        Ok(())
    }

    #[test]
    fn ini_file_here_and_file_are_the_files_directory_and_path() -> Result<()> {
        let dir = TempDir::new("ini-here");
        let path = dir.write(
            "development.ini",
            "[app:main]\nsqlalchemy.url = sqlite:///%(here)s/app.db\nsource = %(__file__)s\n",
        );
        let s = Settings::from_ini_file(&path, "app:main")?;
        assert_eq!(s.here(), dir.0.as_path());
        assert_eq!(
            s.get("sqlalchemy.url").map(str::to_owned),
            Some(format!("sqlite:///{}/app.db", dir.0.display()))
        );
        assert_eq!(
            s.get("source").map(str::to_owned),
            Some(path.display().to_string())
        );
        Ok(())
    }

    #[test]
    fn ini_continuation_needs_deeper_indent_than_its_key() -> Result<()> {
        let s = ini(
            "[app:main]\n  a = 1\n    more\n  b = 2\n\tc = 3\n\t  x\n",
            "app:main",
        )?;
        assert_eq!(s.get("a"), Some("1\nmore"));
        assert_eq!(s.get("b"), Some("2"));
        assert_eq!(s.get("c"), Some("3\nx"));
        Ok(())
    }

    #[test]
    fn ini_errors_give_the_line_and_never_the_value() {
        let cases: &[(&str, usize)] = &[
            ("orphan = 1\n[app:main]\n", 1),
            ("[app:main]\njust words with s3cr3t-PW\n", 2),
            ("[app:main]\n= s3cr3t-PW\n", 2),
            ("[app:main]\na = 1\na = s3cr3t-PW\n", 3),
            ("[app:main]\n[app:main]\n", 2),
            ("[app:main\n", 1),
            ("[app:main]\n\nurl = postgresql://u:s3cr3t-PW%40x@h/db\n", 3),
            ("[app:main]\nurl = %(missing)s s3cr3t-PW\n", 2),
            ("[app:main]\nurl = %(x s3cr3t-PW\n", 2),
            ("[app:main]\na = %(b)s\nb = %(a)s s3cr3t-PW\n", 2),
        ];
        for (text, line) in cases {
            let e = ini(text, "app:main").expect_err(text);
            assert_eq!(syntax_line(&e), *line, "{text}: {e}");
            assert!(!e.to_string().contains(PW), "{e}");
            assert!(!format!("{e:?}").contains(PW), "{e:?}");
        }
    }

    /// `levels` keys, each referring `fanout` times to the one before; the first holds
    /// `seed`.
    fn fanout_ini(levels: usize, fanout: usize, seed: &str) -> String {
        let mut text = format!("[app:main]\nk0 = {seed}\n");
        for level in 1..levels {
            text.push_str(&format!("k{level} = "));
            for _ in 0..fanout {
                text.push_str(&format!("%(k{})s", level - 1));
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn ini_interpolation_is_bounded_in_total_expanded_size() {
        // Ten levels of ten references: 720 bytes that would expand past 2 GB.
        let text = fanout_ini(10, 10, "xxxxxxxxxx");
        assert!(text.len() < 800, "{}", text.len());
        let started = std::time::Instant::now();
        let e = ini(&text, "app:main").expect_err("expands past the limit");
        let message = e.to_string();
        assert!(message.contains("`k"), "names the key: {message}");
        assert!(message.contains("1 MiB"), "names the limit: {message}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn a_large_section_without_references_reads_whole() -> Result<()> {
        let big = "x".repeat(3 << 20);
        let s = ini(&format!("[app:main]\na = {big}\nb = {big}\n"), "app:main")?;
        assert_eq!(s.get("b").map(str::len), Some(3 << 20));
        Ok(())
    }

    #[test]
    fn ini_interpolation_of_empty_values_does_no_exponential_work() -> Result<()> {
        // Expands to nothing, through 10^8 references if each were followed anew.
        let text = fanout_ini(9, 10, "");
        let started = std::time::Instant::now();
        let s = ini(&text, "app:main")?;
        assert_eq!(s.get("k8"), Some(""));
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        Ok(())
    }

    #[test]
    fn ini_interpolation_nests_at_most_ten_deep() -> Result<()> {
        let s = ini(&fanout_ini(11, 1, "v"), "app:main")?;
        assert_eq!(s.get("k10"), Some("v"));
        let e = ini(&fanout_ini(12, 1, "v"), "app:main").expect_err("too deep");
        assert!(e.to_string().contains("`k11`"), "{e}");
        assert!(e.to_string().contains("10 levels"), "{e}");
        Ok(())
    }

    #[test]
    fn ini_duplicate_key_among_many_names_its_line() -> Result<()> {
        // The work is counted in `ini`'s own tests; here, the result.
        let mut text = String::from("[app:main]\n");
        for i in 0..40_000 {
            text.push_str(&format!("key_number_{i} = {i}\n"));
        }
        let s = ini(&text, "app:main")?;
        assert_eq!(s.len(), 40_000);
        text.push_str("key_number_17 = again\n");
        let e = ini(&text, "app:main").expect_err("a duplicate");
        assert_eq!(syntax_line(&e), 40_002);
        Ok(())
    }

    #[test]
    fn ini_percent_error_explains_double_percent() {
        let e = ini("[app:main]\nurl = postgresql://u:p%40ss@h/db\n", "app:main")
            .expect_err("a lone % is an error");
        assert!(e.to_string().contains("%%40"), "{e}");
        assert!(e.to_string().contains("`url`"), "{e}");
    }

    #[test]
    fn ini_missing_section_lists_the_sections_found() {
        let e = ini(PYRAMID_INI, "app:other").expect_err("no such section");
        assert!(matches!(e, Error::MissingSection { .. }));
        assert_eq!(
            e.to_string(),
            "no section [app:other] in INI text; sections found: [DEFAULT], [app:main], [server:main]"
        );
    }

    #[test]
    fn ini_file_that_cannot_be_read_names_the_path() {
        let e = Settings::from_ini_file("/nonexistent/sqlassist/x.ini", "app:main")
            .expect_err("no such file");
        match &e {
            Error::SettingsFile { path, source } => {
                assert_eq!(path, Path::new("/nonexistent/sqlassist/x.ini"));
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.to_string().contains("/nonexistent/sqlassist/x.ini"));
    }

    #[test]
    fn toml_tables_and_quoted_dotted_keys_flatten_to_the_same_keys() -> Result<()> {
        let s = Settings::from_toml_str(
            r#"
"sqlalchemy_reader.url" = "sqlite:///reader.db"
debug = true
ratio = 0.5
includes = ["pyramid_tm", "pyramid_mako"]

[sqlalchemy_writer]
url = "sqlite:///writer.db"
pool_size = 5
pool_pre_ping = false

[deeply.nested.table]
key = "v"
"#,
            "/srv/myapp",
        )?;
        assert_eq!(s.get("sqlalchemy_reader.url"), Some("sqlite:///reader.db"));
        assert_eq!(s.get("sqlalchemy_writer.url"), Some("sqlite:///writer.db"));
        assert_eq!(s.get("sqlalchemy_writer.pool_size"), Some("5"));
        assert_eq!(s.get("sqlalchemy_writer.pool_pre_ping"), Some("false"));
        assert_eq!(s.get("debug"), Some("true"));
        assert_eq!(s.get("ratio"), Some("0.5"));
        assert_eq!(s.get("includes"), Some("pyramid_tm\npyramid_mako"));
        assert_eq!(s.get("deeply.nested.table.key"), Some("v"));
        assert_eq!(s.here(), Path::new("/srv/myapp"));
        assert_eq!(
            s.engine_prefixes(),
            ["sqlalchemy_reader.", "sqlalchemy_writer."]
        );
        Ok(())
    }

    #[test]
    fn toml_syntax_error_gives_the_line_without_quoting_it() {
        let text = format!("a = 1\nurl = \"postgresql://u:{PW}@h/db\nb = 2\n");
        let e = Settings::from_toml_str(&text, "/srv").expect_err("unterminated string");
        assert_eq!(syntax_line(&e), 2, "{e}");
        assert!(e
            .to_string()
            .starts_with("invalid settings in TOML text, line 2: invalid TOML"));
        assert!(!e.to_string().contains(PW), "{e}");
        assert!(!format!("{e:?}").contains(PW), "{e:?}");
    }

    #[test]
    fn toml_key_given_as_table_and_dotted_key_is_an_error() {
        let e = Settings::from_toml_str("\"a.url\" = \"x\"\n[a]\nurl = \"y\"\n", "/srv")
            .expect_err("duplicate");
        assert!(e.to_string().contains("`a.url` is given twice"), "{e}");
    }

    #[test]
    fn toml_list_of_tables_is_rejected() {
        let e = Settings::from_toml_str("[[engines]]\nurl = \"x\"\n", "/srv")
            .expect_err("list of tables");
        assert!(e.to_string().contains("`engines`"), "{e}");
    }

    #[test]
    fn toml_file_here_is_its_directory() -> Result<()> {
        let dir = TempDir::new("toml-here");
        let path = dir.write("app.toml", "[sqlalchemy]\nurl = \"sqlite:///app.db\"\n");
        let s = Settings::from_toml_file(&path)?;
        assert_eq!(s.here(), dir.0.as_path());
        assert_eq!(s.get("sqlalchemy.url"), Some("sqlite:///app.db"));
        Ok(())
    }

    #[test]
    fn later_sources_win_key_by_key() -> Result<()> {
        let s = Settings::builder()
            .ini_str(
                "[app:main]\na.url = sqlite:///ini.db\na.pool_size = 1\n",
                "app:main",
                "/srv/ini",
            )
            .toml_str("[a]\npool_size = 2\necho = true\n")
            .pairs([("a.echo", "false")])
            .build()?;
        assert_eq!(s.get("a.url"), Some("sqlite:///ini.db"));
        assert_eq!(s.get("a.pool_size"), Some("2"));
        assert_eq!(s.get("a.echo"), Some("false"));
        assert_eq!(s.here(), Path::new("/srv/ini"));
        Ok(())
    }

    #[test]
    fn env_overrides_beat_files_whatever_the_call_order() -> Result<()> {
        let dir = TempDir::new("env");
        let path = dir.write(
            "production.ini",
            "[app:main]\nsqlalchemy_writer.url = sqlite:///file.db\nsqlalchemy_writer.pool_size = 3\n",
        );
        std::env::set_var(
            "SQLASSIST_T_ENV_ORDER__SQLALCHEMY_WRITER__URL",
            "sqlite:///env.db",
        );
        std::env::set_var("SQLASSIST_T_ENV_ORDER__NEW_KEY", "new");
        let s = Settings::builder()
            .env_overrides("SQLASSIST_T_ENV_ORDER")
            .ini_file(&path, "app:main")
            .pairs([("sqlalchemy_writer.url", "sqlite:///pairs.db")])
            .build()?;
        assert_eq!(s.get("sqlalchemy_writer.url"), Some("sqlite:///env.db"));
        assert_eq!(s.get("sqlalchemy_writer.pool_size"), Some("3"));
        assert_eq!(s.get("new_key"), Some("new"));
        assert_eq!(s.engine_prefixes(), ["sqlalchemy_writer."]);
        Ok(())
    }

    #[test]
    fn env_overrides_match_the_prefix_case_insensitively_and_ignore_other_prefixes() -> Result<()> {
        std::env::set_var("sqlassist_t_env_case__A__URL", "sqlite://");
        std::env::set_var("SQLASSIST_T_ENV_CASEX__B__URL", "sqlite://");
        let s = Settings::builder()
            .env_overrides("SQLASSIST_T_ENV_CASE")
            .build()?;
        assert_eq!(s.get("a.url"), Some("sqlite://"));
        assert_eq!(s.get("b.url"), None);
        assert_eq!(s.len(), 1);
        Ok(())
    }

    #[test]
    fn empty_env_prefix_is_an_error() {
        let e = Settings::builder()
            .env_overrides("")
            .build()
            .expect_err("empty prefix");
        assert!(matches!(e, Error::Settings { .. }));
    }

    #[test]
    fn require_names_the_missing_key() {
        let s = Settings::from_pairs([("a", "1")]);
        assert_eq!(s.require("a").ok(), Some("1"));
        let e = s.require("sqlalchemy.url").expect_err("missing");
        assert_eq!(e.to_string(), "missing setting `sqlalchemy.url`");
    }

    #[test]
    fn keys_with_prefix_gives_suffixes_only_under_that_prefix() {
        let s = Settings::from_pairs([
            ("sqlalchemy.url", "sqlite://"),
            ("sqlalchemy.pool_size", "3"),
            ("sqlalchemy_reader.url", "sqlite://"),
            ("sqlalchemy", "x"),
            ("sqlalchemz.url", "y"),
        ]);
        let got: Vec<_> = s.keys_with_prefix("sqlalchemy.").collect();
        assert_eq!(got, [("pool_size", "3"), ("url", "sqlite://")]);
        let prefix = String::from("sqlalchemy_reader.");
        let got: Vec<_> = s.keys_with_prefix(&prefix).collect();
        drop(prefix);
        assert_eq!(got, [("url", "sqlite://")]);
        assert_eq!(s.keys_with_prefix("nothing.").count(), 0);
    }

    #[test]
    fn engine_prefixes_are_sqlalchemy_and_sqlalchemy_underscore_name() {
        let s = Settings::from_pairs([
            ("sqlalchemy_writer.url", "x"),
            ("sqlalchemy_writer.pool_size", "1"),
            ("sqlalchemy_reader.pool_size", "1"), // an engine without its url: still found
            ("sqlalchemy.uri", "x"),
            ("sqlalchemy_x.a.b", "x"),
            ("sqlalchemy", "x"),
            ("sqlalchemyx.url", "x"),
            ("sqlalchemy_nodot", "x"),
            ("a.b.url", "x"),
            ("url", "x"),
            ("redis.url", "x"),
        ]);
        assert_eq!(
            s.engine_prefixes(),
            [
                "sqlalchemy.",
                "sqlalchemy_reader.",
                "sqlalchemy_writer.",
                "sqlalchemy_x."
            ]
        );
    }

    #[test]
    fn debug_redacts_urls_and_passwords() {
        let s = Settings::from_pairs([
            ("sqlalchemy.url", format!("postgresql://u:{PW}@h/db")),
            ("smtp.password", PW.to_owned()),
            ("broken_url", format!("postgres:u:{PW}")),
            ("pool_size", "5".to_owned()),
        ]);
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("postgresql://u:***@h/db"), "{debug}");
        assert!(debug.contains("\"pool_size\": \"5\""), "{debug}");
        let builder = Settings::builder().pairs([("a.password", PW)]).ini_str(
            &format!("[x]\nurl = {PW}\n"),
            "x",
            "/",
        );
        assert!(!format!("{builder:?}").contains("s3cr3t"));
    }
}

mod engine_options {
    use std::fmt;
    use std::time::Duration;

    use sqlassist::{DatabaseUrl, EngineOptions, Error, IsolationLevel, Settings};

    type Result<T> = std::result::Result<T, Error>;

    const PREFIX: &str = "sqlalchemy_reader.";

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::builder()
            .pairs(
                std::iter::once(("sqlalchemy_reader.url", "sqlite:///app.db"))
                    .chain(pairs.iter().copied()),
            )
            .here("/srv/myapp")
            .build()
            .expect("pairs always build")
    }

    fn options(pairs: &[(&str, &str)]) -> Result<EngineOptions> {
        EngineOptions::from_settings(&settings(pairs), PREFIX)
    }

    fn invalid_key(e: &Error) -> &str {
        match e {
            Error::InvalidSetting { key, .. } => key,
            other => panic!("expected InvalidSetting, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_documented_values() -> Result<()> {
        let o = options(&[])?;
        assert_eq!(
            o.url().sqlite_path(),
            Some(std::path::Path::new("/srv/myapp/app.db"))
        );
        assert_eq!(o.pool_size(), 10);
        assert_eq!(o.pool_min_idle(), 0);
        assert_eq!(o.pool_timeout(), Duration::from_secs(30));
        assert_eq!(o.pool_idle_timeout(), Some(Duration::from_secs(600)));
        assert_eq!(o.pool_recycle(), Some(Duration::from_secs(1800)));
        assert!(o.pool_pre_ping());
        assert!(!o.is_read_only());
        assert_eq!(o.isolation_level(), None);
        assert_eq!(o.statement_timeout(), None);
        assert_eq!(o.application_name(), None);
        assert_eq!(o.busy_timeout(), Duration::from_millis(5000));
        assert!(!o.echo());
        assert_eq!(o, EngineOptions::new(o.url().clone()));
        Ok(())
    }

    #[test]
    fn every_key_is_parsed() -> Result<()> {
        let o = options(&[
            ("sqlalchemy_reader.pool_size", "20"),
            ("sqlalchemy_reader.pool_min_idle", " 2 "),
            ("sqlalchemy_reader.pool_timeout", "2.5"),
            ("sqlalchemy_reader.pool_idle_timeout", "none"),
            ("sqlalchemy_reader.pool_recycle", "3600"),
            ("sqlalchemy_reader.pool_pre_ping", "off"),
            ("sqlalchemy_reader.read_only", "Yes"),
            ("sqlalchemy_reader.isolation_level", "repeatable_read"),
            ("sqlalchemy_reader.statement_timeout", "250ms"),
            ("sqlalchemy_reader.application_name", "myapp-reader"),
            ("sqlalchemy_reader.busy_timeout", "2s"),
            ("sqlalchemy_reader.echo", "1"),
        ])?;
        assert_eq!(o.pool_size(), 20);
        assert_eq!(o.pool_min_idle(), 2);
        assert_eq!(o.pool_timeout(), Duration::from_millis(2500));
        assert_eq!(o.pool_idle_timeout(), None);
        assert_eq!(o.pool_recycle(), Some(Duration::from_secs(3600)));
        assert!(!o.pool_pre_ping());
        assert!(o.is_read_only());
        assert_eq!(o.isolation_level(), Some(IsolationLevel::RepeatableRead));
        assert_eq!(o.statement_timeout(), Some(Duration::from_millis(250)));
        assert_eq!(o.application_name(), Some("myapp-reader"));
        assert_eq!(o.busy_timeout(), Duration::from_secs(2));
        assert!(o.echo());
        Ok(())
    }

    #[test]
    fn prefix_without_trailing_dot_is_accepted() -> Result<()> {
        let s = settings(&[
            ("sqlalchemy_reader.pool_size", "3"),
            ("sqlalchemy_reader2.url", "x"),
        ]);
        assert_eq!(
            EngineOptions::from_settings(&s, "sqlalchemy_reader")?.pool_size(),
            3
        );
        Ok(())
    }

    #[test]
    fn other_prefixes_are_ignored() -> Result<()> {
        let o = options(&[
            ("sqlalchemy_writer.url", "not even a url"),
            ("sqlalchemy_writer.pool_sise", "3"),
            ("sqlalchemy.echo", "maybe"),
        ])?;
        assert_eq!(o.pool_size(), 10);
        Ok(())
    }

    #[test]
    fn isolation_level_accepts_sqlalchemy_spellings() {
        for (text, level) in [
            ("SERIALIZABLE", IsolationLevel::Serializable),
            ("serializable", IsolationLevel::Serializable),
            ("READ COMMITTED", IsolationLevel::ReadCommitted),
            ("read_committed", IsolationLevel::ReadCommitted),
            ("Read-Uncommitted", IsolationLevel::ReadUncommitted),
            ("  repeatable   read ", IsolationLevel::RepeatableRead),
        ] {
            assert_eq!(text.parse::<IsolationLevel>().ok(), Some(level), "{text}");
        }
        let e = options(&[("sqlalchemy_reader.isolation_level", "AUTOCOMMIT")])
            .expect_err("not a level");
        assert_eq!(invalid_key(&e), "sqlalchemy_reader.isolation_level");
        assert!(e.to_string().contains("SERIALIZABLE"), "{e}");
        assert_eq!(IsolationLevel::ReadCommitted.to_string(), "READ COMMITTED");
    }

    #[test]
    fn statement_timeout_none_and_zero() -> Result<()> {
        let o = options(&[("sqlalchemy_reader.statement_timeout", "none")])?;
        assert_eq!(o.statement_timeout(), None);
        let o = options(&[("sqlalchemy_reader.statement_timeout", "0")])?;
        assert_eq!(o.statement_timeout(), Some(Duration::ZERO));
        Ok(())
    }

    #[test]
    fn pool_recycle_minus_one_disables_like_sqlalchemy() -> Result<()> {
        let o = options(&[("sqlalchemy_reader.pool_recycle", "-1")])?;
        assert_eq!(o.pool_recycle(), None);
        Ok(())
    }

    #[test]
    fn bad_integer_names_the_full_key() {
        for (key, value) in [
            ("sqlalchemy_reader.pool_size", "ten"),
            ("sqlalchemy_reader.pool_size", "-1"),
            ("sqlalchemy_reader.pool_min_idle", "1.5"),
            ("sqlalchemy_reader.pool_timeout", "soon"),
            ("sqlalchemy_reader.pool_recycle", "never"),
            ("sqlalchemy_reader.busy_timeout", "5 parsecs"),
        ] {
            let e = options(&[(key, value)]).expect_err(value);
            assert_eq!(invalid_key(&e), key, "{e}");
            assert!(e.to_string().contains(&format!("{value:?}")), "{e}");
        }
    }

    #[test]
    fn values_r2d2_would_panic_on_are_rejected() {
        for (key, value) in [
            ("sqlalchemy_reader.pool_size", "0"),
            ("sqlalchemy_reader.pool_min_idle", "11"),
            ("sqlalchemy_reader.pool_timeout", "0"),
            ("sqlalchemy_reader.pool_idle_timeout", "0"),
            ("sqlalchemy_reader.pool_recycle", "0ms"),
        ] {
            let e = options(&[(key, value)]).expect_err(value);
            assert_eq!(invalid_key(&e), key, "{e}");
        }
    }

    #[test]
    fn unknown_key_names_it_and_lists_the_known_ones() {
        let e = options(&[("sqlalchemy_reader.pool_sise", "3")]).expect_err("typo");
        match &e {
            Error::UnknownSetting { key, known } => {
                assert_eq!(key, "sqlalchemy_reader.pool_sise");
                assert!(known.contains("pool_size"));
                assert!(known.contains("busy_timeout"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = options(&[("sqlalchemy_reader.ulr", "sqlite://")]).expect_err("typo");
        assert!(e.to_string().contains("`sqlalchemy_reader.ulr`"), "{e}");
    }

    #[test]
    fn registry_keys_under_the_prefix_are_accepted_and_ignored() -> Result<()> {
        let o = options(&[
            ("sqlalchemy_reader.managed", "true"),
            ("sqlalchemy_reader.use_zope", "false"),
            ("sqlalchemy_reader.default", "yes"),
        ])?;
        assert_eq!(o, EngineOptions::new(o.url().clone()));
        let e = options(&[("sqlalchemy_reader.managd", "true")]).expect_err("typo");
        assert!(e.to_string().contains("managed"), "{e}");
        Ok(())
    }

    #[test]
    fn missing_url_names_the_key() {
        let s = Settings::from_pairs([("sqlalchemy_writer.pool_size", "1")]);
        let e = EngineOptions::from_settings(&s, "sqlalchemy_writer.").expect_err("no url");
        assert_eq!(e.to_string(), "missing setting `sqlalchemy_writer.url`");
    }

    #[test]
    fn bad_url_error_does_not_leak_the_password() {
        let s = Settings::from_pairs([("db.url", "postgresql://u:s3cr3t-PW@h:port/db")]);
        let e = EngineOptions::from_settings(&s, "db.").expect_err("bad port");
        assert!(matches!(e, Error::InvalidUrl { .. }));
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(!format!("{e:?}").contains("s3cr3t"), "{e:?}");
    }

    /// Records the message and fields of every `WARN` event.
    #[derive(Clone, Default)]
    struct Warnings(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl Warnings {
        fn lines(&self) -> Vec<String> {
            self.0.lock().expect("not poisoned").clone()
        }
    }

    struct Fields(String);

    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
            self.0.push_str(&format!("{}={value:?} ", field.name()));
        }
    }

    impl tracing::Subscriber for Warnings {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                let mut fields = Fields(String::new());
                event.record(&mut fields);
                self.0.lock().expect("not poisoned").push(fields.0);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn sqlalchemy_keys_of_a_ported_ini_are_accepted_with_one_warning_each() -> Result<()> {
        let ignored = [
            "echo_pool",
            "pool_use_lifo",
            "pool_reset_on_return",
            "hide_parameters",
            "logging_name",
            "pool_logging_name",
            "query_cache_size",
            "future",
            "connect_args.sslmode",
            "execution_options.isolation_level",
        ];
        let mut pairs: Vec<(String, &str)> = ignored
            .iter()
            .map(|name| (format!("{PREFIX}{name}"), "true"))
            .collect();
        pairs.push((format!("{PREFIX}max_overflow"), "5"));
        pairs.push((format!("{PREFIX}pool_size"), "3"));
        pairs.push((format!("{PREFIX}echo"), "debug"));
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let warnings = Warnings::default();
        let o = tracing::subscriber::with_default(warnings.clone(), || options(&pairs))?;
        assert_eq!(o.pool_size(), 3);
        assert_eq!(o.max_overflow(), 5);
        assert_eq!(o.max_connections(), 8);
        assert!(o.echo(), "echo = debug logs statements");
        let lines = warnings.lines();
        for name in ignored {
            let key = format!("{PREFIX}{name}");
            let naming = lines.iter().filter(|l| l.contains(&key)).count();
            assert_eq!(naming, 1, "one warning names {key}: {lines:?}");
        }
        assert_eq!(lines.len(), ignored.len(), "{lines:?}");
        // A real typo is still an error.
        let e = options(&[("sqlalchemy_reader.max_overflw", "5")]).expect_err("typo");
        assert!(matches!(e, Error::UnknownSetting { .. }), "{e:?}");
        Ok(())
    }

    #[test]
    fn sub_millisecond_durations_round_up_and_never_mean_no_limit() -> Result<()> {
        let o = options(&[
            ("sqlalchemy_reader.statement_timeout", "0.4ms"),
            ("sqlalchemy_reader.busy_timeout", "0.0001s"),
            ("sqlalchemy_reader.pool_timeout", "1.5ms"),
        ])?;
        assert_eq!(o.statement_timeout(), Some(Duration::from_millis(1)));
        assert_eq!(o.busy_timeout(), Duration::from_millis(1));
        assert_eq!(o.pool_timeout(), Duration::from_millis(2));
        Ok(())
    }

    #[test]
    fn numbers_and_durations_out_of_their_range_are_refused_naming_key_and_range() {
        for (name, value) in [
            ("pool_size", "4294967295"),
            ("pool_size", "1001"),
            ("max_overflow", "1000"),
            ("max_overflow", "-1"),
            ("pool_min_idle", "4294967295"),
            ("pool_timeout", "100000000000"),
            ("pool_timeout", "2d"),
            ("pool_idle_timeout", "100000000000"),
            ("pool_recycle", "100000000000"),
            ("pool_pre_ping_window", "100000000000"),
            ("statement_timeout", "2147483648"),
            ("statement_timeout", "25d"),
            ("busy_timeout", "2147483648"),
        ] {
            let key = format!("{PREFIX}{name}");
            let e = options(&[(&key, value)]).expect_err(&key);
            assert_eq!(invalid_key(&e), key, "{e}");
            let Error::InvalidSetting { expected, .. } = &e else {
                unreachable!()
            };
            assert!(expected.contains(" to "), "{key} = {value}: {e}");
        }
        // The builder checks the same ranges.
        let url = DatabaseUrl::parse("sqlite://").expect("a memory url");
        for builder in [
            EngineOptions::builder(url.clone()).pool_size(u32::MAX),
            EngineOptions::builder(url.clone())
                .statement_timeout(Some(Duration::from_secs(1 << 40))),
            EngineOptions::builder(url.clone()).busy_timeout(Duration::from_secs(1 << 40)),
            EngineOptions::builder(url.clone()).pool_timeout(Duration::from_secs(1 << 40)),
        ] {
            builder.build().expect_err("out of range");
        }
    }

    #[test]
    fn builder_sets_every_option_and_checks_pool_values() -> Result<()> {
        let url = DatabaseUrl::parse("sqlite://")?;
        let o = EngineOptions::builder(url.clone())
            .pool_size(3)
            .pool_min_idle(1)
            .pool_timeout(Duration::from_secs(1))
            .pool_idle_timeout(None)
            .pool_recycle(Some(Duration::from_secs(60)))
            .pool_pre_ping(false)
            .read_only(true)
            .isolation_level(IsolationLevel::Serializable)
            .statement_timeout(Some(Duration::from_millis(100)))
            .application_name("job")
            .busy_timeout(Duration::from_millis(10))
            .echo(true)
            .build()?;
        assert_eq!(o.pool_size(), 3);
        assert_eq!(o.pool_min_idle(), 1);
        assert_eq!(o.pool_timeout(), Duration::from_secs(1));
        assert_eq!(o.pool_idle_timeout(), None);
        assert_eq!(o.pool_recycle(), Some(Duration::from_secs(60)));
        assert!(!o.pool_pre_ping());
        assert!(o.is_read_only());
        assert_eq!(o.isolation_level(), Some(IsolationLevel::Serializable));
        assert_eq!(o.statement_timeout(), Some(Duration::from_millis(100)));
        assert_eq!(o.application_name(), Some("job"));
        assert_eq!(o.busy_timeout(), Duration::from_millis(10));
        assert!(o.echo());
        assert_eq!(o.to_builder().build()?, o);

        let e = EngineOptions::builder(url.clone())
            .pool_size(0)
            .build()
            .expect_err("zero pool");
        assert_eq!(invalid_key(&e), "pool_size");
        let e = EngineOptions::builder(url)
            .pool_size(2)
            .pool_min_idle(3)
            .build()
            .expect_err("min_idle > size");
        assert_eq!(invalid_key(&e), "pool_min_idle");
        Ok(())
    }

    #[test]
    fn a_value_that_is_no_boolean_names_the_key_and_the_value() {
        let e = options(&[("sqlalchemy_reader.echo", "maybe")]).expect_err("not a bool");
        assert_eq!(invalid_key(&e), "sqlalchemy_reader.echo");
        assert!(e.to_string().contains("\"maybe\""), "{e}");
    }
}

mod node_id {
    use sqlassist::{Error, NodeId, Registry, Settings};

    #[test]
    fn the_node_id_setting_names_every_branch_the_registry_prepares() {
        let settings = Settings::from_ini_str(
            "[app:main]\nsqlassist.node_id = orders-0\nsqlalchemy.url = sqlite://\n",
            "app:main",
            "/srv/myapp",
        )
        .expect("valid settings");
        let registry = Registry::from_settings(&settings).expect("a registry");
        assert_eq!(registry.node_id().as_str(), "orders-0");
        assert_eq!(registry.names().collect::<Vec<_>>(), ["sqlalchemy"]);
    }

    #[test]
    fn without_the_setting_the_node_id_is_the_process_default() {
        let settings = Settings::from_pairs([("sqlalchemy.url", "sqlite://")]);
        let registry = Registry::from_settings(&settings).expect("a registry");
        assert_eq!(registry.node_id(), &NodeId::per_process());
    }

    #[test]
    fn an_invalid_node_id_setting_is_refused_naming_the_key() {
        for bad in ["Orders_0", "", "a-node-id-longer-than-24-chars"] {
            let settings = Settings::from_pairs([("sqlassist.node_id", bad)]);
            match Registry::from_settings(&settings) {
                Err(Error::InvalidSetting { key, .. }) => assert_eq!(key, "sqlassist.node_id"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
