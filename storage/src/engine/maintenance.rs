//! The background thread and the entry points of compaction (`compaction/`): the thread flushes by
//! size and age (`flush.rs`), compacts windows with many segments, maintains rollups and starts the
//! lifecycle (`lifecycle.rs`) when it is due. A lifecycle run (retention, cold moves: seconds to
//! minutes of Parquet encoding, on encoder threads at a lower CPU priority) runs on a thread of its
//! own, so flush never waits for a move, and holds `compaction_lock` only while it drops expired
//! segments and picks what to move: compaction goes on beside a move, outside its windows.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use super::Inner;
use super::compaction::{self, Mode, picker::PickOptions};
use super::flush::{fault_of, flush};
use crate::error::{Result, StorageError};

/// Runs the compactions the picker finds worth doing (`trigger` = shortest run); returns how many
/// (none when a compaction or lifecycle run holds the compaction lock).
pub(super) fn compact_picked(inner: &Inner, trigger: usize) -> Result<usize> {
    compaction::compact(inner, Mode::Picked(PickOptions::with_trigger(trigger)))
}

/// Merges every window with two or more segments into one; returns how many windows.
pub(super) fn compact_all(inner: &Inner) -> Result<usize> {
    compaction::compact(inner, Mode::All)
}

/// Starts the thread that flushes by size/age and compacts partitions with many segments.
pub(super) fn spawn_background(inner: Arc<Inner>) -> Result<JoinHandle<()>> {
    let root = inner.config.data_dir.clone();
    std::thread::Builder::new()
        .name("strata-maintenance".into())
        .spawn(move || background_loop(&inner))
        .map_err(|source| StorageError::Io { path: root, source })
}

fn background_loop(inner: &Arc<Inner>) {
    crate::priority::lower(crate::priority::Nice::Maintenance);
    let mut lifecycle: Option<JoinHandle<()>> = None;
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
        let fault = match run_due_work(inner, &mut lifecycle) {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %e, "background maintenance failed; will retry");
                fault_of(&e)
            }
        };
        inner
            .counters
            .maintenance_fault
            .store(fault, Ordering::Relaxed);
    }
    // A running move sees the shutdown flag between segments and stops.
    if let Some(h) = lifecycle
        && h.join().is_err()
    {
        tracing::error!("the background lifecycle run panicked");
    }
}

fn run_due_work(inner: &Arc<Inner>, lifecycle: &mut Option<JoinHandle<()>>) -> Result<()> {
    let due = {
        let state = inner.read_state()?;
        super::flush::memory_due(&state, &inner.config)
            || state
                .active
                .first_write()
                .is_some_and(|t| t.elapsed() >= inner.config.flush_age)
            || idle(&state.active, &inner.config)
    };
    if due {
        flush(inner)?;
    }
    // Skipped when another compaction holds the lock (or a lifecycle run, briefly, while it
    // drops expired segments and prepares a move; the move itself runs beside compactions).
    compact_picked(inner, inner.config.compaction_trigger)?;
    super::rollups::background(inner)?;
    if lifecycle.as_ref().is_none_or(JoinHandle::is_finished) && super::lifecycle::due(inner) {
        if let Some(done) = lifecycle.take()
            && done.join().is_err()
        {
            tracing::error!("the background lifecycle run panicked");
        }
        *lifecycle = Some(spawn_lifecycle(inner.clone())?);
    }
    Ok(())
}

/// True when writes into `active` paused for `flush_idle` and it holds enough to be worth a
/// segment (see `EngineConfig::flush_idle`).
fn idle(active: &crate::memtable::Memtable, config: &super::EngineConfig) -> bool {
    !config.flush_idle.is_zero()
        && active.bytes() >= config.memtable_bytes / 64
        && active
            .last_write()
            .is_some_and(|t| t.elapsed() >= config.flush_idle)
}

/// Starts one background lifecycle run on its own thread. The thread inherits the maintenance
/// thread's priority (`priority::Nice::Maintenance`), not the lowest: it takes locks flush needs
/// (manifest saves, the live-state swap), and a thread at nice 19 preempted while holding one
/// would stall flush; only its encoder threads run at `priority::Nice::Bulk`.
fn spawn_lifecycle(inner: Arc<Inner>) -> Result<JoinHandle<()>> {
    let root = inner.config.data_dir.clone();
    std::thread::Builder::new()
        .name("strata-lifecycle".into())
        .spawn(move || {
            if let Err(e) = super::lifecycle::run(&inner, false) {
                tracing::error!(error = %e, "background lifecycle maintenance failed; will retry");
            }
        })
        .map_err(|source| StorageError::Io { path: root, source })
}
