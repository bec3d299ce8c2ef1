//! Arrow record batches → [`strata_storage::WriteBatch`] rows of one stream: the wire format of Flight `DoPut`
//! and Flight SQL bulk ingest (`CommandStatementIngest`, e.g. ADBC). A batch has the columns
//!
//! - `time`: timestamp (any unit, any or no time zone) or int64 nanoseconds since the epoch; no nulls;
//! - `device`: utf8 (also large/view utf8 or a dictionary of utf8); no nulls;
//! - tag columns: utf8, named in the schema metadata key [`TAGS_METADATA`] as a comma-separated
//!   list (a null tag value leaves the tag off that row's series);
//! - every other column is a field: float64 (float16/32 widened), int64 (int8–32 widened),
//!   uint64 (uint8–32 widened), bool or utf8; nulls are absent values.
//!
//! [`layout`] checks a schema once and gives each column its role; [`to_table`] converts each
//! batch. A schema that does not fit is refused before any row is converted.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Float64Type, Int64Type, Schema, TimeUnit, TimestampNanosecondType, UInt64Type,
};
use strata_storage::{Column, ColumnData, FieldType, SeriesKey, TableWrite};

/// Schema metadata key listing the tag columns, comma-separated (e.g. `"site,fleet"`).
pub const TAGS_METADATA: &str = "strata.tags";

/// Why a record batch cannot be converted (Flight maps every one to `InvalidArgument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArrowError {
    /// A required column is missing.
    #[error("missing column '{0}' (DoPut needs 'time', 'device' and at least one field column)")]
    MissingColumn(&'static str),
    /// No field columns.
    #[error(
        "no field columns: besides 'time', 'device' and the tags, a batch needs at least one field"
    )]
    NoFields,
    /// A column has a type Strata cannot store in its role.
    #[error("column '{column}' has type {found}; {expected}")]
    Type {
        /// Column name.
        column: String,
        /// The Arrow type sent.
        found: String,
        /// What the role accepts.
        expected: &'static str,
    },
    /// A column name appears twice.
    #[error("column '{0}' appears more than once")]
    Duplicate(String),
    /// A tag named in the metadata is not a column.
    #[error("tag '{0}' named in schema metadata '{TAGS_METADATA}' is not a column")]
    UnknownTag(String),
    /// A column could not be converted to its stored type.
    #[error("cannot convert a column: {0}")]
    Convert(String),
    /// A float field holds NaN or an infinity (refused as on every other write path: a
    /// device model's min/max could not judge it, and SQL aggregates would turn NaN).
    #[error("column '{column}' row {row}: {value} is not a finite number")]
    NotFinite {
        /// Column name.
        column: String,
        /// Row within the batch.
        row: usize,
        /// The value sent (`NaN`, `inf`, `-inf`).
        value: String,
    },
    /// A `time` or `device` value is null or out of range.
    #[error("column '{column}' row {row}: {problem}")]
    Value {
        /// Column name.
        column: &'static str,
        /// Row within the batch.
        row: usize,
        /// What is wrong.
        problem: &'static str,
    },
}

/// The role of each column of an accepted schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Index of `time`.
    pub time: usize,
    /// Index of `device`.
    pub device: usize,
    /// Tag columns: index and name.
    pub tags: Vec<(usize, String)>,
    /// Field columns: index, name and stored type.
    pub fields: Vec<(usize, String, FieldType)>,
}

/// Checks a schema and assigns each column its role.
pub fn layout(schema: &Schema) -> Result<Layout, ArrowError> {
    let tags = declared_tags(schema)?;
    let (mut time, mut device) = (None, None);
    let mut layout = Layout {
        time: 0,
        device: 0,
        tags: Vec::new(),
        fields: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let name = f.name();
        if !seen.insert(name.as_str()) {
            return Err(ArrowError::Duplicate(name.clone()));
        }
        match name.as_str() {
            "time" => time = Some(check_time(f.data_type()).map(|()| i)?),
            "device" => device = Some(check_text(name, f.data_type(), "device").map(|()| i)?),
            _ if tags.contains(name) => {
                check_text(name, f.data_type(), "a tag")?;
                layout.tags.push((i, name.clone()));
            }
            _ => layout
                .fields
                .push((i, name.clone(), field_type(name, f.data_type())?)),
        }
    }
    layout.time = time.ok_or(ArrowError::MissingColumn("time"))?;
    layout.device = device.ok_or(ArrowError::MissingColumn("device"))?;
    if layout.fields.is_empty() {
        return Err(ArrowError::NoFields);
    }
    Ok(layout)
}

/// Tag names from the schema metadata; each must be a column.
fn declared_tags(schema: &Schema) -> Result<Vec<String>, ArrowError> {
    let Some(list) = schema.metadata().get(TAGS_METADATA) else {
        return Ok(Vec::new());
    };
    let tags: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    for t in &tags {
        if t == "time" || t == "device" || schema.field_with_name(t).is_err() {
            return Err(ArrowError::UnknownTag(t.clone()));
        }
    }
    Ok(tags)
}

fn type_error(column: &str, found: &DataType, expected: &'static str) -> ArrowError {
    ArrowError::Type {
        column: column.to_owned(),
        found: found.to_string(),
        expected,
    }
}

fn check_time(t: &DataType) -> Result<(), ArrowError> {
    match t {
        DataType::Timestamp(..) | DataType::Int64 => Ok(()),
        _ => Err(type_error(
            "time",
            t,
            "'time' must be a timestamp (any unit) or int64 nanoseconds",
        )),
    }
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

fn check_text(column: &str, t: &DataType, role: &'static str) -> Result<(), ArrowError> {
    if is_text(t) {
        return Ok(());
    }
    let expected = if role == "device" {
        "'device' must be utf8"
    } else {
        "tags must be utf8"
    };
    Err(type_error(column, t, expected))
}

/// The stored type of a field column.
fn field_type(column: &str, t: &DataType) -> Result<FieldType, ArrowError> {
    Ok(match t {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => FieldType::Float,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => FieldType::Integer,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            FieldType::Unsigned
        }
        DataType::Boolean => FieldType::Boolean,
        t if is_text(t) => FieldType::String,
        _ => {
            return Err(type_error(
                column,
                t,
                "fields must be float64, int64, uint64, bool or utf8",
            ));
        }
    })
}

/// Casts a column to `to` (the layout already checked that the cast is a widening one).
fn cast_to(col: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    cast(col, to).map_err(|e| ArrowError::Convert(e.to_string()))
}

/// Converts one record batch of an accepted layout into the rows of `stream`.
pub fn to_table(
    layout: &Layout,
    stream: &str,
    batch: &RecordBatch,
) -> Result<TableWrite, ArrowError> {
    let times = times(batch.column(layout.time))?;
    let device = cast_to(batch.column(layout.device), &DataType::Utf8)?;
    let tags = layout
        .tags
        .iter()
        .map(|(i, name)| Ok((name.clone(), cast_to(batch.column(*i), &DataType::Utf8)?)))
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let (series, row_series) = series_of(device.as_string::<i32>(), &tags)?;
    let columns = layout
        .fields
        .iter()
        .map(|(i, name, ty)| column(batch.column(*i), name, *ty))
        .collect::<Result<Vec<_>, ArrowError>>()?;
    Ok(TableWrite {
        stream: stream.to_owned(),
        series,
        row_series,
        times,
        columns,
    })
}

/// Nanosecond timestamps of the `time` column.
fn times(col: &ArrayRef) -> Result<Vec<i64>, ArrowError> {
    // Keep the time zone: a cast to a zone-less type would shift instants to local wall time.
    let ns = match col.data_type() {
        DataType::Timestamp(_, tz) => {
            cast_to(col, &DataType::Timestamp(TimeUnit::Nanosecond, tz.clone()))?
        }
        _ => col.clone(),
    };
    if ns.null_count() > col.null_count() {
        let row = (0..ns.len()).find(|i| ns.is_null(*i) && !col.is_null(*i));
        let problem = "timestamp out of the nanosecond range (years 1677–2262)";
        return Err(ArrowError::Value {
            column: "time",
            row: row.unwrap_or(0),
            problem,
        });
    }
    if let Some(row) = (0..ns.len()).find(|i| ns.is_null(*i)) {
        return Err(ArrowError::Value {
            column: "time",
            row,
            problem: "null time",
        });
    }
    let times = match ns.data_type() {
        DataType::Int64 => ns.as_primitive::<Int64Type>().values().to_vec(),
        _ => ns
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .to_vec(),
    };
    // The range the line protocol accepts: reads are half-open, so a point at i64::MAX could
    // never be read back.
    let accepted = crate::line_protocol::MIN_TIMESTAMP_NS..=crate::line_protocol::MAX_TIMESTAMP_NS;
    if let Some(row) = times.iter().position(|t| !accepted.contains(t)) {
        return Err(ArrowError::Value {
            column: "time",
            row,
            problem: "timestamp outside the accepted range, i64::MIN + 2 ..= i64::MAX - 1 nanoseconds",
        });
    }
    Ok(times)
}

/// Distinct series keys and, per row, the index of its series.
fn series_of(
    device: &arrow::array::StringArray,
    tags: &[(String, ArrayRef)],
) -> Result<(Vec<SeriesKey>, Vec<u32>), ArrowError> {
    let mut sorted: Vec<(&str, &arrow::array::StringArray)> = tags
        .iter()
        .map(|(n, a)| (n.as_str(), a.as_string::<i32>()))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut index: HashMap<SeriesKey, u32> = HashMap::new();
    let mut series = Vec::new();
    let mut row_series = Vec::with_capacity(device.len());
    for row in 0..device.len() {
        if device.is_null(row) {
            return Err(ArrowError::Value {
                column: "device",
                row,
                problem: "null device",
            });
        }
        if !crate::text::is_device_id(device.value(row)) {
            return Err(ArrowError::Value {
                column: "device",
                row,
                problem: "invalid device id: expected 1 to 128 characters from A-Z a-z 0-9 . _ : -",
            });
        }
        let key = SeriesKey {
            device: device.value(row).to_owned(),
            tags: sorted
                .iter()
                .filter(|(_, a)| !a.is_null(row))
                .map(|(n, a)| ((*n).to_owned(), a.value(row).to_owned()))
                .collect(),
        };
        let next = u32::try_from(series.len()).unwrap_or(u32::MAX);
        let id = *index.entry(key.clone()).or_insert_with(|| {
            series.push(key);
            next
        });
        row_series.push(id);
    }
    Ok((series, row_series))
}

/// Refuses the first valid value of a float column that is NaN or infinite.
fn finite(values: &[f64], valid: &[bool], name: &str) -> Result<(), ArrowError> {
    match values
        .iter()
        .zip(valid)
        .position(|(v, ok)| *ok && !v.is_finite())
    {
        Some(row) => Err(ArrowError::NotFinite {
            column: name.to_owned(),
            row,
            value: values[row].to_string(),
        }),
        None => Ok(()),
    }
}

/// One field column in the engine's layout.
fn column(col: &ArrayRef, name: &str, ty: FieldType) -> Result<Column, ArrowError> {
    let valid: Vec<bool> = (0..col.len()).map(|i| col.is_valid(i)).collect();
    let data = match ty {
        FieldType::Float => {
            let a = cast_to(col, &DataType::Float64)?;
            let values = a.as_primitive::<Float64Type>().values().to_vec();
            finite(&values, &valid, name)?;
            ColumnData::Float(values)
        }
        FieldType::Integer => {
            let a = cast_to(col, &DataType::Int64)?;
            ColumnData::Integer(a.as_primitive::<Int64Type>().values().to_vec())
        }
        FieldType::Unsigned => {
            let a = cast_to(col, &DataType::UInt64)?;
            ColumnData::Unsigned(a.as_primitive::<UInt64Type>().values().to_vec())
        }
        FieldType::Boolean => ColumnData::Boolean(
            col.as_boolean()
                .iter()
                .map(|v| v.unwrap_or(false))
                .collect(),
        ),
        FieldType::String => {
            let a = cast_to(col, &DataType::Utf8)?;
            let mut s = strata_storage::StringColumn::default();
            for v in a.as_string::<i32>().iter() {
                s.push(v.unwrap_or(""));
            }
            ColumnData::String(s)
        }
    };
    Ok(Column {
        name: name.to_owned(),
        data,
        valid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BooleanArray, Float32Array, Int64Array, StringArray, TimestampMillisecondArray,
    };
    use arrow::datatypes::Field;
    use std::sync::Arc;

    fn schema(fields: Vec<Field>, tags: Option<&str>) -> Arc<Schema> {
        let mut meta = HashMap::new();
        if let Some(t) = tags {
            meta.insert(TAGS_METADATA.to_owned(), t.to_owned());
        }
        Arc::new(Schema::new_with_metadata(fields, meta))
    }

    fn good_batch() -> RecordBatch {
        let s = schema(
            vec![
                Field::new(
                    "time",
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    false,
                ),
                Field::new("device", DataType::Utf8, false),
                Field::new("site", DataType::Utf8, true),
                Field::new("temp", DataType::Float32, true),
                Field::new("count", DataType::Int64, true),
                Field::new("ok", DataType::Boolean, true),
                Field::new("note", DataType::Utf8, true),
            ],
            Some("site"),
        );
        RecordBatch::try_new(
            s,
            vec![
                Arc::new(
                    TimestampMillisecondArray::from(vec![1_000, 2_000, 3_000]).with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec!["d1", "d1", "d2"])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("a")])),
                Arc::new(Float32Array::from(vec![Some(1.5), None, Some(3.0)])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(BooleanArray::from(vec![true, false, true])),
                Arc::new(StringArray::from(vec![Some("x"), Some("y"), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn batch_converts_to_series_and_columns() {
        let b = good_batch();
        let l = layout(&b.schema()).unwrap();
        assert_eq!(l.tags, vec![(2, "site".to_string())]);
        assert_eq!(l.fields.len(), 4);
        let t = to_table(&l, "env", &b).unwrap();
        assert_eq!(t.times, vec![1_000_000_000, 2_000_000_000, 3_000_000_000]);
        assert_eq!(t.series.len(), 3, "{:?}", t.series);
        assert_eq!(
            t.series[0].tags,
            vec![("site".to_string(), "a".to_string())]
        );
        assert!(t.series[1].tags.is_empty());
        assert_eq!(t.row_series, vec![0, 1, 2]);
        let temp = &t.columns[0];
        assert_eq!(temp.valid, vec![true, false, true]);
        assert_eq!(temp.get(2), Some(strata_storage::Value::Float(3.0)));
        assert_eq!(
            t.columns[3].get(1),
            Some(strata_storage::Value::String("y".into()))
        );
        assert_eq!(t.columns[3].get(2), None);
    }

    #[test]
    fn bad_schemas_are_refused_with_the_reason() {
        let time = Field::new("time", DataType::Int64, false);
        let device = Field::new("device", DataType::Utf8, false);
        let v = Field::new("v", DataType::Float64, true);
        let e = layout(&schema(vec![device.clone(), v.clone()], None)).unwrap_err();
        assert_eq!(e, ArrowError::MissingColumn("time"));
        let e = layout(&schema(vec![time.clone(), v.clone()], None)).unwrap_err();
        assert_eq!(e, ArrowError::MissingColumn("device"));
        let e = layout(&schema(vec![time.clone(), device.clone()], None)).unwrap_err();
        assert_eq!(e, ArrowError::NoFields);
        let list = Field::new("l", DataType::Date32, true);
        let e = layout(&schema(vec![time.clone(), device.clone(), list], None)).unwrap_err();
        assert!(e.to_string().contains("column 'l' has type Date32"), "{e}");
        let e = layout(&schema(
            vec![time.clone(), device.clone(), v.clone()],
            Some("site"),
        ))
        .unwrap_err();
        assert_eq!(e, ArrowError::UnknownTag("site".into()));
        let bad_time = Field::new("time", DataType::Utf8, false);
        assert!(layout(&schema(vec![bad_time, device.clone(), v.clone()], None)).is_err());
        let num_tag = Field::new("site", DataType::Int32, false);
        let e = layout(&schema(vec![time, device, v, num_tag], Some("site"))).unwrap_err();
        assert!(e.to_string().contains("tags must be utf8"), "{e}");
    }

    /// `time` (int64), `device` and a float field `v`, with the first two `nullable` or not.
    fn time_device_v(nullable: bool) -> Arc<Schema> {
        schema(
            vec![
                Field::new("time", DataType::Int64, nullable),
                Field::new("device", DataType::Utf8, nullable),
                Field::new("v", DataType::Float64, true),
            ],
            None,
        )
    }

    #[test]
    fn nan_and_infinite_floats_are_refused_but_null_slots_are_not_checked() {
        let s = time_device_v(false);
        let batch = |v: Vec<Option<f64>>| {
            let times: Vec<i64> = (1..=v.len() as i64).collect();
            let devices = vec!["d"; v.len()];
            RecordBatch::try_new(
                s.clone(),
                vec![
                    Arc::new(Int64Array::from(times)),
                    Arc::new(StringArray::from(devices)),
                    Arc::new(arrow::array::Float64Array::from(v)),
                ],
            )
            .unwrap()
        };
        let l = layout(&s).unwrap();
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = to_table(&l, "m", &batch(vec![Some(1.0), Some(bad)])).unwrap_err();
            assert!(
                e.to_string().contains("column 'v' row 1")
                    && e.to_string().contains("not a finite number"),
                "{e}"
            );
        }
        // A null slot's buffer value is not data (Arrow leaves it unspecified).
        let nulls = arrow::array::Float64Array::new(
            vec![1.0, f64::NAN].into(),
            Some(vec![true, false].into()),
        );
        let b = RecordBatch::try_new(
            s.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["d", "d"])),
                Arc::new(nulls),
            ],
        )
        .unwrap();
        let t = to_table(&l, "m", &b).unwrap();
        assert_eq!(t.columns[0].valid, vec![true, false]);
    }

    #[test]
    fn null_time_and_device_are_refused() {
        let s = time_device_v(true);
        let b = RecordBatch::try_new(
            s.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec!["d", "d"])),
                Arc::new(arrow::array::Float64Array::from(vec![1.0, 2.0])),
            ],
        )
        .unwrap();
        let e = to_table(&layout(&s).unwrap(), "m", &b).unwrap_err();
        assert!(e.to_string().contains("row 1: null time"), "{e}");
        let b = RecordBatch::try_new(
            s.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("d"), None])),
                Arc::new(arrow::array::Float64Array::from(vec![1.0, 2.0])),
            ],
        )
        .unwrap();
        let e = to_table(&layout(&s).unwrap(), "m", &b).unwrap_err();
        assert!(e.to_string().contains("null device"), "{e}");
    }

    /// The line protocol's rules: times within i64::MIN + 2 ..= i64::MAX - 1 (a point at
    /// i64::MAX could never be read back) and device ids of `[A-Za-z0-9._:-]{1,128}`.
    #[test]
    fn times_and_devices_the_line_protocol_refuses_are_refused() {
        let s = schema(
            vec![
                Field::new("time", DataType::Int64, false),
                Field::new("device", DataType::Utf8, false),
                Field::new("v", DataType::Float64, true),
            ],
            None,
        );
        let table = |times: Vec<i64>, devices: Vec<&str>| {
            let v = arrow::array::Float64Array::from(vec![1.0; times.len()]);
            let b = RecordBatch::try_new(
                s.clone(),
                vec![
                    Arc::new(Int64Array::from(times)),
                    Arc::new(StringArray::from(devices)),
                    Arc::new(v),
                ],
            )
            .unwrap();
            to_table(&layout(&s).unwrap(), "m", &b)
        };
        let edges = vec![i64::MIN + 2, i64::MAX - 1];
        assert_eq!(table(edges.clone(), vec!["d", "d"]).unwrap().times, edges);
        for bad in [i64::MAX, i64::MIN, i64::MIN + 1] {
            let e = table(vec![0, bad], vec!["d", "d"]).unwrap_err();
            assert!(e.to_string().contains("row 1: timestamp outside"), "{e}");
        }
        let long = "x".repeat(129);
        for bad in ["", "a b", "a/b", "d\u{e9}", long.as_str()] {
            let e = table(vec![0, 1], vec!["ok.1:a-b_c", bad]).unwrap_err();
            assert!(
                e.to_string().contains("row 1: invalid device id"),
                "{bad:?}: {e}"
            );
        }
    }
}
