//! Fuzz target: arbitrary bytes as a catalog log must parse to a catalog or a clear error, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, valid)) = strata_storage::parse_catalog_log(data) {
        assert!(valid <= data.len() as u64);
    }
});
