//! Black-box persistence tests of the registry: devices, entities, relationships, tokens,
//! revocations, disabled flags and rotated keys survive a SIGTERM restart and a `kill -9`
//! right after the change was acknowledged; the bootstrapped admin token is written once to a
//! 0600 file and keeps working; `STRATA_ADMIN_TOKEN` replaces the bootstrap.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use strata_tests::{AdminToken, Server, basic, bearer, read_admin_token, temp_data_dir};

fn telemetry_status(server: &Server, id: &str, key: &str) -> u16 {
    server
        .post(
            &format!("/api/v1/devices/{id}/telemetry/m"),
            b"m v=1 1\n",
            &[("Authorization", &basic(id, key))],
        )
        .status
}

#[test]
fn registry_survives_restart_and_kill9() {
    let (_tmp, dir) = temp_data_dir();
    let mut server = Server::start(&dir, &[]);
    let a = server.create_device("a", "m");
    let b = server.create_device("b", "m");
    let a_key = a["primary_key"].as_str().unwrap().to_owned();
    let b_key = b["primary_key"].as_str().unwrap().to_owned();
    assert_eq!(
        server
            .post_json("/api/v1/entities", &json!({"id": "site", "kind": "site"}))
            .status,
        201
    );
    let rel = json!({"source": {"entity": "site"}, "kind": "contains", "target": {"device": "a"}});
    assert_eq!(server.post_json("/api/v1/relationships", &rel).status, 201);
    let reader = server.create_token(&["read"]);
    let revoked = server
        .post_json("/api/v1/tokens", &json!({"scopes": ["write"]}))
        .json();
    let revoked_token = revoked["token"].as_str().unwrap().to_owned();

    server.terminate();
    server.restart();
    assert_eq!(server.get("/api/v1/devices/a").json()["model"], "m");
    assert_eq!(
        server.get("/api/v1/entities/site/devices").json()["devices"],
        json!(["a"])
    );
    assert_eq!(
        server.get_as("/api/v1/devices", &bearer(&reader)).status,
        200
    );
    assert_eq!(telemetry_status(&server, "a", &a_key), 204);

    // Changes acknowledged just before a crash are kept.
    assert_eq!(
        server.post("/api/v1/devices/b/disable", b"", &[]).status,
        200
    );
    let id = revoked["id"].as_str().unwrap();
    assert_eq!(server.delete(&format!("/api/v1/tokens/{id}")).status, 200);
    let rotated = server
        .post("/api/v1/devices/a/rotate-keys", b"", &[])
        .json();
    let new_key = rotated["primary_key"].as_str().unwrap().to_owned();
    assert_eq!(
        server
            .post_json("/api/v1/devices", &json!({"id": "c"}))
            .status,
        201
    );
    server.kill9();
    server.restart();

    assert_eq!(
        telemetry_status(&server, "b", &b_key),
        401,
        "still disabled"
    );
    assert_eq!(
        telemetry_status(&server, "a", &a_key),
        401,
        "old key still refused"
    );
    assert_eq!(
        telemetry_status(&server, "a", &new_key),
        204,
        "rotated key kept"
    );
    assert_eq!(
        server
            .get_as("/api/v1/devices", &bearer(&revoked_token))
            .status,
        401
    );
    assert_eq!(server.get("/api/v1/devices/c").status, 200);
    let last_seen = server.get("/api/v1/devices/a").json()["last_seen_ns"].clone();
    assert!(last_seen.is_i64() || last_seen.is_null());
    let audit = server.get("/api/v1/audit?limit=1000").json();
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "token.revoke"),
        "audit log persisted"
    );
}

#[test]
fn admin_token_bootstrap_and_environment() {
    let (_tmp, dir) = temp_data_dir();
    let mut server = Server::start_with(&dir, &[], AdminToken::Bootstrap);
    let path = dir.join("admin-token");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "admin-token must be private");
    let token = read_admin_token(&dir);
    assert!(token.starts_with("strata_"));
    let printed: Vec<String> = server
        .logs()
        .into_iter()
        .filter(|l| l.contains(&token))
        .collect();
    assert_eq!(printed.len(), 1, "{printed:?}");
    assert_eq!(server.get("/api/v1/tokens").status, 200);

    // kill -9 and restart: same token, not regenerated, not printed again.
    server.kill9();
    server.restart();
    assert_eq!(read_admin_token(&dir), token);
    assert_eq!(
        server.logs().iter().filter(|l| l.contains(&token)).count(),
        1
    );
    assert_eq!(server.get("/api/v1/tokens").status, 200);

    // STRATA_ADMIN_TOKEN installs another admin token; the bootstrapped one keeps working.
    server.terminate();
    server.set_admin(AdminToken::Env("operator-supplied-token-0123456789".into()));
    server.restart();
    assert_eq!(server.get("/api/v1/tokens").status, 200);
    assert_eq!(server.get_as("/api/v1/tokens", &bearer(&token)).status, 200);
    assert!(
        server
            .logs()
            .iter()
            .all(|l| !l.contains("operator-supplied-token"))
    );

    // Changing the environment value replaces the previous environment token.
    server.terminate();
    server.set_admin(AdminToken::Env("operator-supplied-token-rotated-99".into()));
    server.restart();
    let old = bearer("operator-supplied-token-0123456789");
    assert_eq!(server.get_as("/api/v1/tokens", &old).status, 401);
    assert_eq!(server.get("/api/v1/tokens").status, 200);
}

#[test]
fn no_print_flag_and_bad_environment_token() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start_with(&dir, &["--no-print-admin-token"], AdminToken::Bootstrap);
    let token = read_admin_token(&dir);
    assert!(server.logs().iter().all(|l| !l.contains(&token)));
    drop(server);

    let (_tmp2, dir2) = temp_data_dir();
    let out = std::process::Command::new(strata_tests::strata_binary())
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir2)
        .env("STRATA_ADMIN_TOKEN", "short")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("STRATA_ADMIN_TOKEN"), "{stderr}");
    assert!(!stderr.contains("\"short\""), "{stderr}");
}
