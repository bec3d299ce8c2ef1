//! SQL over a real engine: pushdown equivalence, joins, time-series functions, output formats,
//! errors and limits. Ground truth comes from the generated points or from a raw engine scan,
//! never from the SQL layer itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use futures::StreamExt;
use strata_query::arrow::ipc::reader::StreamReader;
use strata_query::datafusion::physical_plan::{ExecutionPlan, collect, execute_stream};
use strata_query::{Answer, OutputFormat, QueryConfig, QueryEngine, QueryError};
use strata_storage::{Engine, ScanRequest, Value};

/// (time, device, fleet, speed, fuel).
type Row = (i64, String, Option<String>, f64, Option<f64>);
/// Which rows a query should return.
type Keep = Box<dyn Fn(&Row) -> bool>;

/// (time, device, fleet, speed, fuel) of every stored reading, from a raw full engine scan.
fn raw_readings(engine: &Engine) -> Vec<Row> {
    let req = ScanRequest {
        database: "default".into(),
        stream: "readings".into(),
        start: i64::MIN,
        end: i64::MAX,
        ..Default::default()
    };
    let mut out = Vec::new();
    for s in engine.scan(&req).unwrap() {
        let fleet = s
            .key
            .tags
            .iter()
            .find(|(k, _)| k == "fleet")
            .map(|(_, v)| v.clone());
        let col = |name: &str| s.columns.iter().find(|c| c.name == name).unwrap();
        let (speed, fuel) = (col("speed"), col("fuel"));
        for (i, t) in s.times.iter().enumerate() {
            let f = |c: &strata_storage::Column| match c.get(i) {
                Some(strata_storage::Value::Float(v)) => Some(v),
                _ => None,
            };
            out.push((
                *t,
                s.key.device.clone(),
                fleet.clone(),
                f(speed).unwrap(),
                f(fuel),
            ));
        }
    }
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out
}

fn as_tuples(rows: Vec<Vec<Cell>>) -> Vec<Row> {
    let mut out: Vec<_> = rows
        .into_iter()
        .map(|r| {
            let opt_s = |c: &Cell| (c != &Cell::Null).then(|| c.s().to_string());
            let opt_f = |c: &Cell| (c != &Cell::Null).then(|| c.f());
            (
                r[0].i(),
                r[1].s().to_string(),
                opt_s(&r[2]),
                r[3].f(),
                opt_f(&r[4]),
            )
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out
}

const COLS: &str = "SELECT time, device, fleet, speed, fuel FROM readings";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushdown_matches_a_full_scan_filtered_in_rust() {
    let (_dir, engine, truth) = fleet_engine();
    let q = QueryEngine::new(engine.clone()).unwrap();
    let all = raw_readings(&engine);
    assert_eq!(all.len(), truth.len(), "engine holds every written point");
    let (from, to) = (T0 + 25 * MINUTE, T0 + 95 * MINUTE);
    let iso = |ns: i64| format!("to_timestamp_nanos({ns})");
    let cases: Vec<(String, Keep)> = vec![
        (COLS.to_string(), Box::new(|_| true)),
        (
            format!("{COLS} WHERE device = 'd1'"),
            Box::new(|r| r.1 == "d1"),
        ),
        (
            format!("{COLS} WHERE device IN ('d2', 'd4', 'nope')"),
            Box::new(|r| r.1 == "d2" || r.1 == "d4"),
        ),
        (
            format!("{COLS} WHERE device = 'd0' OR device = 'd5'"),
            Box::new(|r| r.1 == "d0" || r.1 == "d5"),
        ),
        (
            format!("{COLS} WHERE time >= {} AND time < {}", iso(from), iso(to)),
            Box::new(move |r| r.0 >= from && r.0 < to),
        ),
        (
            format!("{COLS} WHERE time > {} AND time <= {}", iso(from), iso(to)),
            Box::new(move |r| r.0 > from && r.0 <= to),
        ),
        (
            format!(
                "{COLS} WHERE time BETWEEN {} AND {} AND fleet = 'south'",
                iso(from),
                iso(to)
            ),
            Box::new(move |r| r.0 >= from && r.0 <= to && r.2.as_deref() == Some("south")),
        ),
        (
            format!("{COLS} WHERE time = {}", iso(from)),
            Box::new(move |r| r.0 == from),
        ),
        (
            format!(
                "{COLS} WHERE time >= '2024-01-01T00:25:00Z' AND time < '2024-01-01T01:35:00Z' AND device = 'd2'"
            ),
            Box::new(move |r| r.0 >= from && r.0 < to && r.1 == "d2"),
        ),
        (
            format!("{COLS} WHERE device = 'd3' AND speed > 50 AND fuel IS NOT NULL"),
            Box::new(|r| r.1 == "d3" && r.3 > 50.0 && r.4.is_some()),
        ),
        (
            format!("{COLS} WHERE device = 'd1' AND device = 'd2'"),
            Box::new(|_| false),
        ),
        (
            format!("{COLS} WHERE fleet = 'nowhere'"),
            Box::new(|_| false),
        ),
    ];
    for (text, keep) in cases {
        let expected: Vec<_> = all.iter().filter(|r| keep(r)).cloned().collect();
        let got = as_tuples(sql(&q, &text).await);
        assert_eq!(got.len(), expected.len(), "{text}");
        assert_eq!(got, expected, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_what_was_pushed() {
    let (_dir, engine, _) = fleet_engine();
    let q = QueryEngine::new(engine).unwrap();
    let plan = explain(
        &q,
        "SELECT avg(speed) FROM readings WHERE device = 'd1' AND fleet = 'north' \
         AND time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T00:20:00Z'",
    )
    .await;
    assert!(plan.contains("devices=1 (device filter: 1)"), "{plan}");
    assert!(plan.contains(r#"tags=[("fleet", "north")]"#), "{plan}");
    let (a, b) = (T0 + 10 * MINUTE, T0 + 20 * MINUTE);
    assert!(plan.contains(&format!("time=[{a}, {b})")), "{plan}");
    assert!(plan.contains(r#"fields=["speed"] (every point)"#), "{plan}");
    assert!(
        !plan.contains("FilterExec"),
        "exact pushdown leaves no filter: {plan}"
    );
    let plan = explain(&q, "SELECT speed FROM readings WHERE speed > 3").await;
    assert!(plan.contains("FilterExec"), "{plan}");
    assert!(plan.contains(&format!("devices={DEVICES}")), "{plan}");
    let plan = explain(&q, "SELECT * FROM readings WHERE device = 'd1' LIMIT 7").await;
    assert!(plan.contains("limit=7"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_and_count_star() {
    let (_dir, engine, truth) = fleet_engine();
    let q = QueryEngine::new(engine).unwrap();
    let got = sql(&q, "SELECT * FROM readings WHERE device = 'd1' LIMIT 7").await;
    assert_eq!(got.len(), 7);
    let got = sql(&q, "SELECT * FROM readings LIMIT 3").await;
    assert_eq!(got.len(), 3);
    let got = sql(
        &q,
        "SELECT count(*), count(fuel), count(model) FROM readings",
    )
    .await;
    let with_fuel = truth.iter().filter(|r| r.fuel.is_some()).count();
    let with_model = truth.iter().filter(|r| r.model.is_some()).count();
    assert_eq!(
        got,
        vec![vec![
            Cell::Int(truth.len() as i64),
            Cell::Int(with_fuel as i64),
            Cell::Int(with_model as i64)
        ]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoding_only_read_fields_hides_points_without_them() {
    let (_dir, engine, truth) = fleet_engine();
    let config = QueryConfig {
        read_all_fields: false,
        ..QueryConfig::default()
    };
    let q = QueryEngine::with_config(engine, config).unwrap();
    let with_fuel = truth.iter().filter(|r| r.fuel.is_some()).count() as i64;
    let got = sql(&q, "SELECT count(*), count(fuel) FROM readings").await;
    assert_eq!(got, vec![vec![Cell::Int(with_fuel), Cell::Int(with_fuel)]]);
    let got = sql(&q, "SELECT count(*), count(speed) FROM readings").await;
    let all = truth.len() as i64;
    assert_eq!(got, vec![vec![Cell::Int(all), Cell::Int(all)]]);
    let got = sql(&q, "SELECT count(*) FROM readings").await;
    assert_eq!(
        got,
        vec![vec![Cell::Int(all)]],
        "no field read: every point"
    );
    let plan = explain(&q, "SELECT avg(speed) FROM readings WHERE device = 'd1'").await;
    assert!(
        plan.contains(r#"fields=["speed"]"#) && !plan.contains("every point"),
        "{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_maps_tags_and_field_types() {
    let (_dir, engine, _) = fleet_engine();
    let q = QueryEngine::new(engine).unwrap();
    let got = sql(
        &q,
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_name = 'readings' ORDER BY ordinal_position",
    )
    .await;
    let cols: Vec<(String, String)> = got
        .iter()
        .map(|r| (r[0].s().to_string(), r[1].s().to_string()))
        .collect();
    let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "time", "device", "fleet", "model", "speed", "load", "moving", "fuel"
        ]
    );
    assert!(
        cols[0].1.starts_with("Timestamp(ns") || cols[0].1.starts_with("Timestamp(Nanosecond"),
        "{:?}",
        cols[0]
    );
    assert!(cols[0].1.contains("UTC"), "{:?}", cols[0]);
    let types: Vec<&str> = cols[1..].iter().map(|c| c.1.as_str()).collect();
    assert_eq!(
        types,
        [
            "Utf8", "Utf8", "Utf8", "Float64", "Int64", "Boolean", "Float64"
        ]
    );
    let got = sql(
        &q,
        "SELECT device, model FROM readings WHERE device = 'd5' LIMIT 1",
    )
    .await;
    assert_eq!(
        got,
        vec![vec![Cell::Str("d5".into()), Cell::Null]],
        "missing tag is NULL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_are_schemas_and_new_streams_appear() {
    let (_dir, engine, _) = fleet_engine();
    let q = QueryEngine::new(engine.clone()).unwrap();
    let err = q.query("SELECT * FROM temps").await.unwrap_err();
    assert!(err.is_client_error(), "{err}");
    let temp = |device, time, c| Point {
        device,
        tags: vec![],
        time,
        fields: vec![("c", Value::Float(c))],
    };
    write(
        &engine,
        "plant",
        "temps",
        &[temp("s1", 1000, 21.5), temp("s2", 2000, 19.0)],
    );
    let late = |device, tags, time, v| Point {
        device,
        tags,
        time,
        fields: vec![("v", Value::Integer(v))],
    };
    write(&engine, "default", "late", &[late("x", vec![], 5, 7)]);
    let got = sql(&q, "SELECT device, c FROM plant.temps ORDER BY device").await;
    assert_eq!(
        got,
        vec![
            vec![Cell::Str("s1".into()), Cell::Float(21.5)],
            vec![Cell::Str("s2".into()), Cell::Float(19.0)]
        ]
    );
    assert_eq!(
        sql(&q, "SELECT v FROM late").await,
        vec![vec![Cell::Int(7)]]
    );
    assert_eq!(
        sql(&q, r#"SELECT v FROM "default".late"#).await,
        vec![vec![Cell::Int(7)]]
    );
    assert_eq!(
        sql(&q, "SELECT v FROM strata.default.late").await,
        vec![vec![Cell::Int(7)]]
    );
    // A tag key added later becomes a column.
    write(
        &engine,
        "default",
        "late",
        &[late("y", vec![("site", "z")], 6, 8)],
    );
    assert_eq!(
        sql(&q, "SELECT site, v FROM late WHERE site = 'z'").await,
        vec![vec![Cell::Str("z".into()), Cell::Int(8)]]
    );
    let tables = sql(
        &q,
        "SELECT table_schema, table_name FROM information_schema.tables \
        WHERE table_schema <> 'information_schema' ORDER BY 1, 2",
    )
    .await;
    let tables: Vec<String> = tables
        .iter()
        .map(|r| format!("{}.{}", r[0].s(), r[1].s()))
        .collect();
    assert_eq!(
        tables,
        [
            "default.diagnostics",
            "default.late",
            "default.readings",
            "plant.temps"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_across_streams() {
    let (_dir, engine, truth) = fleet_engine();
    let q = QueryEngine::new(engine).unwrap();
    let got = sql(
        &q,
        "SELECT r.device, count(*) AS n, sum(r.speed) AS s, max(d.status) AS st \
         FROM readings r JOIN diagnostics d ON r.device = d.device AND r.time = d.time \
         WHERE r.device IN ('d1', 'd2') GROUP BY r.device ORDER BY r.device",
    )
    .await;
    let mut expected = Vec::new();
    for dev in ["d1", "d2"] {
        // diagnostics exist on ticks divisible by 3, for every device.
        let joined: Vec<&Reading> = truth
            .iter()
            .filter(|r| r.device == dev && ((r.time - T0) / TICK) % 3 == 0)
            .collect();
        let max_status = joined
            .iter()
            .map(|r| ((r.time - T0) / TICK) % 4)
            .max()
            .unwrap();
        expected.push((
            dev.to_string(),
            joined.len() as i64,
            joined.iter().map(|r| r.speed).sum::<f64>(),
            max_status,
        ));
    }
    assert_eq!(got.len(), 2);
    for (row, (dev, n, s, st)) in got.iter().zip(expected) {
        assert_eq!(row[0].s(), dev);
        assert_eq!(row[1].i(), n);
        assert!(close(row[2].f(), s), "{} vs {s}", row[2].f());
        assert_eq!(row[3].i(), st);
    }
}

/// Means of `speed` per (device, bucket start) computed from the ground truth.
fn bucket_means(
    truth: &[Reading],
    width: i64,
    keep: impl Fn(&Reading) -> bool,
) -> BTreeMap<(String, i64), f64> {
    let mut acc: BTreeMap<(String, i64), (f64, usize)> = BTreeMap::new();
    for r in truth.iter().filter(|r| keep(r)) {
        let bucket = r.time - (r.time - T0).rem_euclid(width);
        let e = acc.entry((r.device.clone(), bucket)).or_default();
        e.0 += r.speed;
        e.1 += 1;
    }
    acc.into_iter()
        .map(|(k, (s, n))| (k, s / n as f64))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn date_bin_and_time_bucket_aggregates() {
    let (_dir, engine, truth) = fleet_engine();
    let q = QueryEngine::new(engine).unwrap();
    let (from, to) = (T0 + 20 * MINUTE, T0 + 80 * MINUTE);
    let expected = bucket_means(&truth, 10 * MINUTE, |r| {
        r.device == "d2" && r.time >= from && r.time < to
    });
    assert_eq!(expected.len(), 6);
    for f in ["date_bin", "time_bucket"] {
        let got = sql(
            &q,
            &format!(
                "SELECT {f}(INTERVAL '10 minutes', time) AS b, avg(speed) FROM readings \
                 WHERE device = 'd2' AND time >= to_timestamp_nanos({from}) AND time < to_timestamp_nanos({to}) \
                 GROUP BY b ORDER BY b"
            ),
        )
        .await;
        assert_eq!(got.len(), expected.len(), "{f}");
        for (row, ((_, bucket), mean)) in got.iter().zip(&expected) {
            assert_eq!(row[0].i(), *bucket, "{f}");
            assert!(close(row[1].f(), *mean), "{f}: {} vs {mean}", row[1].f());
        }
    }
    // Per device and fleet over everything, hourly.
    let expected = bucket_means(&truth, 60 * MINUTE, |_| true);
    let got = sql(
        &q,
        "SELECT device, time_bucket(INTERVAL '1 hour', time) AS b, avg(speed) FROM readings \
         GROUP BY device, b ORDER BY device, b",
    )
    .await;
    assert_eq!(got.len(), expected.len());
    for (row, ((dev, bucket), mean)) in got.iter().zip(&expected) {
        assert_eq!((row[0].s(), row[1].i()), (dev.as_str(), *bucket));
        assert!(close(row[2].f(), *mean));
    }
}

/// Exact percentile with linear interpolation (as `percentile_cont`).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentiles_exact_and_approximate() {
    let (_dir, engine, truth) = fleet_engine();
    let q = QueryEngine::new(engine).unwrap();
    let from = T0 + 30 * MINUTE;
    let to = from + 60 * MINUTE;
    let mut speeds: Vec<f64> = truth
        .iter()
        .filter(|r| r.device == "d4" && r.time >= from && r.time < to)
        .map(|r| r.speed)
        .collect();
    speeds.sort_by(f64::total_cmp);
    let window = format!(
        "device = 'd4' AND time >= to_timestamp_nanos({from}) AND time < to_timestamp_nanos({to})"
    );
    let got = sql(
        &q,
        &format!(
            "SELECT median(speed), percentile_cont(0.5) WITHIN GROUP (ORDER BY speed), \
             percentile_cont(0.99) WITHIN GROUP (ORDER BY speed), \
             approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY speed), \
             approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY speed), min(speed), max(speed) \
             FROM readings WHERE {window}"
        ),
    )
    .await;
    let row = &got[0];
    let (p50, p99) = (percentile(&speeds, 0.5), percentile(&speeds, 0.99));
    assert!(close(row[0].f(), p50), "median {} vs {p50}", row[0].f());
    assert!(close(row[1].f(), p50), "p50 {} vs {p50}", row[1].f());
    assert!(close(row[2].f(), p99), "p99 {} vs {p99}", row[2].f());
    let range = speeds[speeds.len() - 1] - speeds[0];
    assert!(
        (row[3].f() - p50).abs() <= 0.02 * range,
        "approx p50 {} vs {p50}",
        row[3].f()
    );
    assert!(
        (row[4].f() - p99).abs() <= 0.02 * range,
        "approx p99 {} vs {p99}",
        row[4].f()
    );
    assert_eq!(
        (row[5].f(), row[6].f()),
        (speeds[0], speeds[speeds.len() - 1])
    );
    // p50 and p99 of one device come from one pass: one scan of that device's series, feeding
    // one aggregation that computes every percentile.
    let plan = explain(
        &q,
        &format!(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY speed), \
             percentile_cont(0.99) WITHIN GROUP (ORDER BY speed) FROM readings WHERE {window}"
        ),
    )
    .await;
    assert_eq!(plan.matches("StrataScanExec").count(), 1, "{plan}");
    assert_eq!(plan.matches("AggregateExec").count(), 1, "{plan}");
    assert!(plan.contains("devices=1"), "{plan}");
}

/// `percentile_cont` interpolates with the whole fraction (DataFusion's own truncates the weight
/// to six decimals, apache/datafusion#25266): equal to the reference formula bit for bit, in
/// `WITHIN GROUP` and argument form, ascending and descending, grouped, and as a window function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentile_cont_interpolates_exactly() {
    let (_dir, engine, _) = fleet_engine();
    let q = QueryEngine::new(engine).unwrap();
    let values = "(VALUES ('a', 0.0), ('a', 1.0), ('a', 2.0), ('b', 93.54), ('b', 93.55), ('b', 90.0)) AS t(g, x)";
    let tiny = sql(
        &q,
        &format!(
            "SELECT percentile_cont(2.5e-7) WITHIN GROUP (ORDER BY x), percentile_cont(x, 2.5e-7), \
             percentile_cont(0.9999997) WITHIN GROUP (ORDER BY x DESC) FROM {values} WHERE g = 'a'"
        ),
    )
    .await;
    let want = percentile(&[0.0, 1.0, 2.0], 2.5e-7);
    assert!(want > 0.0);
    assert_eq!(tiny[0][0].f(), want);
    assert_eq!(tiny[0][1].f(), want);
    assert!(close(
        tiny[0][2].f(),
        percentile(&[0.0, 1.0, 2.0], 1.0 - 0.9999997)
    ));
    let grouped = sql(
        &q,
        &format!(
            "SELECT g, percentile_cont(0.99) WITHIN GROUP (ORDER BY x) FROM {values} GROUP BY g ORDER BY g"
        ),
    )
    .await;
    assert_eq!(grouped[0][1].f(), percentile(&[0.0, 1.0, 2.0], 0.99));
    assert_eq!(grouped[1][1].f(), percentile(&[90.0, 93.54, 93.55], 0.99));
    let windowed = sql(
        &q,
        &format!(
            "SELECT g, x, percentile_cont(x, 0.99) OVER (PARTITION BY g ORDER BY x \
             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM {values} ORDER BY g, x"
        ),
    )
    .await;
    // A running frame evaluates the same accumulator once per row.
    assert_eq!(windowed.len(), 6);
    for (i, row) in windowed.iter().enumerate() {
        let group: &[f64] = match row[0].s() {
            "a" => &[0.0, 1.0, 2.0],
            _ => &[90.0, 93.54, 93.55],
        };
        let p = percentile(&group[..=i % 3], 0.99);
        assert_eq!(row[2].f(), p, "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_and_last_by_time() {
    let (_dir, engine, truth) = fleet_engine();
    let q = QueryEngine::new(engine).unwrap();
    let got = sql(
        &q,
        "SELECT device, first(speed, time), last(speed, time), first(fuel, time), \
         first_value(speed ORDER BY time DESC) FROM readings GROUP BY device ORDER BY device",
    )
    .await;
    assert_eq!(got.len(), DEVICES);
    for row in got {
        let dev = row[0].s();
        let mine: Vec<&Reading> = truth.iter().filter(|r| r.device == dev).collect();
        let first = mine.iter().min_by_key(|r| r.time).unwrap();
        let last = mine.iter().max_by_key(|r| r.time).unwrap();
        let first_fuel = mine
            .iter()
            .filter(|r| r.fuel.is_some())
            .min_by_key(|r| r.time)
            .unwrap();
        assert_eq!(row[1].f(), first.speed, "{dev}");
        assert_eq!(row[2].f(), last.speed, "{dev}");
        assert_eq!(
            row[3].f(),
            first_fuel.fuel.unwrap(),
            "first ignores nulls: {dev}"
        );
        assert_eq!(row[4].f(), last.speed, "{dev}");
    }
    // first/last in a bucketed query with a FILTER clause.
    let got = sql(
        &q,
        "SELECT time_bucket(INTERVAL '1 hour', time) AS b, last(speed, time) FILTER (WHERE device = 'd0') \
         FROM readings GROUP BY b ORDER BY b",
    )
    .await;
    let d0: Vec<&Reading> = truth.iter().filter(|r| r.device == "d0").collect();
    for (i, row) in got.iter().enumerate() {
        let end = T0 + (i as i64 + 1) * 60 * MINUTE;
        let want = d0
            .iter()
            .filter(|r| r.time < end)
            .max_by_key(|r| r.time)
            .unwrap();
        assert_eq!(row[1].f(), want.speed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_decode_back() {
    let (_dir, engine, truth) = fleet_engine();
    let q = QueryEngine::new(engine).unwrap();
    let text = "SELECT time, device, model, speed, load, moving FROM readings \
                WHERE device IN ('d4', 'd5') AND time < to_timestamp_nanos(1704067230000000000) ORDER BY device, time";
    let expected: Vec<&Reading> = {
        let mut v: Vec<&Reading> = truth
            .iter()
            .filter(|r| (r.device == "d4" || r.device == "d5") && r.time < T0 + 3 * TICK)
            .collect();
        v.sort_by(|a, b| (&a.device, a.time).cmp(&(&b.device, b.time)));
        v
    };
    assert_eq!(expected.len(), 6);

    let (ct, json) = q.execute(text, OutputFormat::Json).await.unwrap();
    assert_eq!(ct, "application/json");
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let arr = json.as_array().unwrap();
    assert_eq!(arr.len(), expected.len());
    for (obj, r) in arr.iter().zip(&expected) {
        assert_eq!(obj["device"], r.device.as_str());
        assert_eq!(obj["speed"].as_f64().unwrap(), r.speed);
        assert_eq!(obj["load"].as_i64().unwrap(), r.load);
        assert_eq!(obj["moving"].as_bool().unwrap(), r.moving);
        match &r.model {
            Some(m) => assert_eq!(obj["model"], m.as_str()),
            None => assert!(obj["model"].is_null(), "explicit null"),
        }
        assert!(
            obj["time"]
                .as_str()
                .unwrap()
                .starts_with("2024-01-01T00:00:"),
            "{obj}"
        );
    }

    let (ct, csv) = q.execute(text, OutputFormat::Csv).await.unwrap();
    assert_eq!(ct, "text/csv");
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "time,device,model,speed,load,moving");
    assert_eq!(lines.len(), expected.len() + 1);
    for (line, r) in lines[1..].iter().zip(&expected) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[1], r.device);
        assert_eq!(cells[2], r.model.as_deref().unwrap_or(""));
        assert_eq!(cells[3].parse::<f64>().unwrap(), r.speed);
        assert_eq!(cells[4].parse::<i64>().unwrap(), r.load);
    }

    let (ct, ipc) = q.execute(text, OutputFormat::ArrowIpcStream).await.unwrap();
    assert_eq!(ct, "application/vnd.apache.arrow.stream");
    let reader = StreamReader::try_new(std::io::Cursor::new(ipc), None).unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let got = rows(&batches);
    assert_eq!(got.len(), expected.len());
    for (row, r) in got.iter().zip(&expected) {
        assert_eq!(row[0].i(), r.time);
        assert_eq!(row[1].s(), r.device);
        assert_eq!(row[3].f(), r.speed);
        assert_eq!(row[5], Cell::Bool(r.moving));
    }

    // Empty results still carry the schema / header.
    let empty = "SELECT device, speed FROM readings WHERE device = 'none'";
    assert_eq!(q.execute(empty, OutputFormat::Json).await.unwrap().1, b"[]");
    assert_eq!(
        q.execute(empty, OutputFormat::Csv).await.unwrap().1,
        b"device,speed\n"
    );
    let ipc = q
        .execute(empty, OutputFormat::ArrowIpcStream)
        .await
        .unwrap()
        .1;
    let reader = StreamReader::try_new(std::io::Cursor::new(ipc), None).unwrap();
    assert_eq!(reader.schema().fields().len(), 2);
}

/// The bytes of an answer: the whole one, or its head and every streamed chunk joined.
async fn answer_bytes(answer: Answer) -> (bool, Vec<u8>) {
    match answer {
        Answer::Whole { bytes, .. } => (false, bytes),
        Answer::Streaming { head, mut rest, .. } => {
            let mut out = head;
            while let Some(chunk) = rest.next().await {
                out.extend(chunk.unwrap());
            }
            (true, out)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answers_equal_whole_answers() {
    let (_dir, engine, truth) = fleet_engine();
    // Small batches, so the answer comes in many pieces.
    let config = QueryConfig {
        batch_size: 7,
        ..QueryConfig::default()
    };
    let q = QueryEngine::with_config(engine, config).unwrap();
    let all = "SELECT time, device, model, speed, load, moving FROM readings ORDER BY device, time";
    let empty = "SELECT device, speed FROM readings WHERE device = 'none'";
    for format in [
        OutputFormat::Json,
        OutputFormat::Csv,
        OutputFormat::ArrowIpcStream,
    ] {
        for text in [all, empty] {
            let (_, whole) = q.execute(text, format).await.unwrap();
            let (streamed, bytes) =
                answer_bytes(q.answer(text, format, usize::MAX).await.unwrap()).await;
            assert!(!streamed, "{format:?}: fits, so whole");
            assert_eq!(bytes, whole, "{format:?} {text}");
            let (streamed, bytes) = answer_bytes(q.answer(text, format, 0).await.unwrap()).await;
            assert_eq!(
                streamed,
                text == all,
                "{format:?} {text}: streams past 0 bytes"
            );
            assert_eq!(
                bytes, whole,
                "{format:?} {text}: streamed bytes equal the whole answer"
            );
        }
    }
    // And the streamed JSON is the truth, row for row.
    let (_, json) = answer_bytes(q.answer(all, OutputFormat::Json, 100).await.unwrap()).await;
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json.as_array().unwrap().len(), truth.len());
}

/// A streamed answer is not held whole, so the result-size limit of collected answers does not
/// refuse it, while the same query collected is refused. (From segments: a snapshot's copy of
/// memtable rows is charged to the pool whole.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answers_are_not_bounded_by_the_result_limit() {
    let (_dir, engine, truth) = fleet_engine();
    engine.flush().unwrap();
    let config = QueryConfig {
        memory_limit: 64 * 1024,
        batch_size: 64,
        ..QueryConfig::default()
    };
    let q = QueryEngine::with_config(engine, config).unwrap();
    let text = "SELECT * FROM readings";
    let err = q.query(text).await.unwrap_err();
    assert!(matches!(err, QueryError::ResourcesExhausted(_)), "{err:?}");
    let (streamed, csv) =
        answer_bytes(q.answer(text, OutputFormat::Csv, 4096).await.unwrap()).await;
    assert!(streamed);
    assert_eq!(
        String::from_utf8(csv).unwrap().lines().count(),
        truth.len() + 1
    );
    let mut stream = q.stream_paced(text).await.unwrap();
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch.unwrap().num_rows();
    }
    assert_eq!(rows, truth.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_typed() {
    let (_dir, engine, _) = fleet_engine();
    let q = QueryEngine::new(engine).unwrap();
    for bad in [
        "SELEC * FROM readings",
        "SELECT * FROM nope",
        "SELECT nope FROM readings",
        "SELECT * FROM nodb.readings",
        "CREATE TABLE t (a INT)",
        "SET datafusion.execution.target_partitions = 1",
        "SELECT speed + 'x' FROM readings",
    ] {
        let err = q.query(bad).await.unwrap_err();
        assert!(matches!(err, QueryError::Sql(_)), "{bad}: {err:?}");
        assert!(err.is_client_error());
    }
    let err = q.query("SELECT * FROM nope").await.unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_memory_limit() {
    let (_dir, engine, _) = fleet_engine();
    let slow = "SELECT count(*) FROM readings a CROSS JOIN readings b WHERE a.speed + b.speed > 1";
    let config = QueryConfig {
        timeout: Duration::from_millis(1),
        ..QueryConfig::default()
    };
    let q = QueryEngine::with_config(engine.clone(), config).unwrap();
    let err = q.query(slow).await.unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)), "{err:?}");
    let config = QueryConfig {
        memory_limit: 64 * 1024,
        ..QueryConfig::default()
    };
    let q = QueryEngine::with_config(engine, config).unwrap();
    let err = q
        .query("SELECT * FROM readings ORDER BY speed")
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::ResourcesExhausted(_)), "{err:?}");
    let err = q.query("SELECT * FROM readings").await.unwrap_err();
    assert!(matches!(err, QueryError::ResourcesExhausted(_)), "{err:?}");
    assert!(q.query("SELECT count(*) FROM readings").await.is_ok());
}

/// Rows the in-scan aggregation of `plan` has decoded so far (its live metric).
fn rows_folded(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let own = (plan.name() == "ScanAggregateExec")
        .then(|| plan.metrics().and_then(|m| m.sum_by_name("rows_decoded")))
        .flatten()
        .map_or(0, |v| v.as_usize());
    own + plan.children().into_iter().map(rows_folded).sum::<usize>()
}

/// A fleet-wide aggregate folds inside the scan on the blocking pool. Dropping the query, as a
/// timeout or a client that goes away does, stops the fold at its next step; it does not go on
/// decoding the rest of the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_aggregate_stops_folding() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = strata_storage::EngineConfig::new(dir.path());
    cfg.background = false;
    cfg.durability = strata_storage::Durability::None;
    // Every run decodes (the first run would otherwise leave the runs in the runs cache).
    cfg.runs_cache_bytes = 0;
    let engine = Arc::new(Engine::open(cfg).unwrap());
    for d in 0..20 {
        let device = format!("t{d}");
        let fleet = if d % 2 == 0 { "north" } else { "south" };
        let points: Vec<Point> = (0..100_000)
            .map(|k| Point {
                device: &device,
                tags: vec![("fleet", fleet)],
                time: T0 + k * TICK,
                fields: vec![("speed", Value::Float((k % 977) as f64 / 4.0))],
            })
            .collect();
        write(&engine, "default", "readings", &points);
    }
    engine.flush().unwrap();
    let q = QueryEngine::new(engine).unwrap();
    let sql = "SELECT fleet, date_bin(INTERVAL '1 hour', time) AS h, avg(speed) \
               FROM readings GROUP BY fleet, h";

    let whole = q.plan(sql).await.unwrap();
    let answer = collect(whole.clone(), q.task_ctx()).await.unwrap();
    assert_eq!(answer.iter().map(|b| b.num_rows()).sum::<usize>(), 2 * 278);
    let total = rows_folded(&whole);
    assert_eq!(
        total, 2_000_000,
        "every row is decoded: hourly buckets cut every block"
    );

    let plan = q.plan(sql).await.unwrap();
    let mut stream = execute_stream(plan.clone(), q.task_ctx()).unwrap();
    while rows_folded(&plan) == 0 {
        let polled = tokio::time::timeout(Duration::from_millis(1), stream.next()).await;
        assert!(
            polled.is_err(),
            "the fold finished before it could be dropped"
        );
    }
    drop(stream);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = rows_folded(&plan);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rows_folded(&plan),
        stopped,
        "the fold went on after the query was dropped"
    );
    assert!(
        stopped < total / 2,
        "{stopped} of {total} rows folded after the drop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_queries_share_one_engine() {
    let (_dir, engine, truth) = fleet_engine();
    let q = Arc::new(QueryEngine::new(engine).unwrap());
    let mut tasks = Vec::new();
    for i in 0..DEVICES {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let r = q
                .query(&format!(
                    "SELECT count(*) FROM readings WHERE device = 'd{i}'"
                ))
                .await
                .unwrap();
            rows(&r.batches)[0][0].i()
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let want = truth.iter().filter(|r| r.device == format!("d{i}")).count() as i64;
        assert_eq!(t.await.unwrap(), want);
    }
}

/// A random `WHERE` predicate over `readings`, with its own evaluator (SQL three-valued logic).
#[derive(Debug, Clone)]
enum Pred {
    Time(&'static str, i64),
    DeviceEq(usize),
    DeviceIn(Vec<usize>),
    Fleet(&'static str),
    Model(&'static str),
    SpeedGt(f64),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
    Not(Box<Pred>),
}

impl Pred {
    fn sql(&self) -> String {
        match self {
            Pred::Time(op, t) => format!("time {op} to_timestamp_nanos({t})"),
            Pred::DeviceEq(i) => format!("device = 'd{i}'"),
            Pred::DeviceIn(v) => {
                let list: Vec<String> = v.iter().map(|i| format!("'d{i}'")).collect();
                format!("device IN ({})", list.join(", "))
            }
            Pred::Fleet(f) => format!("fleet = '{f}'"),
            Pred::Model(m) => format!("model = '{m}'"),
            Pred::SpeedGt(x) => format!("speed > {x}"),
            Pred::And(a, b) => format!("({} AND {})", a.sql(), b.sql()),
            Pred::Or(a, b) => format!("({} OR {})", a.sql(), b.sql()),
            Pred::Not(a) => format!("(NOT {})", a.sql()),
        }
    }

    fn eval(&self, r: &Reading) -> Option<bool> {
        Some(match self {
            Pred::Time(op, t) => match *op {
                "<" => r.time < *t,
                "<=" => r.time <= *t,
                ">" => r.time > *t,
                ">=" => r.time >= *t,
                _ => r.time == *t,
            },
            Pred::DeviceEq(i) => r.device == format!("d{i}"),
            Pred::DeviceIn(v) => v.iter().any(|i| r.device == format!("d{i}")),
            Pred::Fleet(f) => r.fleet == *f,
            Pred::Model(m) => r.model.as_deref()? == *m,
            Pred::SpeedGt(x) => r.speed > *x,
            Pred::And(a, b) => match (a.eval(r), b.eval(r)) {
                (Some(false), _) | (_, Some(false)) => false,
                (Some(true), Some(true)) => true,
                _ => return None,
            },
            Pred::Or(a, b) => match (a.eval(r), b.eval(r)) {
                (Some(true), _) | (_, Some(true)) => true,
                (Some(false), Some(false)) => false,
                _ => return None,
            },
            Pred::Not(a) => !a.eval(r)?,
        })
    }
}

fn pred_strategy() -> impl proptest::strategy::Strategy<Value = Pred> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        (
            prop::sample::select(vec!["<", "<=", ">", ">=", "="]),
            0..TICKS,
            -1i64..=1
        )
            .prop_map(|(op, k, off)| Pred::Time(op, T0 + k * TICK + off)),
        (0..DEVICES + 1).prop_map(Pred::DeviceEq),
        prop::collection::vec(0..DEVICES + 1, 1..4).prop_map(Pred::DeviceIn),
        prop::sample::select(vec!["north", "south", "east"]).prop_map(Pred::Fleet),
        prop::sample::select(vec!["a", "b"]).prop_map(Pred::Model),
        (0..100u32).prop_map(|x| Pred::SpeedGt(x as f64)),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Pred::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Pred::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Pred::Not(Box::new(a))),
        ]
    })
}

/// Any predicate (pushed, partly pushed or not at all) selects exactly the rows the ground truth
/// says; arbitrary text never panics the planner.
#[test]
fn random_predicates_match_ground_truth() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_dir, engine, truth) = fleet_engine();
    let q = QueryEngine::new(engine).unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    runner
        .run(&pred_strategy(), |p| {
            let text = format!("SELECT count(*), sum(load) FROM readings WHERE {}", p.sql());
            let got = rt
                .block_on(q.query(&text))
                .map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{text}: {e}")))?;
            let kept: Vec<&Reading> = truth.iter().filter(|r| p.eval(r) == Some(true)).collect();
            let row = &rows(&got.batches)[0];
            proptest::prop_assert_eq!(row[0].i(), kept.len() as i64, "{}", text);
            let sum: i64 = kept.iter().map(|r| r.load).sum();
            let got_sum = if kept.is_empty() { 0 } else { row[1].i() };
            proptest::prop_assert_eq!(got_sum, sum, "{}", text);
            Ok(())
        })
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&"\\PC{0,60}", |junk| {
            let _ = rt.block_on(q.query(&format!("SELECT * FROM readings WHERE {junk}")));
            let _ = rt.block_on(q.query(&junk));
            Ok(())
        })
        .unwrap();
}
