//! The `strata` binary's MQTT endpoint with real `mosquitto_pub`/`mosquitto_sub` clients: devices
//! registered over HTTP publish with their keys, the data is readable over HTTP, a wrong key is
//! refused, and disabling a device closes its open session.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_tests::{Server, mosquitto_pub, temp_data_dir};

fn start() -> (tempfile::TempDir, Server, u16) {
    let (tmp, data) = temp_data_dir();
    let server = Server::start(&data, &["--mqtt-addr", "127.0.0.1:0"]);
    let port = server.logged_port("MQTT device endpoint listening");
    (tmp, server, port)
}

fn key_of(device: &serde_json::Value) -> String {
    device["primary_key"]
        .as_str()
        .expect("primary key")
        .to_owned()
}

#[test]
fn device_publishes_json_and_line_protocol_and_reads_back() {
    let (_tmp, server, port) = start();
    let key = key_of(&server.create_device("sensor-1", "thermo"));
    let out = mosquitto_pub(
        port,
        "sensor-1",
        &key,
        "devices/sensor-1/telemetry/env",
        r#"{"ts": 1700000000000, "temperature": 21.5}"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mosquitto_pub(
        port,
        "sensor-1",
        &key,
        "devices/sensor-1/telemetry/env",
        "env temperature=22.5 1700000001000000000",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = server.read("stream=env&device=sensor-1");
    assert_eq!(r.status, 200, "{}", r.body);
    let values = &r.json()["series"][0]["values"];
    assert_eq!(values.as_array().unwrap().len(), 2, "{}", r.body);
    assert_eq!(values[0][1], 21.5);
    assert_eq!(values[1][1], 22.5);
}

#[test]
fn wrong_key_and_foreign_topic_are_refused() {
    let (_tmp, server, port) = start();
    let key = key_of(&server.create_device("sensor-2", "thermo"));
    server.create_device("sensor-3", "thermo");
    let out = mosquitto_pub(
        port,
        "sensor-2",
        "not-the-key-0123456789",
        "devices/sensor-2/telemetry",
        r#"{"t": 1}"#,
    );
    assert!(!out.status.success(), "a wrong key must be refused");
    let out = mosquitto_pub(
        port,
        "sensor-2",
        &key,
        "devices/sensor-3/telemetry",
        r#"{"t": 1}"#,
    );
    let r = server.read("stream=telemetry");
    assert!(
        r.status == 404 || r.json()["series"].as_array().unwrap().is_empty(),
        "{} / {:?}",
        r.body,
        out
    );
}

#[test]
fn disabling_a_device_closes_its_session() {
    let (_tmp, server, port) = start();
    let key = key_of(&server.create_device("sensor-4", "thermo"));
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-i",
            "sensor-4",
            "-u",
            "sensor-4",
            "-P",
            &key,
        ])
        .args(["-t", "devices/sensor-4/commands/#"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub is installed");
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        sub.try_wait().unwrap().is_none(),
        "the subscriber connected and stays connected"
    );
    let r = server.post("/api/v1/devices/sensor-4/disable", b"", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let disabled_at = Instant::now();
    // mosquitto_sub reconnects on its own; a refused reconnect (disabled) makes it exit.
    while sub.try_wait().unwrap().is_none() && disabled_at.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let exited = sub.try_wait().unwrap();
    let _ = sub.kill();
    assert!(
        exited.is_some(),
        "the disabled device's session was not closed"
    );
}
