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

pub(super) fn scan(inner: &Inner, req: &ScanRequest) -> Result<Vec<SeriesBatch>> {
    if req.end <= req.start {
        return Ok(Vec::new());
    }
    let (first, last) = (req.start, req.end - 1);
    let Some(snap) = snapshot(inner, req, first, last)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (sid, key, mem_parts) in snap.series {
        let mut parts = Vec::new();
        for live in &snap.segments {
            if let Some(rows) = live.segment.read_series(sid, first, last, &snap.fields)? {
                parts.push(rows);
            }
        }
        parts.extend(mem_parts);
        if let Some(rows) = merge_lww(parts)
            .map(Rows::drop_empty_rows)
            .filter(|r| !r.is_empty())
        {
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

fn snapshot(inner: &Inner, req: &ScanRequest, first: i64, last: i64) -> Result<Option<Snapshot>> {
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
    if fields.is_empty() {
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
    let series = meta
        .matching(req.device.as_deref(), &req.tags)
        .iter()
        .map(|sid| {
            let parts = memtables
                .iter()
                .filter_map(|m| m.read(sid, first, last, &fields, &field_ids))
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
