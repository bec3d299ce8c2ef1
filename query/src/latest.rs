//! The last-value fast path: `last_values('stream')` (or `last_values('database', 'stream')`), a
//! table with one row per series answered from the engine's in-memory last-value cache, without
//! reading any segment.
//!
//! Columns are those of the stream table (`time`, `device`, tags, fields). Each field holds its
//! latest non-null value and `time` the latest time of any field of the series, so a row equals
//! `SELECT max(time), device, <tags>, last(f1, time), ... FROM stream GROUP BY device, <tags>`.
//! Device and tag equalities are pushed down; any other filter is applied to the cached rows.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::scalar::ScalarValue;
use strata_storage::{Column, DEFAULT_DATABASE, Engine, LatestRequest, SeriesBatch};

use crate::convert::to_record_batch;
use crate::layout::{ColumnKind, TableLayout};
use crate::leaf::{bounded_properties, only_partition_zero, project};
use crate::pushdown::{Pushdown, classify_series};

/// The `last_values(...)` table function.
#[derive(Debug)]
pub struct LastValuesFunction {
    engine: Arc<Engine>,
}

impl LastValuesFunction {
    /// The function over `engine`.
    pub fn new(engine: Arc<Engine>) -> LastValuesFunction {
        LastValuesFunction { engine }
    }
}

impl TableFunctionImpl for LastValuesFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let names: Vec<String> = args.exprs().iter().map(string_arg).collect::<Result<_>>()?;
        let (database, stream) = match names.as_slice() {
            [stream] => (DEFAULT_DATABASE, stream.as_str()),
            [database, stream] => (database.as_str(), stream.as_str()),
            _ => {
                return Err(DataFusionError::Plan(
                    "last_values takes a stream name: last_values('stream') or last_values('database', 'stream')"
                        .into(),
                ));
            }
        };
        let table =
            LastValuesTable::load(self.engine.clone(), database, stream).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "last_values: no stream '{stream}' in database '{database}'"
                ))
            })?;
        Ok(Arc::new(table))
    }
}

fn string_arg(e: &Expr) -> Result<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Ok(s.clone()),
        other => Err(DataFusionError::Plan(format!(
            "last_values arguments must be string literals, got {other}"
        ))),
    }
}

/// The latest row of every series of one stream, from the last-value cache.
#[derive(Debug)]
pub struct LastValuesTable {
    engine: Arc<Engine>,
    layout: TableLayout,
}

impl LastValuesTable {
    /// The table of `database.stream`; `None` for an unknown stream.
    pub fn load(engine: Arc<Engine>, database: &str, stream: &str) -> Option<LastValuesTable> {
        let fields = engine.schema(database, stream)?;
        let tags = engine.tag_keys(database, stream);
        let layout = TableLayout::new(database, stream, &tags, &fields);
        Some(LastValuesTable { engine, layout })
    }
}

#[async_trait]
impl TableProvider for LastValuesTable {
    fn schema(&self) -> SchemaRef {
        self.layout.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(classify_series(&self.layout, filters))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (schema, kinds) = project(&self.layout, projection)?;
        let pushdown = Pushdown::from_filters(&self.layout, filters);
        Ok(Arc::new(LastValuesExec::new(
            self.engine.clone(),
            &self.layout,
            schema,
            kinds,
            &pushdown,
            limit,
        )))
    }
}

/// Reads the last-value cache when executed (so a cached plan sees current values).
#[derive(Debug)]
pub struct LastValuesExec {
    engine: Arc<Engine>,
    database: String,
    stream: String,
    /// `None`: all devices.
    devices: Option<BTreeSet<String>>,
    tags: Vec<(String, String)>,
    empty: bool,
    schema: SchemaRef,
    kinds: Vec<ColumnKind>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl LastValuesExec {
    fn new(
        engine: Arc<Engine>,
        layout: &TableLayout,
        schema: SchemaRef,
        kinds: Vec<ColumnKind>,
        pushdown: &Pushdown,
        limit: Option<usize>,
    ) -> LastValuesExec {
        let properties = bounded_properties(schema.clone(), 1, EmissionType::Incremental);
        LastValuesExec {
            engine,
            database: layout.database.clone(),
            stream: layout.stream.clone(),
            devices: pushdown.devices.clone(),
            tags: pushdown.tags.clone(),
            empty: pushdown.empty,
            schema,
            kinds,
            limit,
            properties,
        }
    }

    /// One single-row series batch per series: `time` the latest of its fields, each field its
    /// latest value.
    fn rows(&self) -> Result<Vec<SeriesBatch>> {
        if self.empty {
            return Ok(Vec::new());
        }
        let requests: Vec<Option<String>> = match &self.devices {
            None => vec![None],
            Some(set) => set.iter().cloned().map(Some).collect(),
        };
        let mut out = Vec::new();
        for device in requests {
            let req = LatestRequest {
                database: self.database.clone(),
                stream: self.stream.clone(),
                device,
                tags: self.tags.clone(),
            };
            let (fields, series) = self
                .engine
                .latest(&req)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            for s in series {
                let Some(time) = s.values.iter().flatten().map(|v| v.time).max() else {
                    continue;
                };
                let columns = fields
                    .iter()
                    .zip(&s.values)
                    .map(|((name, ty), v)| {
                        let mut c = Column::new(name.clone(), *ty);
                        match v {
                            Some(v) => {
                                c.data.push_value(&v.value);
                                c.valid.push(true);
                            }
                            None => c.push_null(),
                        }
                        c
                    })
                    .collect();
                out.push(SeriesBatch {
                    series_id: s.series_id,
                    key: strata_storage::SeriesKey::clone(&s.key),
                    times: vec![time],
                    columns,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(n) = self.limit {
            out.truncate(n);
        }
        Ok(out)
    }
}

impl DisplayAs for LastValuesExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "LastValuesExec: stream={}.{} (last-value cache)",
            self.database, self.stream
        )?;
        if let Some(d) = &self.devices {
            write!(f, ", devices={}", d.len())?;
        }
        if !self.tags.is_empty() {
            write!(f, ", tags={:?}", self.tags)?;
        }
        Ok(())
    }
}

impl ExecutionPlan for LastValuesExec {
    crate::leaf::leaf_plan!("LastValuesExec");

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        only_partition_zero("LastValuesExec", partition)?;
        let series = self.rows()?;
        let batch: RecordBatch = to_record_batch(&self.schema, &self.kinds, &series)
            .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))?;
        let stream = futures::stream::iter([Ok(batch)]);
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}
