//! The cold tier: Parquet objects in an object store (`file://`, `s3://`, `az://`, see
//! `objstore.rs`) and the cold manifest that lists them. The manifest lives in the store itself
//! as numbered objects `_strata/manifest/{n:020}.json` (checksummed JSON, a full list each),
//! each written with `PutMode::Create`: of two writers only one can create version n+1, so a
//! second writer learns it lost and retries on the newer list; a fresh node reads the highest
//! version. Objects are `{db}/{stream}/date=YYYY-MM-DD/{segment:016}-{unique}.parquet`.
//!
//! The storage engine is synchronous; every store call runs on this tier's own small tokio
//! runtime and the caller waits on a channel, so it is safe from any thread (including threads
//! of another runtime). Reads go through a bounded in-memory cache (`--cold-cache-mb`, least
//! recently used out first) of verified object bytes and of the row groups queries decoded from
//! them, with hit/miss counters: a warm read neither fetches nor decodes.

mod chunk;
pub(crate) mod decimal;
pub(crate) mod encode;
mod ints;
pub(crate) mod parquet;
pub(crate) mod ranged;
mod runs;

pub use ranged::ObjectParts;
pub(crate) use ranged::{Sparse, parts_and_crc};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::objstore::StoreUrl;

/// Header tag of a cold manifest object.
const TAG: &str = "STRATA-COLD-MANIFEST";
/// Version of the manifest JSON.
const VERSION: u32 = 1;
/// Manifest versions kept besides the newest (older ones are deleted after a commit).
const KEEP_VERSIONS: u64 = 3;

/// One cold object as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdObject {
    /// Key relative to the store prefix.
    pub key: String,
    /// Database.
    pub database: String,
    /// Stream.
    pub stream: String,
    /// Start of the time partition the rows belong to (ns).
    pub partition_start: i64,
    /// Oldest row (ns).
    pub min_time: i64,
    /// Newest row (ns).
    pub max_time: i64,
    /// Rows.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// CRC32C of the whole object.
    pub crc32c: u32,
    /// Age-order key of the segment it was moved from (reads merge by it, oldest first).
    pub seq: u64,
    /// Id of the local segment it was moved from (recovery completes an interrupted move).
    pub segment: u64,
    /// Byte ranges and checksums of its row groups and footer, which reads fetch and check on
    /// their own (`None` in entries written before them: such an object is read whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<ObjectParts>,
    /// The segments it was moved from when more than one (one window's, contiguous in age
    /// order; `segment` is the oldest, `seq` the greatest): recovery finishes an interrupted move
    /// of each. Empty when it came from `segment` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<MergedSegment>,
}

/// One of the local segments a cold object was merged from, as the local MANIFEST listed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedSegment {
    /// Segment id.
    pub segment: u64,
    /// Its age-order key.
    pub seq: u64,
    /// Its oldest row (ns).
    pub min_time: i64,
    /// Its newest row (ns).
    pub max_time: i64,
    /// Its rows.
    pub rows: u64,
}

impl ColdObject {
    /// The local segments it was moved from, as the local MANIFEST listed them.
    pub fn sources(&self) -> Vec<MergedSegment> {
        if !self.merged.is_empty() {
            return self.merged.clone();
        }
        vec![MergedSegment {
            segment: self.segment,
            seq: self.seq,
            min_time: self.min_time,
            max_time: self.max_time,
            rows: self.rows,
        }]
    }
}

/// The cold manifest: every live cold object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColdManifest {
    /// Format version.
    pub version: u32,
    /// Manifest sequence number (the object's number).
    pub number: u64,
    /// Live objects.
    pub objects: Vec<ColdObject>,
    /// Keys of objects an earlier version listed and a later one dropped (an erase rewrite
    /// replaced them, retention expired them) that may not be deleted yet: a read that began
    /// before the drop may still be fetching them. Open deletes them (no read is running then);
    /// a running node deletes them once no snapshot holds them and leaves them out of the next
    /// version. Absent in manifests written before 2026-12-07 (session 24).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<String>,
}

/// Counters of the cold tier (for `/metrics` and the status).
#[derive(Debug, Default)]
pub struct ColdCounters {
    /// Reads answered from the cache.
    pub cache_hits: AtomicU64,
    /// Reads that fetched the object.
    pub cache_misses: AtomicU64,
    /// Objects written by moves since start.
    pub objects_moved: AtomicU64,
    /// Segment bytes moved since start.
    pub segment_bytes_moved: AtomicU64,
    /// Object bytes written since start.
    pub object_bytes_written: AtomicU64,
    /// Failed moves since start.
    pub move_errors: AtomicU64,
    /// Objects that failed their checksum when read.
    pub corrupt_objects: AtomicU64,
    /// Row groups a read took already decoded from the cache.
    pub decoded_hits: AtomicU64,
}

/// A cached object: its verified bytes, the tick of its last use, and its parsed footer once a
/// read asked for it.
type CacheEntry = (bytes::Bytes, u64, Option<Arc<parquet::ObjectIndex>>);

/// The rows of one decoded row group by series key (tags sorted by name).
pub(crate) type DecodedGroup = Arc<HashMap<crate::SeriesKey, crate::rows::Rows>>;

/// A cached decoded row group: its rows, the tick of its last use, and the bytes it is counted as.
type GroupEntry = (DecodedGroup, u64, usize);

/// Bounded cache of verified object bytes (and their parsed footers, which a warm read then
/// does not parse again; they are not counted against the limit: a few KB per object), and of
/// row groups decoded from them, keyed by object and by what was decoded (group, fields, device).
/// Both count against one limit; the least recently used entry of either kind leaves first.
#[derive(Debug, Default)]
struct Cache {
    limit: usize,
    used: usize,
    tick: u64,
    entries: HashMap<String, CacheEntry>,
    groups: HashMap<(String, String), GroupEntry>,
}

impl Cache {
    fn get(&mut self, key: &str) -> Option<bytes::Bytes> {
        self.get_indexed(key).map(|(b, _)| b)
    }

    fn get_indexed(
        &mut self,
        key: &str,
    ) -> Option<(bytes::Bytes, Option<Arc<parquet::ObjectIndex>>)> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(b, t, i)| {
            *t = tick;
            (b.clone(), i.clone())
        })
    }

    /// Whether `key` is cached (not a use: its place in the eviction order stays).
    fn holds(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Keeps `index` with the cached bytes of `key` (if they are still cached).
    fn set_index(&mut self, key: &str, index: Arc<parquet::ObjectIndex>) {
        if let Some(e) = self.entries.get_mut(key) {
            e.2 = Some(index);
        }
    }

    fn put(&mut self, key: &str, bytes: bytes::Bytes) {
        if !self.make_room(bytes.len()) {
            return;
        }
        self.tick += 1;
        self.used += bytes.len();
        if let Some((old, _, _)) = self
            .entries
            .insert(key.to_string(), (bytes, self.tick, None))
        {
            self.used -= old.len();
        }
    }

    /// The row group decoded as `spec` from object `key`, if cached.
    fn get_group(&mut self, key: &str, spec: &str) -> Option<DecodedGroup> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.groups.get_mut(&(key.to_string(), spec.to_string()))?;
        entry.1 = tick;
        Some(entry.0.clone())
    }

    fn put_group(&mut self, key: &str, spec: String, rows: DecodedGroup, bytes: usize) {
        if !self.make_room(bytes) {
            return;
        }
        self.tick += 1;
        self.used += bytes;
        if let Some((_, _, old)) = self
            .groups
            .insert((key.to_string(), spec), (rows, self.tick, bytes))
        {
            self.used -= old;
        }
    }

    /// Evicts least recently used entries until `bytes` more fit; false when they never can.
    fn make_room(&mut self, bytes: usize) -> bool {
        if bytes > self.limit {
            return false;
        }
        while self.used + bytes > self.limit {
            let object: Option<(u64, String)> = (self.entries.iter())
                .min_by_key(|(_, (_, t, _))| *t)
                .map(|(k, (_, t, _))| (*t, k.clone()));
            let group: Option<(u64, (String, String))> = (self.groups.iter())
                .min_by_key(|(_, (_, t, _))| *t)
                .map(|(k, (_, t, _))| (*t, k.clone()));
            match (object, group) {
                (Some((a, k)), Some((b, _))) if a <= b => self.remove_bytes(&k),
                (Some((_, k)), None) => self.remove_bytes(&k),
                (_, Some((_, g))) => {
                    if let Some((_, _, n)) = self.groups.remove(&g) {
                        self.used -= n;
                    }
                }
                (None, None) => break,
            }
        }
        true
    }

    fn remove_bytes(&mut self, key: &str) {
        if let Some((b, _, _)) = self.entries.remove(key) {
            self.used -= b.len();
        }
    }

    /// Forgets an object: its bytes, its parts and every row group decoded from it.
    fn remove(&mut self, key: &str) {
        let parts: Vec<String> = (self.entries.keys())
            .filter(|k| {
                k.strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('\u{0}'))
            })
            .cloned()
            .collect();
        for k in std::iter::once(key).chain(parts.iter().map(String::as_str)) {
            self.remove_bytes(k);
        }
        let mut freed = 0;
        self.groups.retain(|(k, _), (_, _, n)| {
            let keep = k != key;
            if !keep {
                freed += *n;
            }
            keep
        });
        self.used -= freed;
    }
}

/// How a cold-manifest commit failed.
#[derive(Debug)]
pub(crate) enum CommitFailure {
    /// Not committed: another writer holds the number, or the put failed and did not land.
    Refused(StorageError),
    /// The put failed and the store could not be asked whether it landed: an object the new
    /// version names must be kept (it may be committed); the next run reloads the manifest.
    Unknown(StorageError),
}

impl CommitFailure {
    /// The error inside.
    pub(crate) fn into_error(self) -> StorageError {
        match self {
            CommitFailure::Refused(e) | CommitFailure::Unknown(e) => e,
        }
    }
}

/// An open cold tier.
#[derive(Debug)]
pub struct ColdTier {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// Always `Some` until drop (taken there to shut it down without blocking).
    runtime: Option<tokio::runtime::Runtime>,
    /// The runtime of [`ColdTier::put_verified`] (its writes and their checks), whose threads
    /// run at `priority::Nice::Maintenance`; `Some` until drop.
    bulk: Option<tokio::runtime::Runtime>,
    cache: Mutex<Cache>,
    /// Counters.
    pub counters: ColdCounters,
    /// The last error a move or read met (cleared by a successful move), for the status.
    pub last_error: Mutex<Option<String>>,
    /// Set when a move, rewrite or retention step failed part-way: the store may hold an
    /// object no manifest names, or a manifest version this node did not see commit. The next
    /// maintenance run reloads the manifest and removes such objects before moving.
    pub(crate) reconcile_pending: std::sync::atomic::AtomicBool,
    /// Objects up to this many bytes are fetched whole ([`ranged::WHOLE_BELOW`]; tests lower
    /// it to read small objects by parts).
    pub(crate) whole_below: AtomicU64,
    /// Objects the committed manifest no longer lists, still to be deleted: each is deleted
    /// once this list holds its only reference, i.e. no read snapshot is using it
    /// (`engine/cold_retire.rs`).
    pub(crate) retired: Mutex<Vec<std::sync::Arc<ColdObject>>>,
}

fn store_error(url: &str, what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Cold(format!("cold store {url}: {what}: {e}"))
}

impl ColdTier {
    /// Opens the store named by `url` with a cache of `cache_bytes`.
    pub fn open(url: &str, cache_bytes: usize) -> Result<ColdTier> {
        let parsed = StoreUrl::parse(url)?;
        let (store, prefix) = parsed.open()?;
        #[cfg(test)]
        let store = crate::objfaults::wrap(url, store);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-cold")
            .enable_all()
            .build()
            .map_err(|e| store_error(url, "cannot start its runtime", e))?;
        // Writes (moves, rewrites) copy whole objects: their threads, the local store's blocking
        // writes included, run below request threads, as the maintenance that asks for them.
        let bulk = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("strata-cold-write")
            .on_thread_start(|| crate::priority::lower(crate::priority::Nice::Maintenance))
            .enable_all()
            .build()
            .map_err(|e| store_error(url, "cannot start its runtime", e))?;
        Ok(ColdTier {
            url: url.to_string(),
            store,
            prefix,
            runtime: Some(runtime),
            bulk: Some(bulk),
            cache: Mutex::new(Cache {
                limit: cache_bytes,
                ..Cache::default()
            }),
            counters: ColdCounters::default(),
            last_error: Mutex::new(None),
            reconcile_pending: std::sync::atomic::AtomicBool::new(false),
            whole_below: AtomicU64::new(ranged::WHOLE_BELOW),
            retired: Mutex::new(Vec::new()),
        })
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `f` on the tier's runtime and waits for it (from any thread).
    fn block<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        on(&self.runtime, f)
    }

    /// Runs `f` on the tier's runtime for writes (at maintenance priority) and waits for it.
    fn block_bulk<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        on(&self.bulk, f)
    }

    fn path(&self, key: &str) -> ObjectPath {
        let mut p = self.prefix.clone();
        for part in key.split('/') {
            p = p.join(part);
        }
        p
    }

    fn manifest_path(&self, number: u64) -> ObjectPath {
        self.path(&format!("_strata/manifest/{number:020}.json"))
    }

    /// Loads the newest manifest (an empty one, number 0, when the store has none).
    pub fn load_manifest(&self) -> Result<ColdManifest> {
        let store = self.store.clone();
        let dir = self.path("_strata/manifest");
        let listed = self.block(async move {
            let mut names = Vec::new();
            let mut s = store.list(Some(&dir));
            while let Some(m) = s.next().await {
                names.push(m?.location);
            }
            Ok::<_, object_store::Error>(names)
        });
        let listed = listed.map_err(|e| store_error(&self.url, "cannot list the manifest", e))?;
        let newest = listed
            .iter()
            .filter_map(|p| p.filename()?.strip_suffix(".json")?.parse::<u64>().ok())
            .max();
        let Some(number) = newest else {
            return Ok(ColdManifest {
                version: VERSION,
                ..ColdManifest::default()
            });
        };
        let path = self.manifest_path(number);
        let bytes = self
            .get_raw(&path)
            .map_err(|e| store_error(&self.url, &format!("cannot read manifest {path}"), e))?;
        let where_ = std::path::PathBuf::from(format!("{}/{path}", self.url));
        let body = crate::fsutil::check_checksum_header(TAG, &bytes, &where_)?;
        let m: ColdManifest = serde_json::from_slice(body).map_err(|e| StorageError::Corrupt {
            path: where_.clone(),
            detail: e.to_string(),
        })?;
        if m.version != VERSION || m.number != number {
            return Err(StorageError::Corrupt {
                path: where_,
                detail: format!(
                    "manifest version {} number {} (expected version {VERSION}, number {number})",
                    m.version, m.number
                ),
            });
        }
        Ok(m)
    }

    /// Writes `next` as manifest number `next.number` with `PutMode::Create`: fails (and
    /// changes nothing) when that number exists already, i.e. another writer committed first.
    /// Deletes versions older than the last few (best effort). See [`ColdTier::try_commit`].
    pub fn commit_manifest(&self, next: &ColdManifest) -> Result<()> {
        self.try_commit(next).map_err(CommitFailure::into_error)
    }

    /// [`ColdTier::commit_manifest`], telling a refused commit from one whose outcome is
    /// unknown. A put that reports an error is checked by reading version `next.number` back:
    /// when it holds exactly these bytes the put landed and only its answer was lost (a
    /// timeout, or a client retry that met its own write as "already exists"), which is a
    /// commit.
    pub(crate) fn try_commit(&self, next: &ColdManifest) -> std::result::Result<(), CommitFailure> {
        let body = serde_json::to_vec(next).map_err(|e| {
            CommitFailure::Refused(StorageError::Internal(format!(
                "cold manifest encoding: {e}"
            )))
        })?;
        let bytes = bytes::Bytes::from(crate::fsutil::with_checksum_header(TAG, &body));
        let path = self.manifest_path(next.number);
        let store = self.store.clone();
        let (p, b) = (path.clone(), bytes.clone());
        let put = self.block(async move {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            store.put_opts(&p, b.into(), opts).await
        });
        if let Err(e) = put {
            self.check_lost_answer(&path, &bytes, next.number, e)?;
        }
        if next.number > KEEP_VERSIONS {
            let old = self.manifest_path(next.number - KEEP_VERSIONS - 1);
            let store = self.store.clone();
            let _ = self.block(async move { store.delete(&old).await });
        }
        Ok(())
    }

    /// After a failed manifest put: `Ok` when the store holds exactly `bytes` at `path` (the
    /// put landed), `Refused` when it holds something else (another writer won the number),
    /// `Unknown` when it holds nothing or cannot be read: a put whose answer was lost (a
    /// client timeout) may still land after this read, naming the move's object, so the
    /// object must be kept until a later run's reconciliation sees which way it went.
    fn check_lost_answer(
        &self,
        path: &ObjectPath,
        bytes: &bytes::Bytes,
        number: u64,
        e: object_store::Error,
    ) -> std::result::Result<(), CommitFailure> {
        match self.get_raw(path) {
            Ok(stored) if stored == *bytes => {
                tracing::warn!(manifest = %path, error = %e, "a cold manifest put reported an error but landed: committed");
                Ok(())
            }
            Err(object_store::Error::NotFound { .. }) => Err(CommitFailure::Unknown(store_error(
                &self.url,
                &format!(
                    "cannot write {path}; it is not in the store now, but a write whose answer was lost may still land, so the next run reconciles"
                ),
                e,
            ))),
            Ok(_) => Err(CommitFailure::Refused(match e {
                object_store::Error::AlreadyExists { .. } => StorageError::Cold(format!(
                    "cold store {}: manifest {number} was written by another writer first; the move is retried on the newer manifest",
                    self.url
                )),
                e => store_error(&self.url, &format!("cannot write {path}"), e),
            })),
            Err(check) => Err(CommitFailure::Unknown(store_error(
                &self.url,
                &format!(
                    "cannot write {path}, and cannot read it back to learn whether it was written ({check}); the next run reconciles"
                ),
                e,
            ))),
        }
    }

    fn get_raw(&self, path: &ObjectPath) -> std::result::Result<bytes::Bytes, object_store::Error> {
        self.block(get_bytes(self.store.clone(), path.clone()))
    }

    /// Writes an object (`PutMode::Create`: a key is never overwritten) and verifies it: the
    /// size the store reports and the CRC32C of the bytes read back must match what was sent
    /// (`bytes`, whose CRC32C the caller gives as `sent_crc32c`).
    pub fn put_verified(&self, key: &str, bytes: bytes::Bytes, sent_crc32c: u32) -> Result<()> {
        let path = self.path(key);
        let store = self.store.clone();
        let (p, b) = (path.clone(), bytes.clone());
        self.block_bulk(async move {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            store.put_opts(&p, b.into(), opts).await
        })
        .map_err(|e| store_error(&self.url, &format!("cannot write {key}"), e))?;
        crate::fsutil::step(std::path::Path::new(&self.url), "cold-object-written");
        let store = self.store.clone();
        let p = path.clone();
        let size = self
            .block_bulk(async move { store.head(&p).await })
            .map_err(|e| store_error(&self.url, &format!("cannot check {key}"), e))?
            .size;
        let back = self
            .block_bulk(get_bytes(self.store.clone(), path))
            .map_err(|e| store_error(&self.url, &format!("cannot read back {key}"), e))?;
        let (want, got) = (sent_crc32c, crc32c::crc32c(&back));
        if size != bytes.len() as u64 || got != want {
            return Err(StorageError::Cold(format!(
                "cold store {}: {key} did not verify after writing ({} bytes stored of {}, checksum {})",
                self.url,
                size,
                bytes.len(),
                if got == want { "ok" } else { "mismatch" }
            )));
        }
        Ok(())
    }

    /// Deletes an object (best effort: a leftover is found by [`ColdTier::list_objects`]).
    pub fn delete(&self, key: &str) -> Result<()> {
        self.cache.lock().map_err(|_| poisoned())?.remove(key);
        let store = self.store.clone();
        let p = self.path(key);
        match self.block(async move { store.delete(&p).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(&self.url, &format!("cannot delete {key}"), e)),
        }
    }

    /// Keys (relative to the prefix) of every `.parquet` object in the store.
    pub fn list_objects(&self) -> Result<Vec<String>> {
        let store = self.store.clone();
        let prefix = self.prefix.clone();
        let listed = self.block(async move {
            let mut names = Vec::new();
            let mut s = store.list(Some(&prefix));
            while let Some(m) = s.next().await {
                names.push(m?.location);
            }
            Ok::<_, object_store::Error>(names)
        });
        let listed = listed.map_err(|e| store_error(&self.url, "cannot list objects", e))?;
        let skip = self.prefix.parts().count();
        Ok(listed
            .into_iter()
            .filter_map(|p| {
                p.prefix_matches(&self.prefix).then_some(())?;
                let key = key_of_location(&p, skip)?;
                key.ends_with(".parquet").then_some(key)
            })
            .collect())
    }

    /// The verified bytes of `object`, from the cache or the store. A checksum mismatch is a
    /// `Corrupt` error naming the object (counted; the bytes are never returned).
    pub fn fetch(&self, object: &ColdObject) -> Result<bytes::Bytes> {
        if let Some(b) = self.cache.lock().map_err(|_| poisoned())?.get(&object.key) {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(b);
        }
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        let bytes = self
            .get_raw(&self.path(&object.key))
            .map_err(|e| store_error(&self.url, &format!("cannot read {}", object.key), e))?;
        if bytes.len() as u64 != object.bytes || crc32c::crc32c(&bytes) != object.crc32c {
            return Err(self.damaged(
                object,
                format!(
                    "{} bytes with checksum {:08x}, the manifest says {} bytes with {:08x}",
                    bytes.len(),
                    crc32c::crc32c(&bytes),
                    object.bytes,
                    object.crc32c
                ),
            ));
        }
        self.cache
            .lock()
            .map_err(|_| poisoned())?
            .put(&object.key, bytes.clone());
        Ok(bytes)
    }

    /// [`ColdTier::fetch`] with the object's parsed footer, kept in the cache beside the bytes
    /// (a warm read neither fetches nor parses). A footer that does not parse is `Corrupt`.
    pub(crate) fn fetch_indexed(
        &self,
        object: &ColdObject,
    ) -> Result<(bytes::Bytes, Arc<parquet::ObjectIndex>)> {
        let cached = self
            .cache
            .lock()
            .map_err(|_| poisoned())?
            .get_indexed(&object.key);
        let bytes = match cached {
            Some((bytes, Some(index))) => {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok((bytes, index));
            }
            Some((bytes, None)) => {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                bytes
            }
            None => self.fetch(object)?,
        };
        let index = Arc::new(
            parquet::index(&bytes)
                .map_err(|e| self.corrupt(object, format!("cannot read its footer: {e}")))?,
        );
        self.cache
            .lock()
            .map_err(|_| poisoned())?
            .set_index(&object.key, index.clone());
        Ok((bytes, index))
    }

    /// The row group decoded as `spec` (which names the group and what was decoded of it) from
    /// `object`, if the cache holds it (counted as a decoded hit).
    pub(crate) fn decoded_group(&self, object: &ColdObject, spec: &str) -> Option<DecodedGroup> {
        let hit = self.cache.lock().ok()?.get_group(&object.key, spec);
        if hit.is_some() {
            self.counters.decoded_hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Keeps a row group decoded as `spec` from `object`, counted as `bytes` against the cache.
    pub(crate) fn keep_decoded(
        &self,
        object: &ColdObject,
        spec: String,
        rows: DecodedGroup,
        bytes: usize,
    ) {
        if let Ok(mut c) = self.cache.lock() {
            c.put_group(&object.key, spec, rows, bytes);
        }
    }

    /// The fields and series keys `object` holds, from its footer and its `device` and tag
    /// columns only (ranged requests). Not checksummed: only the catalog learns from it, rows
    /// are always read through [`ColdTier::fetch`], which verifies them.
    pub fn series_of(&self, object: &ColdObject) -> Result<parquet::ObjectKeys> {
        let store = self.store.clone();
        let path = self.path(&object.key);
        let size = object.bytes;
        self.block(async move { parquet::keys_of(store, path, size).await })
            .map_err(|e| StorageError::Corrupt {
                path: std::path::PathBuf::from(format!("{}/{}", self.url, object.key)),
                detail: format!("cannot read its series: {e}"),
            })
    }

    /// Records an error for the status.
    pub fn record_error(&self, msg: &str) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(msg.to_string());
        }
    }
}

impl Drop for ColdTier {
    /// Shuts the runtimes down without blocking (the engine may be dropped on an async thread).
    fn drop(&mut self) {
        for rt in [self.runtime.take(), self.bulk.take()]
            .into_iter()
            .flatten()
        {
            rt.shutdown_background();
        }
    }
}

/// The whole object at `path`.
async fn get_bytes(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
) -> std::result::Result<bytes::Bytes, object_store::Error> {
    store.get(&path).await?.bytes().await
}

/// Runs `f` on `runtime` and waits for it (from any thread).
fn on<T: Send + 'static>(
    runtime: &Option<tokio::runtime::Runtime>,
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    if let Some(rt) = runtime {
        rt.spawn(async move {
            let _ = tx.send(f.await);
        });
    }
    rx.recv()
        .expect("the cold-tier runtime is running until drop")
}

fn poisoned() -> StorageError {
    StorageError::Internal("cold-tier lock poisoned by an earlier panic".into())
}

/// `YYYY-MM-DD` (UTC) of a time in ns.
pub(crate) fn date_of(ns: i64) -> String {
    let (y, m, d) = crate::damaged::civil_from_days(ns.div_euclid(86_400_000_000_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The key of a listed object: its parts after the prefix's `skip`, each decoded from the
/// escaping [`ObjectPath`] applies to a part (a key part `cpu%20load` is stored as
/// `cpu%2520load`), so listed names compare equal to the keys manifests record; `None` for a
/// name that is not UTF-8 once decoded (never one of ours).
fn key_of_location(location: &ObjectPath, skip: usize) -> Option<String> {
    let parts: Option<Vec<String>> = location
        .parts()
        .skip(skip)
        .map(|part| {
            percent_encoding::percent_decode_str(part.as_ref())
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .collect();
    Some(parts?.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(rows: usize) -> DecodedGroup {
        let r = crate::rows::Rows {
            times: (0..rows as i64).collect(),
            columns: Vec::new(),
        };
        Arc::new(HashMap::from([(crate::SeriesKey::default(), r)]))
    }

    #[test]
    fn the_cache_keeps_bytes_and_decoded_groups_under_one_limit() {
        let mut c = Cache {
            limit: 100,
            ..Cache::default()
        };
        c.put("a", bytes::Bytes::from(vec![0u8; 40]));
        c.put_group("a", "g0".into(), group(1), 30);
        c.put_group("b", "g0".into(), group(2), 20);
        assert_eq!(c.used, 90);
        // Touch the object `a`: the least recently used entry is now a's group.
        assert!(c.get("a").is_some());
        c.put_group("b", "g1".into(), group(3), 30);
        assert_eq!(c.used, 90);
        assert!(c.get_group("a", "g0").is_none(), "the oldest entry left");
        assert_eq!(
            c.get_group("b", "g0")
                .unwrap()
                .values()
                .next()
                .unwrap()
                .times
                .len(),
            2
        );
        // Forgetting an object drops its bytes and every group decoded from it.
        c.remove("b");
        assert_eq!(c.used, 40);
        assert!(c.get_group("b", "g1").is_none());
        // What can never fit is not kept, and evicts nothing.
        c.put_group("c", "g0".into(), group(1), 101);
        assert_eq!(c.used, 40);
        assert!(c.get("a").is_some());
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_700_000_000_000_000_000), "2023-11-14");
        assert_eq!(date_of(-1), "1969-12-31");
        assert_eq!(date_of(951_782_400_000_000_000), "2000-02-29");
    }

    #[test]
    fn the_manifest_is_created_once_per_number() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let a = ColdTier::open(&url, 1 << 20).unwrap();
        let b = ColdTier::open(&url, 1 << 20).unwrap();
        let mut m = a.load_manifest().unwrap();
        assert_eq!(m.number, 0);
        m.number = 1;
        a.commit_manifest(&m).unwrap();
        let mut other = m.clone();
        other.objects.push(ColdObject {
            key: "db/s/date=2023-11-14/1-x.parquet".into(),
            database: "db".into(),
            stream: "s".into(),
            partition_start: 0,
            min_time: 0,
            max_time: 0,
            rows: 0,
            bytes: 0,
            crc32c: 0,
            seq: 1,
            segment: 1,
            parts: Some(ObjectParts {
                footer_at: 4,
                footer_crc32c: 0,
                groups: vec![],
                first_devices: vec!["a".into()],
            }),
            merged: Vec::new(),
        });
        let e = b.commit_manifest(&other).unwrap_err().to_string();
        assert!(e.contains("another writer"), "{e}");
        assert_eq!(b.load_manifest().unwrap(), m);
        // The same bytes again (a retried put that meets its own write) are that commit.
        b.commit_manifest(&m).unwrap();
        assert_eq!(a.load_manifest().unwrap(), m);
    }

    /// Writes run on threads below request priority (nice 10 or more), reads do not change.
    #[cfg(target_os = "linux")]
    #[test]
    fn writes_run_at_maintenance_priority() {
        let dir = tempfile::tempdir().unwrap();
        let t = ColdTier::open(&format!("file://{}", dir.path().display()), 0).unwrap();
        let bytes = bytes::Bytes::from_static(b"PAR1 x PAR1");
        t.put_verified("db/s/a.parquet", bytes.clone(), crc32c::crc32c(&bytes))
            .unwrap();
        // A sent CRC that is not the bytes' is a failed check.
        let e = t.put_verified("db/s/b.parquet", bytes, 7).unwrap_err();
        assert!(e.to_string().contains("did not verify"), "{e}");
        let mut writers = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("strata-cold-wri") {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let after_name = &stat[stat.rfind(')').unwrap_or(0) + 1..];
            let nice: i32 = after_name
                .split_whitespace()
                .nth(16)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!(nice >= 10, "a cold write thread at nice {nice}");
            writers += 1;
        }
        assert!(writers >= 1, "no cold write thread seen");
    }

    #[test]
    fn a_damaged_object_is_refused_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let t = ColdTier::open(&url, 0).unwrap();
        let bytes = bytes::Bytes::from_static(b"PAR1 not really parquet PAR1");
        t.put_verified(
            "db/s/date=2023-11-14/1-x.parquet",
            bytes.clone(),
            crc32c::crc32c(&bytes),
        )
        .unwrap();
        let obj = ColdObject {
            key: "db/s/date=2023-11-14/1-x.parquet".into(),
            database: "db".into(),
            stream: "s".into(),
            partition_start: 0,
            min_time: 0,
            max_time: 0,
            rows: 0,
            bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
            seq: 1,
            segment: 1,
            parts: None,
            merged: Vec::new(),
        };
        assert_eq!(t.fetch(&obj).unwrap(), bytes);
        std::fs::write(dir.path().join(&obj.key), b"PAR1 not really parquEt PAR1").unwrap();
        let e = t.fetch(&obj).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        assert_eq!(t.counters.corrupt_objects.load(Ordering::Relaxed), 1);
        assert_eq!(t.list_objects().unwrap(), vec![obj.key.clone()]);
    }

    /// Keys whose stream part is percent-encoded (`cpu%20load` for `cpu load`) are listed as
    /// the manifest records them, under a prefix or not, though the store escapes the `%`.
    #[test]
    fn listed_objects_come_back_as_their_keys() {
        for prefix in ["", "/tier/a"] {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("file://{}{prefix}", dir.path().display());
            std::fs::create_dir_all(format!("{}{prefix}", dir.path().display())).unwrap();
            let t = ColdTier::open(&url, 0).unwrap();
            let keys = [
                "db/cpu%20load/date=2023-11-14/1-x.parquet",
                "db/temp%C2%B0C%3Aa/date=2023-11-14/2-y.parquet",
            ];
            for key in keys {
                t.put_verified(
                    key,
                    bytes::Bytes::from_static(b"PAR1 x PAR1"),
                    crc32c::crc32c(b"PAR1 x PAR1"),
                )
                .unwrap();
            }
            let mut listed = t.list_objects().unwrap();
            listed.sort();
            let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            want.sort();
            assert_eq!(listed, want, "prefix {prefix:?}");
            t.delete(keys[0]).unwrap();
            assert_eq!(t.list_objects().unwrap(), vec![keys[1].to_string()]);
        }
    }
}
