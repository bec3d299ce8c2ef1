//! Black-box tests of the `strata` command line: help text, rejected flag values, and a second
//! server refusing a data directory or a port that is already in use.

use std::process::{Command, Stdio};

use strata_tests::{Server, strata_binary, temp_data_dir};

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
