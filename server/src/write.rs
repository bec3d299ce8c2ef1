//! Write endpoints: `/api/v1/write` (Strata), `/write` (InfluxDB 1.x) and `/api/v2/write`
//! (InfluxDB 2.x, bucket = database). Each decodes the body, parses line protocol and commits the
//! batch inside one `spawn_blocking` task, then answers 204 once the batch is durable.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use strata_ingest::line_protocol::Precision;
use strata_storage::{DEFAULT_DATABASE, WriteReceipt};

use crate::body;
use crate::error::ApiError;
use crate::precision::{parse_payload, precision_param};
use crate::state::AppState;

/// Query parameters of `/api/v1/write` and `/write` (InfluxDB 1.x; `rp`, `u`, `p` are ignored).
#[derive(Debug, serde::Deserialize)]
pub struct DbParams {
    /// Database name (default `default`).
    pub db: Option<String>,
    /// Timestamp precision.
    pub precision: Option<String>,
}

/// Query parameters of `/api/v2/write` (`org` is accepted and ignored).
#[derive(Debug, serde::Deserialize)]
pub struct BucketParams {
    /// Bucket name, used as the database name.
    pub bucket: Option<String>,
    /// Timestamp precision.
    pub precision: Option<String>,
}

/// `POST /api/v1/write` and `POST /write`.
pub async fn write_db(
    State(st): State<AppState>,
    q: Result<Query<DbParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let db = database_name(q.db.as_deref().unwrap_or(DEFAULT_DATABASE))?;
    let precision = precision_param(q.precision.as_deref())?;
    ingest(&st, db, precision, &headers, body).await
}

/// `POST /api/v2/write`.
pub async fn write_v2(
    State(st): State<AppState>,
    q: Result<Query<BucketParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let bucket = q
        .bucket
        .ok_or_else(|| ApiError::BadRequest("missing 'bucket' query parameter".into()))?;
    let db = database_name(&bucket)?;
    let precision = precision_param(q.precision.as_deref())?;
    ingest(&st, db, precision, &headers, body).await
}

/// Maps a query-string rejection to a 400.
pub fn bad_query(r: QueryRejection) -> ApiError {
    ApiError::BadRequest(r.body_text())
}

/// Validates a database name: `[A-Za-z0-9_-]{1,64}`.
pub fn database_name(name: &str) -> Result<String, ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid database name '{name}' (allowed: [A-Za-z0-9_-]{{1,64}})"
        )))
    }
}

/// Decodes, parses and commits one request body.
async fn ingest(
    st: &AppState,
    db: String,
    precision: Precision,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let started = Instant::now();
    let body = body.map_err(|r| body::rejection(r, st.max_body))?;
    let encoding = body::content_encoding(headers)?;
    let sent_bytes = body.len();
    let task_state = st.clone();
    let receipt =
        tokio::task::spawn_blocking(move || commit(&task_state, body, encoding, &db, precision))
            .await
            .map_err(ApiError::from_join)??;
    st.metrics
        .record_write(receipt, sent_bytes, started.elapsed());
    Ok(StatusCode::NO_CONTENT)
}

/// The blocking part of a write: decompress, parse, write to the engine.
fn commit(
    st: &AppState,
    body: Bytes,
    encoding: body::Encoding,
    db: &str,
    precision: Precision,
) -> Result<WriteReceipt, ApiError> {
    let payload = body::decode(body, encoding, st.max_body)?;
    let batch = parse_payload(&payload, db, precision, &st.device_tags, now_ns())?;
    drop(payload);
    if batch.rows() == 0 {
        return Ok(WriteReceipt::default());
    }
    Ok(st.engine.write(&batch)?)
}

/// Wall-clock time in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names() {
        assert!(database_name("default").is_ok());
        assert!(database_name("fleet_2-a").is_ok());
        assert!(database_name(&"a".repeat(64)).is_ok());
        assert!(database_name(&"a".repeat(65)).is_err());
        assert!(database_name("").is_err());
        assert!(database_name("a/b").is_err());
        assert!(database_name("ünïcode").is_err());
    }
}
