//! Shared state of the HTTP and Flight handlers: the engine, the write pipeline, the device
//! registry, request limits, parser settings, metrics and the recovery report captured at startup.

use std::sync::Arc;
use std::time::Instant;

use strata_ingest::pipeline::{Admission, Pipeline};
use strata_query::QueryEngine;
use strata_registry::Registry;
use strata_storage::{Engine, RecoveryReport};

use crate::metrics::Metrics;
use crate::plane::DevicePlane;
use crate::validation::ModelSchemas;

/// Cheaply clonable handle passed to every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// The shared parts behind [`AppState`].
pub struct Inner {
    /// The storage engine.
    pub engine: Arc<Engine>,
    /// The device registry (identities, entities, tokens, audit log).
    pub registry: Arc<Registry>,
    /// SQL over the engine.
    pub query: Arc<QueryEngine>,
    /// Body-size limit in bytes (before and after decompression).
    pub max_body: usize,
    /// Most rows one `GET /api/v1/read` returns (`--max-read-rows`).
    pub max_read_rows: usize,
    /// Tag names that identify the device.
    pub device_tags: Vec<String>,
    /// Request and write counters.
    pub metrics: Metrics,
    /// What recovery found when the engine was opened.
    pub recovery: RecoveryReport,
    /// When the server started.
    pub started: Instant,
    /// Device-model schemas for telemetry validation (cached per device, shared with MQTT).
    pub schemas: Arc<ModelSchemas>,
    /// The write pipeline every transport hands its decoded batches to.
    pub pipeline: Pipeline,
    /// The device plane: wake-ups of devices' MQTT sessions and long-polls (commands).
    pub plane: Arc<DevicePlane>,
    /// Open backup sessions (`api/backup.rs`).
    pub backups: crate::backup_sessions::Sessions,
}

impl AppState {
    /// Builds the state; reads the recovery report from the engine once. Device credentials
    /// write only into `device_database`. Limits: request body bytes, rows of a range read.
    pub fn new(
        engine: Arc<Engine>,
        registry: Arc<Registry>,
        query: Arc<QueryEngine>,
        (max_body, max_read_rows): (usize, usize),
        device_tags: Vec<String>,
        device_database: String,
    ) -> Self {
        let recovery = engine.recovery_report();
        let schemas = ModelSchemas::new(registry.clone());
        let admission = Admission::new(device_database, Some(schemas.clone() as _));
        let pipeline = Pipeline::new(engine.clone(), admission);
        let plane = Arc::new(DevicePlane::new(registry.clone()));
        let inner = Inner {
            engine,
            registry,
            query,
            max_body,
            max_read_rows,
            device_tags,
            metrics: Metrics::default(),
            recovery,
            started: Instant::now(),
            schemas,
            pipeline,
            plane,
            backups: Default::default(),
        };
        AppState {
            inner: Arc::new(inner),
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("engine", &self.engine)
            .field("registry", &self.registry.path())
            .field("max_body", &self.max_body)
            .field("device_tags", &self.device_tags)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl AsRef<Metrics> for AppState {
    fn as_ref(&self) -> &Metrics {
        &self.metrics
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}
