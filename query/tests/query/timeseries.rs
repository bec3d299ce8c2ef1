//! Time-series SQL against a real engine: gap filling (`time_buckets`, `locf`, `interpolate`) with
//! expected values worked out by hand from the written points, and the last-value fast path
//! (`last_values(...)`) against the equivalent full-scan aggregate.

use std::sync::Arc;

use crate::support::*;
use strata_query::QueryEngine;
use strata_storage::{Engine, EngineConfig, Value};

fn point(device: &str, minute: i64, v: f64) -> Point<'_> {
    Point {
        device,
        tags: Vec::new(),
        time: T0 + minute * MINUTE,
        fields: vec![("v", Value::Float(v))],
    }
}

fn engine() -> (tempfile::TempDir, Arc<Engine>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.background = false;
    cfg.durability = strata_storage::Durability::None;
    let engine = Arc::new(Engine::open(cfg).unwrap());
    (dir, engine)
}

const GAPFILL: &str = "\
    SELECT d.device, b.bucket, a.v, locf(a.v) OVER w AS prev, interpolate(a.v, b.bucket) OVER w AS lin \
    FROM time_buckets('2024-01-01T00:00:00Z', '2024-01-01T00:50:00Z', INTERVAL '10 minutes') b \
    CROSS JOIN (SELECT DISTINCT device FROM temp) d \
    LEFT JOIN (SELECT device, time_bucket(INTERVAL '10 minutes', time) AS bucket, avg(v) AS v FROM temp \
               WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:50:00Z' GROUP BY 1, 2) a \
      ON a.device = d.device AND a.bucket = b.bucket \
    WINDOW w AS (PARTITION BY d.device ORDER BY b.bucket) \
    ORDER BY d.device, b.bucket";

fn num(c: &Cell) -> Option<f64> {
    match c {
        Cell::Null => None,
        other => Some(other.f()),
    }
}

#[tokio::test]
async fn gap_filling_generates_empty_buckets_and_fills_them() {
    let (_dir, engine) = engine();
    // a: minute 0 = 10, minute 1 = 20 (bucket 00:00 mean 15), minute 35 = 45 (bucket 00:30).
    // b: minute 5 = 100 (bucket 00:00), minute 22 = 80 (bucket 00:20).
    // Outside the range (ignored): a at minute 70.
    let points = [
        point("a", 0, 10.0),
        point("a", 1, 20.0),
        point("a", 35, 45.0),
        point("a", 70, 99.0),
        point("b", 5, 100.0),
        point("b", 22, 80.0),
    ];
    write(&engine, "default", "temp", &points);
    let q = QueryEngine::new(engine).unwrap();
    let got = sql(&q, GAPFILL).await;
    assert_eq!(got.len(), 10, "5 buckets for each of 2 devices: {got:?}");
    let bucket = |k: i64| Cell::Int(T0 + k * 10 * MINUTE);
    let expect: [(&str, [Option<f64>; 3]); 10] = [
        // (device, [avg, locf, interpolate]) per bucket 00:00 .. 00:40
        ("a", [Some(15.0), Some(15.0), Some(15.0)]),
        ("a", [None, Some(15.0), Some(25.0)]),
        ("a", [None, Some(15.0), Some(35.0)]),
        ("a", [Some(45.0), Some(45.0), Some(45.0)]),
        ("a", [None, Some(45.0), None]),
        ("b", [Some(100.0), Some(100.0), Some(100.0)]),
        ("b", [None, Some(100.0), Some(90.0)]),
        ("b", [Some(80.0), Some(80.0), Some(80.0)]),
        ("b", [None, Some(80.0), None]),
        ("b", [None, Some(80.0), None]),
    ];
    for (i, (row, (device, values))) in got.iter().zip(expect).enumerate() {
        assert_eq!(row[0], Cell::Str(device.into()), "row {i}");
        assert_eq!(row[1], bucket(i as i64 % 5), "row {i}");
        let cells: Vec<Option<f64>> = row[2..].iter().map(num).collect();
        assert_eq!(cells, values.to_vec(), "row {i} ({device})");
    }
}

#[tokio::test]
async fn gap_filling_errors_are_plan_errors() {
    let (_dir, engine) = engine();
    let q = QueryEngine::new(engine).unwrap();
    for bad in [
        "SELECT * FROM time_buckets('2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z', INTERVAL '1 month')",
        "SELECT * FROM time_buckets('2024-01-01T00:00:00Z', '2124-01-02T00:00:00Z', INTERVAL '1 second')",
        "SELECT * FROM time_buckets('yesterday', '2024-01-02T00:00:00Z', INTERVAL '1 hour')",
        "SELECT * FROM time_buckets('2024-01-01T00:00:00Z')",
    ] {
        let e = q.query(bad).await.expect_err(bad);
        assert!(e.is_client_error(), "{bad}: {e}");
    }
    let got = sql(
        &q,
        "SELECT count(*) FROM time_buckets('2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z', INTERVAL '1 hour')",
    )
    .await;
    assert_eq!(got, vec![vec![Cell::Int(24)]]);
}

/// `last_values('readings')` must equal the full-scan "last value of each field per series".
const FULL_SCAN_LATEST: &str = "\
    SELECT max(time), device, fleet, model, last(speed, time), last(load, time), last(moving, time), last(fuel, time) \
    FROM readings GROUP BY device, fleet, model ORDER BY device";

#[tokio::test]
async fn last_values_equals_the_full_scan() {
    let (_dir, engine, truth) = fleet_engine();
    let q = QueryEngine::new(engine.clone()).unwrap();
    let fast = "SELECT time, device, fleet, model, speed, load, moving, fuel \
                FROM last_values('readings') ORDER BY device";
    let expected = sql(&q, FULL_SCAN_LATEST).await;
    assert_eq!(sql(&q, fast).await, expected);
    assert_eq!(expected.len(), DEVICES);
    // By hand from the ground truth: d1's newest point and its newest fuel reading.
    let d1: Vec<&Reading> = truth.iter().filter(|r| r.device == "d1").collect();
    let newest = d1.iter().max_by_key(|r| r.time).unwrap();
    assert_eq!(expected[1][0], Cell::Int(newest.time));
    assert_eq!(expected[1][4], Cell::Float(newest.speed));
    let fuel = d1
        .iter()
        .filter(|r| r.fuel.is_some())
        .max_by_key(|r| r.time)
        .unwrap();
    assert_eq!(expected[1][7], Cell::Float(fuel.fuel.unwrap()));

    // Filters: a device, a tag, and a non-pushable predicate.
    let one = sql(
        &q,
        "SELECT device, speed FROM last_values('readings') WHERE device = 'd4'",
    )
    .await;
    assert_eq!(
        one,
        vec![vec![Cell::Str("d4".into()), expected[4][4].clone()]]
    );
    let north = sql(
        &q,
        "SELECT device FROM last_values('readings') WHERE fleet = 'north' AND speed >= 0 ORDER BY device",
    )
    .await;
    assert_eq!(north.len(), 3);

    // An out-of-order older write changes nothing; a newer one is visible at once.
    let old = Point {
        device: "d1",
        tags: vec![("fleet", "north"), ("model", "b")],
        time: T0,
        fields: vec![("speed", Value::Float(-1.0))],
    };
    write(&engine, "default", "readings", &[old]);
    assert_eq!(sql(&q, fast).await, sql(&q, FULL_SCAN_LATEST).await);
    let new = Point {
        time: newest.time + TICK,
        fields: vec![("speed", Value::Float(-2.0))],
        device: "d1",
        tags: vec![("fleet", "north"), ("model", "b")],
    };
    write(&engine, "default", "readings", &[new]);
    engine.flush().unwrap();
    let after = sql(&q, fast).await;
    assert_eq!(after, sql(&q, FULL_SCAN_LATEST).await);
    assert_eq!(after[1][4], Cell::Float(-2.0));
    assert_eq!(
        after[1][7], expected[1][7],
        "fuel keeps its own latest value"
    );
}

#[tokio::test]
async fn last_values_rejects_bad_arguments() {
    let (_dir, engine, _) = fleet_engine();
    let q = QueryEngine::new(engine).unwrap();
    for bad in [
        "SELECT * FROM last_values('nope')",
        "SELECT * FROM last_values()",
        "SELECT * FROM last_values(1)",
    ] {
        let e = q.query(bad).await.expect_err(bad);
        assert!(e.is_client_error(), "{bad}: {e}");
    }
}

/// A query engine without plan cache and fast paths: the general plans the fast ones must equal.
fn general_engine(engine: &Arc<Engine>) -> QueryEngine {
    let config = strata_query::QueryConfig {
        plan_cache_entries: 0,
        fast_paths: false,
        ..strata_query::QueryConfig::default()
    };
    QueryEngine::with_config(engine.clone(), config).unwrap()
}

/// Results of `sql` with plan caching and fast paths on, and with both off.
async fn both(cached: &QueryEngine, plain: &QueryEngine, sql_text: &str) -> Vec<Vec<Cell>> {
    let a = sql(cached, sql_text).await;
    assert_eq!(a, sql(plain, sql_text).await, "{sql_text}");
    a
}

#[tokio::test]
async fn cached_plans_see_new_points_and_new_series() {
    let (_dir, engine, _) = fleet_engine();
    let cached = QueryEngine::new(engine.clone()).unwrap();
    let plain = general_engine(&engine);
    let queries = [
        "SELECT device, count(*), avg(speed) FROM readings GROUP BY device ORDER BY device",
        "SELECT r.device, count(*) FROM readings r JOIN diagnostics d \
         ON r.device = d.device AND r.time = d.time GROUP BY r.device ORDER BY r.device",
        "SELECT device, speed FROM last_values('readings') ORDER BY device",
        "SELECT device, last_value(speed ORDER BY time) AS s FROM readings GROUP BY device ORDER BY device",
    ];
    let mut before = Vec::new();
    for q in queries {
        before.push(both(&cached, &plain, q).await);
        assert!(cached.cached_plan(q).unwrap().is_some(), "{q} is cached");
        both(&cached, &plain, q).await; // second run: from the cache
    }
    let p = |device, time| Point {
        device,
        tags: vec![("fleet", "north")],
        time,
        fields: vec![("speed", Value::Float(1.0))],
    };
    write(
        &engine,
        "default",
        "readings",
        &[p("d0", T0 + TICKS * TICK), p("d9", T0)],
    );
    let diag = Point {
        device: "d0",
        tags: Vec::new(),
        time: T0 + TICKS * TICK,
        fields: vec![("status", Value::Integer(1))],
    };
    write(&engine, "default", "diagnostics", &[diag]);
    for (q, old) in queries.iter().zip(before) {
        let now = both(&cached, &plain, q).await;
        assert_ne!(now, old, "{q} sees the new points");
    }
}

/// Constant plans (`SELECT 1`, a filter that is always false) are cached and answer the same
/// from the cache; plans whose answer depends on the time they run are not cached.
#[tokio::test]
async fn constant_plans_are_cached_and_answer_the_same() {
    let (_dir, engine, _) = fleet_engine();
    let cached = QueryEngine::new(engine.clone()).unwrap();
    let plain = general_engine(&engine);
    for q in [
        "SELECT 1",
        "SELECT 1 + 2 * 3 AS x, 'a' AS s",
        "SELECT device, speed FROM readings WHERE false",
    ] {
        assert!(cached.cached_plan(q).unwrap().is_none(), "{q}");
        let first = both(&cached, &plain, q).await;
        assert!(cached.cached_plan(q).unwrap().is_some(), "{q} is cached");
        assert_eq!(both(&cached, &plain, q).await, first, "{q} from the cache");
    }
    let volatile = "SELECT now() > TIMESTAMP '2000-01-01T00:00:00Z' AS later";
    both(&cached, &plain, volatile).await;
    assert!(cached.cached_plan(volatile).unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_in_the_scan_equals_the_general_plan() {
    let (_dir, engine, _) = fleet_engine();
    let fast = QueryEngine::new(engine.clone()).unwrap();
    let general = general_engine(&engine);
    // Sparse fields (fuel), a missing tag (model), a device with gaps (d2), origin and
    // time ranges cutting buckets, data in segments and memtable.
    let queries = [
        "SELECT fleet, time_bucket(INTERVAL '10 minutes', time) AS b, avg(speed), count(fuel), min(fuel), max(speed), sum(fuel) \
         FROM readings GROUP BY fleet, b ORDER BY fleet, b",
        "SELECT device, model, date_bin(INTERVAL '7 minutes', time, TIMESTAMP '2024-01-01T00:03:00Z') AS b, avg(fuel) \
         FROM readings GROUP BY device, model, b ORDER BY device, model, b",
        "SELECT time_bucket(INTERVAL '1 hour', time) AS b, avg(speed), count(load) FROM readings \
         WHERE device = 'd2' AND time >= '2024-01-01T00:25:00Z' AND time < '2024-01-01T01:35:00Z' GROUP BY b ORDER BY b",
        "SELECT model, avg(fuel), count(moving) FROM readings WHERE fleet = 'south' GROUP BY model ORDER BY model",
        "SELECT avg(speed), max(fuel) FROM readings",
        "SELECT device, sum(speed) FROM readings WHERE device IN ('d1', 'd3') GROUP BY device ORDER BY device",
    ];
    for q in queries {
        let a = sql(&fast, q).await;
        let b = sql(&general, q).await;
        assert!(!a.is_empty(), "{q}");
        assert!(approx_eq(&a, &b), "{q}\nfast: {a:?}\ngeneral: {b:?}");
    }
    let plan = sql(&fast, &format!("EXPLAIN {}", queries[0])).await;
    assert!(
        format!("{plan:?}").contains("ScanAggregateExec"),
        "{plan:?}"
    );
    let plan = sql(&fast, &format!("EXPLAIN {}", queries[2])).await;
    assert!(
        format!("{plan:?}").contains("ScanAggregateExec"),
        "{plan:?}"
    );
    // Shapes outside the fast path keep the general plan.
    for q in [
        "SELECT device, avg(speed) FROM readings WHERE speed > 10 GROUP BY device ORDER BY device",
        "SELECT device, count(*) FROM readings GROUP BY device ORDER BY device",
        "SELECT device, avg(load) FROM readings GROUP BY device ORDER BY device",
    ] {
        let plan = sql(&fast, &format!("EXPLAIN {q}")).await;
        assert!(
            !format!("{plan:?}").contains("ScanAggregateExec"),
            "{q}: {plan:?}"
        );
        assert!(
            approx_eq(&sql(&fast, q).await, &sql(&general, q).await),
            "{q}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_point_from_the_cache_equals_the_sorted_scan() {
    let (_dir, engine, _) = fleet_engine();
    let fast = QueryEngine::new(engine.clone()).unwrap();
    let general = general_engine(&engine);
    let queries = [
        "SELECT * FROM readings WHERE device = 'd1' ORDER BY time DESC LIMIT 1",
        "SELECT time, fuel, speed FROM readings WHERE device = 'd2' ORDER BY time DESC LIMIT 1",
        "SELECT device, time, speed FROM readings WHERE fleet = 'south' ORDER BY time DESC, device LIMIT 1",
        "SELECT * FROM readings WHERE device = 'nope' ORDER BY time DESC LIMIT 1",
        // All devices tie on the newest time: the second key decides.
        "SELECT device, speed FROM readings ORDER BY time DESC, speed LIMIT 1",
        "SELECT device, speed FROM readings ORDER BY time DESC, device DESC LIMIT 1",
    ];
    let check = |label: &'static str| {
        let (fast, general) = (&fast, &general);
        async move {
            for q in queries {
                assert_eq!(sql(fast, q).await, sql(general, q).await, "{label}: {q}");
            }
        }
    };
    check("initial").await;
    let plan = sql(&fast, &format!("EXPLAIN {}", queries[0])).await;
    assert!(format!("{plan:?}").contains("NewestRowExec"), "{plan:?}");
    // A newer point without fuel: the newest row has fuel null.
    let p = Point {
        device: "d1",
        tags: vec![("fleet", "north"), ("model", "b")],
        time: T0 + TICKS * TICK,
        fields: vec![("speed", Value::Float(7.0))],
    };
    write(&engine, "default", "readings", &[p]);
    check("after a sparse write").await;
    engine.flush().unwrap();
    check("after flush").await;
    // A time filter keeps the general plan.
    let q = "SELECT * FROM readings WHERE device = 'd1' AND time < '2024-01-01T00:30:00Z' ORDER BY time DESC LIMIT 1";
    let plan = sql(&fast, &format!("EXPLAIN {q}")).await;
    assert!(!format!("{plan:?}").contains("NewestRowExec"), "{plan:?}");
    assert_eq!(sql(&fast, q).await, sql(&general, q).await);
    // Reading only the requested fields, d1's newest point (speed only) is no row of a query
    // for fuel: the newest row holding fuel is older, as the sorted scan finds it.
    let fields_only = |fast_paths| {
        let config = strata_query::QueryConfig {
            plan_cache_entries: 0,
            fast_paths,
            read_all_fields: false,
            ..strata_query::QueryConfig::default()
        };
        QueryEngine::with_config(engine.clone(), config).unwrap()
    };
    let (fast, general) = (fields_only(true), fields_only(false));
    let q = "SELECT time, fuel FROM readings WHERE device = 'd1' ORDER BY time DESC LIMIT 1";
    let answer = sql(&general, q).await;
    assert_eq!(sql(&fast, q).await, answer);
    assert!(!format!("{answer:?}").contains("Null"), "{answer:?}");
}

/// `count/sum/min/max/avg` over whole stored blocks come from the blocks' statistics (counted in
/// `stats_blocks` of EXPLAIN ANALYZE) and equal the general plan's answers, with ranges cutting
/// blocks, a memtable overwrite inside a stored window, a sparse field and day buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_from_block_statistics_equal_the_general_plan() {
    let (_dir, engine) = engine();
    const SECOND: i64 = 1_000_000_000;
    write(
        &engine,
        "default",
        "m",
        &three_devices(|i, k| (i * (k + 1)) as f64 * 0.25),
    );
    engine.flush().unwrap();
    // Overwrite one point of `b` from the memtable: the block holding it must not use
    // statistics (b's other blocks still do).
    write(
        &engine,
        "default",
        "m",
        &[Point {
            device: "b",
            tags: vec![("fleet", "north")],
            time: T0 + 500 * 2 * SECOND,
            fields: vec![("v", Value::Float(-1.0e6))],
        }],
    );
    let fast = QueryEngine::new(engine.clone()).unwrap();
    let general = general_engine(&engine);
    let queries = [
        "SELECT device, count(v), sum(v), min(v), max(v), avg(v), count(w), min(w) FROM m GROUP BY device ORDER BY device",
        "SELECT fleet, avg(v), max(w) FROM m WHERE time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T10:00:00Z' GROUP BY fleet ORDER BY fleet",
        "SELECT device, date_bin(INTERVAL '1 day', time) AS d, sum(v), count(w) FROM m GROUP BY device, d ORDER BY device, d",
        "SELECT count(v), min(v), max(v) FROM m",
        // Hourly buckets cut every block: decoded blocks reduced to runs (a range cutting
        // blocks, an origin off the hour, a sparse field, a memtable overwrite in b's window).
        "SELECT fleet, date_bin(INTERVAL '1 hour', time, TIMESTAMP '2024-01-01T00:20:00Z') AS h, avg(v), min(w), max(w), count(w), sum(v) \
         FROM m WHERE time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T09:59:59Z' GROUP BY fleet, h ORDER BY fleet, h",
        "SELECT device, time_bucket(INTERVAL '10 minutes', time) AS b, max(v), count(v) FROM m GROUP BY device, b ORDER BY device, b",
    ];
    for q in queries {
        let a = sql(&fast, q).await;
        let b = sql(&general, q).await;
        assert!(!a.is_empty(), "{q}");
        assert!(approx_eq(&a, &b), "{q}\nfast: {a:?}\ngeneral: {b:?}");
    }
    let analyzed = sql(&fast, &format!("EXPLAIN ANALYZE {}", queries[0])).await;
    let text = format!("{analyzed:?}");
    let blocks = explain_metric(&text, "stats_blocks");
    // a and c: 3 blocks each from statistics; b: its 2 blocks without the memtable row (the
    // block holding it is merged with it).
    assert_eq!(blocks, 8, "{text}");
    let analyzed = sql(&fast, &format!("EXPLAIN ANALYZE {}", queries[4])).await;
    let text = format!("{analyzed:?}");
    let reduced = explain_metric(&text, "blocks_reduced");
    // a and c: their 3 blocks each are cut by the hours and reduced to runs; b: the 2 blocks
    // without the memtable row (its first block is merged with it).
    assert_eq!(reduced, 8, "{text}");
}

/// Three devices of 2 s data in stored blocks, for the runs cache test.
fn blocks_engine(runs_cache_bytes: usize) -> (tempfile::TempDir, Arc<Engine>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.background = false;
    cfg.durability = strata_storage::Durability::None;
    cfg.runs_cache_bytes = runs_cache_bytes;
    let engine = Arc::new(Engine::open(cfg).unwrap());
    let points = three_devices(|i, k| ((i * 7 + k) % 101) as f64 * 0.5);
    write(&engine, "default", "m", &points);
    engine.flush().unwrap();
    (dir, engine)
}

/// Devices a, b (fleet north) and c (south), 20,000 points each every 2 s: `v` = `value(i, k)`
/// at point i of device k, and `w` = -i at every third point.
fn three_devices(value: impl Fn(i64, i64) -> f64) -> Vec<Point<'static>> {
    const SECOND: i64 = 1_000_000_000;
    let mut points = Vec::new();
    for (k, device) in ["a", "b", "c"].into_iter().enumerate() {
        for i in 0..20_000i64 {
            let mut fields = vec![("v", Value::Float(value(i, k as i64)))];
            if i % 3 == 0 {
                fields.push(("w", Value::Float(-(i as f64))));
            }
            points.push(Point {
                device,
                tags: vec![("fleet", if k == 2 { "south" } else { "north" })],
                time: T0 + i * 2 * SECOND,
                fields,
            });
        }
    }
    points
}

/// Hourly means over a range on the hours that cuts the stored blocks.
const ALIGNED: &str = "SELECT fleet, time_bucket(INTERVAL '1 hour', time) AS h, avg(v), count(w), sum(w) FROM m \
     WHERE time >= '2024-01-01T02:00:00Z' AND time < '2024-01-01T08:00:00Z' GROUP BY fleet, h ORDER BY fleet, h";

/// EXPLAIN ANALYZE of `q`: (blocks reduced to runs, of them from the runs cache, rows decoded).
async fn reduced_cached_decoded(q: &QueryEngine, text: &str) -> (usize, usize, usize) {
    let analyzed = sql(q, &format!("EXPLAIN ANALYZE {text}")).await;
    let text = format!("{analyzed:?}");
    (
        explain_metric(&text, "blocks_reduced"),
        explain_metric(&text, "blocks_cached"),
        explain_metric(&text, "rows_decoded"),
    )
}

/// The runs a stored block reduces to are cached per block and bucketing: the second query
/// over the same blocks decodes nothing and answers the same, other buckets and other
/// aggregates (min/max need runs with extremes) are not served another bucketing's runs, and
/// answers stay equal to the general plan's after an overwrite, a flush, an erase and a
/// compaction. A cache of zero bytes caches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_runs_of_stored_blocks_answer_as_the_general_plan() {
    let (_dir, engine) = blocks_engine(64 << 20);
    let fast = QueryEngine::new(engine.clone()).unwrap();
    let general = general_engine(&engine);
    let hourly = "SELECT fleet, time_bucket(INTERVAL '1 hour', time) AS h, avg(v), count(w), sum(w) \
                  FROM m GROUP BY fleet, h ORDER BY fleet, h";
    let others = [
        // Same buckets, but min/max: runs without extremes must not serve it.
        "SELECT fleet, time_bucket(INTERVAL '1 hour', time) AS h, min(v), max(w) FROM m GROUP BY fleet, h ORDER BY fleet, h",
        // Same stride, another origin; another stride.
        "SELECT device, date_bin(INTERVAL '1 hour', time, TIMESTAMP '2024-01-01T00:20:00Z') AS h, avg(v) FROM m GROUP BY device, h ORDER BY device, h",
        "SELECT device, time_bucket(INTERVAL '10 minutes', time) AS b, sum(v), count(v) FROM m GROUP BY device, b ORDER BY device, b",
        // Grouped by device instead of fleet: the same runs serve it.
        "SELECT device, time_bucket(INTERVAL '1 hour', time) AS h, avg(v), count(w), sum(w) FROM m GROUP BY device, h ORDER BY device, h",
        // Ranges cutting blocks: on the hours (the runs inside are taken), and off them (a run
        // is cut: decoded).
        ALIGNED,
        "SELECT fleet, time_bucket(INTERVAL '1 hour', time) AS h, avg(v), count(w), sum(w) FROM m \
         WHERE time >= '2024-01-01T02:10:00Z' AND time < '2024-01-01T07:59:58Z' GROUP BY fleet, h ORDER BY fleet, h",
    ];
    let check = |label: &'static str| {
        let (fast, general) = (&fast, &general);
        async move {
            for q in std::iter::once(hourly).chain(others) {
                let a = sql(fast, q).await;
                assert!(!a.is_empty(), "{q}");
                let b = sql(general, q).await;
                assert!(
                    approx_eq(&a, &b),
                    "{label}: {q}\nfast: {a:?}\ngeneral: {b:?}"
                );
                // Again, now from the cache where it holds the runs.
                let c = sql(fast, q).await;
                assert!(
                    approx_eq(&c, &b),
                    "{label} (again): {q}\nfast: {c:?}\ngeneral: {b:?}"
                );
            }
        }
    };
    // 3 devices x 3 blocks, every one cut by the hours: 9 reduced, none cached yet.
    assert_eq!(reduced_cached_decoded(&fast, hourly).await, (9, 0, 60_000));
    assert_eq!(reduced_cached_decoded(&fast, hourly).await, (9, 9, 0));
    check("stored").await;
    // The aligned range cuts the first blocks: after the checks, served from the whole blocks'
    // runs, nothing decoded.
    let (reduced, cached, decoded) = reduced_cached_decoded(&fast, ALIGNED).await;
    assert!(
        reduced > 0 && cached == reduced && decoded == 0,
        "{reduced} {cached} {decoded}"
    );
    let stats = engine.stats().runs_cache;
    assert!(
        stats.hits >= 9 && stats.entries > 0 && stats.bytes > 0,
        "{stats:?}"
    );
    // Overwrite one point of b: its block merges with the memtable row (not from the cache).
    let late = Point {
        device: "b",
        tags: vec![("fleet", "north")],
        time: T0 + 500 * 2_000_000_000,
        fields: vec![("v", Value::Float(-1.0e6)), ("w", Value::Float(3.0))],
    };
    write(&engine, "default", "m", &[late]);
    check("overwritten in the memtable").await;
    assert_eq!(reduced_cached_decoded(&fast, hourly).await.1, 8);
    engine.flush().unwrap();
    check("overwrite flushed").await;
    let erase = strata_storage::EraseRequest {
        database: None,
        device: "c".into(),
        start: T0 + 3_600_000_000_000,
        end: T0 + 7_200_000_000_000,
    };
    engine.erase_device(&erase).unwrap();
    check("erased an hour of c").await;
    engine.compact().unwrap();
    check("compacted").await;

    let (_dir2, off) = blocks_engine(0);
    let fast = QueryEngine::new(off.clone()).unwrap();
    assert_eq!(reduced_cached_decoded(&fast, hourly).await, (9, 0, 60_000));
    assert_eq!(reduced_cached_decoded(&fast, hourly).await, (9, 0, 60_000));
    let general = general_engine(&off);
    assert!(approx_eq(
        &sql(&fast, hourly).await,
        &sql(&general, hourly).await
    ));
    assert_eq!(off.stats().runs_cache.entries, 0);
}

/// The latest reading per device written as natural SQL (`last_value(x ORDER BY time)`,
/// `last(x, time)`, `max(time)`, grouped by device and/or tags, with tag filters and time ranges) is answered
/// from the last-value cache (`LastRowExec`) with the general plan's answers, including sparse
/// fields (null at the newest row), ranges that end before the newest point (read from the data)
/// and points still in the memtable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_per_device_in_natural_sql_equals_the_general_plan() {
    let (_dir, engine, _) = fleet_engine();
    let fast = QueryEngine::new(engine.clone()).unwrap();
    let general = general_engine(&engine);
    let queries = [
        "SELECT device, last_value(speed ORDER BY time) AS s FROM readings GROUP BY device ORDER BY device",
        "SELECT device, last(fuel, time) AS f, max(time) AS t FROM readings WHERE fleet = 'south' GROUP BY device ORDER BY device",
        "SELECT device, last_value(fuel ORDER BY time) AS f, last_value(speed ORDER BY time) AS s FROM readings GROUP BY device ORDER BY device",
        "SELECT device, max(time) AS t FROM readings GROUP BY device ORDER BY device",
        "SELECT device, last_value(speed ORDER BY time) AS s, max(time) AS t FROM readings \
         WHERE time >= '2024-01-01T00:30:00Z' GROUP BY device ORDER BY device",
        "SELECT device, last_value(speed ORDER BY time) AS s, last(fuel, time) AS f FROM readings \
         WHERE time < '2024-01-01T00:30:00Z' GROUP BY device ORDER BY device",
        "SELECT device, first_value(load ORDER BY time DESC) AS l FROM readings WHERE device IN ('d1', 'd2') GROUP BY device ORDER BY device",
        // Grouped by the device and tags (TSBS's `GROUP BY device, driver`); d5 has no
        // `model`, so it groups under null.
        "SELECT device AS name, fleet, last(fuel, time) AS f, last(speed, time) AS s FROM readings \
         WHERE fleet = 'north' GROUP BY device, fleet ORDER BY name",
        "SELECT device, model, fleet, last_value(fuel ORDER BY time) AS f FROM readings GROUP BY model, fleet, device ORDER BY device",
        "SELECT model, device, last_value(load ORDER BY time) AS l FROM readings \
         WHERE time < '2024-01-01T00:30:00Z' GROUP BY model, device ORDER BY device",
    ];
    for q in queries {
        let a = sql(&fast, q).await;
        let b = sql(&general, q).await;
        assert!(!a.is_empty(), "{q}");
        assert!(approx_eq(&a, &b), "{q}\nfast: {a:?}\ngeneral: {b:?}");
        let plan = format!("{:?}", sql(&fast, &format!("EXPLAIN {q}")).await);
        assert!(plan.contains("LastRowExec"), "{q}: {plan}");
    }
    // Not the newest value per device: the general plan stays.
    for q in [
        "SELECT device, last_value(speed ORDER BY speed) FROM readings GROUP BY device",
        "SELECT date_bin(INTERVAL '1 hour', time) AS h, last_value(speed ORDER BY time) FROM readings GROUP BY h",
        // Tags alone: devices' newest rows tie, and which one `last_value` picks is scan order.
        "SELECT fleet, last_value(speed ORDER BY time) FROM readings GROUP BY fleet",
        "SELECT device, last_value(speed ORDER BY time), avg(speed) FROM readings GROUP BY device",
    ] {
        let plan = format!("{:?}", sql(&fast, &format!("EXPLAIN {q}")).await);
        assert!(!plan.contains("LastRowExec"), "{q}: {plan}");
    }
}

/// A scan streams: a query over more data than the memory pool holds succeeds when the data is in
/// segments (read one window at a time, in batches of about 8192 rows), while the memtable rows a
/// snapshot copies are charged to the pool (a too-small pool refuses with "resources exhausted").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_stream_in_bounded_memory_and_charge_the_snapshot_to_the_pool() {
    use futures::StreamExt;
    let (_dir, engine) = engine();
    let mut points = Vec::new();
    for device in ["a", "b", "c", "d"] {
        for i in 0..60_000i64 {
            points.push(Point {
                device,
                tags: Vec::new(),
                time: T0 + i * 10 * 1_000_000_000,
                fields: vec![
                    ("v", Value::Float(i as f64)),
                    ("w", Value::Float(-(i as f64))),
                ],
            });
        }
    }
    write(&engine, "default", "m", &points);
    let config = strata_query::QueryConfig {
        memory_limit: 1 << 20,
        ..strata_query::QueryConfig::default()
    };
    let q = QueryEngine::with_config(engine.clone(), config).unwrap();
    // 240,000 rows in the memtable: the snapshot's copy does not fit in 1 MiB.
    let err = async {
        let mut s = q.stream("SELECT * FROM m").await?;
        while let Some(b) = s.next().await {
            b?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await
    .expect_err("the snapshot's memtable rows exceed the pool");
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("resources exhausted"),
        "{err}"
    );
    // In segments the same scan streams through the same 1 MiB pool.
    engine.flush().unwrap();
    let mut s = q.stream("SELECT * FROM m").await.unwrap();
    let (mut rows, mut biggest) = (0, 0);
    while let Some(b) = s.next().await {
        let b = b.unwrap();
        rows += b.num_rows();
        biggest = biggest.max(b.num_rows());
    }
    assert_eq!(rows, 240_000);
    // One step: about 8192 rows plus at most one window of one series (a day: 8640 rows).
    assert!(biggest <= 8192 + 8640, "{biggest}");
}
