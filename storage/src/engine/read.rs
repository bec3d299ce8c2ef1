//! The read path: resolve series through the tag index, copy matching memtable rows and pick the
//! overlapping segments under the state lock, then decode and merge outside it.

use std::sync::Arc;

use super::{Inner, LiveSegment};
use crate::error::{Result, StorageError};
use crate::rows::{Rows, merge_lww};
use crate::{FieldType, ScanRequest, SeriesBatch, SeriesId, SeriesKey};

/// What one scan needs, captured under the state lock.
struct Snapshot {
    fields: Vec<(String, FieldType)>,
    series: Vec<(SeriesId, SeriesKey, Vec<Rows>)>,
    segments: Vec<Arc<LiveSegment>>,
}

/// Name of the marker column that tracks which merged rows are stored points (`scan_rows`).
const EXISTS: &str = "\u{0}exists";

pub(super) fn scan(inner: &Inner, req: &ScanRequest) -> Result<Vec<SeriesBatch>> {
    scan_with(inner, req, false)
}

/// Like `scan`, but every stored point in range is a row, even one without a value in any of the
/// requested fields (those are null there): only the requested fields are decoded.
pub(super) fn scan_rows(inner: &Inner, req: &ScanRequest) -> Result<Vec<SeriesBatch>> {
    scan_with(inner, req, true)
}

fn scan_with(inner: &Inner, req: &ScanRequest, keep_rows: bool) -> Result<Vec<SeriesBatch>> {
    if req.end <= req.start {
        return Ok(Vec::new());
    }
    let (first, last) = (req.start, req.end - 1);
    let Some(snap) = snapshot(inner, req, first, last, keep_rows)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (sid, key, mem_parts) in snap.series {
        let mut parts = Vec::new();
        // Memtable parts carry the marker (`keep_rows`); without them every segment row is a
        // stored point with a value and no marker is needed.
        let marked = keep_rows && !mem_parts.is_empty();
        for live in &snap.segments {
            if let Some(rows) = live.segment.read_series(sid, first, last, &snap.fields)? {
                parts.push(match marked {
                    // Segments hold only points with at least one value.
                    true => with_exists(rows, None),
                    false => rows,
                });
            }
        }
        let single = mem_parts.is_empty() && parts.len() == 1;
        parts.extend(mem_parts);
        let merged = match (keep_rows, marked) {
            // One segment's rows are already sorted with distinct times: nothing to merge.
            (true, false) if single => parts.pop(),
            (true, true) => merge_lww(parts).map(only_existing),
            (true, false) => merge_lww(parts),
            (false, _) => merge_lww(parts).map(Rows::drop_empty_rows),
        };
        if let Some(rows) = merged.filter(|r| !r.is_empty()) {
            out.push(SeriesBatch {
                series_id: sid,
                key,
                times: rows.times,
                columns: rows.columns,
            });
        }
    }
    Ok(out)
}

/// Appends the marker column: valid where `exists` says (all rows when `None`).
fn with_exists(mut rows: Rows, exists: Option<Vec<bool>>) -> Rows {
    let n = rows.len();
    let mut c = crate::Column::new(EXISTS, FieldType::Boolean);
    c.data = crate::ColumnData::Boolean(vec![true; n]);
    c.valid = exists.unwrap_or_else(|| vec![true; n]);
    rows.columns.push(c);
    rows
}

/// Keeps the rows whose marker is set and drops the marker column.
fn only_existing(mut rows: Rows) -> Rows {
    let Some(marker) = rows.columns.pop() else {
        return rows;
    };
    if marker.valid.iter().all(|v| *v) {
        return rows;
    }
    let mut out = Rows {
        times: Vec::new(),
        columns: rows
            .columns
            .iter()
            .map(|c| crate::Column::new(c.name.clone(), c.data.field_type()))
            .collect(),
    };
    for i in (0..rows.len()).filter(|&i| marker.valid[i]) {
        out.push_row(&rows, i);
    }
    rows = out;
    rows
}

/// Memtable rows of `sid` with all stream fields read to tell which rows hold a value, returned
/// with only the `wanted` columns (by position in `all`) plus the marker.
fn memtable_part(
    m: &crate::memtable::Memtable,
    sid: SeriesId,
    (first, last): (i64, i64),
    all: &[(String, FieldType)],
    wanted: &[usize],
) -> Option<Rows> {
    let ids: Vec<Option<usize>> = (0..all.len()).map(Some).collect();
    let rows = m.read(sid, first, last, all, &ids)?;
    let exists: Vec<bool> = (0..rows.len())
        .map(|i| rows.columns.iter().any(|c| c.valid[i]))
        .collect();
    let Rows { times, mut columns } = rows;
    let mut picked: Vec<Option<crate::Column>> = columns.drain(..).map(Some).collect();
    let columns = wanted.iter().filter_map(|&i| picked[i].take()).collect();
    Some(with_exists(Rows { times, columns }, Some(exists)))
}

fn snapshot(
    inner: &Inner,
    req: &ScanRequest,
    first: i64,
    last: i64,
    keep_rows: bool,
) -> Result<Option<Snapshot>> {
    let state = inner.read_state()?;
    let Some(stream_id) = state.catalog.stream_id(&req.database, &req.stream) else {
        return Ok(None);
    };
    let meta = state.catalog.stream(stream_id);
    let fields: Vec<(String, FieldType)> = match &req.fields {
        None => meta.fields.clone(),
        Some(names) => names
            .iter()
            .filter_map(|n| meta.field_id(n).map(|id| meta.fields[id].clone()))
            .collect(),
    };
    // With `keep_rows`, no field at all still means "the points' times".
    if fields.is_empty() && (!keep_rows || meta.fields.is_empty()) {
        return Ok(None);
    }
    let overlaps = |db: &str, stream: &str, min: i64, max: i64| {
        db == req.database && stream == req.stream && max >= first && min <= last
    };
    if let Some(b) = state.broken.iter().find(|b| {
        overlaps(
            &b.meta.database,
            &b.meta.stream,
            b.meta.min_time,
            b.meta.max_time,
        )
    }) {
        return Err(StorageError::Corrupt {
            path: inner.paths.segment(b.meta.id),
            detail: format!(
                "segment needed by this read could not be opened: {}",
                b.error
            ),
        });
    }
    let field_ids: Vec<Option<usize>> = fields.iter().map(|(n, _)| meta.field_id(n)).collect();
    let memtables: Vec<&crate::memtable::Memtable> = state
        .frozen
        .iter()
        .map(|f| f.memtable.as_ref())
        .chain(std::iter::once(&state.active))
        .collect();
    // Positions of the requested fields among all of the stream's (for `keep_rows`).
    let wanted: Vec<usize> = fields
        .iter()
        .filter_map(|(n, _)| meta.field_id(n))
        .collect();
    let series = meta
        .matching(req.device.as_deref(), &req.tags)
        .iter()
        .map(|sid| {
            let parts = memtables
                .iter()
                .filter_map(|m| match keep_rows {
                    true => memtable_part(m, sid, (first, last), &meta.fields, &wanted),
                    false => m.read(sid, first, last, &fields, &field_ids),
                })
                .collect();
            (sid, state.catalog.series[sid as usize].key.clone(), parts)
        })
        .collect();
    let segments = state
        .segments
        .iter()
        .filter(|l| {
            overlaps(
                &l.meta.database,
                &l.meta.stream,
                l.meta.min_time,
                l.meta.max_time,
            )
        })
        .cloned()
        .collect();
    Ok(Some(Snapshot {
        fields,
        series,
        segments,
    }))
}
