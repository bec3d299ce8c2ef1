//! The lifecycle status as a SQL table, `storage_tiers`: one row per database, stream and tier
//! (`hot`, `cold`) with files, rows, bytes, oldest/newest time, moves pending, the effective
//! policy (hot, retention as text), the cold store's last error (cold rows) and the last
//! maintenance run (time and error count). Read from the engine at every query
//! ([`SnapshotSource`]).

use std::sync::Arc;

use strata_query::arrow::array::{
    ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use strata_query::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use strata_query::{QueryEngine, SnapshotSource};
use strata_storage::Engine;
use strata_storage::lifecycle::format_duration;

/// Registers `storage_tiers` in `query`.
pub fn register(query: &QueryEngine, engine: &Arc<Engine>) {
    let source = TiersTable {
        engine: engine.clone(),
        schema: schema(),
    };
    query.register_snapshot_table("storage_tiers", Arc::new(source));
}

fn schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("database", DataType::Utf8, false),
        Field::new("stream", DataType::Utf8, false),
        Field::new("tier", DataType::Utf8, false),
        Field::new("files", DataType::UInt64, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("oldest", ts(), false),
        Field::new("newest", ts(), false),
        Field::new("pending_moves", DataType::UInt64, false),
        Field::new("hot", DataType::Utf8, true),
        Field::new("retention", DataType::Utf8, true),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("last_run", ts(), true),
        Field::new("last_run_errors", DataType::UInt64, true),
    ]))
}

#[derive(Debug)]
struct TiersTable {
    engine: Arc<Engine>,
    schema: SchemaRef,
}

impl SnapshotSource for TiersTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn snapshot(&self) -> Result<Vec<RecordBatch>, String> {
        let (tiers, cold) = self.engine.lifecycle_status().map_err(|e| e.to_string())?;
        let run = self.engine.last_lifecycle_run();
        let policies: Vec<_> = tiers
            .iter()
            .map(|t| self.engine.lifecycle(&t.database, &t.stream).map(|p| p.0))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let text = |f: &dyn Fn(usize) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(
                (0..tiers.len()).map(f).collect::<Vec<_>>(),
            ))
        };
        let num = |f: &dyn Fn(usize) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from(
                (0..tiers.len()).map(f).collect::<Vec<_>>(),
            ))
        };
        let time = |f: &dyn Fn(usize) -> Option<i64>| -> ArrayRef {
            Arc::new(
                TimestampNanosecondArray::from((0..tiers.len()).map(f).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            )
        };
        let cold_error = cold.as_ref().and_then(|c| c.last_error.clone());
        let columns = vec![
            text(&|i| Some(tiers[i].database.clone())),
            text(&|i| Some(tiers[i].stream.clone())),
            text(&|i| Some(tiers[i].tier.to_string())),
            num(&|i| tiers[i].files),
            num(&|i| tiers[i].rows),
            num(&|i| tiers[i].bytes),
            time(&|i| Some(tiers[i].oldest_ns)),
            time(&|i| Some(tiers[i].newest_ns)),
            num(&|i| tiers[i].pending_moves),
            text(&|i| policies[i].hot.map(format_duration)),
            text(&|i| policies[i].retention.map(format_duration)),
            text(&|i| {
                (tiers[i].tier == "cold")
                    .then(|| cold_error.clone())
                    .flatten()
            }),
            time(&|_| run.as_ref().map(|r| r.started_ns)),
            Arc::new(UInt64Array::from(
                (0..tiers.len())
                    .map(|_| run.as_ref().map(|r| r.errors.len() as u64))
                    .collect::<Vec<_>>(),
            )),
        ];
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())?;
        Ok(vec![batch])
    }
}
