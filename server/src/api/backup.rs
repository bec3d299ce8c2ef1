//! Backup sessions over the admin HTTP API (`strata backup` is the client):
//!
//! - `POST /api/v1/backup` pins one consistent snapshot (`Engine::backup_snapshot`: MANIFEST,
//!   its segments by mapping, catalog log, WAL up to now, tombstones, lifecycle policies, rollup
//!   configuration and cursors, the cold-tier reference) plus copies of the registry (commands
//!   included) and of the rule store, each taken under its own write lock, and answers `201 {"id", "created_ns", "files": [{"path",
//!   "size", "crc32c"}]}`;
//! - `GET /api/v1/backup/{id}/files/{*path}` serves one file's bytes (a segment straight from its
//!   mapping, so compaction deleting the file meanwhile does not matter);
//! - `DELETE /api/v1/backup/{id}` releases the session.
//!
//! A session unused for [`IDLE`] is released by the next call, at most [`MAX_SESSIONS`] exist at
//! once. Segment checksums are cached by segment id (segments are immutable and ids never
//! reused), so an incremental run does not read unchanged segments again. Admin scope with no
//! stream limits; creating a session is audited (`backup_snapshot`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use strata_storage::{BackupSnapshot, COLD_REFERENCE_FILE};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// A session unused this long is released.
pub const IDLE: Duration = Duration::from_secs(600);
/// Most sessions at once (each pins segments and holds WAL, catalog and registry copies).
pub const MAX_SESSIONS: usize = 4;

/// Where a file's bytes come from.
#[derive(Debug, Clone, Copy)]
enum Source {
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
struct FileEntry {
    path: String,
    size: u64,
    crc32c: u32,
    source: Source,
}

/// One pinned snapshot.
struct Session {
    snapshot: BackupSnapshot,
    registry: Vec<u8>,
    /// `rules.redb`, when the server has a rule store.
    rules: Option<Vec<u8>>,
    /// The cold-tier reference as JSON, when the server runs with a cold store.
    cold: Option<Vec<u8>>,
    files: Vec<FileEntry>,
    last_used: Mutex<Instant>,
}

/// The live sessions and the segment checksum cache (part of the server state).
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Arc<Session>>>,
    /// Segment id → (size, CRC32C).
    crcs: Mutex<HashMap<u64, (u64, u32)>>,
}

impl Session {
    fn bytes(&self, source: Source) -> &[u8] {
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
struct Owned(Arc<Session>, Source);

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes(self.1)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sessions {
    fn expire(&self) {
        lock(&self.live).retain(|id, s| {
            let keep = lock(&s.last_used).elapsed() < IDLE;
            if !keep {
                tracing::warn!(backup = %id, "released an idle backup session");
            }
            keep
        });
    }

    fn get(&self, id: &str) -> Result<Arc<Session>, ApiError> {
        self.expire();
        let s = lock(&self.live).get(id).cloned().ok_or_else(|| {
            ApiError::NotFound(format!("no backup session '{id}' (released or expired)"))
        })?;
        *lock(&s.last_used) = Instant::now();
        Ok(s)
    }

    /// Lists the files of a snapshot with their sizes and checksums (segments from the cache).
    fn entries(&self, snap: &BackupSnapshot, extra: &Extra) -> Vec<FileEntry> {
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
struct Extra {
    registry: Vec<u8>,
    rules: Option<Vec<u8>>,
    cold: Option<Vec<u8>>,
}

impl Extra {
    /// Copies the registry and the rule store (each under its own write lock) and encodes the
    /// snapshot's cold reference.
    fn take(
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

fn unlimited(p: &Principal) -> Result<(), ApiError> {
    match p {
        Principal::Token(t) if t.streams.is_some() => Err(ApiError::Forbidden(
            "backups need an admin token without stream limits".into(),
        )),
        _ => Ok(()),
    }
}

/// A sortable, unique session id: UTC time of the snapshot and a few bits of the clock.
fn new_id(now_ns: i64) -> String {
    let t = crate::time::format_rfc3339(now_ns - now_ns.rem_euclid(1_000_000_000));
    let compact: String = t.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("{compact}-{:06x}", (now_ns / 1000) & 0xff_ffff)
}

/// `POST /api/v1/backup`.
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    rules: Option<Extension<Arc<strata_rules::Rules>>>,
) -> Result<Response, ApiError> {
    unlimited(&p)?;
    st.backups.expire();
    if lock(&st.backups.live).len() >= MAX_SESSIONS {
        return Err(ApiError::Unavailable(format!(
            "{MAX_SESSIONS} backup sessions are open already; finish or DELETE one first"
        )));
    }
    let (engine, registry, state) = (st.engine.clone(), st.registry.clone(), st.clone());
    let rules = rules.map(|Extension(r)| r);
    let made = tokio::task::spawn_blocking(move || {
        let snapshot = engine.backup_snapshot()?;
        let extra = Extra::take(&registry, rules.as_deref(), &snapshot)?;
        let files = state.backups.entries(&snapshot, &extra);
        Ok::<_, ApiError>((snapshot, extra, files))
    })
    .await
    .map_err(ApiError::from_join)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let id = new_id(now);
    let outcome = match &made {
        Ok((_, _, files)) => Ok(Some(format!("{} files", files.len()))),
        Err(e) => Err(e.to_string()),
    };
    let (reg, actor, target) = (st.registry.clone(), p.actor(), id.clone());
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = reg.audit_action(&actor, "backup_snapshot", &target, outcome) {
            tracing::error!(error = %e, "could not audit a backup");
        }
    })
    .await;
    let (snapshot, extra, files) = made?;
    let listed: Vec<Value> = files
        .iter()
        .map(|f| json!({"path": f.path, "size": f.size, "crc32c": f.crc32c}))
        .collect();
    let session = Arc::new(Session {
        snapshot,
        registry: extra.registry,
        rules: extra.rules,
        cold: extra.cold,
        files,
        last_used: Mutex::new(Instant::now()),
    });
    lock(&st.backups.live).insert(id.clone(), session);
    tracing::info!(backup = %id, files = listed.len(), actor = %p.actor(), "backup session opened");
    let body = json!({"id": id, "created_ns": now, "files": listed});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/v1/backup/{id}/files/{*path}`.
pub async fn file(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    unlimited(&p)?;
    let session = st.backups.get(&id)?;
    let entry = session
        .files
        .iter()
        .find(|f| f.path == path)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("backup '{id}' has no file '{path}'")))?;
    let body = Body::from(bytes::Bytes::from_owner(Owned(session, entry.source)));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::HeaderName::from_static("x-strata-crc32c"),
                format!("{:08x}", entry.crc32c),
            ),
        ],
        body,
    )
        .into_response())
}

/// `DELETE /api/v1/backup/{id}`.
pub async fn release(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    unlimited(&p)?;
    match lock(&st.backups.live).remove(&id) {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::NotFound(format!("no backup session '{id}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time() {
        let a = new_id(1_764_867_600_000_000_000);
        let b = new_id(1_764_867_601_000_000_000);
        assert!(a < b, "{a} {b}");
        assert!(strata_storage::backup::check_backup_id(&a).is_ok(), "{a}");
    }
}
