//! Storage errors keep their kind through the query engine and the server: a query that needs a
//! damaged segment chunk answers 500 naming the file (not 400), while the request's own faults
//! (a field type conflict) stay 400. The kinds that cannot be provoked from outside on this
//! machine (a full disk → 507, shutdown → 503, a poisoned lock → 500) are unit-tested in
//! `storage/src/error.rs`, `query/src/error.rs` and `server/src/error.rs`.

use std::path::Path;

use strata_tests::{Server, temp_data_dir};

/// The largest file of `dir`.
fn largest(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a segment file")
}

#[test]
fn damaged_data_is_500_on_sql_and_bad_input_stays_400() {
    let (_tmp, dir) = temp_data_dir();
    let mut s = Server::start(&dir, &[]);
    let body: String = (0..5000)
        .map(|i: i64| format!("m,device=d v={}.5,n={i}i {}\n", i % 97, i * 1_000_000_000))
        .collect();
    assert_eq!(s.write("default", &body).status, 204);
    assert_eq!(s.post("/api/v1/flush", b"", &[]).status, 204);
    assert_eq!(s.terminate(), 0);
    let segment = largest(&dir.join("segments"));
    let mut bytes = std::fs::read(&segment).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5A;
    }
    std::fs::write(&segment, bytes).unwrap();
    s.restart();

    let r = s.post(
        "/api/v1/query",
        b"SELECT time, v, n FROM m ORDER BY time",
        &[],
    );
    assert_eq!(r.status, 500, "damage is the server's failure: {}", r.body);
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    assert!(r.error().contains(&name), "{name} missing from {}", r.body);

    let conflict = s.write("default", "m,device=d v=\"text\" 1\n");
    assert_eq!(conflict.status, 400, "{}", conflict.body);
    assert!(conflict.error().contains("field 'v'"), "{}", conflict.body);
}
