//! Fuzz target: the line-protocol parser never panics on any input, and every batch it accepts
//! is well formed (one slot per row in every column, row series in range). The first byte picks
//! the timestamp precision so the scaling overflow checks are exercised too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_ingest::line_protocol::{ParseOptions, Precision, parse};

const PRECISIONS: [Precision; 6] = [
    Precision::Nanoseconds,
    Precision::Microseconds,
    Precision::Milliseconds,
    Precision::Seconds,
    Precision::Minutes,
    Precision::Hours,
];

fuzz_target!(|data: &[u8]| {
    let (precision, payload) = match data.split_first() {
        Some((&b, rest)) => (PRECISIONS[usize::from(b) % PRECISIONS.len()], rest),
        None => (Precision::Nanoseconds, data),
    };
    let opts = ParseOptions {
        precision,
        device_tags: vec!["device".into(), "name".into()],
        default_time: 0,
    };
    if let Ok(batch) = parse(payload, "db", &opts) {
        for table in &batch.tables {
            assert_eq!(table.row_series.len(), table.times.len());
            assert!(
                table
                    .row_series
                    .iter()
                    .all(|&s| (s as usize) < table.series.len())
            );
            for column in &table.columns {
                assert_eq!(column.data.len(), table.times.len());
                assert_eq!(column.valid.len(), table.times.len());
            }
        }
    }
});
