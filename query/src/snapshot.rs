//! Tables whose rows come from outside the storage engine (the server's registry: `devices`,
//! `entities`, ...), through the [`SnapshotSource`] hook, so this crate depends on nothing above
//! the engine.
//!
//! A source returns its whole content as record batches. It is asked at execution time, so a
//! cached plan always sees current rows; when the source reports a [`SnapshotSource::version`],
//! the last snapshot is reused until the version changes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use crate::leaf::{bounded_properties, only_partition_zero};

/// Something that can list its rows as Arrow record batches (implemented by the server for the
/// registry tables).
pub trait SnapshotSource: Send + Sync + fmt::Debug {
    /// Schema of every snapshot (fixed for the life of the source).
    fn schema(&self) -> SchemaRef;

    /// A number that changes whenever the rows change, if the source can tell cheaply; `None`
    /// (the default) takes a fresh snapshot for every query.
    fn version(&self) -> Option<u64> {
        None
    }

    /// All rows now. The error text is reported as a query execution error.
    fn snapshot(&self) -> std::result::Result<Vec<RecordBatch>, String>;
}

/// Extra tables by name, shared by the catalog and the [`crate::QueryEngine`] that registers them.
pub type ExtraTables = Arc<RwLock<BTreeMap<String, Arc<dyn TableProvider>>>>;

/// The last snapshot taken, with the source version it was taken at.
type SharedSnapshot = Arc<Mutex<Option<(u64, Vec<RecordBatch>)>>>;

/// A [`SnapshotSource`] as a SQL table.
#[derive(Debug)]
pub struct SnapshotTable {
    name: String,
    source: Arc<dyn SnapshotSource>,
    cache: SharedSnapshot,
}

impl SnapshotTable {
    /// The table `name` over `source`.
    pub fn new(name: impl Into<String>, source: Arc<dyn SnapshotSource>) -> SnapshotTable {
        SnapshotTable {
            name: name.into(),
            source,
            cache: Arc::new(Mutex::new(None)),
        }
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.source.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let full = self.source.schema();
        let schema = match projection {
            Some(p) => Arc::new(full.project(p)?),
            None => full,
        };
        let properties = bounded_properties(schema.clone(), 1, EmissionType::Incremental);
        Ok(Arc::new(SnapshotExec {
            name: self.name.clone(),
            source: self.source.clone(),
            cache: self.cache.clone(),
            projection: projection.cloned(),
            schema,
            properties,
        }))
    }
}

/// Takes (or reuses) the snapshot when executed.
#[derive(Debug)]
pub struct SnapshotExec {
    name: String,
    source: Arc<dyn SnapshotSource>,
    cache: SharedSnapshot,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl SnapshotExec {
    fn batches(&self) -> Result<Vec<RecordBatch>> {
        let version = self.source.version();
        if let Some(v) = version
            && let Ok(cache) = self.cache.lock()
            && let Some((cached, batches)) = cache.as_ref()
            && *cached == v
        {
            return Ok(batches.clone());
        }
        let batches = self.source.snapshot().map_err(|e| {
            DataFusionError::Execution(format!("cannot read table {}: {e}", self.name))
        })?;
        if let (Some(v), Ok(mut cache)) = (version, self.cache.lock()) {
            *cache = Some((v, batches.clone()));
        }
        Ok(batches)
    }
}

impl DisplayAs for SnapshotExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SnapshotExec: table={}", self.name)
    }
}

impl ExecutionPlan for SnapshotExec {
    crate::leaf::leaf_plan!("SnapshotExec");

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        only_partition_zero("SnapshotExec", partition)?;
        let batches: Vec<Result<RecordBatch>> = self
            .batches()?
            .into_iter()
            .map(|b| match &self.projection {
                Some(p) => b
                    .project(p)
                    .map_err(|e| DataFusionError::ArrowError(Box::new(e), None)),
                None => Ok(b),
            })
            .collect();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(batches),
        )))
    }
}
