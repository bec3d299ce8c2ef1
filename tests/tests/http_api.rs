//! Black-box tests of the HTTP API: writes of every field type read back through `/api/v1/read`,
//! filters and time ranges, last-write-wins, the InfluxDB v1/v2 endpoints, gzip bodies, error
//! statuses and bodies, `/health`, `/metrics` and the catalog listings.

use std::io::Write;

use serde_json::{Value, json};
use strata_tests::{Server, rows, temp_data_dir};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn assert_status(resp: &strata_tests::Resp, status: u16) {
    assert_eq!(
        resp.status, status,
        "unexpected status, body: {}",
        resp.body
    );
}

/// Series of a read, sorted by device, as (device, tags, columns, values).
fn series(resp: &strata_tests::Resp) -> Vec<(String, Value, Value, Value)> {
    assert_status(resp, 200);
    let v = resp.json();
    let mut out: Vec<_> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["device"].as_str().unwrap().to_owned(),
                s["tags"].clone(),
                s["columns"].clone(),
                s["values"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

const WEATHER: &str = "\
weather,device=s1,site=north temp=21.5,hum=40i,count=3u,ok=true,note=\"hello world\" 1000
weather,device=s1,site=north temp=22.25,hum=41i,ok=false 2000
weather,device=s2,site=south temp=-3.5,note=\"cold, windy\" 1000
weather,device=s1,site=north temp=23,count=7u,note=\"\" 3000
";

#[test]
fn every_field_type_reads_back() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    assert_status(&server.write("default", WEATHER), 204);

    let all = series(&server.read("stream=weather"));
    assert_eq!(all.len(), 2);
    let (device, tags, columns, values) = &all[0];
    assert_eq!(device, "s1");
    assert_eq!(tags, &json!({"site": "north"}));
    assert_eq!(
        columns,
        &json!(["time", "temp", "hum", "count", "ok", "note"])
    );
    assert_eq!(
        values,
        &json!([
            [1000, 21.5, 40, 3, true, "hello world"],
            [2000, 22.25, 41, null, false, null],
            [3000, 23.0, null, 7, null, ""]
        ])
    );
    assert_eq!(
        all[1].3,
        json!([[1000, -3.5, null, null, null, "cold, windy"]])
    );
}

#[test]
fn filters_fields_and_time_ranges() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    assert_status(&server.write("env", WEATHER), 204);

    let by_device = series(&server.read("db=env&stream=weather&device=s2&fields=temp"));
    assert_eq!(by_device.len(), 1);
    assert_eq!(by_device[0].2, json!(["time", "temp"]));
    assert_eq!(by_device[0].3, json!([[1000, -3.5]]));

    let by_tag = series(&server.read("db=env&stream=weather&tag=site:north&fields=note,temp"));
    assert_eq!(by_tag.len(), 1);
    assert_eq!(by_tag[0].0, "s1");
    assert_eq!(by_tag[0].2, json!(["time", "note", "temp"]));

    let ranged =
        series(&server.read("db=env&stream=weather&device=s1&fields=temp&start=1500&end=3000"));
    assert_eq!(ranged[0].3, json!([[2000, 22.25]]));
    let rfc = series(&server.read(
        "db=env&stream=weather&device=s1&fields=temp&start=1970-01-01T00:00:00.0000015Z&end=1970-01-01T00:00:00.000003001Z&time_format=rfc3339",
    ));
    assert_eq!(
        rfc[0].3,
        json!([
            ["1970-01-01T00:00:00.000002Z", 22.25],
            ["1970-01-01T00:00:00.000003Z", 23.0]
        ])
    );

    assert!(series(&server.read("db=env&stream=weather&tag=site:east")).is_empty());
    assert!(series(&server.read("db=env&stream=weather&start=5000")).is_empty());
}

#[test]
fn out_of_order_and_duplicates_last_write_wins() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let body = "m,device=d a=3,b=30i 30\nm,device=d a=1,b=10i 10\nm,device=d a=2,b=20i 20\nm,device=d a=9 10\n";
    assert_status(&server.write("default", body), 204);
    assert_status(
        &server.write("default", "m,device=d a=2.5 20\nm,device=d b=31i 30\n"),
        204,
    );
    let s = series(&server.read("stream=m"));
    assert_eq!(s[0].3, json!([[10, 9.0, 10], [20, 2.5, 20], [30, 3.0, 31]]));
}

#[test]
fn influx_v1_and_v2_endpoints() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let token_header = format!("Token {}", server.token());
    let token = [("Authorization", token_header.as_str())];
    // InfluxDB 1.x clients send the token as the `p` query parameter...
    assert_status(
        &server.send_anonymous(
            "POST",
            &format!(
                "/write?db=v1&precision=s&rp=autogen&u=app&p={}",
                server.token()
            ),
            Some(b"cpu,host=a usage=1.5 1700000000\n"),
        ),
        204,
    );
    // ...or as the password of Basic auth.
    let basic = strata_tests::basic("app", server.token());
    assert_status(
        &server.post(
            "/write?db=v1&precision=h",
            b"cpu,host=b usage=2 10\n",
            &[("Authorization", &basic)],
        ),
        204,
    );
    assert_status(
        &server.post(
            "/api/v2/write?org=acme&bucket=v2&precision=ms",
            b"cpu,host=a usage=3 1700000000123\n",
            &token,
        ),
        204,
    );
    assert_status(
        &server.post(
            "/api/v2/write?org=acme&bucket=v2",
            b"cpu,host=a usage=4 5\n",
            &token,
        ),
        204,
    );
    assert_status(
        &server.send_anonymous("POST", "/write?db=v1&u=app&p=wrong", Some(b"cpu v=1 1\n")),
        401,
    );

    // `host` is not a device tag, so both hosts' points have an empty device and a `host` tag.
    let v1 = rows(&server.read("db=v1&stream=cpu").json());
    let mut times: Vec<i64> = v1.iter().map(|r| r.1).collect();
    times.sort();
    assert_eq!(times, vec![36_000_000_000_000, 1_700_000_000_000_000_000]);
    let v2 = rows(&server.read("db=v2&stream=cpu").json());
    assert_eq!(
        v2.iter()
            .map(|r| (r.1, r.2["usage"].clone()))
            .collect::<Vec<_>>(),
        vec![(5, json!(4.0)), (1_700_000_000_123_000_000, json!(3.0))]
    );

    let ping = server.send_anonymous("GET", "/ping", None);
    assert_status(&ping, 204);
    assert_status(
        &server.post("/api/v2/write?org=acme", b"cpu usage=1 1\n", &[]),
        400,
    );
    assert_status(
        &server.post("/write?db=v1&precision=weeks", b"cpu usage=1 1\n", &[]),
        400,
    );
}

#[test]
fn lines_without_timestamp_get_server_time() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert_status(
        &server.post("/write?precision=s", b"t,device=x v=1\n", &[]),
        204,
    );
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let r = rows(&server.read("stream=t").json());
    assert_eq!(r.len(), 1);
    assert!(
        r[0].1 % 1_000_000_000 == 0,
        "time truncated to the precision"
    );
    assert!(
        r[0].1 > before - 1_000_000_000 && r[0].1 <= after,
        "{} not in [{before}, {after}]",
        r[0].1
    );
}

#[test]
fn gzip_bodies() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    let body: String = (0..1000)
        .map(|i| format!("g,device=d{} v={i}i {}\n", i % 3, 1000 + i))
        .collect();
    let gz = gzip(body.as_bytes());
    assert_status(
        &server.post("/api/v1/write?db=gz", &gz, &[("Content-Encoding", "gzip")]),
        204,
    );
    assert_status(
        &server.post(
            "/api/v2/write?bucket=gz",
            &gzip(b"g,device=d9 v=5i 1\n"),
            &[("Content-Encoding", "gzip")],
        ),
        204,
    );
    let r = rows(&server.read("db=gz&stream=g").json());
    assert_eq!(r.len(), 1001);
    assert!(
        r.iter()
            .any(|(d, t, v)| d == "d1" && *t == 1001 && v["v"] == json!(1))
    );

    assert_status(
        &server.post(
            "/api/v1/write?db=gz",
            b"not gzip at all",
            &[("Content-Encoding", "gzip")],
        ),
        400,
    );
    assert_status(
        &server.post(
            "/api/v1/write?db=gz",
            b"g v=1i 1\n",
            &[("Content-Encoding", "br")],
        ),
        415,
    );
}

#[test]
fn error_statuses_and_bodies() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &["--max-body-mb", "1"]);
    assert_status(&server.write("default", "m,device=d temp=1.5 1\n"), 204);

    let bad = server.write("default", "m,device=d temp=1 2\nm,device=d temp= 3\n");
    assert_status(&bad, 400);
    let err = bad.json();
    assert_eq!(err["line"], json!(2), "{err}");
    assert!(err["column"].as_u64().unwrap() >= 1, "{err}");
    assert!(err["error"].as_str().unwrap().contains("line 2"), "{err}");

    let conflict = server.write("default", "m,device=d temp=\"hot\" 4\n");
    assert_status(&conflict, 400);
    let msg = conflict.json()["error"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("temp") && msg.contains("float") && msg.contains("string"),
        "{msg}"
    );

    let big: String = (0..40_000)
        .map(|i| format!("m,device=d temp={i}.5 {}\n", 10 + i))
        .collect();
    assert!(big.len() > 1 << 20);
    assert_status(&server.write("default", &big), 413);
    assert_status(
        &server.post(
            "/api/v1/write",
            &gzip(big.as_bytes()),
            &[("Content-Encoding", "gzip")],
        ),
        413,
    );

    let missing = server.read("stream=nope");
    assert_status(&missing, 404);
    assert!(missing.json()["error"].as_str().unwrap().contains("nope"));
    assert_status(&server.read("db=other&stream=m"), 404);
    assert_status(&server.read("stream=m&fields=nofield"), 400);
    assert_status(&server.read("stream=m&start=yesterday"), 400);
    assert_status(&server.read("device=d"), 400);
    assert_status(&server.write("bad%20name", "m temp=1 1\n"), 400);
    assert_status(&server.get("/no/such/endpoint"), 404);

    // The rejected writes stored nothing; the first write is intact.
    assert_eq!(series(&server.read("stream=m"))[0].3, json!([[1, 1.5]]));
}

#[test]
fn health_metrics_and_catalog() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &[]);
    assert_status(
        &server.write(
            "fleet",
            "readings,name=truck_1 lat=52.1,lon=4.3 1\ndiag,name=truck_1 status=0i 1\n",
        ),
        204,
    );
    assert_status(
        &server.write("fleet", "readings,name=truck_1 lat=oops 1\n"),
        400,
    );

    let h = server.health();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert!(h["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert!(h["recovery"]["wal_warnings"].as_array().unwrap().is_empty());
    assert!(
        h["recovery"]["segment_errors"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let m = server.get("/metrics");
    assert_status(&m, 200);
    for needle in [
        "strata_http_requests_total{endpoint=\"/api/v1/write\",status=\"204\"} 1",
        "strata_http_requests_total{endpoint=\"/api/v1/write\",status=\"400\"} 1",
        "strata_http_rows_written_total 2",
        "strata_http_values_written_total 3",
        "strata_write_duration_seconds_count 1",
        "# TYPE strata_series gauge",
    ] {
        assert!(m.body.contains(needle), "missing {needle} in\n{}", m.body);
    }

    let dbs = server.get("/api/v1/databases").json();
    assert!(
        dbs["databases"]
            .as_array()
            .unwrap()
            .contains(&json!("fleet")),
        "{dbs}"
    );
    let streams = server.get("/api/v1/streams?db=fleet").json();
    let names: Vec<&str> = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"readings") && names.contains(&"diag"),
        "{streams}"
    );
    let readings = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "readings")
        .unwrap();
    assert_eq!(
        readings["fields"],
        json!([{"name": "lat", "type": "float"}, {"name": "lon", "type": "float"}])
    );
    // `name` is a device tag by default.
    assert_eq!(
        series(&server.read("db=fleet&stream=readings"))[0].0,
        "truck_1"
    );
}
