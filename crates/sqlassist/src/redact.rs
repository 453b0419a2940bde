//! Redaction: how URLs and setting values appear in errors, `Display`, `Debug` and logs.
//!
//! Every output that can hold a database URL or a setting value goes through this module,
//! so that one rule decides what a secret looks like when shown: `***`.
//!
//! - A setting whose key looks like a secret (`secret`, `password`, `token`, `key`, `dsn`,
//!   `url`) never shows its value as written; a URL anywhere in any setting's value is shown
//!   redacted.
//! - A URL that does not parse is hidden from its first `:` after the scheme to its last `@`,
//!   whatever lies between; a `port` that is not a number is hidden with what follows it.
//! - A query parameter whose name contains `pass`, `pwd`, `secret`, `token` or `key`
//!   (after percent-decoding, in any case) shows `***` as its value, wherever the parameter
//!   sits, even after an `@`.
//! - Driver and pool messages lose every secret of the engine's URL, as written and
//!   percent-decoded, and any URL-shaped text in them is redacted as a URL.

use crate::url::DatabaseUrl;

/// Words that make a query parameter's name secret.
const SECRET_PARAM_WORDS: &[&str] = &["pass", "pwd", "secret", "token", "key"];

/// Words that make a setting's key secret: the parameter words, and keys whose value is
/// (or may embed) a connection string.
const SECRET_KEY_WORDS: &[&str] = &["pass", "pwd", "secret", "token", "key", "dsn", "url"];

/// The last dotted component of a setting key, lowercased: `sqlalchemy_reader.url` → `url`.
fn key_name(key: &str) -> String {
    key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase()
}

/// Whether a setting's value may hold a secret: its key's last dotted component contains
/// `secret`, `password` (or `pass`, `pwd`), `token`, `key`, `dsn` or `url`.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let name = key_name(key);
    SECRET_KEY_WORDS.iter().any(|word| name.contains(word))
}

/// The value of a setting as errors and `Debug` may show it.
///
/// A key that names a connection string (`url`, `dsn`) shows its value redacted as a URL
/// (or `***` when it is not URL-shaped at all);
/// any other secret-looking key shows `***`; every other value has each URL inside it
/// redacted.
pub(crate) fn setting(key: &str, value: &str) -> String {
    let name = key_name(key);
    if name.contains("url") || name.contains("dsn") {
        if value.contains("://") {
            embedded_urls(value)
        } else if value.contains(':') {
            url(value)
        } else {
            "***".to_owned()
        }
    } else if is_secret_key(key) {
        "***".to_owned()
    } else {
        embedded_urls(value)
    }
}

/// Whether a query parameter's name (percent-decoded, any case) looks like a secret.
pub(crate) fn is_secret_param(name: &str) -> bool {
    let name = percent_decode(name).to_ascii_lowercase();
    SECRET_PARAM_WORDS.iter().any(|word| name.contains(word))
}

/// Replaces the value of every `name=value` parameter whose name looks secret by `***`.
///
/// Parameters start after `?` or `&` (or at the start of `text`); a secret value runs to
/// the next `&`, so a `?` inside it is hidden too. Works on a whole URL, a query, or a
/// fragment of a URL that does not parse.
pub(crate) fn redact_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let segment_end = rest.find(['&', '?']).unwrap_or(rest.len());
        match rest[..segment_end].split_once('=') {
            Some((name, _)) if is_secret_param(name) => {
                out.push_str(name);
                out.push_str("=***");
                rest = &rest[rest.find('&').unwrap_or(rest.len())..];
            }
            _ => {
                out.push_str(&rest[..segment_end]);
                rest = &rest[segment_end..];
            }
        }
        let mut chars = rest.chars();
        match chars.next() {
            Some(separator) => {
                out.push(separator);
                rest = chars.as_str();
            }
            None => return out,
        }
    }
}

/// Redacts a URL-like string that may not parse, erring towards hiding too much.
///
/// Used for error messages and for `Debug` of settings:
///
/// - `scheme://…`: everything from the first `:` after `://` to the last `@` becomes
///   `***` (a raw `@`, `:` or `/` may sit in the user name or the password). With no `@`
///   after that `:`, a "port" that is not a number (it may be a password given without a
///   host, as in `postgres://user:password`) is hidden with everything after it.
/// - A string with no `://` is hidden after its first `:`.
/// - Secret-looking query parameters are hidden wherever they are ([`redact_query`]).
pub(crate) fn url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return match s.split_once(':') {
            Some((head, _)) => format!("{}:***", redact_query(head)),
            None => redact_query(s),
        };
    };
    let scheme = if scheme.contains([':', '@']) {
        "***"
    } else {
        scheme
    };
    if let (Some(colon), Some(last_at)) = (rest.find(':'), rest.rfind('@')) {
        if colon < last_at {
            return format!(
                "{scheme}://{}:***@{}",
                redact_query(&rest[..colon]),
                redact_tail(&rest[last_at + 1..])
            );
        }
    }
    format!("{scheme}://{}", redact_tail(rest))
}

/// Redacts what follows the user info: a bad "port" and everything after it, and
/// secret-looking query parameters.
fn redact_tail(s: &str) -> String {
    let auth_end = s.find(['/', '?', '#']).unwrap_or(s.len());
    let authority = &s[..auth_end];
    match first_bad_port_colon(authority) {
        Some(colon) => format!("{}:***", redact_query(&authority[..colon])),
        None => redact_query(s),
    }
}

/// The byte offset of the first `:` in an authority (outside IPv6 brackets) that is not
/// followed by a plain port number.
fn first_bad_port_colon(authority: &str) -> Option<usize> {
    let mut in_brackets = false;
    for (i, c) in authority.char_indices() {
        match c {
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            ':' if !in_brackets => {
                let port = authority[i + 1..].split(',').next().unwrap_or_default();
                if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Redacts every URL (`scheme://…` up to the next whitespace) inside a text, and
/// secret-looking `name=value` parameters anywhere in it.
pub(crate) fn embedded_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        let scheme_start = rest[..sep]
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = rest[sep..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |i| sep + i);
        out.push_str(&redact_query(&rest[..scheme_start]));
        out.push_str(&url(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(&redact_query(rest));
    out
}

/// A driver's or the pool's message as it may be logged or shown: every secret of `url`
/// (the password and secret-looking query parameters, as written and percent-decoded)
/// becomes `***`, then any URL-shaped text is redacted as a URL.
pub(crate) fn message(text: &str, url: &DatabaseUrl) -> String {
    let mut secrets: Vec<String> = Vec::new();
    for secret in url.secrets() {
        let decoded = percent_decode(secret);
        secrets.push(secret.to_owned());
        secrets.push(decoded);
    }
    secrets.retain(|s| !s.is_empty());
    // Longest first, so that a secret containing another is hidden whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_owned();
    for secret in &secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    embedded_urls(&text)
}

/// The error handler of every pool: r2d2's default logs the driver's message through the
/// `log` crate as it is, password included (libpq quotes a malformed password). This one
/// logs through `tracing`, at error level, with the message redacted by [`message`].
#[derive(Debug)]
pub(crate) struct PoolErrorHandler {
    url: DatabaseUrl,
}

impl PoolErrorHandler {
    /// A handler that scrubs the secrets of `url` (the engine's URL).
    pub(crate) fn new(url: DatabaseUrl) -> Self {
        Self { url }
    }
}

impl<E: std::fmt::Display> r2d2::HandleError<E> for PoolErrorHandler {
    fn handle_error(&self, error: E) {
        tracing::error!(
            url = %self.url,
            "cannot open a pool connection: {}",
            message(&error.to_string(), &self.url)
        );
    }
}

/// Decodes `%XX` escapes; an invalid escape or a decoded byte sequence that is not UTF-8
/// is kept as written (lossily).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_hidden(text: &str) {
        assert!(!text.contains("s3cr3t"), "password shown: {text}");
    }

    #[test]
    fn a_url_that_does_not_parse_is_hidden_from_its_first_colon_to_its_last_at() {
        for (input, expected) in [
            (
                "postgresql://user@server:s3cr3t@host/db",
                "postgresql://user@server:***@host/db",
            ),
            (
                "postgresql://u/x:s3cr3t@host/db",
                "postgresql://u/x:***@host/db",
            ),
            (
                "postgresql://u:p@ss:wo/rd-s3cr3t@host/db",
                "postgresql://u:***@host/db",
            ),
            (
                "postgresql://u@h:x/db?a=@&password=s3cr3t",
                "postgresql://u@h:***@&password=***",
            ),
        ] {
            assert_eq!(url(input), expected, "{input}");
        }
    }

    #[test]
    fn secret_parameters_are_hidden_wherever_an_at_sign_sits() {
        for input in [
            "postgresql://app@db/app?sslcert=/home/me@corp/c.crt&sslpassword=s3cr3t",
            "postgresql://app@db/app?password=s3cr3t&sslcert=/home/me@corp/c.crt",
            "postgresql://app@db/app?client_secret=s3cr3t",
            "postgresql://app@db/app?x=1&auth_token=s3cr3t",
            "postgresql://app@db/app?api_key=s3cr3t",
            "postgresql://app@db/app?pass%77ord=s3cr3t",
            "postgresql://app@db/app?password=a?s3cr3t",
            "sqlite://?password=s3cr3t",
            "sqlite:///app.db?key=s3cr3t",
        ] {
            assert_hidden(&url(input));
        }
    }

    #[test]
    fn setting_hides_values_of_keys_that_look_secret() {
        for key in [
            "smtp.password",
            "session.secret",
            "auth.tkt_secret",
            "github.token",
            "stripe.api_key",
            "sentry.dsn",
            "db.URL",
        ] {
            assert_hidden(&setting(key, "s3cr3t"));
        }
        assert_eq!(setting("sqlalchemy.pool_size", "5"), "5");
        assert_eq!(
            setting("sqlalchemy.url", "postgresql://u:s3cr3t@h/db"),
            "postgresql://u:***@h/db"
        );
    }

    #[test]
    fn setting_redacts_a_url_wherever_it_sits_in_a_value() {
        for (key, value) in [
            ("redis.cache", "redis://:s3cr3t@localhost:6379/0"),
            (
                "celery.broker",
                "transport amqp://guest:s3cr3t@rabbit:5672// fallback",
            ),
            (
                "sqlalchemy.url",
                "postgresql://app@db/app?sslcert=/home/me@corp/c.crt&sslpassword=s3cr3t",
            ),
            ("sqlalchemy.url", "postgresql://user@server:s3cr3t@host/db"),
        ] {
            assert_hidden(&setting(key, value));
        }
        assert_eq!(
            setting("celery.broker", "amqp://guest:s3cr3t@rabbit:5672// x"),
            "amqp://guest:***@rabbit:5672// x"
        );
    }

    #[test]
    fn message_hides_every_secret_of_the_url_as_written_and_decoded() {
        let url = DatabaseUrl::parse("sqlite:///x.db?key=k3y-s3cr3t").expect("valid url");
        assert_eq!(url.secrets(), ["k3y-s3cr3t"]);
        assert_eq!(
            message(
                "cannot open with k3y-s3cr3t: see file:/x.db?key=k3y-s3cr3t",
                &url
            ),
            "cannot open with ***: see file:/x.db?key=***"
        );
        let e = url.to_string();
        assert_hidden(&e);
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("50%off%40x%4"), "50%off@x%4");
        assert_eq!(percent_decode("%E2%9C%93"), "\u{2713}");
    }

    #[test]
    fn a_url_after_a_multibyte_character_is_redacted_without_panicking() {
        assert_eq!(
            embedded_urls("é\u{7ff7d}postgres://u:s3cr3t@h/db"),
            "é\u{7ff7d}postgres://u:***@h/db"
        );
        assert_eq!(setting("a.broker", "→://x:s3cr3t@h"), "→://x:***@h");
    }

    #[test]
    fn settings_debug_shows_no_secret_of_any_form() {
        let settings = crate::Settings::from_pairs([
            (
                "sqlalchemy.url",
                "postgresql://app@db/app?sslcert=/home/me@corp/c.crt&sslpassword=s3cr3t",
            ),
            (
                "sqlalchemy_azure.url",
                "postgresql://user@server:s3cr3t@host/db",
            ),
            ("sqlalchemy_slash.url", "postgresql://u/x:s3cr3t@host/db"),
            ("sqlalchemy_lite.url", "sqlite://?password=s3cr3t"),
            ("session.secret", "s3cr3t"),
            ("github.token", "s3cr3t"),
            ("stripe.api_key", "s3cr3t"),
            ("sentry.dsn", "https://public:s3cr3t@sentry.example/1"),
            ("celery.broker", "amqp://guest:s3cr3t@rabbit:5672//"),
            ("pyramid.reload_templates", "true"),
        ]);
        let debug = format!("{settings:?}");
        assert_hidden(&debug);
        assert!(
            debug.contains("\"pyramid.reload_templates\": \"true\""),
            "{debug}"
        );
    }
}
