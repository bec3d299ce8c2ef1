//! Sliding and session windows: windows of one group (the rule's `group_by` values) at a time.
//!
//! Each group keeps the rows it may still need, in memory (never history re-read per batch):
//!
//! - **Sliding** (Azure Stream Analytics): the window ending at `T` holds the group's rows with
//!   time in `(T - size, T]`; there is one at every time the window's content changes — when a
//!   row enters (`T` = its time) or leaves (`T` = its time + size). Windows with `T` at or
//!   before the watermark are evaluated, in order; a window that became empty (its last row left)
//!   makes the group's instance inactive. A row whose own window (`T` = its time) was already
//!   evaluated — time at or before the watermark — is late and dropped. Rows are forgotten once
//!   they left the window (`time + size` at or before the watermark).
//! - **Session**: a group's rows less than `gap` apart form one session `[first, last + gap)`,
//!   cut at multiples of `max` (as in Stream Analytics, sessions cannot cross them). A session
//!   closes when the watermark reaches its end. A row before the end of the group's last closed
//!   session is late and dropped; any other row, even behind the watermark, joins or opens only
//!   its own session (late rows within the lateness re-open only their window).
//!
//! All windows a batch closes are aggregated in one DataFusion query (`GROUP BY __w, group_by`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use strata_query::arrow::array::{Array, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use strata_query::arrow::compute::{filter_record_batch, take_record_batch};
use strata_query::arrow::datatypes::{DataType, Field, Schema};
use strata_query::arrow::util::display::array_value_to_string;

use crate::alert::AlertKey;
use crate::error::{Result, RulesError};
use crate::eval::{Values, instances};
use crate::spec::RuleSpec;
use crate::window_eval::{
    Closed, Kind, Shape, aggregate, concat_aligned, stamp, take_match, time_column,
};

/// Column naming the window of each row in the combined aggregation.
const WINDOW_COLUMN: &str = "__w";

/// The rows of one group.
#[derive(Debug, Default)]
struct Group {
    /// Row batches (this group's rows only).
    parts: Vec<RecordBatch>,
    /// Times of those rows, sorted.
    times: Vec<i64>,
    /// Session: end of the last closed session (rows before it are late).
    closed_until: Option<i64>,
}

/// Per-group state of a sliding or session window rule.
#[derive(Debug, Default)]
pub struct Keyed {
    groups: BTreeMap<AlertKey, Group>,
    /// Sliding: windows ending at or before this were evaluated.
    emitted_until: Option<i64>,
}

/// A window to evaluate: its group, start, end and rows.
struct Pending {
    key: AlertKey,
    start: i64,
    end: i64,
    rows: Vec<RecordBatch>,
}

/// Where a restart must start reading the stream to rebuild the groups under watermark `wm`.
pub fn rebuild_from(shape: Shape, wm: i64) -> i64 {
    match shape.kind {
        // Rows still inside a window not evaluated yet.
        Kind::Sliding | Kind::Fixed => wm.saturating_sub(shape.size_ns),
        // The start of the `max` block holding the last row an open session can have started
        // from: open sessions end after wm, so their last row is after wm - gap.
        Kind::Session { gap_ns } => wm
            .saturating_sub(gap_ns)
            .div_euclid(shape.size_ns)
            .saturating_mul(shape.size_ns)
            .saturating_sub(1),
    }
}

impl Keyed {
    /// Adds a batch's rows to their groups (dropping late ones when `drop_late`); returns the
    /// batch's highest time and the rows dropped.
    pub(crate) fn insert(
        &mut self,
        spec: &RuleSpec,
        shape: Shape,
        batch: &RecordBatch,
        drop_late: bool,
    ) -> Result<(Option<i64>, u64)> {
        let times = time_column(batch)?;
        let keys = group_keys(spec, batch)?;
        // Row indices per group (a mask per group would cost rows × groups).
        let mut picks: BTreeMap<&AlertKey, Vec<u32>> = BTreeMap::new();
        let (mut max_t, mut dropped) = (None, 0);
        let mut adjusted = Vec::new();
        for (row, key) in keys.iter().enumerate() {
            let t = times.value(row);
            max_t = Some(max_t.map_or(t, |m: i64| m.max(t)));
            match self.open_from(shape, key) {
                Some(from) if drop_late && t < from && shape.adjust_late => {
                    adjusted.push((row, from));
                }
                Some(from) if drop_late && t < from => {
                    dropped += 1;
                    continue;
                }
                _ => {}
            }
            picks.entry(key).or_default().push(row as u32);
        }
        let batch = &crate::window_eval::with_times(batch, &adjusted)?;
        for (key, rows) in picks {
            let part = take_record_batch(batch, &UInt32Array::from(rows))
                .map_err(|e| RulesError::Invalid(format!("window: {e}")))?;
            let part_times = time_column(&part)?.values().to_vec();
            let g = self.groups.entry(key.clone()).or_default();
            g.times.extend(part_times);
            g.times.sort_unstable();
            g.parts.push(part);
        }
        Ok((max_t, dropped))
    }

    /// The earliest event time group `key` still takes (a row before it is late): after the
    /// last evaluated sliding window, or the end of the group's last closed session.
    fn open_from(&self, shape: Shape, key: &AlertKey) -> Option<i64> {
        match shape.kind {
            Kind::Sliding => self.emitted_until.map(|e| e.saturating_add(1)),
            Kind::Session { .. } => self.groups.get(key).and_then(|g| g.closed_until),
            Kind::Fixed => None,
        }
    }

    /// Evaluates every window the watermark `wm` closed, oldest first, and forgets rows no
    /// window needs any more.
    pub async fn close(
        &mut self,
        spec: &RuleSpec,
        shape: Shape,
        wm: i64,
        devices: Option<&RecordBatch>,
    ) -> Result<Vec<Closed>> {
        let pending = self.take_closed(shape, wm);
        evaluate_all(spec, pending, devices).await
    }

    /// The windows `wm` closed, with their rows; updates the state as if they were evaluated.
    fn take_closed(&mut self, shape: Shape, wm: i64) -> Vec<Pending> {
        let mut out = Vec::new();
        match shape.kind {
            Kind::Sliding => {
                let after = self.emitted_until;
                for (key, g) in &self.groups {
                    for end in change_points(&g.times, shape.size_ns, after, wm) {
                        let rows = select(&g.parts, |t| t > end - shape.size_ns && t <= end);
                        out.push(Pending {
                            key: key.clone(),
                            start: end - shape.size_ns,
                            end,
                            rows,
                        });
                    }
                }
            }
            Kind::Session { gap_ns } => {
                for (key, g) in &mut self.groups {
                    for (start, end) in sessions(&g.times, gap_ns, shape.size_ns) {
                        if end > wm {
                            break;
                        }
                        let rows = select(&g.parts, |t| t >= start && t < end);
                        g.closed_until = Some(g.closed_until.map_or(end, |c| c.max(end)));
                        out.push(Pending {
                            key: key.clone(),
                            start,
                            end,
                            rows,
                        });
                    }
                }
            }
            Kind::Fixed => {}
        }
        self.settle(shape, wm);
        out.sort_by(|a, b| (a.end, &a.key).cmp(&(b.end, &b.key)));
        out
    }

    /// Marks everything up to `wm` as evaluated and forgets rows no open window needs.
    pub(crate) fn settle(&mut self, shape: Shape, wm: i64) {
        match shape.kind {
            Kind::Sliding => {
                self.emitted_until = Some(self.emitted_until.map_or(wm, |e| e.max(wm)));
                let keep_after = wm - shape.size_ns;
                self.retain(|t| t > keep_after);
            }
            Kind::Session { gap_ns } => {
                for g in self.groups.values_mut() {
                    for (_, end) in sessions(&g.times, gap_ns, shape.size_ns) {
                        if end > wm {
                            break;
                        }
                        g.closed_until = Some(g.closed_until.map_or(end, |c| c.max(end)));
                    }
                }
                for g in self.groups.values_mut() {
                    if let Some(c) = g.closed_until {
                        retain_group(g, |t| t >= c);
                    }
                }
            }
            Kind::Fixed => {}
        }
    }

    fn retain(&mut self, keep: impl Fn(i64) -> bool + Copy) {
        for g in self.groups.values_mut() {
            retain_group(g, keep);
        }
        // A sliding group without rows has no window left; a session group keeps its
        // `closed_until` so that late rows stay late.
        self.groups
            .retain(|_, g| !g.times.is_empty() || g.closed_until.is_some());
    }
}

fn retain_group(g: &mut Group, keep: impl Fn(i64) -> bool + Copy) {
    if g.times.iter().all(|&t| keep(t)) {
        return;
    }
    g.times.retain(|&t| keep(t));
    g.parts = select(&g.parts, keep);
}

/// Sliding window ends in `(after, wm]`: each row's time and time + size, once each.
pub(crate) fn change_points(times: &[i64], size: i64, after: Option<i64>, wm: i64) -> Vec<i64> {
    let points: BTreeSet<i64> = times
        .iter()
        .flat_map(|&t| [t, t.saturating_add(size)])
        .filter(|&p| after.is_none_or(|a| p > a) && p <= wm)
        .collect();
    points.into_iter().collect()
}

/// Sessions `[start, end)` of sorted `times`: a row less than `gap` after the previous one
/// (and in the same `max` block) extends the session; the end is last + gap, cut at the block.
pub fn sessions(times: &[i64], gap: i64, max: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    let mut cur: Option<(i64, i64, i64)> = None; // (start, last, block)
    for &t in times {
        let block = t.div_euclid(max);
        cur = match cur {
            Some((start, last, b)) if b == block && t - last < gap => Some((start, t, b)),
            Some((start, last, b)) => {
                out.push((start, session_end(last, gap, b, max)));
                Some((t, t, block))
            }
            None => Some((t, t, block)),
        };
    }
    if let Some((start, last, b)) = cur {
        out.push((start, session_end(last, gap, b, max)));
    }
    out
}

/// End of a session whose last row is `last`, in `max` block `block`.
pub(crate) fn session_end(last: i64, gap: i64, block: i64, max: i64) -> i64 {
    last.saturating_add(gap)
        .min(block.saturating_add(1).saturating_mul(max))
}

/// The rows of `parts` whose time satisfies `keep` (empty batches left out).
fn select(parts: &[RecordBatch], keep: impl Fn(i64) -> bool) -> Vec<RecordBatch> {
    parts
        .iter()
        .filter_map(|p| {
            let times = time_column(p).ok()?;
            let mask: BooleanArray = times.values().iter().map(|&t| Some(keep(t))).collect();
            let out = filter_record_batch(p, &mask).ok()?;
            (out.num_rows() > 0).then_some(out)
        })
        .collect()
}

/// The group key of every row: its `group_by` columns as text (nulls left out).
fn group_keys(spec: &RuleSpec, batch: &RecordBatch) -> Result<Vec<AlertKey>> {
    let cols: Vec<(&String, Option<&Arc<dyn Array>>)> = spec
        .group_by
        .iter()
        .map(|g| (g, batch.column_by_name(g)))
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            let mut key = AlertKey::new();
            for (name, col) in &cols {
                if let Some(c) = col.filter(|c| c.is_valid(row)) {
                    let v = array_value_to_string(c, row)
                        .map_err(|e| RulesError::Invalid(format!("group_by: {e}")))?;
                    key.insert((*name).clone(), v);
                }
            }
            Ok(key)
        })
        .collect()
}

/// Aggregates every pending window in one query and returns them as closed windows by end.
async fn evaluate_all(
    spec: &RuleSpec,
    pending: Vec<Pending>,
    devices: Option<&RecordBatch>,
) -> Result<Vec<Closed>> {
    let mut by_end: BTreeMap<i64, BTreeMap<AlertKey, (bool, Values)>> = BTreeMap::new();
    let mut parts = Vec::new();
    for (i, p) in pending.iter().enumerate() {
        let mut empty = Values::new();
        stamp(&mut empty, p.start, p.end);
        // An empty window (its last row left): the condition does not hold.
        by_end
            .entry(p.end)
            .or_default()
            .insert(p.key.clone(), (false, empty));
        for r in &p.rows {
            parts.push(with_window(r, i as i64)?);
        }
    }
    if let Some(all) = concat_aligned(&parts)? {
        for b in aggregate(spec, all, Some(WINDOW_COLUMN), devices).await? {
            for row in 0..b.num_rows() {
                for (key, mut values) in instances(&[b.slice(row, 1)])? {
                    let w = values
                        .remove(WINDOW_COLUMN)
                        .and_then(|v| v.as_f64())
                        .map(|v| v as usize);
                    let Some(p) = w.and_then(|w| pending.get(w)) else {
                        continue;
                    };
                    let matched = take_match(&mut values);
                    stamp(&mut values, p.start, p.end);
                    let groups = by_end.entry(p.end).or_default();
                    // The result's key replaces the placeholder of an empty window.
                    groups.remove(&p.key);
                    groups.insert(key, (matched, values));
                }
            }
        }
    }
    Ok(by_end.into_iter().collect())
}

/// `b` with a leading `__w` column holding `w`.
fn with_window(b: &RecordBatch, w: i64) -> Result<RecordBatch> {
    let mut fields = vec![Arc::new(Field::new(WINDOW_COLUMN, DataType::Int64, false))];
    fields.extend(b.schema().fields().iter().cloned());
    let mut cols: Vec<Arc<dyn Array>> = vec![Arc::new(Int64Array::from(vec![w; b.num_rows()]))];
    cols.extend(b.columns().iter().cloned());
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| RulesError::Invalid(format!("window: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_split_on_gaps_and_max_blocks() {
        assert_eq!(sessions(&[1, 2, 3, 7, 8], 3, 100), vec![(1, 6), (7, 11)]);
        // Exactly `gap` apart: a new session.
        assert_eq!(sessions(&[1, 4], 3, 100), vec![(1, 4), (4, 7)]);
        // A block boundary (multiples of max = 10) cuts a session.
        assert_eq!(sessions(&[8, 9, 10, 11], 3, 10), vec![(8, 10), (10, 14)]);
        assert_eq!(sessions(&[], 3, 10), vec![]);
    }

    #[test]
    fn sliding_change_points_are_entries_and_exits() {
        assert_eq!(change_points(&[1, 3], 5, None, 100), vec![1, 3, 6, 8]);
        assert_eq!(change_points(&[1, 3], 5, Some(3), 7), vec![6]);
        assert_eq!(change_points(&[1, 6], 5, None, 100), vec![1, 6, 11]);
    }
}
