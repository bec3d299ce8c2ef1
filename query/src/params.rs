//! Query parameters for prepared statements (Flight SQL, ADBC): `?` placeholders are numbered
//! `$1`, `$2`, ... in the order they appear, on the parsed SQL syntax tree (never by editing the
//! text), so both the `qmark` style of Python DB-API drivers and DataFusion's `$n` style work.
//! Values are bound by DataFusion (`LogicalPlan::with_param_values`) as literals, never pasted
//! into SQL text.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{Expr, Value, visit_expressions_mut};

/// Renames every `?` placeholder of `statement` to `$1`, `$2`, ... in source order and returns
/// how many it renamed. `$n` placeholders are left alone; mixing both styles in one statement is
/// the caller's choice (the numbering does not look at existing `$n`).
pub fn number_placeholders(statement: &mut Statement) -> usize {
    let Statement::Statement(inner) = statement else {
        return 0;
    };
    let mut next = 0usize;
    let _ = visit_expressions_mut(inner.as_mut(), |expr| {
        if let Expr::Value(v) = expr
            && let Value::Placeholder(name) = &mut v.value
            && name == "?"
        {
            next += 1;
            *name = format!("${next}");
        }
        ControlFlow::<()>::Continue(())
    });
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn parse(sql: &str) -> Statement {
        DFParser::parse_sql(sql).unwrap().pop_front().unwrap()
    }

    #[test]
    fn question_marks_are_numbered_in_order() {
        let mut s =
            parse("SELECT a FROM t WHERE b = ? AND c > ? OR d IN (SELECT x FROM u WHERE y = ?)");
        assert_eq!(number_placeholders(&mut s), 3);
        let text = s.to_string();
        assert!(text.contains("b = $1"), "{text}");
        assert!(text.contains("c > $2"), "{text}");
        assert!(text.contains("y = $3"), "{text}");
    }

    #[test]
    fn dollar_placeholders_and_strings_are_untouched() {
        let mut s = parse("SELECT '?' AS q FROM t WHERE b = $1");
        assert_eq!(number_placeholders(&mut s), 0);
        let text = s.to_string();
        assert!(text.contains("'?'"), "{text}");
        assert!(text.contains("$1"), "{text}");
    }
}
