//! `POST /api/v1/query` against the real server: SQL over line-protocol data, JSON and CSV
//! results, the JSON request form, planner errors as 400, and scope checks.

use std::io::Read;

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

/// An answer larger than the server's whole query memory streams (chunked, no `Content-Length`)
/// instead of being refused or held; a small one is sent whole. The streamed CSV holds every row.
#[test]
fn large_answers_stream_and_small_ones_are_whole() {
    let (_tmp, data) = temp_data_dir();
    let server = Server::start(&data, &["--query-memory-mb", "16"]);
    let devices = 50;
    let per_device = 8_000;
    let mut expected_sum = 0i64;
    for d in 0..devices {
        let mut lines = String::new();
        for i in 0..per_device {
            let v = (d * per_device + i) as i64;
            expected_sum += v;
            lines.push_str(&format!(
                "big,device=dev-{d:03},site=plant-{} v={v}i,note=\"reading number {i} of device {d}\" {}\n",
                d % 5,
                1_700_000_000_000_000_000i64 + i as i64 * 1_000_000_000
            ));
        }
        assert_eq!(server.write("default", &lines).status, 204);
    }
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    let rows = devices * per_device;

    let send = |sql: &str| {
        ureq::post(&server.url("/api/v1/query"))
            .set("Authorization", &server.auth())
            .set("Accept", "text/csv")
            .send_bytes(sql.as_bytes())
            .expect("query")
    };
    let resp = send("SELECT * FROM big");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(resp.header("content-length"), None);
    let mut body = String::new();
    resp.into_reader().read_to_string(&mut body).unwrap();
    assert!(
        body.len() > 16 << 20,
        "the answer ({} bytes) is larger than the query memory",
        body.len()
    );
    let mut lines = body.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let v = header.iter().position(|c| *c == "v").unwrap();
    let mut n = 0;
    let mut sum = 0i64;
    for line in lines {
        n += 1;
        sum += line.split(',').nth(v).unwrap().parse::<i64>().unwrap();
    }
    assert_eq!(n, rows);
    assert_eq!(sum, expected_sum);

    // JSON rows stream too, and the joined chunks parse as one array.
    let resp = ureq::post(&server.url("/api/v1/query"))
        .set("Authorization", &server.auth())
        .set("Accept", "application/json")
        .send_bytes(b"SELECT device, v FROM big")
        .unwrap();
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    let json: serde_json::Value = serde_json::from_reader(resp.into_reader()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), rows);

    let small = send("SELECT count(*) AS n FROM big");
    assert_eq!(
        small
            .header("content-length")
            .map(|l| l.parse::<usize>().unwrap() > 0),
        Some(true)
    );
    assert_eq!(small.into_string().unwrap(), format!("n\n{rows}\n"));
}

/// A `/metrics` counter's value.
fn metric(server: &Server, name: &str) -> f64 {
    let r = server.get("/metrics");
    (r.body.lines())
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{}", r.body))
}

/// An hourly aggregate over flushed data decodes its blocks once: the same query again (and the
/// same buckets grouped otherwise) takes the runs cache's entries, answers the same, and
/// `/metrics` counts the misses and the hits; `--runs-cache-mb 0` keeps nothing.
#[test]
fn hourly_aggregates_reuse_the_runs_cache() {
    for (cache_mb, cached) in [("64", true), ("0", false)] {
        let (_tmp, data) = temp_data_dir();
        let server = Server::start(&data, &["--runs-cache-mb", cache_mb]);
        let mut lines = String::new();
        for i in 0..2_000i64 {
            for (device, fleet) in [("t1", "north"), ("t2", "south")] {
                let t = 1_700_000_000_000_000_000 + i * 10_000_000_000;
                lines.push_str(&format!(
                    "speed,device={device},fleet={fleet} v={} {t}\n",
                    (i % 37) as f64 / 2.0
                ));
            }
        }
        assert_eq!(server.write("default", &lines).status, 204);
        assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
        let ask = |sql: &str| {
            let r = server.post("/api/v1/query", sql.as_bytes(), &[("Accept", "text/csv")]);
            assert_eq!(r.status, 200, "{}", r.body);
            r.body
        };
        let by_fleet = "SELECT fleet, date_bin(INTERVAL '1 hour', time) AS h, avg(v), count(v) \
                        FROM speed GROUP BY fleet, h ORDER BY fleet, h";
        let by_device = "SELECT device, date_bin(INTERVAL '1 hour', time) AS h, avg(v), count(v) \
                         FROM speed GROUP BY device, h ORDER BY device, h";
        let first = ask(by_fleet);
        assert_eq!(first.lines().count(), 1 + 2 * 6, "{first}");
        let misses = metric(&server, "strata_runs_cache_misses_total");
        assert_eq!(ask(by_fleet), first);
        let same = ask(by_device).replace("t1", "north").replace("t2", "south");
        let rows = |csv: &str| csv.lines().skip(1).map(String::from).collect::<Vec<_>>();
        assert_eq!(rows(&same), rows(&first), "each fleet holds one device");
        let hits = metric(&server, "strata_runs_cache_hits_total");
        let entries = metric(&server, "strata_runs_cache_entries");
        if cached {
            assert!(misses >= 2.0, "one block per device at least: {misses}");
            assert!(hits >= 2.0 * misses, "{hits} hits, {misses} misses");
            assert!(entries >= 2.0 && metric(&server, "strata_runs_cache_bytes") > 0.0);
        } else {
            assert_eq!((hits, entries), (0.0, 0.0));
        }
    }
}
