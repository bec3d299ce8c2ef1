//! Per-rule counters (since the server started): evaluations, matches, errors with the last
//! error text, evaluation latency, lag, notifications and their delivery outcomes. Shown in the
//! `rules` SQL table, `GET /api/v1/rules` and `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use serde::Serialize;

/// Counters of one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleStats {
    /// Evaluations run.
    pub evaluations: u64,
    /// Matches (query rules: result rows; row rules: matching rows).
    pub matches: u64,
    /// Failed evaluations.
    pub errors: u64,
    /// Text of the last failure, cleared by a successful evaluation.
    pub last_error: Option<String>,
    /// When the last evaluation ended (ns).
    pub last_eval_ns: Option<i64>,
    /// Duration of the last evaluation (ns).
    pub last_duration_ns: i64,
    /// Sum of evaluation durations (ns).
    pub duration_sum_ns: i64,
    /// Lag of the last evaluation behind the data or schedule it served (ns).
    pub lag_ns: i64,
    /// Notifications queued.
    pub notifications: u64,
    /// Outbox deliveries that succeeded.
    pub delivered: u64,
    /// Outbox delivery attempts that failed (and will be retried).
    pub delivery_failures: u64,
    /// Outbox entries given up.
    pub dead: u64,
}

/// Counters of every rule.
#[derive(Debug, Default)]
pub struct Stats {
    rules: Mutex<BTreeMap<String, RuleStats>>,
}

impl Stats {
    fn with(&self, rule: &str, f: impl FnOnce(&mut RuleStats)) {
        if let Ok(mut m) = self.rules.lock() {
            f(m.entry(rule.to_string()).or_default());
        }
    }

    /// The counters of `rule`.
    pub fn get(&self, rule: &str) -> RuleStats {
        self.rules
            .lock()
            .ok()
            .and_then(|m| m.get(rule).cloned())
            .unwrap_or_default()
    }

    /// Forgets a deleted rule.
    pub fn remove(&self, rule: &str) {
        if let Ok(mut m) = self.rules.lock() {
            m.remove(rule);
        }
    }

    /// An evaluation ended at `end_ns` after `took_ns`, lagging `lag_ns`, with this outcome.
    pub fn evaluated(
        &self,
        rule: &str,
        end_ns: i64,
        took_ns: i64,
        lag_ns: i64,
        outcome: Result<u64, String>,
    ) {
        self.with(rule, |s| {
            s.evaluations += 1;
            s.last_eval_ns = Some(end_ns);
            s.last_duration_ns = took_ns;
            s.duration_sum_ns = s.duration_sum_ns.saturating_add(took_ns);
            s.lag_ns = lag_ns;
            match outcome {
                Ok(m) => {
                    s.matches += m;
                    s.last_error = None;
                }
                Err(e) => {
                    s.errors += 1;
                    s.last_error = Some(e);
                }
            }
        });
    }

    /// `n` notifications were queued.
    pub fn notified(&self, rule: &str, n: u64) {
        self.with(rule, |s| s.notifications += n);
    }

    /// One delivery succeeded.
    pub fn delivered(&self, rule: &str) {
        self.with(rule, |s| s.delivered += 1);
    }

    /// One delivery attempt failed.
    pub fn failed_delivery(&self, rule: &str) {
        self.with(rule, |s| s.delivery_failures += 1);
    }

    /// One entry was dead-lettered.
    pub fn dead(&self, rule: &str) {
        self.with(rule, |s| {
            s.delivery_failures += 1;
            s.dead += 1;
        });
    }

    /// Prometheus text for every rule.
    pub fn render(&self, out: &mut String) {
        let Ok(m) = self.rules.lock() else { return };
        type Get = fn(&RuleStats) -> f64;
        let series: [(&str, &str, &str, Get); 9] = [
            (
                "strata_rule_evaluations_total",
                "counter",
                "Rule evaluations.",
                |s| s.evaluations as f64,
            ),
            (
                "strata_rule_matches_total",
                "counter",
                "Rows or result rows that matched.",
                |s| s.matches as f64,
            ),
            (
                "strata_rule_errors_total",
                "counter",
                "Failed rule evaluations.",
                |s| s.errors as f64,
            ),
            (
                "strata_rule_evaluation_seconds_sum",
                "counter",
                "Time spent evaluating.",
                |s| s.duration_sum_ns as f64 / 1e9,
            ),
            (
                "strata_rule_lag_seconds",
                "gauge",
                "Lag of the last evaluation behind its data or schedule.",
                |s| s.lag_ns as f64 / 1e9,
            ),
            (
                "strata_rule_notifications_total",
                "counter",
                "Notifications queued in the outbox.",
                |s| s.notifications as f64,
            ),
            (
                "strata_rule_deliveries_total",
                "counter",
                "Outbox deliveries that succeeded.",
                |s| s.delivered as f64,
            ),
            (
                "strata_rule_delivery_failures_total",
                "counter",
                "Outbox delivery attempts that failed.",
                |s| s.delivery_failures as f64,
            ),
            (
                "strata_rule_dead_letters_total",
                "counter",
                "Outbox entries given up after their attempts.",
                |s| s.dead as f64,
            ),
        ];
        for (name, kind, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (rule, s) in m.iter() {
                let _ = writeln!(out, "{name}{{rule=\"{}\"}} {}", escape(rule), get(s));
            }
        }
    }
}

/// Rule names hold only `[A-Za-z0-9_.-]`, but escape anyway.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
