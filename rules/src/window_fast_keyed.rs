//! Sliding and session window rules of plain aggregates ([`crate::window_fast::Plan`]) without
//! DataFusion and without a record batch per group: each group (interned to a dense id) keeps
//! its rows as sorted times and the float inputs the select reads, nothing else. The windows
//! and their semantics are those of [`crate::window_keyed`] (same change points, sessions,
//! lateness and forgetting, computed by the same functions); a closed window's aggregates are
//! computed over its rows, all closed windows of a batch become one result batch and the
//! condition runs over it once.

use std::collections::{BTreeMap, HashSet};

use strata_query::arrow::array::{Array, RecordBatch};

use crate::alert::AlertKey;
use crate::error::Result;
use crate::eval::{Values, instances};
use crate::spec::RuleSpec;
use crate::window_eval::{Closed, Kind, Shape, stamp, time_column};
use crate::window_fast::{Condition, Entry, GroupInterners, Groups, Plan, Stat, wanted};
use crate::window_keyed::{change_points, session_end, sessions};

/// The rows of one group: times sorted, inputs `width` per row (`None`: NULL).
#[derive(Debug, Default)]
struct Group {
    times: Vec<i64>,
    inputs: Vec<Option<f64>>,
    /// Session: end of the last closed session (rows before it are late).
    closed_until: Option<i64>,
    /// Rows were appended out of time order.
    unsorted: bool,
    /// Session: no session of this group ends before this time (`None`: not known yet). Set
    /// to the first open session's end when the group's sessions are computed, lowered by every
    /// row inserted since (a session holding row `t` ends at or after `t + gap` or its block's
    /// end), so a watermark below it closes nothing and the group is skipped.
    session_floor: Option<i64>,
}

/// A closed window: group, start, end, rows, statistics.
struct Done {
    group: usize,
    start: i64,
    end: i64,
    rows: i64,
    stats: Vec<Stat>,
}

/// Incremental state of one sliding or session window rule.
#[derive(Debug)]
pub struct FastKeyed {
    plan: Plan,
    groups: Groups,
    rows: Vec<Group>,
    /// Sliding: windows ending at or before this were evaluated.
    emitted_until: Option<i64>,
    condition: Condition,
}

impl FastKeyed {
    /// Empty state for `plan`, its groups interned by `interners`.
    pub fn new(plan: Plan, interners: &GroupInterners) -> FastKeyed {
        FastKeyed {
            groups: interners.groups(plan.group_by()),
            plan,
            rows: Vec::new(),
            emitted_until: None,
            condition: Condition::default(),
        }
    }

    /// Adds a batch's rows to their groups (dropping late ones when `drop_late`); returns the
    /// batch's highest time and the rows dropped.
    pub fn insert(
        &mut self,
        shape: Shape,
        batch: &RecordBatch,
        drop_late: bool,
    ) -> Result<(Option<i64>, u64)> {
        let times = time_column(batch)?;
        let gids = self.groups.ids_of(self.plan.group_by(), batch)?;
        let gids = gids.as_slice();
        let inputs = self.plan.input_columns(batch)?;
        self.rows.resize_with(self.groups.len(), Group::default);
        let (mut max_t, mut dropped) = (None, 0);
        for (row, &g) in gids.iter().enumerate() {
            let t = times.value(row);
            max_t = Some(max_t.map_or(t, |m: i64| m.max(t)));
            if drop_late && self.is_late(shape, g as usize, t) {
                dropped += 1;
                continue;
            }
            let grp = &mut self.rows[g as usize];
            if let Kind::Session { gap_ns } = shape.kind {
                let end = session_end(t, gap_ns, t.div_euclid(shape.size_ns), shape.size_ns);
                grp.session_floor = grp.session_floor.map(|f| f.min(end));
            }
            grp.unsorted |= grp.times.last().is_some_and(|&l| t < l);
            grp.times.push(t);
            for c in &inputs {
                grp.inputs
                    .push(c.filter(|c| c.is_valid(row)).map(|c| c.value(row)));
            }
        }
        let width = self.plan.width();
        for g in self.rows.iter_mut().filter(|g| g.unsorted) {
            sort_group(g, width);
        }
        Ok((max_t, dropped))
    }

    fn is_late(&self, shape: Shape, g: usize, t: i64) -> bool {
        match shape.kind {
            Kind::Sliding => self.emitted_until.is_some_and(|e| t <= e),
            Kind::Session { .. } => self.rows[g].closed_until.is_some_and(|c| t < c),
            Kind::Fixed => false,
        }
    }

    /// Evaluates every window the watermark `wm` closed, oldest first, and forgets rows no
    /// window needs any more; `may_be_open` as in [`crate::window_fast::Fast::close`].
    pub fn close(
        &mut self,
        spec: &RuleSpec,
        shape: Shape,
        wm: i64,
        may_be_open: Option<&mut HashSet<AlertKey>>,
    ) -> Result<Vec<Closed>> {
        let mut done = self.take_closed(shape, wm);
        self.settle(shape, wm);
        done.sort_by_key(|d| (d.end, d.group));
        self.evaluate(spec, done, may_be_open)
    }

    fn take_closed(&mut self, shape: Shape, wm: i64) -> Vec<Done> {
        let width = self.plan.width();
        let mut out = Vec::new();
        for (gi, g) in self.rows.iter_mut().enumerate() {
            let windows: Vec<(i64, i64, usize, usize)> = match shape.kind {
                Kind::Sliding => change_points(&g.times, shape.size_ns, self.emitted_until, wm)
                    .into_iter()
                    .map(|end| {
                        let from = g.times.partition_point(|&t| t <= end - shape.size_ns);
                        let to = g.times.partition_point(|&t| t <= end);
                        (end - shape.size_ns, end, from, to)
                    })
                    .collect(),
                Kind::Session { .. } if g.session_floor.is_some_and(|f| wm < f) => continue,
                Kind::Session { gap_ns } => open_sessions(g, gap_ns, shape.size_ns, wm)
                    .into_iter()
                    .take_while(|&(_, end)| end <= wm)
                    .map(|(start, end)| {
                        let from = g.times.partition_point(|&t| t < start);
                        let to = g.times.partition_point(|&t| t < end);
                        (start, end, from, to)
                    })
                    .collect(),
                Kind::Fixed => Vec::new(),
            };
            for (start, end, from, to) in windows {
                if let Kind::Session { .. } = shape.kind {
                    g.closed_until = Some(g.closed_until.map_or(end, |c| c.max(end)));
                }
                let mut stats = vec![Stat::default(); width];
                for (j, x) in g.inputs[from * width..to * width].iter().enumerate() {
                    if let Some(x) = x {
                        stats[j % width].add(*x);
                    }
                }
                out.push(Done {
                    group: gi,
                    start,
                    end,
                    rows: (to - from) as i64,
                    stats,
                });
            }
        }
        out
    }

    /// Marks everything up to `wm` as evaluated and forgets rows no open window needs.
    pub fn settle(&mut self, shape: Shape, wm: i64) {
        let width = self.plan.width();
        match shape.kind {
            Kind::Sliding => {
                self.emitted_until = Some(self.emitted_until.map_or(wm, |e| e.max(wm)));
                let keep_after = wm - shape.size_ns;
                for g in &mut self.rows {
                    retain(g, width, |t| t > keep_after);
                }
            }
            Kind::Session { gap_ns } => {
                for g in &mut self.rows {
                    // Nothing closes at `wm` and no row of a closed session is left.
                    let kept = |c: i64| g.times.first().is_none_or(|&t| t >= c);
                    if g.session_floor.is_some_and(|f| wm < f) && g.closed_until.is_none_or(kept) {
                        continue;
                    }
                    for (_, end) in open_sessions(g, gap_ns, shape.size_ns, wm) {
                        if end > wm {
                            break;
                        }
                        g.closed_until = Some(g.closed_until.map_or(end, |c| c.max(end)));
                    }
                    if let Some(c) = g.closed_until {
                        retain(g, width, |t| t >= c);
                    }
                }
            }
            Kind::Fixed => {}
        }
    }

    /// The closed windows by end: one condition run over all of them; empty windows (the last
    /// row left) do not hold; only results that can change state are kept.
    fn evaluate(
        &mut self,
        spec: &RuleSpec,
        done: Vec<Done>,
        mut may_be_open: Option<&mut HashSet<AlertKey>>,
    ) -> Result<Vec<Closed>> {
        let mut by_end: BTreeMap<i64, BTreeMap<AlertKey, (bool, Values)>> = BTreeMap::new();
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<Entry> = done
            .iter()
            .map(|d| (d.group, d.rows, d.stats.as_slice()))
            .collect();
        let batch = self.plan.result_batch(&self.groups, &entries)?;
        let flags = self.condition.flags(spec, &batch)?;
        for (i, d) in done.iter().enumerate() {
            let matched = d.rows > 0 && flags.is_valid(i) && flags.value(i);
            let key = self.groups.alert_key(self.plan.group_by(), d.group);
            if !wanted(may_be_open.as_deref_mut(), &key, matched) {
                continue;
            }
            let groups = by_end.entry(d.end).or_default();
            if d.rows == 0 {
                let mut empty = Values::new();
                stamp(&mut empty, d.start, d.end);
                groups.insert(key, (false, empty));
                continue;
            }
            for (k, mut values) in instances(&[batch.slice(i, 1)])? {
                stamp(&mut values, d.start, d.end);
                groups.insert(k, (matched, values));
            }
        }
        Ok(by_end.into_iter().collect())
    }
}

/// Sorts a group's rows by time (stable: equal times keep their arrival order).
fn sort_group(g: &mut Group, width: usize) {
    let mut order: Vec<usize> = (0..g.times.len()).collect();
    order.sort_by_key(|&i| g.times[i]);
    g.times = order.iter().map(|&i| g.times[i]).collect();
    g.inputs = order
        .iter()
        .flat_map(|&i| g.inputs[i * width..(i + 1) * width].iter().copied())
        .collect();
    g.unsorted = false;
}

/// Keeps the rows whose time satisfies `keep`.
/// The sessions of `g`'s rows; records the end of the first one the watermark `wm` leaves open
/// as the group's session floor (no open session: none before the next row).
fn open_sessions(g: &mut Group, gap_ns: i64, max_ns: i64, wm: i64) -> Vec<(i64, i64)> {
    let all = sessions(&g.times, gap_ns, max_ns);
    let first_open = all.iter().map(|s| s.1).find(|&end| end > wm);
    g.session_floor = Some(first_open.unwrap_or(i64::MAX));
    all
}

fn retain(g: &mut Group, width: usize, keep: impl Fn(i64) -> bool) {
    if g.times.iter().all(|&t| keep(t)) {
        return;
    }
    let mut times = Vec::with_capacity(g.times.len());
    let mut inputs = Vec::with_capacity(g.inputs.len());
    for (i, &t) in g.times.iter().enumerate() {
        if keep(t) {
            times.push(t);
            inputs.extend_from_slice(&g.inputs[i * width..(i + 1) * width]);
        }
    }
    g.times = times;
    g.inputs = inputs;
}
