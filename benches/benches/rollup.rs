//! Continuous rollups on simulated fleet data (200 trucks, `STRATA_BENCH_DAYS` days of
//! 10-second readings, default 2): the whole fleet's daily mean speed by fleet answered from the
//! 1-hour rollup (the `rollup_rewrite` rule) against the same query over the raw data (the
//! general plan, fast paths off). Prints the back-fill time, checks the answers equal, prints
//! the median of repeated runs, then runs criterion on the rollup query.

mod fleet;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use strata_query::{OutputFormat, QueryConfig, QueryEngine, tokio};
use strata_storage::Engine;
use strata_storage::lifecycle::RollupSpec;

const DAILY_BY_FLEET: &str = "SELECT fleet, date_bin(INTERVAL '1 day', time) AS day, \
    avg(velocity), max(velocity), count(velocity) FROM readings GROUP BY fleet, day ORDER BY fleet, day";

const HOUR: i64 = 3_600_000_000_000;

fn load(dir: &std::path::Path, days: u64) -> Arc<Engine> {
    let engine = fleet::open_engine(dir, None);
    let (rows, took) = fleet::write_fleet(&engine, 200, Duration::from_secs(days * 86_400));
    engine.compact().unwrap();
    println!(
        "loaded 200 trucks x {days} d: {rows} rows in {:.1} s",
        took.as_secs_f64()
    );
    let started = Instant::now();
    let spec = RollupSpec {
        every: HOUR,
        keep: None,
    };
    engine.set_rollups("default", "readings", &[spec]).unwrap();
    let run = engine.run_rollups(usize::MAX).unwrap();
    println!(
        "back-filled the 1 h rollup: {} steps, {} rows in {:.1} s",
        run.backfill_steps,
        run.rows_written,
        started.elapsed().as_secs_f64()
    );
    engine.flush().unwrap();
    Arc::new(engine)
}

/// Median of `runs` end-to-end (JSON) runs.
fn median(rt: &tokio::runtime::Runtime, q: &QueryEngine, runs: usize) -> Duration {
    fleet::median(runs, || {
        rt.block_on(q.execute(DAILY_BY_FLEET, OutputFormat::Json))
            .unwrap();
    })
}

fn csv(rt: &tokio::runtime::Runtime, q: &QueryEngine) -> Vec<String> {
    let bytes = rt
        .block_on(q.execute(DAILY_BY_FLEET, OutputFormat::Csv))
        .unwrap()
        .1;
    String::from_utf8_lossy(&bytes)
        .lines()
        .flat_map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect()
}

fn same(a: &[String], b: &[String]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x == y
                || matches!((x.parse::<f64>(), y.parse::<f64>()),
                    (Ok(u), Ok(v)) if (u - v).abs() <= 1e-9 * u.abs().max(v.abs()).max(1.0))
        })
}

fn main() {
    let days = std::env::var("STRATA_BENCH_DAYS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir().unwrap();
    let engine = load(dir.path(), days);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rollup = QueryEngine::with_config(
        engine.clone(),
        QueryConfig {
            plan_cache_entries: 0,
            ..QueryConfig::default()
        },
    )
    .unwrap();
    let general = QueryEngine::with_config(
        engine.clone(),
        QueryConfig {
            plan_cache_entries: 0,
            fast_paths: false,
            ..QueryConfig::default()
        },
    )
    .unwrap();
    let explain = rt
        .block_on(rollup.query(&format!("EXPLAIN {DAILY_BY_FLEET}")))
        .unwrap();
    let plan = format!("{:?}", explain.batches);
    assert!(plan.contains("_rollup_1h_readings"), "{plan}");
    assert!(
        same(&csv(&rt, &rollup), &csv(&rt, &general)),
        "answers differ"
    );
    let r = median(&rt, &rollup, 51);
    let g = median(&rt, &general, 5);
    println!(
        "whole fleet, {days} d, daily mean by fleet: rollup {:.3} ms, raw (general plan) {:.3} ms (median end-to-end JSON)",
        r.as_secs_f64() * 1e3,
        g.as_secs_f64() * 1e3
    );
    let mut c = Criterion::default().configure_from_args();
    c.bench_function("daily mean by fleet from the 1 h rollup", |b| {
        b.iter(|| {
            rt.block_on(rollup.execute(DAILY_BY_FLEET, OutputFormat::Json))
                .unwrap()
        })
    });
    c.final_summary();
}
