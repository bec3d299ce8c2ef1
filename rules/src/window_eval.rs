//! Window shapes and the aggregation of window rules, shared by the tumbling/hopping windows
//! ([`crate::window`]) and the per-group sliding and session windows ([`crate::window_keyed`]):
//! the parsed `window` of a rule, the SQL of its aggregation and condition, and running it with
//! DataFusion over a window's rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_query::arrow::array::{Array, RecordBatch, TimestampNanosecondArray};
use strata_query::arrow::compute::concat_batches;
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
    /// A row whose windows have all closed moves forward to the watermark (`late_policy:
    /// adjust`) instead of being dropped.
    pub adjust_late: bool,
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
        let adjust_late = spec.late_policy == Some(crate::spec::LatePolicy::Adjust);
        if w.kind == "session" {
            return session_shape(&text, lateness_ns).map(|s| Shape { adjust_late, ..s });
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
            adjust_late,
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
        adjust_late: false,
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

/// A closed window's groups: key → (condition held, values).
pub type Closed = (i64, BTreeMap<AlertKey, (bool, Values)>);

/// The `time` column of a batch.
pub fn time_column(batch: &RecordBatch) -> Result<&TimestampNanosecondArray> {
    batch
        .column_by_name(strata_query::TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| RulesError::Invalid("window: rows have no time column".into()))
}

/// `batch` with the event times of some rows replaced (`late_policy: adjust`): `(row, time)`.
pub fn with_times(batch: &RecordBatch, changes: &[(usize, i64)]) -> Result<RecordBatch> {
    if changes.is_empty() {
        return Ok(batch.clone());
    }
    let old = time_column(batch)?;
    let mut times = old.values().to_vec();
    for &(row, t) in changes {
        times[row] = t;
    }
    let new = TimestampNanosecondArray::new(times.into(), old.nulls().cloned())
        .with_data_type(old.data_type().clone());
    let at = batch
        .schema()
        .index_of(strata_query::TIME_COLUMN)
        .map_err(|e| RulesError::Invalid(format!("window: {e}")))?;
    let mut columns = batch.columns().to_vec();
    columns[at] = Arc::new(new);
    RecordBatch::try_new(batch.schema(), columns)
        .map_err(|e| RulesError::Invalid(format!("window: {e}")))
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
