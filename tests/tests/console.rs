//! The web console (`/`) in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/console/console_test.mjs`, installed by `.ci/install.d/60-browser.sh`) against the
//! real binary with loaded data: first-load size, a wrong token refused, sign-in, overview,
//! device search, the device chart's points equal the SQL answer, drag zoom, key rotation, the
//! SQL page (table, chart, query time, CSV download equal to the HTTP CSV), the entity tree, and
//! a read-only token unable to disable a device. Screenshots go to a temporary directory, or
//! to `docs/console/` with `STRATA_CONSOLE_SHOTS=docs/console`.
//! Also, without a browser: the assets are served gzip-compressed and without credentials.

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;
use strata_tests::{Server, temp_data_dir};

const DEVICE: &str = "truck-7";
const STREAM: &str = "engine";
/// A device with one day of 10 s data and 4 fields (8,640 rows): the chart timing figure.
const DAY_DEVICE: &str = "truck-9";

/// A server with one device, two hours of 10 s telemetry (3 fields) and a site containing it.
fn start() -> (tempfile::TempDir, Server) {
    let (tmp, data) = temp_data_dir();
    let server = Server::start(&data, &[]);
    server.create_device(DEVICE, "truck");
    server.create_device("truck-8", "truck");
    // A disabled device of another model, for the list's model and status filters.
    let r = server.post_json(
        "/api/v1/devices",
        &json!({"id": "gate-1", "model": "gateway", "attributes": {}, "enabled": false}),
    );
    assert_eq!(r.status, 201, "creating gate-1: {}", r.body);
    let base: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z
    let mut lp = String::new();
    for i in 0..720i64 {
        let t = base + i * 10;
        let temp = 60.0 + (i as f64 / 20.0).sin() * 15.0;
        let hum = 30.0 + (i % 17) as f64;
        lp.push_str(&format!(
            "{STREAM},device={DEVICE} temp={temp},hum={hum},rpm={}i {}\n",
            800 + i % 50,
            t * 1_000_000_000
        ));
        lp.push_str(&format!(
            "{STREAM},device=truck-8 temp=1.0,hum=2.0 {}\n",
            t * 1_000_000_000
        ));
    }
    let w = server.write("default", &lp);
    assert_eq!(w.status, 204, "{}", w.body);
    let r = server.post_json(
        "/api/v1/entities",
        &json!({"id": "site-1", "kind": "site", "name": "Plant"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = server.post_json(
        "/api/v1/relationships",
        &json!({"source": {"entity": "site-1"}, "kind": "contains", "target": {"device": DEVICE}}),
    );
    assert!(r.status == 201 || r.status == 204, "{}", r.body);
    // The device plane, lifecycle and rules pages have something to show: a desired twin
    // property, a queued command, a policy with a rollup, and a rule firing for the device.
    let r = server.send_json(
        "PATCH",
        &format!("/api/v1/devices/{DEVICE}/twin/desired"),
        &json!({"interval": 30}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = server.post_json(
        &format!("/api/v1/devices/{DEVICE}/commands"),
        &json!({"name": "reboot", "payload": {"delay": 5}, "ttl": "1h"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = server.send_json(
        "PUT",
        "/api/v1/databases/default/lifecycle",
        &json!({"retention": null, "rollups": [{"every": "1m"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = server.post_json(
        "/api/v1/rules",
        &json!({"name": "engine-hot", "kind": "query", "every": "200ms",
                "sql": format!("SELECT device, max(temp) AS t FROM {STREAM} GROUP BY device HAVING max(temp) > 70"),
                "actions": []}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let a = server.post(
            "/api/v1/query",
            b"SELECT count(*) AS n FROM alerts WHERE state = 'firing'",
            &[],
        );
        if a.status == 200 && a.json()[0]["n"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rule never fired: {}",
            a.body
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // One day of 10 s data with 4 fields on a second device, for the chart timing figure.
    let mut day = String::new();
    for i in 0..8640i64 {
        let t = (base + i * 10) * 1_000_000_000;
        let x = i as f64 / 300.0;
        day.push_str(&format!(
            "{STREAM},device={DAY_DEVICE} temp={},hum={},rpm={}i,oil={} {t}\n",
            60.0 + x.sin() * 10.0,
            40.0 + x.cos() * 5.0,
            900 + i % 97,
            3.0 + (i % 13) as f64 / 10.0
        ));
    }
    assert_eq!(server.write("default", &day).status, 204);
    server.create_device(DAY_DEVICE, "truck");
    // Into segments, so the hot tier has rows to show.
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    (tmp, server)
}

#[test]
fn console_assets_are_public_and_gzipped() {
    let (_tmp, data) = temp_data_dir();
    let server = Server::start(&data, &[]);
    let out = Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Accept-Encoding: gzip",
        ])
        .arg(server.url("/"))
        .output()
        .expect("curl is installed");
    let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(headers.starts_with("http/1.1 200"), "{headers}");
    assert!(headers.contains("content-encoding: gzip"), "{headers}");
    assert!(headers.contains("content-security-policy"), "{headers}");
    let page = server.send_anonymous("GET", "/console/app.js", None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("sessionStorage"), "the console module");
    // The assets need no token, the API they call does.
    assert_eq!(
        server.send_anonymous("GET", "/api/v1/devices", None).status,
        401
    );
    assert_eq!(
        server
            .send_anonymous("GET", "/console/nope.js", None)
            .status,
        404
    );
}

#[test]
fn console_in_chromium() {
    let (_tmp, server) = start();
    let reader = server.create_token(&["read"]);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("console");
    // Screenshots go to the test's temporary directory; `STRATA_CONSOLE_SHOTS=docs/console`
    // (relative to the workspace) refreshes the ones the docs show.
    let shots_tmp = tempfile::tempdir().unwrap();
    let shots = match std::env::var_os("STRATA_CONSOLE_SHOTS") {
        Some(rel) => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(rel),
        None => shots_tmp.path().to_path_buf(),
    };
    let out = Command::new("node")
        .arg(dir.join("console_test.mjs"))
        .current_dir(&dir)
        .env("STRATA_URL", server.base())
        .env("STRATA_ADMIN_TOKEN", server.token())
        .env("STRATA_READ_TOKEN", reader)
        .env("STRATA_DEVICE", DEVICE)
        .env("STRATA_STREAM", STREAM)
        .env("STRATA_DAY_DEVICE", DAY_DEVICE)
        .env("STRATA_SHOTS", shots)
        .output()
        .expect("node is installed (.ci/install.d/60-browser.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // The checks and figures (first-load bytes, chart draw time), shown with --nocapture.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "console_test.mjs failed ({}):\n{stdout}\n{}\nserver logs:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
