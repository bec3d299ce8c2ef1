//! Writing a cold object: series rows → one Parquet file (layout in [`super::parquet`]'s module
//! doc and docs/format.md). The file, its row groups and footer come from the parquet crate's
//! `SerializedFileWriter`; most column chunks are encoded by Strata from the series' rows,
//! without Arrow arrays in between: `time`, the DECIMAL float fields and integer fields by
//! [`super::ints`], and the string columns that repeat a series' value on each of its rows
//! (`device`, the tags) by [`super::runs`]. The rest (DOUBLE floats, unsigned, boolean and
//! string fields) go through the crate's typed column writers. The Arrow schema is embedded
//! (`ARROW:schema`) as `ArrowWriter` would, so readers see the same types as in objects written
//! by it.
//!
//! The type of each float column (DECIMAL at the smallest exact scale, or DOUBLE, see
//! [`super::decimal`]) depends on every value of the object, and the schema comes first in the
//! file. [`Writer`] takes those scales up front and then streams: it holds one row group's
//! series at a time, so a move of a large segment holds a row group, not the object (a move
//! finds the scales in a first pass over the segment, `engine/cold_move.rs`). [`Encoder`] holds
//! all series, finds the scales, then writes through a [`Writer`] (erase rewrites, rollups).

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
use crate::segment::{ChunkInts, Decimals, FloatChunk, PackedInts};
use crate::{Column, ColumnData, FieldType, SeriesKey};

/// The tag keys of `keys`, sorted: an object's tag columns.
pub(crate) fn tag_columns<'a>(
    keys: impl IntoIterator<Item = &'a SeriesKey>,
) -> std::collections::BTreeSet<String> {
    keys.into_iter()
        .flat_map(|k| k.tags.iter().map(|(t, _)| t.clone()))
        .collect()
}

/// Most rows per row group (whole series: a longer series has a group of its own): small enough
/// that one device's rows of a day sit in one group, large enough for zstd and the float
/// dictionaries to pay off.
pub(crate) const ROW_GROUP_ROWS: usize = 131_072;

/// Dictionary size (bytes) past which a float column's pages fall back to plain encoding:
/// 2,048 distinct values.
const FLOAT_DICTIONARY_BYTES: usize = 16 * 1024;

/// Encodes series (in the order given) into one Parquet file, holding them all until
/// [`Encoder::finish`] finds each float column's scale (for input too large to hold, find the
/// scales with [`decimal::Scaler`] and use a [`Writer`]).
pub(crate) struct Encoder {
    fields: Vec<(String, FieldType)>,
    tags: Vec<String>,
    extra: Vec<KeyValue>,
    pending: Vec<Series>,
}

/// One series' rows as a writer takes them: a float field's values may come as integers at
/// decimal scales instead (`decimals[fi]`; that column of `rows` then holds its validity flags
/// and no values), as the segment reader's `read_series_decimal` returns them.
struct Series {
    key: SeriesKey,
    rows: Rows,
    /// Empty, or one entry per field.
    decimals: Vec<Option<Decimals>>,
}

impl Series {
    fn decimals(&self, fi: usize) -> Option<&Decimals> {
        self.decimals.get(fi)?.as_ref()
    }
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

/// Refuses a tag and a field of the same name (or one called `time` or `device`): the file
/// would have two columns of that name.
fn check_names(fields: &[(String, FieldType)], tags: &[String]) -> CodecResult<()> {
    let mut seen = std::collections::HashSet::from(["time", "device"]);
    for name in tags.iter().chain(fields.iter().map(|f| &f.0)) {
        if !seen.insert(name.as_str()) {
            return Err(format!(
                "column name '{name}' is used twice (tag, field, time or device); the object cannot hold both"
            ));
        }
    }
    Ok(())
}

impl Encoder {
    /// A writer for `fields` with tag columns `tags` (sorted); `extra` goes into the file's
    /// key-value metadata. Refuses a tag and a field of the same name (or one called `time` or
    /// `device`).
    pub fn new(
        fields: &[(String, FieldType)],
        tags: &[String],
        extra: &[(&str, String)],
    ) -> CodecResult<Encoder> {
        check_names(fields, tags)?;
        Ok(Encoder {
            fields: fields.to_vec(),
            tags: tags.to_vec(),
            extra: extra
                .iter()
                .map(|(k, v)| KeyValue::new(k.to_string(), v.clone()))
                .collect(),
            pending: Vec::new(),
        })
    }

    /// Adds one series' rows (columns in the order of `fields`).
    pub fn push(&mut self, key: SeriesKey, rows: Rows) -> CodecResult<()> {
        self.push_decimal(key, rows, Vec::new())
    }

    /// Adds one series' rows as [`Encoder::push`] does, with a float field's values given as
    /// integers at decimal scales where `decimals` has them (that column of `rows` holds its
    /// validity flags and no values).
    pub fn push_decimal(
        &mut self,
        key: SeriesKey,
        rows: Rows,
        decimals: Vec<Option<Decimals>>,
    ) -> CodecResult<()> {
        let mut series = series(key, rows, decimals, self.fields.len())?;
        for d in series.decimals.iter_mut().flatten() {
            d.unpack()?;
        }
        self.pending.push(series);
        Ok(())
    }

    /// Finishes the file: its bytes and its row count.
    pub fn finish(self) -> CodecResult<(Vec<u8>, u64)> {
        let scales: Vec<Option<u8>> = (0..self.fields.len()).map(|fi| self.scale(fi)).collect();
        let mut writer = Writer::new(&self.fields, &self.tags, self.extra, (&scales, 0))?;
        for s in self.pending {
            writer.push_series(s)?;
        }
        writer.finish()
    }

    /// The decimal scale of float field `fi` over every held value (`None`: DOUBLE, or not a
    /// float field).
    fn scale(&self, fi: usize) -> Option<u8> {
        if self.fields[fi].1 != FieldType::Float {
            return None;
        }
        let mut scaler = decimal::Scaler::default();
        for s in &self.pending {
            if !scaler_takes(&mut scaler, s, fi) {
                return None;
            }
        }
        Some(scaler.scale)
    }
}

/// Feeds float field `fi` of series `s` to `scaler`; false when no scale fits.
fn scaler_takes(scaler: &mut decimal::Scaler, s: &Series, fi: usize) -> bool {
    if let Some(d) = s.decimals(fi) {
        return d.runs().all(|(ints, k)| scaler.push_scaled(ints, k));
    }
    let c = &s.rows.columns[fi];
    let ColumnData::Float(values) = &c.data else {
        return false;
    };
    values
        .iter()
        .zip(&c.valid)
        .all(|(v, ok)| !*ok || scaler.push(*v))
}

/// Checks a series for a writer of `fields` fields.
fn series(
    key: SeriesKey,
    rows: Rows,
    decimals: Vec<Option<Decimals>>,
    fields: usize,
) -> CodecResult<Series> {
    if rows.columns.len() != fields {
        return Err(format!(
            "{} columns given for {fields} fields",
            rows.columns.len()
        ));
    }
    let decimals = match decimals.iter().all(Option::is_none) {
        true => Vec::new(),
        false if decimals.len() == fields => decimals,
        false => {
            return Err(format!(
                "{} decimal columns given for {fields} fields",
                decimals.len()
            ));
        }
    };
    Ok(Series {
        key,
        rows,
        decimals,
    })
}

/// Finds the decimal scale of each float field of a segment in a first pass, for a [`Writer`]
/// (which needs them before the first row group).
#[derive(Debug)]
pub(crate) struct Scales {
    /// Per field: the scaler of a float field still fitting a scale.
    scalers: Vec<Option<decimal::Scaler>>,
}

impl Scales {
    pub fn new(fields: &[(String, FieldType)]) -> Scales {
        Scales {
            scalers: fields
                .iter()
                .map(|(_, t)| (*t == FieldType::Float).then(decimal::Scaler::default))
                .collect(),
        }
    }

    /// Takes float field `fi`'s chunks of one series (from the segment, without decoding its
    /// decimal chunks).
    pub fn push_chunks(&mut self, fi: usize, chunks: &[FloatChunk]) {
        let Some(Some(scaler)) = self.scalers.get_mut(fi) else {
            return;
        };
        let fits = chunks.iter().all(|c| match c {
            FloatChunk::Decimal { k, min, max } => scaler.push_bounds(*k, *min, *max),
            FloatChunk::Values(v) => v.iter().all(|x| scaler.push(*x)),
        });
        if !fits {
            self.scalers[fi] = None;
        }
    }

    /// Per field, the scale of a float field every value fits (`None`: DOUBLE or not a float).
    pub fn finish(self) -> Vec<Option<u8>> {
        self.scalers
            .into_iter()
            .map(|s| s.map(|s| s.scale))
            .collect()
    }
}

/// How a field's column is written.
#[derive(Debug, Clone, Copy)]
enum FieldColumn {
    /// A float field as DECIMAL(18, scale).
    Scaled(u8),
    /// Any other field, from the series' columns.
    Plain,
}

/// Writes series (in the order given) into one Parquet file whose float columns' scales are
/// known up front, a row group at a time: whole series, at most [`ROW_GROUP_ROWS`] rows unless
/// one series alone has more.
pub(crate) struct Writer {
    fields: Vec<(String, FieldType)>,
    tags: Vec<String>,
    columns: Vec<FieldColumn>,
    leaves: Vec<ColumnDescPtr>,
    file: SerializedFileWriter<Vec<u8>>,
    zstd: zstd::bulk::Compressor<'static>,
    /// Per leaf column, whether [`ints`] compresses its pages (decided by its first page).
    squeeze: Vec<ints::Squeeze>,
    /// The row group being gathered, and its rows.
    group: Vec<Series>,
    group_rows: usize,
    rows: u64,
    /// A scaled column's integers for the group being written (kept from group to group).
    scratch: Vec<i64>,
}

impl Writer {
    /// A file for `fields` with tag columns `tags` (sorted), key-value metadata `extra` beside
    /// Strata's, and per field the scale of a float field to write as DECIMAL (`None`: DOUBLE,
    /// and ignored for other fields). Every value pushed must fit its field's scale, as a
    /// [`decimal::Scaler`] found it over the same values. `capacity`: the bytes the file is
    /// expected to take (reserved up front, so the buffer is not copied as it grows).
    pub fn new(
        fields: &[(String, FieldType)],
        tags: &[String],
        extra: Vec<KeyValue>,
        (scales, capacity): (&[Option<u8>], usize),
    ) -> CodecResult<Writer> {
        check_names(fields, tags)?;
        if scales.len() != fields.len() {
            return Err(format!(
                "{} scales given for {} fields",
                scales.len(),
                fields.len()
            ));
        }
        let columns: Vec<FieldColumn> = fields
            .iter()
            .zip(scales)
            .map(|((_, t), s)| match (t, s) {
                (FieldType::Float, Some(s)) if *s <= decimal::MAX_SCALE => FieldColumn::Scaled(*s),
                _ => FieldColumn::Plain,
            })
            .collect();
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
        meta.extend(extra);
        let schema = schema(fields, tags, &columns);
        let mut props = properties(fields, &columns, meta)?;
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let parquet_schema = ArrowSchemaConverter::new()
            .convert(&schema)
            .map_err(|e| e.to_string())?;
        let file = SerializedFileWriter::new(
            Vec::with_capacity(capacity),
            parquet_schema.root_schema_ptr(),
            Arc::new(props),
        )
        .map_err(|e| e.to_string())?;
        Ok(Writer {
            fields: fields.to_vec(),
            tags: tags.to_vec(),
            columns,
            leaves: parquet_schema.columns().to_vec(),
            squeeze: vec![ints::Squeeze::default(); parquet_schema.columns().len()],
            file,
            zstd: zstd::bulk::Compressor::new(ints::ZSTD_LEVEL).map_err(|e| e.to_string())?,
            group: Vec::new(),
            group_rows: 0,
            rows: 0,
            scratch: Vec::new(),
        })
    }

    /// Adds one series' rows, as [`Encoder::push_decimal`] takes them; writes the row group
    /// gathered so far first when this series would take it past [`ROW_GROUP_ROWS`].
    pub fn push(
        &mut self,
        key: SeriesKey,
        rows: Rows,
        decimals: Vec<Option<Decimals>>,
    ) -> CodecResult<()> {
        let s = series(key, rows, decimals, self.fields.len())?;
        self.push_series(s)
    }

    fn push_series(&mut self, mut s: Series) -> CodecResult<()> {
        // A DOUBLE column takes floats: a series that brought integers gets its floats back.
        // Integers still encoded stay so only at their column's scale with exact extremes.
        for (fi, c) in self.columns.iter().enumerate() {
            if let (FieldColumn::Scaled(scale), Some(Some(d))) = (c, s.decimals.get_mut(fi)) {
                at_scale(d, *scale)
                    .map_err(|e| format!("float field #{fi} at decimal scale {scale}: {e}"))?;
            }
            if !matches!(c, FieldColumn::Plain) {
                continue;
            }
            if let Some(d) = s.decimals.get_mut(fi).and_then(Option::take) {
                let col = &mut s.rows.columns[fi];
                col.data = ColumnData::Float(d.to_floats(&col.valid)?);
            }
        }
        if !self.group.is_empty() && self.group_rows + s.rows.len() > ROW_GROUP_ROWS {
            self.write_group()?;
        }
        self.group_rows += s.rows.len();
        self.rows += s.rows.len() as u64;
        self.group.push(s);
        Ok(())
    }

    /// Finishes the file: its bytes and its row count.
    pub fn finish(mut self) -> CodecResult<(Vec<u8>, u64)> {
        if !self.group.is_empty() {
            self.write_group()?;
        }
        let bytes = self.file.into_inner().map_err(|e| e.to_string())?;
        Ok((bytes, self.rows))
    }

    /// Writes the gathered series as one row group.
    fn write_group(&mut self) -> CodecResult<()> {
        let group = std::mem::take(&mut self.group);
        self.group_rows = 0;
        let mut writer = self.file.next_row_group().map_err(|e| e.to_string())?;
        write_columns(
            &mut writer,
            &group,
            Layout {
                fields: &self.fields,
                tags: &self.tags,
                columns: &self.columns,
                leaves: &self.leaves,
            },
            &mut self.scratch,
            (&mut self.zstd, &mut self.squeeze),
        )?;
        writer.close().map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The Arrow schema of a file (embedded as `ARROW:schema`; the Parquet schema is derived from
/// it).
fn schema(fields: &[(String, FieldType)], tags: &[String], columns: &[FieldColumn]) -> Schema {
    let mut cols = vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("device", DataType::Utf8, false),
    ];
    cols.extend(tags.iter().map(|t| Field::new(t, DataType::Utf8, true)));
    cols.extend(fields.iter().zip(columns).map(|((n, t), c)| {
        let dt = match c {
            FieldColumn::Scaled(scale) => DataType::Decimal128(decimal::PRECISION, *scale as i8),
            FieldColumn::Plain => arrow_type(*t),
        };
        Field::new(n, dt, true)
    }));
    Schema::new(cols)
}

fn properties(
    fields: &[(String, FieldType)],
    columns: &[FieldColumn],
    meta: Vec<KeyValue>,
) -> CodecResult<WriterProperties> {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| e.to_string())?,
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_key_value_metadata(Some(meta));
    // `time`, DECIMAL floats and integers are written by `ints`, `device` and the tags by
    // `runs`; these settings are for the columns the crate's writer encodes.
    for ((name, t), c) in fields.iter().zip(columns) {
        props = match (t, c) {
            (FieldType::Float, FieldColumn::Plain) => float_column(props, name),
            (FieldType::Unsigned, _) => plain(props, name, Encoding::DELTA_BINARY_PACKED),
            _ => props,
        };
    }
    Ok(props.build())
}

/// What a row group's columns are: the fields, the tags, how each field is written, and the
/// descriptor of every leaf column.
struct Layout<'a> {
    fields: &'a [(String, FieldType)],
    tags: &'a [String],
    columns: &'a [FieldColumn],
    leaves: &'a [ColumnDescPtr],
}

/// Writes one row group's columns in schema order: `time`, `device`, the tags, the fields
/// (how each field is written, and the descriptor of every leaf column); `scratch` holds the
/// integers of a scaled column that were not at its scale while its chunk is written (see
/// [`scaled_column`]); `squeeze` says per leaf whether [`ints`] compresses its pages.
fn write_columns(
    writer: &mut SerializedRowGroupWriter<'_, Vec<u8>>,
    group: &[Series],
    Layout {
        fields,
        tags,
        columns,
        leaves,
    }: Layout<'_>,
    scratch: &mut Vec<i64>,
    (zstd, squeeze): (&mut zstd::bulk::Compressor<'static>, &mut [ints::Squeeze]),
) -> CodecResult<()> {
    let e = |e: parquet::errors::ParquetError| e.to_string();
    let times: Vec<Part<'_>> = group.iter().map(|s| time_part(&s.rows.times)).collect();
    ints::append(
        writer,
        leaves[0].clone(),
        &times,
        (&mut *zstd, &mut squeeze[0]),
    )
    .map_err(e)?;
    let device: Vec<Run<'_>> = group
        .iter()
        .map(|s| Run {
            value: Some(s.key.device.as_str()),
            rows: s.rows.len(),
        })
        .collect();
    runs::append(writer, leaves[1].clone(), &device).map_err(e)?;
    for (ti, tag) in tags.iter().enumerate() {
        let tag_runs: Vec<Run<'_>> = group
            .iter()
            .map(|s| Run {
                value: s
                    .key
                    .tags
                    .iter()
                    .find(|(t, _)| t == tag)
                    .map(|(_, v)| v.as_str()),
                rows: s.rows.len(),
            })
            .collect();
        runs::append(writer, leaves[2 + ti].clone(), &tag_runs).map_err(e)?;
    }
    for (fi, c) in columns.iter().enumerate() {
        let li = 2 + tags.len() + fi;
        let (leaf, pages) = (leaves[li].clone(), (&mut *zstd, &mut squeeze[li]));
        match (c, fields[fi].1) {
            (FieldColumn::Scaled(scale), _) => {
                scaled_column(group, fi, *scale, scratch)?;
                let parts = scaled_parts(group, fi, *scale, scratch)?;
                let range = ints::append(writer, leaf, &parts, pages).map_err(e)?;
                // Runs already at the scale were not checked on the way (a pass over memory
                // that cost 5 % of a move): the chunk's extremes are.
                if range.is_some_and(|(lo, hi)| !decimal::fits(&[lo, hi])) {
                    return Err(format!(
                        "a value of float field #{fi} does not fit the column's decimal scale \
                         {scale}"
                    ));
                }
            }
            (FieldColumn::Plain, FieldType::Integer) => {
                // A series with a value on every row (most) gives its values as they lie; the
                // others, their present values gathered.
                let full: Vec<bool> = group
                    .iter()
                    .map(|s| s.rows.columns[fi].valid.iter().all(|v| *v))
                    .collect();
                let present: Vec<Vec<i64>> = group
                    .iter()
                    .zip(&full)
                    .map(|(s, full)| match &s.rows.columns[fi].data {
                        ColumnData::Integer(v) if !full => {
                            valid(v, &s.rows.columns[fi].valid).copied().collect()
                        }
                        _ => Vec::new(),
                    })
                    .collect();
                let parts: Vec<Part<'_>> = group
                    .iter()
                    .zip(full.iter().zip(&present))
                    .map(|(s, (full, p))| match &s.rows.columns[fi].data {
                        ColumnData::Integer(v) if *full => Part::values(v, None),
                        _ => Part::values(p, Some(&s.rows.columns[fi].valid)),
                    })
                    .collect();
                ints::append(writer, leaf, &parts, pages).map_err(e)?;
            }
            (FieldColumn::Plain, _) => crate_column(writer, group, fi).map_err(e)?,
        }
    }
    Ok(())
}

/// A series' `time` part: a page of its own, written without delta-packing the values, when
/// there are enough of them at a regular interval (a device reporting every minute); else its
/// values.
fn time_part(times: &[i64]) -> Part<'_> {
    let regular = match times {
        [first, second, ..] if times.len() >= ints::OWN_PAGE_VALUES => {
            let step = second.wrapping_sub(*first);
            let even = times.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step);
            even.then(|| ints::Encoded::regular(*first, step, times.len()))
                .flatten()
        }
        _ => None,
    };
    match regular {
        Some(encoded) => Part {
            values: &[],
            valid: None,
            encoded: Some(encoded),
        },
        None => Part::values(times, None),
    }
}

/// Float field `fi` of `group` as integers at `scale`, where they are not already: into `out`
/// (replacing what it held), the values of the runs of decimals at another scale and of the
/// series that came as floats, in series order. A run already at `scale` (most of them: a
/// column's scale is the largest of its chunks') stays where it is, and the caller checks that
/// its values fit the column from the chunk's extremes.
fn scaled_column(group: &[Series], fi: usize, scale: u8, out: &mut Vec<i64>) -> CodecResult<()> {
    out.clear();
    let unfit =
        || format!("a value of float field #{fi} does not fit the column's decimal scale {scale}");
    for s in group {
        if let Some(d) = s.decimals(fi) {
            // Chunk by chunk: each is at `scale` already (`at_scale` saw to it in `push_series`).
            if !d.packed.is_empty() {
                continue;
            }
            for (ints, k) in d.runs() {
                if k != scale && !decimal::rescale(ints, k, scale, out) {
                    return Err(unfit());
                }
            }
            continue;
        }
        let c = &s.rows.columns[fi];
        let ColumnData::Float(values) = &c.data else {
            return Err(format!("field #{fi} is not a float column"));
        };
        for v in valid(values, &c.valid) {
            out.push(decimal::scaled_at(*v, scale).ok_or_else(unfit)?);
        }
    }
    Ok(())
}

/// The parts of float field `fi` of `group` at `scale`, after [`scaled_column`] put into
/// `rescaled` what was not at that scale: one part per run of decimals (the run itself when it
/// is at `scale`), with the validity flags up to its last value (the series' last run takes
/// the rest), and one per series of floats or without values.
fn scaled_parts<'a>(
    group: &'a [Series],
    fi: usize,
    scale: u8,
    rescaled: &'a [i64],
) -> CodecResult<Vec<Part<'a>>> {
    let mut parts = Vec::with_capacity(group.len());
    let mut from = 0;
    let mut take = |n: usize| {
        let slice = rescaled.get(from..from + n).unwrap_or_default();
        from += n;
        slice
    };
    for s in group {
        let valid = s.rows.columns[fi].valid.as_slice();
        let Some(d) = s.decimals(fi) else {
            let present = valid.iter().filter(|v| **v).count();
            parts.push(Part::values(take(present), Some(valid)));
            continue;
        };
        if !d.packed.is_empty() {
            encoded_parts(d, valid, scale, &mut parts)?;
            continue;
        }
        if d.scales.is_empty() {
            parts.push(Part::values(&[], Some(valid)));
            continue;
        }
        let mut row = 0;
        for (i, (ints, k)) in d.runs().enumerate() {
            let end = match i + 1 == d.scales.len() {
                true => valid.len(),
                false => after_present(valid, row, ints.len()),
            };
            let values = match k == scale {
                true => ints,
                false => take(ints.len()),
            };
            parts.push(Part::values(values, Some(&valid[row..end])));
            row = end;
        }
    }
    Ok(parts)
}

/// Decodes the chunks of `d` that cannot be written still encoded at `scale` ([`encoded_at`]:
/// another scale, inexact extremes, too short for a page of their own), and brings decoded
/// chunks at another scale to `scale`. The other chunks of the series stay encoded.
fn at_scale(d: &mut Decimals, scale: u8) -> CodecResult<()> {
    for p in &mut d.packed {
        if matches!(p.ints, ChunkInts::Encoded(_)) && encoded_at(p, scale).is_some() {
            continue;
        }
        p.decode_in_place()?;
        if let ChunkInts::Decoded(ints) = &mut p.ints
            && p.k != scale
        {
            let mut out = Vec::with_capacity(ints.len());
            if !decimal::rescale(ints, p.k, scale, &mut out) {
                return Err("a value does not fit the scale".into());
            }
            *ints = out;
            p.k = scale;
        }
    }
    Ok(())
}

/// The parts of a series whose float field came chunk by chunk ([`Decimals::packed`], each
/// chunk at `scale` and either encoded as [`encoded_at`] allows or decoded, which [`at_scale`]
/// saw to): one per chunk, with the validity flags up to its last value (the
/// last chunk takes the rest).
fn encoded_parts<'a>(
    d: &'a Decimals,
    valid: &'a [bool],
    scale: u8,
    parts: &mut Vec<Part<'a>>,
) -> CodecResult<()> {
    let mut row = 0;
    for (i, p) in d.packed.iter().enumerate() {
        let end = match i + 1 == d.packed.len() {
            true => valid.len(),
            false => after_present(valid, row, p.count),
        };
        // Rows that all have a value (most chunks) need no flags: one run of levels.
        let flags = &valid[row..end];
        let flags = (flags.len() != p.count).then_some(flags);
        parts.push(match &p.ints {
            ChunkInts::Decoded(ints) if p.k == scale => Part::values(ints, flags),
            ChunkInts::Encoded(payload) => match encoded_at(p, scale) {
                Some(min_max) => Part {
                    values: &[],
                    valid: flags,
                    encoded: Some(ints::Encoded {
                        form: ints::Form::DeltaPacked(payload),
                        count: p.count,
                        min_max,
                    }),
                },
                None => return Err("an encoded chunk not at its column's scale".into()),
            },
            ChunkInts::Decoded(_) => return Err("a decoded chunk not at its column's scale".into()),
        });
        row = end;
    }
    Ok(())
}

/// The extremes of an encoded chunk as integers at `scale`, when its integers are at that scale,
/// its statistics give them exactly and it is long enough for a page of its own (`None`: the
/// chunk must be decoded to be written). The page index and the column's range check then
/// rest on the segment's statistics, which its writer computed over the very values.
fn encoded_at(p: &PackedInts, scale: u8) -> Option<(i64, i64)> {
    if p.k != scale || p.count < ints::OWN_PAGE_VALUES {
        return None;
    }
    let lo = decimal::scaled_at(p.min, scale)?;
    let hi = decimal::scaled_at(p.max, scale)?;
    (lo <= hi).then_some((lo, hi))
}

/// The row just after the `n`-th set flag of `valid` from `row` (`valid.len()` if there are
/// fewer).
fn after_present(valid: &[bool], row: usize, n: usize) -> usize {
    if n == 0 {
        return row;
    }
    let mut seen = 0;
    for (i, v) in valid[row..].iter().enumerate() {
        seen += usize::from(*v);
        if seen == n {
            return row + i + 1;
        }
    }
    valid.len()
}

/// Writes field `fi` of `group` through the crate's column writer.
fn crate_column(
    writer: &mut SerializedRowGroupWriter<'_, Vec<u8>>,
    group: &[Series],
    fi: usize,
) -> parquet::errors::Result<()> {
    let mut column = next_column(writer)?;
    let mut levels = Vec::new();
    for s in group {
        let col = &s.rows.columns[fi];
        levels.clear();
        levels.extend(col.valid.iter().map(|v| i16::from(*v)));
        write_field(column.untyped(), col, &levels)?;
    }
    column.close()
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
