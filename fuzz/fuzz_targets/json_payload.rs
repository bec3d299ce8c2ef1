//! Fuzz target: the JSON telemetry decoder never panics on any input, and every batch it
//! accepts is well formed (one slot per row in every column, row series in range, the forced
//! device on every series). The first byte picks the epoch unit, the integer mode and whether
//! a device is forced.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_ingest::json::{IntegerMode, JsonOptions, parse};
use strata_ingest::line_protocol::Precision;

const UNITS: [Precision; 6] = [
    Precision::Nanoseconds,
    Precision::Microseconds,
    Precision::Milliseconds,
    Precision::Seconds,
    Precision::Minutes,
    Precision::Hours,
];

fuzz_target!(|data: &[u8]| {
    let (mode, payload) = match data.split_first() {
        Some((&b, rest)) => (b, rest),
        None => (0, data),
    };
    let opts = JsonOptions {
        epoch_unit: UNITS[usize::from(mode & 0x0f) % UNITS.len()],
        integers: if mode & 0x10 == 0 {
            IntegerMode::Float
        } else {
            IntegerMode::Integer
        },
        default_time: 0,
    };
    let device = (mode & 0x20 != 0).then_some("dev-1");
    if let Ok(batch) = parse(payload, "db", "telemetry", device, &opts) {
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
            if let Some(d) = device {
                assert!(table.series.iter().all(|k| k.device == d));
            }
        }
    }
});
