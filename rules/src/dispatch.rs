//! The outbox dispatcher: a thread that passes over the due [`OutboxEntry`]s in sequence order
//! and delivers them — webhook POST (with the `X-Strata-Signature` HMAC), MQTT publish
//! ([`crate::mqtt`]), device command ([`CommandSink`]), stream row and `alert_history` row
//! (`Engine::write`) — deletes an entry only once delivered, and retries a failed one with
//! exponential backoff until its `max_attempts`, after which it stays in the outbox as dead.
//!
//! Webhooks and MQTT publishes are remote and may be slow: the dispatcher hands them, one job per
//! destination ([`crate::lanes`]), to the delivery workers ([`crate::pool`]) and goes on without
//! waiting, so an unreachable host costs only its own notifications. A worker records each
//! result in the store itself and wakes the dispatcher when its job is done. Stream, command and
//! history entries are local and delivered by the dispatcher thread itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use strata_storage::{Column, Engine, FieldType, SeriesKey, TableWrite, Value, WriteBatch};

use crate::lanes::{Round, lane};
use crate::outbox::{
    CommandSink, HISTORY_STREAM, IDEMPOTENCY_HEADER, Notification, OutboxEntry, SIGNATURE_HEADER,
    Target, backoff_ns, signature,
};
use crate::pool::{Job, Pool};
use crate::spec::{ActionSpec, DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS, duration_ns};
use crate::store::Store;

/// Outbox entries read (and their deliveries removed) at a time.
pub const PAGE: usize = 512;

/// A worker removes its delivered entries at least every this many deliveries.
const FLUSH: usize = 64;

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
    /// The delivery workers of webhooks and MQTT publishes.
    pub pool: Arc<Pool>,
    /// Wakes the dispatcher (a worker ended a job).
    pub wake: SyncSender<()>,
}

/// Why a delivery failed.
#[derive(Debug)]
struct Failure {
    text: String,
    /// The destination did not answer at all (timeout, refused or lost connection): its other
    /// entries would fail the same way, so it is paused.
    unreachable: bool,
}

/// What became of one remote delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Answered with an error: retried later, its lane waits.
    Failed,
    /// No answer: retried later, and the destination is paused.
    Unreachable,
}

impl Failure {
    fn answered(text: String) -> Failure {
        Failure {
            text,
            unreachable: false,
        }
    }

    fn unreachable(text: String) -> Failure {
        Failure {
            text,
            unreachable: true,
        }
    }
}

impl Dispatcher {
    /// The dispatcher loop: deliver what is due, then wait for a wake-up or the next due time;
    /// once stopped, ends the workers after their current delivery.
    pub fn run(self: Arc<Self>, wake: Receiver<()>) {
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
        self.pool.close();
    }

    /// One pass: every due entry, [`PAGE`] entries at a time (oldest first); returns how long
    /// to wait for the next. Remote entries go to the workers, one job per free destination (see
    /// [`Round::plan`]); local ones are attempted here, the `alert_history` rows of a page
    /// written together (one engine write per database) and a page's delivered local entries
    /// removed in one transaction; an entry is removed only after its delivery succeeded.
    fn round(self: &Arc<Self>) -> crate::Result<Duration> {
        let mut round = Round::new(crate::now_ns());
        let mut after = 0;
        loop {
            let page = self.store.outbox_page(after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let now = round.now;
            let plan = round.plan(page, |dest| self.pool.avail(dest, now));
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            self.hand_off(plan.jobs);
            let mut done = Vec::new();
            self.attempt_local(plan.local, &mut round, &mut done)?;
            self.write_history(plan.history, &mut done, &mut round.next)?;
            self.store.delivered_many(&done)?;
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let wait = round
            .next
            .saturating_sub(crate::now_ns())
            .clamp(1_000_000, 1_000_000_000);
        Ok(Duration::from_nanos(wait as u64))
    }

    /// Queues one job per destination and starts the workers they need.
    fn hand_off(self: &Arc<Self>, jobs: std::collections::BTreeMap<String, Vec<OutboxEntry>>) {
        for (dest, entries) in jobs {
            let seqs = entries.iter().map(|e| e.seq).collect();
            self.pool.submit(Job { dest, seqs });
        }
        while self.pool.wants_worker() {
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("rules-delivery".into())
                .spawn(move || me.serve());
            if let Err(e) = spawned {
                // The queued jobs wait for a running worker, or for the next pass to try again.
                tracing::error!(error = %e, "rules outbox: cannot start a delivery thread");
                self.pool.worker_gone();
                break;
            }
        }
    }

    /// Stream and command entries in sequence order; a failure holds its lane's later entries.
    fn attempt_local(
        &self,
        entries: Vec<OutboxEntry>,
        round: &mut Round,
        done: &mut Vec<u64>,
    ) -> crate::Result<()> {
        for e in entries {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let lane = lane(&e);
            if lane.as_ref().is_some_and(|l| round.waiting.contains(l)) {
                continue;
            }
            if !self.attempt(e, done, &mut round.next)? {
                round.waiting.extend(lane);
            }
        }
        Ok(())
    }

    /// Delivers one entry: its sequence joins `done` (true), or its failure is recorded (false).
    fn attempt(&self, e: OutboxEntry, done: &mut Vec<u64>, next: &mut i64) -> crate::Result<bool> {
        match self.deliver(&e) {
            Ok(()) => {
                done.push(e.seq);
                self.stats.delivered(e.rule());
                Ok(true)
            }
            Err(err) => {
                let retry_at = self.failed(e, err.text)?;
                *next = (*next).min(retry_at);
                Ok(false)
            }
        }
    }

    /// A worker: runs jobs until the pool closes or it idles; a destination is freed (and the
    /// dispatcher woken) only after its job's results are committed.
    fn serve(self: Arc<Self>) {
        while let Some(job) = self.pool.next_job() {
            let release = Release {
                pool: &self.pool,
                dest: &job.dest,
            };
            if let Err(e) = self.run_job(&job) {
                tracing::warn!(destination = %job.dest, error = %e,
                    "rules outbox: delivery job ended early");
                self.pool.pause(&job.dest, crate::now_ns() + 1_000_000_000);
            }
            drop(release);
            let _ = self.wake.try_send(());
        }
    }

    /// Delivers a job's entries in its order (each lane in sequence order), each re-read from the
    /// store first.
    ///
    /// The dispatcher planned the job from a page it read earlier, maybe before the previous
    /// job of this destination committed (delivered entries deleted, failures given a later
    /// retry time): that page may be stale. It cannot be stale any more here: only the worker
    /// holding a destination changes that destination's entries, the destination was busy from
    /// the moment the previous job was queued until its results were committed, and this job was
    /// queued after that. So an entry gone from the store (delivered, or its rule's outbox
    /// removed) is skipped, a dead one is skipped, and one that is not due makes its lane wait
    /// (its later entries in this job are skipped too, like the dispatcher does).
    fn run_job(&self, job: &Job) -> crate::Result<()> {
        let mut done = Vec::new();
        let walked = self.walk_job(job, &mut done);
        // What was delivered is removed even if the job ended on an error.
        let removed = self.store.delivered_many(&done);
        walked.and(removed)
    }

    /// The deliveries of [`Dispatcher::run_job`]; delivered sequences not removed yet stay in
    /// `done`.
    fn walk_job(&self, job: &Job, done: &mut Vec<u64>) -> crate::Result<()> {
        let mut waiting: HashSet<String> = HashSet::new();
        for &seq in &job.seqs {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let Some(e) = self.store.entry(seq)? else {
                continue;
            };
            let lane = lane(&e);
            if e.dead || lane.as_ref().is_some_and(|l| waiting.contains(l)) {
                continue;
            }
            if e.next_at_ns > crate::now_ns() {
                waiting.extend(lane);
                continue;
            }
            match self.attempt_remote(&job.dest, e, done)? {
                Outcome::Delivered => {}
                Outcome::Failed => waiting.extend(lane),
                // Paused: the rest of the job stays due, without an attempt counted.
                Outcome::Unreachable => break,
            }
            if done.len() >= FLUSH {
                self.store.delivered_many(done)?;
                done.clear();
            }
        }
        Ok(())
    }

    /// Delivers one remote entry: its sequence joins `done`, or its failure is recorded; an
    /// unreachable destination is paused until the entry's retry time.
    fn attempt_remote(
        &self,
        dest: &str,
        e: OutboxEntry,
        done: &mut Vec<u64>,
    ) -> crate::Result<Outcome> {
        let result = {
            let _counted = self.pool.delivering();
            self.deliver(&e)
        };
        match result {
            Ok(()) => {
                self.pool.resume(dest);
                done.push(e.seq);
                self.stats.delivered(e.rule());
                Ok(Outcome::Delivered)
            }
            Err(err) if err.unreachable => {
                let retry_at = self.failed(e, err.text)?;
                self.pool.pause(dest, retry_at);
                Ok(Outcome::Unreachable)
            }
            Err(err) => self.failed(e, err.text).map(|_| Outcome::Failed),
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

    /// Counts a failed attempt: retried after a backoff, or dead after the last attempt; returns
    /// when the entry (or, dead, the next one of its destination) is tried again (ns).
    fn failed(&self, mut e: OutboxEntry, err: String) -> crate::Result<i64> {
        e.attempts += 1;
        e.last_error = Some(err.clone());
        let (max, base) = retry_policy(&e.target);
        let retry_at = crate::now_ns() + backoff_ns(base, e.attempts);
        if e.attempts >= max {
            e.dead = true;
            tracing::warn!(rule = %e.rule(), id = %e.notification.id, attempts = e.attempts,
                error = %err, "rules outbox: notification dead-lettered");
            self.stats.dead(e.rule());
        } else {
            e.next_at_ns = retry_at;
            tracing::info!(rule = %e.rule(), id = %e.notification.id, attempts = e.attempts,
                error = %err, "rules outbox: delivery failed, will retry");
            self.stats.failed_delivery(e.rule());
        }
        self.store.update_entry(&e).map(|()| retry_at)
    }

    fn deliver(&self, e: &OutboxEntry) -> Result<(), Failure> {
        let local = |r: Result<(), String>| r.map_err(Failure::answered);
        match &e.target {
            Target::Action { action, db } => match action {
                ActionSpec::Webhook { url, secret, .. } => {
                    post_webhook(&self.agent, url, secret.as_deref(), &e.notification)
                }
                ActionSpec::Stream { db: d, stream } => local(self.write_row(
                    d.as_deref().unwrap_or(db),
                    stream,
                    e,
                    notification_columns(&e.notification, false),
                )),
                ActionSpec::Command { name, payload } => local(self.command(e, name, payload)),
                // Every failure of the one broker connection (refused, no PUBACK, closed) is
                // the broker's: the other publishes would fail the same way.
                ActionSpec::Mqtt { topic, .. } => self
                    .publish(topic, &e.notification)
                    .map_err(Failure::unreachable),
            },
            Target::History { db } => local(self.write_row(
                db,
                HISTORY_STREAM,
                e,
                notification_columns(&e.notification, true),
            )),
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

/// Frees a worker's destination when its job ends, also if the job panicked (the worker's slot
/// is given back then, as its thread is gone).
struct Release<'a> {
    pool: &'a Pool,
    dest: &'a str,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.pool.finish(self.dest);
        if std::thread::panicking() {
            self.pool.worker_gone();
        }
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
///
/// Without a connection pool: ureq does not retry a POST on a kept connection the receiver has
/// closed meanwhile (many close idle ones after a few seconds), which would count as an
/// unreachable host and pause it. A fresh connection per notification costs a handshake.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(WEBHOOK_TIMEOUT)
        .redirects(0)
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .build()
}

/// POSTs the notification; any 2xx is a delivery, no answer (timeout, refused or broken
/// connection) makes the host unreachable.
fn post_webhook(
    agent: &ureq::Agent,
    url: &str,
    secret: Option<&str>,
    n: &Notification,
) -> Result<(), Failure> {
    let body = serde_json::to_vec(n).map_err(|e| Failure::answered(e.to_string()))?;
    let mut req = agent
        .post(url)
        .set("Content-Type", "application/json")
        .set(IDEMPOTENCY_HEADER, &n.id);
    if let Some(s) = secret {
        req = req.set(SIGNATURE_HEADER, &signature(s, &body));
    }
    match req.send_bytes(&body) {
        Ok(r) if (200..300).contains(&r.status()) => Ok(()),
        Ok(r) => Err(Failure::answered(format!("{url} answered {}", r.status()))),
        Err(ureq::Error::Status(code, _)) => {
            Err(Failure::answered(format!("{url} answered {code}")))
        }
        Err(e) => Err(Failure::unreachable(e.to_string())),
    }
}
