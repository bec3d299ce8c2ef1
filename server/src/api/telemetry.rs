//! `POST /api/v1/devices/{id}/telemetry/{stream}?db=&precision=`: line protocol from one device.
//! The device authenticates with `Authorization: Basic base64(id:key)` and may only write as
//! itself; a token with the `write` scope may write on behalf of a registered device. Every row
//! is stored under the device `{id}`, and every line must name the measurement `{stream}`.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use strata_storage::DEFAULT_DATABASE;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::precision::precision_param;
use crate::state::AppState;
use crate::write::{DbParams, Target, bad_query, database_name, ingest};

/// `POST /api/v1/devices/{id}/telemetry/{stream}`: `204` once durable.
pub async fn telemetry(
    State(st): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((id, stream)): Path<(String, String)>,
    q: Result<Query<DbParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    match principal.device() {
        Some(d) if d != id => {
            return Err(ApiError::Forbidden(format!(
                "device '{d}' may only write its own telemetry, not device '{id}'"
            )));
        }
        Some(_) => {}
        None => {
            if !st.registry.device_exists(&id)? {
                return Err(ApiError::NotFound(format!("device '{id}' not found")));
            }
        }
    }
    let Query(q) = q.map_err(bad_query)?;
    let db = database_name(q.db.as_deref().unwrap_or(DEFAULT_DATABASE))?;
    let precision = precision_param(q.precision.as_deref())?;
    let mut target = Target::new(db, precision, principal);
    target.only_stream = Some(stream);
    target.device = Some(id);
    ingest(&st, target, &headers, body).await
}
