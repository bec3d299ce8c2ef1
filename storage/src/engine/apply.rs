//! The lower half of the write path: validate a batch (names, reserved names, shape), plan its
//! catalog additions and check the database's limits without changing anything, append it to the
//! WAL, then commit the additions and apply the rows to the memtable under the same lock. Used by
//! user writes (`write.rs`, which adds backpressure and flush triggers), by the engine's own writes
//! (rollup rows) and by WAL replay.

use std::collections::{HashMap, HashSet};

use super::{EngineConfig, Inner, State};
use crate::catalog::{Catalog, StreamId};
use crate::error::{Result, StorageError};
use crate::limits::{Limit, LimitState, Limits};
use crate::{ColumnData, FieldType, SeriesId, SeriesKey, TableWrite, WriteBatch, wal_record};

/// Longest database, stream, field, tag or device name accepted.
pub(crate) const MAX_NAME_LEN: usize = 256;

/// Database names reserved for system schemas of the SQL layer.
const RESERVED_DATABASES: [&str; 3] = ["registry", "information_schema", "system"];

/// Stream names reserved for the registry's SQL tables and table functions.
const RESERVED_STREAMS: [&str; 8] = [
    "devices",
    "entities",
    "device_entities",
    "alerts",
    "twins",
    "rules",
    "last_values",
    "time_buckets",
];

/// Catalog ids for one table of a batch.
pub(super) struct TablePlan {
    stream: StreamId,
    series: Vec<SeriesId>,
    fields: Vec<usize>,
}

/// Catalog entries a batch adds, in id order per kind (streams, then each stream's fields, then
/// series), so committing them after the WAL append yields exactly the planned ids.
#[derive(Default)]
struct Additions {
    database: String,
    streams: Vec<String>,
    fields: Vec<(StreamId, String, FieldType)>,
    series: Vec<(StreamId, SeriesKey)>,
    /// (stream, tag key) for every tag value new to its stream.
    tag_values: Vec<(StreamId, String)>,
}

impl Additions {
    fn is_empty(&self) -> bool {
        self.streams.is_empty() && self.fields.is_empty() && self.series.is_empty()
    }
}

/// A write of the engine itself (rollup rows, `rollups.rs`): reserved names allowed, no
/// limits, no backpressure wait and no flush trigger (it may run inside a flush); durable under
/// the configured mode when it returns.
pub(super) fn write_internal(inner: &Inner, batch: &WriteBatch) -> Result<()> {
    // No shutdown check: the final flush of a shutdown absorbs rollups through here.
    validate(batch)?;
    if batch.rows() == 0 {
        return Ok(());
    }
    let (seq, _) = append(inner, batch, Limited::No)?;
    inner.wal.sync_to(seq)?;
    Ok(())
}

/// Whether [`append`] checks the database's limits (user writes) or not (the engine's own writes
/// and replay: what was acknowledged is restored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limited {
    Yes,
    No,
}

/// Under the state lock: plans the catalog additions (checking limits when `limited`), appends the
/// batch to the WAL, then commits the additions and applies the rows to the active memtable.
/// Returns the WAL sequence number to wait for and the active memtable's size. Not durable yet.
pub(super) fn append(inner: &Inner, batch: &WriteBatch, limited: Limited) -> Result<(u64, usize)> {
    let payload = wal_record::encode(batch);
    let mut guard = inner.write_state()?;
    let state = &mut *guard;
    let limits = match limited {
        Limited::Yes => limits_of(inner, state, &batch.database),
        Limited::No => Limits::UNLIMITED,
    };
    let (plans, additions) = plan(&state.catalog, &mut state.limits, &limits, batch)?;
    let seq = inner.wal.append(&payload)?;
    commit(state, additions);
    apply(state, batch, &plans);
    Ok((seq, state.active.bytes()))
}

/// Applies a replayed WAL record (already durable) to catalog and memtable. Limits and reserved
/// names are not checked: what was acknowledged is restored.
pub(super) fn replay(state: &mut State, batch: &WriteBatch) -> Result<()> {
    validate(batch)?;
    let (plans, additions) = plan(&state.catalog, &mut state.limits, &Limits::UNLIMITED, batch)?;
    commit(state, additions);
    apply(state, batch, &plans);
    Ok(())
}

/// The limits in force for `database`: a runtime override, else the configured per-database
/// entry, else the configured default.
pub(super) fn limits_of(inner: &Inner, state: &State, database: &str) -> Limits {
    state
        .limits
        .override_for(database)
        .unwrap_or_else(|| configured_limits(&inner.config, database))
}

/// The limits the configuration gives `database`.
pub(super) fn configured_limits(config: &EngineConfig, database: &str) -> Limits {
    config
        .database_limits
        .get(database)
        .copied()
        .unwrap_or(config.limits)
}

fn apply(state: &mut State, batch: &WriteBatch, plans: &[TablePlan]) {
    for (table, plan) in batch.tables.iter().zip(plans) {
        state
            .active
            .apply(plan.stream, table, &plan.series, &plan.fields);
        state.last.apply(table, &plan.series, &plan.fields);
        if !state.rollups.is_empty() {
            let meta = state.catalog.stream(plan.stream);
            state
                .rollups
                .mark(&meta.database, &meta.name, table, &plan.series);
        }
    }
}

/// Adds the planned streams, fields and series to the catalog (after the WAL append succeeded).
fn commit(state: &mut State, additions: Additions) {
    if additions.is_empty() {
        return;
    }
    let catalog = &mut state.catalog;
    for name in &additions.streams {
        catalog.ensure_stream(&additions.database, name);
    }
    for (stream, name, ty) in &additions.fields {
        catalog.ensure_field(*stream, name, *ty);
    }
    for (stream, key) in &additions.series {
        catalog.ensure_series(*stream, key);
    }
    for (stream, key) in &additions.tag_values {
        state.limits.added_tag_value(*stream, key);
    }
    state.catalog_version += 1;
}

/// Plans a batch against the catalog without changing it: the ids every table, field and series
/// will have, the catalog entries to add, and the checks of field types and `limits`.
fn plan(
    catalog: &Catalog,
    counts: &mut LimitState,
    limits: &Limits,
    batch: &WriteBatch,
) -> Result<(Vec<TablePlan>, Additions)> {
    let mut planner = Planner {
        catalog,
        counts,
        limits,
        database: &batch.database,
        adds: Additions {
            database: batch.database.clone(),
            ..Additions::default()
        },
        new_streams: HashMap::new(),
        new_fields: HashMap::new(),
        new_field_count: HashMap::new(),
        new_series: HashMap::new(),
        new_series_count: HashMap::new(),
        new_tag_values: HashSet::new(),
        new_tag_count: HashMap::new(),
        database_series: None,
        database_fields: None,
    };
    let plans = batch
        .tables
        .iter()
        .map(|t| planner.table(t))
        .collect::<Result<Vec<_>>>()?;
    Ok((plans, planner.adds))
}

struct Planner<'a> {
    catalog: &'a Catalog,
    counts: &'a mut LimitState,
    limits: &'a Limits,
    database: &'a str,
    adds: Additions,
    new_streams: HashMap<String, StreamId>,
    new_fields: HashMap<(StreamId, String), (usize, FieldType)>,
    new_field_count: HashMap<StreamId, usize>,
    new_series: HashMap<(StreamId, SeriesKey), SeriesId>,
    new_series_count: HashMap<StreamId, usize>,
    new_tag_values: HashSet<(StreamId, String, String)>,
    new_tag_count: HashMap<(StreamId, String), usize>,
    /// Series the database holds now (counted at the first new series of the batch).
    database_series: Option<usize>,
    /// Fields the database holds now (counted at the first new field of the batch).
    database_fields: Option<usize>,
}

impl<'a> Planner<'a> {
    fn table(&mut self, t: &TableWrite) -> Result<TablePlan> {
        self.check_strings(t)?;
        let stream = self.stream(&t.stream)?;
        let fields = t
            .columns
            .iter()
            .map(|c| self.field(stream, &t.stream, &c.name, c.data.field_type()))
            .collect::<Result<Vec<_>>>()?;
        let series = t
            .series
            .iter()
            .map(|k| self.series(stream, &t.stream, k))
            .collect::<Result<Vec<_>>>()?;
        Ok(TablePlan {
            stream,
            series,
            fields,
        })
    }

    /// The stream's catalog entry when it exists already (not planned by this batch).
    fn existing(&self, stream: StreamId) -> Option<crate::catalog::StreamView<'a>> {
        let catalog: &'a Catalog = self.catalog;
        ((stream as usize) < catalog.streams.len()).then(|| catalog.stream(stream))
    }

    fn stream(&mut self, name: &str) -> Result<StreamId> {
        if let Some(id) = self.catalog.stream_id(self.database, name) {
            return Ok(id);
        }
        if let Some(&id) = self.new_streams.get(name) {
            return Ok(id);
        }
        if self.limits.max_streams_per_database != usize::MAX {
            let have = self.database_streams().count();
            let new = self.adds.streams.len();
            if have + new + 1 > self.limits.max_streams_per_database {
                return Err(self.exceeded(
                    Limit::StreamsPerDatabase,
                    name,
                    format!(
                        "the database has {have} streams and the write adds {} more, including '{name}'",
                        new + 1
                    ),
                ));
            }
        }
        let id = (self.catalog.streams.len() + self.adds.streams.len()) as StreamId;
        self.adds.streams.push(name.to_string());
        self.new_streams.insert(name.to_string(), id);
        Ok(id)
    }

    /// The streams the catalog holds in this batch's database.
    fn database_streams(
        &self,
    ) -> impl Iterator<Item = &'a crate::catalog::StreamMeta> + use<'a, '_> {
        let catalog: &'a Catalog = self.catalog;
        let database = self.database;
        catalog
            .streams
            .iter()
            .filter(move |s| s.database == database)
    }

    /// Refuses a new field past the database's field limit (fields of all its streams).
    fn check_database_fields(&mut self, sname: &str, name: &str) -> Result<()> {
        if self.limits.max_fields_per_database == usize::MAX {
            return Ok(());
        }
        let have = match self.database_fields {
            Some(n) => n,
            None => {
                let n = self.database_streams().map(|s| s.fields.len()).sum();
                *self.database_fields.insert(n)
            }
        };
        let new = self.adds.fields.len();
        if have + new + 1 > self.limits.max_fields_per_database {
            return Err(self.exceeded(
                Limit::FieldsPerDatabase,
                sname,
                format!(
                    "the database has {have} fields over its streams and the write adds {} more, including '{name}'",
                    new + 1
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a new series past the database's series limit.
    fn check_database_series(&mut self, sname: &str, device: &str) -> Result<()> {
        if self.limits.max_series_per_database == usize::MAX {
            return Ok(());
        }
        let have = match self.database_series {
            Some(n) => n,
            None => {
                let n = self
                    .database_streams()
                    .map(|s| s.all_series.len() as usize)
                    .sum();
                *self.database_series.insert(n)
            }
        };
        let new = self.adds.series.len();
        if have + new + 1 > self.limits.max_series_per_database {
            return Err(self.exceeded(
                Limit::SeriesPerDatabase,
                sname,
                format!(
                    "the database has {have} series and the write adds {} more, including device '{device}'",
                    new + 1
                ),
            ));
        }
        Ok(())
    }

    fn field(&mut self, stream: StreamId, sname: &str, name: &str, ty: FieldType) -> Result<usize> {
        let existing = self.existing(stream);
        if let Some(fid) = existing.and_then(|m| m.field_id(name)) {
            self.catalog.check_field(stream, name, ty)?;
            return Ok(fid);
        }
        let key = (stream, name.to_string());
        if let Some(&(fid, prev)) = self.new_fields.get(&key) {
            if prev != ty {
                return Err(StorageError::SchemaConflict {
                    database: self.database.to_string(),
                    stream: sname.to_string(),
                    field: name.to_string(),
                    existing: prev,
                    requested: ty,
                });
            }
            return Ok(fid);
        }
        let have = existing.map_or(0, |m| m.fields.len());
        let new = self.new_field_count.get(&stream).copied().unwrap_or(0);
        if have + new + 1 > self.limits.max_fields_per_stream {
            return Err(self.exceeded(
                Limit::FieldsPerStream,
                sname,
                format!(
                    "the stream has {have} fields and the write adds {} more, including '{name}'",
                    new + 1
                ),
            ));
        }
        self.check_database_fields(sname, name)?;
        let fid = have + new;
        self.new_field_count.insert(stream, new + 1);
        self.new_fields.insert(key, (fid, ty));
        self.adds.fields.push((stream, name.to_string(), ty));
        Ok(fid)
    }

    fn series(&mut self, stream: StreamId, sname: &str, key: &SeriesKey) -> Result<SeriesId> {
        let existing = self.existing(stream);
        if let Some(id) = existing.and_then(|m| m.series_id(key)) {
            return Ok(id);
        }
        let map_key = (stream, key.clone());
        if let Some(&id) = self.new_series.get(&map_key) {
            return Ok(id);
        }
        let have = existing.map_or(0, |m| m.all_series.len() as usize);
        let new = self.new_series_count.get(&stream).copied().unwrap_or(0);
        if have + new + 1 > self.limits.max_series_per_stream {
            return Err(self.exceeded(
                Limit::SeriesPerStream,
                sname,
                format!(
                    "the stream has {have} series and the write adds {} more, including device '{}'",
                    new + 1,
                    key.device
                ),
            ));
        }
        self.check_database_series(sname, &key.device)?;
        self.tag_values(stream, sname, key)?;
        let id = (self.catalog.series.len() + self.adds.series.len()) as SeriesId;
        self.new_series_count.insert(stream, new + 1);
        self.new_series.insert(map_key, id);
        self.adds.series.push((stream, key.clone()));
        Ok(id)
    }

    /// Checks and records the tag values of a new series that are new to the stream.
    fn tag_values(&mut self, stream: StreamId, sname: &str, key: &SeriesKey) -> Result<()> {
        let limited = self.limits.max_values_per_tag != usize::MAX;
        for (k, v) in &key.tags {
            let known = self.existing(stream).is_some_and(|m| m.has_tag_value(k, v));
            let triple = (stream, k.clone(), v.clone());
            if known || self.new_tag_values.contains(&triple) {
                continue;
            }
            let new = self
                .new_tag_count
                .get(&(stream, k.clone()))
                .copied()
                .unwrap_or(0);
            if limited {
                let have = self.counts.tag_values(self.catalog, stream, k);
                if have + new + 1 > self.limits.max_values_per_tag {
                    return Err(self.exceeded(
                        Limit::ValuesPerTag,
                        sname,
                        format!(
                            "tag '{k}' has {have} distinct values and the write adds {} more, including {v:?}",
                            new + 1
                        ),
                    ));
                }
            }
            self.new_tag_count.insert((stream, k.clone()), new + 1);
            self.new_tag_values.insert(triple);
            self.adds.tag_values.push((stream, k.clone()));
        }
        Ok(())
    }

    fn check_strings(&self, t: &TableWrite) -> Result<()> {
        let max = self.limits.max_string_bytes;
        if max == usize::MAX {
            return Ok(());
        }
        for c in &t.columns {
            let ColumnData::String(s) = &c.data else {
                continue;
            };
            if let Some(len) = string_lengths(&s.ends).find(|&len| len > max) {
                return Err(self.exceeded(
                    Limit::StringBytes,
                    &t.stream,
                    format!("a value of field '{}' has {len} bytes", c.name),
                ));
            }
        }
        Ok(())
    }

    fn exceeded(&self, limit: Limit, stream: &str, detail: String) -> StorageError {
        StorageError::LimitExceeded {
            limit,
            value: self.limits.get(limit),
            database: self.database.to_string(),
            stream: stream.to_string(),
            detail,
        }
    }
}

/// Lengths of the values of a string column from its end offsets.
fn string_lengths(ends: &[u32]) -> impl Iterator<Item = usize> + '_ {
    let mut start = 0u32;
    ends.iter().map(move |&end| {
        let len = end.saturating_sub(start) as usize;
        start = end;
        len
    })
}

fn invalid(msg: String) -> StorageError {
    StorageError::InvalidInput(msg)
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    let printable_ascii = name.bytes().all(|b| (0x20..0x7f).contains(&b));
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || (!printable_ascii && name.chars().any(char::is_control))
    {
        return Err(invalid(format!(
            "{kind} name {name:?} must be 1 to {MAX_NAME_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

/// Refuses names reserved for the SQL layer's system schemas and the registry's tables, so that
/// stored data can never shadow them. Checked for new writes only (not WAL replay).
pub(super) fn check_reserved(batch: &WriteBatch) -> Result<()> {
    let db = batch.database.to_ascii_lowercase();
    if RESERVED_DATABASES.contains(&db.as_str()) {
        return Err(invalid(format!(
            "database name '{}' is reserved for the system's SQL schema; choose another database name",
            batch.database
        )));
    }
    for t in &batch.tables {
        let stream = t.stream.to_ascii_lowercase();
        if RESERVED_STREAMS.contains(&stream.as_str()) {
            return Err(invalid(format!(
                "stream name '{}' is reserved for the registry's SQL table or function of that name; choose another stream name",
                t.stream
            )));
        }
        if crate::rollup::is_reserved_rollup_name(&t.stream) {
            return Err(invalid(format!(
                "stream name '{}' is reserved: names starting with '{}' hold rollups, which the engine maintains itself; choose another stream name",
                t.stream,
                crate::rollup::ROLLUP_PREFIX
            )));
        }
    }
    Ok(())
}

/// Structural checks: names, ragged columns, series indexes.
pub(super) fn validate(batch: &WriteBatch) -> Result<()> {
    check_name("database", &batch.database)?;
    batch.tables.iter().try_for_each(validate_table)
}

fn validate_table(t: &TableWrite) -> Result<()> {
    check_name("stream", &t.stream)?;
    let rows = t.times.len();
    if t.row_series.len() != rows {
        return Err(invalid(format!(
            "stream '{}': {} series indexes for {rows} rows",
            t.stream,
            t.row_series.len()
        )));
    }
    if let Some(bad) = t.row_series.iter().find(|&&s| s as usize >= t.series.len()) {
        return Err(invalid(format!(
            "stream '{}': row refers to series {bad} of {}",
            t.stream,
            t.series.len()
        )));
    }
    for key in &t.series {
        if key.device.len() > MAX_NAME_LEN {
            return Err(invalid(format!(
                "device id longer than {MAX_NAME_LEN} bytes"
            )));
        }
        for (k, v) in &key.tags {
            check_name("tag", k)?;
            if v.len() > MAX_NAME_LEN * 4 {
                return Err(invalid(format!(
                    "value of tag '{k}' is longer than {} bytes",
                    MAX_NAME_LEN * 4
                )));
            }
        }
    }
    let mut names = HashSet::new();
    for c in &t.columns {
        check_name("field", &c.name)?;
        if !names.insert(c.name.as_str()) {
            return Err(invalid(format!(
                "stream '{}': field '{}' appears twice",
                t.stream, c.name
            )));
        }
        if c.valid.len() != rows || c.data.len() != rows {
            return Err(invalid(format!(
                "stream '{}': field '{}' has {} values for {rows} rows",
                t.stream,
                c.name,
                c.data.len()
            )));
        }
    }
    Ok(())
}
