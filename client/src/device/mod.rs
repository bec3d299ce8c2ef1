//! The device SDK: one MQTT 3.1.1 connection (plain or TLS, device key or client certificate,
//! persistent session) that publishes telemetry through an on-disk store-and-forward buffer,
//! receives and acknowledges cloud-to-device commands, keeps the twin's desired properties in
//! sync and reports patches, and serves direct methods. [`provision`] registers a device from an
//! enrollment group first. See `docs/sdk.md`.
//!
//! Threads: the *event* thread drives the `rumqttc` connection (reconnecting after
//! [`DeviceConfig::reconnect_delay`]), the *sender* thread hands buffered telemetry and control
//! messages to it in order, and the *dispatch* thread runs the handlers.

pub mod buffer;
pub mod point;
pub mod provision;
pub mod tls;
pub mod twin;

mod link;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use buffer::BufferStats;
pub use point::{FieldValue, Point};
pub use provision::{Provisioned, derive_key, provision, provision_with_certificate};
pub use twin::DesiredUpdate;

/// Errors of the device SDK.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The store-and-forward buffer failed.
    #[error(transparent)]
    Buffer(#[from] buffer::BufferError),
    /// The TLS configuration is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// An endpoint URL is not `mqtt://host:port` or `mqtts://host:port`.
    #[error("invalid MQTT endpoint {0:?} (expected mqtt://host:port or mqtts://host:port)")]
    Endpoint(String),
    /// Provisioning was refused or failed.
    #[error("provisioning: {0}")]
    Provisioning(String),
    /// A point cannot be encoded (no stream name, or no field).
    #[error("invalid point: {0}")]
    InvalidPoint(String),
    /// The device was closed.
    #[error("the device connection is closed")]
    Closed,
    /// [`Device::flush`] timed out with messages still unacknowledged.
    #[error("{0} buffered messages still unacknowledged after the timeout")]
    FlushTimeout(u64),
}

/// How the device authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// The device key (MQTT password).
    Key(String),
    /// A client certificate (PEM chain, PEM private key) whose CN is the device id; MQTTS only.
    Certificate {
        /// The certificate chain, PEM.
        cert_pem: Vec<u8>,
        /// The private key, PEM.
        key_pem: Vec<u8>,
    },
}

/// Where and how to connect, and the buffer's settings.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// The device id (also the MQTT client id and user name).
    pub device_id: String,
    /// Server host.
    pub host: String,
    /// MQTT (or MQTTS) port.
    pub port: u16,
    /// Credentials.
    pub auth: Auth,
    /// For MQTTS: the PEM CA certificates to trust (e.g. `DATA/tls/ca.pem`); `None`: plain TCP.
    pub ca_pem: Option<Vec<u8>>,
    /// Directory of the store-and-forward buffer (one per device).
    pub buffer_dir: PathBuf,
    /// Bound of the buffer's pending bytes; beyond it the oldest messages are dropped.
    pub buffer_max_bytes: u64,
    /// fdatasync every buffered message before it is sent (default true).
    pub buffer_sync: bool,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Pause before reconnecting after a connection error.
    pub reconnect_delay: Duration,
}

impl DeviceConfig {
    /// A plain-MQTT configuration with a device key, 64 MiB buffer in `buffer_dir`.
    pub fn new(device_id: &str, host: &str, port: u16, key: &str, buffer_dir: PathBuf) -> Self {
        DeviceConfig {
            device_id: device_id.to_owned(),
            host: host.to_owned(),
            port,
            auth: Auth::Key(key.to_owned()),
            ca_pem: None,
            buffer_dir,
            buffer_max_bytes: 64 << 20,
            buffer_sync: true,
            keep_alive: Duration::from_secs(30),
            reconnect_delay: Duration::from_millis(500),
        }
    }

    /// The MQTTS configuration of a device provisioned by certificate
    /// ([`provision_with_certificate`]): its `mqtts` endpoint, the certificate as credentials,
    /// trusting `ca_pem` (the CA of the server's certificate).
    pub fn from_certificate(
        p: &Provisioned,
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
        buffer_dir: PathBuf,
    ) -> Result<Self, DeviceError> {
        let (host, port) = parse_endpoint(&p.mqtts)?;
        let mut config = DeviceConfig::new(&p.device_id, &host, port, "", buffer_dir);
        config.auth = Auth::Certificate {
            cert_pem: cert_pem.to_vec(),
            key_pem: key_pem.to_vec(),
        };
        config.ca_pem = Some(ca_pem.to_vec());
        Ok(config)
    }

    /// The configuration for a provisioned device, from the endpoint it was given
    /// (`mqtt://host:port`; for `mqtts://` set [`DeviceConfig::ca_pem`] afterwards).
    pub fn from_provisioned(p: &Provisioned, buffer_dir: PathBuf) -> Result<Self, DeviceError> {
        let (host, port) = parse_endpoint(&p.mqtt)?;
        Ok(DeviceConfig::new(
            &p.device_id,
            &host,
            port,
            &p.key,
            buffer_dir,
        ))
    }
}

/// Splits `mqtt://host:port` / `mqtts://host:port`.
pub fn parse_endpoint(url: &str) -> Result<(String, u16), DeviceError> {
    let bad = || DeviceError::Endpoint(url.to_owned());
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("mqtts://"))
        .ok_or_else(bad)?;
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

/// A cloud-to-device command as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Command id.
    pub id: String,
    /// Command name.
    pub name: String,
    /// Its JSON payload.
    pub payload: Value,
    /// Whether the server expects an acknowledgement (the SDK sends it).
    pub ack: bool,
}

/// A command handler's verdict, sent as the acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutcome {
    /// `{"status": "completed", "result": ...}`.
    Completed(Value),
    /// `{"status": "rejected", "result": ...}`.
    Rejected(Value),
}

/// A direct method's answer: the status the caller sees and a JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodResponse {
    /// Status code (e.g. 200).
    pub status: i32,
    /// Payload.
    pub payload: Value,
}

type CommandHandler = Box<dyn FnMut(&Command) -> CommandOutcome + Send>;
type DesiredHandler = Box<dyn FnMut(&DesiredUpdate) + Send>;
type MethodHandler = Box<dyn FnMut(&str, &Value) -> MethodResponse + Send>;

/// The handlers the dispatch thread runs.
#[derive(Default)]
pub struct Handlers {
    command: Option<CommandHandler>,
    desired: Option<DesiredHandler>,
    method: Option<MethodHandler>,
}

/// Builds a [`Device`]: configuration plus handlers.
pub struct DeviceBuilder {
    config: DeviceConfig,
    handlers: Handlers,
}

impl DeviceBuilder {
    /// Starts from a configuration.
    pub fn new(config: DeviceConfig) -> DeviceBuilder {
        DeviceBuilder {
            config,
            handlers: Handlers::default(),
        }
    }

    /// Handles commands; without a handler commands are rejected with `"no handler"`.
    pub fn on_command(
        mut self,
        f: impl FnMut(&Command) -> CommandOutcome + Send + 'static,
    ) -> Self {
        self.handlers.command = Some(Box::new(f));
        self
    }

    /// Called with every desired-properties update (full document or patch).
    pub fn on_desired(mut self, f: impl FnMut(&DesiredUpdate) + Send + 'static) -> Self {
        self.handlers.desired = Some(Box::new(f));
        self
    }

    /// Serves direct methods (name, JSON body); without a handler calls answer 501.
    pub fn on_method(
        mut self,
        f: impl FnMut(&str, &Value) -> MethodResponse + Send + 'static,
    ) -> Self {
        self.handlers.method = Some(Box::new(f));
        self
    }

    /// Opens the buffer and starts connecting (returns at once; the connection comes up in the
    /// background and is re-established after every failure).
    pub fn connect(self) -> Result<Device, DeviceError> {
        let link = link::Link::start(self.config, self.handlers)?;
        Ok(Device {
            link: Arc::new(link),
        })
    }
}

/// Counters of a device connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// The buffer's counters.
    pub buffer: BufferStats,
    /// CONNACKs accepted.
    pub connects: u64,
    /// Connection errors (each followed by a reconnect attempt).
    pub connection_errors: u64,
    /// Telemetry messages acknowledged by the server.
    pub messages_acked: u64,
    /// Commands received (repeats dropped by id not counted).
    pub commands: u64,
    /// Method calls served.
    pub methods: u64,
    /// Desired-properties messages received.
    pub desired_updates: u64,
    /// Whether the connection is up.
    pub connected: bool,
}

/// A connected (or reconnecting) device.
pub struct Device {
    link: Arc<link::Link>,
}

impl Device {
    /// Shorthand for `DeviceBuilder::new(config).connect()` (no handlers).
    pub fn connect(config: DeviceConfig) -> Result<Device, DeviceError> {
        DeviceBuilder::new(config).connect()
    }

    /// Buffers `points` on disk as one message (points without a timestamp get the current
    /// time) and queues it for sending; returns once it is in the buffer, connected or not.
    pub fn publish(&self, points: &[Point]) -> Result<(), DeviceError> {
        if points.is_empty() {
            return Ok(());
        }
        for p in points {
            if p.stream.is_empty() || p.fields.is_empty() {
                return Err(DeviceError::InvalidPoint(format!(
                    "{:?} needs a stream name and at least one field",
                    p.stream
                )));
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let payload = point::encode(points, now);
        self.link.publish(points.len() as u32, payload.as_bytes())
    }

    /// Publishes a reported-properties merge patch to the twin.
    pub fn report(&self, patch: &Value) -> Result<(), DeviceError> {
        let topic = format!("devices/{}/twin/reported", self.link.device_id());
        self.link.control(topic, patch.to_string().into_bytes())
    }

    /// The desired properties received so far.
    pub fn desired(&self) -> Value {
        self.link.desired()
    }

    /// Waits until every buffered message is acknowledged, or `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), DeviceError> {
        let deadline = Instant::now() + timeout;
        loop {
            let pending = self.stats().buffer.pending_messages;
            if pending == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DeviceError::FlushTimeout(pending));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the connection is up, or `timeout`; returns whether it is.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.stats().connected {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Counters.
    pub fn stats(&self) -> DeviceStats {
        self.link.stats()
    }

    /// Disconnects and stops the threads; the buffer keeps whatever is unacknowledged for the
    /// next [`DeviceBuilder::connect`] with the same buffer directory.
    pub fn close(self) {
        self.link.close();
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.link.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoint("mqtt://127.0.0.1:1883").unwrap(),
            ("127.0.0.1".to_owned(), 1883)
        );
        assert_eq!(
            parse_endpoint("mqtts://[::1]:8883").unwrap(),
            ("::1".to_owned(), 8883)
        );
        assert!(parse_endpoint("http://x:1").is_err());
        assert!(parse_endpoint("mqtt://x").is_err());
    }
}
