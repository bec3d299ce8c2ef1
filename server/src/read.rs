//! `GET /api/v1/read`: a JSON range read of one stream, optionally filtered by device, tags and
//! fields. The response is serialized straight from the engine's columnar batches.

use std::time::Instant;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use strata_storage::{ColumnData, DEFAULT_DATABASE, ScanRequest, SeriesBatch};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use crate::time::{format_rfc3339, parse_time};
use crate::write::{bad_query, database_name};

/// How timestamps are written in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// Integer nanoseconds since the epoch (default).
    #[default]
    Nanoseconds,
    /// RFC 3339 strings in UTC.
    Rfc3339,
}

/// Parsed query parameters of a read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadParams {
    /// The scan to run.
    pub scan: ScanRequest,
    /// Timestamp format of the response.
    pub time_format: TimeFormat,
}

impl ReadParams {
    /// Builds the parameters from raw query pairs (`tag` may repeat; unknown names are rejected).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut p = ReadParams {
            scan: ScanRequest {
                database: DEFAULT_DATABASE.into(),
                start: i64::MIN,
                end: i64::MAX,
                ..Default::default()
            },
            time_format: TimeFormat::Nanoseconds,
        };
        let mut stream = None;
        for (k, v) in pairs {
            match k.as_str() {
                "db" => p.scan.database = database_name(&v)?,
                "stream" => stream = Some(v),
                "device" => p.scan.device = Some(v),
                "tag" => p.scan.tags.push(parse_tag(&v)?),
                "fields" => p.scan.fields = Some(parse_fields(&v)),
                "start" => {
                    p.scan.start =
                        parse_time(&v).map_err(|e| ApiError::BadRequest(format!("start: {e}")))?
                }
                "end" => {
                    p.scan.end =
                        parse_time(&v).map_err(|e| ApiError::BadRequest(format!("end: {e}")))?
                }
                "time_format" => p.time_format = parse_time_format(&v)?,
                "u" | "p" => {} // InfluxDB 1.x credentials, handled by the auth layer
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown query parameter '{other}'"
                    )));
                }
            }
        }
        p.scan.stream = stream
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::BadRequest("missing 'stream' query parameter".into()))?;
        if p.scan.start >= p.scan.end {
            return Err(ApiError::BadRequest("'start' must be before 'end'".into()));
        }
        Ok(p)
    }
}

fn parse_tag(v: &str) -> Result<(String, String), ApiError> {
    match v.split_once(':') {
        Some((k, val)) if !k.is_empty() => Ok((k.to_owned(), val.to_owned())),
        _ => Err(ApiError::BadRequest(format!(
            "tag filter '{v}' must look like name:value"
        ))),
    }
}

fn parse_fields(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_time_format(v: &str) -> Result<TimeFormat, ApiError> {
    match v {
        "ns" | "" => Ok(TimeFormat::Nanoseconds),
        "rfc3339" => Ok(TimeFormat::Rfc3339),
        _ => Err(ApiError::BadRequest(format!(
            "unknown time_format '{v}' (expected ns or rfc3339)"
        ))),
    }
}

/// `GET /api/v1/read`.
pub async fn read(
    State(st): State<AppState>,
    Extension(principal): Extension<Principal>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Query(pairs) = q.map_err(bad_query)?;
    let params = ReadParams::from_pairs(pairs)?;
    principal.check_stream(&params.scan.database, &params.scan.stream)?;
    let task_state = st.clone();
    let json = tokio::task::spawn_blocking(move || run_read(&task_state, &params))
        .await
        .map_err(ApiError::from_join)??;
    st.metrics.record_read(started.elapsed());
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// Checks the stream and fields exist, scans, and serializes the result.
fn run_read(st: &AppState, p: &ReadParams) -> Result<Vec<u8>, ApiError> {
    let scan = &p.scan;
    let schema = st
        .engine
        .schema(&scan.database, &scan.stream)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "stream '{}' not found in database '{}'",
                scan.stream, scan.database
            ))
        })?;
    for f in scan.fields.iter().flatten() {
        if !schema.iter().any(|(name, _)| name == f) {
            return Err(ApiError::BadRequest(format!(
                "stream '{}' has no field '{f}'",
                scan.stream
            )));
        }
    }
    let batches = read_bounded(st, scan)?;
    let body = ReadResponse {
        series: &batches,
        time_format: p.time_format,
    };
    serde_json::to_vec(&body)
        .map_err(|e| ApiError::Internal(format!("cannot serialize the response: {e}")))
}

/// Reads the series of one engine snapshot, one at a time, refusing once the result passes
/// `--max-read-rows` (so memory stays bounded by the limit, not by the range asked for).
fn read_bounded(st: &AppState, scan: &ScanRequest) -> Result<Vec<SeriesBatch>, ApiError> {
    let mode = strata_storage::ReadMode::Values;
    let Some(snap) = st.engine.snapshot(scan, None, mode)? else {
        return Ok(Vec::new());
    };
    let snap = std::sync::Arc::new(snap);
    let mut out = Vec::new();
    let mut rows = 0usize;
    let limit = st.max_read_rows;
    for i in 0..snap.series_count() {
        let mut cursor = snap.cursor(i);
        let mut parts: Vec<SeriesBatch> = Vec::new();
        while let Some(b) = cursor.next_batch()? {
            rows += b.times.len();
            if rows > limit {
                return Err(ApiError::BadRequest(format!(
                    "the result has more than {limit} rows, the limit of /api/v1/read (--max-read-rows): \
                     narrow the time range (start/end), name fewer devices, or use \
                     POST /api/v1/query, which streams results of any size"
                )));
            }
            parts.push(b);
        }
        out.extend(join_series(parts));
    }
    Ok(out)
}

/// One batch from the windows of one series (in time order).
fn join_series(mut parts: Vec<SeriesBatch>) -> Option<SeriesBatch> {
    let mut first = parts.drain(..1.min(parts.len())).next()?;
    for p in parts {
        first.times.extend_from_slice(&p.times);
        for (dst, src) in first.columns.iter_mut().zip(p.columns) {
            for i in 0..src.valid.len() {
                match src.get(i) {
                    Some(v) => {
                        dst.data.push_value(&v);
                        dst.valid.push(true);
                    }
                    None => dst.push_null(),
                }
            }
        }
    }
    Some(first)
}

/// The JSON response: `{"series": [...]}`.
pub struct ReadResponse<'a> {
    /// The scanned series.
    pub series: &'a [SeriesBatch],
    /// Timestamp format.
    pub time_format: TimeFormat,
}

impl Serialize for ReadResponse<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        let series: Vec<SeriesJson<'_>> = self
            .series
            .iter()
            .map(|b| SeriesJson {
                b,
                tf: self.time_format,
            })
            .collect();
        m.serialize_entry("series", &series)?;
        m.end()
    }
}

/// One series: device, tags, column names and row arrays.
struct SeriesJson<'a> {
    b: &'a SeriesBatch,
    tf: TimeFormat,
}

impl Serialize for SeriesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.b;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("device", &b.key.device)?;
        m.serialize_entry("tags", &TagsJson(&b.key.tags))?;
        let columns: Vec<&str> = std::iter::once("time")
            .chain(b.columns.iter().map(|c| c.name.as_str()))
            .collect();
        m.serialize_entry("columns", &columns)?;
        m.serialize_entry("values", &RowsJson { b, tf: self.tf })?;
        m.end()
    }
}

/// Tags as a JSON object.
struct TagsJson<'a>(&'a [(String, String)]);

impl Serialize for TagsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// All rows of a series.
struct RowsJson<'a> {
    b: &'a SeriesBatch,
    tf: TimeFormat,
}

impl Serialize for RowsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.b.times.len()))?;
        for i in 0..self.b.times.len() {
            seq.serialize_element(&RowJson {
                b: self.b,
                i,
                tf: self.tf,
            })?;
        }
        seq.end()
    }
}

/// Row `i`: time followed by one cell per column (null when absent).
struct RowJson<'a> {
    b: &'a SeriesBatch,
    i: usize,
    tf: TimeFormat,
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.b.columns.len() + 1))?;
        let t = self.b.times[self.i];
        match self.tf {
            TimeFormat::Nanoseconds => seq.serialize_element(&t)?,
            TimeFormat::Rfc3339 => seq.serialize_element(&format_rfc3339(t))?,
        }
        for c in &self.b.columns {
            let valid = c.valid.get(self.i).copied().unwrap_or(false);
            seq.serialize_element(&Cell {
                data: &c.data,
                i: self.i,
                valid,
            })?;
        }
        seq.end()
    }
}

/// One value, or null.
struct Cell<'a> {
    data: &'a ColumnData,
    i: usize,
    valid: bool,
}

impl Serialize for Cell<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.valid || self.i >= self.data.len() {
            return s.serialize_none();
        }
        match self.data {
            ColumnData::Float(v) if v[self.i].is_finite() => s.serialize_f64(v[self.i]),
            ColumnData::Float(_) => s.serialize_none(),
            ColumnData::Integer(v) => s.serialize_i64(v[self.i]),
            ColumnData::Unsigned(v) => s.serialize_u64(v[self.i]),
            ColumnData::Boolean(v) => s.serialize_bool(v[self.i]),
            ColumnData::String(v) => s.serialize_str(v.get(self.i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storage::{Column, FieldType, SeriesKey};

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn params_parse() {
        let p = ReadParams::from_pairs(pairs(&[
            ("stream", "cpu"),
            ("tag", "fleet:north"),
            ("tag", "model:F-150"),
            ("fields", "a, b"),
            ("start", "1970-01-01T00:00:01Z"),
            ("end", "5000000000"),
            ("time_format", "rfc3339"),
        ]))
        .unwrap();
        assert_eq!(p.scan.database, "default");
        assert_eq!(
            p.scan.tags,
            vec![
                ("fleet".into(), "north".into()),
                ("model".into(), "F-150".into())
            ]
        );
        assert_eq!(p.scan.fields, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!((p.scan.start, p.scan.end), (1_000_000_000, 5_000_000_000));
        assert_eq!(p.time_format, TimeFormat::Rfc3339);
    }

    #[test]
    fn params_reject() {
        assert!(ReadParams::from_pairs(pairs(&[])).is_err());
        assert!(ReadParams::from_pairs(pairs(&[("stream", "s"), ("tag", "nocolon")])).is_err());
        assert!(ReadParams::from_pairs(pairs(&[("stream", "s"), ("bogus", "1")])).is_err());
        assert!(
            ReadParams::from_pairs(pairs(&[("stream", "s"), ("start", "10"), ("end", "10")]))
                .is_err()
        );
        assert!(ReadParams::from_pairs(pairs(&[("stream", "s"), ("db", "a b")])).is_err());
    }

    #[test]
    fn response_json_shape() {
        let mut f = Column::new("temp", FieldType::Float);
        f.data = ColumnData::Float(vec![1.5, 0.0]);
        f.valid = vec![true, false];
        let mut s = Column::new("status", FieldType::String);
        s.data = ColumnData::String(Default::default());
        if let ColumnData::String(sc) = &mut s.data {
            sc.push("ok");
            sc.push("hot");
        }
        s.valid = vec![true, true];
        let batch = SeriesBatch {
            series_id: 1,
            key: SeriesKey {
                device: "t1".into(),
                tags: vec![("fleet".into(), "north".into())],
            },
            times: vec![1, 2],
            columns: vec![f, s],
        };
        let json = serde_json::to_value(ReadResponse {
            series: &[batch],
            time_format: TimeFormat::Nanoseconds,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"series": [{"device": "t1", "tags": {"fleet": "north"},
                "columns": ["time", "temp", "status"], "values": [[1, 1.5, "ok"], [2, null, "hot"]]}]})
        );
    }
}
