//! Strata's SQL layer on DataFusion: a catalog with one schema per database and one table per
//! stream (`time`, `device`, tags, fields), a scan that pushes time range, device and tag
//! predicates, projection and limit into the storage engine and runs in parallel partitions,
//! time-series functions (`time_bucket`, `first`, `last`), and result encoding (JSON, CSV, Arrow IPC).
//!
//! The entry point is [`QueryEngine`]: `QueryEngine::new(engine)?.execute(sql, format).await`.
//! See `docs/sql.md` for the table mapping, functions and pushdown rules.

mod aggregate;
mod answer;
mod catalog;
mod config;
mod convert;
mod engine;
mod error;
mod exec;
mod functions;
mod gapfill;
mod group_slots;
mod last_row;
mod latest;
mod layout;
mod leaf;
mod newest;
mod output;
mod params;
mod percentile;
mod pg_catalog;
mod pg_from;
mod pg_functions;
mod pg_subquery;
mod plan_cache;
mod pushdown;
mod rollup;
mod snapshot;
mod table;
mod views;

pub use aggregate::{AggregateInScan, ScanAggregateExec};
pub use answer::Answer;
pub use catalog::{DatabaseSchema, EXTRA_SCHEMA, StrataCatalog};
pub use config::QueryConfig;
pub use convert::to_record_batch;
pub use engine::{CATALOG_NAME, QueryEngine, QueryResult};
pub use error::QueryError;
pub use exec::StrataScanExec;
pub use last_row::{LastRowExec, LastRowFromCache};
pub use latest::{LastValuesExec, LastValuesFunction, LastValuesTable};
pub use layout::{ColumnKind, DEVICE_COLUMN, TIME_COLUMN, TIME_ZONE, TableLayout};
pub use newest::{NewestFromCache, NewestRowExec};
pub use output::{Encoder, OutputFormat, encode};
pub use pg_catalog::{
    PG_CATALOG, PG_VERSION, PgCatalogSchema, PgType, pg_type_of, postgres_compat,
};
pub use pg_functions::setting as pg_setting;
pub use rollup::RollupRewrite;
pub use snapshot::{ExtraTables, SnapshotExec, SnapshotSource, SnapshotTable};
pub use table::{ScanOptions, StreamTable};
pub use views::ReadViews;

/// Re-exported so callers (the server, benches) use the same versions.
pub use {arrow, datafusion, tokio};
