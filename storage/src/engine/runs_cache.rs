//! The runs cache: what a stored block reduced to ([`super::runs::reduce`]) under one way of
//! grouping times, kept so that the next aggregate over the same block and the same buckets
//! (a dashboard refreshing, a sliding window, the same buckets grouped by other tags) folds the
//! runs without decoding the block again.
//!
//! Invariants: a key names an immutable input (a segment id is never reused, a block of a
//! segment never changes) and everything the runs depend on: the series, the block, the
//! segment's ids of the wanted fields, the grouping ([`super::runs::TimeGroups::grid`]),
//! whether min/max were computed and whether empty runs were kept. An entry holds the runs of
//! the whole block; a read whose range cuts the block takes the runs inside its range, unless
//! its range cuts a run (then it decodes). Blocks touched by an erased range never take this
//! path, so tombstones never change a cached value. Entries of dropped segments are never
//! asked for again and age out. The cache is bounded by the bytes of its entries (`--runs-cache-mb`);
//! zero turns it off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::runs::BlockStats;

/// Identity of one block's runs (see the module invariants).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct RunsKey {
    pub segment: u64,
    pub series: crate::SeriesId,
    pub block: u32,
    pub fields: smallvec::SmallVec<[Option<u16>; 4]>,
    pub grid: [i64; 2],
    pub extremes: bool,
    pub keep_empty: bool,
}

/// A whole block's runs, oldest first, and the rows of each.
#[derive(Debug)]
pub(super) struct CachedRuns {
    pub runs: Arc<[BlockStats]>,
    pub sizes: Box<[u32]>,
}

impl CachedRuns {
    /// The runs with every row in `[first, last]` and their rows, or `None` when a run has rows
    /// on both sides of `first` or of `last` (the range cuts a group: the block must be decoded).
    /// The whole block's runs are shared, not copied, when the range holds them all.
    pub fn select(&self, first: i64, last: i64) -> Option<(usize, Arc<[BlockStats]>)> {
        let cut = |r: &BlockStats| {
            (r.min_time < first && first <= r.max_time) || (r.min_time <= last && last < r.max_time)
        };
        // The common case, a range holding the whole block: no run to look at one by one.
        if let (Some(head), Some(tail)) = (self.runs.first(), self.runs.last())
            && first <= head.min_time
            && tail.max_time <= last
        {
            let rows = self.sizes.iter().map(|&n| n as usize).sum();
            return Some((rows, self.runs.clone()));
        }
        if self.runs.iter().any(cut) {
            return None;
        }
        let lo = self.runs.partition_point(|r| r.max_time < first);
        let hi = self.runs.partition_point(|r| r.min_time <= last);
        // Some runs only: the range holding them all returned above.
        let rows = self.sizes[lo..hi.max(lo)].iter().map(|&n| n as usize).sum();
        Some((rows, self.runs[lo..hi.max(lo)].iter().cloned().collect()))
    }
}

/// Bytes an entry is counted as: the key, the runs and their per-field statistics.
#[derive(Debug, Clone, Copy)]
struct Weight;

impl quick_cache::Weighter<RunsKey, Arc<CachedRuns>> for Weight {
    fn weight(&self, key: &RunsKey, val: &Arc<CachedRuns>) -> u64 {
        // One field's statistics sit inside the run (`RunFields`); more go to an allocation.
        let spilled = match key.fields.len() {
            0 | 1 => 0,
            n => n * std::mem::size_of::<Option<crate::segment::ChunkStats>>(),
        };
        let per_run = std::mem::size_of::<BlockStats>() + spilled;
        let bytes = std::mem::size_of::<RunsKey>()
            + key.fields.len() * 4
            + std::mem::size_of::<CachedRuns>()
            + val.runs.len() * (per_run + 4)
            + 64;
        bytes as u64
    }
}

type Inner =
    quick_cache::sync::Cache<RunsKey, Arc<CachedRuns>, Weight, foldhash::fast::RandomState>;

/// The engine's runs cache and its counters.
#[derive(Debug)]
pub(super) struct RunsCache {
    cache: Option<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Counters of the runs cache (see [`crate::EngineStats`]).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RunsCacheStats {
    /// Blocks whose runs a read took from the cache.
    pub hits: u64,
    /// Blocks a read reduced and offered to the cache.
    pub misses: u64,
    /// Bytes the cached entries are counted as.
    pub bytes: u64,
    /// Cached entries (blocks).
    pub entries: usize,
    /// The bound on `bytes`.
    pub capacity: u64,
}

/// Entries a cache of `bytes` is sized for up front (a block's runs take about 2 KB).
fn estimated_items(bytes: usize) -> usize {
    (bytes / 2048).clamp(16, 1 << 20)
}

impl RunsCache {
    /// A cache bounded by `bytes` (0: no cache).
    pub fn new(bytes: usize) -> RunsCache {
        let cache = (bytes > 0).then(|| {
            Inner::with(
                estimated_items(bytes),
                bytes as u64,
                Weight,
                Default::default(),
                Default::default(),
            )
        });
        RunsCache {
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Whether entries are kept at all.
    pub fn enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// The runs cached under `key`, counting a hit or a miss.
    pub fn get(&self, key: &RunsKey) -> Option<Arc<CachedRuns>> {
        let found = self.cache.as_ref()?.get(key);
        let counter = match found {
            Some(_) => &self.hits,
            None => &self.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `runs` under `key` (evicting others past the bound).
    pub fn insert(&self, key: RunsKey, runs: Arc<CachedRuns>) {
        if let Some(cache) = &self.cache {
            cache.insert(key, runs);
        }
    }

    /// Current counters.
    pub fn stats(&self) -> RunsCacheStats {
        let (bytes, entries, capacity) = match &self.cache {
            Some(c) => (c.weight(), c.len(), c.capacity()),
            None => (0, 0, 0),
        };
        RunsCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes,
            entries,
            capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(segment: u64) -> RunsKey {
        RunsKey {
            segment,
            series: 1,
            block: 0,
            fields: smallvec::smallvec![Some(0)],
            grid: [3_600_000_000_000, 0],
            extremes: false,
            keep_empty: false,
        }
    }

    fn runs(n: usize) -> Arc<CachedRuns> {
        let run = BlockStats {
            min_time: 0,
            max_time: 1,
            fields: smallvec::smallvec![None],
        };
        Arc::new(CachedRuns {
            runs: vec![run; n].into(),
            sizes: vec![1; n].into(),
        })
    }

    #[test]
    fn counts_hits_and_misses_and_stays_within_its_bound() {
        let cache = RunsCache::new(64 << 10);
        assert!(cache.get(&key(1)).is_none());
        cache.insert(key(1), runs(24));
        assert_eq!(cache.get(&key(1)).map(|r| r.runs.len()), Some(24));
        let other = RunsKey {
            grid: [60_000_000_000, 0],
            ..key(1)
        };
        assert!(cache.get(&other).is_none(), "another grid is another entry");
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries), (1, 2, 1));
        for seg in 2..10_000 {
            cache.insert(key(seg), runs(24));
        }
        let s = cache.stats();
        assert!(s.bytes <= s.capacity, "{s:?}");
        assert!(s.entries < 9_999, "{s:?}");
    }

    #[test]
    fn a_range_takes_the_runs_inside_it_unless_it_cuts_one() {
        // Runs of rows at 0..=9, 10..=19, 20..=29 (10 rows each).
        let runs: Vec<BlockStats> = (0..3)
            .map(|i| BlockStats {
                min_time: i * 10,
                max_time: i * 10 + 9,
                fields: smallvec::smallvec![None],
            })
            .collect();
        let cached = CachedRuns {
            runs: runs.into(),
            sizes: vec![10; 3].into(),
        };
        let times = |(rows, r): (usize, Arc<[BlockStats]>)| {
            (rows, r.iter().map(|b| b.min_time).collect::<Vec<_>>())
        };
        assert_eq!(
            cached.select(i64::MIN, i64::MAX).map(times),
            Some((30, vec![0, 10, 20]))
        );
        assert_eq!(cached.select(10, 19).map(times), Some((10, vec![10])));
        assert_eq!(cached.select(5, 29).map(times), None, "cuts the first run");
        assert_eq!(cached.select(0, 25).map(times), None, "cuts the last run");
        assert_eq!(cached.select(10, 40).map(times), Some((20, vec![10, 20])));
        assert_eq!(cached.select(30, 40).map(times), Some((0, vec![])));
        assert_eq!(cached.select(-5, -1).map(times), Some((0, vec![])));
        assert_eq!(
            cached.select(0, 29).map(times),
            Some((30, vec![0, 10, 20])),
            "exactly the block's span"
        );
        let none = CachedRuns {
            runs: Vec::new().into(),
            sizes: Vec::new().into(),
        };
        assert_eq!(
            none.select(0, 29).map(times),
            Some((0, vec![])),
            "a block without values in range has no runs to fold, not a cut"
        );
    }

    #[test]
    fn a_cache_of_zero_bytes_keeps_nothing() {
        let cache = RunsCache::new(0);
        assert!(!cache.enabled());
        cache.insert(key(1), runs(1));
        assert!(cache.get(&key(1)).is_none());
        assert_eq!(cache.stats().entries, 0);
    }
}
