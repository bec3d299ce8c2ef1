//! `Rows`: the rows of one series in columnar form, and the last-write-wins merge every read path
//! and flush/compaction share.

use crate::{Column, FieldType};

/// Rows of one series: a timestamp per row and one column per field of a fixed field list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rows {
    pub times: Vec<i64>,
    pub columns: Vec<Column>,
}

impl Rows {
    /// No rows, with one empty column per field.
    pub fn empty(fields: &[(String, FieldType)]) -> Rows {
        Rows {
            times: Vec::new(),
            columns: fields
                .iter()
                .map(|(n, t)| Column::new(n.clone(), *t))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// True when timestamps strictly increase (sorted, no duplicates).
    pub fn is_normalized(&self) -> bool {
        self.times.windows(2).all(|w| w[0] < w[1])
    }

    /// The rows `i` for which `keep(i)` holds, in order (same column layout).
    pub fn filtered(&self, keep: impl Fn(usize) -> bool) -> Rows {
        let mask: Vec<bool> = (0..self.len()).map(keep).collect();
        self.masked(&mask)
    }

    /// The rows whose entry of `keep` (one per row) is true, a column at a time.
    fn masked(&self, keep: &[bool]) -> Rows {
        Rows {
            times: masked(&self.times, keep),
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    data: masked_data(&c.data, keep),
                    valid: masked(&c.valid, keep),
                })
                .collect(),
        }
    }

    /// Appends every row of `other` (same column layout), a column at a time.
    pub fn append(&mut self, other: &Rows) {
        if self.is_empty() && self.columns.len() == other.columns.len() {
            self.clone_from(other);
            return;
        }
        self.times.extend_from_slice(&other.times);
        for (dst, src) in self.columns.iter_mut().zip(&other.columns) {
            append_column(dst, src);
        }
    }

    /// All rows of `parts` (same column layout) in order, copied once into buffers of the final
    /// size. `None` when there are no parts.
    pub fn concat(mut parts: Vec<Rows>) -> Option<Rows> {
        parts.retain(|p| !p.is_empty());
        if parts.len() <= 1 {
            return parts.pop();
        }
        let total: usize = parts.iter().map(Rows::len).sum();
        let mut iter = parts.into_iter();
        let mut acc = iter.next()?;
        acc.reserve(total - acc.len());
        for part in iter {
            acc.append(&part);
        }
        Some(acc)
    }

    /// Makes room for `extra` more rows in the times and in every fixed-width column.
    pub fn reserve(&mut self, extra: usize) {
        self.times.reserve(extra);
        for c in &mut self.columns {
            c.reserve(extra);
        }
    }

    /// Sorts by time (stable) and collapses rows with equal timestamps: per column the value of the
    /// last row (in input order) that has one wins. Input order is write order, so this is
    /// last-write-wins per (timestamp, field).
    pub fn normalize(self) -> Rows {
        if self.is_normalized() {
            return self;
        }
        // Stable: rows of equal time keep their arrival order, so the last write wins below.
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        order.sort_by_key(|&i| self.times[i as usize]);
        let distinct = order
            .windows(2)
            .all(|w| self.times[w[0] as usize] != self.times[w[1] as usize]);
        if distinct {
            return self.gathered(&order);
        }
        let mut out = Rows {
            times: Vec::with_capacity(self.len()),
            columns: self
                .columns
                .iter()
                .map(|c| Column::new(c.name.clone(), c.data.field_type()))
                .collect(),
        };
        let mut start = 0;
        while start < order.len() {
            let ts = self.times[order[start] as usize];
            let mut end = start + 1;
            while end < order.len() && self.times[order[end] as usize] == ts {
                end += 1;
            }
            out.times.push(ts);
            for (dst, src) in out.columns.iter_mut().zip(&self.columns) {
                match order[start..end]
                    .iter()
                    .rev()
                    .find(|&&i| src.valid[i as usize])
                {
                    Some(&i) => {
                        dst.data.push_from(&src.data, i as usize);
                        dst.valid.push(true);
                    }
                    None => dst.push_null(),
                }
            }
            start = end;
        }
        out
    }

    /// The rows in `order` (indices), a column at a time.
    pub(crate) fn gathered(&self, order: &[u32]) -> Rows {
        Rows {
            times: order.iter().map(|&i| self.times[i as usize]).collect(),
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    data: c.data.take(order),
                    valid: order.iter().map(|&i| c.valid[i as usize]).collect(),
                })
                .collect(),
        }
    }

    /// The rows with `first <= time <= last`; requires normalized rows.
    pub fn slice_time(&self, first: i64, last: i64) -> Rows {
        let lo = self.times.partition_point(|&t| t < first);
        let hi = self.times.partition_point(|&t| t <= last).max(lo);
        if lo == 0 && hi == self.len() {
            return self.clone();
        }
        self.select(lo..hi)
    }

    /// Rows with indexes in `range`.
    pub fn select(&self, range: std::ops::Range<usize>) -> Rows {
        Rows {
            times: self.times[range.clone()].to_vec(),
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    data: c.data.slice(range.clone()),
                    valid: c.valid[range.clone()].to_vec(),
                })
                .collect(),
        }
    }

    /// The rows with `first <= time <= last`, reusing `self`'s buffers (no copy when every row
    /// is inside, as for a block read whole).
    pub fn into_time_range(self, first: i64, last: i64) -> Rows {
        let lo = self.times.partition_point(|&t| t < first);
        let hi = self.times.partition_point(|&t| t <= last).max(lo);
        if lo == 0 && hi == self.len() {
            return self;
        }
        self.select(lo..hi)
    }

    /// Drops rows where no column has a value.
    pub fn drop_empty_rows(self) -> Rows {
        let empty = |i: usize| !self.columns.iter().any(|c| c.valid[i]);
        // Most reads have no empty row: find that out without allocating.
        if self.columns.iter().any(|c| c.valid.iter().all(|v| *v)) || !(0..self.len()).any(empty) {
            return self;
        }
        let keep: Vec<bool> = (0..self.len()).map(|i| !empty(i)).collect();
        self.masked(&keep)
    }
}

/// The values of `values` whose entry of `keep` is true.
fn masked<T: Copy>(values: &[T], keep: &[bool]) -> Vec<T> {
    values
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(v, _)| *v)
        .collect()
}

fn masked_data(data: &crate::ColumnData, keep: &[bool]) -> crate::ColumnData {
    use crate::ColumnData as D;
    match data {
        D::Float(v) => D::Float(masked(v, keep)),
        D::Integer(v) => D::Integer(masked(v, keep)),
        D::Unsigned(v) => D::Unsigned(masked(v, keep)),
        D::Boolean(v) => D::Boolean(masked(v, keep)),
        D::String(v) => {
            let mut out = crate::StringColumn::default();
            v.iter()
                .zip(keep)
                .filter(|(_, k)| **k)
                .for_each(|(s, _)| out.push(s));
            D::String(out)
        }
    }
}

/// Appends every value of `src` to `dst` (same type), a slice at a time where possible.
pub(crate) fn append_column(dst: &mut Column, src: &Column) {
    use crate::ColumnData as D;
    match (&mut dst.data, &src.data) {
        (D::Float(d), D::Float(s)) => d.extend_from_slice(s),
        (D::Integer(d), D::Integer(s)) => d.extend_from_slice(s),
        (D::Unsigned(d), D::Unsigned(s)) => d.extend_from_slice(s),
        (D::Boolean(d), D::Boolean(s)) => d.extend_from_slice(s),
        (d, s) => (0..s.len()).for_each(|i| d.push_from(s, i)),
    }
    dst.valid.extend_from_slice(&src.valid);
}

/// Merges parts of one series given oldest first (each part in write order) into normalized rows where
/// newer parts win per (timestamp, field).
pub(crate) fn merge_lww(parts: Vec<Rows>) -> Option<Rows> {
    Rows::concat(parts).map(Rows::normalize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ColumnData, Value};

    fn rows(times: &[i64], vals: &[Option<f64>]) -> Rows {
        let mut r = Rows::empty(&[("v".to_string(), FieldType::Float)]);
        for (t, v) in times.iter().zip(vals) {
            r.times.push(*t);
            match v {
                Some(x) => {
                    r.columns[0].data.push_value(&Value::Float(*x));
                    r.columns[0].valid.push(true);
                }
                None => r.columns[0].push_null(),
            }
        }
        r
    }

    /// Normalizing sorts by time and merges equal times (last valid value wins), whether the
    /// times are distinct (the gather path) or not (the merge path).
    #[test]
    fn normalize_sorts_and_merges_like_a_model() {
        use std::collections::BTreeMap;
        let mut seed = 7u64;
        let mut next = move |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for case in 0..200 {
            let n = 1 + next(40) as usize;
            let spread = if case % 2 == 0 { 1_000 } else { 8 };
            let times: Vec<i64> = (0..n).map(|_| next(spread) as i64).collect();
            let vals: Vec<Option<f64>> =
                (0..n).map(|i| (next(4) != 0).then_some(i as f64)).collect();
            let mut model: BTreeMap<i64, Option<f64>> = BTreeMap::new();
            for (t, v) in times.iter().zip(&vals) {
                let slot = model.entry(*t).or_insert(None);
                if v.is_some() {
                    *slot = *v;
                }
            }
            let got = rows(&times, &vals).normalize();
            let want = rows(
                &model.keys().copied().collect::<Vec<_>>(),
                &model.values().copied().collect::<Vec<_>>(),
            );
            assert_eq!(got.times, want.times, "case {case}");
            assert_eq!(got.columns[0].valid, want.columns[0].valid, "case {case}");
            let present = |r: &Rows| -> Vec<Option<Value>> {
                (0..r.len()).map(|i| r.columns[0].get(i)).collect()
            };
            assert_eq!(present(&got), present(&want), "case {case}");
        }
    }

    #[test]
    fn later_writes_win_and_nulls_do_not_overwrite() {
        let old = rows(&[3, 1, 2], &[Some(3.0), Some(1.0), Some(2.0)]);
        let new = rows(&[2, 1, 1], &[Some(20.0), None, Some(10.0)]);
        let merged = merge_lww(vec![old, new]).unwrap();
        assert_eq!(merged.times, vec![1, 2, 3]);
        assert_eq!(
            merged.columns[0].data,
            ColumnData::Float(vec![10.0, 20.0, 3.0])
        );
        assert_eq!(merged.columns[0].valid, vec![true, true, true]);
    }

    #[test]
    fn concat_keeps_every_row_in_order() {
        let a = rows(&[1, 2], &[Some(1.0), None]);
        let b = rows(&[], &[]);
        let c = rows(&[5, 7], &[Some(5.0), Some(7.0)]);
        let all = Rows::concat(vec![a, b, c]).unwrap();
        assert_eq!(all.times, vec![1, 2, 5, 7]);
        assert_eq!(all.columns[0].valid, vec![true, false, true, true]);
        assert_eq!(all.columns[0].data.len(), 4);
        assert!(Rows::concat(vec![rows(&[], &[])]).is_none());
    }

    #[test]
    fn slice_and_drop_empty() {
        let r = rows(&[1, 2, 3, 4], &[Some(1.0), None, Some(3.0), Some(4.0)]);
        let s = r.slice_time(2, 3).drop_empty_rows();
        assert_eq!(s.times, vec![3]);
    }
}
