//! The broker bridge against a real Mosquitto broker (Debian `mosquitto`): messages published
//! to the broker with `mosquitto_pub` are stored under the device and stream their topic names
//! and acknowledged after the commit; messages that can never be stored are acknowledged and
//! counted; a shared subscription splits the messages between two bridges.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{Harness, run_captured};
use strata_ingest::mqtt::{Bridge, BridgeConfig, BridgeRoute, BridgeStats};

/// A Mosquitto broker on a free loopback port, killed when dropped.
struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (apt-get install mosquitto)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child, port }
    }

    /// Publishes `lines` (one message each) to `topic` at QoS 1.
    fn publish_lines(&self, topic: &str, lines: &str) {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, lines.as_bytes()).unwrap();
        std::io::Seek::rewind(&mut file).unwrap();
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-p", &self.port.to_string(), "-q", "1", "-l", "-t", topic])
            .stdin(Stdio::from(file));
        let out = run_captured(cmd, Duration::from_secs(60));
        assert!(out.status.success(), "{out:?}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(broker: &Broker, client_id: &str) -> BridgeConfig {
    let mut c = BridgeConfig::new("127.0.0.1", broker.port, client_id);
    c.routes = vec![BridgeRoute::new("factory/{device}/{stream}")];
    c
}

/// Starts a bridge on the harness runtime and waits until it has subscribed.
fn start(h: &Harness, config: BridgeConfig) -> Arc<Bridge> {
    let bridge = Arc::new(Bridge::new(config, h.engine.clone()).unwrap());
    let b = bridge.clone();
    h.rt.spawn(async move { b.run().await });
    wait(|| bridge.stats().connects >= 1);
    // The SUBSCRIBE follows the CONNACK; give the broker a moment to register it.
    std::thread::sleep(Duration::from_millis(300));
    bridge
}

fn wait(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json_lines(n: i64, start: i64) -> String {
    (start..start + n)
        .map(|i| format!("{{\"ts\": {}, \"watts\": {i}}}\n", 1_700_000_000_000 + i))
        .collect()
}

#[test]
fn bridge_stores_then_acknowledges() {
    let broker = Broker::start();
    let h = Harness::start();
    let bridge = start(&h, config(&broker, "strata-1"));
    broker.publish_lines("factory/pump-7/power", &json_lines(1000, 0));
    wait(|| bridge.stats().messages_acked >= 1000);
    assert_eq!(h.rows("power", "pump-7").len(), 1000);

    // Messages that can never be stored are acknowledged (and counted) so that they do not
    // block the subscription; the good ones around them are stored.
    broker.publish_lines("factory/bad id/power", "{\"watts\": 1}\n");
    broker.publish_lines(
        "factory/pump-7/power",
        "not line protocol\n{\"watts\": \"high\"}\n",
    );
    broker.publish_lines("factory/pump-7/power", &json_lines(10, 1000));
    wait(|| bridge.stats().messages_acked >= 1013);
    assert_eq!(h.rows("power", "pump-7").len(), 1010);
    let s: BridgeStats = bridge.stats();
    assert_eq!(
        (s.messages_received, s.messages_invalid, s.rows_written),
        (1013, 3, 1010)
    );
    assert!(
        s.commits < 1000,
        "{} commits: messages are group committed",
        s.commits
    );
    bridge.stop();
}

#[test]
fn shared_subscription_splits_the_load() {
    let broker = Broker::start();
    let h = Harness::start();
    let mut a = config(&broker, "strata-a");
    a.share_group = Some("strata".into());
    let mut b = config(&broker, "strata-b");
    b.share_group = Some("strata".into());
    let a = start(&h, a);
    let b = start(&h, b);
    broker.publish_lines("factory/meter-1/energy", &json_lines(2000, 0));
    wait(|| a.stats().messages_acked + b.stats().messages_acked >= 2000);
    assert_eq!(h.rows("energy", "meter-1").len(), 2000);
    let (ra, rb) = (a.stats().messages_received, b.stats().messages_received);
    assert_eq!(ra + rb, 2000, "each message reaches one bridge");
    assert!(ra > 0 && rb > 0, "both bridges get a share: {ra} / {rb}");
    a.stop();
    b.stop();
}

#[test]
fn bridge_reconnects_after_the_broker_restarts() {
    let mut broker = Broker::start();
    let h = Harness::start();
    let mut c = config(&broker, "strata-r");
    c.reconnect_delay = Duration::from_millis(100);
    let bridge = start(&h, c);
    broker.publish_lines("factory/d1/t", &json_lines(5, 0));
    wait(|| bridge.stats().messages_acked >= 5);
    let _ = broker.child.kill();
    let _ = broker.child.wait();
    wait(|| bridge.stats().connection_errors >= 1);
    let port = broker.port;
    broker.child = Command::new("mosquitto")
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait(|| bridge.stats().connects >= 2);
    std::thread::sleep(Duration::from_millis(300));
    broker.publish_lines("factory/d1/t", &json_lines(5, 5));
    wait(|| bridge.stats().messages_acked >= 10);
    assert_eq!(h.rows("t", "d1").len(), 10);
    bridge.stop();
}

#[test]
fn messages_not_stored_are_not_acknowledged_and_come_again() {
    let broker = Broker::start();
    // A bridge whose engine can no longer write receives the messages but must not ack them.
    let broken = Harness::start();
    broken.engine.shutdown().unwrap();
    let first = start(&broken, config(&broker, "strata-p"));
    broker.publish_lines("factory/d9/t", &json_lines(5, 0));
    wait(|| first.stats().messages_received >= 5);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(first.stats().messages_acked, 0);
    first.stop();
    wait(|| Arc::strong_count(&first) == 1);
    // The same client id resumes the persistent session: the broker delivers them again.
    let healthy = Harness::start();
    let second = start(&healthy, config(&broker, "strata-p"));
    wait(|| second.stats().messages_acked >= 5);
    assert_eq!(healthy.rows("t", "d9").len(), 5);
    second.stop();
}

/// Models for the bridge's pipeline: `strict-*` devices reject, `loose-*` devices flag
/// `watts` outside 0..=100; other devices have no model.
#[derive(Debug)]
struct Models;

impl strata_ingest::validate::SchemaSource for Models {
    fn schema(&self, device: &str) -> Option<Arc<strata_ingest::validate::Schema>> {
        use strata_ingest::validate::{FieldKind, FieldRule, Policy, Schema};
        let policy = if device.starts_with("strict-") {
            Policy::Reject
        } else if device.starts_with("loose-") {
            Policy::Flag
        } else {
            return None;
        };
        let rule = FieldRule {
            name: "watts".into(),
            kind: FieldKind::Float,
            min: Some(0.0),
            max: Some(100.0),
            required: true,
        };
        Some(Arc::new(Schema::new("meter", policy, vec![rule])))
    }
}

#[test]
fn bridge_confines_rows_to_the_topic_device_and_validates_them() {
    let broker = Broker::start();
    let h = Harness::start();
    let mut c = config(&broker, "strata-v");
    c.schemas = Some(Arc::new(Models));
    let bridge = start(&h, c);
    // Another device's rows on a device's topic: line protocol and JSON, refused (acknowledged
    // and counted as invalid, nothing stored).
    broker.publish_lines(
        "factory/strict-1/power",
        "power,device=other watts=5 1\n{\"device\": \"other\", \"watts\": 5}\n",
    );
    // A model violation under `reject`: refused; the valid message after it is stored.
    broker.publish_lines(
        "factory/strict-1/power",
        "{\"ts\": 1, \"watts\": 500}\n{\"ts\": 2, \"watts\": 50}\n",
    );
    // Under `flag`: stored, marked.
    broker.publish_lines("factory/loose-1/power", "{\"ts\": 3, \"watts\": 500}\n");
    wait(|| bridge.stats().messages_acked >= 5);
    assert!(h.rows("power", "other").is_empty());
    let strict = h.rows("power", "strict-1");
    assert_eq!(strict.len(), 1, "{strict:?}");
    assert_eq!(
        strict[0].1,
        vec![("watts".into(), strata_storage::Value::Float(50.0))]
    );
    let loose = h.rows("power", "loose-1");
    assert_eq!(loose.len(), 1, "{loose:?}");
    let flag = loose[0].1.iter().find(|(n, _)| n == "_invalid");
    assert!(
        matches!(flag, Some((_, strata_storage::Value::String(s))) if s.contains("above the maximum 100")),
        "{loose:?}"
    );
    assert_eq!(bridge.stats().messages_invalid, 3);
    bridge.stop();
}
