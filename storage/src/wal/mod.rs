//! Write-ahead log: framed, checksummed records in numbered files, with group commit.
//!
//! [`Wal::append`] copies a record into an in-memory buffer under a mutex and returns its
//! sequence number. [`Wal::sync_to`] makes it durable: the first waiter becomes the leader, writes
//! the whole pending buffer with one `write(2)` and (in [`Durability::Sync`]) one `fdatasync`, then
//! wakes everyone whose record it covered. Appends made while a leader is busy go out in the next
//! round.
//!
//! A failed `write(2)` or `fdatasync` (a full disk, EIO, EMFILE while rotating) does not poison the
//! WAL: the file is cut back to the end of the last record known good (the last fdatasync in the
//! fsyncing modes, the last complete write in `None` mode), so no record ever follows a torn or
//! unsynced one, and the records after that point go back to the front of the append buffer. Every
//! waiter they covered gets [`WalError::NoSpace`] or [`WalError::IoFault`], and appends are refused
//! with the same error until [`Wal::retry`] (called by the engine before each write) or a rotation
//! writes them successfully: the WAL heals by itself when space returns. Only exhausted sequence
//! numbers or file ids poison it for good.
//!
//! Files are `wal-{id:020}.log`; the byte layout is in [`format`](mod@format) and `docs/wal.md`.
//! [`Wal::open`] replays the files, cuts torn tails (keeping their bytes), refuses damage with intact
//! records after it (or salvages them with [`Wal::open_with`]) and always starts a new file.

pub mod format;

pub(crate) mod error;
mod file;
mod replay;

pub use error::WalError;
pub(crate) use error::io_error;
pub use replay::RecoverOptions;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use file::ActiveFile;
pub use file::{file_name, parse_file_name};
pub use format::MAX_RECORD_BYTES;

/// How the WAL makes appended records durable before a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after fdatasync; concurrent writers share one sync (group commit).
    Sync,
    /// Acknowledge after write(2); a background thread fdatasyncs every interval.
    Interval(Duration),
    /// Acknowledge after write(2); never fsync.
    None,
}

impl Durability {
    /// True when the mode ever fsyncs (file creation, rotation, background sync).
    fn fsyncs(self) -> bool {
        self != Durability::None
    }
}

/// WAL configuration.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Directory holding the WAL files.
    pub dir: PathBuf,
    /// Durability mode.
    pub durability: Durability,
    /// A file is rotated once it exceeds this many bytes.
    pub max_file_bytes: u64,
}

/// One record recovered by replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// Id of the WAL file that held it.
    pub file_id: u64,
    /// Sequence number of the record.
    pub seq: u64,
    /// The payload as appended.
    pub payload: Vec<u8>,
}

/// What replay found.
#[derive(Debug, Default)]
pub struct WalReplay {
    /// Intact records, in append order.
    pub records: Vec<WalRecord>,
    /// Human-readable descriptions of damage found (file, offset, what).
    pub warnings: Vec<String>,
    /// Files (or cut tails) copied or moved into the set-aside directory.
    pub set_aside: Vec<String>,
}

/// The write-ahead log. `Send + Sync`: share it behind an `Arc`.
pub struct Wal {
    inner: Arc<Inner>,
    ticker: Option<Ticker>,
}

/// State shared with the background sync thread.
struct Inner {
    dir: PathBuf,
    durability: Durability,
    max_file_bytes: u64,
    /// Append buffer and progress; held only briefly.
    state: Mutex<State>,
    /// Signalled whenever progress is published or the WAL is poisoned.
    progress: Condvar,
    /// The file; held for the duration of a write, fsync or rotation. Lock order: `io`, then `state`.
    io: Mutex<Io>,
    sync_count: AtomicU64,
    disk_bytes: AtomicU64,
    active_file_id: AtomicU64,
}

/// Append-side state.
struct State {
    /// Framed records not yet handed to a writer.
    buf: Vec<u8>,
    /// Sequence number of the next append.
    next_seq: u64,
    /// The last write or fdatasync failed; appends are refused until a retry succeeds.
    failed: Option<Failure>,
    /// Every record up to this one has been written to a file.
    written_seq: u64,
    /// Every record up to this one has been fdatasynced.
    durable_seq: u64,
    /// A `sync_to` caller has taken the job of writing the next batch.
    leader: bool,
    /// Why the WAL refuses every further write, for good.
    poisoned: Option<String>,
}

/// File-side state.
struct Io {
    file: ActiveFile,
    /// The batch being written (swapped with `State::buf` so both allocations are reused).
    batch: Vec<u8>,
    /// Last sequence number written to a file.
    written_seq: u64,
    /// Last sequence number fdatasynced.
    synced_seq: u64,
    /// File length a failure cuts back to: the last fdatasync (fsyncing modes) or the last
    /// complete write (`None` mode).
    rewind_len: u64,
    /// Last sequence number before `rewind_len`.
    rewind_seq: u64,
    /// The bytes written (or being written) after `rewind_len`; a failure puts them back at the
    /// front of the append buffer.
    rewind: Vec<u8>,
    /// A failure could not cut the file back; it must be cut before the next write.
    torn: bool,
}

/// Why a write, fdatasync or file creation failed.
#[derive(Debug, Clone)]
struct Failure {
    path: PathBuf,
    detail: String,
    no_space: bool,
}

impl Failure {
    fn of(what: &str, path: &Path, err: &std::io::Error) -> Fail {
        Fail::Io(Failure {
            path: path.to_path_buf(),
            detail: format!("{what} {} failed: {err}", path.display()),
            no_space: crate::error::is_out_of_space(err),
        })
    }

    fn error(&self) -> WalError {
        let (path, detail) = (self.path.clone(), self.detail.clone());
        match self.no_space {
            true => WalError::NoSpace { path, detail },
            false => WalError::IoFault { path, detail },
        }
    }
}

/// A failed WAL operation: retryable I/O, or the WAL is poisoned for good.
enum Fail {
    Io(Failure),
    Fatal(String),
}

impl Fail {
    fn error(&self) -> WalError {
        match self {
            Fail::Io(f) => f.error(),
            Fail::Fatal(reason) => WalError::Poisoned(reason.clone()),
        }
    }
}

/// Recovers a guard from a mutex poisoned by a panicking thread (our critical sections do not panic).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A batch larger than this is not kept around for reuse.
const MAX_RETAINED_BATCH: usize = 8 << 20;

impl Wal {
    /// Opens (creating if needed) the WAL in `opts.dir`, replaying files with id >= `min_file_id`
    /// and deleting older ones.
    ///
    /// Damaged files are repaired and reported in [`WalReplay::warnings`]. Appends always go to a
    /// new file whose id is above every existing file and at least `min_file_id`.
    pub fn open(opts: WalOptions, min_file_id: u64) -> Result<(Wal, WalReplay), WalError> {
        let recover = RecoverOptions {
            salvage: false,
            aside_dir: opts.dir.join("damaged").join(crate::damaged::utc_stamp()),
        };
        Wal::open_with(opts, min_file_id, &recover)
    }

    /// [`Wal::open`] with explicit damage handling: whether to salvage around damage instead of
    /// refusing with [`WalError::Damaged`], and where to set damaged bytes aside.
    pub fn open_with(
        opts: WalOptions,
        min_file_id: u64,
        recover: &RecoverOptions,
    ) -> Result<(Wal, WalReplay), WalError> {
        let fsync = opts.durability.fsyncs();
        let recovered = replay::recover(&opts.dir, min_file_id, fsync, recover)?;
        let (id, seq) = (recovered.next_file_id, recovered.next_seq);
        let file = ActiveFile::create(&opts.dir, id, seq, fsync)
            .map_err(|e| io_error(&opts.dir.join(file_name(id)), e))?;
        let disk_bytes = recovered.disk_bytes.saturating_add(file.len());
        let rewind_len = file.len();
        let last = seq - 1;
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                buf: Vec::new(),
                next_seq: seq,
                failed: None,
                written_seq: last,
                durable_seq: last,
                leader: false,
                poisoned: None,
            }),
            progress: Condvar::new(),
            io: Mutex::new(Io {
                file,
                batch: Vec::new(),
                written_seq: last,
                synced_seq: last,
                rewind_len,
                rewind_seq: last,
                rewind: Vec::new(),
                torn: false,
            }),
            sync_count: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(disk_bytes),
            active_file_id: AtomicU64::new(id),
            dir: opts.dir,
            durability: opts.durability,
            max_file_bytes: opts.max_file_bytes,
        });
        let ticker = match opts.durability {
            Durability::Interval(every) => Some(Ticker::start(Arc::clone(&inner), every)?),
            _ => None,
        };
        Ok((Wal { inner, ticker }, recovered.replay))
    }

    /// Appends a record to the in-memory buffer and returns its sequence number. Cheap; does not wait.
    pub fn append(&self, payload: &[u8]) -> Result<u64, WalError> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(WalError::RecordTooLarge(payload.len()));
        }
        let mut st = lock(&self.inner.state);
        if let Some(reason) = &st.poisoned {
            return Err(WalError::Poisoned(reason.clone()));
        }
        if let Some(failure) = &st.failed {
            return Err(failure.error());
        }
        let seq = st.next_seq;
        if seq == u64::MAX {
            return Err(WalError::Poisoned(
                "WAL sequence numbers are exhausted".into(),
            ));
        }
        format::encode_record(&mut st.buf, seq, payload);
        st.next_seq = seq + 1;
        Ok(seq)
    }

    /// Blocks until the record `seq` is durable under the configured mode (group commit).
    ///
    /// In [`Durability::Sync`] that means fdatasynced; in the other modes, written to the file
    /// with write(2). A `seq` above the last appended one waits for everything appended so far.
    /// A record that was already durable before the WAL got poisoned is still reported `Ok`.
    pub fn sync_to(&self, seq: u64) -> Result<(), WalError> {
        let inner = &*self.inner;
        let mut st = lock(&inner.state);
        let seq = seq.min(st.next_seq - 1);
        loop {
            if inner.covers(&st, seq) {
                return Ok(());
            }
            if let Some(reason) = &st.poisoned {
                return Err(WalError::Poisoned(reason.clone()));
            }
            if let Some(failure) = &st.failed {
                return Err(failure.error());
            }
            if !st.leader {
                break;
            }
            st = inner
                .progress
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        st.leader = true;
        drop(st);
        let mut io = lock(&inner.io);
        let sync = inner.durability == Durability::Sync;
        let result = inner.write_pending(&mut io, sync);
        inner.publish(&io, &result, true);
        result.map_err(|f| f.error())
    }

    /// After a failed write or fdatasync: writes what is pending again (the cut-back records
    /// first, fdatasynced in the fsyncing modes) and, when that succeeds, accepts appends again.
    /// `Ok` at once when nothing failed. The engine calls this before every write, so writes
    /// resume by themselves once the disk has space again.
    pub fn retry(&self) -> Result<(), WalError> {
        let inner = &*self.inner;
        if lock(&inner.state).failed.is_none() {
            return Ok(());
        }
        let mut io = lock(&inner.io);
        let result = inner.write_pending(&mut io, inner.durability.fsyncs());
        inner.publish(&io, &result, false);
        result.map_err(|f| f.error())
    }

    /// The error appends are refused with after a failed write or fdatasync, until a retry
    /// succeeds.
    pub fn failure(&self) -> Option<WalError> {
        lock(&self.inner.state).failed.as_ref().map(Failure::error)
    }

    /// Makes everything appended so far durable in the current file, then starts a new file.
    /// Returns the new file's id; all records appended later land in files with id >= it.
    ///
    /// "Durable" means fdatasynced in `Sync` and `Interval` modes and written in `None` mode.
    pub fn rotate(&self) -> Result<u64, WalError> {
        let inner = &*self.inner;
        let mut io = lock(&inner.io);
        let result = inner
            .write_pending(&mut io, inner.durability.fsyncs())
            .and_then(|()| inner.open_next_file(&mut io));
        inner.publish(&io, &result, false);
        result.map(|()| io.file.id()).map_err(|f| f.error())
    }

    /// Deletes every WAL file with id < `file_id`. The file currently appended to is never
    /// deleted, whatever `file_id` says. Failures here do not poison the WAL.
    pub fn remove_before(&self, file_id: u64) -> Result<(), WalError> {
        let inner = &*self.inner;
        let limit = file_id.min(inner.active_file_id.load(Ordering::Acquire));
        let dir = &inner.dir;
        let mut removed_any = false;
        for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
            let entry = entry.map_err(|e| io_error(dir, e))?;
            let id = entry.file_name().to_str().and_then(parse_file_name);
            if id.is_some_and(|id| id < limit) {
                removed_any |= inner.remove_file(&entry.path())?;
            }
        }
        if removed_any && inner.durability.fsyncs() {
            file::sync_dir(dir).map_err(|e| io_error(dir, e))?;
        }
        Ok(())
    }

    /// Total bytes of WAL files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.disk_bytes.load(Ordering::Relaxed)
    }

    /// Number of fdatasyncs issued on WAL files since open (file creation not counted).
    pub fn sync_count(&self) -> u64 {
        self.inner.sync_count.load(Ordering::Relaxed)
    }

    /// Sequence number of the last appended record (0 if none was ever appended).
    pub fn last_seq(&self) -> u64 {
        lock(&self.inner.state).next_seq - 1
    }

    /// Id of the file that appends currently go to.
    pub fn current_file_id(&self) -> u64 {
        self.inner.active_file_id.load(Ordering::Acquire)
    }

    /// The reason the WAL refuses every write for good, if it is poisoned.
    pub fn poisoned(&self) -> Option<String> {
        lock(&self.inner.state).poisoned.clone()
    }
}

impl Inner {
    /// True when record `seq` is as durable as the mode promises.
    fn covers(&self, st: &State, seq: u64) -> bool {
        match self.durability {
            Durability::Sync => st.durable_seq >= seq,
            Durability::Interval(_) | Durability::None => st.written_seq >= seq,
        }
    }

    /// Writes the pending buffer to the file, then fdatasyncs if `sync` and anything is unsynced.
    /// On an I/O failure the file is cut back and the unsynced records are queued again.
    fn write_pending(&self, io: &mut Io, sync: bool) -> Result<(), Fail> {
        let last = {
            let mut st = lock(&self.state);
            if let Some(reason) = &st.poisoned {
                return Err(Fail::Fatal(reason.clone()));
            }
            std::mem::swap(&mut st.buf, &mut io.batch);
            st.next_seq - 1
        };
        let result = self
            .cut_torn(io)
            .and_then(|()| self.write_batch(io, last))
            .and_then(|()| match sync && io.synced_seq < io.written_seq {
                true => self.sync_data(io),
                false => Ok(()),
            });
        if let Err(Fail::Io(_)) = &result {
            self.roll_back(io);
        }
        io.batch.clear();
        if io.batch.capacity() > MAX_RETAINED_BATCH {
            io.batch = Vec::new();
        }
        result
    }

    /// Writes `io.batch` (records up to `last`), rotating first if the file would grow too big.
    /// The batch moves to `io.rewind` first, so a failure can queue it again.
    fn write_batch(&self, io: &mut Io, last: u64) -> Result<(), Fail> {
        if io.batch.is_empty() {
            return Ok(());
        }
        let incoming = io.batch.len() as u64;
        if !io.file.has_no_records() && io.file.len().saturating_add(incoming) > self.max_file_bytes
        {
            self.open_next_file(io)?;
        }
        let from = io.rewind.len();
        io.rewind.extend_from_slice(&io.batch);
        io.batch.clear();
        let Io { file, rewind, .. } = io;
        file.write_all(&rewind[from..])
            .map_err(|e| Failure::of("write to", file.path(), &e))?;
        self.disk_bytes.fetch_add(incoming, Ordering::Relaxed);
        io.written_seq = last;
        if !self.durability.fsyncs() {
            settle(io);
        }
        Ok(())
    }

    /// fdatasyncs the current file.
    fn sync_data(&self, io: &mut Io) -> Result<(), Fail> {
        self.sync_count.fetch_add(1, Ordering::Relaxed);
        io.file
            .sync_data()
            .map_err(|e| Failure::of("fdatasync of", io.file.path(), &e))?;
        io.synced_seq = io.written_seq;
        settle(io);
        Ok(())
    }

    /// Cuts the file back after a failure that could not do so itself.
    fn cut_torn(&self, io: &mut Io) -> Result<(), Fail> {
        if io.torn {
            let len = io.rewind_len;
            io.file
                .truncate_to(len)
                .map_err(|e| Failure::of("cutting back", io.file.path(), &e))?;
            io.torn = false;
        }
        Ok(())
    }

    /// After a failed write or fdatasync: cuts the file back to `rewind_len` (or marks it to be
    /// cut before the next write) and puts the records after it back at the front of the buffer.
    fn roll_back(&self, io: &mut Io) {
        let before = io.file.len();
        match io.file.truncate_to(io.rewind_len) {
            Ok(()) => io.torn = false,
            Err(e) => {
                tracing::warn!(target: "strata::wal", file = %io.file.path().display(), error = %e, "could not cut the WAL file back after a failure; will retry before the next write");
                io.torn = true;
            }
        }
        let cut = before.saturating_sub(io.rewind_len);
        let _ = self
            .disk_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(cut))
            });
        io.written_seq = io.rewind_seq;
        io.synced_seq = io.synced_seq.min(io.rewind_seq);
        let mut requeue = std::mem::take(&mut io.rewind);
        requeue.extend_from_slice(&io.batch);
        io.batch.clear();
        if !requeue.is_empty() {
            let mut st = lock(&self.state);
            requeue.extend_from_slice(&st.buf);
            st.buf = requeue;
        }
    }

    /// Closes the current file (fdatasynced first when the mode fsyncs) and starts the next one.
    fn open_next_file(&self, io: &mut Io) -> Result<(), Fail> {
        let fsync = self.durability.fsyncs();
        if fsync && io.synced_seq < io.written_seq {
            self.sync_data(io)?;
        }
        let Some(id) = io.file.id().checked_add(1) else {
            return Err(Fail::Fatal("WAL file ids are exhausted".into()));
        };
        let base_seq = io.written_seq + 1;
        let path = self.dir.join(file_name(id));
        let next = ActiveFile::create(&self.dir, id, base_seq, fsync)
            .map_err(|e| Failure::of("creating", &path, &e))?;
        self.disk_bytes.fetch_add(next.len(), Ordering::Relaxed);
        io.file = next;
        settle(io);
        self.active_file_id.store(id, Ordering::Release);
        Ok(())
    }

    /// Publishes progress (or the failure) and wakes every waiter.
    fn publish(&self, io: &Io, result: &Result<(), Fail>, was_leader: bool) {
        let mut st = lock(&self.state);
        st.written_seq = st.written_seq.max(io.written_seq);
        st.durable_seq = st.durable_seq.max(io.synced_seq);
        match result {
            Ok(()) => {
                if let Some(f) = st.failed.take() {
                    tracing::info!(target: "strata::wal", after = %f.detail, "WAL writes succeed again; appends accepted");
                }
            }
            Err(Fail::Io(f)) => {
                if st.failed.is_none() {
                    tracing::error!(target: "strata::wal", reason = %f.detail, "WAL write failed; the file was cut back to its last good record and writes are refused until a retry succeeds");
                }
                st.failed = Some(f.clone());
            }
            Err(Fail::Fatal(reason)) => {
                if st.poisoned.is_none() {
                    tracing::error!(target: "strata::wal", reason = %reason, "WAL poisoned; writes refused until restart");
                    st.poisoned = Some(reason.clone());
                }
            }
        }
        if was_leader {
            st.leader = false;
        }
        drop(st);
        self.progress.notify_all();
    }

    /// Background work of `Interval` mode: write what is pending and fdatasync.
    fn background_sync(&self) -> Result<(), Fail> {
        let mut io = lock(&self.io);
        let result = self.write_pending(&mut io, true);
        self.publish(&io, &result, false);
        result
    }

    /// Deletes one old file; returns whether this call deleted it.
    fn remove_file(&self, path: &Path) -> Result<bool, WalError> {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(path) {
            Ok(()) => {
                let _ = self
                    .disk_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                        Some(b.saturating_sub(len))
                    });
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(path, e)),
        }
    }
}

/// Everything written so far is good: a later failure cuts back to here.
fn settle(io: &mut Io) {
    io.rewind_len = io.file.len();
    io.rewind_seq = io.written_seq;
    io.rewind.clear();
    if io.rewind.capacity() > MAX_RETAINED_BATCH {
        io.rewind = Vec::new();
    }
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.inner.state);
        f.debug_struct("Wal")
            .field("dir", &self.inner.dir)
            .field("durability", &self.inner.durability)
            .field("current_file_id", &self.current_file_id())
            .field("next_seq", &st.next_seq)
            .field("written_seq", &st.written_seq)
            .field("durable_seq", &st.durable_seq)
            .field("pending_bytes", &st.buf.len())
            .field("poisoned", &st.poisoned)
            .finish()
    }
}

impl Drop for Wal {
    /// Stops the background thread, then writes (and, unless the mode is `None`, fsyncs) whatever
    /// is still pending.
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.stop();
        }
        let inner = &*self.inner;
        let mut io = lock(&inner.io);
        let result = inner.write_pending(&mut io, inner.durability.fsyncs());
        inner.publish(&io, &result, false);
        if let Err(f) = result {
            tracing::warn!(target: "strata::wal", reason = %f.error(), "WAL closed without flushing pending records");
        }
    }
}

/// The background fdatasync thread of `Interval` mode.
struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: JoinHandle<()>,
}

impl Ticker {
    /// Starts a thread that calls [`Inner::background_sync`] every `every` (at least 1 ms).
    fn start(inner: Arc<Inner>, every: Duration) -> Result<Ticker, WalError> {
        let every = every.max(Duration::from_millis(1));
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let dir = inner.dir.clone();
        let handle = std::thread::Builder::new()
            .name("strata-wal-sync".into())
            .spawn(move || Ticker::run(&inner, &flag, every))
            .map_err(|e| io_error(&dir, e))?;
        Ok(Ticker { stop, handle })
    }

    /// The thread body: sync every interval until stopped or poisoned.
    fn run(inner: &Inner, stop: &(Mutex<bool>, Condvar), every: Duration) {
        let (flag, wake) = stop;
        let mut stopped = lock(flag);
        loop {
            // A stop asked before this thread first took the lock has already notified: waiting
            // now would sleep a whole interval (an hour, say) and hang the drop that joins us.
            if *stopped {
                return;
            }
            stopped = wake
                .wait_timeout(stopped, every)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if *stopped {
                return;
            }
            drop(stopped);
            // An I/O failure is retried at the next tick; only a poisoned WAL stops the thread.
            if let Err(Fail::Fatal(_)) = inner.background_sync() {
                return;
            }
            stopped = lock(flag);
        }
    }

    /// Asks the thread to stop and waits for it.
    fn stop(self) {
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        if self.handle.join().is_err() {
            tracing::error!(target: "strata::wal", "WAL background sync thread panicked");
        }
    }
}

#[cfg(test)]
mod tests;
