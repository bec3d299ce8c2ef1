//! Crash and concurrency tests of flush, compaction and the catalog log.
//!
//! Crash tests re-run this test binary as a child process with `STRATA_TEST_CRASH_AT` naming a
//! step (`fsutil::crash_point`); the child runs a fixed workload against a data directory and
//! aborts there (like `kill -9`). The parent then reopens the directory and checks that every
//! acknowledged write is there with its last-written value, nothing is duplicated, and no orphan
//! or temporary file is left. Concurrency tests run a flush or a compaction from a hook placed in
//! the middle of the other (`fsutil::on_step`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::fsutil::{CRASH_ENV, on_step};
use crate::{
    Column, Durability, Engine, EngineConfig, FieldType, ScanRequest, SeriesKey, TableWrite, Value,
    WriteBatch,
};

const DIR_ENV: &str = "STRATA_TEST_CRASH_DIR";

/// (device, time, field) → value.
type Model = BTreeMap<(String, i64, String), Value>;

/// One write: rows of (device, time, [(field, value)]).
type Rows = Vec<(String, i64, Vec<(String, f64)>)>;

fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.background = false;
    c.durability = Durability::Sync;
    c.partition_ns = 1000;
    c
}

fn batch(rows: &Rows) -> WriteBatch {
    let mut t = TableWrite {
        stream: "m".into(),
        ..Default::default()
    };
    let names: Vec<String> = {
        let mut n: Vec<String> = rows
            .iter()
            .flat_map(|r| r.2.iter().map(|f| f.0.clone()))
            .collect();
        n.sort();
        n.dedup();
        n
    };
    t.columns = names
        .iter()
        .map(|n| Column::new(n.clone(), FieldType::Float))
        .collect();
    for (device, time, fields) in rows {
        let key = SeriesKey {
            device: device.clone(),
            tags: vec![("fleet".into(), "north".into())],
        };
        let idx = t.series.iter().position(|k| *k == key).unwrap_or_else(|| {
            t.series.push(key);
            t.series.len() - 1
        });
        t.row_series.push(idx as u32);
        t.times.push(*time);
        for c in &mut t.columns {
            match fields.iter().find(|f| f.0 == c.name) {
                Some((_, v)) => {
                    c.data.push_value(&Value::Float(*v));
                    c.valid.push(true);
                }
                None => c.push_null(),
            }
        }
    }
    WriteBatch {
        database: "db".into(),
        tables: vec![t],
    }
}

fn rows(
    devices: &[&str],
    times: impl Iterator<Item = i64> + Clone,
    fields: &[(&str, f64)],
) -> Rows {
    let mut out = Vec::new();
    for d in devices {
        for t in times.clone() {
            let fs = fields
                .iter()
                .map(|(n, v)| (n.to_string(), *v + t as f64))
                .collect();
            out.push((d.to_string(), t, fs));
        }
    }
    out
}

/// The workload's writes, in order: overwrites, late data, new series and a sparse new field.
fn writes() -> Vec<Rows> {
    vec![
        rows(&["d0", "d1"], (0..1500).step_by(10), &[("a", 1.0)]),
        rows(&["d0", "d1"], (0..600).step_by(20), &[("a", 2.0)]),
        rows(&["d2"], (100..300).step_by(5), &[("b", 3.0)]),
        rows(&["d0"], (5..905).step_by(100), &[("a", 4.0), ("b", 4.5)]),
        rows(&["d3", "d1"], (1000..1400).step_by(7), &[("a", 5.0)]),
    ]
}

/// What the child does: write, flush after each write, compact after the third and the last.
/// Records each acknowledged write in `DIR/acked` before going on.
fn workload(dir: &Path) {
    let engine = Engine::open(config(dir)).unwrap();
    let acked = dir.join("acked");
    for (i, w) in writes().iter().enumerate() {
        engine.write(&batch(w)).unwrap();
        std::fs::write(&acked, format!("{}", i + 1)).unwrap();
        engine.flush().unwrap();
        if i == 2 || i == 4 {
            engine.compact().unwrap();
        }
    }
}

fn model_of(writes: &[Rows]) -> Model {
    let mut m = Model::new();
    for w in writes {
        for (d, t, fs) in w {
            for (f, v) in fs {
                m.insert((d.clone(), *t, f.clone()), Value::Float(*v));
            }
        }
    }
    m
}

fn scan(engine: &Engine) -> Model {
    let req = ScanRequest {
        database: "db".into(),
        stream: "m".into(),
        start: i64::MIN,
        end: i64::MAX,
        ..Default::default()
    };
    let mut out = Model::new();
    for b in engine.scan(&req).unwrap() {
        for (i, t) in b.times.iter().enumerate() {
            for c in &b.columns {
                if let Some(v) = c.get(i) {
                    let prev = out.insert((b.key.device.clone(), *t, c.name.clone()), v);
                    assert!(prev.is_none(), "duplicate point {} {t}", b.key.device);
                }
            }
        }
    }
    out
}

/// Files in the data directory that should not be there after open: segments the manifest does
/// not name, and temporaries.
fn leftovers(dir: &Path) -> Vec<String> {
    let manifest = crate::manifest::Manifest::load(&dir.join("MANIFEST")).unwrap();
    let live: Vec<String> = manifest
        .segments
        .iter()
        .map(|s| crate::manifest::segment_file_name(s.id))
        .collect();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.join("segments")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !live.contains(&name) {
            out.push(format!("segments/{name}"));
        }
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") || name == "catalog" {
            out.push(name);
        }
    }
    out
}

/// Runs the workload in a child that aborts at `step`, then checks the directory.
fn crash_at(test: &str, step: &str) {
    if let Ok(dir) = std::env::var(DIR_ENV) {
        workload(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CRASH_ENV, step)
        .env(DIR_ENV, dir.path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(
        !status.status.success(),
        "the child finished without reaching {step}: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    let acked: usize = std::fs::read_to_string(dir.path().join("acked"))
        .map(|s| s.parse().unwrap())
        .unwrap_or(0);
    let want = model_of(&writes()[..acked]);
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(
        scan(&engine),
        want,
        "after the crash at {step} ({acked} writes acknowledged)"
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    engine.flush().unwrap();
    engine.compact().unwrap();
    assert_eq!(scan(&engine), want, "after flush + compact");
    drop(engine);
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(scan(&engine), want, "after a second reopen");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

macro_rules! crash_test {
    ($name:ident, $step:expr) => {
        #[test]
        fn $name() {
            crash_at(
                concat!(module_path!(), "::", stringify!($name))
                    .split_once("::")
                    .unwrap()
                    .1,
                $step,
            );
        }
    };
}

crash_test!(crash_after_flush_wrote_segments, "flush-segments-written#2");
crash_test!(
    crash_after_flush_saved_the_manifest,
    "flush-manifest-saved#3"
);
crash_test!(
    crash_in_the_middle_of_a_catalog_append,
    "catalog-mid-append#3"
);
crash_test!(
    crash_after_compaction_wrote_its_output,
    "compaction-output-written"
);
crash_test!(
    crash_after_compaction_saved_the_manifest,
    "compaction-manifest-saved"
);
crash_test!(
    crash_before_compaction_deleted_its_inputs,
    "compaction-before-delete"
);
crash_test!(
    crash_in_the_second_compaction,
    "compaction-manifest-saved#2"
);

/// The catalog snapshot (log rewrite) interrupted half way: the old log is intact and used.
#[test]
fn crash_in_the_middle_of_a_catalog_snapshot() {
    use crate::catalog::Catalog;
    use crate::catalog_log::CatalogLog;
    let key = |i: usize| SeriesKey {
        device: format!("truck_{i}"),
        tags: vec![("fleet".into(), "north-east-region".into())],
    };
    if let Ok(dir) = std::env::var(DIR_ENV) {
        let dir = Path::new(&dir);
        let (mut log, mut cat) =
            CatalogLog::open(&dir.join("catalog.log"), &dir.join("catalog")).unwrap();
        let s = cat.ensure_stream("db", "m");
        let mut i = 0;
        while !log.should_snapshot() {
            cat.ensure_series(s, &key(i));
            log.append(log.pending(&cat)).unwrap();
            i += 1;
        }
        std::fs::write(dir.join("acked"), i.to_string()).unwrap();
        log.replace(CatalogLog::encode_all(&cat)).unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "engine::compaction::crash_tests::crash_in_the_middle_of_a_catalog_snapshot",
            "--exact",
            "--test-threads=1",
        ])
        .env(CRASH_ENV, "catalog-mid-snapshot")
        .env(DIR_ENV, dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child did not crash");
    let n: usize = std::fs::read_to_string(dir.path().join("acked"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        dir.path().join("catalog.tmp").exists(),
        "the crash left no half-written snapshot"
    );
    // Opening an engine on the directory uses the intact log and removes the half snapshot.
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.stats().series, n);
    assert_eq!(engine.devices("db", "m").len(), n);
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    drop(engine);
    let (_, cat) =
        CatalogLog::open(&dir.path().join("catalog.log"), &dir.path().join("catalog")).unwrap();
    let mut expect = Catalog::default();
    let s = expect.ensure_stream("db", "m");
    (0..n).for_each(|i| {
        expect.ensure_series(s, &key(i));
    });
    let keys = |c: &Catalog| c.series.iter().map(|e| e.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&cat), keys(&expect));
}

fn one(device: &str, times: std::ops::RangeInclusive<i64>, v: f64) -> WriteBatch {
    batch(&rows(&[device], times, &[("a", v)]))
}

fn value_at(engine: &Engine, t: i64) -> Option<Value> {
    scan(engine)
        .get(&("d0".to_string(), t, "a".to_string()))
        .cloned()
}

/// A compaction that runs while a flush has written its segment but not yet committed it: the
/// flushed (newer) values must win although the compaction output gets a higher file id.
#[test]
fn a_flush_committed_after_a_compaction_still_wins() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(config(dir.path())).unwrap());
    engine.write(&one("d0", 1..=10, 1.0)).unwrap();
    engine.flush().unwrap();
    engine.write(&one("d0", 1..=10, 2.0)).unwrap();
    engine.flush().unwrap();
    engine.write(&one("d0", 1..=5, 3.0)).unwrap();
    let e = engine.clone();
    on_step(dir.path(), "flush-segments-written", move || {
        assert_eq!(e.compact().unwrap(), 1);
    });
    engine.flush().unwrap();
    let ids: Vec<(u64, u64)> = engine
        .inner
        .read_state()
        .unwrap()
        .segments
        .iter()
        .map(|l| (l.meta.id, l.meta.seq))
        .collect();
    // Flushed segment 3 (seq 3) sorts after the compaction output 4 (seq 2 from its inputs).
    assert_eq!(ids, vec![(4, 2), (3, 3)]);
    let check = |engine: &Engine| {
        assert_eq!(value_at(engine, 3).unwrap(), Value::Float(6.0));
        assert_eq!(value_at(engine, 7).unwrap(), Value::Float(9.0));
    };
    check(&engine);
    drop(engine);
    let engine = Engine::open(config(dir.path())).unwrap();
    check(&engine);
    engine.compact().unwrap();
    check(&engine);
}

/// A flush that overwrites points while a compaction of older segments is merging: the flush is
/// not blocked (it runs to completion from inside the compaction) and its values win.
#[test]
fn a_flush_during_a_compaction_is_not_blocked_and_wins() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(config(dir.path())).unwrap());
    engine.write(&one("d0", 1..=10, 1.0)).unwrap();
    engine.flush().unwrap();
    engine.write(&one("d0", 1..=10, 2.0)).unwrap();
    engine.flush().unwrap();
    let e = engine.clone();
    on_step(dir.path(), "compaction-output-written", move || {
        e.write(&one("d0", 1..=5, 3.0)).unwrap();
        e.flush().unwrap();
        assert_eq!(value_at(&e, 2).unwrap(), Value::Float(5.0));
    });
    assert_eq!(engine.compact().unwrap(), 1);
    let check = |engine: &Engine| {
        assert_eq!(value_at(engine, 2).unwrap(), Value::Float(5.0));
        assert_eq!(value_at(engine, 8).unwrap(), Value::Float(10.0));
        assert_eq!(engine.stats().segments, 2);
    };
    check(&engine);
    drop(engine);
    let engine = Engine::open(config(dir.path())).unwrap();
    check(&engine);
}

/// A data directory written by the previous version (version 1 MANIFEST without `seq`, JSON
/// catalog snapshot) opens with the same data, and is converted: a `catalog.log` replaces
/// `catalog`, and the next manifest written is version 2.
#[test]
fn a_data_directory_of_the_previous_version_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.durability = Durability::None;
    let engine = Engine::open(cfg.clone()).unwrap();
    for w in writes() {
        engine.write(&batch(&w)).unwrap();
        engine.flush().unwrap();
    }
    let want = scan(&engine);
    let catalog = engine.inner.read_state().unwrap().catalog.clone();
    drop(engine);
    // Rewrite the directory as the previous version left it.
    catalog.save(&dir.path().join("catalog")).unwrap();
    std::fs::remove_file(dir.path().join("catalog.log")).unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("MANIFEST")).unwrap();
    let body = manifest.split_once('\n').unwrap().1;
    let mut json: serde_json::Value = serde_json::from_str(body).unwrap();
    json["version"] = 1.into();
    for s in json["segments"].as_array_mut().unwrap() {
        s.as_object_mut().unwrap().remove("seq");
    }
    let old = serde_json::to_vec(&json).unwrap();
    std::fs::write(
        dir.path().join("MANIFEST"),
        crate::fsutil::with_checksum_header("STRATA-MANIFEST", &old),
    )
    .unwrap();
    let engine = Engine::open(cfg.clone()).unwrap();
    assert_eq!(scan(&engine), want);
    assert!(dir.path().join("catalog.log").exists());
    assert!(!dir.path().join("catalog").exists());
    engine.write(&one("d9", 1..=3, 1.0)).unwrap();
    engine.flush().unwrap();
    engine.compact().unwrap();
    drop(engine);
    let manifest = std::fs::read_to_string(dir.path().join("MANIFEST")).unwrap();
    assert!(manifest.contains("\"seq\""), "{manifest}");
    let engine = Engine::open(cfg).unwrap();
    let got = scan(&engine);
    assert_eq!(got.len(), want.len() + 3);
    assert!(want.iter().all(|(k, v)| got.get(k) == Some(v)));
}

/// The last-value cache loaded at open breaks ties by age order too: a flush that overwrote the
/// newest point while a compaction merged the older segments keeps its value after reopen.
#[test]
fn the_last_value_cache_follows_age_order_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(config(dir.path())).unwrap());
    engine.write(&one("d0", 1..=10, 1.0)).unwrap();
    engine.flush().unwrap();
    engine.write(&one("d0", 1..=10, 2.0)).unwrap();
    engine.flush().unwrap();
    engine.write(&one("d0", 10..=10, 50.0)).unwrap();
    let e = engine.clone();
    on_step(dir.path(), "flush-segments-written", move || {
        e.compact().unwrap();
    });
    engine.flush().unwrap();
    drop(engine);
    let engine = Engine::open(config(dir.path())).unwrap();
    let req = crate::LatestRequest {
        database: "db".into(),
        stream: "m".into(),
        ..Default::default()
    };
    let (_, series) = engine.latest(&req).unwrap();
    let latest = series[0].values[0].clone().unwrap();
    assert_eq!((latest.time, latest.value), (10, Value::Float(60.0)));
    assert_eq!(value_at(&engine, 10).unwrap(), Value::Float(60.0));
}
