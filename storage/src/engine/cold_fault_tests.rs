//! Object-store faults during hot → cold moves, through the error-injecting object store
//! (`crate::objfaults`). A reference run records every store call of five moves (object put,
//! head and read-back of the verification, cold-manifest put, deletes of old manifest versions);
//! then, from a fresh directory each time, every one of those calls is failed once, before it
//! reaches the store and after it (the store changed, the answer was lost), and for the first
//! move every call of the clean-up that follows a failure is failed as well. After each faulted
//! run and after the next (healthy) run, and again after a reopen: every device's count and sum
//! equal the originals, no row is stored in two tiers, the bucket holds exactly the objects the
//! newest cold manifest names (no orphan, none missing), and the next run completes every move.

use std::collections::BTreeMap;

use crate::cold::ColdTier;
use crate::engine::policy::now_ns;
use crate::lifecycle::LifecyclePolicy;
use crate::objfaults::{self, Call, When};
use crate::{
    Column, Engine, EngineConfig, FieldType, ScanRequest, SeriesKey, TableWrite, Value, WriteBatch,
};

const DAY: i64 = 86_400_000_000_000;
const HOUR: i64 = 3_600_000_000_000;
/// Old day partitions written, one segment (one move) each.
const WINDOWS: i64 = 5;
const DEVICES: [&str; 3] = ["a", "b", "c"];

/// One armed fault: the `nth` call of a kind from the start of the run, failed before or after.
type Fault = (Call, usize, When);

/// Per device: (rows, sum of v).
type Totals = BTreeMap<String, (usize, f64)>;

/// A data directory and a bucket, with five old windows written and flushed.
struct Setup {
    dir: tempfile::TempDir,
    _cold: tempfile::TempDir,
    cold_path: std::path::PathBuf,
    url: String,
}

impl Setup {
    fn new() -> (Setup, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let cold = tempfile::tempdir().unwrap();
        let url = format!("file://{}", cold.path().display());
        let s = Setup {
            cold_path: cold.path().to_path_buf(),
            dir,
            _cold: cold,
            url,
        };
        let engine = s.open();
        let today = now_ns().div_euclid(DAY) * DAY;
        for w in 0..WINDOWS {
            engine.write(&batch(today - (10 - w) * DAY, w)).unwrap();
        }
        engine.flush().unwrap();
        let policy = LifecyclePolicy {
            hot: Some(3 * DAY),
            ..LifecyclePolicy::default()
        };
        engine.set_lifecycle("db", None, Some(policy)).unwrap();
        (s, engine)
    }

    fn open(&self) -> Engine {
        let mut c = EngineConfig::new(self.dir.path());
        c.background = false;
        c.cold_store = Some(self.url.clone());
        Engine::open(c).unwrap()
    }
}

/// 24 hourly points per device from `start`; v = 1000 * window + 10 * device + hour / 4.
fn batch(start: i64, window: i64) -> WriteBatch {
    let mut t = TableWrite {
        stream: "m".into(),
        columns: vec![Column::new("v", FieldType::Float)],
        ..Default::default()
    };
    for (d, device) in DEVICES.iter().enumerate() {
        t.series.push(SeriesKey {
            device: device.to_string(),
            tags: vec![],
        });
        for h in 0..24 {
            t.row_series.push(d as u32);
            t.times.push(start + h * HOUR);
            let v = (1000 * window + 10 * d as i64) as f64 + h as f64 / 4.0;
            t.columns[0].data.push_value(&Value::Float(v));
            t.columns[0].valid.push(true);
        }
    }
    WriteBatch {
        database: "db".into(),
        tables: vec![t],
    }
}

/// `SELECT device, count(*), sum(v) FROM m GROUP BY device`, through the engine's scan.
fn totals(engine: &Engine) -> Totals {
    let req = ScanRequest {
        database: "db".into(),
        stream: "m".into(),
        start: i64::MIN,
        end: i64::MAX,
        ..Default::default()
    };
    let mut out = Totals::new();
    for b in engine.scan(&req).expect("every row is readable") {
        let e = out.entry(b.key.device.clone()).or_default();
        for i in 0..b.times.len() {
            let Some(Value::Float(v)) = b.columns[0].get(i) else {
                panic!("missing value")
            };
            e.0 += 1;
            e.1 += v;
        }
    }
    out
}

/// Rows stored per tier (before last-write-wins), and hot segments left.
fn tier_rows(engine: &Engine) -> (u64, u64, u64) {
    let (tiers, _) = engine.lifecycle_status().unwrap();
    let sum = |tier: &str| {
        tiers
            .iter()
            .filter(|t| t.tier == tier)
            .map(|t| t.rows)
            .sum()
    };
    let files = tiers
        .iter()
        .filter(|t| t.tier == "hot")
        .map(|t| t.files)
        .sum();
    (sum("hot"), sum("cold"), files)
}

/// Keys of the `.parquet` files in the bucket.
fn bucket_objects(root: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, d: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy();
                out.push(rel.into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Nothing lost, nothing stored twice: the totals are the originals and every row is in one
/// tier (`hot + cold` rows equal the rows written).
fn assert_one_copy(engine: &Engine, want: &Totals, what: &str) {
    assert_eq!(&totals(engine), want, "{what}: counts and sums");
    let (hot, cold, _) = tier_rows(engine);
    let written = (WINDOWS as u64) * 24 * DEVICES.len() as u64;
    assert_eq!(
        hot + cold,
        written,
        "{what}: rows stored once (hot {hot}, cold {cold})"
    );
}

/// The bucket holds exactly the objects the newest cold manifest names.
fn assert_no_orphan(s: &Setup, what: &str) {
    let tier = ColdTier::open(&s.url, 0).unwrap();
    let mut named: Vec<String> = tier
        .load_manifest()
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    named.sort();
    assert_eq!(
        bucket_objects(&s.cold_path),
        named,
        "{what}: bucket = manifest"
    );
    objfaults::take_trace(&s.url);
}

/// Arms `faults`, runs maintenance, then checks the state after it, after a healthy run and
/// after a reopen. Returns the store calls of the faulted run.
fn walk_one(faults: &[Fault], want: &Totals) -> Vec<(Call, String)> {
    let (s, engine) = Setup::new();
    let what = format!("{faults:?}");
    objfaults::take_trace(&s.url);
    for &(call, nth, when) in faults {
        objfaults::inject(&s.url, call, nth, when);
    }
    let run = engine.run_lifecycle().unwrap();
    let trace = objfaults::take_trace(&s.url);
    assert_eq!(
        objfaults::clear(&s.url),
        faults.len(),
        "{what}: every fault fired"
    );
    assert_one_copy(
        &engine,
        want,
        &format!("{what}, after the faulted run {run:?}"),
    );

    let run = engine.run_lifecycle().unwrap();
    assert!(
        run.errors.is_empty(),
        "{what}: the next run is clean: {run:?}"
    );
    let (hot, _, hot_files) = tier_rows(&engine);
    assert_eq!(
        (hot, hot_files),
        (0, 0),
        "{what}: every move completed: {run:?}"
    );
    assert_one_copy(&engine, want, &format!("{what}, after the next run"));
    assert_no_orphan(&s, &format!("{what}, after the next run"));
    drop(engine);

    let engine = s.open();
    let notes = engine.recovery_report().cold_notes;
    assert!(
        notes.is_empty(),
        "{what}: nothing left to reconcile at open: {notes:?}"
    );
    assert_one_copy(&engine, want, &format!("{what}, after reopening"));
    trace
}

/// `(call, nth)` of every call in `trace`: its kind and how many calls of that kind came first.
fn points(trace: &[(Call, String)]) -> Vec<(Call, usize)> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    trace
        .iter()
        .map(|(call, _)| {
            let n = seen.entry(format!("{call:?}")).or_default();
            *n += 1;
            (*call, *n - 1)
        })
        .collect()
}

#[test]
fn every_object_store_failure_in_a_cold_move_loses_nothing_and_is_reconciled() {
    // Reference: the calls of five clean moves.
    let (s, engine) = Setup::new();
    let want = totals(&engine);
    assert_eq!(want.len(), DEVICES.len());
    objfaults::take_trace(&s.url);
    let run = engine.run_lifecycle().unwrap();
    assert_eq!(
        (run.moved.len(), run.errors.len()),
        (WINDOWS as usize, 0),
        "{run:?}"
    );
    let reference = objfaults::take_trace(&s.url);
    assert_one_copy(&engine, &want, "reference");
    assert_no_orphan(&s, "reference");
    drop(engine);
    let kinds = |c: Call| reference.iter().filter(|(k, _)| *k == c).count();
    assert_eq!(kinds(Call::Put), WINDOWS as usize, "{reference:?}");
    assert_eq!(kinds(Call::ManifestPut), WINDOWS as usize, "{reference:?}");
    assert!(kinds(Call::Head) >= WINDOWS as usize && kinds(Call::Get) >= WINDOWS as usize);
    assert!(
        kinds(Call::Delete) >= 1,
        "old manifest versions trimmed: {reference:?}"
    );

    let mut checked = 0;
    let first_move = reference
        .iter()
        .position(|(c, _)| *c == Call::ManifestPut)
        .unwrap();
    for (i, (call, nth)) in points(&reference).into_iter().enumerate() {
        for when in [When::Before, When::After] {
            let first = (call, nth, when);
            let trace = walk_one(&[first], &want);
            checked += 1;
            if i > first_move {
                continue;
            }
            // The first move: also fail each call of what follows the failure (clean-up,
            // reloading the manifest), one at a time.
            let failed_at = points(&trace)
                .iter()
                .position(|&(c, n)| (c, n) == (call, nth))
                .unwrap();
            for &(c2, n2) in &points(&trace)[failed_at + 1..] {
                for when2 in [When::Before, When::After] {
                    walk_one(&[first, (c2, n2, when2)], &want);
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked >= 4 * WINDOWS as usize * 2,
        "{checked} failure points"
    );
    eprintln!("object-store failure points checked: {checked}");
}

/// A commit whose answer is lost (the manifest put landed, the caller saw an error) is a
/// commit: the object stays and the move completes in the same run, with one copy.
#[test]
fn a_lost_answer_to_the_manifest_put_is_a_commit() {
    let (s, engine) = Setup::new();
    let want = totals(&engine);
    objfaults::inject(&s.url, Call::ManifestPut, 0, When::After);
    let run = engine.run_lifecycle().unwrap();
    assert_eq!(objfaults::clear(&s.url), 1);
    assert!(run.errors.is_empty(), "{run:?}");
    assert_eq!(run.moved.len(), WINDOWS as usize);
    assert_one_copy(&engine, &want, "lost answer");
    assert_no_orphan(&s, "lost answer");
}

/// A store that stays down: every run fails, nothing moves and nothing is lost; once it is
/// back, the next run reconciles and moves everything.
#[test]
fn a_store_down_for_several_runs_then_back() {
    let (s, engine) = Setup::new();
    let want = totals(&engine);
    for _ in 0..3 {
        for call in [Call::Put, Call::List] {
            objfaults::inject(&s.url, call, 0, When::Before);
        }
        let run = engine.run_lifecycle().unwrap();
        assert!(!run.errors.is_empty() && run.moved.is_empty(), "{run:?}");
        objfaults::clear(&s.url);
        assert_one_copy(&engine, &want, "store down");
    }
    let run = engine.run_lifecycle().unwrap();
    assert!(run.errors.is_empty(), "{run:?}");
    assert_eq!(run.moved.len(), WINDOWS as usize);
    assert_one_copy(&engine, &want, "store back");
    assert_no_orphan(&s, "store back");
}

/// A commit that landed though the run saw it fail (its answer lost, the check of it refused)
/// leaves a window's segment hot beside its committed object. When newer segments of that
/// window arrive meanwhile, split into two objects by an erase made between them, the next run
/// finishes the committed move first and then moves the others in age order: the newest values
/// stay the answer, with no segment left hot behind a newer cold copy.
#[test]
fn a_commit_seen_as_failed_is_finished_before_its_window_moves_again() {
    let dir = tempfile::tempdir().unwrap();
    let cold = tempfile::tempdir().unwrap();
    let url = format!("file://{}", cold.path().display());
    let open = || {
        let mut c = EngineConfig::new(dir.path());
        c.background = false;
        c.cold_store = Some(url.clone());
        Engine::open(c).unwrap()
    };
    let engine = open();
    let start = now_ns().div_euclid(DAY) * DAY - 10 * DAY;
    engine.write(&batch(start, 0)).unwrap();
    engine.flush().unwrap();
    let policy = LifecyclePolicy {
        hot: Some(3 * DAY),
        ..LifecyclePolicy::default()
    };
    engine.set_lifecycle("db", None, Some(policy)).unwrap();
    // The manifest put lands but answers an error, and reading it back fails: unknown.
    objfaults::inject(&url, Call::ManifestPut, 0, When::After);
    objfaults::inject(&url, Call::Get, 1, When::Before);
    let run = engine.run_lifecycle().unwrap();
    assert_eq!(objfaults::clear(&url), 2);
    assert_eq!(run.errors.len(), 1, "{run:?}");
    assert_eq!(tier_rows(&engine).2, 1, "the segment is still hot");
    // Newer rows for the same window, an erase, and newer rows again.
    engine.write(&batch(start, 7)).unwrap();
    engine.flush().unwrap();
    engine
        .erase_device(&crate::EraseRequest {
            database: Some("db".into()),
            device: "c".into(),
            start: start + 23 * HOUR,
            end: start + 24 * HOUR,
        })
        .unwrap();
    engine.write(&batch(start, 9)).unwrap();
    engine.flush().unwrap();
    let want = totals(&engine);
    assert_eq!(want["a"], (24, 24.0 * 9000.0 + 69.0), "the newest values");

    let run = engine.run_lifecycle().unwrap();
    assert!(run.errors.is_empty(), "{run:?}");
    assert!(
        run.cold_notes
            .iter()
            .any(|n| n.contains("finished an interrupted cold move")),
        "{run:?}"
    );
    let moved: Vec<usize> = run.moved.iter().map(|m| m.segments.len()).collect();
    assert_eq!(
        moved,
        vec![1, 1],
        "the two newer segments, one object each: {run:?}"
    );
    assert_eq!(tier_rows(&engine).2, 0, "nothing left hot");
    assert_eq!(totals(&engine), want);
    drop(engine);
    assert_eq!(totals(&open()), want, "after reopening");
}

/// An erase rewrite of a cold object whose manifest commit landed though it was seen to fail
/// (the answer lost, the read-back refused): the next purge reconciles first and adopts the
/// replacement, so the bucket and the manifest keep one object per window, never the replaced
/// object's rows twice, and the erased rows stay gone after a reopen.
#[test]
fn an_erase_rewrite_seen_as_failed_is_adopted_not_repeated() {
    // Five cold windows, then device c's rows of the oldest erased (reads drop them at once).
    let erased = || {
        let (s, engine) = Setup::new();
        let run = engine.run_lifecycle().unwrap();
        assert_eq!(run.moved.len(), WINDOWS as usize, "{run:?}");
        let first = now_ns().div_euclid(DAY) * DAY - 10 * DAY;
        engine
            .erase_device(&crate::EraseRequest {
                database: Some("db".into()),
                device: "c".into(),
                start: first,
                end: first + DAY,
            })
            .unwrap();
        let want = totals(&engine);
        assert_eq!(want["c"].0, (WINDOWS as usize - 1) * 24);
        objfaults::take_trace(&s.url);
        (s, engine, want)
    };
    // A reference purge: how many gets come before its manifest put (the next one is the
    // read-back that checks a failed put).
    let gets_before_commit = {
        let (s, engine, _) = erased();
        engine.compact().unwrap();
        let trace = objfaults::take_trace(&s.url);
        let put = trace
            .iter()
            .position(|(c, _)| *c == Call::ManifestPut)
            .expect("the purge commits a manifest");
        trace[..put].iter().filter(|(c, _)| *c == Call::Get).count()
    };
    let (s, engine, want) = erased();
    objfaults::inject(&s.url, Call::ManifestPut, 0, When::After);
    objfaults::inject(&s.url, Call::Get, gets_before_commit, When::Before);
    engine.compact().unwrap();
    assert_eq!(objfaults::clear(&s.url), 2, "both faults fired");
    assert_eq!(totals(&engine), want);
    // The next purges reconcile first and find the replacement holds no erased row.
    engine.compact().unwrap();
    engine.compact().unwrap();
    assert_eq!(totals(&engine), want);
    let tier = ColdTier::open(&s.url, 0).unwrap();
    let manifest = tier.load_manifest().unwrap();
    assert_eq!(
        manifest.objects.len(),
        WINDOWS as usize,
        "one object per window: {:?}",
        manifest.objects.iter().map(|o| &o.key).collect::<Vec<_>>()
    );
    let rows: u64 = manifest.objects.iter().map(|o| o.rows).sum();
    let kept = (WINDOWS as u64) * 24 * 3 - 24;
    assert_eq!(rows, kept, "the erased rows are in no object");
    assert_no_orphan(&s, "after the purges");
    drop(engine);
    let engine = s.open();
    assert_eq!(totals(&engine), want, "after reopening");
    assert_eq!(tier_rows(&engine).1, kept);
}
