//! Device twins and direct methods against the real `strata` binary with real device clients
//! (paho-mqtt in Python, curl): a desired patch reaches a connected device live; a device offline
//! during desired changes and a kill -9 gets the full desired document when it reconnects
//! (deletions included); reported patches over MQTT and HTTP show in `GET .../twin` and in the SQL
//! `twins` table (with the delta, joined with `devices`); `If-Match` conflicts answer 412; size
//! and depth limits answer 413/400; direct methods round-trip, answer 404 for an offline device
//! and 504 on timeout.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_tests::{Server, basic, bearer, free_port, temp_data_dir};

/// A paho-mqtt device configured by one JSON argument: `device`, `key`, `port`, `clean`
/// (default false), `subscribe` (topic filters), `reported` (patches published on connect),
/// `secs` (how long it stays connected). Prints `CONNACK <session present>`, `SUBACK`,
/// `MSG <topic> <json>` per message; answers every method request except `hang` with
/// `{"status": 200, "payload": {"method": name, "echo": body}}`.
const DEVICE: &str = r#"
import json, sys, time
import paho.mqtt.client as mqtt
cfg = json.loads(sys.argv[1])
dev = cfg["device"]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev, clean_session=cfg.get("clean", False))
c.username_pw_set(dev, cfg["key"])
pubs = []
def on_connect(cl, ud, flags, rc, props):
    print("CONNACK", int(flags.session_present), flush=True)
    for t in cfg.get("subscribe", []):
        cl.subscribe(t, qos=1)
    for p in cfg.get("reported", []):
        pubs.append(cl.publish(f"devices/{dev}/twin/reported", json.dumps(p), qos=1))
def on_subscribe(cl, ud, mid, codes, props):
    print("SUBACK", flush=True)
def on_message(cl, ud, msg):
    body = json.loads(msg.payload)
    print("MSG", msg.topic, json.dumps(body, sort_keys=True), flush=True)
    parts = msg.topic.split("/")
    if parts[2] == "methods" and parts[3] != "hang":
        res = {"status": 200, "payload": {"method": parts[3], "echo": body}}
        pubs.append(cl.publish(f"devices/{dev}/methods/res/{parts[4]}", json.dumps(res), qos=1))
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("127.0.0.1", cfg["port"], keepalive=30)
c.loop_start()
time.sleep(cfg["secs"])
for p in pubs:
    p.wait_for_publish(5)
c.disconnect()
c.loop_stop()
print("DONE", flush=True)
"#;

/// A running device process and the lines it printed so far.
struct Device {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Device {
    fn spawn(dir: &Path, cfg: &Value) -> Device {
        let script = dir.join("twin_device.py");
        std::fs::write(&script, DEVICE).unwrap();
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(cfg.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with paho-mqtt is installed (.ci/run installs it)");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Device { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until some printed line satisfies `pred`.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.lines().iter().any(|l| pred(l)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("device never printed {what}: {:?}", self.lines());
    }

    /// Waits for the process to end; its lines.
    fn finish(mut self) -> Vec<String> {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "device failed: {:?}", self.lines());
        self.wait_for("DONE", |l| l == "DONE");
        self.lines()
    }

    /// The JSON bodies received on `topic`, in order.
    fn received(lines: &[String], topic: &str) -> Vec<Value> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("MSG "))
            .filter_map(|l| l.split_once(' '))
            .filter(|(t, _)| *t == topic)
            .map(|(_, body)| serde_json::from_str(body).unwrap())
            .collect()
    }
}

fn start(dir: &Path, mqtt_port: u16, extra: &[&str]) -> Server {
    let mqtt = format!("127.0.0.1:{mqtt_port}");
    let mut args = vec!["--mqtt-addr", mqtt.as_str()];
    args.extend_from_slice(extra);
    Server::start(dir, &args)
}

fn key_of(device: &Value) -> String {
    device["primary_key"].as_str().unwrap().to_owned()
}

fn patch(server: &Server, path: &str, body: &Value, if_match: Option<&str>) -> strata_tests::Resp {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(tag) = if_match {
        headers.push(("If-Match", tag));
    }
    server.send("PATCH", path, Some(body.to_string().as_bytes()), &headers)
}

fn desired(server: &Server, dev: &str, body: Value) -> Value {
    let r = patch(
        server,
        &format!("/api/v1/devices/{dev}/twin/desired"),
        &body,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn twin(server: &Server, dev: &str) -> Value {
    let r = server.get(&format!("/api/v1/devices/{dev}/twin"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
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

/// The twin's properties without `$version` / `$metadata`.
fn props(section: &Value) -> Value {
    let mut m = section.as_object().unwrap().clone();
    m.retain(|k, _| !k.starts_with('$'));
    Value::Object(m)
}

#[test]
fn desired_changes_reach_live_and_returning_devices_across_a_kill9() {
    let (tmp, data) = temp_data_dir();
    let port = free_port();
    let mut server = start(&data, port, &[]);
    let key = key_of(&server.create_device("hvac-1", "hvac"));
    let topic = "devices/hvac-1/twin/desired";
    desired(&server, "hvac-1", json!({"temp": 21, "fan": {"speed": 2}}));
    // Live: the full document on subscribe, then each patch with its $version.
    let cfg = json!({"device": "hvac-1", "key": key, "port": port, "secs": 2.5,
        "subscribe": [topic], "reported": [{"temp": 19, "fan": {"speed": 2}}]});
    let dev = Device::spawn(tmp.path(), &cfg);
    dev.wait_for("the full document", |l| l.starts_with("MSG "));
    desired(&server, "hvac-1", json!({"fan": {"speed": 3}}));
    desired(&server, "hvac-1", json!({"mode": "eco"}));
    let lines = dev.finish();
    assert_eq!(
        Device::received(&lines, topic),
        [
            json!({"$version": 1, "temp": 21, "fan": {"speed": 2}}),
            json!({"$version": 2, "fan": {"speed": 3}}),
            json!({"$version": 3, "mode": "eco"}),
        ],
        "{lines:?}"
    );
    // The reported patch published over MQTT is stored, and the delta is what differs.
    let t = twin(&server, "hvac-1");
    assert_eq!(
        props(&t["reported"]),
        json!({"temp": 19, "fan": {"speed": 2}})
    );
    assert_eq!(t["reported"]["$version"], 1);
    assert_eq!(t["reported"]["$metadata"]["temp"]["$lastUpdatedVersion"], 1);
    let rows = sql(
        &server,
        "SELECT t.device, d.model, t.delta, t.desired_version, t.reported_version \
         FROM twins t JOIN devices d ON t.device = d.id WHERE t.device = 'hvac-1'",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    let delta: Value = serde_json::from_str(rows[0]["delta"].as_str().unwrap()).unwrap();
    assert_eq!(
        delta,
        json!({"temp": 21, "fan": {"speed": 3}, "mode": "eco"})
    );
    assert_eq!(rows[0]["model"], "hvac");
    assert_eq!(
        (&rows[0]["desired_version"], &rows[0]["reported_version"]),
        (&json!(3), &json!(1))
    );
    // Offline: changes (a deletion among them), then kill -9.
    desired(
        &server,
        "hvac-1",
        json!({"temp": null, "fan": {"speed": 4}}),
    );
    desired(&server, "hvac-1", json!({"target": 22.5}));
    let before = twin(&server, "hvac-1");
    server.kill9();
    server.restart();
    assert_eq!(twin(&server, "hvac-1"), before, "the twin survives kill -9");
    // The persistent session resumes without subscribing again: the full document comes first.
    let cfg = json!({"device": "hvac-1", "key": key, "port": port, "secs": 1.5});
    let dev = Device::spawn(tmp.path(), &cfg);
    dev.wait_for("the full document", |l| l.starts_with("MSG "));
    desired(&server, "hvac-1", json!({"mode": "boost"}));
    let lines = dev.finish();
    assert!(lines.contains(&"CONNACK 1".to_owned()), "{lines:?}");
    assert_eq!(
        Device::received(&lines, topic),
        [
            json!({"$version": 5, "fan": {"speed": 4}, "mode": "eco", "target": 22.5}),
            json!({"$version": 6, "mode": "boost"}),
        ],
        "{lines:?}"
    );
    // A clean session that subscribes gets the full document too.
    let cfg = json!({"device": "hvac-1", "key": key, "port": port, "secs": 1.0,
        "clean": true, "subscribe": ["devices/hvac-1/twin/#"]});
    let lines = Device::spawn(tmp.path(), &cfg).finish();
    assert_eq!(
        Device::received(&lines, topic),
        [json!({"$version": 6, "fan": {"speed": 4}, "mode": "boost", "target": 22.5})],
        "{lines:?}"
    );
}

#[test]
fn etags_limits_and_http_devices() {
    let (_tmp, data) = temp_data_dir();
    let server = start(
        &data,
        free_port(),
        &["--twin-max-bytes", "200", "--twin-max-depth", "3"],
    );
    let key = key_of(&server.create_device("meter-1", "meter"));
    let other = key_of(&server.create_device("meter-2", "meter"));
    let path = "/api/v1/devices/meter-1/twin/desired";
    // The ETag header (read with curl) names the state; a stale one is refused with 412.
    let out = Command::new("curl")
        .args(["-si", "-H", &format!("Authorization: {}", server.auth())])
        .arg(server.url("/api/v1/devices/meter-1/twin"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.contains("etag: \"0.0\""), "{head}");
    let r = patch(&server, path, &json!({"rate": 5}), Some("\"0.0\""));
    assert_eq!(r.status, 200, "{}", r.body);
    let etag = r.json()["etag"].as_str().unwrap().to_owned();
    assert_eq!(etag, "\"1.0\"");
    let r = patch(&server, path, &json!({"rate": 6}), Some("\"0.0\""));
    assert_eq!(r.status, 412, "{}", r.body);
    assert!(r.error().contains("\"1.0\""), "{}", r.body);
    let r = patch(&server, path, &json!({"rate": 6}), Some(&etag));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = patch(&server, path, &json!({"unit": "kWh"}), Some("*"));
    assert_eq!(r.status, 200, "{}", r.body);
    // Limits and bad patches: clear errors, nothing changed.
    let big = json!({"blob": "x".repeat(300)});
    let r = patch(&server, path, &big, None);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        r.error().contains("above the limit of 200 bytes"),
        "{}",
        r.body
    );
    let r = patch(&server, path, &json!({"a": {"b": {"c": {"d": 1}}}}), None);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.error().contains("4 levels deep"), "{}", r.body);
    for bad in [json!([1, 2]), json!({"$version": 9}), json!(7)] {
        let r = patch(&server, path, &bad, None);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let r = server.send("PATCH", path, Some(b"{not json"), &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    let t = twin(&server, "meter-1");
    assert_eq!(t["etag"], "\"3.0\"");
    assert_eq!(props(&t["desired"]), json!({"rate": 6, "unit": "kWh"}));
    // HTTP devices: read their own twin, write reported, never desired nor another's twin.
    let auth = basic("meter-1", &key);
    let r = server.get_as("/api/v1/devices/meter-1/twin", &auth);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        props(&r.json()["desired"]),
        json!({"rate": 6, "unit": "kWh"})
    );
    let r = server.get_as("/api/v1/devices/meter-1/twin", &basic("meter-2", &other));
    assert_eq!(r.status, 403, "{}", r.body);
    let reported = "/api/v1/devices/meter-1/twin/reported";
    let as_device = |p: &str, body: &[u8]| {
        server.send(
            "PATCH",
            p,
            Some(body),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
        )
    };
    let r = as_device(reported, br#"{"rate": 6, "firmware": "1.2"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["reported"]["$version"], 1);
    let r = as_device(path, br#"{"rate": 1}"#);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = server.send(
        "PATCH",
        "/api/v1/devices/meter-2/twin/reported",
        Some(b"{\"x\": 1}"),
        &[("Authorization", &auth)],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // A read token reads twins but cannot change them.
    let read = bearer(&server.create_token(&["read"]));
    let r = server.get_as("/api/v1/devices/meter-1/twin", &read);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = server.send(
        "PATCH",
        path,
        Some(b"{\"x\": 1}"),
        &[("Authorization", &read)],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let rows = sql(
        &server,
        "SELECT device, delta, etag FROM twins ORDER BY device",
    );
    assert_eq!(rows.len(), 2, "every device has a twin: {rows:?}");
    assert_eq!(rows[0]["delta"], r#"{"unit":"kWh"}"#);
    assert_eq!(rows[0]["etag"], "\"3.1\"");
    assert_eq!(rows[1]["delta"], "{}");
    let r = server.get("/api/v1/devices/nope/twin");
    assert_eq!(r.status, 404, "{}", r.body);
}

#[test]
fn direct_methods_round_trip_and_fail_clearly() {
    let (tmp, data) = temp_data_dir();
    let port = free_port();
    let server = start(&data, port, &[]);
    let key = key_of(&server.create_device("robot-1", "robot"));
    server.create_device("robot-2", "robot");
    let call = |dev: &str, name: &str, query: &str, body: &Value| {
        server.post(
            &format!("/api/v1/devices/{dev}/methods/{name}{query}"),
            body.to_string().as_bytes(),
            &[("Content-Type", "application/json")],
        )
    };
    // Not connected (and unknown devices): 404.
    let r = call("robot-1", "reboot", "", &json!({}));
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.error().contains("not connected"), "{}", r.body);
    assert_eq!(call("nope", "reboot", "", &json!({})).status, 404);
    let cfg = json!({"device": "robot-1", "key": key, "port": port, "secs": 6.0,
        "clean": true, "subscribe": ["devices/robot-1/methods/#"]});
    let dev = Device::spawn(tmp.path(), &cfg);
    dev.wait_for("SUBACK", |l| l == "SUBACK");
    let r = call("robot-1", "move", "?timeout=5s", &json!({"x": 1, "y": 2}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"status": 200, "payload": {"method": "move", "echo": {"x": 1, "y": 2}}})
    );
    // No answer within the timeout: 504, and not much later.
    let started = Instant::now();
    let r = call("robot-1", "hang", "?timeout=1s", &json!(null));
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Bad calls.
    assert_eq!(call("robot-1", "res", "", &json!({})).status, 400);
    assert_eq!(
        call("robot-1", "move", "?timeout=10m", &json!({})).status,
        400
    );
    assert_eq!(
        call("robot-1", "move", "?timeout=soon", &json!({})).status,
        400
    );
    let r = server.post(
        "/api/v1/devices/robot-1/methods/move",
        b"{}",
        &[("Authorization", &basic("robot-1", &key))],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // Another round trip on the same connection still works after the timeout.
    let r = call("robot-1", "stop", "", &json!("now"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["payload"]["echo"], "now");
    let lines = dev.finish();
    let requests: Vec<&String> = lines.iter().filter(|l| l.starts_with("MSG ")).collect();
    assert_eq!(requests.len(), 3, "move, hang, stop once each: {lines:?}");
    // Request ids are 128-bit random hex.
    for l in requests {
        let topic = l.split(' ').nth(1).unwrap();
        let rid = topic.rsplit('/').next().unwrap();
        assert!(
            rid.len() == 32 && rid.bytes().all(|b| b.is_ascii_hexdigit()),
            "{topic}"
        );
    }
}
