//! Strata's storage engine: write-ahead log, memtable, compressed columnar segments, series catalog
//! and tag index, flush and compaction. It knows nothing of HTTP, MQTT or any wire format.
//!
//! The entry point is [`Engine`]: [`Engine::open`] recovers from the data directory,
//! [`Engine::write`] makes a [`WriteBatch`] durable, [`Engine::scan`] reads it back.

pub mod codec;
pub mod wal;

mod bytes;
mod catalog;
mod engine;
mod error;
mod fsutil;
mod manifest;
mod memtable;
mod rows;
mod segment;
mod types;
mod wal_record;

pub use engine::{
    Engine, EngineConfig, EngineStats, LatestRequest, LatestValue, RecoveryReport, SeriesLatest,
    WriteReceipt,
};
pub use error::{ErrorKind, Result, StorageError};
pub use segment::{ChunkStats, ColumnSummary, summarize_segment_file, verify_segment_file};
pub use types::*;
pub use wal::Durability;
