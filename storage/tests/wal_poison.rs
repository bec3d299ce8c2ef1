//! A real I/O failure: the test re-runs itself in a child process whose file-size limit
//! (`ulimit -f`, with SIGXFSZ ignored) makes `write(2)` fail with EFBIG once the WAL file reaches
//! 32 KiB, part-way through a record. The child checks that the WAL refuses writes with a typed
//! I/O error (and keeps refusing while the limit holds); the parent then reopens the WAL without
//! the limit and checks that every acknowledged record is replayed and that no torn record was
//! left behind (the failed write was cut back at once).

use std::path::Path;
use std::process::Command;

use strata_storage::wal::{Durability, Wal, WalError, WalOptions};

/// Set in the child process: the WAL directory to write to.
const CHILD_ENV: &str = "STRATA_WAL_POISON_TEST_DIR";
/// The child's file-size limit in 512-byte blocks (32 KiB).
const LIMIT_BLOCKS: u32 = 64;
const PAYLOAD_LEN: usize = 1000;

fn options(dir: &Path) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        durability: Durability::Sync,
        max_file_bytes: 1 << 20,
    }
}

fn payload(seq: u64) -> Vec<u8> {
    (0..PAYLOAD_LEN)
        .map(|i| (seq as usize * 7 + i) as u8)
        .collect()
}

#[test]
fn a_real_write_failure_is_cut_back_and_refused_and_acknowledged_records_survive() {
    match std::env::var_os(CHILD_ENV) {
        Some(dir) => child(Path::new(&dir)),
        None => parent(),
    }
}

/// Runs under the file-size limit: writes until the WAL fails, and reports what was acknowledged.
fn child(dir: &Path) {
    let (wal, _) = Wal::open(options(dir), 0).expect("open");
    let mut acknowledged = 0;
    let failure = loop {
        let seq = wal
            .append(&payload(acknowledged + 1))
            .expect("append before the failure");
        match wal.sync_to(seq) {
            Ok(()) => acknowledged = seq,
            Err(err) => break err,
        }
        assert!(acknowledged < 1000, "the file-size limit never triggered");
    };
    let WalError::IoFault { detail, .. } = &failure else {
        panic!("expected IoFault, got {failure:?}")
    };
    assert!(detail.contains("File too large"), "{detail}");
    assert!(matches!(
        wal.append(b"later"),
        Err(WalError::IoFault { .. })
    ));
    // Still over the limit: the retry fails the same way and cuts back again.
    assert!(matches!(wal.retry(), Err(WalError::IoFault { .. })));
    assert!(matches!(wal.rotate(), Err(WalError::IoFault { .. })));
    println!("ACKNOWLEDGED {acknowledged}");
}

/// Starts the child under the limit, then recovers its WAL.
fn parent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");
    let script = format!("trap '' XFSZ; ulimit -f {LIMIT_BLOCKS}; exec \"$0\" \"$@\"");
    let output = Command::new("sh")
        .args(["-c", &script])
        .arg(&exe)
        .args([
            "--exact",
            "a_real_write_failure_is_cut_back_and_refused_and_acknowledged_records_survive",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let acknowledged: u64 = stdout
        .lines()
        .find_map(|l| l.split_once("ACKNOWLEDGED ").map(|(_, n)| n))
        .and_then(|n| n.trim().parse().ok())
        .expect("child reported its acknowledged count");
    assert!(
        (20..40).contains(&acknowledged),
        "{acknowledged} records fit in 32 KiB?"
    );

    let (wal, replay) = Wal::open(options(dir.path()), 0).expect("reopen");
    let seqs: Vec<u64> = replay.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=acknowledged).collect::<Vec<_>>());
    assert!(replay.records.iter().all(|r| r.payload == payload(r.seq)));
    // The write that hit the limit was cut back when it failed: no torn record is left.
    assert!(replay.warnings.is_empty(), "{:?}", replay.warnings);
    assert_eq!(
        wal.append(b"after restart").expect("append"),
        acknowledged + 1
    );
}
