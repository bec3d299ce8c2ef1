//! Continuous rollups: per stream and interval (`every`), per series and field, the
//! min/max/sum/count/first/last of every window, plus the window's point count.
//!
//! Rollup windows are rows of an internal stream per rollup, named
//! `_rollup_{every}_{stream}` (e.g. `_rollup_1m_trucks`): the `_rollup_` prefix is reserved, so
//! users cannot write such a stream, and segments, compaction, retention and device erasure apply
//! to rollups unchanged. A window's row has the window start as its time and the raw series' key
//! (device and tags); rewriting a window is an ordinary last-write-wins overwrite.
//!
//! Maintenance is incremental (`engine/rollups.rs`): a write marks, under the engine's state lock
//! and per rollup, the (series, window) pairs it touches; an absorb takes the marks, re-reads
//! just those windows of those series (a last-write-wins read, so a rewritten point counts once)
//! and writes their rows. A device that was offline for days re-aggregates only its own touched
//! windows. `window.rs` holds the window math, `state.rs` the marks and the persisted config.

mod state;
mod window;

pub(crate) use state::{RollupState, Taken};
pub use window::{
    NUMERIC_STATS, OTHER_STATS, POINTS, RollupRows, aggregate, rollup_columns, stat_column,
    stats_of, window_start,
};

use std::time::Duration;

use crate::lifecycle::RollupSpec;

/// Prefix of the internal rollup streams (reserved: writes to such a stream are refused).
pub const ROLLUP_PREFIX: &str = "_rollup_";

/// Shortest exact text of a duration in nanoseconds: `60_000_000_000` → `1m`, `90 s` → `90s`.
pub fn format_every(ns: i64) -> String {
    const UNITS: [(&str, i64); 7] = [
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    UNITS
        .iter()
        .find(|(_, u)| ns != 0 && ns % u == 0)
        .map_or_else(
            || format!("{ns}ns"),
            |(name, u)| format!("{}{name}", ns / u),
        )
}

/// Parses what [`format_every`] writes.
fn parse_every(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = text.split_at(split);
    let n: i64 = num.parse().ok()?;
    let u = match unit {
        "d" => 86_400_000_000_000,
        "h" => 3_600_000_000_000,
        "m" => 60_000_000_000,
        "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "us" => 1_000,
        "ns" => 1,
        _ => return None,
    };
    let ns = n.checked_mul(u)?;
    (ns > 0 && format_every(ns) == text).then_some(ns)
}

/// The internal stream holding the `every` rollup of `stream`.
pub fn rollup_stream_name(stream: &str, every: i64) -> String {
    format!("{ROLLUP_PREFIX}{}_{stream}", format_every(every))
}

/// The (raw stream, interval) of an internal rollup stream name; `None` for any other name.
pub fn parse_rollup_stream_name(name: &str) -> Option<(&str, i64)> {
    let rest = name.strip_prefix(ROLLUP_PREFIX)?;
    let (every, stream) = rest.split_once('_')?;
    let every = parse_every(every)?;
    (!stream.is_empty()).then_some((stream, every))
}

/// True for names of the reserved rollup namespace (compared without case, like SQL would).
pub fn is_reserved_rollup_name(name: &str) -> bool {
    name.len() >= ROLLUP_PREFIX.len()
        && name[..ROLLUP_PREFIX.len()].eq_ignore_ascii_case(ROLLUP_PREFIX)
}

/// What an operator (and the planner) sees of one rollup.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupStatus {
    /// Database of the raw stream.
    pub database: String,
    /// The raw stream.
    pub stream: String,
    /// The configured interval and keep.
    pub spec: RollupSpec,
    /// The internal stream (SQL table) holding the windows.
    pub table: String,
    /// (series, window) pairs touched by writes and not yet absorbed.
    pub pending_windows: usize,
    /// How long the oldest write not yet absorbed has waited (zero when nothing is pending).
    pub lag: Duration,
    /// Raw data below this time is still to be back-filled; `None` once the back-fill is done.
    pub backfill_below: Option<i64>,
    /// Wall-clock time of the last run that wrote this rollup.
    pub last_run: Option<std::time::SystemTime>,
    /// The error of the last failed run, if the last run failed.
    pub last_error: Option<String>,
}

impl RollupStatus {
    /// True when the rollup holds every window of the raw data stored before its back-fill
    /// finished (writes since are absorbed on demand, see `Engine::refresh_rollups`).
    pub fn backfilled(&self) -> bool {
        self.backfill_below.is_none()
    }
}

/// What one maintenance run of the rollups did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupRun {
    /// Dirty (series, window) pairs re-aggregated.
    pub windows_absorbed: usize,
    /// Back-fill steps taken.
    pub backfill_steps: usize,
    /// Rollup rows written (absorb and back-fill).
    pub rows_written: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refuse_others() {
        assert_eq!(
            rollup_stream_name("trucks", 60_000_000_000),
            "_rollup_1m_trucks"
        );
        assert_eq!(rollup_stream_name("a_b", 90_000_000_000), "_rollup_90s_a_b");
        assert_eq!(
            parse_rollup_stream_name("_rollup_1h_a_b"),
            Some(("a_b", 3_600_000_000_000))
        );
        assert_eq!(
            parse_rollup_stream_name("_rollup_60s_x"),
            None,
            "not canonical"
        );
        assert_eq!(parse_rollup_stream_name("_rollup_1m_"), None);
        assert_eq!(parse_rollup_stream_name("_rollup_xm_a"), None);
        assert_eq!(parse_rollup_stream_name("trucks"), None);
        assert!(is_reserved_rollup_name("_ROLLUP_anything"));
        assert!(!is_reserved_rollup_name("_roll"));
        assert_eq!(format_every(1), "1ns");
        assert_eq!(format_every(86_400_000_000_000 * 7), "7d");
    }
}
