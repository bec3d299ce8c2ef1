//! The manifest: the durable list of live segment files and the WAL checkpoint. Replaced atomically
//! (temp file, fsync, rename, directory fsync) at every flush and compaction; a segment file not in
//! the manifest is an orphan from an interrupted flush or compaction and is deleted at open.

use std::path::Path;

use crate::error::{IoContext, Result, StorageError};
use crate::fsutil::{check_checksum_header, with_checksum_header, write_atomic};

/// Manifest entry for one segment file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SegmentMeta {
    /// File id; the file is `segments/{id:016}.seg`. Higher ids hold newer data for overlapping rows.
    pub id: u64,
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
const VERSION: u32 = 1;

impl Manifest {
    /// Loads the manifest, or an empty one when the file does not exist (a new data directory).
    pub fn load(path: &Path) -> Result<Manifest> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Manifest {
                    version: VERSION,
                    next_segment_id: 1,
                    ..Default::default()
                });
            }
            Err(e) => return Err(e).at(path),
        };
        let body = check_checksum_header(TAG, &bytes, path)?;
        let m: Manifest = serde_json::from_slice(body).map_err(|e| StorageError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        if m.version != VERSION {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "manifest version {} is not supported by this build (expected {VERSION})",
                    m.version
                ),
            });
        }
        Ok(m)
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

/// File name of a segment id.
pub(crate) fn segment_file_name(id: u64) -> String {
    format!("{id:016}.seg")
}
