//! Writing a cold object: series rows → one Parquet file (layout in [`super::parquet`]'s module
//! doc and docs/format.md). The file, its row groups and footer come from the parquet crate's
//! `SerializedFileWriter`; most column chunks are encoded by Strata from the series' rows,
//! without Arrow arrays in between: `time`, the DECIMAL float fields (the scaled integers
//! [`super::decimal::Scaler`] found in one pass) and integer fields by [`super::ints`], and the
//! string columns that repeat a series' value on each of its rows (`device`, the tags) by
//! [`super::runs`]. The rest (DOUBLE floats, unsigned, boolean and string fields) go through the
//! crate's typed column writers. The Arrow schema is embedded (`ARROW:schema`) as `ArrowWriter`
//! would, so readers see the same types as in objects written by it.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::types::{ColumnDescPtr, ColumnPath};

use super::decimal;
use super::ints::{self, Part};
use super::parquet::CodecResult;
use super::runs::{self, Run};
use crate::rows::Rows;
use crate::segment::Decimals;
use crate::{Column, ColumnData, FieldType, SeriesKey};

/// Most rows per row group (whole series: a longer series has a group of its own): small enough
/// that one device's rows of a day sit in one group, large enough for zstd and the float
/// dictionaries to pay off.
pub(crate) const ROW_GROUP_ROWS: usize = 131_072;

/// Dictionary size (bytes) past which a float column's pages fall back to plain encoding:
/// 2,048 distinct values.
const FLOAT_DICTIONARY_BYTES: usize = 16 * 1024;

/// Encodes series (in the order given) into one Parquet file. Rows are held until
/// [`Encoder::finish`]: the type of each float column (DECIMAL at the smallest exact scale, or
/// DOUBLE, see [`super::decimal`]) depends on every value of the object.
pub(crate) struct Encoder {
    fields: Vec<(String, FieldType)>,
    tags: Vec<String>,
    meta: Vec<KeyValue>,
    pending: Vec<(SeriesKey, Rows)>,
    /// Per pending series (when it came with them), per field, the float field's integers at
    /// their decimal scales ([`Encoder::push_decimal`]).
    decimals: Vec<Vec<Option<Decimals>>>,
    rows: u64,
}

/// How a field's column is written.
enum FieldColumn {
    /// A float field as DECIMAL(18, scale): every valid value of the object, in series order,
    /// as an integer at the column's scale.
    Scaled { scale: u8, values: Vec<i64> },
    /// Any other field, from the series' columns.
    Plain,
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
        Ok(Encoder {
            fields: fields.to_vec(),
            tags: tags.to_vec(),
            meta,
            pending: Vec::new(),
            decimals: Vec::new(),
            rows: 0,
        })
    }

    /// Adds one series' rows (columns in the order of `fields`).
    pub fn push(&mut self, key: SeriesKey, rows: Rows) -> CodecResult<()> {
        self.push_decimal(key, rows, Vec::new())
    }

    /// Adds one series' rows as [`Encoder::push`] does, with a float field's values given as
    /// integers at decimal scales where `decimals` has them (as the segment reader's
    /// `read_series_decimal` returns them: that field's column holds its validity flags and no
    /// values).
    pub fn push_decimal(
        &mut self,
        key: SeriesKey,
        rows: Rows,
        mut decimals: Vec<Option<Decimals>>,
    ) -> CodecResult<()> {
        if decimals.iter().all(Option::is_none) {
            decimals = Vec::new();
        } else if decimals.len() != self.fields.len() {
            return Err(format!(
                "{} decimal columns given for {} fields",
                decimals.len(),
                self.fields.len()
            ));
        }
        self.rows += rows.len() as u64;
        self.pending.push((key, rows));
        self.decimals.push(decimals);
        Ok(())
    }

    /// Per field, how its column is written: a float field whose every value fits a decimal
    /// scale as scaled integers, the others as they are. A scaled field's floats are dropped
    /// from the held rows (its integers replace them), so the object's rows are held once.
    /// A field given as decimals for some series whose column is DOUBLE after all gets those
    /// series' floats back from the integers.
    fn field_columns(&mut self) -> Vec<FieldColumn> {
        (0..self.fields.len())
            .map(|fi| match self.fields[fi].1 {
                FieldType::Float => {
                    let c = self.scaled(fi);
                    let scaled = matches!(c, FieldColumn::Scaled { .. });
                    for (i, (_, r)) in self.pending.iter_mut().enumerate() {
                        let d = self.decimals.get_mut(i).and_then(|d| d.get_mut(fi)?.take());
                        let col = &mut r.columns[fi];
                        match (&mut col.data, d) {
                            (ColumnData::Float(v), _) if scaled => *v = Vec::new(),
                            (ColumnData::Float(v), Some(d)) => *v = floats(&d, &col.valid),
                            _ => {}
                        }
                    }
                    c
                }
                _ => FieldColumn::Plain,
            })
            .collect()
    }

    /// Float field `fi` as DECIMAL if every value of the object fits a scale.
    fn scaled(&self, fi: usize) -> FieldColumn {
        let mut scaler = decimal::Scaler::default();
        scaler.values.reserve(self.rows as usize);
        for (i, (_, r)) in self.pending.iter().enumerate() {
            if let Some(d) = self.decimals.get(i).and_then(|d| d.get(fi)?.as_ref()) {
                if d.runs().all(|(ints, k)| scaler.push_scaled(ints, k)) {
                    continue;
                }
                return FieldColumn::Plain;
            }
            let c = &r.columns[fi];
            let ColumnData::Float(values) = &c.data else {
                return FieldColumn::Plain;
            };
            for (v, ok) in values.iter().zip(&c.valid) {
                if *ok && !scaler.push(*v) {
                    return FieldColumn::Plain;
                }
            }
        }
        FieldColumn::Scaled {
            scale: scaler.scale,
            values: scaler.values,
        }
    }

    /// The Arrow schema of the file (embedded as `ARROW:schema`; the Parquet schema is derived
    /// from it).
    fn schema(&self, columns: &[FieldColumn]) -> Schema {
        let mut cols = vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("device", DataType::Utf8, false),
        ];
        cols.extend(
            self.tags
                .iter()
                .map(|t| Field::new(t, DataType::Utf8, true)),
        );
        cols.extend(self.fields.iter().zip(columns).map(|((n, t), c)| {
            let dt = match c {
                FieldColumn::Scaled { scale, .. } => {
                    DataType::Decimal128(decimal::PRECISION, *scale as i8)
                }
                FieldColumn::Plain => arrow_type(*t),
            };
            Field::new(n, dt, true)
        }));
        Schema::new(cols)
    }

    fn properties(&self, columns: &[FieldColumn]) -> CodecResult<WriterProperties> {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).map_err(|e| e.to_string())?,
            ))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_key_value_metadata(Some(self.meta.clone()));
        // `time`, DECIMAL floats and integers are written by `ints`, `device` and the tags by
        // `runs`; these settings are for the columns the crate's writer encodes.
        for ((name, t), c) in self.fields.iter().zip(columns) {
            props = match (t, c) {
                (FieldType::Float, FieldColumn::Plain) => float_column(props, name),
                (FieldType::Unsigned, _) => plain(props, name, Encoding::DELTA_BINARY_PACKED),
                _ => props,
            };
        }
        Ok(props.build())
    }

    /// Finishes the file: its bytes and its row count.
    pub fn finish(mut self) -> CodecResult<(Vec<u8>, u64)> {
        let columns = self.field_columns();
        let schema = self.schema(&columns);
        let mut props = self.properties(&columns)?;
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let parquet_schema = ArrowSchemaConverter::new()
            .convert(&schema)
            .map_err(|e| e.to_string())?;
        let mut file = SerializedFileWriter::new(
            Vec::new(),
            parquet_schema.root_schema_ptr(),
            Arc::new(props),
        )
        .map_err(|e| e.to_string())?;
        let mut zstd = zstd::bulk::Compressor::new(ints::ZSTD_LEVEL).map_err(|e| e.to_string())?;
        // Per scaled field, how many of its values the groups written so far took.
        let mut taken = vec![0usize; self.fields.len()];
        for group in self.row_groups() {
            let mut writer = file.next_row_group().map_err(|e| e.to_string())?;
            self.write_group(
                &mut writer,
                group,
                (&columns, parquet_schema.columns()),
                &mut taken,
                &mut zstd,
            )
            .map_err(|e| e.to_string())?;
            writer.close().map_err(|e| e.to_string())?;
        }
        let bytes = file.into_inner().map_err(|e| e.to_string())?;
        Ok((bytes, self.rows))
    }

    /// The series of each row group: whole series, at most [`ROW_GROUP_ROWS`] rows unless one
    /// series alone has more.
    fn row_groups(&self) -> Vec<&[(SeriesKey, Rows)]> {
        let mut groups = Vec::new();
        let (mut start, mut rows) = (0, 0);
        for (i, (_, r)) in self.pending.iter().enumerate() {
            if i > start && rows + r.len() > ROW_GROUP_ROWS {
                groups.push(&self.pending[start..i]);
                (start, rows) = (i, 0);
            }
            rows += r.len();
        }
        if start < self.pending.len() {
            groups.push(&self.pending[start..]);
        }
        groups
    }

    /// Writes one row group's columns in schema order: `time`, `device`, the tags, the fields
    /// (`columns`: how each field is written, and the descriptor of every leaf column).
    fn write_group(
        &self,
        writer: &mut SerializedRowGroupWriter<'_, Vec<u8>>,
        group: &[(SeriesKey, Rows)],
        (columns, leaves): (&[FieldColumn], &[ColumnDescPtr]),
        taken: &mut [usize],
        zstd: &mut zstd::bulk::Compressor<'static>,
    ) -> parquet::errors::Result<()> {
        let times: Vec<Part<'_>> = group
            .iter()
            .map(|(_, r)| Part {
                values: &r.times,
                valid: None,
            })
            .collect();
        ints::append(writer, leaves[0].clone(), &times, zstd)?;
        let device: Vec<Run<'_>> = group
            .iter()
            .map(|(k, r)| Run {
                value: Some(k.device.as_str()),
                rows: r.len(),
            })
            .collect();
        runs::append(writer, leaves[1].clone(), &device)?;
        for (ti, tag) in self.tags.iter().enumerate() {
            let tag_runs: Vec<Run<'_>> = group
                .iter()
                .map(|(k, r)| Run {
                    value: k
                        .tags
                        .iter()
                        .find(|(t, _)| t == tag)
                        .map(|(_, v)| v.as_str()),
                    rows: r.len(),
                })
                .collect();
            runs::append(writer, leaves[2 + ti].clone(), &tag_runs)?;
        }
        for (fi, c) in columns.iter().enumerate() {
            let leaf = leaves[2 + self.tags.len() + fi].clone();
            match (c, self.fields[fi].1) {
                (FieldColumn::Scaled { values, .. }, _) => {
                    let parts: Vec<Part<'_>> = group
                        .iter()
                        .map(|(_, r)| {
                            let valid = &r.columns[fi].valid;
                            let from = taken[fi];
                            taken[fi] += valid.iter().filter(|v| **v).count();
                            Part {
                                values: &values[from..taken[fi]],
                                valid: Some(valid),
                            }
                        })
                        .collect();
                    ints::append(writer, leaf, &parts, zstd)?;
                }
                (FieldColumn::Plain, FieldType::Integer) => {
                    let present: Vec<Vec<i64>> = group
                        .iter()
                        .map(|(_, r)| match &r.columns[fi].data {
                            ColumnData::Integer(v) => {
                                valid(v, &r.columns[fi].valid).copied().collect()
                            }
                            _ => Vec::new(),
                        })
                        .collect();
                    let parts: Vec<Part<'_>> = group
                        .iter()
                        .zip(&present)
                        .map(|((_, r), p)| Part {
                            values: p,
                            valid: Some(&r.columns[fi].valid),
                        })
                        .collect();
                    ints::append(writer, leaf, &parts, zstd)?;
                }
                (FieldColumn::Plain, _) => self.crate_column(writer, group, fi)?,
            }
        }
        Ok(())
    }

    /// Writes field `fi` of `group` through the crate's column writer.
    fn crate_column(
        &self,
        writer: &mut SerializedRowGroupWriter<'_, Vec<u8>>,
        group: &[(SeriesKey, Rows)],
        fi: usize,
    ) -> parquet::errors::Result<()> {
        let mut column = next_column(writer)?;
        let mut levels = Vec::new();
        for (_, r) in group {
            let col = &r.columns[fi];
            levels.clear();
            levels.extend(col.valid.iter().map(|v| i16::from(*v)));
            write_field(column.untyped(), col, &levels)?;
        }
        column.close()
    }
}

/// The row group's next column writer (there is one per column of the schema).
fn next_column<'a>(
    writer: &'a mut SerializedRowGroupWriter<'_, Vec<u8>>,
) -> parquet::errors::Result<parquet::file::writer::SerializedColumnWriter<'a>> {
    writer
        .next_column()?
        .ok_or_else(|| parquet::errors::ParquetError::General("too few columns".into()))
}

/// Writes one series' column of a field that Strata does not encode itself (DOUBLE floats,
/// unsigned, boolean and string fields) through the crate's column writer: its valid values
/// with definition levels `levels` (one per row).
fn write_field(
    writer: &mut ColumnWriter<'_>,
    col: &Column,
    levels: &[i16],
) -> parquet::errors::Result<()> {
    let defs = Some(levels);
    match (writer, &col.data) {
        (ColumnWriter::Int64ColumnWriter(w), ColumnData::Unsigned(v)) => {
            let vals: Vec<i64> = valid(v, &col.valid).map(|x| *x as i64).collect();
            w.write_batch(&vals, defs, None)?;
        }
        (ColumnWriter::DoubleColumnWriter(w), ColumnData::Float(v)) => {
            let vals: Vec<f64> = valid(v, &col.valid).copied().collect();
            w.write_batch(&vals, defs, None)?;
        }
        (ColumnWriter::BoolColumnWriter(w), ColumnData::Boolean(v)) => {
            let vals: Vec<bool> = valid(v, &col.valid).copied().collect();
            w.write_batch(&vals, defs, None)?;
        }
        (ColumnWriter::ByteArrayColumnWriter(w), ColumnData::String(s)) => {
            let vals: Vec<ByteArray> = s
                .iter()
                .zip(&col.valid)
                .filter(|(_, ok)| **ok)
                .map(|(x, _)| ByteArray::from(x))
                .collect();
            w.write_batch(&vals, defs, None)?;
        }
        _ => {
            return Err(parquet::errors::ParquetError::General(format!(
                "column '{}' does not match its Parquet type",
                col.name
            )));
        }
    }
    Ok(())
}

/// A float column's values (one per row, 0.0 where `valid` is not set) from its present
/// values' integers at their decimal scales: each `i / 10^k`, the float they stand for.
fn floats(d: &Decimals, valid: &[bool]) -> Vec<f64> {
    let mut present = d.runs().flat_map(|(ints, k)| {
        let div = 10f64.powi(i32::from(k));
        ints.iter().map(move |&i| i as f64 / div)
    });
    valid
        .iter()
        .map(|ok| {
            if *ok {
                present.next().unwrap_or(0.0)
            } else {
                0.0
            }
        })
        .collect()
}

/// The values of `v` whose `valid` entry is set.
fn valid<'a, T>(v: &'a [T], valid: &'a [bool]) -> impl Iterator<Item = &'a T> + 'a {
    v.iter().zip(valid).filter(|(_, ok)| **ok).map(|(x, _)| x)
}

/// A column written without a dictionary, in encoding `enc`.
fn plain(props: WriterPropertiesBuilder, name: &str, enc: Encoding) -> WriterPropertiesBuilder {
    let path = ColumnPath::from(name);
    props
        .set_column_dictionary_enabled(path.clone(), false)
        .set_column_encoding(path, enc)
}

/// A float field's encoding: a dictionary while the column repeats few values (sensor readings
/// at fixed precision: speeds, levels, states), falling back to plain pages once it holds more
/// than [`FLOAT_DICTIONARY_BYTES`]. Measured on the fleet simulator's data (pyarrow, zstd 3,
/// `benches/cold/RESULTS.md`): 2.1–2.5 bytes per value, against 3.3–4.1 for byte-stream-split,
/// which suits full-precision noise but not decimal readings, whose repeated 8-byte patterns
/// zstd finds in plain pages.
fn float_column(props: WriterPropertiesBuilder, name: &str) -> WriterPropertiesBuilder {
    let path = ColumnPath::from(name);
    props
        .set_column_dictionary_enabled(path.clone(), true)
        .set_column_dictionary_page_size_limit(path.clone(), FLOAT_DICTIONARY_BYTES)
        .set_column_encoding(path, Encoding::PLAIN)
}
