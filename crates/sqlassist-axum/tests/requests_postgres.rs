//! A transaction per request over real HTTP, two-phase commit across the two PostgreSQL
//! test databases: commit, veto, abort on error, retry on a real serialization failure,
//! commit failure through the mapper, panics, disconnects, overload; and after each test
//! every connection is back in its pool and no prepared branch is left.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use diesel::prelude::*;
use http::StatusCode;
use sqlassist::{
    DatabaseUrl, Engine, EngineOptions, InitOptions, IsolationLevel, NodeId, Registry,
};
use sqlassist_axum::{Attempt, DbError, Routes, Tm, TmError, TmLayer};

static NEXT: AtomicU32 = AtomicU32::new(0);
/// Row ids, unique across the apps of a test.
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// A name unique to this test run: `axum_<pid>_<n>`.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

struct Dbs {
    url1: String,
    url2: String,
    registry: Arc<Registry>,
    node: String,
    table: String,
}

impl Dbs {
    /// Engines "writer" (sqlassist_test) and "second" (sqlassist_test2), both managed, with
    /// pools of `pool` connections; a table of the same fresh name in each.
    fn new(pool: u32, isolation: Option<IsolationLevel>) -> Option<Dbs> {
        let url1 = common::pg_url("SQLASSIST_TEST_PG_URL")?;
        let url2 = common::pg_url("SQLASSIST_TEST_PG_URL_2")?;
        let table = unique("axum_t");
        let node = unique("axum").replace('_', "-");
        let mut registry = Registry::new();
        registry.set_node_id(NodeId::new(&node).expect("node id"));
        for (name, url) in [("writer", &url1), ("second", &url2)] {
            let mut b = EngineOptions::builder(DatabaseUrl::parse(url).expect("url"))
                .pool_size(pool)
                .pool_timeout(Duration::from_secs(5));
            if let Some(level) = isolation {
                b = b.isolation_level(level);
            }
            let engine = Engine::new(b.build().expect("options")).expect("engine");
            registry
                .init_engine(name, engine, InitOptions::new().managed(true))
                .expect("init");
            let mut c = PgConnection::establish(url).expect("connect");
            diesel::sql_query(format!(
                "CREATE TABLE {table} (id INT PRIMARY KEY, v INT NOT NULL)"
            ))
            .execute(&mut c)
            .expect("create table");
        }
        Some(Dbs {
            url1,
            url2,
            registry: Arc::new(registry),
            node,
            table,
        })
    }

    fn count(&self, url: &str) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut c = PgConnection::establish(url).expect("connect");
        diesel::sql_query(format!("SELECT count(*) AS n FROM {}", self.table))
            .get_result::<N>(&mut c)
            .expect("count")
            .n
    }

    fn value(&self, url: &str, id: i32) -> Option<i32> {
        #[derive(QueryableByName)]
        struct V {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            v: i32,
        }
        let mut c = PgConnection::establish(url).expect("connect");
        diesel::sql_query(format!("SELECT v FROM {} WHERE id = {id}", self.table))
            .get_result::<V>(&mut c)
            .optional()
            .expect("select")
            .map(|r| r.v)
    }

    /// Rows in both databases (they always move together).
    fn rows(&self) -> (i64, i64) {
        (self.count(&self.url1), self.count(&self.url2))
    }

    /// No connection out of either pool, and no prepared branch of this registry.
    fn assert_clean(&self) {
        for name in ["writer", "second"] {
            let state = self.registry.engine(name).expect("engine").pool_state();
            assert_eq!(
                state.idle, state.connections,
                "{name}: every connection back in the pool"
            );
        }
        for url in [&self.url1, &self.url2] {
            #[derive(QueryableByName)]
            struct N {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let mut c = PgConnection::establish(url).expect("connect");
            let n = diesel::sql_query(format!(
                "SELECT count(*) AS n FROM pg_prepared_xacts WHERE gid LIKE 'sqlassist_{}_%'",
                self.node
            ))
            .get_result::<N>(&mut c)
            .expect("prepared")
            .n;
            assert_eq!(n, 0, "no prepared branch left");
        }
    }

    fn drop_tables(&self) {
        for url in [&self.url1, &self.url2] {
            let mut c = PgConnection::establish(url).expect("connect");
            diesel::sql_query(format!("DROP TABLE IF EXISTS {}", self.table))
                .execute(&mut c)
                .expect("drop");
        }
    }
}

/// Inserts row `id` into both databases through the writer and the second engine.
fn insert_both(att: &Attempt<'_>, table: &str, id: i32) -> Result<(), DbError> {
    att.writer()?
        .execute(&format!("INSERT INTO {table} VALUES ({id}, 1)"))?;
    att.session("second")?
        .execute(&format!("INSERT INTO {table} VALUES ({id}, 1)"))?;
    Ok(())
}

fn layer(dbs: &Dbs) -> TmLayer {
    TmLayer::new(dbs.registry.clone(), Routes::new("writer"))
}

/// `/status/{code}` inserts a row in both databases and answers `code`, with the `x-tm`
/// header of the query string when given.
fn status_app(dbs: &Dbs, layer: TmLayer) -> axum::Router {
    let table = dbs.table.clone();
    axum::Router::new()
        .route(
            "/status/{code}",
            post(
                move |tm: Tm,
                      axum::extract::Path(code): axum::extract::Path<u16>,
                      axum::extract::RawQuery(q): axum::extract::RawQuery| {
                    let table = table.clone();
                    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed) as i32;
                    async move {
                        tm.run(move |att| -> Result<Response, DbError> {
                            insert_both(att, &table, id)?;
                            let status = StatusCode::from_u16(code).expect("status");
                            let mut r = (status, "done").into_response();
                            if let Some(tm_value) = q.as_deref().and_then(|q| q.strip_prefix("tm="))
                            {
                                r.headers_mut().insert(
                                    "x-tm",
                                    http::HeaderValue::from_str(tm_value).expect("header"),
                                );
                            }
                            Ok(r)
                        })
                        .await
                    }
                },
            ),
        )
        .layer(layer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_commits_on_both_databases_before_the_response_arrives() {
    let Some(dbs) = Dbs::new(2, None) else { return };
    let addr = common::serve(status_app(&dbs, layer(&dbs))).await;
    let r = common::post(addr, "/status/201").await;
    assert_eq!((r.status, r.body.as_str()), (201, "done"));
    // Visible to fresh connections the moment the response is in.
    assert_eq!(dbs.rows(), (1, 1));
    dbs.assert_clean();
    dbs.drop_tables();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_veto_aborts_4xx_5xx_and_obeys_the_x_tm_header() {
    let Some(dbs) = Dbs::new(2, None) else { return };
    let addr = common::serve(status_app(&dbs, layer(&dbs))).await;
    for (path, status) in [
        ("/status/422", 422),
        ("/status/404", 404),
        ("/status/500", 500),
        ("/status/200?tm=abort", 200),
    ] {
        let r = common::post(addr, path).await;
        assert_eq!(r.status, status, "{path}");
        assert_eq!(
            r.header("x-tm"),
            None,
            "the override is not sent to the client"
        );
        assert_eq!(dbs.rows(), (0, 0), "{path} aborted");
    }
    let r = common::post(addr, "/status/500?tm=commit").await;
    assert_eq!(r.status, 500);
    assert_eq!(dbs.rows(), (1, 1), "x-tm: commit commits a 500");
    dbs.assert_clean();
    dbs.drop_tables();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_veto_a_500_commits_and_a_custom_veto_decides() {
    let Some(dbs) = Dbs::new(2, None) else { return };
    let addr = common::serve(status_app(&dbs, layer(&dbs).no_commit_veto())).await;
    assert_eq!(common::post(addr, "/status/500").await.status, 500);
    assert_eq!(dbs.rows(), (1, 1));
    let only_201 = layer(&dbs).commit_veto(|r| r.status() != StatusCode::CREATED);
    let addr = common::serve(status_app(&dbs, only_201)).await;
    assert_eq!(common::post(addr, "/status/200").await.status, 200);
    assert_eq!(dbs.rows(), (1, 1), "vetoed");
    assert_eq!(common::post(addr, "/status/201").await.status, 201);
    assert_eq!(dbs.rows(), (2, 2));
    dbs.assert_clean();
    dbs.drop_tables();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_aborts_and_becomes_the_response_and_doom_aborts_a_200() {
    let Some(dbs) = Dbs::new(2, None) else { return };
    let (t1, t2) = (dbs.table.clone(), dbs.table.clone());
    let app = axum::Router::new()
        .route(
            "/err",
            post(move |tm: Tm| {
                let table = t1.clone();
                async move {
                    tm.run(move |att| -> Result<&'static str, DbError> {
                        insert_both(att, &table, 1)?;
                        // A real database error: the same key again.
                        att.writer()?
                            .execute(&format!("INSERT INTO {table} VALUES (1, 1)"))?;
                        Ok("unreachable")
                    })
                    .await
                }
            }),
        )
        .route(
            "/doom",
            post(move |tm: Tm| {
                let table = t2.clone();
                async move {
                    tm.run(move |att| -> Result<&'static str, DbError> {
                        insert_both(att, &table, 2)?;
                        att.doom()?;
                        Ok("doomed")
                    })
                    .await
                }
            }),
        )
        .layer(layer(&dbs));
    let addr = common::serve(app).await;
    let r = common::post(addr, "/err").await;
    assert_eq!((r.status, r.body.as_str()), (500, "database error\n"));
    assert_eq!(dbs.rows(), (0, 0));
    let r = common::post(addr, "/doom").await;
    assert_eq!((r.status, r.body.as_str()), (200, "doomed"));
    assert_eq!(dbs.rows(), (0, 0));
    dbs.assert_clean();
    dbs.drop_tables();
}

/// Attempt 1 reads row 1 under REPEATABLE READ, then another connection updates it and
/// commits, so attempt 1's own update fails with a real serialization failure (40001).
fn conflict_app(dbs: &Dbs, attempts: u32, runs: Arc<AtomicU32>) -> axum::Router {
    let table = dbs.table.clone();
    let url = dbs.url1.clone();
    let l = layer(dbs).attempts(attempts);
    axum::Router::new()
        .route(
            "/bump",
            post(move |tm: Tm| {
                let (table, url, runs) = (table.clone(), url.clone(), runs.clone());
                async move {
                    tm.run(move |att| -> Result<String, DbError> {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let w = att.writer()?;
                        w.query_i64(&format!("SELECT v FROM {table} WHERE id = 1"))?;
                        if att.number() == 1 {
                            let mut other = PgConnection::establish(&url).expect("connect");
                            diesel::sql_query(format!(
                                "UPDATE {table} SET v = v + 10 WHERE id = 1"
                            ))
                            .execute(&mut other)
                            .expect("concurrent update");
                        }
                        w.execute(&format!("UPDATE {table} SET v = v + 1 WHERE id = 1"))?;
                        Ok(format!("attempt {}", att.number()))
                    })
                    .await
                }
            }),
        )
        .layer(l)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serialization_failure_is_retried_in_a_fresh_transaction() {
    let Some(dbs) = Dbs::new(2, Some(IsolationLevel::RepeatableRead)) else {
        return;
    };
    let mut c = PgConnection::establish(&dbs.url1).expect("connect");
    diesel::sql_query(format!("INSERT INTO {} VALUES (1, 0)", dbs.table))
        .execute(&mut c)
        .expect("seed row");

    let runs = Arc::new(AtomicU32::new(0));
    let addr = common::serve(conflict_app(&dbs, 3, runs.clone())).await;
    let r = common::post(addr, "/bump").await;
    assert_eq!((r.status, r.body.as_str()), (200, "attempt 2"));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        dbs.value(&dbs.url1, 1),
        Some(11),
        "the other update and ours, once"
    );

    // One attempt only: the conflict is the answer.
    let runs = Arc::new(AtomicU32::new(0));
    let addr = common::serve(conflict_app(&dbs, 1, runs.clone())).await;
    let r = common::post(addr, "/bump").await;
    assert_eq!(r.status, 503, "a transient database error: {}", r.body);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(dbs.value(&dbs.url1, 1), Some(21), "only the other update");
    dbs.assert_clean();
    dbs.drop_tables();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_answered_by_the_mapper_and_nothing_persists() {
    let Some(dbs) = Dbs::new(2, None) else { return };
    let parent = format!("{}_p", dbs.table);
    let child = format!("{}_c", dbs.table);
    let mut c = PgConnection::establish(&dbs.url1).expect("connect");
    diesel::sql_query(format!("CREATE TABLE {parent} (id INT PRIMARY KEY)"))
        .execute(&mut c)
        .expect("parent");
    diesel::sql_query(format!(
        "CREATE TABLE {child} (pid INT REFERENCES {parent} DEFERRABLE INITIALLY DEFERRED)"
    ))
    .execute(&mut c)
    .expect("child");
    let (table, ch) = (dbs.table.clone(), child.clone());
    let app = axum::Router::new()
        .route(
            "/orphan",
            post(move |tm: Tm| {
                let (table, child) = (table.clone(), ch.clone());
                async move {
                    tm.run(move |att| -> Result<&'static str, DbError> {
                        insert_both(att, &table, 1)?;
                        // Accepted now, refused when the branch is prepared.
                        att.writer()?
                            .execute(&format!("INSERT INTO {child} VALUES (42)"))?;
                        Ok("created")
                    })
                    .await
                }
            }),
        )
        .layer(layer(&dbs).error_response(|e| match e {
            TmError::Commit(_) => (StatusCode::IM_A_TEAPOT, "commit failed").into_response(),
            other => other.default_response(),
        }));
    let addr = common::serve(app).await;
    let r = common::post(addr, "/orphan").await;
    assert_eq!((r.status, r.body.as_str()), (418, "commit failed"));
    assert_eq!(dbs.rows(), (0, 0), "neither database kept the row");
    dbs.assert_clean();
    diesel::sql_query(format!("DROP TABLE {child}, {parent}"))
        .execute(&mut c)
        .expect("drop");
    dbs.drop_tables();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_answered_500_and_leaves_the_pools_whole() {
    let Some(dbs) = Dbs::new(1, None) else { return };
    let table = dbs.table.clone();
    let app = status_app(&dbs, layer(&dbs)).route(
        "/panic",
        post(move |tm: Tm| {
            let table = table.clone();
            async move {
                tm.run(move |att| -> Result<&'static str, DbError> {
                    insert_both(att, &table, 100)?;
                    panic!("handler bug");
                })
                .await
            }
        }),
    );
    let addr = common::serve(app.layer(layer(&dbs))).await;
    for _ in 0..3 {
        assert_eq!(common::post(addr, "/panic").await.status, 500);
        dbs.assert_clean();
    }
    // Pools of one connection: the next request gets it, with no transaction left open.
    assert_eq!(common::post(addr, "/status/200").await.status, 200);
    assert_eq!(dbs.rows(), (1, 1));
    dbs.assert_clean();
    dbs.drop_tables();
}

/// `/slow` signals `started`, waits for `release`, then writes to both databases.
fn latch_app(dbs: &Dbs, layer: TmLayer) -> (axum::Router, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let started_tx = Arc::new(Mutex::new(started_tx));
    let release_rx = Arc::new(Mutex::new(release_rx));
    let table = dbs.table.clone();
    let next = Arc::new(AtomicU32::new(1));
    let app = axum::Router::new()
        .route(
            "/slow",
            post(move |tm: Tm| {
                let (table, started, release) =
                    (table.clone(), started_tx.clone(), release_rx.clone());
                let id = next.fetch_add(1, Ordering::Relaxed) as i32;
                async move {
                    tm.run(move |att| -> Result<&'static str, DbError> {
                        insert_both(att, &table, id)?;
                        let _ = started.lock().expect("latch").send(());
                        let _ = release.lock().expect("latch").recv();
                        Ok("slow done")
                    })
                    .await
                }
            }),
        )
        .route("/ping", get(|| async { "pong" }))
        .layer(layer);
    (app, started_rx, release_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_does_not_stop_the_commit() {
    let Some(dbs) = Dbs::new(2, None) else { return };
    let (app, started, release) = latch_app(&dbs, layer(&dbs));
    let addr = common::serve(app).await;
    let client = common::send_only(addr, "POST", "/slow").await;
    tokio::task::spawn_blocking(move || started.recv_timeout(Duration::from_secs(30)))
        .await
        .expect("join")
        .expect("the work started");
    drop(client); // the client goes away mid-request
                  // Time for the server to see the socket close and drop the request's future.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dbs.rows(), (0, 0));
    release.send(()).expect("release");
    let committed = common::eventually(Duration::from_secs(10), || dbs.rows() == (1, 1)).await;
    assert!(
        committed,
        "the unit of work committed after the client left"
    );
    assert!(
        common::eventually(Duration::from_secs(5), || {
            let s = dbs.registry.engine("writer").expect("engine").pool_state();
            s.idle == s.connections
        })
        .await
    );
    dbs.assert_clean();
    dbs.drop_tables();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_wait_time_a_saturated_service_answers_503() {
    let Some(dbs) = Dbs::new(1, None) else { return };
    let l = layer(&dbs).wait(Duration::from_millis(200));
    assert_eq!(l.max_in_flight(), 1, "sized from the pools");
    let (app, started, release) = latch_app(&dbs, l.clone());
    let addr = common::serve(app).await;
    let first = tokio::spawn(async move { common::post(addr, "/slow").await });
    tokio::task::spawn_blocking(move || started.recv_timeout(Duration::from_secs(30)))
        .await
        .expect("join")
        .expect("the first request holds the only slot");
    // The snapshot shows the unit, its transaction and its two sessions.
    let snapshot = l.snapshot();
    assert_eq!((snapshot.units_in_flight, snapshot.units.len()), (1, 1));
    let unit = &snapshot.units[0];
    assert_eq!(
        (unit.path.as_str(), unit.attempt, unit.phase),
        ("/slow", 1, "work")
    );
    assert!(unit.transaction.is_some());
    let writer = snapshot
        .engines
        .iter()
        .find(|e| e.name == "writer")
        .expect("writer");
    assert_eq!(
        (writer.connections, writer.idle, writer.managed),
        (1, 0, true)
    );
    assert!(!writer.url.contains("writer_pw"), "{}", writer.url);
    let second = common::post(addr, "/slow").await;
    assert_eq!(second.status, 503);
    assert_eq!(second.header("retry-after"), Some("1"));
    release.send(()).expect("release");
    let first = first.await.expect("first");
    assert_eq!((first.status, first.body.as_str()), (200, "slow done"));
    assert_eq!(dbs.rows(), (1, 1));
    assert!(l.snapshot().units.is_empty());
    dbs.assert_clean();
    dbs.drop_tables();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_layer_and_a_second_tm_are_clear_errors() {
    let Some(dbs) = Dbs::new(1, None) else { return };
    async fn twice(_a: Tm, _b: Tm) -> &'static str {
        "unreachable"
    }
    async fn once(tm: Tm) -> Response {
        tm.run(|_att| Ok::<_, DbError>("ok")).await
    }
    let bare = common::serve(axum::Router::new().route("/once", get(once))).await;
    let r = common::get(bare, "/once").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("TmLayer is not installed"), "{}", r.body);
    let app = axum::Router::new()
        .route("/twice", get(twice))
        .route("/once", get(once))
        .layer(layer(&dbs));
    let addr = common::serve(app).await;
    let r = common::get(addr, "/twice").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("already taken"), "{}", r.body);
    assert_eq!(common::get(addr, "/once").await.status, 200);
    dbs.drop_tables();
}
