//! The catalog on disk as an append-only log of checksummed records (new stream, new field, new
//! series), appended at flush with what the catalog gained since the last append, and rewritten as
//! one compact frame (a snapshot) when the log grows much larger than that would be. Format byte by
//! byte in `docs/format.md` ("Catalog log").
//!
//! ```text
//! header : "STRATCAT" | version u16 = 1 | reserved u16 = 0 | CRC32C of the previous 12 bytes u32
//! frame  : payload length u32 | CRC32C of payload u32 | payload = records
//! record : 1 stream | 2 field | 3 series (each carries the id it must receive, checked on load)
//! ```
//!
//! Loading replays the frames in order. A damaged frame that reaches the end of the file (a crash in
//! the middle of an append) is ignored and truncated away; damage followed by more data is an error
//! naming the file and offset. The previous JSON snapshot (`DATA/catalog`, `STRATA-CATALOG v1`) is
//! read when no log exists and converted: the log is written complete first, then the old file is
//! deleted, so a crash in between leaves both and the log wins.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::bytes::{PutBytes, ReadError, Reader};
use crate::catalog::Catalog;
use crate::error::{IoContext, Result, StorageError};
use crate::fsutil::{crash_point, sync_dir, write_atomic};
use crate::{FieldType, SeriesKey};

const MAGIC: &[u8; 8] = b"STRATCAT";
const VERSION: u16 = 1;
const HEADER_LEN: u64 = 16;
const FRAME_HEADER: u64 = 8;
const STREAM: u8 = 1;
const FIELD: u8 = 2;
const SERIES: u8 = 3;
const STRING: u8 = 4;
/// The log is rewritten once it is this many times larger than a snapshot would be...
const SNAPSHOT_RATIO: u64 = 2;
/// ...and at least this large (small logs are never worth rewriting).
const SNAPSHOT_MIN_BYTES: u64 = 64 << 10;

/// How much of the catalog the log holds: counts of streams, fields per stream and series.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Watermark {
    streams: usize,
    fields: Vec<usize>,
    series: usize,
}

impl Watermark {
    fn of(catalog: &Catalog) -> Watermark {
        Watermark {
            streams: catalog.streams.len(),
            fields: catalog.streams.iter().map(|s| s.fields.len()).collect(),
            series: catalog.series.len(),
        }
    }
}

/// Encoded records not yet in the file, and the watermark once they are.
#[derive(Debug)]
pub(crate) struct Pending {
    records: Vec<u8>,
    mark: Watermark,
    /// Hashes of the strings the records define (see [`Strings`]).
    strings: Vec<u64>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes of the `STRING` records defining strings already in `known`.
    fn repeated_bytes(&self, known: &std::collections::HashSet<u64>) -> u64 {
        let mut r = Reader::new(&self.records);
        let mut repeated = 0;
        while let Ok(kind) = r.u8("kind") {
            let before = r.remaining();
            let skipped = skip_record(&mut r, kind);
            if let Ok(Some(s)) = skipped
                && known.contains(&string_hash(s))
            {
                repeated += 1 + (before - r.remaining()) as u64;
            }
            if skipped.is_err() {
                break;
            }
        }
        repeated
    }
}

/// Size of a file holding one frame of `records` bytes.
fn snapshot_size(records: u64) -> u64 {
    HEADER_LEN + FRAME_HEADER + records
}

fn string_hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Reads past one record of `kind` (already read); returns the string a `STRING` record defines.
fn skip_record<'a>(
    r: &mut Reader<'a>,
    kind: u8,
) -> std::result::Result<Option<&'a str>, ReadError> {
    match kind {
        STREAM => {
            r.u32("id")?;
            r.str("database")?;
            r.str("name")?;
        }
        FIELD => {
            r.u32("stream")?;
            r.u32("id")?;
            r.u8("type")?;
            r.str("name")?;
        }
        SERIES => {
            r.take(12, "series")?;
            let n = r.count(8, "tags")?;
            r.take(n * 8, "tags")?;
        }
        STRING => return Ok(Some(r.str("string")?)),
        k => return Err(bad(format!("unknown record kind {k}"))),
    }
    Ok(None)
}

/// The open catalog log.
#[derive(Debug)]
pub(crate) struct CatalogLog {
    path: PathBuf,
    file: File,
    len: u64,
    mark: Watermark,
    /// Hashes of every distinct string the file defines.
    known: std::collections::HashSet<u64>,
    /// Bytes a snapshot of what the file holds would take (each string once).
    snapshot_bytes: u64,
    /// A failed append could not be cut back to `len`; the next append cuts it first.
    torn: bool,
}

impl CatalogLog {
    /// Opens (or creates) the log at `path` and loads the catalog; converts the JSON snapshot at
    /// `legacy` when there is no log yet.
    #[cfg(test)]
    pub fn open(path: &Path, legacy: &Path) -> Result<(CatalogLog, Catalog)> {
        CatalogLog::open_needing(path, legacy, 0)
    }

    /// [`CatalogLog::open`] for a data directory whose segments hold series ids below
    /// `series_needed`: a log defining fewer series lost records the segments rely on (a
    /// damaged frame length can make the rest of the file look like a torn last append), so it
    /// is refused as corrupt, before anything is cut from it.
    pub fn open_needing(
        path: &Path,
        legacy: &Path,
        series_needed: usize,
    ) -> Result<(CatalogLog, Catalog)> {
        if !path.exists() {
            let catalog = Catalog::load(legacy)?;
            let all = CatalogLog::encode_all(&catalog);
            write_atomic(path, &file_bytes(&all.records))?;
            remove_legacy(legacy)?;
            let size = snapshot_size(all.records.len() as u64);
            let log =
                CatalogLog::open_file(path, all.mark, all.strings.into_iter().collect(), size)?;
            return Ok((log, catalog));
        }
        let bytes = std::fs::read(path).at(path)?;
        let loaded = load(&bytes, path)?;
        if loaded.catalog.series.len() < series_needed {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "it defines {} series up to byte {} of {}, but the segments hold series ids up to {}: records were lost",
                    loaded.catalog.series.len(),
                    loaded.valid_len,
                    bytes.len(),
                    series_needed - 1
                ),
            });
        }
        let valid_len = loaded.valid_len;
        if valid_len < bytes.len() as u64 {
            tracing::warn!(
                file = %path.display(),
                offset = valid_len,
                dropped = bytes.len() as u64 - valid_len,
                "catalog log ends in a torn record (crash during an append); truncating it"
            );
            let f = OpenOptions::new().write(true).open(path).at(path)?;
            f.set_len(valid_len).at(path)?;
            crate::fsutil::sync_file(&f, path, false).at(path)?;
        }
        remove_legacy(legacy)?;
        let mark = Watermark::of(&loaded.catalog);
        let size = snapshot_size(loaded.unique_bytes);
        let log = CatalogLog::open_file(path, mark, loaded.known, size)?;
        Ok((log, loaded.catalog))
    }

    fn open_file(
        path: &Path,
        mark: Watermark,
        known: std::collections::HashSet<u64>,
        snapshot_bytes: u64,
    ) -> Result<CatalogLog> {
        let file = OpenOptions::new().append(true).open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        Ok(CatalogLog {
            path: path.to_path_buf(),
            file,
            len,
            mark,
            known,
            snapshot_bytes,
            torn: false,
        })
    }

    /// Records for what `catalog` gained since the last append: O(new items + streams).
    pub fn pending(&self, catalog: &Catalog) -> Pending {
        let (records, strings) = records_since(&self.mark, catalog);
        Pending {
            records,
            mark: Watermark::of(catalog),
            strings,
        }
    }

    /// Every record of `catalog` (a snapshot's content): O(all items).
    pub fn encode_all(catalog: &Catalog) -> Pending {
        let (records, strings) = records_since(&Watermark::default(), catalog);
        Pending {
            records,
            mark: Watermark::of(catalog),
            strings,
        }
    }

    /// Appends one frame and fdatasyncs it. On failure the file is cut back to its previous length
    /// so a later append does not follow a torn frame.
    pub fn append(&mut self, pending: Pending) -> Result<()> {
        if pending.is_empty() {
            self.mark = pending.mark;
            return Ok(());
        }
        if self.torn {
            // An earlier failed append could not be cut back: retry before appending after it.
            self.file.set_len(self.len).at(&self.path)?;
            self.torn = false;
        }
        let frame = frame(&pending.records);
        let result = self.write_frame(&frame);
        if let Err(e) = result {
            self.torn = self.file.set_len(self.len).is_err();
            return Err(e);
        }
        self.len += frame.len() as u64;
        self.snapshot_bytes += pending.records.len() as u64;
        // A string the file already defines would be written once in a snapshot.
        self.snapshot_bytes -= pending.repeated_bytes(&self.known);
        self.known.extend(pending.strings);
        self.mark = pending.mark;
        Ok(())
    }

    fn write_frame(&mut self, frame: &[u8]) -> Result<()> {
        let half = frame.len() / 2;
        crate::fsutil::write_all(&mut self.file, &self.path, &frame[..half]).at(&self.path)?;
        crash_point("catalog-mid-append");
        crate::fsutil::write_all(&mut self.file, &self.path, &frame[half..]).at(&self.path)?;
        crate::fsutil::sync_file(&self.file, &self.path, true).at(&self.path)
    }

    /// Whether the log is much larger than a snapshot of what it holds would be.
    pub fn should_snapshot(&self) -> bool {
        self.len >= SNAPSHOT_MIN_BYTES
            && self.len > self.snapshot_bytes.saturating_mul(SNAPSHOT_RATIO)
    }

    /// Replaces the log with one frame holding `all` (from [`CatalogLog::encode_all`]), atomically.
    pub fn replace(&mut self, all: Pending) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        {
            let bytes = file_bytes(&all.records);
            let written = (|| {
                let mut f = crate::fsutil::create_file(&tmp).at(&tmp)?;
                crate::fsutil::write_all(&mut f, &tmp, &bytes[..bytes.len() / 2]).at(&tmp)?;
                crash_point("catalog-mid-snapshot");
                crate::fsutil::write_all(&mut f, &tmp, &bytes[bytes.len() / 2..]).at(&tmp)?;
                crate::fsutil::sync_file(&f, &tmp, false).at(&tmp)?;
                drop(f);
                crate::fsutil::rename(&tmp, &self.path).at(&self.path)
            })();
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        // The new file is in place from the rename on, whether or not the directory fsync
        // succeeds: appends go to it from now on, never to the replaced (unlinked) file.
        let synced = sync_dir(self.path.parent().unwrap_or(Path::new(".")));
        let size = snapshot_size(all.records.len() as u64);
        let known = all.strings.into_iter().collect();
        *self = CatalogLog::open_file(&self.path, all.mark, known, size)?;
        synced
    }

    /// Bytes of the log file.
    pub fn len(&self) -> u64 {
        self.len
    }
}

fn remove_legacy(legacy: &Path) -> Result<()> {
    match std::fs::remove_file(legacy) {
        Ok(()) => sync_dir(legacy.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(legacy),
    }
}

fn header() -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN as usize);
    h.extend_from_slice(MAGIC);
    h.put_u16(VERSION);
    h.put_u16(0);
    let crc = crc32c::crc32c(&h);
    h.put_u32(crc);
    h
}

fn frame(records: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(records.len() + FRAME_HEADER as usize);
    f.put_u32(records.len() as u32);
    f.put_u32(crc32c::crc32c(records));
    f.extend_from_slice(records);
    f
}

/// A whole log file: header and, when there are records, one frame.
fn file_bytes(records: &[u8]) -> Vec<u8> {
    let mut out = header();
    if !records.is_empty() {
        out.extend_from_slice(&frame(records));
    }
    out
}

fn put_stream(out: &mut Vec<u8>, id: usize, database: &str, name: &str) {
    out.put_u8(STREAM);
    out.put_u32(id as u32);
    out.put_str(database);
    out.put_str(name);
}

fn put_field(out: &mut Vec<u8>, stream: usize, fid: usize, name: &str, ty: FieldType) {
    out.put_u8(FIELD);
    out.put_u32(stream as u32);
    out.put_u32(fid as u32);
    out.put_u8(ty.tag());
    out.put_str(name);
}

/// Records of the streams, fields and series `catalog` has beyond `mark`, as one frame's payload.
fn records_since(mark: &Watermark, catalog: &Catalog) -> (Vec<u8>, Vec<u64>) {
    let mut out = Vec::new();
    for (id, s) in catalog.streams.iter().enumerate().skip(mark.streams) {
        put_stream(&mut out, id, &s.database, &s.name);
    }
    for (id, s) in catalog.streams.iter().enumerate() {
        let from = mark.fields.get(id).copied().unwrap_or(0);
        for (fid, (name, ty)) in s.fields.iter().enumerate().skip(from) {
            put_field(&mut out, id, fid, name, *ty);
        }
    }
    let mut strings = Strings::default();
    for (id, s) in catalog.series.iter().enumerate().skip(mark.series) {
        put_series(&mut out, &mut strings, id, s.stream as usize, &s.key);
    }
    (out, strings.defined)
}

/// The frame-local string table: each distinct device, tag key and tag value is written once per
/// frame (a `STRING` record) and referred to by its index, so a snapshot (one frame) stores each
/// string once while many small appended frames repeat them.
#[derive(Default)]
struct Strings {
    index: foldhash::HashMap<String, u32>,
    /// Hashes of the strings defined, in order.
    defined: Vec<u64>,
}

impl Strings {
    fn reference(&mut self, out: &mut Vec<u8>, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.index.len() as u32;
        out.put_u8(STRING);
        out.put_str(s);
        self.index.insert(s.to_string(), i);
        self.defined.push(string_hash(s));
        i
    }
}

fn put_series(out: &mut Vec<u8>, strings: &mut Strings, id: usize, stream: usize, key: &SeriesKey) {
    let device = strings.reference(out, &key.device);
    let tags: Vec<(u32, u32)> = key
        .tags
        .iter()
        .map(|(k, v)| (strings.reference(out, k), strings.reference(out, v)))
        .collect();
    out.put_u8(SERIES);
    out.put_u32(id as u32);
    out.put_u32(stream as u32);
    out.put_u32(device);
    out.put_u32(tags.len() as u32);
    for (k, v) in tags {
        out.put_u32(k);
        out.put_u32(v);
    }
}

/// What replaying a log file found.
struct Loaded {
    catalog: Catalog,
    /// Length of the intact part of the file.
    valid_len: u64,
    /// Hashes of the distinct strings defined.
    known: std::collections::HashSet<u64>,
    /// Bytes of the records with each string counted once (a snapshot's records).
    unique_bytes: u64,
}

/// Replays a log file.
/// Parses the bytes of a catalog log without touching any file: how many series it defines and
/// the length of its intact prefix (a torn last frame is left out; damage before the end is an
/// error). For the fuzz target and for operators checking a file by hand.
pub fn parse_catalog_log(bytes: &[u8]) -> Result<(usize, u64)> {
    let loaded = load(bytes, Path::new("catalog.log"))?;
    Ok((loaded.catalog.series.len(), loaded.valid_len))
}

fn load(bytes: &[u8], path: &Path) -> Result<Loaded> {
    let corrupt = |detail: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    check_header(bytes).map_err(corrupt)?;
    let mut catalog = Catalog::default();
    let mut known = std::collections::HashSet::new();
    let (mut at, mut unique_bytes) = (HEADER_LEN as usize, 0u64);
    while at < bytes.len() {
        let Some(payload) = intact_frame(&bytes[at..]) else {
            if torn_tail(&bytes[at..]) {
                break;
            }
            return Err(corrupt(format!(
                "damaged catalog record frame at byte {at} followed by more data; \
                 the catalog cannot be rebuilt past it (restore the file from a backup)"
            )));
        };
        apply_records(&mut catalog, payload)
            .map_err(|e| corrupt(format!("frame at byte {at}: {e}")))?;
        let pending = Pending {
            records: payload.to_vec(),
            mark: Watermark::default(),
            strings: Vec::new(),
        };
        unique_bytes += payload.len() as u64 - pending.repeated_bytes(&known);
        known.extend(defined_strings(payload));
        at += FRAME_HEADER as usize + payload.len();
    }
    Ok(Loaded {
        catalog,
        valid_len: at.min(bytes.len()) as u64,
        known,
        unique_bytes,
    })
}

/// Hashes of the strings a (verified) frame payload defines.
fn defined_strings(payload: &[u8]) -> Vec<u64> {
    let mut r = Reader::new(payload);
    let mut out = Vec::new();
    while let Ok(kind) = r.u8("kind") {
        match skip_record(&mut r, kind) {
            Ok(Some(s)) => out.push(string_hash(s)),
            Ok(None) => {}
            Err(_) => break,
        }
    }
    out
}

fn check_header(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC {
        return Err("not a Strata catalog log (bad magic or too short)".into());
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if crc32c::crc32c(&bytes[..12]) != crc {
        return Err("catalog log header checksum mismatch".into());
    }
    if version != VERSION {
        return Err(format!(
            "catalog log version {version} is not supported by this build (expected {VERSION})"
        ));
    }
    Ok(())
}

/// The payload of the frame at the start of `rest`, if it is complete and its checksum matches.
fn intact_frame(rest: &[u8]) -> Option<&[u8]> {
    if rest.len() < FRAME_HEADER as usize {
        return None;
    }
    let len = u32::from_le_bytes(rest[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().ok()?);
    let payload = rest.get(8..8usize.checked_add(len)?)?;
    (len > 0 && crc32c::crc32c(payload) == crc).then_some(payload)
}

/// Whether a frame that failed to verify is the torn end of an interrupted append: it claims to
/// reach past the end of the file, reaches exactly to it, or is followed only by zero bytes.
fn torn_tail(rest: &[u8]) -> bool {
    if rest.len() < FRAME_HEADER as usize {
        return true;
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let end = (FRAME_HEADER as usize).saturating_add(len);
    end >= rest.len()
        || rest[end.max(FRAME_HEADER as usize)..]
            .iter()
            .all(|&b| b == 0)
}

fn apply_records(catalog: &mut Catalog, payload: &[u8]) -> std::result::Result<(), ReadError> {
    let mut r = Reader::new(payload);
    let mut strings: Vec<&str> = Vec::new();
    while r.remaining() > 0 {
        match r.u8("record kind")? {
            STREAM => apply_stream(catalog, &mut r)?,
            FIELD => apply_field(catalog, &mut r)?,
            SERIES => apply_series(catalog, &mut r, &strings)?,
            STRING => strings.push(r.str("string")?),
            kind => return Err(bad(format!("unknown record kind {kind}"))),
        }
    }
    Ok(())
}

fn bad(what: String) -> ReadError {
    ReadError { offset: 0, what }
}

fn apply_stream(catalog: &mut Catalog, r: &mut Reader<'_>) -> std::result::Result<(), ReadError> {
    let id = r.u32("stream id")? as usize;
    let (database, name) = (r.str("database")?, r.str("stream name")?);
    if id != catalog.streams.len() || catalog.stream_id(database, name).is_some() {
        return Err(bad(format!(
            "stream record {database}/{name} has id {id}, expected a new stream {}",
            catalog.streams.len()
        )));
    }
    catalog.ensure_stream(database, name);
    Ok(())
}

fn apply_field(catalog: &mut Catalog, r: &mut Reader<'_>) -> std::result::Result<(), ReadError> {
    let stream = r.u32("field stream")? as usize;
    let fid = r.u32("field id")? as usize;
    let tag = r.u8("field type")?;
    let name = r.str("field name")?;
    let ty = FieldType::from_tag(tag).ok_or_else(|| bad(format!("unknown field type {tag}")))?;
    let Some(meta) = catalog.streams.get(stream) else {
        return Err(bad(format!("field '{name}' of unknown stream {stream}")));
    };
    if fid != meta.fields.len() || meta.field_id(name).is_some() {
        return Err(bad(format!(
            "field record '{name}' has id {fid}, expected a new field {}",
            meta.fields.len()
        )));
    }
    catalog.ensure_field(stream as u32, name, ty);
    Ok(())
}

fn apply_series(
    catalog: &mut Catalog,
    r: &mut Reader<'_>,
    strings: &[&str],
) -> std::result::Result<(), ReadError> {
    let id = r.u32("series id")? as usize;
    let stream = r.u32("series stream")? as usize;
    let string = |r: &mut Reader<'_>, what: &str| -> std::result::Result<String, ReadError> {
        let i = r.u32(what)? as usize;
        let s = strings
            .get(i)
            .ok_or_else(|| bad(format!("{what} refers to string {i} of {}", strings.len())))?;
        Ok(s.to_string())
    };
    let device = string(r, "device")?;
    let ntags = r.count(8, "tag count")?;
    let mut tags = Vec::with_capacity(ntags);
    for _ in 0..ntags {
        tags.push((string(r, "tag key")?, string(r, "tag value")?));
    }
    if stream >= catalog.streams.len() || id != catalog.series.len() {
        return Err(bad(format!(
            "series record {id} of stream {stream}: expected series {} of one of {} streams",
            catalog.series.len(),
            catalog.streams.len()
        )));
    }
    let key = SeriesKey { device, tags };
    if catalog.ensure_series(stream as u32, &key) as usize != id {
        return Err(bad(format!(
            "series record {id} repeats an earlier series key"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(device: &str, tags: &[(&str, &str)]) -> SeriesKey {
        SeriesKey {
            device: device.into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn ids(cat: &Catalog) -> Vec<(u32, SeriesKey)> {
        cat.series
            .iter()
            .map(|s| (s.stream, SeriesKey::clone(&s.key)))
            .collect()
    }

    struct Dir {
        _dir: tempfile::TempDir,
        log: PathBuf,
        legacy: PathBuf,
    }

    fn dir() -> Dir {
        let d = tempfile::tempdir().unwrap();
        Dir {
            log: d.path().join("catalog.log"),
            legacy: d.path().join("catalog"),
            _dir: d,
        }
    }

    /// Builds a catalog in three appends; returns it.
    fn three_appends(d: &Dir) -> Catalog {
        let (mut log, mut cat) = CatalogLog::open(&d.log, &d.legacy).unwrap();
        let s = cat.ensure_stream("db", "cpu");
        cat.ensure_field(s, "v", FieldType::Float);
        cat.ensure_series(s, &key("a", &[("rack", "1")]));
        log.append(log.pending(&cat)).unwrap();
        let m = cat.ensure_stream("db", "mem");
        cat.ensure_field(m, "used", FieldType::Integer);
        cat.ensure_field(s, "w", FieldType::String);
        cat.ensure_series(m, &key("a", &[]));
        log.append(log.pending(&cat)).unwrap();
        cat.ensure_series(s, &key("b", &[("rack", "2"), ("zone", "x")]));
        log.append(log.pending(&cat)).unwrap();
        cat
    }

    #[test]
    fn appends_replay_to_the_same_ids_fields_and_index() {
        let d = dir();
        let cat = three_appends(&d);
        let (_, back) = CatalogLog::open(&d.log, &d.legacy).unwrap();
        assert_eq!(ids(&back), ids(&cat));
        let cpu = back.stream(back.stream_id("db", "cpu").unwrap());
        assert_eq!(
            cpu.fields,
            vec![
                ("v".to_string(), FieldType::Float),
                ("w".to_string(), FieldType::String)
            ]
        );
        assert_eq!(
            cpu.matching(None, &[("rack".into(), "2".into())])
                .iter()
                .collect::<Vec<_>>(),
            vec![2]
        );
    }

    #[test]
    fn an_append_writes_only_what_is_new() {
        let d = dir();
        let (mut log, mut cat) = CatalogLog::open(&d.log, &d.legacy).unwrap();
        let s = cat.ensure_stream("db", "cpu");
        cat.ensure_field(s, "v", FieldType::Float);
        for i in 0..1000 {
            cat.ensure_series(s, &key(&format!("dev{i}"), &[]));
        }
        log.append(log.pending(&cat)).unwrap();
        let before = log.len();
        cat.ensure_series(s, &key("one-more", &[]));
        let p = log.pending(&cat);
        // One STRING record ("one-more") and one SERIES record.
        assert_eq!(p.records.len(), (1 + 4 + 8) + (1 + 4 + 4 + 4 + 4));
        log.append(p).unwrap();
        assert_eq!(log.len(), before + 8 + 30);
        assert!(log.pending(&cat).is_empty());
    }

    #[test]
    fn a_torn_last_frame_is_ignored_and_truncated() {
        let d = dir();
        let cat = three_appends(&d);
        let full = std::fs::read(&d.log).unwrap();
        // Cut inside the last frame.
        for cut in [full.len() - 1, full.len() - 20, full.len() - 30] {
            std::fs::write(&d.log, &full[..cut]).unwrap();
            let (_, back) = CatalogLog::open(&d.log, &d.legacy).unwrap();
            assert_eq!(ids(&back), ids(&cat)[..2].to_vec(), "cut at {cut}");
            let truncated = std::fs::read(&d.log).unwrap();
            assert!(truncated.len() < cut && full.starts_with(&truncated));
        }
        // The file kept its length but the end of the last frame reads as zeros.
        let mut zeroed = full.clone();
        zeroed[full.len() - 30..].fill(0);
        assert_ne!(zeroed, full);
        std::fs::write(&d.log, &zeroed).unwrap();
        let (_, back) = CatalogLog::open(&d.log, &d.legacy).unwrap();
        assert_eq!(back.series.len(), 2);
    }

    #[test]
    fn damage_in_the_middle_is_an_error_naming_the_file() {
        let d = dir();
        three_appends(&d);
        let mut bytes = std::fs::read(&d.log).unwrap();
        bytes[HEADER_LEN as usize + 12] ^= 0x40;
        std::fs::write(&d.log, &bytes).unwrap();
        let err = CatalogLog::open(&d.log, &d.legacy).unwrap_err().to_string();
        assert!(err.contains("catalog.log"), "{err}");
        assert!(err.contains("byte 16"), "{err}");
    }

    #[test]
    fn a_json_snapshot_is_converted_and_removed() {
        let d = dir();
        let mut cat = Catalog::default();
        let s = cat.ensure_stream("db", "cpu");
        cat.ensure_field(s, "v", FieldType::Float);
        cat.ensure_series(s, &key("a", &[("fleet", "x")]));
        cat.ensure_series(s, &key("b", &[]));
        cat.save(&d.legacy).unwrap();
        let (_, back) = CatalogLog::open(&d.log, &d.legacy).unwrap();
        assert_eq!(ids(&back), ids(&cat));
        assert!(!d.legacy.exists());
        let (_, again) = CatalogLog::open(&d.log, &d.legacy).unwrap();
        assert_eq!(ids(&again), ids(&cat));
    }

    #[test]
    fn a_leftover_json_snapshot_next_to_a_log_is_ignored_and_removed() {
        let d = dir();
        let cat = three_appends(&d);
        Catalog::default().save(&d.legacy).unwrap();
        let (_, back) = CatalogLog::open(&d.log, &d.legacy).unwrap();
        assert_eq!(ids(&back), ids(&cat));
        assert!(!d.legacy.exists());
    }

    #[test]
    fn snapshot_rewrites_many_small_frames_into_one() {
        let d = dir();
        let (mut log, mut cat) = CatalogLog::open(&d.log, &d.legacy).unwrap();
        let s = cat.ensure_stream("db", "cpu");
        cat.ensure_field(s, "v", FieldType::Float);
        let tags = [("fleet", "north-east-region"), ("model", "heavy-duty-f750")];
        let mut i = 0;
        // One new truck per flush: every frame repeats the tag strings.
        while !log.should_snapshot() {
            cat.ensure_series(s, &key(&format!("truck_{i}"), &tags));
            log.append(log.pending(&cat)).unwrap();
            i += 1;
            assert!(i < 100_000, "the log never asked for a snapshot");
        }
        let before = log.len();
        log.replace(CatalogLog::encode_all(&cat)).unwrap();
        assert!(log.len() * 2 < before, "{} vs {before}", log.len());
        assert!(!log.should_snapshot());
        cat.ensure_series(s, &key("after", &[]));
        log.append(log.pending(&cat)).unwrap();
        let (reopened, back) = CatalogLog::open(&d.log, &d.legacy).unwrap();
        assert_eq!(back.series.len(), i + 1);
        assert_eq!(ids(&back), ids(&cat));
        assert!(!reopened.should_snapshot());
    }

    #[test]
    fn records_that_break_id_order_are_refused() {
        let d = dir();
        let mut records = Vec::new();
        put_stream(&mut records, 0, "db", "cpu");
        put_series(&mut records, &mut Strings::default(), 5, 0, &key("a", &[]));
        let mut bytes = file_bytes(&records);
        bytes.extend_from_slice(&frame(&records));
        std::fs::write(&d.log, &bytes).unwrap();
        let err = CatalogLog::open(&d.log, &d.legacy).unwrap_err().to_string();
        assert!(err.contains("series record 5"), "{err}");
    }
}
