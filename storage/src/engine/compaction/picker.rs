//! The compaction picker: decides which segments to merge, from their sizes, time windows and age
//! order alone (no I/O), so its choices are unit-tested directly.
//!
//! Segments are grouped by time window (database, stream, partition) and kept in age order. Within a
//! window only *contiguous* runs in age order are merged, so the output can take the age of its
//! newest input without passing over a segment it does not contain. Two rules:
//!
//! - **Size tiers.** Sizes fall in tiers: tier 0 below `floor_bytes`, then tier k+1 from
//!   `floor_bytes * ratio^k` up to `ratio` times that. A run of at least `min_run` adjacent segments
//!   of one tier is merged (the lowest tier first, the longest run, at most `max_run`). The output
//!   of `min_run >= ratio` segments lands in a higher tier, so a byte is rewritten about once per
//!   tier it climbs: write amplification grows with log_ratio(window / flush size), not with the
//!   number of flushes.
//! - **Folding a cooled window.** A window that no longer receives new data in order (it is not the
//!   newest window of its stream) is merged whole once its other segments add up to at least
//!   `fold_fraction` of its largest one. One late batch never rewrites a big segment; a handful of
//!   small segments that do not amount to much wait until they do (or form a tier run). This also
//!   gives a window that cooled as a staircase of tiers its final merge into one segment.
//!
//! The newest window of a stream (the one still receiving data) is left to the tier rule only.

use std::collections::BTreeMap;

/// What the picker needs to know of a segment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    pub id: u64,
    /// Age-order key (`SegmentMeta::age`).
    pub age: (u64, u64),
    pub database: String,
    pub stream: String,
    pub partition_start: i64,
    pub bytes: u64,
}

/// Tuning of the picker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PickOptions {
    /// Shortest run of similar-sized segments worth merging.
    pub min_run: usize,
    /// Longest run merged at once (bounds open files and merge fan-in).
    pub max_run: usize,
    /// Size ratio from one tier to the next.
    pub ratio: u64,
    /// Segments smaller than this are all in tier 0.
    pub floor_bytes: u64,
    /// A cooled window is merged whole when its other segments add up to this fraction of its
    /// largest one.
    pub fold_fraction: f64,
}

impl PickOptions {
    /// Defaults for a trigger of `min_run` segments: ratio 4, 16 KiB floor, fold at one quarter.
    pub fn with_trigger(min_run: usize) -> PickOptions {
        PickOptions {
            min_run: min_run.max(2),
            max_run: 32,
            ratio: 4,
            floor_bytes: 16 << 10,
            fold_fraction: 0.25,
        }
    }

    /// The size tier of a segment of `bytes`.
    fn tier(&self, bytes: u64) -> u32 {
        let mut tier = 0;
        let mut bound = self.floor_bytes;
        while bytes >= bound {
            tier += 1;
            match bound.checked_mul(self.ratio.max(2)) {
                Some(b) => bound = b,
                None => break,
            }
        }
        tier
    }
}

/// One merge: segment ids in age order (oldest first), all of one window.
pub(crate) type Job = Vec<u64>;

type WindowKey = (String, String, i64);

/// Picks the merges worth doing now; at most one per window, windows in key order.
pub(crate) fn pick(segments: &[Candidate], opts: &PickOptions) -> Vec<Job> {
    let windows = by_window(segments);
    let newest = newest_window_per_stream(&windows);
    let mut jobs = Vec::new();
    for (key, window) in &windows {
        let hot = newest.get(&(key.0.clone(), key.1.clone())) == Some(&key.2);
        if let Some(job) = tier_run(window, opts) {
            jobs.push(job);
        } else if !hot && let Some(job) = fold(window, opts) {
            jobs.push(job);
        }
    }
    jobs
}

/// Every window with at least two segments, merged whole (a manual, major compaction).
pub(crate) fn pick_all(segments: &[Candidate]) -> Vec<Job> {
    by_window(segments)
        .into_values()
        .filter(|w| w.len() >= 2)
        .map(|w| w.iter().map(|c| c.id).collect())
        .collect()
}

fn by_window(segments: &[Candidate]) -> BTreeMap<WindowKey, Vec<&Candidate>> {
    let mut windows: BTreeMap<WindowKey, Vec<&Candidate>> = BTreeMap::new();
    for c in segments {
        let key = (c.database.clone(), c.stream.clone(), c.partition_start);
        windows.entry(key).or_default().push(c);
    }
    windows.values_mut().for_each(|w| w.sort_by_key(|c| c.age));
    windows
}

fn newest_window_per_stream(
    windows: &BTreeMap<WindowKey, Vec<&Candidate>>,
) -> BTreeMap<(String, String), i64> {
    let mut newest = BTreeMap::new();
    for (db, stream, part) in windows.keys() {
        let slot = newest.entry((db.clone(), stream.clone())).or_insert(*part);
        *slot = (*slot).max(*part);
    }
    newest
}

/// The longest run (at most `max_run`) of at least `min_run` adjacent segments of one tier, in the
/// lowest tier that has one.
fn tier_run(window: &[&Candidate], opts: &PickOptions) -> Option<Job> {
    // Ranked by (tier, longest first).
    type Rank = (u32, std::cmp::Reverse<usize>);
    let mut best: Option<(Rank, &[&Candidate])> = None;
    let mut start = 0;
    while start < window.len() {
        let tier = opts.tier(window[start].bytes);
        let mut end = start + 1;
        while end < window.len() && opts.tier(window[end].bytes) == tier {
            end += 1;
        }
        for run in window[start..end].chunks(opts.max_run) {
            let rank = (tier, std::cmp::Reverse(run.len()));
            if run.len() >= opts.min_run && best.is_none_or(|(b, _)| rank < b) {
                best = Some((rank, run));
            }
        }
        start = end;
    }
    best.map(|(_, run)| run.iter().map(|c| c.id).collect())
}

/// The whole window, when its segments other than the largest add up to a meaningful fraction of it.
fn fold(window: &[&Candidate], opts: &PickOptions) -> Option<Job> {
    if window.len() < 2 {
        return None;
    }
    let window = &window[window.len().saturating_sub(opts.max_run)..];
    let largest = window.iter().map(|c| c.bytes).max().unwrap_or(0);
    let rest: u64 = window.iter().map(|c| c.bytes).sum::<u64>() - largest;
    (rest as f64 >= largest as f64 * opts.fold_fraction)
        .then(|| window.iter().map(|c| c.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KB: u64 = 1024;
    const MB: u64 = 1024 * 1024;

    /// Segments of one stream: (id, partition, bytes); age = id.
    fn segs(list: &[(u64, i64, u64)]) -> Vec<Candidate> {
        list.iter()
            .map(|&(id, partition_start, bytes)| Candidate {
                id,
                age: (id, id),
                database: "db".into(),
                stream: "m".into(),
                partition_start,
                bytes,
            })
            .collect()
    }

    fn opts() -> PickOptions {
        PickOptions::with_trigger(4)
    }

    #[test]
    fn tiers_grow_by_the_ratio_above_the_floor() {
        let o = opts();
        assert_eq!(o.tier(0), 0);
        assert_eq!(o.tier(16 * KB - 1), 0);
        assert_eq!(o.tier(16 * KB), 1);
        assert_eq!(o.tier(64 * KB - 1), 1);
        assert_eq!(o.tier(64 * KB), 2);
        assert_eq!(o.tier(MB), 4);
        assert_eq!(o.tier(u64::MAX), 25);
    }

    #[test]
    fn an_output_does_not_rejoin_its_inputs_tier() {
        // Four 20 KB flushes merge to ~80 KB (tier 2); three more 20 KB flushes do not pull it in.
        let s = segs(&[
            (5, 0, 80 * KB),
            (6, 0, 20 * KB),
            (7, 0, 20 * KB),
            (8, 0, 20 * KB),
        ]);
        assert!(pick(&s, &opts()).is_empty());
    }

    #[test]
    fn four_small_flushes_of_the_newest_window_are_merged() {
        let s = segs(&[
            (1, 0, 100 * KB),
            (2, 0, 90 * KB),
            (3, 0, 120 * KB),
            (4, 0, 80 * KB),
        ]);
        assert_eq!(pick(&s, &opts()), vec![vec![1, 2, 3, 4]]);
    }

    #[test]
    fn three_segments_are_below_the_trigger() {
        let s = segs(&[(1, 0, 100 * KB), (2, 0, 90 * KB), (3, 0, 120 * KB)]);
        assert!(pick(&s, &opts()).is_empty());
    }

    #[test]
    fn a_big_segment_is_not_rewritten_for_small_ones_in_the_newest_window() {
        // 64 MB then four 1 MB flushes: the small ones merge among themselves.
        let s = segs(&[
            (1, 0, 64 * MB),
            (2, 0, MB),
            (3, 0, MB),
            (4, 0, MB),
            (5, 0, MB),
        ]);
        assert_eq!(pick(&s, &opts()), vec![vec![2, 3, 4, 5]]);
    }

    #[test]
    fn one_late_segment_in_a_cooled_window_waits() {
        // Window 0 is compacted to 64 MB; one late 1 MB batch lands there while window 10 is hot.
        let s = segs(&[(1, 0, 64 * MB), (2, 10, 5 * MB), (3, 0, MB)]);
        assert!(pick(&s, &opts()).is_empty());
    }

    #[test]
    fn late_segments_are_folded_once_they_amount_to_a_quarter_of_the_big_one() {
        // 1.5 MB of late data next to 8 MB: not yet.
        let s = segs(&[(1, 0, 8 * MB), (2, 10, MB), (3, 0, MB), (4, 0, MB / 2)]);
        assert!(pick(&s, &opts()).is_empty());
        // 2 MB of late data next to 8 MB: the window is merged whole.
        let s = segs(&[
            (1, 0, 8 * MB),
            (2, 10, MB),
            (3, 0, MB),
            (4, 0, MB / 2),
            (5, 0, MB / 2),
        ]);
        assert_eq!(pick(&s, &opts()), vec![vec![1, 3, 4, 5]]);
    }

    #[test]
    fn a_lower_tier_run_goes_before_a_higher_one() {
        let s = segs(&[
            (1, 0, 8 * MB),
            (2, 0, 8 * MB),
            (3, 0, 8 * MB),
            (4, 0, 8 * MB),
            (5, 0, KB),
            (6, 0, KB),
            (7, 0, KB),
            (8, 0, KB),
        ]);
        assert_eq!(pick(&s, &opts()), vec![vec![5, 6, 7, 8]]);
    }

    #[test]
    fn a_cooled_window_of_two_similar_segments_becomes_one() {
        let s = segs(&[(1, 0, 3 * MB), (2, 0, 2 * MB), (3, 10, MB)]);
        assert_eq!(pick(&s, &opts()), vec![vec![1, 2]]);
    }

    #[test]
    fn runs_are_contiguous_in_age_order() {
        // The 30 MB segment between small ones splits them: {2,3} and {5,6,7,8}; only the second
        // run is long enough.
        let s = segs(&[
            (1, 0, 64 * MB),
            (2, 0, MB),
            (3, 0, MB),
            (4, 0, 30 * MB),
            (5, 0, MB),
            (6, 0, MB),
            (7, 0, MB),
            (8, 0, MB),
        ]);
        assert_eq!(pick(&s, &opts()), vec![vec![5, 6, 7, 8]]);
    }

    #[test]
    fn age_order_not_id_order_decides_adjacency() {
        // Segment 9 is a compaction output with the age of segment 2: it sits between 1 and 3.
        let mut s = segs(&[(1, 0, MB), (3, 0, MB), (4, 0, MB), (9, 0, 40 * MB)]);
        s[3].age = (2, 9);
        assert!(pick(&s, &opts()).is_empty());
        s[3].bytes = MB;
        assert_eq!(pick(&s, &opts()), vec![vec![1, 9, 3, 4]]);
    }

    #[test]
    fn windows_and_streams_are_picked_separately() {
        let mut s = segs(&[
            (1, 0, KB),
            (2, 0, KB),
            (3, 10, KB),
            (4, 10, KB),
            (5, 10, KB),
            (6, 10, KB),
        ]);
        s[1].stream = "other".into();
        // Window 0 of "m" has one segment, "other" has one; window 10 of "m" has four.
        assert_eq!(pick(&s, &opts()), vec![vec![3, 4, 5, 6]]);
    }

    #[test]
    fn the_lowest_tier_run_is_chosen_and_long_runs_are_capped() {
        let mut list: Vec<(u64, i64, u64)> = (1..=40).map(|i| (i, 0, KB)).collect();
        list.insert(0, (100, 0, 100 * MB));
        let mut s = segs(&list);
        s[0].age = (0, 100);
        let jobs = pick(&s, &opts());
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0], (1..=32).collect::<Vec<u64>>());
    }

    #[test]
    fn pick_all_merges_every_window_with_two_or_more() {
        let s = segs(&[
            (1, 0, MB),
            (2, 10, MB),
            (3, 0, KB),
            (4, 20, KB),
            (5, 20, MB),
        ]);
        assert_eq!(pick_all(&s), vec![vec![1, 3], vec![4, 5]]);
    }
}
