//! Ranged reads of cold objects. A query that needs one device of one day used to fetch the
//! whole object (every device of that day) to check its CRC32C before serving a byte; on an
//! object store each request costs a round trip and every byte a transfer. Objects written
//! since now carry [`ObjectParts`] in their manifest entry: the byte range and CRC32C of each
//! row group and of the footer part (page indexes, metadata and tail, from the end of the last
//! row group to the end of the object). A read fetches the footer part, checks it, prunes row
//! groups by their statistics, and fetches and checks only the groups it decodes; each part is
//! cached on its own ([`ColdTier::footer_with`], [`ColdTier::group`]). The decoder sees the parts
//! through [`Sparse`], a Parquet `ChunkReader` over the fetched ranges only. An object listed
//! without parts (older manifests) is fetched and checked whole as before.
//!
//! Each request to an object store is a round trip (3.5–7 ms to a local moto server), so a read
//! of a few devices does not wait for the footer to learn which groups to fetch: the manifest
//! entry also lists each group's first device ([`ObjectParts::first_devices`]; rows are sorted
//! by device), and [`ColdTier::footer_with`] fetches the footer part and those groups at once.
//! Objects of at most [`WHOLE_BELOW`] bytes are fetched whole in one request.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Buf, Bytes};
use object_store::ObjectStoreExt;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::reader::{ChunkReader, Length};
use serde::{Deserialize, Serialize};

use super::parquet::{CodecResult, ObjectIndex};
use super::{ColdObject, ColdTier, poisoned, store_error};
use crate::error::{Result, StorageError};

/// The separately checksummed parts of a cold object (its manifest entry records them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectParts {
    /// First byte of the footer part, which runs to the end of the object.
    pub footer_at: u64,
    /// CRC32C of the footer part.
    pub footer_crc32c: u32,
    /// Per row group in file order: its first byte, its end (exclusive) and the CRC32C of the
    /// bytes between (all its column chunks).
    pub groups: Vec<(u64, u64, u32)>,
    /// Per row group in file order, a lower bound of the `device` values it holds (its
    /// statistics' minimum), recorded only when each group's devices all lie after the previous
    /// group's (rows sorted by device, no device split between two groups); empty otherwise and
    /// in entries written before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_devices: Vec<String>,
}

impl ObjectParts {
    /// The row groups that may hold a row of one of `devices`, from [`Self::first_devices`]
    /// (`None` when the entry has none): group `g` may hold `d` when its first device is at or
    /// before `d` and the next group's is after it. A hint for fetching ahead; the footer's
    /// statistics still decide what is decoded.
    pub fn groups_for(&self, devices: &[&str]) -> Option<Vec<usize>> {
        let firsts = &self.first_devices;
        if firsts.is_empty() || firsts.len() != self.groups.len() {
            return None;
        }
        let holds = |g: usize, d: &str| {
            firsts[g].as_str() <= d && firsts.get(g + 1).is_none_or(|next| d < next.as_str())
        };
        Some(
            (0..firsts.len())
                .filter(|&g| devices.iter().any(|d| holds(g, d)))
                .collect(),
        )
    }
}

/// Each row group's smallest `device`, when every group's devices lie after the previous
/// group's largest (empty otherwise: no statistics, rows not sorted by device, or a device
/// split between two groups).
fn first_devices(meta: &parquet::file::metadata::ParquetMetaData) -> Vec<String> {
    use parquet::file::statistics::Statistics;
    let Some(leaf) =
        (meta.file_metadata().schema_descr().columns().iter()).position(|c| c.name() == "device")
    else {
        return Vec::new();
    };
    let mut firsts = Vec::with_capacity(meta.num_row_groups());
    let mut last_max: Option<Vec<u8>> = None;
    for rg in meta.row_groups() {
        let Some(Statistics::ByteArray(s)) = rg.column(leaf).statistics() else {
            return Vec::new();
        };
        let (Some(min), Some(max)) = (s.min_opt(), s.max_opt()) else {
            return Vec::new();
        };
        let (Ok(first), true) = (
            min.as_utf8(),
            last_max.as_deref().is_none_or(|m| m < min.data()),
        ) else {
            return Vec::new();
        };
        firsts.push(first.to_string());
        last_max = Some(max.data().to_vec());
    }
    firsts
}

/// The parts of an object as written: row group ranges from its footer, in file order, each
/// after the one before and all before the footer part; and the CRC32C of the whole object,
/// combined from those of its parts (one pass over the bytes for both).
pub(crate) fn parts_and_crc(bytes: &Bytes) -> CodecResult<(ObjectParts, u32)> {
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(bytes)
        .map_err(|e| e.to_string())?;
    let mut groups = Vec::with_capacity(meta.num_row_groups());
    let mut end = 4u64; // after the leading magic `PAR1`
    let mut whole = crc32c::crc32c(bytes.get(..4).unwrap_or_default());
    for (g, rg) in meta.row_groups().iter().enumerate() {
        let ranges = rg.columns().iter().map(|c| c.byte_range());
        let start = ranges.clone().map(|(s, _)| s).min().unwrap_or(end);
        let stop = ranges.map(|(s, n)| s + n).max().unwrap_or(end);
        if start < end || stop > bytes.len() as u64 {
            return Err(format!(
                "row group {g} spans bytes {start}..{stop}, not after the group before it and within the object"
            ));
        }
        whole = crc32c::crc32c_append(whole, &bytes[end as usize..start as usize]);
        let crc = crc32c::crc32c(&bytes[start as usize..stop as usize]);
        whole = crc32c::crc32c_combine(whole, crc, (stop - start) as usize);
        groups.push((start, stop, crc));
        end = stop;
    }
    let footer_crc32c = crc32c::crc32c(&bytes[end as usize..]);
    let whole = crc32c::crc32c_combine(whole, footer_crc32c, bytes.len() - end as usize);
    let parts = ObjectParts {
        footer_at: end,
        footer_crc32c,
        groups,
        first_devices: first_devices(&meta),
    };
    Ok((parts, whole))
}

/// A Parquet file of which only some byte ranges are at hand: reads inside one of them are
/// served, any other read is an error (the reader asked for a part nobody fetched).
#[derive(Debug, Clone)]
pub(crate) struct Sparse {
    len: u64,
    parts: Vec<(u64, Bytes)>,
}

impl Sparse {
    /// A file of `len` bytes of which `parts` (start, bytes) are known.
    pub fn new(len: u64, parts: Vec<(u64, Bytes)>) -> Sparse {
        Sparse { len, parts }
    }

    /// The whole file.
    pub fn whole(bytes: Bytes) -> Sparse {
        Sparse {
            len: bytes.len() as u64,
            parts: vec![(0, bytes)],
        }
    }

    /// `length` bytes from `start` (to the end of its part when `None`).
    fn slice(&self, start: u64, length: Option<usize>) -> parquet::errors::Result<Bytes> {
        for (at, part) in &self.parts {
            let end = at + part.len() as u64;
            // A read to the end of a part starts inside it; a read of `n` bytes may end at it.
            let inside = match length {
                None => start < end,
                Some(_) => start <= end,
            };
            if start < *at || !inside {
                continue;
            }
            let from = (start - at) as usize;
            let to = match length {
                None => part.len(),
                Some(n) => match from.checked_add(n).filter(|t| *t <= part.len()) {
                    Some(t) => t,
                    None => continue,
                },
            };
            return Ok(part.slice(from..to));
        }
        Err(ParquetError::General(format!(
            "bytes {start}..{} of the object were not fetched",
            length.map_or(String::new(), |n| start
                .saturating_add(n as u64)
                .to_string())
        )))
    }
}

impl Sparse {
    /// Whether bytes `start..end` are at hand (inside one part).
    fn holds(&self, start: u64, end: u64) -> bool {
        self.parts
            .iter()
            .any(|(at, b)| *at <= start && end <= at + b.len() as u64)
    }
}

impl Length for Sparse {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Sparse {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.slice(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, Some(length))
    }
}

/// Objects up to this size are fetched whole in one request (checked against the object's
/// CRC32C) rather than as a footer part and row groups: two requests cost more than the few
/// hundred KB between them (a round trip to S3 moves about as many bytes), and a day's
/// partition often has such a small second object (a segment flushed late).
pub(crate) const WHOLE_BELOW: u64 = 512 << 10;

/// Whether fetched `bytes` are the part at `range` whose CRC32C the manifest records as `crc`.
fn intact(bytes: &Bytes, range: &std::ops::Range<u64>, crc: u32) -> bool {
    bytes.len() as u64 == range.end - range.start && crc32c::crc32c(bytes) == crc
}

/// Cache key of one part of an object.
fn part_key(key: &str, part: &str) -> String {
    format!("{key}\u{0}{part}")
}

impl ColdTier {
    /// The footer part of `object` (ranged objects) with its parsed index, from the cache or
    /// the store (checked against the manifest's CRC32C); or, for an object without parts, the
    /// whole object. When the footer is not cached, the uncached row groups `ahead` are fetched
    /// in the same round of requests (checked and cached likewise) and the returned [`Sparse`]
    /// file holds them, so [`Self::group`] serves them without another request.
    pub(crate) fn footer_with(
        &self,
        object: &ColdObject,
        ahead: &[usize],
    ) -> Result<(Sparse, Arc<ObjectIndex>)> {
        let parts = match &object.parts {
            Some(parts) if object.bytes > self.whole_below.load(Ordering::Relaxed) => parts,
            _ => {
                let (bytes, index) = self.fetch_indexed(object)?;
                return Ok((Sparse::whole(bytes), index));
            }
        };
        let key = part_key(&object.key, "footer");
        let cached = self.cache.lock().map_err(|_| poisoned())?.get_indexed(&key);
        let (bytes, fetched) = match cached {
            Some((bytes, index)) => {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                let file = Sparse::new(object.bytes, vec![(parts.footer_at, bytes.clone())]);
                if let Some(index) = index {
                    return Ok((file, index));
                }
                (bytes, Vec::new())
            }
            None => self.fetch_footer_and(object, parts, &key, ahead)?,
        };
        let mut file = Sparse::new(object.bytes, vec![(parts.footer_at, bytes)]);
        let index = super::parquet::index(&file)
            .map_err(|e| self.corrupt(object, format!("cannot read its footer: {e}")))?;
        let index = Arc::new(index);
        self.cache
            .lock()
            .map_err(|_| poisoned())?
            .set_index(&key, index.clone());
        file.parts.extend(fetched);
        Ok((file, index))
    }

    /// Fetches the footer part (checked, cached as `key`) and, in the same round, the uncached
    /// groups of `ahead`. Only the footer can fail the call: fetching ahead is a guess (a group
    /// the footer's statistics then prune is never decoded), so a group whose request fails, or
    /// whose range or checksum is wrong, is left out silently; [`Self::group`] fetches it again
    /// if the read needs it and reports it then. Returns the footer and the verified groups
    /// (start, bytes), which are cached too.
    fn fetch_footer_and(
        &self,
        object: &ColdObject,
        parts: &ObjectParts,
        key: &str,
        ahead: &[usize],
    ) -> Result<(Bytes, Vec<(u64, Bytes)>)> {
        let footer = parts.footer_at..object.bytes;
        self.check_range(object, &footer, "footer")?;
        let mut groups = Vec::new();
        {
            let cache = self.cache.lock().map_err(|_| poisoned())?;
            for &g in ahead {
                let Some(&(start, end, crc)) = parts.groups.get(g) else {
                    continue;
                };
                let key = part_key(&object.key, &format!("g{g}"));
                if start < end && end <= parts.footer_at && !cache.holds(&key) {
                    groups.push((key, start..end, crc));
                }
            }
        }
        self.counters
            .cache_misses
            .fetch_add(1 + groups.len() as u64, Ordering::Relaxed);
        let store = self.store.clone();
        let path = self.path(&object.key);
        let ranges: Vec<_> = std::iter::once(footer.clone())
            .chain(groups.iter().map(|g| g.1.clone()))
            .collect();
        let mut got = self
            .block(async move {
                let gets = ranges.into_iter().map(|r| store.get_range(&path, r));
                futures::future::join_all(gets).await
            })
            .into_iter();
        let bytes = got
            .next()
            .expect("the footer is always requested")
            .map_err(|e| store_error(&self.url, &format!("cannot read {}", object.key), e))?;
        let footer_bytes =
            self.accept(object, key, &footer, parts.footer_crc32c, "footer", bytes)?;
        let mut fetched = Vec::new();
        for ((key, range, crc), bytes) in groups.into_iter().zip(got) {
            if let Some(bytes) = bytes.ok().filter(|b| intact(b, &range, crc)) {
                self.keep(&key, &bytes)?;
                fetched.push((range.start, bytes));
            }
        }
        Ok((footer_bytes, fetched))
    }

    /// Row group `g` of a ranged `object` added to `file` (fetched, checked, cached; or already
    /// in `file`, fetched with its footer); a file of a whole object is returned as it is.
    pub(crate) fn group(&self, object: &ColdObject, file: &Sparse, g: usize) -> Result<Sparse> {
        let Some(parts) = &object.parts else {
            return Ok(file.clone());
        };
        let &(start, end, crc) = parts.groups.get(g).ok_or_else(|| {
            self.corrupt(
                object,
                format!(
                    "its footer has row group {g}, its manifest entry {} groups",
                    parts.groups.len()
                ),
            )
        })?;
        if file.holds(start, end) {
            return Ok(file.clone());
        }
        let key = part_key(&object.key, &format!("g{g}"));
        let cached = self.cache.lock().map_err(|_| poisoned())?.get(&key);
        let bytes = match cached {
            Some(b) => {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                b
            }
            None => self.fetch_part(object, &key, start..end, crc, &format!("row group {g}"))?,
        };
        let mut parts = file.parts.clone();
        parts.push((start, bytes));
        Ok(Sparse::new(file.len, parts))
    }

    /// Fetches `range` of `object`, checks its CRC32C against `crc` and caches it as `key`.
    fn fetch_part(
        &self,
        object: &ColdObject,
        key: &str,
        range: std::ops::Range<u64>,
        crc: u32,
        what: &str,
    ) -> Result<Bytes> {
        self.check_range(object, &range, what)?;
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        let store = self.store.clone();
        let path = self.path(&object.key);
        let r = range.clone();
        let bytes = self
            .block(async move { store.get_range(&path, r).await })
            .map_err(|e| store_error(&self.url, &format!("cannot read {}", object.key), e))?;
        self.accept(object, key, &range, crc, what, bytes)
    }

    /// Refuses a part range the manifest entry should never hold (empty, reversed, past the
    /// object) as corruption, before any request.
    fn check_range(
        &self,
        object: &ColdObject,
        range: &std::ops::Range<u64>,
        what: &str,
    ) -> Result<()> {
        if range.start >= range.end || range.end > object.bytes {
            return Err(self.corrupt(
                object,
                format!(
                    "its manifest entry places its {what} at bytes {}..{} of {}",
                    range.start, range.end, object.bytes
                ),
            ));
        }
        Ok(())
    }

    /// Checks fetched `bytes` of `range` against its length and `crc`, and caches them as `key`.
    fn accept(
        &self,
        object: &ColdObject,
        key: &str,
        range: &std::ops::Range<u64>,
        crc: u32,
        what: &str,
        bytes: Bytes,
    ) -> Result<Bytes> {
        if !intact(&bytes, range, crc) {
            let got = crc32c::crc32c(&bytes);
            return Err(self.damaged(
                object,
                format!(
                    "its {what} (bytes {}..{}) has {} bytes with checksum {got:08x}, the manifest says {} with {crc:08x}",
                    range.start,
                    range.end,
                    bytes.len(),
                    range.end - range.start
                ),
            ));
        }
        self.keep(key, &bytes)?;
        Ok(bytes)
    }

    /// Caches verified part `bytes` as `key`.
    fn keep(&self, key: &str, bytes: &Bytes) -> Result<()> {
        self.cache
            .lock()
            .map_err(|_| poisoned())?
            .put(key, bytes.clone());
        Ok(())
    }

    /// A part of `object` that failed its checksum: counted, logged, recorded for the status,
    /// and a `Corrupt` error (its bytes are never served).
    pub(super) fn damaged(&self, object: &ColdObject, detail: String) -> StorageError {
        self.counters
            .corrupt_objects
            .fetch_add(1, Ordering::Relaxed);
        let msg = format!(
            "cold object {}/{} is damaged: {detail}",
            self.url, object.key
        );
        tracing::error!(error = %msg, "cold object failed its checksum");
        self.record_error(&msg);
        self.corrupt(object, "checksum mismatch (not served)".into())
    }

    pub(super) fn corrupt(&self, object: &ColdObject, detail: String) -> StorageError {
        StorageError::Corrupt {
            path: std::path::PathBuf::from(format!("{}/{}", self.url, object.key)),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cold::encode::Encoder;
    use crate::cold::parquet::{canonical, decode_groups};
    use crate::rows::Rows;
    use crate::{Column, ColumnData, FieldType, SeriesKey};

    fn fields() -> Vec<(String, FieldType)> {
        vec![("v".to_string(), FieldType::Float)]
    }

    fn key(d: &str) -> SeriesKey {
        SeriesKey {
            device: d.into(),
            tags: vec![],
        }
    }

    /// An object of three devices with 70,000 rows each: three row groups, 1.7 MB (values
    /// of full precision, past [`WHOLE_BELOW`]).
    fn object() -> Bytes {
        object_of(70_000)
    }

    /// Three devices with `n` rows each, values of full precision in [1, 2).
    fn object_of(n: usize) -> Bytes {
        let mut enc = Encoder::new(&fields(), &[], &[]).unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for d in ["a", "b", "c"] {
            let mut c = Column::new("v", FieldType::Float);
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f64::from_bits(0x3ff0_0000_0000_0000 | (x >> 12))
            };
            c.data = ColumnData::Float((0..n).map(|_| next()).collect());
            c.valid = vec![true; n];
            let rows = Rows {
                times: (0..n as i64).map(|t| t * 1_000).collect(),
                columns: vec![c],
            };
            enc.push(key(d), rows).unwrap();
        }
        Bytes::from(enc.finish().unwrap().0)
    }

    fn cold_object(bytes: &Bytes, parts: Option<ObjectParts>) -> ColdObject {
        ColdObject {
            key: "db/s/date=1970-01-01/1-x.parquet".into(),
            database: "db".into(),
            stream: "s".into(),
            partition_start: 0,
            min_time: 0,
            max_time: 70_000_000,
            rows: 210_000,
            bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
            seq: 1,
            segment: 1,
            parts,
            merged: Vec::new(),
        }
    }

    /// A tier over a new directory holding `bytes` as a ranged object.
    fn stored(bytes: Bytes) -> (tempfile::TempDir, ColdTier, Bytes, ObjectParts, ColdObject) {
        let dir = tempfile::tempdir().unwrap();
        let t = ColdTier::open(&format!("file://{}", dir.path().display()), 64 << 20).unwrap();
        let parts = parts_and_crc(&bytes).unwrap().0;
        let obj = cold_object(&bytes, Some(parts.clone()));
        t.put_verified(&obj.key, bytes.clone(), obj.crc32c).unwrap();
        (dir, t, bytes, parts, obj)
    }

    #[test]
    fn parts_tile_the_object_and_a_sparse_file_reads_like_the_whole() {
        let bytes = object();
        let (parts, crc) = parts_and_crc(&bytes).unwrap();
        // The whole object's CRC, combined from its parts', is that of its bytes.
        assert_eq!(crc, crc32c::crc32c(&bytes));
        assert_eq!(parts.groups.len(), 3);
        assert_eq!(
            parts.groups[0].0, 4,
            "the first group starts after the magic"
        );
        for w in parts.groups.windows(2) {
            assert_eq!(w[0].1, w[1].0, "groups follow each other");
        }
        assert_eq!(parts.footer_at, parts.groups[2].1);
        assert!(parts.footer_at < bytes.len() as u64);
        let footer = bytes.slice(parts.footer_at as usize..);
        assert_eq!(crc32c::crc32c(&footer), parts.footer_crc32c);
        let whole = crate::cold::parquet::index(&bytes).unwrap();
        let sparse = Sparse::new(bytes.len() as u64, vec![(parts.footer_at, footer)]);
        let index = crate::cold::parquet::index(&sparse).unwrap();
        assert_eq!(index.groups, whole.groups);
        for (g, d) in ["a", "b", "c"].iter().enumerate() {
            let (start, end, crc) = parts.groups[g];
            let group = bytes.slice(start as usize..end as usize);
            assert_eq!(crc32c::crc32c(&group), crc);
            let mut file = sparse.clone();
            file.parts.push((start, group));
            let got = decode_groups(file, &index, vec![g], &fields(), None).unwrap();
            let want = decode_groups(bytes.clone(), &whole, vec![g], &fields(), None).unwrap();
            assert_eq!(got, want, "group {g}");
            assert!(got.contains_key(&canonical(&key(d))));
            // A group that was not fetched is an error, not rows.
            let other = (g + 1) % 3;
            let e =
                decode_groups(sparse.clone(), &index, vec![other], &fields(), None).unwrap_err();
            assert!(e.contains("were not fetched"), "{e}");
        }
    }

    #[test]
    fn a_sparse_file_serves_reads_inside_one_part_only() {
        let file = Sparse::new(
            20,
            vec![
                (0, Bytes::from_static(b"0123456789")),
                (10, Bytes::from_static(b"abcde")),
            ],
        );
        assert_eq!(file.get_bytes(8, 2).unwrap(), Bytes::from_static(b"89"));
        assert_eq!(file.get_bytes(10, 5).unwrap(), Bytes::from_static(b"abcde"));
        // A read to the end of a part that starts where the one before ends gets the later one.
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut file.get_read(10).unwrap(), &mut rest).unwrap();
        assert_eq!(rest, b"abcde");
        // Across two parts, past the last, or of an absurd length: errors, not panics.
        for (start, n) in [(8, 4), (15, 1), (16, 2), (5, usize::MAX)] {
            let e = file.get_bytes(start, n).unwrap_err().to_string();
            assert!(e.contains("were not fetched"), "{start}+{n}: {e}");
        }
        assert!(file.get_read(15).is_err());
    }

    #[test]
    fn a_tier_fetches_checks_and_caches_parts_and_refuses_a_damaged_one() {
        let (dir, t, bytes, parts, obj) = stored(object());
        let (file, index) = t.footer_with(&obj, &[]).unwrap();
        let misses = || t.counters.cache_misses.load(Ordering::Relaxed);
        assert_eq!(misses(), 1, "one request: the footer");
        let g1 = t.group(&obj, &file, 1).unwrap();
        assert_eq!(misses(), 2, "and one for the group");
        let rows = decode_groups(g1, &index, vec![1], &fields(), None).unwrap();
        assert_eq!(rows[&canonical(&key("b"))].len(), 70_000);
        // Warm: neither part is fetched again.
        let (file, _) = t.footer_with(&obj, &[]).unwrap();
        t.group(&obj, &file, 1).unwrap();
        assert_eq!(misses(), 2);
        // Damage a byte of group 2 in the store: that group is refused and counted, the
        // others are still served.
        let path = dir.path().join(&obj.key);
        let mut damaged = bytes.to_vec();
        damaged[parts.groups[2].0 as usize + 10] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let e = t.group(&obj, &file, 2).unwrap_err();
        assert!(matches!(e, StorageError::Corrupt { .. }), "{e}");
        assert!(
            t.last_error
                .lock()
                .unwrap()
                .as_ref()
                .unwrap()
                .contains("row group 2")
        );
        assert_eq!(t.counters.corrupt_objects.load(Ordering::Relaxed), 1);
        t.group(&obj, &file, 0).unwrap();
        // A damaged footer is refused the same way (on a cold cache).
        let cold = ColdTier::open(&format!("file://{}", dir.path().display()), 0).unwrap();
        let at = damaged.len() - 20;
        damaged[at] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let e = cold.footer_with(&obj, &[]).unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        // A manifest entry whose ranges make no sense is refused, not fetched.
        let mut bad = parts.clone();
        bad.groups[0] = (bad.groups[0].1, bad.groups[0].0, 0);
        let bad = cold_object(&bytes, Some(bad));
        let e = cold.group(&bad, &file, 0).unwrap_err();
        assert!(e.to_string().contains("places its row group 0"), "{e}");
        // An object listed without parts is read whole, as before.
        std::fs::write(&path, &bytes).unwrap();
        let whole = cold_object(&bytes, None);
        let (file, _) = cold.footer_with(&whole, &[]).unwrap();
        assert_eq!(file.len(), bytes.len() as u64);
        assert_eq!(file.parts.len(), 1);
    }

    #[test]
    fn first_devices_pick_the_groups_a_device_may_be_in() {
        let bytes = object();
        let parts = parts_and_crc(&bytes).unwrap().0;
        assert_eq!(parts.first_devices, ["a", "b", "c"]);
        assert_eq!(parts.groups_for(&["b"]), Some(vec![1]));
        assert_eq!(parts.groups_for(&["c", "a"]), Some(vec![0, 2]));
        // Between two groups' first devices: the earlier group; past the last: the last
        // group; before the first: none.
        assert_eq!(parts.groups_for(&["ab"]), Some(vec![0]));
        assert_eq!(parts.groups_for(&["zz"]), Some(vec![2]));
        assert_eq!(parts.groups_for(&["0"]), Some(vec![]));
        // A device split between two groups (the first ends with it, the second begins with
        // it) leaves the object without the hint.
        let mut enc = Encoder::new(&fields(), &["t".to_string()], &[]).unwrap();
        for tag in ["x", "y"] {
            let n = 100_000;
            let mut c = Column::new("v", FieldType::Float);
            c.data = ColumnData::Float((0..n).map(|j| j as f64).collect());
            c.valid = vec![true; n];
            let key = SeriesKey {
                device: "a".into(),
                tags: vec![("t".into(), tag.into())],
            };
            let rows = Rows {
                times: (0..n as i64).collect(),
                columns: vec![c],
            };
            enc.push(key, rows).unwrap();
        }
        let split = parts_and_crc(&Bytes::from(enc.finish().unwrap().0))
            .unwrap()
            .0;
        assert_eq!(split.groups.len(), 2);
        assert!(split.first_devices.is_empty(), "{:?}", split.first_devices);
        // Entries without them (older manifests, unsorted objects) give no hint.
        let none = ObjectParts {
            first_devices: vec![],
            ..parts.clone()
        };
        assert_eq!(none.groups_for(&["b"]), None);
        // The field is left out of the manifest when empty and read as empty when missing.
        let json = serde_json::to_string(&none).unwrap();
        assert!(!json.contains("first_devices"), "{json}");
        let back: ObjectParts = serde_json::from_str(&json).unwrap();
        assert_eq!(back, none);
        let back: ObjectParts =
            serde_json::from_str(&serde_json::to_string(&parts).unwrap()).unwrap();
        assert_eq!(back, parts);
    }

    #[test]
    fn a_read_of_a_device_fetches_its_group_with_the_footer() {
        let (dir, t, bytes, parts, obj) = stored(object());
        let misses = || t.counters.cache_misses.load(Ordering::Relaxed);
        let hits = || t.counters.cache_hits.load(Ordering::Relaxed);
        let ahead = parts.groups_for(&["b"]).unwrap();
        let (file, index) = t.footer_with(&obj, &ahead).unwrap();
        assert_eq!(
            (misses(), hits()),
            (2, 0),
            "the footer and group 1, fetched together"
        );
        // The group is in the file: no request, no cache lookup.
        let g1 = t.group(&obj, &file, 1).unwrap();
        assert_eq!((misses(), hits()), (2, 0));
        let got = decode_groups(g1, &index, vec![1], &fields(), Some("b")).unwrap();
        let whole = crate::cold::parquet::index(&bytes).unwrap();
        let want = decode_groups(bytes.clone(), &whole, vec![1], &fields(), Some("b")).unwrap();
        assert_eq!(got, want);
        // Another group still comes on its own.
        t.group(&obj, &file, 2).unwrap();
        assert_eq!(misses(), 3);
        // With the footer cached nothing is fetched ahead (the read asks per group), and a
        // group already cached is not fetched again.
        let (file, _) = t.footer_with(&obj, &[0, 1]).unwrap();
        assert_eq!((misses(), hits()), (3, 1));
        t.group(&obj, &file, 1).unwrap();
        assert_eq!((misses(), hits()), (3, 2));
        // A damaged group fetched ahead is left out and not cached (the guess may be one the
        // read never needs); fetched again when the read needs it, it fails as corruption.
        let cold = ColdTier::open(&format!("file://{}", dir.path().display()), 64 << 20).unwrap();
        let mut damaged = bytes.to_vec();
        damaged[parts.groups[1].0 as usize + 10] ^= 1;
        std::fs::write(dir.path().join(&obj.key), &damaged).unwrap();
        let (file, _) = cold.footer_with(&obj, &[1, 2]).unwrap();
        assert!(!cold.cache.lock().unwrap().holds(&part_key(&obj.key, "g1")));
        assert!(cold.cache.lock().unwrap().holds(&part_key(&obj.key, "g2")));
        assert_eq!(cold.counters.corrupt_objects.load(Ordering::Relaxed), 0);
        assert!(cold.last_error.lock().unwrap().is_none());
        cold.group(&obj, &file, 2).unwrap();
        let e = cold.group(&obj, &file, 1).unwrap_err();
        assert!(matches!(e, StorageError::Corrupt { .. }), "{e}");
        assert!(
            cold.last_error
                .lock()
                .unwrap()
                .as_ref()
                .unwrap()
                .contains("row group 1"),
            "{:?}",
            cold.last_error.lock().unwrap()
        );
        assert!(!cold.cache.lock().unwrap().holds(&part_key(&obj.key, "g1")));
    }

    #[test]
    fn a_small_object_is_fetched_whole_in_one_request() {
        let big = object();
        assert!(big.len() as u64 > WHOLE_BELOW, "{}", big.len());
        let (dir, t, bytes, _, obj) = stored(object_of(2_000));
        assert!((bytes.len() as u64) < WHOLE_BELOW, "{}", bytes.len());
        let misses = || t.counters.cache_misses.load(Ordering::Relaxed);
        let (file, index) = t.footer_with(&obj, &[0]).unwrap();
        assert_eq!(misses(), 1, "the whole object, one request");
        assert_eq!(file.len(), bytes.len() as u64);
        let g = t.group(&obj, &file, 0).unwrap();
        assert_eq!(misses(), 1, "its groups come from it");
        let got = decode_groups(g, &index, vec![0], &fields(), None).unwrap();
        assert_eq!(got[&canonical(&key("b"))].len(), 2_000);
        // A damaged small object is refused whole, against the object's checksum.
        let cold = ColdTier::open(&format!("file://{}", dir.path().display()), 0).unwrap();
        let mut damaged = bytes.to_vec();
        damaged[100] ^= 1;
        std::fs::write(dir.path().join(&obj.key), &damaged).unwrap();
        let e = cold.footer_with(&obj, &[]).unwrap_err();
        assert!(matches!(e, StorageError::Corrupt { .. }), "{e}");
    }
}
