//! Randomized model test over HTTP: random writes (field subsets, duplicate and out-of-order
//! timestamps, several partitions), flushes, compactions, SIGTERM and SIGKILL restarts, and range
//! reads with device, tag, field and time filters, each compared with an in-memory model that
//! applies field-level last-write-wins.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use strata_tests::{Model, Server, temp_data_dir};

const SEC: i64 = 1_000_000_000;
const SPAN: i64 = 3 * 3600; // seconds: three 1h partitions
const FIELDS: [&str; 4] = ["a", "b", "c", "s"];

type Row = (String, i64, BTreeMap<String, Value>);

fn random_value(rng: &mut StdRng, field: &str) -> (String, Value) {
    match field {
        "a" => {
            let v: i64 = rng.gen_range(-1_000_000..1_000_000);
            (format!("{v}i"), json!(v))
        }
        "b" => {
            let v = f64::from(rng.gen_range(-100_000..100_000)) / 8.0;
            (format!("{v:?}"), json!(v))
        }
        "c" => {
            let v = rng.gen_bool(0.5);
            (v.to_string(), json!(v))
        }
        _ => {
            let v = format!("v{} x", rng.gen_range(0..1000));
            (format!("\"{v}\""), json!(v))
        }
    }
}

fn write_batch(server: &Server, model: &mut Model, rng: &mut StdRng) {
    let mut body = String::new();
    for _ in 0..rng.gen_range(1..200) {
        let d = rng.gen_range(0..4);
        let t = rng.gen_range(0..SPAN) * SEC;
        let mut fields = Vec::new();
        let mut text = Vec::new();
        for f in FIELDS {
            if rng.gen_bool(0.5) || (f == "s" && fields.is_empty()) {
                let (lp, v) = random_value(rng, f);
                text.push(format!("{f}={lp}"));
                fields.push((f, v));
            }
        }
        body.push_str(&format!(
            "m,device=d{d},zone=z{} {} {t}\n",
            d % 2,
            text.join(",")
        ));
        model.put("m", &format!("d{d}"), t, &fields);
    }
    let r = server.write("default", &body);
    assert_eq!(r.status, 204, "{}", r.body);
}

/// Keeps only the requested fields and drops rows left without any value.
fn project(rows: Vec<Row>, fields: &Option<Vec<&str>>) -> Vec<Row> {
    rows.into_iter()
        .map(|(d, t, mut m)| {
            if let Some(keep) = fields {
                m.retain(|k, _| keep.contains(&k.as_str()));
            }
            (d, t, m)
        })
        .filter(|(_, _, m)| !m.is_empty())
        .collect()
}

fn check_read(server: &Server, model: &Model, rng: &mut StdRng) {
    let start = rng.gen_range(0..SPAN) * SEC;
    let end = start + rng.gen_range(1..SPAN) * SEC;
    let mut query = format!("stream=m&start={start}&end={end}");
    let device = rng
        .gen_bool(0.3)
        .then(|| format!("d{}", rng.gen_range(0..4)));
    let zone = rng
        .gen_bool(0.3)
        .then(|| format!("z{}", rng.gen_range(0..2)));
    let fields: Option<Vec<&str>> = rng.gen_bool(0.5).then(|| {
        FIELDS
            .iter()
            .copied()
            .filter(|_| rng.gen_bool(0.5))
            .collect()
    });
    let fields = fields.filter(|f| !f.is_empty());
    if let Some(d) = &device {
        query.push_str(&format!("&device={d}"));
    }
    if let Some(z) = &zone {
        query.push_str(&format!("&tag=zone:{z}"));
    }
    if let Some(f) = &fields {
        query.push_str(&format!("&fields={}", f.join(",")));
    }
    let r = server.read(&query);
    if model.points.is_empty() {
        assert_eq!(
            r.status, 404,
            "no stream before the first write: {}",
            r.body
        );
        return;
    }
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    let expected: Vec<Row> = model
        .expected("m")
        .into_iter()
        .filter(|(d, t, _)| {
            let dn: usize = d[1..].parse().unwrap();
            *t >= start
                && *t < end
                && device.as_ref().is_none_or(|x| x == d)
                && zone.as_ref().is_none_or(|z| *z == format!("z{}", dn % 2))
        })
        .collect();
    let actual = project(Model::actual(&r.json()), &fields);
    let expected = project(expected, &fields);
    assert_eq!(actual.len(), expected.len(), "row count for {query}");
    assert_eq!(actual, expected, "{query}");
}

fn run_seed(seed: u64) {
    let (_tmp, dir) = temp_data_dir();
    let args = [
        "--partition",
        "1h",
        "--compaction-trigger",
        "2",
        "--memtable-mb",
        "0.1",
        "--background-interval",
        "50ms",
    ];
    let mut server = Server::start(&dir, &args);
    let (mut model, mut rng) = (Model::default(), StdRng::seed_from_u64(seed));
    for step in 0..250 {
        match rng.gen_range(0..100) {
            0..55 => write_batch(&server, &mut model, &mut rng),
            55..63 => assert_eq!(
                server.post("/api/v1/flush", b"", &[]).status,
                204,
                "seed {seed} step {step}"
            ),
            63..70 => assert_eq!(
                server.post("/api/v1/compact", b"", &[]).status,
                200,
                "seed {seed} step {step}"
            ),
            70..74 => {
                assert_eq!(server.terminate(), 0);
                server.restart();
            }
            74..78 => {
                server.kill9();
                server.restart();
            }
            _ => check_read(&server, &model, &mut rng),
        }
    }
    let full = server.read("stream=m");
    assert_eq!(
        Model::actual(&full.json()),
        model.expected("m"),
        "seed {seed}: final full read"
    );
}

#[test]
fn random_operations_match_the_model_seed_1() {
    run_seed(1);
}

#[test]
fn random_operations_match_the_model_seed_2() {
    run_seed(2);
}

#[test]
fn random_operations_match_the_model_seed_3() {
    run_seed(3);
}
