//! Read routing against a real PostgreSQL primary and its streaming hot standby (started by
//! `scripts/test`, which delays the standby's replay by 1 s), over real HTTP: reads are
//! served by the standby, writes by the primary, read-your-writes holds under the lag,
//! readers are balanced, and a reader that is down falls back or fails as configured.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use diesel::prelude::*;
use sqlassist::{DatabaseUrl, Engine, EngineOptions, InitOptions, Registry, Session};
use sqlassist_axum::{Attempt, DbError, ReaderDown, Router, Routes, Tm, TmLayer, POSITION_NAME};

static NEXT: AtomicU32 = AtomicU32::new(0);

struct Cluster {
    primary: String,
    standby: String,
    registry: Arc<Registry>,
    table: String,
}

fn engine(url: &str, pool_timeout: Duration) -> Engine {
    let options = EngineOptions::builder(DatabaseUrl::parse(url).expect("url"))
        .pool_size(4)
        .pool_timeout(pool_timeout)
        .build()
        .expect("options");
    Engine::new(options).expect("engine")
}

impl Cluster {
    /// Engines: "writer" (the primary, managed), "replica" and "replica2" (the standby,
    /// unmanaged), "dead" (a port nothing listens on). A fresh table, replayed on the
    /// standby before this returns.
    async fn new() -> Option<Cluster> {
        let primary = common::pg_url("SQLASSIST_TEST_PG_PRIMARY_URL")?;
        let standby = common::pg_url("SQLASSIST_TEST_PG_STANDBY_URL")?;
        let table = format!(
            "axum_r_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut registry = Registry::new();
        let wait = Duration::from_secs(5);
        registry
            .init_engine(
                "writer",
                engine(&primary, wait),
                InitOptions::new().managed(true),
            )
            .expect("writer");
        for name in ["replica", "replica2"] {
            registry
                .init_engine(name, engine(&standby, wait), InitOptions::new())
                .expect("replica");
        }
        registry
            .init_engine(
                "dead",
                engine(
                    "postgres://postgres@127.0.0.1:9/none",
                    Duration::from_millis(300),
                ),
                InitOptions::new(),
            )
            .expect("dead");
        let mut c = PgConnection::establish(&primary).expect("primary");
        diesel::sql_query(format!("CREATE TABLE {table} (id INT PRIMARY KEY)"))
            .execute(&mut c)
            .expect("create");
        let cluster = Cluster {
            primary,
            standby,
            registry: Arc::new(registry),
            table,
        };
        let replayed = common::eventually(Duration::from_secs(30), || {
            cluster.standby_count(&format!(
                "SELECT count(*) AS n FROM pg_class WHERE relname = '{}'",
                cluster.table
            )) == 1
        })
        .await;
        assert!(replayed, "the standby replays the new table");
        Some(cluster)
    }

    fn standby_count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut c = PgConnection::establish(&self.standby).expect("standby");
        diesel::sql_query(sql)
            .get_result::<N>(&mut c)
            .expect("count")
            .n
    }

    fn assert_clean(&self) {
        for name in ["writer", "replica", "replica2"] {
            let s = self.registry.engine(name).expect("engine").pool_state();
            assert_eq!(
                s.idle, s.connections,
                "{name}: every connection back in the pool"
            );
        }
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut c = PgConnection::establish(&self.primary).expect("primary");
        let prepared = diesel::sql_query("SELECT count(*) AS n FROM pg_prepared_xacts")
            .get_result::<N>(&mut c)
            .expect("prepared")
            .n;
        assert_eq!(prepared, 0, "no prepared branch left on the primary");
    }

    fn drop_table(&self) {
        let mut c = PgConnection::establish(&self.primary).expect("primary");
        diesel::sql_query(format!("DROP TABLE IF EXISTS {}", self.table))
            .execute(&mut c)
            .expect("drop");
    }
}

/// "engine recovering rows": which engine served, whether it is a standby, and how many
/// rows of `table` with `id` it sees.
fn report(session: &Session, table: &str, id: i32) -> Result<String, DbError> {
    let recovering = session.query_i64("SELECT CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END")?;
    let rows = session.query_i64(&format!("SELECT count(*) FROM {table} WHERE id = {id}"))?;
    Ok(format!("{} {} {}", session.name(), recovering == 1, rows))
}

struct FreshOnWriter;
impl Router for FreshOnWriter {
    fn db_for_read(&self, key: &str) -> Option<String> {
        (key == "fresh").then(|| "writer".to_owned())
    }
}

fn app(cluster: &Cluster, routes: Routes) -> axum::Router {
    let (t1, t2, t3) = (
        cluster.table.clone(),
        cluster.table.clone(),
        cluster.table.clone(),
    );
    axum::Router::new()
        .route(
            "/note/{id}",
            get(move |tm: Tm, Path(id): Path<i32>| {
                let table = t1.clone();
                async move {
                    tm.run(move |att: &Attempt<'_>| report(&att.reader()?, &table, id))
                        .await
                }
            })
            .post(move |tm: Tm, Path(id): Path<i32>| {
                let table = t2.clone();
                async move {
                    tm.run(move |att: &Attempt<'_>| -> Result<String, DbError> {
                        let w = att.writer()?;
                        w.execute(&format!("INSERT INTO {table} VALUES ({id})"))?;
                        // The same request reads its own write.
                        report(&att.reader()?, &table, id)
                    })
                    .await
                }
            }),
        )
        .route(
            "/keyed/{key}",
            get(move |tm: Tm, Path(key): Path<String>| {
                let table = t3.clone();
                async move {
                    tm.run(move |att: &Attempt<'_>| report(&att.reader_for(&key)?, &table, 0))
                        .await
                }
            }),
        )
        .layer(TmLayer::new(cluster.registry.clone(), routes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_served_by_the_standby_and_writes_by_the_primary() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let addr = common::serve(app(&cluster, Routes::new("writer").readers(["replica"]))).await;
    let r = common::get(addr, "/note/1").await;
    assert_eq!((r.status, r.body.as_str()), (200, "replica true 0"));
    let r = common::post(addr, "/note/1").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "writer false 1"),
        "the write and the read after it in the same request are on the primary"
    );
    cluster.assert_clean();
    cluster.drop_table();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_its_own_write_across_requests_despite_replication_lag() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let addr = common::serve(app(&cluster, Routes::new("writer").readers(["replica"]))).await;
    let w = common::post(addr, "/note/7").await;
    assert_eq!(w.status, 200);
    let position = w
        .header(POSITION_NAME)
        .expect("the write's position")
        .to_owned();
    let cookie = w
        .header("set-cookie")
        .expect("a position cookie")
        .to_owned();
    assert!(
        cookie.starts_with(&format!("{POSITION_NAME}={position};")),
        "{cookie}"
    );
    let cookie_pair = cookie.split(';').next().expect("pair").to_owned();

    // Another client, with no position: the lagging standby, without the row.
    let other = common::get(addr, "/note/7").await;
    assert_eq!(
        other.body, "replica true 0",
        "the standby lags (replay delayed 1 s)"
    );
    // The writing client, with its cookie: the primary, with the row.
    let mine = common::request(addr, "GET", "/note/7", &[("cookie", &cookie_pair)]).await;
    assert_eq!(mine.body, "writer false 1");
    // Once the standby has replayed the position, the same client reads from it.
    let mut last = String::new();
    let mut moved = false;
    for _ in 0..200 {
        last = common::request(addr, "GET", "/note/7", &[(POSITION_NAME, &position)])
            .await
            .body;
        if last.starts_with("replica") {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        moved,
        "reads return to the standby once it caught up: {last}"
    );
    assert_eq!(last, "replica true 1", "and it has the row");
    // A position the server cannot read sends reads to the writer.
    let garbled = common::request(addr, "GET", "/note/7", &[(POSITION_NAME, "0/0'; --")]).await;
    assert!(garbled.body.starts_with("writer"), "{}", garbled.body);
    cluster.assert_clean();
    cluster.drop_table();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_readers_take_turns_and_a_router_decides_per_key() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let routes = Routes::new("writer")
        .readers(["replica", "replica2"])
        .router(FreshOnWriter);
    let addr = common::serve(app(&cluster, routes)).await;
    let mut served = BTreeSet::new();
    for _ in 0..4 {
        let r = common::get(addr, "/keyed/other").await;
        served.insert(r.body.split(' ').next().expect("engine").to_owned());
    }
    assert_eq!(
        served,
        BTreeSet::from(["replica".to_owned(), "replica2".to_owned()])
    );
    let r = common::get(addr, "/keyed/fresh").await;
    assert_eq!(r.body, "writer false 0");
    cluster.assert_clean();
    cluster.drop_table();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_is_down_falls_back_to_the_writer_or_fails_as_configured() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let fallback = common::serve(app(&cluster, Routes::new("writer").readers(["dead"]))).await;
    let r = common::get(fallback, "/note/1").await;
    assert_eq!((r.status, r.body.as_str()), (200, "writer false 0"));
    // A dead reader next to a live one: the live one serves.
    let mixed = common::serve(app(
        &cluster,
        Routes::new("writer").readers(["dead", "replica"]),
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(common::get(mixed, "/note/1").await.body, "replica true 0");
    }
    let strict = common::serve(app(
        &cluster,
        Routes::new("writer")
            .readers(["dead"])
            .reader_down(ReaderDown::Fail),
    ))
    .await;
    let r = common::get(strict, "/note/1").await;
    assert_eq!(r.status, 500, "{}", r.body);
    cluster.assert_clean();
    cluster.drop_table();
}
