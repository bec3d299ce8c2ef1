//! CSV input for bulk registration.
//!
//! Format (RFC 4180): a header row naming the columns, then one device per row. Fields are
//! separated by `,`; a field may be quoted with `"` (doubling `""` inside), which allows commas
//! and line breaks in it. Lines may end in `\n` or `\r\n`; blank lines are skipped; a UTF-8
//! BOM is ignored.
//!
//! Columns (names are case-sensitive and trimmed; only `id` is required):
//! - `id` — device id;
//! - `model`, `location` — text (empty cell = none);
//! - `tags` — tags separated by `;`;
//! - `attributes` — a JSON object;
//! - `enabled` — `true`/`false`/`1`/`0`/`yes`/`no` (empty = true);
//! - `primary_key`, `secondary_key`, `thumbprint` — as in the JSON registration;
//! - any other column — a string attribute with that name (empty cell = attribute absent;
//!   naming the same attribute in `attributes` and as a column is a row error).

use std::collections::HashSet;

use crate::error::{RegistryError, Result};
use crate::model::{Attributes, DeviceRegistration};

/// Most columns in a CSV header.
pub const MAX_CSV_COLUMNS: usize = 1024;

/// A row that could not be turned into a registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvRowError {
    /// 1-based line on which the row starts.
    pub line: usize,
    /// The row's `id` cell (may be empty).
    pub id: String,
    /// What is wrong.
    pub message: String,
}

/// One parsed record: starting line and fields.
struct Record {
    line: usize,
    fields: Vec<String>,
}

/// Parses CSV text into registrations, one result per data row. Structural errors (no or bad
/// header, unterminated quote, more than [`crate::MAX_BULK_ITEMS`] rows) are `Invalid`.
pub fn parse_devices_csv(
    input: &str,
) -> Result<Vec<std::result::Result<DeviceRegistration, CsvRowError>>> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let records = tokenize(input)?;
    let mut iter = records.into_iter();
    let header = iter
        .next()
        .ok_or_else(|| RegistryError::invalid("CSV input has no header row"))?;
    let columns = parse_header(&header)?;
    let rows: Vec<_> = iter.map(|r| row_to_registration(&columns, r)).collect();
    Ok(rows)
}

fn parse_header(header: &Record) -> Result<Vec<String>> {
    if header.fields.len() > MAX_CSV_COLUMNS {
        return Err(RegistryError::invalid(format!(
            "CSV header has more than {MAX_CSV_COLUMNS} columns"
        )));
    }
    let cols: Vec<String> = header.fields.iter().map(|f| f.trim().to_string()).collect();
    let mut seen = HashSet::new();
    for c in &cols {
        if c.is_empty() {
            return Err(RegistryError::invalid(
                "CSV header has an empty column name",
            ));
        }
        if !seen.insert(c.as_str()) {
            return Err(RegistryError::invalid(format!(
                "CSV header names column '{c}' twice"
            )));
        }
    }
    if !seen.contains("id") {
        return Err(RegistryError::invalid(
            "CSV header must have an 'id' column",
        ));
    }
    Ok(cols)
}

fn row_to_registration(
    columns: &[String],
    rec: Record,
) -> std::result::Result<DeviceRegistration, CsvRowError> {
    let id = columns
        .iter()
        .position(|c| c == "id")
        .and_then(|i| rec.fields.get(i))
        .cloned()
        .unwrap_or_default();
    let fail = |message: String| CsvRowError {
        line: rec.line,
        id: id.clone(),
        message,
    };
    if rec.fields.len() != columns.len() {
        return Err(fail(format!(
            "expected {} fields, found {}",
            columns.len(),
            rec.fields.len()
        )));
    }
    let mut reg = DeviceRegistration::new(id.clone());
    let mut extra = Attributes::new();
    for (col, value) in columns.iter().zip(rec.fields) {
        apply_cell(&mut reg, &mut extra, col, value).map_err(&fail)?;
    }
    for (k, v) in extra {
        if reg.attributes.contains_key(&k) {
            return Err(fail(format!(
                "attribute '{k}' given both in 'attributes' and as a column"
            )));
        }
        reg.attributes.insert(k, v);
    }
    Ok(reg)
}

fn opt(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn apply_cell(
    reg: &mut DeviceRegistration,
    extra: &mut Attributes,
    col: &str,
    value: String,
) -> std::result::Result<(), String> {
    match col {
        "id" => {}
        "model" => reg.model = opt(value),
        "location" => reg.location = opt(value),
        "primary_key" => reg.primary_key = opt(value),
        "secondary_key" => reg.secondary_key = opt(value),
        "thumbprint" => reg.thumbprint = opt(value),
        "tags" => {
            reg.tags = value
                .split(';')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
        }
        "enabled" => reg.enabled = parse_bool(&value)?,
        "attributes" => reg.attributes = parse_attributes(&value)?,
        other => {
            if !value.is_empty() {
                extra.insert(other.to_string(), serde_json::Value::String(value));
            }
        }
    }
    Ok(())
}

fn parse_bool(v: &str) -> std::result::Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(format!("'enabled' must be true or false, got '{other}'")),
    }
}

fn parse_attributes(v: &str) -> std::result::Result<Attributes, String> {
    if v.trim().is_empty() {
        return Ok(Attributes::new());
    }
    match serde_json::from_str::<serde_json::Value>(v) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err("'attributes' must be a JSON object".into()),
        Err(e) => Err(format!("'attributes' is not valid JSON: {e}")),
    }
}

/// Splits CSV text into records (blank lines skipped).
fn tokenize(input: &str) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    let mut chars = input.chars().peekable();
    let mut line = 1usize;
    while chars.peek().is_some() {
        let start = line;
        let fields = read_record(&mut chars, &mut line)?;
        if fields.len() == 1 && fields[0].is_empty() {
            continue;
        }
        if records.len() > crate::MAX_BULK_ITEMS {
            return Err(RegistryError::invalid(format!(
                "CSV input has more than {} rows",
                crate::MAX_BULK_ITEMS
            )));
        }
        records.push(Record {
            line: start,
            fields,
        });
    }
    Ok(records)
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// Reads one record up to and including its line break.
fn read_record(chars: &mut Chars<'_>, line: &mut usize) -> Result<Vec<String>> {
    let mut fields = Vec::new();
    loop {
        let (field, end) = read_field(chars, line)?;
        fields.push(field);
        if fields.len() > MAX_CSV_COLUMNS {
            return Err(RegistryError::invalid(format!(
                "line {line}: more than {MAX_CSV_COLUMNS} fields"
            )));
        }
        if end != FieldEnd::Comma {
            return Ok(fields);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum FieldEnd {
    Comma,
    Line,
}

fn read_field(chars: &mut Chars<'_>, line: &mut usize) -> Result<(String, FieldEnd)> {
    let mut out = String::new();
    if chars.peek() == Some(&'"') {
        chars.next();
        read_quoted(chars, line, &mut out)?;
        return match chars.next() {
            None => Ok((out, FieldEnd::Line)),
            Some(',') => Ok((out, FieldEnd::Comma)),
            Some('\n') => {
                *line += 1;
                Ok((out, FieldEnd::Line))
            }
            Some('\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                *line += 1;
                Ok((out, FieldEnd::Line))
            }
            Some(c) => Err(RegistryError::invalid(format!(
                "line {line}: unexpected '{}' after a closing quote",
                c.escape_debug()
            ))),
        };
    }
    for c in chars.by_ref() {
        match c {
            ',' => return Ok((out, FieldEnd::Comma)),
            '\n' => {
                *line += 1;
                return Ok((strip_cr(out), FieldEnd::Line));
            }
            _ => out.push(c),
        }
    }
    Ok((strip_cr(out), FieldEnd::Line))
}

fn strip_cr(mut s: String) -> String {
    if s.ends_with('\r') {
        s.pop();
    }
    s
}

fn read_quoted(chars: &mut Chars<'_>, line: &mut usize, out: &mut String) -> Result<()> {
    let start = *line;
    while let Some(c) = chars.next() {
        match c {
            '"' if chars.peek() == Some(&'"') => {
                chars.next();
                out.push('"');
            }
            '"' => return Ok(()),
            '\n' => {
                *line += 1;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    Err(RegistryError::invalid(format!(
        "line {start}: unterminated quoted field"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_rows(input: &str) -> Vec<DeviceRegistration> {
        parse_devices_csv(input)
            .expect("parses")
            .into_iter()
            .map(|r| r.expect("row ok"))
            .collect()
    }

    #[test]
    fn parses_known_and_extra_columns() {
        let rows =
            ok_rows("id,model,tags,attributes,floor\r\nd1,m1,a;b,\"{\"\"x\"\": 1}\",3\n\nd2,,,,\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, "d1");
        assert_eq!(rows[0].model.as_deref(), Some("m1"));
        assert_eq!(rows[0].tags, vec!["a", "b"]);
        assert_eq!(rows[0].attributes["x"], serde_json::json!(1));
        assert_eq!(rows[0].attributes["floor"], serde_json::json!("3"));
        assert_eq!(rows[1].model, None);
        assert!(rows[1].attributes.is_empty());
    }

    #[test]
    fn quoted_fields_hold_commas_and_newlines() {
        let rows = ok_rows("id,note\nd1,\"a,b\nc\"\n");
        assert_eq!(rows[0].attributes["note"], serde_json::json!("a,b\nc"));
    }

    #[test]
    fn row_errors_are_per_row() {
        let rows =
            parse_devices_csv("id,attributes,enabled\nd1,[1],\nd2,,maybe\nd3\nd4,,no\n").unwrap();
        assert!(
            rows[0]
                .as_ref()
                .unwrap_err()
                .message
                .contains("JSON object")
        );
        assert!(rows[1].as_ref().unwrap_err().message.contains("enabled"));
        let e = rows[2].as_ref().unwrap_err();
        assert_eq!((e.line, e.id.as_str()), (4, "d3"));
        assert!(!rows[3].as_ref().unwrap().enabled);
    }

    #[test]
    fn structural_errors() {
        assert!(parse_devices_csv("").is_err());
        assert!(parse_devices_csv("model\nx\n").is_err());
        assert!(parse_devices_csv("id,id\n").is_err());
        assert!(parse_devices_csv("id\n\"open\n").is_err());
        assert!(parse_devices_csv("id\n\"a\"b\n").is_err());
    }

    #[test]
    fn duplicate_attribute_is_a_row_error() {
        let rows = parse_devices_csv("id,attributes,x\nd1,\"{\"\"x\"\":1}\",2\n").unwrap();
        assert!(rows[0].is_err());
    }
}
