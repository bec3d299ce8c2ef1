//! Recovery that refuses instead of destroying, through the real binary: a data directory whose
//! MANIFEST is lost, or whose WAL has a damaged record in the middle, makes `strata serve` exit
//! with a message naming the file and `strata repair`; `strata repair` salvages every acknowledged
//! point that verifies, sets the damaged files aside, and the server then serves them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use strata_tests::{Server, strata_binary, temp_data_dir};

/// Writes `n` points (one request each, so one WAL record each) with value = timestamp.
fn write_points(server: &Server, from: i64, n: i64) {
    for t in from..from + n {
        let r = server.write("rec", &format!("m,device=d1 v={t} {t}\n"));
        assert_eq!(r.status, 204, "{}", r.body);
    }
}

fn stored_times(server: &Server) -> Vec<i64> {
    let rows = strata_tests::rows(&server.read("db=rec&stream=m").json());
    let mut t: Vec<i64> = rows.iter().map(|r| r.1).collect();
    t.sort_unstable();
    t
}

/// Runs `strata serve` on a directory it must refuse; returns its stderr.
fn serve_refuses(data: &Path) -> String {
    let out = run(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--no-mqtt",
        "--log-format",
        "text",
    ]);
    assert!(
        !out.status.success(),
        "serve started on a damaged directory"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(strata_binary())
        .args(args)
        .env_remove("STRATA_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run strata")
}

fn repair(data: &Path) -> String {
    let out = run(&["repair", "--data-dir", data.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "repair failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn wal_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

/// Start offsets of the records of a WAL file (`docs/wal.md`: a 32-byte file header, then per
/// record a u32 payload length, CRC32C, u64 sequence number and the payload).
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 32;
    while at + 16 <= bytes.len() {
        out.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 16 + len;
    }
    out
}

#[test]
fn a_lost_manifest_refuses_to_start_and_repair_brings_every_point_back() {
    let (_tmp, data) = temp_data_dir();
    let mut server = Server::start(&data, &[]);
    write_points(&server, 1, 20);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status / 100, 2);
    write_points(&server, 21, 5);
    assert_eq!(server.terminate(), 0);
    std::fs::remove_file(data.join("MANIFEST")).unwrap();

    let stderr = serve_refuses(&data);
    assert!(stderr.contains("MANIFEST is missing"), "{stderr}");
    assert!(stderr.contains("strata repair --data-dir"), "{stderr}");
    assert!(
        std::fs::read_dir(data.join("segments")).unwrap().count() > 0,
        "segments were deleted"
    );

    let report = repair(&data);
    assert!(report.contains("rebuilt the MANIFEST"), "{report}");
    server.restart();
    assert_eq!(stored_times(&server), (1..=25).collect::<Vec<_>>());
}

#[test]
fn a_damaged_wal_record_in_the_middle_refuses_and_repair_keeps_the_records_after_it() {
    let (_tmp, data) = temp_data_dir();
    let mut server = Server::start(&data, &[]);
    write_points(&server, 1, 10);
    server.kill9();
    let file = wal_files(&data)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let offsets = record_offsets(&bytes);
    assert_eq!(offsets.len(), 10);
    let fifth = offsets[4];
    bytes[fifth + 20] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();

    let stderr = serve_refuses(&data);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains(&format!("byte offset {fifth}")), "{stderr}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "refusal changed the WAL"
    );

    let report = repair(&data);
    assert!(report.contains("set aside"), "{report}");
    server.restart();
    let mut expected: Vec<i64> = (1..=4).collect();
    expected.extend(6..=10);
    assert_eq!(stored_times(&server), expected);
    let damaged = std::fs::read_dir(data.join("damaged")).unwrap().count();
    assert_eq!(damaged, 1);
}
