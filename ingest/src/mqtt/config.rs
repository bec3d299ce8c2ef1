//! Configuration of the MQTT device endpoint: limits, timeouts, commit pipeline and payload
//! decoding options, with the documented defaults of `docs/mqtt.md`.

use std::sync::Arc;
use std::time::Duration;

use strata_storage::DEFAULT_DATABASE;

use super::channel::DeviceChannel;
use crate::json::IntegerMode;
use crate::line_protocol::Precision;
use crate::validate::SchemaSource;

/// A per-device message rate: a token bucket refilled at `messages_per_sec` holding at most
/// `burst` tokens. A device over its rate is slowed down: the server stops reading its socket
/// until the bucket has refilled (nothing is dropped).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained messages per second.
    pub messages_per_sec: f64,
    /// Messages a device may send at once after being idle.
    pub burst: f64,
}

/// Settings of an [`MqttServer`](super::MqttServer); [`MqttConfig::default`] gives the defaults.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Database that device telemetry is written to (default `default`).
    pub database: String,
    /// Stream of messages published to `devices/{id}/telemetry` (default `telemetry`).
    pub default_stream: String,
    /// Largest accepted packet, counted as MQTT's "remaining length" (everything after the
    /// fixed header); a larger packet closes the connection (default 256 KiB).
    pub max_packet_bytes: usize,
    /// Open connections (authenticated or not) beyond which new ones are refused with CONNACK
    /// 0x03 (default 20,000).
    pub max_connections: usize,
    /// Per-device message rate; `None` (the default) means unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Time a new connection has to send CONNECT (default 10 s).
    pub connect_timeout: Duration,
    /// Keep-alive applied when a client asks for none (keep-alive 0); default 300 s.
    pub default_keep_alive: Duration,
    /// Longest a write to a client may block before the connection is closed (default 30 s).
    pub write_timeout: Duration,
    /// Messages a connection may hold waiting for a commit before the server stops reading its
    /// socket (default 65,536).
    pub max_pending_messages: usize,
    /// Payload bytes a connection may hold waiting for a commit before the server stops reading
    /// its socket (default 16 MiB).
    pub max_pending_bytes: usize,
    /// Payload bytes all connections together may hold waiting for commits before every
    /// connection stops reading (default 256 MiB): bounds memory when the disk is slow.
    pub max_total_pending_bytes: usize,
    /// Threads that write merged batches to the engine (default 2: one appends while the other
    /// waits for the WAL sync).
    pub commit_threads: usize,
    /// Rows merged into one engine write at most (default 262,144).
    pub max_commit_rows: usize,
    /// Unit of numeric JSON timestamps (default milliseconds).
    pub json_epoch_unit: Precision,
    /// How JSON integer literals are stored (default as floats).
    pub json_integers: IntegerMode,
    /// Timestamp precision of line-protocol payloads (default nanoseconds).
    pub line_protocol_precision: Precision,
    /// Tags naming the device of a line-protocol point, tried in order (the server passes its
    /// `--device-tag` list; default `device`). A point naming another device is refused.
    pub device_tags: Vec<String>,
    /// Where each device's model schema is found; messages are validated against it
    /// (`crate::validate`). `None` (the default): no validation.
    pub schemas: Option<Arc<dyn SchemaSource>>,
    /// The device plane: QoS 1 deliveries (commands), control topics and persistent sessions.
    /// `None` (the default): devices may subscribe but nothing is delivered, and control
    /// publishes are refused like any non-telemetry topic.
    pub channel: Option<Arc<dyn DeviceChannel>>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            database: DEFAULT_DATABASE.into(),
            default_stream: "telemetry".into(),
            max_packet_bytes: 256 << 10,
            max_connections: 20_000,
            rate_limit: None,
            connect_timeout: Duration::from_secs(10),
            default_keep_alive: Duration::from_secs(300),
            write_timeout: Duration::from_secs(30),
            max_pending_messages: 65_536,
            max_pending_bytes: 16 << 20,
            max_total_pending_bytes: 256 << 20,
            commit_threads: 2,
            max_commit_rows: 1 << 18,
            json_epoch_unit: Precision::Milliseconds,
            json_integers: IntegerMode::Float,
            line_protocol_precision: Precision::Nanoseconds,
            device_tags: vec!["device".into()],
            schemas: None,
            channel: None,
        }
    }
}
