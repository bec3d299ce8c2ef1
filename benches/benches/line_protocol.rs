//! Line-protocol parser benchmarks: throughput in bytes/s and lines/s of `parse` on a realistic
//! truck-fleet payload (5,000 lines, 100 trucks, varying values), on lines full of escapes, and
//! on a payload where every line is a new series (the slow path that builds series keys).
//!
//! Run with `cargo bench -p strata-benches --bench line_protocol`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_ingest::line_protocol::{ParseOptions, Precision, parse};

/// Lines per payload.
const LINES: usize = 5_000;
const TS0: i64 = 1_700_000_000_000_000_000;
const TEN_S: i64 = 10_000_000_000;

const FLEETS: [&str; 4] = ["East", "West", "North", "South"];
const DRIVERS: [&str; 5] = ["Seth", "Trish", "Albert", "Derek", "Rodney"];
const MODELS: [&str; 3] = ["F-150", "G-2000", "H-2"];

/// `readings,name=truck_N,fleet=..,driver=..,model=.. latitude=..,...,fuel_consumption=.. ts`.
fn truck_payload() -> Vec<u8> {
    let mut r = StdRng::seed_from_u64(7);
    let mut out = String::new();
    for i in 0..LINES {
        let truck = i % 100;
        out.push_str(&format!(
            "readings,name=truck_{truck},fleet={},driver={},model={} latitude={:.2},\
             longitude={:.2},elevation={}i,velocity={:.1},heading={:.1},grade={:.1},\
             fuel_consumption={:.1} {}\n",
            FLEETS[truck % 4],
            DRIVERS[truck % 5],
            MODELS[truck % 3],
            r.gen_range(-90.0..90.0f64),
            r.gen_range(-180.0..180.0f64),
            r.gen_range(0..5000),
            r.gen_range(0.0..120.0f64),
            r.gen_range(0.0..360.0f64),
            r.gen_range(0.0..20.0f64),
            r.gen_range(0.0..40.0f64),
            TS0 + (i / 100) as i64 * TEN_S,
        ));
    }
    out.into_bytes()
}

/// Lines where every name and the string value need escapes.
fn escape_payload() -> Vec<u8> {
    let mut r = StdRng::seed_from_u64(8);
    let mut out = String::new();
    for i in 0..LINES {
        out.push_str(&format!(
            "weather\\ station,site\\ name=North\\,East\\ {},probe\\=id=a\\ b\\=c,device=st-{} \
             temp\\ c={:.1},wind\\,speed={:.1},note=\"said \\\"hi\\\" \\\\ at {}\",\
             ok\\=flag=t {}\n",
            i % 10,
            i % 50,
            r.gen_range(-20.0..40.0f64),
            r.gen_range(0.0..30.0f64),
            i,
            TS0 + i as i64 * TEN_S,
        ));
    }
    out.into_bytes()
}

/// Every line names a new device: exercises series-key construction.
fn new_series_payload() -> Vec<u8> {
    let mut r = StdRng::seed_from_u64(9);
    let mut out = String::new();
    for i in 0..LINES {
        out.push_str(&format!(
            "sensors,device=dev-{i},site=s{} temperature={:.2},humidity={:.1} {}\n",
            i % 20,
            r.gen_range(-20.0..40.0f64),
            r.gen_range(0.0..100.0f64),
            TS0 + i as i64,
        ));
    }
    out.into_bytes()
}

fn opts() -> ParseOptions {
    ParseOptions {
        precision: Precision::Nanoseconds,
        device_tags: vec!["device".into(), "name".into()],
        default_time: TS0,
    }
}

fn bench(c: &mut Criterion) {
    let payloads = [
        ("trucks", truck_payload()),
        ("escapes", escape_payload()),
        ("new_series", new_series_payload()),
    ];
    let opts = opts();
    for (name, payload) in &payloads {
        let batch = parse(payload, "db", &opts).expect("benchmark payload parses");
        assert_eq!(batch.rows(), LINES);
        eprintln!(
            "{name}: {} bytes, {LINES} lines, {:.0} bytes/line",
            payload.len(),
            payload.len() as f64 / LINES as f64
        );
    }
    let by_bytes: fn(&[u8]) -> Throughput = |p| Throughput::Bytes(p.len() as u64);
    let by_lines: fn(&[u8]) -> Throughput = |_| Throughput::Elements(LINES as u64);
    for (unit, throughput) in [("bytes", by_bytes), ("lines", by_lines)] {
        let mut group = c.benchmark_group(format!("line_protocol_{unit}"));
        group
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));
        for (name, payload) in &payloads {
            group.throughput(throughput(payload));
            group.bench_function(*name, |b| {
                b.iter(|| parse(black_box(payload), "db", &opts).expect("parses"))
            });
        }
        group.finish();
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
