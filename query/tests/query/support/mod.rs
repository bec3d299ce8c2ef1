//! Test fixtures: a deterministic small fleet written (as columnar batches) into a real engine (half flushed to
//! segments, half in the memtable), the same points kept in memory as ground truth, and helpers
//! to read query results as plain values.

#![allow(dead_code)]

use std::sync::Arc;

use strata_query::arrow::array::{Array, AsArray, RecordBatch};
use strata_query::arrow::datatypes::TimestampNanosecondType;
use strata_query::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, UInt64Type};
use strata_storage::{Column, Engine, EngineConfig, SeriesKey, TableWrite, Value, WriteBatch};

/// 2024-01-01T00:00:00Z in ns.
pub const T0: i64 = 1_704_067_200_000_000_000;
/// Ten seconds in ns.
pub const TICK: i64 = 10_000_000_000;
/// Ticks per device (two hours).
pub const TICKS: i64 = 720;
/// Number of devices.
pub const DEVICES: usize = 6;
/// One minute in ns.
pub const MINUTE: i64 = 60_000_000_000;

/// One `readings` point as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub device: String,
    pub fleet: String,
    pub model: Option<String>,
    pub time: i64,
    pub speed: f64,
    pub load: i64,
    pub moving: bool,
    /// Present on 4 of 5 ticks.
    pub fuel: Option<f64>,
}

/// The `readings` ground truth.
pub fn readings() -> Vec<Reading> {
    let mut out = Vec::new();
    for i in 0..DEVICES {
        for k in 0..TICKS {
            if i == 2 && k % 7 == 3 {
                continue; // device d2 misses some points
            }
            let speed = ((i as i64 * 37 + k * 13) % 1000) as f64 / 10.0;
            out.push(Reading {
                device: format!("d{i}"),
                fleet: if i < 3 { "north" } else { "south" }.into(),
                model: (i != 5).then(|| if i % 2 == 0 { "a" } else { "b" }.into()),
                time: T0 + k * TICK,
                speed,
                load: (k * (i as i64 + 1)) % 500,
                moving: speed > 50.0,
                fuel: (k % 5 != 0).then_some(100.0 - k as f64 * 0.125 - i as f64),
            });
        }
    }
    out
}

/// A point to write: device, tags, time and typed fields.
pub struct Point<'a> {
    pub device: &'a str,
    pub tags: Vec<(&'a str, &'a str)>,
    pub time: i64,
    pub fields: Vec<(&'a str, Value)>,
}

/// Builds a one-stream batch; every field keeps the type of its first value.
pub fn batch(database: &str, stream: &str, points: &[Point]) -> WriteBatch {
    let mut t = TableWrite {
        stream: stream.into(),
        ..Default::default()
    };
    for (row, p) in points.iter().enumerate() {
        let mut tags: Vec<(String, String)> = p
            .tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tags.sort();
        let key = SeriesKey {
            device: p.device.into(),
            tags,
        };
        let idx = t.series.iter().position(|k| *k == key).unwrap_or_else(|| {
            t.series.push(key);
            t.series.len() - 1
        });
        t.row_series.push(idx as u32);
        t.times.push(p.time);
        for (name, v) in &p.fields {
            if !t.columns.iter().any(|c| c.name == *name) {
                let mut c = Column::new(*name, v.field_type());
                (0..row).for_each(|_| c.push_null());
                t.columns.push(c);
            }
        }
        for c in &mut t.columns {
            match p.fields.iter().find(|(n, _)| *n == c.name) {
                Some((_, v)) => {
                    assert!(c.data.push_value(v), "one type per field");
                    c.valid.push(true);
                }
                None => c.push_null(),
            }
        }
    }
    WriteBatch {
        database: database.into(),
        tables: vec![t],
    }
}

/// Writes points into `database.stream`.
pub fn write(engine: &Engine, database: &str, stream: &str, points: &[Point]) {
    engine
        .write(&batch(database, stream, points))
        .expect("write");
}

fn reading_point(r: &Reading) -> Point<'_> {
    let mut tags = vec![("fleet", r.fleet.as_str())];
    if let Some(m) = &r.model {
        tags.push(("model", m.as_str()));
    }
    let mut fields = vec![
        ("speed", Value::Float(r.speed)),
        ("load", Value::Integer(r.load)),
        ("moving", Value::Boolean(r.moving)),
    ];
    if let Some(f) = r.fuel {
        fields.push(("fuel", Value::Float(f)));
    }
    Point {
        device: &r.device,
        tags,
        time: r.time,
        fields,
    }
}

/// `diagnostics`: every 30 s per device, `status` (integer) and `fuel_state` (float).
pub fn diagnostics_points(devices: &[String]) -> Vec<Point<'_>> {
    let mut out = Vec::new();
    for device in devices {
        for k in (0..TICKS).step_by(3) {
            out.push(Point {
                device,
                tags: vec![],
                time: T0 + k * TICK,
                fields: vec![
                    ("status", Value::Integer(k % 4)),
                    ("fuel_state", Value::Float((1000 - k) as f64 / 10.0)),
                ],
            });
        }
    }
    out
}

/// An engine in a temp dir with the fleet: readings of the first hour and all diagnostics in
/// segments, the second hour of readings in the memtable.
pub fn fleet_engine() -> (tempfile::TempDir, Arc<Engine>, Vec<Reading>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.background = false;
    cfg.durability = strata_storage::Durability::None;
    let engine = Arc::new(Engine::open(cfg).unwrap());
    let truth = readings();
    let half = T0 + TICKS / 2 * TICK;
    let first: Vec<Point> = truth
        .iter()
        .filter(|r| r.time < half)
        .map(reading_point)
        .collect();
    let second: Vec<Point> = truth
        .iter()
        .filter(|r| r.time >= half)
        .map(reading_point)
        .collect();
    write(&engine, "default", "readings", &first);
    let devices: Vec<String> = (0..DEVICES).map(|i| format!("d{i}")).collect();
    write(
        &engine,
        "default",
        "diagnostics",
        &diagnostics_points(&devices),
    );
    engine.flush().unwrap();
    write(&engine, "default", "readings", &second);
    (dir, engine, truth)
}

/// A result cell.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Cell {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Cell {
    pub fn f(&self) -> f64 {
        match self {
            Cell::Float(v) => *v,
            Cell::Int(v) => *v as f64,
            other => panic!("not a number: {other:?}"),
        }
    }

    pub fn i(&self) -> i64 {
        match self {
            Cell::Int(v) => *v,
            other => panic!("not an integer: {other:?}"),
        }
    }

    pub fn s(&self) -> &str {
        match self {
            Cell::Str(v) => v,
            other => panic!("not a string: {other:?}"),
        }
    }
}

/// All rows of the batches as cells (timestamps as ns integers).
pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(b.columns().iter().map(|c| cell(c.as_ref(), r)).collect());
        }
    }
    out
}

fn cell(a: &dyn Array, r: usize) -> Cell {
    if a.is_null(r) {
        return Cell::Null;
    }
    match a.data_type() {
        DataType::Int64 => Cell::Int(a.as_primitive::<Int64Type>().value(r)),
        DataType::UInt64 => Cell::UInt(a.as_primitive::<UInt64Type>().value(r)),
        DataType::Float64 => Cell::Float(a.as_primitive::<Float64Type>().value(r)),
        DataType::Boolean => Cell::Bool(a.as_boolean().value(r)),
        DataType::Utf8 => Cell::Str(a.as_string::<i32>().value(r).to_string()),
        DataType::Utf8View => Cell::Str(a.as_string_view().value(r).to_string()),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            Cell::Int(a.as_primitive::<TimestampNanosecondType>().value(r))
        }
        other => panic!("unexpected type {other}"),
    }
}

/// Asserts two floats agree to 1e-9 relative.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Equal answers, floats to rounding ([`close`]).
pub fn approx_eq(a: &[Vec<Cell>], b: &[Vec<Cell>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| match (p, q) {
                    (Cell::Float(u), Cell::Float(v)) => close(*u, *v),
                    _ => p == q,
                })
        })
}

/// The sum over partitions of the metric `name` in the text of an `EXPLAIN ANALYZE` answer
/// (`name=123` entries).
pub fn explain_metric(text: &str, name: &str) -> usize {
    text.split(&format!("{name}="))
        .skip(1)
        .filter_map(|rest| {
            // DataFusion prints large counts scaled: `60.00 K`, `1.20 M`.
            let number: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let scale = match rest[number.len()..].strip_prefix(' ') {
                Some(unit) if unit.starts_with('K') => 1e3,
                Some(unit) if unit.starts_with('M') => 1e6,
                Some(unit) if unit.starts_with('B') => 1e9,
                _ => 1.0,
            };
            number
                .parse::<f64>()
                .ok()
                .map(|n| (n * scale).round() as usize)
        })
        .sum()
}

/// The rows of `text`'s answer (panics with the query on an error).
pub async fn sql(q: &strata_query::QueryEngine, text: &str) -> Vec<Vec<Cell>> {
    let result = q
        .query(text)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    rows(&result.batches)
}

/// The plan `EXPLAIN text` shows, one line per row.
pub async fn explain(q: &strata_query::QueryEngine, text: &str) -> String {
    let result = q.query(&format!("EXPLAIN {text}")).await.unwrap();
    rows(&result.batches)
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| c.s().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
