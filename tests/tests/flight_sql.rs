//! The `strata` binary's Arrow Flight SQL endpoint (`--flight-addr`) driven by real, independently
//! written clients: `pyarrow.flight` (handshake, DoPut bulk ingest, statement queries, refusals)
//! and the ADBC Flight SQL driver (statements, parameters, catalog metadata), run as Python
//! scripts from `tests/python/`. Also: rows acknowledged by DoPut survive `kill -9`, the server
//! with a Flight listener stops cleanly on SIGTERM, and every golden query (`tests/golden/`) gives
//! over Flight SQL the answer its `.csv` records for HTTP.

use std::path::PathBuf;
use std::process::Command;

use strata_tests::{Server, temp_data_dir};

const SPEED: &str = "\
adbc_speed,device=t1,fleet=north v=10.0,n=1i 1700000000000000000
adbc_speed,device=t1,fleet=north v=20.0,n=2i 1700000010000000000
adbc_speed,device=t2,fleet=south v=30.0,n=3i 1700000000000000000
adbc_speed,device=t2,fleet=south v=50.0,n=4i 1700000010000000000
";

/// Starts a server with a Flight listener on a free port.
fn start() -> (tempfile::TempDir, Server) {
    let (tmp, data) = temp_data_dir();
    let server = Server::start(&data, &["--flight-addr", "127.0.0.1:0"]);
    (tmp, server)
}

/// `grpc://127.0.0.1:PORT` of the latest "Flight SQL listening" log line.
fn flight_uri(server: &Server) -> String {
    let addr = server
        .logs()
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "Flight SQL listening")
        .and_then(|v| v["addr"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no Flight SQL address in the logs:\n{}", server.log_tail()));
    format!("grpc://{addr}")
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// Runs a Python script against `server` with a fresh read-only token; panics with its output
/// unless it exits 0.
fn run_python(server: &Server, name: &str, extra_env: &[(&str, String)]) -> String {
    let reader = server.create_token(&["read"]);
    let mut cmd = Command::new("python3");
    cmd.arg(script(name))
        .env("STRATA_FLIGHT_URI", flight_uri(server))
        .env("STRATA_ADMIN_TOKEN", server.token())
        .env("STRATA_READ_TOKEN", reader);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .expect("python3 is installed (.ci/run installs pyarrow and adbc-driver-flightsql)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed ({}):\n{stdout}\n{}\nserver logs:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    stdout
}

/// Registers device `flight-dev-1` and returns its id and key for the pyarrow script.
fn device_env(server: &Server) -> Vec<(&'static str, String)> {
    let device = server.create_device("flight-dev-1", "sensor");
    let key = device["primary_key"]
        .as_str()
        .expect("primary key")
        .to_owned();
    vec![
        ("STRATA_DEVICE_ID", "flight-dev-1".to_owned()),
        ("STRATA_DEVICE_KEY", key),
    ]
}

fn sql_json(server: &Server, sql: &str) -> serde_json::Value {
    let r = server.post(
        "/api/v1/query",
        sql.as_bytes(),
        &[("Accept", "application/json")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn pyarrow_handshake_doput_query_and_refusals() {
    let (_tmp, server) = start();
    run_python(&server, "flight_pyarrow.py", &device_env(&server));
    // What DoPut acknowledged is visible over HTTP too, tags and all.
    let rows = sql_json(
        &server,
        "SELECT device, site, temp FROM flight_env WHERE site = 'north' ORDER BY time",
    );
    assert_eq!(
        rows,
        serde_json::json!([
            {"device": "dev-a", "site": "north", "temp": 21.5},
            {"device": "dev-a", "site": "north", "temp": 22.25}
        ])
    );
}

#[test]
fn doput_acknowledged_rows_survive_kill_9() {
    let (_tmp, mut server) = start();
    run_python(&server, "flight_pyarrow.py", &device_env(&server));
    server.kill9();
    server.restart();
    let rows = sql_json(
        &server,
        "SELECT count(*) AS n, sum(count) AS total FROM flight_env",
    );
    assert_eq!(rows, serde_json::json!([{"n": 4, "total": 10}]));
    // The restarted server serves Flight SQL again on its new port.
    assert!(flight_uri(&server).starts_with("grpc://127.0.0.1:"));
    assert_eq!(server.terminate(), 0, "{}", server.log_tail());
}

#[test]
fn adbc_statements_parameters_and_metadata() {
    let (_tmp, mut server) = start();
    assert_eq!(server.write("default", SPEED).status, 204);
    run_python(&server, "flight_adbc.py", &[]);
    assert_eq!(server.terminate(), 0, "{}", server.log_tail());
    let logs = server.logs().join("\n");
    assert!(logs.contains("Flight SQL server stopped"), "{logs}");
}

#[test]
fn golden_queries_over_flight_sql_match_the_http_csv() {
    let (_tmp, server) = start();
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden");
    let data = std::fs::read_to_string(golden.join("data.lp")).expect("read tests/golden/data.lp");
    let w = server.write("default", &data);
    assert_eq!(w.status, 204, "loading data.lp: {}", w.body);
    let out = run_python(
        &server,
        "flight_golden.py",
        &[("STRATA_GOLDEN_DIR", golden.display().to_string())],
    );
    let queries = std::fs::read_dir(&golden)
        .expect("read tests/golden")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count();
    assert!(queries > 0, "no golden queries");
    assert!(
        out.contains(&format!("{queries} passed, 0 failed")),
        "{out}"
    );
}
