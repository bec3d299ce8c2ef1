//! The last-value cache: for every series and field, the latest `(time, value)` ever written
//! (the greatest timestamp; among equal timestamps the last write, as everywhere else).
//!
//! It lives in the engine state and is maintained under the same lock as the memtable: on every
//! write and WAL-replayed record ([`LastValues::apply`]), and at open from the segments
//! ([`LastValues::load_segment`]) before the WAL is replayed on top. Flush and compaction move data
//! between memtable and segments without changing it, so they leave the cache alone. A null never
//! replaces a value, and an out-of-order write older than the cached time leaves it unchanged.

use foldhash::HashMap;

use super::LiveSegment;
use crate::error::Result;
use crate::{FieldType, SeriesId, SeriesKey, TableWrite, Value};

/// The latest value of one field of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestValue {
    /// Timestamp of the value, ns.
    pub time: i64,
    /// The value.
    pub value: Value,
}

/// What to read from the last-value cache: one stream and a series filter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatestRequest {
    /// Database name.
    pub database: String,
    /// Stream name.
    pub stream: String,
    /// Only series of this device, when set.
    pub device: Option<String>,
    /// Only series carrying every one of these tag values.
    pub tags: Vec<(String, String)>,
}

/// The latest value of each field of one series, aligned with the stream's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesLatest {
    /// Series id.
    pub series_id: SeriesId,
    /// Series key (shared with the catalog).
    pub key: std::sync::Arc<SeriesKey>,
    /// `values[i]` is the latest value of field `i` of the stream schema, `None` if never written.
    pub values: Vec<Option<LatestValue>>,
}

/// Latest values by series, then by stream field id; `source` orders equal timestamps found in
/// different segments at open (higher segment id = newer write).
#[derive(Debug, Default)]
pub(crate) struct LastValues {
    series: HashMap<SeriesId, Vec<Option<Entry>>>,
}

#[derive(Debug, Clone)]
struct Entry {
    latest: LatestValue,
    /// Segment id the value came from at open; `u64::MAX` for writes (newer than any segment).
    source: u64,
}

/// [`LastValues::offer`] into the slots of one series.
fn offer_into(
    slots: &mut Vec<Option<Entry>>,
    fid: usize,
    latest: LatestValue,
    source: u64,
    width: usize,
) {
    if slots.len() <= fid {
        let len = width.max(fid + 1);
        slots.reserve_exact(len - slots.len());
        slots.resize(len, None);
    }
    let slot = &mut slots[fid];
    let newer = slot.as_ref().is_none_or(|e| {
        latest.time > e.latest.time || (latest.time == e.latest.time && source >= e.source)
    });
    if newer {
        *slot = Some(Entry { latest, source });
    }
}

/// For a batch whose series resolve to `series_ids`: `None` when they are all distinct (the
/// usual case), else for each batch series the first batch series with the same id.
fn first_of_each_series(series_ids: &[SeriesId]) -> Option<Vec<usize>> {
    let mut first: HashMap<SeriesId, usize> = HashMap::default();
    first.reserve(series_ids.len());
    let mut repeated = false;
    for (i, &sid) in series_ids.iter().enumerate() {
        repeated |= *first.entry(sid).or_insert(i) != i;
    }
    repeated.then(|| series_ids.iter().map(|sid| first[sid]).collect())
}

impl LastValues {
    /// The cached values of `sid`, one slot per field id (shorter when later fields were never set).
    pub fn get(&self, sid: SeriesId) -> Vec<Option<LatestValue>> {
        self.series
            .get(&sid)
            .map(|v| {
                v.iter()
                    .map(|e| e.as_ref().map(|e| e.latest.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records the rows of a validated table write (same arguments as `Memtable::apply`).
    pub fn apply(&mut self, table: &TableWrite, series_ids: &[SeriesId], field_ids: &[usize]) {
        let width = field_ids.iter().max().map_or(0, |&f| f + 1);
        let nseries = table.series.len();
        // A batch may list one series key twice: its rows then compete as one series.
        let canon = first_of_each_series(series_ids);
        let local = |s: u32| canon.as_ref().map_or(s as usize, |c| c[s as usize]);
        // best[c * nseries + s]: the row of column c's latest value in batch series s.
        let mut best: Vec<Option<usize>> = vec![None; table.columns.len() * nseries];
        for (col, best) in table.columns.iter().zip(best.chunks_mut(nseries.max(1))) {
            for (row, (&t, &s)) in table.times.iter().zip(&table.row_series).enumerate() {
                if !col.valid[row] {
                    continue;
                }
                let slot = &mut best[local(s)];
                // Later rows win ties: the last write of a timestamp is the one kept.
                if slot.is_none_or(|b| table.times[b] <= t) {
                    *slot = Some(row);
                }
            }
        }
        // One cache lookup per series, not per (series, field).
        for (local, &sid) in series_ids.iter().enumerate() {
            let rows = |c: usize| best[c * nseries + local];
            if (0..table.columns.len()).all(|c| rows(c).is_none()) {
                continue;
            }
            let slots = self.series.entry(sid).or_default();
            for (c, (col, &fid)) in table.columns.iter().zip(field_ids).enumerate() {
                if let Some(row) = rows(c) {
                    let value = LatestValue {
                        time: table.times[row],
                        value: col.data.value(row),
                    };
                    offer_into(slots, fid, value, u64::MAX, width);
                }
            }
        }
    }

    /// Forgets the cached values of `sid` whose time is in `[start, end)` (an erase).
    pub fn erase_range(&mut self, sid: SeriesId, start: i64, end: i64) {
        if let Some(slots) = self.series.get_mut(&sid) {
            for slot in slots.iter_mut() {
                if slot
                    .as_ref()
                    .is_some_and(|e| e.latest.time >= start && e.latest.time < end)
                {
                    *slot = None;
                }
            }
            if slots.iter().all(Option::is_none) {
                self.series.remove(&sid);
            }
        }
    }

    /// Offers a value read back from stored data; any cached value of the same time wins.
    pub fn offer_older(&mut self, sid: SeriesId, fid: usize, latest: LatestValue) {
        self.offer(sid, fid, latest, 0, fid + 1);
    }

    /// Keeps `latest` for (`sid`, `fid`) if it is newer than the cached value (ties: the newer source).
    /// A series' slots grow to exactly `width` (at least `fid + 1`): a cache entry per series must
    /// not carry the spare capacity of `Vec`'s doubling (a million series would pay for it).
    fn offer(&mut self, sid: SeriesId, fid: usize, latest: LatestValue, source: u64, width: usize) {
        offer_into(
            self.series.entry(sid).or_default(),
            fid,
            latest,
            source,
            width,
        );
    }

    /// Whether `seg` could hold a newer value for (`sid`, `fid`) than the cache, given that its
    /// data of the series ends at `max_time`.
    fn may_improve(&self, sid: SeriesId, fid: usize, max_time: i64, seg: u64) -> bool {
        match self
            .series
            .get(&sid)
            .and_then(|v| v.get(fid))
            .and_then(Option::as_ref)
        {
            None => true,
            Some(e) => max_time > e.latest.time || (max_time == e.latest.time && seg > e.source),
        }
    }

    /// Takes the latest value of every field of every series stored in a segment, decoding only
    /// the last block that holds each field (and only when the cache may improve).
    pub fn load_segment(
        &mut self,
        live: &LiveSegment,
        field_id: impl Fn(&str) -> Option<usize>,
    ) -> Result<()> {
        let seg = &live.segment;
        let series: Vec<SeriesId> = seg.series_ids().collect();
        for sid in series {
            for field in &seg.fields {
                let Some(fid) = field_id(&field.0) else {
                    continue;
                };
                self.load_field(live, sid, fid, field)?;
            }
        }
        Ok(())
    }

    fn load_field(
        &mut self,
        live: &LiveSegment,
        sid: SeriesId,
        fid: usize,
        field: &(String, FieldType),
    ) -> Result<()> {
        let seg = &live.segment;
        let stats = seg.field_stats(sid, &field.0);
        let Some(&(min, max, _)) = stats.iter().rev().find(|(_, _, s)| s.count > 0) else {
            return Ok(());
        };
        if !self.may_improve(sid, fid, max, live.meta.id) {
            return Ok(());
        }
        let Some(rows) = seg.read_series(sid, min, max, std::slice::from_ref(field))? else {
            return Ok(());
        };
        let Some(col) = rows.columns.first() else {
            return Ok(());
        };
        if let Some(i) = (0..rows.times.len()).rev().find(|&i| col.valid[i]) {
            let latest = LatestValue {
                time: rows.times[i],
                value: col.data.value(i),
            };
            self.offer(sid, fid, latest, live.meta.id, fid + 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Column;

    fn write(times: &[i64], series: &[u32], vals: &[Option<f64>]) -> TableWrite {
        let mut c = Column::new("v", FieldType::Float);
        for v in vals {
            match v {
                Some(x) => {
                    c.data.push_value(&Value::Float(*x));
                    c.valid.push(true);
                }
                None => c.push_null(),
            }
        }
        TableWrite {
            stream: "s".into(),
            series: vec![SeriesKey::default(), SeriesKey::default()],
            row_series: series.to_vec(),
            times: times.to_vec(),
            columns: vec![c],
        }
    }

    fn latest(l: &LastValues, sid: SeriesId) -> Option<(i64, Value)> {
        l.get(sid)
            .first()
            .cloned()
            .flatten()
            .map(|v| (v.time, v.value))
    }

    #[test]
    fn newest_time_wins_ties_go_to_the_later_write_and_nulls_are_skipped() {
        let mut l = LastValues::default();
        l.apply(
            &write(
                &[5, 3, 5, 9],
                &[0, 0, 0, 1],
                &[Some(1.0), Some(2.0), Some(3.0), None],
            ),
            &[10, 11],
            &[0],
        );
        assert_eq!(latest(&l, 10), Some((5, Value::Float(3.0))));
        assert_eq!(latest(&l, 11), None);
        l.apply(&write(&[4], &[0], &[Some(7.0)]), &[10, 11], &[0]);
        assert_eq!(
            latest(&l, 10),
            Some((5, Value::Float(3.0))),
            "older write ignored"
        );
        l.apply(&write(&[5], &[0], &[Some(8.0)]), &[10, 11], &[0]);
        assert_eq!(
            latest(&l, 10),
            Some((5, Value::Float(8.0))),
            "same time: last write"
        );
    }

    /// A batch listing one series twice: its rows compete as one series, and the later row of
    /// a shared time wins whichever batch series lists it (as in the memtable).
    #[test]
    fn a_series_listed_twice_in_a_batch_keeps_its_last_row() {
        let mut l = LastValues::default();
        l.apply(
            &write(&[10, 10], &[1, 0], &[Some(1.0), Some(2.0)]),
            &[7, 7],
            &[0],
        );
        assert_eq!(latest(&l, 7), Some((10, Value::Float(2.0))));
        l.apply(
            &write(
                &[20, 20, 15],
                &[0, 1, 0],
                &[Some(3.0), Some(4.0), Some(5.0)],
            ),
            &[7, 7],
            &[0],
        );
        assert_eq!(latest(&l, 7), Some((20, Value::Float(4.0))));
    }
}

#[cfg(test)]
mod engine_tests {
    //! The cache against a full scan after random writes, flushes, compactions and restarts.
    use crate::{
        Column, DEFAULT_DATABASE, Durability, Engine, EngineConfig, FieldType, LatestRequest,
        ScanRequest, SeriesKey, TableWrite, Value, WriteBatch,
    };
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// (device, time, a, b) rows.
        Write(Vec<(u8, i64, Option<i64>, Option<bool>)>),
        Flush,
        Compact,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        let row = (
            0u8..3,
            0i64..40,
            proptest::option::of(-5i64..5),
            proptest::option::of(any::<bool>()),
        );
        prop_oneof![
            6 => proptest::collection::vec(row, 1..8).prop_map(Op::Write),
            1 => Just(Op::Flush),
            1 => Just(Op::Compact),
            1 => Just(Op::Reopen),
        ]
    }

    fn batch(rows: &[(u8, i64, Option<i64>, Option<bool>)]) -> WriteBatch {
        let mut a = Column::new("a", FieldType::Integer);
        let mut b = Column::new("b", FieldType::Boolean);
        let mut times = Vec::new();
        let mut row_series = Vec::new();
        for (dev, t, va, vb) in rows {
            times.push(*t);
            row_series.push(u32::from(*dev));
            match va {
                Some(v) => {
                    a.data.push_value(&Value::Integer(*v));
                    a.valid.push(true);
                }
                None => a.push_null(),
            }
            match vb {
                Some(v) => {
                    b.data.push_value(&Value::Boolean(*v));
                    b.valid.push(true);
                }
                None => b.push_null(),
            }
        }
        WriteBatch {
            database: DEFAULT_DATABASE.into(),
            tables: vec![TableWrite {
                stream: "s".into(),
                series: (0..3)
                    .map(|d| SeriesKey {
                        device: format!("d{d}"),
                        tags: Vec::new(),
                    })
                    .collect(),
                row_series,
                times,
                columns: vec![a, b],
            }],
        }
    }

    type Latest = Vec<(String, Vec<Option<(i64, Value)>>)>;

    fn from_cache(e: &Engine) -> Latest {
        let req = LatestRequest {
            database: DEFAULT_DATABASE.into(),
            stream: "s".into(),
            ..LatestRequest::default()
        };
        let (fields, series) = e.latest(&req).unwrap();
        let mut out: Latest = series
            .into_iter()
            .map(|s| {
                let v = s.values.into_iter().map(|v| v.map(|l| (l.time, l.value)));
                (s.key.device.clone(), v.collect())
            })
            .collect();
        out.iter_mut()
            .for_each(|(_, v)| v.resize(fields.len(), None));
        out.sort_by(|x, y| x.0.cmp(&y.0));
        out
    }

    fn from_scan(e: &Engine) -> Latest {
        let req = ScanRequest {
            database: DEFAULT_DATABASE.into(),
            stream: "s".into(),
            start: i64::MIN,
            end: i64::MAX,
            ..ScanRequest::default()
        };
        let mut out: Latest = e
            .scan(&req)
            .unwrap()
            .into_iter()
            .map(|s| {
                let v = s.columns.iter().map(|c| {
                    (0..s.times.len())
                        .rev()
                        .find(|&i| c.valid[i])
                        .map(|i| (s.times[i], c.data.value(i)))
                });
                (s.key.device.clone(), v.collect())
            })
            .collect();
        out.sort_by(|x, y| x.0.cmp(&y.0));
        out
    }

    type Points = Vec<(String, Vec<i64>, Vec<Vec<Option<Value>>>)>;

    fn request(fields: Option<&[&str]>) -> ScanRequest {
        ScanRequest {
            database: DEFAULT_DATABASE.into(),
            stream: "s".into(),
            start: i64::MIN,
            end: i64::MAX,
            fields: fields.map(|f| f.iter().map(|s| s.to_string()).collect()),
            ..ScanRequest::default()
        }
    }

    fn points(batches: Vec<crate::SeriesBatch>, keep: &[&str]) -> Points {
        batches
            .into_iter()
            .map(|s| {
                let cols = s
                    .columns
                    .iter()
                    .filter(|c| keep.contains(&c.name.as_str()))
                    .map(|c| (0..s.times.len()).map(|i| c.get(i)).collect())
                    .collect();
                (s.key.device, s.times, cols)
            })
            .collect()
    }

    /// Every point, all fields decoded, then projected.
    fn projected_scan(e: &Engine, keep: &[&str]) -> Points {
        points(e.scan(&request(None)).unwrap(), keep)
    }

    /// Every point, only `keep` decoded.
    fn scan_rows(e: &Engine, keep: &[&str]) -> Points {
        points(e.scan_rows(&request(Some(keep))).unwrap(), keep)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn cache_equals_full_scan(ops in proptest::collection::vec(op(), 1..25)) {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = EngineConfig::new(dir.path());
            cfg.durability = Durability::None;
            cfg.background = false;
            cfg.partition_ns = 16;
            let mut engine = Engine::open(cfg.clone()).unwrap();
            for op in ops {
                match op {
                    Op::Write(rows) => {
                        engine.write(&batch(&rows)).unwrap();
                    }
                    Op::Flush => engine.flush().unwrap(),
                    Op::Compact => {
                        engine.compact().unwrap();
                    }
                    Op::Reopen => {
                        drop(engine);
                        engine = Engine::open(cfg.clone()).unwrap();
                    }
                }
                prop_assert_eq!(from_cache(&engine), from_scan(&engine));
                prop_assert_eq!(projected_scan(&engine, &["b"]), scan_rows(&engine, &["b"]));
                prop_assert_eq!(projected_scan(&engine, &[]), scan_rows(&engine, &[]));
            }
        }
    }
}
