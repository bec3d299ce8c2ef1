//! The memtable: per-series columnar buffers holding writes since the last flush, in write order.
//! Appends are O(1); out-of-order and duplicate timestamps are resolved (last write wins) when rows
//! are read or flushed, by the shared merge in [`crate::rows`].

use foldhash::HashMap;
use std::time::Instant;

use crate::catalog::StreamId;
use crate::rows::Rows;
use crate::{Column, ColumnData, FieldType, SeriesId, TableWrite};

/// Buffered rows of one series; `columns[field_id]` exists once the field was written.
#[derive(Debug)]
struct SeriesBuf {
    stream: StreamId,
    times: Vec<i64>,
    columns: Vec<Option<Column>>,
    strictly_sorted: bool,
}

impl SeriesBuf {
    fn column(&mut self, fid: usize, name: &str, ty: FieldType) -> &mut Column {
        if self.columns.len() <= fid {
            self.columns.resize_with(fid + 1, || None);
        }
        let rows = self.times.len();
        self.columns[fid].get_or_insert_with(|| {
            let mut c = Column::new(name, ty);
            (0..rows).for_each(|_| c.push_null());
            c
        })
    }

    /// Copies the rows into `Rows` with one column per requested field id.
    fn to_rows(&self, fields: &[(String, FieldType)], field_ids: &[Option<usize>]) -> Rows {
        let columns = fields
            .iter()
            .zip(field_ids)
            .map(|((name, ty), fid)| {
                match fid
                    .and_then(|f| self.columns.get(f))
                    .and_then(Option::as_ref)
                {
                    Some(c) => c.clone(),
                    None => {
                        let mut c = Column::new(name.clone(), *ty);
                        (0..self.times.len()).for_each(|_| c.push_null());
                        c
                    }
                }
            })
            .collect();
        Rows {
            times: self.times.clone(),
            columns,
        }
    }
}

/// Writes not yet in segments.
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    /// Buffers in creation order; `index` maps a series id to its position.
    bufs: Vec<SeriesBuf>,
    index: HashMap<SeriesId, u32>,
    bytes: usize,
    first_write: Option<Instant>,
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
                columns: Vec::new(),
                strictly_sorted: true,
            });
        }
        pos as usize
    }

    fn get(&self, sid: SeriesId) -> Option<&SeriesBuf> {
        self.index.get(&sid).map(|&i| &self.bufs[i as usize])
    }

    /// Approximate memory held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest buffered write arrived.
    pub fn first_write(&self) -> Option<Instant> {
        self.first_write
    }

    /// Appends the rows of a validated table write. `series_ids[i]` is the id of `table.series[i]`,
    /// `field_ids[c]` the stream field id of `table.columns[c]`.
    pub fn apply(
        &mut self,
        stream: StreamId,
        table: &TableWrite,
        series_ids: &[SeriesId],
        field_ids: &[usize],
    ) {
        self.first_write.get_or_insert_with(Instant::now);
        let local: Vec<usize> = series_ids
            .iter()
            .map(|&sid| self.buf_index(sid, stream))
            .collect();
        for row in 0..table.len() {
            let buf = &mut self.bufs[local[table.row_series[row] as usize]];
            let ts = table.times[row];
            if buf.times.last().is_some_and(|&last| last >= ts) {
                buf.strictly_sorted = false;
            }
            for (col, &fid) in table.columns.iter().zip(field_ids) {
                let dst = buf.column(fid, &col.name, col.data.field_type());
                dst.data.push_from(&col.data, row);
                dst.valid.push(col.valid[row]);
                self.bytes += value_bytes(&col.data, row);
            }
            buf.times.push(ts);
            let rows = buf.times.len();
            for c in buf
                .columns
                .iter_mut()
                .flatten()
                .filter(|c| c.valid.len() < rows)
            {
                c.push_null();
            }
            self.bytes += 16;
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
            let lo = buf.times.partition_point(|&t| t < first);
            let hi = buf.times.partition_point(|&t| t <= last).max(lo);
            if lo == hi {
                return None;
            }
            buf.to_rows(fields, field_ids).select(lo..hi)
        } else {
            buf.to_rows(fields, field_ids)
                .normalize()
                .slice_time(first, last)
        };
        (!rows.is_empty()).then_some(rows)
    }

    /// Every series with its stream, as normalized rows over all of `schema(stream)`'s fields.
    pub fn drain_sorted<'a>(
        &'a self,
        schema: impl Fn(StreamId) -> &'a [(String, FieldType)] + 'a,
    ) -> impl Iterator<Item = (StreamId, SeriesId, Rows)> + 'a {
        let mut ids: Vec<SeriesId> = self.index.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter().map(move |sid| {
            let buf = &self.bufs[self.index[&sid] as usize];
            let fields = schema(buf.stream);
            let field_ids: Vec<Option<usize>> = (0..fields.len()).map(Some).collect();
            (buf.stream, sid, buf.to_rows(fields, &field_ids).normalize())
        })
    }
}

fn value_bytes(data: &ColumnData, row: usize) -> usize {
    match data {
        ColumnData::String(s) => 9 + s.get(row).len(),
        ColumnData::Boolean(_) => 2,
        _ => 9,
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
}
