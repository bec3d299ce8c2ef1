//! Property tests of the JSON decoder: random records serialized with serde_json decode back to
//! the model (in all three layouts), and arbitrary or mutated bytes never make it panic while
//! every batch it accepts is well formed.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Value as Json, json};
use strata_ingest::json::{JsonOptions, parse};
use strata_storage::{Value, WriteBatch};

const NOW: i64 = 7;

fn opts() -> JsonOptions {
    JsonOptions {
        default_time: NOW,
        ..JsonOptions::default()
    }
}

/// A generated record: stream, device, optional millisecond timestamp and fields.
#[derive(Debug, Clone)]
struct Rec {
    stream: Option<String>,
    device: String,
    ts: Option<i64>,
    fields: BTreeMap<String, Value>,
}

/// Field names: one type per name (the prefix picks the type), so records never conflict.
fn field() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        ("[a-z]{1,6}", -1e12f64..1e12).prop_map(|(n, v)| (format!("f_{n}"), Value::Float(v))),
        ("[a-z]{1,6}", -1_000_000i64..1_000_000)
            .prop_map(|(n, v)| (format!("i_{n}"), Value::Float(v as f64))),
        ("[a-z]{1,6}", any::<bool>()).prop_map(|(n, v)| (format!("b_{n}"), Value::Boolean(v))),
        ("[a-z]{1,6}", "\\PC{0,12}").prop_map(|(n, v)| (format!("s_{n} é\""), Value::String(v))),
    ]
}

fn record() -> impl Strategy<Value = Rec> {
    (
        proptest::option::of(prop_oneof![Just("a".to_owned()), Just("b b".to_owned())]),
        "[A-Za-z0-9._:-]{1,8}",
        proptest::option::of(-1_000_000_000_000i64..4_000_000_000_000),
        proptest::collection::vec(field(), 0..5),
    )
        .prop_map(|(stream, device, ts, fields)| Rec {
            stream,
            device,
            ts,
            fields: fields.into_iter().collect(),
        })
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Float(x) if x.fract() == 0.0 && x.abs() < 1e15 => json!(*x as i64),
        Value::Float(x) => json!(x),
        Value::Boolean(b) => json!(b),
        Value::String(s) => json!(s),
        other => panic!("not generated: {other:?}"),
    }
}

fn record_json(r: &Rec) -> Json {
    let mut m = Map::new();
    if let Some(s) = &r.stream {
        m.insert("stream".into(), json!(s));
    }
    m.insert("device".into(), json!(r.device));
    if let Some(ts) = r.ts {
        m.insert("ts".into(), json!(ts));
    }
    for (k, v) in &r.fields {
        m.insert(k.clone(), to_json(v));
    }
    Json::Object(m)
}

/// Rows of a batch as (stream, device, time, fields), tables in order.
type Row = (String, String, i64, BTreeMap<String, Value>);

fn rows_of(batch: &WriteBatch) -> Vec<Row> {
    let mut out = Vec::new();
    for t in &batch.tables {
        for i in 0..t.len() {
            let fields = t
                .columns
                .iter()
                .filter_map(|c| c.get(i).map(|v| (c.name.clone(), v)))
                .collect();
            let device = t.series[t.row_series[i] as usize].device.clone();
            out.push((t.stream.clone(), device, t.times[i], fields));
        }
    }
    out
}

/// The expected rows: grouped by stream in order of first appearance, record order within.
fn model(recs: &[Rec]) -> Vec<Row> {
    let mut streams: Vec<String> = Vec::new();
    for r in recs {
        let s = r.stream.clone().unwrap_or_else(|| "dflt".into());
        if !streams.contains(&s) {
            streams.push(s);
        }
    }
    let mut out = Vec::new();
    for s in &streams {
        for r in recs {
            if r.stream.as_deref().unwrap_or("dflt") == s {
                let time = r.ts.map_or(NOW, |ms| ms * 1_000_000);
                out.push((s.clone(), r.device.clone(), time, r.fields.clone()));
            }
        }
    }
    out
}

fn well_formed(batch: &WriteBatch) {
    for t in &batch.tables {
        assert_eq!(t.row_series.len(), t.times.len());
        assert!(t.row_series.iter().all(|&s| (s as usize) < t.series.len()));
        for c in &t.columns {
            assert_eq!(c.data.len(), t.times.len());
            assert_eq!(c.valid.len(), t.times.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn array_round_trip(recs in proptest::collection::vec(record(), 0..12)) {
        let payload = serde_json::to_vec(&Json::Array(recs.iter().map(record_json).collect())).unwrap();
        let batch = parse(&payload, "db", "dflt", None, &opts()).unwrap();
        well_formed(&batch);
        prop_assert_eq!(rows_of(&batch), model(&recs));
    }

    #[test]
    fn single_record_round_trip(rec in record()) {
        let payload = serde_json::to_vec(&record_json(&rec)).unwrap();
        let batch = parse(&payload, "db", "dflt", None, &opts()).unwrap();
        prop_assert_eq!(rows_of(&batch), model(std::slice::from_ref(&rec)));
    }

    #[test]
    fn rows_layout_round_trip(recs in proptest::collection::vec(record(), 0..12)) {
        let mut names: Vec<String> = vec!["ts".into(), "device".into(), "stream".into()];
        for r in &recs {
            for k in r.fields.keys() {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
        let rows: Vec<Json> = recs
            .iter()
            .map(|r| {
                let mut row = vec![
                    r.ts.map_or(Json::Null, |t| json!(t)),
                    json!(r.device),
                    r.stream.as_ref().map_or(Json::Null, |s| json!(s)),
                ];
                row.extend(names[3..].iter().map(|n| r.fields.get(n).map_or(Json::Null, to_json)));
                Json::Array(row)
            })
            .collect();
        let payload = serde_json::to_vec(&json!({"columns": names, "rows": rows})).unwrap();
        let batch = parse(&payload, "db", "dflt", None, &opts()).unwrap();
        well_formed(&batch);
        prop_assert_eq!(rows_of(&batch), model(&recs));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(batch) = parse(&bytes, "db", "s", Some("d"), &opts()) {
            well_formed(&batch);
        }
    }

    #[test]
    fn mutated_payloads_never_panic(
        recs in proptest::collection::vec(record(), 1..4),
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = serde_json::to_vec(&Json::Array(recs.iter().map(record_json).collect())).unwrap();
        for (at, b) in cuts {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if let Ok(batch) = parse(&bytes, "db", "s", None, &opts()) {
            well_formed(&batch);
        }
    }
}
