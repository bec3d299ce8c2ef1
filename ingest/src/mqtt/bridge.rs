//! Broker bridge: for deployments that already run a broker (Mosquitto, EMQX, HiveMQ), Strata
//! subscribes to it with `rumqttc`, maps each message's topic to a device and a stream, stores
//! the rows through the same pipeline as the device endpoint (confined to the topic's device,
//! validated against its model, group commit), and acknowledges each
//! QoS 1 message (manual acks, in order) only after its rows are durable. With a shared
//! subscription (`$share/{group}/...`) several Strata nodes split one broker's load.
//!
//! A commit that fails on storage (a full disk, an I/O error) ends the broker session: nothing
//! after the failed message is stored or acknowledged, the bridge waits
//! [`BridgeConfig::storage_retry_delay`] and connects again, and the broker (persistent session)
//! delivers every unacknowledged message again, in order. Acks therefore never skip a message.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS};
use strata_storage::{DEFAULT_DATABASE, Engine, WriteBatch};
use tokio::sync::{mpsc, oneshot, watch};

use super::commit::{CommitJob, CommitOutcome, Committer};
use super::payload::{self, PayloadOptions};
use super::stats::{Counters, add};
use crate::json::IntegerMode;
use crate::line_protocol::{Precision, now_nanos};
use crate::pipeline::{Admission, Writer};
use crate::text::is_device_id;
use crate::validate::SchemaSource;

/// Maps topics to devices and streams. The pattern's levels are literal text, `+` (any level),
/// `{device}` (the device id, required) or `{stream}` (the stream); the subscription filter is
/// the pattern with `+` in place of the placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRoute {
    /// For example `factory/{device}/{stream}` or `sensors/+/{device}`.
    pub pattern: String,
    /// Stream of messages whose topic names none (no `{stream}` level) and whose payload names
    /// none either (default `telemetry`).
    pub default_stream: String,
}

impl BridgeRoute {
    /// A route with the default stream `telemetry`.
    pub fn new(pattern: impl Into<String>) -> Self {
        BridgeRoute {
            pattern: pattern.into(),
            default_stream: "telemetry".into(),
        }
    }

    /// The MQTT subscription filter of the pattern.
    pub fn filter(&self) -> String {
        self.pattern
            .split('/')
            .map(|l| match l {
                "{device}" | "{stream}" => "+",
                other => other,
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The device and stream of `topic`, if it matches.
    pub fn resolve<'t>(&'t self, topic: &'t str) -> Option<(&'t str, &'t str)> {
        let mut device = None;
        let mut stream = None;
        let mut levels = topic.split('/');
        for part in self.pattern.split('/') {
            let level = levels.next()?;
            match part {
                "{device}" => device = Some(level),
                "{stream}" => stream = Some(level),
                "+" => {}
                literal if literal == level => {}
                _ => return None,
            }
        }
        if levels.next().is_some() {
            return None;
        }
        let stream = stream.unwrap_or(&self.default_stream);
        Some((device?, stream)).filter(|(d, s)| is_device_id(d) && !s.is_empty())
    }
}

/// Why a bridge configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeConfigError {
    /// No routes.
    #[error("a bridge needs at least one route")]
    NoRoutes,
    /// A pattern without exactly one `{device}`, with a repeated `{stream}`, or with `#`.
    #[error(
        "invalid route pattern {0:?}: it needs exactly one {{device}} level, at most one \
         {{stream}} level, and no '#'"
    )]
    BadPattern(String),
}

/// Settings of a [`Bridge`].
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Broker host.
    pub host: String,
    /// Broker port (default 1883).
    pub port: u16,
    /// Client id at the broker (each Strata node needs its own).
    pub client_id: String,
    /// User name and password at the broker, if it requires them.
    pub credentials: Option<(String, String)>,
    /// Topic routes, tried in order; the first that matches wins.
    pub routes: Vec<BridgeRoute>,
    /// Shared-subscription group: subscribe to `$share/{group}/{filter}` so that the nodes of a
    /// group split the messages. `None` subscribes normally (every node gets every message).
    pub share_group: Option<String>,
    /// Keep the broker session across reconnects (default true), so that messages received
    /// but not acknowledged are delivered again.
    pub persistent_session: bool,
    /// Keep-alive (default 30 s).
    pub keep_alive: Duration,
    /// Wait before reconnecting after a failure (default 1 s).
    pub reconnect_delay: Duration,
    /// Wait before connecting again after a commit failed on storage (default 5 s): the broker
    /// then delivers the unacknowledged messages again.
    pub storage_retry_delay: Duration,
    /// Largest packet accepted from the broker (default 1 MiB).
    pub max_packet_bytes: usize,
    /// Database the rows go to (default `default`).
    pub database: String,
    /// Unit of numeric JSON timestamps (default milliseconds).
    pub json_epoch_unit: Precision,
    /// How JSON integer literals are stored (default as floats).
    pub json_integers: IntegerMode,
    /// Timestamp precision of line-protocol payloads (default nanoseconds).
    pub line_protocol_precision: Precision,
    /// Tag names that identify a line-protocol point's device (default `device`); a point naming
    /// another device than its topic's is refused.
    pub device_tags: Vec<String>,
    /// Threads writing merged batches to the engine (default 1).
    pub commit_threads: usize,
    /// Where each device's model schema is found; messages are validated against it like on
    /// every other write path. `None` (the default): no validation.
    pub schemas: Option<Arc<dyn SchemaSource>>,
}

impl BridgeConfig {
    /// A configuration for `host:port` with the defaults.
    pub fn new(host: impl Into<String>, port: u16, client_id: impl Into<String>) -> Self {
        BridgeConfig {
            host: host.into(),
            port,
            client_id: client_id.into(),
            credentials: None,
            routes: Vec::new(),
            share_group: None,
            persistent_session: true,
            keep_alive: Duration::from_secs(30),
            reconnect_delay: Duration::from_secs(1),
            storage_retry_delay: Duration::from_secs(5),
            max_packet_bytes: 1 << 20,
            database: DEFAULT_DATABASE.into(),
            json_epoch_unit: Precision::Milliseconds,
            json_integers: IntegerMode::Float,
            line_protocol_precision: Precision::Nanoseconds,
            device_tags: vec!["device".into()],
            commit_threads: 1,
            schemas: None,
        }
    }

    /// The subscription filters, with the shared-subscription prefix when configured.
    pub fn subscriptions(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|r| match &self.share_group {
                Some(g) => format!("$share/{g}/{}", r.filter()),
                None => r.filter(),
            })
            .collect()
    }

    fn validate(&self) -> Result<(), BridgeConfigError> {
        if self.routes.is_empty() {
            return Err(BridgeConfigError::NoRoutes);
        }
        for r in &self.routes {
            let levels: Vec<&str> = r.pattern.split('/').collect();
            let count = |p: &str| levels.iter().filter(|l| **l == p).count();
            if count("{device}") != 1 || count("{stream}") > 1 || r.pattern.contains('#') {
                return Err(BridgeConfigError::BadPattern(r.pattern.clone()));
            }
        }
        Ok(())
    }
}

/// A snapshot of a bridge's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Successful connections to the broker.
    pub connects: u64,
    /// Connection failures (each followed by a reconnect).
    pub connection_errors: u64,
    /// Messages received from the broker.
    pub messages_received: u64,
    /// Messages acknowledged to the broker (stored, or refused for good).
    pub messages_acked: u64,
    /// Messages whose topic matched no route or whose payload did not decode or could not be
    /// stored for its content (acknowledged and dropped: redelivery cannot fix them).
    pub messages_invalid: u64,
    /// Rows written to the engine.
    pub rows_written: u64,
    /// Engine writes.
    pub commits: u64,
    /// Commits that failed on storage, each ending the broker session (the messages from the
    /// failed one on come again after [`BridgeConfig::storage_retry_delay`]).
    pub storage_failures: u64,
}

#[derive(Debug, Default)]
struct BridgeCounters {
    connects: AtomicU64,
    connection_errors: AtomicU64,
    messages_received: AtomicU64,
    messages_acked: AtomicU64,
    messages_invalid: AtomicU64,
    storage_failures: AtomicU64,
}

/// A subscription to an external broker that stores what it receives.
#[derive(Debug)]
pub struct Bridge {
    config: BridgeConfig,
    payload: PayloadOptions,
    admission: Admission,
    committer: Committer,
    commit_counters: Arc<Counters>,
    counters: BridgeCounters,
    stop: watch::Sender<bool>,
}

/// A commit in flight and the publishes it will acknowledge.
type Inflight = (oneshot::Receiver<CommitOutcome>, Vec<Publish>);

/// What the broker task reports.
#[derive(Debug)]
enum BrokerEvent {
    /// CONNACK received (after every reconnect).
    Connected,
    /// A message.
    Message(Publish),
    /// The connection failed; the task reconnects after the delay.
    Failed(String),
    /// Our DISCONNECT went out (after the acks queued before it); the task has ended.
    Closed,
}

/// Polls the broker connection forever, forwarding what matters.
async fn poll_broker(mut events: EventLoop, tx: mpsc::Sender<BrokerEvent>, delay: Duration) {
    loop {
        let event = match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => BrokerEvent::Connected,
            Ok(Event::Incoming(Packet::Publish(p))) => BrokerEvent::Message(p),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                // Written and flushed after every request queued before it (the acks).
                let _ = tx.send(BrokerEvent::Closed).await;
                return;
            }
            Ok(_) => continue,
            Err(e) => BrokerEvent::Failed(e.to_string()),
        };
        let failed = matches!(event, BrokerEvent::Failed(_));
        if tx.send(event).await.is_err() {
            return;
        }
        if failed {
            tokio::time::sleep(delay).await;
        }
    }
}

/// Longest wait at a stop for the commit in flight to be answered (and acknowledged).
const STOP_COMMIT_WAIT: Duration = Duration::from_secs(5);

/// Longest wait for the DISCONNECT (and the acks queued before it) to go out.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Ends a broker connection: queues DISCONNECT behind the acks already queued and waits (at most
/// [`CLOSE_WAIT`]) until the poller wrote it, so that those acks reach the broker, then stops the
/// poller. Events still arriving meanwhile are dropped (unacknowledged: they come again).
async fn close(
    client: &AsyncClient,
    rx: &mut mpsc::Receiver<BrokerEvent>,
    poller: tokio::task::JoinHandle<()>,
) {
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(event) = rx.recv().await {
                if matches!(event, BrokerEvent::Closed | BrokerEvent::Failed(_)) {
                    break;
                }
            }
        })
        .await;
    }
    poller.abort();
}

/// Messages waiting for (or in) one commit, with the publishes to acknowledge afterwards.
#[derive(Debug, Default)]
struct Pending {
    batches: Vec<WriteBatch>,
    publishes: Vec<Publish>,
}

impl Bridge {
    /// A bridge writing to `engine`; starts its commit thread(s).
    pub fn new(config: BridgeConfig, engine: Arc<Engine>) -> Result<Self, BridgeError> {
        config.validate()?;
        let commit_counters = Arc::new(Counters::default());
        let committer = Committer::start(
            engine,
            commit_counters.clone(),
            config.commit_threads,
            1 << 18,
        )?;
        let payload = PayloadOptions {
            database: config.database.clone(),
            json_epoch_unit: config.json_epoch_unit,
            json_integers: config.json_integers,
            lp_precision: config.line_protocol_precision,
            device_tags: config.device_tags.clone(),
        };
        let admission = Admission::new(config.database.clone(), config.schemas.clone());
        let (stop, _) = watch::channel(false);
        Ok(Bridge {
            config,
            payload,
            admission,
            committer,
            commit_counters,
            counters: BridgeCounters::default(),
            stop,
        })
    }

    /// Runs until [`Bridge::stop`]: connects, subscribes, stores and acknowledges, and
    /// reconnects after failures (of the broker connection, or of a commit on storage). Must be
    /// called inside a tokio runtime.
    pub async fn run(&self) {
        let mut stop = self.stop.subscribe();
        while self.session(&mut stop).await == SessionEnd::StorageFailed {
            add(&self.counters.storage_failures, 1);
            tracing::warn!(
                retry_in = ?self.config.storage_retry_delay,
                broker = %self.config.host,
                "mqtt bridge: a commit failed on storage; reconnecting later so that the broker \
                 delivers the unacknowledged messages again"
            );
            tokio::select! {
                () = async { let _ = stop.wait_for(|s| *s).await; } => break,
                () = tokio::time::sleep(self.config.storage_retry_delay) => {}
            }
        }
    }

    /// One broker session (a client and its reconnects after connection failures), until a
    /// stop or a commit that fails on storage.
    async fn session(&self, stop: &mut watch::Receiver<bool>) -> SessionEnd {
        let (client, events) = AsyncClient::new(self.options(), 1024);
        let (tx, mut rx) = mpsc::channel(1024);
        // `EventLoop::poll` is not cancel-safe: it runs alone in its own task.
        let poller = tokio::spawn(poll_broker(events, tx, self.config.reconnect_delay));
        let mut pending = Pending::default();
        let mut inflight: Option<Inflight> = None;
        let end = loop {
            if inflight.is_none() && !pending.publishes.is_empty() {
                inflight = self.submit(&mut pending);
                if inflight.is_none() {
                    break SessionEnd::StorageFailed;
                }
            }
            tokio::select! {
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    // Answer the commit in flight first: its rows may be durable, and an ack
                    // now spares the broker a redelivery (a duplicate row for a message without
                    // its own timestamp).
                    if let Some((rx, publishes)) = inflight.take()
                        && let Ok(done) = tokio::time::timeout(STOP_COMMIT_WAIT, rx).await
                    {
                        self.committed(&client, done, publishes).await;
                    }
                    break SessionEnd::Stopped;
                }
                done = async {
                    match &mut inflight {
                        Some((rx, _)) => rx.await,
                        None => std::future::pending().await,
                    }
                } => {
                    let publishes = inflight.take().map(|(_, p)| p).unwrap_or_default();
                    if !self.committed(&client, done, publishes).await {
                        break SessionEnd::StorageFailed;
                    }
                }
                event = rx.recv() => match event {
                    Some(BrokerEvent::Connected) => {
                        add(&self.counters.connects, 1);
                        self.subscribe(&client).await;
                    }
                    Some(BrokerEvent::Message(p)) => self.received(p, &mut pending),
                    Some(BrokerEvent::Failed(e)) => {
                        add(&self.counters.connection_errors, 1);
                        tracing::warn!(error = %e, broker = %self.config.host, "mqtt bridge connection failed");
                        // Unacknowledged messages come again in the resumed session.
                        pending = Pending::default();
                        inflight = None;
                    }
                    Some(BrokerEvent::Closed) | None => break SessionEnd::Stopped,
                },
            }
        };
        // Messages received but not acknowledged are dropped here: the broker keeps them in the
        // session and delivers them again on the next connection.
        close(&client, &mut rx, poller).await;
        end
    }

    /// Asks [`Bridge::run`] to return (also when called before `run` started).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BridgeStats {
        let get = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        BridgeStats {
            connects: get(&self.counters.connects),
            connection_errors: get(&self.counters.connection_errors),
            messages_received: get(&self.counters.messages_received),
            messages_acked: get(&self.counters.messages_acked),
            messages_invalid: get(&self.counters.messages_invalid),
            storage_failures: get(&self.counters.storage_failures),
            rows_written: get(&self.commit_counters.rows_written),
            commits: get(&self.commit_counters.commits),
        }
    }

    fn options(&self) -> MqttOptions {
        let c = &self.config;
        let mut opts = MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
        opts.set_keep_alive(c.keep_alive)
            .set_clean_session(!c.persistent_session)
            .set_manual_acks(true)
            .set_max_packet_size(c.max_packet_bytes, c.max_packet_bytes);
        if let Some((user, pass)) = &c.credentials {
            opts.set_credentials(user.clone(), pass.clone());
        }
        opts
    }

    async fn subscribe(&self, client: &AsyncClient) {
        for filter in self.config.subscriptions() {
            if let Err(e) = client.subscribe(filter.clone(), QoS::AtLeastOnce).await {
                tracing::warn!(%filter, error = %e, "mqtt bridge subscribe failed");
            }
        }
    }

    /// Decodes a message into the pending batch; a message that can never be stored gets an
    /// empty batch so that it is still acknowledged in order.
    fn received(&self, p: Publish, pending: &mut Pending) {
        add(&self.counters.messages_received, 1);
        let batch = match self.decode(&p) {
            Ok(b) => b,
            Err(e) => {
                add(&self.counters.messages_invalid, 1);
                tracing::warn!(topic = %p.topic, error = %e, "mqtt bridge dropped a message");
                WriteBatch::default()
            }
        };
        pending.batches.push(batch);
        pending.publishes.push(p);
    }

    fn decode(&self, p: &Publish) -> Result<WriteBatch, String> {
        let (device, stream) = self
            .config
            .routes
            .iter()
            .find_map(|r| r.resolve(&p.topic))
            .ok_or_else(|| format!("topic {:?} matches no route", p.topic))?;
        let mut batch = payload::decode(&p.payload, stream, &self.payload, now_nanos())?;
        self.admission
            .admit(&mut batch, &Writer::for_device(device))
            .map_err(|e| e.to_string())?;
        Ok(batch)
    }

    /// Hands the pending messages to the commit threads; `None` when those are gone.
    fn submit(&self, pending: &mut Pending) -> Option<Inflight> {
        let Pending { batches, publishes } = std::mem::take(pending);
        let (reply, rx) = oneshot::channel();
        self.committer
            .submit(CommitJob {
                batches,
                keep_going: true,
                reply,
            })
            .then_some((rx, publishes))
    }

    /// Acknowledges the publishes of a finished commit, in order (messages skipped for their
    /// content too: they can never be stored). False after a storage failure: the messages
    /// before the failed one are acknowledged, nothing after it is, and the caller ends the
    /// session so that the broker delivers them again.
    async fn committed(
        &self,
        client: &AsyncClient,
        outcome: Result<CommitOutcome, oneshot::error::RecvError>,
        publishes: Vec<Publish>,
    ) -> bool {
        let acked = match &outcome {
            Ok(Ok(skipped)) => {
                add(&self.counters.messages_invalid, skipped.len() as u64);
                publishes.len()
            }
            Ok(Err(f)) => {
                tracing::warn!(reason = %f.reason, error = %f.message, "mqtt bridge could not store");
                f.index
            }
            Err(_) => 0,
        };
        for p in publishes.iter().take(acked) {
            if client.ack(p).await.is_err() {
                break;
            }
            add(&self.counters.messages_acked, 1);
        }
        matches!(outcome, Ok(Ok(_)))
    }
}

/// Why [`Bridge::session`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionEnd {
    /// [`Bridge::stop`] was called.
    Stopped,
    /// A commit failed on storage (or the commit threads are gone).
    StorageFailed,
}

/// Why a bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] BridgeConfigError),
    /// The commit threads could not be started.
    #[error("cannot start the commit threads: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = BridgeRoute::new("factory/{device}/{stream}");
        assert_eq!(r.filter(), "factory/+/+");
        assert_eq!(r.resolve("factory/pump-7/power"), Some(("pump-7", "power")));
        assert_eq!(r.resolve("factory/pump-7"), None);
        assert_eq!(r.resolve("factory/pump-7/power/x"), None);
        assert_eq!(r.resolve("office/pump-7/power"), None);
        assert_eq!(r.resolve("factory/bad id/power"), None);
        let r = BridgeRoute::new("sensors/+/{device}");
        assert_eq!(r.filter(), "sensors/+/+");
        assert_eq!(r.resolve("sensors/eu/t-1"), Some(("t-1", "telemetry")));
        let mut c = BridgeConfig::new("localhost", 1883, "strata-1");
        assert_eq!(c.validate(), Err(BridgeConfigError::NoRoutes));
        c.routes = vec![BridgeRoute::new("a/{stream}")];
        assert!(matches!(
            c.validate(),
            Err(BridgeConfigError::BadPattern(_))
        ));
        c.routes = vec![BridgeRoute::new("a/{device}/#")];
        assert!(matches!(
            c.validate(),
            Err(BridgeConfigError::BadPattern(_))
        ));
        c.routes = vec![BridgeRoute::new("a/{device}")];
        c.share_group = Some("strata".into());
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.subscriptions(), vec!["$share/strata/a/+"]);
    }
}
