//! The engine side of the data lifecycle: setting and reading policies (persisted in
//! `DATA/LIFECYCLE`, see `lifecycle/store.rs`), the retention cutoff reads apply at once, and the
//! maintenance run that drops whole expired segments (and, with a cold store, moves old windows
//! to it). Runs are serialized (`LifecycleState::run_lock`). A run holds `compaction_lock` while
//! it drops segments and picks the segments to move, so it never races a compaction over the same
//! segments; the move then runs without it, its windows registered in `LifecycleState::moving`,
//! which compactions and erase purges skip until the move ends. Each drop edits the MANIFEST first and deletes files after (a crash in between leaves orphans
//! that open deletes, never a MANIFEST naming a missing file).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::policy::{now_ns, retention_cutoff};
use super::{Inner, LiveSegment, poisoned};
use crate::error::{Result, StorageError};
use crate::fsutil::step;
use crate::lifecycle::{LifecyclePolicy, LifecycleRun, PolicyStore, RetentionDrop, check_policy};

/// Lifecycle state kept by the engine.
/// Validates and stores a policy (`None` removes it). Runs [`validate_policy_change`] first.
pub(super) fn set(
    inner: &Inner,
    database: &str,
    stream: Option<&str>,
    policy: Option<LifecyclePolicy>,
) -> Result<()> {
    if let Some(p) = &policy {
        check_policy(p).map_err(|why| {
            StorageError::InvalidInput(format!(
                "lifecycle policy of {}: {why}",
                target(database, stream)
            ))
        })?;
    }
    let specs = super::rollups::specs_of(stream, policy.as_ref());
    super::rollups::validate(
        database,
        stream.unwrap_or(""),
        specs.as_deref().unwrap_or(&[]),
    )?;
    let mut store = inner.lifecycle.store.write().map_err(|_| poisoned())?;
    validate_policy_change(inner, &store, database, stream, policy.as_ref())?;
    store.set(database, stream, policy)?;
    // The policy is saved first: it is the source of truth the rollup configuration follows
    // (a crash before the next line is mended at open by `reconcile_with_policies`).
    super::rollups::set_policy(inner, database, stream, specs.as_deref())?;
    tracing::info!(database, stream, "lifecycle policy changed");
    Ok(())
}

fn target(database: &str, stream: Option<&str>) -> String {
    match stream {
        Some(s) => format!("stream '{s}' of database '{database}'"),
        None => format!("database '{database}'"),
    }
}

/// Checks that need the engine's state before a policy change is accepted (the store is
/// locked, so nothing changes the policies meanwhile). `policy` is the new policy of
/// `database` (`stream = None`) or of one stream override (`None`: the setting is removed);
/// `store` still holds the old policies.
///
/// A retention that would drop raw data a rollup has not absorbed yet is refused, naming the
/// rollup (TimescaleDB's retention silently breaking continuous aggregates is the failure
/// avoided): a rollup still back-filling or with late windows pending older than the cut, and
/// a rollup added by this very change while stored raw data is older than the cut.
fn validate_policy_change(
    inner: &Inner,
    store: &PolicyStore,
    database: &str,
    stream: Option<&str>,
    policy: Option<&LifecyclePolicy>,
) -> Result<()> {
    let now = now_ns();
    for s in affected_streams(inner, store, database, stream)? {
        let new = match (policy, stream) {
            (Some(p), _) => p.clone(),
            // Removing a stream override: the database's policy applies again.
            (None, Some(_)) => store.database(database).cloned().unwrap_or_default(),
            (None, None) => match store.stream(database, &s) {
                Some(p) => p.clone(),
                None => LifecyclePolicy::default(),
            },
        };
        let Some(retention) = new.retention else {
            continue;
        };
        if let Some(why) =
            super::rollups::retention_conflict(inner, database, &s, &new, retention, now)?
        {
            return Err(StorageError::InvalidInput(format!(
                "lifecycle policy of {} refused: {why}",
                target(database, stream)
            )));
        }
    }
    Ok(())
}

/// Streams of `database` whose effective policy a change at this level alters: the one stream,
/// or every stream without its own override.
fn affected_streams(
    inner: &Inner,
    store: &PolicyStore,
    database: &str,
    stream: Option<&str>,
) -> Result<Vec<String>> {
    if let Some(s) = stream {
        return Ok(vec![s.to_string()]);
    }
    let state = inner.read_state()?;
    Ok(state
        .catalog
        .streams_of(database)
        .into_iter()
        .filter(|s| !crate::rollup::is_reserved_rollup_name(s))
        .filter(|s| store.stream(database, s).is_none())
        .collect())
}

/// Back-fill steps an on-demand run takes at most before its retention drops.
const ON_DEMAND_BACKFILL_STEPS: usize = 100_000;

/// Runs lifecycle maintenance now: retention drops (and cold moves when a cold store is
/// configured). Errors of one item are recorded in the report and do not stop the others.
/// `catch_up_rollups` (an operator's run, not the background pass, which maintains rollups
/// itself just before) first absorbs every pending rollup window and finishes the back-fills,
/// so a retention refused for unabsorbed data can be set right after.
pub(super) fn run(inner: &Inner, catch_up_rollups: bool) -> Result<LifecycleRun> {
    let mut report = LifecycleRun::default();
    if catch_up_rollups {
        match super::rollups::catch_up(inner, ON_DEMAND_BACKFILL_STEPS) {
            Ok(r) => {
                report.rollup_windows = r.windows_absorbed;
                report.rollup_backfill_steps = r.backfill_steps;
            }
            Err(e) => report.errors.push(format!("rollups: {e}")),
        }
    }
    // One run at a time; the compaction lock only while segments are dropped and a move is
    // prepared: the move itself runs beside compactions, which skip the windows it takes.
    // It guards no data: a run that panicked must not stop every later one.
    let _run = inner
        .lifecycle
        .run_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let started = Instant::now();
    let now = now_ns();
    report.started_ns = now;
    let moving = {
        let _serial = inner.compaction_lock.lock().map_err(|_| poisoned())?;
        if let Err(e) = drop_expired(inner, now, &mut report) {
            report.errors.push(format!("retention: {e}"));
        }
        match &inner.cold {
            Some(tier) => {
                if let Err(e) = super::cold_move::drop_expired_cold(inner, tier, now, &mut report) {
                    tier.record_error(&e.to_string());
                    report.errors.push(format!("cold retention: {e}"));
                }
                super::cold_move::prepare(inner, tier, now, &mut report)
            }
            None => None,
        }
    };
    if let (Some(tier), Some(moving)) = (&inner.cold, &moving) {
        super::cold_move::move_cold(inner, tier, moving, &mut report);
    }
    drop(moving);
    report.duration_ms = started.elapsed().as_millis() as u64;
    for e in &report.errors {
        tracing::error!(error = %e, "lifecycle maintenance error");
    }
    if !report.dropped.is_empty() {
        tracing::info!(
            segments = report.dropped.len(),
            "retention dropped expired segments"
        );
    }
    *inner.lifecycle.last_run.lock().map_err(|_| poisoned())? = Some(report.clone());
    Ok(report)
}

/// Whether the background thread should run maintenance now (every `lifecycle_interval`).
pub(super) fn due(inner: &Inner) -> bool {
    let Ok(mut last) = inner.lifecycle.last_background.lock() else {
        return false;
    };
    let due = last.is_none_or(|t| t.elapsed() >= inner.config.lifecycle_interval);
    if due {
        *last = Some(Instant::now());
    }
    due
}

/// Drops every segment (and every unreadable segment) whose newest row is older than its
/// stream's retention cutoff: MANIFEST first, then the files.
fn drop_expired(inner: &Inner, now: i64, report: &mut LifecycleRun) -> Result<()> {
    let store = inner.lifecycle.store.read().map_err(|_| poisoned())?;
    let expired = |db: &str, stream: &str, max_time: i64| {
        retention_cutoff(&store.effective(db, stream).0, now).is_some_and(|c| max_time < c)
    };
    let (victims, broken): (Vec<Arc<LiveSegment>>, Vec<u64>) = {
        let state = inner.read_state()?;
        let live = state
            .segments
            .iter()
            .filter(|l| expired(&l.meta.database, &l.meta.stream, l.meta.max_time))
            .cloned()
            .collect();
        let broken = state
            .broken
            .iter()
            .filter(|b| expired(&b.meta.database, &b.meta.stream, b.meta.max_time))
            .map(|b| b.meta.id)
            .collect();
        (live, broken)
    };
    drop(store);
    if victims.is_empty() && broken.is_empty() {
        return Ok(());
    }
    let ids: std::collections::HashSet<u64> = victims
        .iter()
        .map(|l| l.meta.id)
        .chain(broken.iter().copied())
        .collect();
    {
        let mut manifest = inner.maintenance.lock().map_err(|_| poisoned())?;
        let mut next = manifest.clone();
        next.segments.retain(|m| !ids.contains(&m.id));
        next.save(&inner.paths.manifest)?;
        *manifest = next;
        let mut state = inner.write_state()?;
        state.segments.retain(|l| !ids.contains(&l.meta.id));
        state.broken.retain(|b| !ids.contains(&b.meta.id));
    }
    step(&inner.config.data_dir, "retention-manifest-saved");
    for id in &ids {
        let path = inner.paths.segment(*id);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            report.errors.push(format!(
                "retention: cannot delete {} (deleted at next open): {e}",
                path.display()
            ));
        }
    }
    for l in &victims {
        inner
            .counters
            .retention_segments
            .fetch_add(1, Ordering::Relaxed);
        report.dropped.push(RetentionDrop {
            database: l.meta.database.clone(),
            stream: l.meta.stream.clone(),
            segment: l.meta.id,
            rows: l.meta.rows,
            bytes: l.meta.bytes,
            max_time: l.meta.max_time,
        });
    }
    Ok(())
}

/// Per stream and tier: files, rows, bytes, time span, pending moves; and the cold store's
/// counters when one is configured.
pub(super) fn status(
    inner: &Inner,
) -> Result<(
    Vec<crate::lifecycle::TierStatus>,
    Option<crate::lifecycle::ColdStatus>,
)> {
    use std::collections::BTreeMap;
    let now = now_ns();
    let store = inner.lifecycle.store.read().map_err(|_| poisoned())?;
    let mut by: BTreeMap<(String, String, &'static str), crate::lifecycle::TierStatus> =
        BTreeMap::new();
    let mut add = |db: &str,
                   stream: &str,
                   tier: &'static str,
                   (rows, bytes): (u64, u64),
                   (lo, hi): (i64, i64),
                   pending: bool| {
        let e = by
            .entry((db.to_string(), stream.to_string(), tier))
            .or_insert_with(|| crate::lifecycle::TierStatus {
                database: db.to_string(),
                stream: stream.to_string(),
                tier,
                files: 0,
                rows: 0,
                bytes: 0,
                oldest_ns: i64::MAX,
                newest_ns: i64::MIN,
                pending_moves: 0,
            });
        e.files += 1;
        e.rows += rows;
        e.bytes += bytes;
        e.oldest_ns = e.oldest_ns.min(lo);
        e.newest_ns = e.newest_ns.max(hi);
        e.pending_moves += u64::from(pending);
    };
    let state = inner.read_state()?;
    for l in &state.segments {
        let m = &l.meta;
        let hot = store.effective(&m.database, &m.stream).0.hot;
        let p = super::rollups::partition_ns_of(inner, &m.stream);
        let due = inner.cold.is_some()
            && hot.is_some_and(|h| m.partition_start.saturating_add(p) <= now.saturating_sub(h));
        add(
            &m.database,
            &m.stream,
            "hot",
            (m.rows, m.bytes),
            (m.min_time, m.max_time),
            due,
        );
    }
    for o in &state.cold {
        add(
            &o.database,
            &o.stream,
            "cold",
            (o.rows, o.bytes),
            (o.min_time, o.max_time),
            false,
        );
    }
    drop(state);
    let cold = match &inner.cold {
        Some(t) => {
            let c = &t.counters;
            let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            Some(crate::lifecycle::ColdStatus {
                url: t.url().to_string(),
                manifest: inner
                    .cold_manifest
                    .lock()
                    .map(|m| m.number)
                    .unwrap_or_default(),
                cache_hits: n(&c.cache_hits),
                cache_misses: n(&c.cache_misses),
                cache_decoded_hits: n(&c.decoded_hits),
                objects_moved: n(&c.objects_moved),
                segment_bytes_moved: n(&c.segment_bytes_moved),
                object_bytes_written: n(&c.object_bytes_written),
                move_errors: n(&c.move_errors),
                corrupt_objects: n(&c.corrupt_objects),
                last_error: t.last_error.lock().ok().and_then(|e| e.clone()),
                retired_objects: t.retired.lock().map_or(0, |r| r.len() as u64),
            })
        }
        None => None,
    };
    Ok((by.into_values().collect(), cold))
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
