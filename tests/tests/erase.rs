//! Black-box tests of `DELETE /api/v1/devices/{id}/data`: queries stop returning the device's
//! telemetry at once (SQL, the range read, the last-value fast path), a restart keeps it erased,
//! and after a maintenance pass (`POST /api/v1/compact`) no file of the data directory holds a
//! unique string value the device wrote (strings are stored verbatim by the string codecs). The
//! erase is audited and needs an unlimited admin token.

use strata_tests::{Server, bearer, temp_data_dir};

const MARKER: &str = "erase-marker-5c1f0e77";

fn sql(server: &Server, sql: &str) -> String {
    let r = server.post("/api/v1/query", sql.as_bytes(), &[("Accept", "text/csv")]);
    assert_eq!(r.status, 200, "{sql}: {}", r.body);
    r.body
}

/// Files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .map(|b| b.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
        {
            out.push(path);
        }
    }
    out
}

/// Two flushed batches and one in the memtable, for the victim and for a bystander.
fn load(server: &Server) {
    for (i, base) in [1_000_000_000i64, 2_000_000_000, 3_000_000_000]
        .iter()
        .enumerate()
    {
        let mut body = String::new();
        for k in 0..5 {
            let t = base + k;
            body.push_str(&format!(
                "m,device=victim speed={k}.5,note=\"{MARKER}\" {t}\nm,device=bystander speed={k}.25,note=\"kept\" {t}\n"
            ));
        }
        assert_eq!(server.write("default", &body).status, 204);
        if i < 2 {
            assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
        }
    }
}

#[test]
fn erased_device_disappears_from_queries_and_from_disk() {
    let (_tmp, dir) = temp_data_dir();
    let mut server = Server::start(&dir, &[]);
    load(&server);
    let counts = "SELECT device, count(*) AS n FROM m GROUP BY device ORDER BY device";
    assert_eq!(sql(&server, counts), "device,n\nbystander,15\nvictim,15\n");

    // The flushed segments and the WAL hold the marker verbatim before the erase.
    assert!(!files_containing(&dir, MARKER.as_bytes()).is_empty());
    let r = server.delete("/api/v1/devices/victim/data");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["device"], "victim");
    assert_eq!(body["series"], 1);
    assert!(body["start"].is_null() && body["end"].is_null());
    // At once: SQL scans, the last-value fast path and the range read.
    assert_eq!(sql(&server, counts), "device,n\nbystander,15\n");
    let newest = "SELECT device, speed FROM m WHERE device = 'victim' ORDER BY time DESC LIMIT 1";
    assert_eq!(sql(&server, newest), "device,speed\n");
    let last = sql(
        &server,
        "SELECT device FROM last_values('m') ORDER BY device",
    );
    assert_eq!(last.trim(), "device\nbystander");
    let r = server.read("stream=m&device=victim");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(MARKER), "{}", r.body);

    // After maintenance no file holds the marker (checked on disk before the erase, above).
    assert_eq!(server.post("/api/v1/compact", b"", &[]).status, 200);
    assert_eq!(
        files_containing(&dir, MARKER.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(!files_containing(&dir, b"kept").is_empty());

    // The device writes again: new data is visible; a restart changes nothing.
    let again = "m,device=victim speed=9,note=\"new\" 1500000000\n";
    assert_eq!(server.write("default", again).status, 204);
    assert_eq!(server.terminate(), 0);
    server.restart();
    assert_eq!(sql(&server, counts), "device,n\nbystander,15\nvictim,1\n");

    let audit = server.get("/api/v1/audit?limit=1000");
    assert_eq!(audit.status, 200, "{}", audit.body);
    let items = audit.json()["items"].as_array().unwrap().clone();
    let rec = items
        .iter()
        .find(|r| r["action"] == "erase_device_data")
        .unwrap_or_else(|| panic!("no erase in the audit log: {items:?}"));
    assert_eq!(rec["target"], "victim");
    assert_eq!(rec["ok"], true);
}

#[test]
fn erase_a_time_range_in_one_database_and_survive_a_crash() {
    let (_tmp, dir) = temp_data_dir();
    let mut server = Server::start(&dir, &[]);
    for db in ["default", "other"] {
        let body: String = (1..=5)
            .map(|s| format!("m,device=d v={s} {}\n", s as i64 * 1_000_000_000))
            .collect();
        assert_eq!(server.write(db, &body).status, 204);
    }
    // [2 s, 4 s) in `default` only.
    let r = server.delete(
        "/api/v1/devices/d/data?db=default&start=1970-01-01T00:00:02Z&end=1970-01-01T00:00:04Z",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["start"], "1970-01-01T00:00:02Z");
    let values = |s: &Server, table: &str| sql(s, &format!("SELECT v FROM {table} ORDER BY time"));
    assert_eq!(values(&server, "m"), "v\n1.0\n4.0\n5.0\n");
    assert_eq!(values(&server, "other.m"), "v\n1.0\n2.0\n3.0\n4.0\n5.0\n");
    server.kill9();
    server.restart();
    assert_eq!(values(&server, "m"), "v\n1.0\n4.0\n5.0\n");
    assert_eq!(values(&server, "other.m"), "v\n1.0\n2.0\n3.0\n4.0\n5.0\n");
}

#[test]
fn erase_needs_an_unlimited_admin_token_and_valid_parameters() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let write = server.create_token(&["write"]);
    let path = "/api/v1/devices/d/data";
    let r = server.send("DELETE", path, None, &[("Authorization", &bearer(&write))]);
    assert_eq!(r.status, 403, "{}", r.body);
    let limited = server.post_json(
        "/api/v1/tokens",
        &serde_json::json!({"scopes": ["admin"], "streams": ["default"]}),
    );
    assert_eq!(limited.status, 201, "{}", limited.body);
    let limited = limited.json()["token"].as_str().unwrap().to_owned();
    let r = server.send(
        "DELETE",
        path,
        None,
        &[("Authorization", &bearer(&limited))],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.error().contains("stream limits"), "{}", r.body);
    for bad in ["?start=soon", "?start=5&end=5", "?db=a%20b", "?color=red"] {
        let r = server.delete(&format!("{path}{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
}
