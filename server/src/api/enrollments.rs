//! Zero-touch provisioning (`docs/devices.md`): enrollment groups (`/api/v1/enrollments`, admin
//! tokens; the group key is returned once, at creation) and the device-facing
//! `POST /api/v1/provision/{enrollment}`, authenticated by the device's derived key
//! (`Authorization: Basic base64(device_id:derived_key)`) instead of a registered identity.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use strata_registry::{Enrollment, NewEnrollment};

use crate::api::devices::secret_response;
use crate::api::{REGISTRY_BODY_LIMIT, blocking, json_body};
use crate::auth::Principal;
use crate::credentials::{self, Presented};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /api/v1/enrollments`: 201 with the group and its `group_key` (shown once).
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let new: NewEnrollment = json_body(body, REGISTRY_BODY_LIMIT)?;
    let actor = p.actor();
    let created = blocking(&st, move |r| r.create_enrollment(&actor, new)).await?;
    tracing::info!(enrollment = %created.enrollment.id, actor = %p.actor(), "enrollment group created");
    Ok(secret_response(StatusCode::CREATED, &created))
}

/// `GET /api/v1/enrollments`.
pub async fn list(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = blocking(&st, |r| r.enrollments()).await?;
    Ok(Json(json!({ "enrollments": all })))
}

/// `GET /api/v1/enrollments/{id}` (never the key).
pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Enrollment>, ApiError> {
    Ok(Json(blocking(&st, move |r| r.enrollment(&id)).await?))
}

/// `POST /api/v1/enrollments/{id}/disable`.
pub async fn disable(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Enrollment>, ApiError> {
    set_enabled(&st, &p, id, false).await
}

/// `POST /api/v1/enrollments/{id}/enable`.
pub async fn enable(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Enrollment>, ApiError> {
    set_enabled(&st, &p, id, true).await
}

/// Enables or disables an enrollment group on behalf of `p` (audited by the registry).
async fn set_enabled(
    st: &AppState,
    p: &Principal,
    id: String,
    enabled: bool,
) -> Result<Json<Enrollment>, ApiError> {
    let actor = p.actor();
    Ok(Json(
        blocking(st, move |r| r.set_enrollment_enabled(&actor, &id, enabled)).await?,
    ))
}

/// `DELETE /api/v1/enrollments/{id}`: 204 (provisioned devices stay).
pub async fn delete(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let actor = p.actor();
    blocking(&st, move |r| r.delete_enrollment(&actor, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/provision/{enrollment}` with `Authorization: Basic base64(device_id:key)`,
/// key = hex HMAC-SHA256(group key, device id): 201 with the device, its credentials and
/// endpoints, also for an idempotent repeat (`"created": false`). 401 unknown group or wrong
/// key, 403 disabled group or device, 409 the id is registered with other credentials.
pub async fn provision(
    State(st): State<AppState>,
    Path(enrollment): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (device, key) = match credentials::from_request(&headers, None) {
        Ok(Some(Presented::Basic { user, password })) => (user, password),
        Ok(_) => {
            return Err(ApiError::Unauthorized(
                "provisioning needs 'Authorization: Basic base64(device_id:derived_key)'".into(),
            ));
        }
        Err(e) => return Err(ApiError::Unauthorized(e.to_string())),
    };
    let (group, id, k) = (enrollment.clone(), device.clone(), key.clone());
    let done = blocking(&st, move |r| r.provision(&group, &id, &k)).await?;
    if done.created {
        tracing::info!(device = %device, enrollment = %enrollment, "device provisioned");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let mut endpoints = json!({ "http": format!("http://{host}") });
    if let Some(port) = st.plane.mqtt_port() {
        endpoints["mqtt"] = json!(format!("mqtt://{hostname}:{port}"));
    }
    let body = json!({
        "id": device,
        "created": done.created,
        "enrollment": enrollment,
        "device": done.device,
        "credentials": {"type": "key", "device_id": device, "key": key},
        "endpoints": endpoints,
        "topics": {
            "telemetry": format!("devices/{device}/telemetry"),
            "commands": format!("devices/{device}/commands/#"),
            "twin_desired": format!("devices/{device}/twin/desired"),
            "twin_reported": format!("devices/{device}/twin/reported"),
            "methods": format!("devices/{device}/methods/#"),
        },
    });
    Ok(secret_response(StatusCode::CREATED, &body).into_response())
}
