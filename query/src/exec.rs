//! The physical scan of a stream: an [`ExecutionPlan`] with one partition per chunk of devices.
//! Each partition asks the engine for its devices' series (time range, tags and fields pushed
//! down) on tokio's blocking pool, a few devices per call, and turns them into record batches.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use strata_storage::{Engine, ScanRequest, SeriesBatch};

use crate::convert::to_record_batch;
use crate::layout::ColumnKind;
use crate::leaf::{bounded_properties, without_children};
use crate::pushdown::Pushdown;

/// Rows after which a partition stops adding devices to the current engine call.
const ROWS_PER_CALL: usize = 8192;

/// What every partition of one scan shares.
#[derive(Debug)]
struct ScanSpec {
    engine: Arc<Engine>,
    /// Engine request without a device (filled in per device).
    request: ScanRequest,
    /// Output schema (the projected table columns).
    schema: SchemaRef,
    /// What each output column holds.
    kinds: Vec<ColumnKind>,
    /// Stop after this many rows per partition.
    limit: Option<usize>,
    /// Every stored point is a row (`Engine::scan_rows`), only the requested fields decoded.
    every_point: bool,
}

/// Scan of one stream with pushed-down time range, devices, tags, projection and limit.
#[derive(Debug)]
pub struct StrataScanExec {
    spec: Arc<ScanSpec>,
    /// Devices read by each partition.
    partitions: Vec<Vec<String>>,
    /// For EXPLAIN: the device filter, if one was pushed.
    device_filter: Option<usize>,
    properties: Arc<PlanProperties>,
}

/// Everything needed to build a [`StrataScanExec`].
pub(crate) struct ScanInput {
    pub engine: Arc<Engine>,
    pub database: String,
    pub stream: String,
    pub schema: SchemaRef,
    pub kinds: Vec<ColumnKind>,
    pub pushdown: Pushdown,
    pub limit: Option<usize>,
    pub read_all_fields: bool,
    pub target_partitions: usize,
}

impl StrataScanExec {
    pub(crate) fn new(input: ScanInput) -> StrataScanExec {
        let p = &input.pushdown;
        let devices: Vec<String> = match (&p.devices, p.empty) {
            (_, true) => Vec::new(),
            (Some(set), false) => set.iter().cloned().collect(),
            (None, false) => input.engine.devices(&input.database, &input.stream),
        };
        let partitions = split(devices, input.target_partitions);
        let fields: Vec<String> = input
            .kinds
            .iter()
            .filter_map(|k| match k {
                ColumnKind::Field(name, _) => Some(name.clone()),
                _ => None,
            })
            .collect();
        let request = ScanRequest {
            database: input.database,
            stream: input.stream,
            device: None,
            tags: p.tags.clone(),
            start: p.start,
            end: p.end,
            // `read_all_fields`: every point is a row, through `scan_rows`, which decodes only
            // these fields. Otherwise no field requested means all (so every point is a row).
            fields: (input.read_all_fields || !fields.is_empty()).then_some(fields),
        };
        let properties = bounded_properties(
            input.schema.clone(),
            partitions.len().max(1),
            EmissionType::Incremental,
        );
        StrataScanExec {
            device_filter: p.devices.as_ref().map(|d| d.len()),
            spec: Arc::new(ScanSpec {
                engine: input.engine,
                request,
                schema: input.schema,
                kinds: input.kinds,
                limit: input.limit,
                every_point: input.read_all_fields,
            }),
            partitions,
            properties,
        }
    }

    /// Number of devices read, over all partitions.
    pub fn device_count(&self) -> usize {
        self.partitions.iter().map(Vec::len).sum()
    }

    /// Devices read by each partition.
    pub(crate) fn partitions(&self) -> &[Vec<String>] {
        &self.partitions
    }

    /// What each output column holds.
    pub(crate) fn kinds(&self) -> &[ColumnKind] {
        &self.spec.kinds
    }

    /// The engine request (device unset) every partition issues.
    pub(crate) fn request(&self) -> &ScanRequest {
        &self.spec.request
    }

    /// The engine the scan reads.
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.spec.engine
    }

    /// The output schema.
    pub(crate) fn output_schema(&self) -> &SchemaRef {
        &self.spec.schema
    }

    /// True when a row limit was pushed into the scan.
    pub(crate) fn has_limit(&self) -> bool {
        self.spec.limit.is_some()
    }

    /// Reads the series of one device exactly as this scan does (same fields, range, tags, mode).
    pub(crate) fn read_device(&self, device: &str) -> Result<Vec<SeriesBatch>> {
        let mut request = self.spec.request.clone();
        request.device = Some(device.to_string());
        match self.spec.every_point {
            true => self.spec.engine.scan_rows(&request),
            false => self.spec.engine.scan(&request),
        }
        .map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

/// Splits `items` into at most `n` contiguous chunks of near-equal size (none empty).
fn split(items: Vec<String>, n: usize) -> Vec<Vec<String>> {
    if items.is_empty() {
        return Vec::new();
    }
    let n = n.clamp(1, items.len());
    let per = items.len().div_ceil(n);
    let mut out = Vec::with_capacity(n);
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        out.push(it.by_ref().take(per).collect());
    }
    out
}

impl DisplayAs for StrataScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let r = &self.spec.request;
        if matches!(t, DisplayFormatType::TreeRender) {
            return write!(f, "stream={}.{}", r.database, r.stream);
        }
        write!(
            f,
            "StrataScanExec: stream={}.{}, partitions={}, devices={}",
            r.database,
            r.stream,
            self.partitions.len(),
            self.device_count()
        )?;
        if let Some(n) = self.device_filter {
            write!(f, " (device filter: {n})")?;
        }
        if r.start != i64::MIN || r.end != i64::MAX {
            write!(f, ", time=[{}, {})", r.start, r.end)?;
        }
        if !r.tags.is_empty() {
            write!(f, ", tags={:?}", r.tags)?;
        }
        let read: Vec<&str> = self
            .spec
            .kinds
            .iter()
            .filter_map(|k| match k {
                ColumnKind::Field(name, _) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        write!(f, ", fields={read:?}")?;
        if self.spec.every_point {
            write!(f, " (every point)")?;
        } else if r.fields.is_none() {
            write!(f, " (decoding all)")?;
        }
        if let Some(limit) = self.spec.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StrataScanExec {
    fn name(&self) -> &'static str {
        "StrataScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
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
        let devices: VecDeque<String> = match self.partitions.get(partition) {
            Some(d) => d.iter().cloned().collect(),
            None if partition == 0 => VecDeque::new(),
            None => {
                return Err(DataFusionError::Internal(format!(
                    "StrataScanExec has no partition {partition}"
                )));
            }
        };
        let state = PartitionState {
            spec: self.spec.clone(),
            devices,
            remaining: self.spec.limit,
        };
        let stream = futures::stream::unfold(state, next_batch);
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.spec.schema.clone(),
            stream,
        )))
    }
}

/// Progress of one partition.
struct PartitionState {
    spec: Arc<ScanSpec>,
    devices: VecDeque<String>,
    /// Rows still allowed by the limit.
    remaining: Option<usize>,
}

/// Produces the partition's next non-empty batch, or ends the stream.
async fn next_batch(mut st: PartitionState) -> Option<(Result<RecordBatch>, PartitionState)> {
    while !st.devices.is_empty() && st.remaining != Some(0) {
        let spec = st.spec.clone();
        let devices = std::mem::take(&mut st.devices);
        let joined = tokio::task::spawn_blocking(move || scan_some(&spec, devices)).await;
        let (rest, series) = match joined {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Some((Err(e), st)),
            Err(e) => return Some((Err(DataFusionError::External(Box::new(e))), st)),
        };
        st.devices = rest;
        if series.is_empty() {
            continue;
        }
        let batch = to_record_batch(&st.spec.schema, &st.spec.kinds, &series)
            .map_err(|e| DataFusionError::ArrowError(Box::new(e), None));
        return Some((batch.map(|b| st.take_limit(b)), st));
    }
    None
}

impl PartitionState {
    fn take_limit(&mut self, batch: RecordBatch) -> RecordBatch {
        match self.remaining {
            None => batch,
            Some(left) => {
                let n = batch.num_rows().min(left);
                self.remaining = Some(left - n);
                batch.slice(0, n)
            }
        }
    }
}

/// Scans devices from the front of `devices` until enough rows are gathered; returns the rest.
fn scan_some(
    spec: &ScanSpec,
    mut devices: VecDeque<String>,
) -> Result<(VecDeque<String>, Vec<SeriesBatch>)> {
    let mut out: Vec<SeriesBatch> = Vec::new();
    let mut rows = 0usize;
    let wanted = spec.limit.unwrap_or(usize::MAX).min(ROWS_PER_CALL);
    while let Some(device) = devices.pop_front() {
        let mut request = spec.request.clone();
        request.device = Some(device);
        let found = match spec.every_point {
            true => spec.engine.scan_rows(&request),
            false => spec.engine.scan(&request),
        }
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        rows += found.iter().map(|s| s.times.len()).sum::<usize>();
        out.extend(found);
        if rows >= wanted {
            break;
        }
    }
    Ok((devices, out))
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_makes_at_most_n_nonempty_chunks() {
        let items = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
        assert!(split(items(0), 4).is_empty());
        assert_eq!(split(items(3), 8).len(), 3);
        let chunks = split(items(10), 3);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert_eq!(chunks.concat(), items(10));
        assert_eq!(split(items(5), 0).len(), 1);
    }
}
