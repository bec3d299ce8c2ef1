//! Flush (memtable → segments), compaction (merge a partition's segments), and the background thread
//! that runs both. Each step is crash-safe: new files are complete and fsynced before the manifest
//! names them, and files are deleted only after the manifest stops naming them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;

use super::{Frozen, Inner, LiveSegment};
use crate::catalog::{Catalog, StreamId};
use crate::error::{Result, StorageError};
use crate::fsutil::sync_dir;
use crate::manifest::{Manifest, SegmentMeta};
use crate::memtable::Memtable;
use crate::rows::{Rows, merge_lww};
use crate::segment::{Segment, SegmentWriter};
use crate::{FieldType, SeriesId};

fn lock_manifest(inner: &Inner) -> Result<MutexGuard<'_, Manifest>> {
    inner.maintenance.lock().map_err(|_| super::poisoned())
}

pub(super) fn wake(inner: &Inner) {
    let (lock, cv) = &inner.wake;
    if let Ok(mut flag) = lock.lock() {
        *flag = true;
        cv.notify_one();
    }
}

/// Freezes the active memtable and writes every frozen memtable to segments, oldest first.
pub(super) fn flush(inner: &Inner) -> Result<()> {
    let mut manifest = lock_manifest(inner)?;
    {
        let mut state = inner.write_state()?;
        if !state.active.is_empty() {
            let wal_cut = inner.wal.rotate()?;
            let memtable = Arc::new(std::mem::take(&mut state.active));
            state.frozen.push(Frozen { memtable, wal_cut });
        }
    }
    loop {
        let next = {
            let state = inner.read_state()?;
            state
                .frozen
                .first()
                .map(|f| (f.memtable.clone(), f.wal_cut, state.catalog.clone()))
        };
        let Some((memtable, wal_cut, catalog)) = next else {
            return Ok(());
        };
        flush_one(inner, &mut manifest, &memtable, wal_cut, &catalog)?;
    }
}

fn flush_one(
    inner: &Inner,
    manifest: &mut Manifest,
    memtable: &Arc<Memtable>,
    wal_cut: u64,
    catalog: &Catalog,
) -> Result<()> {
    let started = std::time::Instant::now();
    let new = write_memtable(inner, manifest, memtable, catalog)?;
    catalog.save(&inner.paths.catalog)?;
    let mut next = manifest.clone();
    next.segments.extend(new.iter().map(|l| l.meta.clone()));
    next.wal_min_file = wal_cut;
    next.save(&inner.paths.manifest)?;
    *manifest = next;
    {
        let mut state = inner.write_state()?;
        state.segments.extend(new.iter().cloned());
        state.segments.sort_by_key(|l| l.meta.id);
        state.frozen.retain(|f| !Arc::ptr_eq(&f.memtable, memtable));
    }
    inner.wal.remove_before(wal_cut)?;
    inner.counters.flushes.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        segments = new.len(),
        bytes = new.iter().map(|l| l.meta.bytes).sum::<u64>(),
        millis = started.elapsed().as_millis() as u64,
        "flushed memtable"
    );
    Ok(())
}

/// Writes one segment per (stream, partition) of the memtable.
fn write_memtable(
    inner: &Inner,
    manifest: &mut Manifest,
    memtable: &Memtable,
    catalog: &Catalog,
) -> Result<Vec<Arc<LiveSegment>>> {
    let p = inner.config.partition_ns;
    let mut groups: BTreeMap<(StreamId, i64), Vec<(SeriesId, Rows)>> = BTreeMap::new();
    let partition_of = |t: i64| t.div_euclid(p) * p;
    for (stream, sid, rows) in memtable.drain_sorted(|s| catalog.stream(s).fields.as_slice()) {
        // Points without any field value are invisible to reads; nothing to store.
        let rows = rows.drop_empty_rows();
        if rows.is_empty() {
            continue;
        }
        let (first, last) = (rows.times[0], rows.times[rows.len() - 1]);
        if partition_of(first) == partition_of(last) {
            groups
                .entry((stream, partition_of(first)))
                .or_default()
                .push((sid, rows));
            continue;
        }
        let mut start = 0;
        while start < rows.len() {
            let part = partition_of(rows.times[start]);
            let end = start + rows.times[start..].partition_point(|&t| partition_of(t) == part);
            groups
                .entry((stream, part))
                .or_default()
                .push((sid, rows.select(start..end)));
            start = end;
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for ((stream, part), series) in groups {
        let meta = catalog.stream(stream);
        let source = series.into_iter().map(|(sid, rows)| Ok((sid, rows)));
        out.push(write_segment(
            inner,
            manifest,
            (&meta.database, &meta.name, part),
            &meta.fields,
            source,
        )?);
    }
    sync_dir(&inner.paths.segments)?;
    Ok(out)
}

/// Writes a segment from series given in increasing id order and opens it.
fn write_segment(
    inner: &Inner,
    manifest: &mut Manifest,
    (database, stream, part): (&str, &str, i64),
    fields: &[(String, FieldType)],
    series: impl Iterator<Item = Result<(SeriesId, Rows)>>,
) -> Result<Arc<LiveSegment>> {
    let id = manifest.allocate_id();
    let path = inner.paths.segment(id);
    let mut w = SegmentWriter::create(
        &path,
        database,
        stream,
        part,
        inner.config.partition_ns,
        fields,
    )?;
    for item in series {
        let (sid, rows) = item?;
        w.write_series(sid, &rows)?;
    }
    let written = w.finish()?;
    let segment = Segment::open(&path)?;
    let meta = SegmentMeta {
        id,
        database: database.to_string(),
        stream: stream.to_string(),
        partition_start: part,
        min_time: written.min_time,
        max_time: written.max_time,
        rows: written.rows,
        bytes: written.bytes,
    };
    Ok(Arc::new(LiveSegment { meta, segment }))
}

/// Compacts every partition with at least `min_segments` segments; returns how many were compacted.
pub(super) fn compact(inner: &Inner, min_segments: usize) -> Result<usize> {
    let mut manifest = lock_manifest(inner)?;
    let groups: Vec<Vec<Arc<LiveSegment>>> = {
        let state = inner.read_state()?;
        let mut by_part: BTreeMap<(String, String, i64), Vec<Arc<LiveSegment>>> = BTreeMap::new();
        for l in &state.segments {
            let key = (
                l.meta.database.clone(),
                l.meta.stream.clone(),
                l.meta.partition_start,
            );
            by_part.entry(key).or_default().push(l.clone());
        }
        by_part
            .into_values()
            .filter(|g| g.len() >= min_segments.max(2))
            .collect()
    };
    let count = groups.len();
    for group in groups {
        compact_group(inner, &mut manifest, group)?;
    }
    Ok(count)
}

/// Merges one partition's segments (oldest first, newer rows win) into a new segment.
fn compact_group(
    inner: &Inner,
    manifest: &mut Manifest,
    inputs: Vec<Arc<LiveSegment>>,
) -> Result<()> {
    let started = std::time::Instant::now();
    let first = &inputs[0].meta;
    let fields = {
        let state = inner.read_state()?;
        let id = state
            .catalog
            .stream_id(&first.database, &first.stream)
            .ok_or_else(|| StorageError::Corrupt {
                path: inner.paths.catalog.clone(),
                detail: format!(
                    "segment {} names stream '{}' missing from the catalog",
                    first.id, first.stream
                ),
            })?;
        state.catalog.stream(id).fields.clone()
    };
    let ids: BTreeSet<SeriesId> = inputs.iter().flat_map(|l| l.segment.series_ids()).collect();
    let merged = ids.into_iter().map(|sid| {
        let mut parts = Vec::with_capacity(inputs.len());
        for l in &inputs {
            if let Some(rows) = l.segment.read_series(sid, i64::MIN, i64::MAX, &fields)? {
                parts.push(rows);
            }
        }
        Ok((
            sid,
            merge_lww(parts).unwrap_or_else(|| Rows::empty(&fields)),
        ))
    });
    let key = (
        first.database.as_str(),
        first.stream.as_str(),
        first.partition_start,
    );
    let output = write_segment(inner, manifest, key, &fields, merged)?;
    sync_dir(&inner.paths.segments)?;
    let input_ids: BTreeSet<u64> = inputs.iter().map(|l| l.meta.id).collect();
    let mut next = manifest.clone();
    next.segments.retain(|m| !input_ids.contains(&m.id));
    next.segments.push(output.meta.clone());
    next.save(&inner.paths.manifest)?;
    *manifest = next;
    {
        let mut state = inner.write_state()?;
        state.segments.retain(|l| !input_ids.contains(&l.meta.id));
        state.segments.push(output.clone());
        state.segments.sort_by_key(|l| l.meta.id);
    }
    for id in &input_ids {
        let path = inner.paths.segment(*id);
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "could not delete compacted segment; it is deleted at next start");
        }
    }
    inner.counters.compactions.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        inputs = input_ids.len(),
        output = output.meta.id,
        bytes = output.meta.bytes,
        millis = started.elapsed().as_millis() as u64,
        "compacted partition"
    );
    Ok(())
}

/// Starts the thread that flushes by size/age and compacts partitions with many segments.
pub(super) fn spawn_background(inner: Arc<Inner>) -> Result<JoinHandle<()>> {
    let root = inner.config.data_dir.clone();
    std::thread::Builder::new()
        .name("strata-maintenance".into())
        .spawn(move || background_loop(&inner))
        .map_err(|source| StorageError::Io { path: root, source })
}

fn background_loop(inner: &Inner) {
    let (lock, cv) = &inner.wake;
    while !inner.shutdown.load(Ordering::Acquire) {
        if let Ok(flag) = lock.lock() {
            let wait = cv.wait_timeout_while(flag, inner.config.background_interval, |w| !*w);
            if let Ok((mut flag, _)) = wait {
                *flag = false;
            }
        }
        if inner.shutdown.load(Ordering::Acquire) {
            break;
        }
        if let Err(e) = run_due_work(inner) {
            tracing::error!(error = %e, "background maintenance failed; will retry");
        }
    }
}

fn run_due_work(inner: &Inner) -> Result<()> {
    let due = {
        let state = inner.read_state()?;
        state.active.bytes() >= inner.config.memtable_bytes
            || state
                .active
                .first_write()
                .is_some_and(|t| t.elapsed() >= inner.config.flush_age)
            || !state.frozen.is_empty()
    };
    if due {
        flush(inner)?;
    }
    compact(inner, inner.config.compaction_trigger)?;
    Ok(())
}
