//! Storage scan results ([`SeriesBatch`]) to Arrow record batches of a table's projected columns.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    StringBuilder, TimestampNanosecondArray, UInt64Array,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use strata_storage::{Column, ColumnData, SeriesBatch};

use crate::layout::{ColumnKind, TIME_ZONE};

/// Builds one record batch holding the rows of all `series`, one column per entry of `kinds`
/// (which must match `schema`).
pub fn to_record_batch(
    schema: &SchemaRef,
    kinds: &[ColumnKind],
    series: &[SeriesBatch],
) -> Result<RecordBatch, ArrowError> {
    let rows: usize = series.iter().map(|s| s.times.len()).sum();
    let columns: Vec<ArrayRef> = kinds
        .iter()
        .map(|kind| column(kind, series, rows))
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
}

fn column(kind: &ColumnKind, series: &[SeriesBatch], rows: usize) -> ArrayRef {
    match kind {
        ColumnKind::Time => {
            let mut times = Vec::with_capacity(rows);
            series
                .iter()
                .for_each(|s| times.extend_from_slice(&s.times));
            Arc::new(TimestampNanosecondArray::from(times).with_timezone(TIME_ZONE))
        }
        ColumnKind::Device => repeated(series, rows, |s| Some(s.key.device.as_str())),
        ColumnKind::Tag(key) => repeated(series, rows, |s| {
            s.key
                .tags
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }),
        ColumnKind::Field(name, ty) => field(name, *ty, series, rows),
    }
}

/// A string column holding, for every row of a series, the value `value` picks from that series.
fn repeated(
    series: &[SeriesBatch],
    rows: usize,
    value: impl Fn(&SeriesBatch) -> Option<&str>,
) -> ArrayRef {
    let mut builder = StringBuilder::with_capacity(rows, rows.saturating_mul(8));
    for s in series {
        let v = value(s);
        for _ in 0..s.times.len() {
            builder.append_option(v);
        }
    }
    Arc::new(builder.finish())
}

/// Concatenated values and validity of one field over all series (absent columns are all null).
struct Gather<T> {
    values: Vec<T>,
    valid: Vec<bool>,
}

impl<T: Clone + Default> Gather<T> {
    fn collect(
        name: &str,
        series: &[SeriesBatch],
        rows: usize,
        values_of: impl Fn(&ColumnData) -> Option<&[T]>,
    ) -> Gather<T> {
        let mut g = Gather {
            values: Vec::with_capacity(rows),
            valid: Vec::with_capacity(rows),
        };
        for s in series {
            let n = s.times.len();
            match find(s, name).and_then(|c| Some((values_of(&c.data)?, c))) {
                Some((values, c)) if values.len() == n && c.valid.len() == n => {
                    g.values.extend_from_slice(values);
                    g.valid.extend_from_slice(&c.valid);
                }
                _ => {
                    g.values.resize(g.values.len() + n, T::default());
                    g.valid.resize(g.valid.len() + n, false);
                }
            }
        }
        g
    }

    fn nulls(&self) -> Option<NullBuffer> {
        match self.valid.iter().all(|v| *v) {
            true => None,
            false => Some(NullBuffer::from(self.valid.clone())),
        }
    }
}

fn find<'a>(s: &'a SeriesBatch, name: &str) -> Option<&'a Column> {
    s.columns.iter().find(|c| c.name == name)
}

fn field(
    name: &str,
    ty: strata_storage::FieldType,
    series: &[SeriesBatch],
    rows: usize,
) -> ArrayRef {
    use strata_storage::FieldType as T;
    match ty {
        T::Float => {
            let g = Gather::collect(name, series, rows, |d| match d {
                ColumnData::Float(v) => Some(v.as_slice()),
                _ => None,
            });
            let nulls = g.nulls();
            Arc::new(Float64Array::new(g.values.into(), nulls))
        }
        T::Integer => {
            let g = Gather::collect(name, series, rows, |d| match d {
                ColumnData::Integer(v) => Some(v.as_slice()),
                _ => None,
            });
            let nulls = g.nulls();
            Arc::new(Int64Array::new(g.values.into(), nulls))
        }
        T::Unsigned => {
            let g = Gather::collect(name, series, rows, |d| match d {
                ColumnData::Unsigned(v) => Some(v.as_slice()),
                _ => None,
            });
            let nulls = g.nulls();
            Arc::new(UInt64Array::new(g.values.into(), nulls))
        }
        T::Boolean => {
            let g = Gather::collect(name, series, rows, |d| match d {
                ColumnData::Boolean(v) => Some(v.as_slice()),
                _ => None,
            });
            let nulls = g.nulls();
            Arc::new(BooleanArray::new(g.values.into(), nulls))
        }
        T::String => strings(name, series, rows),
    }
}

fn strings(name: &str, series: &[SeriesBatch], rows: usize) -> ArrayRef {
    let mut builder = StringBuilder::with_capacity(rows, rows.saturating_mul(8));
    for s in series {
        let n = s.times.len();
        match find(s, name) {
            Some(Column {
                data: ColumnData::String(v),
                valid,
                ..
            }) if v.len() == n && valid.len() == n => {
                for (i, ok) in valid.iter().enumerate() {
                    builder.append_option(ok.then(|| v.get(i)));
                }
            }
            _ => (0..n).for_each(|_| builder.append_null()),
        }
    }
    Arc::new(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::TableLayout;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, TimestampNanosecondType};
    use strata_storage::{FieldType, SeriesKey, Value};

    fn series(
        device: &str,
        tags: &[(&str, &str)],
        times: &[i64],
        speeds: &[Option<f64>],
    ) -> SeriesBatch {
        let mut speed = Column::new("speed", FieldType::Float);
        for v in speeds {
            match v {
                Some(x) => {
                    speed.data.push_value(&Value::Float(*x));
                    speed.valid.push(true);
                }
                None => speed.push_null(),
            }
        }
        SeriesBatch {
            series_id: 0,
            key: SeriesKey {
                device: device.into(),
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            times: times.to_vec(),
            columns: vec![speed],
        }
    }

    #[test]
    fn series_become_rows_with_keys_repeated() {
        let layout = TableLayout::new(
            "default",
            "r",
            &["fleet".into()],
            &[
                ("speed".into(), FieldType::Float),
                ("note".into(), FieldType::String),
            ],
        );
        let input = [
            series("a", &[("fleet", "n")], &[1, 2], &[Some(1.5), None]),
            series("b", &[], &[3], &[Some(3.0)]),
        ];
        let batch = to_record_batch(&layout.schema, &layout.kinds, &input).unwrap();
        assert_eq!(batch.num_rows(), 3);
        let t = batch.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!(t.values().to_vec(), vec![1, 2, 3]);
        let device = batch.column(1).as_string::<i32>();
        assert_eq!((device.value(0), device.value(2)), ("a", "b"));
        let fleet = batch.column(2).as_string::<i32>();
        assert_eq!((fleet.value(1), fleet.is_null(2)), ("n", true));
        let speed = batch.column(3).as_primitive::<Float64Type>();
        assert_eq!(
            (speed.value(0), speed.is_null(1), speed.value(2)),
            (1.5, true, 3.0)
        );
        assert_eq!(batch.column(4).null_count(), 3, "absent field is all null");
    }

    proptest::proptest! {
        /// Any mix of series, values and nulls converts row for row.
        #[test]
        fn values_and_nulls_round_trip(
            input in proptest::collection::vec(
                (0u8..4, proptest::collection::vec(proptest::option::of(-1e9f64..1e9), 0..20)),
                0..6,
            )
        ) {
            let layout = TableLayout::new("d", "s", &[], &[("speed".into(), FieldType::Float)]);
            let mut t = 0i64;
            let batches: Vec<SeriesBatch> = input
                .iter()
                .map(|(dev, values)| {
                    let times: Vec<i64> = values.iter().map(|_| { t += 1; t }).collect();
                    series(&format!("dev{dev}"), &[], &times, values)
                })
                .collect();
            let batch = to_record_batch(&layout.schema, &layout.kinds, &batches).unwrap();
            let speed = batch.column(2).as_primitive::<Float64Type>();
            let device = batch.column(1).as_string::<i32>();
            let mut row = 0;
            for ((dev, values), s) in input.iter().zip(&batches) {
                for (i, v) in values.iter().enumerate() {
                    proptest::prop_assert_eq!(device.value(row), format!("dev{dev}"));
                    proptest::prop_assert_eq!(speed.is_valid(row), v.is_some());
                    if let Some(x) = v {
                        proptest::prop_assert_eq!(speed.value(row), *x);
                    }
                    proptest::prop_assert_eq!(
                        batch.column(0).as_primitive::<TimestampNanosecondType>().value(row),
                        s.times[i]
                    );
                    row += 1;
                }
            }
            proptest::prop_assert_eq!(batch.num_rows(), row);
        }
    }

    #[test]
    fn empty_projection_keeps_the_row_count() {
        let schema = Arc::new(arrow::datatypes::Schema::empty());
        let input = [series("a", &[], &[1, 2], &[Some(1.0), Some(2.0)])];
        let batch = to_record_batch(&schema, &[], &input).unwrap();
        assert_eq!((batch.num_rows(), batch.num_columns()), (2, 0));
    }
}
