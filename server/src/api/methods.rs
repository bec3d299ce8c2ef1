//! Direct methods over HTTP (`docs/devices.md`): `POST /api/v1/devices/{id}/methods/{name}
//! ?timeout=30s` with a JSON body (`write` token) sends the call to the connected device over
//! MQTT and answers 200 with the device's `{"status": <int>, "payload": ...}`; 404 when the device
//! does not exist or has no open MQTT session, 504 when it does not answer within `timeout`
//! (default 30s, at most 5m).

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;
use strata_registry::{MAX_COMMAND_PAYLOAD, RegistryError};

use crate::api::{REGISTRY_BODY_LIMIT, blocking, only_applications, optional_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::methods::{MethodReply, check_name};
use crate::state::AppState;
use crate::write::bad_query;

/// Timeout of a call that names none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest timeout of a call.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// Query of a method call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallParams {
    /// How long to wait for the device's answer (`30s`, `2m`; at most 5m).
    timeout: Option<String>,
}

fn parse_timeout(text: Option<&str>) -> Result<Duration, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_TIMEOUT);
    };
    let d = strata_ingest::text::parse_duration(text)
        .map_err(|e| ApiError::BadRequest(format!("invalid timeout {text:?}: {e}")))?;
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(ApiError::BadRequest(format!(
            "timeout must be positive and at most {}s",
            MAX_TIMEOUT.as_secs()
        )));
    }
    Ok(d)
}

/// `POST /api/v1/devices/{id}/methods/{name}?timeout=30s`.
pub async fn call(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, name)): Path<(String, String)>,
    q: Result<Query<CallParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MethodReply>, ApiError> {
    only_applications(&p, "call direct methods")?;
    let Query(q) = q.map_err(bad_query)?;
    let timeout = parse_timeout(q.timeout.as_deref())?;
    check_name(&name).map_err(ApiError::BadRequest)?;
    let body: Option<Value> = optional_json(body, REGISTRY_BODY_LIMIT)?;
    let body = body.unwrap_or(Value::Null);
    let size = body.to_string().len();
    if size > MAX_COMMAND_PAYLOAD {
        return Err(RegistryError::TooLarge(format!(
            "method body is {size} bytes of JSON, above the limit of {MAX_COMMAND_PAYLOAD}"
        ))
        .into());
    }
    let device = id.clone();
    blocking(&st, move |r| r.get_device(&device)).await?;
    if !st.plane.connected(&id) {
        return Err(ApiError::NotFound(format!(
            "device '{id}' is not connected over MQTT"
        )));
    }
    let (rid, answer) = st.plane.methods.start(&id, &name, &body, timeout);
    // Forgets the call however this request ends (answer, timeout, client gone).
    let _pending = Pending {
        st: &st,
        id: &id,
        rid: &rid,
    };
    st.plane.wake(&id);
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(reply)) => Ok(Json(reply)),
        Ok(Err(_)) | Err(_) => Err(ApiError::GatewayTimeout(format!(
            "device '{id}' did not answer method '{name}' within {}",
            q.timeout.as_deref().unwrap_or("30s")
        ))),
    }
}

/// A call in flight, forgotten when dropped.
struct Pending<'a> {
    st: &'a AppState,
    id: &'a str,
    rid: &'a str,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.st.plane.methods.forget(self.id, self.rid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout(None).unwrap(), DEFAULT_TIMEOUT);
        assert_eq!(parse_timeout(Some("2s")).unwrap(), Duration::from_secs(2));
        for bad in ["0s", "6m", "soon"] {
            assert!(parse_timeout(Some(bad)).is_err(), "{bad}");
        }
    }
}
