//! Cloud-to-device commands against the real `strata` binary with real device clients:
//! paho-mqtt (Python, persistent sessions with clean_session=False) receives and acknowledges
//! commands queued while it was offline, across a kill -9 of the server; an expired command is
//! never delivered; a delivery in flight (sent, never PUBACKed) when the server is killed is sent
//! again after the restart; a command never taken is given up after `--command-max-attempts`
//! sends; the queue depth answers 429; HTTP devices long-poll and acknowledge.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_tests::{Server, basic, free_port, temp_data_dir};

/// A paho-mqtt device: connects with clean_session=False, optionally subscribes to its command
/// topics, prints `CONNACK <session present>`, `SUBACK` and `CMD <topic> <json>` per command,
/// acknowledges commands that want it with `argv[6]` (if given), and disconnects after
/// `argv[5]` seconds (once its acknowledgements are PUBACKed).
const DEVICE: &str = r#"
import json, sys, time
import paho.mqtt.client as mqtt
port, dev, key, mode, secs = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
ack_status = sys.argv[6] if len(sys.argv) > 6 else ""
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev, clean_session=False)
c.username_pw_set(dev, key)
acks = []
def on_connect(cl, ud, flags, rc, props):
    print("CONNACK", int(flags.session_present), flush=True)
    if mode == "subscribe":
        cl.subscribe(f"devices/{dev}/commands/#", qos=1)
def on_subscribe(cl, ud, mid, codes, props):
    print("SUBACK", flush=True)
def on_message(cl, ud, msg):
    body = json.loads(msg.payload)
    print("CMD", msg.topic, json.dumps(body), flush=True)
    if ack_status and body.get("ack"):
        acks.append(cl.publish(msg.topic + "/ack", json.dumps({"status": ack_status, "result": {"echo": body["name"]}}), qos=1))
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
time.sleep(secs)
for a in acks:
    a.wait_for_publish(5)
c.disconnect()
c.loop_stop()
"#;

fn run_device(
    dir: &Path,
    port: u16,
    dev: &str,
    key: &str,
    mode: &str,
    secs: f64,
    ack: &str,
) -> Vec<String> {
    let script = dir.join("device.py");
    std::fs::write(&script, DEVICE).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .args([&port.to_string(), dev, key, mode, &secs.to_string(), ack])
        .output()
        .expect("python3 with paho-mqtt is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Commands received by a device run: (command id, name).
fn received(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("CMD "))
        .map(|l| {
            let (_, body) = l.split_once(' ').unwrap();
            let v: Value = serde_json::from_str(body).unwrap();
            (
                v["id"].as_str().unwrap().to_owned(),
                v["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn start(dir: &Path, mqtt_port: u16, depth: &str) -> Server {
    let mqtt = format!("127.0.0.1:{mqtt_port}");
    Server::start(dir, &["--mqtt-addr", &mqtt, "--command-queue-depth", depth])
}

fn key_of(device: &Value) -> String {
    device["primary_key"]
        .as_str()
        .expect("primary key")
        .to_owned()
}

fn send(server: &Server, dev: &str, body: Value) -> Value {
    let r = server.post_json(&format!("/api/v1/devices/{dev}/commands"), &body);
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "queued", "{v}");
    v
}

fn status(server: &Server, dev: &str, cid: &str) -> Value {
    let r = server.get(&format!("/api/v1/devices/{dev}/commands/{cid}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn offline_device_gets_its_commands_after_a_kill9_and_never_an_expired_one() {
    let (tmp, data) = temp_data_dir();
    let port = free_port();
    let mut server = start(&data, port, "3");
    let key = key_of(&server.create_device("pump-1", "pump"));
    // A persistent session: subscribe once, then go offline.
    let lines = run_device(tmp.path(), port, "pump-1", &key, "subscribe", 1.0, "");
    assert!(lines.contains(&"CONNACK 0".to_owned()), "{lines:?}");
    assert!(lines.contains(&"SUBACK".to_owned()), "{lines:?}");
    let posted = Instant::now();
    let c1 = send(
        &server,
        "pump-1",
        json!({"name": "reboot", "payload": {"delay": 5}, "ttl": "1h"}),
    );
    let c2 = send(&server, "pump-1", json!({"name": "short", "ttl": "1s"}));
    let c3 = send(&server, "pump-1", json!({"name": "blink", "ack": false}));
    let full = server.post_json("/api/v1/devices/pump-1/commands", &json!({"name": "more"}));
    assert_eq!(full.status, 429, "{}", full.body);
    server.kill9();
    server.restart();
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(posted.elapsed()));
    // Reconnects without subscribing: the stored session still has the subscription.
    let lines = run_device(tmp.path(), port, "pump-1", &key, "none", 2.0, "completed");
    assert!(lines.contains(&"CONNACK 1".to_owned()), "{lines:?}");
    let got = received(&lines);
    let id = |c: &Value| c["id"].as_str().unwrap().to_owned();
    assert_eq!(
        got,
        [
            (id(&c1), "reboot".to_owned()),
            (id(&c3), "blink".to_owned())
        ],
        "in order, the expired one never: {lines:?}"
    );
    let s1 = status(&server, "pump-1", &id(&c1));
    assert_eq!(s1["status"], "completed", "{s1}");
    assert_eq!(s1["result"], json!({"echo": "reboot"}));
    assert_eq!(status(&server, "pump-1", &id(&c2))["status"], "expired");
    assert_eq!(status(&server, "pump-1", &id(&c3))["status"], "delivered");
    // Cancel: a finished command conflicts, an open one is never delivered.
    let r = server.delete(&format!("/api/v1/devices/pump-1/commands/{}", id(&c3)));
    assert_eq!(r.status, 409, "{}", r.body);
    let c4 = send(&server, "pump-1", json!({"name": "later"}));
    let r = server.delete(&format!("/api/v1/devices/pump-1/commands/{}", id(&c4)));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "cancelled");
    let lines = run_device(tmp.path(), port, "pump-1", &key, "none", 1.0, "completed");
    assert!(received(&lines).is_empty(), "{lines:?}");
    let list = server.get("/api/v1/devices/pump-1/commands").json();
    let states: Vec<&str> = list["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["completed", "expired", "delivered", "cancelled"]);
}

/// A minimal MQTT 3.1.1 client over a raw socket that never sends PUBACK.
struct RawClient(TcpStream);

fn mqtt_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

impl RawClient {
    fn connect(port: u16, dev: &str, key: &str) -> RawClient {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut body = Vec::new();
        mqtt_str(&mut body, "MQTT");
        body.extend_from_slice(&[4, 0xC0, 0, 30]); // user + password, clean session = 0
        for s in [dev, dev, key] {
            mqtt_str(&mut body, s);
        }
        s.write_all(&packet(0x10, &body)).unwrap();
        let mut c = RawClient(s);
        let (kind, _) = c.read_packet();
        assert_eq!(kind >> 4, 2, "CONNACK");
        c
    }

    fn subscribe(&mut self, filter: &str) {
        let mut body = vec![0, 1];
        mqtt_str(&mut body, filter);
        body.push(1);
        self.0.write_all(&packet(0x82, &body)).unwrap();
        let (kind, _) = self.read_packet();
        assert_eq!(kind >> 4, 9, "SUBACK");
    }

    fn read_packet(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 1];
        self.0.read_exact(&mut head).unwrap();
        let (mut len, mut mult) = (0usize, 1usize);
        loop {
            let mut b = [0u8; 1];
            self.0.read_exact(&mut b).unwrap();
            len += usize::from(b[0] & 0x7f) * mult;
            mult *= 128;
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        self.0.read_exact(&mut body).unwrap();
        (head[0], body)
    }

    /// The topic of the next PUBLISH.
    fn next_publish_topic(&mut self) -> String {
        loop {
            let (kind, body) = self.read_packet();
            if kind >> 4 == 3 {
                let n = usize::from(u16::from_be_bytes([body[0], body[1]]));
                return String::from_utf8(body[2..2 + n].to_vec()).unwrap();
            }
        }
    }
}

#[test]
fn a_delivery_in_flight_at_a_kill9_is_sent_again() {
    let (tmp, data) = temp_data_dir();
    let port = free_port();
    let mut server = start(&data, port, "50");
    let key = key_of(&server.create_device("valve-1", "valve"));
    let mut raw = RawClient::connect(port, "valve-1", &key);
    raw.subscribe("devices/valve-1/commands/#");
    let c = send(
        &server,
        "valve-1",
        json!({"name": "open", "payload": {"pct": 40}}),
    );
    let cid = c["id"].as_str().unwrap().to_owned();
    assert_eq!(
        raw.next_publish_topic(),
        format!("devices/valve-1/commands/{cid}")
    );
    // Sent but never PUBACKed: still queued.
    assert_eq!(status(&server, "valve-1", &cid)["status"], "queued");
    server.kill9();
    drop(raw);
    server.restart();
    let lines = run_device(tmp.path(), port, "valve-1", &key, "none", 1.5, "rejected");
    assert_eq!(
        received(&lines),
        [(cid.clone(), "open".to_owned())],
        "{lines:?}"
    );
    let s = status(&server, "valve-1", &cid);
    assert_eq!(s["status"], "rejected", "{s}");
    assert!(s["delivered_ns"].as_i64().is_some(), "{s}");
}

/// A device that takes a command and never acknowledges it (it crashes on it, say) is sent it at
/// most `--command-max-attempts` times, over MQTT and over the long-poll; then the command is
/// `undeliverable`, frees its place in the queue, and the commands behind it, which went out
/// with it on every connection, do not lose attempts to it.
#[test]
fn a_command_never_taken_is_given_up_after_max_attempts() {
    let (_tmp, data) = temp_data_dir();
    let port = free_port();
    let mqtt = format!("127.0.0.1:{port}");
    let server = Server::start(
        &data,
        &["--mqtt-addr", &mqtt, "--command-max-attempts", "2"],
    );
    let key = key_of(&server.create_device("valve-1", "valve"));
    let topic = |c: &Value| format!("devices/valve-1/commands/{}", c["id"].as_str().unwrap());
    let poison = send(&server, "valve-1", json!({"name": "poison"}));
    let after = send(&server, "valve-1", json!({"name": "after"}));
    let (pid, aid) = (
        poison["id"].as_str().unwrap(),
        after["id"].as_str().unwrap(),
    );
    // Two connections receive both and end without a PUBACK (the second resumes the stored
    // session, so it needs no SUBSCRIBE).
    for round in 0..2 {
        let mut raw = RawClient::connect(port, "valve-1", &key);
        if round == 0 {
            raw.subscribe("devices/valve-1/commands/#");
        }
        assert_eq!(raw.next_publish_topic(), topic(&poison));
        assert_eq!(raw.next_publish_topic(), topic(&after));
    }
    assert_eq!(status(&server, "valve-1", pid)["attempts"], 2);
    assert_eq!(status(&server, "valve-1", aid)["attempts"], 0);
    // The third connection gives the oldest up instead of sending it; the next goes out.
    let mut raw = RawClient::connect(port, "valve-1", &key);
    assert_eq!(raw.next_publish_topic(), topic(&after));
    let s = status(&server, "valve-1", pid);
    assert_eq!(
        (s["status"].as_str(), s["attempts"].as_u64()),
        (Some("undeliverable"), Some(2)),
        "{s}"
    );
    assert!(s["finished_ns"].as_i64().is_some(), "{s}");
    assert_eq!(status(&server, "valve-1", aid)["attempts"], 1);

    // Over HTTP: two hand-outs whose 1 s leases pass unacknowledged, then none.
    let meter = key_of(&server.create_device("meter-1", "meter"));
    let auth = basic("meter-1", &meter);
    let c = send(&server, "meter-1", json!({"name": "poison"}));
    let cid = c["id"].as_str().unwrap().to_owned();
    let poll = "/api/v1/devices/meter-1/commands/next?wait=5s&lease=1s";
    for _ in 0..2 {
        let r = server.get_as(poll, &auth);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["id"], cid.as_str());
    }
    let r = server.get_as(poll, &auth);
    assert_eq!(r.status, 204, "{}", r.body);
    let s = status(&server, "meter-1", &cid);
    assert_eq!(
        (s["status"].as_str(), s["attempts"].as_u64()),
        (Some("undeliverable"), Some(2)),
        "{s}"
    );
}

#[test]
fn http_devices_long_poll_and_acknowledge() {
    let (_tmp, data) = temp_data_dir();
    let server = start(&data, free_port(), "50");
    let key = key_of(&server.create_device("meter-1", "meter"));
    let other = key_of(&server.create_device("meter-2", "meter"));
    let auth = basic("meter-1", &key);
    // Nothing waiting: 204 after the wait.
    let r = server.get_as("/api/v1/devices/meter-1/commands/next?wait=200ms", &auth);
    assert_eq!(r.status, 204, "{}", r.body);
    // Another device may not poll this inbox; a device may not send commands.
    let r = server.get_as(
        "/api/v1/devices/meter-1/commands/next",
        &basic("meter-2", &other),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = server.send(
        "POST",
        "/api/v1/devices/meter-1/commands",
        Some(br#"{"name":"x"}"#),
        &[("Authorization", &auth)],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // HEAD (a health checker, `curl -I`) is refused and delivers nothing: the GET after it
    // still gets the command.
    let probe = send(&server, "meter-1", json!({"name": "probe", "ack": false}));
    let r = server.send(
        "HEAD",
        "/api/v1/devices/meter-1/commands/next",
        None,
        &[("Authorization", &auth)],
    );
    assert_eq!(r.status, 405);
    assert_eq!(
        status(&server, "meter-1", probe["id"].as_str().unwrap())["status"],
        "queued"
    );
    let r = server.get_as("/api/v1/devices/meter-1/commands/next", &auth);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["id"], probe["id"]);
    // A waiting poll is answered as soon as a command is posted.
    let url = server.url("/api/v1/devices/meter-1/commands/next?wait=20s");
    let poll_auth = auth.clone();
    let poll = std::thread::spawn(move || {
        let started = Instant::now();
        let r =
            strata_tests::try_send("GET", &url, None, &[("Authorization", &poll_auth)]).unwrap();
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let c = send(
        &server,
        "meter-1",
        json!({"name": "calibrate", "payload": {"zero": true}}),
    );
    let cid = c["id"].as_str().unwrap().to_owned();
    let (r, took) = poll.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(took < Duration::from_secs(10), "{took:?}");
    let got = r.json();
    assert_eq!(got["id"], cid.as_str());
    assert_eq!(got["payload"], json!({"zero": true}));
    assert_eq!(status(&server, "meter-1", &cid)["status"], "delivered");
    let ack_path = format!("/api/v1/devices/meter-1/commands/{cid}/ack");
    let ack = |body: &[u8]| server.send("POST", &ack_path, Some(body), &[("Authorization", &auth)]);
    assert_eq!(ack(br#"{"status":"done"}"#).status, 400);
    let r = ack(br#"{"status":"completed","result":{"offset":0.25}}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "completed");
    assert_eq!(ack(br#"{"status":"rejected"}"#).status, 409);
    // Delivered once: the next poll finds nothing.
    let r = server.get_as("/api/v1/devices/meter-1/commands/next", &auth);
    assert_eq!(r.status, 204, "{}", r.body);
    let r = server.post_json(
        "/api/v1/devices/meter-1/commands",
        &json!({"name": "x", "ttl": "soon"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = server.post_json("/api/v1/devices/nope/commands", &json!({"name": "x"}));
    assert_eq!(r.status, 404, "{}", r.body);
}

/// A long-poll whose device went away before the answer (its socket closed mid-wait) does not
/// lose the command: a command expecting an acknowledgement is handed out again once the poll's
/// `lease` passes unacknowledged, counted as another attempt; one acknowledged is not.
#[test]
fn a_command_whose_poll_answer_was_lost_is_handed_out_again() {
    let (_tmp, data) = temp_data_dir();
    let server = start(&data, free_port(), "50");
    let key = key_of(&server.create_device("meter-1", "meter"));
    let auth = basic("meter-1", &key);
    let r = server.get_as("/api/v1/devices/meter-1/commands/next?lease=0s", &auth);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("lease must be between"), "{}", r.body);

    // A device polls, then drops the connection while the server waits.
    let base = server.base();
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut sock = TcpStream::connect(host).unwrap();
    let request = format!(
        "GET /api/v1/devices/meter-1/commands/next?wait=5s&lease=1s HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\r\n"
    );
    sock.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let c = send(&server, "meter-1", json!({"name": "reboot"}));
    let cid = c["id"].as_str().unwrap().to_owned();
    drop(sock);

    // The next poll gets it, at the latest once the lost answer's lease has passed.
    let r = server.get_as(
        "/api/v1/devices/meter-1/commands/next?wait=10s&lease=1s",
        &auth,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["id"], cid.as_str());
    // Not acknowledged within its lease: handed out again, a further attempt.
    let r = server.get_as("/api/v1/devices/meter-1/commands/next?wait=10s", &auth);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["id"], cid.as_str());
    let stored = status(&server, "meter-1", &cid);
    assert_eq!(stored["status"], "delivered", "{stored}");
    assert!(stored["attempts"].as_u64().unwrap() >= 2, "{stored}");
    let ack_path = format!("/api/v1/devices/meter-1/commands/{cid}/ack");
    let r = server.send(
        "POST",
        &ack_path,
        Some(br#"{"status":"completed"}"#),
        &[("Authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = server.get_as("/api/v1/devices/meter-1/commands/next?wait=1500ms", &auth);
    assert_eq!(r.status, 204, "{}", r.body);
}

/// `POST /api/v1/commands`: one command for many devices in one call, a result per device
/// (unknown device 404, full queue 429), delivered to a persistent paho session like a
/// single-device command; a `read` token may not send.
#[test]
fn one_command_for_many_devices() {
    let (tmp, data) = temp_data_dir();
    let port = free_port();
    let server = start(&data, port, "1");
    let keys: Vec<String> = ["v-1", "v-2", "v-3"]
        .iter()
        .map(|d| key_of(&server.create_device(d, "valve")))
        .collect();
    let lines = run_device(tmp.path(), port, "v-1", &keys[0], "subscribe", 1.0, "");
    assert!(lines.contains(&"SUBACK".to_owned()), "{lines:?}");
    send(&server, "v-3", json!({"name": "busy"}));
    let body = json!({"devices": ["v-1", "v-2", "nope", "v-3"], "name": "close",
                      "payload": {"pct": 0}, "ttl": "10m"});
    let r = server.post_json("/api/v1/commands", &body);
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (v["queued"].as_i64(), v["failed"].as_i64()),
        (Some(2), Some(2)),
        "{v}"
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "queued");
    assert_eq!(results[2]["code"], 404, "{v}");
    assert_eq!(results[3]["code"], 429, "{v}");
    let c2 = results[1]["id"].as_str().unwrap();
    assert_eq!(status(&server, "v-2", c2)["status"], "queued");
    // The persistent session gets it on reconnect, like any command.
    let lines = run_device(tmp.path(), port, "v-1", &keys[0], "none", 2.0, "completed");
    let got = received(&lines);
    assert_eq!(got.len(), 1, "{lines:?}");
    assert_eq!(
        got[0],
        (
            results[0]["id"].as_str().unwrap().to_owned(),
            "close".to_owned()
        )
    );
    // Bad input and scopes.
    let r = server.post_json("/api/v1/commands", &json!({"devices": ["v-1"]}));
    assert_eq!(r.status, 400, "{}", r.body);
    let read = server.create_token(&["read"]);
    let r = server.send(
        "POST",
        "/api/v1/commands",
        Some(body.to_string().as_bytes()),
        &[("Authorization", &format!("Bearer {read}"))],
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

/// A SUBACK on a persistent session means the subscription is stored: killed right after it,
/// the server still has the session at the next connection (session present = 1).
#[test]
fn a_subscription_acknowledged_before_a_kill9_survives_it() {
    let (tmp, data) = temp_data_dir();
    let port = free_port();
    let mut server = start(&data, port, "50");
    let key = key_of(&server.create_device("valve-2", "valve"));
    let mut raw = RawClient::connect(port, "valve-2", &key);
    raw.subscribe("devices/valve-2/commands/#");
    server.kill9();
    drop(raw);
    server.restart();
    let lines = run_device(tmp.path(), port, "valve-2", &key, "none", 0.5, "");
    assert!(lines.contains(&"CONNACK 1".to_owned()), "{lines:?}");
}
