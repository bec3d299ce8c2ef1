//! Functions in `FROM`, the PostgreSQL way. PostgreSQL lets any function stand in `FROM`: a
//! scalar one is a one-row table, a set-returning one a table of its values, and the column is
//! named after the alias (`FROM string_to_array(x, ',') s` gives a column `s`). DataFusion only
//! accepts its table functions there, with literal arguments. Grafana's PostgreSQL data source
//! relies on both forms in every metadata query:
//!
//! ```sql
//! FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1),
//!                      array_upper(string_to_array(current_setting('search_path'),','),1)) AS i,
//!      string_to_array(current_setting('search_path'),',') s
//! ```
//!
//! [`rewrite_from_functions`] turns such a relation into a derived table DataFusion plans:
//! `(SELECT f(args) AS s) AS s` for a scalar function, and
//! `(SELECT unnest(generate_series(args)) AS i) AS i` for `generate_series` with non-literal
//! arguments (literal ones stay DataFusion's table function).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, Function, FunctionArgumentList, FunctionArguments, Ident, ObjectName,
    ObjectNamePart, SelectItem, SetExpr, TableAlias, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::pg_functions::is_literal;

/// Scalar functions clients put in `FROM` as one-row tables.
const SCALAR_IN_FROM: &[&str] = &[
    "string_to_array",
    "current_setting",
    "current_schema",
    "current_database",
    "parse_ident",
    "regexp_split_to_array",
];

/// Rewrites every function relation of `statement` that DataFusion cannot plan into a derived
/// table (see the module documentation).
pub(crate) fn rewrite_from_functions(statement: &mut ast::Statement) {
    let _ = statement.visit(&mut FromFunctions);
}

struct FromFunctions;

impl VisitorMut for FromFunctions {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let Some(derived) = derived_for(factor) {
            *factor = derived;
        }
        ControlFlow::Continue(())
    }
}

/// The derived table standing for `factor`, when it is a function DataFusion cannot plan there.
fn derived_for(factor: &TableFactor) -> Option<TableFactor> {
    let TableFactor::Table {
        name,
        alias,
        args: Some(args),
        ..
    } = factor
    else {
        return None;
    };
    let [ObjectNamePart::Identifier(function)] = name.0.as_slice() else {
        return None;
    };
    let lower = function.value.to_ascii_lowercase();
    let call = Expr::Function(Function {
        name: name.clone(),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.args.clone(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    });
    let value = if lower == "generate_series" && !args.args.iter().all(is_literal) {
        Expr::Function(Function {
            name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new("unnest"))]),
            uses_odbc_syntax: false,
            parameters: FunctionArguments::None,
            args: FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: None,
                args: vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(call))],
                clauses: vec![],
            }),
            filter: None,
            null_treatment: None,
            over: None,
            within_group: vec![],
        })
    } else if SCALAR_IN_FROM.contains(&lower.as_str()) {
        call
    } else {
        return None;
    };
    let column = column_name(alias.as_ref(), &lower);
    Some(TableFactor::Derived {
        lateral: false,
        subquery: Box::new(one_column_query(value, column.clone())?),
        alias: Some(alias.clone().unwrap_or_else(|| TableAlias {
            explicit: true,
            name: column,
            columns: vec![],
            at: None,
        })),
        sample: None,
    })
}

/// The result column's name: the alias's first column, else the alias, else the function.
fn column_name(alias: Option<&TableAlias>, function: &str) -> Ident {
    match alias {
        Some(a) => a
            .columns
            .first()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| a.name.clone()),
        None => Ident::new(function),
    }
}

/// `SELECT value AS column`.
fn one_column_query(value: Expr, column: Ident) -> Option<ast::Query> {
    let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT 1 AS c").ok()?;
    let ast::Statement::Query(mut query) = parsed.pop()? else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    select.projection = vec![SelectItem::ExprWithAlias {
        expr: value,
        alias: column,
    }];
    Some(*query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        rewrite_from_functions(&mut s[0]);
        s[0].to_string()
    }

    #[test]
    fn scalar_and_set_returning_functions_become_derived_tables() {
        let s = rewritten(
            "SELECT s[i] FROM generate_series(1, array_length(x, 1)) AS i, string_to_array('a,b', ',') s",
        );
        assert!(
            s.contains("(SELECT unnest(generate_series(1, array_length(x, 1))) AS i) AS i"),
            "{s}"
        );
        assert!(
            s.contains("(SELECT string_to_array('a,b', ',') AS s) s"),
            "{s}"
        );
    }

    #[test]
    fn table_functions_with_literal_arguments_and_tables_stay() {
        let sql = "SELECT * FROM generate_series(1, 3) AS g, last_values('env') AS l, env";
        assert_eq!(rewritten(sql), sql);
    }
}
