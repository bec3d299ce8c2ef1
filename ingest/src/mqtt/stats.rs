//! Counters of the MQTT endpoint (connections, messages, bytes, refusals by reason) and the
//! [`MqttStats`] snapshot exposed for `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why the server refused a connection, a packet or a message, or closed a session itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// CONNECT with a wrong device key or unknown device (CONNACK 0x04).
    BadCredentials,
    /// The device is not allowed to connect, e.g. disabled (CONNACK 0x05).
    NotAuthorized,
    /// Empty client id, or one that differs from the authenticated device (CONNACK 0x02).
    BadClientId,
    /// The authenticator could not answer (CONNACK 0x03).
    AuthUnavailable,
    /// MQTT 3.1 or 5 (CONNACK 0x01).
    ProtocolVersion,
    /// Too many open connections (CONNACK 0x03).
    ConnectionLimit,
    /// No CONNECT within the connect timeout.
    ConnectTimeout,
    /// A packet that does not parse.
    Malformed,
    /// A packet above the size limit.
    PacketTooLarge,
    /// A packet that is valid MQTT but not allowed here (second CONNECT, QoS 2 handshake packets).
    ProtocolViolation,
    /// A QoS 2 PUBLISH.
    Qos2,
    /// A retained PUBLISH.
    Retain,
    /// A PUBLISH to another device's topic.
    ForeignTopic,
    /// A PUBLISH to a topic outside `devices/{id}/telemetry[/{stream}]`.
    InvalidTopic,
    /// A payload that is neither valid JSON telemetry nor valid line protocol.
    InvalidPayload,
    /// A message whose field types conflict with the stream's schema.
    SchemaConflict,
    /// A message refused by its device model's schema (policy `reject`).
    Validation,
    /// The storage engine failed to write.
    Storage,
    /// No packet within 1.5 × the keep-alive.
    KeepAliveTimeout,
    /// A write to the client failed (it went away) or blocked longer than the write timeout.
    WriteFailed,
    /// A SUBSCRIBE filter outside `devices/{id}/commands/#` (SUBACK 0x80, the session stays).
    SubscribeDenied,
    /// A newer connection with the same client id took the session over.
    TakenOver,
    /// The server closed the device's sessions (`disconnect_device`, e.g. disabled or key rotated).
    Revoked,
}

impl RejectReason {
    /// Every reason, in declaration order.
    pub const ALL: [RejectReason; 23] = [
        RejectReason::BadCredentials,
        RejectReason::NotAuthorized,
        RejectReason::BadClientId,
        RejectReason::AuthUnavailable,
        RejectReason::ProtocolVersion,
        RejectReason::ConnectionLimit,
        RejectReason::ConnectTimeout,
        RejectReason::Malformed,
        RejectReason::PacketTooLarge,
        RejectReason::ProtocolViolation,
        RejectReason::Qos2,
        RejectReason::Retain,
        RejectReason::ForeignTopic,
        RejectReason::InvalidTopic,
        RejectReason::InvalidPayload,
        RejectReason::SchemaConflict,
        RejectReason::Validation,
        RejectReason::Storage,
        RejectReason::KeepAliveTimeout,
        RejectReason::WriteFailed,
        RejectReason::SubscribeDenied,
        RejectReason::TakenOver,
        RejectReason::Revoked,
    ];

    /// Stable snake_case label (for metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadCredentials => "bad_credentials",
            RejectReason::NotAuthorized => "not_authorized",
            RejectReason::BadClientId => "bad_client_id",
            RejectReason::AuthUnavailable => "auth_unavailable",
            RejectReason::ProtocolVersion => "protocol_version",
            RejectReason::ConnectionLimit => "connection_limit",
            RejectReason::ConnectTimeout => "connect_timeout",
            RejectReason::Malformed => "malformed",
            RejectReason::PacketTooLarge => "packet_too_large",
            RejectReason::ProtocolViolation => "protocol_violation",
            RejectReason::Qos2 => "qos2",
            RejectReason::Retain => "retain",
            RejectReason::ForeignTopic => "foreign_topic",
            RejectReason::InvalidTopic => "invalid_topic",
            RejectReason::InvalidPayload => "invalid_payload",
            RejectReason::SchemaConflict => "schema_conflict",
            RejectReason::Validation => "validation",
            RejectReason::Storage => "storage",
            RejectReason::KeepAliveTimeout => "keep_alive_timeout",
            RejectReason::WriteFailed => "write_failed",
            RejectReason::SubscribeDenied => "subscribe_denied",
            RejectReason::TakenOver => "taken_over",
            RejectReason::Revoked => "revoked",
        }
    }
}

impl RejectReason {
    /// The protocol-independent class of the reason, shared with the HTTP endpoint's metrics:
    /// `auth`, `limit`, `malformed`, `too_large`, `unsupported`, `topic`, `schema`, `validation`,
    /// `storage`, `timeout` or `closed`.
    pub fn class(self) -> &'static str {
        use RejectReason as R;
        match self {
            R::BadCredentials | R::NotAuthorized | R::BadClientId | R::AuthUnavailable => "auth",
            R::ConnectionLimit => "limit",
            R::Malformed | R::InvalidPayload | R::ProtocolViolation => "malformed",
            R::PacketTooLarge => "too_large",
            R::ProtocolVersion | R::Qos2 | R::Retain => "unsupported",
            R::ForeignTopic | R::InvalidTopic | R::SubscribeDenied => "topic",
            R::SchemaConflict => "schema",
            R::Validation => "validation",
            R::Storage => "storage",
            R::ConnectTimeout | R::KeepAliveTimeout => "timeout",
            R::WriteFailed | R::TakenOver | R::Revoked => "closed",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of the endpoint's counters (monotonic since start, except the `*_open` gauges).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttStats {
    /// TCP (or TLS) connections accepted.
    pub connections_accepted: u64,
    /// Connections currently open, authenticated or not.
    pub connections_open: u64,
    /// Successful CONNECTs (CONNACK 0x00).
    pub sessions_started: u64,
    /// Authenticated sessions currently open.
    pub sessions_open: u64,
    /// PUBLISH packets accepted for storage.
    pub messages_received: u64,
    /// Of those, QoS 0.
    pub messages_qos0: u64,
    /// Of those, QoS 1.
    pub messages_qos1: u64,
    /// PUBACKs sent (each after its message was durable).
    pub pubacks_sent: u64,
    /// Payload bytes of accepted PUBLISH packets.
    pub payload_bytes: u64,
    /// Bytes read from clients.
    pub bytes_received: u64,
    /// Rows written to the engine.
    pub rows_written: u64,
    /// Engine writes (each a group commit of messages from one or more connections).
    pub commits: u64,
    /// Messages that pushed a device over its rate limit (its socket was paused).
    pub messages_throttled: u64,
    /// Payload bytes currently received but not yet committed (gauge).
    pub pending_bytes: u64,
    /// Rows stored with an `_invalid` flag because they violate the device's model (policy
    /// `flag`).
    pub rows_flagged: u64,
    /// Refusals and server-side closes, by reason (every reason listed, zero or not).
    pub rejects: Vec<(RejectReason, u64)>,
}

impl MqttStats {
    /// The count for one reason.
    pub fn rejects_for(&self, reason: RejectReason) -> u64 {
        self.rejects
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

/// The live counters behind [`MqttStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_open: AtomicU64,
    pub(crate) sessions_started: AtomicU64,
    pub(crate) sessions_open: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) messages_qos0: AtomicU64,
    pub(crate) messages_qos1: AtomicU64,
    pub(crate) pubacks_sent: AtomicU64,
    pub(crate) payload_bytes: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) rows_written: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) messages_throttled: AtomicU64,
    pub(crate) pending_bytes: AtomicU64,
    pub(crate) rows_flagged: AtomicU64,
    pub(crate) deliveries_sent: AtomicU64,
    rejects: [AtomicU64; RejectReason::ALL.len()],
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts one from a gauge.
pub(crate) fn dec(counter: &AtomicU64) {
    counter.fetch_sub(1, Ordering::Relaxed);
}

/// Payload bytes counted in [`Counters::pending_bytes`] until dropped.
#[derive(Debug)]
pub(crate) struct PendingCharge {
    counters: Arc<Counters>,
    bytes: u64,
}

impl PendingCharge {
    /// An empty charge.
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        PendingCharge { counters, bytes: 0 }
    }

    /// Adds `n` bytes.
    pub(crate) fn add(&mut self, n: usize) {
        self.bytes += n as u64;
        add(&self.counters.pending_bytes, n as u64);
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Moves the bytes held into a new charge, leaving this one empty.
    pub(crate) fn take(&mut self) -> PendingCharge {
        PendingCharge {
            counters: self.counters.clone(),
            bytes: std::mem::take(&mut self.bytes),
        }
    }
}

impl Drop for PendingCharge {
    fn drop(&mut self) {
        self.counters
            .pending_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Counters {
    /// Counts one refusal.
    pub(crate) fn reject(&self, reason: RejectReason) {
        let idx = RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        add(&self.rejects[idx], 1);
    }

    /// A consistent-enough snapshot (each counter read once, relaxed).
    pub(crate) fn snapshot(&self) -> MqttStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MqttStats {
            connections_accepted: get(&self.connections_accepted),
            connections_open: get(&self.connections_open),
            sessions_started: get(&self.sessions_started),
            sessions_open: get(&self.sessions_open),
            messages_received: get(&self.messages_received),
            messages_qos0: get(&self.messages_qos0),
            messages_qos1: get(&self.messages_qos1),
            pubacks_sent: get(&self.pubacks_sent),
            payload_bytes: get(&self.payload_bytes),
            bytes_received: get(&self.bytes_received),
            rows_written: get(&self.rows_written),
            commits: get(&self.commits),
            messages_throttled: get(&self.messages_throttled),
            pending_bytes: get(&self.pending_bytes),
            rows_flagged: get(&self.rows_flagged),
            rejects: RejectReason::ALL
                .iter()
                .zip(&self.rejects)
                .map(|(r, c)| (*r, get(c)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_counted() {
        let mut labels: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), RejectReason::ALL.len());
        let c = Counters::default();
        c.reject(RejectReason::Qos2);
        c.reject(RejectReason::Qos2);
        let s = c.snapshot();
        assert_eq!(s.rejects_for(RejectReason::Qos2), 2);
        assert_eq!(s.rejects_for(RejectReason::Retain), 0);
    }
}
