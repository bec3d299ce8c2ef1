//! `percentile_cont` with an exact interpolation. DataFusion 55's own truncates the interpolation
//! weight to six decimals (apache/datafusion#25266), so `percentile_cont(0.99)` of a truck's speeds
//! gives 93.5449999 where PostgreSQL and DuckDB give 93.545. This function keeps DataFusion's
//! planning (signature, `WITHIN GROUP`, simplification, state layout) and its accumulator, and
//! only replaces the final step for `DOUBLE` input: `lower + (upper - lower) × fraction` with the
//! whole fraction. Other input types (and `DISTINCT`) use DataFusion's unchanged.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Float64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, GroupsAccumulator, Signature,
};
use datafusion::physical_expr::expressions::Literal;
use datafusion::scalar::ScalarValue;

/// DataFusion's `percentile_cont` with the exact final interpolation for `DOUBLE` input.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ExactPercentileCont {
    inner: Arc<AggregateUDF>,
}

impl ExactPercentileCont {
    pub(crate) fn new() -> ExactPercentileCont {
        ExactPercentileCont {
            inner: datafusion::functions_aggregate::percentile_cont::percentile_cont_udaf(),
        }
    }
}

/// Whether this call is answered by [`Exact`] (else by DataFusion's accumulators).
fn exact_applies(args: &AccumulatorArgs) -> bool {
    !args.is_distinct && args.expr_fields[0].data_type() == &DataType::Float64
}

/// The percentile the call asks for, flipped for `ORDER BY ... DESC` as DataFusion does.
fn percentile_of(args: &AccumulatorArgs) -> Result<f64> {
    let literal = args
        .exprs
        .get(1)
        .and_then(|e| e.downcast_ref::<Literal>())
        .ok_or_else(|| {
            DataFusionError::Plan("percentile_cont needs a constant percentile".into())
        })?;
    let p = match literal.value().cast_to(&DataType::Float64)? {
        ScalarValue::Float64(Some(p)) if (0.0..=1.0).contains(&p) => p,
        other => {
            return Err(DataFusionError::Plan(format!(
                "percentile_cont's percentile must be between 0 and 1, not {other}"
            )));
        }
    };
    let descending = args.order_bys.first().is_some_and(|s| s.options.descending);
    Ok(if descending { 1.0 - p } else { p })
}

impl AggregateUDFImpl for ExactPercentileCont {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let inner = self.inner.accumulator(args.clone())?;
        if !exact_applies(&args) {
            return Ok(inner);
        }
        Ok(Box::new(Exact {
            inner,
            percentile: percentile_of(&args)?,
        }))
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        // Grouped DOUBLE percentiles go through one `Exact` per group.
        !exact_applies(&args) && self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner.create_groups_accumulator(args)
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        self.inner.simplify()
    }

    fn supports_within_group_clause(&self) -> bool {
        self.inner.supports_within_group_clause()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// DataFusion's accumulator, with the final value computed here from its values.
#[derive(Debug)]
struct Exact {
    inner: Box<dyn Accumulator>,
    percentile: f64,
}

impl Accumulator for Exact {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(values)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        // The state is the list of values (taken out of the accumulator): read it, then give it
        // back, since a window frame evaluates the same accumulator again.
        let state = self.inner.state()?;
        let list = match state.first() {
            Some(ScalarValue::List(list)) if list.len() == 1 => list.clone(),
            _ => {
                return Err(DataFusionError::Internal(
                    "percentile_cont state is not one list".into(),
                ));
            }
        };
        let values = list.value(0);
        let mut values: Vec<f64> = values.as_primitive::<Float64Type>().values().to_vec();
        let answer = interpolate(&mut values, self.percentile);
        self.inner.merge_batch(&[list as ArrayRef])?;
        Ok(ScalarValue::Float64(answer))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.inner.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.retract_batch(values)
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}

/// The `p` percentile of `values` by linear interpolation between the closest ranks (SQL's
/// `percentile_cont`): rank `p × (n − 1)`, `lower + (upper − lower) × fraction`.
fn interpolate(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = p * (values.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    let (_, lower, _) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let lower = *lower;
    if lo == hi {
        return Some(lower);
    }
    let (_, upper, _) = values.select_nth_unstable_by(hi, f64::total_cmp);
    Some(lower + (*upper - lower) * (rank - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    #[test]
    fn interpolation_uses_the_whole_fraction() {
        assert_eq!(interpolate(&mut [], 0.5), None);
        assert_eq!(interpolate(&mut [3.0], 0.99), Some(3.0));
        assert_eq!(interpolate(&mut [4.0, 1.0, 3.0, 2.0], 0.5), Some(2.5));
        assert_eq!(interpolate(&mut [2.0, 0.0, 1.0], 1.0), Some(2.0));
        assert_eq!(interpolate(&mut [2.0, 0.0, 1.0], 0.0), Some(0.0));
        // Rank 5e-7 between 0 and 1: six decimals of weight would give 0.
        let tiny = interpolate(&mut [0.0, 1.0, 2.0], 2.5e-7).unwrap();
        assert!((tiny - 5e-7).abs() < 1e-18, "{tiny}");
    }
}
