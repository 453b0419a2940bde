//! A notes service on sqlassist-axum: a managed writer, a reader (the writer's SQLite file
//! read-only, or a PostgreSQL replica), and an unmanaged log whose rows survive aborts.
//!
//! | route | what it shows |
//! |---|---|
//! | `POST /notes/{id}` (body: the text) | commit: 201, the row is there when the response arrives |
//! | `GET /notes/{id}` | a read, routed to the reader (or the writer after this client's write) |
//! | `POST /notes/{id}/reject` | veto: writes, answers 422, nothing commits |
//! | `POST /notes/{id}/fail` | abort on error: writes, then a real duplicate-key error |
//! | `POST /notes/{id}/bump?conflict=1` | retry: attempt 1 meets a real lock conflict, attempt 2 commits |
//! | `POST /panic` | a panicking handler: 500, the pools stay whole |
//! | `GET /slow/{ms}` | holds the writer for `ms` milliseconds (to saturate the service) |
//! | `GET /debug/engines` | introspection: engines (URL redacted), pools, units in flight, as JSON |
//! | `GET /debug` | the same as a small HTML page |
//! | `GET /metrics` | commits, aborts, retries, commit latency, gate waits, pool waits per engine: Prometheus text format |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use diesel::RunQueryDsl;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlassist::{Backend, Registry, Session, Settings};
use sqlassist_axum::{Attempt, DbError, Routes, Snapshot, Tm, TmLayer};

/// Errors of the service's setup.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The service's settings that are not engines.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Where to listen (`app.listen`).
    pub listen: SocketAddr,
    /// Attempts per request (`app.attempts`).
    pub attempts: u32,
    /// Wait for a slot before 503 (`app.wait_ms`).
    pub wait: Duration,
}

impl ServiceOptions {
    /// Reads `app.listen`, `app.attempts` and `app.wait_ms`.
    ///
    /// # Errors
    ///
    /// A value that does not parse, naming its key.
    pub fn from_settings(settings: &Settings) -> Result<Self, BoxError> {
        let parse = |key: &str, default: &str| -> String {
            settings.get(key).unwrap_or(default).to_owned()
        };
        Ok(ServiceOptions {
            listen: parse("app.listen", "127.0.0.1:8080")
                .parse()
                .map_err(|e| format!("app.listen: {e}"))?,
            attempts: parse("app.attempts", "3")
                .parse()
                .map_err(|e| format!("app.attempts: {e}"))?,
            wait: Duration::from_millis(
                parse("app.wait_ms", "5000")
                    .parse()
                    .map_err(|e| format!("app.wait_ms: {e}"))?,
            ),
        })
    }
}

/// What handlers share: the registry (for introspection) and the writer's URL (to
/// provoke conflicts from another connection).
#[derive(Clone)]
struct AppState {
    layer: TmLayer,
    writer_url: Arc<str>,
    metrics: PrometheusHandle,
}

/// Builds the registry from `settings`, creates the tables, and returns the router, the
/// options and the registry (to [`Registry::shutdown`] once the server stopped).
///
/// # Errors
///
/// Bad settings, or a database that cannot be reached or changed.
pub fn app(settings: &Settings) -> Result<(axum::Router, ServiceOptions, Arc<Registry>), BoxError> {
    let options = ServiceOptions::from_settings(settings)?;
    let registry = Arc::new(Registry::from_settings(settings)?);
    create_tables(&registry)?;
    let routes = Routes::new("writer").readers(["reader"]);
    let layer = TmLayer::new(registry.clone(), routes)
        .attempts(options.attempts)
        .wait(options.wait);
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("installing the metrics recorder: {e}"))?;
    let router = axum::Router::new()
        .route("/notes/{id}", post(create).get(read))
        .route("/notes/{id}/reject", post(reject))
        .route("/notes/{id}/fail", post(fail))
        .route("/notes/{id}/bump", post(bump))
        .route("/panic", post(panic_handler))
        .route("/slow/{ms}", get(slow))
        .layer(layer.clone())
        .route("/debug/engines", get(engines))
        .route("/debug", get(debug_page))
        .route("/metrics", get(render_metrics))
        .with_state(AppState {
            writer_url: settings
                .get("sqlalchemy_writer.url")
                .unwrap_or_default()
                .into(),
            layer,
            metrics,
        });
    Ok((router, options, registry))
}

fn create_tables(registry: &Registry) -> Result<(), BoxError> {
    for dir in sqlite_dirs(registry) {
        std::fs::create_dir_all(dir)?;
    }
    let manager = registry.transaction_manager();
    manager.scope(|| -> Result<(), BoxError> {
        manager.begin()?;
        let writer = registry.session("writer")?;
        let id = match writer.engine().backend() {
            Backend::Postgres => "BIGINT PRIMARY KEY",
            _ => "INTEGER PRIMARY KEY",
        };
        writer.execute(&format!(
            "CREATE TABLE IF NOT EXISTS notes (id {id}, body TEXT NOT NULL, bumps BIGINT NOT NULL DEFAULT 0)"
        ))?;
        manager.commit()?;
        let log = registry.session("log")?;
        log.execute("CREATE TABLE IF NOT EXISTS request_log (line TEXT NOT NULL)")?;
        log.commit()?;
        sqlassist::close_sessions()?;
        Ok(())
    })
}

/// The directories of the SQLite files among the engines, to create them.
fn sqlite_dirs(registry: &Registry) -> Vec<std::path::PathBuf> {
    registry
        .names()
        .filter_map(|name| registry.engine(name).ok())
        .filter_map(|engine| engine.url().sqlite_path()?.parent().map(ToOwned::to_owned))
        .collect()
}

/// Runs `sql` with one text parameter (`$1`, written `?` for SQLite).
fn execute_with_text(session: &Session, sql: &str, text: &str) -> Result<usize, DbError> {
    use diesel::sql_types::Text;
    Ok(match session.engine().backend() {
        #[cfg(feature = "postgres")]
        Backend::Postgres => session.run::<diesel::PgConnection, _>(|c| {
            diesel::sql_query(sql).bind::<Text, _>(text).execute(c)
        })?,
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => session.run::<diesel::SqliteConnection, _>(|c| {
            diesel::sql_query(sql.replace("$1", "?"))
                .bind::<Text, _>(text)
                .execute(c)
        })?,
        other => {
            return Err(DbError(sqlassist::Error::BackendNotEnabled {
                backend: other,
                feature: "sqlite or postgres (of axum-service)",
            }))
        }
    })
}

/// Writes a line to the unmanaged log: committed at once, whatever the request does.
fn log_line(att: &Attempt<'_>, line: &str) -> Result<(), DbError> {
    let log = att.session("log")?;
    execute_with_text(&log, "INSERT INTO request_log (line) VALUES ($1)", line)?;
    log.commit()?;
    Ok(())
}

fn insert(att: &Attempt<'_>, id: i64, body: &str) -> Result<(), DbError> {
    execute_with_text(
        &att.writer()?,
        &format!("INSERT INTO notes (id, body) VALUES ({id}, $1)"),
        body,
    )?;
    Ok(())
}

async fn create(tm: Tm, Path(id): Path<i64>, body: String) -> Response {
    tm.run(move |att| -> Result<_, DbError> {
        insert(att, id, &body)?;
        log_line(att, &format!("create {id}"))?;
        Ok((StatusCode::CREATED, format!("created {id}\n")))
    })
    .await
}

async fn read(tm: Tm, Path(id): Path<i64>) -> Response {
    tm.run(move |att| -> Result<Response, DbError> {
        let reader = att.reader()?;
        let found = reader.query_i64(&format!("SELECT count(*) FROM notes WHERE id = {id}"))?;
        if found == 0 {
            return Ok((StatusCode::NOT_FOUND, "no such note\n").into_response());
        }
        let bumps = reader.query_i64(&format!("SELECT bumps FROM notes WHERE id = {id}"))?;
        Ok(format!("note {id} bumps {bumps} from {}\n", reader.name()).into_response())
    })
    .await
}

async fn reject(tm: Tm, Path(id): Path<i64>) -> Response {
    tm.run(move |att| -> Result<_, DbError> {
        insert(att, id, "rejected")?;
        Ok((StatusCode::UNPROCESSABLE_ENTITY, "rejected\n"))
    })
    .await
}

async fn fail(tm: Tm, Path(id): Path<i64>) -> Response {
    tm.run(move |att| -> Result<&'static str, DbError> {
        insert(att, id, "first")?;
        insert(att, id, "again")?; // a real duplicate-key error
        Ok("unreachable\n")
    })
    .await
}

/// With `?conflict=1`, attempt 1 meets another connection's write lock (SQLite) or a
/// concurrent update (PostgreSQL under REPEATABLE READ): a real transient error.
async fn bump(
    State(state): State<AppState>,
    tm: Tm,
    Path(id): Path<i64>,
    RawQuery(query): RawQuery,
) -> Response {
    let conflict = query.as_deref() == Some("conflict=1");
    let url = state.writer_url.clone();
    tm.run(move |att| -> Result<String, DbError> {
        let writer = att.writer()?;
        let sqlite = writer.engine().backend() == Backend::Sqlite;
        // SQLite: the other connection takes the write lock before this transaction
        // begins; PostgreSQL: it updates the row after this transaction's snapshot.
        let _other =
            (conflict && att.number() == 1 && sqlite).then(|| interfere(&writer, &url, id));
        writer.query_i64(&format!("SELECT count(*) FROM notes WHERE id = {id}"))?;
        let _other =
            (conflict && att.number() == 1 && !sqlite).then(|| interfere(&writer, &url, id));
        writer.execute(&format!(
            "UPDATE notes SET bumps = bumps + 1 WHERE id = {id}"
        ))?;
        Ok(format!("bumped {id} on attempt {}\n", att.number()))
    })
    .await
}

/// Another connection that gets in the way of `writer`'s next update of row `id`; it
/// holds its lock until dropped.
fn interfere(writer: &Session, url: &str, id: i64) -> Box<dyn std::any::Any> {
    use diesel::Connection;
    match writer.engine().backend() {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => {
            let path = writer.engine().url().sqlite_path().expect("a SQLite file");
            let mut other = diesel::SqliteConnection::establish(&path.to_string_lossy())
                .expect("a second connection to the SQLite file");
            diesel::sql_query("BEGIN IMMEDIATE")
                .execute(&mut other)
                .expect("the write lock");
            Box::new(other)
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let mut other =
                diesel::PgConnection::establish(url).expect("a second connection to the writer");
            diesel::sql_query(format!(
                "UPDATE notes SET bumps = bumps + 10 WHERE id = {id}"
            ))
            .execute(&mut other)
            .expect("the concurrent update");
            Box::new(())
        }
        other => panic!("no conflict to provoke on {other} for note {id} at {url}"),
    }
}

async fn panic_handler(tm: Tm) -> Response {
    tm.run(|att| -> Result<&'static str, DbError> {
        insert(att, -1, "doomed")?;
        panic!("a bug in a handler");
    })
    .await
}

async fn slow(tm: Tm, Path(ms): Path<u64>) -> Response {
    tm.run(move |att| -> Result<&'static str, DbError> {
        att.writer()?.query_i64("SELECT 1")?;
        std::thread::sleep(Duration::from_millis(ms));
        Ok("slow\n")
    })
    .await
}

async fn engines(State(state): State<AppState>) -> Json<Snapshot> {
    Json(state.layer.snapshot())
}

async fn render_metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}

/// Text for HTML: `&`, `<`, `>` and quotes escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The snapshot as a page: pyramid_sqlassist's debug-toolbar panel, as a page.
async fn debug_page(State(state): State<AppState>) -> axum::response::Html<String> {
    let snapshot = state.layer.snapshot();
    let mut rows = String::new();
    for e in &snapshot.engines {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{} {}</td></tr>\n",
            escape(&e.name),
            e.role,
            escape(&e.backend),
            escape(&e.url),
            e.managed,
            e.read_only,
            e.idle,
            e.connections,
            e.open_sessions,
            escape(&e.held_by.join(", ")),
        ));
    }
    axum::response::Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>sqlassist</title></head><body>\n\
         <h1>sqlassist engines</h1>\n\
         <p id=\"units\">units in flight: {} of {}</p>\n\
         <table id=\"engines\"><tr><th>name</th><th>role</th><th>backend</th><th>url</th>\
         <th>managed</th><th>read-only</th><th>idle/open</th><th>sessions</th></tr>\n{rows}</table>\n</body></html>\n",
        snapshot.units_in_flight, snapshot.max_in_flight
    ))
}
