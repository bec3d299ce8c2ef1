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
    /// Tumbling/hopping windows of plain aggregates: incremental accumulators instead of rows
    /// (decided at the first batch, see [`crate::window_fast`]).
    fast: Option<crate::window_fast::Fast>,
    fast_keyed: Option<crate::window_fast_keyed::FastKeyed>,
    /// Where the incremental path interns its group keys (shared by the rules of one instance).
    pub interners: crate::window_fast::GroupInterners,
    fast_checked: bool,
    /// Keys whose instance may be open (set before [`WindowState::add`]; `None`: every group
    /// of a closed window is returned, as dry runs need). With it, the fast path returns only
    /// the groups that matched or are in it: the others cannot change state.
    pub may_be_open: Option<std::collections::HashSet<crate::alert::AlertKey>>,
}

impl WindowState {
    /// Adds a batch (with a `time` column) and returns the windows it closed, oldest first.
    pub async fn add(
        &mut self,
        spec: &RuleSpec,
        shape: Shape,
        batch: &RecordBatch,
    ) -> Result<Vec<Closed>> {
        self.choose(spec, shape, batch);
        if shape.kind != Kind::Fixed {
            return self.add_keyed(spec, shape, batch).await;
        }
        if let Some(f) = self.fast.as_mut() {
            let wm = self.watermark;
            let (max_t, late) = f.add(shape, batch, wm)?;
            self.late_dropped += late;
            if let Some(m) = max_t {
                let wm = m.saturating_sub(shape.lateness_ns);
                self.watermark = Some(self.watermark.map_or(wm, |w| w.max(wm)));
            }
            return self.close(spec, shape).await;
        }
        let times = time_column(batch)?;
        let mut targets: BTreeMap<i64, Vec<bool>> = BTreeMap::new();
        let mut max_t = None;
        let mut adjusted = Vec::new();
        let wm = self.watermark;
        let open_of = |t: i64| -> Vec<i64> {
            shape
                .windows_of(t)
                .into_iter()
                .filter(|s| wm.is_none_or(|wm| s + shape.size_ns > wm))
                .collect()
        };
        for row in 0..batch.num_rows() {
            let t = times.value(row);
            max_t = Some(max_t.map_or(t, |m: i64| m.max(t)));
            let mut open = open_of(t);
            if open.is_empty() {
                match wm {
                    // `late_policy: adjust`: the row counts at the watermark.
                    Some(wm) if shape.adjust_late => {
                        adjusted.push((row, wm));
                        open = open_of(wm);
                    }
                    _ => self.late_dropped += 1,
                }
            }
            for s in open {
                targets
                    .entry(s)
                    .or_insert_with(|| vec![false; batch.num_rows()])[row] = true;
            }
        }
        let batch = &crate::window_eval::with_times(batch, &adjusted)?;
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
            return self.close_keyed(spec, shape).await;
        }
        if let Some(f) = self.fast.as_mut() {
            return f.close(spec, shape, wm, self.may_be_open.as_mut());
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
    /// Adds a batch to the incremental path's state (see [`crate::window_share`]) and moves the
    /// watermark, closing nothing; an error if the rule does not take that path.
    pub(crate) fn add_rows(
        &mut self,
        spec: &RuleSpec,
        shape: Shape,
        batch: &RecordBatch,
    ) -> Result<()> {
        self.choose(spec, shape, batch);
        let wm = self.watermark;
        let (max_t, late) = match (self.fast.as_mut(), self.fast_keyed.as_mut()) {
            (Some(f), _) => f.add(shape, batch, wm)?,
            (_, Some(f)) => f.insert(shape, batch, true)?,
            (None, None) => {
                return Err(RulesError::Invalid(
                    "window: not computed incrementally".into(),
                ));
            }
        };
        self.late_dropped += late;
        if let Some(m) = max_t {
            let wm = m.saturating_sub(shape.lateness_ns);
            self.watermark = Some(self.watermark.map_or(wm, |w| w.max(wm)));
        }
        Ok(())
    }

    /// Closes what the watermark reached for each of the rules `judges` sharing this state.
    pub(crate) fn close_for(
        &mut self,
        shape: Shape,
        judges: &mut [crate::window_fast::Judge],
    ) -> Vec<Result<Vec<Closed>>> {
        match (self.watermark, self.fast.as_mut(), self.fast_keyed.as_mut()) {
            (Some(wm), Some(f), _) => f.close_for(shape, wm, judges),
            (Some(wm), _, Some(f)) => f.close_for(shape, wm, judges),
            _ => judges.iter().map(|_| Ok(Vec::new())).collect(),
        }
    }

    /// Whether the rule takes the incremental path (known after its first batch).
    pub(crate) fn is_incremental(&self) -> bool {
        self.fast.is_some() || self.fast_keyed.is_some()
    }

    /// Whether the rule's first batch put it on the general (DataFusion) path: it stays there,
    /// alone, with its open windows, even once its stream gains the columns the incremental path
    /// needs (a `group_by` tag first written later).
    pub(crate) fn is_general(&self) -> bool {
        self.fast_checked && !self.is_incremental()
    }
}

impl WindowState {
    /// At the first batch: whether the rule takes the incremental path (plain aggregates of
    /// float columns, see [`crate::window_fast`]).
    fn choose(&mut self, spec: &RuleSpec, shape: Shape, batch: &RecordBatch) {
        if self.fast_checked {
            return;
        }
        self.fast_checked = true;
        let Some(plan) = crate::window_fast::Plan::of(spec, &batch.schema()) else {
            return;
        };
        if shape.kind == Kind::Fixed {
            self.fast = Some(crate::window_fast::Fast::new(plan, &self.interners));
        } else {
            self.fast_keyed = Some(crate::window_fast_keyed::FastKeyed::new(
                plan,
                &self.interners,
            ));
        }
    }

    /// [`WindowState::add`] for sliding and session windows.
    pub(crate) async fn add_keyed(
        &mut self,
        spec: &RuleSpec,
        shape: Shape,
        batch: &RecordBatch,
    ) -> Result<Vec<Closed>> {
        let max_t = match self.fast_keyed.as_mut() {
            Some(f) => f.insert(shape, batch, true)?,
            None => self.keyed.insert(spec, shape, batch, true)?,
        };
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
                if let Some(f) = self.fast_keyed.as_mut() {
                    return f.close(spec, shape, wm, self.may_be_open.as_mut());
                }
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
            self.choose(spec, shape, b);
            let inserted = match self.fast_keyed.as_mut() {
                Some(f) => f.insert(shape, b, false),
                None => self.keyed.insert(spec, shape, b, false),
            };
            if let Err(e) = inserted {
                tracing::warn!(rule = %spec.name, error = %e, "cannot rebuild a window");
            }
        }
        match self.fast_keyed.as_mut() {
            Some(f) => f.settle(shape, wm),
            None => self.keyed.settle(shape, wm),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;
    use strata_query::arrow::array::{Float64Array, StringArray, TimestampNanosecondArray};
    use strata_query::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    /// A batch of (device, time, temperature) rows; `None` temperatures are NULL.
    fn rows(rows: &[(&str, i64, Option<f64>)]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
            Field::new("device", DataType::Utf8, true),
            Field::new("temperature", DataType::Float64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(TimestampNanosecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(rows.iter().map(|r| Some(r.0)).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
            ],
        )
        .unwrap()
    }

    /// Every window closed by `batches` (then by a final watermark), through one path.
    fn run(spec: &RuleSpec, batches: &[RecordBatch], fast: bool) -> Vec<Closed> {
        run_open(spec, batches, fast, None)
    }

    /// [`run`] with the keys whose instance may be open (`None`: every result).
    fn run_open(
        spec: &RuleSpec,
        batches: &[RecordBatch],
        fast: bool,
        may_be_open: Option<std::collections::HashSet<crate::alert::AlertKey>>,
    ) -> Vec<Closed> {
        let shape = Shape::of(spec).unwrap();
        let mut state = WindowState {
            fast_checked: !fast,
            may_be_open,
            ..Default::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut out = Vec::new();
        for b in batches {
            out.extend(rt.block_on(state.add(spec, shape, b)).unwrap());
        }
        out.extend(
            rt.block_on(state.close_until(spec, shape, 1_000 * S))
                .unwrap(),
        );
        assert_eq!(
            state.fast.is_some() || state.fast_keyed.is_some(),
            fast,
            "path"
        );
        out
    }

    /// 30 batches of 8 rows over devices a, b, c: some rows late or out of order by up to 4 s,
    /// one value in 10 NULL.
    pub(crate) fn mixed_batches() -> Vec<RecordBatch> {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let devices = ["a", "b", "c"];
        let mut batches = Vec::new();
        let mut t = 0i64;
        for _ in 0..30 {
            let mut b = Vec::new();
            for _ in 0..8 {
                t += (next() % 700) as i64 * 1_000_000;
                // Some rows late or out of order by up to 4 s.
                let at = t - (next() % 5) as i64 * (next() % 2) as i64 * S;
                let v = (next() % 10 != 0).then(|| (next() % 1000) as f64 / 10.0);
                b.push((devices[next() as usize % 3], at, v));
            }
            batches.push(rows(&b));
        }
        batches
    }

    /// One spec per window kind over `select`.
    pub(crate) fn specs(select: &str) -> Vec<RuleSpec> {
        let windows = [
            serde_json::json!({"type": "tumbling", "size": "5s"}),
            serde_json::json!({"type": "hopping", "size": "6s", "hop": "2s"}),
            serde_json::json!({"type": "sliding", "size": "3s"}),
            serde_json::json!({"type": "session", "gap": "1s", "max": "4s"}),
        ];
        windows
            .into_iter()
            .map(|w| {
                serde_json::from_value(serde_json::json!({"name": "w",
                    "kind": "window", "stream": "env", "window": w, "group_by": ["device"],
                    "select": select, "condition": "t > 50 AND c > 1", "lateness": "2s"}))
                .unwrap()
            })
            .collect()
    }

    /// With the keys that may be open given (as the rules worker gives them), the incremental
    /// path returns exactly the results that can change state: those that matched and those of
    /// keys that matched before (the open set grows with each match).
    #[test]
    fn only_results_that_can_change_state_are_returned() {
        let batches = mixed_batches();
        for spec in specs("avg(temperature) AS t, count(*) AS c") {
            let all = run(&spec, &batches, true);
            let some = run_open(&spec, &batches, true, Some(Default::default()));
            let mut open = std::collections::HashSet::new();
            let expected: Vec<Closed> = all
                .into_iter()
                .map(|(end, groups)| {
                    let kept = groups.into_iter().filter(|(k, (m, _))| {
                        let keep = *m || open.contains(k);
                        if *m {
                            open.insert(k.clone());
                        }
                        keep
                    });
                    (end, kept.collect())
                })
                .filter(|(_, g): &Closed| !g.is_empty())
                .collect();
            let some: Vec<Closed> = some.into_iter().filter(|(_, g)| !g.is_empty()).collect();
            assert!(expected.iter().any(|(_, g)| g.values().any(|(m, _)| !m)));
            assert_eq!(expected, some, "{:?}", spec.window);
        }
    }

    /// The incremental path gives the DataFusion path's windows, groups, matches and values
    /// (up to float rounding), late and out-of-order rows and NULLs included.
    #[test]
    fn incremental_windows_equal_the_sql_aggregation() {
        let batches = mixed_batches();
        let select = "avg(temperature) AS t, max(temperature) AS m, min(temperature) AS lo, \
                      sum(temperature) AS s, count(temperature) AS n, count(*) AS c";
        for spec in specs(select) {
            assert_paths_agree(&spec, &batches);
        }
    }

    /// The DataFusion path and the incremental path over `batches` give the same windows,
    /// groups, matches and values (up to float rounding).
    fn assert_paths_agree(spec: &RuleSpec, batches: &[RecordBatch]) {
        let w = format!("{:?}", spec.window);
        let (sql, fast) = (run(spec, batches, false), run(spec, batches, true));
        assert!(!sql.is_empty());
        assert_eq!(sql.len(), fast.len(), "{w}");
        for ((e1, g1), (e2, g2)) in sql.iter().zip(&fast) {
            assert_eq!(e1, e2, "{w}");
            assert_eq!(
                g1.keys().collect::<Vec<_>>(),
                g2.keys().collect::<Vec<_>>(),
                "{w}"
            );
            for (k, (m1, v1)) in g1 {
                let (m2, v2) = &g2[k];
                assert_eq!(m1, m2, "{w} {k:?}");
                assert_eq!(v1.keys().collect::<Vec<_>>(), v2.keys().collect::<Vec<_>>());
                for (name, a) in v1 {
                    let b = &v2[name];
                    match (a.as_f64(), b.as_f64()) {
                        (Some(x), Some(y)) => assert!((x - y).abs() < 1e-9, "{w} {name}"),
                        _ => assert_eq!(a, b, "{w} {name}"),
                    }
                }
            }
        }
    }

    /// Rows dropped as late when `batches` go through one path.
    fn dropped(spec: &RuleSpec, batches: &[RecordBatch], fast: bool) -> u64 {
        let shape = Shape::of(spec).unwrap();
        let mut state = WindowState {
            fast_checked: !fast,
            ..Default::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for b in batches {
            rt.block_on(state.add(spec, shape, b)).unwrap();
        }
        state.late_dropped
    }

    /// `late_policy: adjust`: rows the default policy drops are kept (moved to the watermark),
    /// for every window kind, and both paths still give the same windows.
    #[test]
    fn adjusted_late_rows_are_kept_and_both_paths_agree() {
        let batches = mixed_batches();
        let select = "avg(temperature) AS t, max(temperature) AS m, count(*) AS c";
        let mut dropped_by_default = 0;
        for mut spec in specs(select) {
            let w = format!("{:?}", spec.window);
            dropped_by_default += dropped(&spec, &batches, false);
            assert_eq!(
                dropped(&spec, &batches, false),
                dropped(&spec, &batches, true),
                "{w}"
            );
            spec.late_policy = Some(crate::spec::LatePolicy::Adjust);
            assert_eq!(dropped(&spec, &batches, false), 0, "{w}");
            assert_eq!(dropped(&spec, &batches, true), 0, "{w}");
            assert_paths_agree(&spec, &batches);
        }
        assert!(dropped_by_default > 0, "the data has late rows");
    }

    /// Tumbling 5 s, no lateness: a row at 3 s arriving after one at 12 s (windows up to 10 s
    /// closed) counts in the window [10 s, 15 s) with `adjust`, and is dropped by default.
    #[test]
    fn an_adjusted_late_row_counts_in_the_window_open_at_the_watermark() {
        let mut spec: RuleSpec = serde_json::from_value(serde_json::json!({"name": "w",
            "kind": "window", "stream": "env", "window": {"type": "tumbling", "size": "5s"},
            "group_by": ["device"], "select": "avg(temperature) AS t, count(*) AS c",
            "condition": "c > 0", "lateness": "0s", "late_policy": "adjust"}))
        .unwrap();
        spec.check().unwrap();
        let batches = [
            rows(&[("a", S, Some(10.0)), ("a", 12 * S, Some(20.0))]),
            rows(&[("a", 3 * S, Some(100.0))]),
            rows(&[("a", 16 * S, Some(0.0))]),
        ];
        let value = |out: &[Closed], name: &str| {
            let (_, groups) = out.iter().find(|(end, _)| *end == 15 * S).unwrap();
            let (_, values) = groups.values().next().unwrap();
            values[name].as_f64()
        };
        for fast in [false, true] {
            let out = run(&spec, &batches, fast);
            assert_eq!(value(&out, "t"), Some(60.0), "fast {fast}");
            assert_eq!(value(&out, "c"), Some(2.0), "fast {fast}");
        }
        spec.late_policy = None;
        for fast in [false, true] {
            let out = run(&spec, &batches, fast);
            assert_eq!(value(&out, "t"), Some(20.0), "fast {fast}");
        }
    }

    /// A batch written newest first (an import in reverse order: far more out-of-order rows
    /// than are inserted in place, so each group is appended and sorted once), then one in
    /// order with equal times: the incremental path still equals the SQL aggregation.
    #[test]
    fn a_batch_written_newest_first_equals_the_sql_aggregation() {
        let mut first = Vec::new();
        for i in (0..400i64).rev() {
            let v = (i % 9 != 0).then(|| (i * 37 % 1000) as f64 / 10.0);
            first.push((["a", "b"][(i % 2) as usize], i * S / 4, v));
        }
        let mut second = Vec::new();
        for i in 0..60i64 {
            let t = 100 * S + (i / 2) * S / 2;
            second.push((["a", "b"][(i % 2) as usize], t, Some((i * 13 % 100) as f64)));
        }
        let batches = vec![rows(&first), rows(&second)];
        let select = "avg(temperature) AS t, max(temperature) AS m, min(temperature) AS lo, \
                      sum(temperature) AS s, count(temperature) AS n, count(*) AS c";
        for spec in specs(select) {
            assert_paths_agree(&spec, &batches);
        }
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn windows_of_a_time() {
        let tumbling = Shape {
            kind: Kind::Fixed,
            size_ns: 60 * S,
            hop_ns: 60 * S,
            lateness_ns: 5 * S,
            adjust_late: false,
        };
        assert_eq!(tumbling.windows_of(61 * S), vec![60 * S]);
        assert_eq!(tumbling.windows_of(-1), vec![-60 * S]);
        let hopping = Shape {
            kind: Kind::Fixed,
            size_ns: 60 * S,
            hop_ns: 20 * S,
            lateness_ns: 0,
            adjust_late: false,
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
