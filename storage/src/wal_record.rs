//! Binary encoding of a [`WriteBatch`] as a WAL record payload (format in `docs/format.md`).
//! Replay decodes it with bounds checks; a record that passed its CRC but does not decode is reported,
//! never a panic.

use crate::bytes::{PutBytes, ReadError, Reader};
use crate::{Column, ColumnData, FieldType, SeriesKey, StringColumn, TableWrite, WriteBatch};

/// Payload format version (first byte of each record).
const RECORD_VERSION: u8 = 1;

/// Encodes a batch.
pub(crate) fn encode(batch: &WriteBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + batch.rows() * 32);
    out.put_u8(RECORD_VERSION);
    out.put_str(&batch.database);
    out.put_u32(batch.tables.len() as u32);
    for t in &batch.tables {
        encode_table(&mut out, t);
    }
    out
}

fn encode_table(out: &mut Vec<u8>, t: &TableWrite) {
    out.put_str(&t.stream);
    out.put_u32(t.series.len() as u32);
    for s in &t.series {
        out.put_str(&s.device);
        out.put_u32(s.tags.len() as u32);
        for (k, v) in &s.tags {
            out.put_str(k);
            out.put_str(v);
        }
    }
    out.put_u32(t.times.len() as u32);
    t.row_series.iter().for_each(|&s| out.put_u32(s));
    t.times.iter().for_each(|&ts| out.put_i64(ts));
    out.put_u32(t.columns.len() as u32);
    for c in &t.columns {
        encode_column(out, c);
    }
}

fn encode_column(out: &mut Vec<u8>, c: &Column) {
    out.put_str(&c.name);
    out.put_u8(c.data.field_type().tag());
    let mut bits = vec![0u8; c.valid.len().div_ceil(8)];
    for (i, _) in c.valid.iter().enumerate().filter(|(_, v)| **v) {
        bits[i / 8] |= 1 << (i % 8);
    }
    out.extend_from_slice(&bits);
    match &c.data {
        ColumnData::Float(v) => v.iter().for_each(|x| out.put_u64(x.to_bits())),
        ColumnData::Integer(v) => v.iter().for_each(|&x| out.put_i64(x)),
        ColumnData::Unsigned(v) => v.iter().for_each(|&x| out.put_u64(x)),
        ColumnData::Boolean(v) => v.iter().for_each(|&x| out.put_u8(u8::from(x))),
        ColumnData::String(v) => {
            out.put_str(&v.data);
            v.ends.iter().for_each(|&e| out.put_u32(e));
        }
    }
}

/// Decodes a payload written by [`encode`].
pub(crate) fn decode(buf: &[u8]) -> Result<WriteBatch, ReadError> {
    let mut r = Reader::new(buf);
    let version = r.u8("record version")?;
    if version != RECORD_VERSION {
        return Err(ReadError {
            offset: 0,
            what: format!("unknown WAL record version {version}"),
        });
    }
    let database = r.str("database")?.to_string();
    let ntables = r.count(4, "table count")?;
    let mut tables = Vec::with_capacity(ntables);
    for _ in 0..ntables {
        tables.push(decode_table(&mut r)?);
    }
    Ok(WriteBatch { database, tables })
}

fn decode_table(r: &mut Reader<'_>) -> Result<TableWrite, ReadError> {
    let stream = r.str("stream")?.to_string();
    let nseries = r.count(8, "series count")?;
    let mut series = Vec::with_capacity(nseries);
    for _ in 0..nseries {
        let device = r.str("device")?.to_string();
        let ntags = r.count(8, "tag count")?;
        let mut tags = Vec::with_capacity(ntags);
        for _ in 0..ntags {
            tags.push((
                r.str("tag key")?.to_string(),
                r.str("tag value")?.to_string(),
            ));
        }
        series.push(SeriesKey { device, tags });
    }
    let nrows = r.count(12, "row count")?;
    let row_series = (0..nrows)
        .map(|_| r.u32("row series"))
        .collect::<Result<Vec<_>, _>>()?;
    let times = (0..nrows)
        .map(|_| r.i64("timestamp"))
        .collect::<Result<Vec<_>, _>>()?;
    let ncols = r.count(6, "column count")?;
    let mut columns = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        columns.push(decode_column(r, nrows)?);
    }
    Ok(TableWrite {
        stream,
        series,
        row_series,
        times,
        columns,
    })
}

fn decode_column(r: &mut Reader<'_>, n: usize) -> Result<Column, ReadError> {
    let name = r.str("column name")?.to_string();
    let tag = r.u8("column type")?;
    let ty = FieldType::from_tag(tag).ok_or(ReadError {
        offset: 0,
        what: format!("unknown column type {tag}"),
    })?;
    let bits = r.take(n.div_ceil(8), "validity bitmap")?;
    let valid: Vec<bool> = (0..n).map(|i| bits[i / 8] & (1 << (i % 8)) != 0).collect();
    let data = match ty {
        FieldType::Float => ColumnData::Float(
            (0..n)
                .map(|_| r.u64("float").map(f64::from_bits))
                .collect::<Result<_, _>>()?,
        ),
        FieldType::Integer => {
            ColumnData::Integer((0..n).map(|_| r.i64("integer")).collect::<Result<_, _>>()?)
        }
        FieldType::Unsigned => ColumnData::Unsigned(
            (0..n)
                .map(|_| r.u64("unsigned"))
                .collect::<Result<_, _>>()?,
        ),
        FieldType::Boolean => ColumnData::Boolean(
            (0..n)
                .map(|_| r.u8("bool").map(|b| b != 0))
                .collect::<Result<_, _>>()?,
        ),
        FieldType::String => ColumnData::String(decode_strings(r, n)?),
    };
    Ok(Column { name, data, valid })
}

fn decode_strings(r: &mut Reader<'_>, n: usize) -> Result<StringColumn, ReadError> {
    let data = r.str("string data")?.to_string();
    let ends = (0..n)
        .map(|_| r.u32("string end"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut prev = 0usize;
    for &e in &ends {
        let e = e as usize;
        if e < prev || e > data.len() || !data.is_char_boundary(e) {
            return Err(ReadError {
                offset: 0,
                what: "string offsets are out of order or split a character".into(),
            });
        }
        prev = e;
    }
    Ok(StringColumn { data, ends })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    #[test]
    fn round_trip_every_type() {
        let mut cols: Vec<Column> = [
            ("f", FieldType::Float),
            ("i", FieldType::Integer),
            ("u", FieldType::Unsigned),
            ("b", FieldType::Boolean),
            ("s", FieldType::String),
        ]
        .iter()
        .map(|(n, t)| Column::new(*n, *t))
        .collect();
        let vals = [
            Value::Float(1.5),
            Value::Integer(-3),
            Value::Unsigned(7),
            Value::Boolean(true),
            Value::String("é".into()),
        ];
        for (c, v) in cols.iter_mut().zip(&vals) {
            c.data.push_value(v);
            c.valid.push(true);
            c.push_null();
        }
        let batch = WriteBatch {
            database: "db".into(),
            tables: vec![TableWrite {
                stream: "s".into(),
                series: vec![SeriesKey {
                    device: "d".into(),
                    tags: vec![("k".into(), "v".into())],
                }],
                row_series: vec![0, 0],
                times: vec![5, -5],
                columns: cols,
            }],
        };
        assert_eq!(decode(&encode(&batch)).unwrap(), batch);
    }

    #[test]
    fn truncated_payload_is_an_error() {
        let batch = WriteBatch {
            database: "db".into(),
            tables: vec![],
        };
        let bytes = encode(&batch);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
