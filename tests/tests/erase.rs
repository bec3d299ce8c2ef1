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

const DAY: i64 = 86_400_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

fn day_start(days_ago: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    (now - days_ago * DAY).div_euclid(DAY) * DAY
}

/// Victim and bystander, one point every 10 minutes on the days 10 and 9 days ago (moved cold)
/// and 3 points today; only the victim's `note` is the marker.
fn old_and_recent_lines() -> String {
    let mut out = String::new();
    for day in [10, 9, 0] {
        for k in 0..(if day == 0 { 3 } else { 144 }) {
            let t = day_start(day) + k * HOUR / 6;
            out.push_str(&format!(
                "m,device=victim speed={k}.5,note=\"{MARKER}\" {t}\nm,device=bystander speed={k}.25,note=\"kept\" {t}\n"
            ));
        }
    }
    out
}

/// [`old_and_recent_lines`] written and flushed under `hot: 3d`, and a lifecycle run that moves
/// the two old days to the cold store (two objects).
fn two_days_moved_cold(server: &Server) {
    let r = server.send_json(
        "PUT",
        "/api/v1/databases/default/lifecycle",
        &serde_json::json!({"hot": "3d"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(server.write("default", &old_and_recent_lines()).status, 204);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    let r = server.post("/api/v1/lifecycle/run", b"", &[]);
    assert_eq!(r.json()["moved"].as_array().unwrap().len(), 2, "{}", r.body);
}

const ROLLUP_BY_DEVICE: &str = "SELECT device, count(*) AS windows, sum(points) AS points, \
     sum(speed_sum) AS s FROM _rollup_1h_m GROUP BY device ORDER BY device";

#[test]
fn erase_reaches_rollups_and_cold_objects() {
    let (_tmp, dir) = temp_data_dir();
    let (_tmp_cold, cold_dir) = temp_data_dir();
    let cold = format!("file://{}", cold_dir.display());
    let mut server = Server::start(&dir, &["--cold-store", &cold]);
    let policy = serde_json::json!({"hot": "3d", "rollups": [{"every": "1h"}]});
    let r = server.send_json("PUT", "/api/v1/databases/default/lifecycle", &policy);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(server.write("default", &old_and_recent_lines()).status, 204);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    let r = server.post("/api/v1/lifecycle/run", b"", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["moved"].as_array().unwrap().len(), 2, "{}", r.body);
    let counts = "SELECT device, count(*) AS n FROM m GROUP BY device ORDER BY device";
    assert_eq!(
        sql(&server, counts),
        "device,n\nbystander,291\nvictim,291\n"
    );
    let rollups = sql(&server, ROLLUP_BY_DEVICE);
    assert_eq!(rollups.lines().count(), 3, "{rollups}");
    let bystander_rollup = rollups.lines().nth(1).unwrap().to_owned();
    // The cold objects hold the marker before the erase.
    assert!(!files_containing(&cold_dir, MARKER.as_bytes()).is_empty());

    // A range erase first: from 10:30 on the day 10 days ago to 05:30 the day 9 days ago cuts
    // into two hourly windows, whose rollup rows are aggregated again from the raw rows left.
    let (from, to) = (day_start(10) + 21 * HOUR / 2, day_start(9) + 11 * HOUR / 2);
    let r = server.delete(&format!(
        "/api/v1/devices/victim/data?start={from}&end={to}"
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let left = 291 - (to - from) / (HOUR / 6);
    assert_eq!(
        sql(&server, counts),
        format!("device,n\nbystander,291\nvictim,{left}\n")
    );
    let raw_hourly = "SELECT date_trunc('hour', time) AS h, count(*) AS n, sum(speed) AS s \
         FROM m WHERE device = 'victim' GROUP BY h ORDER BY h";
    let from_rollup = "SELECT time AS h, points AS n, speed_sum AS s FROM _rollup_1h_m \
         WHERE device = 'victim' ORDER BY time";
    assert_eq!(sql(&server, from_rollup), sql(&server, raw_hourly));

    // Then everything: gone at once from raw, rollup and cold reads.
    let r = server.delete("/api/v1/devices/victim/data");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sql(&server, counts), "device,n\nbystander,291\n");
    let rollups = sql(&server, ROLLUP_BY_DEVICE);
    assert_eq!(
        rollups,
        format!("device,windows,points,s\n{bystander_rollup}\n")
    );

    // After maintenance no cold object and no local file holds the marker; the bystander's
    // rows are all there, from the rewritten objects.
    assert_eq!(server.post("/api/v1/compact", b"", &[]).status, 200);
    assert_eq!(
        files_containing(&cold_dir, MARKER.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        files_containing(&dir, MARKER.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(!files_containing(&cold_dir, b"kept").is_empty());
    let status = server.get("/api/v1/databases/default/lifecycle").json();
    let cold_files: u64 = status["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["tier"] == "cold")
        .map(|t| t["files"].as_u64().unwrap())
        .sum();
    assert_eq!(cold_files, 2, "{status}");
    server.kill9();
    server.restart();
    assert_eq!(sql(&server, counts), "device,n\nbystander,291\n");
    assert_eq!(
        sql(&server, ROLLUP_BY_DEVICE),
        format!("device,windows,points,s\n{bystander_rollup}\n")
    );
    assert!(
        !server
            .logs()
            .iter()
            .any(|l| l.contains("in no cold manifest")),
        "a leftover cold object"
    );
}

/// A cold store that fails while maintenance removes erased rows: compaction of the hot data
/// still runs, the failure is reported in the lifecycle status, the rows stay hidden, and the
/// next pass after the store is back finishes the job.
#[test]
fn a_failing_cold_store_delays_the_cold_rewrite_but_not_compaction() {
    let (_tmp, dir) = temp_data_dir();
    let (_tmp_cold, cold_root) = temp_data_dir();
    let store = cold_root.join("store");
    let cold = format!("file://{}", store.display());
    let server = Server::start(&dir, &["--cold-store", &cold]);
    two_days_moved_cold(&server);

    // The store breaks: its directory is replaced by a plain file (writes and reads fail).
    let away = cold_root.join("away");
    std::fs::rename(&store, &away).unwrap();
    std::fs::write(&store, b"not a directory").unwrap();
    let r = server.delete("/api/v1/devices/victim/data");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = server.post("/api/v1/compact", b"", &[]);
    assert_eq!(
        r.status, 200,
        "compaction held up by the cold store: {}",
        r.body
    );
    let status = server.get("/api/v1/databases/default/lifecycle").json();
    let error = status["cold_store"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("erased rows"), "{status}");
    assert!(!files_containing(&away, MARKER.as_bytes()).is_empty());

    // Back: the next pass rewrites the objects; the rows never came back meanwhile.
    std::fs::remove_file(&store).unwrap();
    std::fs::rename(&away, &store).unwrap();
    assert_eq!(server.post("/api/v1/compact", b"", &[]).status, 200);
    assert_eq!(
        files_containing(&store, MARKER.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    let counts = "SELECT device, count(*) AS n FROM m GROUP BY device ORDER BY device";
    assert_eq!(sql(&server, counts), "device,n\nbystander,291\n");
}

/// A backup session pins the cold objects of its snapshot: an erase's rewrite deletes the old
/// objects only after the session is gone, and an abandoned session is released after
/// `--backup-session-idle` with no further call, so the erased rows do not linger.
#[test]
fn an_abandoned_backup_session_holds_erased_cold_objects_only_until_its_idle_release() {
    let (_tmp, dir) = temp_data_dir();
    let (_tmp_cold, cold_dir) = temp_data_dir();
    let cold = format!("file://{}", cold_dir.display());
    let server = Server::start(
        &dir,
        &["--cold-store", &cold, "--backup-session-idle", "5s"],
    );
    two_days_moved_cold(&server);

    let session = server.send_json("POST", "/api/v1/backup", &serde_json::json!({}));
    assert_eq!(session.status, 201, "{}", session.body);
    assert_eq!(
        server.delete("/api/v1/devices/victim/data").status,
        200,
        "erase"
    );
    assert_eq!(server.post("/api/v1/compact", b"", &[]).status, 200);
    assert!(
        !files_containing(&cold_dir, MARKER.as_bytes()).is_empty(),
        "the session's snapshot still holds the old objects"
    );
    let status = server.get("/api/v1/databases/default/lifecycle").json();
    assert_eq!(status["cold_store"]["retired_objects"], 2, "{status}");

    // No backup call from here on: the session is released after 5 s all the same (the
    // compaction above waited 2 s for it, in vain).
    std::thread::sleep(std::time::Duration::from_millis(6_000));
    assert_eq!(server.post("/api/v1/compact", b"", &[]).status, 200);
    assert_eq!(
        files_containing(&cold_dir, MARKER.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    let status = server.get("/api/v1/databases/default/lifecycle").json();
    assert_eq!(status["cold_store"]["retired_objects"], 0, "{status}");
    assert_eq!(
        sql(
            &server,
            "SELECT device, count(*) AS n FROM m GROUP BY device"
        ),
        "device,n\nbystander,291\n"
    );
}
