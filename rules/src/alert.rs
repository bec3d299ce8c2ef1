//! Alert instances and their state machine: pending → firing → resolved, with `for` (how long a
//! condition must hold before firing) and `keep_firing_for` (how long a firing alert outlives
//! its condition). Pure functions of (previous instance, observation, time) so they can be
//! tested exhaustively; the caller persists the result and the notifications in one transaction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::Timing;

/// The key of an alert instance: its non-numeric columns (e.g. `{"device": "d1"}`).
pub type AlertKey = BTreeMap<String, String>;

/// State of an alert instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, not yet for `for`.
    Pending,
    /// Notified as firing.
    Firing,
    /// Notified as resolved.
    Resolved,
}

impl AlertState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert instance of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Rule name.
    pub rule: String,
    /// Key columns.
    pub key: AlertKey,
    /// Current state.
    pub state: AlertState,
    /// When the condition started to hold (ns).
    pub started_ns: i64,
    /// When it fired (ns).
    pub fired_ns: Option<i64>,
    /// When it resolved (ns).
    pub resolved_ns: Option<i64>,
    /// Last time the condition held (ns).
    pub last_active_ns: i64,
    /// Values of the last observation that held.
    pub values: serde_json::Map<String, serde_json::Value>,
}

/// A notification the transition asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// The instance started firing.
    Firing,
    /// The instance resolved.
    Resolved,
}

/// The instance after its condition held at `now` with `values`, and what to notify.
pub fn observe_active(
    prev: Option<&Alert>,
    rule: &str,
    key: &AlertKey,
    values: serde_json::Map<String, serde_json::Value>,
    now: i64,
    timing: Timing,
) -> (Alert, Option<Notify>) {
    let fresh = || Alert {
        rule: rule.to_string(),
        key: key.clone(),
        state: AlertState::Pending,
        started_ns: now,
        fired_ns: None,
        resolved_ns: None,
        last_active_ns: now,
        values: serde_json::Map::new(),
    };
    let mut alert = match prev {
        Some(a) if a.state != AlertState::Resolved => a.clone(),
        _ => fresh(),
    };
    alert.last_active_ns = now;
    alert.values = values;
    if alert.state == AlertState::Pending && now.saturating_sub(alert.started_ns) >= timing.for_ns {
        alert.state = AlertState::Firing;
        alert.fired_ns = Some(now);
        return (alert, Some(Notify::Firing));
    }
    (alert, None)
}

/// The instance after its condition did not hold at `now`: `None` drops a pending instance
/// (it never fired, so nothing was notified), a firing one resolves once `keep_firing_for` has
/// passed since it last held, a resolved one stays as it is.
pub fn observe_inactive(prev: &Alert, now: i64, timing: Timing) -> (Option<Alert>, Option<Notify>) {
    match prev.state {
        AlertState::Pending => (None, None),
        AlertState::Resolved => (Some(prev.clone()), None),
        AlertState::Firing => {
            if now.saturating_sub(prev.last_active_ns) < timing.keep_firing_for_ns {
                return (Some(prev.clone()), None);
            }
            let mut a = prev.clone();
            a.state = AlertState::Resolved;
            a.resolved_ns = Some(now);
            (Some(a), Some(Notify::Resolved))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i64 = 1_000_000_000;

    fn key() -> AlertKey {
        [("device".to_string(), "d1".to_string())].into()
    }

    fn timing(for_s: i64, keep_s: i64) -> Timing {
        Timing {
            every_ns: S,
            for_ns: for_s * S,
            keep_firing_for_ns: keep_s * S,
        }
    }

    /// Runs a sequence of observations (true = condition holds) one second apart.
    fn run(seq: &[bool], t: Timing) -> (Option<Alert>, Vec<(i64, Notify)>) {
        let mut cur: Option<Alert> = None;
        let mut notes = Vec::new();
        for (i, active) in seq.iter().enumerate() {
            let now = i as i64 * S;
            let (next, n) = if *active {
                let (a, n) = observe_active(cur.as_ref(), "r", &key(), Default::default(), now, t);
                (Some(a), n)
            } else {
                match &cur {
                    Some(a) => observe_inactive(a, now, t),
                    None => (None, None),
                }
            };
            if let Some(n) = n {
                notes.push((now, n));
            }
            cur = next;
        }
        (cur, notes)
    }

    #[test]
    fn fires_at_once_without_for() {
        let (a, n) = run(&[true, true, false], timing(0, 0));
        assert_eq!(n, vec![(0, Notify::Firing), (2 * S, Notify::Resolved)]);
        assert_eq!(a.unwrap().state, AlertState::Resolved);
    }

    #[test]
    fn for_delays_firing_and_a_gap_restarts_it() {
        let (_, n) = run(&[true, true, false, true, true, true], timing(2, 0));
        assert_eq!(n, vec![(5 * S, Notify::Firing)]);
    }

    #[test]
    fn keep_firing_for_bridges_gaps() {
        let (a, n) = run(
            &[true, false, false, true, false, false, false],
            timing(0, 3),
        );
        assert_eq!(n, vec![(0, Notify::Firing), (6 * S, Notify::Resolved)]);
        assert_eq!(a.unwrap().resolved_ns, Some(6 * S));
    }

    #[test]
    fn refiring_after_resolve_is_a_new_instance() {
        let (a, n) = run(&[true, false, true], timing(0, 0));
        assert_eq!(n.len(), 3);
        let a = a.unwrap();
        assert_eq!(
            (a.state, a.started_ns, a.resolved_ns),
            (AlertState::Firing, 2 * S, None)
        );
    }

    proptest! {
        /// Notifications alternate firing/resolved starting with firing (deduplicated), a
        /// firing notification comes only after the condition held for `for`, and a resolve
        /// only after `keep_firing_for` without it.
        #[test]
        fn notifications_alternate(seq in proptest::collection::vec(any::<bool>(), 0..60),
                                   for_s in 0i64..4, keep_s in 0i64..4) {
            let t = timing(for_s, keep_s);
            let (_, notes) = run(&seq, t);
            for (i, (when, n)) in notes.iter().enumerate() {
                let expect = if i % 2 == 0 { Notify::Firing } else { Notify::Resolved };
                prop_assert_eq!(*n, expect);
                let idx = (*when / S) as usize;
                if *n == Notify::Firing {
                    let held = (0..=for_s as usize).all(|k| idx >= k && seq[idx - k]);
                    prop_assert!(held, "fired at {} without holding for {}s", idx, for_s);
                } else {
                    let quiet = (0..keep_s.max(1) as usize).all(|k| idx >= k && !seq[idx - k]);
                    prop_assert!(quiet, "resolved at {} within {}s of holding", idx, keep_s);
                }
            }
        }
    }
}
