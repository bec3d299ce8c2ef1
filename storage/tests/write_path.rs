//! Write-path guarantees under faults, through the public API: a durable write is reported Ok
//! even when the flush after it fails; writers are held back (and then refused with
//! `Overloaded`) instead of piling up memtables while flush fails; a failed WAL append leaves the
//! catalog unchanged (checked in a child process whose file-size limit makes the WAL fail);
//! reserved database and stream names are refused; a sparse series costs memtable memory in
//! proportion to the values it writes.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{all, batch, flatten};
use strata_storage::{Engine, EngineConfig, StorageError, Value, WriteBatch};

fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.background = false;
    c
}

fn f(name: &str, v: f64) -> (String, Value) {
    (name.to_string(), Value::Float(v))
}

/// `rows` rows of device `d1` from time `start`, each with a 200-byte string and a float.
fn payload_batch(start: i64, rows: i64) -> WriteBatch {
    let rows: Vec<_> = (start..start + rows)
        .map(|t| {
            (
                "d1".to_string(),
                t,
                vec![
                    f("v", t as f64),
                    ("s".to_string(), Value::String("x".repeat(200))),
                ],
            )
        })
        .collect();
    batch("db", "m", &rows)
}

/// Makes flush fail: the segments directory is replaced by a plain file.
fn break_segments(dir: &Path) {
    let seg = dir.join("segments");
    std::fs::remove_dir_all(&seg).unwrap();
    std::fs::write(&seg, b"not a directory").unwrap();
}

fn repair_segments(dir: &Path) {
    let seg = dir.join("segments");
    std::fs::remove_file(&seg).unwrap();
    std::fs::create_dir(&seg).unwrap();
}

#[test]
fn a_durable_write_is_ok_even_when_the_flush_after_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.memtable_bytes = 1; // every write is followed by a flush in the writer's thread
    let rows = vec![("d1".to_string(), 5, vec![f("v", 1.5)])];
    let expected;
    {
        let e = Engine::open(cfg.clone()).unwrap();
        break_segments(dir.path());
        e.write(&batch("db", "m", &rows))
            .expect("the write is durable; the failed flush must not fail it");
        assert!(e.stats().memtable_bytes > 0);
        assert_eq!(e.stats().segments, 0);
        expected = flatten(&e.scan(&all("db", "m")).unwrap());
        assert_eq!(expected.len(), 1);
    }
    repair_segments(dir.path());
    let e = Engine::open(cfg).unwrap();
    assert_eq!(flatten(&e.scan(&all("db", "m")).unwrap()), expected);
    e.flush().unwrap();
    assert_eq!(e.stats().segments, 1);
}

#[test]
fn without_a_background_thread_a_failing_flush_refuses_writes_over_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.memtable_bytes = 64 << 10;
    let e = Engine::open(cfg.clone()).unwrap();
    break_segments(dir.path());
    let mut acked = 0;
    let err = loop {
        match e.write(&payload_batch(acked, 50)) {
            Ok(_) => acked += 50,
            Err(err) => break err,
        }
        assert!(acked < 100_000, "never refused");
    };
    assert!(matches!(err, StorageError::Overloaded(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("retry later") && msg.contains("flush failed"),
        "{msg}"
    );
    let held = e.stats().memtable_bytes;
    assert!(held >= 2 * cfg.memtable_bytes, "{held}");
    assert!(held < 4 * cfg.memtable_bytes, "{held}");
    // The refused batch stored nothing.
    assert_eq!(
        flatten(&e.scan(&all("db", "m")).unwrap()).len() as i64,
        2 * acked
    );
    repair_segments(dir.path());
    e.write(&payload_batch(acked, 50)).unwrap();
    assert!(e.stats().segments > 0);
    assert_eq!(
        flatten(&e.scan(&all("db", "m")).unwrap()).len() as i64,
        2 * (acked + 50)
    );
}

#[test]
fn writers_wait_for_background_flush_and_fail_with_overloaded_when_it_does_not_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.background = true;
    cfg.background_interval = Duration::from_millis(20);
    cfg.memtable_bytes = 64 << 10;
    cfg.write_stall_timeout = Duration::from_millis(300);
    let e = Engine::open(cfg.clone()).unwrap();
    break_segments(dir.path());
    let mut acked = 0;
    let err = loop {
        match e.write(&payload_batch(acked, 50)) {
            Ok(_) => acked += 50,
            Err(err) => break err,
        }
        assert!(acked < 100_000, "never refused");
    };
    assert!(matches!(err, StorageError::Overloaded(_)), "{err:?}");
    assert!(err.to_string().contains("did not free memory"), "{err}");
    assert_eq!(e.stats().writes_refused_overloaded, 1);
    assert!(e.stats().frozen_memtables > 0);
    let held = e.stats().memtable_bytes;
    assert!(held < 4 * cfg.memtable_bytes, "{held}");
    assert_eq!(
        flatten(&e.scan(&all("db", "m")).unwrap()).len() as i64,
        2 * acked
    );
    // Once flush works again the background thread catches up and writers proceed.
    repair_segments(dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match e.write(&payload_batch(acked, 50)) {
            Ok(_) => break,
            Err(StorageError::Overloaded(_)) if Instant::now() < deadline => {}
            Err(other) => panic!("{other}"),
        }
    }
    acked += 50;
    assert!(e.stats().memtable_bytes < 2 * cfg.memtable_bytes);
    drop(e);
    let e = Engine::open(config(dir.path())).unwrap();
    assert_eq!(
        flatten(&e.scan(&all("db", "m")).unwrap()).len() as i64,
        2 * acked
    );
}

#[test]
fn reserved_database_and_stream_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    let rows = vec![("d1".to_string(), 1, vec![f("v", 1.0)])];
    for db in ["registry", "information_schema", "system", "Registry"] {
        let err = e.write(&batch(db, "m", &rows)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StorageError::InvalidInput(_)), "{msg}");
        assert!(
            msg.contains(&format!("'{db}'")) && msg.contains("reserved"),
            "{msg}"
        );
    }
    for stream in [
        "devices",
        "entities",
        "device_entities",
        "alerts",
        "twins",
        "rules",
        "last_values",
        "time_buckets",
        "DEVICES",
    ] {
        let err = e.write(&batch("db", stream, &rows)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StorageError::InvalidInput(_)), "{msg}");
        assert!(
            msg.contains(&format!("'{stream}'"))
                && msg.contains("reserved for the registry's SQL table"),
            "{msg}"
        );
    }
    assert!(e.databases().is_empty());
    e.write(&batch("db", "device_data", &rows)).unwrap();
    e.write(&batch("registry2", "m", &rows)).unwrap();
}

#[test]
fn a_sparse_series_pays_memtable_memory_for_the_values_it_writes() {
    const FIELDS: usize = 1_000;
    const ROWS: i64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.memtable_bytes = 1 << 30;
    let e = Engine::open(cfg).unwrap();
    // The wide series has seen 1,000 fields, then writes 3 of them per row (a different 3 each
    // row); the narrow series writes the same 3 fields per row.
    let all_fields: Vec<_> = (0..FIELDS).map(|i| f(&format!("f{i}"), 0.0)).collect();
    e.write(&batch("db", "wide", &[("w".into(), 0, all_fields)]))
        .unwrap();
    let start = e.stats().memtable_bytes;
    let rows: Vec<_> = (1..=ROWS)
        .map(|t| {
            let base = (t as usize * 3) % FIELDS;
            let fields = (0..3)
                .map(|k| f(&format!("f{}", (base + k) % FIELDS), t as f64))
                .collect();
            ("w".to_string(), t, fields)
        })
        .collect();
    e.write(&batch("db", "wide", &rows)).unwrap();
    let wide = e.stats().memtable_bytes - start;

    let dir2 = tempfile::tempdir().unwrap();
    let e2 = Engine::open(config(dir2.path())).unwrap();
    let rows: Vec<_> = (1..=ROWS)
        .map(|t| {
            let fields = (0..3).map(|k| f(&format!("f{k}"), t as f64)).collect();
            ("n".to_string(), t, fields)
        })
        .collect();
    e2.write(&batch("db", "narrow", &rows)).unwrap();
    let narrow = e2.stats().memtable_bytes;
    eprintln!(
        "memtable bytes for {ROWS} rows of 3 values: sparse series {wide}, dense series {narrow}"
    );
    // 5,000 rows × (8-byte time + 3 × 8-byte values) = 160 KB of data for either series.
    assert!(narrow >= 160_000, "{narrow}");
    assert!(
        wide <= 3 * narrow,
        "the sparse series took {wide} bytes, the dense one {narrow}"
    );
    // Reads are unchanged: absent fields are null, present ones read back.
    let got = flatten(&e.scan(&all("db", "wide")).unwrap());
    assert_eq!(got.len(), FIELDS + 3 * ROWS as usize);
    assert!(got.contains(&("w".into(), 7, "f21".into(), Value::Float(7.0))));
}

#[test]
fn a_flushed_sparse_series_has_chunks_only_for_the_fields_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    let all_fields: Vec<_> = (0..1_000).map(|i| f(&format!("f{i}"), 0.0)).collect();
    e.write(&batch("db", "wide", &[("a".into(), 0, all_fields)]))
        .unwrap();
    let rows: Vec<_> = (1..=100)
        .map(|t| {
            let fields = (0..3)
                .map(|k| f(&format!("f{}", 500 + k), t as f64))
                .collect();
            ("b".to_string(), t, fields)
        })
        .collect();
    e.write(&batch("db", "wide", &rows)).unwrap();
    e.flush().unwrap();
    let segments: Vec<_> = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(segments.len(), 1);
    let summary = strata_storage::summarize_segment_file(&segments[0]).unwrap();
    let (time, fields) = summary.split_first().unwrap();
    assert_eq!(time.chunks, 2, "one block per series");
    // Series a: one chunk for each of its 1,000 fields; series b: 3, not 1,000.
    assert_eq!(fields.iter().map(|c| c.chunks).sum::<u64>(), 1_003);
    assert_eq!(fields.iter().map(|c| c.values).sum::<u64>(), 1_000 + 300);
    let got = flatten(&e.scan(&all("db", "wide")).unwrap());
    assert_eq!(got.len(), 1_300);
}

/// Set in the child process: the data directory to write to.
const CHILD_ENV: &str = "STRATA_WRITE_PATH_WAL_FAILURE_DIR";
/// The child's file-size limit in 512-byte blocks (32 KiB).
const LIMIT_BLOCKS: u32 = 64;

#[test]
fn a_failed_wal_append_leaves_the_catalog_unchanged() {
    match std::env::var_os(CHILD_ENV) {
        Some(dir) => wal_failure_child(Path::new(&dir)),
        None => wal_failure_parent(),
    }
}

/// Under the file-size limit: writes new series until the WAL fails, then checks that a write
/// naming a new stream, field and series changes nothing in the catalog.
fn wal_failure_child(dir: &Path) {
    let e = Engine::open(config(dir)).unwrap();
    let mut acked = 0;
    loop {
        let rows = vec![(format!("dev{acked}"), acked, vec![f("v", acked as f64)])];
        match e.write(&batch("db", "m", &rows)) {
            Ok(_) => acked += 1,
            Err(StorageError::IoFault { .. }) => break,
            Err(other) => panic!("{other}"),
        }
        assert!(acked < 10_000, "the file-size limit never triggered");
    }
    let before = (
        e.stats().series,
        e.catalog_version(),
        e.streams("db"),
        e.schema("db", "m"),
        e.devices("db", "m"),
    );
    let rows = vec![("fresh".to_string(), 1, vec![f("new_field", 1.0)])];
    for stream in ["m", "new_stream"] {
        let err = e.write(&batch("db", stream, &rows)).unwrap_err();
        assert!(matches!(err, StorageError::IoFault { .. }), "{err}");
    }
    let after = (
        e.stats().series,
        e.catalog_version(),
        e.streams("db"),
        e.schema("db", "m"),
        e.devices("db", "m"),
    );
    assert_eq!(after, before);
    assert!(!after.4.contains(&"fresh".to_string()));
    println!("ACKNOWLEDGED {acked}");
}

fn wal_failure_parent() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = format!("trap '' XFSZ; ulimit -f {LIMIT_BLOCKS}; exec \"$0\" \"$@\"");
    let output = Command::new("sh")
        .args(["-c", &script])
        .arg(&exe)
        .args([
            "--exact",
            "a_failed_wal_append_leaves_the_catalog_unchanged",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let acked: i64 = stdout
        .lines()
        .find_map(|l| l.split_once("ACKNOWLEDGED ").map(|(_, n)| n))
        .and_then(|n| n.trim().parse().ok())
        .expect("child reported its acknowledged writes");
    assert!(acked > 0);
    // Every acknowledged write is back, each device with its own series, and series ids follow
    // WAL order (device devN has series id N).
    let e = Engine::open(config(dir.path())).unwrap();
    let batches = e.scan(&all("db", "m")).unwrap();
    for i in 0..acked {
        let b = batches
            .iter()
            .find(|b| b.key.device == format!("dev{i}"))
            .unwrap_or_else(|| panic!("dev{i} lost"));
        assert_eq!(b.series_id as i64, i);
        assert_eq!(b.times, vec![i]);
    }
    assert!(!e.devices("db", "m").contains(&"fresh".to_string()));
}
