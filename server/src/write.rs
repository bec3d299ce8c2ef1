//! HTTP transports of the write pipeline: `/api/v1/write` (Strata), `/write` (InfluxDB 1.x) and
//! `/api/v2/write` (InfluxDB 2.x, bucket = database), plus the pieces the device telemetry
//! endpoint and Flight share: the [`Target`] of a write (database, caller, the endpoint's stream
//! and device) and [`submit`], which hands a decoded batch to `strata_ingest::pipeline` (confine →
//! validate → engine write) inside `spawn_blocking` and answers once the batch is durable.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_ingest::line_protocol::Precision;
use strata_ingest::pipeline::{PipelineError, StreamAccess, Writer, Written};
use strata_storage::{DEFAULT_DATABASE, WriteBatch};

use crate::auth::Principal;
use crate::body;
use crate::error::ApiError;
use crate::metrics::RejectClass;
use crate::precision::{parse_payload, precision_param};
use crate::state::AppState;

/// Query parameters of `/api/v1/write` and `/write` (InfluxDB 1.x; `rp` is ignored, `u`/`p` are
/// credentials read by the auth layer).
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
    Extension(principal): Extension<Principal>,
    q: Result<Query<DbParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Refusal> {
    let Query(q) = q.map_err(bad_query)?;
    let db = database_name(q.db.as_deref().unwrap_or(DEFAULT_DATABASE))?;
    let precision = precision_param(q.precision.as_deref())?;
    ingest(&st, Target::new(db, precision, principal), &headers, body).await
}

/// `POST /api/v2/write`.
pub async fn write_v2(
    State(st): State<AppState>,
    Extension(principal): Extension<Principal>,
    q: Result<Query<BucketParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Refusal> {
    let Query(q) = q.map_err(bad_query)?;
    let bucket = q
        .bucket
        .ok_or_else(|| ApiError::BadRequest("missing 'bucket' query parameter".into()))?;
    let db = database_name(&bucket)?;
    let precision = precision_param(q.precision.as_deref())?;
    ingest(&st, Target::new(db, precision, principal), &headers, body).await
}

/// Where a write goes and who sends it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Database.
    pub db: String,
    /// Timestamp precision.
    pub precision: Precision,
    /// The authenticated caller.
    pub principal: Principal,
    /// When set, every row must belong to this stream (the endpoint's stream).
    pub only_stream: Option<String>,
    /// When set, every row is forced to this device (a token writing on a device's behalf).
    pub device: Option<String>,
}

impl Target {
    /// A write to `db` by `principal`.
    pub fn new(db: String, precision: Precision, principal: Principal) -> Self {
        Target {
            db,
            precision,
            principal,
            only_stream: None,
            device: None,
        }
    }

    /// The pipeline's view of the caller: device credentials write only their own rows into the
    /// device database; a token writes within its stream limits.
    pub fn writer(&self) -> Writer<'_> {
        let mut w = match &self.principal {
            Principal::Device(d) => Writer::device(d),
            Principal::Token(_) => Writer::client(&self.principal),
        };
        if let Some(d) = &self.device {
            w = w.on_behalf_of(d);
        }
        if let Some(s) = &self.only_stream {
            w = w.only_stream(s);
        }
        w
    }
}

impl StreamAccess for Principal {
    fn check(&self, database: &str, stream: &str) -> Result<(), String> {
        self.check_stream(database, stream)
            .map_err(|e| e.to_string())
    }
}

/// A refused or failed write, with the reject class the metrics count it under.
#[derive(Debug)]
pub struct Refusal(pub ApiError, pub Option<RejectClass>);

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal(e, None)
    }
}

impl From<PipelineError> for Refusal {
    fn from(e: PipelineError) -> Self {
        let class = matches!(e, PipelineError::Validation(_)).then_some(RejectClass("validation"));
        Refusal(ApiError::from(e), class)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut resp = self.0.into_response();
        if let Some(class) = self.1 {
            resp.extensions_mut().insert(class);
        }
        resp
    }
}

/// Maps a query-string rejection to a 400.
pub fn bad_query(r: QueryRejection) -> ApiError {
    ApiError::BadRequest(r.body_text())
}

/// Validates a database name: `[A-Za-z0-9_-]{1,64}` (`strata_ingest::text::check_database`).
pub fn database_name(name: &str) -> Result<String, ApiError> {
    strata_ingest::text::check_database(name)
        .map(|()| name.to_owned())
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Decodes and parses one line-protocol request body, then submits it to the pipeline.
async fn ingest(
    st: &AppState,
    target: Target,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Refusal> {
    let started = Instant::now();
    let body = body.map_err(|r| body::rejection(r, st.max_body))?;
    let encoding = body::content_encoding(headers)?;
    let sent_bytes = body.len();
    let task = st.clone();
    let decode = move |t: &mut Target| -> Result<WriteBatch, ApiError> {
        let payload = body::decode(body, encoding, task.max_body)?;
        parse_payload(&payload, &t.db, t.precision, &task.device_tags, now_ns())
    };
    submit(st, "http", target, sent_bytes, started, decode).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs `decode` (which may narrow the target to what the payload's format allows) and the
/// pipeline (confine → validate → engine write) off the async runtime,
/// then records the write in the metrics under `protocol`. Returns once the rows are durable.
pub async fn submit<F>(
    st: &AppState,
    protocol: &'static str,
    target: Target,
    sent_bytes: usize,
    started: Instant,
    decode: F,
) -> Result<Written, Refusal>
where
    F: FnOnce(&mut Target) -> Result<WriteBatch, ApiError> + Send + 'static,
{
    let task = st.clone();
    let written = tokio::task::spawn_blocking(move || -> Result<Written, Refusal> {
        let mut target = target;
        let batch = decode(&mut target)?;
        Ok(task.pipeline.write(batch, &target.writer())?)
    })
    .await
    .map_err(ApiError::from_join)??;
    st.metrics
        .record_write(written.receipt, sent_bytes, started.elapsed());
    st.metrics.record_flagged(protocol, written.flagged_rows);
    Ok(written)
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
    fn writers_follow_the_principal() {
        let mut t = Target::new(
            "db".into(),
            Precision::Nanoseconds,
            Principal::Device("d1".into()),
        );
        let w = t.writer();
        assert_eq!(w.device, Some("d1"));
        assert!(w.device_credentials && w.access.is_none());
        t.only_stream = Some("temp".into());
        assert_eq!(t.writer().stream, Some("temp"));
    }

    #[test]
    fn database_names() {
        assert!(database_name("default").is_ok());
        assert!(database_name("fleet_2-a").is_ok());
        assert!(database_name(&"a".repeat(65)).is_err());
        assert!(database_name("a/b").is_err());
    }
}
