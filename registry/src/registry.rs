//! The [`Registry`] handle: opening the database, event subscribers, the background
//! last-seen flusher and shared helpers used by the other modules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

use crate::cache::{IdentityCache, TokenCache};
use crate::error::{RegistryError, Result};
use crate::model::RegistryEvent;
use crate::store;
use crate::sync::lock;
use crate::topology::Topology;

/// File name used by [`Registry::open_in_dir`].
pub const REGISTRY_FILE: &str = "registry.redb";

/// Tuning knobs of [`Registry::open_with`].
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// How often last-seen times gathered in memory are written to disk (also on
    /// [`Registry::flush`] and on drop). Default 5 s. `Duration::ZERO` disables the thread.
    pub last_seen_flush_interval: Duration,
    /// Most identities kept in the authentication cache before it is cleared. Default 1,000,000.
    pub identity_cache_capacity: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            last_seen_flush_interval: Duration::from_secs(5),
            identity_cache_capacity: 1_000_000,
        }
    }
}

/// The device registry. Cheap calls (authentication, topology queries) may be made directly
/// from async code; calls that write (and therefore fsync) belong in `spawn_blocking`.
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
    flusher: Option<Flusher>,
}

struct Flusher {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

/// Shared state behind the handle.
pub(crate) struct Inner {
    pub(crate) db: Database,
    pub(crate) path: PathBuf,
    pub(crate) identities: IdentityCache,
    pub(crate) tokens: TokenCache,
    pub(crate) topology: RwLock<Topology>,
    subscribers: Mutex<Vec<Sender<RegistryEvent>>>,
    stamped: Mutex<Vec<Sender<(u64, RegistryEvent)>>>,
    /// Committed write transactions so far: see [`Registry::write_generation`].
    generation: AtomicU64,
}

/// A registry write transaction: a redb [`WriteTransaction`] whose commit advances
/// [`Registry::write_generation`]. Dropped without a commit, it aborts.
pub(crate) struct WriteTxn<'a> {
    txn: WriteTransaction,
    generation: &'a AtomicU64,
}

impl WriteTxn<'_> {
    /// Makes the commit skip the fsync: durable with the next durable commit, lost in a crash
    /// before it.
    pub(crate) fn lazy(&mut self) -> std::result::Result<(), redb::SetDurabilityError> {
        self.txn.set_durability(redb::Durability::None)
    }

    /// Commits, then advances the write generation.
    pub(crate) fn commit(self) -> std::result::Result<(), redb::CommitError> {
        self.txn.commit()?;
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl std::ops::Deref for WriteTxn<'_> {
    type Target = WriteTransaction;

    fn deref(&self) -> &WriteTransaction {
        &self.txn
    }
}

impl Registry {
    /// Opens (creating if needed) the registry file at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, RegistryOptions::default())
    }

    /// Opens `<dir>/registry.redb`, creating the directory if needed.
    pub fn open_in_dir(dir: impl AsRef<Path>) -> Result<Self> {
        std::fs::create_dir_all(dir.as_ref())
            .map_err(|e| RegistryError::Storage(format!("create {:?}: {e}", dir.as_ref())))?;
        Self::open(dir.as_ref().join(REGISTRY_FILE))
    }

    /// Opens (creating if needed) the registry file at `path`.
    pub fn open_with(path: impl AsRef<Path>, options: RegistryOptions) -> Result<Self> {
        let db = Database::create(path.as_ref())?;
        store::create_tables(&db)?;
        let topology = Topology::load(&db)?;
        let tokens = TokenCache::load(&db)?;
        let inner = Arc::new(Inner {
            db,
            path: path.as_ref().to_path_buf(),
            identities: IdentityCache::new(options.identity_cache_capacity),
            tokens,
            topology: RwLock::new(topology),
            subscribers: Mutex::new(Vec::new()),
            stamped: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
        });
        let flusher = start_flusher(&inner, options.last_seen_flush_interval);
        Ok(Self { inner, flusher })
    }

    /// Advances after every committed write (any table), never otherwise: an answer read while
    /// it kept one value (read it before and after) is still true while it keeps that value.
    /// Lets callers cache what the registry does *not* hold, such as an unknown device.
    pub fn write_generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Subscribes to [`RegistryEvent`]s published after every disable, enable, key rotation,
    /// device deletion and token revocation (after the change is committed). Dropping the
    /// receiver unsubscribes.
    pub fn subscribe(&self) -> Receiver<RegistryEvent> {
        let (tx, rx) = mpsc::channel();
        lock(&self.inner.subscribers).push(tx);
        rx
    }

    /// As [`Registry::subscribe`], each event with the write generation its publication
    /// advanced to. An event is published after its change was committed and the registry's
    /// caches dropped what it changed, so a reader that saw [`Registry::write_generation`] at
    /// or above that number before reading the registry saw the change (the MQTT endpoint keeps
    /// a session authenticated after a revocation open when the revocation's event arrives
    /// late).
    pub fn subscribe_stamped(&self) -> Receiver<(u64, RegistryEvent)> {
        let (tx, rx) = mpsc::channel();
        lock(&self.inner.stamped).push(tx);
        rx
    }

    /// The registry file's bytes as of the last commit, for a backup: last-seen times are
    /// written first, then the file is read while this handle holds redb's write lock, so no
    /// commit runs during the copy and the copy is one committed state that
    /// [`Registry::open`] reads like the original.
    pub fn backup_bytes(&self) -> Result<Vec<u8>> {
        self.inner.flush_last_seen()?;
        let txn = self.inner.write_txn()?;
        let bytes = std::fs::read(&self.inner.path).map_err(|e| {
            RegistryError::Storage(format!("read {}: {e}", self.inner.path.display()))
        });
        drop(txn); // nothing was changed: an abort
        bytes
    }

    /// Writes last-seen times gathered in memory to disk now.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_last_seen()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(f) = self.flusher.take() {
            drop(f.stop);
            let _ = f.handle.join();
        }
        if let Err(e) = self.inner.flush_last_seen() {
            tracing::warn!(error = %e, "registry: could not persist last-seen times on close");
        }
    }
}

fn start_flusher(inner: &Arc<Inner>, every: Duration) -> Option<Flusher> {
    if every.is_zero() {
        return None;
    }
    let (stop, rx) = mpsc::channel::<()>();
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let handle = std::thread::Builder::new()
        .name("registry-last-seen".into())
        .spawn(move || flusher_loop(&weak, &rx, every))
        .ok()?;
    Some(Flusher { stop, handle })
}

fn flusher_loop(weak: &Weak<Inner>, rx: &Receiver<()>, every: Duration) {
    loop {
        match rx.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        if let Err(e) = inner.flush_last_seen() {
            tracing::warn!(error = %e, "registry: last-seen flush failed");
        }
    }
}

impl Inner {
    /// Advances the write generation, then sends `event` to every live subscriber (with that
    /// generation to the stamped ones), dropping the closed ones.
    pub(crate) fn publish(&self, event: RegistryEvent) {
        let stamp = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        lock(&self.stamped).retain(|tx| tx.send((stamp, event.clone())).is_ok());
        lock(&self.subscribers).retain(|tx| tx.send(event.clone()).is_ok());
    }

    /// Begins a write transaction.
    pub(crate) fn write_txn(&self) -> Result<WriteTxn<'_>> {
        Ok(WriteTxn {
            txn: self.db.begin_write()?,
            generation: &self.generation,
        })
    }

    /// Begins a read transaction.
    pub(crate) fn read_txn(&self) -> Result<ReadTransaction> {
        Ok(self.db.begin_read()?)
    }

    /// Persists pending last-seen times in one transaction.
    pub(crate) fn flush_last_seen(&self) -> Result<()> {
        let pending: HashMap<String, i64> = self.identities.take_seen();
        if pending.is_empty() {
            return Ok(());
        }
        let txn = self.write_txn()?;
        store::apply_last_seen(&txn, &pending)?;
        txn.commit()?;
        Ok(())
    }
}
