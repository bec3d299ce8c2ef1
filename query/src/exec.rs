//! The physical scan of a stream: an [`ExecutionPlan`] with one partition per chunk of devices.
//! All partitions read one engine snapshot per query run (`views.rs`; time range, devices, tags
//! and fields pushed down); each streams its devices' series window by window on tokio's blocking
//! pool, about `ROWS_PER_CALL` rows per step, and turns them into record batches.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use strata_storage::{Engine, ReadMode, ReadSnapshot, ScanRequest, SeriesBatch, SeriesCursor};

use crate::convert::to_record_batch;
use crate::layout::ColumnKind;
use crate::leaf::bounded_properties;
use crate::pushdown::Pushdown;

/// Rows after which a partition step stops reading more windows.
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
    /// Every stored point is a row (`ReadMode::Points`), only the requested fields decoded.
    every_point: bool,
    /// The pushed-down device set, if any (limits what the snapshot copies).
    devices: Option<Vec<String>>,
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
                devices: p.devices.as_ref().map(|d| d.iter().cloned().collect()),
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

    /// True when every stored point is a row (not only points with a requested field).
    pub(crate) fn every_point(&self) -> bool {
        self.spec.every_point
    }

    /// True when a row limit was pushed into the scan.
    pub(crate) fn has_limit(&self) -> bool {
        self.spec.limit.is_some()
    }

    /// This run's snapshot of the scanned series (shared by every partition of the scan and by
    /// an aggregation folded into it; see `views.rs`). Blocks: call it on the blocking pool.
    pub(crate) fn snapshot(&self, ctx: &TaskContext) -> Result<Option<Arc<ReadSnapshot>>> {
        snapshot_of(&self.spec, ctx)
    }

    /// True when a snapshot of this many devices is opened on the async worker.
    pub(crate) fn opens_inline(&self, devices: usize) -> bool {
        opens_inline(&self.spec, devices)
    }
}

fn snapshot_of(spec: &Arc<ScanSpec>, ctx: &TaskContext) -> Result<Option<Arc<ReadSnapshot>>> {
    let key = Arc::as_ptr(spec) as usize;
    crate::views::snapshot_for(ctx, key, || {
        // A rollup absorbs the writes it has not seen yet before it is read.
        let req = &spec.request;
        if let Some((raw, _)) = strata_storage::rollup::parse_rollup_stream_name(&req.stream) {
            spec.engine
                .refresh_rollups(&req.database, raw)
                .map_err(storage_error)?;
        }
        let mode = match spec.every_point {
            true => ReadMode::Points,
            false => ReadMode::Values,
        };
        spec.engine
            .snapshot(&spec.request, spec.devices.as_deref(), mode)
            .map_err(storage_error)
    })
}

/// A storage error as a DataFusion error that keeps the original (so its kind survives).
pub(crate) fn storage_error(e: strata_storage::StorageError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
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
    crate::leaf::leaf_plan!("StrataScanExec");

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let devices = match self.partitions.get(partition) {
            Some(d) => d.clone(),
            None if partition == 0 => Vec::new(),
            None => {
                return Err(DataFusionError::Internal(format!(
                    "StrataScanExec has no partition {partition}"
                )));
            }
        };
        let state = PartitionState {
            spec: self.spec.clone(),
            context,
            devices,
            reader: None,
            remaining: self.spec.limit,
        };
        let stream = futures::stream::unfold(state, next_batch);
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.spec.schema.clone(),
            stream,
        )))
    }
}

/// Where a partition is in its series: the snapshot, the series left, the open cursor.
struct Reader {
    snapshot: Arc<ReadSnapshot>,
    series: VecDeque<usize>,
    cursor: Option<SeriesCursor>,
    /// Small enough to read on the async worker (see [`INLINE_ROWS`]).
    small: bool,
}

impl Reader {
    fn finished(&self) -> bool {
        self.cursor.is_none() && self.series.is_empty()
    }
}

/// A read that decodes at most this many rows from memtables and local segments (no cold
/// object) runs on the async worker: about 0.1 ms of work, less than handing it to the
/// blocking pool and back costs. Larger reads step on the blocking pool.
pub(crate) const INLINE_ROWS: usize = 32_768;

/// Snapshots of at most this many devices (of a raw stream: opening a rollup's snapshot may
/// first absorb pending writes) are opened on the async worker.
const INLINE_DEVICES: usize = 16;

/// True when a snapshot of `devices` of the scan's stream is opened in place.
fn opens_inline(spec: &ScanSpec, devices: usize) -> bool {
    devices <= INLINE_DEVICES
        && strata_storage::rollup::parse_rollup_stream_name(&spec.request.stream).is_none()
}

/// Progress of one partition.
struct PartitionState {
    spec: Arc<ScanSpec>,
    context: Arc<TaskContext>,
    /// This partition's devices (until the reader is set up).
    devices: Vec<String>,
    reader: Option<Reader>,
    /// Rows still allowed by the limit.
    remaining: Option<usize>,
}

/// Produces the partition's next non-empty batch, or ends the stream. Each step reads at most
/// about `ROWS_PER_CALL` rows (one window per series) on the blocking pool, so a dropped stream
/// (timeout, cancellation) stops reading after the current step.
async fn next_batch(mut st: PartitionState) -> Option<(Result<RecordBatch>, PartitionState)> {
    if st.reader.is_none() && opens_inline(&st.spec, st.devices.len()) {
        let devices = std::mem::take(&mut st.devices);
        match open_reader(&st.spec, &st.context, &devices) {
            Ok(Some(r)) => st.reader = Some(r),
            Ok(None) => return None,
            Err(e) => return Some((Err(e), st)),
        }
    }
    loop {
        if st.remaining == Some(0) || st.reader.as_ref().is_some_and(Reader::finished) {
            return None;
        }
        let (spec, context, devices) = (
            st.spec.clone(),
            st.context.clone(),
            std::mem::take(&mut st.devices),
        );
        let reader = st.reader.take();
        let small = reader.as_ref().is_some_and(|r| r.small);
        let wanted = st.remaining.unwrap_or(usize::MAX).min(ROWS_PER_CALL);
        let work = move || {
            let reader = match reader {
                Some(r) => Some(r),
                None => open_reader(&spec, &context, &devices)?,
            };
            Ok::<_, DataFusionError>(match reader {
                None => None,
                Some(mut r) => {
                    let batches = read_some(&mut r, wanted)?;
                    Some((r, batches))
                }
            })
        };
        let joined = match small {
            true => Ok(work()),
            false => tokio::task::spawn_blocking(work).await,
        };
        let (reader, series) = match joined {
            Ok(Ok(Some(done))) => done,
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => return Some((Err(e), st)),
            Err(e) => return Some((Err(DataFusionError::External(Box::new(e))), st)),
        };
        let finished = reader.finished();
        st.reader = Some(reader);
        if series.is_empty() {
            if finished {
                return None;
            }
            continue;
        }
        let batch = to_record_batch(&st.spec.schema, &st.spec.kinds, &series)
            .map_err(|e| DataFusionError::ArrowError(Box::new(e), None));
        return Some((batch.map(|b| st.take_limit(b)), st));
    }
}

/// The snapshot and this partition's series in it (`None`: nothing to read).
fn open_reader(
    spec: &Arc<ScanSpec>,
    context: &TaskContext,
    devices: &[String],
) -> Result<Option<Reader>> {
    if devices.is_empty() {
        return Ok(None);
    }
    let Some(snapshot) = snapshot_of(spec, context)? else {
        return Ok(None);
    };
    let series: Vec<usize> = snapshot.series_of_devices(devices);
    let small = snapshot.reads_at_most(&series, INLINE_ROWS);
    Ok(Some(Reader {
        snapshot,
        series: series.into(),
        cursor: None,
        small,
    }))
}

/// Reads windows of the reader's series until `wanted` rows are gathered or the series run out.
fn read_some(r: &mut Reader, wanted: usize) -> Result<Vec<SeriesBatch>> {
    let mut out: Vec<SeriesBatch> = Vec::new();
    let mut rows = 0usize;
    while rows < wanted {
        let cursor = match &mut r.cursor {
            Some(c) => c,
            None => match r.series.pop_front() {
                Some(i) => r.cursor.insert(r.snapshot.cursor(i)),
                None => break,
            },
        };
        match cursor.next_batch().map_err(storage_error)? {
            Some(b) => {
                rows += b.times.len();
                out.push(b);
            }
            None => r.cursor = None,
        }
    }
    Ok(out)
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
