//! Enrollment groups with a CA certificate against the real `strata` binary. The CAs and device
//! certificates are made by the `openssl` command line (independent of the server's rcgen
//! code); devices provision themselves with `curl` over HTTPS with their client certificate and
//! on their first `mosquitto_pub` connect over MQTTS, then authenticate with the certificate
//! alone. Refused: a certificate from another group's CA (401), one from an unknown CA (TLS
//! handshake), a disabled group (403 / CONNACK), a group CA's certificate naming an existing
//! device registered otherwise. Repeats are idempotent and the CAs are trusted after a restart.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use strata_tests::{
    Server, make_ca, make_device_cert as make_device, sql_rows, temp_data_dir, thumbprint,
};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `curl` over HTTPS with a client certificate: `(exit code, status, body)`.
fn curl(
    ca: &Path,
    cert: &(PathBuf, PathBuf),
    method: &str,
    url: &str,
    body: &str,
) -> (i32, u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ])
        .args(["--cacert", s(ca), "--cert", s(&cert.0), "--key", s(&cert.1)])
        .args(["--data-binary", body, url])
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        out.status.code().unwrap_or(-1),
        code.parse().unwrap_or(0),
        body.to_owned(),
    )
}

/// `mosquitto_pub` over MQTTS with a client certificate and no password.
fn publish(port: u16, ca: &Path, cert: &(PathBuf, PathBuf), device: &str, v: u32) -> Output {
    Command::new("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port.to_string(),
            "-i",
            device,
            "-q",
            "1",
        ])
        .args(["--cafile", s(ca), "--cert", s(&cert.0), "--key", s(&cert.1)])
        .args([
            "-t",
            &format!("devices/{device}/telemetry/env"),
            "-m",
            &format!("{{\"v\": {v}}}"),
        ])
        .output()
        .expect("mosquitto_pub is installed")
}

fn create_group(server: &Server, id: &str, ca: &Path) -> Value {
    let pem = std::fs::read_to_string(ca).unwrap();
    let r = server.post_json(
        "/api/v1/enrollments",
        &json!({"id": id, "ca_cert": pem, "entity": "plant-1", "attributes": {"group": id}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

fn devices_under_plant(server: &Server) -> Value {
    server.get("/api/v1/entities/plant-1/devices").json()["devices"].clone()
}

#[test]
fn devices_provision_with_certificates_from_an_enrollment_ca() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    let (ca_a, ca_b, ca_c) = (
        make_ca(dir, "ca-a"),
        make_ca(dir, "ca-b"),
        make_ca(dir, "ca-c"),
    );
    let (tmp, data) = temp_data_dir();
    let any = "127.0.0.1:0";
    let args = ["--https-addr", any, "--mqtts-addr", any, "--mqtt-addr", any];
    let mut server = Server::start(&data, &args);
    let trust = data.join("tls/ca.pem");
    let r = server.post_json(
        "/api/v1/entities",
        &json!({"id": "plant-1", "kind": "site"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    // A certificate group: no group key; a CA that is not a certificate is refused.
    let group = create_group(&server, "cams-a", &ca_a.0);
    assert!(group.get("group_key").is_none(), "{group}");
    assert!(
        group["ca_cert"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    create_group(&server, "cams-b", &ca_b.0);
    let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let r = server.post_json("/api/v1/enrollments", &json!({"id": "bad", "ca_cert": bad}));
    assert_eq!(r.status, 400, "{}", r.body);

    // HTTPS provisioning with a certificate from cams-a's CA; a repeat is idempotent.
    let https = server.logged_port("HTTPS listening");
    let mqtts = server.logged_port("MQTTS device endpoint listening");
    let url = |group: &str| format!("https://localhost:{https}/api/v1/provision/{group}");
    let cam1 = make_device(dir, "cam-1", &ca_a);
    let (rc, status, body) = curl(&trust, &cam1, "POST", &url("cams-a"), "");
    assert_eq!((rc, status), (0, 201), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], "cam-1");
    assert_eq!(v["created"], true);
    assert_eq!(v["credentials"]["type"], "certificate");
    assert_eq!(v["credentials"]["thumbprint"], thumbprint(&cam1.0).as_str());
    assert!(v["credentials"].get("key").is_none(), "{v}");
    assert_eq!(v["device"]["attributes"]["group"], "cams-a");
    let (_, status, body) = curl(&trust, &cam1, "POST", &url("cams-a"), "");
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["created"],
        false
    );
    assert_eq!(
        server.get("/api/v1/enrollments/cams-a").json()["provisioned"],
        1
    );
    assert_eq!(devices_under_plant(&server), json!(["cam-1"]));

    // From then on the certificate alone authenticates it, over MQTTS and HTTPS.
    let out = publish(mqtts, &trust, &cam1, "cam-1", 1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let write = format!("https://localhost:{https}/api/v1/write?db=default");
    let (_, status, body) = curl(&trust, &cam1, "POST", &write, "env v=2");
    assert_eq!(status, 204, "{body}");

    // Another group's CA, an unknown CA, the wrong group.
    let cam2 = make_device(dir, "cam-2", &ca_b);
    let (_, status, body) = curl(&trust, &cam2, "POST", &url("cams-a"), "");
    assert_eq!(status, 401, "{body}");
    let (_, status, body) = curl(&trust, &cam1, "POST", &url("cams-b"), "");
    assert_eq!(status, 401, "{body}");
    let cam9 = make_device(dir, "cam-9", &ca_c);
    let (rc, status, _) = curl(&trust, &cam9, "POST", &url("cams-a"), "");
    assert!(rc != 0 && status == 0, "unknown CA: curl {rc} {status}");
    let out = publish(mqtts, &trust, &cam9, "cam-9", 1);
    assert!(!out.status.success(), "unknown CA accepted over MQTTS");
    assert_eq!(server.get("/api/v1/devices/cam-9").status, 404);

    // Zero-touch on the first MQTTS connect: registered, pinned, linked.
    let cam3 = make_device(dir, "cam-3", &ca_a);
    let out = publish(mqtts, &trust, &cam3, "cam-3", 3);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dev = server.get("/api/v1/devices/cam-3").json();
    assert_eq!(dev["thumbprint"], thumbprint(&cam3.0).as_str(), "{dev}");
    assert_eq!(devices_under_plant(&server), json!(["cam-1", "cam-3"]));

    // A group CA cannot speak for a device registered otherwise (no pinned certificate).
    server.create_device("dev-x", "m");
    let devx = make_device(dir, "dev-x", &ca_a);
    assert!(!publish(mqtts, &trust, &devx, "dev-x", 1).status.success());
    let (_, status, _) = curl(&trust, &devx, "POST", &write, "env v=9");
    assert_eq!(status, 401);
    let (_, status, body) = curl(&trust, &devx, "POST", &url("cams-a"), "");
    assert_eq!(status, 409, "{body}");

    // A disabled group refuses new devices; provisioned ones keep working.
    let r = server.post("/api/v1/enrollments/cams-a/disable", b"", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let cam4 = make_device(dir, "cam-4", &ca_a);
    let (_, status, body) = curl(&trust, &cam4, "POST", &url("cams-a"), "");
    assert_eq!(status, 403, "{body}");
    assert!(!publish(mqtts, &trust, &cam4, "cam-4", 1).status.success());
    assert_eq!(server.get("/api/v1/devices/cam-4").status, 404);
    assert!(publish(mqtts, &trust, &cam1, "cam-1", 4).status.success());

    // The group CAs are trusted again after a restart.
    assert_eq!(server.terminate(), 0);
    server.restart();
    let mqtts = server.logged_port("MQTTS device endpoint listening");
    let out = publish(mqtts, &trust, &cam3, "cam-3", 5);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = sql_rows(
        &server,
        "SELECT device, count(*) AS n FROM env GROUP BY device ORDER BY device",
    );
    assert_eq!(
        rows,
        vec![
            json!({"device": "cam-1", "n": 3}),
            json!({"device": "cam-3", "n": 2})
        ],
    );
    // Deleting the group removes its CA: its certificates no longer complete a handshake.
    assert_eq!(server.delete("/api/v1/enrollments/cams-a").status, 204);
    let mqtts = server.logged_port("MQTTS device endpoint listening");
    assert!(!publish(mqtts, &trust, &cam3, "cam-3", 6).status.success());
    drop(tmp);
}
