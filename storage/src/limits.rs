//! Per-database write limits (streams and series per database; series, fields and tag values per
//! stream; bytes per string value),
//! the names they carry in errors, and the per-stream tag-value counts the write path checks them
//! against. The write path (`engine/write.rs`) enforces them for the whole batch before anything is
//! logged; WAL replay never does (what was acknowledged is restored whatever the limits are now).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::catalog::{Catalog, StreamId};

/// Limits for one database. [`Limits::default`] fits a fleet of 100,000 devices with room to
/// spare and stops a client that invents series, fields or tag values without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Streams per database. Default 1,000: a database holds a stream per kind of measurement, tens
    /// in practice; without a bound, per-stream limits could be multiplied by inventing streams.
    #[serde(default = "default_streams_per_database")]
    pub max_streams_per_database: usize,
    /// Distinct series over all streams of a database. Default 1,000,000: ten series per device of
    /// a 100,000-device fleet. A new series costs about 1 KiB of server memory (catalog, indexes,
    /// last-value cache, memtable buffer; `benches/memory/RESULTS.md`), so this bounds what a
    /// client inventing devices or tag values can take.
    #[serde(default = "default_series_per_database")]
    pub max_series_per_database: usize,
    /// Distinct fields over all streams of a database. Default 50,000: a thousand streams of fifty
    /// fields, or a hundred device models of five hundred; a client inventing field names across
    /// streams is refused here.
    #[serde(default = "default_fields_per_database")]
    pub max_fields_per_database: usize,
    /// Distinct series (device + tag set) per stream. Default 1,000,000.
    pub max_series_per_stream: usize,
    /// Distinct fields per stream. Default 1,000: real device models have tens to a few hundred.
    pub max_fields_per_stream: usize,
    /// Distinct values of one tag key per stream (the device id is bounded by the series limit
    /// instead). Default 100,000: one value per device of a 100,000-device fleet.
    pub max_values_per_tag: usize,
    /// Bytes of one string field value. Default 64 KiB: telemetry strings are short; larger blobs
    /// belong in object storage.
    pub max_string_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_streams_per_database: default_streams_per_database(),
            max_series_per_database: default_series_per_database(),
            max_fields_per_database: default_fields_per_database(),
            max_series_per_stream: 1_000_000,
            max_fields_per_stream: 1_000,
            max_values_per_tag: 100_000,
            max_string_bytes: 64 << 10,
        }
    }
}

fn default_streams_per_database() -> usize {
    1_000
}

fn default_series_per_database() -> usize {
    1_000_000
}

fn default_fields_per_database() -> usize {
    50_000
}

impl Limits {
    /// No limit at all (used for WAL replay).
    pub const UNLIMITED: Limits = Limits {
        max_streams_per_database: usize::MAX,
        max_series_per_database: usize::MAX,
        max_fields_per_database: usize::MAX,
        max_series_per_stream: usize::MAX,
        max_fields_per_stream: usize::MAX,
        max_values_per_tag: usize::MAX,
        max_string_bytes: usize::MAX,
    };

    /// The value of one limit.
    pub fn get(&self, limit: Limit) -> usize {
        match limit {
            Limit::StreamsPerDatabase => self.max_streams_per_database,
            Limit::SeriesPerDatabase => self.max_series_per_database,
            Limit::FieldsPerDatabase => self.max_fields_per_database,
            Limit::SeriesPerStream => self.max_series_per_stream,
            Limit::FieldsPerStream => self.max_fields_per_stream,
            Limit::ValuesPerTag => self.max_values_per_tag,
            Limit::StringBytes => self.max_string_bytes,
        }
    }
}

/// Which limit a write exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// [`Limits::max_streams_per_database`].
    StreamsPerDatabase,
    /// [`Limits::max_series_per_database`].
    SeriesPerDatabase,
    /// [`Limits::max_fields_per_database`].
    FieldsPerDatabase,
    /// [`Limits::max_series_per_stream`].
    SeriesPerStream,
    /// [`Limits::max_fields_per_stream`].
    FieldsPerStream,
    /// [`Limits::max_values_per_tag`].
    ValuesPerTag,
    /// [`Limits::max_string_bytes`].
    StringBytes,
}

impl Limit {
    /// The limit's configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Limit::StreamsPerDatabase => "max_streams_per_database",
            Limit::SeriesPerDatabase => "max_series_per_database",
            Limit::FieldsPerDatabase => "max_fields_per_database",
            Limit::SeriesPerStream => "max_series_per_stream",
            Limit::FieldsPerStream => "max_fields_per_stream",
            Limit::ValuesPerTag => "max_values_per_tag",
            Limit::StringBytes => "max_string_bytes",
        }
    }

    /// What a client or operator can do about it.
    pub fn advice(self) -> &'static str {
        match self {
            Limit::StreamsPerDatabase => {
                "write to the existing streams (one stream per kind of measurement, not per device or per day), or ask an operator to raise the limit for this database"
            }
            Limit::SeriesPerDatabase | Limit::SeriesPerStream => {
                "put unbounded identifiers (request ids, timestamps) in fields, not tags, or ask an operator to raise the limit for this database"
            }
            Limit::FieldsPerStream | Limit::FieldsPerDatabase => {
                "use a fixed set of field names (put varying names in a tag or a separate stream), or ask an operator to raise the limit for this database"
            }
            Limit::ValuesPerTag => {
                "put unbounded values (ids, counters, free text) in fields, not tags, or ask an operator to raise the limit for this database"
            }
            Limit::StringBytes => {
                "shorten the value or store large payloads outside the database, or ask an operator to raise the limit for this database"
            }
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Runtime limit state kept with the catalog: per-database overrides set through
/// `Engine::set_limits`, and per-stream counts of distinct values per tag key (built from the
/// catalog the first time a stream is checked, then kept up to date by the write path).
#[derive(Debug, Default)]
pub(crate) struct LimitState {
    overrides: BTreeMap<String, Limits>,
    tag_values: HashMap<StreamId, HashMap<String, usize>>,
}

impl LimitState {
    /// The runtime override for `database`, if one was set.
    pub fn override_for(&self, database: &str) -> Option<Limits> {
        self.overrides.get(database).copied()
    }

    pub fn set_override(&mut self, database: &str, limits: Limits) {
        self.overrides.insert(database.to_string(), limits);
    }

    /// Distinct values of tag `key` in `stream` as the catalog holds them now.
    pub fn tag_values(&mut self, catalog: &Catalog, stream: StreamId, key: &str) -> usize {
        self.counts(catalog, stream).get(key).copied().unwrap_or(0)
    }

    /// Records a value of `key` new to `stream` (already added to the catalog). Streams whose
    /// counts were never built are left alone: they are built from the catalog when needed.
    pub fn added_tag_value(&mut self, stream: StreamId, key: &str) {
        if let Some(counts) = self.tag_values.get_mut(&stream) {
            *counts.entry(key.to_string()).or_insert(0) += 1;
        }
    }

    fn counts(&mut self, catalog: &Catalog, stream: StreamId) -> &HashMap<String, usize> {
        self.tag_values.entry(stream).or_insert_with(|| {
            if (stream as usize) < catalog.streams.len() {
                catalog.stream(stream).tag_value_counts()
            } else {
                HashMap::new()
            }
        })
    }
}
