//! Assembles decoded JSON rows into one [`TableWrite`] per stream: series deduplicated by key,
//! one column per field name (created on first use with empty slots for earlier rows), one slot
//! per row in every column, and the slot budget that bounds sparse payloads.

use foldhash::HashMap;

use strata_storage::{Column, FieldType, SeriesKey, TableWrite, Value};

/// Why a row could not be added.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RowError {
    /// The field already has another type in this payload.
    Conflict {
        /// Field name.
        field: String,
        /// Type fixed by an earlier record.
        existing: FieldType,
        /// Record (0-based) that fixed it.
        first_record: usize,
        /// Type of the rejected value.
        found: FieldType,
    },
    /// The row names the field twice (e.g. `"a.b"` and `{"a": {"b": ...}}`).
    Duplicate(String),
    /// The payload needs more column slots than its budget.
    Budget(usize),
}

/// One stream's rows being assembled.
#[derive(Debug, Default)]
struct Table {
    write: TableWrite,
    series: HashMap<SeriesKey, u32>,
    columns: HashMap<String, usize>,
    /// Record that fixed the type of each column.
    fixed_by: Vec<usize>,
}

/// All rows of one payload.
#[derive(Debug)]
pub(crate) struct Builder {
    tables: Vec<Table>,
    by_stream: HashMap<String, usize>,
    slots: usize,
    budget: usize,
}

impl Builder {
    /// An empty builder allowed `budget` column slots.
    pub(crate) fn new(budget: usize) -> Self {
        Builder {
            tables: Vec::new(),
            by_stream: HashMap::default(),
            slots: 0,
            budget,
        }
    }

    /// Adds one row of `record` to `stream`.
    pub(crate) fn row(
        &mut self,
        stream: &str,
        key: SeriesKey,
        time: i64,
        fields: &[(String, Value)],
        record: usize,
    ) -> Result<(), RowError> {
        let t = self.table(stream);
        let charge = self.tables[t].write.columns.len() + fields.len();
        self.charge(charge)?;
        let table = &mut self.tables[t];
        let rows = table.write.times.len();
        for (name, value) in fields {
            let idx = match table.columns.get(name.as_str()) {
                Some(&idx) => idx,
                None => {
                    self.slots = self.slots.saturating_add(rows);
                    if self.slots > self.budget {
                        return Err(RowError::Budget(self.budget));
                    }
                    table.add_column(name, value.field_type(), record)
                }
            };
            table.set(idx, value, rows)?;
        }
        table.end_row(time, key);
        Ok(())
    }

    /// The finished tables, in order of first appearance.
    pub(crate) fn finish(self) -> Vec<TableWrite> {
        self.tables.into_iter().map(|t| t.write).collect()
    }

    fn table(&mut self, stream: &str) -> usize {
        if let Some(&idx) = self.by_stream.get(stream) {
            return idx;
        }
        let mut table = Table::default();
        table.write.stream = stream.to_owned();
        self.tables.push(table);
        self.by_stream
            .insert(stream.to_owned(), self.tables.len() - 1);
        self.tables.len() - 1
    }

    fn charge(&mut self, n: usize) -> Result<(), RowError> {
        self.slots = self.slots.saturating_add(n);
        if self.slots > self.budget {
            return Err(RowError::Budget(self.budget));
        }
        Ok(())
    }
}

impl Table {
    fn add_column(&mut self, name: &str, ty: FieldType, record: usize) -> usize {
        let mut column = Column::new(name, ty);
        for _ in 0..self.write.times.len() {
            column.push_null();
        }
        self.write.columns.push(column);
        self.fixed_by.push(record);
        let idx = self.write.columns.len() - 1;
        self.columns.insert(name.to_owned(), idx);
        idx
    }

    /// Stores `value` in column `idx` for row `row` (the row being built).
    fn set(&mut self, idx: usize, value: &Value, row: usize) -> Result<(), RowError> {
        let column = &mut self.write.columns[idx];
        if column.valid.len() > row {
            return Err(RowError::Duplicate(column.name.clone()));
        }
        if !column.data.push_value(value) {
            return Err(RowError::Conflict {
                field: column.name.clone(),
                existing: column.data.field_type(),
                first_record: self.fixed_by[idx],
                found: value.field_type(),
            });
        }
        column.valid.push(true);
        Ok(())
    }

    /// Completes the row: empty slots for absent fields, then time and series.
    fn end_row(&mut self, time: i64, key: SeriesKey) {
        let row = self.write.times.len();
        for column in &mut self.write.columns {
            if column.valid.len() == row {
                column.push_null();
            }
        }
        let next = u32::try_from(self.write.series.len()).unwrap_or(u32::MAX);
        let series = match self.series.get(&key) {
            Some(&idx) => idx,
            None => {
                self.write.series.push(key.clone());
                self.series.insert(key, next);
                next
            }
        };
        self.write.times.push(time);
        self.write.row_series.push(series);
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
    fn sparse_rows_and_series() {
        let mut b = Builder::new(1000);
        b.row("s", key("a"), 1, &[("x".into(), Value::Float(1.0))], 0)
            .unwrap();
        b.row("s", key("b"), 2, &[("y".into(), Value::Boolean(true))], 1)
            .unwrap();
        b.row("s", key("a"), 3, &[], 2).unwrap();
        let t = b.finish().remove(0);
        assert_eq!(t.series, vec![key("a"), key("b")]);
        assert_eq!(t.row_series, vec![0, 1, 0]);
        assert_eq!(t.columns[0].valid, vec![true, false, false]);
        assert_eq!(t.columns[1].valid, vec![false, true, false]);
    }

    #[test]
    fn conflicts_duplicates_and_budget() {
        let mut b = Builder::new(1000);
        b.row("s", key("a"), 1, &[("x".into(), Value::Float(1.0))], 0)
            .unwrap();
        let err = b
            .row("s", key("a"), 2, &[("x".into(), Value::Integer(1))], 4)
            .unwrap_err();
        assert!(matches!(
            err,
            RowError::Conflict {
                first_record: 0,
                ..
            }
        ));
        let mut b = Builder::new(1000);
        let dup = [
            ("x".into(), Value::Float(1.0)),
            ("x".into(), Value::Float(2.0)),
        ];
        assert_eq!(
            b.row("s", key("a"), 1, &dup, 0),
            Err(RowError::Duplicate("x".into()))
        );
        let mut b = Builder::new(3);
        let many: Vec<_> = (0..4)
            .map(|i| (format!("f{i}"), Value::Float(0.0)))
            .collect();
        assert_eq!(b.row("s", key("a"), 1, &many, 0), Err(RowError::Budget(3)));
    }
}
