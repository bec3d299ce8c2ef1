//! Unit tests of the writer's failure handling, using the engine's error-injecting file layer
//! (`crate::faults`, reached through `fsutil`) at the exact points where the real `write(2)`,
//! `fdatasync` and file creation happen (the real-I/O-failure test lives in
//! `storage/tests/wal_poison.rs`). An injected write fault writes half of its bytes first, so
//! these tests also check that no torn record is left for later appends to follow.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::faults::{self, EIO, EMFILE, ENOSPC, Op};

fn open(dir: &Path, durability: Durability) -> (Wal, WalReplay) {
    let opts = WalOptions {
        dir: dir.to_path_buf(),
        durability,
        max_file_bytes: 1 << 20,
    };
    Wal::open(opts, 0).expect("open")
}

fn assert_no_space<T: fmt::Debug>(result: Result<T, WalError>) {
    match result {
        Err(WalError::NoSpace { detail, .. }) => {
            assert!(detail.contains("No space left on device"), "{detail}")
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
}

fn assert_io_fault<T: fmt::Debug>(result: Result<T, WalError>, needle: &str) {
    match result {
        Err(WalError::IoFault { detail, .. }) => assert!(detail.contains(needle), "{detail}"),
        other => panic!("expected IoFault containing {needle:?}, got {other:?}"),
    }
}

/// Length of the WAL file appends currently go to.
fn active_len(wal: &Wal, dir: &Path) -> u64 {
    std::fs::metadata(dir.join(file_name(wal.current_file_id())))
        .expect("active file")
        .len()
}

/// Payloads of every record a fresh open replays; panics on any damage warning.
fn replayed(dir: &Path) -> Vec<Vec<u8>> {
    let (_wal, replay) = open(dir, Durability::Sync);
    assert!(replay.warnings.is_empty(), "{:?}", replay.warnings);
    replay.records.into_iter().map(|r| r.payload).collect()
}

#[test]
fn failed_fdatasync_cuts_back_refuses_and_heals_without_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Sync);
    let first = wal.append(b"one").expect("append");
    wal.sync_to(first).expect("sync");
    let good_len = active_len(&wal, dir.path());
    faults::inject(dir.path(), Op::Sync, EIO);
    let second = wal.append(b"two").expect("append");
    assert_io_fault(wal.sync_to(second), "fdatasync of");
    // The unsynced record was cut off the file (it is queued again, not acknowledged).
    assert_eq!(active_len(&wal, dir.path()), good_len);
    assert_io_fault(wal.append(b"three"), "Input/output error");
    assert_io_fault(wal.retry(), "fdatasync of");
    // A record made durable before the failure stays acknowledged.
    wal.sync_to(first).expect("already durable");
    assert!(wal.poisoned().is_none());
    // The disk heals: the next retry writes the queued record and appends are accepted again.
    faults::clear(dir.path());
    wal.retry().expect("retry after the fault cleared");
    assert!(wal.failure().is_none());
    wal.sync_to(second)
        .expect("the queued record is durable now");
    let fourth = wal.append(b"four").expect("append after healing");
    wal.sync_to(fourth).expect("sync after healing");
    drop(wal);
    assert_eq!(replayed(dir.path()), [&b"one"[..], b"two", b"four"]);
}

#[test]
fn a_write_torn_by_a_full_disk_is_cut_back_before_later_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::None);
    let wal = Arc::new(wal);
    let first = wal.append(&[9; 100]).expect("append");
    wal.sync_to(first).expect("write");
    let good_len = active_len(&wal, dir.path());
    faults::inject(dir.path(), Op::Write, ENOSPC);
    let handles: Vec<_> = (0..4u8)
        .map(|i| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                let seq = wal.append(&[i; 100])?;
                wal.sync_to(seq)
            })
        })
        .collect();
    for handle in handles {
        // A thread that appended after the failure is refused by append, the others by sync_to.
        assert_no_space(handle.join().expect("thread"));
    }
    // Half of the batch reached the file before the failure; it was cut off again.
    assert_eq!(active_len(&wal, dir.path()), good_len);
    assert_no_space(wal.rotate());
    faults::clear(dir.path());
    wal.retry().expect("space is back");
    let last = wal.append(b"after").expect("append");
    wal.sync_to(last).expect("write");
    drop(wal);
    let records = replayed(dir.path());
    // The batch in flight when the disk filled (at least one record; threads that appended after
    // the failure were refused by append and queued nothing) was written once, whole, by the
    // retry; nothing torn precedes "after".
    assert!((3..=6).contains(&records.len()), "{records:?}");
    assert_eq!(records[0], vec![9; 100]);
    let middle = &records[1..records.len() - 1];
    assert!(middle.iter().all(|r| r.len() == 100 && r[0] < 4));
    assert_eq!(records[records.len() - 1], b"after");
}

#[test]
fn interval_mode_rewrites_acknowledged_unsynced_records_after_a_failed_fdatasync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Interval(Duration::from_secs(3600)));
    let good_len = active_len(&wal, dir.path());
    faults::inject(dir.path(), Op::Sync, ENOSPC);
    let seq = wal.append(b"acknowledged after write(2)").expect("append");
    wal.sync_to(seq).expect("written");
    assert_no_space(wal.rotate());
    // The fdatasync failed: the written-but-unsynced record was cut off and queued again.
    assert_eq!(active_len(&wal, dir.path()), good_len);
    faults::clear(dir.path());
    wal.rotate().expect("rotate once the disk heals");
    drop(wal);
    assert_eq!(replayed(dir.path()), [&b"acknowledged after write(2)"[..]]);
}

#[test]
fn a_failed_rotation_is_retried_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Sync);
    let before = wal.current_file_id();
    faults::inject(dir.path(), Op::Create, EMFILE);
    assert_io_fault(wal.rotate(), "Too many open files");
    assert_io_fault(wal.append(b"x"), "creating");
    faults::clear(dir.path());
    // Header write fails half-way: the partial file is removed so the next try can create it.
    faults::inject(dir.path(), Op::Write, ENOSPC);
    assert_no_space(wal.rotate());
    assert!(!dir.path().join(file_name(before + 1)).exists());
    faults::clear(dir.path());
    wal.retry().expect("nothing pending");
    assert_eq!(wal.rotate().expect("rotate"), before + 1);
    let seq = wal.append(b"y").expect("append");
    wal.sync_to(seq).expect("sync");
    drop(wal);
    assert_eq!(replayed(dir.path()), [&b"y"[..]]);
}

#[test]
fn a_name_taken_by_a_directory_fails_the_rotation_without_poisoning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Sync);
    let blocker = dir.path().join(file_name(wal.current_file_id() + 1));
    std::fs::create_dir(&blocker).expect("mkdir");
    assert_io_fault(wal.rotate(), "creating");
    std::fs::remove_dir(&blocker).expect("rmdir");
    wal.retry().expect("retry");
    wal.rotate().expect("rotate");
    assert!(wal.poisoned().is_none());
}

#[test]
fn a_stop_before_the_sync_thread_first_waits_does_not_hang() {
    // Dropping right after open can ask the thread to stop before it ever waited; it must not
    // then sleep out its (hour-long) interval while the drop joins it. Before the fix, one of
    // these opens hung the test under load.
    for _ in 0..200 {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open(dir.path(), Durability::Interval(Duration::from_secs(3600)));
        drop(wal);
    }
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
