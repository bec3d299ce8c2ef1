//! Column codec benchmarks: encode and decode throughput (values/s) of Strata's codecs on
//! typical telemetry shapes, compared with `pco`, plus a printed bytes-per-value table.
//!
//! Run with `cargo bench -p strata-benches --bench codecs`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_storage::StringColumn;
use strata_storage::codec::{self, Codec, CodecError};

/// Values per chunk: one segment block (`BLOCK_ROWS` in docs/format.md), about 23 hours of one
/// series at a 10 s interval.
const N: usize = 8_192;
const TS0: i64 = 1_700_000_000_000_000_000;
const TEN_S: i64 = 10_000_000_000;

// ---------------------------------------------------------------------------------------------
// Data shapes
// ---------------------------------------------------------------------------------------------

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Timestamp shapes.
fn timestamp_shapes() -> Vec<(&'static str, Vec<i64>)> {
    let mut r = rng(1);
    let mut t = TS0;
    let gaps = (0..N)
        .map(|_| {
            t += TEN_S * if r.gen_bool(0.01) { 2 } else { 1 };
            t
        })
        .collect();
    let mut r = rng(2);
    let jitter_ms = (0..N as i64)
        .map(|i| TS0 + i * TEN_S + r.gen_range(-500..=500) * 1_000_000)
        .collect();
    let mut r = rng(3);
    let jitter_ns = (0..N as i64)
        .map(|i| TS0 + i * TEN_S + r.gen_range(-5_000_000..=5_000_000))
        .collect();
    vec![
        (
            "regular-10s",
            (0..N as i64).map(|i| TS0 + i * TEN_S).collect(),
        ),
        ("gaps-1pct", gaps),
        ("jitter-500ms@ms", jitter_ms),
        ("jitter-5ms@ns", jitter_ns),
    ]
}

/// A clamped random walk with uniform continuous steps in `-step..step`, rounded to `digits`
/// decimals the way a device (or the TSBS generator) formats it.
fn walk(seed: u64, start: f64, step: f64, lo: f64, hi: f64, digits: i32) -> Vec<f64> {
    let mut r = rng(seed);
    let p = 10f64.powi(digits);
    let mut x = start;
    (0..N)
        .map(|_| {
            x = (x + r.gen_range(-step..step)).clamp(lo, hi);
            (x * p).round() / p
        })
        .collect()
}

/// Float shapes.
fn float_shapes() -> Vec<(&'static str, Vec<f64>)> {
    let mut r = rng(10);
    let mut y = 1.0f64;
    let full = (0..N)
        .map(|_| {
            y += r.gen_range(-1e-3..1e-3);
            y
        })
        .collect();
    vec![
        ("temp-1dec-slow", walk(11, 21.5, 0.06, -40.0, 80.0, 1)),
        ("fuel-1dec-tsbs", walk(12, 25.0, 5.0, 0.0, 50.0, 1)),
        ("humidity-2dec", walk(13, 55.0, 0.05, 0.0, 100.0, 2)),
        ("gps-5dec-tsbs", walk(14, 52.3, 0.005, -90.0, 90.0, 5)),
        ("velocity-int-tsbs", walk(15, 0.0, 10.0, 0.0, 100.0, 0)),
        ("full-precision", full),
    ]
}

/// Integer shapes.
fn integer_shapes() -> Vec<(&'static str, Vec<i64>)> {
    let mut r = rng(20);
    let mut c = 1_000_000i64;
    let counter = (0..N)
        .map(|_| {
            c += r.gen_range(0..100);
            c
        })
        .collect();
    let mut r = rng(21);
    let mut w = 0i64;
    let small_walk = (0..N)
        .map(|_| {
            w += r.gen_range(-3..=3);
            w
        })
        .collect();
    let mut r = rng(22);
    let random16 = (0..N).map(|_| r.gen_range(0..65_536)).collect();
    let mut r = rng(23);
    let mut s = 0i64;
    let status = (0..N)
        .map(|_| {
            if r.gen_bool(0.02) {
                s = r.gen_range(0..5);
            }
            s
        })
        .collect();
    vec![
        ("counter", counter),
        ("small-walk", small_walk),
        ("random-16bit", random16),
        ("status-runs", status),
    ]
}

fn bool_shapes() -> Vec<(&'static str, Vec<bool>)> {
    let mut r = rng(30);
    let random = (0..N).map(|_| r.gen_bool(0.5)).collect();
    let mut r = rng(31);
    let mut b = false;
    let runs = (0..N)
        .map(|_| {
            b ^= r.gen_bool(0.01);
            b
        })
        .collect();
    vec![("random", random), ("runs", runs)]
}

fn string_shapes() -> Vec<(&'static str, StringColumn)> {
    let states = [
        "idle",
        "driving",
        "loading",
        "unloading",
        "maintenance",
        "offline",
    ];
    let mut r = rng(40);
    let mut low = StringColumn::default();
    let mut unique = StringColumn::default();
    for i in 0..N {
        low.push(states[r.gen_range(0..states.len())]);
        unique.push(&format!("msg-{i:08x}-{}", r.gen_range(0..1_000_000)));
    }
    vec![("low-cardinality", low), ("unique", unique)]
}

/// One TSBS-style truck block of `N` rows: the `readings` fields, then the `diagnostics` fields (as floats,
/// status as an integer-valued float), following the generator in timescale/tsbs
/// `pkg/data/usecases/iot`.
fn truck_fields(seed: u64) -> Vec<(&'static str, Vec<f64>)> {
    let mut r = rng(seed);
    let mut load = 0.0;
    let current_load = (0..N)
        .map(|_| {
            if r.gen_bool(0.05) {
                load = r.gen_range(0.0..5000.0f64).round();
            }
            load
        })
        .collect();
    let mut fuel = 1.0f64;
    let fuel_state = (0..N)
        .map(|_| {
            fuel = (fuel + r.gen_range(-0.001..0.0)).clamp(0.0, 1.0);
            if fuel == 0.0 {
                fuel = 1.0;
            }
            (fuel * 10.0).round() / 10.0
        })
        .collect();
    let mut st = 0.0f64;
    let status = (0..N)
        .map(|_| {
            // Normal(0, 1) steps approximated by a sum of uniforms.
            let step: f64 = (0..12).map(|_| r.gen_range(0.0..1.0)).sum::<f64>() - 6.0;
            st = (st + step).clamp(0.0, 5.0);
            st.round()
        })
        .collect();
    let s = seed * 16;
    vec![
        ("latitude", walk(s + 1, 45.0, 0.005, -90.0, 90.0, 5)),
        ("longitude", walk(s + 2, 90.0, 0.005, -180.0, 180.0, 5)),
        ("elevation", walk(s + 3, 250.0, 10.0, 0.0, 5000.0, 0)),
        ("velocity", walk(s + 4, 0.0, 10.0, 0.0, 100.0, 0)),
        ("heading", walk(s + 5, 180.0, 5.0, 0.0, 360.0, 0)),
        ("grade", walk(s + 6, 0.0, 5.0, 0.0, 100.0, 0)),
        ("fuel_consumption", walk(s + 7, 25.0, 5.0, 0.0, 50.0, 1)),
        ("fuel_state", fuel_state),
        ("current_load", current_load),
        ("status", status),
    ]
}

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

fn pco_len<T: pco::data_types::Number>(values: &[T]) -> usize {
    pco::standalone::simple_compress(values, &pco::ChunkConfig::default()).map_or(0, |b| b.len())
}

fn ours<T>(values: &[T], enc: fn(&[T], &mut Vec<u8>) -> Codec) -> (Codec, usize) {
    let mut buf = Vec::new();
    let codec = enc(values, &mut buf);
    (codec, buf.len())
}

fn bpv(bytes: usize, n: usize) -> f64 {
    bytes as f64 / n as f64
}

fn print_row(ty: &str, shape: &str, codec: Codec, bytes: usize, pco: Option<usize>) {
    let pco = pco.map_or("-".to_string(), |p| format!("{:.3}", bpv(p, N)));
    println!(
        "| {ty:<10} | {shape:<18} | {:<18} | {:>7.3} | {pco:>7} |",
        codec.name(),
        bpv(bytes, N)
    );
}

/// Prints bytes per value for every shape, ours and pco's, and the truck-fleet summary.
fn print_size_table() {
    println!("\nbytes per value, {N} values per chunk");
    println!("| type       | shape              | strata codec       | strata  | pco     |");
    println!("|------------|--------------------|--------------------|---------|---------|");
    for (name, v) in timestamp_shapes() {
        let (c, b) = ours(&v, codec::encode_timestamps);
        print_row("timestamp", name, c, b, Some(pco_len(&v)));
    }
    for (name, v) in float_shapes() {
        let (c, b) = ours(&v, codec::encode_floats);
        print_row("float", name, c, b, Some(pco_len(&v)));
    }
    for (name, v) in integer_shapes() {
        let (c, b) = ours(&v, codec::encode_integers);
        print_row("integer", name, c, b, Some(pco_len(&v)));
    }
    for (name, v) in bool_shapes() {
        let (c, b) = ours(&v, codec::encode_booleans);
        print_row("boolean", name, c, b, None);
    }
    for (name, v) in string_shapes() {
        let mut buf = Vec::new();
        let c = codec::encode_strings(&v, &mut buf);
        print_row("string", name, c, buf.len(), None);
    }
    print_truck_table();
}

/// Bytes per field value of TSBS-like truck data (timestamps included in the total).
fn print_truck_table() {
    println!("\nTSBS-like truck fleet, 10 trucks x {N} rows, 10 fields + timestamps");
    println!("| field            | strata codec       | strata  | pco     |");
    println!("|------------------|--------------------|---------|---------|");
    let trucks: Vec<_> = (0..10).map(truck_fields).collect();
    let mut total = (0usize, 0usize);
    for (f, (name, _)) in trucks[0].iter().enumerate() {
        let mut sum = (0usize, 0usize);
        let mut codec = Codec::Raw;
        for t in &trucks {
            let (c, b) = ours(&t[f].1, codec::encode_floats);
            codec = c;
            sum = (sum.0 + b, sum.1 + pco_len(&t[f].1));
        }
        let n = N * trucks.len();
        println!(
            "| {name:<16} | {:<18} | {:>7.3} | {:>7.3} |",
            codec.name(),
            bpv(sum.0, n),
            bpv(sum.1, n)
        );
        total = (total.0 + sum.0, total.1 + sum.1);
    }
    let ts: Vec<i64> = (0..N as i64).map(|i| TS0 + i * TEN_S).collect();
    let (_, ts_ours) = ours(&ts, codec::encode_timestamps);
    let ts_pco = pco_len(&ts);
    // Two streams (readings, diagnostics) each store the timestamps of every truck.
    let ts_total = (2 * trucks.len() * ts_ours, 2 * trucks.len() * ts_pco);
    let values = N * trucks.len() * trucks[0].len();
    println!(
        "| ALL (+timestamps)| per field value    | {:>7.3} | {:>7.3} |",
        bpv(total.0 + ts_total.0, values),
        bpv(total.1 + ts_total.1, values)
    );
}

// ---------------------------------------------------------------------------------------------
// Throughput
// ---------------------------------------------------------------------------------------------

type Enc<T> = fn(&[T], &mut Vec<u8>) -> Codec;
type Dec<T> = fn(Codec, &[u8], usize, &mut Vec<T>) -> Result<(), CodecError>;

/// Benchmarks our encoder and decoder on one shape.
fn bench_ours<T>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    shape: &str,
    values: &[T],
    enc: Enc<T>,
    dec: Dec<T>,
) {
    let mut buf = Vec::new();
    let codec = enc(values, &mut buf);
    g.bench_function(format!("encode/{shape}/strata-{}", codec.name()), |b| {
        let mut out = Vec::with_capacity(buf.len() * 2);
        b.iter(|| {
            out.clear();
            black_box(enc(black_box(values), &mut out));
        })
    });
    g.bench_function(format!("decode/{shape}/strata-{}", codec.name()), |b| {
        let mut out = Vec::with_capacity(values.len());
        b.iter(|| {
            out.clear();
            dec(codec, black_box(&buf), values.len(), &mut out).expect("decodes");
            black_box(out.len());
        })
    });
}

/// Benchmarks pco's standalone compressor and decompressor on one shape.
fn bench_pco<T: pco::data_types::Number>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    shape: &str,
    values: &[T],
) {
    let config = pco::ChunkConfig::default();
    let bytes = pco::standalone::simple_compress(values, &config).expect("pco compresses");
    g.bench_function(format!("encode/{shape}/pco"), |b| {
        b.iter(|| {
            black_box(pco::standalone::simple_compress(black_box(values), &config).map(|v| v.len()))
        })
    });
    g.bench_function(format!("decode/{shape}/pco"), |b| {
        let mut out = vec![T::default(); values.len()];
        b.iter(|| {
            black_box(pco::standalone::simple_decompress_into(black_box(&bytes), &mut out).is_ok())
        })
    });
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(200));
    g.measurement_time(Duration::from_millis(500));
    g
}

fn bench_all(c: &mut Criterion) {
    let mut g = configure(c, "timestamps");
    for (shape, v) in timestamp_shapes() {
        bench_ours(
            &mut g,
            shape,
            &v,
            codec::encode_timestamps,
            codec::decode_timestamps,
        );
        bench_pco(&mut g, shape, &v);
    }
    g.finish();
    let mut g = configure(c, "floats");
    for (shape, v) in float_shapes() {
        bench_ours(
            &mut g,
            shape,
            &v,
            codec::encode_floats,
            codec::decode_floats,
        );
        bench_pco(&mut g, shape, &v);
    }
    g.finish();
    let mut g = configure(c, "integers");
    for (shape, v) in integer_shapes() {
        bench_ours(
            &mut g,
            shape,
            &v,
            codec::encode_integers,
            codec::decode_integers,
        );
        bench_pco(&mut g, shape, &v);
    }
    g.finish();
    let mut g = configure(c, "booleans");
    for (shape, v) in bool_shapes() {
        bench_ours(
            &mut g,
            shape,
            &v,
            codec::encode_booleans,
            codec::decode_booleans,
        );
    }
    g.finish();
    bench_strings(c);
}

fn bench_strings(c: &mut Criterion) {
    let mut g = configure(c, "strings");
    for (shape, v) in string_shapes() {
        let mut buf = Vec::new();
        let codec = codec::encode_strings(&v, &mut buf);
        g.bench_function(format!("encode/{shape}/strata-{}", codec.name()), |b| {
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                black_box(codec::encode_strings(black_box(&v), &mut out));
            })
        });
        g.bench_function(format!("decode/{shape}/strata-{}", codec.name()), |b| {
            let mut out = StringColumn::default();
            b.iter(|| {
                out.data.clear();
                out.ends.clear();
                codec::decode_strings(codec, black_box(&buf), v.len(), &mut out).expect("decodes");
                black_box(out.len());
            })
        });
    }
    g.finish();
}

fn main() {
    print_size_table();
    let mut c = Criterion::default().configure_from_args();
    bench_all(&mut c);
    c.final_summary();
}
