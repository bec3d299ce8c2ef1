//! Immutable segment files: one per (database, stream, time partition) per flush or compaction.
//! Layout (little-endian, documented byte by byte in `docs/format.md`):
//!
//! ```text
//! header  : "STRATSEG" | version u16 | flags u16 | reserved u32          (16 bytes)
//! chunks  : time chunk = codec u8 | payload
//!           field chunk = presence u8 (0 all rows, 1 bitmap) | [bitmap] | codec u8 | payload
//! footer  : database, stream, partition, schema, per series its blocks, per block its chunk refs
//!           (offset, length, CRC32C) and per-field statistics
//! trailer : footer offset u64 | footer length u32 | footer CRC32C u32 | "STRATEND"  (24 bytes)
//! ```

mod reader;
mod writer;

pub use reader::DenseBlock;
pub(crate) use reader::{ChunkInts, Decimals, FloatChunk, PackedInts, Segment};
pub(crate) use writer::{SegmentWriter, WrittenSegment};

/// Magic at the start of every segment file.
pub(crate) const MAGIC: &[u8; 8] = b"STRATSEG";
/// Magic at the very end of every segment file.
pub(crate) const END_MAGIC: &[u8; 8] = b"STRATEND";
/// Current format version; readers refuse newer versions.
pub(crate) const VERSION: u16 = 1;
/// Header length in bytes.
pub(crate) const HEADER_LEN: usize = 16;
/// Trailer length in bytes.
pub(crate) const TRAILER_LEN: usize = 24;
/// Rows per block: each series is cut into blocks of at most this many rows, each with its own
/// chunks and statistics, so range reads decode only what overlaps.
pub(crate) const BLOCK_ROWS: usize = 8192;

/// Where a chunk lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
}

/// Sum, minimum and maximum of `values` (at least one) in one pass of four independent lanes
/// (value `i` in lane `i mod 4`; the sum is `(l0 + l1) + (l2 + l3)`), with plain comparisons,
/// so the loop compiles to packed adds, mins and maxes. Plain comparisons skip a NaN and do not
/// tell -0.0 from +0.0: a caller with another rule for those checks `sum.is_nan()` (any NaN
/// makes the sum NaN) and zero extremes.
pub(crate) fn float_lanes(values: &[f64]) -> (f64, f64, f64) {
    let head = values[0];
    let mut sums = [-0.0f64; 4];
    let (mut mins, mut maxs) = ([head; 4], [head; 4]);
    let quads = values.chunks_exact(4);
    let rest = quads.remainder();
    for q in quads {
        for l in 0..4 {
            sums[l] += q[l];
            mins[l] = if q[l] < mins[l] { q[l] } else { mins[l] };
            maxs[l] = if q[l] > maxs[l] { q[l] } else { maxs[l] };
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        sums[l] += v;
        mins[l] = if v < mins[l] { v } else { mins[l] };
        maxs[l] = if v > maxs[l] { v } else { maxs[l] };
    }
    let min = |a: f64, b: f64| if b < a { b } else { a };
    let max = |a: f64, b: f64| if b > a { b } else { a };
    (
        (sums[0] + sums[1]) + (sums[2] + sums[3]),
        min(min(mins[0], mins[1]), min(mins[2], mins[3])),
        max(max(maxs[0], maxs[1]), max(maxs[2], maxs[3])),
    )
}

/// Per-chunk statistics, values stored as raw 8-byte patterns of the field's type
/// (f64 bits, i64, u64, bool as 0/1); `sum` is always an f64. Strings keep only `count`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ChunkStats {
    /// Present values.
    pub count: u32,
    /// Minimum (raw bits of the field type).
    pub min: u64,
    /// Maximum (raw bits of the field type).
    pub max: u64,
    /// Sum as f64.
    pub sum: f64,
    /// Value at the earliest time (raw bits).
    pub first: u64,
    /// Value at the latest time (raw bits).
    pub last: u64,
}

impl ChunkStats {
    /// Statistics of `values` (at least one) floats with the extremes `min`, `max` and `sum`;
    /// first and last are the values at either end.
    pub(crate) fn of_floats(values: &[f64], min: f64, max: f64, sum: f64) -> ChunkStats {
        ChunkStats {
            count: values.len() as u32,
            min: min.to_bits(),
            max: max.to_bits(),
            sum,
            first: values[0].to_bits(),
            last: values[values.len() - 1].to_bits(),
        }
    }
}

/// The per-field statistics of a block or run: inline for one field (the usual aggregate of a
/// dashboard panel), so that a fold over many cached runs reads each run's statistics next to
/// its times instead of following a pointer per run to another allocation (a cache miss per run:
/// three quarters of the fold's time over 240,000 cached runs before).
pub type RunFields = smallvec::SmallVec<[Option<ChunkStats>; 1]>;

/// One field chunk of a block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FieldChunk {
    pub field: u16,
    pub chunk: ChunkRef,
    pub stats: ChunkStats,
}

/// One block of rows of one series; its field chunks lie in the [`Index`]'s chunk list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Block {
    pub rows: u32,
    pub min_time: i64,
    pub max_time: i64,
    pub time: ChunkRef,
    /// Position of the block's first field chunk in the index's chunk list.
    first_chunk: u32,
    /// Number of field chunks (fields with a value in the block).
    chunks: u16,
}

/// A segment's footer index in memory: every series' blocks in one list and every block's field
/// chunks in another, so a series costs no allocation of its own (a one-point series holds 8 +
/// 48 + 64 bytes, where a list of blocks per series and of chunks per block cost three
/// allocations and about 190 bytes). Built by the writer as series arrive and by the reader from
/// the footer; the footer's bytes are the same either way (`docs/format.md`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Index {
    /// Each series' id and the position of its first block in `blocks`; ids increase.
    series: Vec<(crate::SeriesId, u32)>,
    blocks: Vec<Block>,
    chunks: Vec<FieldChunk>,
    /// Some series' blocks do not follow each other in time (a block starts at or before the
    /// previous one's end). Writers never produce that; readers of such a file still answer
    /// right, by looking at every block instead of searching.
    unordered: bool,
}

impl Index {
    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Numbers of series, blocks and field chunks.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.series.len(), self.blocks.len(), self.chunks.len())
    }

    /// The last series begun.
    pub fn last_series(&self) -> Option<crate::SeriesId> {
        self.series.last().map(|s| s.0)
    }

    /// Every series with its blocks, in id order.
    pub fn series(&self) -> impl Iterator<Item = (crate::SeriesId, &[Block])> + '_ {
        (0..self.series.len()).map(|pos| (self.series[pos].0, self.blocks_at(pos)))
    }

    /// Whether every series' blocks follow each other in time (see `unordered`).
    pub fn ordered(&self) -> bool {
        !self.unordered
    }

    /// The blocks of series `id`, if the segment has it.
    pub fn blocks_of(&self, id: crate::SeriesId) -> Option<&[Block]> {
        let pos = self.series.binary_search_by_key(&id, |s| s.0).ok()?;
        Some(self.blocks_at(pos))
    }

    fn blocks_at(&self, pos: usize) -> &[Block] {
        let start = self.series[pos].1 as usize;
        let end = (self.series.get(pos + 1)).map_or(self.blocks.len(), |s| s.1 as usize);
        &self.blocks[start..end]
    }

    /// The field chunks of `block` (a block of this index).
    pub fn fields(&self, block: &Block) -> &[FieldChunk] {
        let start = block.first_chunk as usize;
        &self.chunks[start..start + usize::from(block.chunks)]
    }

    /// The chunk of field `fid` in `block`, if the block has a value of it.
    pub fn field(&self, block: &Block, fid: u16) -> Option<&FieldChunk> {
        self.fields(block).iter().find(|f| f.field == fid)
    }

    /// Begins series `id`; the blocks pushed next are its own. Ids must increase.
    pub fn begin_series(&mut self, id: crate::SeriesId) {
        self.series.push((id, self.blocks.len() as u32));
    }

    /// Adds a field chunk to the block being built (before [`Index::push_block`] closes it).
    pub fn push_chunk(&mut self, chunk: FieldChunk) {
        self.chunks.push(chunk);
    }

    /// Closes a block of the last series begun, holding the chunks pushed since the last block.
    pub fn push_block(&mut self, rows: u32, (min_time, max_time): (i64, i64), time: ChunkRef) {
        let first_chunk = self
            .blocks
            .last()
            .map_or(0, |b| b.first_chunk + u32::from(b.chunks));
        let chunks = (self.chunks.len() as u32 - first_chunk) as u16;
        let series_start = self.series.last().map_or(0, |s| s.1 as usize);
        if self.blocks.len() > series_start
            && self.blocks.last().is_some_and(|b| b.max_time >= min_time)
        {
            self.unordered = true;
        }
        self.blocks.push(Block {
            rows,
            min_time,
            max_time,
            time,
            first_chunk,
            chunks,
        });
    }

    /// Makes room for `series` more series of at least one block each (a reader knows the count
    /// from the footer, so the lists do not grow by doubling).
    pub fn reserve(&mut self, series: usize) {
        self.series.reserve_exact(series);
        self.blocks.reserve_exact(series);
    }

    /// Gives back spare capacity (the reader's index lives as long as the segment).
    pub fn shrink_to_fit(&mut self) {
        self.series.shrink_to_fit();
        self.blocks.shrink_to_fit();
        self.chunks.shrink_to_fit();
    }
}

/// Opens a segment file on its own (no data directory needed), checks every chunk's CRC32C and
/// decodes every chunk. Returns one line per problem found; an empty list means the file is intact.
/// Used by the fuzz target and by operators checking a file by hand.
pub fn verify_segment_file(path: &std::path::Path) -> crate::Result<Vec<String>> {
    let segment = Segment::open(path)?;
    let mut problems = segment.verify();
    if problems.is_empty() {
        let ids: Vec<crate::SeriesId> = segment.series_ids().collect();
        for id in ids {
            if let Err(e) = segment.read_series(id, i64::MIN, i64::MAX, &segment.fields.clone()) {
                problems.push(e.to_string());
            }
        }
    }
    Ok(problems)
}

/// Size and codec usage of one column (or `time`) across a segment file.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ColumnSummary {
    /// Field name, or `time` for the timestamp chunks.
    pub name: String,
    /// Chunks of this column.
    pub chunks: u64,
    /// Bytes of those chunks (presence bitmaps and codec bytes included).
    pub bytes: u64,
    /// Values stored.
    pub values: u64,
    /// Chunks per codec name.
    pub codecs: std::collections::BTreeMap<String, u64>,
}

/// Per-column sizes of a segment file, for `strata inspect` and codec tuning.
pub fn summarize_segment_file(path: &std::path::Path) -> crate::Result<Vec<ColumnSummary>> {
    let segment = Segment::open(path)?;
    let mut time = ColumnSummary {
        name: "time".into(),
        ..Default::default()
    };
    let mut fields: Vec<ColumnSummary> = segment
        .fields
        .iter()
        .map(|(n, _)| ColumnSummary {
            name: n.clone(),
            ..Default::default()
        })
        .collect();
    for (block, field_chunks) in segment.blocks() {
        let codec = segment.codec_of(&block.time, 0);
        time.add(block.time.len, u64::from(block.rows), codec);
        for fc in field_chunks {
            let bitmap = u64::from(block.rows).div_ceil(8);
            let codec = segment.field_codec_of(&fc.chunk, bitmap as usize);
            fields[fc.field as usize].add(fc.chunk.len, u64::from(fc.stats.count), codec);
        }
    }
    fields.insert(0, time);
    Ok(fields)
}

impl ColumnSummary {
    fn add(&mut self, bytes: u32, values: u64, codec: String) {
        self.chunks += 1;
        self.bytes += u64::from(bytes);
        self.values += values;
        *self.codecs.entry(codec).or_default() += 1;
    }
}
