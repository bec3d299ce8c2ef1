//! Per-database write limits through the public API: each limit refuses the whole batch with an
//! error naming the limit, stores nothing of it (no data, no catalog change), leaves writes under
//! the limit working, and keeps memory bounded when a client floods new series or fields.

use strata_storage::{
    Column, Engine, EngineConfig, FieldType, Limit, Limits, ScanRequest, SeriesKey, StorageError,
    TableWrite, Value, WriteBatch,
};

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.background = false;
    c
}

/// A row: device, tags, time and (field, value) pairs.
struct Row<'a> {
    device: &'a str,
    tags: &'a [(&'a str, &'a str)],
    time: i64,
    fields: Vec<(String, Value)>,
}

fn row<'a>(device: &'a str, tags: &'a [(&'a str, &'a str)], time: i64) -> Row<'a> {
    Row {
        device,
        tags,
        time,
        fields: vec![("v".into(), Value::Float(time as f64))],
    }
}

fn table(stream: &str, rows: &[Row]) -> TableWrite {
    let mut t = TableWrite {
        stream: stream.into(),
        ..Default::default()
    };
    for (i, r) in rows.iter().enumerate() {
        let key = SeriesKey {
            device: r.device.into(),
            tags: r
                .tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let idx = t.series.iter().position(|k| *k == key).unwrap_or_else(|| {
            t.series.push(key);
            t.series.len() - 1
        });
        t.row_series.push(idx as u32);
        t.times.push(r.time);
        for (name, v) in &r.fields {
            if !t.columns.iter().any(|c| &c.name == name) {
                let mut c = Column::new(name.clone(), v.field_type());
                (0..i).for_each(|_| c.push_null());
                t.columns.push(c);
            }
        }
        for c in &mut t.columns {
            match r.fields.iter().find(|(n, _)| *n == c.name) {
                Some((_, v)) => {
                    assert!(c.data.push_value(v));
                    c.valid.push(true);
                }
                None => c.push_null(),
            }
        }
    }
    t
}

fn batch(db: &str, tables: Vec<TableWrite>) -> WriteBatch {
    WriteBatch {
        database: db.into(),
        tables,
    }
}

fn points(e: &Engine, db: &str, stream: &str) -> usize {
    let req = ScanRequest {
        database: db.into(),
        stream: stream.into(),
        start: i64::MIN,
        end: i64::MAX,
        ..Default::default()
    };
    e.scan(&req).unwrap().iter().map(|b| b.times.len()).sum()
}

/// Everything a refused write must leave unchanged.
#[derive(Debug, PartialEq)]
struct Snapshot {
    series: usize,
    catalog_version: u64,
    streams: Vec<String>,
    schema: Option<Vec<(String, FieldType)>>,
    devices: Vec<String>,
    points: usize,
    memtable_bytes: usize,
    rows_written: u64,
}

fn snapshot(e: &Engine, db: &str, stream: &str) -> Snapshot {
    let stats = e.stats();
    Snapshot {
        series: stats.series,
        catalog_version: e.catalog_version(),
        streams: e.streams(db),
        schema: e.schema(db, stream),
        devices: e.devices(db, stream),
        points: points(e, db, stream),
        memtable_bytes: stats.memtable_bytes,
        rows_written: stats.rows_written,
    }
}

/// Asserts `result` is a `LimitExceeded` for `limit` whose message names the limit and its value.
fn assert_limit(
    result: strata_storage::Result<strata_storage::WriteReceipt>,
    limit: Limit,
    value: usize,
) {
    let err = result.expect_err("the write must be refused");
    let msg = err.to_string();
    match &err {
        StorageError::LimitExceeded {
            limit: got,
            value: v,
            ..
        } => {
            assert_eq!(*got, limit, "{msg}");
            assert_eq!(*v, value, "{msg}");
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    assert!(
        msg.contains(&format!("{} = {value}", limit.name())),
        "{msg}"
    );
    assert!(msg.contains("nothing from this write was stored"), "{msg}");
    assert!(msg.contains("raise the limit"), "{msg}");
}

fn limits(f: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    f(&mut l);
    l
}

#[test]
fn series_per_stream_limit_refuses_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    e.set_limits("db", limits(|l| l.max_series_per_stream = 3))
        .unwrap();
    e.write(&batch(
        "db",
        vec![table("m", &[row("a", &[], 1), row("b", &[], 2)])],
    ))
    .unwrap();
    let before = snapshot(&e, "db", "m");
    // One existing series, two new ones (4 > 3), and a new stream that must not appear either.
    let refused = batch(
        "db",
        vec![
            table("other", &[row("z", &[], 1)]),
            table("m", &[row("a", &[], 3), row("c", &[], 4), row("d", &[], 5)]),
        ],
    );
    assert_limit(e.write(&refused), Limit::SeriesPerStream, 3);
    assert_eq!(snapshot(&e, "db", "m"), before);
    assert!(e.schema("db", "other").is_none());
    // Under the limit: one more series, and existing series keep working.
    e.write(&batch(
        "db",
        vec![table("m", &[row("c", &[], 4), row("a", &[], 6)])],
    ))
    .unwrap();
    assert_eq!(e.devices("db", "m"), vec!["a", "b", "c"]);
    assert_limit(
        e.write(&batch("db", vec![table("m", &[row("d", &[], 7)])])),
        Limit::SeriesPerStream,
        3,
    );
    assert_eq!(e.stats().writes_refused_limit, 2);
    // The limit is per stream and per database.
    e.write(&batch("db", vec![table("n", &[row("d", &[], 1)])]))
        .unwrap();
    e.write(&batch("db2", vec![table("m", &[row("d", &[], 1)])]))
        .unwrap();
    assert_eq!(points(&e, "db", "m"), 4);
}

#[test]
fn fields_per_stream_limit_counts_existing_and_new_fields() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    e.set_limits("db", limits(|l| l.max_fields_per_stream = 4))
        .unwrap();
    let with_fields = |n: std::ops::Range<usize>, time: i64| Row {
        device: "a",
        tags: &[],
        time,
        fields: n
            .map(|i| (format!("f{i}"), Value::Integer(i as i64)))
            .collect(),
    };
    e.write(&batch("db", vec![table("m", &[with_fields(0..3, 1)])]))
        .unwrap();
    let before = snapshot(&e, "db", "m");
    let refused = batch("db", vec![table("m", &[with_fields(1..5, 2)])]);
    let err = e.write(&refused);
    assert!(
        err.as_ref().unwrap_err().to_string().contains("'f4'"),
        "{err:?}"
    );
    assert_limit(err, Limit::FieldsPerStream, 4);
    assert_eq!(snapshot(&e, "db", "m"), before);
    e.write(&batch("db", vec![table("m", &[with_fields(0..4, 3)])]))
        .unwrap();
    assert_eq!(e.schema("db", "m").unwrap().len(), 4);
    assert_eq!(points(&e, "db", "m"), 2);
}

#[test]
fn values_per_tag_limit_counts_distinct_values_per_key_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let small = limits(|l| l.max_values_per_tag = 2);
    {
        let e = Engine::open(config(dir.path())).unwrap();
        e.set_limits("db", small).unwrap();
        e.write(&batch(
            "db",
            vec![table(
                "m",
                &[row("a", &[("site", "x")], 1), row("b", &[("site", "y")], 2)],
            )],
        ))
        .unwrap();
        let before = snapshot(&e, "db", "m");
        let refused = batch(
            "db",
            vec![table(
                "m",
                &[row("c", &[("site", "x")], 3), row("d", &[("site", "z")], 4)],
            )],
        );
        assert_limit(e.write(&refused), Limit::ValuesPerTag, 2);
        assert_eq!(snapshot(&e, "db", "m"), before);
        // New series with known values, and other tag keys, are fine.
        e.write(&batch(
            "db",
            vec![table(
                "m",
                &[
                    row("c", &[("site", "x")], 3),
                    row("d", &[("rack", "1"), ("site", "y")], 4),
                ],
            )],
        ))
        .unwrap();
        assert_eq!(points(&e, "db", "m"), 4);
    }
    // After reopen the counts come from the catalog (WAL replay), not from memory of the writes.
    let mut cfg = config(dir.path());
    cfg.database_limits.insert("db".into(), small);
    let e = Engine::open(cfg).unwrap();
    assert_eq!(e.limits("db"), small);
    assert_eq!(e.limits("elsewhere"), Limits::default());
    assert_limit(
        e.write(&batch(
            "db",
            vec![table("m", &[row("e", &[("site", "w")], 5)])],
        )),
        Limit::ValuesPerTag,
        2,
    );
    e.write(&batch(
        "db",
        vec![table("m", &[row("e", &[("site", "y")], 5)])],
    ))
    .unwrap();
}

#[test]
fn string_bytes_limit_refuses_long_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_string_bytes = 16;
    let e = Engine::open(cfg).unwrap();
    assert_eq!(e.limits("db").max_string_bytes, 16);
    let text = |s: &str, time| Row {
        device: "a",
        tags: &[],
        time,
        fields: vec![("s".into(), Value::String(s.into()))],
    };
    e.write(&batch("db", vec![table("m", &[text(&"x".repeat(16), 1)])]))
        .unwrap();
    let before = snapshot(&e, "db", "m");
    let refused = batch(
        "db",
        vec![table("m", &[text("short", 2), text(&"y".repeat(17), 3)])],
    );
    let err = e.write(&refused);
    assert!(
        err.as_ref().unwrap_err().to_string().contains("17 bytes"),
        "{err:?}"
    );
    assert_limit(err, Limit::StringBytes, 16);
    assert_eq!(snapshot(&e, "db", "m"), before);
    e.write(&batch("db", vec![table("m", &[text("short", 2)])]))
        .unwrap();
    assert_eq!(points(&e, "db", "m"), 2);
}

#[test]
fn a_client_inventing_100k_fields_or_a_million_series_is_refused_at_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    // 100,000 distinct fields in one row.
    let wide = Row {
        device: "a",
        tags: &[],
        time: 1,
        fields: (0..100_000)
            .map(|i| (format!("f{i}"), Value::Float(1.0)))
            .collect(),
    };
    let mut t = TableWrite {
        stream: "m".into(),
        series: vec![SeriesKey {
            device: wide.device.into(),
            tags: vec![],
        }],
        row_series: vec![0],
        times: vec![wide.time],
        columns: Vec::new(),
    };
    for (name, v) in &wide.fields {
        let mut c = Column::new(name.clone(), FieldType::Float);
        c.data.push_value(v);
        c.valid.push(true);
        t.columns.push(c);
    }
    assert_limit(
        e.write(&batch("db", vec![t])),
        Limit::FieldsPerStream,
        1_000,
    );
    // One more series than the default allows, in one batch.
    let n = 1_000_001;
    let t = TableWrite {
        stream: "m".into(),
        series: (0..n)
            .map(|i| SeriesKey {
                device: format!("d{i}"),
                tags: vec![],
            })
            .collect(),
        row_series: (0..n as u32).collect(),
        times: vec![1; n],
        columns: vec![Column {
            name: "v".into(),
            data: strata_storage::ColumnData::Float(vec![1.0; n]),
            valid: vec![true; n],
        }],
    };
    assert_limit(
        e.write(&batch("db", vec![t])),
        Limit::SeriesPerStream,
        1_000_000,
    );
    let stats = e.stats();
    assert_eq!(stats.series, 0);
    assert_eq!(stats.memtable_bytes, 0);
    assert!(e.streams("db").is_empty());
}

#[test]
fn a_series_flood_stops_at_the_limit_and_memory_stops_growing() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    e.set_limits("db", limits(|l| l.max_series_per_stream = 1_000))
        .unwrap();
    let mut refused = 0;
    let mut bytes_at_limit = None;
    for b in 0..100 {
        let devices: Vec<String> = (0..100).map(|i| format!("d{b}-{i}")).collect();
        let rows: Vec<Row> = devices.iter().map(|d| row(d, &[], b as i64)).collect();
        match e.write(&batch("db", vec![table("m", &rows)])) {
            Ok(_) => assert!(b < 10, "batch {b} was accepted"),
            Err(StorageError::LimitExceeded { .. }) => {
                refused += 1;
                let bytes = e.stats().memtable_bytes;
                assert_eq!(*bytes_at_limit.get_or_insert(bytes), bytes);
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(refused, 90);
    assert_eq!(e.stats().series, 1_000);
    assert_eq!(points(&e, "db", "m"), 1_000);
}

#[test]
fn streams_and_series_per_database_bound_a_client_spreading_over_streams() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    e.set_limits(
        "db",
        limits(|l| {
            l.max_streams_per_database = 3;
            l.max_series_per_database = 5;
        }),
    )
    .unwrap();
    // Two streams, three series.
    e.write(&batch(
        "db",
        vec![
            table("s0", &[row("a", &[], 1), row("b", &[], 1)]),
            table("s1", &[row("a", &[], 1)]),
        ],
    ))
    .unwrap();
    // Two new streams in one batch: 4 > 3, nothing of the batch is stored.
    let refused = batch(
        "db",
        vec![
            table("s2", &[row("c", &[], 2)]),
            table("s3", &[row("c", &[], 2)]),
        ],
    );
    assert_limit(e.write(&refused), Limit::StreamsPerDatabase, 3);
    assert!(e.schema("db", "s2").is_none());
    assert!(e.schema("db", "s3").is_none());
    // A third stream is fine; per-stream series limits would allow far more series, but the
    // database's total (3 + 3 > 5) refuses a batch spread over streams as a whole.
    e.write(&batch("db", vec![table("s2", &[row("c", &[], 2)])]))
        .unwrap();
    let spread = batch(
        "db",
        vec![
            table("s0", &[row("d", &[], 3)]),
            table("s1", &[row("d", &[], 3)]),
        ],
    );
    assert_limit(e.write(&spread), Limit::SeriesPerDatabase, 5);
    assert_eq!(points(&e, "db", "s0"), 2);
    assert_eq!(points(&e, "db", "s1"), 1);
    e.write(&batch("db", vec![table("s0", &[row("d", &[], 3)])]))
        .unwrap();
    let err = e
        .write(&batch("db", vec![table("s1", &[row("e", &[], 4)])]))
        .unwrap_err();
    assert!(
        err.to_string().contains("max_series_per_database = 5")
            && err.to_string().contains("the database has 5 series"),
        "{err}"
    );
    // Existing series keep writing; another database has its own count.
    e.write(&batch("db", vec![table("s1", &[row("a", &[], 9)])]))
        .unwrap();
    e.write(&batch(
        "db2",
        vec![table("s9", &[row("x", &[], 1), row("y", &[], 1)])],
    ))
    .unwrap();
    // Replay applies no limits: everything acknowledged comes back after a reopen.
    drop(e);
    let e = Engine::open(config(dir.path())).unwrap();
    assert_eq!(e.stats().series, 7);
}

#[test]
fn fields_per_database_bound_a_client_spreading_field_names_over_streams() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    e.set_limits(
        "db",
        limits(|l| {
            l.max_fields_per_stream = 3;
            l.max_fields_per_database = 5;
        }),
    )
    .unwrap();
    let wide = |stream: &str, names: &[&str]| {
        let mut t = table(stream, &[row("a", &[], 1)]);
        t.columns.truncate(0);
        for name in names {
            let mut c = Column::new(*name, FieldType::Float);
            c.data.push_value(&Value::Float(1.0));
            c.valid.push(true);
            t.columns.push(c);
        }
        batch("db", vec![t])
    };
    e.write(&wide("s0", &["a", "b", "c"])).unwrap();
    // Each stream stays under its own limit of 3, but 3 + 3 > 5 over the database.
    assert_limit(
        e.write(&wide("s1", &["a", "b", "c"])),
        Limit::FieldsPerDatabase,
        5,
    );
    assert!(
        e.schema("db", "s1").is_none(),
        "nothing of the batch is stored"
    );
    e.write(&wide("s1", &["a", "b"])).unwrap();
    let err = e.write(&wide("s2", &["x"])).unwrap_err();
    assert!(
        err.to_string().contains("max_fields_per_database = 5")
            && err.to_string().contains("the database has 5 fields"),
        "{err}"
    );
    // Known fields keep working, and another database counts its own.
    e.write(&wide("s1", &["b", "a"])).unwrap();
    e.write(&batch("db2", vec![table("s2", &[row("x", &[], 1)])]))
        .unwrap();
}
