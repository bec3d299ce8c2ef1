//! Engine behaviour through its public API: write/read, last-write-wins, restart, flush and
//! compaction, schema conflicts, and damage reporting for corrupt segments and WAL tails.

use crate::common::{all, batch, flatten};
use strata_storage::{Engine, EngineConfig, FieldType, ScanRequest, StorageError, Value};

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.background = false;
    c
}

fn f(name: &str, v: f64) -> (String, Value) {
    (name.to_string(), Value::Float(v))
}

#[test]
fn write_read_restart_flush_compact() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<_> = (0..1000)
        .map(|i| ("d1".to_string(), i * 10, vec![f("v", i as f64 / 10.0)]))
        .collect();
    let expected;
    {
        let e = Engine::open(config(dir.path())).unwrap();
        e.write(&batch("db", "m", &rows)).unwrap();
        expected = flatten(&e.scan(&all("db", "m")).unwrap());
        assert_eq!(expected.len(), 1000);
    }
    let e = Engine::open(config(dir.path())).unwrap();
    assert_eq!(e.recovery_report().wal_records, 1);
    assert_eq!(flatten(&e.scan(&all("db", "m")).unwrap()), expected);
    e.flush().unwrap();
    e.write(&batch("db", "m", &[("d1".into(), 50, vec![f("v", 99.0)])]))
        .unwrap();
    e.flush().unwrap();
    assert_eq!(e.stats().segments, 2);
    assert_eq!(e.compact().unwrap(), 1);
    assert_eq!(e.stats().segments, 1);
    e.shutdown().unwrap();
    drop(e);
    let e = Engine::open(config(dir.path())).unwrap();
    let got = flatten(&e.scan(&all("db", "m")).unwrap());
    assert_eq!(got.len(), 1000);
    assert_eq!(
        got[0],
        ("d1".to_string(), 0, "v".to_string(), Value::Float(0.0))
    );
    let five = got.iter().find(|r| r.1 == 50).unwrap();
    assert_eq!(
        five.3,
        Value::Float(99.0),
        "the later write wins after flush and compaction"
    );
    assert!(e.recovery_report().wal_warnings.is_empty());
}

#[test]
fn range_device_and_field_filters() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    let rows: Vec<_> = (0..100)
        .flat_map(|i| {
            ["a", "b"].map(|d| {
                (
                    d.to_string(),
                    i,
                    vec![f("x", i as f64), ("y".to_string(), Value::Integer(i))],
                )
            })
        })
        .collect();
    e.write(&batch("db", "m", &rows)).unwrap();
    e.flush().unwrap();
    let req = ScanRequest {
        device: Some("b".into()),
        start: 10,
        end: 20,
        fields: Some(vec!["y".into()]),
        ..all("db", "m")
    };
    let out = e.scan(&req).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].key.device, "b");
    assert_eq!(out[0].times, (10..20).collect::<Vec<_>>());
    assert_eq!(out[0].columns.len(), 1);
    assert_eq!(out[0].columns[0].name, "y");
    assert!(e.scan(&all("db", "nope")).unwrap().is_empty());
    assert!(e.scan(&all("other", "m")).unwrap().is_empty());
}

#[test]
fn type_conflict_names_stream_field_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    e.write(&batch("db", "m", &[("d".into(), 1, vec![f("speed", 1.0)])]))
        .unwrap();
    let err = e
        .write(&batch(
            "db",
            "m",
            &[("d".into(), 2, vec![("speed".into(), Value::Integer(1))])],
        ))
        .unwrap_err();
    assert!(matches!(
        err,
        StorageError::SchemaConflict {
            existing: FieldType::Float,
            requested: FieldType::Integer,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("'m'")
            && msg.contains("'speed'")
            && msg.contains("float")
            && msg.contains("integer"),
        "{msg}"
    );
    assert_eq!(
        flatten(&e.scan(&all("db", "m")).unwrap()).len(),
        1,
        "the rejected write stored nothing"
    );
}

#[test]
fn second_open_of_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _e = Engine::open(config(dir.path())).unwrap();
    let err = Engine::open(config(dir.path())).unwrap_err();
    assert!(
        err.to_string().contains("in use by another Strata process"),
        "{err}"
    );
}

#[test]
fn corrupt_segment_chunk_is_reported_and_never_returns_wrong_values() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(config(dir.path())).unwrap();
        let rows: Vec<_> = (0..5000)
            .map(|i| ("d".to_string(), i, vec![f("v", (i % 97) as f64 * 1.25)]))
            .collect();
        e.write(&batch("db", "m", &rows)).unwrap();
        e.shutdown().unwrap();
    }
    let seg = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[40] ^= 0xFF; // inside the first chunk (header is 16 bytes)
    std::fs::write(&seg, &bytes).unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    let report = e.recovery_report();
    assert_eq!(report.segment_errors.len(), 1, "{report:?}");
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(report.segment_errors[0].contains(&name), "{report:?}");
    let err = e.scan(&all("db", "m")).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&name));
}

#[test]
fn corrupt_segment_footer_fails_reads_of_its_range_only() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(config(dir.path())).unwrap();
        e.write(&batch("db", "a", &[("d".into(), 1, vec![f("v", 1.0)])]))
            .unwrap();
        e.write(&batch("db", "b", &[("d".into(), 1, vec![f("v", 2.0)])]))
            .unwrap();
        e.shutdown().unwrap();
    }
    let mut segs: Vec<_> = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let len = std::fs::metadata(&segs[0]).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[0])
        .unwrap();
    f.set_len(len - 3).unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    assert_eq!(e.recovery_report().segment_errors.len(), 1);
    assert!(e.scan(&all("db", "a")).is_err());
    assert_eq!(flatten(&e.scan(&all("db", "b")).unwrap()).len(), 1);
}

#[test]
fn torn_wal_tail_keeps_earlier_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(config(dir.path())).unwrap();
        for i in 0..10 {
            e.write(&batch(
                "db",
                "m",
                &[("d".into(), i, vec![f("v", i as f64)])],
            ))
            .unwrap();
        }
    }
    let mut wals: Vec<_> = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    wals.sort();
    let newest = wals
        .iter()
        .rev()
        .find(|p| std::fs::metadata(p).unwrap().len() > 64)
        .unwrap();
    let len = std::fs::metadata(newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(newest)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    let report = e.recovery_report();
    assert_eq!(report.wal_records, 9);
    assert_eq!(report.wal_warnings.len(), 1, "{report:?}");
    let got = flatten(&e.scan(&all("db", "m")).unwrap());
    assert_eq!(
        got.iter().map(|r| r.1).collect::<Vec<_>>(),
        (0..9).collect::<Vec<_>>()
    );
}

/// Waits up to 10 s for `done`, checking every 20 ms.
fn eventually(done: impl Fn() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    done()
}

#[test]
fn a_pause_in_writes_flushes_a_memtable_worth_a_segment_and_retires_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = EngineConfig::new(dir.path());
    c.background_interval = std::time::Duration::from_millis(20);
    c.flush_idle = std::time::Duration::from_millis(300);
    c.memtable_bytes = 64 << 20; // 1/64 of it: 1 MiB
    let e = Engine::open(c).unwrap();
    // A few rows: far under 1 MiB, so a pause does not flush them (flush_age would, later).
    let few: Vec<_> = (0..10)
        .map(|i| ("d0".to_string(), i, vec![f("v", i as f64)]))
        .collect();
    e.write(&batch("db", "m", &few)).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(e.stats().flushes, 0, "a small memtable stays");
    // A burst over 1 MiB, then a pause: flushed within a few maintenance passes.
    let rows: Vec<_> = (0..100_000)
        .map(|i| (format!("d{}", i % 50), 100 + i, vec![f("v", i as f64)]))
        .collect();
    e.write(&batch("db", "m", &rows)).unwrap();
    assert!(e.stats().memtable_bytes >= 1 << 20, "{:?}", e.stats());
    let before = e.stats().wal_bytes;
    assert!(
        eventually(|| e.stats().flushes == 1 && e.stats().memtable_bytes == 0),
        "{:?}",
        e.stats()
    );
    assert!(e.stats().wal_bytes < before, "{before} -> {:?}", e.stats());
    assert_eq!(flatten(&e.scan(&all("db", "m")).unwrap()).len(), 100_010);
}
