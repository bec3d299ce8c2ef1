//! Recovery refuses instead of destroying (issue 14, item 4), through the engine's public API:
//! each test damages a data directory the way a bad day does (lost MANIFEST, lost catalog, a
//! flipped byte in the middle of a WAL file, a WAL record that cannot be applied), checks that a
//! normal open refuses with a message naming the file and the fix and changes nothing, then that a
//! forced recovery (`strata repair`) salvages every record that verifies and sets the damaged files
//! aside, and that the directory then opens normally.

use std::path::{Path, PathBuf};

use crate::common::{all, batch, flatten};
use strata_storage::wal::format::scan_file;
use strata_storage::wal::{Durability, Wal, WalOptions, parse_file_name};
use strata_storage::{Engine, EngineConfig, StorageError, Value};

fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.background = false;
    c
}

fn forced(dir: &Path) -> EngineConfig {
    let mut c = config(dir);
    c.force_recovery = true;
    c
}

/// Rows `from..to` of device `d1`, value = timestamp.
fn rows(from: i64, to: i64) -> Vec<crate::common::Row> {
    (from..to)
        .map(|t| {
            (
                "d1".to_string(),
                t,
                vec![("v".to_string(), Value::Float(t as f64))],
            )
        })
        .collect()
}

fn times(e: &Engine) -> Vec<i64> {
    flatten(&e.scan(&all("db", "m")).expect("scan"))
        .into_iter()
        .map(|r| r.1)
        .collect()
}

fn refusal(config: EngineConfig) -> (PathBuf, String, String) {
    match Engine::open(config) {
        Err(StorageError::Refused { path, problem, fix }) => (path, problem, fix),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the directory opened"),
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Every file under `DATA/damaged/`.
fn set_aside(dir: &Path) -> Vec<PathBuf> {
    files_in(&dir.join("damaged"))
        .iter()
        .flat_map(|d| files_in(d))
        .collect()
}

fn wal_files(dir: &Path) -> Vec<PathBuf> {
    files_in(&dir.join("wal"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_file_name)
                .is_some()
        })
        .collect()
}

/// Regression: a missing MANIFEST was taken for a new directory and every segment deleted as an
/// orphan.
#[test]
fn a_missing_manifest_with_segments_refuses_and_repair_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(config(dir.path())).unwrap();
        e.write(&batch("db", "m", &rows(0, 100))).unwrap();
        e.flush().unwrap();
        e.write(&batch("db", "m", &rows(100, 150))).unwrap();
    }
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    let segments = files_in(&dir.path().join("segments"));
    assert_eq!(segments.len(), 1);

    let (path, problem, fix) = refusal(config(dir.path()));
    assert_eq!(path, dir.path().join("MANIFEST"));
    assert!(
        problem.contains("MANIFEST is missing") && problem.contains("1 segment files"),
        "{problem}"
    );
    assert!(fix.contains("strata repair --data-dir"), "{fix}");
    assert_eq!(
        files_in(&dir.path().join("segments")),
        segments,
        "segments touched"
    );

    {
        let e = Engine::open(forced(dir.path())).unwrap();
        assert_eq!(times(&e), (0..150).collect::<Vec<_>>());
        let report = e.recovery_report();
        assert!(
            report
                .repairs
                .iter()
                .any(|r| r.contains("rebuilt the MANIFEST")),
            "{report:?}"
        );
    }
    let e = Engine::open(config(dir.path())).unwrap();
    assert_eq!(times(&e), (0..150).collect::<Vec<_>>());
}

#[test]
fn a_damaged_manifest_refuses_and_repair_sets_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(config(dir.path())).unwrap();
        e.write(&batch("db", "m", &rows(0, 10))).unwrap();
        e.flush().unwrap();
    }
    let manifest = dir.path().join("MANIFEST");
    let mut bytes = std::fs::read(&manifest).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    std::fs::write(&manifest, &bytes).unwrap();
    let (path, problem, _) = refusal(config(dir.path()));
    assert_eq!(path, manifest);
    assert!(problem.contains("checksum"), "{problem}");
    let e = Engine::open(forced(dir.path())).unwrap();
    assert_eq!(times(&e), (0..10).collect::<Vec<_>>());
    let aside = set_aside(dir.path());
    assert!(aside.iter().any(|p| p.ends_with("MANIFEST")), "{aside:?}");
    assert_eq!(
        std::fs::read(aside.iter().find(|p| p.ends_with("MANIFEST")).unwrap()).unwrap(),
        bytes
    );
}

/// Regression: a missing catalog restarted series ids at 0, mixing series in the segments.
#[test]
fn a_missing_catalog_with_segments_refuses_even_when_forced() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(config(dir.path())).unwrap();
        e.write(&batch("db", "m", &rows(0, 10))).unwrap();
        e.flush().unwrap();
    }
    std::fs::remove_file(dir.path().join("catalog.log")).unwrap();
    for cfg in [config(dir.path()), forced(dir.path())] {
        let (path, problem, fix) = refusal(cfg);
        assert_eq!(path, dir.path().join("catalog.log"));
        assert!(problem.contains("catalog is missing"), "{problem}");
        assert!(fix.contains("backup"), "{fix}");
    }
    assert!(!dir.path().join("catalog.log").exists());
}

/// A flipped bit in the first frame's length makes the rest of catalog.log look like a torn
/// last append; cutting it would leave a catalog without the series the segments hold (and give
/// their ids to new series). The open refuses, forced or not, and the file stays as it was.
#[test]
fn a_catalog_log_cut_short_by_a_damaged_frame_length_refuses() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(config(dir.path())).unwrap();
        let mut two = rows(0, 10);
        two.extend(
            rows(10, 20)
                .into_iter()
                .map(|(_, t, v)| ("d2".to_string(), t, v)),
        );
        e.write(&batch("db", "m", &two)).unwrap();
        e.flush().unwrap();
    }
    let log = dir.path().join("catalog.log");
    let mut bytes = std::fs::read(&log).unwrap();
    // Header (16 bytes), then the first frame: u32 length, u32 CRC, payload.
    bytes[19] ^= 0x80;
    std::fs::write(&log, &bytes).unwrap();
    for cfg in [config(dir.path()), forced(dir.path())] {
        let (path, problem, fix) = refusal(cfg);
        assert_eq!(path, log);
        assert!(problem.contains("records were lost"), "{problem}");
        assert!(fix.contains("backup"), "{fix}");
    }
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "nothing cut from the file"
    );
    // Repaired (the bit flipped back), the directory opens with both devices.
    bytes[19] ^= 0x80;
    std::fs::write(&log, &bytes).unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    assert_eq!(flatten(&e.scan(&all("db", "m")).unwrap()).len(), 20);
}

#[test]
fn new_and_never_flushed_directories_still_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(config(dir.path())).unwrap();
        assert!(
            dir.path().join("MANIFEST").exists(),
            "a new directory gets its MANIFEST"
        );
        e.write(&batch("db", "m", &rows(0, 10))).unwrap();
    }
    {
        let e = Engine::open(config(dir.path())).unwrap();
        e.write(&batch("db", "m", &rows(10, 20))).unwrap();
    }
    // As an older version left it: no MANIFEST, but the WAL complete from its first file.
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    assert_eq!(times(&e), (0..20).collect::<Vec<_>>());
}

/// Regression: damage in the middle of a WAL file truncated the intact records after it.
#[test]
fn wal_damage_in_the_middle_refuses_and_repair_keeps_the_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(config(dir.path())).unwrap();
        for k in 0..3 {
            e.write(&batch("db", "m", &rows(k * 10, k * 10 + 10)))
                .unwrap();
        }
    }
    let wal = wal_files(dir.path());
    let file = wal
        .iter()
        .find(|p| std::fs::metadata(p).unwrap().len() > 32)
        .unwrap()
        .clone();
    let mut bytes = std::fs::read(&file).unwrap();
    let second = {
        let scan = scan_file(&bytes, None, 0);
        assert_eq!(scan.records.len(), 3);
        scan.records[1].offset
    };
    bytes[second as usize + 30] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();

    let (path, problem, fix) = refusal(config(dir.path()));
    assert_eq!(path, file);
    assert!(
        problem.contains(&format!("byte offset {second}")),
        "{problem}"
    );
    assert!(problem.contains("intact records follow"), "{problem}");
    assert!(fix.contains("strata repair"), "{fix}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "the WAL file was changed"
    );

    {
        let e = Engine::open(forced(dir.path())).unwrap();
        let mut expected: Vec<i64> = (0..10).collect();
        expected.extend(20..30);
        assert_eq!(times(&e), expected);
    }
    let aside = set_aside(dir.path());
    assert!(
        aside.iter().any(|p| std::fs::read(p).unwrap() == bytes),
        "{aside:?}"
    );
    assert!(
        !file.exists(),
        "the salvaged file is released after the repair's flush"
    );
    let e = Engine::open(config(dir.path())).unwrap();
    assert_eq!(times(&e).len(), 20);
    assert!(e.recovery_report().wal_warnings.is_empty());
}

/// Regression: a WAL record that failed to apply was skipped with a warning and its file deleted
/// at the next flush.
#[test]
fn a_wal_record_that_cannot_be_applied_refuses_and_repair_skips_it_keeping_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(config(dir.path())).unwrap();
        e.write(&batch("db", "m", &rows(0, 10))).unwrap();
    }
    {
        let opts = WalOptions {
            dir: dir.path().join("wal"),
            durability: Durability::Sync,
            max_file_bytes: 1 << 20,
        };
        let (wal, _) = Wal::open(opts, 0).unwrap();
        let seq = wal.append(b"not a write batch").unwrap();
        wal.sync_to(seq).unwrap();
    }
    let before: Vec<(PathBuf, Vec<u8>)> = wal_files(dir.path())
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let (path, problem, _) = refusal(config(dir.path()));
    assert!(problem.contains("cannot be applied"), "{problem}");
    let bad = before
        .iter()
        .find(|(p, _)| *p == path)
        .expect("names a WAL file")
        .1
        .clone();
    for (p, b) in &before {
        assert_eq!(&std::fs::read(p).unwrap(), b, "{} changed", p.display());
    }
    {
        let e = Engine::open(forced(dir.path())).unwrap();
        assert_eq!(times(&e), (0..10).collect::<Vec<_>>());
        let report = e.recovery_report();
        assert!(
            report.repairs.iter().any(|r| r.contains("skipped it")),
            "{report:?}"
        );
    }
    assert!(
        set_aside(dir.path())
            .iter()
            .any(|p| std::fs::read(p).unwrap() == bad)
    );
    let e = Engine::open(config(dir.path())).unwrap();
    assert_eq!(times(&e), (0..10).collect::<Vec<_>>());
}
