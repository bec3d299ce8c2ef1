//! Writes a segment file: chunks as series arrive, then the footer index and trailer; the file is
//! written under a temporary name, fsynced and renamed into place by [`SegmentWriter::finish`].

use std::borrow::Cow;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::{
    BLOCK_ROWS, Block, ChunkRef, ChunkStats, END_MAGIC, FieldChunk, HEADER_LEN, Index, MAGIC,
    VERSION, float_lanes,
};
use crate::bytes::PutBytes;
use crate::codec::{self, Effort};
use crate::error::{IoContext, Result};
use crate::rows::Rows;
use crate::{Column, ColumnData, FieldType, SeriesId, StringColumn};

/// Summary of a finished segment, recorded in the manifest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WrittenSegment {
    pub bytes: u64,
    pub rows: u64,
    pub min_time: i64,
    pub max_time: i64,
}

/// Streams series into a new segment file.
pub(crate) struct SegmentWriter {
    out: BufWriter<File>,
    tmp_path: PathBuf,
    path: PathBuf,
    offset: u64,
    database: String,
    stream: String,
    partition_start: i64,
    partition_ns: i64,
    fields: Vec<(String, FieldType)>,
    index: Index,
    scratch: Vec<u8>,
    rows: u64,
    min_time: i64,
    max_time: i64,
    effort: Effort,
}

impl SegmentWriter {
    /// Starts `path` (written as `path.tmp` until finished) for one stream and partition.
    pub fn create(
        path: &Path,
        database: &str,
        stream: &str,
        partition_start: i64,
        partition_ns: i64,
        fields: &[(String, FieldType)],
    ) -> Result<SegmentWriter> {
        let tmp_path = path.with_extension("tmp");
        let file = crate::fsutil::create_file(&tmp_path).at(&tmp_path)?;
        let mut w = SegmentWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            tmp_path,
            path: path.to_path_buf(),
            offset: 0,
            database: database.to_string(),
            stream: stream.to_string(),
            partition_start,
            partition_ns,
            fields: fields.to_vec(),
            index: Index::default(),
            scratch: Vec::new(),
            rows: 0,
            min_time: i64::MAX,
            max_time: i64::MIN,
            effort: Effort::Smallest,
        };
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.put_u16(VERSION);
        header.put_u16(0);
        header.put_u32(0);
        w.emit(&header)?;
        Ok(w)
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<ChunkRef> {
        crate::fsutil::write_all(&mut self.out, &self.tmp_path, bytes).at(&self.tmp_path)?;
        let r = ChunkRef {
            offset: self.offset,
            len: bytes.len() as u32,
            crc: crc32c::crc32c(bytes),
        };
        self.offset += bytes.len() as u64;
        Ok(r)
    }

    /// Appends the rows of one series; `rows` must be normalized, its columns in the writer's field
    /// order, and series must arrive in increasing id order.
    pub fn write_series(&mut self, series_id: SeriesId, rows: &Rows) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.index.begin_series(series_id);
        self.write_blocks(rows)
    }

    /// Appends rows to the series `series_id`, continuing it when it is the last series written
    /// (so a merge can stream a series a block at a time). `rows` must be normalized, start after
    /// the series' previous rows, and series must arrive in increasing id order.
    pub fn append_series_rows(&mut self, series_id: SeriesId, rows: &Rows) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if self.index.last_series() != Some(series_id) {
            self.index.begin_series(series_id);
        }
        self.write_blocks(rows)
    }

    /// Writes `rows` (not empty) as blocks of the last series begun.
    fn write_blocks(&mut self, rows: &Rows) -> Result<()> {
        for start in (0..rows.len()).step_by(BLOCK_ROWS) {
            let end = (start + BLOCK_ROWS).min(rows.len());
            self.write_block(rows, start..end)?;
        }
        self.rows += rows.len() as u64;
        self.min_time = self.min_time.min(rows.times[0]);
        self.max_time = self.max_time.max(rows.times[rows.len() - 1]);
        Ok(())
    }

    fn write_block(&mut self, rows: &Rows, range: std::ops::Range<usize>) -> Result<()> {
        let times = &rows.times[range.clone()];
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.push(0);
        let ts_codec = codec::encode_timestamps_with(times, &mut buf, self.effort);
        buf[0] = ts_codec as u8;
        let time = self.emit(&buf)?;
        for (fid, col) in rows.columns.iter().enumerate() {
            let valid = &col.valid[range.clone()];
            let count = valid.iter().filter(|v| **v).count();
            if count == 0 {
                continue;
            }
            buf.clear();
            let stats = encode_field_chunk(col, range.clone(), count, self.effort, &mut buf);
            let chunk = self.emit(&buf)?;
            self.index.push_chunk(FieldChunk {
                field: fid as u16,
                chunk,
                stats,
            });
        }
        self.scratch = buf;
        let span = (times[0], times[times.len() - 1]);
        self.index.push_block(times.len() as u32, span, time);
        Ok(())
    }

    /// Encodes the blocks written from now on with `effort` ([`Effort::Smallest`] unless set).
    pub fn with_effort(mut self, effort: Effort) -> SegmentWriter {
        self.effort = effort;
        self
    }

    /// Writes footer and trailer, fsyncs and renames into place. The caller fsyncs the directory.
    pub fn finish(mut self) -> Result<WrittenSegment> {
        let footer = self.encode_footer();
        let footer_offset = self.offset;
        let footer_ref = self.emit(&footer)?;
        let mut trailer = Vec::with_capacity(super::TRAILER_LEN);
        trailer.put_u64(footer_offset);
        trailer.put_u32(footer_ref.len);
        trailer.put_u32(footer_ref.crc);
        trailer.extend_from_slice(END_MAGIC);
        self.emit(&trailer)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .at(&self.tmp_path)?;
        crate::fsutil::sync_file(&file, &self.tmp_path, false).at(&self.tmp_path)?;
        drop(file);
        crate::fsutil::rename(&self.tmp_path, &self.path).at(&self.path)?;
        Ok(WrittenSegment {
            bytes: self.offset,
            rows: self.rows,
            min_time: self.min_time,
            max_time: self.max_time,
        })
    }

    fn encode_footer(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(self.footer_len());
        f.put_str(&self.database);
        f.put_str(&self.stream);
        f.put_i64(self.partition_start);
        f.put_i64(self.partition_ns);
        f.put_u32(self.fields.len() as u32);
        for (name, ty) in &self.fields {
            f.put_str(name);
            f.put_u8(ty.tag());
        }
        f.put_u32(self.index.len() as u32);
        for (series_id, blocks) in self.index.series() {
            f.put_u32(series_id);
            f.put_u32(blocks.len() as u32);
            for b in blocks {
                encode_block(&mut f, b, self.index.fields(b));
            }
        }
        debug_assert_eq!(f.len(), self.footer_len());
        f
    }
}

impl SegmentWriter {
    /// Bytes of the footer [`SegmentWriter::encode_footer`] writes (so it is allocated once).
    fn footer_len(&self) -> usize {
        let names: usize = self.fields.iter().map(|(n, _)| 4 + n.len() + 1).sum();
        let (series, blocks, chunks) = self.index.counts();
        4 + self.database.len()
            + 4
            + self.stream.len()
            + 8
            + 8
            + 4
            + names
            + 4
            + series * 8
            + blocks * BLOCK_ENTRY_LEN
            + chunks * CHUNK_ENTRY_LEN
    }
}

/// Footer bytes of a block entry before its field chunks, and of one field chunk entry.
const BLOCK_ENTRY_LEN: usize = 4 + 8 + 8 + 16 + 2;
const CHUNK_ENTRY_LEN: usize = 2 + 16 + 4 + 8 * 5;

fn put_chunk_ref(f: &mut Vec<u8>, c: &ChunkRef) {
    f.put_u64(c.offset);
    f.put_u32(c.len);
    f.put_u32(c.crc);
}

fn encode_block(f: &mut Vec<u8>, b: &Block, fields: &[FieldChunk]) {
    f.put_u32(b.rows);
    f.put_i64(b.min_time);
    f.put_i64(b.max_time);
    put_chunk_ref(f, &b.time);
    f.put_u16(fields.len() as u16);
    for fc in fields {
        f.put_u16(fc.field);
        put_chunk_ref(f, &fc.chunk);
        f.put_u32(fc.stats.count);
        f.put_u64(fc.stats.min);
        f.put_u64(fc.stats.max);
        f.put_u64(fc.stats.sum.to_bits());
        f.put_u64(fc.stats.first);
        f.put_u64(fc.stats.last);
    }
}

/// presence byte, optional bitmap, codec byte, payload. Returns the statistics of the present
/// values (gathered once for both; borrowed when every row has one).
fn encode_field_chunk(
    col: &Column,
    range: std::ops::Range<usize>,
    count: usize,
    effort: Effort,
    buf: &mut Vec<u8>,
) -> ChunkStats {
    let valid = &col.valid[range.clone()];
    let dense = count == valid.len();
    if dense {
        buf.push(0);
    } else {
        buf.push(1);
        let mut bitmap = vec![0u8; valid.len().div_ceil(8)];
        for (i, _) in valid.iter().enumerate().filter(|(_, v)| **v) {
            bitmap[i / 8] |= 1 << (i % 8);
        }
        buf.extend_from_slice(&bitmap);
    }
    let codec_pos = buf.len();
    buf.push(0);
    let (codec, stats) = match &col.data {
        ColumnData::Float(v) => {
            let vals = present(v, valid, range, dense);
            let codec = codec::encode_floats_with(&vals, buf, effort);
            (codec, float_stats(&vals))
        }
        ColumnData::Integer(v) => {
            let vals = present(v, valid, range, dense);
            let codec = codec::encode_integers_with(&vals, buf, effort);
            (codec, int_stats(&vals, |x| x as u64, |x| x as f64))
        }
        ColumnData::Unsigned(v) => {
            let vals = present(v, valid, range, dense);
            let codec = codec::encode_unsigned_with(&vals, buf, effort);
            (codec, int_stats(&vals, |x| x, |x| x as f64))
        }
        ColumnData::Boolean(v) => {
            let vals = present(v, valid, range, dense);
            (codec::encode_booleans(&vals, buf), bool_stats(&vals))
        }
        ColumnData::String(v) => {
            let mut s = StringColumn::default();
            let rows = range.zip(valid).filter(|(_, ok)| **ok);
            rows.for_each(|(i, _)| s.push(v.get(i)));
            let stats = ChunkStats {
                count: count as u32,
                ..ChunkStats::default()
            };
            (codec::encode_strings(&s, buf), stats)
        }
    };
    buf[codec_pos] = codec as u8;
    stats
}

/// The values of `v` in `range` whose row is `valid` (indexed from `range.start`); borrowed
/// when `dense` (every row has one).
fn present<'a, T: Copy>(
    v: &'a [T],
    valid: &[bool],
    range: std::ops::Range<usize>,
    dense: bool,
) -> Cow<'a, [T]> {
    if dense {
        return Cow::Borrowed(&v[range]);
    }
    let rows = range.zip(valid).filter(|(_, ok)| **ok);
    Cow::Owned(rows.map(|(i, _)| v[i]).collect())
}

/// Statistics of present float values (at least one): min and max as `f64::min`/`f64::max`
/// folds give them (a NaN is skipped), the sum in four lanes (as the query's row fold adds), in
/// one pass ([`float_lanes`]). Blocks with a NaN or a zero extreme (where plain comparisons and
/// the folds may differ) take the folds.
fn float_stats(values: &[f64]) -> ChunkStats {
    let (sum, mut min, mut max) = float_lanes(values);
    if sum.is_nan() || min == 0.0 || max == 0.0 {
        min = values.iter().copied().fold(f64::INFINITY, f64::min);
        max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    }
    ChunkStats::of_floats(values, min, max, sum)
}

/// Statistics of present integer values (at least one); `bits` stores a value, `float` adds it.
fn int_stats<T: Copy + Ord>(
    values: &[T],
    bits: impl Fn(T) -> u64,
    float: impl Fn(T) -> f64,
) -> ChunkStats {
    let (head, tail) = (values[0], values[values.len() - 1]);
    let (mut min, mut max) = (head, head);
    let mut sums = [0.0f64; 4];
    let quads = values.chunks_exact(4);
    let rest = quads.remainder();
    for q in quads {
        for l in 0..4 {
            sums[l] += float(q[l]);
            (min, max) = (min.min(q[l]), max.max(q[l]));
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        sums[l] += float(v);
        (min, max) = (min.min(v), max.max(v));
    }
    ChunkStats {
        count: values.len() as u32,
        min: bits(min),
        max: bits(max),
        sum: (sums[0] + sums[1]) + (sums[2] + sums[3]),
        first: bits(head),
        last: bits(tail),
    }
}

/// Statistics of present booleans (at least one): min/max as 0/1, the sum counts the trues.
fn bool_stats(values: &[bool]) -> ChunkStats {
    let trues = values.iter().filter(|&&b| b).count();
    ChunkStats {
        count: values.len() as u32,
        min: u64::from(trues == values.len()),
        max: u64::from(trues > 0),
        sum: trues as f64,
        first: u64::from(values[0]),
        last: u64::from(values[values.len() - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The statistics as the folds give them, one value at a time.
    fn folded(values: &[f64]) -> (u64, u64, f64) {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min.to_bits(), max.to_bits(), values.iter().sum())
    }

    fn close(a: f64, b: f64, scale: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-12 * scale.max(1.0)
    }

    fn float_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => -1e6f64..1e6,
            1 => Just(0.0),
            1 => Just(-0.0),
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
        ]
    }

    proptest! {
        /// One pass in lanes gives the folds' min and max bit for bit (NaN skipped, signed
        /// zeros as the folds order them) and their sum up to rounding.
        #[test]
        fn float_stats_equal_the_folds(values in prop::collection::vec(float_value(), 1..40)) {
            let stats = float_stats(&values);
            let (min, max, sum) = folded(&values);
            prop_assert_eq!((stats.min, stats.max), (min, max));
            let scale: f64 = values.iter().filter(|v| v.is_finite()).map(|v| v.abs()).sum();
            prop_assert!(close(stats.sum, sum, scale), "{} vs {}", stats.sum, sum);
            prop_assert_eq!(stats.count as usize, values.len());
            prop_assert_eq!(stats.first, values[0].to_bits());
            prop_assert_eq!(stats.last, values[values.len() - 1].to_bits());
        }

        #[test]
        fn int_stats_equal_the_folds(values in prop::collection::vec(any::<i64>(), 1..40)) {
            let stats = int_stats(&values, |x| x as u64, |x| x as f64);
            prop_assert_eq!(stats.min, *values.iter().min().unwrap() as u64);
            prop_assert_eq!(stats.max, *values.iter().max().unwrap() as u64);
            let sum: f64 = values.iter().map(|&x| x as f64).sum();
            let scale: f64 = values.iter().map(|&x| (x as f64).abs()).sum();
            prop_assert!(close(stats.sum, sum, scale), "{} vs {}", stats.sum, sum);
            prop_assert_eq!((stats.first, stats.last), (values[0] as u64, values[values.len() - 1] as u64));
        }
    }

    /// Sparse chunks gather the present values once, for the codec and the statistics alike.
    #[test]
    fn present_values_skip_missing_rows() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        let valid = [true, false, true, true];
        assert_eq!(&*present(&v, &valid, 1..5, false), &[2.0, 4.0, 5.0]);
        assert!(matches!(present(&v, &valid, 1..5, true), Cow::Borrowed(_)));
        let stats = float_stats(&present(&v, &valid, 1..5, false));
        assert_eq!((stats.count, f64::from_bits(stats.first)), (3, 2.0));
        assert_eq!(
            (f64::from_bits(stats.min), f64::from_bits(stats.max)),
            (2.0, 5.0)
        );
        assert_eq!(stats.sum, 11.0);
    }
}
