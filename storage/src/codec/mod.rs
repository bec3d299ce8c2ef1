//! Column codecs: compress one column of present values (timestamps, floats, integers, unsigned,
//! booleans, strings) into a chunk payload and back. Each `encode_*` function tries the codecs
//! that apply to its type and keeps the smallest output; the chosen [`Codec`] is stored by the
//! caller as one byte in the chunk header. Each `decode_*` function appends exactly `n` values or
//! returns a [`CodecError`]; it never panics, whatever the bytes and `n`.
//!
//! The byte layout of every codec is documented in `docs/codecs.md`.

mod bits;
mod boolean;
mod float;
mod int;
mod string;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::StringColumn;

pub use float::MAX_DECIMAL_DIGITS;
#[cfg(test)]
pub(crate) use int::encode_delta_packed;
pub(crate) use int::{DeltaBlock, delta_blocks, delta_first};

/// Most values one chunk may decode to; a larger `n` is refused before any work is done.
///
/// The constant, regular and run-length codecs (and bit-packed blocks or dictionary ids of width
/// 0) decode any number of values from a few bytes, so for them the payload length cannot bound
/// the work of a decode: this cap does. It is eight times the segment block (`BLOCK_ROWS` = 8192
/// rows), the largest chunk the storage format writes; the codecs whose values each take a
/// minimum number of bits also refuse an `n` their payload is too short to hold.
pub const MAX_CHUNK_VALUES: usize = 1 << 16;

/// Most string bytes one chunk may decode to.
pub const MAX_STRING_BYTES: usize = 1 << 30;

/// Codec identifiers, stored as one byte in each chunk header. The ids are stable: never reuse or
/// renumber one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// Uncompressed: 8 bytes little-endian per value (integers, floats); for strings, every
    /// length as a varint, then all bytes.
    Raw = 0,
    /// Every value is the same: stored once (any type).
    Constant = 1,
    /// Arithmetic progression `first + i * step` (timestamps, integers).
    Regular = 2,
    /// Runs of equal values (integers, booleans).
    RunLength = 3,
    /// Frame-of-reference bit-packing of the values in blocks of 128 (timestamps, integers).
    Packed = 4,
    /// Frame-of-reference bit-packing of the deltas (timestamps, integers).
    DeltaPacked = 5,
    /// Frame-of-reference bit-packing of the deltas of deltas (timestamps, integers).
    DeltaDeltaPacked = 6,
    /// Gorilla XOR encoding (floats).
    Gorilla = 7,
    /// Decimal scaling: `v * 10^k` as integers with an integer codec, plus exceptions (floats).
    Decimal = 8,
    /// One bit per value (booleans).
    BitPacked = 9,
    /// Distinct values once, then bit-packed ids (strings).
    Dictionary = 10,
    /// Float bit patterns mapped to order-preserving integers, stored with an integer codec
    /// (floats with full precision).
    FloatBits = 11,
    /// Frame-of-reference bit-packing of the residuals from a regular grid `first + i * step`
    /// (jittered timestamps, integers).
    LinearPacked = 12,
}

impl Codec {
    /// Every codec, in id order.
    pub const ALL: [Codec; 13] = [
        Codec::Raw,
        Codec::Constant,
        Codec::Regular,
        Codec::RunLength,
        Codec::Packed,
        Codec::DeltaPacked,
        Codec::DeltaDeltaPacked,
        Codec::Gorilla,
        Codec::Decimal,
        Codec::BitPacked,
        Codec::Dictionary,
        Codec::FloatBits,
        Codec::LinearPacked,
    ];

    /// Parses a stored codec byte.
    pub fn from_u8(b: u8) -> Result<Codec, CodecError> {
        Codec::ALL
            .get(usize::from(b))
            .copied()
            .ok_or(CodecError::UnknownCodec(b))
    }

    /// The stored codec byte.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// Lower-case name, used in errors and statistics.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Raw => "raw",
            Codec::Constant => "constant",
            Codec::Regular => "regular",
            Codec::RunLength => "run-length",
            Codec::Packed => "packed",
            Codec::DeltaPacked => "delta-packed",
            Codec::DeltaDeltaPacked => "delta-delta-packed",
            Codec::Gorilla => "gorilla",
            Codec::Decimal => "decimal",
            Codec::BitPacked => "bit-packed",
            Codec::Dictionary => "dictionary",
            Codec::FloatBits => "float-bits",
            Codec::LinearPacked => "linear-packed",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Decoding failures.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Unknown codec byte.
    #[error("unknown codec id {0}")]
    UnknownCodec(u8),
    /// Input ended early or is malformed.
    #[error("malformed {codec} data: {detail}")]
    Malformed {
        /// Codec name.
        codec: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// Runs `decode` and removes anything it appended when it fails.
fn all_or_nothing<T>(
    out: &mut Vec<T>,
    decode: impl FnOnce(&mut Vec<T>) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let base = out.len();
    let res = decode(out);
    if res.is_err() {
        out.truncate(base);
    }
    res
}

/// How hard the integer and decimal encoders look for the smallest output. Either way the output
/// is valid for every decoder; only its size may differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Effort {
    /// The smallest output of every candidate (compaction, rollups, erase rewrites).
    #[default]
    Smallest,
    /// Of the packed integer candidates, only the one smallest on the first block is sized whole
    /// (on columns of more than two blocks): about a quarter of the sizing work. For segments
    /// that compaction soon rewrites with [`Effort::Smallest`] (flush).
    Quick,
}

/// Encodes timestamps with the smallest codec; appends the payload to `out` and returns the codec used.
pub fn encode_timestamps(values: &[i64], out: &mut Vec<u8>) -> Codec {
    int::encode(values, out, Effort::Smallest)
}

/// [`encode_timestamps`] with the given [`Effort`].
pub fn encode_timestamps_with(values: &[i64], out: &mut Vec<u8>, effort: Effort) -> Codec {
    int::encode(values, out, effort)
}

/// Decodes `n` timestamps, appending them to `out`.
pub fn decode_timestamps(
    codec: Codec,
    buf: &[u8],
    n: usize,
    out: &mut Vec<i64>,
) -> Result<(), CodecError> {
    decode_integers(codec, buf, n, out)
}

/// Encodes floats with the smallest codec.
pub fn encode_floats(values: &[f64], out: &mut Vec<u8>) -> Codec {
    float::encode(values, out, Effort::Smallest)
}

/// [`encode_floats`] with the given [`Effort`] (for the decimal codec's integers).
pub fn encode_floats_with(values: &[f64], out: &mut Vec<u8>, effort: Effort) -> Codec {
    float::encode(values, out, effort)
}

/// Decodes `n` floats.
pub fn decode_floats(
    codec: Codec,
    buf: &[u8],
    n: usize,
    out: &mut Vec<f64>,
) -> Result<(), CodecError> {
    all_or_nothing(out, |out| float::decode(codec, buf, n, out))
}

/// The decimal scale `k` of a float payload in codec `codec` when it is [`Codec::Decimal`]
/// without exceptions (each value is exactly an integer over `10^k`), found without decoding.
pub fn decimal_scale(codec: Codec, buf: &[u8]) -> Option<u8> {
    (codec == Codec::Decimal)
        .then(|| float::decimal_scale(buf))
        .flatten()
}

/// The float the decimal codec decodes from integer `i` at scale `k` (`i / 10^k`, rounded once):
/// what [`decode_floats`] yields for a value [`decode_decimal_ints`] hands over as `i`.
pub fn decimal_value(i: i64, k: u8) -> f64 {
    i as f64 / decimal_divisor(k)
}

/// `10^k` as the decimal codec divides by (`k` at most the codec's largest scale, which
/// [`decode_decimal_ints`] guarantees; larger `k` are clamped to it).
pub fn decimal_divisor(k: u8) -> f64 {
    float::pow10(usize::from(k.min(float::MAX_DECIMAL_DIGITS)))
}

/// The scale `k` and the integer payload of a [`Codec::Decimal`] payload without exceptions
/// whose integers are [`Codec::DeltaPacked`] (what [`delta_blocks`] walks); `None` for any other
/// payload. A cold move hands such integers to Parquet's delta encoding without decoding them.
pub(crate) fn decimal_delta_packed(buf: &[u8]) -> Option<(u8, &[u8])> {
    match buf {
        [k, 0, inner, rest @ ..]
            if *k <= MAX_DECIMAL_DIGITS && *inner == Codec::DeltaPacked.id() =>
        {
            Some((*k, rest))
        }
        _ => None,
    }
}

/// Decodes `n` floats of a payload [`decimal_scale`] accepted as their integers at scale `k`
/// (appended to `out`), without converting them to floats; returns `k`.
pub fn decode_decimal_ints(buf: &[u8], n: usize, out: &mut Vec<i64>) -> Result<u8, CodecError> {
    let mut k = 0;
    all_or_nothing(out, |out| {
        k = float::decode_decimal_ints(buf, n, out)?;
        Ok(())
    })?;
    Ok(k)
}

/// Encodes signed integers with the smallest codec.
pub fn encode_integers(values: &[i64], out: &mut Vec<u8>) -> Codec {
    int::encode(values, out, Effort::Smallest)
}

/// [`encode_integers`] with the given [`Effort`].
pub fn encode_integers_with(values: &[i64], out: &mut Vec<u8>, effort: Effort) -> Codec {
    int::encode(values, out, effort)
}

/// Decodes `n` signed integers.
pub fn decode_integers(
    codec: Codec,
    buf: &[u8],
    n: usize,
    out: &mut Vec<i64>,
) -> Result<(), CodecError> {
    all_or_nothing(out, |out| int::decode(codec, buf, n, out))
}

/// Encodes unsigned integers with the smallest codec (they are stored as their `i64` bit
/// patterns with the integer codecs).
pub fn encode_unsigned(values: &[u64], out: &mut Vec<u8>) -> Codec {
    encode_unsigned_with(values, out, Effort::Smallest)
}

/// [`encode_unsigned`] with the given [`Effort`].
pub fn encode_unsigned_with(values: &[u64], out: &mut Vec<u8>, effort: Effort) -> Codec {
    let signed: Vec<i64> = values.iter().map(|&v| v as i64).collect();
    int::encode(&signed, out, effort)
}

/// Decodes `n` unsigned integers.
pub fn decode_unsigned(
    codec: Codec,
    buf: &[u8],
    n: usize,
    out: &mut Vec<u64>,
) -> Result<(), CodecError> {
    all_or_nothing(out, |out| {
        int::decode(codec, buf, n, &mut int::AsUnsigned(out))
    })
}

/// Encodes booleans with the smallest codec.
pub fn encode_booleans(values: &[bool], out: &mut Vec<u8>) -> Codec {
    boolean::encode(values, out)
}

/// Decodes `n` booleans.
pub fn decode_booleans(
    codec: Codec,
    buf: &[u8],
    n: usize,
    out: &mut Vec<bool>,
) -> Result<(), CodecError> {
    all_or_nothing(out, |out| boolean::decode(codec, buf, n, out))
}

/// Encodes strings with the smallest codec.
pub fn encode_strings(values: &StringColumn, out: &mut Vec<u8>) -> Codec {
    string::encode(values, out)
}

/// Decodes `n` strings.
pub fn decode_strings(
    codec: Codec,
    buf: &[u8],
    n: usize,
    out: &mut StringColumn,
) -> Result<(), CodecError> {
    let (data_len, ends_len) = (out.data.len(), out.ends.len());
    let res = string::decode(codec, buf, n, out);
    if res.is_err() {
        out.data.truncate(data_len);
        out.ends.truncate(ends_len);
    }
    res
}
