//! Notifications and the outbox entries that carry them (delivered by [`crate::dispatch`]:
//! webhook, MQTT publish, command, stream write). An alert transition queues one [`OutboxEntry`] per action
//! (plus one for the alert history stream) in the same transaction as the state change; the
//! dispatcher thread delivers due entries, deletes an entry only once delivered, and retries a
//! failed one with exponential backoff until its action's `max_attempts`, after which the entry
//! stays in the outbox as dead (a dead letter, listed by `GET /api/v1/rules/{name}/outbox`).
//!
//! Delivery is at least once: a crash after delivery but before the delete delivers again, with
//! the same `id` (idempotency key: a hash of rule, key, start time and state), which receivers
//! use to drop duplicates. Stream writes are idempotent by themselves (same series and time).

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::alert::{Alert, AlertKey, Notify};
use crate::spec::{ActionSpec, RuleSpec};

pub use crate::spec::HISTORY_STREAM;
/// Header carrying the body's HMAC-SHA256 (`sha256=<hex>`) when the webhook has a secret.
pub const SIGNATURE_HEADER: &str = "X-Strata-Signature";
/// Header carrying the notification id.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Longest delay between two attempts.
pub const MAX_BACKOFF_NS: i64 = 600_000_000_000;

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
