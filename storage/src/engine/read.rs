//! The read path as a snapshot: under the state lock a read resolves its series through the tag
//! index, copies their memtable rows in range and takes the list of overlapping segments
//! ([`ReadSnapshot`]); outside the lock it streams each series one time window at a time
//! ([`SeriesCursor`]), so the memory of a read is bounded by the matched memtable rows plus one
//! window (a partition: a few blocks) per series being read, whatever the range.
//!
//! A window is a cluster of sources (segment parts, memtable slices cut at partition bounds) whose
//! time ranges overlap; sources in different windows hold disjoint times, so merging each window
//! on its own (last write wins, `rows::merge_lww`) gives the same rows as merging everything.

use std::collections::HashMap;
use std::sync::Arc;

use super::runs::{BlockStats, Reduced, TimeGroups};
use super::{Inner, LiveSegment};
use crate::error::{Result, StorageError};
use crate::rows::{Rows, merge_lww};
use crate::segment::ChunkStats;
use crate::{FieldType, ScanRequest, SeriesBatch, SeriesId, SeriesKey};

/// Name of the marker column that tracks which merged rows are stored points (`ReadMode::Points`).
const EXISTS: &str = "\u{0}exists";

/// Which rows a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Rows holding a value in at least one requested field ([`crate::Engine::scan`]).
    Values,
    /// Every stored point in range, null where no requested field has a value
    /// ([`crate::Engine::scan_rows`]); only the requested fields are decoded.
    Points,
}

/// One series of a snapshot: its key and its memtable rows in range (oldest memtable first).
#[derive(Debug)]
struct SnapSeries {
    id: SeriesId,
    /// Shared with the catalog (a snapshot of 10,000 series copied 120,000 strings before).
    key: Arc<SeriesKey>,
    mem: Vec<Rows>,
    /// Erased ranges that apply to this series (`erase.rs`), for segments older than them.
    cuts: Vec<super::tombstone::Cut>,
}

/// One consistent view of a stream for one read: the matched series with their memtable rows in
/// range, and the segments overlapping the range, all taken at one instant under the state lock.
/// Later writes, flushes and compactions do not change what it returns.
#[derive(Debug)]
pub struct ReadSnapshot {
    fields: Vec<(String, FieldType)>,
    first: i64,
    last: i64,
    mode: ReadMode,
    partition_ns: i64,
    series: Vec<SnapSeries>,
    /// Overlapping segments in age order (`SegmentMeta::age`: oldest first).
    segments: Vec<Arc<LiveSegment>>,
    /// Overlapping cold objects (by manifest time range) in age order, with the tier to read
    /// them from; each one is fetched (and verified) at most once per snapshot, and each of its
    /// row groups decoded at most once, only when a read needs it.
    cold: Vec<Arc<crate::cold::ColdObject>>,
    tier: Option<Arc<crate::cold::ColdTier>>,
    decoded: Vec<std::sync::OnceLock<ColdRead>>,
    /// Per segment, its ids of `fields` once resolved (`None`: a field has another type there,
    /// the per-block path reports it).
    local: Vec<std::sync::OnceLock<Option<Vec<Option<u16>>>>>,
    mem_bytes: usize,
    runs_cache: Arc<super::runs_cache::RunsCache>,
}

/// A fetched cold object, or why it cannot be served (`true`: the object is damaged).
type ColdRead = std::result::Result<ColdFile, (bool, String)>;

/// Rows of one decoded row group by series key (tags sorted), or why it cannot be served
/// (`true`: damaged).
type GroupRead = std::result::Result<Arc<HashMap<SeriesKey, Rows>>, (bool, String)>;

/// A cold object of a snapshot: what of it was fetched and verified (its footer, or all of an
/// object listed without parts), its footer parsed, and its row groups decoded so far
/// (projected onto the snapshot's fields; each group fetched and verified when first needed).
#[derive(Debug)]
struct ColdFile {
    file: crate::cold::Sparse,
    index: Arc<crate::cold::parquet::ObjectIndex>,
    groups: Vec<std::sync::OnceLock<GroupRead>>,
}

/// What [`SeriesCursor::next_piece`] yields: decoded rows, the statistics of a whole block, or
/// a decoded block reduced to statistics per group of rows.
#[derive(Debug, Clone)]
pub enum SeriesPiece {
    /// Rows of the series (sorted, distinct times).
    Rows(SeriesBatch),
    /// A block entirely inside the read's range that no other source overlaps.
    Stats(BlockStats),
    /// A block that no other source overlaps and no erased range touches, spanning several
    /// groups (or cut by the range):
    /// decoded, and its `rows` inside the range reduced to one [`BlockStats`] per run of rows in
    /// the same group ([`TimeGroups`]), in time order; each run's `min_time`/`max_time` are its
    /// first and last row's times.
    Runs {
        /// Rows of the block folded into the runs.
        rows: usize,
        /// The runs, oldest first.
        runs: Arc<[BlockStats]>,
        /// The runs came from the engine's runs cache: the block was not decoded.
        cached: bool,
    },
}

/// Groups for a caller that takes whole-block statistics whenever `one_group` allows and never
/// reduces decoded blocks.
impl<F: Fn(i64, i64) -> bool> TimeGroups for F {
    fn one_group(&self, min: i64, max: i64) -> bool {
        self(min, max)
    }
    fn group_end(&self, _t: i64) -> Option<i64> {
        None
    }
}

impl ReadSnapshot {
    /// The fields every batch carries, in request (or schema) order.
    pub fn fields(&self) -> &[(String, FieldType)] {
        &self.fields
    }

    /// Number of matched series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Key of the `i`-th matched series.
    pub fn series_key(&self, i: usize) -> &SeriesKey {
        &self.series[i].key
    }

    /// Bytes of memtable rows copied into the snapshot (what it holds beyond mapped segments).
    pub fn memory_bytes(&self) -> usize {
        self.mem_bytes
    }

    /// Indexes of the matched series of each device in `devices`, in the order given.
    pub fn series_of_devices(&self, devices: &[String]) -> Vec<usize> {
        let wanted: foldhash::HashMap<&str, usize> = (devices.iter().enumerate())
            .map(|(at, d)| (d.as_str(), at))
            .collect();
        // (position of the device in `devices`, series index): sorted, the order asked for.
        let mut found: Vec<(usize, usize)> = (self.series.iter().enumerate())
            .filter_map(|(i, s)| wanted.get(s.key.device.as_str()).map(|&at| (at, i)))
            .collect();
        found.sort_unstable();
        found.into_iter().map(|(_, i)| i).collect()
    }

    /// True when reading `series` (indexes of matched series) decodes at most `limit` rows: their
    /// memtable rows plus the rows of the segment blocks overlapping the range, from footers,
    /// counted only until `limit` is passed. False when a cold object overlaps the range, whose
    /// read may wait on the object store. Readers use it to run small reads in place instead of
    /// handing them to another thread.
    pub fn reads_at_most(&self, series: &[usize], limit: usize) -> bool {
        if !self.cold.is_empty() {
            return false;
        }
        let mut rows = 0usize;
        for &i in series {
            let s = &self.series[i];
            rows += s.mem.iter().map(Rows::len).sum::<usize>();
            for live in &self.segments {
                rows += (live.segment).series_rows_between(s.id, self.first, self.last);
                if rows > limit {
                    return false;
                }
            }
            if rows > limit {
                return false;
            }
        }
        true
    }

    /// A cursor over the windows of the `i`-th series.
    pub fn cursor(self: &Arc<Self>, i: usize) -> SeriesCursor {
        SeriesCursor {
            windows: windows(self, i),
            snap: self.clone(),
            series: i,
            next: 0,
            dense: None,
        }
    }

    /// All rows of the `i`-th series in one batch (`None` when it has none in range).
    pub fn read_series(self: &Arc<Self>, i: usize) -> Result<Option<SeriesBatch>> {
        let mut cursor = self.cursor(i);
        let mut parts = Vec::new();
        while let Some(b) = cursor.next_batch()? {
            parts.push(Rows {
                times: b.times,
                columns: b.columns,
            });
        }
        Ok(Rows::concat(parts).map(|rows| self.batch(i, rows)))
    }

    /// Segment `j`'s ids of the snapshot's fields, resolved once per snapshot.
    fn local_fields(&self, j: usize) -> Option<&[Option<u16>]> {
        self.local[j]
            .get_or_init(|| self.segments[j].segment.local_fields(&self.fields).ok())
            .as_deref()
    }

    /// The erased ranges of series `i` that apply to segment `j` of the snapshot.
    fn erased_in(&self, i: usize, j: usize) -> Vec<(i64, i64)> {
        super::tombstone::segment_ranges(&self.series[i].cuts, self.segments[j].meta.seq)
    }

    fn batch(&self, i: usize, rows: Rows) -> SeriesBatch {
        let s = &self.series[i];
        SeriesBatch {
            series_id: s.id,
            key: SeriesKey::clone(&s.key),
            times: rows.times,
            columns: rows.columns,
        }
    }
}

/// Where one window's rows come from.
#[derive(Debug)]
enum Source {
    /// Index into the snapshot's cold objects.
    Cold(usize),
    /// Index into the snapshot's segments.
    Segment(usize),
    /// A slice of one memtable part's rows.
    Mem(Rows),
}

/// Sources of one series whose time ranges overlap, oldest first, and the time range they
/// span (within the snapshot's): a segment contributes its blocks in that range only.
#[derive(Debug, Default)]
struct Window {
    lo: i64,
    hi: i64,
    sources: Vec<Source>,
}

/// Streams one series of a snapshot, one window at a time.
#[derive(Debug)]
pub struct SeriesCursor {
    snap: Arc<ReadSnapshot>,
    series: usize,
    windows: Vec<Window>,
    next: usize,
    /// Decode buffer of the blocks reduced to runs, reused from block to block.
    dense: Option<crate::segment::DenseBlock>,
}

impl SeriesCursor {
    /// The next window's rows (sorted, distinct times), skipping empty windows; `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<SeriesBatch>> {
        while self.next < self.windows.len() {
            let window = std::mem::take(&mut self.windows[self.next]);
            self.next += 1;
            if let Some(rows) = merge_window(&self.snap, self.series, window)? {
                return Ok(Some(self.snap.batch(self.series, rows)));
            }
        }
        Ok(None)
    }

    /// Like [`SeriesCursor::next_batch`], but a window read from a single segment yields each of
    /// its blocks that lies entirely inside the range, falls in one group
    /// ([`TimeGroups::one_group`]) and whose sums are usable (float sums are numbers, integer
    /// sums exact: see [`sum_is_usable`]) as [`SeriesPiece::Stats`] without decoding it. Its
    /// other blocks that no erased range touches and whose wanted fields are all floats, when
    /// `groups` computes the end of each group, are decoded and reduced to
    /// [`SeriesPiece::Runs`] (no rows built); the rest, and windows of several sources, are
    /// decoded as rows. Reuses one decode buffer per cursor (that is, per series). A call yields
    /// every piece of one window at once.
    pub fn next_piece(
        &mut self,
        groups: &dyn TimeGroups,
        pending: &mut Vec<SeriesPiece>,
    ) -> Result<bool> {
        while self.next < self.windows.len() {
            let window = std::mem::take(&mut self.windows[self.next]);
            self.next += 1;
            if let [Source::Segment(j)] = window.sources.as_slice() {
                let before = pending.len();
                self.block_pieces(*j, (window.lo, window.hi), groups, pending)?;
                if pending.len() > before {
                    return Ok(true);
                }
                continue;
            }
            if let Some(rows) = merge_window(&self.snap, self.series, window)? {
                pending.push(SeriesPiece::Rows(self.snap.batch(self.series, rows)));
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn block_pieces(
        &mut self,
        j: usize,
        (lo, hi): (i64, i64),
        groups: &dyn TimeGroups,
        out: &mut Vec<SeriesPiece>,
    ) -> Result<()> {
        let snap = self.snap.clone();
        let sid = snap.series[self.series].id;
        let segment = &snap.segments[j].segment;
        let erased = snap.erased_in(self.series, j);
        let (first, last) = (snap.first, snap.last);
        for (bi, (min, max)) in segment.series_blocks_overlapping(sid, lo, hi) {
            let whole = !super::tombstone::overlaps(&erased, min, max);
            if whole && min >= first && max <= last && groups.one_group(min, max) {
                let stats = match snap.local_fields(j) {
                    Some(local) => segment.block_stats_local(sid, bi, local)?,
                    None => segment.block_stats(sid, bi, &snap.fields)?,
                };
                let exact = stats
                    .iter()
                    .zip(&snap.fields)
                    .all(|(s, (_, ty))| s.as_ref().is_none_or(|s| sum_is_usable(s, *ty)));
                // Reading values, a block without a value of any wanted field has no rows.
                if snap.mode == ReadMode::Values && stats.iter().all(Option::is_none) {
                    continue;
                }
                if exact {
                    out.push(SeriesPiece::Stats(BlockStats {
                        min_time: min,
                        max_time: max,
                        fields: stats,
                    }));
                    continue;
                }
            }
            if whole
                && groups.group_end(min.max(first)).is_some()
                && self.reduce_block(j, bi, groups, out)?
            {
                continue;
            }
            let rows = segment.block_rows(sid, bi, &snap.fields)?;
            let rows = super::tombstone::remove_ranges(rows.into_time_range(first, last), &erased);
            let rows = match snap.mode {
                ReadMode::Values => rows.drop_empty_rows(),
                ReadMode::Points => rows,
            };
            if !rows.is_empty() {
                out.push(SeriesPiece::Rows(snap.batch(self.series, rows)));
            }
        }
        Ok(())
    }

    /// Decodes block `bi` of segment `j` for aggregation and pushes its runs (see
    /// [`SeriesPiece::Runs`]); false when the block must be read as rows instead (a wanted field
    /// is not a float, a field's type differs here, or `groups` cannot end a group). With a
    /// runs cache and a grouping that has a key, the whole block's runs are cached and the runs
    /// in range taken from them, now and by later reads (see `runs_cache.rs`).
    fn reduce_block(
        &mut self,
        j: usize,
        bi: usize,
        groups: &dyn TimeGroups,
        out: &mut Vec<SeriesPiece>,
    ) -> Result<bool> {
        let snap = &self.snap;
        let Some(local) = snap.local_fields(j) else {
            return Ok(false);
        };
        let sid = snap.series[self.series].id;
        let keep_empty = snap.mode == ReadMode::Points;
        let key = runs_key(snap, j, (sid, bi), local, groups);
        let hit = key.as_ref().and_then(|k| snap.runs_cache.get(k));
        if let Some(picked) = hit.as_ref().and_then(|h| h.select(snap.first, snap.last)) {
            push_runs(out, picked, true);
            return Ok(true);
        }
        let dense = self.dense.get_or_insert_with(Default::default);
        if !snap.segments[j]
            .segment
            .decode_dense(sid, bi, local, dense)?
        {
            return Ok(false);
        }
        // Not cached yet: the whole block's runs go to the cache, and the read takes its own
        // from them unless its range cuts a run.
        if let (Some(key), None) = (key, &hit)
            && let Some(picked) = cache_block_runs(snap, key, dense, groups)
        {
            push_runs(out, picked, false);
            return Ok(true);
        }
        Ok(
            match super::runs::reduce(dense, snap.first, snap.last, groups, keep_empty) {
                Reduced::Runs { rows, runs, .. } => {
                    push_runs(out, (rows, runs), false);
                    true
                }
                Reduced::Empty => true,
                Reduced::Unsupported => false,
            },
        )
    }
}

/// The runs cache's key of block `bi` of series `sid` in segment `j` read with `groups`, when
/// the cache is on and `groups` has a grid.
fn runs_key(
    snap: &ReadSnapshot,
    j: usize,
    (sid, bi): (SeriesId, usize),
    local: &[Option<u16>],
    groups: &dyn TimeGroups,
) -> Option<super::runs_cache::RunsKey> {
    if !snap.runs_cache.enabled() {
        return None;
    }
    Some(super::runs_cache::RunsKey {
        segment: snap.segments[j].meta.id,
        series: sid,
        block: bi as u32,
        fields: smallvec::SmallVec::from_slice(local),
        grid: groups.grid()?,
        extremes: groups.extremes(),
        keep_empty: snap.mode == ReadMode::Points,
    })
}

/// Reduces the whole decoded block to runs and caches them under `key`; the runs in the
/// snapshot's range, or `None` when its range cuts a run (or `groups` cannot end a group).
fn cache_block_runs(
    snap: &ReadSnapshot,
    key: super::runs_cache::RunsKey,
    dense: &crate::segment::DenseBlock,
    groups: &dyn TimeGroups,
) -> Option<(usize, Arc<[BlockStats]>)> {
    let (runs, sizes) = match super::runs::reduce(dense, i64::MIN, i64::MAX, groups, key.keep_empty)
    {
        Reduced::Runs { runs, sizes, .. } => (runs, sizes),
        Reduced::Empty => (Arc::from([]), Vec::new()),
        Reduced::Unsupported => return None,
    };
    let whole = super::runs_cache::CachedRuns {
        runs,
        sizes: sizes.into(),
    };
    let picked = whole.select(snap.first, snap.last);
    snap.runs_cache.insert(key, Arc::new(whole));
    picked
}

/// Pushes `rows` folded into `runs` as a piece, unless there are no runs.
fn push_runs(out: &mut Vec<SeriesPiece>, (rows, runs): (usize, Arc<[BlockStats]>), cached: bool) {
    if !runs.is_empty() {
        out.push(SeriesPiece::Runs { rows, runs, cached });
    }
}

/// Whether a block's stored sum can stand for its values: a float sum that is a number, or an
/// integer sum whose every partial sum is an integer below 2^53 in magnitude (so the f64 the
/// segment keeps is exact; bounded by `count * max(|min|, |max|)`).
fn sum_is_usable(s: &ChunkStats, ty: FieldType) -> bool {
    const EXACT: u128 = 1 << 53;
    match ty {
        FieldType::Integer => {
            let bound = (s.min as i64)
                .unsigned_abs()
                .max((s.max as i64).unsigned_abs());
            u128::from(bound) * u128::from(s.count) < EXACT
        }
        FieldType::Unsigned => u128::from(s.max) * u128::from(s.count) < EXACT,
        _ => !s.sum.is_nan(),
    }
}

/// Reads every matched series in full (the materialising form of a snapshot read).
pub(super) fn scan(inner: &Inner, req: &ScanRequest, mode: ReadMode) -> Result<Vec<SeriesBatch>> {
    let Some(snap) = snapshot(inner, req, None, mode)? else {
        return Ok(Vec::new());
    };
    let snap = Arc::new(snap);
    let mut out = Vec::new();
    for i in 0..snap.series_count() {
        out.extend(snap.read_series(i)?);
    }
    Ok(out)
}

/// Takes a snapshot of the series matching `req` (and, when given, belonging to one of
/// `devices`). `None` when the stream or every requested field is unknown, or the range is empty.
pub(super) fn snapshot(
    inner: &Inner,
    req: &ScanRequest,
    devices: Option<&[String]>,
    mode: ReadMode,
) -> Result<Option<ReadSnapshot>> {
    if req.end <= req.start {
        return Ok(None);
    }
    // Rows older than the stream's retention are gone for readers at once, even while the
    // segment holding them is only partly expired (or not yet dropped).
    let floor = super::policy::read_floor(inner, &req.database, &req.stream)?;
    let (first, last) = (req.start.max(floor), req.end - 1);
    if last < first {
        return Ok(None);
    }
    let state = inner.read_state()?;
    let Some(stream_id) = state.catalog.stream_id(&req.database, &req.stream) else {
        return Ok(None);
    };
    let meta = state.catalog.stream(stream_id);
    let fields: Vec<(String, FieldType)> = match &req.fields {
        None => meta.fields.clone(),
        Some(names) => names
            .iter()
            .filter_map(|n| meta.field_id(n).map(|id| meta.fields[id].clone()))
            .collect(),
    };
    // In `Points` mode, no field at all still means "the points' times".
    let points = mode == ReadMode::Points;
    if fields.is_empty() && (!points || meta.fields.is_empty()) {
        return Ok(None);
    }
    let overlaps = |db: &str, stream: &str, min: i64, max: i64| {
        db == req.database && stream == req.stream && max >= first && min <= last
    };
    if let Some(b) = state.broken.iter().find(|b| {
        let m = &b.meta;
        overlaps(&m.database, &m.stream, m.min_time, m.max_time)
    }) {
        return Err(StorageError::Corrupt {
            path: inner.paths.segment(b.meta.id),
            detail: format!(
                "segment needed by this read could not be opened: {}",
                b.error
            ),
        });
    }
    let field_ids: Vec<Option<usize>> = fields.iter().map(|(n, _)| meta.field_id(n)).collect();
    // With the WAL cut of frozen memtables (the active one is never covered by a tombstone).
    let memtables: Vec<(&crate::memtable::Memtable, Option<u64>)> = state
        .frozen
        .iter()
        .map(|f| (f.memtable.as_ref(), Some(f.wal_cut)))
        .chain(std::iter::once((&state.active, None)))
        .collect();
    // Positions of the requested fields among all of the stream's (for `Points`).
    let wanted: Vec<usize> = fields
        .iter()
        .filter_map(|(n, _)| meta.field_id(n))
        .collect();
    let device_set: Option<std::collections::HashSet<&str>> =
        devices.map(|d| d.iter().map(String::as_str).collect());
    let matching = match (&req.device, &device_set) {
        (Some(d), _) => meta.matching(Some(d), &req.tags),
        (None, Some(set)) if set.len() == 1 => meta.matching(set.iter().next().copied(), &req.tags),
        _ => meta.matching(None, &req.tags),
    };
    let mut mem_bytes = 0;
    let mut series = Vec::new();
    for sid in matching.iter() {
        let key = &state.catalog.series[sid as usize].key;
        if device_set
            .as_ref()
            .is_some_and(|set| !set.contains(key.device.as_str()))
        {
            continue;
        }
        let cuts = state
            .tombstones
            .cuts(&req.database, &req.stream, &key.device);
        let mem: Vec<Rows> = memtables
            .iter()
            .filter_map(|(m, cut)| {
                let rows = match points {
                    true => memtable_part(m, sid, (first, last), &meta.fields, &wanted),
                    false => m.read(sid, first, last, &fields, &field_ids),
                }?;
                let erased = cut.map(|c| super::tombstone::memtable_ranges(&cuts, c));
                let rows = super::tombstone::remove_ranges(rows, erased.as_deref().unwrap_or(&[]));
                (!rows.is_empty()).then_some(rows)
            })
            .collect();
        mem_bytes += mem.iter().map(rows_bytes).sum::<usize>();
        series.push(SnapSeries {
            id: sid,
            key: key.clone(),
            mem,
            cuts,
        });
    }
    let segments: Vec<Arc<LiveSegment>> = state
        .segments
        .iter()
        .filter(|l| {
            let m = &l.meta;
            overlaps(&m.database, &m.stream, m.min_time, m.max_time)
        })
        .cloned()
        .collect();
    let cold: Vec<Arc<crate::cold::ColdObject>> = state
        .cold
        .iter()
        .filter(|o| overlaps(&o.database, &o.stream, o.min_time, o.max_time))
        .cloned()
        .collect();
    Ok(Some(ReadSnapshot {
        decoded: cold.iter().map(|_| std::sync::OnceLock::new()).collect(),
        local: segments
            .iter()
            .map(|_| std::sync::OnceLock::new())
            .collect(),
        cold,
        tier: inner.cold.clone(),
        fields,
        first,
        last,
        mode,
        partition_ns: inner.config.partition_ns,
        series,
        segments,
        mem_bytes,
        runs_cache: inner.runs_cache.clone(),
    }))
}

/// Approximate heap bytes of copied rows.
fn rows_bytes(r: &Rows) -> usize {
    let per_row: usize = r
        .columns
        .iter()
        .map(|c| match &c.data {
            crate::ColumnData::String(s) => {
                1 + s.iter().map(|v| v.len() + 8).sum::<usize>() / r.len().max(1)
            }
            crate::ColumnData::Boolean(_) => 2,
            _ => 9,
        })
        .sum();
    r.len() * (8 + per_row)
}

/// Start of the partition holding `t` (saturating at the ends of the i64 range).
fn partition_of(t: i64, p: i64) -> i64 {
    t.div_euclid(p).checked_mul(p).unwrap_or(i64::MIN)
}

/// A source with its age order (segments first by their age position, then memtable parts).
type Aged = ((u8, usize), Source);

/// The windows of series `i`: its sources grouped so that windows hold disjoint time ranges,
/// in time order; within a window, cold objects, then segments by id, then memtable slices by
/// age. A segment takes part block by block, and memtable rows are cut where a block starts or
/// ends: a late row overlaps (and is merged with) only the block holding its time, and the
/// other blocks are read alone (so whole-block statistics and runs still serve them).
fn windows(snap: &ReadSnapshot, i: usize) -> Vec<Window> {
    one_segment_windows(snap, i).unwrap_or_else(|| general_windows(snap, i))
}

/// When the snapshot's only source of series `i` is one segment whose blocks follow each other
/// (a compacted window, as most are), a window per block: what [`general_windows`] makes of
/// them, without its sorting and merging (a tenth of a fleet-wide aggregate's CPU at 10,000
/// series). `None` otherwise.
fn one_segment_windows(snap: &ReadSnapshot, i: usize) -> Option<Vec<Window>> {
    let s = &snap.series[i];
    let [live] = snap.segments.as_slice() else {
        return None;
    };
    if !s.mem.is_empty() || !snap.cold.is_empty() || !live.segment.blocks_ordered() {
        return None;
    }
    let blocks = live
        .segment
        .series_blocks_overlapping(s.id, snap.first, snap.last);
    Some(
        blocks
            .map(|(_, (lo, hi))| Window {
                lo: lo.max(snap.first),
                hi: hi.min(snap.last),
                sources: vec![Source::Segment(0)],
            })
            .collect(),
    )
}

/// The windows of series `i` from every source: see [`windows`].
fn general_windows(snap: &ReadSnapshot, i: usize) -> Vec<Window> {
    let s = &snap.series[i];
    // (lo, hi, order, source): order = age (segments first by id, then memtable parts).
    let mut spans: Vec<(i64, i64, (u8, usize), Source)> = Vec::new();
    // Cold objects are older than every live segment of their window (moves go oldest first
    // and later writes get higher `seq`s), so they come first in age order.
    for (c, o) in snap.cold.iter().enumerate() {
        spans.push((
            o.min_time.max(snap.first),
            o.max_time.min(snap.last),
            (0, c),
            Source::Cold(c),
        ));
    }
    // Where blocks start, and where they end (exclusive): memtable slices are cut there.
    let mut bounds: Vec<i64> = Vec::new();
    for (j, live) in snap.segments.iter().enumerate() {
        for (_, (lo, hi)) in live
            .segment
            .series_blocks_overlapping(s.id, snap.first, snap.last)
        {
            spans.push((
                lo.max(snap.first),
                hi.min(snap.last),
                (1, j),
                Source::Segment(j),
            ));
            bounds.extend([lo, hi.saturating_add(1)]);
        }
    }
    bounds.sort_unstable();
    bounds.dedup();
    for (k, part) in s.mem.iter().enumerate() {
        let mut start = 0;
        while start < part.len() {
            let t0 = part.times[start];
            let w = partition_of(t0, snap.partition_ns);
            let next_bound = bounds.get(bounds.partition_point(|&b| b <= t0)).copied();
            let end = start
                + part.times[start..].partition_point(|&t| {
                    partition_of(t, snap.partition_ns) == w && next_bound.is_none_or(|b| t < b)
                });
            let (lo, hi) = (part.times[start], part.times[end - 1]);
            let slice = match (start, end) {
                (0, e) if e == part.len() => part.clone(),
                _ => part.select(start..end),
            };
            spans.push((lo, hi, (2, k), Source::Mem(slice)));
            start = end;
        }
    }
    spans.sort_by_key(|(lo, _, order, _)| (*lo, *order));
    // Per window: its start, its end so far, and its sources with their age order.
    let mut out: Vec<(i64, i64, Vec<Aged>)> = Vec::new();
    for (lo, hi, order, source) in spans {
        match out.last_mut() {
            Some((_, end, sources)) if lo <= *end => {
                *end = (*end).max(hi);
                sources.push((order, source));
            }
            _ => out.push((lo, hi, vec![(order, source)])),
        }
    }
    out.into_iter()
        .map(|(lo, hi, mut sources)| {
            sources.sort_by_key(|(order, _)| *order);
            // A segment is read once per window, over the window's range (all its blocks
            // there); slices of one memtable part are distinct rows and all kept.
            sources.dedup_by(|a, b| a.0 == b.0 && a.0.0 != 2);
            Window {
                lo,
                hi,
                sources: sources.into_iter().map(|(_, s)| s).collect(),
            }
        })
        .collect()
}

/// Reads and merges one window of series `i` (last write wins).
fn merge_window(snap: &ReadSnapshot, i: usize, window: Window) -> Result<Option<Rows>> {
    let sid = snap.series[i].id;
    let points = snap.mode == ReadMode::Points;
    let has_mem = window.sources.iter().any(|s| matches!(s, Source::Mem(_)));
    // Memtable parts carry the marker (`Points`); without them every segment row is a stored
    // point with a value and no marker is needed.
    let marked = points && has_mem;
    let single = window.sources.len() == 1;
    open_together(snap, &window.sources);
    let mut parts = Vec::with_capacity(window.sources.len());
    for source in window.sources {
        match source {
            Source::Segment(j) => {
                let segment = &snap.segments[j].segment;
                let erased = snap.erased_in(i, j);
                if let Some(rows) = segment.read_series(sid, window.lo, window.hi, &snap.fields)? {
                    let rows = super::tombstone::remove_ranges(rows, &erased);
                    parts.push(match marked {
                        // Segments hold only points with at least one value.
                        true => with_exists(rows, None),
                        false => rows,
                    });
                }
            }
            Source::Mem(rows) => parts.push(rows),
            Source::Cold(c) => {
                if let Some(rows) = cold_rows(snap, i, c)? {
                    parts.push(match marked {
                        true => with_exists(rows, None),
                        false => rows,
                    });
                }
            }
        }
    }
    let merged = match (points, marked) {
        // One segment's rows are already sorted with distinct times: nothing to merge.
        (true, false) if single && !has_mem => parts.pop(),
        (true, true) => merge_lww(parts).map(only_existing),
        (true, false) => merge_lww(parts),
        (false, _) => merge_lww(parts).map(Rows::drop_empty_rows),
    };
    Ok(merged.filter(|r| !r.is_empty()))
}

/// Rows of series `i` in cold object `c` within the snapshot's range. The object is fetched and
/// verified once per snapshot; only the row groups whose statistics may hold the series'
/// device in range are decoded (each once per snapshot, only the snapshot's fields).
fn cold_rows(snap: &ReadSnapshot, i: usize, c: usize) -> Result<Option<Rows>> {
    let object = &snap.cold[c];
    let corrupt = |msg: String| StorageError::Corrupt {
        path: std::path::PathBuf::from(&object.key),
        detail: msg,
    };
    let file = match snap.decoded[c].get_or_init(|| open_cold(snap, object)) {
        Ok(f) => f,
        Err((true, msg)) => return Err(corrupt(msg.clone())),
        Err((false, msg)) => return Err(StorageError::Cold(msg.clone())),
    };
    let key = crate::cold::parquet::canonical(&snap.series[i].key);
    let mut parts = Vec::new();
    for (g, stats) in file.index.groups.iter().enumerate() {
        if !stats.may_hold(snap.first, snap.last, Some(&key.device)) {
            continue;
        }
        // A snapshot of one series decodes only its device's rows (the other columns are read
        // where the `device` column matches); otherwise a group is decoded once for all series.
        let only = (snap.series.len() == 1).then_some(key.device.as_str());
        let decoded = file.groups[g].get_or_init(|| decoded_group(snap, c, file, g, only));
        let decoded = match decoded {
            Ok(d) => d,
            Err((true, msg)) => return Err(corrupt(msg.clone())),
            Err((false, msg)) => return Err(StorageError::Cold(msg.clone())),
        };
        if let Some(rows) = decoded.get(&key) {
            parts.push(rows.slice_time(snap.first, snap.last));
        }
    }
    let Some(rows) = Rows::concat(parts) else {
        return Ok(None);
    };
    // Erased rows the object still holds (until maintenance rewrites it) are not served.
    let erased = super::tombstone::segment_ranges(&snap.series[i].cuts, object.seq);
    let rows = super::tombstone::remove_ranges(rows, &erased);
    let rows = match snap.mode {
        ReadMode::Values => rows.drop_empty_rows(),
        ReadMode::Points => rows,
    };
    Ok((!rows.is_empty()).then_some(rows))
}

/// Row group `g` of cold object `c` decoded onto the snapshot's fields (only `device`'s rows
/// when given): from the tier's cache of decoded groups, else decoded and kept there.
fn decoded_group(
    snap: &ReadSnapshot,
    c: usize,
    file: &ColdFile,
    g: usize,
    device: Option<&str>,
) -> GroupRead {
    let object = &snap.cold[c];
    let spec = group_spec(g, device, &snap.fields);
    if let Some(tier) = &snap.tier {
        // The group decoded for every device serves one device's read too.
        let whole = device.map(|_| group_spec(g, None, &snap.fields));
        let cached = std::iter::once(&spec).chain(&whole);
        if let Some(hit) = cached
            .into_iter()
            .find_map(|s| tier.decoded_group(object, s))
        {
            return Ok(hit);
        }
    }
    let tier = snap
        .tier
        .as_ref()
        .ok_or((false, "no cold store is configured".to_string()))?;
    let part = tier
        .group(object, &file.file, g)
        .map_err(|e| (matches!(e, StorageError::Corrupt { .. }), e.to_string()))?;
    let rows =
        crate::cold::parquet::decode_groups(part, &file.index, vec![g], &snap.fields, device)
            .map(Arc::new)
            .map_err(|e| {
                (
                    true,
                    format!("cold object {}: row group {g}: {e}", object.key),
                )
            })?;
    if let Some(tier) = &snap.tier {
        let bytes = rows.iter().map(|(k, r)| key_bytes(k) + rows_bytes(r)).sum();
        tier.keep_decoded(object, spec, rows.clone(), bytes);
    }
    Ok(rows)
}

/// What a decoded row group holds: the group, the device it was limited to, and the fields
/// (name and type) it was projected onto.
fn group_spec(g: usize, device: Option<&str>, fields: &[(String, FieldType)]) -> String {
    use std::fmt::Write;
    let mut spec = format!("{g}\u{0}{}", device.map_or(0, str::len));
    spec.push_str(device.unwrap_or(""));
    for (name, ty) in fields {
        let _ = write!(spec, "\u{0}{}:{ty:?}:{name}", name.len());
    }
    spec
}

/// Approximate heap bytes of a series key.
fn key_bytes(k: &SeriesKey) -> usize {
    48 + k.device.len()
        + k.tags
            .iter()
            .map(|(n, v)| 48 + n.len() + v.len())
            .sum::<usize>()
}

/// Fetches (from the cache or the store, verified) and indexes one cold object's footer (parsed
/// once while it stays cached); its row groups are fetched when decoded.
fn open_cold(snap: &ReadSnapshot, object: &crate::cold::ColdObject) -> ColdRead {
    let tier = snap
        .tier
        .as_ref()
        .ok_or((false, "no cold store is configured".to_string()))?;
    let ahead = groups_ahead(snap, object);
    let (file, index) = tier
        .footer_with(object, &ahead)
        .map_err(|e| (matches!(e, StorageError::Corrupt { .. }), e.to_string()))?;
    let groups = index
        .groups
        .iter()
        .map(|_| std::sync::OnceLock::new())
        .collect();
    Ok(ColdFile {
        file,
        index,
        groups,
    })
}

/// Opens the cold objects of a window not opened yet ([`open_cold`]) side by side when there
/// are several (each open is a round of requests to the store: a day often has two objects), at
/// most [`OPEN_TOGETHER`] at a time; a single one is left to [`cold_rows`].
fn open_together(snap: &ReadSnapshot, sources: &[Source]) {
    let closed: Vec<usize> = (sources.iter())
        .filter_map(|s| match s {
            Source::Cold(c) if snap.decoded[*c].get().is_none() => Some(*c),
            _ => None,
        })
        .collect();
    if closed.len() < 2 {
        return;
    }
    for batch in closed.chunks(OPEN_TOGETHER) {
        std::thread::scope(|scope| {
            for &c in batch {
                // A thread the system refuses only costs the overlap: `cold_rows` opens the
                // object itself.
                let _ = std::thread::Builder::new()
                    .name("strata-cold-open".into())
                    .spawn_scoped(scope, move || {
                        snap.decoded[c].get_or_init(|| open_cold(snap, &snap.cold[c]))
                    });
            }
        });
    }
}

/// Cold objects of one window opened at once at most (threads that mostly wait on the store).
const OPEN_TOGETHER: usize = 8;

/// A snapshot of at most this many devices fetches their row groups of a cold object together
/// with its footer (one round of requests instead of two); a wider read learns its groups from
/// the footer first.
const AHEAD_DEVICES: usize = 4;

/// The row groups of `object` the snapshot's devices may have rows in, by the manifest entry's
/// first devices (none when the snapshot is wider than [`AHEAD_DEVICES`] or the entry lacks them).
fn groups_ahead(snap: &ReadSnapshot, object: &crate::cold::ColdObject) -> Vec<usize> {
    let mut devices: Vec<&str> = Vec::with_capacity(AHEAD_DEVICES);
    for s in &snap.series {
        let d = s.key.device.as_str();
        if !devices.contains(&d) {
            if devices.len() == AHEAD_DEVICES {
                return Vec::new();
            }
            devices.push(d);
        }
    }
    (object.parts.as_ref())
        .and_then(|p| p.groups_for(&devices))
        .unwrap_or_default()
}

/// Appends the marker column: valid where `exists` says (all rows when `None`).
fn with_exists(mut rows: Rows, exists: Option<Vec<bool>>) -> Rows {
    let n = rows.len();
    let mut c = crate::Column::new(EXISTS, FieldType::Boolean);
    c.data = crate::ColumnData::Boolean(vec![true; n]);
    c.valid = exists.unwrap_or_else(|| vec![true; n]);
    rows.columns.push(c);
    rows
}

/// Keeps the rows whose marker is set and drops the marker column.
fn only_existing(mut rows: Rows) -> Rows {
    let Some(marker) = rows.columns.pop() else {
        return rows;
    };
    if marker.valid.iter().all(|v| *v) {
        return rows;
    }
    rows.filtered(|i| marker.valid[i])
}

/// Memtable points of `sid` in range with only the `wanted` columns (by position in `all`),
/// plus the marker of which rows hold a value of any field.
fn memtable_part(
    m: &crate::memtable::Memtable,
    sid: SeriesId,
    range: (i64, i64),
    all: &[(String, FieldType)],
    wanted: &[usize],
) -> Option<Rows> {
    let (rows, exists) = m.read_points(sid, range, all, wanted)?;
    Some(with_exists(rows, exists))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Column, Durability, EngineConfig, FieldType, SeriesKey, TableWrite, Value};
    use crate::{DEFAULT_DATABASE, WriteBatch};

    fn spans(windows: &[Window]) -> Vec<(i64, i64, Vec<usize>)> {
        (windows.iter())
            .map(|w| {
                let sources = (w.sources.iter())
                    .map(|s| match s {
                        Source::Segment(j) => *j,
                        _ => usize::MAX,
                    })
                    .collect();
                (w.lo, w.hi, sources)
            })
            .collect()
    }

    /// One compacted segment: a window per block, the same as the general path's, for ranges
    /// that cut blocks, hold them whole, fall between them or miss the series.
    #[test]
    fn one_segments_windows_are_the_general_paths() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = EngineConfig::new(dir.path());
        cfg.durability = Durability::None;
        cfg.background = false;
        let engine = crate::Engine::open(cfg).unwrap();
        let rows = 3 * crate::segment::BLOCK_ROWS + 100;
        let mut column = Column::new("v", FieldType::Float);
        for k in 0..rows {
            column.data.push_value(&Value::Float(k as f64));
            column.valid.push(true);
        }
        let batch = WriteBatch {
            database: DEFAULT_DATABASE.into(),
            tables: vec![TableWrite {
                stream: "m".into(),
                series: vec![SeriesKey {
                    device: "d".into(),
                    tags: Vec::new(),
                }],
                row_series: vec![0; rows],
                times: (0..rows as i64).map(|k| k * 10).collect(),
                columns: vec![column],
            }],
        };
        engine.write(&batch).unwrap();
        engine.flush().unwrap();
        engine.compact().unwrap();
        let last = rows as i64 * 10;
        let mut compared = 0;
        for (start, end) in [
            (0, last),
            (5, last - 5),
            (81_925, 163_835),
            (81_921, 81_925),
            (last + 10, last + 20),
        ] {
            let req = crate::ScanRequest {
                database: DEFAULT_DATABASE.into(),
                stream: "m".into(),
                device: None,
                tags: Vec::new(),
                start,
                end,
                fields: None,
            };
            let Some(snap) = snapshot(&engine.inner, &req, None, ReadMode::Values).unwrap() else {
                continue;
            };
            if snap.segments.is_empty() {
                assert!(one_segment_windows(&snap, 0).is_none(), "[{start}, {end})");
                continue;
            }
            compared += 1;
            for i in 0..snap.series.len() {
                let fast = one_segment_windows(&snap, i).expect("one segment, ordered blocks");
                assert_eq!(
                    spans(&fast),
                    spans(&general_windows(&snap, i)),
                    "[{start}, {end})"
                );
            }
        }
        assert_eq!(compared, 4, "ranges over the segment");
    }
}
