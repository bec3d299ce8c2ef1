//! JSON telemetry decoder: turns a device's JSON payload into a columnar [`WriteBatch`].
//!
//! Three layouts are accepted (see `docs/json.md`):
//!
//! - a single record: `{"ts": 1700000000000, "temperature": 21.5, "door": "open"}`;
//! - an array of records: `[{...}, {...}]`;
//! - header plus rows: `{"columns": ["ts", "a", "b"], "rows": [[1700000000000, 1, true], ...]}`.
//!
//! In a record, `ts` or `time` is the timestamp (an epoch number in [`JsonOptions::epoch_unit`],
//! milliseconds by default, or an RFC 3339 string; absent means [`JsonOptions::default_time`]),
//! `stream` names the stream, `device` the device and `tags` (an object of strings) the series
//! tags. Every other key is a field: numbers become floats (unless [`IntegerMode::Integer`]),
//! booleans and strings keep their type, `null` means "no value", nested objects are flattened
//! with `.` (`{"gps": {"lat": 1}}` is the field `gps.lat`) and arrays are rejected. Decoding is
//! all or nothing: the first problem fails the payload with a [`JsonError`] giving the record
//! and field.

mod builder;
mod time;

use serde_json::{Map, Value as Json};
use strata_storage::{SeriesKey, Value, WriteBatch};

use crate::line_protocol::{
    MAX_PAYLOAD_LEN, MAX_STRING_LEN, MAX_TAG_VALUE_LEN, MIN_SLOT_BUDGET, Precision,
    SLOTS_PER_INPUT_BYTE, now_nanos,
};
use crate::lp_scan::{MAX_DEVICE_ID_LEN, is_device_id};
use builder::{Builder, RowError};

/// Keys of a record that are not fields.
pub const RESERVED_KEYS: [&str; 7] = ["ts", "time", "stream", "device", "tags", "columns", "rows"];

/// Deepest nesting of objects that is flattened into `a.b.c` field names.
pub const MAX_FLATTEN_DEPTH: usize = 16;

/// How JSON numbers written as integer literals (`21`, no `.` or exponent) are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntegerMode {
    /// As floats, like every other number (the default). A device that sends `21` and later
    /// `21.5` keeps one field type; integers beyond 2^53 lose precision.
    #[default]
    Float,
    /// As signed integers (unsigned above `i64::MAX`); numbers with a fraction or exponent stay
    /// floats, so a field must then be sent consistently.
    Integer,
}

/// Decoder options.
#[derive(Debug, Clone)]
pub struct JsonOptions {
    /// Unit of numeric timestamps (default milliseconds).
    pub epoch_unit: Precision,
    /// How integer literals are stored (default as floats).
    pub integers: IntegerMode,
    /// Timestamp (ns) given to records without one: the receive time.
    pub default_time: i64,
}

impl Default for JsonOptions {
    /// Millisecond epochs, integers as floats, and the current time as default.
    fn default() -> Self {
        JsonOptions {
            epoch_unit: Precision::Milliseconds,
            integers: IntegerMode::Float,
            default_time: now_nanos(),
        }
    }
}

/// A decoding failure: where (record and field) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct JsonError {
    /// JSON-path-like location: `$` (whole payload), `$.temperature` (single record),
    /// `$[3].gps.lat` (record 3 of an array) or `$.rows[3][1]` (header-plus-rows layout).
    pub path: String,
    /// 0-based index of the record (array element or row), when the error is inside one.
    pub record: Option<usize>,
    /// The field (or reserved key) at fault, when there is one.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Decodes a payload into one batch for `database`. Records without a `stream` go to
/// `stream_default`. With `device = Some(id)` every row belongs to `id` (the authenticated
/// device) and a record naming another device is an error; with `None`, a record's `device`
/// key names the device (`""` when absent).
pub fn parse(
    payload: &[u8],
    database: &str,
    stream_default: &str,
    device: Option<&str>,
    opts: &JsonOptions,
) -> Result<WriteBatch, JsonError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(whole(format!(
            "payload is {} bytes; the limit is {MAX_PAYLOAD_LEN}",
            payload.len()
        )));
    }
    let root: Json = serde_json::from_slice(payload).map_err(|e| {
        whole(format!(
            "invalid JSON at line {}, column {}: {}",
            e.line(),
            e.column(),
            syntax_message(&e)
        ))
    })?;
    check_name(stream_default, "stream").map_err(whole)?;
    if let Some(id) = device {
        check_device(id).map_err(whole)?;
    }
    let mut decoder = Decoder {
        stream_default,
        device,
        opts,
        builder: Builder::new(
            payload
                .len()
                .saturating_mul(SLOTS_PER_INPUT_BYTE)
                .max(MIN_SLOT_BUDGET),
        ),
    };
    match &root {
        Json::Array(records) => decoder.array(records)?,
        Json::Object(obj) if obj.contains_key("columns") || obj.contains_key("rows") => {
            decoder.rows_layout(obj)?
        }
        Json::Object(obj) => decoder.record(obj, None)?,
        other => {
            return Err(whole(format!(
                "expected an object or an array of objects, found {}",
                kind(other)
            )));
        }
    }
    Ok(WriteBatch {
        database: database.to_owned(),
        tables: decoder.builder.finish(),
    })
}

/// The serde_json message without its trailing " at line L column C".
fn syntax_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

fn whole(message: String) -> JsonError {
    JsonError {
        path: "$".into(),
        record: None,
        field: None,
        message,
    }
}

/// Where a record sits in the payload.
#[derive(Debug, Clone, Copy)]
enum Site {
    /// The payload is this one record.
    Single,
    /// Element `i` of a top-level array.
    Element(usize),
    /// Row `i` of the header-plus-rows layout.
    Row(usize),
}

impl Site {
    fn index(self) -> Option<usize> {
        match self {
            Site::Single => None,
            Site::Element(i) | Site::Row(i) => Some(i),
        }
    }

    fn record_number(self) -> usize {
        self.index().unwrap_or(0)
    }

    fn prefix(self) -> String {
        match self {
            Site::Single => "$".into(),
            Site::Element(i) => format!("$[{i}]"),
            Site::Row(i) => format!("$.rows[{i}]"),
        }
    }

    /// An error about the key or field `field` (a dotted name in records, a column in rows).
    fn error(self, field: &str, column: Option<usize>, message: String) -> JsonError {
        let path = match column {
            Some(c) => format!("{}[{c}]", self.prefix()),
            None => format!("{}.{field}", self.prefix()),
        };
        JsonError {
            path,
            record: self.index(),
            field: Some(field.to_owned()),
            message,
        }
    }

    /// An error about the record as a whole.
    fn record_error(self, message: String) -> JsonError {
        JsonError {
            path: self.prefix(),
            record: self.index(),
            field: None,
            message,
        }
    }
}

/// The non-field parts of a record being decoded.
#[derive(Debug, Default)]
struct Meta<'j> {
    time: Option<i64>,
    time_key: Option<&'j str>,
    stream: Option<&'j str>,
    device: Option<&'j str>,
    tags: Vec<(String, String)>,
}

struct Decoder<'a> {
    stream_default: &'a str,
    device: Option<&'a str>,
    opts: &'a JsonOptions,
    builder: Builder,
}

impl<'a> Decoder<'a> {
    fn array(&mut self, records: &[Json]) -> Result<(), JsonError> {
        for (i, item) in records.iter().enumerate() {
            let site = Site::Element(i);
            match item {
                Json::Object(obj) => self.record(obj, Some(i))?,
                other => {
                    return Err(site.record_error(format!(
                        "expected a record (an object), found {}",
                        kind(other)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Decodes one record object (`index` is its position in a top-level array).
    fn record(&mut self, obj: &Map<String, Json>, index: Option<usize>) -> Result<(), JsonError> {
        let site = index.map_or(Site::Single, Site::Element);
        if obj.contains_key("columns") || obj.contains_key("rows") {
            return Err(site.record_error(
                "\"columns\" and \"rows\" are only allowed at the top level (header-plus-rows \
                 layout)"
                    .into(),
            ));
        }
        let mut meta = Meta::default();
        let mut fields = Vec::with_capacity(obj.len());
        for (key, value) in obj {
            if self.meta_key(&mut meta, key, value, site, None)? {
                continue;
            }
            self.field(key, value, site, &mut fields, 0)?;
        }
        self.finish_row(meta, &fields, site)
    }

    /// Handles a reserved key; returns false when `key` is a field.
    fn meta_key<'j>(
        &self,
        meta: &mut Meta<'j>,
        key: &'j str,
        value: &'j Json,
        site: Site,
        column: Option<usize>,
    ) -> Result<bool, JsonError> {
        let err = |message: String| site.error(key, column, message);
        match key {
            "ts" | "time" => {
                if let Some(first) = meta.time_key {
                    return Err(err(format!(
                        "the record has both \"{first}\" and \"{key}\": give one timestamp"
                    )));
                }
                meta.time_key = Some(key);
                meta.time = self.timestamp(value).map_err(err)?;
            }
            "stream" => {
                let name = string_of(value, "the stream name").map_err(err)?;
                // `null` keeps the default (the layout's shared stream, or the caller's).
                if let Some(name) = name {
                    check_name(name, "stream").map_err(err)?;
                    meta.stream = Some(name);
                }
            }
            "device" => {
                let id = string_of(value, "the device id").map_err(err)?;
                if let Some(id) = id {
                    check_device(id).map_err(err)?;
                    meta.device = Some(id);
                }
            }
            "tags" => meta.tags = tags(value).map_err(err)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Timestamp of a `ts`/`time` value; `None` for `null`.
    fn timestamp(&self, value: &Json) -> Result<Option<i64>, String> {
        let unit = self.opts.epoch_unit;
        match value {
            Json::Null => Ok(None),
            Json::String(s) => time::parse_rfc3339(s).map(Some),
            Json::Number(n) => {
                let ns = if let Some(i) = n.as_i64() {
                    time::from_epoch_int(i128::from(i), unit)
                } else if let Some(u) = n.as_u64() {
                    time::from_epoch_int(i128::from(u), unit)
                } else {
                    time::from_epoch_float(n.as_f64().unwrap_or(f64::NAN), unit)
                };
                ns.map(Some)
            }
            other => Err(format!(
                "invalid timestamp: expected an epoch number in {unit} or an RFC 3339 string, \
                 found {}",
                kind(other)
            )),
        }
    }

    /// Adds the field `name` (flattening objects) to `fields`.
    fn field(
        &self,
        name: &str,
        value: &Json,
        site: Site,
        fields: &mut Vec<(String, Value)>,
        depth: usize,
    ) -> Result<(), JsonError> {
        let err = |message: String| site.error(name, None, message);
        check_name(name, "field").map_err(err)?;
        if name == "time" {
            return Err(err("field name \"time\" is reserved".into()));
        }
        match value {
            Json::Object(inner) => {
                if depth + 1 >= MAX_FLATTEN_DEPTH {
                    return Err(err(format!(
                        "objects nested more than {MAX_FLATTEN_DEPTH} levels deep are not \
                         flattened"
                    )));
                }
                for (key, v) in inner {
                    if key.is_empty() {
                        return Err(err("empty key in a nested object".into()));
                    }
                    self.field(&format!("{name}.{key}"), v, site, fields, depth + 1)?;
                }
                Ok(())
            }
            _ => {
                if let Some(v) = self.scalar(value).map_err(err)? {
                    fields.push((name.to_owned(), v));
                }
                Ok(())
            }
        }
    }

    /// A scalar field value; `None` for `null`.
    fn scalar(&self, value: &Json) -> Result<Option<Value>, String> {
        Ok(Some(match value {
            Json::Null => return Ok(None),
            Json::Bool(b) => Value::Boolean(*b),
            Json::String(s) if s.len() > MAX_STRING_LEN => {
                return Err(format!(
                    "string value is {} bytes long; the limit is {MAX_STRING_LEN} bytes",
                    s.len()
                ));
            }
            Json::String(s) => Value::String(s.clone()),
            Json::Number(n) => self.number(n),
            Json::Array(_) => {
                return Err(
                    "arrays are not supported as field values: send one record per reading, \
                     or name each element as its own field"
                        .into(),
                );
            }
            Json::Object(_) => {
                return Err("a nested object is not allowed here: expected a scalar".into());
            }
        }))
    }

    fn number(&self, n: &serde_json::Number) -> Value {
        if self.opts.integers == IntegerMode::Integer {
            if let Some(i) = n.as_i64() {
                return Value::Integer(i);
            }
            if let Some(u) = n.as_u64() {
                return Value::Unsigned(u);
            }
        }
        // Without serde_json's arbitrary_precision every number converts; floats are finite.
        Value::Float(n.as_f64().unwrap_or(0.0))
    }

    /// Stores the row of a decoded record.
    fn finish_row(
        &mut self,
        meta: Meta<'_>,
        fields: &[(String, Value)],
        site: Site,
    ) -> Result<(), JsonError> {
        let device = self.resolve_device(meta.device, site)?;
        let stream = meta.stream.unwrap_or(self.stream_default);
        let time = meta.time.unwrap_or(self.opts.default_time);
        let mut tags = meta.tags;
        tags.sort();
        let key = SeriesKey { device, tags };
        self.builder
            .row(stream, key, time, fields, site.record_number())
            .map_err(|e| row_error(e, site))
    }

    /// The device of a row: the forced one, else the record's, else `""`.
    fn resolve_device(&self, named: Option<&str>, site: Site) -> Result<String, JsonError> {
        match (self.device, named) {
            (Some(forced), Some(named)) if forced != named => Err(site.error(
                "device",
                None,
                format!(
                    "the record names device {named:?} but the payload belongs to device \
                     {forced:?}"
                ),
            )),
            (Some(forced), _) => Ok(forced.to_owned()),
            (None, named) => Ok(named.unwrap_or_default().to_owned()),
        }
    }

    /// The header-plus-rows layout.
    fn rows_layout(&mut self, obj: &Map<String, Json>) -> Result<(), JsonError> {
        let top = |key: &str, message: String| JsonError {
            path: format!("$.{key}"),
            record: None,
            field: Some(key.to_owned()),
            message,
        };
        let mut shared = Meta::default();
        for (key, value) in obj {
            match key.as_str() {
                "columns" | "rows" => {}
                "stream" | "device" | "tags" => {
                    self.meta_key(&mut shared, key, value, Site::Single, None)?;
                }
                other => {
                    return Err(top(
                        other,
                        "unexpected key in the header-plus-rows layout: expected \"columns\", \
                         \"rows\" and optionally \"stream\", \"device\" and \"tags\""
                            .into(),
                    ));
                }
            }
        }
        let columns = match obj.get("columns") {
            Some(Json::Array(c)) => c,
            Some(other) => {
                return Err(top(
                    "columns",
                    format!("expected an array of column names, found {}", kind(other)),
                ));
            }
            None => return Err(whole("missing \"columns\" next to \"rows\"".into())),
        };
        let names = column_names(columns).map_err(|(i, m)| JsonError {
            path: format!("$.columns[{i}]"),
            record: None,
            field: None,
            message: m,
        })?;
        let rows = match obj.get("rows") {
            Some(Json::Array(r)) => r,
            Some(other) => {
                return Err(top(
                    "rows",
                    format!("expected an array of rows, found {}", kind(other)),
                ));
            }
            None => return Err(whole("missing \"rows\" next to \"columns\"".into())),
        };
        for (i, row) in rows.iter().enumerate() {
            self.row(&names, row, &shared, Site::Row(i))?;
        }
        Ok(())
    }

    /// One row of the header-plus-rows layout.
    fn row(
        &mut self,
        names: &[&str],
        row: &Json,
        shared: &Meta<'_>,
        site: Site,
    ) -> Result<(), JsonError> {
        let values = match row {
            Json::Array(v) if v.len() == names.len() => v,
            Json::Array(v) => {
                return Err(site.record_error(format!(
                    "the row has {} values but there are {} columns",
                    v.len(),
                    names.len()
                )));
            }
            other => {
                return Err(site.record_error(format!(
                    "expected a row (an array of values), found {}",
                    kind(other)
                )));
            }
        };
        let mut meta = Meta {
            stream: shared.stream,
            device: shared.device,
            tags: shared.tags.clone(),
            ..Meta::default()
        };
        let mut fields = Vec::with_capacity(values.len());
        for (c, (name, value)) in names.iter().zip(values).enumerate() {
            if matches!(*name, "ts" | "time" | "stream" | "device") {
                self.meta_key(&mut meta, name, value, site, Some(c))?;
                continue;
            }
            if let Some(v) = self
                .scalar(value)
                .map_err(|m| site.error(name, Some(c), m))?
            {
                fields.push(((*name).to_owned(), v));
            }
        }
        self.finish_row(meta, &fields, site)
    }
}

/// Validates the `columns` header; on error returns the column index and the message.
fn column_names(columns: &[Json]) -> Result<Vec<&str>, (usize, String)> {
    let mut names: Vec<&str> = Vec::with_capacity(columns.len());
    for (i, c) in columns.iter().enumerate() {
        let Json::String(name) = c else {
            return Err((
                i,
                format!("expected a column name (a string), found {}", kind(c)),
            ));
        };
        if matches!(name.as_str(), "tags" | "columns" | "rows") {
            return Err((i, format!("{name:?} cannot be a column")));
        }
        check_name(name, "column").map_err(|m| (i, m))?;
        if names.contains(&name.as_str()) {
            return Err((i, format!("duplicate column {name:?}")));
        }
        names.push(name);
    }
    if names
        .iter()
        .filter(|n| matches!(**n, "ts" | "time"))
        .count()
        > 1
    {
        return Err((0, "give one timestamp column: \"ts\" or \"time\"".into()));
    }
    Ok(names)
}

/// A string value or `null`.
fn string_of<'j>(value: &'j Json, what: &str) -> Result<Option<&'j str>, String> {
    match value {
        Json::Null => Ok(None),
        Json::String(s) => Ok(Some(s)),
        other => Err(format!(
            "expected {what} as a string, found {}",
            kind(other)
        )),
    }
}

/// The `tags` object: string keys to string values.
fn tags(value: &Json) -> Result<Vec<(String, String)>, String> {
    let obj = match value {
        Json::Null => return Ok(Vec::new()),
        Json::Object(obj) => obj,
        other => {
            return Err(format!(
                "expected an object of tag names to string values, found {}",
                kind(other)
            ));
        }
    };
    let mut out = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        check_name(k, "tag key")?;
        if k == "time" || k == "device" {
            return Err(format!("tag key {k:?} is reserved"));
        }
        let Json::String(s) = v else {
            return Err(format!("tag {k:?} must be a string, found {}", kind(v)));
        };
        if s.is_empty() {
            return Err(format!("empty value for tag {k:?}: omit the tag instead"));
        }
        if s.len() > MAX_TAG_VALUE_LEN || s.bytes().any(is_control) {
            return Err(format!(
                "value of tag {k:?} must be at most {MAX_TAG_VALUE_LEN} bytes without control \
                 characters"
            ));
        }
        out.push((k.clone(), s.clone()));
    }
    Ok(out)
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Checks a stream, field, column or tag name (`crate::text::check_name`).
fn check_name(name: &str, what: &'static str) -> Result<(), String> {
    crate::text::check_name(name, what).map_err(|e| e.to_string())
}

fn check_device(id: &str) -> Result<(), String> {
    if is_device_id(id) {
        Ok(())
    } else {
        Err(format!(
            "invalid device id {id:?}: expected 1 to {MAX_DEVICE_ID_LEN} characters from \
             A-Z a-z 0-9 . _ : -"
        ))
    }
}

fn row_error(e: RowError, site: Site) -> JsonError {
    match e {
        RowError::Conflict {
            field,
            existing,
            first_record,
            found,
        } => site.error(
            &field.clone(),
            None,
            format!(
                "field {field:?} is {found} here but {existing} in record {first_record} of this \
                 payload: a field must keep one type"
            ),
        ),
        RowError::Duplicate(field) => site.error(
            &field.clone(),
            None,
            format!("field {field:?} appears twice in the record"),
        ),
        RowError::Budget(budget) => site.record_error(format!(
            "payload too sparse: more than {budget} column slots (rows × distinct fields per \
             stream); send fewer distinct field names or split the write"
        )),
    }
}

/// How a JSON value is named in error messages.
fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}
