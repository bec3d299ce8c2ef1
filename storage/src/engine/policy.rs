//! Lifecycle policies as the engine holds them (`LifecycleState`: the persisted policies and the
//! last maintenance run) and the retention cutoff that reads apply at once. The maintenance run
//! that acts on them is in `lifecycle.rs`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{Inner, poisoned};
use crate::error::Result;
use crate::lifecycle::{LifecyclePolicy, LifecycleRun, PolicySource, PolicyStore};

#[derive(Debug)]
pub(super) struct LifecycleState {
    /// The persisted policies.
    pub store: std::sync::RwLock<PolicyStore>,
    /// The report of the last maintenance run.
    pub last_run: std::sync::Mutex<Option<LifecycleRun>>,
    /// When the background thread last ran maintenance.
    pub last_background: std::sync::Mutex<Option<Instant>>,
    /// Held for a whole lifecycle run: one run at a time (the background one or an operator's).
    pub run_lock: std::sync::Mutex<()>,
    /// Windows (database, stream, partition start) whose segments a running move is taking
    /// cold: compaction and erase purges leave them alone until the move ends, so the move can
    /// run without the compaction lock (compaction goes on in every other window).
    pub moving: std::sync::Mutex<std::collections::BTreeSet<(String, String, i64)>>,
}

impl LifecycleState {
    pub(super) fn open(data_dir: &std::path::Path) -> Result<LifecycleState> {
        Ok(LifecycleState {
            store: std::sync::RwLock::new(PolicyStore::load(
                &data_dir.join(crate::lifecycle::store::FILE_NAME),
            )?),
            last_run: std::sync::Mutex::new(None),
            last_background: std::sync::Mutex::new(None),
            run_lock: std::sync::Mutex::new(()),
            moving: std::sync::Mutex::new(std::collections::BTreeSet::new()),
        })
    }
}

/// Wall-clock time in ns since the epoch (retention and hot ages count from it).
pub(super) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The oldest time still kept by `policy` at `now` (`None`: everything is kept).
pub(super) fn retention_cutoff(policy: &LifecyclePolicy, now: i64) -> Option<i64> {
    policy.retention.map(|keep| now.saturating_sub(keep))
}

/// The effective policy of a stream and where it comes from.
pub(super) fn effective(
    inner: &Inner,
    database: &str,
    stream: &str,
) -> Result<(LifecyclePolicy, PolicySource)> {
    let store = inner.lifecycle.store.read().map_err(|_| poisoned())?;
    Ok(store.effective(database, stream))
}

/// The oldest time a read of `stream` may return now (`i64::MIN` when nothing has expired).
pub(super) fn read_floor(inner: &Inner, database: &str, stream: &str) -> Result<i64> {
    let (policy, _) = effective(inner, database, stream)?;
    Ok(retention_cutoff(&policy, now_ns()).unwrap_or(i64::MIN))
}
