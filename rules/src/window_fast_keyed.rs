//! Sliding and session window rules of plain aggregates ([`crate::window_fast::Plan`]) without
//! DataFusion and without a record batch per group: each group (interned to a dense id) keeps
//! its rows as sorted times and the float inputs the select reads, nothing else. The windows
//! and their semantics are those of [`crate::window_keyed`] (same change points, sessions,
//! lateness and forgetting, computed by the same functions); a closed window's aggregates are
//! computed over its rows, all closed windows of a batch become one result batch and the
//! condition runs over it once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use strata_query::arrow::array::{Array, RecordBatch};

use crate::alert::AlertKey;
use crate::error::Result;
use crate::spec::RuleSpec;
use crate::window_eval::{Closed, Kind, Shape, time_column};
use crate::window_fast::{
    ByEnd, Condition, Entry, GroupInterners, Groups, Judge, Plan, Results, Stat, Wanted,
};
use crate::window_keyed::{session_end, sessions};

/// The rows of one group: times sorted (a row arriving out of order is inserted in place, or,
/// past [`IN_PLACE_LIMIT`] such rows in one batch, appended and the group sorted once at the
/// end of the batch), inputs `width` per row (`None`: NULL).
#[derive(Debug)]
struct Group {
    times: Vec<i64>,
    inputs: Vec<Option<f64>>,
    /// Rows were appended out of order during the current batch (sorted before it returns).
    unsorted: bool,
    /// Session: end of the last closed session (rows before it are late).
    closed_until: Option<i64>,
    /// Session: no session of this group ends before this time (`i64::MAX`: none can close).
    /// Set to the first open session's end when the group's sessions are computed, lowered by
    /// every row inserted since (a session holding row `t` ends at or after `t + gap` or its
    /// block's end), so a watermark below it closes nothing and the group is not looked at.
    session_floor: i64,
}

impl Default for Group {
    fn default() -> Group {
        Group {
            times: Vec::new(),
            inputs: Vec::new(),
            unsorted: false,
            closed_until: None,
            session_floor: i64::MAX,
        }
    }
}

/// Out-of-order rows of one batch inserted in place (each costs a move of the group's later
/// rows); past this many, a batch appends and sorts each group it disordered once, so a batch
/// written newest first costs `n log n`, not `n²`.
const IN_PLACE_LIMIT: usize = 64;

impl Group {
    /// Sorts the rows by time, keeping the arrival order of equal times (as in-place insertion
    /// after the equal times does).
    fn sort(&mut self, width: usize) {
        let mut order: Vec<usize> = (0..self.times.len()).collect();
        order.sort_by_key(|&i| self.times[i]);
        self.times = order.iter().map(|&i| self.times[i]).collect();
        let inputs = std::mem::take(&mut self.inputs);
        self.inputs = order
            .iter()
            .flat_map(|&i| inputs[i * width..(i + 1) * width].iter().copied())
            .collect();
        self.unsorted = false;
    }
}

/// A closed window: group, start, end, rows, offset of its `width` statistics.
struct Done {
    group: usize,
    start: i64,
    end: i64,
    rows: i64,
    stats_at: usize,
}

/// Incremental state of one sliding or session window rule.
#[derive(Debug)]
pub struct FastKeyed {
    plan: Plan,
    groups: Groups,
    rows: Vec<Group>,
    /// Sliding: windows ending at or before this were evaluated.
    emitted_until: Option<i64>,
    /// Session: (floor, group) for every floor a group was given; an entry whose floor is no
    /// longer its group's is stale. Only groups popped here (floor <= watermark) are closed.
    due: BinaryHeap<Reverse<(i64, usize)>>,
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
            due: BinaryHeap::new(),
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
        let width = inputs.len();
        let (mut moved, mut unsorted) = (0, Vec::new());
        for (row, &g) in gids.iter().enumerate() {
            let (mut t, g) = (times.value(row), g as usize);
            max_t = Some(max_t.map_or(t, |m: i64| m.max(t)));
            match self.open_from(shape, g) {
                Some(from) if drop_late && t < from && shape.adjust_late => t = from,
                Some(from) if drop_late && t < from => {
                    dropped += 1;
                    continue;
                }
                _ => {}
            }
            let grp = &mut self.rows[g];
            if let Kind::Session { gap_ns } = shape.kind {
                let end = session_end(t, gap_ns, t.div_euclid(shape.size_ns), shape.size_ns);
                if end < grp.session_floor {
                    grp.session_floor = end;
                    self.due.push(Reverse((end, g)));
                }
            }
            let out_of_order = grp.times.last().is_some_and(|&l| t < l);
            let at = if out_of_order && !grp.unsorted && moved < IN_PLACE_LIMIT {
                moved += 1;
                grp.times.partition_point(|&x| x <= t)
            } else {
                if out_of_order && !grp.unsorted {
                    grp.unsorted = true;
                    unsorted.push(g);
                }
                grp.times.len()
            };
            grp.times.insert(at, t);
            for (i, c) in inputs.iter().enumerate() {
                let v = c.filter(|c| c.is_valid(row)).map(|c| c.value(row));
                grp.inputs.insert(at * width + i, v);
            }
        }
        for g in unsorted {
            self.rows[g].sort(width);
        }
        Ok((max_t, dropped))
    }

    /// The earliest event time group `g` still takes (a row before it is late): after the last
    /// evaluated sliding window, or the end of the group's last closed session.
    fn open_from(&self, shape: Shape, g: usize) -> Option<i64> {
        match shape.kind {
            Kind::Sliding => self.emitted_until.map(|e| e.saturating_add(1)),
            Kind::Session { .. } => self.rows[g].closed_until,
            Kind::Fixed => None,
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
        let mut condition = std::mem::take(&mut self.condition);
        let out = Judge::alone(spec, &mut condition, may_be_open, |judges| {
            self.close_for(shape, wm, judges)
        });
        self.condition = condition;
        out
    }

    /// [`FastKeyed::close`] for several rules sharing this state: the closed windows are taken
    /// and aggregated once, into one result batch, and judged by each rule. One result per
    /// judge, in order.
    pub fn close_for(
        &mut self,
        shape: Shape,
        wm: i64,
        judges: &mut [Judge],
    ) -> Vec<Result<Vec<Closed>>> {
        let mut stats = Vec::new();
        let mut done = match shape.kind {
            Kind::Sliding => {
                let done = self.take_sliding(shape.size_ns, wm, &mut stats);
                self.settle(shape, wm);
                done
            }
            Kind::Session { gap_ns } => self.take_sessions(gap_ns, shape.size_ns, wm, &mut stats),
            Kind::Fixed => Vec::new(),
        };
        if done.is_empty() {
            return judges.iter().map(|_| Ok(Vec::new())).collect();
        }
        done.sort_by_key(|d| (d.end, d.group));
        let results = self.results(&done, &stats);
        let group_by = self.plan.group_by();
        judges
            .iter_mut()
            .map(|judge| {
                let r = results.as_ref().map_err(|e| e.clone_invalid())?;
                let mut wanted = Wanted::new(&self.groups, group_by, judge.may_be_open.take())?;
                let mut by_end = ByEnd::new();
                judge.judge(r, &mut wanted, &mut by_end)?;
                Ok(by_end.into_iter().collect())
            })
            .collect()
    }

    /// The closed windows as one result batch.
    fn results(&self, done: &[Done], stats: &[Stat]) -> Result<Results> {
        let width = self.plan.width();
        let entries: Vec<Entry> = done
            .iter()
            .map(|d| (d.group, d.rows, &stats[d.stats_at..d.stats_at + width]))
            .collect();
        Ok(Results {
            rows: done
                .iter()
                .map(|d| (d.group, (d.start, d.end), d.rows))
                .collect(),
            batch: self.plan.result_batch(&self.groups, &entries)?,
        })
    }

    /// Sliding: every group's windows ending in (emitted until, `wm`], their statistics
    /// appended to `stats`.
    fn take_sliding(&mut self, size: i64, wm: i64, stats: &mut Vec<Stat>) -> Vec<Done> {
        let width = self.plan.width();
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for (gi, g) in self.rows.iter().enumerate() {
            change_points(&g.times, size, self.emitted_until, wm, &mut ends);
            for &end in &ends {
                let from = g.times.partition_point(|&t| t <= end - size);
                let to = g.times.partition_point(|&t| t <= end);
                out.push(Done {
                    group: gi,
                    start: end - size,
                    end,
                    rows: (to - from) as i64,
                    stats_at: stats.len(),
                });
                add_stats(stats, &g.inputs[from * width..to * width], width);
            }
        }
        out
    }

    /// Session: the sessions `wm` closed in the groups whose floor it reached (the others
    /// cannot have one), their statistics appended to `stats`; those groups forget the rows of
    /// closed sessions and get their next floor.
    fn take_sessions(&mut self, gap: i64, max: i64, wm: i64, stats: &mut Vec<Stat>) -> Vec<Done> {
        let mut touched = Vec::new();
        while let Some(&Reverse((floor, g))) = self.due.peek() {
            if floor > wm {
                break;
            }
            self.due.pop();
            if self.rows[g].session_floor == floor {
                touched.push(g);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        let width = self.plan.width();
        let mut out = Vec::new();
        for gi in touched {
            let g = &mut self.rows[gi];
            let all = sessions(&g.times, gap, max);
            for &(start, end) in all.iter().take_while(|s| s.1 <= wm) {
                g.closed_until = Some(g.closed_until.map_or(end, |c| c.max(end)));
                let from = g.times.partition_point(|&t| t < start);
                let to = g.times.partition_point(|&t| t < end);
                out.push(Done {
                    group: gi,
                    start,
                    end,
                    rows: (to - from) as i64,
                    stats_at: stats.len(),
                });
                add_stats(stats, &g.inputs[from * width..to * width], width);
            }
            self.reset_floor(gi, &all, wm);
        }
        out
    }

    /// Group `gi`'s floor after a close at `wm` (its sessions `all`): the first open session's
    /// end; rows of closed sessions are forgotten.
    fn reset_floor(&mut self, gi: usize, all: &[(i64, i64)], wm: i64) {
        let width = self.plan.width();
        let g = &mut self.rows[gi];
        if let Some(c) = g.closed_until {
            forget_before(g, width, g.times.partition_point(|&t| t < c));
        }
        g.session_floor = all
            .iter()
            .map(|s| s.1)
            .find(|&e| e > wm)
            .unwrap_or(i64::MAX);
        if g.session_floor < i64::MAX {
            self.due.push(Reverse((g.session_floor, gi)));
        }
    }

    /// Marks everything up to `wm` as evaluated and forgets rows no open window needs (every
    /// group: after a rebuild, whose rows were inserted without dropping late ones).
    pub fn settle(&mut self, shape: Shape, wm: i64) {
        let width = self.plan.width();
        match shape.kind {
            Kind::Sliding => {
                self.emitted_until = Some(self.emitted_until.map_or(wm, |e| e.max(wm)));
                let keep_after = wm - shape.size_ns;
                for g in &mut self.rows {
                    let n = g.times.partition_point(|&t| t <= keep_after);
                    forget_before(g, width, n);
                }
            }
            Kind::Session { gap_ns } => {
                self.due.clear();
                for gi in 0..self.rows.len() {
                    let g = &mut self.rows[gi];
                    let all = sessions(&g.times, gap_ns, shape.size_ns);
                    for &(_, end) in all.iter().take_while(|s| s.1 <= wm) {
                        g.closed_until = Some(g.closed_until.map_or(end, |c| c.max(end)));
                    }
                    self.reset_floor(gi, &all, wm);
                }
            }
            Kind::Fixed => {}
        }
    }
}

/// Appends the statistics of `inputs` (`width` per row) to `stats`.
fn add_stats(stats: &mut Vec<Stat>, inputs: &[Option<f64>], width: usize) {
    let at = stats.len();
    stats.resize(at + width, Stat::default());
    for (j, x) in inputs.iter().enumerate() {
        if let Some(x) = x {
            stats[at + j % width].add(*x);
        }
    }
}

/// Sliding window ends in `(after, wm]` of sorted `times` into `out` (cleared): each row's time
/// and time + size, once each, in order (two binary searches and a merge; no per-row work for
/// rows outside the range).
fn change_points(times: &[i64], size: i64, after: Option<i64>, wm: i64, out: &mut Vec<i64>) {
    out.clear();
    let from = |bound: Option<i64>| bound.map_or(0, |b| times.partition_point(|&t| t <= b));
    let entries = &times[from(after)..times.partition_point(|&t| t <= wm)];
    let exits_to = times.partition_point(|&t| t <= wm.saturating_sub(size));
    let exits_from = from(after.map(|a| a.saturating_sub(size))).min(exits_to);
    let exits = times[exits_from..exits_to].iter().map(|&t| t + size);
    let (mut a, mut b) = (entries.iter().copied().peekable(), exits.peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(&x), Some(&y)) if x <= y => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        let Some(p) = next else { break };
        if out.last() != Some(&p) {
            out.push(p);
        }
    }
}

/// Forgets the group's first `n` rows (its rows are sorted: what a watermark forgets is a prefix).
fn forget_before(g: &mut Group, width: usize, n: usize) {
    if n > 0 {
        g.times.drain(..n);
        g.inputs.drain(..n * width);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_points_merge_entries_and_exits_once() {
        let mut out = Vec::new();
        change_points(&[1, 3], 5, None, 100, &mut out);
        assert_eq!(out, vec![1, 3, 6, 8]);
        change_points(&[1, 3], 5, Some(3), 7, &mut out);
        assert_eq!(out, vec![6]);
        change_points(&[1, 6], 5, None, 100, &mut out);
        assert_eq!(out, vec![1, 6, 11]);
        change_points(&[1, 1, 2, 6], 5, Some(1), 6, &mut out);
        assert_eq!(out, vec![2, 6]);
    }
}
