//! Compaction, split like GreptimeDB mito2's: the [`picker`] chooses runs of segments from sizes,
//! time windows and age order; a job merges them with the streaming [`merge`] and commits.
//!
//! Concurrency: compactions are serialized by `Inner::compaction_lock`, and run without the lock
//! flush needs (`Inner::flush_lock`). A cold move runs without the compaction lock; the windows it
//! takes (`LifecycleState::moving`) are not compacted, and erase purges wait, until it ends. Only the manifest edit and the swap of the live segment list
//! are serialized with flush, under the short `Inner::maintenance` (manifest) lock.
//!
//! Age order: inputs are a contiguous run in age order within one window, and the output takes
//! the greatest `seq` of its inputs (`SegmentMeta::seq`). Segments flushed while the merge runs
//! have a greater `seq` (ids are allocated in increasing order and a flushed segment's `seq` is its
//! id), so they still win over the output for the rows they overwrite.

mod merge;
pub(crate) mod picker;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Inner, LiveSegment};
use crate::error::{Result, StorageError};
use crate::fsutil::{step, sync_dir};
use crate::manifest::SegmentMeta;
use crate::segment::{Segment, SegmentWriter};
use picker::{Candidate, Job, PickOptions};

/// Which merges to run.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mode {
    /// What the picker finds worth doing (the background thread), or nothing when another
    /// compaction or a lifecycle run holds the lock: the thread goes back to flushing instead
    /// of waiting for a move.
    Picked(PickOptions),
    /// Every window with two or more segments, merged whole (`Engine::compact`).
    All,
}

/// Runs the merges `mode` picks; returns how many windows were compacted.
pub(super) fn compact(inner: &Inner, mode: Mode) -> Result<usize> {
    let _serial = match mode {
        Mode::Picked(_) => match inner.compaction_lock.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::WouldBlock) => return Ok(0),
            Err(std::sync::TryLockError::Poisoned(_)) => return Err(super::poisoned()),
        },
        Mode::All => inner
            .compaction_lock
            .lock()
            .map_err(|_| super::poisoned())?,
    };
    // Windows a running cold move is taking (it runs without this lock) are left alone, and so
    // is the erase purge, which may rewrite their segments: both wait for the move to end.
    let moving = inner
        .lifecycle
        .moving
        .lock()
        .map_err(|_| super::poisoned())?
        .clone();
    // Erased rows leave their segments before any merge could carry them on (`erase.rs`); reads
    // drop them meanwhile. While a move runs the purge waits, and so does every merge if a
    // tombstone is live: a merge's output takes its newest input's `seq`, which can be past the
    // tombstone's mark, so rows the purge has not removed yet would be visible again.
    if moving.is_empty() {
        super::erase::purge(inner)?;
    } else if !inner.read_state()?.tombstones.is_empty() {
        return Ok(0);
    }
    // Cold objects an erase or retention dropped while a read was using them.
    super::cold_retire::reap_quietly(inner);
    let jobs = {
        let state = inner.read_state()?;
        let candidates = candidates(&state.segments, &state.broken, &moving);
        match mode {
            Mode::Picked(opts) => picker::pick(&candidates, &opts),
            Mode::All => picker::pick_all(&candidates),
        }
    };
    let mut count = 0;
    for job in jobs {
        // Background compaction yields to a flush that became due (a burst filled the memtable
        // while it ran): the rest is picked again on the next pass. `Mode::All` runs to the end.
        let yield_to_flush = count > 0
            && matches!(mode, Mode::Picked(_))
            && super::flush::memory_due(&*inner.read_state()?, &inner.config);
        if yield_to_flush {
            break;
        }
        run_job(inner, &job)?;
        count += 1;
    }
    Ok(count)
}

/// The live segments as the picker sees them; windows holding a segment that could not be opened
/// are left out (merging around it could reorder data), and so are the windows in `moving`.
fn candidates(
    live: &[Arc<LiveSegment>],
    broken: &[super::BrokenSegment],
    moving: &BTreeSet<(String, String, i64)>,
) -> Vec<Candidate> {
    let damaged: BTreeSet<(&str, &str, i64)> = broken
        .iter()
        .map(|b| {
            let m = &b.meta;
            (m.database.as_str(), m.stream.as_str(), m.partition_start)
        })
        .collect();
    let is_moving = |m: &SegmentMeta| {
        !moving.is_empty()
            && moving.contains(&(m.database.clone(), m.stream.clone(), m.partition_start))
    };
    live.iter()
        .map(|l| &l.meta)
        .filter(|m| !damaged.contains(&(m.database.as_str(), m.stream.as_str(), m.partition_start)))
        .filter(|m| !is_moving(m))
        .map(|m| Candidate {
            id: m.id,
            age: m.age(),
            database: m.database.clone(),
            stream: m.stream.clone(),
            partition_start: m.partition_start,
            bytes: m.bytes,
        })
        .collect()
}

/// Merges one job's segments into a new segment and swaps it in.
fn run_job(inner: &Inner, job: &Job) -> Result<()> {
    let started = std::time::Instant::now();
    let (inputs, fields) = job_inputs(inner, job)?;
    let id = inner
        .maintenance
        .lock()
        .map_err(|_| super::poisoned())?
        .allocate_id();
    let output = match write_output(inner, &inputs, &fields, id) {
        Ok(output) => output,
        Err(e) => {
            // Not named by any manifest: remove what was written (open would remove it anyway).
            let path = inner.paths.segment(id);
            let _ = std::fs::remove_file(path.with_extension("tmp"));
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    if let Err(e) = commit(inner, &inputs, &output) {
        // The MANIFEST still names the inputs (a failed save leaves it as it was): the output is
        // unpublished; remove it now (on a full disk it holds the space a retry needs).
        let path = inner.paths.segment(id);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    step(&inner.config.data_dir, "compaction-before-delete");
    remove_inputs(inner, &inputs);
    record(inner, &inputs, &output, started);
    Ok(())
}

/// Streams the merge of `inputs` into segment `id`, makes it durable and opens it. Its `seq` is the
/// greatest of the inputs'.
fn write_output(
    inner: &Inner,
    inputs: &[Arc<LiveSegment>],
    fields: &[(String, crate::FieldType)],
    id: u64,
) -> Result<Arc<LiveSegment>> {
    let first = &inputs[0].meta;
    let path = inner.paths.segment(id);
    let mut w = SegmentWriter::create(
        &path,
        &first.database,
        &first.stream,
        first.partition_start,
        inner.config.partition_ns,
        fields,
    )?;
    let segments: Vec<&Segment> = inputs.iter().map(|l| &l.segment).collect();
    for sid in merge::series_union(&segments) {
        merge::merge_series(&segments, sid, fields, &mut w)?;
    }
    let written = w.finish()?;
    sync_dir(&inner.paths.segments)?;
    step(&inner.config.data_dir, "compaction-output-written");
    let meta = SegmentMeta {
        id,
        seq: inputs.iter().map(|l| l.meta.seq).max().unwrap_or(id),
        database: first.database.clone(),
        stream: first.stream.clone(),
        partition_start: first.partition_start,
        min_time: written.min_time,
        max_time: written.max_time,
        rows: written.rows,
        bytes: written.bytes,
    };
    Ok(Arc::new(LiveSegment {
        segment: Segment::open(&path)?,
        meta,
    }))
}

/// The job's live segments in age order and the stream's fields (the output schema).
#[allow(clippy::type_complexity)]
fn job_inputs(
    inner: &Inner,
    job: &Job,
) -> Result<(Vec<Arc<LiveSegment>>, Vec<(String, crate::FieldType)>)> {
    let state = inner.read_state()?;
    let mut inputs: Vec<Arc<LiveSegment>> = state
        .segments
        .iter()
        .filter(|l| job.contains(&l.meta.id))
        .cloned()
        .collect();
    inputs.sort_by_key(|l| l.meta.age());
    let first = inputs
        .first()
        .map(|l| l.meta.clone())
        .ok_or_else(|| StorageError::InvalidInput("compaction job names no live segment".into()))?;
    let stream = state
        .catalog
        .stream_id(&first.database, &first.stream)
        .ok_or_else(|| StorageError::Corrupt {
            path: inner.paths.catalog.clone(),
            detail: format!(
                "segment {} names stream '{}' missing from the catalog",
                first.id, first.stream
            ),
        })?;
    Ok((inputs, state.catalog.stream(stream).fields.clone()))
}

/// Replaces the inputs by the output in the manifest (durably) and then in the live list.
fn commit(inner: &Inner, inputs: &[Arc<LiveSegment>], output: &Arc<LiveSegment>) -> Result<()> {
    let ids: BTreeSet<u64> = inputs.iter().map(|l| l.meta.id).collect();
    let mut manifest = inner.maintenance.lock().map_err(|_| super::poisoned())?;
    let mut next = manifest.clone();
    next.segments.retain(|m| !ids.contains(&m.id));
    next.segments.push(output.meta.clone());
    next.save(&inner.paths.manifest)?;
    *manifest = next;
    step(&inner.config.data_dir, "compaction-manifest-saved");
    let mut state = inner.write_state()?;
    state.segments.retain(|l| !ids.contains(&l.meta.id));
    state.segments.push(output.clone());
    state.segments.sort_by_key(|l| l.meta.age());
    Ok(())
}

fn remove_inputs(inner: &Inner, inputs: &[Arc<LiveSegment>]) {
    for l in inputs {
        let path = inner.paths.segment(l.meta.id);
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "could not delete compacted segment; it is deleted at next start");
        }
    }
}

fn record(
    inner: &Inner,
    inputs: &[Arc<LiveSegment>],
    output: &LiveSegment,
    started: std::time::Instant,
) {
    let c = &inner.counters;
    c.compactions.fetch_add(1, Ordering::Relaxed);
    c.compaction_inputs
        .fetch_add(inputs.len() as u64, Ordering::Relaxed);
    c.compaction_bytes
        .fetch_add(output.meta.bytes, Ordering::Relaxed);
    tracing::info!(
        inputs = inputs.len(),
        input_bytes = inputs.iter().map(|l| l.meta.bytes).sum::<u64>(),
        output = output.meta.id,
        bytes = output.meta.bytes,
        millis = started.elapsed().as_millis() as u64,
        "compacted segments"
    );
}

#[cfg(test)]
mod crash_tests;

#[cfg(test)]
mod tests;
