//! INT64 column chunks written straight as Parquet: a cold object's `time`, its DECIMAL float
//! fields and its integer fields, from the series' values without the parquet crate's generic
//! column writer (after the string columns, that writer was the largest cost of a move:
//! `benches/cold/RESULTS.md`). Data pages (v1) of at most [`PAGE_ROWS`] rows: definition levels
//! (optional columns) as one RLE run or bit-packed, values DELTA_BINARY_PACKED as the Parquet
//! spec lays it out (blocks of 128 deltas in 4 miniblocks of 32, each bit-packed at its own
//! width above the block's smallest delta), each page zstd-compressed. Signed min/max statistics
//! for the chunk and every page, and the page index, through [`super::chunk`].

use parquet::basic::{Compression, Encoding, Type as Physical, ZstdLevel};
use parquet::errors::{ParquetError, Result};
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedRowGroupWriter;
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{ChunkWriter, PageSummary, rle, varint};

/// Most rows per data page.
pub(crate) const PAGE_ROWS: usize = 20_480;

/// Zstd level of the pages: 1, the fastest; on delta-packed pages level 3 saves under 1 % of
/// the bytes and costs a tenth of a move's time (`benches/cold/RESULTS.md`).
pub(crate) const ZSTD_LEVEL: i32 = 1;

/// A column chunk keeps zstd when its first page compresses to at most this many thousandths
/// of its raw size. Delta-packed random walks (positions, headings, loads) are near their
/// entropy already and zstd takes 0–4 % off them; compressing them cost about a tenth of a move
/// (`benches/cold/RESULTS.md`).
const ZSTD_WORTH_PER_MILLE: usize = 950;

/// Smallest raw page that decides [`Squeeze`] for the rest of an object: a smaller one (a row
/// group's few rows, a page of nulls) says little about the column; its chunk is compressed
/// and the next chunk tries again.
const DECIDING_PAGE_BYTES: usize = 4096;

/// Whether a column's pages are zstd-compressed or stored raw, decided by the first page of the
/// column in an object of at least [`DECIDING_PAGE_BYTES`]; the caller keeps it from row group
/// to row group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Squeeze {
    /// No page written yet: the next one decides.
    #[default]
    Untried,
    /// Pages are zstd-compressed.
    Zstd,
    /// Pages are stored uncompressed.
    Raw,
}

/// Deltas per block and values per miniblock of DELTA_BINARY_PACKED.
const BLOCK: usize = 128;
const MINIBLOCK: usize = 32;

/// One series' part of a column: its present values, and for an optional column one validity
/// flag per row (as many set as there are values).
pub(crate) struct Part<'a> {
    pub values: &'a [i64],
    pub valid: Option<&'a [bool]>,
}

/// Writes `parts` as the next column chunk of `group`, whose column `descr` is INT64 with a
/// signed order (timestamps, decimals, signed integers), compressing pages with `zstd` or not
/// as `squeeze` says (deciding it, if untried, on the chunk's first page).
pub(crate) fn append(
    group: &mut SerializedRowGroupWriter<'_, Vec<u8>>,
    descr: ColumnDescPtr,
    parts: &[Part<'_>],
    (zstd, squeeze): (&mut zstd::bulk::Compressor<'static>, &mut Squeeze),
) -> Result<()> {
    let optional = descr.max_def_level() > 0;
    let mut pages = Pages {
        chunk: ChunkWriter::new(Physical::INT64),
        rows: 0,
        levels: Vec::new(),
        values: Vec::with_capacity(PAGE_ROWS),
        optional,
        raw: Vec::new(),
        min_max: None,
        zstd,
        squeeze: *squeeze,
        chunk_zstd: None,
    };
    for part in parts {
        match (part.valid, optional) {
            (None, _) => pages.required(part.values)?,
            (Some(valid), true) => pages.optional(part.values, valid)?,
            (Some(_), false) => {
                return Err(ParquetError::General(format!(
                    "column '{}' is required but a series has validity flags",
                    descr.name()
                )));
            }
        }
    }
    if pages.rows > 0 || pages.chunk.rows() == 0 {
        pages.flush()?;
    }
    let statistics = Statistics::new(
        pages.min_max.map(|m| m.0),
        pages.min_max.map(|m| m.1),
        None,
        Some(pages.chunk.nulls() as u64),
        false,
    );
    *squeeze = pages.squeeze;
    let compression = match pages.chunk_zstd {
        Some(false) => Compression::UNCOMPRESSED,
        _ => Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?),
    };
    // What the chunk's pages use: definition levels only in an optional column.
    let mut encodings = vec![Encoding::DELTA_BINARY_PACKED];
    if optional {
        encodings.insert(0, Encoding::RLE);
    }
    pages
        .chunk
        .append_to(group, descr, (compression, encodings), statistics)
}

/// The page being filled and the chunk so far.
struct Pages<'z> {
    chunk: ChunkWriter,
    /// Rows in the page.
    rows: usize,
    /// One definition level per row of the page (optional columns only).
    levels: Vec<bool>,
    /// The page's present values.
    values: Vec<i64>,
    optional: bool,
    /// The page's bytes before compression (kept from page to page).
    raw: Vec<u8>,
    /// The chunk's smallest and largest value so far.
    min_max: Option<(i64, i64)>,
    zstd: &'z mut zstd::bulk::Compressor<'static>,
    /// Whether the column's pages are compressed, for the object (see [`Squeeze`]).
    squeeze: Squeeze,
    /// Whether this chunk's pages are compressed, once its first page is written (every page
    /// of a chunk has the chunk's codec).
    chunk_zstd: Option<bool>,
}

impl Pages<'_> {
    /// Adds rows that all have a value.
    fn required(&mut self, mut values: &[i64]) -> Result<()> {
        while !values.is_empty() {
            let take = values.len().min(PAGE_ROWS - self.rows);
            self.values.extend_from_slice(&values[..take]);
            if self.optional {
                self.levels.resize(self.levels.len() + take, true);
            }
            self.rows += take;
            values = &values[take..];
            if self.rows == PAGE_ROWS {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Adds rows with their validity flags, taking a value for each valid row (in runs up to
    /// the page's end).
    fn optional(&mut self, mut values: &[i64], mut valid: &[bool]) -> Result<()> {
        while !valid.is_empty() {
            let take = valid.len().min(PAGE_ROWS - self.rows);
            let (now, rest) = valid.split_at(take);
            let present = now.iter().filter(|ok| **ok).count();
            if present > values.len() {
                return Err(ParquetError::General("fewer values than valid rows".into()));
            }
            self.levels.extend_from_slice(now);
            self.rows += take;
            self.values.extend_from_slice(&values[..present]);
            (values, valid) = (&values[present..], rest);
            if self.rows == PAGE_ROWS {
                self.flush()?;
            }
        }
        match values.is_empty() {
            true => Ok(()),
            false => Err(ParquetError::General("more values than valid rows".into())),
        }
    }

    /// Writes the page filled so far.
    fn flush(&mut self) -> Result<()> {
        let raw = &mut self.raw;
        raw.clear();
        if self.optional {
            let levels = levels(&self.levels);
            raw.extend_from_slice(&(levels.len() as u32).to_le_bytes());
            raw.extend_from_slice(&levels);
        }
        delta_binary_packed(&self.values, raw);
        let raw_len = raw.len();
        let decided = match self.squeeze {
            Squeeze::Zstd => Some(true),
            Squeeze::Raw => Some(false),
            Squeeze::Untried => None,
        };
        let body = match self.chunk_zstd.or(decided) {
            Some(true) => self.zstd.compress(raw)?,
            Some(false) => std::mem::replace(raw, Vec::with_capacity(raw_len)),
            None => {
                let compressed = self.zstd.compress(raw)?;
                let pays = compressed.len() * 1000 <= raw_len * ZSTD_WORTH_PER_MILLE;
                match (raw_len >= DECIDING_PAGE_BYTES, pays) {
                    (false, _) => compressed,
                    (true, true) => {
                        self.squeeze = Squeeze::Zstd;
                        compressed
                    }
                    (true, false) => {
                        self.squeeze = Squeeze::Raw;
                        std::mem::replace(raw, Vec::with_capacity(raw_len))
                    }
                }
            }
        };
        // A chunk's codec is its first page's.
        if self.chunk_zstd.is_none() {
            self.chunk_zstd = Some(self.squeeze != Squeeze::Raw);
        }
        let min_max = min_max(&self.values);
        if let Some((lo, hi)) = min_max {
            self.min_max = Some(match self.min_max {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
        }
        let summary = PageSummary {
            rows: self.rows,
            nulls: self.rows - self.values.len(),
            min_max: min_max.map(|(lo, hi)| (lo.to_le_bytes().to_vec(), hi.to_le_bytes().to_vec())),
        };
        self.chunk
            .data_page(body, raw_len, Encoding::DELTA_BINARY_PACKED, summary)?;
        self.levels.clear();
        self.rows = 0;
        self.values.clear();
        Ok(())
    }
}

fn min_max(values: &[i64]) -> Option<(i64, i64)> {
    let first = *values.first()?;
    Some(
        values
            .iter()
            .fold((first, first), |(lo, hi), v| (lo.min(*v), hi.max(*v))),
    )
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Definition levels of bit width 1 in the RLE/bit-packed hybrid: one RLE run when every level
/// is the same, else bit-packed groups of 8 (least significant bit first, the last group padded
/// with zeros).
fn levels(levels: &[bool]) -> Vec<u8> {
    let first = levels.first().copied().unwrap_or(true);
    if levels.iter().all(|l| *l == first) {
        return rle(std::iter::once((u32::from(first), levels.len())), 1);
    }
    let mut out = Vec::with_capacity(levels.len() / 8 + 8);
    let groups = levels.len().div_ceil(8);
    varint(((groups as u64) << 1) | 1, &mut out);
    for group in levels.chunks(8) {
        let byte = group
            .iter()
            .enumerate()
            .fold(0u8, |b, (i, l)| b | (u8::from(*l) << i));
        out.push(byte);
    }
    out
}

/// The DELTA_BINARY_PACKED encoding of `values`: the header (block size, miniblocks per block,
/// value count, first value zigzag), then per block of up to 128 deltas the smallest delta
/// (zigzag), the 4 miniblock bit widths, and the miniblocks holding deltas, each 32 values of
/// `delta - smallest` bit-packed (the last one padded with zeros; miniblocks past the last
/// delta have width 0 and no bytes).
pub(crate) fn delta_binary_packed(values: &[i64], out: &mut Vec<u8>) {
    varint(BLOCK as u64, out);
    varint((BLOCK / MINIBLOCK) as u64, out);
    varint(values.len() as u64, out);
    varint(zigzag(values.first().copied().unwrap_or(0)), out);
    if values.len() < 2 {
        return;
    }
    let mut deltas = [0i64; BLOCK];
    for start in (1..values.len()).step_by(BLOCK) {
        let n = (values.len() - start).min(BLOCK);
        for (i, d) in deltas[..n].iter_mut().enumerate() {
            *d = values[start + i].wrapping_sub(values[start + i - 1]);
        }
        let min = deltas[..n].iter().copied().min().unwrap_or(0);
        varint(zigzag(min), out);
        let mut widths = [0u8; BLOCK / MINIBLOCK];
        let mut packed = [[0u64; MINIBLOCK]; BLOCK / MINIBLOCK];
        for (m, chunk) in deltas[..n].chunks(MINIBLOCK).enumerate() {
            let mut any = 0u64;
            for (slot, d) in packed[m].iter_mut().zip(chunk) {
                *slot = d.wrapping_sub(min) as u64;
                any |= *slot;
            }
            widths[m] = (64 - any.leading_zeros()) as u8;
        }
        out.extend_from_slice(&widths);
        for m in 0..n.div_ceil(MINIBLOCK) {
            pack32(&packed[m], u32::from(widths[m]), out);
        }
    }
}

/// 32 values of `width` bits each, least significant bit first (`4 · width` bytes): through a
/// packer made for that width ([`pack_width`]), whose shifts the compiler knows.
fn pack32(values: &[u64; MINIBLOCK], width: u32, out: &mut Vec<u8>) {
    if let Some(pack) = PACKERS.get(width as usize) {
        pack(values, out);
    }
}

/// Packs one miniblock onto the end of a buffer.
type Packer = fn(&[u64; MINIBLOCK], &mut Vec<u8>);

/// [`pack_width`] for each width `0..=64`.
const PACKERS: [Packer; 65] = {
    macro_rules! packers {
        ($($w:literal)*) => { [$(pack_width::<$w>,)*] };
    }
    packers!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30
        31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
        60 61 62 63 64)
};

/// 32 values of `W` bits each (each below `2^W`), least significant bit first: `4 · W` bytes.
fn pack_width<const W: u32>(values: &[u64; MINIBLOCK], out: &mut Vec<u8>) {
    if W == 0 {
        return;
    }
    // 32 · W bits fill `W / 2` words, and half of one more when `W` is odd.
    let mut words = [0u64; MINIBLOCK + 1];
    for (i, &v) in values.iter().enumerate() {
        let bit = i as u32 * W;
        let (word, offset) = ((bit / 64) as usize, bit % 64);
        words[word] |= v << offset;
        if offset + W > 64 {
            words[word + 1] |= v >> (64 - offset);
        }
    }
    let bytes = 4 * W as usize;
    let start = out.len();
    out.reserve(bytes + 8);
    for w in &words[..bytes.div_ceil(8)] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.truncate(start + bytes);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use proptest::prelude::*;

    use super::*;

    /// Writes one INT64 column (`optional` or required) from `parts` (values, validity) and
    /// reads it back through the parquet crate's Arrow reader.
    fn round_trip(optional: bool, parts: &[(Vec<i64>, Option<Vec<bool>>)]) -> Vec<Option<i64>> {
        read(write(optional, parts, &mut Squeeze::default()))
    }

    /// One INT64 column chunk from `parts` in a Parquet file, compressed as `squeeze` says
    /// (and decides, when untried).
    fn write(
        optional: bool,
        parts: &[(Vec<i64>, Option<Vec<bool>>)],
        squeeze: &mut Squeeze,
    ) -> bytes::Bytes {
        let kind = if optional { "optional" } else { "required" };
        let schema =
            Arc::new(parse_message_type(&format!("message m {{ {kind} int64 v; }}")).unwrap());
        let props = Arc::new(WriterProperties::builder().build());
        let mut file = SerializedFileWriter::new(Vec::new(), schema, props).unwrap();
        let descr = file.schema_descr().column(0);
        let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
        let mut group = file.next_row_group().unwrap();
        let parts: Vec<Part<'_>> = parts
            .iter()
            .map(|(v, ok)| Part {
                values: v,
                valid: ok.as_deref(),
            })
            .collect();
        append(&mut group, descr, &parts, (&mut zstd, squeeze)).unwrap();
        group.close().unwrap();
        bytes::Bytes::from(file.into_inner().unwrap())
    }

    /// The column of a file [`write`] made, row by row.
    fn read(bytes: bytes::Bytes) -> Vec<Option<i64>> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        let mut out = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let a = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            out.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))));
        }
        out
    }

    /// The compression of the chunk of a file [`write`] made.
    fn compression(bytes: &bytes::Bytes) -> Compression {
        let reader = parquet::file::reader::SerializedFileReader::new(bytes.clone()).unwrap();
        use parquet::file::reader::FileReader;
        reader.metadata().row_group(0).column(0).compression()
    }

    /// `n` values of xorshift noise (44 bits).
    fn noise(n: usize) -> Vec<i64> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 20) as i64
            })
            .collect()
    }

    #[test]
    fn a_chunk_keeps_zstd_only_when_its_first_page_shrinks() {
        // Deltas of noise do not compress; a repeating pattern of wide deltas does.
        let noise = noise(3 * PAGE_ROWS);
        let pattern: Vec<i64> = (0..3 * PAGE_ROWS as i64)
            .map(|i| (i % 5) * 1_000_003 + (i / 5) * 7)
            .collect();
        for (values, want, name) in [
            (noise, Squeeze::Raw, "noise"),
            (pattern, Squeeze::Zstd, "pattern"),
        ] {
            let parts = vec![(values, None)];
            let mut squeeze = Squeeze::Untried;
            let bytes = write(false, &parts, &mut squeeze);
            assert_eq!(squeeze, want, "{name}");
            let codec = compression(&bytes);
            match want {
                Squeeze::Raw => assert_eq!(codec, Compression::UNCOMPRESSED, "{name}"),
                _ => assert!(matches!(codec, Compression::ZSTD(_)), "{name}: {codec:?}"),
            }
            assert_eq!(read(bytes), expected(&parts), "{name}");
            // A later row group follows the decision without trying again.
            let mut again = want;
            let bytes = write(false, &parts, &mut again);
            assert_eq!(
                (again, compression(&bytes) == codec),
                (want, true),
                "{name}"
            );
        }
    }

    /// What `parts` stand for, row by row.
    fn expected(parts: &[(Vec<i64>, Option<Vec<bool>>)]) -> Vec<Option<i64>> {
        let mut out = Vec::new();
        for (v, ok) in parts {
            match ok {
                None => out.extend(v.iter().map(|x| Some(*x))),
                Some(ok) => {
                    let mut next = v.iter();
                    out.extend(ok.iter().map(|k| k.then(|| *next.next().unwrap())));
                }
            }
        }
        out
    }

    #[test]
    fn extremes_block_edges_and_null_pages_read_back() {
        let extremes = vec![i64::MIN, i64::MAX, 0, -1, i64::MIN, 1, i64::MAX];
        for n in [0usize, 1, 2, 127, 128, 129, 257, PAGE_ROWS, PAGE_ROWS + 1] {
            let regular: Vec<i64> = (0..n as i64)
                .map(|i| 1_700_000_000_000_000_000 + i * 10_000_000_000)
                .collect();
            let parts = vec![(regular, None), (extremes.clone(), None)];
            assert_eq!(
                round_trip(false, &parts),
                expected(&parts),
                "{n} regular values"
            );
        }
        let nulls = vec![false; PAGE_ROWS + 3];
        let mixed: Vec<bool> = (0..3 * PAGE_ROWS).map(|i| i % 7 != 3).collect();
        let present = mixed.iter().filter(|k| **k).count() as i64;
        let parts = vec![
            (vec![], Some(nulls)),
            ((0..present).map(|i| i * i - 5).collect(), Some(mixed)),
            (extremes.clone(), Some(vec![true; extremes.len()])),
        ];
        assert_eq!(round_trip(true, &parts), expected(&parts));
    }

    /// The bit packing of a miniblock by a plain loop over the bits.
    fn pack_reference(values: &[u64; MINIBLOCK], width: u32) -> Vec<u8> {
        let mut out = vec![0u8; 4 * width as usize];
        for (i, v) in values.iter().enumerate() {
            for b in 0..width {
                let bit = i * width as usize + b as usize;
                if v >> b & 1 == 1 {
                    out[bit / 8] |= 1 << (bit % 8);
                }
            }
        }
        out
    }

    #[test]
    fn every_width_packs_like_the_bitwise_reference() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for width in 0..=64u32 {
            for _ in 0..20 {
                let mut values = [0u64; MINIBLOCK];
                for v in &mut values {
                    // xorshift: varied bits, masked to the width.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *v = if width == 64 {
                        x
                    } else {
                        x & ((1u64 << width) - 1)
                    };
                }
                let mut out = vec![0xAA];
                pack32(&values, width, &mut out);
                assert_eq!(out[0], 0xAA, "width {width}: bytes before were kept");
                assert_eq!(out[1..], pack_reference(&values, width), "width {width}");
            }
        }
    }

    proptest! {
        /// Any values with any validity read back as written.
        #[test]
        fn any_values_and_validity_read_back(
            rows in proptest::collection::vec((any::<i64>(), any::<bool>()), 0..600),
            step in -3i64..1_000,
        ) {
            let valid: Vec<bool> = rows.iter().map(|r| r.1).collect();
            let values: Vec<i64> = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.1)
                .map(|(i, r)| if step == 0 { r.0 } else { (i as i64).wrapping_mul(step) })
                .collect();
            let parts = vec![(values, Some(valid))];
            prop_assert_eq!(round_trip(true, &parts), expected(&parts));
        }
    }
}
