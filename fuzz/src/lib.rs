//! What every fuzz target asserts: a password placed in the input never appears in any
//! `Display` or `Debug` of a result, nor of an error and its `source()` chain.

//!
//! It also bounds every single allocation by libFuzzer's `-malloc_limit_mb`: libFuzzer
//! enforces that flag only through a sanitizer's malloc hooks, and the targets are built
//! with `--sanitizer none`, so [`LimitedAlloc`] does it (the RSS limit, checked by
//! libFuzzer every second, works either way).

#![deny(unsafe_op_in_unsafe_fn)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::error::Error as StdError;
use std::fmt::Debug;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest single allocation allowed, in bytes (`usize::MAX` until [`init`]).
static MALLOC_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The system allocator, refusing any single allocation above `-malloc_limit_mb` with an
/// abort that libFuzzer reports as a finding (a crash artifact of the input).
pub struct LimitedAlloc;

impl LimitedAlloc {
    fn check(size: usize) {
        if size > MALLOC_LIMIT.load(Ordering::Relaxed) {
            // No allocation here: write a fixed message, then abort.
            let _ = std::io::stderr().write_all(
                b"==sqlassist-fuzz== ERROR: out-of-memory: one allocation above -malloc_limit_mb\n",
            );
            std::process::abort();
        }
    }
}

// SAFETY: every call is passed on unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the size check only aborts, it never returns a different pointer.
unsafe impl GlobalAlloc for LimitedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: the caller's guarantees for `layout` hold for `System` too.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation is).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        // SAFETY: as in `dealloc`, and the caller's guarantees for `new_size` hold.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LimitedAlloc = LimitedAlloc;

/// Reads `-malloc_limit_mb=N` (else `-rss_limit_mb=N`, as libFuzzer does) from the
/// command line. Every target calls it once, before the first input.
pub fn init() {
    let flag = |name: &str| {
        std::env::args()
            .filter_map(|arg| arg.strip_prefix(name).and_then(|v| v.parse::<usize>().ok()))
            .last()
            .filter(|&mb| mb > 0)
    };
    if let Some(mb) = flag("-malloc_limit_mb=").or_else(|| flag("-rss_limit_mb=")) {
        MALLOC_LIMIT.store(mb.saturating_mul(1 << 20), Ordering::Relaxed);
    }
}

/// The password placed in inputs. Inputs that already contain its core are skipped (the
/// fuzzer could write it where it is no secret).
pub const MARK: &str = "Fz7s3cr3tQ";

/// The part of [`MARK`] that must never be shown.
const CORE: &str = "s3cr3t";

/// Whether `input` can carry [`MARK`] as a secret: it does not contain it already.
pub fn can_mark(input: &str) -> bool {
    !input.to_ascii_lowercase().contains(CORE)
}

/// Panics (a finding) if `text` shows the password.
#[track_caller]
pub fn assert_hidden(what: &str, input: &str, text: &str) {
    if text.contains(CORE) {
        panic!("password shown in {what}\n  input: {input:?}\n  shown: {text}");
    }
}

/// Checks `Display` and `Debug` of an error and of every error in its `source()` chain.
#[track_caller]
pub fn assert_error_hidden(input: &str, error: &(dyn StdError + 'static)) {
    let mut current = Some(error);
    while let Some(e) = current {
        assert_hidden("an error's Display", input, &e.to_string());
        assert_hidden("an error's Debug", input, &format!("{e:?}"));
        current = e.source();
    }
}

/// Checks a result: `Debug` of the value, or the error chain.
#[track_caller]
pub fn assert_result_hidden<T: Debug>(input: &str, result: &sqlassist::Result<T>) {
    match result {
        Ok(value) => assert_hidden("a result's Debug", input, &format!("{value:?}")),
        Err(e) => assert_error_hidden(input, e),
    }
}

/// Formats `Display`/`Debug` of a result without checking it (inputs that cannot carry
/// the password still exercise the formatting code).
pub fn exercise<T: Debug>(result: &sqlassist::Result<T>) -> usize {
    match result {
        Ok(value) => format!("{value:?}").len(),
        Err(e) => {
            let mut n = 0;
            let mut current: Option<&(dyn StdError + 'static)> = Some(e);
            while let Some(e) = current {
                n += e.to_string().len() + format!("{e:?}").len();
                current = e.source();
            }
            n
        }
    }
}

/// Settings to engine options, as an application starting up does: the `Debug` of the
/// settings, then `EngineOptions::from_settings` for every engine prefix. Checks that the
/// password never shows when `check` is set; otherwise only exercises the code.
pub fn settings_to_options(
    input: &str,
    settings: &sqlassist::Result<sqlassist::Settings>,
    check: bool,
) {
    if check {
        assert_result_hidden(input, settings);
    } else {
        exercise(settings);
    }
    let Ok(settings) = settings else {
        return;
    };
    for prefix in settings.engine_prefixes() {
        let options = sqlassist::EngineOptions::from_settings(settings, &prefix);
        if check {
            assert_result_hidden(input, &options);
        } else {
            exercise(&options);
        }
    }
}
