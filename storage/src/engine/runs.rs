//! Aggregating reads of blocks that span several groups: a block decoded for aggregation
//! ([`DenseBlock`]) is cut at the read's range and at each group end ([`TimeGroups`]), and each
//! run of rows in one group becomes the statistics its fold needs (count, sum, min, max, first,
//! last of each float field), computed straight from the packed present values. The fold then
//! takes the runs as it takes whole-block statistics; no rows are built.

use super::read::{BlockStats, ReadMode, SeriesPiece, TimeGroups};
use crate::segment::{ChunkStats, DenseBlock};

/// What [`reduce`] made of a block.
pub(super) enum Reduced {
    /// The runs of the rows in range.
    Piece(SeriesPiece),
    /// No row of the block is in range (or, reading values, holds one).
    Empty,
    /// `groups` could not say where a group ends: read the block as rows.
    Unsupported,
}

/// Reduces the rows of `block` with `first <= time <= last` to one [`BlockStats`] per run of
/// rows in the same group. Reading values ([`ReadMode::Values`]), a run none of whose rows
/// holds a value is left out, as its rows would be.
pub(super) fn reduce(
    block: &DenseBlock,
    first: i64,
    last: i64,
    groups: &dyn TimeGroups,
    mode: ReadMode,
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
    let mut runs = Vec::new();
    let mut start = lo;
    while start < hi {
        let Some(group_end) = groups.group_end(times[start]) else {
            return Reduced::Unsupported;
        };
        let end = start + times[start..hi].partition_point(|&t| t < group_end).max(1);
        let fields: Vec<Option<ChunkStats>> = block
            .fields
            .iter()
            .zip(&mut next)
            .map(|(f, at)| {
                let n = f.values_between(start, end);
                let values = &f.values[*at..*at + n];
                *at += n;
                float_stats(values)
            })
            .collect();
        if mode == ReadMode::Points || fields.iter().any(Option::is_some) {
            runs.push(BlockStats {
                min_time: times[start],
                max_time: times[end - 1],
                fields,
            });
        }
        start = end;
    }
    if runs.is_empty() {
        return Reduced::Empty;
    }
    Reduced::Piece(SeriesPiece::Runs {
        rows: hi - lo,
        runs,
    })
}

/// Statistics of float values (`None` when there are none): the sum in four lanes, as the
/// query's row fold adds (its last bits may differ from a sequential sum's), min and max in
/// IEEE total order (so NaN counts, as in the row fold), first and last as stored.
fn float_stats(values: &[f64]) -> Option<ChunkStats> {
    let (&head, &tail) = (values.first()?, values.last()?);
    let mut lanes = [-0.0f64; 4];
    let quads = values.chunks_exact(4);
    let rest = quads.remainder();
    for q in quads {
        for (lane, v) in lanes.iter_mut().zip(q) {
            *lane += v;
        }
    }
    for (lane, v) in lanes.iter_mut().zip(rest) {
        *lane += v;
    }
    let (mut min, mut max) = (head, head);
    for &v in values {
        if v.total_cmp(&min).is_lt() {
            min = v;
        }
        if v.total_cmp(&max).is_gt() {
            max = v;
        }
    }
    Some(ChunkStats {
        count: values.len() as u32,
        min: min.to_bits(),
        max: max.to_bits(),
        sum: (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]),
        first: head.to_bits(),
        last: tail.to_bits(),
    })
}

#[cfg(test)]
mod tests {
    use super::float_stats;

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
    }
}
