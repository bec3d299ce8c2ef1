//! Property tests of the catalog-log parser on real logs written by the engine: any truncation
//! parses to a prefix (never more series than written, never a panic), and any flipped byte is
//! either a clear error or a parse of an intact prefix.

use crate::common::batch;
use proptest::prelude::*;
use strata_storage::{Engine, EngineConfig, Value, parse_catalog_log};

/// A catalog log holding several appends (one per flush) of streams, fields and series
/// (written once per test binary).
fn written_log() -> (Vec<u8>, usize) {
    static LOG: std::sync::OnceLock<(Vec<u8>, usize)> = std::sync::OnceLock::new();
    LOG.get_or_init(write_log).clone()
}

fn write_log() -> (Vec<u8>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.background = false;
    let engine = Engine::open(cfg).unwrap();
    for round in 0..4 {
        let rows: Vec<crate::common::Row> = (0..5)
            .map(|d| {
                let field = format!("f{round}");
                (
                    format!("dev{round}-{d}"),
                    d,
                    vec![(field, Value::Float(1.0))],
                )
            })
            .collect();
        engine
            .write(&batch("db", &format!("s{}", round % 2), &rows))
            .unwrap();
        engine.flush().unwrap();
    }
    let series = engine.stats().series;
    engine.shutdown().unwrap();
    drop(engine);
    (
        std::fs::read(dir.path().join("catalog.log")).unwrap(),
        series,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn truncations_parse_to_a_prefix(cut in 0usize..4096) {
        let (bytes, series) = written_log();
        let cut = cut.min(bytes.len());
        if let Ok((n, valid)) = parse_catalog_log(&bytes[..cut]) {
            prop_assert!(n <= series);
            prop_assert!(valid <= cut as u64);
        }
    }

    #[test]
    fn flipped_bytes_are_an_error_or_an_intact_prefix(at in 0usize..4096, bit in 0u8..8) {
        let (mut bytes, series) = written_log();
        let at = at % bytes.len();
        bytes[at] ^= 1 << bit;
        match parse_catalog_log(&bytes) {
            Ok((n, valid)) => {
                prop_assert!(n <= series);
                prop_assert!(valid <= bytes.len() as u64);
            }
            Err(e) => prop_assert!(e.to_string().contains("catalog"), "{e}"),
        }
    }
}

#[test]
fn the_whole_log_parses_to_every_series() {
    let (bytes, series) = written_log();
    assert_eq!(
        parse_catalog_log(&bytes).unwrap(),
        (series, bytes.len() as u64)
    );
}
