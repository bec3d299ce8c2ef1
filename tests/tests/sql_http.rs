//! `POST /api/v1/query` against the real server: SQL over line-protocol data, JSON and CSV
//! results, the JSON request form, planner errors as 400, and scope checks.

use strata_tests::{Server, bearer, temp_data_dir};

const LINES: &str = "\
speed,device=t1,fleet=north v=10.0 1700000000000000000
speed,device=t1,fleet=north v=20.0 1700000010000000000
speed,device=t2,fleet=south v=30.0 1700000000000000000
speed,device=t2,fleet=south v=50.0 1700000010000000000
";

fn server_with_data() -> (tempfile::TempDir, Server) {
    let (tmp, data) = temp_data_dir();
    let server = Server::start(&data, &[]);
    assert_eq!(server.write("default", LINES).status, 204);
    (tmp, server)
}

#[test]
fn aggregates_as_json_and_csv() {
    let (_tmp, server) = server_with_data();
    let sql =
        "SELECT device, avg(v) AS mean, count(*) AS n FROM speed GROUP BY device ORDER BY device";
    let r = server.post(
        "/api/v1/query",
        sql.as_bytes(),
        &[("Accept", "application/json")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.json();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["device"], "t1");
    assert_eq!(rows[0]["mean"], 15.0);
    assert_eq!(rows[1]["mean"], 40.0);
    assert_eq!(rows[1]["n"], 2);

    let r = server.post("/api/v1/query", sql.as_bytes(), &[("Accept", "text/csv")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines, vec!["device,mean,n", "t1,15.0,2", "t2,40.0,2"]);
}

#[test]
fn json_request_body_time_filter_and_tags() {
    let (_tmp, server) = server_with_data();
    let body = serde_json::json!({
        "sql": "SELECT v FROM speed WHERE fleet = 'south' AND time >= '2023-11-14T22:13:25Z' ORDER BY v"
    });
    let r = server.post_json("/api/v1/query", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), serde_json::json!([{ "v": 50.0 }]));
}

#[test]
fn planner_errors_are_400_with_the_message() {
    let (_tmp, server) = server_with_data();
    let r = server.post("/api/v1/query", b"SELECT nope FROM speed", &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.error().contains("nope"), "{}", r.body);
    let r = server.post("/api/v1/query", b"SELECT * FROM missing_table", &[]);
    assert_eq!(r.status, 400);
    assert!(r.error().contains("missing_table"), "{}", r.body);
    let r = server.post("/api/v1/query", b"   ", &[]);
    assert_eq!(r.status, 400);
    let r = server.post("/api/v1/query", b"SELECT 1", &[("Accept", "image/png")]);
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn query_needs_read_scope_and_an_unlimited_token() {
    let (_tmp, server) = server_with_data();
    let r = server.send_anonymous("POST", "/api/v1/query", Some(b"SELECT 1"));
    assert_eq!(r.status, 401);
    let reader = server.create_token(&["read"]);
    let auth = bearer(&reader);
    let r = server.post(
        "/api/v1/query",
        b"SELECT count(*) AS n FROM speed",
        &[("Authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[0]["n"], 4);
    let limited = server.post_json(
        "/api/v1/tokens",
        &serde_json::json!({ "scopes": ["read"], "streams": ["speed"] }),
    );
    assert_eq!(limited.status, 201, "{}", limited.body);
    let auth = bearer(limited.json()["token"].as_str().unwrap());
    let r = server.post("/api/v1/query", b"SELECT 1", &[("Authorization", &auth)]);
    assert_eq!(r.status, 403, "{}", r.body);
}
