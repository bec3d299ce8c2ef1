//! The backup sessions a server holds open (`POST /api/v1/backup` creates one, see
//! `api/backup.rs`): each pins one consistent engine snapshot plus copies of the registry and the
//! rule store, lists its files with sizes and CRC32C, and serves their bytes; idle sessions
//! expire. Kept apart from the HTTP handlers so the shared state does not depend on them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_storage::{BackupSnapshot, COLD_REFERENCE_FILE};

use crate::error::ApiError;

/// A session unused this long is released (default of `--backup-session-idle`).
pub const IDLE: Duration = Duration::from_secs(600);
/// Most sessions at once (each pins segments and holds WAL, catalog and registry copies).
pub const MAX_SESSIONS: usize = 4;

/// Where a file's bytes come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    Segment(usize),
    Wal(usize),
    Manifest,
    Catalog,
    Tombstones,
    Registry,
    Rules,
    Lifecycle,
    Rollups,
    Cold,
}

#[derive(Debug, Clone)]
pub(crate) struct FileEntry {
    pub(crate) path: String,
    pub(crate) size: u64,
    pub(crate) crc32c: u32,
    pub(crate) source: Source,
}

/// One pinned snapshot.
pub(crate) struct Session {
    pub(crate) snapshot: BackupSnapshot,
    pub(crate) registry: Vec<u8>,
    /// `rules.redb`, when the server has a rule store.
    pub(crate) rules: Option<Vec<u8>>,
    /// The cold-tier reference as JSON, when the server runs with a cold store.
    pub(crate) cold: Option<Vec<u8>>,
    pub(crate) files: Vec<FileEntry>,
    pub(crate) last_used: Mutex<Instant>,
}

/// The live sessions and the segment checksum cache (part of the server state).
pub struct Sessions {
    pub(crate) live: Mutex<HashMap<String, Arc<Session>>>,
    /// Segment id → (size, CRC32C).
    pub(crate) crcs: Mutex<HashMap<u64, (u64, u32)>>,
    /// A session unused this long is released ([`IDLE`] unless the server sets it).
    idle: Mutex<Duration>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            live: Mutex::default(),
            crcs: Mutex::default(),
            idle: Mutex::new(IDLE),
        }
    }
}

impl Session {
    pub(crate) fn bytes(&self, source: Source) -> &[u8] {
        let s = &self.snapshot;
        match source {
            Source::Segment(i) => s.segments[i].bytes(),
            Source::Wal(i) => &s.wal[i].1,
            Source::Manifest => &s.manifest,
            Source::Catalog => &s.catalog_log,
            Source::Tombstones => s.tombstones.as_deref().unwrap_or_default(),
            Source::Registry => &self.registry,
            Source::Rules => self.rules.as_deref().unwrap_or_default(),
            Source::Lifecycle => s.lifecycle.as_deref().unwrap_or_default(),
            Source::Rollups => s.rollups.as_deref().unwrap_or_default(),
            Source::Cold => self.cold.as_deref().unwrap_or_default(),
        }
    }
}

/// A file of a session as a response body without copying it.
pub(crate) struct Owned(pub(crate) Arc<Session>, pub(crate) Source);

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes(self.1)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sessions {
    /// Sets how long an unused session lives (`--backup-session-idle`, at least a second).
    pub fn set_idle(&self, idle: Duration) {
        *lock(&self.idle) = idle.max(Duration::from_secs(1));
    }

    /// How long an unused session lives.
    pub fn idle(&self) -> Duration {
        *lock(&self.idle)
    }

    pub(crate) fn expire(&self) {
        let idle = self.idle();
        lock(&self.live).retain(|id, s| {
            let keep = lock(&s.last_used).elapsed() < idle;
            if !keep {
                tracing::warn!(backup = %id, "released an idle backup session");
            }
            keep
        });
    }

    pub(crate) fn get(&self, id: &str) -> Result<Arc<Session>, ApiError> {
        self.expire();
        let s = lock(&self.live).get(id).cloned().ok_or_else(|| {
            ApiError::NotFound(format!("no backup session '{id}' (released or expired)"))
        })?;
        *lock(&s.last_used) = Instant::now();
        Ok(s)
    }

    /// Lists the files of a snapshot with their sizes and checksums (segments from the cache).
    pub(crate) fn entries(&self, snap: &BackupSnapshot, extra: &Extra) -> Vec<FileEntry> {
        let entry = |path: String, bytes: &[u8], source| FileEntry {
            path,
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
            source,
        };
        let mut out = Vec::new();
        for (i, seg) in snap.segments.iter().enumerate() {
            let bytes = seg.bytes();
            let cached = lock(&self.crcs).get(&seg.id).copied();
            let (size, crc) = match cached {
                Some((size, crc)) if size == bytes.len() as u64 => (size, crc),
                _ => {
                    let v = (bytes.len() as u64, crc32c::crc32c(bytes));
                    lock(&self.crcs).insert(seg.id, v);
                    v
                }
            };
            out.push(FileEntry {
                path: format!("segments/{}", seg.file_name),
                size,
                crc32c: crc,
                source: Source::Segment(i),
            });
        }
        let live: std::collections::HashSet<u64> = snap.segments.iter().map(|s| s.id).collect();
        lock(&self.crcs).retain(|id, _| live.contains(id));
        for (i, (name, bytes)) in snap.wal.iter().enumerate() {
            out.push(entry(format!("wal/{name}"), bytes, Source::Wal(i)));
        }
        out.push(entry("MANIFEST".into(), &snap.manifest, Source::Manifest));
        out.push(entry(
            "catalog.log".into(),
            &snap.catalog_log,
            Source::Catalog,
        ));
        if let Some(t) = &snap.tombstones {
            out.push(entry("tombstones".into(), t, Source::Tombstones));
        }
        out.push(entry(
            "registry.redb".into(),
            &extra.registry,
            Source::Registry,
        ));
        let optional = [
            ("rules.redb", extra.rules.as_deref(), Source::Rules),
            ("LIFECYCLE", snap.lifecycle.as_deref(), Source::Lifecycle),
            ("rollups.json", snap.rollups.as_deref(), Source::Rollups),
            (COLD_REFERENCE_FILE, extra.cold.as_deref(), Source::Cold),
        ];
        for (name, bytes, source) in optional {
            if let Some(b) = bytes {
                out.push(entry(name.into(), b, source));
            }
        }
        out
    }
}

/// The copies a session holds besides the engine snapshot.
pub(crate) struct Extra {
    pub(crate) registry: Vec<u8>,
    pub(crate) rules: Option<Vec<u8>>,
    pub(crate) cold: Option<Vec<u8>>,
}

impl Extra {
    /// Copies the registry and the rule store (each under its own write lock) and encodes the
    /// snapshot's cold reference.
    pub(crate) fn take(
        registry: &strata_registry::Registry,
        rules: Option<&strata_rules::Rules>,
        snap: &BackupSnapshot,
    ) -> Result<Extra, ApiError> {
        let rules = match rules {
            Some(r) => Some(r.backup_bytes().map_err(|e| {
                ApiError::Internal(format!("cannot copy the rule store for the backup: {e}"))
            })?),
            None => None,
        };
        Ok(Extra {
            registry: registry.backup_bytes()?,
            rules,
            cold: snap.cold.as_ref().map(|c| c.encode()),
        })
    }
}
