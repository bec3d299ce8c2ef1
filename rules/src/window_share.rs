//! Window rules sharing one window state: rules of one stream with the same window, lateness,
//! `group_by` and select whose select the incremental path computes (plain float aggregates,
//! see [`crate::window_fast`]) and whose condition does not join `devices` keep **one** set of
//! accumulators (one [`WindowState`]). Each batch is added to it once; each window it closes is
//! aggregated once into one result batch, and each rule runs its own condition over that batch
//! with its own open alert keys. The answers are those of each rule evaluated alone: the state
//! depends only on the rows, the watermark and the window, which the rules share.
//!
//! A rule that joins a running unit sees its open windows as they are, rows from before it
//! was created included (as after a restart, when open windows are rebuilt from the stream).

use std::collections::{BTreeMap, HashSet};

use strata_query::arrow::array::RecordBatch;

use crate::alert::AlertKey;
use crate::error::{Result, RulesError};
use crate::spec::RuleSpec;
use crate::window::{Closed, Shape, WindowState};
use crate::window_fast::{Condition, Judge, Plan};

/// What rules must have in common to share a window state (`None`: the rule evaluates alone).
pub fn share_key(spec: &RuleSpec, batch: &RecordBatch) -> Option<String> {
    Plan::of(spec, &batch.schema())?;
    windows_of(spec)
}

/// Whether `old` and `new` (two versions of one rule) keep the same window state: same
/// stream, window, lateness, `group_by` and select. An update that changes only the condition,
/// actions or labels keeps the rule's open windows and watermark.
pub fn same_windows(old: &RuleSpec, new: &RuleSpec) -> bool {
    windows_of(old).is_some_and(|o| Some(o) == windows_of(new))
}

/// The part of a rule that determines its window state.
fn windows_of(spec: &RuleSpec) -> Option<String> {
    let window = serde_json::to_string(spec.window.as_ref()?).ok()?;
    Some(format!(
        "{}\u{0}{}\u{0}{window}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{}",
        spec.db,
        spec.stream.as_deref().unwrap_or_default(),
        spec.lateness,
        spec.late_policy,
        spec.group_by,
        spec.select.as_deref().unwrap_or_default()
    ))
}

/// One shared window state and the compiled conditions of the rules using it.
#[derive(Debug)]
pub struct Unit {
    state: WindowState,
    /// Per rule: the condition text it was compiled from and the compiled condition.
    conditions: BTreeMap<String, (String, Condition)>,
}

impl Unit {
    /// A unit over `state` (empty, or rebuilt from the stream after a restart).
    pub fn new(state: WindowState) -> Unit {
        Unit {
            state,
            conditions: BTreeMap::new(),
        }
    }

    /// Rows dropped as late (all their windows had closed).
    pub fn late_dropped(&self) -> u64 {
        self.state.late_dropped
    }

    /// Forgets rule `name`'s compiled condition; whether no rule uses the unit any more.
    pub fn forget(&mut self, name: &str) -> bool {
        self.conditions.remove(name);
        self.conditions.is_empty()
    }

    /// Adds `batch` once and closes what the watermark reached for each of `rules` (same share
    /// key), given each rule's open keys; one result per rule, in order.
    pub fn evaluate(
        &mut self,
        rules: &[&RuleSpec],
        shape: Shape,
        batch: &RecordBatch,
        opens: Vec<Result<HashSet<AlertKey>>>,
    ) -> Vec<Result<Vec<Closed>>> {
        let Some(first) = rules.first() else {
            return Vec::new();
        };
        if let Err(e) = self.state.add_rows(first, shape, batch) {
            return rules.iter().map(|_| Err(e.clone_invalid())).collect();
        }
        let mut conditions: Vec<Condition> = rules.iter().map(|r| self.condition(r)).collect();
        let mut opens = opens;
        let mut out: Vec<Option<Result<Vec<Closed>>>> = Vec::with_capacity(rules.len());
        let mut judges = Vec::with_capacity(rules.len());
        for ((spec, condition), open) in rules.iter().zip(&mut conditions).zip(&mut opens) {
            match open {
                Ok(open) => {
                    out.push(None);
                    judges.push(Judge {
                        spec,
                        condition,
                        may_be_open: Some(open),
                    });
                }
                Err(e) => out.push(Some(Err(e.clone_invalid()))),
            }
        }
        let mut closed = self.state.close_for(shape, &mut judges).into_iter();
        drop(judges);
        for (spec, condition) in rules.iter().zip(conditions) {
            let text = spec.condition.clone().unwrap_or_default();
            self.conditions.insert(spec.name.clone(), (text, condition));
        }
        out.into_iter()
            .map(|o| {
                o.or_else(|| closed.next())
                    .unwrap_or_else(|| Err(RulesError::Invalid("window: no result".into())))
            })
            .collect()
    }

    /// `spec`'s compiled condition (a new one if its text changed).
    fn condition(&mut self, spec: &RuleSpec) -> Condition {
        let text = spec.condition.as_deref().unwrap_or_default();
        match self.conditions.remove(&spec.name) {
            Some((t, c)) if t == text => c,
            _ => Condition::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::tests::{mixed_batches, specs};

    /// Rules sharing a unit get, batch after batch, the answers each gets alone (its own
    /// state, its own open keys), for every window kind, late and out-of-order rows included.
    #[test]
    fn shared_windows_answer_as_each_rule_alone() {
        let batches = mixed_batches();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for base in specs("avg(temperature) AS t, count(*) AS c") {
            let rules: Vec<RuleSpec> = ["t > 30", "t > 50 AND c > 1", "t > 70"]
                .iter()
                .enumerate()
                .map(|(i, c)| RuleSpec {
                    name: format!("r{i}"),
                    condition: Some(c.to_string()),
                    ..base.clone()
                })
                .collect();
            let shape = Shape::of(&base).unwrap();
            assert!(share_key(&rules[0], &batches[0]).is_some());
            assert_eq!(
                share_key(&rules[0], &batches[0]),
                share_key(&rules[2], &batches[0])
            );
            let mut alone: Vec<WindowState> = rules
                .iter()
                .map(|_| {
                    let mut w = WindowState::default();
                    w.may_be_open = Some(HashSet::new());
                    w
                })
                .collect();
            let mut unit = Unit::new(WindowState::default());
            let mut opens: Vec<HashSet<AlertKey>> = rules.iter().map(|_| HashSet::new()).collect();
            let mut closed = 0;
            for b in &batches {
                let specs: Vec<&RuleSpec> = rules.iter().collect();
                let given = opens.iter().map(|o| Ok(o.clone())).collect();
                let shared = unit.evaluate(&specs, shape, b, given);
                for (i, got) in shared.into_iter().enumerate() {
                    let got = got.unwrap();
                    let want = rt.block_on(alone[i].add(&rules[i], shape, b)).unwrap();
                    assert_eq!(got, want, "{:?} {}", base.window, rules[i].name);
                    for (_, groups) in &got {
                        closed += groups.len();
                        let matched = groups.iter().filter(|(_, (m, _))| *m);
                        opens[i].extend(matched.map(|(k, _)| k.clone()));
                    }
                }
            }
            assert!(closed > 0, "{:?}", base.window);
        }
    }
}
