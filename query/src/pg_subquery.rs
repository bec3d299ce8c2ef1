//! Subqueries where DataFusion cannot run them, rewritten into forms it can.
//!
//! **`x IN (SELECT …)` in a select list.** DataFusion runs `IN` subqueries only in filters (as
//! semi joins); in a projection it becomes `array_has((SELECT array_agg(v) FROM (…) AS
//! __strata_in(v)), x)`, a scalar subquery it plans anywhere (`NOT IN` becomes `NOT
//! array_has(…)`). Unlike SQL's `IN`, the result is false rather than NULL when the list holds
//! a NULL and `x` is not in it.
//!
//! **`ORDER BY` expressions that hold a subquery.** PostgreSQL sorts by any expression, including
//! `CASE WHEN x IN (SELECT …) THEN 0 ELSE 1 END` (Grafana's table list sorts tables on the
//! search path first that way); DataFusion accepts subqueries only in projections, filters and
//! joins. [`lift_order_subqueries`] evaluates such sort keys as hidden columns of the query and
//! sorts an outer query on them:
//!
//! ```sql
//! SELECT a AS "t" FROM x ORDER BY CASE WHEN y IN (SELECT …) THEN 0 ELSE 1 END, 1
//! -- becomes
//! SELECT "t" FROM (SELECT a AS "t", CASE … END AS __strata_order_0 FROM x) AS __strata_sorted
//! ORDER BY __strata_order_0, 1
//! ```
//!
//! Only a plain `SELECT` (no `DISTINCT`) whose output columns all have names is rewritten;
//! anything else is left for DataFusion to refuse with its own message.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, Ident, OrderByExpr, OrderByKind, Query, Select, SelectItem, SetExpr, TableFactor,
    VisitMut, VisitorMut, visit_expressions, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Rewrites every query of `statement` that sorts by a subquery expression, then every `IN`
/// subquery of a select list (including the sort keys just moved there).
pub(crate) fn rewrite_subqueries(statement: &mut ast::Statement) {
    let _ = statement.visit(&mut Lift);
    let _ = statement.visit(&mut InLists);
}

struct Lift;

impl VisitorMut for Lift {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(lifted) = lifted(query) {
            *query = lifted;
        }
        ControlFlow::Continue(())
    }
}

struct InLists;

impl VisitorMut for InLists {
    type Break = ();

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        for item in &mut select.projection {
            let expr = match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                _ => continue,
            };
            let _ = visit_expressions_mut(expr, |e| {
                if let Some(replaced) = as_array_has(e) {
                    *e = replaced;
                }
                ControlFlow::<()>::Continue(())
            });
        }
        ControlFlow::Continue(())
    }
}

/// `x [NOT] IN (subquery)` as `[NOT] array_has((SELECT array_agg(v) FROM (subquery) AS
/// __strata_in(v)), x)`.
fn as_array_has(expr: &Expr) -> Option<Expr> {
    let Expr::InSubquery {
        expr: needle,
        subquery,
        negated,
    } = expr
    else {
        return None;
    };
    let mut parsed = Parser::parse_sql(
        &PostgreSqlDialect {},
        "SELECT array_has((SELECT array_agg(v) FROM (SELECT 1) AS __strata_in(v)), x)",
    )
    .ok()?;
    let ast::Statement::Query(mut query) = parsed.pop()? else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let SelectItem::UnnamedExpr(Expr::Function(call)) = select.projection.pop()? else {
        return None;
    };
    let mut call = call;
    let ast::FunctionArguments::List(list) = &mut call.args else {
        return None;
    };
    let [haystack, x] = list.args.as_mut_slice() else {
        return None;
    };
    *x = ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(needle.as_ref().clone()));
    let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Subquery(agg))) = haystack
    else {
        return None;
    };
    let SetExpr::Select(agg_select) = agg.body.as_mut() else {
        return None;
    };
    let TableFactor::Derived {
        subquery: inner, ..
    } = &mut agg_select.from.first_mut()?.relation
    else {
        return None;
    };
    *inner = subquery.clone();
    let has = Expr::Function(call);
    Some(if *negated {
        Expr::UnaryOp {
            op: ast::UnaryOperator::Not,
            expr: Box::new(Expr::Nested(Box::new(has))),
        }
    } else {
        has
    })
}

/// `query` with its subquery sort keys evaluated as hidden columns, if it has any and its shape
/// allows it.
fn lifted(query: &Query) -> Option<Query> {
    let order = query.order_by.as_ref()?;
    let OrderByKind::Expressions(keys) = &order.kind else {
        return None;
    };
    if !keys.iter().any(|k| has_subquery(&k.expr)) {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if select.distinct.is_some() {
        return None;
    }
    let names = output_names(select)?;
    let mut inner = select.as_ref().clone();
    let mut outer_keys = Vec::with_capacity(keys.len());
    for (k, key) in keys.iter().enumerate() {
        if refers_to_output(&key.expr, &names) {
            outer_keys.push(key.clone());
            continue;
        }
        let hidden = Ident::new(format!("__strata_order_{k}"));
        inner.projection.push(SelectItem::ExprWithAlias {
            expr: key.expr.clone(),
            alias: hidden.clone(),
        });
        outer_keys.push(OrderByExpr {
            expr: Expr::Identifier(hidden),
            ..key.clone()
        });
    }
    let mut outer = template()?;
    let SetExpr::Select(outer_select) = outer.body.as_mut() else {
        return None;
    };
    outer_select.projection = names
        .into_iter()
        .map(|n| SelectItem::UnnamedExpr(Expr::Identifier(n)))
        .collect();
    let TableFactor::Derived { subquery, .. } = &mut outer_select.from.first_mut()?.relation else {
        return None;
    };
    *subquery.body = SetExpr::Select(Box::new(inner));
    outer.with = query.with.clone();
    outer.order_by = Some(ast::OrderBy {
        kind: OrderByKind::Expressions(outer_keys),
        interpolate: order.interpolate.clone(),
    });
    outer.limit_clause = query.limit_clause.clone();
    outer.fetch = query.fetch.clone();
    Some(outer)
}

/// Whether `expr` holds a subquery anywhere.
fn has_subquery(expr: &Expr) -> bool {
    visit_expressions(expr, |e| {
        if matches!(
            e,
            Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. }
        ) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// The names of the select's output columns, if every one has a name (an alias or a column).
fn output_names(select: &Select) -> Option<Vec<Ident>> {
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.clone()),
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.clone()),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last().cloned(),
            _ => None,
        })
        .collect()
}

/// Whether a sort key names an output column: a position (`1`) or an output column's name.
fn refers_to_output(expr: &Expr, names: &[Ident]) -> bool {
    match expr {
        Expr::Value(v) => matches!(v.value, ast::Value::Number(..)),
        Expr::Identifier(i) => names.iter().any(|n| n.value == i.value),
        _ => false,
    }
}

/// `SELECT 1 FROM (SELECT 1) AS __strata_sorted`, to fill in.
fn template() -> Option<Query> {
    let mut parsed = Parser::parse_sql(
        &PostgreSqlDialect {},
        "SELECT 1 FROM (SELECT 1) AS __strata_sorted",
    )
    .ok()?;
    match parsed.pop()? {
        ast::Statement::Query(q) => Some(*q),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        rewrite_subqueries(&mut s[0]);
        s[0].to_string()
    }

    #[test]
    fn in_subqueries_of_select_lists_become_array_has() {
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN a NOT IN (SELECT b FROM y) THEN 0 END FROM x WHERE c IN (SELECT d FROM z)"
            ),
            "SELECT CASE WHEN NOT (array_has((SELECT array_agg(v) FROM (SELECT b FROM y) AS __strata_in (v)), a)) THEN 0 END FROM x WHERE c IN (SELECT d FROM z)"
        );
    }

    #[test]
    fn subquery_sort_keys_become_hidden_columns() {
        let s = rewritten(
            "SELECT a AS t FROM x ORDER BY CASE WHEN b IN (SELECT c FROM y) THEN 0 ELSE 1 END, 1 LIMIT 5",
        );
        assert_eq!(
            s,
            "SELECT t FROM (SELECT a AS t, CASE WHEN array_has((SELECT array_agg(v) FROM (SELECT c FROM y) AS __strata_in (v)), b) THEN 0 ELSE 1 END AS __strata_order_0 FROM x) AS __strata_sorted ORDER BY __strata_order_0, 1 LIMIT 5"
        );
    }

    #[test]
    fn other_queries_are_untouched() {
        for sql in [
            "SELECT a FROM x ORDER BY a",
            "SELECT a FROM x WHERE a IN (SELECT b FROM y) ORDER BY 1",
            "SELECT DISTINCT a FROM x ORDER BY (SELECT 1)",
            "SELECT count(*) FROM x ORDER BY (SELECT 1)",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }
}
