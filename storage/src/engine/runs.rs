//! What an aggregating read folds instead of rows: [`BlockStats`] (a block's, or a run's,
//! statistics per field) and [`TimeGroups`] (how the reader groups rows by time). Blocks that
//! span several groups: a block decoded for aggregation ([`DenseBlock`]) is cut at the read's
//! range and at each group end, and each run of rows in one group becomes the statistics its
//! fold needs (count, sum, min, max, first, last of each float field), computed straight from
//! the packed present values. The fold then takes the runs as it takes whole-block statistics;
//! no rows are built.

use crate::codec;
use crate::segment::{ChunkStats, DenseBlock, float_lanes};

/// Per-field statistics of one stored block read in place of its rows (see
/// `SeriesCursor::next_piece`).
#[derive(Debug, Clone)]
pub struct BlockStats {
    /// Earliest time in the block.
    pub min_time: i64,
    /// Latest time in the block.
    pub max_time: i64,
    /// Per requested field (snapshot order): statistics of its present values, `None` when the
    /// block holds none.
    pub fields: RunFields,
}

pub use crate::segment::RunFields;

/// How an aggregating reader groups rows by time (see `SeriesCursor::next_piece`).
pub trait TimeGroups {
    /// Whether every time in `[min, max]` falls in one group.
    fn one_group(&self, min: i64, max: i64) -> bool;
    /// The end (exclusive) of the group holding time `t`: the rows from `t` up to it fold
    /// together. `None` when there is no such end to compute (the block is read as rows).
    fn group_end(&self, t: i64) -> Option<i64>;
    /// Whether the reader uses the `min` and `max` of the runs [`reduce`] makes. When not
    /// (a sum, a count or a mean), they are not computed and hold the run's first value.
    fn extremes(&self) -> bool {
        true
    }
    /// A key of how this reader groups times: two readers with the same key must give the same
    /// [`TimeGroups::group_end`] for every time (say `[stride, origin]` of `date_bin`
    /// buckets). `None` (the default): no such key, so the runs of its blocks are not cached.
    fn grid(&self) -> Option<[i64; 2]> {
        None
    }
}

/// What [`reduce`] made of a block.
pub(super) enum Reduced {
    /// The `rows` in range, as runs oldest first.
    Runs {
        rows: usize,
        runs: std::sync::Arc<[BlockStats]>,
        /// Rows of each run.
        sizes: Vec<u32>,
    },
    /// No row of the block is in range (or, reading values, holds one).
    Empty,
    /// `groups` could not say where a group ends: read the block as rows.
    Unsupported,
}

/// Reduces the rows of `block` with `first <= time <= last` to one [`BlockStats`] per run of
/// rows in the same group. Unless `keep_empty` (a read of every point), a run none of whose
/// rows holds a value is left out, as a read of values leaves out its rows.
pub(super) fn reduce(
    block: &DenseBlock,
    first: i64,
    last: i64,
    groups: &dyn TimeGroups,
    keep_empty: bool,
) -> Reduced {
    let times = &block.times;
    let lo = times.partition_point(|&t| t < first);
    let hi = times.partition_point(|&t| t <= last);
    if lo >= hi {
        return Reduced::Empty;
    }
    let mut next: Vec<usize> = block
        .fields
        .iter()
        .map(|f| f.values_between(0, lo))
        .collect();
    let extremes = groups.extremes();
    let mut runs = Vec::new();
    let mut sizes = Vec::new();
    let mut start = lo;
    while start < hi {
        let Some(group_end) = groups.group_end(times[start]) else {
            return Reduced::Unsupported;
        };
        let end = start + times[start..hi].partition_point(|&t| t < group_end).max(1);
        let fields: RunFields = block
            .fields
            .iter()
            .zip(&mut next)
            .map(|(f, at)| {
                let n = f.values_between(start, end);
                let range = *at..*at + n;
                *at += n;
                match (f.scale, extremes) {
                    (Some(k), true) => decimal_stats(&f.ints[range], k),
                    (Some(k), false) => decimal_sum(&f.ints[range], k),
                    (None, true) => float_stats(&f.values[range]),
                    (None, false) => float_sum(&f.values[range]),
                }
            })
            .collect();
        if keep_empty || fields.iter().any(Option::is_some) {
            runs.push(BlockStats {
                min_time: times[start],
                max_time: times[end - 1],
                fields,
            });
            sizes.push((end - start) as u32);
        }
        start = end;
    }
    if runs.is_empty() {
        return Reduced::Empty;
    }
    Reduced::Runs {
        rows: hi - lo,
        runs: runs.into(),
        sizes,
    }
}

/// Statistics of float values (`None` when there are none): the sum in four lanes, as the
/// query's row fold adds (its last bits may differ from a sequential sum's), min and max in
/// IEEE total order (so NaN counts, as in the row fold), first and last as stored.
fn float_stats(values: &[f64]) -> Option<ChunkStats> {
    if values.is_empty() {
        return None;
    }
    let (sum, mut min, mut max) = float_lanes(values);
    if sum.is_nan() {
        // A NaN: plain comparisons skip it, total order does not.
        (min, max) = total_extremes(values);
    } else if min == 0.0 || max == 0.0 {
        // Plain comparisons do not tell -0.0 from +0.0; total order puts -0.0 first.
        (min, max) = signed_zero_extremes(values, min, max);
    }
    Some(ChunkStats::of_floats(values, min, max, sum))
}

/// Statistics of decimal values `ints[i] / 10^k` (`None` when there are none), computed on the
/// integers: min, max, first and last are the decoded floats of the integer ones (decoding is
/// monotone); the sum is the exact integer sum turned into a float and divided once (within an
/// ulp or two of the true sum; adding the decoded floats rounds at every value).
fn decimal_stats(ints: &[i64], k: u8) -> Option<ChunkStats> {
    let (&head, &tail) = (ints.first()?, ints.last()?);
    let mut sums = [0i64; 4];
    let (mut mins, mut maxs) = ([head; 4], [head; 4]);
    let quads = ints.chunks_exact(4);
    let rest = quads.remainder();
    for q in quads {
        for l in 0..4 {
            sums[l] = sums[l].wrapping_add(q[l]);
            mins[l] = mins[l].min(q[l]);
            maxs[l] = maxs[l].max(q[l]);
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        sums[l] = sums[l].wrapping_add(v);
        mins[l] = mins[l].min(v);
        maxs[l] = maxs[l].max(v);
    }
    let (min, max) = (*mins.iter().min()?, *maxs.iter().max()?);
    // The wrapping sum is exact when no partial sum can leave i64; else add again in i128.
    let bound = u128::from(min.unsigned_abs().max(max.unsigned_abs())) * ints.len() as u128;
    let sum = match bound < 1 << 62 {
        true => sums.iter().fold(0i64, |a, &s| a.wrapping_add(s)) as f64,
        false => ints.iter().map(|&v| i128::from(v)).sum::<i128>() as f64,
    };
    let value = |i: i64| codec::decimal_value(i, k);
    Some(ChunkStats {
        count: ints.len() as u32,
        min: value(min).to_bits(),
        max: value(max).to_bits(),
        sum: sum / codec::decimal_divisor(k),
        first: value(head).to_bits(),
        last: value(tail).to_bits(),
    })
}

/// [`float_stats`] without the extremes: `min` and `max` hold the first value.
fn float_sum(values: &[f64]) -> Option<ChunkStats> {
    let (&head, &tail) = (values.first()?, values.last()?);
    let mut sums = [-0.0f64; 4];
    let quads = values.chunks_exact(4);
    let rest = quads.remainder();
    for q in quads {
        for l in 0..4 {
            sums[l] += q[l];
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        sums[l] += v;
    }
    Some(ChunkStats {
        count: values.len() as u32,
        min: head.to_bits(),
        max: head.to_bits(),
        sum: (sums[0] + sums[1]) + (sums[2] + sums[3]),
        first: head.to_bits(),
        last: tail.to_bits(),
    })
}

/// [`decimal_stats`] without the extremes: `min` and `max` hold the first value.
fn decimal_sum(ints: &[i64], k: u8) -> Option<ChunkStats> {
    let (&head, &tail) = (ints.first()?, ints.last()?);
    // Wrapping lane sums and an OR of the magnitudes (`v ^ (v >> 63)` is `|v| - 1` for
    // negative `v`): all of it vectorizes, where min and max of 64-bit integers do not.
    let (mut sums, mut bits) = ([0i64; 4], [0u64; 4]);
    let quads = ints.chunks_exact(4);
    let rest = quads.remainder();
    for q in quads {
        for l in 0..4 {
            sums[l] = sums[l].wrapping_add(q[l]);
            bits[l] |= (q[l] ^ (q[l] >> 63)) as u64;
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        sums[l] = sums[l].wrapping_add(v);
        bits[l] |= (v ^ (v >> 63)) as u64;
    }
    // Every |v| is at most 2^width; the wrapping sum is exact when no partial sum can leave i64.
    let width = 64 - (bits[0] | bits[1] | bits[2] | bits[3]).leading_zeros();
    let bound = (1u128 << width) * ints.len() as u128;
    let wide = match bound < 1 << 62 {
        true => sums.iter().fold(0i64, |a, &s| a.wrapping_add(s)) as f64,
        false => ints.iter().map(|&v| i128::from(v)).sum::<i128>() as f64,
    };
    let value = |i: i64| codec::decimal_value(i, k).to_bits();
    Some(ChunkStats {
        count: ints.len() as u32,
        min: value(head),
        max: value(head),
        sum: wide / codec::decimal_divisor(k),
        first: value(head),
        last: value(tail),
    })
}

/// The total-order extremes of NaN-free `values` whose plain extremes `min`, `max` include a
/// zero: a zero minimum is -0.0 when any value is -0.0, a zero maximum +0.0 when any is +0.0.
fn signed_zero_extremes(values: &[f64], min: f64, max: f64) -> (f64, f64) {
    let any = |bits: u64| values.iter().any(|v| v.to_bits() == bits);
    let min = match min == 0.0 {
        true if any((-0.0f64).to_bits()) => -0.0,
        true => 0.0,
        false => min,
    };
    let max = match max == 0.0 {
        true if any(0.0f64.to_bits()) => 0.0,
        true => -0.0,
        false => max,
    };
    (min, max)
}

/// Min and max of non-empty `values` in IEEE total order.
fn total_extremes(values: &[f64]) -> (f64, f64) {
    let (mut min, mut max) = (values[0], values[0]);
    for &v in values {
        if v.total_cmp(&min).is_lt() {
            min = v;
        }
        if v.total_cmp(&max).is_gt() {
            max = v;
        }
    }
    (min, max)
}

#[cfg(test)]
mod tests {
    use super::{decimal_stats, decimal_sum, float_stats, float_sum};
    use crate::codec;

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Decimal statistics equal those of the decoded floats: extremes, first and last bit for
    /// bit, the sum within rounding (exactly summed, even where an i64 sum would overflow).
    #[test]
    fn decimal_stats_equal_the_decoded_floats_stats() {
        assert!(decimal_stats(&[], 2).is_none());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for (k, magnitude) in [
            (0u8, 1_000i64),
            (2, 100_000),
            (3, 1 << 40),
            (1, i64::MAX / 4),
        ] {
            for len in 1..30 {
                let ints: Vec<i64> = (0..len)
                    .map(|_| (xorshift(&mut x) as i64) % magnitude)
                    .collect();
                let floats: Vec<f64> = ints.iter().map(|&i| codec::decimal_value(i, k)).collect();
                let (d, f) = (
                    decimal_stats(&ints, k).unwrap(),
                    float_stats(&floats).unwrap(),
                );
                assert_eq!((d.count, d.min, d.max), (f.count, f.min, f.max), "{ints:?}");
                assert_eq!((d.first, d.last), (f.first, f.last));
                let exact = ints.iter().map(|&i| i128::from(i)).sum::<i128>() as f64
                    / codec::decimal_divisor(k);
                assert!(
                    (d.sum - exact).abs() <= exact.abs() * 1e-15,
                    "{} {exact}",
                    d.sum
                );
                assert!(
                    (f.sum - exact).abs() <= exact.abs() * 1e-12 + 1e-9,
                    "{} {exact}",
                    f.sum
                );
            }
        }
    }

    /// Without the extremes, the count, sum, first and last are those of the full statistics
    /// (the decimal sum exact even where an i64 sum overflows), and min and max the first value.
    #[test]
    fn sums_without_extremes_equal_the_full_statistics() {
        assert!(decimal_sum(&[], 1).is_none() && float_sum(&[]).is_none());
        let mut x = 0x853c_49e6_748f_ea9bu64;
        for magnitude in [10i64, 1 << 20, 1 << 58, i64::MAX] {
            for len in [1, 2, 3, 4, 5, 9, 64, 333] {
                let ints: Vec<i64> = (0..len)
                    .map(|i| match i % 7 {
                        0 if magnitude == i64::MAX => i64::MIN,
                        _ => (xorshift(&mut x) as i64) % magnitude,
                    })
                    .collect();
                let (full, sum) = (
                    decimal_stats(&ints, 2).unwrap(),
                    decimal_sum(&ints, 2).unwrap(),
                );
                assert_eq!((sum.count, sum.sum), (full.count, full.sum), "{ints:?}");
                assert_eq!((sum.first, sum.last), (full.first, full.last));
                assert_eq!((sum.min, sum.max), (full.first, full.first));
                let floats: Vec<f64> = ints.iter().map(|&i| codec::decimal_value(i, 2)).collect();
                let (full, sum) = (float_stats(&floats).unwrap(), float_sum(&floats).unwrap());
                assert_eq!(
                    (sum.count, sum.sum.to_bits()),
                    (full.count, full.sum.to_bits())
                );
                assert_eq!((sum.first, sum.last), (full.first, full.last));
                assert_eq!((sum.min, sum.max), (full.first, full.first));
            }
        }
    }

    #[test]
    fn float_stats_sum_min_max_first_last() {
        assert!(float_stats(&[]).is_none());
        let v = [3.0, -1.5, 8.25, 0.5, 2.0, -7.0, 4.0];
        let s = float_stats(&v).unwrap();
        assert_eq!(s.count, 7);
        assert_eq!(s.sum, v.iter().sum::<f64>());
        assert_eq!(f64::from_bits(s.min), -7.0);
        assert_eq!(f64::from_bits(s.max), 8.25);
        assert_eq!(
            (f64::from_bits(s.first), f64::from_bits(s.last)),
            (3.0, 4.0)
        );
        // NaN is the largest value in total order, as the row fold's min/max treat it.
        let s = float_stats(&[1.0, f64::NAN, -2.0]).unwrap();
        assert!(f64::from_bits(s.max).is_nan() && s.sum.is_nan());
        assert_eq!(f64::from_bits(s.min), -2.0);
        // -0.0 is below +0.0 in total order, whichever comes first.
        for v in [[0.0, -0.0, 3.0], [-0.0, 0.0, 3.0]] {
            let s = float_stats(&v).unwrap();
            assert_eq!(s.min, (-0.0f64).to_bits(), "{v:?}");
        }
        for v in [[0.0, -0.0, -3.0], [-0.0, 0.0, -3.0]] {
            let s = float_stats(&v).unwrap();
            assert_eq!(s.max, 0.0f64.to_bits(), "{v:?}");
        }
        let s = float_stats(&[-0.0, -0.0, -1.0]).unwrap();
        assert_eq!(s.max, (-0.0f64).to_bits());
        let s = float_stats(&[0.0, 0.0, 1.0]).unwrap();
        assert_eq!(s.min, 0.0f64.to_bits());
    }

    /// Against total order over many lengths (every lane and remainder), with zeros of both
    /// signs, infinities and NaN mixed in.
    #[test]
    fn float_stats_extremes_follow_total_order() {
        let specials = [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1.5,
            -2.5,
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 1..40 {
            for round in 0..20 {
                let values: Vec<f64> = (0..len)
                    .map(|_| {
                        let x = xorshift(&mut x);
                        match (x % 10, round % 3) {
                            (0..=2, 0) => specials[(x >> 8) as usize % specials.len()],
                            (0..=2, 1) => specials[(x >> 8) as usize % 2],
                            _ => (x >> 11) as f64 / (1u64 << 40) as f64 - 4096.0,
                        }
                    })
                    .collect();
                let s = float_stats(&values).unwrap();
                let mut sorted = values.clone();
                sorted.sort_by(f64::total_cmp);
                assert_eq!(s.min, sorted[0].to_bits(), "{values:?}");
                assert_eq!(s.max, sorted[len - 1].to_bits(), "{values:?}");
                assert_eq!(s.count as usize, len);
            }
        }
    }
}
