//! MQTT actions against a real Mosquitto broker (Debian `mosquitto`) and a real subscriber
//! (`mosquitto_sub`): a row rule's firing and resolved notifications arrive on the templated
//! topic with the webhook's JSON body; with the broker down the notification stays in the outbox
//! and is retried, and arrives (same id) once the broker is back; an action whose attempts run
//! out is dead-lettered; without `--rules-mqtt-broker` an mqtt action is refused with a 400.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use strata_tests::{Mosquitto, Server, free_port, temp_data_dir, wait_until};

/// `mosquitto_sub -v` on `alerts/#` at QoS 1, printing `topic payload` lines into a file.
struct Subscriber {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Subscriber {
    /// Starts and returns once a probe message went through (the subscription is in place).
    fn start(port: u16, out: &Path) -> Subscriber {
        let file = std::fs::File::create(out).unwrap();
        let child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-q", "1", "-v", "-t", "alerts/#"])
            .stdout(Stdio::from(file))
            .spawn()
            .expect("mosquitto_sub is installed");
        let sub = Subscriber {
            child,
            out: out.to_owned(),
            port,
        };
        // A probe that fails (a broker that accepted the harness's TCP connect but refused
        // mosquitto_pub's, as once seen on a loaded machine) is tried again until the deadline.
        wait_until("the subscription", Duration::from_secs(10), || {
            let out = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &sub.port.to_string()])
                .args(["-q", "1", "-t", "alerts/probe", "-m", "{}"])
                .output()
                .unwrap();
            if !out.status.success() {
                eprintln!("probe publish failed, retrying: {out:?}");
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
            sub.lines()
                .iter()
                .any(|(t, _)| t == "alerts/probe")
                .then_some(())
        });
        sub
    }

    /// (topic, payload) of every message but the probes.
    fn lines(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect()
    }

    /// Notifications received (JSON bodies), probes left out.
    fn notifications(&self) -> Vec<(String, Value)> {
        self.lines()
            .into_iter()
            .filter(|(t, _)| t != "alerts/probe")
            .map(|(t, p)| (t, serde_json::from_str(&p).expect("a JSON body")))
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(server: &Server, lp: &str) {
    let r = server.write("default", lp);
    assert_eq!(r.status, 204, "{}", r.body);
}

fn outbox(server: &Server, rule: &str) -> Vec<Value> {
    let r = server.get(&format!("/api/v1/rules/{rule}/outbox"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn mqtt_action_publishes_and_retries_until_the_broker_is_back() {
    let (_tmp, dir) = temp_data_dir();
    let subs = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = Mosquitto::start(port);
    let sub = Subscriber::start(port, &subs.path().join("sub1.txt"));
    let broker_addr = format!("127.0.0.1:{port}");
    let server = Server::start(&dir, &["--rules-mqtt-broker", &broker_addr]);
    write(&server, "env,device=d1 temperature=20");
    let rule = json!({"name": "hot", "stream": "env", "kind": "row",
        "condition": "temperature > 90", "labels": {"severity": "page"},
        "actions": [{"type": "mqtt", "topic": "alerts/{rule}/{device}", "backoff": "200ms"}]});
    let r = server.post_json("/api/v1/rules", &rule);
    assert_eq!(r.status, 201, "{}", r.body);
    // A rule whose mqtt action gives up after one attempt.
    let once = json!({"name": "once", "stream": "env", "kind": "row",
        "condition": "temperature < 0",
        "actions": [{"type": "mqtt", "topic": "alerts/once", "max_attempts": 1}]});
    assert_eq!(server.post_json("/api/v1/rules", &once).status, 201);

    write(&server, "env,device=d1 temperature=95.5");
    let (topic, body) = wait_until("the firing message", Duration::from_secs(10), || {
        sub.notifications().first().cloned()
    });
    assert_eq!(topic, "alerts/hot/d1");
    assert_eq!(body["rule"], "hot");
    assert_eq!(body["state"], "firing");
    assert_eq!(body["key"], json!({"device": "d1"}));
    assert_eq!(body["values"]["temperature"], 95.5);
    assert_eq!(body["labels"]["severity"], "page");
    assert!(body["id"].is_string() && body["time"].is_string(), "{body}");
    wait_until("an empty outbox", Duration::from_secs(5), || {
        outbox(&server, "hot").is_empty().then_some(())
    });

    // Broker down: the resolve stays in the outbox and is retried.
    drop(sub);
    drop(broker);
    write(&server, "env,device=d1 temperature=20");
    let pending = wait_until("two failed attempts", Duration::from_secs(10), || {
        let e = outbox(&server, "hot").first().cloned()?;
        (e["attempts"].as_u64()? >= 2).then_some(e)
    });
    assert_eq!(pending["dead"], false);
    assert!(
        pending["last_error"]
            .as_str()
            .unwrap()
            .contains("mqtt broker"),
        "{pending}"
    );
    write(&server, "env,device=d7 temperature=-5");
    let dead = wait_until("a dead letter", Duration::from_secs(10), || {
        let e = outbox(&server, "once").first().cloned()?;
        (e["dead"] == true).then_some(e)
    });
    assert_eq!(dead["attempts"], 1);

    // Broker up again: the same notification arrives.
    let _broker = Mosquitto::start(port);
    let sub = Subscriber::start(port, &subs.path().join("sub2.txt"));
    let (topic, body) = wait_until("the resolved message", Duration::from_secs(15), || {
        sub.notifications().first().cloned()
    });
    assert_eq!(topic, "alerts/hot/d1");
    assert_eq!(body["state"], "resolved");
    assert_eq!(body["id"], pending["notification"]["id"]);
    wait_until("an empty outbox", Duration::from_secs(5), || {
        outbox(&server, "hot").is_empty().then_some(())
    });
    // The dead letter stays dead.
    assert_eq!(outbox(&server, "once")[0]["dead"], true);
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("strata_rule_dead_letters_total{rule=\"once\"} 1"),
        "{metrics}"
    );
}

#[test]
fn mqtt_action_without_a_broker_is_refused() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    write(&server, "env,device=d1 temperature=20");
    for (action, needle) in [
        (
            json!({"type": "mqtt", "topic": "a/b"}),
            "--rules-mqtt-broker",
        ),
        (json!({"type": "mqtt", "topic": "a/#"}), "wildcards"),
        (json!({"type": "mqtt", "topic": ""}), "topic"),
    ] {
        let rule = json!({"name": "hot", "stream": "env", "kind": "row",
            "condition": "temperature > 90", "actions": [action]});
        let r = server.post_json("/api/v1/rules", &rule);
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains(needle), "{} lacks {needle}", r.body);
    }
    assert_eq!(server.get("/api/v1/rules").json()["items"], json!([]));
}
