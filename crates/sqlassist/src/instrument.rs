//! A Diesel instrumentation installed on every pooled connection: it logs SQL when the
//! engine's `echo` option is on, and notes whether a statement that may write has run
//! since the session began its transaction.
//!
//! The note only decides whether the vote must *ask the server* if the transaction wrote
//! anything: a session votes read-only only when the server says no transaction id was
//! assigned, never from the SQL text. When a statement that may write ran, the question is
//! skipped and the session prepares, which is always safe.

use std::fmt::{self, Write};

use diesel::connection::{Instrumentation, InstrumentationEvent};

/// Per-connection state kept by Diesel's instrumentation hook.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    echo: bool,
    /// Whether to note statements that may end the transaction (SQLite only: the other
    /// backends learn it without reading statements).
    track_end: bool,
    may_have_written: bool,
    may_have_ended: bool,
    /// The next statement is the session's own (its `BEGIN`): not classified.
    skip_next: bool,
}

impl Tracker {
    pub(crate) fn new(echo: bool, track_end: bool) -> Self {
        Self {
            echo,
            track_end,
            may_have_written: false,
            may_have_ended: false,
            skip_next: false,
        }
    }

    /// The next statement is the session's own `BEGIN` (or `XA START`): it is not
    /// classified (the session [resets](Self::reset) the notes after it anyway).
    pub(crate) fn skip_next(&mut self) {
        self.skip_next = true;
    }

    /// Whether a statement other than a read ran since the last [`reset`](Self::reset).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn may_have_written(&self) -> bool {
        self.may_have_written
    }

    /// Whether a statement starting with `COMMIT`, `END` or `ROLLBACK` ran since the last
    /// call (or [`reset`](Self::reset)), and forgets it. Only a hint that the transaction
    /// may have ended: `ROLLBACK TO SAVEPOINT` counts too, and the caller asks the
    /// connection before concluding anything.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn take_may_have_ended(&mut self) -> bool {
        std::mem::take(&mut self.may_have_ended)
    }

    /// Called when the session begins a transaction.
    pub(crate) fn reset(&mut self) {
        self.may_have_written = false;
        self.may_have_ended = false;
        self.skip_next = false;
    }
}

impl Instrumentation for Tracker {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            if self.echo {
                tracing::debug!(target: "sqlassist::sql", "{query}");
            }
            // Reading the statement's first word goes through `Display`: skip it when the
            // answer cannot change anything (the session's own BEGIN; any statement once a
            // write was noted, unless the end of the transaction is tracked too).
            if std::mem::take(&mut self.skip_next) || (self.may_have_written && !self.track_end) {
                return;
            }
            let mut head = Head::default();
            // `Head` stops the formatting once it has the first word.
            let _ = write!(head, "{query}");
            self.may_have_written |= !head.is_read();
            self.may_have_ended |= head.may_end_transaction();
        }
    }
}

/// Collects the first word of a statement, upper-cased, and stops the formatter there.
#[derive(Default)]
struct Head {
    word: [u8; 12],
    len: usize,
    done: bool,
}

impl Head {
    /// Statements that never assign a transaction id by themselves (a `SELECT` calling a
    /// writing function is caught by the server-side question).
    fn is_read(&self) -> bool {
        matches!(
            &self.word[..self.len],
            b"SELECT"
                | b"SHOW"
                | b"VALUES"
                | b"TABLE"
                | b"BEGIN"
                | b"SAVEPOINT"
                | b"RELEASE"
                | b"ROLLBACK"
                | b"SET"
        )
    }

    /// Statements that may end the transaction (`ROLLBACK TO SAVEPOINT` included: this is
    /// only a reason to look).
    fn may_end_transaction(&self) -> bool {
        matches!(&self.word[..self.len], b"COMMIT" | b"END" | b"ROLLBACK")
    }
}

impl Write for Head {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b.is_ascii_alphabetic() {
                if self.len == self.word.len() {
                    self.done = true;
                    return Err(fmt::Error);
                }
                self.word[self.len] = b.to_ascii_uppercase();
                self.len += 1;
            } else if self.len > 0 || !(b.is_ascii_whitespace() || b == b'(') {
                self.done = true;
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(sql: &str) -> Head {
        let mut h = Head::default();
        let _ = h.write_str(sql);
        h
    }

    #[test]
    fn reads_are_told_apart_from_statements_that_may_write() {
        for sql in [
            "SELECT 1",
            "  select * from t",
            "(SELECT 1)",
            "SHOW x",
            "savepoint a",
            "BEGIN",
        ] {
            assert!(head(sql).is_read(), "{sql}");
        }
        for sql in [
            "INSERT INTO t VALUES (1)",
            "update t set a = 1",
            "WITH x AS (DELETE FROM t) SELECT 1",
            "CREATE TABLE t (a int)",
            "",
            "SELECTED",
        ] {
            assert!(!head(sql).is_read(), "{sql}");
        }
    }
}
