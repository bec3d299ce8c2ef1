//! "The newest point": `SELECT ... FROM stream [WHERE device/tag filters] ORDER BY time DESC LIMIT 1`
//! answered from the engine's last-value cache instead of sorting the stream's history.
//!
//! A physical optimizer rule replaces a top-1 sort on `time DESC` directly above a stream scan
//! without a time range by [`NewestRowExec`], which has the scan's partitions and schema and
//! yields, per partition, the newest point of its devices: time `T` = the latest time of any field
//! of a series, each field its cached value if that value is at `T`, else null — exactly the row
//! stored at `T` (every tied series' row when several share `T`). The sort (and any merge) above it is kept, so ties and the final pick across
//! partitions behave as before.

use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions,
};
use strata_storage::{Column as StorageColumn, LatestRequest, SeriesBatch};

use crate::convert::to_record_batch;
use crate::exec::StrataScanExec;
use crate::layout::ColumnKind;
use crate::leaf::without_children;

/// The optimizer rule (runs after DataFusion's own physical rules).
#[derive(Debug, Default)]
pub struct NewestFromCache;

impl PhysicalOptimizerRule for NewestFromCache {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(new_input) = rewrite(&node) else {
                return Ok(Transformed::no(node));
            };
            // Same properties as the scan it replaces.
            let keep = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);
            Ok(Transformed::yes(
                node.replace_children(vec![new_input], keep)?,
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "newest_from_cache"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The replacement input of a matching top-1 sort.
fn rewrite(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let sort = node.downcast_ref::<SortExec>()?;
    if sort.fetch() != Some(1) {
        return None;
    }
    // DataFusion may wrap the scan for cooperative scheduling; the replacement yields one batch.
    let mut input = sort.input();
    if input.name() == "CooperativeExec" {
        input = input.children().into_iter().next()?;
    }
    let scan = input.downcast_ref::<StrataScanExec>()?;
    let r = scan.request();
    // Without `read_all_fields` a point is a row only when it holds a requested field, while
    // the cache's newest point may hold none of them: the sorted scan answers then.
    if scan.has_limit() || r.start != i64::MIN || r.end != i64::MAX || !scan.every_point() {
        return None;
    }
    let first = sort.expr().first();
    let col = first.expr.downcast_ref::<Column>()?;
    let is_time = matches!(scan.kinds().get(col.index()), Some(ColumnKind::Time));
    if !is_time || !first.options.descending {
        return None;
    }
    Some(Arc::new(NewestRowExec {
        scan: input.clone(),
    }))
}

/// Per partition, the newest point of the scan's devices, from the last-value cache.
#[derive(Debug)]
pub struct NewestRowExec {
    scan: Arc<dyn ExecutionPlan>,
}

impl NewestRowExec {
    fn scan(&self) -> Result<&StrataScanExec> {
        self.scan
            .downcast_ref::<StrataScanExec>()
            .ok_or_else(|| DataFusionError::Internal("NewestRowExec needs a stream scan".into()))
    }

    /// The newest point of each series among `devices` whose newest point is the newest of all
    /// (several on ties: the sort above breaks them by its other keys).
    fn newest(&self, devices: &[String]) -> Result<Vec<SeriesBatch>> {
        let scan = self.scan()?;
        let r = scan.request();
        let mut best: Vec<SeriesBatch> = Vec::new();
        for device in devices {
            let req = LatestRequest {
                database: r.database.clone(),
                stream: r.stream.clone(),
                device: Some(device.clone()),
                tags: r.tags.clone(),
            };
            let (fields, series) = scan
                .engine()
                .latest(&req)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            for s in series {
                let Some(t) = s.values.iter().flatten().map(|v| v.time).max() else {
                    continue;
                };
                match best.first().map(|b| b.times[0]) {
                    Some(newest) if newest > t => continue,
                    Some(newest) if newest < t => best.clear(),
                    _ => {}
                }
                let columns = fields
                    .iter()
                    .zip(&s.values)
                    .map(|((name, ty), v)| {
                        let mut c = StorageColumn::new(name.clone(), *ty);
                        match v.as_ref().filter(|v| v.time == t) {
                            Some(v) => {
                                c.data.push_value(&v.value);
                                c.valid.push(true);
                            }
                            None => c.push_null(),
                        }
                        c
                    })
                    .collect();
                best.push(SeriesBatch {
                    series_id: s.series_id,
                    key: strata_storage::SeriesKey::clone(&s.key),
                    times: vec![t],
                    columns,
                });
            }
        }
        Ok(best)
    }
}

impl DisplayAs for NewestRowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "NewestRowExec: newest point from the last-value cache")
    }
}

impl ExecutionPlan for NewestRowExec {
    fn name(&self) -> &'static str {
        "NewestRowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.scan.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        without_children(self, &children)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let scan = self.scan()?;
        let devices = scan
            .partitions()
            .get(partition)
            .cloned()
            .unwrap_or_default();
        let series = self.newest(&devices)?;
        let schema = scan.output_schema().clone();
        let batch = to_record_batch(&schema, scan.kinds(), &series)
            .map_err(|e| DataFusionError::ArrowError(Box::new(e), None));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter([batch]),
        )))
    }
}
