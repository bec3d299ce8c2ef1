//! Registry tables over HTTP SQL: `devices`, `entities` and `device_entities` read from the real
//! server's registry, joined with telemetry (average speed per fleet from fleet membership), and
//! changes to the registry visible to the next query.

use serde_json::{Value, json};
use strata_tests::{Server, temp_data_dir};

/// Speeds: t1 10, 20; t2 30, 50; t3 70; t4 (no fleet) 90.
const LINES: &str = "\
speed,device=t1 v=10.0 1700000000000000000
speed,device=t1 v=20.0 1700000010000000000
speed,device=t2 v=30.0 1700000000000000000
speed,device=t2 v=50.0 1700000010000000000
speed,device=t3 v=70.0 1700000000000000000
speed,device=t4 v=90.0 1700000000000000000
";

fn sql(server: &Server, text: &str) -> Vec<Value> {
    let r = server.post(
        "/api/v1/query",
        text.as_bytes(),
        &[("Accept", "application/json")],
    );
    assert_eq!(r.status, 200, "{text}: {}", r.body);
    r.json().as_array().expect("rows").clone()
}

fn created(r: strata_tests::Resp) {
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Fleets `fleet-a` (t1, t2) and `fleet-b` (t3) under site `site-1`; t4 in no fleet.
fn server_with_registry() -> (tempfile::TempDir, Server) {
    let (tmp, data) = temp_data_dir();
    let server = Server::start(&data, &[]);
    for (id, kind, name) in [
        ("site-1", "site", "Depot"),
        ("fleet-a", "fleet", "Alpha"),
        ("fleet-b", "fleet", "Bravo"),
    ] {
        created(server.post_json(
            "/api/v1/entities",
            &json!({"id": id, "kind": kind, "name": name, "attributes": {"region": "eu"}}),
        ));
    }
    for d in ["t1", "t2", "t3", "t4"] {
        server.create_device(d, "truck-v1");
    }
    let link = |s: Value, kind: &str, t: Value| {
        created(server.post_json(
            "/api/v1/relationships",
            &json!({"source": s, "kind": kind, "target": t}),
        ));
    };
    for fleet in ["fleet-a", "fleet-b"] {
        link(
            json!({"entity": "site-1"}),
            "contains",
            json!({"entity": fleet}),
        );
    }
    for (d, fleet) in [("t1", "fleet-a"), ("t2", "fleet-a"), ("t3", "fleet-b")] {
        link(json!({"device": d}), "member_of", json!({"entity": fleet}));
    }
    assert_eq!(server.write("default", LINES).status, 204);
    (tmp, server)
}

#[test]
fn average_speed_per_fleet_from_registry_membership() {
    let (_tmp, server) = server_with_registry();
    let rows = sql(
        &server,
        "SELECT e.name AS fleet, avg(r.v) AS mean, count(*) AS n \
         FROM speed r JOIN device_entities m ON r.device = m.device \
         JOIN entities e ON e.id = m.entity \
         WHERE e.kind = 'fleet' GROUP BY e.name ORDER BY e.name",
    );
    // Alpha: t1 and t2 = (10 + 20 + 30 + 50) / 4 = 27.5; Bravo: t3 = 70.
    assert_eq!(
        rows,
        vec![
            json!({"fleet": "Alpha", "mean": 27.5, "n": 4}),
            json!({"fleet": "Bravo", "mean": 70.0, "n": 1}),
        ]
    );
    // Every ancestor is listed: t1 belongs to fleet-a and (through it) site-1.
    let rows = sql(
        &server,
        "SELECT entity FROM device_entities WHERE device = 't1' ORDER BY entity",
    );
    assert_eq!(
        rows,
        vec![json!({"entity": "fleet-a"}), json!({"entity": "site-1"})]
    );
}

#[test]
fn devices_and_entities_columns() {
    let (_tmp, server) = server_with_registry();
    let rows = sql(
        &server,
        "SELECT id, status, enabled, model, path FROM devices ORDER BY id",
    );
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows[0],
        json!({"id": "t1", "status": "enabled", "enabled": true, "model": "truck-v1", "path": "site-1/fleet-a"})
    );
    assert_eq!(rows[3]["path"], Value::Null, "t4 has no parent entity");
    let rows = sql(
        &server,
        "SELECT id, kind, name, parent, path, attributes FROM registry.entities ORDER BY id",
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["parent"], "site-1");
    assert_eq!(rows[0]["path"], "site-1");
    assert_eq!(rows[0]["name"], "Alpha");
    let attrs: Value = serde_json::from_str(rows[0]["attributes"].as_str().unwrap()).unwrap();
    assert_eq!(attrs, json!({"region": "eu"}));
    assert_eq!(rows[2]["kind"], "site");
    assert_eq!(rows[2]["parent"], Value::Null);
}

#[test]
fn registry_changes_are_visible_to_the_next_query() {
    let (_tmp, server) = server_with_registry();
    let query = "SELECT id FROM devices WHERE status = 'disabled' ORDER BY id";
    assert!(sql(&server, query).is_empty());
    let r = server.post_json("/api/v1/devices/t2/disable", &json!({}));
    assert!(r.status < 300, "{}", r.body);
    assert_eq!(sql(&server, query), vec![json!({"id": "t2"})]);
    let r = server.delete("/api/v1/devices/t3");
    assert!(r.status < 300, "{}", r.body);
    let rows = sql(&server, "SELECT count(*) AS n FROM devices");
    assert_eq!(rows, vec![json!({"n": 3})]);
}
