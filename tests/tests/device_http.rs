//! The HTTP device API (`POST /api/v1/devices/{id}/telemetry/{stream}`) driven by the harness's
//! HTTP client and by `curl`: JSON in all three layouts (record, array, columns + rows) with
//! RFC 3339, epoch-with-unit and server-assigned timestamps, records naming their stream, line
//! protocol by `Content-Type` or sniffed, a device writing only as itself, and the JSON decoder's
//! precise errors. Also the `/metrics` ingest families, scraped for real, for HTTP and MQTT.

use std::process::Command;

use strata_tests::{Server, basic, rows, temp_data_dir};

const T0_MS: i64 = 1_700_000_000_000;
const MS: i64 = 1_000_000;

fn key(device: &serde_json::Value) -> String {
    device["primary_key"].as_str().expect("key").to_owned()
}

fn post_as(
    s: &Server,
    id: &str,
    key: &str,
    stream: &str,
    ct: Option<&str>,
    body: &str,
) -> strata_tests::Resp {
    post_path(
        s,
        &format!("/api/v1/devices/{id}/telemetry/{stream}"),
        id,
        key,
        ct,
        body,
    )
}

fn post_path(
    s: &Server,
    path: &str,
    id: &str,
    key: &str,
    ct: Option<&str>,
    body: &str,
) -> strata_tests::Resp {
    let auth = basic(id, key);
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(ct) = ct {
        headers.push(("Content-Type", ct));
    }
    s.post(path, body.as_bytes(), &headers)
}

/// (time ns, value of `field`) of every row of `stream` for `device`.
fn values(s: &Server, stream: &str, device: &str, field: &str) -> Vec<(i64, serde_json::Value)> {
    let r = s.read(&format!("stream={stream}&device={device}"));
    assert_eq!(r.status, 200, "{}", r.body);
    rows(&r.json())
        .into_iter()
        .filter_map(|(_, t, f)| {
            f.get(field)
                .filter(|v| !v.is_null())
                .map(|v| (t, v.clone()))
        })
        .collect()
}

#[test]
fn json_layouts_timestamps_and_streams() {
    let (_tmp, dir) = temp_data_dir();
    let s = Server::start(&dir, &[]);
    let k = key(&s.create_device("dev-1", ""));
    let json = Some("application/json");
    let single = format!(r#"{{"ts": {T0_MS}, "temperature": 21.5}}"#);
    assert_eq!(post_as(&s, "dev-1", &k, "env", json, &single).status, 204);
    let array = format!(
        r#"[{{"ts": "2023-11-14T22:13:21Z", "temperature": 22.5}},
            {{"ts": {}, "temperature": 23.5, "stream": "other"}}]"#,
        T0_MS + 2000
    );
    assert_eq!(post_as(&s, "dev-1", &k, "env", json, &array).status, 204);
    let layout = format!(
        r#"{{"columns": ["ts", "temperature"], "rows": [[{}, 24.5], [{}, 25.5]]}}"#,
        (T0_MS + 3000) / 1000,
        (T0_MS + 4000) / 1000
    );
    let r = post_path(
        &s,
        "/api/v1/devices/dev-1/telemetry/env?precision=s",
        "dev-1",
        &k,
        json,
        &layout,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let before = strata_now_ns();
    let r = post_as(&s, "dev-1", &k, "env", None, r#"{"temperature": 26.5}"#);
    assert_eq!(
        r.status, 204,
        "sniffed JSON without a timestamp: {}",
        r.body
    );

    let env = values(&s, "env", "dev-1", "temperature");
    let expected = [(0, 21.5), (1000, 22.5), (3000, 24.5), (4000, 25.5)];
    for (i, (off, v)) in expected.iter().enumerate() {
        assert_eq!(
            env[i],
            ((T0_MS + off) * MS, serde_json::json!(v)),
            "{env:?}"
        );
    }
    assert_eq!(env.len(), 5, "{env:?}");
    assert!(
        env[4].0 >= before - 1_000_000_000,
        "server time {} < {before}",
        env[4].0
    );
    assert_eq!(env[4].1, 26.5);
    let other = values(&s, "other", "dev-1", "temperature");
    assert_eq!(other, vec![((T0_MS + 2000) * MS, serde_json::json!(23.5))]);
}

fn strata_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn line_protocol_by_content_type_or_sniffing_and_curl() {
    let (_tmp, dir) = temp_data_dir();
    let s = Server::start(&dir, &[]);
    let k = key(&s.create_device("dev-2", ""));
    let t = T0_MS * MS;
    let r = post_as(
        &s,
        "dev-2",
        &k,
        "env",
        Some("text/plain; charset=utf-8"),
        &format!("env v=1 {t}"),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let r = post_as(&s, "dev-2", &k, "env", None, &format!("env v=2 {}", t + 1));
    assert_eq!(r.status, 204, "{}", r.body);
    // curl's default Content-Type is form-urlencoded: the body is sniffed (JSON here).
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u"])
        .arg(format!("dev-2:{k}"))
        .args(["--data-binary"])
        .arg(format!(r#"[{{"ts": {}, "v": 3}}]"#, T0_MS + 1))
        .arg(s.url("/api/v1/devices/dev-2/telemetry/env"))
        .output()
        .expect("curl is installed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204", "{out:?}");
    let got = values(&s, "env", "dev-2", "v");
    assert_eq!(
        got,
        vec![
            (t, serde_json::json!(1.0)),
            (t + 1, serde_json::json!(2.0)),
            ((T0_MS + 1) * MS, serde_json::json!(3.0)),
        ]
    );
    // Line protocol must name the path's stream.
    let r = post_as(&s, "dev-2", &k, "env", Some("text/plain"), "humidity v=1");
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn devices_write_only_as_themselves_and_errors_are_precise() {
    let (_tmp, dir) = temp_data_dir();
    let s = Server::start(&dir, &[]);
    let k1 = key(&s.create_device("dev-a", ""));
    s.create_device("dev-b", "");
    let json = Some("application/json");
    let r = post_as(&s, "dev-b", &k1, "env", json, r#"{"v": 1}"#);
    assert_eq!(r.status, 401, "dev-a's key is not dev-b's: {}", r.body);
    let r = post_path(
        &s,
        "/api/v1/devices/dev-b/telemetry/env",
        "dev-a",
        &k1,
        json,
        r#"{"v": 1}"#,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.error().contains("only write its own"), "{}", r.body);
    let r = post_as(
        &s,
        "dev-a",
        &k1,
        "env",
        json,
        r#"{"v": 1, "device": "dev-b"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.error().contains("dev-b"), "{}", r.body);
    let r = post_as(
        &s,
        "dev-a",
        &k1,
        "env",
        json,
        r#"[{"v": 1}, {"v": [1, 2]}]"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.error().starts_with("invalid JSON telemetry: $[1].v:"),
        "{}",
        r.body
    );
    let r = post_as(&s, "dev-a", &k1, "env", json, r#"{"v": 1"#);
    assert_eq!(r.status, 400);
    assert!(r.error().contains("line 1, column"), "{}", r.body);
    let r = post_as(
        &s,
        "dev-a",
        &k1,
        "env",
        json,
        r#"{"ts": "yesterday", "v": 1}"#,
    );
    assert_eq!(r.status, 400);
    assert!(r.error().contains("$.ts"), "{}", r.body);
    let r = s.read("stream=env");
    assert_eq!(r.status, 404, "nothing refused is stored: {}", r.body);
}

/// The value of the sample `name{labels}` in a Prometheus exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// QoS 1 publish of `payload` to the device's `env` telemetry topic.
fn mosquitto_pub(port: u16, id: &str, key: &str, payload: &str) -> std::process::Output {
    strata_tests::mosquitto_pub(
        port,
        id,
        key,
        &format!("devices/{id}/telemetry/env"),
        payload,
    )
}

#[test]
fn metrics_count_connections_messages_bytes_and_rejects_per_protocol() {
    let (_tmp, dir) = temp_data_dir();
    let s = Server::start(&dir, &["--mqtt-addr", "127.0.0.1:0"]);
    let port = s.logged_port("MQTT device endpoint listening");
    let k = key(&s.create_device("m-1", ""));
    let json = Some("application/json");
    let body = r#"{"v": 1}"#;
    for _ in 0..3 {
        assert_eq!(post_as(&s, "m-1", &k, "env", json, body).status, 204);
    }
    assert_eq!(
        post_as(&s, "m-1", "wrong-key-0123456789", "env", json, body).status,
        401
    );
    assert_eq!(post_as(&s, "m-1", &k, "env", json, "{").status, 400);
    for v in 0..2 {
        let out = mosquitto_pub(port, "m-1", &k, &format!(r#"{{"v": {v}}}"#));
        assert!(out.status.success(), "{out:?}");
    }
    let out = mosquitto_pub(port, "m-1", "wrong-key-0123456789", body);
    assert!(!out.status.success());

    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    let m = &r.body;
    let get = |series: &str| sample(m, series).unwrap_or_else(|| panic!("{series} missing:\n{m}"));
    assert_eq!(get(r#"strata_ingest_messages_total{protocol="http"}"#), 3.0);
    assert_eq!(
        get(r#"strata_ingest_payload_bytes_total{protocol="http"}"#),
        3.0 * body.len() as f64
    );
    assert_eq!(
        get(r#"strata_ingest_rejects_total{protocol="http",reason="auth",detail="401"}"#),
        1.0
    );
    assert_eq!(
        get(r#"strata_ingest_rejects_total{protocol="http",reason="malformed",detail="400"}"#),
        1.0
    );
    assert!(get(r#"strata_ingest_connections_total{protocol="http"}"#) >= 1.0);
    assert!(
        get(r#"strata_ingest_connections_open{protocol="http"}"#) >= 1.0,
        "the scrape's own"
    );
    assert!(get(r#"strata_ingest_received_bytes_total{protocol="http"}"#) > 0.0);
    assert_eq!(get(r#"strata_ingest_messages_total{protocol="mqtt"}"#), 2.0);
    assert_eq!(
        get(r#"strata_ingest_payload_bytes_total{protocol="mqtt"}"#),
        16.0
    );
    assert_eq!(
        get(r#"strata_ingest_connections_total{protocol="mqtt"}"#),
        3.0
    );
    assert_eq!(
        get(
            r#"strata_ingest_rejects_total{protocol="mqtt",reason="auth",detail="bad_credentials"}"#
        ),
        1.0
    );
    assert_eq!(get(r#"strata_mqtt_pubacks_total{protocol="mqtt"}"#), 2.0);
    assert_eq!(
        get(r#"strata_ingest_flagged_rows_total{protocol="mqtt"}"#),
        0.0
    );
}
