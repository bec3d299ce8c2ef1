//! `strata sql` against the real server: one-shot table, CSV, JSON and chart output, `-f file`, piped
//! stdin, the interactive shell (multi-line statements, `\dt`, `\d`, `\timing`, `\q`), and clear
//! errors for bad SQL, bad tokens and an unreachable server.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use strata_tests::{Server, strata_binary, temp_data_dir};

const LINES: &str = "\
speed,device=t1,fleet=north v=10.5,n=1i 1700000000000000000
speed,device=t1,fleet=north v=20.0 1700000010000000000
speed,device=t22,fleet=south v=30.0,n=3i 1700000000000000000
";

fn server_with_data() -> (tempfile::TempDir, Server) {
    let (tmp, data) = temp_data_dir();
    let server = Server::start(&data, &[]);
    assert_eq!(server.write("default", LINES).status, 204);
    (tmp, server)
}

/// Runs `strata sql ARGS` against the server with its admin token, feeding `stdin`.
fn sql(server: &Server, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(strata_binary())
        .arg("sql")
        .args(args)
        .env("STRATA_URL", server.base())
        .env("STRATA_TOKEN", server.token())
        .env_remove("STRATA_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strata sql");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for strata sql")
}

/// Whether some table line of `out` has exactly these cells (split at `|`, trimmed).
fn has_row(out: &str, cells: &[&str]) -> bool {
    out.lines()
        .map(|l| l.rsplit("> ").next().unwrap_or(l))
        .any(|l| l.split('|').map(str::trim).eq(cells.iter().copied()))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn one_shot_prints_an_aligned_table_with_row_count_and_time() {
    let (_tmp, server) = server_with_data();
    let o = sql(
        &server,
        &["SELECT device, n, v FROM speed ORDER BY device, time"],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "device | n    | v");
    assert_eq!(lines[1], "-------+------+-----");
    assert_eq!(lines[2], "t1     |    1 | 10.5");
    assert_eq!(lines[3], "t1     | NULL | 20.0");
    assert_eq!(lines[4], "t22    |    3 | 30.0");
    assert!(
        lines[5].starts_with("(3 rows, ") && lines[5].ends_with(" ms)"),
        "{out}"
    );
    assert_eq!(lines.len(), 6, "{out}");

    let o = sql(
        &server,
        &["--no-timing", "SELECT count(*) AS n FROM speed"],
        "",
    );
    assert_eq!(stdout(&o), "n\n-\n3\n(1 row)\n");
}

#[test]
fn chart_format_draws_one_line_per_device_with_times_and_legend() {
    let (_tmp, server) = server_with_data();
    let q = "SELECT time, device, v FROM speed ORDER BY time";
    let o = sql(&server, &["--format", "chart", "--no-timing", q], "");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // Braille dots drawn, the value range on the left, the time range below, one legend line
    // per device (stdout is a pipe here: no colours).
    assert!(
        out.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)),
        "{out}"
    );
    assert!(
        out.lines().next().unwrap().trim_start().starts_with("30 ┤"),
        "{out}"
    );
    assert!(out.contains("10.5 ┤"), "{out}");
    assert!(
        out.contains("2023-11-14T22:13:20Z") && out.contains("2023-11-14T22:13:30Z"),
        "{out}"
    );
    assert!(out.contains("━━ v[t1] (2 points)"), "{out}");
    assert!(out.contains("━━ v[t22] (1 points)"), "{out}");
    assert!(!out.contains('\x1b'), "{out}");

    // A result without a time column is refused with what to do.
    let o = sql(
        &server,
        &["--format", "chart", "SELECT device, v FROM speed"],
        "",
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("needs a timestamp column"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn csv_and_json_formats_are_the_servers() {
    let (_tmp, server) = server_with_data();
    let q = "SELECT device, v FROM speed WHERE fleet = 'north' ORDER BY time";
    let o = sql(&server, &["--format", "csv", q], "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "device,v\nt1,10.5\nt1,20.0\n");
    for flags in [&["--format", "json"][..], &["--json"][..]] {
        let mut args = flags.to_vec();
        args.push(q);
        let o = sql(&server, &args, "");
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON output");
        assert_eq!(
            v,
            serde_json::json!([{"device": "t1", "v": 10.5}, {"device": "t1", "v": 20.0}])
        );
    }
}

#[test]
fn file_and_piped_stdin_run_every_statement_in_order() {
    let (tmp, server) = server_with_data();
    let file = tmp.path().join("q.sql");
    std::fs::write(
        &file,
        "-- two statements; the ';' in the string does not split\n\
         SELECT 'a;b' AS s;\n\
         SELECT max(v) AS top\n  FROM speed;\n",
    )
    .unwrap();
    let o = sql(
        &server,
        &["--format", "csv", "-f", file.to_str().unwrap()],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "s\na;b\ntop\n30.0\n");

    let o = sql(
        &server,
        &["--format", "csv"],
        "SELECT count(*) AS n FROM speed WHERE fleet = 'south';",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "n\n1\n");
}

#[test]
fn interactive_shell_handles_multiline_statements_and_meta_commands() {
    let (_tmp, server) = server_with_data();
    let input = "SELECT device,\n  count(*) AS n\nFROM speed GROUP BY device ORDER BY device;\n\
                 \\dt\n\\d speed\n\\timing\nSELEC oops;\nSELECT 7 AS seven;\n\\q\nSELECT 'after quit' AS x;\n";
    let o = sql(&server, &["-i"], input);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(has_row(&out, &["t1", "2"]), "{out}");
    assert!(has_row(&out, &["t22", "1"]), "{out}");
    assert!(
        has_row(&out, &["default", "speed", "BASE TABLE"]),
        "\\dt lists the stream: {out}"
    );
    assert!(
        has_row(&out, &["fleet", "Utf8", "YES"]) && has_row(&out, &["v", "Float64", "YES"]),
        "\\d shows columns: {out}"
    );
    assert!(out.contains("Timing is off."), "{out}");
    assert!(
        out.contains("seven\n-----\n    7\n(1 row)\n"),
        "no time after \\timing: {out}"
    );
    assert!(!out.contains("after quit"), "\\q stops the shell: {out}");
    let err = stderr(&o);
    assert!(
        err.contains("ERROR: HTTP 400") && err.contains("SELEC"),
        "the shell reports the planner error and goes on: {err}"
    );
}

#[test]
fn errors_are_clear_and_exit_nonzero() {
    let (_tmp, server) = server_with_data();
    let o = sql(&server, &["SELECT nope FROM speed"], "");
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("HTTP 400") && err.contains("nope"), "{err}");
    assert!(stdout(&o).is_empty());

    let o = sql(
        &server,
        &["--token", "wrong-token-0123456789", "SELECT 1"],
        "",
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("HTTP 401"), "{}", stderr(&o));

    let o = sql(&server, &["--url", "http://127.0.0.1:1", "SELECT 1"], "");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot reach the server"),
        "{}",
        stderr(&o)
    );

    let o = sql(&server, &["-f", "/nonexistent/q.sql"], "");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot read /nonexistent/q.sql"),
        "{}",
        stderr(&o)
    );

    let o = sql(&server, &["--format", "csv"], "  -- nothing here\n");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no SQL statement"), "{}", stderr(&o));
}
