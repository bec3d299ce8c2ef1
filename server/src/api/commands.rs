//! Cloud-to-device commands over HTTP (`docs/devices.md`):
//!
//! - applications (API tokens): `POST /api/v1/devices/{id}/commands` (`write` scope) → 201
//!   with the stored command; `POST /api/v1/commands` sends one command to many devices in one
//!   registry transaction (one fsync) with a result per device; `GET .../commands` and `GET .../commands/{cid}` (`read`);
//!   `DELETE .../commands/{cid}` (`write`) cancels an open command.
//! - HTTP devices (Basic device credentials, or a `write` token on the device's behalf):
//!   `GET .../commands/next?wait=30s` long-polls the oldest due command (200, marked delivered)
//!   or answers 204 when none came within `wait`; `POST .../commands/{cid}/ack` acknowledges it.
//!   A command expecting an acknowledgement is handed out again by a later poll once its lease
//!   (`lease=`, default 60s) passes unacknowledged: a response lost on the way (the device
//!   disconnected mid-poll) does not lose the command.

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use strata_registry::{Command, DEFAULT_COMMAND_TTL_NS, NewCommand};

use crate::api::{REGISTRY_BODY_LIMIT, blocking, json_body, only_applications, same_device};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::plane::{AckBody, command_message};
use crate::state::AppState;
use crate::write::bad_query;

/// Longest `wait` of a long-poll.
const MAX_WAIT: Duration = Duration::from_secs(120);

/// Body of `POST /api/v1/devices/{id}/commands`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    name: String,
    #[serde(default)]
    payload: Value,
    /// A duration such as `30s`, `1h` (default 1h, at most 7d).
    #[serde(default)]
    ttl: Option<String>,
    /// Whether the device must acknowledge (default true).
    #[serde(default = "yes")]
    ack: bool,
}

fn yes() -> bool {
    true
}

/// Only applications send, read and cancel commands.
fn application(p: &Principal) -> Result<(), ApiError> {
    only_applications(p, "send or manage commands")
}

/// The command a single or bulk body describes (the TTL parsed, 400 when it is invalid).
fn new_command(
    name: String,
    payload: Value,
    ttl: Option<&str>,
    ack: bool,
) -> Result<NewCommand, ApiError> {
    Ok(NewCommand {
        name,
        payload,
        ttl_ns: parse_ttl(ttl)?,
        ack,
    })
}

fn parse_ttl(ttl: Option<&str>) -> Result<i64, ApiError> {
    let Some(text) = ttl else {
        return Ok(DEFAULT_COMMAND_TTL_NS);
    };
    let d = strata_ingest::text::parse_duration(text)
        .map_err(|e| ApiError::BadRequest(format!("invalid ttl {text:?}: {e}")))?;
    i64::try_from(d.as_nanos())
        .map_err(|_| ApiError::BadRequest(format!("ttl {text:?} is too long")))
}

/// `POST /api/v1/devices/{id}/commands`: 201 `{"id", "status": "queued", ...}`; 429 when the
/// device's queue is full.
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    application(&p)?;
    let body: CommandBody = json_body(body, REGISTRY_BODY_LIMIT)?;
    let cmd = new_command(body.name, body.payload, body.ttl.as_deref(), body.ack)?;
    let depth = st.plane.queue_depth();
    let device = id.clone();
    let command = blocking(&st, move |r| r.enqueue_command(&device, cmd, depth)).await?;
    st.plane.wake(&id);
    Ok((StatusCode::CREATED, Json(command)).into_response())
}

/// Body of `POST /api/v1/commands`: a command body plus the devices it goes to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    devices: Vec<String>,
    name: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default = "yes")]
    ack: bool,
}

/// Largest `POST /api/v1/commands` body (100,000 device ids fit).
const BULK_BODY_LIMIT: usize = 16 << 20;

/// `POST /api/v1/commands` `{"devices": [...], "name", "payload", "ttl", "ack"}`: the command is
/// stored for every device in one transaction (one fsync), then each connected device is woken
/// (committing in chunks and waking each chunk early was measured slower: the first devices'
/// delivery marks compete for the registry's single writer with the later chunks). 201
/// `{"queued": n, "failed": m, "results": [...]}` with, per device in input order, either
/// `{"device", "id", "status": "queued"}` or `{"device", "error", "code"}` (404 unknown device,
/// 429 full queue, 400 bad id). 400 for a bad command or more than 100,000 devices.
pub async fn create_bulk(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    application(&p)?;
    let body: BulkBody = json_body(body, BULK_BODY_LIMIT)?;
    let cmd = new_command(body.name, body.payload, body.ttl.as_deref(), body.ack)?;
    let depth = st.plane.queue_depth();
    let devices = body.devices;
    let (devices, results) = blocking(&st, move |r| {
        let results = r.enqueue_commands(&devices, &cmd, depth)?;
        Ok((devices, results))
    })
    .await?;
    let mut queued = 0;
    let items: Vec<Value> = devices
        .iter()
        .zip(results)
        .map(|(device, result)| match result {
            Ok(c) => {
                queued += 1;
                st.plane.wake(device);
                json!({"device": device, "id": c.id, "status": c.status})
            }
            Err(e) => {
                let e = ApiError::from(e);
                json!({"device": device, "error": e.to_string(), "code": e.status().as_u16()})
            }
        })
        .collect();
    let failed = items.len() - queued;
    let body = json!({"queued": queued, "failed": failed, "results": items});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/v1/devices/{id}/commands`: every stored command of the device, oldest first.
pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    application(&p)?;
    let device = id.clone();
    let commands: Vec<Command> = blocking(&st, move |r| {
        r.get_device(&device)?;
        r.commands(&device)
    })
    .await?;
    Ok(Json(json!({ "device": id, "commands": commands })))
}

/// `GET /api/v1/devices/{id}/commands/{cid}`.
pub async fn get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, cid)): Path<(String, String)>,
) -> Result<Json<Command>, ApiError> {
    application(&p)?;
    Ok(Json(blocking(&st, move |r| r.command(&id, &cid)).await?))
}

/// `DELETE /api/v1/devices/{id}/commands/{cid}`: cancels an open command (409 when finished).
pub async fn cancel(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, cid)): Path<(String, String)>,
) -> Result<Json<Command>, ApiError> {
    application(&p)?;
    Ok(Json(
        blocking(&st, move |r| r.cancel_command(&id, &cid)).await?,
    ))
}

/// Query of the long-poll.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextParams {
    /// How long to wait for a command (default 0: answer at once; at most 120s).
    wait: Option<String>,
    /// How long a handed-out command that expects an acknowledgement waits for it before a
    /// later poll hands it out again (default 60s; 1s to 1h).
    lease: Option<String>,
}

/// Bounds of `lease`.
const MIN_LEASE: Duration = Duration::from_secs(1);
const MAX_LEASE: Duration = Duration::from_secs(3_600);

fn lease_of(q: &NextParams) -> Result<i64, ApiError> {
    let Some(l) = q.lease.as_deref() else {
        return Ok(strata_registry::POLL_LEASE_NS);
    };
    let lease = strata_ingest::text::parse_duration(l)
        .map_err(|e| ApiError::BadRequest(format!("invalid lease {l:?}: {e}")))?;
    if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
        return Err(ApiError::BadRequest(format!(
            "lease must be between {}s and {}s",
            MIN_LEASE.as_secs(),
            MAX_LEASE.as_secs()
        )));
    }
    Ok(lease.as_nanos() as i64)
}

/// `GET /api/v1/devices/{id}/commands/next?wait=30s`: 200 with the oldest due command (now
/// `delivered`), or 204 when none arrived within `wait`. `HEAD` is refused (405): it would mark
/// a command delivered and drop the body that carries it.
pub async fn next(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    method: axum::http::Method,
    Path(id): Path<String>,
    q: Result<Query<NextParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    if method == axum::http::Method::HEAD {
        return Ok((
            StatusCode::METHOD_NOT_ALLOWED,
            [(axum::http::header::ALLOW, "GET")],
        )
            .into_response());
    }
    same_device(&p, &id)?;
    let Query(q) = q.map_err(bad_query)?;
    let wait = match q.wait.as_deref() {
        None => Duration::ZERO,
        Some(w) => strata_ingest::text::parse_duration(w)
            .map_err(|e| ApiError::BadRequest(format!("invalid wait {w:?}: {e}")))?,
    };
    if wait > MAX_WAIT {
        return Err(ApiError::BadRequest(format!(
            "wait must be at most {}s",
            MAX_WAIT.as_secs()
        )));
    }
    let lease = lease_of(&q)?;
    let deadline = tokio::time::Instant::now() + wait;
    let waiter = st.plane.waiter(&id);
    let outcome = loop {
        let notified = waiter.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let device = id.clone();
        let attempts = st.plane.max_attempts();
        let retry_ns = match blocking(&st, move |r| r.poll_command(&device, lease, attempts)).await
        {
            Ok(p) if p.command.is_some() => break Ok(p.command),
            Ok(p) => p.retry_ns,
            Err(e) => break Err(e),
        };
        // Wake for a new command, or when a handed-out one's lease ends.
        let until = retry_ns.map_or(deadline, |t| deadline.min(instant_at(t)));
        if tokio::time::timeout_at(until, notified).await.is_err()
            && tokio::time::Instant::now() >= deadline
        {
            break Ok(None);
        }
    };
    st.plane.release(&id, waiter);
    Ok(match outcome? {
        Some(c) => (StatusCode::OK, Json(command_message(&c))).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// The monotonic instant of wall-clock time `ns` (ns since the epoch; now when it has passed).
fn instant_at(ns: i64) -> tokio::time::Instant {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let ahead = u64::try_from(ns.saturating_sub(now_ns)).unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_nanos(ahead)
}

/// `POST /api/v1/devices/{id}/commands/{cid}/ack` with `{"status": "completed" | "rejected",
/// "result": ...}`: 200 with the command.
pub async fn ack(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, cid)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Command>, ApiError> {
    same_device(&p, &id)?;
    let body: AckBody = json_body(body, REGISTRY_BODY_LIMIT)?;
    let ack = body.into_ack()?;
    Ok(Json(
        blocking(&st, move |r| r.ack_command(&id, &cid, ack)).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl(None).unwrap(), DEFAULT_COMMAND_TTL_NS);
        assert_eq!(parse_ttl(Some("30s")).unwrap(), 30_000_000_000);
        assert!(matches!(
            parse_ttl(Some("soon")),
            Err(ApiError::BadRequest(_))
        ));
    }
}
