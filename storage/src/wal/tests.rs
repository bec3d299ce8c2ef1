//! Unit tests of the writer's failure handling, using fault injection at the exact points where
//! the real `write(2)` and `fdatasync` calls happen (the real-I/O-failure test lives in
//! `storage/tests/wal_poison.rs`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// Failures to inject into the next file operations.
#[derive(Debug, Default)]
pub(super) struct Faults {
    fail_write: bool,
    fail_sync: bool,
}

impl Faults {
    /// The injected outcome of the next write.
    pub(super) fn write_result(&self) -> io::Result<()> {
        if self.fail_write {
            Err(io::Error::other("injected write failure"))
        } else {
            Ok(())
        }
    }

    /// The injected outcome of the next fdatasync.
    pub(super) fn sync_result(&self) -> io::Result<()> {
        if self.fail_sync {
            Err(io::Error::other("injected fdatasync failure"))
        } else {
            Ok(())
        }
    }
}

impl Wal {
    fn inject(&self, fail_write: bool, fail_sync: bool) {
        lock(&self.inner.io).faults = Faults {
            fail_write,
            fail_sync,
        };
    }
}

fn open(dir: &Path, durability: Durability) -> (Wal, WalReplay) {
    let opts = WalOptions {
        dir: dir.to_path_buf(),
        durability,
        max_file_bytes: 1 << 20,
    };
    Wal::open(opts, 0).expect("open")
}

fn assert_poisoned<T: fmt::Debug>(result: Result<T, WalError>, needle: &str) {
    match result {
        Err(WalError::Poisoned(reason)) => assert!(reason.contains(needle), "{reason}"),
        other => panic!("expected Poisoned containing {needle:?}, got {other:?}"),
    }
}

#[test]
fn failed_fdatasync_poisons_every_later_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Sync);
    let first = wal.append(b"one").expect("append");
    wal.sync_to(first).expect("sync");
    wal.inject(false, true);
    let second = wal.append(b"two").expect("append");
    assert_poisoned(wal.sync_to(second), "injected fdatasync failure");
    assert_poisoned(wal.append(b"three"), "fdatasync of");
    assert_poisoned(wal.sync_to(second), "fdatasync of");
    assert_poisoned(wal.rotate(), "fdatasync of");
    // A record made durable before the failure stays acknowledged.
    wal.sync_to(first).expect("already durable");
    assert!(wal.poisoned().is_some());
    // The failed fsync is never retried: healing the disk does not un-poison the WAL.
    wal.inject(false, false);
    assert_poisoned(wal.append(b"four"), "fdatasync of");
}

#[test]
fn failed_write_poisons_and_wakes_all_waiters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::None);
    let wal = Arc::new(wal);
    wal.inject(true, false);
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                let seq = wal.append(&[i; 100])?;
                wal.sync_to(seq)
            })
        })
        .collect();
    for handle in handles {
        let result = handle.join().expect("thread");
        // A thread that appended after the failure gets Poisoned from append, the others from sync_to.
        assert_poisoned(result, "injected write failure");
    }
    assert_poisoned(wal.rotate(), "write to");
}

#[test]
fn failed_rotation_poisons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Sync);
    // The next file name is taken by a directory, so creating it fails.
    std::fs::create_dir(dir.path().join(file_name(wal.current_file_id() + 1))).expect("mkdir");
    assert_poisoned(wal.rotate(), "creating");
    assert_poisoned(wal.append(b"x"), "creating");
}

#[test]
fn interval_mode_syncs_in_the_background_and_stops_on_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Interval(Duration::from_millis(5)));
    let seq = wal.append(b"payload").expect("append");
    wal.sync_to(seq).expect("sync_to");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lock(&wal.inner.state).durable_seq < seq {
        assert!(
            std::time::Instant::now() < deadline,
            "background sync never ran"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(wal.sync_count() >= 1);
    let inner = Arc::downgrade(&wal.inner);
    drop(wal);
    assert!(
        inner.upgrade().is_none(),
        "the background thread still holds the WAL"
    );
}

#[test]
fn pending_records_are_written_without_sync_to_in_interval_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Interval(Duration::from_millis(2)));
    let seq = wal.append(b"never waited for").expect("append");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lock(&wal.inner.state).written_seq < seq {
        assert!(
            std::time::Instant::now() < deadline,
            "background thread never wrote"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
