//! Black-box security tests: every endpoint but `/health` and `/ping` needs credentials; wrong
//! keys, disabled devices, revoked and under-scoped tokens are refused with 401/403 and a clear
//! JSON message; a device may only write as itself; keys and token secrets are never returned
//! after creation, never logged (even at debug level) and never stored in clear in the registry
//! file; key rotation and disabling take effect on the very next request.

use serde_json::{Value, json};
use strata_tests::{AdminToken, Resp, Server, basic, bearer, rows, temp_data_dir};

fn assert_refused(resp: &Resp, status: u16, needle: &str) {
    assert_eq!(resp.status, status, "body: {}", resp.body);
    let msg = resp.error();
    assert!(
        msg.to_lowercase().contains(&needle.to_lowercase()),
        "error message {msg:?} lacks {needle:?}"
    );
}

fn telemetry(server: &Server, id: &str, stream: &str, auth: &str, body: &str) -> Resp {
    server.post(
        &format!("/api/v1/devices/{id}/telemetry/{stream}?db=iot"),
        body.as_bytes(),
        &[("Authorization", auth)],
    )
}

#[test]
fn every_endpoint_needs_credentials() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    assert_eq!(server.send_anonymous("GET", "/health", None).status, 200);
    assert_eq!(server.send_anonymous("GET", "/ping", None).status, 204);
    for (method, path) in [
        ("POST", "/api/v1/write"),
        ("POST", "/write?db=x"),
        ("POST", "/api/v2/write?bucket=x"),
        ("GET", "/api/v1/read?stream=x"),
        ("GET", "/api/v1/databases"),
        ("GET", "/api/v1/streams"),
        ("GET", "/api/v1/health"),
        ("GET", "/metrics"),
        ("POST", "/api/v1/flush"),
        ("POST", "/api/v1/compact"),
        ("GET", "/api/v1/devices"),
        ("POST", "/api/v1/devices"),
        ("GET", "/api/v1/devices/x"),
        ("DELETE", "/api/v1/devices/x"),
        ("POST", "/api/v1/devices/x/disable"),
        ("POST", "/api/v1/devices/x/rotate-keys"),
        ("POST", "/api/v1/devices/bulk"),
        ("POST", "/api/v1/devices/x/telemetry/s"),
        ("GET", "/api/v1/entities"),
        ("GET", "/api/v1/entities/x/devices"),
        ("GET", "/api/v1/relationships"),
        ("GET", "/api/v1/models"),
        ("GET", "/api/v1/tokens"),
        ("POST", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/x"),
        ("GET", "/api/v1/audit"),
    ] {
        let body = (method != "GET" && method != "DELETE").then_some(&b"m v=1 1"[..]);
        let r = server.send_anonymous(method, path, body);
        assert_refused(&r, 401, "missing credentials");
    }
    let garbage = server.get_as("/api/v1/databases", "Bearer not-a-token");
    assert_refused(&garbage, 401, "token");
    assert_refused(
        &server.get_as("/api/v1/databases", "Digest abc"),
        401,
        "scheme",
    );
    assert_refused(
        &server.get_as("/api/v1/databases", "Basic !!!"),
        401,
        "base64",
    );
    // The admin token itself is accepted in every supported form.
    let t = server.token().to_owned();
    for auth in [bearer(&t), format!("Token {t}"), basic("anyone", &t)] {
        assert_eq!(
            server.get_as("/api/v1/databases", &auth).status,
            200,
            "{auth}"
        );
    }
    assert_eq!(
        server
            .send_anonymous("GET", &format!("/api/v1/databases?u=x&p={t}"), None)
            .status,
        200
    );
}

#[test]
fn scopes_and_revocation() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let read = bearer(&server.create_token(&["read"]));
    let write = bearer(&server.create_token(&["write"]));
    assert_eq!(server.write("iot", "m,device=a v=1 1\n").status, 204);

    // read: reads yes, writes and admin no.
    assert_eq!(
        server.get_as("/api/v1/read?db=iot&stream=m", &read).status,
        200
    );
    assert_eq!(server.get_as("/api/v1/devices", &read).status, 200);
    assert_eq!(server.get_as("/metrics", &read).status, 200);
    let denied = server.post(
        "/api/v1/write?db=iot",
        b"m v=2 2\n",
        &[("Authorization", &read)],
    );
    assert_refused(&denied, 403, "'write' scope");
    let denied = server.post(
        "/api/v1/devices",
        br#"{"id":"x"}"#,
        &[("Authorization", &read)],
    );
    assert_refused(&denied, 403, "'admin' scope");
    assert_refused(&server.get_as("/api/v1/tokens", &read), 403, "admin");
    assert_refused(&server.get_as("/api/v1/audit", &read), 403, "admin");

    // write: writes and reads yes, admin no.
    let ok = server.post(
        "/api/v1/write?db=iot",
        b"m,device=a v=2 2\n",
        &[("Authorization", &write)],
    );
    assert_eq!(ok.status, 204, "{}", ok.body);
    assert_eq!(
        server.get_as("/api/v1/read?db=iot&stream=m", &write).status,
        200
    );
    assert_refused(
        &server.post("/api/v1/flush", b"", &[("Authorization", &write)]),
        403,
        "admin",
    );

    // Revocation takes effect on the next request.
    let tokens = server.get("/api/v1/tokens").json();
    let read_id = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scopes"] == json!(["read"]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        server.delete(&format!("/api/v1/tokens/{read_id}")).status,
        200
    );
    assert_refused(&server.get_as("/api/v1/devices", &read), 401, "revoked");
}

#[test]
fn stream_limited_tokens() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let r = server.post_json(
        "/api/v1/tokens",
        &json!({"scopes": ["write"], "streams": ["fleet"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let limited = bearer(r.json()["token"].as_str().unwrap());
    let post = |db: &str, body: &str| {
        server.post(
            &format!("/api/v1/write?db={db}"),
            body.as_bytes(),
            &[("Authorization", &limited)],
        )
    };
    assert_eq!(post("fleet", "readings,device=t v=1 1\n").status, 204);
    assert_refused(&post("other", "readings,device=t v=1 1\n"), 403, "other");
    assert_eq!(server.write("other", "cpu v=1 1\n").status, 204);
    assert_refused(
        &server.get_as("/api/v1/read?db=other&stream=cpu", &limited),
        403,
        "cpu",
    );
    assert_eq!(
        server
            .get_as("/api/v1/read?db=fleet&stream=readings", &limited)
            .status,
        200
    );
    let dbs = server.get_as("/api/v1/databases", &limited).json();
    assert_eq!(dbs["databases"], json!(["fleet"]));
    let streams = server.get_as("/api/v1/streams?db=other", &limited).json();
    assert_eq!(streams["streams"], json!([]));
}

/// Issue 14, defect 7: the public `/health` says only the status; file paths, the recovery
/// report and engine counters need a token (`/api/v1/health`).
#[test]
fn public_health_exposes_no_paths() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let public = server.send_anonymous("GET", "/health", None);
    assert_eq!(public.status, 200);
    assert_eq!(public.json(), json!({"status": "ok"}));
    assert!(!public.body.contains(dir.to_str().unwrap()));
    assert_refused(
        &server.send_anonymous("GET", "/api/v1/health", None),
        401,
        "",
    );
    let reader = bearer(&server.create_token(&["read"]));
    let detail = server.get_as("/api/v1/health", &reader);
    assert_eq!(detail.status, 200, "{}", detail.body);
    let detail = detail.json();
    assert_eq!(detail["status"], "ok");
    assert!(detail["engine"].is_object() && detail["recovery"].is_object());
}

/// Issue 14, defect 3: a limit names a database (`db`) or one stream (`db/stream`), never "a
/// database or a stream of any name": a token limited to `fleet` cannot write or read
/// `db=other&stream=fleet`, nor create databases; a stream entry does not open its database.
#[test]
fn token_limits_are_exact() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let create = |body: Value| {
        let r = server.post_json("/api/v1/tokens", &body);
        assert_eq!(r.status, 201, "{}", r.body);
        bearer(r.json()["token"].as_str().unwrap())
    };
    let fleet = create(json!({"scopes": ["write"], "streams": ["fleet"]}));
    let post = |auth: &str, db: &str, body: &str| {
        server.post(
            &format!("/api/v1/write?db={db}"),
            body.as_bytes(),
            &[("Authorization", auth)],
        )
    };
    assert_eq!(post(&fleet, "fleet", "trucks,device=t v=1 1\n").status, 204);
    assert_refused(
        &post(&fleet, "other", "fleet,device=t v=1 1\n"),
        403,
        "other",
    );
    assert_refused(
        &post(&fleet, "newdb", "trucks,device=t v=1 1\n"),
        403,
        "newdb",
    );
    assert_eq!(server.write("other", "fleet,device=t v=1 1\n").status, 204);
    assert_refused(
        &server.get_as("/api/v1/read?db=other&stream=fleet", &fleet),
        403,
        "other",
    );
    let one = create(json!({"scopes": ["write"], "streams": ["plant/power"]}));
    assert_eq!(post(&one, "plant", "power,device=p v=1 1\n").status, 204);
    assert_refused(&post(&one, "plant", "heat,device=p v=1 1\n"), 403, "heat");
    assert_refused(&post(&one, "other", "power,device=p v=1 1\n"), 403, "other");
    let dbs = server.get_as("/api/v1/databases", &fleet).json();
    assert_eq!(dbs["databases"], json!(["fleet"]));
    let r = server.post_json(
        "/api/v1/tokens",
        &json!({"scopes": ["read"], "streams": ["a/b/c"]}),
    );
    assert_refused(&r, 400, "db/stream");
}

/// Issue 14, defect 3: a token never mints a token broader than itself, in scope or limits.
#[test]
fn limited_admin_cannot_mint_broader_tokens() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let r = server.post_json(
        "/api/v1/tokens",
        &json!({"scopes": ["admin"], "streams": ["fleet"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let limited_admin = bearer(r.json()["token"].as_str().unwrap());
    let mint = |auth: &str, body: Value| {
        server.send(
            "POST",
            "/api/v1/tokens",
            Some(body.to_string().as_bytes()),
            &[
                ("Authorization", auth),
                ("Content-Type", "application/json"),
            ],
        )
    };
    assert_refused(
        &mint(&limited_admin, json!({"scopes": ["admin"]})),
        403,
        "broader",
    );
    assert_refused(
        &mint(
            &limited_admin,
            json!({"scopes": ["read"], "streams": ["other"]}),
        ),
        403,
        "broader",
    );
    let r = mint(
        &limited_admin,
        json!({"scopes": ["write"], "streams": ["fleet/trucks"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let narrow = r.json();
    assert_eq!(narrow["streams"], json!(["fleet/trucks"]));
    // A write token is refused by the admin scope of the route before any minting.
    let writer = bearer(narrow["token"].as_str().unwrap());
    assert_eq!(mint(&writer, json!({"scopes": ["read"]})).status, 403);

    // Rules (SQL over every database, actions writing anywhere) and lifecycle policies
    // (expiring any database) need an admin token without stream limits.
    let as_limited = |method: &str, path: &str, body: Option<Value>| {
        let body = body.map(|b| b.to_string());
        server.send(
            method,
            path,
            body.as_deref().map(str::as_bytes),
            &[
                ("Authorization", limited_admin.as_str()),
                ("Content-Type", "application/json"),
            ],
        )
    };
    let rule = json!({"name": "peek", "kind": "query", "sql": "SELECT * FROM plant.secret"});
    for (method, path, body) in [
        ("POST", "/api/v1/rules", Some(rule)),
        ("GET", "/api/v1/rules", None),
        (
            "PUT",
            "/api/v1/databases/plant/lifecycle",
            Some(json!({"retention": "1h"})),
        ),
        ("GET", "/api/v1/databases/plant/lifecycle", None),
        ("DELETE", "/api/v1/databases/plant/lifecycle", None),
        ("POST", "/api/v1/lifecycle/run", None),
    ] {
        assert_refused(
            &as_limited(method, path, body),
            403,
            "without stream limits",
        );
    }
    // Nor may it revoke a token broader than itself.
    let r = server.post_json("/api/v1/tokens", &json!({"scopes": ["read"]}));
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_refused(
        &as_limited("DELETE", &format!("/api/v1/tokens/{id}"), None),
        403,
        "broader",
    );
    let r = as_limited(
        "DELETE",
        &format!("/api/v1/tokens/{}", narrow["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // Nor may it mint device credentials: a device writes to every stream of the device
    // database (`default` here), which this token may not touch.
    let existing = server.create_device("meter-1", "meter");
    assert!(existing["primary_key"].is_string(), "{existing}");
    let device = json!({"id": "sneaky-1", "model": "meter", "attributes": {}});
    let bulk = json!({"devices": [{"id": "sneaky-2", "model": "meter"}]});
    let group = json!({"id": "line-9", "attributes": {}});
    for (method, path, body) in [
        ("POST", "/api/v1/devices", Some(device.clone())),
        ("POST", "/api/v1/devices/bulk", Some(bulk)),
        ("POST", "/api/v1/devices/meter-1/rotate-keys", None),
        ("POST", "/api/v1/devices/meter-1/enable", None),
        ("POST", "/api/v1/devices/meter-1/certificate", None),
        (
            "PATCH",
            "/api/v1/devices/meter-1",
            Some(json!({"thumbprint": "ab".repeat(32)})),
        ),
        ("POST", "/api/v1/enrollments", Some(group)),
        ("POST", "/api/v1/enrollments/line-9/enable", None),
    ] {
        assert_refused(
            &as_limited(method, path, body),
            403,
            "may not create or enable device credentials",
        );
    }
    assert_eq!(server.get("/api/v1/devices/sneaky-1").status, 404);
    // An admin allowed on the whole device database may.
    let r = server.post_json(
        "/api/v1/tokens",
        &json!({"scopes": ["admin"], "streams": ["default"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let device_admin = bearer(r.json()["token"].as_str().unwrap());
    let r = server.send(
        "POST",
        "/api/v1/devices",
        Some(device.to_string().as_bytes()),
        &[
            ("Authorization", device_admin.as_str()),
            ("Content-Type", "application/json"),
        ],
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

#[test]
fn device_credentials() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &["--device-database", "iot"]);
    let d1 = server.create_device("d1", "m");
    let d2 = server.create_device("d2", "m");
    let key1 = d1["primary_key"].as_str().unwrap().to_owned();
    let key1b = d1["secondary_key"].as_str().unwrap().to_owned();
    let auth1 = basic("d1", &key1);

    // Telemetry endpoint: rows stored under the device, whatever the lines say about devices.
    let r = telemetry(
        &server,
        "d1",
        "env",
        &auth1,
        "env temp=21.5 1000\nenv,site=lab temp=22 2000\n",
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        telemetry(
            &server,
            "d1",
            "env",
            &basic("d1", &key1b),
            "env,device=d1 temp=23 3000\n"
        )
        .status,
        204,
        "secondary key works and naming itself is fine"
    );
    let read = rows(&server.read("db=iot&stream=env").json());
    assert_eq!(read.len(), 3);
    assert!(read.iter().all(|(dev, _, _)| dev == "d1"), "{read:?}");

    // A device may only write as itself.
    assert_refused(
        &telemetry(&server, "d2", "env", &auth1, "env temp=1 1\n"),
        403,
        "own telemetry",
    );
    assert_refused(
        &telemetry(&server, "d1", "env", &auth1, "env,device=d2 temp=1 1\n"),
        403,
        "d2",
    );
    let generic = server.post(
        "/api/v1/write?db=iot",
        b"env,device=d2 temp=1 5\n",
        &[("Authorization", &auth1)],
    );
    assert_refused(&generic, 403, "own telemetry");
    let generic = server.post(
        "/api/v1/write?db=iot",
        b"env temp=9 9\n",
        &[("Authorization", &auth1)],
    );
    assert_eq!(
        generic.status, 204,
        "a device may use the line-protocol endpoint as itself"
    );
    assert_refused(
        &telemetry(&server, "d1", "other", &auth1, "env temp=1 1\n"),
        400,
        "measurement",
    );
    // ...and only write.
    assert_refused(
        &server.get_as("/api/v1/read?db=iot&stream=env", &auth1),
        403,
        "only write",
    );
    assert_refused(
        &server.get_as("/api/v1/devices/d1", &auth1),
        403,
        "only write",
    );

    // Wrong key, unknown device, the other device's key.
    assert_refused(
        &telemetry(
            &server,
            "d1",
            "env",
            &basic("d1", &"0".repeat(64)),
            "env t=1 1\n",
        ),
        401,
        "wrong key",
    );
    assert_refused(
        &telemetry(
            &server,
            "ghost",
            "env",
            &basic("ghost", &key1),
            "env t=1 1\n",
        ),
        401,
        "unknown device",
    );
    let key2 = d2["primary_key"].as_str().unwrap();
    assert_refused(
        &telemetry(&server, "d1", "env", &basic("d1", key2), "env t=1 1\n"),
        401,
        "wrong key",
    );

    // Disabling takes effect on the next request, with a clear message; enabling restores.
    assert_eq!(
        server.post("/api/v1/devices/d1/disable", b"", &[]).status,
        200
    );
    assert_refused(
        &telemetry(&server, "d1", "env", &auth1, "env t=1 1\n"),
        401,
        "disabled",
    );
    assert_eq!(
        server.post("/api/v1/devices/d1/enable", b"", &[]).status,
        200
    );
    assert_eq!(
        telemetry(&server, "d1", "env", &auth1, "env temp=1 4000\n").status,
        204
    );

    // Rotation: the old primary key is refused at once, the new one works, the secondary stays.
    let rotated = server
        .post("/api/v1/devices/d1/rotate-keys?slot=primary", b"", &[])
        .json();
    let new_key = rotated["primary_key"].as_str().unwrap();
    assert_refused(
        &telemetry(&server, "d1", "env", &auth1, "env temp=1 5000\n"),
        401,
        "wrong key",
    );
    assert_eq!(
        telemetry(
            &server,
            "d1",
            "env",
            &basic("d1", new_key),
            "env temp=1 5000\n"
        )
        .status,
        204
    );
    assert_eq!(
        telemetry(
            &server,
            "d1",
            "env",
            &basic("d1", &key1b),
            "env temp=1 6000\n"
        )
        .status,
        204
    );

    // Deleted devices are refused.
    assert_eq!(server.delete("/api/v1/devices/d1").status, 204);
    assert_refused(
        &telemetry(&server, "d1", "env", &basic("d1", new_key), "env t=1 1\n"),
        401,
        "unknown device",
    );

    // A write token may post telemetry for a registered device only.
    let w = bearer(&server.create_token(&["write"]));
    assert_eq!(
        telemetry(&server, "d2", "env", &w, "env temp=5 7000\n").status,
        204
    );
    assert_eq!(
        telemetry(&server, "ghost", "env", &w, "env temp=5 7000\n").status,
        404
    );
    let d2_rows = rows(&server.read("db=iot&stream=env&device=d2").json());
    assert_eq!(d2_rows.len(), 1);
}

/// Collects every string value found under keys ending in `key` or named `token`.
fn secrets_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, val) in o {
                match val.as_str() {
                    Some(s) if k.ends_with("_key") || k == "token" => out.push(s.to_owned()),
                    _ => secrets_in(val, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| secrets_in(x, out)),
        _ => {}
    }
}

#[test]
fn secrets_are_never_returned_logged_or_stored_in_clear() {
    let (_tmp, dir) = temp_data_dir();
    let mut server = Server::start_with(
        &dir,
        &["--log-level", "debug", "--device-database", "iot"],
        AdminToken::Bootstrap,
    );
    let admin = server.token().to_owned();
    assert!(admin.starts_with("strata_"), "bootstrapped token: {admin}");
    let mut secrets = vec![admin.clone()];
    let mut responses = Vec::new();

    let created = server.post_json(
        "/api/v1/devices",
        &json!({"id": "s1", "attributes": {"note": "hello"}, "primary_key": "supplied-primary-key-0001"}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["primary_key"], "supplied-primary-key-0001");
    secrets_in(&created.json(), &mut secrets);
    let bulk = server.post_json("/api/v1/devices/bulk", &json!([{"id": "s2"}, {"id": "s3"}]));
    secrets_in(&bulk.json(), &mut secrets);
    let rotated = server.post("/api/v1/devices/s2/rotate-keys", b"", &[]);
    secrets_in(&rotated.json(), &mut secrets);
    let token = server.post_json("/api/v1/tokens", &json!({"scopes": ["write"]}));
    secrets_in(&token.json(), &mut secrets);
    secrets.sort();
    secrets.dedup();
    assert_eq!(secrets.len(), 1 + 2 + 4 + 2 + 1, "{secrets:?}");
    for r in [&created, &bulk, &rotated, &token] {
        assert!(r.status < 300, "{}", r.body);
    }

    // Use the secrets: good and bad logins, writes, a failed login with a near-miss key.
    let s1 = basic("s1", "supplied-primary-key-0001");
    assert_eq!(telemetry(&server, "s1", "m", &s1, "m v=1 1\n").status, 204);
    assert_eq!(
        telemetry(
            &server,
            "s1",
            "m",
            &basic("s1", "supplied-primary-key-0002"),
            "m v=1 1\n"
        )
        .status,
        401
    );
    let tok = bearer(token.json()["token"].as_str().unwrap());
    assert_eq!(
        server
            .post("/write?db=x", b"m v=1 1\n", &[("Authorization", &tok)])
            .status,
        204
    );
    assert_eq!(
        server
            .send_anonymous(
                "POST",
                &format!("/write?db=iot&u=s1&p={}", "supplied-primary-key-0001"),
                Some(b"m v=1 2\n")
            )
            .status,
        204
    );

    // No read of the registry returns a secret.
    for path in [
        "/api/v1/devices?limit=1000",
        "/api/v1/devices/s1",
        "/api/v1/devices/s2",
        "/api/v1/tokens",
        "/api/v1/audit?limit=1000",
        "/api/v1/relationships",
    ] {
        responses.push(server.get(path));
    }
    responses.push(server.send_json("PATCH", "/api/v1/devices/s1", &json!({"model": "m"})));
    responses.push(server.post("/api/v1/devices/s1/disable", b"", &[]));
    for r in &responses {
        assert_eq!(r.status, 200, "{}", r.body);
        for s in &secrets[1..] {
            assert!(
                !r.body.contains(s.as_str()),
                "secret returned again in {}",
                r.body
            );
        }
    }

    // Not in the logs (at debug level), except the admin token's one-time plain-text banner.
    assert_eq!(server.terminate(), 0);
    let logs = server.logs();
    for s in &secrets {
        let hits: Vec<&String> = logs.iter().filter(|l| l.contains(s.as_str())).collect();
        if *s == admin {
            assert_eq!(
                hits.len(),
                1,
                "the admin token is printed exactly once: {hits:?}"
            );
            assert!(!hits[0].starts_with('{'), "never inside a JSON log record");
        } else {
            assert!(hits.is_empty(), "secret logged: {hits:?}");
        }
    }
    assert!(
        logs.iter().any(|l| l.contains("admin token written to")),
        "the log says where the admin token is"
    );

    // Not in the registry file in clear (only salted hashes are stored).
    let db = std::fs::read(dir.join("registry.redb")).unwrap();
    for s in &secrets {
        assert!(
            !db.windows(s.len()).any(|w| w == s.as_bytes()),
            "secret stored in clear in registry.redb"
        );
    }
    // Neither in the storage engine's files.
    for entry in walk(&dir) {
        if entry.ends_with("registry.redb") || entry.ends_with("admin-token") {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap();
        for s in &secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "secret in {}",
                entry.display()
            );
        }
    }

    // Restart: the bootstrap token is not printed again and still works.
    server.set_args(&[]);
    server.restart();
    let again = server
        .logs()
        .iter()
        .filter(|l| l.contains(admin.as_str()))
        .count();
    assert_eq!(again, 1, "not printed on the second start");
    assert_eq!(server.get("/api/v1/devices").status, 200);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
