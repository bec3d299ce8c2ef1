//! Property tests of the line-protocol parser: random points with characters that need escaping
//! are serialized by a reference escaper written here, parsed back and compared with a model of
//! the expected batch; arbitrary and mutated bytes never make the parser panic, and whatever it
//! accepts is well formed.

use proptest::prelude::*;
use strata_ingest::line_protocol::{
    MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS, ParseOptions, Precision, parse,
};
use strata_storage::{Column, FieldType, SeriesKey, TableWrite, Value, WriteBatch};

const DEFAULT_TIME: i64 = -7;

fn opts() -> ParseOptions {
    ParseOptions {
        precision: Precision::Nanoseconds,
        device_tags: vec!["device".into(), "name".into()],
        default_time: DEFAULT_TIME,
    }
}

// ---------------------------------------------------------------- reference escaper

/// Escapes a measurement name: comma and space.
fn escape_measurement(s: &str) -> String {
    escape_with(s, &[',', ' '])
}

/// Escapes a tag key, tag value or field key: comma, equals sign and space.
fn escape_key(s: &str) -> String {
    escape_with(s, &[',', '=', ' '])
}

fn escape_with(s: &str, specials: &[char]) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if specials.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes a string field value: double quote and backslash.
fn escape_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------- generated points

const NAME_CHARS: &[char] = &[
    'a', 'b', 'Z', '0', '9', ' ', ',', '=', '\\', '"', '\'', '#', 'é', '🍭', '_', '-', '.',
];
const STRING_CHARS: &[char] = &[
    'x', 'n', ' ', ',', '=', '\\', '"', '\t', '\r', 'é', '🚀', '#', 'i', '1',
];
const TRUE_SPELLINGS: [&str; 5] = ["t", "T", "true", "True", "TRUE"];
const FALSE_SPELLINGS: [&str; 5] = ["f", "F", "false", "False", "FALSE"];

/// A name with characters that need escaping; names cannot end with a backslash (it would
/// escape the delimiter after it), and `time` is reserved.
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(NAME_CHARS), 1..10)
        .prop_map(|cs| cs.into_iter().collect::<String>())
        .prop_filter("no trailing backslash", |s| !s.ends_with('\\'))
        .prop_filter("reserved", |s| s != "time" && s != "device" && s != "name")
}

/// A measurement name: also not starting with `#` (that line would be a comment).
fn measurement() -> impl Strategy<Value = String> {
    name().prop_filter("comment", |s| !s.starts_with('#'))
}

fn field_type() -> impl Strategy<Value = FieldType> {
    prop::sample::select(vec![
        FieldType::Float,
        FieldType::Integer,
        FieldType::Unsigned,
        FieldType::Boolean,
        FieldType::String,
    ])
}

/// Measurements, each with its distinct fields and their types.
type Schema = Vec<(String, Vec<(String, FieldType)>)>;

fn schema() -> impl Strategy<Value = Schema> {
    prop::collection::btree_map(
        measurement(),
        prop::collection::btree_map(name(), field_type(), 1..5),
        1..4,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect()
    })
}

/// One of each kind of value; the schema picks the one it needs.
#[derive(Debug, Clone)]
struct Values {
    float: f64,
    float_debug: bool,
    integer: i64,
    unsigned: u64,
    boolean: bool,
    spelling: usize,
    string: String,
}

fn finite_float() -> impl Strategy<Value = f64> {
    use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO,
        (-1_000_000i64..1_000_000).prop_map(|x| x as f64 / 100.0),
    ]
}

fn values() -> impl Strategy<Value = Values> {
    (
        finite_float(),
        any::<bool>(),
        any::<i64>(),
        any::<u64>(),
        any::<bool>(),
        0usize..5,
        prop::collection::vec(prop::sample::select(STRING_CHARS), 0..12),
    )
        .prop_map(
            |(float, float_debug, integer, unsigned, boolean, spelling, s)| Values {
                float,
                float_debug,
                integer,
                unsigned,
                boolean,
                spelling,
                string: s.into_iter().collect(),
            },
        )
}

/// One line's worth of random material.
#[derive(Debug, Clone)]
struct Point {
    measurement: usize,
    device: Option<String>,
    /// Tags (including the device tag) in the order they are written.
    tags: Vec<(String, String)>,
    /// Field picks: (index into the measurement's fields, values); duplicates are dropped.
    fields: Vec<(usize, Values)>,
    time: Option<i64>,
    crlf: bool,
    comment_before: bool,
}

fn point() -> impl Strategy<Value = Point> {
    (
        any::<usize>(),
        prop::option::of("[A-Za-z0-9._:-]{1,16}"),
        prop::collection::btree_map(name(), name(), 0..4),
        prop::collection::vec((0usize..5, values()), 1..5),
        prop::option::of(MIN_TIMESTAMP_NS..=MAX_TIMESTAMP_NS),
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_flat_map(
            |(measurement, device, tags, fields, time, crlf, comment_before)| {
                let mut tags: Vec<(String, String)> = tags.into_iter().collect();
                if let Some(d) = &device {
                    tags.push(("device".into(), d.clone()));
                }
                Just(tags).prop_shuffle().prop_map(move |tags| Point {
                    measurement,
                    device: device.clone(),
                    tags,
                    fields: fields.clone(),
                    time,
                    crlf,
                    comment_before,
                })
            },
        )
}

// ---------------------------------------------------------------- serialization and model

/// The value of a field of type `ty` drawn from `v`, and its line-protocol text.
fn pick(ty: FieldType, v: &Values) -> (Value, String) {
    match ty {
        FieldType::Float => {
            let text = if v.float_debug {
                format!("{:?}", v.float)
            } else {
                format!("{}", v.float)
            };
            (Value::Float(v.float), text)
        }
        FieldType::Integer => (Value::Integer(v.integer), format!("{}i", v.integer)),
        FieldType::Unsigned => (Value::Unsigned(v.unsigned), format!("{}u", v.unsigned)),
        FieldType::Boolean => {
            let spellings = if v.boolean {
                TRUE_SPELLINGS
            } else {
                FALSE_SPELLINGS
            };
            (Value::Boolean(v.boolean), spellings[v.spelling].to_owned())
        }
        FieldType::String => (Value::String(v.string.clone()), escape_string(&v.string)),
    }
}

/// The distinct fields of a point, in writing order, with their values and texts.
fn point_fields<'s>(schema: &'s Schema, p: &Point) -> Vec<(&'s str, Value, String)> {
    let (_, fields) = &schema[p.measurement % schema.len()];
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (i, v) in &p.fields {
        let i = i % fields.len();
        if seen.contains(&i) {
            continue;
        }
        seen.push(i);
        let (value, text) = pick(fields[i].1, v);
        out.push((fields[i].0.as_str(), value, text));
    }
    out
}

fn serialize(schema: &Schema, points: &[Point]) -> String {
    let mut out = String::new();
    for p in points {
        if p.comment_before {
            out.push_str("# a comment, with = and \" \\\n\n");
        }
        out.push_str(&escape_measurement(&schema[p.measurement % schema.len()].0));
        for (k, v) in &p.tags {
            out.push_str(&format!(",{}={}", escape_key(k), escape_key(v)));
        }
        out.push(' ');
        let fields: Vec<String> = point_fields(schema, p)
            .into_iter()
            .map(|(k, _, text)| format!("{}={text}", escape_key(k)))
            .collect();
        out.push_str(&fields.join(","));
        if let Some(t) = p.time {
            out.push_str(&format!(" {t}"));
        }
        out.push_str(if p.crlf { "\r\n" } else { "\n" });
    }
    out
}

/// The batch the parser should produce.
fn model(schema: &Schema, points: &[Point]) -> WriteBatch {
    let mut tables: Vec<TableWrite> = Vec::new();
    for p in points {
        let stream = &schema[p.measurement % schema.len()].0;
        let t = match tables.iter().position(|t| &t.stream == stream) {
            Some(i) => &mut tables[i],
            None => {
                tables.push(TableWrite {
                    stream: stream.clone(),
                    ..TableWrite::default()
                });
                tables.last_mut().unwrap()
            }
        };
        let mut tags: Vec<(String, String)> = p
            .tags
            .iter()
            .filter(|(k, _)| k != "device")
            .cloned()
            .collect();
        tags.sort();
        let key = SeriesKey {
            device: p.device.clone().unwrap_or_default(),
            tags,
        };
        let series = t.series.iter().position(|s| *s == key).unwrap_or_else(|| {
            t.series.push(key);
            t.series.len() - 1
        });
        let row = t.times.len();
        for (name, value, _) in point_fields(schema, p) {
            let col = match t.columns.iter().position(|c| c.name == name) {
                Some(c) => &mut t.columns[c],
                None => {
                    let mut c = Column::new(name, value.field_type());
                    (0..row).for_each(|_| c.push_null());
                    t.columns.push(c);
                    t.columns.last_mut().unwrap()
                }
            };
            assert!(col.data.push_value(&value));
            col.valid.push(true);
        }
        for c in &mut t.columns {
            if c.valid.len() == row {
                c.push_null();
            }
        }
        t.times.push(p.time.unwrap_or(DEFAULT_TIME));
        t.row_series.push(series as u32);
    }
    WriteBatch {
        database: "db".into(),
        tables,
    }
}

/// Structural invariants of any batch the parser returns.
fn assert_well_formed(batch: &WriteBatch) {
    for t in &batch.tables {
        assert_eq!(t.row_series.len(), t.times.len());
        assert!(t.row_series.iter().all(|&s| (s as usize) < t.series.len()));
        for c in &t.columns {
            assert_eq!(c.data.len(), t.times.len(), "column {}", c.name);
            assert_eq!(c.valid.len(), t.times.len(), "column {}", c.name);
        }
        for s in &t.series {
            assert!(s.tags.windows(2).all(|w| w[0].0 < w[1].0), "{s:?}");
        }
    }
}

/// Bytes that make up most of line protocol, to reach deep into the grammar.
const LP_BYTES: &[u8] = b"m,=\\\" \n\r#tfiu0123456789.-eE\xff\xc3";

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, kind, byte) in edits {
        if bytes.is_empty() {
            bytes.push(byte);
            continue;
        }
        let pos = pos % bytes.len();
        match kind % 3 {
            0 => bytes[pos] = byte,
            1 => bytes.insert(pos, byte),
            _ => {
                bytes.remove(pos);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn escaped_points_round_trip(
        schema in schema(),
        points in prop::collection::vec(point(), 1..20),
    ) {
        let text = serialize(&schema, &points);
        let parsed = parse(text.as_bytes(), "db", &opts());
        let parsed = match parsed {
            Ok(b) => b,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{text}"))),
        };
        prop_assert_eq!(parsed, model(&schema, &points), "payload:\n{}", text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(batch) = parse(&bytes, "db", &opts()) {
            assert_well_formed(&batch);
        }
    }

    #[test]
    fn line_protocol_like_bytes_never_panic(
        bytes in prop::collection::vec(prop::sample::select(LP_BYTES), 0..256),
    ) {
        if let Ok(batch) = parse(&bytes, "db", &opts()) {
            assert_well_formed(&batch);
        }
    }

    #[test]
    fn mutated_payloads_never_panic(
        schema in schema(),
        points in prop::collection::vec(point(), 1..6),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let bytes = mutate(serialize(&schema, &points).into_bytes(), &edits);
        if let Ok(batch) = parse(&bytes, "db", &opts()) {
            assert_well_formed(&batch);
        }
    }

    #[test]
    fn precision_scales_or_rejects(ts in any::<i64>(), p in 0usize..6) {
        let precision = [
            Precision::Nanoseconds, Precision::Microseconds, Precision::Milliseconds,
            Precision::Seconds, Precision::Minutes, Precision::Hours,
        ][p];
        let o = ParseOptions { precision, ..opts() };
        let result = parse(format!("m f=1 {ts}").as_bytes(), "db", &o);
        let expected = ts
            .checked_mul(precision.nanos_per_unit())
            .filter(|ns| (MIN_TIMESTAMP_NS..=MAX_TIMESTAMP_NS).contains(ns));
        match (result, expected) {
            (Ok(batch), Some(ns)) => prop_assert_eq!(&batch.tables[0].times, &vec![ns]),
            (Err(e), None) => prop_assert_eq!((e.line, e.column), (1, 7)),
            (r, e) => return Err(TestCaseError::fail(format!("{r:?} vs {e:?}"))),
        }
    }
}

#[test]
fn reference_escaper_examples() {
    assert_eq!(escape_measurement("a b,c=d"), r"a\ b\,c=d");
    assert_eq!(escape_key("a b,c=d"), r"a\ b\,c\=d");
    assert_eq!(escape_string(r#"a"b\c"#), r#""a\"b\\c""#);
}
