//! Rollup maintenance inside the engine (the model is in `crate::rollup`).
//!
//! - **Marking**: `write.rs` marks, under the state lock and right after the memtable apply,
//!   the (series, window) pairs of each write for every rollup of its stream (also on WAL
//!   replay, so marks lost in a crash come back with the rows that made them).
//! - **Absorbing** ([`absorb`]): under `rollup_lock`, take the marks (state lock), then for each
//!   series re-read only its dirty windows (runs of adjacent windows, one last-write-wins read
//!   each) and write the windows' rows to the rollup stream (WAL + memtable, like any write).
//!   A mark taken before the read sees every row that made it (mark and apply share the lock);
//!   a later write marks again. Absorbing runs in the background, before a query reads a rollup,
//!   and at every flush right after the memtable is frozen: a frozen memtable's raw rows are
//!   absorbed (the rollup rows written durably to the new WAL file) before the flush lets their
//!   WAL files go, so no mark is ever lost with its WAL.
//! - **Back-fill** ([`backfill_step`]): a rollup added to a stream with data walks the stream's
//!   segments from the newest time down, one partition (or one window, if longer) per step,
//!   its cursor persisted in `DATA/rollups.json`; the stream's memtable rows are marked when the
//!   rollup is configured.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Engine, Inner, ReadMode, State, apply, read};
use crate::error::{Result, StorageError};
use crate::lifecycle::RollupSpec;
use crate::rollup::{
    RollupRows, RollupRun, RollupState, RollupStatus, Taken, aggregate, is_reserved_rollup_name,
    rollup_columns, rollup_stream_name, window_start,
};
use crate::{Column, FieldType, ScanRequest, SeriesId, SeriesKey, TableWrite, WriteBatch};

/// Rollup rows buffered before one engine write.
const WRITE_CHUNK_ROWS: usize = 16_384;

/// Back-fill steps taken per background maintenance pass.
const BACKFILL_STEPS_PER_PASS: usize = 4;

/// Windows of a rollup one of its segments spans at least (see [`partition_ns_of`]).
const WINDOWS_PER_PARTITION: i64 = 64;

/// The time partition of `stream`'s segments: the engine's (`partition_ns`) for raw streams; for
/// a rollup stream of interval `every`, [`WINDOWS_PER_PARTITION`] windows rounded up to whole
/// engine partitions (1 m and 5 m: 1 day; 1 h: 3 days; 1 d: 64 days). A rollup holds one row per
/// series and window, so with the engine's partitions a month of a daily rollup would be 30
/// segments of one row per series, and a read would pay the fixed cost of a (series, segment)
/// 30 times per series; in one segment each series' month is one block. Rollup streams stay
/// hot (their policy has no `hot`), so the wider partition never delays a move.
pub(super) fn partition_ns_of(inner: &Inner, stream: &str) -> i64 {
    let p = inner.config.partition_ns.max(1);
    match crate::rollup::parse_rollup_stream_name(stream) {
        Some((_, every)) => every
            .saturating_mul(WINDOWS_PER_PARTITION)
            .saturating_add(p - 1)
            .div_euclid(p)
            .saturating_mul(p)
            .max(p),
        None => p,
    }
}

/// Shared rollup machinery of an engine: the lock serializing absorbs and back-fill steps, and
/// counters.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    lock: std::sync::Mutex<()>,
    windows: AtomicU64,
    rows: AtomicU64,
    errors: AtomicU64,
}

fn lock(inner: &Inner) -> Result<std::sync::MutexGuard<'_, ()>> {
    inner.rollup.lock.lock().map_err(|_| super::poisoned())
}

fn config_path(inner: &Inner) -> std::path::PathBuf {
    inner.config.data_dir.join("rollups.json")
}

/// Loads the persisted rollup configuration (before the WAL replay marks windows).
pub(super) fn load(data_dir: &std::path::Path) -> Result<RollupState> {
    RollupState::load(&data_dir.join("rollups.json"))
}

/// Saves the configuration when streams got their rollups on a first write.
fn save_if_needed(inner: &Inner) -> Result<()> {
    let mut state = inner.write_state()?;
    if state.rollups.unsaved {
        persist(inner, &state.rollups)?;
        state.rollups.unsaved = false;
    }
    Ok(())
}

fn persist(inner: &Inner, state: &RollupState) -> Result<()> {
    crate::fsutil::write_atomic(&config_path(inner), &state.encode())
}

/// Buffers rollup rows of one rollup stream and writes them in chunks.
struct RollupWriter<'a> {
    inner: &'a Inner,
    database: String,
    stream: String,
    fields: Vec<(String, FieldType)>,
    table: TableWrite,
    series_index: HashMap<SeriesKey, u32>,
    written: usize,
}

impl<'a> RollupWriter<'a> {
    fn new(
        inner: &'a Inner,
        database: &str,
        stream: &str,
        every: i64,
        fields: Vec<(String, FieldType)>,
    ) -> Self {
        let mut w = RollupWriter {
            inner,
            database: database.to_string(),
            stream: rollup_stream_name(stream, every),
            fields,
            table: TableWrite::default(),
            series_index: HashMap::new(),
            written: 0,
        };
        w.reset();
        w
    }

    fn reset(&mut self) {
        self.table = TableWrite {
            stream: self.stream.clone(),
            series: Vec::new(),
            row_series: Vec::new(),
            times: Vec::new(),
            columns: rollup_columns(&self.fields)
                .into_iter()
                .map(|(n, ty)| Column::new(n, ty))
                .collect(),
        };
        self.series_index.clear();
    }

    fn push(&mut self, key: &SeriesKey, rows: RollupRows) -> Result<()> {
        if rows.times.is_empty() {
            return Ok(());
        }
        let next = self.table.series.len() as u32;
        let s = *self.series_index.entry(key.clone()).or_insert(next);
        if s == next {
            self.table.series.push(key.clone());
        }
        let n = rows.times.len();
        self.table.times.extend_from_slice(&rows.times);
        self.table.row_series.extend(std::iter::repeat_n(s, n));
        for (dst, src) in self.table.columns.iter_mut().zip(&rows.columns) {
            for i in 0..n {
                dst.data.push_from(&src.data, i);
            }
            dst.valid.extend_from_slice(&src.valid);
        }
        if self.table.times.len() >= WRITE_CHUNK_ROWS {
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> Result<()> {
        if self.table.times.is_empty() {
            return Ok(());
        }
        let batch = WriteBatch {
            database: self.database.clone(),
            tables: vec![std::mem::take(&mut self.table)],
        };
        apply::write_internal(self.inner, &batch)?;
        self.written += batch.rows();
        self.reset();
        Ok(())
    }

    /// Writes what is buffered; returns the rows written in all.
    fn finish(mut self) -> Result<usize> {
        self.write()?;
        Ok(self.written)
    }
}

/// The fields of a raw stream (empty when it does not exist).
fn raw_fields(inner: &Inner, database: &str, stream: &str) -> Result<Vec<(String, FieldType)>> {
    let state = inner.read_state()?;
    Ok(state
        .catalog
        .stream_id(database, stream)
        .map(|id| state.catalog.stream(id).fields.clone())
        .unwrap_or_default())
}

/// Start of the oldest window whose raw data the stream's retention has not cut into (reads
/// of raw data stop at the retention cut, so a window starting before it would be aggregated
/// from part of its points and overwrite a whole row with a partial one); `i64::MIN` without a
/// retention. The cut moves on with the clock, so a window starting less than a minute after
/// it counts as cut too: the scan that follows computes its own, later cut.
fn first_whole_window(inner: &Inner, database: &str, stream: &str, every: i64) -> Result<i64> {
    const CLOCK_MARGIN_NS: i64 = 60_000_000_000;
    let floor = super::policy::read_floor(inner, database, stream)?;
    if floor == i64::MIN {
        return Ok(i64::MIN);
    }
    let floor = floor.saturating_add(CLOCK_MARGIN_NS);
    let start = window_start(floor, every);
    Ok(if start == floor {
        start
    } else {
        start.saturating_add(every)
    })
}

/// Maximal runs of adjacent windows, as `[start, end)` time ranges.
fn runs(windows: &BTreeSet<i64>, every: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &w in windows {
        let end = w.saturating_add(every);
        match out.last_mut() {
            Some(last) if last.1 == w => last.1 = end,
            _ => out.push((w, end)),
        }
    }
    out
}

/// Absorbs the marked windows of every rollup (of one stream when `only` is given); returns the
/// number of (series, window) pairs re-aggregated and the rows written.
pub(super) fn absorb(inner: &Inner, only: Option<(&str, &str)>) -> Result<(usize, usize)> {
    let _serial = lock(inner)?;
    let (taken, keys) = {
        let mut state = inner.write_state()?;
        let taken = state.rollups.take(only);
        let keys: HashMap<SeriesId, SeriesKey> = taken
            .iter()
            .flat_map(|t| t.dirty.keys())
            .map(|&sid| {
                (
                    sid,
                    SeriesKey::clone(&state.catalog.series[sid as usize].key),
                )
            })
            .collect();
        (taken, keys)
    };
    let (mut windows, mut rows) = (0, 0);
    let mut pending = taken.into_iter();
    while let Some(t) = pending.next() {
        match absorb_one(inner, &t, &keys) {
            Ok(n) => {
                windows += t.dirty.values().map(BTreeSet::len).sum::<usize>();
                rows += n;
                let mut state = inner.write_state()?;
                state
                    .rollups
                    .record_run(&t.database, &t.stream, t.every, None);
            }
            Err(e) => {
                inner.rollup.errors.fetch_add(1, Ordering::Relaxed);
                let mut state = inner.write_state()?;
                state
                    .rollups
                    .record_run(&t.database, &t.stream, t.every, Some(e.to_string()));
                let rest: Vec<Taken> = std::iter::once(t).chain(pending).collect();
                state.rollups.give_back(rest);
                return Err(e);
            }
        }
    }
    save_if_needed(inner)?;
    inner
        .rollup
        .windows
        .fetch_add(windows as u64, Ordering::Relaxed);
    inner.rollup.rows.fetch_add(rows as u64, Ordering::Relaxed);
    Ok((windows, rows))
}

/// Re-aggregates the dirty windows of one rollup; returns the rows written.
fn absorb_one(inner: &Inner, t: &Taken, keys: &HashMap<SeriesId, SeriesKey>) -> Result<usize> {
    let fields = raw_fields(inner, &t.database, &t.stream)?;
    let whole = first_whole_window(inner, &t.database, &t.stream, t.every)?;
    let mut out = RollupWriter::new(inner, &t.database, &t.stream, t.every, fields.clone());
    for (sid, windows) in &t.dirty {
        let key = &keys[sid];
        for (start, end) in runs(windows, t.every) {
            // A window the raw retention has cut keeps the row absorbed while it was whole.
            let start = start.max(whole);
            if start >= end {
                continue;
            }
            let req = ScanRequest {
                database: t.database.clone(),
                stream: t.stream.clone(),
                device: Some(key.device.clone()),
                tags: key.tags.clone(),
                start,
                end,
                fields: None,
            };
            for batch in read::scan(inner, &req, ReadMode::Values)? {
                if batch.series_id == *sid {
                    out.push(key, aggregate(&batch, &fields, t.every))?;
                }
            }
        }
    }
    out.finish()
}

/// One step of the first pending back-fill: the newest partition (or window) of raw data below
/// its cursor. Returns the rows written, `None` when no back-fill is pending.
pub(super) fn backfill_step(inner: &Inner) -> Result<Option<usize>> {
    let _serial = lock(inner)?;
    let job = {
        let state = inner.read_state()?;
        state.rollups.streams.iter().find_map(|(db, streams)| {
            streams.iter().find_map(|(stream, rollups)| {
                rollups.iter().find_map(|m| {
                    m.backfill_below
                        .map(|c| (db.clone(), stream.clone(), m.spec.every, c))
                })
            })
        })
    };
    let Some((db, stream, every, cursor)) = job else {
        return Ok(None);
    };
    let top = newest_below(&*inner.read_state()?, &db, &stream, cursor);
    let (next, rows) = match top {
        None => (None, 0),
        Some(top) => {
            let hi = window_start(top, every).saturating_add(every).min(cursor);
            let step = every.max(inner.config.partition_ns);
            let lo = window_start(hi.saturating_sub(step), every);
            let rows = backfill_range(inner, &db, &stream, every, lo, hi).inspect_err(|e| {
                inner.rollup.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut state) = inner.write_state() {
                    state
                        .rollups
                        .record_run(&db, &stream, every, Some(e.to_string()));
                }
            })?;
            (Some(lo), rows)
        }
    };
    let mut state = inner.write_state()?;
    if let Some(m) = state.rollups.find_mut(&db, &stream, every) {
        m.backfill_below = next;
    }
    if next.is_none() {
        // The planner may use the rollup from now on; cached plans must be rebuilt.
        state.catalog_version += 1;
    }
    state.rollups.record_run(&db, &stream, every, None);
    persist(inner, &state.rollups)?;
    inner.rollup.rows.fetch_add(rows as u64, Ordering::Relaxed);
    Ok(Some(rows))
}

/// The newest stored time of `stream` below `cursor`, over local segments and cold objects
/// alike: raw data moved cold while a back-fill walks down must still be aggregated (a back-fill
/// that looked at local segments only stopped at the first moved day and declared itself done).
fn newest_below(state: &State, db: &str, stream: &str, cursor: i64) -> Option<i64> {
    let hot = state.segments.iter().map(|l| {
        (
            &l.meta.database,
            &l.meta.stream,
            l.meta.min_time,
            l.meta.max_time,
        )
    });
    let cold = state
        .cold
        .iter()
        .map(|o| (&o.database, &o.stream, o.min_time, o.max_time));
    hot.chain(cold)
        .filter(|(d, s, min, _)| *d == db && *s == stream && *min < cursor)
        .map(|(_, _, _, max)| max.min(cursor - 1))
        .max()
}

/// Aggregates every series of a stream over `[lo, hi)` (window-aligned) into its rollup, one
/// series in memory at a time.
fn backfill_range(
    inner: &Inner,
    db: &str,
    stream: &str,
    every: i64,
    lo: i64,
    hi: i64,
) -> Result<usize> {
    let fields = raw_fields(inner, db, stream)?;
    let lo = lo.max(first_whole_window(inner, db, stream, every)?);
    if lo >= hi {
        return Ok(0);
    }
    let req = ScanRequest {
        database: db.to_string(),
        stream: stream.to_string(),
        device: None,
        tags: Vec::new(),
        start: lo,
        end: hi,
        fields: None,
    };
    let Some(snap) = read::snapshot(inner, &req, None, ReadMode::Values)? else {
        return Ok(0);
    };
    let snap = Arc::new(snap);
    let mut out = RollupWriter::new(inner, db, stream, every, fields.clone());
    for i in 0..snap.series_count() {
        if let Some(batch) = snap.read_series(i)? {
            out.push(&batch.key.clone(), aggregate(&batch, &fields, every))?;
        }
    }
    out.finish()
}

/// Absorbs every pending mark; called by flush right after it froze the memtable.
pub(super) fn absorb_for_flush(inner: &Inner) -> Result<()> {
    if inner.read_state()?.rollups.is_empty() {
        return Ok(());
    }
    absorb(inner, None).map(|_| ())
}

/// Background pass: absorb everything, then a few back-fill steps.
pub(super) fn background(inner: &Inner) -> Result<()> {
    if inner.read_state()?.rollups.is_empty() {
        return Ok(());
    }
    absorb(inner, None)?;
    for _ in 0..BACKFILL_STEPS_PER_PASS {
        if backfill_step(inner)?.is_none() {
            break;
        }
    }
    Ok(())
}

fn invalid(msg: String) -> StorageError {
    StorageError::InvalidInput(msg)
}

/// Sets the rollups the lifecycle policy of `database` (or of one of its streams) lists;
/// `None` removes that level's entry (a stream then follows its database again). Streams
/// need not exist yet: a stream created later gets its database's rollups on its first
/// write. A newly listed interval is back-filled from the data already stored (in bounded
/// steps, by background maintenance or [`Engine::run_rollups`]); an interval no longer
/// listed stops being maintained (its table keeps what it holds).
pub(super) fn set_policy(
    inner: &Inner,
    database: &str,
    stream: Option<&str>,
    specs: Option<&[RollupSpec]>,
) -> Result<()> {
    validate(database, stream.unwrap_or(""), specs.unwrap_or(&[]))?;
    let _serial = lock(inner)?;
    let mut guard = inner.write_state()?;
    let state = &mut *guard;
    let r = &mut state.rollups;
    match (stream, specs) {
        (Some(s), Some(specs)) => {
            r.overrides
                .entry(database.to_string())
                .or_default()
                .insert(s.to_string(), specs.to_vec());
        }
        (Some(s), None) => {
            if let Some(m) = r.overrides.get_mut(database) {
                m.remove(s);
            }
        }
        (None, Some(specs)) => {
            r.defaults.insert(database.to_string(), specs.to_vec());
        }
        (None, None) => {
            r.defaults.remove(database);
        }
    }
    r.overrides.retain(|_, m| !m.is_empty());
    let affected: Vec<String> = match stream {
        Some(s) => vec![s.to_string()],
        None => {
            let mut all: BTreeSet<String> = state
                .catalog
                .streams_of(database)
                .into_iter()
                .filter(|s| !is_reserved_rollup_name(s))
                .collect();
            all.extend(
                r.streams
                    .get(database)
                    .into_iter()
                    .flat_map(|m| m.keys().cloned()),
            );
            all.into_iter().collect()
        }
    };
    for s in &affected {
        let effective = state.rollups.effective(database, s);
        let added = state.rollups.configure(database, s, &effective);
        if let Some(id) = state.catalog.stream_id(database, s) {
            mark_memtables(state, id, database, s, &added);
        }
    }
    // Cached plans may read (or not read) a rollup; the catalog version invalidates them.
    state.catalog_version += 1;
    persist(inner, &state.rollups)
}

/// Why a raw retention of `retention` ns (measured back from `now`) under the new policy
/// `policy` of `database.stream` would drop raw data a rollup has not absorbed: a maintained
/// rollup still back-filling or with late windows pending older than the cut, or a rollup the
/// new policy adds while stored raw data is older than the cut. `None` when it is safe.
pub(super) fn retention_conflict(
    inner: &Inner,
    database: &str,
    stream: &str,
    policy: &crate::lifecycle::LifecyclePolicy,
    retention: i64,
    now: i64,
) -> Result<Option<String>> {
    let cut = now.saturating_sub(retention);
    let state = inner.read_state()?;
    let oldest = state
        .segments
        .iter()
        .map(|l| (&l.meta.database, &l.meta.stream, l.meta.min_time))
        .chain(
            state
                .cold
                .iter()
                .map(|o| (&o.database, &o.stream, o.min_time)),
        )
        .filter(|(d, s, _)| *d == database && *s == stream)
        .map(|(_, _, t)| t)
        .chain(
            state
                .catalog
                .stream_id(database, stream)
                .into_iter()
                .flat_map(|id| {
                    std::iter::once(&state.active)
                        .chain(state.frozen.iter().map(|f| &*f.memtable))
                        .filter_map(move |m| m.min_time(id))
                }),
        )
        .min();
    let raw_before_cut = oldest.is_some_and(|t| t < cut);
    let maintained = state.rollups.of(database, stream);
    for m in maintained.iter() {
        let name = rollup_stream_name(stream, m.spec.every);
        if m.backfill_below.is_some() && raw_before_cut {
            return Ok(Some(format!(
                "rollup {name} of stream '{stream}' is still back-filling and has not absorbed raw data older than the retention cut; run maintenance (POST /api/v1/lifecycle/run) until the back-fill is done, then set the retention again"
            )));
        }
        if m.dirty.values().filter_map(|w| w.first()).any(|&w| w < cut) {
            return Ok(Some(format!(
                "rollup {name} of stream '{stream}' has late data older than the retention cut not yet absorbed; run maintenance (POST /api/v1/lifecycle/run), then set the retention again"
            )));
        }
    }
    for spec in &policy.rollups {
        let known = maintained.iter().any(|m| m.spec.every == spec.every);
        if !known && raw_before_cut {
            return Ok(Some(format!(
                "rollup {} of stream '{stream}' is new and has not absorbed the raw data older than the retention cut; set the policy with the rollups and no shorter retention first, run maintenance (POST /api/v1/lifecycle/run) until the back-fill is done, then shorten the retention",
                rollup_stream_name(stream, spec.every)
            )));
        }
    }
    Ok(None)
}

/// Absorbs every pending window, then takes back-fill steps until none is pending or
/// `max_backfill_steps` were taken.
pub(super) fn catch_up(inner: &Inner, max_backfill_steps: usize) -> Result<RollupRun> {
    let (windows_absorbed, mut rows_written) = absorb(inner, None)?;
    let mut backfill_steps = 0;
    while backfill_steps < max_backfill_steps {
        match backfill_step(inner)? {
            Some(rows) => {
                backfill_steps += 1;
                rows_written += rows;
            }
            None => break,
        }
    }
    Ok(RollupRun {
        windows_absorbed,
        backfill_steps,
        rows_written,
    })
}

/// The rollups a lifecycle policy level asks for (`None`: that level sets none). A database
/// policy without rollups is the same as no database entry; a stream override without rollups
/// says "none for this stream", overriding its database.
pub(super) fn specs_of(
    stream: Option<&str>,
    policy: Option<&crate::lifecycle::LifecyclePolicy>,
) -> Option<Vec<RollupSpec>> {
    let p = policy?;
    (stream.is_some() || !p.rollups.is_empty()).then(|| p.rollups.clone())
}

/// Brings the rollup configuration in line with the lifecycle policies, the one source of truth,
/// after open (a crash between saving `LIFECYCLE` and `rollups.json` leaves them apart; a data
/// directory from before rollups followed policies gets its configuration from them).
pub(super) fn reconcile_with_policies(inner: &Inner) -> Result<()> {
    type Levels = BTreeMap<(String, Option<String>), Vec<RollupSpec>>;
    let mut want: Levels = BTreeMap::new();
    {
        let store = inner
            .lifecycle
            .store
            .read()
            .map_err(|_| super::poisoned())?;
        for db in store.databases() {
            if let Some(specs) = specs_of(None, store.database(&db)) {
                want.insert((db.clone(), None), specs);
            }
            for (s, p) in store.stream_overrides(&db) {
                if let Some(specs) = specs_of(Some(&s), Some(&p)) {
                    want.insert((db.clone(), Some(s)), specs);
                }
            }
        }
    }
    let mut have: Levels = BTreeMap::new();
    {
        let state = inner.read_state()?;
        let r = &state.rollups;
        for (db, specs) in &r.defaults {
            if !specs.is_empty() {
                have.insert((db.clone(), None), specs.clone());
            }
        }
        for (db, streams) in &r.overrides {
            for (s, specs) in streams {
                have.insert((db.clone(), Some(s.clone())), specs.clone());
            }
        }
    }
    let levels: BTreeSet<&(String, Option<String>)> = want.keys().chain(have.keys()).collect();
    for level @ (db, stream) in levels {
        let wanted = want.get(level);
        if wanted != have.get(level) {
            tracing::info!(database = %db, stream = ?stream, "rollups follow the lifecycle policy");
            set_policy(inner, db, stream.as_deref(), wanted.map(Vec::as_slice))?;
        }
    }
    Ok(())
}

/// Checks a rollup configuration.
pub(super) fn validate(database: &str, stream: &str, specs: &[RollupSpec]) -> Result<()> {
    if is_reserved_rollup_name(stream) && !specs.is_empty() {
        return Err(invalid(format!(
            "stream '{stream}' of database '{database}' is itself a rollup; rollups of rollups are not supported"
        )));
    }
    let mut seen = BTreeSet::new();
    for s in specs {
        if s.every <= 0 {
            return Err(invalid(format!(
                "rollup interval must be positive, got {} ns",
                s.every
            )));
        }
        if s.keep.is_some_and(|k| k <= 0) {
            return Err(invalid(
                "rollup keep must be positive or null (forever)".into(),
            ));
        }
        if !seen.insert(s.every) {
            return Err(invalid(format!(
                "rollup interval {} is listed twice",
                crate::rollup::format_every(s.every)
            )));
        }
    }
    Ok(())
}

impl Engine {
    /// Sets the rollups of one stream: its lifecycle override's `rollups` (an override is
    /// created from the stream's effective policy when it has none). The lifecycle policy is
    /// the one source of truth of which rollups exist; see [`Engine::set_lifecycle`].
    pub fn set_rollups(&self, database: &str, stream: &str, specs: &[RollupSpec]) -> Result<()> {
        let (mut policy, _) = self.lifecycle(database, stream)?;
        policy.rollups = specs.to_vec();
        self.set_lifecycle(database, Some(stream), Some(policy))
    }

    /// Status of every maintained rollup (of one stream when `only` is given), by database,
    /// stream and interval.
    pub fn rollups(&self, only: Option<(&str, &str)>) -> Vec<RollupStatus> {
        let Ok(state) = self.inner.read_state() else {
            return Vec::new();
        };
        let mut out: Vec<RollupStatus> = state
            .rollups
            .streams
            .iter()
            .flat_map(|(db, streams)| {
                streams.iter().flat_map(move |(stream, rollups)| {
                    rollups.iter().map(move |m| RollupStatus {
                        database: db.clone(),
                        stream: stream.clone(),
                        spec: m.spec,
                        table: rollup_stream_name(stream, m.spec.every),
                        pending_windows: m.dirty_count,
                        lag: m.dirty_since.map_or(Duration::ZERO, |t| t.elapsed()),
                        backfill_below: m.backfill_below,
                        last_run: m.last_run,
                        last_error: m.last_error.clone(),
                    })
                })
            })
            .filter(|s| only.is_none_or(|(d, st)| s.database == d && s.stream == st))
            .collect();
        out.sort_by(|a, b| {
            (&a.database, &a.stream, a.spec.every).cmp(&(&b.database, &b.stream, b.spec.every))
        });
        out
    }

    /// Absorbs the pending windows of `database.stream`'s rollups now (a query reading a rollup
    /// calls this first, so it sees every acknowledged write); returns the windows absorbed.
    pub fn refresh_rollups(&self, database: &str, stream: &str) -> Result<usize> {
        absorb(&self.inner, Some((database, stream))).map(|(w, _)| w)
    }

    /// Runs rollup maintenance now: absorbs every pending window, then takes back-fill steps
    /// until no back-fill is pending or `max_backfill_steps` were taken.
    pub fn run_rollups(&self, max_backfill_steps: usize) -> Result<RollupRun> {
        catch_up(&self.inner, max_backfill_steps)
    }

    /// Why a raw retention of `retention` ns (measured back from `now`) would drop raw data a
    /// rollup of `database.stream` has not absorbed yet: a back-fill still pending, or windows
    /// marked by writes and not yet absorbed, older than the cut. `None` when it is safe.
    pub fn rollup_retention_conflict(
        &self,
        database: &str,
        stream: &str,
        retention: i64,
        now: i64,
    ) -> Option<String> {
        let policy = crate::lifecycle::LifecyclePolicy::default();
        retention_conflict(&self.inner, database, stream, &policy, retention, now)
            .ok()
            .flatten()
    }

    /// Rollup counters: windows absorbed, rows written, failed runs (since start).
    pub fn rollup_counters(&self) -> (u64, u64, u64) {
        let r = &self.inner.rollup;
        (
            r.windows.load(Ordering::Relaxed),
            r.rows.load(Ordering::Relaxed),
            r.errors.load(Ordering::Relaxed),
        )
    }
}

/// Marks, for newly added rollups, the windows of the stream's rows still in memtables (the
/// back-fill walks segments only).
fn mark_memtables(
    state: &mut super::State,
    id: crate::catalog::StreamId,
    database: &str,
    stream: &str,
    added: &[i64],
) {
    if added.is_empty() {
        return;
    }
    let series: Vec<SeriesId> = state.catalog.stream(id).all_series.iter().collect();
    let mut times: Vec<(SeriesId, Vec<i64>)> = Vec::new();
    for sid in series {
        let memtables = state
            .frozen
            .iter()
            .map(|f| f.memtable.as_ref())
            .chain(std::iter::once(&state.active));
        for m in memtables {
            if let Some(rows) = m.read(sid, i64::MIN, i64::MAX, &[], &[]) {
                times.push((sid, rows.times));
            }
        }
    }
    for every in added {
        if let Some(m) = state.rollups.find_mut(database, stream, *every) {
            for (sid, t) in &times {
                m.mark(*sid, t.iter().copied());
            }
        }
    }
}

#[cfg(test)]
#[path = "rollups_tests.rs"]
mod tests;
