//! One Parquet column chunk assembled from pages Strata encodes itself ([`super::runs`] for the
//! `device` and tag columns, [`super::ints`] for INT64 columns): the pages' headers (written by
//! the parquet crate's page writer), the column index (per-page min/max and null counts) and
//! the offset index (page locations), and the chunk's metadata, ready to be spliced into a row
//! group with `SerializedRowGroupWriter::append_column`; and the two encodings both page
//! writers use (ULEB128 varints, RLE runs of the RLE/bit-packed hybrid).

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, Type as Physical};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::Result;
use parquet::file::metadata::{ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedPageWriter, SerializedRowGroupWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// What the column index records of one data page.
pub(crate) struct PageSummary {
    /// Rows in the page (nulls included).
    pub rows: usize,
    /// Null rows.
    pub nulls: usize,
    /// Smallest and largest value in the column's order, plain-encoded (`None`: every row null).
    pub min_max: Option<(Vec<u8>, Vec<u8>)>,
}

/// A column chunk being written page by page.
pub(crate) struct ChunkWriter {
    sink: TrackedWrite<Vec<u8>>,
    column_index: ColumnIndexBuilder,
    offset_index: OffsetIndexBuilder,
    dictionary_offset: Option<i64>,
    data_offset: Option<i64>,
    /// Bytes of the pages before compression, headers included.
    uncompressed: usize,
    rows: usize,
    nulls: usize,
}

impl ChunkWriter {
    /// An empty chunk of a column of physical type `physical`.
    pub fn new(physical: Physical) -> ChunkWriter {
        ChunkWriter::with_capacity(physical, 0)
    }

    /// An empty chunk expected to take about `bytes` (reserved up front, so that the pages are
    /// not copied again each time the buffer grows).
    pub fn with_capacity(physical: Physical, bytes: usize) -> ChunkWriter {
        ChunkWriter {
            sink: TrackedWrite::new(Vec::with_capacity(bytes)),
            column_index: ColumnIndexBuilder::new(physical),
            offset_index: OffsetIndexBuilder::new(),
            dictionary_offset: None,
            data_offset: None,
            uncompressed: 0,
            rows: 0,
            nulls: 0,
        }
    }

    /// Writes the dictionary page (before any data page).
    pub fn dictionary_page(&mut self, buf: Vec<u8>, values: usize) -> Result<()> {
        let len = buf.len();
        let page = Page::DictionaryPage {
            buf: Bytes::from(buf),
            num_values: values as u32,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        let spec =
            SerializedPageWriter::new(&mut self.sink).write_page(CompressedPage::new(page, len))?;
        self.dictionary_offset = Some(spec.offset as i64);
        self.uncompressed += spec.uncompressed_size;
        Ok(())
    }

    /// Writes a v1 data page whose body is `buf` (compressed as the chunk says; `raw_len` bytes
    /// before compression), values in `encoding`, definition levels RLE.
    pub fn data_page(
        &mut self,
        buf: Vec<u8>,
        raw_len: usize,
        encoding: Encoding,
        summary: PageSummary,
    ) -> Result<()> {
        let page = Page::DataPage {
            buf: Bytes::from(buf),
            num_values: summary.rows as u32,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = SerializedPageWriter::new(&mut self.sink)
            .write_page(CompressedPage::new(page, raw_len))?;
        self.data_offset.get_or_insert(spec.offset as i64);
        self.uncompressed += spec.uncompressed_size;
        self.offset_index
            .append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
        self.offset_index.append_row_count(summary.rows as i64);
        let (min, max) = summary.min_max.clone().unwrap_or_default();
        self.column_index
            .append(summary.min_max.is_none(), min, max, summary.nulls as i64);
        self.rows += summary.rows;
        self.nulls += summary.nulls;
        Ok(())
    }

    /// Finishes the chunk of column `descr` (whose chunk statistics are `statistics`) and
    /// splices it into `group` as its next column.
    pub fn append_to(
        self,
        group: &mut SerializedRowGroupWriter<'_, Vec<u8>>,
        descr: ColumnDescPtr,
        (compression, encodings): (Compression, Vec<Encoding>),
        statistics: Statistics,
    ) -> Result<()> {
        let buf = self.sink.into_inner()?;
        let size = buf.len() as i64;
        let metadata = ColumnChunkMetaData::builder(descr)
            .set_encodings(encodings)
            .set_compression(compression)
            .set_num_values(self.rows as i64)
            .set_total_compressed_size(size)
            .set_total_uncompressed_size(self.uncompressed as i64)
            .set_dictionary_page_offset(self.dictionary_offset)
            .set_data_page_offset(self.data_offset.unwrap_or(0))
            .set_statistics(statistics)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: size as u64,
            rows_written: self.rows as u64,
            metadata,
            bloom_filter: None,
            column_index: Some(self.column_index.build()?),
            offset_index: Some(self.offset_index.build()),
        };
        group.append_column(&Bytes::from(buf), close)
    }

    /// Null rows written so far.
    pub fn nulls(&self) -> usize {
        self.nulls
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Appends `v` as a ULEB128 varint (Parquet's headers and lengths).
pub(crate) fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The RLE/bit-packed hybrid encoding of `(value, count)` runs as RLE runs only (adjacent equal
/// values merged): per run the count shifted left by one as a ULEB128 varint, then the value in
/// `ceil(width / 8)` bytes, little-endian.
pub(crate) fn rle(runs: impl Iterator<Item = (u32, usize)>, width: u8) -> Vec<u8> {
    let bytes = usize::from(width).div_ceil(8);
    let mut out = Vec::new();
    let mut emit = |value: u32, count: usize| {
        varint((count as u64) << 1, &mut out);
        out.extend_from_slice(&value.to_le_bytes()[..bytes]);
    };
    let mut current: Option<(u32, usize)> = None;
    for (value, count) in runs {
        current = match current {
            Some((v, n)) if v == value => Some((v, n + count)),
            Some((v, n)) => {
                emit(v, n);
                Some((value, count))
            }
            None => Some((value, count)),
        };
    }
    if let Some((v, n)) = current {
        emit(v, n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rle;

    #[test]
    fn rle_runs_merge_and_hold_their_value_in_whole_bytes() {
        // 3 then 5 (merged to one run of 300), width 9: two value bytes.
        let out = rle([(3u32, 100usize), (3, 200), (5, 1)].into_iter(), 9);
        assert_eq!(out, vec![0xd8, 0x04, 3, 0, 2, 5, 0]);
    }
}
