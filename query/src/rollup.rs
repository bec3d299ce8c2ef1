//! `RollupRewrite`: a logical optimizer rule answering an ordinary `date_bin` / `time_bucket`
//! aggregate over a stream from the coarsest maintained rollup that gives the same answer.
//!
//! It applies to `Aggregate → [Filter…] → TableScan(stream)` when:
//!
//! - every `GROUP BY` term is `device`, a tag, or `date_bin(<fixed interval>, time[, <origin>])`;
//! - every aggregate is `avg`, `sum`, `min`, `max` of a float or integer field, `count` of a
//!   field, or `count(*)` alone, without `DISTINCT`, `FILTER` or `ORDER BY`;
//! - every predicate reads only `time`, `device` and tags, and each time bound is a literal;
//! - a rollup of the stream has finished its back-fill and its interval divides the bucket, the
//!   origin and every time bound (`time >= a` with `a` aligned, `time <= b` with `b + 1`
//!   aligned, …): then a window lies wholly inside or wholly outside the range and bucket.
//!
//! The rewrite reads `_rollup_{every}_{stream}` instead: `min(x_min)`, `max(x_max)`,
//! `sum(x_sum)`, `coalesce(sum(x_count), 0)`, `sum(points)` for `count(*)`, and avg as
//! `sum(x_sum) / sum(x_count)`; it keeps only windows holding one of the aggregated fields, as the
//! raw scan keeps only rows holding one. Windows still dirty are absorbed when the rollup scan
//! starts (`Engine::refresh_rollups`, see `exec.rs`), so every acknowledged write is counted.
//! Float sums are added in another order than the raw plan's, so they agree to rounding.
//! EXPLAIN shows the rollup table as the scanned table; EXPLAIN VERBOSE names this rule.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DataFusionError, Result, ScalarValue, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    BinaryExpr, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator, TableScan, cast,
    lit,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use strata_storage::lifecycle::RollupSpec;
use strata_storage::rollup::{POINTS, rollup_stream_name, stat_column};
use strata_storage::{Engine, FieldType};

use crate::layout::{ColumnKind, TableLayout};
use crate::table::{ScanOptions, StreamTable};

/// The rule (runs after DataFusion's own logical rules).
#[derive(Debug)]
pub struct RollupRewrite {
    engine: Arc<Engine>,
    options: ScanOptions,
}

impl RollupRewrite {
    /// The rule for `engine`'s streams; tables it builds scan with `options`.
    pub fn new(engine: Arc<Engine>, options: ScanOptions) -> RollupRewrite {
        RollupRewrite { engine, options }
    }
}

impl OptimizerRule for RollupRewrite {
    fn name(&self) -> &str {
        "rollup_rewrite"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up(|node| match self.try_rewrite(&node)? {
            Some(new) => Ok(Transformed::yes(new)),
            None => Ok(Transformed::no(node)),
        })
    }
}

/// One aggregate of the original plan, as the rollup computes it.
enum Agg {
    Avg(String),
    Sum(String),
    Min(String),
    Max(String),
    Count(String),
    CountRows,
}

/// A `GROUP BY` term.
enum Group {
    Column(String),
    Bucket {
        expr: Expr,
        stride: i64,
        origin: i64,
    },
}

impl RollupRewrite {
    fn try_rewrite(&self, node: &LogicalPlan) -> Result<Option<LogicalPlan>> {
        let LogicalPlan::Aggregate(agg) = node else {
            return Ok(None);
        };
        let mut predicates: Vec<Expr> = Vec::new();
        let mut input = agg.input.as_ref();
        while let LogicalPlan::Filter(f) = input {
            predicates.extend(split_conjunction(&f.predicate).into_iter().cloned());
            input = f.input.as_ref();
        }
        let LogicalPlan::TableScan(scan) = input else {
            return Ok(None);
        };
        if scan.fetch.is_some() {
            return Ok(None);
        }
        predicates.extend(scan.filters.iter().cloned());
        let Some(layout) = stream_layout(scan) else {
            return Ok(None);
        };
        let Some(groups) = agg
            .group_expr
            .iter()
            .map(|e| group_of(e, &layout))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let Some(aggs) = agg
            .aggr_expr
            .iter()
            .map(|e| agg_of(e, &layout))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let fields: Vec<&String> = aggs.iter().filter_map(Agg::field).collect();
        // Without `read_all_fields` the raw rows are the points holding one of the aggregated
        // fields: `count(*)` then counts those, which window counts cannot reproduce.
        let every_point = self.options.read_all_fields;
        if !every_point && aggs.iter().any(|a| matches!(a, Agg::CountRows)) && !fields.is_empty() {
            return Ok(None);
        }
        let Some(bounds) = predicates
            .iter()
            .map(|p| predicate_bounds(p, &layout))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let bounds: Vec<i64> = bounds.into_iter().flatten().collect();
        let Some(every) = self.choose(&layout, &groups, &bounds) else {
            return Ok(None);
        };
        self.build(agg, scan, &layout, every, groups, aggs, predicates)
            .map(Some)
    }

    /// The coarsest back-filled rollup whose interval divides every bucket, origin and bound,
    /// and that keeps every window the raw data still holds ([`outlives_raw`]).
    fn choose(&self, layout: &TableLayout, groups: &[Group], bounds: &[i64]) -> Option<i64> {
        let aligned = |every: i64| {
            bounds.iter().all(|b| b.rem_euclid(every) == 0)
                && groups.iter().all(|g| match g {
                    Group::Bucket { stride, origin, .. } => {
                        stride % every == 0 && origin.rem_euclid(every) == 0
                    }
                    Group::Column(_) => true,
                })
        };
        let (policy, _) = self
            .engine
            .lifecycle(&layout.database, &layout.stream)
            .ok()?;
        self.engine
            .rollups(Some((&layout.database, &layout.stream)))
            .into_iter()
            .filter(|s| {
                s.backfilled() && aligned(s.spec.every) && outlives_raw(&s.spec, policy.retention)
            })
            .map(|s| s.spec.every)
            .max()
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        agg: &datafusion::logical_expr::Aggregate,
        scan: &TableScan,
        layout: &TableLayout,
        every: i64,
        groups: Vec<Group>,
        aggs: Vec<Agg>,
        predicates: Vec<Expr>,
    ) -> Result<LogicalPlan> {
        // Absorb pending writes now, so that series new to the rollup are in its table (the
        // scan lists its devices when planned); the scan absorbs again when it starts.
        self.engine
            .refresh_rollups(&layout.database, &layout.stream)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let name = rollup_stream_name(&layout.stream, every);
        let Some(table) =
            StreamTable::load(self.engine.clone(), &layout.database, &name, self.options)
        else {
            return Ok(LogicalPlan::Aggregate(agg.clone()));
        };
        // Rollup columns by what they hold, not by name: a raw tag called `points` or
        // `speed_max` keeps that name in the rollup table and pushes the statistic to
        // `points_field`, so names alone could read a tag as a statistic.
        let Some(names) = RollupNames::resolve(layout, table.layout(), &aggs, &groups, &predicates)
        else {
            return Ok(LogicalPlan::Aggregate(agg.clone()));
        };
        let reference = match &scan.table_name {
            TableReference::Bare { .. } => TableReference::bare(name.clone()),
            other => TableReference::partial(other.schema().unwrap_or_default(), name.clone()),
        };
        let requalify = |e: &Expr| -> Result<Expr> {
            e.clone()
                .transform_up(|e| match e {
                    Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new(
                        Some(reference.clone()),
                        names.raw_column(&c.name),
                    )))),
                    other => Ok(Transformed::no(other)),
                })
                .map(|t| t.data)
        };
        let column = |n: &str| Expr::Column(Column::new(Some(reference.clone()), n));
        let source = provider_as_source(Arc::new(table));
        let mut builder = LogicalPlanBuilder::scan(reference.clone(), source, None)?;
        let mut filters = predicates
            .iter()
            .map(requalify)
            .collect::<Result<Vec<_>>>()?;
        if !self.options.read_all_fields {
            // The raw scan's rows are the points holding one of the aggregated fields.
            let present: Vec<Expr> = aggs
                .iter()
                .filter_map(Agg::field)
                .map(|f| column(&names.stat(f, "count")).is_not_null())
                .collect();
            if let Some(any) = present.into_iter().reduce(Expr::or) {
                filters.push(any);
            }
        }
        if let Some(p) = conjunction(filters) {
            builder = builder.filter(p)?;
        }
        let group_exprs = groups
            .iter()
            .map(|g| match g {
                Group::Column(c) => Ok(column(&names.raw_column(c))),
                Group::Bucket { expr, .. } => requalify(expr),
            })
            .collect::<Result<Vec<_>>>()?;
        let sum = datafusion::functions_aggregate::expr_fn::sum;
        let min = datafusion::functions_aggregate::expr_fn::min;
        let max = datafusion::functions_aggregate::expr_fn::max;
        let stat = |f: &str, s: &str| column(&names.stat(f, s));
        let mut inner_aggs: Vec<Expr> = Vec::new();
        let mut outputs: Vec<Vec<usize>> = Vec::new();
        for a in &aggs {
            let first = inner_aggs.len();
            match a {
                Agg::Avg(f) => {
                    inner_aggs.push(sum(stat(f, "sum")));
                    inner_aggs.push(sum(stat(f, "count")));
                    outputs.push(vec![first, first + 1]);
                }
                Agg::Sum(f) => {
                    inner_aggs.push(sum(stat(f, "sum")));
                    outputs.push(vec![first]);
                }
                Agg::Min(f) => {
                    inner_aggs.push(min(stat(f, "min")));
                    outputs.push(vec![first]);
                }
                Agg::Max(f) => {
                    inner_aggs.push(max(stat(f, "max")));
                    outputs.push(vec![first]);
                }
                Agg::Count(f) => {
                    inner_aggs.push(sum(stat(f, "count")));
                    outputs.push(vec![first]);
                }
                Agg::CountRows => {
                    inner_aggs.push(sum(column(&names.points())));
                    outputs.push(vec![first]);
                }
            }
        }
        let n_groups = group_exprs.len();
        let aggregated = builder
            .aggregate(
                group_exprs,
                inner_aggs
                    .iter()
                    .enumerate()
                    .map(|(i, e)| e.clone().alias(format!("__rollup_{i}"))),
            )?
            .build()?;
        let inner_schema = aggregated.schema().clone();
        let inner_col = |i: usize| Expr::Column(Column::from(inner_schema.qualified_field(i)));
        let mut projection: Vec<Expr> = Vec::new();
        for i in 0..n_groups {
            projection.push(inner_col(i));
        }
        for (a, cols) in aggs.iter().zip(&outputs) {
            let c = |k: usize| inner_col(n_groups + cols[k]);
            projection.push(match a {
                Agg::Avg(_) => cast(c(0), DataType::Float64) / cast(c(1), DataType::Float64),
                Agg::Count(_) | Agg::CountRows => {
                    datafusion::functions::expr_fn::coalesce(vec![c(0), lit(0i64)])
                }
                _ => c(0),
            });
        }
        // Same names, qualifiers and types as the original aggregate's output.
        let projection = projection
            .into_iter()
            .zip(agg.schema.iter())
            .map(|(e, (q, field))| {
                let e = match e.get_type(aggregated.schema())? {
                    t if t == *field.data_type() => e,
                    _ => cast(e, field.data_type().clone()),
                };
                Ok(e.alias_qualified(q.cloned(), field.name()))
            })
            .collect::<Result<Vec<_>>>()?;
        LogicalPlanBuilder::from(aggregated)
            .project(projection)?
            .build()
    }
}

impl Agg {
    fn field(&self) -> Option<&String> {
        match self {
            Agg::Avg(f) | Agg::Sum(f) | Agg::Min(f) | Agg::Max(f) | Agg::Count(f) => Some(f),
            Agg::CountRows => None,
        }
    }

    /// Rollup columns read.
    fn columns(&self) -> Vec<String> {
        match self {
            Agg::Avg(f) => vec![stat_column(f, "sum"), stat_column(f, "count")],
            Agg::Sum(f) => vec![stat_column(f, "sum")],
            Agg::Min(f) => vec![stat_column(f, "min")],
            Agg::Max(f) => vec![stat_column(f, "max")],
            Agg::Count(f) => vec![stat_column(f, "count")],
            Agg::CountRows => vec![POINTS.to_string()],
        }
    }
}

/// Where the rewrite finds, in the rollup table, the columns it reads: the raw plan's time,
/// device and tag columns matched by what they hold, and statistics by the field they are
/// stored as. Every column is resolved before the plan is built; one missing keeps the raw plan.
#[derive(Default)]
struct RollupNames {
    /// Raw table column name → rollup table column name.
    raw: HashMap<String, String>,
    /// Stored rollup field (`speed_max`, `points`) → rollup table column name.
    stats: HashMap<String, String>,
}

impl RollupNames {
    fn resolve(
        raw: &TableLayout,
        rollup: &TableLayout,
        aggs: &[Agg],
        groups: &[Group],
        predicates: &[Expr],
    ) -> Option<RollupNames> {
        let column_where = |holds: &dyn Fn(&ColumnKind) -> bool| {
            let i = rollup.kinds.iter().position(holds)?;
            Some(rollup.schema.field(i).name().clone())
        };
        let mut names = RollupNames::default();
        let mut refs: Vec<String> = Vec::new();
        for g in groups {
            match g {
                Group::Column(c) => refs.push(c.clone()),
                Group::Bucket { expr, .. } => {
                    refs.extend(expr.column_refs().into_iter().map(|c| c.name.clone()));
                }
            }
        }
        for p in predicates {
            refs.extend(p.column_refs().into_iter().map(|c| c.name.clone()));
        }
        for name in refs {
            let kind = raw.kind_of(&name)?;
            if matches!(kind, ColumnKind::Field(..)) {
                return None;
            }
            let target = column_where(&|k| k == kind)?;
            names.raw.insert(name, target);
        }
        for stored in aggs.iter().flat_map(Agg::columns) {
            let target = column_where(&|k| matches!(k, ColumnKind::Field(f, _) if *f == stored))?;
            names.stats.insert(stored, target);
        }
        Some(names)
    }

    /// The rollup column for the raw column `name` (resolved, so always found).
    fn raw_column(&self, name: &str) -> String {
        self.raw
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    }

    /// The rollup column holding statistic `stat` of `field`.
    fn stat(&self, field: &str, stat: &str) -> String {
        let stored = stat_column(field, stat);
        self.stats.get(&stored).cloned().unwrap_or(stored)
    }

    /// The rollup column holding each window's point count.
    fn points(&self) -> String {
        self.stats
            .get(POINTS)
            .cloned()
            .unwrap_or_else(|| POINTS.to_owned())
    }
}

/// Whether a rollup holds every window with raw data still readable: it is kept forever, or at
/// least one window longer than the raw data (`keep >= retention + every`), so the window the raw
/// retention cuts through is still whole in the rollup. A rollup kept for less than the raw data
/// would drop old buckets the raw plan returns. Both durations come from the policy, so the
/// choice does not depend on when the query runs (cached plans stay right; a policy change
/// invalidates them).
fn outlives_raw(spec: &RollupSpec, retention: Option<i64>) -> bool {
    match (spec.keep, retention) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(keep), Some(raw)) => raw
            .checked_add(spec.every)
            .is_some_and(|needed| keep >= needed),
    }
}

/// The layout of the stream a scan reads (`None`: not a stream table, or a rollup itself).
fn stream_layout(scan: &TableScan) -> Option<TableLayout> {
    let provider = source_as_provider(&scan.source).ok()?;
    let any: &dyn Any = provider.as_ref();
    let table = any.downcast_ref::<StreamTable>()?;
    let layout = table.layout();
    strata_storage::rollup::parse_rollup_stream_name(&layout.stream)
        .is_none()
        .then(|| layout.clone())
}

fn kind<'a>(e: &Expr, layout: &'a TableLayout) -> Option<&'a ColumnKind> {
    match e {
        Expr::Column(c) => layout.kind_of(&c.name),
        _ => None,
    }
}

fn group_of(e: &Expr, layout: &TableLayout) -> Option<Group> {
    if let Expr::Alias(a) = e {
        // `time_bucket(...)` is `date_bin(...)` under its own name.
        return match group_of(&a.expr, layout)? {
            Group::Bucket { stride, origin, .. } => Some(Group::Bucket {
                expr: e.clone(),
                stride,
                origin,
            }),
            Group::Column(c) => Some(Group::Column(c)),
        };
    }
    if let Expr::Column(c) = e {
        return match kind(e, layout)? {
            ColumnKind::Device | ColumnKind::Tag(_) => Some(Group::Column(c.name.clone())),
            _ => None,
        };
    }
    let Expr::ScalarFunction(f) = e else {
        return None;
    };
    if f.func.name() != "date_bin" {
        return None;
    }
    let (stride, time, origin) = match f.args.as_slice() {
        [s, t] => (s, t, None),
        [s, t, o] => (s, t, Some(o)),
        _ => return None,
    };
    if !matches!(kind(time, layout)?, ColumnKind::Time) {
        return None;
    }
    let stride = match stride {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(i)), _) if i.months == 0 => {
            i64::from(i.days)
                .checked_mul(86_400_000_000_000)?
                .checked_add(i.nanoseconds)?
        }
        _ => return None,
    };
    let origin = match origin {
        None => 0,
        Some(Expr::Literal(ScalarValue::TimestampNanosecond(Some(t), _), _)) => *t,
        Some(_) => return None,
    };
    (stride > 0).then(|| Group::Bucket {
        expr: e.clone(),
        stride,
        origin,
    })
}

fn agg_of(e: &Expr, layout: &TableLayout) -> Option<Agg> {
    let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
        return None;
    };
    if params.distinct || params.filter.is_some() || !params.order_by.is_empty() {
        return None;
    }
    let [arg] = params.args.as_slice() else {
        return None;
    };
    let name = func.name();
    if name == "count" && matches!(arg, Expr::Literal(v, _) if !v.is_null()) {
        return Some(Agg::CountRows);
    }
    // `avg` of an integer field reads it cast to a float.
    let arg = match arg {
        Expr::Cast(c) if name == "avg" && *c.field.data_type() == DataType::Float64 => {
            c.expr.as_ref()
        }
        other => other,
    };
    let ColumnKind::Field(field, ty) = kind(arg, layout)? else {
        return None;
    };
    let numeric = matches!(ty, FieldType::Float | FieldType::Integer);
    let f = field.clone();
    match name {
        "avg" if numeric => Some(Agg::Avg(f)),
        "sum" if numeric => Some(Agg::Sum(f)),
        "min" if numeric => Some(Agg::Min(f)),
        "max" if numeric => Some(Agg::Max(f)),
        "count" => Some(Agg::Count(f)),
        _ => None,
    }
}

/// For a predicate over `time`, `device` and tags only: the time bounds that must be aligned
/// (`Some(vec![])` when it has none); `None` when the predicate reads a field or bounds time in
/// any other way than `time <op> literal`.
fn predicate_bounds(p: &Expr, layout: &TableLayout) -> Option<Vec<i64>> {
    let refs = p.column_refs();
    let mut has_time = false;
    for c in &refs {
        match layout.kind_of(&c.name)? {
            ColumnKind::Time => has_time = true,
            ColumnKind::Device | ColumnKind::Tag(_) => {}
            ColumnKind::Field(..) => return None,
        }
    }
    if !has_time {
        return Some(Vec::new());
    }
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = p else {
        return None;
    };
    let (op, value) = match (left.as_ref(), right.as_ref()) {
        (l, Expr::Literal(v, _)) if is_time(l, layout) => (*op, v),
        (Expr::Literal(v, _), r) if is_time(r, layout) => (op.swap()?, v),
        _ => return None,
    };
    let ScalarValue::TimestampNanosecond(Some(t), _) = value else {
        return None;
    };
    // The first time inside (lower bound) or outside (upper bound) the range.
    let edge = match op {
        Operator::GtEq | Operator::Lt => *t,
        Operator::Gt | Operator::LtEq => t.checked_add(1)?,
        _ => return None,
    };
    Some(vec![edge])
}

fn is_time(e: &Expr, layout: &TableLayout) -> bool {
    matches!(kind(e, layout), Some(ColumnKind::Time))
}
