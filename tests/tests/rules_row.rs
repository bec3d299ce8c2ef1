//! Black-box tests of row and window rules with the real binary: a device publishes over MQTT QoS 1 with the
//! real `mosquitto_pub`, a row rule's condition (DataFusion over each durable batch) fires and
//! resolves per device, and a real webhook receiver (Python's `http.server`,
//! `tests/python/webhook_receiver.py`, which checks the HMAC itself) gets each transition once.
//! Window rules (tumbling, hopping) are checked transition by transition against an independent
//! Python model (`tests/python/window_model.py`) on the same data with out-of-order and late rows,
//! also across a restart mid-window. Invalid row rules (bad SQL, unknown stream or column, a derived-stream cycle) are refused with
//! a 400 and nothing stored.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use strata_tests::{Server, WebhookReceiver, free_port, temp_data_dir, wait_until};

const SECRET: &str = "row-secret";

fn sql(server: &Server, text: &str) -> Vec<Value> {
    strata_tests::sql_rows(server, text)
}

/// QoS 1 publish of a JSON reading to the device's `env` telemetry topic.
fn publish(port: u16, id: &str, key: &str, temperature: f64) {
    let out = strata_tests::mosquitto_pub(
        port,
        id,
        key,
        &format!("devices/{id}/telemetry/env"),
        &format!(r#"{{"temperature": {temperature:.1}}}"#),
    );
    assert!(out.status.success(), "{out:?}");
}

fn hook_states(rx: &WebhookReceiver) -> Vec<(String, String)> {
    rx.records()
        .iter()
        .map(|r| {
            assert_eq!(r["signature_ok"], true, "{r}");
            let b = &r["body"];
            (
                b["key"]["device"].as_str().unwrap_or_default().to_string(),
                b["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn row_rule_on_mqtt_rows_fires_and_resolves_per_device_once() {
    let (_tmp, dir) = temp_data_dir();
    let hooks = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--mqtt-addr", "127.0.0.1:0"]);
    let mqtt = server.logged_port("MQTT device endpoint listening");
    let k1 = server.create_device("d1", "")["primary_key"]
        .as_str()
        .unwrap()
        .to_string();
    let k2 = server.create_device("d2", "")["primary_key"]
        .as_str()
        .unwrap()
        .to_string();
    publish(mqtt, "d1", &k1, 20.0);
    let port = free_port();
    let rx = WebhookReceiver::start(port, SECRET, &hooks.path().join("hooks.jsonl"), 200);
    let rule = json!({"name": "hot", "db": "default", "stream": "env", "kind": "row",
        "condition": "temperature > 90", "labels": {"severity": "page"},
        "actions": [{"type": "webhook", "url": format!("http://127.0.0.1:{port}/hook"),
                     "secret": SECRET, "backoff": "100ms"}]});
    let r = server.post_json("/api/v1/rules", &rule);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["kind"], "row");

    publish(mqtt, "d1", &k1, 95.5);
    publish(mqtt, "d2", &k2, 50.0);
    let got = wait_until("d1 firing", Duration::from_secs(10), || {
        let s = hook_states(&rx);
        (!s.is_empty()).then_some(s)
    });
    assert_eq!(got, vec![("d1".to_string(), "firing".to_string())]);
    let first = &rx.records()[0]["body"];
    assert_eq!(first["rule"], "hot");
    assert_eq!(first["values"]["temperature"], 95.5);
    assert_eq!(first["labels"]["severity"], "page");
    assert!(first["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(first["time"].as_str().unwrap().ends_with('Z'));

    // Still hot: no second notification; cooled down: resolved once; hot again: fires again.
    publish(mqtt, "d1", &k1, 97.0);
    publish(mqtt, "d1", &k1, 30.0);
    wait_until("d1 resolved", Duration::from_secs(10), || {
        (hook_states(&rx).len() >= 2).then_some(())
    });
    publish(mqtt, "d1", &k1, 99.0);
    wait_until("d1 firing again", Duration::from_secs(10), || {
        (hook_states(&rx).len() >= 3).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        hook_states(&rx),
        vec![
            ("d1".to_string(), "firing".to_string()),
            ("d1".to_string(), "resolved".to_string()),
            ("d1".to_string(), "firing".to_string()),
        ]
    );
    let alerts = sql(
        &server,
        "SELECT device, state FROM alerts WHERE rule = 'hot'",
    );
    assert_eq!(alerts, vec![json!({"device": "d1", "state": "firing"})]);
    let rules = sql(
        &server,
        "SELECT kind, evaluations, errors FROM rules WHERE name = 'hot'",
    );
    assert_eq!(rules[0]["kind"], "row");
    assert!(rules[0]["evaluations"].as_u64().unwrap() >= 5, "{rules:?}");
    assert_eq!(rules[0]["errors"], 0);
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("strata_rule_dropped_rows_total 0"),
        "{metrics}"
    );
    // Rows written over HTTP (another protocol) go through the same hook.
    let w = server.write("default", "env,device=d3 temperature=91.5");
    assert_eq!(w.status, 204, "{}", w.body);
    wait_until("d3 firing", Duration::from_secs(10), || {
        hook_states(&rx)
            .contains(&("d3".to_string(), "firing".to_string()))
            .then_some(())
    });
}

#[test]
fn invalid_row_rules_are_refused_and_nothing_is_stored() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let w = server.write(
        "default",
        "env,device=d1 temperature=95\nderived,device=d1 state=\"x\"",
    );
    assert_eq!(w.status, 204, "{}", w.body);
    let row = |cond: &str, stream: &str| json!({"name": "r", "kind": "row", "stream": stream, "condition": cond});
    let window = |select: &str, cond: &str, w: Value| {
        json!({"name": "w", "kind": "window", "stream": "env", "window": w,
               "group_by": ["device"], "select": select, "condition": cond})
    };
    let refused = [
        (row("temperature >", "env"), "condition"),
        (row("nosuch > 1", "env"), "nosuch"),
        (row("temperature > 1", "nostream"), "nostream"),
        (row("temperature + 1", "env"), "condition"),
        (
            json!({"name": "r", "kind": "row", "stream": "env"}),
            "condition",
        ),
        (
            window(
                "avg(nosuch) AS t",
                "t > 1",
                json!({"type": "tumbling", "size": "1m"}),
            ),
            "nosuch",
        ),
        (
            window(
                "avg(temperature) AS t",
                "u > 1",
                json!({"type": "tumbling", "size": "1m"}),
            ),
            "u",
        ),
        (
            window(
                "avg(temperature) AS t",
                "t > 1",
                json!({"type": "tumbling"}),
            ),
            "window.size",
        ),
        (
            window(
                "avg(temperature) AS t",
                "t > 1",
                json!({"type": "session", "gap": "1m"}),
            ),
            "max",
        ),
        (
            window(
                "avg(temperature) AS t",
                "t > 1",
                json!({"type": "hopping", "size": "1m", "hop": "2m"}),
            ),
            "window.hop",
        ),
    ];
    for (rule, needle) in refused {
        let r = server.post_json("/api/v1/rules", &rule);
        assert_eq!(r.status, 400, "{rule}: {}", r.body);
        assert!(r.body.contains(needle), "{rule}: {} lacks {needle}", r.body);
    }
    assert_eq!(server.get("/api/v1/rules").json()["items"], json!([]));

    // env -> derived is fine; derived -> env would close a cycle.
    let mut a = row("temperature > 90", "env");
    a["name"] = json!("a");
    a["actions"] = json!([{"type": "stream", "stream": "derived"}]);
    assert_eq!(server.post_json("/api/v1/rules", &a).status, 201);
    let mut b = row("state = 'firing'", "derived");
    b["name"] = json!("b");
    b["actions"] = json!([{"type": "stream", "stream": "env"}]);
    let r = server.post_json("/api/v1/rules", &b);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("cycle"), "{}", r.body);
    assert_eq!(server.get("/api/v1/rules/b").status, 404);
    let names = sql(&server, "SELECT name FROM rules ORDER BY name");
    assert_eq!(names, vec![json!({"name": "a"})]);
}

/// Deterministic readings of three devices over two minutes, one write per second of clock,
/// with out-of-order rows (within the lateness) and late rows (beyond it).
fn window_batches() -> Vec<Vec<(String, i64, f64)>> {
    let mut seed: u64 = 0x5eed;
    let mut next = move |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    let mut used = std::collections::HashSet::new();
    let mut batches = Vec::new();
    for step in 0..120i64 {
        let mut batch = Vec::new();
        for d in ["d1", "d2", "d3"] {
            // Mostly on time; sometimes a few seconds back (late or out of order).
            let back = match next(10) {
                0 => next(9) as i64,
                1 => 1,
                _ => 0,
            };
            let t = BASE_S + step - back;
            if !used.insert((d, t)) {
                continue;
            }
            let phase = (step / 20) % 2;
            let v = if phase == 1 { 60.0 } else { 40.0 } + next(200) as f64 / 10.0 - 10.0;
            batch.push((d.to_string(), t, v));
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
    }
    batches
}

const BASE_S: i64 = 1_700_000_000;

/// Three devices publishing in bursts (3 to 8 s on, 2 to 6 s off), each burst hot or cold, with
/// out-of-order and late rows: data with silences, for session windows.
fn bursty_batches() -> Vec<Vec<(String, i64, f64)>> {
    let mut seed: u64 = 0xb0b5;
    let mut next = move |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    let mut used = std::collections::HashSet::new();
    // Per device: (on, steps left in this phase, hot burst).
    let mut phase = [(false, 0u64, false); 3];
    let mut batches = Vec::new();
    for step in 0..120i64 {
        let mut batch = Vec::new();
        for (i, d) in ["d1", "d2", "d3"].iter().enumerate() {
            if phase[i].1 == 0 {
                let on = !phase[i].0;
                let len = if on { 3 + next(6) } else { 2 + next(5) };
                phase[i] = (on, len, next(2) == 0);
            }
            phase[i].1 -= 1;
            if !phase[i].0 {
                continue;
            }
            let back = match next(10) {
                0 => next(7) as i64,
                1 => 1,
                _ => 0,
            };
            let t = BASE_S + step - back;
            if !used.insert((*d, t)) {
                continue;
            }
            let v = if phase[i].2 { 60.0 } else { 40.0 } + next(100) as f64 / 10.0 - 5.0;
            batch.push((d.to_string(), t, v));
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
    }
    batches
}

/// What `tests/python/window_model.py` expects for the window `model` (its `size`, `hop`, or
/// `type` and its parameters) over `batches`: (transitions, dropped rows).
fn window_model(model: &Value, lateness: i64, batches: &[Vec<(String, i64, f64)>]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    let mut spec = json!({"lateness": lateness, "threshold": 50.0,
        "batches": batches.iter().map(|b| b.iter().map(|(d, t, v)| json!([d, t, v]))
            .collect::<Vec<_>>()).collect::<Vec<_>>()});
    for (k, v) in model.as_object().unwrap() {
        spec[k] = v.clone();
    }
    std::fs::write(&input, spec.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/window_model.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn write_batch(server: &Server, batch: &[(String, i64, f64)]) {
    let lp: Vec<String> = batch
        .iter()
        .map(|(d, t, v)| format!("env,device={d} temperature={v:.1} {t}"))
        .collect();
    let r = server.send(
        "POST",
        "/api/v1/write?db=default&precision=s",
        Some(lp.join("\n").as_bytes()),
        &[],
    );
    assert_eq!(r.status, 204, "{}", r.body);
}

/// Transitions recorded in the alert history: (device, state, time in s).
fn history(server: &Server, rule: &str) -> Vec<Value> {
    sql(
        server,
        &format!(
            "SELECT device, state, CAST(time AS BIGINT) / 1000000000 AS t FROM alert_history \
             WHERE rule = '{rule}' ORDER BY t, device"
        ),
    )
    .iter()
    .map(|r| json!([r["device"], r["state"], r["t"]]))
    .collect()
}

/// Runs a window rule over `batches` (restarting the server after `restart_after` batches, if
/// given) and checks every transition against the Python model (`model`: its parameters), and
/// the late rows dropped (there must be some when `expect_late`).
fn window_rule_matches_model(
    window: Value,
    model: Value,
    batches: Vec<Vec<(String, i64, f64)>>,
    restart_after: Option<usize>,
    expect_late: bool,
) {
    let (_tmp, dir) = temp_data_dir();
    let hooks = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &[]);
    let port = free_port();
    let rx = WebhookReceiver::start(port, SECRET, &hooks.path().join("hooks.jsonl"), 200);
    write_batch(&server, &[("d0".to_string(), BASE_S - 3600, 0.0)]);
    let mut rule = json!({"name": "avg-hot", "db": "default", "stream": "env", "kind": "window",
        "window": window, "group_by": ["device"], "select": "avg(temperature) AS t",
        "condition": "t > 50", "lateness": "3s",
        "actions": [{"type": "webhook", "url": format!("http://127.0.0.1:{port}/hook"),
                     "secret": SECRET, "backoff": "100ms"}]});
    if model["adjust"] == true {
        rule["late_policy"] = json!("adjust");
    }
    let r = server.post_json("/api/v1/rules", &rule);
    assert_eq!(r.status, 201, "{}", r.body);
    for (i, b) in batches.iter().enumerate() {
        write_batch(&server, b);
        if Some(i) == restart_after {
            // Let the worker evaluate every batch written (a batch durable but not evaluated
            // at shutdown is rebuilt into the windows, but a window it would have closed is
            // lost), then restart mid-window.
            let line = format!(
                "strata_rule_evaluations_total{{rule=\"avg-hot\"}} {}",
                i + 1
            );
            wait_until(&line, Duration::from_secs(60), || {
                server.get("/metrics").body.contains(&line).then_some(())
            });
            server.terminate();
            server.restart();
        }
    }
    let expect = window_model(&model, 3, &batches);
    let transitions = expect["transitions"].as_array().unwrap().clone();
    assert!(
        transitions.len() >= 4,
        "the data should fire and resolve: {expect}"
    );
    let got = wait_until("all transitions", Duration::from_secs(60), || {
        let h = history(&server, "avg-hot");
        (h.len() >= transitions.len()).then_some(h)
    });
    let mut want = transitions.clone();
    want.sort_by_key(|t| (t[2].as_i64(), t[0].as_str().map(str::to_string)));
    assert_eq!(got, want);
    let hooks_seen = wait_until("webhooks", Duration::from_secs(10), || {
        let s = hook_states(&rx);
        (s.len() >= want.len()).then_some(s)
    });
    assert_eq!(hooks_seen.len(), want.len());
    if restart_after.is_none() {
        let dropped = expect["dropped"].as_u64().unwrap();
        if expect_late {
            assert!(dropped > 0, "the data should have late rows: {expect}");
        }
        // The worker may still be on the last batches (they close no window).
        let line = format!("strata_rule_late_rows_dropped_total{{rule=\"avg-hot\"}} {dropped}");
        wait_until(&line, Duration::from_secs(10), || {
            server.get("/metrics").body.contains(&line).then_some(())
        });
    }
}

#[test]
fn tumbling_window_rule_matches_an_independent_model_with_late_rows() {
    window_rule_matches_model(
        json!({"type": "tumbling", "size": "10s"}),
        json!({"size": 10, "hop": 10}),
        window_batches(),
        None,
        true,
    );
}

/// `late_policy: adjust`: the rows the test above drops count at the watermark instead (none
/// dropped), transition by transition as the model computes it.
#[test]
fn tumbling_window_rule_adjusting_late_rows_matches_the_model() {
    let batches = window_batches();
    let dropping = window_model(&json!({"size": 10, "hop": 10}), 3, &batches);
    assert!(dropping["dropped"].as_u64().unwrap() > 0, "{dropping}");
    let model = json!({"size": 10, "hop": 10, "adjust": true});
    let adjusting = window_model(&model, 3, &batches);
    assert_eq!(adjusting["dropped"], 0, "{adjusting}");
    window_rule_matches_model(
        json!({"type": "tumbling", "size": "10s"}),
        model,
        batches,
        None,
        false,
    );
}

/// The same with hopping windows: an adjusted row joins every window open at the watermark.
#[test]
fn hopping_window_rule_adjusting_late_rows_matches_the_model() {
    let model = json!({"size": 10, "hop": 5, "adjust": true});
    let adjusting = window_model(&model, 3, &window_batches());
    assert_eq!(adjusting["dropped"], 0, "{adjusting}");
    window_rule_matches_model(
        json!({"type": "hopping", "size": "10s", "hop": "5s"}),
        model,
        window_batches(),
        None,
        false,
    );
}

#[test]
fn hopping_window_rule_matches_an_independent_model_with_late_rows() {
    window_rule_matches_model(
        json!({"type": "hopping", "size": "10s", "hop": "5s"}),
        json!({"size": 10, "hop": 5}),
        window_batches(),
        None,
        false,
    );
}

#[test]
fn window_rule_state_is_rebuilt_after_a_restart_mid_window() {
    window_rule_matches_model(
        json!({"type": "tumbling", "size": "10s"}),
        json!({"size": 10, "hop": 10}),
        window_batches(),
        Some(64),
        false,
    );
}

#[test]
fn sliding_window_rule_matches_an_independent_model_with_late_rows() {
    window_rule_matches_model(
        json!({"type": "sliding", "size": "10s"}),
        json!({"type": "sliding", "size": 10}),
        window_batches(),
        None,
        true,
    );
}

#[test]
fn session_window_rule_matches_an_independent_model_with_late_rows() {
    window_rule_matches_model(
        json!({"type": "session", "gap": "2s", "max": "15s"}),
        json!({"type": "session", "gap": 2, "max": 15}),
        bursty_batches(),
        None,
        true,
    );
}

#[test]
fn sliding_and_session_state_is_rebuilt_after_a_restart() {
    window_rule_matches_model(
        json!({"type": "sliding", "size": "10s"}),
        json!({"type": "sliding", "size": 10}),
        window_batches(),
        Some(64),
        false,
    );
    window_rule_matches_model(
        json!({"type": "session", "gap": "2s", "max": "15s"}),
        json!({"type": "session", "gap": 2, "max": 15}),
        bursty_batches(),
        Some(60),
        false,
    );
}

/// Seconds since the epoch of a whole-second `YYYY-MM-DDTHH:MM:SSZ`.
fn epoch_s(rfc3339: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| rfc3339[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

#[test]
fn dry_run_replays_history_without_acting() {
    let (_tmp, dir) = temp_data_dir();
    let hooks = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]);
    let port = free_port();
    let rx = WebhookReceiver::start(port, SECRET, &hooks.path().join("hooks.jsonl"), 200);
    let batches = window_batches();
    let mut all: Vec<(String, i64, f64)> = batches.concat();
    all.sort_by_key(|(d, t, _)| (*t, d.clone()));
    write_batch(&server, &all);
    let hook = json!([{"type": "webhook", "url": format!("http://127.0.0.1:{port}/hook"),
                       "secret": SECRET}]);
    let row = json!({"name": "hot", "stream": "env", "kind": "row",
        "condition": "temperature > 50", "actions": hook});
    assert_eq!(server.post_json("/api/v1/rules", &row).status, 201);
    let win = json!({"name": "avg-hot", "stream": "env", "kind": "window",
        "window": {"type": "tumbling", "size": "10s"}, "group_by": ["device"],
        "select": "avg(temperature) AS t", "condition": "t > 50", "lateness": "3s",
        "actions": hook});
    assert_eq!(server.post_json("/api/v1/rules", &win).status, 201);
    let range = json!({"start": "2023-11-14T22:13:20Z", "end": "2023-11-14T22:15:20Z"});
    assert_eq!(epoch_s("2023-11-14T22:13:20Z"), BASE_S);

    // Window rule: the same transitions as the model on the rows in time order.
    let r = server.post_json("/api/v1/rules/avg-hot/dry-run", &range);
    assert_eq!(r.status, 200, "{}", r.body);
    let got: Vec<Value> = r.json()["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            json!([
                n["key"]["device"],
                n["state"],
                epoch_s(n["time"].as_str().unwrap())
            ])
        })
        .filter(|t| t[2].as_i64().unwrap() <= BASE_S + 110)
        .collect();
    let model = window_model(&json!({"size": 10, "hop": 10}), 3, &[all.clone()]);
    assert_eq!(&got, model["transitions"].as_array().unwrap());
    assert!(got.len() >= 4, "{got:?}");
    let in_range = all.iter().filter(|(_, t, _)| *t >= BASE_S).count();
    assert_eq!(r.json()["rows"], in_range);

    // Row rule: one transition each time a device crosses 50, at the row's time.
    let r = server.post_json("/api/v1/rules/hot/dry-run", &range);
    assert_eq!(r.status, 200, "{}", r.body);
    let mut expect = Vec::new();
    let mut hot = std::collections::BTreeMap::new();
    for (d, t, v) in all.iter().filter(|(_, t, _)| *t >= BASE_S) {
        let now = *v > 50.0;
        let was = hot.insert(d.clone(), now).unwrap_or(false);
        if now != was {
            expect.push(json!([d, if now { "firing" } else { "resolved" }, t]));
        }
    }
    let mut got: Vec<Value> = r.json()["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            json!([
                n["key"]["device"],
                n["state"],
                epoch_s(n["time"].as_str().unwrap())
            ])
        })
        .collect();
    // Rows of one second come in any device order.
    let by_time = |v: &Value| (v[2].as_i64(), v[0].as_str().map(str::to_string));
    got.sort_by_key(by_time);
    expect.sort_by_key(by_time);
    assert_eq!(got, expect);

    // Nothing acted: no webhook, no alert, no history; bad ranges are 400s.
    std::thread::sleep(Duration::from_millis(300));
    assert!(rx.records().is_empty());
    assert!(sql(&server, "SELECT * FROM alerts").is_empty());
    let bad = json!({"start": "yesterday", "end": "2023-11-14T22:15:20Z"});
    let r = server.post_json("/api/v1/rules/hot/dry-run", &bad);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("start"), "{}", r.body);
    let r = server.post_json("/api/v1/rules/none/dry-run", &range);
    assert_eq!(r.status, 404, "{}", r.body);
}

#[test]
fn command_action_queues_a_command_in_the_device_inbox_when_firing() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    server.create_device("d1", "");
    let w = server.write("default", "env,device=d1 temperature=20");
    assert_eq!(w.status, 204, "{}", w.body);
    let rule = json!({"name": "cool", "stream": "env", "kind": "row",
        "condition": "temperature > 90",
        "actions": [{"type": "command", "name": "cool-down", "payload": {"fan": "max"}}]});
    let r = server.post_json("/api/v1/rules", &rule);
    assert_eq!(r.status, 201, "{}", r.body);
    let commands = || {
        let r = server.get("/api/v1/devices/d1/commands");
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        v["commands"].as_array().expect("commands").clone()
    };
    for (t, expect) in [(95.0, 1), (20.0, 1), (97.0, 2)] {
        let w = server.write("default", &format!("env,device=d1 temperature={t}"));
        assert_eq!(w.status, 204, "{}", w.body);
        wait_until("the command", Duration::from_secs(10), || {
            let n = commands().len();
            assert!(n <= expect, "{n} commands, expected {expect}");
            (n == expect).then_some(())
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(commands().len(), 2, "a resolve sends no command");
    let c = &commands()[0];
    assert_eq!(c["name"], "cool-down");
    assert_eq!(c["payload"], json!({"fan": "max"}));
}

/// Notification ids the receiver got, sorted.
fn hook_ids(rx: &WebhookReceiver, rule: &str) -> Vec<String> {
    let mut ids: Vec<String> = rx
        .records()
        .iter()
        .filter(|r| r["body"]["rule"] == rule)
        .map(|r| r["body"]["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn replay_acts_over_history_with_the_same_idempotency_keys() {
    let (_tmp, dir) = temp_data_dir();
    let hooks = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]);
    let port = free_port();
    let rx = WebhookReceiver::start(port, SECRET, &hooks.path().join("hooks.jsonl"), 200);
    let hook = json!([{"type": "webhook", "url": format!("http://127.0.0.1:{port}/hook"),
                       "secret": SECRET}]);
    write_batch(&server, &[("d0".to_string(), BASE_S - 3600, 0.0)]);
    // A window rule evaluated live: d1 hot in [0, 10), cold in [10, 20); d2 cold.
    let win = json!({"name": "avg-hot", "stream": "env", "kind": "window",
        "window": {"type": "tumbling", "size": "10s"}, "group_by": ["device"],
        "select": "avg(temperature) AS t", "condition": "t > 50", "lateness": "0s",
        "actions": hook});
    assert_eq!(server.post_json("/api/v1/rules", &win).status, 201);
    let rows: Vec<(String, i64, f64)> = (0..26)
        .flat_map(|s| {
            let d1 = if s < 10 { 70.0 } else { 30.0 };
            [
                ("d1".to_string(), BASE_S + s, d1),
                ("d2".to_string(), BASE_S + s, 20.0),
            ]
        })
        .collect();
    for chunk in rows.chunks(8) {
        write_batch(&server, chunk);
    }
    let live = wait_until("the live notifications", Duration::from_secs(10), || {
        let ids = hook_ids(&rx, "avg-hot");
        (ids.len() >= 2).then_some(ids)
    });
    assert_eq!(live.len(), 2);
    assert_eq!(
        history(&server, "avg-hot"),
        vec![
            json!(["d1", "firing", BASE_S + 10]),
            json!(["d1", "resolved", BASE_S + 20])
        ]
    );

    // Replaying the window rule notifies the same transitions with the same ids (receivers
    // dedupe them) and leaves the alert as it was.
    let from = json!({"start": "2023-11-14T22:13:00Z"});
    let r = server.post_json("/api/v1/rules/avg-hot/replay", &from);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["notifications"].as_array().unwrap().len(), 2);
    let again = wait_until(
        "the replayed notifications",
        Duration::from_secs(10),
        || {
            let ids = hook_ids(&rx, "avg-hot");
            (ids.len() >= 4).then_some(ids)
        },
    );
    let mut twice: Vec<String> = live.iter().flat_map(|i| [i.clone(), i.clone()]).collect();
    twice.sort();
    assert_eq!(again, twice);
    let state = sql(&server, "SELECT state FROM alerts WHERE rule = 'avg-hot'");
    assert_eq!(state, vec![json!({"state": "resolved"})]);

    // A row rule created after the rows arrived (say, a fixed rule) sees nothing live; a replay
    // acts on history: alerts, webhooks and history, with the rows' times; twice, same ids.
    let row = json!({"name": "hot", "stream": "env", "kind": "row",
        "condition": "temperature > 50", "actions": hook});
    assert_eq!(server.post_json("/api/v1/rules", &row).status, 201);
    std::thread::sleep(Duration::from_millis(300));
    assert!(hook_ids(&rx, "hot").is_empty());
    let r = server.post_json("/api/v1/rules/hot/replay", &from);
    assert_eq!(r.status, 200, "{}", r.body);
    let first = wait_until("the row rule's replay", Duration::from_secs(10), || {
        let ids = hook_ids(&rx, "hot");
        (ids.len() >= 2).then_some(ids)
    });
    assert_eq!(first.len(), 2);
    assert_eq!(
        history(&server, "hot"),
        vec![
            json!(["d1", "firing", BASE_S]),
            json!(["d1", "resolved", BASE_S + 10])
        ]
    );
    let state = sql(
        &server,
        "SELECT device, state FROM alerts WHERE rule = 'hot'",
    );
    assert_eq!(state, vec![json!({"device": "d1", "state": "resolved"})]);
    assert_eq!(
        server.post_json("/api/v1/rules/hot/replay", &from).status,
        200
    );
    let second = wait_until("the second replay", Duration::from_secs(10), || {
        let ids = hook_ids(&rx, "hot");
        (ids.len() >= 4).then_some(ids)
    });
    let mut twice: Vec<String> = first.iter().flat_map(|i| [i.clone(), i.clone()]).collect();
    twice.sort();
    assert_eq!(second, twice);

    // Bad requests.
    let bad = server.post_json("/api/v1/rules/hot/replay", &json!({"start": "yesterday"}));
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("start"), "{}", bad.body);
    let future = server.post_json(
        "/api/v1/rules/hot/replay",
        &json!({"start": "2999-01-01T00:00:00Z"}),
    );
    assert_eq!(future.status, 400, "{}", future.body);
    let none = server.post_json("/api/v1/rules/none/replay", &from);
    assert_eq!(none.status, 404, "{}", none.body);
}

fn create_device_with(server: &Server, id: &str, attributes: Value) {
    let r = server.post_json(
        "/api/v1/devices",
        &json!({"id": id, "model": "sensor", "attributes": attributes}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

fn write_lp(server: &Server, lp: &str) {
    let r = server.write("default", lp);
    assert_eq!(r.status, 204, "{}", r.body);
}

fn alert_rows(server: &Server, rule: &str) -> Vec<(String, String)> {
    sql(
        server,
        &format!("SELECT device, state FROM alerts WHERE rule = '{rule}' ORDER BY device"),
    )
    .iter()
    .map(|r| {
        (
            r["device"].as_str().unwrap().to_string(),
            r["state"].as_str().unwrap().to_string(),
        )
    })
    .collect()
}

#[test]
fn conditions_join_device_attributes_as_per_device_thresholds() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    create_device_with(&server, "d1", json!({"max_temp": 30, "site": "north"}));
    create_device_with(&server, "d2", json!({"max_temp": 50}));
    create_device_with(&server, "d3", json!({}));
    write_lp(&server, "env,device=d1 temperature=0");
    write_batch(&server, &[("d0".to_string(), BASE_S - 3600, 0.0)]);

    let row = json!({"name": "over-max", "stream": "env", "kind": "row",
        "condition": "temperature > devices.attributes['max_temp']"});
    let r = server.post_json("/api/v1/rules", &row);
    assert_eq!(r.status, 201, "{}", r.body);
    // 40 is over d1's 30, not over d2's 50; d3 has no max_temp (NULL: never matches).
    write_lp(
        &server,
        "env,device=d1 temperature=40\nenv,device=d2 temperature=40\nenv,device=d3 temperature=99",
    );
    wait_until("d1 firing", Duration::from_secs(10), || {
        (alert_rows(&server, "over-max") == [("d1".into(), "firing".into())]).then_some(())
    });
    write_lp(&server, "env,device=d2 temperature=60");
    wait_until("d2 firing", Duration::from_secs(10), || {
        let a = alert_rows(&server, "over-max");
        (a.len() == 2 && a[1] == ("d2".into(), "firing".into())).then_some(())
    });
    // A new threshold reaches the rule (within the 1 s cache) without touching the rule.
    let r = server.send_json(
        "PATCH",
        "/api/v1/devices/d2",
        &json!({"attributes": {"max_temp": 70}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    std::thread::sleep(Duration::from_millis(1200));
    write_lp(&server, "env,device=d2 temperature=65");
    wait_until("d2 resolved", Duration::from_secs(10), || {
        let a = alert_rows(&server, "over-max");
        (a.get(1) == Some(&("d2".into(), "resolved".into()))).then_some(())
    });
    assert_eq!(
        alert_rows(&server, "over-max")[0],
        ("d1".into(), "firing".into())
    );

    // Window rule: the average per device against its own threshold.
    let win = json!({"name": "avg-over-max", "stream": "env", "kind": "window",
        "window": {"type": "tumbling", "size": "10s"}, "group_by": ["device"],
        "select": "avg(temperature) AS t", "lateness": "0s",
        "condition": "t > devices.attributes['max_temp'] AND devices.attributes['site'] = 'north'"});
    let r = server.post_json("/api/v1/rules", &win);
    assert_eq!(r.status, 201, "{}", r.body);
    let mut rows = Vec::new();
    for s in 0..12 {
        rows.push(("d1".to_string(), BASE_S + s, 40.0));
        rows.push(("d2".to_string(), BASE_S + s, 45.0));
    }
    write_batch(&server, &rows);
    wait_until("the window transition", Duration::from_secs(10), || {
        (history(&server, "avg-over-max") == [json!(["d1", "firing", BASE_S + 10])]).then_some(())
    });

    // Dry run of the row rule over the stored rows joins the devices too.
    let range = json!({"start": "2023-11-14T22:13:00Z", "end": "2023-11-14T22:14:00Z"});
    let r = server.post_json("/api/v1/rules/over-max/dry-run", &range);
    assert_eq!(r.status, 200, "{}", r.body);
    let states: Vec<(Value, Value)> = r.json()["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["key"]["device"].clone(), n["state"].clone()))
        .collect();
    assert_eq!(states, vec![(json!("d1"), json!("firing"))]);

    // Refused: an unknown attribute key (the error lists the keys), no device in group_by.
    let mut bad = row.clone();
    bad["name"] = json!("bad");
    bad["condition"] = json!("temperature > devices.attributes['nope']");
    let r = server.post_json("/api/v1/rules", &bad);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("max_temp, site"), "{}", r.body);
    let mut bad = win.clone();
    bad["name"] = json!("bad");
    bad["group_by"] = json!([]);
    let r = server.post_json("/api/v1/rules", &bad);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("group_by"), "{}", r.body);
    assert_eq!(server.get("/api/v1/rules/bad").status, 404);
}

/// Changing only a window rule's condition keeps its open windows and watermark: the window
/// that was open across the update closes with every row written to it, before and after.
#[test]
fn updating_a_window_rule_condition_keeps_its_open_windows() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    write_batch(&server, &[("d0".to_string(), BASE_S - 3600, 0.0)]);
    let mut rule = json!({"name": "busy", "stream": "env", "kind": "window",
        "window": {"type": "tumbling", "size": "1m"}, "group_by": ["device"],
        "select": "count(*) AS c, avg(temperature) AS t", "condition": "c >= 5",
        "lateness": "5s"});
    let r = server.post_json("/api/v1/rules", &rule);
    assert_eq!(r.status, 201, "{}", r.body);
    // Window [BASE_S - 20, BASE_S + 40): three rows, the update, two more rows.
    let row = |t: i64| ("d1".to_string(), BASE_S + t, 20.0 + t as f64);
    write_batch(&server, &[row(1), row(2), row(3)]);
    rule["condition"] = json!("c >= 4");
    let r = server.send_json("PUT", "/api/v1/rules/busy", &rule);
    assert_eq!(r.status, 200, "{}", r.body);
    write_batch(&server, &[row(4), row(5)]);
    // A row 50 s in moves the watermark (45 s) past the window's end.
    write_batch(&server, &[row(50)]);
    let got = wait_until("the window closed", Duration::from_secs(10), || {
        let a = alert_rows(&server, "busy");
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(got, vec![("d1".to_string(), "firing".to_string())]);
    assert_eq!(
        history(&server, "busy"),
        vec![json!(["d1", "firing", BASE_S + 40])]
    );
    let c = sql(
        &server,
        "SELECT values FROM alerts WHERE rule = 'busy' AND device = 'd1'",
    );
    let values: Value = serde_json::from_str(c[0]["values"].as_str().unwrap()).unwrap();
    assert_eq!(values["c"].as_f64(), Some(5.0), "{c:?}");
}

/// `late_policy: adjust` across a restart: the rebuild replays the rows of a window that had
/// closed before the restart without moving them into the open window a second time.
#[test]
fn an_adjusting_window_rule_rebuilt_after_a_restart_counts_no_row_twice() {
    let (_tmp, dir) = temp_data_dir();
    let mut server = Server::start(&dir, &[]);
    write_batch(&server, &[("d0".to_string(), BASE_S - 3600, 0.0)]);
    let rule = json!({"name": "adj", "stream": "env", "kind": "window",
        "window": {"type": "tumbling", "size": "10s"}, "group_by": ["device"],
        "select": "avg(temperature) AS t, count(*) AS c", "condition": "t > 60",
        "lateness": "0s", "late_policy": "adjust"});
    let r = server.post_json("/api/v1/rules", &rule);
    assert_eq!(r.status, 201, "{}", r.body);
    let row = |t: i64, v: f64| ("d1".to_string(), BASE_S + t, v);
    // Window [0 s, 10 s): 10 and 10; the row at 12 s closes it (mean 10: nothing fires).
    write_batch(&server, &[row(1, 10.0), row(5, 10.0)]);
    write_batch(&server, &[row(12, 100.0)]);
    let line = "strata_rule_evaluations_total{rule=\"adj\"} 2";
    wait_until(line, Duration::from_secs(30), || {
        server.get("/metrics").body.contains(line).then_some(())
    });
    server.terminate();
    server.restart();
    // The row at 25 s closes [10 s, 20 s), which holds the row at 12 s alone: mean 100, fires.
    write_batch(&server, &[row(25, 0.0)]);
    let got = wait_until("the window closed", Duration::from_secs(10), || {
        let a = alert_rows(&server, "adj");
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(got, vec![("d1".to_string(), "firing".to_string())]);
    let c = sql(&server, "SELECT values FROM alerts WHERE rule = 'adj'");
    let values: Value = serde_json::from_str(c[0]["values"].as_str().unwrap()).unwrap();
    assert_eq!(values["c"].as_f64(), Some(1.0), "{c:?}");
    assert_eq!(values["t"].as_f64(), Some(100.0), "{c:?}");
}

/// The firing notification of an instance fails once and waits for its retry; the instance
/// resolves meanwhile. The receiver still gets "firing" before "resolved" (a later entry of the
/// same rule, instance and action waits for the earlier one), each once.
#[test]
fn a_resolved_notification_waits_for_the_firing_one_it_ends() {
    let (_tmp, dir) = temp_data_dir();
    let hooks = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]);
    let w = server.write("default", "env,device=d1 temperature=20");
    assert_eq!(w.status, 204, "{}", w.body);
    let port = free_port();
    let rule = json!({"name": "hot", "db": "default", "stream": "env", "kind": "row",
        "condition": "temperature > 90",
        "actions": [{"type": "webhook", "url": format!("http://127.0.0.1:{port}/hook"),
                     "secret": SECRET, "backoff": "3s"}]});
    let r = server.post_json("/api/v1/rules", &rule);
    assert_eq!(r.status, 201, "{}", r.body);
    // Nothing listens yet: the firing delivery fails and is retried in 3 s.
    let w = server.write("default", "env,device=d1 temperature=95");
    assert_eq!(w.status, 204, "{}", w.body);
    wait_until("a failed first attempt", Duration::from_secs(10), || {
        let items = server.get("/api/v1/rules/hot/outbox").json()["items"].clone();
        items
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["attempts"].as_u64() >= Some(1)))
            .then_some(())
    });
    let rx = WebhookReceiver::start(port, SECRET, &hooks.path().join("hooks.jsonl"), 200);
    let w = server.write("default", "env,device=d1 temperature=20");
    assert_eq!(w.status, 204, "{}", w.body);
    wait_until("both notifications", Duration::from_secs(15), || {
        (hook_states(&rx).len() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        hook_states(&rx),
        vec![
            ("d1".to_string(), "firing".to_string()),
            ("d1".to_string(), "resolved".to_string()),
        ]
    );
}

/// Webhook entries of rule `rule` in its outbox (history rows left out).
fn webhook_entries(server: &Server, rule: &str) -> Vec<Value> {
    let r = server.get(&format!("/api/v1/rules/{rule}/outbox"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["target"]["to"] == "action")
        .cloned()
        .collect()
}

/// A "black hole" webhook host (it accepts every connection and never answers) receives ten
/// notifications; another rule's webhook to a healthy receiver still gets its notification
/// within seconds, and the black hole's notifications stay in the outbox, the first with an
/// attempt counted (the host timed out and is paused), none lost nor dead.
///
/// With the former single delivery thread this fails: the ten black-hole entries are queued
/// first (lower sequence numbers), each costs the 5 s webhook timeout in turn, so the healthy
/// receiver's notification would come only after about 50 s, not within the 15 s allowed here.
#[test]
fn a_black_hole_webhook_host_does_not_delay_other_destinations() {
    let (_tmp, dir) = temp_data_dir();
    let hooks = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]);
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_port = hole.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // Keep every accepted socket open, reading nothing and answering nothing.
        let open: Vec<_> = hole.incoming().map_while(Result::ok).collect();
        drop(open);
    });
    let port = free_port();
    let rx = WebhookReceiver::start(port, SECRET, &hooks.path().join("hooks.jsonl"), 200);
    write_lp(
        &server,
        "env,device=d0 temperature=20\nother,device=x level=1",
    );
    let rule = |name: &str, stream: &str, condition: &str, url: String| {
        json!({"name": name, "db": "default", "stream": stream, "kind": "row",
            "condition": condition,
            "actions": [{"type": "webhook", "url": url, "secret": SECRET, "backoff": "60s"}]})
    };
    let hole_url = format!("http://127.0.0.1:{hole_port}/hook");
    let r = server.post_json(
        "/api/v1/rules",
        &rule("to-hole", "env", "temperature > 90", hole_url),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let healthy_url = format!("http://127.0.0.1:{port}/hook");
    let r = server.post_json(
        "/api/v1/rules",
        &rule("healthy", "other", "level > 5", healthy_url),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    let hot: Vec<String> = (0..10)
        .map(|i| format!("env,device=d{i} temperature=95"))
        .collect();
    write_lp(&server, &hot.join("\n"));
    wait_until("ten black-hole entries", Duration::from_secs(10), || {
        (webhook_entries(&server, "to-hole").len() == 10).then_some(())
    });
    let start = std::time::Instant::now();
    write_lp(&server, "other,device=x level=9");
    let got = wait_until(
        "the healthy receiver's notification",
        Duration::from_secs(15),
        || rx.records().first().cloned(),
    );
    let took = start.elapsed();
    assert_eq!(got["body"]["rule"], "healthy", "{got}");
    assert_eq!(got["body"]["state"], "firing", "{got}");
    assert_eq!(got["signature_ok"], true, "{got}");
    assert!(took < Duration::from_secs(15), "{took:?}");

    // The black hole timed out once (5 s) and is paused for the entry's 60 s backoff: its
    // notifications wait in the outbox, the first with its attempt counted.
    let entries = wait_until("a timed-out attempt", Duration::from_secs(15), || {
        let entries = webhook_entries(&server, "to-hole");
        entries
            .iter()
            .any(|e| e["attempts"].as_u64() >= Some(1))
            .then_some(entries)
    });
    assert_eq!(entries.len(), 10, "{entries:?}");
    assert!(entries.iter().all(|e| e["dead"] == false), "{entries:?}");
    let tried: Vec<&Value> = entries
        .iter()
        .filter(|e| e["attempts"].as_u64() >= Some(1))
        .collect();
    assert_eq!(
        tried.len(),
        1,
        "one probe while the host is paused: {entries:?}"
    );
    assert!(tried[0]["last_error"].is_string(), "{entries:?}");
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("strata_rule_outbox_destinations_paused 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_rule_delivery_failures_total{rule=\"to-hole\"} 1\n"),
        "{metrics}"
    );
    assert_eq!(rx.records().len(), 1, "{:?}", rx.records());
}
