//! Corruption test: with a segment file's bytes flipped and the newest WAL file cut mid-record,
//! the server must still start, report both files in `/health`, fail reads that touch the damaged
//! chunk with a 500 naming the file, and never return a wrong value; all other data reads fine.

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
    let body: String = (0..ROWS)
        .map(|i| {
            format!(
                "{stream},device=d{} x={},n={}i {}\n",
                i % 3,
                i as f64 * 0.25,
                i * 7 + day,
                day * DAY + i * 1_000_000_000
            )
        })
        .collect();
    assert_eq!(server.write("default", &body).status, 204);
    for i in 0..ROWS {
        let t = day * DAY + i * 1_000_000_000;
        model.put(
            stream,
            &format!("d{}", i % 3),
            t,
            &[("x", json!(i as f64 * 0.25)), ("n", json!(i * 7 + day))],
        );
    }
}

fn flip_bytes(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 4] {
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

#[test]
fn damaged_segment_and_torn_wal_are_reported_not_misread() {
    let (_tmp, dir) = temp_data_dir();
    let mut server = Server::start(&dir, &[]);
    let mut model = Model::default();
    write_day(&server, &mut model, "a", 0);
    write_day(&server, &mut model, "a", 1);
    write_day(&server, &mut model, "b", 0);
    assert_eq!(server.post("/api/v1/flush", b"", &[]).status, 204);
    // Three more writes that live only in the WAL; the last one will be torn.
    let mut wal_model = Model::default();
    for k in 0..3 {
        let t = 5 * DAY + k;
        assert_eq!(
            server
                .write("default", &format!("c,device=w v={k}i {t}\n"))
                .status,
            204
        );
        wal_model.put("c", "w", t, &[("v", json!(k))]);
    }
    server.kill9();

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
    flip_bytes(&damaged);
    let wal = files_in(&dir.join("wal")).pop().expect("a WAL file");
    truncate_tail(&wal, 5);
    let (seg_name, wal_name) = (file_name(&damaged), file_name(&wal));

    server.restart();
    let h = server.health();
    assert_eq!(h["status"], "degraded", "{h}");
    let seg_errors = h["recovery"]["segment_errors"].to_string();
    assert!(
        seg_errors.contains(&seg_name),
        "health does not name {seg_name}: {h}"
    );
    let wal_warnings = h["recovery"]["wal_warnings"].to_string();
    assert!(
        wal_warnings.contains(&wal_name),
        "health does not name {wal_name}: {h}"
    );
    let logs = server.logs().join("\n");
    assert!(
        logs.contains(&seg_name) && logs.contains(&wal_name),
        "damage not logged"
    );

    let (mut failed, mut ok) = (0, 0);
    for (stream, day) in [("a", 0), ("a", 1), ("b", 0)] {
        let r = server.read(&format!(
            "stream={stream}&start={}&end={}",
            day * DAY,
            (day + 1) * DAY
        ));
        match r.status {
            200 => {
                let expected: Vec<_> = model
                    .expected(stream)
                    .into_iter()
                    .filter(|(_, t, _)| *t >= day * DAY && *t < (day + 1) * DAY)
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
                    r.body.contains(&seg_name),
                    "500 without the file name: {}",
                    r.body
                );
                failed += 1;
            }
            other => panic!("{stream} day {day}: unexpected status {other}: {}", r.body),
        }
    }
    assert!(
        failed >= 1,
        "no read touched the damaged segment {seg_name}"
    );
    assert!(ok >= 1, "undamaged data did not read back");

    // The WAL-only writes: the torn last record is gone, the two before it are intact.
    let r = server.read("stream=c");
    assert_eq!(r.status, 200, "{}", r.body);
    let mut expected = wal_model.expected("c");
    expected.pop();
    assert_eq!(Model::actual(&r.json()), expected);
    // The server keeps accepting writes.
    assert_eq!(server.write("default", "c,device=w v=9i 1\n").status, 204);
}
