//! Writes a segment file: chunks as series arrive, then the footer index and trailer; the file is
//! written under a temporary name, fsynced and renamed into place by [`SegmentWriter::finish`].

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::{
    BLOCK_ROWS, Block, ChunkRef, ChunkStats, END_MAGIC, FieldChunk, HEADER_LEN, Index, MAGIC,
    VERSION,
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
            encode_field_chunk(col, range.clone(), count, self.effort, &mut buf);
            let chunk = self.emit(&buf)?;
            let stats = compute_stats(&col.data, valid, range.start);
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

/// presence byte, optional bitmap, codec byte, payload.
fn encode_field_chunk(
    col: &Column,
    range: std::ops::Range<usize>,
    count: usize,
    effort: Effort,
    buf: &mut Vec<u8>,
) {
    let valid = &col.valid[range.clone()];
    if count == valid.len() {
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
    let present = |i: &usize| valid[*i - range.start];
    let codec = match &col.data {
        ColumnData::Float(v) => {
            codec::encode_floats_with(&gather(v, range.clone(), present), buf, effort)
        }
        ColumnData::Integer(v) => {
            codec::encode_integers_with(&gather(v, range.clone(), present), buf, effort)
        }
        ColumnData::Unsigned(v) => {
            codec::encode_unsigned_with(&gather(v, range.clone(), present), buf, effort)
        }
        ColumnData::Boolean(v) => codec::encode_booleans(&gather(v, range.clone(), present), buf),
        ColumnData::String(v) => {
            let mut s = StringColumn::default();
            range.clone().filter(present).for_each(|i| s.push(v.get(i)));
            codec::encode_strings(&s, buf)
        }
    };
    buf[codec_pos] = codec as u8;
}

fn gather<T: Copy>(
    v: &[T],
    range: std::ops::Range<usize>,
    present: impl Fn(&usize) -> bool,
) -> Vec<T> {
    range.filter(present).map(|i| v[i]).collect()
}

/// Statistics over the present values of one block.
fn compute_stats(data: &ColumnData, valid: &[bool], offset: usize) -> ChunkStats {
    let idx: Vec<usize> = valid
        .iter()
        .enumerate()
        .filter(|(_, v)| **v)
        .map(|(i, _)| i + offset)
        .collect();
    let count = idx.len() as u32;
    let (first, last) = (idx[0], idx[idx.len() - 1]);
    match data {
        ColumnData::Float(v) => {
            let vals = idx.iter().map(|&i| v[i]);
            let min = vals.clone().fold(f64::INFINITY, f64::min);
            let max = vals.clone().fold(f64::NEG_INFINITY, f64::max);
            let sum = vals.sum();
            ChunkStats {
                count,
                min: min.to_bits(),
                max: max.to_bits(),
                sum,
                first: v[first].to_bits(),
                last: v[last].to_bits(),
            }
        }
        ColumnData::Integer(v) => {
            let vals = idx.iter().map(|&i| v[i]);
            let (min, max) = (
                vals.clone().min().unwrap_or(0),
                vals.clone().max().unwrap_or(0),
            );
            let sum = vals.map(|x| x as f64).sum();
            ChunkStats {
                count,
                min: min as u64,
                max: max as u64,
                sum,
                first: v[first] as u64,
                last: v[last] as u64,
            }
        }
        ColumnData::Unsigned(v) => {
            let vals = idx.iter().map(|&i| v[i]);
            let (min, max) = (
                vals.clone().min().unwrap_or(0),
                vals.clone().max().unwrap_or(0),
            );
            let sum = vals.map(|x| x as f64).sum();
            ChunkStats {
                count,
                min,
                max,
                sum,
                first: v[first],
                last: v[last],
            }
        }
        ColumnData::Boolean(v) => {
            let trues = idx.iter().filter(|&&i| v[i]).count();
            ChunkStats {
                count,
                min: u64::from(trues == idx.len()),
                max: u64::from(trues > 0),
                sum: trues as f64,
                first: u64::from(v[first]),
                last: u64::from(v[last]),
            }
        }
        ColumnData::String(_) => ChunkStats {
            count,
            ..ChunkStats::default()
        },
    }
}
