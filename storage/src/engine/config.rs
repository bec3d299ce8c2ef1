//! Engine configuration and the public report types.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::Limits;
use crate::wal::Durability;

/// Engine configuration; [`EngineConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Root data directory (holds `wal/`, `segments/`, `MANIFEST`, `catalog`).
    pub data_dir: PathBuf,
    /// WAL durability mode.
    pub durability: Durability,
    /// Flush the memtable once it holds about this many bytes.
    pub memtable_bytes: usize,
    /// Flush the memtable once its oldest write is this old.
    pub flush_age: Duration,
    /// Flush the memtable once no write has arrived for this long, if it holds at least
    /// `memtable_bytes / 64` (a pause after a burst: its WAL and memory go within one maintenance
    /// pass of `flush_idle`; slower writers are flushed by `flush_age`). Zero disables it.
    pub flush_idle: Duration,
    /// Length of a time partition in nanoseconds (one segment file per stream and partition).
    pub partition_ns: i64,
    /// Rotate WAL files above this size.
    pub wal_file_bytes: u64,
    /// Run flush-by-age and compaction in a background thread.
    pub background: bool,
    /// How often the background thread looks for work.
    pub background_interval: Duration,
    /// Shortest run of similar-sized segments of one partition that the background compaction
    /// merges (see `engine/compaction/picker.rs`).
    pub compaction_trigger: usize,
    /// Check every chunk's CRC when opening (reports damage at start instead of at first read).
    pub verify_on_open: bool,
    /// Write limits of every database without an entry in `database_limits`.
    pub limits: Limits,
    /// Per-database limits (a runtime `Engine::set_limits` takes precedence).
    pub database_limits: BTreeMap<String, Limits>,
    /// How long a write waits for flush to free memtable memory (active + frozen memtables above
    /// 2 × `memtable_bytes`) before it fails with `StorageError::Overloaded`.
    pub write_stall_timeout: Duration,
    /// Salvage instead of refusing (`strata repair`, `strata serve --force-recovery`): rebuild a
    /// missing or damaged MANIFEST from the segment footers, replay every WAL record that verifies
    /// around damage, skip records that cannot be applied; every damaged file is set aside in
    /// `DATA/damaged/<time>/`, and the salvaged data is flushed before the engine is handed out.
    pub force_recovery: bool,
    /// How often the background thread runs lifecycle maintenance (retention, cold moves).
    pub lifecycle_interval: Duration,
    /// Object-store URL of the cold tier (`file:///dir`, `s3://bucket/prefix`,
    /// `az://container/prefix`); `None`: no cold tier, data stays hot.
    pub cold_store: Option<String>,
    /// Bytes of cold objects cached in memory for reads.
    pub cold_cache_bytes: usize,
    /// Bytes of the runs cache: what aggregating reads reduced stored blocks to, kept for the
    /// next read of the same blocks and buckets (0: off).
    pub runs_cache_bytes: usize,
}

impl EngineConfig {
    /// Defaults: `sync` durability, 64 MiB memtable, 10 minute flush age, 1 day partitions.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            durability: Durability::Sync,
            memtable_bytes: 64 << 20,
            flush_age: Duration::from_secs(600),
            flush_idle: Duration::from_secs(30),
            partition_ns: 86_400 * 1_000_000_000,
            wal_file_bytes: 64 << 20,
            background: true,
            background_interval: Duration::from_secs(1),
            compaction_trigger: 4,
            verify_on_open: true,
            limits: Limits::default(),
            database_limits: BTreeMap::new(),
            write_stall_timeout: Duration::from_secs(10),
            force_recovery: false,
            lifecycle_interval: Duration::from_secs(60),
            cold_store: None,
            cold_cache_bytes: 256 << 20,
            runs_cache_bytes: 64 << 20,
        }
    }
}

/// What a successful write stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteReceipt {
    /// Rows written.
    pub rows: usize,
    /// Field values written.
    pub values: usize,
}

/// Counters for `/metrics` and `/health`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineStats {
    /// Number of series in the catalog.
    pub series: usize,
    /// Approximate bytes held by memtables.
    pub memtable_bytes: usize,
    /// Number of segment files.
    pub segments: usize,
    /// Bytes of segment files.
    pub segment_bytes: u64,
    /// Bytes of WAL files.
    pub wal_bytes: u64,
    /// Rows written since start.
    pub rows_written: u64,
    /// Field values written since start.
    pub values_written: u64,
    /// Flushes since start.
    pub flushes: u64,
    /// Compactions since start (one per merge of a run of segments into one).
    pub compactions: u64,
    /// Bytes of segment files written by flushes since start.
    pub flush_bytes_written: u64,
    /// Bytes of segment files written by compactions since start. Write amplification is
    /// `(flush_bytes_written + compaction_bytes_written) / bytes of line protocol accepted`.
    pub compaction_bytes_written: u64,
    /// Segments merged away by compactions since start.
    pub compaction_input_segments: u64,
    /// Memtables frozen and waiting for (or in) flush.
    pub frozen_memtables: usize,
    /// Writes refused since start because they would exceed a database limit.
    pub writes_refused_limit: u64,
    /// Writes refused since start because memtables stayed over their memory bound.
    pub writes_refused_overloaded: u64,
    /// Writes refused since start because the disk holding the data directory was full.
    pub writes_refused_no_space: u64,
    /// Writes refused since start because of another I/O error (EIO, EMFILE, ...).
    pub writes_refused_io: u64,
    /// Segments dropped whole by retention since start.
    pub retention_segments_dropped: u64,
    /// The runs cache's counters (`EngineConfig::runs_cache_bytes`).
    pub runs_cache: super::RunsCacheStats,
}

/// Damage found while opening the engine.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RecoveryReport {
    /// WAL records replayed.
    pub wal_records: usize,
    /// WAL damage (torn or corrupt tail) with file and offset.
    pub wal_warnings: Vec<String>,
    /// Segments whose checks failed, with the reason.
    pub segment_errors: Vec<String>,
    /// What a forced recovery did (rebuilt MANIFEST, skipped records, ...).
    pub repairs: Vec<String>,
    /// Files (or cut WAL tails) kept in `DATA/damaged/<time>/` instead of being deleted.
    pub set_aside: Vec<String>,
    /// What the cold-tier reconciliation at open did or found (interrupted moves finished,
    /// leftover objects deleted or kept).
    pub cold_notes: Vec<String>,
}
