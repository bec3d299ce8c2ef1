//! Cold objects as Apache Parquet: one object per moved segment, rows ordered by series then
//! time, columns `time` (timestamp ns, UTC), `device`, one nullable string column per tag key,
//! one nullable column per field (float64, int64, uint64, boolean, utf8). zstd compression;
//! delta encoding for timestamps and integers, byte-stream-split for floats, dictionaries for
//! strings (device and tags repeat on every row of a series); column statistics on pages, so
//! external readers (DuckDB, pyarrow, Spark, Trino) prune by time. Key-value metadata
//! `strata.tags` and `strata.fields` (JSON) tell Strata which columns are tags and the field
//! types; the other readers need nothing but the column names.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt64Array,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::rows::Rows;
use crate::{Column, ColumnData, FieldType, SeriesKey, StringColumn};

/// Rows per record batch handed to the writer (and per row group at most 8 of them).
const BATCH_ROWS: usize = 65_536;
const ROW_GROUP_ROWS: usize = 8 * BATCH_ROWS;

/// Errors of encoding or decoding an object, as text (the caller adds the object's name).
pub(crate) type CodecResult<T> = std::result::Result<T, String>;

/// Encodes series (in the order given) into one Parquet file.
pub(crate) struct Encoder {
    fields: Vec<(String, FieldType)>,
    tags: Vec<String>,
    schema: Arc<Schema>,
    writer: ArrowWriter<Vec<u8>>,
    pending: Vec<(SeriesKey, Rows)>,
    pending_rows: usize,
    rows: u64,
}

fn arrow_type(t: FieldType) -> DataType {
    match t {
        FieldType::Float => DataType::Float64,
        FieldType::Integer => DataType::Int64,
        FieldType::Unsigned => DataType::UInt64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::String => DataType::Utf8,
    }
}

impl Encoder {
    /// A writer for `fields` with tag columns `tags` (sorted); `extra` goes into the file's
    /// key-value metadata. Refuses a tag and a field of the same name (or one called `time` or
    /// `device`): the file would have two columns of that name.
    pub fn new(
        fields: &[(String, FieldType)],
        tags: &[String],
        extra: &[(&str, String)],
    ) -> CodecResult<Encoder> {
        let mut seen = std::collections::HashSet::from(["time", "device"]);
        for name in tags.iter().chain(fields.iter().map(|f| &f.0)) {
            if !seen.insert(name.as_str()) {
                return Err(format!(
                    "column name '{name}' is used twice (tag, field, time or device); the object cannot hold both"
                ));
            }
        }
        let mut cols = vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("device", DataType::Utf8, false),
        ];
        cols.extend(tags.iter().map(|t| Field::new(t, DataType::Utf8, true)));
        cols.extend(
            fields
                .iter()
                .map(|(n, t)| Field::new(n, arrow_type(*t), true)),
        );
        let schema = Arc::new(Schema::new(cols));
        let mut meta = vec![
            KeyValue::new(
                "strata.tags".into(),
                serde_json::to_string(tags).map_err(|e| e.to_string())?,
            ),
            KeyValue::new(
                "strata.fields".into(),
                serde_json::to_string(fields).map_err(|e| e.to_string())?,
            ),
        ];
        meta.extend(
            extra
                .iter()
                .map(|(k, v)| KeyValue::new(k.to_string(), v.clone())),
        );
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).map_err(|e| e.to_string())?,
            ))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_key_value_metadata(Some(meta));
        let plain = |props: parquet::file::properties::WriterPropertiesBuilder,
                     name: &str,
                     enc: Encoding| {
            let path = ColumnPath::from(name);
            props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, enc)
        };
        props = plain(props, "time", Encoding::DELTA_BINARY_PACKED);
        for (name, t) in fields {
            props = match t {
                FieldType::Float => plain(props, name, Encoding::BYTE_STREAM_SPLIT),
                FieldType::Integer | FieldType::Unsigned => {
                    plain(props, name, Encoding::DELTA_BINARY_PACKED)
                }
                _ => props,
            };
        }
        let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.build()))
            .map_err(|e| e.to_string())?;
        Ok(Encoder {
            fields: fields.to_vec(),
            tags: tags.to_vec(),
            schema,
            writer,
            pending: Vec::new(),
            pending_rows: 0,
            rows: 0,
        })
    }

    /// Adds one series' rows (columns in the order of `fields`).
    pub fn push(&mut self, key: SeriesKey, rows: Rows) -> CodecResult<()> {
        self.pending_rows += rows.len();
        self.rows += rows.len() as u64;
        self.pending.push((key, rows));
        if self.pending_rows >= BATCH_ROWS {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> CodecResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let parts = std::mem::take(&mut self.pending);
        self.pending_rows = 0;
        let batch = self.batch(&parts)?;
        self.writer.write(&batch).map_err(|e| e.to_string())
    }

    fn batch(&self, parts: &[(SeriesKey, Rows)]) -> CodecResult<RecordBatch> {
        let n: usize = parts.iter().map(|(_, r)| r.len()).sum();
        let mut times = Vec::with_capacity(n);
        let mut devices = Vec::with_capacity(n);
        let mut tags: Vec<Vec<Option<&str>>> = vec![Vec::with_capacity(n); self.tags.len()];
        for (key, rows) in parts {
            times.extend_from_slice(&rows.times);
            devices.extend(std::iter::repeat_n(key.device.as_str(), rows.len()));
            for (i, t) in self.tags.iter().enumerate() {
                let v = key
                    .tags
                    .iter()
                    .find(|(k, _)| k == t)
                    .map(|(_, v)| v.as_str());
                tags[i].extend(std::iter::repeat_n(v, rows.len()));
            }
        }
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
            Arc::new(StringArray::from(devices)),
        ];
        arrays.extend(
            tags.into_iter()
                .map(|v| Arc::new(StringArray::from(v)) as ArrayRef),
        );
        for (fi, (_, t)) in self.fields.iter().enumerate() {
            let cols: Vec<&Column> = parts.iter().map(|(_, r)| &r.columns[fi]).collect();
            arrays.push(field_array(*t, &cols));
        }
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| e.to_string())
    }

    /// Finishes the file: its bytes and its row count.
    pub fn finish(mut self) -> CodecResult<(Vec<u8>, u64)> {
        self.write_pending()?;
        let bytes = self.writer.into_inner().map_err(|e| e.to_string())?;
        Ok((bytes, self.rows))
    }
}

/// One Arrow array from the same field's columns of several series.
fn field_array(t: FieldType, cols: &[&Column]) -> ArrayRef {
    let valid: Vec<bool> = cols.iter().flat_map(|c| c.valid.iter().copied()).collect();
    let nulls = Some(NullBuffer::from(valid));
    macro_rules! prim {
        ($variant:ident, $arr:ty) => {{
            let v: Vec<_> = cols
                .iter()
                .flat_map(|c| match &c.data {
                    ColumnData::$variant(v) => v.clone(),
                    _ => Vec::new(),
                })
                .collect();
            Arc::new(<$arr>::new(v.into(), nulls)) as ArrayRef
        }};
    }
    match t {
        FieldType::Float => prim!(Float, Float64Array),
        FieldType::Integer => prim!(Integer, Int64Array),
        FieldType::Unsigned => prim!(Unsigned, UInt64Array),
        FieldType::Boolean => {
            let v: Vec<Option<bool>> = cols
                .iter()
                .flat_map(|c| match &c.data {
                    ColumnData::Boolean(v) => v
                        .iter()
                        .zip(&c.valid)
                        .map(|(b, ok)| ok.then_some(*b))
                        .collect(),
                    _ => Vec::new(),
                })
                .collect();
            Arc::new(BooleanArray::from(v))
        }
        FieldType::String => {
            let v: Vec<Option<&str>> = cols
                .iter()
                .flat_map(|c| match &c.data {
                    ColumnData::String(s) => s
                        .iter()
                        .zip(&c.valid)
                        .map(|(x, ok)| ok.then_some(x))
                        .collect::<Vec<_>>(),
                    _ => Vec::new(),
                })
                .collect();
            Arc::new(StringArray::from(v))
        }
    }
}

/// A decoded cold object: every series' rows (all the object's fields), by series key with tags
/// sorted by name.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub fields: Vec<(String, FieldType)>,
    pub series: HashMap<SeriesKey, Rows>,
}

/// The series key with its tags sorted by name (how decoded objects are looked up).
pub(crate) fn canonical(key: &SeriesKey) -> SeriesKey {
    let mut k = key.clone();
    k.tags.sort();
    k
}

/// Decodes a whole object written by [`Encoder`].
pub(crate) fn decode(bytes: bytes::Bytes) -> CodecResult<Decoded> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let meta = |k: &str| {
        kv.iter()
            .find(|e| e.key == k)
            .and_then(|e| e.value.clone())
            .ok_or_else(|| format!("metadata '{k}' is missing (not written by Strata?)"))
    };
    let tags: Vec<String> =
        serde_json::from_str(&meta("strata.tags")?).map_err(|e| e.to_string())?;
    let fields: Vec<(String, FieldType)> =
        serde_json::from_str(&meta("strata.fields")?).map_err(|e| e.to_string())?;
    let reader = builder.build().map_err(|e| e.to_string())?;
    let mut out = Decoded {
        fields: fields.clone(),
        series: HashMap::new(),
    };
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        decode_batch(&batch, &tags, &fields, &mut out.series)?;
    }
    Ok(out)
}

fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> CodecResult<&'a T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("column '{name}' is missing or of another type"))
}

fn decode_batch(
    b: &RecordBatch,
    tags: &[String],
    fields: &[(String, FieldType)],
    out: &mut HashMap<SeriesKey, Rows>,
) -> CodecResult<()> {
    let times = column::<TimestampNanosecondArray>(b, "time")?;
    let devices = column::<StringArray>(b, "device")?;
    let tag_cols: Vec<&StringArray> = tags
        .iter()
        .map(|t| column::<StringArray>(b, t))
        .collect::<CodecResult<_>>()?;
    let field_cols: Vec<&dyn Array> = fields
        .iter()
        .map(|(n, _)| {
            b.column_by_name(n)
                .map(|c| c.as_ref())
                .ok_or_else(|| format!("column '{n}' is missing"))
        })
        .collect::<CodecResult<_>>()?;
    let key_at = |i: usize| {
        let mut tags: Vec<(String, String)> = tags
            .iter()
            .zip(&tag_cols)
            .filter(|(_, c)| c.is_valid(i))
            .map(|(t, c)| (t.clone(), c.value(i).to_string()))
            .collect();
        tags.sort();
        SeriesKey {
            device: devices.value(i).to_string(),
            tags,
        }
    };
    let same = |i: usize, j: usize| {
        devices.value(i) == devices.value(j)
            && tag_cols
                .iter()
                .all(|c| c.is_valid(i) == c.is_valid(j) && c.value(i) == c.value(j))
    };
    let mut start = 0;
    while start < b.num_rows() {
        let mut end = start + 1;
        while end < b.num_rows() && same(start, end) {
            end += 1;
        }
        let rows = out
            .entry(key_at(start))
            .or_insert_with(|| Rows::empty(fields));
        rows.times.extend((start..end).map(|i| times.value(i)));
        for (col, (arr, (_, t))) in rows.columns.iter_mut().zip(field_cols.iter().zip(fields)) {
            append_arrow(col, *arr, *t, start..end)?;
        }
        start = end;
    }
    Ok(())
}

fn append_arrow(
    col: &mut Column,
    arr: &dyn Array,
    t: FieldType,
    range: std::ops::Range<usize>,
) -> CodecResult<()> {
    let bad = || format!("column '{}' does not hold {t:?} values", col.name);
    for i in range {
        let ok = arr.is_valid(i);
        col.valid.push(ok);
        if !ok {
            // Null slots hold the type's default, as in every other `Column`.
            col.data.push_default();
            continue;
        }
        match (&mut col.data, t) {
            (ColumnData::Float(v), FieldType::Float) => v.push(
                arr.as_any()
                    .downcast_ref::<Float64Array>()
                    .ok_or_else(bad)?
                    .value(i),
            ),
            (ColumnData::Integer(v), FieldType::Integer) => v.push(
                arr.as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(bad)?
                    .value(i),
            ),
            (ColumnData::Unsigned(v), FieldType::Unsigned) => v.push(
                arr.as_any()
                    .downcast_ref::<UInt64Array>()
                    .ok_or_else(bad)?
                    .value(i),
            ),
            (ColumnData::Boolean(v), FieldType::Boolean) => v.push(
                arr.as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(bad)?
                    .value(i),
            ),
            (ColumnData::String(s), FieldType::String) => {
                let a = arr.as_any().downcast_ref::<StringArray>().ok_or_else(bad)?;
                push_str(s, a.value(i));
            }
            _ => return Err(bad()),
        }
    }
    Ok(())
}

fn push_str(s: &mut StringColumn, v: &str) {
    s.push(v);
}

/// `rows` (all of an object's `have` fields) projected onto `want` (by name; a field the object
/// lacks is all-null) and cut to `[first, last]`.
pub(crate) fn project(
    rows: &Rows,
    have: &[(String, FieldType)],
    want: &[(String, FieldType)],
    (first, last): (i64, i64),
) -> Rows {
    let lo = rows.times.partition_point(|&t| t < first);
    let hi = rows.times.partition_point(|&t| t <= last);
    let times = rows.times[lo..hi].to_vec();
    let columns = want
        .iter()
        .map(
            |(name, t)| match have.iter().position(|(n, ht)| n == name && ht == t) {
                Some(i) => {
                    let c = &rows.columns[i];
                    Column {
                        name: name.clone(),
                        data: c.data.slice(lo..hi),
                        valid: c.valid[lo..hi].to_vec(),
                    }
                }
                None => {
                    let mut c = Column::new(name.clone(), *t);
                    for _ in lo..hi {
                        c.push_null();
                    }
                    c
                }
            },
        )
        .collect();
    Rows { times, columns }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    fn rows(times: &[i64], v: &[Option<f64>], s: &[Option<&str>]) -> Rows {
        let mut a = Column::new("v", FieldType::Float);
        for x in v {
            match x {
                Some(x) => {
                    a.data.push_value(&Value::Float(*x));
                    a.valid.push(true);
                }
                None => a.push_null(),
            }
        }
        let mut b = Column::new("s", FieldType::String);
        for x in s {
            match x {
                Some(x) => {
                    b.data.push_value(&Value::String((*x).into()));
                    b.valid.push(true);
                }
                None => b.push_null(),
            }
        }
        Rows {
            times: times.to_vec(),
            columns: vec![a, b],
        }
    }

    #[test]
    fn series_round_trip_with_nulls_and_missing_tags() {
        let fields = vec![
            ("v".to_string(), FieldType::Float),
            ("s".to_string(), FieldType::String),
        ];
        let tags = vec!["fleet".to_string(), "model".to_string()];
        let mut enc = Encoder::new(&fields, &tags, &[]).unwrap();
        let k1 = SeriesKey {
            device: "t1".into(),
            tags: vec![("fleet".into(), "north".into())],
        };
        let k2 = SeriesKey {
            device: "t2".into(),
            tags: vec![
                ("model".into(), "x".into()),
                ("fleet".into(), "south".into()),
            ],
        };
        let r1 = rows(
            &[1, 2, 3],
            &[Some(1.5), None, Some(3.0)],
            &[None, Some("a"), None],
        );
        let r2 = rows(&[2], &[Some(-0.0)], &[Some("z")]);
        enc.push(k1.clone(), r1.clone()).unwrap();
        enc.push(k2.clone(), r2.clone()).unwrap();
        let (bytes, n) = enc.finish().unwrap();
        assert_eq!(n, 4);
        let d = decode(bytes.into()).unwrap();
        assert_eq!(d.series.len(), 2);
        assert_eq!(d.series[&canonical(&k1)], r1);
        assert_eq!(d.series[&canonical(&k2)], r2);
        let p = project(
            &d.series[&canonical(&k1)],
            &d.fields,
            &[
                ("v".into(), FieldType::Float),
                ("w".into(), FieldType::Integer),
            ],
            (2, 3),
        );
        assert_eq!(p.times, vec![2, 3]);
        assert_eq!(p.columns[0].valid, vec![false, true]);
        assert_eq!(p.columns[1].valid, vec![false, false]);
    }

    #[test]
    fn a_tag_named_like_a_field_is_refused() {
        let fields = vec![("fleet".to_string(), FieldType::Float)];
        let e = Encoder::new(&fields, &["fleet".into()], &[]).err().unwrap();
        assert!(e.contains("'fleet' is used twice"), "{e}");
    }
}
