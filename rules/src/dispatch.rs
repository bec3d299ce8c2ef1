//! The outbox dispatcher: a thread that delivers due [`OutboxEntry`]s — webhook POST (with the
//! `X-Strata-Signature` HMAC), MQTT publish ([`crate::mqtt`]), device command ([`CommandSink`]),
//! stream row and `alert_history` row (`Engine::write`) — deletes an entry only once delivered,
//! and retries a failed one with exponential backoff until its `max_attempts`, after which it
//! stays in the outbox as dead.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use strata_storage::{Column, Engine, FieldType, SeriesKey, TableWrite, Value, WriteBatch};

use crate::outbox::{
    CommandSink, HISTORY_STREAM, IDEMPOTENCY_HEADER, Notification, OutboxEntry, SIGNATURE_HEADER,
    Target, backoff_ns, signature,
};
use crate::spec::{ActionSpec, DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS, duration_ns};
use crate::store::Store;

/// Outbox entries read (and their deliveries removed) at a time.
pub const PAGE: usize = 512;

/// Timeout of one webhook request.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Delivers due outbox entries until `stop` is set.
pub struct Dispatcher {
    /// Where `command` actions go (none: they fail and are retried).
    pub commands: Option<Arc<dyn CommandSink>>,
    /// Where `mqtt` actions go (none: they fail and are retried).
    pub mqtt: std::sync::Mutex<Option<crate::mqtt::Publisher>>,
    /// The store holding the outbox.
    pub store: Arc<Store>,
    /// The engine stream actions and the history write into.
    pub engine: Arc<Engine>,
    /// HTTP client of webhooks.
    pub agent: ureq::Agent,
    /// Set to end the loop.
    pub stop: Arc<AtomicBool>,
    /// Counters.
    pub stats: Arc<crate::stats::Stats>,
}

impl Dispatcher {
    /// The dispatcher loop: deliver what is due, then wait for a wake-up or the next due time.
    pub fn run(self, wake: Receiver<()>) {
        while !self.stop.load(Ordering::Relaxed) {
            let wait = match self.round() {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "rules outbox: cannot read the outbox");
                    Duration::from_secs(1)
                }
            };
            match wake.recv_timeout(wait) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// One pass: attempts every due entry, [`PAGE`] entries at a time (oldest first); returns
    /// how long to wait for the next. The `alert_history` rows of a page are written together
    /// (one engine write per database) and a page's delivered entries are removed in one
    /// transaction; an entry is removed only after its delivery succeeded, as before.
    fn round(&self) -> crate::Result<Duration> {
        let now = crate::now_ns();
        let mut next = now + 1_000_000_000;
        let mut after = 0;
        // Lanes (rule, instance, target) with an earlier entry still waiting: their later
        // entries wait too, so a receiver never gets "resolved" before the "firing" it ends.
        let mut waiting: HashSet<String> = HashSet::new();
        loop {
            let page = self.store.outbox_page(after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let mut done = Vec::new();
            let mut history = Vec::new();
            for e in page {
                if e.dead {
                    continue;
                }
                let lane = lane(&e);
                if lane.as_ref().is_some_and(|l| waiting.contains(l)) {
                    continue;
                }
                if e.next_at_ns > now {
                    next = next.min(e.next_at_ns);
                    waiting.extend(lane);
                    continue;
                }
                if self.stop.load(Ordering::Relaxed) {
                    break;
                }
                if matches!(e.target, Target::History { .. }) {
                    history.push(e);
                    continue;
                }
                if !self.attempt(e, &mut done, &mut next)? {
                    waiting.extend(lane);
                }
            }
            self.write_history(history, &mut done, &mut next)?;
            self.store.delivered_many(&done)?;
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let wait = next
            .saturating_sub(crate::now_ns())
            .clamp(1_000_000, 1_000_000_000);
        Ok(Duration::from_nanos(wait as u64))
    }

    /// Delivers one entry: its sequence joins `done` (true), or its failure is recorded (false).
    fn attempt(&self, e: OutboxEntry, done: &mut Vec<u64>, next: &mut i64) -> crate::Result<bool> {
        match self.deliver(&e) {
            Ok(()) => {
                done.push(e.seq);
                self.stats.delivered(e.rule());
                Ok(true)
            }
            Err(err) => self.failed(e, err, next).map(|()| false),
        }
    }

    /// `alert_history` rows of due entries, one engine write per database; if that write fails,
    /// each entry is attempted alone (so one bad row fails only itself).
    fn write_history(
        &self,
        entries: Vec<OutboxEntry>,
        done: &mut Vec<u64>,
        next: &mut i64,
    ) -> crate::Result<()> {
        let mut by_db: std::collections::BTreeMap<String, Vec<OutboxEntry>> = Default::default();
        for e in entries {
            if let Target::History { db } = &e.target {
                by_db.entry(db.clone()).or_default().push(e);
            }
        }
        for (db, entries) in by_db {
            let tables = entries
                .iter()
                .map(|e| {
                    row_table(
                        HISTORY_STREAM,
                        e,
                        notification_columns(&e.notification, true),
                    )
                })
                .collect();
            let batch = WriteBatch {
                database: db,
                tables,
            };
            if self.engine.write(&batch).is_ok() {
                for e in &entries {
                    done.push(e.seq);
                    self.stats.delivered(e.rule());
                }
                continue;
            }
            for e in entries {
                self.attempt(e, done, next)?;
            }
        }
        Ok(())
    }

    /// Counts a failed attempt: retried after a backoff, or dead after the last attempt.
    fn failed(&self, mut e: OutboxEntry, err: String, next: &mut i64) -> crate::Result<()> {
        e.attempts += 1;
        e.last_error = Some(err.clone());
        let (max, base) = retry_policy(&e.target);
        if e.attempts >= max {
            e.dead = true;
            tracing::warn!(rule = %e.rule(), id = %e.notification.id, attempts = e.attempts,
                error = %err, "rules outbox: notification dead-lettered");
            self.stats.dead(e.rule());
        } else {
            e.next_at_ns = crate::now_ns() + backoff_ns(base, e.attempts);
            *next = (*next).min(e.next_at_ns);
            tracing::info!(rule = %e.rule(), id = %e.notification.id, attempts = e.attempts,
                error = %err, "rules outbox: delivery failed, will retry");
            self.stats.failed_delivery(e.rule());
        }
        self.store.update_entry(&e)
    }

    fn deliver(&self, e: &OutboxEntry) -> Result<(), String> {
        match &e.target {
            Target::Action { action, db } => match action {
                ActionSpec::Webhook { url, secret, .. } => {
                    post_webhook(&self.agent, url, secret.as_deref(), &e.notification)
                }
                ActionSpec::Stream { db: d, stream } => self.write_row(
                    d.as_deref().unwrap_or(db),
                    stream,
                    e,
                    notification_columns(&e.notification, false),
                ),
                ActionSpec::Command { name, payload } => self.command(e, name, payload),
                ActionSpec::Mqtt { topic, .. } => self.publish(topic, &e.notification),
            },
            Target::History { db } => self.write_row(
                db,
                HISTORY_STREAM,
                e,
                notification_columns(&e.notification, true),
            ),
        }
    }

    /// QoS 1 publish of the webhook body to the rules broker.
    fn publish(&self, topic: &str, n: &Notification) -> Result<(), String> {
        let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
        let topic = crate::mqtt::topic_for(topic, &n.rule, &n.key);
        let mut publisher = self
            .mqtt
            .lock()
            .map_err(|_| "mqtt publisher poisoned".to_string())?;
        match publisher.as_mut() {
            Some(p) => p.publish(&topic, &body),
            None => Err("mqtt action: this server has no --rules-mqtt-broker".into()),
        }
    }

    /// A command to the key's device when the alert fires (a resolve sends nothing).
    fn command(
        &self,
        e: &OutboxEntry,
        name: &str,
        payload: &serde_json::Value,
    ) -> Result<(), String> {
        if e.notification.state != "firing" {
            return Ok(());
        }
        let Some(device) = e.notification.key.get("device") else {
            return Err("command action: the alert key has no device".into());
        };
        match &self.commands {
            Some(sink) => sink.send_command(device, name, payload),
            None => Err("command action: no device command inbox in this server".into()),
        }
    }

    fn write_row(
        &self,
        db: &str,
        stream: &str,
        e: &OutboxEntry,
        columns: Vec<Column>,
    ) -> Result<(), String> {
        let batch = WriteBatch {
            database: db.to_string(),
            tables: vec![row_table(stream, e, columns)],
        };
        self.engine
            .write(&batch)
            .map(|_| ())
            .map_err(|e| format!("write to {db}.{stream}: {e}"))
    }
}

/// One notification as a row of `stream`: tagged with the rule and the key's other columns,
/// under the key's device, at the notification's time.
fn row_table(stream: &str, e: &OutboxEntry, columns: Vec<Column>) -> TableWrite {
    let n = &e.notification;
    let mut tags: Vec<(String, String)> = vec![("rule".to_string(), n.rule.clone())];
    tags.extend(
        n.key
            .iter()
            .filter(|(k, _)| k.as_str() != "device" && k.as_str() != "rule")
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    tags.sort();
    let device = n.key.get("device").cloned().unwrap_or_default();
    TableWrite {
        stream: stream.to_string(),
        series: vec![SeriesKey { device, tags }],
        row_series: vec![0],
        times: vec![e.time_ns],
        columns,
    }
}

fn retry_policy(target: &Target) -> (u32, i64) {
    let default_base = duration_ns("backoff", None, DEFAULT_BACKOFF).unwrap_or(1_000_000_000);
    match target {
        Target::Action {
            action:
                ActionSpec::Webhook {
                    max_attempts,
                    backoff,
                    ..
                }
                | ActionSpec::Mqtt {
                    max_attempts,
                    backoff,
                    ..
                },
            ..
        } => (
            max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            duration_ns("backoff", backoff.as_deref(), DEFAULT_BACKOFF).unwrap_or(default_base),
        ),
        _ => (DEFAULT_MAX_ATTEMPTS, default_base),
    }
}

/// One row: `state`, the numeric values as float fields (stream action) or all values as a JSON
/// `values` field plus the key as JSON (history).
fn notification_columns(n: &Notification, history: bool) -> Vec<Column> {
    let mut cols = vec![string_column("state", &n.state)];
    if history {
        cols.push(string_column(
            "values",
            &serde_json::Value::Object(n.values.clone()).to_string(),
        ));
        cols.push(string_column(
            "key",
            &serde_json::to_string(&n.key).unwrap_or_default(),
        ));
        cols.push(string_column("id", &n.id));
    } else {
        for (k, v) in &n.values {
            if k == "state" {
                continue;
            }
            if let Some(f) = v.as_f64() {
                let mut c = Column::new(k.clone(), FieldType::Float);
                c.data.push_value(&Value::Float(f));
                c.valid.push(true);
                cols.push(c);
            }
        }
    }
    cols
}

fn string_column(name: &str, value: &str) -> Column {
    let mut c = Column::new(name, FieldType::String);
    c.data.push_value(&Value::String(value.to_string()));
    c.valid.push(true);
    c
}

/// A webhook client with the delivery timeout.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(WEBHOOK_TIMEOUT)
        .redirects(0)
        .build()
}

/// POSTs the notification; any 2xx is a delivery.
fn post_webhook(
    agent: &ureq::Agent,
    url: &str,
    secret: Option<&str>,
    n: &Notification,
) -> Result<(), String> {
    let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
    let mut req = agent
        .post(url)
        .set("Content-Type", "application/json")
        .set(IDEMPOTENCY_HEADER, &n.id);
    if let Some(s) = secret {
        req = req.set(SIGNATURE_HEADER, &signature(s, &body));
    }
    match req.send_bytes(&body) {
        Ok(r) if (200..300).contains(&r.status()) => Ok(()),
        Ok(r) => Err(format!("{url} answered {}", r.status())),
        Err(ureq::Error::Status(code, _)) => Err(format!("{url} answered {code}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The delivery lane of an entry: its rule, alert instance and action, whose notifications
/// must arrive in order; `None` for history rows (each carries its own time).
fn lane(e: &OutboxEntry) -> Option<String> {
    match &e.target {
        Target::History { .. } => None,
        target => Some(format!(
            "{}\u{0}{}\u{0}{}",
            e.notification.rule,
            serde_json::to_string(&e.notification.key).unwrap_or_default(),
            serde_json::to_string(target).unwrap_or_default()
        )),
    }
}
