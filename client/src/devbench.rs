//! Device-plane scale benchmarks driven by `strata-fleet` (`benches/devices/README.md`):
//!
//! - [`provision_many`]: N devices provisioned through one enrollment group (keys derived from
//!   the group key, `POST /api/v1/provision/{enrollment}` from C concurrent HTTP clients);
//!   reports the total time, the rate and the per-request latency.
//! - [`command_fanout`]: N devices registered in bulk, each connected over MQTT (persistent
//!   session, subscribed to its command topic) on one Tokio runtime with `rumqttc`; then one
//!   command is enqueued for all of them (`POST /api/v1/commands`, or one
//!   `POST /api/v1/devices/{id}/commands` per device from C clients) and the time from just
//!   before the enqueue to each device's receipt is measured.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::device::derive_key;
use crate::device::provision::base64;

/// Sorted durations with percentiles.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// From unsorted samples.
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Latencies(samples)
    }

    /// Percentile `q` in [0, 1] in milliseconds (0 without samples).
    pub fn ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let i = ((self.0.len() - 1) as f64 * q).round() as usize;
        self.0[i].as_secs_f64() * 1e3
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n = {})",
            self.ms(0.5),
            self.ms(0.99),
            self.ms(1.0),
            self.len()
        )
    }
}

/// What [`provision_many`] does.
#[derive(Debug, Clone)]
pub struct ProvisionBench {
    /// Server base URL (`http://host:port`).
    pub url: String,
    /// Enrollment group id.
    pub enrollment: String,
    /// The group key (as returned at creation).
    pub group_key: String,
    /// Devices to provision (`{prefix}{i}`, i = 0..devices).
    pub devices: usize,
    /// Device id prefix.
    pub prefix: String,
    /// Concurrent HTTP clients.
    pub concurrency: usize,
}

/// What [`provision_many`] measured.
#[derive(Debug, Clone)]
pub struct ProvisionReport {
    /// Wall time of the whole run.
    pub total: Duration,
    /// Requests answered 201.
    pub ok: usize,
    /// Other answers and transport errors.
    pub errors: usize,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Latency of the successful requests.
    pub latency: Latencies,
}

impl std::fmt::Display for ProvisionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self.ok as f64 / self.total.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "provisioned {} devices in {:.2} s ({rate:.0}/s), {} errors",
            self.ok,
            self.total.as_secs_f64(),
            self.errors
        )?;
        write!(f, "request latency {}", self.latency)?;
        if let Some(e) = &self.first_error {
            write!(f, "\nfirst error: {e}")?;
        }
        Ok(())
    }
}

/// Provisions `cfg.devices` devices through one enrollment group from `cfg.concurrency` threads.
pub fn provision_many(cfg: &ProvisionBench) -> ProvisionReport {
    let next = AtomicUsize::new(0);
    let samples = Mutex::new(Vec::with_capacity(cfg.devices));
    let errors = AtomicUsize::new(0);
    let first_error = Mutex::new(None);
    let url = format!(
        "{}/api/v1/provision/{}",
        cfg.url.trim_end_matches('/'),
        cfg.enrollment
    );
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..cfg.concurrency.max(1) {
            s.spawn(|| {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(120))
                    .build();
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= cfg.devices {
                        break;
                    }
                    let id = format!("{}{i}", cfg.prefix);
                    let key = derive_key(&cfg.group_key, &id);
                    let auth = format!("Basic {}", base64(format!("{id}:{key}").as_bytes()));
                    let t = Instant::now();
                    match agent.post(&url).set("Authorization", &auth).call() {
                        Ok(_) => mine.push(t.elapsed()),
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            first.get_or_insert_with(|| format!("{id}: {e}"));
                        }
                    }
                }
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(mine);
            });
        }
    });
    let latency = Latencies::new(samples.into_inner().unwrap_or_else(|p| p.into_inner()));
    ProvisionReport {
        total: started.elapsed(),
        ok: latency.len(),
        errors: errors.into_inner(),
        first_error: first_error.into_inner().unwrap_or_else(|p| p.into_inner()),
        latency,
    }
}

/// What [`command_fanout`] does.
#[derive(Debug, Clone)]
pub struct FanoutBench {
    /// Server base URL (`http://host:port`).
    pub url: String,
    /// API token with the `admin` scope (it registers the devices).
    pub token: String,
    /// MQTT host.
    pub mqtt_host: String,
    /// MQTT port.
    pub mqtt_port: u16,
    /// Devices (`{prefix}{i}`), registered by this run (the prefix must be unused).
    pub devices: usize,
    /// Device id prefix.
    pub prefix: String,
    /// Connections opened at a time while connecting.
    pub connect_batch: usize,
    /// `true`: one `POST /api/v1/commands`; `false`: one `POST .../commands` per device from
    /// `concurrency` threads.
    pub bulk: bool,
    /// Concurrent HTTP clients for per-device enqueues.
    pub concurrency: usize,
    /// How long to wait for every device to receive its command.
    pub timeout: Duration,
}

/// What [`command_fanout`] measured.
#[derive(Debug, Clone)]
pub struct FanoutReport {
    /// Time to register the devices (one bulk call per 10,000).
    pub register: Duration,
    /// Time until every device was connected and subscribed.
    pub connect: Duration,
    /// Time the enqueue call(s) took.
    pub enqueue: Duration,
    /// Devices that received their command within the timeout.
    pub received: usize,
    /// Enqueue start → receipt, per device that received it.
    pub latency: Latencies,
}

impl std::fmt::Display for FanoutReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "registered in {:.2} s, connected + subscribed in {:.2} s",
            self.register.as_secs_f64(),
            self.connect.as_secs_f64()
        )?;
        writeln!(
            f,
            "enqueue took {:.3} s; {} devices received their command",
            self.enqueue.as_secs_f64(),
            self.received
        )?;
        write!(f, "enqueue start -> device receives: {}", self.latency)
    }
}

fn post_json(agent: &ureq::Agent, url: &str, token: &str, body: &Value) -> Result<Value, String> {
    match agent
        .post(url)
        .set("Authorization", &format!("Bearer {token}"))
        .send_json(body)
    {
        Ok(r) => r.into_json().map_err(|e| e.to_string()),
        Err(ureq::Error::Status(code, r)) => Err(format!(
            "HTTP {code}: {}",
            r.into_string().unwrap_or_default()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Registers the devices in bulk; returns their keys in order.
fn register(cfg: &FanoutBench, agent: &ureq::Agent) -> Result<Vec<String>, String> {
    let url = format!("{}/api/v1/devices/bulk", cfg.url.trim_end_matches('/'));
    let mut keys = Vec::with_capacity(cfg.devices);
    for chunk in (0..cfg.devices).collect::<Vec<_>>().chunks(10_000) {
        let items: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"id": format!("{}{i}", cfg.prefix)}))
            .collect();
        let v = post_json(agent, &url, &cfg.token, &Value::Array(items))?;
        for r in v["results"].as_array().ok_or("no results")? {
            let key = r["device"]["primary_key"]
                .as_str()
                .or_else(|| r["primary_key"].as_str())
                .ok_or_else(|| format!("device not created (prefix already used?): {r}"))?;
            keys.push(key.to_owned());
        }
    }
    Ok(keys)
}

/// One simulated device: connects, subscribes, records when its first command arrives.
async fn device(
    cfg: Arc<FanoutBench>,
    id: String,
    key: String,
    subscribed: tokio::sync::mpsc::Sender<()>,
    received: tokio::sync::mpsc::UnboundedSender<Instant>,
) {
    let mut opts = MqttOptions::new(&id, &cfg.mqtt_host, cfg.mqtt_port);
    opts.set_credentials(&id, &key);
    opts.set_clean_session(false);
    opts.set_keep_alive(Duration::from_secs(120));
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let topic = format!("devices/{id}/commands/#");
    let mut got = false;
    let mut announced = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.subscribe(&topic, QoS::AtLeastOnce).await;
            }
            Ok(Event::Incoming(Packet::SubAck(_))) if !announced => {
                announced = true;
                let _ = subscribed.send(()).await;
            }
            Ok(Event::Incoming(Packet::Publish(p))) if !got && !p.topic.ends_with("/ack") => {
                got = true;
                let _ = received.send(Instant::now());
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Enqueues the command for every device; returns how long the call(s) took.
fn enqueue(cfg: &FanoutBench) -> Result<Duration, String> {
    let t = Instant::now();
    enqueue_all(cfg)?;
    Ok(t.elapsed())
}

fn enqueue_all(cfg: &FanoutBench) -> Result<(), String> {
    let base = cfg.url.trim_end_matches('/');
    let cmd = json!({"name": "bench", "payload": {"n": 1}, "ttl": "10m", "ack": false});
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(300))
        .build();
    if cfg.bulk {
        let mut body = cmd;
        body["devices"] = (0..cfg.devices)
            .map(|i| Value::String(format!("{}{i}", cfg.prefix)))
            .collect();
        let v = post_json(
            &agent,
            &format!("{base}/api/v1/commands"),
            &cfg.token,
            &body,
        )?;
        if v["failed"] != 0 {
            return Err(format!("{} commands not queued", v["failed"]));
        }
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..cfg.concurrency.max(1) {
            let agent = agent.clone();
            let (next, failed, cmd) = (&next, &failed, &cmd);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= cfg.devices {
                        break;
                    }
                    let url = format!("{base}/api/v1/devices/{}{i}/commands", cfg.prefix);
                    if post_json(&agent, &url, &cfg.token, cmd).is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    match failed.into_inner() {
        0 => Ok(()),
        n => Err(format!("{n} commands not queued")),
    }
}

/// Runs the fan-out benchmark (see the module documentation).
pub fn command_fanout(cfg: FanoutBench) -> Result<FanoutReport, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(300))
        .build();
    let t = Instant::now();
    let keys = register(&cfg, &agent)?;
    let register_time = t.elapsed();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cfg = Arc::new(cfg);
    let (sub_tx, mut sub_rx) = tokio::sync::mpsc::channel(cfg.devices.max(1));
    let (rx_tx, mut rx_rx) = tokio::sync::mpsc::unbounded_channel();
    let t = Instant::now();
    rt.block_on(async {
        let batch = cfg.connect_batch.max(1);
        for (i, key) in keys.into_iter().enumerate() {
            let id = format!("{}{i}", cfg.prefix);
            tokio::spawn(device(cfg.clone(), id, key, sub_tx.clone(), rx_tx.clone()));
            // Pace the connects: wait for the batch before opening the next one.
            if (i + 1) % batch == 0 {
                for _ in 0..batch {
                    let _ = sub_rx.recv().await;
                }
            }
        }
        for _ in 0..cfg.devices % batch {
            let _ = sub_rx.recv().await;
        }
    });
    let connect = t.elapsed();
    let started = Instant::now();
    let enqueue_cfg = cfg.clone();
    let enqueued = std::thread::spawn(move || enqueue(&enqueue_cfg));
    let mut samples = Vec::with_capacity(cfg.devices);
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + cfg.timeout;
        while samples.len() < cfg.devices {
            match tokio::time::timeout_at(deadline, rx_rx.recv()).await {
                Ok(Some(at)) => samples.push(at.duration_since(started)),
                _ => break,
            }
        }
    });
    let enqueue_time = enqueued.join().map_err(|_| "enqueue thread panicked")??;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(FanoutReport {
        register: register_time,
        connect,
        enqueue: enqueue_time,
        received: samples.len(),
        latency: Latencies::new(samples),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let l = Latencies::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(l.ms(0.0), 1.0);
        assert_eq!(l.ms(1.0), 100.0);
        assert_eq!(l.ms(0.5), 51.0);
        assert_eq!(Latencies::default().ms(0.99), 0.0);
    }
}
