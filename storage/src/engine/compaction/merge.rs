//! The streaming merge of a compaction: inputs are read series by series and block by block, and
//! merged into the output a block at a time, so memory is a few blocks per input whatever the size
//! of a series or window. Last write wins exactly as in `rows::merge_lww`: per (time, field) the
//! value of the newest input (latest in age order) that has one; a null never overwrites a value.

use std::collections::BTreeSet;

use crate::error::Result;
use crate::rows::Rows;
use crate::segment::{BLOCK_ROWS, Segment, SegmentWriter};
use crate::{FieldType, SeriesId};

/// One input's position in one series: the decoded current block and the row inside it.
struct Cursor<'a> {
    segment: &'a Segment,
    series: SeriesId,
    next_block: usize,
    blocks: usize,
    rows: Option<Rows>,
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor over `series` in `segment`, or `None` when the segment does not hold it.
    fn open(
        segment: &'a Segment,
        series: SeriesId,
        fields: &[(String, FieldType)],
    ) -> Result<Option<Self>> {
        let ranges = segment.series_block_ranges(series);
        if ranges.is_empty() {
            return Ok(None);
        }
        let mut cursor = Cursor {
            segment,
            series,
            next_block: 0,
            blocks: ranges.len(),
            rows: None,
            pos: 0,
        };
        // Blocks written by Strata follow each other in time; should they not, read the series
        // whole (sorted) as one block: correct, only not memory-bounded for such a file.
        if ranges.windows(2).any(|w| w[0].1 >= w[1].0) {
            cursor.rows = segment.read_series(series, i64::MIN, i64::MAX, fields)?;
            cursor.next_block = cursor.blocks;
        } else {
            cursor.load(fields)?;
        }
        Ok(cursor.rows.is_some().then_some(cursor))
    }

    /// Decodes the next non-empty block; leaves `rows` empty when there is none.
    fn load(&mut self, fields: &[(String, FieldType)]) -> Result<()> {
        self.rows = None;
        self.pos = 0;
        while self.next_block < self.blocks {
            let bi = self.next_block;
            self.next_block += 1;
            let rows = self.segment.block_rows(self.series, bi, fields)?;
            if !rows.is_empty() {
                self.rows = Some(rows);
                return Ok(());
            }
        }
        Ok(())
    }

    fn time(&self) -> Option<i64> {
        self.rows.as_ref().map(|r| r.times[self.pos])
    }

    /// Moves past the current row, decoding the next block at the end of this one.
    fn advance(&mut self, fields: &[(String, FieldType)]) -> Result<()> {
        self.skip(1, fields)
    }

    fn skip(&mut self, n: usize, fields: &[(String, FieldType)]) -> Result<()> {
        self.pos += n;
        if self.rows.as_ref().is_some_and(|r| self.pos >= r.len()) {
            self.load(fields)?;
        }
        Ok(())
    }
}

/// Series ids held by any input, increasing.
pub(super) fn series_union(inputs: &[&Segment]) -> BTreeSet<SeriesId> {
    inputs.iter().flat_map(|s| s.series_ids()).collect()
}

/// Merges `series` from `inputs` (oldest first) into `out`, a block at a time.
pub(super) fn merge_series(
    inputs: &[&Segment],
    series: SeriesId,
    fields: &[(String, FieldType)],
    out: &mut SegmentWriter,
) -> Result<()> {
    let mut cursors = Vec::with_capacity(inputs.len());
    for seg in inputs {
        if let Some(c) = Cursor::open(seg, series, fields)? {
            cursors.push(c);
        }
    }
    let mut buf = Rows::empty(fields);
    while let Some((first, t)) = earliest(&cursors) {
        let room = BLOCK_ROWS - buf.len();
        let next_other = cursors
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != first)
            .filter_map(|(_, c)| c.time())
            .min();
        if next_other.is_none_or(|o| o > t) {
            copy_run(&mut cursors[first], next_other, room, &mut buf, fields)?;
        } else {
            merge_row(&mut cursors, t, &mut buf, fields)?;
        }
        if buf.len() >= BLOCK_ROWS {
            out.append_series_rows(series, &buf)?;
            buf = Rows::empty(fields);
        }
    }
    out.append_series_rows(series, &buf)
}

/// The input whose current row is earliest (the oldest input among equals) and that time.
fn earliest(cursors: &[Cursor<'_>]) -> Option<(usize, i64)> {
    cursors
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.time().map(|t| (i, t)))
        .min_by_key(|&(i, t)| (t, i))
}

/// Copies the rows of `c` before `until` (no other input has rows there), at most `room` of them.
fn copy_run(
    c: &mut Cursor<'_>,
    until: Option<i64>,
    room: usize,
    buf: &mut Rows,
    fields: &[(String, FieldType)],
) -> Result<()> {
    let Some(rows) = c.rows.as_ref() else {
        return Ok(());
    };
    let end = match until {
        Some(u) => c.pos + rows.times[c.pos..].partition_point(|&t| t < u),
        None => rows.len(),
    }
    .min(c.pos + room);
    if c.pos == 0 && end == rows.len() && buf.is_empty() {
        buf.clone_from(rows);
    } else {
        buf.append(&rows.select(c.pos..end));
    }
    let n = end - c.pos;
    c.skip(n, fields)
}

/// Writes the one row at time `t`: per field, the newest input with a value there wins.
fn merge_row(
    cursors: &mut [Cursor<'_>],
    t: i64,
    buf: &mut Rows,
    fields: &[(String, FieldType)],
) -> Result<()> {
    buf.times.push(t);
    for (f, col) in buf.columns.iter_mut().enumerate() {
        let winner = cursors.iter().rev().find_map(|c| {
            let rows = c.rows.as_ref()?;
            (rows.times[c.pos] == t && rows.columns[f].valid[c.pos]).then_some((rows, c.pos))
        });
        match winner {
            Some((rows, pos)) => {
                col.data.push_from(&rows.columns[f].data, pos);
                col.valid.push(true);
            }
            None => col.push_null(),
        }
    }
    for c in cursors.iter_mut().filter(|c| c.time() == Some(t)) {
        c.advance(fields)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;
    use crate::rows::merge_lww;

    fn fields() -> Vec<(String, FieldType)> {
        vec![
            ("f".to_string(), FieldType::Float),
            ("s".to_string(), FieldType::String),
        ]
    }

    /// Sorted rows at times `start + k * step` (k < n), each field present with probability ~2/3.
    fn rows(seed: u64, start: i64, step: i64, n: usize) -> Rows {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let mut r = Rows::empty(&fields());
        for k in 0..n {
            let (a, b) = (next() % 3 != 0, next() % 3 != 0);
            if !a && !b {
                continue;
            }
            r.times.push(start + k as i64 * step);
            let v = next();
            for (present, col, value) in [
                (a, 0, Value::Float(v as f64)),
                (b, 1, Value::String(format!("{seed}-{v}"))),
            ] {
                let c = &mut r.columns[col];
                if present {
                    c.data.push_value(&value);
                    c.valid.push(true);
                } else {
                    c.push_null();
                }
            }
        }
        r
    }

    fn segment(dir: &std::path::Path, id: u64, series: &[(SeriesId, Rows)]) -> Segment {
        let path = dir.join(format!("{id}.seg"));
        let mut w = SegmentWriter::create(&path, "db", "m", 0, 1 << 40, &fields()).unwrap();
        for (sid, r) in series {
            w.write_series(*sid, r).unwrap();
        }
        w.finish().unwrap();
        Segment::open(&path).unwrap()
    }

    #[test]
    fn streaming_merge_equals_merge_lww_over_many_blocks() {
        let dir = tempfile::tempdir().unwrap();
        // Series 1 overlaps in all three inputs (several blocks each, different steps so times
        // interleave and collide); series 2 is only in the middle one; series 3 in the first and
        // last without overlap.
        let inputs = [
            vec![(1, rows(1, 0, 3, 20_000)), (3, rows(4, 0, 1, 9_000))],
            vec![(1, rows(2, 5_000, 2, 20_000)), (2, rows(5, 0, 1, 17_000))],
            vec![(1, rows(3, 1, 6, 12_000)), (3, rows(6, 50_000, 1, 100))],
        ];
        let segs: Vec<Segment> = inputs
            .iter()
            .enumerate()
            .map(|(i, s)| segment(dir.path(), i as u64, s))
            .collect();
        let refs: Vec<&Segment> = segs.iter().collect();
        let path = dir.path().join("out.seg");
        let mut w = SegmentWriter::create(&path, "db", "m", 0, 1 << 40, &fields()).unwrap();
        for sid in series_union(&refs) {
            merge_series(&refs, sid, &fields(), &mut w).unwrap();
        }
        w.finish().unwrap();
        let out = Segment::open(&path).unwrap();
        assert_eq!(out.series_ids().collect::<Vec<_>>(), vec![1, 2, 3]);
        for sid in [1, 2, 3] {
            let parts: Vec<Rows> = refs
                .iter()
                .filter_map(|s| s.read_series(sid, i64::MIN, i64::MAX, &fields()).unwrap())
                .collect();
            let want = merge_lww(parts).unwrap();
            let got = out
                .read_series(sid, i64::MIN, i64::MAX, &fields())
                .unwrap()
                .unwrap();
            assert_eq!(got.times, want.times, "series {sid}");
            assert_eq!(got.columns, want.columns, "series {sid}");
            let blocks = out.series_block_ranges(sid);
            assert!(blocks.windows(2).all(|w| w[0].1 < w[1].0), "series {sid}");
            assert_eq!(
                blocks.len(),
                want.len().div_ceil(BLOCK_ROWS),
                "series {sid}"
            );
        }
    }
}
