//! The write path's front door: validate, wait while memtables are over their memory bound
//! (backpressure), append and apply the batch (`apply.rs`), wait for the WAL to make it durable,
//! and wake or run flush when the memtable is full. Refusals are counted by kind.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::apply::{Limited, append, check_reserved, validate};
use super::flush;
use super::{Inner, State, WriteReceipt};
use crate::error::{Result, StorageError};
use crate::{TableWrite, WriteBatch};

const STALL_POLL: Duration = Duration::from_millis(5);

pub(super) fn write(inner: &Inner, batch: &WriteBatch) -> Result<WriteReceipt> {
    write_counted(inner, batch).inspect_err(|e| match e.kind() {
        crate::ErrorKind::OutOfSpace => count(&inner.counters.refused_no_space),
        _ if matches!(e, StorageError::IoFault { .. }) => count(&inner.counters.refused_io),
        _ => {}
    })
}

fn write_counted(inner: &Inner, batch: &WriteBatch) -> Result<WriteReceipt> {
    inner.check_open()?;
    validate(batch)?;
    check_reserved(batch)?;
    let receipt = WriteReceipt {
        rows: batch.rows(),
        values: batch.tables.iter().map(TableWrite::value_count).sum(),
    };
    if receipt.rows == 0 {
        return Ok(receipt);
    }
    // After a failed WAL write: write the cut-back records again first (heals once space returns).
    inner.wal.retry()?;
    admit(inner).inspect_err(|e| {
        if matches!(e, StorageError::Overloaded(_)) {
            count(&inner.counters.refused_overloaded);
        }
    })?;
    let (seq, memtable_bytes) = append(inner, batch, Limited::Yes).inspect_err(|e| {
        if matches!(e, StorageError::LimitExceeded { .. }) {
            count(&inner.counters.refused_limit);
        }
    })?;
    inner.wal.sync_to(seq)?;
    inner
        .counters
        .rows
        .fetch_add(receipt.rows as u64, Ordering::Relaxed);
    inner
        .counters
        .values
        .fetch_add(receipt.values as u64, Ordering::Relaxed);
    after_write(inner, memtable_bytes);
    Ok(receipt)
}

fn count(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Bytes held by the active and frozen memtables.
fn memtable_memory(state: &State) -> usize {
    state.active.bytes()
        + state
            .frozen
            .iter()
            .map(|f| f.memtable.bytes())
            .sum::<usize>()
}

/// Backpressure: while the memtables hold more than twice `memtable_bytes` (flush is behind or
/// failing), the writer waits for flush up to `write_stall_timeout`, then fails with
/// [`StorageError::Overloaded`]. Without a background thread the writer flushes itself.
fn admit(inner: &Inner) -> Result<()> {
    let bound = inner.config.memtable_bytes.saturating_mul(2);
    let timeout = inner.config.write_stall_timeout;
    let deadline = Instant::now() + timeout;
    loop {
        let held = memtable_memory(&*inner.read_state()?);
        if held < bound {
            return Ok(());
        }
        inner.check_open()?;
        if !inner.config.background {
            if let Err(e) = flush::flush(inner) {
                return Err(flush_refusal(e, held, bound));
            }
            continue;
        }
        flush::wake(inner);
        let now = Instant::now();
        if now >= deadline {
            let detail = format!(
                "memtables hold {held} bytes, over the bound of {bound} (2 × memtable_bytes), and flush did not free memory within {timeout:?}"
            );
            return Err(flush::fault_refusal(inner, detail));
        }
        std::thread::sleep(STALL_POLL.min(deadline - now));
    }
}

/// The refusal of a write whose inline flush failed: a full disk keeps its kind (507 over HTTP),
/// anything else is an overload (503).
fn flush_refusal(e: StorageError, held: usize, bound: usize) -> StorageError {
    let detail = format!(
        "memtables hold {held} bytes, over the bound of {bound} (2 × memtable_bytes), and flush failed: {e}"
    );
    match flush::fault_of(&e) {
        flush::FAULT_NO_SPACE => StorageError::NoSpace {
            path: std::path::PathBuf::new(),
            detail,
        },
        _ => StorageError::Overloaded(detail),
    }
}

/// After a durable write: wake the background thread when the memtable is full, or flush here
/// when there is none. A flush failure is logged, never returned: the write is already durable
/// and the WAL keeps it until a later flush succeeds.
fn after_write(inner: &Inner, memtable_bytes: usize) {
    if memtable_bytes < inner.config.memtable_bytes {
        return;
    }
    if inner.config.background {
        flush::wake(inner);
    } else if let Err(e) = flush::flush(inner) {
        tracing::warn!(error = %e, "flush after a write failed; the data stays in the WAL and memtable");
    }
}
