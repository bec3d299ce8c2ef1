//! Test fixtures: a deterministic small fleet written into a real engine (half flushed to
//! segments, half in the memtable), the same points kept in memory as ground truth, and helpers
//! to read query results as plain values.

#![allow(dead_code)]

use std::sync::Arc;

use strata_ingest::line_protocol::{ParseOptions, parse};
use strata_query::arrow::array::{Array, AsArray, RecordBatch};
use strata_query::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, UInt64Type};
use strata_query::arrow::datatypes::TimestampNanosecondType;
use strata_storage::{Engine, EngineConfig};

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
                fuel: (k % 5 != 0).then(|| 100.0 - k as f64 * 0.125 - i as f64),
            });
        }
    }
    out
}

fn reading_line(r: &Reading) -> String {
    let model = r.model.as_ref().map(|m| format!(",model={m}")).unwrap_or_default();
    let fuel = r.fuel.map(|f| format!(",fuel={f}")).unwrap_or_default();
    format!(
        "readings,device={},fleet={}{model} speed={},load={}i,moving={}{fuel} {}\n",
        r.device, r.fleet, r.speed, r.load, r.moving, r.time
    )
}

/// `diagnostics`: every 30 s per device, `status` (integer) and `fuel_state` (float).
pub fn diagnostics_lines() -> String {
    let mut out = String::new();
    for i in 0..DEVICES {
        for k in (0..TICKS).step_by(3) {
            out.push_str(&format!(
                "diagnostics,device=d{i} status={}i,fuel_state={} {}\n",
                k % 4,
                (1000 - k) as f64 / 10.0,
                T0 + k * TICK
            ));
        }
    }
    out
}

/// Parses and writes line protocol into `database`.
pub fn write_lines(engine: &Engine, database: &str, lines: &str) {
    let batch = parse(lines.as_bytes(), database, &ParseOptions::default()).expect("parses");
    engine.write(&batch).expect("write");
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
    let first: String = truth.iter().filter(|r| r.time < half).map(reading_line).collect();
    let second: String = truth.iter().filter(|r| r.time >= half).map(reading_line).collect();
    write_lines(&engine, "default", &first);
    write_lines(&engine, "default", &diagnostics_lines());
    engine.flush().unwrap();
    write_lines(&engine, "default", &second);
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
