//! Validation of a device's telemetry against the schema of its device model, shared by every
//! write path (the pipeline calls [`apply_by_device`] on each decoded batch).
//!
//! A [`Schema`] lists the model's fields (type, optional `min`/`max`, `required`) and a
//! [`Policy`]. Every row of every stream of the batch is checked: a field the model does not
//! declare, a value of the wrong type, a number outside `[min, max]` or a missing required field
//! is a violation. With [`Policy::Reject`] the first violation refuses the whole message; with
//! [`Policy::Flag`] the message is stored and each offending row carries the reason in the string
//! field [`FLAG_FIELD`] (`_invalid`), so `WHERE _invalid IS NOT NULL` finds them.
//!
//! Where schemas come from (the registry, with a per-device cache) is the caller's business: the
//! write pipeline (`crate::pipeline`) asks a [`SchemaSource`] for the model of each device whose
//! rows a batch holds ([`apply_by_device`]), on every write path.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use strata_storage::{Column, ColumnData, FieldType, TableWrite, WriteBatch};

/// The string field that marks a flagged row with the reason it failed validation.
pub const FLAG_FIELD: &str = "_invalid";

/// The value type a model declares for a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Any number.
    Float,
    /// A whole number in the `i64` range (JSON `21` and `21.0` qualify).
    Integer,
    /// A whole number ≥ 0.
    Unsigned,
    /// `true` / `false`.
    Boolean,
    /// Text.
    String,
}

impl fmt::Display for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldKind::Float => "float",
            FieldKind::Integer => "integer",
            FieldKind::Unsigned => "unsigned",
            FieldKind::Boolean => "boolean",
            FieldKind::String => "string",
        })
    }
}

/// What happens to a message that violates its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Refuse the whole message (HTTP 400; MQTT: no PUBACK, connection closed).
    #[default]
    Reject,
    /// Store it, marking each offending row with [`FLAG_FIELD`].
    Flag,
}

/// One declared field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRule {
    /// Field name.
    pub name: String,
    /// Value type.
    pub kind: FieldKind,
    /// Lowest allowed value (numeric kinds).
    pub min: Option<f64>,
    /// Highest allowed value (numeric kinds).
    pub max: Option<f64>,
    /// Every row must carry a value.
    pub required: bool,
}

/// The telemetry schema of one device model.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    model: String,
    policy: Policy,
    rules: Vec<FieldRule>,
    by_name: HashMap<String, usize>,
}

impl Schema {
    /// The schema of model `model` with `rules` (later duplicates of a name are ignored).
    pub fn new(model: impl Into<String>, policy: Policy, rules: Vec<FieldRule>) -> Self {
        let mut by_name = HashMap::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            by_name.entry(r.name.clone()).or_insert(i);
        }
        Schema {
            model: model.into(),
            policy,
            rules,
            by_name,
        }
    }

    /// The model id.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    fn rule(&self, name: &str) -> Option<&FieldRule> {
        self.by_name.get(name).map(|i| &self.rules[*i])
    }
}

/// Where a protocol endpoint finds the schema of a device (`None`: no model, no validation).
/// Called once per message, so implementations cache.
pub trait SchemaSource: fmt::Debug + Send + Sync {
    /// The schema `device` must follow, if any.
    fn schema(&self, device: &str) -> Option<Arc<Schema>>;
}

/// The first violation of a rejected message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("validation against model '{model}' failed: stream '{stream}', record {row}: {reason}")]
pub struct Violation {
    /// The device model.
    pub model: String,
    /// The stream of the offending row.
    pub stream: String,
    /// 0-based row (record) index within that stream's rows of the message.
    pub row: usize,
    /// The field at fault.
    pub field: String,
    /// What is wrong, naming the field.
    pub reason: String,
}

/// What [`apply`] did to an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Rows marked with [`FLAG_FIELD`] (always 0 under [`Policy::Reject`]).
    pub flagged_rows: usize,
}

/// Checks `batch` against `schema`: `Err` with the first violation under [`Policy::Reject`];
/// under [`Policy::Flag`] marks offending rows and reports how many. Every row is checked,
/// whatever its device (the caller has confined the batch to one device).
pub fn apply(schema: &Schema, batch: &mut WriteBatch) -> Result<Outcome, Violation> {
    let mut outcome = Outcome::default();
    for table in &mut batch.tables {
        let rows = vec![true; table.len()];
        outcome.flagged_rows += check_rows(schema, table, &rows)?;
    }
    Ok(outcome)
}

/// Checks every row of `batch` against the model of the row's device, as `source` names it
/// (rows of devices without a model pass untouched): the check of a batch that may hold many
/// devices' rows (an API token's line protocol, an Arrow batch).
pub fn apply_by_device(
    source: &dyn SchemaSource,
    batch: &mut WriteBatch,
) -> Result<Outcome, Violation> {
    let mut outcome = Outcome::default();
    for table in &mut batch.tables {
        let mut devices: Vec<&str> = table.series.iter().map(|k| k.device.as_str()).collect();
        devices.sort_unstable();
        devices.dedup();
        let schemas: Vec<(String, Arc<Schema>)> = devices
            .into_iter()
            .filter_map(|d| source.schema(d).map(|s| (d.to_owned(), s)))
            .collect();
        for (device, schema) in schemas {
            let rows: Vec<bool> = table
                .row_series
                .iter()
                .map(|s| {
                    table
                        .series
                        .get(*s as usize)
                        .is_some_and(|k| k.device == device)
                })
                .collect();
            outcome.flagged_rows += check_rows(&schema, table, &rows)?;
        }
    }
    Ok(outcome)
}

/// Checks the rows of `table` selected by `rows`: the first violation under
/// [`Policy::Reject`], else the number of rows marked.
fn check_rows(schema: &Schema, table: &mut TableWrite, rows: &[bool]) -> Result<usize, Violation> {
    let problems = check_table(schema, table, rows);
    let Some(first) = problems.iter().position(Option::is_some) else {
        return Ok(0);
    };
    if schema.policy == Policy::Reject {
        let (field, reason) = problems[first].clone().unwrap_or_default();
        return Err(Violation {
            model: schema.model.clone(),
            stream: table.stream.clone(),
            row: first,
            field,
            reason,
        });
    }
    mark(table, &problems, rows);
    Ok(problems.iter().filter(|p| p.is_some()).count())
}

/// Per row, the first problem found: (field, reason).
type Problems = Vec<Option<(String, String)>>;

fn check_table(schema: &Schema, table: &TableWrite, rows: &[bool]) -> Problems {
    let mut problems: Problems = vec![None; table.len()];
    let selected = |row: usize| rows.get(row).copied().unwrap_or(false);
    for col in &table.columns {
        for (row, slot) in problems.iter_mut().enumerate() {
            if slot.is_none()
                && selected(row)
                && col.valid.get(row).copied().unwrap_or(false)
                && let Some(reason) = check_value(schema, col, row)
            {
                *slot = Some((col.name.clone(), reason));
            }
        }
    }
    for rule in schema.rules.iter().filter(|r| r.required) {
        let col = table.columns.iter().find(|c| c.name == rule.name);
        for (row, slot) in problems.iter_mut().enumerate() {
            let present = col.is_some_and(|c| c.valid.get(row).copied().unwrap_or(false));
            if slot.is_none() && selected(row) && !present {
                *slot = Some((
                    rule.name.clone(),
                    format!("required field '{}' is missing", rule.name),
                ));
            }
        }
    }
    problems
}

/// The problem with row `row` of `col`, if any.
fn check_value(schema: &Schema, col: &Column, row: usize) -> Option<String> {
    let name = &col.name;
    if name == FLAG_FIELD {
        return Some(format!(
            "field '{FLAG_FIELD}' is reserved for validation flags"
        ));
    }
    let Some(rule) = schema.rule(name) else {
        return Some(format!(
            "unknown field '{name}' (model '{}' does not declare it)",
            schema.model
        ));
    };
    let v = Scalar::of(&col.data, row);
    if !v.fits(rule.kind) {
        return Some(format!(
            "field '{name}' must be {}, got {}",
            rule.kind,
            v.describe()
        ));
    }
    let x = v.number()?;
    if let Some(min) = rule.min.filter(|m| x < *m) {
        return Some(format!("field '{name}': {x} is below the minimum {min}"));
    }
    if let Some(max) = rule.max.filter(|m| x > *m) {
        return Some(format!("field '{name}': {x} is above the maximum {max}"));
    }
    None
}

/// One value, borrowed.
enum Scalar<'a> {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(&'a str),
}

impl<'a> Scalar<'a> {
    fn of(data: &'a ColumnData, i: usize) -> Self {
        match data {
            ColumnData::Float(v) => Scalar::Float(v[i]),
            ColumnData::Integer(v) => Scalar::Integer(v[i]),
            ColumnData::Unsigned(v) => Scalar::Unsigned(v[i]),
            ColumnData::Boolean(v) => Scalar::Boolean(v[i]),
            ColumnData::String(v) => Scalar::String(v.get(i)),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Scalar::Float(x) => Some(*x),
            Scalar::Integer(x) => Some(*x as f64),
            Scalar::Unsigned(x) => Some(*x as f64),
            Scalar::Boolean(_) | Scalar::String(_) => None,
        }
    }

    fn fits(&self, kind: FieldKind) -> bool {
        let whole = |x: f64| x.is_finite() && x.fract() == 0.0;
        match (kind, self) {
            (FieldKind::Boolean, Scalar::Boolean(_)) | (FieldKind::String, Scalar::String(_)) => {
                true
            }
            (FieldKind::Float, s) => s.number().is_some(),
            (FieldKind::Integer, Scalar::Integer(_)) => true,
            (FieldKind::Integer, Scalar::Unsigned(x)) => i64::try_from(*x).is_ok(),
            (FieldKind::Integer, Scalar::Float(x)) => whole(*x) && x.abs() < 9.3e18,
            (FieldKind::Unsigned, Scalar::Unsigned(_)) => true,
            (FieldKind::Unsigned, Scalar::Integer(x)) => *x >= 0,
            (FieldKind::Unsigned, Scalar::Float(x)) => whole(*x) && *x >= 0.0 && *x < 1.85e19,
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Scalar::Float(x) => format!("the number {x}"),
            Scalar::Integer(x) => format!("the integer {x}"),
            Scalar::Unsigned(x) => format!("the integer {x}"),
            Scalar::Boolean(b) => format!("the boolean {b}"),
            Scalar::String(s) if s.len() > 32 => format!("a string of {} bytes", s.len()),
            Scalar::String(s) => format!("the string {s:?}"),
        }
    }
}

/// Sets the [`FLAG_FIELD`] column of `table` for the rows selected by `rows` to their problems
/// (null when they have none); rows not selected keep what they had.
fn mark(table: &mut TableWrite, problems: &Problems, rows: &[bool]) {
    let old = table
        .columns
        .iter()
        .position(|c| c.name == FLAG_FIELD)
        .map(|i| table.columns.remove(i));
    let mut col = Column::new(FLAG_FIELD, FieldType::String);
    for (row, p) in problems.iter().enumerate() {
        let value = match p {
            Some((_, reason)) => Some(strata_storage::Value::String(reason.clone())),
            None if rows.get(row).copied().unwrap_or(false) => None,
            None => old.as_ref().and_then(|c| c.get(row)),
        };
        match value {
            Some(v @ strata_storage::Value::String(_)) => {
                col.data.push_value(&v);
                col.valid.push(true);
            }
            _ => col.push_null(),
        }
    }
    table.columns.push(col);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{self, JsonOptions};

    fn schema(policy: Policy) -> Schema {
        let rule = |name: &str, kind, min, max, required| FieldRule {
            name: name.into(),
            kind,
            min,
            max,
            required,
        };
        Schema::new(
            "thermo",
            policy,
            vec![
                rule("temp", FieldKind::Float, Some(-40.0), Some(85.0), true),
                rule("count", FieldKind::Integer, Some(0.0), None, false),
                rule("door", FieldKind::String, None, None, false),
                rule("ok", FieldKind::Boolean, None, None, false),
            ],
        )
    }

    fn batch(json: &str) -> WriteBatch {
        json::parse(
            json.as_bytes(),
            "db",
            "env",
            Some("d1"),
            &JsonOptions::default(),
        )
        .unwrap()
    }

    fn reject(json: &str) -> Violation {
        apply(&schema(Policy::Reject), &mut batch(json)).unwrap_err()
    }

    #[test]
    fn valid_messages_pass_untouched() {
        let mut b =
            batch(r#"[{"temp": 21.5, "count": 3, "door": "open", "ok": true}, {"temp": -40}]"#);
        let before = b.clone();
        assert_eq!(
            apply(&schema(Policy::Reject), &mut b),
            Ok(Outcome::default())
        );
        assert_eq!(b, before);
        assert_eq!(
            apply(&schema(Policy::Flag), &mut b).unwrap().flagged_rows,
            0
        );
        assert_eq!(b, before);
    }

    #[test]
    fn each_violation_names_field_and_reason() {
        let v = reject(r#"[{"temp": 20}, {"temp": 90.5}]"#);
        assert_eq!((v.row, v.field.as_str()), (1, "temp"));
        assert!(v.reason.contains("90.5 is above the maximum 85"), "{v}");
        assert!(v.to_string().contains("model 'thermo'"), "{v}");
        let v = reject(r#"{"temp": 20, "humidity": 3}"#);
        assert!(v.reason.contains("unknown field 'humidity'"), "{v}");
        let v = reject(r#"{"temp": "warm"}"#);
        assert!(
            v.reason
                .contains("'temp' must be float, got the string \"warm\""),
            "{v}"
        );
        let v = reject(r#"{"temp": 20, "count": 2.5}"#);
        assert!(v.reason.contains("'count' must be integer"), "{v}");
        let v = reject(r#"{"temp": 20, "count": -1}"#);
        assert!(v.reason.contains("-1 is below the minimum 0"), "{v}");
        let v = reject(r#"{"count": 1}"#);
        assert!(v.reason.contains("required field 'temp' is missing"), "{v}");
        let v = reject(r#"{"temp": 1, "_invalid": "no"}"#);
        assert!(v.reason.contains("reserved"), "{v}");
        let v = reject(r#"{"temp": 1, "ok": 1}"#);
        assert!(v.reason.contains("must be boolean"), "{v}");
    }

    #[test]
    fn flag_marks_only_offending_rows() {
        let mut b = batch(r#"[{"temp": 20}, {"temp": 99}, {"temp": 1, "_invalid": "forged"}]"#);
        let out = apply(&schema(Policy::Flag), &mut b).unwrap();
        assert_eq!(out.flagged_rows, 2);
        let t = &b.tables[0];
        let flags: Vec<_> = t.columns.iter().filter(|c| c.name == FLAG_FIELD).collect();
        assert_eq!(flags.len(), 1);
        let flag = flags[0];
        assert_eq!(flag.valid, vec![false, true, true]);
        assert!(
            matches!(flag.get(1), Some(strata_storage::Value::String(s)) if s.contains("above the maximum"))
        );
        assert!(
            matches!(flag.get(2), Some(strata_storage::Value::String(s)) if s.contains("reserved"))
        );
        assert_eq!(flag.data.len(), 3);
    }

    #[test]
    fn integer_kinds_accept_whole_numbers_of_any_column_type() {
        let s = schema(Policy::Reject);
        let lp = |body: &[u8]| {
            let opts = crate::line_protocol::ParseOptions::default();
            crate::line_protocol::parse(body, "db", &opts).unwrap()
        };
        for ok in [
            &b"env temp=1,count=5i"[..],
            b"env temp=2i,count=7u",
            b"env temp=3u,count=7",
        ] {
            assert_eq!(apply(&s, &mut lp(ok)), Ok(Outcome::default()));
        }
        let v = apply(&s, &mut lp(b"env temp=1,count=5.5")).unwrap_err();
        assert_eq!(v.field, "count");
        let v = apply(&s, &mut lp(b"env temp=1,count=-2i")).unwrap_err();
        assert!(v.reason.contains("below the minimum"), "{v}");
    }
}
