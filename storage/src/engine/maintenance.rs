//! The background thread and the entry points of compaction (`compaction/`): the thread flushes by
//! size and age (`flush.rs`), compacts windows with many segments, maintains rollups and runs the
//! lifecycle (`lifecycle.rs`) when it is due.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use super::Inner;
use super::compaction::{self, Mode, picker::PickOptions};
use super::flush::{fault_of, flush};
use crate::error::{Result, StorageError};

/// Runs the compactions the picker finds worth doing (`trigger` = shortest run); returns how many.
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
        let fault = match run_due_work(inner) {
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
    compact_picked(inner, inner.config.compaction_trigger)?;
    super::rollups::background(inner)?;
    if super::lifecycle::due(inner) {
        super::lifecycle::run(inner, false)?;
    }
    Ok(())
}
