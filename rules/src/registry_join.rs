//! Registry joins in row and window rule conditions, e.g. `temperature > devices.attributes['max_temp']`.
//!
//! A condition that names `devices.` is evaluated with the registry's devices joined on the row's
//! (or the window group's) device: `… LEFT JOIN devices ON devices.id = <rows>.device`. The
//! `devices` table there is the SQL `devices` table (read through the query engine, so the rules
//! crate needs no registry) with one change: `attributes`, JSON text in SQL, is a **struct** whose
//! fields are the union of the devices' attribute keys — Float64 when every device's value is a
//! number, Boolean when every value is a boolean, Utf8 otherwise — so `attributes['max_temp']`
//! compares as a number, and a device without the key gives NULL (the condition does not hold).
//!
//! The devices are read once and cached for [`REFRESH`] (attribute changes reach rules within
//! that time); evaluation never reads the stream's history.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_query::QueryEngine;
use strata_query::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, StructArray,
};
use strata_query::arrow::compute::concat_batches;
use strata_query::arrow::datatypes::{DataType, Field, Fields, Schema};
use strata_query::datafusion::datasource::MemTable;
use strata_query::datafusion::prelude::SessionContext;

use crate::error::{Result, RulesError};

/// How long the cached devices table is used before it is read again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Name of the joined table in conditions.
pub const DEVICES: &str = "devices";

/// Whether `sql` refers to the `devices` table (`devices.` outside of a longer identifier).
pub fn mentions_devices(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    lower.match_indices(DEVICES).any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let after = lower[i + DEVICES.len()..].trim_start_matches(['"', ' ']);
        !before.is_some_and(ident) && after.starts_with('.')
    })
}

/// The cached devices table.
#[derive(Debug, Default)]
pub struct DevicesCache {
    cached: Mutex<Option<(Instant, RecordBatch)>>,
}

impl DevicesCache {
    /// The devices table with `attributes` as a struct (read again when older than [`REFRESH`]).
    pub async fn table(&self, query: &QueryEngine) -> Result<RecordBatch> {
        if let Ok(c) = self.cached.lock()
            && let Some((at, b)) = c.as_ref()
            && at.elapsed() < REFRESH
        {
            return Ok(b.clone());
        }
        let r = query
            .query("SELECT * FROM devices")
            .await
            .map_err(|e| RulesError::Invalid(format!("devices: {e}")))?;
        let all = concat_batches(&r.schema, &r.batches)
            .map_err(|e| RulesError::Invalid(format!("devices: {e}")))?;
        let table = with_struct_attributes(&all)?;
        if let Ok(mut c) = self.cached.lock() {
            *c = Some((Instant::now(), table.clone()));
        }
        Ok(table)
    }
}

/// `devices` with its `attributes` JSON text column turned into a struct.
pub fn with_struct_attributes(devices: &RecordBatch) -> Result<RecordBatch> {
    let schema = devices.schema();
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let col = devices.column(i);
        if f.name() == "attributes" {
            let text = col
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| RulesError::Invalid("devices.attributes is not text".into()))?;
            let s = attributes_struct(text);
            fields.push(Arc::new(Field::new(
                "attributes",
                s.data_type().clone(),
                false,
            )));
            cols.push(Arc::new(s));
        } else {
            fields.push(f.clone());
            cols.push(col.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| RulesError::Invalid(format!("devices: {e}")))
}

/// Column type of one attribute key over all devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Bool,
    Text,
}

fn kind_of(v: &serde_json::Value) -> Kind {
    match v {
        serde_json::Value::Number(_) => Kind::Number,
        serde_json::Value::Bool(_) => Kind::Bool,
        _ => Kind::Text,
    }
}

/// The struct of every device's attributes (keys: the union; absent or null values: NULL).
fn attributes_struct(text: &StringArray) -> StructArray {
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = (0..text.len())
        .map(|i| {
            (!text.is_null(i))
                .then(|| serde_json::from_str(text.value(i)).ok())
                .flatten()
                .unwrap_or_default()
        })
        .collect();
    let mut kinds: BTreeMap<&str, Kind> = BTreeMap::new();
    for (k, v) in rows.iter().flat_map(|r| r.iter()) {
        if v.is_null() {
            continue;
        }
        let k2 = kind_of(v);
        kinds
            .entry(k)
            .and_modify(|k1| {
                if *k1 != k2 {
                    *k1 = Kind::Text
                }
            })
            .or_insert(k2);
    }
    if kinds.is_empty() {
        return StructArray::new_empty_fields(rows.len(), None);
    }
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (key, kind) in kinds {
        let get = |r: &serde_json::Map<String, serde_json::Value>| {
            r.get(key).filter(|v| !v.is_null()).cloned()
        };
        let (t, a): (DataType, ArrayRef) = match kind {
            Kind::Number => (
                DataType::Float64,
                Arc::new(Float64Array::from_iter(
                    rows.iter().map(|r| get(r).and_then(|v| v.as_f64())),
                )),
            ),
            Kind::Bool => (
                DataType::Boolean,
                Arc::new(BooleanArray::from_iter(
                    rows.iter().map(|r| get(r).and_then(|v| v.as_bool())),
                )),
            ),
            Kind::Text => (
                DataType::Utf8,
                Arc::new(StringArray::from_iter(rows.iter().map(|r| {
                    get(r).map(|v| match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                }))),
            ),
        };
        fields.push(Field::new(key, t, true));
        arrays.push(a);
    }
    StructArray::new(Fields::from(fields), arrays, None)
}

/// A private session for one evaluation; DataFusion's nested-expression planners (enabled
/// workspace-wide) plan `devices.attributes['key']` as a struct field access.
/// One partition: results keep the batch's row order (row rules take each device's last row).
pub fn session() -> SessionContext {
    let config = strata_query::datafusion::prelude::SessionConfig::new().with_target_partitions(1);
    SessionContext::new_with_config(config)
}

/// Registers `devices` in `ctx`.
pub fn register(ctx: &SessionContext, devices: RecordBatch) -> Result<()> {
    let table = MemTable::try_new(devices.schema(), vec![vec![devices]])
        .map_err(|e| RulesError::Invalid(format!("devices: {e}")))?;
    ctx.register_table(DEVICES, Arc::new(table))
        .map(|_| ())
        .map_err(|e| RulesError::Invalid(format!("devices: {e}")))
}

/// `FROM` clause joining `rows` (an alias or table name, already quoted) to the devices.
pub fn join(rows: &str) -> String {
    format!("{rows} LEFT JOIN {DEVICES} ON {DEVICES}.id = {rows}.\"device\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_naming_devices_are_found() {
        assert!(mentions_devices(
            "temperature > devices.attributes['max_temp']"
        ));
        assert!(mentions_devices("t > \"devices\".attributes['x']"));
        assert!(mentions_devices("t > DEVICES . model"));
        assert!(!mentions_devices("temperature > 90"));
        assert!(!mentions_devices("my_devices.x > 1"));
        assert!(!mentions_devices("devices_count > 1"));
    }

    #[test]
    fn attributes_become_typed_struct_fields() {
        let text = StringArray::from(vec![
            Some(r#"{"max_temp": 30, "site": "a", "on": true, "mixed": 1}"#),
            Some(r#"{"max_temp": 25.5, "mixed": "x"}"#),
            Some("{}"),
            None,
        ]);
        let s = attributes_struct(&text);
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["max_temp", "mixed", "on", "site"]);
        let max = s
            .column_by_name("max_temp")
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(max.value(1), 25.5);
        assert!(max.is_null(2) && max.is_null(3));
        assert_eq!(
            s.column_by_name("mixed").unwrap().data_type(),
            &DataType::Utf8
        );
        assert_eq!(
            s.column_by_name("on").unwrap().data_type(),
            &DataType::Boolean
        );
    }
}
