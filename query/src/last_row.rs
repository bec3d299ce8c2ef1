//! "The latest reading of every device" written as natural SQL, answered from the engine's
//! last-value cache instead of scanning history:
//!
//! ```sql
//! SELECT device, last_value(latitude ORDER BY time), max(time) FROM readings
//! [WHERE fleet = 'north' AND time > now() - INTERVAL '1 hour'] GROUP BY device
//! ```
//!
//! A physical optimizer rule replaces an aggregate grouped by `device`, alone or with tags (TSBS's
//! `GROUP BY device, driver`), whose aggregates are
//! all `last_value(field ORDER BY time)` (or `first_value(field ORDER BY time DESC)`, with or
//! without `IGNORE NULLS`, so `last(field, time)` too) or `max(time)`, directly over a stream scan,
//! by [`LastRowExec`]. Per group it computes, from the cached newest `(time, value)` of each field
//! of each series of the group (a series' device and tags are its rows' group values), exactly
//! what the aggregate computes over the scanned rows:
//!
//! - the group's newest row in range is at `T` = the latest cached time, among the fields that
//!   make a row in this scan (the requested fields; every field when each point is a row), that
//!   lies in the range;
//! - `max(time)` is `T`; `last_value(f)` is `f`'s cached value if it is at `T` (else null, as the
//!   newest row holds no `f`); with `IGNORE NULLS` it is `f`'s newest cached value in range.
//!
//! A series whose cached newest value of a row-making field lies after the range end cannot be
//! answered from the cache; that device is read from an engine snapshot instead (same answer,
//! slower). Equivalence tests compare this node with the general plan.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::scalar::ScalarValue;
use strata_storage::{LatestRequest, ReadMode, Value};

use crate::exec::{StrataScanExec, storage_error};
use crate::layout::{ColumnKind, TIME_ZONE};
use crate::leaf::bounded_properties;

/// The optimizer rule (runs before `AggregateInScan`).
#[derive(Debug, Default)]
pub struct LastRowFromCache;

impl PhysicalOptimizerRule for LastRowFromCache {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            Ok(match rewrite(&node) {
                Some(new) => Transformed::new(new, true, TreeNodeRecursion::Jump),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "last_row_from_cache"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One grouping column: the device or a tag (a series without the tag groups under null).
#[derive(Debug, Clone, PartialEq)]
enum GroupCol {
    Device,
    Tag(String),
}

impl GroupCol {
    /// This column's value for the rows of the series `key`.
    fn of(&self, key: &strata_storage::SeriesKey) -> Option<String> {
        match self {
            GroupCol::Device => Some(key.device.clone()),
            GroupCol::Tag(name) => key
                .tags
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone()),
        }
    }
}

/// A group's values, one per grouping column.
type GroupKey = Vec<Option<String>>;

/// One aggregate the node computes.
#[derive(Debug, Clone, PartialEq)]
enum LastAgg {
    /// `max(time)`.
    MaxTime,
    /// `last_value(field ORDER BY time)`; `ignore_nulls` for `IGNORE NULLS` / `last(field, time)`.
    Value { field: String, ignore_nulls: bool },
}

/// Skips nodes that only move batches between partitions.
fn through_exchanges(mut plan: &Arc<dyn ExecutionPlan>) -> &Arc<dyn ExecutionPlan> {
    while matches!(
        plan.name(),
        "RepartitionExec" | "CoalescePartitionsExec" | "CooperativeExec" | "CoalesceBatchesExec"
    ) {
        match plan.children().into_iter().next() {
            Some(child) => plan = child,
            None => break,
        }
    }
    plan
}

fn rewrite(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let agg = node.downcast_ref::<AggregateExec>()?;
    let below = match agg.mode() {
        AggregateMode::Final | AggregateMode::FinalPartitioned => {
            let partial = through_exchanges(agg.input()).downcast_ref::<AggregateExec>()?;
            if *partial.mode() != AggregateMode::Partial {
                return None;
            }
            partial
        }
        AggregateMode::Single | AggregateMode::SinglePartitioned => agg,
        _ => return None,
    };
    let scan_plan = through_exchanges(below.input());
    let scan = scan_plan.downcast_ref::<StrataScanExec>()?;
    if scan.has_limit() || !below.group_expr().is_single() {
        return None;
    }
    if below.filter_expr().iter().any(Option::is_some) {
        return None;
    }
    let kinds = scan.kinds();
    let groups = below
        .group_expr()
        .expr()
        .iter()
        .map(|(e, _)| match column_kind(e, kinds)? {
            ColumnKind::Device => Some(GroupCol::Device),
            ColumnKind::Tag(name) => Some(GroupCol::Tag(name.clone())),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    // Grouped by tags alone, a group spans devices whose newest rows often share a time; which
    // of the tied rows `last_value` picks is then the general plan's scan order, not ours.
    if !groups.contains(&GroupCol::Device) {
        return None;
    }
    let aggs = below
        .aggr_expr()
        .iter()
        .map(|a| last_agg(a, kinds))
        .collect::<Option<Vec<_>>>()?;
    let schema = agg.schema();
    let partitions = agg.properties().partitioning.partition_count().max(1);
    Some(Arc::new(LastRowExec {
        scan: scan_plan.clone(),
        groups,
        aggs,
        properties: bounded_properties(schema.clone(), partitions, EmissionType::Final),
        schema,
    }))
}

fn column_kind<'a>(e: &Arc<dyn PhysicalExpr>, kinds: &'a [ColumnKind]) -> Option<&'a ColumnKind> {
    kinds.get(e.downcast_ref::<Column>()?.index())
}

fn last_agg(a: &AggregateFunctionExpr, kinds: &[ColumnKind]) -> Option<LastAgg> {
    if a.is_distinct() {
        return None;
    }
    let [arg] = <[_; 1]>::try_from(a.expressions()).ok()?;
    let arg = column_kind(&arg, kinds)?;
    let name = a.fun().name();
    if name == "max" {
        return (matches!(arg, ColumnKind::Time) && a.order_bys().is_empty())
            .then_some(LastAgg::MaxTime);
    }
    let [order] = a.order_bys() else {
        return None;
    };
    if !matches!(column_kind(&order.expr, kinds)?, ColumnKind::Time) {
        return None;
    }
    // Both mean "the value at the greatest time".
    let newest = match name {
        "last_value" => !order.options.descending,
        "first_value" => order.options.descending,
        _ => false,
    };
    let ColumnKind::Field(field, _) = arg else {
        return None;
    };
    newest.then(|| LastAgg::Value {
        field: field.clone(),
        ignore_nulls: a.ignore_nulls(),
    })
}

/// Per group, the newest row's aggregates, from the last-value cache (see the module docs).
#[derive(Debug)]
pub struct LastRowExec {
    scan: Arc<dyn ExecutionPlan>,
    groups: Vec<GroupCol>,
    aggs: Vec<LastAgg>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

/// A cached `(time, value)`.
type Cached = (i64, Value);

/// The cache's answer: stream field names, per series its newest values, and the devices the
/// cache cannot answer.
struct Collected {
    names: Vec<String>,
    series: Vec<SeriesNewest>,
    fallback: Vec<String>,
}

/// What one series contributes: per stream field its newest cached value in range.
struct SeriesNewest {
    device: String,
    group: GroupKey,
    fields: Vec<Option<Cached>>,
}

impl LastRowExec {
    fn scan(&self) -> Result<&StrataScanExec> {
        self.scan
            .downcast_ref::<StrataScanExec>()
            .ok_or_else(|| DataFusionError::Internal("LastRowExec needs a stream scan".into()))
    }

    fn group_of(&self, key: &strata_storage::SeriesKey) -> GroupKey {
        self.groups.iter().map(|g| g.of(key)).collect()
    }

    /// Newest cached values per series of the scan's devices, and the devices whose cache cannot
    /// answer (a row-making field newer than the range), to be read from a snapshot.
    fn collect(&self) -> Result<Collected> {
        let scan = self.scan()?;
        let r = scan.request();
        let (first, last) = (r.start, r.end.saturating_sub(1));
        let engine = scan.engine();
        let (schema, latest) = engine
            .latest(&LatestRequest {
                database: r.database.clone(),
                stream: r.stream.clone(),
                device: None,
                tags: r.tags.clone(),
            })
            .map_err(storage_error)?;
        let names: Vec<String> = schema.iter().map(|(n, _)| n.clone()).collect();
        let row_making = row_making(scan, &names);
        let devices = scan.partitions().iter().flatten();
        let mut wanted = foldhash::HashSet::with_capacity_and_hasher(
            devices.clone().count(),
            foldhash::fast::RandomState::default(),
        );
        wanted.extend(devices.map(String::as_str));
        let mut out = Vec::new();
        let mut fallback: Vec<String> = Vec::new();
        for s in latest {
            if !wanted.contains(s.key.device.as_str()) {
                continue;
            }
            let beyond = s
                .values
                .iter()
                .zip(&row_making)
                .any(|(v, making)| *making && v.as_ref().is_some_and(|v| v.time > last));
            if beyond {
                fallback.push(s.key.device.clone());
                continue;
            }
            let fields = s
                .values
                .into_iter()
                .map(|v| v.filter(|v| v.time >= first).map(|v| (v.time, v.value)))
                .collect();
            out.push(SeriesNewest {
                group: self.group_of(&s.key),
                device: s.key.device.clone(),
                fields,
            });
        }
        fallback.sort();
        fallback.dedup();
        // A device is answered wholly from the cache or wholly from a snapshot.
        out.retain(|s| fallback.binary_search(&s.device).is_err());
        Ok(Collected {
            names,
            series: out,
            fallback,
        })
    }

    /// The answer from what [`LastRowExec::collect`] found, reading the fallback devices.
    fn finish(&self, mut c: Collected) -> Result<RecordBatch> {
        if !c.fallback.is_empty() {
            c.series.extend(self.read_newest(&c.names, &c.fallback)?);
        }
        self.batch(&c.names, c.series)
    }

    /// The newest value in range of each field of each series of `devices`, read from the data.
    fn read_newest(&self, names: &[String], devices: &[String]) -> Result<Vec<SeriesNewest>> {
        let scan = self.scan()?;
        let mut request = scan.request().clone();
        request.fields = None;
        let mode = match scan.every_point() {
            true => ReadMode::Points,
            false => ReadMode::Values,
        };
        let Some(snap) = scan
            .engine()
            .snapshot(&request, Some(devices), mode)
            .map_err(storage_error)?
        else {
            return Ok(Vec::new());
        };
        let snap = Arc::new(snap);
        let mut out = Vec::new();
        for i in 0..snap.series_count() {
            let mut fields: Vec<Option<Cached>> = vec![None; names.len()];
            let mut cursor = snap.cursor(i);
            while let Some(b) = cursor.next_batch().map_err(storage_error)? {
                for c in &b.columns {
                    let Some(k) = names.iter().position(|n| *n == c.name) else {
                        continue;
                    };
                    if let Some(row) = (0..b.times.len()).rev().find(|&r| c.valid[r])
                        && let Some(v) = c.get(row)
                    {
                        fields[k] = Some((b.times[row], v));
                    }
                }
            }
            let key = snap.series_key(i);
            out.push(SeriesNewest {
                group: self.group_of(key),
                device: key.device.clone(),
                fields,
            });
        }
        Ok(out)
    }

    fn batch(&self, names: &[String], series: Vec<SeriesNewest>) -> Result<RecordBatch> {
        let scan = self.scan()?;
        let row_making = row_making(scan, names);
        let mut by_group: BTreeMap<GroupKey, Vec<SeriesNewest>> = BTreeMap::new();
        for mut s in series {
            by_group
                .entry(std::mem::take(&mut s.group))
                .or_default()
                .push(s);
        }
        let width = self.groups.len();
        let mut keys: Vec<Vec<Option<String>>> = vec![Vec::new(); width];
        let mut cells: Vec<Vec<ScalarValue>> = vec![Vec::new(); self.aggs.len()];
        for (group, series) in by_group {
            let newest = |s: &SeriesNewest| -> Option<i64> {
                s.fields
                    .iter()
                    .zip(&row_making)
                    .filter(|(_, m)| **m)
                    .filter_map(|(v, _)| v.as_ref().map(|v| v.0))
                    .max()
            };
            let Some(t) = series.iter().filter_map(newest).max() else {
                continue;
            };
            for (column, value) in keys.iter_mut().zip(group) {
                column.push(value);
            }
            for (k, agg) in self.aggs.iter().enumerate() {
                let ty = self.schema.field(width + k).data_type();
                cells[k].push(cell(agg, t, &series, names, ty)?);
            }
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(width + self.aggs.len());
        for (i, values) in keys.into_iter().enumerate() {
            let strings: ArrayRef = Arc::new(StringArray::from(values));
            columns.push(arrow::compute::cast(
                &strings,
                self.schema.field(i).data_type(),
            )?);
        }
        for (k, values) in cells.into_iter().enumerate() {
            let ty = self.schema.field(width + k).data_type();
            columns.push(match values.is_empty() {
                true => arrow::array::new_empty_array(ty),
                false => ScalarValue::iter_to_array(values)?,
            });
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Per stream field, whether a value of it makes a row of this scan: every field when each
/// point is a row or no field is named, else the requested ones.
fn row_making(scan: &StrataScanExec, names: &[String]) -> Vec<bool> {
    let r = scan.request();
    names
        .iter()
        .map(|n| match (&r.fields, scan.every_point()) {
            (_, true) | (None, false) => true,
            (Some(list), false) => list.contains(n),
        })
        .collect()
}

/// The value of one aggregate for a group whose newest row is at `t`.
fn cell(
    agg: &LastAgg,
    t: i64,
    series: &[SeriesNewest],
    names: &[String],
    ty: &DataType,
) -> Result<ScalarValue> {
    let found = match agg {
        LastAgg::MaxTime => {
            return Ok(ScalarValue::TimestampNanosecond(
                Some(t),
                Some(TIME_ZONE.into()),
            ));
        }
        LastAgg::Value {
            field,
            ignore_nulls,
        } => {
            let k = names.iter().position(|n| n == field);
            let mut values = series
                .iter()
                .filter_map(|s| k.and_then(|k| s.fields[k].as_ref()));
            match ignore_nulls {
                true => values.max_by_key(|v| v.0),
                false => values.rfind(|v| v.0 == t),
            }
        }
    };
    let scalar = match found.map(|v| &v.1) {
        None => return ScalarValue::try_from(ty),
        Some(Value::Float(v)) => ScalarValue::Float64(Some(*v)),
        Some(Value::Integer(v)) => ScalarValue::Int64(Some(*v)),
        Some(Value::Unsigned(v)) => ScalarValue::UInt64(Some(*v)),
        Some(Value::Boolean(v)) => ScalarValue::Boolean(Some(*v)),
        Some(Value::String(v)) => ScalarValue::Utf8(Some(v.clone())),
    };
    scalar.cast_to(ty)
}

impl DisplayAs for LastRowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "LastRowExec: groups={:?}, aggregates={:?} (from the last-value cache)",
            self.groups, self.aggs
        )
    }
}

impl ExecutionPlan for LastRowExec {
    crate::leaf::leaf_plan!("LastRowExec");

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.schema.clone();
        if partition > 0 {
            // Everything comes out of partition 0; the others (kept so the plan above, built
            // for the replaced aggregate's partitions, stays valid) are empty.
            let empty = futures::stream::empty();
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, empty)));
        }
        let node = LastRowExec {
            scan: self.scan.clone(),
            groups: self.groups.clone(),
            aggs: self.aggs.clone(),
            schema: self.schema.clone(),
            properties: self.properties.clone(),
        };
        // From the cache in place; on the blocking pool when a device the cache cannot answer
        // is read from the data.
        let work = async move {
            let collected = node.collect()?;
            if collected.fallback.is_empty() {
                return node.finish(collected);
            }
            tokio::task::spawn_blocking(move || node.finish(collected))
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(work),
        )))
    }
}
