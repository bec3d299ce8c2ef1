//! Device endpoints: register (`POST /api/v1/devices`, keys shown once), get (never a key),
//! update (`PATCH` partial, `PUT` replace), delete, enable/disable, rotate keys, and list with
//! filters and cursor pagination.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use strata_registry::{
    Device, DeviceFilter, DeviceRegistration, DeviceUpdate, KeySlot, Page, PageRequest,
};

use crate::api::{REGISTRY_BODY_LIMIT, blocking, json_body, optional_json, parse_limit};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use crate::write::bad_query;

/// A JSON response that carries a secret: `Cache-Control: no-store` so no proxy or browser keeps it.
pub fn secret_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `POST /api/v1/devices`: `201` with the device and its `primary_key`/`secondary_key`.
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    super::may_mint_device_credentials(&st, &p)?;
    let reg: DeviceRegistration = json_body(body, REGISTRY_BODY_LIMIT)?;
    let actor = p.actor();
    let created = blocking(&st, move |r| r.register_device(&actor, reg)).await?;
    tracing::info!(device = %created.device.id, actor = %p.actor(), "device registered");
    Ok(secret_response(StatusCode::CREATED, &created))
}

/// `GET /api/v1/devices/{id}`: the device without any key.
pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Device>, ApiError> {
    Ok(Json(st.registry.get_device(&id)?))
}

/// Keys a `PATCH` body may carry.
const PATCH_KEYS: &[&str] = &["model", "attributes", "location", "tags", "thumbprint"];
/// Read-only keys a `PUT` body may repeat from a `GET` (ignored; `id` must match the path).
const READ_ONLY_KEYS: &[&str] = &["id", "enabled", "created_ns", "updated_ns", "last_seen_ns"];

/// `PATCH /api/v1/devices/{id}`: changes only the fields given (`""` clears model, location or
/// thumbprint).
pub async fn patch(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Device>, ApiError> {
    let obj: Map<String, Value> = json_body(body, REGISTRY_BODY_LIMIT)?;
    check_keys(&obj, PATCH_KEYS, &[])?;
    let update: DeviceUpdate = from_object(obj)?;
    update_device(&st, &p, id, update).await
}

/// `PUT /api/v1/devices/{id}`: replaces the metadata (model, attributes, location, tags; absent
/// fields are cleared); the thumbprint changes only when given. The body of a `GET` is accepted.
pub async fn put(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Device>, ApiError> {
    let obj: Map<String, Value> = json_body(body, REGISTRY_BODY_LIMIT)?;
    check_keys(&obj, PATCH_KEYS, READ_ONLY_KEYS)?;
    if let Some(body_id) = obj.get("id").filter(|v| v.as_str() != Some(id.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "body id {body_id} differs from the path id '{id}'"
        )));
    }
    let mut update: DeviceUpdate = from_object(obj)?;
    update.model.get_or_insert_with(String::new);
    update.attributes.get_or_insert_with(Map::new);
    update.location.get_or_insert_with(String::new);
    update.tags.get_or_insert_with(Vec::new);
    update_device(&st, &p, id, update).await
}

async fn update_device(
    st: &AppState,
    p: &Principal,
    id: String,
    update: DeviceUpdate,
) -> Result<Json<Device>, ApiError> {
    // A new pinned certificate is a credential too (clearing one is not).
    if update.thumbprint.as_deref().is_some_and(|t| !t.is_empty()) {
        super::may_mint_device_credentials(st, p)?;
    }
    let actor = p.actor();
    let device = blocking(st, move |r| r.update_device(&actor, &id, update)).await?;
    Ok(Json(device))
}

/// Rejects keys outside `allowed` and `ignored`, and drops the `ignored` ones.
fn check_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    ignored: &[&str],
) -> Result<(), ApiError> {
    match obj
        .keys()
        .find(|k| !allowed.contains(&k.as_str()) && !ignored.contains(&k.as_str()))
    {
        None => Ok(()),
        Some(k) if k.ends_with("_key") => Err(ApiError::BadRequest(format!(
            "'{k}' cannot be changed by an update; use POST /api/v1/devices/{{id}}/rotate-keys"
        ))),
        Some(k) => Err(ApiError::BadRequest(format!(
            "unknown field '{k}' (allowed: {})",
            allowed.join(", ")
        ))),
    }
}

/// Converts a checked JSON object (read-only keys dropped) into `T`.
fn from_object<T: serde::de::DeserializeOwned>(mut obj: Map<String, Value>) -> Result<T, ApiError> {
    for k in READ_ONLY_KEYS {
        obj.remove(*k);
    }
    serde_json::from_value(Value::Object(obj))
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// `DELETE /api/v1/devices/{id}`: `204`.
pub async fn delete(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let actor = p.actor();
    let target = id.clone();
    blocking(&st, move |r| r.delete_device(&actor, &id)).await?;
    tracing::info!(device = %target, actor = %p.actor(), "device deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/devices/{id}/disable`: the device's next authentication fails.
pub async fn disable(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Device>, ApiError> {
    set_enabled(st, p, id, false).await
}

/// `POST /api/v1/devices/{id}/enable`.
pub async fn enable(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Device>, ApiError> {
    super::may_mint_device_credentials(&st, &p)?;
    set_enabled(st, p, id, true).await
}

async fn set_enabled(
    st: AppState,
    p: Principal,
    id: String,
    enabled: bool,
) -> Result<Json<Device>, ApiError> {
    let actor = p.actor();
    let device = blocking(&st, move |r| r.set_device_enabled(&actor, &id, enabled)).await?;
    tracing::info!(device = %device.id, enabled, actor = %p.actor(), "device enabled flag set");
    Ok(Json(device))
}

/// Body (or query) of `rotate-keys`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct RotateParams {
    /// `primary`, `secondary` or `both` (default).
    #[serde(default)]
    pub slot: Option<KeySlot>,
}

/// `POST /api/v1/devices/{id}/rotate-keys[?slot=primary|secondary|both]`, or the slot in a JSON
/// body: new keys, shown once; the old ones are refused at once.
pub async fn rotate_keys(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    q: Result<Query<RotateParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    super::may_mint_device_credentials(&st, &p)?;
    let Query(q) = q.map_err(bad_query)?;
    let from_body: RotateParams = optional_json(body, REGISTRY_BODY_LIMIT)?;
    let slot = from_body.slot.or(q.slot).unwrap_or_default();
    let actor = p.actor();
    let keys = blocking(&st, move |r| r.rotate_keys(&actor, &id, slot)).await?;
    tracing::info!(device = %keys.id, actor = %p.actor(), "device keys rotated");
    Ok(secret_response(StatusCode::OK, &keys))
}

/// `GET /api/v1/devices?model=&enabled=&tag=&attr.KEY=VALUE&under=ENTITY&after=&limit=`.
pub async fn list(
    State(st): State<AppState>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Page<Device>>, ApiError> {
    let Query(pairs) = q.map_err(bad_query)?;
    let (filter, page) = list_params(pairs)?;
    let page = blocking(&st, move |r| r.list_devices(&filter, &page)).await?;
    Ok(Json(page))
}

/// Parses the list parameters. `attr.KEY=VALUE` matches `attributes[KEY] == VALUE`, where VALUE
/// is read as JSON when it is a number, boolean, null or a quoted string, else as a plain string.
pub fn list_params(pairs: Vec<(String, String)>) -> Result<(DeviceFilter, PageRequest), ApiError> {
    let mut filter = DeviceFilter::default();
    let mut page = PageRequest::default();
    for (k, v) in pairs {
        match k.as_str() {
            "model" => filter.model = Some(v),
            "tag" => filter.tag = Some(v),
            "under" => filter.under = Some(v),
            "enabled" => filter.enabled = Some(parse_bool(&v)?),
            "after" => page.after = Some(v).filter(|a| !a.is_empty()),
            "limit" => page.limit = parse_limit(&v)?,
            "u" | "p" => {} // InfluxDB 1.x credentials, handled by the auth layer
            _ => match k.strip_prefix("attr.") {
                Some(name) if !name.is_empty() => {
                    filter
                        .attributes
                        .insert(name.to_owned(), attribute_value(&v));
                }
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown query parameter '{k}' (allowed: model, enabled, tag, attr.KEY, under, after, limit)"
                    )));
                }
            },
        }
    }
    Ok((filter, page))
}

fn parse_bool(v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "enabled must be true or false, got '{v}'"
        ))),
    }
}

/// A filter value: JSON scalars and quoted strings as JSON, anything else as a string.
fn attribute_value(v: &str) -> Value {
    match serde_json::from_str::<Value>(v) {
        Ok(j @ (Value::Number(_) | Value::Bool(_) | Value::Null | Value::String(_))) => j,
        _ => Value::String(v.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_parameters() {
        let (f, p) = list_params(pairs(&[
            ("model", "m1"),
            ("attr.floor", "3"),
            ("attr.color", "red"),
            ("attr.code", "\"3\""),
            ("under", "b1"),
            ("enabled", "false"),
            ("after", "d5"),
            ("limit", "20"),
        ]))
        .unwrap();
        assert_eq!(f.model.as_deref(), Some("m1"));
        assert_eq!(f.attributes["floor"], json!(3));
        assert_eq!(f.attributes["color"], json!("red"));
        assert_eq!(f.attributes["code"], json!("3"));
        assert_eq!(f.under.as_deref(), Some("b1"));
        assert_eq!(f.enabled, Some(false));
        assert_eq!(p.after.as_deref(), Some("d5"));
        assert_eq!(p.limit, 20);
        assert!(list_params(pairs(&[("colour", "x")])).is_err());
        assert!(list_params(pairs(&[("attr.", "x")])).is_err());
        assert!(list_params(pairs(&[("limit", "-1")])).is_err());
        assert!(list_params(pairs(&[("enabled", "maybe")])).is_err());
    }

    #[test]
    fn update_keys_are_checked() {
        let obj = |v: Value| v.as_object().unwrap().clone();
        assert!(check_keys(&obj(json!({"model": "m"})), PATCH_KEYS, &[]).is_ok());
        let e = check_keys(&obj(json!({"primary_key": "x"})), PATCH_KEYS, &[]).unwrap_err();
        assert!(e.to_string().contains("rotate-keys"), "{e}");
        assert!(check_keys(&obj(json!({"modle": "m"})), PATCH_KEYS, &[]).is_err());
        assert!(
            check_keys(
                &obj(json!({"id": "d", "enabled": true})),
                PATCH_KEYS,
                READ_ONLY_KEYS
            )
            .is_ok()
        );
        let u: DeviceUpdate = from_object(obj(json!({"id": "d", "model": "m"}))).unwrap();
        assert_eq!(u.model.as_deref(), Some("m"));
    }
}
