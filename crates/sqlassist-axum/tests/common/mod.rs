//! Shared by the HTTP tests: a real axum server on 127.0.0.1, a small HTTP/1.1 client over
//! a real socket, server URLs from the environment (see docs/testing.md).

#![allow(dead_code)] // each test binary uses its own subset

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Whether a missing or unreachable server fails the test instead of skipping it.
pub fn servers_required() -> bool {
    let set = |name: &str| {
        std::env::var(name)
            .map(|v| !v.is_empty() && v != "0")
            .unwrap_or(false)
    };
    set("SQLASSIST_REQUIRE_SERVERS") || set("CI")
}

/// The PostgreSQL URL in `var`, checked by connecting once; `None` (after a note) when
/// it is unset or unreachable and servers are not required.
#[cfg(feature = "postgres")]
#[track_caller]
pub fn pg_url(var: &str) -> Option<String> {
    use diesel::Connection;
    let why = match std::env::var(var) {
        Ok(url) if !url.is_empty() => match diesel::PgConnection::establish(&url) {
            Ok(_) => return Some(url),
            Err(e) => format!("names a server that cannot be reached ({e})"),
        },
        _ => "is not set".to_owned(),
    };
    if servers_required() {
        panic!("{var}: {why}; this test needs that server (run `eval \"$(scripts/test --setup-only)\"` first)");
    }
    eprintln!("skipped: {var} {why} (set SQLASSIST_REQUIRE_SERVERS=1 to make this a failure)");
    None
}

/// Serves `app` on a fresh loopback port; returns the address.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole response.
pub async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
        .await
        .expect("response within 60 s")
        .expect("read response");
    parse(&raw)
}

pub async fn get(addr: std::net::SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[]).await
}

pub async fn post(addr: std::net::SocketAddr, path: &str) -> Reply {
    request(addr, "POST", path, &[]).await
}

/// Writes a request and returns the open socket without reading the response; dropping
/// it is a client that goes away mid-request.
pub async fn send_only(addr: std::net::SocketAddr, method: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("write request");
    stream
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a complete HTTP response");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Polls `check` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
