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
//! Taken at the same instant (under the state lock of the rotation): the rollup configuration
//! and back-fill cursors (`rollups.json`, encoded from memory: every cursor it holds was moved
//! after the rollup rows below it were written, so those rows are in the WAL cut) and the cold
//! objects the live state reads (the cold-tier reference). `LIFECYCLE` is read under the policy
//! store's read lock just before (never nested with the other locks: a policy change holds the
//! store's write lock while it takes the state lock); should a policy change fall in between,
//! open reconciles the rollup configuration with the policies, the source of truth.
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
    /// `LIFECYCLE` (the lifecycle policies) when one exists.
    pub lifecycle: Option<Vec<u8>>,
    /// `rollups.json` (rollup configuration and back-fill cursors) when any rollup is configured.
    pub rollups: Option<Vec<u8>>,
    /// The cold-tier reference when the engine runs with a cold store.
    pub cold: Option<ColdReference>,
    /// The objects `cold` lists, held so that an erase or a retention step dropping them while
    /// the snapshot lives (a backup session copying them with `--with-cold`) deletes them only
    /// after it is gone (`cold_retire.rs`).
    _cold_pins: Vec<std::sync::Arc<crate::cold::ColdObject>>,
}

/// What a snapshot read from the cold tier: the store and the objects (cold objects are not
/// copied into a backup; a restore pointed at the same store reads them from there).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColdReference {
    /// The cold store URL the engine runs with.
    pub url: String,
    /// Number of the newest cold manifest committed when the snapshot was taken.
    pub manifest_number: u64,
    /// The cold objects the snapshot's reads used (key, time range, rows, size, CRC32C).
    pub objects: Vec<crate::cold::ColdObject>,
}

/// File name of the cold-tier reference in a backup and in a restored data directory.
pub const COLD_REFERENCE_FILE: &str = "COLD";

impl ColdReference {
    /// The reference as JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses a reference (`what` names it in errors).
    pub fn decode(bytes: &[u8], what: &str) -> Result<ColdReference> {
        serde_json::from_slice(bytes).map_err(|e| crate::StorageError::Corrupt {
            path: std::path::PathBuf::from(what),
            detail: e.to_string(),
        })
    }
}

/// Reads a file that may not exist.
fn read_optional(path: &std::path::Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(crate::StorageError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `LIFECYCLE` as saved, read under the policy store's read lock (no save is half done).
fn lifecycle_bytes(inner: &Inner) -> Result<Option<Vec<u8>>> {
    let _store = inner
        .lifecycle
        .store
        .read()
        .map_err(|_| super::poisoned())?;
    read_optional(
        &inner
            .config
            .data_dir
            .join(crate::lifecycle::store::FILE_NAME),
    )
}

/// Takes the snapshot (see the module documentation).
pub(super) fn snapshot(inner: &Inner) -> Result<BackupSnapshot> {
    inner.check_open()?;
    let lifecycle = lifecycle_bytes(inner)?;
    let _serial = inner.flush_lock.lock().map_err(|_| super::poisoned())?;
    // MANIFEST and tombstones are read while the locks their writers hold are held (compaction,
    // retention and erase commit under the MANIFEST lock, tombstones change under the state
    // lock), so the bytes name exactly the segments listed here.
    let (manifest, manifest_bytes, tombstones, segments, cut, rollups, cold_objects) = {
        let manifest = super::flush::lock_manifest(inner)?;
        let state = inner.write_state()?;
        let manifest_path = &inner.paths.manifest;
        let manifest_bytes = std::fs::read(manifest_path).at(manifest_path)?;
        let tombstones = read_optional(&inner.config.data_dir.join(super::tombstone::FILE_NAME))?;
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
        let rollups = (!state.rollups.is_empty()).then(|| state.rollups.encode());
        let cold = state.cold.clone();
        (
            manifest.clone(),
            manifest_bytes,
            tombstones,
            segments,
            cut,
            rollups,
            cold,
        )
    };
    crate::fsutil::step(&inner.config.data_dir, "backup-locks-released");
    // Cold manifests are committed before the live state changes, so this number's list
    // holds every object the state named a moment ago (or their rewrites).
    let cold = match &inner.cold {
        None => None,
        Some(tier) => Some(ColdReference {
            url: tier.url().to_string(),
            manifest_number: inner
                .cold_manifest
                .lock()
                .map_err(|_| super::poisoned())?
                .number,
            objects: cold_objects.iter().map(|o| o.as_ref().clone()).collect(),
        }),
    };
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
        lifecycle,
        rollups,
        cold,
        _cold_pins: cold_objects,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::engine::fault_tests::point;
    use crate::manifest::Manifest;
    use crate::{Engine, EngineConfig};

    /// A snapshot's segments as its MANIFEST bytes name them (written to `path` to be read
    /// back) and as it lists them.
    fn named_and_listed(engine: &Engine, path: &std::path::Path) -> (BTreeSet<u64>, BTreeSet<u64>) {
        let snap = engine.backup_snapshot().unwrap();
        std::fs::write(path, &snap.manifest).unwrap();
        let named = Manifest::load(path)
            .unwrap()
            .segments
            .iter()
            .map(|s| s.id)
            .collect();
        (named, snap.segments.iter().map(|s| s.id).collect())
    }

    /// Snapshots taken while flushes and compactions commit: the MANIFEST bytes of each name
    /// exactly the segments it lists (a restore of it opens without broken or orphan segments).
    #[test]
    fn a_snapshot_manifest_names_exactly_its_segments_during_compactions() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = EngineConfig::new(dir.path());
        cfg.background = false;
        let engine = Arc::new(Engine::open(cfg).unwrap());
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("MANIFEST");
        // Deterministically first: a compaction commits right after the snapshot let go of
        // its locks.
        for t in 1000..1003 {
            engine.write(&point(t)).unwrap();
            engine.flush().unwrap();
        }
        let compactor = engine.clone();
        crate::fsutil::on_step(dir.path(), "backup-locks-released", move || {
            compactor.compact().unwrap();
        });
        let (named, listed) = named_and_listed(&engine, &path);
        assert_eq!(named, listed, "a compaction right after the locks");
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (engine, done) = (engine.clone(), done.clone());
            std::thread::spawn(move || {
                for t in 0..600 {
                    engine.write(&point(t)).unwrap();
                    engine.flush().unwrap();
                    if t % 3 == 2 {
                        engine.compact().unwrap();
                    }
                }
                done.store(true, Ordering::Relaxed);
            })
        };
        let mut snapshots = 0;
        while !done.load(Ordering::Relaxed) {
            let (named, listed) = named_and_listed(&engine, &path);
            assert_eq!(named, listed, "snapshot {snapshots}");
            snapshots += 1;
        }
        writer.join().unwrap();
        assert!(snapshots > 0);
    }
}
