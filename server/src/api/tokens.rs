//! API-token endpoints (admin only): create (`201`, the secret shown once), list and get (never a
//! secret), revoke (`DELETE`, refused from that moment on).

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use strata_registry::{NewToken, Page, TokenInfo};

use crate::api::devices::secret_response;
use crate::api::{PageParams, REGISTRY_BODY_LIMIT, blocking, json_body};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use crate::write::bad_query;

/// `POST /api/v1/tokens` with `{"scopes": ["read"], "name": "...", "streams": ["db", "db/stream"]}`:
/// `201` with `{"token": "strata_<id>_<secret>", "id": ..., "scopes": ..., ...}`; `403` when the
/// new token would be broader than the calling token.
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: NewToken = json_body(body, REGISTRY_BODY_LIMIT)?;
    let creator = p.clone();
    // A token never mints one broader than itself (scope and limits).
    let created = blocking(&st, move |r| match &creator {
        Principal::Token(t) => r.create_token_by(t, req),
        Principal::Device(d) => Err(strata_registry::RegistryError::Forbidden(format!(
            "device {d} cannot create tokens"
        ))),
    })
    .await?;
    tracing::info!(token_id = %created.info.id, actor = %p.actor(), "API token created");
    Ok(secret_response(StatusCode::CREATED, &created))
}

/// `GET /api/v1/tokens?after=&limit=`: token descriptions, never secrets.
pub async fn list(
    State(st): State<AppState>,
    q: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Page<TokenInfo>>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let page = q.page();
    Ok(Json(blocking(&st, move |r| r.list_tokens(&page)).await?))
}

/// `GET /api/v1/tokens/{id}`.
pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    Ok(Json(blocking(&st, move |r| r.get_token(&id)).await?))
}

/// `DELETE /api/v1/tokens/{id}`: revokes the token; `200` with its description.
pub async fn revoke(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    let actor = p.actor();
    let revoker = match &p {
        Principal::Token(t) => Some(t.clone()),
        Principal::Device(_) => None,
    };
    let info = blocking(&st, move |r| match &revoker {
        Some(t) => r.revoke_token_by(t, &id),
        None => r.revoke_token(&actor, &id),
    })
    .await?;
    tracing::info!(token_id = %info.id, actor = %p.actor(), "API token revoked");
    Ok(Json(info))
}
