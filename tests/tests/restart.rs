//! Black-box restart tests: data survives a SIGTERM restart, flushes and compactions (model-based
//! comparison), and a fleet-simulator load reads back complete before and after a restart.

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;
use strata_client::fleet::FleetConfig;
use strata_client::load::{LoadConfig, Source, run};
use strata_tests::{Model, Server, temp_data_dir};

/// Writes `n` random points (two devices, out of order, with duplicates) and records them in the model.
fn write_random(
    server: &Server,
    model: &mut Model,
    rng: &mut StdRng,
    n: usize,
    time_range: std::ops::Range<i64>,
) {
    let mut body = String::new();
    for _ in 0..n {
        let device = format!("dev{}", rng.gen_range(0..2));
        let t = rng.gen_range(time_range.clone());
        let a: i64 = rng.gen_range(-1000..1000);
        let x = f64::from(rng.gen_range(0..100_000)) / 100.0;
        body.push_str(&format!(
            "env,device={device},site=lab a={a}i,x={x},ok={} {t}\n",
            a % 2 == 0
        ));
        model.put(
            "env",
            &device,
            t,
            &[("a", json!(a)), ("x", json!(x)), ("ok", json!(a % 2 == 0))],
        );
    }
    let r = server.write("default", &body);
    assert_eq!(r.status, 204, "{}", r.body);
}

fn assert_matches(server: &Server, model: &Model) {
    let r = server.read("stream=env");
    assert_eq!(r.status, 200, "{}", r.body);
    let actual = Model::actual(&r.json());
    let expected = model.expected("env");
    assert_eq!(actual.len(), expected.len(), "row count differs");
    assert_eq!(actual, expected);
}

#[test]
fn sigterm_restart_keeps_acknowledged_data() {
    let (_tmp, dir) = temp_data_dir();
    let mut server = Server::start(&dir, &[]);
    let (mut model, mut rng) = (Model::default(), StdRng::seed_from_u64(7));
    for _ in 0..5 {
        write_random(&server, &mut model, &mut rng, 300, 0..1_000_000);
    }
    assert_matches(&server, &model);
    assert_eq!(server.terminate(), 0, "exit code after SIGTERM");
    let logs = server.logs().join("\n");
    assert!(
        logs.contains("shutdown signal received") && logs.contains("shutdown complete"),
        "{logs}"
    );
    server.restart();
    assert_matches(&server, &model);
    assert_eq!(server.health()["status"], "ok");
}

#[test]
fn flush_compact_and_restart_keep_data() {
    let (_tmp, dir) = temp_data_dir();
    let hour = 3_600_000_000_000i64;
    let mut server = Server::start(&dir, &["--partition", "1h"]);
    let (mut model, mut rng) = (Model::default(), StdRng::seed_from_u64(11));
    for _ in 0..3 {
        write_random(&server, &mut model, &mut rng, 500, 0..3 * hour);
        assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    }
    let segments_before = server.health()["engine"]["segments"].as_u64().unwrap();
    assert!(
        segments_before >= 3,
        "three flushes over three partitions: {segments_before} segments"
    );
    // Overwrite some of the flushed rows while they sit in several segments.
    write_random(&server, &mut model, &mut rng, 500, 0..3 * hour);
    assert_matches(&server, &model);

    let c = server.post("/api/v1/compact", b"", &[]);
    assert_eq!(c.status, 200, "{}", c.body);
    assert!(
        c.json()["partitions_compacted"].as_u64().unwrap() >= 1,
        "{}",
        c.body
    );
    assert_matches(&server, &model);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    assert_eq!(server.post("/api/v1/compact", b"", &[]).status, 200);
    assert!(server.health()["engine"]["segments"].as_u64().unwrap() <= 3);
    assert_matches(&server, &model);

    write_random(&server, &mut model, &mut rng, 200, 0..4 * hour);
    assert_eq!(server.terminate(), 0);
    server.restart();
    assert_matches(&server, &model);
    // A crash right after more writes: the WAL alone must bring them back.
    write_random(&server, &mut model, &mut rng, 200, 0..4 * hour);
    server.kill9();
    server.restart();
    assert_matches(&server, &model);
}

#[test]
fn sigterm_drains_in_flight_writes() {
    let (_tmp, dir) = temp_data_dir();
    let mut server = Server::start(&dir, &[]);
    let url = server.url("/api/v1/write?db=drain");
    let auth = server.auth();
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for b in 0..400i64 {
            let body: String = (0..2000)
                .map(|r| format!("d,device=x v={}i {}\n", b * 10_000 + r, b * 10_000 + r))
                .collect();
            match strata_tests::try_post(&url, body.as_bytes(), &[("Authorization", &auth)]) {
                Ok(r) if r.status == 204 => acked.push(b),
                Ok(r) => assert_eq!(r.status, 503, "{}", r.body),
                Err(_) => break,
            }
            let _ = tx.send(b);
        }
        acked
    });
    rx.recv().unwrap();
    assert_eq!(server.terminate(), 0);
    let acked = writer.join().unwrap();
    assert!(!acked.is_empty());
    server.restart();
    let present: std::collections::HashSet<i64> =
        strata_tests::rows(&server.read("db=drain&stream=d").json())
            .into_iter()
            .map(|(_, t, f)| {
                assert_eq!(f["v"].as_i64(), Some(t));
                t
            })
            .collect();
    for b in acked {
        assert!(
            (0..2000).all(|r| present.contains(&(b * 10_000 + r))),
            "acknowledged batch {b} lost"
        );
    }
}

#[test]
fn fleet_load_reads_back_complete() {
    let (_tmp, dir) = temp_data_dir();
    let mut server = Server::start(&dir, &[]);
    let fleet = FleetConfig {
        trucks: 20,
        duration: std::time::Duration::from_secs(1800),
        offline_rate: 0.01,
        ..FleetConfig::default()
    };
    let cfg = LoadConfig {
        url: server.base(),
        db: "fleet".into(),
        write_path: "/api/v1/write".into(),
        connections: 3,
        batch: 500,
        progress: None,
        token: Some(server.token().to_owned()),
        tls: None,
    };
    let report = run(&cfg, Source::Fleet(fleet));
    assert_eq!(report.errors, 0);
    assert!(report.rows > 20 * 180 * 2 * 9 / 10, "{report}");
    let count = |server: &Server| -> u64 {
        ["readings", "diagnostics"]
            .iter()
            .map(|s| {
                strata_tests::rows(&server.read(&format!("db=fleet&stream={s}")).json()).len()
                    as u64
            })
            .sum()
    };
    assert_eq!(count(&server), report.rows);
    let devices = server
        .read("db=fleet&stream=readings&fields=velocity")
        .json();
    assert_eq!(devices["series"].as_array().unwrap().len(), 20);
    assert_eq!(server.terminate(), 0);
    server.restart();
    assert_eq!(count(&server), report.rows);
}
