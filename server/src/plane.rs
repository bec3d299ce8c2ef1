//! The device plane inside the server: [`DevicePlane`] (shared by the HTTP handlers) wakes the
//! devices a new command, desired twin patch or method call is for (their MQTT session, or an
//! HTTP long-poll), keeps the twin feeds ([`TwinFeed`]) and the method calls in flight
//! ([`Methods`]); [`RegistryChannel`] is the MQTT endpoint's [`DeviceChannel`] over the
//! registry's command inbox, twins and stored persistent sessions. A background thread writes
//! `expired` into commands past their time-to-live and drops finished ones after a day
//! (`Registry::sweep_commands`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use strata_ingest::mqtt::{DeviceChannel, InboundError, MqttServer, Outgoing, filter_matches};
use strata_registry::{
    Command, CommandAck, CommandStatus, DEFAULT_COMMAND_MAX_ATTEMPTS, DEFAULT_COMMAND_QUEUE_DEPTH,
    Registry, RegistryError, Twin, TwinLimits, TwinSection,
};
use tokio::sync::Notify;

use crate::methods::{MethodReply, Methods, response_rid};
use crate::twin_feed::{Owed, TwinFeed, full_message};

/// The error when a group-commit thread has stopped.
fn stopped() -> RegistryError {
    RegistryError::Storage("the group-commit thread stopped".into())
}

/// How often expired commands are written as such.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Wake-ups of the devices' MQTT sessions and HTTP long-polls.
pub struct DevicePlane {
    registry: Arc<Registry>,
    mqtt: OnceLock<MqttServer>,
    queue_depth: AtomicUsize,
    max_attempts: AtomicU32,
    /// Per device, the command its current MQTT connection counted a send of (the oldest due
    /// one, see `RegistryChannel::sendable`); forgotten at its PUBACK and when a new
    /// connection of the device opens.
    counted: Mutex<HashMap<String, String>>,
    mqtt_port: OnceLock<u16>,
    mqtts_port: OnceLock<u16>,
    provisioner: OnceLock<Option<crate::group_commit::Provisioner>>,
    marker: OnceLock<Option<crate::group_commit::Marker>>,
    sessions: OnceLock<Option<crate::group_commit::SessionSaver>>,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    twin_limits: Mutex<TwinLimits>,
    /// What connected devices are owed of their twins.
    pub twins: TwinFeed,
    /// Direct method calls waiting for their answer.
    pub methods: Methods,
}

impl std::fmt::Debug for DevicePlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevicePlane")
            .field("queue_depth", &self.queue_depth())
            .finish_non_exhaustive()
    }
}

impl DevicePlane {
    /// A plane over `registry` with the default queue depth and no MQTT endpoint yet.
    pub fn new(registry: Arc<Registry>) -> Self {
        DevicePlane {
            registry,
            mqtt: OnceLock::new(),
            queue_depth: AtomicUsize::new(DEFAULT_COMMAND_QUEUE_DEPTH),
            max_attempts: AtomicU32::new(DEFAULT_COMMAND_MAX_ATTEMPTS),
            counted: Mutex::new(HashMap::new()),
            mqtt_port: OnceLock::new(),
            mqtts_port: OnceLock::new(),
            provisioner: OnceLock::new(),
            marker: OnceLock::new(),
            sessions: OnceLock::new(),
            waiters: Mutex::new(HashMap::new()),
            twin_limits: Mutex::new(TwinLimits::default()),
            twins: TwinFeed::default(),
            methods: Methods::default(),
        }
    }

    /// Sets the twin section size and patch depth limits (`--twin-max-bytes`,
    /// `--twin-max-depth`).
    pub fn set_twin_limits(&self, limits: TwinLimits) {
        *lock(&self.twin_limits) = limits;
    }

    /// The twin limits.
    pub fn twin_limits(&self) -> TwinLimits {
        *lock(&self.twin_limits)
    }

    /// Whether `device` has an open MQTT session.
    pub fn connected(&self, device: &str) -> bool {
        self.mqtt.get().is_some_and(|m| m.is_connected(device))
    }

    /// A desired patch was committed: its connected device is sent the patch.
    pub fn desired_patched(&self, twin: &Twin, patch: &Value) {
        self.twins.record(&twin.device, twin.desired.version, patch);
        self.wake(&twin.device);
    }

    /// Sets the most open commands per device (`--command-queue-depth`).
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.store(depth.max(1), Ordering::Relaxed);
    }

    /// The most open commands per device.
    pub fn queue_depth(&self) -> usize {
        self.queue_depth.load(Ordering::Relaxed)
    }

    /// Sets the most times a command is sent before it is given up as `undeliverable`
    /// (`--command-max-attempts`).
    pub fn set_max_attempts(&self, attempts: u32) {
        self.max_attempts.store(attempts.max(1), Ordering::Relaxed);
    }

    /// The most times a command is sent before it is given up.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.load(Ordering::Relaxed)
    }

    /// Connects the MQTT endpoint (once).
    pub fn attach_mqtt(&self, mqtt: MqttServer) {
        let _ = self.mqtt.set(mqtt);
    }

    /// Records the plain MQTT listener's port (announced to provisioned devices).
    pub fn set_mqtt_port(&self, port: u16) {
        let _ = self.mqtt_port.set(port);
    }

    /// The plain MQTT listener's port, when one listens.
    pub fn mqtt_port(&self) -> Option<u16> {
        self.mqtt_port.get().copied()
    }

    /// Provisions a device through the group-commit thread ([`crate::group_commit`], started
    /// on first use; should it fail to start, one transaction per request instead).
    pub async fn provision(
        &self,
        req: strata_registry::ProvisionRequest,
    ) -> Result<strata_registry::Provisioned, RegistryError> {
        let provisioner = self.provisioner.get_or_init(|| {
            crate::group_commit::provisioner(self.registry.clone())
                .inspect_err(
                    |e| tracing::error!(error = %e, "cannot start the provisioning thread"),
                )
                .ok()
        });
        if let Some(p) = provisioner {
            return p.call(req).await.unwrap_or_else(|| Err(stopped()));
        }
        let registry = self.registry.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = registry.provision_many(&[req]).into_iter();
            out.next().unwrap_or_else(|| Err(stopped()))
        })
        .await
        .map_err(|e| RegistryError::Storage(e.to_string()))?
    }

    /// Marks a command delivered (MQTT PUBACK) through the group-commit thread, from a
    /// blocking thread; one transaction per call if the thread cannot start.
    pub fn mark_delivered(&self, device: &str, id: &str) -> Result<Command, RegistryError> {
        let marker = self.marker.get_or_init(|| {
            crate::group_commit::marker(self.registry.clone())
                .inspect_err(
                    |e| tracing::error!(error = %e, "cannot start the delivery-marking thread"),
                )
                .ok()
        });
        match marker {
            Some(m) => m
                .call_blocking((device.to_owned(), id.to_owned()))
                .unwrap_or_else(|| Err(stopped())),
            None => self.registry.mark_command_delivered(device, id),
        }
    }

    /// Stores (or with `None` forgets) a persistent session's subscriptions through the
    /// group-commit thread, from a blocking thread; one transaction per call if it cannot start.
    pub fn save_session(
        &self,
        device: &str,
        subscriptions: Option<&[String]>,
    ) -> Result<(), RegistryError> {
        let saver = self.sessions.get_or_init(|| {
            crate::group_commit::session_saver(self.registry.clone())
                .inspect_err(
                    |e| tracing::error!(error = %e, "cannot start the session-saving thread"),
                )
                .ok()
        });
        match saver {
            Some(s) => s
                .call_blocking((device.to_owned(), subscriptions.map(<[String]>::to_vec)))
                .unwrap_or_else(|| Err(stopped())),
            None => self.registry.set_mqtt_session(device, subscriptions),
        }
    }

    /// Records the MQTTS listener's port (announced to provisioned devices).
    pub fn set_mqtts_port(&self, port: u16) {
        let _ = self.mqtts_port.set(port);
    }

    /// The MQTTS listener's port, when one listens.
    pub fn mqtts_port(&self) -> Option<u16> {
        self.mqtts_port.get().copied()
    }

    /// Tells `device`'s MQTT session and HTTP long-polls that something waits for it.
    pub fn wake(&self, device: &str) {
        if let Some(mqtt) = self.mqtt.get() {
            mqtt.notify(device);
        }
        let waiter = lock(&self.waiters).get(device).cloned();
        if let Some(n) = waiter {
            n.notify_waiters();
        }
    }

    /// The notifier long-polls of `device` wait on (dropped with [`DevicePlane::release`]).
    pub fn waiter(&self, device: &str) -> Arc<Notify> {
        lock(&self.waiters)
            .entry(device.to_owned())
            .or_default()
            .clone()
    }

    /// Forgets `device`'s notifier once no long-poll holds it.
    pub fn release(&self, device: &str, waiter: Arc<Notify>) {
        let mut waiters = lock(&self.waiters);
        drop(waiter);
        if waiters
            .get(device)
            .is_some_and(|n| Arc::strong_count(n) == 1)
        {
            waiters.remove(device);
        }
    }

    /// Starts the thread that writes `expired` into commands past their time-to-live.
    pub fn start_sweeper(&self) -> std::io::Result<()> {
        let registry = Arc::downgrade(&self.registry);
        std::thread::Builder::new()
            .name("strata-command-sweeper".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(SWEEP_EVERY);
                    let Some(registry) = registry.upgrade() else {
                        return;
                    };
                    match registry.sweep_commands() {
                        Ok((0, 0)) => {}
                        Ok((expired, deleted)) => {
                            tracing::debug!(expired, deleted, "command inbox swept");
                        }
                        Err(e) => tracing::warn!(error = %e, "command inbox sweep failed"),
                    }
                }
            })
            .map(|_| ())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The MQTT topic a command is delivered on.
pub fn command_topic(device: &str, id: &str) -> String {
    format!("devices/{device}/commands/{id}")
}

/// The JSON body a device receives for a command (MQTT message and HTTP long-poll alike).
pub fn command_message(c: &Command) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "payload": c.payload,
        "ack": c.ack,
        "expires": crate::time::format_rfc3339(c.expires_ns),
    })
}

/// A device's acknowledgement body: `{"status": "completed" | "rejected", "result": ...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// `completed` or `rejected`.
    pub status: String,
    /// Any JSON result.
    #[serde(default)]
    pub result: Option<Value>,
}

impl AckBody {
    /// The registry's acknowledgement.
    pub fn into_ack(self) -> Result<CommandAck, RegistryError> {
        let status = match self.status.as_str() {
            "completed" => CommandStatus::Completed,
            "rejected" => CommandStatus::Rejected,
            other => {
                return Err(RegistryError::invalid(format!(
                    "acknowledgement status '{other}' is not 'completed' or 'rejected'"
                )));
            }
        };
        Ok(CommandAck {
            status,
            result: self.result,
        })
    }
}

/// The command id of an acknowledgement topic `devices/{device}/commands/{id}/ack`.
fn ack_topic_id<'t>(device: &str, topic: &'t str) -> Option<&'t str> {
    topic
        .strip_prefix("devices/")?
        .strip_prefix(device)?
        .strip_prefix("/commands/")?
        .strip_suffix("/ack")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// The topic a device publishes reported twin patches on.
fn reported_topic(device: &str) -> String {
    format!("devices/{device}/twin/reported")
}

/// The MQTT endpoint's device channel over the registry and the device plane.
pub struct RegistryChannel {
    registry: Arc<Registry>,
    plane: Arc<DevicePlane>,
}

impl RegistryChannel {
    /// A channel over `plane` and its registry.
    pub fn new(plane: Arc<DevicePlane>) -> Self {
        RegistryChannel {
            registry: plane.registry.clone(),
            plane,
        }
    }

    /// The due commands of `device` that its connection, holding `subscriptions`, sends, oldest
    /// first; the oldest is counted as a send attempt once per connection (see
    /// [`RegistryChannel::sendable`]).
    fn commands(&self, device: &str, subscriptions: &[String]) -> Vec<Outgoing> {
        match self.sendable(device, subscriptions) {
            Ok(commands) => commands
                .iter()
                .map(|c| Outgoing {
                    key: c.id.clone(),
                    topic: command_topic(device, &c.id),
                    payload: command_message(c).to_string().into_bytes(),
                    expires_ns: Some(c.expires_ns),
                })
                .collect(),
            Err(e) => {
                tracing::warn!(device, error = %e, "cannot read the command inbox");
                Vec::new()
            }
        }
    }

    /// The due commands a subscription of the connection matches, oldest first. A device
    /// takes its commands in order, so one that crashes on a command leaves that one, the
    /// oldest, un-PUBACKed: each connection counts one send of its oldest due command (the
    /// others go out behind it uncounted, so a poison command does not use up the attempts of
    /// the commands queued after it). One already sent `max_attempts` times is given up and
    /// the next oldest takes its place.
    fn sendable(
        &self,
        device: &str,
        subscriptions: &[String],
    ) -> Result<Vec<Command>, RegistryError> {
        let subscribed = |c: &Command| {
            let topic = command_topic(device, &c.id);
            subscriptions.iter().any(|f| filter_matches(f, &topic))
        };
        let mut due: Vec<Command> = self
            .registry
            .due_commands(device)?
            .into_iter()
            .filter(subscribed)
            .collect();
        while let Some(head) = due.first() {
            if lock(&self.plane.counted).get(device) == Some(&head.id) {
                break;
            }
            let max = self.plane.max_attempts();
            match self
                .registry
                .send_commands(device, std::slice::from_ref(&head.id), max)?
                .pop()
            {
                Some(counted) => {
                    lock(&self.plane.counted).insert(device.to_owned(), counted.id.clone());
                    due[0] = counted;
                    break;
                }
                // Given up (or no longer due): the next one is the oldest.
                None => {
                    due.remove(0);
                }
            }
        }
        Ok(due)
    }

    /// What `device` is owed of its twin's desired section.
    fn twin(&self, device: &str, subscriptions: &[String]) -> Vec<Outgoing> {
        match self.plane.twins.owed(device, subscriptions) {
            Owed::Nothing => Vec::new(),
            Owed::Patches(patches) => patches,
            Owed::Full => match self.registry.twin(device) {
                Ok(twin) => {
                    let version = twin.desired.version;
                    self.plane.twins.sent_full(device, version);
                    vec![full_message(device, version, &twin.desired.document())]
                }
                Err(e) => {
                    tracing::warn!(device, error = %e, "cannot read a device twin");
                    Vec::new()
                }
            },
        }
    }

    /// A reported patch published by `device`.
    fn reported(&self, device: &str, payload: &[u8]) -> Result<(), InboundError> {
        let patch: Value = serde_json::from_slice(payload)
            .map_err(|e| InboundError::Refused(format!("invalid reported twin patch: {e}")))?;
        let limits = self.plane.twin_limits();
        match self
            .registry
            .patch_twin(device, TwinSection::Reported, &patch, None, limits)
        {
            Ok(_) => Ok(()),
            Err(RegistryError::Storage(e)) => Err(InboundError::Unavailable(e)),
            Err(e) => Err(InboundError::Refused(e.to_string())),
        }
    }

    /// A method response published by `device` for request `rid`.
    fn method_response(&self, device: &str, rid: &str, payload: &[u8]) -> Result<(), InboundError> {
        let reply: MethodReply = serde_json::from_slice(payload).map_err(|e| {
            InboundError::Refused(format!(
                "invalid response to method call {rid} (expected {{\"status\": <int>, \"payload\": ...}}): {e}"
            ))
        })?;
        if self.plane.methods.respond(device, rid, reply) {
            Ok(())
        } else {
            Err(InboundError::Refused(format!(
                "no method call {rid} waits for device '{device}' (answered, timed out or unknown)"
            )))
        }
    }
}

impl std::fmt::Debug for RegistryChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryChannel").finish_non_exhaustive()
    }
}

impl DeviceChannel for RegistryChannel {
    fn session_opened(&self, device: &str) {
        self.plane.twins.opened(device);
        lock(&self.plane.counted).remove(device);
    }

    fn pending(&self, device: &str, subscriptions: &[String]) -> Vec<Outgoing> {
        let mut due = self.commands(device, subscriptions);
        due.extend(self.twin(device, subscriptions));
        due.extend(self.plane.methods.due(device));
        due
    }

    fn delivered(&self, device: &str, key: &str) {
        if key.starts_with("twin:") {
            return;
        }
        if key.starts_with("method:") {
            self.plane.methods.sent(device, key);
            return;
        }
        if let Err(e) = self.plane.mark_delivered(device, key) {
            tracing::warn!(device, command = key, error = %e, "cannot mark a command delivered");
        }
        // Only once it is marked: a fetch meanwhile still reads it as due, and must not count
        // it again.
        let mut counted = lock(&self.plane.counted);
        if counted.get(device).is_some_and(|id| id == key) {
            counted.remove(device);
        }
    }

    fn accepts(&self, device: &str, topic: &str) -> bool {
        ack_topic_id(device, topic).is_some()
            || topic == reported_topic(device)
            || response_rid(device, topic).is_some()
    }

    fn inbound(&self, device: &str, topic: &str, payload: &[u8]) -> Result<(), InboundError> {
        if topic == reported_topic(device) {
            return self.reported(device, payload);
        }
        if let Some(rid) = response_rid(device, topic) {
            return self.method_response(device, rid, payload);
        }
        let Some(id) = ack_topic_id(device, topic) else {
            return Err(InboundError::Refused(format!(
                "topic {topic:?} is not a control topic"
            )));
        };
        let body: AckBody = serde_json::from_slice(payload).map_err(|e| {
            InboundError::Refused(format!("invalid acknowledgement of command {id}: {e}"))
        })?;
        let ack = body
            .into_ack()
            .map_err(|e| InboundError::Refused(e.to_string()))?;
        match self.registry.ack_command(device, id, ack) {
            Ok(_) => Ok(()),
            Err(RegistryError::Storage(e)) => Err(InboundError::Unavailable(e)),
            Err(e) => Err(InboundError::Refused(e.to_string())),
        }
    }

    fn load_session(&self, device: &str) -> Option<Vec<String>> {
        self.registry.mqtt_session(device).unwrap_or_else(|e| {
            tracing::warn!(device, error = %e, "cannot read a persistent MQTT session");
            None
        })
    }

    fn save_session(&self, device: &str, subscriptions: Option<&[String]>) {
        if let Err(e) = self.plane.save_session(device, subscriptions) {
            tracing::warn!(device, error = %e, "cannot store a persistent MQTT session");
        }
    }
}

/// `command` actions of rules: queued in the device's command inbox (default TTL, no ack
/// required) and its MQTT session / long-polls woken.
pub struct RuleCommands {
    plane: Arc<DevicePlane>,
    registry: Arc<Registry>,
}

impl RuleCommands {
    /// Over the device plane and registry.
    pub fn new(plane: Arc<DevicePlane>, registry: Arc<Registry>) -> Self {
        RuleCommands { plane, registry }
    }
}

impl strata_rules::outbox::CommandSink for RuleCommands {
    fn send_command(
        &self,
        device: &str,
        name: &str,
        payload: &serde_json::Value,
    ) -> Result<(), String> {
        let cmd = strata_registry::NewCommand {
            name: name.to_string(),
            payload: payload.clone(),
            ttl_ns: strata_registry::DEFAULT_COMMAND_TTL_NS,
            ack: false,
        };
        self.registry
            .enqueue_command(device, cmd, self.plane.queue_depth())
            .map_err(|e| format!("command to {device}: {e}"))?;
        self.plane.wake(device);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_topics() {
        assert_eq!(
            ack_topic_id("d1", "devices/d1/commands/00ff/ack"),
            Some("00ff")
        );
        for bad in [
            "devices/d2/commands/00ff/ack",
            "devices/d1/commands//ack",
            "devices/d1/commands/a/b/ack",
            "devices/d1/commands/00ff",
        ] {
            assert_eq!(ack_topic_id("d1", bad), None, "{bad}");
        }
    }

    #[test]
    fn ack_bodies() {
        let ok: AckBody = serde_json::from_str(r#"{"status":"rejected","result":1}"#).unwrap();
        assert_eq!(ok.into_ack().unwrap().status, CommandStatus::Rejected);
        let bad: AckBody = serde_json::from_str(r#"{"status":"done"}"#).unwrap();
        assert!(bad.into_ack().is_err());
        assert!(serde_json::from_str::<AckBody>(r#"{"status":"completed","x":1}"#).is_err());
    }
}
