//! Cold objects as Apache Parquet: one object per moved segment, rows ordered by series (device,
//! then tags) then time, row groups of whole series (at most 131,072 rows unless one series has
//! more), columns `time` (timestamp ns, UTC), `device`, one nullable string column per tag key,
//! one nullable column per field (float as DECIMAL(18, s) where exact, see [`super::decimal`], else
//! float64; int64, uint64, boolean, utf8). zstd compression;
//! delta encoding for timestamps and integers, dictionaries for floats (falling back to plain
//! pages past 2,048 distinct values) and for strings (`device` and the tags repeat on every row
//! of a series: [`super::runs`] writes them from their runs); column statistics on pages, so
//! external readers (DuckDB, pyarrow, Spark, Trino) prune by time. Key-value metadata
//! `strata.tags` and `strata.fields` (JSON) tell Strata which columns are tags and the field
//! types; the other readers need the column names, and must merge a float column's types across
//! objects (DECIMAL at different scales, DOUBLE; docs/lifecycle.md). [`super::encode`] writes
//! objects; this module reads them.
//!
//! Reads prune inside an object: [`index`] parses the footer once (Strata metadata, the page
//! index, each row group's `time` and `device` min/max statistics), and [`decode_groups`] decodes
//! only the row groups a read can need (for one device only the pages that may hold it) and only
//! the projected columns (`time`, `device`, tags and the requested fields).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    StringArray, TimestampNanosecondArray, UInt64Array,
};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::file::metadata::{KeyValue, PageIndexPolicy};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::reader::ChunkReader;
use parquet::file::statistics::Statistics;

use super::decimal;
use crate::rows::Rows;
use crate::{Column, ColumnData, FieldType, SeriesKey, StringColumn};

/// Rows per record batch read back.
const BATCH_ROWS: usize = 65_536;

/// Errors of encoding or decoding an object, as text (the caller adds the object's name).
pub(crate) type CodecResult<T> = std::result::Result<T, String>;

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

/// Decodes a whole object written by [`super::encode::Encoder`] (every row group, every field).
pub(crate) fn decode(bytes: bytes::Bytes) -> CodecResult<Decoded> {
    let idx = index(&bytes)?;
    let groups = (0..idx.groups.len()).collect();
    let series = decode_groups(bytes, &idx, groups, &idx.fields, None)?;
    Ok(Decoded {
        fields: idx.fields,
        series,
    })
}

/// What one row group holds, from its column-chunk statistics (`None`: not recorded).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GroupStats {
    /// Rows.
    pub rows: u64,
    /// Oldest and newest `time`.
    pub time: Option<(i64, i64)>,
    /// Smallest and largest `device` (bounds: a truncated statistic still bounds the values).
    pub device: Option<(String, String)>,
}

impl GroupStats {
    /// False when the group cannot hold a row of `device` (if given) in `[first, last]`.
    pub fn may_hold(&self, first: i64, last: i64, device: Option<&str>) -> bool {
        let time = self.time.is_none_or(|(lo, hi)| hi >= first && lo <= last);
        let dev = match (device, &self.device) {
            (Some(d), Some((lo, hi))) => lo.as_str() <= d && d <= hi.as_str(),
            _ => true,
        };
        time && dev
    }
}

/// An object's footer, parsed once: Strata's metadata and each row group's statistics.
#[derive(Debug, Clone)]
pub(crate) struct ObjectIndex {
    /// Tag columns.
    pub tags: Vec<String>,
    /// Field columns with their types.
    pub fields: Vec<(String, FieldType)>,
    /// Per row group, in file order.
    pub groups: Vec<GroupStats>,
    meta: ArrowReaderMetadata,
}

/// Parses the footer of an object written by [`super::encode::Encoder`].
pub(crate) fn index<R: ChunkReader>(file: &R) -> CodecResult<ObjectIndex> {
    // With the page index: a read of one device selects the pages whose `device` statistics
    // may hold it ([`device_pages`]) and skips the others undecoded.
    let meta = ArrowReaderMetadata::load(
        file,
        ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
    )
    .map_err(|e| e.to_string())?;
    let (tags, fields) = strata_meta(meta.metadata().file_metadata().key_value_metadata())?;
    let schema = meta.schema();
    let at = |name: &str| {
        schema
            .index_of(name)
            .map_err(|_| format!("column '{name}' is missing"))
    };
    let (ti, di) = (at("time")?, at("device")?);
    let groups = meta
        .metadata()
        .row_groups()
        .iter()
        .map(|rg| GroupStats {
            rows: rg.num_rows().max(0) as u64,
            time: match rg.column(ti).statistics() {
                Some(Statistics::Int64(s)) => s.min_opt().zip(s.max_opt()).map(|(a, b)| (*a, *b)),
                _ => None,
            },
            device: match rg.column(di).statistics() {
                Some(Statistics::ByteArray(s)) => {
                    s.min_opt().zip(s.max_opt()).and_then(|(a, b)| {
                        Some((a.as_utf8().ok()?.to_string(), b.as_utf8().ok()?.to_string()))
                    })
                }
                _ => None,
            },
        })
        .collect();
    Ok(ObjectIndex {
        tags,
        fields,
        groups,
        meta,
    })
}

/// Tag columns and fields from an object's key-value metadata.
type Layout = (Vec<String>, Vec<(String, FieldType)>);

/// The fields and the series keys an object holds.
pub(crate) type ObjectKeys = (Vec<(String, FieldType)>, Vec<SeriesKey>);

fn strata_meta(kv: Option<&Vec<KeyValue>>) -> CodecResult<Layout> {
    let kv = kv.cloned().unwrap_or_default();
    let value = |k: &str| {
        kv.iter()
            .find(|e| e.key == k)
            .and_then(|e| e.value.clone())
            .ok_or_else(|| format!("metadata '{k}' is missing (not written by Strata?)"))
    };
    let tags: Vec<String> =
        serde_json::from_str(&value("strata.tags")?).map_err(|e| e.to_string())?;
    let fields: Vec<(String, FieldType)> =
        serde_json::from_str(&value("strata.fields")?).map_err(|e| e.to_string())?;
    Ok((tags, fields))
}

/// The fields and the series keys (tags sorted by name) of an object in a store, read with
/// ranged requests: the footer, then only the `device` and tag column chunks.
pub(crate) async fn keys_of(
    store: Arc<dyn object_store::ObjectStore>,
    path: object_store::path::Path,
    size: u64,
) -> CodecResult<ObjectKeys> {
    use futures::TryStreamExt;
    // Deprecated in favour of a hand-written `AsyncFileReader`; it still does ranged GETs
    // through `object_store`, which is all this needs.
    #[allow(deprecated)]
    let reader =
        parquet::arrow::async_reader::ParquetObjectReader::new(store, path).with_file_size(size);
    let builder = parquet::arrow::ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| e.to_string())?;
    let (tags, fields) = strata_meta(builder.metadata().file_metadata().key_value_metadata())?;
    let schema = builder.schema().clone();
    let roots = std::iter::once("device")
        .chain(tags.iter().map(String::as_str))
        .map(|n| {
            schema
                .index_of(n)
                .map_err(|_| format!("column '{n}' is missing"))
        })
        .collect::<CodecResult<Vec<usize>>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut batches = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| e.to_string())?;
    let mut keys = std::collections::BTreeSet::new();
    while let Some(b) = batches.try_next().await.map_err(|e| e.to_string())? {
        let devices = column::<StringArray>(&b, "device")?;
        let tag_cols: Vec<&StringArray> = tags
            .iter()
            .map(|t| column::<StringArray>(&b, t))
            .collect::<CodecResult<_>>()?;
        let mut last: Option<SeriesKey> = None;
        for i in 0..b.num_rows() {
            let same = last.as_ref().is_some_and(|k| {
                k.device == devices.value(i)
                    && tags.iter().zip(&tag_cols).all(|(t, c)| {
                        let held = k.tags.iter().find(|(n, _)| n == t).map(|(_, v)| v.as_str());
                        held == c.is_valid(i).then(|| c.value(i))
                    })
            });
            if same {
                continue;
            }
            let key = SeriesKey {
                device: devices.value(i).to_string(),
                tags: tags
                    .iter()
                    .zip(&tag_cols)
                    .filter(|(_, c)| c.is_valid(i))
                    .map(|(t, c)| (t.clone(), c.value(i).to_string()))
                    .collect(),
            };
            keys.insert(canonical(&key));
            last = Some(key);
        }
    }
    Ok((fields, keys.into_iter().collect()))
}

/// Decodes row groups `groups` of an object: every series' rows with one column per `want`
/// field (by name and type; a field the object lacks is all-null), reading only the `time`,
/// `device`, tag and wanted columns. Series keys have their tags sorted by name. With `device`,
/// only that device's rows: the `device` column is decoded first and the others only where it
/// matches.
pub(crate) fn decode_groups<R: ChunkReader + 'static>(
    file: R,
    idx: &ObjectIndex,
    groups: Vec<usize>,
    want: &[(String, FieldType)],
    device: Option<&str>,
) -> CodecResult<HashMap<SeriesKey, Rows>> {
    let mut out = HashMap::new();
    if groups.is_empty() {
        return Ok(out);
    }
    let schema = idx.meta.schema().clone();
    let present: Vec<bool> = want
        .iter()
        .map(|w| idx.fields.iter().any(|f| f == w))
        .collect();
    let mut roots = Vec::new();
    for name in ["time", "device"]
        .into_iter()
        .chain(idx.tags.iter().map(String::as_str))
        .chain(
            want.iter()
                .zip(&present)
                .filter(|(_, p)| **p)
                .map(|(w, _)| w.0.as_str()),
        )
    {
        roots.push(
            schema
                .index_of(name)
                .map_err(|_| format!("column '{name}' is missing"))?,
        );
    }
    let device_col = roots[1];
    let mask = ProjectionMask::roots(idx.meta.parquet_schema(), roots);
    let groups_sel = groups.clone();
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, idx.meta.clone())
        .with_row_groups(groups)
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS);
    if let Some(d) = device {
        if let Some(selection) = device_pages(idx, &groups_sel, d) {
            builder = builder.with_row_selection(selection);
        }
        let wanted = StringArray::new_scalar(d);
        let only = ProjectionMask::roots(idx.meta.parquet_schema(), [device_col]);
        let predicate = parquet::arrow::arrow_reader::ArrowPredicateFn::new(only, move |b| {
            arrow::compute::kernels::cmp::eq(b.column(0), &wanted)
        });
        builder = builder.with_row_filter(parquet::arrow::arrow_reader::RowFilter::new(vec![
            Box::new(predicate),
        ]));
    }
    let reader = builder.build().map_err(|e| e.to_string())?;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        decode_batch(&batch, &idx.tags, want, &present, &mut out)?;
    }
    Ok(out)
}

/// The rows of row groups `groups` (in that order) on pages whose `device` statistics may
/// hold `device`, from the page index (`None`: the object has none). Rows are sorted by device,
/// so a device's rows sit on a few consecutive pages.
fn device_pages(idx: &ObjectIndex, groups: &[usize], device: &str) -> Option<RowSelection> {
    let md = idx.meta.metadata();
    let (columns, offsets) = (md.column_index()?, md.offset_index()?);
    let leaf = md
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == "device")?;
    let d = device.as_bytes();
    let mut selectors = Vec::new();
    for &g in groups {
        let rows = usize::try_from(md.row_group(g).num_rows()).ok()?;
        let ColumnIndexMetaData::BYTE_ARRAY(stats) = columns.get(g)?.get(leaf)? else {
            return None;
        };
        let pages = offsets.get(g)?.get(leaf)?.page_locations();
        for (p, page) in pages.iter().enumerate() {
            let start = usize::try_from(page.first_row_index).ok()?;
            let end = match pages.get(p + 1) {
                Some(next) => usize::try_from(next.first_row_index).ok()?,
                None => rows,
            };
            let may = match (stats.min_value(p), stats.max_value(p)) {
                (Some(lo), Some(hi)) => lo <= d && d <= hi,
                _ => true,
            };
            selectors.push(match may {
                true => RowSelector::select(end - start),
                false => RowSelector::skip(end - start),
            });
        }
    }
    Some(selectors.into())
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
    present: &[bool],
    out: &mut HashMap<SeriesKey, Rows>,
) -> CodecResult<()> {
    let times = column::<TimestampNanosecondArray>(b, "time")?;
    let devices = column::<StringArray>(b, "device")?;
    let tag_cols: Vec<&StringArray> = tags
        .iter()
        .map(|t| column::<StringArray>(b, t))
        .collect::<CodecResult<_>>()?;
    let owned: Vec<Option<ArrayRef>> = fields
        .iter()
        .zip(present)
        .map(|((n, _), p)| match p {
            false => Ok(None),
            true => b
                .column_by_name(n)
                .map(|c| as_stored(c).map(Some))
                .ok_or_else(|| format!("column '{n}' is missing"))?,
        })
        .collect::<CodecResult<_>>()?;
    let field_cols: Vec<Option<&dyn Array>> = owned.iter().map(|c| c.as_deref()).collect();
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
        rows.times.extend_from_slice(&times.values()[start..end]);
        for (col, (arr, (_, t))) in rows.columns.iter_mut().zip(field_cols.iter().zip(fields)) {
            match arr {
                Some(arr) => append_arrow(col, *arr, *t, start..end)?,
                None => (start..end).for_each(|_| col.push_null()),
            }
        }
        start = end;
    }
    Ok(())
}

/// A column as Strata stores its type: a DECIMAL float column back to `Float64`, each value
/// divided by the exact power of ten ([`decimal::from_scaled`]: bit-identical to the value
/// written); any other column as it is.
fn as_stored(c: &ArrayRef) -> CodecResult<ArrayRef> {
    let Some(d) = c.as_any().downcast_ref::<Decimal128Array>() else {
        return Ok(c.clone());
    };
    let s = u8::try_from(d.scale())
        .ok()
        .filter(|s| *s <= decimal::MAX_SCALE)
        .ok_or_else(|| {
            format!(
                "a DECIMAL column of scale {} (Strata writes 0 to 9)",
                d.scale()
            )
        })?;
    let values: Vec<f64> = d
        .values()
        .iter()
        .map(|v| decimal::from_scaled(*v as i64, s))
        .collect();
    Ok(Arc::new(Float64Array::new(
        values.into(),
        d.nulls().cloned(),
    )))
}

fn append_arrow(
    col: &mut Column,
    arr: &dyn Array,
    t: FieldType,
    range: std::ops::Range<usize>,
) -> CodecResult<()> {
    let bad = || format!("column '{}' does not hold {t:?} values", col.name);
    if arr.null_count() == 0 {
        // Fast path: whole slices, no per-value checks.
        let n = range.len();
        let done = match (&mut col.data, t) {
            (ColumnData::Float(v), FieldType::Float) => arr
                .as_any()
                .downcast_ref::<Float64Array>()
                .map(|a| v.extend_from_slice(&a.values()[range.clone()])),
            (ColumnData::Integer(v), FieldType::Integer) => arr
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| v.extend_from_slice(&a.values()[range.clone()])),
            (ColumnData::Unsigned(v), FieldType::Unsigned) => arr
                .as_any()
                .downcast_ref::<UInt64Array>()
                .map(|a| v.extend_from_slice(&a.values()[range.clone()])),
            _ => None,
        };
        if done.is_some() {
            col.valid.extend(std::iter::repeat_n(true, n));
            return Ok(());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;
    use crate::cold::encode::Encoder;

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
        let (enc_bytes, n) = enc.finish().unwrap();
        assert_eq!(n, 4);
        let d = decode(enc_bytes.clone().into()).unwrap();
        assert_eq!(d.series.len(), 2);
        assert_eq!(d.series[&canonical(&k1)], r1);
        assert_eq!(d.series[&canonical(&k2)], r2);
        // A projection onto one field plus one the object lacks, one row group.
        let bytes = bytes::Bytes::from(enc_bytes);
        let idx = index(&bytes).unwrap();
        assert_eq!(idx.groups.len(), 1);
        assert_eq!(idx.groups[0].time, Some((1, 3)));
        assert_eq!(
            idx.groups[0].device,
            Some(("t1".to_string(), "t2".to_string()))
        );
        assert!(idx.groups[0].may_hold(3, 9, Some("t1")));
        assert!(!idx.groups[0].may_hold(3, 9, Some("t3")));
        assert!(!idx.groups[0].may_hold(4, 9, None));
        let want = [
            ("v".to_string(), FieldType::Float),
            ("w".to_string(), FieldType::Integer),
        ];
        let got = decode_groups(bytes.clone(), &idx, vec![0], &want, None).unwrap();
        let only = decode_groups(bytes.clone(), &idx, vec![0], &want, Some("t2")).unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[&canonical(&k2)].times, vec![2]);
        let p = got[&canonical(&k1)].slice_time(2, 3);
        assert_eq!(p.times, vec![2, 3]);
        assert_eq!(p.columns.len(), 2);
        assert_eq!(p.columns[0].valid, vec![false, true]);
        assert_eq!(p.columns[1].valid, vec![false, false]);
        assert!(
            decode_groups(bytes, &idx, vec![], &want, None)
                .unwrap()
                .is_empty()
        );
    }

    /// One float column per case, each a series of values; returns the object's bytes.
    fn floats_object(cases: &[(&str, Vec<Option<f64>>)]) -> (Vec<u8>, Rows, SeriesKey) {
        let fields: Vec<(String, FieldType)> = cases
            .iter()
            .map(|(n, _)| (n.to_string(), FieldType::Float))
            .collect();
        let n = cases[0].1.len();
        let columns = cases
            .iter()
            .map(|(name, v)| {
                let mut c = Column::new(*name, FieldType::Float);
                for x in v {
                    match x {
                        Some(x) => {
                            c.data.push_value(&Value::Float(*x));
                            c.valid.push(true);
                        }
                        None => c.push_null(),
                    }
                }
                c
            })
            .collect();
        let r = Rows {
            times: (0..n as i64).collect(),
            columns,
        };
        let key = SeriesKey {
            device: "d".into(),
            tags: vec![],
        };
        let mut enc = Encoder::new(&fields, &[], &[]).unwrap();
        enc.push(key.clone(), r.clone()).unwrap();
        (enc.finish().unwrap().0, r, key)
    }

    #[test]
    fn float_columns_are_decimal_at_their_scale_or_double_and_read_back_exactly() {
        let (bytes, r, key) = floats_object(&[
            ("d0", vec![Some(1.0), Some(-20.0), None, Some(300.0)]),
            ("d1", vec![Some(1.5), Some(-0.1), Some(7.0), None]),
            ("d2", vec![Some(0.25), Some(12.34), None, Some(-99.99)]),
            ("d3", vec![Some(-0.001), Some(1.5), Some(98.765), Some(0.0)]),
            ("big", vec![Some(1e15), Some(-4e15), Some(123.0), None]),
            ("full", vec![Some(1.0 / 3.0), Some(2.5), None, Some(0.1)]),
            (
                "nan",
                vec![Some(f64::NAN), Some(1.5), Some(f64::INFINITY), None],
            ),
            ("negzero", vec![Some(-0.0), Some(1.0), Some(2.0), Some(3.0)]),
            ("nulls", vec![None, None, None, None]),
        ]);
        let bytes = bytes::Bytes::from(bytes);
        let idx = index(&bytes).unwrap();
        let schema = idx.meta.metadata().file_metadata().schema_descr();
        let kind = |name: &str| {
            let c = schema.columns().iter().find(|c| c.name() == name).unwrap();
            (c.physical_type(), c.logical_type_ref().cloned())
        };
        use parquet::basic::{LogicalType, Type as Physical};
        for (name, scale) in [
            ("d0", 0),
            ("d1", 1),
            ("d2", 2),
            ("d3", 3),
            ("big", 0),
            ("nulls", 0),
        ] {
            assert_eq!(
                kind(name),
                (Physical::INT64, Some(LogicalType::decimal(scale, 18))),
                "{name}"
            );
        }
        for name in ["full", "nan", "negzero"] {
            assert_eq!(kind(name), (Physical::DOUBLE, None), "{name}");
        }
        let d = decode(bytes).unwrap();
        let got = &d.series[&canonical(&key)];
        assert_eq!(got.times, r.times);
        for (a, b) in got.columns.iter().zip(&r.columns) {
            assert_eq!(a.valid, b.valid, "{}", b.name);
            let (ColumnData::Float(x), ColumnData::Float(y)) = (&a.data, &b.data) else {
                panic!("{} is not float", b.name);
            };
            let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let valid = |v: &[f64]| {
                v.iter()
                    .zip(&b.valid)
                    .filter(|(_, ok)| **ok)
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&valid(x)), bits(&valid(y)), "{}", b.name);
        }
    }

    /// The first column's floats, row by row, as bits (`None` for a row without a value).
    fn float_bits(r: &Rows) -> Vec<Option<u64>> {
        match &r.columns[0].data {
            ColumnData::Float(v) => v
                .iter()
                .zip(&r.columns[0].valid)
                .map(|(f, ok)| ok.then(|| f.to_bits()))
                .collect(),
            _ => panic!("not a float column"),
        }
    }

    /// Series given as integers at decimal scales (as a move reads them from segments) beside
    /// series given as floats: the column takes the scale all of them need, or DOUBLE when one
    /// has a float no scale fits; either way every value reads back with its bits.
    #[test]
    fn decimal_series_mix_with_float_series_and_read_back_exactly() {
        use crate::segment::Decimals;
        let fields = vec![
            ("v".to_string(), FieldType::Float),
            ("s".to_string(), FieldType::String),
        ];
        let key = |d: &str| SeriesKey {
            device: d.into(),
            tags: vec![],
        };
        // Series "a" as decimals: 1.5, null, -2.25, 30 (scales 1, then 2, then 0).
        let a_floats = rows(
            &[1, 2, 3, 4],
            &[Some(1.5), None, Some(-2.25), Some(30.0)],
            &[None; 4],
        );
        let mut a_held = a_floats.clone();
        a_held.columns[0].data = ColumnData::Float(Vec::new());
        let a_dec = Decimals {
            values: vec![15, -225, 30],
            scales: vec![(1, 1), (2, 2), (3, 0)],
            packed: Vec::new(),
        };
        for (b_value, physical) in [(0.125, "INT64"), (1.0 / 3.0, "DOUBLE")] {
            let b = rows(&[5, 6], &[Some(b_value), Some(7.0)], &[Some("x"), None]);
            let mut enc = Encoder::new(&fields, &[], &[]).unwrap();
            enc.push_decimal(key("a"), a_held.clone(), vec![Some(a_dec.clone()), None])
                .unwrap();
            enc.push(key("b"), b.clone()).unwrap();
            let bytes = bytes::Bytes::from(enc.finish().unwrap().0);
            let idx = index(&bytes).unwrap();
            let schema = idx.meta.metadata().file_metadata().schema_descr();
            let v = schema.columns().iter().find(|c| c.name() == "v").unwrap();
            assert_eq!(v.physical_type().to_string(), physical);
            if physical == "INT64" {
                assert_eq!(v.type_scale(), 3, "0.125 needs 3 decimals, -2.25 two");
            }
            let d = decode(bytes).unwrap();
            for (k, want) in [("a", &a_floats), ("b", &b)] {
                let got = &d.series[&canonical(&key(k))];
                assert_eq!(got.times, want.times, "{k}");
                assert_eq!(float_bits(got), float_bits(want), "{k} with {physical}");
                assert_eq!(got.columns[1], want.columns[1], "{k}");
            }
        }
    }

    /// A run already at the column's scale is written from where it is; a value in it that no
    /// float holds exactly (2^53 or more) still fails the object instead of being stored.
    #[test]
    fn a_value_beyond_the_decimal_range_fails_the_object() {
        use crate::cold::encode::Writer;
        use crate::segment::Decimals;
        let fields = vec![("v".to_string(), FieldType::Float)];
        for (big, ok) in [
            ((1i64 << 53) - 1, true),
            (1 << 53, false),
            (-(1 << 53), false),
        ] {
            let mut w = Writer::new(&fields, &[], vec![], (&[Some(2)], 0)).unwrap();
            let mut held = Rows::empty(&fields);
            held.times = vec![1, 2, 3];
            held.columns[0].valid = vec![true; 3];
            held.columns[0].data = ColumnData::Float(Vec::new());
            let dec = Decimals {
                values: vec![5, big, -7],
                scales: vec![(3, 2)],
                packed: Vec::new(),
            };
            let key = SeriesKey {
                device: "d".into(),
                tags: vec![],
            };
            let done = w.push(key, held, vec![Some(dec)]).and_then(|()| w.finish());
            assert_eq!(done.is_ok(), ok, "{big}: {:?}", done.err());
        }
    }

    proptest::proptest! {
        /// Runs of decimals at every scale up to the column's (those at its scale written from
        /// where they are, the others rescaled), nulls before, between and after them, series
        /// with no value at all, and series given as floats between them: every value reads
        /// back with its bits.
        #[test]
        fn runs_at_and_below_the_column_scale_read_back(
            series in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::option::of((-100_000i64..100_000, 0u8..4)),
                    0..40,
                ),
                1..6,
            ),
        ) {
            use crate::segment::Decimals;
            let fields = vec![
                ("v".to_string(), FieldType::Float),
                ("s".to_string(), FieldType::String),
            ];
            let key = |i: usize| SeriesKey {
                device: format!("d{i}"),
                tags: vec![],
            };
            let mut enc = Encoder::new(&fields, &[], &[]).unwrap();
            let mut want = Vec::new();
            for (i, cells) in series.iter().enumerate() {
                // Integers at their smallest scale (no trailing zero), as the hot codec gives.
                let cells: Vec<Option<(i64, u8)>> = cells
                    .iter()
                    .map(|c| c.map(|(m, k)| match k {
                        0 => (m, 0),
                        _ => (m * 10 + 1 + m.rem_euclid(9), k),
                    }))
                    .collect();
                let floats: Vec<Option<f64>> = cells
                    .iter()
                    .map(|c| c.map(|(m, k)| super::super::decimal::from_scaled(m, k)))
                    .collect();
                let times: Vec<i64> = (1..=cells.len() as i64).collect();
                let full = rows(&times, &floats, &vec![None; cells.len()]);
                let mut dec = Decimals::default();
                for (m, k) in cells.iter().flatten() {
                    dec.values.push(*m);
                    match dec.scales.last_mut() {
                        Some((end, last)) if last == k => *end = dec.values.len(),
                        _ => dec.scales.push((dec.values.len(), *k)),
                    }
                }
                // Every third series as floats, between series of decimal runs.
                if i % 3 == 2 {
                    enc.push(key(i), full.clone()).unwrap();
                } else {
                    let mut held = full.clone();
                    held.columns[0].data = ColumnData::Float(Vec::new());
                    enc.push_decimal(key(i), held, vec![Some(dec), None]).unwrap();
                }
                want.push(full);
            }
            let d = decode(bytes::Bytes::from(enc.finish().unwrap().0)).unwrap();
            for (i, w) in want.iter().enumerate() {
                match d.series.get(&canonical(&key(i))) {
                    Some(got) => {
                        proptest::prop_assert_eq!(float_bits(got), float_bits(w), "series {}", i)
                    }
                    None => proptest::prop_assert!(w.times.is_empty(), "series {} lost", i),
                }
            }
        }
    }

    /// The rows of series `key` read from every row group of an object as a one-device read.
    fn one_device(
        bytes: &bytes::Bytes,
        idx: &ObjectIndex,
        fields: &[(String, FieldType)],
        key: &SeriesKey,
    ) -> Rows {
        let groups = (0..idx.groups.len()).collect();
        let mut got = decode_groups(bytes.clone(), idx, groups, fields, Some(&key.device)).unwrap();
        assert_eq!(got.len(), 1, "only the series of {}", key.device);
        got.remove(&canonical(key)).unwrap()
    }

    #[test]
    fn a_one_device_read_skips_pages_and_returns_that_device_whole() {
        let fields = vec![
            ("v".to_string(), FieldType::Float),
            ("s".to_string(), FieldType::String),
        ];
        let mut enc = Encoder::new(&fields, &[], &[]).unwrap();
        let key = |d: usize| SeriesKey {
            device: format!("d{d:03}"),
            tags: vec![],
        };
        let mut all = Vec::new();
        for d in 0..60 {
            let times: Vec<i64> = (0..1_000).collect();
            let v: Vec<Option<f64>> = times
                .iter()
                .map(|t| Some((d * 7 + t) as f64 / 10.0))
                .collect();
            let s: Vec<Option<&str>> = times.iter().map(|_| None).collect();
            let r = rows(&times, &v, &s);
            enc.push(key(d as usize), r.clone()).unwrap();
            all.push(r);
        }
        let bytes = bytes::Bytes::from(enc.finish().unwrap().0);
        let idx = index(&bytes).unwrap();
        let groups: Vec<usize> = (0..idx.groups.len()).collect();
        let sel = device_pages(&idx, &groups, "d031").unwrap();
        let selected = sel.row_count();
        assert!(
            selected > 0 && selected < 60_000 / 2,
            "{selected} rows selected of 60,000"
        );
        for d in [0, 31, 59] {
            let k = key(d);
            assert_eq!(
                one_device(&bytes, &idx, &fields, &k),
                all[d],
                "{}",
                k.device
            );
        }
    }

    /// Tag and device columns are written from their runs: across row groups and pages (a
    /// series longer than a page, tags missing on some series and on all of them), every series
    /// reads back whole, chunk statistics hold each group's devices, and the page index prunes
    /// a one-device read.
    #[test]
    fn tag_runs_across_groups_and_pages_read_back_and_prune_by_device() {
        use crate::cold::encode::ROW_GROUP_ROWS;
        use parquet::basic::Encoding as E;
        let fields = vec![
            ("v".to_string(), FieldType::Float),
            ("s".to_string(), FieldType::String),
        ];
        let tags = vec!["fleet".to_string(), "model".to_string(), "none".to_string()];
        let mut enc = Encoder::new(&fields, &tags, &[]).unwrap();
        let mut all = Vec::new();
        for d in 0..300usize {
            let mut key = SeriesKey {
                device: format!("d{d:03}"),
                tags: vec![("fleet".into(), ["north", "south"][d / 100 % 2].into())],
            };
            if d % 3 != 0 {
                key.tags.push(("model".into(), format!("m{}", d % 7)));
            }
            let n = if d == 150 { 30_000 } else { 1_000 };
            let times: Vec<i64> = (0..n as i64).collect();
            let v: Vec<Option<f64>> = times
                .iter()
                .map(|t| (t % 5 != 0).then_some((d as i64 * 3 + t) as f64 / 4.0))
                .collect();
            let s: Vec<Option<&str>> = times.iter().map(|t| (t % 9 == 0).then_some("x")).collect();
            let r = rows(&times, &v, &s);
            enc.push(key.clone(), r.clone()).unwrap();
            all.push((key, r));
        }
        let (object, n) = enc.finish().unwrap();
        assert_eq!(n as usize, 299 * 1_000 + 30_000);
        let decoded = decode(object.clone().into()).unwrap();
        assert_eq!(decoded.series.len(), all.len());
        for (k, r) in &all {
            assert_eq!(&decoded.series[&canonical(k)], r, "{}", k.device);
        }
        let bytes = bytes::Bytes::from(object);
        let idx = index(&bytes).unwrap();
        assert!(idx.groups.len() >= 3, "{} row groups", idx.groups.len());
        let md = idx.meta.metadata();
        let mut first = 0;
        for g in md.row_groups() {
            assert!(g.num_rows() as usize <= ROW_GROUP_ROWS || g.num_rows() == 30_000);
            let device = g.column(1);
            assert!(device.encodings().any(|e| e == E::RLE_DICTIONARY));
            let stats = device.statistics().unwrap();
            let last = all
                .iter()
                .scan(0usize, |rows, (k, r)| {
                    *rows += r.len();
                    Some((*rows, k))
                })
                .find(|(rows, _)| *rows >= first + g.num_rows() as usize)
                .unwrap()
                .1;
            assert_eq!(stats.max_bytes_opt(), Some(last.device.as_bytes()));
            assert_eq!(
                g.column(4).statistics().unwrap().null_count_opt(),
                Some(g.num_rows() as u64)
            );
            first += g.num_rows() as usize;
        }
        let groups: Vec<usize> = (0..idx.groups.len()).collect();
        for d in [0usize, 150, 151, 299] {
            let k = &all[d].0;
            let selected = device_pages(&idx, &groups, &k.device).unwrap().row_count();
            assert!(
                selected < 329_000 / 8,
                "{selected} rows selected for {}",
                k.device
            );
            assert_eq!(
                one_device(&bytes, &idx, &fields, k),
                all[d].1,
                "{}",
                k.device
            );
        }
    }

    #[test]
    fn a_tag_named_like_a_field_is_refused() {
        let fields = vec![("fleet".to_string(), FieldType::Float)];
        let e = Encoder::new(&fields, &["fleet".into()], &[]).err().unwrap();
        assert!(e.contains("'fleet' is used twice"), "{e}");
    }
}
