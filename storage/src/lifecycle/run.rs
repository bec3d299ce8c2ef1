//! What one lifecycle maintenance run did: segments dropped by retention, windows moved to the
//! cold tier, and the errors it met (reported, retried at the next run).

use serde::Serialize;

/// A segment dropped whole because all of its rows were older than its stream's retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionDrop {
    /// Database.
    pub database: String,
    /// Stream.
    pub stream: String,
    /// Segment file id.
    pub segment: u64,
    /// Rows it held.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its newest row (older than the cutoff).
    pub max_time: i64,
}

/// A segment moved to the cold tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColdMove {
    /// Database.
    pub database: String,
    /// Stream.
    pub stream: String,
    /// Segment file id it came from (the oldest, when it was merged from several).
    pub segment: u64,
    /// Every segment file id it came from (one window's, merged into one object), oldest first.
    pub segments: Vec<u64>,
    /// Object key (relative to the cold store URL).
    pub object: String,
    /// Rows moved.
    pub rows: u64,
    /// Size of the segment(s).
    pub segment_bytes: u64,
    /// Size of the Parquet object.
    pub object_bytes: u64,
    /// How long encoding the segment as Parquet took (on an encoder thread, overlapping the
    /// store steps of the segments before it).
    pub encode_millis: u64,
    /// How long the store steps took after encoding (write, verify, commit, local swap).
    pub millis: u64,
}

/// A report of one maintenance run (`POST /api/v1/lifecycle/run`, or the background thread).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LifecycleRun {
    /// When it started, ns since the epoch.
    pub started_ns: i64,
    /// How long it took.
    pub duration_ms: u64,
    /// Segments dropped by retention.
    pub dropped: Vec<RetentionDrop>,
    /// Cold objects dropped by retention (keys).
    pub dropped_cold: Vec<String>,
    /// Segments moved to the cold tier.
    pub moved: Vec<ColdMove>,
    /// Errors met (the run goes on with the next item; the item is retried next run).
    pub errors: Vec<String>,
    /// After a failed cold step: what reconciling the cold store did (objects of moves that
    /// did not commit deleted, unnamed objects kept). Omitted when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cold_notes: Vec<String>,
    /// On-demand runs only: rollup windows absorbed before the retention drops.
    pub rollup_windows: usize,
    /// On-demand runs only: rollup back-fill steps taken before the retention drops (a run
    /// finishes every back-fill, up to a bound; see `Engine::run_lifecycle`).
    pub rollup_backfill_steps: usize,
}

/// Rows, bytes and time span of one stream in one tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierStatus {
    /// Database.
    pub database: String,
    /// Stream.
    pub stream: String,
    /// `hot` (local segments) or `cold` (objects in the cold store).
    pub tier: &'static str,
    /// Segment files or cold objects.
    pub files: u64,
    /// Stored rows (before last-write-wins across files).
    pub rows: u64,
    /// Bytes on disk / in the store.
    pub bytes: u64,
    /// Oldest row, ns.
    pub oldest_ns: i64,
    /// Newest row, ns.
    pub newest_ns: i64,
    /// Hot segments due to move to the cold tier at the next run (0 for `cold`).
    pub pending_moves: u64,
}

/// The cold store's state and counters since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ColdStatus {
    /// The store URL.
    pub url: String,
    /// Number of the cold manifest in force.
    pub manifest: u64,
    /// Cold reads answered from the cache.
    pub cache_hits: u64,
    /// Cold reads that fetched the object.
    pub cache_misses: u64,
    /// Row groups read already decoded from the cache.
    pub cache_decoded_hits: u64,
    /// Segments moved.
    pub objects_moved: u64,
    /// Segment bytes moved.
    pub segment_bytes_moved: u64,
    /// Parquet bytes written.
    pub object_bytes_written: u64,
    /// Moves that failed (the data stayed hot).
    pub move_errors: u64,
    /// Objects that failed their checksum when read (never served).
    pub corrupt_objects: u64,
    /// The last error met (cleared by a successful move).
    pub last_error: Option<String>,
    /// Objects an erase or retention dropped from the manifest that are not deleted yet: reads
    /// that began before the drop still use them (deleted by the next maintenance pass after).
    pub retired_objects: u64,
}
