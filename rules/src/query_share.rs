//! One scan for query rules that differ only in `HAVING`: rules whose SQL is one plain
//! `SELECT … GROUP BY … HAVING cond` and that are the same once `HAVING` is taken out (and run
//! at the same `every`) are evaluated together, at the same instant, by one query: the shared
//! select list plus each rule's `HAVING` condition as a boolean column. Each rule's answer is the
//! rows whose column is true, without the added columns: what its own SQL returns at that
//! instant (the `HAVING` filter applied after grouping, and nothing after it that could see the
//! difference: no `ORDER BY`, `LIMIT`, `DISTINCT`, window functions or subqueries).
//!
//! A statement of any other shape is not shared ([`share_key`] is `None`) and runs alone; a
//! combined query that fails (e.g. a `HAVING` naming a select alias, which a select list cannot)
//! makes the caller run each rule alone.

use strata_query::arrow::array::{Array, BooleanArray, RecordBatch};
use strata_query::arrow::compute::{cast, filter_record_batch};
use strata_query::arrow::datatypes::DataType;
use strata_query::datafusion::sql::sqlparser::ast::{
    Expr, Ident, Query, Select, SelectItem, SetExpr, Statement,
};
use strata_query::datafusion::sql::sqlparser::dialect::GenericDialect;
use strata_query::datafusion::sql::sqlparser::parser::Parser;

use crate::error::{Result, RulesError};

/// Prefix of the added condition columns.
const HAVING_COLUMN: &str = "__strata_having_";

/// The statement without its `HAVING` (rules with the same key share a scan), or `None` when
/// the SQL is not of the shared shape.
pub fn share_key(sql: &str) -> Option<String> {
    let (mut stmt, _) = parse(sql)?;
    select_mut(&mut stmt)?.having = None;
    Some(stmt.to_string())
}

/// The one query answering every rule of `sqls` (all with the same [`share_key`]): the shared
/// statement with rule `i`'s `HAVING` condition added as column `__strata_having_<i>`.
pub fn combined_sql(sqls: &[&str]) -> Option<String> {
    let mut base: Option<(Statement, String)> = None;
    let mut conditions = Vec::with_capacity(sqls.len());
    for sql in sqls {
        let (mut stmt, having) = parse(sql)?;
        select_mut(&mut stmt)?.having = None;
        let key = stmt.to_string();
        match &base {
            Some((_, k)) if *k != key => return None,
            Some(_) => {}
            None => base = Some((stmt, key)),
        }
        conditions.push(having);
    }
    let (mut stmt, _) = base?;
    let select = select_mut(&mut stmt)?;
    for (i, c) in conditions.into_iter().enumerate() {
        select.projection.push(SelectItem::ExprWithAlias {
            expr: Expr::Nested(Box::new(c)),
            alias: Ident::with_quote('"', format!("{HAVING_COLUMN}{i}")),
        });
    }
    Some(stmt.to_string())
}

/// Splits the combined query's result into each of `n` rules' answers.
pub fn answers(batches: &[RecordBatch], n: usize) -> Result<Vec<Vec<RecordBatch>>> {
    let bad = |e: &dyn std::fmt::Display| RulesError::Invalid(format!("shared query: {e}"));
    let mut out = vec![Vec::new(); n];
    for b in batches {
        let width = b
            .num_columns()
            .checked_sub(n)
            .ok_or_else(|| bad(&"too few columns"))?;
        let kept = b
            .project(&(0..width).collect::<Vec<_>>())
            .map_err(|e| bad(&e))?;
        for (i, answer) in out.iter_mut().enumerate() {
            let name = format!("{HAVING_COLUMN}{i}");
            if b.schema().field(width + i).name() != &name {
                return Err(bad(&format!("column {name} missing")));
            }
            let flag = cast(b.column(width + i), &DataType::Boolean).map_err(|e| bad(&e))?;
            let flag = flag
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| bad(&"condition is not boolean"))?;
            // NULL is not true: HAVING drops the row, and so does the filter.
            let rows = filter_record_batch(&kept, flag).map_err(|e| bad(&e))?;
            if rows.num_rows() > 0 {
                answer.push(rows);
            }
        }
    }
    Ok(out)
}

/// The one statement of `sql` and its `HAVING` condition, when it has the shared shape.
fn parse(sql: &str) -> Option<(Statement, Expr)> {
    let mut stmts = Parser::parse_sql(&GenericDialect {}, sql).ok()?;
    if stmts.len() != 1 {
        return None;
    }
    let mut stmt = stmts.pop()?;
    let having = {
        let select = select_mut(&mut stmt)?;
        select.having.clone()?
    };
    Some((stmt, having))
}

/// The statement's one `SELECT`, if nothing around or inside it could see the rows `HAVING`
/// removes.
fn select_mut(stmt: &mut Statement) -> Option<&mut Select> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    if !plain_query(q) {
        return None;
    }
    let SetExpr::Select(select) = q.body.as_mut() else {
        return None;
    };
    plain_select(select).then_some(select.as_mut())
}

fn plain_query(q: &Query) -> bool {
    q.with.is_none()
        && q.order_by.is_none()
        && q.limit_clause.is_none()
        && q.fetch.is_none()
        && q.locks.is_empty()
        && q.for_clause.is_none()
        && q.settings.is_none()
        && q.format_clause.is_none()
        && q.pipe_operators.is_empty()
}

fn plain_select(s: &Select) -> bool {
    let projection_ok = s.projection.iter().all(|item| {
        let expr = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => return false, // wildcards: the added columns could clash
        };
        // Window functions and subqueries see the rows after HAVING: never shared.
        let text = expr.to_string().to_ascii_uppercase();
        !text.contains(" OVER") && !text.contains("SELECT") && !text.contains(HAVING_COLUMN)
    });
    projection_ok
        && s.distinct.is_none()
        && s.top.is_none()
        && s.into.is_none()
        && s.qualify.is_none()
        && s.named_window.is_empty()
        && s.sort_by.is_empty()
        && s.cluster_by.is_empty()
        && s.distribute_by.is_empty()
        && s.select_modifiers.is_none()
        && s.having.as_ref().is_none_or(|h| {
            let t = h.to_string().to_ascii_uppercase();
            !t.contains("SELECT")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "SELECT device, max(temperature) AS m FROM env \
        WHERE time > now() - INTERVAL '30 seconds' GROUP BY device HAVING max(temperature) > 150";

    #[test]
    fn rules_differing_only_in_having_share_a_key() {
        let other = Q.replace("> 150", "> 151");
        assert!(share_key(Q).is_some());
        assert_eq!(share_key(Q), share_key(&other));
        let different = Q.replace("30 seconds", "31 seconds");
        assert_ne!(share_key(Q), share_key(&different));
        let sql = combined_sql(&[Q, &other]).unwrap();
        assert!(sql.contains("__strata_having_1"), "{sql}");
        assert!(combined_sql(&[Q, &different]).is_none());
    }

    #[test]
    fn other_shapes_are_not_shared() {
        for sql in [
            "SELECT device FROM env",
            "SELECT device, max(t) FROM env GROUP BY device",
            "SELECT device, max(t) FROM env GROUP BY device HAVING max(t) > 1 ORDER BY device",
            "SELECT device, max(t) FROM env GROUP BY device HAVING max(t) > 1 LIMIT 3",
            "SELECT DISTINCT device, max(t) FROM env GROUP BY device HAVING max(t) > 1",
            "SELECT *, max(t) FROM env GROUP BY device HAVING max(t) > 1",
            "SELECT device, rank() OVER (ORDER BY max(t)) FROM env GROUP BY device HAVING max(t) > 1",
            "WITH e AS (SELECT * FROM env) SELECT device, max(t) FROM e GROUP BY device HAVING max(t) > 1",
            "SELECT device, max(t) FROM env GROUP BY device HAVING max(t) > 1 UNION ALL SELECT 'a', 1",
            "SELECT device, max(t) FROM env GROUP BY device HAVING max(t) > (SELECT 1)",
            "SELECT 1; SELECT 2",
            "not sql",
        ] {
            assert!(share_key(sql).is_none(), "{sql}");
        }
    }

    /// The shared query gives each rule exactly the answer of its own SQL (rows and values),
    /// including conditions over aggregates not selected and conditions that are NULL.
    #[test]
    fn shared_answers_equal_each_rule_alone() {
        use std::sync::Arc;
        use strata_query::arrow::array::{Float64Array, StringArray};
        use strata_query::arrow::datatypes::{Field, Schema};
        use strata_query::datafusion::datasource::MemTable;
        use strata_query::datafusion::prelude::SessionContext;

        let schema = Arc::new(Schema::new(vec![
            Field::new("device", DataType::Utf8, true),
            Field::new("t", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("a"),
                    Some("b"),
                    Some("c"),
                    None,
                    Some("c"),
                    Some("d"),
                ])),
                Arc::new(Float64Array::from(vec![
                    Some(1.0),
                    Some(5.0),
                    Some(3.0),
                    Some(9.0),
                    Some(7.0),
                    Some(2.0),
                    None,
                ])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("env", Arc::new(table)).unwrap();
        let base =
            "SELECT device, max(t) AS m, avg(t) FROM env WHERE t IS NULL OR t > 0 GROUP BY device";
        let sqls: Vec<String> = [
            "max(t) > 2",
            "max(t) > 100",
            "count(*) > 1",
            "max(t) > 2 AND min(t) < 3",
            "max(t) > NULL",
            "true",
        ]
        .iter()
        .map(|h| format!("{base} HAVING {h}"))
        .collect();
        let refs: Vec<&str> = sqls.iter().map(String::as_str).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let run =
            |sql: &str| rt.block_on(async { ctx.sql(sql).await.unwrap().collect().await.unwrap() });
        let shared = answers(&run(&combined_sql(&refs).unwrap()), refs.len()).unwrap();
        for (sql, got) in refs.iter().zip(shared) {
            let alone = crate::eval::instances(&run(sql)).unwrap();
            assert_eq!(crate::eval::instances(&got).unwrap(), alone, "{sql}");
        }
    }
}
