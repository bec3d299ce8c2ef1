//! Which of a move's segments become one cold object, and a group's rows as one Parquet object.
//!
//! A time window (database, stream, partition) often holds more than one segment when it turns
//! cold: a large one and a sliver a late flush left that compaction's fold rule did not think
//! worth a rewrite. Moved one object per segment, such a day costs a cold read one more object
//! to open (a footer and a row group, or the whole sliver: one more request on S3). So a move
//! writes a window's segments as one object, merged as compaction merges them (last write wins
//! per timestamp and field, newest input wins; a series whose parts do not overlap in time, the
//! common case, is joined in time order, which is the same answer without the merge's cost), as
//! long as:
//!
//! - they are contiguous in age order (all of a window's segments move together, so they are):
//!   the object takes the greatest `seq` of its inputs, as a compaction output does;
//! - no live tombstone's mark falls between their `seq`s (a merged object would otherwise
//!   hide an erase from the older rows, as `compaction/mod.rs` explains for merges);
//! - they agree on the types of the fields they share, and no field of one is a tag key of
//!   another (an object's columns are named once);
//! - together they are at most [`MERGE_BYTES`] (an object is built in memory).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use parquet::file::metadata::KeyValue;

use super::LiveSegment;
use super::tombstone::Tombstones;
use crate::cold::encode::{Scales, Writer, tag_columns};
use crate::error::{Result, StorageError};
use crate::rows::{Rows, merge_lww};
use crate::segment::Decimals;
use crate::{ColumnData, FieldType, SeriesId, SeriesKey};

/// Largest sum of segment bytes merged into one object.
pub(super) const MERGE_BYTES: u64 = 256 << 20;

/// Segments of one window moved as one object, oldest first (age order).
pub(super) type Group = Vec<Arc<LiveSegment>>;

/// The series of a group with their keys, sorted by key.
pub(super) type SeriesKeys = Vec<(SeriesId, SeriesKey)>;

/// The tag keys of a segment's series, by segment id.
pub(super) type TagKeys = HashMap<u64, BTreeSet<String>>;

/// The tag keys of each segment's series, from the catalog.
pub(super) fn tag_keys(
    catalog: &crate::catalog::Catalog,
    segments: &[Arc<LiveSegment>],
) -> TagKeys {
    segments
        .iter()
        .map(|l| {
            let series =
                (l.segment.series_ids()).filter_map(|sid| catalog.series.get(sid as usize));
            (l.meta.id, tag_columns(series.map(|s| &*s.key)))
        })
        .collect()
}

/// Splits the segments due to move into groups: windows oldest first, each window's segments in
/// age order, cut where the rules of this module say so.
pub(super) fn groups(
    segments: Vec<Arc<LiveSegment>>,
    tombstones: &Tombstones,
    tags: &TagKeys,
) -> Vec<Group> {
    let mut windows: BTreeMap<(i64, String, String), Vec<Arc<LiveSegment>>> = BTreeMap::new();
    for live in segments {
        let m = &live.meta;
        let key = (m.partition_start, m.database.clone(), m.stream.clone());
        windows.entry(key).or_default().push(live);
    }
    let mut out: Vec<Group> = Vec::new();
    for mut window in windows.into_values() {
        window.sort_by_key(|l| l.meta.age());
        let mut group: Group = Vec::new();
        for live in window {
            if !group.is_empty() && !joins(&group, &live, tombstones, tags) {
                out.push(std::mem::take(&mut group));
            }
            group.push(live);
        }
        out.push(group);
    }
    out
}

/// Whether `next` (newer than every member) may be merged into `group`.
fn joins(
    group: &[Arc<LiveSegment>],
    next: &LiveSegment,
    tombstones: &Tombstones,
    tags: &TagKeys,
) -> bool {
    let bytes: u64 = group.iter().map(|l| l.meta.bytes).sum();
    let oldest = group.iter().map(|l| l.meta.seq).min().unwrap_or(0);
    let split_by_erase = tombstones
        .marks()
        .any(|mark| oldest < mark && mark <= next.meta.seq);
    let agree = group.iter().all(|l| {
        l.segment.fields.iter().all(|(name, ty)| {
            next.segment
                .fields
                .iter()
                .all(|(other, ty2)| other != name || ty == ty2)
        })
    });
    let none = BTreeSet::new();
    let tags_of = |l: &LiveSegment| tags.get(&l.meta.id).unwrap_or(&none);
    let is_field = |l: &LiveSegment, name: &str| l.segment.fields.iter().any(|(n, _)| n == name);
    let clash = group.iter().any(|l| {
        tags_of(l).iter().any(|t| is_field(next, t)) || tags_of(next).iter().any(|t| is_field(l, t))
    });
    bytes.saturating_add(next.meta.bytes) <= MERGE_BYTES && !split_by_erase && agree && !clash
}

/// The group's series with their keys, in key order (device, then tags): each row group of the
/// object then holds a narrow range of devices, and its `device` statistics let a read of one
/// device skip the others.
pub(super) fn series_keys(
    catalog: &crate::catalog::Catalog,
    group: &[Arc<LiveSegment>],
) -> SeriesKeys {
    let ids: BTreeSet<SeriesId> = group.iter().flat_map(|l| l.segment.series_ids()).collect();
    let mut keys: SeriesKeys = ids
        .into_iter()
        .filter_map(|sid| {
            catalog
                .series
                .get(sid as usize)
                .map(|s| (sid, SeriesKey::clone(&s.key)))
        })
        .collect();
    keys.sort_by(|a, b| (&a.1.device, &a.1.tags, a.0).cmp(&(&b.1.device, &b.1.tags, b.0)));
    keys
}

/// The fields of a group's segments: the first segment's, then each field a later one adds.
fn fields_of(group: &[Arc<LiveSegment>]) -> Vec<(String, FieldType)> {
    let mut fields: Vec<(String, FieldType)> = Vec::new();
    for l in group {
        for f in &l.segment.fields {
            if !fields.iter().any(|(n, _)| n == &f.0) {
                fields.push(f.clone());
            }
        }
    }
    fields
}

/// The group's rows as one Parquet object, and its row count.
pub(super) fn encode(group: &[Arc<LiveSegment>], keys: &SeriesKeys) -> Result<(Vec<u8>, u64)> {
    let first = &group[0].meta;
    let codec = |e: String| {
        StorageError::InvalidInput(format!(
            "segment {} cannot be written as Parquet: {e}",
            first.id
        ))
    };
    let fields = fields_of(group);
    let tags: Vec<String> = tag_columns(keys.iter().map(|(_, k)| k))
        .into_iter()
        .collect();
    let extra = [
        ("strata.database", first.database.clone()),
        ("strata.stream", first.stream.clone()),
    ]
    .into_iter()
    .map(|(k, v)| KeyValue::new(k.to_string(), v))
    .collect();
    // Two passes over the segments: the float columns' scales (the schema comes first in the
    // file), then the rows, a row group at a time. The first pass reads the chunks' headers and
    // statistics, and decodes only float chunks that are not decimal. Merged values are a subset
    // of the inputs' values, so they fit the scales found over all of them.
    let mut scales = Scales::new(&fields);
    for (fi, field) in fields.iter().enumerate() {
        if field.1 == FieldType::Float {
            for l in group {
                for (sid, _) in keys {
                    scales.push_chunks(fi, &l.segment.float_chunks(*sid, field)?);
                }
            }
        }
    }
    // Objects come out about the size of their segments (benches/cold/RESULTS.md).
    let bytes: usize = group.iter().map(|l| l.segment.bytes().len()).sum();
    let mut writer =
        Writer::new(&fields, &tags, extra, (&scales.finish(), bytes + bytes / 8)).map_err(codec)?;
    let held: Vec<HashSet<SeriesId>> = group
        .iter()
        .map(|l| l.segment.series_ids().collect())
        .collect();
    let mut pushed = 0u64;
    for (sid, key) in keys {
        let holders: Vec<&LiveSegment> = group
            .iter()
            .zip(&held)
            .filter(|(_, h)| h.contains(sid))
            .map(|(l, _)| l.as_ref())
            .collect();
        if let Some((rows, decimals)) = series_rows(&holders, *sid, &fields)? {
            pushed += rows.len() as u64;
            writer.push(key.clone(), rows, decimals).map_err(codec)?;
        }
    }
    let (bytes, rows) = writer.finish().map_err(codec)?;
    check_rows(group, keys, &held, (pushed, rows))?;
    Ok((bytes, rows))
}

/// Refuses an object that may have lost rows: every series held has a key, and the rows
/// written are those pushed, exactly a lone segment's rows, and for a merged group at least
/// the largest member's and at most all of the members' (merging only collapses equal times).
fn check_rows(
    group: &[Arc<LiveSegment>],
    keys: &SeriesKeys,
    held: &[HashSet<SeriesId>],
    (pushed, rows): (u64, u64),
) -> Result<()> {
    let first = &group[0].meta;
    let series: HashSet<SeriesId> = held.iter().flatten().copied().collect();
    if series.len() != keys.len() {
        return Err(StorageError::Internal(format!(
            "segment {}: {} series held, {} with a catalog key; not moved",
            first.id,
            series.len(),
            keys.len()
        )));
    }
    let largest = group.iter().map(|l| l.meta.rows).max().unwrap_or(0);
    let all: u64 = group.iter().map(|l| l.meta.rows).sum();
    let fits = match group {
        [one] => rows == one.meta.rows,
        _ => rows == pushed && rows >= largest && rows <= all,
    };
    if !fits {
        return Err(StorageError::Internal(format!(
            "segment {} ({} in the group, {all} rows) has a Parquet copy of {rows} rows; not moved",
            first.id,
            group.len()
        )));
    }
    Ok(())
}

/// A series' rows, with per field the decimal integers of a float field stored that way.
type SeriesRows = (Rows, Vec<Option<Decimals>>);

/// One series' rows from the segments holding it (oldest first): as stored (float fields as
/// decimal integers where every block has them) from one segment; from several, joined in time
/// order when their parts do not overlap, else merged last-write-wins ([`joined`]).
fn series_rows(
    holders: &[&LiveSegment],
    sid: SeriesId,
    fields: &[(String, FieldType)],
) -> Result<Option<SeriesRows>> {
    match holders {
        [] => Ok(None),
        [one] => one.segment.read_series_decimal(sid, fields),
        _ => {
            let mut parts = Vec::with_capacity(holders.len());
            for l in holders {
                if let Some(part) = l.segment.read_series_decimal(sid, fields)? {
                    parts.push(part);
                }
            }
            joined(parts).map_err(|e| {
                let id = holders[0].meta.id;
                StorageError::Internal(format!("series {sid} of segment {id} and others: {e}"))
            })
        }
    }
}

/// One series' parts from several segments (oldest first) as one. Parts whose times do not
/// overlap (what time-ordered writes and flushes leave) are concatenated in time order, and a
/// float field stays decimal integers where every part has it so; overlapping parts are merged
/// last-write-wins as compaction merges them, as floats. Before, every series of a merged
/// window took the merge: a sort, a copy of every column, and floats for every decimal field.
fn joined(mut parts: Vec<SeriesRows>) -> std::result::Result<Option<SeriesRows>, String> {
    if parts.len() <= 1 {
        return Ok(parts.pop());
    }
    let fields = parts[0].0.columns.len();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| parts[i].0.times.first().copied());
    let disjoint = order.windows(2).all(|w| {
        let (a, b) = (&parts[w[0]].0.times, &parts[w[1]].0.times);
        a.last()
            .zip(b.first())
            .is_some_and(|(last, first)| last < first)
    });
    let keep: Vec<bool> = (0..fields)
        .map(|fi| {
            disjoint
                && parts
                    .iter()
                    .all(|p| p.1.get(fi).is_some_and(Option::is_some))
        })
        .collect();
    for (rows, decimals) in &mut parts {
        for (fi, d) in decimals.iter_mut().enumerate() {
            if keep.get(fi) == Some(&false)
                && let Some(d) = d.take()
            {
                let col = &mut rows.columns[fi];
                col.data = ColumnData::Float(d.to_floats(&col.valid)?);
            }
        }
    }
    if !disjoint {
        let rows: Vec<Rows> = parts.into_iter().map(|p| p.0).collect();
        return Ok(merge_lww(rows).map(|rows| (rows, Vec::new())));
    }
    parts.sort_by_key(|p| p.0.times.first().copied());
    let mut decimals: Vec<Option<Decimals>> =
        keep.iter().map(|k| k.then(Decimals::default)).collect();
    for (_, part) in &mut parts {
        for (acc, d) in decimals.iter_mut().zip(part) {
            if let (Some(acc), Some(d)) = (acc, d.take()) {
                acc.append(d)?;
            }
        }
    }
    // Room for every row up front, but no floats for a field kept as decimal integers.
    let total: usize = parts.iter().map(|p| p.0.len()).sum();
    let mut rest = parts.into_iter().map(|p| p.0);
    let Some(mut rows) = rest.next() else {
        return Ok(None);
    };
    let extra = total - rows.len();
    rows.times.reserve(extra);
    for (col, d) in rows.columns.iter_mut().zip(&decimals) {
        match d {
            Some(_) => col.valid.reserve(extra),
            None => col.reserve(extra),
        }
    }
    for part in rest {
        rows.append(&part);
    }
    Ok(Some((rows, decimals)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tombstone::Tombstone;
    use crate::manifest::SegmentMeta;

    fn live(dir: &std::path::Path, id: u64, seq: u64, part: i64, bytes: u64) -> Arc<LiveSegment> {
        let fields = vec![("v".to_string(), FieldType::Float)];
        let mut rows = Rows::empty(&fields);
        rows.times.push(part + id as i64);
        rows.columns[0]
            .data
            .push_value(&crate::Value::Float(id as f64));
        rows.columns[0].valid.push(true);
        let path = dir.join(format!("{id}.seg"));
        let mut w = crate::segment::SegmentWriter::create(&path, "db", "s", part, 1 << 40, &fields)
            .unwrap();
        w.write_series(1, &rows).unwrap();
        w.finish().unwrap();
        Arc::new(LiveSegment {
            meta: SegmentMeta {
                id,
                seq,
                database: "db".into(),
                stream: "s".into(),
                partition_start: part,
                min_time: part,
                max_time: part,
                rows: 1,
                bytes,
            },
            segment: crate::segment::Segment::open(&path).unwrap(),
        })
    }

    /// A part of a series: times, and field `v` as decimal integers at scale 1 (`Some`) or as
    /// floats, `None` in a cell being a row without a value.
    fn part(times: &[i64], cells: &[Option<i64>], decimal: bool) -> SeriesRows {
        let fields = vec![("v".to_string(), FieldType::Float)];
        let mut rows = Rows::empty(&fields);
        rows.times = times.to_vec();
        rows.columns[0].valid = cells.iter().map(Option::is_some).collect();
        let mut d = Decimals::default();
        for c in cells.iter().flatten() {
            d.values.push(*c);
        }
        d.scales = vec![(d.values.len(), 1)];
        if decimal {
            return (rows, vec![Some(d)]);
        }
        let floats = d.to_floats(&rows.columns[0].valid).unwrap();
        rows.columns[0].data = ColumnData::Float(floats);
        (rows, vec![None])
    }

    /// Field `v` of joined rows, row by row, as floats.
    fn values((rows, decimals): &SeriesRows) -> Vec<Option<f64>> {
        let col = &rows.columns[0];
        let floats = match decimals.first() {
            Some(Some(d)) => d.to_floats(&col.valid).unwrap(),
            _ => match &col.data {
                ColumnData::Float(v) => v.clone(),
                other => panic!("not floats: {other:?}"),
            },
        };
        floats
            .iter()
            .zip(&col.valid)
            .map(|(f, ok)| ok.then_some(*f))
            .collect()
    }

    #[test]
    fn parts_apart_in_time_join_in_time_order_and_stay_decimal() {
        // The newer segment holds the older times (a late flush).
        let newer_times = part(&[1, 2, 3], &[Some(11), None, Some(-5)], true);
        let older = part(&[10, 20], &[Some(7), Some(300)], true);
        let got = joined(vec![older.clone(), newer_times.clone()])
            .unwrap()
            .unwrap();
        assert_eq!(got.0.times, vec![1, 2, 3, 10, 20]);
        assert!(got.1[0].is_some(), "every part decimal: the join is too");
        assert_eq!(
            values(&got),
            vec![Some(1.1), None, Some(-0.5), Some(0.7), Some(30.0)]
        );
        // One part of floats: the field comes back as floats, with the same values.
        let floats = part(&[10, 20], &[Some(7), Some(300)], false);
        let mixed = joined(vec![floats, newer_times]).unwrap().unwrap();
        assert!(mixed.1[0].is_none());
        assert_eq!(values(&mixed), values(&got));
    }

    #[test]
    fn overlapping_parts_merge_with_the_newer_winning() {
        let older = part(&[1, 2, 3], &[Some(10), Some(20), Some(30)], true);
        let newer = part(&[2, 4], &[Some(99), None], true);
        let got = joined(vec![older, newer]).unwrap().unwrap();
        assert_eq!(got.0.times, vec![1, 2, 3, 4]);
        assert_eq!(values(&got), vec![Some(1.0), Some(9.9), Some(3.0), None]);
        // Parts that only touch (the last time of one is the first of the other) overlap too.
        let older = part(&[1, 2], &[Some(10), Some(20)], true);
        let newer = part(&[2, 3], &[Some(55), Some(66)], true);
        let got = joined(vec![older, newer]).unwrap().unwrap();
        assert_eq!(got.0.times, vec![1, 2, 3]);
        assert_eq!(values(&got), vec![Some(1.0), Some(5.5), Some(6.6)]);
    }

    /// A segment `id` of window 0 holding series 1 and 2 as given (field `v`).
    fn segment_of(
        dir: &std::path::Path,
        id: u64,
        series: &[(SeriesId, &Rows)],
    ) -> Arc<LiveSegment> {
        let fields = vec![("v".to_string(), FieldType::Float)];
        let path = dir.join(format!("{id}.seg"));
        let mut w =
            crate::segment::SegmentWriter::create(&path, "db", "s", 0, 1 << 40, &fields).unwrap();
        for (sid, rows) in series {
            w.write_series(*sid, rows).unwrap();
        }
        w.finish().unwrap();
        let times = series.iter().flat_map(|(_, r)| r.times.iter().copied());
        Arc::new(LiveSegment {
            meta: SegmentMeta {
                id,
                seq: id,
                database: "db".into(),
                stream: "s".into(),
                partition_start: 0,
                min_time: times.clone().min().unwrap(),
                max_time: times.max().unwrap(),
                rows: series.iter().map(|(_, r)| r.len() as u64).sum(),
                bytes: 100,
            },
            segment: crate::segment::Segment::open(&path).unwrap(),
        })
    }

    /// Field `v` rows of `times` with `v = f(t)`, every 4th row without a value.
    fn float_rows(times: std::ops::Range<i64>, f: impl Fn(i64) -> f64) -> Rows {
        let mut r = Rows::empty(&[("v".to_string(), FieldType::Float)]);
        for t in times {
            r.times.push(t);
            match t % 4 == 0 {
                true => r.columns[0].push_null(),
                false => {
                    r.columns[0].data.push_value(&crate::Value::Float(f(t)));
                    r.columns[0].valid.push(true);
                }
            }
        }
        r
    }

    /// A window of three segments through `encode` and back: series 1 split over segments
    /// apart in time (the newest holding the oldest times), series 2 overlapping itself with
    /// the newest winning, series 3 in one segment; decimals of two scales and full-precision
    /// floats. The object holds exactly what the segments say, row by row.
    #[test]
    fn a_window_of_several_segments_reads_back_from_its_object() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let dec = |t: i64| t as f64 / 4.0; // two decimals at most
        let fine = |t: i64| (t as f64 * 0.37).sin();
        let s1_late = float_rows(0..3000, dec);
        let s1_early = float_rows(3000..7000, |t| t as f64 / 10.0);
        let s2_old = float_rows(100..2100, dec);
        let s2_new = float_rows(2000..2600, |t| -(t as f64) / 2.0);
        let s3 = float_rows(0..5000, fine);
        let group = vec![
            segment_of(d, 1, &[(1, &s1_early), (2, &s2_old)]),
            segment_of(d, 2, &[(2, &s2_new), (3, &s3)]),
            segment_of(d, 3, &[(1, &s1_late)]),
        ];
        let key = |n: SeriesId| SeriesKey {
            device: format!("d{n}"),
            tags: vec![],
        };
        let keys: SeriesKeys = (1..=3).map(|n| (n, key(n))).collect();
        let (bytes, rows) = encode(&group, &keys).unwrap();
        let decoded = crate::cold::parquet::decode(bytes::Bytes::from(bytes)).unwrap();
        let s1 = Rows::concat(vec![s1_late, s1_early]).unwrap();
        let s2 = merge_lww(vec![s2_old, s2_new]).unwrap();
        assert_eq!(rows as usize, s1.len() + s2.len() + s3.len());
        for (n, want) in [(1, s1), (2, s2), (3, s3)] {
            let got = &decoded.series[&key(n)];
            assert_eq!(got.times, want.times, "series {n}");
            let floats = |r: &Rows| values(&(r.clone(), Vec::new()));
            assert_eq!(floats(got), floats(&want), "series {n}");
        }
    }

    /// Walks at 5 decimals (positions, say) are stored delta-packed and reach the object still
    /// encoded, block by block: from one segment and joined over two, with rows without a
    /// value, a spike (a block with exceptions) and blocks of several widths. The object holds
    /// exactly the segments' values.
    #[test]
    fn delta_packed_decimals_reach_the_object_encoded_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let walk = |t: i64| {
            let mut x = 0x9e37_79b9u64 ^ (t as u64 / 997);
            let mut v = 4_123_456i64;
            for i in 0..t % 997 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                v += ((x >> 40) % 1_001) as i64 - 500 + if i == 300 { 9_000_000 } else { 0 };
            }
            v as f64 / 100_000.0
        };
        let s1_early = float_rows(0..3_000, walk);
        let s1_late = float_rows(3_000..5_000, walk);
        let s2 = float_rows(0..9_000, walk);
        let group = vec![
            segment_of(d, 1, &[(1, &s1_early), (2, &s2)]),
            segment_of(d, 2, &[(1, &s1_late)]),
        ];
        let fields = vec![("v".to_string(), FieldType::Float)];
        let (_, decimals) = group[0]
            .segment
            .read_series_decimal(2, &fields)
            .unwrap()
            .unwrap();
        let packed = decimals[0].as_ref().map_or(0, |d| d.packed.len());
        assert_eq!(packed, 2, "9,000 rows: two blocks, both delta-packed");
        let key = |n: SeriesId| SeriesKey {
            device: format!("d{n}"),
            tags: vec![],
        };
        let keys: SeriesKeys = (1..=2).map(|n| (n, key(n))).collect();
        let (bytes, rows) = encode(&group, &keys).unwrap();
        let decoded = crate::cold::parquet::decode(bytes::Bytes::from(bytes)).unwrap();
        let s1 = Rows::concat(vec![s1_early, s1_late]).unwrap();
        assert_eq!(rows as usize, s1.len() + s2.len());
        for (n, want) in [(1, s1), (2, s2)] {
            let got = &decoded.series[&key(n)];
            assert_eq!(got.times, want.times, "series {n}");
            let floats = |r: &Rows| values(&(r.clone(), Vec::new()));
            assert_eq!(floats(got), floats(&want), "series {n}");
        }
    }

    /// A series whose parts in a window are a long delta-packed walk at 3 decimals, a tail too
    /// short for a page of its own, and a stretch at a regular step at 1 decimal (another inner
    /// codec, a coarser scale): each chunk is written as it can be (the walk still encoded, the
    /// tail decoded, the stretch decoded and brought to the column's scale) beside the others,
    /// and the object holds exactly the segments' values.
    #[test]
    fn a_series_mixes_encoded_and_decoded_chunks_and_reads_back() {
        use crate::segment::ChunkInts;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A random walk: steps of -500..=500 thousandths.
        let mut at = vec![1_000_000i64];
        for t in 1..3_100u64 {
            let x = (t.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % 1_001;
            at.push(at[at.len() - 1] + x as i64 - 500);
        }
        let walk = |t: i64| at[t as usize] as f64 / 1_000.0;
        let a = float_rows(0..3_000, walk);
        let b = float_rows(3_000..3_100, walk);
        // Rows `t % 4 == 0` have no value, so the present values step by 0.1.
        let c = float_rows(3_100..6_000, |t| (t - t / 4) as f64 / 10.0);
        let group = vec![
            segment_of(d, 1, &[(1, &a)]),
            segment_of(d, 2, &[(1, &b)]),
            segment_of(d, 3, &[(1, &c)]),
        ];
        let fields = vec![("v".to_string(), FieldType::Float)];
        let chunks: Vec<(bool, u8, usize)> = group
            .iter()
            .flat_map(|l| {
                let (_, decimals) = l.segment.read_series_decimal(1, &fields).unwrap().unwrap();
                let d = decimals[0].clone().expect("decimal everywhere");
                d.packed
                    .iter()
                    .map(|p| (matches!(p.ints, ChunkInts::Encoded(_)), p.k, p.count))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            chunks,
            vec![(true, 3, 2_250), (true, 3, 75), (false, 1, 2_175)],
            "the walk and its tail delta-packed, the stretch regular"
        );
        let key = SeriesKey {
            device: "d1".into(),
            tags: vec![],
        };
        let keys: SeriesKeys = vec![(1, key.clone())];
        let (bytes, rows) = encode(&group, &keys).unwrap();
        let want = Rows::concat(vec![a, b, c]).unwrap();
        assert_eq!(rows as usize, want.len());
        let decoded = crate::cold::parquet::decode(bytes::Bytes::from(bytes)).unwrap();
        let got = &decoded.series[&key];
        assert_eq!(got.times, want.times);
        let floats = |r: &Rows| values(&(r.clone(), Vec::new()));
        assert_eq!(floats(got), floats(&want));
    }

    #[test]
    fn a_field_of_one_segment_named_like_a_tag_key_of_another_cuts_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let segs = vec![
            live(d, 1, 1, 0, 5),
            live(d, 2, 2, 0, 5),
            live(d, 3, 3, 0, 5),
        ];
        // Segment 2's series are tagged `v`, a field of segments 1 and 3.
        let tags: TagKeys = [(2, BTreeSet::from(["v".to_string()]))].into();
        assert_eq!(
            ids(&groups(segs.clone(), &Tombstones::default(), &tags)),
            vec![vec![1], vec![2], vec![3]]
        );
        let tags: TagKeys = [(2, BTreeSet::from(["fleet".to_string()]))].into();
        assert_eq!(
            ids(&groups(segs, &Tombstones::default(), &tags)),
            vec![vec![1, 2, 3]]
        );
    }

    fn ids(groups: &[Group]) -> Vec<Vec<u64>> {
        groups
            .iter()
            .map(|g| g.iter().map(|l| l.meta.id).collect())
            .collect()
    }

    #[test]
    fn a_windows_segments_become_one_group_in_age_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let segs = vec![
            live(d, 5, 5, 100, 10),
            live(d, 2, 2, 0, 10),
            live(d, 9, 3, 0, 10),
            live(d, 4, 4, 100, 10),
        ];
        let got = groups(segs, &Tombstones::default(), &TagKeys::new());
        assert_eq!(ids(&got), vec![vec![2, 9], vec![4, 5]]);
    }

    #[test]
    fn a_group_stops_at_the_byte_limit_and_at_an_erase_between_its_segments() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let big = MERGE_BYTES / 2 + 1;
        let segs = vec![
            live(d, 1, 1, 0, big),
            live(d, 2, 2, 0, big),
            live(d, 3, 3, 0, 5),
        ];
        assert_eq!(
            ids(&groups(
                segs.clone(),
                &Tombstones::default(),
                &TagKeys::new()
            )),
            vec![vec![1], vec![2, 3]]
        );
        // An erase made after segment 2 was written (mark 3) splits 2 from 3; one made before
        // every segment (mark 1) or after all of them (mark 4) does not.
        let small = vec![
            live(d, 4, 4, 0, 5),
            live(d, 5, 5, 0, 5),
            live(d, 6, 6, 0, 5),
        ];
        for (mark, want) in [
            (5, vec![vec![4], vec![5, 6]]),
            (4, vec![vec![4, 5, 6]]),
            (7, vec![vec![4, 5, 6]]),
        ] {
            let t = Tombstones {
                version: 1,
                next_id: 2,
                list: vec![Tombstone {
                    id: 1,
                    database: None,
                    device: "d".into(),
                    start: 0,
                    end: 1,
                    mark,
                    wal_cut: 0,
                }],
            };
            assert_eq!(
                ids(&groups(small.clone(), &t, &TagKeys::new())),
                want,
                "mark {mark}"
            );
        }
    }
}
