//! `POST /api/v1/devices/{id}/telemetry/{stream}?db=&precision=`: the HTTP device API.
//!
//! The device authenticates with `Authorization: Basic base64(id:key)` and may only write as
//! itself; a token with the `write` scope may write on behalf of a registered device. The body is
//! JSON telemetry (decoded by `strata_ingest::json`, exactly as over MQTT: a record, an array of
//! records, or `{"columns": [...], "rows": [[...]]}`; a record may name its stream, `{stream}` is
//! the default) or line protocol (every line must name the measurement `{stream}`). The format
//! follows `Content-Type` (`application/json` or `*+json`; `text/plain`), and is sniffed from the
//! first byte otherwise. The decoded batch goes through the write pipeline
//! (`strata_ingest::pipeline`): every row is stored under the device `{id}` (device credentials:
//! only into the device database) after validation against the device's model. `precision` is
//! the unit of epoch timestamps: nanoseconds by default for line protocol, milliseconds for JSON.

use std::time::Instant;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_ingest::json::{self, IntegerMode, JsonOptions};
use strata_ingest::line_protocol::Precision;
use strata_ingest::mqtt::is_json;
use strata_storage::{DEFAULT_DATABASE, WriteBatch};

use crate::auth::Principal;
use crate::body;
use crate::error::ApiError;
use crate::precision::{parse_payload, precision_param};
use crate::state::AppState;
use crate::write::{DbParams, Refusal, Target, bad_query, database_name, now_ns, submit};

/// The payload format of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON telemetry.
    Json,
    /// InfluxDB line protocol.
    LineProtocol,
}

/// The format named by `Content-Type`, or sniffed from the payload when the header is absent or
/// names neither (e.g. curl's default `application/x-www-form-urlencoded`).
pub fn format_of(headers: &HeaderMap, payload: &[u8]) -> Format {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if ct == "application/json" || ct.ends_with("+json") {
        Format::Json
    } else if ct == "text/plain" {
        Format::LineProtocol
    } else if is_json(payload) {
        Format::Json
    } else {
        Format::LineProtocol
    }
}

/// `POST /api/v1/devices/{id}/telemetry/{stream}`: `204` once durable.
pub async fn telemetry(
    State(st): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((id, stream)): Path<(String, String)>,
    q: Result<Query<DbParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match handle(st, principal, id, stream, q, headers, body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn handle(
    st: AppState,
    principal: Principal,
    id: String,
    stream: String,
    q: Result<Query<DbParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(), Refusal> {
    let started = Instant::now();
    check_device(&st, &principal, &id)?;
    let Query(q) = q.map_err(bad_query)?;
    let db = database_name(q.db.as_deref().unwrap_or(DEFAULT_DATABASE))?;
    let precision = q.precision.as_deref().filter(|p| !p.is_empty());
    let unit = precision_param(precision)?;
    let mut target = Target::new(db, unit, principal);
    target.only_stream = Some(stream);
    target.device = Some(id);
    let json_unit = precision.map_or(Precision::Milliseconds, |_| unit);
    let body = body.map_err(|r| body::rejection(r, st.max_body))?;
    let encoding = body::content_encoding(&headers)?;
    let sent = body.len();
    let (max_body, device_tags) = (st.max_body, st.device_tags.clone());
    let decode = move |target: &mut Target| -> Result<WriteBatch, ApiError> {
        let payload = body::decode(body, encoding, max_body)?;
        match format_of(&headers, &payload) {
            Format::Json => {
                // A JSON record may name its own stream; the path's stream is the default.
                let stream = target.only_stream.take().unwrap_or_default();
                decode_json(&payload, &target.db, &stream, json_unit)
            }
            // Every line must name the path's stream (the pipeline checks it).
            Format::LineProtocol => parse_payload(
                &payload,
                &target.db,
                target.precision,
                &device_tags,
                now_ns(),
            ),
        }
    };
    submit(&st, "http", target, sent, started, decode).await?;
    Ok(())
}

/// A device writes only as itself; a token writes only for a registered device.
fn check_device(st: &AppState, principal: &Principal, id: &str) -> Result<(), ApiError> {
    match principal.device() {
        Some(d) if d != id => Err(ApiError::Forbidden(format!(
            "device '{d}' may only write its own telemetry, not device '{id}'"
        ))),
        Some(_) => Ok(()),
        None if st.registry.device_exists(id)? => Ok(()),
        None => Err(ApiError::NotFound(format!("device '{id}' not found"))),
    }
}

/// Decodes JSON telemetry; records may name a device (the pipeline forces every row to the
/// path's device and refuses records naming another one).
fn decode_json(
    payload: &[u8],
    db: &str,
    stream: &str,
    unit: Precision,
) -> Result<WriteBatch, ApiError> {
    let opts = JsonOptions {
        epoch_unit: unit,
        integers: IntegerMode::Float,
        default_time: now_ns(),
    };
    json::parse(payload, db, stream, None, &opts)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON telemetry: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn content_type_then_sniffing() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            h
        };
        let none = HeaderMap::new();
        assert_eq!(format_of(&none, b" {\"a\":1}"), Format::Json);
        assert_eq!(format_of(&none, b"m v=1"), Format::LineProtocol);
        assert_eq!(
            format_of(&with("application/json; charset=utf-8"), b"m v=1"),
            Format::Json
        );
        assert_eq!(
            format_of(&with("application/vnd.x+json"), b""),
            Format::Json
        );
        assert_eq!(format_of(&with("text/plain"), b"[1]"), Format::LineProtocol);
        assert_eq!(
            format_of(&with("application/x-www-form-urlencoded"), b"[{}]"),
            Format::Json
        );
    }
}
