//! Transaction identifiers.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static SEQUENCE: AtomicU64 = AtomicU64::new(1);
static COORDINATOR: OnceLock<u64> = OnceLock::new();

/// Identifies one transaction among all transactions of all processes.
///
/// It is made of a coordinator id, drawn once per process from the process id and the
/// start time, and a sequence number unique within the process. Its `Display` form
/// (`{coordinator:016x}-{sequence:x}`) uses only `[0-9a-f-]`, so resources can embed it in
/// the branch names they send to a database (`PREPARE TRANSACTION 'gid'`, `XA START`)
/// without quoting concerns.
///
/// # Examples
///
/// ```
/// let a = transaction::TransactionId::next();
/// let b = transaction::TransactionId::next();
/// assert_ne!(a, b);
/// assert_eq!(a.coordinator(), b.coordinator());
/// assert!(a.to_string().chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId {
    coordinator: u64,
    sequence: u64,
}

impl TransactionId {
    /// Draws the next identifier of this process.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::TransactionId;
    ///
    /// let a = TransactionId::next();
    /// let b = TransactionId::next();
    /// assert_ne!(a, b);
    /// assert_eq!(a.coordinator(), transaction::coordinator_id());
    /// ```
    pub fn next() -> Self {
        Self {
            coordinator: coordinator_id(),
            sequence: SEQUENCE.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Builds an identifier from its parts (for recovery tools reading a log).
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::TransactionId;
    ///
    /// let id = TransactionId::from_parts(0xab, 0x1f);
    /// assert_eq!((id.coordinator(), id.sequence()), (0xab, 0x1f));
    /// assert_eq!(id.to_string(), "00000000000000ab-1f");
    /// ```
    pub fn from_parts(coordinator: u64, sequence: u64) -> Self {
        Self {
            coordinator,
            sequence,
        }
    }

    /// The id of the coordinator (process) that began the transaction.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::TransactionId;
    ///
    /// assert_eq!(TransactionId::from_parts(7, 1).coordinator(), 7);
    /// assert_eq!(TransactionId::next().coordinator(), transaction::coordinator_id());
    /// ```
    pub fn coordinator(&self) -> u64 {
        self.coordinator
    }

    /// The transaction's number within its coordinator.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::TransactionId;
    ///
    /// assert_eq!(TransactionId::from_parts(7, 42).sequence(), 42);
    /// let (a, b) = (TransactionId::next(), TransactionId::next());
    /// assert_ne!(a.sequence(), b.sequence());
    /// ```
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{:x}", self.coordinator, self.sequence)
    }
}

/// This process's coordinator id: stable for the life of the process, and different
/// from other processes' with overwhelming probability.
///
/// # Examples
///
/// ```
/// let id = transaction::TransactionManager::new().begin()?.id();
/// assert_eq!(id.coordinator(), transaction::coordinator_id());
/// assert_eq!(transaction::coordinator_id(), transaction::coordinator_id());
/// # Ok::<(), transaction::Error>(())
/// ```
pub fn coordinator_id() -> u64 {
    *COORDINATOR.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let addr = &SEQUENCE as *const AtomicU64 as u64;
        splitmix64(nanos ^ (u64::from(std::process::id()) << 32) ^ addr.rotate_left(17))
    })
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
