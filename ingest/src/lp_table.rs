//! Per-measurement builder of a [`TableWrite`]: series lookup by raw tag-set bytes, field columns
//! looked up by raw key bytes, and row bookkeeping (one slot per row in every column).
//!
//! Lookups key on the *raw* (still escaped) bytes borrowed from the payload: escaping is
//! injective, so equal raw bytes mean equal names, and a hit needs neither unescaping nor
//! allocation. Tag sets written in a different order give different raw bytes; those are
//! merged through a second map keyed by the canonical [`SeriesKey`].

use foldhash::HashMap;

use strata_storage::{Column, ColumnData, FieldType, SeriesKey, TableWrite};

use crate::lp_value::Scalar;

/// A field value ready to store: a scalar or a string (already unescaped).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'s> {
    /// Non-string value.
    Scalar(Scalar),
    /// String value.
    String(&'s str),
}

impl Value<'_> {
    /// The storage type of the value.
    pub(crate) fn field_type(self) -> FieldType {
        match self {
            Value::Scalar(s) => s.field_type(),
            Value::String(_) => FieldType::String,
        }
    }
}

/// A stored value whose type differs from its column's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeConflict {
    /// Column name.
    pub(crate) field: String,
    /// The column's type.
    pub(crate) existing: FieldType,
    /// Line that fixed the column's type.
    pub(crate) first_line: usize,
    /// The rejected value's type.
    pub(crate) found: FieldType,
}

/// Bookkeeping of one column besides its data.
#[derive(Debug)]
struct ColumnMeta<'a> {
    /// Raw (escaped) key bytes.
    raw: &'a [u8],
    /// Line whose value fixed the column's type.
    first_line: usize,
}

/// Rows of one measurement being assembled.
#[derive(Debug)]
pub(crate) struct TableBuilder<'a> {
    /// The table so far.
    write: TableWrite,
    /// Raw tag-set bytes (from the `,` after the measurement to the space) → series index.
    series_by_raw: HashMap<&'a [u8], u32>,
    /// Canonical key → series index, to merge tag sets written in different orders; becomes
    /// `write.series` (ordered by index) when the table is finished.
    series_by_key: HashMap<SeriesKey, u32>,
    /// Most recent raw tag set and its series (consecutive lines often share it).
    last_series: Option<(&'a [u8], u32)>,
    /// Metadata parallel to `write.columns`.
    meta: Vec<ColumnMeta<'a>>,
    /// Raw field key → column index.
    column_by_raw: HashMap<&'a [u8], usize>,
    /// Column expected for the next field of the current row (fields usually come in the
    /// same order on every line).
    hint: usize,
}

impl<'a> TableBuilder<'a> {
    /// An empty table for `stream`.
    pub(crate) fn new(stream: String) -> Self {
        TableBuilder {
            write: TableWrite {
                stream,
                ..TableWrite::default()
            },
            series_by_raw: HashMap::default(),
            series_by_key: HashMap::default(),
            last_series: None,
            meta: Vec::new(),
            column_by_raw: HashMap::default(),
            hint: 0,
        }
    }

    /// Number of complete rows.
    pub(crate) fn rows(&self) -> usize {
        self.write.times.len()
    }

    /// Number of columns.
    pub(crate) fn columns(&self) -> usize {
        self.write.columns.len()
    }

    /// Series index already known for the raw tag set, if any.
    #[inline]
    pub(crate) fn known_series(&mut self, raw: &'a [u8]) -> Option<u32> {
        if let Some((last, idx)) = self.last_series
            && last == raw
        {
            return Some(idx);
        }
        let idx = *self.series_by_raw.get(raw)?;
        self.last_series = Some((raw, idx));
        Some(idx)
    }

    /// Registers the raw tag set with its canonical key; returns the series index.
    pub(crate) fn add_series(&mut self, raw: &'a [u8], key: SeriesKey) -> u32 {
        // Series count <= line count < input length, checked to fit a u32.
        let next = u32::try_from(self.series_by_key.len()).unwrap_or(u32::MAX);
        let idx = *self.series_by_key.entry(key).or_insert(next);
        self.series_by_raw.insert(raw, idx);
        self.last_series = Some((raw, idx));
        idx
    }

    /// Starts a row: the next field is expected in the first column.
    #[inline]
    pub(crate) fn begin_row(&mut self) {
        self.hint = 0;
    }

    /// Column of the raw field key, if it exists.
    #[inline]
    pub(crate) fn find_column(&mut self, raw: &[u8]) -> Option<usize> {
        let idx = match self.meta.get(self.hint) {
            Some(m) if m.raw == raw => self.hint,
            _ => *self.column_by_raw.get(raw)?,
        };
        self.hint = idx + 1;
        Some(idx)
    }

    /// Adds a column of type `ty`, with empty slots for the rows so far.
    pub(crate) fn add_column(
        &mut self,
        raw: &'a [u8],
        name: String,
        ty: FieldType,
        line: usize,
    ) -> usize {
        let mut column = Column::new(name, ty);
        for _ in 0..self.rows() {
            column.push_null();
        }
        let idx = self.write.columns.len();
        self.write.columns.push(column);
        self.meta.push(ColumnMeta {
            raw,
            first_line: line,
        });
        self.column_by_raw.insert(raw, idx);
        self.hint = idx + 1;
        idx
    }

    /// Stores `value` in column `idx` for the current row; a second value for the same field in
    /// one row replaces the first.
    #[inline]
    pub(crate) fn set(&mut self, idx: usize, value: Value<'_>) -> Result<(), TypeConflict> {
        let row = self.rows();
        let column = &mut self.write.columns[idx];
        let replace = column.valid.len() > row;
        if !store(&mut column.data, value, replace) {
            return Err(TypeConflict {
                field: column.name.clone(),
                existing: column.data.field_type(),
                first_line: self.meta[idx].first_line,
                found: value.field_type(),
            });
        }
        if !replace {
            column.valid.push(true);
        }
        Ok(())
    }

    /// Completes the current row; columns without a value get an empty slot.
    #[inline]
    pub(crate) fn end_row(&mut self, time: i64, series: u32) {
        let row = self.rows();
        for column in &mut self.write.columns {
            if column.valid.len() == row {
                column.push_null();
            }
        }
        self.write.times.push(time);
        self.write.row_series.push(series);
    }

    /// The finished table.
    pub(crate) fn finish(mut self) -> TableWrite {
        let mut series: Vec<(SeriesKey, u32)> = self.series_by_key.into_iter().collect();
        series.sort_unstable_by_key(|(_, idx)| *idx);
        self.write.series = series.into_iter().map(|(key, _)| key).collect();
        self.write
    }
}

/// Appends (or, with `replace`, overwrites the last slot with) `value`; false on a type mismatch.
#[inline]
fn store(data: &mut ColumnData, value: Value<'_>, replace: bool) -> bool {
    match (data, value) {
        (ColumnData::Float(v), Value::Scalar(Scalar::Float(x))) => put(v, x, replace),
        (ColumnData::Integer(v), Value::Scalar(Scalar::Integer(x))) => put(v, x, replace),
        (ColumnData::Unsigned(v), Value::Scalar(Scalar::Unsigned(x))) => put(v, x, replace),
        (ColumnData::Boolean(v), Value::Scalar(Scalar::Boolean(x))) => put(v, x, replace),
        (ColumnData::String(c), Value::String(s)) => {
            if replace {
                c.ends.pop();
                let start = c.ends.last().map_or(0, |&e| e as usize);
                c.data.truncate(start);
            }
            c.push(s);
        }
        _ => return false,
    }
    true
}

/// Pushes `x`, or overwrites the last element with it.
#[inline]
fn put<T>(v: &mut Vec<T>, x: T, replace: bool) {
    match v.last_mut() {
        Some(last) if replace => *last = x,
        _ => v.push(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(device: &str) -> SeriesKey {
        SeriesKey {
            device: device.into(),
            tags: vec![],
        }
    }

    #[test]
    fn rows_fill_missing_columns_and_duplicates_replace() {
        let mut t = TableBuilder::new("m".into());
        t.begin_row();
        let s = t.add_series(b",device=a", key("a"));
        let a = t.add_column(b"a", "a".into(), FieldType::String, 1);
        t.set(a, Value::String("x")).unwrap();
        t.set(a, Value::String("yz")).unwrap();
        t.end_row(1, s);
        t.begin_row();
        let b = t.add_column(b"b", "b".into(), FieldType::Integer, 2);
        t.set(b, Value::Scalar(Scalar::Integer(7))).unwrap();
        let err = t.set(b, Value::Scalar(Scalar::Float(1.0))).unwrap_err();
        assert_eq!(err.first_line, 2);
        t.end_row(2, s);
        let w = t.finish();
        assert_eq!(w.columns[0].valid, vec![true, false]);
        assert_eq!(
            w.columns[0].get(0),
            Some(strata_storage::Value::String("yz".into()))
        );
        assert_eq!(w.columns[1].valid, vec![false, true]);
        assert_eq!(w.row_series, vec![0, 0]);
    }

    #[test]
    fn tag_sets_in_another_order_share_a_series() {
        let mut t = TableBuilder::new("m".into());
        let a = t.add_series(b",x=1,y=2", key("d"));
        assert_eq!(t.known_series(b",y=2,x=1"), None);
        let b = t.add_series(b",y=2,x=1", key("d"));
        assert_eq!(a, b);
        assert_eq!(t.known_series(b",x=1,y=2"), Some(a));
        assert_eq!(t.finish().series.len(), 1);
    }
}
