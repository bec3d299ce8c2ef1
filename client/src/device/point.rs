//! Telemetry points and their line-protocol encoding (what the device SDK publishes on
//! `devices/{id}/telemetry`). The measurement names the stream; every point carries a nanosecond
//! timestamp (the SDK stamps points without one when they are published), so a message sent twice
//! after a reconnect overwrites itself instead of adding rows.

use std::fmt::Write as _;

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A float (`1.5`).
    Float(f64),
    /// A signed integer (`3i`).
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}
impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Int(v)
    }
}
impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Bool(v)
    }
}
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Str(v.to_owned())
    }
}

/// One telemetry point: a stream (measurement), tags, fields and an optional timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The stream the point is stored in.
    pub stream: String,
    /// Tags (the server adds `device`).
    pub tags: Vec<(String, String)>,
    /// Fields (at least one).
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since the epoch; `None`: the time of [`crate::device::Device::publish`].
    pub ts_ns: Option<i64>,
}

impl Point {
    /// A point of `stream` with no tags or fields yet.
    pub fn new(stream: &str) -> Point {
        Point {
            stream: stream.to_owned(),
            tags: Vec::new(),
            fields: Vec::new(),
            ts_ns: None,
        }
    }

    /// Adds a tag.
    pub fn tag(mut self, key: &str, value: &str) -> Point {
        self.tags.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds a field.
    pub fn field(mut self, key: &str, value: impl Into<FieldValue>) -> Point {
        self.fields.push((key.to_owned(), value.into()));
        self
    }

    /// Sets the timestamp (ns since the epoch).
    pub fn at(mut self, ts_ns: i64) -> Point {
        self.ts_ns = Some(ts_ns);
        self
    }

    /// Appends the point as one line of line protocol (with `default_ts` when it has none).
    pub fn write_line(&self, out: &mut String, default_ts: i64) {
        escape(out, &self.stream, b" ,");
        for (k, v) in &self.tags {
            out.push(',');
            escape(out, k, b" ,=");
            out.push('=');
            escape(out, v, b" ,=");
        }
        for (i, (k, v)) in self.fields.iter().enumerate() {
            out.push(if i == 0 { ' ' } else { ',' });
            escape(out, k, b" ,=");
            out.push('=');
            write_value(out, v);
        }
        let _ = writeln!(out, " {}", self.ts_ns.unwrap_or(default_ts));
    }
}

fn write_value(out: &mut String, v: &FieldValue) {
    match v {
        FieldValue::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f:?}");
        }
        // Line protocol has no NaN or infinity; store them as strings rather than fail.
        FieldValue::Float(f) => {
            let _ = write!(out, "\"{f}\"");
        }
        FieldValue::Int(i) => {
            let _ = write!(out, "{i}i");
        }
        FieldValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        FieldValue::Str(s) => {
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
    }
}

fn escape(out: &mut String, s: &str, special: &[u8]) {
    for c in s.chars() {
        if c.is_ascii() && (special.contains(&(c as u8)) || c == '\\') {
            out.push('\\');
        }
        if c == '\n' {
            out.push_str("\\n");
        } else {
            out.push(c);
        }
    }
}

/// Encodes points as line protocol, one line each.
pub fn encode(points: &[Point], default_ts: i64) -> String {
    let mut out = String::new();
    for p in points {
        p.write_line(&mut out, default_ts);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_escapes_and_types() {
        let p = Point::new("env room")
            .tag("site", "a,b")
            .field("t", 21.5)
            .field("n", 3i64)
            .field("ok", true)
            .field("msg", "say \"hi\"")
            .at(7);
        assert_eq!(
            encode(&[p], 0),
            "env\\ room,site=a\\,b t=21.5,n=3i,ok=true,msg=\"say \\\"hi\\\"\" 7\n"
        );
        assert_eq!(encode(&[Point::new("m").field("v", 1.0)], 9), "m v=1.0 9\n");
    }
}
