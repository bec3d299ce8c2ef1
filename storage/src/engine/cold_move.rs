//! Hot → cold moves, cold retention, and the reconciliation of an interrupted move at open.
//!
//! A move of one segment, or of a window's segments merged into one object (`cold_group.rs`;
//! all of their rows are in a partition that ended more than `hot` ago):
//! 1. encode it as Parquet (`cold/parquet.rs`) and write the object with `PutMode::Create`;
//! 2. verify it (size from the store, CRC32C of the bytes read back);
//! 3. commit cold manifest n+1 (`PutMode::Create`) listing it;
//! 4. drop the segment(s) from the local MANIFEST (one save) and swap them for the cold object in
//!    the live state under one state lock (a read sees the rows exactly once: hot before, cold
//!    after);
//! 5. delete the segment files.
//!
//! A crash after 1–2 leaves an object no manifest names whose segment is still live: open
//! deletes it. After 3 the object is committed and the segment still live: open finishes the
//! move (drops the segment from the local MANIFEST). After 4 the segment file is an orphan that
//! open deletes. An object no manifest names whose segment is not live here is kept and
//! reported (it may be the only copy of its rows). A failed step leaves the segment hot, counts
//! the error and reports it in the run, the status and `/metrics`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::cold_group::{Group, encode, groups, series_keys, tag_keys};
use super::in_order::{Encoded, in_order};
use super::{Inner, LiveSegment, cold_retire, poisoned};
use crate::cold::{ColdManifest, ColdObject, ColdTier, CommitFailure, MergedSegment, date_of};
use crate::error::{Result, StorageError};
use crate::fsutil::step;
use crate::lifecycle::{ColdMove, LifecycleRun};
use crate::manifest::{Manifest, SegmentMeta};

/// At open, before segments are opened: finishes moves whose cold commit happened (drops their
/// segments from `manifest`), deletes objects of moves that never committed, and returns what
/// it did as warnings for the recovery report plus the live cold objects.
pub(super) fn reconcile(
    tier: &ColdTier,
    manifest: &mut Manifest,
    manifest_path: &std::path::Path,
) -> Result<(ColdManifest, Vec<Arc<ColdObject>>, Vec<String>)> {
    let mut cold = tier.load_manifest()?;
    let mut notes = Vec::new();
    // Objects dropped from the manifest that reads were still using when the node stopped.
    cold_retire::delete_leftovers(tier, &mut cold, &HashSet::new(), &mut notes)?;
    // Every segment a committed object was moved from, as the local MANIFEST lists it.
    let committed: HashSet<SourceKey> = cold.objects.iter().flat_map(sources_of).collect();
    let before = manifest.segments.len();
    manifest
        .segments
        .retain(|m| !committed.contains(&key_of(m)));
    if manifest.segments.len() != before {
        notes.push(format!(
            "finished {} interrupted cold move(s): the segments were already in the cold store",
            before - manifest.segments.len()
        ));
        manifest.save(manifest_path)?;
    }
    let named: HashSet<&str> = cold.objects.iter().map(|o| o.key.as_str()).collect();
    let live: HashSet<u64> = manifest.segments.iter().map(|m| m.id).collect();
    sweep_orphans(tier, &named, &HashSet::new(), &live, &mut notes)?;
    let mut objects: Vec<Arc<ColdObject>> = cold.objects.iter().cloned().map(Arc::new).collect();
    objects.sort_by_key(|o| o.seq);
    Ok((cold, objects, notes))
}

/// Deletes every object in the store that no manifest names (`named`), that nothing here still
/// reads (`in_use`: live or retired objects, see `cold_retire.rs`), and whose segment is still
/// local (`live`): the leftover of a move that did not commit; or whose segment a named object
/// holds: an object an erase rewrite replaced (its commit landed unseen), or a rewrite that did
/// not commit. Other unnamed objects are kept and reported: they may hold the only copy of their
/// rows.
fn sweep_orphans(
    tier: &ColdTier,
    named: &HashSet<&str>,
    in_use: &HashSet<String>,
    live: &HashSet<u64>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let named_segments: HashSet<u64> = named.iter().filter_map(|k| segment_of_key(k)).collect();
    for key in tier.list_objects()? {
        if named.contains(key.as_str()) || in_use.contains(&key) {
            continue;
        }
        match segment_of_key(&key) {
            Some(id) if live.contains(&id) => {
                tier.delete(&key)?;
                notes.push(format!(
                    "deleted cold object {key} of an interrupted move (segment {id} is still local)"
                ));
            }
            Some(id) if named_segments.contains(&id) => {
                tier.delete(&key)?;
                notes.push(format!(
                    "deleted cold object {key}: a rewrite of segment {id}'s object replaced it, or it is a rewrite that did not commit"
                ));
            }
            _ => {
                let msg = format!(
                    "cold object {key} is in the store but in no cold manifest; kept, it may hold the only copy of its rows (inspect it, then delete it by hand)"
                );
                tracing::warn!(object = %key, "{msg}");
                notes.push(msg);
            }
        }
    }
    Ok(())
}

/// [`reconcile_after_failure`] when a failed step left `ColdTier::reconcile_pending` set (an
/// erase purge calls it before rewriting objects; a move's `prepare` does the same itself).
/// Runs under the compaction lock, like both.
pub(in crate::engine) fn reconcile_if_pending(inner: &Inner, tier: &ColdTier) -> Result<()> {
    if !tier.reconcile_pending.load(Ordering::Relaxed) {
        return Ok(());
    }
    reconcile_after_failure(inner, tier, &mut LifecycleRun::default())
}

/// After a failed move, rewrite or retention step (`ColdTier::reconcile_pending`): reloads
/// the cold manifest, deletes objects of moves that did not commit, and finishes moves whose
/// commit landed though the run saw it fail (a lost answer, a failed local MANIFEST save), as
/// open does: no move is then planned with some of a window's segments already cold (a newer
/// segment of that window would be moved before an older one still hot, and the hot one,
/// read after every cold object, would hide the newer rows).
fn reconcile_after_failure(
    inner: &Inner,
    tier: &ColdTier,
    report: &mut LifecycleRun,
) -> Result<()> {
    let mut cold = tier.load_manifest()?;
    let (live, mut in_use) = {
        let state = inner.read_state()?;
        let live: HashSet<u64> = state.segments.iter().map(|l| l.meta.id).collect();
        let cold_keys: HashSet<String> = state.cold.iter().map(|o| o.key.clone()).collect();
        (live, cold_keys)
    };
    in_use.extend(cold_retire::retired_keys(tier)?);
    let mut notes = Vec::new();
    cold_retire::delete_leftovers(tier, &mut cold, &in_use, &mut notes)?;
    in_use.extend(cold.retired.iter().cloned());
    let named: HashSet<&str> = cold.objects.iter().map(|o| o.key.as_str()).collect();
    sweep_orphans(tier, &named, &in_use, &live, &mut notes)?;
    finish_committed(inner, tier, &cold, &mut notes)?;
    adopt_cold_objects(inner, tier, &cold)?;
    for n in notes {
        tracing::warn!(note = %n, "cold tier reconciliation");
        report.cold_notes.push(n);
    }
    {
        // A version committed meanwhile (a reap's `forget` runs without the compaction lock)
        // is newer than the one loaded above: keep it.
        let mut current = inner.cold_manifest.lock().map_err(|_| poisoned())?;
        if cold.number >= current.number {
            *current = cold;
        }
    }
    tier.reconcile_pending.store(false, Ordering::Relaxed);
    Ok(())
}

/// Makes the live cold objects the manifest's, as open does: an erase rewrite or a retention
/// step whose commit landed though it was seen to fail replaced or dropped objects the live state
/// still lists (a later rewrite of the old object would otherwise add a second copy). The
/// objects it drops are retired (deleted once no read uses them).
fn adopt_cold_objects(inner: &Inner, tier: &ColdTier, cold: &ColdManifest) -> Result<()> {
    let mut state = inner.write_state()?;
    let mut current: std::collections::HashMap<&str, Arc<ColdObject>> = state
        .cold
        .iter()
        .map(|o| (o.key.as_str(), o.clone()))
        .collect();
    let mut objects: Vec<Arc<ColdObject>> = cold
        .objects
        .iter()
        .map(|o| {
            // A key names one object (keys are unique per put), so the live entry of the same
            // key is kept: reads holding it count as its users (`cold_retire.rs`).
            current
                .remove(o.key.as_str())
                .unwrap_or_else(|| Arc::new(o.clone()))
        })
        .collect();
    let dropped: Vec<Arc<ColdObject>> = current.into_values().collect();
    objects.sort_by_key(|o| o.seq);
    state.cold = objects;
    drop(state);
    cold_retire::retire(tier, dropped);
    Ok(())
}

/// Steps 4–5 for every live segment a committed object of `cold` was moved from.
fn finish_committed(
    inner: &Inner,
    tier: &ColdTier,
    cold: &ColdManifest,
    notes: &mut Vec<String>,
) -> Result<()> {
    let live: Vec<SegmentMeta> = (inner.read_state()?.segments.iter())
        .map(|l| l.meta.clone())
        .collect();
    for o in &cold.objects {
        let covered = moved_into(o, &live);
        if covered.is_empty() {
            continue;
        }
        finish_local(inner, &covered, o)?;
        count_move(tier, &covered, o);
        notes.push(format!(
            "finished an interrupted cold move: {} segment(s) already in cold object {}",
            covered.len(),
            o.key
        ));
    }
    Ok(())
}

/// At open, after the catalog: a stream the catalog does not know but the cold manifest lists
/// (a fresh node pointed at the bucket, a data directory restored without it) gets its fields
/// and series from its objects' footers and key columns, so reads see its cold rows. The
/// catalog log keeps them at the next flush. An object that cannot be read is noted, not fatal.
pub(super) fn learn_catalog(
    tier: &ColdTier,
    objects: &[Arc<ColdObject>],
    catalog: &mut crate::catalog::Catalog,
    notes: &mut Vec<String>,
) {
    let unknown: HashSet<(String, String)> = objects
        .iter()
        .filter(|o| catalog.stream_id(&o.database, &o.stream).is_none())
        .map(|o| (o.database.clone(), o.stream.clone()))
        .collect();
    let mut learned = 0usize;
    for o in objects
        .iter()
        .filter(|o| unknown.contains(&(o.database.clone(), o.stream.clone())))
    {
        let (fields, keys) = match tier.series_of(o) {
            Ok(x) => x,
            Err(e) => {
                notes.push(format!("cold object {} not catalogued: {e}", o.key));
                continue;
            }
        };
        let stream = catalog.ensure_stream(&o.database, &o.stream);
        for (name, ty) in &fields {
            match catalog.check_field(stream, name, *ty) {
                Ok(()) => {
                    catalog.ensure_field(stream, name, *ty);
                }
                Err(e) => notes.push(format!("cold object {}: field skipped: {e}", o.key)),
            }
        }
        for key in &keys {
            catalog.ensure_series(stream, key);
        }
        learned += 1;
    }
    if learned > 0 {
        notes.push(format!(
            "catalogued {} stream(s) found only in the cold store, from {learned} object(s)",
            unknown.len()
        ));
    }
}

/// What identifies a segment a cold object was moved from: id, database, stream, oldest and
/// newest row, rows (ids are never reused; the rest guards against a foreign manifest).
type SourceKey<'a> = (u64, &'a str, &'a str, i64, i64, u64);

/// The segments `o` was moved from.
fn sources_of(o: &ColdObject) -> Vec<SourceKey<'_>> {
    (o.sources().iter())
        .map(|m| source_key(&o.database, &o.stream, m))
        .collect()
}

fn key_of(m: &SegmentMeta) -> SourceKey<'_> {
    source_key(&m.database, &m.stream, &merged_from(m))
}

fn source_key<'a>(database: &'a str, stream: &'a str, m: &MergedSegment) -> SourceKey<'a> {
    (m.segment, database, stream, m.min_time, m.max_time, m.rows)
}

/// Those of `metas` that `o` was moved from.
fn moved_into(o: &ColdObject, metas: &[SegmentMeta]) -> Vec<SegmentMeta> {
    let sources: HashSet<SourceKey> = sources_of(o).into_iter().collect();
    (metas.iter())
        .filter(|m| sources.contains(&key_of(m)))
        .cloned()
        .collect()
}

/// The segment id in an object key `.../{id:016}-{unique}.parquet`.
fn segment_of_key(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    name.split('-').next()?.parse().ok()
}

/// Percent-encodes a stream name for an object key (keeps `[A-Za-z0-9._-]`).
fn key_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A name no other move (of this or another node) uses.
pub(super) fn unique() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Threads that encode segments as Parquet ahead of the store steps (the machine's 2 cores:
/// encoding is most of a move's time).
const ENCODERS: usize = 2;

/// The segments one run moves, in groups that each become one object, their windows registered
/// in `LifecycleState::moving` until this is dropped (compaction and erase purges leave those
/// windows alone meanwhile).
pub(super) struct Moving<'a> {
    inner: &'a Inner,
    windows: Vec<(String, String, i64)>,
    groups: Vec<Group>,
}

impl Drop for Moving<'_> {
    fn drop(&mut self) {
        // A commit whose outcome is unknown (`reconcile_pending`) may have put a segment's rows
        // in the cold tier: its windows stay out of compaction until the next run reconciles.
        if self
            .inner
            .cold
            .as_ref()
            .is_some_and(|t| t.reconcile_pending.load(Ordering::Relaxed))
        {
            return;
        }
        // A poisoned set is only read by compaction, which then fails loudly; nothing to undo.
        if let Ok(mut moving) = self.inner.lifecycle.moving.lock() {
            for w in &self.windows {
                moving.remove(w);
            }
        }
    }
}

/// First part of a move, under the compaction lock (no compaction or purge is rewriting
/// segments): reconciles a failed earlier move, picks the segments due to move and registers
/// their windows. `None` when there is nothing to do or reconciling failed (reported).
pub(super) fn prepare<'a>(
    inner: &'a Inner,
    tier: &ColdTier,
    now: i64,
    report: &mut LifecycleRun,
) -> Option<Moving<'a>> {
    if tier.reconcile_pending.load(Ordering::Relaxed)
        && let Err(e) = reconcile_after_failure(inner, tier, report)
    {
        let msg = format!(
            "cold: reconciling the last failed move failed, no move this run (the data stays hot): {e}"
        );
        tier.record_error(&msg);
        report.errors.push(msg);
        return None;
    }
    // Windows a failed run left registered are reconciled now.
    match inner.lifecycle.moving.lock() {
        Ok(mut moving) => moving.clear(),
        Err(_) => {
            report.errors.push(format!("cold: {}", poisoned()));
            return None;
        }
    }
    let groups = match candidates(inner, now) {
        Ok(c) if c.is_empty() => return None,
        Ok(c) => c,
        Err(e) => {
            report.errors.push(format!("cold: {e}"));
            return None;
        }
    };
    let mut windows: Vec<(String, String, i64)> = groups
        .iter()
        .flatten()
        .map(|l| {
            let m = &l.meta;
            (m.database.clone(), m.stream.clone(), m.partition_start)
        })
        .collect();
    windows.sort();
    windows.dedup();
    match inner.lifecycle.moving.lock() {
        Ok(mut moving) => moving.extend(windows.iter().cloned()),
        Err(_) => {
            report.errors.push(format!("cold: {}", poisoned()));
            return None;
        }
    }
    Some(Moving {
        inner,
        windows,
        groups,
    })
}

/// Moves the groups of segments [`prepare`] picked, oldest first, without the compaction lock;
/// stops at the first failure or when the engine closes (the rest stays hot and is retried at the
/// next run). Groups are encoded on [`ENCODERS`] threads at a lower CPU priority
/// (`priority::Nice::Bulk`) through [`in_order`]; committing stays on this thread, at its
/// priority (`Nice::Maintenance`, the same as flush, whose locks it takes: the background
/// lifecycle thread, or the thread `Engine::run_lifecycle` starts for a requested run), and the
/// object's write and check run on the cold tier's write runtime at that priority too, in age
/// order. No lock a flush or
/// a write takes is held while encoding or storing: only the manifest edits and the live-state
/// swap take them.
pub(super) fn move_cold(
    inner: &Inner,
    tier: &ColdTier,
    moving: &Moving,
    report: &mut LifecycleRun,
) {
    let candidates = &moving.groups;
    let stopped = || inner.shutdown.load(Ordering::Acquire);
    // The keys are read from the catalog here, not by the encoders: an encoder at the lowest
    // priority takes no engine lock (preempted while holding one, it would stall writers and
    // flush).
    let keys = |j: usize| Ok(series_keys(&inner.read_state()?.catalog, &candidates[j]));
    let outcome = in_order(
        candidates,
        ENCODERS,
        keys,
        |group, keys| encode(group, &keys),
        stopped,
        |i, encoded| store_one(inner, tier, &candidates[i], encoded, report),
    );
    if let Err(e) = outcome {
        report.errors.push(format!("cold: {e}"));
    }
}

/// Stores one encoded group ([`move_group`]) and reports it; false when it failed (the run
/// stops).
fn store_one(
    inner: &Inner,
    tier: &ColdTier,
    group: &Group,
    (encoded, encode_time): Encoded<(Vec<u8>, u64)>,
    report: &mut LifecycleRun,
) -> bool {
    let started = std::time::Instant::now();
    match move_group(inner, tier, group, encoded) {
        Ok((object, moved)) => {
            let whole = moved.len() == group.len();
            let segment_bytes = count_move(tier, &moved, &object);
            if let Ok(mut e) = tier.last_error.lock() {
                *e = None;
            }
            report.moved.push(ColdMove {
                database: object.database.clone(),
                stream: object.stream.clone(),
                segment: moved[0].id,
                segments: moved.iter().map(|m| m.id).collect(),
                object: object.key.clone(),
                rows: object.rows,
                segment_bytes,
                object_bytes: object.bytes,
                encode_millis: encode_time.as_millis() as u64,
                millis: started.elapsed().as_millis() as u64,
            });
            // An object committed earlier held only part of the group: the rest of its window
            // (older than any later group of that window) moves at the next run, and so does
            // everything after it, so the window never has a newer segment cold and an older
            // one hot.
            if !whole {
                report.cold_notes.push(format!(
                    "finished an interrupted move of {} of {} segments of {}/{}; the rest moves at the next run",
                    moved.len(),
                    group.len(),
                    object.database,
                    object.stream
                ));
            }
            whole
        }
        Err(e) => {
            tier.counters.move_errors.fetch_add(1, Ordering::Relaxed);
            tier.reconcile_pending.store(true, Ordering::Relaxed);
            let m = &group[0].meta;
            let what = match group.len() {
                1 => format!("segment {}", m.id),
                n => format!("segments {} and {} more", m.id, n - 1),
            };
            let msg = format!(
                "cold: moving {what} ({}/{}) failed, it stays hot: {e}",
                m.database, m.stream
            );
            tier.record_error(&msg);
            report.errors.push(msg);
            false
        }
    }
}

/// Counts a finished move of `moved` into `object` in the tier's counters; the segments' bytes.
fn count_move(tier: &ColdTier, moved: &[SegmentMeta], object: &ColdObject) -> u64 {
    let segment_bytes: u64 = moved.iter().map(|m| m.bytes).sum();
    let c = &tier.counters;
    c.objects_moved.fetch_add(1, Ordering::Relaxed);
    c.segment_bytes_moved
        .fetch_add(segment_bytes, Ordering::Relaxed);
    c.object_bytes_written
        .fetch_add(object.bytes, Ordering::Relaxed);
    segment_bytes
}

/// Live segments due to move, in groups that each become one object, oldest window first.
fn candidates(inner: &Inner, now: i64) -> Result<Vec<Group>> {
    let store = inner.lifecycle.store.read().map_err(|_| poisoned())?;
    let state = inner.read_state()?;
    let due: Vec<Arc<LiveSegment>> = state
        .segments
        .iter()
        .filter(|l| {
            let m = &l.meta;
            let p = super::rollups::partition_ns_of(inner, &m.stream);
            let hot = store.effective(&m.database, &m.stream).0.hot;
            hot.is_some_and(|h| m.partition_start.saturating_add(p) <= now.saturating_sub(h))
        })
        .cloned()
        .collect();
    let tags = tag_keys(&state.catalog, &due);
    Ok(groups(due, &state.tombstones, &tags))
}

/// Steps 1–5 of a move of `group`, encoded (step 1's Parquet bytes and rows) by an encoder
/// thread: the object and the segments it took the place of.
fn move_group(
    inner: &Inner,
    tier: &ColdTier,
    group: &Group,
    encoded: Result<(Vec<u8>, u64)>,
) -> Result<(ColdObject, Vec<SegmentMeta>)> {
    let metas: Vec<SegmentMeta> = group.iter().map(|l| l.meta.clone()).collect();
    // An earlier move of these segments committed its object but failed to save the local
    // MANIFEST (a full disk): finish that move instead of uploading a second copy of the rows.
    // (`reconcile_after_failure` finishes such moves before a run plans; this is the backstop.)
    // The rest of the group (if that object holds only some of it) moves at the next run:
    // `store_one` stops this one.
    let committed = inner
        .cold_manifest
        .lock()
        .map_err(|_| poisoned())?
        .objects
        .iter()
        .find_map(|o| {
            let covered = moved_into(o, &metas);
            (!covered.is_empty()).then(|| (o.clone(), covered))
        });
    if let Some((object, covered)) = committed {
        finish_local(inner, &covered, &object)?;
        return Ok((object, covered));
    }
    let (bytes, rows) = encoded?;
    let bytes = bytes::Bytes::from(bytes);
    let first = &metas[0];
    let (parts, crc32c) = crate::cold::parts_and_crc(&bytes).map_err(|e| {
        StorageError::Internal(format!(
            "segment {}: its Parquet copy does not read back: {e}",
            first.id
        ))
    })?;
    let key = format!(
        "{}/{}/date={}/{:016}-{}.parquet",
        first.database,
        key_part(&first.stream),
        date_of(first.partition_start),
        first.id,
        unique()
    );
    let object = ColdObject {
        key: key.clone(),
        database: first.database.clone(),
        stream: first.stream.clone(),
        partition_start: first.partition_start,
        min_time: metas
            .iter()
            .map(|m| m.min_time)
            .min()
            .unwrap_or(first.min_time),
        max_time: metas
            .iter()
            .map(|m| m.max_time)
            .max()
            .unwrap_or(first.max_time),
        rows,
        bytes: bytes.len() as u64,
        crc32c,
        seq: metas.iter().map(|m| m.seq).max().unwrap_or(first.seq),
        segment: first.id,
        parts: Some(parts),
        merged: match metas.len() {
            1 => Vec::new(),
            _ => metas.iter().map(merged_from).collect(),
        },
    };
    if let Err(e) = tier.put_verified(&key, bytes, object.crc32c) {
        // The object may be in the store (a put whose answer was lost, a failed check): remove
        // it now; if that fails too, the next run's reconciliation does.
        let _ = tier.delete(&key);
        return Err(e);
    }
    step(&inner.config.data_dir, "cold-object-verified");
    {
        let mut current = inner.cold_manifest.lock().map_err(|_| poisoned())?;
        let mut next = current.clone();
        next.number += 1;
        next.objects.push(object.clone());
        match tier.try_commit(&next) {
            Ok(()) => *current = next,
            Err(CommitFailure::Refused(e)) => {
                // Another writer may have committed: start from its list next time.
                if let Ok(newer) = tier.load_manifest() {
                    *current = newer;
                }
                let _ = tier.delete(&key);
                return Err(e);
            }
            // The object may be committed: it is kept; the next run reloads the manifest and
            // either finishes this move or deletes the object.
            Err(CommitFailure::Unknown(e)) => return Err(e),
        }
    }
    step(&inner.config.data_dir, "cold-manifest-committed");
    finish_local(inner, &metas, &object)?;
    Ok((object, metas))
}

/// A segment as a merged object's entry lists it.
fn merged_from(m: &SegmentMeta) -> MergedSegment {
    MergedSegment {
        segment: m.id,
        seq: m.seq,
        min_time: m.min_time,
        max_time: m.max_time,
        rows: m.rows,
    }
}

/// Steps 4–5 of a move whose cold manifest names `object`: drop the segments from the local
/// MANIFEST, swap them for the object in the live state, delete the segment files.
fn finish_local(inner: &Inner, metas: &[SegmentMeta], object: &ColdObject) -> Result<()> {
    let ids: HashSet<u64> = metas.iter().map(|m| m.id).collect();
    {
        let mut manifest = inner.maintenance.lock().map_err(|_| poisoned())?;
        let mut next = manifest.clone();
        next.segments.retain(|s| !ids.contains(&s.id));
        next.save(&inner.paths.manifest)?;
        *manifest = next;
        let mut state = inner.write_state()?;
        state.segments.retain(|l| !ids.contains(&l.meta.id));
        if !state.cold.iter().any(|c| c.key == object.key) {
            state.cold.push(Arc::new(object.clone()));
            state.cold.sort_by_key(|o| o.seq);
        }
    }
    step(&inner.config.data_dir, "cold-local-manifest-saved");
    for m in metas {
        let path = inner.paths.segment(m.id);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), error = %e, "cannot delete a moved segment; open deletes it");
        }
    }
    Ok(())
}

/// Drops cold objects whose newest row is older than their stream's retention: manifest n+1
/// without them first, then the objects.
pub(super) fn drop_expired_cold(
    inner: &Inner,
    tier: &ColdTier,
    now: i64,
    report: &mut LifecycleRun,
) -> Result<()> {
    let expired: Vec<Arc<ColdObject>> = {
        let store = inner.lifecycle.store.read().map_err(|_| poisoned())?;
        let state = inner.read_state()?;
        state
            .cold
            .iter()
            .filter(|o| {
                super::policy::retention_cutoff(&store.effective(&o.database, &o.stream).0, now)
                    .is_some_and(|c| o.max_time < c)
            })
            .cloned()
            .collect()
    };
    if expired.is_empty() {
        return Ok(());
    }
    let keys: HashSet<&str> = expired.iter().map(|o| o.key.as_str()).collect();
    {
        let mut current = inner.cold_manifest.lock().map_err(|_| poisoned())?;
        let mut next = ColdManifest {
            number: current.number + 1,
            objects: current
                .objects
                .iter()
                .filter(|o| !keys.contains(o.key.as_str()))
                .cloned()
                .collect(),
            ..current.clone()
        };
        cold_retire::mark(&mut next, keys.iter().copied());
        if let Err(e) = tier.commit_manifest(&next) {
            tier.reconcile_pending.store(true, Ordering::Relaxed);
            return Err(e);
        }
        *current = next;
        let mut state = inner.write_state()?;
        state.cold.retain(|o| !keys.contains(o.key.as_str()));
    }
    report
        .dropped_cold
        .extend(expired.iter().map(|o| o.key.clone()));
    // A read that began before the commit may still fetch them: deleted once none does.
    cold_retire::retire(tier, expired);
    let (_, errors) = cold_retire::reap(inner, tier)?;
    report
        .errors
        .extend(errors.into_iter().map(|e| format!("cold retention: {e}")));
    Ok(())
}

#[cfg(test)]
#[path = "cold_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "cold_fault_tests.rs"]
mod fault_tests;

#[cfg(test)]
#[path = "cold_flush_tests.rs"]
mod flush_tests;
