//! Timestamps on the HTTP API and the command line: the one RFC 3339 implementation of
//! `strata_ingest::text::rfc3339` (integer nanoseconds, RFC 3339 or a bare date in; RFC 3339 in
//! UTC out).

pub(crate) use strata_ingest::text::rfc3339::{
    civil_from_days, format_rfc3339, parse_timestamp as parse_time,
};
