//! A decision whose commit gets no answer is settled from the server, never guessed: a
//! loopback TCP proxy between the library and the log's PostgreSQL database cuts the
//! connection where the decision commits, either after passing that on (the server
//! committed; the client hears nothing) or before (the server rolls back). For the
//! decision on the log's own connection (an autocommit INSERT, committed at the extended
//! protocol's `Sync`) and for the decision carried by the one-phase `COMMIT` of a
//! participant in the log's database.

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlassist::{
    DatabaseDecisionLog, DatabaseUrl, Engine, EngineOptions, InitOptions, NodeId, Registry,
};

use common::{reset_thread, unique};

const TTL: Duration = Duration::from_secs(3);

/// The message at which the decision commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// The `Sync` after the binding of a statement that inserts into
    /// `sqlassist_decision`: the commit of an autocommit INSERT.
    DecisionInsertSync,
    /// A plain `COMMIT` query.
    Commit,
}

/// Where the proxy cuts the connection that sends the decision's commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Passes the message to the server, then closes both sides without passing the
    /// server's answer back.
    AfterForwarding,
    /// Closes both sides without passing the message on.
    BeforeForwarding,
}

/// A loopback proxy to a PostgreSQL server that reads the client's messages (the
/// connection must not use TLS) and, once armed, cuts the first connection that sends the
/// message it was armed for.
struct Proxy {
    port: u16,
    armed: Arc<Mutex<Option<(At, Cut)>>>,
    fired: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed: Arc<Mutex<Option<(At, Cut)>>> = Arc::default();
        let fired: Arc<AtomicBool> = Arc::default();
        let (a, f, upstream) = (armed.clone(), fired.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(&upstream).unwrap();
                let cut = Arc::new(AtomicBool::new(false));
                let (c2, s2, cut2) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    cut.clone(),
                );
                std::thread::spawn(move || server_to_client(s2, c2, &cut2));
                let (a, f) = (a.clone(), f.clone());
                std::thread::spawn(move || client_to_server(client, server, &cut, &a, &f));
            }
        });
        Self { port, armed, fired }
    }

    fn arm(&self, at: At, cut: Cut) {
        self.fired.store(false, Ordering::SeqCst);
        *self.armed.lock().unwrap() = Some((at, cut));
    }

    fn has_fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// `url` with its server replaced by the proxy, without TLS.
    fn url(&self, url: &str) -> String {
        let (head, rest) = url.split_once('@').unwrap();
        let (_, path) = rest.split_once('/').unwrap();
        format!("{head}@127.0.0.1:{}/{path}?sslmode=disable", self.port)
    }
}

fn server_to_client(mut server: TcpStream, mut client: TcpStream, cut: &AtomicBool) {
    let mut buf = [0u8; 16384];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Once cut, the server's answers (that of the COMMIT above all) are dropped.
        if cut.load(Ordering::SeqCst) || client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

fn read_exact(stream: &mut TcpStream, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).ok().map(|()| buf)
}

/// The text of a NUL-terminated string at the start of `bytes`, and what follows it.
fn c_str(bytes: &[u8]) -> (String, &[u8]) {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    (
        String::from_utf8_lossy(&bytes[..end]).into_owned(),
        bytes.get(end + 1..).unwrap_or_default(),
    )
}

fn client_to_server(
    mut client: TcpStream,
    mut server: TcpStream,
    cut: &AtomicBool,
    armed: &Mutex<Option<(At, Cut)>>,
    fired: &AtomicBool,
) {
    // Start-up messages have no type byte: a length, then a code (SSL or GSS encryption
    // requests, answered `N` here, come before the real one).
    loop {
        let Some(len) = read_exact(&mut client, 4) else {
            return;
        };
        let n = u32::from_be_bytes(len[..4].try_into().unwrap()) as usize;
        let Some(body) = read_exact(&mut client, n - 4) else {
            return;
        };
        if server
            .write_all(&len)
            .and_then(|()| server.write_all(&body))
            .is_err()
        {
            return;
        }
        let code = u32::from_be_bytes(body[..4].try_into().unwrap());
        if code != 80_877_103 && code != 80_877_104 {
            break;
        }
    }
    // Prepared statements (by name) that insert a decision, and whether one was bound
    // since the last `Sync`.
    let mut decision_statements = std::collections::HashSet::new();
    let mut decision_bound = false;
    while let Some(head) = read_exact(&mut client, 5) {
        let n = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let Some(body) = read_exact(&mut client, n - 4) else {
            break;
        };
        let here = match head[0] {
            b'P' => {
                let (name, rest) = c_str(&body);
                if c_str(rest).0.contains("INSERT INTO sqlassist_decision") {
                    decision_statements.insert(name);
                } else {
                    decision_statements.remove(&name);
                }
                None
            }
            b'B' => {
                let (_portal, rest) = c_str(&body);
                decision_bound |= decision_statements.contains(&c_str(rest).0);
                None
            }
            b'S' => std::mem::take(&mut decision_bound).then_some(At::DecisionInsertSync),
            b'Q' => c_str(&body)
                .0
                .trim()
                .eq_ignore_ascii_case("COMMIT")
                .then_some(At::Commit),
            _ => None,
        };
        let action = here.and_then(|at| {
            let mut armed = armed.lock().unwrap();
            match *armed {
                Some((wanted, cut)) if wanted == at => armed.take().map(|_| cut),
                _ => None,
            }
        });
        if let Some(action) = action {
            cut.store(true, Ordering::SeqCst);
            fired.store(true, Ordering::SeqCst);
            if action == Cut::AfterForwarding {
                let _ = server
                    .write_all(&head)
                    .and_then(|()| server.write_all(&body));
                // Let the server commit before the connection goes.
                std::thread::sleep(Duration::from_millis(500));
            }
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        if server
            .write_all(&head)
            .and_then(|()| server.write_all(&body))
            .is_err()
        {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Both);
}

fn engine(url: &str) -> Engine {
    Engine::new(EngineOptions::new(DatabaseUrl::parse(url).unwrap())).unwrap()
}

fn node() -> NodeId {
    let n = unique("uc").replace('_', "-");
    NodeId::new(n.chars().take(24).collect::<String>().trim_end_matches('-')).unwrap()
}

/// `url`'s `host:port`.
fn address(url: &str) -> String {
    let rest = url.split_once('@').unwrap().1;
    rest.split_once('/').unwrap().0.to_owned()
}

struct Setup {
    url: String,
    url2: String,
    table: String,
    node: NodeId,
    proxy: Proxy,
    registry: Registry,
    /// Where the decision commits.
    at: At,
}

/// Engines `a` (the first test database) and `b` (the second), managed, recording in a
/// database log in `a`'s database reached through the proxy. With `riding`, `a` too goes
/// through the proxy (the same URL as the log's): its one-phase commit carries the
/// decision; without, `a` connects directly and the decision has its own transaction.
fn setup(riding: bool) -> Option<Setup> {
    reset_thread();
    let url = common::pg_url("SQLASSIST_TEST_PG_URL")?;
    let url2 = common::pg_url("SQLASSIST_TEST_PG_URL_2")?;
    let table = unique("uc_commit");
    for u in [&url, &url2] {
        common::pg::exec(u, &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"));
    }
    let proxy = Proxy::start(&address(&url));
    let node = node();
    let log = DatabaseDecisionLog::open(engine(&proxy.url(&url)), &node, TTL).unwrap();
    let mut registry = Registry::new();
    registry.set_node_id(node.clone());
    registry.use_database_decision_log(log);
    let a = if riding { proxy.url(&url) } else { url.clone() };
    for (name, u) in [("a", &a), ("b", &url2)] {
        registry
            .init_engine(name, engine(u), InitOptions::new().managed(true))
            .unwrap();
    }
    Some(Setup {
        url,
        url2,
        table,
        node,
        proxy,
        registry,
        at: if riding {
            At::Commit
        } else {
            At::DecisionInsertSync
        },
    })
}

impl Setup {
    /// One row on each database, committed with the proxy armed with `cut`.
    fn commit(&self, cut: Cut) -> Result<(), transaction::Error> {
        let manager = self.registry.transaction_manager();
        let outcome = manager.scope(|| {
            manager.begin().unwrap();
            for name in ["a", "b"] {
                self.registry
                    .session(name)
                    .unwrap()
                    .execute(&format!("INSERT INTO {} (id) VALUES (1)", self.table))
                    .unwrap();
            }
            self.proxy.arm(self.at, cut);
            let outcome = manager.commit();
            if outcome.is_err() {
                let _ = manager.abort();
            }
            outcome
        });
        assert!(self.proxy.has_fired(), "the decision's commit never passed");
        outcome
    }

    fn counts(&self) -> (i64, i64) {
        (
            common::pg::count(&self.url, &self.table),
            common::pg::count(&self.url2, &self.table),
        )
    }

    /// Nothing of the node is left prepared (after a recovery pass, if one is needed).
    fn assert_nothing_prepared(&self) {
        let prepared = || {
            common::pg::prepared(&self.url, self.node.as_str())
                + common::pg::prepared(&self.url2, self.node.as_str())
        };
        if prepared() > 0 {
            let report = self.registry.recover().unwrap();
            assert!(report.is_clean(), "{report:?}");
        }
        assert_eq!(prepared(), 0);
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for u in [&self.url, &self.url2] {
            common::pg::exec(u, &format!("DROP TABLE {}", self.table));
        }
    }
}

#[test]
fn an_unanswered_decision_commit_the_server_made_commits_everywhere() {
    let Some(s) = setup(false) else { return };
    s.commit(Cut::AfterForwarding).unwrap();
    assert_eq!(s.counts(), (1, 1));
    s.assert_nothing_prepared();
}

#[test]
fn a_decision_insert_whose_commit_the_server_never_got_is_run_again_and_commits_everywhere() {
    let Some(s) = setup(false) else { return };
    // The INSERT's implicit transaction aborts with the connection; the INSERT is
    // idempotent and runs again on a fresh connection until the server answers, so the
    // decision is made (once) after all.
    s.commit(Cut::BeforeForwarding).unwrap();
    assert_eq!(s.counts(), (1, 1));
    s.assert_nothing_prepared();
}

#[test]
fn an_unanswered_carrying_commit_the_server_made_commits_everywhere() {
    let Some(s) = setup(true) else { return };
    s.commit(Cut::AfterForwarding).unwrap();
    assert_eq!(s.counts(), (1, 1));
    s.assert_nothing_prepared();
}

#[test]
fn a_carrying_commit_the_server_never_got_rolls_back_everywhere() {
    let Some(s) = setup(true) else { return };
    let err = s.commit(Cut::BeforeForwarding).unwrap_err();
    assert!(!err.is_heuristic(), "{err:?}");
    assert_eq!(err.resource(), Some("a"), "{err:?}");
    s.assert_nothing_prepared();
    assert_eq!(s.counts(), (0, 0));
}
