//! Bad input tried as a new user would : each error names the
//! problem, and none shows the password, in `Display` or in `Debug`.
//!
//! The server tests use `SQLASSIST_TEST_PG_NO2PC_URL`, the private cluster of
//! `scripts/test`: prepared transactions disabled, and passwords checked over TCP (the
//! main cluster trusts every connection, so it cannot reject a wrong password).

mod common;

use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry, Settings};

use common::assert_no_secret;

/// A password no message has any reason to contain.
const SECRET: &str = "Zq7-Secr3t-pw";

#[track_caller]
fn check_no_secret(err: &Error) {
    assert_no_secret(err, SECRET);
    assert_no_secret(err, "Zq7"); // not even a prefix of it
}

fn sqlite_engine() -> Engine {
    Engine::new(EngineOptions::new(
        DatabaseUrl::parse("sqlite://").expect("a memory url"),
    ))
    .expect("an engine")
}

#[test]
fn malformed_urls_are_reported_as_invalid_without_the_password() {
    for url in [
        format!("postgresql://app:{SECRET}@db.example:notaport/app"),
        format!("postgresql://app:{SECRET}@db.example:99999/app"),
        format!("postgresql:/app:{SECRET}@db.example/app"),
        format!("app:{SECRET}@db.example/app"),
        String::new(),
    ] {
        let err = DatabaseUrl::parse(&url).expect_err(&format!("{url:?} is malformed"));
        assert!(
            matches!(err, Error::InvalidUrl { .. } | Error::UnknownScheme { .. }),
            "{url:?}: {err:?}"
        );
        assert!(err.to_string().contains("url"), "{url:?}: {err}");
        check_no_secret(&err);
    }
}

#[test]
fn a_malformed_url_in_settings_names_the_problem_without_the_password() {
    let settings = Settings::from_pairs([(
        "sqlalchemy_writer.url",
        format!("postgresql://app:{SECRET}@db.example:notaport/app"),
    )]);
    let err = Registry::from_settings(&settings).expect_err("the url is malformed");
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("port"), "{err}");
    check_no_secret(&err);
}

#[test]
fn an_unknown_scheme_lists_the_supported_ones_without_the_password() {
    let err = DatabaseUrl::parse(&format!("oracle://app:{SECRET}@db.example/app"))
        .expect_err("oracle is not supported");
    match &err {
        Error::UnknownScheme { scheme, supported } => {
            assert_eq!(scheme, "oracle");
            assert!(supported.contains("postgresql") && supported.contains("sqlite"));
        }
        other => panic!("expected UnknownScheme, got {other:?}"),
    }
    assert!(err.to_string().contains("oracle"), "{err}");
    check_no_secret(&err);
}

#[test]
fn a_missing_url_key_is_a_missing_setting_naming_the_key() {
    let settings = Settings::from_pairs([("sqlalchemy_writer.pool_size", "5")]);
    let err = Engine::from_settings(&settings, "sqlalchemy_writer.").expect_err("no url");
    match &err {
        Error::MissingSetting { key } => assert_eq!(key, "sqlalchemy_writer.url"),
        other => panic!("expected MissingSetting, got {other:?}"),
    }
    assert_eq!(err.to_string(), "missing setting `sqlalchemy_writer.url`");
}

#[test]
fn an_unknown_engine_name_lists_the_registered_ones() {
    let mut registry = Registry::new();
    registry
        .init_engine("reader", sqlite_engine(), InitOptions::new())
        .unwrap();
    registry
        .init_engine("writer", sqlite_engine(), InitOptions::new().managed(true))
        .unwrap();
    let err = registry.session("writr").expect_err("no such engine");
    match &err {
        Error::UnknownEngine { name, known } => {
            assert_eq!(name, "writr");
            assert_eq!(known, "reader, writer");
        }
        other => panic!("expected UnknownEngine, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("writr") && message.contains("reader, writer"),
        "{message}"
    );
    assert!(matches!(
        registry.engine("writr"),
        Err(Error::UnknownEngine { .. })
    ));
}

#[test]
fn a_duplicate_engine_name_is_refused() {
    let mut registry = Registry::new();
    registry
        .init_engine("writer", sqlite_engine(), InitOptions::new())
        .unwrap();
    let err = registry
        .init_engine("writer", sqlite_engine(), InitOptions::new())
        .expect_err("the name is taken");
    assert!(
        matches!(&err, Error::DuplicateEngine { name } if name == "writer"),
        "{err:?}"
    );
    assert!(err.to_string().contains("writer"));
}

#[test]
fn a_second_default_engine_is_refused_naming_both() {
    let mut registry = Registry::new();
    registry
        .init_engine(
            "reader",
            sqlite_engine(),
            InitOptions::new().default_engine(true),
        )
        .unwrap();
    let err = registry
        .init_engine(
            "writer",
            sqlite_engine(),
            InitOptions::new().default_engine(true),
        )
        .expect_err("reader already is the default");
    match &err {
        Error::DuplicateDefault { existing, name } => {
            assert_eq!((existing.as_str(), name.as_str()), ("reader", "writer"));
        }
        other => panic!("expected DuplicateDefault, got {other:?}"),
    }
    assert_eq!(registry.default_name(), Some("reader"));
    // From settings too.
    let settings = Settings::from_pairs([
        ("sqlalchemy_a.url", "sqlite://"),
        ("sqlalchemy_a.default", "true"),
        ("sqlalchemy_b.url", "sqlite://"),
        ("sqlalchemy_b.default", "true"),
    ]);
    assert!(matches!(
        Registry::from_settings(&settings),
        Err(Error::DuplicateDefault { .. })
    ));
}

#[cfg(feature = "mysql")]
#[test]
fn a_managed_mysql_engine_is_accepted_for_every_sqlalchemy_scheme_without_connecting() {
    for scheme in ["mysql", "mariadb", "mysql+pymysql", "mysql+mysqldb"] {
        let url = DatabaseUrl::parse(&format!("{scheme}://app:{SECRET}@127.0.0.1:1/app")).unwrap();
        assert_eq!(url.backend(), sqlassist::Backend::Mysql);
        let engine = Engine::new(EngineOptions::new(url)).unwrap();
        assert!(!format!("{engine:?}").contains(SECRET));
        let mut registry = Registry::new();
        registry
            .init_engine("writer", engine, InitOptions::new().managed(true))
            .expect("XA makes MariaDB a two-phase resource");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    /// The no-2PC server's URL with its password replaced by `password`.
    fn with_password(url: &str, password: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a url with a scheme");
        let (userinfo, host) = rest.split_once('@').expect("a url with credentials");
        let user = userinfo.split(':').next().expect("a user");
        format!("{scheme}://{user}:{password}@{host}")
    }

    fn pg_engine(url: &str) -> Engine {
        Engine::new(EngineOptions::new(
            DatabaseUrl::parse(url).expect("a postgres url"),
        ))
        .expect("an engine")
    }

    #[test]
    fn a_managed_engine_on_a_server_without_prepared_transactions_says_what_to_do() {
        let Some(url) = common::pg_url("SQLASSIST_TEST_PG_NO2PC_URL") else {
            return;
        };
        common::reset_thread();
        let mut registry = Registry::new();
        registry
            .init_engine("writer", pg_engine(&url), InitOptions::new().managed(true))
            .unwrap();
        registry
            .init_engine("log", pg_engine(&url), InitOptions::new())
            .unwrap();
        registry
            .engine("log")
            .unwrap()
            .check(false)
            .expect("an unmanaged engine needs no prepared transactions");

        let err = registry.check().expect_err("the server cannot prepare");
        assert!(
            matches!(err, Error::PreparedTransactionsDisabled { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("max_prepared_transactions") && message.contains("unmanaged"),
            "{message}"
        );

        // A lone managed session needs no prepared transaction: it commits in one phase
        // (a transaction that needs it to prepare fails at the vote, with the same error).
        let writer = registry.session("writer").unwrap();
        assert_eq!(writer.query_i64("SELECT 1").unwrap(), 1);
        transaction::commit().unwrap();
        let log = registry.session("log").unwrap();
        assert_eq!(log.query_i64("SELECT 1").unwrap(), 1);
        log.rollback().unwrap();
        common::reset_thread();
    }

    #[test]
    fn a_wrong_password_names_the_problem_and_never_shows_the_password() {
        let Some(url) = common::pg_url("SQLASSIST_TEST_PG_NO2PC_URL") else {
            return;
        };
        common::reset_thread();
        let wrong = with_password(&url, SECRET);
        let engine = pg_engine(&wrong);
        assert!(!format!("{engine:?}").contains(SECRET));
        assert!(!engine.url().to_string().contains(SECRET));
        assert!(!format!("{:?}", engine.url()).contains(SECRET));
        let mut registry = Registry::new();
        registry
            .init_engine("writer", engine, InitOptions::new())
            .unwrap();
        assert!(!format!("{registry:?}").contains(SECRET));

        let err = registry.check().expect_err("the server checks passwords");
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(
            err.to_string().contains("password authentication failed"),
            "the message names the problem: {err}"
        );
        check_no_secret(&err);

        // First use fails at once with the same error, not after the pool's timeout.
        let started = std::time::Instant::now();
        let session = registry.session("writer").unwrap();
        let err = session.execute("SELECT 1").expect_err("wrong password");
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(
            err.to_string().contains("password authentication failed"),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        check_no_secret(&err);
        assert!(!format!("{session:?}").contains(SECRET));
        common::reset_thread();
    }
}

/// A Pyramid `[app:main]` section as applications have it: engines beside other services'
/// URLs.
const PYRAMID_SERVICES_INI: &str = "\
[app:main]
use = egg:myapp
sqlalchemy.url = sqlite://
sqlalchemy_reader.url = sqlite://
sqlalchemy_reader.read_only = true
redis.url = redis://localhost:6379/0
session.url = redis://localhost:6379/1
mail.url = smtp://mail.example:25
cache.url = memcached://127.0.0.1:11211
cache.backend = dogpile.cache.memcached
";

#[test]
fn only_engine_prefixes_become_engines_other_services_urls_are_ignored() {
    let settings = Settings::from_ini_str(PYRAMID_SERVICES_INI, "app:main", "/srv/myapp")
        .expect("the section reads");
    let registry =
        Registry::from_settings(&settings).expect("redis, mail and cache are no engines");
    assert_eq!(
        registry.names().collect::<Vec<_>>(),
        ["reader", "sqlalchemy"]
    );
    assert_eq!(
        settings.engine_prefixes(),
        ["sqlalchemy.", "sqlalchemy_reader."]
    );
}

#[test]
fn an_engine_prefix_without_its_url_is_an_error_naming_the_key() {
    // Options but no url.
    let settings = Settings::from_pairs([
        ("sqlalchemy_writer.pool_size", "5"),
        ("sqlalchemy_writer.managed", "true"),
    ]);
    let err = Registry::from_settings(&settings).expect_err("no url for the writer");
    assert!(
        matches!(&err, Error::MissingSetting { key } if key == "sqlalchemy_writer.url"),
        "{err:?}"
    );
    // A misspelt url key, alone or beside other engines.
    for (key, others) in [
        ("sqlalchemy.uri", vec![]),
        (
            "sqlalchemy_writer.ulr",
            vec![("sqlalchemy_reader.url", "sqlite://")],
        ),
    ] {
        let mut pairs = others;
        let value = format!("postgresql://app:{SECRET}@db.example/app");
        pairs.push((key, value.as_str()));
        let settings = Settings::from_pairs(pairs);
        let err = Registry::from_settings(&settings).expect_err("a misspelt url key");
        assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
        check_no_secret(&err);
    }
}

#[test]
fn a_managed_engine_refuses_autocommit_saying_why() {
    let settings = Settings::from_pairs([
        ("sqlalchemy_writer.url", "sqlite://"),
        ("sqlalchemy_writer.managed", "true"),
        ("sqlalchemy_writer.isolation_level", "AUTOCOMMIT"),
    ]);
    let err = Registry::from_settings(&settings).expect_err("managed and autocommit");
    let message = err.to_string();
    assert!(
        message.contains("`sqlalchemy_writer.isolation_level`")
            && message.contains("AUTOCOMMIT")
            && message.contains("managed"),
        "{message}"
    );
    // Unmanaged sessions are transactional too: refused, with the same key named.
    let settings = Settings::from_pairs([
        ("sqlalchemy_log.url", "sqlite://"),
        ("sqlalchemy_log.isolation_level", "autocommit"),
    ]);
    let err = Registry::from_settings(&settings).expect_err("unmanaged and autocommit");
    assert!(
        err.to_string().contains("`sqlalchemy_log.isolation_level`")
            && err.to_string().contains("AUTOCOMMIT"),
        "{err}"
    );
}

#[test]
fn max_overflow_adds_connections_to_the_pool_as_sqlalchemy_queue_pool_does() {
    let dir = std::env::temp_dir().join(common::unique("sqlassist-overflow"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // An empty file is an empty database; read-only sessions take no write lock.
    std::fs::File::create(dir.join("app.db")).expect("a database file");
    let settings = Settings::builder()
        .pairs([
            ("sqlalchemy_w.url", "sqlite:///app.db"),
            ("sqlalchemy_w.read_only", "true"),
            ("sqlalchemy_w.pool_size", "1"),
            ("sqlalchemy_w.max_overflow", "1"),
            ("sqlalchemy_w.pool_timeout", "300ms"),
        ])
        .here(&dir)
        .build()
        .expect("pairs build");
    let registry = Registry::from_settings(&settings).expect("max_overflow is accepted");
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            let session = registry.session("w").unwrap();
            session.query_i64("SELECT 1").expect("a connection");
            barrier.wait();
            barrier.wait();
            session.rollback().unwrap();
        });
        let session = registry.session("w").unwrap();
        barrier.wait();
        // The other thread holds one connection: this one is the overflow.
        let got = session.query_i64("SELECT 1");
        barrier.wait();
        other.join().unwrap();
        got.expect("pool_size 1 + max_overflow 1 allows two connections");
        assert_eq!(registry.engine("w").unwrap().pool_state().connections, 2);
        session.rollback().unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_pool_size_beyond_the_range_is_refused_before_any_pool_is_built() {
    for (key, value) in [
        ("sqlalchemy_w.pool_size", "4294967295"),
        ("sqlalchemy_w.pool_size", "100000"),
        ("sqlalchemy_w.max_overflow", "4294967295"),
        ("sqlalchemy_w.statement_timeout", "2147483648"),
        ("sqlalchemy_w.busy_timeout", "2147483648"),
        ("sqlalchemy_w.pool_timeout", "100000000000"),
    ] {
        let settings = Settings::from_pairs([("sqlalchemy_w.url", "sqlite://"), (key, value)]);
        let err = Registry::from_settings(&settings).expect_err(value);
        match &err {
            Error::InvalidSetting {
                key: k, expected, ..
            } => {
                assert_eq!(k, key);
                assert!(expected.contains(" to "), "the range is named: {err}");
            }
            other => panic!("expected InvalidSetting for {key}, got {other:?}"),
        }
    }
}

#[test]
fn prefixes_the_application_names_become_engines_and_need_their_url() {
    let settings = Settings::from_ini_str(
        &format!("{PYRAMID_SERVICES_INI}audit.url = sqlite://\naudit.read_only = true\n"),
        "app:main",
        "/srv/myapp",
    )
    .expect("the section reads");
    let registry = Registry::from_settings_with_prefixes(&settings, &["audit"])
        .expect("audit is an engine, cache and redis are not");
    assert_eq!(
        registry.names().collect::<Vec<_>>(),
        ["audit", "reader", "sqlalchemy"]
    );
    assert!(registry.engine("audit").unwrap().is_read_only());
    let err = Registry::from_settings_with_prefixes(&settings, &["billing."])
        .expect_err("the application named an engine the settings lack");
    assert!(
        matches!(&err, Error::MissingSetting { key } if key == "billing.url"),
        "{err:?}"
    );
}
