//! Operational endpoints: `/health`, `/ping`, `/metrics`, the admin actions `POST /api/v1/flush`
//! and `POST /api/v1/compact`, and catalog listings (`/api/v1/databases`, `/api/v1/streams`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::{Value, json};
use strata_storage::DEFAULT_DATABASE;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use crate::write::{DbParams, bad_query, database_name};

/// `GET /health` (public liveness): only `{"status": "ok"|"degraded"}` — no file paths, damage
/// details or counters, which need a token (`GET /api/v1/health`).
pub async fn health(State(st): State<AppState>) -> Json<Value> {
    Json(json!({ "status": status(&st) }))
}

/// `GET /api/v1/health` (`read` scope): status (`ok`, or `degraded` when recovery found damage),
/// version, uptime, the recovery report (with file paths) and engine counters.
pub async fn health_detail(State(st): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": status(&st),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": st.started.elapsed().as_secs_f64(),
        "recovery": &st.recovery,
        "engine": st.engine.stats(),
    }))
}

fn status(st: &AppState) -> &'static str {
    let r = &st.recovery;
    if r.wal_warnings.is_empty() && r.segment_errors.is_empty() {
        "ok"
    } else {
        "degraded"
    }
}

/// `GET|HEAD /ping`: InfluxDB-style liveness probe, 204 with a version header.
pub async fn ping() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [(
            "X-Influxdb-Version",
            concat!("strata-", env!("CARGO_PKG_VERSION")),
        )],
    )
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(
    State(st): State<AppState>,
    rules: Option<axum::Extension<std::sync::Arc<strata_rules::Rules>>>,
) -> impl IntoResponse {
    let mut text = st.metrics.render(&st.engine.stats(), st.started.elapsed());
    if let Some(axum::Extension(rules)) = rules {
        rules.render_metrics(&mut text);
    }
    crate::lifecycle::render_metrics(&st.engine, &mut text);
    crate::rollups::render_metrics(
        &mut text,
        &st.engine.rollups(None),
        st.engine.rollup_counters(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// `POST /api/v1/flush`: writes the memtable to segments; 204 when done.
pub async fn flush(State(st): State<AppState>) -> Result<StatusCode, ApiError> {
    let engine = st.engine.clone();
    tokio::task::spawn_blocking(move || engine.flush())
        .await
        .map_err(ApiError::from_join)??;
    tracing::info!("flush requested over HTTP completed");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/compact`: merges segments; answers `{"partitions_compacted": N}`.
pub async fn compact(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let engine = st.engine.clone();
    let n = tokio::task::spawn_blocking(move || engine.compact())
        .await
        .map_err(ApiError::from_join)??;
    tracing::info!(partitions = n, "compaction requested over HTTP completed");
    Ok(Json(json!({ "partitions_compacted": n })))
}

/// `GET /api/v1/databases`: `{"databases": [...]}` (for a token limited to named streams, only
/// the databases it may see something in).
pub async fn databases(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Json<Value> {
    let visible: Vec<String> = st
        .engine
        .databases()
        .into_iter()
        .filter(|db| p.allows_database(db) || st.engine.streams(db).iter().any(|s| p.allows(db, s)))
        .collect();
    Json(json!({ "databases": visible }))
}

/// `GET /api/v1/streams?db=`: streams of a database with their fields and types (only those the
/// token may see).
pub async fn streams(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<DbParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let db = database_name(q.db.as_deref().unwrap_or(DEFAULT_DATABASE))?;
    let streams: Vec<Value> = st
        .engine
        .streams(&db)
        .into_iter()
        .filter(|name| p.allows(&db, name))
        .map(|name| {
            let fields: Vec<Value> = st
                .engine
                .schema(&db, &name)
                .unwrap_or_default()
                .into_iter()
                .map(|(f, ty)| json!({ "name": f, "type": ty }))
                .collect();
            json!({ "name": name, "fields": fields })
        })
        .collect();
    Ok(Json(json!({ "database": db, "streams": streams })))
}

/// Fallback for unknown paths: 404 with a JSON error.
pub async fn not_found(State(st): State<AppState>, uri: axum::http::Uri) -> ApiError {
    st.metrics.count_request("unmatched", 404);
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}
