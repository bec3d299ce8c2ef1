//! QoS 1 throughput from one `mosquitto_pub -l` connection into the engine under `sync`
//! durability, asserting that every acknowledged message is stored. Runs small by default (a
//! test); set `STRATA_MQTT_BENCH_MESSAGES` (count), `STRATA_MQTT_BENCH_INFLIGHT` (mosquitto_pub
//! `-M`, default 1000) and `STRATA_MQTT_BENCH_FORMAT` (`json` or `lp`) for a measurement:
//!
//! ```text
//! STRATA_MQTT_BENCH_MESSAGES=1000000 cargo test --release -p strata-ingest --test mqtt_bench -- --nocapture
//! ```

mod mqtt_harness;

use std::time::Instant;

use mqtt_harness::{Harness, creds};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[test]
fn qos1_one_connection_line_mode() {
    let n: i64 = env_or("STRATA_MQTT_BENCH_MESSAGES", "20000").parse().unwrap();
    let inflight = env_or("STRATA_MQTT_BENCH_INFLIGHT", "1000");
    let format = env_or("STRATA_MQTT_BENCH_FORMAT", "json");
    let t0 = 1_700_000_000_000i64;
    let input: String = (0..n)
        .map(|i| match format.as_str() {
            "lp" => format!("bench temperature={}.5,seq={i}i {}\n", i % 40, (t0 + i) * 1_000_000),
            _ => format!("{{\"ts\":{},\"temperature\":{}.5,\"seq\":{i}}}\n", t0 + i, i % 40),
        })
        .collect();
    let h = Harness::start();
    let c = creds("d1", "k1");
    let mut a: Vec<&str> = c.iter().map(String::as_str).collect();
    a.extend(["-q", "1", "-l", "-M", &inflight, "-t", "devices/d1/telemetry/bench"]);
    let start = Instant::now();
    let out = h.mosquitto_pub(&a, Some(input.as_bytes()));
    let secs = start.elapsed().as_secs_f64();
    assert!(out.status.success(), "{out:?}");
    let stats = h.server.stats();
    assert_eq!(stats.pubacks_sent, n as u64);
    assert_eq!(h.rows("bench", "d1").len(), n as usize);
    println!(
        "mqtt bench ({format}, -M {inflight}): {n} QoS 1 messages in {secs:.2} s = {:.0} msg/s; \
         {} engine writes ({:.0} messages per write)",
        n as f64 / secs,
        stats.commits,
        n as f64 / stats.commits.max(1) as f64
    );
}
