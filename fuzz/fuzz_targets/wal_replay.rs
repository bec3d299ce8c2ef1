//! Fuzz target: arbitrary bytes as a WAL file must decode and replay without panicking.
//!
//! The input is decoded as-is and behind a valid file header (a fuzzer cannot forge the header
//! checksum, so this is what reaches the record decoder). Then it is replayed for real by
//! `Wal::open`, and a second open must find the repaired log clean with the same records.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use strata_storage::wal::format::{self, FileHeader};
use strata_storage::wal::{Durability, Wal, WalOptions, file_name};

fuzz_target!(|data: &[u8]| {
    check_scan(data);
    let mut framed = FileHeader {
        file_id: 1,
        base_seq: 1,
    }
    .encode()
    .to_vec();
    framed.extend_from_slice(data);
    check_scan(&framed);

    let dir = std::env::temp_dir().join(format!("strata-fuzz-wal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let raw = data.first().is_some_and(|b| b & 1 == 1);
    let file = if raw { data } else { &framed[..] };
    if std::fs::write(dir.join(file_name(1)), file).is_ok() {
        check_replay(&dir);
    }
});

/// The pure decoder: never panics, and what it reports is consistent.
fn check_scan(data: &[u8]) {
    let scan = format::scan_file(data, Some(1), 0);
    assert!(scan.valid_len <= data.len() as u64);
    assert_eq!(
        scan.damage.is_none(),
        scan.header.is_some() && scan.valid_len == data.len() as u64
    );
    assert!(scan.records.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// Replay repairs the file; replaying the repaired log finds the same records and no damage.
fn check_replay(dir: &Path) {
    let opts = WalOptions {
        dir: dir.to_path_buf(),
        durability: Durability::None,
        max_file_bytes: 1 << 20,
    };
    let Ok((wal, first)) = Wal::open(opts.clone(), 0) else {
        return;
    };
    drop(wal);
    let (_wal, second) = Wal::open(opts, 0).expect("reopening a repaired WAL");
    assert_eq!(first.records, second.records);
    // Damage is repaired by the first open; only gaps in the sequence numbers (lost records) are
    // reported again.
    assert!(
        second.warnings.iter().all(|w| w.contains("are missing")),
        "{:?}",
        second.warnings
    );
}
