//! The storage engine: ties WAL, memtable, segments, catalog and manifest together.
//!
//! Locking: `state` (RwLock) guards catalog, memtables and the live segment list; writers take it
//! exclusively only to resolve series, append to the WAL buffer and apply to the memtable, then wait
//! for the WAL sync without it. `flush_lock` serializes flushes, `compaction_lock` compactions; the
//! two run concurrently. `maintenance` (Mutex) owns the manifest and is held only to allocate a
//! segment id or to save a manifest edit and swap the live segment list, so a long compaction never
//! blocks a flush. Segments are kept in age order (`SegmentMeta::age`), see `compaction/mod.rs`.

mod apply;
mod backup;
mod cold_group;
mod cold_move;
mod cold_retire;
mod compaction;
mod config;
mod erase;
#[cfg(test)]
mod fault_tests;
mod flush;
mod in_order;
mod latest;
mod lifecycle;
mod maintenance;
mod policy;
#[cfg(test)]
mod powerloss_tests;
mod read;
mod recovery;
mod rollups;
mod runs;
mod runs_cache;
mod tombstone;
mod write;

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

pub use backup::{BackupSnapshot, COLD_REFERENCE_FILE, ColdReference, SnapshotSegment};
pub use config::{EngineConfig, EngineStats, RecoveryReport, WriteReceipt};
pub use erase::{EraseReport, EraseRequest};
pub use latest::{LatestRequest, LatestValue, SeriesLatest};
pub use read::{ReadMode, ReadSnapshot, SeriesCursor, SeriesPiece};
pub use runs::{BlockStats, RunFields, TimeGroups};
pub use runs_cache::RunsCacheStats;

use crate::catalog::Catalog;
use crate::error::{Result, StorageError};
use crate::manifest::{Manifest, SegmentMeta};
use crate::memtable::Memtable;
use crate::segment::Segment;
use crate::wal::Wal;
use crate::{FieldType, ScanRequest, SeriesBatch, WriteBatch};

/// A stream's fields and their types, in creation order.
pub type StreamFields = Vec<(String, FieldType)>;

/// File and directory names inside the data directory.
#[derive(Debug, Clone)]
struct Paths {
    wal: PathBuf,
    segments: PathBuf,
    manifest: PathBuf,
    catalog: PathBuf,
}

impl Paths {
    fn new(root: &std::path::Path) -> Paths {
        Paths {
            wal: root.join("wal"),
            segments: root.join("segments"),
            manifest: root.join("MANIFEST"),
            catalog: root.join("catalog"),
        }
    }

    fn segment(&self, id: u64) -> PathBuf {
        self.segments.join(crate::manifest::segment_file_name(id))
    }
}

/// A segment in the manifest, open for reading.
#[derive(Debug)]
struct LiveSegment {
    meta: SegmentMeta,
    segment: Segment,
}

/// A segment listed in the manifest that could not be opened; reads that need it fail loudly.
#[derive(Debug, Clone)]
struct BrokenSegment {
    meta: SegmentMeta,
    error: String,
}

/// A memtable being flushed, with the first WAL file that holds none of its records.
#[derive(Debug)]
struct Frozen {
    memtable: Arc<Memtable>,
    wal_cut: u64,
}

#[derive(Debug, Default)]
struct State {
    catalog: Catalog,
    active: Memtable,
    frozen: Vec<Frozen>,
    segments: Vec<Arc<LiveSegment>>,
    broken: Vec<BrokenSegment>,
    /// Latest value per series and field (see `latest.rs`).
    last: latest::LastValues,
    /// Grows whenever a stream, field or series is added.
    catalog_version: u64,
    /// Per-database limit overrides and tag-value counts (see `limits.rs`).
    limits: crate::limits::LimitState,
    /// Maintained rollups and their dirty windows (see `rollups.rs`).
    rollups: crate::rollup::RollupState,
    /// Erases not yet physically complete (see `erase.rs`).
    tombstones: tombstone::Tombstones,
    /// Live cold objects in age order (`seq`), see `cold_move.rs`.
    cold: Vec<Arc<crate::cold::ColdObject>>,
}

#[derive(Debug, Default)]
struct Counters {
    rows: AtomicU64,
    values: AtomicU64,
    flushes: AtomicU64,
    compactions: AtomicU64,
    /// Bytes of segments written by flushes.
    flush_bytes: AtomicU64,
    /// Bytes of segments written by compactions.
    compaction_bytes: AtomicU64,
    /// Segments merged away by compactions.
    compaction_inputs: AtomicU64,
    /// Writes refused by a limit (`write.rs`).
    refused_limit: AtomicU64,
    /// Writes refused because flush did not free memory in time (`write.rs`).
    refused_overloaded: AtomicU64,
    /// Writes refused because the disk is full (`write.rs`).
    refused_no_space: AtomicU64,
    /// Writes refused because of another I/O error (`write.rs`).
    refused_io: AtomicU64,
    /// Whether the last background maintenance failed on a full disk (`maintenance.rs`): 0 no,
    /// [`flush::FAULT_NO_SPACE`] yes.
    maintenance_fault: std::sync::atomic::AtomicU8,
    /// Segments dropped whole by retention (`lifecycle.rs`).
    retention_segments: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    config: EngineConfig,
    paths: Paths,
    wal: Wal,
    state: RwLock<State>,
    maintenance: Mutex<Manifest>,
    /// Serializes flushes (held for a whole flush).
    flush_lock: Mutex<()>,
    /// Serializes compactions (held for a whole compaction).
    compaction_lock: Mutex<()>,
    /// The catalog's append-only log, appended at flush.
    catalog_log: Mutex<crate::catalog_log::CatalogLog>,
    counters: Counters,
    shutdown: AtomicBool,
    wake: (Mutex<bool>, Condvar),
    recovery: RecoveryReport,
    /// Rollup maintenance: its lock and counters (see `rollups.rs`).
    rollup: rollups::Shared,
    /// Lifecycle policies and the last maintenance run (`lifecycle.rs`).
    lifecycle: policy::LifecycleState,
    /// The cold tier (`--cold-store`), if configured.
    cold: Option<Arc<crate::cold::ColdTier>>,
    /// The cold manifest this engine last committed or loaded.
    cold_manifest: Mutex<crate::cold::ColdManifest>,
    /// What aggregating reads reduced stored blocks to (`runs_cache.rs`).
    runs_cache: Arc<runs_cache::RunsCache>,
    _lock: File,
}

/// Told about every batch once it is durable (e.g. the rules layer's row and window rules).
/// Called on the writer's thread after [`Engine::write`] succeeded, so it must return at once
/// (hand the batch to a bounded queue; never block, never fail the write).
pub trait WriteObserver: Send + Sync {
    /// `batch` was written and is durable.
    fn after_durable_write(&self, batch: &WriteBatch);
}

/// The storage engine. All methods take `&self`; share it behind an `Arc`.
pub struct Engine {
    inner: Arc<Inner>,
    background: Mutex<Option<JoinHandle<()>>>,
    observer: std::sync::OnceLock<Arc<dyn WriteObserver>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn poisoned() -> StorageError {
    StorageError::Internal("internal lock poisoned by an earlier panic".into())
}

impl Inner {
    fn read_state(&self) -> Result<std::sync::RwLockReadGuard<'_, State>> {
        self.state.read().map_err(|_| poisoned())
    }

    fn write_state(&self) -> Result<std::sync::RwLockWriteGuard<'_, State>> {
        self.state.write().map_err(|_| poisoned())
    }

    fn check_open(&self) -> Result<()> {
        if self.shutdown.load(Ordering::Acquire) {
            Err(StorageError::ShutDown)
        } else {
            Ok(())
        }
    }
}

impl Engine {
    /// Opens the engine in `config.data_dir`: loads manifest and catalog, opens (and verifies)
    /// segments, deletes orphans, replays the WAL, and starts background flush/compaction.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        let inner = recovery::open(config)?;
        if inner.config.force_recovery {
            recovery::checkpoint(&inner)?;
        }
        let inner = Arc::new(inner);
        rollups::reconcile_with_policies(&inner)?;
        erase::after_open(&inner)?;
        let background = match inner.config.background {
            true => Some(maintenance::spawn_background(inner.clone())?),
            false => None,
        };
        Ok(Engine {
            inner,
            background: Mutex::new(background),
            observer: std::sync::OnceLock::new(),
        })
    }

    /// Validates, logs and applies a batch; returns once it is durable under the configured mode.
    pub fn write(&self, batch: &WriteBatch) -> Result<WriteReceipt> {
        let receipt = write::write(&self.inner, batch)?;
        if receipt.rows > 0
            && let Some(o) = self.observer.get()
        {
            o.after_durable_write(batch);
        }
        Ok(receipt)
    }

    /// Sets the one [`WriteObserver`] told about every durable batch; `false` if one was set.
    pub fn set_write_observer(&self, observer: Arc<dyn WriteObserver>) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// Reads rows of matching series in `[start, end)`, merging memtables and segments (last write wins).
    pub fn scan(&self, req: &ScanRequest) -> Result<Vec<SeriesBatch>> {
        read::scan(&self.inner, req, ReadMode::Values)
    }

    /// Takes one consistent view of the series matching `req` (and, when given, belonging to
    /// one of `devices`) to stream them window by window. `None` when the stream or every
    /// requested field is unknown, or the range is empty.
    pub fn snapshot(
        &self,
        req: &ScanRequest,
        devices: Option<&[String]>,
        mode: ReadMode,
    ) -> Result<Option<ReadSnapshot>> {
        read::snapshot(&self.inner, req, devices, mode)
    }

    /// The latest value of every field of the matching series, from memory (no segment is read):
    /// the stream's fields and, per series, each field's latest `(time, value)`. Empty for an
    /// unknown stream.
    pub fn latest(&self, req: &LatestRequest) -> Result<(StreamFields, Vec<SeriesLatest>)> {
        let floor = policy::read_floor(&self.inner, &req.database, &req.stream)?;
        let state = self.inner.read_state()?;
        let Some(id) = state.catalog.stream_id(&req.database, &req.stream) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let meta = state.catalog.stream(id);
        let series = meta
            .matching(req.device.as_deref(), &req.tags)
            .iter()
            .filter_map(|sid| {
                let mut values = state.last.get(sid);
                values.resize(meta.fields.len(), None);
                // A latest value older than the retention is expired like the rest.
                values
                    .iter_mut()
                    .filter(|v| v.as_ref().is_some_and(|v| v.time < floor))
                    .for_each(|v| *v = None);
                values.iter().any(Option::is_some).then(|| SeriesLatest {
                    series_id: sid,
                    key: state.catalog.series[sid as usize].key.clone(),
                    values,
                })
            })
            .collect();
        Ok((meta.fields.clone(), series))
    }

    /// A number that grows whenever a stream, field or series is added (so a cached query plan
    /// built from the catalog is stale when it changed).
    pub fn catalog_version(&self) -> u64 {
        self.inner
            .read_state()
            .map(|s| s.catalog_version)
            .unwrap_or(u64::MAX)
    }

    /// Like [`Engine::scan`], but every stored point in range is a row even when none of the
    /// requested fields has a value in it (they are null there). Only the requested fields are
    /// decoded, so this answers "all points, a few columns" without reading the others.
    pub fn scan_rows(&self, req: &ScanRequest) -> Result<Vec<SeriesBatch>> {
        read::scan(&self.inner, req, ReadMode::Points)
    }

    /// Erases a device's data in `[start, end)` (in one database or all): reads stop returning it
    /// when this returns, the erase is durable, and the next maintenance pass (background
    /// compaction or [`Engine::compact`]) removes the rows from every segment (`erase.rs`).
    pub fn erase_device(&self, req: &EraseRequest) -> Result<EraseReport> {
        erase::erase(&self.inner, req)
    }

    /// A consistent copy of the data directory's state for a backup: MANIFEST, its segments (by
    /// mapping), catalog log, the WAL up to this instant and the tombstone list (`backup.rs`).
    pub fn backup_snapshot(&self) -> Result<BackupSnapshot> {
        backup::snapshot(&self.inner)
    }

    /// Writes all memtable data to segment files, records them in the manifest and drops WAL files.
    pub fn flush(&self) -> Result<()> {
        flush::flush(&self.inner)
    }

    /// Merges the segments of every partition that has more than one; returns how many partitions were compacted.
    /// Runs without blocking flushes (see `compaction/mod.rs`). Cold objects an erase or
    /// retention dropped are deleted before it returns, waiting up to
    /// [`cold_retire::READS_IN_FLIGHT`] for reads still using them (a later pass deletes the rest).
    pub fn compact(&self) -> Result<usize> {
        let merged = maintenance::compact_all(&self.inner)?;
        cold_retire::reap_waiting(&self.inner, cold_retire::READS_IN_FLIGHT)?;
        Ok(merged)
    }

    /// Stops background work and flushes. Later writes fail with [`StorageError::ShutDown`].
    pub fn shutdown(&self) -> Result<()> {
        self.stop_background();
        flush::flush(&self.inner)
    }

    fn stop_background(&self) {
        self.inner.shutdown.store(true, Ordering::Release);
        flush::wake(&self.inner);
        let handle = self.background.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        // Snapshots of finished reads are gone by now: delete what they kept alive.
        cold_retire::reap_quietly(&self.inner);
    }

    /// Database names.
    pub fn databases(&self) -> Vec<String> {
        self.inner
            .read_state()
            .map(|s| s.catalog.databases())
            .unwrap_or_default()
    }

    /// Stream names of a database.
    pub fn streams(&self, database: &str) -> Vec<String> {
        self.inner
            .read_state()
            .map(|s| s.catalog.streams_of(database))
            .unwrap_or_default()
    }

    /// Field names and types of a stream, in creation order.
    pub fn schema(&self, database: &str, stream: &str) -> Option<Vec<(String, FieldType)>> {
        let state = self.inner.read_state().ok()?;
        let id = state.catalog.stream_id(database, stream)?;
        Some(state.catalog.stream(id).fields.clone())
    }

    /// Tag names (other than the device) seen in the stream's series, sorted; empty for an unknown stream.
    pub fn tag_keys(&self, database: &str, stream: &str) -> Vec<String> {
        self.with_stream(database, stream, |m| m.tag_keys())
    }

    /// Devices that have at least one series in the stream, sorted; empty for an unknown stream.
    pub fn devices(&self, database: &str, stream: &str) -> Vec<String> {
        self.with_stream(database, stream, |m| m.devices())
    }

    fn with_stream<T: Default>(
        &self,
        database: &str,
        stream: &str,
        f: impl FnOnce(crate::catalog::StreamView<'_>) -> T,
    ) -> T {
        let Ok(state) = self.inner.read_state() else {
            return T::default();
        };
        match state.catalog.stream_id(database, stream) {
            Some(id) => f(state.catalog.stream(id)),
            None => T::default(),
        }
    }

    /// Current counters.
    pub fn stats(&self) -> EngineStats {
        let c = &self.inner.counters;
        let mut stats = EngineStats {
            wal_bytes: self.inner.wal.disk_bytes(),
            rows_written: c.rows.load(Ordering::Relaxed),
            values_written: c.values.load(Ordering::Relaxed),
            flushes: c.flushes.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            flush_bytes_written: c.flush_bytes.load(Ordering::Relaxed),
            compaction_bytes_written: c.compaction_bytes.load(Ordering::Relaxed),
            compaction_input_segments: c.compaction_inputs.load(Ordering::Relaxed),
            writes_refused_limit: c.refused_limit.load(Ordering::Relaxed),
            writes_refused_overloaded: c.refused_overloaded.load(Ordering::Relaxed),
            writes_refused_no_space: c.refused_no_space.load(Ordering::Relaxed),
            writes_refused_io: c.refused_io.load(Ordering::Relaxed),
            retention_segments_dropped: c.retention_segments.load(Ordering::Relaxed),
            runs_cache: self.inner.runs_cache.stats(),
            ..EngineStats::default()
        };
        if let Ok(s) = self.inner.read_state() {
            stats.series = s.catalog.series.len();
            stats.memtable_bytes =
                s.active.bytes() + s.frozen.iter().map(|f| f.memtable.bytes()).sum::<usize>();
            stats.frozen_memtables = s.frozen.len();
            stats.segments = s.segments.len();
            stats.segment_bytes = s.segments.iter().map(|l| l.meta.bytes).sum();
        }
        stats
    }

    /// Sets the lifecycle policy of `database` (`stream = None`) or one stream's override
    /// (`None` removes it), durably; it applies to existing data from now on (reads filter
    /// expired rows at once, the next maintenance run drops and moves whole segments).
    pub fn set_lifecycle(
        &self,
        database: &str,
        stream: Option<&str>,
        policy: Option<crate::lifecycle::LifecyclePolicy>,
    ) -> Result<()> {
        lifecycle::set(&self.inner, database, stream, policy)
    }

    /// The policy in force for `stream` of `database` (its override, else the database's, else
    /// the default: everything hot, kept forever) and where it comes from.
    pub fn lifecycle(
        &self,
        database: &str,
        stream: &str,
    ) -> Result<(
        crate::lifecycle::LifecyclePolicy,
        crate::lifecycle::PolicySource,
    )> {
        policy::effective(&self.inner, database, stream)
    }

    /// The policy set on `database` itself and its stream overrides (what was set, not the
    /// effective policies).
    pub fn lifecycle_settings(
        &self,
        database: &str,
    ) -> Result<(
        Option<crate::lifecycle::LifecyclePolicy>,
        std::collections::BTreeMap<String, crate::lifecycle::LifecyclePolicy>,
    )> {
        let store = self.inner.lifecycle.store.read().map_err(|_| poisoned())?;
        Ok((
            store.database(database).cloned(),
            store.stream_overrides(database),
        ))
    }

    /// Runs lifecycle maintenance now (retention drops, cold moves) and reports what it did.
    /// The run takes a thread of its own at the background thread's priority
    /// (`priority::Nice::Maintenance`), as a scheduled run does: an operator's "run now" must
    /// not take the cores from writers either (the calling thread's priority is left alone).
    pub fn run_lifecycle(&self) -> Result<crate::lifecycle::LifecycleRun> {
        self.inner.check_open()?;
        std::thread::scope(|s| {
            let run = std::thread::Builder::new()
                .name("strata-lifecycle-run".into())
                .spawn_scoped(s, || {
                    crate::priority::lower(crate::priority::Nice::Maintenance);
                    lifecycle::run(&self.inner, true)
                })
                .map_err(|e| {
                    StorageError::Internal(format!("cannot start a lifecycle run's thread: {e}"))
                })?;
            run.join().unwrap_or_else(|_| {
                Err(StorageError::Internal(
                    "the lifecycle run stopped on a panic; see the log".into(),
                ))
            })
        })
    }

    /// Per stream and tier (`hot`, `cold`): files, rows, bytes, oldest/newest time, moves due;
    /// and the cold store's counters and last error when one is configured.
    pub fn lifecycle_status(
        &self,
    ) -> Result<(
        Vec<crate::lifecycle::TierStatus>,
        Option<crate::lifecycle::ColdStatus>,
    )> {
        lifecycle::status(&self.inner)
    }

    /// The report of the last maintenance run since start, if any.
    pub fn last_lifecycle_run(&self) -> Option<crate::lifecycle::LifecycleRun> {
        self.inner
            .lifecycle
            .last_run
            .lock()
            .ok()
            .and_then(|r| r.clone())
    }

    /// What recovery found when the engine was opened.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.recovery.clone()
    }

    /// Replaces the write limits of `database` (checked from the next write on; what is stored
    /// already is kept even when it is over the new limits).
    pub fn set_limits(&self, database: &str, limits: crate::Limits) -> Result<()> {
        let mut state = self.inner.write_state()?;
        state.limits.set_override(database, limits);
        Ok(())
    }

    /// The write limits in force for `database`.
    pub fn limits(&self, database: &str) -> crate::Limits {
        match self.inner.read_state() {
            Ok(state) => apply::limits_of(&self.inner, &state, database),
            Err(_) => apply::configured_limits(&self.inner.config, database),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_background();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Column, DEFAULT_DATABASE, SeriesKey, TableWrite, Value};

    fn one_row(stream: &str, device: &str, tags: &[(&str, &str)]) -> WriteBatch {
        let mut column = Column::new("v", FieldType::Float);
        column.data.push_value(&Value::Float(1.0));
        column.valid.push(true);
        WriteBatch {
            database: DEFAULT_DATABASE.into(),
            tables: vec![TableWrite {
                stream: stream.into(),
                series: vec![SeriesKey {
                    device: device.into(),
                    tags: tags
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                }],
                row_series: vec![0],
                times: vec![1],
                columns: vec![column],
            }],
        }
    }

    #[test]
    fn tag_keys_and_devices_follow_writes_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = EngineConfig::new(dir.path());
        cfg.background = false;
        let engine = Engine::open(cfg.clone()).unwrap();
        assert!(engine.tag_keys("default", "cpu").is_empty());
        assert!(engine.devices("default", "cpu").is_empty());
        engine
            .write(&one_row("cpu", "b", &[("rack", "1")]))
            .unwrap();
        engine
            .write(&one_row("cpu", "a", &[("zone", "x")]))
            .unwrap();
        engine.write(&one_row("mem", "c", &[])).unwrap();
        assert_eq!(engine.tag_keys("default", "cpu"), vec!["rack", "zone"]);
        assert_eq!(engine.devices("default", "cpu"), vec!["a", "b"]);
        assert!(engine.tag_keys("default", "mem").is_empty());
        assert_eq!(engine.devices("default", "mem"), vec!["c"]);
        engine.shutdown().unwrap();
        drop(engine);
        let engine = Engine::open(cfg).unwrap();
        assert_eq!(engine.tag_keys("default", "cpu"), vec!["rack", "zone"]);
        assert_eq!(engine.devices("default", "cpu"), vec!["a", "b"]);
        assert!(engine.devices("other", "cpu").is_empty());
    }
}
