//! PostgreSQL functions that clients call in their metadata queries (Grafana's PostgreSQL data
//! source above all): `current_setting(name)`, `quote_ident(text)`, `parse_ident(text)` and the
//! keyword functions `user` / `current_user` / `session_user`, `pg_get_expr` (always NULL), plus the rewrite of
//! `array_lower(a, d)` / `array_upper(a, d)` into DataFusion's `array_length`.
//!
//! `current_setting` reads the same settings `pg_settings` lists ([`setting`]); `search_path` is
//! `"$user", "default"`, so the default database's tables are found unqualified.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, ListBuilder, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart,
};

/// The settings `current_setting`, `SHOW` (through startup parameters) and `pg_settings` report.
pub(crate) const SETTINGS: &[(&str, &str)] = &[
    ("server_version", "16.6"),
    ("server_version_num", "160006"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("standard_conforming_strings", "on"),
    ("default_transaction_read_only", "on"),
    ("transaction_read_only", "on"),
    ("max_identifier_length", "63"),
    ("integer_datetimes", "on"),
    ("search_path", "\"$user\", \"default\""),
];

/// The value of setting `name` (case-insensitive), if Strata reports it.
pub fn setting(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
        .map(|(_, v)| *v)
}

/// The user name the keyword functions return (every session runs as the server's role).
const ROLE: &str = "strata";

/// PostgreSQL's reserved key words (`pg_get_keywords()` with category `R`): `quote_ident`
/// quotes these even when they are lower-case identifiers.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "system_user",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

/// `quote_ident(s)`: `s` unchanged when it is a plain lower-case identifier that is not a
/// reserved word, else in double quotes with inner quotes doubled.
pub(crate) fn quote_ident(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !RESERVED.contains(&s);
    if plain {
        s.to_owned()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// `parse_ident(s)`: the dot-separated parts of a qualified name, unquoted (quoted parts keep
/// their case, unquoted ones are folded to lower case), or an error naming the problem.
pub(crate) fn parse_ident(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = s.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(format!("string is not a valid identifier: \"{s}\"")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c.is_whitespace() {
                    break;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(format!("string is not a valid identifier: \"{s}\""));
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Ok(parts),
            Some('.') => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some(_) => return Err(format!("string is not a valid identifier: \"{s}\"")),
        }
    }
}

/// Registers `current_setting`, `quote_ident`, `parse_ident`, `user`, `current_user` and
/// `session_user` on `ctx`.
pub(crate) fn register(ctx: &SessionContext) {
    let text_in = vec![DataType::Utf8];
    ctx.register_udf(create_udf(
        "current_setting",
        text_in.clone(),
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|a: &[ColumnarValue]| {
            map_text(a, |name| match setting(name) {
                Some(v) => Ok(Some(v.to_owned())),
                None => Err(DataFusionError::Plan(format!(
                    "unrecognized configuration parameter \"{name}\""
                ))),
            })
        }),
    ));
    ctx.register_udf(create_udf(
        "quote_ident",
        text_in.clone(),
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|a: &[ColumnarValue]| map_text(a, |s| Ok(Some(quote_ident(s))))),
    ));
    ctx.register_udf(create_udf(
        "parse_ident",
        text_in,
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        Volatility::Immutable,
        Arc::new(parse_ident_udf),
    ));
    // `pg_get_expr(expr, relation [, pretty])`: Strata stores no expressions (no defaults, no
    // constraints), so there is never one to print.
    ctx.register_udf(ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "pg_get_expr",
        Signature::variadic_any(Volatility::Stable),
        DataType::Utf8,
        Arc::new(|a: &[ColumnarValue]| {
            let rows = a.iter().find_map(|v| match v {
                ColumnarValue::Array(a) => Some(a.len()),
                ColumnarValue::Scalar(_) => None,
            });
            Ok(match rows {
                Some(n) => ColumnarValue::Array(ScalarValue::Utf8(None).to_array_of_size(n)?),
                None => ColumnarValue::Scalar(ScalarValue::Utf8(None)),
            })
        }),
    )));
    for name in ["user", "current_user", "session_user"] {
        ctx.register_udf(create_udf(
            name,
            vec![],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(|_: &[ColumnarValue]| {
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(ROLE.into()))))
            }),
        ));
    }
}

/// Applies `f` to a text argument, row by row (NULL in, NULL out).
fn map_text(
    args: &[ColumnarValue],
    f: impl Fn(&str) -> Result<Option<String>>,
) -> Result<ColumnarValue> {
    let first = args
        .first()
        .ok_or_else(|| DataFusionError::Plan("expected a text argument".into()))?;
    match first {
        ColumnarValue::Scalar(s) => {
            let out = match text_scalar(s)? {
                Some(v) => f(&v)?,
                None => None,
            };
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(out)))
        }
        ColumnarValue::Array(a) => {
            let a = text_array(a)?;
            let out = a
                .iter()
                .map(|v| v.map(&f).transpose().map(Option::flatten))
                .collect::<Result<StringArray>>()?;
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
    }
}

fn text_scalar(s: &ScalarValue) -> Result<Option<String>> {
    match s {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            Ok(v.clone())
        }
        ScalarValue::Null => Ok(None),
        other => Err(DataFusionError::Plan(format!(
            "expected text, got {}",
            other.data_type()
        ))),
    }
}

fn text_array(a: &ArrayRef) -> Result<StringArray> {
    let cast = arrow::compute::cast(a, &DataType::Utf8)?;
    cast.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| DataFusionError::Plan("expected text".into()))
}

/// `parse_ident` over a scalar or an array of names.
fn parse_ident_udf(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let first = args
        .first()
        .ok_or_else(|| DataFusionError::Plan("parse_ident expects a text argument".into()))?;
    let (names, scalar) = match first {
        ColumnarValue::Scalar(s) => (StringArray::from(vec![text_scalar(s)?]), true),
        ColumnarValue::Array(a) => (text_array(a)?, false),
    };
    let mut out = ListBuilder::new(StringBuilder::new());
    for name in names.iter() {
        match name {
            None => out.append(false),
            Some(n) => {
                for part in parse_ident(n).map_err(DataFusionError::Plan)? {
                    out.values().append_value(part);
                }
                out.append(true);
            }
        }
    }
    let list: ArrayRef = Arc::new(out.finish());
    if scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &list, 0,
        )?))
    } else {
        Ok(ColumnarValue::Array(list))
    }
}

/// `array_lower(a, d)` → `CASE WHEN array_length(a, d) > 0 THEN 1 END` and `array_upper(a, d)`
/// → `array_length(a, d)` (arrays are 1-based in both systems); other expressions unchanged.
pub(crate) fn rewrite_array_bounds(expr: &mut Expr) {
    let Expr::Function(f) = expr else { return };
    let [ObjectNamePart::Identifier(name)] = f.name.0.as_slice() else {
        return;
    };
    let lower = name.value.eq_ignore_ascii_case("array_lower");
    if !lower && !name.value.eq_ignore_ascii_case("array_upper") {
        return;
    }
    let FunctionArguments::List(list) = &f.args else {
        return;
    };
    if list.args.len() != 2 {
        return;
    }
    let mut length = f.clone();
    length.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new("array_length"))]);
    let length = Expr::Function(length);
    *expr = if lower {
        Expr::Case {
            case_token: ast::helpers::attached_token::AttachedToken::empty(),
            end_token: ast::helpers::attached_token::AttachedToken::empty(),
            operand: None,
            conditions: vec![ast::CaseWhen {
                condition: Expr::BinaryOp {
                    left: Box::new(length),
                    op: ast::BinaryOperator::Gt,
                    right: Box::new(Expr::value(ast::Value::Number("0".into(), false))),
                },
                result: Expr::value(ast::Value::Number("1".into(), false)),
            }],
            else_result: None,
        }
    } else {
        length
    };
}

/// Whether `arg` is a literal (what DataFusion's table functions accept as arguments).
pub(crate) fn is_literal(arg: &FunctionArg) -> bool {
    let expr = match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
        | FunctionArg::Named {
            arg: FunctionArgExpr::Expr(e),
            ..
        }
        | FunctionArg::ExprNamed {
            arg: FunctionArgExpr::Expr(e),
            ..
        } => e,
        _ => return false,
    };
    match expr {
        Expr::Value(_) => true,
        Expr::UnaryOp { expr, .. } => matches!(expr.as_ref(), Expr::Value(_)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_ident_follows_postgres() {
        assert_eq!(quote_ident("env"), "env");
        assert_eq!(quote_ident("default"), "\"default\"");
        assert_eq!(quote_ident("Fleet"), "\"Fleet\"");
        assert_eq!(quote_ident("a-b"), "\"a-b\"");
        assert_eq!(quote_ident("x\"y"), "\"x\"\"y\"");
        assert_eq!(quote_ident("_t1$"), "_t1$");
        assert_eq!(quote_ident(""), "\"\"");
    }

    #[test]
    fn parse_ident_splits_and_unquotes() {
        assert_eq!(parse_ident("public.games").unwrap(), ["public", "games"]);
        assert_eq!(parse_ident("\"default\".env").unwrap(), ["default", "env"]);
        assert_eq!(parse_ident("Env").unwrap(), ["env"]);
        assert_eq!(parse_ident("\"A\"\"b\" . c").unwrap(), ["A\"b", "c"]);
        for bad in ["", "a.", ".a", "\"open", "a b"] {
            assert!(parse_ident(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn settings_are_found_case_insensitively() {
        assert_eq!(setting("server_version_num"), Some("160006"));
        assert_eq!(setting("timezone"), Some("UTC"));
        assert_eq!(setting("search_path"), Some("\"$user\", \"default\""));
        assert_eq!(setting("no_such_setting"), None);
    }
}
