//! The lifecycle API (admin scope): `GET|PUT|DELETE /api/v1/databases/{db}/lifecycle[?stream=S]`
//! reads and changes the policy of a database or one stream's override, and
//! `POST /api/v1/lifecycle/run` runs maintenance now. Durations travel as text (`"7d"`, parsed by
//! `strata_ingest::text::parse_duration`); `null` (or an absent key) means "forever" for
//! `retention` and "keep everything hot" for `hot`. See docs/lifecycle.md.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use strata_storage::lifecycle::{LifecyclePolicy, LifecycleRun, RollupSpec, format_duration};

use crate::error::ApiError;
use crate::state::AppState;
use crate::write::{bad_query, database_name};

/// `?stream=` of the lifecycle routes.
#[derive(Debug, Deserialize)]
pub struct StreamParam {
    /// The stream whose override is read or changed (absent: the database's policy).
    pub stream: Option<String>,
}

/// A policy as sent in a request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    #[serde(default)]
    hot: Option<String>,
    #[serde(default)]
    retention: Option<String>,
    #[serde(default)]
    rollups: Vec<RollupBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollupBody {
    every: String,
    #[serde(default)]
    keep: Option<String>,
}

/// Parses a policy body; every error names the key and says what is expected.
pub fn parse_policy(body: &[u8]) -> Result<LifecyclePolicy, ApiError> {
    let b: PolicyBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "lifecycle policy: {e}; expected {{\"hot\": \"7d\", \"retention\": \"400d\" | null, \"rollups\": [{{\"every\": \"1m\", \"keep\": \"90d\"}}]}}"
        ))
    })?;
    let dur = |key: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|text| {
                strata_ingest::text::parse_duration(text)
                    .map_err(|e| ApiError::BadRequest(format!("lifecycle policy: {key}: {e}")))
                    .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            })
            .transpose()
    };
    let mut rollups = Vec::with_capacity(b.rollups.len());
    for (i, r) in b.rollups.iter().enumerate() {
        let every = dur(&format!("rollups[{i}].every"), &Some(r.every.clone()))?.unwrap_or(0);
        let keep = dur(&format!("rollups[{i}].keep"), &r.keep)?;
        rollups.push(RollupSpec { every, keep });
    }
    Ok(LifecyclePolicy {
        hot: dur("hot", &b.hot)?,
        retention: dur("retention", &b.retention)?,
        rollups,
    })
}

/// A policy as JSON, durations as text.
pub fn policy_json(p: &LifecyclePolicy) -> Value {
    let d = |v: Option<i64>| v.map(format_duration);
    json!({
        "hot": d(p.hot),
        "retention": d(p.retention),
        "rollups": p.rollups.iter().map(|r| json!({
            "every": format_duration(r.every),
            "keep": d(r.keep),
        })).collect::<Vec<_>>(),
    })
}

/// A maintenance report as JSON.
pub fn run_json(r: &LifecycleRun) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

fn names(
    db: &str,
    q: Result<Query<StreamParam>, QueryRejection>,
) -> Result<(String, Option<String>), ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let db = database_name(db)?;
    if let Some(s) = &q.stream {
        strata_ingest::text::check_name(s, "stream")
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    Ok((db, q.stream))
}

/// `GET /api/v1/databases/{db}/lifecycle[?stream=S]`: the policy set on the database, its stream
/// overrides, every stream's effective policy and tier status, and the last maintenance run.
pub async fn get(
    State(st): State<AppState>,
    Path(db): Path<String>,
    q: Result<Query<StreamParam>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (db, only) = names(&db, q)?;
    Ok(Json(describe(&st, &db, only.as_deref())?))
}

/// The GET answer (also printed by `strata lifecycle show`).
fn describe(st: &AppState, db: &str, only: Option<&str>) -> Result<Value, ApiError> {
    let engine = &st.engine;
    let (policy, overrides) = engine.lifecycle_settings(db)?;
    let mut names = engine.streams(db);
    names.extend(overrides.keys().cloned());
    names.sort();
    names.dedup();
    names.retain(|n| only.is_none_or(|o| o == n));
    if let Some(o) = only
        && names.is_empty()
    {
        names.push(o.to_string());
    }
    let mut streams = Vec::new();
    for name in names {
        let (effective, source) = engine.lifecycle(db, &name)?;
        streams.push(json!({
            "stream": name,
            "source": source,
            "policy": policy_json(&effective),
        }));
    }
    let (tiers, cold) = engine.lifecycle_status()?;
    let tiers: Vec<_> = tiers
        .into_iter()
        .filter(|t| t.database == db && only.is_none_or(|o| o == t.stream))
        .collect();
    Ok(json!({
        "database": db,
        "tiers": tiers,
        "cold_store": cold,
        "policy": policy.as_ref().map(policy_json),
        "overrides": overrides.iter().map(|(k, v)| (k.clone(), policy_json(v))).collect::<serde_json::Map<_, _>>(),
        "streams": streams,
        "last_run": engine.last_lifecycle_run().as_ref().map(run_json),
    }))
}

/// `PUT /api/v1/databases/{db}/lifecycle[?stream=S]`: replaces the policy (absent keys mean
/// "forever" / "keep hot", no rollups); answers like GET.
pub async fn put(
    State(st): State<AppState>,
    Path(db): Path<String>,
    q: Result<Query<StreamParam>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let (db, stream) = names(&db, q)?;
    let body = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let policy = parse_policy(&body)?;
    let engine = st.engine.clone();
    let (d, s) = (db.clone(), stream.clone());
    tokio::task::spawn_blocking(move || engine.set_lifecycle(&d, s.as_deref(), Some(policy)))
        .await
        .map_err(ApiError::from_join)??;
    Ok(Json(describe(&st, &db, stream.as_deref())?))
}

/// `DELETE /api/v1/databases/{db}/lifecycle[?stream=S]`: removes the database's policy (its
/// streams fall back to the default) or one stream's override (it falls back to the database's).
pub async fn delete(
    State(st): State<AppState>,
    Path(db): Path<String>,
    q: Result<Query<StreamParam>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (db, stream) = names(&db, q)?;
    let engine = st.engine.clone();
    let (d, s) = (db.clone(), stream.clone());
    tokio::task::spawn_blocking(move || engine.set_lifecycle(&d, s.as_deref(), None))
        .await
        .map_err(ApiError::from_join)??;
    Ok(Json(describe(&st, &db, stream.as_deref())?))
}

/// `POST /api/v1/lifecycle/run`: runs maintenance now and answers its report.
pub async fn run(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let engine = st.engine.clone();
    let report = tokio::task::spawn_blocking(move || engine.run_lifecycle())
        .await
        .map_err(ApiError::from_join)??;
    Ok(Json(run_json(&report)))
}

/// A gauge: name, help text, value of a tier.
type Gauge = (
    &'static str,
    &'static str,
    fn(&strata_storage::lifecycle::TierStatus) -> i64,
);

/// Prometheus lines for the lifecycle: per stream and tier rows, bytes, files, oldest time,
/// pending moves; cold-store counters; the last run's errors.
pub fn render_metrics(engine: &strata_storage::Engine, out: &mut String) {
    use std::fmt::Write;
    let Ok((tiers, cold)) = engine.lifecycle_status() else {
        return;
    };
    let gauges: [Gauge; 5] = [
        (
            "strata_tier_rows",
            "Stored rows per stream and tier.",
            |t| t.rows as i64,
        ),
        ("strata_tier_bytes", "Bytes per stream and tier.", |t| {
            t.bytes as i64
        }),
        (
            "strata_tier_files",
            "Segment files (hot) or objects (cold) per stream.",
            |t| t.files as i64,
        ),
        (
            "strata_tier_oldest_seconds",
            "Oldest row per stream and tier (Unix seconds).",
            |t| t.oldest_ns / 1_000_000_000,
        ),
        (
            "strata_tier_pending_moves",
            "Hot segments due to move to the cold tier.",
            |t| t.pending_moves as i64,
        ),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for t in &tiers {
            let _ = writeln!(
                out,
                "{name}{{database=\"{}\",stream=\"{}\",tier=\"{}\"}} {}",
                crate::metrics::escape(&t.database),
                crate::metrics::escape(&t.stream),
                t.tier,
                get(t)
            );
        }
    }
    let last_errors = engine.last_lifecycle_run().map_or(0, |r| r.errors.len());
    let _ = writeln!(
        out,
        "# HELP strata_lifecycle_last_run_errors Errors of the last lifecycle maintenance run.\n# TYPE strata_lifecycle_last_run_errors gauge\nstrata_lifecycle_last_run_errors {last_errors}"
    );
    if let Some(c) = cold {
        let counters = [
            (
                "strata_cold_cache_hits_total",
                "Cold reads answered from the cache.",
                c.cache_hits,
            ),
            (
                "strata_cold_cache_misses_total",
                "Cold reads that fetched the object.",
                c.cache_misses,
            ),
            (
                "strata_cold_cache_decoded_hits_total",
                "Cold row groups read already decoded from the cache.",
                c.cache_decoded_hits,
            ),
            (
                "strata_cold_objects_moved_total",
                "Segments moved to the cold tier.",
                c.objects_moved,
            ),
            (
                "strata_cold_segment_bytes_moved_total",
                "Segment bytes moved to the cold tier.",
                c.segment_bytes_moved,
            ),
            (
                "strata_cold_object_bytes_written_total",
                "Parquet bytes written to the cold store.",
                c.object_bytes_written,
            ),
            (
                "strata_cold_move_errors_total",
                "Moves that failed (the data stayed hot).",
                c.move_errors,
            ),
            (
                "strata_cold_corrupt_objects_total",
                "Cold objects that failed their checksum when read.",
                c.corrupt_objects,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP strata_cold_store_error 1 while the cold store's last operation failed.\n# TYPE strata_cold_store_error gauge\nstrata_cold_store_error {}",
            u8::from(c.last_error.is_some())
        );
        let _ = writeln!(
            out,
            "# HELP strata_cold_retired_objects Cold objects dropped from the manifest, deleted once no read uses them.\n# TYPE strata_cold_retired_objects gauge\nstrata_cold_retired_objects {}",
            c.retired_objects
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: i64 = 86_400_000_000_000;

    #[test]
    fn the_issue_example_parses_and_prints_back() {
        let body = br#"{"hot": "7d", "retention": "400d", "rollups": [{"every": "1m",
            "keep": "90d"}, {"every": "1h", "keep": "5y"}]}"#;
        let p = parse_policy(body).unwrap();
        assert_eq!(p.hot, Some(7 * D));
        assert_eq!(p.retention, Some(400 * D));
        assert_eq!(p.rollups[1].keep, Some(5 * 365 * D));
        assert_eq!(
            policy_json(&p),
            json!({"hot": "7d", "retention": "400d", "rollups": [
                {"every": "1m", "keep": "90d"}, {"every": "1h", "keep": "5y"}]})
        );
        let forever = parse_policy(br#"{"retention": null}"#).unwrap();
        assert_eq!(forever, LifecyclePolicy::default());
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let err = |b: &[u8]| parse_policy(b).unwrap_err().to_string();
        assert!(err(br#"{"retention": "7 days"}"#).contains("retention"));
        assert!(err(br#"{"retention": 7}"#).contains("expected"));
        assert!(err(br#"{"retension": "7d"}"#).contains("unknown field"));
        assert!(err(br#"{"rollups": [{"every": "1x"}]}"#).contains("rollups[0].every"));
        assert!(err(b"not json").contains("lifecycle policy"));
    }
}
