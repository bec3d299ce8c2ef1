//! Issue 14, defect 2 (read side): the registry's SQL tables win lookups over user data with the
//! same names, for data directories that already hold a stream `devices` in `default` or a
//! database `registry` (written before such names were refused).

use std::sync::Arc;

use crate::support::*;
use strata_query::arrow::array::{RecordBatch, StringArray};
use strata_query::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use strata_query::{QueryEngine, SnapshotSource};
use strata_storage::wal::{Wal, WalOptions};
use strata_storage::{Engine, EngineConfig, Value};

/// A one-column `id` table standing in for the registry's `devices`.
#[derive(Debug)]
struct Devices;

impl SnapshotSource for Devices {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]))
    }

    fn snapshot(&self) -> Result<Vec<RecordBatch>, String> {
        let ids = StringArray::from(vec!["registered-device"]);
        RecordBatch::try_new(self.schema(), vec![Arc::new(ids)])
            .map(|b| vec![b])
            .map_err(|e| e.to_string())
    }
}

fn point(device: &str) -> Point<'_> {
    Point {
        device,
        tags: vec![],
        time: 1,
        fields: vec![("v", Value::Float(1.0))],
    }
}

/// A WAL holding `batches`, as a version that accepted any name wrote it.
fn older_wal(dir: &std::path::Path, batches: &[strata_storage::WriteBatch]) {
    let opts = WalOptions {
        dir: dir.join("wal"),
        durability: strata_storage::Durability::Sync,
        max_file_bytes: 64 << 20,
    };
    let (wal, _) = Wal::open(opts, 0).unwrap();
    for b in batches {
        let seq = wal.append(&strata_storage::wal_payload(b)).unwrap();
        wal.sync_to(seq).unwrap();
    }
}

async fn first_column(q: &QueryEngine, sql: &str) -> Vec<String> {
    let result = q.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows(&result.batches)
        .iter()
        .map(|r| format!("{:?}", r[0]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_tables_win_over_streams_and_databases_of_the_same_name() {
    let dir = tempfile::tempdir().unwrap();
    // Today's engine refuses these names on write; an older version wrote them to its WAL.
    older_wal(
        dir.path(),
        &[
            batch("default", "devices", &[point("impostor")]),
            batch("registry", "devices", &[point("impostor")]),
            batch("registry", "other", &[point("impostor")]),
        ],
    );
    let engine = Arc::new(Engine::open(EngineConfig::new(dir.path())).unwrap());
    let refused = engine.write(&batch("default", "devices", &[point("new")]));
    assert!(refused.unwrap_err().to_string().contains("reserved"));
    write(&engine, "default", "readings", &[point("truck")]);
    let q = QueryEngine::new(engine.clone()).unwrap();
    // Without a registry hook, the streams are plain tables.
    assert_eq!(
        first_column(&q, "SELECT device FROM devices").await,
        [r#"Str("impostor")"#]
    );
    q.register_snapshot_table("devices", Arc::new(Devices));
    let system = [r#"Str("registered-device")"#];
    for sql in [
        "SELECT id FROM devices",
        "SELECT id FROM registry.devices",
        "SELECT id FROM \"default\".devices",
        "SELECT id FROM strata.registry.devices",
    ] {
        assert_eq!(first_column(&q, sql).await, system, "{sql}");
    }
    let err = q.query("SELECT * FROM registry.other").await.unwrap_err();
    assert!(err.is_client_error(), "{err}");
    assert_eq!(
        first_column(&q, "SELECT device FROM readings").await,
        [r#"Str("truck")"#]
    );
    let tables = first_column(
        &q,
        "SELECT table_schema || '.' || table_name FROM information_schema.tables \
         WHERE table_schema <> 'information_schema' ORDER BY 1",
    )
    .await;
    assert_eq!(
        tables,
        [r#"Str("default.readings")"#, r#"Str("registry.devices")"#]
    );
}
