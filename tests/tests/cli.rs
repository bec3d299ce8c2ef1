//! Black-box tests of the `strata` command line: help text, rejected flag values, a second
//! server refusing a data directory or a port that is already in use, the MQTT default address
//! being optional while an explicit one is not, and the client commands
//! (`strata devices|entities|tokens|audit`) against a running server.

use std::process::{Command, Output, Stdio};

use serde_json::Value;
use strata_tests::{AdminToken, Server, strata_binary, temp_data_dir};

#[test]
fn help_lists_every_flag() {
    let out = Command::new(strata_binary())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--data-dir",
        "--http-addr",
        "--durability",
        "--memtable-mb",
        "--flush-age",
        "--partition",
        "--compaction-trigger",
        "--verify-on-open",
        "--device-tag",
        "--max-body-mb",
        "--shutdown-timeout",
        "--log-format",
        "--log-level",
        "--admin-token-file",
        "--no-print-admin-token",
        "127.0.0.1:7086",
        "./strata-data",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
}

#[test]
fn bad_flag_values_are_rejected() {
    for args in [
        &["serve", "--durability", "fsync"][..],
        &["serve", "--durability", "interval:0"],
        &["serve", "--memtable-mb", "-1"],
        &["serve", "--flush-age", "soon"],
        &["serve", "--max-body-mb", "0"],
        &["serve", "--log-format", "xml"],
    ] {
        let out = Command::new(strata_binary())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} should be a usage error"
        );
        assert!(!out.stderr.is_empty(), "{args:?} printed no error");
    }
}

#[test]
fn second_server_on_a_used_data_dir_or_port_refuses_to_start() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let out = Command::new(strata_binary())
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use") && stderr.contains("\"level\":\"ERROR\""),
        "{stderr}"
    );
    assert_eq!(
        server.health()["status"],
        "ok",
        "the first server is unaffected"
    );
}

/// Runs `strata ARGS --url URL` with the token in `STRATA_TOKEN` (unless `token` is `None`).
fn ctl(server: &Server, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(strata_binary());
    cmd.args(args)
        .args(["--url", &server.base()])
        .env_remove("STRATA_TOKEN")
        .env_remove("STRATA_URL")
        .env_remove("STRATA_DATA_DIR")
        .stdin(Stdio::null());
    if let Some(t) = token {
        cmd.env("STRATA_TOKEN", t);
    }
    cmd.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_out(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[test]
fn client_help_lists_commands() {
    let out = Command::new(strata_binary())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "devices", "entities", "tokens", "audit"] {
        assert!(help.contains(cmd), "help lacks {cmd}:\n{help}");
    }
    let out = Command::new(strata_binary())
        .args(["devices", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "list",
        "get",
        "create",
        "delete",
        "enable",
        "disable",
        "rotate-keys",
        "import",
        "--url",
        "--token",
        "--json",
        "--data-dir",
    ] {
        assert!(help.contains(cmd), "devices help lacks {cmd}:\n{help}");
    }
}

#[test]
fn device_commands_against_a_running_server() {
    let (tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let token = Some(server.token());

    let created = ok(&ctl(
        &server,
        token,
        &[
            "devices", "create", "cli-1", "--model", "th-100", "--attr", "floor=3", "--tag", "x",
        ],
    ));
    let key = created
        .lines()
        .find_map(|l| l.strip_prefix("primary_key"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no key in {created}"))
        .to_owned();
    assert_eq!(key.len(), 64);
    let got = json_out(&ctl(&server, token, &["devices", "get", "cli-1", "--json"]));
    assert_eq!(got["attributes"]["floor"], 3);
    assert!(!got.to_string().contains(&key));
    let table = ok(&ctl(&server, token, &["devices", "get", "cli-1"]));
    assert!(table.contains("th-100") && !table.contains(&key), "{table}");

    // Import JSON and CSV files; repeating is harmless.
    let json_file = tmp.path().join("devices.json");
    std::fs::write(
        &json_file,
        r#"[{"id": "j1", "model": "th-100"}, {"id": "j2"}]"#,
    )
    .unwrap();
    let out = ok(&ctl(
        &server,
        token,
        &["devices", "import", json_file.to_str().unwrap()],
    ));
    assert!(
        out.starts_with("id,primary_key,secondary_key\nj1,"),
        "{out}"
    );
    let csv_file = tmp.path().join("devices.csv");
    std::fs::write(&csv_file, "id,model,floor\nc1,th-200,1\nc2,th-200,2\n").unwrap();
    ok(&ctl(
        &server,
        token,
        &["devices", "import", csv_file.to_str().unwrap()],
    ));
    let again = ctl(
        &server,
        token,
        &["devices", "import", csv_file.to_str().unwrap()],
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already present 2"),
        "{again:?}"
    );
    ok(&again);

    let list = ok(&ctl(
        &server,
        token,
        &["devices", "list", "--model", "th-200"],
    ));
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(list.starts_with("ID") && list.contains("c1") && list.contains("c2"));
    let all = json_out(&ctl(
        &server,
        token,
        &["devices", "list", "--all", "--limit", "2", "--json"],
    ));
    assert_eq!(all.as_array().unwrap().len(), 5);
    let floor = json_out(&ctl(
        &server,
        token,
        &["devices", "list", "--attr", "floor=\"2\"", "--json"],
    ));
    assert_eq!(floor["items"][0]["id"], "c2");

    ok(&ctl(&server, token, &["devices", "disable", "cli-1"]));
    assert_eq!(server.get("/api/v1/devices/cli-1").json()["enabled"], false);
    ok(&ctl(&server, token, &["devices", "enable", "cli-1"]));
    let rotated = json_out(&ctl(
        &server,
        token,
        &[
            "devices",
            "rotate-keys",
            "cli-1",
            "--slot",
            "primary",
            "--json",
        ],
    ));
    assert_ne!(rotated["primary_key"].as_str().unwrap(), key);
    ok(&ctl(
        &server,
        token,
        &["devices", "update", "cli-1", "--location", "lab"],
    ));
    assert_eq!(
        server.get("/api/v1/devices/cli-1").json()["location"],
        "lab"
    );
    // A larger CSV in batches of 7: one request per batch, every device registered once, the
    // summary counts every batch, and a second run finds them all present.
    let many = tmp.path().join("many.csv");
    let rows: String = (0..25).map(|i| format!("b{i},th-300,{i}\n")).collect();
    std::fs::write(&many, format!("id,model,floor\n{rows}")).unwrap();
    let args = ["devices", "import", many.to_str().unwrap(), "--batch", "7"];
    let first = ctl(&server, token, &args);
    let out = ok(&first);
    assert_eq!(
        out.lines().filter(|l| l.starts_with('b')).count(),
        25,
        "{out}"
    );
    assert!(
        String::from_utf8_lossy(&first.stderr).contains("created 25, already present 0"),
        "{first:?}"
    );
    let again = ctl(&server, token, &args);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("created 0, already present 25"),
        "{again:?}"
    );
    let listed = ok(&ctl(
        &server,
        token,
        &["devices", "list", "--model", "th-300", "--all", "--json"],
    ));
    assert_eq!(listed.matches("\"th-300\"").count(), 25, "{listed}");

    ok(&ctl(&server, token, &["devices", "delete", "cli-1"]));
    assert_eq!(server.get("/api/v1/devices/cli-1").status, 404);

    // Errors: a clear message and exit status 1.
    let missing = ctl(&server, token, &["devices", "get", "cli-1"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("HTTP 404"),
        "{missing:?}"
    );
    let no_token = ctl(
        &server,
        None,
        &["devices", "list", "--data-dir", "/nonexistent"],
    );
    assert_eq!(no_token.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("--token"));
    let bad = ctl(&server, Some("wrong-token-value"), &["devices", "list"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("HTTP 401"),
        "{bad:?}"
    );
}

#[test]
fn entity_token_and_audit_commands() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start_with(&dir, &["--no-print-admin-token"], AdminToken::Bootstrap);
    // No token given: the admin-token file of --data-dir is used.
    let dd = dir.to_str().unwrap();
    let t = None;
    ok(&ctl(
        &server,
        t,
        &[
            "entities",
            "create",
            "site-1",
            "--kind",
            "site",
            "--data-dir",
            dd,
        ],
    ));
    ok(&ctl(
        &server,
        t,
        &[
            "entities",
            "create",
            "b-1",
            "--kind",
            "building",
            "--name",
            "Main",
            "--data-dir",
            dd,
        ],
    ));
    ok(&ctl(
        &server,
        t,
        &["devices", "create", "d1", "--data-dir", dd],
    ));
    ok(&ctl(
        &server,
        t,
        &["entities", "link", "site-1", "b-1", "--data-dir", dd],
    ));
    ok(&ctl(
        &server,
        t,
        &["entities", "link", "b-1", "device:d1", "--data-dir", dd],
    ));
    let under = ok(&ctl(
        &server,
        t,
        &["entities", "devices", "site-1", "--data-dir", dd],
    ));
    assert_eq!(under.trim(), "d1");
    let list = ok(&ctl(
        &server,
        t,
        &["entities", "list", "--kind", "building", "--data-dir", dd],
    ));
    assert!(list.contains("Main"), "{list}");
    ok(&ctl(
        &server,
        t,
        &["entities", "unlink", "b-1", "device:d1", "--data-dir", dd],
    ));
    assert_eq!(
        ok(&ctl(
            &server,
            t,
            &["entities", "devices", "site-1", "--data-dir", dd]
        ))
        .trim(),
        ""
    );

    let created = json_out(&ctl(
        &server,
        t,
        &[
            "tokens",
            "create",
            "--scope",
            "read",
            "--name",
            "grafana",
            "--json",
            "--data-dir",
            dd,
        ],
    ));
    let read_token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let list = ok(&ctl(&server, t, &["tokens", "list", "--data-dir", dd]));
    assert!(
        list.contains("grafana") && !list.contains(&read_token),
        "{list}"
    );
    // The read token can list but not change.
    ok(&ctl(&server, Some(&read_token), &["devices", "list"]));
    let denied = ctl(&server, Some(&read_token), &["devices", "create", "x"]);
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("HTTP 403"),
        "{denied:?}"
    );
    ok(&ctl(
        &server,
        t,
        &["tokens", "revoke", &id, "--data-dir", dd],
    ));
    let revoked = ctl(&server, Some(&read_token), &["devices", "list"]);
    assert!(
        String::from_utf8_lossy(&revoked.stderr).contains("revoked"),
        "{revoked:?}"
    );

    let audit = ok(&ctl(
        &server,
        t,
        &["audit", "--limit", "1000", "--data-dir", dd],
    ));
    assert!(
        audit.contains("token.revoke") && audit.contains("entity.create"),
        "{audit}"
    );
}

#[test]
fn taken_mqtt_port_default_warns_explicit_refuses() {
    // Hold 127.0.0.1:1883 ourselves (or find it already taken by someone else, e.g. a local
    // Mosquitto): either way the development default is unavailable to the server.
    let _held = std::net::TcpListener::bind("127.0.0.1:1883");
    let (_tmp, dir) = temp_data_dir();
    let mut child = Command::new(strata_binary())
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .env("STRATA_ADMIN_TOKEN", strata_tests::TEST_ADMIN_TOKEN)
        .env_remove("STRATA_MQTT_ADDR")
        .env_remove("STRATA_NO_MQTT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (mut warned, mut http_up) = (false, false);
    while !(warned && http_up) && std::time::Instant::now() < deadline {
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(line) => {
                warned |= line.contains("\"level\":\"WARN\"")
                    && line.contains("default MQTT address unavailable");
                http_up |= line.contains("\"message\":\"listening\"");
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(warned, "no warning about the taken default MQTT port");
    assert!(
        http_up && still_running,
        "the server must keep running without plain MQTT"
    );

    // An address the operator asked for that cannot be bound stops the server.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (_tmp2, dir2) = temp_data_dir();
    let out = Command::new(strata_binary())
        .args(["serve", "--http-addr", "127.0.0.1:0", "--mqtt-addr", &addr])
        .arg("--data-dir")
        .arg(&dir2)
        .env("STRATA_ADMIN_TOKEN", strata_tests::TEST_ADMIN_TOKEN)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen for MQTT"), "{stderr}");
}
