//! Write endpoints: `/api/v1/write` (Strata), `/write` (InfluxDB 1.x) and `/api/v2/write`
//! (InfluxDB 2.x, bucket = database). Each decodes the body, parses line protocol, confines the
//! batch to what the caller may write (a token's stream limits; a device's own rows) and commits it
//! inside one `spawn_blocking` task, then answers 204 once the batch is durable.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use strata_ingest::line_protocol::Precision;
use strata_storage::{DEFAULT_DATABASE, SeriesKey, TableWrite, WriteBatch, WriteReceipt};

use crate::auth::Principal;
use crate::body;
use crate::error::ApiError;
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
) -> Result<StatusCode, ApiError> {
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
) -> Result<StatusCode, ApiError> {
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
    /// When set, every line must belong to this stream (the device telemetry endpoint).
    pub only_stream: Option<String>,
    /// When set, every row is forced to this device (device credentials, telemetry endpoint).
    pub device: Option<String>,
}

impl Target {
    /// A write to `db` by `principal`; device credentials confine the rows to the device.
    pub fn new(db: String, precision: Precision, principal: Principal) -> Self {
        let device = principal.device().map(str::to_owned);
        Target {
            db,
            precision,
            principal,
            only_stream: None,
            device,
        }
    }
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

/// Decodes, parses, confines and commits one request body.
pub async fn ingest(
    st: &AppState,
    target: Target,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let started = Instant::now();
    let body = body.map_err(|r| body::rejection(r, st.max_body))?;
    let encoding = body::content_encoding(headers)?;
    let sent_bytes = body.len();
    let task_state = st.clone();
    let receipt = tokio::task::spawn_blocking(move || commit(&task_state, body, encoding, &target))
        .await
        .map_err(ApiError::from_join)??;
    st.metrics
        .record_write(receipt, sent_bytes, started.elapsed());
    Ok(StatusCode::NO_CONTENT)
}

/// The blocking part of a write: decompress, parse, confine, write to the engine.
fn commit(
    st: &AppState,
    body: Bytes,
    encoding: body::Encoding,
    target: &Target,
) -> Result<WriteReceipt, ApiError> {
    let payload = body::decode(body, encoding, st.max_body)?;
    let mut batch = parse_payload(
        &payload,
        &target.db,
        target.precision,
        &st.device_tags,
        now_ns(),
    )?;
    drop(payload);
    confine(&mut batch, target)?;
    if batch.rows() == 0 {
        return Ok(WriteReceipt::default());
    }
    Ok(st.engine.write(&batch)?)
}

/// Checks a parsed batch against what the caller may write: every stream must be the endpoint's
/// stream (if it has one) and allowed for the token; with a target device, rows are forced to it
/// (rows naming another device are refused with 403).
pub fn confine(batch: &mut WriteBatch, target: &Target) -> Result<(), ApiError> {
    let principal = &target.principal;
    for table in &mut batch.tables {
        if let Some(stream) = target.only_stream.as_deref().filter(|s| *s != table.stream) {
            return Err(ApiError::BadRequest(format!(
                "this endpoint writes stream '{stream}', but a line names measurement '{}'",
                table.stream
            )));
        }
        principal.check_stream(&batch.database, &table.stream)?;
        if let Some(device) = &target.device {
            force_device(table, device)?;
        }
    }
    Ok(())
}

/// Sets every series of `table` to `device`: series without a device get it, series naming
/// another device are refused; series that become equal are merged.
fn force_device(table: &mut TableWrite, device: &str) -> Result<(), ApiError> {
    if let Some(other) = table
        .series
        .iter()
        .find(|k| !k.device.is_empty() && k.device != device)
    {
        return Err(ApiError::Forbidden(format!(
            "device '{device}' may only write its own telemetry, but a line names device '{}'",
            other.device
        )));
    }
    let mut unique: Vec<SeriesKey> = Vec::with_capacity(table.series.len());
    let mut remap = Vec::with_capacity(table.series.len());
    for mut key in std::mem::take(&mut table.series) {
        key.device = device.to_owned();
        let idx = match unique.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                unique.push(key);
                unique.len() - 1
            }
        };
        remap.push(u32::try_from(idx).unwrap_or(u32::MAX));
    }
    for s in &mut table.row_series {
        *s = remap.get(*s as usize).copied().unwrap_or(*s);
    }
    table.series = unique;
    Ok(())
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

    fn batch(body: &str) -> WriteBatch {
        let tags = vec!["device".to_string()];
        parse_payload(body.as_bytes(), "db", Precision::Nanoseconds, &tags, 0).unwrap()
    }

    fn device_target(only_stream: Option<&str>) -> Target {
        let mut t = Target::new(
            "db".into(),
            Precision::Nanoseconds,
            Principal::Device("d1".into()),
        );
        t.only_stream = only_stream.map(str::to_owned);
        t
    }

    #[test]
    fn devices_are_confined_to_their_rows() {
        let dev = device_target(None);
        let mut b = batch("m,site=a v=1 1\nm,device=d1,site=a v=2 2\nm v=3 3\n");
        confine(&mut b, &dev).unwrap();
        let t = &b.tables[0];
        assert!(t.series.iter().all(|k| k.device == "d1"));
        assert_eq!(t.series.len(), 2, "{:?}", t.series);
        assert_eq!(t.row_series.len(), 3);
        assert_eq!(
            t.series[t.row_series[0] as usize],
            t.series[t.row_series[1] as usize]
        );
        assert!(t.row_series.iter().all(|i| (*i as usize) < t.series.len()));

        let mut other = batch("m,device=d2 v=1 1\n");
        let e = confine(&mut other, &dev).unwrap_err();
        assert_eq!(e.status().as_u16(), 403);
        assert!(e.to_string().contains("d2"));
    }

    #[test]
    fn telemetry_stream_must_match() {
        let dev = device_target(Some("temp"));
        let mut b = batch("temp v=1 1\n");
        assert!(confine(&mut b, &dev).is_ok());
        let mut b = batch("humidity v=1 1\n");
        assert_eq!(confine(&mut b, &dev).unwrap_err().status().as_u16(), 400);
    }

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
