//! Filter pushdown: which `WHERE` conjuncts the storage engine can answer exactly, and the scan
//! bounds they imply — a time range from comparisons on `time`, a device set from `device = 'x'`,
//! `device IN (...)` or an `OR` of those, and tag equalities.
//!
//! Every recognized conjunct is applied in full by the engine (the time range is `[start, end)` in
//! nanoseconds, devices and tags select series through the tag index), so they are reported as
//! `Exact` and DataFusion does not re-check them; anything else is `Unsupported` and stays in a
//! filter above the scan.

use std::collections::BTreeSet;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::scalar::ScalarValue;

use crate::layout::{ColumnKind, TableLayout};

/// Scan bounds implied by the pushed filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushdown {
    /// Inclusive lower time bound, ns.
    pub start: i64,
    /// Exclusive upper time bound, ns.
    pub end: i64,
    /// Only these devices, when set.
    pub devices: Option<BTreeSet<String>>,
    /// Tag equalities every row must satisfy (key, value); a key appears at most once.
    pub tags: Vec<(String, String)>,
    /// True when the filters contradict each other (the scan returns nothing).
    pub empty: bool,
}

impl Default for Pushdown {
    fn default() -> Self {
        Pushdown {
            start: i64::MIN,
            end: i64::MAX,
            devices: None,
            tags: Vec::new(),
            empty: false,
        }
    }
}

/// One recognized conjunct.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Constraint {
    /// `start <= time < end`.
    Time { start: i64, end: i64 },
    /// The device is one of these.
    Devices(BTreeSet<String>),
    /// Tag `key` equals `value`.
    Tag(String, String),
    /// Never true (comparison with NULL).
    Never,
}

impl Pushdown {
    /// Combines all recognizable conjuncts of `filters` (others are ignored: DataFusion applies them).
    pub fn from_filters(layout: &TableLayout, filters: &[Expr]) -> Pushdown {
        let mut out = Pushdown::default();
        for f in filters.iter().flat_map(conjuncts) {
            if let Some(c) = constraint(layout, f) {
                out.apply(c);
            }
        }
        out.empty |= out.start >= out.end;
        out
    }

    fn apply(&mut self, c: Constraint) {
        match c {
            Constraint::Time { start, end } => {
                self.start = self.start.max(start);
                self.end = self.end.min(end);
            }
            Constraint::Devices(set) => {
                self.devices = Some(match self.devices.take() {
                    Some(old) => old.intersection(&set).cloned().collect(),
                    None => set,
                });
                self.empty |= self.devices.as_ref().is_some_and(BTreeSet::is_empty);
            }
            Constraint::Tag(key, value) => match self.tags.iter().find(|(k, _)| *k == key) {
                Some((_, v)) => self.empty |= *v != value,
                None => self.tags.push((key, value)),
            },
            Constraint::Never => self.empty = true,
        }
    }
}

/// How DataFusion should treat each filter.
pub fn classify(layout: &TableLayout, filters: &[&Expr]) -> Vec<TableProviderFilterPushDown> {
    filters
        .iter()
        .map(|f| {
            if conjuncts(f).all(|c| constraint(layout, c).is_some()) {
                TableProviderFilterPushDown::Exact
            } else {
                TableProviderFilterPushDown::Unsupported
            }
        })
        .collect()
}

/// Like [`classify`] for tables without a time range (the last-value table): only device and
/// tag conjuncts are exact, anything touching `time` stays above the scan.
pub fn classify_series(
    layout: &TableLayout,
    filters: &[&Expr],
) -> Vec<TableProviderFilterPushDown> {
    filters
        .iter()
        .map(|f| {
            let series_only = conjuncts(f).all(|c| {
                matches!(
                    constraint(layout, c),
                    Some(Constraint::Devices(_) | Constraint::Tag(..) | Constraint::Never)
                )
            });
            match series_only {
                true => TableProviderFilterPushDown::Exact,
                false => TableProviderFilterPushDown::Unsupported,
            }
        })
        .collect()
}

/// The `AND`-separated parts of an expression.
fn conjuncts(e: &Expr) -> Box<dyn Iterator<Item = &Expr> + '_> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => Box::new(conjuncts(left).chain(conjuncts(right))),
        other => Box::new(std::iter::once(other)),
    }
}

fn constraint(layout: &TableLayout, e: &Expr) -> Option<Constraint> {
    match e {
        Expr::BinaryExpr(b) => binary_constraint(layout, b),
        Expr::Between(b) => between_constraint(layout, b),
        Expr::InList(list) if !list.negated => {
            if !matches!(column_kind(layout, &list.expr)?, ColumnKind::Device) {
                return None;
            }
            let mut set = BTreeSet::new();
            for item in &list.list {
                if let Some(s) = string_literal(item)? {
                    set.insert(s);
                }
            }
            Some(Constraint::Devices(set))
        }
        _ => None,
    }
}

fn binary_constraint(layout: &TableLayout, b: &BinaryExpr) -> Option<Constraint> {
    if b.op == Operator::Or {
        return device_or(layout, b);
    }
    let (kind, op, literal) = match column_kind(layout, &b.left) {
        Some(kind) => (kind, b.op, &*b.right),
        None => (column_kind(layout, &b.right)?, b.op.swap()?, &*b.left),
    };
    match kind {
        ColumnKind::Time => {
            let Some(t) = time_literal(literal)? else {
                return Some(Constraint::Never);
            };
            time_constraint(op, t)
        }
        ColumnKind::Device if op == Operator::Eq => Some(match string_literal(literal)? {
            Some(s) => Constraint::Devices(BTreeSet::from([s])),
            None => Constraint::Never,
        }),
        ColumnKind::Tag(key) if op == Operator::Eq => Some(match string_literal(literal)? {
            Some(s) => Constraint::Tag(key.clone(), s),
            None => Constraint::Never,
        }),
        _ => None,
    }
}

/// `device = 'a' OR device IN ('b', 'c') OR ...` as one device set.
fn device_or(layout: &TableLayout, b: &BinaryExpr) -> Option<Constraint> {
    let mut set = BTreeSet::new();
    for side in [&*b.left, &*b.right] {
        match constraint(layout, side)? {
            Constraint::Devices(s) => set.extend(s),
            Constraint::Never => {}
            _ => return None,
        }
    }
    Some(Constraint::Devices(set))
}

fn between_constraint(layout: &TableLayout, b: &Between) -> Option<Constraint> {
    if b.negated || !matches!(column_kind(layout, &b.expr)?, ColumnKind::Time) {
        return None;
    }
    let (Some(low), Some(high)) = (time_literal(&b.low)?, time_literal(&b.high)?) else {
        return Some(Constraint::Never);
    };
    Some(Constraint::Time {
        start: low,
        end: high.checked_add(1)?,
    })
}

fn time_constraint(op: Operator, t: i64) -> Option<Constraint> {
    let (start, end) = match op {
        Operator::Eq => (t, t.checked_add(1)?),
        Operator::Gt => (t.checked_add(1)?, i64::MAX),
        Operator::GtEq => (t, i64::MAX),
        Operator::Lt => (i64::MIN, t),
        Operator::LtEq => (i64::MIN, t.checked_add(1)?),
        _ => return None,
    };
    Some(Constraint::Time { start, end })
}

/// The column an expression reads, seeing through casts that keep the time value unchanged
/// (nanosecond timestamps with any timezone).
fn column_kind<'a>(layout: &'a TableLayout, e: &Expr) -> Option<&'a ColumnKind> {
    match e {
        Expr::Column(c) => layout.kind_of(&c.name),
        Expr::Cast(cast) if is_ns_timestamp(cast.field.data_type()) => {
            time_only(layout, &cast.expr)
        }
        Expr::TryCast(cast) if is_ns_timestamp(cast.field.data_type()) => {
            time_only(layout, &cast.expr)
        }
        _ => None,
    }
}

fn time_only<'a>(layout: &'a TableLayout, e: &Expr) -> Option<&'a ColumnKind> {
    column_kind(layout, e).filter(|k| matches!(k, ColumnKind::Time))
}

fn is_ns_timestamp(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(TimeUnit::Nanosecond, _))
}

/// `Some(Some(ns))` for a timestamp literal, `Some(None)` for a NULL one, `None` otherwise.
fn time_literal(e: &Expr) -> Option<Option<i64>> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    match v {
        ScalarValue::TimestampNanosecond(t, _) => Some(*t),
        ScalarValue::TimestampMicrosecond(t, _) => scale(*t, 1_000),
        ScalarValue::TimestampMillisecond(t, _) => scale(*t, 1_000_000),
        ScalarValue::TimestampSecond(t, _) => scale(*t, 1_000_000_000),
        ScalarValue::Null => Some(None),
        _ => None,
    }
}

fn scale(t: Option<i64>, factor: i64) -> Option<Option<i64>> {
    match t {
        Some(t) => t.checked_mul(factor).map(Some),
        None => Some(None),
    }
}

/// `Some(Some(s))` for a string literal, `Some(None)` for a NULL one, `None` otherwise.
fn string_literal(e: &Expr) -> Option<Option<String>> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    match v {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
            Some(s.clone())
        }
        ScalarValue::Null => Some(None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};
    use strata_storage::FieldType;

    fn layout() -> TableLayout {
        TableLayout::new(
            "default",
            "readings",
            &["fleet".into()],
            &[("speed".into(), FieldType::Float)],
        )
    }

    fn ts(ns: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(ns),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn time_comparisons_become_a_half_open_range() {
        let l = layout();
        let p = Pushdown::from_filters(&l, &[col("time").gt_eq(ts(10)), col("time").lt(ts(20))]);
        assert_eq!((p.start, p.end, p.empty), (10, 20, false));
        let p =
            Pushdown::from_filters(&l, &[ts(10).lt(col("time")).and(col("time").lt_eq(ts(20)))]);
        assert_eq!((p.start, p.end), (11, 21));
        let p = Pushdown::from_filters(&l, &[col("time").between(ts(5), ts(7))]);
        assert_eq!((p.start, p.end), (5, 8));
        let p = Pushdown::from_filters(&l, &[col("time").eq(ts(9))]);
        assert_eq!((p.start, p.end), (9, 10));
        let p = Pushdown::from_filters(&l, &[col("time").gt(ts(9)), col("time").lt(ts(5))]);
        assert!(p.empty);
    }

    #[test]
    fn overflowing_bounds_are_not_pushed() {
        let l = layout();
        let f = col("time").gt(ts(i64::MAX));
        assert_eq!(
            classify(&l, &[&f]),
            vec![TableProviderFilterPushDown::Unsupported]
        );
        let ms = lit(ScalarValue::TimestampMillisecond(Some(i64::MAX), None));
        let f = col("time").gt(ms);
        assert_eq!(
            classify(&l, &[&f]),
            vec![TableProviderFilterPushDown::Unsupported]
        );
    }

    #[test]
    fn devices_and_tags_are_collected() {
        let l = layout();
        let filters = [
            col("device").in_list(vec![lit("a"), lit("b"), lit("c")], false),
            col("device").eq(lit("b")).or(col("device").eq(lit("c"))),
            col("fleet").eq(lit("north")),
        ];
        let p = Pushdown::from_filters(&l, &filters);
        assert_eq!(p.devices, Some(BTreeSet::from(["b".into(), "c".into()])));
        assert_eq!(p.tags, vec![("fleet".to_string(), "north".to_string())]);
        let p = Pushdown::from_filters(&l, &[col("fleet").eq(lit("a")), lit("b").eq(col("fleet"))]);
        assert!(p.empty);
        let p = Pushdown::from_filters(
            &l,
            &[col("device").eq(lit("a")), col("device").eq(lit("b"))],
        );
        assert!(p.empty);
    }

    fn holds(op: Operator, t: i64, v: i64) -> bool {
        match op {
            Operator::Eq => t == v,
            Operator::Gt => t > v,
            Operator::GtEq => t >= v,
            Operator::Lt => t < v,
            Operator::LtEq => t <= v,
            _ => unreachable!("only comparisons are generated"),
        }
    }

    proptest::proptest! {
        /// For any conjunction of time comparisons the pushed range contains exactly the
        /// timestamps that satisfy it (or the filter is not pushed at all).
        #[test]
        fn pushed_time_range_is_exact(
            preds in proptest::collection::vec((0usize..5, -50i64..50, proptest::bool::ANY), 1..4),
            probes in proptest::collection::vec(-60i64..60, 1..40),
        ) {
            let ops = [Operator::Eq, Operator::Gt, Operator::GtEq, Operator::Lt, Operator::LtEq];
            let l = layout();
            let exprs: Vec<Expr> = preds
                .iter()
                .map(|(op, v, flip)| {
                    let e = BinaryExpr::new(Box::new(col("time")), ops[*op], Box::new(ts(*v)));
                    if *flip {
                        let swapped = ops[*op].swap().unwrap();
                        Expr::BinaryExpr(BinaryExpr::new(Box::new(ts(*v)), swapped, Box::new(col("time"))))
                    } else {
                        Expr::BinaryExpr(e)
                    }
                })
                .collect();
            let refs: Vec<&Expr> = exprs.iter().collect();
            proptest::prop_assert!(classify(&l, &refs).iter().all(|c| *c == TableProviderFilterPushDown::Exact));
            let p = Pushdown::from_filters(&l, &exprs);
            for t in probes {
                let want = preds.iter().all(|(op, v, _)| holds(ops[*op], t, *v));
                let got = !p.empty && t >= p.start && t < p.end;
                proptest::prop_assert_eq!(got, want, "t={} range=[{}, {}) empty={}", t, p.start, p.end, p.empty);
            }
        }
    }

    #[test]
    fn other_predicates_are_unsupported() {
        let l = layout();
        let exprs = [
            col("speed").gt(lit(1.0)),
            col("device").not_eq(lit("a")),
            col("device").in_list(vec![lit("a")], true),
            col("fleet").in_list(vec![lit("a")], false),
            col("device").eq(lit("a")).or(col("speed").gt(lit(1.0))),
            col("time").gt(lit(5i64)),
            col("device").eq(lit("a")).and(col("speed").gt(lit(1.0))),
        ];
        let refs: Vec<&Expr> = exprs.iter().collect();
        assert!(
            classify(&l, &refs)
                .iter()
                .all(|c| *c == TableProviderFilterPushDown::Unsupported)
        );
        let ok = col("device").eq(lit("a")).and(col("time").lt(ts(3)));
        assert_eq!(
            classify(&l, &[&ok]),
            vec![TableProviderFilterPushDown::Exact]
        );
    }
}
