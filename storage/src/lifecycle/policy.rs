//! The lifecycle policy of a database or stream: hot duration, retention and rollups, all in
//! nanoseconds. Parsing of human durations ("7d") happens at the edges (HTTP, CLI); the engine
//! stores and applies nanoseconds.

use serde::{Deserialize, Serialize};

/// A downsampled copy of a stream: per series and field, min/max/sum/count/first/last per
/// `every`-long window, kept for `keep` (None = forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupSpec {
    /// Window length in nanoseconds (> 0).
    pub every: i64,
    /// How long rollup windows are kept, in nanoseconds; `None` keeps them forever.
    pub keep: Option<i64>,
}

/// Lifecycle policy of a database (or one stream, overriding its database's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecyclePolicy {
    /// How long data stays in local (hot) segments before moving to the cold tier, in
    /// nanoseconds; `None` keeps everything hot.
    pub hot: Option<i64>,
    /// How long raw data is kept at all, in nanoseconds; `None` keeps it forever.
    pub retention: Option<i64>,
    /// Rollups maintained for the stream(s), finest first.
    pub rollups: Vec<RollupSpec>,
}
