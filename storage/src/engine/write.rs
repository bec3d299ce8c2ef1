//! The write path: validate a batch, resolve streams/fields/series in the catalog, append to the WAL
//! and the memtable under the state lock, then wait for the WAL to make it durable.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use super::{Inner, State, WriteReceipt, maintenance};
use crate::catalog::{Catalog, StreamId};
use crate::error::{Result, StorageError};
use crate::{FieldType, SeriesId, TableWrite, WriteBatch, wal_record};

/// Longest database, stream, field, tag or device name accepted.
pub(crate) const MAX_NAME_LEN: usize = 256;

/// Catalog ids for one table of a batch.
pub(super) struct TablePlan {
    stream: StreamId,
    series: Vec<SeriesId>,
    fields: Vec<usize>,
}

pub(super) fn write(inner: &Inner, batch: &WriteBatch) -> Result<WriteReceipt> {
    inner.check_open()?;
    validate(batch)?;
    let receipt = WriteReceipt {
        rows: batch.rows(),
        values: batch.tables.iter().map(TableWrite::value_count).sum(),
    };
    if receipt.rows == 0 {
        return Ok(receipt);
    }
    let payload = wal_record::encode(batch);
    let (seq, memtable_bytes) = {
        let mut state = inner.write_state()?;
        let plans = resolve(&mut state, batch)?;
        let seq = inner.wal.append(&payload)?;
        apply(&mut state, batch, &plans);
        (seq, state.active.bytes())
    };
    inner.wal.sync_to(seq)?;
    inner
        .counters
        .rows
        .fetch_add(receipt.rows as u64, Ordering::Relaxed);
    inner
        .counters
        .values
        .fetch_add(receipt.values as u64, Ordering::Relaxed);
    maintenance::after_write(inner, memtable_bytes)?;
    Ok(receipt)
}

/// Applies a replayed WAL record (already durable) to catalog and memtable.
pub(super) fn replay(state: &mut State, batch: &WriteBatch) -> Result<()> {
    validate(batch)?;
    let plans = resolve(state, batch)?;
    apply(state, batch, &plans);
    Ok(())
}

fn apply(state: &mut State, batch: &WriteBatch, plans: &[TablePlan]) {
    for (table, plan) in batch.tables.iter().zip(plans) {
        state
            .active
            .apply(plan.stream, table, &plan.series, &plan.fields);
        state.last.apply(table, &plan.series, &plan.fields);
    }
}

/// How many streams, fields and series the catalog holds (all append-only).
fn catalog_size(catalog: &Catalog) -> usize {
    catalog.series.len()
        + catalog
            .streams
            .iter()
            .map(|s| s.fields.len() + 1)
            .sum::<usize>()
}

/// Checks every field type against the schema (and within the batch) before changing anything, then
/// creates missing streams, fields and series.
fn resolve(state: &mut State, batch: &WriteBatch) -> Result<Vec<TablePlan>> {
    let before = catalog_size(&state.catalog);
    let plans = resolve_ids(&mut state.catalog, batch)?;
    if catalog_size(&state.catalog) != before {
        state.catalog_version += 1;
    }
    Ok(plans)
}

fn resolve_ids(catalog: &mut Catalog, batch: &WriteBatch) -> Result<Vec<TablePlan>> {
    let mut seen: HashMap<(&str, &str), FieldType> = HashMap::new();
    for t in &batch.tables {
        let stream = catalog.stream_id(&batch.database, &t.stream);
        for c in &t.columns {
            let ty = c.data.field_type();
            if let Some(id) = stream {
                catalog.check_field(id, &c.name, ty)?;
            }
            if let Some(prev) = seen.insert((&t.stream, &c.name), ty).filter(|p| *p != ty) {
                return Err(StorageError::SchemaConflict {
                    database: batch.database.clone(),
                    stream: t.stream.clone(),
                    field: c.name.clone(),
                    existing: prev,
                    requested: ty,
                });
            }
        }
    }
    Ok(batch
        .tables
        .iter()
        .map(|t| {
            let stream = catalog.ensure_stream(&batch.database, &t.stream);
            let fields = t
                .columns
                .iter()
                .map(|c| catalog.ensure_field(stream, &c.name, c.data.field_type()))
                .collect();
            let series = t
                .series
                .iter()
                .map(|k| catalog.ensure_series(stream, k))
                .collect();
            TablePlan {
                stream,
                series,
                fields,
            }
        })
        .collect())
}

fn invalid(msg: String) -> StorageError {
    StorageError::InvalidInput(msg)
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    let printable_ascii = name.bytes().all(|b| (0x20..0x7f).contains(&b));
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || (!printable_ascii && name.chars().any(char::is_control))
    {
        return Err(invalid(format!(
            "{kind} name {name:?} must be 1 to {MAX_NAME_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

/// Structural checks: names, ragged columns, series indexes.
fn validate(batch: &WriteBatch) -> Result<()> {
    check_name("database", &batch.database)?;
    batch.tables.iter().try_for_each(validate_table)
}

fn validate_table(t: &TableWrite) -> Result<()> {
    check_name("stream", &t.stream)?;
    let rows = t.times.len();
    if t.row_series.len() != rows {
        return Err(invalid(format!(
            "stream '{}': {} series indexes for {rows} rows",
            t.stream,
            t.row_series.len()
        )));
    }
    if let Some(bad) = t.row_series.iter().find(|&&s| s as usize >= t.series.len()) {
        return Err(invalid(format!(
            "stream '{}': row refers to series {bad} of {}",
            t.stream,
            t.series.len()
        )));
    }
    for key in &t.series {
        if key.device.len() > MAX_NAME_LEN {
            return Err(invalid(format!(
                "device id longer than {MAX_NAME_LEN} bytes"
            )));
        }
        for (k, v) in &key.tags {
            check_name("tag", k)?;
            if v.len() > MAX_NAME_LEN * 4 {
                return Err(invalid(format!(
                    "value of tag '{k}' is longer than {} bytes",
                    MAX_NAME_LEN * 4
                )));
            }
        }
    }
    let mut names = HashSet::new();
    for c in &t.columns {
        check_name("field", &c.name)?;
        if !names.insert(c.name.as_str()) {
            return Err(invalid(format!(
                "stream '{}': field '{}' appears twice",
                t.stream, c.name
            )));
        }
        if c.valid.len() != rows || c.data.len() != rows {
            return Err(invalid(format!(
                "stream '{}': field '{}' has {} values for {rows} rows",
                t.stream,
                c.name,
                c.data.len()
            )));
        }
    }
    Ok(())
}
