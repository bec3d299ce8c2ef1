//! Cold-tier tests through the engine: a move keeps one timeline (same rows before and after,
//! late writes into a cold window win), survives reopen, and a crash (abort) at every step of a
//! move loses no point, counts none twice and leaves no orphan.

use std::process::Command;
use std::sync::atomic::Ordering;

use crate::engine::policy::now_ns;
use crate::fsutil::CRASH_ENV;
use crate::lifecycle::LifecyclePolicy;
use crate::{
    Column, Engine, EngineConfig, FieldType, ScanRequest, SeriesKey, TableWrite, Value, WriteBatch,
};

const DAY: i64 = 86_400_000_000_000;

fn config(dir: &std::path::Path, cold: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.background = false;
    c.cold_store = Some(format!("file://{}", cold.display()));
    c
}

/// `n` points per device, one every hour, starting `days` days ago; v = base + i, s = "x{i}".
fn batch(devices: &[&str], start: i64, n: usize, base: f64) -> WriteBatch {
    let mut t = TableWrite {
        stream: "m".into(),
        columns: vec![
            Column::new("v", FieldType::Float),
            Column::new("s", FieldType::String),
        ],
        ..Default::default()
    };
    for (d, device) in devices.iter().enumerate() {
        t.series.push(SeriesKey {
            device: device.to_string(),
            tags: vec![("fleet".into(), format!("f{}", d % 2))],
        });
        for i in 0..n {
            t.row_series.push(d as u32);
            t.times.push(start + i as i64 * 3_600_000_000_000);
            t.columns[0].data.push_value(&Value::Float(base + i as f64));
            t.columns[0].valid.push(true);
            t.columns[1]
                .data
                .push_value(&Value::String(format!("x{i}")));
            t.columns[1].valid.push(true);
        }
    }
    WriteBatch {
        database: "db".into(),
        tables: vec![t],
    }
}

/// Every (device, time, v, s) of stream m.
fn all_rows(engine: &Engine) -> Vec<(String, i64, String)> {
    let req = ScanRequest {
        database: "db".into(),
        stream: "m".into(),
        start: i64::MIN,
        end: i64::MAX,
        ..Default::default()
    };
    let mut out = Vec::new();
    for b in engine.scan(&req).unwrap() {
        for i in 0..b.times.len() {
            let vals: Vec<String> = b
                .columns
                .iter()
                .map(|c| format!("{:?}", c.get(i)))
                .collect();
            out.push((b.key.device.clone(), b.times[i], vals.join(",")));
        }
    }
    out.sort();
    out
}

fn hot(days: i64) -> LifecyclePolicy {
    LifecyclePolicy {
        hot: Some(days * DAY),
        ..LifecyclePolicy::default()
    }
}

fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

fn day_start(days_ago: i64) -> i64 {
    (now_ns() - days_ago * DAY).div_euclid(DAY) * DAY
}

#[test]
fn a_move_keeps_one_timeline_and_late_writes_win() {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), cold.path())).unwrap();
    engine
        .write(&batch(&["a", "b"], day_start(10), 24, 0.0))
        .unwrap();
    engine
        .write(&batch(&["a", "b"], day_start(9), 24, 100.0))
        .unwrap();
    engine
        .write(&batch(&["a"], day_start(0), 2, 500.0))
        .unwrap();
    engine.flush().unwrap();
    let before = all_rows(&engine);
    engine.set_lifecycle("db", None, Some(hot(3))).unwrap();
    let run = engine.run_lifecycle().unwrap();
    assert!(run.errors.is_empty(), "{run:?}");
    assert_eq!(run.moved.len(), 2, "{run:?}");
    let files = parquet_files(cold.path());
    assert_eq!(files.len(), 2);
    let rel = files[0]
        .strip_prefix(cold.path())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(rel.starts_with("db/m/date="), "{rel}");
    assert_eq!(all_rows(&engine), before, "same rows after the move");
    let (tiers, status) = engine.lifecycle_status().unwrap();
    let cold_rows: u64 = tiers
        .iter()
        .filter(|t| t.tier == "cold")
        .map(|t| t.rows)
        .sum();
    assert_eq!(cold_rows, 96);
    assert_eq!(status.unwrap().objects_moved, 2);

    // A late write into a cold window is newer than the cold copy.
    engine
        .write(&batch(&["a"], day_start(10), 1, -1.0))
        .unwrap();
    engine.flush().unwrap();
    let rows = all_rows(&engine);
    assert_eq!(rows.len(), before.len());
    assert!(
        rows.iter()
            .any(|r| r.0 == "a" && r.1 == day_start(10) && r.2.contains("-1.0")),
        "{rows:?}"
    );
    drop(engine);

    let engine = Engine::open(config(dir.path(), cold.path())).unwrap();
    assert_eq!(
        all_rows(&engine),
        rows,
        "the cold manifest is read back at open"
    );
    // The late segment moves too at the next run; still one timeline.
    let run = engine.run_lifecycle().unwrap();
    assert_eq!(run.moved.len(), 1, "{run:?}");
    assert_eq!(all_rows(&engine), rows);
    drop(engine);
    let engine = Engine::open(config(dir.path(), cold.path())).unwrap();
    assert_eq!(all_rows(&engine), rows);
}

/// Integer field `w` of device `a`, `n` points every two hours from `start` (a field the
/// segments written before it lack).
fn sparse_w(start: i64, n: usize) -> WriteBatch {
    let mut t = TableWrite {
        stream: "m".into(),
        columns: vec![Column::new("w", FieldType::Integer)],
        ..Default::default()
    };
    t.series.push(SeriesKey {
        device: "a".into(),
        tags: vec![("fleet".into(), "f0".into())],
    });
    for i in 0..n {
        t.row_series.push(0);
        t.times.push(start + i as i64 * 7_200_000_000_000);
        t.columns[0].data.push_value(&Value::Integer(i as i64 * 7));
        t.columns[0].valid.push(true);
    }
    WriteBatch {
        database: "db".into(),
        tables: vec![t],
    }
}

#[test]
fn a_windows_segments_move_as_one_object_and_the_last_write_wins() {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), cold.path())).unwrap();
    // Day 10 in three segments: a and b; then a again over half of its hours (newer values)
    // with a new device c; then a field the first two segments lack. Day 9 in one segment.
    engine
        .write(&batch(&["a", "b"], day_start(10), 24, 0.0))
        .unwrap();
    engine.flush().unwrap();
    engine
        .write(&batch(&["a", "c"], day_start(10), 12, 50.0))
        .unwrap();
    engine.flush().unwrap();
    engine.write(&sparse_w(day_start(10), 12)).unwrap();
    engine.write(&batch(&["b"], day_start(9), 24, 9.0)).unwrap();
    engine.flush().unwrap();
    let before = all_rows(&engine);
    assert_eq!(
        before.len(),
        24 * 2 + 12 + 24,
        "a's rewritten hours are not counted twice"
    );
    assert!(before.iter().any(|r| r.0 == "a" && r.2.contains("50.0")));
    let ids: Vec<u64> = {
        let state = engine.inner.read_state().unwrap();
        let mut day10: Vec<_> = state
            .segments
            .iter()
            .filter(|l| l.meta.partition_start == day_start(10))
            .map(|l| l.meta.age())
            .collect();
        day10.sort();
        day10.into_iter().map(|(_, id)| id).collect()
    };
    assert_eq!(ids.len(), 3, "day 10 is three segments before the move");
    engine.set_lifecycle("db", None, Some(hot(3))).unwrap();
    let run = engine.run_lifecycle().unwrap();
    assert!(run.errors.is_empty(), "{run:?}");
    assert_eq!(run.moved.len(), 2, "one object per day: {run:?}");
    let day10 = run.moved.iter().find(|m| m.segments.len() > 1).unwrap();
    assert_eq!(day10.segments, ids, "oldest first");
    assert_eq!(day10.segment, ids[0]);
    assert_eq!(day10.rows, 24 * 2 + 12, "rows after last-write-wins");
    assert_eq!(parquet_files(cold.path()).len(), 2);
    assert_eq!(all_rows(&engine), before, "same rows, newest values");
    // The manifest entry names each segment it took the place of.
    let manifest = engine.inner.cold_manifest.lock().unwrap().clone();
    let entry = manifest
        .objects
        .iter()
        .find(|o| o.key == day10.object)
        .unwrap();
    let merged: Vec<u64> = entry.merged.iter().map(|m| m.segment).collect();
    assert_eq!(merged, ids);
    assert_eq!(entry.min_time, day_start(10));
    drop(engine);
    let engine = Engine::open(config(dir.path(), cold.path())).unwrap();
    assert_eq!(all_rows(&engine), before, "read back at open");
    let left = engine.inner.read_state().unwrap().segments.len();
    assert_eq!(left, 0, "no segment of a moved day is left");
    assert_eq!(
        std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_damaged_cold_object_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), cold.path())).unwrap();
    engine
        .write(&batch(&["a"], day_start(10), 24, 0.0))
        .unwrap();
    engine.flush().unwrap();
    engine.set_lifecycle("db", None, Some(hot(3))).unwrap();
    assert_eq!(engine.run_lifecycle().unwrap().moved.len(), 1);
    drop(engine);
    let file = &parquet_files(cold.path())[0];
    let mut bytes = std::fs::read(file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
    let engine = Engine::open(config(dir.path(), cold.path())).unwrap();
    let req = ScanRequest {
        database: "db".into(),
        stream: "m".into(),
        start: i64::MIN,
        end: i64::MAX,
        ..Default::default()
    };
    let e = engine.scan(&req).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Corruption, "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
    let (_, status) = engine.lifecycle_status().unwrap();
    let status = status.unwrap();
    assert_eq!(status.corrupt_objects, 1);
    assert!(status.last_error.unwrap().contains("damaged"));
}

#[test]
fn a_store_that_refuses_writes_leaves_data_hot() {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), cold.path())).unwrap();
    engine
        .write(&batch(&["a"], day_start(10), 24, 0.0))
        .unwrap();
    engine.flush().unwrap();
    let before = all_rows(&engine);
    // A file where the database directory would go: every object write fails.
    std::fs::write(cold.path().join("db"), b"in the way").unwrap();
    engine.set_lifecycle("db", None, Some(hot(3))).unwrap();
    let run = engine.run_lifecycle().unwrap();
    assert!(run.moved.is_empty());
    assert_eq!(run.errors.len(), 1, "{run:?}");
    assert!(run.errors[0].contains("stays hot"), "{run:?}");
    assert_eq!(all_rows(&engine), before);
    let (tiers, status) = engine.lifecycle_status().unwrap();
    assert!(tiers.iter().all(|t| t.tier == "hot"));
    assert_eq!(tiers[0].pending_moves, 1);
    let status = status.unwrap();
    assert_eq!(status.move_errors, 1);
    assert!(status.last_error.is_some());
    // Once the store works again the move goes through.
    std::fs::remove_file(cold.path().join("db")).unwrap();
    assert_eq!(engine.run_lifecycle().unwrap().moved.len(), 1);
    assert_eq!(all_rows(&engine), before);
}

const DIR_ENV: &str = "STRATA_TEST_COLD_DIR";

/// Child of the crash test: two old windows (the older one in two segments, which move as one
/// object) and a recent one, a policy, a run that aborts at `STRATA_TEST_CRASH_AT`.
#[test]
fn cold_crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let root = std::path::Path::new(&dir);
    let engine = Engine::open(config(&root.join("data"), &root.join("cold"))).unwrap();
    engine
        .write(&batch(&["a", "b"], day_start(10), 24, 0.0))
        .unwrap();
    // Day 10 in two segments, the second rewriting some of a's hours: they move as one object.
    engine.flush().unwrap();
    engine
        .write(&batch(&["a"], day_start(10), 6, 70.0))
        .unwrap();
    engine
        .write(&batch(&["a", "b"], day_start(9), 24, 100.0))
        .unwrap();
    engine
        .write(&batch(&["a"], day_start(0), 2, 500.0))
        .unwrap();
    engine.flush().unwrap();
    std::fs::write(root.join("expected"), format!("{:?}", all_rows(&engine))).unwrap();
    engine.set_lifecycle("db", None, Some(hot(3))).unwrap();
    engine.run_lifecycle().unwrap();
}

#[test]
fn a_crash_at_every_step_of_a_move_loses_nothing_and_leaves_no_orphan() {
    for step in [
        "cold-object-written",
        "cold-object-verified",
        "cold-manifest-committed",
        "cold-local-manifest-saved",
        "cold-object-written#2",
        "cold-manifest-committed#2",
    ] {
        let root = tempfile::tempdir().unwrap();
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "engine::cold_move::tests::cold_crash_child"])
            .env(DIR_ENV, root.path())
            .env(CRASH_ENV, step)
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "{step}: the child must abort");
        let expected = std::fs::read_to_string(root.path().join("expected")).unwrap();
        let (data, cold) = (root.path().join("data"), root.path().join("cold"));
        let engine = Engine::open(config(&data, &cold)).unwrap();
        assert_eq!(format!("{:?}", all_rows(&engine)), expected, "{step}");
        // Every object left is named by the cold manifest, every segment file by the MANIFEST.
        let (tiers, _) = engine.lifecycle_status().unwrap();
        let cold_files: u64 = tiers
            .iter()
            .filter(|t| t.tier == "cold")
            .map(|t| t.files)
            .sum();
        let hot_files: u64 = tiers
            .iter()
            .filter(|t| t.tier == "hot")
            .map(|t| t.files)
            .sum();
        assert_eq!(parquet_files(&cold).len() as u64, cold_files, "{step}");
        assert_eq!(
            std::fs::read_dir(data.join("segments")).unwrap().count() as u64,
            hot_files,
            "{step}"
        );
        // And the interrupted work completes at the next run.
        let run = engine.run_lifecycle().unwrap();
        assert!(run.errors.is_empty(), "{step}: {run:?}");
        assert_eq!(format!("{:?}", all_rows(&engine)), expected, "{step}");
        assert_eq!(parquet_files(&cold).len(), 2, "{step}");
    }
}

/// `n` points per device every `step` ns from `start`, one float field `v` (the first device
/// has no `s` values: a projection onto it reads an all-null column).
fn dense(devices: &[String], start: i64, n: usize, step: i64) -> WriteBatch {
    let mut t = TableWrite {
        stream: "m".into(),
        columns: vec![Column::new("v", FieldType::Float)],
        ..Default::default()
    };
    for (d, device) in devices.iter().enumerate() {
        t.series.push(SeriesKey {
            device: device.clone(),
            tags: vec![("fleet".into(), format!("f{}", d % 3))],
        });
        for i in 0..n {
            t.row_series.push(d as u32);
            t.times.push(start + i as i64 * step);
            t.columns[0]
                .data
                .push_value(&Value::Float(d as f64 * 1000.0 + i as f64));
            t.columns[0].valid.push(true);
        }
    }
    WriteBatch {
        database: "db".into(),
        tables: vec![t],
    }
}

/// The rows of a scan (values or points) as comparable tuples.
fn rows_of(batches: Vec<crate::SeriesBatch>) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.times.len() {
            let vals: Vec<String> = b
                .columns
                .iter()
                .map(|c| format!("{:?}", c.get(i)))
                .collect();
            out.push((b.key.device.clone(), b.times[i], vals.join(",")));
        }
    }
    out.sort();
    out
}

/// Data and cold directories, and an engine over them holding 40 devices × 4,000 points (every
/// `STEP`) of one day ten days ago, flushed: 160,000 rows, more than one row group once cold.
fn forty_trucks() -> (tempfile::TempDir, tempfile::TempDir, Engine, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), cold.path())).unwrap();
    let devices: Vec<String> = (0..40).map(|d| format!("truck-{d:02}")).collect();
    engine
        .write(&dense(&devices, day_start(10), 4_000, STEP))
        .unwrap();
    engine.flush().unwrap();
    (dir, cold, engine, devices)
}

/// Interval of [`forty_trucks`]' points: 20 s.
const STEP: i64 = 20_000_000_000;

#[test]
fn pruned_cold_reads_equal_hot_reads_and_a_fresh_node_reads_the_bucket() {
    let (_dir, cold, engine, devices) = forty_trucks();
    let (start, step) = (day_start(10), STEP);
    let queries: Vec<ScanRequest> = vec![
        ScanRequest {
            start: i64::MIN,
            end: i64::MAX,
            ..Default::default()
        },
        ScanRequest {
            device: Some("truck-07".into()),
            start: start + 3_600_000_000_000,
            end: start + 5 * 3_600_000_000_000,
            ..Default::default()
        },
        ScanRequest {
            device: Some("truck-39".into()),
            start: i64::MIN,
            end: i64::MAX,
            fields: Some(vec!["v".into()]),
            ..Default::default()
        },
        ScanRequest {
            tags: vec![("fleet".into(), "f1".into())],
            start: start + 1,
            end: start + 1_000 * step,
            ..Default::default()
        },
        ScanRequest {
            device: Some("no-such-truck".into()),
            start: i64::MIN,
            end: i64::MAX,
            ..Default::default()
        },
    ]
    .into_iter()
    .map(|q| ScanRequest {
        database: "db".into(),
        stream: "m".into(),
        ..q
    })
    .collect();
    type Answer = (Vec<(String, i64, String)>, Vec<(String, i64, String)>);
    let answers = |e: &Engine| -> Vec<Answer> {
        queries
            .iter()
            .map(|q| {
                (
                    rows_of(e.scan(q).unwrap()),
                    rows_of(e.scan_rows(q).unwrap()),
                )
            })
            .collect()
    };
    let hot_answers = answers(&engine);
    assert_eq!(hot_answers[0].0.len(), 160_000);
    assert_eq!(hot_answers[1].0.len(), 4 * 180);
    assert!(hot_answers[4].0.is_empty());
    engine.set_lifecycle("db", None, Some(hot(3))).unwrap();
    let run = engine.run_lifecycle().unwrap();
    assert!(run.errors.is_empty(), "{run:?}");
    assert_eq!(run.moved.len(), 1, "{run:?}");

    // The object is sorted by device: its row groups hold disjoint device ranges.
    let files = parquet_files(cold.path());
    let bytes = bytes::Bytes::from(std::fs::read(&files[0]).unwrap());
    let idx = crate::cold::parquet::index(&bytes).unwrap();
    assert!(idx.groups.len() >= 2, "{:?}", idx.groups);
    for w in idx.groups.windows(2) {
        let (a, b) = (w[0].device.clone().unwrap(), w[1].device.clone().unwrap());
        assert!(a.1 <= b.0, "{:?}", idx.groups);
    }
    let holding = |d: &str| {
        idx.groups
            .iter()
            .filter(|g| g.may_hold(i64::MIN, i64::MAX, Some(d)))
            .count()
    };
    assert!(holding("truck-07") < idx.groups.len());

    // Read by parts (the footer, then the row groups; for one device, its groups fetched with
    // the footer), though the object is small enough to be fetched whole.
    let tier = engine.inner.cold.clone().unwrap();
    assert!(bytes.len() as u64 <= crate::cold::ranged::WHOLE_BELOW);
    let manifest = engine.inner.cold_manifest.lock().unwrap().clone();
    let parts = manifest.objects[0].parts.clone().unwrap();
    assert_eq!(parts.first_devices.len(), idx.groups.len());
    let ahead = parts.groups_for(&["truck-07"]).unwrap();
    assert_eq!(ahead.len(), 1, "{parts:?}");
    assert!(idx.groups[ahead[0]].may_hold(i64::MIN, i64::MAX, Some("truck-07")));
    tier.whole_below.store(0, Ordering::Relaxed);
    let misses = || tier.counters.cache_misses.load(Ordering::Relaxed);
    let first = engine.scan(&queries[1]).unwrap();
    assert_eq!(rows_of(first), hot_answers[1].0);
    // Two parts fetched (that they go in one round is `cold::ranged`'s test).
    assert_eq!(misses(), 2, "the footer and truck-07's group");
    assert_eq!(answers(&engine), hot_answers, "cold answers equal hot ones");
    assert!(
        misses() > 2,
        "the other groups came when a wider read needed them"
    );
    drop(engine);

    // A fresh node: an empty data directory pointed at the same bucket.
    let fresh = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(fresh.path(), cold.path())).unwrap();
    assert!(
        engine
            .recovery_report()
            .cold_notes
            .iter()
            .any(|n| n.contains("catalogued 1 stream")),
        "{:?}",
        engine.recovery_report().cold_notes
    );
    assert_eq!(
        answers(&engine),
        hot_answers,
        "a fresh node reads the bucket"
    );
    // What it learnt is kept by its catalog (written at the next flush).
    engine
        .write(&dense(&devices[..1], day_start(0), 1, step))
        .unwrap();
    engine.flush().unwrap();
    drop(engine);
    let engine = Engine::open(config(fresh.path(), cold.path())).unwrap();
    let mut again = answers(&engine);
    again[0].0.retain(|r| r.1 < day_start(0));
    again[0].1.retain(|r| r.1 < day_start(0));
    assert_eq!(again, hot_answers);
}

/// The rows of a scan as comparable (device, time, values) tuples.
type Answer = Vec<(String, i64, String)>;

/// The rows of each query, and the tier's decoded-group hits after answering them.
fn answers_and_hits(engine: &Engine, queries: &[ScanRequest]) -> (Vec<Answer>, u64) {
    let rows = queries
        .iter()
        .map(|q| rows_of(engine.scan(q).unwrap()))
        .collect();
    let status = engine.lifecycle_status().unwrap().1.unwrap();
    (rows, status.cache_decoded_hits)
}

#[test]
fn warm_cold_reads_take_decoded_row_groups_from_the_cache_and_erasures_still_apply() {
    let (dir, cold, engine, _) = forty_trucks();
    let (start, step) = (day_start(10), STEP);
    let queries: Vec<ScanRequest> = [None, Some("truck-07"), Some("truck-39")]
        .into_iter()
        .map(|device| ScanRequest {
            database: "db".into(),
            stream: "m".into(),
            device: device.map(String::from),
            start: i64::MIN,
            end: i64::MAX,
            ..Default::default()
        })
        .collect();
    let hot_answers = answers_and_hits(&engine, &queries).0;
    engine.set_lifecycle("db", None, Some(hot(3))).unwrap();
    assert_eq!(engine.run_lifecycle().unwrap().moved.len(), 1);

    let (first, hits) = answers_and_hits(&engine, &queries);
    assert_eq!(first, hot_answers);
    // A one-device read decodes only its device's rows the first time; again, nothing decodes.
    let (again, more) = answers_and_hits(&engine, &queries);
    assert_eq!(again, hot_answers, "warm answers equal cold-cache ones");
    assert!(
        more > hits,
        "the second pass took decoded groups: {hits} -> {more}"
    );

    // Rows erased after their group was cached are not served from the cache.
    engine
        .erase_device(&crate::EraseRequest {
            database: Some("db".into()),
            device: "truck-07".into(),
            start,
            end: start + 100 * step,
        })
        .unwrap();
    let (erased, _) = answers_and_hits(&engine, &queries);
    let expected: Vec<Vec<_>> = hot_answers
        .iter()
        .map(|rows| {
            let kept =
                |r: &&(String, i64, String)| !(r.0 == "truck-07" && r.1 < start + 100 * step);
            rows.iter().filter(kept).cloned().collect()
        })
        .collect();
    assert_eq!(erased[1].len(), 3_900);
    assert_eq!(erased, expected);
    drop(engine);

    // With no cache, nothing is kept decoded and the answers are the same.
    let mut c = config(dir.path(), cold.path());
    c.cold_cache_bytes = 0;
    let engine = Engine::open(c).unwrap();
    let (a, _) = answers_and_hits(&engine, &queries);
    let (b, hits) = answers_and_hits(&engine, &queries);
    assert_eq!((a, b.clone()), (expected.clone(), expected));
    assert_eq!(hits, 0);
}

/// Every row of a snapshot taken before an erase or a retention step, read after it.
fn snapshot_rows(snap: &std::sync::Arc<crate::ReadSnapshot>) -> Vec<(String, i64, String)> {
    let batches = (0..snap.series_count())
        .filter_map(|i| snap.read_series(i).unwrap())
        .collect();
    rows_of(batches)
}

fn all_of_m() -> ScanRequest {
    ScanRequest {
        database: "db".into(),
        stream: "m".into(),
        start: i64::MIN,
        end: i64::MAX,
        ..Default::default()
    }
}

/// Two days of devices a and b moved cold (two objects); the engine, its rows and the objects.
fn two_cold_days(
    dir: &std::path::Path,
    cold: &std::path::Path,
) -> (Engine, Vec<(String, i64, String)>, Vec<std::path::PathBuf>) {
    let engine = Engine::open(config(dir, cold)).unwrap();
    for (days, base) in [(10, 0.0), (9, 100.0)] {
        engine
            .write(&batch(&["a", "b"], day_start(days), 24, base))
            .unwrap();
    }
    engine.flush().unwrap();
    engine.set_lifecycle("db", None, Some(hot(3))).unwrap();
    assert_eq!(engine.run_lifecycle().unwrap().moved.len(), 2);
    let rows = rows_of(engine.scan(&all_of_m()).unwrap());
    assert_eq!(rows.len(), 96);
    let objects = parquet_files(cold);
    assert_eq!(objects.len(), 2);
    (engine, rows, objects)
}

fn retired_in_manifest(cold: &std::path::Path) -> Vec<String> {
    let url = format!("file://{}", cold.display());
    crate::cold::ColdTier::open(&url, 0)
        .unwrap()
        .load_manifest()
        .unwrap()
        .retired
}

fn erase_all_of(device: &str) -> crate::EraseRequest {
    crate::EraseRequest {
        database: None,
        device: device.into(),
        start: i64::MIN,
        end: i64::MAX,
    }
}

fn snapshot_of_m(engine: &Engine) -> std::sync::Arc<crate::ReadSnapshot> {
    let snap = engine.snapshot(&all_of_m(), None, crate::ReadMode::Values);
    std::sync::Arc::new(snap.unwrap().unwrap())
}

/// [`two_cold_days`], a snapshot of every row, then device a erased and a maintenance pass
/// (which rewrites both objects while the snapshot holds the old ones).
type ErasedUnderASnapshot = (
    tempfile::TempDir,
    tempfile::TempDir,
    Engine,
    Vec<(String, i64, String)>,
    Vec<std::path::PathBuf>,
    std::sync::Arc<crate::ReadSnapshot>,
);

fn erased_under_a_snapshot() -> ErasedUnderASnapshot {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let (engine, before, old_objects) = two_cold_days(dir.path(), cold.path());
    let snap = snapshot_of_m(&engine);
    engine.erase_device(&erase_all_of("a")).unwrap();
    engine.compact().unwrap();
    (dir, cold, engine, before, old_objects, snap)
}

/// A read that took its snapshot before an erase rewrote the cold objects still reads the old
/// objects to the end: they are deleted only once the snapshot is gone (the maintenance pass
/// after it), and the cold manifest then stops naming them as retired.
#[test]
fn a_cold_object_a_read_still_uses_outlives_its_erase_rewrite() {
    let (_dir, cold, engine, before, old_objects, snap) = erased_under_a_snapshot();
    let now: Vec<_> = parquet_files(cold.path());
    assert_eq!(now.len(), 4, "two replacements beside the two old objects");
    assert!(old_objects.iter().all(|o| now.contains(o)));
    assert_eq!(retired_in_manifest(cold.path()).len(), 2);
    assert_eq!(
        snapshot_rows(&snap),
        before,
        "the snapshot reads as of its start"
    );
    let b_only: Vec<_> = before.iter().filter(|r| r.0 == "b").cloned().collect();
    assert_eq!(rows_of(engine.scan(&all_of_m()).unwrap()), b_only);

    drop(snap);
    engine.compact().unwrap();
    let now = parquet_files(cold.path());
    assert_eq!(now.len(), 2);
    assert!(old_objects.iter().all(|o| !now.contains(o)));
    assert_eq!(retired_in_manifest(cold.path()), Vec::<String>::new());
    assert_eq!(rows_of(engine.scan(&all_of_m()).unwrap()), b_only);
}

/// The same for objects cold retention drops: the run reports them dropped, the snapshot still
/// reads them, and they are deleted after it.
#[test]
fn a_cold_object_a_read_still_uses_outlives_its_retention() {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let (engine, before, old_objects) = two_cold_days(dir.path(), cold.path());
    let snap = snapshot_of_m(&engine);
    let policy = LifecyclePolicy {
        retention: Some(5 * DAY),
        ..hot(3)
    };
    engine.set_lifecycle("db", None, Some(policy)).unwrap();
    let run = engine.run_lifecycle().unwrap();
    assert_eq!(run.dropped_cold.len(), 2, "{run:?}");
    assert!(run.errors.is_empty(), "{run:?}");
    assert_eq!(parquet_files(cold.path()), old_objects);
    assert_eq!(snapshot_rows(&snap), before);
    assert!(engine.scan(&all_of_m()).unwrap().is_empty());

    drop(snap);
    engine.compact().unwrap();
    assert_eq!(parquet_files(cold.path()), Vec::<std::path::PathBuf>::new());
    assert_eq!(retired_in_manifest(cold.path()), Vec::<String>::new());
}

/// A node that stops while a read still holds replaced objects (a crash, as far as the store
/// sees it) deletes them at the next open, which reports it, and reports no unknown object.
#[test]
fn retired_cold_objects_left_by_a_stop_are_deleted_at_open() {
    let (dir, cold, engine, before, old_objects, snap) = erased_under_a_snapshot();
    drop(engine);
    assert_eq!(parquet_files(cold.path()).len(), 4);
    assert_eq!(retired_in_manifest(cold.path()).len(), 2);

    let engine = Engine::open(config(dir.path(), cold.path())).unwrap();
    let notes = engine.recovery_report().cold_notes;
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.contains("the cold manifest had dropped it"))
            .count(),
        2,
        "{notes:?}"
    );
    assert!(
        !notes.iter().any(|n| n.contains("in no cold manifest")),
        "{notes:?}"
    );
    let now = parquet_files(cold.path());
    assert_eq!(now.len(), 2);
    assert!(old_objects.iter().all(|o| !now.contains(o)));
    let b_only: Vec<_> = before.iter().filter(|r| r.0 == "b").cloned().collect();
    assert_eq!(rows_of(engine.scan(&all_of_m()).unwrap()), b_only);
    drop(snap);
}

/// A backup snapshot (a backup session copying cold objects with `--with-cold`) keeps the
/// objects it lists until it is dropped, like a read.
#[test]
fn a_backup_snapshot_keeps_its_cold_objects_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let (engine, _, old_objects) = two_cold_days(dir.path(), cold.path());
    let backup = engine.backup_snapshot().unwrap();
    assert_eq!(backup.cold.as_ref().unwrap().objects.len(), 2);
    engine.erase_device(&erase_all_of("a")).unwrap();
    engine.compact().unwrap();
    let now = parquet_files(cold.path());
    assert!(old_objects.iter().all(|o| now.contains(o)), "{now:?}");
    drop(backup);
    engine.compact().unwrap();
    let now = parquet_files(cold.path());
    assert!(old_objects.iter().all(|o| !now.contains(o)), "{now:?}");
    assert_eq!(now.len(), 2);
}
