//! Snapshot reads: one view per read that later writes, flushes and compactions do not change;
//! series streamed one window (partition) at a time; block statistics handed out only for blocks
//! no other source overlaps, and equal to what decoding the rows gives.

use std::sync::Arc;

use crate::common::{Row, all, batch, flatten};
use strata_storage::{
    Engine, EngineConfig, ReadMode, ScanRequest, SeriesBatch, SeriesPiece, TimeGroups, Value,
};

const DAY: i64 = 86_400 * 1_000_000_000;
const STEP: i64 = 10 * 1_000_000_000;
const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3_600 * SECOND;

fn engine(dir: &std::path::Path) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.background = false;
    Engine::open(cfg).unwrap()
}

/// `n` points of device `d` every 10 s from `start`, field `v` = `base + i`.
fn points(d: &str, start: i64, n: i64, base: f64) -> Vec<Row> {
    points_every(STEP, d, start, n, base)
}

fn points_every(step: i64, d: &str, start: i64, n: i64, base: f64) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let v = Value::Float(base + i as f64);
            (d.to_string(), start + i * step, vec![("v".to_string(), v)])
        })
        .collect()
}

fn read_all(engine: &Engine, req: &ScanRequest, mode: ReadMode) -> Vec<SeriesBatch> {
    let snap = Arc::new(engine.snapshot(req, None, mode).unwrap().unwrap());
    (0..snap.series_count())
        .filter_map(|i| snap.read_series(i).unwrap())
        .collect()
}

#[test]
fn a_snapshot_does_not_see_later_writes_flushes_or_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine
        .write(&batch("db", "s", &points("a", 0, 100, 0.0)))
        .unwrap();
    engine.flush().unwrap();
    engine
        .write(&batch("db", "s", &points("a", 100 * STEP, 100, 100.0)))
        .unwrap();
    let before = flatten(&engine.scan(&all("db", "s")).unwrap());
    let snap = Arc::new(
        engine
            .snapshot(&all("db", "s"), None, ReadMode::Values)
            .unwrap()
            .unwrap(),
    );
    // Overwrite some points, add a device, flush and compact (input segments are deleted).
    engine
        .write(&batch("db", "s", &points("a", 0, 50, 1000.0)))
        .unwrap();
    engine
        .write(&batch("db", "s", &points("b", 0, 10, 0.0)))
        .unwrap();
    engine.flush().unwrap();
    engine.compact().unwrap();
    let seen: Vec<SeriesBatch> = (0..snap.series_count())
        .filter_map(|i| snap.read_series(i).unwrap())
        .collect();
    assert_eq!(flatten(&seen), before);
    // A new snapshot sees the new state.
    let after = flatten(&engine.scan(&all("db", "s")).unwrap());
    assert_ne!(after, before);
    assert_eq!(after.len(), before.len() + 10);
}

#[test]
fn a_cursor_yields_windows_within_one_partition_and_equals_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    // Three days of one device; day 1 overwritten in part from the memtable.
    let per_day = DAY / STEP;
    engine
        .write(&batch("db", "s", &points("a", 0, 3 * per_day, 0.0)))
        .unwrap();
    engine.flush().unwrap();
    engine
        .write(&batch("db", "s", &points("a", DAY + 5 * STEP, 20, -1.0)))
        .unwrap();
    let req = all("db", "s");
    let snap = Arc::new(
        engine
            .snapshot(&req, None, ReadMode::Values)
            .unwrap()
            .unwrap(),
    );
    assert_eq!(snap.series_count(), 1);
    let mut cursor = snap.cursor(0);
    let mut windows = Vec::new();
    while let Some(b) = cursor.next_batch().unwrap() {
        windows.push(b);
    }
    // A window per stored block (8,192 + 448 rows a day), none across days; day 1's first
    // block merged with the memtable rows inside it.
    let days: Vec<i64> = windows.iter().map(|w| w.times[0] / DAY).collect();
    assert_eq!(days, [0, 0, 1, 1, 2, 2]);
    for w in &windows {
        assert!(w.times.iter().all(|t| t / DAY == w.times[0] / DAY));
        assert!(w.times.windows(2).all(|p| p[0] < p[1]));
    }
    assert_eq!(flatten(&windows), flatten(&engine.scan(&req).unwrap()));
    assert_eq!(
        flatten(&read_all(&engine, &req, ReadMode::Points)),
        flatten(&engine.scan_rows(&req).unwrap())
    );
}

#[test]
fn snapshot_restricted_to_devices_reads_only_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    for d in ["a", "b", "c"] {
        engine
            .write(&batch("db", "s", &points(d, 0, 5, 0.0)))
            .unwrap();
    }
    let devices = vec!["c".to_string(), "a".to_string()];
    let snap = engine
        .snapshot(&all("db", "s"), Some(&devices), ReadMode::Values)
        .unwrap()
        .unwrap();
    assert_eq!(snap.series_count(), 2);
    let order: Vec<String> = snap
        .series_of_devices(&devices)
        .into_iter()
        .map(|i| snap.series_key(i).device.clone())
        .collect();
    assert_eq!(order, vec!["c", "a"]);
}

/// (count, sum, min, max) of `v` from pieces, blocks folded from their statistics.
fn fold(pieces: &[SeriesPiece]) -> (u64, f64, f64, f64) {
    let (mut n, mut sum, mut min, mut max) = (0u64, 0.0, f64::INFINITY, f64::NEG_INFINITY);
    for p in pieces {
        match p {
            SeriesPiece::Rows(b) => {
                for i in 0..b.times.len() {
                    if let Some(Value::Float(v)) = b.columns[0].get(i) {
                        (n, sum, min, max) = (n + 1, sum + v, min.min(v), max.max(v));
                    }
                }
            }
            SeriesPiece::Stats(s) => {
                let st = s.fields[0].expect("block has values");
                n += u64::from(st.count);
                sum += st.sum;
                min = min.min(f64::from_bits(st.min));
                max = max.max(f64::from_bits(st.max));
            }
            SeriesPiece::Runs { runs, .. } => {
                for st in runs.iter().filter_map(|r| r.fields[0]) {
                    n += u64::from(st.count);
                    sum += st.sum;
                    min = min.min(f64::from_bits(st.min));
                    max = max.max(f64::from_bits(st.max));
                }
            }
        }
    }
    (n, sum, min, max)
}

/// Reading values, a block that holds no value of the wanted fields yields nothing (no empty
/// statistics piece, no empty runs), as its rows would yield none; reading every point, it
/// yields its rows' groups.
#[test]
fn blocks_without_the_wanted_fields_yield_nothing_when_reading_values() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    // Device `a` writes only `v`; device `b` gives the stream a field `w` too.
    engine
        .write(&batch(
            "db",
            "s",
            &points_every(SECOND, "a", 0, 10_000, 0.0),
        ))
        .unwrap();
    let w = vec![(
        "b".to_string(),
        0,
        vec![("w".to_string(), Value::Float(1.0))],
    )];
    engine.write(&batch("db", "s", &w)).unwrap();
    engine.flush().unwrap();
    let req = ScanRequest {
        device: Some("a".into()),
        fields: Some(vec!["w".into()]),
        ..all("db", "s")
    };
    let pieces = |mode, groups: &dyn TimeGroups| {
        let snap = Arc::new(engine.snapshot(&req, None, mode).unwrap().unwrap());
        let (mut pieces, mut cursor) = (Vec::new(), snap.cursor(0));
        while cursor.next_piece(groups, &mut pieces).unwrap() {}
        pieces
    };
    let whole_blocks = |_: i64, _: i64| true;
    let groups: [&dyn TimeGroups; 2] = [&whole_blocks, &Every(HOUR)];
    for g in groups {
        let read = pieces(ReadMode::Values, g);
        assert!(read.is_empty(), "{read:?}");
        assert!(!pieces(ReadMode::Points, g).is_empty());
    }
}

/// Groups of `every` ns from time 0 (as an hourly `date_bin` would make).
struct Every(i64);

impl TimeGroups for Every {
    fn one_group(&self, min: i64, max: i64) -> bool {
        min.div_euclid(self.0) == max.div_euclid(self.0)
    }
    fn group_end(&self, t: i64) -> Option<i64> {
        (t.div_euclid(self.0) + 1).checked_mul(self.0)
    }
}

/// Blocks that span several groups are decoded and reduced to one statistics entry per run of
/// rows in a group, without rows: the runs follow the group bounds and the range, skip the
/// rows of a sparse field that hold no value, and agree with the decoded rows.
#[test]
fn blocks_spanning_groups_reduce_to_runs_that_agree_with_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    // 20,000 points a second apart (5.6 hours: several blocks, each over several hours); `w`
    // only on every third point, `v` on all.
    let rows: Vec<Row> = (0..20_000i64)
        .map(|i| {
            let mut fields = vec![("v".to_string(), Value::Float(i as f64 * 0.5))];
            if i % 3 == 0 {
                fields.push(("w".to_string(), Value::Float(-(i as f64))));
            }
            ("a".to_string(), i * SECOND, fields)
        })
        .collect();
    engine.write(&batch("db", "s", &rows)).unwrap();
    engine.flush().unwrap();
    // A range that cuts the first and the last block.
    let (first, last) = (1_000 * SECOND, 18_500 * SECOND - 1);
    let req = ScanRequest {
        start: first,
        end: last + 1,
        ..all("db", "s")
    };
    for mode in [ReadMode::Points, ReadMode::Values] {
        let snap = Arc::new(engine.snapshot(&req, None, mode).unwrap().unwrap());
        let fields: Vec<&str> = snap.fields().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(fields, ["v", "w"]);
        let mut pieces = Vec::new();
        let mut cursor = snap.cursor(0);
        while cursor.next_piece(&Every(HOUR), &mut pieces).unwrap() {}
        assert!(pieces.iter().all(|p| matches!(p, SeriesPiece::Runs { .. })));
        let mut rows_read = 0;
        // Per hour, per field: (count, sum, min, max) from the runs.
        let mut got = std::collections::BTreeMap::<(i64, usize), (u32, f64, f64, f64)>::new();
        for p in &pieces {
            let SeriesPiece::Runs { rows, runs, .. } = p else {
                unreachable!()
            };
            rows_read += rows;
            for r in runs.iter() {
                let hour = r.min_time.div_euclid(HOUR);
                assert_eq!(
                    hour,
                    r.max_time.div_euclid(HOUR),
                    "a run stays in its group"
                );
                for (f, st) in r.fields.iter().enumerate() {
                    let Some(st) = st else { continue };
                    let e = got.entry((hour, f)).or_insert((0, 0.0, f64::MAX, f64::MIN));
                    e.0 += st.count;
                    e.1 += st.sum;
                    e.2 = e.2.min(f64::from_bits(st.min));
                    e.3 = e.3.max(f64::from_bits(st.max));
                }
            }
        }
        assert_eq!(rows_read, 17_500);
        let mut want = std::collections::BTreeMap::<(i64, usize), (u32, f64, f64, f64)>::new();
        for (_, t, fields) in rows.iter().filter(|r| r.1 >= first && r.1 <= last) {
            for (name, v) in fields {
                let Value::Float(v) = v else { unreachable!() };
                let f = usize::from(name == "w");
                let e = want
                    .entry((t.div_euclid(HOUR), f))
                    .or_insert((0, 0.0, f64::MAX, f64::MIN));
                (e.0, e.1, e.2, e.3) = (e.0 + 1, e.1 + v, e.2.min(*v), e.3.max(*v));
            }
        }
        assert_eq!(got.len(), want.len());
        for (k, w) in &want {
            let g = got[k];
            assert_eq!((g.0, g.2, g.3), (w.0, w.2, w.3), "{k:?}");
            assert!(
                (g.1 - w.1).abs() <= 1e-9 * w.1.abs().max(1.0),
                "{k:?}: {g:?} {w:?}"
            );
        }
    }
}

#[test]
fn block_statistics_answer_whole_blocks_and_agree_with_decoding() {
    // 30,000 points 2 s apart, all in one day: several 8192-row blocks in one segment.
    const STEP: i64 = 2_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    // 30,000 points in one day: several 8192-row blocks in one segment.
    engine
        .write(&batch("db", "s", &points_every(STEP, "a", 0, 30_000, 0.5)))
        .unwrap();
    engine.flush().unwrap();
    // Range cutting the first and last blocks.
    let req = ScanRequest {
        start: 100 * STEP,
        end: 29_000 * STEP,
        ..all("db", "s")
    };
    let snap = Arc::new(
        engine
            .snapshot(&req, None, ReadMode::Values)
            .unwrap()
            .unwrap(),
    );
    let mut pieces = Vec::new();
    let mut cursor = snap.cursor(0);
    while cursor.next_piece(&|_, _| true, &mut pieces).unwrap() {}
    let stats = pieces
        .iter()
        .filter(|p| matches!(p, SeriesPiece::Stats(_)))
        .count();
    assert!(
        stats >= 1,
        "whole blocks inside the range come from statistics"
    );
    assert!(pieces.len() > stats, "blocks cut by the range are decoded");
    let cut = pieces.len() - stats;
    let expected: Vec<f64> = (100..29_000).map(|i| 0.5 + i as f64).collect();
    let (n, sum, min, max) = fold(&pieces);
    assert_eq!(n, expected.len() as u64);
    assert!((sum - expected.iter().sum::<f64>()).abs() < 1e-6);
    assert_eq!((min, max), (100.5, 28_999.5));

    // A memtable overwrite inside the first block (one of those cut by the range): that block
    // is merged with it, the others still come from statistics, and the overwritten value wins.
    engine
        .write(&batch("db", "s", &points("a", 200 * STEP, 1, -5.0)))
        .unwrap();
    let snap = Arc::new(
        engine
            .snapshot(&req, None, ReadMode::Values)
            .unwrap()
            .unwrap(),
    );
    let mut pieces = Vec::new();
    let mut cursor = snap.cursor(0);
    while cursor.next_piece(&|_, _| true, &mut pieces).unwrap() {}
    let rows = pieces
        .iter()
        .filter(|p| matches!(p, SeriesPiece::Rows(_)))
        .count();
    let stats2 = pieces
        .iter()
        .filter(|p| matches!(p, SeriesPiece::Stats(_)))
        .count();
    assert_eq!((rows, stats2), (cut, stats), "{} pieces", pieces.len());
    let (n2, _, min2, _) = fold(&pieces);
    assert_eq!((n2, min2), (n, -5.0));

    // A caller that refuses statistics gets rows only.
    let mut pieces = Vec::new();
    let mut cursor = snap.cursor(0);
    while cursor.next_piece(&|_, _| false, &mut pieces).unwrap() {}
    assert!(pieces.iter().all(|p| matches!(p, SeriesPiece::Rows(_))));
}
