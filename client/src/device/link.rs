//! The connection machinery behind [`super::Device`]: three threads around one `rumqttc`
//! connection.
//!
//! Every QoS 1 PUBLISH the SDK sends carries a *tag* (a buffered telemetry sequence number, or a
//! control message kept for resending). Tags are queued in the order the requests enter
//! `rumqttc`'s channel and bound to a packet id when `rumqttc` reports `Outgoing::Publish(pkid)`;
//! the server's PUBACK for that id then acknowledges the buffered message. On any connection error
//! the SDK empties `rumqttc`'s own retransmission state and re-sends everything itself after the
//! next CONNACK: every still-pending buffered message in sequence order, and every control message
//! that had not been acknowledged. A message may therefore reach the server twice (at-least-once);
//! telemetry carries explicit timestamps, so a repeat overwrites itself.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rumqttc::{
    Client, ConnectReturnCode, Connection, ConnectionError, Event, MqttOptions, Outgoing, Packet,
    QoS,
};
use serde_json::{Value, json};

use super::buffer::{Buffer, BufferError};
use super::twin::DesiredState;
use super::{
    Auth, Command, CommandOutcome, DeviceConfig, DeviceError, DeviceStats, Handlers, MethodResponse,
};

/// Largest telemetry message (the server's MQTT packet limit is 256 KiB).
const MAX_MESSAGE_BYTES: usize = 250 * 1024;
/// Connections in a row that closed without acknowledging any telemetry while the same oldest
/// message was in flight, after which that message is given up (the server refuses it).
const POISON_STRIKES: u32 = 3;
/// Command ids remembered to drop repeated deliveries.
const RECENT_COMMANDS: usize = 256;

/// What a PUBLISH in flight stands for.
#[derive(Debug, Clone)]
enum Tag {
    Telemetry(u64),
    Control(String, Vec<u8>),
}

#[derive(Debug, Default)]
struct Tags {
    /// Requests handed to `rumqttc`, not yet given a packet id, in channel order.
    queued: VecDeque<Tag>,
    /// Packet id → tag, sent and not yet PUBACKed.
    inflight: HashMap<u16, Tag>,
    /// A request that got a packet id still in use (`Outgoing::AwaitAck`).
    collided: Option<(u16, Tag)>,
}

#[derive(Debug, Default)]
struct SendState {
    /// Next buffered sequence number to hand to `rumqttc`.
    next_seq: u64,
    /// Control messages (acks, reported patches, method answers) waiting to be sent.
    control: VecDeque<(String, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct Counters {
    connects: AtomicU64,
    connection_errors: AtomicU64,
    messages_acked: AtomicU64,
    commands: AtomicU64,
    methods: AtomicU64,
    desired_updates: AtomicU64,
}

struct Shared {
    device_id: String,
    buffer: Mutex<Buffer>,
    state: Mutex<SendState>,
    wake: Condvar,
    tags: Mutex<Tags>,
    desired: Mutex<DesiredState>,
    counters: Counters,
    connected: AtomicBool,
    shutdown: AtomicBool,
    /// Telemetry PUBACKs on the current connection.
    acks_this_connection: AtomicU64,
    /// (oldest pending sequence number, connections in a row that died on it).
    strikes: Mutex<(u64, u32)>,
}

/// Locks, recovering from a poisoned lock (a panicking handler must not stop the device).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Inbound {
    Connected,
    Publish(String, Vec<u8>),
}

pub(super) struct Link {
    shared: Arc<Shared>,
    client: Client,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn mqtt_options(config: &DeviceConfig) -> Result<MqttOptions, DeviceError> {
    let mut o = MqttOptions::new(&config.device_id, &config.host, config.port);
    o.set_clean_session(false)
        .set_keep_alive(config.keep_alive.max(Duration::from_secs(5)))
        .set_max_packet_size(1 << 20, 256 * 1024);
    let cert = match &config.auth {
        Auth::Key(key) => {
            o.set_credentials(&config.device_id, key);
            None
        }
        Auth::Certificate { cert_pem, key_pem } => Some((cert_pem.as_slice(), key_pem.as_slice())),
    };
    match (&config.ca_pem, cert) {
        (Some(ca), cert) => {
            let tls = super::tls::client_config(ca, cert)?;
            o.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
                tls,
            )));
        }
        (None, Some(_)) => {
            return Err(DeviceError::Tls(
                "certificate authentication needs MQTTS (set ca_pem)".into(),
            ));
        }
        (None, None) => {}
    }
    Ok(o)
}

impl Link {
    pub(super) fn start(config: DeviceConfig, handlers: Handlers) -> Result<Link, DeviceError> {
        let buffer = Buffer::open(
            &config.buffer_dir,
            config.buffer_max_bytes,
            config.buffer_sync,
        )?;
        let options = mqtt_options(&config)?;
        let (client, connection) = Client::new(options, 64);
        let shared = Arc::new(Shared {
            device_id: config.device_id.clone(),
            state: Mutex::new(SendState {
                next_seq: buffer.first_pending(),
                control: VecDeque::new(),
            }),
            buffer: Mutex::new(buffer),
            wake: Condvar::new(),
            tags: Mutex::default(),
            desired: Mutex::new(DesiredState::new()),
            counters: Counters::default(),
            connected: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            acks_this_connection: AtomicU64::new(0),
            strikes: Mutex::new((0, 0)),
        });
        let (tx, rx) = mpsc::channel();
        let delay = config.reconnect_delay;
        let threads = vec![
            spawn("strata-device-events", {
                let (shared, client) = (shared.clone(), client.clone());
                move || event_loop(connection, client, shared, tx, delay)
            }),
            spawn("strata-device-sender", {
                let (shared, client) = (shared.clone(), client.clone());
                move || sender(client, shared)
            }),
            spawn("strata-device-dispatch", {
                let shared = shared.clone();
                move || dispatch(rx, shared, handlers)
            }),
        ];
        Ok(Link {
            shared,
            client,
            threads: Mutex::new(threads),
        })
    }

    pub(super) fn device_id(&self) -> &str {
        &self.shared.device_id
    }

    pub(super) fn publish(&self, points: u32, payload: &[u8]) -> Result<(), DeviceError> {
        if self.shared.shutdown.load(Ordering::SeqCst) {
            return Err(DeviceError::Closed);
        }
        if payload.len() > MAX_MESSAGE_BYTES {
            return Err(DeviceError::Buffer(BufferError::TooLarge {
                size: payload.len(),
                limit: MAX_MESSAGE_BYTES,
            }));
        }
        lock(&self.shared.buffer).append(points, payload)?;
        let _state = lock(&self.shared.state);
        self.shared.wake.notify_all();
        Ok(())
    }

    pub(super) fn control(&self, topic: String, payload: Vec<u8>) -> Result<(), DeviceError> {
        if self.shared.shutdown.load(Ordering::SeqCst) {
            return Err(DeviceError::Closed);
        }
        queue_control(&self.shared, topic, payload);
        Ok(())
    }

    pub(super) fn desired(&self) -> Value {
        lock(&self.shared.desired).desired().clone()
    }

    pub(super) fn stats(&self) -> DeviceStats {
        let c = &self.shared.counters;
        DeviceStats {
            buffer: lock(&self.shared.buffer).stats(),
            connects: c.connects.load(Ordering::Relaxed),
            connection_errors: c.connection_errors.load(Ordering::Relaxed),
            messages_acked: c.messages_acked.load(Ordering::Relaxed),
            commands: c.commands.load(Ordering::Relaxed),
            methods: c.methods.load(Ordering::Relaxed),
            desired_updates: c.desired_updates.load(Ordering::Relaxed),
            connected: self.shared.connected.load(Ordering::SeqCst),
        }
    }

    pub(super) fn close(&self) {
        if self.shared.shutdown.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let _state = lock(&self.shared.state);
            self.shared.wake.notify_all();
        }
        let _ = self.client.try_disconnect();
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .unwrap_or_else(|e| panic!("cannot start the {name} thread: {e}"))
}

fn queue_control(shared: &Shared, topic: String, payload: Vec<u8>) {
    let mut state = lock(&shared.state);
    state.control.push_back((topic, payload));
    shared.wake.notify_all();
}

/// Drives the connection: CONNACKs, incoming PUBLISHes, PUBACKs, packet ids, errors.
fn event_loop(
    mut conn: Connection,
    client: Client,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Inbound>,
    delay: Duration,
) {
    let id = shared.device_id.clone();
    let subscriptions = [
        format!("devices/{id}/commands/#"),
        format!("devices/{id}/twin/desired"),
        format!("devices/{id}/methods/#"),
    ];
    while !shared.shutdown.load(Ordering::SeqCst) {
        let Ok(event) = conn.recv() else { break };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                shared.counters.connects.fetch_add(1, Ordering::Relaxed);
                shared.acks_this_connection.store(0, Ordering::SeqCst);
                if !ack.session_present {
                    for s in &subscriptions {
                        let _ = client.try_subscribe(s.as_str(), QoS::AtLeastOnce);
                    }
                }
                let _ = tx.send(Inbound::Connected);
                shared.connected.store(true, Ordering::SeqCst);
                let _state = lock(&shared.state);
                shared.wake.notify_all();
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = tx.send(Inbound::Publish(p.topic, p.payload.to_vec()));
            }
            Ok(Event::Incoming(Packet::PubAck(a))) => on_puback(&shared, a.pkid),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => on_sent(&shared, pkid),
            Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => {
                let mut tags = lock(&shared.tags);
                if let Some(tag) = tags.queued.pop_front() {
                    tags.collided = Some((pkid, tag));
                }
            }
            Ok(_) => {}
            Err(e) => {
                if matches!(
                    e,
                    ConnectionError::ConnectionRefused(ConnectReturnCode::ServiceUnavailable)
                ) {
                    // The server says the trouble is its own (storage failing): the connections
                    // that died on the oldest message are no evidence against that message.
                    *lock(&shared.strikes) = (0, 0);
                }
                on_error(&mut conn, &shared);
                if !shared.shutdown.load(Ordering::SeqCst) {
                    std::thread::sleep(delay);
                }
            }
        }
    }
    shared.connected.store(false, Ordering::SeqCst);
}

fn on_sent(shared: &Shared, pkid: u16) {
    let mut tags = lock(&shared.tags);
    if pkid == 0 || tags.inflight.contains_key(&pkid) {
        return; // a retransmission by rumqttc itself
    }
    if let Some(tag) = tags.queued.pop_front() {
        tags.inflight.insert(pkid, tag);
    }
}

fn on_puback(shared: &Shared, pkid: u16) {
    let tag = {
        let mut tags = lock(&shared.tags);
        let tag = tags.inflight.remove(&pkid);
        if tags.collided.as_ref().is_some_and(|(p, _)| *p == pkid)
            && let Some((p, t)) = tags.collided.take()
        {
            tags.inflight.insert(p, t);
        }
        tag
    };
    if let Some(Tag::Telemetry(seq)) = tag {
        shared
            .counters
            .messages_acked
            .fetch_add(1, Ordering::Relaxed);
        shared.acks_this_connection.fetch_add(1, Ordering::SeqCst);
        // A failing acknowledgement write only means the message may be sent again later.
        let _ = lock(&shared.buffer).ack(seq);
    }
}

/// After a connection error: forget `rumqttc`'s retransmission state and queue everything that
/// was not acknowledged for sending after the next CONNACK.
fn on_error(conn: &mut Connection, shared: &Shared) {
    let was_connected = shared.connected.swap(false, Ordering::SeqCst);
    shared
        .counters
        .connection_errors
        .fetch_add(1, Ordering::Relaxed);
    let mut tags = lock(&shared.tags);
    conn.eventloop.clean();
    conn.eventloop.pending.clear();
    let mut lost: Vec<(u16, Tag)> = tags.inflight.drain().collect();
    lost.sort_by_key(|(p, _)| *p);
    let mut lost: Vec<Tag> = lost.into_iter().map(|(_, t)| t).collect();
    lost.extend(tags.collided.take().map(|(_, t)| t));
    lost.extend(tags.queued.drain(..));
    let telemetry_lost = lost.iter().any(|t| matches!(t, Tag::Telemetry(_)));
    if was_connected {
        let acked = shared.acks_this_connection.load(Ordering::SeqCst) > 0;
        strike(shared, telemetry_lost && !acked);
    }
    let mut state = lock(&shared.state);
    for tag in lost.into_iter().rev() {
        if let Tag::Control(topic, payload) = tag {
            state.control.push_front((topic, payload));
        }
    }
    state.next_seq = lock(&shared.buffer).first_pending();
}

/// Counts a connection that died with telemetry in flight and none acknowledged (`dead`); the
/// oldest pending message is given up after [`POISON_STRIKES`] such connections in a row — a
/// message the server refuses (say a field type conflicting with the stream's schema) closes the
/// connection every time and would otherwise block the buffer forever.
fn strike(shared: &Shared, dead: bool) {
    let mut strikes = lock(&shared.strikes);
    if !dead {
        *strikes = (0, 0);
        return;
    }
    let mut buffer = lock(&shared.buffer);
    let head = buffer.first_pending();
    if strikes.0 == head {
        strikes.1 += 1;
    } else {
        *strikes = (head, 1);
    }
    if strikes.1 >= POISON_STRIKES {
        // A failing write only means the message comes back after a restart.
        let _ = buffer.discard(head);
        *strikes = (0, 0);
    }
}

/// Hands control messages and buffered telemetry to `rumqttc`, in order, while connected.
fn sender(client: Client, shared: Arc<Shared>) {
    let topic = format!("devices/{}/telemetry", shared.device_id);
    while let Some((topic, payload, tag)) = next_job(&shared, &topic) {
        submit(&client, &shared, topic, payload, tag);
    }
}

fn next_job(shared: &Shared, telemetry: &str) -> Option<(String, Vec<u8>, Tag)> {
    let mut state = lock(&shared.state);
    loop {
        if shared.shutdown.load(Ordering::SeqCst) {
            return None;
        }
        if shared.connected.load(Ordering::SeqCst) {
            if let Some((t, p)) = state.control.pop_front() {
                return Some((t.clone(), p.clone(), Tag::Control(t, p)));
            }
            if let Some(rec) = lock(&shared.buffer).next_pending(state.next_seq) {
                state.next_seq = rec.seq + 1;
                return Some((telemetry.to_owned(), rec.payload, Tag::Telemetry(rec.seq)));
            }
        }
        state = shared
            .wake
            .wait_timeout(state, Duration::from_millis(100))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

fn submit(client: &Client, shared: &Shared, topic: String, payload: Vec<u8>, tag: Tag) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        let mut tags = lock(&shared.tags);
        if client
            .try_publish(topic.as_str(), QoS::AtLeastOnce, false, payload.clone())
            .is_ok()
        {
            tags.queued.push_back(tag);
            return;
        }
        drop(tags);
        // The request channel is full (the in-flight window is): wait for PUBACKs.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the handlers for incoming commands, desired-properties messages and method calls.
fn dispatch(rx: mpsc::Receiver<Inbound>, shared: Arc<Shared>, mut handlers: Handlers) {
    let prefix = format!("devices/{}/", shared.device_id);
    let mut recent: VecDeque<String> = VecDeque::new();
    for msg in rx {
        match msg {
            Inbound::Connected => lock(&shared.desired).reconnected(),
            Inbound::Publish(topic, payload) => {
                let Some(rest) = topic.strip_prefix(&prefix) else {
                    continue;
                };
                let parts: Vec<&str> = rest.split('/').collect();
                let body: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                match parts.as_slice() {
                    ["commands", cid] => {
                        on_command(&shared, &mut handlers, &mut recent, &prefix, cid, body)
                    }
                    ["twin", "desired"] => on_desired(&shared, &mut handlers, body),
                    ["methods", name, rid] => {
                        on_method(&shared, &mut handlers, &prefix, name, rid, &body)
                    }
                    _ => {}
                }
            }
        }
    }
}

fn on_command(
    shared: &Shared,
    handlers: &mut Handlers,
    recent: &mut VecDeque<String>,
    prefix: &str,
    cid: &str,
    body: Value,
) {
    if recent.iter().any(|c| c == cid) {
        return; // a repeated delivery (at-least-once)
    }
    if recent.len() == RECENT_COMMANDS {
        recent.pop_front();
    }
    recent.push_back(cid.to_owned());
    shared.counters.commands.fetch_add(1, Ordering::Relaxed);
    let cmd = Command {
        id: cid.to_owned(),
        name: body["name"].as_str().unwrap_or_default().to_owned(),
        payload: body["payload"].clone(),
        ack: body["ack"].as_bool().unwrap_or(true),
    };
    let outcome = match handlers.command.as_mut() {
        Some(f) => f(&cmd),
        None => CommandOutcome::Rejected(json!("no handler")),
    };
    if cmd.ack {
        let body = match outcome {
            CommandOutcome::Completed(r) => json!({"status": "completed", "result": r}),
            CommandOutcome::Rejected(r) => json!({"status": "rejected", "result": r}),
        };
        let topic = format!("{prefix}commands/{cid}/ack");
        queue_control(shared, topic, body.to_string().into_bytes());
    }
}

fn on_desired(shared: &Shared, handlers: &mut Handlers, body: Value) {
    if !body.is_object() {
        return;
    }
    shared
        .counters
        .desired_updates
        .fetch_add(1, Ordering::Relaxed);
    let update = lock(&shared.desired).apply(body);
    if let Some(f) = handlers.desired.as_mut() {
        f(&update);
    }
}

fn on_method(
    shared: &Shared,
    handlers: &mut Handlers,
    prefix: &str,
    name: &str,
    rid: &str,
    body: &Value,
) {
    shared.counters.methods.fetch_add(1, Ordering::Relaxed);
    let res = match handlers.method.as_mut() {
        Some(f) => f(name, body),
        None => MethodResponse {
            status: 501,
            payload: json!({"error": format!("method {name} is not implemented")}),
        },
    };
    let topic = format!("{prefix}methods/res/{rid}");
    let body = json!({"status": res.status, "payload": res.payload});
    queue_control(shared, topic, body.to_string().into_bytes());
}
