//! The memtable: per-series columnar buffers holding writes since the last flush, in write order.
//! Columns are sparse: a series keeps a buffer only for the fields it wrote, and a buffer holds only
//! the values present (with their row numbers once there are gaps), so a series of a 1,000-field
//! stream that writes 3 fields per row pays for 3. `bytes()` counts allocated capacity.
//! Appends are O(1); out-of-order and duplicate timestamps are resolved (last write wins) when rows
//! are read or flushed, by the shared merge in [`crate::rows`].

use foldhash::HashMap;
use std::mem::size_of;
use std::ops::Range;
use std::sync::OnceLock;
use std::time::Instant;

use crate::catalog::StreamId;
use crate::rows::Rows;
use crate::{Column, ColumnData, FieldType, SeriesId, StringColumn, TableWrite};

/// Estimated bytes of one entry of the series index (key, value and hash-table control bytes).
const INDEX_ENTRY_BYTES: usize = size_of::<(SeriesId, u32)>() + 8;

/// The values one series has for one field. Only rows with a value take space: while the values
/// cover every row from `start` on they are dense (no row numbers kept); after the first gap the
/// row of every value is kept in `rows`.
#[derive(Debug)]
struct FieldBuf {
    fid: u32,
    /// Row (in the series buffer) of the first value.
    start: u32,
    /// Row of each value once the field is sparse; empty while it is dense.
    rows: Vec<u32>,
    sparse: bool,
    data: ColumnData,
}

impl FieldBuf {
    fn new(fid: u32, start: u32, ty: FieldType) -> FieldBuf {
        FieldBuf {
            fid,
            start,
            rows: Vec::new(),
            sparse: false,
            data: ColumnData::new(ty),
        }
    }

    fn len(&self) -> usize {
        self.data.len()
    }

    /// Row of value `k`.
    fn row(&self, k: usize) -> usize {
        if self.sparse {
            self.rows[k] as usize
        } else {
            self.start as usize + k
        }
    }

    /// Appends, for each `(offset, i)` of `picked` (offsets rising), slot `i` of `src` at row
    /// `base + offset`. The buffer turns sparse at the first row that does not follow the last.
    fn extend(&mut self, base: u32, picked: &[(u32, u32)], src: &ColumnData) {
        let next = self.next_row();
        let follows = picked
            .iter()
            .enumerate()
            .all(|(k, &(offset, _))| base + offset == next + k as u32);
        self.note_rows(follows, picked.iter().map(|&(offset, _)| base + offset));
        self.data.extend_from(src, picked.iter().map(|&(_, i)| i));
    }

    /// [`FieldBuf::extend`] when every row of `rows` (buffer rows `base..`) has a value: slot
    /// `rows[k]` of `src` at row `base + k`.
    fn extend_dense(&mut self, base: u32, rows: &[u32], src: &ColumnData) {
        let follows = base == self.next_row();
        self.note_rows(follows, base..base + rows.len() as u32);
        self.data.extend_from(src, rows.iter().copied());
    }

    /// The row a value appended to a dense buffer would take.
    fn next_row(&self) -> u32 {
        self.start + self.len() as u32
    }

    /// Records the rows of values about to be appended: nothing while the buffer stays dense
    /// (`follows`: they continue its last row), each row once it is sparse (turning it sparse
    /// first, with the rows of the values it holds).
    fn note_rows(&mut self, follows: bool, rows: impl Iterator<Item = u32>) {
        if !self.sparse && !follows {
            self.rows = (self.start..self.next_row()).collect();
            self.sparse = true;
        }
        if self.sparse {
            self.rows.extend(rows);
        }
    }

    /// Heap bytes held (capacities, not lengths).
    fn heap_bytes(&self) -> usize {
        self.rows.capacity() * size_of::<u32>() + data_capacity(&self.data)
    }

    /// The positions `k` of the values in buffer rows `rows`.
    fn values_in(&self, rows: &Range<usize>) -> Range<usize> {
        if self.sparse {
            let lo = self.rows.partition_point(|&r| (r as usize) < rows.start);
            let hi = self.rows.partition_point(|&r| (r as usize) < rows.end);
            return lo..hi;
        }
        let start = self.start as usize;
        let lo = rows.start.saturating_sub(start).min(self.len());
        let hi = rows.end.saturating_sub(start).min(self.len());
        lo..hi.max(lo)
    }

    /// Whether every row of `rows` holds a value.
    fn covers(&self, rows: &Range<usize>) -> bool {
        !self.sparse
            && self.start as usize <= rows.start
            && self.start as usize + self.len() >= rows.end
    }

    /// The values in buffer rows `rows` as a dense column of one slot a row, null where the
    /// field has no value.
    fn to_column(&self, name: &str, rows: Range<usize>) -> Column {
        let n = rows.len();
        if self.covers(&rows) {
            let at = rows.start - self.start as usize;
            return Column {
                name: name.to_string(),
                data: self.data.slice(at..at + n),
                valid: vec![true; n],
            };
        }
        let ks = self.values_in(&rows);
        let mut valid = vec![false; n];
        ks.clone()
            .for_each(|k| valid[self.row(k) - rows.start] = true);
        let data = match &self.data {
            ColumnData::Float(v) => ColumnData::Float(self.spread(v, &ks, &rows)),
            ColumnData::Integer(v) => ColumnData::Integer(self.spread(v, &ks, &rows)),
            ColumnData::Unsigned(v) => ColumnData::Unsigned(self.spread(v, &ks, &rows)),
            ColumnData::Boolean(v) => ColumnData::Boolean(self.spread(v, &ks, &rows)),
            ColumnData::String(v) => ColumnData::String(self.spread_strings(v, &ks, &rows)),
        };
        Column {
            name: name.to_string(),
            data,
            valid,
        }
    }

    /// Values `ks` (those of buffer rows `rows`) spread to one slot a row of `rows`.
    fn spread<T: Copy + Default>(
        &self,
        values: &[T],
        ks: &Range<usize>,
        rows: &Range<usize>,
    ) -> Vec<T> {
        let mut out = vec![T::default(); rows.len()];
        for k in ks.clone() {
            out[self.row(k) - rows.start] = values[k];
        }
        out
    }

    fn spread_strings(
        &self,
        values: &StringColumn,
        ks: &Range<usize>,
        rows: &Range<usize>,
    ) -> StringColumn {
        let mut out = StringColumn {
            data: String::with_capacity(values.data.len()),
            ends: Vec::with_capacity(rows.len()),
        };
        let mut k = ks.start;
        for row in rows.clone() {
            if k < ks.end && self.row(k) == row {
                out.push(values.get(k));
                k += 1;
            } else {
                out.push("");
            }
        }
        out
    }
}

/// The rows of sorted `times` with `first <= time <= last`, if any.
fn time_range(times: &[i64], first: i64, last: i64) -> Option<Range<usize>> {
    let lo = times.partition_point(|&t| t < first);
    let hi = times.partition_point(|&t| t <= last).max(lo);
    (lo < hi).then_some(lo..hi)
}

/// Heap bytes held by a column's buffers.
fn data_capacity(data: &ColumnData) -> usize {
    match data {
        ColumnData::Float(v) => v.capacity() * size_of::<f64>(),
        ColumnData::Integer(v) => v.capacity() * size_of::<i64>(),
        ColumnData::Unsigned(v) => v.capacity() * size_of::<u64>(),
        ColumnData::Boolean(v) => v.capacity(),
        ColumnData::String(s) => s.data.capacity() + s.ends.capacity() * size_of::<u32>(),
    }
}

/// A column of `n` rows without any value.
fn null_column(name: &str, ty: FieldType, n: usize) -> Column {
    let data = match ty {
        FieldType::Float => ColumnData::Float(vec![0.0; n]),
        FieldType::Integer => ColumnData::Integer(vec![0; n]),
        FieldType::Unsigned => ColumnData::Unsigned(vec![0; n]),
        FieldType::Boolean => ColumnData::Boolean(vec![false; n]),
        FieldType::String => ColumnData::String(StringColumn {
            data: String::new(),
            ends: vec![0; n],
        }),
    };
    Column {
        name: name.to_string(),
        data,
        valid: vec![false; n],
    }
}

/// `row_series` with every batch series that shares a buffer with an earlier one (two keys of one
/// series id) renamed to that one, so their rows form one group and keep their batch order (the
/// later of two rows at one time wins). Borrowed when, as always from the parsers, none does.
fn same_buffer_same_group<'a>(
    row_series: &'a [u32],
    local: &[usize],
) -> std::borrow::Cow<'a, [u32]> {
    let mut sorted = local.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).all(|w| w[0] != w[1]) {
        return std::borrow::Cow::Borrowed(row_series);
    }
    let mut first: HashMap<usize, u32> = HashMap::default();
    let canon: Vec<u32> = (0u32..)
        .zip(local)
        .map(|(s, &buf)| *first.entry(buf).or_insert(s))
        .collect();
    std::borrow::Cow::Owned(row_series.iter().map(|&s| canon[s as usize]).collect())
}

/// A table's columns as [`Memtable::apply`] visits them: in rising field id (the order of a
/// series' buffers), and which of them have a value on every row.
struct ColumnOrder {
    by_field: Vec<usize>,
    dense: Vec<bool>,
}

impl ColumnOrder {
    fn of(table: &TableWrite, field_ids: &[usize]) -> ColumnOrder {
        let mut by_field: Vec<usize> = (0..table.columns.len()).collect();
        // Stable: two columns of one field (not produced by validated writes) keep their order.
        by_field.sort_by_key(|&c| field_ids[c]);
        let dense = table
            .columns
            .iter()
            .map(|c| c.valid.iter().all(|&v| v))
            .collect();
        ColumnOrder { by_field, dense }
    }
}

/// The rows of a batch grouped by series, each group in row order (a counting sort).
struct RowGroups {
    /// `starts[s]..starts[s + 1]` indexes `rows` for series `s`.
    starts: Vec<u32>,
    rows: Vec<u32>,
}

impl RowGroups {
    fn of(row_series: &[u32], series: usize) -> RowGroups {
        let mut starts = vec![0u32; series + 1];
        for &s in row_series {
            starts[s as usize + 1] += 1;
        }
        for s in 0..series {
            starts[s + 1] += starts[s];
        }
        let mut fill = starts.clone();
        let mut rows = vec![0u32; row_series.len()];
        for (row, &s) in (0u32..).zip(row_series) {
            rows[fill[s as usize] as usize] = row;
            fill[s as usize] += 1;
        }
        RowGroups { starts, rows }
    }

    /// `(series, rows)` for every series with at least one row.
    fn iter(&self) -> impl Iterator<Item = (usize, &[u32])> {
        self.starts
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[1] > w[0])
            .map(|(s, w)| (s, &self.rows[w[0] as usize..w[1] as usize]))
    }
}

/// Buffered rows of one series: the timestamps, and a [`FieldBuf`] (sorted by field id) for each
/// field the series has written since the last flush.
#[derive(Debug)]
struct SeriesBuf {
    stream: StreamId,
    times: Vec<i64>,
    fields: Vec<FieldBuf>,
    strictly_sorted: bool,
    /// When not `strictly_sorted`: the rows in time order, found by the first read after a
    /// write and kept for the next reads until the next write (`None` inside: two rows share a
    /// time and must merge).
    order: OnceLock<Option<Box<[u32]>>>,
    /// Heap bytes held, as of the last [`SeriesBuf::heap_bytes`] refresh.
    bytes: usize,
}

impl SeriesBuf {
    /// The position in `fields` of the buffer of field `fid`, created (its first value at row
    /// `start`) when new. Looks from `*from` on and leaves `*from` at it, so a caller that asks
    /// for rising field ids walks the sorted buffers once instead of searching each time.
    fn field_at(&mut self, from: &mut usize, fid: u32, ty: FieldType, start: u32) -> usize {
        let pos = *from + self.fields[*from..].partition_point(|f| f.fid < fid);
        if self.fields.get(pos).is_none_or(|f| f.fid != fid) {
            // Grow 1, 2, 4, ...: most series write few fields, and `Vec`'s first growth to four
            // buffers would cost every such series three unused ones.
            if self.fields.len() == self.fields.capacity() {
                self.fields.reserve_exact(self.fields.capacity().max(1));
            }
            self.fields.insert(pos, FieldBuf::new(fid, start, ty));
        }
        *from = pos;
        pos
    }

    /// Appends timestamps, noting when one is not after the one before it.
    fn append_times(&mut self, times: impl Iterator<Item = i64>) {
        for ts in times {
            if self.times.last().is_some_and(|&last| last >= ts) {
                self.strictly_sorted = false;
            }
            self.times.push(ts);
        }
    }

    fn heap_bytes(&self) -> usize {
        // An unsorted buffer's time order is counted before a read builds it.
        let order = match self.strictly_sorted {
            true => 0,
            false => self.times.len() * size_of::<u32>(),
        };
        order
            + self.times.capacity() * size_of::<i64>()
            + self.fields.capacity() * size_of::<FieldBuf>()
            + self.fields.iter().map(FieldBuf::heap_bytes).sum::<usize>()
    }

    /// Copies buffer rows `rows` into `Rows` with one column per requested field id.
    fn to_rows(
        &self,
        fields: &[(String, FieldType)],
        field_ids: &[Option<usize>],
        rows: Range<usize>,
    ) -> Rows {
        let columns = fields
            .iter()
            .zip(field_ids)
            .map(|((name, ty), fid)| {
                let buf = fid.and_then(|f| {
                    self.fields
                        .binary_search_by_key(&(f as u32), |b| b.fid)
                        .ok()
                        .map(|pos| &self.fields[pos])
                });
                match buf {
                    Some(b) => b.to_column(name, rows.clone()),
                    None => null_column(name, *ty, rows.len()),
                }
            })
            .collect();
        Rows {
            times: self.times[rows].to_vec(),
            columns,
        }
    }

    /// Buffer rows `order` (from [`SeriesBuf::distinct_order`]) in that order, with one column
    /// per requested field id. Copies the wanted columns of the whole buffer, then gathers.
    fn gather(
        &self,
        fields: &[(String, FieldType)],
        field_ids: &[Option<usize>],
        order: &[u32],
    ) -> Rows {
        self.to_rows(fields, field_ids, 0..self.times.len())
            .gathered(order)
    }

    /// The rows with `first <= time <= last` in time order, or `None` when two rows of the
    /// buffer share a time (they must merge). The buffer's time order is sorted once per write.
    fn distinct_order(&self, first: i64, last: i64) -> Option<&[u32]> {
        let t = &self.times;
        let order = self
            .order
            .get_or_init(|| {
                let mut order: Vec<u32> = (0..t.len() as u32).collect();
                order.sort_unstable_by_key(|&i| t[i as usize]);
                let distinct = order
                    .windows(2)
                    .all(|w| t[w[0] as usize] != t[w[1] as usize]);
                distinct.then(|| order.into_boxed_slice())
            })
            .as_deref()?;
        let lo = order.partition_point(|&i| t[i as usize] < first);
        let hi = order.partition_point(|&i| t[i as usize] <= last).max(lo);
        Some(&order[lo..hi])
    }

    /// Which of buffer rows `rows` hold a value of any field: `None` when all do (one field
    /// holds a value in each, the common case, found without looking at rows).
    fn rows_with_values(&self, rows: &Range<usize>) -> Option<Vec<bool>> {
        if self.fields.iter().any(|f| f.covers(rows)) {
            return None;
        }
        let mut exists = vec![false; rows.len()];
        for f in &self.fields {
            for k in f.values_in(rows) {
                exists[f.row(k) - rows.start] = true;
            }
        }
        Some(exists)
    }
}

/// Writes not yet in segments.
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    /// Buffers in creation order; `index` maps a series id to its position.
    bufs: Vec<SeriesBuf>,
    index: HashMap<SeriesId, u32>,
    /// Sum of the buffers' `bytes`.
    buf_bytes: usize,
    first_write: Option<Instant>,
    last_write: Option<Instant>,
}

impl Memtable {
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Position of the buffer of `sid`, created when new.
    fn buf_index(&mut self, sid: SeriesId, stream: StreamId) -> usize {
        let next = self.bufs.len() as u32;
        let pos = *self.index.entry(sid).or_insert(next);
        if pos == next {
            self.bufs.push(SeriesBuf {
                stream,
                times: Vec::new(),
                fields: Vec::new(),
                strictly_sorted: true,
                order: OnceLock::new(),
                bytes: 0,
            });
        }
        pos as usize
    }

    fn get(&self, sid: SeriesId) -> Option<&SeriesBuf> {
        self.index.get(&sid).map(|&i| &self.bufs[i as usize])
    }

    /// Memory held: the capacities of every buffer (timestamps, values, row numbers, string
    /// bytes), the per-series and per-field bookkeeping, and the series index.
    pub fn bytes(&self) -> usize {
        self.buf_bytes
            + self.bufs.capacity() * size_of::<SeriesBuf>()
            + self.index.capacity() * INDEX_ENTRY_BYTES
    }

    /// The oldest time buffered for `stream` (a policy check; walks the buffers).
    pub fn min_time(&self, stream: StreamId) -> Option<i64> {
        self.bufs
            .iter()
            .filter(|b| b.stream == stream)
            .filter_map(|b| match b.strictly_sorted {
                true => b.times.first().copied(),
                false => b.times.iter().copied().min(),
            })
            .min()
    }

    /// When the oldest buffered write arrived.
    pub fn first_write(&self) -> Option<Instant> {
        self.first_write
    }

    /// When the newest buffered write arrived.
    pub fn last_write(&self) -> Option<Instant> {
        self.last_write
    }

    /// Appends the rows of a validated table write. `series_ids[i]` is the id of `table.series[i]`,
    /// `field_ids[c]` the stream field id of `table.columns[c]`. Only present values are stored.
    pub fn apply(
        &mut self,
        stream: StreamId,
        table: &TableWrite,
        series_ids: &[SeriesId],
        field_ids: &[usize],
    ) {
        let now = Instant::now();
        self.first_write.get_or_insert(now);
        self.last_write = Some(now);
        let local: Vec<usize> = series_ids
            .iter()
            .map(|&sid| self.buf_index(sid, stream))
            .collect();
        let groups = RowGroups::of(
            &same_buffer_same_group(&table.row_series, &local),
            local.len(),
        );
        let columns = ColumnOrder::of(table, field_ids);
        let mut picked = Vec::new();
        for (series, rows) in groups.iter() {
            let buf = &mut self.bufs[local[series]];
            let base = buf.times.len() as u32;
            let mut from = 0;
            for &c in &columns.by_field {
                let (col, fid) = (&table.columns[c], field_ids[c] as u32);
                let ty = col.data.field_type();
                if columns.dense[c] {
                    let pos = buf.field_at(&mut from, fid, ty, base);
                    buf.fields[pos].extend_dense(base, rows, &col.data);
                    continue;
                }
                picked.clear();
                picked.extend(
                    (0u32..)
                        .zip(rows.iter().copied())
                        .filter(|&(_, row)| col.valid[row as usize]),
                );
                if let Some(&(first, _)) = picked.first() {
                    let pos = buf.field_at(&mut from, fid, ty, base + first);
                    buf.fields[pos].extend(base, &picked, &col.data);
                }
            }
            buf.append_times(rows.iter().map(|&row| table.times[row as usize]));
        }
        let mut touched = local;
        touched.sort_unstable();
        touched.dedup();
        for i in touched {
            let buf = &mut self.bufs[i];
            buf.order.take();
            let now = buf.heap_bytes();
            self.buf_bytes = self.buf_bytes - buf.bytes + now;
            buf.bytes = now;
        }
    }
    /// Normalized rows of `series` with `first <= time <= last` for the given fields.
    pub fn read(
        &self,
        series: SeriesId,
        first: i64,
        last: i64,
        fields: &[(String, FieldType)],
        field_ids: &[Option<usize>],
    ) -> Option<Rows> {
        let buf = self.get(series)?;
        let rows = if buf.strictly_sorted {
            let range = time_range(&buf.times, first, last)?;
            buf.to_rows(fields, field_ids, range)
        } else if let Some(order) = buf.distinct_order(first, last) {
            // Late rows, no two at one time: the rows in range in time order.
            buf.gather(fields, field_ids, order)
        } else {
            buf.to_rows(fields, field_ids, 0..buf.times.len())
                .normalize()
                .into_time_range(first, last)
        };
        (!rows.is_empty()).then_some(rows)
    }

    /// Like [`Memtable::read`], every point of `series` in range (a point holds a value of some
    /// field of its stream, `all` of them being `all_fields`), with which rows hold one: `None`
    /// when all do. A row may lack a value of every requested field and still be a point.
    pub fn read_points(
        &self,
        series: SeriesId,
        (first, last): (i64, i64),
        all_fields: &[(String, FieldType)],
        wanted: &[usize],
    ) -> Option<(Rows, Option<Vec<bool>>)> {
        let buf = self.get(series)?;
        let fields: Vec<(String, FieldType)> =
            wanted.iter().map(|&i| all_fields[i].clone()).collect();
        let ids: Vec<Option<usize>> = wanted.iter().map(|&i| Some(i)).collect();
        if buf.strictly_sorted {
            let range = time_range(&buf.times, first, last)?;
            let exists = buf.rows_with_values(&range);
            return Some((buf.to_rows(&fields, &ids, range), exists));
        }
        let all = 0..buf.times.len();
        if let Some(order) = buf.distinct_order(first, last) {
            // No two writes at one time: gather the rows in range in time order, only the
            // requested fields.
            if order.is_empty() {
                return None;
            }
            let rows = buf.gather(&fields, &ids, order);
            let exists = (buf.rows_with_values(&all))
                .map(|e| order.iter().map(|&i| e[i as usize]).collect());
            return Some((rows, exists));
        }
        // Duplicates merge first, so a row's values are those of every write at its time.
        let all_ids: Vec<Option<usize>> = (0..all_fields.len()).map(Some).collect();
        let rows = buf
            .to_rows(all_fields, &all_ids, 0..buf.times.len())
            .normalize()
            .into_time_range(first, last);
        if rows.is_empty() {
            return None;
        }
        let exists = (0..rows.len())
            .map(|i| rows.columns.iter().any(|c| c.valid[i]))
            .collect();
        let Rows { times, mut columns } = rows;
        let mut picked: Vec<Option<Column>> = columns.drain(..).map(Some).collect();
        let columns = wanted.iter().filter_map(|&i| picked[i].take()).collect();
        Some((Rows { times, columns }, Some(exists)))
    }

    /// The series of each stream, in increasing id order, streams in increasing id order.
    pub fn series_by_stream(&self) -> Vec<(StreamId, Vec<SeriesId>)> {
        let mut ids: Vec<(StreamId, SeriesId)> = (self.index.iter())
            .map(|(&sid, &b)| (self.bufs[b as usize].stream, sid))
            .collect();
        ids.sort_unstable();
        let mut out: Vec<(StreamId, Vec<SeriesId>)> = Vec::new();
        for (stream, sid) in ids {
            match out.last_mut() {
                Some((s, sids)) if *s == stream => sids.push(sid),
                _ => out.push((stream, vec![sid])),
            }
        }
        out
    }

    /// Every row of series `sid`, normalized, over all of `fields` (its stream's schema); `None`
    /// for a series the memtable does not hold.
    pub fn series_rows(&self, sid: SeriesId, fields: &[(String, FieldType)]) -> Option<Rows> {
        let buf = &self.bufs[*self.index.get(&sid)? as usize];
        let field_ids: Vec<Option<usize>> = (0..fields.len()).map(Some).collect();
        Some(
            buf.to_rows(fields, &field_ids, 0..buf.times.len())
                .normalize(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SeriesKey, Value};

    fn table(times: &[i64], vals: &[f64]) -> TableWrite {
        let mut c = Column::new("v", FieldType::Float);
        for v in vals {
            c.data.push_value(&Value::Float(*v));
            c.valid.push(true);
        }
        TableWrite {
            stream: "s".into(),
            series: vec![SeriesKey::default()],
            row_series: vec![0; times.len()],
            times: times.to_vec(),
            columns: vec![c],
        }
    }

    /// One row per entry: time and, per field id 0..3, an optional string value.
    fn sparse_table(rows: &[(i64, [Option<&str>; 3])]) -> TableWrite {
        let mut columns: Vec<Column> = (0..3)
            .map(|i| Column::new(format!("c{i}"), FieldType::String))
            .collect();
        for (_, vals) in rows {
            for (c, v) in columns.iter_mut().zip(vals) {
                match v {
                    Some(v) => {
                        c.data.push_value(&Value::String(v.to_string()));
                        c.valid.push(true);
                    }
                    None => c.push_null(),
                }
            }
        }
        TableWrite {
            stream: "s".into(),
            series: vec![SeriesKey::default()],
            row_series: vec![0; rows.len()],
            times: rows.iter().map(|r| r.0).collect(),
            columns,
        }
    }

    /// A batch of rows `(series, time, values of fields 0..3)` over series `0..series`.
    fn interleaved_table(series: usize, rows: &[(u32, i64, [Option<i64>; 3])]) -> TableWrite {
        let mut columns: Vec<Column> = (0..3)
            .map(|i| Column::new(format!("c{i}"), FieldType::Integer))
            .collect();
        for (_, _, vals) in rows {
            for (c, v) in columns.iter_mut().zip(vals) {
                match v {
                    Some(v) => {
                        c.data.push_value(&Value::Integer(*v));
                        c.valid.push(true);
                    }
                    None => c.push_null(),
                }
            }
        }
        TableWrite {
            stream: "s".into(),
            series: (0..series)
                .map(|i| SeriesKey {
                    device: format!("d{i}"),
                    tags: Vec::new(),
                })
                .collect(),
            row_series: rows.iter().map(|r| r.0).collect(),
            times: rows.iter().map(|r| r.1).collect(),
            columns,
        }
    }

    #[test]
    fn two_batch_series_of_one_id_keep_their_row_order() {
        // Batch series 0 and 1 both map to series id 7; rows alternate between them.
        let rows = [
            (0, 1, [Some(1), None, None]),
            (1, 1, [Some(2), None, None]),
            (0, 2, [Some(3), None, None]),
            (1, 3, [Some(4), None, None]),
        ];
        let mut m = Memtable::default();
        m.apply(0, &interleaved_table(2, &rows), &[7, 7], &[0, 1, 2]);
        let buf = m.get(7).unwrap();
        assert_eq!(buf.times, vec![1, 1, 2, 3], "rows in batch order");
        let fields: Vec<(String, FieldType)> = (0..3)
            .map(|i| (format!("c{i}"), FieldType::Integer))
            .collect();
        let read = m
            .read(7, i64::MIN, i64::MAX, &fields, &[Some(0), None, None])
            .unwrap();
        assert_eq!(read.times, vec![1, 2, 3]);
        assert_eq!(
            read.columns[0].get(0),
            Some(Value::Integer(2)),
            "the later row wins"
        );
    }

    proptest::proptest! {
        /// Batches whose rows interleave series, with gaps in some fields (a field with a value
        /// on every row of a batch takes the dense path) and the table's columns in any order of
        /// field ids, read back per series as the rows written to it, in write order (the
        /// model: one list of rows per series, values by field id).
        #[test]
        fn interleaved_sparse_batches_read_back_per_series(
            batches in proptest::collection::vec(
                (
                    proptest::collection::vec(
                        (0u32..4, 0i64..1_000, proptest::array::uniform3(
                            proptest::option::weighted(0.7, -50i64..50))),
                        0..30),
                    proptest::array::uniform3(proptest::bool::ANY),
                ),
                1..5),
            order in 0usize..6,
        ) {
            // Column c of every table is field `ids[c]`.
            let ids = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]][order];
            let mut m = Memtable::default();
            let mut model: Vec<Vec<(i64, [Option<i64>; 3])>> = vec![Vec::new(); 4];
            let mut clock = 0i64;
            for (batch, dense) in &batches {
                // Times rise, so a read returns each series' rows in write order.
                let rows: Vec<_> = batch
                    .iter()
                    .map(|&(s, step, mut v)| {
                        clock += 1 + step;
                        for c in 0..3 {
                            if dense[c] {
                                v[c] = Some(v[c].unwrap_or(c as i64));
                            }
                        }
                        let mut by_id = [None; 3];
                        for c in 0..3 {
                            by_id[ids[c]] = v[c];
                        }
                        model[s as usize].push((clock, by_id));
                        (s, clock, v)
                    })
                    .collect();
                m.apply(0, &interleaved_table(4, &rows), &[10, 11, 12, 13], &ids);
            }
            let fields: Vec<(String, FieldType)> =
                (0..3).map(|i| (format!("c{i}"), FieldType::Integer)).collect();
            for (s, want) in model.iter().enumerate() {
                let got = m.read(10 + s as u32, i64::MIN, i64::MAX, &fields, &[Some(0), Some(1), Some(2)]);
                // A series without rows has no buffer, or one without rows.
                let got_rows: Vec<(i64, [Option<i64>; 3])> = got
                    .map(|r| {
                        (0..r.times.len())
                            .map(|i| {
                                let v = |c: usize| match r.columns[c].get(i) {
                                    Some(Value::Integer(x)) => Some(x),
                                    _ => None,
                                };
                                (r.times[i], [v(0), v(1), v(2)])
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                proptest::prop_assert_eq!(&got_rows, want);
            }
        }
    }

    #[test]
    fn sparse_fields_read_back_at_their_rows() {
        let mut m = Memtable::default();
        // c0 dense from row 0, c1 starts late and then has a gap (becomes sparse), c2 never written.
        m.apply(
            0,
            &sparse_table(&[
                (1, [Some("a"), None, None]),
                (2, [Some("b"), Some("x"), None]),
            ]),
            &[3],
            &[0, 1, 2],
        );
        m.apply(
            0,
            &sparse_table(&[
                (3, [Some("c"), None, None]),
                (4, [Some("d"), Some("yy"), None]),
            ]),
            &[3],
            &[0, 1, 2],
        );
        let buf = m.get(3).unwrap();
        assert_eq!(buf.fields.len(), 2, "no buffer for a field never written");
        assert!(!buf.fields[0].sparse && buf.fields[1].sparse);
        let fields: Vec<(String, FieldType)> = (0..3)
            .map(|i| (format!("c{i}"), FieldType::String))
            .collect();
        let rows = m
            .read(3, i64::MIN, i64::MAX, &fields, &[Some(0), Some(1), Some(2)])
            .unwrap();
        assert_eq!(rows.times, vec![1, 2, 3, 4]);
        let col = |i: usize| (0..4).map(|r| rows.columns[i].get(r)).collect::<Vec<_>>();
        let s = |v: &str| Some(Value::String(v.into()));
        assert_eq!(col(0), vec![s("a"), s("b"), s("c"), s("d")]);
        assert_eq!(col(1), vec![None, s("x"), None, s("yy")]);
        assert_eq!(col(2), vec![None, None, None, None]);
        let slice = m.read(3, 2, 3, &fields, &[Some(0), Some(1), None]).unwrap();
        assert_eq!(slice.times, vec![2, 3]);
        assert_eq!(slice.columns[1].get(0), s("x"));
        assert_eq!(slice.columns[1].get(1), None);
    }

    /// A read of any time range equals the same range of a read of everything, and a read of
    /// points marks the rows holding a value of any field (whichever fields are read).
    #[test]
    fn reads_of_every_range_and_which_points_hold_values() {
        let mut m = Memtable::default();
        // c0 dense then sparse, c1 from row 1 then sparse, c2 dense from row 5; row 2 empty.
        m.apply(
            0,
            &sparse_table(&[
                (1, [Some("a"), None, None]),
                (2, [Some("b"), Some("x"), None]),
                (3, [None, None, None]),
                (4, [None, Some("y"), None]),
                (5, [Some("c"), Some("z"), None]),
                (6, [Some("d"), None, Some("w")]),
                (7, [None, None, Some("v")]),
            ]),
            &[3],
            &[0, 1, 2],
        );
        let all: Vec<(String, FieldType)> = (0..3)
            .map(|i| (format!("c{i}"), FieldType::String))
            .collect();
        let ids = [Some(0), Some(1), Some(2)];
        let full = m.read(3, i64::MIN, i64::MAX, &all, &ids).unwrap();
        let holds = |r: &Rows, i: usize| r.columns.iter().any(|c| c.valid[i]);
        for first in 0..=8 {
            for last in first..=8 {
                let want = full.slice_time(first, last);
                let got = m.read(3, first, last, &all, &ids);
                assert_eq!(
                    got.as_ref().map(|r| &r.times),
                    (!want.is_empty()).then_some(&want.times)
                );
                if let Some(got) = &got {
                    for (g, w) in got.columns.iter().zip(&want.columns) {
                        assert_eq!((&g.valid, &g.data), (&w.valid, &w.data), "{first}..={last}");
                    }
                }
                for wanted in [vec![1], vec![2, 0], vec![]] {
                    let Some((rows, exists)) = m.read_points(3, (first, last), &all, &wanted)
                    else {
                        assert!(want.is_empty());
                        continue;
                    };
                    assert_eq!(rows.times, want.times);
                    assert_eq!(rows.columns.len(), wanted.len());
                    for (c, &i) in rows.columns.iter().zip(&wanted) {
                        assert_eq!(
                            (&c.name, &c.valid),
                            (&want.columns[i].name, &want.columns[i].valid)
                        );
                    }
                    let expect: Vec<bool> = (0..want.len()).map(|i| holds(&want, i)).collect();
                    match exists {
                        None => assert!(expect.iter().all(|e| *e), "{first}..={last}"),
                        Some(e) => assert_eq!(e, expect, "{first}..={last}"),
                    }
                }
            }
        }
        // Only c2 holds values at times 6 and 7, densely: known without looking at rows.
        assert_eq!(m.read_points(3, (6, 7), &all, &[0]).unwrap().1, None);
        assert_eq!(
            m.read_points(3, (2, 3), &all, &[0]).unwrap().1,
            Some(vec![true, false])
        );
        // Late writes at new times (one without any value): the buffer is unsorted, its times
        // distinct, and every range still equals the same range of a full read.
        m.apply(
            0,
            &sparse_table(&[(9, [Some("n"), None, None])]),
            &[4],
            &[0, 1, 2],
        );
        m.apply(
            0,
            &sparse_table(&[
                (2, [None, Some("l"), None]),
                (5, [None, None, None]),
                (0, [None, None, Some("e")]),
            ]),
            &[4],
            &[0, 1, 2],
        );
        assert!(!m.get(4).unwrap().strictly_sorted);
        let full = m.read(4, i64::MIN, i64::MAX, &all, &ids).unwrap();
        assert_eq!(full.times, vec![0, 2, 5, 9]);
        for first in 0..=10 {
            for last in first..=10 {
                let want = full.slice_time(first, last);
                let Some((rows, exists)) = m.read_points(4, (first, last), &all, &[1]) else {
                    assert!(want.is_empty(), "{first}..={last}");
                    continue;
                };
                assert_eq!(rows.times, want.times);
                assert_eq!(rows.columns[0].valid, want.columns[1].valid);
                let expect: Vec<bool> = (0..want.len()).map(|i| holds(&want, i)).collect();
                assert_eq!(exists, Some(expect), "{first}..={last}");
            }
        }
        // A late write at time 3 makes that row a point; the buffer is no longer sorted.
        m.apply(
            0,
            &sparse_table(&[(3, [None, None, Some("late")])]),
            &[3],
            &[0, 1, 2],
        );
        let (rows, exists) = m.read_points(3, (2, 4), &all, &[0]).unwrap();
        assert_eq!(rows.times, vec![2, 3, 4]);
        assert_eq!(exists, Some(vec![true, true, true]));
        assert_eq!(rows.columns[0].valid, vec![true, false, false]);
    }

    #[test]
    fn bytes_count_capacity_and_grow_with_values_not_with_known_fields() {
        let mut m = Memtable::default();
        assert_eq!(m.bytes(), 0);
        m.apply(0, &table(&[1], &[1.0]), &[1], &[999]);
        let one = m.bytes();
        assert!(one >= 16, "{one}");
        let buf = m.get(1).unwrap();
        assert_eq!(buf.fields.len(), 1);
        assert_eq!(buf.bytes, buf.heap_bytes());
        for t in 2..100 {
            m.apply(0, &table(&[t], &[1.0]), &[1], &[999]);
        }
        let buf = m.get(1).unwrap();
        assert!(buf.times.capacity() >= 99);
        assert!(m.bytes() >= buf.times.capacity() * 8 * 2);
    }

    #[test]
    fn out_of_order_and_duplicates_resolve_on_read() {
        let mut m = Memtable::default();
        m.apply(0, &table(&[3, 1, 2], &[3.0, 1.0, 2.0]), &[7], &[0]);
        m.apply(0, &table(&[1], &[10.0]), &[7], &[0]);
        let fields = [("v".to_string(), FieldType::Float)];
        let rows = m.read(7, i64::MIN, i64::MAX, &fields, &[Some(0)]).unwrap();
        assert_eq!(rows.times, vec![1, 2, 3]);
        assert_eq!(
            rows.columns[0].data,
            ColumnData::Float(vec![10.0, 2.0, 3.0])
        );
        assert!(m.read(7, 4, 10, &fields, &[Some(0)]).is_none());
    }

    /// Every range of `m`'s series 7 read as it is equals the same range of the whole buffer
    /// normalized (sorted, duplicates merged).
    fn reads_equal_normalized(m: &Memtable, label: &str) {
        let fields = [("v".to_string(), FieldType::Float)];
        let all = m.series_rows(7, &fields).unwrap();
        for first in -1..=12 {
            for last in first..=12 {
                let got = m.read(7, first, last, &fields, &[Some(0)]);
                let want = all.slice_time(first, last);
                match got {
                    None => assert!(want.is_empty(), "{label} [{first}, {last}]"),
                    Some(got) => {
                        assert_eq!(got.times, want.times, "{label} [{first}, {last}]");
                        assert_eq!(got.columns, want.columns, "{label} [{first}, {last}]");
                    }
                }
            }
        }
    }

    #[test]
    fn late_rows_keep_their_time_order_until_the_next_write() {
        let mut m = Memtable::default();
        m.apply(0, &table(&[2, 5, 8], &[2.0, 5.0, 8.0]), &[7], &[0]);
        m.apply(0, &table(&[1, 6], &[1.0, 6.0]), &[7], &[0]);
        reads_equal_normalized(&m, "late rows");
        // The time order found by those reads is kept; a write must drop it.
        assert!(m.get(7).unwrap().order.get().is_some());
        m.apply(0, &table(&[3, 10], &[3.0, 10.0]), &[7], &[0]);
        assert!(m.get(7).unwrap().order.get().is_none());
        reads_equal_normalized(&m, "more late rows");
        // A rewrite of a time: the rows merge (the later value wins).
        m.apply(0, &table(&[5], &[50.0]), &[7], &[0]);
        reads_equal_normalized(&m, "a rewrite");
        let fields = [("v".to_string(), FieldType::Float)];
        let rows = m.read(7, 5, 5, &fields, &[Some(0)]).unwrap();
        assert_eq!(rows.columns[0].data, ColumnData::Float(vec![50.0]));
    }
}
