//! Zero-touch provisioning against the real `strata` binary: an enrollment group is created
//! (group key shown once), a device derives its key with Python's `hmac` (an independent
//! implementation of HMAC-SHA256) and provisions itself over HTTP, then publishes telemetry with
//! the real `mosquitto_pub`; repeats are idempotent; a wrong key, an unknown group, a disabled
//! group and an id registered with other credentials are refused.

use std::process::Command;

use serde_json::{Value, json};
use strata_tests::{Server, basic, mosquitto_pub, temp_data_dir};

/// Lowercase hex HMAC-SHA256 keyed with `key` over `data`, computed by Python.
fn hmac_hex(key: &str, data: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib, hmac, sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())",
            key,
            data,
        ])
        .output()
        .expect("python3 is installed");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn provision(server: &Server, group: &str, device: &str, key: &str) -> (u16, Value) {
    let r = server.send(
        "POST",
        &format!("/api/v1/provision/{group}"),
        None,
        &[("Authorization", &basic(device, key))],
    );
    let body = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

#[test]
fn devices_provision_themselves_from_an_enrollment_group() {
    let (_tmp, data) = temp_data_dir();
    let server = Server::start(&data, &["--mqtt-addr", "127.0.0.1:0"]);
    let mqtt_port = server.logged_port("MQTT device endpoint listening");
    let r = server.post_json(
        "/api/v1/entities",
        &json!({"id": "plant-1", "kind": "site"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = server.post_json(
        "/api/v1/enrollments",
        &json!({"id": "line-7", "attributes": {"line": 7}, "entity": "plant-1"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let group_key = r.json()["group_key"].as_str().unwrap().to_owned();
    let shown = server.get("/api/v1/enrollments/line-7");
    assert_eq!(shown.status, 200);
    assert!(
        !shown.body.contains(&group_key),
        "the key is shown once: {}",
        shown.body
    );

    let key = hmac_hex(&group_key, "sensor-a");
    let (status, body) = provision(&server, "line-7", "sensor-a", &key);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "sensor-a");
    assert_eq!(body["created"], true);
    assert_eq!(body["credentials"]["key"], key.as_str());
    assert_eq!(body["device"]["attributes"]["line"], 7);
    assert_eq!(
        body["endpoints"]["mqtt"],
        format!("mqtt://127.0.0.1:{mqtt_port}").as_str()
    );
    let under = server.get("/api/v1/entities/plant-1/devices").json();
    assert_eq!(under["devices"], json!(["sensor-a"]), "{under}");
    // The credentials work at once, over MQTT.
    let out = mosquitto_pub(
        mqtt_port,
        "sensor-a",
        &key,
        "devices/sensor-a/telemetry",
        r#"{"t": 1}"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A replayed request is idempotent.
    let (status, again) = provision(&server, "line-7", "sensor-a", &key);
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["created"], false);
    assert_eq!(
        server.get("/api/v1/enrollments/line-7").json()["provisioned"],
        1
    );

    // Refusals.
    let wrong = hmac_hex("not-the-group-key", "sensor-b");
    assert_eq!(provision(&server, "line-7", "sensor-b", &wrong).0, 401);
    assert_eq!(
        provision(&server, "line-7", "sensor-b", &key).0,
        401,
        "another device's key"
    );
    assert_eq!(provision(&server, "line-9", "sensor-b", &wrong).0, 401);
    let r = server.send("POST", "/api/v1/provision/line-7", None, &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    let key_b = hmac_hex(&group_key, "sensor-b");
    assert_eq!(
        server
            .post("/api/v1/enrollments/line-7/disable", b"", &[])
            .status,
        200
    );
    assert_eq!(provision(&server, "line-7", "sensor-b", &key_b).0, 403);
    assert_eq!(server.get("/api/v1/devices/sensor-b").status, 404);
    assert_eq!(
        server
            .post("/api/v1/enrollments/line-7/enable", b"", &[])
            .status,
        200
    );
    assert_eq!(provision(&server, "line-7", "sensor-b", &key_b).0, 201);
    server.create_device("sensor-c", "m");
    let key_c = hmac_hex(&group_key, "sensor-c");
    assert_eq!(provision(&server, "line-7", "sensor-c", &key_c).0, 409);
    // Enrollment management needs an admin token.
    let read = server.create_token(&["read"]);
    let r = server.send(
        "GET",
        "/api/v1/enrollments",
        None,
        &[("Authorization", &format!("Bearer {read}"))],
    );
    assert_eq!(r.status, 403, "{}", r.body);
}
