//! The process-wide registry: installed once, used by `sqlassist::db_session`.
//!
//! `Registry::install` is once per process, so this file holds a single test and no
//! other test file calls it.

mod common;

use sqlassist::{DatabaseUrl, Engine, EngineOptions, Error, InitOptions, Registry};

#[test]
fn a_registry_is_installed_once_and_serves_db_session() {
    assert!(matches!(sqlassist::registry(), Err(Error::NoRegistry)));
    assert!(matches!(
        sqlassist::db_session("writer"),
        Err(Error::NoRegistry)
    ));

    let dir = common::TempDir::new("install");
    let db = dir.file("app.db");
    let url = DatabaseUrl::parse(&format!("sqlite:///{}", db.display())).unwrap();
    let mut registry = Registry::new();
    registry
        .init_engine(
            "writer",
            Engine::new(EngineOptions::new(url)).unwrap(),
            InitOptions::new().managed(true).default_engine(true),
        )
        .unwrap();
    let installed = registry.install().unwrap();
    assert_eq!(installed.default_name(), Some("writer"));

    let err = Registry::new()
        .install()
        .expect_err("installed once per process");
    assert!(matches!(err, Error::RegistryAlreadyInstalled), "{err:?}");
    assert_eq!(
        sqlassist::registry().unwrap().default_name(),
        Some("writer"),
        "the first registry stays installed"
    );

    let writer = sqlassist::db_session("writer").unwrap();
    assert!(
        writer.ptr_eq(&sqlassist::db_session("writer").unwrap()),
        "one session per thread"
    );
    writer.execute("CREATE TABLE t (v INTEGER)").unwrap();
    writer.execute("INSERT INTO t VALUES (1)").unwrap();
    transaction::commit().unwrap();
    assert!(matches!(
        sqlassist::db_session("reader"),
        Err(Error::UnknownEngine { .. })
    ));
    sqlassist::close_sessions().unwrap();
    let writer = sqlassist::db_session("writer").unwrap();
    assert_eq!(writer.query_i64("SELECT COUNT(*) FROM t").unwrap(), 1);
    writer.rollback().unwrap();
    sqlassist::close_sessions().unwrap();
}
