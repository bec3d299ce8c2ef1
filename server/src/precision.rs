//! Timestamp precision as named in query strings (`ns`/`n`, `us`/`u`, `ms`, `s`, and InfluxDB
//! 1.x's `m` and `h`), and line-protocol parsing at that precision with the server's clock as
//! the time of lines that carry none.

use strata_ingest::line_protocol::{ParseOptions, Precision, parse};
use strata_storage::WriteBatch;

use crate::error::ApiError;

/// Parses the `precision` query parameter; absent or empty means nanoseconds.
pub fn precision_param(p: Option<&str>) -> Result<Precision, ApiError> {
    match p.unwrap_or("") {
        "" => Ok(Precision::Nanoseconds),
        name => Precision::parse_param(name).map_err(|e| ApiError::BadRequest(e.to_string())),
    }
}

/// Parses a line-protocol payload. Lines without a timestamp get `now_ns` truncated to the
/// precision (as InfluxDB does).
pub fn parse_payload(
    payload: &[u8],
    database: &str,
    precision: Precision,
    device_tags: &[String],
    now_ns: i64,
) -> Result<WriteBatch, ApiError> {
    let opts = ParseOptions {
        precision,
        device_tags: device_tags.to_vec(),
        default_time: now_ns - now_ns.rem_euclid(precision.nanos_per_unit()),
    };
    Ok(parse(payload, database, &opts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_names() {
        assert_eq!(precision_param(None).unwrap(), Precision::Nanoseconds);
        assert_eq!(precision_param(Some("n")).unwrap(), Precision::Nanoseconds);
        assert_eq!(precision_param(Some("u")).unwrap(), Precision::Microseconds);
        assert_eq!(
            precision_param(Some("ms")).unwrap(),
            Precision::Milliseconds
        );
        assert_eq!(precision_param(Some("h")).unwrap(), Precision::Hours);
        assert!(precision_param(Some("weeks")).is_err());
    }

    #[test]
    fn default_time_is_truncated_to_the_precision() {
        let tags = vec!["device".to_string()];
        let batch = parse_payload(
            b"m,device=a v=1i",
            "db",
            Precision::Seconds,
            &tags,
            1_500_000_000_123,
        )
        .unwrap();
        assert_eq!(batch.tables[0].times, vec![1_500_000_000_000]);
        let batch = parse_payload(b"m,device=a v=1i 2", "db", Precision::Hours, &tags, 0).unwrap();
        assert_eq!(batch.tables[0].times, vec![7_200_000_000_000]);
        assert!(
            parse_payload(b"m v=1i 9223372036854775", "db", Precision::Hours, &tags, 0).is_err()
        );
    }
}
