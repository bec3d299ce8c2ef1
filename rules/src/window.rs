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

use strata_query::arrow::array::{BooleanArray, RecordBatch};
use strata_query::arrow::compute::filter_record_batch;

use crate::error::{Result, RulesError};
use crate::spec::RuleSpec;
pub use crate::window_eval::{
    Closed, DEFAULT_LATENESS, Kind, Shape, aggregate, evaluate, grouped_sql, time_column,
    window_sql,
};

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

impl WindowState {
    /// [`WindowState::add`] for sliding and session windows.
    pub(crate) async fn add_keyed(
        &mut self,
        spec: &RuleSpec,
        shape: Shape,
        batch: &RecordBatch,
    ) -> Result<Vec<Closed>> {
        let max_t = self.keyed.insert(spec, shape, batch, true)?;
        self.late_dropped += max_t.1;
        if let Some(m) = max_t.0 {
            let wm = m.saturating_sub(shape.lateness_ns);
            self.watermark = Some(self.watermark.map_or(wm, |w| w.max(wm)));
        }
        self.close_keyed(spec, shape).await
    }

    async fn close_keyed(&mut self, spec: &RuleSpec, shape: Shape) -> Result<Vec<Closed>> {
        match self.watermark {
            Some(wm) => {
                let devices = self.devices.as_ref();
                self.keyed.close(spec, shape, wm, devices).await
            }
            None => Ok(Vec::new()),
        }
    }

    /// After a restart: `rows` (the stream from before the watermark's reach, see
    /// [`rebuild_from`]) become the groups' state as if they had been processed, without
    /// evaluating the windows the watermark `wm` had closed.
    pub fn seed_keyed(&mut self, spec: &RuleSpec, shape: Shape, wm: i64, rows: &[RecordBatch]) {
        self.watermark = Some(wm);
        for b in rows {
            if let Err(e) = self.keyed.insert(spec, shape, b, false) {
                tracing::warn!(rule = %spec.name, error = %e, "cannot rebuild a window");
            }
        }
        self.keyed.settle(shape, wm);
    }
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
