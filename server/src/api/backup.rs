//! Backup sessions over the admin HTTP API (`strata backup` is the client):
//!
//! - `POST /api/v1/backup` pins one consistent snapshot (`Engine::backup_snapshot`: MANIFEST,
//!   its segments by mapping, catalog log, WAL up to now, tombstones, lifecycle policies, rollup
//!   configuration and cursors, the cold-tier reference) plus copies of the registry (commands
//!   included) and of the rule store, each taken under its own write lock, and answers `201 {"id", "created_ns", "files": [{"path",
//!   "size", "crc32c"}]}`;
//! - `GET /api/v1/backup/{id}/files/{*path}` serves one file's bytes (a segment straight from its
//!   mapping, so compaction deleting the file meanwhile does not matter);
//! - `GET /api/v1/backup/{id}` tells the session's file count and bytes and keeps it alive;
//! - `DELETE /api/v1/backup/{id}` releases the session.
//!
//! A session unused for `--backup-session-idle` (default [`IDLE`](crate::backup_sessions::IDLE)) is released by the next call, at most [`MAX_SESSIONS`](crate::backup_sessions::MAX_SESSIONS) exist at
//! once. Segment checksums are cached by segment id (segments are immutable and ids never
//! reused), so an incremental run does not read unchanged segments again. Admin scope with no
//! stream limits; creating a session is audited (`backup_snapshot`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::backup_sessions::{Extra, MAX_SESSIONS, Owned, Session, lock};
use crate::error::ApiError;
use crate::state::AppState;

fn unlimited(p: &Principal) -> Result<(), ApiError> {
    match p {
        Principal::Token(t) if t.streams.is_some() => Err(ApiError::Forbidden(
            "backups need an admin token without stream limits".into(),
        )),
        _ => Ok(()),
    }
}

/// A sortable, unique session id: UTC time of the snapshot to the second, then its nanoseconds
/// (zero-padded, so two backups within one second also sort in time order: restore takes the
/// newest by this order).
fn new_id(now_ns: i64) -> String {
    let t = crate::time::format_rfc3339(now_ns - now_ns.rem_euclid(1_000_000_000));
    let compact: String = t.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("{compact}-{:09}", now_ns.rem_euclid(1_000_000_000))
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
    let idle = st.backups.idle().as_secs_f64();
    let body = json!({"id": id, "created_ns": now, "files": listed, "idle_release_s": idle});
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

/// `GET /api/v1/backup/{id}`: the session's files and how long it stays unused before it is
/// released; the call counts as a use, so a client pacing a long copy (`--max-rate`) keeps its
/// session alive with it.
pub async fn status(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    unlimited(&p)?;
    let session = st.backups.get(&id)?;
    let bytes: u64 = session.files.iter().map(|f| f.size).sum();
    Ok(Json(json!({
        "id": id,
        "files": session.files.len(),
        "bytes": bytes,
        "idle_release_s": st.backups.idle().as_secs_f64(),
    })))
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
        // Within one second too, whatever the microsecond clock's low bits (an id of the old form
        // wrapped every 16.8 s, and restore then picked the older of two backups).
        let c = new_id(1_764_867_601_016_777_215);
        let d = new_id(1_764_867_601_016_777_216);
        assert!(b < c && c < d, "{b} {c} {d}");
        assert!(strata_storage::backup::check_backup_id(&a).is_ok(), "{a}");
    }
}
