//! Integration tests of the write-ahead log: round trips across reopen, sequence numbers,
//! rotation and removal, damage repair (torn tails, flipped bytes, garbage files), group commit
//! under concurrency, crash semantics of every durability mode, and property tests.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use strata_storage::wal::format::{self, FILE_HEADER_LEN, RECORD_HEADER_LEN};
use strata_storage::wal::{
    Durability, MAX_RECORD_BYTES, RecoverOptions, Wal, WalError, WalOptions, WalReplay, file_name,
};

const MODES: [Durability; 3] = [
    Durability::Sync,
    Durability::Interval(Duration::from_millis(10)),
    Durability::None,
];

fn options(dir: &Path, durability: Durability, max_file_bytes: u64) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        durability,
        max_file_bytes,
    }
}

fn open(dir: &Path, durability: Durability) -> (Wal, WalReplay) {
    Wal::open(options(dir, durability, 1 << 20), 0).expect("open")
}

/// Appends every payload and waits for each to be acknowledged; returns the sequence numbers.
fn write_all(wal: &Wal, payloads: &[Vec<u8>]) -> Vec<u64> {
    payloads
        .iter()
        .map(|p| {
            let seq = wal.append(p).expect("append");
            wal.sync_to(seq).expect("sync_to");
            seq
        })
        .collect()
}

fn payloads(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| (0..size + i % 7).map(|j| (i * 31 + j) as u8).collect())
        .collect()
}

fn replayed_payloads(replay: &WalReplay) -> Vec<Vec<u8>> {
    replay.records.iter().map(|r| r.payload.clone()).collect()
}

/// WAL files in `dir`, sorted by id.
fn wal_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// The newest WAL file that holds at least one record.
fn last_file_with_records(dir: &Path) -> PathBuf {
    let files = wal_files(dir);
    files
        .into_iter()
        .rev()
        .find(|p| fs::metadata(p).expect("stat").len() > FILE_HEADER_LEN as u64)
        .expect("a file with records")
}

#[test]
fn wal_records_round_trip_across_reopen_in_every_mode() {
    for mode in MODES {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = payloads(50, 100);
        let (wal, replay) = open(dir.path(), mode);
        assert!(replay.records.is_empty() && replay.warnings.is_empty());
        write_all(&wal, &data);
        drop(wal);
        let (_wal, replay) = open(dir.path(), mode);
        assert_eq!(replayed_payloads(&replay), data, "{mode:?}");
        assert!(replay.warnings.is_empty(), "{:?}", replay.warnings);
    }
}

#[test]
fn wal_acknowledged_records_survive_a_crash_in_every_mode() {
    for mode in MODES {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = payloads(20, 300);
        let (wal, _) = open(dir.path(), mode);
        write_all(&wal, &data);
        let unacknowledged = wal.append(b"appended, never synced").expect("append");
        // Like kill -9: no destructor runs, nothing more is written.
        std::mem::forget(wal);
        let (_wal, replay) = open(dir.path(), mode);
        let got = replayed_payloads(&replay);
        assert_eq!(got[..data.len()], data[..], "{mode:?}");
        assert!(replay.records.iter().all(|r| r.seq <= unacknowledged));
    }
}

#[test]
fn wal_sequence_numbers_continue_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Sync);
    let first = write_all(&wal, &payloads(5, 10));
    assert_eq!(first, [1, 2, 3, 4, 5]);
    drop(wal);
    let (wal, replay) = open(dir.path(), Durability::Sync);
    assert_eq!(
        replay.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        first
    );
    assert_eq!(wal.last_seq(), 5);
    assert_eq!(write_all(&wal, &payloads(2, 10)), [6, 7]);
}

#[test]
fn wal_sequence_numbers_continue_after_every_record_file_was_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Sync);
    write_all(&wal, &payloads(9, 10));
    let next = wal.rotate().expect("rotate");
    wal.remove_before(next).expect("remove_before");
    drop(wal);
    let (wal, replay) =
        Wal::open(options(dir.path(), Durability::Sync, 1 << 20), next).expect("open");
    assert!(replay.records.is_empty());
    assert_eq!(wal.append(b"x").expect("append"), 10);
}

#[test]
fn wal_files_rotate_by_size_and_replay_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = payloads(200, 500);
    let (wal, _) = Wal::open(options(dir.path(), Durability::None, 4096), 0).expect("open");
    write_all(&wal, &data);
    drop(wal);
    let files = wal_files(dir.path());
    assert!(files.len() > 10, "only {} files", files.len());
    for file in &files {
        let len = fs::metadata(file).expect("stat").len();
        assert!(len <= 4096 + 600, "{} is {len} bytes", file.display());
    }
    let (_wal, replay) = Wal::open(options(dir.path(), Durability::None, 4096), 0).expect("open");
    assert_eq!(replayed_payloads(&replay), data);
    let ids: Vec<u64> = replay.records.iter().map(|r| r.file_id).collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]));
    assert!(ids.last() > ids.first());
}

#[test]
fn wal_rotate_and_remove_before_delete_old_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Sync);
    write_all(&wal, &payloads(10, 1000));
    let old_file = wal.current_file_id();
    let new_file = wal.rotate().expect("rotate");
    assert_eq!(new_file, old_file + 1);
    assert_eq!(wal.current_file_id(), new_file);
    let later = payloads(3, 50);
    write_all(&wal, &later);
    let before = wal.disk_bytes();
    let on_disk: u64 = wal_files(dir.path())
        .iter()
        .map(|p| fs::metadata(p).expect("stat").len())
        .sum();
    assert_eq!(before, on_disk);
    wal.remove_before(new_file).expect("remove_before");
    assert!(!dir.path().join(file_name(old_file)).exists());
    assert!(dir.path().join(file_name(new_file)).exists());
    assert!(wal.disk_bytes() < before - 10_000);
    // A limit beyond the active file never deletes the active file.
    wal.remove_before(u64::MAX).expect("remove_before");
    assert!(dir.path().join(file_name(new_file)).exists());
    drop(wal);
    let (_wal, replay) =
        Wal::open(options(dir.path(), Durability::Sync, 1 << 20), new_file).expect("open");
    assert_eq!(replayed_payloads(&replay), later);
}

#[test]
fn wal_open_deletes_files_below_the_minimum_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Sync);
    write_all(&wal, &payloads(4, 10));
    let next = wal.rotate().expect("rotate");
    let later = payloads(2, 20);
    write_all(&wal, &later);
    drop(wal);
    let (wal, replay) =
        Wal::open(options(dir.path(), Durability::Sync, 1 << 20), next).expect("open");
    assert_eq!(replayed_payloads(&replay), later);
    assert!(
        wal_files(dir.path())
            .iter()
            .all(|p| !p.ends_with(file_name(next - 1)))
    );
    assert!(wal.current_file_id() > next);
}

#[test]
fn wal_a_torn_tail_keeps_earlier_records_and_names_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = payloads(10, 100);
    let (wal, _) = open(dir.path(), Durability::Sync);
    write_all(&wal, &data);
    drop(wal);
    let path = last_file_with_records(dir.path());
    let len = fs::metadata(&path).expect("stat").len();
    let last_record_len = (RECORD_HEADER_LEN + data[9].len()) as u64;
    let last_start = len - last_record_len;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(len - 7)
        .expect("truncate");

    let (wal, replay) = open(dir.path(), Durability::Sync);
    assert_eq!(replayed_payloads(&replay), data[..9]);
    assert_eq!(replay.warnings.len(), 1, "{:?}", replay.warnings);
    let warning = &replay.warnings[0];
    assert!(warning.contains(&path.display().to_string()), "{warning}");
    assert!(
        warning.contains(&format!("byte offset {last_start}")),
        "{warning}"
    );
    assert!(warning.contains("torn record"), "{warning}");
    assert_eq!(
        fs::metadata(&path).expect("stat").len(),
        last_start,
        "file not truncated"
    );
    // Appends continue in a new file and the repaired log replays cleanly.
    assert_ne!(
        wal.current_file_id(),
        format::FileHeader::decode(&fs::read(&path).expect("read"))
            .expect("header")
            .file_id
    );
    let seq = wal.append(b"after repair").expect("append");
    assert_eq!(seq, 10);
    wal.sync_to(seq).expect("sync_to");
    drop(wal);
    let (_wal, replay) = open(dir.path(), Durability::Sync);
    assert!(replay.warnings.is_empty(), "{:?}", replay.warnings);
    assert_eq!(replay.records.len(), 10);
}

#[test]
fn wal_a_torn_record_header_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::None);
    write_all(&wal, &payloads(3, 10));
    drop(wal);
    let path = last_file_with_records(dir.path());
    let len = fs::metadata(&path).expect("stat").len();
    OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open")
        .write_all(&[1, 2, 3, 4, 5])
        .expect("write");
    let (_wal, replay) = open(dir.path(), Durability::None);
    assert_eq!(replay.records.len(), 3);
    assert!(
        replay.warnings[0].contains(&format!(
            "torn record header: 5 bytes remain, 16 needed at byte offset {len}"
        )),
        "{:?}",
        replay.warnings
    );
}

fn salvage(dir: &Path) -> RecoverOptions {
    RecoverOptions {
        salvage: true,
        aside_dir: dir.join("aside"),
    }
}

/// Regression (issue 14, item 4): a flipped byte in the middle of a WAL file used to truncate the
/// file there, destroying the intact, acknowledged records after it.
#[test]
fn wal_damage_in_the_middle_refuses_and_salvage_keeps_every_intact_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal_dir = dir.path().join("wal");
    let (wal, _) = open(&wal_dir, Durability::Sync);
    let first = payloads(10, 64);
    write_all(&wal, &first);
    wal.rotate().expect("rotate");
    let second = payloads(5, 32);
    write_all(&wal, &second);
    drop(wal);
    let damaged = wal_files(&wal_dir)[0].clone();
    // Flip one payload byte of the 5th record.
    let offset_of_5th = FILE_HEADER_LEN as u64
        + first[..4]
            .iter()
            .map(|p| (RECORD_HEADER_LEN + p.len()) as u64)
            .sum::<u64>();
    let mut bytes = fs::read(&damaged).expect("read");
    bytes[(offset_of_5th + 20) as usize] ^= 0x40;
    fs::write(&damaged, &bytes).expect("write");

    // Refused, naming file and offset; nothing changed on disk.
    let err = Wal::open(options(&wal_dir, Durability::Sync, 1 << 20), 0).expect_err("must refuse");
    match &err {
        WalError::Damaged { path, offset, .. } => {
            assert_eq!((path, *offset), (&damaged, offset_of_5th));
        }
        other => panic!("unexpected error {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("checksum mismatch") && text.contains("intact records follow"),
        "{text}"
    );
    assert_eq!(
        fs::read(&damaged).expect("read"),
        bytes,
        "the file was changed"
    );

    // Salvage: every record that verifies comes back, a copy of the file is set aside.
    let (_wal, replay) = Wal::open_with(
        options(&wal_dir, Durability::Sync, 1 << 20),
        0,
        &salvage(dir.path()),
    )
    .expect("salvage");
    let mut expected = first[..4].to_vec();
    expected.extend_from_slice(&first[5..]);
    expected.extend_from_slice(&second);
    assert_eq!(replayed_payloads(&replay), expected);
    assert!(
        replay
            .warnings
            .iter()
            .any(|w| w.contains("WAL records 5..=5 are missing")),
        "{:?}",
        replay.warnings
    );
    assert_eq!(replay.set_aside.len(), 1, "{:?}", replay.set_aside);
    assert_eq!(fs::read(&replay.set_aside[0]).expect("copy"), bytes);
}

#[test]
fn wal_garbage_and_empty_files_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Sync);
    let data = payloads(3, 10);
    write_all(&wal, &data);
    drop(wal);
    let garbage: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(dir.path().join(file_name(100)), &garbage).expect("write");
    fs::write(dir.path().join(file_name(101)), b"").expect("write");
    fs::write(dir.path().join("unrelated.txt"), b"not a WAL file").expect("write");

    // A file with content and a broken header is refused, never replayed or deleted.
    let err =
        Wal::open(options(dir.path(), Durability::Sync, 1 << 20), 0).expect_err("must refuse");
    assert!(err.to_string().contains("bad magic"), "{err}");
    assert!(dir.path().join(file_name(100)).exists());

    let opts = options(dir.path(), Durability::Sync, 1 << 20);
    let (wal, replay) = Wal::open_with(opts, 0, &salvage(dir.path())).expect("salvage");
    assert_eq!(replayed_payloads(&replay), data);
    assert_eq!(replay.warnings.len(), 2, "{:?}", replay.warnings);
    assert!(replay.warnings[0].contains("bad magic") && replay.warnings[0].contains("copy"));
    assert!(
        replay.warnings[1].contains("shorter than the 32-byte header")
            && replay.warnings[1].contains("moved it to")
    );
    assert!(dir.path().join("aside").join(file_name(100)).exists());
    assert!(dir.path().join("aside").join(file_name(101)).exists());
    assert!(!dir.path().join(file_name(101)).exists());
    assert!(wal.current_file_id() > 101);
    // Once the records are safe elsewhere (the engine flushes), the damaged file can go.
    wal.remove_before(wal.current_file_id()).expect("remove");
    drop(wal);
    let (_wal, replay) = open(dir.path(), Durability::Sync);
    assert!(replay.warnings.is_empty(), "{:?}", replay.warnings);
}

#[test]
fn wal_a_newer_format_version_is_refused_not_destroyed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut header = format::FileHeader {
        file_id: 1,
        base_seq: 1,
    }
    .encode();
    header[8] = 2;
    let crc = crc32c_of(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    fs::write(dir.path().join(file_name(1)), header).expect("write");
    let err =
        Wal::open(options(dir.path(), Durability::Sync, 1 << 20), 0).expect_err("must refuse");
    assert!(
        err.to_string().contains("unsupported WAL format version 2"),
        "{err}"
    );
    assert!(dir.path().join(file_name(1)).exists());
}

/// CRC32C computed independently of the crate's format module (bitwise, reflected 0x82F63B78).
fn crc32c_of(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn wal_record_crc_matches_an_independent_crc32c() {
    let payload = b"independent check";
    let mut framed = Vec::new();
    format::encode_record(&mut framed, 77, payload);
    let mut covered = 77u64.to_le_bytes().to_vec();
    covered.extend_from_slice(payload);
    assert_eq!(framed[4..8], crc32c_of(&covered).to_le_bytes());
    assert_eq!(framed[0..4], (payload.len() as u32).to_le_bytes());
    assert_eq!(framed[8..16], 77u64.to_le_bytes());
}

#[test]
fn wal_oversized_records_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::None);
    let big = vec![0u8; MAX_RECORD_BYTES + 1];
    assert!(
        matches!(wal.append(&big), Err(WalError::RecordTooLarge(n)) if n == MAX_RECORD_BYTES + 1)
    );
    assert_eq!(wal.append(b"ok").expect("append"), 1);
}

#[test]
fn wal_concurrent_writers_share_fsyncs_and_every_record_is_replayed_once() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(options(dir.path(), Durability::Sync, 256 << 10), 0).expect("open");
    let wal = Arc::new(wal);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let payload = format!("thread {t} record {i}").into_bytes();
                    let seq = wal.append(&payload).expect("append");
                    wal.sync_to(seq).expect("sync_to");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("writer");
    }
    let total = (THREADS * PER_THREAD) as u64;
    let syncs = wal.sync_count();
    assert!(
        syncs < total / 2,
        "{syncs} fdatasyncs for {total} records: no group commit"
    );
    drop(wal);
    let (_wal, replay) =
        Wal::open(options(dir.path(), Durability::Sync, 256 << 10), 0).expect("open");
    assert!(replay.warnings.is_empty(), "{:?}", replay.warnings);
    let mut seen: Vec<String> = replay
        .records
        .iter()
        .map(|r| String::from_utf8(r.payload.clone()).expect("utf8"))
        .collect();
    assert_eq!(
        replay.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    seen.sort();
    let mut expected: Vec<String> = (0..THREADS)
        .flat_map(|t| (0..PER_THREAD).map(move |i| format!("thread {t} record {i}")))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    // Each thread's own records keep its order.
    for t in 0..THREADS {
        let prefix = format!("thread {t} ");
        let mine: Vec<usize> = replay
            .records
            .iter()
            .filter_map(|r| {
                std::str::from_utf8(&r.payload)
                    .ok()?
                    .strip_prefix(&prefix)?
                    .strip_prefix("record ")?
                    .parse()
                    .ok()
            })
            .collect();
        assert_eq!(mine, (0..PER_THREAD).collect::<Vec<_>>());
    }
}

#[test]
fn wal_sync_to_beyond_the_last_record_writes_everything_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::None);
    wal.sync_to(0).expect("nothing to sync");
    for payload in payloads(3, 5) {
        wal.append(&payload).expect("append");
    }
    wal.sync_to(u64::MAX).expect("sync_to");
    let path = dir.path().join(file_name(wal.current_file_id()));
    let bytes = fs::read(&path).expect("read");
    let scan = format::scan_file(&bytes, Some(wal.current_file_id()), 0);
    assert_eq!(scan.damage, None);
    assert_eq!(
        scan.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    std::mem::forget(wal);
}

#[test]
fn wal_is_send_sync_and_debug() {
    fn check<T: Send + Sync + std::fmt::Debug>() {}
    check::<Wal>();
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), Durability::Sync);
    let shown = format!("{wal:?}");
    assert!(shown.contains("next_seq: 1"), "{shown}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn wal_random_payload_sequences_round_trip(
        data in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..40),
        max_file_bytes in 64u64..4096,
        rotate_every in 1usize..20,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(options(dir.path(), Durability::None, max_file_bytes), 0).expect("open");
        for (i, payload) in data.iter().enumerate() {
            let seq = wal.append(payload).expect("append");
            prop_assert_eq!(seq, i as u64 + 1);
            if i % rotate_every == 0 {
                wal.rotate().expect("rotate");
            }
        }
        drop(wal);
        let (_wal, replay) = Wal::open(options(dir.path(), Durability::None, max_file_bytes), 0).expect("open");
        prop_assert!(replay.warnings.is_empty(), "{:?}", replay.warnings);
        prop_assert_eq!(replayed_payloads(&replay), data);
    }

    #[test]
    fn wal_arbitrary_bytes_after_valid_records_never_panic_and_keep_the_prefix(
        data in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..10),
        tail in prop::collection::vec(any::<u8>(), 1..400),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open(dir.path(), Durability::None);
        write_all(&wal, &data);
        drop(wal);
        let path = last_file_with_records(dir.path());
        let valid_len = fs::metadata(&path).expect("stat").len();
        OpenOptions::new().append(true).open(&path).expect("open").write_all(&tail).expect("append");
        let (wal, replay) = open(dir.path(), Durability::None);
        prop_assert_eq!(&replayed_payloads(&replay), &data);
        prop_assert_eq!(replay.warnings.len(), 1);
        prop_assert!(replay.warnings[0].contains(&format!("byte offset {valid_len}")), "{}", &replay.warnings[0]);
        prop_assert_eq!(fs::metadata(&path).expect("stat").len(), valid_len);
        drop(wal);
        let (_wal, again) = open(dir.path(), Durability::None);
        prop_assert_eq!(replayed_payloads(&again), data);
        prop_assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    }

    #[test]
    fn wal_scan_file_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        with_header in any::<bool>(),
        previous in any::<u64>(),
    ) {
        let mut data = Vec::new();
        if with_header {
            data.extend_from_slice(&format::FileHeader { file_id: 3, base_seq: 1 }.encode());
        }
        data.extend_from_slice(&bytes);
        let scan = format::scan_file(&data, Some(3), previous);
        prop_assert!(scan.valid_len <= data.len() as u64);
        prop_assert_eq!(scan.damage.is_none(), scan.valid_len == data.len() as u64 && scan.header.is_some());
        prop_assert!(scan.records.windows(2).all(|w| w[0].seq < w[1].seq));
    }
}
