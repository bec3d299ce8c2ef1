//! Zero-touch provisioning (`docs/devices.md`): enrollment groups (`/api/v1/enrollments`, admin
//! tokens; the group key is returned once, at creation) and the device-facing
//! `POST /api/v1/provision/{enrollment}`, authenticated by the device's derived key
//! (`Authorization: Basic base64(device_id:derived_key)`) instead of a registered identity, or,
//! for a group created with a `ca_cert`, by an HTTPS client certificate signed by that CA
//! (the certificate's subject CN is the device id). Every change to a group reloads the CA
//! certificates the TLS listeners trust ([`ClientVerifier`]).

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_server::tls::TlsInfo;
use serde_json::{Value, json};
use strata_registry::{Enrollment, NewEnrollment, ProvisionCredential, ProvisionRequest};

use crate::api::devices::secret_response;
use crate::api::{REGISTRY_BODY_LIMIT, blocking, json_body};
use crate::auth::Principal;
use crate::credentials::{self, Presented};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tls::ClientVerifier;
use crate::tls::identity::certificate_identity;

/// The TLS client-certificate verifier, when the server has TLS listeners with client auth.
type Verifier = Option<Extension<Arc<ClientVerifier>>>;

/// Reloads the enrollment CAs the TLS listeners trust after a group changed.
async fn reload_cas(st: &AppState, verifier: &Verifier) -> Result<(), ApiError> {
    if let Some(Extension(v)) = verifier {
        let v = v.clone();
        blocking(st, move |r| v.enrolled().load(r)).await?;
    }
    Ok(())
}

/// `POST /api/v1/enrollments`: 201 with the group and its `group_key` (shown once).
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    verifier: Verifier,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    super::may_mint_device_credentials(&st, &p)?;
    let new: NewEnrollment = json_body(body, REGISTRY_BODY_LIMIT)?;
    if let Some(pem) = &new.ca_cert {
        crate::tls::enrolled::ca_verifier(pem)
            .map_err(|e| ApiError::BadRequest(format!("ca_cert: {e}")))?;
    }
    let actor = p.actor();
    let created = blocking(&st, move |r| r.create_enrollment(&actor, new)).await?;
    reload_cas(&st, &verifier).await?;
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
    verifier: Verifier,
    Path(id): Path<String>,
) -> Result<Json<Enrollment>, ApiError> {
    let group = set_enabled(&st, &p, id, false).await?;
    reload_cas(&st, &verifier).await?;
    Ok(group)
}

/// `POST /api/v1/enrollments/{id}/enable`.
pub async fn enable(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    verifier: Verifier,
    Path(id): Path<String>,
) -> Result<Json<Enrollment>, ApiError> {
    super::may_mint_device_credentials(&st, &p)?;
    let group = set_enabled(&st, &p, id, true).await?;
    reload_cas(&st, &verifier).await?;
    Ok(group)
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
    verifier: Verifier,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let actor = p.actor();
    blocking(&st, move |r| r.delete_enrollment(&actor, &id)).await?;
    reload_cas(&st, &verifier).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/provision/{enrollment}` with `Authorization: Basic base64(device_id:key)`,
/// key = hex HMAC-SHA256(group key, device id), or without credentials over HTTPS with a
/// client certificate signed by a certificate group's CA: 201 with the device, its credentials
/// and endpoints, also for an idempotent repeat (`"created": false`). 401 unknown group, wrong
/// key or a certificate not signed by the group's CA, 403 disabled group or device, 409 the id
/// is registered with other credentials. Requests are provisioned in batches sharing one
/// transaction (`crate::group_commit`).
pub async fn provision(
    State(st): State<AppState>,
    Path(enrollment): Path<String>,
    tls: Option<Extension<Arc<TlsInfo>>>,
    verifier: Verifier,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let presented = credentials::from_request(&headers, None)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let chain = tls.map(|Extension(t)| t.peer_certificates.clone());
    let (device, done, credentials) = match (presented, chain) {
        (Some(Presented::Basic { user, password }), _) => {
            let done = st
                .plane
                .provision(ProvisionRequest {
                    enrollment: enrollment.clone(),
                    device_id: user.clone(),
                    credential: ProvisionCredential::Key(password.clone()),
                })
                .await?;
            let creds = json!({"type": "key", "device_id": user, "key": password});
            (user, done, creds)
        }
        (None, Some(chain)) if !chain.is_empty() => {
            let v = verifier.map(|Extension(v)| v);
            let chain = crate::tls::identity::der_chain(&chain);
            provision_certificate(&st, &enrollment, &chain, v.as_deref()).await?
        }
        _ => {
            return Err(ApiError::Unauthorized(
                "provisioning needs 'Authorization: Basic base64(device_id:derived_key)', or an HTTPS client certificate for a certificate enrollment".into(),
            ));
        }
    };
    if done.created {
        tracing::info!(device = %device, enrollment = %enrollment, "device provisioned");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let mut endpoints = json!({ "http": format!("{scheme}://{host}") });
    if let Some(port) = st.plane.mqtt_port() {
        endpoints["mqtt"] = json!(format!("mqtt://{hostname}:{port}"));
    }
    if let Some(port) = st.plane.mqtts_port() {
        endpoints["mqtts"] = json!(format!("mqtts://{hostname}:{port}"));
    }
    let body = json!({
        "id": device,
        "created": done.created,
        "enrollment": enrollment,
        "device": done.device,
        "credentials": credentials,
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

/// Certificate attestation: the chain must verify against group `enrollment`'s CA alone; the
/// leaf's subject CN is the device id and its thumbprint is pinned.
async fn provision_certificate(
    st: &AppState,
    enrollment: &str,
    chain: &[rustls::pki_types::CertificateDer<'_>],
    verifier: Option<&ClientVerifier>,
) -> Result<(String, strata_registry::Provisioned, Value), ApiError> {
    let signed = verifier.is_some_and(|v| v.enrolled().verifies(enrollment, chain));
    if !signed {
        return Err(ApiError::Unauthorized(format!(
            "unknown enrollment, or the client certificate is not signed by enrollment '{enrollment}''s CA certificate"
        )));
    }
    let leaf = chain.first().map(|c| c.as_ref()).unwrap_or_default();
    let id = certificate_identity(leaf).map_err(ApiError::Unauthorized)?;
    let done = st
        .plane
        .provision(ProvisionRequest {
            enrollment: enrollment.to_owned(),
            device_id: id.device.clone(),
            credential: ProvisionCredential::Thumbprint(id.thumbprint.clone()),
        })
        .await?;
    let creds = json!({"type": "certificate", "device_id": id.device, "thumbprint": id.thumbprint});
    Ok((id.device, done, creds))
}
