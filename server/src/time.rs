//! Timestamps on the HTTP API and the command line: the one RFC 3339 implementation of
//! `strata_ingest::text::rfc3339` (integer nanoseconds, RFC 3339 or a bare date in; RFC 3339 in
//! UTC out).

pub(crate) use strata_ingest::text::rfc3339::{
    civil_from_days, format_rfc3339, parse_timestamp as parse_time,
};

/// Parses a duration such as `500ms`, `30s`, `10m`, `6h`, `1d` for a command-line flag (the one
/// parser of `strata_ingest::text::duration`, which also takes `w` and `y`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    strata_ingest::text::parse_duration(s).map_err(|e| e.to_string())
}
