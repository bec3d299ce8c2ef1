//! Data-model types shared by the engine and its callers: field types, columnar write batches,
//! series keys, scan requests and scan results.

use std::fmt;

/// The type of a field, fixed per (database, stream, field) by the first write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// 64-bit IEEE float.
    Float,
    /// Signed 64-bit integer.
    Integer,
    /// Unsigned 64-bit integer.
    Unsigned,
    /// Boolean.
    Boolean,
    /// UTF-8 string.
    String,
}

impl FieldType {
    /// Stable one-byte tag used in the WAL and segment formats.
    pub fn tag(self) -> u8 {
        match self {
            FieldType::Float => 1,
            FieldType::Integer => 2,
            FieldType::Unsigned => 3,
            FieldType::Boolean => 4,
            FieldType::String => 5,
        }
    }

    /// Inverse of [`FieldType::tag`].
    pub fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            1 => FieldType::Float,
            2 => FieldType::Integer,
            3 => FieldType::Unsigned,
            4 => FieldType::Boolean,
            5 => FieldType::String,
            _ => return None,
        })
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::Unsigned => "unsigned",
            FieldType::Boolean => "boolean",
            FieldType::String => "string",
        })
    }
}

/// One field value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    /// Float value.
    Float(f64),
    /// Signed integer value.
    Integer(i64),
    /// Unsigned integer value.
    Unsigned(u64),
    /// Boolean value.
    Boolean(bool),
    /// String value.
    String(String),
}

impl Value {
    /// The type of this value.
    pub fn field_type(&self) -> FieldType {
        match self {
            Value::Float(_) => FieldType::Float,
            Value::Integer(_) => FieldType::Integer,
            Value::Unsigned(_) => FieldType::Unsigned,
            Value::Boolean(_) => FieldType::Boolean,
            Value::String(_) => FieldType::String,
        }
    }
}

/// Strings stored Arrow-style: one byte buffer plus end offsets, so appending a value never allocates
/// a new `String`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StringColumn {
    /// Concatenated UTF-8 bytes of all values.
    pub data: String,
    /// `ends[i]` is the end offset in `data` of value `i`; value `i` starts at `ends[i-1]` (or 0).
    pub ends: Vec<u32>,
}

impl StringColumn {
    /// Appends one value.
    pub fn push(&mut self, s: &str) {
        self.data.push_str(s);
        self.ends.push(self.data.len() as u32);
    }

    /// Value `i`.
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Iterates over the values.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

/// The values of one column, one slot per row. Slots of rows where the column has no value hold a
/// default (0, false, "") and are marked invalid in [`Column::valid`].
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// Float values.
    Float(Vec<f64>),
    /// Signed integer values.
    Integer(Vec<i64>),
    /// Unsigned integer values.
    Unsigned(Vec<u64>),
    /// Boolean values.
    Boolean(Vec<bool>),
    /// String values.
    String(StringColumn),
}

impl ColumnData {
    /// An empty column of the given type.
    pub fn new(ty: FieldType) -> Self {
        match ty {
            FieldType::Float => ColumnData::Float(Vec::new()),
            FieldType::Integer => ColumnData::Integer(Vec::new()),
            FieldType::Unsigned => ColumnData::Unsigned(Vec::new()),
            FieldType::Boolean => ColumnData::Boolean(Vec::new()),
            FieldType::String => ColumnData::String(StringColumn::default()),
        }
    }

    /// The type of the values.
    pub fn field_type(&self) -> FieldType {
        match self {
            ColumnData::Float(_) => FieldType::Float,
            ColumnData::Integer(_) => FieldType::Integer,
            ColumnData::Unsigned(_) => FieldType::Unsigned,
            ColumnData::Boolean(_) => FieldType::Boolean,
            ColumnData::String(_) => FieldType::String,
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Float(v) => v.len(),
            ColumnData::Integer(v) => v.len(),
            ColumnData::Unsigned(v) => v.len(),
            ColumnData::Boolean(v) => v.len(),
            ColumnData::String(v) => v.len(),
        }
    }

    /// True when there are no slots.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a placeholder slot (for a row without a value).
    pub fn push_default(&mut self) {
        match self {
            ColumnData::Float(v) => v.push(0.0),
            ColumnData::Integer(v) => v.push(0),
            ColumnData::Unsigned(v) => v.push(0),
            ColumnData::Boolean(v) => v.push(false),
            ColumnData::String(v) => v.push(""),
        }
    }

    /// Appends a value; returns false (and appends nothing) when its type differs from the column's.
    pub fn push_value(&mut self, value: &Value) -> bool {
        match (self, value) {
            (ColumnData::Float(v), Value::Float(x)) => v.push(*x),
            (ColumnData::Integer(v), Value::Integer(x)) => v.push(*x),
            (ColumnData::Unsigned(v), Value::Unsigned(x)) => v.push(*x),
            (ColumnData::Boolean(v), Value::Boolean(x)) => v.push(*x),
            (ColumnData::String(v), Value::String(x)) => v.push(x),
            _ => return false,
        }
        true
    }

    /// Copies the slots `indices` of `other` (same type) onto the end of this column, in that
    /// order; a column of another type gets default slots, as [`ColumnData::push_from`].
    pub fn extend_from(&mut self, other: &ColumnData, indices: impl Iterator<Item = u32>) {
        fn pick<T: Copy>(v: &mut Vec<T>, o: &[T], indices: impl Iterator<Item = u32>) {
            v.extend(indices.map(|i| o[i as usize]));
        }
        match (self, other) {
            (ColumnData::Float(v), ColumnData::Float(o)) => pick(v, o, indices),
            (ColumnData::Integer(v), ColumnData::Integer(o)) => pick(v, o, indices),
            (ColumnData::Unsigned(v), ColumnData::Unsigned(o)) => pick(v, o, indices),
            (ColumnData::Boolean(v), ColumnData::Boolean(o)) => pick(v, o, indices),
            (ColumnData::String(v), ColumnData::String(o)) => {
                indices.for_each(|i| v.push(o.get(i as usize)));
            }
            (this, _) => indices.for_each(|_| this.push_default()),
        }
    }

    /// Copies slot `i` of `other` (same type) onto the end of this column.
    pub fn push_from(&mut self, other: &ColumnData, i: usize) {
        match (self, other) {
            (ColumnData::Float(v), ColumnData::Float(o)) => v.push(o[i]),
            (ColumnData::Integer(v), ColumnData::Integer(o)) => v.push(o[i]),
            (ColumnData::Unsigned(v), ColumnData::Unsigned(o)) => v.push(o[i]),
            (ColumnData::Boolean(v), ColumnData::Boolean(o)) => v.push(o[i]),
            (ColumnData::String(v), ColumnData::String(o)) => v.push(o.get(i)),
            (this, _) => this.push_default(),
        }
    }

    /// The slots at `order` (indices into this column), in that order.
    pub fn take(&self, order: &[u32]) -> ColumnData {
        fn pick<T: Copy>(v: &[T], order: &[u32]) -> Vec<T> {
            order.iter().map(|&i| v[i as usize]).collect()
        }
        match self {
            ColumnData::Float(v) => ColumnData::Float(pick(v, order)),
            ColumnData::Integer(v) => ColumnData::Integer(pick(v, order)),
            ColumnData::Unsigned(v) => ColumnData::Unsigned(pick(v, order)),
            ColumnData::Boolean(v) => ColumnData::Boolean(pick(v, order)),
            ColumnData::String(v) => {
                let mut out = StringColumn::default();
                order.iter().for_each(|&i| out.push(v.get(i as usize)));
                ColumnData::String(out)
            }
        }
    }

    /// A copy of the slots in `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> ColumnData {
        match self {
            ColumnData::Float(v) => ColumnData::Float(v[range].to_vec()),
            ColumnData::Integer(v) => ColumnData::Integer(v[range].to_vec()),
            ColumnData::Unsigned(v) => ColumnData::Unsigned(v[range].to_vec()),
            ColumnData::Boolean(v) => ColumnData::Boolean(v[range].to_vec()),
            ColumnData::String(v) => {
                let mut out = StringColumn::default();
                range.for_each(|i| out.push(v.get(i)));
                ColumnData::String(out)
            }
        }
    }

    /// Slot `i` as an owned value.
    pub fn value(&self, i: usize) -> Value {
        match self {
            ColumnData::Float(v) => Value::Float(v[i]),
            ColumnData::Integer(v) => Value::Integer(v[i]),
            ColumnData::Unsigned(v) => Value::Unsigned(v[i]),
            ColumnData::Boolean(v) => Value::Boolean(v[i]),
            ColumnData::String(v) => Value::String(v.get(i).to_owned()),
        }
    }
}

/// A named, typed column with a validity flag per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Field name.
    pub name: String,
    /// Values, one slot per row.
    pub data: ColumnData,
    /// `valid[i]` is true when row `i` has a value for this field.
    pub valid: Vec<bool>,
}

impl Column {
    /// Makes room for `extra` more rows: their flags and, in a fixed-width column, their values.
    pub(crate) fn reserve(&mut self, extra: usize) {
        use ColumnData as D;
        self.valid.reserve(extra);
        match &mut self.data {
            D::Float(d) => d.reserve(extra),
            D::Integer(d) => d.reserve(extra),
            D::Unsigned(d) => d.reserve(extra),
            D::Boolean(d) => d.reserve(extra),
            D::String(_) => {}
        }
    }

    /// An empty column.
    pub fn new(name: impl Into<String>, ty: FieldType) -> Self {
        Column {
            name: name.into(),
            data: ColumnData::new(ty),
            valid: Vec::new(),
        }
    }

    /// Appends an empty slot.
    pub fn push_null(&mut self) {
        self.data.push_default();
        self.valid.push(false);
    }

    /// The value at row `i`, if present.
    pub fn get(&self, i: usize) -> Option<Value> {
        self.valid[i].then(|| self.data.value(i))
    }
}

/// Identity of a series inside a stream: the device plus the remaining tags, sorted by tag name.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct SeriesKey {
    /// Device id (empty when the write named no device).
    pub device: String,
    /// Other tags, sorted by name, names unique.
    pub tags: Vec<(String, String)>,
}

/// Dense series id, unique per engine.
pub type SeriesId = u32;

/// All rows of one write for one stream, column-oriented.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableWrite {
    /// Stream (measurement) name.
    pub stream: String,
    /// Distinct series written by this batch.
    pub series: Vec<SeriesKey>,
    /// For each row, the index into `series`.
    pub row_series: Vec<u32>,
    /// For each row, the timestamp in nanoseconds since the Unix epoch.
    pub times: Vec<i64>,
    /// Field columns; each has exactly `times.len()` slots.
    pub columns: Vec<Column>,
}

impl TableWrite {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Number of present field values.
    pub fn value_count(&self) -> usize {
        self.columns
            .iter()
            .map(|c| c.valid.iter().filter(|v| **v).count())
            .sum()
    }
}

/// One write request: rows for one or more streams of one database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    /// Database (namespace) name; `default` when the client named none.
    pub database: String,
    /// Per-stream rows.
    pub tables: Vec<TableWrite>,
}

impl WriteBatch {
    /// Total number of rows.
    pub fn rows(&self) -> usize {
        self.tables.iter().map(TableWrite::len).sum()
    }
}

/// The database used when a client names none.
pub const DEFAULT_DATABASE: &str = "default";

/// What to read: one stream, a series filter, a time range and a set of fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScanRequest {
    /// Database name.
    pub database: String,
    /// Stream name.
    pub stream: String,
    /// Only series of this device, when set.
    pub device: Option<String>,
    /// Only series carrying every one of these tag values.
    pub tags: Vec<(String, String)>,
    /// Inclusive lower bound, nanoseconds.
    pub start: i64,
    /// Exclusive upper bound, nanoseconds.
    pub end: i64,
    /// Fields to return; `None` means all.
    pub fields: Option<Vec<String>>,
}

/// The rows of one series in a time range, sorted by time, one row per distinct timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesBatch {
    /// Series id.
    pub series_id: SeriesId,
    /// Series key.
    pub key: SeriesKey,
    /// Timestamps, strictly increasing.
    pub times: Vec<i64>,
    /// Requested fields that exist in the stream, in request (or schema) order.
    pub columns: Vec<Column>,
}
