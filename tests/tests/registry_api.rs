//! Black-box tests of the registry HTTP API contract: device registration (keys shown once),
//! get/update/delete, enable/disable, key rotation, list with filters and pagination, entities
//! and relationships ("everything under X"), device models, tokens, the audit log, and the
//! mapping of registry errors to 400/404/409/413.

use serde_json::{Value, json};
use strata_tests::{Resp, Server, temp_data_dir};

fn assert_status(resp: &Resp, status: u16) {
    assert_eq!(
        resp.status, status,
        "unexpected status, body: {}",
        resp.body
    );
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn device_lifecycle() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let created = server.post_json(
        "/api/v1/devices",
        &json!({"id": "sensor-1", "model": "th-100", "attributes": {"floor": 3, "color": "red"}}),
    );
    assert_status(&created, 201);
    let c = created.json();
    assert_eq!(c["id"], "sensor-1");
    assert_eq!(c["model"], "th-100");
    assert_eq!(c["enabled"], true);
    assert_eq!(c["attributes"], json!({"floor": 3, "color": "red"}));
    let (pk, sk) = (
        c["primary_key"].as_str().unwrap(),
        c["secondary_key"].as_str().unwrap(),
    );
    assert_eq!(pk.len(), 64, "256-bit hex key");
    assert!(pk.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(pk, sk);

    let got = server.get("/api/v1/devices/sensor-1");
    assert_status(&got, 200);
    let g = got.json();
    assert_eq!(g["id"], "sensor-1");
    assert_eq!(g["attributes"]["floor"], 3);
    assert!(g.get("primary_key").is_none() && g.get("secondary_key").is_none());
    assert!(!got.body.contains(pk) && !got.body.contains(sk));

    // Duplicate id, bad id, bad JSON, unknown device.
    assert_status(
        &server.post_json("/api/v1/devices", &json!({"id": "sensor-1"})),
        409,
    );
    let bad = server.post_json("/api/v1/devices", &json!({"id": "has space"}));
    assert_status(&bad, 400);
    assert!(bad.error().contains("device id"), "{}", bad.body);
    assert_status(&server.post("/api/v1/devices", b"{not json", &[]), 400);
    assert_status(&server.post("/api/v1/devices", b"", &[]), 400);
    let missing = server.get("/api/v1/devices/nope");
    assert_status(&missing, 404);
    assert!(missing.error().contains("nope"));

    // PATCH changes only what is given; PUT replaces; keys cannot be set by an update.
    let p = server.send_json(
        "PATCH",
        "/api/v1/devices/sensor-1",
        &json!({"location": "site-1/b-7", "tags": ["b", "a", "a"]}),
    );
    assert_status(&p, 200);
    assert_eq!(p.json()["tags"], json!(["a", "b"]));
    assert_eq!(p.json()["model"], "th-100");
    assert_status(
        &server.send_json(
            "PATCH",
            "/api/v1/devices/sensor-1",
            &json!({"primary_key": "0123456789abcdef0123"}),
        ),
        400,
    );
    assert_status(
        &server.send_json("PATCH", "/api/v1/devices/sensor-1", &json!({"modle": "x"})),
        400,
    );
    let mut full = server.get("/api/v1/devices/sensor-1").json();
    full["model"] = json!("th-200");
    full.as_object_mut().unwrap().remove("location");
    let put = server.send_json("PUT", "/api/v1/devices/sensor-1", &full);
    assert_status(&put, 200);
    assert_eq!(put.json()["model"], "th-200");
    assert_eq!(put.json()["location"], Value::Null);
    assert_eq!(put.json()["tags"], json!(["a", "b"]));
    assert_status(
        &server.send_json("PUT", "/api/v1/devices/sensor-1", &json!({"id": "other"})),
        400,
    );
    assert_status(
        &server.send_json("PATCH", "/api/v1/devices/nope", &json!({"model": "m"})),
        404,
    );

    // Disable / enable / rotate.
    let d = server.post("/api/v1/devices/sensor-1/disable", b"", &[]);
    assert_status(&d, 200);
    assert_eq!(d.json()["enabled"], false);
    assert_eq!(
        server
            .post("/api/v1/devices/sensor-1/enable", b"", &[])
            .json()["enabled"],
        true
    );
    let r = server.post(
        "/api/v1/devices/sensor-1/rotate-keys?slot=primary",
        b"",
        &[],
    );
    assert_status(&r, 200);
    let r = r.json();
    assert_eq!(r["id"], "sensor-1");
    assert!(r["primary_key"].as_str().unwrap().len() == 64 && r.get("secondary_key").is_none());
    let both = server.post_json(
        "/api/v1/devices/sensor-1/rotate-keys",
        &json!({"slot": "both"}),
    );
    assert!(both.json()["secondary_key"].is_string(), "{}", both.body);
    assert_status(&server.post("/api/v1/devices/nope/disable", b"", &[]), 404);
    assert_status(
        &server.post(
            "/api/v1/devices/sensor-1/rotate-keys?slot=tertiary",
            b"",
            &[],
        ),
        400,
    );

    assert_status(&server.delete("/api/v1/devices/sensor-1"), 204);
    assert_status(&server.get("/api/v1/devices/sensor-1"), 404);
    assert_status(&server.delete("/api/v1/devices/sensor-1"), 404);
}

#[test]
fn listing_filters_and_pagination() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    for i in 0..25 {
        let model = if i % 2 == 0 { "even" } else { "odd" };
        let r = server.post_json(
            "/api/v1/devices",
            &json!({"id": format!("d{i:02}"), "model": model,
                    "attributes": {"floor": i % 3, "zone": format!("z{}", i % 5)}, "tags": ["t"]}),
        );
        assert_status(&r, 201);
    }
    let page1 = server.get("/api/v1/devices?limit=10").json();
    assert_eq!(ids(&page1).len(), 10);
    assert_eq!(ids(&page1)[0], "d00");
    let next = page1["next_after"].as_str().unwrap();
    let page2 = server
        .get(&format!("/api/v1/devices?limit=10&after={next}"))
        .json();
    assert_eq!(ids(&page2)[0], "d10");
    let page3 = server
        .get(&format!(
            "/api/v1/devices?limit=10&after={}",
            page2["next_after"].as_str().unwrap()
        ))
        .json();
    assert_eq!(ids(&page3).len(), 5);
    assert_eq!(page3["next_after"], Value::Null);

    assert_eq!(
        ids(&server.get("/api/v1/devices?model=odd&limit=100").json()).len(),
        12
    );
    let floor = ids(&server.get("/api/v1/devices?attr.floor=1&model=even").json());
    assert_eq!(floor, vec!["d04", "d10", "d16", "d22"]);
    assert_eq!(
        ids(&server.get("/api/v1/devices?attr.zone=z3").json()).len(),
        5
    );
    assert!(ids(&server.get("/api/v1/devices?attr.floor=%221%22").json()).is_empty());
    assert_eq!(
        ids(&server.get("/api/v1/devices?tag=t&limit=1000").json()).len(),
        25
    );
    assert_status(&server.get("/api/v1/devices?colour=red"), 400);
    assert_status(&server.get("/api/v1/devices?limit=many"), 400);
    assert_status(&server.get("/api/v1/devices?under=no-such-entity"), 404);
}

#[test]
fn entities_relationships_and_everything_under() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    for (id, kind) in [
        ("site-1", "site"),
        ("b-1", "building"),
        ("b-2", "building"),
        ("f-1", "floor"),
        ("fleet-n", "fleet"),
    ] {
        let r = server.post_json(
            "/api/v1/entities",
            &json!({"id": id, "kind": kind, "attributes": {"k": 1}}),
        );
        assert_status(&r, 201);
        assert_eq!(r.json()["kind"], kind);
    }
    assert_status(
        &server.post_json(
            "/api/v1/entities",
            &json!({"id": "b-1", "kind": "building"}),
        ),
        409,
    );
    assert_status(
        &server.post_json("/api/v1/entities", &json!({"id": "x"})),
        400,
    );
    for d in ["d1", "d2", "d3"] {
        server.create_device(d, "m");
    }
    let link = |s: Value, kind: &str, t: Value| {
        server.post_json(
            "/api/v1/relationships",
            &json!({"source": s, "kind": kind, "target": t}),
        )
    };
    assert_status(
        &link(
            json!({"entity": "site-1"}),
            "contains",
            json!({"entity": "b-1"}),
        ),
        201,
    );
    assert_status(
        &link(
            json!({"entity": "site-1"}),
            "contains",
            json!({"entity": "b-2"}),
        ),
        201,
    );
    assert_status(
        &link(
            json!({"entity": "b-1"}),
            "contains",
            json!({"entity": "f-1"}),
        ),
        201,
    );
    assert_status(
        &link(
            json!({"entity": "f-1"}),
            "contains",
            json!({"device": "d1"}),
        ),
        201,
    );
    assert_status(
        &link(
            json!({"entity": "b-2"}),
            "contains",
            json!({"device": "d2"}),
        ),
        201,
    );
    assert_status(
        &link(
            json!({"device": "d3"}),
            "member_of",
            json!({"entity": "fleet-n"}),
        ),
        201,
    );
    assert_status(
        &link(
            json!({"device": "d1"}),
            "member_of",
            json!({"entity": "fleet-n"}),
        ),
        201,
    );
    assert_status(
        &link(
            json!({"entity": "f-1"}),
            "contains",
            json!({"device": "d1"}),
        ),
        409,
    );
    assert_status(
        &link(
            json!({"entity": "f-1"}),
            "contains",
            json!({"device": "ghost"}),
        ),
        404,
    );

    let under = server.get("/api/v1/entities/site-1/devices");
    assert_status(&under, 200);
    assert_eq!(under.json()["devices"], json!(["d1", "d2"]));
    assert_eq!(under.json()["count"], 2);
    assert_eq!(
        server.get("/api/v1/entities/fleet-n/devices").json()["devices"],
        json!(["d1", "d3"])
    );
    assert_eq!(
        ids(&server.get("/api/v1/devices?under=b-1").json()),
        vec!["d1"]
    );
    assert_status(&server.get("/api/v1/entities/nope/devices"), 404);
    let desc = server.get("/api/v1/entities/site-1/descendants").json();
    assert_eq!(desc["entities"], json!(["b-1", "b-2", "f-1"]));
    let anc = server.get("/api/v1/entities/f-1/ancestors").json();
    assert_eq!(anc["ancestors"], json!(["b-1", "site-1"]));
    assert_eq!(anc["paths"], json!(["site-1/b-1"]));

    let rels = server.get("/api/v1/relationships?device=d1").json();
    assert_eq!(rels["relationships"].as_array().unwrap().len(), 2);
    assert_eq!(
        server.get("/api/v1/relationships").json()["relationships"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    let unlink = server.send_json(
        "DELETE",
        "/api/v1/relationships",
        &json!({"source": {"entity": "b-2"}, "kind": "contains", "target": {"device": "d2"}}),
    );
    assert_status(&unlink, 204);
    assert_eq!(
        server.get("/api/v1/entities/site-1/devices").json()["devices"],
        json!(["d1"])
    );

    let kinds = server.get("/api/v1/entities?kind=building").json();
    assert_eq!(ids(&kinds), vec!["b-1", "b-2"]);
    let upd = server.send_json(
        "PATCH",
        "/api/v1/entities/b-1",
        &json!({"name": "Main building"}),
    );
    assert_status(&upd, 200);
    assert_eq!(
        server.get("/api/v1/entities/b-1").json()["name"],
        "Main building"
    );
    assert_status(&server.delete("/api/v1/entities/b-1"), 204);
    assert_status(&server.get("/api/v1/entities/b-1"), 404);
    assert!(
        server.get("/api/v1/entities/site-1/devices").json()["devices"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Deleting a device removes its relationships.
    assert_status(&server.delete("/api/v1/devices/d3"), 204);
    assert!(server.get("/api/v1/entities/fleet-n/devices").json()["devices"] == json!(["d1"]));
}

#[test]
fn device_models() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let model = json!({"id": "th-100", "name": "Thermo-hygrometer",
        "fields": [{"name": "temp", "type": "float", "unit": "°C", "min": -40.0, "max": 85.0},
                   {"name": "hum", "type": "float", "unit": "%"}],
        "commands": [{"name": "reboot"}],
        "config": [{"name": "interval", "type": "integer", "default": 60}]});
    assert_status(&server.post_json("/api/v1/models", &model), 201);
    assert_status(&server.post_json("/api/v1/models", &model), 409);
    let got = server.get("/api/v1/models/th-100").json();
    assert_eq!(got["fields"][0]["unit"], "°C");
    assert_eq!(got["fields"][0]["max"], 85.0);
    let mut changed = model.clone();
    changed["name"] = json!("TH v2");
    changed.as_object_mut().unwrap().remove("id");
    assert_status(
        &server.send_json("PUT", "/api/v1/models/th-100", &changed),
        200,
    );
    assert_eq!(server.get("/api/v1/models/th-100").json()["name"], "TH v2");
    assert_status(
        &server.send_json("PUT", "/api/v1/models/th-200", &changed),
        200,
    );
    assert_eq!(
        ids(&server.get("/api/v1/models").json()),
        vec!["th-100", "th-200"]
    );
    assert_status(
        &server.post_json(
            "/api/v1/models",
            &json!({"id": "bad", "fields": [{"name": "x", "type": "complex"}]}),
        ),
        400,
    );
    assert_status(&server.delete("/api/v1/models/th-200"), 204);
    assert_status(&server.get("/api/v1/models/th-200"), 404);
}

#[test]
fn tokens_and_audit() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let created = server.post_json(
        "/api/v1/tokens",
        &json!({"scopes": ["read"], "name": "dashboard"}),
    );
    assert_status(&created, 201);
    let c = created.json();
    let token = c["token"].as_str().unwrap();
    let id = c["id"].as_str().unwrap();
    assert!(
        token.starts_with("strata_") && token.contains(id),
        "{token}"
    );
    assert_eq!(c["scopes"], json!(["read"]));

    let list = server.get("/api/v1/tokens");
    assert_status(&list, 200);
    assert!(!list.body.contains(token), "a listing never shows a secret");
    assert!(ids(&list.json()).contains(&id.to_owned()));
    let one = server.get(&format!("/api/v1/tokens/{id}"));
    assert_eq!(one.json()["name"], "dashboard");
    assert!(!one.body.contains(token));

    assert_status(
        &server.post_json("/api/v1/tokens", &json!({"scopes": []})),
        400,
    );
    assert_status(
        &server.post_json("/api/v1/tokens", &json!({"scopes": ["root"]})),
        400,
    );
    let revoked = server.delete(&format!("/api/v1/tokens/{id}"));
    assert_status(&revoked, 200);
    assert!(revoked.json()["revoked_ns"].is_i64());
    assert_status(&server.delete("/api/v1/tokens/nope"), 404);

    server.create_device("a1", "m");
    let audit = server.get("/api/v1/audit?limit=1000");
    assert_status(&audit, 200);
    let records = audit.json()["items"].as_array().unwrap().clone();
    let find = |action: &str, target: &str| {
        records
            .iter()
            .find(|r| r["action"] == action && r["target"] == target)
            .unwrap_or_else(|| panic!("no audit record {action} {target} in {records:?}"))
            .clone()
    };
    let rec = find("token.revoke", id);
    assert_eq!(rec["ok"], true);
    assert_eq!(rec["actor"], "token:env-admin");
    assert!(rec["time_ns"].as_i64().unwrap() > 0);
    find("device.register", "a1");
    assert!(
        records.iter().any(|r| r["ok"] == false),
        "failed actions are audited too"
    );
    assert!(!audit.body.contains(token));
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let page = server.get("/api/v1/audit?limit=2").json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let after = page["next_after"].as_str().unwrap();
    let rest = server
        .get(&format!("/api/v1/audit?after={after}&limit=1000"))
        .json();
    assert_eq!(rest["items"][0]["seq"].as_u64().unwrap(), seqs[2]);
}

/// POSTs `body` over a raw connection and returns the response's status code. The server may
/// answer (and close) before it has read the whole body, as a 413 does: the write is allowed to
/// fail, the status line is read either way (an HTTP client library reports the write's broken
/// pipe instead, depending on who wins the race).
fn post_status_raw(server: &Server, path: &str, body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let addr = server.base().trim_start_matches("http://").to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.auth(),
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    let _ = conn.write_all(body);
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split(' ').nth(1).unwrap_or_default();
    status
        .parse()
        .unwrap_or_else(|_| panic!("no status line in {answer:?}"))
}

#[test]
fn body_limits() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &["--max-body-mb", "2"]);
    let big = json!({"id": "big", "attributes": {"blob": "x".repeat(1_100_000)}});
    let big = serde_json::to_vec(&big).unwrap();
    assert_eq!(post_status_raw(&server, "/api/v1/devices", &big), 413);
    let too_many: Vec<Value> = (0..100_001)
        .map(|i| json!({"id": format!("x{i}")}))
        .collect();
    let too_many = serde_json::to_vec(&Value::Array(too_many)).unwrap();
    let status = post_status_raw(&server, "/api/v1/devices/bulk", &too_many);
    assert!(status == 413 || status == 400, "{status}");
}
