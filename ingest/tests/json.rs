//! Examples of the JSON telemetry decoder: the three layouts, timestamps, number typing,
//! flattening, forced devices, and the precise errors (path, record, field) for bad payloads.

use strata_ingest::json::{IntegerMode, JsonError, JsonOptions, parse};
use strata_ingest::line_protocol::Precision;
use strata_storage::{SeriesKey, TableWrite, Value, WriteBatch};

const NOW: i64 = 42;
const MS: i64 = 1_000_000;

fn opts() -> JsonOptions {
    JsonOptions {
        default_time: NOW,
        ..JsonOptions::default()
    }
}

fn ok(payload: &str) -> WriteBatch {
    parse(payload.as_bytes(), "db", "telemetry", Some("d1"), &opts()).unwrap()
}

fn err(payload: &str) -> JsonError {
    parse(payload.as_bytes(), "db", "telemetry", Some("d1"), &opts()).unwrap_err()
}

fn value(t: &TableWrite, field: &str, row: usize) -> Option<Value> {
    t.columns.iter().find(|c| c.name == field)?.get(row)
}

#[test]
fn single_record() {
    let b = ok(
        r#"{"ts": 1700000000000, "temperature": 21.5, "count": 3, "door": "open", "ok": true, "gone": null}"#,
    );
    assert_eq!(b.database, "db");
    assert_eq!(b.tables.len(), 1);
    let t = &b.tables[0];
    assert_eq!(t.stream, "telemetry");
    assert_eq!(t.times, vec![1_700_000_000_000 * MS]);
    assert_eq!(
        t.series,
        vec![SeriesKey {
            device: "d1".into(),
            tags: vec![]
        }]
    );
    assert_eq!(value(t, "temperature", 0), Some(Value::Float(21.5)));
    assert_eq!(
        value(t, "count", 0),
        Some(Value::Float(3.0)),
        "integers are floats by default"
    );
    assert_eq!(value(t, "door", 0), Some(Value::String("open".into())));
    assert_eq!(value(t, "ok", 0), Some(Value::Boolean(true)));
    assert!(
        t.columns.iter().all(|c| c.name != "gone"),
        "null is no value"
    );
}

#[test]
fn integer_mode_keeps_integers() {
    let o = JsonOptions {
        integers: IntegerMode::Integer,
        ..opts()
    };
    let b = parse(
        br#"{"a": 3, "b": 3.0, "c": 18446744073709551615, "d": -1}"#,
        "db",
        "s",
        None,
        &o,
    )
    .unwrap();
    let t = &b.tables[0];
    assert_eq!(value(t, "a", 0), Some(Value::Integer(3)));
    assert_eq!(value(t, "b", 0), Some(Value::Float(3.0)));
    assert_eq!(value(t, "c", 0), Some(Value::Unsigned(u64::MAX)));
    assert_eq!(value(t, "d", 0), Some(Value::Integer(-1)));
    let e = parse(br#"[{"a": 21}, {"a": 21.5}]"#, "db", "s", None, &o).unwrap_err();
    assert_eq!(e.path, "$[1].a");
    assert_eq!(e.record, Some(1));
    assert!(
        e.message.contains("float here but integer in record 0"),
        "{e}"
    );
    // The default mode accepts the same payload.
    assert_eq!(
        parse(br#"[{"a": 21}, {"a": 21.5}]"#, "db", "s", None, &opts())
            .unwrap()
            .rows(),
        2
    );
}

#[test]
fn array_of_records_with_streams_devices_and_tags() {
    let payload = r#"[
        {"ts": "2023-11-14T22:13:20Z", "t": 1},
        {"time": 1700000001000, "stream": "power", "v": 230, "tags": {"phase": "L1"}},
        {"t": 2, "tags": {"b": "2", "a": "1"}}
    ]"#;
    let b = parse(payload.as_bytes(), "db", "env", None, &opts()).unwrap();
    assert_eq!(b.tables.len(), 2);
    let env = &b.tables[0];
    assert_eq!(env.stream, "env");
    assert_eq!(env.times, vec![1_700_000_000_000 * MS, NOW]);
    assert_eq!(env.series.len(), 2);
    assert_eq!(env.series[0], SeriesKey::default());
    assert_eq!(
        env.series[1].tags,
        vec![("a".into(), "1".into()), ("b".into(), "2".into())],
        "tags are sorted"
    );
    let power = &b.tables[1];
    assert_eq!(power.stream, "power");
    assert_eq!(power.times, vec![1_700_000_001_000 * MS]);
    assert_eq!(power.series[0].tags, vec![("phase".into(), "L1".into())]);
}

#[test]
fn device_named_or_forced() {
    let b = parse(br#"{"device": "pump-7", "p": 1}"#, "db", "s", None, &opts()).unwrap();
    assert_eq!(b.tables[0].series[0].device, "pump-7");
    let b = ok(r#"{"device": "d1", "p": 1}"#);
    assert_eq!(b.tables[0].series[0].device, "d1");
    let e = err(r#"{"device": "d2", "p": 1}"#);
    assert_eq!(e.path, "$.device");
    assert!(e.message.contains("belongs to device \"d1\""), "{e}");
    let e = parse(br#"{"device": "a b", "p": 1}"#, "db", "s", None, &opts()).unwrap_err();
    assert!(e.message.contains("invalid device id"), "{e}");
}

#[test]
fn header_plus_rows() {
    let payload = r#"{"stream": "env", "tags": {"site": "x"},
        "columns": ["ts", "temperature", "humidity", "stream"],
        "rows": [[1700000000000, 21.5, 40, null], [1700000001000, null, 41, "other"]]}"#;
    let b = ok(payload);
    assert_eq!(b.tables.len(), 2);
    let env = &b.tables[0];
    assert_eq!(env.stream, "env");
    assert_eq!(env.times, vec![1_700_000_000_000 * MS]);
    assert_eq!(env.series[0].device, "d1");
    assert_eq!(env.series[0].tags, vec![("site".into(), "x".into())]);
    assert_eq!(value(env, "humidity", 0), Some(Value::Float(40.0)));
    let other = &b.tables[1];
    assert_eq!(other.stream, "other");
    assert_eq!(value(other, "temperature", 0), None);
    assert_eq!(value(other, "humidity", 0), Some(Value::Float(41.0)));

    let e = err(r#"{"columns": ["ts", "a"], "rows": [[1, 2], [1, [3]]]}"#);
    assert_eq!(e.path, "$.rows[1][1]");
    assert_eq!(e.record, Some(1));
    assert_eq!(e.field.as_deref(), Some("a"));
    assert!(e.message.contains("arrays are not supported"), "{e}");
    let e = err(r#"{"columns": ["a"], "rows": [[1, 2]]}"#);
    assert_eq!(e.path, "$.rows[0]");
    assert!(
        e.message.contains("2 values but there are 1 columns"),
        "{e}"
    );
    let e = err(r#"{"columns": ["a", "a"], "rows": []}"#);
    assert_eq!(e.path, "$.columns[1]");
    let e = err(r#"{"columns": ["a"], "rows": [], "extra": 1}"#);
    assert_eq!(e.path, "$.extra");
    let e = err(r#"{"rows": []}"#);
    assert!(e.message.contains("missing \"columns\""), "{e}");
    assert_eq!(ok(r#"{"columns": ["a"], "rows": []}"#).rows(), 0);
}

#[test]
fn nested_objects_are_flattened() {
    let b = ok(r#"{"gps": {"lat": 52.3, "lon": 4.9, "fix": {"ok": true}}, "t": 1}"#);
    let t = &b.tables[0];
    assert_eq!(value(t, "gps.lat", 0), Some(Value::Float(52.3)));
    assert_eq!(value(t, "gps.fix.ok", 0), Some(Value::Boolean(true)));
    let e = err(r#"{"gps.lat": 1, "gps": {"lat": 2}}"#);
    assert!(e.message.contains("appears twice"), "{e}");
    assert_eq!(e.field.as_deref(), Some("gps.lat"));
    let e = err(r#"{"gps": {"": 1}}"#);
    assert_eq!(e.path, "$.gps");
    let deep = format!("{}1{}", r#"{"a":"#.repeat(20), "}".repeat(20));
    let e = err(&deep);
    assert!(e.message.contains("nested more than"), "{e}");
}

#[test]
fn timestamps() {
    let at = |payload: &str, unit: Precision| {
        let o = JsonOptions {
            epoch_unit: unit,
            ..opts()
        };
        parse(payload.as_bytes(), "db", "s", None, &o).map(|b| b.tables[0].times[0])
    };
    assert_eq!(
        at(r#"{"ts": 1700000000, "v": 1}"#, Precision::Seconds),
        Ok(1_700_000_000_000_000_000)
    );
    assert_eq!(
        at(r#"{"ts": 1.5, "v": 1}"#, Precision::Seconds),
        Ok(1_500_000_000)
    );
    assert_eq!(at(r#"{"ts": -5, "v": 1}"#, Precision::Nanoseconds), Ok(-5));
    assert_eq!(
        at(r#"{"ts": null, "v": 1}"#, Precision::Nanoseconds),
        Ok(NOW)
    );
    assert_eq!(
        at(
            r#"{"time": "2023-11-14T23:13:20.25+01:00", "v": 1}"#,
            Precision::Seconds
        ),
        Ok(1_700_000_000_250_000_000)
    );
    let e = err(r#"{"ts": 1, "time": 2, "v": 1}"#);
    assert!(e.message.contains("both"), "{e}");
    let e = err(r#"{"ts": "yesterday", "v": 1}"#);
    assert_eq!(e.path, "$.ts");
    assert!(e.message.contains("RFC 3339"), "{e}");
    let e = err(r#"{"ts": 9300000000000000, "v": 1}"#);
    assert!(e.message.contains("out of range"), "{e}");
    let e = err(r#"{"ts": true, "v": 1}"#);
    assert!(e.message.contains("found a boolean"), "{e}");
}

#[test]
fn precise_errors() {
    let e = err(r#"{"a": 1,}"#);
    assert_eq!(e.path, "$");
    assert!(
        e.message.starts_with("invalid JSON at line 1, column 9"),
        "{e}"
    );
    let e = err("42");
    assert!(e.message.contains("found a number"), "{e}");
    let e = err(r#"[{"a": 1}, 7]"#);
    assert_eq!(e.path, "$[1]");
    let e = err(r#"[{"a": 1}, {"b": [1, 2]}]"#);
    assert_eq!(
        e.to_string(),
        "$[1].b: arrays are not supported as field values: send one record per reading, or name each element as its own field"
    );
    let e = err(r#"[{"a": "x"}, {"a": 1}]"#);
    assert_eq!(e.path, "$[1].a");
    assert!(
        e.message.contains("float here but string in record 0"),
        "{e}"
    );
    let e = err(r#"{"stream": 5, "a": 1}"#);
    assert_eq!(e.path, "$.stream");
    let e = err(r#"{"stream": "", "a": 1}"#);
    assert!(e.message.contains("empty stream name"), "{e}");
    let e = err(r#"{"tags": {"k": 1}, "a": 1}"#);
    assert!(e.message.contains("must be a string"), "{e}");
    let e = err(r#"[{"columns": [], "a": 1}]"#);
    assert_eq!(e.path, "$[0]");
    let e = err("{\"a\\u0001\": 1}");
    assert!(e.message.contains("control character"), "{e}");
    let e = parse(b"{}", "db", "bad\nname", None, &opts()).unwrap_err();
    assert!(e.message.contains("control character"), "{e}");
}

#[test]
fn empty_payloads() {
    assert_eq!(ok("[]").rows(), 0);
    // A record with only metadata is still a row (the engine stores no values for it).
    assert_eq!(ok(r#"{"ts": 1}"#).rows(), 1);
    assert!(err("").message.contains("invalid JSON"));
}
