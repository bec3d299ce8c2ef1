//! One engine snapshot per scan per query run.
//!
//! [`QueryEngine`](crate::QueryEngine) runs every query with a fresh [`ReadViews`] in the task
//! context's session config. The first partition of a stream scan to start takes the engine
//! snapshot ([`strata_storage::ReadSnapshot`]) and stores it here under the scan's identity; every
//! other partition of the same scan (and the in-scan aggregation above it) reads that same
//! snapshot, so one query sees one point in time however many partitions read it. A cached plan
//! run again gets a new `ReadViews`, hence a new snapshot. The memtable rows a snapshot copies are
//! reserved in DataFusion's memory pool for as long as the run holds the snapshot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use strata_storage::ReadSnapshot;

/// A snapshot with the memory reservation that accounts for it.
#[derive(Debug)]
struct Held {
    snapshot: Option<Arc<ReadSnapshot>>,
    _reservation: Option<MemoryReservation>,
}

/// Snapshots taken during one query run, by scan identity.
#[derive(Debug, Default)]
pub struct ReadViews {
    held: Mutex<HashMap<usize, Arc<Mutex<Option<Held>>>>>,
}

impl ReadViews {
    /// A fresh, empty registry (one per query run).
    pub fn new() -> Arc<ReadViews> {
        Arc::new(ReadViews::default())
    }
}

/// The snapshot of scan `key` for this run: taken by `take` on first use (the reservation of its
/// memtable rows made in the run's memory pool), shared afterwards. Without a [`ReadViews`] in
/// the context (a plan run outside `QueryEngine`), each call takes its own snapshot.
pub(crate) fn snapshot_for(
    ctx: &TaskContext,
    key: usize,
    take: impl FnOnce() -> Result<Option<ReadSnapshot>>,
) -> Result<Option<Arc<ReadSnapshot>>> {
    let Some(views) = ctx.session_config().get_extension::<ReadViews>() else {
        return Ok(take()?.map(Arc::new));
    };
    let slot = {
        let mut held = views.held.lock().map_err(|_| poisoned())?;
        held.entry(key).or_default().clone()
    };
    // Partitions of one scan wait here for the first to take the snapshot.
    let mut slot = slot.lock().map_err(|_| poisoned())?;
    if let Some(h) = slot.as_ref() {
        return Ok(h.snapshot.clone());
    }
    let snapshot = take()?.map(Arc::new);
    let reservation = match &snapshot {
        Some(s) if s.memory_bytes() > 0 => {
            let r = MemoryConsumer::new("StrataScan snapshot").register(ctx.memory_pool());
            r.try_grow(s.memory_bytes())?;
            Some(r)
        }
        _ => None,
    };
    *slot = Some(Held {
        snapshot: snapshot.clone(),
        _reservation: reservation,
    });
    Ok(snapshot)
}

fn poisoned() -> DataFusionError {
    DataFusionError::Internal("scan snapshot registry lock poisoned".into())
}
