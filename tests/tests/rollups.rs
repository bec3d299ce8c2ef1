//! Continuous rollups through the real binary: rollups set by the database's lifecycle policy
//! (`PUT /api/v1/databases/default/lifecycle`), an hourly mean by fleet answered from the rollup (EXPLAIN names the rollup table)
//! with the values worked out from the written points, late data seen at once, the rollup table
//! readable as SQL, its name reserved, `/metrics` gauges, and everything kept across a kill -9.

use std::collections::BTreeMap;

use strata_tests::{Server, temp_data_dir};

const T0: i64 = 1_764_547_200_000_000_000; // 2025-12-01T00:00:00Z
const MIN: i64 = 60_000_000_000;
const HOUR: i64 = 60 * MIN;

/// (truck, fleet, time, speed): 4 trucks, one point per 30 s for 3 hours.
fn points() -> Vec<(String, &'static str, i64, f64)> {
    let mut out = Vec::new();
    for truck in 0..4 {
        for k in 0..360i64 {
            let fleet = if truck < 2 { "north" } else { "south" };
            let speed = ((truck * 31 + k * 7) % 90) as f64 + 0.5;
            out.push((format!("t{truck}"), fleet, T0 + k * 30_000_000_000, speed));
        }
    }
    out
}

fn lines(points: &[(String, &str, i64, f64)]) -> String {
    points
        .iter()
        .map(|(d, f, t, v)| format!("trucks,device={d},fleet={f} speed={v} {t}\n"))
        .collect()
}

/// Hourly (mean, count, max) by fleet, from the points (last write wins per device and time).
fn expected(points: &[(String, &str, i64, f64)]) -> BTreeMap<(i64, String), (f64, i64, f64)> {
    let mut latest: BTreeMap<(String, i64), (&str, f64)> = BTreeMap::new();
    for (d, f, t, v) in points {
        latest.insert((d.clone(), *t), (f, *v));
    }
    let mut acc: BTreeMap<(i64, String), (f64, i64, f64)> = BTreeMap::new();
    for ((_, t), (f, v)) in latest {
        let e = acc
            .entry((t - t.rem_euclid(HOUR), f.to_string()))
            .or_insert((0.0, 0, f64::MIN));
        e.0 += v;
        e.1 += 1;
        e.2 = e.2.max(v);
    }
    acc.into_iter()
        .map(|(k, (s, n, m))| (k, (s / n as f64, n, m)))
        .collect()
}

const HOURLY: &str = "SELECT date_bin(INTERVAL '1 hour', time) AS h, fleet, avg(speed) AS mean, \
    count(speed) AS n, max(speed) AS top FROM trucks GROUP BY h, fleet ORDER BY h, fleet";

fn query(server: &Server, sql: &str) -> serde_json::Value {
    let r = server.post(
        "/api/v1/query",
        sql.as_bytes(),
        &[("Accept", "application/json")],
    );
    assert_eq!(r.status, 200, "{sql}: {}", r.body);
    r.json()
}

fn plan(server: &Server, sql: &str) -> String {
    query(server, &format!("EXPLAIN {sql}")).to_string()
}

fn check_hourly(server: &Server, points: &[(String, &str, i64, f64)]) {
    let rows = query(server, HOURLY);
    let want = expected(points);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), want.len(), "{rows:?}");
    for (row, ((h, fleet), (mean, n, top))) in rows.iter().zip(&want) {
        assert_eq!(row["fleet"], fleet.as_str());
        let h_text = row["h"].as_str().unwrap().to_string();
        assert!(h_text.starts_with("2025-12-01T0"), "{h_text}");
        assert_eq!(row["n"], *n, "{h} {fleet}");
        assert_eq!(row["top"].as_f64().unwrap(), *top, "{h} {fleet}");
        let got = row["mean"].as_f64().unwrap();
        assert!(
            (got - mean).abs() < 1e-9 * mean.abs().max(1.0),
            "{h} {fleet}: {got} vs {mean}"
        );
    }
}

/// Sets 1-minute and 1-hour rollups for every stream of `default` through the lifecycle API.
fn configure_rollups(server: &Server) {
    let policy = serde_json::json!({"rollups": [{"every": "1m"}, {"every": "1h"}]});
    let r = server.send_json("PUT", "/api/v1/databases/default/lifecycle", &policy);
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn rollups_from_policy_answer_queries_and_survive_kill9() {
    let (_tmp, data) = temp_data_dir();
    let mut server = Server::start(&data, &[]);
    configure_rollups(&server);
    let mut pts = points();
    assert_eq!(server.write("default", &lines(&pts)).status, 204);

    let p = plan(&server, HOURLY);
    assert!(p.contains("_rollup_1h_trucks"), "{p}");
    check_hourly(&server, &pts);

    // The rollup table itself.
    let rows = query(
        &server,
        "SELECT count(*) AS windows, sum(points) AS points FROM _rollup_1m_trucks",
    );
    assert_eq!(rows[0]["windows"], 4 * 180);
    assert_eq!(rows[0]["points"], 4 * 360);

    // Late data: t1 rewrites an old point and adds one; seen by the next query.
    let late = vec![
        ("t1".to_string(), "north", T0 + 30_000_000_000, 500.0),
        ("t1".to_string(), "north", T0 + HOUR + 1, 1.0),
    ];
    assert_eq!(server.write("default", &lines(&late)).status, 204);
    pts.extend(late);
    check_hourly(&server, &pts);

    // The rollup namespace is reserved.
    let r = server.write("default", "_rollup_1m_trucks,device=x points=1i 1\n");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("reserved"), "{}", r.body);

    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains(
            "strata_rollup_pending_windows{database=\"default\",stream=\"trucks\",every=\"1m\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_rollup_windows_absorbed_total"),
        "{metrics}"
    );

    // More late data, then kill -9 before any maintenance: the WAL brings it back.
    let late = vec![("t3".to_string(), "south", T0 + 2 * HOUR + 5, 2.0)];
    assert_eq!(server.write("default", &lines(&late)).status, 204);
    pts.extend(late);
    server.kill9();
    server.restart();
    let p = plan(&server, HOURLY);
    assert!(p.contains("_rollup_1h_trucks"), "{p}");
    check_hourly(&server, &pts);

    // A retention that cuts raw data a rollup added in the same change has not absorbed is
    // refused, naming the rollup; with the absorbed rollups alone it is accepted, and the
    // hourly answer still comes (from the rollup) after the raw rows expire.
    let path = "/api/v1/databases/default/lifecycle?stream=trucks";
    let add_daily = serde_json::json!({
        "retention": "30d",
        "rollups": [{"every": "1m"}, {"every": "1h"}, {"every": "1d"}]
    });
    let r = server.send_json("PUT", path, &add_daily);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("_rollup_1d_trucks"), "{}", r.body);
    assert_eq!(server.post("/api/v1/lifecycle/run", b"", &[]).status, 200);
    let keep =
        serde_json::json!({"retention": "30d", "rollups": [{"every": "1m"}, {"every": "1h"}]});
    let r = server.send_json("PUT", path, &keep);
    assert_eq!(r.status, 200, "{}", r.body);
    let raw = query(&server, "SELECT time, speed FROM trucks LIMIT 5");
    assert_eq!(
        raw,
        serde_json::json!([]),
        "raw rows from 2025 are past a 30-day retention"
    );
    // Aggregates the rollups can answer still see the history.
    let p = plan(&server, HOURLY);
    assert!(p.contains("_rollup_1h_trucks"), "{p}");
    check_hourly(&server, &pts);
    let rows = query(
        &server,
        "SELECT sum(points) AS points FROM _rollup_1h_trucks",
    );
    assert_eq!(
        rows[0]["points"].as_i64(),
        Some(pts.len() as i64 - 1),
        "one point rewritten"
    );
}
