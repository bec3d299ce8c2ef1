//! Deferred deletion of cold objects a commit dropped from the cold manifest (an erase rewrite
//! replaced them, retention expired them, a reconciliation found them gone from the manifest).
//!
//! A read snapshot holds the `Arc<ColdObject>`s it was taken with and may fetch them long after
//! (a streaming query reads window by window). Deleting a dropped object at once would fail such
//! a read with "object not found", so a dropped object is *retired* instead:
//! 1. the commit that drops it also names its key in the manifest's `retired` list, so that open
//!    deletes it after a crash (no read is running then) instead of reporting an unknown object;
//! 2. after the commit the live state stops listing it and it joins [`ColdTier`]'s retired
//!    list, which keeps one reference;
//! 3. [`reap`] (at the end of every retention step, in every compaction pass right after the
//!    erase purge: each maintenance tick and `Engine::compact`, and when the engine stops) deletes each retired object whose only
//!    reference is the list's, i.e. no snapshot uses it, then commits a manifest version whose
//!    `retired` list no longer names it.
//!
//! Invariant: an object is deleted only when neither the live state nor any snapshot holds it.
//! Lock order: `Inner::cold_manifest`, then `ColdTier::retired`; [`reap`] holds neither while it
//! deletes.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Inner, poisoned};
use crate::cold::{ColdManifest, ColdObject, ColdTier, CommitFailure};
use crate::error::Result;

/// Names `keys` in `next.retired` (before `next` is committed), once each.
pub(super) fn mark<'a>(next: &mut ColdManifest, keys: impl IntoIterator<Item = &'a str>) {
    for key in keys {
        if !next.retired.iter().any(|k| k == key) {
            next.retired.push(key.to_string());
        }
    }
}

/// After the commit that dropped them (and after the live state stopped listing them): hands
/// `objects` to [`reap`].
pub(super) fn retire(tier: &ColdTier, objects: impl IntoIterator<Item = Arc<ColdObject>>) {
    match tier.retired.lock() {
        Ok(mut list) => list.extend(objects),
        // Unreachable in practice (nothing panics under this lock); the keys stay in the
        // manifest's `retired` list and open deletes them.
        Err(_) => tracing::error!("the retired cold objects list is poisoned"),
    }
}

/// Keys of the retired objects not deleted yet.
pub(super) fn retired_keys(tier: &ColdTier) -> Result<HashSet<String>> {
    let list = tier.retired.lock().map_err(|_| poisoned())?;
    Ok(list.iter().map(|o| o.key.clone()).collect())
}

/// Deletes every retired object no snapshot holds any more; returns the keys deleted and a
/// message per failed deletion (the object stays retired and the next call tries again).
pub(super) fn reap(inner: &Inner, tier: &ColdTier) -> Result<(Vec<String>, Vec<String>)> {
    let unused: Vec<Arc<ColdObject>> = {
        let mut list = tier.retired.lock().map_err(|_| poisoned())?;
        if list.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let (unused, used) = std::mem::take(&mut *list)
            .into_iter()
            .partition(|o| Arc::strong_count(o) == 1);
        *list = used;
        unused
    };
    let (mut deleted, mut errors, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for o in unused {
        match tier.delete(&o.key) {
            Ok(()) => deleted.push(o.key.clone()),
            Err(e) => {
                errors.push(format!("cannot delete retired cold object {}: {e}", o.key));
                failed.push(o);
            }
        }
    }
    if !deleted.is_empty() {
        forget(inner, tier, &deleted)?;
    }
    retire(tier, failed);
    for e in &errors {
        tracing::warn!(error = %e, "retired cold object kept; deleted at a later pass or at open");
    }
    Ok((deleted, errors))
}

/// Commits the next cold manifest without `deleted` in its `retired` list. A failed commit is
/// only logged: the objects are gone, and a key left in the list is deleted again (a no-op) at
/// open or dropped by a later commit.
fn forget(inner: &Inner, tier: &ColdTier, deleted: &[String]) -> Result<()> {
    let gone: HashSet<&str> = deleted.iter().map(String::as_str).collect();
    let mut current = inner.cold_manifest.lock().map_err(|_| poisoned())?;
    // A refused commit (the manifest moved on unseen) is tried once more on the newer version.
    for _ in 0..2 {
        if !current.retired.iter().any(|k| gone.contains(k.as_str())) {
            return Ok(());
        }
        let mut next = current.clone();
        next.number += 1;
        next.retired.retain(|k| !gone.contains(k.as_str()));
        match tier.try_commit(&next) {
            Ok(()) => {
                *current = next;
                return Ok(());
            }
            Err(CommitFailure::Refused(e)) => {
                tracing::warn!(error = %e, "cold manifest not updated after deleting retired objects");
                match tier.load_manifest() {
                    Ok(newer) => *current = newer,
                    Err(_) => return Ok(()),
                }
            }
            Err(CommitFailure::Unknown(e)) => {
                tracing::warn!(error = %e, "cold manifest update after deleting retired objects may not have landed");
                tier.reconcile_pending.store(true, Ordering::Relaxed);
                return Ok(());
            }
        }
    }
    Ok(())
}

/// How long an explicit maintenance pass (`Engine::compact`) waits for reads still using
/// retired objects: a query answered a moment ago may not have dropped its snapshot yet.
pub(super) const READS_IN_FLIGHT: Duration = Duration::from_secs(2);

/// [`reap`] until nothing is retired, or for at most `wait`; errors end it at once.
pub(super) fn reap_waiting(inner: &Inner, wait: Duration) -> Result<()> {
    let Some(tier) = &inner.cold else {
        return Ok(());
    };
    let started = Instant::now();
    loop {
        let (_, errors) = reap(inner, tier)?;
        let left = tier.retired.lock().map_err(|_| poisoned())?.len();
        if left == 0 || !errors.is_empty() || started.elapsed() >= wait {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`reap`] where the engine has a cold tier, logging failures only (compaction passes and
/// shutdown).
pub(super) fn reap_quietly(inner: &Inner) {
    if let Some(tier) = &inner.cold
        && let Err(e) = reap(inner, tier)
    {
        tracing::warn!(error = %e, "reaping retired cold objects failed; retried later");
    }
}

/// At open, and in a reconciliation after a failed step: deletes the objects `cold.retired`
/// names that nothing here still uses (`in_use`: the live state's and the retired list's keys;
/// empty at open) and drops them from `cold.retired`. Notes what it did; a failed delete is
/// noted and its key kept (a store refusing deletes never stops an open).
pub(super) fn delete_leftovers(
    tier: &ColdTier,
    cold: &mut ColdManifest,
    in_use: &HashSet<String>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let mut kept = Vec::new();
    for key in std::mem::take(&mut cold.retired) {
        if in_use.contains(&key) {
            kept.push(key);
            continue;
        }
        match tier.delete(&key) {
            Ok(()) => notes.push(format!(
                "deleted cold object {key}: the cold manifest had dropped it and no read was using it"
            )),
            // Kept named: the next start or reconciliation tries again.
            Err(e) => {
                notes.push(format!(
                    "cold object {key} (dropped by the cold manifest) could not be deleted, retried later: {e}"
                ));
                kept.push(key);
            }
        }
    }
    cold.retired = kept;
    Ok(())
}
