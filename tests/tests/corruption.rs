//! Corruption tests: with a segment file's bytes flipped (in its header, a chunk, or its footer)
//! and the newest WAL file cut mid-record, the server must still start, report the damaged files
//! in `/health` and the logs, fail reads that touch damaged data with a 500 naming the file, and
//! never return a wrong value; all other data reads fine and new writes are accepted.

use std::path::{Path, PathBuf};

use serde_json::json;
use strata_tests::{Model, Server, temp_data_dir};

const DAY: i64 = 86_400_000_000_000;
const ROWS: i64 = 3000;

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Writes one day of rows for a stream and records them.
fn write_day(server: &Server, model: &mut Model, stream: &str, day: i64) {
    let point = |i: i64| (day * DAY + i * 1_000_000_000, i as f64 * 0.25, i * 7 + day);
    let body: String = (0..ROWS)
        .map(|i| {
            let (t, x, n) = point(i);
            format!("{stream},device=d{} x={x},n={n}i {t}\n", i % 3)
        })
        .collect();
    assert_eq!(server.write("default", &body).status, 204);
    for i in 0..ROWS {
        let (t, x, n) = point(i);
        model.put(
            stream,
            &format!("d{}", i % 3),
            t,
            &[("x", json!(x)), ("n", json!(n))],
        );
    }
}

/// XORs 4 bytes at `offset(len)` (clamped into the file).
fn flip_bytes(path: &Path, offset: fn(usize) -> usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = offset(bytes.len()).min(bytes.len() - 4);
    for b in &mut bytes[at..at + 4] {
        *b ^= 0x5A;
    }
    std::fs::write(path, bytes).unwrap();
}

fn truncate_tail(path: &Path, cut: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    assert!(len > cut, "WAL file {} is only {len} bytes", path.display());
    f.set_len(len - cut).unwrap();
}

/// Three segments (two streams, two days), flushed; then three WAL-only writes; then a crash.
fn populate(dir: &Path) -> (Server, Model, Model) {
    let mut server = Server::start(dir, &[]);
    let mut model = Model::default();
    write_day(&server, &mut model, "a", 0);
    write_day(&server, &mut model, "a", 1);
    write_day(&server, &mut model, "b", 0);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    let mut wal_model = Model::default();
    for k in 0..3 {
        let t = 5 * DAY + k;
        let r = server.write("default", &format!("c,device=w v={k}i {t}\n"));
        assert_eq!(r.status, 204, "{}", r.body);
        wal_model.put("c", "w", t, &[("v", json!(k))]);
    }
    server.kill9();
    (server, model, wal_model)
}

/// Reads each (stream, day): exact data or a 500 naming the damaged file. Returns (ok, failed).
fn read_days(server: &Server, model: &Model, damaged: &str) -> (usize, usize) {
    let (mut ok, mut failed) = (0, 0);
    for (stream, day) in [("a", 0), ("a", 1), ("b", 0)] {
        let (start, end) = (day * DAY, (day + 1) * DAY);
        let r = server.read(&format!("stream={stream}&start={start}&end={end}"));
        match r.status {
            200 => {
                let expected: Vec<_> = model
                    .expected(stream)
                    .into_iter()
                    .filter(|(_, t, _)| (start..end).contains(t))
                    .collect();
                assert_eq!(
                    Model::actual(&r.json()),
                    expected,
                    "{stream} day {day} returned wrong data"
                );
                ok += 1;
            }
            500 => {
                assert!(
                    r.body.contains(damaged),
                    "500 without the file name {damaged}: {}",
                    r.body
                );
                failed += 1;
            }
            other => panic!("{stream} day {day}: unexpected status {other}: {}", r.body),
        }
    }
    (ok, failed)
}

/// Damages the largest segment at `offset(len)` (and tears the WAL tail when asked), restarts
/// and checks what the server reports and serves.
fn damaged_segment_scenario(offset: fn(usize) -> usize, tear_wal: bool) {
    let (_tmp, dir) = temp_data_dir();
    let (mut server, model, wal_model) = populate(&dir);
    let segments = files_in(&dir.join("segments"));
    assert!(
        segments.len() >= 3,
        "expected a segment per stream and day, found {segments:?}"
    );
    let damaged = segments
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
        .clone();
    flip_bytes(&damaged, offset);
    let seg_name = file_name(&damaged);
    let wal = files_in(&dir.join("wal")).pop().expect("a WAL file");
    if tear_wal {
        truncate_tail(&wal, 5);
    }

    server.restart();
    let h = server.health();
    assert_eq!(h["status"], "degraded", "{h}");
    let seg_errors = h["recovery"]["segment_errors"].to_string();
    assert!(
        seg_errors.contains(&seg_name),
        "health does not name {seg_name}: {h}"
    );
    assert!(
        server.logs().join("\n").contains(&seg_name),
        "segment damage not logged"
    );
    if tear_wal {
        let wal_name = file_name(&wal);
        assert!(
            h["recovery"]["wal_warnings"]
                .to_string()
                .contains(&wal_name),
            "health does not name {wal_name}: {h}"
        );
        assert!(
            server.logs().join("\n").contains(&wal_name),
            "WAL damage not logged"
        );
    }

    let (ok, failed) = read_days(&server, &model, &seg_name);
    assert!(
        failed >= 1,
        "no read touched the damaged segment {seg_name}"
    );
    assert!(ok >= 1, "undamaged data did not read back");

    // The WAL-only writes: a torn last record is gone, the records before it are intact.
    let r = server.read("stream=c");
    assert_eq!(r.status, 200, "{}", r.body);
    let mut expected = wal_model.expected("c");
    if tear_wal {
        expected.pop();
    }
    assert_eq!(Model::actual(&r.json()), expected);
    assert_eq!(
        server.write("default", "c,device=w v=9i 1\n").status,
        204,
        "writes still accepted"
    );
}

#[test]
fn damaged_chunk_and_torn_wal_are_reported_not_misread() {
    damaged_segment_scenario(|len| len / 2, true);
}

#[test]
fn damaged_segment_header_is_reported_not_misread() {
    damaged_segment_scenario(|_| 0, false);
}

#[test]
fn damaged_segment_footer_is_reported_not_misread() {
    damaged_segment_scenario(|len| len - 4, false);
}

#[test]
fn damaged_segment_index_is_reported_not_misread() {
    damaged_segment_scenario(|len| len - 64, false);
}
