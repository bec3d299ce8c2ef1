//! Cloud-to-device command inbox: one durable queue per device in the `commands` table (key
//! `{device}/{command id}`, ids grow with enqueue time, so a prefix range is the device's queue in
//! order), with a depth limit, a time-to-live, and the states
//! `queued → delivered → completed | rejected`, `queued | delivered → expired | cancelled |
//! undeliverable`.
//! Every change is one committed (fsynced) redb transaction, so a command accepted by
//! [`Registry::enqueue_command`] survives a crash, and so does every state change; only the
//! count of MQTT sends ([`Registry::send_commands`]) is committed without an fsync.
//!
//! An expired command is never handed out: [`Registry::due_commands`] and
//! [`Registry::next_command`] skip commands whose `expires_ns` has passed, and readers see such a
//! command as `expired` even before [`Registry::sweep_commands`] writes that state. A command
//! is sent at most `max_attempts` times ([`DEFAULT_COMMAND_MAX_ATTEMPTS`]; an MQTT PUBLISH the
//! device did not PUBACK before its connection ended, a long-poll hand-out whose lease passed
//! unacknowledged): the send after that gives it up as `undeliverable`, so a device that crashes
//! on a command is not sent it again and again until its time-to-live. The
//! `mqtt_sessions` table keeps the subscriptions of persistent MQTT sessions (clean session = 0)
//! across restarts.

use std::sync::atomic::{AtomicI64, Ordering};

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{RegistryError, Result};
use crate::registry::Registry;
use crate::store::{COMMANDS, IDENTITIES, MQTT_SESSIONS, get_json, put_json};
use crate::sync::now_ns;
use crate::validate::validate_device_id;

/// Default most pending commands per device (IoT Hub's limit).
pub const DEFAULT_COMMAND_QUEUE_DEPTH: usize = 50;
/// Default time-to-live of a command that names none.
pub const DEFAULT_COMMAND_TTL_NS: i64 = 3_600 * 1_000_000_000;
/// Longest time-to-live accepted (7 days).
pub const MAX_COMMAND_TTL_NS: i64 = 7 * 24 * 3_600 * 1_000_000_000;
/// Largest command payload or result, as compact JSON.
pub const MAX_COMMAND_PAYLOAD: usize = 64 * 1024;
/// Longest command name.
pub const MAX_COMMAND_NAME: usize = 128;
/// Default most times a command is sent to its device before it is given up as
/// `undeliverable` (IoT Hub's default `maxDeliveryCount`).
pub const DEFAULT_COMMAND_MAX_ATTEMPTS: u32 = 10;
/// How long finished commands stay readable before [`Registry::sweep_commands`] deletes them.
pub const COMMAND_RETENTION_NS: i64 = 24 * 3_600 * 1_000_000_000;

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    /// Stored, not yet received by the device.
    Queued,
    /// Received by the device (MQTT PUBACK, or handed out by the HTTP long-poll). Final for a
    /// command sent with `ack: false`; otherwise waiting for the device's acknowledgement.
    Delivered,
    /// The device acknowledged it with `completed`.
    Completed,
    /// The device acknowledged it with `rejected`.
    Rejected,
    /// Its time-to-live passed before it was delivered (or, with `ack: true`, before the
    /// device acknowledged it).
    Expired,
    /// An application cancelled it before it finished.
    Cancelled,
    /// It was sent `max_attempts` times (MQTT PUBLISHes never PUBACKed, or long-poll hand-outs
    /// never acknowledged) and was given up instead of being sent again.
    Undeliverable,
}

impl CommandStatus {
    /// Whether the command still occupies a place in the device's queue.
    fn open(self, ack: bool) -> bool {
        match self {
            CommandStatus::Queued => true,
            CommandStatus::Delivered => ack,
            _ => false,
        }
    }

    /// The JSON name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Queued => "queued",
            CommandStatus::Delivered => "delivered",
            CommandStatus::Completed => "completed",
            CommandStatus::Rejected => "rejected",
            CommandStatus::Expired => "expired",
            CommandStatus::Cancelled => "cancelled",
            CommandStatus::Undeliverable => "undeliverable",
        }
    }
}

/// A command as stored and as returned by the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Command id (16 lowercase hex digits, growing with enqueue time).
    pub id: String,
    /// The device it is for.
    pub device: String,
    /// What the device should do.
    pub name: String,
    /// Arguments (any JSON value).
    pub payload: Value,
    /// Whether the device is expected to acknowledge it with a result.
    pub ack: bool,
    /// Current state.
    pub status: CommandStatus,
    /// When it was enqueued (ns since the epoch).
    pub created_ns: i64,
    /// When it expires (ns since the epoch).
    pub expires_ns: i64,
    /// When the device received it.
    pub delivered_ns: Option<i64>,
    /// When it reached a final state.
    pub finished_ns: Option<i64>,
    /// The device's result (with `completed` or `rejected`).
    pub result: Option<Value>,
    /// How many times it was sent to the device: MQTT PUBLISHes (one per connection that sent
    /// it) and long-poll hand-outs. Counted without an fsync, so a crash may forget the last few.
    pub attempts: u32,
    /// For a command handed out by the HTTP long-poll that expects an acknowledgement: when the
    /// next poll hands it out again if it is still unacknowledged (the device may never have
    /// received the response). Absent otherwise, and in commands stored before 2026-12-07.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeliver_ns: Option<i64>,
}

impl Command {
    /// The command as a reader at `now` sees it: an open command past its expiry is `expired`.
    fn at(mut self, now: i64) -> Self {
        if self.status.open(self.ack) && now >= self.expires_ns {
            self.status = CommandStatus::Expired;
            self.finished_ns = Some(self.expires_ns);
        }
        self
    }

    /// Whether it may be sent to the device at `now`.
    fn due(&self, now: i64) -> bool {
        self.status == CommandStatus::Queued && now < self.expires_ns
    }

    /// Whether it was already sent `max_attempts` times, so the next send gives it up.
    fn exhausted(&self, max_attempts: u32) -> bool {
        self.attempts >= max_attempts
    }

    /// Gives it up as `undeliverable` at `now`.
    fn give_up(&mut self, now: i64) {
        self.status = CommandStatus::Undeliverable;
        self.redeliver_ns = None;
        self.finished_ns = Some(now);
    }

    /// Whether the HTTP long-poll may hand it out at `now`: due, or handed out by a poll whose
    /// lease passed without an acknowledgement.
    fn pollable(&self, now: i64) -> bool {
        self.due(now)
            || (self.status == CommandStatus::Delivered
                && self.redeliver_ns.is_some_and(|t| now >= t)
                && now < self.expires_ns)
    }
}

/// How long a command handed out by the HTTP long-poll waits for its acknowledgement before the
/// next poll hands it out again, unless the poll asks for another lease: 60 s.
pub const POLL_LEASE_NS: i64 = 60_000_000_000;

/// What [`Registry::poll_command`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    /// The command handed out (now `delivered`).
    pub command: Option<Command>,
    /// With no command: when the earliest lease of a command handed out earlier ends (ns since
    /// the epoch), if any.
    pub retry_ns: Option<i64>,
}

/// A command to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCommand {
    /// What the device should do.
    pub name: String,
    /// Arguments.
    pub payload: Value,
    /// Time-to-live in nanoseconds.
    pub ttl_ns: i64,
    /// Whether the device must acknowledge it.
    pub ack: bool,
}

/// How a device finished a command.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandAck {
    /// `Completed` or `Rejected`.
    pub status: CommandStatus,
    /// The device's result.
    pub result: Option<Value>,
}

static LAST_ID: AtomicI64 = AtomicI64::new(0);

/// The command table of a write transaction.
type CommandTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;

/// Stores `cmd` for `device` inside `txn` (see [`Registry::enqueue_command`]).
fn enqueue_in(
    txn: &redb::WriteTransaction,
    device: &str,
    cmd: NewCommand,
    now: i64,
    max_depth: usize,
) -> Result<Command> {
    let identities = txn.open_table(IDENTITIES)?;
    let mut table = txn.open_table(COMMANDS)?;
    enqueue_into(&identities, &mut table, device, cmd, now, max_depth)
}

/// [`enqueue_in`] with the tables already open (a bulk enqueue opens them once).
fn enqueue_into(
    identities: &impl ReadableTable<&'static str, &'static [u8]>,
    table: &mut CommandTable<'_>,
    device: &str,
    cmd: NewCommand,
    now: i64,
    max_depth: usize,
) -> Result<Command> {
    if identities.get(device)?.is_none() {
        return Err(RegistryError::not_found("device", device));
    }
    let (start, end) = device_range(device);
    let mut open = 0;
    for item in table.range::<&str>(start.as_str()..end.as_str())? {
        let (_, v) = item?;
        let c: Command = serde_json::from_slice(v.value())?;
        if c.status.open(c.ack) && now < c.expires_ns {
            open += 1;
        }
    }
    if open >= max_depth {
        return Err(RegistryError::LimitExceeded(format!(
            "the command queue of device '{device}' is full ({open} of {max_depth} open commands)"
        )));
    }
    let command = Command {
        id: next_id(),
        device: device.to_owned(),
        name: cmd.name,
        payload: cmd.payload,
        ack: cmd.ack,
        status: CommandStatus::Queued,
        created_ns: now,
        expires_ns: now.saturating_add(cmd.ttl_ns),
        delivered_ns: None,
        finished_ns: None,
        result: None,
        attempts: 0,
        redeliver_ns: None,
    };
    put_json(table, &key(device, &command.id), &command)?;
    Ok(command)
}

/// Marks one command delivered in an open command table (see
/// [`Registry::mark_command_delivered`]).
fn mark_in(table: &mut CommandTable<'_>, device: &str, id: &str, now: i64) -> Result<Command> {
    validate_device_id(device)?;
    check_id(id)?;
    let k = key(device, id);
    let mut c = get_json::<Command, _>(table, &k)?
        .ok_or_else(|| RegistryError::not_found("command", id))?;
    // Sent before it expired (the sender checks), so a late PUBACK still counts. A PUBACK
    // proves delivery, also of a command given up while the mark was on its way.
    if !matches!(
        c.status,
        CommandStatus::Queued | CommandStatus::Undeliverable
    ) {
        return Ok(c);
    }
    c.status = CommandStatus::Delivered;
    c.delivered_ns = Some(now);
    c.finished_ns = None;
    put_json(table, &k, &c)?;
    Ok(c)
}

/// Stores (`Some`) or forgets (`None`) a device's persistent-session subscriptions.
fn put_session(
    table: &mut CommandTable<'_>,
    device: &str,
    subscriptions: Option<&[String]>,
) -> Result<()> {
    match subscriptions {
        Some(s) => put_json(table, device, &s)?,
        None => {
            table.remove(device)?;
        }
    }
    Ok(())
}

/// A new command id: the enqueue time in ns, made strictly increasing in this process.
fn next_id() -> String {
    let now = now_ns();
    let mut prev = LAST_ID.load(Ordering::Relaxed);
    loop {
        let id = now.max(prev + 1);
        match LAST_ID.compare_exchange(prev, id, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return format!("{id:016x}"),
            Err(p) => prev = p,
        }
    }
}

fn key(device: &str, id: &str) -> String {
    format!("{device}/{id}")
}

/// The `[start, end)` key range of a device's commands ('/' + 1 = '0').
fn device_range(device: &str) -> (String, String) {
    (format!("{device}/"), format!("{device}0"))
}

fn check_id(id: &str) -> Result<()> {
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(RegistryError::not_found("command", id))
    }
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// Checks a new command's fields.
fn validate(cmd: &NewCommand) -> Result<()> {
    if cmd.name.is_empty() || cmd.name.len() > MAX_COMMAND_NAME {
        return Err(RegistryError::invalid(format!(
            "command name must be 1 to {MAX_COMMAND_NAME} bytes"
        )));
    }
    if cmd.name.contains(['/', '+', '#']) || cmd.name.chars().any(char::is_control) {
        return Err(RegistryError::invalid(
            "command name must not contain '/', '+', '#' or control characters",
        ));
    }
    if cmd.ttl_ns <= 0 || cmd.ttl_ns > MAX_COMMAND_TTL_NS {
        return Err(RegistryError::invalid(
            "command ttl must be positive and at most 7d",
        ));
    }
    if json_len(&cmd.payload) > MAX_COMMAND_PAYLOAD {
        return Err(RegistryError::invalid(format!(
            "command payload exceeds {MAX_COMMAND_PAYLOAD} bytes"
        )));
    }
    Ok(())
}

impl Registry {
    /// Stores a command for `device` (which must exist); refused with
    /// [`RegistryError::LimitExceeded`] when `max_depth` commands are already open (queued, or
    /// delivered and awaiting acknowledgement).
    pub fn enqueue_command(
        &self,
        device: &str,
        cmd: NewCommand,
        max_depth: usize,
    ) -> Result<Command> {
        validate_device_id(device)?;
        validate(&cmd)?;
        let txn = self.inner.write_txn()?;
        let command = enqueue_in(&txn, device, cmd, now_ns(), max_depth)?;
        txn.commit()?;
        Ok(command)
    }

    /// Stores the same command for every device of `devices` in **one** transaction (one
    /// fsync): one result per device in input order, each as [`Registry::enqueue_command`]
    /// would answer it (unknown device, full queue). At most [`crate::MAX_BULK_ITEMS`]
    /// devices; `Err` only when the whole call fails (bad command, too many devices, storage).
    pub fn enqueue_commands(
        &self,
        devices: &[String],
        cmd: &NewCommand,
        max_depth: usize,
    ) -> Result<Vec<Result<Command>>> {
        validate(cmd)?;
        if devices.len() > crate::MAX_BULK_ITEMS {
            return Err(RegistryError::invalid(format!(
                "at most {} devices per bulk command, got {}",
                crate::MAX_BULK_ITEMS,
                devices.len()
            )));
        }
        let now = now_ns();
        let txn = self.inner.write_txn()?;
        let results = {
            let identities = txn.open_table(IDENTITIES)?;
            let mut table = txn.open_table(COMMANDS)?;
            devices
                .iter()
                .map(|d| {
                    validate_device_id(d)?;
                    enqueue_into(&identities, &mut table, d, cmd.clone(), now, max_depth)
                })
                .collect()
        };
        txn.commit()?;
        Ok(results)
    }

    /// Every stored command of `device`, oldest first, as seen now.
    pub fn commands(&self, device: &str) -> Result<Vec<Command>> {
        validate_device_id(device)?;
        let now = now_ns();
        let txn = self.inner.read_txn()?;
        let table = txn.open_table(COMMANDS)?;
        let (start, end) = device_range(device);
        let mut out = Vec::new();
        for item in table.range::<&str>(start.as_str()..end.as_str())? {
            let (_, v) = item?;
            out.push(serde_json::from_slice::<Command>(v.value())?.at(now));
        }
        Ok(out)
    }

    /// One command of `device`, as seen now.
    pub fn command(&self, device: &str, id: &str) -> Result<Command> {
        validate_device_id(device)?;
        check_id(id)?;
        let txn = self.inner.read_txn()?;
        let table = txn.open_table(COMMANDS)?;
        get_json::<Command, _>(&table, &key(device, id))?
            .map(|c| c.at(now_ns()))
            .ok_or_else(|| RegistryError::not_found("command", id))
    }

    /// Commands of `device` that may be sent now (queued, not expired), oldest first.
    pub fn due_commands(&self, device: &str) -> Result<Vec<Command>> {
        let now = now_ns();
        Ok(self
            .commands(device)?
            .into_iter()
            .filter(|c| c.due(now))
            .collect())
    }

    /// Applies `change` to one command in a write transaction; returns it as stored after.
    fn update_command(
        &self,
        device: &str,
        id: &str,
        change: impl FnOnce(&mut Command, i64) -> Result<bool>,
    ) -> Result<Command> {
        validate_device_id(device)?;
        check_id(id)?;
        let now = now_ns();
        let txn = self.inner.write_txn()?;
        let command = {
            let mut table = txn.open_table(COMMANDS)?;
            let k = key(device, id);
            let mut c = get_json::<Command, _>(&table, &k)?
                .ok_or_else(|| RegistryError::not_found("command", id))?
                .at(now);
            if !change(&mut c, now)? {
                return Ok(c);
            }
            put_json(&mut table, &k, &c)?;
            c
        };
        txn.commit()?;
        Ok(command)
    }

    /// Cancels an open command (queued, or delivered and awaiting acknowledgement); a finished
    /// one is a [`RegistryError::Conflict`].
    pub fn cancel_command(&self, device: &str, id: &str) -> Result<Command> {
        self.update_command(device, id, |c, now| {
            if !c.status.open(c.ack) {
                return Err(RegistryError::Conflict(format!(
                    "command '{id}' is already {}",
                    c.status.as_str()
                )));
            }
            c.status = CommandStatus::Cancelled;
            c.redeliver_ns = None;
            c.finished_ns = Some(now);
            Ok(true)
        })
    }

    /// Records that the device received the command (MQTT PUBACK). A command that moved on
    /// meanwhile (acknowledged, cancelled) is left as it is.
    pub fn mark_command_delivered(&self, device: &str, id: &str) -> Result<Command> {
        let txn = self.inner.write_txn()?;
        let command = mark_in(&mut txn.open_table(COMMANDS)?, device, id, now_ns())?;
        txn.commit()?;
        Ok(command)
    }

    /// [`Registry::mark_command_delivered`] for many `(device, command id)` pairs in **one**
    /// transaction (one fsync); one result per pair in order. A failed commit fails them all.
    pub fn mark_commands_delivered(&self, marks: &[(String, String)]) -> Vec<Result<Command>> {
        let now = now_ns();
        let attempt = || -> Result<Vec<Result<Command>>> {
            let txn = self.inner.write_txn()?;
            let results = {
                let mut table = txn.open_table(COMMANDS)?;
                marks
                    .iter()
                    .map(|(device, id)| mark_in(&mut table, device, id, now))
                    .collect()
            };
            txn.commit()?;
            Ok(results)
        };
        attempt().unwrap_or_else(|e| marks.iter().map(|_| Err(e.clone())).collect())
    }

    /// Counts one MQTT send of each command of `ids` (commands of `device` that a connection is
    /// about to PUBLISH for the first time) and returns the ones to send, in the order given:
    /// those still due and sent fewer than `max_attempts` times before. A due command already
    /// sent `max_attempts` times becomes `undeliverable` instead. Counts alone are committed
    /// without an fsync (a crash may forget the last few; they guard against endless resends
    /// and are no audit log); a give-up is durable.
    pub fn send_commands(
        &self,
        device: &str,
        ids: &[String],
        max_attempts: u32,
    ) -> Result<Vec<Command>> {
        validate_device_id(device)?;
        let now = now_ns();
        let mut txn = self.inner.write_txn()?;
        let mut sent = Vec::with_capacity(ids.len());
        let mut gave_up = false;
        {
            let mut table = txn.open_table(COMMANDS)?;
            for id in ids {
                check_id(id)?;
                let k = key(device, id);
                let Some(mut c) = get_json::<Command, _>(&table, &k)? else {
                    continue;
                };
                if !c.due(now) {
                    continue;
                }
                if c.exhausted(max_attempts) {
                    c.give_up(now);
                    gave_up = true;
                } else {
                    c.attempts = c.attempts.saturating_add(1);
                }
                put_json(&mut table, &k, &c)?;
                if c.status == CommandStatus::Queued {
                    sent.push(c);
                }
            }
        }
        if !gave_up {
            txn.lazy()?;
        }
        txn.commit()?;
        Ok(sent)
    }

    /// Hands out the oldest due command of `device` and marks it delivered (HTTP long-poll),
    /// with the default lease ([`POLL_LEASE_NS`]) and [`DEFAULT_COMMAND_MAX_ATTEMPTS`]; see
    /// [`Registry::poll_command`].
    pub fn next_command(&self, device: &str) -> Result<Option<Command>> {
        Ok(self
            .poll_command(device, POLL_LEASE_NS, DEFAULT_COMMAND_MAX_ATTEMPTS)?
            .command)
    }

    /// Hands out the oldest command of `device` the HTTP long-poll may take and marks it
    /// delivered: a queued one, or one an earlier poll handed out whose lease (`lease_ns`) passed
    /// without an acknowledgement (its response may never have reached the device: delivery
    /// over HTTP is at least once for commands that expect an acknowledgement; a command with
    /// `ack: false` is final once handed out). A command already handed out `max_attempts`
    /// times is given up as `undeliverable` instead. When none is ready, tells when the earliest
    /// lease ends, so a waiting poll can look again then.
    pub fn poll_command(&self, device: &str, lease_ns: i64, max_attempts: u32) -> Result<Poll> {
        validate_device_id(device)?;
        let now = now_ns();
        let txn = self.inner.write_txn()?;
        let mut changed = Vec::new();
        let mut found = None;
        let mut retry_ns: Option<i64> = None;
        {
            let mut table = txn.open_table(COMMANDS)?;
            let (start, end) = device_range(device);
            for item in table.range::<&str>(start.as_str()..end.as_str())? {
                let (_, v) = item?;
                let mut c: Command = serde_json::from_slice(v.value())?;
                if c.pollable(now) {
                    if !c.exhausted(max_attempts) {
                        found = Some(c);
                        break;
                    }
                    c.give_up(now);
                    changed.push(c);
                } else if c.status == CommandStatus::Delivered
                    && let Some(t) = c.redeliver_ns.filter(|_| now < c.expires_ns)
                {
                    retry_ns = Some(retry_ns.map_or(t, |r| r.min(t)));
                }
            }
            if let Some(c) = &mut found {
                c.status = CommandStatus::Delivered;
                c.delivered_ns = Some(now);
                c.attempts = c.attempts.saturating_add(1);
                c.redeliver_ns = c.ack.then(|| now.saturating_add(lease_ns.max(0)));
                changed.push(c.clone());
            }
            for c in &changed {
                put_json(&mut table, &key(device, &c.id), c)?;
            }
        }
        if !changed.is_empty() {
            txn.commit()?;
        }
        Ok(Poll {
            retry_ns: if found.is_some() { None } else { retry_ns },
            command: found,
        })
    }

    /// The device's acknowledgement. Repeating the same acknowledgement is harmless; a command
    /// that expired, was cancelled or was acknowledged differently is a
    /// [`RegistryError::Conflict`].
    pub fn ack_command(&self, device: &str, id: &str, ack: CommandAck) -> Result<Command> {
        if !matches!(
            ack.status,
            CommandStatus::Completed | CommandStatus::Rejected
        ) {
            return Err(RegistryError::invalid(
                "an acknowledgement's status is 'completed' or 'rejected'",
            ));
        }
        if ack
            .result
            .as_ref()
            .is_some_and(|r| json_len(r) > MAX_COMMAND_PAYLOAD)
        {
            return Err(RegistryError::invalid(format!(
                "command result exceeds {MAX_COMMAND_PAYLOAD} bytes"
            )));
        }
        self.update_command(device, id, |c, now| {
            if c.status == ack.status {
                return Ok(false);
            }
            // An acknowledgement proves delivery, also of a command given up meanwhile.
            if !matches!(
                c.status,
                CommandStatus::Queued | CommandStatus::Delivered | CommandStatus::Undeliverable
            ) {
                return Err(RegistryError::Conflict(format!(
                    "command '{id}' is already {}",
                    c.status.as_str()
                )));
            }
            c.delivered_ns.get_or_insert(now);
            c.status = ack.status;
            c.redeliver_ns = None;
            c.result = ack.result;
            c.finished_ns = Some(now);
            Ok(true)
        })
    }

    /// Writes `expired` into open commands past their expiry and deletes finished commands older
    /// than [`COMMAND_RETENTION_NS`]. Returns (expired, deleted).
    pub fn sweep_commands(&self) -> Result<(usize, usize)> {
        let now = now_ns();
        let txn = self.inner.write_txn()?;
        let (mut expired, mut deleted) = (Vec::new(), Vec::new());
        {
            let mut table = txn.open_table(COMMANDS)?;
            for item in table.iter()? {
                let (k, v) = item?;
                let stored: Command = serde_json::from_slice(v.value())?;
                let seen = stored.clone().at(now);
                if seen.status != stored.status {
                    expired.push((k.value().to_owned(), seen));
                } else if seen
                    .finished_ns
                    .is_some_and(|f| now - f > COMMAND_RETENTION_NS)
                {
                    deleted.push(k.value().to_owned());
                }
            }
            for (k, c) in &expired {
                put_json(&mut table, k, c)?;
            }
            for k in &deleted {
                table.remove(k.as_str())?;
            }
        }
        if expired.is_empty() && deleted.is_empty() {
            return Ok((0, 0));
        }
        txn.commit()?;
        Ok((expired.len(), deleted.len()))
    }

    /// The subscriptions of `device`'s persistent MQTT session, if it has one.
    pub fn mqtt_session(&self, device: &str) -> Result<Option<Vec<String>>> {
        let txn = self.inner.read_txn()?;
        let table = txn.open_table(MQTT_SESSIONS)?;
        get_json(&table, device)
    }

    /// Stores (`Some`) or forgets (`None`) the subscriptions of `device`'s persistent session.
    pub fn set_mqtt_session(&self, device: &str, subscriptions: Option<&[String]>) -> Result<()> {
        let txn = self.inner.write_txn()?;
        put_session(&mut txn.open_table(MQTT_SESSIONS)?, device, subscriptions)?;
        txn.commit()?;
        Ok(())
    }

    /// [`Registry::set_mqtt_session`] for many devices in **one** transaction (one fsync), in
    /// order (a later entry for the same device wins). A failed commit fails them all.
    pub fn set_mqtt_sessions(&self, sessions: &[(String, Option<Vec<String>>)]) -> Vec<Result<()>> {
        let attempt = || -> Result<Vec<Result<()>>> {
            let txn = self.inner.write_txn()?;
            let results = {
                let mut table = txn.open_table(MQTT_SESSIONS)?;
                sessions
                    .iter()
                    .map(|(device, subs)| put_session(&mut table, device, subs.as_deref()))
                    .collect()
            };
            txn.commit()?;
            Ok(results)
        };
        attempt().unwrap_or_else(|e| sessions.iter().map(|_| Err(e.clone())).collect())
    }
}

/// Deletes the commands and MQTT session of a deleted device (inside its deletion transaction).
pub(crate) fn delete_device_commands(txn: &redb::WriteTransaction, device: &str) -> Result<()> {
    let mut table = txn.open_table(COMMANDS)?;
    let (start, end) = device_range(device);
    let keys: Vec<String> = table
        .range::<&str>(start.as_str()..end.as_str())?
        .map(|item| item.map(|(k, _)| k.value().to_owned()))
        .collect::<std::result::Result<_, _>>()?;
    for k in keys {
        table.remove(k.as_str())?;
    }
    txn.open_table(MQTT_SESSIONS)?.remove(device)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceRegistration;
    use serde_json::json;

    fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("r.redb")).unwrap();
        reg.register_device("t", DeviceRegistration::new("d1"))
            .unwrap();
        (dir, reg)
    }

    fn cmd(name: &str, ttl_ns: i64, ack: bool) -> NewCommand {
        NewCommand {
            name: name.into(),
            payload: json!({"n": name}),
            ttl_ns,
            ack,
        }
    }

    #[test]
    fn sessions_in_one_transaction() {
        let (_d, reg) = registry();
        let subs = Some(vec!["devices/d1/commands/#".to_owned()]);
        let out = reg.set_mqtt_sessions(&[
            ("d1".into(), subs.clone()),
            ("d2".into(), subs.clone()),
            ("d2".into(), None),
        ]);
        assert!(out.iter().all(Result::is_ok));
        assert_eq!(reg.mqtt_session("d1").unwrap(), subs);
        assert_eq!(reg.mqtt_session("d2").unwrap(), None);
    }

    #[test]
    fn marks_in_one_transaction() {
        let (_d, reg) = registry();
        let a = reg
            .enqueue_command("d1", cmd("a", 10_000_000_000, true), 5)
            .unwrap();
        let marks = vec![
            ("d1".to_owned(), a.id.clone()),
            ("d1".to_owned(), "123".to_owned()),
            ("d1".to_owned(), a.id.clone()),
        ];
        let out = reg.mark_commands_delivered(&marks);
        assert_eq!(out[0].as_ref().unwrap().status, CommandStatus::Delivered);
        assert!(matches!(out[1], Err(RegistryError::NotFound { .. })));
        assert_eq!(out[2].as_ref().unwrap().status, CommandStatus::Delivered);
        assert_eq!(
            reg.command("d1", &a.id).unwrap().status,
            CommandStatus::Delivered
        );
    }

    #[test]
    fn bulk_enqueue_answers_per_device() {
        let (_d, reg) = registry();
        reg.register_device("t", DeviceRegistration::new("d2"))
            .unwrap();
        reg.enqueue_command("d2", cmd("first", 10_000_000_000, true), 1)
            .unwrap();
        let devices: Vec<String> = ["d1", "nope", "d2", "bad id"].map(String::from).into();
        let out = reg
            .enqueue_commands(&devices, &cmd("all", 10_000_000_000, true), 1)
            .unwrap();
        assert_eq!(out[0].as_ref().unwrap().device, "d1");
        assert!(matches!(out[1], Err(RegistryError::NotFound { .. })));
        assert!(matches!(out[2], Err(RegistryError::LimitExceeded(_))));
        assert!(matches!(out[3], Err(RegistryError::Invalid(_))));
        assert_eq!(reg.commands("d1").unwrap().len(), 1);
        assert_eq!(reg.commands("d2").unwrap().len(), 1);
        assert!(
            reg.enqueue_commands(&devices, &cmd("", 1, true), 1)
                .is_err()
        );
    }

    #[test]
    fn queue_depth_order_and_states() {
        let (_d, reg) = registry();
        let a = reg
            .enqueue_command("d1", cmd("a", 10_000_000_000, true), 2)
            .unwrap();
        let b = reg
            .enqueue_command("d1", cmd("b", 10_000_000_000, false), 2)
            .unwrap();
        assert!(a.id < b.id);
        let full = reg.enqueue_command("d1", cmd("c", 10_000_000_000, true), 2);
        assert!(
            matches!(full, Err(RegistryError::LimitExceeded(_))),
            "{full:?}"
        );
        let due: Vec<_> = reg
            .due_commands("d1")
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(due, ["a", "b"]);
        // Without ack, delivery finishes a command and frees its place.
        reg.mark_command_delivered("d1", &b.id).unwrap();
        reg.enqueue_command("d1", cmd("c", 10_000_000_000, true), 2)
            .unwrap();
        let got = reg.next_command("d1").unwrap().unwrap();
        assert_eq!(got.name, "a");
        assert_eq!(got.status, CommandStatus::Delivered);
        let done = CommandAck {
            status: CommandStatus::Completed,
            result: Some(json!({"ok": true})),
        };
        let acked = reg.ack_command("d1", &a.id, done.clone()).unwrap();
        assert_eq!(acked.status, CommandStatus::Completed);
        // The same acknowledgement again is harmless; a different one conflicts.
        reg.ack_command("d1", &a.id, done).unwrap();
        let other = CommandAck {
            status: CommandStatus::Rejected,
            result: None,
        };
        assert!(matches!(
            reg.ack_command("d1", &a.id, other),
            Err(RegistryError::Conflict(_))
        ));
        assert!(matches!(
            reg.cancel_command("d1", &a.id),
            Err(RegistryError::Conflict(_))
        ));
        assert!(matches!(
            reg.enqueue_command("nope", cmd("x", 1_000_000_000, true), 2),
            Err(RegistryError::NotFound { .. })
        ));
    }

    #[test]
    fn a_polled_command_left_unacknowledged_is_handed_out_again_after_its_lease() {
        let (_d, reg) = registry();
        let hour = 3_600_000_000_000;
        let a = reg.enqueue_command("d1", cmd("a", hour, true), 10).unwrap();
        let b = reg
            .enqueue_command("d1", cmd("b", hour, false), 10)
            .unwrap();
        let first = reg.poll_command("d1", hour, MAX).unwrap().command.unwrap();
        assert_eq!((first.id.as_str(), first.attempts), (a.id.as_str(), 1));
        let lease_end = first.redeliver_ns.unwrap();
        // Within the lease the next poll takes the next command; `ack: false` is final.
        let second = reg.poll_command("d1", hour, MAX).unwrap().command.unwrap();
        assert_eq!(
            (second.id.as_str(), second.redeliver_ns),
            (b.id.as_str(), None)
        );
        let none = reg.poll_command("d1", hour, MAX).unwrap();
        assert_eq!((none.command, none.retry_ns), (None, Some(lease_end)));

        // A lease that has passed: the same command again, counted as a second attempt.
        reg.register_device("t", DeviceRegistration::new("d2"))
            .unwrap();
        let c = reg.enqueue_command("d2", cmd("c", hour, true), 10).unwrap();
        reg.poll_command("d2", 0, MAX).unwrap().command.unwrap();
        let again = reg.poll_command("d2", hour, MAX).unwrap().command.unwrap();
        assert_eq!((again.id.as_str(), again.attempts), (c.id.as_str(), 2));
        // Acknowledged, it is never handed out again, and nothing is waited for.
        let done = CommandAck {
            status: CommandStatus::Completed,
            result: None,
        };
        reg.ack_command("d2", &c.id, done.clone()).unwrap();
        let d = reg.enqueue_command("d2", cmd("d", hour, true), 10).unwrap();
        reg.poll_command("d2", 0, MAX).unwrap().command.unwrap();
        reg.ack_command("d2", &d.id, done).unwrap();
        let none = reg.poll_command("d2", 0, MAX).unwrap();
        assert_eq!((none.command, none.retry_ns), (None, None));
        // A command delivered over MQTT (PUBACK) is never handed out by a poll.
        let e = reg.enqueue_command("d2", cmd("e", hour, true), 10).unwrap();
        reg.mark_command_delivered("d2", &e.id).unwrap();
        assert_eq!(reg.poll_command("d2", 0, MAX).unwrap().command, None);
    }

    /// A cap on sends high enough not to matter in a test.
    const MAX: u32 = DEFAULT_COMMAND_MAX_ATTEMPTS;

    #[test]
    fn a_polled_command_never_acknowledged_is_given_up_after_max_attempts() {
        let (_d, reg) = registry();
        let hour = 3_600_000_000_000;
        let a = reg.enqueue_command("d1", cmd("a", hour, true), 2).unwrap();
        let b = reg.enqueue_command("d1", cmd("b", hour, true), 2).unwrap();
        for attempt in 1..=3 {
            let got = reg.poll_command("d1", 0, 3).unwrap().command.unwrap();
            assert_eq!((got.id.as_str(), got.attempts), (a.id.as_str(), attempt));
        }
        // The fourth hand-out of `a` gives it up; the same poll hands out `b`.
        let next = reg.poll_command("d1", hour, 3).unwrap().command.unwrap();
        assert_eq!((next.id.as_str(), next.attempts), (b.id.as_str(), 1));
        let gone = reg.command("d1", &a.id).unwrap();
        assert_eq!(gone.status, CommandStatus::Undeliverable);
        assert_eq!(gone.attempts, 3);
        assert!(gone.finished_ns.is_some() && gone.redeliver_ns.is_none());
        // It no longer holds a place in the queue (depth 2: `b` and a new one fit).
        reg.enqueue_command("d1", cmd("c", hour, true), 2).unwrap();
        // It cannot be cancelled any more; a late acknowledgement still proves it was taken.
        assert!(matches!(
            reg.cancel_command("d1", &a.id),
            Err(RegistryError::Conflict(_))
        ));
        let late = CommandAck {
            status: CommandStatus::Completed,
            result: None,
        };
        let late = reg.ack_command("d1", &a.id, late).unwrap();
        assert_eq!(late.status, CommandStatus::Completed);
    }

    #[test]
    fn mqtt_sends_are_counted_and_capped() {
        let (_d, reg) = registry();
        let hour = 3_600_000_000_000;
        let a = reg.enqueue_command("d1", cmd("a", hour, true), 10).unwrap();
        let b = reg.enqueue_command("d1", cmd("b", hour, true), 10).unwrap();
        let ids = [a.id.clone(), b.id.clone()];
        let names = |sent: Vec<Command>| -> Vec<(String, u32)> {
            sent.into_iter().map(|c| (c.name, c.attempts)).collect()
        };
        let first = reg.send_commands("d1", &ids, 2).unwrap();
        assert_eq!(names(first), [("a".into(), 1), ("b".into(), 1)]);
        // `b` reached the device (PUBACK): not due, so neither sent nor counted again.
        reg.mark_command_delivered("d1", &b.id).unwrap();
        let second = reg.send_commands("d1", &ids, 2).unwrap();
        assert_eq!(names(second), [("a".into(), 2)]);
        assert!(reg.send_commands("d1", &ids, 2).unwrap().is_empty());
        let a = reg.command("d1", &a.id).unwrap();
        assert_eq!((a.status, a.attempts), (CommandStatus::Undeliverable, 2));
        assert_eq!(reg.command("d1", &b.id).unwrap().attempts, 1);
        assert!(reg.due_commands("d1").unwrap().is_empty());
        // A PUBACK whose mark arrives after the give-up still proves delivery.
        let late = reg.mark_command_delivered("d1", &a.id).unwrap();
        assert_eq!(
            (late.status, late.finished_ns),
            (CommandStatus::Delivered, None)
        );
        // Unknown and malformed ids.
        assert!(
            reg.send_commands("d1", &["00000000000000ff".into()], 2)
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            reg.send_commands("d1", &["nope".into()], 2),
            Err(RegistryError::NotFound { .. })
        ));
    }

    #[test]
    fn counted_sends_persist_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        let id = {
            let reg = Registry::open(&path).unwrap();
            reg.register_device("t", DeviceRegistration::new("d1"))
                .unwrap();
            let a = reg
                .enqueue_command("d1", cmd("a", 3_600_000_000_000, true), 10)
                .unwrap();
            reg.send_commands("d1", std::slice::from_ref(&a.id), MAX)
                .unwrap();
            a.id
        };
        let reg = Registry::open(&path).unwrap();
        assert_eq!(reg.command("d1", &id).unwrap().attempts, 1);
    }

    #[test]
    fn expired_commands_are_never_due() {
        let (_d, reg) = registry();
        let c = reg
            .enqueue_command("d1", cmd("short", 1, true), 50)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(reg.due_commands("d1").unwrap().is_empty());
        assert!(reg.next_command("d1").unwrap().is_none());
        assert_eq!(
            reg.command("d1", &c.id).unwrap().status,
            CommandStatus::Expired
        );
        assert_eq!(reg.sweep_commands().unwrap(), (1, 0));
        let late = CommandAck {
            status: CommandStatus::Completed,
            result: None,
        };
        assert!(matches!(
            reg.ack_command("d1", &c.id, late),
            Err(RegistryError::Conflict(_))
        ));
    }

    #[test]
    fn bad_commands_are_refused() {
        let (_d, reg) = registry();
        for bad in [
            cmd("", 1_000, true),
            cmd("a/b", 1_000, true),
            cmd("a", 0, true),
        ] {
            assert!(matches!(
                reg.enqueue_command("d1", bad, 50),
                Err(RegistryError::Invalid(_))
            ));
        }
        let big = NewCommand {
            payload: json!("x".repeat(MAX_COMMAND_PAYLOAD)),
            ..cmd("a", 1_000, true)
        };
        assert!(matches!(
            reg.enqueue_command("d1", big, 50),
            Err(RegistryError::Invalid(_))
        ));
        assert!(matches!(
            reg.command("d1", "zz"),
            Err(RegistryError::NotFound { .. })
        ));
    }

    #[test]
    fn mqtt_sessions_persist() {
        let (_d, reg) = registry();
        assert_eq!(reg.mqtt_session("d1").unwrap(), None);
        let subs = vec!["devices/d1/commands/#".to_owned()];
        reg.set_mqtt_session("d1", Some(&subs)).unwrap();
        assert_eq!(reg.mqtt_session("d1").unwrap(), Some(subs));
        reg.set_mqtt_session("d1", None).unwrap();
        assert_eq!(reg.mqtt_session("d1").unwrap(), None);
    }
}
