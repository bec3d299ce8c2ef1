//! `POST /api/v1/rules/{name}/dry-run`: evaluates a rule over stored history in `[start, end)` and
//! returns the transitions it would have notified, without touching alerts, the outbox or any
//! action. Row rules replay every stored row in time order (alert time = the row's time); window
//! rules replay the rows through fresh windows and close every window that ends by `end`; a
//! query rule runs its SQL once (its SQL decides what it reads, `now()` included) and reports
//! the instances that would fire now.
//!
//! `POST /api/v1/rules/{name}/replay` runs the same replay from `start` to now and **acts**: the
//! alert instances it ends with replace the stored ones of the keys it saw, and every transition
//! is queued in the outbox, all in one transaction. Transition times come from the data (row
//! times, window ends), so the notifications — and their idempotency keys — are the same on
//! every replay; window rules' are also the ones live evaluation sent. Windows close only as far
//! as the data's watermark, as in live evaluation.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::alert::{Alert, AlertKey, observe_active, observe_inactive};
use crate::error::{Result, RulesError};
use crate::eval::{Values, instances};
use crate::outbox::{Notification, OutboxEntry};
use crate::spec::{RuleKind, RuleSpec};
use crate::store::Change;
use crate::{Rules, window};

/// What a dry run found.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    /// Rule name.
    pub rule: String,
    /// Range start (RFC 3339).
    pub start: String,
    /// Range end (RFC 3339).
    pub end: String,
    /// Rows read from the stream (row and window rules) or result rows (query rules).
    pub rows: u64,
    /// Notifications that would have been sent, in order.
    pub notifications: Vec<Notification>,
}

/// Replays transitions of keyed observations in order, in memory.
#[derive(Default)]
struct Replay {
    /// Instances now (a key whose instance ended is absent but in `seen`).
    alerts: BTreeMap<AlertKey, Alert>,
    /// Every key observed.
    seen: std::collections::BTreeSet<AlertKey>,
    out: Vec<Notification>,
    /// The outbox entries of the transitions (a replay that acts queues them).
    entries: Vec<OutboxEntry>,
}

impl Replay {
    fn observe(
        &mut self,
        spec: &RuleSpec,
        t: crate::spec::Timing,
        key: AlertKey,
        hit: bool,
        values: Values,
        at: i64,
    ) {
        let prev = self.alerts.get(&key).cloned();
        let (next, note) = if hit {
            let (a, n) = observe_active(prev.as_ref(), &spec.name, &key, values, at, t);
            (Some(a), n)
        } else {
            match &prev {
                Some(p) => observe_inactive(p, at, t),
                None => (None, None),
            }
        };
        if let (Some(a), Some(n)) = (&next, note) {
            self.out.push(Notification::new(spec, a, n));
            self.entries.extend(OutboxEntry::for_transition(spec, a, n));
        }
        self.seen.insert(key.clone());
        match next {
            Some(a) => {
                self.alerts.insert(key, a);
            }
            None => {
                self.alerts.remove(&key);
            }
        }
    }
}

impl Rules {
    /// Dry run of rule `name` over `[start_ns, end_ns)`.
    pub async fn dry_run(&self, name: &str, start_ns: i64, end_ns: i64) -> Result<DryRun> {
        if end_ns <= start_ns {
            return Err(RulesError::Invalid("end: must be after start".into()));
        }
        let (run, _) = self.run_over(name, start_ns, end_ns, true).await?;
        Ok(run)
    }

    /// Replay of rule `name` from `start_ns` to now, acting: the final instances of the keys it
    /// saw and the outbox entries of its transitions are committed together.
    pub async fn replay(&self, name: &str, start_ns: i64) -> Result<DryRun> {
        let end_ns = crate::now_ns();
        if end_ns <= start_ns {
            return Err(RulesError::Invalid("start: must be in the past".into()));
        }
        let (run, replay) = self.run_over(name, start_ns, end_ns, false).await?;
        let changes: Vec<Change> = replay
            .seen
            .iter()
            .map(|k| match replay.alerts.get(k) {
                Some(a) => Change::Put(a.clone()),
                None => Change::Delete(k.clone()),
            })
            .collect();
        let queued = run.notifications.len() as u64;
        let store = self.store.clone();
        let rule = run.rule.clone();
        crate::blocking(move || store.apply(&rule, &changes, replay.entries)).await?;
        if queued > 0 {
            self.stats.notified(&run.rule, queued);
            self.kick();
        }
        tracing::info!(rule = %run.rule, start = %run.start, notifications = queued, "rule replayed");
        Ok(run)
    }

    /// Evaluates rule `name` over `[start_ns, end_ns)` in memory; `force_close` closes every
    /// window ending by `end_ns` (dry runs) instead of only what the data's watermark closed.
    async fn run_over(
        &self,
        name: &str,
        start_ns: i64,
        end_ns: i64,
        force_close: bool,
    ) -> Result<(DryRun, Replay)> {
        let spec = self.get(name).await?.spec;
        let store_spec = {
            let store = self.store.clone();
            let n = name.to_string();
            crate::blocking(move || store.get_rule(&n)).await?
        };
        let timing = store_spec.check()?;
        let mut replay = Replay::default();
        let rows = match spec.kind {
            RuleKind::Query => {
                let sql = spec.sql.as_deref().unwrap_or_default();
                let r = self
                    .query
                    .query(sql)
                    .await
                    .map_err(|e| RulesError::Invalid(format!("sql: {e}")))?;
                let now = crate::now_ns();
                for (key, values) in instances(&r.batches)? {
                    replay.observe(&spec, timing, key, true, values, now);
                }
                r.num_rows() as u64
            }
            RuleKind::Row => {
                self.dry_rows(&spec, timing, start_ns, end_ns, &mut replay)
                    .await?
            }
            RuleKind::Window => {
                let end = force_close.then_some(end_ns);
                self.dry_windows(&spec, timing, (start_ns, end_ns), end, &mut replay)
                    .await?
            }
        };
        let run = DryRun {
            rule: spec.name,
            start: strata_ingest::text::format_rfc3339(start_ns),
            end: strata_ingest::text::format_rfc3339(end_ns),
            rows,
            notifications: std::mem::take(&mut replay.out),
        };
        Ok((run, replay))
    }

    fn range_sql(spec: &RuleSpec, select: &str, start_ns: i64, end_ns: i64) -> String {
        format!(
            "SELECT {select} FROM \"{}\".\"{}\" WHERE time >= to_timestamp_nanos({start_ns}) \
             AND time < to_timestamp_nanos({end_ns}) ORDER BY time",
            spec.db,
            spec.stream.as_deref().unwrap_or_default()
        )
    }

    async fn dry_rows(
        &self,
        spec: &RuleSpec,
        timing: crate::spec::Timing,
        start_ns: i64,
        end_ns: i64,
        replay: &mut Replay,
    ) -> Result<u64> {
        let cond = spec.condition.as_deref().unwrap_or_default();
        let devices = self.devices_for(spec).await?;
        let batches = match devices {
            // The join runs in a private session (attributes as a struct), batch by batch.
            Some(d) => {
                let select = "*, CAST(time AS BIGINT) AS \"__t\"";
                let r = self
                    .query
                    .query(&Self::range_sql(spec, select, start_ns, end_ns))
                    .await
                    .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?;
                let stream = spec.stream.as_deref().unwrap_or_default();
                let mut out = Vec::new();
                for b in r.batches {
                    out.extend(crate::row::matched_rows(stream, cond, b, d.clone()).await?);
                }
                out
            }
            None => {
                let select = format!("*, CAST(time AS BIGINT) AS \"__t\", ({cond}) AS \"__match\"");
                self.query
                    .query(&Self::range_sql(spec, &select, start_ns, end_ns))
                    .await
                    .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?
                    .batches
            }
        };
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        for b in &batches {
            for row in 0..b.num_rows() {
                for (key, mut values) in instances(&[b.slice(row, 1)])? {
                    let hit = values
                        .remove("__match")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false);
                    let at = values.remove("__t").and_then(|v| v.as_f64()).unwrap_or(0.0) as i64;
                    values.remove("time");
                    let key: AlertKey = key.into_iter().filter(|(k, _)| k == "device").collect();
                    replay.observe(spec, timing, key, hit, values, at);
                }
            }
        }
        Ok(rows as u64)
    }

    async fn dry_windows(
        &self,
        spec: &RuleSpec,
        timing: crate::spec::Timing,
        (start_ns, end_ns): (i64, i64),
        close_until: Option<i64>,
        replay: &mut Replay,
    ) -> Result<u64> {
        let shape = window::Shape::of(spec)?;
        let r = self
            .query
            .query(&Self::range_sql(spec, "*", start_ns, end_ns))
            .await
            .map_err(|e| RulesError::Invalid(format!("select: {e}")))?;
        let mut state = window::WindowState::default();
        state.devices = self.devices_for(spec).await?;
        let mut closed = Vec::new();
        for b in &r.batches {
            closed.extend(state.add(spec, shape, b).await?);
        }
        if let Some(end) = close_until {
            closed.extend(state.close_until(spec, shape, end).await?);
        }
        for (end, groups) in closed {
            for (key, (hit, values)) in groups {
                replay.observe(spec, timing, key, hit, values, end);
            }
        }
        Ok(r.num_rows() as u64)
    }
}
