//! The pool's connection manager: Diesel's r2d2 manager, plus the instant each connection
//! was last returned, so that the checkout test can be skipped for a connection used
//! moments ago.
//!
//! Sessions return their connection at the end of every transaction, so a connection is
//! checked out once per transaction. r2d2's checkout test (`test_on_check_out`, Diesel's
//! `SELECT 1`) would cost a round trip each time. As HikariCP does within its
//! `aliveBypassWindowMs` (500 ms), the test is skipped for a connection returned to the
//! pool, or opened, less than `pool_pre_ping_window` ago. r2d2 has no check-in hook, but it
//! asks the manager's `has_broken` about every connection it takes back: that is where the
//! instant is recorded.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::r2d2::{ConnectionManager, ManageConnection, R2D2Connection};

/// A pooled connection and the instant it was last returned to the pool (or opened).
pub struct Timed<C> {
    conn: C,
    last_used: Instant,
}

impl<C> Deref for Timed<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> DerefMut for Timed<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

/// Diesel's connection manager with the checkout test skipped within `window` of a
/// connection's last use. Counts the tests it runs (each a round trip).
pub struct Manager<C: 'static> {
    inner: ConnectionManager<C>,
    window: Duration,
    pings: Arc<AtomicU64>,
}

impl<C: 'static> Manager<C> {
    /// A manager for `url`; `pings` counts the checkout tests it runs.
    pub(crate) fn new(url: String, window: Duration, pings: Arc<AtomicU64>) -> Self {
        Self {
            inner: ConnectionManager::new(url),
            window,
            pings,
        }
    }
}

impl<C> ManageConnection for Manager<C>
where
    C: R2D2Connection + Send + 'static,
{
    type Connection = Timed<C>;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Timed<C>, Self::Error> {
        Ok(Timed {
            conn: self.inner.connect()?,
            last_used: Instant::now(),
        })
    }

    /// r2d2's checkout test: skipped for a connection used within the window (a zero
    /// window tests every checkout).
    fn is_valid(&self, conn: &mut Timed<C>) -> Result<(), Self::Error> {
        if conn.last_used.elapsed() < self.window {
            return Ok(());
        }
        self.pings.fetch_add(1, Ordering::Relaxed);
        self.inner.is_valid(&mut conn.conn)?;
        conn.last_used = Instant::now();
        Ok(())
    }

    /// Called by r2d2 on every check-in: a connection that is not broken was just used.
    fn has_broken(&self, conn: &mut Timed<C>) -> bool {
        let broken = self.inner.has_broken(&mut conn.conn);
        if !broken {
            conn.last_used = Instant::now();
        }
        broken
    }
}
