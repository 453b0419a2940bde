//! The on-disk format of the file decision log, and the scan that reads it back.
//!
//! `docs/design.md` ("The file decision log") describes the same format for operators.
//! A segment is a header followed by batches; one batch is written per group commit and
//! made durable by one `fdatasync`:
//!
//! ```text
//! segment header (40 bytes): "TXDLSEG1" | version u32 | 0 u32 | segment u64 | incarnation u64
//!                            | 0 u32 | crc32c u32 (of the 36 bytes before it)
//! batch header   (16 bytes): magic u32 | payload length u32 | record count u32 | crc32c u32
//! record:                    kind u8 | payload length u32 | payload
//! ```
//!
//! Integers are little-endian. A batch's crc covers its first 12 header bytes and its
//! payload, seeded with the crc of the segment number, so a batch copied into another
//! segment does not check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Branch, TransactionId};

pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"TXDLSEG1";
pub(super) const FORMAT_VERSION: u32 = 1;
pub(super) const SEGMENT_HEADER_LEN: usize = 40;
pub(super) const BATCH_MAGIC: u32 = 0x3142_4c44; // "DLB1"
pub(super) const BATCH_HEADER_LEN: usize = 16;
/// Upper bound of a batch payload: larger lengths are damage, not data.
const MAX_BATCH_LEN: usize = 1 << 30;

const KIND_COMMIT: u8 = 1;
const KIND_RELOG: u8 = 2;
const KIND_END: u8 = 3;

/// File name of segment `n`.
pub(super) fn segment_name(n: u64) -> String {
    format!("seg-{n:016x}.log")
}

/// Parses a segment file name back to its number.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn seed(segment: u64) -> u32 {
    crc32c::crc32c(&segment.to_le_bytes())
}

/// The header of a new segment.
pub(super) fn segment_header(segment: u64, incarnation: u32) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&segment.to_le_bytes());
    h[24..32].copy_from_slice(&u64::from(incarnation).to_le_bytes());
    let crc = crc32c::crc32c(&h[0..36]);
    h[36..40].copy_from_slice(&crc.to_le_bytes());
    h
}

fn header_is_valid(bytes: &[u8], segment: u64) -> bool {
    bytes.len() >= SEGMENT_HEADER_LEN
        && &bytes[0..8] == SEGMENT_MAGIC
        && read_u32(bytes, 8) == Some(FORMAT_VERSION)
        && read_u64(bytes, 16) == Some(segment)
        && read_u32(bytes, 36) == Some(crc32c::crc32c(&bytes[0..36]))
}

/// Wraps encoded records into one batch for `segment`.
pub(super) fn encode_batch(segment: u64, records: &[u8], count: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    out.extend_from_slice(&BATCH_MAGIC.to_le_bytes());
    let len = u32::try_from(records.len()).expect("a batch is far smaller than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(seed(segment), &out), records);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(records);
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).expect("a branch name is far smaller than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_record(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    let len = u32::try_from(payload.len()).expect("a record is far smaller than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends a COMMIT record (or, with `relog`, a RELOG copy of one) to `out`.
pub(super) fn put_decision(
    out: &mut Vec<u8>,
    txn: TransactionId,
    decision: &Decision,
    relog: bool,
) {
    let mut p = Vec::with_capacity(32 + decision.branches.len() * 48);
    p.extend_from_slice(&txn.coordinator().to_le_bytes());
    p.extend_from_slice(&txn.sequence().to_le_bytes());
    p.extend_from_slice(&decision.decided_at_ms.to_le_bytes());
    let n = u32::try_from(decision.branches.len()).expect("fewer than 4 billion branches");
    p.extend_from_slice(&n.to_le_bytes());
    for b in &decision.branches {
        put_str(&mut p, &b.resource);
        match &b.branch_id {
            None => p.push(0),
            Some(id) => {
                p.push(1);
                put_str(&mut p, id);
            }
        }
    }
    put_record(out, if relog { KIND_RELOG } else { KIND_COMMIT }, &p);
}

/// Appends an END record to `out`.
pub(super) fn put_end(out: &mut Vec<u8>, txn: TransactionId) {
    let mut p = [0u8; 16];
    p[0..8].copy_from_slice(&txn.coordinator().to_le_bytes());
    p[8..16].copy_from_slice(&txn.sequence().to_le_bytes());
    put_record(out, KIND_END, &p);
}

/// A commit decision as kept in memory and on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decision {
    pub(super) branches: Vec<Branch>,
    pub(super) decided_at_ms: u64,
}

impl Decision {
    pub(super) fn now(branches: &[Branch]) -> Self {
        Self {
            branches: branches.to_vec(),
            decided_at_ms: now_ms(),
        }
    }
}

enum Record {
    Decision(TransactionId, Decision),
    End(TransactionId),
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }
    fn u32(&mut self) -> Option<u32> {
        let v = read_u32(self.b, self.at)?;
        self.at += 4;
        Some(v)
    }
    fn u64(&mut self) -> Option<u64> {
        let v = read_u64(self.b, self.at)?;
        self.at += 8;
        Some(v)
    }
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let v = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(v)
    }
    fn string(&mut self) -> Option<String> {
        let n = usize::try_from(self.u32()?).ok()?;
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }
    fn done(&self) -> bool {
        self.at == self.b.len()
    }
}

fn parse_record(kind: u8, payload: &[u8]) -> Option<Record> {
    let mut r = Reader { b: payload, at: 0 };
    let txn = TransactionId::from_parts(r.u64()?, r.u64()?);
    let record = match kind {
        KIND_COMMIT | KIND_RELOG => {
            let decided_at_ms = r.u64()?;
            let n = r.u32()?;
            let mut branches = Vec::new();
            for _ in 0..n {
                let resource = r.string()?;
                let branch_id = match r.u8()? {
                    0 => None,
                    1 => Some(r.string()?),
                    _ => return None,
                };
                branches.push(Branch {
                    resource,
                    branch_id,
                });
            }
            Record::Decision(
                txn,
                Decision {
                    branches,
                    decided_at_ms,
                },
            )
        }
        KIND_END => Record::End(txn),
        _ => return None,
    };
    r.done().then_some(record)
}

/// Parses the batch at `at`: its total length and records, or `None` if it does not check.
fn parse_batch(bytes: &[u8], at: usize, segment: u64) -> Option<(usize, Vec<Record>)> {
    if read_u32(bytes, at)? != BATCH_MAGIC {
        return None;
    }
    let len = usize::try_from(read_u32(bytes, at + 4)?).ok()?;
    let count = read_u32(bytes, at + 8)?;
    let crc = read_u32(bytes, at + 12)?;
    if len > MAX_BATCH_LEN {
        return None;
    }
    let payload = bytes.get(at + BATCH_HEADER_LEN..at + BATCH_HEADER_LEN + len)?;
    let expected = crc32c::crc32c_append(
        crc32c::crc32c_append(seed(segment), &bytes[at..at + 12]),
        payload,
    );
    if crc != expected {
        return None;
    }
    let mut r = Reader { b: payload, at: 0 };
    let mut records = Vec::new();
    for _ in 0..count {
        let kind = r.u8()?;
        let n = usize::try_from(r.u32()?).ok()?;
        records.push(parse_record(kind, r.bytes(n)?)?);
    }
    r.done().then_some((BATCH_HEADER_LEN + len, records))
}

/// A place in the log: a segment file and a byte offset in it.
///
/// # Examples
///
/// ```
/// use transaction::{FileDecisionLog, TransactionId};
///
/// let dir = std::env::temp_dir().join(format!("txlog-doc-pos-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let log = FileDecisionLog::open(&dir)?;
/// transaction::DecisionLog::record_commit(&log, TransactionId::next(), &[])?;
/// drop(log);
/// let report = FileDecisionLog::inspect(&dir)?;
/// let first = &report.batches[0].at;
/// assert!(first.path.starts_with(&dir));
/// assert_eq!(first.offset, 40); // right after the segment header
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), transaction::BoxError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogPosition {
    /// The segment's number.
    pub segment: u64,
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset in the segment file.
    pub offset: u64,
}

/// One valid batch found by a scan: what one group commit wrote.
///
/// # Examples
///
/// ```
/// use transaction::{DecisionLog, FileDecisionLog, TransactionId};
///
/// let dir = std::env::temp_dir().join(format!("txlog-doc-batch-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let log = FileDecisionLog::open(&dir)?;
/// log.record_commit(TransactionId::next(), &[])?;
/// drop(log);
/// let batch = &FileDecisionLog::inspect(&dir)?.batches[0];
/// assert_eq!(batch.records, 1);
/// assert!(batch.len > 16);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), transaction::BoxError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchInfo {
    /// Where the batch starts.
    pub at: LogPosition,
    /// Its length in bytes, header included.
    pub len: u64,
    /// How many records it holds.
    pub records: u32,
}

/// What a read of the log directory found: the open decisions and any damage.
///
/// See [`FileDecisionLog::inspect`](super::FileDecisionLog::inspect) for the rule that
/// tells a torn tail from corruption.
///
/// # Examples
///
/// ```
/// use transaction::{DecisionLog, FileDecisionLog, TransactionId};
///
/// let dir = std::env::temp_dir().join(format!("txlog-doc-insp-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let log = FileDecisionLog::open(&dir)?;
/// let txn = TransactionId::next();
/// log.record_commit(txn, &[])?;
/// drop(log);
/// let report = FileDecisionLog::inspect(&dir)?;
/// assert_eq!(report.open_decisions[0].transaction, txn);
/// assert!(report.torn_tail.is_none() && report.corruption.is_empty());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), transaction::BoxError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LogInspection {
    /// Decisions recorded (COMMIT or RELOG) and not ended, by transaction id.
    pub open_decisions: Vec<crate::DecisionRecord>,
    /// Where the last segment stops being valid, when an interrupted write left bytes
    /// that do not check and nothing valid follows them. Those bytes never held a
    /// decision that was reported durable.
    pub torn_tail: Option<LogPosition>,
    /// Each place where bytes that do not check are followed by valid data (or, in a
    /// segment other than the last, end it): damage that may have destroyed decisions.
    pub corruption: Vec<LogPosition>,
    /// Every valid batch, in log order.
    pub batches: Vec<BatchInfo>,
}

/// The result of scanning a directory's segments.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub(super) open: BTreeMap<TransactionId, Decision>,
    pub(super) torn_tail: Option<LogPosition>,
    pub(super) corruption: Vec<LogPosition>,
    pub(super) batches: Vec<BatchInfo>,
    /// Every segment found, in order, with its path.
    pub(super) segments: Vec<(u64, PathBuf)>,
}

impl Scan {
    pub(super) fn inspection(&self) -> LogInspection {
        LogInspection {
            open_decisions: self
                .open
                .iter()
                .map(|(txn, d)| crate::DecisionRecord {
                    transaction: *txn,
                    branches: d.branches.clone(),
                })
                .collect(),
            torn_tail: self.torn_tail.clone(),
            corruption: self.corruption.clone(),
            batches: self.batches.clone(),
        }
    }

    /// Segments that hold corruption.
    pub(super) fn corrupt_segments(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.corruption.iter().map(|p| p.segment).collect();
        v.dedup();
        v
    }
}

/// Lists the segment files of `dir`, in order.
pub(super) fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_name) {
            segments.push((n, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Reads every segment of `dir` and classifies what does not check.
///
/// The rule: a segment's bytes are read batch after batch. At the first batch that does
/// not check, the rest of the segment is searched, byte by byte, for a batch that does.
/// One found: corruption (a later batch is only written after the earlier one was
/// durable, so an interrupted write cannot be followed by valid data); scanning goes on
/// from there and every valid decision is kept. None found: if the bytes are all zero
/// (or absent), the segment simply ends there; otherwise, in the last segment this is a
/// torn tail (a write interrupted by a crash), in an earlier segment it is corruption
/// (segments are only left once their last batch is durable, and a torn tail is cut off
/// before a new segment is used).
pub(super) fn scan(dir: &Path) -> std::io::Result<Scan> {
    let segments = list_segments(dir)?;
    let mut out = Scan {
        segments: segments.clone(),
        ..Scan::default()
    };
    let last = segments.last().map(|(n, _)| *n);
    for (segment, path) in segments {
        let bytes = std::fs::read(&path)?;
        let pos = |offset: usize| LogPosition {
            segment,
            path: path.clone(),
            offset: offset as u64,
        };
        let is_last = Some(segment) == last;
        let mut at = SEGMENT_HEADER_LEN;
        if !header_is_valid(&bytes, segment) {
            let head = &bytes[..bytes.len().min(SEGMENT_HEADER_LEN)];
            let any_batch = find_batch(&bytes, 0, segment).is_some();
            if head.iter().all(|&b| b == 0) && !any_batch {
                // Created and never written (or cut to nothing by an earlier open).
                continue;
            }
            if is_last && !any_batch {
                out.torn_tail = Some(pos(0));
                continue;
            }
            out.corruption.push(pos(0));
        }
        while at < bytes.len() {
            if let Some((len, records)) = parse_batch(&bytes, at, segment) {
                out.batches.push(BatchInfo {
                    at: pos(at),
                    len: len as u64,
                    records: records.len() as u32,
                });
                for record in records {
                    match record {
                        Record::Decision(txn, d) => {
                            out.open.insert(txn, d);
                        }
                        Record::End(txn) => {
                            out.open.remove(&txn);
                        }
                    }
                }
                at += len;
                continue;
            }
            match find_batch(&bytes, at + 1, segment) {
                Some(next) => {
                    out.corruption.push(pos(at));
                    at = next;
                }
                None => {
                    if bytes[at..].iter().any(|&b| b != 0) {
                        if is_last {
                            out.torn_tail = Some(pos(at));
                        } else {
                            out.corruption.push(pos(at));
                        }
                    }
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// The first offset at or after `from` where a valid batch starts.
fn find_batch(bytes: &[u8], from: usize, segment: u64) -> Option<usize> {
    let magic = BATCH_MAGIC.to_le_bytes();
    (from..bytes.len().saturating_sub(BATCH_HEADER_LEN - 1))
        .find(|&at| bytes[at..at + 4] == magic && parse_batch(bytes, at, segment).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_round_trips_through_a_batch() {
        let txn = TransactionId::from_parts(7, 9);
        let d = Decision {
            branches: vec![
                Branch {
                    resource: "orders".into(),
                    branch_id: Some("g:1".into()),
                },
                Branch {
                    resource: "stock".into(),
                    branch_id: None,
                },
            ],
            decided_at_ms: 42,
        };
        let mut records = Vec::new();
        put_decision(&mut records, txn, &d, false);
        put_end(&mut records, TransactionId::from_parts(1, 2));
        let mut bytes = segment_header(3, 1).to_vec();
        bytes.extend(encode_batch(3, &records, 2));
        let (len, parsed) = parse_batch(&bytes, SEGMENT_HEADER_LEN, 3).expect("valid batch");
        assert_eq!(len, bytes.len() - SEGMENT_HEADER_LEN);
        assert!(matches!(&parsed[0], Record::Decision(t, got) if *t == txn && *got == d));
        assert!(matches!(parsed[1], Record::End(t) if t == TransactionId::from_parts(1, 2)));
        // The same bytes do not check in another segment.
        assert!(parse_batch(&bytes, SEGMENT_HEADER_LEN, 4).is_none());
        assert!(header_is_valid(&bytes, 3) && !header_is_valid(&bytes, 4));
    }

    #[test]
    fn segment_names_parse_exactly() {
        assert_eq!(parse_segment_name(&segment_name(0xab)), Some(0xab));
        assert_eq!(parse_segment_name("seg-00ab.log"), None);
        assert_eq!(parse_segment_name("seg-00000000000000ab.corrupt"), None);
    }
}
