//! The data lifecycle through the real server: policies over HTTP (`/api/v1/databases/{db}/
//! lifecycle`) and the CLI (`strata lifecycle`), kept across restarts, refused with clear 400s,
//! admin only; retention that removes expired rows from SQL and `/api/v1/read` at once and their
//! segment files at the next maintenance run (`POST /api/v1/lifecycle/run`).

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use strata_tests::{Server, bearer, strata_binary, temp_data_dir};

const DAY: i64 = 86_400_000_000_000;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn count(server: &Server, sql: &str) -> i64 {
    let r = server.post_json("/api/v1/query", &json!({ "sql": sql }));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()[0]["n"]
        .as_i64()
        .unwrap_or_else(|| panic!("{}", r.body))
}

fn segment_files(server: &Server) -> usize {
    std::fs::read_dir(server.data_dir().join("segments"))
        .unwrap()
        .count()
}

#[test]
fn policies_are_set_read_kept_and_checked() {
    let (_tmp, data) = temp_data_dir();
    let mut server = Server::start(&data, &[]);
    let example = json!({"hot": "7d", "retention": "400d", "rollups": [
        {"every": "1m", "keep": "90d"}, {"every": "1h", "keep": "5y"}]});
    let r = server.send_json("PUT", "/api/v1/databases/fleet/lifecycle", &example);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["policy"], example);
    let r = server.send_json(
        "PUT",
        "/api/v1/databases/fleet/lifecycle?stream=gps",
        &json!({"retention": null, "hot": "1d"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    server.terminate();
    server.restart();

    let v = server.get("/api/v1/databases/fleet/lifecycle").json();
    assert_eq!(v["policy"], example);
    assert_eq!(
        v["overrides"]["gps"],
        json!({"hot": "1d", "retention": null, "rollups": []})
    );
    let gps = &v["streams"][0];
    assert_eq!(
        (gps["stream"].as_str(), gps["source"].as_str()),
        (Some("gps"), Some("stream"))
    );
    let v = server
        .get("/api/v1/databases/fleet/lifecycle?stream=engine")
        .json();
    assert_eq!(v["streams"][0]["source"], "database");
    assert_eq!(v["streams"][0]["policy"], example);

    for (body, needle) in [
        (json!({"retention": "7 days"}), "retention"),
        (
            json!({"hot": "30d", "retention": "7d"}),
            "hot (30d) is longer than retention (7d)",
        ),
        (json!({"retension": "7d"}), "unknown field"),
        (
            json!({"rollups": [{"every": "1h"}, {"every": "1m"}]}),
            "finest first",
        ),
        (json!({"retention": 7}), "expected"),
    ] {
        let r = server.send_json("PUT", "/api/v1/databases/fleet/lifecycle", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.error().contains(needle), "{body}: {}", r.body);
    }
    let r = server.send_json("PUT", "/api/v1/databases/bad%20name/lifecycle", &example);
    assert_eq!(r.status, 400, "{}", r.body);
    // Refused changes left the policy as it was.
    let v = server.get("/api/v1/databases/fleet/lifecycle").json();
    assert_eq!(v["policy"], example);

    let reader = server.create_token(&["read", "write"]);
    let auth = bearer(&reader);
    for (method, path) in [
        ("GET", "/api/v1/databases/fleet/lifecycle"),
        ("PUT", "/api/v1/databases/fleet/lifecycle"),
        ("POST", "/api/v1/lifecycle/run"),
    ] {
        let r = server.send(method, path, Some(b"{}"), &[("Authorization", &auth)]);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
    }

    let r = server.delete("/api/v1/databases/fleet/lifecycle?stream=gps");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["streams"][0]["source"], "database");
}

#[test]
fn retention_hides_expired_rows_at_once_and_frees_disk_at_the_next_run() {
    let (_tmp, data) = temp_data_dir();
    let server = Server::start(&data, &[]);
    let now = now_ns();
    let lines: String = [now - 20 * DAY, now - 10 * DAY, now - 3 * DAY, now - DAY]
        .iter()
        .map(|t| format!("temp,device=t1 v=1 {t}\ntemp,device=t2 v=2 {t}\n"))
        .collect();
    assert_eq!(server.write("default", &lines).status, 204);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    assert_eq!(count(&server, "SELECT count(*) AS n FROM temp"), 8);
    let files = segment_files(&server);
    assert_eq!(files, 4, "one segment per day partition");

    let r = server.send_json(
        "PUT",
        "/api/v1/databases/default/lifecycle",
        &json!({"retention": "5d"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(count(&server, "SELECT count(*) AS n FROM temp"), 4);
    assert_eq!(
        count(
            &server,
            "SELECT count(*) AS n FROM temp WHERE device = 't1'"
        ),
        2
    );
    let r = server.read("stream=temp&device=t1");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    let rows = body["series"][0]["values"].as_array().map(|a| a.len());
    assert_eq!(rows, Some(2), "{}", r.body);
    assert_eq!(
        segment_files(&server),
        files,
        "disk is freed by maintenance"
    );

    let r = server.post("/api/v1/lifecycle/run", b"", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let run = r.json();
    assert_eq!(run["dropped"].as_array().unwrap().len(), 2, "{run}");
    assert_eq!(run["errors"], json!([]));
    assert_eq!(segment_files(&server), 2);
    assert_eq!(count(&server, "SELECT count(*) AS n FROM temp"), 4);
    let v = server.get("/api/v1/databases/default/lifecycle").json();
    assert_eq!(v["last_run"]["dropped"].as_array().unwrap().len(), 2);
}

#[test]
fn the_cli_sets_and_shows_policies() {
    let (_tmp, data) = temp_data_dir();
    let server = Server::start(&data, &[]);
    let cli = |args: &[&str]| {
        let out = Command::new(strata_binary())
            .arg("lifecycle")
            .args(args)
            .env("STRATA_URL", server.base())
            .env("STRATA_TOKEN", server.token())
            .env_remove("STRATA_DATA_DIR")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&[
        "set",
        "fleet",
        "--hot",
        "7d",
        "--retention",
        "400d",
        "--rollup",
        "1m:90d",
        "--rollup",
        "1h:5y",
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("7d") && out.contains("400d") && out.contains("1m:90d,1h:5y"),
        "{out}"
    );
    let (ok, out, err) = cli(&["show", "fleet", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["policy"]["retention"], "400d");
    let (ok, _, err) = cli(&["set", "fleet", "--retention", "1x"]);
    assert!(!ok);
    assert!(
        err.contains("retention") && err.contains("unknown unit"),
        "{err}"
    );
    let (ok, out, err) = cli(&["run"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"dropped\""), "{out}");
}
