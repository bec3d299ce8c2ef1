//! Time-series SQL functions added to DataFusion's: `time_bucket` (an alias of `date_bin`) and
//! `first(value, time)` / `last(value, time)`, rewritten during planning into
//! `first_value(value ORDER BY time) IGNORE NULLS` / `last_value(...)`; `percentile_cont` with an
//! exact interpolation (`crate::percentile`).

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::FunctionRegistry;
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment};
use datafusion::logical_expr::function::{AccumulatorArgs, AggregateFunctionSimplification};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, ScalarUDF, Signature, Volatility,
};

/// Registers the Strata functions in `registry` (a session context or state).
pub fn register(registry: &mut dyn FunctionRegistry) -> Result<()> {
    let date_bin = datafusion::functions::datetime::date_bin();
    let time_bucket = ScalarUDF::clone(&date_bin).with_aliases(["time_bucket"]);
    registry.register_udf(Arc::new(time_bucket))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(ByTime::new(false))))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(ByTime::new(true))))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(
        crate::percentile::ExactPercentileCont::new(),
    )))?;
    Ok(())
}

/// `first(value, time)` (or `last` when `last`): the non-null value with the earliest (latest) time.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ByTime {
    last: bool,
    signature: Signature,
}

impl ByTime {
    fn new(last: bool) -> ByTime {
        ByTime {
            last,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for ByTime {
    fn name(&self) -> &str {
        if self.last { "last" } else { "first" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        arg_types.first().cloned().ok_or_else(|| {
            DataFusionError::Plan(format!("{}(value, time) needs two arguments", self.name()))
        })
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Err(DataFusionError::Plan(format!(
            "{}(value, time) is only supported as an aggregate (GROUP BY), not as a window function",
            self.name()
        )))
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        let last = self.last;
        Some(Box::new(move |agg, _info| rewrite(agg, last)))
    }
}

/// `first(v, t)` → `first_value(v ORDER BY t ASC) IGNORE NULLS` (same for `last`), keeping any
/// `FILTER` clause.
fn rewrite(agg: AggregateFunction, last: bool) -> Result<Expr> {
    let params = agg.params;
    let [value, time]: [Expr; 2] = params.args.try_into().map_err(|_| {
        DataFusionError::Plan("first/last take exactly two arguments: (value, time)".into())
    })?;
    if params.distinct {
        return Err(DataFusionError::Plan(
            "DISTINCT is not supported in first/last".into(),
        ));
    }
    let func = if last {
        last_value_udaf()
    } else {
        first_value_udaf()
    };
    Ok(Expr::AggregateFunction(AggregateFunction::new_udf(
        func,
        vec![value],
        false,
        params.filter,
        vec![time.sort(true, false)],
        Some(NullTreatment::IgnoreNulls),
    )))
}
