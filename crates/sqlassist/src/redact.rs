//! Redaction: how URLs and setting values appear in errors, `Display` and `Debug`.
//!
//! Every output that can hold a database URL or a setting value goes through this module,
//! so that one rule decides what a password looks like when shown: `***`.

/// Whether a setting's value may hold a password: keys ending in `url` or `password`.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.ends_with("url") || key.ends_with("password")
}

/// The value as `Debug` may show it.
pub(crate) fn setting(key: &str, value: &str) -> String {
    if !is_secret_key(key) {
        value.to_owned()
    } else if key.to_ascii_lowercase().ends_with("url") {
        url(value)
    } else {
        "***".to_owned()
    }
}

/// Replaces the value of every query parameter whose name ends in `password` by `***`.
pub(crate) fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().ends_with("password") => {
                format!("{key}=***")
            }
            _ => param.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Redacts a URL-like string that may not parse, erring towards hiding too much.
///
/// Used for error messages and for `Debug` of settings. Hides the password in
/// `scheme://user:password@…` (up to the last `@`, since a raw `@` may sit in the
/// password), a "port" that is not a number when there is no `@` (it may be a password
/// given without a host, as in `postgres://user:password`) together with everything after
/// it, `password` query parameters, and everything after the first `:` of a string with no
/// `://`.
pub(crate) fn url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return match s.split_once(':') {
            Some((head, _)) => format!("{head}:***"),
            None => s.to_owned(),
        };
    };
    let scheme = if scheme.contains([':', '@']) {
        "***"
    } else {
        scheme
    };
    if let Some(last_at) = rest.rfind('@') {
        let first_special = rest.find([':', '/', '@']).unwrap_or(rest.len());
        let head = &rest[..first_special];
        let tail = redact_after_authority(&rest[last_at + 1..]);
        if rest[first_special..].starts_with(':') && first_special < last_at {
            return format!("{scheme}://{head}:***@{tail}");
        }
        return format!("{scheme}://{}@{tail}", &rest[..last_at]);
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    if let Some(colon) = first_bad_port_colon(authority) {
        return format!("{scheme}://{}:***", &authority[..colon]);
    }
    format!("{scheme}://{}", redact_after_authority(rest))
}

/// Redacts `password` query parameters in what follows the authority.
fn redact_after_authority(s: &str) -> String {
    match s.split_once('?') {
        Some((before, query)) => format!("{before}?{}", redact_query(query)),
        None => s.to_owned(),
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
