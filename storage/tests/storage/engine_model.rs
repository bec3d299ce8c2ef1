//! Property test: the engine against a `BTreeMap` model under random writes (out-of-order,
//! duplicates, every field type, several partitions), late batches into old (already flushed and
//! compacted) partitions, sparse schemas (rows writing different subsets of many fields, fields
//! appearing late), flushes, compactions and restarts.

use std::collections::BTreeMap;

use crate::common::{TYPES, all, batch, flatten};
use proptest::prelude::*;
use strata_storage::{Durability, Engine, EngineConfig, FieldType, ScanRequest, Value};

/// One generated row: device index, timestamp, (field index into TYPES, value) pairs.
type GenRow = (usize, i64, Vec<(usize, Value)>);

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<GenRow>),
    /// Rows far behind the others, into partitions that were flushed and compacted already.
    Late(Vec<GenRow>),
    Flush,
    Compact,
    Reopen,
    ShutdownReopen,
}

fn value(ty: FieldType) -> BoxedStrategy<Value> {
    match ty {
        FieldType::Float => prop_oneof![
            (-1000i32..1000).prop_map(|x| Value::Float(x as f64 / 10.0)),
            any::<f64>().prop_map(Value::Float)
        ]
        .boxed(),
        FieldType::Integer => any::<i64>().prop_map(Value::Integer).boxed(),
        FieldType::Unsigned => any::<u64>().prop_map(Value::Unsigned).boxed(),
        FieldType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        FieldType::String => "[a-c]{0,3}".prop_map(Value::String).boxed(),
    }
}

/// Sparse fields: `SPARSE` more names (after the five of `TYPES`) of which a row writes one or two.
const SPARSE: usize = 12;

fn field_name(i: usize) -> String {
    match i < TYPES.len() {
        true => TYPES[i].0.to_string(),
        false => format!("x{}", i - TYPES.len()),
    }
}

fn field_type(i: usize) -> FieldType {
    match i < TYPES.len() {
        true => TYPES[i].1,
        false if i.is_multiple_of(2) => FieldType::Float,
        false => FieldType::Integer,
    }
}

fn fields() -> impl Strategy<Value = Vec<(usize, Value)>> {
    let one = (0..TYPES.len()).prop_flat_map(|i| value(TYPES[i].1).prop_map(move |v| (i, v)));
    let sparse = (TYPES.len()..TYPES.len() + SPARSE)
        .prop_flat_map(|i| value(field_type(i)).prop_map(move |v| (i, v)));
    prop_oneof![
        prop::collection::vec(one, 1..4),
        prop::collection::vec(sparse, 1..3),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0usize..3, -40i64..60, fields()), 1..20).prop_map(Op::Write),
        2 => prop::collection::vec((0usize..4, -200i64..-100, fields()), 1..6).prop_map(Op::Late),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::ShutdownReopen),
    ]
}

type Model = BTreeMap<(String, i64, String), Value>;

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.background = false;
    c.durability = Durability::None;
    c.partition_ns = 16;
    c
}

fn apply(engine: &Engine, model: &mut Model, rows: &[GenRow]) {
    let rows: Vec<crate::common::Row> = rows
        .iter()
        .map(|(d, ts, fs)| {
            let fs = fs
                .iter()
                .map(|(i, v)| (field_name(*i), v.clone()))
                .collect();
            (format!("dev{d}"), *ts, fs)
        })
        .collect();
    engine.write(&batch("db", "m", &rows)).unwrap();
    for (device, ts, fs) in rows {
        for (name, v) in fs {
            model.insert((device.clone(), ts, name), v);
        }
    }
}

/// Float equality by bits so NaN payloads compare.
fn normalize(rows: Vec<(String, i64, String, Value)>) -> Vec<(String, i64, String, String)> {
    rows.into_iter()
        .map(|(d, t, f, v)| {
            let v = match v {
                Value::Float(x) => format!("f{:x}", x.to_bits()),
                other => format!("{other:?}"),
            };
            (d, t, f, v)
        })
        .collect()
}

fn check(engine: &Engine, model: &Model, start: i64, end: i64) {
    let got = normalize(flatten(&engine.scan(&all("db", "m")).unwrap()));
    let want = normalize(
        model
            .iter()
            .map(|((d, t, f), v)| (d.clone(), *t, f.clone(), v.clone()))
            .collect(),
    );
    assert_eq!(got, want);
    let req = ScanRequest {
        start,
        end,
        ..all("db", "m")
    };
    let got = normalize(flatten(&engine.scan(&req).unwrap()));
    let want: Vec<_> = want
        .into_iter()
        .filter(|r| r.1 >= start && r.1 < end)
        .collect();
    assert_eq!(got, want, "range [{start}, {end})");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(ops in prop::collection::vec(op(), 1..25), start in -250i64..60, len in 0i64..300) {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = Some(Engine::open(config(dir.path())).unwrap());
        let mut model = Model::new();
        for op in &ops {
            let e = engine.as_ref().unwrap();
            match op {
                Op::Write(rows) | Op::Late(rows) => apply(e, &mut model, rows),
                Op::Flush => e.flush().unwrap(),
                Op::Compact => { e.compact().unwrap(); }
                Op::Reopen => {
                    drop(engine.take());
                    engine = Some(Engine::open(config(dir.path())).unwrap());
                }
                Op::ShutdownReopen => {
                    e.shutdown().unwrap();
                    drop(engine.take());
                    engine = Some(Engine::open(config(dir.path())).unwrap());
                }
            }
        }
        let e = engine.as_ref().unwrap();
        check(e, &model, start, start + len);
        e.flush().unwrap();
        e.compact().unwrap();
        check(e, &model, start, start + len);
        drop(engine.take());
        let e = Engine::open(config(dir.path())).unwrap();
        check(&e, &model, start, start + len);
    }
}
