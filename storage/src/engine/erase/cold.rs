//! Erasing a device's rows from the cold tier: every cold object older than a tombstone (`seq <
//! mark`) in its database whose time range meets the erased range is fetched (verified) and
//! decoded; if it holds covered rows it is written again without them, like a move: the new
//! object (same directory, same source segment and age, a new unique name) is put with
//! `PutMode::Create` and verified (size and CRC32C read back), cold manifest n+1 replacing the
//! old entry (and naming it `retired`) is committed, the live state swaps the objects, and the
//! old object is retired: deleted once no read snapshot holds it (`cold_retire.rs`). An object
//! left empty is only dropped from the manifest and retired. Until the swap, reads drop the
//! covered rows (`read.rs`).
//!
//! A crash after the put leaves an object no manifest names, which shares its segment with an
//! object the manifest names: open's orphan sweep, or the reconciliation the next purge or move
//! runs first, deletes it. A crash after the commit leaves the old object named `retired`, which
//! open deletes; a commit that landed though the store answered an error is adopted by that
//! reconciliation, which retires the old object.

use std::sync::Arc;

use crate::cold::encode::{Encoder, tag_columns};
use crate::cold::parquet::decode;
use crate::cold::{ColdObject, ColdTier, CommitFailure};
use crate::engine::tombstone::{Tombstone, remove_ranges};
use crate::engine::{Inner, cold_retire};
use crate::error::{Result, StorageError};
use crate::rows::Rows;
use crate::{SeriesKey, engine::poisoned};

/// A cold object that may hold covered rows, and the tombstones that may cover them.
struct Candidate {
    object: Arc<ColdObject>,
    tombstones: Vec<Tombstone>,
}

fn candidates(inner: &Inner) -> Result<Vec<Candidate>> {
    let state = inner.read_state()?;
    Ok(state
        .cold
        .iter()
        .filter_map(|o| {
            let tombstones: Vec<Tombstone> = state
                .tombstones
                .list
                .iter()
                .filter(|t| {
                    let (start, end) = t.range_in(&o.stream);
                    o.seq < t.mark
                        && t.database.as_deref().is_none_or(|d| d == o.database)
                        && o.max_time >= start
                        && o.min_time < end
                })
                .cloned()
                .collect();
            (!tombstones.is_empty()).then(|| Candidate {
                object: o.clone(),
                tombstones,
            })
        })
        .collect())
}

/// Rewrites every cold object holding covered rows (see the module documentation); returns how
/// many were rewritten or dropped. Runs under `compaction_lock`, and never while a cold move runs (`LifecycleState::moving`).
pub(super) fn purge(inner: &Inner) -> Result<usize> {
    let Some(tier) = inner.cold.clone() else {
        return Ok(0);
    };
    // A commit whose outcome is unknown may have replaced objects the live state still lists:
    // reconcile first, or a rewrite of a replaced object would add a second copy.
    crate::engine::cold_move::reconcile_if_pending(inner, &tier)?;
    let mut done = 0;
    for c in candidates(inner)? {
        if rewrite(inner, &tier, &c)? {
            done += 1;
        }
    }
    // The replaced objects are deleted by the reap of the compaction pass that runs this purge.
    Ok(done)
}

/// An object's series (rows per key) and fields.
type Contents = (Vec<(SeriesKey, Rows)>, Vec<(String, crate::FieldType)>);

/// The object's series without the covered rows; `None` when nothing was covered.
fn without_covered(c: &Candidate, tier: &ColdTier) -> Result<Option<Contents>> {
    let o = &c.object;
    let decoded = decode(tier.fetch(o)?).map_err(|e| StorageError::Corrupt {
        path: std::path::PathBuf::from(format!("{}/{}", tier.url(), o.key)),
        detail: e,
    })?;
    let mut series: Vec<(SeriesKey, Rows)> = decoded.series.into_iter().collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let mut changed = false;
    let mut kept = Vec::with_capacity(series.len());
    for (key, rows) in series {
        let ranges: Vec<(i64, i64)> = c
            .tombstones
            .iter()
            .filter(|t| t.device == key.device)
            .map(|t| t.range_in(&o.stream))
            .collect();
        let before = rows.len();
        let rows = remove_ranges(rows, &ranges);
        changed |= rows.len() != before;
        if !rows.is_empty() {
            kept.push((key, rows));
        }
    }
    Ok(changed.then_some((kept, decoded.fields)))
}

/// Encodes `series` as the replacement of `old`.
fn encode(
    old: &ColdObject,
    series: Vec<(SeriesKey, Rows)>,
    fields: &[(String, crate::FieldType)],
) -> Result<(ColdObject, bytes::Bytes)> {
    let codec = |e: String| {
        StorageError::Internal(format!(
            "cold object {} cannot be written again without the erased rows: {e}",
            old.key
        ))
    };
    let tags: Vec<String> = tag_columns(series.iter().map(|(k, _)| k))
        .into_iter()
        .collect();
    let extra = [
        ("strata.database", old.database.clone()),
        ("strata.stream", old.stream.clone()),
    ];
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    let mut enc = Encoder::new(fields, &tags, &extra).map_err(codec)?;
    for (key, rows) in series {
        min_time = min_time.min(rows.times[0]);
        max_time = max_time.max(rows.times[rows.len() - 1]);
        enc.push(key, rows).map_err(codec)?;
    }
    let (bytes, rows) = enc.finish().map_err(codec)?;
    let bytes = bytes::Bytes::from(bytes);
    // The new object's own parts (never the old object's).
    let (parts, crc32c) = crate::cold::parts_and_crc(&bytes).map_err(codec)?;
    let dir = old.key.rsplit_once('/').map_or("", |(d, _)| d);
    let object = ColdObject {
        key: format!(
            "{dir}/{:016}-{}.parquet",
            old.segment,
            super::super::cold_move::unique()
        ),
        min_time,
        max_time,
        rows,
        bytes: bytes.len() as u64,
        crc32c,
        parts: Some(parts),
        ..old.clone()
    };
    Ok((object, bytes))
}

/// Rewrites one candidate; `false` when it held no covered row.
fn rewrite(inner: &Inner, tier: &ColdTier, c: &Candidate) -> Result<bool> {
    let Some((kept, fields)) = without_covered(c, tier)? else {
        return Ok(false);
    };
    let old = &c.object;
    let replacement = match kept.is_empty() {
        true => None,
        false => {
            let (object, bytes) = encode(old, kept, &fields)?;
            if let Err(e) = tier.put_verified(&object.key, bytes, object.crc32c) {
                // It may be in the store (a lost answer, a failed check): remove it.
                let _ = tier.delete(&object.key);
                return Err(e);
            }
            Some(object)
        }
    };
    match commit(inner, tier, old, replacement.as_ref()) {
        Ok(()) => {}
        Err(CommitFailure::Refused(e)) => {
            if let Some(o) = &replacement {
                let _ = tier.delete(&o.key);
            }
            return Err(e);
        }
        // The new version may have landed, naming the replacement: it is kept.
        Err(CommitFailure::Unknown(e)) => {
            tier.reconcile_pending
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(e);
        }
    }
    tracing::info!(
        object = %old.key,
        replacement = replacement.as_ref().map(|o| o.key.as_str()),
        "rewrote a cold object without erased rows"
    );
    Ok(true)
}

/// Commits cold manifest n+1 with `old` replaced by `new` (or dropped), then swaps the live state.
fn commit(
    inner: &Inner,
    tier: &ColdTier,
    old: &ColdObject,
    new: Option<&ColdObject>,
) -> std::result::Result<(), CommitFailure> {
    let refused = CommitFailure::Refused;
    let mut current = inner
        .cold_manifest
        .lock()
        .map_err(|_| refused(poisoned()))?;
    let mut next = current.clone();
    next.number += 1;
    next.objects.retain(|o| o.key != old.key);
    next.objects.extend(new.cloned());
    cold_retire::mark(&mut next, [old.key.as_str()]);
    if let Err(e) = tier.try_commit(&next) {
        // Another writer may have committed: start from its list next time.
        if let Ok(newer) = tier.load_manifest() {
            *current = newer;
        }
        return Err(e);
    }
    *current = next;
    // Committed: a failure from here on must not make the caller delete the replacement.
    let mut state = inner.write_state().map_err(CommitFailure::Unknown)?;
    let (dropped, kept) = std::mem::take(&mut state.cold)
        .into_iter()
        .partition(|o| o.key == old.key);
    state.cold = kept;
    state.cold.extend(new.cloned().map(Arc::new));
    state.cold.sort_by_key(|o| o.seq);
    drop(state);
    // Reads that took the old object before the swap may still fetch it.
    cold_retire::retire(tier, dropped);
    Ok(())
}
