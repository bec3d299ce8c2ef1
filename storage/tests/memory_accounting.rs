//! `EngineStats::memtable_bytes` against the heap the process really holds: a counting global
//! allocator measures live heap bytes around writes that only grow the memtable, and the engine's
//! figure must match it closely (it counts capacities, string bytes and per-series overhead, not
//! only the values pushed).

// The counting allocator must implement `GlobalAlloc` (an unsafe trait); it only forwards to
// `System` with the caller's arguments.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use strata_storage::{Column, ColumnData, Engine, EngineConfig, SeriesKey, TableWrite, WriteBatch};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the same arguments, so `System`'s guarantees hold.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One row per series for `series` series at time `t`: a float, an integer and a 100-byte string.
fn rows(series: usize, t: i64) -> WriteBatch {
    let float = Column {
        name: "f".into(),
        data: ColumnData::Float(vec![t as f64; series]),
        valid: vec![true; series],
    };
    let int = Column {
        name: "i".into(),
        data: ColumnData::Integer(vec![t; series]),
        valid: vec![true; series],
    };
    let mut text = Column::new("s", strata_storage::FieldType::String);
    for _ in 0..series {
        text.data
            .push_value(&strata_storage::Value::String("z".repeat(100)));
        text.valid.push(true);
    }
    WriteBatch {
        database: "db".into(),
        tables: vec![TableWrite {
            stream: "m".into(),
            series: (0..series)
                .map(|i| SeriesKey {
                    device: format!("device-{i}"),
                    tags: vec![],
                })
                .collect(),
            row_series: (0..series as u32).collect(),
            times: vec![t; series],
            columns: vec![float, int, text],
        }],
    }
}

#[test]
fn memtable_bytes_follow_the_live_heap() {
    const SERIES: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.background = false;
    cfg.memtable_bytes = 1 << 30;
    let engine = Engine::open(cfg).unwrap();
    // Create the series (catalog, last-value cache) first; later writes only grow the memtable.
    engine.write(&rows(SERIES, 0)).unwrap();
    let heap_before = LIVE.load(Ordering::Relaxed);
    let memtable_before = engine.stats().memtable_bytes;
    // 1,100 rows per series: buffers have grown to 2,048 slots, so counting only the values
    // pushed would miss almost half of what is allocated.
    for t in 1..=1_100 {
        engine.write(&rows(SERIES, t)).unwrap();
    }
    let heap = (LIVE.load(Ordering::Relaxed) - heap_before) as f64;
    let memtable = (engine.stats().memtable_bytes - memtable_before) as f64;
    eprintln!("live heap grew by {heap} bytes, memtable_bytes by {memtable}");
    // 55,000 rows × (8 time + 8 + 8 + 100 string + 4 string end) = 7 MB of data at least.
    assert!(memtable >= 7_040_000.0, "{memtable}");
    let ratio = memtable / heap;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "memtable_bytes / live heap = {ratio}"
    );
}
