//! Crash test: a writer streams uniquely valued batches while the server is killed with SIGKILL at
//! random moments and restarted, over many rounds and under different durability and flush
//! settings. Every acknowledged point must survive with its exact value, and nothing that was never
//! sent may appear.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::Value;
use strata_tests::{Server, TEST_ADMIN_TOKEN, bearer, rows, temp_data_dir, try_post};

const ROUNDS: usize = 15;
const ROWS: u64 = 100;
const WRITERS: usize = 3;
const DEVICES: u64 = 4;
const BASE: i64 = 1_700_000_000_000_000_000;
const MS: i64 = 1_000_000;

/// Timestamp of row `r` of batch `b`. Every 7th batch (b % 7 == 3) lands late, in an older
/// partition (halfway back), at a 5 s offset no regular batch uses, so (device, time) stays unique.
fn time_of(b: u64, r: u64) -> i64 {
    let slot = if b % 7 == 3 {
        (b / 2) as i64 * 10_000 + 5_000
    } else {
        b as i64 * 10_000
    };
    BASE + slot * MS + r as i64 * MS
}

/// Inverse of [`time_of`] for a given row value.
fn expected_value(b: u64, r: u64) -> i64 {
    (b * 1000 + r) as i64
}

fn batch_body(b: u64) -> String {
    (0..ROWS)
        .map(|r| {
            let v = expected_value(b, r);
            format!(
                "crash,device=d{} v={v}i,f={},even={} {}\n",
                r % DEVICES,
                v as f64 / 4.0,
                v % 2 == 0,
                time_of(b, r)
            )
        })
        .collect()
}

#[derive(Default)]
struct Ledger {
    acked: Mutex<Vec<u64>>,
    /// Next batch number to send; every batch below it may have been sent.
    next: AtomicU64,
    rejected: Mutex<Vec<String>>,
}

/// One of [`WRITERS`] concurrent writers (so group commit is under test too): takes batch
/// numbers from the ledger until told to stop.
fn writer(url: String, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let auth = bearer(TEST_ADMIN_TOKEN);
    while !stop.load(Ordering::Relaxed) {
        let b = ledger.next.fetch_add(1, Ordering::SeqCst);
        let body = batch_body(b);
        match try_post(&url, body.as_bytes(), &[("Authorization", &auth)]) {
            Ok(r) if r.status == 204 => ledger.acked.lock().unwrap().push(b),
            Ok(r) if r.status >= 500 => std::thread::sleep(Duration::from_millis(10)),
            Ok(r) => ledger
                .rejected
                .lock()
                .unwrap()
                .push(format!("batch {b}: {} {}", r.status, r.body)),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Flags for round `i`: a mix of durability modes, and tiny memtables so flushes and
/// compactions run while the process is killed.
fn round_args(i: usize) -> Vec<&'static str> {
    let mut args = vec!["--partition", "1h"];
    args.extend(match i % 4 {
        0 => ["--durability", "sync"],
        1 => ["--durability", "interval:50"],
        2 => ["--durability", "none"],
        _ => ["--durability", "sync"],
    });
    if i % 2 == 1 {
        args.extend([
            "--memtable-mb",
            "0.05",
            "--flush-age",
            "200ms",
            "--background-interval",
            "50ms",
            "--compaction-trigger",
            "2",
        ]);
    }
    args
}

fn check_row(device: &str, t: i64, fields: &serde_json::Map<String, Value>, sent: u64) -> u64 {
    let v = fields["v"]
        .as_i64()
        .unwrap_or_else(|| panic!("row at {t} has no integer v: {fields:?}"));
    assert!(v >= 0, "negative value {v}");
    let (b, r) = (v as u64 / 1000, v as u64 % 1000);
    assert!(
        b < sent && r < ROWS,
        "value {v} at {t} was never sent (sent {sent} batches)"
    );
    assert_eq!(t, time_of(b, r), "value {v} found at the wrong time");
    assert_eq!(
        device,
        format!("d{}", r % DEVICES),
        "value {v} under the wrong device"
    );
    assert_eq!(
        fields["f"].as_f64(),
        Some(v as f64 / 4.0),
        "float of value {v}"
    );
    assert_eq!(
        fields["even"].as_bool(),
        Some(v % 2 == 0),
        "bool of value {v}"
    );
    b * 1000 + r
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let (_tmp, dir) = temp_data_dir();
    let mut server = Server::start(&dir, &round_args(0));
    let url = server.url("/api/v1/write?db=crash");
    let (ledger, stop) = (
        Arc::new(Ledger::default()),
        Arc::new(AtomicBool::new(false)),
    );
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (url, ledger, stop) = (url.clone(), ledger.clone(), stop.clone());
            std::thread::spawn(move || writer(url, ledger, stop))
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(42);
    let (mut flushes, mut compactions) = (0, 0);
    for round in 1..=ROUNDS {
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..=400)));
        let engine = server.health()["engine"].clone();
        flushes += engine["flushes"].as_u64().unwrap_or(0);
        compactions += engine["compactions"].as_u64().unwrap_or(0);
        server.kill9();
        server.set_args(&round_args(round));
        server.restart();
        let h = server.health();
        assert!(
            h["recovery"]["segment_errors"]
                .as_array()
                .unwrap()
                .is_empty(),
            "round {round}: {h}"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    server.kill9();
    server.restart();

    let rejected = ledger.rejected.lock().unwrap().clone();
    assert!(
        rejected.is_empty(),
        "writes rejected with 4xx: {rejected:?}"
    );
    let sent = ledger.next.load(Ordering::SeqCst);
    let acked = ledger.acked.lock().unwrap().clone();
    assert!(
        acked.len() >= ROUNDS,
        "only {} batches acknowledged",
        acked.len()
    );

    let resp = server.read("db=crash&stream=crash");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let mut present = HashSet::new();
    for (device, t, fields) in rows(&resp.json()) {
        assert!(
            present.insert(check_row(&device, t, &fields, sent)),
            "duplicate row at {t}"
        );
    }
    let missing: Vec<u64> = acked
        .iter()
        .flat_map(|b| (0..ROWS).map(move |r| b * 1000 + r))
        .filter(|v| !present.contains(v))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged values lost, first: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    eprintln!(
        "crash test: {sent} batches sent, {} acknowledged, {} rows present, \
         {flushes} flushes and {compactions} compactions seen",
        acked.len(),
        present.len()
    );
    assert!(flushes > 0, "no flush ran during the rounds");
}
