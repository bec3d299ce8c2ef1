//! Row rules: a SQL boolean `condition` over each incoming row of `db.stream`, whatever protocol
//! wrote it. The storage engine tells [`RowFeed`] (a [`WriteObserver`]) about every batch once it
//! is durable; the feed keeps only the tables some row rule watches and hands them to a bounded
//! queue ([`QUEUE_CAPACITY`] batches) without ever blocking the writer. When the queue is full the
//! batch is not evaluated: its rows count in `strata_rule_dropped_rows_total`. The rules worker
//! turns each batch into one Arrow record batch (the stream's SQL layout: `time`, `device`, tags,
//! fields) and runs `SELECT * FROM stream WHERE condition` on it with DataFusion (a private
//! session holding just that batch).
//!
//! Alerts are keyed by device: a device whose row matches is active (fires, after `for`), a
//! device whose row does not match is inactive (resolves, after `keep_firing_for`); devices
//! absent from the batch keep their state. Only state changes are written to `rules.redb`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use strata_query::arrow::array::{Array, BooleanArray, RecordBatch};
use strata_query::arrow::datatypes::SchemaRef;
use strata_query::arrow::util::display::array_value_to_string;
use strata_query::datafusion::common::DFSchema;
use strata_query::datafusion::datasource::MemTable;
use strata_query::datafusion::physical_expr::PhysicalExpr;
use strata_query::datafusion::prelude::SessionContext;
use strata_query::{DEVICE_COLUMN, TableLayout};
use strata_storage::{
    Column, ColumnData, Engine, SeriesBatch, TableWrite, WriteBatch, WriteObserver,
};

use crate::alert::{Alert, AlertKey, observe_active, observe_inactive};
use crate::error::{Result, RulesError};
use crate::eval::{Values, instances};
use crate::outbox::OutboxEntry;
use crate::spec::{RuleSpec, Timing};
use crate::store::Change;

/// Batches waiting for the rules worker at most; more are dropped and counted.
pub const QUEUE_CAPACITY: usize = 4096;

/// One durable table write some rule watches.
#[derive(Debug)]
pub struct Arrived {
    /// Database.
    pub db: String,
    /// The rows.
    pub table: TableWrite,
    /// When it was handed over (ns), to measure lag.
    pub at_ns: i64,
}

/// The write observer feeding row (and window) rules.
#[derive(Debug)]
pub struct RowFeed {
    watched: RwLock<HashMap<String, HashSet<String>>>,
    tx: tokio::sync::mpsc::Sender<Arrived>,
    dropped_rows: AtomicU64,
    queued: AtomicU64,
}

impl RowFeed {
    /// A feed and the receiving end of its queue.
    pub fn new() -> (Arc<RowFeed>, tokio::sync::mpsc::Receiver<Arrived>) {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE_CAPACITY);
        let feed = RowFeed {
            watched: RwLock::default(),
            tx,
            dropped_rows: AtomicU64::new(0),
            queued: AtomicU64::new(0),
        };
        (Arc::new(feed), rx)
    }

    /// Replaces the set of watched `(db, stream)` pairs.
    pub fn watch(&self, pairs: impl IntoIterator<Item = (String, String)>) {
        let mut m: HashMap<String, HashSet<String>> = HashMap::new();
        for (db, s) in pairs {
            m.entry(db).or_default().insert(s);
        }
        if let Ok(mut w) = self.watched.write() {
            *w = m;
        }
    }

    /// Rows not evaluated because the queue was full.
    pub fn dropped_rows(&self) -> u64 {
        self.dropped_rows.load(Ordering::Relaxed)
    }

    /// Batches waiting in the queue.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// The worker took one batch off the queue.
    pub fn took(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

impl WriteObserver for RowFeed {
    fn after_durable_write(&self, batch: &WriteBatch) {
        let Ok(w) = self.watched.read() else { return };
        let Some(streams) = w.get(&batch.database) else {
            return;
        };
        for t in batch.tables.iter().filter(|t| streams.contains(&t.stream)) {
            let arrived = Arrived {
                db: batch.database.clone(),
                table: t.clone(),
                at_ns: crate::now_ns(),
            };
            match self.tx.try_send(arrived) {
                Ok(()) => {
                    self.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.dropped_rows
                        .fetch_add(t.len() as u64, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The stream's SQL layout now (the batch is durable, so its fields and tags are in it).
pub fn layout(engine: &Engine, db: &str, stream: &str) -> TableLayout {
    let fields = engine.schema(db, stream).unwrap_or_default();
    let tags = engine.tag_keys(db, stream);
    TableLayout::new(db, stream, &tags, &fields)
}

/// The rows of `t` as one record batch in `layout`.
pub fn record_batch(layout: &TableLayout, t: &TableWrite) -> Result<RecordBatch> {
    let mut by_series: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (row, s) in t.row_series.iter().enumerate() {
        by_series.entry(*s).or_default().push(row);
    }
    let mut series = Vec::with_capacity(by_series.len());
    for (s, rows) in by_series {
        let Some(key) = t.series.get(s as usize) else {
            continue;
        };
        series.push(SeriesBatch {
            series_id: 0,
            key: key.clone(),
            times: rows.iter().map(|r| t.times[*r]).collect(),
            columns: t.columns.iter().map(|c| pick(c, &rows)).collect(),
        });
    }
    strata_query::to_record_batch(&layout.schema, &layout.kinds, &series)
        .map_err(|e| RulesError::Invalid(format!("row batch: {e}")))
}

fn pick(c: &Column, rows: &[usize]) -> Column {
    let mut data = ColumnData::new(c.data.field_type());
    let mut valid = Vec::with_capacity(rows.len());
    for r in rows {
        data.push_from(&c.data, *r);
        valid.push(c.valid.get(*r).copied().unwrap_or(false));
    }
    Column {
        name: c.name.clone(),
        data,
        valid,
    }
}

/// The SQL a row rule runs over one batch (the table is the stream's name); a condition naming
/// `devices` joins them on the row's device (rows kept in time order).
pub fn condition_sql(table: &str, condition: &str) -> String {
    let t = format!("\"{}\"", table.replace('"', "\"\""));
    if crate::registry_join::mentions_devices(condition) {
        return format!(
            "SELECT {t}.*, ({condition}) AS \"__match\" FROM {} ORDER BY {t}.\"time\"",
            crate::registry_join::join(&t)
        );
    }
    format!("SELECT *, ({condition}) AS \"__match\" FROM {t}")
}

/// Runs `condition` over `batch` (registered as table `stream`, with `devices` when given); per
/// device in the batch, the values of its last row and whether that row matched.
pub async fn evaluate(
    stream: &str,
    condition: &str,
    batch: RecordBatch,
    devices: Option<RecordBatch>,
) -> Result<BTreeMap<AlertKey, (bool, Values)>> {
    let ctx = crate::registry_join::session();
    if let Some(d) = devices {
        crate::registry_join::register(&ctx, d)?;
    }
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]])
        .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?;
    ctx.register_table(stream, Arc::new(table))
        .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?;
    per_device(&run_condition(&ctx, stream, condition).await?)
}

async fn run_condition(
    ctx: &SessionContext,
    stream: &str,
    condition: &str,
) -> Result<Vec<RecordBatch>> {
    ctx.sql(&condition_sql(stream, condition))
        .await
        .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?
        .collect()
        .await
        .map_err(|e| RulesError::Invalid(format!("condition: {e}")))
}

/// Every row of `batch` (registered as `stream`, with `devices`) with its `__match` column, in
/// time order (dry runs and replays of conditions joining the devices).
pub async fn matched_rows(
    stream: &str,
    condition: &str,
    batch: RecordBatch,
    devices: RecordBatch,
) -> Result<Vec<RecordBatch>> {
    let ctx = crate::registry_join::session();
    crate::registry_join::register(&ctx, devices)?;
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]])
        .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?;
    ctx.register_table(stream, Arc::new(table))
        .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?;
    run_condition(&ctx, stream, condition).await
}

/// Splits result rows (with the `__match` column) into the last row per device.
pub fn per_device(batches: &[RecordBatch]) -> Result<BTreeMap<AlertKey, (bool, Values)>> {
    let mut out = BTreeMap::new();
    for b in batches {
        for row in 0..b.num_rows() {
            let one = b.slice(row, 1);
            for (key, mut values) in instances(&[one])? {
                let matched = values
                    .remove("__match")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                let key: AlertKey = key
                    .into_iter()
                    .filter(|(k, _)| k == DEVICE_COLUMN)
                    .collect();
                values.remove("time");
                out.insert(key, (matched, values));
            }
        }
    }
    Ok(out)
}

/// Row rule conditions compiled to DataFusion physical expressions, per condition and batch
/// schema: a batch is evaluated without planning any SQL (a new stream layout compiles again).
#[derive(Default)]
pub struct Compiled {
    exprs: std::sync::Mutex<HashMap<String, CompiledExpr>>,
}

/// A compiled condition and the batch schema it was compiled for.
type CompiledExpr = (SchemaRef, Arc<dyn PhysicalExpr>);

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").finish_non_exhaustive()
    }
}

impl Compiled {
    /// Each condition over `batch`: one boolean array each, NULL counting as false. A condition
    /// shared by several rules is evaluated once. Fails if any condition does not compile or
    /// evaluate (the caller then evaluates the rules one by one).
    pub fn flags(&self, conditions: &[&str], batch: &RecordBatch) -> Result<Vec<BooleanArray>> {
        let mut ctx = None;
        let mut done: HashMap<&str, BooleanArray> = HashMap::new();
        let mut out = Vec::with_capacity(conditions.len());
        for c in conditions {
            let b = match done.get(*c) {
                Some(b) => b.clone(),
                None => {
                    let b = self.one(c, batch, &mut ctx)?;
                    done.insert(c, b.clone());
                    b
                }
            };
            out.push(b);
        }
        Ok(out)
    }

    /// One condition over `batch` (compiled on first use for the batch's schema).
    fn one(
        &self,
        c: &str,
        batch: &RecordBatch,
        ctx: &mut Option<SessionContext>,
    ) -> Result<BooleanArray> {
        let schema = batch.schema();
        let bad = |e: &dyn std::fmt::Display| RulesError::Invalid(format!("condition: {e}"));
        let cached = self.exprs.lock().ok().and_then(|m| {
            m.get(c)
                .filter(|(s, _)| *s == schema)
                .map(|(_, e)| e.clone())
        });
        let expr = match cached {
            Some(e) => e,
            None => {
                let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| bad(&e))?;
                let ctx = ctx.get_or_insert_with(crate::registry_join::session);
                let logical = ctx.parse_sql_expr(c, &df_schema).map_err(|e| bad(&e))?;
                let e = ctx
                    .create_physical_expr(logical, &df_schema)
                    .map_err(|e| bad(&e))?;
                if let Ok(mut m) = self.exprs.lock() {
                    m.insert(c.to_string(), (schema.clone(), e.clone()));
                }
                e
            }
        };
        let v = expr
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| bad(&e))?;
        let b = strata_query::arrow::compute::cast(
            &v,
            &strata_query::arrow::datatypes::DataType::Boolean,
        )
        .map_err(|e| bad(&e))?;
        b.as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .ok_or_else(|| bad(&"not a boolean"))
    }

    /// Forgets compiled conditions not in `keep` (rules changed or deleted).
    pub fn retain(&self, keep: &HashSet<&str>) {
        if let Ok(mut m) = self.exprs.lock() {
            m.retain(|c, _| keep.contains(c.as_str()));
        }
    }
}

/// The conditions of many row rules over one batch (registered as `stream`), with one query: one
/// boolean column per condition, in the batch's row order (NULL counts as false).
pub async fn flags(
    stream: &str,
    conditions: &[&str],
    batch: &RecordBatch,
) -> Result<Vec<BooleanArray>> {
    let ctx = crate::registry_join::session();
    let table = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]])
        .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?;
    ctx.register_table(stream, Arc::new(table))
        .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?;
    let cols = conditions
        .iter()
        .enumerate()
        .map(|(i, c)| format!("({c}) AS \"__m{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT {cols} FROM \"{}\"", stream.replace('"', "\"\""));
    let out = ctx
        .sql(&sql)
        .await
        .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?
        .collect()
        .await
        .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?;
    let all = match out.first() {
        Some(first) => strata_query::arrow::compute::concat_batches(&first.schema(), &out)
            .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?,
        None => RecordBatch::new_empty(batch.schema()),
    };
    if all.num_rows() != batch.num_rows() || all.num_columns() != conditions.len() {
        return Err(RulesError::Invalid(
            "condition: result rows do not match the batch".into(),
        ));
    }
    all.columns()
        .iter()
        .map(|c| {
            let b = strata_query::arrow::compute::cast(
                c,
                &strata_query::arrow::datatypes::DataType::Boolean,
            )
            .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?;
            b.as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| RulesError::Invalid("condition: not a boolean".into()))
        })
        .collect()
}

/// The last row of each device in `batch` (key: the device, or no key for rows without one).
pub fn last_rows(batch: &RecordBatch) -> Result<Rows> {
    let mut out = Rows::default();
    let col = batch.column_by_name(DEVICE_COLUMN);
    for row in 0..batch.num_rows() {
        let mut key = AlertKey::new();
        if let Some(c) = col.filter(|c| c.is_valid(row)) {
            let d = array_value_to_string(c, row)
                .map_err(|e| RulesError::Invalid(format!("device: {e}")))?;
            key.insert(DEVICE_COLUMN.to_string(), d);
        }
        out.last.insert(key.clone(), row);
        out.keys.push(key);
    }
    Ok(out)
}

/// The device key of each row of a batch and each device's last row.
#[derive(Debug, Default)]
pub struct Rows {
    /// Key of each row.
    pub keys: Vec<AlertKey>,
    /// Last row of each key.
    pub last: BTreeMap<AlertKey, usize>,
    /// The values of the rows some rule observed so far (converted once for every rule).
    values: std::sync::Mutex<HashMap<usize, Values>>,
}

impl Rows {
    /// The values of `row` of `batch` (the batch these rows describe), without `time`.
    pub fn values(&self, batch: &RecordBatch, row: usize) -> Result<Values> {
        if let Some(v) = self.values.lock().ok().and_then(|m| m.get(&row).cloned()) {
            return Ok(v);
        }
        let mut out = Values::new();
        for (_, mut values) in instances(&[batch.slice(row, 1)])? {
            values.remove("time");
            out = values;
        }
        if let Ok(mut m) = self.values.lock() {
            m.insert(row, out.clone());
        }
        Ok(out)
    }
}

/// What one rule of a batched evaluation changes: (alert changes, outbox entries, devices
/// matched, transitions), for [`crate::store::Store::apply_many`].
pub type Stepped = (Vec<Change>, Vec<OutboxEntry>, u64, u64);

/// One rule of a batched evaluation (`stored`: its instances): the devices whose last row matched
/// and those with a stored instance are observed (values of their last row); the rest cannot
/// change state. Steps and returns what to commit.
pub fn step_rule(
    spec: &RuleSpec,
    timing: Timing,
    batch: &RecordBatch,
    (rows, flag): (&Rows, &BooleanArray),
    stored: Vec<Alert>,
    now: i64,
) -> Result<Stepped> {
    // Candidates: devices with a matching row (found through the flag's set bits, usually
    // none) and devices with an instance; each is observed at its last row.
    let mut candidates: BTreeMap<&AlertKey, usize> = BTreeMap::new();
    for row in flag.values().set_indices() {
        if flag.is_valid(row)
            && let Some(key) = rows.keys.get(row)
            && let Some(&last) = rows.last.get(key)
        {
            candidates.insert(key, last);
        }
    }
    for a in &stored {
        if let Some((key, &last)) = rows.last.get_key_value(&a.key) {
            candidates.insert(key, last);
        }
    }
    let mut seen = BTreeMap::new();
    for (key, row) in candidates {
        let matched = flag.is_valid(row) && flag.value(row);
        seen.insert(key.clone(), (matched, rows.values(batch, row)?));
    }
    let matches = seen.values().filter(|(m, _)| *m).count() as u64;
    let (changes, entries, n) = step_seen(spec, stored, seen, now, timing);
    Ok((changes, entries, matches, n))
}

/// Steps the alerts of the devices seen at `now`; returns only what changed state, the outbox
/// entries, and the number of transitions.
pub fn step_seen(
    spec: &RuleSpec,
    stored: Vec<Alert>,
    seen: BTreeMap<AlertKey, (bool, Values)>,
    now: i64,
    timing: Timing,
) -> (Vec<Change>, Vec<OutboxEntry>, u64) {
    let mut previous: BTreeMap<AlertKey, Alert> =
        stored.into_iter().map(|a| (a.key.clone(), a)).collect();
    let mut changes = Vec::new();
    let mut entries = Vec::new();
    let mut transitions = 0;
    for (key, (matched, values)) in seen {
        let prev = previous.remove(&key);
        let (next, note) = if matched {
            let (a, n) = observe_active(prev.as_ref(), &spec.name, &key, values, now, timing);
            (Some(a), n)
        } else {
            match &prev {
                Some(p) => observe_inactive(p, now, timing),
                None => (None, None),
            }
        };
        if let (Some(a), Some(n)) = (&next, note) {
            entries.extend(OutboxEntry::for_transition(spec, a, n));
            transitions += 1;
        }
        match (prev, next) {
            (Some(p), None) => changes.push(Change::Delete(p.key)),
            (Some(p), Some(a))
                if p.state == a.state && note.is_none() && !keeps_firing_longer(&p, &a, timing) => {
            }
            (_, Some(a)) => changes.push(Change::Put(a)),
            (None, None) => {}
        }
    }
    (changes, entries, transitions)
}

/// Whether a firing instance that held again must be stored although its state did not change:
/// with `keep_firing_for`, the time it last held decides when it resolves, so it is kept.
fn keeps_firing_longer(prev: &Alert, next: &Alert, timing: Timing) -> bool {
    timing.keep_firing_for_ns > 0
        && next.state == crate::alert::AlertState::Firing
        && next.last_active_ns != prev.last_active_ns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertState;
    use strata_storage::{FieldType, SeriesKey, Value};

    fn table(rows: &[(&str, f64)]) -> TableWrite {
        let mut devices: Vec<&str> = rows.iter().map(|r| r.0).collect();
        devices.dedup();
        let mut temp = Column::new("temperature", FieldType::Float);
        for r in rows {
            temp.data.push_value(&Value::Float(r.1));
            temp.valid.push(true);
        }
        TableWrite {
            stream: "env".into(),
            series: devices
                .iter()
                .map(|d| SeriesKey {
                    device: d.to_string(),
                    tags: vec![],
                })
                .collect(),
            row_series: rows
                .iter()
                .map(|r| devices.iter().position(|d| *d == r.0).unwrap() as u32)
                .collect(),
            times: (0..rows.len() as i64).collect(),
            columns: vec![temp],
        }
    }

    fn spec() -> RuleSpec {
        serde_json::from_value(
            serde_json::json!({"name": "hot", "kind": "row", "stream": "env",
            "condition": "temperature > 90", "actions": []}),
        )
        .unwrap()
    }

    #[test]
    fn condition_matches_per_device_last_row() {
        let t = table(&[("a", 95.0), ("a", 80.0), ("b", 99.0)]);
        let layout = TableLayout::new(
            "default",
            "env",
            &[],
            &[
                ("temperature".into(), FieldType::Float),
                ("humidity".into(), FieldType::Float),
            ],
        );
        let batch = record_batch(&layout, &t).unwrap();
        assert_eq!(batch.num_rows(), 3);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let seen = rt
            .block_on(evaluate("env", "temperature > 90", batch.clone(), None))
            .unwrap();
        let a: AlertKey = [("device".to_string(), "a".to_string())].into();
        let b: AlertKey = [("device".to_string(), "b".to_string())].into();
        assert!(!seen[&a].0);
        assert!(seen[&b].0);
        assert_eq!(seen[&b].1["temperature"], serde_json::json!(99.0));
        assert!(
            rt.block_on(evaluate("env", "nosuch > 1", batch, None))
                .unwrap_err()
                .to_string()
                .contains("condition")
        );
    }

    #[test]
    fn many_conditions_in_one_query_keep_row_order() {
        let t = table(&[("a", 95.0), ("a", 80.0), ("b", 99.0)]);
        let layout = TableLayout::new(
            "default",
            "env",
            &[],
            &[("temperature".into(), FieldType::Float)],
        );
        let batch = record_batch(&layout, &t).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let f = rt
            .block_on(flags(
                "env",
                &["temperature > 90", "temperature < 90"],
                &batch,
            ))
            .unwrap();
        let bits = |b: &BooleanArray| (0..b.len()).map(|i| b.value(i)).collect::<Vec<_>>();
        assert_eq!(bits(&f[0]), [true, false, true]);
        assert_eq!(bits(&f[1]), [false, true, false]);
        let compiled = Compiled::default();
        for _ in 0..2 {
            let c = compiled
                .flags(&["temperature > 90", "temperature < 90"], &batch)
                .unwrap();
            assert_eq!((bits(&c[0]), bits(&c[1])), (bits(&f[0]), bits(&f[1])));
        }
        assert!(compiled.flags(&["nosuch > 1"], &batch).is_err());
        let last = last_rows(&batch).unwrap();
        let a: AlertKey = [("device".to_string(), "a".to_string())].into();
        assert_eq!(last.last[&a], 1);
        assert!(rt.block_on(flags("env", &["nosuch > 1"], &batch)).is_err());

        // Batched stepping: only b fires (a's last row does not match).
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("r.redb")).unwrap();
        store.put_rule(&spec(), true).unwrap();
        let (changes, entries, matched, n) = step_rule(
            &spec(),
            Timing::default(),
            &batch,
            (&last, &f[0]),
            vec![],
            5,
        )
        .unwrap();
        assert_eq!((matched, n), (1, 1));
        store
            .apply_many(vec![("hot".into(), changes, entries)])
            .unwrap();
        let alerts = store.alerts_of("hot").unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].key["device"], "b");
    }

    #[test]
    fn only_state_changes_are_stored() {
        let t = Timing::default();
        let a: AlertKey = [("device".to_string(), "a".to_string())].into();
        let hot: BTreeMap<_, _> = [(a.clone(), (true, Values::new()))].into();
        let (changes, _, n) = step_seen(&spec(), vec![], hot.clone(), 1, t);
        assert_eq!((changes.len(), n), (1, 1));
        let Change::Put(alert) = &changes[0] else {
            panic!("expected a put")
        };
        assert_eq!(alert.state, AlertState::Firing);
        let (changes, _, n) = step_seen(&spec(), vec![alert.clone()], hot, 2, t);
        assert_eq!((changes.len(), n), (0, 0));
        let cold: BTreeMap<_, _> = [(a, (false, Values::new()))].into();
        let (changes, _, n) = step_seen(&spec(), vec![alert.clone()], cold, 3, t);
        assert_eq!((changes.len(), n), (1, 1));
    }

    /// With `keep_firing_for`, a firing instance that holds again is stored with its new last
    /// match, so a miss soon after it does not resolve it: keep_firing_for counts from the
    /// last match, not from when the alert fired.
    #[test]
    fn keep_firing_for_counts_from_the_last_match() {
        let t = Timing {
            keep_firing_for_ns: 10,
            ..Timing::default()
        };
        let a: AlertKey = [("device".to_string(), "a".to_string())].into();
        let hot: BTreeMap<_, _> = [(a.clone(), (true, Values::new()))].into();
        let cold: BTreeMap<_, _> = [(a, (false, Values::new()))].into();
        let put = |changes: &[Change]| match changes {
            [Change::Put(alert)] => alert.clone(),
            other => panic!("expected one put, got {other:?}"),
        };
        let (changes, _, _) = step_seen(&spec(), vec![], hot.clone(), 1, t);
        let fired = put(&changes);
        assert_eq!(fired.state, AlertState::Firing);
        let (changes, _, n) = step_seen(&spec(), vec![fired], hot, 100, t);
        let stored = put(&changes);
        assert_eq!((stored.last_active_ns, n), (100, 0), "stored, not notified");
        let (changes, entries, n) = step_seen(&spec(), vec![stored.clone()], cold.clone(), 105, t);
        assert!(
            changes.is_empty() && entries.is_empty() && n == 0,
            "{changes:?}"
        );
        let (changes, _, n) = step_seen(&spec(), vec![stored], cold, 110, t);
        assert_eq!((put(&changes).state, n), (AlertState::Resolved, 1));
    }
}
