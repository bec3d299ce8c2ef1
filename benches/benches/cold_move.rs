//! Move throughput hot → cold: the fleet simulator's trucks reporting every minute for some days
//! (ending now) are written to an engine with a local-directory cold store and flushed; then a
//! policy `hot: 1d` and one maintenance run move every older segment to the cold tier as Parquet.
//! Reports MB/s of segment data over the run's wall time (the lifecycle issue's figure), the
//! encoders' own rate (segment bytes ÷ encoding time summed over the encoder threads), and the
//! cold/hot byte ratio. Every moved row is counted back from the cold objects.
//!
//! `cargo bench -p strata-benches --bench cold_move`; `STRATA_CM_TRUCKS` / `STRATA_CM_DAYS` set
//! the size (default 200 trucks x 8 days), `STRATA_CM_RUNS` the number of moves (default 3,
//! each on fresh data).

use std::time::{Duration, Instant};

/// The server's allocator (`server/src/main.rs`): a move's buffers are large and short-lived,
/// and the allocator decides how often their pages are mapped afresh.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use strata_client::fleet::{FleetConfig, FleetGenerator};
use strata_ingest::line_protocol::{ParseOptions, parse};
use strata_storage::lifecycle::LifecyclePolicy;
use strata_storage::{Durability, Engine, EngineConfig};

const DAY_NS: i64 = 86_400_000_000_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `trucks` x `days` of one-minute fleet data ending now into `engine`; rows written.
fn load(engine: &Engine, trucks: usize, days: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64;
    let cfg = FleetConfig {
        trucks,
        start_ns: (now / DAY_NS - days as i64 + 1) * DAY_NS,
        duration: Duration::from_secs(days * 86_400),
        interval: Duration::from_secs(60),
        offline_rate: 0.0,
        ..FleetConfig::default()
    };
    let mut generator = FleetGenerator::new(&cfg);
    let opts = ParseOptions::default();
    let mut rows = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = generator.next_batch(20_000, &mut buf).rows;
        if n == 0 {
            return rows;
        }
        let batch = parse(&buf, "default", &opts).expect("fleet data parses");
        engine.write(&batch).expect("write");
        rows += n;
    }
}

fn run(trucks: usize, days: u64) {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.durability = Durability::None;
    cfg.background = false;
    cfg.cold_store = Some(format!("file://{}", cold.path().display()));
    let engine = Engine::open(cfg).expect("open engine");
    let rows = load(&engine, trucks, days);
    engine.flush().expect("flush");
    let policy = LifecyclePolicy {
        hot: Some(DAY_NS),
        ..LifecyclePolicy::default()
    };
    engine
        .set_lifecycle("default", None, Some(policy))
        .expect("policy");
    let started = Instant::now();
    let report = engine.run_lifecycle().expect("maintenance run");
    let secs = started.elapsed().as_secs_f64();
    assert!(report.errors.is_empty(), "move errors: {:?}", report.errors);
    let seg: u64 = report.moved.iter().map(|m| m.segment_bytes).sum();
    let obj: u64 = report.moved.iter().map(|m| m.object_bytes).sum();
    let moved_rows: u64 = report.moved.iter().map(|m| m.rows).sum();
    let encode: u64 = report.moved.iter().map(|m| m.encode_millis).sum();
    let (tiers, _) = engine.lifecycle_status().expect("status");
    let cold_rows: u64 = tiers
        .iter()
        .filter(|t| t.tier == "cold")
        .map(|t| t.rows)
        .sum();
    assert_eq!(cold_rows, moved_rows, "the cold tier holds every moved row");
    println!(
        "{trucks} trucks x {days} d ({rows} rows): moved {} segments, {moved_rows} rows, \
         {:.1} MB -> {:.1} MB ({:.3}x) in {secs:.2} s = {:.1} MB/s; encoders {:.1} MB/s per thread",
        report.moved.len(),
        seg as f64 / 1e6,
        obj as f64 / 1e6,
        obj as f64 / seg.max(1) as f64,
        seg as f64 / 1e6 / secs,
        seg as f64 / 1e3 / encode.max(1) as f64,
    );
}

fn main() {
    let trucks = env_or("STRATA_CM_TRUCKS", 200) as usize;
    let days = env_or("STRATA_CM_DAYS", 8);
    for _ in 0..env_or("STRATA_CM_RUNS", 3) {
        run(trucks, days);
    }
}
