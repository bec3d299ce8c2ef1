//! Write amplification of the engine on simulated truck-fleet line protocol: bytes of segment files
//! written by flush + compaction (`EngineStats::flush_bytes_written` + `compaction_bytes_written`)
//! divided by the bytes of line protocol accepted, for (a) time-ordered data and (b) the same data
//! with 5% of the batches delivered late (6 simulated hours behind, so some land in a window that
//! has cooled). Background flush and compaction run as in the server, with a small memtable so the
//! picker has work; the figure is taken once maintenance is idle after a final flush.
//!
//! `cargo bench -p strata-benches --bench write_amp`; `STRATA_WA_TRUCKS` / `STRATA_WA_HOURS` set
//! the size (default 200 trucks x 48 h, two 1-day windows). The figure counts bytes, so a debug
//! build (`cargo test -p strata-benches --bench write_amp`) gives the same numbers, only slower.

use std::time::{Duration, Instant};

use strata_client::fleet::{FleetConfig, FleetGenerator};
use strata_ingest::line_protocol::{ParseOptions, parse};
use strata_storage::{Durability, Engine, EngineConfig, EngineStats};

const BATCH_LINES: usize = 2000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Line-protocol batches in time order (no truck goes offline).
fn ordered_batches(trucks: usize, hours: u64) -> Vec<Vec<u8>> {
    let cfg = FleetConfig {
        trucks,
        duration: Duration::from_secs(hours * 3600),
        offline_rate: 0.0,
        ..FleetConfig::default()
    };
    let mut generator = FleetGenerator::new(&cfg);
    let mut batches = Vec::new();
    loop {
        let mut buf = Vec::new();
        if generator.next_batch(BATCH_LINES, &mut buf).rows == 0 {
            return batches;
        }
        batches.push(buf);
    }
}

/// Every 20th batch is held back and delivered `delay` batches later.
fn with_late_batches(batches: Vec<Vec<u8>>, delay: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(batches.len());
    let mut held: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, b) in batches.into_iter().enumerate() {
        if i % 20 == 19 {
            held.push((i + delay, b));
        } else {
            out.push(b);
        }
        while held.first().is_some_and(|(due, _)| *due <= i) {
            out.push(held.remove(0).1);
        }
    }
    out.extend(held.into_iter().map(|(_, b)| b));
    out
}

/// Waits until flush and compaction counters stop moving.
fn wait_idle(engine: &Engine) -> EngineStats {
    let mut last = engine.stats();
    let mut still = 0;
    while still < 10 {
        std::thread::sleep(Duration::from_millis(200));
        let now = engine.stats();
        if (now.flushes, now.compactions) == (last.flushes, last.compactions) {
            still += 1;
        } else {
            still = 0;
        }
        last = now;
    }
    last
}

fn run(name: &str, batches: &[Vec<u8>]) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.durability = Durability::None;
    cfg.memtable_bytes = 4 << 20;
    cfg.background_interval = Duration::from_millis(50);
    // The figure counts bytes: writers wait for flush as long as it takes (a debug build on a busy
    // machine flushes slowly) instead of being refused after the default 10 s stall.
    cfg.write_stall_timeout = Duration::from_secs(600);
    let engine = Engine::open(cfg).expect("open engine");
    let opts = ParseOptions::default();
    let started = Instant::now();
    let mut lp_bytes = 0u64;
    for b in batches {
        let batch = parse(b, "default", &opts).expect("fleet data parses");
        engine.write(&batch).expect("write");
        lp_bytes += b.len() as u64;
    }
    engine.flush().unwrap();
    let s = wait_idle(&engine);
    let written = s.flush_bytes_written + s.compaction_bytes_written;
    println!(
        "{name}: {lp_bytes} bytes of line protocol in {:.1} s; flush wrote {} B ({} flushes), \
         compaction {} B ({} compactions of {} segments); {} segments, {} B live; \
         write amplification {:.3}",
        started.elapsed().as_secs_f64(),
        s.flush_bytes_written,
        s.flushes,
        s.compaction_bytes_written,
        s.compactions,
        s.compaction_input_segments,
        s.segments,
        s.segment_bytes,
        written as f64 / lp_bytes as f64
    );
}

fn main() {
    let trucks = env_or("STRATA_WA_TRUCKS", 200) as usize;
    let hours = env_or("STRATA_WA_HOURS", 48);
    let ordered = ordered_batches(trucks, hours);
    // 6 simulated hours behind: ticks of 10 s, one batch holds BATCH_LINES / (2 * trucks) ticks.
    let ticks_per_batch = (BATCH_LINES / (2 * trucks)).max(1);
    let delay = (6 * 360 / ticks_per_batch).max(1);
    println!(
        "fleet {trucks} trucks x {hours} h, {} batches",
        ordered.len()
    );
    run("(a) time-ordered", &ordered);
    run("(b) 5% late batches", &with_late_batches(ordered, delay));
}
