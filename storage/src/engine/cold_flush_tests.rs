//! Flush never waits for a move: a move is caught in the middle (its object put held by the
//! test store, `objfaults::hold_puts`) while another database is written; the background thread
//! still flushes, twice, and a direct flush completes, before the move is let go. Then the move
//! finishes and every row is there exactly once. Two ways a move runs: started by the
//! background pass (it runs on its own thread, not on the one that flushes) and started by an
//! operator (`run_lifecycle` on another thread). A held move also leaves compaction free: the
//! background pass compacts another window meanwhile, not the windows being moved. No timing is asserted: a wait that never ends fails after a generous deadline
//! (a deadlock guard, not a measurement).

use std::time::{Duration, Instant};

use crate::engine::policy::now_ns;
use crate::lifecycle::{LifecyclePolicy, TierStatus};
use crate::objfaults;
use crate::{Column, Engine, EngineConfig, FieldType, SeriesKey, TableWrite, Value, WriteBatch};

const DAY: i64 = 86_400_000_000_000;

/// Long enough for any loaded test machine; only reached when something waits forever.
const DEADLOCK_GUARD: Duration = Duration::from_secs(120);

/// Waits until `done` holds; panics (naming `what`) when it never does.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < DEADLOCK_GUARD,
            "{what} did not happen while a move was held: flush waits for the move"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `n` hourly points of devices d0..d{devices} in `database`, from `start`.
fn batch(database: &str, devices: usize, start: i64, n: usize) -> WriteBatch {
    let mut t = TableWrite {
        stream: "m".into(),
        columns: vec![Column::new("v", FieldType::Float)],
        ..Default::default()
    };
    for d in 0..devices {
        t.series.push(SeriesKey {
            device: format!("d{d}"),
            tags: vec![],
        });
        for i in 0..n {
            t.row_series.push(d as u32);
            t.times.push(start + i as i64 * 3_600_000_000_000);
            t.columns[0].data.push_value(&Value::Float(i as f64));
            t.columns[0].valid.push(true);
        }
    }
    WriteBatch {
        database: database.into(),
        tables: vec![t],
    }
}

fn rows_of(engine: &Engine, database: &str) -> usize {
    let req = crate::ScanRequest {
        database: database.into(),
        stream: "m".into(),
        start: i64::MIN,
        end: i64::MAX,
        ..Default::default()
    };
    engine
        .scan(&req)
        .unwrap()
        .iter()
        .map(|b| b.times.len())
        .sum()
}

/// An engine with a background thread, a tiny memtable (every write asks for a flush) and old
/// data in database `old` (three day partitions, due to move once the policy is set).
fn setup(
    dir: &std::path::Path,
    cold: &std::path::Path,
    lifecycle_interval: Duration,
) -> (Engine, String) {
    let url = format!("file://{}", cold.display());
    let mut c = EngineConfig::new(dir);
    c.cold_store = Some(url.clone());
    c.background_interval = Duration::from_millis(10);
    c.lifecycle_interval = lifecycle_interval;
    c.memtable_bytes = 1;
    let engine = Engine::open(c).unwrap();
    let today = now_ns().div_euclid(DAY) * DAY;
    for d in 0..3 {
        engine
            .write(&batch("old", 4, today - (10 - d) * DAY, 24))
            .unwrap();
    }
    engine.flush().unwrap();
    (engine, url)
}

fn hot_3_days() -> LifecyclePolicy {
    LifecyclePolicy {
        hot: Some(3 * DAY),
        ..LifecyclePolicy::default()
    }
}

/// With a move held at its first object put: writes to database `new` are flushed by the
/// background thread (twice) and by a direct flush.
fn flushes_while_held(engine: &Engine, url: &str) {
    wait_for("the move reaching its first put", || {
        objfaults::puts_waiting(url) > 0
    });
    let today = now_ns().div_euclid(DAY) * DAY;
    for round in 0..2 {
        let before = engine.stats().flushes;
        engine
            .write(&batch("new", 2, today + round * 3_600_000_000_000, 1))
            .unwrap();
        wait_for("a background flush", || engine.stats().flushes > before);
    }
    engine.write(&batch("new", 2, today - DAY, 1)).unwrap();
    engine.flush().unwrap();
    assert_eq!(engine.stats().memtable_bytes, 0, "every write flushed");
    assert!(objfaults::puts_waiting(url) > 0, "the move is still held");
}

/// After the held move is let go: it finishes, and every row is there once.
fn finish(engine: &Engine, url: &str) {
    objfaults::release_puts(url);
    wait_for("the move finishing", || {
        cold_rows(engine, "old") == 3 * 4 * 24
    });
    assert_eq!(rows_of(engine, "old"), 3 * 4 * 24);
    assert_eq!(rows_of(engine, "new"), 2 * 3);
}

/// Lets held puts go when dropped: a failed assertion must not leave the lifecycle thread
/// (which `Engine::drop` joins) waiting forever, turning a failure into a hang. Declared after
/// the engine, so it is dropped first.
struct Release(String);

impl Drop for Release {
    fn drop(&mut self) {
        objfaults::release_puts(&self.0);
    }
}

/// The sum of `pick` over `database`'s streams in `tier`.
fn tier_sum(engine: &Engine, database: &str, tier: &str, pick: fn(&TierStatus) -> u64) -> u64 {
    engine
        .lifecycle_status()
        .unwrap()
        .0
        .iter()
        .filter(|t| t.database == database && t.tier == tier)
        .map(pick)
        .sum()
}

/// [`setup`] with the store's puts held, then `old` moved after 3 days and the background run's
/// move waited for until it is held at its first object put: data and cold directories, the
/// engine, and the guard that releases the puts.
fn held_background_move() -> (tempfile::TempDir, tempfile::TempDir, Engine, Release) {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let (engine, url) = setup(dir.path(), cold.path(), Duration::from_millis(10));
    objfaults::hold_puts(&url);
    let release = Release(url.clone());
    engine
        .set_lifecycle("old", None, Some(hot_3_days()))
        .unwrap();
    wait_for("the move reaching its first put", || {
        objfaults::puts_waiting(&url) > 0
    });
    (dir, cold, engine, release)
}

/// Writes one point of device d0 into `database` at `start` and waits for the background
/// flush that writes it (one more segment).
fn write_flushed(engine: &Engine, database: &str, start: i64) {
    let before = engine.stats().flushes;
    engine.write(&batch(database, 1, start, 1)).unwrap();
    wait_for("a background flush", || engine.stats().flushes > before);
}

/// Hot segment files of `database`.
fn hot_files(engine: &Engine, database: &str) -> u64 {
    tier_sum(engine, database, "hot", |t| t.files)
}

/// Rows of `database` in the cold tier.
fn cold_rows(engine: &Engine, database: &str) -> u64 {
    tier_sum(engine, database, "cold", |t| t.rows)
}

#[test]
fn the_background_thread_flushes_while_its_own_move_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let (engine, url) = setup(dir.path(), cold.path(), Duration::from_millis(10));
    objfaults::hold_puts(&url);
    let _release = Release(url.clone());
    // The next background lifecycle run starts the move, which stops at its put.
    engine
        .set_lifecycle("old", None, Some(hot_3_days()))
        .unwrap();
    flushes_while_held(&engine, &url);
    finish(&engine, &url);
}

#[test]
fn the_background_thread_flushes_while_an_operators_move_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    // Only the first background pass runs the lifecycle (before any policy exists).
    let (engine, url) = setup(dir.path(), cold.path(), Duration::from_secs(3600));
    wait_for("the first background lifecycle run", || {
        engine.last_lifecycle_run().is_some()
    });
    objfaults::hold_puts(&url);
    let _release = Release(url.clone());
    engine
        .set_lifecycle("old", None, Some(hot_3_days()))
        .unwrap();
    std::thread::scope(|s| {
        let run = s.spawn(|| engine.run_lifecycle().unwrap());
        flushes_while_held(&engine, &url);
        objfaults::release_puts(&url);
        let report = run.join().unwrap();
        assert!(report.errors.is_empty(), "{report:?}");
        assert_eq!(report.moved.len(), 3, "{report:?}");
    });
    finish(&engine, &url);
}

/// A move runs without the compaction lock: while it is held, the background pass compacts a
/// window of another database, and leaves alone a window being moved, though late rows gave it
/// more segments than the trigger. Once the move ends every row is there once, moved cold by the
/// runs that follow.
#[test]
fn compaction_goes_on_beside_a_held_move_outside_its_windows() {
    let (_dir, _cold, engine, held) = held_background_move();
    let url = held.0.as_str();
    let today = now_ns().div_euclid(DAY) * DAY;
    // Late rows into the oldest window being moved: five more segments there (one per flush).
    let moving_window = today - 10 * DAY;
    for i in 0..5 {
        write_flushed(&engine, "old", moving_window + (30 + i) * 60_000_000_000);
    }
    let old_files = hot_files(&engine, "old");
    assert!(
        old_files >= 8,
        "3 moving + 5 late segments, got {old_files}"
    );
    // Six segments in one window of `new`: over the trigger (4), compacted meanwhile.
    let compactions = engine.stats().compactions;
    for i in 0..6 {
        write_flushed(&engine, "new", today + i * 60_000_000_000);
    }
    wait_for("a compaction of the other database", || {
        engine.stats().compactions > compactions && hot_files(&engine, "new") < 6
    });
    assert!(objfaults::puts_waiting(url) > 0, "the move is still held");
    assert_eq!(
        hot_files(&engine, "old"),
        old_files,
        "a window being moved was compacted"
    );
    objfaults::release_puts(url);
    let total = 3 * 4 * 24 + 5;
    wait_for("every old row cold", || {
        hot_files(&engine, "old") == 0 && cold_rows(&engine, "old") == total as u64
    });
    assert_eq!(rows_of(&engine, "old"), total);
    assert_eq!(rows_of(&engine, "new"), 6);
}

/// An erase while a move is held: merges wait (a merge's output takes its newest input's `seq`,
/// past the tombstone's mark, and would show the erased rows again), the erased rows stay
/// hidden, and once the move ends the purge removes them and compaction goes on.
#[test]
fn an_erase_during_a_held_move_stays_erased() {
    let (_dir, _cold, engine, held) = held_background_move();
    let url = held.0.as_str();
    let today = now_ns().div_euclid(DAY) * DAY;
    let minute = 60_000_000_000;
    // Three segments of d0 in today's window, the erase, three more after it.
    for i in 0..3 {
        write_flushed(&engine, "new", today + i * minute);
    }
    engine
        .erase_device(&crate::EraseRequest {
            database: Some("new".into()),
            device: "d0".into(),
            start: i64::MIN,
            end: i64::MAX,
        })
        .unwrap();
    for i in 10..13 {
        write_flushed(&engine, "new", today + i * minute);
    }
    assert_eq!(
        engine.compact().unwrap(),
        0,
        "no merge while the move is held"
    );
    assert_eq!(
        rows_of(&engine, "new"),
        3,
        "only the rows written after the erase"
    );
    objfaults::release_puts(url);
    wait_for("the move finishing", || {
        cold_rows(&engine, "old") == 3 * 4 * 24
    });
    // The cold rows show at the manifest commit, a moment before the move ends and lets
    // merges go on again.
    wait_for("compaction once the move ended", || {
        engine.compact().unwrap();
        hot_files(&engine, "new") < 6
    });
    assert_eq!(rows_of(&engine, "new"), 3);
}
