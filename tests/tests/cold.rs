//! The cold tier through the real server and real stores: `--cold-store file://`, S3 (the moto
//! server) and Azure Blob (Azurite), each started by the test on a free port. A maintenance run
//! moves windows older than `hot` to Parquet; SQL and `/api/v1/read` answer the same before and
//! after, and after a restart; DuckDB reads the objects and agrees with Strata's SQL; a store
//! that refuses writes leaves data hot and says so in the run, the GET status and `/metrics`.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use strata_tests::{Server, azurite, moto, s3_env, temp_data_dir, try_send};

const DAY: i64 = 86_400_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

fn day_start(days_ago: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    (now - days_ago * DAY).div_euclid(DAY) * DAY
}

/// 3 trucks, hourly points on two old days (10 and 9 days ago) of stream `truck`, and a few
/// recent points of stream `recent`. Day 10's speeds have one decimal (its object stores them
/// as DECIMAL(18, 1)); day 9 holds one speed that needs 20 decimals (DOUBLE in its object), so
/// outside readers meet both types. Every speed is a short binary fraction: sums are exact in
/// any order.
fn lines() -> String {
    let mut out = String::new();
    for (d, device) in ["t1", "t2", "t3"].iter().enumerate() {
        for day in [10, 9] {
            for h in 0..24 {
                let t = day_start(day) + h * HOUR;
                let odd = if day == 9 && d == 2 && h == 0 {
                    0.5f64.powi(20)
                } else {
                    0.0
                };
                let v = (d as f64) * 10.0 + h as f64 * 0.5 + day as f64 + odd;
                out.push_str(&format!(
                    "truck,device={device},fleet=f{} speed={v},load={}i,state=\"s{}\",moving={} {t}\n",
                    d % 2,
                    h * 10 + d as i64,
                    h % 3,
                    h % 2 == 0
                ));
            }
        }
        out.push_str(&format!("recent,device={device} v=1 {}\n", day_start(0)));
    }
    out
}

const SQL: &str = "SELECT device, fleet, count(*) AS n, sum(speed) AS speed, sum(load) AS load, \
                   min(time) AS first, max(time) AS last, count(state) AS states, \
                   sum(CASE WHEN moving THEN 1 ELSE 0 END) AS moving \
                   FROM truck GROUP BY device, fleet ORDER BY device";

fn query(server: &Server, sql: &str) -> Value {
    let r = server.post_json("/api/v1/query", &json!({ "sql": sql }));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn run(server: &Server) -> Value {
    let r = server.post("/api/v1/lifecycle/run", b"", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn set_hot(server: &Server, hot: &str) {
    let r = server.send_json(
        "PUT",
        "/api/v1/databases/default/lifecycle",
        &json!({ "hot": hot }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

fn metric(server: &Server, name: &str) -> f64 {
    let r = server.get("/metrics");
    r.body
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// Loads the fleet data, moves the old days cold and checks that SQL and the range read answer
/// exactly as before, then after a restart. Returns the server (with the data moved).
fn move_and_check(data: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut server = Server::start_with_env(data, args, env);
    // Day 10 arrives in two flushes, the second also correcting one speed: its two segments
    // move as one object, newest write winning (DuckDB reads that object below).
    let all = lines();
    let noon = day_start(10) + 12 * HOUR;
    let at = |l: &str| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap();
    let (early, late): (Vec<&str>, Vec<&str>) = all.lines().partition(|l| at(l) < noon);
    let correction = format!(
        "truck,device=t1,fleet=f0 speed=99.5 {}",
        day_start(10) + 3 * HOUR
    );
    for batch in [
        early,
        late.into_iter().chain([correction.as_str()]).collect(),
    ] {
        assert_eq!(server.write("default", &batch.join("\n")).status, 204);
        assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    }
    let before = query(&server, SQL);
    let read_before = server.read("stream=truck&device=t2").json();
    let ranged_before: Vec<Value> = ranged().iter().map(|q| query(&server, q)).collect();
    assert_eq!(before.as_array().unwrap().len(), 3, "{before}");

    set_hot(&server, "3d");
    let report = run(&server);
    assert_eq!(report["errors"], json!([]), "{report}");
    let moved = report["moved"].as_array().unwrap();
    assert_eq!(moved.len(), 2, "one object per day: {report}");
    let segments: Vec<usize> = moved
        .iter()
        .map(|m| m["segments"].as_array().unwrap().len())
        .collect();
    assert_eq!(segments, vec![2, 1], "day 10 from two segments: {report}");
    assert_eq!(moved[0]["rows"], 72, "{report}");
    assert_eq!(query(&server, SQL), before, "SQL after the move");
    for (q, want) in ranged().iter().zip(&ranged_before) {
        assert_eq!(&query(&server, q), want, "{q} after the move");
    }
    assert_eq!(server.read("stream=truck&device=t2").json(), read_before);
    let recent = query(&server, "SELECT count(*) AS n FROM recent");
    assert_eq!(recent[0]["n"], 3);

    let status = server.get("/api/v1/databases/default/lifecycle").json();
    let tiers = status["tiers"].as_array().unwrap();
    let cold: Vec<&Value> = tiers.iter().filter(|t| t["tier"] == "cold").collect();
    assert_eq!(cold.len(), 1, "{status}");
    assert_eq!(cold[0]["stream"], "truck");
    assert_eq!(cold[0]["rows"], 144);
    assert_eq!(cold[0]["files"], 2);
    assert!(
        tiers
            .iter()
            .all(|t| t["stream"] != "truck" || t["tier"] != "hot"),
        "{status}"
    );
    assert_eq!(status["cold_store"]["objects_moved"], 2);
    let sys = query(
        &server,
        "SELECT tier, files, rows, hot, pending_moves FROM storage_tiers WHERE stream = 'truck' ORDER BY tier",
    );
    assert_eq!(
        sys,
        json!([{"tier": "cold", "files": 2, "rows": 144, "hot": "3d", "pending_moves": 0}])
    );
    assert_eq!(metric(&server, "strata_cold_objects_moved_total"), 2.0);
    assert_eq!(
        metric(
            &server,
            "strata_tier_rows{database=\"default\",stream=\"truck\",tier=\"cold\"}"
        ),
        144.0
    );

    server.terminate();
    server.restart();
    assert_eq!(query(&server, SQL), before, "SQL after a restart");
    assert_eq!(server.read("stream=truck&device=t2").json(), read_before);
    let misses = metric(&server, "strata_cold_cache_misses_total");
    query(&server, SQL);
    assert!(metric(&server, "strata_cold_cache_hits_total") >= 1.0);
    assert_eq!(metric(&server, "strata_cold_cache_misses_total"), misses);
    server
}

/// Time-range, device and aggregate queries that cold reads must answer as hot ones.
fn ranged() -> Vec<String> {
    let (from, to) = (day_start(10) + 5 * HOUR, day_start(9) + 3 * HOUR);
    let at = |ns: i64| format!("to_timestamp_nanos({ns})");
    vec![
        format!(
            "SELECT date_bin(INTERVAL '1 hour', time) AS h, avg(speed) AS mean, max(load) AS top \
             FROM truck WHERE device = 't2' AND time >= {} AND time < {} GROUP BY h ORDER BY h",
            at(from),
            at(to)
        ),
        format!(
            "SELECT device, count(*) AS n, min(speed) AS lo, max(speed) AS hi FROM truck \
             WHERE time >= {} GROUP BY device ORDER BY device",
            at(from)
        ),
        "SELECT time, speed, state FROM truck WHERE device = 't3' ORDER BY time".to_string(),
        "SELECT count(*) AS n FROM truck WHERE fleet = 'f1'".to_string(),
    ]
}

/// DuckDB over the Hive-laid-out objects of `dir`: the same aggregates as [`SQL`]. A float
/// field is DECIMAL in some objects and DOUBLE in others: `union_by_name = true` unifies the
/// column's type over all files (DOUBLE here) instead of casting every file to the first
/// file's DECIMAL(18, 1), which would round day 9's odd speed (docs/format.md).
fn duckdb(dir: &std::path::Path) -> Value {
    let script = format!(
        r#"
import duckdb, json
types = {{r[0]: r[1] for r in duckdb.sql("""
  SELECT file_name, duckdb_type FROM parquet_schema('{0}/default/truck/*/*.parquet') WHERE name = 'speed'
  """).fetchall()}}
assert sorted(types.values()) == ['DECIMAL(18,1)', 'DOUBLE'], types
rows = duckdb.sql("""
  SELECT device, fleet, count(*) AS n, sum(speed::DOUBLE) AS speed, sum(load) AS load,
         epoch_ns(min(time)) AS first, epoch_ns(max(time)) AS last, count(state) AS states,
         sum(CASE WHEN moving THEN 1 ELSE 0 END) AS moving, count(DISTINCT date) AS dates
  FROM read_parquet('{0}/default/truck/*/*.parquet', hive_partitioning = true,
                    union_by_name = true)
  GROUP BY device, fleet ORDER BY device""").fetchall()
print(json.dumps(rows))
"#,
        dir.display()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn local_directory_store_moves_keep_one_timeline_and_duckdb_agrees() {
    let (_tmp, data) = temp_data_dir();
    let cold = tempfile::tempdir().unwrap();
    let url = format!("file://{}", cold.path().display());
    let server = move_and_check(&data, &["--cold-store", &url], &[]);
    let ours = query(&server, SQL);
    let theirs = duckdb(cold.path());
    assert_eq!(theirs.as_array().unwrap().len(), 3);
    for (a, b) in ours
        .as_array()
        .unwrap()
        .iter()
        .zip(theirs.as_array().unwrap())
    {
        assert_eq!(a["device"], b[0]);
        assert_eq!(a["fleet"], b[1]);
        assert_eq!(a["n"], b[2]);
        assert_eq!(a["speed"].as_f64(), b[3].as_f64());
        assert_eq!(a["load"], b[4]);
        assert_eq!(a["states"], b[7]);
        assert_eq!(a["moving"], b[8]);
        assert_eq!(b[9], 2, "one date= directory per day");
    }
    // Strata's min/max time equal DuckDB's epoch ns.
    let first = query(&server, "SELECT min(time) AS t FROM truck");
    let firsts: Vec<i64> = theirs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[5].as_i64().unwrap())
        .collect();
    assert_eq!(firsts.iter().min().copied(), Some(day_start(10)));
    assert!(first[0]["t"].is_string(), "{first}");

    // A fresh node (an empty data directory) pointed at the bucket reads the cold data: the
    // streams, fields and series come from the cold manifest and the objects.
    let (_fresh_tmp, fresh) = temp_data_dir();
    let other = Server::start_with_env(&fresh, &["--cold-store", &url], &[]);
    assert_eq!(
        query(&other, SQL),
        ours,
        "a fresh node pointed at the bucket"
    );
    assert_eq!(
        other.read("stream=truck&device=t2").json(),
        server.read("stream=truck&device=t2").json()
    );
    for q in ranged() {
        assert_eq!(query(&other, &q), query(&server, &q), "{q} on a fresh node");
    }
}

/// A damaged object in the bucket is reported by the query that needs it, never served.
#[test]
fn a_damaged_cold_object_fails_the_query_that_needs_it() {
    let (_tmp, data) = temp_data_dir();
    let cold = tempfile::tempdir().unwrap();
    let url = format!("file://{}", cold.path().display());
    let server = Server::start(&data, &["--cold-store", &url, "--cold-cache-mb", "0"]);
    assert_eq!(server.write("default", &lines()).status, 204);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    set_hot(&server, "3d");
    assert_eq!(run(&server)["moved"].as_array().unwrap().len(), 2);
    let mut objects = Vec::new();
    let mut dirs = vec![cold.path().to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                objects.push(p);
            }
        }
    }
    objects.sort();
    let mut bytes = std::fs::read(&objects[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&objects[0], bytes).unwrap();
    let r = server.post_json("/api/v1/query", &json!({ "sql": SQL }));
    assert_ne!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("checksum"), "{}", r.body);
    assert_eq!(metric(&server, "strata_cold_corrupt_objects_total"), 1.0);
    // The other day is still served.
    let other_day = format!(
        "SELECT count(*) AS n FROM truck WHERE time >= to_timestamp_nanos({})",
        day_start(9)
    );
    let day = if objects[0].to_string_lossy().contains(&date(day_start(9))) {
        format!(
            "SELECT count(*) AS n FROM truck WHERE time < to_timestamp_nanos({})",
            day_start(9)
        )
    } else {
        other_day
    };
    assert_eq!(query(&server, &day)[0]["n"], 72);
}

/// `YYYY-MM-DD` of a day start (through `date`, as the object keys name it).
fn date(ns: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{}", ns / 1_000_000_000), "+%Y-%m-%d"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn s3_store_on_moto_and_a_store_that_stops_answering() {
    let (moto, port) = moto("cold");
    let env = s3_env(port);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_tmp, data) = temp_data_dir();
    let server = move_and_check(&data, &["--cold-store", "s3://cold/strata"], &env);
    let listed = try_send(
        "GET",
        &format!("http://127.0.0.1:{port}/cold?list-type=2&prefix=strata/default/truck/date="),
        None,
        &[],
    )
    .unwrap();
    assert_eq!(
        listed.body.matches(".parquet</Key>").count(),
        2,
        "{}",
        listed.body
    );

    // The store goes away: new old data stays hot, the error is reported, nothing is lost.
    drop(moto);
    let late = format!("truck,device=t9 speed=1 {}\n", day_start(8));
    assert_eq!(server.write("default", &late).status, 204);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    let report = run(&server);
    assert_eq!(report["moved"], json!([]), "{report}");
    assert!(
        report["errors"][0].as_str().unwrap().contains("stays hot"),
        "{report}"
    );
    let status = server.get("/api/v1/databases/default/lifecycle").json();
    assert!(status["cold_store"]["last_error"].is_string(), "{status}");
    let hot = status["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["stream"] == "truck" && t["tier"] == "hot")
        .cloned()
        .unwrap();
    assert_eq!(hot["pending_moves"], 1, "{status}");
    assert_eq!(metric(&server, "strata_cold_store_error"), 1.0);
    assert!(metric(&server, "strata_cold_move_errors_total") >= 1.0);
    let n = query(
        &server,
        "SELECT count(*) AS n FROM truck WHERE device = 't9'",
    );
    assert_eq!(n[0]["n"], 1);
}

#[test]
fn azure_blob_store_on_azurite() {
    let (_azurite, env) = azurite("cold");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_tmp, data) = temp_data_dir();
    let _server = move_and_check(&data, &["--cold-store", "az://cold/strata"], &env);
}
