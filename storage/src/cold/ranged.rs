//! Ranged reads of cold objects. A query that needs one device of one day used to fetch the
//! whole object (every device of that day) to check its CRC32C before serving a byte; on an
//! object store each request costs a round trip and every byte a transfer. Objects written
//! since now carry [`ObjectParts`] in their manifest entry: the byte range and CRC32C of each
//! row group and of the footer part (page indexes, metadata and tail, from the end of the last
//! row group to the end of the object). A read fetches the footer part, checks it, prunes row
//! groups by their statistics, and fetches and checks only the groups it decodes; each part is
//! cached on its own ([`ColdTier::footer`], [`ColdTier::group`]). The decoder sees the parts
//! through [`Sparse`], a Parquet `ChunkReader` over the fetched ranges only. An object listed
//! without parts (older manifests) is fetched and checked whole as before.

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
}

/// The parts of an object as written: row group ranges from its footer, in file order, each
/// after the one before and all before the footer part.
pub(crate) fn parts_of(bytes: &Bytes) -> CodecResult<ObjectParts> {
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(bytes)
        .map_err(|e| e.to_string())?;
    let mut groups = Vec::with_capacity(meta.num_row_groups());
    let mut end = 4u64; // after the leading magic `PAR1`
    for (g, rg) in meta.row_groups().iter().enumerate() {
        let ranges = rg.columns().iter().map(|c| c.byte_range());
        let start = ranges.clone().map(|(s, _)| s).min().unwrap_or(end);
        let stop = ranges.map(|(s, n)| s + n).max().unwrap_or(end);
        if start < end || stop > bytes.len() as u64 {
            return Err(format!(
                "row group {g} spans bytes {start}..{stop}, not after the group before it and within the object"
            ));
        }
        groups.push((
            start,
            stop,
            crc32c::crc32c(&bytes[start as usize..stop as usize]),
        ));
        end = stop;
    }
    Ok(ObjectParts {
        footer_at: end,
        footer_crc32c: crc32c::crc32c(&bytes[end as usize..]),
        groups,
    })
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

/// Cache key of one part of an object.
fn part_key(key: &str, part: &str) -> String {
    format!("{key}\u{0}{part}")
}

impl ColdTier {
    /// The footer part of `object` (ranged objects) with its parsed index, from the cache or
    /// the store (checked against the manifest's CRC32C); or, for an object without parts, the
    /// whole object. The [`Sparse`] file holds what was fetched.
    pub(crate) fn footer(&self, object: &ColdObject) -> Result<(Sparse, Arc<ObjectIndex>)> {
        let Some(parts) = &object.parts else {
            let (bytes, index) = self.fetch_indexed(object)?;
            return Ok((Sparse::whole(bytes), index));
        };
        let corrupt = |detail: String| self.corrupt(object, detail);
        let key = part_key(&object.key, "footer");
        let cached = self.cache.lock().map_err(|_| poisoned())?.get_indexed(&key);
        let bytes = match cached {
            Some((bytes, Some(index))) => {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok((
                    Sparse::new(object.bytes, vec![(parts.footer_at, bytes)]),
                    index,
                ));
            }
            Some((bytes, None)) => {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                bytes
            }
            None => {
                let range = parts.footer_at..object.bytes;
                self.fetch_part(object, &key, range, parts.footer_crc32c, "footer")?
            }
        };
        let file = Sparse::new(object.bytes, vec![(parts.footer_at, bytes)]);
        let index = super::parquet::index(&file)
            .map_err(|e| corrupt(format!("cannot read its footer: {e}")))?;
        let index = Arc::new(index);
        self.cache
            .lock()
            .map_err(|_| poisoned())?
            .set_index(&key, index.clone());
        Ok((file, index))
    }

    /// Row group `g` of a ranged `object` added to `file` (fetched, checked, cached); a file of
    /// a whole object is returned as it is.
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
        if range.start >= range.end || range.end > object.bytes {
            return Err(self.corrupt(
                object,
                format!(
                    "its manifest entry places its {what} at bytes {}..{} of {}",
                    range.start, range.end, object.bytes
                ),
            ));
        }
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        let store = self.store.clone();
        let path = self.path(&object.key);
        let r = range.clone();
        let bytes = self
            .block(async move { store.get_range(&path, r).await })
            .map_err(|e| store_error(&self.url, &format!("cannot read {}", object.key), e))?;
        let got = crc32c::crc32c(&bytes);
        if bytes.len() as u64 != range.end - range.start || got != crc {
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
        self.cache
            .lock()
            .map_err(|_| poisoned())?
            .put(key, bytes.clone());
        Ok(bytes)
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

    /// An object of three devices with 70,000 rows each: three row groups.
    fn object() -> Bytes {
        let mut enc = Encoder::new(&fields(), &[], &[]).unwrap();
        for (i, d) in ["a", "b", "c"].iter().enumerate() {
            let n = 70_000;
            let mut c = Column::new("v", FieldType::Float);
            c.data = ColumnData::Float((0..n).map(|j| (j as f64 + i as f64) / 4.0).collect());
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
        }
    }

    #[test]
    fn parts_tile_the_object_and_a_sparse_file_reads_like_the_whole() {
        let bytes = object();
        let parts = parts_of(&bytes).unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let t = ColdTier::open(&format!("file://{}", dir.path().display()), 64 << 20).unwrap();
        let bytes = object();
        let parts = parts_of(&bytes).unwrap();
        let obj = cold_object(&bytes, Some(parts.clone()));
        t.put_verified(&obj.key, bytes.clone()).unwrap();
        let (file, index) = t.footer(&obj).unwrap();
        let misses = || t.counters.cache_misses.load(Ordering::Relaxed);
        assert_eq!(misses(), 1, "one request: the footer");
        let g1 = t.group(&obj, &file, 1).unwrap();
        assert_eq!(misses(), 2, "and one for the group");
        let rows = decode_groups(g1, &index, vec![1], &fields(), None).unwrap();
        assert_eq!(rows[&canonical(&key("b"))].len(), 70_000);
        // Warm: neither part is fetched again.
        let (file, _) = t.footer(&obj).unwrap();
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
        let e = cold.footer(&obj).unwrap_err();
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
        let (file, _) = cold.footer(&whole).unwrap();
        assert_eq!(file.len(), bytes.len() as u64);
        assert_eq!(file.parts.len(), 1);
    }
}
