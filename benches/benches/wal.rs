//! WAL benches: append + `sync_to` throughput in `Sync` and `None` modes, with 1 and 8 concurrent
//! writers and 1 KiB and 64 KiB records. Criterion reports records/s; a closing table prints
//! records/s, MB/s and fdatasyncs per record (how well group commit shares syncs).
//!
//! Run with `cargo bench -p strata-benches --bench wal`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use strata_storage::wal::{Durability, Wal, WalOptions};

const MODES: [(&str, Durability); 2] = [("sync", Durability::Sync), ("none", Durability::None)];
const WRITERS: [usize; 2] = [1, 8];
const SIZES: [(&str, usize); 2] = [("1KiB", 1 << 10), ("64KiB", 64 << 10)];
/// How long each configuration runs for the closing table.
const TABLE_RUN: Duration = Duration::from_millis(400);

/// A WAL in a temporary directory that is deleted with it.
struct Bench {
    wal: Wal,
    _dir: tempfile::TempDir,
}

fn open(durability: Durability) -> Bench {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = WalOptions {
        dir: dir.path().to_path_buf(),
        durability,
        max_file_bytes: 64 << 20,
    };
    let (wal, _) = Wal::open(opts, 0).expect("open WAL");
    Bench { wal, _dir: dir }
}

/// `records` append + sync_to calls spread over `writers` threads; returns the wall time.
fn run(wal: &Wal, writers: usize, records: u64, payload: &[u8]) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for w in 0..writers as u64 {
            let mine = records / writers as u64 + u64::from(w < records % writers as u64);
            scope.spawn(move || {
                for _ in 0..mine {
                    let seq = wal.append(payload).expect("append");
                    wal.sync_to(seq).expect("sync_to");
                }
            });
        }
    });
    start.elapsed()
}

/// Drops the files written so far so the bench does not fill the disk.
fn trim(wal: &Wal) {
    let next = wal.rotate().expect("rotate");
    wal.remove_before(next).expect("remove_before");
}

fn bench_wal(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append_sync");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    for (mode_name, mode) in MODES {
        for (size_name, size) in SIZES {
            let payload = vec![0xA5u8; size];
            for writers in WRITERS {
                let bench = open(mode);
                let id = format!("{mode_name}/{size_name}/{writers}w");
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let elapsed = run(&bench.wal, writers, iters, &payload);
                        trim(&bench.wal);
                        elapsed
                    })
                });
            }
        }
    }
    group.finish();
}

/// Runs every configuration for [`TABLE_RUN`] and prints records/s, MB/s and fsyncs per record.
fn summary_table() {
    println!(
        "\nWAL append+sync_to ({} ms per row)",
        TABLE_RUN.as_millis()
    );
    println!(
        "{:<6} {:>6} {:>8} {:>12} {:>10} {:>14}",
        "mode", "size", "writers", "records/s", "MB/s", "fsyncs/record"
    );
    for (mode_name, mode) in MODES {
        for (size_name, size) in SIZES {
            let payload = vec![0x5Au8; size];
            for writers in WRITERS {
                let bench = open(mode);
                let (mut records, mut elapsed) = (0u64, Duration::ZERO);
                while elapsed < TABLE_RUN {
                    let chunk = 64 * writers as u64;
                    elapsed += run(&bench.wal, writers, chunk, &payload);
                    records += chunk;
                }
                let syncs = bench.wal.sync_count();
                let rate = records as f64 / elapsed.as_secs_f64();
                let mb = rate * size as f64 / 1e6;
                let per = syncs as f64 / records as f64;
                println!(
                    "{mode_name:<6} {size_name:>6} {writers:>8} {rate:>12.0} {mb:>10.1} {per:>14.3}"
                );
            }
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_wal(&mut c);
    c.final_summary();
    summary_table();
}
