//! End-to-end engine benches on simulated truck-fleet data: line-protocol parse + durable write
//! (`sync` mode, 1 and 2 concurrent writers sharing group commit), bytes per stored value after
//! flush and compaction, and the range read of one device, one field, 4 hours.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use strata_client::fleet::{FleetConfig, FleetGenerator};
use strata_ingest::line_protocol::{ParseOptions, parse};
use strata_storage::{Durability, Engine, EngineConfig, ScanRequest};

const BATCH_LINES: usize = 5000;

/// Line-protocol batches of a 200-truck fleet over `hours`.
fn fleet_batches(hours: u64) -> Vec<Vec<u8>> {
    let cfg = FleetConfig {
        trucks: 200,
        duration: Duration::from_secs(hours * 3600),
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

fn engine(dir: &std::path::Path, durability: Durability) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.durability = durability;
    Engine::open(cfg).expect("open engine")
}

fn write_payload(engine: &Engine, payload: &[u8], opts: &ParseOptions) -> usize {
    let batch = parse(payload, "default", opts).expect("fleet data parses");
    engine.write(&batch).expect("write").rows
}

fn bench_ingest(c: &mut Criterion) {
    let batches = Arc::new(fleet_batches(1));
    let rows_per_batch = parse(&batches[0], "default", &ParseOptions::default())
        .unwrap()
        .rows() as u64;
    let mut group = c.benchmark_group("ingest");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for writers in [1usize, 2] {
        group.throughput(Throughput::Elements(rows_per_batch * writers as u64));
        group.bench_function(format!("parse_and_write_sync_{writers}_writers"), |b| {
            let dir = tempfile::tempdir().unwrap();
            let engine = Arc::new(engine(dir.path(), Durability::Sync));
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for w in 0..writers {
                        let (engine, batches) = (engine.clone(), batches.clone());
                        s.spawn(move || {
                            let opts = ParseOptions::default();
                            for i in 0..iters as usize {
                                write_payload(
                                    &engine,
                                    &batches[(i * writers + w) % batches.len()],
                                    &opts,
                                );
                            }
                        });
                    }
                });
                start.elapsed()
            });
        });
    }
    group.finish();
}

/// Loads 24 hours of the fleet, flushes and compacts, prints bytes per value, then benches reads.
fn bench_storage_and_reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), Durability::None);
    let opts = ParseOptions::default();
    let started = Instant::now();
    let rows: usize = fleet_batches(24)
        .iter()
        .map(|b| write_payload(&engine, b, &opts))
        .sum();
    let load = started.elapsed();
    engine.flush().unwrap();
    engine.compact().unwrap();
    let stats = engine.stats();
    println!(
        "fleet 200 trucks x 24 h: {rows} rows, {} values loaded in {:.1} s; on disk {} bytes in {} segments = {:.3} bytes/value",
        stats.values_written,
        load.as_secs_f64(),
        stats.segment_bytes,
        stats.segments,
        stats.segment_bytes as f64 / stats.values_written as f64
    );
    print_column_sizes(&dir.path().join("segments"));
    let start = 1_704_067_200_000_000_000i64 + 6 * 3_600_000_000_000;
    let req = ScanRequest {
        database: "default".into(),
        stream: "readings".into(),
        device: Some("truck_42".into()),
        start,
        end: start + 4 * 3_600_000_000_000,
        fields: Some(vec!["velocity".into()]),
        ..Default::default()
    };
    let got = engine.scan(&req).unwrap();
    assert_eq!(got.len(), 1, "truck_42 has one readings series");
    println!("range read returns {} rows", got[0].times.len());
    let mut group = c.benchmark_group("read");
    group.bench_function("one_device_one_field_4h", |b| {
        b.iter(|| engine.scan(&req).unwrap())
    });
    group.finish();
}

/// Bytes per value of every column of every segment, to see where the bytes go.
fn print_column_sizes(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        println!("{}:", path.display());
        for c in strata_storage::summarize_segment_file(&path).unwrap() {
            let per_value = c.bytes as f64 / c.values.max(1) as f64;
            println!(
                "  {:<18} {:>10} bytes {:>9} values {per_value:>7.3} B/value {:?}",
                c.name, c.bytes, c.values, c.codecs
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_ingest(&mut c);
    bench_storage_and_reads(&mut c);
    c.final_summary();
}
