//! Shared by the SQL benches (`query`, `rollup`, `plan`): an engine without durability or
//! background work, loaded with simulated truck-fleet data (`strata_client::fleet`) through the
//! line-protocol parser, and a median timer.

use std::time::{Duration, Instant};

use strata_client::fleet::{FleetConfig, FleetGenerator};
use strata_ingest::line_protocol::{ParseOptions, parse};
use strata_storage::{Durability, Engine, EngineConfig};

/// An engine in `dir` without WAL sync or background maintenance; `runs_cache_bytes` as
/// `EngineConfig::runs_cache_bytes` (`None`: the default).
pub fn open_engine(dir: &std::path::Path, runs_cache_bytes: Option<usize>) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.durability = Durability::None;
    cfg.background = false;
    if let Some(bytes) = runs_cache_bytes {
        cfg.runs_cache_bytes = bytes;
    }
    Engine::open(cfg).expect("open engine")
}

/// Writes `trucks` trucks × `duration` of fleet data (5,000-line batches) and flushes; returns
/// the rows written and how long it took.
pub fn write_fleet(engine: &Engine, trucks: usize, duration: Duration) -> (usize, Duration) {
    let fleet = FleetConfig {
        trucks,
        duration,
        ..FleetConfig::default()
    };
    let mut generator = FleetGenerator::new(&fleet);
    let opts = ParseOptions::default();
    let started = Instant::now();
    let mut rows = 0;
    loop {
        let mut buf = Vec::new();
        if generator.next_batch(5000, &mut buf).rows == 0 {
            break;
        }
        let batch = parse(&buf, "default", &opts).expect("fleet data parses");
        rows += engine.write(&batch).expect("write").rows;
    }
    engine.flush().expect("flush");
    (rows, started.elapsed())
}

/// Median of `runs` timings of `f`.
pub fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}
