//! Values between Arrow and the PostgreSQL wire: result columns as `DataRow`s in text or binary
//! format (the column types of [`strata_query::pg_type_of`]), and bound parameters from their
//! text or binary form into DataFusion scalars.
//!
//! Formats follow PostgreSQL: `timestamptz` is microseconds since 2000-01-01 UTC in binary and
//! `YYYY-MM-DD HH:MM:SS[.ffffff]+00` in text (Strata's nanoseconds are truncated to
//! microseconds, PostgreSQL's precision); booleans `t`/`f`; floats `NaN`, `Infinity`.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::messages::data::DataRow;
use strata_query::PgType;
use strata_query::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, TimestampMicrosecondArray,
};
use strata_query::arrow::compute::{CastOptions, cast_with_options};
use strata_query::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimeUnit,
};
use strata_query::arrow::util::display::FormatOptions;
use strata_query::datafusion::scalar::ScalarValue;
use strata_query::datafusion::sql::sqlparser::ast::DataType as SqlDataType;

use super::error::{PgError, invalid_parameter};

/// Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// The types to plan a statement's placeholders with when the planner's own typing
/// (`inferred`, one per `$n`) differs from what the client declared in Parse in a way that
/// changes answers: a placeholder it left untyped (`SELECT $1`), or one typed as an integer or
/// decimal for which the client declared a float (`count >= 20.5`, which PostgreSQL compares as
/// floats). `None` when the inferred types stand (a declared `int2` meeting an `int8` column
/// is bound as `int8`: the same answers). The list runs while each position has a declared type
/// that plans plainly (see [`sql_type`]) or an inferred one; the placeholders past it are typed
/// from their use, so only a change within the list asks for a second plan.
pub fn retyped(
    declared: &[Option<Type>],
    inferred: &[Option<DataType>],
) -> Option<Vec<SqlDataType>> {
    let decl = |i: usize| declared.get(i).cloned().flatten();
    let types: Vec<SqlDataType> = (0..inferred.len().max(declared.len()))
        .map_while(|i| {
            let from_use = || inferred.get(i)?.as_ref().and_then(inferred_sql_type);
            decl(i).as_ref().and_then(sql_type).or_else(from_use)
        })
        .collect();
    let changes = (0..types.len().min(inferred.len())).any(|i| {
        let Some(d) = decl(i).filter(|d| sql_type(d).is_some()) else {
            return false;
        };
        // `Null`: typed from another placeholder only (`$1 + $2`), so untyped.
        match &inferred[i] {
            None | Some(DataType::Null) => true,
            Some(t) => {
                (t.is_integer() || matches!(t, DataType::Decimal128(..)))
                    && matches!(d, Type::FLOAT4 | Type::FLOAT8)
            }
        }
    });
    changes.then_some(types)
}

/// The SQL type of a placeholder the planner typed as `t`, to plan it as typed again
/// (timestamps have none, see [`sql_type`]).
fn inferred_sql_type(t: &DataType) -> Option<SqlDataType> {
    Some(match t {
        DataType::Int8 | DataType::Int16 => SqlDataType::SmallInt(None),
        DataType::Int32 => SqlDataType::Integer(None),
        DataType::Int64 => SqlDataType::BigInt(None),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            SqlDataType::BigIntUnsigned(None)
        }
        DataType::Float32 => SqlDataType::Real,
        DataType::Float64 => SqlDataType::DoublePrecision,
        DataType::Boolean => SqlDataType::Boolean,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => SqlDataType::Text,
        DataType::Date32 => SqlDataType::Date,
        _ => return None,
    })
}

/// The SQL type DataFusion plans for a declared parameter type, if there is a plain one.
/// Integers plan as `bigint` and floats as `double precision` whatever width was declared
/// (psycopg declares `int2` for any small integer: `$1 + $2` of two of them must not wrap
/// at 16 bits, and an `int8` column meeting a `float4` must not compare at 24 bits). Timestamps
/// have none: DataFusion plans `timestamptz` in the session's time zone, which
/// Strata leaves unset, so a declared `timestamptz` would plan as a timestamp without one; a
/// placeholder meeting `time` is typed from it, and a bound value types the rest.
fn sql_type(t: &Type) -> Option<SqlDataType> {
    Some(match *t {
        Type::INT2 | Type::INT4 | Type::INT8 => SqlDataType::BigInt(None),
        Type::FLOAT4 | Type::FLOAT8 => SqlDataType::DoublePrecision,
        Type::BOOL => SqlDataType::Boolean,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => SqlDataType::Text,
        Type::DATE => SqlDataType::Date,
        _ => return None,
    })
}

/// The wire type of a column of Arrow type `t`.
pub fn wire_type(t: &DataType) -> Type {
    let pg = strata_query::pg_type_of(t);
    Type::from_oid(pg.oid).unwrap_or(Type::TEXT)
}

/// Row description of a result schema, each column in the format the client asked for.
pub fn fields(
    schema: &strata_query::arrow::datatypes::Schema,
    format: impl Fn(usize) -> FieldFormat,
) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let pg = strata_query::pg_type_of(f.data_type());
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                wire_type(f.data_type()),
                format(i),
            )
            .with_type_size(pg.len)
        })
        .collect()
}

/// A column cast to the Arrow type its wire encoding reads.
fn canonical(column: &ArrayRef, pg: PgType) -> Result<ArrayRef, PgError> {
    let target = match pg.oid {
        16 => DataType::Boolean,
        21 => DataType::Int16,
        23 => DataType::Int32,
        20 => DataType::Int64,
        700 => DataType::Float32,
        701 => DataType::Float64,
        17 => DataType::Binary,
        1082 => DataType::Date32,
        1184 => DataType::Timestamp(TimeUnit::Microsecond, None),
        _ => return text_column(column),
    };
    if column.data_type() == &target {
        return Ok(column.clone());
    }
    let safe = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(column, &target, &safe).map_err(|e| {
        PgError::internal(format!(
            "cannot send a {} column as {}: {e}",
            column.data_type(),
            pg.name
        ))
    })
}

/// Any column as text, as Arrow displays it (lists, structs, intervals, times of day).
fn text_column(column: &ArrayRef) -> Result<ArrayRef, PgError> {
    if column.data_type() == &DataType::Utf8 {
        return Ok(column.clone());
    }
    if let Ok(c) = strata_query::arrow::compute::cast(column, &DataType::Utf8) {
        return Ok(c);
    }
    let options = FormatOptions::default();
    let formatter =
        strata_query::arrow::util::display::ArrayFormatter::try_new(column.as_ref(), &options)
            .map_err(|e| PgError::internal(format!("cannot render a column as text: {e}")))?;
    let values: strata_query::arrow::array::StringArray = (0..column.len())
        .map(|i| (!column.is_null(i)).then(|| formatter.value(i).to_string()))
        .collect();
    Ok(Arc::new(values))
}

/// Encodes every row of `batches` (columns described by `fields`) as `DataRow`s.
pub fn rows(batches: &[RecordBatch], fields: &[FieldInfo]) -> Result<Vec<DataRow>, PgError> {
    let mut out = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        let columns: Vec<(ArrayRef, PgType, FieldFormat)> = batch
            .columns()
            .iter()
            .zip(fields)
            .map(|(c, f)| {
                let pg = PgType::from_oid(f.datatype().oid()).unwrap_or(PgType::TEXT);
                Ok((canonical(c, pg)?, pg, f.format()))
            })
            .collect::<Result<_, PgError>>()?;
        for row in 0..batch.num_rows() {
            let mut buf = BytesMut::with_capacity(16 * columns.len());
            for (column, pg, format) in &columns {
                cell(&mut buf, column, *pg, *format, row);
            }
            out.push(DataRow::new(buf, columns.len() as i16));
        }
    }
    Ok(out)
}

/// Appends one length-prefixed value (or -1 for NULL).
fn cell(buf: &mut BytesMut, column: &ArrayRef, pg: PgType, format: FieldFormat, row: usize) {
    if column.is_null(row) {
        buf.put_i32(-1);
        return;
    }
    let at = buf.len();
    buf.put_i32(0);
    let binary = format == FieldFormat::Binary;
    match pg.oid {
        16 => {
            let v = column.as_boolean().value(row);
            if binary {
                buf.put_u8(u8::from(v));
            } else {
                buf.put_slice(if v { b"t" } else { b"f" });
            }
        }
        21 => int(buf, binary, column.as_primitive::<Int16Type>().value(row)),
        23 => int(buf, binary, column.as_primitive::<Int32Type>().value(row)),
        20 => int(buf, binary, column.as_primitive::<Int64Type>().value(row)),
        700 => {
            let v = column.as_primitive::<Float32Type>().value(row);
            if binary {
                buf.put_f32(v);
            } else {
                buf.put_slice(float_text(f64::from(v), v.to_string()).as_bytes());
            }
        }
        701 => {
            let v = column.as_primitive::<Float64Type>().value(row);
            if binary {
                buf.put_f64(v);
            } else {
                buf.put_slice(float_text(v, v.to_string()).as_bytes());
            }
        }
        17 => {
            let v = column.as_binary::<i32>().value(row);
            if binary {
                buf.put_slice(v);
            } else {
                buf.put_slice(b"\\x");
                for b in v {
                    buf.put_slice(format!("{b:02x}").as_bytes());
                }
            }
        }
        1082 => {
            let days = column.as_primitive::<Date32Type>().value(row);
            if binary {
                buf.put_i32(days - PG_EPOCH_DAYS);
            } else {
                buf.put_slice(date_text(i64::from(days)).as_bytes());
            }
        }
        1184 => {
            let micros = column
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .map(|a| a.value(row))
                .unwrap_or_default();
            if binary {
                buf.put_i64(micros - PG_EPOCH_MICROS);
            } else {
                buf.put_slice(timestamptz_text(micros).as_bytes());
            }
        }
        _ => buf.put_slice(column.as_string::<i32>().value(row).as_bytes()),
    }
    let len = (buf.len() - at - 4) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn int<T: Into<i64> + Copy>(buf: &mut BytesMut, binary: bool, v: T) {
    let wide: i64 = v.into();
    if binary {
        match std::mem::size_of::<T>() {
            2 => buf.put_i16(wide as i16),
            4 => buf.put_i32(wide as i32),
            _ => buf.put_i64(wide),
        }
    } else {
        buf.put_slice(wide.to_string().as_bytes());
    }
}

/// PostgreSQL's spelling of special float values; finite values in Rust's shortest round-trip
/// form (what PostgreSQL 12+ sends with `extra_float_digits` ≥ 1).
fn float_text(v: f64, shortest: String) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "Infinity".into()
    } else if v == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        shortest
    }
}

/// `YYYY-MM-DD`.
fn date_text(days: i64) -> String {
    let (y, m, d) = crate::time::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]+00` of microseconds since 1970 UTC.
pub fn timestamptz_text(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let mut out = format!("{} {h:02}:{mi:02}:{s:02}", date_text(days));
    if frac != 0 {
        let digits = format!("{frac:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push_str("+00");
    out
}

/// A bound parameter as a scalar: decoded by its wire type (`ty`, the client's or, when the
/// client left it open, the planner's), then cast to the type the planner inferred (`want`).
pub fn parameter(
    index: usize,
    bytes: Option<&[u8]>,
    binary: bool,
    ty: &Type,
    want: Option<&DataType>,
) -> Result<ScalarValue, PgError> {
    let Some(bytes) = bytes else {
        return Ok(match want {
            Some(t) => ScalarValue::try_from(t).unwrap_or(ScalarValue::Null),
            None => ScalarValue::Null,
        });
    };
    let value = if binary {
        binary_parameter(index, bytes, ty)?
    } else {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| invalid_parameter(index, "the text value is not UTF-8"))?;
        text_parameter(index, text, ty)?
    };
    match want {
        Some(t) if value.data_type() != *t => {
            let cast = value
                .cast_to(t)
                .map_err(|e| invalid_parameter(index, &format!("cannot use it as {t}: {e}")))?;
            if changed_by_cast(&value, &cast, t) {
                return Err(invalid_parameter(
                    index,
                    &format!(
                        "{value} would change when used as {t} (the column it meets); \
                         cast the column instead, e.g. col::float8"
                    ),
                ));
            }
            Ok(cast)
        }
        _ => Ok(value),
    }
}

/// Whether casting a parameter lost something: a value that became NULL (out of range), or a
/// number that does not come back the same (20.5 as an integer is 20). PostgreSQL would compare
/// `int_col >= 20.5` as numeric; answering it as `>= 20` would be a wrong answer, so it is
/// refused instead.
fn changed_by_cast(from: &ScalarValue, to: &ScalarValue, target: &DataType) -> bool {
    if to.is_null() != from.is_null() {
        return true;
    }
    // Float targets round (0.1 as float4) as PostgreSQL does; only exact targets are checked.
    let exact = target.is_integer() || matches!(target, DataType::Decimal128(..));
    match from {
        _ if !exact => false,
        ScalarValue::Float64(Some(f)) => !matches!(
            to.cast_to(&DataType::Float64),
            Ok(ScalarValue::Float64(Some(back))) if back == *f
        ),
        _ => false,
    }
}

fn text_parameter(index: usize, text: &str, ty: &Type) -> Result<ScalarValue, PgError> {
    let bad = |what: &str| invalid_parameter(index, &format!("'{text}' is not {what}"));
    Ok(match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => {
            ScalarValue::Int64(Some(text.trim().parse().map_err(|_| bad("an integer"))?))
        }
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => {
            ScalarValue::Float64(Some(text.trim().parse().map_err(|_| bad("a number"))?))
        }
        Type::BOOL => ScalarValue::Boolean(Some(match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "1" | "yes" | "on" | "y" => true,
            "f" | "false" | "0" | "no" | "off" | "n" => false,
            _ => return Err(bad("a boolean")),
        })),
        Type::TIMESTAMPTZ | Type::TIMESTAMP => {
            let ts = ScalarValue::Utf8(Some(normalise_timestamp(text)));
            ts.cast_to(&DataType::Timestamp(
                TimeUnit::Nanosecond,
                Some(strata_query::TIME_ZONE.into()),
            ))
            .map_err(|_| bad("a timestamp"))?
        }
        _ => ScalarValue::Utf8(Some(text.to_owned())),
    })
}

/// PostgreSQL's `2024-01-01 00:00:00+00` as RFC 3339 (`2024-01-01T00:00:00+00:00`); a time
/// without an offset is UTC.
fn normalise_timestamp(text: &str) -> String {
    let mut t = text.trim().replacen(' ', "T", 1);
    // `get`: byte 10 may fall inside a multi-byte character of a malformed value (left as it is
    // for the timestamp parser to refuse).
    if let Some(tail) = t.get(10..).filter(|tail| !tail.is_empty()) {
        match tail.rfind(['+', '-']) {
            Some(p) => {
                let offset = &tail[p..];
                if offset.len() == 3 {
                    t.push_str(":00");
                }
            }
            None if !tail.ends_with('Z') => t.push('Z'),
            None => {}
        }
    }
    t
}

fn binary_parameter(index: usize, b: &[u8], ty: &Type) -> Result<ScalarValue, PgError> {
    let fixed = |n: usize| -> Result<&[u8], PgError> {
        (b.len() == n)
            .then_some(b)
            .ok_or_else(|| invalid_parameter(index, &format!("expected {n} bytes for {ty}")))
    };
    Ok(match *ty {
        Type::BOOL => ScalarValue::Boolean(Some(fixed(1)?[0] != 0)),
        Type::INT2 => ScalarValue::Int64(Some(i64::from(i16::from_be_bytes(
            fixed(2)?.try_into().unwrap_or_default(),
        )))),
        Type::INT4 | Type::OID => ScalarValue::Int64(Some(i64::from(i32::from_be_bytes(
            fixed(4)?.try_into().unwrap_or_default(),
        )))),
        Type::INT8 => ScalarValue::Int64(Some(i64::from_be_bytes(
            fixed(8)?.try_into().unwrap_or_default(),
        ))),
        Type::FLOAT4 => ScalarValue::Float64(Some(f64::from(f32::from_be_bytes(
            fixed(4)?.try_into().unwrap_or_default(),
        )))),
        Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_be_bytes(
            fixed(8)?.try_into().unwrap_or_default(),
        ))),
        Type::TIMESTAMPTZ | Type::TIMESTAMP => {
            let pg = i64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default());
            let micros = pg.saturating_add(PG_EPOCH_MICROS);
            ScalarValue::TimestampNanosecond(
                Some(micros.saturating_mul(1000)),
                Some(strata_query::TIME_ZONE.into()),
            )
        }
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::UNKNOWN | Type::BPCHAR => {
            let text = std::str::from_utf8(b)
                .map_err(|_| invalid_parameter(index, "the text value is not UTF-8"))?;
            ScalarValue::Utf8(Some(text.to_owned()))
        }
        _ => {
            return Err(invalid_parameter(
                index,
                &format!("binary parameters of type {ty} are not supported; send it as text"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_postgres_text_form() {
        assert_eq!(timestamptz_text(0), "1970-01-01 00:00:00+00");
        assert_eq!(
            timestamptz_text(1_704_067_200_123_400),
            "2024-01-01 00:00:00.1234+00"
        );
        assert_eq!(timestamptz_text(-1), "1969-12-31 23:59:59.999999+00");
        assert_eq!(date_text(i64::from(PG_EPOCH_DAYS)), "2000-01-01");
    }

    #[test]
    fn declared_types_retype_only_what_would_change_answers() {
        let int8 = Some(DataType::Int64);
        // psycopg's int2 for a placeholder meeting an int8 column: the inferred type stands.
        assert_eq!(
            retyped(&[Some(Type::INT2)], std::slice::from_ref(&int8)),
            None
        );
        // Nothing declared (OID 0), or a declared type without a plain SQL type: as inferred.
        assert_eq!(retyped(&[None], &[None]), None);
        assert_eq!(retyped(&[Some(Type::TIMESTAMPTZ)], &[None]), None);
        // An untyped placeholder takes the declared type, integers at 64 bits whatever the
        // declared width (two int2 values added must not wrap).
        assert_eq!(
            retyped(&[Some(Type::INT2)], &[Some(DataType::Null)]),
            Some(vec![SqlDataType::BigInt(None)])
        );
        for t in [Type::INT2, Type::INT4, Type::INT8] {
            assert_eq!(
                retyped(&[Some(t)], &[None]),
                Some(vec![SqlDataType::BigInt(None)])
            );
        }
        assert_eq!(
            retyped(&[Some(Type::FLOAT4)], std::slice::from_ref(&int8)),
            Some(vec![SqlDataType::DoublePrecision])
        );
        // A change past a position typed neither way (a timestamp) is left to the inference:
        // no second plan that would not use it.
        let ts = Some(DataType::Timestamp(
            TimeUnit::Nanosecond,
            Some("UTC".into()),
        ));
        assert_eq!(
            retyped(
                &[Some(Type::TIMESTAMPTZ), Some(Type::FLOAT8)],
                &[ts, int8.clone()]
            ),
            None
        );
        // A float declared where an integer was inferred: the float, the positions before it
        // as inferred, and the list stops at the first position typed neither way.
        assert_eq!(
            retyped(
                &[None, Some(Type::FLOAT8), None, None],
                &[Some(DataType::Utf8), int8.clone(), None, int8]
            ),
            Some(vec![SqlDataType::Text, SqlDataType::DoublePrecision])
        );
    }

    #[test]
    fn a_parameter_that_a_cast_would_change_is_refused() {
        let int = Some(&DataType::Int64);
        let v = parameter(0, Some(b"20"), false, &Type::FLOAT8, int).unwrap();
        assert_eq!(v, ScalarValue::Int64(Some(20)));
        for text in ["20.5", "-0.25"] {
            let e = parameter(0, Some(text.as_bytes()), false, &Type::FLOAT8, int).unwrap_err();
            assert_eq!(e.code, "22023", "{text}");
            assert!(e.message.contains("would change"), "{text}: {}", e.message);
        }
        let e = parameter(0, Some(b"1e300"), false, &Type::FLOAT8, int).unwrap_err();
        assert_eq!(e.code, "22023", "{}", e.message);
        let bits = 20.5f64.to_bits().to_be_bytes();
        assert!(parameter(0, Some(&bits), true, &Type::FLOAT8, int).is_err());
        let v = parameter(
            0,
            Some(b"2.5"),
            false,
            &Type::FLOAT8,
            Some(&DataType::Float64),
        );
        assert_eq!(v.unwrap(), ScalarValue::Float64(Some(2.5)));
    }

    #[test]
    fn a_malformed_timestamp_parameter_is_an_error_not_a_panic() {
        for text in [
            "2024-01-0\u{e9}",
            "2024-01-01\u{e9}",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
        ] {
            let e = parameter(0, Some(text.as_bytes()), false, &Type::TIMESTAMPTZ, None);
            assert!(e.is_err(), "{text:?}");
        }
        let ok = parameter(
            0,
            Some(b"2024-01-01 00:00:00+00"),
            false,
            &Type::TIMESTAMPTZ,
            None,
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn parameters_decode_by_type() {
        let v = parameter(0, Some(b"42"), false, &Type::INT8, None).unwrap();
        assert_eq!(v, ScalarValue::Int64(Some(42)));
        let v = parameter(0, Some(b"d1"), false, &Type::UNKNOWN, Some(&DataType::Utf8)).unwrap();
        assert_eq!(v, ScalarValue::Utf8(Some("d1".into())));
        let v = parameter(
            0,
            Some(&7i32.to_be_bytes()),
            true,
            &Type::INT4,
            Some(&DataType::Float64),
        )
        .unwrap();
        assert_eq!(v, ScalarValue::Float64(Some(7.0)));
        let v = parameter(
            0,
            Some(b"2024-01-01 00:00:01+00"),
            false,
            &Type::TIMESTAMPTZ,
            None,
        )
        .unwrap();
        assert_eq!(
            v,
            ScalarValue::TimestampNanosecond(Some(1_704_067_201_000_000_000), Some("UTC".into()))
        );
        let micros = 1_704_067_201_000_000i64 - PG_EPOCH_MICROS;
        let v = parameter(
            0,
            Some(&micros.to_be_bytes()),
            true,
            &Type::TIMESTAMPTZ,
            None,
        )
        .unwrap();
        assert_eq!(
            v,
            ScalarValue::TimestampNanosecond(Some(1_704_067_201_000_000_000), Some("UTC".into()))
        );
        assert!(parameter(0, Some(b"x"), false, &Type::INT8, None).is_err());
        assert!(parameter(0, Some(b"abc"), true, &Type::INT8, None).is_err());
        assert_eq!(
            parameter(0, None, false, &Type::INT8, Some(&DataType::Int64)).unwrap(),
            ScalarValue::Int64(None)
        );
    }
}
