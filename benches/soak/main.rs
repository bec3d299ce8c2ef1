//! MQTT connection soak: provisions N devices through the bulk-import API, opens one MQTT
//! connection per device (ramped), then has every device publish one QoS 1 JSON message per
//! second for D seconds, and reports errors, PUBACK latency, the server's RSS (sampled from
//! `/proc/PID/status`) and how many rows the server holds afterwards (SQL `count(*)`).
//!
//! ```text
//! soak --http http://127.0.0.1:8086 --token TOKEN --mqtt 127.0.0.1:1883 \
//!      --devices 10000 --duration 300 --server-pid PID [--ramp 1000] [--prefix soak]
//! ```
//!
//! Each side needs one file descriptor per connection: raise `ulimit -n` for both processes.
//! `benches/soak/README.md` describes a run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::{Connect, ConnectReturnCode, Packet, Protocol, Publish, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// Command-line settings.
#[derive(Debug, Clone)]
struct Args {
    http: String,
    token: String,
    mqtt: String,
    devices: usize,
    duration: u64,
    server_pid: Option<u32>,
    ramp: usize,
    prefix: String,
}

fn parse_args() -> Result<Args, String> {
    let mut map: HashMap<String, String> = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        map.insert(k.trim_start_matches('-').to_owned(), v);
    }
    let get = |k: &str, d: &str| map.get(k).cloned().unwrap_or_else(|| d.to_owned());
    let num = |k: &str, d: &str| -> Result<u64, String> {
        get(k, d)
            .parse()
            .map_err(|_| format!("--{k} must be a number"))
    };
    Ok(Args {
        http: get("http", "http://127.0.0.1:8086"),
        token: map.get("token").cloned().ok_or("--token is required")?,
        mqtt: get("mqtt", "127.0.0.1:1883"),
        devices: num("devices", "1000")? as usize,
        duration: num("duration", "60")?,
        server_pid: map.get("server-pid").and_then(|p| p.parse().ok()),
        ramp: num("ramp", "1000")?.max(1) as usize,
        prefix: get("prefix", "soak"),
    })
}

/// Counters shared by every device task.
#[derive(Debug, Default)]
struct Stats {
    connected: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    connect_failed: AtomicU64,
    connack_refused: AtomicU64,
    puback_timeout: AtomicU64,
    closed: AtomicU64,
    peak_rss_kib: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u32>>,
}

fn key_of(id: &str) -> String {
    format!("soak-key-{id}-0123456789abcdef")
}

/// Registers the devices (1,000 per bulk call) with known keys.
fn provision(args: &Args) -> Result<(), String> {
    let ids: Vec<String> = (0..args.devices)
        .map(|i| format!("{}-{i:06}", args.prefix))
        .collect();
    for chunk in ids.chunks(1000) {
        let body: Vec<serde_json::Value> = chunk
            .iter()
            .map(|id| serde_json::json!({"id": id, "primary_key": key_of(id)}))
            .collect();
        let resp = ureq::post(&format!("{}/api/v1/devices/bulk", args.http))
            .set("Authorization", &format!("Bearer {}", args.token))
            .send_json(serde_json::Value::Array(body))
            .map_err(|e| format!("bulk import failed: {e}"))?;
        let v: serde_json::Value = resp.into_json().map_err(|e| e.to_string())?;
        if v["errors"].as_u64() != Some(0) {
            return Err(format!("bulk import reported errors: {}", v["results"][0]));
        }
    }
    Ok(())
}

fn encode(p: Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    let _ = p.write(&mut b, usize::MAX);
    b.to_vec()
}

/// Reads one packet (or `None` at end of stream / error).
async fn read_packet(s: &mut TcpStream, buf: &mut BytesMut) -> Option<Packet> {
    loop {
        match Packet::read(buf, 1 << 16) {
            Ok(p) => return Some(p),
            Err(rumqttc::Error::InsufficientBytes(_)) => {}
            Err(_) => return None,
        }
        match s.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Connects one device; `None` (counted) on failure.
async fn connect(args: &Args, id: &str, stats: &Stats) -> Option<(TcpStream, BytesMut)> {
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(&args.mqtt)).await
    else {
        stats.connect_failed.fetch_add(1, Relaxed);
        return None;
    };
    let _ = s.set_nodelay(true);
    let mut c = Connect::new(id);
    c.keep_alive = 60;
    c.protocol = Protocol::V4;
    c.set_login(id, key_of(id));
    let mut buf = BytesMut::with_capacity(64);
    if s.write_all(&encode(Packet::Connect(c))).await.is_err() {
        stats.connect_failed.fetch_add(1, Relaxed);
        return None;
    }
    match tokio::time::timeout(Duration::from_secs(30), read_packet(&mut s, &mut buf)).await {
        Ok(Some(Packet::ConnAck(a))) if a.code == ConnectReturnCode::Success => {
            stats.connected.fetch_add(1, Relaxed);
            Some((s, buf))
        }
        Ok(Some(_)) => {
            stats.connack_refused.fetch_add(1, Relaxed);
            None
        }
        _ => {
            stats.connect_failed.fetch_add(1, Relaxed);
            None
        }
    }
}

/// One device: connect, wait for every device, publish once a second for the duration.
async fn device(i: usize, args: Arc<Args>, stats: Arc<Stats>, barrier: Arc<Barrier>) {
    let id = format!("{}-{i:06}", args.prefix);
    tokio::time::sleep(Duration::from_millis((i / args.ramp * 1000) as u64)).await;
    let conn = connect(&args, &id, &stats).await;
    barrier.wait().await;
    let Some((mut s, mut buf)) = conn else { return };
    // Spread the devices over the second.
    tokio::time::sleep(Duration::from_micros((i % 1000) as u64 * 1000)).await;
    let topic = format!("devices/{id}/telemetry/soak");
    let end = Instant::now() + Duration::from_secs(args.duration);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut lat = Vec::with_capacity(args.duration as usize);
    let mut seq: u16 = 0;
    while Instant::now() < end {
        tick.tick().await;
        seq = seq.wrapping_add(1).max(1);
        let payload = format!(r#"{{"v": {i}, "seq": {seq}}}"#);
        let mut p = Publish::new(&topic, QoS::AtLeastOnce, payload.into_bytes());
        p.pkid = seq;
        let started = Instant::now();
        if s.write_all(&encode(Packet::Publish(p))).await.is_err() {
            stats.closed.fetch_add(1, Relaxed);
            break;
        }
        stats.sent.fetch_add(1, Relaxed);
        match tokio::time::timeout(Duration::from_secs(10), read_packet(&mut s, &mut buf)).await {
            Ok(Some(Packet::PubAck(a))) if a.pkid == seq => {
                stats.acked.fetch_add(1, Relaxed);
                lat.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Ok(_) => {
                stats.closed.fetch_add(1, Relaxed);
                break;
            }
            Err(_) => {
                stats.puback_timeout.fetch_add(1, Relaxed);
                break;
            }
        }
    }
    let _ = s.write_all(&encode(Packet::Disconnect)).await;
    stats.connected.fetch_sub(1, Relaxed);
    if let Ok(mut all) = stats.latencies_us.lock() {
        all.extend(lat);
    }
}

/// Resident set size of a process in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn errors(s: &Stats) -> u64 {
    s.connect_failed.load(Relaxed)
        + s.connack_refused.load(Relaxed)
        + s.puback_timeout.load(Relaxed)
        + s.closed.load(Relaxed)
}

/// Prints progress every 5 s and records the peak server RSS, until aborted.
async fn sample(args: Arc<Args>, stats: Arc<Stats>, started: Instant) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss = args.server_pid.and_then(rss_kib).unwrap_or(0);
        stats.peak_rss_kib.fetch_max(rss, Relaxed);
        eprintln!(
            "t={:>4}s connected={} sent={} acked={} errors={} server_rss={} MiB",
            started.elapsed().as_secs(),
            stats.connected.load(Relaxed),
            stats.sent.load(Relaxed),
            stats.acked.load(Relaxed),
            errors(&stats),
            rss / 1024
        );
    }
}

fn stored_rows(args: &Args) -> Option<u64> {
    let resp = ureq::post(&format!("{}/api/v1/query", args.http))
        .set("Authorization", &format!("Bearer {}", args.token))
        .send_string("SELECT count(*) AS n FROM soak")
        .ok()?;
    let v: serde_json::Value = resp.into_json().ok()?;
    v[0]["n"].as_u64()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn report(args: &Args, stats: &Stats, took: Duration) {
    let peak = stats.peak_rss_kib.load(Relaxed);
    let mut lat = stats
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_unstable();
    let final_rss = args.server_pid.and_then(rss_kib).unwrap_or(0);
    println!("devices            {}", args.devices);
    println!(
        "duration           {} s publishing, {:.1} s total",
        args.duration,
        took.as_secs_f64()
    );
    println!("messages sent      {}", stats.sent.load(Relaxed));
    println!("messages acked     {}", stats.acked.load(Relaxed));
    println!("connect failures   {}", stats.connect_failed.load(Relaxed));
    println!("connack refusals   {}", stats.connack_refused.load(Relaxed));
    println!("puback timeouts    {}", stats.puback_timeout.load(Relaxed));
    println!("closed by server   {}", stats.closed.load(Relaxed));
    println!(
        "puback latency ms  p50 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    println!(
        "server rss MiB     peak {}  final {}",
        peak / 1024,
        final_rss / 1024
    );
    println!(
        "client rss MiB     {}",
        rss_kib(std::process::id()).unwrap_or(0) / 1024
    );
    match stored_rows(args) {
        Some(n) => println!("rows stored (soak) {n}"),
        None => println!("rows stored (soak) unknown (query failed)"),
    }
}

fn main() -> Result<(), String> {
    let args = Arc::new(parse_args()?);
    let t0 = Instant::now();
    provision(&args)?;
    eprintln!(
        "provisioned {} devices in {:.1} s",
        args.devices,
        t0.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    rt.block_on(async {
        let barrier = Arc::new(Barrier::new(args.devices + 1));
        let sampler = tokio::spawn(sample(args.clone(), stats.clone(), started));
        let tasks: Vec<_> = (0..args.devices)
            .map(|i| tokio::spawn(device(i, args.clone(), stats.clone(), barrier.clone())))
            .collect();
        barrier.wait().await;
        eprintln!(
            "{} of {} connected after {:.1} s; publishing for {} s",
            stats.connected.load(Relaxed),
            args.devices,
            started.elapsed().as_secs_f64(),
            args.duration
        );
        for t in tasks {
            let _ = t.await;
        }
        sampler.abort();
    });
    if let Some(rss) = args.server_pid.and_then(rss_kib) {
        stats.peak_rss_kib.fetch_max(rss, Relaxed);
    }
    report(&args, &stats, started.elapsed());
    Ok(())
}
