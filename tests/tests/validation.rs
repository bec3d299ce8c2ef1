//! Validation of device telemetry against the device's model, through the real binary: a model
//! with a schema and policy is managed over `/api/v1/models`, and the same rules apply to the
//! HTTP device API and to MQTT (`mosquitto_pub`). `reject` refuses the message naming the field
//! and reason (HTTP 400; MQTT: no PUBACK, connection closed); `flag` stores it with the reason in
//! the `_invalid` field. Changing the model takes effect without restart (cache invalidation).

use serde_json::json;
use strata_tests::{Server, basic, rows, temp_data_dir};

fn model(policy: &str) -> serde_json::Value {
    json!({
        "name": "Thermometer",
        "validation": policy,
        "fields": [
            {"name": "temperature", "type": "float", "min": -40, "max": 85, "required": true},
            {"name": "battery", "type": "integer", "min": 0, "max": 100},
            {"name": "door", "type": "string"}
        ]
    })
}

fn http(s: &Server, id: &str, key: &str, body: &str) -> strata_tests::Resp {
    let auth = basic(id, key);
    s.post(
        &format!("/api/v1/devices/{id}/telemetry/env"),
        body.as_bytes(),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
    )
}

/// QoS 1 publish of `payload` to the device's `env` telemetry topic.
fn mqtt(port: u16, id: &str, key: &str, payload: &str) -> std::process::Output {
    strata_tests::mosquitto_pub(
        port,
        id,
        key,
        &format!("devices/{id}/telemetry/env"),
        payload,
    )
}

/// (time, temperature, _invalid) of every stored row of the device.
fn stored(s: &Server, id: &str) -> Vec<(i64, serde_json::Value, serde_json::Value)> {
    let r = s.read(&format!("stream=env&device={id}"));
    assert_eq!(r.status, 200, "{}", r.body);
    rows(&r.json())
        .into_iter()
        .map(|(_, t, f)| {
            let get = |k: &str| f.get(k).cloned().unwrap_or(serde_json::Value::Null);
            (t, get("temperature"), get("_invalid"))
        })
        .collect()
}

fn metric(s: &Server, series: &str) -> f64 {
    let m = s.get("/metrics").body;
    m.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing:\n{m}"))
}

/// Retries `f` for up to 2 s (registry events reach the schema cache asynchronously).
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

#[test]
fn model_schema_is_exposed_and_checked() {
    let (_tmp, dir) = temp_data_dir();
    let s = Server::start(&dir, &[]);
    let r = s.send_json("PUT", "/api/v1/models/thermo", &model("reject"));
    assert_eq!(r.status, 200, "{}", r.body);
    let m = s.get("/api/v1/models/thermo").json();
    assert_eq!(m["validation"], "reject");
    assert_eq!(m["fields"][0]["required"], true);
    assert_eq!(m["fields"][1].get("required"), None, "false is omitted");
    let mut bad = model("flag");
    bad["fields"][2]["max"] = json!(3);
    let r = s.send_json("PUT", "/api/v1/models/thermo", &bad);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.error().contains("numeric"), "{}", r.body);
    let r = s.send_json(
        "PUT",
        "/api/v1/models/thermo",
        &json!({"validation": "sometimes"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn reject_then_flag_over_http_and_mqtt() {
    let (_tmp, dir) = temp_data_dir();
    let s = Server::start(&dir, &["--mqtt-addr", "127.0.0.1:0"]);
    let port = s.logged_port("MQTT device endpoint listening");
    assert_eq!(
        s.send_json("PUT", "/api/v1/models/thermo", &model("reject"))
            .status,
        200
    );
    let d = s.create_device("t-1", "thermo");
    let k = d["primary_key"].as_str().unwrap().to_owned();

    // reject, HTTP: each violation names the field and the reason; nothing is stored.
    let ok = r#"{"ts": 1700000000000, "temperature": 21.5, "battery": 90, "door": "open"}"#;
    assert_eq!(http(&s, "t-1", &k, ok).status, 204);
    let cases = [
        (
            r#"{"temperature": 90.5}"#,
            "field 'temperature': 90.5 is above the maximum 85",
        ),
        (
            r#"{"temperature": 20, "humidity": 3}"#,
            "unknown field 'humidity'",
        ),
        (
            r#"{"temperature": "warm"}"#,
            "field 'temperature' must be float",
        ),
        (
            r#"{"temperature": 20, "battery": 50.5}"#,
            "field 'battery' must be integer",
        ),
        (
            r#"{"battery": 5}"#,
            "required field 'temperature' is missing",
        ),
        (
            r#"[{"temperature": 1}, {"temperature": -41}]"#,
            "record 1: field 'temperature': -41 is below",
        ),
    ];
    for (body, want) in cases {
        let r = http(&s, "t-1", &k, body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.error().contains("model 'thermo'"), "{}", r.body);
        assert!(r.error().contains(want), "{body}: {}", r.body);
    }
    // reject, MQTT: the message is not acknowledged and the connection is closed.
    let out = mqtt(
        port,
        "t-1",
        &k,
        r#"{"ts": 1700000001000, "temperature": 99}"#,
    );
    assert!(
        !out.status.success(),
        "an invalid QoS 1 message must not be PUBACKed: {out:?}"
    );
    let out = mqtt(
        port,
        "t-1",
        &k,
        r#"{"ts": 1700000002000, "temperature": 22.5}"#,
    );
    assert!(out.status.success(), "{out:?}");
    // A device without a model is not checked.
    let free = s.create_device("free-2", "");
    let fk = free["primary_key"].as_str().unwrap();
    assert_eq!(http(&s, "free-2", fk, r#"{"anything": 1}"#).status, 204);

    let rows = stored(&s, "t-1");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].1.clone(), rows[1].1.clone()),
        (json!(21.5), json!(22.5))
    );
    assert_eq!(
        metric(
            &s,
            r#"strata_ingest_rejects_total{protocol="http",reason="validation",detail="400"}"#
        ),
        6.0
    );
    assert_eq!(
        metric(
            &s,
            r#"strata_ingest_rejects_total{protocol="mqtt",reason="validation",detail="validation"}"#
        ),
        1.0
    );

    // flag: switching the model's policy applies at once (no restart), to both protocols.
    assert_eq!(
        s.send_json("PUT", "/api/v1/models/thermo", &model("flag"))
            .status,
        200
    );
    let hot = r#"{"ts": 1700000003000, "temperature": 120}"#;
    assert!(
        eventually(|| http(&s, "t-1", &k, hot).status == 204),
        "the policy change did not take effect"
    );
    let out = mqtt(
        port,
        "t-1",
        &k,
        r#"{"ts": 1700000004000, "temperature": 20, "extra": true}"#,
    );
    assert!(out.status.success(), "{out:?}");
    let rows = stored(&s, "t-1");
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[2].1, json!(120.0));
    let flag = rows[2].2.as_str().unwrap_or_else(|| panic!("{rows:?}"));
    assert!(flag.contains("120 is above the maximum 85"), "{flag}");
    let flag = rows[3].2.as_str().unwrap_or_else(|| panic!("{rows:?}"));
    assert!(flag.contains("unknown field 'extra'"), "{flag}");
    assert!(
        rows[0].2.is_null() && rows[1].2.is_null(),
        "valid rows carry no flag"
    );
    assert_eq!(
        metric(&s, r#"strata_ingest_flagged_rows_total{protocol="http"}"#),
        1.0
    );
    assert_eq!(
        metric(&s, r#"strata_ingest_flagged_rows_total{protocol="mqtt"}"#),
        1.0
    );

    // Back to reject, then clearing the device's model stops validation for it.
    assert_eq!(
        s.send_json("PUT", "/api/v1/models/thermo", &model("reject"))
            .status,
        200
    );
    let invalid = r#"{"ts": 1700000005000, "temperature": 20, "other": 1}"#;
    assert!(eventually(|| http(&s, "t-1", &k, invalid).status == 400));
    let r = s.send_json("PATCH", "/api/v1/devices/t-1", &json!({"model": ""}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(eventually(|| http(&s, "t-1", &k, invalid).status == 204));
    assert_eq!(
        stored(&s, "t-1")[4].2,
        serde_json::Value::Null,
        "stored unflagged"
    );
    assert_eq!(
        metric(&s, r#"strata_ingest_flagged_rows_total{protocol="http"}"#),
        1.0
    );
}
