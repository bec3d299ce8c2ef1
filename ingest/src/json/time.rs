//! Timestamps of JSON records: RFC 3339 strings (`2023-11-14T22:13:20.5Z`,
//! `2023-11-14T23:13:20+01:00`) and epoch numbers in a configurable unit, both turned into
//! nanoseconds since the Unix epoch within the range line protocol accepts.

use crate::line_protocol::{MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS, Precision};

/// Converts an integer epoch timestamp in `unit` to nanoseconds.
pub(crate) fn from_epoch_int(value: i128, unit: Precision) -> Result<i64, String> {
    i64::try_from(value)
        .ok()
        .and_then(|v| unit.to_nanos(v))
        .ok_or_else(|| out_of_range(&value.to_string(), unit))
}

/// Converts a fractional epoch timestamp in `unit` to nanoseconds (rounded to the nearest).
pub(crate) fn from_epoch_float(value: f64, unit: Precision) -> Result<i64, String> {
    let ns = (value * unit.nanos_per_unit() as f64).round();
    // Both bounds round to ±2^63 as f64; with strict comparisons every value that passes lies
    // inside MIN_TIMESTAMP_NS..=MAX_TIMESTAMP_NS and converts without saturation.
    if ns.is_finite() && ns > MIN_TIMESTAMP_NS as f64 && ns < MAX_TIMESTAMP_NS as f64 {
        Ok(ns as i64)
    } else {
        Err(out_of_range(&value.to_string(), unit))
    }
}

fn out_of_range(shown: &str, unit: Precision) -> String {
    format!(
        "timestamp {shown} is out of range in unit {unit}: it must be within \
         {MIN_TIMESTAMP_NS}..={MAX_TIMESTAMP_NS} nanoseconds after scaling"
    )
}

/// Parses an RFC 3339 date-time (the one parser of `crate::text::rfc3339`).
pub(crate) fn parse_rfc3339(text: &str) -> Result<i64, String> {
    crate::text::parse_rfc3339(text).map_err(|e| format!("{e}; or send an epoch number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_numbers() {
        assert_eq!(
            from_epoch_int(1_700_000_000_000, Precision::Milliseconds),
            Ok(1_700_000_000_000_000_000)
        );
        assert!(from_epoch_int(i128::from(u64::MAX), Precision::Nanoseconds).is_err());
        assert!(from_epoch_int(1 << 62, Precision::Seconds).is_err());
        assert_eq!(from_epoch_float(1.5, Precision::Seconds), Ok(1_500_000_000));
        assert!(from_epoch_float(f64::NAN, Precision::Seconds).is_err());
        assert!(from_epoch_float(1e300, Precision::Seconds).is_err());
        assert!(from_epoch_float(9.3e18, Precision::Nanoseconds).is_err());
    }
}
