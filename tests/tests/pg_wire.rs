//! The `strata` binary's PostgreSQL wire protocol (`--pg-addr`) driven by real clients: `psql`
//! (Debian's postgresql-client: `\dt`, `information_schema`, queries, TLS with the development CA, a wrong
//! password, a read token's INSERT) and, from `tests/python/pg_clients.py`, psycopg 3,
//! SQLAlchemy and pandas (every golden query over the simple and the extended protocol equals
//! the HTTP answer, prepared statements with parameters, timestamptz, refusals, revocation).

use std::path::PathBuf;
use std::process::{Command, Output};

use strata_tests::{Server, temp_data_dir};

/// Starts a server with a PostgreSQL listener on a free port and the golden data loaded.
fn start() -> (tempfile::TempDir, Server, u16) {
    let (tmp, data) = temp_data_dir();
    let server = Server::start(&data, &["--pg-addr", "127.0.0.1:0"]);
    let port = server.logged_port("PostgreSQL listening");
    let golden = golden_dir();
    let lp = std::fs::read_to_string(golden.join("data.lp")).expect("read tests/golden/data.lp");
    let w = server.write("default", &lp);
    assert_eq!(w.status, 204, "loading data.lp: {}", w.body);
    (tmp, server, port)
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden")
}

/// Runs `psql` with `password` (an API token) and extra connection settings; returns the output.
fn psql(port: u16, password: &str, conninfo: &str, args: &[&str]) -> Output {
    Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user=analyst dbname=default {conninfo}"
        ))
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql is installed (.ci/install.d/50-postgres.sh)")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "psql failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "psql should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn psql_lists_tables_describes_and_queries() {
    let (_tmp, server, port) = start();
    let reader = server.create_token(&["read"]);
    let tables = ok(&psql(port, &reader, "sslmode=disable", &["-c", "\\dt"]));
    assert!(
        tables.contains("default") && tables.contains(" env ") && tables.contains("table"),
        "{tables}"
    );
    let columns = ok(&psql(
        port,
        &reader,
        "sslmode=disable",
        &[
            "-At",
            "-c",
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'env' ORDER BY ordinal_position",
        ],
    ));
    assert!(
        columns.starts_with("time|timestamp with time zone\ndevice|text"),
        "{columns}"
    );
    // The same query over psql (CSV) and over HTTP (floats are left out: PostgreSQL prints a
    // whole float8 as `20`, Arrow's CSV as `20.0`; pg_clients.py compares them as numbers).
    let sql = "SELECT device, count(*) AS n, count(note) AS notes FROM env GROUP BY device ORDER BY device";
    let over_pg = ok(&psql(
        port,
        &reader,
        "sslmode=disable",
        &["--csv", "-c", sql],
    ));
    let over_http = server.post("/api/v1/query", sql.as_bytes(), &[("Accept", "text/csv")]);
    assert_eq!(over_http.status, 200, "{}", over_http.body);
    assert_eq!(over_pg, over_http.body);
    // Timestamps in PostgreSQL's text form, UTC.
    let t = ok(&psql(
        port,
        &reader,
        "sslmode=disable",
        &["-At", "-c", "SELECT min(time) FROM env"],
    ));
    assert_eq!(t.trim(), "2023-12-31 23:58:20+00", "{t}");
}

#[test]
fn psql_over_tls_with_the_development_ca() {
    let (_tmp, server, port) = start();
    let reader = server.create_token(&["read"]);
    let ca = server.data_dir().join("tls").join("ca.pem");
    let conninfo = format!("sslmode=verify-full sslrootcert={}", ca.display());
    let out = ok(&psql(
        port,
        &reader,
        &conninfo,
        &["-At", "-c", "SELECT count(*) FROM env", "-c", "\\conninfo"],
    ));
    let count = server.post(
        "/api/v1/query",
        b"SELECT count(*) AS n FROM env",
        &[("Accept", "text/csv")],
    );
    let n = count.body.lines().nth(1).expect("a count").to_owned();
    assert_eq!(out.lines().next(), Some(n.as_str()), "{out}");
    assert!(out.contains("SSL connection"), "{out}");
}

#[test]
fn psql_refusals() {
    let (_tmp, server, port) = start();
    let reader = server.create_token(&["read"]);
    let e = failed(&psql(
        port,
        "strata_wrong_token",
        "sslmode=disable",
        &["-c", "SELECT 1"],
    ));
    assert!(e.contains("password authentication failed"), "{e}");
    let e = failed(&psql(
        port,
        &reader,
        "sslmode=disable",
        &["-c", "INSERT INTO env (device, temp) VALUES ('d1', 1.0)"],
    ));
    assert!(e.contains("read scope"), "{e}");
    // A write token is refused too: the SQL is read-only.
    let writer = server.create_token(&["write"]);
    let e = failed(&psql(
        port,
        &writer,
        "sslmode=disable",
        &["-c", "DROP TABLE env"],
    ));
    assert!(e.contains("read-only"), "{e}");
}

#[test]
fn psycopg_sqlalchemy_pandas_and_the_golden_queries() {
    let (_tmp, server, port) = start();
    let reader = server.create_token(&["read"]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join("pg_clients.py");
    let out = Command::new("python3")
        .arg(script)
        .env("STRATA_PG_PORT", port.to_string())
        .env("STRATA_READ_TOKEN", reader)
        .env("STRATA_GOLDEN_DIR", golden_dir())
        .env("STRATA_HTTP", server.base())
        .env("STRATA_ADMIN_TOKEN", server.token())
        .output()
        .expect("python3 is installed (.ci/install.d/50-postgres.sh installs psycopg)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pg_clients.py failed ({}):\n{stdout}\n{}\nserver logs:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );
    let queries = std::fs::read_dir(golden_dir())
        .expect("read tests/golden")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count();
    assert!(queries >= 20, "golden set missing");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(
        stdout.matches("ok golden ").count() == 2 * queries,
        "every golden query twice (simple and extended):\n{stdout}"
    );
}
