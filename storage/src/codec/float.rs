//! Float codecs: raw, constant, Gorilla XOR, decimal scaling (values with few decimal digits
//! become integers `v * 10^k`, stored with the integer codecs; values that do not round-trip are
//! stored verbatim as exceptions), and float bits (bit patterns mapped to order-preserving
//! integers, stored with the integer codecs). Every f64 bit pattern round-trips exactly.

use super::bits::{BitReader, BitWriter, Reader, put_varint};
use super::int::{self, Sink};
use super::{Codec, CodecError, Effort, MAX_CHUNK_VALUES};

/// Largest decimal scale exponent the decimal codec uses.
pub const MAX_DECIMAL_DIGITS: u8 = 10;

/// Exact powers of ten used as divisors by the decimal codec.
const POW10: [f64; MAX_DECIMAL_DIGITS as usize + 1] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];

/// See [`encode`]: decimal output this small (bytes a value) is kept without trying the others.
const DECIMAL_GOOD_ENOUGH: usize = 2;

/// Above this many exceptions (one in `EXCEPTION_RATIO` values) the decimal codec is not tried.
const EXCEPTION_RATIO: usize = 8;

/// Encodes floats with the smallest float codec.
pub(crate) fn encode(values: &[f64], out: &mut Vec<u8>, effort: Effort) -> Codec {
    let Some(first) = values.first() else {
        return Codec::Raw;
    };
    if values.iter().all(|v| v.to_bits() == first.to_bits()) {
        out.extend_from_slice(&first.to_bits().to_le_bytes());
        return Codec::Constant;
    }
    let mut best: (Codec, Vec<u8>) = (Codec::Raw, Vec::new());
    let mut best_len = values.len() * 8;
    if let Some(dec) = encode_decimal(values, effort)
        && dec.len() < best_len
    {
        best_len = dec.len();
        best = (Codec::Decimal, dec);
    }
    // On short decimals the low mantissa bits are noise to float bits and Gorilla: once the
    // decimal codec needs at most `DECIMAL_GOOD_ENOUGH` bytes a value, they are not tried.
    // A floor also skips them: both spend at least 64 bits on the first value and one bit on
    // each other one.
    let floor = 8 + (values.len() - 1).div_ceil(8);
    let decimal_good = best.0 == Codec::Decimal && best_len <= values.len() * DECIMAL_GOOD_ENOUGH;
    if floor < best_len && !decimal_good {
        let mut fb = Vec::new();
        encode_float_bits(values, &mut fb, effort);
        if fb.len() < best_len {
            best_len = fb.len();
            best = (Codec::FloatBits, fb);
        }
        if floor < best_len {
            let mut g = Vec::new();
            encode_gorilla(values, &mut g);
            if g.len() < best_len {
                best = (Codec::Gorilla, g);
            }
        }
    }
    match best {
        (Codec::Raw, _) => {
            out.reserve(values.len() * 8);
            for v in values {
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        (_, bytes) => out.extend_from_slice(&bytes),
    }
    best.0
}

/// Decodes `n` floats.
pub(crate) fn decode(
    codec: Codec,
    buf: &[u8],
    n: usize,
    out: &mut Vec<f64>,
) -> Result<(), CodecError> {
    let mut r = Reader::new(buf, codec);
    if n > MAX_CHUNK_VALUES {
        return Err(r.error(format!("{n} values exceed the limit of {MAX_CHUNK_VALUES}")));
    }
    match codec {
        Codec::Raw => {
            if Some(buf.len()) != n.checked_mul(8) {
                return Err(r.error(format!(
                    "{} bytes cannot hold exactly {n} values",
                    buf.len()
                )));
            }
            out.extend(buf.chunks_exact(8).map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_bits(u64::from_le_bytes(a))
            }));
            Ok(())
        }
        Codec::Constant => {
            let v = f64::from_bits(r.u64_le()?);
            r.finish()?;
            out.resize(out.len() + n, v);
            Ok(())
        }
        Codec::Gorilla => decode_gorilla(buf, n, out),
        Codec::Decimal => decode_decimal(&mut r, n, out),
        Codec::FloatBits => {
            let inner = inner_codec(&mut r)?;
            int::decode(inner, r.rest(), n, &mut Ordered(out))
        }
        _ => Err(r.error("not a float codec")),
    }
}

// ---------------------------------------------------------------------------------------------
// Decimal scaling
// ---------------------------------------------------------------------------------------------

/// The decoder's exact reconstruction: `i / 10^k`.
#[inline(always)]
fn scale_back(i: i64, k: usize) -> f64 {
    i as f64 / POW10[k]
}

/// `10^k` (`k <= MAX_DECIMAL_DIGITS`) as the decimal codec divides by.
pub(crate) fn pow10(k: usize) -> f64 {
    POW10[k]
}

/// `v * 10^k` as an integer when the decoder would reconstruct exactly `v` from it.
#[inline]
fn scaled(v: f64, k: usize) -> Option<i64> {
    let r = round_near(v * POW10[k]);
    // 2^53: every integer below it converts to f64 exactly.
    if r.is_nan() || r.abs() >= 9_007_199_254_740_992.0 {
        return None;
    }
    let i = r as i64;
    (scale_back(i, k).to_bits() == v.to_bits()).then_some(i)
}

/// `x` rounded to an integer: two additions where |x| < 2^51 (ties to even), `f64::round`
/// elsewhere. `f64::round` is a library call on baseline x86-64 (no SSE4.1), and `scaled` runs
/// up to three times a value; ties cannot round-trip, so either rounding gives the same codes.
#[inline]
fn round_near(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 × 2^52: the sum's unit is 1
    if x.abs() < 2_251_799_813_685_248.0 {
        (x + MAGIC) - MAGIC
    } else {
        x.round()
    }
}

/// The smallest `k` for which `v` round-trips, searching near `hint` first.
#[cfg(test)]
fn min_digits(v: f64, hint: usize) -> Option<usize> {
    min_digits_scaled(v, hint).map(|(k, _)| k)
}

/// Below this a scaled value is within 1/8 of `v × 10^k` (see [`min_digits_scaled`]).
const NO_LAST_ZERO_BOUND: u64 = 1 << 50;

/// The smallest `k` for which `v` round-trips, searching near `hint` first, with `v` scaled by
/// `10^k`. Below [`NO_LAST_ZERO_BOUND`] a scaled value `i` that does not end in 0 proves `k - 1`
/// fails without trying it: had `v` round-tripped as `j / 10^(k-1)`, `v × 10^k` would lie within
/// 1/8 of `10 j` (`v` within 2^-53 of `j / 10^(k-1)`, the product rounded to 1/16 at most), so
/// `i` would be `10 j`.
fn min_digits_scaled(v: f64, hint: usize) -> Option<(usize, i64)> {
    if let Some(mut i) = scaled(v, hint) {
        let mut k = hint;
        while k > 0 && (i % 10 == 0 || i.unsigned_abs() >= NO_LAST_ZERO_BOUND) {
            match scaled(v, k - 1) {
                Some(j) => (k, i) = (k - 1, j),
                None => break,
            }
        }
        return Some((k, i));
    }
    (hint + 1..=MAX_DECIMAL_DIGITS as usize).find_map(|k| scaled(v, k).map(|i| (k, i)))
}

/// The reference for [`min_digits_scaled`]: every smaller `k` tried.
#[cfg(test)]
fn min_digits_naive(v: f64, hint: usize) -> Option<usize> {
    if scaled(v, hint).is_some() {
        let mut k = hint;
        while k > 0 && scaled(v, k - 1).is_some() {
            k -= 1;
        }
        return Some(k);
    }
    (hint + 1..=MAX_DECIMAL_DIGITS as usize).find(|&k| scaled(v, k).is_some())
}

/// Chooses the scale exponent: the one minimising an estimate of payload bits plus exceptions.
/// `found` gets each value's smallest exponent and its value scaled by it (`u8::MAX` when there
/// is none), for [`encode_decimal`] to reuse.
fn choose_digits(values: &[f64], found: &mut Vec<(u8, i64)>) -> Option<usize> {
    let mut hist = [0usize; MAX_DECIMAL_DIGITS as usize + 1];
    let mut failed = 0usize;
    let mut hint = 0;
    found.reserve(values.len());
    for &v in values {
        let min = min_digits_scaled(v, hint);
        found.push(min.map_or((u8::MAX, 0), |(k, i)| (k as u8, i)));
        match min {
            Some((k, _)) => {
                hist[k] += 1;
                hint = k;
            }
            None => {
                failed += 1;
                if failed * EXCEPTION_RATIO > values.len() {
                    return None;
                }
            }
        }
    }
    // Each extra digit costs about log2(10) bits a value; each exception about 80 bits.
    let mut best = None;
    let mut covered = 0usize;
    for (k, &count) in hist.iter().enumerate() {
        covered += count;
        if count == 0 {
            continue;
        }
        let exceptions = values.len() - covered;
        let cost = values.len() as f64 * 3.33 * k as f64 + exceptions as f64 * 80.0;
        if best.is_none_or(|(_, c)| cost < c) && exceptions * EXCEPTION_RATIO <= values.len() {
            best = Some((k, cost));
        }
    }
    best.map(|(k, _)| k)
}

/// Encodes with the decimal codec, or `None` when too many values are not short decimals.
fn encode_decimal(values: &[f64], effort: Effort) -> Option<Vec<u8>> {
    let mut found = Vec::new();
    let k = choose_digits(values, &mut found)?;
    let mut ints = Vec::with_capacity(values.len());
    let mut exceptions = Vec::new();
    let mut prev = 0i64;
    for (i, (&v, &(kv, iv))) in values.iter().zip(&found).enumerate() {
        let code = if usize::from(kv) == k {
            Some(iv)
        } else {
            scaled(v, k)
        };
        match code {
            Some(s) => prev = s,
            None => exceptions.push((i, v.to_bits())),
        }
        ints.push(prev);
    }
    let mut out = Vec::with_capacity(16 + exceptions.len() * 10 + values.len());
    out.push(k as u8);
    put_varint(&mut out, exceptions.len() as u64);
    let mut next = 0usize;
    for &(i, bits) in &exceptions {
        put_varint(&mut out, (i - next) as u64);
        out.extend_from_slice(&bits.to_le_bytes());
        next = i + 1;
    }
    let at = out.len();
    out.push(0);
    let inner = int::encode(&ints, &mut out, effort);
    out[at] = inner as u8;
    Some(out)
}

/// Converts decoded integers back to floats.
struct Scaled<'a> {
    out: &'a mut Vec<f64>,
    div: f64,
}

impl Sink for Scaled<'_> {
    fn reserve(&mut self, n: usize) {
        self.out.reserve(n);
    }
    #[inline]
    fn put(&mut self, vals: &[i64]) {
        let div = self.div;
        self.out.extend(vals.iter().map(|&i| i as f64 / div));
    }
}

fn decode_decimal(r: &mut Reader<'_>, n: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    let k = r.u8()?;
    if k > MAX_DECIMAL_DIGITS {
        return Err(r.error(format!("scale exponent {k} exceeds {MAX_DECIMAL_DIGITS}")));
    }
    let count = r.len(n.min(r.remaining() / 9), "exception count")?;
    let mut exceptions = Vec::with_capacity(count);
    let mut next = 0usize;
    for _ in 0..count {
        let i = next
            .checked_add(r.len(n, "exception gap")?)
            .filter(|&i| i < n)
            .ok_or_else(|| r.error("exception index out of range"))?;
        exceptions.push((i, f64::from_bits(r.u64_le()?)));
        next = i + 1;
    }
    let inner = inner_codec(r)?;
    let base = out.len();
    let mut sink = Scaled {
        out,
        div: POW10[usize::from(k)],
    };
    let res = int::decode(inner, r.rest(), n, &mut sink);
    if let Err(e) = res {
        out.truncate(base);
        return Err(e);
    }
    for (i, v) in exceptions {
        out[base + i] = v;
    }
    Ok(())
}

/// The scale of a [`Codec::Decimal`] payload that has no exceptions (every value is exactly
/// `int / 10^k`), read from its first two bytes without decoding; `None` for any other payload.
pub(crate) fn decimal_scale(buf: &[u8]) -> Option<u8> {
    match buf {
        [k, 0, ..] if *k <= MAX_DECIMAL_DIGITS => Some(*k),
        _ => None,
    }
}

/// Decodes a [`Codec::Decimal`] payload of `n` values without exceptions as its integers,
/// appended to `out` (value `i` is `out[i] / 10^k`); returns `k`. An error when the payload has
/// exceptions ([`decimal_scale`] says which have none) or is damaged.
pub(crate) fn decode_decimal_ints(
    buf: &[u8],
    n: usize,
    out: &mut Vec<i64>,
) -> Result<u8, CodecError> {
    let mut r = Reader::new(buf, Codec::Decimal);
    if n > MAX_CHUNK_VALUES {
        return Err(r.error(format!("{n} values exceed the limit of {MAX_CHUNK_VALUES}")));
    }
    let k = r.u8()?;
    if k > MAX_DECIMAL_DIGITS {
        return Err(r.error(format!("scale exponent {k} exceeds {MAX_DECIMAL_DIGITS}")));
    }
    if r.u8()? != 0 {
        return Err(r.error("the payload has exceptions; decode it as floats"));
    }
    let inner = inner_codec(&mut r)?;
    int::decode(inner, r.rest(), n, out)?;
    Ok(k)
}

/// Reads the id of the integer codec nested in a float codec.
fn inner_codec(r: &mut Reader<'_>) -> Result<Codec, CodecError> {
    let inner = Codec::from_u8(r.u8()?)?;
    if !int::is_int_codec(inner) {
        return Err(r.error(format!(
            "inner codec {} is not an integer codec",
            inner.name()
        )));
    }
    Ok(inner)
}

// ---------------------------------------------------------------------------------------------
// Float bits
// ---------------------------------------------------------------------------------------------

/// Maps float bits to integers ordered like the floats (an involution: it is its own inverse).
/// Negative floats have their magnitude bits flipped, so `-0.0` maps to -1 and `+0.0` to 0.
#[inline(always)]
fn ordered(bits: i64) -> i64 {
    if bits < 0 { bits ^ i64::MAX } else { bits }
}

fn encode_float_bits(values: &[f64], out: &mut Vec<u8>, effort: Effort) {
    let ints: Vec<i64> = values.iter().map(|v| ordered(v.to_bits() as i64)).collect();
    let at = out.len();
    out.push(0);
    let inner = int::encode(&ints, out, effort);
    out[at] = inner as u8;
}

/// Converts decoded order-preserving integers back to floats.
struct Ordered<'a>(&'a mut Vec<f64>);

impl Sink for Ordered<'_> {
    fn reserve(&mut self, n: usize) {
        self.0.reserve(n);
    }
    #[inline]
    fn put(&mut self, vals: &[i64]) {
        self.0
            .extend(vals.iter().map(|&i| f64::from_bits(ordered(i) as u64)));
    }
}

// ---------------------------------------------------------------------------------------------
// Gorilla XOR
// ---------------------------------------------------------------------------------------------

/// Encodes Gorilla XOR: the first value's 64 bits, then per value a `0` bit (same as previous)
/// or a `1` bit followed by `0` + meaningful bits in the previous window, or `1` + 5-bit
/// leading-zero count + 6-bit length (64 stored as 0) + meaningful bits.
fn encode_gorilla(values: &[f64], out: &mut Vec<u8>) {
    let mut w = BitWriter::new(out);
    let mut prev = values[0].to_bits();
    w.write(prev, 64);
    // Window of the previous meaningful bits: (leading zeros, trailing zeros); none yet.
    let mut window: Option<(u32, u32)> = None;
    for v in &values[1..] {
        let bits = v.to_bits();
        let xor = bits ^ prev;
        prev = bits;
        if xor == 0 {
            w.write(0, 1);
            continue;
        }
        let lz = xor.leading_zeros().min(31);
        let tz = xor.trailing_zeros();
        match window {
            Some((plz, ptz)) if lz >= plz && tz >= ptz => {
                w.write(0b01, 2);
                w.write(xor >> ptz, 64 - plz - ptz);
            }
            _ => {
                let len = 64 - lz - tz;
                w.write(0b11, 2);
                w.write(u64::from(lz), 5);
                w.write(u64::from(len % 64), 6);
                w.write(xor >> tz, len);
                window = Some((lz, tz));
            }
        }
    }
    w.finish();
}

fn decode_gorilla(buf: &[u8], n: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    let err = |d: &str| super::bits::malformed(Codec::Gorilla, d);
    if n == 0 {
        return if buf.is_empty() {
            Ok(())
        } else {
            Err(err("trailing bytes"))
        };
    }
    // The first value takes 64 bits and every other one at least 1.
    if buf.len() < 8 || n - 1 > (buf.len() - 8) * 8 {
        return Err(err("input too short for the value count"));
    }
    out.reserve(n);
    let mut r = BitReader::new(buf);
    let eof = || err("unexpected end of input");
    let mut prev = r.read(64).ok_or_else(eof)?;
    out.push(f64::from_bits(prev));
    let (mut lz, mut len) = (0u32, 0u32);
    for _ in 1..n {
        if r.read(1).ok_or_else(eof)? == 1 {
            if r.read(1).ok_or_else(eof)? == 1 {
                lz = r.read(5).ok_or_else(eof)? as u32;
                len = match r.read(6).ok_or_else(eof)? as u32 {
                    0 => 64,
                    l => l,
                };
                if lz + len > 64 {
                    return Err(err("meaningful bits exceed 64"));
                }
            } else if len == 0 {
                return Err(err("window reused before being set"));
            }
            let bits = r.read(len).ok_or_else(eof)?;
            prev ^= bits << (64 - lz - len);
        }
        out.push(f64::from_bits(prev));
    }
    if r.position().div_ceil(8) != buf.len() {
        return Err(err("trailing bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Below 2^51 the fast rounding is round-half-even (so `f64::round` away from ties),
        /// above it `f64::round`; zeros compare equal whatever their sign.
        #[test]
        fn round_near_rounds_to_nearest(x in proptest::num::f64::ANY) {
            let fast = round_near(x);
            if x.is_nan() {
                proptest::prop_assert!(fast.is_nan());
            } else if x.abs() < 2f64.powi(51) {
                proptest::prop_assert_eq!(fast, x.round_ties_even());
            } else {
                proptest::prop_assert_eq!(fast, x.round());
            }
        }
    }

    proptest::proptest! {
        /// The smallest exponent found with the last-digit shortcut is the one every smaller
        /// exponent tried finds, for short decimals of every size and for arbitrary doubles.
        #[test]
        fn min_digits_shortcut_equals_trying_each(
            mantissa in -(1i64 << 53)..(1i64 << 53),
            scale in 0i32..12,
            bits in proptest::prelude::any::<u64>(),
            hint in 0usize..=MAX_DECIMAL_DIGITS as usize,
        ) {
            let decimal = mantissa as f64 / 10f64.powi(scale);
            for v in [decimal, f64::from_bits(bits), (mantissa % 100_000) as f64 / 1e3] {
                proptest::prop_assert_eq!(min_digits(v, hint), min_digits_naive(v, hint), "{}", v);
            }
        }
    }

    #[test]
    fn round_near_at_the_edges() {
        let cases = [
            (0.4, 0.0),
            (0.6, 1.0),
            (-0.6, -1.0),
            (2.5, 2.0),
            (3.5, 4.0),
            (-2.5, -2.0),
            (1e15 + 0.75, 1e15 + 1.0),
            (-1e15 - 0.75, -1e15 - 1.0),
            (2f64.powi(51) + 0.5, 2f64.powi(51) + 1.0),
            (1e300, 1e300),
        ];
        for (x, want) in cases {
            assert_eq!(round_near(x), want, "{x}");
        }
    }

    fn round_trip(values: &[f64]) -> (Codec, usize) {
        let mut buf = Vec::new();
        let codec = encode(values, &mut buf, Effort::Smallest);
        let mut out = Vec::new();
        decode(codec, &buf, values.len(), &mut out).unwrap();
        let a: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u64> = out.iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b, "codec {codec:?}");
        (codec, buf.len())
    }

    #[test]
    fn min_digits_finds_shortest_decimal() {
        assert_eq!(min_digits(12.0, 0), Some(0));
        assert_eq!(min_digits(12.5, 0), Some(1));
        assert_eq!(min_digits(12.25, 5), Some(2));
        assert_eq!(min_digits(-0.001, 0), Some(3));
        assert_eq!(min_digits(0.1 + 0.2, 0), None);
        assert_eq!(min_digits(-0.0, 0), None);
        assert_eq!(min_digits(f64::NAN, 0), None);
        assert_eq!(min_digits(f64::INFINITY, 0), None);
        assert_eq!(min_digits(1e300, 0), None);
    }

    #[test]
    fn decimal_keeps_exceptions_exact() {
        let mut v: Vec<f64> = (0..1000).map(|i| 20.0 + f64::from(i % 37) / 10.0).collect();
        v[0] = -0.0;
        v[17] = f64::from_bits(0x7ff8_0000_dead_beef);
        v[999] = f64::NEG_INFINITY;
        let (codec, size) = round_trip(&v);
        assert_eq!(codec, Codec::Decimal);
        assert!(size < 1000, "{size}");
    }

    #[test]
    fn gorilla_handles_full_precision_and_specials() {
        let mut x = 1.0f64;
        let mut v: Vec<f64> = (0..500)
            .map(|i| {
                x = x * 1.000_1 + f64::from(i).sin() * 1e-3;
                x
            })
            .collect();
        v.extend([
            f64::NAN,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::INFINITY,
        ]);
        let (codec, _) = round_trip(&v);
        assert!(
            matches!(codec, Codec::Gorilla | Codec::FloatBits),
            "{codec}"
        );
        let mut g = Vec::new();
        encode_gorilla(&v, &mut g);
        let mut out = Vec::new();
        decode_gorilla(&g, v.len(), &mut out).unwrap();
        assert_eq!(out.len(), v.len());
        assert!(decode_gorilla(&g[..g.len() - 1], v.len(), &mut Vec::new()).is_err());
    }

    #[test]
    fn ordered_bits_preserve_order_and_invert() {
        let v = [
            f64::NEG_INFINITY,
            -1e300,
            -1.5,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            1e-300,
            2.0,
            f64::INFINITY,
        ];
        let o: Vec<i64> = v.iter().map(|x| ordered(x.to_bits() as i64)).collect();
        assert!(o.windows(2).all(|w| w[0] < w[1]), "{o:?}");
        for x in v {
            assert_eq!(ordered(ordered(x.to_bits() as i64)) as u64, x.to_bits());
        }
    }

    #[test]
    fn slowly_drifting_full_precision_uses_float_bits() {
        let mut x = 1.0f64;
        let v: Vec<f64> = (0..2000)
            .map(|i| {
                x += f64::from(i % 17 - 8) * 1.234_567e-4;
                x
            })
            .collect();
        let (codec, size) = round_trip(&v);
        assert_eq!(codec, Codec::FloatBits);
        assert!(size < 2000 * 6, "{size}");
    }

    #[test]
    fn constant_and_raw() {
        assert_eq!(round_trip(&[f64::NAN; 100]).0, Codec::Constant);
        let mut x = 7u64;
        let random: Vec<f64> = (0..100)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                f64::from_bits(x)
            })
            .collect();
        assert_eq!(round_trip(&random).0, Codec::Raw);
    }
}
