//! The MQTT endpoint driven by real, independently written clients: `mosquitto_pub` (QoS 0 and
//! 1, single messages and `-l` line mode, JSON and line protocol), `paho-mqtt` from Python, and
//! `rumqttc`; plus their view of the refusals (wrong key, another device's topic, QoS 2,
//! retained, MQTT 5, oversized packets). Data is checked with `Engine::scan`.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Harness, creds, run_captured};
use strata_ingest::mqtt::{MqttConfig, RejectReason};
use strata_storage::Value;

const T0: i64 = 1_700_000_000_000;

fn args<'a>(owned: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    owned
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect()
}

#[test]
fn mosquitto_pub_json_qos1() {
    let h = Harness::start();
    let c = creds("d1", "k1");
    let out = h.mosquitto_pub(
        &args(
            &c,
            &[
                "-q",
                "1",
                "-t",
                "devices/d1/telemetry",
                "-m",
                r#"{"ts": 1700000000000, "temperature": 21.5}"#,
            ],
        ),
        None,
    );
    assert!(out.status.success(), "{out:?}");
    // PUBACKed, hence already durable and visible: no waiting.
    let rows = h.rows("telemetry", "d1");
    assert_eq!(
        rows,
        vec![(
            T0 * 1_000_000,
            vec![("temperature".into(), Value::Float(21.5))]
        )]
    );
    let s = h.server.stats();
    assert_eq!(
        (s.messages_qos1, s.pubacks_sent, s.sessions_started),
        (1, 1, 1)
    );
}

#[test]
fn mosquitto_pub_line_protocol_qos0_to_a_stream_topic() {
    let h = Harness::start();
    let c = creds("pump-7", "s3cr3t");
    let out = h.mosquitto_pub(
        &args(
            &c,
            &[
                "-q",
                "0",
                "-t",
                "devices/pump-7/telemetry/power",
                "-m",
                "power,phase=L1 watts=230.5,on=t 1700000000000000000",
            ],
        ),
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(h.wait_rows("power", "pump-7", 1), 1);
    let rows = h.rows("power", "pump-7");
    assert_eq!(
        rows[0].1,
        vec![
            ("on".into(), Value::Boolean(true)),
            ("watts".into(), Value::Float(230.5))
        ]
    );
    // JSON naming its stream on the default topic.
    let out = h.mosquitto_pub(
        &args(
            &c,
            &[
                "-q",
                "1",
                "-t",
                "devices/pump-7/telemetry",
                "-m",
                r#"{"stream": "power", "watts": 100}"#,
            ],
        ),
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(h.rows("power", "pump-7").len(), 2);
}

#[test]
fn mosquitto_pub_line_mode_many_messages() {
    let h = Harness::start();
    let c = creds("d1", "k1");
    let n = 20_000;
    let json: String = (0..n)
        .map(|i| format!("{{\"ts\": {}, \"seq\": {i}}}\n", T0 + i))
        .collect();
    let out = h.mosquitto_pub(
        &args(
            &c,
            &[
                "-q",
                "1",
                "-l",
                "-M",
                "1000",
                "-t",
                "devices/d1/telemetry/json",
            ],
        ),
        Some(json.as_bytes()),
    );
    assert!(out.status.success(), "{out:?}");
    let rows = h.rows("json", "d1");
    assert_eq!(rows.len(), n as usize);
    assert!(
        rows.iter()
            .enumerate()
            .all(|(i, r)| r.1 == vec![("seq".into(), Value::Float(i as f64))])
    );
    assert_eq!(h.server.stats().pubacks_sent, n as u64);
    assert!(
        h.server.stats().commits < n as u64,
        "messages are group committed"
    );

    let lp: String = (0..n)
        .map(|i| format!("lp seq={i}i {}\n", (T0 + i) * 1_000_000))
        .collect();
    let out = h.mosquitto_pub(
        &args(&c, &["-q", "0", "-l", "-t", "devices/d1/telemetry"]),
        Some(lp.as_bytes()),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(h.wait_rows("lp", "d1", n as usize), n as usize);
}

#[test]
fn paho_python_client() {
    let h = Harness::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/paho_publish.py");
    let mut cmd = Command::new("python3");
    cmd.args([
        script,
        "127.0.0.1",
        &h.addr.port().to_string(),
        "d2",
        "k2",
        "500",
    ]);
    let out = run_captured(cmd, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout.trim(), "acked 500 granted 1 refused 1");
    let rows = h.rows("paho", "d2");
    assert_eq!(rows.len(), 500);
    assert_eq!(
        rows[7].1,
        vec![
            ("label".into(), Value::String("m7".into())),
            ("ok".into(), Value::Boolean(false)),
            ("seq".into(), Value::Float(7.0)),
        ]
    );
    assert_eq!(
        h.server.stats().rejects_for(RejectReason::SubscribeDenied),
        1
    );
}

#[test]
fn rumqttc_client() {
    let h = Harness::start();
    let port = h.addr.port();
    let acked = h.rt.block_on(async move {
        let mut opts = rumqttc::MqttOptions::new("d1", "127.0.0.1", port);
        opts.set_credentials("d1", "k1");
        opts.set_inflight(50);
        let (client, mut events) = rumqttc::AsyncClient::new(opts, 100);
        let publisher = tokio::spawn(async move {
            for i in 0..300 {
                let payload = format!("rq,src=rumqttc v={i} {}", (T0 + i) * 1_000_000);
                client
                    .publish(
                        "devices/d1/telemetry",
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        payload,
                    )
                    .await
                    .unwrap();
            }
            client
        });
        let mut acked = 0;
        while acked < 300 {
            match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        let _ = publisher.await;
        acked
    });
    assert_eq!(acked, 300);
    assert_eq!(h.rows("rq", "d1").len(), 300);
}

/// Runs mosquitto_pub expecting failure; returns its stderr.
fn refused(h: &Harness, a: &[&str]) -> String {
    let out = h.mosquitto_pub(a, None);
    assert!(!out.status.success(), "mosquitto_pub succeeded: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn mosquitto_refusals() {
    let h = Harness::with_config(MqttConfig {
        max_packet_bytes: 1024,
        ..MqttConfig::default()
    });
    let good = creds("d1", "k1");
    let msg = r#"{"v": 1}"#;

    let err = refused(
        &h,
        &args(
            &creds("d1", "wrong"),
            &["-q", "1", "-t", "devices/d1/telemetry", "-m", msg],
        ),
    );
    assert!(err.contains("bad user name or password"), "{err}");
    assert_eq!(
        h.server.stats().rejects_for(RejectReason::BadCredentials),
        1
    );

    refused(
        &h,
        &args(&good, &["-q", "1", "-t", "devices/d2/telemetry", "-m", msg]),
    );
    assert_eq!(h.server.stats().rejects_for(RejectReason::ForeignTopic), 1);

    refused(
        &h,
        &args(&good, &["-q", "2", "-t", "devices/d1/telemetry", "-m", msg]),
    );
    assert_eq!(h.server.stats().rejects_for(RejectReason::Qos2), 1);

    refused(
        &h,
        &args(
            &good,
            &["-q", "1", "-r", "-t", "devices/d1/telemetry", "-m", msg],
        ),
    );
    assert_eq!(h.server.stats().rejects_for(RejectReason::Retain), 1);

    let err = refused(
        &h,
        &args(
            &good,
            &[
                "-V",
                "mqttv5",
                "-q",
                "1",
                "-t",
                "devices/d1/telemetry",
                "-m",
                msg,
            ],
        ),
    );
    assert!(err.contains("Unsupported Protocol Version"), "{err}");
    assert_eq!(
        h.server.stats().rejects_for(RejectReason::ProtocolVersion),
        1
    );

    let big = format!(r#"{{"v": "{}"}}"#, "x".repeat(2000));
    refused(
        &h,
        &args(
            &good,
            &["-q", "1", "-t", "devices/d1/telemetry", "-m", &big],
        ),
    );
    assert_eq!(
        h.server.stats().rejects_for(RejectReason::PacketTooLarge),
        1
    );

    refused(
        &h,
        &args(
            &good,
            &["-q", "1", "-t", "devices/d1/telemetry", "-m", "{not json"],
        ),
    );
    assert_eq!(
        h.server.stats().rejects_for(RejectReason::InvalidPayload),
        1
    );

    assert!(h.rows("telemetry", "d1").is_empty());
    assert!(h.rows("telemetry", "d2").is_empty());
    assert_eq!(h.server.stats().messages_received, 0);
}
