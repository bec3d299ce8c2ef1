//! InfluxDB line protocol parser (contract stub, being implemented).

use strata_storage::WriteBatch;

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
pub fn parse(_input: &[u8], _database: &str, _opts: &ParseOptions) -> Result<WriteBatch, ParseError> {
    todo!()
}
