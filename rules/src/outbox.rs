//! Notifications and their delivery (webhook, MQTT publish, command, stream write). An alert transition queues one [`OutboxEntry`] per action
//! (plus one for the alert history stream) in the same transaction as the state change; the
//! dispatcher thread delivers due entries, deletes an entry only once delivered, and retries a
//! failed one with exponential backoff until its action's `max_attempts`, after which the entry
//! stays in the outbox as dead (a dead letter, listed by `GET /api/v1/rules/{name}/outbox`).
//!
//! Delivery is at least once: a crash after delivery but before the delete delivers again, with
//! the same `id` (idempotency key: a hash of rule, key, start time and state), which receivers
//! use to drop duplicates. Stream writes are idempotent by themselves (same series and time).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_storage::{Column, Engine, FieldType, SeriesKey, TableWrite, Value, WriteBatch};

use crate::alert::{Alert, AlertKey, Notify};
use crate::spec::{ActionSpec, DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS, RuleSpec, duration_ns};
use crate::store::Store;

/// The stream, in the rule's database, that receives every alert transition.
pub const HISTORY_STREAM: &str = "alert_history";
/// Header carrying the body's HMAC-SHA256 (`sha256=<hex>`) when the webhook has a secret.
pub const SIGNATURE_HEADER: &str = "X-Strata-Signature";
/// Header carrying the notification id.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Longest delay between two attempts.
const MAX_BACKOFF_NS: i64 = 600_000_000_000;
/// Timeout of one webhook request.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// The JSON a webhook receives (and what stream actions and the history record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency key: the same for every delivery of this transition.
    pub id: String,
    /// Rule name.
    pub rule: String,
    /// Key columns of the instance.
    pub key: AlertKey,
    /// `firing` or `resolved`.
    pub state: String,
    /// Values of the last observation.
    pub values: serde_json::Map<String, serde_json::Value>,
    /// Time of the transition (RFC 3339).
    pub time: String,
    /// When the condition started to hold (RFC 3339).
    pub started: String,
    /// The rule's labels.
    pub labels: BTreeMap<String, String>,
    /// Transition time in ns (for stream writes).
    #[serde(skip_serializing)]
    #[serde(default)]
    pub time_ns: i64,
}

impl Notification {
    /// The notification of `alert`'s transition `n` under `rule`.
    pub fn new(rule: &RuleSpec, alert: &Alert, n: Notify) -> Notification {
        let (state, at) = match n {
            Notify::Firing => ("firing", alert.fired_ns.unwrap_or(alert.last_active_ns)),
            Notify::Resolved => (
                "resolved",
                alert.resolved_ns.unwrap_or(alert.last_active_ns),
            ),
        };
        let key_json = serde_json::to_string(&alert.key).unwrap_or_default();
        let digest = Sha256::digest(
            format!("{}\0{key_json}\0{}\0{state}", rule.name, alert.started_ns).as_bytes(),
        );
        Notification {
            id: hex(&digest[..16]),
            rule: rule.name.clone(),
            key: alert.key.clone(),
            state: state.to_string(),
            values: alert.values.clone(),
            time: strata_ingest::text::format_rfc3339(at),
            started: strata_ingest::text::format_rfc3339(alert.started_ns),
            labels: rule.labels.clone(),
            time_ns: at,
        }
    }
}

/// Where an entry goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "to")]
pub enum Target {
    /// One of the rule's actions (as it was when the transition happened).
    Action {
        /// The action.
        action: ActionSpec,
        /// The rule's database (for stream actions without one).
        db: String,
    },
    /// The alert history stream of a database.
    History {
        /// Database.
        db: String,
    },
}

/// A notification waiting for delivery (or dead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Sequence number (assigned by the store).
    pub seq: u64,
    /// Destination.
    pub target: Target,
    /// What to deliver.
    pub notification: Notification,
    /// Transition time in ns (kept here because the notification does not serialize it).
    pub time_ns: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Earliest time of the next attempt (ns).
    pub next_at_ns: i64,
    /// Given up: attempts exhausted.
    pub dead: bool,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
}

impl OutboxEntry {
    /// An entry due now.
    pub fn new(target: Target, notification: Notification) -> OutboxEntry {
        OutboxEntry {
            seq: 0,
            time_ns: notification.time_ns,
            target,
            notification,
            attempts: 0,
            next_at_ns: 0,
            dead: false,
            last_error: None,
        }
    }

    /// The entries of one transition: each action, then the history stream.
    pub fn for_transition(rule: &RuleSpec, alert: &Alert, n: Notify) -> Vec<OutboxEntry> {
        let note = Notification::new(rule, alert, n);
        let mut out: Vec<OutboxEntry> = rule
            .actions
            .iter()
            .map(|a| {
                OutboxEntry::new(
                    Target::Action {
                        action: a.clone(),
                        db: rule.db.clone(),
                    },
                    note.clone(),
                )
            })
            .collect();
        out.push(OutboxEntry::new(
            Target::History {
                db: rule.db.clone(),
            },
            note,
        ));
        out
    }

    /// The rule this entry belongs to.
    pub fn rule(&self) -> &str {
        &self.notification.rule
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// Delay before attempt `attempts + 1` after `attempts` failures: `backoff × 2^(attempts-1)`,
/// at most ten minutes.
pub fn backoff_ns(base_ns: i64, attempts: u32) -> i64 {
    let shift = attempts.saturating_sub(1).min(40);
    base_ns
        .max(1)
        .saturating_mul(1i64 << shift)
        .min(MAX_BACKOFF_NS)
}

/// Delivers `command` actions into a device's command inbox (implemented by the server over the
/// registry, which this crate does not depend on).
pub trait CommandSink: Send + Sync {
    /// Queues command `name` with `payload` for `device` and wakes its session.
    fn send_command(
        &self,
        device: &str,
        name: &str,
        payload: &serde_json::Value,
    ) -> Result<(), String>;
}

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

    /// One pass: attempts every due entry; returns how long to wait for the next.
    fn round(&self) -> crate::Result<Duration> {
        let now = crate::now_ns();
        let mut next = now + 1_000_000_000;
        for mut e in self.store.outbox()? {
            if e.dead {
                continue;
            }
            if e.next_at_ns > now {
                next = next.min(e.next_at_ns);
                continue;
            }
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            match self.deliver(&e) {
                Ok(()) => {
                    self.store.delivered(e.seq)?;
                    self.stats.delivered(e.rule());
                }
                Err(err) => {
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
                        next = next.min(e.next_at_ns);
                        tracing::info!(rule = %e.rule(), id = %e.notification.id, attempts = e.attempts,
                            error = %err, "rules outbox: delivery failed, will retry");
                        self.stats.failed_delivery(e.rule());
                    }
                    self.store.update_entry(&e)?;
                }
            }
        }
        let wait = next
            .saturating_sub(crate::now_ns())
            .clamp(1_000_000, 1_000_000_000);
        Ok(Duration::from_nanos(wait as u64))
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
        let batch = WriteBatch {
            database: db.to_string(),
            tables: vec![TableWrite {
                stream: stream.to_string(),
                series: vec![SeriesKey { device, tags }],
                row_series: vec![0],
                times: vec![e.time_ns],
                columns,
            }],
        };
        self.engine
            .write(&batch)
            .map(|_| ())
            .map_err(|e| format!("write to {db}.{stream}: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ns(100, 1), 100);
        assert_eq!(backoff_ns(100, 2), 200);
        assert_eq!(backoff_ns(100, 4), 800);
        assert_eq!(backoff_ns(1_000_000_000, 100), MAX_BACKOFF_NS);
    }
}
