//! TLS with real clients against the `strata` binary: `curl` over HTTPS trusting the generated
//! development CA (and failing without it), `mosquitto_pub` over MQTTS with a device key, and
//! client-certificate (mTLS) device authentication on MQTTS and HTTPS with certificates issued
//! by the server (`POST /api/v1/devices/{id}/certificate`): the right device gets in without a
//! password, a certificate used under another client id, a certificate from a foreign CA, a
//! re-issued (superseded) certificate and a disabled device are refused. Plain listeners keep
//! working beside the TLS ones.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strata_tests::{Server, basic, bearer, temp_data_dir};

/// A server with plain HTTP (harness), HTTPS, plain MQTT and MQTTS, all on ports the server picks
/// itself (port 0, read back from its log, so parallel tests never race for a port).
struct TlsServer {
    _tmp: tempfile::TempDir,
    server: Server,
}

impl TlsServer {
    fn start(extra: &[&str]) -> TlsServer {
        let (tmp, data) = temp_data_dir();
        let any = "127.0.0.1:0";
        let mut args = vec!["--https-addr", any, "--mqtts-addr", any, "--mqtt-addr", any];
        args.extend_from_slice(extra);
        let server = Server::start(&data, &args);
        TlsServer { _tmp: tmp, server }
    }

    fn https(&self) -> u16 {
        self.server.logged_port("HTTPS listening")
    }

    fn mqtts(&self) -> u16 {
        self.server.logged_port("MQTTS device endpoint listening")
    }

    fn mqtt(&self) -> u16 {
        self.server.logged_port("MQTT device endpoint listening")
    }

    fn ca(&self) -> PathBuf {
        self.server.data_dir().join("tls").join("ca.pem")
    }

    fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https())
    }

    /// Issues a certificate for `device` and writes `DIR/device.pem`, `DIR/device.key`.
    fn issue(&self, device: &str, dir: &Path) -> (PathBuf, PathBuf, serde_json::Value) {
        let r = self.server.post(
            &format!("/api/v1/devices/{device}/certificate"),
            br#"{"days": 30}"#,
            &[],
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let v = r.json();
        let cert = dir.join(format!("{device}.pem"));
        let key = dir.join(format!("{device}.key"));
        std::fs::write(&cert, v["certificate"].as_str().unwrap()).unwrap();
        std::fs::write(&key, v["private_key"].as_str().unwrap()).unwrap();
        (cert, key, v)
    }
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is installed (.ci/run installs it)")
}

/// `(curl exit code, HTTP status, body)`.
fn curl_status(args: &[&str]) -> (i32, u16, String) {
    let out = curl(args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        body.to_owned(),
    )
}

fn mosquitto_pub(
    port: u16,
    tls: &[&str],
    id: &str,
    auth: &[&str],
    topic: &str,
    msg: &str,
) -> Output {
    Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &port.to_string(), "-i", id])
        .args(tls)
        .args(auth)
        .args(["-q", "1", "-t", topic, "-m", msg])
        .output()
        .expect("mosquitto_pub is installed (.ci/run installs mosquitto-clients)")
}

fn sql(server: &Server, query: &str) -> serde_json::Value {
    let r = server.post("/api/v1/query", query.as_bytes(), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn key_of(device: &serde_json::Value) -> String {
    device["primary_key"].as_str().expect("key").to_owned()
}

fn ok(out: &Output) -> bool {
    out.status.success()
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}; stdout {}; stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn https_with_the_development_ca() {
    let mut t = TlsServer::start(&[]);
    let ca = t.ca();
    let ca_str = ca.to_str().unwrap();
    let tls_dir = t.server.data_dir().join("tls");
    for secret in ["ca.key", "server.key"] {
        let mode = std::fs::metadata(tls_dir.join(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{secret}");
    }
    let logs = t.server.logs().join("\n");
    assert!(logs.contains(ca_str), "the CA path is logged: {logs}");

    let (rc, status, body) = curl_status(&["--cacert", ca_str, &t.https_url("/health")]);
    assert_eq!((rc, status), (0, 200), "{body}");
    // Without the CA the server certificate does not verify (curl exit 60).
    let (rc, _, _) = curl_status(&[&t.https_url("/health")]);
    assert_eq!(rc, 60, "curl must refuse the unknown issuer");

    // A line-protocol write over HTTPS, read back over HTTPS and over plain HTTP.
    let auth = format!("Authorization: {}", bearer(t.server.token()));
    let (rc, status, body) = curl_status(&[
        "--cacert",
        ca_str,
        "-H",
        &auth,
        "--data-binary",
        "cpu,host=h1 usage=42.5 1700000000000000000",
        &t.https_url("/api/v1/write?db=default"),
    ]);
    assert_eq!((rc, status), (0, 204), "{body}");
    let (rc, status, body) = curl_status(&[
        "--cacert",
        ca_str,
        "-H",
        &auth,
        "--data-binary",
        "SELECT host, usage FROM cpu",
        &t.https_url("/api/v1/query"),
    ]);
    assert_eq!((rc, status), (0, 200), "{body}");
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows, serde_json::json!([{"host": "h1", "usage": 42.5}]));
    assert_eq!(sql(&t.server, "SELECT usage FROM cpu")[0]["usage"], 42.5);
    // Credentials are still required over HTTPS.
    let (rc, status, body) = curl_status(&["--cacert", ca_str, &t.https_url("/api/v1/databases")]);
    assert_eq!((rc, status), (0, 401), "{body}");
    for _ in 0..5 {
        let (rc, status, body) = curl_status(&[
            "--cacert",
            ca_str,
            "--data-binary",
            "cpu usage=1",
            &t.https_url("/api/v1/write?db=default"),
        ]);
        assert_eq!(
            (rc, status),
            (0, 401),
            "a refused write answers 401: {body}"
        );
    }

    // The CA and server certificate are reused by a restart.
    let ca_before = std::fs::read(&ca).unwrap();
    let server_before = std::fs::read(tls_dir.join("server.pem")).unwrap();
    assert_eq!(
        t.server.terminate(),
        0,
        "clean shutdown with HTTPS and MQTTS"
    );
    t.server.restart();
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before);
    assert_eq!(
        std::fs::read(tls_dir.join("server.pem")).unwrap(),
        server_before
    );
    let (rc, status, _) = curl_status(&["--cacert", ca_str, &t.https_url("/health")]);
    assert_eq!((rc, status), (0, 200));
}

#[test]
fn mqtts_with_a_device_key_and_plain_mqtt_beside_it() {
    let t = TlsServer::start(&[]);
    let ca = t.ca();
    let tls = ["--cafile", ca.to_str().unwrap()];
    let key = key_of(&t.server.create_device("sensor-1", "thermo"));
    let login = ["-u", "sensor-1", "-P", key.as_str()];
    let topic = "devices/sensor-1/telemetry/env";
    let out = mosquitto_pub(
        t.mqtts(),
        &tls,
        "sensor-1",
        &login,
        topic,
        r#"{"ts": 1700000000000, "temperature": 21.5}"#,
    );
    assert!(ok(&out), "{}", show(&out));
    let out = mosquitto_pub(
        t.mqtt(),
        &[],
        "sensor-1",
        &login,
        topic,
        r#"{"ts": 1700000001000, "temperature": 22.5}"#,
    );
    assert!(ok(&out), "plain MQTT still works: {}", show(&out));
    let rows = sql(
        &t.server,
        "SELECT device, temperature FROM env ORDER BY time",
    );
    assert_eq!(
        rows,
        serde_json::json!([
            {"device": "sensor-1", "temperature": 21.5},
            {"device": "sensor-1", "temperature": 22.5}
        ])
    );
    // A wrong key is refused over TLS as over TCP; an MQTTS client without the CA cannot connect.
    let bad = ["-u", "sensor-1", "-P", "not-the-key-0123456789"];
    assert!(!ok(&mosquitto_pub(
        t.mqtts(),
        &tls,
        "sensor-1",
        &bad,
        topic,
        "{\"t\": 1}"
    )));
    let empty = tempfile::tempdir().unwrap();
    let no_ca = ["--capath", empty.path().to_str().unwrap()];
    let no_ca = mosquitto_pub(t.mqtts(), &no_ca, "sensor-1", &login, topic, "{\"t\": 1}");
    assert!(!ok(&no_ca), "{}", show(&no_ca));
    assert_eq!(sql(&t.server, "SELECT count(*) AS n FROM env")[0]["n"], 2);
}

#[test]
fn client_certificates_authenticate_devices() {
    let t = TlsServer::start(&[]);
    let certs = tempfile::tempdir().unwrap();
    let ca = t.ca();
    let ca_str = ca.to_str().unwrap();
    t.server.create_device("dev-a", "thermo");
    t.server.create_device("dev-b", "thermo");
    let (cert, key, issued) = t.issue("dev-a", certs.path());
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let with_cert = ["--cafile", ca_str, "--cert", cert_s, "--key", key_s];
    // The thumbprint is pinned on the device.
    let dev = t.server.get("/api/v1/devices/dev-a").json();
    assert_eq!(dev["thumbprint"], issued["thumbprint"]);

    // MQTTS: the certificate alone authenticates dev-a.
    let out = mosquitto_pub(
        t.mqtts(),
        &with_cert,
        "dev-a",
        &[],
        "devices/dev-a/telemetry/env",
        r#"{"ts": 1700000000000, "v": 1.0}"#,
    );
    assert!(ok(&out), "{}", show(&out));
    // dev-a's certificate under client id dev-b is refused, even with dev-b's user name.
    let out = mosquitto_pub(
        t.mqtts(),
        &with_cert,
        "dev-b",
        &["-u", "dev-b"],
        "devices/dev-b/telemetry/env",
        r#"{"v": 2.0}"#,
    );
    assert!(!ok(&out), "{}", show(&out));

    // HTTPS: the certificate alone authenticates dev-a on the write endpoints.
    let https = ["--cacert", ca_str, "--cert", cert_s, "--key", key_s];
    let url = t.https_url("/api/v1/write?db=default");
    let (rc, status, body) = curl_status(
        &[
            &https[..],
            &["--data-binary", "env v=3 1700000002000000000", &url],
        ]
        .concat(),
    );
    assert_eq!((rc, status), (0, 204), "{body}");
    let other = t.https_url("/api/v1/devices/dev-b/telemetry/env");
    let (_, status, body) =
        curl_status(&[&https[..], &["--data-binary", "env v=4", &other]].concat());
    assert_eq!(status, 403, "{body}");
    // A device certificate gives no read access.
    let query = t.https_url("/api/v1/query");
    let (_, status, _) =
        curl_status(&[&https[..], &["--data-binary", "SELECT 1", &query]].concat());
    assert_eq!(status, 403);
    let rows = sql(&t.server, "SELECT device, v FROM env ORDER BY time");
    assert_eq!(
        rows,
        serde_json::json!([{"device": "dev-a", "v": 1.0}, {"device": "dev-a", "v": 3.0}])
    );

    // A certificate from a foreign CA (another server's development CA) is refused.
    let foreign = TlsServer::start(&[]);
    foreign.server.create_device("dev-a", "thermo");
    let fdir = tempfile::tempdir().unwrap();
    let (fcert, fkey, _) = foreign.issue("dev-a", fdir.path());
    let (fcert, fkey) = (fcert.to_str().unwrap(), fkey.to_str().unwrap());
    let out = mosquitto_pub(
        t.mqtts(),
        &["--cafile", ca_str, "--cert", fcert, "--key", fkey],
        "dev-a",
        &[],
        "devices/dev-a/telemetry/env",
        r#"{"v": 5.0}"#,
    );
    assert!(!ok(&out), "{}", show(&out));
    let (rc, status, _) = curl_status(&[
        "--cacert",
        ca_str,
        "--cert",
        fcert,
        "--key",
        fkey,
        "--data-binary",
        "env v=6",
        &url,
    ]);
    assert!(
        rc != 0 || status == 401,
        "foreign certificate accepted: {rc} {status}"
    );

    // Re-issuing supersedes the old certificate; disabling the device refuses the new one.
    // Re-issue with the CLI (`strata devices cert`): it writes the three files.
    let newer = tempfile::tempdir().unwrap();
    let cli = Command::new(strata_tests::strata_binary())
        .args(["devices", "cert", "dev-a", "--days", "10", "--out"])
        .arg(newer.path())
        .args(["--url", &t.server.base(), "--token", t.server.token()])
        .output()
        .unwrap();
    assert!(ok(&cli), "{}", show(&cli));
    let (cert2, key2) = (
        newer.path().join("dev-a.pem"),
        newer.path().join("dev-a.key"),
    );
    let mode = std::fs::metadata(&key2).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read(newer.path().join("ca.pem")).unwrap(),
        std::fs::read(&ca).unwrap()
    );
    let out = mosquitto_pub(
        t.mqtts(),
        &with_cert,
        "dev-a",
        &[],
        "devices/dev-a/telemetry/env",
        r#"{"v": 7.0}"#,
    );
    assert!(
        !ok(&out),
        "the superseded certificate still works: {}",
        show(&out)
    );
    let (_, status, _) = curl_status(&[&https[..], &["--data-binary", "env v=8", &url]].concat());
    assert_eq!(status, 401);
    let with_new = [
        "--cafile",
        ca_str,
        "--cert",
        cert2.to_str().unwrap(),
        "--key",
        key2.to_str().unwrap(),
    ];
    let out = mosquitto_pub(
        t.mqtts(),
        &with_new,
        "dev-a",
        &[],
        "devices/dev-a/telemetry/env",
        r#"{"ts": 1700000003000, "v": 9.0}"#,
    );
    assert!(ok(&out), "{}", show(&out));
    let r = t.server.post("/api/v1/devices/dev-a/disable", b"", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let out = mosquitto_pub(
        t.mqtts(),
        &with_new,
        "dev-a",
        &[],
        "devices/dev-a/telemetry/env",
        r#"{"v": 10.0}"#,
    );
    assert!(!ok(&out), "a disabled device connected: {}", show(&out));
    let rows = sql(&t.server, "SELECT v FROM env ORDER BY time");
    assert_eq!(
        rows,
        serde_json::json!([{"v": 1.0}, {"v": 3.0}, {"v": 9.0}])
    );

    // Unknown devices get no certificate.
    let r = t
        .server
        .post("/api/v1/devices/nobody/certificate", b"", &[]);
    assert_eq!(r.status, 404, "{}", r.body);
    // Only admins issue certificates.
    let device_key = key_of(&t.server.create_device("dev-c", "thermo"));
    let r = strata_tests::try_post(
        &t.server.url("/api/v1/devices/dev-c/certificate"),
        b"",
        &[("Authorization", &basic("dev-c", &device_key))],
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn operator_certificate_files() {
    // The first server's generated files play the operator's certificate for a second one.
    let first = TlsServer::start(&[]);
    let dir = first.server.data_dir().join("tls");
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let t = TlsServer::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(
        !t.server.data_dir().join("tls").exists(),
        "no development CA is generated"
    );
    let ca = first.ca();
    let (rc, status, body) =
        curl_status(&["--cacert", ca.to_str().unwrap(), &t.https_url("/health")]);
    assert_eq!((rc, status), (0, 200), "{body}");
    // No development CA in use: no device certificates.
    t.server.create_device("dev-a", "thermo");
    let r = t.server.post("/api/v1/devices/dev-a/certificate", b"", &[]);
    assert_eq!(r.status, 409, "{}", r.body);
    // A mismatched key is a clear startup error.
    let (_tmp, data) = temp_data_dir();
    let out = Command::new(strata_tests::strata_binary())
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--http-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--https-addr",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
        ])
        .args(["--tls-key", dir.join("ca.key").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TLS"), "{stderr}");
}

#[test]
fn fleet_loader_over_https() {
    use strata_client::fleet::FleetConfig;
    use strata_client::load::{LoadConfig, Source, run, tls_config};
    let t = TlsServer::start(&[]);
    let fleet = FleetConfig {
        trucks: 5,
        duration: std::time::Duration::from_secs(600),
        ..FleetConfig::default()
    };
    let mut cfg = LoadConfig {
        url: format!("https://localhost:{}", t.https()),
        db: "fleet".into(),
        write_path: "/api/v1/write".into(),
        connections: 2,
        batch: 200,
        progress: None,
        token: Some(t.server.token().to_owned()),
        tls: Some(tls_config(&t.ca()).unwrap()),
    };
    let report = run(&cfg, Source::Fleet(fleet.clone()));
    assert_eq!(report.errors, 0, "{report}");
    assert!(report.rows > 0);
    let stored: u64 = ["readings", "diagnostics"]
        .iter()
        .map(|s| {
            sql(&t.server, &format!("SELECT count(*) AS n FROM fleet.{s}"))[0]["n"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(stored, report.rows);
    // Trusting only another CA, every request fails verification.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("ca.pem");
    let foreign = TlsServer::start(&[]);
    std::fs::copy(foreign.ca(), &other_ca).unwrap();
    cfg.tls = Some(tls_config(&other_ca).unwrap());
    let report = run(&cfg, Source::Fleet(fleet));
    assert_eq!(report.rows, 0);
    assert!(report.errors > 0);
    assert!(tls_config(&other.path().join("missing.pem")).is_err());
}

/// Publishes `count` QoS 1 messages with paho-mqtt over TLS; prints `ACKED n` or `ERROR ...`.
/// Arguments: port, CA file, device id, key ("-" for none), cert file ("-"), key file ("-").
const PAHO_TLS: &str = r#"
import json, sys, threading
import paho.mqtt.client as mqtt
port, ca, dev, key, certfile, keyfile, count = sys.argv[1:8]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev)
if certfile != "-":
    c.tls_set(ca_certs=ca, certfile=certfile, keyfile=keyfile)
else:
    c.tls_set(ca_certs=ca)
if key != "-":
    c.username_pw_set(dev, key)
result, done = [], threading.Event()
def on_connect(client, userdata, flags, reason_code, properties):
    result.append(reason_code)
    done.set()
c.on_connect = on_connect
try:
    c.connect("localhost", int(port), keepalive=30)
except Exception as e:
    print("ERROR", type(e).__name__, e)
    sys.exit(0)
c.loop_start()
if not done.wait(10) or result[0].is_failure:
    print("REFUSED", result[0] if result else "timeout")
    c.loop_stop()
    sys.exit(0)
infos = [c.publish(f"devices/{dev}/telemetry/paho", json.dumps({"ts": 1700000000000 + i, "v": i}), qos=1)
         for i in range(int(count))]
acked = 0
for info in infos:
    try:
        info.wait_for_publish(timeout=10)
    except Exception as e:
        print("ERROR", type(e).__name__, e)
        break
    if not info.is_published():
        break
    acked += 1
c.loop_stop()
c.disconnect()
print("ACKED", acked)
"#;

fn paho(port: u16, ca: &Path, dev: &str, key: &str, cert: Option<(&Path, &Path)>) -> String {
    let (cert, cert_key) = match cert {
        Some((c, k)) => (c.to_str().unwrap(), k.to_str().unwrap()),
        None => ("-", "-"),
    };
    let out = Command::new("python3")
        .args(["-c", PAHO_TLS, &port.to_string(), ca.to_str().unwrap()])
        .args([dev, key, cert, cert_key, "50"])
        .output()
        .expect("python3 with paho-mqtt is installed (.ci/run installs it)");
    assert!(ok(&out), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn paho_over_tls_with_key_and_with_certificate() {
    let t = TlsServer::start(&[]);
    let ca = t.ca();
    let key = key_of(&t.server.create_device("paho-key", "thermo"));
    assert_eq!(paho(t.mqtts(), &ca, "paho-key", &key, None), "ACKED 50");
    t.server.create_device("paho-cert", "thermo");
    let dir = tempfile::tempdir().unwrap();
    let (cert, cert_key, _) = t.issue("paho-cert", dir.path());
    let cert_pair = Some((cert.as_path(), cert_key.as_path()));
    assert_eq!(
        paho(t.mqtts(), &ca, "paho-cert", "-", cert_pair),
        "ACKED 50"
    );
    // Neither key nor certificate: refused at CONNACK (paho then acknowledges nothing).
    let refused = paho(t.mqtts(), &ca, "paho-cert", "-", None);
    assert!(refused.starts_with("REFUSED"), "{refused}");
    let rows = sql(
        &t.server,
        "SELECT device, count(*) AS n FROM paho GROUP BY device ORDER BY device",
    );
    assert_eq!(
        rows,
        serde_json::json!([{"device": "paho-cert", "n": 50}, {"device": "paho-key", "n": 50}])
    );
}
