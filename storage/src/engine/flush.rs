//! Flush: frozen memtables become segments (one per stream and time partition), the catalog log
//! gets the new series and fields, and the MANIFEST names the segments and the WAL files still
//! needed. Also the manifest lock, the wake-up of the background thread, and how a write that waits
//! for flush is refused. Each step is crash-safe: new files are complete and fsynced before the
//! manifest names them, and files are deleted only after the manifest stops naming them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use super::{Frozen, Inner, LiveSegment};
use crate::catalog_log::CatalogLog;
use crate::codec::Effort;
use crate::error::{Result, StorageError};
use crate::fsutil::{step, sync_dir};
use crate::manifest::{Manifest, SegmentMeta};
use crate::memtable::Memtable;
use crate::rows::Rows;
use crate::segment::{Segment, SegmentWriter};
use crate::{FieldType, SeriesId};

/// The MANIFEST, locked: flush, compaction, lifecycle runs and erases edit it one at a time.
pub(super) fn lock_manifest(inner: &Inner) -> Result<MutexGuard<'_, Manifest>> {
    inner.maintenance.lock().map_err(|_| super::poisoned())
}

/// Wakes the background thread (a full memtable, an erase waiting for flush).
pub(super) fn wake(inner: &Inner) {
    let (lock, cv) = &inner.wake;
    if let Ok(mut flag) = lock.lock() {
        *flag = true;
        cv.notify_one();
    }
}

/// True when memory asks for a flush: the active memtable holds `memtable_bytes` or more, or a
/// frozen one waits. (The background thread also flushes by age and idleness.)
pub(super) fn memory_due(state: &super::State, config: &super::EngineConfig) -> bool {
    state.active.bytes() >= config.memtable_bytes || !state.frozen.is_empty()
}

/// Freezes the active memtable and writes every frozen memtable to segments, oldest first.
/// Serialized with other flushes by `flush_lock`; a running compaction does not block it.
pub(super) fn flush(inner: &Inner) -> Result<()> {
    let _serial = inner.flush_lock.lock().map_err(|_| super::poisoned())?;
    flush_held(inner)
}

/// [`flush`] for a caller that holds `flush_lock` (an erase, `erase.rs`).
pub(super) fn flush_held(inner: &Inner) -> Result<()> {
    {
        let mut state = inner.write_state()?;
        if !state.active.is_empty() {
            let wal_cut = inner.wal.rotate()?;
            let memtable = Arc::new(std::mem::take(&mut state.active));
            state.frozen.push(Frozen { memtable, wal_cut });
        }
    }
    // Rollups absorb the frozen rows before their WAL files can go (see `rollups.rs`).
    super::rollups::absorb_for_flush(inner)?;
    loop {
        let next = {
            let state = inner.read_state()?;
            state
                .frozen
                .first()
                .map(|f| (f.memtable.clone(), f.wal_cut))
        };
        let Some((memtable, wal_cut)) = next else {
            return Ok(());
        };
        flush_one(inner, &memtable, wal_cut)?;
    }
}

/// A stream's name, fields and time partition, copied out of the catalog for a flush (no series
/// are copied).
struct StreamInfo {
    database: String,
    name: String,
    fields: Vec<(String, FieldType)>,
    /// Partition length of its segments (wider for rollup streams, `rollups::partition_ns_of`).
    partition_ns: i64,
}

fn stream_infos(inner: &Inner) -> Result<Vec<StreamInfo>> {
    let state = inner.read_state()?;
    Ok(state
        .catalog
        .streams
        .iter()
        .map(|s| StreamInfo {
            database: s.database.clone(),
            name: s.name.clone(),
            fields: s.fields.clone(),
            partition_ns: super::rollups::partition_ns_of(inner, &s.name),
        })
        .collect())
}

fn flush_one(inner: &Inner, memtable: &Arc<Memtable>, wal_cut: u64) -> Result<()> {
    let started = std::time::Instant::now();
    let streams = stream_infos(inner)?;
    let erased = super::tombstone::memtable_cuts(&*inner.read_state()?, wal_cut);
    let new = write_memtable(inner, memtable, &streams, &erased)?;
    step(&inner.config.data_dir, "flush-segments-written");
    let saved = persist_catalog(inner).and_then(|()| {
        let mut manifest = lock_manifest(inner)?;
        let mut next = manifest.clone();
        next.segments.extend(new.iter().map(|l| l.meta.clone()));
        next.wal_min_file = wal_cut;
        next.save(&inner.paths.manifest)?;
        *manifest = next;
        Ok(())
    });
    if let Err(e) = saved {
        // No manifest names the new segments: remove them now (on a full disk they hold the
        // space the retry needs; open would remove them as orphans anyway).
        remove_unpublished(inner, new.iter().map(|l| l.meta.id));
        return Err(e);
    }
    {
        let mut state = inner.write_state()?;
        state.segments.extend(new.iter().cloned());
        state.segments.sort_by_key(|l| l.meta.age());
        state.frozen.retain(|f| !Arc::ptr_eq(&f.memtable, memtable));
    }
    step(&inner.config.data_dir, "flush-manifest-saved");
    inner.wal.remove_before(wal_cut)?;
    let bytes = new.iter().map(|l| l.meta.bytes).sum::<u64>();
    inner.counters.flushes.fetch_add(1, Ordering::Relaxed);
    inner
        .counters
        .flush_bytes
        .fetch_add(bytes, Ordering::Relaxed);
    tracing::info!(
        segments = new.len(),
        bytes,
        millis = started.elapsed().as_millis() as u64,
        "flushed memtable"
    );
    Ok(())
}

/// Appends to the catalog log what the catalog gained since the last append (O(new series), no
/// copy of the catalog), and rewrites the log as a snapshot when it has grown much larger than one.
fn persist_catalog(inner: &Inner) -> Result<()> {
    let mut log = inner.catalog_log.lock().map_err(|_| super::poisoned())?;
    let pending = log.pending(&inner.read_state()?.catalog);
    log.append(pending)?;
    if log.should_snapshot() {
        let all = CatalogLog::encode_all(&inner.read_state()?.catalog);
        let before = log.len();
        log.replace(all)?;
        tracing::info!(
            before,
            after = log.len(),
            "rewrote the catalog log as a snapshot"
        );
    }
    Ok(())
}

/// The start of the partition holding `t`: a multiple of `p`, saturating at `i64::MIN` for times
/// in the partial partition at the bottom of the range (no time value can overflow).
pub(crate) fn partition_of(t: i64, p: i64) -> i64 {
    let p = p.max(1);
    t.div_euclid(p).saturating_mul(p)
}

/// Writes one segment per (stream, partition) of the memtable, a stream at a time: each series'
/// rows go straight into the writer of their partition, so a flush holds one series' rows at a
/// time besides the memtable (not a second copy of it).
fn write_memtable(
    inner: &Inner,
    memtable: &Memtable,
    streams: &[StreamInfo],
    erased: &std::collections::HashMap<SeriesId, Vec<(i64, i64)>>,
) -> Result<Vec<Arc<LiveSegment>>> {
    let mut out: Vec<Arc<LiveSegment>> = Vec::new();
    let mut open: BTreeMap<i64, OpenSegment> = BTreeMap::new();
    let written = (|| {
        for (stream, sids) in memtable.series_by_stream() {
            let meta = &streams[stream as usize];
            for sid in sids {
                let Some(rows) = memtable.series_rows(sid, &meta.fields) else {
                    continue;
                };
                write_series_rows(inner, meta, &mut open, sid, rows, erased)?;
            }
            while let Some((_, segment)) = open.pop_first() {
                let id = segment.id;
                match segment.finish(meta) {
                    Ok(live) => out.push(live),
                    Err(e) => {
                        remove_unpublished(inner, std::iter::once(id));
                        return Err(e);
                    }
                }
            }
        }
        sync_dir(&inner.paths.segments)
    })();
    if let Err(e) = written {
        let unfinished = open.values().map(|o| o.id);
        remove_unpublished(inner, out.iter().map(|l| l.meta.id).chain(unfinished));
        return Err(e);
    }
    Ok(out)
}

/// Writes one series' memtable rows into the writers of the partitions they fall in.
fn write_series_rows(
    inner: &Inner,
    meta: &StreamInfo,
    open: &mut BTreeMap<i64, OpenSegment>,
    sid: SeriesId,
    rows: Rows,
    erased: &std::collections::HashMap<SeriesId, Vec<(i64, i64)>>,
) -> Result<()> {
    let p = meta.partition_ns;
    // Points without any field value are invisible to reads; nothing to store.
    let rows = rows.drop_empty_rows();
    // Rows of an erased device (tombstones made after this memtable's writes) are not stored.
    let rows = match erased.get(&sid) {
        Some(ranges) => super::tombstone::remove_ranges(rows, ranges),
        None => rows,
    };
    let mut start = 0;
    while start < rows.len() {
        let part = partition_of(rows.times[start], p);
        let end = start + rows.times[start..].partition_point(|&t| partition_of(t, p) == part);
        let writer = match open.entry(part) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(OpenSegment::create(inner, meta, part)?)
            }
        };
        match (start, end) {
            (0, e) if e == rows.len() => writer.writer.write_series(sid, &rows)?,
            _ => writer.writer.write_series(sid, &rows.select(start..end))?,
        }
        start = end;
    }
    Ok(())
}

/// A flushed segment being written: its id, path and writer.
struct OpenSegment {
    id: u64,
    path: std::path::PathBuf,
    part: i64,
    writer: SegmentWriter,
}

impl OpenSegment {
    /// Starts the segment of one stream's partition `part` (its id, hence its `seq`, newer than
    /// every segment before it).
    fn create(inner: &Inner, meta: &StreamInfo, part: i64) -> Result<OpenSegment> {
        let id = lock_manifest(inner)?.allocate_id();
        let path = inner.paths.segment(id);
        // Compaction rewrites flushed segments with the smallest codecs; a flush, on the write
        // path's clock, sizes fewer candidates.
        let writer = SegmentWriter::create(
            &path,
            &meta.database,
            &meta.name,
            part,
            meta.partition_ns,
            &meta.fields,
        )
        .map(|w| w.with_effort(Effort::Quick));
        match writer {
            Ok(writer) => Ok(OpenSegment {
                id,
                path,
                part,
                writer,
            }),
            Err(e) => {
                remove_unpublished(inner, std::iter::once(id));
                Err(e)
            }
        }
    }

    /// Finishes the file and opens it.
    fn finish(self, meta: &StreamInfo) -> Result<Arc<LiveSegment>> {
        let written = self.writer.finish()?;
        let segment = Segment::open(&self.path)?;
        let meta = SegmentMeta {
            id: self.id,
            seq: self.id,
            database: meta.database.clone(),
            stream: meta.name.clone(),
            partition_start: self.part,
            min_time: written.min_time,
            max_time: written.max_time,
            rows: written.rows,
            bytes: written.bytes,
        };
        Ok(Arc::new(LiveSegment { meta, segment }))
    }
}

/// Removes segments (and their temporary files) that no manifest names, after a failed flush.
fn remove_unpublished(inner: &Inner, ids: impl Iterator<Item = u64>) {
    for id in ids {
        let path = inner.paths.segment(id);
        let _ = std::fs::remove_file(path.with_extension("tmp"));
        let _ = std::fs::remove_file(&path);
    }
}

/// [`fault_of`]: the failure was a full disk.
pub(super) const FAULT_NO_SPACE: u8 = 1;

/// Whether `e` is a full disk: [`FAULT_NO_SPACE`], else 0.
pub(super) fn fault_of(e: &StorageError) -> u8 {
    match e.kind() {
        crate::ErrorKind::OutOfSpace => FAULT_NO_SPACE,
        _ => 0,
    }
}

/// The refusal of a write that waited in vain for a background flush: when the last background
/// maintenance failed on a full disk the write is refused as such, so the client sees 507 and
/// "free space" instead of a generic overload (503).
pub(super) fn fault_refusal(inner: &Inner, detail: String) -> StorageError {
    match inner.counters.maintenance_fault.load(Ordering::Relaxed) {
        FAULT_NO_SPACE => StorageError::NoSpace {
            path: inner.config.data_dir.clone(),
            detail: format!(
                "{detail}; the last flush failed because the disk holding the data directory is full: free space there"
            ),
        },
        _ => StorageError::Overloaded(detail),
    }
}
