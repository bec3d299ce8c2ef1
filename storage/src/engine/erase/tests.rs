//! Erase tests: hidden at once, physically gone after maintenance, durable across reopen, partial
//! ranges, other devices and databases untouched, later writes kept.

use super::*;
use crate::{
    Column, Engine, EngineConfig, LatestRequest, ScanRequest, SeriesKey, TableWrite, Value,
    WriteBatch,
};

const MARKER: &str = "ERASE-ME-7f3a9c";

/// Rows of `device` at `times` in `db`.`m`: `v` = the time, `note` = `note` (a string, stored
/// verbatim by the string codecs, so its bytes can be searched for on disk).
fn rows(db: &str, device: &str, times: &[i64], note: &str) -> WriteBatch {
    let mut v = Column::new("v", FieldType::Float);
    let mut n = Column::new("note", FieldType::String);
    for &t in times {
        v.data.push_value(&Value::Float(t as f64));
        v.valid.push(true);
        n.data.push_value(&Value::String(note.into()));
        n.valid.push(true);
    }
    WriteBatch {
        database: db.into(),
        tables: vec![TableWrite {
            stream: "m".into(),
            series: vec![SeriesKey {
                device: device.into(),
                tags: vec![],
            }],
            row_series: vec![0; times.len()],
            times: times.to_vec(),
            columns: vec![v, n],
        }],
    }
}

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir);
    cfg.background = false;
    cfg
}

/// (device, time) of every stored point of `db`.`m`.
fn points(engine: &Engine, db: &str) -> Vec<(String, i64)> {
    let req = ScanRequest {
        database: db.into(),
        stream: "m".into(),
        device: None,
        tags: vec![],
        start: i64::MIN,
        end: i64::MAX,
        fields: None,
    };
    let mut out: Vec<(String, i64)> = engine
        .scan(&req)
        .unwrap()
        .into_iter()
        .flat_map(|b| {
            let d = b.key.device.clone();
            b.times.into_iter().map(move |t| (d.clone(), t))
        })
        .collect();
    out.sort();
    out
}

fn latest_time(engine: &Engine, db: &str, device: &str) -> Option<i64> {
    let req = LatestRequest {
        database: db.into(),
        stream: "m".into(),
        device: Some(device.into()),
        tags: vec![],
    };
    let (_, series) = engine.latest(&req).unwrap();
    series
        .iter()
        .flat_map(|s| s.values.iter().flatten().map(|v| v.time))
        .max()
}

/// Files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            out.push(path);
        }
    }
    out
}

fn erase_all(device: &str) -> EraseRequest {
    EraseRequest {
        database: None,
        device: device.into(),
        start: i64::MIN,
        end: i64::MAX,
    }
}

#[test]
fn erased_rows_vanish_at_once_and_from_disk_after_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    // Segments (two flushes, so a compaction would have work) and memtable rows.
    engine
        .write(&rows("db", "victim", &[1, 2, 3], MARKER))
        .unwrap();
    engine.write(&rows("db", "other", &[1, 2], "keep")).unwrap();
    engine.flush().unwrap();
    engine
        .write(&rows("db", "victim", &[4, 5], MARKER))
        .unwrap();
    engine.flush().unwrap();
    engine.write(&rows("db", "victim", &[6], MARKER)).unwrap();
    engine.write(&rows("db", "other", &[3], "keep")).unwrap();
    assert_eq!(latest_time(&engine, "db", "victim"), Some(6));

    let report = engine.erase_device(&erase_all("victim")).unwrap();
    assert_eq!(report.series, 1);
    let expect = vec![
        ("other".to_string(), 1),
        ("other".into(), 2),
        ("other".into(), 3),
    ];
    assert_eq!(points(&engine, "db"), expect);
    assert_eq!(latest_time(&engine, "db", "victim"), None);
    // Before maintenance the older segments still hold the marker; after it nothing does.
    assert!(!files_containing(dir.path(), MARKER.as_bytes()).is_empty());
    engine.compact().unwrap();
    assert_eq!(
        files_containing(dir.path(), MARKER.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(!files_containing(dir.path(), b"keep").is_empty());
    assert_eq!(points(&engine, "db"), expect);
    // Every segment is rewritten: the tombstone is retired.
    assert!(engine.inner.read_state().unwrap().tombstones.is_empty());
    engine.shutdown().unwrap();
    drop(engine);
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(points(&engine, "db"), expect);
    assert_eq!(latest_time(&engine, "db", "victim"), None);
}

#[test]
fn erase_survives_reopen_before_maintenance_and_later_writes_stay() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine
        .write(&rows("db", "victim", &[10, 20], MARKER))
        .unwrap();
    engine.flush().unwrap();
    engine.write(&rows("db", "victim", &[30], MARKER)).unwrap();
    engine.erase_device(&erase_all("victim")).unwrap();
    // Written after the erase, inside its range: kept.
    engine.write(&rows("db", "victim", &[15], "after")).unwrap();
    let expect = vec![("victim".to_string(), 15)];
    assert_eq!(points(&engine, "db"), expect);
    drop(engine); // no shutdown flush: the later write comes back from the WAL
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(points(&engine, "db"), expect);
    assert_eq!(latest_time(&engine, "db", "victim"), Some(15));
    engine.compact().unwrap();
    assert_eq!(points(&engine, "db"), expect);
    engine.flush().unwrap();
    engine.compact().unwrap();
    assert_eq!(points(&engine, "db"), expect);
    assert!(files_containing(dir.path(), MARKER.as_bytes()).is_empty());
}

#[test]
fn partial_range_and_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine
        .write(&rows("db", "d", &[1, 2, 3, 4, 5], "x"))
        .unwrap();
    engine
        .write(&rows("other", "d", &[1, 2, 3, 4, 5], "x"))
        .unwrap();
    engine.flush().unwrap();
    let req = EraseRequest {
        database: Some("db".into()),
        device: "d".into(),
        start: 3,
        end: i64::MAX,
    };
    engine.erase_device(&req).unwrap();
    let d = |ts: &[i64]| ts.iter().map(|&t| ("d".to_string(), t)).collect::<Vec<_>>();
    assert_eq!(points(&engine, "db"), d(&[1, 2]));
    assert_eq!(points(&engine, "other"), d(&[1, 2, 3, 4, 5]));
    // The cache falls back to the newest value left.
    assert_eq!(latest_time(&engine, "db", "d"), Some(2));
    assert_eq!(latest_time(&engine, "other", "d"), Some(5));
    engine.compact().unwrap();
    assert_eq!(points(&engine, "db"), d(&[1, 2]));
    drop(engine);
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(points(&engine, "db"), d(&[1, 2]));
    assert_eq!(latest_time(&engine, "db", "d"), Some(2));
}

#[test]
fn empty_range_and_empty_device_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let mut req = erase_all("");
    assert!(engine.erase_device(&req).is_err());
    req.device = "d".into();
    req.start = 5;
    req.end = 5;
    let err = engine.erase_device(&req).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn an_erase_whose_flush_never_committed_is_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let engine = std::sync::Arc::new(Engine::open(config(dir.path())).unwrap());
    engine.write(&rows("db", "d", &[1, 2], "x")).unwrap();
    // The erase first flushes what is there; a write lands meanwhile, so the erase freezes it and
    // flushes again. That second flush crashes after the tombstone was saved, before its MANIFEST.
    let (writer, root) = (engine.clone(), dir.path().to_path_buf());
    crate::fsutil::on_step(dir.path(), "flush-segments-written", move || {
        writer.write(&rows("db", "d", &[3], "x")).unwrap();
        crate::fsutil::on_step(&root, "flush-segments-written", || {
            panic!("simulated crash during the erase's flush")
        });
    });
    let erased = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.erase_device(&erase_all("d"))
    }));
    assert!(erased.is_err());
    std::mem::forget(engine); // a crash: no shutdown, locks poisoned, nothing flushed
    let path = dir.path().join(crate::engine::tombstone::FILE_NAME);
    assert!(path.exists());
    // A second process would find the lock held by this one; drop it by hand as a crash would.
    let _ = std::fs::remove_file(dir.path().join("LOCK"));
    let engine = Engine::open(config(dir.path())).unwrap();
    let d = |ts: &[i64]| ts.iter().map(|&t| ("d".to_string(), t)).collect::<Vec<_>>();
    assert_eq!(points(&engine, "db"), d(&[1, 2, 3]));
    assert!(engine.inner.read_state().unwrap().tombstones.is_empty());
}

#[test]
fn rollup_streams_erase_whole_windows() {
    let t = Tombstone {
        id: 1,
        database: None,
        device: "d".into(),
        start: 90,
        end: 250,
        mark: 1,
        wal_cut: 1,
    };
    assert_eq!(t.range_in("m"), (90, 250));
    // 100 ns windows: [0, 300) holds every window the range cuts into.
    let every = 100;
    let name = crate::rollup::rollup_stream_name("m", every);
    assert_eq!(t.range_in(&name), (0, 300));
    let aligned = Tombstone {
        start: 100,
        end: 200,
        ..t.clone()
    };
    assert_eq!(aligned.range_in(&name), (100, 200));
    let open = Tombstone {
        start: i64::MIN,
        end: i64::MAX,
        ..t
    };
    assert_eq!(open.range_in(&name), (i64::MIN, i64::MAX));
}
