//! Physical plans cached by SQL text and the engine's catalog version, so a repeated query skips
//! parsing, analysis, optimization and physical planning.
//!
//! A plan is cached only when running it again later gives what planning it again would:
//! - no function whose result depends on when it runs (`now()`, `random()`, ...: anything not
//!   immutable is folded into a constant at planning);
//! - every leaf reads at execution time (stream scans, the last-value cache, snapshot tables),
//!   never rows captured at planning, or is a constant (the one row of `SELECT 1`, no rows);
//! - plans built from an older catalog (a new stream, field or series since) are replanned.
//!
//! Reuse goes through `reset_plan_states`, which gives stateful operators (joins, sorts) a fresh
//! state; dynamic filters are switched off in the session (the stream scan cannot use them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;

use crate::exec::StrataScanExec;
use crate::latest::LastValuesExec;
use crate::snapshot::SnapshotExec;

/// A plan with the catalog version it was built at.
type Versioned = (u64, Arc<dyn ExecutionPlan>);

/// Cached plans, at most `capacity` (the whole cache is dropped when full: simple and rare).
#[derive(Debug)]
pub(crate) struct PlanCache {
    capacity: usize,
    plans: Mutex<HashMap<String, Versioned>>,
}

impl PlanCache {
    pub fn new(capacity: usize) -> PlanCache {
        PlanCache {
            capacity,
            plans: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh copy of the plan cached for `sql` at catalog `version`.
    pub fn get(&self, sql: &str, version: u64) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if self.capacity == 0 {
            return Ok(None);
        }
        let cached = match self.plans.lock() {
            Ok(plans) => plans
                .get(sql)
                .filter(|(v, _)| *v == version)
                .map(|(_, p)| p.clone()),
            Err(_) => None,
        };
        cached.map(reset_plan_states).transpose()
    }

    /// Remembers `plan` for `sql` if it may be reused (see the module docs).
    pub fn put(
        &self,
        sql: &str,
        version: u64,
        logical: &LogicalPlan,
        plan: &Arc<dyn ExecutionPlan>,
    ) {
        if self.capacity == 0 || !reusable_logical(logical) || !reusable_physical(plan) {
            return;
        }
        if let Ok(mut plans) = self.plans.lock() {
            if plans.len() >= self.capacity {
                plans.clear();
            }
            plans.insert(sql.to_string(), (version, plan.clone()));
        }
    }
}

/// No `EXPLAIN`/DDL, and only immutable functions.
fn reusable_logical(plan: &LogicalPlan) -> bool {
    if matches!(
        plan,
        LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Ddl(_)
    ) {
        return false;
    }
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|node| {
        let _ = node.apply_expressions(|e| {
            if e.exists(|x| Ok(!immutable(x)))? {
                ok = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        Ok(match ok {
            true => TreeNodeRecursion::Continue,
            false => TreeNodeRecursion::Stop,
        })
    });
    ok
}

fn immutable(e: &Expr) -> bool {
    match e {
        Expr::ScalarFunction(f) => f.func.signature().volatility == Volatility::Immutable,
        Expr::AggregateFunction(f) => f.func.signature().volatility == Volatility::Immutable,
        Expr::Placeholder(_) => false,
        _ => true,
    }
}

/// Every leaf reads its rows when executed.
fn reusable_physical(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut ok = true;
    let _ = plan.apply(|node| {
        if node.children().is_empty() {
            // Constant leaves (`SELECT 1`, a filter folded to false) hold no captured rows.
            ok &= node.is::<StrataScanExec>()
                || node.is::<PlaceholderRowExec>()
                || node.is::<EmptyExec>()
                || node.is::<crate::newest::NewestRowExec>()
                || node.is::<crate::last_row::LastRowExec>()
                || node.is::<LastValuesExec>()
                || node.is::<SnapshotExec>();
        }
        Ok(match ok {
            true => TreeNodeRecursion::Continue,
            false => TreeNodeRecursion::Stop,
        })
    });
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn logical(sql: &str) -> LogicalPlan {
        SessionContext::new()
            .state()
            .create_logical_plan(sql)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn time_dependent_and_explain_plans_are_not_reused() {
        assert!(reusable_logical(&logical("SELECT abs(-1) + 1").await));
        assert!(!reusable_logical(&logical("SELECT now()").await));
        assert!(!reusable_logical(
            &logical("SELECT 1 WHERE random() > 0.5").await
        ));
        assert!(!reusable_logical(&logical("EXPLAIN SELECT 1").await));
    }
}
