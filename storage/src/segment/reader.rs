//! Opens a segment file through `memmap2`, validates header, trailer and footer, and decodes the
//! blocks a read needs, checking each chunk's CRC32C before decoding it.

use std::path::{Path, PathBuf};

use super::{
    Block, ChunkRef, ChunkStats, END_MAGIC, FieldChunk, HEADER_LEN, Index, MAGIC, TRAILER_LEN,
    VERSION,
};
use crate::bytes::{ReadError, Reader};
use crate::codec::{self, Codec};
use crate::error::{Result, StorageError};
use crate::fsutil::map_readonly;
use crate::rows::{Rows, append_column};
use crate::{Column, ColumnData, FieldType, SeriesId, StringColumn};

/// An open, validated segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub path: PathBuf,
    map: memmap2::Mmap,
    pub database: String,
    pub stream: String,
    pub partition_start: i64,
    pub fields: Vec<(String, FieldType)>,
    index: Index,
}

impl Segment {
    /// Maps and validates `path`.
    pub fn open(path: &Path) -> Result<Segment> {
        let map = map_readonly(path)?;
        let corrupt = |detail: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        let footer = locate_footer(&map).map_err(corrupt)?;
        let parsed =
            parse_footer(footer, map.len()).map_err(|e| corrupt(format!("footer: {e}")))?;
        Ok(Segment {
            path: path.to_path_buf(),
            map,
            database: parsed.database,
            stream: parsed.stream,
            partition_start: parsed.partition_start,
            fields: parsed.fields,
            index: parsed.index,
        })
    }

    /// The whole file as mapped.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Ids of the series stored, increasing.
    pub fn series_ids(&self) -> impl Iterator<Item = SeriesId> + '_ {
        self.index.series().map(|(id, _)| id)
    }

    /// The blocks of series `id`, if the segment has it.
    fn index_of(&self, id: SeriesId) -> Option<&[Block]> {
        self.index.blocks_of(id)
    }

    /// Every block with its field chunks.
    pub fn blocks(&self) -> impl Iterator<Item = (&Block, &[FieldChunk])> + '_ {
        (self.index.series())
            .flat_map(|(_, blocks)| blocks.iter().map(|b| (b, self.index.fields(b))))
    }

    /// Name of the codec of a time chunk (codec byte at `skip`).
    pub fn codec_of(&self, r: &ChunkRef, skip: usize) -> String {
        let at = r.offset as usize + skip;
        match self.map.get(at).filter(|_| skip < r.len as usize) {
            Some(&b) => Codec::from_u8(b)
                .map(|c| format!("{c:?}"))
                .unwrap_or_else(|_| format!("unknown({b})")),
            None => "missing".into(),
        }
    }

    /// Name of the codec of a field chunk whose presence bitmap (if any) is `bitmap_len` bytes.
    pub fn field_codec_of(&self, r: &ChunkRef, bitmap_len: usize) -> String {
        match self.map.get(r.offset as usize) {
            Some(0) => self.codec_of(r, 1),
            Some(1) => self.codec_of(r, 1 + bitmap_len),
            _ => "bad-presence".into(),
        }
    }

    /// Checks every chunk's CRC; returns one description per damaged chunk.
    pub fn verify(&self) -> Vec<String> {
        let mut damage = Vec::new();
        for (series_id, blocks) in self.index.series() {
            for (bi, b) in blocks.iter().enumerate() {
                let refs = std::iter::once(("time".to_string(), b.time)).chain(
                    (self.index.fields(b).iter()).map(|f| (self.field_name(f.field), f.chunk)),
                );
                for (name, r) in refs {
                    if let Err(e) = self.chunk(&r, series_id, bi, &name) {
                        damage.push(e.to_string());
                    }
                }
            }
        }
        damage
    }

    fn field_name(&self, id: u16) -> String {
        self.fields
            .get(id as usize)
            .map(|f| f.0.clone())
            .unwrap_or_else(|| format!("#{id}"))
    }

    fn chunk(&self, r: &ChunkRef, series: SeriesId, block: usize, column: &str) -> Result<&[u8]> {
        let bytes = &self.map[r.offset as usize..r.offset as usize + r.len as usize];
        if crc32c::crc32c(bytes) != r.crc {
            return Err(StorageError::Corrupt {
                path: self.path.clone(),
                detail: format!(
                    "checksum mismatch in chunk '{column}' of series {series}, block {block} (bytes {}..{})",
                    r.offset,
                    r.offset + u64::from(r.len)
                ),
            });
        }
        Ok(bytes)
    }

    /// Rows of `series` with `first <= time <= last`, with one column per entry of `fields` (columns
    /// the segment lacks are all-null), sorted with distinct times. `None` when the segment has no
    /// rows of the series in range.
    pub fn read_series(
        &self,
        series: SeriesId,
        first: i64,
        last: i64,
        fields: &[(String, FieldType)],
    ) -> Result<Option<Rows>> {
        let Some(index) = self.index_of(series) else {
            return Ok(None);
        };
        let wanted = self.local_fields(fields)?;
        let blocks = || {
            (index.iter().enumerate()).filter(|(_, b)| b.max_time >= first && b.min_time <= last)
        };
        let mut out = Rows::empty(fields);
        out.reserve(blocks().map(|(_, b)| b.rows as usize).sum());
        let mut sorted = true;
        for (bi, block) in blocks() {
            let before = out.len();
            if block.min_time >= first && block.max_time <= last {
                self.append_block(&mut out, series, bi, block, &wanted, fields)?;
            } else {
                let rows = self.read_block(series, bi, block, &wanted, fields)?;
                out.append(&rows.slice_time(first, last));
            }
            sorted &=
                before == 0 || out.len() == before || out.times[before - 1] < out.times[before];
        }
        // Blocks hold increasing times; should they not follow each other, sort like a merge.
        let out = if sorted { out } else { out.normalize() };
        Ok((!out.is_empty()).then_some(out))
    }

    /// Decodes a block straight onto the end of `out` (no intermediate rows for columns without
    /// nulls).
    fn append_block(
        &self,
        out: &mut Rows,
        series: SeriesId,
        bi: usize,
        block: &Block,
        wanted: &[Option<u16>],
        fields: &[(String, FieldType)],
    ) -> Result<()> {
        let n = block.rows as usize;
        let bytes = self.chunk(&block.time, series, bi, "time")?;
        decode_time_chunk(bytes, n, &mut out.times)
            .map_err(|e| self.decode_error(series, bi, "time", e))?;
        for ((want, (name, ty)), col) in wanted.iter().zip(fields).zip(&mut out.columns) {
            match want.and_then(|fid| self.index.field(block, fid)) {
                None => (0..n).for_each(|_| col.push_null()),
                Some(fc) => {
                    let bytes = self.chunk(&fc.chunk, series, bi, name)?;
                    decode_field_onto(bytes, name, *ty, n, fc.stats.count as usize, col)
                        .map_err(|e| self.decode_error(series, bi, name, e))?;
                }
            }
        }
        Ok(())
    }

    fn local_field(&self, (name, ty): &(String, FieldType)) -> Result<Option<u16>> {
        match self.fields.iter().position(|(n, _)| n == name) {
            None => Ok(None),
            Some(i) if self.fields[i].1 == *ty => Ok(Some(i as u16)),
            Some(i) => Err(StorageError::Corrupt {
                path: self.path.clone(),
                detail: format!(
                    "field '{name}' is {} here but {ty} in the catalog",
                    self.fields[i].1
                ),
            }),
        }
    }

    fn read_block(
        &self,
        series: SeriesId,
        bi: usize,
        block: &Block,
        wanted: &[Option<u16>],
        fields: &[(String, FieldType)],
    ) -> Result<Rows> {
        let n = block.rows as usize;
        let bytes = self.chunk(&block.time, series, bi, "time")?;
        let mut times = Vec::with_capacity(n);
        decode_time_chunk(bytes, n, &mut times)
            .map_err(|e| self.decode_error(series, bi, "time", e))?;
        let mut columns = Vec::with_capacity(fields.len());
        for (want, (name, ty)) in wanted.iter().zip(fields) {
            let chunk = want.and_then(|fid| self.index.field(block, fid));
            let col = match chunk {
                None => null_column(name, *ty, n),
                Some(fc) => {
                    let bytes = self.chunk(&fc.chunk, series, bi, name)?;
                    decode_field_chunk(bytes, name, *ty, n, fc.stats.count as usize)
                        .map_err(|e| self.decode_error(series, bi, name, e))?
                }
            };
            columns.push(col);
        }
        Ok(Rows { times, columns })
    }

    fn decode_error(
        &self,
        series: SeriesId,
        block: usize,
        column: &str,
        detail: String,
    ) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            detail: format!(
                "cannot decode chunk '{column}' of series {series}, block {block}: {detail}"
            ),
        }
    }

    /// Earliest and latest time of `series` in this segment, from the footer (nothing decoded).
    pub fn series_range(&self, series: SeriesId) -> Option<(i64, i64)> {
        let index = self.index_of(series)?;
        let lo = index.iter().map(|b| b.min_time).min()?;
        let hi = index.iter().map(|b| b.max_time).max()?;
        Some((lo, hi))
    }

    /// Rows of the blocks of `series` that overlap `[first, last]` (what reading that range
    /// decodes at most), from the footer.
    pub fn series_rows_between(&self, series: SeriesId, first: i64, last: i64) -> usize {
        self.index_of(series).map_or(0, |i| {
            (i.iter())
                .filter(|b| b.max_time >= first && b.min_time <= last)
                .map(|b| b.rows as usize)
                .sum()
        })
    }

    /// `(min_time, max_time)` of each block of `series`, in block order.
    pub fn series_block_ranges(&self, series: SeriesId) -> Vec<(i64, i64)> {
        self.index_of(series)
            .map(|i| i.iter().map(|b| (b.min_time, b.max_time)).collect())
            .unwrap_or_default()
    }

    /// Whether every series' blocks follow each other in time without overlapping (as writers
    /// write them): each block of a series is then a window of its own.
    pub fn blocks_ordered(&self) -> bool {
        self.index.ordered()
    }

    /// The blocks of `series` overlapping `[lo, hi]`, with their index and `(min_time, max_time)`,
    /// in block order: a binary search over the series' blocks when they follow each other in
    /// time (as writers write them), else a look at every block.
    pub fn series_blocks_overlapping(
        &self,
        series: SeriesId,
        lo: i64,
        hi: i64,
    ) -> impl Iterator<Item = (usize, (i64, i64))> + '_ {
        let blocks = self.index_of(series).unwrap_or_default();
        let ordered = self.index.ordered();
        let start = match ordered {
            true => blocks.partition_point(|b| b.max_time < lo),
            false => 0,
        };
        (blocks[start..].iter().enumerate())
            .take_while(move |(_, b)| !ordered || b.min_time <= hi)
            .filter(move |(_, b)| b.max_time >= lo && b.min_time <= hi)
            .map(move |(k, b)| (start + k, (b.min_time, b.max_time)))
    }

    /// Per field of `fields`, the footer statistics of block `bi` of `series` (`None` where the
    /// block has no value of the field). Checks field types like a read does.
    pub fn block_stats(
        &self,
        series: SeriesId,
        bi: usize,
        fields: &[(String, FieldType)],
    ) -> Result<super::RunFields> {
        let local = self.local_fields(fields)?;
        self.block_stats_local(series, bi, &local)
    }

    /// This segment's ids of `fields` (`None` for a field it lacks); an error when a field has
    /// another type here. A reader of many blocks resolves them once (names are not compared
    /// per block).
    pub fn local_fields(&self, fields: &[(String, FieldType)]) -> Result<Vec<Option<u16>>> {
        fields.iter().map(|f| self.local_field(f)).collect()
    }

    /// [`Segment::block_stats`] with the fields given by their ids from [`Segment::local_fields`].
    pub fn block_stats_local(
        &self,
        series: SeriesId,
        bi: usize,
        local: &[Option<u16>],
    ) -> Result<super::RunFields> {
        let block = self.block(series, bi)?;
        Ok(local
            .iter()
            .map(|l| l.and_then(|fid| self.index.field(block, fid).map(|c| c.stats)))
            .collect())
    }

    /// Decodes block `bi` of `series` (sorted rows, one column per entry of `fields`).
    pub fn block_rows(
        &self,
        series: SeriesId,
        bi: usize,
        fields: &[(String, FieldType)],
    ) -> Result<Rows> {
        let block = self.block(series, bi)?;
        let wanted: Vec<Option<u16>> = fields
            .iter()
            .map(|f| self.local_field(f))
            .collect::<Result<_>>()?;
        // `read_block` refuses times that are not strictly increasing: the rows are normalized.
        self.read_block(series, bi, block, &wanted, fields)
    }

    fn block(&self, series: SeriesId, bi: usize) -> Result<&Block> {
        self.index_of(series)
            .and_then(|i| i.get(bi))
            .ok_or_else(|| StorageError::Corrupt {
                path: self.path.clone(),
                detail: format!("series {series} has no block {bi}"),
            })
    }

    /// Statistics of one field over the blocks of a series (for aggregate pushdown by later layers).
    #[allow(dead_code)]
    pub fn field_stats(&self, series: SeriesId, field: &str) -> Vec<(i64, i64, ChunkStats)> {
        let Some(fid) = self.fields.iter().position(|(n, _)| n == field) else {
            return Vec::new();
        };
        let Some(index) = self.index_of(series) else {
            return Vec::new();
        };
        index
            .iter()
            .filter_map(|b| {
                (self.index.field(b, fid as u16)).map(|f| (b.min_time, b.max_time, f.stats))
            })
            .collect()
    }
}

#[path = "decimals.rs"]
mod decimals;
#[path = "dense.rs"]
mod dense;
pub(crate) use decimals::{ChunkInts, Decimals, FloatChunk, PackedInts};
pub use dense::DenseBlock;

fn null_column(name: &str, ty: FieldType, n: usize) -> Column {
    let mut c = Column::new(name, ty);
    for _ in 0..n {
        c.push_null();
    }
    c
}

fn decode_time_chunk(
    bytes: &[u8],
    n: usize,
    out: &mut Vec<i64>,
) -> std::result::Result<(), String> {
    let (&codec, payload) = bytes.split_first().ok_or("empty chunk")?;
    let codec = Codec::from_u8(codec).map_err(|e| e.to_string())?;
    let start = out.len();
    codec::decode_timestamps(codec, payload, n, out).map_err(|e| e.to_string())?;
    if codec == Codec::Regular && regular_increases(&out[start..]) {
        return Ok(());
    }
    // Branch-free over the whole chunk (it vectorizes; an early exit does not): a valid chunk,
    // the only kind worth being fast for, is read to the end either way.
    let decreasing = out[start..]
        .windows(2)
        .fold(false, |bad, w| bad | (w[0] >= w[1]));
    if decreasing {
        out.truncate(start);
        return Err("timestamps are not strictly increasing".into());
    }
    Ok(())
}

/// Whether `times`, an arithmetic progression (as [`Codec::Regular`] decodes), strictly
/// increases: a positive step and no wrap-around from the first to the last.
fn regular_increases(times: &[i64]) -> bool {
    match times {
        [] | [_] => true,
        [first, second, ..] => {
            let step = second.wrapping_sub(*first);
            let span = i64::try_from(times.len() - 1)
                .ok()
                .and_then(|k| step.checked_mul(k))
                .and_then(|d| first.checked_add(d));
            step > 0 && second > first && span == times.last().copied()
        }
    }
}

fn decode_field_chunk(
    bytes: &[u8],
    name: &str,
    ty: FieldType,
    rows: usize,
    count: usize,
) -> std::result::Result<Column, String> {
    let mut valid = Vec::with_capacity(rows);
    let rest = presence(bytes, rows, count, &mut valid)?;
    let (&codec, payload) = rest.split_first().ok_or("missing codec byte")?;
    let codec = Codec::from_u8(codec).map_err(|e| e.to_string())?;
    let dense = decode_values(codec, payload, ty, count).map_err(|e| e.to_string())?;
    Ok(expand(name, dense, valid))
}

/// Reads a field chunk's presence flag and bitmap (one flag per row of `rows`, `count` of them
/// set) onto the end of `valid`; the rest of the chunk (codec byte and payload).
fn presence<'a>(
    bytes: &'a [u8],
    rows: usize,
    count: usize,
    valid: &mut Vec<bool>,
) -> std::result::Result<&'a [u8], String> {
    let (bitmap, rest) = split_presence(bytes, rows, count)?;
    match bitmap {
        None => valid.resize(valid.len() + rows, true),
        Some(bits) => valid.extend((0..rows).map(|i| bits[i / 8] & (1 << (i % 8)) != 0)),
    }
    Ok(rest)
}

/// Splits a field chunk of `rows` rows holding `count` values into its presence bitmap (`None`:
/// every row has a value; else one bit per row, LSB first, checked to hold `count` set bits) and
/// the rest (codec byte and payload).
fn split_presence(
    bytes: &[u8],
    rows: usize,
    count: usize,
) -> std::result::Result<(Option<&[u8]>, &[u8]), String> {
    let (&flag, rest) = bytes.split_first().ok_or("empty chunk")?;
    let (bitmap, rest) = match flag {
        0 => (None, rest),
        1 => {
            let len = rows.div_ceil(8);
            if rest.len() < len {
                return Err("truncated presence bitmap".into());
            }
            let (bits, rest) = rest.split_at(len);
            (Some(bits), rest)
        }
        p => return Err(format!("unknown presence flag {p}")),
    };
    let set = bitmap.map_or(rows, |bits| dense::count_bits(bits, rows));
    if set != count {
        return Err("presence bitmap disagrees with the value count".into());
    }
    Ok((bitmap, rest))
}

/// Decodes a field chunk onto the end of `col`: values without nulls straight into its buffer,
/// others through [`decode_field_chunk`].
fn decode_field_onto(
    bytes: &[u8],
    name: &str,
    ty: FieldType,
    rows: usize,
    count: usize,
    col: &mut Column,
) -> std::result::Result<(), String> {
    let dense = match bytes.split_first() {
        Some((0, rest)) if count == rows => rest,
        _ => {
            append_column(col, &decode_field_chunk(bytes, name, ty, rows, count)?);
            return Ok(());
        }
    };
    let (&codec, payload) = dense.split_first().ok_or("missing codec byte")?;
    let codec = Codec::from_u8(codec).map_err(|e| e.to_string())?;
    let e = |e: codec::CodecError| e.to_string();
    match &mut col.data {
        ColumnData::Float(v) => codec::decode_floats(codec, payload, rows, v).map_err(e)?,
        ColumnData::Integer(v) => codec::decode_integers(codec, payload, rows, v).map_err(e)?,
        ColumnData::Unsigned(v) => codec::decode_unsigned(codec, payload, rows, v).map_err(e)?,
        ColumnData::Boolean(v) => codec::decode_booleans(codec, payload, rows, v).map_err(e)?,
        ColumnData::String(_) => {
            append_column(col, &decode_field_chunk(bytes, name, ty, rows, count)?);
            return Ok(());
        }
    }
    col.valid.resize(col.valid.len() + rows, true);
    Ok(())
}

fn decode_values(
    codec: Codec,
    payload: &[u8],
    ty: FieldType,
    n: usize,
) -> Result<ColumnData, codec::CodecError> {
    Ok(match ty {
        FieldType::Float => {
            let mut v = Vec::with_capacity(n);
            codec::decode_floats(codec, payload, n, &mut v)?;
            ColumnData::Float(v)
        }
        FieldType::Integer => {
            let mut v = Vec::with_capacity(n);
            codec::decode_integers(codec, payload, n, &mut v)?;
            ColumnData::Integer(v)
        }
        FieldType::Unsigned => {
            let mut v = Vec::with_capacity(n);
            codec::decode_unsigned(codec, payload, n, &mut v)?;
            ColumnData::Unsigned(v)
        }
        FieldType::Boolean => {
            let mut v = Vec::with_capacity(n);
            codec::decode_booleans(codec, payload, n, &mut v)?;
            ColumnData::Boolean(v)
        }
        FieldType::String => {
            let mut v = StringColumn::default();
            codec::decode_strings(codec, payload, n, &mut v)?;
            ColumnData::String(v)
        }
    })
}

/// Spreads dense present values over the rows marked valid.
fn expand(name: &str, dense: ColumnData, valid: Vec<bool>) -> Column {
    if valid.iter().all(|v| *v) {
        return Column {
            name: name.to_string(),
            data: dense,
            valid,
        };
    }
    let data = match dense {
        ColumnData::Float(d) => ColumnData::Float(spread(&d, &valid, 0.0)),
        ColumnData::Integer(d) => ColumnData::Integer(spread(&d, &valid, 0)),
        ColumnData::Unsigned(d) => ColumnData::Unsigned(spread(&d, &valid, 0)),
        ColumnData::Boolean(d) => ColumnData::Boolean(spread(&d, &valid, false)),
        dense @ ColumnData::String(_) => {
            let mut data = ColumnData::new(dense.field_type());
            let mut next = 0;
            for &v in &valid {
                if v {
                    data.push_from(&dense, next);
                    next += 1;
                } else {
                    data.push_default();
                }
            }
            data
        }
    };
    Column {
        name: name.to_string(),
        data,
        valid,
    }
}

/// `dense` values placed at the rows marked valid, `default` elsewhere (`dense` holds exactly one
/// value per valid row: the caller checked the count).
fn spread<T: Copy>(dense: &[T], valid: &[bool], default: T) -> Vec<T> {
    let mut values = dense.iter();
    valid
        .iter()
        .map(|&v| match v {
            true => values.next().copied().unwrap_or(default),
            false => default,
        })
        .collect()
}

fn locate_footer(map: &[u8]) -> std::result::Result<&[u8], String> {
    if map.len() < HEADER_LEN + TRAILER_LEN {
        return Err(format!(
            "file is {} bytes, too short for a segment",
            map.len()
        ));
    }
    if &map[..8] != MAGIC {
        return Err("bad magic: not a Strata segment".into());
    }
    let version = u16::from_le_bytes([map[8], map[9]]);
    if version > VERSION {
        return Err(format!(
            "format version {version} is newer than this build supports ({VERSION}); upgrade Strata"
        ));
    }
    if version == 0 || map[10..HEADER_LEN].iter().any(|&b| b != 0) {
        return Err(format!(
            "bad header: version {version}, flags/reserved bytes {:?}",
            &map[10..HEADER_LEN]
        ));
    }
    let trailer = &map[map.len() - TRAILER_LEN..];
    if &trailer[16..] != END_MAGIC {
        return Err("bad trailer magic (file truncated or not finished)".into());
    }
    let mut r = Reader::new(trailer);
    let (offset, len, crc) = (|| -> std::result::Result<_, ReadError> {
        Ok((
            r.u64("footer offset")?,
            r.u32("footer length")?,
            r.u32("footer crc")?,
        ))
    })()
    .map_err(|e| e.to_string())?;
    let end = offset
        .checked_add(u64::from(len))
        .filter(|&e| e <= (map.len() - TRAILER_LEN) as u64);
    if offset < HEADER_LEN as u64 || end.is_none() {
        return Err(format!(
            "footer location {offset}+{len} is outside the file"
        ));
    }
    let footer = &map[offset as usize..offset as usize + len as usize];
    if crc32c::crc32c(footer) != crc {
        return Err("footer checksum mismatch".into());
    }
    Ok(footer)
}

struct ParsedFooter {
    database: String,
    stream: String,
    partition_start: i64,
    fields: Vec<(String, FieldType)>,
    index: Index,
}

fn parse_footer(footer: &[u8], file_len: usize) -> std::result::Result<ParsedFooter, ReadError> {
    let mut r = Reader::new(footer);
    let database = r.str("database")?.to_string();
    let stream = r.str("stream")?.to_string();
    let partition_start = r.i64("partition start")?;
    let _partition_ns = r.i64("partition length")?;
    let nfields = r.count(5, "field count")?;
    let mut fields = Vec::with_capacity(nfields);
    for _ in 0..nfields {
        let name = r.str("field name")?.to_string();
        let tag = r.u8("field type")?;
        let ty = FieldType::from_tag(tag).ok_or(ReadError {
            offset: 0,
            what: format!("unknown field type {tag}"),
        })?;
        fields.push((name, ty));
    }
    let nseries = r.count(8, "series count")?;
    let mut index = Index::default();
    // `count` bounded it by the footer's bytes, so this is no more than the footer allows.
    index.reserve(nseries);
    let limit = (file_len - TRAILER_LEN) as u64;
    for _ in 0..nseries {
        let series_id = r.u32("series id")?;
        if index.last_series().is_some_and(|last| last >= series_id) {
            return Err(ReadError {
                offset: 0,
                what: "series ids are not increasing".into(),
            });
        }
        index.begin_series(series_id);
        let nblocks = r.count(38, "block count")?;
        for _ in 0..nblocks {
            parse_block(&mut r, limit, nfields, &mut index)?;
        }
    }
    index.shrink_to_fit();
    Ok(ParsedFooter {
        database,
        stream,
        partition_start,
        fields,
        index,
    })
}

fn parse_chunk_ref(r: &mut Reader<'_>, limit: u64) -> std::result::Result<ChunkRef, ReadError> {
    let c = ChunkRef {
        offset: r.u64("chunk offset")?,
        len: r.u32("chunk length")?,
        crc: r.u32("chunk crc")?,
    };
    if c.offset < HEADER_LEN as u64 || c.offset.saturating_add(u64::from(c.len)) > limit {
        return Err(ReadError {
            offset: 0,
            what: format!("chunk {}+{} lies outside the data area", c.offset, c.len),
        });
    }
    Ok(c)
}

fn parse_block(
    r: &mut Reader<'_>,
    limit: u64,
    nfields: usize,
    index: &mut Index,
) -> std::result::Result<(), ReadError> {
    let rows = r.u32("block rows")?;
    let min_time = r.i64("block min time")?;
    let max_time = r.i64("block max time")?;
    let time = parse_chunk_ref(r, limit)?;
    let nf = r.u16("field chunk count")? as usize;
    for _ in 0..nf {
        let field = r.u16("field id")?;
        if field as usize >= nfields {
            return Err(ReadError {
                offset: 0,
                what: format!("field id {field} out of range"),
            });
        }
        let chunk = parse_chunk_ref(r, limit)?;
        let stats = ChunkStats {
            count: r.u32("count")?,
            min: r.u64("min")?,
            max: r.u64("max")?,
            sum: f64::from_bits(r.u64("sum")?),
            first: r.u64("first")?,
            last: r.u64("last")?,
        };
        if stats.count > rows {
            return Err(ReadError {
                offset: 0,
                what: "chunk value count exceeds block rows".into(),
            });
        }
        index.push_chunk(FieldChunk {
            field,
            chunk,
            stats,
        });
    }
    if rows == 0 || rows as usize > super::BLOCK_ROWS || min_time > max_time {
        return Err(ReadError {
            offset: 0,
            what: "empty block or inverted time range".into(),
        });
    }
    index.push_block(rows, (min_time, max_time), time);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::decode_time_chunk;
    use crate::codec::{self, Codec};

    /// A chunk of `times` as the segment writer stores it: codec byte, then payload.
    fn chunk(times: &[i64]) -> (Codec, Vec<u8>) {
        let mut payload = Vec::new();
        let codec = codec::encode_timestamps(times, &mut payload);
        let mut bytes = vec![codec as u8];
        bytes.extend_from_slice(&payload);
        (codec, bytes)
    }

    /// One float field `v` at `times`.
    fn float_rows(times: impl Iterator<Item = i64>) -> crate::rows::Rows {
        let times: Vec<i64> = times.collect();
        let n = times.len();
        crate::rows::Rows {
            columns: vec![crate::Column {
                name: "v".into(),
                data: crate::ColumnData::Float(times.iter().map(|&t| t as f64).collect()),
                valid: vec![true; n],
            }],
            times,
        }
    }

    /// The blocks found for every range equal a look at every block, for a series whose
    /// blocks follow each other and for one written out of order (which a writer never does,
    /// but a reader must still answer right).
    #[test]
    fn blocks_overlapping_a_range_equal_a_look_at_every_block() {
        use super::super::{BLOCK_ROWS, Segment, SegmentWriter};
        let dir = tempfile::tempdir().unwrap();
        let fields = [("v".to_string(), crate::FieldType::Float)];
        let path = dir.path().join("1.seg");
        let mut w = SegmentWriter::create(&path, "db", "m", 0, 1 << 40, &fields).unwrap();
        let n = (3 * BLOCK_ROWS + 17) as i64;
        w.write_series(7, &float_rows((0..n).map(|i| i * 10)))
            .unwrap();
        // Series 8: a block of late times appended after newer ones.
        w.write_series(8, &float_rows(5_000..5_100)).unwrap();
        w.append_series_rows(8, &float_rows(0..200)).unwrap();
        w.finish().unwrap();
        let seg = Segment::open(&path).unwrap();
        let bounds = [
            -5, 0, 5, 1_000, 81_910, 81_920, 81_925, 200_000, 327_690, 400_000,
        ];
        for sid in [7, 8, 9] {
            let all = seg.series_block_ranges(sid);
            for &lo in &bounds {
                for &hi in &bounds {
                    let got: Vec<(usize, (i64, i64))> =
                        seg.series_blocks_overlapping(sid, lo, hi).collect();
                    let want: Vec<(usize, (i64, i64))> = (all.iter().copied().enumerate())
                        .filter(|(_, (min, max))| *max >= lo && *min <= hi)
                        .collect();
                    assert_eq!(got, want, "series {sid} [{lo}, {hi}]");
                }
            }
        }
        assert_eq!(seg.series_block_ranges(7).len(), 4);
    }

    /// Times must strictly increase whatever their codec; a regular progression is accepted
    /// without comparing each pair, so its step and its end are checked instead.
    #[test]
    fn time_chunks_must_strictly_increase() {
        let cases: [(&[i64], bool); 7] = [
            (&[5], true),
            (&[10, 20, 30, 40], true),
            (&[10, 20, 35, 40], true),
            (&[7, 7, 7], false),
            (&[40, 30, 20], false),
            (&[i64::MAX - 20, i64::MAX - 10, i64::MAX], true),
            (&[10, 20, 20, 30], false),
        ];
        for (times, ok) in cases {
            let (codec, bytes) = chunk(times);
            let mut out = Vec::new();
            let got = decode_time_chunk(&bytes, times.len(), &mut out);
            assert_eq!(got.is_ok(), ok, "{times:?} as {codec:?}: {got:?}");
            if ok {
                assert_eq!(out, times);
            } else {
                assert!(out.is_empty(), "{times:?}");
            }
        }
        // A regular progression that wraps past i64::MAX decodes to a decreasing pair.
        let mut payload = Vec::new();
        codec::encode_timestamps(&[i64::MAX - 5, i64::MAX], &mut payload);
        let mut bytes = vec![Codec::Regular as u8];
        bytes.extend_from_slice(&payload);
        let mut out = Vec::new();
        assert!(decode_time_chunk(&bytes, 3, &mut out).is_err());
        assert!(out.is_empty());
    }
}
