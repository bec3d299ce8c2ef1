//! `POST /api/v1/devices/bulk`: register many devices in one transaction from a JSON array or
//! from CSV (`Content-Type: text/csv`), optionally gzip-compressed, with one result per item in
//! input order (`created` with keys shown once, `exists` for an identical repeat, `error`).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::Value;
use strata_registry::{BulkItemResult, DeviceRegistration, MAX_BULK_ITEMS};

use crate::api::devices::secret_response;
use crate::api::{blocking, parse_json};
use crate::auth::Principal;
use crate::body;
use crate::error::ApiError;
use crate::state::AppState;

/// Summary and per-item results of a bulk call.
#[derive(Debug, serde::Serialize)]
pub struct BulkResponse {
    /// Items created.
    pub created: usize,
    /// Items that already existed identically (nothing changed).
    pub exists: usize,
    /// Items that failed.
    pub errors: usize,
    /// One result per input item, in input order.
    pub results: Vec<BulkItemResult>,
}

impl BulkResponse {
    /// Counts the results.
    pub fn new(results: Vec<BulkItemResult>) -> Self {
        let count = |f: fn(&BulkItemResult) -> bool| results.iter().filter(|r| f(r)).count();
        BulkResponse {
            created: count(|r| matches!(r, BulkItemResult::Created(_))),
            exists: count(|r| matches!(r, BulkItemResult::Exists { .. })),
            errors: count(|r| matches!(r, BulkItemResult::Error { .. })),
            results,
        }
    }
}

/// `POST /api/v1/devices/bulk`: `200` with [`BulkResponse`] (even when some items failed).
pub async fn bulk(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    super::may_mint_device_credentials(&st, &p)?;
    let body = body.map_err(|r| body::rejection(r, st.max_body))?;
    let encoding = body::content_encoding(&headers)?;
    let payload = body::decode(body, encoding, st.max_body)?;
    let actor = p.actor();
    let results = if is_csv(&headers) {
        let text = String::from_utf8(payload.to_vec())
            .map_err(|_| ApiError::BadRequest("the CSV body is not UTF-8".into()))?;
        blocking(&st, move |r| r.bulk_register_csv(&actor, &text)).await?
    } else {
        let items = json_items(&payload)?;
        blocking(&st, move |r| Ok(register_items(r, &actor, items))).await??
    };
    let resp = BulkResponse::new(results);
    tracing::info!(created = resp.created, exists = resp.exists, errors = resp.errors,
        actor = %p.actor(), "bulk device registration");
    Ok(secret_response(StatusCode::OK, &resp))
}

/// True for `Content-Type: text/csv` (any parameters).
fn is_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv"))
}

/// The items of a JSON array body (or of `{"devices": [...]}`), at most [`MAX_BULK_ITEMS`].
fn json_items(payload: &[u8]) -> Result<Vec<Value>, ApiError> {
    let items = match parse_json::<Value>(payload)? {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("devices") {
            Some(Value::Array(a)) => a,
            _ => return Err(not_an_array()),
        },
        _ => return Err(not_an_array()),
    };
    if items.len() > MAX_BULK_ITEMS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BULK_ITEMS} devices per bulk call, got {}",
            items.len()
        )));
    }
    Ok(items)
}

fn not_an_array() -> ApiError {
    ApiError::BadRequest(
        "the bulk body must be a JSON array of devices (or CSV with Content-Type: text/csv)".into(),
    )
}

/// Converts each item (a bad one becomes an `error` result in its place) and registers the rest.
fn register_items(
    reg: &strata_registry::Registry,
    actor: &str,
    items: Vec<Value>,
) -> Result<Vec<BulkItemResult>, ApiError> {
    let mut slots = Vec::with_capacity(items.len());
    let mut regs = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match serde_json::from_value::<DeviceRegistration>(item) {
            Ok(r) => {
                slots.push(None);
                regs.push(r);
            }
            Err(e) => slots.push(Some(BulkItemResult::Error {
                id,
                error: format!("item {i}: {e}"),
            })),
        }
    }
    let mut registered = reg.bulk_register(actor, regs)?.into_iter();
    Ok(slots
        .into_iter()
        .filter_map(|slot| slot.or_else(|| registered.next()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_detection() {
        let mut h = HeaderMap::new();
        assert!(!is_csv(&h));
        h.insert(
            header::CONTENT_TYPE,
            "Text/CSV; charset=utf-8".parse().unwrap(),
        );
        assert!(is_csv(&h));
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(!is_csv(&h));
    }

    #[test]
    fn json_shapes() {
        assert_eq!(json_items(b"[{\"id\":\"a\"}]").unwrap().len(), 1);
        assert_eq!(json_items(b"{\"devices\":[{},{}]}").unwrap().len(), 2);
        assert!(json_items(b"{\"id\":\"a\"}").is_err());
        assert!(json_items(b"42").is_err());
        assert!(json_items(b"[").is_err());
    }
}
