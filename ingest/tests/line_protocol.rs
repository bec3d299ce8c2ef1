//! Behaviour of the line-protocol parser through its public API: output shape, every escaping
//! rule, every value type, line handling, and every error with its line and column.

use strata_ingest::line_protocol::{
    MAX_NAME_LEN, MAX_STRING_LEN, MAX_TAG_VALUE_LEN, ParseError, ParseOptions, Precision, parse,
};
use strata_storage::{ColumnData, FieldType, SeriesKey, TableWrite, Value, WriteBatch};

const DEFAULT_TIME: i64 = 42;

fn opts() -> ParseOptions {
    ParseOptions {
        precision: Precision::Nanoseconds,
        device_tags: vec!["device".into(), "name".into()],
        default_time: DEFAULT_TIME,
    }
}

fn ok(input: &str) -> WriteBatch {
    ok_with(input.as_bytes(), &opts())
}

fn ok_with(input: &[u8], opts: &ParseOptions) -> WriteBatch {
    match parse(input, "db", opts) {
        Ok(batch) => batch,
        Err(e) => panic!("{input:?} failed: {e}"),
    }
}

fn err_bytes(input: &[u8]) -> ParseError {
    match parse(input, "db", &opts()) {
        Ok(batch) => panic!("{input:?} parsed: {batch:?}"),
        Err(e) => e,
    }
}

/// Asserts that `input` fails at `line`:`column` with a message containing `needle`.
#[track_caller]
fn fails(input: impl AsRef<[u8]>, line: usize, column: usize, needle: &str) {
    let e = err_bytes(input.as_ref());
    assert_eq!((e.line, e.column), (line, column), "position of {e}");
    assert!(
        e.message.contains(needle),
        "{:?} lacks {needle:?}",
        e.message
    );
}

/// The only table of a batch.
fn table(batch: &WriteBatch) -> &TableWrite {
    assert_eq!(batch.tables.len(), 1, "{batch:?}");
    &batch.tables[0]
}

/// The value of `field` in row `row` of the only table.
fn value(input: &str, field: &str) -> Option<Value> {
    let batch = ok(input);
    let t = table(&batch);
    let col = t.columns.iter().find(|c| c.name == field).expect(field);
    col.get(0)
}

fn series(device: &str, tags: &[(&str, &str)]) -> SeriesKey {
    SeriesKey {
        device: device.into(),
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    }
}

// ---------------------------------------------------------------- output shape

#[test]
fn truck_line_becomes_one_row() {
    let batch = ok(
        "readings,name=truck_12,fleet=East,driver=Seth,model=F-150 latitude=52.31,\
         longitude=4.92,elevation=124i,velocity=63.5,heading=221.0,grade=2.1,\
         fuel_consumption=11.4 1700000000000000000\n",
    );
    assert_eq!(batch.database, "db");
    let t = table(&batch);
    assert_eq!(t.stream, "readings");
    assert_eq!(
        t.series,
        vec![series(
            "truck_12",
            &[("driver", "Seth"), ("fleet", "East"), ("model", "F-150")]
        )]
    );
    assert_eq!(t.row_series, vec![0]);
    assert_eq!(t.times, vec![1_700_000_000_000_000_000]);
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "latitude",
            "longitude",
            "elevation",
            "velocity",
            "heading",
            "grade",
            "fuel_consumption"
        ]
    );
    assert_eq!(t.columns[0].data, ColumnData::Float(vec![52.31]));
    assert_eq!(t.columns[2].data, ColumnData::Integer(vec![124]));
    assert_eq!(t.value_count(), 7);
}

#[test]
fn measurements_become_tables_in_first_appearance_order() {
    let batch = ok("b x=1 1\na y=2 2\nb x=3 3\n");
    let streams: Vec<&str> = batch.tables.iter().map(|t| t.stream.as_str()).collect();
    assert_eq!(streams, ["b", "a"]);
    assert_eq!(batch.tables[0].times, vec![1, 3]);
    assert_eq!(
        batch.tables[0].columns[0].data,
        ColumnData::Float(vec![1.0, 3.0])
    );
    assert_eq!(batch.rows(), 3);
}

#[test]
fn every_column_has_one_slot_per_row() {
    let batch = ok("m a=1 1\nm b=2i 2\nm a=3,c=true 3\n");
    let t = table(&batch);
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(t.columns[0].valid, vec![true, false, true]);
    assert_eq!(t.columns[0].data, ColumnData::Float(vec![1.0, 0.0, 3.0]));
    assert_eq!(t.columns[1].valid, vec![false, true, false]);
    assert_eq!(t.columns[1].data, ColumnData::Integer(vec![0, 2, 0]));
    assert_eq!(t.columns[2].valid, vec![false, false, true]);
    assert_eq!(
        t.columns[2].data,
        ColumnData::Boolean(vec![false, false, true])
    );
}

#[test]
fn fields_in_varying_order_land_in_their_columns() {
    let batch = ok("m a=1,b=2 1\nm b=4,a=3 2\nm c=5,a=6 3\n");
    let t = table(&batch);
    assert_eq!(t.columns[0].data, ColumnData::Float(vec![1.0, 3.0, 6.0]));
    assert_eq!(t.columns[1].data, ColumnData::Float(vec![2.0, 4.0, 0.0]));
    assert_eq!(t.columns[2].valid, vec![false, false, true]);
}

#[test]
fn series_are_distinct_and_tag_order_does_not_matter() {
    let batch =
        ok("m,device=a,x=1,y=2 f=1 1\nm,y=2,device=a,x=1 f=2 2\nm,device=b f=3 3\nm f=4 4\n");
    let t = table(&batch);
    assert_eq!(
        t.series,
        vec![
            series("a", &[("x", "1"), ("y", "2")]),
            series("b", &[]),
            series("", &[])
        ]
    );
    assert_eq!(t.row_series, vec![0, 0, 1, 2]);
}

#[test]
fn device_comes_from_the_first_device_tag_present() {
    let t = ok("m,name=n1,device=d1 f=1\nm,name=n2 f=1\nm,other=o f=1\n")
        .tables
        .remove(0);
    assert_eq!(
        t.series,
        vec![
            series("d1", &[("name", "n1")]),
            series("n2", &[]),
            series("", &[("other", "o")])
        ]
    );
    let custom = ParseOptions {
        device_tags: vec!["host".into()],
        ..opts()
    };
    let t = ok_with(b"m,host=h-1,device=x f=1", &custom)
        .tables
        .remove(0);
    assert_eq!(t.series, vec![series("h-1", &[("device", "x")])]);
    let none = ParseOptions {
        device_tags: vec![],
        ..opts()
    };
    let t = ok_with(b"m,device=x f=1", &none).tables.remove(0);
    assert_eq!(t.series, vec![series("", &[("device", "x")])]);
}

#[test]
fn same_tags_in_two_measurements_are_two_series_lists() {
    let batch = ok("a,device=d f=1\nb,device=d f=1\n");
    assert_eq!(batch.tables[0].series, vec![series("d", &[])]);
    assert_eq!(batch.tables[1].series, vec![series("d", &[])]);
}

#[test]
fn empty_payloads_give_empty_batches() {
    assert!(ok("").tables.is_empty());
    assert!(
        ok("\n\n  \n# only a comment\n\t# another\r\n")
            .tables
            .is_empty()
    );
}

// ---------------------------------------------------------------- lines and whitespace

#[test]
fn comments_blank_lines_and_crlf_are_skipped() {
    let batch = ok("# header\r\n\r\nm f=1 1\r\n   \n  # indented comment\nm f=2 2\r\nm f=3 3");
    assert_eq!(table(&batch).times, vec![1, 2, 3]);
}

#[test]
fn timestamp_is_optional() {
    let t = ok("m f=1\nm f=2 \nm f=3 7  \n").tables.remove(0);
    assert_eq!(t.times, vec![DEFAULT_TIME, DEFAULT_TIME, 7]);
}

#[test]
fn leading_and_repeated_spaces_are_tolerated() {
    let t = ok("  m,t=1   f=1   5\n\tm f=2 6\n").tables.remove(0);
    assert_eq!(t.times, vec![5, 6]);
}

#[test]
fn negative_timestamps_are_accepted() {
    assert_eq!(ok("m f=1 -1").tables[0].times, vec![-1]);
}

#[test]
fn precision_scales_timestamps() {
    for (p, factor) in [
        (Precision::Nanoseconds, 1),
        (Precision::Microseconds, 1_000),
        (Precision::Milliseconds, 1_000_000),
        (Precision::Seconds, 1_000_000_000),
        (Precision::Minutes, 60_000_000_000),
        (Precision::Hours, 3_600_000_000_000),
    ] {
        let o = ParseOptions {
            precision: p,
            ..opts()
        };
        let t = ok_with(b"m f=1 5\nm f=1", &o).tables.remove(0);
        assert_eq!(t.times, vec![5 * factor, DEFAULT_TIME], "{p}");
    }
}

// ---------------------------------------------------------------- value types

#[test]
fn plain_numbers_are_floats() {
    for (text, want) in [
        ("1", 1.0),
        ("1.0", 1.0),
        ("-1.5e3", -1500.0),
        ("1E2", 100.0),
        ("2e-2", 0.02),
        ("1.5e+2", 150.0),
        (".5", 0.5),
        ("-0.25", -0.25),
        ("007", 7.0),
        ("52.31", 52.31),
        ("1234567890.123456789", 1_234_567_890.123_456_7),
    ] {
        assert_eq!(
            value(&format!("m f={text}"), "f"),
            Some(Value::Float(want)),
            "{text}"
        );
    }
}

#[test]
fn integers_and_unsigned() {
    assert_eq!(value("m f=12i", "f"), Some(Value::Integer(12)));
    assert_eq!(value("m f=-12i", "f"), Some(Value::Integer(-12)));
    assert_eq!(
        value("m f=9223372036854775807i", "f"),
        Some(Value::Integer(i64::MAX))
    );
    assert_eq!(
        value("m f=-9223372036854775808i", "f"),
        Some(Value::Integer(i64::MIN))
    );
    assert_eq!(value("m f=12u", "f"), Some(Value::Unsigned(12)));
    assert_eq!(
        value("m f=18446744073709551615u", "f"),
        Some(Value::Unsigned(u64::MAX))
    );
}

#[test]
fn every_boolean_spelling() {
    for t in ["t", "T", "true", "True", "TRUE"] {
        assert_eq!(
            value(&format!("m f={t}"), "f"),
            Some(Value::Boolean(true)),
            "{t}"
        );
    }
    for f in ["f", "F", "false", "False", "FALSE"] {
        assert_eq!(
            value(&format!("m f={f}"), "f"),
            Some(Value::Boolean(false)),
            "{f}"
        );
    }
}

#[test]
fn strings() {
    assert_eq!(
        value(r#"m f="hello world""#, "f"),
        Some(Value::String("hello world".into()))
    );
    assert_eq!(value(r#"m f="""#, "f"), Some(Value::String(String::new())));
    assert_eq!(
        value(r#"m f="a,b=c d""#, "f"),
        Some(Value::String("a,b=c d".into()))
    );
    assert_eq!(
        value(r#"m f="Launch 🚀""#, "f"),
        Some(Value::String("Launch 🚀".into()))
    );
    assert_eq!(
        value(r#"m f="true""#, "f"),
        Some(Value::String("true".into()))
    );
    assert_eq!(
        value("m f=\"tab\there\"", "f"),
        Some(Value::String("tab\there".into()))
    );
}

#[test]
fn column_types() {
    let t = ok(r#"m a=1,b=1i,c=1u,d=t,e="s""#).tables.remove(0);
    let types: Vec<FieldType> = t.columns.iter().map(|c| c.data.field_type()).collect();
    assert_eq!(
        types,
        [
            FieldType::Float,
            FieldType::Integer,
            FieldType::Unsigned,
            FieldType::Boolean,
            FieldType::String
        ]
    );
}

#[test]
fn duplicate_field_keys_last_wins() {
    let t = ok("m a=1,b=2,a=3 1\nm a=4 2\n").tables.remove(0);
    assert_eq!(t.columns[0].data, ColumnData::Float(vec![3.0, 4.0]));
    assert_eq!(t.columns[1].valid, vec![true, false]);
    let t = ok("m s=\"first\",s=\"2nd\"\nm s=\"x\"").tables.remove(0);
    assert_eq!(t.columns[0].get(0), Some(Value::String("2nd".into())));
    assert_eq!(t.columns[0].get(1), Some(Value::String("x".into())));
}

#[test]
fn a_field_may_have_different_types_in_different_measurements() {
    let batch = ok("a f=1\nb f=1i\n");
    assert_eq!(
        batch.tables[1].columns[0].data,
        ColumnData::Integer(vec![1])
    );
}

// ---------------------------------------------------------------- escaping

#[test]
fn measurement_escapes_comma_and_space() {
    assert_eq!(ok(r"my\ meas\,x f=1").tables[0].stream, "my meas,x");
    // `=` is not special in a measurement: the backslash stays.
    assert_eq!(ok(r"a\=b f=1").tables[0].stream, r"a\=b");
    assert_eq!(ok(r"a=b f=1").tables[0].stream, "a=b");
}

#[test]
fn tag_keys_and_values_escape_comma_equals_and_space() {
    let t = ok(r"m,k\ 1\,x\=y=v\ 1\,2\=3 f=1").tables.remove(0);
    assert_eq!(t.series, vec![series("", &[("k 1,x=y", "v 1,2=3")])]);
}

#[test]
fn field_keys_escape_comma_equals_and_space() {
    let t = ok(r"m f\ 1\,x\=y=1").tables.remove(0);
    assert_eq!(t.columns[0].name, "f 1,x=y");
}

#[test]
fn backslash_before_other_characters_is_literal() {
    let t = ok(r"m\x,t\a=v\b f\c=1").tables.remove(0);
    assert_eq!(t.stream, r"m\x");
    assert_eq!(t.series, vec![series("", &[(r"t\a", r"v\b")])]);
    assert_eq!(t.columns[0].name, r"f\c");
}

#[test]
fn double_backslash_in_names_is_two_backslashes_and_the_last_one_escapes() {
    // `\\,` in a tag value is a literal backslash followed by an escaped comma.
    let t = ok(r"m,t=a\\,u\=b f=1").tables.remove(0);
    assert_eq!(t.series, vec![series("", &[("t", r"a\,u=b")])]);
    let t = ok(r"m\\ x f=1").tables.remove(0);
    assert_eq!(t.stream, r"m\ x");
}

#[test]
fn quotes_are_ordinary_in_names() {
    let t = ok(r#"joe's"m,pat's"t="v" f"k=1"#).tables.remove(0);
    assert_eq!(t.stream, r#"joe's"m"#);
    assert_eq!(t.series, vec![series("", &[(r#"pat's"t"#, r#""v""#)])]);
    assert_eq!(t.columns[0].name, r#"f"k"#);
}

#[test]
fn string_values_escape_quote_and_backslash_only() {
    let v = |s: &str| value(&format!("m f={s}"), "f");
    assert_eq!(
        v(r#""say \"hi\"""#),
        Some(Value::String(r#"say "hi""#.into()))
    );
    assert_eq!(v(r#""a\\b""#), Some(Value::String(r"a\b".into())));
    assert_eq!(v(r#""a\nb""#), Some(Value::String(r"a\nb".into())));
    assert_eq!(
        v(r#""\=My data==\\""#),
        Some(Value::String(r"\=My data==\".into()))
    );
    assert_eq!(
        v(r#""\\\"==My data\==\\""#),
        Some(Value::String(r#"\"==My data\==\"#.into()))
    );
    // The backslash table of the reference: \ → \, \\ → \, \\\ → \\, \\\\ → \\.
    assert_eq!(v(r#""x\y""#), Some(Value::String(r"x\y".into())));
    assert_eq!(v(r#""x\\y""#), Some(Value::String(r"x\y".into())));
    assert_eq!(v(r#""x\\\y""#), Some(Value::String(r"x\\y".into())));
    assert_eq!(v(r#""x\\\\y""#), Some(Value::String(r"x\\y".into())));
}

#[test]
fn utf8_names_and_values() {
    let t = ok("mesüre,tagKey=🍭 fieldKey=\"Launch 🚀\",ключ=1 1556813561098000000")
        .tables
        .remove(0);
    assert_eq!(t.stream, "mesüre");
    assert_eq!(t.series, vec![series("", &[("tagKey", "🍭")])]);
    assert_eq!(t.columns[1].name, "ключ");
}

#[test]
fn escaped_values_from_the_reference() {
    let batch = ok(concat!(
        "airSensor,sensor_id=TLM\\=0201 desc=\"\\=My data==\\\\\"\n",
        "air\\\\\\\\\\Sensor,sensor_id=TLM\\=0201 desc=\"\\\\\\\"==My data\\==\\\\\"\n",
    ));
    assert_eq!(batch.tables[0].stream, "airSensor");
    assert_eq!(
        batch.tables[0].series,
        vec![series("", &[("sensor_id", "TLM=0201")])]
    );
    assert_eq!(batch.tables[1].stream, r"air\\\\\Sensor");
    assert_eq!(
        batch.tables[1].columns[0].get(0),
        Some(Value::String(r#"\"==My data\==\"#.into()))
    );
}

// ---------------------------------------------------------------- errors

#[test]
fn error_display_has_line_and_column() {
    let e = err_bytes(b"m f=1\nm speed=12x");
    assert_eq!(
        e.to_string(),
        "line 2, column 9: invalid field value \"12x\" for field \"speed\": expected a number, \
         integer (12i), unsigned (12u), boolean or \"string\""
    );
}

#[test]
fn missing_fields() {
    fails("m", 1, 2, "missing field set");
    fails("m ", 1, 3, "missing field set");
    fails("m,t=1", 1, 6, "missing field set");
    fails("m,t=1   ", 1, 9, "missing field set");
    fails(r"m,t=a\ f", 1, 9, "backslash before a space escapes it");
    fails("ok f=1\n\nm\n", 3, 2, "missing field set");
}

#[test]
fn empty_names() {
    fails(",t=1 f=1", 1, 1, "missing measurement name");
    fails("m,=v f=1", 1, 3, "empty tag key");
    fails("m,t=1, f=1", 1, 7, "empty tag key");
    fails("m,t=1,,u=2 f=1", 1, 7, "empty tag key");
    fails("m =1", 1, 3, "empty field key");
    fails("m f=1,=2", 1, 7, "empty field key");
    fails("m f=1, g=2", 1, 7, "empty field key");
}

#[test]
fn malformed_tags() {
    fails("m,t f=1", 1, 4, "missing '=' after tag key \"t\"");
    fails("m,t,u=1 f=1", 1, 4, "missing '=' after tag key \"t\"");
    fails("m,t= f=1", 1, 5, "empty value for tag \"t\"");
    fails("m,t=,u=1 f=1", 1, 5, "empty value for tag \"t\"");
    fails(
        "m,t=a=b f=1",
        1,
        6,
        "unescaped '=' in the value of tag \"t\"",
    );
}

#[test]
fn duplicate_tag_keys() {
    fails("m,a=1,b=2,a=3 f=1", 1, 11, "duplicate tag key \"a\"");
    fails(
        "m,device=x,device=y f=1",
        1,
        12,
        "duplicate tag key \"device\"",
    );
    fails(r"m,a\ b=1,a\ b=2 f=1", 1, 10, "duplicate tag key \"a b\"");
}

#[test]
fn malformed_fields() {
    fails("m f", 1, 4, "missing '=' after field key \"f\"");
    fails("m f 1", 1, 4, "missing '=' after field key \"f\"");
    fails("m f,g=1", 1, 4, "missing '=' after field key \"f\"");
    fails("m f=", 1, 5, "missing value for field \"f\"");
    fails("m f=,g=1", 1, 5, "missing value for field \"f\"");
    fails("m f=1,", 1, 7, "expected another field after ','");
    fails("m f=1 ,", 1, 7, "invalid timestamp");
}

#[test]
fn invalid_values() {
    let expected = "expected a number, integer (12i), unsigned (12u), boolean or \"string\"";
    for v in [
        "12x", "1.2.3", "+1", "1e", "abc", "yes", "tRUE", "0x10", "1i2", "--1", "1.5i", "12I",
    ] {
        fails(format!("m f={v}"), 1, 5, expected);
    }
    fails(
        "m speed=12x",
        1,
        9,
        "invalid field value \"12x\" for field \"speed\"",
    );
    fails(r"m a\ b=x", 1, 8, "for field \"a b\"");
}

#[test]
fn out_of_range_integers() {
    fails("m f=9223372036854775808i", 1, 5, "out of range");
    fails("m f=-9223372036854775809i", 1, 5, "out of range");
    fails("m f=18446744073709551616u", 1, 5, "out of range");
    fails(
        "m f=-1u",
        1,
        5,
        "unsigned value \"-1u\" for field \"f\" is out of range",
    );
}

#[test]
fn non_finite_floats_are_rejected() {
    for v in [
        "NaN", "nan", "inf", "-Inf", "+inf", "Infinity", "1e400", "-1e400",
    ] {
        fails(format!("m f={v}"), 1, 5, "is not finite");
    }
}

#[test]
fn unterminated_strings() {
    fails(
        r#"m f="abc"#,
        1,
        5,
        "unterminated string value for field \"f\"",
    );
    fails(r#"m f="abc\""#, 1, 5, "unterminated string");
    fails("m f=\"ab\ncd\"", 1, 5, "unterminated string");
    fails("m f=1\nm g=\"x", 2, 5, "unterminated string");
}

#[test]
fn text_glued_to_a_string_value() {
    fails(
        r#"m f="a"x"#,
        1,
        8,
        "expected ',' or ' ' after the string value of field \"f\"",
    );
}

#[test]
fn invalid_utf8() {
    fails(b"m\xff f=1", 1, 2, "invalid UTF-8 in measurement name");
    fails(b"m,t\xc3=1 f=1", 1, 4, "invalid UTF-8 in tag key");
    fails(b"m,t=a\xe2\x82 f=1", 1, 6, "invalid UTF-8 in tag value");
    fails(b"m f\xff=1", 1, 4, "invalid UTF-8 in field key");
    fails(
        b"m f=\"ab\xff\"",
        1,
        8,
        "invalid UTF-8 in string value of field \"f\"",
    );
}

#[test]
fn control_characters_in_names() {
    fails(
        b"m\x01 f=1",
        1,
        2,
        "control character 0x01 is not allowed in a measurement name",
    );
    fails(
        b"m,t=a\tb f=1",
        1,
        6,
        "control character 0x09 is not allowed in a tag value",
    );
    fails(b"m f\x7f=1", 1, 4, "control character 0x7f");
    fails(b"m f=1\r 1", 1, 5, "invalid field value");
}

#[test]
fn bad_timestamps() {
    fails(
        "m f=1 12a",
        1,
        7,
        "invalid timestamp \"12a\": expected an integer number of ns",
    );
    fails("m f=1 1.5", 1, 7, "invalid timestamp");
    fails("m f=1 +5", 1, 7, "invalid timestamp");
    fails(
        "m f=1 1 2",
        1,
        9,
        "unexpected text \"2\" after the timestamp",
    );
    fails(
        "m f=1 9223372036854775807",
        1,
        7,
        "out of range at precision ns",
    );
    fails("m f=1 99999999999999999999", 1, 7, "out of range");
    fails("m f=1 -9223372036854775808", 1, 7, "out of range");
}

#[test]
fn timestamps_out_of_range_after_scaling() {
    let o = ParseOptions {
        precision: Precision::Seconds,
        ..opts()
    };
    let e = parse(b"m f=1 9300000000", "db", &o).unwrap_err();
    assert_eq!((e.line, e.column), (1, 7));
    assert!(e.message.contains("out of range at precision s"), "{e}");
    assert_eq!(
        ok_with(b"m f=1 9200000000", &o).tables[0].times,
        vec![9_200_000_000_000_000_000]
    );
    let o = ParseOptions {
        precision: Precision::Hours,
        ..opts()
    };
    assert!(parse(b"m f=1 3000000", "db", &o).is_err());
}

#[test]
fn type_conflicts_name_field_types_and_lines() {
    let e = err_bytes(b"m speed=1 1\n# c\nm x=1,speed=2i 2\n");
    assert_eq!((e.line, e.column), (3, 7));
    assert_eq!(
        e.message,
        "field \"speed\" is integer on line 3 but float on line 1 of this payload: a field must \
         keep one type"
    );
    fails(
        "m f=\"a\"\nm f=true",
        2,
        3,
        "is boolean on line 2 but string on line 1",
    );
    fails(
        "m f=1u\nm f=1i",
        2,
        3,
        "is integer on line 2 but unsigned on line 1",
    );
    fails(
        "m f=1,f=1i",
        1,
        7,
        "is integer on line 1 but float on line 1",
    );
}

#[test]
fn names_longer_than_the_limits() {
    let long = "a".repeat(MAX_NAME_LEN + 1);
    fails(
        format!("{long} f=1"),
        1,
        1,
        "measurement name is 257 bytes long; the limit is 256",
    );
    fails(format!("m,{long}=v f=1"), 1, 3, "tag key is 257 bytes long");
    fails(format!("m {long}=1"), 1, 3, "field key is 257 bytes long");
    let long_value = "v".repeat(MAX_TAG_VALUE_LEN + 1);
    fails(
        format!("m,t={long_value} f=1"),
        1,
        5,
        "tag value is 1025 bytes long",
    );
    let ok_name = "a".repeat(MAX_NAME_LEN);
    assert_eq!(ok(&format!("{ok_name} f=1")).tables[0].stream, ok_name);
}

#[test]
fn long_strings() {
    let s = "x".repeat(MAX_STRING_LEN);
    assert_eq!(
        value(&format!("m f=\"{s}\""), "f"),
        Some(Value::String(s.clone()))
    );
    fails(
        format!("m f=\"{s}y\""),
        1,
        5,
        "string value of field \"f\" is 1048577 bytes long",
    );
}

#[test]
fn invalid_device_ids() {
    fails(
        "m,device=a/b f=1",
        1,
        10,
        "invalid device id \"a/b\" in tag \"device\"",
    );
    fails(r"m,name=a\ b f=1", 1, 8, "in tag \"name\"");
    let long = "d".repeat(129);
    fails(
        format!("m,device={long} f=1"),
        1,
        10,
        "expected 1 to 128 characters",
    );
    let max = "d".repeat(128);
    assert_eq!(
        ok(&format!("m,device={max} f=1")).tables[0].series[0].device,
        max
    );
    // Only the tag chosen as the device is checked.
    let t = ok("m,device=ok,name=not/an:id f=1").tables.remove(0);
    assert_eq!(t.series, vec![series("ok", &[("name", "not/an:id")])]);
}

#[test]
fn time_is_a_reserved_key() {
    fails("m,time=1 f=1", 1, 3, "tag key \"time\" is reserved");
    fails("m f=1,time=2", 1, 7, "field key \"time\" is reserved");
}

#[test]
fn error_lines_count_comments_blank_lines_and_crlf() {
    fails(
        "# c\r\n\r\nm f=1\r\nm f=x\r\n",
        4,
        5,
        "invalid field value \"x\"",
    );
    fails("m f=1\n  m g=?\n", 2, 7, "invalid field value \"?\"");
}

#[test]
fn the_first_bad_line_fails_the_payload() {
    let e = err_bytes(b"m f=1\nm f=2\nm f=bad\nm f=3\n");
    assert_eq!(e.line, 3);
}

#[test]
fn sparse_payloads_are_bounded() {
    let mut input = String::new();
    for i in 0..3000 {
        input.push_str(&format!("m f{i}=1\n"));
    }
    let e = err_bytes(input.as_bytes());
    assert!(e.message.contains("payload too sparse"), "{e}");
    // The same fields spread over few rows are fine.
    let fields: Vec<String> = (0..3000).map(|i| format!("f{i}=1")).collect();
    let line = format!("m {}\n", fields.join(","));
    assert_eq!(ok(&line.repeat(3)).tables[0].columns.len(), 3000);
}
