//! A web handler's flow in pyramid_sqlassist's style: a read-only reader, a managed writer
//! and an unmanaged log.
//!
//! ```text
//! cargo run --example quickstart                       # SQLite files, no server needed
//! cargo run --example quickstart --features postgres -- my-settings.ini
//! ```
//!
//! With no argument the example writes `examples/quickstart.ini`'s engines to SQLite files
//! in a fresh temporary directory. Given a settings file (an INI file with an `[app:main]`
//! section, like `examples/quickstart.ini`), it uses those engines instead.

use std::error::Error as StdError;
use std::path::PathBuf;

use sqlassist::{Backend, Registry, Session, Settings};

fn main() -> Result<(), Box<dyn StdError>> {
    // With no settings file, the databases live in a temporary directory removed at the end.
    let mut scratch = None;
    let settings = match std::env::args().nth(1) {
        Some(path) => Settings::from_ini_file(&path, "app:main")?,
        None => {
            let dir =
                std::env::temp_dir().join(format!("sqlassist-quickstart-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            println!("databases in {}", dir.display());
            let text =
                include_str!("quickstart.ini").replace("%(db_dir)s", &dir.display().to_string());
            let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            scratch = Some(dir);
            Settings::from_ini_str(&text, "app:main", &here)?
        }
    };

    // models.initialize_database(settings)
    let registry = Registry::from_settings(&settings)?.install()?;
    for name in registry.names() {
        let engine = registry.engine(name)?;
        println!(
            "engine {name:<7} {} managed={} read_only={}",
            engine.url(),
            registry.is_managed(name)?,
            engine.is_read_only()
        );
    }

    let writer = sqlassist::db_session("writer")?;
    let log = sqlassist::db_session("log")?;
    writer.execute("CREATE TABLE IF NOT EXISTS test_table (name TEXT NOT NULL)")?;
    log.execute("CREATE TABLE IF NOT EXISTS log (message TEXT NOT NULL)")?;
    transaction::commit()?;
    log.commit()?;

    // The handler.
    let reader = sqlassist::db_session("reader")?;
    println!("1. reader sees {} rows", count(&reader, "test_table")?);

    match reader.execute("INSERT INTO test_table (name) VALUES ('Test Case 1')") {
        Ok(_) => println!("2. the reader wrote a row: it should not be able to"),
        Err(e) => {
            println!("2. DENIED! {e}");
            reader.rollback()?;
        }
    }

    writer.execute("INSERT INTO test_table (name) VALUES ('Test Case 2')")?;
    match writer.commit() {
        Err(sqlassist::Error::CommitThroughTransactionManager { engine }) => {
            println!("3. {engine}.commit() refused: a managed session commits through transaction::commit()")
        }
        other => println!("3. unexpected: {other:?}"),
    }
    log.execute("INSERT INTO log (message) VALUES ('handled a request')")?;
    log.commit()?;
    println!("4. log committed on its own");

    transaction::commit()?;
    println!("5. transaction::commit() committed the writer");

    writer.execute("INSERT INTO test_table (name) VALUES ('never committed')")?;
    transaction::abort()?;
    println!("6. transaction::abort() discarded the writer's pending row");

    sqlassist::close_sessions()?;
    let reader = sqlassist::db_session("reader")?;
    println!(
        "7. reader now sees {} rows; the log has {} entries",
        count(&reader, "test_table")?,
        count(&sqlassist::db_session("log")?, "log")?
    );
    sqlassist::close_sessions()?;
    if let Some(dir) = scratch {
        std::fs::remove_dir_all(&dir)?;
        println!("removed {}", dir.display());
    }
    Ok(())
}

fn count(session: &Session, table: &str) -> Result<i64, sqlassist::Error> {
    let n = session.query_i64(&format!("SELECT COUNT(*) FROM {table}"))?;
    if session.engine().backend() == Backend::Sqlite {
        // A read-only SQLite transaction holds a shared lock until it ends.
        session.rollback()?;
    }
    Ok(n)
}
