//! A block decoded for aggregation rather than for rows: its times and, per wanted float field,
//! the present values packed together with the chunk's presence bitmap left as bits. Nothing is
//! spread to one slot per row and no row structure is built; the buffers are reused from block
//! to block. A reader that folds runs of rows (for example, the rows of one time bucket) counts
//! the bitmap's bits over the run to find the run's values, a contiguous slice.

use super::{Segment, decode_time_chunk, split_presence};
use crate::codec::{self, Codec};
use crate::error::Result;
use crate::{FieldType, SeriesId};

/// One decoded block (see the module doc). Reuse one across blocks: decoding clears it.
#[derive(Debug, Default)]
pub struct DenseBlock {
    /// The block's times, strictly increasing.
    pub times: Vec<i64>,
    /// Per wanted field, in the order asked for.
    pub fields: Vec<DenseFloats>,
}

/// The present values of one float field of a [`DenseBlock`].
#[derive(Debug, Default)]
pub struct DenseFloats {
    /// How many values are present.
    pub count: usize,
    /// Present values in time order, unless `scale` is set.
    pub values: Vec<f64>,
    /// `Some(k)` when the chunk holds decimals without exceptions: the present values are then
    /// `ints[i] / 10^k` (exactly as [`codec::decimal_value`] turns them into floats), handed
    /// over as the integers; `values` is not filled.
    pub scale: Option<u8>,
    /// The integers of a decimal chunk (see `scale`).
    pub ints: Vec<i64>,
    /// Which rows hold them: `None` when every row does (or, with no values, none does); else
    /// one bit per row, LSB first.
    pub bitmap: Option<Vec<u8>>,
}

impl DenseFloats {
    /// How many of rows `start..end` hold a value.
    pub fn values_between(&self, start: usize, end: usize) -> usize {
        match &self.bitmap {
            None if self.count == 0 => 0,
            None => end - start,
            Some(bits) => count_range(bits, start, end),
        }
    }
}

/// Set bits among bits `start..end` of `bits` (LSB first).
fn count_range(bits: &[u8], start: usize, end: usize) -> usize {
    if start >= end {
        return 0;
    }
    let (first, last) = (start / 8, end / 8);
    let head = u32::from(bits[first] >> (start % 8));
    if first == last {
        let width = end - start;
        return (head & ((1u32 << width) - 1)).count_ones() as usize;
    }
    head.count_ones() as usize + count_bits(&bits[first + 1..], end - 8 * (first + 1))
}

/// Set bits among the first `n` bits of `bits` (LSB first).
pub(super) fn count_bits(bits: &[u8], n: usize) -> usize {
    let (whole, rest) = (n / 8, n % 8);
    let (words, tail) = bits[..whole].as_chunks::<8>();
    let mut count: usize = words
        .iter()
        .map(|w| u64::from_le_bytes(*w).count_ones() as usize)
        .sum();
    count += tail.iter().map(|b| b.count_ones() as usize).sum::<usize>();
    if rest > 0 {
        count += (bits[whole] & ((1u8 << rest) - 1)).count_ones() as usize;
    }
    count
}

impl Segment {
    /// Decodes block `bi` of `series` into `out`: its times and, for each of `local` (this
    /// segment's ids of the wanted fields, from [`Segment::local_fields`]; `None`: the segment
    /// lacks it, so no values), the field's present values. `Ok(false)`, leaving `out` unusable,
    /// when a wanted field is not a float field (the caller decodes rows instead).
    pub fn decode_dense(
        &self,
        series: SeriesId,
        bi: usize,
        local: &[Option<u16>],
        out: &mut DenseBlock,
    ) -> Result<bool> {
        if local
            .iter()
            .flatten()
            .any(|&fid| self.fields[usize::from(fid)].1 != FieldType::Float)
        {
            return Ok(false);
        }
        let block = self.block(series, bi)?;
        let n = block.rows as usize;
        let bytes = self.chunk(&block.time, series, bi, "time")?;
        out.times.clear();
        decode_time_chunk(bytes, n, &mut out.times)
            .map_err(|e| self.decode_error(series, bi, "time", e))?;
        out.fields.resize_with(local.len(), DenseFloats::default);
        for (field, want) in out.fields.iter_mut().zip(local) {
            field.values.clear();
            field.ints.clear();
            (field.count, field.scale) = (0, None);
            let chunk = want.and_then(|fid| self.index.field(block, fid).map(|c| (fid, c)));
            let Some((fid, fc)) = chunk else {
                field.bitmap = None;
                continue;
            };
            let name = &self.fields[usize::from(fid)].0;
            let bytes = self.chunk(&fc.chunk, series, bi, name)?;
            decode_dense_floats(bytes, n, fc.stats.count as usize, field)
                .map_err(|e| self.decode_error(series, bi, name, e))?;
        }
        Ok(true)
    }
}

/// Decodes a float field chunk of `rows` rows holding `count` values into `out`.
fn decode_dense_floats(
    bytes: &[u8],
    rows: usize,
    count: usize,
    out: &mut DenseFloats,
) -> std::result::Result<(), String> {
    let (bits, rest) = split_presence(bytes, rows, count)?;
    match bits {
        None => out.bitmap = None,
        Some(bits) => {
            let bitmap = out.bitmap.get_or_insert_with(Vec::new);
            bitmap.clear();
            bitmap.extend_from_slice(bits);
        }
    }
    let (&codec, payload) = rest.split_first().ok_or("missing codec byte")?;
    let codec = Codec::from_u8(codec).map_err(|e| e.to_string())?;
    out.count = count;
    if codec::decimal_scale(codec, payload).is_some() {
        // Integers are summed and compared without turning each into a float first.
        out.scale = Some(
            codec::decode_decimal_ints(payload, count, &mut out.ints).map_err(|e| e.to_string())?,
        );
        return Ok(());
    }
    codec::decode_floats(codec, payload, count, &mut out.values).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::{count_bits, count_range};

    #[test]
    fn count_range_counts_any_range() {
        let bits = [
            0b1011_0101u8,
            0b0000_0011,
            0xff,
            0x5a,
            0,
            0x81,
            0xff,
            0x7e,
            0x33,
            0x01,
        ];
        let bit = |i: usize| bits[i / 8] & (1 << (i % 8)) != 0;
        for start in 0..=80 {
            for end in start..=80 {
                let want = (start..end).filter(|&i| bit(i)).count();
                assert_eq!(count_range(&bits, start, end), want, "{start}..{end}");
            }
        }
    }

    #[test]
    fn count_bits_counts_a_prefix() {
        let bits = [0b1011_0101u8, 0b0000_0011, 0xff];
        let want = |n: usize| {
            (0..n)
                .filter(|&i| bits[i / 8] & (1 << (i % 8)) != 0)
                .count()
        };
        for n in 0..=24 {
            assert_eq!(count_bits(&bits, n), want(n), "{n}");
        }
    }
}
