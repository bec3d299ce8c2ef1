//! Window rules: `select` aggregates per `group_by` key over tumbling, hopping, sliding or
//! session windows of event time, and a `condition` on the result. This module holds the shape,
//! the watermark and the tumbling/hopping windows (shared by every group); sliding and session
//! windows, which are per group, are in [`crate::window_keyed`].
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

use crate::alert::AlertKey;
use crate::error::{Result, RulesError};
use crate::eval::{Values, instances};
use crate::spec::{RuleSpec, duration_ns};

/// The kind of window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Tumbling or hopping: epoch-aligned windows shared by every group.
    Fixed,
    /// Azure Stream Analytics sliding window: per group, a window `(T - size, T]` at every time
    /// `T` a row of the group enters (`T` = its time) or leaves (`T` = its time + size).
    Sliding,
    /// Per group, rows less than `gap` apart, cut at multiples of `max` (`size_ns` holds `max`).
    Session {
        /// Longest silence inside a session.
        gap_ns: i64,
    },
}

/// Window shape of a rule, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Kind of window.
    pub kind: Kind,
    /// Window length (a session window's `max`).
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
        let lateness_ns = duration_ns("lateness", spec.lateness.as_deref(), DEFAULT_LATENESS)?;
        if w.kind == "session" {
            return session_shape(&text, lateness_ns);
        }
        let size_ns = duration_ns("window.size", text("size").as_deref(), "")?;
        if size_ns <= 0 {
            return Err(RulesError::Invalid("window.size: must be positive".into()));
        }
        let mut kind = Kind::Fixed;
        let hop_ns = match w.kind.as_str() {
            "tumbling" => size_ns,
            "sliding" => {
                kind = Kind::Sliding;
                size_ns
            }
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
                    "window.type: '{other}' is unknown (use tumbling, hopping, sliding or session)"
                )));
            }
        };
        Ok(Shape {
            kind,
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

/// A session window's shape: `gap` and `max` required, `0 < gap <= max`.
fn session_shape(text: &dyn Fn(&str) -> Option<String>, lateness_ns: i64) -> Result<Shape> {
    let (gap, max) = (text("gap"), text("max"));
    let (Some(gap), Some(max)) = (gap, max) else {
        return Err(RulesError::Invalid(
            "window: a session window needs 'gap' and 'max'".into(),
        ));
    };
    let gap_ns = duration_ns("window.gap", Some(&gap), "")?;
    let max_ns = duration_ns("window.max", Some(&max), "")?;
    if gap_ns <= 0 || max_ns < gap_ns {
        return Err(RulesError::Invalid(
            "window.gap: must be positive and at most window.max".into(),
        ));
    }
    Ok(Shape {
        kind: Kind::Session { gap_ns },
        size_ns: max_ns,
        hop_ns: max_ns,
        lateness_ns,
    })
}

/// The aggregation SQL over one window's rows (`table`, already quoted), with `__match` per group.
pub fn window_sql(spec: &RuleSpec, table: &str) -> String {
    grouped_sql(spec, table, None)
}

/// [`window_sql`] with one more leading grouping column (many windows in one query).
pub fn grouped_sql(spec: &RuleSpec, table: &str, extra: Option<&str>) -> String {
    let groups = extra
        .into_iter()
        .chain(spec.group_by.iter().map(String::as_str))
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
    let inner = format!("(SELECT {cols}{select} FROM {table}{group}) AS w");
    if crate::registry_join::mentions_devices(cond) {
        let d = crate::registry_join::DEVICES;
        return format!(
            "SELECT w.*, ({cond}) AS \"__match\" FROM {inner} LEFT JOIN {d} ON {d}.id = w.\"device\""
        );
    }
    format!("SELECT *, ({cond}) AS \"__match\" FROM {inner}")
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
    /// Sliding and session windows: rows per group.
    pub keyed: crate::window_keyed::Keyed,
    /// The devices table for conditions that join it (set before each [`WindowState::add`]).
    pub devices: Option<RecordBatch>,
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
        if shape.kind != Kind::Fixed {
            return self.add_keyed(spec, shape, batch).await;
        }
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
        if shape.kind != Kind::Fixed {
            return self
                .keyed
                .close(spec, shape, wm, self.devices.as_ref())
                .await;
        }
        let mut out = Vec::new();
        while let Some((&start, _)) = self.open.first_key_value() {
            if start + shape.size_ns > wm {
                break;
            }
            let batches = self.open.remove(&start).unwrap_or_default();
            let end = start + shape.size_ns;
            let groups = evaluate(spec, (start, end), batches, self.devices.as_ref()).await?;
            out.push((end, groups));
        }
        Ok(out)
    }
}

/// The `time` column of a batch.
pub fn time_column(batch: &RecordBatch) -> Result<&TimestampNanosecondArray> {
    batch
        .column_by_name(strata_query::TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| RulesError::Invalid("window: rows have no time column".into()))
}

/// Aggregates one window's rows per group and checks the condition.
pub async fn evaluate(
    spec: &RuleSpec,
    (start, end): (i64, i64),
    batches: Vec<RecordBatch>,
    devices: Option<&RecordBatch>,
) -> Result<BTreeMap<AlertKey, (bool, Values)>> {
    let Some(all) = concat_aligned(&batches)? else {
        return Ok(BTreeMap::new());
    };
    let out = aggregate(spec, all, None, devices).await?;
    let mut groups = BTreeMap::new();
    for b in &out {
        for row in 0..b.num_rows() {
            for (key, mut values) in instances(&[b.slice(row, 1)])? {
                let matched = take_match(&mut values);
                stamp(&mut values, start, end);
                groups.insert(key, (matched, values));
            }
        }
    }
    Ok(groups)
}

/// Removes `__match` from a result row's values: whether the condition held.
pub fn take_match(values: &mut Values) -> bool {
    values
        .remove("__match")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// Adds `window_start` and `window_end` (RFC 3339) to a window's values.
pub fn stamp(values: &mut Values, start: i64, end: i64) {
    values.insert(
        "window_start".into(),
        strata_ingest::text::format_rfc3339(start).into(),
    );
    values.insert(
        "window_end".into(),
        strata_ingest::text::format_rfc3339(end).into(),
    );
}

/// The batches as one, all in the newest batch's layout (a field added later: older batches get
/// it as nulls); `None` for no batches.
pub fn concat_aligned(batches: &[RecordBatch]) -> Result<Option<RecordBatch>> {
    let Some(last) = batches.last() else {
        return Ok(None);
    };
    let schema = last.schema();
    let aligned: Vec<RecordBatch> = batches
        .iter()
        .map(|b| align(b, &schema))
        .collect::<Result<_>>()?;
    concat_batches(&schema, &aligned)
        .map(Some)
        .map_err(|e| RulesError::Invalid(format!("window: {e}")))
}

/// Runs the rule's aggregation ([`grouped_sql`], grouped by `extra` first if given) over `all`
/// with DataFusion (and `devices` for conditions joining them).
pub async fn aggregate(
    spec: &RuleSpec,
    all: RecordBatch,
    extra: Option<&str>,
    devices: Option<&RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    let stream = spec.stream.as_deref().unwrap_or_default();
    let ctx = crate::registry_join::session();
    if let Some(d) = devices {
        crate::registry_join::register(&ctx, d.clone())?;
    }
    let table = MemTable::try_new(all.schema(), vec![vec![all]])
        .map_err(|e| RulesError::Invalid(format!("window: {e}")))?;
    ctx.register_table(stream, Arc::new(table))
        .map_err(|e| RulesError::Invalid(format!("window: {e}")))?;
    let sql = grouped_sql(spec, &format!("\"{}\"", stream.replace('"', "\"\"")), extra);
    ctx.sql(&sql)
        .await
        .map_err(|e| RulesError::Invalid(format!("select/condition: {e}")))?
        .collect()
        .await
        .map_err(|e| RulesError::Invalid(format!("select/condition: {e}")))
}

/// `b` with `schema`'s columns (missing ones null).
pub fn align(
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
            kind: Kind::Fixed,
            size_ns: 60 * S,
            hop_ns: 60 * S,
            lateness_ns: 5 * S,
        };
        assert_eq!(tumbling.windows_of(61 * S), vec![60 * S]);
        assert_eq!(tumbling.windows_of(-1), vec![-60 * S]);
        let hopping = Shape {
            kind: Kind::Fixed,
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
        assert!(
            Shape::of(&spec(
                serde_json::json!({"type": "session", "gap": "2m", "max": "1m"})
            ))
            .is_err()
        );
        let s = Shape::of(&spec(
            serde_json::json!({"type": "session", "gap": "1m", "max": "1h"}),
        ))
        .unwrap();
        assert_eq!(
            (s.kind, s.size_ns),
            (Kind::Session { gap_ns: 60 * S }, 3600 * S)
        );
        let s = Shape::of(&spec(serde_json::json!({"type": "sliding", "size": "1m"}))).unwrap();
        assert_eq!((s.kind, s.size_ns), (Kind::Sliding, 60 * S));
        assert!(Shape::of(&spec(serde_json::json!({"type": "circular", "size": "1m"}))).is_err());
        assert!(Shape::of(&spec(serde_json::json!({"type": "tumbling"}))).is_err());
    }
}
