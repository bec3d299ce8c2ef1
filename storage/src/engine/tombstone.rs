//! Tombstones of erased device data (`DATA/tombstones`) and the time ranges they hide: which ranges
//! of a series apply to a segment of a given age or to a frozen memtable, and `Rows` without them.
//! Reads, flush and compaction use these; `erase.rs` makes and retires tombstones.

use std::collections::HashMap;

use super::{Inner, State};
use crate::SeriesId;
use crate::catalog::Catalog;
use crate::error::{Result, StorageError};
use crate::fsutil::{check_checksum_header, with_checksum_header, write_atomic};
use crate::rows::Rows;

pub(super) const TAG: &str = "STRATA-TOMBSTONES";
pub(super) const VERSION: u32 = 1;
/// File name of the tombstone list inside the data directory.
pub(crate) const FILE_NAME: &str = "tombstones";

/// One erase, kept until no stored data depends on it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Tombstone {
    pub id: u64,
    pub database: Option<String>,
    pub device: String,
    pub start: i64,
    pub end: i64,
    /// Segments with `seq < mark` were written before the erase.
    pub mark: u64,
    /// Memtables frozen with a WAL cut `<=` this were written before the erase.
    pub wal_cut: u64,
}

/// The live tombstones (part of the engine state).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Tombstones {
    pub(super) version: u32,
    pub(super) next_id: u64,
    pub(super) list: Vec<Tombstone>,
}

/// The part of a tombstone that applies to one series: `[start, end)` for sources older than it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cut {
    pub mark: u64,
    pub wal_cut: u64,
    pub start: i64,
    pub end: i64,
}

impl Tombstone {
    pub(super) fn covers(&self, database: &str, device: &str) -> bool {
        self.device == device && self.database.as_deref().is_none_or(|d| d == database)
    }

    /// The range erased from `stream`: the tombstone's own, widened to whole windows in a rollup
    /// stream (a rollup row of a window the range cuts into aggregates erased rows; the erase
    /// re-aggregates those edge windows from the raw rows left, see [`recompute_edges`]).
    pub(crate) fn range_in(&self, stream: &str) -> (i64, i64) {
        match crate::rollup::parse_rollup_stream_name(stream) {
            None => (self.start, self.end),
            Some((_, every)) => widen(self.start, self.end, every),
        }
    }

    pub(super) fn cut(&self, stream: &str) -> Cut {
        let (start, end) = self.range_in(stream);
        Cut {
            mark: self.mark,
            wal_cut: self.wal_cut,
            start,
            end,
        }
    }
}

/// `[start, end)` widened to whole windows of `every` (unbounded ends stay unbounded).
fn widen(start: i64, end: i64, every: i64) -> (i64, i64) {
    let lo = match start {
        i64::MIN => start,
        s => crate::rollup::window_start(s, every),
    };
    let hi = match end {
        i64::MAX => end,
        e => crate::rollup::window_start(e.saturating_sub(1), every).saturating_add(every),
    };
    (lo, hi)
}

impl Tombstones {
    /// Whether any tombstone is live.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The marks of the live tombstones: a segment with `seq < mark` was written before that
    /// erase.
    pub fn marks(&self) -> impl Iterator<Item = u64> + '_ {
        self.list.iter().map(|t| t.mark)
    }

    /// The cuts that apply to a series of `device` in `database`.`stream`.
    pub fn cuts(&self, database: &str, stream: &str, device: &str) -> Vec<Cut> {
        self.list
            .iter()
            .filter(|t| t.covers(database, device))
            .map(|t| t.cut(stream))
            .collect()
    }
}

/// Ranges of `cuts` that apply to a segment of age `seq`.
pub(crate) fn segment_ranges(cuts: &[Cut], seq: u64) -> Vec<(i64, i64)> {
    cuts.iter()
        .filter(|c| seq < c.mark)
        .map(|c| (c.start, c.end))
        .collect()
}

/// Ranges of `cuts` that apply to a memtable frozen at `wal_cut`.
pub(crate) fn memtable_ranges(cuts: &[Cut], wal_cut: u64) -> Vec<(i64, i64)> {
    cuts.iter()
        .filter(|c| wal_cut <= c.wal_cut)
        .map(|c| (c.start, c.end))
        .collect()
}

/// Whether `[lo, hi]` (inclusive) meets any of `ranges` (`[start, end)`).
pub(crate) fn overlaps(ranges: &[(i64, i64)], lo: i64, hi: i64) -> bool {
    ranges.iter().any(|&(s, e)| hi >= s && lo < e)
}

/// `rows` (sorted by time) without the rows whose time is in one of `ranges`.
pub(crate) fn remove_ranges(rows: Rows, ranges: &[(i64, i64)]) -> Rows {
    let keep = |t: i64| !ranges.iter().any(|&(s, e)| t >= s && t < e);
    if ranges.is_empty() || rows.times.iter().all(|&t| keep(t)) {
        return rows;
    }
    rows.filtered(|i| keep(rows.times[i]))
}

/// Series ids of the device a tombstone names, each with the range erased from its stream.
pub(super) fn covered_series(catalog: &Catalog, t: &Tombstone) -> Vec<(SeriesId, (i64, i64))> {
    catalog
        .stream_views()
        .filter(|s| t.database.as_deref().is_none_or(|d| d == s.database))
        .flat_map(|s| {
            let range = t.range_in(&s.name);
            s.matching(Some(&t.device), &[])
                .iter()
                .map(move |sid| (sid, range))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Per series, the ranges to drop from a memtable frozen at `wal_cut` (flush uses it).
pub(crate) fn memtable_cuts(state: &State, wal_cut: u64) -> HashMap<SeriesId, Vec<(i64, i64)>> {
    let mut out: HashMap<SeriesId, Vec<(i64, i64)>> = HashMap::new();
    for t in state
        .tombstones
        .list
        .iter()
        .filter(|t| wal_cut <= t.wal_cut)
    {
        for (sid, range) in covered_series(&state.catalog, t) {
            out.entry(sid).or_default().push(range);
        }
    }
    out
}

pub(super) fn path(inner: &Inner) -> std::path::PathBuf {
    inner.config.data_dir.join(FILE_NAME)
}

/// Writes the tombstone list durably (atomic replace).
pub(super) fn persist(inner: &Inner, list: &Tombstones) -> Result<()> {
    let mut list = list.clone();
    list.version = VERSION;
    let body =
        serde_json::to_vec_pretty(&list).map_err(|e| StorageError::Internal(e.to_string()))?;
    write_atomic(&path(inner), &with_checksum_header(TAG, &body))
}

/// Reads `DATA/tombstones` (empty when absent).
pub(super) fn load(file: &std::path::Path) -> Result<Tombstones> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tombstones::default()),
        Err(source) => {
            return Err(StorageError::Io {
                path: file.to_path_buf(),
                source,
            });
        }
    };
    let body = check_checksum_header(TAG, &bytes, file)?;
    let list: Tombstones = serde_json::from_slice(body).map_err(|e| StorageError::Corrupt {
        path: file.to_path_buf(),
        detail: e.to_string(),
    })?;
    if list.version != VERSION {
        return Err(StorageError::Corrupt {
            path: file.to_path_buf(),
            detail: format!(
                "tombstone list version {} is not supported by this build (expected {VERSION})",
                list.version
            ),
        });
    }
    Ok(list)
}
