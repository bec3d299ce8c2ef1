//! The one write pipeline, through the real binary on every transport: HTTP line protocol with
//! device credentials (`/api/v1/write`, `/write`, `/api/v2/write`), the device telemetry endpoint
//! (JSON), MQTT (`mosquitto_pub`) and Flight `DoPut` (pyarrow). On each one a device writing
//! another device's rows or into a database other than the device database (`--device-database`)
//! is refused with a clear error and nothing is stored, and a model violation is refused under
//! `reject` and stored with the reason under `flag`. API tokens writing many devices' rows are
//! validated against each row's device model too. (The broker bridge, which the binary does not
//! run, is tested against Mosquitto in `ingest/tests/mqtt/bridge.rs`.)

use serde_json::json;
use strata_tests::{Resp, Server, basic, bearer, rows, temp_data_dir};

/// Starts a server whose device database is `iot`, with MQTT and Flight on free ports, a
/// `reject` model `thermo` (temperature ≤ 85, required) and a `flag` model `thermo-flag`, and
/// devices `d1` (thermo), `d2` (thermo) and `f1` (thermo-flag). Returns the keys of d1 and f1.
fn start() -> (tempfile::TempDir, Server, String, String) {
    let (tmp, dir) = temp_data_dir();
    let s = Server::start(
        &dir,
        &[
            "--device-database",
            "iot",
            "--mqtt-addr",
            "127.0.0.1:0",
            "--flight-addr",
            "127.0.0.1:0",
        ],
    );
    for (id, policy) in [("thermo", "reject"), ("thermo-flag", "flag")] {
        let model = json!({
            "validation": policy,
            "fields": [{"name": "temperature", "type": "float", "max": 85, "required": true}]
        });
        let r = s.send_json("PUT", &format!("/api/v1/models/{id}"), &model);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let key = |d: serde_json::Value| d["primary_key"].as_str().unwrap().to_owned();
    let k1 = key(s.create_device("d1", "thermo"));
    s.create_device("d2", "thermo");
    let kf = key(s.create_device("f1", "thermo-flag"));
    (tmp, s, k1, kf)
}

/// (device, time, temperature, _invalid) of every row of `stream` in `db` (none when the stream
/// does not exist).
fn stored(
    s: &Server,
    db: &str,
    stream: &str,
) -> Vec<(String, i64, serde_json::Value, serde_json::Value)> {
    let r = s.read(&format!("db={db}&stream={stream}"));
    if r.status == 404 {
        return Vec::new();
    }
    assert_eq!(r.status, 200, "{}", r.body);
    rows(&r.json())
        .into_iter()
        .map(|(d, t, f)| {
            let get = |k: &str| f.get(k).cloned().unwrap_or(serde_json::Value::Null);
            (d, t, get("temperature"), get("_invalid"))
        })
        .collect()
}

fn refused(r: &Resp, status: u16, needles: &[&str]) {
    assert_eq!(r.status, status, "{}", r.body);
    for n in needles {
        assert!(r.error().contains(n), "{n:?} missing from {}", r.body);
    }
}

/// One HTTP line-protocol endpoint, as device `d1`: how to post `body` to database `db`.
type Post<'a> = Box<dyn Fn(&str, &str) -> Resp + 'a>;

#[test]
fn http_line_protocol_endpoints_confine_devices_and_validate() {
    let (_tmp, s, k1, _) = start();
    let auth = basic("d1", &k1);
    let endpoints: Vec<(&str, Post)> = vec![
        (
            "/api/v1/write",
            Box::new(|db: &str, body: &str| {
                let h = [("Authorization", auth.as_str())];
                s.post(&format!("/api/v1/write?db={db}"), body.as_bytes(), &h)
            }),
        ),
        (
            "/write (u/p)",
            Box::new(|db: &str, body: &str| {
                let path = format!("/write?db={db}&u=d1&p={k1}");
                s.send_anonymous("POST", &path, Some(body.as_bytes()))
            }),
        ),
        (
            "/api/v2/write",
            Box::new(|db: &str, body: &str| {
                let h = [("Authorization", auth.as_str())];
                s.post(
                    &format!("/api/v2/write?org=o&bucket={db}"),
                    body.as_bytes(),
                    &h,
                )
            }),
        ),
    ];
    for (i, (name, post)) in endpoints.iter().enumerate() {
        let t = 1_000 * (i as i64 + 1);
        let other = post("iot", &format!("env,device=d2 temperature=1 {t}\n"));
        refused(&other, 403, &["own telemetry", "'d2'"]);
        let db = post("other", &format!("env temperature=1 {t}\n"));
        refused(&db, 403, &["database 'iot'", "not 'other'"]);
        let hot = post("iot", &format!("env temperature=99 {t}\n"));
        refused(&hot, 400, &["model 'thermo'", "99 is above the maximum 85"]);
        let ok = post("iot", &format!("env temperature=20 {t}\n"));
        assert_eq!(ok.status, 204, "{name}: {}", ok.body);
    }
    let rows = stored(&s, "iot", "env");
    let expect: Vec<_> = (1..=3)
        .map(|i| {
            (
                "d1".to_string(),
                1_000 * i,
                json!(20.0),
                serde_json::Value::Null,
            )
        })
        .collect();
    assert_eq!(rows, expect, "only the accepted rows are stored");
    assert!(stored(&s, "other", "env").is_empty());

    // A write token may write any device's rows to any database, but each row is checked
    // against its device's model.
    let token = bearer(&s.create_token(&["write"]));
    let h = [("Authorization", token.as_str())];
    let mixed = "env,device=free temperature=500 10\nenv,device=d2 temperature=99 11\n";
    let r = s.post("/api/v1/write?db=other", mixed.as_bytes(), &h);
    refused(
        &r,
        400,
        &["model 'thermo'", "record 1", "above the maximum 85"],
    );
    let flagged = "env,device=f1 temperature=500 12\nenv,device=free temperature=500 13\n";
    let r = s.post("/api/v1/write?db=other", flagged.as_bytes(), &h);
    assert_eq!(r.status, 204, "{}", r.body);
    let rows = stored(&s, "other", "env");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter().any(|r| r.0 == "f1"
            && r.3
                .as_str()
                .is_some_and(|m| m.contains("above the maximum"))),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r.0 == "free" && r.3.is_null()),
        "{rows:?}"
    );
}

#[test]
fn device_telemetry_json_is_confined_and_validated() {
    let (_tmp, s, k1, kf) = start();
    let post = |id: &str, key: &str, db: &str, body: &str| {
        let auth = basic(id, key);
        s.post(
            &format!("/api/v1/devices/{id}/telemetry/env?db={db}"),
            body.as_bytes(),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
        )
    };
    let r = post(
        "d1",
        &k1,
        "iot",
        r#"{"ts": 1, "device": "d2", "temperature": 1}"#,
    );
    refused(&r, 403, &["own telemetry", "'d2'"]);
    let r = post("d1", &k1, "other", r#"{"ts": 1, "temperature": 1}"#);
    refused(&r, 403, &["database 'iot'"]);
    let r = post(
        "d1",
        &k1,
        "iot",
        r#"[{"ts": 1, "temperature": 1}, {"ts": 2, "temperature": 86}]"#,
    );
    refused(&r, 400, &["record 1", "86 is above the maximum 85"]);
    let r = post(
        "d1",
        &k1,
        "iot",
        r#"{"ts": 3, "device": "d1", "temperature": 21}"#,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let r = post("f1", &kf, "iot", r#"{"ts": 4, "temperature": 90}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    let rows = stored(&s, "iot", "env");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1, &rows[0].2),
        ("d1", 3_000_000, &json!(21.0))
    );
    assert_eq!(rows[1].0, "f1");
    assert!(
        rows[1]
            .3
            .as_str()
            .is_some_and(|m| m.contains("90 is above the maximum 85")),
        "{rows:?}"
    );
    assert!(stored(&s, "other", "env").is_empty());
}

#[test]
fn mqtt_is_confined_to_the_device_database_and_validated() {
    let (_tmp, s, k1, kf) = start();
    let port = s.logged_port("MQTT device endpoint listening");
    let publish = |id: &str, key: &str, payload: &str| {
        strata_tests::mosquitto_pub(
            port,
            id,
            key,
            &format!("devices/{id}/telemetry/env"),
            payload,
        )
    };
    for bad in [
        "env,device=d2 temperature=1 1000000",
        r#"{"ts": 1, "device": "d2", "temperature": 1}"#,
        r#"{"ts": 2, "temperature": 99}"#,
    ] {
        let out = publish("d1", &k1, bad);
        assert!(
            !out.status.success(),
            "{bad} must not be acknowledged: {out:?}"
        );
    }
    assert!(
        publish("d1", &k1, r#"{"ts": 3, "temperature": 20}"#)
            .status
            .success()
    );
    assert!(
        publish("f1", &kf, r#"{"ts": 4, "temperature": 99}"#)
            .status
            .success()
    );
    // MQTT writes into the device database.
    let rows = stored(&s, "iot", "env");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].1), ("d1", 3_000_000));
    assert!(
        rows[1]
            .3
            .as_str()
            .is_some_and(|m| m.contains("above the maximum")),
        "{rows:?}"
    );
    assert!(stored(&s, "default", "env").is_empty());
}

#[test]
fn flight_doput_is_confined_and_validated() {
    let (_tmp, s, k1, kf) = start();
    let port = s.logged_port("Flight SQL listening");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/flight_pipeline.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .env("STRATA_FLIGHT_URI", format!("grpc://127.0.0.1:{port}"))
        .env("STRATA_TOKEN", s.create_token(&["write"]))
        .env("STRATA_D1_KEY", &k1)
        .env("STRATA_F1_KEY", &kf)
        .output()
        .expect("python3 with pyarrow is installed");
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = stored(&s, "iot", "flight");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), &rows[0].2), ("d1", &json!(20.0)));
    assert_eq!(rows[1].0, "f1");
    assert!(
        rows[1]
            .3
            .as_str()
            .is_some_and(|m| m.contains("above the maximum")),
        "{rows:?}"
    );
    assert!(stored(&s, "default", "flight").is_empty());
}
