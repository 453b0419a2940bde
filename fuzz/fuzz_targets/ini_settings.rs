//! Pyramid INI text to settings to engine options: never panics, stays within the
//! memory and time limits given to libFuzzer, and a password never shows.
//!
//! The input is an INI file. Lines that hold the password [`MARK`] under keys that look
//! secret, and in URLs, are inserted at the top of its `[app:main]` section (a section is
//! added in front when it has none).
//! Inputs that interpolate (`%(`) could copy the password under any key: they are run
//! but not checked.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sqlassist::Settings;
use sqlassist_fuzz::{can_mark, settings_to_options, MARK};

const SECTION: &str = "app:main";

fn secret_lines() -> String {
    format!(
        "sqlalchemy.url = postgresql://app:{MARK}@db.example:5432/app?sslmode=require\n\
         sqlalchemy_reader.url = mysql+pymysql://reader@db.example/app?sslpassword={MARK}\n\
         sqlalchemy_cache.url = sqlite:///cache.db?key={MARK}\n\
         smtp.password = {MARK}\n\
         session.secret = {MARK}\n\
         github.token = {MARK}\n\
         stripe.api_key = {MARK}\n\
         sentry.dsn = https://public:{MARK}@sentry.example/1\n\
         celery.broker = amqp://guest:{MARK}@rabbit:5672//\n"
    )
}

/// The input with the secret lines after its `[app:main]` header.
fn marked(input: &str) -> String {
    let header = format!("[{SECTION}]");
    match input.find(&header) {
        Some(at) => {
            let line_end = input[at..].find('\n').map_or(input.len(), |i| at + i + 1);
            let mut text = input[..line_end].to_owned();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&secret_lines());
            text.push_str(&input[line_end..]);
            text
        }
        None => format!("{header}\n{}{input}", secret_lines()),
    }
}

fuzz_target!(init: sqlassist_fuzz::init(), |data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let check = can_mark(input) && !input.contains("%(");
    let text = marked(input);
    let settings = Settings::from_ini_str(&text, SECTION, "/srv/app");
    settings_to_options(&text, &settings, check);
});
