//! Query rules: run the rule's SQL, turn each result row into an alert instance keyed by its
//! string columns (numbers, booleans and times are its values), step every instance's state
//! machine, and commit the alert changes with the notifications they cause in one transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_query::arrow::array::{Array, Float64Array, RecordBatch};
use strata_query::arrow::compute::cast;
use strata_query::arrow::datatypes::DataType;
use strata_query::arrow::util::display::array_value_to_string;

use crate::alert::{AlertKey, observe_active, observe_inactive};
use crate::error::{Result, RulesError};
use crate::outbox::OutboxEntry;
use crate::spec::{RuleSpec, Timing};
use crate::store::Change;
use crate::{Rules, blocking};

/// Values of one instance.
pub type Values = serde_json::Map<String, serde_json::Value>;

/// Runs one evaluation of a query rule at `now`; returns (result rows, transitions queued).
pub(crate) async fn run_query_rule(
    rules: &Arc<Rules>,
    spec: &RuleSpec,
    timing: Timing,
    now: i64,
) -> Result<(u64, u64)> {
    let sql = spec.sql.as_deref().unwrap_or_default();
    let result = rules
        .query
        .query(sql)
        .await
        .map_err(|e| RulesError::Invalid(format!("sql: {e}")))?;
    let rows = result.num_rows() as u64;
    let instances = instances(&result.batches)?;
    let store = rules.store.clone();
    let spec = spec.clone();
    let queued = blocking(move || {
        let (changes, entries, transitions) = step_all(
            &spec,
            store.open_alerts_of(&spec.name)?,
            instances,
            now,
            timing,
        );
        store.apply(&spec.name, &changes, entries)?;
        Ok(transitions)
    })
    .await?;
    Ok((rows, queued))
}

/// One evaluation of several query rules that share a scan ([`crate::query_share`]) at `now`:
/// one query, each rule's answer stepped as [`run_query_rule`] would, all changes committed in
/// one transaction. Returns each rule's (result rows, transitions) or error; `Err` when the
/// shared query itself failed (the caller then evaluates each rule alone).
pub(crate) async fn run_shared(
    rules: &Arc<Rules>,
    group: &[(RuleSpec, Timing)],
    now: i64,
) -> Result<Vec<Result<(u64, u64)>>> {
    let sqls: Vec<&str> = group
        .iter()
        .map(|(s, _)| s.sql.as_deref().unwrap_or_default())
        .collect();
    let sql = crate::query_share::combined_sql(&sqls)
        .ok_or_else(|| RulesError::Invalid("rules do not share a query".into()))?;
    let result = rules
        .query
        .query(&sql)
        .await
        .map_err(|e| RulesError::Invalid(format!("shared sql: {e}")))?;
    let answers = crate::query_share::answers(&result.batches, group.len())?;
    let mut rows = Vec::with_capacity(group.len());
    let mut found = Vec::with_capacity(group.len());
    for answer in &answers {
        rows.push(answer.iter().map(|b| b.num_rows() as u64).sum::<u64>());
        found.push(instances(answer));
    }
    let store = rules.store.clone();
    let group = group.to_vec();
    blocking(move || {
        let mut items = Vec::with_capacity(group.len());
        let mut out = Vec::with_capacity(group.len());
        for (((spec, timing), found), rows) in group.into_iter().zip(found).zip(rows) {
            match found.and_then(|active| Ok((store.open_alerts_of(&spec.name)?, active))) {
                Ok((stored, active)) => {
                    let (changes, entries, n) = step_all(&spec, stored, active, now, timing);
                    items.push((spec.name, changes, entries));
                    out.push(Ok((rows, n)));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        match store.apply_many(items) {
            Ok(()) => Ok(out),
            Err(e) => Ok(out
                .into_iter()
                .map(|o| o.and(Err(RulesError::Store(format!("commit: {e}")))))
                .collect()),
        }
    })
    .await
}

/// Steps every instance: those in `active` held at `now`, the other stored ones did not.
/// Returns the changes, the outbox entries and the number of transitions notified.
pub fn step_all(
    spec: &RuleSpec,
    stored: Vec<crate::alert::Alert>,
    active: BTreeMap<AlertKey, Values>,
    now: i64,
    timing: Timing,
) -> (Vec<Change>, Vec<OutboxEntry>, u64) {
    let mut previous: BTreeMap<AlertKey, crate::alert::Alert> =
        stored.into_iter().map(|a| (a.key.clone(), a)).collect();
    let mut changes = Vec::new();
    let mut entries = Vec::new();
    let mut transitions = 0;
    for (key, values) in active {
        let prev = previous.remove(&key);
        let (alert, note) = observe_active(prev.as_ref(), &spec.name, &key, values, now, timing);
        if let Some(n) = note {
            entries.extend(OutboxEntry::for_transition(spec, &alert, n));
            transitions += 1;
        }
        changes.push(Change::Put(alert));
    }
    for (key, prev) in previous {
        let (next, note) = observe_inactive(&prev, now, timing);
        match next {
            Some(a) if a == prev => {}
            Some(a) => {
                if let Some(n) = note {
                    entries.extend(OutboxEntry::for_transition(spec, &a, n));
                    transitions += 1;
                }
                changes.push(Change::Put(a));
            }
            None => changes.push(Change::Delete(key)),
        }
    }
    (changes, entries, transitions)
}

/// Whether a column's values form the key (strings) rather than the values.
fn is_key_type(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_key_type(v),
        _ => false,
    }
}

/// One instance per result row (a later row with the same key replaces an earlier one).
pub fn instances(batches: &[RecordBatch]) -> Result<BTreeMap<AlertKey, Values>> {
    let mut out = BTreeMap::new();
    for batch in batches {
        let schema = batch.schema();
        for row in 0..batch.num_rows() {
            let mut key = AlertKey::new();
            let mut values = Values::new();
            for (i, field) in schema.fields().iter().enumerate() {
                let col = batch.column(i);
                let name = field.name().clone();
                if is_key_type(field.data_type()) {
                    if col.is_valid(row) {
                        key.insert(name, text(col, row)?);
                    }
                } else {
                    values.insert(name, json_value(col, row)?);
                }
            }
            out.insert(key, values);
        }
    }
    Ok(out)
}

fn text(col: &dyn Array, row: usize) -> Result<String> {
    array_value_to_string(col, row).map_err(|e| RulesError::Invalid(format!("result: {e}")))
}

fn json_value(col: &Arc<dyn Array>, row: usize) -> Result<serde_json::Value> {
    if col.is_null(row) {
        return Ok(serde_json::Value::Null);
    }
    let t = col.data_type();
    if t.is_numeric() {
        let f = cast(&col.slice(row, 1), &DataType::Float64)
            .map_err(|e| RulesError::Invalid(format!("result: {e}")))?;
        let v = f
            .as_any()
            .downcast_ref::<Float64Array>()
            .map(|a| a.value(0))
            .unwrap_or(f64::NAN);
        return Ok(serde_json::Number::from_f64(v)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null));
    }
    if *t == DataType::Boolean {
        return Ok(serde_json::Value::Bool(text(col.as_ref(), row)? == "true"));
    }
    Ok(serde_json::Value::String(text(col.as_ref(), row)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertState;
    use strata_query::arrow::array::{Int64Array, StringArray};
    use strata_query::arrow::datatypes::{Field, Schema};

    fn spec() -> RuleSpec {
        serde_json::from_value(
            serde_json::json!({"name": "r", "kind": "query", "sql": "SELECT 1",
            "actions": [{"type": "webhook", "url": "http://127.0.0.1:1/x"}]}),
        )
        .unwrap()
    }

    fn batch(devices: &[&str], temps: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device", DataType::Utf8, true),
            Field::new("t", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(devices.to_vec())),
                Arc::new(Int64Array::from(temps.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_become_keyed_instances() {
        let i = instances(&[batch(&["a", "b", "a"], &[1, 2, 3])]).unwrap();
        assert_eq!(i.len(), 2);
        let a: AlertKey = [("device".to_string(), "a".to_string())].into();
        assert_eq!(i[&a]["t"], serde_json::json!(3.0));
    }

    #[test]
    fn one_notification_per_transition_and_action() {
        let t = Timing::default();
        let active = instances(&[batch(&["a"], &[1])]).unwrap();
        let (changes, entries, n) = step_all(&spec(), vec![], active.clone(), 10, t);
        assert_eq!((changes.len(), entries.len(), n), (1, 2, 1)); // webhook + history
        let Change::Put(a) = &changes[0] else {
            panic!()
        };
        assert_eq!(a.state, AlertState::Firing);
        // Still active: no new notification (deduplicated).
        let (_, entries, n) = step_all(&spec(), vec![a.clone()], active, 20, t);
        assert_eq!((entries.len(), n), (0, 0));
        // Gone: resolved once, with a different idempotency key than the firing.
        let (changes, entries, n) = step_all(&spec(), vec![a.clone()], BTreeMap::new(), 30, t);
        assert_eq!((entries.len(), n), (2, 1));
        assert_eq!(entries[0].notification.state, "resolved");
        let Change::Put(r) = &changes[0] else {
            panic!()
        };
        let (_, again, _) = step_all(&spec(), vec![r.clone()], BTreeMap::new(), 40, t);
        assert!(again.is_empty());
    }
}
