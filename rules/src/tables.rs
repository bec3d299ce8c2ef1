//! The `alerts` and `rules` SQL tables, as [`SnapshotSource`]s read from the rule store and the
//! counters when a query uses them. Column shapes are documented in `docs/rules.md`.

use std::sync::{Arc, Weak};

use strata_query::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt64Array,
};
use strata_query::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use strata_query::{QueryEngine, SnapshotSource};

use crate::Rules;
use crate::alert::Alert;

/// Registers both tables.
pub fn register(rules: &Arc<Rules>, query: &QueryEngine) {
    for table in [Table::Alerts, Table::Rules] {
        let source = RulesTable {
            rules: Arc::downgrade(rules),
            table,
            schema: table.schema(),
        };
        query.register_snapshot_table(table.name(), Arc::new(source));
    }
}

#[derive(Debug, Clone, Copy)]
enum Table {
    Alerts,
    Rules,
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Alerts => "alerts",
            Table::Rules => "rules",
        }
    }

    fn schema(self) -> SchemaRef {
        let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
        let u = |n: &str| Field::new(n, DataType::UInt64, false);
        let fields = match self {
            Table::Alerts => vec![
                s("rule", false),
                s("key", false),
                s("device", true),
                s("state", false),
                Field::new("started", ts(), false),
                Field::new("fired", ts(), true),
                Field::new("resolved", ts(), true),
                Field::new("last_active", ts(), false),
                Field::new("value", DataType::Float64, true),
                s("values", false),
                s("labels", false),
            ],
            Table::Rules => vec![
                s("name", false),
                s("kind", false),
                Field::new("enabled", DataType::Boolean, false),
                s("db", false),
                s("stream", true),
                s("definition", false),
                u("evaluations"),
                u("matches"),
                u("errors"),
                s("last_error", true),
                Field::new("last_evaluation", ts(), true),
                Field::new("last_duration_ms", DataType::Float64, false),
                Field::new("lag_ms", DataType::Float64, false),
                u("notifications"),
                u("delivered"),
                u("dead_letters"),
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

struct RulesTable {
    rules: Weak<Rules>,
    table: Table,
    schema: SchemaRef,
}

impl std::fmt::Debug for RulesTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesTable")
            .field("table", &self.table)
            .finish()
    }
}

impl SnapshotSource for RulesTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn snapshot(&self) -> Result<Vec<RecordBatch>, String> {
        let rules = self.rules.upgrade().ok_or("the rules service stopped")?;
        let columns = match self.table {
            Table::Alerts => alert_columns(&rules)?,
            Table::Rules => rule_columns(&rules)?,
        };
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())?;
        Ok(vec![batch])
    }
}

fn strings<S: AsRef<str>>(v: impl Iterator<Item = Option<S>>) -> ArrayRef {
    Arc::new(v.collect::<StringArray>())
}

fn times(v: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(v.collect::<TimestampNanosecondArray>().with_timezone("UTC"))
}

fn first_number(a: &Alert) -> Option<f64> {
    a.values.values().find_map(serde_json::Value::as_f64)
}

fn alert_columns(rules: &Rules) -> Result<Vec<ArrayRef>, String> {
    let alerts = rules.store.all_alerts().map_err(|e| e.to_string())?;
    let labels: Vec<String> = {
        let loaded = rules.loaded.read().map_err(|e| e.to_string())?;
        alerts
            .iter()
            .map(|a| {
                let l = loaded
                    .get(&a.rule)
                    .map(|r| r.spec.labels.clone())
                    .unwrap_or_default();
                serde_json::to_string(&l).unwrap_or_default()
            })
            .collect()
    };
    Ok(vec![
        strings(alerts.iter().map(|a| Some(&a.rule))),
        strings(alerts.iter().map(|a| serde_json::to_string(&a.key).ok())),
        strings(alerts.iter().map(|a| a.key.get("device"))),
        strings(alerts.iter().map(|a| Some(a.state.as_str()))),
        times(alerts.iter().map(|a| Some(a.started_ns))),
        times(alerts.iter().map(|a| a.fired_ns)),
        times(alerts.iter().map(|a| a.resolved_ns)),
        times(alerts.iter().map(|a| Some(a.last_active_ns))),
        Arc::new(alerts.iter().map(first_number).collect::<Float64Array>()),
        strings(
            alerts
                .iter()
                .map(|a| Some(serde_json::Value::Object(a.values.clone()).to_string())),
        ),
        strings(labels.iter().map(Some)),
    ])
}

fn rule_columns(rules: &Rules) -> Result<Vec<ArrayRef>, String> {
    let specs = rules.store.list_rules().map_err(|e| e.to_string())?;
    let stats: Vec<_> = specs.iter().map(|s| rules.stats.get(&s.name)).collect();
    let defs: Vec<String> = specs
        .iter()
        .map(|s| serde_json::to_string(&s.redacted()).unwrap_or_default())
        .collect();
    let u = |f: fn(&crate::RuleStats) -> u64| -> ArrayRef {
        Arc::new(stats.iter().map(|s| Some(f(s))).collect::<UInt64Array>())
    };
    let ms = |f: fn(&crate::RuleStats) -> i64| -> ArrayRef {
        Arc::new(
            stats
                .iter()
                .map(|s| Some(f(s) as f64 / 1e6))
                .collect::<Float64Array>(),
        )
    };
    Ok(vec![
        strings(specs.iter().map(|s| Some(&s.name))),
        strings(specs.iter().map(|s| Some(s.kind.as_str()))),
        Arc::new(
            specs
                .iter()
                .map(|s| Some(s.enabled))
                .collect::<BooleanArray>(),
        ),
        strings(specs.iter().map(|s| Some(&s.db))),
        strings(specs.iter().map(|s| s.stream.as_ref())),
        strings(defs.iter().map(Some)),
        u(|s| s.evaluations),
        u(|s| s.matches),
        u(|s| s.errors),
        strings(stats.iter().map(|s| s.last_error.as_ref())),
        times(stats.iter().map(|s| s.last_eval_ns)),
        ms(|s| s.last_duration_ns),
        ms(|s| s.lag_ns),
        u(|s| s.notifications),
        u(|s| s.delivered),
        u(|s| s.dead),
    ])
}
