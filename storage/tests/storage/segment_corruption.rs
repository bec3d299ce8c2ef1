//! Every single-byte change or truncation of a segment file is detected (by a magic, a bound, or a
//! CRC32C) and reported as an error — never a panic and never a silently different value.

use std::path::PathBuf;

use crate::common::batch;
use proptest::prelude::*;
use strata_storage::{Engine, EngineConfig, Value, verify_segment_file};

/// A valid segment (built once) and a fresh directory to write a mutated copy into.
fn make_segment() -> (tempfile::TempDir, Vec<u8>) {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let bytes = BYTES.get_or_init(build_segment).clone();
    (tempfile::tempdir().unwrap(), bytes)
}

fn build_segment() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.background = false;
    let e = Engine::open(cfg).unwrap();
    let rows: Vec<crate::common::Row> = (0..300)
        .map(|i| {
            let fields = vec![
                ("f".to_string(), Value::Float(i as f64 * 0.1)),
                ("i".to_string(), Value::Integer(i % 7)),
                ("s".to_string(), Value::String(format!("s{}", i % 3))),
                ("b".to_string(), Value::Boolean(i % 2 == 0)),
            ];
            (format!("d{}", i % 3), i * 1000, fields)
        })
        .collect();
    e.write(&batch("db", "m", &rows)).unwrap();
    e.shutdown().unwrap();
    drop(e);
    let path = segment_path(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        verify_segment_file(&path).unwrap(),
        Vec::<String>::new(),
        "fresh segment verifies"
    );
    bytes
}

fn segment_path(root: &std::path::Path) -> PathBuf {
    std::fs::read_dir(root.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

fn detected(path: &std::path::Path) -> bool {
    match verify_segment_file(path) {
        Err(_) => true,
        Ok(problems) => !problems.is_empty(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_flipped_byte_is_detected(pos in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let (dir, mut bytes) = make_segment();
        let i = pos.index(bytes.len());
        bytes[i] ^= xor;
        let path = dir.path().join("mutated.seg");
        std::fs::write(&path, &bytes).unwrap();
        prop_assert!(detected(&path), "flip of byte {} by {:#x} went unnoticed", i, xor);
    }

    #[test]
    fn any_truncation_is_detected(pos in any::<prop::sample::Index>()) {
        let (dir, bytes) = make_segment();
        let cut = pos.index(bytes.len());
        let path = dir.path().join("cut.seg");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        prop_assert!(detected(&path));
    }

    #[test]
    fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.seg");
        std::fs::write(&path, &data).unwrap();
        prop_assert!(detected(&path));
    }
}
