//! Write-amplification regression test of the picker driven through the engine (bytes counted,
//! not time), the picker's background entry point end to end, and its yield to a due flush.

use std::path::Path;

use super::super::maintenance::compact_picked;
use crate::{
    Column, Durability, Engine, EngineConfig, FieldType, SeriesKey, TableWrite, Value, WriteBatch,
};

const WINDOW: i64 = 400_000;

fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.background = false;
    c.durability = Durability::None;
    c.partition_ns = WINDOW;
    c
}

/// 20 devices, one float field, times `[from, from + 10_000)` every 10.
fn slice(from: i64) -> WriteBatch {
    let mut t = TableWrite {
        stream: "m".into(),
        ..Default::default()
    };
    t.series = (0..20)
        .map(|d| SeriesKey {
            device: format!("d{d}"),
            tags: vec![],
        })
        .collect();
    let mut c = Column::new("v", FieldType::Float);
    for d in 0..20u32 {
        for time in (from..from + 10_000).step_by(10) {
            t.row_series.push(d);
            t.times.push(time);
            c.data
                .push_value(&Value::Float(((time / 10) % 97) as f64 + d as f64));
            c.valid.push(true);
        }
    }
    t.columns.push(c);
    WriteBatch {
        database: "db".into(),
        tables: vec![t],
    }
}

/// Time-ordered data, 40 flushes per window, the picker run after every flush: each byte is
/// rewritten a few times (tiers), not once per few flushes as when every window with 4 segments
/// was merged whole (that policy rewrites 4.2x the flushed bytes here; the picker about 1.7x).
#[test]
fn ordered_data_is_rewritten_a_bounded_number_of_times() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    for i in 0..120 {
        engine.write(&slice(i * 10_000)).unwrap();
        engine.flush().unwrap();
        compact_picked(&engine.inner, 4).unwrap();
    }
    let s = engine.stats();
    let ratio = s.compaction_bytes_written as f64 / s.flush_bytes_written as f64;
    assert!(s.compactions > 0);
    assert!(
        ratio <= 3.0,
        "compaction rewrote {ratio:.2}x the flushed bytes ({} compactions, {} segments)",
        s.compactions,
        s.segments
    );
    // Cooled windows were folded to one segment each; only the newest still has several.
    let layout: Vec<(i64, u64, u64)> = engine
        .inner
        .read_state()
        .unwrap()
        .segments
        .iter()
        .map(|l| (l.meta.partition_start / WINDOW, l.meta.seq, l.meta.bytes))
        .collect();
    assert!(
        s.segments <= 3 + 4,
        "{} segments left: {layout:?}",
        s.segments
    );
    let rows: usize = engine
        .scan(&crate::ScanRequest {
            database: "db".into(),
            stream: "m".into(),
            start: i64::MIN,
            end: i64::MAX,
            ..Default::default()
        })
        .unwrap()
        .iter()
        .map(|b| b.times.len())
        .sum();
    assert_eq!(rows, 120 * 20 * 1000);
}

/// A late batch into a compacted window does not rewrite it; enough late data does.
#[test]
fn late_data_rewrites_a_cooled_window_only_when_it_amounts_to_something() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    for i in 0..40 {
        engine.write(&slice(i * 10_000)).unwrap();
        engine.flush().unwrap();
    }
    engine.compact().unwrap();
    // The next window receives data; window 0 is cool and holds one segment.
    engine.write(&slice(WINDOW)).unwrap();
    engine.flush().unwrap();
    let before = engine.stats();
    engine.write(&slice(5)).unwrap();
    engine.flush().unwrap();
    assert_eq!(compact_picked(&engine.inner, 4).unwrap(), 0);
    assert_eq!(
        engine.stats().compaction_bytes_written,
        before.compaction_bytes_written
    );
    let big = window_segments(&engine, 0)[0];
    for i in 1..24 {
        engine.write(&slice(i * 10_000 + 5)).unwrap();
        engine.flush().unwrap();
        compact_picked(&engine.inner, 4).unwrap();
    }
    let s = engine.stats();
    let late = s.flush_bytes_written - before.flush_bytes_written;
    let rewritten = s.compaction_bytes_written - before.compaction_bytes_written;
    assert!(rewritten > 0, "the late data was never folded in");
    // Merging the window whole whenever it has 4 segments rewrites ~15x (big + late) here.
    assert!(
        rewritten as f64 <= 3.0 * (big + late) as f64,
        "rewrote {rewritten} bytes for {late} late bytes into a {big}-byte window"
    );
    assert!(
        window_segments(&engine, 0).len() <= 4,
        "{:?}",
        window_segments(&engine, 0)
    );
}

fn window_segments(engine: &Engine, window: i64) -> Vec<u64> {
    let state = engine.inner.read_state().unwrap();
    state
        .segments
        .iter()
        .filter(|l| l.meta.partition_start == window * WINDOW)
        .map(|l| l.meta.bytes)
        .collect()
}

/// Four flushed segments in each of two windows (two jobs for the picker), in an engine whose
/// memtable flushes at `memtable_bytes`.
fn two_windows_of_four(memtable_bytes: usize) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.memtable_bytes = memtable_bytes;
    let engine = Engine::open(c).unwrap();
    for window in [0, WINDOW] {
        for i in 0..4 {
            engine.write(&slice(window + i * 10_000)).unwrap();
            engine.flush().unwrap();
        }
    }
    (dir, engine)
}

/// A picked compaction stops between jobs once a flush is due, and the next pass does the rest.
#[test]
fn picked_compaction_yields_to_a_due_flush() {
    let (_keep, engine) = two_windows_of_four(64 << 20);
    assert_eq!(
        compact_picked(&engine.inner, 4).unwrap(),
        2,
        "nothing waits: both jobs"
    );

    let (_keep, engine) = two_windows_of_four(1);
    // Applied without the write path's inline flush, as a burst fills the memtable while a
    // background compaction runs.
    let limited = super::super::apply::Limited::No;
    super::super::apply::append(&engine.inner, &slice(2 * WINDOW), limited).unwrap();
    assert_eq!(
        compact_picked(&engine.inner, 4).unwrap(),
        1,
        "a flush is due: one job"
    );
    engine.flush().unwrap();
    assert_eq!(
        compact_picked(&engine.inner, 4).unwrap(),
        1,
        "the other window"
    );
    assert_eq!(engine.compact().unwrap(), 0, "nothing left to merge");
}
