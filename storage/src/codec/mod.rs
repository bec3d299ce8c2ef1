//! Column codecs (contract stub, being implemented).

use crate::StringColumn;

/// Codec identifiers, stored as one byte in each chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    /// Placeholder.
    Raw = 0,
}

impl Codec {
    /// Parses a stored codec byte.
    pub fn from_u8(_b: u8) -> Result<Codec, CodecError> {
        todo!()
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

/// Encodes timestamps with the smallest codec; appends the payload to `out` and returns the codec used.
pub fn encode_timestamps(_values: &[i64], _out: &mut Vec<u8>) -> Codec {
    todo!()
}
/// Decodes `n` timestamps, appending them to `out`.
pub fn decode_timestamps(_codec: Codec, _buf: &[u8], _n: usize, _out: &mut Vec<i64>) -> Result<(), CodecError> {
    todo!()
}
/// Encodes floats with the smallest codec.
pub fn encode_floats(_values: &[f64], _out: &mut Vec<u8>) -> Codec {
    todo!()
}
/// Decodes `n` floats.
pub fn decode_floats(_codec: Codec, _buf: &[u8], _n: usize, _out: &mut Vec<f64>) -> Result<(), CodecError> {
    todo!()
}
/// Encodes signed integers with the smallest codec.
pub fn encode_integers(_values: &[i64], _out: &mut Vec<u8>) -> Codec {
    todo!()
}
/// Decodes `n` signed integers.
pub fn decode_integers(_codec: Codec, _buf: &[u8], _n: usize, _out: &mut Vec<i64>) -> Result<(), CodecError> {
    todo!()
}
/// Encodes unsigned integers with the smallest codec.
pub fn encode_unsigned(_values: &[u64], _out: &mut Vec<u8>) -> Codec {
    todo!()
}
/// Decodes `n` unsigned integers.
pub fn decode_unsigned(_codec: Codec, _buf: &[u8], _n: usize, _out: &mut Vec<u64>) -> Result<(), CodecError> {
    todo!()
}
/// Encodes booleans with the smallest codec.
pub fn encode_booleans(_values: &[bool], _out: &mut Vec<u8>) -> Codec {
    todo!()
}
/// Decodes `n` booleans.
pub fn decode_booleans(_codec: Codec, _buf: &[u8], _n: usize, _out: &mut Vec<bool>) -> Result<(), CodecError> {
    todo!()
}
/// Encodes strings with the smallest codec.
pub fn encode_strings(_values: &StringColumn, _out: &mut Vec<u8>) -> Codec {
    todo!()
}
/// Decodes `n` strings.
pub fn decode_strings(_codec: Codec, _buf: &[u8], _n: usize, _out: &mut StringColumn) -> Result<(), CodecError> {
    todo!()
}
