//! QoS 1 throughput from one `mosquitto_pub -l` connection into the engine under `sync`
//! durability, asserting that every acknowledged message is stored. Runs small by default (a
//! test); for a measurement set `STRATA_MQTT_BENCH_MESSAGES` (per connection, at most 65,000),
//! `STRATA_MQTT_BENCH_RUNS` (connections, one after the other), `STRATA_MQTT_BENCH_INFLIGHT`
//! (mosquitto_pub `-M`, default 1000) and `STRATA_MQTT_BENCH_FORMAT` (`json` or `lp`):
//!
//! ```text
//! STRATA_MQTT_BENCH_MESSAGES=60000 STRATA_MQTT_BENCH_RUNS=10 \
//!     cargo test --release -p strata-ingest --test mqtt_bench -- --nocapture
//! ```
//!
//! One run stays below 65,536 messages because `mosquitto_pub -l` (2.0.11) disconnects as soon
//! as the PUBACK of an early message carries the same 16-bit message id as its last queued line.

mod mqtt_harness;

use std::time::{Duration, Instant};

use mqtt_harness::{Harness, creds};

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
    use mqtt_harness::publish_packet;
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
