//! SQL latency on simulated fleet data (200 trucks × 24 hours of 10-second readings, flushed and
//! compacted): the four target queries of issue 5 — "latest position of every truck in one
//! fleet", "one truck, 4 hours, 10-minute mean speed", "one truck, 1 hour, p50 and p99 of speed"
//! and "all trucks, 24 hours, hourly mean speed per fleet" — each with the default engine (plan
//! cache and fast paths on) and with the general path (both off), so the gain is measured and
//! the results are checked equal. Prints the median of repeated runs per phase, then runs
//! criterion on the end-to-end calls.
//!
//! The fleet's hourly mean is also run on a second engine with the runs cache off
//! (`runs_cache_bytes = 0`): repeated runs of the default engine fold the cached runs of the
//! blocks, the uncached ones decode them every time.
//!
//! `STRATA_BENCH_HOURS` (default 24) shortens the loaded span for quick runs.

mod fleet;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use strata_query::datafusion::physical_plan::collect;
use strata_query::{OutputFormat, QueryConfig, QueryEngine, tokio};
use strata_storage::{Engine, EngineConfig};

const LATEST_FLEET: &str = "SELECT device, latitude, longitude, time \
    FROM last_values('readings') WHERE fleet = 'North' ORDER BY device";

const LATEST_FLEET_GROUP_BY: &str = "SELECT device, last(latitude, time) AS latitude, \
    last(longitude, time) AS longitude, max(time) AS time \
    FROM readings WHERE fleet = 'North' GROUP BY device ORDER BY device";

const TRUCK_4H_MEAN: &str = "SELECT time_bucket(INTERVAL '10 minutes', time) AS bucket, avg(velocity) \
    FROM readings WHERE device = 'truck_42' \
    AND time >= '2024-01-01T06:00:00Z' AND time < '2024-01-01T10:00:00Z' \
    GROUP BY bucket ORDER BY bucket";

const TRUCK_1H_PERCENTILES: &str = "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY velocity), \
    percentile_cont(0.99) WITHIN GROUP (ORDER BY velocity) \
    FROM readings WHERE device = 'truck_42' \
    AND time >= '2024-01-01T06:00:00Z' AND time < '2024-01-01T07:00:00Z'";

const FLEET_HOURLY: &str = "SELECT fleet, time_bucket(INTERVAL '1 hour', time) AS bucket, avg(velocity) \
    FROM readings GROUP BY fleet, bucket ORDER BY fleet, bucket";

fn load(dir: &std::path::Path, hours: u64, runs_cache_bytes: usize) -> Arc<Engine> {
    let engine = fleet::open_engine(dir, Some(runs_cache_bytes));
    let (rows, took) = fleet::write_fleet(&engine, 200, Duration::from_secs(hours * 3600));
    engine.compact().unwrap();
    println!(
        "loaded 200 trucks x {hours} h: {rows} rows in {:.1} s",
        took.as_secs_f64()
    );
    Arc::new(engine)
}

fn print_phases(rt: &tokio::runtime::Runtime, q: &QueryEngine, name: &str, sql: &str, runs: usize) {
    let plan = fleet::median(runs, || {
        rt.block_on(q.plan(sql)).unwrap();
    });
    // A physical plan runs once (operators keep state), so plan afresh outside the timing.
    let mut run: Vec<Duration> = (0..runs)
        .map(|_| {
            let physical = rt.block_on(q.plan(sql)).unwrap();
            let t = Instant::now();
            rt.block_on(collect(physical, q.task_ctx())).unwrap();
            t.elapsed()
        })
        .collect();
    run.sort();
    let run = run[run.len() / 2];
    let total = fleet::median(runs, || {
        rt.block_on(q.execute(sql, OutputFormat::Json)).unwrap();
    });
    let rows = rt.block_on(q.query(sql)).unwrap().num_rows();
    println!(
        "{name}: {rows} rows; median of {runs}: plan {:.3} ms, execute {:.3} ms, end-to-end (JSON) {:.3} ms",
        ms(plan),
        ms(run),
        ms(total)
    );
}

/// Equal CSV text, except that numbers may differ in the last bits (sums merged in a different
/// order across partitions).
fn same_csv(a: &[u8], b: &[u8]) -> bool {
    let cells = |s: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(s)
            .lines()
            .flat_map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    let (a, b) = (cells(a), cells(b));
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            x == y
                || matches!((x.parse::<f64>(), y.parse::<f64>()),
                    (Ok(u), Ok(v)) if (u - v).abs() <= 1e-9 * u.abs().max(v.abs()).max(1.0))
        })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let hours = std::env::var("STRATA_BENCH_HOURS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(24);
    let dir = tempfile::tempdir().unwrap();
    let engine = load(
        dir.path(),
        hours,
        EngineConfig::new(dir.path()).runs_cache_bytes,
    );
    let uncached_dir = tempfile::tempdir().unwrap();
    let q_uncached = QueryEngine::new(load(uncached_dir.path(), hours, 0)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sparse = QueryConfig {
        read_all_fields: false,
        plan_cache_entries: 0,
        fast_paths: false,
        ..QueryConfig::default()
    };
    let q_read_only = QueryEngine::with_config(engine.clone(), sparse).unwrap();
    let general = QueryConfig {
        plan_cache_entries: 0,
        fast_paths: false,
        ..QueryConfig::default()
    };
    let q_general = QueryEngine::with_config(engine.clone(), general).unwrap();
    let q = QueryEngine::new(engine).unwrap();
    let same = |a: &str, b: &str| {
        let x = rt.block_on(q.execute(a, OutputFormat::Csv)).unwrap().1;
        let y = rt
            .block_on(q_general.execute(b, OutputFormat::Csv))
            .unwrap()
            .1;
        assert!(
            same_csv(&x, &y),
            "fast and general answers differ:\n{a}\n{b}"
        );
    };
    same(LATEST_FLEET, LATEST_FLEET_GROUP_BY);
    for sql in [TRUCK_4H_MEAN, TRUCK_1H_PERCENTILES, FLEET_HOURLY] {
        same(sql, sql);
    }
    let cases = [
        ("latest position, one fleet", LATEST_FLEET, 201),
        (
            "latest position, one fleet (GROUP BY last)",
            LATEST_FLEET_GROUP_BY,
            201,
        ),
        ("one truck, 4 h, 10-min mean", TRUCK_4H_MEAN, 201),
        ("one truck, 1 h, p50/p99", TRUCK_1H_PERCENTILES, 201),
        ("all trucks, hourly mean per fleet", FLEET_HOURLY, 15),
    ];
    for (name, sql, runs) in cases {
        print_phases(&rt, &q, name, sql, runs);
        print_phases(
            &rt,
            &q_general,
            &format!("{name} [general]"),
            sql,
            runs.min(51),
        );
    }
    print_phases(
        &rt,
        &q_uncached,
        "all trucks, hourly mean per fleet (runs cache off)",
        FLEET_HOURLY,
        15,
    );
    print_phases(
        &rt,
        &q_read_only,
        "one truck, 4 h, 10-min mean (read_all_fields=false) [general]",
        TRUCK_4H_MEAN,
        51,
    );

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("sql");
    group.bench_function("latest_position_one_fleet", |b| {
        b.iter(|| {
            rt.block_on(q.execute(LATEST_FLEET, OutputFormat::Json))
                .unwrap()
        })
    });
    group.bench_function("one_truck_4h_10min_mean", |b| {
        b.iter(|| {
            rt.block_on(q.execute(TRUCK_4H_MEAN, OutputFormat::Json))
                .unwrap()
        })
    });
    group.bench_function("one_truck_1h_p50_p99", |b| {
        b.iter(|| {
            rt.block_on(q.execute(TRUCK_1H_PERCENTILES, OutputFormat::Json))
                .unwrap()
        })
    });
    group.bench_function("all_trucks_hourly_mean_per_fleet", |b| {
        b.iter(|| {
            rt.block_on(q.execute(FLEET_HOURLY, OutputFormat::Json))
                .unwrap()
        })
    });
    group.bench_function("all_trucks_hourly_mean_per_fleet_runs_cache_off", |b| {
        b.iter(|| {
            rt.block_on(q_uncached.execute(FLEET_HOURLY, OutputFormat::Json))
                .unwrap()
        })
    });
    group.finish();
    c.final_summary();
}
