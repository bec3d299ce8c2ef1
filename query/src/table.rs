//! [`StreamTable`]: the DataFusion table of one stream.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use strata_storage::Engine;

use crate::exec::{ScanInput, StrataScanExec};
use crate::layout::TableLayout;
use crate::leaf::project;
use crate::pushdown::{Pushdown, classify};

/// How scans of a table behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanOptions {
    /// Decode all fields so every stored point is a row (see [`crate::QueryConfig::read_all_fields`]).
    pub read_all_fields: bool,
}

/// One stream as a SQL table: `time`, `device`, tags, fields.
#[derive(Debug)]
pub struct StreamTable {
    engine: Arc<Engine>,
    layout: TableLayout,
    options: ScanOptions,
}

impl StreamTable {
    /// The table of `database.stream` as the engine's catalog describes it now; `None` for an
    /// unknown stream.
    pub fn load(
        engine: Arc<Engine>,
        database: &str,
        stream: &str,
        options: ScanOptions,
    ) -> Option<StreamTable> {
        let fields = engine.schema(database, stream)?;
        let tags = engine.tag_keys(database, stream);
        let layout = TableLayout::new(database, stream, &tags, &fields);
        Some(StreamTable {
            engine,
            layout,
            options,
        })
    }

    /// The column mapping.
    pub fn layout(&self) -> &TableLayout {
        &self.layout
    }
}

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        self.layout.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(classify(&self.layout, filters))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (schema, kinds) = project(&self.layout, projection)?;
        Ok(Arc::new(StrataScanExec::new(ScanInput {
            engine: self.engine.clone(),
            database: self.layout.database.clone(),
            stream: self.layout.stream.clone(),
            schema,
            kinds,
            pushdown: Pushdown::from_filters(&self.layout, filters),
            limit,
            read_all_fields: self.options.read_all_fields,
            target_partitions: state.config().target_partitions(),
        })))
    }
}
