//! `DELETE /api/v1/devices/{id}/data` (admin, unlimited token): erases a device's telemetry,
//! optionally only in `[start, end)` and in one database (`db`). Queries stop returning it when
//! the call answers; the next maintenance pass removes it from every segment
//! (`strata_storage::Engine::erase_device`). Audited as `erase_device_data`, success or failure.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use strata_storage::EraseRequest;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use crate::time::{format_rfc3339, parse_time};
use crate::write::{bad_query, database_name};

/// The audit action name.
const ACTION: &str = "erase_device_data";

/// Query parameters of an erase.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseParams {
    /// Only this database (default: every database).
    pub db: Option<String>,
    /// Inclusive lower bound (RFC 3339, a date, or integer nanoseconds).
    pub start: Option<String>,
    /// Exclusive upper bound.
    pub end: Option<String>,
}

/// Checks the parameters and turns them into an engine request.
fn request(device: String, p: EraseParams) -> Result<EraseRequest, ApiError> {
    if !strata_ingest::text::is_device_id(&device) {
        return Err(ApiError::BadRequest(format!(
            "'{device}' is not a valid device id ([A-Za-z0-9._:-], 1 to 128 characters)"
        )));
    }
    let time = |v: Option<String>, name: &str, default: i64| match v {
        None => Ok(default),
        Some(v) => parse_time(&v).map_err(|e| ApiError::BadRequest(format!("{name}: {e}"))),
    };
    let start = time(p.start, "start", i64::MIN)?;
    let end = time(p.end, "end", i64::MAX)?;
    if start >= end {
        return Err(ApiError::BadRequest("'start' must be before 'end'".into()));
    }
    let database = p.db.map(|d| database_name(&d)).transpose()?;
    Ok(EraseRequest {
        database,
        device,
        start,
        end,
    })
}

/// `DELETE /api/v1/devices/{id}/data`: `200 {"device", "database", "start", "end",
/// "tombstone", "series"}`.
pub async fn erase(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    params: Result<Query<EraseParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    if let Principal::Token(t) = &p
        && t.streams.is_some()
    {
        return Err(ApiError::Forbidden(
            "erasing a device's data needs an admin token without stream limits".into(),
        ));
    }
    let Query(params) = params.map_err(bad_query)?;
    let req = request(id, params)?;
    let engine = st.engine.clone();
    let job = req.clone();
    let result = tokio::task::spawn_blocking(move || engine.erase_device(&job))
        .await
        .map_err(ApiError::from_join)?;
    let range = |t: i64, open: i64| (t != open).then(|| format_rfc3339(t));
    let detail = json!({
        "database": req.database,
        "start": range(req.start, i64::MIN),
        "end": range(req.end, i64::MAX),
    });
    let outcome = match &result {
        Ok(r) => Ok(Some(
            json!({"range": detail, "tombstone": r.tombstone, "series": r.series}).to_string(),
        )),
        Err(e) => Err(format!("{e} ({detail})")),
    };
    let (registry, actor, target) = (st.registry.clone(), p.actor(), req.device.clone());
    let audited = tokio::task::spawn_blocking(move || {
        registry.audit_action(&actor, ACTION, &target, outcome)
    })
    .await
    .map_err(ApiError::from_join)?;
    if let Err(e) = audited {
        tracing::error!(error = %e, device = %req.device, "could not audit an erase");
    }
    let report = result?;
    tracing::info!(device = %req.device, actor = %p.actor(), tombstone = report.tombstone, "device data erased");
    Ok(Json(json!({
        "device": req.device,
        "database": req.database,
        "start": range(req.start, i64::MIN),
        "end": range(req.end, i64::MAX),
        "tombstone": report.tombstone,
        "series": report.series,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(db: Option<&str>, start: Option<&str>, end: Option<&str>) -> EraseParams {
        EraseParams {
            db: db.map(str::to_owned),
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
        }
    }

    #[test]
    fn parameters() {
        let r = request("truck-1".into(), EraseParams::default()).unwrap();
        assert_eq!((r.start, r.end, r.database), (i64::MIN, i64::MAX, None));
        let r = request(
            "t".into(),
            params(Some("fleet"), Some("2026-01-01T00:00:00Z"), Some("10")),
        );
        assert!(r.is_err(), "start after end is refused");
        let r = request("t".into(), params(None, Some("1"), Some("2"))).unwrap();
        assert_eq!((r.start, r.end), (1, 2));
        assert!(request("bad id".into(), EraseParams::default()).is_err());
        assert!(request("t".into(), params(Some("a b"), None, None)).is_err());
        assert!(request("t".into(), params(None, Some("yesterday"), None)).is_err());
    }
}
