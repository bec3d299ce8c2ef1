//! The series catalog: databases, streams with their schemas, series keys with dense ids, and the
//! roaring-bitmap tag index (device → series, tag value → series). Persisted by `catalog_log.rs` as
//! an append-only log written at each flush; series created later are rebuilt by WAL replay in the
//! same order, so ids are stable. The JSON snapshot read here (`DATA/catalog`) is the format of
//! older versions, converted to the log at open.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;

use foldhash::HashMap;
use hashbrown::HashTable;
use std::path::Path;

use roaring::RoaringBitmap;

use crate::error::{IoContext, Result, StorageError};
use crate::{FieldType, SeriesId, SeriesKey};

/// Dense id of a (database, stream).
pub(crate) type StreamId = u32;

/// One stream: its schema and series index. The series keys themselves live once, in
/// [`Catalog::series`]: the key and device tables hold only ids and find keys through it, so a
/// series costs its key once (a million one-point series: see `benches/memory/RESULTS.md`).
/// Read it through [`StreamView`], which pairs it with those keys.
#[derive(Debug, Default, Clone)]
pub(crate) struct StreamMeta {
    pub database: String,
    pub name: String,
    /// Fields in creation order; the position is the field id.
    pub fields: Vec<(String, FieldType)>,
    field_ids: HashMap<String, usize>,
    /// Hashes the key and device tables' keys (its own random seed per stream).
    hasher: foldhash::fast::RandomState,
    /// Series id by series key (the key read from the catalog's series list).
    lookup: HashTable<SeriesId>,
    pub all_series: RoaringBitmap,
    /// The series of each device (the device read from its first series' key).
    by_device: HashTable<DeviceSeries>,
    by_tag: HashMap<(String, String), RoaringBitmap>,
    tag_keys: BTreeSet<String>,
}

impl StreamMeta {
    /// The field's id, if the stream has it.
    pub fn field_id(&self, name: &str) -> Option<usize> {
        self.field_ids.get(name).copied()
    }

    fn add_field(&mut self, name: &str, ty: FieldType) -> usize {
        let id = self.fields.len();
        self.fields.push((name.to_string(), ty));
        self.field_ids.insert(name.to_string(), id);
        id
    }

    /// Indexes the new series `id`, whose entry `series[id]` holds `key`.
    fn index_series(&mut self, id: SeriesId, key: &SeriesKey, series: &[SeriesEntry]) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        self.lookup
            .insert_unique(hash, id, |&s| hasher.hash_one(key_of(series, s)));
        self.all_series.insert(id);
        let device_hash = hasher.hash_one(key.device.as_str());
        match (self.by_device).find_mut(device_hash, |d| d.device(series) == key.device) {
            Some(d) => d.insert(id),
            None => {
                let rehash = |d: &DeviceSeries| hasher.hash_one(d.device(series));
                self.by_device
                    .insert_unique(device_hash, DeviceSeries::one(id), rehash);
            }
        }
        for tag in &key.tags {
            self.by_tag.entry(tag.clone()).or_default().insert(id);
            if !self.tag_keys.contains(&tag.0) {
                self.tag_keys.insert(tag.0.clone());
            }
        }
    }

    /// Distinct tag names (other than the device) of the stream's series, sorted.
    pub fn tag_keys(&self) -> Vec<String> {
        self.tag_keys.iter().cloned().collect()
    }

    /// True when some series of the stream has tag `key` = `value`.
    pub fn has_tag_value(&self, key: &str, value: &str) -> bool {
        self.by_tag
            .contains_key(&(key.to_string(), value.to_string()))
    }

    /// Distinct values per tag key (the device excluded), for the per-tag value limit.
    pub fn tag_value_counts(&self) -> std::collections::HashMap<String, usize> {
        let mut out = std::collections::HashMap::new();
        for (key, _) in self.by_tag.keys() {
            *out.entry(key.clone()).or_insert(0) += 1;
        }
        out
    }
}

/// A stream together with the catalog's series keys, which its key and device tables need to
/// answer lookups. Dereferences to the [`StreamMeta`].
#[derive(Clone, Copy)]
pub(crate) struct StreamView<'a> {
    meta: &'a StreamMeta,
    series: &'a [SeriesEntry],
}

impl std::ops::Deref for StreamView<'_> {
    type Target = StreamMeta;

    fn deref(&self) -> &StreamMeta {
        self.meta
    }
}

impl<'a> StreamView<'a> {
    fn device(&self, device: &str) -> Option<&'a DeviceSeries> {
        let hash = self.meta.hasher.hash_one(device);
        (self.meta.by_device).find(hash, |d| d.device(self.series) == device)
    }

    /// Distinct devices of the stream's series, sorted.
    pub fn devices(&self) -> Vec<String> {
        let mut out: Vec<String> = (self.meta.by_device.iter())
            .map(|d| d.device(self.series).to_string())
            .collect();
        out.sort_unstable();
        out
    }

    /// Series matching an optional device and all given tag values (bitmap intersection).
    pub fn matching(&self, device: Option<&str>, tags: &[(String, String)]) -> RoaringBitmap {
        let mut set = match device {
            Some(d) => self
                .device(d)
                .map(DeviceSeries::to_bitmap)
                .unwrap_or_default(),
            None => self.meta.all_series.clone(),
        };
        for tag in tags {
            match self.meta.by_tag.get(tag) {
                Some(b) => set &= b,
                None => return RoaringBitmap::new(),
            }
        }
        set
    }

    /// The id of the series with `key`, if the stream has it.
    pub fn series_id(&self, key: &SeriesKey) -> Option<SeriesId> {
        let hash = self.meta.hasher.hash_one(key);
        (self.meta.lookup)
            .find(hash, |&s| key_of(self.series, s) == key)
            .copied()
    }
}

/// The series of one device in a stream: its first series, and a bitmap of all of them only
/// once there is a second (almost never for a device, so 16 bytes instead of a bitmap's 130).
#[derive(Debug, Clone)]
struct DeviceSeries {
    /// The device's first series (its key names the device).
    first: SeriesId,
    /// Every series of the device, once it has two or more.
    more: Option<Box<RoaringBitmap>>,
}

/// The key of series `id` in the catalog's series list.
fn key_of(series: &[SeriesEntry], id: SeriesId) -> &SeriesKey {
    &series[id as usize].key
}

impl DeviceSeries {
    /// The device's name, read from its first series' key.
    fn device<'a>(&self, series: &'a [SeriesEntry]) -> &'a str {
        &key_of(series, self.first).device
    }

    fn one(id: SeriesId) -> DeviceSeries {
        DeviceSeries {
            first: id,
            more: None,
        }
    }

    fn insert(&mut self, id: SeriesId) {
        match &mut self.more {
            None if self.first == id => {}
            None => self.more = Some(Box::new(RoaringBitmap::from_iter([self.first, id]))),
            Some(set) => {
                set.insert(id);
            }
        }
    }

    fn to_bitmap(&self) -> RoaringBitmap {
        match &self.more {
            None => RoaringBitmap::from_iter([self.first]),
            Some(set) => (**set).clone(),
        }
    }
}

/// Where a series lives.
#[derive(Debug, Clone)]
pub(crate) struct SeriesEntry {
    pub stream: StreamId,
    /// Shared with read snapshots, which take the keys of the series they read without
    /// copying their strings.
    pub key: std::sync::Arc<SeriesKey>,
}

/// All streams and series.
#[derive(Debug, Default, Clone)]
pub(crate) struct Catalog {
    pub streams: Vec<StreamMeta>,
    stream_ids: BTreeMap<(String, String), StreamId>,
    pub series: Vec<SeriesEntry>,
}

/// On-disk snapshot layout (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot {
    version: u32,
    streams: Vec<SnapshotStream>,
    series: Vec<SnapshotSeries>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotStream {
    database: String,
    name: String,
    fields: Vec<(String, FieldType)>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotSeries {
    stream: StreamId,
    device: String,
    tags: Vec<(String, String)>,
}

const SNAPSHOT_VERSION: u32 = 1;

impl Catalog {
    pub fn stream_id(&self, database: &str, stream: &str) -> Option<StreamId> {
        self.stream_ids
            .get(&(database.to_string(), stream.to_string()))
            .copied()
    }

    /// The stream `id` with the series keys its lookups need.
    pub fn stream(&self, id: StreamId) -> StreamView<'_> {
        StreamView {
            meta: &self.streams[id as usize],
            series: &self.series,
        }
    }

    /// Every stream, in id order.
    pub fn stream_views(&self) -> impl Iterator<Item = StreamView<'_>> + '_ {
        (0..self.streams.len() as StreamId).map(|id| self.stream(id))
    }

    /// Returns the stream's id, creating it when new.
    pub fn ensure_stream(&mut self, database: &str, stream: &str) -> StreamId {
        if let Some(id) = self.stream_id(database, stream) {
            return id;
        }
        let id = self.streams.len() as StreamId;
        self.streams.push(StreamMeta {
            database: database.to_string(),
            name: stream.to_string(),
            ..Default::default()
        });
        self.stream_ids
            .insert((database.to_string(), stream.to_string()), id);
        id
    }

    /// Checks a field against the stream's schema without changing anything.
    pub fn check_field(&self, stream: StreamId, name: &str, ty: FieldType) -> Result<()> {
        let meta = self.stream(stream);
        match meta.field_id(name) {
            Some(fid) if meta.fields[fid].1 != ty => Err(StorageError::SchemaConflict {
                database: meta.database.clone(),
                stream: meta.name.clone(),
                field: name.to_string(),
                existing: meta.fields[fid].1,
                requested: ty,
            }),
            _ => Ok(()),
        }
    }

    /// Returns the field id, adding the field when new. Call [`Catalog::check_field`] first.
    pub fn ensure_field(&mut self, stream: StreamId, name: &str, ty: FieldType) -> usize {
        let meta = &mut self.streams[stream as usize];
        meta.field_id(name)
            .unwrap_or_else(|| meta.add_field(name, ty))
    }

    /// Returns the series id, creating and indexing it when new.
    pub fn ensure_series(&mut self, stream: StreamId, key: &SeriesKey) -> SeriesId {
        if let Some(id) = self.stream(stream).series_id(key) {
            return id;
        }
        let id = self.series.len() as SeriesId;
        self.series.push(SeriesEntry {
            stream,
            key: std::sync::Arc::new(key.clone()),
        });
        self.streams[stream as usize].index_series(id, key, &self.series);
        id
    }

    pub fn databases(&self) -> Vec<String> {
        let mut dbs: Vec<String> = self.streams.iter().map(|s| s.database.clone()).collect();
        dbs.sort();
        dbs.dedup();
        dbs
    }

    pub fn streams_of(&self, database: &str) -> Vec<String> {
        self.stream_ids
            .keys()
            .filter(|(db, _)| db == database)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Writes the old JSON snapshot atomically (tests build older data directories with it).
    #[cfg(test)]
    pub fn save(&self, path: &Path) -> Result<()> {
        let snap = Snapshot {
            version: SNAPSHOT_VERSION,
            streams: self
                .streams
                .iter()
                .map(|s| SnapshotStream {
                    database: s.database.clone(),
                    name: s.name.clone(),
                    fields: s.fields.clone(),
                })
                .collect(),
            series: self
                .series
                .iter()
                .map(|s| SnapshotSeries {
                    stream: s.stream,
                    device: s.key.device.clone(),
                    tags: s.key.tags.clone(),
                })
                .collect(),
        };
        let json =
            serde_json::to_vec(&snap).map_err(|e| StorageError::InvalidInput(e.to_string()))?;
        crate::fsutil::write_atomic(
            path,
            &crate::fsutil::with_checksum_header("STRATA-CATALOG", &json),
        )
    }

    /// Loads an old JSON snapshot, or an empty catalog when the file does not exist.
    pub fn load(path: &Path) -> Result<Catalog> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Catalog::default()),
            Err(e) => return Err(e).at(path),
        };
        let json = crate::fsutil::check_checksum_header("STRATA-CATALOG", &bytes, path)?;
        let snap: Snapshot = serde_json::from_slice(json).map_err(|e| StorageError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "catalog version {} is not supported (expected {SNAPSHOT_VERSION})",
                    snap.version
                ),
            });
        }
        Self::from_snapshot(snap, path)
    }

    fn from_snapshot(snap: Snapshot, path: &Path) -> Result<Catalog> {
        let mut cat = Catalog::default();
        for s in snap.streams {
            let id = cat.ensure_stream(&s.database, &s.name);
            for (name, ty) in s.fields {
                cat.ensure_field(id, &name, ty);
            }
        }
        for s in snap.series {
            if s.stream as usize >= cat.streams.len() {
                return Err(StorageError::Corrupt {
                    path: path.to_path_buf(),
                    detail: format!("series refers to unknown stream {}", s.stream),
                });
            }
            cat.ensure_series(
                s.stream,
                &SeriesKey {
                    device: s.device,
                    tags: s.tags,
                },
            );
        }
        Ok(cat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trip_keeps_ids_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::default();
        let s = cat.ensure_stream("db", "cpu");
        cat.ensure_field(s, "v", FieldType::Float);
        let k1 = SeriesKey {
            device: "a".into(),
            tags: vec![("fleet".into(), "x".into())],
        };
        let k2 = SeriesKey {
            device: "b".into(),
            tags: vec![("fleet".into(), "y".into())],
        };
        assert_eq!(cat.ensure_series(s, &k1), 0);
        assert_eq!(cat.ensure_series(s, &k2), 1);
        let path = dir.path().join("catalog");
        cat.save(&path).unwrap();
        let back = Catalog::load(&path).unwrap();
        let meta = back.stream(back.stream_id("db", "cpu").unwrap());
        assert_eq!(meta.fields, vec![("v".to_string(), FieldType::Float)]);
        assert_eq!(
            meta.matching(Some("b"), &[]).iter().collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(
            meta.matching(None, &[("fleet".into(), "x".into())])
                .iter()
                .collect::<Vec<_>>(),
            vec![0]
        );
        assert!(back.check_field(0, "v", FieldType::Integer).is_err());
        assert_eq!(meta.tag_keys(), vec!["fleet".to_string()]);
        assert_eq!(meta.devices(), vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn tag_keys_and_devices_are_distinct_and_sorted() {
        let mut cat = Catalog::default();
        let s = cat.ensure_stream("db", "cpu");
        let key = |device: &str, tags: &[(&str, &str)]| SeriesKey {
            device: device.into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        cat.ensure_series(s, &key("z", &[("region", "eu"), ("rack", "1")]));
        cat.ensure_series(s, &key("a", &[("region", "us")]));
        cat.ensure_series(s, &key("a", &[("zone", "b")]));
        let other = cat.ensure_stream("db", "mem");
        let meta = cat.stream(s);
        assert_eq!(meta.tag_keys(), vec!["rack", "region", "zone"]);
        assert_eq!(meta.devices(), vec!["a", "z"]);
        assert!(cat.stream(other).tag_keys().is_empty());
        assert!(cat.stream(other).devices().is_empty());
    }

    #[test]
    fn a_device_with_one_then_many_series_matches_all_of_them() {
        let mut cat = Catalog::default();
        let s = cat.ensure_stream("db", "cpu");
        let key = |device: &str, core: &str| SeriesKey {
            device: device.into(),
            tags: vec![("core".into(), core.into())],
        };
        let ids = |cat: &Catalog, d: &str| {
            cat.stream(s)
                .matching(Some(d), &[])
                .iter()
                .collect::<Vec<_>>()
        };
        let a0 = cat.ensure_series(s, &key("a", "0"));
        let b0 = cat.ensure_series(s, &key("b", "0"));
        assert_eq!(ids(&cat, "a"), vec![a0]);
        // The same series again changes nothing; new ones join the device's set.
        assert_eq!(cat.ensure_series(s, &key("a", "0")), a0);
        let a1 = cat.ensure_series(s, &key("a", "1"));
        let a2 = cat.ensure_series(s, &key("a", "2"));
        assert_eq!(ids(&cat, "a"), vec![a0, a1, a2]);
        assert_eq!(ids(&cat, "b"), vec![b0]);
        assert!(ids(&cat, "c").is_empty());
        let meta = cat.stream(s);
        assert_eq!(
            meta.matching(Some("a"), &[("core".into(), "1".into())])
                .iter()
                .collect::<Vec<_>>(),
            vec![a1]
        );
    }

    #[test]
    fn the_same_keys_in_two_streams_stay_apart_through_table_growth() {
        // Keys live once in the series list; each stream's tables hold ids only, so lookups must
        // keep finding the right id as the tables grow and rehash, and never one of the other
        // stream's series with an equal key.
        let mut cat = Catalog::default();
        let (cpu, mem) = (
            cat.ensure_stream("db", "cpu"),
            cat.ensure_stream("db", "mem"),
        );
        let key = |i: usize| SeriesKey {
            device: format!("dev{}", i % 3_000),
            tags: vec![("core".into(), (i / 3_000).to_string())],
        };
        let mut ids = Vec::new();
        for i in 0..6_000 {
            ids.push((
                cat.ensure_series(cpu, &key(i)),
                cat.ensure_series(mem, &key(i)),
            ));
        }
        for (i, &(c, m)) in ids.iter().enumerate() {
            assert_ne!(c, m);
            assert_eq!(cat.stream(cpu).series_id(&key(i)), Some(c));
            assert_eq!(cat.stream(mem).series_id(&key(i)), Some(m));
            assert_eq!(
                cat.ensure_series(cpu, &key(i)),
                c,
                "no second id for a known key"
            );
            assert_eq!(cat.series[c as usize].stream, cpu);
        }
        assert_eq!(cat.series.len(), 12_000);
        let dev7 = |stream| cat.stream(stream).matching(Some("dev7"), &[]);
        assert_eq!(
            dev7(cpu).iter().collect::<Vec<_>>(),
            vec![ids[7].0, ids[3_007].0]
        );
        assert_eq!(
            dev7(mem).iter().collect::<Vec<_>>(),
            vec![ids[7].1, ids[3_007].1]
        );
        assert_eq!(cat.stream(cpu).devices().len(), 3_000);
        assert!(cat.stream(cpu).series_id(&key(6_000)).is_none());
        assert!(cat.stream(mem).matching(Some("dev3000"), &[]).is_empty());
    }
}
