//! Erasing a device's data (`Engine::erase_device`): a durable tombstone hides the device's rows
//! at once, and maintenance then removes them physically.
//!
//! A [`Tombstone`] names a device (in one database or all), a time range `[start, end)` and the
//! point in the data's history it was made at: `mark`, the next segment id when it was made
//! (segments with `seq < mark` hold data written before it), and `wal_cut`, the WAL file the
//! memtable was frozen at (memtables frozen at or before it hold only earlier data). Making one:
//! under `flush_lock`, with the manifest and state locks held, the tombstone is added to the state
//! and to `DATA/tombstones` (checksummed JSON, replaced atomically) and the active memtable is
//! frozen; the flush that follows writes that memtable without the device's rows and retires the
//! WAL files that held them. The tombstone is committed by that flush's MANIFEST
//! (`wal_min_file >= wal_cut`): one found at open whose flush never committed is dropped, so an
//! interrupted erase leaves everything as it was (it was never acknowledged).
//!
//! Reads (`read.rs`) drop covered rows of segments with `seq < mark` and of frozen memtables with
//! `wal_cut <= tombstone.wal_cut`; the last-value cache forgets covered values at once. Before each
//! compaction pass, [`purge`] rewrites every segment still holding covered rows without them
//! (same `seq`, new id) and then retires the tombstones nothing depends on any more.

use std::collections::HashMap;
use std::sync::Arc;

use super::tombstone::{Tombstone, covered_series, load, overlaps, path, persist, remove_ranges};
use super::{Inner, LiveSegment, State};
use crate::error::{Result, StorageError};
use crate::fsutil::sync_dir;
use crate::manifest::SegmentMeta;
use crate::rows::Rows;
use crate::segment::SegmentWriter;
use crate::{FieldType, SeriesId};

/// What to erase: a device's data in one database (or all) within `[start, end)`.
#[derive(Debug, Clone, PartialEq)]
pub struct EraseRequest {
    /// Only this database; `None` erases the device's data in every database.
    pub database: Option<String>,
    /// The device whose telemetry is erased.
    pub device: String,
    /// Inclusive lower bound, nanoseconds (`i64::MIN` for no bound).
    pub start: i64,
    /// Exclusive upper bound, nanoseconds (`i64::MAX` for no bound).
    pub end: i64,
}

/// What an erase did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EraseReport {
    /// Id of the tombstone that hides the data until maintenance has removed it.
    pub tombstone: u64,
    /// Series of the device found (every stream of the databases erased).
    pub series: usize,
}

/// After recovery: loads the tombstones, drops those whose erase never committed (its flush's
/// MANIFEST was not saved: the WAL still holds the data and no one was told it was erased), and
/// corrects the last-value cache of the series they cover.
pub(super) fn after_open(inner: &Inner) -> Result<()> {
    let file = path(inner);
    let mut list = load(&file)?;
    if list.list.is_empty() {
        return Ok(());
    }
    let wal_min = super::flush::lock_manifest(inner)?.wal_min_file;
    let before = list.list.len();
    list.list.retain(|t| t.wal_cut <= wal_min);
    if list.list.len() != before {
        tracing::warn!(
            dropped = before - list.list.len(),
            "dropped tombstones of erases interrupted before they committed"
        );
        persist(inner, &list)?;
    }
    let kept = list.list.clone();
    let mut state = inner.write_state()?;
    state.tombstones = list;
    for t in &kept {
        for (sid, (start, end)) in covered_series(&state.catalog, t) {
            state.last.erase_range(sid, start, end);
        }
    }
    drop(state);
    // The cache was filled from segments and the WAL without the tombstones: read it back
    // through them (rows written after an erase came back from the WAL and stay).
    for t in &kept {
        refill_latest(inner, t, true)?;
    }
    Ok(())
}

/// Erases a device's data (see the module documentation).
pub(super) fn erase(inner: &Inner, req: &EraseRequest) -> Result<EraseReport> {
    inner.check_open()?;
    if req.device.is_empty() {
        return Err(StorageError::InvalidInput(
            "device id must not be empty".into(),
        ));
    }
    if req.start >= req.end {
        return Err(StorageError::InvalidInput(format!(
            "erase range is empty: start {} is not before end {}",
            req.start, req.end
        )));
    }
    let _serial = inner.flush_lock.lock().map_err(|_| super::poisoned())?;
    // Memtables left frozen by a failed flush go first, so only the active one remains.
    super::flush::flush_held(inner)?;
    let (tomb, series) = {
        let manifest = super::flush::lock_manifest(inner)?;
        let mut state = inner.write_state()?;
        let wal_cut = match state.active.is_empty() {
            true => manifest.wal_min_file,
            false => {
                let cut = inner.wal.rotate()?;
                let memtable = Arc::new(std::mem::take(&mut state.active));
                state.frozen.push(super::Frozen {
                    memtable,
                    wal_cut: cut,
                });
                cut
            }
        };
        let tomb = Tombstone {
            id: state.tombstones.next_id.max(1),
            database: req.database.clone(),
            device: req.device.clone(),
            start: req.start,
            end: req.end,
            mark: manifest.next_segment_id,
            wal_cut,
        };
        let mut next = state.tombstones.clone();
        next.next_id = tomb.id + 1;
        next.list.push(tomb.clone());
        persist(inner, &next)?;
        state.tombstones = next;
        let series = covered_series(&state.catalog, &tomb);
        for &(sid, (start, end)) in &series {
            state.last.erase_range(sid, start, end);
        }
        (tomb, series.len())
    };
    // Writes the frozen memtable without the device's rows and retires the WAL files holding them.
    super::flush::flush_held(inner)?;
    drop(_serial);
    if let Err(e) = recompute_edges(inner, &tomb) {
        // The marks stay (absorb gives them back on failure): background maintenance retries.
        tracing::warn!(error = %e, "could not re-aggregate the rollup windows an erase cut into; retried by maintenance");
    }
    refill_latest(inner, &tomb, false)?;
    super::flush::wake(inner);
    tracing::info!(
        tombstone = tomb.id,
        device = %tomb.device,
        database = tomb.database.as_deref().unwrap_or("*"),
        start = tomb.start,
        end = tomb.end,
        series,
        "erased device data"
    );
    Ok(EraseReport {
        tombstone: tomb.id,
        series,
    })
}

/// Marks, in every rollup of the device's streams, the windows holding the erased range's bounds
/// and absorbs them: their rollup rows are aggregated again from the raw rows left (the
/// tombstone hides the old rows of these windows, widened to whole windows in rollup streams).
/// Windows wholly inside the range hold no raw rows any more and are simply hidden.
fn recompute_edges(inner: &Inner, t: &Tombstone) -> Result<()> {
    let edges: Vec<i64> = [
        (t.start != i64::MIN).then_some(t.start),
        (t.end != i64::MAX).then(|| t.end - 1),
    ]
    .into_iter()
    .flatten()
    .collect();
    if edges.is_empty() {
        return Ok(());
    }
    let mut marked = false;
    {
        let mut guard = inner.write_state()?;
        let state = &mut *guard;
        for (db, streams) in state.rollups.streams.iter_mut() {
            if t.database.as_deref().is_some_and(|d| d != db) {
                continue;
            }
            for (stream, rollups) in streams.iter_mut() {
                let Some(id) = state.catalog.stream_id(db, stream) else {
                    continue;
                };
                let series = state.catalog.stream(id).matching(Some(&t.device), &[]);
                for m in rollups.iter_mut() {
                    for sid in series.iter() {
                        m.mark(sid, edges.iter().copied());
                        marked = true;
                    }
                }
            }
        }
    }
    if marked {
        super::rollups::absorb(inner, None)?;
    }
    Ok(())
}

/// After a partial-range erase, puts back into the last-value cache the newest value each field
/// of the device's series still has (read through the snapshot path, which applies tombstones).
/// Without `always`, a range with no lower bound needs nothing (no older value survives).
fn refill_latest(inner: &Inner, t: &Tombstone, always: bool) -> Result<()> {
    if t.start == i64::MIN && !always {
        return Ok(());
    }
    let streams: Vec<(String, String)> = {
        let state = inner.read_state()?;
        state
            .catalog
            .streams
            .iter()
            .filter(|s| t.database.as_deref().is_none_or(|d| d == s.database))
            .map(|s| (s.database.clone(), s.name.clone()))
            .collect()
    };
    for (database, stream) in streams {
        let req = crate::ScanRequest {
            database,
            stream,
            device: Some(t.device.clone()),
            tags: Vec::new(),
            start: i64::MIN,
            end: i64::MAX,
            fields: None,
        };
        let Some(snap) = super::read::snapshot(inner, &req, None, super::ReadMode::Values)? else {
            continue;
        };
        let snap = Arc::new(snap);
        let names: Vec<String> = snap.fields().iter().map(|f| f.0.clone()).collect();
        for i in 0..snap.series_count() {
            let mut newest: Vec<Option<super::LatestValue>> = vec![None; names.len()];
            let mut sid = None;
            let mut cursor = snap.cursor(i);
            while let Some(batch) = cursor.next_batch()? {
                sid = Some(batch.series_id);
                for (f, col) in batch.columns.iter().enumerate() {
                    if let Some(r) = (0..batch.times.len()).rev().find(|&r| col.valid[r]) {
                        newest[f] = Some(super::LatestValue {
                            time: batch.times[r],
                            value: col.data.value(r),
                        });
                    }
                }
            }
            let Some(sid) = sid else {
                continue;
            };
            let mut state = inner.write_state()?;
            let Some(stream) = state.catalog.stream_id(&req.database, &req.stream) else {
                continue;
            };
            let fids: Vec<Option<usize>> = names
                .iter()
                .map(|n| state.catalog.stream(stream).field_id(n))
                .collect();
            for (fid, value) in fids.into_iter().zip(newest) {
                if let (Some(fid), Some(v)) = (fid, value) {
                    state.last.offer_older(sid, fid, v);
                }
            }
        }
    }
    Ok(())
}

/// A segment holding covered rows, with the ranges to drop per series and the stream's fields.
struct Rewrite {
    live: Arc<LiveSegment>,
    cuts: HashMap<SeriesId, Vec<(i64, i64)>>,
    fields: Vec<(String, FieldType)>,
}

/// Segments still holding rows some tombstone covers.
fn pending_rewrites(state: &State) -> Vec<Rewrite> {
    let mut out = Vec::new();
    if state.tombstones.is_empty() {
        return out;
    }
    for live in &state.segments {
        let m = &live.meta;
        let Some(stream) = state.catalog.stream_id(&m.database, &m.stream) else {
            continue;
        };
        let mut cuts: HashMap<SeriesId, Vec<(i64, i64)>> = HashMap::new();
        for t in state.tombstones.list.iter().filter(|t| m.seq < t.mark) {
            if t.database.as_deref().is_some_and(|d| d != m.database) {
                continue;
            }
            let range = t.range_in(&m.stream);
            for sid in state.catalog.stream(stream).matching(Some(&t.device), &[]) {
                let held = live.segment.series_range(sid);
                if held.is_some_and(|(lo, hi)| overlaps(&[range], lo, hi)) {
                    cuts.entry(sid).or_default().push(range);
                }
            }
        }
        if !cuts.is_empty() {
            out.push(Rewrite {
                live: live.clone(),
                cuts,
                fields: state.catalog.stream(stream).fields.clone(),
            });
        }
    }
    out
}

/// Rewrites every segment and cold object holding covered rows without them, then retires the
/// tombstones no stored data depends on. Runs under `compaction_lock` (before the picker), so no merge of
/// older data runs meanwhile. Returns how many segments were rewritten.
pub(super) fn purge(inner: &Inner) -> Result<usize> {
    let (work, candidates) = {
        let state = inner.read_state()?;
        if state.tombstones.is_empty() {
            return Ok(0);
        }
        let ids: Vec<u64> = state.tombstones.list.iter().map(|t| t.id).collect();
        (pending_rewrites(&state), ids)
    };
    for job in &work {
        rewrite(inner, job)?;
    }
    // The cold tier next. A failure (the store is unreachable, say) must not hold compaction of
    // the hot data up: it is reported, every tombstone stays live (reads keep dropping the rows)
    // and the next pass tries again.
    match cold::purge(inner) {
        Ok(cold) => {
            retire(inner, &candidates)?;
            Ok(work.len() + cold)
        }
        Err(e) => {
            let msg = format!(
                "cold: removing erased rows from cold objects failed, retried at the next maintenance pass: {e}"
            );
            tracing::warn!(error = %e, "{msg}");
            if let Some(tier) = &inner.cold {
                tier.record_error(&msg);
            }
            Ok(work.len())
        }
    }
}

/// Writes `job`'s segment again without the covered rows (same `seq`, so the same age) and swaps
/// it in; a segment left empty is only removed.
fn rewrite(inner: &Inner, job: &Rewrite) -> Result<()> {
    let old = &job.live;
    let m = &old.meta;
    let id = super::flush::lock_manifest(inner)?.allocate_id();
    let path = inner.paths.segment(id);
    let written = write_without(inner, job, &path).inspect_err(|_| {
        let _ = std::fs::remove_file(path.with_extension("tmp"));
        let _ = std::fs::remove_file(&path);
    })?;
    let output = match written {
        Some(w) => {
            let meta = SegmentMeta {
                id,
                seq: m.seq,
                database: m.database.clone(),
                stream: m.stream.clone(),
                partition_start: m.partition_start,
                min_time: w.min_time,
                max_time: w.max_time,
                rows: w.rows,
                bytes: w.bytes,
            };
            Some(Arc::new(LiveSegment {
                segment: crate::segment::Segment::open(&path)?,
                meta,
            }))
        }
        None => None,
    };
    {
        let mut manifest = super::flush::lock_manifest(inner)?;
        let mut next = manifest.clone();
        next.segments.retain(|s| s.id != m.id);
        next.segments.extend(output.iter().map(|o| o.meta.clone()));
        next.save(&inner.paths.manifest)?;
        *manifest = next;
        let mut state = inner.write_state()?;
        state.segments.retain(|l| l.meta.id != m.id);
        state.segments.extend(output.iter().cloned());
        state.segments.sort_by_key(|l| l.meta.age());
    }
    let old_path = inner.paths.segment(m.id);
    if let Err(e) = std::fs::remove_file(&old_path) {
        tracing::warn!(path = %old_path.display(), error = %e, "could not delete an erased segment; it is deleted at next start");
    }
    tracing::info!(
        segment = m.id,
        output = output.as_ref().map(|o| o.meta.id),
        "rewrote a segment without erased rows"
    );
    Ok(())
}

/// Streams the segment's series block by block into `path`, dropping covered rows. `None` (and no
/// file) when nothing is left.
fn write_without(
    inner: &Inner,
    job: &Rewrite,
    path: &std::path::Path,
) -> Result<Option<crate::segment::WrittenSegment>> {
    let seg = &job.live.segment;
    let m = &job.live.meta;
    let mut w = SegmentWriter::create(
        path,
        &m.database,
        &m.stream,
        m.partition_start,
        inner.config.partition_ns,
        &job.fields,
    )?;
    let mut rows_written = 0usize;
    let series: Vec<SeriesId> = seg.series_ids().collect();
    for sid in series {
        let ranges = job.cuts.get(&sid).map(Vec::as_slice).unwrap_or(&[]);
        let blocks = seg.series_block_ranges(sid);
        let sorted = blocks.windows(2).all(|b| b[0].1 < b[1].0);
        let parts: Vec<Rows> = match sorted {
            true => (0..blocks.len())
                .map(|bi| seg.block_rows(sid, bi, &job.fields))
                .collect::<Result<_>>()?,
            false => seg
                .read_series(sid, i64::MIN, i64::MAX, &job.fields)?
                .into_iter()
                .collect(),
        };
        for rows in parts {
            let rows = remove_ranges(rows, ranges);
            if !rows.is_empty() {
                rows_written += rows.len();
                w.append_series_rows(sid, &rows)?;
            }
        }
    }
    if rows_written == 0 {
        drop(w);
        let _ = std::fs::remove_file(path.with_extension("tmp"));
        return Ok(None);
    }
    let written = w.finish()?;
    sync_dir(&inner.paths.segments)?;
    Ok(Some(written))
}

/// Removes the tombstones among `candidates` that nothing depends on any more: committed, no
/// frozen memtable older than them, no live or unreadable segment older than them holding rows
/// they cover.
fn retire(inner: &Inner, candidates: &[u64]) -> Result<()> {
    let manifest = super::flush::lock_manifest(inner)?;
    let mut state = inner.write_state()?;
    let pending = pending_rewrites(&state);
    let done = |t: &Tombstone| {
        candidates.contains(&t.id)
            && t.wal_cut <= manifest.wal_min_file
            && !state.frozen.iter().any(|f| f.wal_cut <= t.wal_cut)
            && !state.broken.iter().any(|b| {
                b.meta.seq < t.mark && t.database.as_deref().is_none_or(|d| d == b.meta.database)
            })
            && !pending.iter().any(|p| {
                p.live.meta.seq < t.mark
                    && t.database
                        .as_deref()
                        .is_none_or(|d| d == p.live.meta.database)
            })
    };
    let retired: Vec<u64> = state
        .tombstones
        .list
        .iter()
        .filter(|t| done(t))
        .map(|t| t.id)
        .collect();
    if retired.is_empty() {
        return Ok(());
    }
    let mut next = state.tombstones.clone();
    next.list.retain(|t| !retired.contains(&t.id));
    persist(inner, &next)?;
    state.tombstones = next;
    tracing::info!(
        ?retired,
        "retired tombstones: erased data is gone from every segment"
    );
    Ok(())
}

mod cold;

#[cfg(test)]
mod tests;
