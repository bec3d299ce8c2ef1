//! Window rules: `select` aggregates per `group_by` key over tumbling or hopping windows of event
//! time, and a `condition` on the result.
//!
//! State is incremental: each rule keeps, in memory, the rows of its **open** windows only (a
//! row goes into every window that contains it), never re-reading history per evaluation. The
//! watermark is the highest event time seen minus `lateness` (default 5 s). For each durable
//! batch: rows whose every window already ended at or before the watermark are dropped (counted
//! in `late_dropped`); the others go into their open windows (late and out-of-order rows within
//! the lateness update their window); then the watermark advances and every window whose end it
//! reached closes: DataFusion runs `SELECT group_by, select … GROUP BY group_by` over that
//! window's rows, and each group's `condition` makes its alert instance active or inactive at the
//! window's end (so `firing` is notified once, `resolved` when a window of that key no longer
//! matches).
//!
//! After a restart the open windows are **rebuilt from the stream** (rows newer than the start
//! of the oldest window the watermark has not closed, the watermark coming from the stream's
//! newest row); windows that had closed before are not evaluated again.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_query::arrow::array::{Array, BooleanArray, RecordBatch, TimestampNanosecondArray};
use strata_query::arrow::compute::{concat_batches, filter_record_batch};
use strata_query::datafusion::datasource::MemTable;
use strata_query::datafusion::prelude::SessionContext;

use crate::alert::AlertKey;
use crate::error::{Result, RulesError};
use crate::eval::{Values, instances};
use crate::spec::{RuleSpec, duration_ns};

/// Window shape of a rule, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Window length.
    pub size_ns: i64,
    /// Distance between window starts (= size for tumbling windows).
    pub hop_ns: i64,
    /// Allowed lateness.
    pub lateness_ns: i64,
}

/// Default allowed lateness.
pub const DEFAULT_LATENESS: &str = "5s";

impl Shape {
    /// Parses and checks the window of `spec`.
    pub fn of(spec: &RuleSpec) -> Result<Shape> {
        let w = spec
            .window
            .as_ref()
            .ok_or_else(|| RulesError::Invalid("a window rule needs 'window'".into()))?;
        let text = |k: &str| w.rest.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let size_ns = duration_ns("window.size", text("size").as_deref(), "")?;
        if size_ns <= 0 {
            return Err(RulesError::Invalid("window.size: must be positive".into()));
        }
        let hop_ns = match w.kind.as_str() {
            "tumbling" => size_ns,
            "hopping" => {
                let hop = duration_ns("window.hop", text("hop").as_deref(), "")?;
                if hop <= 0 || hop > size_ns {
                    return Err(RulesError::Invalid(
                        "window.hop: must be positive and at most window.size".into(),
                    ));
                }
                hop
            }
            other => {
                return Err(RulesError::Invalid(format!(
                    "window.type: '{other}' is not available in this version (use tumbling or hopping)"
                )));
            }
        };
        let lateness_ns = duration_ns("lateness", spec.lateness.as_deref(), DEFAULT_LATENESS)?;
        Ok(Shape {
            size_ns,
            hop_ns,
            lateness_ns,
        })
    }

    /// Starts of the windows holding time `t`, oldest first.
    pub fn windows_of(&self, t: i64) -> Vec<i64> {
        let last = t.div_euclid(self.hop_ns) * self.hop_ns;
        let mut out = Vec::new();
        let mut s = last;
        while s > t - self.size_ns {
            out.push(s);
            s -= self.hop_ns;
        }
        out.reverse();
        out
    }
}

/// The aggregation SQL over one window's rows (`table`, already quoted), with `__match` per group.
pub fn window_sql(spec: &RuleSpec, table: &str) -> String {
    let groups = spec
        .group_by
        .iter()
        .map(|g| format!("\"{}\"", g.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(", ");
    let select = spec.select.as_deref().unwrap_or_default();
    let cond = spec.condition.as_deref().unwrap_or_default();
    let (cols, group) = if groups.is_empty() {
        (String::new(), String::new())
    } else {
        (format!("{groups}, "), format!(" GROUP BY {groups}"))
    };
    format!(
        "SELECT *, ({cond}) AS \"__match\" FROM (SELECT {cols}{select} FROM {table}{group}) AS w"
    )
}

/// The open windows of one rule.
#[derive(Debug, Default)]
pub struct WindowState {
    /// Highest event time seen minus lateness.
    pub watermark: Option<i64>,
    /// Rows of each open window, by window start.
    pub open: BTreeMap<i64, Vec<RecordBatch>>,
    /// Rows dropped because all their windows had closed.
    pub late_dropped: u64,
}

/// A closed window's groups: key → (condition held, values).
pub type Closed = (i64, BTreeMap<AlertKey, (bool, Values)>);

impl WindowState {
    /// Adds a batch (with a `time` column) and returns the windows it closed, oldest first.
    pub async fn add(
        &mut self,
        spec: &RuleSpec,
        shape: Shape,
        batch: &RecordBatch,
    ) -> Result<Vec<Closed>> {
        let times = time_column(batch)?;
        let mut targets: BTreeMap<i64, Vec<bool>> = BTreeMap::new();
        let mut max_t = None;
        for row in 0..batch.num_rows() {
            let t = times.value(row);
            max_t = Some(max_t.map_or(t, |m: i64| m.max(t)));
            let open: Vec<i64> = shape
                .windows_of(t)
                .into_iter()
                .filter(|s| self.watermark.is_none_or(|wm| s + shape.size_ns > wm))
                .collect();
            if open.is_empty() {
                self.late_dropped += 1;
            }
            for s in open {
                targets
                    .entry(s)
                    .or_insert_with(|| vec![false; batch.num_rows()])[row] = true;
            }
        }
        for (start, mask) in targets {
            let part = filter_record_batch(batch, &BooleanArray::from(mask))
                .map_err(|e| RulesError::Invalid(format!("window: {e}")))?;
            self.open.entry(start).or_default().push(part);
        }
        if let Some(m) = max_t {
            let wm = m.saturating_sub(shape.lateness_ns);
            self.watermark = Some(self.watermark.map_or(wm, |w| w.max(wm)));
        }
        self.close(spec, shape).await
    }

    /// Moves the watermark to at least `wm` and closes what it reached (dry runs: the end of
    /// the range closes every window ending by then).
    pub async fn close_until(
        &mut self,
        spec: &RuleSpec,
        shape: Shape,
        wm: i64,
    ) -> Result<Vec<Closed>> {
        self.watermark = Some(self.watermark.map_or(wm, |w| w.max(wm)));
        self.close(spec, shape).await
    }

    /// Closes and evaluates every window whose end the watermark reached.
    async fn close(&mut self, spec: &RuleSpec, shape: Shape) -> Result<Vec<Closed>> {
        let Some(wm) = self.watermark else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        while let Some((&start, _)) = self.open.first_key_value() {
            if start + shape.size_ns > wm {
                break;
            }
            let batches = self.open.remove(&start).unwrap_or_default();
            let end = start + shape.size_ns;
            let groups = evaluate(spec, start, end, batches).await?;
            out.push((end, groups));
        }
        Ok(out)
    }
}

fn time_column(batch: &RecordBatch) -> Result<&TimestampNanosecondArray> {
    batch
        .column_by_name(strata_query::TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| RulesError::Invalid("window: rows have no time column".into()))
}

/// Aggregates one window's rows per group and checks the condition.
pub async fn evaluate(
    spec: &RuleSpec,
    start: i64,
    end: i64,
    batches: Vec<RecordBatch>,
) -> Result<BTreeMap<AlertKey, (bool, Values)>> {
    let Some(first) = batches.first() else {
        return Ok(BTreeMap::new());
    };
    let schema = first.schema();
    // Batches of one window may come from different layouts (a field added later): align them
    // by concatenating only batches of the newest schema and projecting older ones by name.
    let aligned: Vec<RecordBatch> = batches
        .iter()
        .map(|b| {
            align(
                b,
                &batches.last().map(|l| l.schema()).unwrap_or(schema.clone()),
            )
        })
        .collect::<Result<_>>()?;
    let schema = aligned[0].schema();
    let all = concat_batches(&schema, &aligned)
        .map_err(|e| RulesError::Invalid(format!("window: {e}")))?;
    let stream = spec.stream.as_deref().unwrap_or_default();
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema, vec![vec![all]])
        .map_err(|e| RulesError::Invalid(format!("window: {e}")))?;
    ctx.register_table(stream, Arc::new(table))
        .map_err(|e| RulesError::Invalid(format!("window: {e}")))?;
    let out = ctx
        .sql(&window_sql(spec, &format!("\"{stream}\"")))
        .await
        .map_err(|e| RulesError::Invalid(format!("select/condition: {e}")))?
        .collect()
        .await
        .map_err(|e| RulesError::Invalid(format!("select/condition: {e}")))?;
    let mut groups = BTreeMap::new();
    for b in &out {
        for row in 0..b.num_rows() {
            for (key, mut values) in instances(&[b.slice(row, 1)])? {
                let matched = values
                    .remove("__match")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                values.insert(
                    "window_start".into(),
                    strata_ingest::text::format_rfc3339(start).into(),
                );
                values.insert(
                    "window_end".into(),
                    strata_ingest::text::format_rfc3339(end).into(),
                );
                groups.insert(key, (matched, values));
            }
        }
    }
    Ok(groups)
}

/// `b` with `schema`'s columns (missing ones null).
fn align(
    b: &RecordBatch,
    schema: &strata_query::arrow::datatypes::SchemaRef,
) -> Result<RecordBatch> {
    if b.schema() == *schema {
        return Ok(b.clone());
    }
    let cols = schema
        .fields()
        .iter()
        .map(|f| match b.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => c.clone(),
            _ => strata_query::arrow::array::new_null_array(f.data_type(), b.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), cols)
        .map_err(|e| RulesError::Invalid(format!("window: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn windows_of_a_time() {
        let tumbling = Shape {
            size_ns: 60 * S,
            hop_ns: 60 * S,
            lateness_ns: 5 * S,
        };
        assert_eq!(tumbling.windows_of(61 * S), vec![60 * S]);
        assert_eq!(tumbling.windows_of(-1), vec![-60 * S]);
        let hopping = Shape {
            size_ns: 60 * S,
            hop_ns: 20 * S,
            lateness_ns: 0,
        };
        assert_eq!(hopping.windows_of(65 * S), vec![20 * S, 40 * S, 60 * S]);
        assert_eq!(hopping.windows_of(60 * S), vec![20 * S, 40 * S, 60 * S]);
    }

    #[test]
    fn window_shapes_are_checked() {
        let spec = |w: serde_json::Value| -> RuleSpec {
            serde_json::from_value(serde_json::json!({"name": "w", "kind": "window",
                "stream": "env", "window": w, "select": "avg(t) AS a", "condition": "a > 1"}))
            .unwrap()
        };
        let s = Shape::of(&spec(serde_json::json!({"type": "tumbling", "size": "1m"}))).unwrap();
        assert_eq!(
            (s.size_ns, s.hop_ns, s.lateness_ns),
            (60 * S, 60 * S, 5 * S)
        );
        assert!(
            Shape::of(&spec(
                serde_json::json!({"type": "hopping", "size": "1m", "hop": "2m"})
            ))
            .is_err()
        );
        assert!(Shape::of(&spec(serde_json::json!({"type": "session", "gap": "1m"}))).is_err());
        assert!(Shape::of(&spec(serde_json::json!({"type": "tumbling"}))).is_err());
    }
}
