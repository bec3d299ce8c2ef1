//! The WAL's on-disk format: the file header, record framing, and [`scan_file`], a pure decoder
//! that never panics on any input and reports exactly where and why a file stops being intact.
//!
//! All integers are little-endian. See `docs/wal.md` for the byte-by-byte layout.

use std::fmt;

/// The first eight bytes of every WAL file.
pub const MAGIC: [u8; 8] = *b"STRATAWL";
/// The format version written by this build (and the only one it reads).
pub const FORMAT_VERSION: u32 = 1;
/// Length of the file header in bytes.
pub const FILE_HEADER_LEN: usize = 32;
/// Length of a record's frame header (length, CRC, sequence number) in bytes.
pub const RECORD_HEADER_LEN: usize = 16;
/// The largest payload one record may carry (256 MiB).
pub const MAX_RECORD_BYTES: usize = 256 << 20;

/// The decoded header of a WAL file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// The file's id (also in its name).
    pub file_id: u64,
    /// No record in this file has a smaller sequence number, and every record in earlier files
    /// has a smaller one. Keeps sequence numbers increasing after all older files are deleted.
    pub base_seq: u64,
}

impl FileHeader {
    /// Encodes the header: magic, version, file id, base sequence number, CRC32C of the rest.
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut out = [0u8; FILE_HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&self.file_id.to_le_bytes());
        out[20..28].copy_from_slice(&self.base_seq.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates a header from the start of `data`.
    pub fn decode(data: &[u8]) -> Result<FileHeader, DamageKind> {
        let Some(bytes) = data.get(..FILE_HEADER_LEN) else {
            return Err(DamageKind::ShortHeader { len: data.len() });
        };
        let magic: [u8; 8] = array(&bytes[0..8]);
        if magic != MAGIC {
            return Err(DamageKind::BadMagic { found: magic });
        }
        let stored = u32::from_le_bytes(array(&bytes[28..32]));
        let computed = crc32c::crc32c(&bytes[0..28]);
        if stored != computed {
            return Err(DamageKind::HeaderChecksum { stored, computed });
        }
        let version = u32::from_le_bytes(array(&bytes[8..12]));
        if version != FORMAT_VERSION {
            return Err(DamageKind::UnsupportedVersion(version));
        }
        Ok(FileHeader {
            file_id: u64::from_le_bytes(array(&bytes[12..20])),
            base_seq: u64::from_le_bytes(array(&bytes[20..28])),
        })
    }
}

/// Copies a slice whose length the caller has already checked into a fixed-size array.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// CRC32C over the sequence number (8 bytes, little-endian) followed by the payload.
pub fn record_crc(seq: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload)
}

/// Appends one framed record to `buf`. The caller checks `payload.len() <= MAX_RECORD_BYTES`.
pub fn encode_record(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.reserve(RECORD_HEADER_LEN + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&record_crc(seq, payload).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// What is wrong with a WAL file at the point where it stops being intact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DamageKind {
    /// The file is shorter than its header (a crash while the file was being created).
    #[error("file is {len} bytes, shorter than the {FILE_HEADER_LEN}-byte header")]
    ShortHeader {
        /// Length of the file.
        len: usize,
    },
    /// The file does not start with the WAL magic.
    #[error("bad magic {found:02x?} (expected \"STRATAWL\")")]
    BadMagic {
        /// The first eight bytes found.
        found: [u8; 8],
    },
    /// The header checksum does not match.
    #[error("header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the header bytes.
        computed: u32,
    },
    /// The header is intact but names a format version this build cannot read.
    #[error("unsupported WAL format version {0} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    /// The header names a different file id than the file name.
    #[error("header says file id {found} but the file name says {expected}")]
    FileIdMismatch {
        /// Id from the file name.
        expected: u64,
        /// Id from the header.
        found: u64,
    },
    /// Fewer bytes remain than a record header needs (torn write).
    #[error("torn record header: {remaining} bytes remain, {RECORD_HEADER_LEN} needed")]
    TornRecordHeader {
        /// Bytes left in the file.
        remaining: usize,
    },
    /// The length field exceeds [`MAX_RECORD_BYTES`].
    #[error("record length {len} exceeds the maximum of {MAX_RECORD_BYTES} bytes")]
    AbsurdLength {
        /// The length field.
        len: u32,
    },
    /// The payload runs past the end of the file (torn write).
    #[error("torn record: payload of {len} bytes but only {remaining} bytes remain")]
    TornPayload {
        /// The length field.
        len: u32,
        /// Payload bytes left in the file.
        remaining: usize,
    },
    /// The record's checksum does not match its sequence number and payload.
    #[error("record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch {
        /// CRC stored in the record.
        stored: u32,
        /// CRC computed over sequence number and payload.
        computed: u32,
    },
    /// The record's sequence number is not above everything before it.
    #[error("sequence number {seq} is out of order (the lowest allowed here is {min})")]
    SeqOutOfOrder {
        /// The record's sequence number.
        seq: u64,
        /// The smallest sequence number allowed at this position.
        min: u64,
    },
}

impl DamageKind {
    /// True when the damage is in the file header (no record of the file can be trusted).
    pub fn is_header_damage(&self) -> bool {
        matches!(
            self,
            DamageKind::ShortHeader { .. }
                | DamageKind::BadMagic { .. }
                | DamageKind::HeaderChecksum { .. }
                | DamageKind::UnsupportedVersion(_)
                | DamageKind::FileIdMismatch { .. }
        )
    }
}

/// Where a file stops being intact, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first damaged byte (start of the bad header or record).
    pub offset: u64,
    /// What is wrong there.
    pub kind: DamageKind,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte offset {}", self.kind, self.offset)
    }
}

/// One intact record found by [`scan_file`], borrowing its payload from the scanned bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedRecord<'a> {
    /// Byte offset of the record's frame header in the file.
    pub offset: u64,
    /// The record's sequence number.
    pub seq: u64,
    /// The payload.
    pub payload: &'a [u8],
}

/// The result of decoding one WAL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileScan<'a> {
    /// The header, when it is intact.
    pub header: Option<FileHeader>,
    /// The intact records before the first damage, in file order.
    pub records: Vec<ScannedRecord<'a>>,
    /// Length of the intact prefix (header and intact records); 0 when the header is damaged.
    pub valid_len: u64,
    /// The first damage found, if any. Everything from `damage.offset` on is ignored.
    pub damage: Option<Damage>,
}

/// Decodes a whole WAL file. Never panics, whatever `data` holds.
///
/// `expected_file_id` is the id from the file name, checked against the header when given.
/// `previous_seq` is the last sequence number of earlier files (0 if none): every record must have
/// a larger one, at least the header's base sequence number, and larger than the record before it.
pub fn scan_file(data: &[u8], expected_file_id: Option<u64>, previous_seq: u64) -> FileScan<'_> {
    let header = match check_header(data, expected_file_id) {
        Ok(header) => header,
        Err(kind) => {
            let damage = Some(Damage { offset: 0, kind });
            return FileScan {
                header: None,
                records: Vec::new(),
                valid_len: 0,
                damage,
            };
        }
    };
    let min_seq = previous_seq.saturating_add(1).max(header.base_seq);
    let run = scan_records(data, FILE_HEADER_LEN, min_seq);
    FileScan {
        header: Some(header),
        records: run.records,
        valid_len: run.end as u64,
        damage: run.damage,
    }
}

/// Intact records read from one offset up to the first damage (or the end of the data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRun<'a> {
    /// The records, in file order.
    pub records: Vec<ScannedRecord<'a>>,
    /// Offset just past the last intact record (where the damage starts, if any).
    pub end: usize,
    /// The damage that stopped the run, if any.
    pub damage: Option<Damage>,
}

/// Decodes records from `start` until the end of `data` or the first damage. Every record must
/// have a sequence number of at least `min_seq` and above the record before it. Never panics.
pub fn scan_records(data: &[u8], start: usize, mut min_seq: u64) -> RecordRun<'_> {
    let mut records = Vec::new();
    let mut offset = start.min(data.len());
    let damage = loop {
        if offset == data.len() {
            break None;
        }
        match decode_record(data, offset, min_seq) {
            Ok((record, next)) => {
                min_seq = record.seq.saturating_add(1);
                records.push(record);
                offset = next;
            }
            Err(kind) => {
                break Some(Damage {
                    offset: offset as u64,
                    kind,
                });
            }
        }
    };
    RecordRun {
        records,
        end: offset,
        damage,
    }
}

/// Sequence numbers more than this far above the last intact one are not taken for a record
/// when resynchronising (keeps the search from computing a CRC at every byte of garbage).
const RESYNC_SEQ_WINDOW: u64 = 1 << 32;

/// Finds the first offset at or after `from` where an intact record with a sequence number of at
/// least `min_seq` starts (frames are checksummed, so a match is a record, not chance), or `None`
/// when no intact record follows: the damage is a torn or corrupt tail. Never panics.
pub fn resync(data: &[u8], from: usize, min_seq: u64) -> Option<usize> {
    let last_start = data.len().checked_sub(RECORD_HEADER_LEN)?;
    (from..=last_start).find(|&offset| {
        let head = &data[offset..offset + RECORD_HEADER_LEN];
        let len = u32::from_le_bytes(array(&head[0..4])) as usize;
        let seq = u64::from_le_bytes(array(&head[8..16]));
        let plausible = len <= data.len() - offset - RECORD_HEADER_LEN
            && seq >= min_seq
            && seq - min_seq < RESYNC_SEQ_WINDOW;
        plausible && decode_record(data, offset, min_seq).is_ok()
    })
}

/// Decodes the header and checks it against the file name's id.
fn check_header(data: &[u8], expected_file_id: Option<u64>) -> Result<FileHeader, DamageKind> {
    let header = FileHeader::decode(data)?;
    match expected_file_id {
        Some(expected) if expected != header.file_id => Err(DamageKind::FileIdMismatch {
            expected,
            found: header.file_id,
        }),
        _ => Ok(header),
    }
}

/// Decodes the record starting at `offset`; returns it and the offset just past it.
fn decode_record(
    data: &[u8],
    offset: usize,
    min_seq: u64,
) -> Result<(ScannedRecord<'_>, usize), DamageKind> {
    let rest = data.get(offset..).unwrap_or_default();
    let Some(head) = rest.get(..RECORD_HEADER_LEN) else {
        return Err(DamageKind::TornRecordHeader {
            remaining: rest.len(),
        });
    };
    let len = u32::from_le_bytes(array(&head[0..4]));
    let stored = u32::from_le_bytes(array(&head[4..8]));
    let seq = u64::from_le_bytes(array(&head[8..16]));
    let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
    if len_usize > MAX_RECORD_BYTES {
        return Err(DamageKind::AbsurdLength { len });
    }
    let body = &rest[RECORD_HEADER_LEN..];
    let Some(payload) = body.get(..len_usize) else {
        return Err(DamageKind::TornPayload {
            len,
            remaining: body.len(),
        });
    };
    let computed = record_crc(seq, payload);
    if stored != computed {
        return Err(DamageKind::ChecksumMismatch { stored, computed });
    }
    // u64::MAX is reserved so that "last sequence number + 1" never overflows.
    if seq < min_seq || seq == u64::MAX {
        return Err(DamageKind::SeqOutOfOrder { seq, min: min_seq });
    }
    let record = ScannedRecord {
        offset: offset as u64,
        seq,
        payload,
    };
    Ok((record, offset + RECORD_HEADER_LEN + len_usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = FileHeader {
            file_id: 7,
            base_seq: 1,
        }
        .encode()
        .to_vec();
        for (seq, payload) in records {
            encode_record(&mut out, *seq, payload);
        }
        out
    }

    #[test]
    fn header_round_trips() {
        let header = FileHeader {
            file_id: 42,
            base_seq: 1000,
        };
        assert_eq!(FileHeader::decode(&header.encode()), Ok(header));
    }

    #[test]
    fn scan_reads_all_records_of_an_intact_file() {
        let data = file(&[(1, b"a"), (2, b""), (5, b"ccc")]);
        let scan = scan_file(&data, Some(7), 0);
        assert_eq!(scan.damage, None);
        assert_eq!(scan.valid_len, data.len() as u64);
        let seqs: Vec<u64> = scan.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 5]);
        assert_eq!(scan.records[2].payload, b"ccc");
        assert_eq!(
            scan.records[1].offset,
            (FILE_HEADER_LEN + RECORD_HEADER_LEN + 1) as u64
        );
    }

    #[test]
    fn out_of_order_sequence_numbers_stop_the_scan() {
        let data = file(&[(3, b"a"), (3, b"b")]);
        let scan = scan_file(&data, Some(7), 0);
        assert_eq!(scan.records.len(), 1);
        let damage = scan.damage.expect("damage");
        assert_eq!(damage.kind, DamageKind::SeqOutOfOrder { seq: 3, min: 4 });
        let scan = scan_file(&data, Some(7), 10);
        assert!(scan.records.is_empty());
        assert_eq!(scan.valid_len, FILE_HEADER_LEN as u64);
    }

    #[test]
    fn header_problems_are_reported_at_offset_zero() {
        let data = file(&[(1, b"a")]);
        let scan = scan_file(&data, Some(8), 0);
        let damage = scan.damage.expect("damage");
        assert_eq!(
            damage.kind,
            DamageKind::FileIdMismatch {
                expected: 8,
                found: 7
            }
        );
        assert_eq!((damage.offset, scan.valid_len), (0, 0));
        assert!(matches!(
            scan_file(&data[..10], None, 0).damage.map(|d| d.kind),
            Some(DamageKind::ShortHeader { len: 10 })
        ));
    }

    #[test]
    fn resync_finds_the_next_intact_record_after_damage() {
        let mut data = file(&[(1, b"aaaa"), (2, b"bbbb"), (3, b"cccc")]);
        let second = FILE_HEADER_LEN + RECORD_HEADER_LEN + 4;
        let third = second + RECORD_HEADER_LEN + 4;
        data[second + RECORD_HEADER_LEN + 1] ^= 0xff;
        let scan = scan_file(&data, Some(7), 0);
        assert_eq!(scan.records.len(), 1);
        let damage = scan.damage.expect("damage");
        assert_eq!(damage.offset, second as u64);
        assert_eq!(resync(&data, second + 1, 2), Some(third));
        let run = scan_records(&data, third, 2);
        assert_eq!(run.records.len(), 1);
        assert_eq!(run.records[0].payload, b"cccc");
        assert_eq!((run.end, run.damage), (data.len(), None));
        // A torn tail has nothing intact after it.
        assert_eq!(resync(&data[..third + 5], second + 1, 2), None);
        assert_eq!(resync(&data, data.len(), 1), None);
        assert_eq!(resync(&[], 0, 1), None);
    }

    #[test]
    fn absurd_length_is_rejected_without_allocating() {
        let mut data = file(&[]);
        data.extend_from_slice(&u32::MAX.to_le_bytes());
        data.extend_from_slice(&[0; 12]);
        let scan = scan_file(&data, None, 0);
        assert_eq!(
            scan.damage.map(|d| d.kind),
            Some(DamageKind::AbsurdLength { len: u32::MAX })
        );
    }
}
