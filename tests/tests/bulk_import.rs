//! Black-box tests of bulk registration: a JSON array and CSV (`Content-Type: text/csv`), gzip
//! bodies, per-item results in input order, idempotent repeats (`exists`, no new keys), items
//! that conflict or are malformed, and a few thousand devices in one request.

use std::io::Write;
use std::time::Instant;

use serde_json::{Value, json};
use strata_tests::{Server, basic, temp_data_dir};

fn statuses(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {v}"))
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn json_bulk_is_per_item_and_idempotent() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let items = json!([
        {"id": "a1", "model": "m", "attributes": {"floor": 1}},
        {"id": "a2", "tags": ["x"]},
        {"id": "bad id"},
        {"model": "no id"},
        {"id": "a3", "primary_key": "short"},
        {"id": "a1", "model": "m", "attributes": {"floor": 1}}
    ]);
    let r = server.post_json("/api/v1/devices/bulk", &items);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        statuses(&v),
        vec!["created", "created", "error", "error", "error", "exists"],
        "{v}"
    );
    assert_eq!(
        (
            v["created"].as_u64(),
            v["exists"].as_u64(),
            v["errors"].as_u64()
        ),
        (Some(2), Some(1), Some(3))
    );
    let first = &v["results"][0];
    assert_eq!(first["id"], "a1");
    let key = first["primary_key"].as_str().unwrap();
    assert_eq!(key.len(), 64);
    assert!(
        v["results"][2]["error"]
            .as_str()
            .unwrap()
            .contains("device id")
    );
    assert!(
        v["results"][5].get("primary_key").is_none(),
        "no keys for an existing device"
    );

    // The keys work.
    let auth = basic("a1", key);
    let w = server.post(
        "/api/v1/devices/a1/telemetry/m",
        b"m v=1 1\n",
        &[("Authorization", &auth)],
    );
    assert_eq!(w.status, 204, "{}", w.body);

    // Repeat: everything valid already exists, nothing changes, the keys stay valid.
    let again = server.post_json("/api/v1/devices/bulk", &items).json();
    assert_eq!(
        statuses(&again),
        vec!["exists", "exists", "error", "error", "error", "exists"]
    );
    let w = server.post(
        "/api/v1/devices/a1/telemetry/m",
        b"m v=1 2\n",
        &[("Authorization", &auth)],
    );
    assert_eq!(w.status, 204);

    // Same id with different metadata is an item error, not an overwrite.
    let conflict = server
        .post_json(
            "/api/v1/devices/bulk",
            &json!([{"id": "a1", "model": "other"}]),
        )
        .json();
    assert_eq!(statuses(&conflict), vec!["error"]);
    assert_eq!(server.get("/api/v1/devices/a1").json()["model"], "m");

    // `{"devices": [...]}` works too; non-arrays are refused.
    let wrapped = server.post_json("/api/v1/devices/bulk", &json!({"devices": [{"id": "a9"}]}));
    assert_eq!(statuses(&wrapped.json()), vec!["created"]);
    assert_eq!(
        server
            .post_json("/api/v1/devices/bulk", &json!({"id": "x"}))
            .status,
        400
    );
    assert_eq!(server.post("/api/v1/devices/bulk", b"[{", &[]).status, 400);
}

#[test]
fn csv_bulk_with_gzip_and_repeat() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let csv = "id,model,location,tags,enabled,color\n\
               c1,th-100,\"site 1, building 7\",a;b,true,red\n\
               c2,th-100,,,,\n\
               bad id,th-100,,,,\n\
               c3,th-200,,,no,blue\n";
    let r = server.post(
        "/api/v1/devices/bulk",
        csv.as_bytes(),
        &[("Content-Type", "text/csv")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        statuses(&v),
        vec!["created", "created", "error", "created"],
        "{v}"
    );
    let c1 = server.get("/api/v1/devices/c1").json();
    assert_eq!(c1["location"], "site 1, building 7");
    assert_eq!(c1["tags"], json!(["a", "b"]));
    assert_eq!(c1["attributes"]["color"], "red");
    assert_eq!(server.get("/api/v1/devices/c3").json()["enabled"], false);
    assert_eq!(
        server.get("/api/v1/devices/c2").json()["attributes"],
        json!({})
    );

    let again = server.post(
        "/api/v1/devices/bulk",
        csv.as_bytes(),
        &[("Content-Type", "text/csv; charset=utf-8")],
    );
    assert_eq!(
        statuses(&again.json()),
        vec!["exists", "exists", "error", "exists"]
    );

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"id,model\nc4,th-100\n").unwrap();
    let body = gz.finish().unwrap();
    let r = server.post(
        "/api/v1/devices/bulk",
        &body,
        &[("Content-Type", "text/csv"), ("Content-Encoding", "gzip")],
    );
    assert_eq!(statuses(&r.json()), vec!["created"]);

    let bad_header = server.post(
        "/api/v1/devices/bulk",
        b"model,color\nx,y\n",
        &[("Content-Type", "text/csv")],
    );
    assert_eq!(bad_header.status, 400, "{}", bad_header.body);
    let unterminated = server.post(
        "/api/v1/devices/bulk",
        b"id\n\"c9\n",
        &[("Content-Type", "text/csv")],
    );
    assert_eq!(unterminated.status, 400);
}

#[test]
fn thousands_of_devices_in_one_request() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let n = 5000;
    let mut csv = String::from("id,model,building\n");
    for i in 0..n {
        csv.push_str(&format!("dev-{i:05},th-100,b{}\n", i % 50));
    }
    let started = Instant::now();
    let r = server.post(
        "/api/v1/devices/bulk",
        csv.as_bytes(),
        &[("Content-Type", "text/csv")],
    );
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["created"], n);
    eprintln!("bulk CSV registration of {n} devices took {took:?}");
    let page = server
        .get("/api/v1/devices?attr.building=b7&limit=1000")
        .json();
    assert_eq!(page["items"].as_array().unwrap().len(), n / 50);
    let again = server.post(
        "/api/v1/devices/bulk",
        csv.as_bytes(),
        &[("Content-Type", "text/csv")],
    );
    assert_eq!(again.json()["exists"], n);
}
