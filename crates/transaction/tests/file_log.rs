//! The file decision log on real files: torn tails and corruption, the directory lock
//! across processes, group commit, reopening, compaction and fail-stop.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use transaction::{
    Branch, DataSync, DecisionLog, FileDecisionLog, FileLogError, FileLogOptions, LogInspection,
    TransactionId,
};

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "txlog-test-{name}-{}-{}",
            std::process::id(),
            TransactionId::next().sequence()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn branch(resource: &str, id: &str) -> Branch {
    Branch {
        resource: resource.into(),
        branch_id: Some(id.into()),
    }
}

fn open_ids(report: &LogInspection) -> BTreeSet<TransactionId> {
    report
        .open_decisions
        .iter()
        .map(|r| r.transaction)
        .collect()
}

fn boxed(e: transaction::BoxError) -> FileLogError {
    *e.downcast::<FileLogError>()
        .expect("the file log returns FileLogError")
}

/// What each batch of the reference log holds, to compute the expected open decisions.
enum Rec {
    Commit(TransactionId),
    End(TransactionId),
}

/// Replays the batches whose index is kept.
fn model(batches: &[Vec<Rec>], keep: impl Fn(usize) -> bool) -> BTreeSet<TransactionId> {
    let mut open = BTreeSet::new();
    for (i, batch) in batches.iter().enumerate() {
        if keep(i) {
            for r in batch {
                match r {
                    Rec::Commit(t) => open.insert(*t),
                    Rec::End(t) => open.remove(t),
                };
            }
        }
    }
    open
}

/// Writes the reference log: four batches, the third holding an END and a COMMIT.
fn reference_log(options: FileLogOptions, dir: &Path) -> Vec<Vec<Rec>> {
    let log = options.open(dir).expect("open");
    let ids: Vec<TransactionId> = (0..4).map(|_| TransactionId::next()).collect();
    let b = [branch("orders", "g:1"), branch("stock", "g:2")];
    log.record_commit(ids[0], &b).expect("record a");
    log.record_commit(ids[1], &b[..1]).expect("record b");
    log.forget(ids[0]).expect("forget a");
    log.record_commit(ids[2], &[]).expect("record c");
    log.record_commit(ids[3], &b).expect("record d");
    vec![
        vec![Rec::Commit(ids[0])],
        vec![Rec::Commit(ids[1])],
        vec![Rec::End(ids[0]), Rec::Commit(ids[2])],
        vec![Rec::Commit(ids[3])],
    ]
}

#[test]
fn a_log_cut_at_every_byte_offset_is_a_torn_tail_and_keeps_every_earlier_decision() {
    let source = TempDir::new("cut-src");
    let batches = reference_log(FileLogOptions::new().preallocate(false), source.path());
    let clean = FileDecisionLog::inspect(source.path()).expect("inspect");
    assert_eq!(clean.batches.len(), 4);
    assert_eq!(open_ids(&clean), model(&batches, |_| true));
    let segment = &clean.batches[0].at.path;
    let bytes = std::fs::read(segment).expect("read segment");
    let name = segment.file_name().expect("file name");

    let case = TempDir::new("cut-case");
    for cut in 0..=bytes.len() {
        std::fs::write(case.path().join(name), &bytes[..cut]).expect("write case");
        let report = FileDecisionLog::inspect(case.path()).expect("inspect case");
        // Batches wholly before the cut survive; the one it falls in is torn.
        let whole = |i: usize| {
            let b = &clean.batches[i];
            (b.at.offset + b.len) as usize <= cut
        };
        let torn_at = clean
            .batches
            .iter()
            .find(|b| (b.at.offset as usize) < cut && cut < (b.at.offset + b.len) as usize)
            .map(|b| b.at.offset)
            .or((0 < cut && cut < 40).then_some(0));
        assert!(report.corruption.is_empty(), "cut at {cut}: {report:?}");
        assert_eq!(
            report.torn_tail.as_ref().map(|p| p.offset),
            torn_at,
            "cut at {cut}"
        );
        assert_eq!(open_ids(&report), model(&batches, whole), "cut at {cut}");
    }
}

#[test]
fn a_flipped_bit_is_torn_in_the_last_batch_and_corruption_elsewhere_and_no_valid_decision_is_lost()
{
    let source = TempDir::new("flip-src");
    let batches = reference_log(FileLogOptions::new().preallocate(false), source.path());
    let clean = FileDecisionLog::inspect(source.path()).expect("inspect");
    let segment = &clean.batches[0].at.path;
    let bytes = std::fs::read(segment).expect("read segment");
    let name = segment.file_name().expect("file name");
    let last = clean.batches.len() - 1;

    let case = TempDir::new("flip-case");
    let (mut torn, mut corrupt) = (0, 0);
    for byte in 0..bytes.len() {
        for bit in 0..8 {
            let mut damaged = bytes.clone();
            damaged[byte] ^= 1 << bit;
            std::fs::write(case.path().join(name), &damaged).expect("write case");
            let report = FileDecisionLog::inspect(case.path()).expect("inspect case");
            let hit = clean.batches.iter().position(|b| {
                (b.at.offset as usize) <= byte && byte < (b.at.offset + b.len) as usize
            });
            let at = format!("bit {bit} of byte {byte}: {report:?}");
            match hit {
                Some(k) if k == last => {
                    torn += 1;
                    assert!(report.corruption.is_empty(), "{at}");
                    assert_eq!(
                        report.torn_tail.as_ref().map(|p| p.offset),
                        Some(clean.batches[k].at.offset),
                        "{at}"
                    );
                }
                Some(k) => {
                    corrupt += 1;
                    assert!(report.torn_tail.is_none(), "{at}");
                    let offsets: Vec<u64> = report.corruption.iter().map(|p| p.offset).collect();
                    assert_eq!(offsets, [clean.batches[k].at.offset], "{at}");
                }
                None => {
                    // The segment header: the batches after it still check.
                    corrupt += 1;
                    assert!(report.torn_tail.is_none(), "{at}");
                    assert_eq!(report.corruption.len(), 1, "{at}");
                    assert_eq!(report.corruption[0].offset, 0, "{at}");
                }
            }
            assert_eq!(
                open_ids(&report),
                model(&batches, |i| Some(i) != hit),
                "{at}"
            );
        }
    }
    assert!(torn > 0 && corrupt > 0);
}

#[test]
fn a_torn_preallocated_tail_is_cut_off_by_the_next_open() {
    let source = TempDir::new("torn-prealloc");
    let options = || FileLogOptions::new().segment_size(4096);
    let batches = reference_log(options(), source.path());
    let clean = FileDecisionLog::inspect(source.path()).expect("inspect");
    let last = clean.batches.last().expect("a batch").clone();
    let bytes = std::fs::read(&last.at.path).expect("read");
    assert_eq!(bytes.len(), 4096); // preallocated
    let expected = model(&batches, |i| i + 1 < batches.len());

    // Sectors of the last write that never reached the disk read back as zeros.
    for from in last.at.offset..last.at.offset + last.len {
        let mut damaged = bytes.clone();
        damaged[from as usize..(last.at.offset + last.len) as usize].fill(0);
        std::fs::write(&last.at.path, &damaged).expect("write");
        let report = FileDecisionLog::inspect(source.path()).expect("inspect");
        assert_eq!(
            report.torn_tail.as_ref().map(|p| p.offset),
            (from > last.at.offset).then_some(last.at.offset),
            "zeros from {from}"
        );
        assert!(report.corruption.is_empty());
        assert_eq!(open_ids(&report), expected, "zeros from {from}");
    }

    // Opening cuts the tail off and keeps every decision; the next open finds it clean.
    let log = options().open(source.path()).expect("open torn log");
    assert!(log.may_presume_abort());
    let open: BTreeSet<_> = log.open_decisions().iter().map(|r| r.transaction).collect();
    assert_eq!(open, expected);
    drop(log);
    let report = FileDecisionLog::inspect(source.path()).expect("inspect");
    assert!(report.torn_tail.is_none() && report.corruption.is_empty());
    assert_eq!(open_ids(&report), expected);
}

#[test]
fn corruption_refuses_presumed_abort_until_accepted_even_across_reopens() {
    let dir = TempDir::new("corrupt");
    let options = || FileLogOptions::new().preallocate(false);
    let batches = reference_log(options(), dir.path());
    let clean = FileDecisionLog::inspect(dir.path()).expect("inspect");
    let hit = &clean.batches[1];
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&hit.at.path)
        .expect("open segment");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, hit.at.offset + 20)
        .expect("read");
    file.write_all_at(&[byte[0] ^ 0x10], hit.at.offset + 20)
        .expect("flip a bit");
    let expected = model(&batches, |i| i != 1);

    let log = options().open(dir.path()).expect("open corrupt log");
    assert!(!log.may_presume_abort());
    assert_eq!(log.corruption()[0].offset, hit.at.offset);
    let open: BTreeSet<_> = log.open_decisions().iter().map(|r| r.transaction).collect();
    assert_eq!(open, expected);
    drop(log);

    let log = options().open(dir.path()).expect("reopen");
    assert!(
        !log.may_presume_abort(),
        "a restart must not forget the damage"
    );
    log.accept_loss().expect("accept");
    assert!(log.may_presume_abort() && log.corruption().is_empty());
    drop(log);

    let log = options().open(dir.path()).expect("reopen after accepting");
    assert!(log.may_presume_abort());
    let open: BTreeSet<_> = log.open_decisions().iter().map(|r| r.transaction).collect();
    assert_eq!(open, expected);
    assert!(std::fs::read_dir(dir.path()).expect("read dir").any(|e| e
        .expect("entry")
        .path()
        .extension()
        .is_some_and(|e| e == "corrupt")));
}

const HOLD_ENV: &str = "TXLOG_TEST_HOLD_DIR";
const HOLDING: &str = "holding the log directory";

/// Not a test on its own: the child process of
/// `a_second_process_on_the_same_directory_refuses_to_start` (does nothing otherwise).
#[test]
fn child_holding_the_log_directory() {
    let Some(dir) = std::env::var_os(HOLD_ENV) else {
        return;
    };
    let log = FileDecisionLog::open(&dir).expect("child opens the log");
    // libtest prints "test <name> ... " without a newline first.
    println!("\n{HOLDING}");
    // Hold the directory until the parent closes our stdin.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(log);
}

#[test]
fn a_second_process_on_the_same_directory_refuses_to_start() {
    let dir = TempDir::new("lock-process");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_holding_the_log_directory",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLD_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("child said it holds the directory")
            .expect("read child stdout");
        if line.trim() == HOLDING {
            break;
        }
    }

    let err = FileDecisionLog::open(dir.path()).expect_err("the directory is held");
    assert!(
        matches!(&err, FileLogError::Locked { dir: d, .. } if d == dir.path()),
        "{err:?}"
    );
    assert_eq!(err.holder_pid(), Some(child.id()));
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("process {}", child.id())),
        "{message}"
    );

    drop(child.stdin.take()); // let the child go
    assert!(child.wait().expect("child exit").success());
    let log = FileDecisionLog::open(dir.path()).expect("free once the child has exited");
    assert_eq!(log.incarnation(), 2);
}

#[test]
fn a_second_open_in_the_same_process_is_refused_until_the_first_is_dropped() {
    let dir = TempDir::new("lock-inprocess");
    let log = FileDecisionLog::open(dir.path()).expect("open");
    let clone = log.clone();
    let err = FileDecisionLog::open(dir.path()).expect_err("held");
    assert!(
        matches!(&err, FileLogError::Locked { dir: d, holder: Some(pid) }
        if d == dir.path() && *pid == std::process::id())
    );
    drop(log);
    assert!(
        FileDecisionLog::open(dir.path()).is_err(),
        "a clone still holds it"
    );
    drop(clone);
    assert!(FileDecisionLog::open(dir.path()).is_ok());
}

/// Counts syncs and keeps a copy of what each sync made durable.
#[derive(Default)]
struct DurableImage {
    syncs: AtomicUsize,
    image: Mutex<Vec<u8>>,
}

impl DataSync for DurableImage {
    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        let len = file.metadata()?.len() as usize;
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, 0)?;
        file.sync_data()?;
        self.syncs.fetch_add(1, Ordering::SeqCst);
        *self.image.lock().expect("image lock") = bytes;
        Ok(())
    }
}

fn contains(haystack: &[u8], txn: TransactionId) -> bool {
    let mut needle = txn.coordinator().to_le_bytes().to_vec();
    needle.extend_from_slice(&txn.sequence().to_le_bytes());
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn concurrent_commits_share_fdatasyncs_and_each_is_durable_when_it_returns() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 100;
    let dir = TempDir::new("group");
    let sync = Arc::new(DurableImage::default());
    let log = FileLogOptions::new()
        .preallocate(false)
        .data_sync(sync.clone())
        .open(dir.path())
        .expect("open");
    let syncs_before = sync.syncs.load(Ordering::SeqCst);
    let barrier = Arc::new(Barrier::new(THREADS));
    let committed = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let (log, sync, barrier, committed) = (
                log.clone(),
                sync.clone(),
                barrier.clone(),
                committed.clone(),
            );
            s.spawn(move || {
                barrier.wait();
                for i in 0..PER_THREAD {
                    let txn = TransactionId::next();
                    log.record_commit(txn, &[branch("db", &format!("b{i}"))])
                        .expect("record");
                    let image = sync.image.lock().expect("image lock");
                    assert!(
                        contains(&image, txn),
                        "returned before its record was synced"
                    );
                    drop(image);
                    committed.lock().expect("lock").push(txn);
                }
            });
        }
    });
    let records = THREADS * PER_THREAD;
    let syncs = sync.syncs.load(Ordering::SeqCst) - syncs_before;
    assert!(syncs < records, "{syncs} fdatasyncs for {records} records");
    assert_eq!(log.stats().commits, records as u64);
    drop(log);

    let log = FileDecisionLog::open(dir.path()).expect("reopen");
    let open: BTreeSet<_> = log.open_decisions().iter().map(|r| r.transaction).collect();
    let committed: BTreeSet<_> = committed.lock().expect("lock").iter().copied().collect();
    assert_eq!(open, committed);
}

#[test]
fn a_group_leader_waits_for_a_commit_that_is_still_voting() {
    use std::rc::Rc;
    use std::time::{Duration, Instant};
    use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    use transaction::TransactionManager;

    let dir = TempDir::new("gather");
    let log = FileLogOptions::new()
        .preallocate(false)
        .group_wait(Duration::from_secs(20))
        .open(dir.path())
        .expect("open");
    let before = log.stats();
    let (voting_tx, voting_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let voter_log = log.clone();
        s.spawn(move || {
            let manager = TransactionManager::builder()
                .decision_log(Rc::new(voter_log.clone()))
                .build();
            let journal = Journal::new();
            let slow = ScriptedDataManager::new("slow", Kind::TwoPhase, &journal);
            let gathered = before.group_waits;
            slow.on_call(move |call, _| {
                if call == Call::TpcVote {
                    voting_tx.send(()).expect("main thread listens");
                    // Stay in the vote until the other commit leads a group (bounded, so
                    // that a log that does not wait fails the assertions below instead
                    // of hanging).
                    let until = Instant::now() + Duration::from_secs(10);
                    while voter_log.stats().group_waits == gathered && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            });
            let txn = manager.begin().expect("begin");
            txn.join(slow.clone()).expect("join");
            txn.join(ScriptedDataManager::new("other", Kind::TwoPhase, &journal))
                .expect("join");
            manager.commit().expect("commit");
            assert!(slow.committed());
        });
        voting_rx.recv().expect("the voter votes");
        log.record_commit(TransactionId::next(), &[branch("db", "leader")])
            .expect("record");
    });
    let after = log.stats();
    assert_eq!(after.commits - before.commits, 2);
    assert_eq!(
        after.batches - before.batches,
        1,
        "the leader wrote before the voting commit joined"
    );
}

#[test]
fn reopening_keeps_open_decisions_drops_ended_ones_and_bumps_the_incarnation() {
    let dir = TempDir::new("reopen");
    let log = FileDecisionLog::open(dir.path()).expect("open");
    assert_eq!(log.incarnation(), 1);
    let (a, b, c) = (
        TransactionId::next(),
        TransactionId::next(),
        TransactionId::next(),
    );
    let branches = vec![
        branch("orders", "g:a:0"),
        Branch {
            resource: "cache".into(),
            branch_id: None,
        },
    ];
    log.record_commit(a, &branches).expect("a");
    log.record_commit(b, &branches[..1]).expect("b");
    log.record_commit(c, &[]).expect("c");
    log.forget(b).expect("forget b");
    drop(log);

    let log = FileDecisionLog::open(dir.path()).expect("reopen");
    assert_eq!(log.incarnation(), 2);
    let open = log.open_decisions();
    assert_eq!(open.len(), 2);
    assert_eq!((open[0].transaction, &open[0].branches), (a, &branches));
    assert_eq!((open[1].transaction, open[1].branches.len()), (c, 0));
    log.forget(a).expect("forget a");
    drop(log);

    let log = FileDecisionLog::open(dir.path()).expect("third open");
    assert_eq!(log.incarnation(), 3);
    let open: Vec<_> = log.open_decisions().iter().map(|r| r.transaction).collect();
    assert_eq!(open, [c]);
}

#[test]
fn compaction_deletes_old_segments_and_keeps_a_long_open_decision() {
    let dir = TempDir::new("compact");
    let log = FileLogOptions::new()
        .segment_size(1024)
        .open(dir.path())
        .expect("open");
    let first_segment = segment_files(dir.path());
    assert_eq!(first_segment.len(), 1);
    let long_open = TransactionId::next();
    let branches = [branch("orders", "g:long")];
    log.record_commit(long_open, &branches).expect("long-open");
    for i in 0..300 {
        let txn = TransactionId::next();
        log.record_commit(txn, &[branch("orders", &format!("g:{i}"))])
            .expect("record");
        log.forget(txn).expect("forget");
        // What is on disk right now is what a crash would leave.
        let report = FileDecisionLog::inspect(dir.path()).expect("inspect");
        assert!(open_ids(&report).contains(&long_open), "after {i}");
        assert!(report.corruption.is_empty() && report.torn_tail.is_none());
        assert!(segment_files(dir.path()).len() <= 2, "after {i}");
    }
    let stats = log.stats();
    assert!(stats.segments_deleted >= 5, "{stats:?}");
    assert!(stats.relogged >= stats.segments_deleted, "{stats:?}");
    assert!(!first_segment[0].exists());
    assert_eq!(log.open_decisions().len(), 1);
    drop(log);

    let log = FileDecisionLog::open(dir.path()).expect("reopen");
    let open = log.open_decisions();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].transaction, &open[0].branches[..]),
        (long_open, &branches[..])
    );
}

/// Syncs for real until armed, then fails every call.
#[derive(Default)]
struct FailingSync {
    armed: AtomicBool,
    calls: AtomicUsize,
}

impl DataSync for FailingSync {
    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.armed.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fdatasync failure"));
        }
        file.sync_data()
    }
}

#[test]
fn a_failed_sync_stops_the_log_without_retrying_and_reports_the_outcome_unknown() {
    let dir = TempDir::new("failstop");
    let sync = Arc::new(FailingSync::default());
    let log = FileLogOptions::new()
        .data_sync(sync.clone())
        .open(dir.path())
        .expect("open");
    let (ok, unknown, refused) = (
        TransactionId::next(),
        TransactionId::next(),
        TransactionId::next(),
    );
    log.record_commit(ok, &[]).expect("before the failure");
    assert!(!log.is_stopped() && log.may_presume_abort());

    sync.armed.store(true, Ordering::SeqCst);
    let calls = sync.calls.load(Ordering::SeqCst);
    let err = boxed(log.record_commit(unknown, &[]).expect_err("sync fails"));
    assert!(err.is_outcome_unknown(), "{err}");
    assert!(err.to_string().contains("unknown"), "{err}");
    assert_eq!(sync.calls.load(Ordering::SeqCst), calls + 1);

    sync.armed.store(false, Ordering::SeqCst); // a retry would now succeed: none is made
    let err = boxed(log.record_commit(refused, &[]).expect_err("stopped"));
    assert!(matches!(err, FileLogError::Stopped { .. }), "{err}");
    assert!(log.forget(ok).is_err());
    assert_eq!(
        sync.calls.load(Ordering::SeqCst),
        calls + 1,
        "never retried"
    );
    let open: BTreeSet<_> = log.open_decisions().iter().map(|r| r.transaction).collect();
    assert_eq!(open, BTreeSet::from([ok, unknown])); // `unknown` may be durable
    assert!(log.is_stopped());
    assert!(
        !log.may_presume_abort(),
        "a stopped log's decisions are not all known"
    );
    drop(log);
    assert_eq!(
        sync.calls.load(Ordering::SeqCst),
        calls + 1,
        "drop writes nothing"
    );

    // The next start decides from what is on disk: the record reached the page cache.
    let log = FileDecisionLog::open(dir.path()).expect("reopen");
    let open: BTreeSet<_> = log.open_decisions().iter().map(|r| r.transaction).collect();
    assert!(open.contains(&ok) && !open.contains(&refused));
}

#[test]
fn a_stopped_log_aborts_a_transaction_manager_commit() {
    use std::rc::Rc;
    use transaction::testing::{Journal, Kind, ScriptedDataManager};

    let dir = TempDir::new("failstop-manager");
    let sync = Arc::new(FailingSync::default());
    let log = FileLogOptions::new()
        .data_sync(sync.clone())
        .open(dir.path())
        .expect("open");
    sync.armed.store(true, Ordering::SeqCst);
    let _ = log.record_commit(TransactionId::next(), &[]);
    let manager = transaction::TransactionManager::builder()
        .decision_log(Rc::new(log.clone()))
        .build();
    let db = ScriptedDataManager::new("db", Kind::TwoPhase, &Journal::new());
    manager
        .begin()
        .expect("begin")
        .join(db.clone())
        .expect("join");
    let err = manager.commit().expect_err("log stopped");
    assert!(
        matches!(err, transaction::Error::DecisionLog { .. }),
        "{err}"
    );
    assert!(!db.committed());
}

#[test]
fn a_damaged_incarnation_file_refuses_the_open_instead_of_reusing_a_number() {
    let dir = TempDir::new("incarnation");
    drop(FileDecisionLog::open(dir.path()).expect("open"));
    let path = dir.path().join("INCARNATION");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[8] ^= 0x04;
    std::fs::write(&path, &bytes).expect("damage");
    let err = FileDecisionLog::open(dir.path()).expect_err("damaged");
    assert!(
        matches!(&err, FileLogError::BadIncarnation { path: p } if *p == path),
        "{err:?}"
    );
    // The lock was released with the failed open: a repaired directory opens.
    bytes[8] ^= 0x04;
    std::fs::write(&path, &bytes).expect("repair");
    assert_eq!(
        FileDecisionLog::open(dir.path())
            .expect("open")
            .incarnation(),
        2
    );
}

#[test]
fn a_decision_whose_sync_failed_leaves_every_prepared_branch_for_recovery() {
    use std::rc::Rc;
    use transaction::testing::{Call, Journal, Kind, ScriptedDataManager};
    use transaction::{Error, TransactionManager};

    let dir = TempDir::new("outcome-unknown");
    let sync = Arc::new(FailingSync::default());
    let log = Arc::new(
        FileLogOptions::new()
            .data_sync(sync.clone())
            .open(dir.path())
            .unwrap(),
    );
    let manager = TransactionManager::builder()
        .explicit(true)
        .decision_log(Rc::new(log.clone()))
        .build();
    let journal = Journal::new();
    let txn = manager.begin().unwrap();
    txn.join(ScriptedDataManager::new("a", Kind::TwoPhase, &journal))
        .unwrap();
    txn.join(ScriptedDataManager::new("b", Kind::TwoPhase, &journal))
        .unwrap();
    sync.armed.store(true, Ordering::SeqCst);
    let err = manager.commit().unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err}");
    assert!(err.to_string().contains("outcome is unknown"), "{err}");
    assert!(!err.to_string().contains("nothing was committed"), "{err}");
    assert!(log.is_outcome_unknown(std::error::Error::source(&err).unwrap()));
    manager.abort().unwrap();
    for key in ["a", "b"] {
        let calls = journal.calls_of(key);
        assert!(calls.contains(&Call::LeavePrepared), "{key}: {calls:?}");
        assert!(!calls.contains(&Call::TpcAbort), "{key}: {calls:?}");
        assert!(!calls.contains(&Call::TpcFinish), "{key}: {calls:?}");
    }
    // The decision may be durable: recovery sees it as open.
    assert_eq!(FileDecisionLog::open_decisions(&log).len(), 1);
}

#[test]
fn close_writes_the_buffered_end_records_refuses_new_decisions_and_frees_the_directory() {
    let dir = TempDir::new("close");
    let log = FileDecisionLog::open(dir.path()).unwrap();
    let (done, open) = (TransactionId::next(), TransactionId::next());
    log.record_commit(done, &[branch("a", "g1")]).unwrap();
    log.record_commit(open, &[branch("a", "g2")]).unwrap();
    log.forget(done).unwrap(); // buffered, not yet written
    log.close().unwrap();
    assert!(log.is_closed());
    let refused = boxed(
        log.record_commit(TransactionId::next(), &[branch("a", "g3")])
            .unwrap_err(),
    );
    assert!(matches!(refused, FileLogError::Closed { .. }), "{refused}");
    assert!(!log.is_outcome_unknown(&refused));
    // Recovery must not act on a closed log's view: another process may own it now.
    assert!(DecisionLog::open_decisions(&log).is_err());
    assert!(!DecisionLog::may_presume_abort(&log));
    log.close().unwrap();

    // The directory opens at once, here, while the closed log is still alive; the END
    // written by close() means only the open decision is left.
    let next = FileDecisionLog::open(dir.path()).unwrap();
    let left: Vec<TransactionId> = next
        .open_decisions()
        .iter()
        .map(|d| d.transaction)
        .collect();
    assert_eq!(left, [open]);
    drop((log, next));
}
