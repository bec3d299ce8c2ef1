//! Golden SQL files over HTTP: starts the real server, loads `tests/golden/data.lp` into the
//! `default` database, runs every `tests/golden/NAME.sql` through `POST /api/v1/query` with
//! `Accept: text/csv` and compares the answer byte for byte with `tests/golden/NAME.csv`.
//!
//! `STRATA_BLESS=1 cargo test -p strata-tests --test golden_http` rewrites the `.csv` files from
//! the server's answers instead. A blessed file is not evidence of anything until reviewed: check
//! the diff by hand and run `python3 tests/python/duckdb_golden.py` (also run by the
//! `sql_crosscheck` test), which recomputes every expected file with DuckDB.

use std::path::{Path, PathBuf};

use strata_tests::{Server, temp_data_dir};

/// The golden directory.
fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

/// Every `NAME.sql` of the golden directory, sorted.
fn golden_queries(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    out.sort();
    out
}

/// A readable report of two differing answers: both texts, line-numbered.
fn diff(expected: &str, actual: &str) -> String {
    let mut out = String::new();
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i).copied(), a.get(i).copied());
        if x != y {
            out.push_str(&format!(
                "  line {}: expected {:?}\n  line {}:   actual {:?}\n",
                i + 1,
                x.unwrap_or("<none>"),
                i + 1,
                y.unwrap_or("<none>")
            ));
        }
    }
    out
}

/// Runs one golden query; returns a failure description, or `None` when it matches (or was blessed).
fn check(server: &Server, sql_path: &Path, bless: bool) -> Option<String> {
    let name = sql_path.file_stem()?.to_string_lossy().into_owned();
    let sql = std::fs::read_to_string(sql_path).expect("read .sql");
    let r = server.post("/api/v1/query", sql.as_bytes(), &[("Accept", "text/csv")]);
    if r.status != 200 {
        return Some(format!("{name}: HTTP {}: {}", r.status, r.body));
    }
    let csv_path = sql_path.with_extension("csv");
    if bless {
        std::fs::write(&csv_path, &r.body).expect("write .csv");
        return None;
    }
    match std::fs::read_to_string(&csv_path) {
        Ok(expected) if expected == r.body => None,
        Ok(expected) => Some(format!("{name}: differs\n{}", diff(&expected, &r.body))),
        Err(e) => Some(format!(
            "{name}: no expected result {} ({e}); bless with STRATA_BLESS=1 and review",
            csv_path.display()
        )),
    }
}

#[test]
fn golden_queries_match_expected_csv() {
    let dir = golden_dir();
    let queries = golden_queries(&dir);
    assert!(
        queries.len() >= 20,
        "expected the golden set in {}, found {} queries",
        dir.display(),
        queries.len()
    );
    let data = std::fs::read_to_string(dir.join("data.lp")).expect("read data.lp");
    let (_tmp, data_dir) = temp_data_dir();
    let server = Server::start(&data_dir, &[]);
    let w = server.write("default", &data);
    assert_eq!(w.status, 204, "loading data.lp: {}", w.body);

    let bless = std::env::var_os("STRATA_BLESS").is_some_and(|v| v == "1");
    let failures: Vec<String> = queries
        .iter()
        .filter_map(|q| check(&server, q, bless))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden queries failed:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );
}

#[test]
fn every_expected_file_has_a_query() {
    let dir = golden_dir();
    let orphans: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("list golden dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .filter(|p| !p.with_extension("sql").exists())
        .collect();
    assert!(
        orphans.is_empty(),
        "expected results without a query: {orphans:?}"
    );
}
