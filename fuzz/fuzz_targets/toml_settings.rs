//! TOML text to settings to engine options: never panics, stays within the memory and
//! time limits given to libFuzzer, and a password never shows.
//!
//! The input is a TOML settings file. Keys that hold the password [`MARK`] (secret-looking
//! keys, and URLs) are put in front of it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sqlassist::Settings;
use sqlassist_fuzz::{can_mark, settings_to_options, MARK};

fn marked(input: &str) -> String {
    format!(
        "\"sqlalchemy.url\" = \"postgresql://app:{MARK}@db.example:5432/app?sslmode=require\"\n\
         \"sqlalchemy_reader.url\" = \"mysql://reader@db.example/app?sslpassword={MARK}\"\n\
         smtp.password = \"{MARK}\"\n\
         session.secret = \"{MARK}\"\n\
         github.token = \"{MARK}\"\n\
         sentry.dsn = \"https://public:{MARK}@sentry.example/1\"\n\
         celery.broker = \"amqp://guest:{MARK}@rabbit:5672//\"\n\
         {input}\n"
    )
}

fuzz_target!(init: sqlassist_fuzz::init(), |data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let check = can_mark(input);
    let text = marked(input);
    let settings = Settings::from_toml_str(&text, "/srv/app");
    settings_to_options(&text, &settings, check);
});
