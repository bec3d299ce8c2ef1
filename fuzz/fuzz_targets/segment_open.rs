//! Fuzz target: arbitrary bytes as a segment file must open and verify without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("strata-fuzz-seg-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input.seg");
    if std::fs::write(&path, data).is_ok() {
        let _ = strata_storage::verify_segment_file(&path);
    }
});
