//! The storage crate's integration tests, in one test binary instead of one per file (each links
//! the engine, Arrow and Parquet: about 75 MB of debug build and a link apiece). Tests that need a
//! process of their own stay separate files: `memory_accounting` (a counting global allocator),
//! `wal_poison` and `write_path` (they re-run themselves under a file-size limit by test name).

#[path = "../common/mod.rs"]
mod common;

mod catalog_log_props;
mod compaction;
mod engine;
mod engine_model;
mod limits;
mod multi_block_reads;
mod recovery;
mod segment_corruption;
mod snapshot_reads;
mod wal;
