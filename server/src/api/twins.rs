//! Device twins over HTTP (`docs/devices.md`):
//!
//! - `GET /api/v1/devices/{id}/twin`: the twin (`read` token, or the device itself with Basic
//!   device credentials), with an `ETag` header.
//! - `PATCH /api/v1/devices/{id}/twin/desired`: a JSON merge patch (RFC 7396) of the desired
//!   section by an application (`write` token); `If-Match` makes it conditional (412 when stale).
//!   The device's MQTT session is sent the patch at once.
//! - `PATCH /api/v1/devices/{id}/twin/reported`: the same for the reported section, by the device
//!   itself (or a `write` token on its behalf).
//!
//! Answers carry the whole twin after the change and its new `ETag`; a section that would exceed
//! `--twin-max-bytes` is 413, a patch deeper than `--twin-max-depth` or not an object 400.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use strata_registry::{Twin, TwinSection};

use crate::api::{REGISTRY_BODY_LIMIT, blocking, json_body, only_applications, same_device};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// The twin as JSON with its `ETag` header.
fn twin_response(twin: &Twin) -> Response {
    let mut response = Json(twin.to_json()).into_response();
    if let Ok(tag) = HeaderValue::from_str(&twin.etag()) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// The `If-Match` header, if sent.
fn if_match(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get(header::IF_MATCH)
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::BadRequest("If-Match must be visible ASCII".into()))
        })
        .transpose()
}

/// `GET /api/v1/devices/{id}/twin`.
pub async fn get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    same_device(&p, &id)?;
    let twin = blocking(&st, move |r| r.twin(&id)).await?;
    Ok(twin_response(&twin))
}

/// Applies a patch to one section.
async fn patch(
    st: &AppState,
    id: String,
    which: TwinSection,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Twin, Value), ApiError> {
    let patch: Value = json_body(body, REGISTRY_BODY_LIMIT)?;
    let tag = if_match(headers)?;
    let limits = st.plane.twin_limits();
    let applied = patch.clone();
    let twin = blocking(st, move |r| {
        r.patch_twin(&id, which, &applied, tag.as_deref(), limits)
    })
    .await?;
    Ok((twin, patch))
}

/// `PATCH /api/v1/devices/{id}/twin/desired` (applications).
pub async fn patch_desired(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    only_applications(&p, "change the desired properties of a twin")?;
    let (twin, patch) = patch(&st, id, TwinSection::Desired, &headers, body).await?;
    st.plane.desired_patched(&twin, &patch);
    Ok(twin_response(&twin))
}

/// `PATCH /api/v1/devices/{id}/twin/reported` (the device itself).
pub async fn patch_reported(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    same_device(&p, &id)?;
    let (twin, _) = patch(&st, id, TwinSection::Reported, &headers, body).await?;
    Ok(twin_response(&twin))
}
