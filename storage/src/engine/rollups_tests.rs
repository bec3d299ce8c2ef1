//! Tests of rollup maintenance: incremental results equal a full recomputation from the raw data
//! (late data, rewritten points, flushes in between), only touched windows are re-aggregated,
//! back-fill, restart, reserved names and the retention check.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::lifecycle::{LifecyclePolicy, PolicySource};
use crate::{EngineConfig, SeriesBatch, Value};

const MIN: i64 = 60_000_000_000;

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir);
    cfg.background = false;
    cfg.partition_ns = 3_600_000_000_000;
    cfg
}

fn rollups_policy(specs: &[RollupSpec], retention: Option<i64>) -> LifecyclePolicy {
    LifecyclePolicy {
        retention,
        rollups: specs.to_vec(),
        ..LifecyclePolicy::default()
    }
}

fn spec(every: i64) -> RollupSpec {
    RollupSpec { every, keep: None }
}

/// One write of `rows` (device, time, value) to stream `s` of database `db`.
fn write(engine: &Engine, rows: &[(&str, i64, f64)]) {
    let mut series: Vec<SeriesKey> = Vec::new();
    let mut t = TableWrite {
        stream: "s".into(),
        columns: vec![Column::new("v", FieldType::Float)],
        ..TableWrite::default()
    };
    for &(device, time, v) in rows {
        let key = SeriesKey {
            device: device.into(),
            tags: vec![("fleet".into(), format!("f{}", device.len() % 2))],
        };
        let idx = series.iter().position(|k| *k == key).unwrap_or_else(|| {
            series.push(key);
            series.len() - 1
        });
        t.row_series.push(idx as u32);
        t.times.push(time);
        t.columns[0].data.push_value(&Value::Float(v));
        t.columns[0].valid.push(true);
    }
    t.series = series;
    engine
        .write(&WriteBatch {
            database: "db".into(),
            tables: vec![t],
        })
        .unwrap();
}

fn all(engine: &Engine, stream: &str) -> Vec<SeriesBatch> {
    let mut out = engine
        .scan(&ScanRequest {
            database: "db".into(),
            stream: stream.into(),
            device: None,
            tags: Vec::new(),
            start: i64::MIN,
            end: i64::MAX,
            fields: None,
        })
        .unwrap();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// The rollup as a full recomputation from the raw data gives it: per series key, per window,
/// the column values.
type Table = BTreeMap<(SeriesKey, i64), Vec<Option<Value>>>;

fn expected(engine: &Engine, every: i64) -> Table {
    let fields = engine.schema("db", "s").unwrap();
    let mut out = Table::new();
    for b in all(engine, "s") {
        let rows = aggregate(&b, &fields, every);
        for (i, &t) in rows.times.iter().enumerate() {
            let vals = rows.columns.iter().map(|c| c.get(i)).collect();
            out.insert((b.key.clone(), t), vals);
        }
    }
    out
}

fn stored(engine: &Engine, every: i64) -> Table {
    let name = rollup_stream_name("s", every);
    let fields = engine.schema("db", "s").unwrap();
    let columns = rollup_columns(&fields);
    let mut out = Table::new();
    for b in all(engine, &name) {
        for (i, &t) in b.times.iter().enumerate() {
            let vals = columns
                .iter()
                .map(|(n, _)| {
                    b.columns
                        .iter()
                        .find(|c| c.name == *n)
                        .and_then(|c| c.get(i))
                })
                .collect();
            out.insert((b.key.clone(), t), vals);
        }
    }
    out
}

#[test]
fn late_data_reaggregates_only_the_touched_windows_of_that_device() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.set_rollups("db", "s", &[spec(MIN)]).unwrap();
    // Two devices, 100 minutes each.
    let rows: Vec<(&str, i64, f64)> = (0..6000)
        .flat_map(|s| {
            [
                ("a", s * 1_000_000_000, s as f64),
                ("bb", s * 1_000_000_000, 1.0),
            ]
        })
        .collect();
    write(&engine, &rows);
    let run = engine.run_rollups(10).unwrap();
    assert_eq!(run.windows_absorbed, 200, "100 windows per device");
    engine.flush().unwrap();
    assert_eq!(stored(&engine, MIN), expected(&engine, MIN));
    // Device `a` comes back with late points in 3 old windows, one of them a rewrite.
    write(
        &engine,
        &[
            ("a", 5 * MIN, -1.0),
            ("a", 5 * MIN + 1, 7.0),
            ("a", 50 * MIN, 2.0),
            ("a", 90 * MIN + 5, 3.0),
        ],
    );
    let status = engine.rollups(Some(("db", "s")));
    assert_eq!(status[0].pending_windows, 3);
    let run = engine.run_rollups(10).unwrap();
    assert_eq!(run.windows_absorbed, 3, "only device a's touched windows");
    assert_eq!(run.rows_written, 3);
    assert_eq!(stored(&engine, MIN), expected(&engine, MIN));
    assert_eq!(engine.rollups(None)[0].pending_windows, 0);
}

#[test]
fn flush_absorbs_and_restart_keeps_rollups_and_replayed_marks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    {
        let engine = Engine::open(cfg.clone()).unwrap();
        engine
            .set_rollups("db", "s", &[spec(MIN), spec(60 * MIN)])
            .unwrap();
        write(&engine, &[("a", 1, 1.0), ("a", MIN + 1, 2.0)]);
        engine.flush().unwrap();
        assert_eq!(
            engine
                .rollups(None)
                .iter()
                .map(|s| s.pending_windows)
                .sum::<usize>(),
            0,
            "flush absorbed the frozen rows"
        );
        // Written but neither absorbed nor flushed: the marks live only in memory.
        write(&engine, &[("a", 2, 5.0), ("bb", 3 * MIN, 4.0)]);
        // Dropped without shutdown (no final flush), as a crash would leave it.
    }
    let engine = Engine::open(cfg).unwrap();
    let status = engine.rollups(None);
    assert_eq!(status.len(), 2, "configuration survives restart");
    assert_eq!(status[0].pending_windows, 2, "marks come back from the WAL");
    engine.run_rollups(10).unwrap();
    for every in [MIN, 60 * MIN] {
        let got = stored(&engine, every);
        assert_eq!(got, expected(&engine, every));
        assert!(!got.is_empty());
    }
    let key = SeriesKey {
        device: "a".into(),
        tags: vec![("fleet".into(), "f1".into())],
    };
    let w0 = &stored(&engine, MIN)[&(key, 0)];
    assert_eq!(w0[0], Some(Value::Integer(2)), "two points in window 0");
    assert_eq!(w0[3], Some(Value::Float(6.0)), "sum 1 + 5");
}

#[test]
fn backfill_walks_existing_data_in_bounded_steps() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    // Five hours of data (five partitions), flushed, plus rows still in the memtable.
    let rows: Vec<(&str, i64, f64)> = (0..300).map(|m| ("a", m * MIN + 7, m as f64)).collect();
    write(&engine, &rows);
    engine.flush().unwrap();
    write(&engine, &[("bb", 2, 9.0), ("a", 301 * MIN, 1.0)]);
    engine.set_rollups("db", "s", &[spec(10 * MIN)]).unwrap();
    assert!(!engine.rollups(None)[0].backfilled());
    let mut steps = 0;
    loop {
        let run = engine.run_rollups(1).unwrap();
        if run.backfill_steps == 0 {
            break;
        }
        steps += 1;
        assert!(steps < 20, "back-fill must terminate");
    }
    assert_eq!(
        steps, 6,
        "one step per partition holding data, then the end"
    );
    assert!(engine.rollups(None)[0].backfilled());
    assert_eq!(stored(&engine, 10 * MIN), expected(&engine, 10 * MIN));
}

/// Hot segments of `stream` (files of the `hot` tier in the lifecycle status).
fn hot_segments(engine: &Engine, stream: &str) -> u64 {
    let (tiers, _) = engine.lifecycle_status().unwrap();
    tiers
        .iter()
        .filter(|t| t.stream == stream && t.tier == "hot")
        .map(|t| t.files)
        .sum()
}

#[test]
fn a_rollup_segment_spans_many_windows_and_answers_stay_equal() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    // Ten hours (ten 1-hour partitions) of two devices, flushed; then a 10-minute rollup: its
    // partition is 64 windows rounded up to whole hours (11 h), so its rows of the ten hours
    // land in one or two segments instead of ten.
    let rows: Vec<(&str, i64, f64)> = (0..600)
        .flat_map(|m| {
            [
                ("a", m * MIN + 7, m as f64),
                ("bb", m * MIN + 9, -(m as f64)),
            ]
        })
        .collect();
    write(&engine, &rows);
    engine.flush().unwrap();
    engine.set_rollups("db", "s", &[spec(10 * MIN)]).unwrap();
    engine.run_rollups(100).unwrap();
    engine.flush().unwrap();
    assert_eq!(hot_segments(&engine, "s"), 10);
    let name = rollup_stream_name("s", 10 * MIN);
    let segments = hot_segments(&engine, &name);
    assert!((1..=2).contains(&segments), "{segments} rollup segments");
    assert_eq!(stored(&engine, 10 * MIN), expected(&engine, 10 * MIN));
    // Late rows into an old window: a newer segment in the same wide partition wins.
    write(&engine, &[("a", 7, 1000.0)]);
    engine.run_rollups(100).unwrap();
    engine.flush().unwrap();
    assert_eq!(stored(&engine, 10 * MIN), expected(&engine, 10 * MIN));
    engine.compact().unwrap();
    assert!(hot_segments(&engine, &name) <= 2);
    assert_eq!(stored(&engine, 10 * MIN), expected(&engine, 10 * MIN));
}

#[test]
fn backfill_aggregates_raw_data_already_moved_cold() {
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.cold_store = Some(format!("file://{}", cold.path().display()));
    let engine = Engine::open(cfg).unwrap();
    // Four days of two devices, ten days ago, then one row of today.
    let start = (super::super::policy::now_ns() - 10 * DAY).div_euclid(DAY) * DAY;
    let rows: Vec<(&str, i64, f64)> = (0..4 * 24)
        .flat_map(|h| {
            [
                ("a", start + h * HOUR + 7, h as f64),
                ("bb", start + h * HOUR + 11, -1.5),
            ]
        })
        .collect();
    write(&engine, &rows);
    write(&engine, &[("a", super::super::policy::now_ns() - MIN, 1.0)]);
    engine.flush().unwrap();
    // Everything older than 3 days goes cold before any rollup exists.
    engine
        .set_lifecycle(
            "db",
            None,
            Some(LifecyclePolicy {
                hot: Some(3 * DAY),
                ..LifecyclePolicy::default()
            }),
        )
        .unwrap();
    let run = engine.run_lifecycle().unwrap();
    assert!(run.errors.is_empty() && !run.moved.is_empty(), "{run:?}");
    // The rollup added now back-fills from the cold objects too, down to the oldest day.
    engine.set_rollups("db", "s", &[spec(HOUR)]).unwrap();
    for _ in 0..1_000 {
        if engine.run_rollups(1).unwrap().backfill_steps == 0 {
            break;
        }
    }
    assert!(engine.rollups(None)[0].backfilled());
    let stored = stored(&engine, HOUR);
    assert_eq!(stored.len(), 2 * 4 * 24 + 1, "every window of both devices");
    assert_eq!(stored, expected(&engine, HOUR));
}

#[test]
fn rollup_streams_are_reserved_and_rollups_of_rollups_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let mut t = TableWrite {
        stream: "_rollup_1m_s".into(),
        series: vec![SeriesKey::default()],
        row_series: vec![0],
        times: vec![1],
        columns: vec![Column::new("points", FieldType::Integer)],
    };
    t.columns[0].data.push_value(&Value::Integer(1));
    t.columns[0].valid.push(true);
    let err = engine
        .write(&WriteBatch {
            database: "db".into(),
            tables: vec![t],
        })
        .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    let err = engine
        .set_rollups("db", "_rollup_1m_s", &[spec(MIN)])
        .unwrap_err();
    assert!(err.to_string().contains("rollups of rollups"), "{err}");
    let err = engine
        .set_rollups("db", "s", &[spec(MIN), spec(MIN)])
        .unwrap_err();
    assert!(err.to_string().contains("distinct windows"), "{err}");
    assert!(engine.set_rollups("db", "s", &[spec(0)]).is_err());
}

#[test]
fn retention_that_would_drop_unabsorbed_data_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    write(&engine, &[("a", 10 * MIN, 1.0)]);
    engine.flush().unwrap();
    engine.set_rollups("db", "s", &[spec(MIN)]).unwrap();
    let now = 1000 * MIN;
    let why = engine
        .rollup_retention_conflict("db", "s", 100 * MIN, now)
        .expect("back-fill pending");
    assert!(why.contains("back-filling"), "{why}");
    engine.run_rollups(100).unwrap();
    assert_eq!(
        engine.rollup_retention_conflict("db", "s", 100 * MIN, now),
        None
    );
    write(&engine, &[("a", 20 * MIN, 1.0)]);
    let why = engine
        .rollup_retention_conflict("db", "s", 100 * MIN, now)
        .expect("late data pending");
    assert!(why.contains("late data"), "{why}");
    assert_eq!(
        engine.rollup_retention_conflict("db", "s", 990 * MIN, now),
        None
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the order of writes (late, duplicate, rewritten points), flushes and absorbs,
    /// the maintained rollup equals a full recomputation from the raw data.
    #[test]
    fn incremental_rollup_equals_full_recomputation(
        writes in proptest::collection::vec(
            (0usize..3, 0i64..(30 * MIN), -100.0f64..100.0, 0u8..10), 1..120),
        every_min in 1i64..15,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(config(dir.path())).unwrap();
        let every = every_min * MIN;
        engine.set_rollups("db", "s", &[spec(every)]).unwrap();
        let devices = ["a", "bb", "ccc"];
        for chunk in writes.chunks(7) {
            // Times in whole seconds so rewrites of the same point are frequent.
            let rows: Vec<(&str, i64, f64)> = chunk
                .iter()
                .map(|&(d, t, v, _)| (devices[d], t / 1_000_000_000 * 1_000_000_000 / 20, v))
                .collect();
            write(&engine, &rows);
            match chunk[0].3 {
                0 => engine.flush().unwrap(),
                1..=3 => { engine.run_rollups(0).unwrap(); }
                _ => {}
            }
        }
        engine.run_rollups(100).unwrap();
        prop_assert_eq!(stored(&engine, every), expected(&engine, every));
    }
}

#[test]
fn database_policy_covers_existing_and_later_streams_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    {
        let engine = Engine::open(cfg.clone()).unwrap();
        write(&engine, &[("a", 1, 1.0)]);
        engine.flush().unwrap();
        engine
            .set_lifecycle("db", None, Some(rollups_policy(&[spec(MIN)], None)))
            .unwrap();
        let status = engine.rollups(None);
        assert_eq!(status.len(), 1);
        assert!(!status[0].backfilled(), "existing stream is back-filled");
        // A stream created after the policy gets the database's rollups on its first write.
        let mut t = TableWrite {
            stream: "later".into(),
            series: vec![SeriesKey::default()],
            row_series: vec![0],
            times: vec![5],
            columns: vec![Column::new("x", FieldType::Integer)],
        };
        t.columns[0].data.push_value(&Value::Integer(4));
        t.columns[0].valid.push(true);
        engine
            .write(&WriteBatch {
                database: "db".into(),
                tables: vec![t],
            })
            .unwrap();
        engine.run_rollups(10).unwrap();
        let status = engine.rollups(None);
        assert_eq!(
            status.iter().map(|s| s.table.as_str()).collect::<Vec<_>>(),
            ["_rollup_1m_later", "_rollup_1m_s"]
        );
        assert!(status.iter().all(RollupStatus::backfilled));
        // A stream override of no rollups wins over the database's.
        engine.set_rollups("db", "later", &[]).unwrap();
        assert_eq!(engine.rollups(None).len(), 1);
        engine.shutdown().unwrap();
    }
    let engine = Engine::open(cfg).unwrap();
    assert_eq!(engine.rollups(None).len(), 1);
    assert_eq!(stored(&engine, MIN), expected(&engine, MIN));
    engine.set_lifecycle("db", Some("later"), None).unwrap();
    assert_eq!(
        engine.rollups(None).len(),
        2,
        "override removed: database's again"
    );
}

#[test]
fn lifecycle_policy_refuses_a_retention_its_new_rollup_has_not_absorbed() {
    const DAY: i64 = 24 * 60 * MIN;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    // Data from 1970: older than any retention cut measured from now.
    write(&engine, &[("a", 10 * MIN, 1.0), ("b", 11 * MIN, 2.0)]);
    engine.flush().unwrap();
    let both = rollups_policy(&[spec(MIN)], Some(30 * DAY));
    let err = engine
        .set_lifecycle("db", Some("s"), Some(both.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("_rollup_1m_s") && err.contains("is new"),
        "{err}"
    );
    assert!(
        engine.rollups(None).is_empty(),
        "a refused policy changes nothing"
    );
    assert_eq!(
        engine.lifecycle("db", "s").unwrap().1,
        PolicySource::Default
    );
    // The same at database level, for the streams without an override.
    let err = engine
        .set_lifecycle("db", None, Some(both.clone()))
        .unwrap_err();
    assert!(err.to_string().contains("_rollup_1m_s"), "{err}");

    // Rollups first, then back-fill, then the retention: accepted.
    engine
        .set_lifecycle("db", Some("s"), Some(rollups_policy(&[spec(MIN)], None)))
        .unwrap();
    let err = engine
        .set_lifecycle("db", Some("s"), Some(both.clone()))
        .unwrap_err();
    assert!(err.to_string().contains("back-filling"), "{err}");
    // An operator's maintenance run (no background thread here) finishes the back-fill first.
    let run = engine.run_lifecycle().unwrap();
    assert!(run.rollup_backfill_steps > 0, "{run:?}");
    assert!(run.errors.is_empty(), "{run:?}");
    engine.set_lifecycle("db", Some("s"), Some(both)).unwrap();
    // The raw rows are past retention; the rollup keeps them (its `keep` is forever).
    assert!(all(&engine, "s").iter().all(|b| b.times.is_empty()));
    let rolled = all(&engine, "_rollup_1m_s");
    assert_eq!(rolled.iter().map(|b| b.times.len()).sum::<usize>(), 2);
    let (p, source) = engine.lifecycle("db", "_rollup_1m_s").unwrap();
    assert_eq!((p.retention, source), (None, PolicySource::Rollup));
}

#[test]
fn rollup_keep_is_the_retention_of_the_rollup_stream() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let keep = RollupSpec {
        every: MIN,
        keep: Some(400 * MIN),
    };
    engine
        .set_lifecycle(
            "db",
            None,
            Some(rollups_policy(&[keep, spec(60 * MIN)], None)),
        )
        .unwrap();
    let (p, source) = engine.lifecycle("db", "_rollup_1m_s").unwrap();
    assert_eq!(
        (p.retention, p.hot, source),
        (Some(400 * MIN), None, PolicySource::Rollup)
    );
    assert!(p.rollups.is_empty());
    let (p, _) = engine.lifecycle("db", "_rollup_1h_s").unwrap();
    assert_eq!(p.retention, None, "kept forever");
    // 1970 rows under a 400-minute keep: the 1-minute rollup holds none of them for a reader.
    write(&engine, &[("a", 10 * MIN, 1.0)]);
    engine.run_rollups(100).unwrap();
    assert!(
        all(&engine, "_rollup_1m_s")
            .iter()
            .all(|b| b.times.is_empty())
    );
    assert_eq!(
        all(&engine, "_rollup_1h_s")
            .iter()
            .map(|b| b.times.len())
            .sum::<usize>(),
        1
    );
}

#[test]
fn rollups_follow_the_policy_even_when_their_file_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    {
        let engine = Engine::open(cfg.clone()).unwrap();
        write(&engine, &[("a", 10 * MIN, 1.0)]);
        engine
            .set_lifecycle("db", None, Some(rollups_policy(&[spec(MIN)], None)))
            .unwrap();
        engine.run_rollups(100).unwrap();
        engine.shutdown().unwrap();
    }
    // As after a crash between saving LIFECYCLE and rollups.json.
    std::fs::remove_file(dir.path().join("rollups.json")).unwrap();
    let engine = Engine::open(cfg).unwrap();
    let status = engine.rollups(None);
    assert_eq!(
        status.iter().map(|s| s.table.as_str()).collect::<Vec<_>>(),
        ["_rollup_1m_s"]
    );
    engine.run_rollups(100).unwrap();
    assert_eq!(stored(&engine, MIN), expected(&engine, MIN));
}

#[test]
fn a_late_point_in_a_window_cut_by_retention_leaves_the_absorbed_row_whole() {
    const DAY: i64 = 24 * 60 * MIN;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let now = crate::engine::policy::now_ns();
    // A day-long window three days back; the retention will cut it in the middle.
    let w = window_start(now - 3 * DAY, DAY);
    write(
        &engine,
        &[("a", w + MIN, 1.0), ("a", w + DAY - 3 * MIN, 5.0)],
    );
    engine
        .set_lifecycle("db", Some("s"), Some(rollups_policy(&[spec(DAY)], None)))
        .unwrap();
    engine.run_rollups(100).unwrap();
    let whole = stored(&engine, DAY);
    let retention = now - (w + DAY / 2);
    engine
        .set_lifecycle(
            "db",
            Some("s"),
            Some(rollups_policy(&[spec(DAY)], Some(retention))),
        )
        .unwrap();
    // A device back online sends a point after the cut, in the cut window, and one in the
    // next window.
    write(
        &engine,
        &[("a", w + DAY - MIN, 3.0), ("a", w + DAY + MIN, 4.0)],
    );
    engine.run_rollups(100).unwrap();
    let after = stored(&engine, DAY);
    let key = |t| {
        let (k, _) = whole.keys().next().unwrap();
        (k.clone(), t)
    };
    // The cut window's raw data is no longer whole: its row stays as absorbed (min 1, first
    // 1, two points), not rebuilt from the points after the cut.
    assert_eq!(after.get(&key(w)), whole.get(&key(w)));
    // The next window is whole and absorbs its late point, as a recomputation gives it.
    let fresh = expected(&engine, DAY);
    assert_eq!(after.get(&key(w + DAY)), fresh.get(&key(w + DAY)));
    assert!(after.contains_key(&key(w + DAY)));
}
