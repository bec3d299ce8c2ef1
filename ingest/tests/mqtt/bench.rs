//! QoS 1 throughput from one `mosquitto_pub -l` connection into the engine under `sync`
//! durability, asserting that every acknowledged message is stored. Runs small by default (a
//! test); for a measurement set `STRATA_MQTT_BENCH_MESSAGES` (per connection, at most 65,000),
//! `STRATA_MQTT_BENCH_RUNS` (connections, one after the other), `STRATA_MQTT_BENCH_INFLIGHT`
//! (mosquitto_pub `-M`, default 1000) and `STRATA_MQTT_BENCH_FORMAT` (`json` or `lp`):
//!
//! ```text
//! STRATA_MQTT_BENCH_MESSAGES=60000 STRATA_MQTT_BENCH_RUNS=10 \
//!     cargo test --release -p strata-ingest --test mqtt bench:: -- --nocapture
//! ```
//!
//! One run stays below 65,536 messages because `mosquitto_pub -l` (2.0.11) disconnects as soon
//! as the PUBACK of an early message carries the same 16-bit message id as its last queued line.

use std::time::{Duration, Instant};

use crate::harness::{Harness, creds};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[test]
fn qos1_one_connection_line_mode() {
    let n: i64 = env_or("STRATA_MQTT_BENCH_MESSAGES", "20000")
        .parse()
        .unwrap();
    let runs: i64 = env_or("STRATA_MQTT_BENCH_RUNS", "1").parse().unwrap();
    let inflight = env_or("STRATA_MQTT_BENCH_INFLIGHT", "1000");
    let format = env_or("STRATA_MQTT_BENCH_FORMAT", "json");
    assert!(
        n <= 65_000,
        "mosquitto_pub -l cannot send more than 65,535 QoS 1 lines per run"
    );
    let h = Harness::start();
    let c = creds("d1", "k1");
    let mut a: Vec<&str> = c.iter().map(String::as_str).collect();
    a.extend([
        "--nodelay",
        "-q",
        "1",
        "-l",
        "-M",
        &inflight,
        "-t",
        "devices/d1/telemetry/bench",
    ]);
    let mut busy = Duration::ZERO;
    for run in 0..runs {
        let t0 = 1_700_000_000_000i64 + run * n;
        let input: String = (0..n)
            .map(|i| match format.as_str() {
                "lp" => format!(
                    "bench temperature={}.5,seq={i}i {}\n",
                    i % 40,
                    (t0 + i) * 1_000_000
                ),
                _ => format!(
                    "{{\"ts\":{},\"temperature\":{}.5,\"seq\":{i}}}\n",
                    t0 + i,
                    i % 40
                ),
            })
            .collect();
        let start = Instant::now();
        let out = h.mosquitto_pub(&a, Some(input.as_bytes()));
        busy += start.elapsed();
        assert!(out.status.success(), "{out:?}");
    }
    let total = n * runs;
    let stats = h.server.stats();
    let rejects: Vec<_> = stats.rejects.iter().filter(|(_, n)| *n > 0).collect();
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(stats.pubacks_sent, total as u64);
    assert_eq!(h.rows("bench", "d1").len(), total as usize);
    let secs = busy.as_secs_f64();
    println!(
        "mqtt bench ({format}, -M {inflight}): {runs} × {n} QoS 1 messages in {secs:.2} s = {:.0} \
         msg/s; {} engine writes ({:.0} messages per write)",
        total as f64 / secs,
        stats.commits,
        total as f64 / stats.commits.max(1) as f64
    );
}

/// The same load from a raw client that writes every PUBLISH without waiting for PUBACKs (no
/// in-flight window): measures the server and engine rather than the client.
#[test]
fn qos1_one_connection_unbounded_window() {
    use crate::harness::publish_packet;
    use rumqttc::{Packet, QoS};
    use std::io::Write;
    let n: i64 = env_or("STRATA_MQTT_BENCH_MESSAGES", "20000")
        .parse()
        .unwrap();
    let runs: i64 = env_or("STRATA_MQTT_BENCH_RUNS", "1").parse().unwrap();
    let h = Harness::start();
    let mut busy = Duration::ZERO;
    for run in 0..runs {
        let t0 = 1_700_000_000_000i64 + run * n;
        let mut bytes = Vec::new();
        for i in 0..n {
            let payload = format!(
                "{{\"ts\":{},\"temperature\":{}.5,\"seq\":{i}}}",
                t0 + i,
                i % 40
            );
            bytes.extend(publish_packet(
                "devices/d1/telemetry/raw",
                QoS::AtLeastOnce,
                (i % 65535) as u16 + 1,
                payload.as_bytes(),
            ));
        }
        let mut c = h.client("d1");
        let mut writer = c.stream.try_clone().unwrap();
        let start = Instant::now();
        let sender = std::thread::spawn(move || writer.write_all(&bytes).unwrap());
        for _ in 0..n {
            assert!(matches!(c.read_packet(), Some(Packet::PubAck(_))));
        }
        busy += start.elapsed();
        sender.join().unwrap();
    }
    let total = n * runs;
    assert_eq!(h.rows("raw", "d1").len(), total as usize);
    let stats = h.server.stats();
    println!(
        "mqtt bench (raw client, unbounded window): {total} QoS 1 messages in {:.2} s = {:.0} \
         msg/s; {} engine writes",
        busy.as_secs_f64(),
        total as f64 / busy.as_secs_f64(),
        stats.commits
    );
}

/// Resident memory of this process in KiB (Linux), 0 when unknown.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Accepts `dev-N` with key `key-N`.
struct Numbered;

impl strata_ingest::mqtt::DeviceAuthenticator for Numbered {
    fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<String, strata_ingest::mqtt::AuthFailure> {
        let n = client_id
            .strip_prefix("dev-")
            .ok_or(strata_ingest::mqtt::AuthFailure::BadCredentials)?;
        match (username, password) {
            (Some(u), Some(p)) if u == client_id && p == format!("key-{n}") => Ok(client_id.into()),
            _ => Err(strata_ingest::mqtt::AuthFailure::BadCredentials),
        }
    }
}

/// Many concurrent device connections (`STRATA_MQTT_BENCH_CONNECTIONS`, default 300), each
/// publishing `STRATA_MQTT_BENCH_ROUNDS` (default 2) QoS 1 messages one second apart while all
/// stay open: every message is acknowledged and stored, and the resident memory per open
/// connection (server and client sides together, in this one process) is reported.
#[test]
fn many_device_connections() {
    use crate::harness::{connect_packet, publish_packet};
    use rumqttc::QoS;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n: usize = env_or("STRATA_MQTT_BENCH_CONNECTIONS", "300")
        .parse()
        .unwrap();
    let rounds: i64 = env_or("STRATA_MQTT_BENCH_ROUNDS", "2").parse().unwrap();
    let h = Harness::with_auth(
        strata_ingest::mqtt::MqttConfig::default(),
        std::sync::Arc::new(Numbered),
    );
    let addr = h.addr;
    let before = rss_kib();
    let start = Instant::now();
    let peak = h.rt.block_on(async move {
        let mut tasks = Vec::new();
        for i in 0..n {
            tasks.push(tokio::spawn(async move {
                let id = format!("dev-{i}");
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(&connect_packet(&id, &id, &format!("key-{i}"), 30))
                    .await
                    .unwrap();
                let mut ack = [0u8; 4];
                s.read_exact(&mut ack).await.unwrap();
                assert_eq!(ack, [0x20, 2, 0, 0]);
                let topic = format!("devices/{id}/telemetry");
                for r in 0..rounds {
                    let payload =
                        format!("{{\"ts\":{},\"v\":{r}}}", 1_700_000_000_000i64 + r * 1000);
                    let pkid = r as u16 + 1;
                    s.write_all(&publish_packet(
                        &topic,
                        QoS::AtLeastOnce,
                        pkid,
                        payload.as_bytes(),
                    ))
                    .await
                    .unwrap();
                    s.read_exact(&mut ack).await.unwrap();
                    assert_eq!(ack, [0x40, 2, 0, pkid as u8]);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                s
            }));
        }
        let mut open = Vec::new();
        for t in tasks {
            open.push(t.await.unwrap());
        }
        let peak = rss_kib();
        drop(open);
        peak
    });
    let secs = start.elapsed().as_secs_f64();
    let stats = h.server.stats();
    let rejects: Vec<_> = stats.rejects.iter().filter(|(_, n)| *n > 0).collect();
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(stats.pubacks_sent, n as u64 * rounds as u64);
    assert_eq!(stats.rows_written, n as u64 * rounds as u64);
    println!(
        "mqtt bench: {n} connections × {rounds} QoS 1 messages in {secs:.1} s; {} engine writes; \
         RSS {} MiB → {} MiB ({:.1} KiB per open connection, both sides)",
        stats.commits,
        before / 1024,
        peak / 1024,
        peak.saturating_sub(before) as f64 / n as f64
    );
}
