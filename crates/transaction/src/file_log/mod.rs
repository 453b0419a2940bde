//! A durable decision log in a directory of segment files.
//!
//! Presumed abort: only COMMIT decisions are written. A transaction with no COMMIT record
//! in the log, and that no running coordinator can still decide, may be rolled back by
//! recovery. `docs/design.md` ("The file decision log") has the on-disk format, the
//! torn-tail rule and the failure analysis.

mod format;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use self::format::{Decision, SEGMENT_HEADER_LEN};
use crate::{BoxError, Branch, DecisionLog, DecisionRecord, TransactionId};

pub use self::format::{BatchInfo, LogInspection, LogPosition};

const LOCK_FILE: &str = "LOCK";
const INCARNATION_FILE: &str = "INCARNATION";
const INCARNATION_TMP: &str = "INCARNATION.tmp";
const INCARNATION_MAGIC: &[u8; 8] = b"TXDLINC1";
const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;
const MIN_SEGMENT_SIZE: u64 = 512;
const DEFAULT_GROUP_WAIT: Duration = Duration::from_millis(3);
const GATHER_POLL: Duration = Duration::from_micros(250);

/// Errors of the [`FileDecisionLog`].
///
/// [`DecisionLog::record_commit`] returns them boxed; `downcast_ref::<FileLogError>()`
/// gets them back.
///
/// # Examples
///
/// ```
/// use transaction::{FileDecisionLog, FileLogError};
///
/// let dir = std::env::temp_dir().join(format!("txlog-doc-err-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let log = FileDecisionLog::open(&dir)?;
/// let err = FileDecisionLog::open(&dir).unwrap_err(); // the directory is in use
/// assert!(matches!(err, FileLogError::Locked { .. }));
/// assert_eq!(err.holder_pid(), Some(std::process::id()));
/// assert!(err.to_string().contains(&dir.display().to_string()));
/// # drop(log);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), transaction::BoxError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileLogError {
    /// Another log (in this process or another one) holds the directory.
    #[error("decision log directory {} is in use by {}", dir.display(), Holder(*holder))]
    Locked {
        /// The log directory.
        dir: PathBuf,
        /// The process id the holder wrote into the lock file, when it could be read.
        holder: Option<u32>,
    },
    /// A file operation failed.
    #[error("decision log could not {operation} {}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The incarnation file does not check: reusing an incarnation could give a new
    /// transaction the branch ids of a dead one, so the log refuses to open.
    #[error("decision log incarnation file {} is damaged", path.display())]
    BadIncarnation {
        /// The incarnation file.
        path: PathBuf,
    },
    /// Writing or syncing the batch that held this decision failed: it may or may not be
    /// durable. The log has stopped; the transaction's branches must be left prepared for
    /// recovery, which decides from what is on disk.
    #[error("decision log {} could not make the decision of transaction {transaction} durable: its outcome is unknown and the log has stopped", dir.display())]
    OutcomeUnknown {
        /// The log directory.
        dir: PathBuf,
        /// The transaction whose decision may or may not be durable.
        transaction: TransactionId,
        /// The failed write or sync.
        #[source]
        source: io::Error,
    },
    /// An earlier write or sync failed; the log accepts no decision until it is reopened
    /// (a failed sync is never retried: the kernel may have dropped the unwritten data).
    #[error("decision log {} has stopped after a failed write or sync", dir.display())]
    Stopped {
        /// The log directory.
        dir: PathBuf,
    },
    /// The log was closed ([`FileDecisionLog::close`]): it records no more decisions, and
    /// another process may hold its directory by now.
    #[error("decision log {} was closed: it records no more decisions", dir.display())]
    Closed {
        /// The log directory.
        dir: PathBuf,
    },
    /// An option was out of range.
    #[error("decision log option {option} is invalid: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Why.
        reason: String,
    },
}

struct Holder(Option<u32>);

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(pid) => write!(f, "process {pid}"),
            None => f.write_str("another process"),
        }
    }
}

impl FileLogError {
    /// The process holding the directory, for [`FileLogError::Locked`].
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::FileLogError;
    ///
    /// let err = FileLogError::Locked { dir: "/var/lib/app/txlog".into(), holder: Some(42) };
    /// assert_eq!(err.holder_pid(), Some(42));
    /// assert_eq!(err.to_string(), "decision log directory /var/lib/app/txlog is in use by process 42");
    /// ```
    pub fn holder_pid(&self) -> Option<u32> {
        match self {
            Self::Locked { holder, .. } => *holder,
            _ => None,
        }
    }

    /// Whether a decision may have been made durable although recording it failed: the
    /// caller must not roll back the transaction's prepared branches itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{FileLogError, TransactionId};
    ///
    /// let err = FileLogError::OutcomeUnknown {
    ///     dir: "/tmp/txlog".into(),
    ///     transaction: TransactionId::from_parts(1, 2),
    ///     source: std::io::Error::other("EIO"),
    /// };
    /// assert!(err.is_outcome_unknown());
    /// assert!(!FileLogError::Stopped { dir: "/tmp/txlog".into() }.is_outcome_unknown());
    /// ```
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Self::OutcomeUnknown { .. })
    }
}

fn io_err<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> FileLogError + 'a {
    move |source| FileLogError::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// How the log makes written bytes durable: `fdatasync` by default.
///
/// A seam for tests and measurements: an implementation can count syncs, copy what is
/// durable, or fail on demand. An implementation must not return `Ok` unless the file's
/// data is durable.
///
/// # Examples
///
/// ```
/// use std::fs::File;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use transaction::{DataSync, DecisionLog, FileLogOptions, TransactionId};
///
/// #[derive(Default)]
/// struct Counting(AtomicUsize);
///
/// impl DataSync for Counting {
///     fn sync_data(&self, file: &File) -> std::io::Result<()> {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         file.sync_data()
///     }
/// }
///
/// let dir = std::env::temp_dir().join(format!("txlog-doc-sync-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let syncs = Arc::new(Counting::default());
/// let log = FileLogOptions::new().data_sync(syncs.clone()).open(&dir)?;
/// let before = syncs.0.load(Ordering::Relaxed);
/// log.record_commit(TransactionId::next(), &[])?;
/// assert_eq!(syncs.0.load(Ordering::Relaxed), before + 1);
/// # drop(log);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), transaction::BoxError>(())
/// ```
pub trait DataSync: Send + Sync {
    /// Makes the data written to `file` durable (`File::sync_data`).
    ///
    /// # Errors
    ///
    /// An error stops the log: it is never retried.
    fn sync_data(&self, file: &File) -> io::Result<()>;
}

impl<T: DataSync + ?Sized> DataSync for Arc<T> {
    fn sync_data(&self, file: &File) -> io::Result<()> {
        (**self).sync_data(file)
    }
}

struct StdDataSync;

impl DataSync for StdDataSync {
    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }
}

/// Options of a [`FileDecisionLog`], then [`open`](Self::open).
///
/// # Examples
///
/// ```
/// use transaction::FileLogOptions;
///
/// let dir = std::env::temp_dir().join(format!("txlog-doc-opts-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let log = FileLogOptions::new().segment_size(1 << 20).preallocate(false).open(&dir)?;
/// assert_eq!(log.incarnation(), 1);
/// # drop(log);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), transaction::BoxError>(())
/// ```
pub struct FileLogOptions {
    segment_size: u64,
    preallocate: bool,
    group_wait: Duration,
    data_sync: Arc<dyn DataSync>,
}

impl fmt::Debug for FileLogOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileLogOptions")
            .field("segment_size", &self.segment_size)
            .field("preallocate", &self.preallocate)
            .field("group_wait", &self.group_wait)
            .finish_non_exhaustive()
    }
}

impl Default for FileLogOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl FileLogOptions {
    /// The defaults: 16 MiB segments, preallocated, synced with `fdatasync`.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = transaction::FileLogOptions::new();
    /// assert!(format!("{options:?}").contains("16777216"));
    /// ```
    pub fn new() -> Self {
        Self {
            segment_size: DEFAULT_SEGMENT_SIZE,
            preallocate: true,
            group_wait: DEFAULT_GROUP_WAIT,
            data_sync: Arc::new(StdDataSync),
        }
    }

    /// The size at which the log moves to a new segment. Default: 16 MiB; at least 512
    /// bytes. A batch larger than a segment gets a segment of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = transaction::FileLogOptions::new().segment_size(4096);
    /// assert!(format!("{options:?}").contains("4096"));
    /// ```
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Whether a new segment is filled with zeros and synced before use, so that a commit's
    /// `fdatasync` does not also have to write the file's new size. Default: `true`.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = transaction::FileLogOptions::new().preallocate(false);
    /// assert!(format!("{options:?}").contains("preallocate: false"));
    /// ```
    pub fn preallocate(mut self, yes: bool) -> Self {
        self.preallocate = yes;
        self
    }

    /// The longest time a group-commit leader waits, before it writes, for commits that
    /// are still voting ([`deciding`](crate::deciding)) to join its group. The leader
    /// waits only while such commits exist, and stops as soon as every one of them has
    /// joined (or given up), so a lone commit never waits. Fewer, larger groups mean
    /// fewer `fdatasync`s under concurrent commits, at the price of up to this much latency
    /// per group. Default: 3 ms; `Duration::ZERO` writes at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = transaction::FileLogOptions::new().group_wait(Duration::ZERO);
    /// assert!(format!("{options:?}").contains("group_wait: 0ns"));
    /// ```
    pub fn group_wait(mut self, wait: Duration) -> Self {
        self.group_wait = wait;
        self
    }

    /// How written segment data is made durable. Default: `File::sync_data`.
    ///
    /// # Examples
    ///
    /// See [`DataSync`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// struct Plain;
    /// impl transaction::DataSync for Plain {
    ///     fn sync_data(&self, file: &std::fs::File) -> std::io::Result<()> {
    ///         file.sync_data()
    ///     }
    /// }
    /// let _options = transaction::FileLogOptions::new().data_sync(Arc::new(Plain));
    /// ```
    pub fn data_sync(mut self, sync: Arc<dyn DataSync>) -> Self {
        self.data_sync = sync;
        self
    }

    /// Opens (creating it if needed) the log in `dir`. See [`FileDecisionLog::open`].
    ///
    /// # Errors
    ///
    /// As [`FileDecisionLog::open`], and [`FileLogError::InvalidOption`].
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-oopen-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = transaction::FileLogOptions::new().open(&dir)?;
    /// assert_eq!(log.dir(), dir);
    /// # drop(log);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn open(self, dir: impl AsRef<Path>) -> Result<FileDecisionLog, FileLogError> {
        if self.segment_size < MIN_SEGMENT_SIZE {
            return Err(FileLogError::InvalidOption {
                option: "segment_size",
                reason: format!("{} bytes is below {MIN_SEGMENT_SIZE}", self.segment_size),
            });
        }
        FileDecisionLog::open_with(dir.as_ref(), self)
    }
}

/// Counters of a [`FileDecisionLog`] since it was opened.
///
/// # Examples
///
/// ```
/// use transaction::{DecisionLog, FileDecisionLog, TransactionId};
///
/// let dir = std::env::temp_dir().join(format!("txlog-doc-stats-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let log = FileDecisionLog::open(&dir)?;
/// let before = log.stats();
/// log.record_commit(TransactionId::next(), &[])?;
/// let after = log.stats();
/// assert_eq!(after.commits - before.commits, 1);
/// assert_eq!(after.batches - before.batches, 1);
/// # drop(log);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), transaction::BoxError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// COMMIT records made durable.
    pub commits: u64,
    /// Batches written (one per group commit).
    pub batches: u64,
    /// Calls to [`DataSync::sync_data`], segment creation included.
    pub syncs: u64,
    /// Segments created.
    pub segments_created: u64,
    /// Segments deleted by compaction.
    pub segments_deleted: u64,
    /// Decisions copied forward (RELOG) into a newer segment.
    pub relogged: u64,
    /// Groups whose leader waited for voting commits before writing.
    pub group_waits: u64,
}

/// The segment being appended to. Only the group-commit leader touches it.
struct Writer {
    file: File,
    path: PathBuf,
    segment: u64,
    offset: u64,
    /// Segments that must not be deleted (they hold corruption not yet accepted).
    keep: BTreeSet<u64>,
}

struct Open {
    decision: Decision,
    /// The segment holding its latest record; `None` while it is only buffered.
    segment: Option<u64>,
}

struct State {
    /// Encoded records not yet written.
    buffer: Vec<u8>,
    buffered: u32,
    /// Transactions whose COMMIT is in `buffer`.
    buffered_commits: Vec<TransactionId>,
    /// Number of the last record appended, and of the last one durable.
    appended: u64,
    durable: u64,
    leading: bool,
    /// Whether the leader is waiting for voting commits to join its group.
    gathering: bool,
    /// Set by a failed write or sync: records up to `failed_upto` have an unknown outcome.
    failed: Option<(u64, io::Error)>,
    open: BTreeMap<TransactionId, Open>,
    /// Set by [`FileDecisionLog::close`]: no record is accepted any more.
    closed: bool,
    may_presume_abort: bool,
    corruption: Vec<LogPosition>,
    stats: LogStats,
}

struct Inner {
    dir: PathBuf,
    incarnation: u32,
    options: FileLogOptions,
    state: Mutex<State>,
    done: Condvar,
    /// Signalled when a commit joins while the leader is gathering.
    arrived: Condvar,
    writer: Mutex<Writer>,
    _lock: File,
}

/// A durable [`DecisionLog`] in a directory: crash-safe two-phase commit for one process.
///
/// Presumed abort: [`record_commit`](DecisionLog::record_commit) appends a COMMIT record
/// and returns only once it is durable; [`forget`](DecisionLog::forget) appends an END
/// record without waiting (it goes to disk with the next batch; if a crash loses it,
/// recovery finishes the transaction again and finds nothing left to do). Concurrent
/// commits share one `fdatasync` (leader/follower group commit: the first waiting thread
/// writes and syncs everything appended so far, the others wait for it; no log thread).
///
/// The directory holds `LOCK` (held for the log's lifetime, with the holder's pid),
/// `INCARNATION` (bumped durably at every open) and segment files `seg-<16 hex>.log`.
/// Decisions never expire by age. When the log moves to a new segment, the decisions
/// still open are copied forward (RELOG) into it and synced before older segments are
/// deleted; opening does the same.
///
/// A failed write or sync stops the log (fail-stop): the commits of that batch get
/// [`FileLogError::OutcomeUnknown`], every later one [`FileLogError::Stopped`]; the sync
/// is never retried. Reopen the log (restart the process) and let recovery decide from
/// what is on disk.
///
/// The log is cheap to clone (clones share one log) and `Send + Sync`: give each
/// thread's [`TransactionManager`](crate::TransactionManager) an `Rc` of a clone. The
/// directory is released when the last clone is dropped.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
/// use transaction::{DecisionLog, FileDecisionLog, TransactionManager};
///
/// let dir = std::env::temp_dir().join(format!("txlog-doc-main-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let log = FileDecisionLog::open(&dir)?;
/// let manager = TransactionManager::builder().decision_log(Rc::new(log.clone())).build();
///
/// let txn = manager.begin()?;
/// txn.join(ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new()).fail_on(Call::TpcFinish))?;
/// assert!(manager.commit().unwrap_err().is_heuristic()); // db stays prepared
/// drop(manager);
/// drop(log); // as if the process had ended
///
/// let log = FileDecisionLog::open(&dir)?; // the next start
/// assert_eq!(log.incarnation(), 2);
/// assert_eq!(log.open_decisions()[0].transaction, txn.id()); // recovery must commit db
/// # drop(log);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), transaction::BoxError>(())
/// ```
#[derive(Clone)]
pub struct FileDecisionLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for FileDecisionLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileDecisionLog")
            .field("dir", &self.inner.dir)
            .field("incarnation", &self.inner.incarnation)
            .finish_non_exhaustive()
    }
}

fn sync_dir(dir: &Path) -> Result<(), FileLogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

fn lock_dir(dir: &Path) -> Result<File, FileLogError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err("open", &path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(FileLogError::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io_err("lock", &path)(e)),
    }
    file.set_len(0)
        .and_then(|()| file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0))
        .map_err(io_err("write", &path))?;
    Ok(file)
}

/// Reads the incarnation, bumps it and makes the new value durable before returning it.
fn bump_incarnation(dir: &Path) -> Result<u32, FileLogError> {
    let path = dir.join(INCARNATION_FILE);
    let previous = match std::fs::read(&path) {
        Ok(bytes) => {
            let valid = bytes.len() == 16
                && &bytes[0..8] == INCARNATION_MAGIC
                && bytes[12..16] == crc32c::crc32c(&bytes[0..12]).to_le_bytes();
            if !valid {
                return Err(FileLogError::BadIncarnation { path });
            }
            u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let next = previous
        .checked_add(1)
        .ok_or_else(|| FileLogError::BadIncarnation { path: path.clone() })?;
    let mut bytes = INCARNATION_MAGIC.to_vec();
    bytes.extend_from_slice(&next.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(INCARNATION_TMP);
    File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .map_err(io_err("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    sync_dir(dir)?;
    Ok(next)
}

impl FileDecisionLog {
    /// Opens (creating it if needed) the log in `dir` with default options.
    ///
    /// Opening locks the directory for the log's lifetime, bumps the incarnation durably,
    /// reads every segment (see [`inspect`](Self::inspect) for how damage is classified),
    /// cuts off a torn tail, copies the open decisions into a new segment, syncs it and
    /// deletes the older segments, except those holding corruption until
    /// [`accept_loss`](Self::accept_loss).
    ///
    /// # Errors
    ///
    /// [`FileLogError::Locked`] when another log holds the directory (naming the holder's
    /// pid when it wrote one), [`FileLogError::BadIncarnation`], [`FileLogError::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::FileDecisionLog;
    ///
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-open-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = FileDecisionLog::open(&dir)?;
    /// assert!(log.open_decisions().is_empty());
    /// assert!(log.may_presume_abort());
    /// # drop(log);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, FileLogError> {
        FileLogOptions::new().open(dir)
    }

    fn open_with(dir: &Path, options: FileLogOptions) -> Result<Self, FileLogError> {
        std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let lock = lock_dir(dir)?;
        let incarnation = bump_incarnation(dir)?;
        let scan = format::scan(dir).map_err(io_err("read segments of", dir))?;
        if let Some(torn) = &scan.torn_tail {
            // Cut the torn bytes off, so that the segment ends cleanly once it is no
            // longer the last one.
            OpenOptions::new()
                .write(true)
                .open(&torn.path)
                .and_then(|f| f.set_len(torn.offset).and_then(|()| f.sync_all()))
                .map_err(io_err("cut the torn tail of", &torn.path))?;
        }
        let keep: BTreeSet<u64> = scan.corrupt_segments().into_iter().collect();
        let next = scan.segments.last().map_or(1, |(n, _)| n + 1);
        let mut stats = LogStats::default();
        let mut writer = create_segment(dir, next, incarnation, &options, keep, &mut stats)?;
        let mut open = BTreeMap::new();
        let mut records = Vec::new();
        for (txn, decision) in &scan.open {
            format::put_decision(&mut records, *txn, decision, true);
            open.insert(
                *txn,
                Open {
                    decision: decision.clone(),
                    segment: Some(next),
                },
            );
        }
        if !open.is_empty() {
            let count = u32::try_from(open.len()).expect("fewer than 4 billion decisions");
            write_batch(&mut writer, &records, count, &options, &mut stats)
                .map_err(io_err("relog open decisions into", &writer.path))?;
            stats.relogged += open.len() as u64;
        }
        delete_older_segments(dir, &mut writer, &mut stats)?;
        let corruption = scan.corruption.clone();
        if !corruption.is_empty() {
            tracing::error!(dir = %dir.display(), places = corruption.len(), "decision log is corrupt: presumed-abort rollbacks are refused until an operator accepts the loss");
        } else if let Some(torn) = &scan.torn_tail {
            tracing::info!(segment = %torn.path.display(), offset = torn.offset, "decision log had a torn tail: cut off");
        }
        let state = State {
            buffer: Vec::new(),
            buffered: 0,
            buffered_commits: Vec::new(),
            appended: 0,
            durable: 0,
            leading: false,
            gathering: false,
            failed: None,
            closed: false,
            open,
            may_presume_abort: corruption.is_empty(),
            corruption,
            stats,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                incarnation,
                options,
                state: Mutex::new(state),
                done: Condvar::new(),
                arrived: Condvar::new(),
                writer: Mutex::new(writer),
                _lock: lock,
            }),
        })
    }

    /// Reads the log in `dir` without locking or changing anything (a running log may be
    /// writing its last batch: a torn tail reported then may just be in progress).
    ///
    /// Damage is classified by one rule: at the first batch that does not check (magic,
    /// length or crc32c), the rest of its segment is searched for a batch that does. If
    /// one is found, the damage is **corruption** (a batch is written only after the
    /// previous one was durable, so an interrupted write is never followed by valid data):
    /// every valid decision is still kept, and an opened log refuses presumed-abort
    /// rollbacks ([`may_presume_abort`](Self::may_presume_abort)) until
    /// [`accept_loss`](Self::accept_loss). If none is found, non-zero bytes end the
    /// segment: in the last segment, a **torn tail** (ignored, and cut off by the next
    /// open); in an earlier segment, corruption.
    ///
    /// # Errors
    ///
    /// [`FileLogError::Io`] when the directory or a segment cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{DecisionLog, FileDecisionLog, FileLogOptions, TransactionId};
    ///
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-torn-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = FileLogOptions::new().preallocate(false).open(&dir)?;
    /// let (kept, torn) = (TransactionId::next(), TransactionId::next());
    /// log.record_commit(kept, &[])?;
    /// log.record_commit(torn, &[])?;
    /// drop(log);
    /// // A crash in the middle of the last write: cut its batch short.
    /// let report = FileDecisionLog::inspect(&dir)?;
    /// let last = report.batches.last().unwrap();
    /// let file = std::fs::OpenOptions::new().write(true).open(&last.at.path)?;
    /// file.set_len(last.at.offset + last.len - 3)?;
    ///
    /// let report = FileDecisionLog::inspect(&dir)?;
    /// assert_eq!(report.torn_tail.as_ref().unwrap().offset, last.at.offset);
    /// assert!(report.corruption.is_empty());
    /// assert_eq!(report.open_decisions.len(), 1);
    /// assert_eq!(report.open_decisions[0].transaction, kept);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn inspect(dir: impl AsRef<Path>) -> Result<LogInspection, FileLogError> {
        let dir = dir.as_ref();
        format::scan(dir)
            .map(|scan| scan.inspection())
            .map_err(io_err("read segments of", dir))
    }

    /// The log directory.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-dir-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = transaction::FileDecisionLog::open(&dir)?;
    /// assert_eq!(log.dir(), dir);
    /// # drop(log);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// This opening's incarnation: 1 for a new directory, one more at every open. A
    /// number never handed out twice for the directory, for branch ids that must not
    /// collide with those of an earlier process.
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::FileDecisionLog;
    ///
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-inc-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let first = FileDecisionLog::open(&dir)?.incarnation();
    /// let second = FileDecisionLog::open(&dir)?.incarnation();
    /// assert_eq!((first, second), (1, 2));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn incarnation(&self) -> u32 {
        self.inner.incarnation
    }

    /// The decisions recorded and not forgotten, in transaction id order: what recovery
    /// must commit. It includes decisions whose record is not durable yet (their
    /// `record_commit` has not returned).
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{Branch, DecisionLog, FileDecisionLog, TransactionId};
    ///
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-od-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = FileDecisionLog::open(&dir)?;
    /// let (a, b) = (TransactionId::next(), TransactionId::next());
    /// let branch = Branch { resource: "orders".into(), branch_id: Some("gid-1".into()) };
    /// log.record_commit(a, &[branch.clone()])?;
    /// log.record_commit(b, &[])?;
    /// log.forget(b)?;
    /// let open = log.open_decisions();
    /// assert_eq!(open.len(), 1);
    /// assert_eq!((open[0].transaction, &open[0].branches[..]), (a, &[branch][..]));
    /// # drop(log);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn open_decisions(&self) -> Vec<DecisionRecord> {
        self.state()
            .open
            .iter()
            .map(|(txn, o)| DecisionRecord {
                transaction: *txn,
                branches: o.decision.branches.clone(),
            })
            .collect()
    }

    /// Whether recovery may roll back a prepared branch for which no decision is open.
    /// False when the log found corruption at open (a decision may have been destroyed),
    /// until an operator calls [`accept_loss`](Self::accept_loss); false for good once
    /// the log has [stopped](Self::is_stopped).
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-mpa-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = transaction::FileDecisionLog::open(&dir)?;
    /// assert!(log.may_presume_abort()); // nothing damaged
    /// # drop(log);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn may_presume_abort(&self) -> bool {
        let state = self.state();
        state.may_presume_abort && state.failed.is_none()
    }

    /// Whether a failed write or sync has stopped the log. A stopped log records nothing
    /// more, and its open decisions include some whose durability is unknown: the
    /// process should stop committing and restart, so that the next open decides from
    /// what is on disk (and makes it durable again) before recovery acts on it.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-stop-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = transaction::FileDecisionLog::open(&dir)?;
    /// assert!(!log.is_stopped());
    /// # drop(log);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.state().failed.is_some()
    }

    /// Where the log found corruption at open (empty once accepted).
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-cor-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = transaction::FileDecisionLog::open(&dir)?;
    /// assert!(log.corruption().is_empty());
    /// # drop(log);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn corruption(&self) -> Vec<LogPosition> {
        self.state().corruption.clone()
    }

    /// An operator's acceptance that decisions destroyed by corruption are lost: renames
    /// the corrupt segments to `seg-<16 hex>.corrupt` (kept for inspection, no longer read;
    /// every valid decision they held was copied forward at open), syncs the directory and
    /// allows presumed-abort rollbacks again. Does nothing on a log without corruption.
    ///
    /// # Errors
    ///
    /// [`FileLogError::Io`] when a rename or the directory sync fails; presumed abort
    /// stays refused.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-acc-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = transaction::FileDecisionLog::open(&dir)?;
    /// log.accept_loss()?;
    /// assert!(log.may_presume_abort());
    /// # drop(log);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn accept_loss(&self) -> Result<(), FileLogError> {
        let mut writer = self.writer();
        let keep = std::mem::take(&mut writer.keep);
        for segment in &keep {
            let name = format::segment_name(*segment);
            let from = self.inner.dir.join(&name);
            let to = from.with_extension("corrupt");
            if let Err(e) = std::fs::rename(&from, &to) {
                if e.kind() != io::ErrorKind::NotFound {
                    writer.keep = keep.clone();
                    return Err(io_err("quarantine", &from)(e));
                }
            }
        }
        if !keep.is_empty() {
            if let Err(e) = sync_dir(&self.inner.dir) {
                writer.keep = keep;
                return Err(e);
            }
            tracing::warn!(dir = %self.inner.dir.display(), segments = keep.len(), "decision log corruption accepted: presumed-abort rollbacks allowed again");
        }
        let mut state = self.state();
        state.may_presume_abort = true;
        state.corruption.clear();
        Ok(())
    }

    /// Closes the log for the rest of the process: refuses every later decision (and
    /// END record) with [`FileLogError::Closed`], writes and syncs what is buffered (a
    /// commit waiting for its batch still gets its answer), and releases the directory's
    /// lock, so that a new process (the next start of this one) may open the directory at
    /// once. Clones share the closed state. Closing twice does nothing. Stop committing
    /// and run a last recovery pass first: `sqlassist`'s `Registry::shutdown` does.
    ///
    /// # Errors
    ///
    /// [`FileLogError::Io`] when the lock cannot be released (the log is closed all the
    /// same; the lock goes with the process).
    ///
    /// # Examples
    ///
    /// ```
    /// use transaction::{DecisionLog, FileDecisionLog, FileLogError, TransactionId};
    ///
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-close-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = FileDecisionLog::open(&dir)?;
    /// log.close()?;
    /// let refused = log.record_commit(TransactionId::next(), &[]).unwrap_err();
    /// assert!(matches!(refused.downcast_ref(), Some(FileLogError::Closed { .. })));
    /// let next = FileDecisionLog::open(&dir)?; // the directory is free
    /// assert_eq!(next.incarnation(), 2);
    /// # drop((log, next));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn close(&self) -> Result<(), FileLogError> {
        let inner = &self.inner;
        let mut state = inner.state();
        if state.closed {
            return Ok(());
        }
        state.closed = true;
        while state.leading {
            state = inner
                .done
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if state.failed.is_none() && state.buffered > 0 {
            state = inner.lead(state, false);
        }
        drop(state);
        // Nothing is buffered and nothing more can be: no writer comes after this one.
        let _writer = self.writer();
        tracing::info!(dir = %inner.dir.display(), "decision log closed");
        inner
            ._lock
            .unlock()
            .map_err(io_err("unlock", &inner.dir.join(LOCK_FILE)))
    }

    /// Whether [`close`](Self::close) was called.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-isclosed-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = transaction::FileDecisionLog::open(&dir)?;
    /// assert!(!log.is_closed());
    /// # drop(log);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Counters since the log was opened.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("txlog-doc-st-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = transaction::FileDecisionLog::open(&dir)?;
    /// assert_eq!(log.stats().commits, 0);
    /// assert_eq!(log.stats().segments_created, 1);
    /// # drop(log);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transaction::BoxError>(())
    /// ```
    pub fn stats(&self) -> LogStats {
        self.state().stats
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state()
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent: every update is
        // a few assignments with no call-out in between.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes and syncs everything buffered; called by the one leader, without the state
    /// lock. With `gather`, first waits (up to the group wait) while commits are voting,
    /// so that they join this group.
    fn lead<'a>(&'a self, mut state: MutexGuard<'a, State>, gather: bool) -> MutexGuard<'a, State> {
        state.leading = true;
        if gather && !self.options.group_wait.is_zero() && crate::deciding() > 0 {
            // Wait while commits are voting: they will ask for their decision next.
            let deadline = Instant::now() + self.options.group_wait;
            state.gathering = true;
            state.stats.group_waits += 1;
            while crate::deciding() > 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                // A joining commit signals; a vote that fails leaves the count silently,
                // so look again now and then.
                state = self
                    .arrived
                    .wait_timeout(state, left.min(GATHER_POLL))
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
            state.gathering = false;
        }
        let records = std::mem::take(&mut state.buffer);
        let count = std::mem::replace(&mut state.buffered, 0);
        let commits = std::mem::take(&mut state.buffered_commits);
        let upto = state.appended;
        let mut stats = state.stats;
        drop(state);

        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let outcome = self.write_group(&mut writer, records, count, &mut stats);
        drop(writer);

        let mut state = self.state();
        state.leading = false;
        stats.commits += commits.len() as u64;
        match outcome {
            Ok(segment) => {
                state.durable = upto;
                for txn in commits {
                    if let Some(open) = state.open.get_mut(&txn) {
                        open.segment = Some(segment);
                    }
                }
            }
            Err(e) => {
                stats.commits -= commits.len() as u64;
                tracing::error!(dir = %self.dir.display(), error = %e, "decision log write or sync failed: the log has stopped");
                state.failed = Some((upto, e));
            }
        }
        state.stats = stats;
        self.done.notify_all();
        state
    }

    /// Writes one group's records; moves to a new segment (copying open decisions
    /// forward) when they do not fit. Returns the segment written to.
    fn write_group(
        &self,
        writer: &mut Writer,
        mut records: Vec<u8>,
        mut count: u32,
        stats: &mut LogStats,
    ) -> io::Result<u64> {
        let len = (format::BATCH_HEADER_LEN + records.len()) as u64;
        let switched = writer.offset + len > self.options.segment_size
            && writer.offset > SEGMENT_HEADER_LEN as u64;
        if switched {
            let next = writer.segment + 1;
            let keep = std::mem::take(&mut writer.keep);
            *writer = create_segment(
                &self.dir,
                next,
                self.incarnation,
                &self.options,
                keep,
                stats,
            )
            .map_err(into_io)?;
            // Copy forward every decision written to an older segment and still open.
            let mut relog = Vec::new();
            let mut n = 0u32;
            {
                let mut state = self.state();
                for (txn, open) in state.open.iter_mut() {
                    if open.segment.is_some() {
                        format::put_decision(&mut relog, *txn, &open.decision, true);
                        open.segment = Some(next);
                        n += 1;
                    }
                }
            }
            stats.relogged += u64::from(n);
            relog.extend_from_slice(&records);
            records = relog;
            count += n;
        }
        write_batch(writer, &records, count, &self.options, stats)?;
        if switched {
            crate::crash_point("log_compaction");
            delete_older_segments(&self.dir, writer, stats).map_err(into_io)?;
        }
        Ok(writer.segment)
    }
}

fn into_io(e: FileLogError) -> io::Error {
    match e {
        FileLogError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

/// Creates segment `n`: header, zeros when preallocating, synced, directory synced.
fn create_segment(
    dir: &Path,
    n: u64,
    incarnation: u32,
    options: &FileLogOptions,
    keep: BTreeSet<u64>,
    stats: &mut LogStats,
) -> Result<Writer, FileLogError> {
    let path = dir.join(format::segment_name(n));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create segment", &path))?;
    let header = format::segment_header(n, incarnation);
    let mut result = file.write_all_at(&header, 0);
    if options.preallocate && result.is_ok() {
        let zeros = vec![0u8; 1 << 20];
        let mut at = SEGMENT_HEADER_LEN as u64;
        while at < options.segment_size && result.is_ok() {
            let n = (options.segment_size - at).min(zeros.len() as u64) as usize;
            result = file.write_all_at(&zeros[..n], at);
            at += n as u64;
        }
    }
    stats.syncs += 1;
    result
        .and_then(|()| options.data_sync.sync_data(&file))
        .map_err(io_err("write segment", &path))?;
    sync_dir(dir)?;
    stats.segments_created += 1;
    Ok(Writer {
        file,
        path,
        segment: n,
        offset: SEGMENT_HEADER_LEN as u64,
        keep,
    })
}

fn write_batch(
    writer: &mut Writer,
    records: &[u8],
    count: u32,
    options: &FileLogOptions,
    stats: &mut LogStats,
) -> io::Result<()> {
    let batch = format::encode_batch(writer.segment, records, count);
    writer.file.write_all_at(&batch, writer.offset)?;
    writer.offset += batch.len() as u64;
    stats.batches += 1;
    stats.syncs += 1;
    crate::crash_point("decision_unsynced");
    options.data_sync.sync_data(&writer.file)
}

/// Deletes every segment older than the writer's, except those it must keep.
fn delete_older_segments(
    dir: &Path,
    writer: &mut Writer,
    stats: &mut LogStats,
) -> Result<(), FileLogError> {
    let mut deleted = 0;
    for (n, path) in format::list_segments(dir).map_err(io_err("list segments of", dir))? {
        if n < writer.segment && !writer.keep.contains(&n) {
            std::fs::remove_file(&path).map_err(io_err("delete segment", &path))?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        sync_dir(dir)?;
        stats.segments_deleted += deleted;
    }
    Ok(())
}

impl DecisionLog for FileDecisionLog {
    /// Appends a COMMIT record and returns once it is durable (see the type's docs).
    ///
    /// # Errors
    ///
    /// A boxed [`FileLogError::OutcomeUnknown`] when this record's write or sync failed,
    /// [`FileLogError::Stopped`] after an earlier failure, [`FileLogError::Closed`] after
    /// [`close`](FileDecisionLog::close).
    fn record_commit(&self, txn: TransactionId, branches: &[Branch]) -> Result<(), BoxError> {
        let inner = &self.inner;
        let mut state = inner.state();
        if state.closed {
            return Err(Box::new(FileLogError::Closed {
                dir: inner.dir.clone(),
            }));
        }
        if state.failed.is_some() {
            return Err(Box::new(FileLogError::Stopped {
                dir: inner.dir.clone(),
            }));
        }
        let decision = Decision::now(branches);
        format::put_decision(&mut state.buffer, txn, &decision, false);
        state.buffered += 1;
        state.buffered_commits.push(txn);
        state.appended += 1;
        let me = state.appended;
        state.open.insert(
            txn,
            Open {
                decision,
                segment: None,
            },
        );
        if state.gathering {
            inner.arrived.notify_one();
        }
        loop {
            if let Some((upto, e)) = &state.failed {
                let error = if me <= *upto {
                    FileLogError::OutcomeUnknown {
                        dir: inner.dir.clone(),
                        transaction: txn,
                        source: io::Error::new(e.kind(), e.to_string()),
                    }
                } else {
                    // Never written: the decision was not made.
                    state.open.remove(&txn);
                    FileLogError::Stopped {
                        dir: inner.dir.clone(),
                    }
                };
                return Err(Box::new(error));
            }
            if state.durable >= me {
                return Ok(());
            }
            if state.leading {
                state = inner
                    .done
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            } else {
                state = inner.lead(state, true);
            }
        }
    }

    /// Appends an END record without waiting for it to be durable.
    ///
    /// # Errors
    ///
    /// A boxed [`FileLogError::Stopped`] once the log has stopped,
    /// [`FileLogError::Closed`] once it was closed (the END is then written by the next
    /// process's recovery).
    fn forget(&self, txn: TransactionId) -> Result<(), BoxError> {
        let mut state = self.inner.state();
        if state.closed {
            return Err(Box::new(FileLogError::Closed {
                dir: self.inner.dir.clone(),
            }));
        }
        if state.failed.is_some() {
            return Err(Box::new(FileLogError::Stopped {
                dir: self.inner.dir.clone(),
            }));
        }
        if state.open.remove(&txn).is_some() {
            format::put_end(&mut state.buffer, txn);
            state.buffered += 1;
        }
        Ok(())
    }

    /// # Errors
    ///
    /// A boxed [`FileLogError::Closed`] once the log was closed: another process may own
    /// the directory, and this one's view of it is no ground for recovery any more.
    fn open_decisions(&self) -> Result<Vec<DecisionRecord>, BoxError> {
        if self.is_closed() {
            return Err(Box::new(FileLogError::Closed {
                dir: self.inner.dir.clone(),
            }));
        }
        Ok(FileDecisionLog::open_decisions(self))
    }

    fn may_presume_abort(&self) -> bool {
        !self.is_closed() && FileDecisionLog::may_presume_abort(self)
    }

    fn is_outcome_unknown(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        error
            .downcast_ref::<FileLogError>()
            .is_some_and(FileLogError::is_outcome_unknown)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Write the END records still buffered, so that the next open does not report
        // finished transactions as open.
        let state = self.state();
        if state.failed.is_none() && state.buffered > 0 {
            drop(self.lead(state, false));
        }
    }
}
