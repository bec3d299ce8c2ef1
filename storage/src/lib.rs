//! Strata's storage engine: write-ahead log, memtable, compressed columnar segments, series catalog
//! and tag index, flush and compaction. It knows nothing of HTTP, MQTT or any wire format.
//!
//! The entry point is [`Engine`]: [`Engine::open`] recovers from the data directory,
//! [`Engine::write`] makes a [`WriteBatch`] durable, [`Engine::scan`] reads it back.

pub mod backup;
pub mod codec;
pub mod cold;
pub mod lifecycle;
pub mod objstore;
pub mod rollup;
pub mod wal;

mod bytes;
mod catalog;
mod catalog_log;
mod damaged;
mod engine;
mod error;
#[cfg(test)]
mod faults;
mod fsutil;
mod limits;
mod manifest;
mod memtable;
#[cfg(test)]
mod objfaults;
#[cfg(test)]
mod powerloss;
mod priority;
mod rows;
mod segment;
mod types;
mod wal_record;

pub use catalog_log::parse_catalog_log;
pub use engine::{
    BackupSnapshot, BlockStats, COLD_REFERENCE_FILE, ColdReference, Engine, EngineConfig,
    EngineStats, EraseReport, EraseRequest, LatestRequest, LatestValue, ReadMode, ReadSnapshot,
    RecoveryReport, RunFields, RunsCacheStats, SeriesCursor, SeriesLatest, SeriesPiece,
    SnapshotSegment, TimeGroups, WriteObserver, WriteReceipt,
};
pub use error::{ErrorKind, Result, StorageError};
pub use limits::{Limit, Limits};
pub use segment::{ChunkStats, ColumnSummary, summarize_segment_file, verify_segment_file};
pub use types::*;
pub use wal::Durability;

/// The WAL payload of a batch (format in `docs/wal.md`), as [`Engine::write`] appends it. For
/// tools and tests that build a WAL directly, e.g. a data directory as an older version wrote
/// it (replay applies what the WAL holds without today's write-time checks).
pub fn wal_payload(batch: &WriteBatch) -> Vec<u8> {
    wal_record::encode(batch)
}
