//! Compaction through the public API: times at the ends of the i64 range (partitioning must not
//! overflow), and background flush + compaction racing with writers (ordered, late and
//! overwriting data) checked against a model after restart.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{all, batch, flatten};
use strata_storage::{Durability, Engine, EngineConfig, Value};

#[test]
fn times_near_the_ends_of_the_range_flush_and_compact() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.background = false;
    cfg.durability = Durability::None;
    let times = [i64::MIN + 1, i64::MIN + 2, -1, 0, 1, i64::MAX - 1];
    let engine = Engine::open(cfg.clone()).unwrap();
    for (i, chunk) in times.chunks(2).enumerate() {
        let rows: Vec<crate::common::Row> = chunk
            .iter()
            .map(|&t| {
                (
                    "d".to_string(),
                    t,
                    vec![("v".to_string(), Value::Float(i as f64))],
                )
            })
            .collect();
        engine.write(&batch("db", "m", &rows)).unwrap();
        engine.flush().unwrap();
    }
    // A second write at the lowest time overwrites the first.
    let rows = vec![(
        "d".to_string(),
        i64::MIN + 1,
        vec![("v".to_string(), Value::Float(9.0))],
    )];
    engine.write(&batch("db", "m", &rows)).unwrap();
    engine.flush().unwrap();
    engine.compact().unwrap();
    let expect = |engine: &Engine| {
        let got = flatten(&engine.scan(&all("db", "m")).unwrap());
        let got: Vec<(i64, Value)> = got.into_iter().map(|r| (r.1, r.3)).collect();
        assert_eq!(
            got,
            vec![
                (i64::MIN + 1, Value::Float(9.0)),
                (i64::MIN + 2, Value::Float(0.0)),
                (-1, Value::Float(1.0)),
                (0, Value::Float(1.0)),
                (1, Value::Float(2.0)),
                (i64::MAX - 1, Value::Float(2.0)),
            ]
        );
    };
    expect(&engine);
    drop(engine);
    let engine = Engine::open(cfg).unwrap();
    expect(&engine);
}

#[test]
fn background_flush_and_compaction_racing_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.durability = Durability::None;
    cfg.memtable_bytes = 8 << 10;
    cfg.background_interval = Duration::from_millis(2);
    cfg.partition_ns = 1000;
    cfg.compaction_trigger = 2;
    let engine = Engine::open(cfg.clone()).unwrap();
    let mut model: BTreeMap<(String, i64, String), Value> = BTreeMap::new();
    for round in 0..300i64 {
        // Ordered rows, an overwrite of recent ones, and every 10th round a late batch.
        let mut rows: Vec<crate::common::Row> = Vec::new();
        for d in 0..4 {
            let device = format!("d{d}");
            for k in 0..10 {
                let t = round * 50 + k * 5;
                let field = if k % 3 == 0 { "a" } else { "b" };
                rows.push((
                    device.clone(),
                    t,
                    vec![(field.into(), Value::Float((round * 100 + k) as f64))],
                ));
            }
            if round > 0 {
                rows.push((
                    device.clone(),
                    round * 50 - 25,
                    vec![("a".into(), Value::Float(-(round as f64)))],
                ));
            }
            if round % 10 == 9 {
                rows.push((
                    device.clone(),
                    round * 5 + 3,
                    vec![("c".into(), Value::Float(round as f64))],
                ));
            }
        }
        engine.write(&batch("db", "m", &rows)).unwrap();
        for (d, t, fs) in rows {
            for (f, v) in fs {
                model.insert((d.clone(), t, f), v);
            }
        }
    }
    let want: Vec<(String, i64, String, Value)> = model
        .into_iter()
        .map(|((d, t, f), v)| (d, t, f, v))
        .collect();
    assert_eq!(flatten(&engine.scan(&all("db", "m")).unwrap()), want);
    // Give the background thread a bounded chance to run a compaction if it has not yet.
    for _ in 0..500 {
        if engine.stats().compactions > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = engine.stats();
    assert!(stats.flushes > 10, "{stats:?}");
    assert!(stats.compactions > 0, "{stats:?}");
    assert!(stats.flush_bytes_written > 0 && stats.compaction_bytes_written > 0);
    engine.shutdown().unwrap();
    drop(engine);
    let engine = Engine::open(cfg).unwrap();
    assert_eq!(flatten(&engine.scan(&all("db", "m")).unwrap()), want);
}
