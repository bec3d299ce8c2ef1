//! Reads of series that span several segment blocks (more than 8192 points): ranges that cut
//! blocks, dense and sparse fields of several types, through `scan` and `scan_rows`, compared
//! with the points written.

use crate::common::{Row, all, batch, flatten};
use strata_storage::{Engine, EngineConfig, Value};

const POINTS: i64 = 20_000;

fn rows() -> Vec<Row> {
    (0..POINTS)
        .map(|i| {
            let mut fields = vec![
                ("dense".to_string(), Value::Float(i as f64 * 0.5)),
                ("label".to_string(), Value::String(format!("l{}", i % 7))),
            ];
            if i % 3 != 0 {
                fields.push(("sparse".to_string(), Value::Float(-(i as f64))));
            }
            if i % 2 == 0 {
                fields.push(("count".to_string(), Value::Integer(i)));
            }
            ("d".to_string(), i * 10, fields)
        })
        .collect()
}

#[test]
fn reads_across_blocks_return_the_written_points() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.background = false;
    let engine = Engine::open(cfg).unwrap();
    let written = rows();
    engine.write(&batch("db", "s", &written)).unwrap();
    engine.flush().unwrap();
    engine.compact().unwrap();
    let ranges = [
        (i64::MIN, i64::MAX),
        (1_000, 190_000),
        (80_000, 84_000),
        (163_810, 163_900),
        (81_920, 81_930),
    ];
    for (start, end) in ranges {
        let mut req = all("db", "s");
        (req.start, req.end) = (start, end);
        let in_range: Vec<Row> = written
            .iter()
            .filter(|r| r.1 >= start && r.1 < end)
            .cloned()
            .collect();
        let want = flatten(&expected(&in_range));
        let got = engine.scan(&req).unwrap();
        assert!(got[0].times.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(flatten(&got), want, "scan [{start}, {end})");

        req.fields = Some(vec!["sparse".to_string()]);
        let got = engine.scan_rows(&req).unwrap();
        assert_eq!(got[0].times.len(), in_range.len(), "[{start}, {end})");
        let sparse: Vec<_> = want.iter().filter(|p| p.2 == "sparse").cloned().collect();
        assert_eq!(flatten(&got), sparse, "scan_rows [{start}, {end})");
    }
}

/// The written rows as one series batch per device (what a scan should return).
fn expected(rows: &[Row]) -> Vec<strata_storage::SeriesBatch> {
    let b = batch("db", "s", rows);
    let t = &b.tables[0];
    vec![strata_storage::SeriesBatch {
        series_id: 0,
        key: t.series[0].clone(),
        times: t.times.clone(),
        columns: t.columns.clone(),
    }]
}
