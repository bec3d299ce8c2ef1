//! Window math of rollups: which `every`-long window holds a time, and the per-window aggregates
//! (min/max/sum/count/first/last per field, plus the point count) of one series' merged rows,
//! as the rows of the rollup stream.
//!
//! Input rows come from a last-write-wins read (one row per distinct time), so a rewritten
//! point is counted once, with its newest value.

use crate::{Column, FieldType, SeriesBatch, Value};

/// Name of the rollup column counting the points (rows with at least one value) of a window.
pub const POINTS: &str = "points";

/// The statistics kept for numeric (float, integer) fields, in column order.
pub const NUMERIC_STATS: [&str; 6] = ["min", "max", "sum", "count", "first", "last"];

/// The statistics kept for unsigned, boolean and string fields, in column order.
pub const OTHER_STATS: [&str; 3] = ["count", "first", "last"];

/// Start of the `every`-long window (aligned to the Unix epoch) holding `t`.
pub fn window_start(t: i64, every: i64) -> i64 {
    let every = every.max(1);
    t.div_euclid(every).saturating_mul(every)
}

/// The rollup column of statistic `stat` of raw field `field` (`speed` + `max` → `speed_max`).
pub fn stat_column(field: &str, stat: &str) -> String {
    format!("{field}_{stat}")
}

/// The statistics kept for a field of type `ty`.
pub fn stats_of(ty: FieldType) -> &'static [&'static str] {
    match ty {
        FieldType::Float | FieldType::Integer => &NUMERIC_STATS,
        FieldType::Unsigned | FieldType::Boolean | FieldType::String => &OTHER_STATS,
    }
}

/// The type of a statistic's column: counts are integers, sums of integers too, everything else
/// keeps the field's type.
fn stat_type(ty: FieldType, stat: &str) -> FieldType {
    match stat {
        "count" => FieldType::Integer,
        _ => ty,
    }
}

/// The columns of a rollup stream for a raw stream with `fields`: `points`, then per field its
/// statistics in [`stats_of`] order.
pub fn rollup_columns(fields: &[(String, FieldType)]) -> Vec<(String, FieldType)> {
    let mut out = vec![(POINTS.to_string(), FieldType::Integer)];
    for (name, ty) in fields {
        for stat in stats_of(*ty) {
            out.push((stat_column(name, stat), stat_type(*ty, stat)));
        }
    }
    out
}

/// Aggregates of one field in one window.
#[derive(Debug, Clone, PartialEq)]
enum FieldAgg {
    Empty,
    Float {
        min: f64,
        max: f64,
        sum: f64,
        count: i64,
        first: f64,
        last: f64,
    },
    Integer {
        min: i64,
        max: i64,
        sum: i64,
        count: i64,
        first: i64,
        last: i64,
    },
    Other {
        count: i64,
        first: Value,
        last: Value,
    },
}

impl FieldAgg {
    /// Adds the next value (rows arrive in time order, so the first value stays first).
    fn add(&mut self, v: Value) {
        *self = match (std::mem::replace(self, FieldAgg::Empty), v) {
            (FieldAgg::Empty, Value::Float(x)) => FieldAgg::Float {
                min: x,
                max: x,
                sum: x,
                count: 1,
                first: x,
                last: x,
            },
            (FieldAgg::Empty, Value::Integer(x)) => FieldAgg::Integer {
                min: x,
                max: x,
                sum: x,
                count: 1,
                first: x,
                last: x,
            },
            (FieldAgg::Empty, v) => FieldAgg::Other {
                count: 1,
                first: v.clone(),
                last: v,
            },
            (
                FieldAgg::Float {
                    min,
                    max,
                    sum,
                    count,
                    first,
                    ..
                },
                Value::Float(x),
            ) => FieldAgg::Float {
                min: min.min(x),
                max: max.max(x),
                sum: sum + x,
                count: count + 1,
                first,
                last: x,
            },
            (
                FieldAgg::Integer {
                    min,
                    max,
                    sum,
                    count,
                    first,
                    ..
                },
                Value::Integer(x),
            ) => FieldAgg::Integer {
                min: min.min(x),
                max: max.max(x),
                sum: sum.wrapping_add(x),
                count: count + 1,
                first,
                last: x,
            },
            (FieldAgg::Other { count, first, .. }, v) => FieldAgg::Other {
                count: count + 1,
                first,
                last: v,
            },
            // A field's type is fixed by the schema; a mismatch cannot come from a read.
            (agg, _) => agg,
        };
    }

    /// The statistic `stat` (one of [`stats_of`]), `None` when the window has no value.
    fn stat(&self, stat: &str) -> Option<Value> {
        match self {
            FieldAgg::Empty => None,
            FieldAgg::Float {
                min,
                max,
                sum,
                count,
                first,
                last,
            } => Some(match stat {
                "min" => Value::Float(*min),
                "max" => Value::Float(*max),
                "sum" => Value::Float(*sum),
                "count" => Value::Integer(*count),
                "first" => Value::Float(*first),
                _ => Value::Float(*last),
            }),
            FieldAgg::Integer {
                min,
                max,
                sum,
                count,
                first,
                last,
            } => Some(match stat {
                "min" => Value::Integer(*min),
                "max" => Value::Integer(*max),
                "sum" => Value::Integer(*sum),
                "count" => Value::Integer(*count),
                "first" => Value::Integer(*first),
                _ => Value::Integer(*last),
            }),
            FieldAgg::Other { count, first, last } => Some(match stat {
                "count" => Value::Integer(*count),
                "first" => first.clone(),
                _ => last.clone(),
            }),
        }
    }
}

/// One window of one series: its start, its point count and per-field aggregates.
#[derive(Debug, Clone, PartialEq)]
struct WindowAgg {
    start: i64,
    points: i64,
    fields: Vec<FieldAgg>,
}

/// The rollup rows of one series: window starts and the columns of [`rollup_columns`]`(fields)`.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRows {
    /// Window starts, increasing.
    pub times: Vec<i64>,
    /// Columns in [`rollup_columns`] order.
    pub columns: Vec<Column>,
}

/// Aggregates a series' merged rows (sorted, distinct times, columns in `fields` order) into
/// `every`-long windows. Rows without any value are not points and are skipped.
pub fn aggregate(batch: &SeriesBatch, fields: &[(String, FieldType)], every: i64) -> RollupRows {
    let mut windows: Vec<WindowAgg> = Vec::new();
    for (i, &t) in batch.times.iter().enumerate() {
        let values: Vec<Option<Value>> = batch.columns.iter().map(|c| c.get(i)).collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        let start = window_start(t, every);
        if windows.last().is_none_or(|w| w.start != start) {
            windows.push(WindowAgg {
                start,
                points: 0,
                fields: vec![FieldAgg::Empty; fields.len()],
            });
        }
        let w = windows.last_mut().expect("pushed above");
        w.points += 1;
        for (col, v) in batch.columns.iter().zip(values) {
            let Some(v) = v else { continue };
            if let Some(fi) = fields.iter().position(|(n, _)| *n == col.name) {
                w.fields[fi].add(v);
            }
        }
    }
    to_rows(&windows, fields)
}

fn to_rows(windows: &[WindowAgg], fields: &[(String, FieldType)]) -> RollupRows {
    let mut columns: Vec<Column> = rollup_columns(fields)
        .into_iter()
        .map(|(n, ty)| Column::new(n, ty))
        .collect();
    for w in windows {
        push(&mut columns[0], Some(Value::Integer(w.points)));
        let mut c = 1;
        for ((_, ty), agg) in fields.iter().zip(&w.fields) {
            for stat in stats_of(*ty) {
                push(&mut columns[c], agg.stat(stat));
                c += 1;
            }
        }
    }
    RollupRows {
        times: windows.iter().map(|w| w.start).collect(),
        columns,
    }
}

fn push(col: &mut Column, v: Option<Value>) {
    match v {
        Some(v) => {
            col.data.push_value(&v);
            col.valid.push(true);
        }
        None => col.push_null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeriesKey;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn fields() -> Vec<(String, FieldType)> {
        vec![
            ("f".into(), FieldType::Float),
            ("i".into(), FieldType::Integer),
        ]
    }

    /// Rows as a last-write-wins read returns them: distinct sorted times, the newest write
    /// of each (time, field) kept.
    fn merged(writes: &[(i64, Option<f64>, Option<i64>)]) -> SeriesBatch {
        let mut by_time: BTreeMap<i64, (Option<f64>, Option<i64>)> = BTreeMap::new();
        for &(t, f, i) in writes {
            let e = by_time.entry(t).or_default();
            if f.is_some() {
                e.0 = f;
            }
            if i.is_some() {
                e.1 = i;
            }
        }
        let mut fc = Column::new("f", FieldType::Float);
        let mut ic = Column::new("i", FieldType::Integer);
        for (f, i) in by_time.values() {
            push(&mut fc, f.map(Value::Float));
            push(&mut ic, i.map(Value::Integer));
        }
        SeriesBatch {
            series_id: 0,
            key: SeriesKey::default(),
            times: by_time.keys().copied().collect(),
            columns: vec![fc, ic],
        }
    }

    #[test]
    fn windows_align_to_the_epoch_also_before_it() {
        assert_eq!(window_start(0, 60), 0);
        assert_eq!(window_start(59, 60), 0);
        assert_eq!(window_start(60, 60), 60);
        assert_eq!(window_start(-1, 60), -60);
        assert_eq!(window_start(i64::MIN, 60), i64::MIN, "saturates");
    }

    #[test]
    fn columns_follow_field_types() {
        let cols = rollup_columns(&[
            ("speed".into(), FieldType::Float),
            ("ok".into(), FieldType::Boolean),
        ]);
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "points",
                "speed_min",
                "speed_max",
                "speed_sum",
                "speed_count",
                "speed_first",
                "speed_last",
                "ok_count",
                "ok_first",
                "ok_last"
            ]
        );
        assert_eq!(cols[4].1, FieldType::Integer);
        assert_eq!(cols[8].1, FieldType::Boolean);
    }

    proptest! {
        /// Windowed aggregates equal a naive computation over the last-write-wins rows,
        /// including duplicate (rewritten) points and rows written out of order.
        #[test]
        fn aggregate_matches_naive(
            writes in proptest::collection::vec(
                (-500i64..500, proptest::option::of(-1e3f64..1e3), proptest::option::of(-1000i64..1000)),
                0..200),
            every in 1i64..120,
        ) {
            let batch = merged(&writes);
            let got = aggregate(&batch, &fields(), every);
            // Naive: group the merged rows by window and fold each field's values.
            let mut naive: BTreeMap<i64, (i64, Vec<f64>, Vec<i64>)> = BTreeMap::new();
            for (k, &t) in batch.times.iter().enumerate() {
                let f = batch.columns[0].get(k);
                let i = batch.columns[1].get(k);
                if f.is_none() && i.is_none() {
                    continue;
                }
                let e = naive.entry(t.div_euclid(every) * every).or_default();
                e.0 += 1;
                if let Some(Value::Float(x)) = f { e.1.push(x) }
                if let Some(Value::Integer(x)) = i { e.2.push(x) }
            }
            prop_assert_eq!(&got.times, &naive.keys().copied().collect::<Vec<_>>());
            for (row, (_, (points, fs, is))) in naive.iter().enumerate() {
                let val = |c: usize| got.columns[c].get(row);
                prop_assert_eq!(val(0), Some(Value::Integer(*points)));
                if fs.is_empty() {
                    prop_assert!((1..7).all(|c| val(c).is_none()));
                } else {
                    let min = fs.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = fs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    prop_assert_eq!(val(1), Some(Value::Float(min)));
                    prop_assert_eq!(val(2), Some(Value::Float(max)));
                    prop_assert_eq!(val(3), Some(Value::Float(fs.iter().sum())));
                    prop_assert_eq!(val(4), Some(Value::Integer(fs.len() as i64)));
                    prop_assert_eq!(val(5), Some(Value::Float(fs[0])));
                    prop_assert_eq!(val(6), Some(Value::Float(*fs.last().unwrap())));
                }
                if is.is_empty() {
                    prop_assert!((7..13).all(|c| val(c).is_none()));
                } else {
                    prop_assert_eq!(val(7), Some(Value::Integer(*is.iter().min().unwrap())));
                    prop_assert_eq!(val(8), Some(Value::Integer(*is.iter().max().unwrap())));
                    prop_assert_eq!(val(9), Some(Value::Integer(is.iter().sum())));
                    prop_assert_eq!(val(10), Some(Value::Integer(is.len() as i64)));
                    prop_assert_eq!(val(11), Some(Value::Integer(is[0])));
                    prop_assert_eq!(val(12), Some(Value::Integer(*is.last().unwrap())));
                }
            }
        }
    }
}
