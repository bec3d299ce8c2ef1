//! Boolean codecs: constant, bit-packed (one bit a value, LSB-first) and run-length (first value,
//! then alternating run lengths).

use super::bits::{Reader, put_varint, varint_len};
use super::{Codec, CodecError, MAX_CHUNK_VALUES};

/// Encodes booleans with the smallest boolean codec.
pub(crate) fn encode(values: &[bool], out: &mut Vec<u8>) -> Codec {
    let Some(&first) = values.first() else {
        return Codec::BitPacked;
    };
    let runs: Vec<usize> = values.chunk_by(|a, b| a == b).map(<[bool]>::len).collect();
    if runs.len() == 1 {
        out.push(u8::from(first));
        return Codec::Constant;
    }
    let rle_size = 1
        + varint_len(runs.len() as u64)
        + runs.iter().map(|&r| varint_len(r as u64)).sum::<usize>();
    if rle_size < values.len().div_ceil(8) {
        out.push(u8::from(first));
        put_varint(out, runs.len() as u64);
        for r in runs {
            put_varint(out, r as u64);
        }
        return Codec::RunLength;
    }
    out.reserve(values.len().div_ceil(8));
    for chunk in values.chunks(8) {
        out.push(
            chunk
                .iter()
                .enumerate()
                .fold(0u8, |b, (i, &v)| b | (u8::from(v) << i)),
        );
    }
    Codec::BitPacked
}

/// Decodes `n` booleans.
pub(crate) fn decode(
    codec: Codec,
    buf: &[u8],
    n: usize,
    out: &mut Vec<bool>,
) -> Result<(), CodecError> {
    let mut r = Reader::new(buf, codec);
    if n > MAX_CHUNK_VALUES {
        return Err(r.error(format!("{n} values exceed the limit of {MAX_CHUNK_VALUES}")));
    }
    match codec {
        Codec::Constant => {
            let v = read_bool(&mut r)?;
            r.finish()?;
            out.resize(out.len() + n, v);
            Ok(())
        }
        Codec::BitPacked => decode_bits(&mut r, n, out),
        Codec::RunLength => decode_runs(&mut r, n, out),
        _ => Err(r.error("not a boolean codec")),
    }
}

fn read_bool(r: &mut Reader<'_>) -> Result<bool, CodecError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(r.error(format!("boolean byte {b} is not 0 or 1"))),
    }
}

fn decode_bits(r: &mut Reader<'_>, n: usize, out: &mut Vec<bool>) -> Result<(), CodecError> {
    if r.remaining() != n.div_ceil(8) {
        return Err(r.error(format!(
            "{} bytes do not hold exactly {n} bits",
            r.remaining()
        )));
    }
    let bytes = r.rest();
    if let Some(&last) = bytes.last() {
        let used = n - (bytes.len() - 1) * 8;
        if used < 8 && last >> used != 0 {
            return Err(r.error("padding bits are not zero"));
        }
    }
    out.reserve(n);
    let full = n / 8;
    for &b in &bytes[..full] {
        out.extend((0..8).map(|i| (b >> i) & 1 == 1));
    }
    if let Some(&b) = bytes.get(full) {
        out.extend((0..n % 8).map(|i| (b >> i) & 1 == 1));
    }
    Ok(())
}

fn decode_runs(r: &mut Reader<'_>, n: usize, out: &mut Vec<bool>) -> Result<(), CodecError> {
    let mut v = read_bool(r)?;
    let nruns = r.len(r.remaining(), "run count")?;
    let base = out.len();
    out.reserve(n);
    let mut total = 0usize;
    for _ in 0..nruns {
        let len = r.len(n - total, "run length")?;
        if len == 0 {
            return Err(r.error("empty run"));
        }
        out.resize(out.len() + len, v);
        total += len;
        v = !v;
    }
    if total != n {
        out.truncate(base);
        return Err(r.error(format!("runs hold {total} values, expected {n}")));
    }
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[bool]) -> (Codec, usize) {
        let mut buf = Vec::new();
        let codec = encode(values, &mut buf);
        let mut out = Vec::new();
        decode(codec, &buf, values.len(), &mut out).unwrap();
        assert_eq!(out, values);
        (codec, buf.len())
    }

    #[test]
    fn picks_by_shape() {
        assert_eq!(round_trip(&[true; 1000]), (Codec::Constant, 1));
        let runs: Vec<bool> = (0..10_000).map(|i| (i / 2500) % 2 == 1).collect();
        let (codec, size) = round_trip(&runs);
        assert_eq!(codec, Codec::RunLength);
        assert!(size <= 10, "{size}");
        let alternating: Vec<bool> = (0..1001).map(|i| i % 3 == 0).collect();
        assert_eq!(round_trip(&alternating), (Codec::BitPacked, 126));
        assert_eq!(round_trip(&[]), (Codec::BitPacked, 0));
    }

    #[test]
    fn rejects_malformed() {
        let mut out = Vec::new();
        assert!(decode(Codec::BitPacked, &[0xff], 7, &mut out).is_err());
        assert!(decode(Codec::BitPacked, &[0x7f], 7, &mut out).is_ok());
        assert!(decode(Codec::BitPacked, &[0x7f, 0], 7, &mut out).is_err());
        assert!(decode(Codec::Constant, &[2], 7, &mut out).is_err());
        assert!(decode(Codec::RunLength, &[1, 2, 3, 3], 7, &mut out).is_err());
        assert!(decode(Codec::RunLength, &[1, 2, 3, 0], 3, &mut out).is_err());
        assert!(decode(Codec::Gorilla, &[], 0, &mut out).is_err());
    }
}
