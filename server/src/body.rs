//! Request bodies of the write endpoints: `Content-Encoding` handling (identity or gzip) with a
//! limit on the decompressed size, and the mapping of body-read failures to API errors.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use flate2::read::MultiGzDecoder;

use crate::error::ApiError;

/// How the request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Plain bytes.
    Identity,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
}

/// Reads the `Content-Encoding` header.
pub fn content_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text.eq_ignore_ascii_case("gzip") || text.eq_ignore_ascii_case("x-gzip") {
        Ok(Encoding::Gzip)
    } else if text.is_empty() || text.eq_ignore_ascii_case("identity") {
        Ok(Encoding::Identity)
    } else {
        Err(ApiError::UnsupportedEncoding(
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ))
    }
}

/// Maps a failure to read the body: over the limit becomes 413, anything else 400.
pub fn rejection(r: BytesRejection, limit: usize) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::BadRequest(format!("cannot read the request body: {}", r.body_text()))
    }
}

/// Decodes the body; identity bodies are returned as they are (no copy).
pub fn decode(body: Bytes, encoding: Encoding, limit: usize) -> Result<Bytes, ApiError> {
    match encoding {
        Encoding::Identity => Ok(body),
        Encoding::Gzip => gunzip(&body, limit).map(Bytes::from),
    }
}

/// Decompresses gzip data, failing with 413 once the output exceeds `limit` bytes.
pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let cap = data.len().saturating_mul(4).min(limit).min(64 << 20);
    let mut out = Vec::with_capacity(cap);
    let take = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    MultiGzDecoder::new(data)
        .take(take)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use proptest::prelude::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_round_trip_and_limit() {
        let data = vec![b'x'; 10_000];
        assert_eq!(gunzip(&gzip(&data), 10_000).unwrap(), data);
        assert!(matches!(
            gunzip(&gzip(&data), 9_999),
            Err(ApiError::PayloadTooLarge { limit: 9_999 })
        ));
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn encodings() {
        let mut h = HeaderMap::new();
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Identity);
        h.insert(header::CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Gzip);
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(matches!(
            content_encoding(&h),
            Err(ApiError::UnsupportedEncoding(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = gunzip(&b, 1000);
        }
    }
}
