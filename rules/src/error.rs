//! Errors of the rules layer: a refused rule definition (the caller's fault), an unknown rule,
//! a name already taken, a failure of the rule store, or one of its records damaged.

/// What went wrong in the rules layer.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The rule definition is invalid (bad field, bad SQL, unknown stream or column).
    #[error("{0}")]
    Invalid(String),
    /// No rule of that name.
    #[error("no rule named '{0}'")]
    NotFound(String),
    /// A rule of that name already exists.
    #[error("a rule named '{0}' already exists; use PUT /api/v1/rules/{0} to replace it")]
    Exists(String),
    /// The rule store (`rules.redb`) failed.
    #[error("rule store: {0}")]
    Store(String),
    /// A record of the rule store could not be read.
    #[error("rule store: damaged record: {0}")]
    Record(#[from] DecodeError),
}

impl RulesError {
    /// Wraps any redb error.
    pub(crate) fn db(e: impl Into<redb::Error>) -> RulesError {
        RulesError::Store(e.into().to_string())
    }
}

impl From<serde_json::Error> for RulesError {
    fn from(e: serde_json::Error) -> Self {
        RulesError::Store(format!("damaged record: {e}"))
    }
}

impl RulesError {
    /// The same error as text (`Invalid`), for reporting one failure under several rules.
    pub fn clone_invalid(&self) -> RulesError {
        RulesError::Invalid(self.to_string())
    }
}

/// Result of the rules layer.
pub type Result<T, E = RulesError> = std::result::Result<T, E>;

/// How deeply values may nest in a stored record.
pub(crate) const MAX_RECORD_DEPTH: u32 = 64;

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record is empty.
    #[error("empty record")]
    Empty,
    /// The first byte is neither a known version nor `{` (JSON).
    #[error("unknown record version {0}")]
    Version(u8),
    /// The record ends in the middle of a field.
    #[error("record truncated at byte {0}")]
    Truncated(usize),
    /// A string is not UTF-8.
    #[error("string at byte {0} is not UTF-8")]
    Utf8(usize),
    /// A tag byte names nothing.
    #[error("bad {what} tag {tag}")]
    Tag {
        /// The field.
        what: &'static str,
        /// Its value.
        tag: u8,
    },
    /// Values nested deeper than allowed.
    #[error("values nested deeper than {MAX_RECORD_DEPTH}")]
    Depth,
    /// Bytes left after the record.
    #[error("{0} bytes after the record")]
    Trailing(usize),
    /// An older JSON record that does not parse.
    #[error("JSON record: {0}")]
    Json(String),
}
