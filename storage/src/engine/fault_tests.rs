//! Run-time disk faults through the engine, using the error-injecting file layer
//! (`crate::faults`, reached through `fsutil`): ENOSPC, EIO and EMFILE at WAL append, at flush
//! (segment write, catalog log, MANIFEST replace, WAL rotation), at compaction and at the local
//! step of a cold-tier move. Each test checks that the failing write is refused with a typed error
//! (`NoSpace` / `IoFault`), that the engine heals by itself once the fault is cleared (no restart),
//! that every acknowledged write is readable (after reopen too), and that the MANIFEST names no
//! half-written segment and no temporary or unpublished file is left holding space.

use std::collections::BTreeSet;
use std::path::Path;

use crate::faults::{self, EIO, EMFILE, ENOSPC, Op};
use crate::manifest::Manifest;
use crate::{
    Column, Engine, EngineConfig, ErrorKind, FieldType, ScanRequest, SeriesKey, StorageError,
    TableWrite, Value, WriteBatch,
};

fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.background = false;
    c.verify_on_open = true;
    c
}

/// One point of device `d1` at time `t` with value `t` (also used by other engine tests).
pub(in crate::engine) fn point(t: i64) -> WriteBatch {
    let mut column = Column::new("v", FieldType::Float);
    column.data.push_value(&Value::Float(t as f64));
    column.valid.push(true);
    WriteBatch {
        database: "db".into(),
        tables: vec![TableWrite {
            stream: "m".into(),
            series: vec![SeriesKey {
                device: "d1".into(),
                tags: vec![],
            }],
            row_series: vec![0],
            times: vec![t],
            columns: vec![column],
        }],
    }
}

/// Times of every stored point, each checked to hold its own value.
fn stored(engine: &Engine) -> Vec<i64> {
    let req = ScanRequest {
        database: "db".into(),
        stream: "m".into(),
        start: i64::MIN,
        end: i64::MAX,
        ..Default::default()
    };
    let mut out = Vec::new();
    for batch in engine.scan(&req).expect("scan") {
        for (i, t) in batch.times.iter().enumerate() {
            assert_eq!(batch.columns[0].get(i), Some(Value::Float(*t as f64)));
            out.push(*t);
        }
    }
    out.sort();
    out
}

/// Writes points `range`, all of which must be acknowledged.
fn write_ok(engine: &Engine, range: std::ops::Range<i64>) {
    for t in range {
        engine.write(&point(t)).expect("write");
    }
}

fn assert_no_space<T: std::fmt::Debug>(result: crate::Result<T>) {
    match result {
        Err(e @ StorageError::NoSpace { .. }) => {
            assert_eq!(e.kind(), ErrorKind::OutOfSpace);
            assert!(e.to_string().contains("no space"), "{e}");
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
}

fn assert_io_fault<T: std::fmt::Debug>(result: crate::Result<T>, needle: &str) {
    match result {
        Err(e @ StorageError::IoFault { .. }) => {
            assert_eq!(e.kind(), ErrorKind::Unavailable);
            assert!(e.to_string().contains(needle), "{e}");
        }
        other => panic!("expected IoFault containing {needle:?}, got {other:?}"),
    }
}

/// Segment files on disk, and those the MANIFEST names; asserts there is no temporary file left.
fn segment_files(dir: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(dir.join("segments")).expect("segments") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(!name.ends_with(".tmp"), "temporary file left: {name}");
        on_disk.insert(name);
    }
    assert!(!dir.join("MANIFEST.tmp").exists(), "MANIFEST.tmp left");
    let manifest = Manifest::load(&dir.join("MANIFEST")).expect("manifest");
    let named = manifest
        .segments
        .iter()
        .map(|s| crate::manifest::segment_file_name(s.id))
        .collect();
    (on_disk, named)
}

/// The MANIFEST names exactly the segment files on disk (none half-written: open verifies them).
fn assert_manifest_matches_disk(dir: &Path) {
    let (on_disk, named) = segment_files(dir);
    assert_eq!(on_disk, named);
}

/// Reopens the data directory: every acknowledged point is there and the WAL had no torn tail.
fn reopen_and_check(dir: &Path, expected: &[i64]) {
    let engine = Engine::open(config(dir)).expect("reopen");
    let report = engine.recovery_report();
    assert!(report.wal_warnings.is_empty(), "{:?}", report.wal_warnings);
    assert!(
        report.segment_errors.is_empty(),
        "{:?}",
        report.segment_errors
    );
    assert_eq!(stored(&engine), expected);
    drop(engine);
    assert_manifest_matches_disk(dir);
}

#[test]
fn enospc_at_wal_append_refuses_writes_then_heals_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    write_ok(&engine, 0..10);
    faults::inject(&dir.path().join("wal"), Op::Write, ENOSPC);
    // The write in flight when the disk filled: refused, its record cut off the WAL file and
    // queued again (its outcome is unknown to the client, like a timeout).
    assert_no_space(engine.write(&point(10)));
    // Later writes are refused before they touch the catalog or the memtable.
    assert_no_space(engine.write(&point(11)));
    assert_no_space(engine.write(&point(12)));
    assert_eq!(engine.stats().writes_refused_no_space, 3);
    faults::clear(dir.path());
    // Space is back: the next write heals the WAL (the queued record first), no restart.
    write_ok(&engine, 13..20);
    let mut expected: Vec<i64> = (0..20).filter(|t| *t != 11 && *t != 12).collect();
    expected.sort();
    assert_eq!(stored(&engine), expected);
    drop(engine);
    reopen_and_check(dir.path(), &expected);
}

#[test]
fn eio_at_wal_fdatasync_is_an_io_fault_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    write_ok(&engine, 0..5);
    faults::inject(&dir.path().join("wal"), Op::Sync, EIO);
    assert_io_fault(engine.write(&point(5)), "Input/output error");
    assert_io_fault(engine.write(&point(6)), "I/O error");
    assert_eq!(engine.stats().writes_refused_io, 2);
    faults::clear(dir.path());
    write_ok(&engine, 7..9);
    let expected = vec![0, 1, 2, 3, 4, 5, 7, 8];
    assert_eq!(stored(&engine), expected);
    drop(engine);
    reopen_and_check(dir.path(), &expected);
}

#[test]
fn a_wal_append_torn_by_enospc_is_cut_back_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    write_ok(&engine, 0..3);
    let wal_len = || -> u64 {
        std::fs::read_dir(dir.path().join("wal"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let before = wal_len();
    // The injected write puts half of the record on disk, then fails.
    faults::inject(&dir.path().join("wal"), Op::Write, ENOSPC);
    assert_no_space(engine.write(&point(3)));
    assert_eq!(wal_len(), before, "the torn half-record was cut off");
    faults::clear(dir.path());
    write_ok(&engine, 4..6);
    drop(engine);
    // Open replays every record with no torn tail and no damage in the middle.
    reopen_and_check(dir.path(), &[0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_flush_failing_on_a_full_disk_leaves_no_segment_and_is_retried() {
    for (op, target) in [
        (Op::Write, "segments"),
        (Op::Create, "segments"),
        (Op::Sync, "segments"),
        (Op::Rename, "MANIFEST"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(config(dir.path())).unwrap();
        write_ok(&engine, 0..10);
        engine.flush().unwrap();
        write_ok(&engine, 10..20);
        faults::inject(&dir.path().join(target), op, ENOSPC);
        let err = engine.flush().expect_err("flush on a full disk");
        assert_eq!(err.kind(), ErrorKind::OutOfSpace, "{op:?} {target}: {err}");
        // Nothing half-written is named, nothing unpublished is left holding space.
        assert_manifest_matches_disk(dir.path());
        // The WAL is on the same (full) disk in reality, but here only flush fails: writes
        // go on, acknowledged by the WAL.
        write_ok(&engine, 20..25);
        faults::clear(dir.path());
        engine.flush().unwrap();
        assert_manifest_matches_disk(dir.path());
        let expected: Vec<i64> = (0..25).collect();
        assert_eq!(stored(&engine), expected, "{op:?} {target}");
        drop(engine);
        reopen_and_check(dir.path(), &expected);
    }
}

#[test]
fn emfile_at_wal_rotation_fails_the_flush_but_not_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    write_ok(&engine, 0..10);
    faults::inject(&dir.path().join("wal"), Op::Create, EMFILE);
    let err = engine.flush().expect_err("rotation cannot create its file");
    assert!(matches!(err, StorageError::IoFault { .. }), "{err:?}");
    assert!(err.to_string().contains("Too many open files"), "{err}");
    // The current WAL file is intact: the next write retries (nothing pending) and goes on.
    write_ok(&engine, 10..15);
    faults::clear(dir.path());
    engine.flush().unwrap();
    let expected: Vec<i64> = (0..15).collect();
    assert_eq!(stored(&engine), expected);
    drop(engine);
    reopen_and_check(dir.path(), &expected);
}

#[test]
fn a_compaction_failing_on_a_full_disk_keeps_its_inputs_and_is_retried() {
    for (op, target, errno) in [
        (Op::Write, "segments", ENOSPC),
        (Op::Sync, "segments", EIO),
        (Op::Rename, "MANIFEST", ENOSPC),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(config(dir.path())).unwrap();
        for round in 0..3 {
            write_ok(&engine, round * 10..round * 10 + 10);
            engine.flush().unwrap();
        }
        let (before, _) = segment_files(dir.path());
        assert_eq!(before.len(), 3);
        faults::inject(&dir.path().join(target), op, errno);
        let err = engine.compact().expect_err("compaction on a failing disk");
        assert!(
            matches!(err.kind(), ErrorKind::OutOfSpace | ErrorKind::Internal),
            "{err}"
        );
        let (after, named) = segment_files(dir.path());
        assert_eq!(after, before, "{op:?}: inputs kept, no output left");
        assert_eq!(named, before);
        faults::clear(dir.path());
        assert_eq!(engine.compact().unwrap(), 1);
        let expected: Vec<i64> = (0..30).collect();
        assert_eq!(stored(&engine), expected);
        drop(engine);
        reopen_and_check(dir.path(), &expected);
        assert_eq!(segment_files(dir.path()).0.len(), 1);
    }
}

/// Every fsync of a flush and of a compaction failing in turn (EIO), the directory fsync that
/// makes a MANIFEST replace durable included: the MANIFEST in place names exactly the segment
/// files left on disk, and every acknowledged point is there after a restart.
#[test]
fn each_failing_fsync_of_flush_and_compaction_leaves_the_manifest_naming_what_is_on_disk() {
    for compaction in [false, true] {
        for after in 0.. {
            let dir = tempfile::tempdir().unwrap();
            let engine = Engine::open(config(dir.path())).unwrap();
            let rounds = if compaction { 3 } else { 1 };
            for round in 0..rounds {
                write_ok(&engine, round * 10..round * 10 + 10);
                if compaction {
                    engine.flush().unwrap();
                }
            }
            faults::inject_after(dir.path(), Op::Sync, EIO, after);
            let result = match compaction {
                true => engine.compact().map(|_| ()),
                false => engine.flush(),
            };
            faults::clear(dir.path());
            assert_manifest_matches_disk(dir.path());
            drop(engine);
            let expected: Vec<i64> = (0..rounds * 10).collect();
            reopen_and_check(dir.path(), &expected);
            if result.is_ok() {
                assert!(after > 2, "the fault must have hit some fsync");
                break;
            }
            assert!(
                after < 50,
                "compaction {compaction}: still failing after {after} fsyncs"
            );
        }
    }
}

#[test]
fn a_cold_move_whose_local_manifest_save_fails_finishes_later_without_a_second_copy() {
    use crate::lifecycle::LifecyclePolicy;
    const DAY: i64 = 86_400_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.cold_store = Some(format!("file://{}", cold.path().display()));
    let engine = Engine::open(c.clone()).unwrap();
    let old = (super::policy::now_ns() - 10 * DAY).div_euclid(DAY) * DAY;
    write_ok(&engine, old..old + 5);
    engine.flush().unwrap();
    let before = stored(&engine);
    let policy = LifecyclePolicy {
        hot: Some(3 * DAY),
        ..LifecyclePolicy::default()
    };
    engine.set_lifecycle("db", None, Some(policy)).unwrap();
    faults::inject(&dir.path().join("MANIFEST"), Op::Rename, ENOSPC);
    let run = engine.run_lifecycle().unwrap();
    assert!(!run.errors.is_empty(), "{run:?}");
    assert!(run.moved.is_empty(), "{run:?}");
    assert_eq!(
        stored(&engine),
        before,
        "rows still read once, from the hot segment"
    );
    faults::clear(dir.path());
    let run = engine.run_lifecycle().unwrap();
    assert!(run.errors.is_empty(), "{run:?}");
    // Finished while reconciling the failed run, before any move is planned.
    assert!(run.moved.is_empty(), "{run:?}");
    assert!(
        run.cold_notes
            .iter()
            .any(|n| n.contains("finished an interrupted cold move")),
        "{run:?}"
    );
    assert!(segment_files(dir.path()).0.is_empty());
    assert_eq!(stored(&engine), before);
    let parquet = walk(cold.path())
        .into_iter()
        .filter(|p| p.ends_with(".parquet"))
        .count();
    assert_eq!(
        parquet, 1,
        "the committed object was reused, not uploaded twice"
    );
    drop(engine);
    let engine = Engine::open(c).unwrap();
    assert_eq!(stored(&engine), before);
    assert!(segment_files(dir.path()).0.is_empty());
}

fn walk(d: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.to_string_lossy().into_owned());
        }
    }
    out
}

/// Issue 14, defect 7: the catalog does not change for a write the WAL refuses: a new stream,
/// field or series in a refused write leaves no trace (no stream, no device, no series id used).
#[test]
fn a_write_refused_by_the_wal_adds_nothing_to_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    write_ok(&engine, 0..2);
    faults::inject(&dir.path().join("wal"), Op::Write, ENOSPC);
    assert_no_space(engine.write(&point(2)));
    let version = engine.catalog_version();
    let mut other = point(3);
    other.tables[0].stream = "never".into();
    other.tables[0].series[0].device = "ghost".into();
    assert_no_space(engine.write(&other));
    assert_eq!(engine.streams("db"), ["m"]);
    assert!(engine.devices("db", "m").iter().all(|d| d == "d1"));
    assert_eq!(engine.catalog_version(), version);
    faults::clear(dir.path());
    write_ok(&engine, 4..5);
    assert_eq!(engine.streams("db"), ["m"]);
}

/// When flush cannot write segments on a full disk, the memtables fill up and writes over the
/// memory bound are refused as `NoSpace` (507), not as a generic overload; they resume once the
/// disk has space again.
#[test]
fn writes_over_the_memory_bound_are_refused_as_no_space_while_flush_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.memtable_bytes = 16 << 10;
    let engine = Engine::open(c).unwrap();
    faults::inject(&dir.path().join("segments"), Op::Write, ENOSPC);
    let mut t = 0;
    let err = loop {
        match engine.write(&point(t)) {
            Ok(_) => t += 1,
            Err(e) => break e,
        }
        assert!(t < 1_000_000, "never refused");
    };
    assert!(matches!(err, StorageError::NoSpace { .. }), "{err:?}");
    assert!(err.to_string().contains("flush failed"), "{err}");
    assert_eq!(engine.stats().writes_refused_no_space, 1);
    assert_manifest_matches_disk(dir.path());
    faults::clear(dir.path());
    engine
        .write(&point(t + 1))
        .expect("flush succeeds, the write is taken");
    let mut expected: Vec<i64> = (0..t).collect();
    expected.push(t + 1);
    assert_eq!(stored(&engine), expected);
}
