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

pub(crate) use reader::{Decimals, FloatChunk, Segment};
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

/// One field chunk of a block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FieldChunk {
    pub field: u16,
    pub chunk: ChunkRef,
    pub stats: ChunkStats,
}

/// One block of rows of one series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Block {
    pub rows: u32,
    pub min_time: i64,
    pub max_time: i64,
    pub time: ChunkRef,
    pub fields: Vec<FieldChunk>,
}

/// Footer entry of one series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesIndex {
    pub series_id: crate::SeriesId,
    pub blocks: Vec<Block>,
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
