//! Timestamp precision as named in query strings (`ns`/`n`, `us`/`u`, `ms`, `s`, and InfluxDB 1.x's
//! `m` and `h`), and line-protocol parsing at that precision. Minutes and hours are not parser
//! precisions: those payloads are parsed as integers and scaled here with overflow checks.

use strata_ingest::line_protocol::{ParseOptions, Precision, parse};
use strata_storage::WriteBatch;

use crate::error::ApiError;

/// Precision of the timestamps in a write request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WirePrecision {
    /// Nanoseconds (default).
    #[default]
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes (InfluxDB 1.x only).
    Minutes,
    /// Hours (InfluxDB 1.x only).
    Hours,
}

impl WirePrecision {
    /// Parses the `precision` query parameter; absent or empty means nanoseconds.
    pub fn from_param(p: Option<&str>) -> Result<Self, ApiError> {
        Ok(match p.unwrap_or("") {
            "" | "ns" | "n" => WirePrecision::Nanoseconds,
            "us" | "u" | "µ" | "µs" => WirePrecision::Microseconds,
            "ms" => WirePrecision::Milliseconds,
            "s" => WirePrecision::Seconds,
            "m" => WirePrecision::Minutes,
            "h" => WirePrecision::Hours,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown precision '{other}' (expected ns, us, ms, s, m or h)"
                )));
            }
        })
    }

    /// Nanoseconds per unit.
    pub fn unit_ns(self) -> i64 {
        match self {
            WirePrecision::Nanoseconds => 1,
            WirePrecision::Microseconds => 1_000,
            WirePrecision::Milliseconds => 1_000_000,
            WirePrecision::Seconds => 1_000_000_000,
            WirePrecision::Minutes => 60_000_000_000,
            WirePrecision::Hours => 3_600_000_000_000,
        }
    }

    /// The parser precision, and the factor the parsed times must still be multiplied by.
    fn parser_precision(self) -> (Precision, i64) {
        match self {
            WirePrecision::Nanoseconds => (Precision::Nanoseconds, 1),
            WirePrecision::Microseconds => (Precision::Microseconds, 1),
            WirePrecision::Milliseconds => (Precision::Milliseconds, 1),
            WirePrecision::Seconds => (Precision::Seconds, 1),
            WirePrecision::Minutes | WirePrecision::Hours => (Precision::Nanoseconds, self.unit_ns()),
        }
    }
}

/// Parses a line-protocol payload. Lines without a timestamp get `now_ns` truncated to the precision.
pub fn parse_payload(
    payload: &[u8],
    database: &str,
    precision: WirePrecision,
    device_tags: &[String],
    now_ns: i64,
) -> Result<WriteBatch, ApiError> {
    let (parser_precision, scale) = precision.parser_precision();
    let unit = precision.unit_ns();
    let truncated_now = now_ns - now_ns.rem_euclid(unit);
    let opts = ParseOptions {
        precision: parser_precision,
        device_tags: device_tags.to_vec(),
        default_time: truncated_now / scale,
    };
    let mut batch = parse(payload, database, &opts)?;
    if scale != 1 {
        scale_times(&mut batch, scale)?;
    }
    Ok(batch)
}

/// Multiplies every timestamp by `scale`, failing on overflow.
fn scale_times(batch: &mut WriteBatch, scale: i64) -> Result<(), ApiError> {
    for t in batch.tables.iter_mut().flat_map(|t| t.times.iter_mut()) {
        *t = t.checked_mul(scale).ok_or_else(|| {
            ApiError::BadRequest(format!("timestamp {t} is out of range at this precision"))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_names() {
        assert_eq!(WirePrecision::from_param(None).unwrap(), WirePrecision::Nanoseconds);
        assert_eq!(WirePrecision::from_param(Some("n")).unwrap(), WirePrecision::Nanoseconds);
        assert_eq!(WirePrecision::from_param(Some("u")).unwrap(), WirePrecision::Microseconds);
        assert_eq!(WirePrecision::from_param(Some("ms")).unwrap(), WirePrecision::Milliseconds);
        assert_eq!(WirePrecision::from_param(Some("h")).unwrap(), WirePrecision::Hours);
        assert!(WirePrecision::from_param(Some("weeks")).is_err());
    }

    #[test]
    fn scaling_checks_overflow() {
        let mut batch = WriteBatch::default();
        batch.tables.push(strata_storage::TableWrite { times: vec![2, i64::MAX / 2], ..Default::default() });
        assert!(scale_times(&mut batch, 60_000_000_000).is_err());
        let mut ok = WriteBatch::default();
        ok.tables.push(strata_storage::TableWrite { times: vec![2, -3], ..Default::default() });
        scale_times(&mut ok, 3_600_000_000_000).unwrap();
        assert_eq!(ok.tables[0].times, vec![7_200_000_000_000, -10_800_000_000_000]);
    }
}
