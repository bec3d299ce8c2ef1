//! Merging many small write batches (one per MQTT message) into one batch per group commit:
//! series deduplicated, columns matched by name. Messages of a stream go into one table as long
//! as widening them to the table's columns stays cheap; when messages write mostly different
//! fields (a sparse schema), a new table of the same stream is started instead, so the merged batch
//! holds at most about twice the slots of the messages themselves, never messages × all fields.
//! Rows keep their order per stream (tables of a stream follow each other), so last-write-wins is
//! unchanged. A type conflict between the batches makes the merge fail so the caller can fall back
//! to writing them one by one.

use foldhash::HashMap;
use strata_storage::{Column, ColumnData, FieldType, SeriesKey, TableWrite, WriteBatch};

/// Null slots a table may hold beyond twice the slots of its messages before a new table of the
/// same stream is started.
const SLACK_SLOTS: usize = 64;

/// The batches cannot be merged (different databases, conflicting field types, or a batch that
/// is not well formed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unmergeable;

#[derive(Debug, Default)]
struct Table {
    write: TableWrite,
    series: HashMap<SeriesKey, u32>,
    columns: HashMap<String, usize>,
    /// Slots (rows × columns) of the messages appended, each at its own width.
    own_slots: usize,
}

/// Accumulates batches.
#[derive(Debug, Default)]
pub(crate) struct Merger {
    database: Option<String>,
    tables: Vec<Table>,
    /// The table of each stream that takes its next rows.
    current: HashMap<String, usize>,
    /// Field types per stream over all its tables.
    types: HashMap<(String, String), FieldType>,
}

impl Merger {
    /// Appends every row of `batch`. After an error the merger is unusable.
    pub(crate) fn add(&mut self, batch: &WriteBatch) -> Result<(), Unmergeable> {
        if batch.rows() == 0 {
            return Ok(());
        }
        match &self.database {
            Some(db) if *db != batch.database => return Err(Unmergeable),
            Some(_) => {}
            None => self.database = Some(batch.database.clone()),
        }
        for table in &batch.tables {
            if !table.is_empty() {
                self.check_types(table)?;
                let idx = self.table(table);
                self.tables[idx].append(table)?;
            }
        }
        Ok(())
    }

    /// The merged batch.
    pub(crate) fn finish(self) -> WriteBatch {
        WriteBatch {
            database: self.database.unwrap_or_default(),
            tables: self.tables.into_iter().map(|t| t.write).collect(),
        }
    }

    fn check_types(&mut self, src: &TableWrite) -> Result<(), Unmergeable> {
        for c in &src.columns {
            let key = (src.stream.clone(), c.name.clone());
            let ty = c.data.field_type();
            if *self.types.entry(key).or_insert(ty) != ty {
                return Err(Unmergeable);
            }
        }
        Ok(())
    }

    /// The table `src` goes into: the stream's current table, or a new one when widening would
    /// cost more than the slack allows.
    fn table(&mut self, src: &TableWrite) -> usize {
        if let Some(&idx) = self
            .current
            .get(&src.stream)
            .filter(|&&idx| self.tables[idx].fits(src))
        {
            return idx;
        }
        let mut t = Table::default();
        t.write.stream = src.stream.clone();
        self.tables.push(t);
        let idx = self.tables.len() - 1;
        self.current.insert(src.stream.clone(), idx);
        idx
    }
}

impl Table {
    /// True when appending `src` keeps the table's slots within twice its messages' own slots
    /// plus [`SLACK_SLOTS`].
    fn fits(&self, src: &TableWrite) -> bool {
        let rows = src.times.len();
        let added = src
            .columns
            .iter()
            .filter(|c| !self.columns.contains_key(&c.name))
            .count();
        let width = self.write.columns.len() + added;
        let after = (self.write.times.len() + rows).saturating_mul(width);
        let own = self.own_slots + rows * src.columns.len();
        after <= own.saturating_mul(2) + SLACK_SLOTS
    }

    fn append(&mut self, src: &TableWrite) -> Result<(), Unmergeable> {
        let rows = src.times.len();
        if src.row_series.len() != rows {
            return Err(Unmergeable);
        }
        let series: Vec<u32> = src.series.iter().map(|k| self.series_index(k)).collect();
        let targets = self.column_targets(src)?;
        for column in &self.write.columns {
            if column.valid.len() != self.write.times.len() {
                return Err(Unmergeable);
            }
        }
        for (c, &target) in src.columns.iter().zip(&targets) {
            if c.valid.len() != rows || c.data.len() != rows {
                return Err(Unmergeable);
            }
            let dst = &mut self.write.columns[target];
            extend(&mut dst.data, &c.data)?;
            dst.valid.extend_from_slice(&c.valid);
        }
        for column in &mut self.write.columns {
            while column.valid.len() < self.write.times.len() + rows {
                column.push_null();
            }
        }
        for &s in &src.row_series {
            let idx = series.get(s as usize).copied().ok_or(Unmergeable)?;
            self.write.row_series.push(idx);
        }
        self.write.times.extend_from_slice(&src.times);
        self.own_slots += rows * src.columns.len();
        Ok(())
    }

    fn series_index(&mut self, key: &SeriesKey) -> u32 {
        if let Some(&idx) = self.series.get(key) {
            return idx;
        }
        let idx = u32::try_from(self.write.series.len()).unwrap_or(u32::MAX);
        self.write.series.push(key.clone());
        self.series.insert(key.clone(), idx);
        idx
    }

    /// The destination column of each source column, created (with empty slots for the rows so
    /// far) when new.
    fn column_targets(&mut self, src: &TableWrite) -> Result<Vec<usize>, Unmergeable> {
        let mut targets = Vec::with_capacity(src.columns.len());
        for c in &src.columns {
            let idx = match self.columns.get(&c.name) {
                Some(&idx) => idx,
                None => {
                    let mut column = Column::new(c.name.clone(), c.data.field_type());
                    for _ in 0..self.write.times.len() {
                        column.push_null();
                    }
                    self.write.columns.push(column);
                    self.columns
                        .insert(c.name.clone(), self.write.columns.len() - 1);
                    self.write.columns.len() - 1
                }
            };
            if self.write.columns[idx].data.field_type() != c.data.field_type()
                || targets.contains(&idx)
            {
                return Err(Unmergeable);
            }
            targets.push(idx);
        }
        Ok(targets)
    }
}

/// Appends all slots of `src` to `dst` (same type).
fn extend(dst: &mut ColumnData, src: &ColumnData) -> Result<(), Unmergeable> {
    match (dst, src) {
        (ColumnData::Float(d), ColumnData::Float(s)) => d.extend_from_slice(s),
        (ColumnData::Integer(d), ColumnData::Integer(s)) => d.extend_from_slice(s),
        (ColumnData::Unsigned(d), ColumnData::Unsigned(s)) => d.extend_from_slice(s),
        (ColumnData::Boolean(d), ColumnData::Boolean(s)) => d.extend_from_slice(s),
        (ColumnData::String(d), ColumnData::String(s)) => s.iter().for_each(|v| d.push(v)),
        _ => return Err(Unmergeable),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line_protocol::{ParseOptions, parse};

    fn lp(text: &str) -> WriteBatch {
        let opts = ParseOptions {
            default_time: 0,
            ..ParseOptions::default()
        };
        parse(text.as_bytes(), "db", &opts).unwrap()
    }

    #[test]
    fn merges_streams_series_and_columns() {
        let mut m = Merger::default();
        m.add(&lp("a,device=x v=1 1\nb,device=x s=\"q\" 2"))
            .unwrap();
        m.add(&lp("a,device=y w=2i 3\na,device=x v=3,w=4i 4"))
            .unwrap();
        m.add(&WriteBatch::default()).unwrap();
        let b = m.finish();
        let expected =
            lp("a,device=x v=1 1\na,device=y w=2i 3\na,device=x v=3,w=4i 4\nb,device=x s=\"q\" 2");
        assert_eq!(b.tables.len(), 2);
        for (got, want) in b.tables.iter().zip(&expected.tables) {
            assert_eq!(got.times, want.times);
            assert_eq!(got.row_series, want.row_series);
            assert_eq!(got.series, want.series);
            assert_eq!(got.columns, want.columns);
        }
    }

    /// (stream, time, device, field, value) of every present value, in batch order.
    fn values(b: &WriteBatch) -> Vec<(String, i64, String, String, String)> {
        let mut out = Vec::new();
        for t in &b.tables {
            for row in 0..t.len() {
                for c in &t.columns {
                    if let Some(v) = c.get(row) {
                        let device = t.series[t.row_series[row] as usize].device.clone();
                        out.push((
                            t.stream.clone(),
                            t.times[row],
                            device,
                            c.name.clone(),
                            format!("{v:?}"),
                        ));
                    }
                }
            }
        }
        out
    }

    fn slots(b: &WriteBatch) -> usize {
        b.tables.iter().map(|t| t.len() * t.columns.len()).sum()
    }

    #[test]
    fn sparse_messages_are_not_widened_to_every_field() {
        let mut m = Merger::default();
        let mut inputs = Vec::new();
        for i in 0..300 {
            let f = (i * 3) % 1000;
            let text = format!(
                "a,device=d{} f{f}={i},f{}={i},f{}={i} {i}",
                i % 7,
                f + 1,
                f + 2
            );
            inputs.push(lp(&text));
            m.add(inputs.last().unwrap()).unwrap();
        }
        let merged = m.finish();
        let own: usize = inputs.iter().map(slots).sum();
        assert_eq!(own, 900);
        assert!(
            slots(&merged) <= 2 * own + SLACK_SLOTS * merged.tables.len(),
            "{} slots for {own} values in {} tables",
            slots(&merged),
            merged.tables.len()
        );
        assert!(merged.tables.len() > 1);
        let expected: Vec<_> = inputs.iter().flat_map(values).collect();
        assert_eq!(values(&merged), expected);
    }

    #[test]
    fn dense_messages_share_one_table_and_order_is_kept_per_stream() {
        let mut m = Merger::default();
        let mut inputs = Vec::new();
        for i in 0..50 {
            let text = if i % 10 == 9 {
                format!("a,device=x other{i}=1 {}", i / 2)
            } else {
                format!("a,device=x v={i},w={i} {}\nb,device=y v={i} {i}", i / 2)
            };
            inputs.push(lp(&text));
            m.add(inputs.last().unwrap()).unwrap();
        }
        let merged = m.finish();
        assert!(merged.tables.len() <= 3, "{} tables", merged.tables.len());
        let per_stream = |stream: &str, vals: Vec<(String, i64, String, String, String)>| {
            vals.into_iter()
                .filter(|v| v.0 == stream)
                .collect::<Vec<_>>()
        };
        let expected: Vec<_> = inputs.iter().flat_map(values).collect();
        for stream in ["a", "b"] {
            assert_eq!(
                per_stream(stream, values(&merged)),
                per_stream(stream, expected.clone())
            );
        }
    }

    #[test]
    fn conflicts_are_unmergeable() {
        let mut m = Merger::default();
        m.add(&lp("a v=1 1")).unwrap();
        assert_eq!(m.add(&lp("a v=1i 1")), Err(Unmergeable));
        let mut m = Merger::default();
        m.add(&lp("a v=1 1")).unwrap();
        let mut other = lp("a v=1 1");
        other.database = "other".into();
        assert_eq!(m.add(&other), Err(Unmergeable));
    }
}
