//! Rule endpoints (admin): `POST /api/v1/rules` (201 with the stored rule), `GET /api/v1/rules`,
//! `GET/PUT/DELETE /api/v1/rules/{name}`, `POST /api/v1/rules/{name}/enable|disable`,
//! `GET /api/v1/rules/{name}/outbox` (undelivered and dead-lettered notifications),
//! `POST /api/v1/rules/{name}/dry-run` and `POST /api/v1/rules/{name}/replay`. The rules
//! service comes in as an `Extension` (see `serve.rs`); secrets are never returned.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, extract::Query};
use strata_rules::{RuleSpec, Rules, RulesError};

use crate::api::{REGISTRY_BODY_LIMIT, json_body};
use crate::error::ApiError;

impl From<RulesError> for ApiError {
    fn from(e: RulesError) -> Self {
        match e {
            RulesError::Invalid(m) => ApiError::BadRequest(m),
            e @ RulesError::NotFound(_) => ApiError::NotFound(e.to_string()),
            e @ RulesError::Exists(_) => ApiError::Conflict(e.to_string()),
            RulesError::Store(m) => ApiError::Internal(m),
            e @ RulesError::Record(_) => ApiError::Internal(e.to_string()),
        }
    }
}

/// `POST /api/v1/rules`: 201 with the stored rule; 400 (nothing stored) for an invalid one,
/// 409 when the name is taken.
pub async fn create(
    Extension(rules): Extension<Arc<Rules>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec: RuleSpec = json_body(body, REGISTRY_BODY_LIMIT)?;
    let view = rules.create(spec).await?;
    tracing::info!(rule = %view.spec.name, kind = view.spec.kind.as_str(), "rule created");
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `GET /api/v1/rules`: every rule with its counters.
pub async fn list(Extension(rules): Extension<Arc<Rules>>) -> Result<Response, ApiError> {
    let items = rules.list().await?;
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

/// `GET /api/v1/rules/{name}`.
pub async fn get(
    Extension(rules): Extension<Arc<Rules>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(rules.get(&name).await?).into_response())
}

/// `PUT /api/v1/rules/{name}`: replaces the whole definition (resend webhook secrets).
pub async fn put(
    Extension(rules): Extension<Arc<Rules>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec: RuleSpec = json_body(body, REGISTRY_BODY_LIMIT)?;
    let view = rules.replace(&name, spec).await?;
    tracing::info!(rule = %name, "rule replaced");
    Ok(Json(view).into_response())
}

/// `DELETE /api/v1/rules/{name}`: the rule and its alert instances; 200 with the rule.
pub async fn delete(
    Extension(rules): Extension<Arc<Rules>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let view = rules.delete(&name).await?;
    tracing::info!(rule = %name, "rule deleted");
    Ok(Json(view).into_response())
}

/// `POST /api/v1/rules/{name}/enable`.
pub async fn enable(
    Extension(rules): Extension<Arc<Rules>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(rules.set_enabled(&name, true).await?).into_response())
}

/// `POST /api/v1/rules/{name}/disable`: stops evaluating; alert instances keep their state.
pub async fn disable(
    Extension(rules): Extension<Arc<Rules>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(rules.set_enabled(&name, false).await?).into_response())
}

/// `?dead=true` keeps only dead-lettered entries.
#[derive(Debug, Default, serde::Deserialize)]
pub struct OutboxParams {
    /// Only dead letters.
    #[serde(default)]
    pub dead: bool,
}

/// `GET /api/v1/rules/{name}/outbox[?dead=true]`: notifications not delivered yet (with their
/// attempts, next attempt and last error) and dead letters.
pub async fn outbox(
    Extension(rules): Extension<Arc<Rules>>,
    Path(name): Path<String>,
    q: Result<Query<OutboxParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(crate::write::bad_query)?;
    rules.get(&name).await?;
    let mut items = rules.outbox(&name).await?;
    if q.dead {
        items.retain(|e| e.dead);
    }
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

/// Body of `POST /api/v1/rules/{name}/dry-run`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunBody {
    /// RFC 3339 start (inclusive).
    pub start: String,
    /// RFC 3339 end (exclusive).
    pub end: String,
}

/// `POST /api/v1/rules/{name}/dry-run` with `{"start", "end"}`: what the rule would have
/// notified over that stored range, without acting.
pub async fn dry_run(
    Extension(rules): Extension<Arc<Rules>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: DryRunBody = json_body(body, REGISTRY_BODY_LIMIT)?;
    let (start, end) = (time("start", &b.start)?, time("end", &b.end)?);
    Ok(Json(rules.dry_run(&name, start, end).await?).into_response())
}

fn time(field: &str, text: &str) -> Result<i64, ApiError> {
    strata_ingest::text::parse_rfc3339(text)
        .map_err(|e| ApiError::BadRequest(format!("{field}: invalid RFC 3339 time '{text}': {e}")))
}

/// Body of `POST /api/v1/rules/{name}/replay`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// RFC 3339 start (inclusive); the replay runs to now.
    pub start: String,
}

/// `POST /api/v1/rules/{name}/replay` with `{"start"}`: re-runs the rule over stored history from
/// `start` to now and acts (alert instances, outbox); answers what it notified, like a dry run.
pub async fn replay(
    Extension(rules): Extension<Arc<Rules>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: ReplayBody = json_body(body, REGISTRY_BODY_LIMIT)?;
    let start = time("start", &b.start)?;
    Ok(Json(rules.replay(&name, start).await?).into_response())
}
