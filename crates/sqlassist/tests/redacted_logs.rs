//! No log line, the library's or a dependency's, carries a password.
//!
//! r2d2 reports connection errors itself; with its default handler it logs the driver's
//! message through the `log` crate, and libpq quotes a malformed percent escape of the
//! password in that message. This test captures both the `log` crate's records and
//! `tracing`'s events for the whole process (the pool logs from its worker threads), so
//! it is a test binary of its own.

mod common;

use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlassist::{Engine, Settings};

const SECRET: &str = "s3cr3t-PW";

/// Every line logged through `log` or `tracing` in this process.
fn captured() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(Vec::new()))
}

fn push(line: String) {
    captured()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(line);
}

struct LogCapture;

impl log::Log for LogCapture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        push(format!(
            "log {} {}: {}",
            record.level(),
            record.target(),
            record.args()
        ));
    }

    fn flush(&self) {}
}

/// Records every field of every event and span as `name=value`.
struct TracingCapture;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for TracingCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = Fields(format!("tracing span {}:", span.metadata().name()));
        span.record(&mut fields);
        push(fields.0);
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut fields = Fields("tracing span record:".to_owned());
        values.record(&mut fields);
        push(fields.0);
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        let mut fields = Fields(format!("tracing {} {}:", meta.level(), meta.target()));
        event.record(&mut fields);
        push(fields.0);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

fn install_capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        static LOGGER: LogCapture = LogCapture;
        log::set_logger(&LOGGER).expect("no other logger in this binary");
        log::set_max_level(log::LevelFilter::Trace);
        tracing::subscriber::set_global_default(TracingCapture)
            .expect("no other subscriber in this binary");
    });
}

/// `SQLASSIST_TEST_PG_URL` with its password replaced by `password`, as written.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (userinfo, host) = rest.rsplit_once('@').expect("a URL with a user");
    let user = userinfo.split(':').next().expect("a user name");
    format!("{scheme}://{user}:{password}@{host}")
}

#[test]
fn a_password_with_a_raw_percent_never_reaches_a_log_line() {
    let Some(url) = common::server_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    install_capture();
    // `%of` is not a percent escape: libpq refuses the URL and quotes the password.
    let url = with_password(&url, &format!("50%off-{SECRET}"));
    let settings = Settings::from_pairs([
        ("sqlalchemy.url", url.as_str()),
        ("sqlalchemy.pool_size", "2"),
        ("sqlalchemy.pool_min_idle", "1"),
        ("sqlalchemy.pool_timeout", "2"),
    ]);
    let engine = Engine::from_settings(&settings, "sqlalchemy.").expect("the URL parses");
    let registry_err = {
        let mut registry = sqlassist::Registry::new();
        registry
            .init_engine(
                "leaky",
                engine.clone(),
                sqlassist::InitOptions::new().default_engine(true),
            )
            .expect("registers");
        let session = registry.session("leaky").expect("a session");
        session.execute("SELECT 1").expect_err("the URL is refused")
    };
    common::assert_no_secret(&registry_err, SECRET);

    // The pool fills its idle connection from its own threads and reports each failure.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mentions_the_error = |lines: &[String]| {
        lines.iter().any(|l| {
            l.starts_with("tracing ERROR") && l.contains("pool connection") && l.contains("percent")
        })
    };
    while Instant::now() < deadline
        && !mentions_the_error(&captured().lock().expect("not poisoned"))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(engine);
    let _ = sqlassist::close_sessions();

    let lines = captured().lock().expect("not poisoned").clone();
    assert!(
        mentions_the_error(&lines),
        "the pool's connection error was logged through tracing: {lines:#?}"
    );
    let leaks: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(SECRET) || l.contains("50%off"))
        .collect();
    assert!(leaks.is_empty(), "password in log lines: {leaks:#?}");
}
