//! Black-box tests of `strata backup` / `strata restore` / `strata backup verify` against a running
//! server, with a `file://` target: a backup taken while a writer is busy restores to a data
//! directory whose SQL answers equal the original's and whose concurrently written stream is an
//! exact prefix of what was acknowledged; a second run copies only new segments; a run killed
//! midway leaves no complete backup and the next run resumes; a flipped byte is found by `verify`
//! and refused by `restore`. The same through S3 (a real moto server) and Azure Blob (Azurite)
//! targets: back up, back up again (only new segments), verify, restore with equal answers.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_client::fleet::FleetConfig;
use strata_client::load::{LoadConfig, Source, run};
use strata_tests::{Server, azurite, bearer, moto, s3_env, strata_binary, temp_data_dir, try_post};

fn strata(args: &[&str]) -> Output {
    strata_env(args, &[])
}

/// `strata ARGS` with extra environment (an object store's credentials and endpoint).
fn strata_env(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(strata_binary())
        .args(args)
        .env_remove("STRATA_TOKEN")
        .env_remove("STRATA_URL")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run strata")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn backup(server: &Server, target: &str, extra: &[&str]) -> Value {
    backup_env(server, target, extra, &[])
}

fn backup_env(server: &Server, target: &str, extra: &[&str], env: &[(&str, String)]) -> Value {
    let base = server.base();
    let mut args = vec![
        "backup",
        "--to",
        target,
        "--url",
        &base,
        "--token",
        server.token(),
    ];
    args.extend_from_slice(extra);
    args.push("--json");
    serde_json::from_str(&ok(&strata_env(&args, env))).expect("JSON report")
}

fn sql(server: &Server, sql: &str) -> String {
    let r = server.post("/api/v1/query", sql.as_bytes(), &[("Accept", "text/csv")]);
    assert_eq!(r.status, 200, "{sql}: {}", r.body);
    r.body
}

/// 20 trucks × 30 minutes of fleet data in `fleet`, flushed in two steps plus some in memory.
fn load_fleet(server: &Server) {
    for (i, minutes) in [(0u64, 10u64), (1, 10), (2, 10)] {
        let fleet = FleetConfig {
            trucks: 20,
            start_ns: 1_704_067_200_000_000_000 + (i * 600) as i64 * 1_000_000_000,
            duration: Duration::from_secs(minutes * 60),
            seed: i + 1,
            ..FleetConfig::default()
        };
        let cfg = LoadConfig {
            url: server.base(),
            db: "fleet".into(),
            write_path: "/api/v1/write".into(),
            connections: 2,
            batch: 500,
            progress: None,
            token: Some(server.token().to_owned()),
            tls: None,
        };
        let report = run(&cfg, Source::Fleet(fleet));
        assert_eq!(report.errors, 0, "{report}");
        if i < 2 {
            assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
        }
    }
}

const QUERIES: &[&str] = &[
    "SELECT count(*) AS n FROM fleet.readings",
    "SELECT device, count(*) AS n, min(time) AS first, max(time) AS last FROM fleet.readings GROUP BY device ORDER BY device",
    "SELECT * FROM fleet.diagnostics ORDER BY device, time",
    "SELECT device FROM last_values('fleet', 'readings') ORDER BY device",
];

#[test]
fn backup_while_writing_restores_with_equal_answers() {
    let (_tmp, dir) = temp_data_dir();
    let (_tmp_target, target_dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    load_fleet(&server);
    let dev = server.post_json(
        "/api/v1/devices",
        &serde_json::json!({"id": "truck_0", "model": "m", "attributes": {"fleet": "north"}}),
    );
    assert_eq!(dev.status, 201, "{}", dev.body);

    // A writer appends `live` rows 0, 1, 2, ... (time = i) while the backup runs.
    let stop = AtomicBool::new(false);
    let acked = AtomicU64::new(0);
    let target = format!("file://{}", target_dir.display());
    let (url, auth) = (
        server.url("/api/v1/write?db=default"),
        bearer(server.token()),
    );
    let report = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) || i < 50 {
                let body = format!("live,device=w n={i}i {i}\n");
                let r = try_post(&url, body.as_bytes(), &[("Authorization", &auth)]).unwrap();
                assert_eq!(r.status, 204, "{}", r.body);
                i += 1;
                acked.store(i, Ordering::Relaxed);
            }
        });
        while acked.load(Ordering::Relaxed) < 20 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let report = backup(&server, &target, &[]);
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        report
    });
    assert!(report["copied_bytes"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["skipped_segments"], 0);

    let (_tmp_restored, parent) = temp_data_dir();
    let restored_dir = parent.join("restored");
    let out = ok(&strata(&[
        "restore",
        "--from",
        &target,
        "--data-dir",
        restored_dir.to_str().unwrap(),
    ]));
    assert!(out.contains("restored backup"), "{out}");
    let restored = Server::start(&restored_dir, &[]);
    for q in QUERIES {
        assert_eq!(sql(&server, q), sql(&restored, q), "{q}");
    }
    // The concurrently written stream is an exact prefix: every row up to the snapshot, no gap.
    let live = sql(&restored, "SELECT n FROM live ORDER BY time");
    let values: Vec<u64> = live.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    assert!(values.len() >= 20, "{} rows", values.len());
    assert!(values.len() as u64 <= acked.load(Ordering::Relaxed));
    assert!(
        values.iter().enumerate().all(|(i, &n)| n == i as u64),
        "{values:?}"
    );
    // The registry came along.
    let got = restored.get("/api/v1/devices/truck_0");
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["attributes"]["fleet"], "north");
}

/// Object files under `dir/segments`.
/// The complete segment objects in a local backup target: the local object store writes an
/// object to a staging file (`{name}#{n}`) and renames it, so a run killed between the two
/// leaves a staging file that is no object.
fn segment_objects(target: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(target.join("segments")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| !p.to_string_lossy().contains('#'))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn incremental_runs_copy_only_new_segments_and_verify_finds_damage() {
    let (_tmp, dir) = temp_data_dir();
    let (_tmp_target, target_dir) = temp_data_dir();
    let server = Server::start(&dir, &["--compaction-trigger", "1000"]);
    let target = format!("file://{}", target_dir.display());
    let write = |from: i64| {
        let body: String = (0..500)
            .map(|i| format!("m,device=d{} v={i} {}\n", i % 7, from + i))
            .collect();
        assert_eq!(server.write("default", &body).status, 204);
        assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    };
    write(0);
    write(10_000);
    let first = backup(&server, &target, &[]);
    assert_eq!(first["skipped_segments"], 0, "{first}");
    let after_first = segment_objects(&target_dir).len();
    assert!(after_first >= 2, "{after_first} segments");
    write(20_000);
    let started = Instant::now();
    let second = backup(&server, &target, &[]);
    eprintln!("second (incremental) run: {:?} {second}", started.elapsed());
    assert_eq!(
        second["skipped_segments"].as_u64(),
        Some(after_first as u64),
        "{second}"
    );
    // Copied: the one new segment plus the per-backup files (MANIFEST, catalog, registry, WAL).
    let new_segments = segment_objects(&target_dir).len() - after_first;
    assert_eq!(new_segments, 1);
    assert!(second["copied_bytes"].as_u64() < first["copied_bytes"].as_u64().map(|b| b * 2));

    let verified = ok(&strata(&["backup", "verify", "--from", &target]));
    assert_eq!(verified.matches(": ok").count(), 2, "{verified}");

    // Flip one byte in the middle of a segment object.
    let victim = segment_objects(&target_dir).into_iter().max().unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&victim, &bytes).unwrap();
    let out = strata(&["backup", "verify", "--from", &target]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    assert!(text.contains("DAMAGED") && text.contains(&name), "{text}");
    assert!(text.contains("CRC32C"), "{text}");
    // Restore refuses the damaged backup and leaves nothing behind.
    let (_tmp_restored, parent) = temp_data_dir();
    let restored_dir = parent.join("restored");
    let out = strata(&[
        "restore",
        "--from",
        &target,
        "--data-dir",
        restored_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));
    assert!(!restored_dir.exists());
}

#[test]
fn a_killed_run_leaves_no_complete_backup_and_the_next_run_resumes() {
    let (_tmp, dir) = temp_data_dir();
    let (_tmp_target, target_dir) = temp_data_dir();
    let server = Server::start(&dir, &["--compaction-trigger", "1000"]);
    let target = format!("file://{}", target_dir.display());
    for k in 0..6 {
        let body: String = (0..2000)
            .map(|i| format!("m,device=d{} v={}.5 {}\n", i % 5, i * k, k * 100_000 + i))
            .collect();
        assert_eq!(server.write("default", &body).status, 204);
        assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    }
    // A slow run (limited rate), killed once it has copied a segment.
    let base = server.base();
    let mut child = Command::new(strata_binary())
        .args([
            "backup",
            "--to",
            &target,
            "--url",
            &base,
            "--token",
            server.token(),
        ])
        .args(["--max-rate", "0.005", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while segment_objects(&target_dir).is_empty() {
        assert!(Instant::now() < deadline, "no segment copied in time");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the slow run ended early"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let copied = segment_objects(&target_dir).len();
    let listed: Value = serde_json::from_str(&ok(&strata(&[
        "backup", "list", "--from", &target, "--json",
    ])))
    .unwrap();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 0, "{listed}");
    assert_eq!(
        listed["incomplete"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    let (_tmp_restored, parent) = temp_data_dir();
    let restored_dir = parent.join("restored");
    let out = strata(&[
        "restore",
        "--from",
        &target,
        "--data-dir",
        restored_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no complete backup"));

    let resumed = backup(&server, &target, &[]);
    assert_eq!(
        resumed["skipped_segments"].as_u64(),
        Some(copied as u64),
        "{resumed}"
    );
    let listed: Value = serde_json::from_str(&ok(&strata(&[
        "backup", "list", "--from", &target, "--json",
    ])))
    .unwrap();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        listed["incomplete"].as_array().unwrap().len(),
        0,
        "{listed}"
    );
    ok(&strata(&[
        "restore",
        "--from",
        &target,
        "--data-dir",
        restored_dir.to_str().unwrap(),
    ]));
    let restored = Server::start(&restored_dir, &[]);
    let q = "SELECT device, count(*) AS n, sum(v) AS s FROM m GROUP BY device ORDER BY device";
    assert_eq!(sql(&server, q), sql(&restored, q));
}

/// A run paced by `--max-rate` so slowly that one file's wait outlasts the server's session idle
/// release (`--backup-session-idle 2s` here) keeps its session alive (`GET /api/v1/backup/{id}`)
/// and completes; an unused session is still released after the idle time.
#[test]
fn a_slow_paced_run_keeps_its_session_alive() {
    let (_tmp, dir) = temp_data_dir();
    let (_tmp_target, target_dir) = temp_data_dir();
    let server = Server::start(&dir, &["--backup-session-idle", "2s"]);
    let target = format!("file://{}", target_dir.display());
    let body: String = (0..60_000u64)
        .map(|i| {
            let noise = i.wrapping_mul(2_654_435_761) % 100_003;
            format!(
                "m,device=d{} v={noise}.25,w={} {}\n",
                i % 7,
                i * 3,
                i * 1000
            )
        })
        .collect();
    assert_eq!(server.write("default", &body).status, 204);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);

    // The rate is set so that the largest file but the last (files are copied in the session's
    // order) alone takes 5 s: the next file is asked for after a 5 s wait, past the idle time.
    let probe = server.send_json("POST", "/api/v1/backup", &serde_json::json!({}));
    assert_eq!(probe.status, 201, "{}", probe.body);
    let probe = probe.json();
    assert_eq!(probe["idle_release_s"].as_f64(), Some(2.0), "{probe}");
    let id = probe["id"].as_str().unwrap();
    let status = server.get(&format!("/api/v1/backup/{id}"));
    assert_eq!(status.status, 200, "{}", status.body);
    let sizes: Vec<u64> = probe["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["size"].as_u64().unwrap())
        .collect();
    assert_eq!(status.json()["bytes"].as_u64(), Some(sizes.iter().sum()));
    // Unused for longer than the idle release: gone.
    std::thread::sleep(Duration::from_millis(2_500));
    let gone = server.get(&format!("/api/v1/backup/{id}"));
    assert_eq!(gone.status, 404, "{}", gone.body);

    let largest = *sizes[..sizes.len() - 1].iter().max().unwrap() as f64;
    let rate = format!("{}", largest / 5.0 / 1e6);
    let started = Instant::now();
    let report = backup(&server, &target, &["--max-rate", &rate, "--quiet"]);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the run was paced"
    );
    assert!(report["copied_bytes"].as_u64().unwrap() > 0, "{report}");
    let verified = ok(&strata(&["backup", "verify", "--from", &target]));
    assert_eq!(verified.matches(": ok").count(), 1, "{verified}");
}

#[test]
fn backups_need_an_unlimited_admin_token() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let read = server.create_token(&["read"]);
    let r = server.send(
        "POST",
        "/api/v1/backup",
        Some(b"{}"),
        &[("Authorization", &bearer(&read))],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = server.get("/api/v1/backup/nope/files/MANIFEST");
    assert_eq!(r.status, 404, "{}", r.body);
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

/// 3 trucks, one point every 10 minutes on the days 10 and 9 days ago, and a few recent points.
fn truck_lines() -> String {
    let mut out = String::new();
    for (d, device) in ["t1", "t2", "t3"].iter().enumerate() {
        for day in [10, 9, 0] {
            for m in 0..(if day == 0 { 3 } else { 144 }) {
                let t = day_start(day) + m * HOUR / 6;
                let v = d as f64 * 10.0 + m as f64 * 0.25 + day as f64;
                out.push_str(&format!("truck,device={device} speed={v} {t}\n"));
            }
        }
    }
    out
}

/// The GET document of the lifecycle policy without the parts that move (counters, last run).
fn policy_of(server: &Server) -> Value {
    let r = server.get("/api/v1/databases/default/lifecycle");
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.json();
    serde_json::json!({"policy": doc["policy"], "overrides": doc["overrides"]})
}

/// The rules without their counters (they restart at zero).
fn rules_of(server: &Server) -> Value {
    let r = server.get("/api/v1/rules");
    assert_eq!(r.status, 200, "{}", r.body);
    let mut items = r.json()["items"].clone();
    for item in items.as_array_mut().unwrap() {
        item.as_object_mut().unwrap().remove("status");
    }
    items
}

fn commands_of(server: &Server, device: &str) -> Value {
    let r = server.get(&format!("/api/v1/devices/{device}/commands"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

const ROLLUP_QUERIES: &[&str] = &[
    "SELECT device, count(*) AS windows, sum(points) AS points, sum(speed_sum) AS s FROM _rollup_1h_truck GROUP BY device ORDER BY device",
    "SELECT device, date_trunc('hour', time) AS h, avg(speed) AS v FROM truck GROUP BY device, h ORDER BY device, h",
    "SELECT device, count(*) AS n, sum(speed) AS s FROM truck GROUP BY device ORDER BY device",
    "SELECT time, speed FROM truck WHERE device = 't2' ORDER BY time",
];

#[test]
fn policies_rules_rollups_commands_and_the_cold_tier_are_restored() {
    let (_tmp, dir) = temp_data_dir();
    let (_tmp_cold, cold_dir) = temp_data_dir();
    let (_tmp_target, target_dir) = temp_data_dir();
    let cold = format!("file://{}", cold_dir.display());
    let target = format!("file://{}", target_dir.display());
    let server = Server::start(&dir, &["--cold-store", &cold]);
    // A policy with hourly rollups and a hot window that sends the old days cold, then data.
    let policy = serde_json::json!({"hot": "3d", "rollups": [{"every": "1h", "keep": "400d"}]});
    let r = server.send_json("PUT", "/api/v1/databases/default/lifecycle", &policy);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(server.write("default", &truck_lines()).status, 204);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    let r = server.post("/api/v1/lifecycle/run", b"", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["moved"].as_array().unwrap().len(), 2, "{}", r.body);
    let rule = serde_json::json!({"name": "stopped", "kind": "query", "every": "1h",
        "sql": "SELECT device FROM truck WHERE speed < 0"});
    let r = server.post_json("/api/v1/rules", &rule);
    assert_eq!(r.status, 201, "{}", r.body);
    server.create_device("pump-1", "pump");
    let r = server.post_json(
        "/api/v1/devices/pump-1/commands",
        &serde_json::json!({"name": "reboot", "payload": {"delay": 5}, "ttl": "1d"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let answers: Vec<String> = ROLLUP_QUERIES.iter().map(|q| sql(&server, q)).collect();
    assert!(answers[0].lines().count() == 4, "{}", answers[0]);

    let report = backup(&server, &target, &[]);
    let listed = report["files"].as_u64().unwrap();
    assert!(listed > 0, "{report}");
    let dir_of = target_dir
        .join("backups")
        .join(report["backup"].as_str().unwrap());
    for name in [
        "LIFECYCLE",
        "rollups.json",
        "rules.redb",
        "registry.redb",
        "COLD",
    ] {
        assert!(dir_of.join(name).exists(), "{name} is not in the backup");
    }
    let reference: Value =
        serde_json::from_slice(&std::fs::read(dir_of.join("COLD")).unwrap()).unwrap();
    assert_eq!(reference["url"], cold.as_str());
    assert_eq!(reference["objects"].as_array().unwrap().len(), 2);
    ok(&strata(&["backup", "verify", "--from", &target]));

    let (_tmp_restored, parent) = temp_data_dir();
    let restored_dir = parent.join("restored");
    let out = ok(&strata(&[
        "restore",
        "--from",
        &target,
        "--data-dir",
        restored_dir.to_str().unwrap(),
    ]));
    assert!(
        out.contains("2 of the backup's 2 cold objects present"),
        "{out}"
    );
    assert!(out.contains(&format!("--cold-store {cold}")), "{out}");
    for name in ["LIFECYCLE", "rollups.json", "rules.redb", "COLD"] {
        assert!(restored_dir.join(name).exists(), "{name} was not restored");
    }
    let restored = Server::start(&restored_dir, &["--cold-store", &cold]);
    assert_eq!(policy_of(&restored), policy_of(&server));
    assert_eq!(rules_of(&restored), rules_of(&server));
    assert_eq!(rules_of(&restored).as_array().unwrap().len(), 1);
    assert_eq!(
        commands_of(&restored, "pump-1"),
        commands_of(&server, "pump-1")
    );
    for (q, want) in ROLLUP_QUERIES.iter().zip(&answers) {
        assert_eq!(&sql(&restored, q), want, "{q}");
    }
    drop(restored);

    // An erase rewrites the cold objects: a restore of the older backup names them as gone.
    assert_eq!(server.delete("/api/v1/devices/t1/data").status, 200);
    assert_eq!(server.post("/api/v1/compact", b"", &[]).status, 200);
    let again = parent.join("again");
    let out = ok(&strata(&[
        "restore",
        "--from",
        &target,
        "--data-dir",
        again.to_str().unwrap(),
    ]));
    assert!(
        out.contains("0 of the backup's 2 cold objects present"),
        "{out}"
    );
    assert_eq!(out.matches("gone since the backup").count(), 2, "{out}");
}

/// `--with-cold` copies the cold objects (once for all backups); after the original store is
/// lost, `restore --cold-to` rebuilds a cold store from the backup and the restored server
/// answers as the original did.
#[test]
fn cold_objects_copied_with_the_backup_survive_the_loss_of_the_store() {
    let (_tmp, dir) = temp_data_dir();
    let (_tmp_cold, cold_root) = temp_data_dir();
    let (_tmp_target, target_dir) = temp_data_dir();
    let cold = format!("file://{}", cold_root.join("store").display());
    let target = format!("file://{}", target_dir.display());
    let server = Server::start(&dir, &["--cold-store", &cold]);
    let r = server.send_json(
        "PUT",
        "/api/v1/databases/default/lifecycle",
        &serde_json::json!({"hot": "3d"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(server.write("default", &truck_lines()).status, 204);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    let r = server.post("/api/v1/lifecycle/run", b"", &[]);
    assert_eq!(r.json()["moved"].as_array().unwrap().len(), 2, "{}", r.body);
    let queries = [
        "SELECT device, count(*) AS n, sum(speed) AS s, min(time) AS a, max(time) AS b FROM truck GROUP BY device ORDER BY device",
        "SELECT time, speed FROM truck WHERE device = 't3' ORDER BY time",
    ];
    let answers: Vec<String> = queries.iter().map(|q| sql(&server, q)).collect();

    let first = backup(&server, &target, &["--with-cold"]);
    let cold_copies = |dir: &Path| files_under(&dir.join("cold")).len();
    assert_eq!(cold_copies(&target_dir), 2, "{first}");
    let second = backup(&server, &target, &["--with-cold"]);
    assert_eq!(first["cold_objects_copied"], 2, "{first}");
    // The segments and both cold objects are there already.
    assert!(
        second["skipped_segments"].as_u64().unwrap() >= 1,
        "{second}"
    );
    assert_eq!(second["cold_objects_copied"], 0, "{second}");
    assert_eq!(second["cold_objects_skipped"], 2, "{second}");
    assert_eq!(cold_copies(&target_dir), 2);
    ok(&strata(&["backup", "verify", "--from", &target]));
    drop(server);
    std::fs::remove_dir_all(cold_root.join("store")).unwrap();

    let (_tmp_restored, parent) = temp_data_dir();
    let restored_dir = parent.join("restored");
    let new_cold = format!("file://{}", cold_root.join("rebuilt").display());
    let out = ok(&strata(&[
        "restore",
        "--from",
        &target,
        "--data-dir",
        restored_dir.to_str().unwrap(),
        "--cold-to",
        &new_cold,
    ]));
    assert!(out.contains("wrote 2 cold objects"), "{out}");
    assert!(
        out.contains("2 of the backup's 2 cold objects present"),
        "{out}"
    );
    let restored = Server::start(&restored_dir, &["--cold-store", &new_cold]);
    for (q, want) in queries.iter().zip(&answers) {
        assert_eq!(&sql(&restored, q), want, "{q}");
    }
}

/// Every file under `dir` (none when it does not exist).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd {
        let p = e.unwrap().path();
        match p.is_dir() {
            true => out.extend(files_under(&p)),
            false => out.push(p),
        }
    }
    out
}

#[test]
fn backup_to_s3_on_moto_verifies_and_restores() {
    let (_moto, port) = moto("backups");
    backup_verify_restore_through(&s3_env(port), "s3://backups/strata");
}

#[test]
fn backup_to_azure_blob_on_azurite_verifies_and_restores() {
    let (_azurite, env) = azurite("backups");
    backup_verify_restore_through(&env, "az://backups/strata");
}

/// Backs up to `target` (an object store reached with `env`), again after a flush (only new
/// segments), verifies both backups, restores the newest and compares SQL answers.
fn backup_verify_restore_through(env: &[(&str, String)], target: &str) {
    let env = env.to_vec();
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    load_fleet(&server);
    let first = backup_env(&server, target, &[], &env);
    assert!(first["copied_bytes"].as_u64().unwrap() > 0, "{first}");
    let more = "more,device=m v=1i 1\n";
    assert_eq!(server.write("default", more).status, 204);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    let second = backup_env(&server, target, &[], &env);
    assert!(second["skipped_segments"].as_u64().unwrap() > 0, "{second}");

    let verified = ok(&strata_env(&["backup", "verify", "--from", target], &env));
    assert_eq!(verified.matches(": ok").count(), 2, "{verified}");

    let (_tmp_restored, parent) = temp_data_dir();
    let restored_dir = parent.join("restored");
    let out = ok(&strata_env(
        &[
            "restore",
            "--from",
            target,
            "--data-dir",
            restored_dir.to_str().unwrap(),
        ],
        &env,
    ));
    assert!(out.contains("restored backup"), "{out}");
    let restored = Server::start(&restored_dir, &[]);
    for q in QUERIES {
        assert_eq!(sql(&server, q), sql(&restored, q), "{q}");
    }
    assert_eq!(sql(&restored, "SELECT v FROM more"), "v\n1\n");
}
