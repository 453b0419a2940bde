//! PostgreSQL URLs without a host connect through libpq's default Unix socket, as libpq
//! reads them (`postgresql:///db`, `postgresql://user@/db`).
//!
//! Needs the local server's socket in libpq's default directory (`/var/run/postgresql` on
//! Debian), which trusts local connections under `scripts/test`. The database and role
//! are taken from `SQLASSIST_TEST_PG_URL`.

mod common;

use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry};

/// The user and database of `SQLASSIST_TEST_PG_URL`.
fn user_and_database(url: &str) -> (String, String) {
    let rest = url.split_once("://").expect("a URL with a scheme").1;
    let (userinfo, hostpath) = rest.rsplit_once('@').expect("a URL with a user");
    let user = userinfo.split(':').next().expect("a user").to_owned();
    let database = hostpath
        .split_once('/')
        .expect("a URL with a database")
        .1
        .split('?')
        .next()
        .expect("a database name")
        .to_owned();
    (user, database)
}

#[test]
fn urls_without_a_host_connect_through_the_default_unix_socket() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    let (user, database) = user_and_database(&url);
    for socket_url in [
        format!("postgresql:///{database}?user={user}"),
        format!("postgresql://{user}@/{database}"),
        format!("postgresql+psycopg2://{user}@/{database}?application_name=socket_test"),
    ] {
        let parsed = DatabaseUrl::parse(&socket_url)
            .unwrap_or_else(|e| panic!("{socket_url} should parse: {e}"));
        assert_eq!(parsed.database_name(), Some(database.as_str()));
        let engine = Engine::new(EngineOptions::new(parsed)).expect("an engine");
        let mut registry = Registry::new();
        registry
            .init_engine("socket", engine, InitOptions::new())
            .expect("registers");
        let session = registry.session("socket").expect("a session");
        // inet_server_addr() is NULL exactly when the connection is a Unix socket.
        session
            .execute(
                "DO $$ BEGIN IF inet_server_addr() IS NOT NULL THEN \
                 RAISE EXCEPTION 'connected over TCP, not the Unix socket'; END IF; END $$",
            )
            .unwrap_or_else(|e| panic!("{socket_url}: {e}"));
        session.rollback().expect("rolls back");
        drop(session);
        sqlassist::close_sessions().expect("closes");
    }
}
