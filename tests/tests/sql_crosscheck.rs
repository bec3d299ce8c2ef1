//! Strata's SQL cross-checked against an independent engine (DuckDB, from Python):
//!
//! - the fleet simulator's data is written to the real server (half of it flushed to segments,
//!   the rest left in the memtable) and to a line-protocol file; `tests/python/duckdb_crosscheck.py`
//!   loads the file into DuckDB with its own reader and compares every aggregate and time-series
//!   function (count, sum, avg, min, max, stddev/variance, correlation, exact and approximate
//!   percentiles, first/last by time, time_bucket/date_bin, date_trunc, windows) row by row;
//! - `tests/python/duckdb_golden.py` recomputes every expected file of `tests/golden` with DuckDB,
//!   so a blessed golden file cannot silently hold a wrong answer.
//!
//! Needs `python3` with the `duckdb` package (installed by `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use strata_client::fleet::{FleetConfig, FleetGenerator};
use strata_tests::{Server, temp_data_dir};

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Runs a Python script; returns its stdout, panicking with both streams when it fails.
fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(python_dir().join(script))
        .args(args)
        .output()
        .expect("cannot run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The `(agreeing, total)` of the script's last line `N of M ... agree with DuckDB`.
fn agreement(stdout: &str) -> (usize, usize) {
    let last = stdout.lines().last().unwrap_or_default();
    let words: Vec<&str> = last.split_whitespace().collect();
    assert!(
        words.len() > 3 && words[1] == "of" && last.ends_with("agree with DuckDB"),
        "unexpected summary line {last:?}"
    );
    (
        words[0].parse().expect("agreeing count"),
        words[2].parse().expect("total count"),
    )
}

/// Generates the fleet, writes it to the server in 5,000-line requests (flushing to segments
/// halfway) and to `file`.
fn load_fleet(server: &Server, cfg: &FleetConfig, file: &Path) -> usize {
    let mut generator = FleetGenerator::new(cfg);
    let mut all = Vec::new();
    let mut batches = 0;
    loop {
        let mut buf = Vec::new();
        if generator.next_batch(5_000, &mut buf).rows == 0 {
            break;
        }
        let r = server.write("default", std::str::from_utf8(&buf).expect("UTF-8"));
        assert_eq!(r.status, 204, "{}", r.body);
        all.extend_from_slice(&buf);
        batches += 1;
        if batches == 3 {
            let r = server.post("/api/v1/flush", b"", &[]);
            assert!(r.status < 300, "flush: {} {}", r.status, r.body);
        }
    }
    std::fs::write(file, &all).expect("write the fleet file");
    all.iter().filter(|b| **b == b'\n').count()
}

#[test]
fn fleet_aggregates_and_time_functions_agree_with_duckdb() {
    let (tmp, data) = temp_data_dir();
    let server = Server::start(&data, &[]);
    let cfg = FleetConfig {
        trucks: 30,
        duration: Duration::from_secs(3 * 3600),
        seed: 11,
        offline_rate: 0.01,
        ..FleetConfig::default()
    };
    let file = tmp.path().join("fleet.lp");
    let lines = load_fleet(&server, &cfg, &file);
    assert!(lines > 60_000, "generated only {lines} lines");
    let out = python(
        "duckdb_crosscheck.py",
        &[
            "--url",
            &server.base(),
            "--token",
            server.token(),
            "--lp",
            file.to_str().expect("UTF-8 path"),
        ],
    );
    let (ok, total) = agreement(&out);
    assert!(total >= 15, "{out}");
    assert_eq!(ok, total, "{out}");
}

#[test]
fn golden_expectations_agree_with_duckdb() {
    let out = python("duckdb_golden.py", &[]);
    let (ok, total) = agreement(&out);
    assert!(total >= 20, "{out}");
    assert_eq!(ok, total, "{out}");
}
