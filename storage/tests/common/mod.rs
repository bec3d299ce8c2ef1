//! Helpers shared by the engine integration tests: building batches and reading values back.

#![allow(dead_code)]

use strata_storage::{Column, FieldType, ScanRequest, SeriesKey, TableWrite, Value, WriteBatch};

/// One row: device, timestamp and (field, value) pairs.
pub type Row = (String, i64, Vec<(String, Value)>);

/// Builds a one-table batch from rows; every field keeps the type of its first value.
pub fn batch(db: &str, stream: &str, rows: &[Row]) -> WriteBatch {
    let mut t = TableWrite {
        stream: stream.into(),
        ..Default::default()
    };
    for (i, (device, ts, fields)) in rows.iter().enumerate() {
        let key = SeriesKey {
            device: device.clone(),
            tags: vec![],
        };
        let idx = t.series.iter().position(|k| *k == key).unwrap_or_else(|| {
            t.series.push(key);
            t.series.len() - 1
        });
        t.row_series.push(idx as u32);
        t.times.push(*ts);
        for (name, v) in fields {
            if !t.columns.iter().any(|c| &c.name == name) {
                let mut c = Column::new(name.clone(), v.field_type());
                (0..i).for_each(|_| c.push_null());
                t.columns.push(c);
            }
        }
        for c in &mut t.columns {
            match fields.iter().rev().find(|(n, _)| *n == c.name) {
                Some((_, v)) => {
                    assert!(
                        c.data.push_value(v),
                        "test rows must keep one type per field"
                    );
                    c.valid.push(true);
                }
                None => c.push_null(),
            }
        }
    }
    WriteBatch {
        database: db.into(),
        tables: vec![t],
    }
}

/// Full-range scan request.
pub fn all(db: &str, stream: &str) -> ScanRequest {
    ScanRequest {
        database: db.into(),
        stream: stream.into(),
        start: i64::MIN,
        end: i64::MAX,
        ..Default::default()
    }
}

/// Flattens scan results into (device, ts, field, value) tuples.
pub fn flatten(batches: &[strata_storage::SeriesBatch]) -> Vec<(String, i64, String, Value)> {
    let mut out = Vec::new();
    for b in batches {
        for (i, t) in b.times.iter().enumerate() {
            for c in &b.columns {
                if let Some(v) = c.get(i) {
                    out.push((b.key.device.clone(), *t, c.name.clone(), v));
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
    out
}

/// Field types used by the model tests.
pub const TYPES: [(&str, FieldType); 5] = [
    ("f", FieldType::Float),
    ("i", FieldType::Integer),
    ("u", FieldType::Unsigned),
    ("b", FieldType::Boolean),
    ("s", FieldType::String),
];
