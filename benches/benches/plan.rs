//! What planning costs when the plan cache cannot help: a dashboard whose time range moves on
//! every refresh, or any query seen for the first time. Loads 200 trucks × 1 hour (planning does
//! not depend on how much data there is, only on the catalog), then plans the target queries on
//! an engine without plan cache (fast paths on) and prints the median of: parsing, SQL to
//! logical plan (parse included), and the whole `QueryEngine::plan` (analyzer, logical optimizer,
//! physical planning with the physical optimizer and Strata's fast-path rules). Then runs
//! criterion on `QueryEngine::plan` for each query.

mod fleet;

use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use strata_query::{QueryConfig, QueryEngine, tokio};
use strata_storage::Engine;

const QUERIES: [(&str, &str); 6] = [
    ("SELECT 1", "SELECT 1"),
    (
        "t1 latest position, last_values",
        "SELECT device, latitude, longitude FROM last_values('readings') \
         WHERE fleet = 'North' ORDER BY device",
    ),
    (
        "t1n latest position, natural SQL",
        "SELECT device, last_value(latitude ORDER BY time) AS latitude, \
         last_value(longitude ORDER BY time) AS longitude FROM readings \
         WHERE fleet = 'North' GROUP BY device ORDER BY device",
    ),
    (
        "t2 one truck, 4 h, 10-min mean",
        "SELECT time_bucket(INTERVAL '10 minutes', time) AS bucket, avg(velocity) AS mean_velocity \
         FROM readings WHERE device = 'truck_42' \
         AND time >= '2024-01-01T06:00:00Z' AND time < '2024-01-01T10:00:00Z' \
         GROUP BY bucket ORDER BY bucket",
    ),
    (
        "t3 one truck, 1 h, p50/p99",
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY velocity) AS p50, \
         percentile_cont(0.99) WITHIN GROUP (ORDER BY velocity) AS p99 FROM readings \
         WHERE device = 'truck_42' \
         AND time >= '2024-01-01T06:00:00Z' AND time < '2024-01-01T07:00:00Z'",
    ),
    (
        "t4 all trucks, hourly mean per fleet",
        "SELECT fleet, time_bucket(INTERVAL '1 hour', time) AS bucket, avg(velocity) AS mean_velocity \
         FROM readings GROUP BY fleet, bucket ORDER BY fleet, bucket",
    ),
];

fn load(dir: &std::path::Path) -> Arc<Engine> {
    let engine = fleet::open_engine(dir, None);
    fleet::write_fleet(&engine, 200, Duration::from_secs(3600));
    Arc::new(engine)
}

/// Median of `runs` timings of `f`, in milliseconds.
fn median_ms(runs: usize, f: impl FnMut()) -> f64 {
    fleet::median(runs, f).as_secs_f64() * 1e3
}

/// Prints the median cost of each planning phase of `sql`.
fn print_phases(rt: &tokio::runtime::Runtime, q: &QueryEngine, name: &str, sql: &str) {
    const RUNS: usize = 301;
    let state = q.context().state();
    let dialect = state.config().options().sql_parser.dialect;
    let parse = median_ms(RUNS, || {
        state.sql_to_statement(sql, &dialect).unwrap();
    });
    let logical = median_ms(RUNS, || {
        rt.block_on(state.create_logical_plan(sql)).unwrap();
    });
    let whole = median_ms(RUNS, || {
        rt.block_on(q.plan(sql)).unwrap();
    });
    println!(
        "{name}: median of {RUNS}: parse {parse:.3} ms, to logical plan {logical:.3} ms (parse \
         included), QueryEngine::plan {whole:.3} ms (to logical plan, optimized, physical plan)"
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let engine = load(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let uncached = QueryConfig {
        plan_cache_entries: 0,
        ..QueryConfig::default()
    };
    let q = QueryEngine::with_config(engine, uncached).unwrap();
    for (name, sql) in QUERIES {
        print_phases(&rt, &q, name, sql);
    }
    let mut c = Criterion::default().configure_from_args();
    for (name, sql) in QUERIES {
        c.bench_function(&format!("plan without cache: {name}"), |b| {
            b.iter(|| rt.block_on(q.plan(sql)).unwrap())
        });
    }
    c.final_summary();
}
