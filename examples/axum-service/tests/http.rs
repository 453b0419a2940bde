//! Starts the service binary on SQLite files in a fresh directory and talks to it over
//! real HTTP: commit, read back, veto on 422, abort on error, retry on a real lock
//! conflict, 503 when saturated, a panicking handler leaves the pools whole.

#[path = "../../../crates/sqlassist-axum/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

static NEXT: AtomicU32 = AtomicU32::new(0);

struct Service {
    addr: SocketAddr,
    _child: Child,
    dir: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the binary with a writer pool of one connection and a 300 ms wait.
async fn start() -> Service {
    start_with(
        "sqlalchemy_writer.url = sqlite:///%(here)s/data/notes.db\n\
         sqlalchemy_writer.managed = true\n\
         sqlalchemy_writer.busy_timeout = 200\n\
         sqlalchemy_writer.pool_size = 1\n\
         sqlalchemy_reader.url = sqlite:///%(here)s/data/notes.db\n\
         sqlalchemy_reader.read_only = true\n\
         sqlalchemy_log.url = sqlite:///%(here)s/data/log.db\n",
    )
    .await
}

/// Starts the binary with these engine settings.
async fn start_with(engines: &str) -> Service {
    let dir = std::env::temp_dir().join(format!(
        "axum-service-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let ini = dir.join("service.ini");
    std::fs::write(
        &ini,
        format!(
            "[app:main]\n\
             app.listen = 127.0.0.1:0\n\
             app.attempts = 3\n\
             app.wait_ms = 300\n\
             {engines}"
        ),
    )
    .expect("settings");
    let mut child = Command::new(env!("CARGO_BIN_EXE_axum-service"))
        .arg(&ini)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the service");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("the service's first line");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .expect("address");
    Service {
        addr,
        _child: child,
        dir,
    }
}

/// Whether every pool has all its connections back.
async fn pools_whole(addr: SocketAddr) -> bool {
    let r = common::get(addr, "/debug/engines").await;
    assert_eq!(r.status, 200);
    let snapshot: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    let engines = snapshot["engines"].as_array().expect("engines");
    assert_eq!(engines.len(), 3, "{}", r.body);
    assert_eq!(snapshot["units_in_flight"], 0, "{}", r.body);
    engines.iter().all(|e| e["idle"] == e["connections"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_commits_and_the_next_request_reads_it() {
    let s = start().await;
    let r = common::post(s.addr, "/notes/1").await;
    assert_eq!((r.status, r.body.as_str()), (201, "created 1\n"));
    let r = common::get(s.addr, "/notes/1").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "note 1 bumps 0 from reader\n")
    );
    assert!(pools_whole(s.addr).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_422_and_an_error_leave_nothing_behind() {
    let s = start().await;
    assert_eq!(common::post(s.addr, "/notes/2/reject").await.status, 422);
    assert_eq!(common::get(s.addr, "/notes/2").await.status, 404);
    assert_eq!(common::post(s.addr, "/notes/3/fail").await.status, 500);
    assert_eq!(common::get(s.addr, "/notes/3").await.status, 404);
    assert!(pools_whole(s.addr).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_conflict_is_retried_and_counted_once() {
    let s = start().await;
    assert_eq!(common::post(s.addr, "/notes/4").await.status, 201);
    let r = common::post(s.addr, "/notes/4/bump?conflict=1").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "bumped 4 on attempt 2\n")
    );
    let r = common::get(s.addr, "/notes/4").await;
    assert_eq!(r.body, "note 4 bumps 1 from reader\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_service_answers_503_and_a_panic_leaves_the_pools_whole() {
    let s = start().await;
    let addr = s.addr;
    let slow = tokio::spawn(async move { common::get(addr, "/slow/1500").await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let busy = common::get(addr, "/slow/1").await;
    assert_eq!(busy.status, 503);
    // The snapshot shows the writer's session and the request holding it.
    let engines = common::get(addr, "/debug/engines").await;
    assert!(
        engines
            .body
            .contains("\"open_sessions\":1,\"held_by\":[\"GET /slow/1500\"]"),
        "{}",
        engines.body
    );
    assert_eq!(slow.await.expect("slow").status, 200);
    for _ in 0..3 {
        assert_eq!(common::post(addr, "/panic").await.status, 500);
    }
    assert!(pools_whole(addr).await);
    // The writer's single connection serves the next request.
    assert_eq!(common::post(addr, "/notes/5").await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_the_debug_page_show_what_happened() {
    let s = start().await;
    assert_eq!(common::post(s.addr, "/notes/6").await.status, 201);
    assert_eq!(common::post(s.addr, "/notes/7/reject").await.status, 422);
    assert_eq!(
        common::post(s.addr, "/notes/6/bump?conflict=1")
            .await
            .status,
        200
    );
    let m = common::get(s.addr, "/metrics").await;
    assert_eq!(m.status, 200);
    for line in [
        "sqlassist_requests_total{outcome=\"committed\"} 2",
        "sqlassist_requests_total{outcome=\"aborted\"} 1",
        "sqlassist_retries_total 1",
    ] {
        assert!(m.body.lines().any(|l| l == line), "{line} in:\n{}", m.body);
    }
    assert!(m.body.contains("sqlassist_commit_seconds"), "{}", m.body);
    // Every request checked a connection out of the writer's pool.
    let pool_waits = m
        .body
        .lines()
        .find_map(|l| l.strip_prefix("sqlassist_pool_wait_seconds_count{engine=\"writer\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(pool_waits.is_some_and(|n| n >= 3), "{}", m.body);
    let page = common::get(s.addr, "/debug").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("<td>writer</td><td>writer</td><td>sqlite</td>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("units in flight: 0 of 1"),
        "{}",
        page.body
    );
}

/// The PostgreSQL settings: the writer on the private primary, the reader on its hot
/// standby (replaying 1 s late), the log on the primary.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_client_reads_its_own_write_while_others_read_the_replica() {
    let Some(primary) = common::pg_url("SQLASSIST_TEST_PG_PRIMARY_URL") else {
        return;
    };
    let Some(standby) = common::pg_url("SQLASSIST_TEST_PG_STANDBY_URL") else {
        return;
    };
    let s = start_with(&format!(
        "sqlalchemy_writer.url = {primary}\n\
         sqlalchemy_writer.managed = true\n\
         sqlalchemy_reader.url = {standby}\n\
         sqlalchemy_reader.read_only = true\n\
         sqlalchemy_log.url = {primary}\n"
    ))
    .await;
    // The notes table may be new: wait until the standby has it.
    let id = i64::from(std::process::id()) * 1000 + 1;
    let mut ready = false;
    for _ in 0..200 {
        if common::get(s.addr, &format!("/notes/{id}")).await.status == 404 {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "the standby serves the notes table");
    let w = common::post(s.addr, &format!("/notes/{id}")).await;
    assert_eq!(w.status, 201);
    let cookie = w.header("set-cookie").expect("the write's position");
    let cookie = cookie.split(';').next().expect("pair").to_owned();
    let mine = common::request(
        s.addr,
        "GET",
        &format!("/notes/{id}"),
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(
        (mine.status, mine.body.as_str()),
        (200, format!("note {id} bumps 0 from writer\n").as_str())
    );
    let other = common::get(s.addr, &format!("/notes/{id}")).await;
    assert_eq!(
        other.status, 404,
        "another client reads the lagging standby"
    );
}

/// The debug page as headless Chromium parses it (`--dump-dom`): one row per engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debug_page_renders_in_headless_chromium() {
    let browser = ["chromium", "chromium-browser"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(browser) = browser else {
        assert!(
            !common::servers_required(),
            "chromium is not installed (scripts/test installs it)"
        );
        eprintln!("skipped: chromium is not installed");
        return;
    };
    let s = start().await;
    assert_eq!(common::post(s.addr, "/notes/8").await.status, 201);
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("http://{}/debug", s.addr))
        .stderr(Stdio::null())
        .output()
        .await
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    // The browser's own parse: it adds the <tbody> the page leaves implicit.
    assert!(dom.contains("<table id=\"engines\"><tbody>"), "{dom}");
    for engine in ["log", "reader", "writer"] {
        assert!(
            dom.contains(&format!("<tr><td>{engine}</td>")),
            "{engine} in {dom}"
        );
    }
    assert!(
        dom.contains("<td>writer</td><td>writer</td><td>sqlite</td>"),
        "{dom}"
    );
    assert!(dom.contains("units in flight: 0 of 1"), "{dom}");
}
