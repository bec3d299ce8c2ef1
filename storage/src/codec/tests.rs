//! Cross-codec tests: property round-trips for every type, "arbitrary bytes never panic", codec
//! choice on shaped data, and size properties.

use proptest::prelude::*;

use super::*;

const TS0: i64 = 1_700_000_000_000_000_000;
const TEN_S: i64 = 10_000_000_000;

/// A deterministic pseudo-random generator for shaped test data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    /// Uniform in `-k..=k`.
    fn step(&mut self, k: i64) -> i64 {
        (self.next() % (2 * k as u64 + 1)) as i64 - k
    }
}

fn ints_round_trip(values: &[i64]) -> (Codec, Vec<u8>) {
    let mut buf = Vec::new();
    let codec = encode_integers(values, &mut buf);
    let mut out = vec![42];
    decode_integers(codec, &buf, values.len(), &mut out).unwrap();
    assert_eq!(&out[1..], values, "codec {codec}");
    let mut ts = Vec::new();
    assert_eq!(encode_timestamps(values, &mut ts), codec);
    (codec, buf)
}

fn floats_round_trip(values: &[f64]) -> (Codec, Vec<u8>) {
    let mut buf = Vec::new();
    let codec = encode_floats(values, &mut buf);
    let mut out = vec![1.5];
    decode_floats(codec, &buf, values.len(), &mut out).unwrap();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&out[1..]), bits(values), "codec {codec}");
    (codec, buf)
}

fn unsigned_round_trip(values: &[u64]) -> Codec {
    let mut buf = Vec::new();
    let codec = encode_unsigned(values, &mut buf);
    let mut out = Vec::new();
    decode_unsigned(codec, &buf, values.len(), &mut out).unwrap();
    assert_eq!(out, values, "codec {codec}");
    codec
}

fn bools_round_trip(values: &[bool]) -> Codec {
    let mut buf = Vec::new();
    let codec = encode_booleans(values, &mut buf);
    let mut out = vec![true];
    decode_booleans(codec, &buf, values.len(), &mut out).unwrap();
    assert_eq!(&out[1..], values, "codec {codec}");
    codec
}

fn strings_round_trip(values: &[String]) -> Codec {
    let mut col = StringColumn::default();
    values.iter().for_each(|s| col.push(s));
    let mut buf = Vec::new();
    let codec = encode_strings(&col, &mut buf);
    let mut out = StringColumn::default();
    out.push("x");
    decode_strings(codec, &buf, values.len(), &mut out).unwrap();
    assert_eq!(
        out.iter().skip(1).collect::<Vec<_>>(),
        values,
        "codec {codec}"
    );
    codec
}

fn regular_timestamps(n: usize) -> Vec<i64> {
    (0..n as i64).map(|i| TS0 + i * TEN_S).collect()
}

/// A slow random walk with `digits` decimals, as a sensor would report it.
fn decimal_walk(n: usize, digits: i32, seed: u64) -> Vec<f64> {
    let mut rng = Lcg(seed);
    let scale = 10f64.powi(digits);
    let mut x = 2150i64;
    (0..n)
        .map(|_| {
            x += rng.step(2);
            x as f64 / scale
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Codec choice and sizes
// ---------------------------------------------------------------------------------------------

#[test]
fn codec_ids_are_stable_and_parse() {
    for (i, c) in Codec::ALL.iter().enumerate() {
        assert_eq!(c.id() as usize, i);
        assert_eq!(Codec::from_u8(c.id()).unwrap(), *c);
    }
    assert_eq!(Codec::Decimal as u8, 8);
    assert!(matches!(
        Codec::from_u8(13),
        Err(CodecError::UnknownCodec(13))
    ));
    assert!(Codec::from_u8(255).is_err());
}

#[test]
fn regular_timestamps_take_a_few_bytes() {
    let ts = regular_timestamps(10_000);
    let (codec, buf) = ints_round_trip(&ts);
    assert_eq!(codec, Codec::Regular);
    assert!(buf.len() < 32, "{} bytes", buf.len());
}

#[test]
fn timestamps_with_gaps_stay_under_a_bit_per_value() {
    let mut rng = Lcg(3);
    let mut t = TS0;
    let ts: Vec<i64> = (0..10_000)
        .map(|_| {
            t += TEN_S * if rng.next().is_multiple_of(100) { 2 } else { 1 };
            t
        })
        .collect();
    let (codec, buf) = ints_round_trip(&ts);
    assert_eq!(codec, Codec::DeltaPacked);
    assert!(buf.len() * 8 < ts.len(), "{} bytes", buf.len());
}

#[test]
fn jittered_timestamps_pack_the_jitter_only() {
    let mut rng = Lcg(5);
    // Up to +-5 ms of jitter around a 10 s grid, microsecond precision.
    let ts: Vec<i64> = (0..10_000)
        .map(|i| TS0 + i * TEN_S + rng.step(5_000) * 1_000)
        .collect();
    let (codec, buf) = ints_round_trip(&ts);
    assert_eq!(codec, Codec::LinearPacked);
    // Residuals from the grid span 10,001 microseconds: 14 bits a value, plus a few header
    // bytes per 128 values.
    assert!(
        buf.len() <= ts.len() * 14 / 8 + ts.len() / 128 * 6,
        "{} bytes",
        buf.len()
    );
}

#[test]
fn one_decimal_readings_use_the_decimal_codec() {
    let v = decimal_walk(10_000, 1, 1);
    let (codec, buf) = floats_round_trip(&v);
    assert_eq!(codec, Codec::Decimal);
    assert_eq!(buf[0], 1, "scale exponent");
    assert!(
        buf.len() * 2 < v.len(),
        "{} bytes for {} values",
        buf.len(),
        v.len()
    );
}

#[test]
fn two_decimal_readings_use_the_decimal_codec() {
    let v = decimal_walk(10_000, 2, 2);
    let (codec, buf) = floats_round_trip(&v);
    assert_eq!(codec, Codec::Decimal);
    assert_eq!(buf[0], 2, "scale exponent");
    assert!(buf.len() * 2 < v.len(), "{} bytes", buf.len());
}

#[test]
fn integer_valued_floats_and_constants() {
    let v: Vec<f64> = (0..1000).map(|i| f64::from(i % 50 + 100)).collect();
    let (codec, buf) = floats_round_trip(&v);
    assert_eq!((codec, buf[0]), (Codec::Decimal, 0));
    let (codec, buf) = floats_round_trip(&[22.5; 8640]);
    assert_eq!((codec, buf.len()), (Codec::Constant, 8));
}

#[test]
fn unsigned_edges() {
    assert_eq!(unsigned_round_trip(&[u64::MAX; 10]), Codec::Constant);
    unsigned_round_trip(&[0, u64::MAX, 1 << 63, (1 << 63) - 1, 7, u64::MAX - 1]);
    let counter: Vec<u64> = (0..5000u64).map(|i| i * i / 7).collect();
    unsigned_round_trip(&counter);
}

#[test]
fn empty_columns_round_trip() {
    assert_eq!(ints_round_trip(&[]).1.len(), 0);
    assert_eq!(floats_round_trip(&[]).1.len(), 0);
    unsigned_round_trip(&[]);
    bools_round_trip(&[]);
    strings_round_trip(&[]);
}

#[test]
fn huge_n_is_rejected_without_allocating() {
    let mut buf = Vec::new();
    let codec = encode_integers(&[1, 2, 3], &mut buf);
    for n in [MAX_CHUNK_VALUES + 1, usize::MAX, 1 << 40] {
        assert!(decode_integers(codec, &buf, n, &mut Vec::new()).is_err());
        assert!(decode_floats(Codec::Constant, &[0; 8], n, &mut Vec::new()).is_err());
        assert!(decode_booleans(Codec::Constant, &[1], n, &mut Vec::new()).is_err());
        assert!(decode_strings(Codec::Constant, &[0], n, &mut StringColumn::default()).is_err());
    }
    // The largest n allowed still decodes from a tiny regular payload.
    let mut out = Vec::new();
    decode_timestamps(Codec::Regular, &buf, MAX_CHUNK_VALUES, &mut out).unwrap();
    assert_eq!(out.len(), MAX_CHUNK_VALUES);
    assert_eq!(out[MAX_CHUNK_VALUES - 1], MAX_CHUNK_VALUES as i64);
}

/// Splits an input of the `decode_*` fuzz targets: codec byte, `n` as 24-bit little endian,
/// payload.
fn fuzz_input(data: &[u8]) -> (Codec, usize, &[u8]) {
    let n = usize::from(data[1]) | usize::from(data[2]) << 8 | usize::from(data[3]) << 16;
    (Codec::from_u8(data[0] & 0x7f).unwrap(), n, &data[4..])
}

fn assert_over_limit(res: Result<(), CodecError>) {
    let e = res.expect_err("a count above MAX_CHUNK_VALUES is refused");
    assert!(e.to_string().contains("exceed the limit"), "{e}");
}

/// The slow units of the 2026-12-04 fuzz run (docs/fuzzing.md): 5 or 6 bytes that claim 13 to
/// 17 million values from a constant, float-bits-constant or regular payload, which made one
/// decode (and the target's re-encode) take 14 to 19 s in the unoptimized build. Each is now
/// refused before any work; the same payloads with the largest allowed count still decode.
#[test]
fn recorded_slow_units_are_refused() {
    let (codec, n, payload) = fuzz_input(&[0x01, 0x00, 0x00, 0xff, 0x00]);
    assert_eq!((codec, n), (Codec::Constant, 16_711_680));
    assert_over_limit(decode_booleans(codec, payload, n, &mut Vec::new()));
    let mut b = Vec::new();
    decode_booleans(codec, payload, MAX_CHUNK_VALUES, &mut b).unwrap();
    assert_eq!(b, vec![false; MAX_CHUNK_VALUES]);

    let (codec, n, payload) = fuzz_input(&[0x0b, 0x00, 0x00, 0xcf, 0x01, 0x00]);
    assert_eq!((codec, n), (Codec::FloatBits, 13_565_952));
    assert_over_limit(decode_floats(codec, payload, n, &mut Vec::new()));
    let mut f = Vec::new();
    decode_floats(codec, payload, MAX_CHUNK_VALUES, &mut f).unwrap();
    assert!(f.iter().all(|v| v.to_bits() == 0) && f.len() == MAX_CHUNK_VALUES);

    let (codec, n, payload) = fuzz_input(&[0x02, 0x0a, 0xff, 0xfb, 0x00, 0x06]);
    assert_eq!((codec, n), (Codec::Regular, 16_514_826));
    assert_over_limit(decode_integers(codec, payload, n, &mut Vec::new()));
    assert_over_limit(decode_unsigned(codec, payload, n, &mut Vec::new()));
    let mut i = Vec::new();
    decode_integers(codec, payload, MAX_CHUNK_VALUES, &mut i).unwrap();
    assert_eq!(i[MAX_CHUNK_VALUES - 1], 3 * (MAX_CHUNK_VALUES as i64 - 1));
}

/// Malformed run-length payloads (runs that do not add up to `n`, an empty run, trailing bytes)
/// fail and append nothing.
#[test]
fn malformed_run_lengths_append_nothing() {
    // Integers: 2 runs (value delta 1, length 3; delta 1, length 2) = 5 values.
    let ok = [2, 2, 3, 2, 2];
    let mut out = vec![9];
    decode_integers(Codec::RunLength, &ok, 5, &mut out).unwrap();
    assert_eq!(out, [9, 1, 1, 1, 2, 2]);
    for (bad, n) in [
        (&[2, 2, 3, 2, 2][..], 6),
        (&[2, 2, 3, 2, 2][..], 4),
        (&[2, 2, 0, 2, 5][..], 5),
        (&[2, 2, 3, 2, 2, 0][..], 5),
    ] {
        let mut out = vec![9];
        assert!(decode_integers(Codec::RunLength, bad, n, &mut out).is_err());
        assert_eq!(out, [9], "{bad:?} {n}");
    }
    // Booleans: first value true, 2 runs of 3 and 2.
    let mut out = vec![false];
    decode_booleans(Codec::RunLength, &[1, 2, 3, 2], 5, &mut out).unwrap();
    assert_eq!(out, [false, true, true, true, false, false]);
    for (bad, n) in [
        (&[1, 2, 3, 2][..], 6),
        (&[1, 2, 0, 5][..], 5),
        (&[1, 2, 3, 2, 0][..], 5),
    ] {
        let mut out = vec![false];
        assert!(decode_booleans(Codec::RunLength, bad, n, &mut out).is_err());
        assert_eq!(out, [false], "{bad:?} {n}");
    }
}

#[test]
fn wrong_codec_for_type_is_an_error() {
    assert!(decode_integers(Codec::Gorilla, &[], 0, &mut Vec::new()).is_err());
    assert!(decode_floats(Codec::DeltaPacked, &[], 0, &mut Vec::new()).is_err());
    assert!(decode_booleans(Codec::Raw, &[], 0, &mut Vec::new()).is_err());
    assert!(decode_strings(Codec::BitPacked, &[], 0, &mut StringColumn::default()).is_err());
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

fn edge_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0),
        Just(-1),
        Just(1),
        -1000i64..1000,
        any::<i64>(),
    ]
}

/// Integer sequences of the shapes the encoder distinguishes.
fn shaped_i64() -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        prop::collection::vec(edge_i64(), 0..600),
        (any::<i64>(), any::<i64>(), 0usize..600).prop_map(|(a, s, n)| (0..n as i64)
            .map(|i| a.wrapping_add(s.wrapping_mul(i)))
            .collect()),
        (any::<i64>(), prop::collection::vec(-3i64..4, 0..700)).prop_map(|(a, d)| {
            d.iter()
                .scan(a, |x, &s| {
                    *x = x.wrapping_add(s * 1_000_000);
                    Some(*x)
                })
                .collect()
        }),
        prop::collection::vec((edge_i64(), 1usize..50), 0..40).prop_map(|runs| runs
            .iter()
            .flat_map(|&(v, n)| std::iter::repeat_n(v, n))
            .collect()),
    ]
}

fn edge_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        Just(-0.0),
        Just(0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
        (-100_000i64..100_000, 0i32..4).prop_map(|(m, k)| m as f64 / 10f64.powi(k)),
    ]
}

fn shaped_f64() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        prop::collection::vec(edge_f64(), 0..400),
        (0i32..6, prop::collection::vec(-5i64..6, 0..700)).prop_map(|(k, d)| {
            d.iter()
                .scan(0i64, |x, &s| {
                    *x += s;
                    Some(*x as f64 / 10f64.powi(k))
                })
                .collect()
        }),
        (
            prop::collection::vec(-50i64..50, 1..500),
            prop::collection::vec((0usize..500, edge_f64()), 0..6)
        )
            .prop_map(|(d, exc)| {
                let mut v: Vec<f64> = d.iter().map(|&x| x as f64 / 100.0).collect();
                let len = v.len();
                exc.into_iter().for_each(|(i, x)| v[i % len] = x);
                v
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn prop_integers(v in shaped_i64()) {
        ints_round_trip(&v);
    }

    #[test]
    fn prop_unsigned(v in prop::collection::vec(prop_oneof![any::<u64>(), 0u64..100, Just(u64::MAX)], 0..400)) {
        unsigned_round_trip(&v);
    }

    #[test]
    fn prop_floats_bit_exact(v in shaped_f64()) {
        floats_round_trip(&v);
    }

    #[test]
    fn prop_booleans(v in prop_oneof![
        prop::collection::vec(any::<bool>(), 0..600),
        prop::collection::vec((any::<bool>(), 1usize..200), 0..20)
            .prop_map(|r| r.iter().flat_map(|&(b, n)| std::iter::repeat_n(b, n)).collect()),
    ]) {
        bools_round_trip(&v);
    }

    #[test]
    fn prop_strings(v in prop_oneof![
        prop::collection::vec(".{0,12}", 0..200),
        prop::collection::vec(prop::sample::select(vec!["", "a", "ünïcödé", "idle", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]), 0..400)
            .prop_map(|v| v.into_iter().map(String::from).collect()),
    ]) {
        strings_round_trip(&v);
    }

    /// Any count the fuzz targets can claim (24 bits) above the cap is refused by every decoder
    /// before it reads the payload, so no payload can make a decode work past the cap.
    #[test]
    fn counts_above_the_cap_are_refused(
        id in 0u8..13,
        buf in prop::collection::vec(any::<u8>(), 0..64),
        n in MAX_CHUNK_VALUES + 1..1 << 24,
    ) {
        let codec = Codec::from_u8(id).unwrap();
        assert_over_limit(decode_integers(codec, &buf, n, &mut Vec::new()));
        assert_over_limit(decode_unsigned(codec, &buf, n, &mut Vec::new()));
        assert_over_limit(decode_floats(codec, &buf, n, &mut Vec::new()));
        assert_over_limit(decode_booleans(codec, &buf, n, &mut Vec::new()));
        assert_over_limit(decode_strings(codec, &buf, n, &mut StringColumn::default()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        id in 0u8..16,
        buf in prop::collection::vec(any::<u8>(), 0..300),
        n in prop_oneof![0usize..3000, Just(usize::MAX), Just(MAX_CHUNK_VALUES + 1), 1usize << 30..1 << 50],
    ) {
        check_all_decoders(id, &buf, n);
    }

    #[test]
    fn corrupted_encodings_never_panic(
        v in shaped_i64(),
        f in shaped_f64(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
        dn in -3isize..3,
    ) {
        for (codec, mut buf, n) in [
            { let mut b = Vec::new(); let c = encode_integers(&v, &mut b); (c, b, v.len()) },
            { let mut b = Vec::new(); let c = encode_floats(&f, &mut b); (c, b, f.len()) },
        ] {
            if !buf.is_empty() {
                for &(at, x) in &flips {
                    let len = buf.len();
                    buf[at % len] ^= x;
                }
                buf.truncate(buf.len() - cut % 2 * (cut % buf.len().max(1)));
            }
            check_all_decoders(codec.id(), &buf, n.saturating_add_signed(dn));
        }
    }
}

/// Runs every decoder on the input: each must append exactly `n` values or fail and append
/// nothing.
fn check_all_decoders(id: u8, buf: &[u8], n: usize) {
    let Ok(codec) = Codec::from_u8(id) else {
        return;
    };
    let mut i = vec![7i64];
    let ints_ok = decode_integers(codec, buf, n, &mut i).is_ok();
    if ints_ok {
        assert_eq!(i.len(), n + 1);
    } else {
        assert_eq!(i, [7]);
    }
    let mut t = Vec::new();
    assert_eq!(decode_timestamps(codec, buf, n, &mut t).is_ok(), ints_ok);
    let mut u = Vec::new();
    if decode_unsigned(codec, buf, n, &mut u).is_ok() {
        assert_eq!(u.len(), n);
    }
    let mut f = vec![0.5];
    match decode_floats(codec, buf, n, &mut f) {
        Ok(()) => assert_eq!(f.len(), n + 1),
        Err(_) => assert_eq!(f, [0.5]),
    }
    let mut b = Vec::new();
    if decode_booleans(codec, buf, n, &mut b).is_ok() {
        assert_eq!(b.len(), n);
    } else {
        assert!(b.is_empty());
    }
    let mut s = StringColumn::default();
    s.push("keep");
    match decode_strings(codec, buf, n, &mut s) {
        Ok(()) => assert_eq!(s.len(), n + 1),
        Err(_) => assert_eq!((s.len(), s.data.as_str()), (1, "keep")),
    }
}

#[test]
fn patched_blocks_absorb_gaps_and_spikes() {
    // Regular 10 s timestamps with one missing point per 100: each gap is one exception.
    let ts: Vec<i64> = (0..10_000i64)
        .filter(|i| i % 100 != 50)
        .map(|i| TS0 + i * TEN_S)
        .collect();
    let (codec, buf) = ints_round_trip(&ts);
    assert_eq!(codec, Codec::DeltaPacked);
    assert!(buf.len() < ts.len() / 20, "{} bytes", buf.len());
    // Small readings with rare huge spikes keep their narrow width.
    let mut rng = Lcg(9);
    let v: Vec<i64> = (0..10_000)
        .map(|i| if i % 500 == 7 { 1 << 40 } else { rng.step(7) })
        .collect();
    let (codec, buf) = ints_round_trip(&v);
    assert_eq!(codec, Codec::Packed);
    assert!(buf.len() < v.len() * 4 / 8 + 400, "{} bytes", buf.len());
}

#[test]
fn encoders_append_after_existing_bytes() {
    let ts = regular_timestamps(300);
    let floats = decimal_walk(300, 2, 4);
    let mut alone = Vec::new();
    let mut after = vec![0xaa; 3];
    assert_eq!(
        encode_timestamps(&ts, &mut alone),
        encode_timestamps(&ts, &mut after)
    );
    assert_eq!(&after[3..], alone);
    alone.clear();
    after.truncate(3);
    assert_eq!(
        encode_floats(&floats, &mut alone),
        encode_floats(&floats, &mut after)
    );
    assert_eq!((&after[..3], &after[3..]), (&[0xaa; 3][..], &alone[..]));
}

#[test]
fn malformed_patches_are_rejected() {
    // Packed, one block of 3 values: width byte 0x80 | 1, min 0, then the patch list.
    let ok = [1, 0x81, 0, 1, 2, 3, 0b0000_0101];
    let mut out = Vec::new();
    decode_integers(Codec::Packed, &ok, 3, &mut out).unwrap();
    assert_eq!(out, [1, 0, 7]); // g = 1; offsets 1, 0, 1 | (3 << 1)
    for bad in [
        [1, 0x81, 0, 0, 2, 3, 0b101], // zero exceptions with the flag set
        [1, 0x81, 0, 1, 3, 3, 0b101], // position outside the block
        [1, 0x81, 0, 4, 2, 3, 0b101], // more exceptions than values
        [1, 0xc0, 0, 1, 2, 3, 0b101], // exceptions at width 64
    ] {
        assert!(
            decode_integers(Codec::Packed, &bad, 3, &mut Vec::new()).is_err(),
            "{bad:?}"
        );
    }
}
