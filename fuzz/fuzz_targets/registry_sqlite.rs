//! `Registry::from_settings` with SQLite engines, then `Registry::check` (which opens a
//! connection on every engine): never panics, stays within the memory and time limits
//! given to libFuzzer, and a password never shows.
//!
//! The input is an INI file read with a temporary directory as `here`. Only inputs whose
//! URLs are all SQLite databases in memory or inside that directory are run, so the target
//! never creates a file elsewhere (and never connects to a server); the directory is
//! emptied after every input. Pools are capped: inputs asking for more than
//! [`MAX_POOL`] connections are skipped (the settings refuse more than 1000, since r2d2
//! preallocates its pool; with `pool_min_idle` every input would open that many
//! connections, too slow for a fuzz input), and so are
//! inputs with more than [`MAX_ENGINES`] engines. Pools run without a reaper
//! (`pool_idle_timeout` and `pool_recycle` are set to `none`): a dropped pool's worker
//! threads then end at once instead of up to 30 s later.
//! A password [`MARK`] sits in a secret-looking key and in a SQLite URI parameter.

#![no_main]

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sqlassist::{Backend, DatabaseUrl, Registry, Settings};
use sqlassist_fuzz::{assert_result_hidden, can_mark, exercise, MARK};

const SECTION: &str = "app:main";
const MAX_POOL: u64 = 8;
const MAX_ENGINES: usize = 8;

/// This process's temporary directory.
fn here() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("sqlassist-fuzz-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the temporary directory is writable");
        dir
    })
}

/// Whether every setting is safe to build and connect: URLs are SQLite in memory or in
/// `here`, pools are small, and no decision log is opened.
fn is_safe(settings: &Settings) -> bool {
    settings.iter().all(|(key, value)| {
        let name = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
        if name.contains("url") {
            match DatabaseUrl::parse_with_base(value, here()) {
                Ok(url) => {
                    url.backend() == Backend::Sqlite
                        && url.sqlite_path().map_or(true, |path| {
                            path.starts_with(here())
                                && !path.components().any(|c| c == Component::ParentDir)
                        })
                }
                Err(_) => true,
            }
        } else if name.contains("decision_log") {
            // A decision log is a directory the process keeps (and fills with a
            // preallocated segment) for its lifetime, wherever the value points; it has its
            // own tests. Never open one from fuzzed settings.
            false
        } else if name.starts_with("pool_size") || name.starts_with("pool_min_idle") {
            value.trim().parse::<u64>().map_or(true, |n| n <= MAX_POOL)
        } else {
            true
        }
    })
}

fn marked(input: &str) -> String {
    let secrets =
        format!("sqlalchemy_fuzz.url = sqlite:///fuzz.db?key={MARK}\nsmtp.password = {MARK}\n");
    let header = format!("[{SECTION}]");
    match input.find(&header) {
        Some(at) => {
            let line_end = input[at..].find('\n').map_or(input.len(), |i| at + i + 1);
            let mut text = input[..line_end].to_owned();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&secrets);
            text.push_str(&input[line_end..]);
            text
        }
        None => format!("{header}\n{secrets}{input}"),
    }
}

fuzz_target!(init: sqlassist_fuzz::init(), |data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let check = can_mark(input) && !input.contains("%(");
    let text = marked(input);
    let Ok(settings) = Settings::from_ini_str(&text, SECTION, here()) else {
        return;
    };
    if !is_safe(&settings) || settings.engine_prefixes().len() > MAX_ENGINES {
        return;
    }
    // A dropped r2d2 pool with a reaper (idle timeout or recycling on) keeps its three
    // worker threads until the reaper's next turn (30 s): at hundreds of registries a
    // second the process would run out of threads. Without a reaper they end at once.
    let mut pairs: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for prefix in settings.engine_prefixes() {
        for key in ["pool_idle_timeout", "pool_recycle"] {
            pairs.retain(|(k, _)| *k != format!("{prefix}{key}"));
            pairs.push((format!("{prefix}{key}"), "none".to_owned()));
        }
    }
    let settings = Settings::builder()
        .pairs(pairs)
        .here(here())
        .build()
        .expect("settings from pairs");
    let registry = Registry::from_settings(&settings);
    if check {
        assert_result_hidden(&text, &registry);
    } else {
        exercise(&registry);
    }
    if let Ok(registry) = &registry {
        let checked = registry.check().map(|()| registry.names().count());
        if check {
            assert_result_hidden(&text, &checked);
        } else {
            exercise(&checked);
        }
    }
    drop(registry);
    let _ = std::fs::remove_dir_all(here());
    let _ = std::fs::create_dir_all(here());
});
