//! The manifest: the durable list of live segment files and the WAL checkpoint. Replaced atomically
//! (temp file, fsync, rename, directory fsync) at every flush and compaction; a segment file not in
//! the manifest is an orphan from an interrupted flush or compaction and is deleted at open. A
//! missing manifest is a new directory only when no segment exists and the WAL is complete from its
//! first file (`engine/recovery.rs`); a new directory gets its manifest at its first open.
//!
//! Version 2 adds `seq`, the age-order key of a segment (see [`SegmentMeta::seq`]); a version 1
//! manifest is read with `seq = id`, which was its order.

use std::path::Path;

use crate::error::{IoContext, Result, StorageError};
use crate::fsutil::{check_checksum_header, with_checksum_header, write_atomic};

/// Manifest entry for one segment file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SegmentMeta {
    /// File id; the file is `segments/{id:016}.seg`. Unique, never reused.
    pub id: u64,
    /// Age-order key: for overlapping rows, the segment with the higher `(seq, id)` holds the newer
    /// data. A flushed segment has `seq = id`; a compaction output has the greatest `seq` of its
    /// inputs, so it still sorts before segments flushed while it was being merged.
    #[serde(default)]
    pub seq: u64,
    pub database: String,
    pub stream: String,
    pub partition_start: i64,
    pub min_time: i64,
    pub max_time: i64,
    pub rows: u64,
    pub bytes: u64,
}

/// The manifest contents.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Manifest {
    pub version: u32,
    /// Next segment file id to allocate.
    pub next_segment_id: u64,
    /// WAL files with an id below this hold only data already in segments.
    pub wal_min_file: u64,
    pub segments: Vec<SegmentMeta>,
}

const TAG: &str = "STRATA-MANIFEST";
const VERSION: u32 = 2;
/// The previous version (no `seq`: segments were ordered by id), still read.
const VERSION_1: u32 = 1;

impl Manifest {
    /// The manifest of a new data directory: no segments, every WAL file replayed.
    pub fn empty() -> Manifest {
        Manifest {
            version: VERSION,
            next_segment_id: 1,
            ..Default::default()
        }
    }

    /// Loads the manifest, or an empty one when the file does not exist (tests).
    #[cfg(test)]
    pub fn load(path: &Path) -> Result<Manifest> {
        Ok(Manifest::load_existing(path)?.unwrap_or_else(Manifest::empty))
    }

    /// Loads the manifest; `None` when the file does not exist (recovery decides what that means).
    pub fn load_existing(path: &Path) -> Result<Option<Manifest>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(path),
        };
        let body = check_checksum_header(TAG, &bytes, path)?;
        let mut m: Manifest = serde_json::from_slice(body).map_err(|e| StorageError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        if m.version == VERSION_1 {
            m.segments.iter_mut().for_each(|s| s.seq = s.id);
            m.version = VERSION;
        }
        if m.version != VERSION {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "manifest version {} is not supported by this build (expected {VERSION})",
                    m.version
                ),
            });
        }
        Ok(Some(m))
    }

    /// Writes the manifest atomically and durably.
    pub fn save(&self, path: &Path) -> Result<()> {
        let body = serde_json::to_vec_pretty(self)
            .map_err(|e| StorageError::InvalidInput(e.to_string()))?;
        write_atomic(path, &with_checksum_header(TAG, &body))
    }

    /// Allocates a segment file id.
    pub fn allocate_id(&mut self) -> u64 {
        let id = self.next_segment_id;
        self.next_segment_id += 1;
        id
    }
}

impl SegmentMeta {
    /// Sort key in age order (oldest first): see [`SegmentMeta::seq`].
    pub fn age(&self) -> (u64, u64) {
        (self.seq, self.id)
    }
}

/// File name of a segment id.
pub(crate) fn segment_file_name(id: u64) -> String {
    format!("{id:016}.seg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_manifest_is_read_with_seq_equal_to_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("MANIFEST");
        let body = br#"{"version":1,"next_segment_id":9,"wal_min_file":3,"segments":[
            {"id":7,"database":"db","stream":"m","partition_start":0,"min_time":1,"max_time":2,"rows":2,"bytes":100},
            {"id":4,"database":"db","stream":"m","partition_start":0,"min_time":1,"max_time":2,"rows":2,"bytes":100}]}"#;
        std::fs::write(&path, with_checksum_header(TAG, body)).unwrap();
        let m = Manifest::load(&path).unwrap();
        assert_eq!(m.version, VERSION);
        let seqs: Vec<(u64, u64)> = m.segments.iter().map(|s| (s.id, s.seq)).collect();
        assert_eq!(seqs, vec![(7, 7), (4, 4)]);
        m.save(&path).unwrap();
        assert_eq!(Manifest::load(&path).unwrap(), m);
    }

    #[test]
    fn newer_manifest_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("MANIFEST");
        let body = br#"{"version":3,"next_segment_id":1,"wal_min_file":0,"segments":[]}"#;
        std::fs::write(&path, with_checksum_header(TAG, body)).unwrap();
        let err = Manifest::load(&path).unwrap_err().to_string();
        assert!(err.contains("version 3"), "{err}");
    }
}
