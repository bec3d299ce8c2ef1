//! Aggregation inside the scan: a physical optimizer rule that replaces the partial (or single)
//! hash aggregate directly above a stream scan by [`ScanAggregateExec`], which folds each series
//! into per-group states while reading it — no Arrow conversion of the raw rows, no hashing of
//! per-row strings. It applies when:
//!
//! - every `GROUP BY` term is `device`, a tag column, or `date_bin(<fixed interval>, time[, <origin>])`
//!   (so `time_bucket`), with no grouping sets;
//! - every aggregate is `avg`, `sum`, `min` or `max` of a float field, `sum` of an integer
//!   field, or `count` of a field, without `DISTINCT`, `FILTER` or `ORDER BY` (so the plans the
//!   rollup rewrite makes, `sum(x_sum)`, `sum(x_count)`, `sum(points)`, fold here too);
//! - nothing (filter, projection, limit) sits between the aggregate and the scan.
//!
//! The states produced are exactly the partial aggregate's (same columns, same types), read from
//! the same rows in the same order, so DataFusion's final aggregate merges them as usual. For a
//! single-partition scan (one device) the single-mode aggregate becomes a final aggregate over
//! the new node.

use std::fmt;
use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt64Array,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::scalar::ScalarValue;
use strata_storage::{
    BlockStats, ChunkStats, ColumnData, FieldType, ReadSnapshot, SeriesBatch, SeriesCursor,
    SeriesKey, SeriesPiece, TimeGroups,
};

use crate::exec::{StrataScanExec, storage_error};
use crate::group_slots::date_bin;
use crate::layout::ColumnKind;
use crate::leaf::bounded_properties;

/// The optimizer rule (runs after DataFusion's own physical rules).
#[derive(Debug, Default)]
pub struct AggregateInScan;

impl PhysicalOptimizerRule for AggregateInScan {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            Ok(match rewrite(&node)? {
                Some(new) => Transformed::yes(new),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "aggregate_in_scan"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One `GROUP BY` term.
#[derive(Debug, Clone, PartialEq)]
enum Group {
    Device,
    Tag(String),
    /// `date_bin(stride, time, origin)`, ns.
    Bucket {
        stride: i64,
        origin: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggKind {
    Avg,
    Sum,
    /// `sum` of an integer field (an Int64 state, wrapping like DataFusion's).
    IntSum,
    Count,
    Min,
    Max,
}

/// One aggregate: its kind and the field it reads.
#[derive(Debug, Clone)]
struct Agg {
    kind: AggKind,
    field: String,
}

fn rewrite(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(agg) = node.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    // The scan, or the scan under the cooperative wrapper DataFusion puts over leaves.
    let input = match agg.input().downcast_ref::<CooperativeExec>() {
        Some(c) => c.input().clone(),
        None => agg.input().clone(),
    };
    let Some(scan) = input.downcast_ref::<StrataScanExec>() else {
        return Ok(None);
    };
    let single = match agg.mode() {
        AggregateMode::Partial => false,
        AggregateMode::Single if scan.partitions().len() <= 1 => true,
        _ => return Ok(None),
    };
    if scan.has_limit()
        || !agg.group_expr().is_single()
        || agg.filter_expr().iter().any(Option::is_some)
    {
        return Ok(None);
    }
    let kinds = scan.kinds();
    let Some(groups) = agg
        .group_expr()
        .expr()
        .iter()
        .map(|(e, _)| group_of(e, kinds))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let Some(aggs) = agg
        .aggr_expr()
        .iter()
        .map(|a| agg_of(a, kinds))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let partial = AggregateExec::try_new(
        AggregateMode::Partial,
        agg.group_expr().clone(),
        agg.aggr_expr().to_vec(),
        agg.filter_expr().to_vec(),
        agg.input().clone(),
        agg.input_schema(),
    )?;
    let schema = partial.schema();
    if !states_match(&schema, groups.len(), &aggs) {
        return Ok(None);
    }
    let exec: Arc<dyn ExecutionPlan> =
        Arc::new(ScanAggregateExec::new(input, groups, aggs, schema));
    if !single {
        return Ok(Some(exec));
    }
    let final_agg = AggregateExec::try_new(
        AggregateMode::Final,
        agg.group_expr().as_final(),
        agg.aggr_expr().to_vec(),
        agg.filter_expr().to_vec(),
        exec,
        agg.input_schema(),
    )?;
    Ok(Some(Arc::new(final_agg)))
}

fn column_kind<'a>(e: &Arc<dyn PhysicalExpr>, kinds: &'a [ColumnKind]) -> Option<&'a ColumnKind> {
    kinds.get(e.downcast_ref::<Column>()?.index())
}

fn group_of(e: &Arc<dyn PhysicalExpr>, kinds: &[ColumnKind]) -> Option<Group> {
    if let Some(kind) = column_kind(e, kinds) {
        return match kind {
            ColumnKind::Device => Some(Group::Device),
            ColumnKind::Tag(key) => Some(Group::Tag(key.clone())),
            _ => None,
        };
    }
    let f = e.downcast_ref::<ScalarFunctionExpr>()?;
    if f.name() != "date_bin" {
        return None;
    }
    let (stride, time, origin) = match f.args() {
        [s, t] => (s, t, None),
        [s, t, o] => (s, t, Some(o)),
        _ => return None,
    };
    if !matches!(column_kind(time, kinds)?, ColumnKind::Time) {
        return None;
    }
    let stride = match stride.downcast_ref::<Literal>()?.value() {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => i64::from(i.days)
            .checked_mul(86_400_000_000_000)?
            .checked_add(i.nanoseconds)?,
        _ => return None,
    };
    let origin = match origin {
        None => 0,
        Some(o) => match o.downcast_ref::<Literal>()?.value() {
            ScalarValue::TimestampNanosecond(Some(t), _) => *t,
            _ => return None,
        },
    };
    (stride > 0).then_some(Group::Bucket { stride, origin })
}

fn agg_of(
    a: &datafusion::physical_expr::aggregate::AggregateFunctionExpr,
    kinds: &[ColumnKind],
) -> Option<Agg> {
    if a.is_distinct() || !a.order_bys().is_empty() {
        return None;
    }
    let kind = match a.fun().name() {
        "avg" => AggKind::Avg,
        "sum" => AggKind::Sum,
        "count" => AggKind::Count,
        "min" => AggKind::Min,
        "max" => AggKind::Max,
        _ => return None,
    };
    let [arg] = a.expressions().try_into().ok()?;
    let ColumnKind::Field(field, ty) = column_kind(&arg, kinds)? else {
        return None;
    };
    let kind = match (kind, ty) {
        (AggKind::Count, _) => AggKind::Count,
        (AggKind::Sum, FieldType::Integer) => AggKind::IntSum,
        (_, FieldType::Float) => kind,
        _ => return None,
    };
    Some(Agg {
        kind,
        field: field.clone(),
    })
}

/// The partial schema has the state columns this node produces.
fn states_match(schema: &SchemaRef, groups: usize, aggs: &[Agg]) -> bool {
    let expected: Vec<DataType> = aggs
        .iter()
        .flat_map(|a| match a.kind {
            AggKind::Avg => vec![DataType::UInt64, DataType::Float64],
            AggKind::Count | AggKind::IntSum => vec![DataType::Int64],
            _ => vec![DataType::Float64],
        })
        .collect();
    let actual: Vec<DataType> = schema
        .fields()
        .iter()
        .skip(groups)
        .map(|f| f.data_type().clone())
        .collect();
    actual == expected
        && schema.fields().iter().take(groups).all(|f| {
            matches!(
                f.data_type(),
                DataType::Utf8 | DataType::Timestamp(TimeUnit::Nanosecond, _)
            )
        })
}

/// Per-group running state of one aggregate.
#[derive(Debug, Clone, Copy)]
struct State {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// Sum of an integer field (`AggKind::IntSum`).
    int_sum: i64,
}

impl State {
    const EMPTY: State = State {
        count: 0,
        sum: 0.0,
        min: f64::NAN,
        max: f64::NAN,
        int_sum: 0,
    };

    fn add(&mut self, v: f64) {
        if self.count == 0 {
            (self.sum, self.min, self.max) = (v, v, v);
        } else {
            self.sum += v;
            if v.total_cmp(&self.min).is_lt() {
                self.min = v;
            }
            if v.total_cmp(&self.max).is_gt() {
                self.max = v;
            }
        }
        self.count += 1;
    }
}

/// Group key: the id of its string terms (see `Fold::terms`), then the bucket (if any).
type Key = (u32, Option<i64>);

/// Approximate bytes of one group (key strings counted separately), for the memory pool.
const GROUP_BYTES: usize = 96;

/// The fold's time groups are its buckets: a run of rows stops at the end of its row's bucket
/// (where `date_bin` of the next row would differ), as [`run_end`] cuts decoded rows.
impl TimeGroups for Fold {
    fn one_group(&self, min: i64, max: i64) -> bool {
        Fold::one_group(self, min, max)
    }

    fn group_end(&self, t: i64) -> Option<i64> {
        match self.bucket() {
            None => Some(i64::MAX),
            Some((stride, origin)) => {
                // As `run_end`: the run must also stop where `t - origin` would overflow, so
                // when the bucket's end lies beyond that the rows are folded as rows (which
                // report the overflow).
                let end = date_bin(stride, t, origin).ok()?.checked_add(stride)?;
                end.checked_sub(origin).map(|_| end)
            }
        }
    }

    fn extremes(&self) -> bool {
        self.aggs
            .iter()
            .any(|a| matches!(a.kind, AggKind::Min | AggKind::Max))
    }

    /// `group_end` depends on the bucket's stride and origin alone (one group without a bucket).
    fn grid(&self) -> Option<[i64; 2]> {
        let (stride, origin) = self.bucket().unwrap_or((0, 0));
        Some([stride, origin])
    }
}

/// Folds one partition's series into group states, in scan order.
struct Fold {
    groups: Arc<Vec<Group>>,
    aggs: Arc<Vec<Agg>>,
    /// The distinct string terms of group keys seen, by id (their index in `terms`), hashed
    /// with `hasher`: a series looks its terms up once (without copying them), then each of its
    /// buckets by id.
    term_ids: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    terms: Vec<Vec<Option<String>>>,
    /// Key → index into `keys` and `states`, and the bucket of a time.
    slots: crate::group_slots::GroupSlots,
    keys: Vec<Key>,
    states: Vec<Vec<State>>,
    /// Memory of the group table, reserved in the query's memory pool.
    reservation: MemoryReservation,
}

impl Fold {
    fn new(groups: Arc<Vec<Group>>, aggs: Arc<Vec<Agg>>, reservation: MemoryReservation) -> Fold {
        Fold {
            slots: crate::group_slots::GroupSlots::new(Fold::grid(&groups)),
            groups,
            aggs,
            term_ids: hashbrown::HashTable::new(),
            hasher: foldhash::fast::FixedState::default(),
            terms: Vec::new(),
            keys: Vec::new(),
            states: Vec::new(),
            reservation,
        }
    }

    /// The id of the string terms of a series' group key.
    fn terms_of(&mut self, series: &SeriesKey) -> Result<u32> {
        let terms: Vec<Option<&str>> = Fold::strings(&self.groups, series).collect();
        let hash = self.hasher.hash_one(&terms);
        let known = &self.terms;
        let same = |id: &u32| {
            let have = &known[*id as usize];
            have.len() == terms.len() && have.iter().zip(&terms).all(|(a, b)| a.as_deref() == *b)
        };
        if let Some(&id) = self.term_ids.find(hash, same) {
            return Ok(id);
        }
        let bytes: usize = terms.iter().flatten().map(|t| t.len()).sum();
        self.reservation.try_grow(GROUP_BYTES + 2 * bytes)?;
        let id = self.terms.len() as u32;
        let (terms_now, hasher) = (&self.terms, &self.hasher);
        // `Option<String>` hashes as `Option<&str>` does: a rehash finds the same buckets.
        self.term_ids
            .insert_unique(hash, id, |&i| hasher.hash_one(&terms_now[i as usize]));
        self.terms
            .push(terms.iter().map(|t| t.map(str::to_string)).collect());
        Ok(id)
    }

    /// The group of string terms `terms` (from [`Fold::terms_of`]) and `bucket` (from
    /// `GroupSlots::bucket_of`).
    fn slot(&mut self, terms: u32, bucket: Option<(i64, i64)>) -> Result<usize> {
        use crate::group_slots::Found;
        let index_bytes = match self.slots.find(terms, bucket) {
            Found::Slot(i) => return Ok(i),
            Found::New(bytes) => bytes,
        };
        let bytes = GROUP_BYTES + index_bytes + self.aggs.len() * std::mem::size_of::<State>();
        self.reservation.try_grow(bytes)?;
        let i = self.keys.len();
        self.slots.add(terms, bucket, i);
        self.keys.push((terms, bucket.map(|b| b.0)));
        self.states.push(vec![State::EMPTY; self.aggs.len()]);
        Ok(i)
    }

    /// The string terms of the group key of a series.
    fn strings<'k>(groups: &[Group], key: &'k SeriesKey) -> impl Iterator<Item = Option<&'k str>> {
        groups.iter().filter_map(move |g| match g {
            Group::Device => Some(Some(key.device.as_str())),
            Group::Tag(k) => Some(
                key.tags
                    .iter()
                    .find(|(t, _)| t == k)
                    .map(|(_, v)| v.as_str()),
            ),
            Group::Bucket { .. } => None,
        })
    }

    /// `(stride, origin)` of the bucket term, if any.
    fn bucket(&self) -> Option<(i64, i64)> {
        self.slots.grid()
    }

    /// `(stride, origin)` of the bucket term of `groups`, if any.
    fn grid(groups: &[Group]) -> Option<(i64, i64)> {
        groups.iter().find_map(|g| match g {
            Group::Bucket { stride, origin } => Some((*stride, *origin)),
            _ => None,
        })
    }

    /// True when a block spanning `[min, max]` falls in one group (one bucket).
    fn one_group(&self, min: i64, max: i64) -> bool {
        match self.bucket() {
            None => true,
            Some((stride, origin)) => {
                match (date_bin(stride, min, origin), date_bin(stride, max, origin)) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                }
            }
        }
    }

    /// Folds a piece of the series whose group terms are `terms` (from [`Fold::terms_of`]).
    fn add_piece(
        &mut self,
        terms: u32,
        piece: &SeriesPiece,
        fields: &[(String, FieldType)],
    ) -> Result<()> {
        match piece {
            SeriesPiece::Rows(s) => self.add_series(terms, s),
            SeriesPiece::Stats(b) => self.add_block(terms, b, &self.field_types(fields)),
            SeriesPiece::Runs { runs, .. } => {
                let columns = self.field_types(fields);
                for run in runs.iter() {
                    self.add_block(terms, run, &columns)?;
                }
                Ok(())
            }
        }
    }

    /// Per aggregate, the position of its field in `fields` and the field's type (`None` when
    /// the snapshot lacks it): found once per piece, not once per run.
    fn field_types(&self, fields: &[(String, FieldType)]) -> Vec<Option<(usize, FieldType)>> {
        (self.aggs.iter())
            .map(|a| {
                let f = fields.iter().position(|(n, _)| *n == a.field)?;
                Some((f, fields[f].1))
            })
            .collect()
    }

    /// Folds a block's (or a run's) statistics: its rows lie in one group (see `one_group`).
    /// `columns`: from [`Fold::field_types`].
    fn add_block(
        &mut self,
        terms: u32,
        b: &BlockStats,
        columns: &[Option<(usize, FieldType)>],
    ) -> Result<()> {
        let bucket = self.slots.bucket_of(b.min_time)?;
        let slot = self.slot(terms, bucket)?;
        let states = self.states[slot].iter_mut();
        for ((state, agg), column) in states.zip(self.aggs.iter()).zip(columns) {
            if let Some((f, ty)) = *column
                && let Some(stats) = &b.fields[f]
            {
                fold_stats(state, agg.kind, stats, ty);
            }
        }
        Ok(())
    }

    fn add_series(&mut self, terms: u32, s: &SeriesBatch) -> Result<()> {
        let bucket = self.bucket();
        let aggs = self.aggs.clone();
        let columns: Vec<Option<&strata_storage::Column>> = aggs
            .iter()
            .map(|a| s.columns.iter().find(|c| c.name == a.field))
            .collect();
        let times = &s.times;
        let mut start = 0;
        while start < times.len() {
            // One run: the consecutive rows that fall in the same bucket (all rows without one).
            let b = self.slots.bucket_of(times[start])?;
            let end = match (bucket, b) {
                (Some((stride, origin)), Some((b, _))) => {
                    run_end(times, start, origin, b.checked_add(stride))
                }
                _ => times.len(),
            };
            let slot = self.slot(terms, b)?;
            let states = self.states[slot].iter_mut().zip(aggs.iter());
            for ((state, agg), c) in states.zip(&columns) {
                if let Some(c) = c {
                    fold_rows(state, agg.kind, c, start..end);
                }
            }
            start = end;
        }
        Ok(())
    }

    fn finish(self, schema: &SchemaRef) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::new();
        let mut string_term = 0;
        for (gi, g) in self.groups.iter().enumerate() {
            match g {
                Group::Bucket { .. } => {
                    let tz = match schema.field(gi).data_type() {
                        DataType::Timestamp(_, tz) => tz.clone(),
                        _ => None,
                    };
                    let a: TimestampNanosecondArray = self.keys.iter().map(|k| k.1).collect();
                    columns.push(Arc::new(a.with_timezone_opt(tz)));
                }
                _ => {
                    let a: StringArray = self
                        .keys
                        .iter()
                        .map(|k| self.terms[k.0 as usize][string_term].as_deref())
                        .collect();
                    columns.push(Arc::new(a));
                    string_term += 1;
                }
            }
        }
        for (k, a) in self.aggs.iter().enumerate() {
            let states = self.states.iter().map(|s| s[k]);
            let some = |f: fn(&State) -> f64| -> ArrayRef {
                Arc::new(
                    states
                        .clone()
                        .map(|s| (s.count > 0).then(|| f(&s)))
                        .collect::<Float64Array>(),
                )
            };
            match a.kind {
                AggKind::Avg => {
                    columns.push(Arc::new(
                        states.clone().map(|s| s.count).collect::<UInt64Array>(),
                    ));
                    columns.push(some(|s| s.sum));
                }
                AggKind::Sum => columns.push(some(|s| s.sum)),
                AggKind::Min => columns.push(some(|s| s.min)),
                AggKind::Max => columns.push(some(|s| s.max)),
                AggKind::Count => columns.push(Arc::new(
                    states.map(|s| s.count as i64).collect::<Int64Array>(),
                )),
                AggKind::IntSum => columns.push(Arc::new(
                    states
                        .map(|s| (s.count > 0).then_some(s.int_sum))
                        .collect::<Int64Array>(),
                )),
            }
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// End of the run of rows from `start` that `date_bin(stride, t, origin)` maps to the bucket
/// `lo` of the row at `start`: `t < hi` (`hi` `None`: unbounded) and `t - origin` fits in i64.
/// Times strictly increase (the [`SeriesBatch`] contract), so both conditions hold on a prefix
/// and a binary search finds its end; the caller computes the next bucket (or its overflow
/// error) afresh at the row after it.
fn run_end(times: &[i64], start: usize, origin: i64, hi: Option<i64>) -> usize {
    let rest = &times[start..];
    let n = rest.partition_point(|&t| hi.is_none_or(|h| t < h) && t.checked_sub(origin).is_some());
    start + n.max(1)
}

/// Folds the valid values of `c` in `rows` into `state`, updating only what `kind` reads from the
/// state. Float sums add in four lanes (see [`sum_valid`]), so their last bits may differ from a
/// row-at-a-time fold's, as sums from block statistics already do.
fn fold_rows(
    state: &mut State,
    kind: AggKind,
    c: &strata_storage::Column,
    rows: std::ops::Range<usize>,
) {
    let valid = &c.valid[rows.clone()];
    if let (AggKind::IntSum, ColumnData::Integer(values)) = (kind, &c.data) {
        for (v, ok) in values[rows].iter().zip(valid) {
            if *ok {
                state.int_sum = state.int_sum.wrapping_add(*v);
                state.count += 1;
            }
        }
        return;
    }
    let ColumnData::Float(values) = &c.data else {
        state.count += valid.iter().filter(|v| **v).count() as u64;
        return;
    };
    if matches!(kind, AggKind::Avg | AggKind::Sum) {
        let (sum, count) = sum_valid(&values[rows], valid);
        if count > 0 {
            state.sum = if state.count == 0 {
                sum
            } else {
                state.sum + sum
            };
            state.count += count;
        }
        return;
    }
    let mut present = values[rows]
        .iter()
        .zip(valid)
        .filter(|(_, ok)| **ok)
        .map(|(v, _)| *v);
    if state.count == 0 {
        match present.next() {
            Some(v) => state.add(v),
            None => return,
        }
    }
    match kind {
        AggKind::Avg | AggKind::Sum => present.for_each(|v| {
            state.sum += v;
            state.count += 1;
        }),
        AggKind::Count | AggKind::IntSum => state.count += present.count() as u64,
        AggKind::Min | AggKind::Max => present.for_each(|v| state.add(v)),
    }
}

/// The sum and the count of the values whose `valid` entry is set. Four independent lanes let the
/// adds pipeline instead of waiting on each other (a sequential sum is bound by the add's
/// latency); an invalid slot adds `-0.0`, the identity of `+`, so no branch is needed.
fn sum_valid(values: &[f64], valid: &[bool]) -> (f64, u64) {
    let mut lanes = [-0.0f64; 4];
    let mut count = 0u64;
    let mut vs = values.chunks_exact(4);
    let mut ks = valid.chunks_exact(4);
    for (v, k) in (&mut vs).zip(&mut ks) {
        for lane in 0..4 {
            lanes[lane] += if k[lane] { v[lane] } else { -0.0 };
            count += u64::from(k[lane]);
        }
    }
    for (v, k) in vs.remainder().iter().zip(ks.remainder()) {
        lanes[0] += if *k { *v } else { -0.0 };
        count += u64::from(*k);
    }
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]), count)
}

/// Folds a block's statistics of one field into `state`, as folding its values would (a float
/// sum is the block's own, so rounding may differ from a row-at-a-time fold in the last bits; an
/// integer sum is exact: the engine yields statistics only where it is, see
/// `SeriesCursor::next_piece`).
fn fold_stats(state: &mut State, kind: AggKind, stats: &ChunkStats, ty: FieldType) {
    if stats.count == 0 {
        return;
    }
    if kind == AggKind::IntSum {
        state.int_sum = state.int_sum.wrapping_add(stats.sum as i64);
        state.count += u64::from(stats.count);
        return;
    }
    if kind == AggKind::Count || ty != FieldType::Float {
        state.count += u64::from(stats.count);
        return;
    }
    let (min, max) = (f64::from_bits(stats.min), f64::from_bits(stats.max));
    if state.count == 0 {
        (state.sum, state.min, state.max) = (stats.sum, min, max);
    } else {
        state.sum += stats.sum;
        if min.total_cmp(&state.min).is_lt() {
            state.min = min;
        }
        if max.total_cmp(&state.max).is_gt() {
            state.max = max;
        }
    }
    state.count += u64::from(stats.count);
}

/// Reads a stream scan's partitions and emits partial aggregate states per group.
#[derive(Debug)]
pub struct ScanAggregateExec {
    /// Per partition: blocks answered from their statistics, rows decoded (EXPLAIN ANALYZE).
    metrics: ExecutionPlanMetricsSet,
    input: Arc<dyn ExecutionPlan>,
    groups: Arc<Vec<Group>>,
    aggs: Arc<Vec<Agg>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl ScanAggregateExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        groups: Vec<Group>,
        aggs: Vec<Agg>,
        schema: SchemaRef,
    ) -> Self {
        let partitions = input.properties().partitioning.partition_count();
        let properties = bounded_properties(schema.clone(), partitions, EmissionType::Final);
        ScanAggregateExec {
            metrics: ExecutionPlanMetricsSet::new(),
            input,
            groups: Arc::new(groups),
            aggs: Arc::new(aggs),
            schema,
            properties,
        }
    }

    fn scan(&self) -> Result<&StrataScanExec> {
        self.input.downcast_ref::<StrataScanExec>().ok_or_else(|| {
            DataFusionError::Internal("ScanAggregateExec needs a stream scan".into())
        })
    }
}

impl DisplayAs for ScanAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ScanAggregateExec: groups={:?}, aggregates={:?}",
            self.groups, self.aggs
        )
    }
}

impl ExecutionPlan for ScanAggregateExec {
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn name(&self) -> &'static str {
        "ScanAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
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
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("ScanAggregateExec has one child".into()))?;
        if input.downcast_ref::<StrataScanExec>().is_none() {
            return Err(DataFusionError::Internal(
                "ScanAggregateExec needs a stream scan".into(),
            ));
        }
        Ok(Arc::new(ScanAggregateExec {
            metrics: ExecutionPlanMetricsSet::new(),
            input,
            groups: self.groups.clone(),
            aggs: self.aggs.clone(),
            schema: self.schema.clone(),
            properties: self.properties.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let devices = match self.scan()?.partitions().get(partition) {
            Some(d) => d.clone(),
            None if partition == 0 => Vec::new(),
            None => {
                return Err(DataFusionError::Internal(format!(
                    "ScanAggregateExec has no partition {partition}"
                )));
            }
        };
        let reservation = MemoryConsumer::new(format!("ScanAggregateExec[{partition}]"))
            .register(context.memory_pool());
        let run = FoldRun {
            stats_blocks: MetricBuilder::new(&self.metrics).counter("stats_blocks", partition),
            rows_decoded: MetricBuilder::new(&self.metrics).counter("rows_decoded", partition),
            blocks_reduced: MetricBuilder::new(&self.metrics).counter("blocks_reduced", partition),
            blocks_cached: MetricBuilder::new(&self.metrics).counter("blocks_cached", partition),
            input: self.input.clone(),
            context,
            devices,
            series: None,
            small: false,
            cursor: None,
            fold: Fold::new(self.groups.clone(), self.aggs.clone(), reservation),
        };
        let schema = self.schema.clone();
        let work = async move { run.run().await?.finish(&schema) };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(work),
        )))
    }
}

/// Rows (or whole blocks) folded per step: how often a fold checks that its query still runs.
const ROWS_PER_STEP: usize = 65_536;

/// One partition's aggregation: its snapshot's series still to fold, and the fold so far.
struct FoldRun {
    stats_blocks: Count,
    rows_decoded: Count,
    /// Blocks decoded and reduced to per-bucket statistics without building rows.
    blocks_reduced: Count,
    /// Of `blocks_reduced`, those whose runs came from the engine's runs cache (not decoded).
    blocks_cached: Count,
    input: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
    devices: Vec<String>,
    /// The snapshot and the series left (set on the first step).
    series: Option<(Arc<ReadSnapshot>, std::collections::VecDeque<usize>)>,
    /// The series decode at most [`crate::exec::INLINE_ROWS`] rows: fold in place.
    small: bool,
    /// The series being folded: its group terms (`Fold::terms_of`) and its cursor.
    cursor: Option<(u32, SeriesCursor)>,
    fold: Fold,
}

impl FoldRun {
    /// Folds every series of the partition: a small one in place, a large one in a single task
    /// on the blocking pool that works a bounded step at a time and checks between steps whether
    /// the query still wants the answer. A timeout or cancellation drops this future; its guard
    /// raises the flag and the task stops at the end of its step. (One task rather than one per
    /// step: each hop between the runtime and the blocking pool costs two thread wake-ups, which
    /// on a fleet-wide aggregate cost a quarter of its time.)
    async fn run(mut self) -> Result<Fold> {
        if self.scan()?.opens_inline(self.devices.len()) && self.open()? {
            return Ok(self.fold);
        }
        if self.small {
            while !self.step()? {}
            return Ok(self.fold);
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancelled.clone());
        tokio::task::spawn_blocking(move || {
            while !self.step()? {
                if cancelled.load(Ordering::Relaxed) {
                    return Err(DataFusionError::Execution(
                        "the query was cancelled while aggregating".into(),
                    ));
                }
            }
            Ok(self.fold)
        })
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
    }

    /// Folds about `ROWS_PER_STEP` rows (one window at a time); true when every series is folded.
    fn scan(&self) -> Result<&StrataScanExec> {
        self.input
            .downcast_ref::<StrataScanExec>()
            .ok_or_else(|| DataFusionError::Internal("not a stream scan".into()))
    }

    /// Takes the snapshot and the partition's series in it; true when there is nothing to fold.
    fn open(&mut self) -> Result<bool> {
        let scan = self.scan()?;
        let Some(snap) = (!self.devices.is_empty())
            .then(|| scan.snapshot(&self.context))
            .transpose()?
            .flatten()
        else {
            return Ok(true);
        };
        let series = snap.series_of_devices(&self.devices);
        self.small = snap.reads_at_most(&series, crate::exec::INLINE_ROWS);
        self.series = Some((snap, series.into()));
        Ok(false)
    }

    fn step(&mut self) -> Result<bool> {
        if self.series.is_none() && self.open()? {
            return Ok(true);
        }
        let Some((snap, series)) = &mut self.series else {
            return Ok(true);
        };
        let fold = &mut self.fold;
        let mut rows = 0;
        let mut pieces = Vec::new();
        while rows < ROWS_PER_STEP {
            let (terms, cursor) = match &mut self.cursor {
                Some(c) => c,
                None => match series.pop_front() {
                    Some(i) => {
                        let terms = fold.terms_of(snap.series_key(i))?;
                        self.cursor.insert((terms, snap.cursor(i)))
                    }
                    None => return Ok(true),
                },
            };
            if !cursor
                .next_piece(&*fold, &mut pieces)
                .map_err(storage_error)?
            {
                self.cursor = None;
                continue;
            }
            for piece in pieces.drain(..) {
                rows += match &piece {
                    SeriesPiece::Rows(b) => {
                        self.rows_decoded.add(b.times.len());
                        b.times.len()
                    }
                    SeriesPiece::Stats(_) => {
                        self.stats_blocks.add(1);
                        STATS_PIECE_COST
                    }
                    SeriesPiece::Runs {
                        runs, cached: true, ..
                    } => {
                        self.blocks_reduced.add(1);
                        self.blocks_cached.add(1);
                        runs.len() * STATS_PIECE_COST
                    }
                    SeriesPiece::Runs { rows, .. } => {
                        self.rows_decoded.add(*rows);
                        self.blocks_reduced.add(1);
                        *rows
                    }
                };
                fold.add_piece(*terms, &piece, snap.fields())?;
            }
        }
        Ok(false)
    }
}

/// Raises its flag when dropped: the future that waits on a blocking fold is dropped when the
/// query times out or is cancelled, and the fold stops at its next step.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Step budget charged for a block answered from its statistics.
const STATS_PIECE_COST: usize = 64;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, UnboundedMemoryPool};

    use super::{AggKind, Fold, Group, State, fold_rows, run_end};
    use strata_storage::{Column, ColumnData, FieldType, SeriesKey};

    /// Group terms get one id per distinct (device, tag) pair however many there are: the terms
    /// table grows and rehashes many times on the way, and a rehash must find what a lookup
    /// hashed (borrowed terms on lookup, owned ones on rehash).
    #[test]
    fn group_terms_keep_their_ids_through_rehashes() {
        let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        let groups = vec![Group::Device, Group::Tag("fleet".into())];
        let reservation = MemoryConsumer::new("t").register(&pool);
        let mut fold = Fold::new(Arc::new(groups), Arc::new(Vec::new()), reservation);
        let key = |d: usize| SeriesKey {
            device: format!("truck_{d}"),
            tags: vec![
                ("fleet".into(), format!("f{}", d % 5)),
                ("model".into(), "m".into()),
            ],
        };
        let ids: Vec<u32> = (0..5000).map(|d| fold.terms_of(&key(d)).unwrap()).collect();
        assert_eq!(
            ids,
            (0..5000).collect::<Vec<u32>>(),
            "one new id per device"
        );
        for d in (0..5000).rev() {
            assert_eq!(fold.terms_of(&key(d)).unwrap(), d as u32, "truck_{d} again");
        }
        let other_model = SeriesKey {
            tags: vec![("fleet".into(), "f1".into()), ("model".into(), "x".into())],
            ..key(1)
        };
        assert_eq!(
            fold.terms_of(&other_model).unwrap(),
            1,
            "an ungrouped tag is not a term"
        );
        let no_fleet = SeriesKey {
            tags: Vec::new(),
            ..key(1)
        };
        assert_eq!(
            fold.terms_of(&no_fleet).unwrap(),
            5000,
            "a missing tag is its own term"
        );
    }

    #[test]
    fn runs_end_at_the_bucket_end_or_where_the_origin_would_overflow() {
        let times = [0, 3, 9, 10, 19, 25];
        assert_eq!(run_end(&times, 0, 0, Some(10)), 3);
        assert_eq!(run_end(&times, 3, 0, Some(20)), 5);
        assert_eq!(run_end(&times, 5, 0, Some(30)), 6);
        assert_eq!(run_end(&times, 0, 0, None), 6);
        let near_max = [i64::MAX - 5, i64::MAX - 1];
        assert_eq!(run_end(&near_max, 0, -3, None), 1);
    }

    /// Folding runs of a column gives the states of a row-at-a-time fold.
    #[test]
    fn folding_runs_equals_folding_rows() {
        let mut c = Column::new("v", FieldType::Float);
        let values = [f64::NAN, 2.5, -1.0, 7.0, 0.5, -3.0, 4.0];
        let valid = [false, true, true, false, true, true, true];
        c.data = ColumnData::Float(values.to_vec());
        c.valid = valid.to_vec();
        let mut by_row = State::EMPTY;
        for (v, ok) in values.iter().zip(valid) {
            if ok {
                by_row.add(*v);
            }
        }
        for kind in [AggKind::Avg, AggKind::Min, AggKind::Max, AggKind::Count] {
            let mut by_run = State::EMPTY;
            for r in [0..1, 1..3, 3..4, 4..7] {
                fold_rows(&mut by_run, kind, &c, r);
            }
            assert_eq!(by_run.count, by_row.count, "{kind:?}");
            match kind {
                AggKind::Avg | AggKind::Sum => assert_eq!(by_run.sum, by_row.sum),
                AggKind::Min => assert_eq!(by_run.min, by_row.min),
                AggKind::Max => assert_eq!(by_run.max, by_row.max),
                AggKind::Count | AggKind::IntSum => {}
            }
        }
        let mut counts = State::EMPTY;
        let mut ints = Column::new("n", FieldType::Integer);
        ints.data = ColumnData::Integer(vec![1, 2, 3]);
        ints.valid = vec![true, false, true];
        fold_rows(&mut counts, AggKind::Count, &ints, 0..3);
        assert_eq!(counts.count, 2);
        let mut sums = State::EMPTY;
        fold_rows(&mut sums, AggKind::IntSum, &ints, 0..1);
        fold_rows(&mut sums, AggKind::IntSum, &ints, 1..3);
        assert_eq!((sums.count, sums.int_sum), (2, 4), "nulls are skipped");
    }

    /// The four-lane sum adds exactly what a sequential sum adds (integers stay exact), skips
    /// invalid slots whatever they hold, and keeps `-0.0` when every value is `-0.0`.
    #[test]
    fn lane_sums_equal_sequential_sums() {
        for n in [0usize, 1, 3, 4, 5, 17, 1000] {
            let values: Vec<f64> = (0..n).map(|i| (i as f64 * 7.0) % 13.0 - 6.0).collect();
            let valid: Vec<bool> = (0..n).map(|i| i % 3 != 1).collect();
            let mut junk = values.clone();
            for (v, ok) in junk.iter_mut().zip(&valid) {
                if !ok {
                    *v = 1e300;
                }
            }
            let want: f64 = values
                .iter()
                .zip(&valid)
                .filter(|(_, k)| **k)
                .map(|(v, _)| v)
                .sum();
            let count = valid.iter().filter(|k| **k).count() as u64;
            assert_eq!(super::sum_valid(&junk, &valid), (want, count), "n = {n}");
        }
        let (zero, _) = super::sum_valid(&[-0.0; 6], &[true; 6]);
        assert!(zero == 0.0 && zero.is_sign_negative());
    }
}
