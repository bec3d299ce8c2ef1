//! The device SDK (`strata_client::device`) used as a library against the real `strata` binary:
//! store-and-forward across a server restart and across a device restart (every buffered point
//! stored exactly once, checked by SQL count and sums); commands received and acknowledged;
//! desired properties received and reported ones visible through `GET .../twin`; a direct method
//! served; provisioning from an enrollment group then connecting (and a wrong group key refused);
//! MQTTS with a client certificate; provisioning with a certificate from an enrollment group's
//! CA over HTTPS, then connecting over MQTTS with it; and the Flight SQL query client returning
//! Arrow batches.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use arrow::array::{Array, Float64Array, Int64Array};
use serde_json::{Value, json};
use strata_client::device::{
    Auth, CommandOutcome, Device, DeviceBuilder, DeviceConfig, DeviceError, MethodResponse, Point,
    provision, provision_with_certificate,
};
use strata_client::query::QueryClient;
use strata_tests::{Server, free_port, make_ca, make_device_cert, temp_data_dir};

const WAIT: Duration = Duration::from_secs(60);

fn start(dir: &Path, mqtt_port: u16, extra: &[&str]) -> Server {
    let mqtt = format!("127.0.0.1:{mqtt_port}");
    let mut args = vec!["--mqtt-addr", mqtt.as_str()];
    args.extend_from_slice(extra);
    Server::start(dir, &args)
}

fn key_of(device: &Value) -> String {
    device["primary_key"].as_str().unwrap().to_owned()
}

fn sql(server: &Server, text: &str) -> Vec<Value> {
    let r = server.post(
        "/api/v1/query",
        text.as_bytes(),
        &[("Accept", "application/json")],
    );
    assert_eq!(r.status, 200, "{text}: {}", r.body);
    r.json().as_array().expect("rows").clone()
}

/// `count(*)`, `count(DISTINCT seq)`, `sum(seq)` of `env` rows of `dev`.
fn stored(server: &Server, dev: &str) -> (i64, i64, f64) {
    let rows = sql(
        server,
        &format!(
            "SELECT count(*) AS n, count(DISTINCT seq) AS d, sum(seq) AS s FROM env WHERE device = '{dev}'"
        ),
    );
    let r = &rows[0];
    (
        r["n"].as_i64().unwrap(),
        r["d"].as_i64().unwrap(),
        r["s"].as_f64().unwrap_or(0.0),
    )
}

/// Points `from..to` of stream `env`, one message per `per_message`, timestamps 1 s apart.
fn publish_range(dev: &Device, from: i64, to: i64, per_message: i64) {
    let base = 1_764_000_000_000_000_000i64;
    let mut i = from;
    while i < to {
        let end = (i + per_message).min(to);
        let points: Vec<Point> = (i..end)
            .map(|s| {
                Point::new("env")
                    .tag("site", "lab")
                    .field("seq", s as f64)
                    .field("temp", 20.0 + (s % 7) as f64)
                    .at(base + s * 1_000_000_000)
            })
            .collect();
        dev.publish(&points).unwrap();
        i = end;
    }
}

fn expected_sum(from: i64, to: i64) -> f64 {
    (from..to).map(|s| s as f64).sum()
}

#[test]
fn store_and_forward_survives_server_and_device_restarts() {
    let (_tmp, data) = temp_data_dir();
    let buffers = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start(&data, port, &[]);
    let key = key_of(&server.create_device("sensor-1", "env"));
    let config = DeviceConfig::new(
        "sensor-1",
        "127.0.0.1",
        port,
        &key,
        buffers.path().join("sensor-1"),
    );

    let dev = Device::connect(config.clone()).unwrap();
    assert!(dev.wait_connected(WAIT));
    publish_range(&dev, 0, 100, 10);
    dev.flush(WAIT).unwrap();
    assert_eq!(
        stored(&server, "sensor-1"),
        (100, 100, expected_sum(0, 100))
    );

    // Server down: points go into the buffer and stay there.
    server.terminate();
    publish_range(&dev, 100, 1100, 25);
    let s = dev.stats();
    assert_eq!(s.buffer.pending_points, 1000, "{s:?}");
    assert_eq!(s.buffer.pending_messages, 40);
    assert!(!s.connected);

    // Server back on the same port: the backlog is sent, each point stored exactly once.
    server.restart();
    dev.flush(WAIT).unwrap();
    assert_eq!(
        stored(&server, "sensor-1"),
        (1100, 1100, expected_sum(0, 1100))
    );
    let s = dev.stats();
    assert_eq!(s.buffer.dropped_points, 0);
    assert!(s.connects >= 2 && s.connection_errors >= 1, "{s:?}");

    // Device restart while the server is down: the buffer on disk carries the points over.
    server.terminate();
    publish_range(&dev, 1100, 1600, 50);
    dev.close();
    server.restart();
    let dev = Device::connect(config).unwrap();
    assert_eq!(dev.stats().buffer.pending_points, 500);
    dev.flush(WAIT).unwrap();
    assert_eq!(
        stored(&server, "sensor-1"),
        (1600, 1600, expected_sum(0, 1600))
    );
    // Timestamps and values arrive intact, in order.
    let rows = sql(
        &server,
        "SELECT seq, temp FROM env WHERE device = 'sensor-1' ORDER BY time LIMIT 3 OFFSET 1100",
    );
    assert_eq!(rows[0]["seq"], json!(1100.0));
    assert_eq!(rows[0]["temp"], json!(20.0 + (1100 % 7) as f64));
    assert_eq!(rows[2]["seq"], json!(1102.0));
    dev.close();
}

#[test]
fn commands_twin_and_methods_through_the_sdk() {
    let (_tmp, data) = temp_data_dir();
    let buffers = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start(&data, port, &[]);
    let key = key_of(&server.create_device("hvac-1", "hvac"));
    // A command queued before the device first connects is delivered when it does.
    let r = server.post_json(
        "/api/v1/devices/hvac-1/commands",
        &json!({"name": "reboot", "payload": {"delay": 5}, "ttl": "1h"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let first = r.json()["id"].as_str().unwrap().to_owned();
    let r = server.send(
        "PATCH",
        "/api/v1/devices/hvac-1/twin/desired",
        Some(br#"{"temp": 21, "fan": {"speed": 3}}"#),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let (desired_tx, desired_rx) = mpsc::channel();
    let dev = DeviceBuilder::new(DeviceConfig::new(
        "hvac-1",
        "127.0.0.1",
        port,
        &key,
        buffers.path().join("hvac-1"),
    ))
    .on_command(|c| match c.name.as_str() {
        "reboot" => CommandOutcome::Completed(json!({"rebooted_after": c.payload["delay"]})),
        other => CommandOutcome::Rejected(json!(format!("unknown command {other}"))),
    })
    .on_desired(move |u| {
        let _ = desired_tx.send(u.clone());
    })
    .on_method(|name, body| MethodResponse {
        status: 200,
        payload: json!({"method": name, "echo": body}),
    })
    .connect()
    .unwrap();

    // Twin: the full desired document first, then a patch.
    let u = desired_rx.recv_timeout(WAIT).unwrap();
    assert!(u.full);
    assert_eq!(u.desired, json!({"temp": 21, "fan": {"speed": 3}}));
    let r = server.send(
        "PATCH",
        "/api/v1/devices/hvac-1/twin/desired",
        Some(br#"{"fan": {"speed": 4}, "temp": null}"#),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let u = desired_rx.recv_timeout(WAIT).unwrap();
    assert!(!u.full);
    assert_eq!(u.version, 2);
    assert_eq!(u.desired, json!({"fan": {"speed": 4}}));
    assert_eq!(dev.desired(), json!({"fan": {"speed": 4}}));
    dev.report(&json!({"fan": {"speed": 4}, "firmware": "1.2"}))
        .unwrap();
    let twin = poll(|| {
        let t = server.get("/api/v1/devices/hvac-1/twin").json();
        (t["reported"]["firmware"] == json!("1.2")).then_some(t)
    });
    assert_eq!(twin["reported"]["fan"], json!({"speed": 4}));

    // Commands: the queued one and a live one, acknowledged with the handler's verdicts.
    let r = server.post_json(
        "/api/v1/devices/hvac-1/commands",
        &json!({"name": "selfdestruct"}),
    );
    let second = r.json()["id"].as_str().unwrap().to_owned();
    for (cid, status, result) in [
        (&first, "completed", json!({"rebooted_after": 5})),
        (&second, "rejected", json!("unknown command selfdestruct")),
    ] {
        let c = poll(|| {
            let c = server
                .get(&format!("/api/v1/devices/hvac-1/commands/{cid}"))
                .json();
            (c["status"] == json!(status)).then_some(c)
        });
        assert_eq!(c["result"], result);
    }

    // A direct method.
    let r = server.post(
        "/api/v1/devices/hvac-1/methods/move?timeout=20s",
        br#"{"x": 1}"#,
        &[("Content-Type", "application/json")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"status": 200, "payload": {"method": "move", "echo": {"x": 1}}})
    );
    let s = dev.stats();
    assert_eq!((s.commands, s.methods), (2, 1), "{s:?}");
    dev.close();
}

fn poll<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not reached in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn provisioning_then_connecting_and_querying_over_flight_sql() {
    let (_tmp, data) = temp_data_dir();
    let buffers = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start(&data, port, &["--flight-addr", "127.0.0.1:0"]);
    let r = server.post_json(
        "/api/v1/enrollments",
        &json!({"id": "line-7", "attributes": {"line": 7}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let group_key = r.json()["group_key"].as_str().unwrap().to_owned();

    // A key derived from the wrong group key is refused.
    let err = provision(&server.base(), "line-7", "sensor-a", "not-the-key", None).unwrap_err();
    assert!(
        matches!(&err, DeviceError::Provisioning(m) if m.contains("401")),
        "{err}"
    );

    let p = provision(&server.base(), "line-7", "sensor-a", &group_key, None).unwrap();
    assert!(p.created);
    assert_eq!(p.device_id, "sensor-a");
    assert_eq!(p.mqtt, format!("mqtt://127.0.0.1:{port}"));
    let again = provision(&server.base(), "line-7", "sensor-a", &group_key, None).unwrap();
    assert!(!again.created);

    let config = DeviceConfig::from_provisioned(&p, buffers.path().join("sensor-a")).unwrap();
    let dev = Device::connect(config).unwrap();
    publish_range(&dev, 0, 30, 10);
    dev.flush(WAIT).unwrap();
    dev.close();
    assert_eq!(stored(&server, "sensor-a"), (30, 30, expected_sum(0, 30)));

    // The application side reads it back as Arrow batches over Flight SQL.
    let flight = server.logged_port("Flight SQL listening");
    let token = server.create_token(&["read"]);
    let mut q = QueryClient::connect(&format!("http://127.0.0.1:{flight}"), &token).unwrap();
    let batches = q
        .query("SELECT count(*) AS n, sum(seq) AS s FROM env WHERE device = 'sensor-a'")
        .unwrap();
    let b = &batches[0];
    let n = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
    let s = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
    assert_eq!((n.value(0), s.value(0)), (30, expected_sum(0, 30)));
    assert!(
        q.query("SELECT * FROM no_such_table").is_err(),
        "a bad query is an error"
    );
    assert!(!n.is_null(0));
}

#[test]
fn mqtts_with_a_client_certificate() {
    let (_tmp, data) = temp_data_dir();
    let buffers = tempfile::tempdir().unwrap();
    let any = "127.0.0.1:0";
    let server = Server::start(&data, &["--mqtts-addr", any, "--mqtt-addr", any]);
    let mqtts = server.logged_port("MQTTS device endpoint listening");
    server.create_device("dev-a", "env");
    let r = server.post("/api/v1/devices/dev-a/certificate", br#"{"days": 30}"#, &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    let ca = std::fs::read(data.join("tls").join("ca.pem")).unwrap();
    let mut config = DeviceConfig::new("dev-a", "localhost", mqtts, "", buffers.path().join("a"));
    config.auth = Auth::Certificate {
        cert_pem: v["certificate"].as_str().unwrap().as_bytes().to_vec(),
        key_pem: v["private_key"].as_str().unwrap().as_bytes().to_vec(),
    };
    config.ca_pem = Some(ca);
    let dev = Device::connect(config).unwrap();
    publish_range(&dev, 0, 20, 5);
    dev.flush(WAIT).unwrap();
    dev.close();
    assert_eq!(stored(&server, "dev-a"), (20, 20, expected_sum(0, 20)));
}

#[test]
fn provisioning_with_a_certificate_then_connecting_over_mqtts() {
    let (_tmp, data) = temp_data_dir();
    let certs = tempfile::tempdir().unwrap();
    let buffers = tempfile::tempdir().unwrap();
    let any = "127.0.0.1:0";
    let args = ["--https-addr", any, "--mqtts-addr", any, "--no-mqtt"];
    let server = Server::start(&data, &args);
    let https = server.logged_port("HTTPS listening");
    let ca = make_ca(certs.path(), "factory-ca");
    let ca_pem = std::fs::read_to_string(&ca.0).unwrap();
    let r = server.post_json(
        "/api/v1/enrollments",
        &json!({"id": "line-9", "ca_cert": ca_pem}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let (cert, key) = make_device_cert(certs.path(), "meter-1", &ca);
    let (cert, key) = (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap());
    let trust = std::fs::read(data.join("tls").join("ca.pem")).unwrap();
    let base = format!("https://localhost:{https}");
    let p = provision_with_certificate(&base, "line-9", &trust, &cert, &key).unwrap();
    assert_eq!((p.device_id.as_str(), p.created), ("meter-1", true));
    assert_eq!(p.thumbprint.len(), 64);
    assert!(p.key.is_empty() && p.mqtt.is_empty(), "{p:?}");
    let again = provision_with_certificate(&base, "line-9", &trust, &cert, &key).unwrap();
    assert!(!again.created);
    let config =
        DeviceConfig::from_certificate(&p, &trust, &cert, &key, buffers.path().join("m")).unwrap();
    let dev = Device::connect(config).unwrap();
    publish_range(&dev, 0, 10, 5);
    dev.flush(WAIT).unwrap();
    dev.close();
    assert_eq!(stored(&server, "meter-1"), (10, 10, expected_sum(0, 10)));
    // Another CA's certificate does not provision through this group.
    let other = make_ca(certs.path(), "other-ca");
    let (cert2, key2) = make_device_cert(certs.path(), "meter-2", &other);
    let (cert2, key2) = (std::fs::read(cert2).unwrap(), std::fs::read(key2).unwrap());
    assert!(provision_with_certificate(&base, "line-9", &trust, &cert2, &key2).is_err());
}

/// A device offline for a simulated day (one reading a minute: 1,440 messages, each fdatasynced
/// into the buffer) delivers the whole backlog once the server is reachable; the figures are
/// printed (`--nocapture`), not asserted.
#[test]
fn a_day_of_backlog_is_delivered_after_the_reconnect() {
    let (_tmp, data) = temp_data_dir();
    let buffers = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start(&data, port, &[]);
    let key = key_of(&server.create_device("buoy-1", "env"));
    server.terminate();
    let config = DeviceConfig::new("buoy-1", "127.0.0.1", port, &key, buffers.path().join("b"));
    let dev = Device::connect(config).unwrap();
    let started = Instant::now();
    let base = 1_764_000_000_000_000_000i64;
    for s in 0..1440i64 {
        let p = Point::new("env")
            .field("seq", s as f64)
            .at(base + s * 60_000_000_000);
        dev.publish(&[p]).unwrap();
    }
    let buffered = started.elapsed();
    assert_eq!(dev.stats().buffer.pending_messages, 1440);
    server.restart();
    let sending = Instant::now();
    dev.flush(Duration::from_secs(300)).unwrap();
    let sent = sending.elapsed();
    eprintln!(
        "1440 messages: buffered (fdatasync each) in {buffered:?}, delivered after the restart in {sent:?} (including the reconnect)"
    );
    assert_eq!(
        stored(&server, "buoy-1"),
        (1440, 1440, expected_sum(0, 1440))
    );
    dev.close();
}

/// A message the server refuses (a string where the stream has a float: the server closes the
/// connection on it, every time) is given up after three connections in a row die on it, counted,
/// and does not block the messages behind it. Points without fields are refused up front.
#[test]
fn a_refused_message_does_not_block_the_buffer() {
    let (_tmp, data) = temp_data_dir();
    let buffers = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start(&data, port, &[]);
    let key = key_of(&server.create_device("probe-1", "env"));
    let config = DeviceConfig::new("probe-1", "127.0.0.1", port, &key, buffers.path().join("p"));
    let dev = Device::connect(config).unwrap();
    let at = |s: i64| 1_764_000_000_000_000_000i64 + s * 1_000_000_000;
    dev.publish(&[Point::new("env").field("seq", 0.0).at(at(0))])
        .unwrap();
    dev.flush(WAIT).unwrap();
    dev.publish(&[Point::new("env").field("seq", "zero").at(at(1))])
        .unwrap();
    dev.publish(&[Point::new("env").field("seq", 2.0).at(at(2))])
        .unwrap();
    dev.flush(WAIT).unwrap();
    let s = dev.stats();
    assert_eq!(
        (s.buffer.rejected_messages, s.buffer.rejected_points),
        (1, 1),
        "{s:?}"
    );
    assert_eq!(stored(&server, "probe-1"), (2, 2, 2.0));
    assert!(matches!(
        dev.publish(&[Point::new("env")]),
        Err(DeviceError::InvalidPoint(_))
    ));
    dev.close();
}
