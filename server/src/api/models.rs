//! Device-model endpoints (`/api/v1/models[/{id}]`): a model's telemetry schema (field, type,
//! unit, allowed range), commands and configuration parameters.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use strata_registry::{DeviceModel, Page};

use crate::api::{PageParams, REGISTRY_BODY_LIMIT, blocking, json_body};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use crate::write::bad_query;

/// `POST /api/v1/models`: `201` with the model; `409` if the id is taken.
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<DeviceModel>), ApiError> {
    let model: DeviceModel = json_body(body, REGISTRY_BODY_LIMIT)?;
    let actor = p.actor();
    let m = blocking(&st, move |r| r.create_model(&actor, model)).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// `PUT /api/v1/models/{id}`: creates or replaces the model (the body's `id` may be omitted).
pub async fn put(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DeviceModel>, ApiError> {
    let mut obj: serde_json::Map<String, serde_json::Value> = json_body(body, REGISTRY_BODY_LIMIT)?;
    match obj.get("id") {
        Some(v) if v.as_str() != Some(id.as_str()) => {
            return Err(ApiError::BadRequest(format!(
                "body id {v} differs from the path id '{id}'"
            )));
        }
        Some(_) => {}
        None => {
            obj.insert("id".into(), serde_json::Value::String(id));
        }
    }
    let model: DeviceModel = serde_json::from_value(serde_json::Value::Object(obj))
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let actor = p.actor();
    Ok(Json(
        blocking(&st, move |r| r.put_model(&actor, model)).await?,
    ))
}

/// `GET /api/v1/models/{id}`.
pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeviceModel>, ApiError> {
    Ok(Json(st.registry.get_model(&id)?))
}

/// `DELETE /api/v1/models/{id}`: `204` (devices keep referring to the id).
pub async fn delete(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let actor = p.actor();
    blocking(&st, move |r| r.delete_model(&actor, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/models?after=&limit=`.
pub async fn list(
    State(st): State<AppState>,
    q: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Page<DeviceModel>>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let page = q.page();
    Ok(Json(blocking(&st, move |r| r.list_models(&page)).await?))
}
