//! The on-disk store-and-forward buffer of a device: an append-only log of telemetry messages
//! (`telemetry.sfb`) and an acknowledgement pointer (`acked`), both in one directory.
//!
//! A message is appended (and, by default, fdatasynced) before it is sent; once the server's
//! PUBACK for it arrives it is acknowledged, and the log is truncated or compacted when the
//! acknowledged prefix is large. The buffer is bounded by size: appending past the bound drops the
//! **oldest** unacknowledged messages (counted in [`BufferStats::dropped_messages`] and
//! `dropped_points`). Opening a log whose tail was torn by a crash truncates it at the last whole,
//! checksummed record. The byte layout is documented in `docs/format.md`.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File magic of the log: `STRATASF`.
pub const MAGIC: &[u8; 8] = b"STRATASF";
/// Format version in the log header.
pub const VERSION: u32 = 1;
/// Log header bytes: magic, version, CRC-32C of the previous 12 bytes.
pub const HEADER_LEN: u64 = 16;
/// Record header bytes: length, CRC-32C, sequence number, point count.
pub const RECORD_HEADER_LEN: usize = 20;
/// Largest payload of one record; a longer length field marks a torn or corrupt tail.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

const LOG_FILE: &str = "telemetry.sfb";
const ACK_FILE: &str = "acked";
/// Acknowledgements between two writes of the `acked` file.
const ACK_EVERY: u64 = 64;

/// Errors of the buffer.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// A file operation failed.
    #[error("store-and-forward buffer {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The log file does not start with the buffer's magic and version.
    #[error("{0} is not a Strata store-and-forward buffer (bad header)")]
    NotABuffer(PathBuf),
    /// Another process (or another open `Buffer`) uses this buffer directory.
    #[error("store-and-forward buffer {0} is in use by another device connection")]
    Locked(PathBuf),
    /// One message is larger than the buffer (or [`MAX_RECORD_BYTES`]).
    #[error("message of {size} bytes does not fit a buffer of {limit} bytes")]
    TooLarge {
        /// The message size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// One buffered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Sequence number: strictly increasing within a buffer, never reused.
    pub seq: u64,
    /// Points in the message.
    pub points: u32,
    /// The message payload (line protocol).
    pub payload: Vec<u8>,
}

impl Record {
    fn disk_len(&self) -> u64 {
        (RECORD_HEADER_LEN + self.payload.len()) as u64
    }
}

/// Counters of a buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    /// Messages waiting for their acknowledgement.
    pub pending_messages: u64,
    /// Points in those messages.
    pub pending_points: u64,
    /// Bytes of those messages on disk (record headers included).
    pub pending_bytes: u64,
    /// Messages dropped by the size bound (oldest first) since the buffer was opened.
    pub dropped_messages: u64,
    /// Points in those messages.
    pub dropped_points: u64,
    /// Bytes cut off a torn or corrupt tail when the buffer was opened.
    pub truncated_bytes: u64,
    /// Messages given up because the server kept closing the connection on them (see
    /// [`Buffer::discard`]).
    pub rejected_messages: u64,
    /// Points in those messages.
    pub rejected_points: u64,
}

/// The store-and-forward buffer.
#[derive(Debug)]
pub struct Buffer {
    dir: PathBuf,
    log: File,
    /// Bytes in the log file (header included).
    log_len: u64,
    /// Disk bytes of the records in `records` (acknowledged ones after a gap included).
    records_bytes: u64,
    /// Every record with `seq > acked_through`... and some acknowledged ones after a gap.
    records: VecDeque<Record>,
    /// Acknowledged sequence numbers above `acked_through` (acknowledgements out of order).
    acked_above: BTreeSet<u64>,
    /// Every record with `seq <= acked_through` is acknowledged or dropped.
    acked_through: u64,
    /// The `acked_through` last written to the `acked` file.
    acked_written: u64,
    next_seq: u64,
    max_bytes: u64,
    sync: bool,
    stats: BufferStats,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BufferError + '_ {
    move |source| BufferError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The 16-byte log header.
pub fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Encodes one record: `len u32 | crc u32 | seq u64 | points u32 | payload`, all little-endian;
/// the CRC-32C covers `seq | points | payload`.
pub fn encode_record(seq: u64, points: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&points.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes the records of a log body (the bytes after the header). Returns the records and the
/// length of the valid prefix: decoding stops at the first incomplete record, a length above
/// [`MAX_RECORD_BYTES`], a CRC mismatch or a sequence number not above the previous one.
pub fn decode_records(body: &[u8]) -> (Vec<Record>, usize) {
    let mut records: Vec<Record> = Vec::new();
    let mut at = 0;
    while let Some(rec) = decode_one(&body[at..]) {
        if records.last().is_some_and(|last| rec.seq <= last.seq) {
            break;
        }
        at += RECORD_HEADER_LEN + rec.payload.len();
        records.push(rec);
    }
    (records, at)
}

fn decode_one(b: &[u8]) -> Option<Record> {
    let head = b.get(..RECORD_HEADER_LEN)?;
    let len = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let covered = b.get(8..RECORD_HEADER_LEN + len)?;
    if crc32c::crc32c(covered) != crc {
        return None;
    }
    Some(Record {
        seq: u64::from_le_bytes(head[8..16].try_into().ok()?),
        points: u32::from_le_bytes(head[16..20].try_into().ok()?),
        payload: b[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len].to_vec(),
    })
}

/// Encodes the 12-byte acknowledgement pointer: `acked_through u64 | crc u32`.
pub fn encode_ack(acked_through: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&acked_through.to_le_bytes());
    let crc = crc32c::crc32c(&b[..8]);
    b[8..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes an acknowledgement pointer; `None` when torn or corrupt (then nothing counts as
/// acknowledged, and the whole log is sent again: duplicates, never a loss).
pub fn decode_ack(b: &[u8]) -> Option<u64> {
    if b.len() != 12 {
        return None;
    }
    let v = u64::from_le_bytes(b[..8].try_into().ok()?);
    let crc = u32::from_le_bytes(b[8..].try_into().ok()?);
    (crc32c::crc32c(&b[..8]) == crc).then_some(v)
}

impl Buffer {
    /// Opens (or creates) the buffer in `dir`, bounded by `max_bytes` of pending records.
    /// `sync`: fdatasync every append (a power loss cannot lose a buffered message).
    pub fn open(dir: &Path, max_bytes: u64, sync: bool) -> Result<Buffer, BufferError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOG_FILE);
        let mut log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        // An exclusive lock for as long as the file is open: two writers would interleave records.
        if log.try_lock().is_err() {
            return Err(BufferError::Locked(path));
        }
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let acked_through = std::fs::read(dir.join(ACK_FILE))
            .ok()
            .and_then(|b| decode_ack(&b))
            .unwrap_or(0);
        let mut truncated = 0;
        let (records, valid) = if bytes.len() < HEADER_LEN as usize {
            // New, or torn while the header was written: start over.
            truncated = bytes.len() as u64;
            log.set_len(0).map_err(io_err(&path))?;
            log.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
            log.write_all(&header()).map_err(io_err(&path))?;
            log.sync_data().map_err(io_err(&path))?;
            (Vec::new(), HEADER_LEN)
        } else if bytes[..HEADER_LEN as usize] != header() {
            return Err(BufferError::NotABuffer(path));
        } else {
            let (records, valid) = decode_records(&bytes[HEADER_LEN as usize..]);
            let valid = HEADER_LEN + valid as u64;
            if valid < bytes.len() as u64 {
                truncated = bytes.len() as u64 - valid;
                log.set_len(valid).map_err(io_err(&path))?;
                log.sync_data().map_err(io_err(&path))?;
            }
            (records, valid)
        };
        let next_seq = records
            .last()
            .map_or(acked_through, |r| r.seq.max(acked_through))
            + 1;
        let records: VecDeque<Record> = records
            .into_iter()
            .filter(|r| r.seq > acked_through)
            .collect();
        let mut buf = Buffer {
            dir: dir.to_owned(),
            log,
            log_len: valid,
            records_bytes: 0,
            records,
            acked_above: BTreeSet::new(),
            acked_through,
            acked_written: acked_through,
            next_seq,
            max_bytes,
            sync,
            stats: BufferStats {
                truncated_bytes: truncated,
                ..BufferStats::default()
            },
        };
        buf.recount();
        buf.maybe_compact()?;
        Ok(buf)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// Recomputes the pending counters (at open; afterwards they are kept incrementally).
    fn recount(&mut self) {
        self.records_bytes = self.records.iter().map(Record::disk_len).sum();
        let live = self
            .records
            .iter()
            .filter(|r| !self.acked_above.contains(&r.seq));
        let (mut m, mut p, mut b) = (0, 0, 0);
        for r in live {
            m += 1;
            p += u64::from(r.points);
            b += r.disk_len();
        }
        self.stats.pending_messages = m;
        self.stats.pending_points = p;
        self.stats.pending_bytes = b;
    }

    /// Appends a message of `points` points; drops the oldest pending messages first when it
    /// would not fit. Returns its sequence number.
    pub fn append(&mut self, points: u32, payload: &[u8]) -> Result<u64, BufferError> {
        let size = RECORD_HEADER_LEN + payload.len();
        if size as u64 > self.max_bytes || payload.len() > MAX_RECORD_BYTES {
            return Err(BufferError::TooLarge {
                size,
                limit: self.max_bytes.min(MAX_RECORD_BYTES as u64) as usize,
            });
        }
        while self.stats.pending_bytes + size as u64 > self.max_bytes {
            self.drop_oldest()?;
        }
        let seq = self.next_seq;
        let bytes = encode_record(seq, points, payload);
        let path = self.log_path();
        self.log
            .seek(SeekFrom::Start(self.log_len))
            .map_err(io_err(&path))?;
        self.log.write_all(&bytes).map_err(io_err(&path))?;
        if self.sync {
            self.log.sync_data().map_err(io_err(&path))?;
        }
        self.log_len += bytes.len() as u64;
        self.next_seq += 1;
        let rec = Record {
            seq,
            points,
            payload: payload.to_vec(),
        };
        self.count(&rec, true);
        self.records_bytes += rec.disk_len();
        self.records.push_back(rec);
        Ok(seq)
    }

    /// Adds (`up`) or removes a record from the pending counters.
    fn count(&mut self, rec: &Record, up: bool) {
        let s = &mut self.stats;
        let (m, p, b) = (1, u64::from(rec.points), rec.disk_len());
        if up {
            s.pending_messages += m;
            s.pending_points += p;
            s.pending_bytes += b;
        } else {
            s.pending_messages -= m;
            s.pending_points -= p;
            s.pending_bytes -= b;
        }
    }

    fn pop_front(&mut self) -> Option<Record> {
        let rec = self.records.pop_front()?;
        self.records_bytes -= rec.disk_len();
        Some(rec)
    }

    fn drop_oldest(&mut self) -> Result<(), BufferError> {
        let Some(rec) = self.pop_front() else {
            return Ok(());
        };
        if !self.acked_above.remove(&rec.seq) {
            self.count(&rec, false);
            self.stats.dropped_messages += 1;
            self.stats.dropped_points += u64::from(rec.points);
        }
        self.acked_through = rec.seq;
        self.advance()
    }

    /// Marks message `seq` acknowledged (idempotent).
    pub fn ack(&mut self, seq: u64) -> Result<(), BufferError> {
        if seq <= self.acked_through {
            return Ok(());
        }
        let Ok(i) = self.records.binary_search_by_key(&seq, |r| r.seq) else {
            return Ok(());
        };
        if !self.acked_above.insert(seq) {
            return Ok(());
        }
        let rec = self.records[i].clone();
        self.count(&rec, false);
        self.advance()
    }

    /// Gives up message `seq` (the server refuses it: it would block the buffer forever);
    /// counted in `rejected_messages` / `rejected_points`.
    pub fn discard(&mut self, seq: u64) -> Result<(), BufferError> {
        if let Ok(i) = self.records.binary_search_by_key(&seq, |r| r.seq)
            && !self.acked_above.contains(&seq)
        {
            self.stats.rejected_messages += 1;
            self.stats.rejected_points += u64::from(self.records[i].points);
        }
        self.ack(seq)
    }

    /// Moves `acked_through` over the acknowledged prefix, persists it, compacts when worth it.
    fn advance(&mut self) -> Result<(), BufferError> {
        while let Some(front) = self.records.front() {
            let seq = front.seq;
            if seq <= self.acked_through {
                self.pop_front();
            } else if self.acked_above.remove(&seq) {
                self.acked_through = seq;
                self.pop_front();
            } else {
                break;
            }
        }
        // The pointer is persisted every ACK_EVERY acknowledgements (and when the log empties,
        // and on drop): a crash of the device repeats at most that many messages.
        if self.acked_through >= self.acked_written + ACK_EVERY {
            self.write_ack()?;
        }
        self.maybe_compact()
    }

    fn write_ack(&mut self) -> Result<(), BufferError> {
        if self.acked_written == self.acked_through {
            return Ok(());
        }
        self.acked_written = self.acked_through;
        let tmp = self.dir.join("acked.tmp");
        std::fs::write(&tmp, encode_ack(self.acked_through)).map_err(io_err(&tmp))?;
        let dst = self.dir.join(ACK_FILE);
        std::fs::rename(&tmp, &dst).map_err(io_err(&dst))
    }

    /// Empties the log when nothing is pending; rewrites it with the pending records when the
    /// acknowledged part is over 1 MiB and larger than the pending part.
    fn maybe_compact(&mut self) -> Result<(), BufferError> {
        let live = self.records_bytes;
        let dead = self.log_len.saturating_sub(HEADER_LEN + live);
        if self.records.is_empty() && self.log_len > HEADER_LEN {
            let path = self.log_path();
            self.write_ack()?;
            self.log.set_len(HEADER_LEN).map_err(io_err(&path))?;
            self.log_len = HEADER_LEN;
        } else if dead > (1 << 20) && dead > live {
            self.rewrite()?;
        }
        Ok(())
    }

    fn rewrite(&mut self) -> Result<(), BufferError> {
        let tmp = self.dir.join("telemetry.sfb.tmp");
        let mut out = header().to_vec();
        for r in &self.records {
            out.extend_from_slice(&encode_record(r.seq, r.points, &r.payload));
        }
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&out).map_err(io_err(&tmp))?;
        f.sync_data().map_err(io_err(&tmp))?;
        let path = self.log_path();
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        self.log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // The renamed file is a new inode: take its lock (nobody else can know it yet).
        let _ = self.log.try_lock();
        self.log_len = out.len() as u64;
        Ok(())
    }

    /// The first pending (unacknowledged) record with `seq >= from`.
    pub fn next_pending(&self, from: u64) -> Option<Record> {
        let start = self.records.partition_point(|r| r.seq < from);
        self.records
            .range(start..)
            .find(|r| !self.acked_above.contains(&r.seq))
            .cloned()
    }

    /// The lowest pending sequence number (or the next one to be assigned).
    pub fn first_pending(&self) -> u64 {
        self.next_pending(0).map_or(self.next_seq, |r| r.seq)
    }

    /// Counters.
    pub fn stats(&self) -> BufferStats {
        self.stats
    }

    /// Every pending record, oldest first.
    pub fn pending(&self) -> Vec<Record> {
        self.records
            .iter()
            .filter(|r| !self.acked_above.contains(&r.seq))
            .cloned()
            .collect()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // Best effort: without it the unpersisted acknowledgements are merely sent again.
        let _ = self.write_ack();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payloads(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("m v={i}i {i}").into_bytes())
            .collect()
    }

    #[test]
    fn reopen_keeps_unacknowledged_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Buffer::open(dir.path(), 1 << 20, false).unwrap();
        for p in payloads(5) {
            b.append(1, &p).unwrap();
        }
        b.ack(1).unwrap();
        b.ack(3).unwrap();
        drop(b);
        let b = Buffer::open(dir.path(), 1 << 20, false).unwrap();
        let seqs: Vec<u64> = b.pending().iter().map(|r| r.seq).collect();
        // 3 was acknowledged out of order: not persisted, so it is sent again (a duplicate).
        assert_eq!(seqs, vec![2, 3, 4, 5]);
        assert_eq!(b.next_seq, 6);
    }

    #[test]
    fn all_acknowledged_truncates_the_log_and_keeps_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Buffer::open(dir.path(), 1 << 20, false).unwrap();
        for p in payloads(3) {
            b.append(2, &p).unwrap();
        }
        for s in 1..=3 {
            b.ack(s).unwrap();
        }
        assert_eq!(b.log_len, HEADER_LEN);
        drop(b);
        let mut b = Buffer::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!(b.append(1, b"x v=1i 1").unwrap(), 4);
    }

    #[test]
    fn the_size_bound_drops_the_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let one = (RECORD_HEADER_LEN + 10) as u64;
        let mut b = Buffer::open(dir.path(), 3 * one, false).unwrap();
        for i in 0..5u8 {
            b.append(2, &[b'a' + i; 10]).unwrap();
        }
        let s = b.stats();
        assert_eq!((s.dropped_messages, s.dropped_points), (2, 4));
        let seqs: Vec<u64> = b.pending().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert!(matches!(
            b.append(1, &[0; 200]),
            Err(BufferError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_buffer_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Buffer::open(dir.path(), 1 << 20, false).unwrap();
        assert!(matches!(
            Buffer::open(dir.path(), 1 << 20, false),
            Err(BufferError::Locked(_))
        ));
        drop(first);
        Buffer::open(dir.path(), 1 << 20, false).unwrap();
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_FILE), b"hello, this is not a buffer").unwrap();
        assert!(matches!(
            Buffer::open(dir.path(), 1 << 20, false),
            Err(BufferError::NotABuffer(_))
        ));
    }

    proptest! {
        /// Appends, acknowledgements in any order (repeats and unknown numbers included) and the
        /// size bound keep the counters equal to a recount, and a reopen keeps exactly the
        /// records not acknowledged through the persisted pointer.
        #[test]
        fn counters_follow_appends_and_acks(ops in proptest::collection::vec((any::<bool>(), 0u64..40), 1..120)) {
            let dir = tempfile::tempdir().unwrap();
            let mut b = Buffer::open(dir.path(), 600, false).unwrap();
            for (append, n) in ops {
                if append {
                    b.append((n % 5) as u32 + 1, &vec![b'x'; n as usize]).unwrap();
                } else {
                    b.ack(n).unwrap();
                }
                let before = b.stats();
                b.recount();
                prop_assert_eq!(before, b.stats());
                prop_assert!(b.stats().pending_bytes <= 600);
            }
            let pending: Vec<u64> = b.pending().iter().map(|r| r.seq).collect();
            let through = b.acked_through;
            drop(b);
            let b = Buffer::open(dir.path(), 600, false).unwrap();
            let reopened: Vec<u64> = b.pending().iter().map(|r| r.seq).collect();
            // Out-of-order acknowledgements above the pointer are not persisted: sent again.
            prop_assert!(reopened.iter().all(|s| *s > through));
            prop_assert!(pending.iter().all(|s| reopened.contains(s)));
        }

        /// Any cut of the log (a crash mid-append) reopens without a panic and keeps exactly the
        /// whole records before the cut.
        #[test]
        fn a_torn_tail_is_truncated(n in 1usize..20, cut_back in 1usize..200) {
            let dir = tempfile::tempdir().unwrap();
            let mut b = Buffer::open(dir.path(), 1 << 20, false).unwrap();
            let ps = payloads(n);
            for p in &ps {
                b.append(1, p).unwrap();
            }
            drop(b);
            let path = dir.path().join(LOG_FILE);
            let full = std::fs::read(&path).unwrap();
            let cut = full.len().saturating_sub(cut_back).max(1);
            std::fs::write(&path, &full[..cut]).unwrap();
            let b = Buffer::open(dir.path(), 1 << 20, false).unwrap();
            let mut end = HEADER_LEN as usize;
            let mut whole = 0;
            for p in &ps {
                if end + RECORD_HEADER_LEN + p.len() <= cut {
                    end += RECORD_HEADER_LEN + p.len();
                    whole += 1;
                }
            }
            let kept: Vec<Vec<u8>> = b.pending().into_iter().map(|r| r.payload).collect();
            prop_assert_eq!(&kept[..], &ps[..whole]);
            prop_assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, end.max(HEADER_LEN as usize));
        }

        /// Arbitrary bytes after a valid header (corruption, garbage) never panic, and whatever
        /// decodes is in strictly increasing order.
        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let dir = tempfile::tempdir().unwrap();
            let mut bytes = header().to_vec();
            bytes.extend_from_slice(&body);
            std::fs::write(dir.path().join(LOG_FILE), &bytes).unwrap();
            let b = Buffer::open(dir.path(), 1 << 20, false).unwrap();
            let seqs: Vec<u64> = b.pending().iter().map(|r| r.seq).collect();
            prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        }

        /// A flipped byte inside a record body is detected by the CRC: that record and everything
        /// after it are cut, the records before it survive.
        #[test]
        fn a_flipped_byte_cuts_from_that_record(n in 2usize..10, victim in 0usize..10, bit in 0u8..8) {
            let victim = victim % n;
            let dir = tempfile::tempdir().unwrap();
            let mut b = Buffer::open(dir.path(), 1 << 20, false).unwrap();
            let ps = payloads(n);
            for p in &ps {
                b.append(1, p).unwrap();
            }
            drop(b);
            let path = dir.path().join(LOG_FILE);
            let mut bytes = std::fs::read(&path).unwrap();
            let mut at = HEADER_LEN as usize;
            for p in &ps[..victim] {
                at += RECORD_HEADER_LEN + p.len();
            }
            bytes[at + RECORD_HEADER_LEN] ^= 1 << bit;
            std::fs::write(&path, &bytes).unwrap();
            let b = Buffer::open(dir.path(), 1 << 20, false).unwrap();
            prop_assert_eq!(b.pending().len(), victim);
            prop_assert!(b.stats().truncated_bytes > 0);
        }
    }
}
