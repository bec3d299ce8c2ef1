//! Gap filling: `time_buckets(start, end, interval)` generates every bucket of a range (so a
//! `LEFT JOIN` against a bucketed aggregate yields a row for each empty bucket), and two window
//! functions fill the holes:
//!
//! - `locf(x) OVER (… ORDER BY bucket)`: last observation carried forward (the previous non-null
//!   value of the partition; null before the first one);
//! - `interpolate(x, bucket) OVER (… ORDER BY bucket)`: linear interpolation in time between the
//!   previous and the next non-null values; null before the first and after the last one.
//!
//! Non-null values pass through unchanged. See `docs/sql.md` ("Gap filling") for the query shape.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, TimestampNanosecondArray};
use arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Schema, TimeUnit};
use datafusion::catalog::{MemTable, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    Expr, LimitEffect, PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::scalar::ScalarValue;

use crate::layout::TIME_ZONE;

/// Most buckets one `time_buckets` call may generate.
pub const MAX_BUCKETS: i64 = 1_000_000;

/// Registers `time_buckets`, `locf` and `interpolate`.
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udtf("time_buckets", Arc::new(TimeBuckets));
    ctx.register_udwf(WindowUDF::from(Fill::new(FillKind::Locf)));
    ctx.register_udwf(WindowUDF::from(Fill::new(FillKind::Interpolate)));
}

/// `time_buckets(start, end, interval)`: one row per bucket start `b` with
/// `date_bin(interval, start) <= b < end`, column `bucket` (`Timestamp(ns, UTC)`).
#[derive(Debug)]
struct TimeBuckets;

impl TableFunctionImpl for TimeBuckets {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [start, end, interval] = args.exprs() else {
            return plan_err("time_buckets takes (start, end, interval)");
        };
        let (start, end) = (timestamp_arg(start)?, timestamp_arg(end)?);
        let stride = interval_arg(interval)?;
        let buckets = bucket_starts(start, end, stride)?;
        let schema = Arc::new(Schema::new(vec![Field::new(
            "bucket",
            DataType::Timestamp(TimeUnit::Nanosecond, Some(TIME_ZONE.into())),
            false,
        )]));
        let array = TimestampNanosecondArray::from(buckets).with_timezone(TIME_ZONE);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(array)])?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

fn plan_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(DataFusionError::Plan(msg.into()))
}

/// Bucket starts from the bucket holding `start` (aligned on the epoch, like `date_bin`) up to
/// `end` (exclusive).
pub fn bucket_starts(start: i64, end: i64, stride: i64) -> Result<Vec<i64>> {
    if stride <= 0 {
        return plan_err("time_buckets: the interval must be positive");
    }
    // In i128: the bucket holding a time near i64::MIN may start before it.
    let first = i128::from(start) - i128::from(start.rem_euclid(stride));
    let Ok(first) = i64::try_from(first) else {
        return plan_err(format!(
            "time_buckets: the bucket holding {start} starts before the earliest representable time"
        ));
    };
    let count = (i128::from(end) - i128::from(first) + i128::from(stride) - 1) / i128::from(stride);
    if count > i128::from(MAX_BUCKETS) {
        return plan_err(format!(
            "time_buckets: {count} buckets exceed the limit of {MAX_BUCKETS}"
        ));
    }
    Ok((0..count.max(0) as i64)
        .map(|i| first + i * stride)
        .collect())
}

fn timestamp_arg(e: &Expr) -> Result<i64> {
    let value = match e {
        Expr::Literal(v, _) => v,
        Expr::Cast(c) => return timestamp_arg(&c.expr),
        other => {
            return plan_err(format!(
                "time_buckets: expected a timestamp literal, got {other}"
            ));
        }
    };
    let ns = match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => string_to_timestamp_nanos(s)
            .map_err(|e| DataFusionError::Plan(format!("time_buckets: {e}")))?,
        ScalarValue::TimestampNanosecond(Some(t), _) | ScalarValue::Int64(Some(t)) => *t,
        ScalarValue::TimestampMicrosecond(Some(t), _) => t.saturating_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(t), _) => t.saturating_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(t), _) => t.saturating_mul(1_000_000_000),
        other => return plan_err(format!("time_buckets: expected a timestamp, got {other}")),
    };
    Ok(ns)
}

fn interval_arg(e: &Expr) -> Result<i64> {
    let bad =
        || DataFusionError::Plan("time_buckets: expected a fixed INTERVAL (no months)".into());
    match e {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(i)), _) if i.months == 0 => {
            i64::from(i.days)
                .checked_mul(86_400_000_000_000)
                .and_then(|d| d.checked_add(i.nanoseconds))
                .ok_or_else(bad)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(i)), _) => i64::from(i.days)
            .checked_mul(86_400_000_000_000)
            .and_then(|d| d.checked_add(i64::from(i.milliseconds) * 1_000_000))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FillKind {
    Locf,
    Interpolate,
}

/// The `locf` / `interpolate` window functions.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Fill {
    kind: FillKind,
    signature: Signature,
}

impl Fill {
    fn new(kind: FillKind) -> Fill {
        let args = match kind {
            FillKind::Locf => 1,
            FillKind::Interpolate => 2,
        };
        Fill {
            kind,
            signature: Signature::any(args, Volatility::Immutable),
        }
    }
}

impl WindowUDFImpl for Fill {
    fn name(&self) -> &str {
        match self.kind {
            FillKind::Locf => "locf",
            FillKind::Interpolate => "interpolate",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(FillEvaluator { kind: self.kind }))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let input = args.input_fields().first().ok_or_else(|| {
            DataFusionError::Plan(format!("{} needs a value argument", self.name()))
        })?;
        let ty = match self.kind {
            FillKind::Locf => input.data_type().clone(),
            FillKind::Interpolate => {
                if !input.data_type().is_numeric() {
                    return plan_err(format!(
                        "interpolate(value, time) needs a numeric value, got {}",
                        input.data_type()
                    ));
                }
                DataType::Float64
            }
        };
        Ok(Arc::new(Field::new(args.name(), ty, true)))
    }

    fn limit_effect(&self, _args: &[Arc<dyn PhysicalExpr>]) -> LimitEffect {
        LimitEffect::Unknown
    }
}

#[derive(Debug)]
struct FillEvaluator {
    kind: FillKind,
}

impl PartitionEvaluator for FillEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let value = values
            .first()
            .ok_or_else(|| DataFusionError::Internal("fill function without input".into()))?;
        match self.kind {
            FillKind::Locf => locf(value, num_rows),
            FillKind::Interpolate => {
                let time = values.get(1).ok_or_else(|| {
                    DataFusionError::Plan("interpolate takes (value, time)".into())
                })?;
                interpolate(value, time)
            }
        }
    }
}

/// Each null replaced by the previous non-null value (indexes into `value`, then `take`).
fn locf(value: &ArrayRef, num_rows: usize) -> Result<ArrayRef> {
    let mut last: Option<u32> = None;
    let indices: arrow::array::UInt32Array = (0..num_rows)
        .map(|i| {
            if value.is_valid(i) {
                last = Some(i as u32);
            }
            last
        })
        .collect();
    Ok(arrow::compute::take(value.as_ref(), &indices, None)?)
}

/// Time of each row as i64 (timestamps of any unit, or integers).
fn times(time: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let as_i64 = arrow::compute::cast(time, &DataType::Int64).map_err(|e| {
        DataFusionError::Plan(format!(
            "interpolate: the time argument must be a timestamp: {e}"
        ))
    })?;
    let a = as_i64.as_primitive::<arrow::datatypes::Int64Type>();
    Ok((0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect())
}

/// Linear interpolation between the nearest non-null neighbours (by row order, weighted by time).
fn interpolate(value: &ArrayRef, time: &ArrayRef) -> Result<ArrayRef> {
    let v = arrow::compute::cast(value, &DataType::Float64)?;
    let v = v.as_primitive::<Float64Type>();
    let t = times(time)?;
    let n = v.len();
    let known = |i: usize| v.is_valid(i) && t[i].is_some();
    let mut next: Vec<Option<usize>> = vec![None; n];
    let mut after = None;
    for i in (0..n).rev() {
        next[i] = after;
        if known(i) {
            after = Some(i);
        }
    }
    let mut prev: Option<usize> = None;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if v.is_valid(i) {
            out.push(Some(v.value(i)));
        } else {
            out.push(between(v, &t, prev, next[i], t[i]));
        }
        if known(i) {
            prev = Some(i);
        }
    }
    Ok(Arc::new(Float64Array::from(out)))
}

fn between(
    v: &arrow::array::Float64Array,
    t: &[Option<i64>],
    prev: Option<usize>,
    next: Option<usize>,
    at: Option<i64>,
) -> Option<f64> {
    let (p, q, at) = (prev?, next?, at?);
    let (t0, t1) = (t[p]?, t[q]?);
    let (v0, v1) = (v.value(p), v.value(q));
    if t1 == t0 {
        return Some(v0);
    }
    // In i128: times near the i64 limits must not overflow the differences.
    let span = (i128::from(t1) - i128::from(t0)) as f64;
    Some(v0 + (v1 - v0) * ((i128::from(at) - i128::from(t0)) as f64 / span))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn buckets_cover_the_range_aligned_on_the_epoch() {
        assert_eq!(bucket_starts(15, 50, 10).unwrap(), vec![10, 20, 30, 40]);
        assert_eq!(bucket_starts(10, 40, 10).unwrap(), vec![10, 20, 30]);
        assert!(bucket_starts(10, 10, 10).unwrap().is_empty());
        assert_eq!(bucket_starts(-15, 0, 10).unwrap(), vec![-20, -10]);
        assert!(bucket_starts(0, i64::MAX, 1).is_err());
        assert!(bucket_starts(0, 10, 0).is_err());
    }

    /// Issue 14, defect 7: times before 1677 and near the i64 limits give a clear error or the
    /// right buckets, never an overflow panic.
    #[test]
    fn extreme_times_never_overflow() {
        assert!(bucket_starts(i64::MIN, i64::MIN + 100, 10).is_err());
        assert_eq!(
            bucket_starts(i64::MIN + 8, i64::MIN + 30, 10).unwrap(),
            vec![i64::MIN + 8, i64::MIN + 18, i64::MIN + 28]
        );
        let last = bucket_starts(i64::MAX - 5, i64::MAX, 10).unwrap();
        assert_eq!(last, vec![i64::MAX - 7]);
        let huge = Expr::Literal(
            ScalarValue::IntervalDayTime(Some(arrow::datatypes::IntervalDayTime::new(i32::MAX, 0))),
            None,
        );
        assert!(interval_arg(&huge).is_err());
        let v = Float64Array::from(vec![Some(0.0), None, Some(1.0)]);
        let t = [Some(i64::MIN), Some(0), Some(i64::MAX)];
        let mid = between(&v, &t, Some(0), Some(2), Some(0)).unwrap();
        assert!((mid - 0.5).abs() < 1e-9, "{mid}");
    }

    #[test]
    fn locf_and_interpolate_fill_nulls_only() {
        let v: ArrayRef = Arc::new(Float64Array::from(vec![
            None,
            Some(1.0),
            None,
            None,
            Some(4.0),
            None,
        ]));
        let t: ArrayRef = Arc::new(Int64Array::from(vec![0, 10, 20, 30, 40, 50]));
        let l = locf(&v, 6).unwrap();
        let l = l.as_primitive::<Float64Type>();
        let got: Vec<Option<f64>> = (0..6).map(|i| l.is_valid(i).then(|| l.value(i))).collect();
        assert_eq!(
            got,
            vec![None, Some(1.0), Some(1.0), Some(1.0), Some(4.0), Some(4.0)]
        );
        let i = interpolate(&v, &t).unwrap();
        let i = i.as_primitive::<Float64Type>();
        let got: Vec<Option<f64>> = (0..6).map(|k| i.is_valid(k).then(|| i.value(k))).collect();
        assert_eq!(
            got,
            vec![None, Some(1.0), Some(2.0), Some(3.0), Some(4.0), None]
        );
    }
}
