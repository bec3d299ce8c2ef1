//! What every Strata leaf execution plan (stream scan, last values, newest row, registry snapshot)
//! shares: bounded plan properties, refusing children, checking a partition number, and the
//! projection of a stream table's columns.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{ExecutionPlan, Partitioning, PlanProperties};

use crate::layout::{ColumnKind, TableLayout};

/// Properties of a bounded plan with `partitions` partitions of unknown distribution.
pub(crate) fn bounded_properties(
    schema: SchemaRef,
    partitions: usize,
    emission: EmissionType,
) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(partitions),
        emission,
        Boundedness::Bounded,
    ))
}

/// `with_new_children` of a leaf: itself when given no children, an internal error otherwise.
pub(crate) fn without_children(
    plan: Arc<dyn ExecutionPlan>,
    children: &[Arc<dyn ExecutionPlan>],
) -> Result<Arc<dyn ExecutionPlan>> {
    if children.is_empty() {
        Ok(plan)
    } else {
        Err(DataFusionError::Internal(format!(
            "{} has no children",
            plan.name()
        )))
    }
}

/// Checks that a single-partition plan called `name` is asked for partition 0.
pub(crate) fn only_partition_zero(name: &str, partition: usize) -> Result<()> {
    if partition == 0 {
        Ok(())
    } else {
        Err(DataFusionError::Internal(format!(
            "{name} has no partition {partition}"
        )))
    }
}

/// The schema and column kinds of `layout` restricted to `projection` (all columns when `None`).
pub(crate) fn project(
    layout: &TableLayout,
    projection: Option<&Vec<usize>>,
) -> Result<(SchemaRef, Vec<ColumnKind>)> {
    let all: Vec<usize> = (0..layout.kinds.len()).collect();
    let indices = projection.unwrap_or(&all);
    let schema = Arc::new(layout.schema.project(indices)?);
    let kinds = indices
        .iter()
        .filter_map(|i| layout.kinds.get(*i).cloned())
        .collect();
    Ok((schema, kinds))
}

/// The `ExecutionPlan` methods every leaf with its own `properties` field shares: its name, its
/// properties, no children, no expressions, and refusing new children.
macro_rules! leaf_plan {
    ($name:literal) => {
        fn name(&self) -> &'static str {
            $name
        }

        fn properties(&self) -> &std::sync::Arc<datafusion::physical_plan::PlanProperties> {
            &self.properties
        }

        fn children(&self) -> Vec<&std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            Vec::new()
        }

        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(
                &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
            ) -> datafusion::error::Result<
                datafusion::common::tree_node::TreeNodeRecursion,
            >,
        ) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion> {
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        }

        fn with_new_children(
            self: std::sync::Arc<Self>,
            children: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
        ) -> datafusion::error::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>
        {
            crate::leaf::without_children(self, &children)
        }
    };
}
pub(crate) use leaf_plan;
