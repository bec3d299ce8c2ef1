//! The rollup rewrite (`query/src/rollup.rs`) against the general plan over raw data: the same
//! answers (floats to rounding) for bucketed aggregates by device and tags, with tag and time
//! filters, late data written after the rollup was built, and `time_bucket`; queries the rollup
//! cannot answer exactly keep the raw plan. EXPLAIN shows which table was read.

use crate::support::*;
use strata_query::{QueryConfig, QueryEngine};
use strata_storage::Value;
use strata_storage::lifecycle::RollupSpec;

const HOUR: i64 = 60 * MINUTE;

fn ts(t: i64) -> String {
    format!("to_timestamp_nanos({t})")
}

/// Engines over the fleet with 1-minute and 10-minute rollups of `readings`: one with the
/// rewrite, one without any fast path.
fn setup() -> (
    tempfile::TempDir,
    std::sync::Arc<strata_storage::Engine>,
    QueryEngine,
    QueryEngine,
) {
    let (dir, engine, _) = fleet_engine();
    let specs = [
        RollupSpec {
            every: MINUTE,
            keep: None,
        },
        RollupSpec {
            every: 10 * MINUTE,
            keep: None,
        },
    ];
    engine.set_rollups("default", "readings", &specs).unwrap();
    engine.run_rollups(100).unwrap();
    let (fast, plain) = fast_and_plain(&engine);
    (dir, engine, fast, plain)
}

/// A query engine with the rewrite and one without any fast path (nor plan cache).
fn fast_and_plain(engine: &std::sync::Arc<strata_storage::Engine>) -> (QueryEngine, QueryEngine) {
    let fast = QueryEngine::new(engine.clone()).unwrap();
    let plain = QueryEngine::with_config(
        engine.clone(),
        QueryConfig {
            plan_cache_entries: 0,
            fast_paths: false,
            ..QueryConfig::default()
        },
    )
    .unwrap();
    (fast, plain)
}

/// Queries the rewrite must answer, with the rollup interval it should pick.
fn rewritable() -> Vec<(String, &'static str)> {
    let (a, b) = (T0 + 20 * MINUTE, T0 + 100 * MINUTE);
    vec![
        (
            "SELECT date_bin(INTERVAL '1 hour', time) AS h, fleet, avg(speed), min(speed), max(speed), \
             sum(speed), count(speed), avg(load), sum(load), min(load), max(load), count(fuel), avg(fuel) \
             FROM readings GROUP BY h, fleet ORDER BY h, fleet"
                .to_string(),
            "_rollup_10m_readings",
        ),
        (
            format!(
                "SELECT device, date_bin(INTERVAL '20 minutes', time) AS b, avg(speed), count(fuel) \
                 FROM readings WHERE time >= {} AND time < {} AND fleet = 'north' \
                 GROUP BY device, b ORDER BY device, b",
                ts(a),
                ts(b)
            ),
            "_rollup_10m_readings",
        ),
        (
            format!(
                "SELECT time_bucket(INTERVAL '5 minutes', time) AS b, model, max(speed), count(moving) \
                 FROM readings WHERE time >= {} AND time <= {} GROUP BY b, model ORDER BY b, model",
                ts(T0 + 3 * MINUTE),
                ts(T0 + 90 * MINUTE - 1)
            ),
            "_rollup_1m_readings",
        ),
        (
            "SELECT date_bin(INTERVAL '30 minutes', time) AS b, count(*) FROM readings \
             WHERE device IN ('d1', 'd2') GROUP BY b ORDER BY b"
                .to_string(),
            "_rollup_10m_readings",
        ),
        (
            "SELECT device, avg(fuel), max(fuel) FROM readings GROUP BY device ORDER BY device"
                .to_string(),
            "_rollup_10m_readings",
        ),
        (
            // Every point is a row (`read_all_fields`, the default): count(*) counts points.
            "SELECT device, count(*), avg(fuel) FROM readings GROUP BY device ORDER BY device"
                .to_string(),
            "_rollup_10m_readings",
        ),
    ]
}

/// Queries the rewrite must leave to the raw plan.
fn not_rewritable() -> Vec<String> {
    vec![
        // A bound inside a window.
        format!(
            "SELECT date_bin(INTERVAL '1 hour', time) AS h, avg(speed) FROM readings \
             WHERE time >= {} GROUP BY h ORDER BY h",
            ts(T0 + 30 * 1_000_000_000)
        ),
        // A bucket no rollup divides.
        "SELECT date_bin(INTERVAL '90 seconds', time) AS b, avg(speed) FROM readings GROUP BY b ORDER BY b"
            .to_string(),
        // A predicate on a field.
        "SELECT date_bin(INTERVAL '1 hour', time) AS h, avg(speed) FROM readings \
         WHERE load > 10 GROUP BY h ORDER BY h"
            .to_string(),
        // An aggregate the rollup does not hold.
        "SELECT device, median(speed) FROM readings GROUP BY device ORDER BY device".to_string(),
    ]
}

#[tokio::test]
async fn rollup_answers_equal_raw_answers() {
    let (_dir, _engine, fast, plain) = setup();
    for (q, table) in rewritable() {
        let plan = explain(&fast, &q).await;
        assert!(plan.contains(table), "{q} should read {table}:\n{plan}");
        let (a, b) = (sql(&fast, &q).await, sql(&plain, &q).await);
        assert!(!a.is_empty(), "{q}");
        assert!(approx_eq(&a, &b), "{q}\nrollup: {a:?}\nraw:    {b:?}");
    }
    for q in not_rewritable() {
        let plan = explain(&fast, &q).await;
        assert!(
            !plan.contains("_rollup_"),
            "{q} must read raw data:\n{plan}"
        );
        assert!(
            approx_eq(&sql(&fast, &q).await, &sql(&plain, &q).await),
            "{q}"
        );
    }
}

#[tokio::test]
async fn rows_holding_a_field_only_when_not_reading_all_fields() {
    let (_dir, engine, _, _) = setup();
    let config = |fast_paths| QueryConfig {
        plan_cache_entries: 0,
        fast_paths,
        read_all_fields: false,
        ..QueryConfig::default()
    };
    let fast = QueryEngine::with_config(engine.clone(), config(true)).unwrap();
    let plain = QueryEngine::with_config(engine.clone(), config(false)).unwrap();
    // fuel is missing on 1 of 5 points: buckets and counts follow the points holding it.
    let q = "SELECT date_bin(INTERVAL '10 minutes', time) AS b, device, avg(fuel), count(fuel) \
             FROM readings GROUP BY b, device ORDER BY b, device";
    assert!(explain(&fast, q).await.contains("_rollup_10m_readings"));
    assert!(
        approx_eq(&sql(&fast, q).await, &sql(&plain, q).await),
        "{q}"
    );
    let q = "SELECT device, count(*) FROM readings GROUP BY device ORDER BY device";
    assert!(explain(&fast, q).await.contains("_rollup_10m_readings"));
    assert_eq!(sql(&fast, q).await, sql(&plain, q).await, "{q}");
    // count(*) next to a field aggregate counts the points holding that field: raw data.
    let q = "SELECT device, count(*), avg(fuel) FROM readings GROUP BY device ORDER BY device";
    assert!(!explain(&fast, q).await.contains("_rollup_"));
    assert!(
        approx_eq(&sql(&fast, q).await, &sql(&plain, q).await),
        "{q}"
    );
}

#[tokio::test]
async fn late_and_rewritten_points_are_seen_without_a_maintenance_run() {
    let (_dir, engine, fast, plain) = setup();
    let q = "SELECT date_bin(INTERVAL '1 hour', time) AS h, device, avg(speed), count(speed), max(speed) \
             FROM readings GROUP BY h, device ORDER BY h, device";
    let before = sql(&fast, q).await;
    // d3 comes back with an old point rewritten and a new late one; a new device appears.
    let p = |device, time, v| Point {
        device,
        tags: vec![("fleet", "south"), ("model", "b")],
        time,
        fields: vec![("speed", Value::Float(v))],
    };
    write(
        &engine,
        "default",
        "readings",
        &[
            p("d3", T0, 999.0),
            p("d3", T0 + 5, 1.0),
            p("d8", T0 + HOUR, 5.0),
        ],
    );
    let pending: usize = engine.rollups(None).iter().map(|s| s.pending_windows).sum();
    assert!(pending > 0, "the writes are not absorbed yet");
    let (a, b) = (sql(&fast, q).await, sql(&plain, q).await);
    assert!(explain(&fast, q).await.contains("_rollup_10m_readings"));
    assert!(approx_eq(&a, &b), "rollup: {a:?}\nraw:    {b:?}");
    assert_ne!(a, before, "the late points changed the answer");
}

#[tokio::test]
async fn a_rollup_still_back_filling_is_not_used() {
    let (_dir, engine, _, plain) = setup();
    let spec = RollupSpec {
        every: HOUR,
        keep: None,
    };
    engine
        .set_rollups(
            "default",
            "readings",
            &[
                RollupSpec {
                    every: MINUTE,
                    keep: None,
                },
                spec,
            ],
        )
        .unwrap();
    engine.flush().unwrap();
    let fast = QueryEngine::new(engine.clone()).unwrap();
    let q = "SELECT date_bin(INTERVAL '1 hour', time) AS h, avg(speed) FROM readings GROUP BY h ORDER BY h";
    let plan = explain(&fast, q).await;
    assert!(plan.contains("_rollup_1m_readings"), "{plan}");
    engine.run_rollups(100).unwrap();
    let plan = explain(&fast, q).await;
    assert!(plan.contains("_rollup_1h_readings"), "{plan}");
    assert!(approx_eq(&sql(&fast, q).await, &sql(&plain, q).await));
}

/// The plans the rewrite makes (`sum` of float and of integer rollup columns) fold inside the
/// scan (`ScanAggregateExec`), from the block statistics of the flushed rollup segments, with the
/// general plan's answers (integer sums exactly).
#[tokio::test]
async fn rollup_plans_fold_in_the_scan_with_the_general_plans_answers() {
    let (_dir, engine, fast, plain) = setup();
    engine.flush().unwrap();
    let queries = [
        // Each rollup block lies in one day: answered from its statistics.
        "SELECT date_bin(INTERVAL '1 day', time) AS d, fleet, avg(speed), sum(load), count(load) \
         FROM readings GROUP BY d, fleet ORDER BY d, fleet",
        // 20-minute buckets cut the blocks: decoded rows.
        "SELECT date_bin(INTERVAL '20 minutes', time) AS b, count(*) FROM readings \
         GROUP BY b ORDER BY b",
    ];
    for q in queries {
        let plan = explain(&fast, q).await;
        assert!(
            plan.contains("_rollup_10m_readings") && plan.contains("ScanAggregateExec"),
            "{q}:\n{plan}"
        );
        let (a, b) = (sql(&fast, q).await, sql(&plain, q).await);
        assert!(!a.is_empty(), "{q}");
        assert!(approx_eq(&a, &b), "{q}\nfolded: {a:?}\nraw:    {b:?}");
    }
    let analyzed = explain(&fast, &format!("ANALYZE {}", queries[0])).await;
    let stats_blocks = explain_metric(&analyzed, "stats_blocks");
    assert!(
        stats_blocks > 0,
        "blocks answered from statistics:\n{analyzed}"
    );
}

/// Integer sums folded in the scan are exact: a block whose stored f64 sum could have rounded
/// (values near 2^60) is decoded instead of answered from its statistics.
#[tokio::test]
async fn integer_sums_in_the_scan_are_exact_beyond_two_to_the_53() {
    let (_dir, engine, fast, plain) = setup();
    let big = 1i64 << 60;
    let points: Vec<Point> = (0..6i64)
        .flat_map(|k| {
            ["x", "y"].map(|device| Point {
                device,
                tags: vec![],
                time: T0 + k * MINUTE,
                fields: vec![("n", Value::Integer(big + 2 * k + 1))],
            })
        })
        .collect();
    write(&engine, "default", "counters", &points);
    engine.flush().unwrap();
    let q = "SELECT device, date_bin(INTERVAL '1 hour', time) AS h, sum(n), count(n) FROM counters \
             GROUP BY device, h ORDER BY device, h";
    assert!(explain(&fast, q).await.contains("ScanAggregateExec"));
    let a = sql(&fast, q).await;
    assert_eq!(a, sql(&plain, q).await);
    let exact: i64 = (0..6i64).map(|k| big + 2 * k + 1).sum();
    assert_eq!(a[0][2], Cell::Int(exact), "{a:?}");
}

/// A rollup kept for less time than the raw data has dropped old windows the raw plan still
/// returns, so it is not read; once it is kept a window longer than the raw retention it is.
#[tokio::test]
async fn a_rollup_kept_for_less_than_the_raw_data_is_not_read() {
    let (_dir, engine, fast, plain) = setup();
    let short = |keep| RollupSpec {
        every: MINUTE,
        keep: Some(keep),
    };
    // The fleet's points are from 2024: older than an hour, so gone from this 1m rollup.
    engine
        .set_rollups("default", "readings", &[short(HOUR)])
        .unwrap();
    engine.run_rollups(100).unwrap();
    let q = "SELECT date_bin(INTERVAL '2 minutes', time) AS b, device, avg(speed), count(*) \
             FROM readings GROUP BY b, device ORDER BY b, device";
    let plan = explain(&fast, q).await;
    assert!(!plan.contains("_rollup_"), "{plan}");
    let raw = sql(&plain, q).await;
    assert!(!raw.is_empty());
    assert!(approx_eq(&sql(&fast, q).await, &raw), "{q}");

    // Raw data kept 100 years, the rollup one minute longer: it holds every raw window.
    let century = 100 * 365 * 24 * HOUR;
    let (mut policy, _) = engine.lifecycle("default", "readings").unwrap();
    policy.rollups = vec![short(century + MINUTE)];
    engine
        .set_lifecycle("default", Some("readings"), Some(policy.clone()))
        .unwrap();
    engine.run_rollups(100).unwrap();
    policy.retention = Some(century);
    engine
        .set_lifecycle("default", Some("readings"), Some(policy.clone()))
        .unwrap();
    assert!(explain(&fast, q).await.contains("_rollup_1m_readings"));
    assert!(approx_eq(&sql(&fast, q).await, &raw), "{q}");

    // Kept exactly as long as the raw data: the window the retention cuts may be partial.
    policy.rollups = vec![short(century)];
    engine
        .set_lifecycle("default", Some("readings"), Some(policy))
        .unwrap();
    engine.run_rollups(100).unwrap();
    assert!(!explain(&fast, q).await.contains("_rollup_"));
}

/// Tags named like rollup statistics (`points`, `speed_max`) keep their names in the rollup
/// table; the rewrite still reads the statistics, not the tags.
#[tokio::test]
async fn tags_named_like_statistics_are_not_read_as_them() {
    let (_dir, engine, _) = fleet_engine();
    let p = |device, time, v| Point {
        device,
        tags: vec![("points", "7"), ("speed_max", "120")],
        time,
        fields: vec![("speed", Value::Float(v))],
    };
    write(
        &engine,
        "default",
        "clashes",
        &[
            p("d1", T0, 3.0),
            p("d1", T0 + MINUTE, 5.0),
            p("d2", T0 + 2 * MINUTE, 4.0),
        ],
    );
    engine
        .set_rollups(
            "default",
            "clashes",
            &[RollupSpec {
                every: MINUTE,
                keep: None,
            }],
        )
        .unwrap();
    engine.run_rollups(100).unwrap();
    let (fast, plain) = fast_and_plain(&engine);
    for q in [
        "SELECT date_bin(INTERVAL '1 hour', time) AS h, count(*), max(speed), min(speed) \
         FROM clashes GROUP BY h ORDER BY h",
        "SELECT speed_max, points, count(*), max(speed) FROM clashes \
         WHERE speed_max = '120' GROUP BY speed_max, points",
    ] {
        let plan = explain(&fast, q).await;
        assert!(plan.contains("_rollup_1m_clashes"), "{plan}");
        let (a, b) = (sql(&fast, q).await, sql(&plain, q).await);
        assert!(approx_eq(&a, &b), "{q}\nrollup: {a:?}\nraw:    {b:?}");
    }
}
