//! Merging many small write batches (one per MQTT message) into one batch per group commit:
//! one table per stream, series deduplicated, columns matched by name. A type conflict between
//! the batches makes the merge fail so the caller can fall back to writing them one by one.

use foldhash::HashMap;
use strata_storage::{Column, ColumnData, SeriesKey, TableWrite, WriteBatch};

/// The batches cannot be merged (different databases, conflicting field types, or a batch that
/// is not well formed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unmergeable;

#[derive(Debug, Default)]
struct Table {
    write: TableWrite,
    series: HashMap<SeriesKey, u32>,
    columns: HashMap<String, usize>,
}

/// Accumulates batches.
#[derive(Debug, Default)]
pub(crate) struct Merger {
    database: Option<String>,
    tables: Vec<Table>,
    by_stream: HashMap<String, usize>,
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
                let idx = self.table(&table.stream);
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

    fn table(&mut self, stream: &str) -> usize {
        if let Some(&idx) = self.by_stream.get(stream) {
            return idx;
        }
        let mut t = Table::default();
        t.write.stream = stream.to_owned();
        self.tables.push(t);
        self.by_stream
            .insert(stream.to_owned(), self.tables.len() - 1);
        self.tables.len() - 1
    }
}

impl Table {
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
