//! Black-box tests of the rules layer with the real binary and a real webhook receiver (Python's
//! `http.server`, `tests/python/webhook_receiver.py`, which checks the HMAC signature itself):
//! a query rule with `for` fires once and resolves once, its state survives a restart, alerts and
//! rules are SQL tables, the alert history is a stream; invalid rules are refused with nothing
//! stored; a kill -9 with an undelivered notification still delivers it after restart; a
//! receiver that keeps failing dead-letters the notification; a stream action writes a row.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_tests::{Server, WebhookReceiver, free_port, temp_data_dir, wait_until};

const SECRET: &str = "s3cret-key";

fn sql(server: &Server, text: &str) -> Vec<Value> {
    strata_tests::sql_rows(server, text)
}

fn write(server: &Server, lp: &str) {
    let r = server.write("default", lp);
    assert_eq!(r.status, 204, "{}", r.body);
}

/// Devices whose latest temperature is above 90.
const WARM_SQL: &str = "SELECT device, last(temperature, time) AS t FROM env GROUP BY device \
                        HAVING last(temperature, time) > 90";

fn warm_rule(port: u16, extra: Value) -> Value {
    let mut rule = json!({
        "name": "warm", "kind": "query", "every": "200ms", "sql": WARM_SQL,
        "labels": {"severity": "page"},
        "actions": [{"type": "webhook", "url": format!("http://127.0.0.1:{port}/hook"),
                     "secret": SECRET, "backoff": "100ms"}]
    });
    for (k, v) in extra.as_object().unwrap() {
        rule[k] = v.clone();
    }
    rule
}

fn alert_states(server: &Server) -> Vec<(String, String)> {
    sql(
        server,
        "SELECT device, state FROM alerts WHERE rule = 'warm' ORDER BY device",
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
fn query_rule_with_for_fires_once_survives_restart_and_resolves_once() {
    let (_tmp, dir) = temp_data_dir();
    let hooks = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &[]);
    let port = free_port();
    let rx = WebhookReceiver::start(port, SECRET, &hooks.path().join("hooks.jsonl"), 200);
    write(
        &server,
        "env,device=d1 temperature=95\nenv,device=d2 temperature=20",
    );

    let r = server.post_json("/api/v1/rules", &warm_rule(port, json!({"for": "1s"})));
    assert_eq!(r.status, 201, "{}", r.body);
    let stored = r.json();
    assert_eq!(stored["name"], "warm");
    assert_eq!(stored["for"], "1s");
    assert_eq!(stored["actions"][0]["secret"], "<redacted>");

    // `for`: pending first, firing (and notified) only after holding for 1 s.
    let created = Instant::now();
    wait_until("a pending alert", Duration::from_secs(5), || {
        (alert_states(&server) == [("d1".into(), "pending".into())]).then_some(())
    });
    let first = wait_until("the firing webhook", Duration::from_secs(10), || {
        rx.records().first().cloned()
    });
    assert!(created.elapsed() >= Duration::from_secs(1));
    let body = &first["body"];
    assert_eq!(first["signature_ok"], true, "{first}");
    assert_eq!(body["rule"], "warm");
    assert_eq!(body["state"], "firing");
    assert_eq!(body["key"], json!({"device": "d1"}));
    assert_eq!(body["values"]["t"], 95.0);
    assert_eq!(body["labels"]["severity"], "page");
    assert_eq!(first["id"], body["id"]);
    assert!(body["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(alert_states(&server), [("d1".into(), "firing".into())]);

    // Restart: the alert is still firing and is not notified again.
    let started_before = sql(&server, "SELECT started FROM alerts WHERE rule = 'warm'");
    assert_eq!(server.terminate(), 0);
    server.restart();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(alert_states(&server), [("d1".into(), "firing".into())]);
    assert_eq!(
        sql(&server, "SELECT started FROM alerts WHERE rule = 'warm'"),
        started_before
    );
    assert_eq!(rx.records().len(), 1, "{:?}", rx.records());

    // Cooler reading: resolved, notified once, with another idempotency key.
    write(&server, "env,device=d1 temperature=50");
    let resolved = wait_until("the resolved webhook", Duration::from_secs(10), || {
        rx.records().get(1).cloned()
    });
    assert_eq!(resolved["body"]["state"], "resolved");
    assert_eq!(resolved["signature_ok"], true);
    assert_ne!(resolved["id"], first["id"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(rx.records().len(), 2);
    let row = &sql(&server, "SELECT state, resolved, labels FROM alerts")[0];
    assert_eq!(row["state"], "resolved");
    assert!(row["resolved"].is_string());
    assert_eq!(row["labels"], r#"{"severity":"page"}"#);

    // The history stream holds both transitions, written through the engine.
    let history = wait_until("two history rows", Duration::from_secs(5), || {
        let rows = sql(
            &server,
            "SELECT device, rule, state, id FROM alert_history ORDER BY time",
        );
        (rows.len() == 2).then_some(rows)
    });
    assert_eq!(history[0]["state"], "firing");
    assert_eq!(history[0]["device"], "d1");
    assert_eq!(history[0]["rule"], "warm");
    assert_eq!(history[0]["id"], first["id"]);
    assert_eq!(history[1]["state"], "resolved");

    // Counters in the rules table and /metrics.
    let rules = sql(
        &server,
        "SELECT name, kind, enabled, evaluations, errors, delivered FROM rules",
    );
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["kind"], "query");
    assert!(rules[0]["evaluations"].as_u64().unwrap() > 0);
    assert_eq!(rules[0]["errors"], 0);
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("strata_rule_evaluations_total{rule=\"warm\"}"),
        "{metrics}"
    );
}

#[test]
fn invalid_rules_are_refused_and_operations_work() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    write(&server, "env,device=d1 temperature=95");
    let refused = [
        (
            json!({"name": "x", "kind": "query", "sql": "SELEC device"}),
            "sql",
        ),
        (
            json!({"name": "x", "kind": "query", "sql": "SELECT * FROM nope"}),
            "nope",
        ),
        (
            json!({"name": "x", "kind": "query", "sql": "SELECT nope FROM env"}),
            "nope",
        ),
        (
            json!({"name": "x", "kind": "query", "sql": "SELECT 1", "every": "5 minutes"}),
            "every",
        ),
        (
            json!({"name": "x", "kind": "query", "sql": "SELECT 1", "for": "-1s"}),
            "for",
        ),
        (
            json!({"name": "x y", "kind": "query", "sql": "SELECT 1"}),
            "name",
        ),
        (
            json!({"name": "x", "kind": "query", "sql": "SELECT 1", "colour": 1}),
            "colour",
        ),
        (
            json!({"name": "x", "kind": "query", "sql": "SELECT 1",
                "actions": [{"type": "webhook", "url": "ftp://h"}]}),
            "actions[0]",
        ),
        (
            json!({"name": "x", "kind": "query", "sql": "SELECT 1",
                "actions": [{"type": "mqtt", "topic": "t"}]}),
            "mqtt",
        ),
        (
            json!({"name": "x", "kind": "window", "stream": "env"}),
            "window",
        ),
    ];
    for (rule, needle) in refused {
        let r = server.post_json("/api/v1/rules", &rule);
        assert_eq!(r.status, 400, "{rule}: {}", r.body);
        assert!(r.body.contains(needle), "{rule}: {} lacks {needle}", r.body);
    }
    assert_eq!(server.get("/api/v1/rules").json()["items"], json!([]));
    assert_eq!(sql(&server, "SELECT count(*) AS n FROM rules")[0]["n"], 0);

    let rule =
        json!({"name": "q", "kind": "query", "every": "100ms", "sql": "SELECT device FROM env"});
    assert_eq!(server.post_json("/api/v1/rules", &rule).status, 201);
    assert_eq!(server.post_json("/api/v1/rules", &rule).status, 409);
    assert_eq!(server.get("/api/v1/rules/none").status, 404);

    // Only admin tokens manage rules.
    let read = server.create_token(&["read", "write"]);
    let r = server.get_as("/api/v1/rules", &strata_tests::bearer(&read));
    assert_eq!(r.status, 403, "{}", r.body);

    // Disable stops evaluation; enable resumes it.
    let evals = |s: &Server| {
        s.get("/api/v1/rules/q").json()["status"]["evaluations"]
            .as_u64()
            .unwrap()
    };
    wait_until("evaluations", Duration::from_secs(5), || {
        (evals(&server) > 0).then_some(())
    });
    let r = server.post("/api/v1/rules/q/disable", b"", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["enabled"], false);
    std::thread::sleep(Duration::from_millis(300));
    let frozen = evals(&server);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(evals(&server), frozen);
    assert_eq!(server.post("/api/v1/rules/q/enable", b"", &[]).status, 200);
    wait_until("evaluations again", Duration::from_secs(5), || {
        (evals(&server) > frozen).then_some(())
    });

    // PUT replaces (a bad definition leaves the old one), cannot rename; DELETE removes.
    let mut bad = rule.clone();
    bad["sql"] = json!("SELECT * FROM nope");
    assert_eq!(server.send_json("PUT", "/api/v1/rules/q", &bad).status, 400);
    let mut renamed = rule.clone();
    renamed["name"] = json!("other");
    assert_eq!(
        server.send_json("PUT", "/api/v1/rules/q", &renamed).status,
        400
    );
    let mut changed = rule.clone();
    changed["every"] = json!("1s");
    let r = server.send_json("PUT", "/api/v1/rules/q", &changed);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(server.get("/api/v1/rules/q").json()["every"], "1s");
    assert_eq!(server.delete("/api/v1/rules/q").status, 200);
    assert_eq!(server.get("/api/v1/rules/q").status, 404);
    assert_eq!(server.delete("/api/v1/rules/q").status, 404);
}

#[test]
fn kill9_with_an_undelivered_notification_still_delivers_it() {
    let (_tmp, dir) = temp_data_dir();
    let hooks = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &[]);
    let port = free_port(); // nobody listens yet: every attempt fails
    write(&server, "env,device=d1 temperature=95");
    let r = server.post_json("/api/v1/rules", &warm_rule(port, json!({})));
    assert_eq!(r.status, 201, "{}", r.body);
    let pending = wait_until("a failed attempt", Duration::from_secs(10), || {
        let items = server.get("/api/v1/rules/warm/outbox").json()["items"].clone();
        let first = items.as_array()?.first()?.clone();
        (first["attempts"].as_u64()? >= 1).then_some(first)
    });
    assert_eq!(pending["dead"], false);
    assert!(pending["last_error"].is_string());
    assert_eq!(pending["target"]["action"]["secret"], "<redacted>");

    server.kill9();
    let rx = WebhookReceiver::start(port, SECRET, &hooks.path().join("hooks.jsonl"), 200);
    server.restart();
    let got = wait_until(
        "the delivery after restart",
        Duration::from_secs(10),
        || rx.records().first().cloned(),
    );
    assert_eq!(got["body"]["state"], "firing");
    assert_eq!(got["body"]["id"], pending["notification"]["id"]);
    assert_eq!(got["signature_ok"], true);
    wait_until("an empty outbox", Duration::from_secs(5), || {
        let items = server.get("/api/v1/rules/warm/outbox").json()["items"].clone();
        (items == json!([])).then_some(())
    });
    // Still firing and deduplicated: one notification for one transition.
    std::thread::sleep(Duration::from_millis(600));
    assert!(rx.records().iter().all(|r| r["id"] == got["id"]));
    assert_eq!(alert_states(&server), [("d1".into(), "firing".into())]);
}

#[test]
fn failing_receiver_dead_letters_and_stream_action_writes_a_row() {
    let (_tmp, dir) = temp_data_dir();
    let hooks = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]);
    let port = free_port();
    let rx = WebhookReceiver::start(port, SECRET, &hooks.path().join("hooks.jsonl"), 500);
    write(&server, "env,device=d1 temperature=95");
    let mut rule = warm_rule(port, json!({}));
    rule["actions"][0]["max_attempts"] = json!(3);
    rule["actions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "stream", "stream": "hot_devices"}));
    let r = server.post_json("/api/v1/rules", &rule);
    assert_eq!(r.status, 201, "{}", r.body);

    let dead = wait_until("a dead letter", Duration::from_secs(10), || {
        let items = server.get("/api/v1/rules/warm/outbox?dead=true").json()["items"].clone();
        items.as_array()?.first().cloned()
    });
    assert_eq!(dead["attempts"], 3);
    assert!(
        dead["last_error"].as_str().unwrap().contains("500"),
        "{dead}"
    );
    let posts = rx.records();
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert!(posts.iter().all(|p| p["id"] == dead["notification"]["id"]));

    let rows = wait_until("the derived row", Duration::from_secs(5), || {
        let rows = sql(&server, "SELECT device, rule, state, t FROM hot_devices");
        (!rows.is_empty()).then_some(rows)
    });
    assert_eq!(rows[0]["device"], "d1");
    assert_eq!(rows[0]["state"], "firing");
    assert_eq!(rows[0]["t"], 95.0);
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("strata_rule_dead_letters_total{rule=\"warm\"} 1"),
        "{metrics}"
    );
}

/// Query rules that differ only in `HAVING` (evaluated together with one shared scan) each get
/// their own SQL's answer: per-device thresholds 90, 50 and 99 over the same aggregate.
#[test]
fn query_rules_sharing_a_scan_each_get_their_own_answer() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    write(
        &server,
        "env,device=d1 temperature=95\nenv,device=d2 temperature=60\nenv,device=d3 temperature=20",
    );
    for (name, threshold) in [("over90", 90), ("over50", 50), ("over99", 99)] {
        let sql = format!(
            "SELECT device, max(temperature) AS m FROM env GROUP BY device \
             HAVING max(temperature) > {threshold}"
        );
        let rule = json!({"name": name, "kind": "query", "every": "200ms", "sql": sql});
        let r = server.post_json("/api/v1/rules", &rule);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let firing = |server: &Server| {
        sql(
            server,
            "SELECT rule, device, state FROM alerts ORDER BY rule, device",
        )
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["rule"].as_str().unwrap(),
                r["device"].as_str().unwrap(),
                r["state"].as_str().unwrap()
            )
        })
        .collect::<Vec<_>>()
    };
    let expected = ["over50 d1 firing", "over50 d2 firing", "over90 d1 firing"];
    wait_until("each rule's alerts", Duration::from_secs(10), || {
        (firing(&server) == expected).then_some(())
    });
    // Evaluated again (still the same answers, nothing resolved), and no errors.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(firing(&server), expected);
    for r in sql(&server, "SELECT name, errors, evaluations FROM rules") {
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["evaluations"].as_u64().unwrap() >= 2, "{r}");
    }
}
