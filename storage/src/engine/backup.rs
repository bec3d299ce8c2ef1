//! A consistent view of a running engine for a backup ([`Engine::backup_snapshot`]).
//!
//! Under `flush_lock` (no flush runs, so the catalog log, the MANIFEST's WAL checkpoint and the
//! WAL files below the current one stay put), with the manifest and state locks held for an
//! instant: the WAL is rotated (every acknowledged write so far is in a closed file), and the
//! MANIFEST, its segments (by `Arc`: a compaction that deletes one afterwards does not disturb
//! the mapping the backup reads) and the tombstone list are taken. Still under `flush_lock`, the
//! closed WAL files from the MANIFEST's checkpoint up to the rotation and the catalog log are
//! read into memory. Restored, these files are a data directory that recovery opens to exactly
//! the acknowledged writes at the rotation (segments + catalog + WAL replay).
//!
//! [`Engine::backup_snapshot`]: crate::Engine::backup_snapshot

use std::sync::Arc;

use super::{Inner, LiveSegment};
use crate::error::{IoContext, Result};
use crate::manifest::segment_file_name;

/// One segment file of a backup snapshot, readable from its mapping.
#[derive(Debug, Clone)]
pub struct SnapshotSegment {
    /// Segment id (unique in the data directory, never reused).
    pub id: u64,
    /// File name in `segments/`.
    pub file_name: String,
    live: Arc<LiveSegment>,
}

impl SnapshotSegment {
    /// The file's bytes (the read-only mapping; valid even after compaction deleted the file).
    pub fn bytes(&self) -> &[u8] {
        self.live.segment.bytes()
    }
}

/// Everything a backup copies, taken at one instant (see the module documentation).
#[derive(Debug, Clone)]
pub struct BackupSnapshot {
    /// The MANIFEST file as saved (checksum header + JSON), naming exactly `segments`.
    pub manifest: Vec<u8>,
    /// `catalog.log` (the older JSON `catalog` is converted at open, so only the log is copied).
    pub catalog_log: Vec<u8>,
    /// Closed WAL files the MANIFEST's checkpoint still needs, oldest first: (file name, bytes).
    pub wal: Vec<(String, Vec<u8>)>,
    /// The `tombstones` file when one exists (erases not yet physically complete).
    pub tombstones: Option<Vec<u8>>,
    /// The live segments.
    pub segments: Vec<SnapshotSegment>,
}

/// Takes the snapshot (see the module documentation).
pub(super) fn snapshot(inner: &Inner) -> Result<BackupSnapshot> {
    inner.check_open()?;
    let _serial = inner.flush_lock.lock().map_err(|_| super::poisoned())?;
    let (manifest, segments, cut) = {
        let manifest = super::maintenance::lock_manifest(inner)?;
        let state = inner.write_state()?;
        let cut = inner.wal.rotate()?;
        let segments: Vec<SnapshotSegment> = state
            .segments
            .iter()
            .map(|l| SnapshotSegment {
                id: l.meta.id,
                file_name: segment_file_name(l.meta.id),
                live: l.clone(),
            })
            .collect();
        (manifest.clone(), segments, cut)
    };
    let manifest_path = &inner.paths.manifest;
    let manifest_bytes = std::fs::read(manifest_path).at(manifest_path)?;
    let mut wal = Vec::new();
    for id in manifest.wal_min_file..cut {
        let name = crate::wal::file_name(id);
        let path = inner.paths.wal.join(&name);
        match std::fs::read(&path) {
            Ok(bytes) => wal.push((name, bytes)),
            // Ids can be skipped (older builds poisoned the WAL when a rotation failed to create
            // its file).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(crate::StorageError::Io { path, source }),
        }
    }
    let catalog_path = super::recovery::catalog_log_path(&inner.paths);
    let catalog_log = match std::fs::read(&catalog_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(crate::StorageError::Io {
                path: catalog_path,
                source,
            });
        }
    };
    let tomb_path = inner.config.data_dir.join(super::erase::FILE_NAME);
    let tombstones = match std::fs::read(&tomb_path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(crate::StorageError::Io {
                path: tomb_path,
                source,
            });
        }
    };
    tracing::info!(
        segments = segments.len(),
        wal_files = wal.len(),
        "took a backup snapshot"
    );
    Ok(BackupSnapshot {
        manifest: manifest_bytes,
        catalog_log,
        wal,
        tombstones,
        segments,
    })
}
