//! InfluxDB line protocol parser: turns a payload of
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]` lines into a columnar
//! [`WriteBatch`], one [`TableWrite`](strata_storage::TableWrite) per measurement.
//!
//! The grammar, escaping rules, limits and error messages are described in
//! `docs/line-protocol.md`. Parsing is all or nothing: the first bad line fails the payload with
//! a [`ParseError`] giving its 1-based line and byte column.

use foldhash::HashMap;
use std::str::FromStr;

use strata_storage::{FieldType, SeriesKey, WriteBatch};

use crate::lp_scan::{self, Fail, NameKind};
use crate::lp_table::{TableBuilder, TypeConflict, Value};
use crate::lp_value::{self, BadTime};

pub use crate::lp_scan::{MAX_DEVICE_ID_LEN, MAX_NAME_LEN, MAX_TAG_VALUE_LEN};

/// Longest string field value, in bytes after unescaping.
pub const MAX_STRING_LEN: usize = 1 << 20;
/// Earliest accepted timestamp, in nanoseconds (`i64::MIN` + 2, as InfluxDB).
pub const MIN_TIMESTAMP_NS: i64 = i64::MIN + 2;
/// Latest accepted timestamp, in nanoseconds (`i64::MAX` - 1, as InfluxDB).
pub const MAX_TIMESTAMP_NS: i64 = i64::MAX - 1;
/// Column slots (rows × fields, summed over measurements) a payload may produce per input byte,
/// beyond [`MIN_SLOT_BUDGET`]: bounds the memory of very sparse payloads (many distinct field
/// names, each on few rows), since every column holds one slot per row of its measurement.
pub const SLOTS_PER_INPUT_BYTE: usize = 4;
/// Column slots any payload may produce regardless of its size.
pub const MIN_SLOT_BUDGET: usize = 1 << 20;
/// Largest payload accepted (string offsets are 32-bit).
pub const MAX_PAYLOAD_LEN: usize = u32::MAX as usize;

/// Tag names tried, in order, for the device id when none are configured otherwise.
pub const DEFAULT_DEVICE_TAGS: [&str; 2] = ["device", "name"];

/// Timestamp precision of a line-protocol payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds (the default).
    #[default]
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes (InfluxDB 1.x `precision=m`).
    Minutes,
    /// Hours (InfluxDB 1.x `precision=h`).
    Hours,
}

/// An unrecognised precision name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?}: expected one of ns, us, ms, s, m, h")]
pub struct UnknownPrecision(pub String);

impl Precision {
    /// Nanoseconds in one unit.
    pub fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }

    /// Converts a timestamp in this precision to nanoseconds; `None` when the result falls
    /// outside [`MIN_TIMESTAMP_NS`]`..=`[`MAX_TIMESTAMP_NS`].
    pub fn to_nanos(self, ts: i64) -> Option<i64> {
        ts.checked_mul(self.nanos_per_unit())
            .filter(|ns| (MIN_TIMESTAMP_NS..=MAX_TIMESTAMP_NS).contains(ns))
    }

    /// Canonical short name (`ns`, `us`, `ms`, `s`, `m`, `h`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
            Precision::Minutes => "m",
            Precision::Hours => "h",
        }
    }

    /// Parses a `precision` query parameter: `ns`/`n`, `us`/`u`/`µs`, `ms`, `s`, `m`, `h`.
    pub fn parse_param(s: &str) -> Result<Self, UnknownPrecision> {
        Ok(match s {
            "ns" | "n" => Precision::Nanoseconds,
            "us" | "u" | "µs" | "µ" | "μs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            other => return Err(UnknownPrecision(other.to_owned())),
        })
    }
}

impl FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::parse_param(s)
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parser options.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// Precision of the timestamps in the payload.
    pub precision: Precision,
    /// Tag names that name the device, tried in order (default `["device", "name"]`).
    pub device_tags: Vec<String>,
    /// Timestamp (ns) given to lines without one.
    pub default_time: i64,
}

impl Default for ParseOptions {
    /// Nanosecond precision, device tags `device` then `name`, and the current time as default.
    fn default() -> Self {
        ParseOptions {
            precision: Precision::Nanoseconds,
            device_tags: DEFAULT_DEVICE_TAGS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            default_time: now_nanos(),
        }
    }
}

/// Nanoseconds since the Unix epoch now (0 if the clock is before 1970 or past 2262).
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// A parse failure with its position (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based byte column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses a whole payload into one batch for `database`. All or nothing: the first bad line fails it.
pub fn parse(input: &[u8], database: &str, opts: &ParseOptions) -> Result<WriteBatch, ParseError> {
    if input.len() > MAX_PAYLOAD_LEN {
        return Err(ParseError {
            line: 1,
            column: 1,
            message: format!(
                "payload is {} bytes; the limit is {MAX_PAYLOAD_LEN}",
                input.len()
            ),
        });
    }
    let mut parser = Parser::new(input, opts);
    match parser.run() {
        Ok(()) => Ok(WriteBatch {
            database: database.to_owned(),
            tables: parser.finish(),
        }),
        Err(fail) => Err(parser.locate(fail)),
    }
}

/// One tag of a line being turned into a series key.
struct RawTag {
    key: String,
    value: String,
    /// Offset of the key in the payload.
    key_pos: usize,
    /// Offset of the value in the payload.
    value_pos: usize,
}

/// Parser state for one payload.
struct Parser<'a> {
    input: &'a [u8],
    opts: &'a ParseOptions,
    /// 1-based number of the current line.
    line: usize,
    /// Offset of the current line's first byte.
    line_start: usize,
    tables: Vec<TableBuilder<'a>>,
    /// Raw measurement bytes → index in `tables`.
    table_by_raw: HashMap<&'a [u8], usize>,
    /// Most recently used measurement.
    last_table: Option<(&'a [u8], usize)>,
    /// Column slots produced so far, and the most allowed.
    slots: usize,
    slot_budget: usize,
    /// Reused buffer for unescaped string values.
    scratch: String,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8], opts: &'a ParseOptions) -> Self {
        Parser {
            input,
            opts,
            line: 1,
            line_start: 0,
            tables: Vec::new(),
            table_by_raw: HashMap::default(),
            last_table: None,
            slots: 0,
            slot_budget: input
                .len()
                .saturating_mul(SLOTS_PER_INPUT_BYTE)
                .max(MIN_SLOT_BUDGET),
            scratch: String::new(),
        }
    }

    /// Turns an offset-based failure into a line/column error.
    fn locate(&self, fail: Fail) -> ParseError {
        ParseError {
            line: self.line,
            column: fail.pos.saturating_sub(self.line_start) + 1,
            message: fail.message,
        }
    }

    fn finish(self) -> Vec<strata_storage::TableWrite> {
        self.tables.into_iter().map(TableBuilder::finish).collect()
    }

    /// Parses every line.
    fn run(&mut self) -> Result<(), Fail> {
        let input = self.input;
        let mut pos = 0;
        while pos < input.len() {
            let newline = memchr::memchr(b'\n', &input[pos..]).map_or(input.len(), |o| pos + o);
            let end = if newline > pos && input[newline - 1] == b'\r' {
                newline - 1
            } else {
                newline
            };
            self.line_start = pos;
            self.parse_line(pos, end)?;
            pos = newline + 1;
            self.line += 1;
        }
        Ok(())
    }

    /// Parses `input[start..end]` (one line without its terminator).
    fn parse_line(&mut self, start: usize, end: usize) -> Result<(), Fail> {
        let input = self.input;
        let m_start = lp_scan::skip_blanks(input, start, end);
        if m_start == end || input[m_start] == b'#' {
            return Ok(());
        }
        let m_end = lp_scan::measurement_end(input, m_start, end);
        if m_end == m_start {
            return Err(Fail::at(m_start, "missing measurement name before ','"));
        }
        let table = self.table_for(m_start, m_end)?;
        let tags_end = if m_end < end && input[m_end] == b',' {
            lp_scan::tag_set_end(input, m_end, end)
        } else {
            m_end
        };
        let series = self.series_for(table, m_end, tags_end)?;
        let fields_start = lp_scan::skip_spaces(input, tags_end, end);
        if fields_start == end {
            return Err(missing_fields(fields_start, &input[m_start..tags_end]));
        }
        let fields_end = self.parse_fields(table, fields_start, end)?;
        let time = self.parse_time(fields_end, end)?;
        self.charge(self.tables[table].columns())?;
        self.tables[table].end_row(time, series);
        Ok(())
    }

    /// Index of the table for the measurement `input[start..end]`, created on first use.
    fn table_for(&mut self, start: usize, end: usize) -> Result<usize, Fail> {
        let input = self.input;
        let raw = &input[start..end];
        if let Some((last, idx)) = self.last_table
            && last == raw
        {
            return Ok(idx);
        }
        let idx = match self.table_by_raw.get(raw) {
            Some(&idx) => idx,
            None => {
                let name = lp_scan::name(input, start, end, NameKind::Measurement)?;
                self.tables.push(TableBuilder::new(name));
                self.table_by_raw.insert(raw, self.tables.len() - 1);
                self.tables.len() - 1
            }
        };
        self.last_table = Some((raw, idx));
        Ok(idx)
    }

    /// Series index for the tag set `input[start..end]` (empty, or starting with `,`).
    fn series_for(&mut self, table: usize, start: usize, end: usize) -> Result<u32, Fail> {
        let input = self.input;
        let raw = &input[start..end];
        if let Some(idx) = self.tables[table].known_series(raw) {
            return Ok(idx);
        }
        let key = self.series_key(start, end)?;
        Ok(self.tables[table].add_series(raw, key))
    }

    /// Parses, validates and canonicalises a tag set not seen before in this measurement.
    fn series_key(&self, start: usize, end: usize) -> Result<SeriesKey, Fail> {
        let mut tags = self.raw_tags(start, end)?;
        tags.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(dup) = tags.windows(2).find(|w| w[0].key == w[1].key) {
            let pos = dup[0].key_pos.max(dup[1].key_pos);
            return Err(Fail::at(pos, format!("duplicate tag key {:?}", dup[0].key)));
        }
        let device = self.take_device(&mut tags)?;
        let tags = tags.into_iter().map(|t| (t.key, t.value)).collect();
        Ok(SeriesKey { device, tags })
    }

    /// Removes the device tag (the first of `device_tags` present) and returns its value.
    fn take_device(&self, tags: &mut Vec<RawTag>) -> Result<String, Fail> {
        let found = self
            .opts
            .device_tags
            .iter()
            .find_map(|name| tags.iter().position(|t| &t.key == name));
        let Some(i) = found else {
            return Ok(String::new());
        };
        let tag = tags.remove(i);
        if !lp_scan::is_device_id(&tag.value) {
            return Err(Fail::at(
                tag.value_pos,
                format!(
                    "invalid device id {:?} in tag {:?}: expected 1 to {MAX_DEVICE_ID_LEN} \
                     characters from A-Z a-z 0-9 . _ : -",
                    tag.value, tag.key
                ),
            ));
        }
        Ok(tag.value)
    }

    /// Splits `,k=v,k=v` into validated, unescaped tags.
    fn raw_tags(&self, start: usize, end: usize) -> Result<Vec<RawTag>, Fail> {
        let input = self.input;
        let mut tags = Vec::new();
        let mut i = start;
        while i < end {
            let key_pos = i + 1;
            let key_end = lp_scan::tag_key_end(input, key_pos, end);
            if key_end == key_pos {
                return Err(Fail::at(
                    key_pos,
                    "empty tag key: expected key=value after ','",
                ));
            }
            if key_end == end || input[key_end] != b'=' {
                let key = lp_scan::lossy_name(&input[key_pos..key_end], NameKind::TagKey);
                return Err(Fail::at(
                    key_end,
                    format!("missing '=' after tag key {key:?}"),
                ));
            }
            let value_pos = key_end + 1;
            let value_end = lp_scan::tag_value_end(input, value_pos, end);
            let key = lp_scan::name(input, key_pos, key_end, NameKind::TagKey)?;
            check_tag_value(input, &key, value_pos, value_end, end)?;
            if key == "time" {
                return Err(Fail::at(key_pos, "tag key \"time\" is reserved"));
            }
            let value = lp_scan::name(input, value_pos, value_end, NameKind::TagValue)?;
            tags.push(RawTag {
                key,
                value,
                key_pos,
                value_pos,
            });
            i = value_end;
        }
        Ok(tags)
    }

    /// Parses the field set starting at `start`; returns the offset just past it.
    fn parse_fields(&mut self, table: usize, start: usize, end: usize) -> Result<usize, Fail> {
        let input = self.input;
        self.tables[table].begin_row();
        let mut i = start;
        loop {
            let key_end = lp_scan::field_key_end(input, i, end);
            check_field_key(input, i, key_end, end)?;
            let value_pos = key_end + 1;
            let value_end = self.parse_field(table, i, key_end, value_pos, end)?;
            if value_end == end || input[value_end] == b' ' {
                return Ok(value_end);
            }
            i = value_end + 1;
            if i == end {
                return Err(Fail::at(i, "expected another field after ','"));
            }
        }
    }

    /// Parses the value of the field `input[key..key_end]` and stores it; returns the offset
    /// just past the value.
    fn parse_field(
        &mut self,
        table: usize,
        key: usize,
        key_end: usize,
        value_pos: usize,
        end: usize,
    ) -> Result<usize, Fail> {
        let input = self.input;
        if value_pos < end && input[value_pos] == b'"' {
            return self.parse_string_field(table, key, key_end, value_pos, end);
        }
        let value_end = lp_scan::plain_end(input, value_pos, end);
        let token = &input[value_pos..value_end];
        if token.is_empty() {
            let name = lp_scan::lossy_name(&input[key..key_end], NameKind::FieldKey);
            return Err(Fail::at(
                value_pos,
                format!("missing value for field {name:?}"),
            ));
        }
        let scalar = lp_value::scalar(token).map_err(|bad| {
            let name = lp_scan::lossy_name(&input[key..key_end], NameKind::FieldKey);
            Fail::at(value_pos, bad.message(&lp_scan::show(token), &name))
        })?;
        self.store(table, key, key_end, Value::Scalar(scalar))?;
        Ok(value_end)
    }

    /// Parses a double-quoted string value starting at the quote `open` and stores it.
    fn parse_string_field(
        &mut self,
        table: usize,
        key: usize,
        key_end: usize,
        open: usize,
        end: usize,
    ) -> Result<usize, Fail> {
        let input = self.input;
        let field = || lp_scan::lossy_name(&input[key..key_end], NameKind::FieldKey);
        let Some(q) = lp_value::quoted_string(input, open + 1, end) else {
            return Err(Fail::at(
                open,
                format!(
                    "unterminated string value for field {:?}: missing closing '\"' before the \
                     end of the line",
                    field()
                ),
            ));
        };
        let after = q.close + 1;
        if after < end && input[after] != b',' && input[after] != b' ' {
            return Err(Fail::at(
                after,
                format!(
                    "expected ',' or ' ' after the string value of field {:?}",
                    field()
                ),
            ));
        }
        let raw = &input[open + 1..q.close];
        let text = std::str::from_utf8(raw).map_err(|e| {
            Fail::at(
                open + 1 + e.valid_up_to(),
                format!("invalid UTF-8 in string value of field {:?}", field()),
            )
        })?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let value = if q.escaped {
            scratch.clear();
            lp_value::unescape_string(text, &mut scratch);
            scratch.as_str()
        } else {
            text
        };
        let result = if value.len() > MAX_STRING_LEN {
            Err(Fail::at(
                open,
                format!(
                    "string value of field {:?} is {} bytes long; the limit is {MAX_STRING_LEN} bytes",
                    field(),
                    value.len()
                ),
            ))
        } else {
            self.store(table, key, key_end, Value::String(value))
        };
        self.scratch = scratch;
        result.map(|()| after)
    }

    /// Stores a value of the field `input[key..key_end]` in the current row.
    #[inline]
    fn store(
        &mut self,
        table: usize,
        key: usize,
        key_end: usize,
        value: Value<'_>,
    ) -> Result<(), Fail> {
        let raw = &self.input[key..key_end];
        let idx = match self.tables[table].find_column(raw) {
            Some(idx) => idx,
            None => self.new_column(table, key, key_end, value.field_type())?,
        };
        let line = self.line;
        self.tables[table]
            .set(idx, value)
            .map_err(|c| conflict(key, line, &c))
    }

    /// Creates the column for the field `input[key..key_end]`.
    fn new_column(
        &mut self,
        table: usize,
        key: usize,
        key_end: usize,
        ty: FieldType,
    ) -> Result<usize, Fail> {
        let input = self.input;
        let name = lp_scan::name(input, key, key_end, NameKind::FieldKey)?;
        if name == "time" {
            return Err(Fail::at(key, "field key \"time\" is reserved"));
        }
        self.charge(self.tables[table].rows())?;
        let line = self.line;
        Ok(self.tables[table].add_column(&input[key..key_end], name, ty, line))
    }

    /// Parses the optional timestamp after the field set ending at `from`.
    fn parse_time(&self, from: usize, end: usize) -> Result<i64, Fail> {
        let input = self.input;
        let start = lp_scan::skip_spaces(input, from, end);
        if start == end {
            return Ok(self.opts.default_time);
        }
        let stop = lp_scan::word_end(input, start, end);
        let token = &input[start..stop];
        let trailing = lp_scan::skip_spaces(input, stop, end);
        if trailing != end {
            return Err(Fail::at(
                trailing,
                format!(
                    "unexpected text {} after the timestamp: expected the end of the line",
                    lp_scan::show(&input[trailing..end])
                ),
            ));
        }
        let precision = self.opts.precision;
        let value = lp_value::timestamp(token).map_err(|bad| match bad {
            BadTime::Syntax => Fail::at(start, format!(
                "invalid timestamp {}: expected an integer number of {precision} since the Unix epoch",
                lp_scan::show(token)
            )),
            BadTime::Range => out_of_range_time(start, token, precision),
        })?;
        precision
            .to_nanos(value)
            .ok_or_else(|| out_of_range_time(start, token, precision))
    }

    /// Counts `n` more column slots against the payload's budget.
    fn charge(&mut self, n: usize) -> Result<(), Fail> {
        self.slots = self.slots.saturating_add(n);
        if self.slots > self.slot_budget {
            return Err(Fail::at(
                self.line_start,
                format!(
                    "payload too sparse: more than {} column slots (rows × distinct fields per \
                 measurement) for {} bytes of input; send fewer distinct field names per \
                 measurement or split the write",
                    self.slot_budget,
                    self.input.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Checks the tag value `input[start..value_end]` for emptiness and a stray `=`.
fn check_tag_value(
    input: &[u8],
    key: &str,
    start: usize,
    value_end: usize,
    end: usize,
) -> Result<(), Fail> {
    if value_end == start {
        return Err(Fail::at(
            start,
            format!("empty value for tag {key:?}: omit the tag instead"),
        ));
    }
    if value_end < end && input[value_end] == b'=' {
        return Err(Fail::at(
            value_end,
            format!("unescaped '=' in the value of tag {key:?}: write it as \\="),
        ));
    }
    Ok(())
}

/// Checks that a field key `input[start..key_end]` is non-empty and followed by `=`.
fn check_field_key(input: &[u8], start: usize, key_end: usize, end: usize) -> Result<(), Fail> {
    if key_end == start {
        return Err(Fail::at(start, "empty field key: expected key=value"));
    }
    if key_end == end || input[key_end] != b'=' {
        let key = lp_scan::lossy_name(&input[start..key_end], NameKind::FieldKey);
        return Err(Fail::at(
            key_end,
            format!("missing '=' after field key {key:?}: expected key=value"),
        ));
    }
    Ok(())
}

/// The error for a line without a field set; `key` is the raw measurement and tag set.
fn missing_fields(pos: usize, key: &[u8]) -> Fail {
    let hint = if key.windows(2).any(|w| w == b"\\ ") {
        " (a backslash before a space escapes it)"
    } else {
        ""
    };
    Fail::at(
        pos,
        format!(
            "missing field set: expected at least one field such as value=1 after the measurement \
         and tags{hint}"
        ),
    )
}

/// The error for a field whose type differs from its column's.
fn conflict(pos: usize, line: usize, c: &TypeConflict) -> Fail {
    Fail::at(
        pos,
        format!(
            "field {:?} is {} on line {line} but {} on line {} of this payload: a field must keep \
         one type",
            c.field, c.found, c.existing, c.first_line
        ),
    )
}

/// The error for a timestamp outside the accepted range.
fn out_of_range_time(pos: usize, token: &[u8], precision: Precision) -> Fail {
    Fail::at(
        pos,
        format!(
            "timestamp {} is out of range at precision {precision}: it must be within \
         {MIN_TIMESTAMP_NS}..={MAX_TIMESTAMP_NS} nanoseconds after scaling",
            lp_scan::show(token)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_names() {
        for (s, p) in [
            ("ns", Precision::Nanoseconds),
            ("n", Precision::Nanoseconds),
            ("us", Precision::Microseconds),
            ("u", Precision::Microseconds),
            ("µs", Precision::Microseconds),
            ("ms", Precision::Milliseconds),
            ("s", Precision::Seconds),
            ("m", Precision::Minutes),
            ("h", Precision::Hours),
        ] {
            assert_eq!(s.parse::<Precision>(), Ok(p));
        }
        assert!(Precision::parse_param("x").is_err());
        assert_eq!(Precision::Seconds.to_nanos(2), Some(2_000_000_000));
        assert_eq!(Precision::Seconds.to_nanos(i64::MAX / 10), None);
        assert_eq!(Precision::Nanoseconds.to_nanos(i64::MAX), None);
        assert_eq!(
            Precision::Nanoseconds.to_nanos(MAX_TIMESTAMP_NS),
            Some(MAX_TIMESTAMP_NS)
        );
        assert_eq!(Precision::Hours.to_nanos(-1), Some(-3_600_000_000_000));
    }

    #[test]
    fn default_options() {
        let o = ParseOptions::default();
        assert_eq!(o.device_tags, vec!["device".to_owned(), "name".to_owned()]);
        assert!(o.default_time > 1_600_000_000_000_000_000);
    }
}
