//! INT64 column chunks written straight as Parquet: a cold object's `time`, its DECIMAL float
//! fields and its integer fields, from the series' values without the parquet crate's generic
//! column writer (after the string columns, that writer was the largest cost of a move:
//! `benches/cold/RESULTS.md`). Data pages (v1) of at most [`PAGE_ROWS`] rows: definition levels
//! (optional columns) as one RLE run or bit-packed, values DELTA_BINARY_PACKED as the Parquet
//! spec lays it out (blocks of 128 deltas in 4 miniblocks of 32, each bit-packed at its own
//! width above the block's smallest delta), zstd-compressed where it pays ([`Squeeze`]). Signed
//! min/max statistics for the chunk and every page, and the page index, through
//! [`super::chunk`]. Values and levels are encoded as they arrive, in one pass over the
//! caller's slices ([`Deltas`], [`Levels`]), instead of being copied into a page first and
//! passed over again for the extremes.

use parquet::basic::{Compression, Encoding, Type as Physical, ZstdLevel};
use parquet::errors::{ParquetError, Result};
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedRowGroupWriter;
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{ChunkWriter, PageSummary, rle, varint};
use crate::codec;

/// Most rows per data page.
pub(crate) const PAGE_ROWS: usize = 20_480;

/// Zstd level of the pages: 1, the fastest; on delta-packed pages level 3 saves under 1 % of
/// the bytes and costs a tenth of a move's time (`benches/cold/RESULTS.md`).
pub(crate) const ZSTD_LEVEL: i32 = 1;

/// A column chunk keeps zstd when its first pages compress to at most this many thousandths
/// of their raw size. Delta-packed random walks (positions, headings, loads) are near their
/// entropy already and zstd takes 0–4 % off them; compressing them cost about a tenth of a move
/// (`benches/cold/RESULTS.md`). Pages rewritten from segment chunks hold one series each
/// (1–2 KB for a day of minutes), and zstd's fixed cost per page (its Huffman tables) made
/// a 7–13 % saving on two such columns cost a tenth of a move again: a column must shrink by
/// 15 %.
const ZSTD_WORTH_PER_MILLE: usize = 850;

/// Raw bytes of a column's first pages that decide [`Squeeze`] for the rest of an object: fewer
/// (a row group's few rows, a page of nulls) say little about the column; until then pages are
/// compressed. A chunk's pages all share its first page's codec.
const DECIDING_PAGE_BYTES: usize = 4096;

/// Whether a column's pages are zstd-compressed or stored raw, decided by the column's first
/// pages in an object, once they hold at least [`DECIDING_PAGE_BYTES`]; the caller keeps it
/// from row group to row group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Squeeze {
    /// Not decided yet: the pages tried so far held `raw` bytes, `zstd` once compressed.
    Untried { raw: usize, zstd: usize },
    /// Pages are zstd-compressed.
    Zstd,
    /// Pages are stored uncompressed.
    Raw,
}

impl Default for Squeeze {
    fn default() -> Squeeze {
        Squeeze::Untried { raw: 0, zstd: 0 }
    }
}

/// Fewest values worth a page of their own ([`Encoded`] parts): a smaller part costs more in its
/// page header and index entries than its values cost to encode on the page being filled, so
/// writers hand it over decoded.
pub(crate) const OWN_PAGE_VALUES: usize = 256;

/// Most deltas in one block of a page of regular values ([`regular`]).
const REGULAR_BLOCK: usize = 8192;

/// Deltas per block and values per miniblock of DELTA_BINARY_PACKED.
const BLOCK: usize = 128;
const MINIBLOCK: usize = 32;

/// One series' part of a column: its present values, and for an optional column one validity
/// flag per row (as many set as there are values). The values may come still encoded
/// (`encoded`; `values` is then empty): such a part is a page of its own.
pub(crate) struct Part<'a> {
    pub values: &'a [i64],
    pub valid: Option<&'a [bool]>,
    pub encoded: Option<Encoded<'a>>,
}

/// Values given in a form their pages are written from without a pass over each value.
pub(crate) struct Encoded<'a> {
    pub form: Form<'a>,
    /// How many values.
    pub count: usize,
    /// Their smallest and largest (from the segment's statistics, or the progression's ends).
    pub min_max: (i64, i64),
}

/// The forms of [`Encoded`] values.
pub(crate) enum Form<'a> {
    /// Strata's delta-packed integer codec ([`codec::delta_blocks`] walks it): its blocks of 128
    /// deltas are Parquet's blocks of 4 miniblocks of 32 at one width, bit for bit, so most are
    /// copied instead of decoded and packed again.
    DeltaPacked(&'a [u8]),
    /// `first + i · step`: timestamps at a regular interval, every delta `step`.
    Regular { first: i64, step: i64 },
}

impl<'a> Encoded<'a> {
    /// `count` values `first + i · step`, when none of them overflows.
    pub fn regular(first: i64, step: i64, count: usize) -> Option<Encoded<'a>> {
        let span = step.checked_mul(i64::try_from(count.checked_sub(1)?).ok()?)?;
        let last = first.checked_add(span)?;
        Some(Encoded {
            form: Form::Regular { first, step },
            count,
            min_max: (first.min(last), first.max(last)),
        })
    }
}

impl<'a> Part<'a> {
    /// A part of decoded values.
    pub fn values(values: &'a [i64], valid: Option<&'a [bool]>) -> Part<'a> {
        Part {
            values,
            valid,
            encoded: None,
        }
    }
}

/// Writes `parts` as the next column chunk of `group`, whose column `descr` is INT64 with a
/// signed order (timestamps, decimals, signed integers), compressing pages with `zstd` or not
/// as `squeeze` says (deciding it, if untried, on the chunk's first page). Returns the chunk's
/// smallest and largest value (none without values).
pub(crate) fn append(
    group: &mut SerializedRowGroupWriter<'_, Vec<u8>>,
    descr: ColumnDescPtr,
    parts: &[Part<'_>],
    (zstd, squeeze): (&mut zstd::bulk::Compressor<'static>, &mut Squeeze),
) -> Result<Option<(i64, i64)>> {
    let optional = descr.max_def_level() > 0;
    let mut pages = Pages {
        chunk: ChunkWriter::with_capacity(Physical::INT64, expected_bytes(parts)),
        rows: 0,
        levels: Levels::default(),
        values: Deltas::new(),
        optional,
        raw: Vec::new(),
        min_max: None,
        zstd,
        squeeze: *squeeze,
        chunk_zstd: None,
    };
    for part in parts {
        if part.valid.is_some() && !optional {
            return Err(ParquetError::General(format!(
                "column '{}' is required but a series has validity flags",
                descr.name()
            )));
        }
        if let Some(encoded) = &part.encoded {
            pages.encoded(encoded, part.valid)?;
            continue;
        }
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
    let min_max = pages.min_max;
    pages
        .chunk
        .append_to(group, descr, (compression, encodings), statistics)?;
    Ok(min_max)
}

/// About the bytes a chunk of `parts` takes, to reserve: a delta-packed part about its payload,
/// a regular one a few bytes per block, decoded values a byte each, and a page header each.
fn expected_bytes(parts: &[Part<'_>]) -> usize {
    let part = |p: &Part<'_>| {
        let values = match &p.encoded {
            Some(Encoded {
                form: Form::DeltaPacked(payload),
                ..
            }) => payload.len() + payload.len() / 16,
            Some(e) => e.count / 16,
            None => p.values.len(),
        };
        values + p.valid.map_or(0, |v| v.len() / 8) + 64
    };
    parts.iter().map(part).sum()
}

/// The page being filled and the chunk so far.
struct Pages<'z> {
    chunk: ChunkWriter,
    /// Rows in the page.
    rows: usize,
    /// The page's definition levels (optional columns only).
    levels: Levels,
    /// The page's present values, delta-packed as they come.
    values: Deltas,
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
            self.values.push(&values[..take]);
            if self.optional {
                self.levels.push_ones(take);
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
            let present = self.levels.push(now);
            if present > values.len() {
                return Err(ParquetError::General("fewer values than valid rows".into()));
            }
            self.rows += take;
            self.values.push(&values[..present]);
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

    /// Writes an encoded part as a page of its own (after the page filled so far): its
    /// definition levels, then its values in DELTA_BINARY_PACKED, block by block from the
    /// payload's ([`transcode`]).
    fn encoded(&mut self, e: &Encoded<'_>, valid: Option<&[bool]>) -> Result<()> {
        if e.count == 0 {
            // No values: its rows (if any, all null) join the page being filled; a page of no
            // rows would end a reader's column early.
            return match valid {
                Some(flags) => self.optional(&[], flags),
                None => Ok(()),
            };
        }
        if self.rows > 0 {
            self.flush()?;
        }
        self.raw.clear();
        let rows = match valid {
            // Every row has a value (a segment chunk without a presence bitmap): one run.
            Some(flags) if flags.len() == e.count && !flags.contains(&false) => {
                self.levels.push_ones(e.count);
                e.count
            }
            Some(flags) => {
                if self.levels.push(flags) != e.count {
                    self.levels.clear();
                    return Err(ParquetError::General(
                        "an encoded part's values are not its valid rows".into(),
                    ));
                }
                flags.len()
            }
            None => {
                if self.optional {
                    self.levels.push_ones(e.count);
                }
                e.count
            }
        };
        if self.optional {
            self.levels.encode(&mut self.raw);
        }
        transcode(e, &mut self.raw)?;
        self.rows = rows;
        let min_max = (e.count > 0).then_some(e.min_max);
        self.write_page(e.count, min_max)
    }

    /// Writes the page filled so far.
    fn flush(&mut self) -> Result<()> {
        self.raw.clear();
        if self.optional {
            self.levels.encode(&mut self.raw);
        }
        let (present, min_max) = self.values.finish(&mut self.raw);
        self.write_page(present, min_max)
    }

    /// Writes the page in `raw` (of `rows` rows, `present` of them with a value, whose smallest
    /// and largest are `min_max`), compressed as the chunk or the column says, or deciding it.
    fn write_page(&mut self, present: usize, min_max: Option<(i64, i64)>) -> Result<()> {
        let raw_len = self.raw.len();
        let compress = match (self.chunk_zstd, self.squeeze) {
            (Some(chunk), _) => chunk,
            (None, column) => column != Squeeze::Raw,
        };
        let body = match compress {
            false => std::mem::replace(&mut self.raw, Vec::with_capacity(raw_len)),
            true => {
                let compressed = self.zstd.compress(&self.raw)?;
                if let Squeeze::Untried { raw, zstd } = self.squeeze {
                    let (raw, zstd) = (raw + raw_len, zstd + compressed.len());
                    let pays = zstd * 1000 <= raw * ZSTD_WORTH_PER_MILLE;
                    self.squeeze = match (raw >= DECIDING_PAGE_BYTES, pays) {
                        (false, _) => Squeeze::Untried { raw, zstd },
                        (true, true) => Squeeze::Zstd,
                        (true, false) => Squeeze::Raw,
                    };
                }
                match (self.chunk_zstd, self.squeeze) {
                    // The chunk's first page, and the column turned out not to pay.
                    (None, Squeeze::Raw) => {
                        std::mem::replace(&mut self.raw, Vec::with_capacity(raw_len))
                    }
                    _ => compressed,
                }
            }
        };
        // A chunk's codec is its first page's.
        if self.chunk_zstd.is_none() {
            self.chunk_zstd = Some(self.squeeze != Squeeze::Raw);
        }
        if let Some((lo, hi)) = min_max {
            self.min_max = Some(match self.min_max {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
        }
        let summary = PageSummary {
            rows: self.rows,
            nulls: self.rows - present,
            min_max: min_max.map(|(lo, hi)| (lo.to_le_bytes().to_vec(), hi.to_le_bytes().to_vec())),
        };
        self.chunk
            .data_page(body, raw_len, Encoding::DELTA_BINARY_PACKED, summary)?;
        self.levels.clear();
        self.rows = 0;
        Ok(())
    }
}

/// A page's definition levels (bit width 1), packed as rows arrive: row `i`'s level is bit
/// `i % 8` of byte `i / 8`, which is the RLE/bit-packed hybrid's bit-packed layout.
#[derive(Default)]
struct Levels {
    bytes: Vec<u8>,
    /// Levels so far.
    len: usize,
    /// How many of them are 1 (a value is present).
    ones: usize,
}

impl Levels {
    /// Adds `n` rows with a value.
    fn push_ones(&mut self, mut n: usize) {
        self.ones += n;
        while n > 0 && !self.len.is_multiple_of(8) {
            if let Some(last) = self.bytes.last_mut() {
                *last |= 1 << (self.len % 8);
            }
            self.len += 1;
            n -= 1;
        }
        let full = n / 8;
        self.bytes.resize(self.bytes.len() + full, 0xFF);
        self.len += 8 * full;
        let rest = n % 8;
        if rest > 0 {
            self.bytes.push((1u8 << rest) - 1);
            self.len += rest;
        }
    }

    /// Adds one row per flag (set: a value is present); returns how many are set.
    fn push(&mut self, mut flags: &[bool]) -> usize {
        let before = self.ones;
        while !self.len.is_multiple_of(8) && !flags.is_empty() {
            self.push_one(flags[0]);
            flags = &flags[1..];
        }
        let mut groups = flags.chunks_exact(8);
        self.bytes.reserve(flags.len() / 8 + 1);
        for group in &mut groups {
            let byte = pack8(group);
            self.ones += byte.count_ones() as usize;
            self.bytes.push(byte);
        }
        self.len += 8 * (flags.len() / 8);
        for &flag in groups.remainder() {
            self.push_one(flag);
        }
        self.ones - before
    }

    /// Adds one row.
    fn push_one(&mut self, flag: bool) {
        let bit = self.len % 8;
        if bit == 0 {
            self.bytes.push(0);
        }
        if let Some(last) = self.bytes.last_mut() {
            *last |= u8::from(flag) << bit;
        }
        self.ones += usize::from(flag);
        self.len += 1;
    }

    /// The levels as a data page v1 holds them: their byte length (u32, little endian), then
    /// one RLE run when all are equal, else one bit-packed run of groups of 8 (the last one
    /// padded with zeros).
    fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        if self.ones == self.len || self.ones == 0 {
            let value = u32::from(self.ones == self.len);
            out.extend_from_slice(&rle(std::iter::once((value, self.len)), 1));
        } else {
            varint(((self.bytes.len() as u64) << 1) | 1, out);
            out.extend_from_slice(&self.bytes);
        }
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    fn clear(&mut self) {
        self.bytes.clear();
        (self.len, self.ones) = (0, 0);
    }
}

/// Eight flags as the bits of a byte, the first in the least significant bit: their bytes
/// (each 0 or 1) read as one little-endian word, and the multiplication moves byte `i`'s bit to
/// bit 56 + i (every other product lands elsewhere, below bit 56 without carries or above 63).
fn pack8(flags: &[bool]) -> u8 {
    let mut bytes = [0u8; 8];
    for (b, f) in bytes.iter_mut().zip(flags) {
        *b = u8::from(*f);
    }
    (u64::from_le_bytes(bytes).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// DELTA_BINARY_PACKED of a page's values as they arrive: a block of 128 deltas is packed as
/// soon as it is full, so values are read once, from where the caller holds them. [`finish`]
/// writes the header (block size, miniblocks per block, value count, first value zigzag) and
/// then the blocks: per block of up to 128 deltas the smallest delta (zigzag), the 4 miniblock
/// bit widths, and the miniblocks holding deltas, each 32 values of `delta - smallest`
/// bit-packed (the last one padded with zeros; miniblocks past the last delta have width 0 and
/// no bytes).
///
/// [`finish`]: Deltas::finish
struct Deltas {
    /// Values so far.
    count: usize,
    first: i64,
    last: i64,
    lo: i64,
    hi: i64,
    /// Deltas of the block being filled.
    deltas: [i64; BLOCK],
    pending: usize,
    /// The full blocks, packed.
    blocks: Vec<u8>,
}

impl Deltas {
    fn new() -> Deltas {
        Deltas {
            count: 0,
            first: 0,
            last: 0,
            lo: 0,
            hi: 0,
            deltas: [0; BLOCK],
            pending: 0,
            blocks: Vec::new(),
        }
    }

    /// Adds values after those so far.
    fn push(&mut self, values: &[i64]) {
        let Some((&head, mut rest)) = values.split_first() else {
            return;
        };
        if self.count == 0 {
            (self.first, self.last, self.lo, self.hi) = (head, head, head, head);
            self.count = 1;
        } else {
            rest = values;
        }
        self.count += rest.len();
        while !rest.is_empty() {
            let take = rest.len().min(BLOCK - self.pending);
            let (now, later) = rest.split_at(take);
            let deltas = &mut self.deltas[self.pending..self.pending + take];
            deltas[0] = now[0].wrapping_sub(self.last);
            for (d, pair) in deltas[1..].iter_mut().zip(now.windows(2)) {
                *d = pair[1].wrapping_sub(pair[0]);
            }
            let (lo, hi) = now
                .iter()
                .fold((self.lo, self.hi), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            (self.last, self.lo, self.hi) = (now[take - 1], lo, hi);
            self.pending += take;
            if self.pending == BLOCK {
                self.block();
            }
            rest = later;
        }
    }

    /// Packs the pending deltas as one block.
    fn block(&mut self) {
        let deltas = &self.deltas[..self.pending];
        let min = deltas.iter().copied().min().unwrap_or(0);
        varint(zigzag(min), &mut self.blocks);
        let widths_at = self.blocks.len();
        self.blocks.extend_from_slice(&[0; BLOCK / MINIBLOCK]);
        for (m, chunk) in deltas.chunks(MINIBLOCK).enumerate() {
            let mut mini = [0u64; MINIBLOCK];
            let mut any = 0u64;
            for (slot, d) in mini.iter_mut().zip(chunk) {
                *slot = d.wrapping_sub(min) as u64;
                any |= *slot;
            }
            let width = 64 - any.leading_zeros();
            self.blocks[widths_at + m] = width as u8;
            pack32(&mini, width, &mut self.blocks);
        }
        self.pending = 0;
    }

    /// Appends the encoding of the values so far to `out` and starts over; returns how many
    /// values there were and their smallest and largest.
    fn finish(&mut self, out: &mut Vec<u8>) -> (usize, Option<(i64, i64)>) {
        if self.pending > 0 {
            self.block();
        }
        varint(BLOCK as u64, out);
        varint((BLOCK / MINIBLOCK) as u64, out);
        varint(self.count as u64, out);
        varint(zigzag(self.first), out);
        out.extend_from_slice(&self.blocks);
        let done = (self.count, (self.count > 0).then_some((self.lo, self.hi)));
        self.blocks.clear();
        (self.count, self.first) = (0, 0);
        done
    }
}

/// Rewrites an encoded part's values as DELTA_BINARY_PACKED onto `out`: the header, then per
/// block of the payload one Parquet block. A block stored at one width without exceptions is
/// copied (its 128 offsets packed LSB first are the 4 miniblocks of 32 at that width, bit for
/// bit; a last, partial block is padded to whole miniblocks); any other block's offsets, as
/// [`codec::delta_blocks`] unpacks them, are packed again per miniblock.
fn transcode(e: &Encoded<'_>, out: &mut Vec<u8>) -> Result<()> {
    let payload = match e.form {
        Form::DeltaPacked(payload) => payload,
        Form::Regular { first, step } => {
            regular(first, step, e.count, out);
            return Ok(());
        }
    };
    let first = match e.count {
        0 => Some(0),
        _ => codec::delta_first(payload),
    };
    let unreadable =
        |e: String| ParquetError::General(format!("an encoded part cannot be read: {e}"));
    let first = first.ok_or_else(|| unreadable("no first value".into()))?;
    varint(BLOCK as u64, out);
    varint((BLOCK / MINIBLOCK) as u64, out);
    varint(e.count as u64, out);
    varint(zigzag(first), out);
    out.reserve(payload.len() + payload.len() / 8);
    let walked = codec::delta_blocks(payload, e.count, |block| match block {
        codec::DeltaBlock::Packed {
            min,
            len,
            width,
            bytes,
        } => {
            varint(zigzag(min), out);
            let minis = len.div_ceil(MINIBLOCK);
            out.extend((0..BLOCK / MINIBLOCK).map(|m| if m < minis { width as u8 } else { 0 }));
            out.extend_from_slice(bytes);
            let padded = minis * 4 * width as usize;
            out.resize(out.len() + padded.saturating_sub(bytes.len()), 0);
        }
        codec::DeltaBlock::Offsets { min, offsets } => {
            varint(zigzag(min), out);
            let widths_at = out.len();
            out.extend_from_slice(&[0; BLOCK / MINIBLOCK]);
            for (m, chunk) in offsets.chunks(MINIBLOCK).enumerate() {
                let mut mini = [0u64; MINIBLOCK];
                mini[..chunk.len()].copy_from_slice(chunk);
                let width = 64 - mini.iter().fold(0, |any, o| any | o).leading_zeros();
                out[widths_at + m] = width as u8;
                pack32(&mini, width, out);
            }
        }
    })
    .map_err(|e| unreadable(e.to_string()))?;
    match walked.unwrap_or(0) == first {
        true => Ok(()),
        false => Err(unreadable("its head and its walk disagree".into())),
    }
}

/// `count` values `first + i · step` as DELTA_BINARY_PACKED onto `out`, in blocks of one
/// miniblock of width 0 (every delta is the block's smallest, `step`), each as long as the
/// deltas need up to [`REGULAR_BLOCK`]: a day of minutes takes one block, 15 bytes with the
/// header. (The format allows any block size that is a multiple of 128 with miniblocks of a
/// multiple of 32; DuckDB writes blocks of 2,048.)
fn regular(first: i64, step: i64, count: usize, out: &mut Vec<u8>) {
    let deltas = count.saturating_sub(1);
    let block = (deltas.div_ceil(BLOCK).max(1) * BLOCK).min(REGULAR_BLOCK);
    varint(block as u64, out);
    varint(1, out);
    varint(count as u64, out);
    varint(zigzag(first), out);
    for _ in 0..deltas.div_ceil(block) {
        varint(zigzag(step), out);
        out.push(0);
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
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
        let parts: Vec<Part<'_>> = parts
            .iter()
            .map(|(v, ok)| Part::values(v, ok.as_deref()))
            .collect();
        write_parts(optional, &parts, squeeze).unwrap()
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
            let mut squeeze = Squeeze::default();
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

    /// A part of the encoded-part tests: values, validity flags, whether given encoded.
    type EncodedCase = (Vec<i64>, Option<Vec<bool>>, bool);

    /// One INT64 column chunk from `parts` whose values are given in Strata's delta-packed
    /// codec where `encoded` says so, in a Parquet file.
    fn write_encoded(
        optional: bool,
        parts: &[EncodedCase],
    ) -> parquet::errors::Result<bytes::Bytes> {
        let payloads: Vec<Vec<u8>> = parts
            .iter()
            .map(|(v, _, _)| codec::encode_delta_packed(v))
            .collect();
        let parts: Vec<Part<'_>> = parts
            .iter()
            .zip(&payloads)
            .map(|((v, ok, encoded), payload)| match encoded {
                false => Part::values(v, ok.as_deref()),
                true => Part {
                    values: &[],
                    valid: ok.as_deref(),
                    encoded: Some(Encoded {
                        form: Form::DeltaPacked(payload),
                        count: v.len(),
                        min_max: (
                            v.iter().copied().min().unwrap_or(0),
                            v.iter().copied().max().unwrap_or(0),
                        ),
                    }),
                },
            })
            .collect();
        write_parts(optional, &parts, &mut Squeeze::default())
    }

    /// One INT64 column chunk from `parts` in a Parquet file.
    fn write_parts(
        optional: bool,
        parts: &[Part<'_>],
        squeeze: &mut Squeeze,
    ) -> parquet::errors::Result<bytes::Bytes> {
        let kind = if optional { "optional" } else { "required" };
        let schema =
            Arc::new(parse_message_type(&format!("message m {{ {kind} int64 v; }}")).unwrap());
        let props = Arc::new(WriterProperties::builder().build());
        let mut file = SerializedFileWriter::new(Vec::new(), schema, props).unwrap();
        let descr = file.schema_descr().column(0);
        let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
        let mut group = file.next_row_group().unwrap();
        append(&mut group, descr, parts, (&mut zstd, squeeze))?;
        group.close().unwrap();
        Ok(bytes::Bytes::from(file.into_inner().unwrap()))
    }

    /// The shapes of the encoded-part tests: walks of several step sizes, sparse spikes (blocks
    /// with exceptions), multiples of 30 (a common divisor), extremes that wrap.
    fn shaped(len: usize, shape: u8, seed: u64) -> Vec<i64> {
        let mut x = seed | 1;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m) as i64
        };
        let mut v = 0i64;
        (0..len)
            .map(|i| {
                v = match shape {
                    0 => v + next(2_001) - 1_000,
                    1 => v + 30 * (next(21) - 10),
                    2 if i % 41 == 0 => v + next(1 << 40),
                    2 => v + next(5),
                    3 => [i64::MIN, i64::MAX, 0, -1][i % 4],
                    _ => 1_700_000_000 + i as i64 * 60,
                };
                v
            })
            .collect()
    }

    proptest! {
        /// Parts handed over still encoded read back as the values they encode, beside parts
        /// of decoded values, with and without validity flags.
        #[test]
        fn encoded_parts_read_back_as_their_values(
            lens in proptest::collection::vec(0usize..1_200, 1..5),
            shape in 0u8..5,
            seed in any::<u64>(),
            optional in any::<bool>(),
            gaps in any::<bool>(),
        ) {
            let parts: Vec<EncodedCase> = lens
                .iter()
                .enumerate()
                .map(|(i, &len)| {
                    let values = shaped(len, shape, seed.wrapping_add(i as u64));
                    let valid = optional.then(|| {
                        let mut flags = Vec::new();
                        for r in 0..len {
                            if gaps && (r + i) % 7 == 3 {
                                flags.push(false);
                            }
                            flags.push(true);
                        }
                        flags
                    });
                    (values, valid, i % 3 != 1)
                })
                .collect();
            let plain: Vec<(Vec<i64>, Option<Vec<bool>>)> =
                parts.iter().map(|(v, ok, _)| (v.clone(), ok.clone())).collect();
            let bytes = write_encoded(optional, &parts).unwrap();
            prop_assert_eq!(read(bytes), expected(&plain));
        }
    }

    #[test]
    fn regular_parts_read_back_at_block_edges_and_beside_other_parts() {
        for n in [
            1usize, 2, 127, 128, 129, 130, 257, 8_192, 8_193, 8_194, 20_000,
        ] {
            for step in [60_000_000_000i64, -7, 0] {
                let first = 1_796_000_000_000_000_000;
                let regular = Encoded::regular(first, step, n).unwrap();
                let want: Vec<i64> = (0..n as i64).map(|i| first + i * step).collect();
                let ends = (*want.iter().min().unwrap(), *want.iter().max().unwrap());
                assert_eq!(regular.min_max, ends);
                let plain = vec![5, -3, 8];
                let parts = [
                    Part::values(&plain, None),
                    Part {
                        values: &[],
                        valid: None,
                        encoded: Some(regular),
                    },
                    Part::values(&plain, None),
                ];
                let got = read(write_parts(false, &parts, &mut Squeeze::default()).unwrap());
                let mut expect: Vec<Option<i64>> = plain.iter().map(|v| Some(*v)).collect();
                expect.extend(want.iter().map(|v| Some(*v)));
                expect.extend(plain.iter().map(|v| Some(*v)));
                assert_eq!(got, expect, "{n} values, step {step}");
            }
        }
        assert!(Encoded::regular(0, 1, 0).is_none(), "no values");
        assert!(Encoded::regular(i64::MAX - 5, 1, 10).is_none(), "overflow");
    }

    #[test]
    fn a_damaged_encoded_part_is_an_error() {
        let values = shaped(500, 0, 7);
        let mut payload = codec::encode_delta_packed(&values);
        payload.truncate(payload.len() - 3);
        let part = Part {
            values: &[],
            valid: None,
            encoded: Some(Encoded {
                form: Form::DeltaPacked(&payload),
                count: values.len(),
                min_max: (0, 0),
            }),
        };
        let err = write_parts(false, &[part], &mut Squeeze::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("an encoded part cannot be read"), "{err}");
    }

    #[test]
    fn eight_flags_pack_into_one_byte_first_flag_lowest() {
        for byte in 0..=255u8 {
            let flags: Vec<bool> = (0..8).map(|i| byte >> i & 1 == 1).collect();
            assert_eq!(pack8(&flags), byte);
        }
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
        /// Series with and without validity flags, of any lengths, mixed in one optional
        /// column (levels packed across byte, block and page edges) read back as written.
        #[test]
        fn dense_and_sparse_series_mix_in_one_column(
            series in proptest::collection::vec((0usize..3_000, 0u8..3, any::<u64>()), 1..12),
        ) {
            let mut parts = Vec::new();
            for (i, (len, kind, seed)) in series.into_iter().enumerate() {
                let mut x = seed | 1;
                let mut next = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let valid: Vec<bool> = (0..len).map(|_| kind != 1 || next() % 3 != 0).collect();
                let present = valid.iter().filter(|v| **v).count();
                let values: Vec<i64> = (0..present as i64)
                    .map(|j| match kind {
                        2 => (next() >> 1) as i64 - (1 << 62),
                        _ => 1_000 * i as i64 + j * 7 - (next() % 5) as i64,
                    })
                    .collect();
                let flags = if kind == 0 { None } else { Some(valid) };
                parts.push((values, flags));
            }
            prop_assert_eq!(round_trip(true, &parts), expected(&parts));
        }

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
