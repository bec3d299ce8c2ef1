//! Tests of policies and retention through the engine's public API: a policy survives reopen,
//! expired rows leave reads at once (SQL-style snapshots, scans and the last-value cache), whole
//! expired segments leave disk at the next run, and a crash right after the MANIFEST edit loses
//! nothing that was kept.

use std::process::Command;

use super::now_ns;
use crate::fsutil::CRASH_ENV;
use crate::lifecycle::{LifecyclePolicy, PolicySource};
use crate::{
    Column, Engine, EngineConfig, FieldType, LatestRequest, ScanRequest, SeriesKey, TableWrite,
    Value, WriteBatch,
};

const DAY: i64 = 86_400_000_000_000;

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.background = false;
    c
}

/// One float point per `(device, time)` in stream `s` of database `db`.
fn points(stream: &str, pts: &[(&str, i64, f64)]) -> WriteBatch {
    let mut t = TableWrite {
        stream: stream.into(),
        columns: vec![Column::new("v", FieldType::Float)],
        ..Default::default()
    };
    for (device, time, v) in pts {
        let key = SeriesKey {
            device: device.to_string(),
            tags: vec![],
        };
        let idx = t.series.iter().position(|k| *k == key).unwrap_or_else(|| {
            t.series.push(key);
            t.series.len() - 1
        });
        t.row_series.push(idx as u32);
        t.times.push(*time);
        t.columns[0].data.push_value(&Value::Float(*v));
        t.columns[0].valid.push(true);
    }
    WriteBatch {
        database: "db".into(),
        tables: vec![t],
    }
}

fn times(engine: &Engine, stream: &str) -> Vec<i64> {
    let req = ScanRequest {
        database: "db".into(),
        stream: stream.into(),
        start: i64::MIN,
        end: i64::MAX,
        ..Default::default()
    };
    let mut out: Vec<i64> = engine
        .scan(&req)
        .unwrap()
        .into_iter()
        .flat_map(|b| b.times)
        .collect();
    out.sort();
    out
}

fn retention(days: i64) -> LifecyclePolicy {
    LifecyclePolicy {
        retention: Some(days * DAY),
        ..LifecyclePolicy::default()
    }
}

fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("segments")).unwrap().count()
}

#[test]
fn policies_persist_and_stream_overrides_win() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(config(dir.path())).unwrap();
        engine
            .set_lifecycle("db", None, Some(retention(30)))
            .unwrap();
        engine
            .set_lifecycle("db", Some("s"), Some(retention(2)))
            .unwrap();
        let bad = LifecyclePolicy {
            hot: Some(40 * DAY),
            retention: Some(30 * DAY),
            rollups: vec![],
        };
        let e = engine.set_lifecycle("db", None, Some(bad)).unwrap_err();
        assert!(e.to_string().contains("hot (40d) is longer"), "{e}");
    }
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(
        engine.lifecycle("db", "s").unwrap(),
        (retention(2), PolicySource::Stream)
    );
    assert_eq!(
        engine.lifecycle("db", "t").unwrap(),
        (retention(30), PolicySource::Database)
    );
    let (db, streams) = engine.lifecycle_settings("db").unwrap();
    assert_eq!(db, Some(retention(30)));
    assert_eq!(streams.keys().collect::<Vec<_>>(), vec!["s"]);
}

#[test]
fn expired_rows_leave_reads_at_once_and_disk_at_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let now = now_ns();
    let (old, mid, new) = (now - 10 * DAY, now - 4 * DAY, now - DAY);
    engine
        .write(&points(
            "s",
            &[("a", old, 1.0), ("a", mid, 2.0), ("a", new, 3.0)],
        ))
        .unwrap();
    engine.write(&points("t", &[("a", old, 1.0)])).unwrap();
    engine.flush().unwrap();
    // Still in memory too: write the old point again after the flush.
    engine.write(&points("s", &[("b", old, 9.0)])).unwrap();
    assert_eq!(times(&engine, "s"), vec![old, old, mid, new]);
    let before = segment_files(dir.path());

    engine
        .set_lifecycle("db", Some("s"), Some(retention(5)))
        .unwrap();
    assert_eq!(times(&engine, "s"), vec![mid, new], "filtered at once");
    assert_eq!(times(&engine, "t"), vec![old], "other stream untouched");
    let (_, latest) = engine
        .latest(&LatestRequest {
            database: "db".into(),
            stream: "s".into(),
            ..Default::default()
        })
        .unwrap();
    let devices: Vec<&str> = latest.iter().map(|s| s.key.device.as_str()).collect();
    assert_eq!(devices, vec!["a"], "b's only point expired");

    let run = engine.run_lifecycle().unwrap();
    assert_eq!(run.dropped.len(), 1, "{run:?}");
    assert_eq!(run.dropped[0].max_time, old);
    assert!(run.errors.is_empty());
    assert_eq!(segment_files(dir.path()), before - 1);
    assert_eq!(times(&engine, "s"), vec![mid, new]);
    // The memtable's expired row is flushed and dropped at the run after.
    engine.flush().unwrap();
    assert_eq!(engine.run_lifecycle().unwrap().dropped.len(), 1);
    assert_eq!(engine.last_lifecycle_run().unwrap().dropped.len(), 1);
    drop(engine);

    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(times(&engine, "s"), vec![mid, new]);
    // Lifting the retention brings back nothing that was dropped, and keeps what is left.
    engine.set_lifecycle("db", Some("s"), None).unwrap();
    assert_eq!(times(&engine, "s"), vec![mid, new]);
    assert_eq!(times(&engine, "t"), vec![old]);
}

const DIR_ENV: &str = "STRATA_TEST_LIFECYCLE_DIR";

/// Child process of the crash test: two segments, one expired, then a run that aborts at
/// `STRATA_TEST_CRASH_AT`.
#[test]
fn retention_crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let engine = Engine::open(config(std::path::Path::new(&dir))).unwrap();
    let now = now_ns();
    engine
        .write(&points("s", &[("a", now - 10 * DAY, 1.0), ("a", now, 2.0)]))
        .unwrap();
    engine.flush().unwrap();
    engine
        .set_lifecycle("db", None, Some(retention(5)))
        .unwrap();
    engine.run_lifecycle().unwrap();
}

#[test]
fn a_crash_after_the_manifest_edit_leaves_no_orphan_and_loses_nothing_kept() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "engine::lifecycle::tests::retention_crash_child"])
        .env(DIR_ENV, dir.path())
        .env(CRASH_ENV, "retention-manifest-saved")
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must abort at the crash point");
    assert_eq!(
        segment_files(dir.path()),
        2,
        "the expired file is still there"
    );
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(segment_files(dir.path()), 1, "the orphan is gone at open");
    let kept = times(&engine, "s");
    assert_eq!(kept.len(), 1);
    assert!(kept[0] > now_ns() - DAY);
    assert_eq!(
        engine.lifecycle("db", "s").unwrap().1,
        PolicySource::Database
    );
}
