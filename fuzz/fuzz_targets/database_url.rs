//! `DatabaseUrl::parse`: never panics; a password never shows.
//!
//! The input is a URL as a user writes it. It is parsed as written, then twice with the
//! password [`MARK`] placed where a password goes: as the user info's password
//! (`scheme://user:MARK@…`, the user and the rest taken from the input) and as the value
//! of a query parameter whose name says it is secret.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sqlassist::DatabaseUrl;
use sqlassist_fuzz::{assert_result_hidden, can_mark, exercise, MARK};

const SECRET_PARAMS: &[&str] = &[
    "password",
    "sslpassword",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "token",
    "auth_token",
    "key",
    "api_key",
    "Pass%77ord",
];

fn parse(s: &str) -> sqlassist::Result<DatabaseUrl> {
    DatabaseUrl::parse_with_base(s, Path::new("/srv/app"))
}

/// `scheme://user:MARK@rest`: the user name is the input's, up to its first `:` or `@`,
/// without `?` and `#` (they start a query or fragment before any user info); a raw `/`
/// stays (`u/x:MARK@host` must be refused or redacted, never shown), except for SQLite,
/// whose URLs have no user info (`sqlite:///:x@y` names a file). The rest follows the
/// input's first `@` (or its `://` when it has none).
fn with_password(input: &str) -> Option<String> {
    let (scheme, rest) = input.split_once("://")?;
    // SQLite URLs have no user info: after `sqlite://`, `/:MARK@x` is a file name.
    let is_sqlite = scheme
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("sqlite");
    let (userinfo, after) = match rest.split_once('@') {
        Some((userinfo, after)) => (userinfo, after),
        None => ("app", rest),
    };
    let user: String = userinfo
        .split(':')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|&c| !matches!(c, ':' | '?' | '#') && (c != '/' || !is_sqlite))
        .collect();
    Some(format!("{scheme}://{user}:{MARK}@{after}"))
}

/// The input with `name=MARK&` right after its first `?`, or `?name=MARK` at its end.
fn with_secret_param(input: &str) -> String {
    let name = SECRET_PARAMS[input.len() % SECRET_PARAMS.len()];
    match input.split_once('?') {
        Some((before, after)) => format!("{before}?{name}={MARK}&{after}"),
        None => format!("{input}?{name}={MARK}"),
    }
}

fuzz_target!(init: sqlassist_fuzz::init(), |data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let plain = parse(input);
    if let Ok(url) = &plain {
        let _ = (url.to_string(), url.redacted().len(), url.backend());
    }
    exercise(&plain);
    if !can_mark(input) {
        return;
    }
    for marked in with_password(input)
        .into_iter()
        .chain([with_secret_param(input)])
    {
        // Taking characters out of the user name may have spelt the password.
        if !can_mark(&marked.replace(MARK, "")) {
            continue;
        }
        let result = parse(&marked);
        assert_result_hidden(&marked, &result);
        if let Ok(url) = &result {
            sqlassist_fuzz::assert_hidden("Display", &marked, &url.to_string());
        }
    }
});
