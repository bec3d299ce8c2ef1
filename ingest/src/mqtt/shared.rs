//! State shared by the accept loop ([`super::server`]) and every connection
//! ([`super::connection`]): the session environment, the authenticator, the committer and the
//! registry of open sessions (takeover by a second connection of the same device, revocation,
//! shutdown). Both sides import this module, neither imports the other's internals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::auth::DeviceAuthenticator;
use super::commit::Committer;
use super::limit::{ConnectionLimit, Establish};
use super::session::Env;

/// What the server asks of an open session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Keep going.
    Run,
    /// Close now: a newer connection of the same device took over.
    TakenOver,
    /// Close now: the device was disabled or its key rotated.
    Revoked,
    /// The server is shutting down: store what was received, acknowledge it, then close.
    Shutdown,
}

/// A registered session: its id, its signal and the notifier of its outbox.
pub(crate) type Registered = (u64, watch::Receiver<Signal>, Arc<Notify>);

/// Why [`Shared::register`] refused a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The server is shutting down.
    Shutdown,
    /// The device was revoked after the connection's authentication began.
    Revoked,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// The authenticator's epoch read before this session was authenticated.
    epoch: u64,
    signal: watch::Sender<Signal>,
    outbox: Arc<Notify>,
}

tokio::task_local! {
    /// The connection served by the current task: its slot under the connection limit (made
    /// established once its session is registered) and the revocation sequence number at the
    /// moment it was accepted.
    pub(crate) static ACCEPTED: (Establish, u64);
}

/// Whether the current task serves a connection admitted by the accept loop's
/// [`ConnectionLimit`] (which then enforces the cap).
pub(crate) fn admitted_under_limit() -> bool {
    ACCEPTED.try_with(|_| ()).is_ok()
}

/// Recent revocations ([`Shared::revoke`]) by device: sequence number, when, and the
/// authenticator epoch it applies below, so a session registered after its device was revoked
/// mid-CONNECT is caught (the registration race).
#[derive(Debug, Default)]
struct Revocations {
    seq: u64,
    by_device: HashMap<String, (u64, std::time::Instant, u64)>,
}

/// Revocation records older than this are pruned once there are many.
const REVOCATION_MEMORY: Duration = Duration::from_secs(120);

/// State shared by the accept loop and every connection.
pub(crate) struct Shared {
    pub(crate) env: Arc<Env>,
    pub(crate) auth: Arc<dyn DeviceAuthenticator>,
    pub(crate) committer: Committer,
    sessions: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// The cap on open connections (`MqttConfig::max_connections`).
    pub(crate) limit: ConnectionLimit,
    revocations: Mutex<Revocations>,
    /// Unacknowledged deliveries of persistent sessions between connections: device → key →
    /// packet id.
    parked: Mutex<HashMap<String, HashMap<String, u16>>>,
    /// When a commit last failed for a storage reason (disk full, I/O fault, overload): new
    /// connections are refused with CONNACK 0x03 for [`STORAGE_PAUSE`] after it.
    storage_failed: Mutex<Option<std::time::Instant>>,
}

/// How long after a storage failure new connections are refused as "server unavailable", so
/// that a device SDK can tell the server's trouble from a message the server refuses.
pub(crate) const STORAGE_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.env.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Shared state for a server with no open session.
    pub(crate) fn new(
        env: Arc<Env>,
        auth: Arc<dyn DeviceAuthenticator>,
        committer: Committer,
    ) -> Self {
        let (shutdown, _) = watch::channel(false);
        let limit = ConnectionLimit::new(env.config.max_connections);
        Shared {
            env,
            auth,
            committer,
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            shutdown,
            limit,
            revocations: Mutex::new(Revocations::default()),
            parked: Mutex::new(HashMap::new()),
            storage_failed: Mutex::new(None),
        }
    }

    /// Records a commit that failed for a storage reason.
    pub(crate) fn storage_failed(&self) {
        *self
            .storage_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    }

    /// Whether a storage failure happened less than [`STORAGE_PAUSE`] ago.
    pub(crate) fn storage_failing(&self) -> bool {
        self.storage_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < STORAGE_PAUSE)
    }

    /// Becomes true when the server shuts down.
    pub(crate) fn shutdown_flag(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops accepting sessions and asks every open one to finish.
    pub(crate) fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
        self.signal_all(Signal::Shutdown);
    }

    /// Closes the open session of `device` if it was authenticated at an epoch below `epoch`;
    /// whether one was closed. Also recorded, so a session of `device` still being
    /// authenticated below `epoch` is caught at registration.
    pub(crate) fn revoke(&self, device: &str, epoch: u64) -> bool {
        // Recorded and applied under the sessions lock, which registration holds while it
        // checks the records and inserts: either this finds the session or it finds the record.
        let entry = self.sessions.lock().ok().and_then(|mut s| {
            self.record_revocation(device, epoch);
            let older = s.get(device).is_some_and(|e| e.epoch < epoch);
            older.then(|| s.remove(device)).flatten()
        });
        match entry {
            Some(e) => {
                let _ = e.signal.send(Signal::Revoked);
                true
            }
            None => false,
        }
    }

    /// Devices with an open session, sorted.
    pub(crate) fn devices(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .sessions
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Wakes the session of `device` to fetch the messages waiting for it; whether one is open.
    pub(crate) fn notify(&self, device: &str) -> bool {
        let outbox = self
            .sessions
            .lock()
            .ok()
            .and_then(|s| s.get(device).map(|e| e.outbox.clone()));
        match outbox {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }

    /// Whether `device` has an open session.
    pub(crate) fn is_open(&self, device: &str) -> bool {
        self.sessions
            .lock()
            .map(|s| s.contains_key(device))
            .unwrap_or(false)
    }

    /// Keeps the unacknowledged deliveries of a persistent session for its next connection.
    pub(crate) fn park(&self, device: &str, outstanding: HashMap<String, u16>) {
        if let Ok(mut p) = self.parked.lock() {
            if outstanding.is_empty() {
                p.remove(device);
            } else {
                p.insert(device.to_owned(), outstanding);
            }
        }
    }

    /// Takes what [`Shared::park`] kept for `device`.
    pub(crate) fn unpark(&self, device: &str) -> HashMap<String, u16> {
        self.parked
            .lock()
            .ok()
            .and_then(|mut p| p.remove(device))
            .unwrap_or_default()
    }

    /// Registers a session of `device` authenticated at `epoch`, closing the one it replaces.
    /// Refused during shutdown, and when `device` was revoked after revocation number `since` by
    /// a revocation that applies at `epoch` (the authentication may predate the revocation; the
    /// caller authenticates again). Returns the session's id, its signal and the notifier of
    /// its outbox.
    pub(crate) fn register(
        &self,
        device: &str,
        since: Option<u64>,
        epoch: u64,
    ) -> Result<Registered, Refused> {
        if *self.shutdown.borrow() {
            return Err(Refused::Shutdown);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Signal::Run);
        let outbox = Arc::new(Notify::new());
        let entry = Entry {
            id,
            epoch,
            signal: tx,
            outbox: outbox.clone(),
        };
        let mut sessions = self.sessions.lock().map_err(|_| Refused::Shutdown)?;
        // Checked before the insertion and under the lock `revoke` records under: a revocation
        // is either seen here or finds the session inserted below, and a CONNECT caught here
        // never takes over the device's open session.
        if let Some(revoked) = since.and_then(|seq| self.revoked_since(device, seq, epoch)) {
            drop(sessions);
            tracing::debug!(
                device,
                revoked,
                "device revoked during CONNECT; authenticating again"
            );
            return Err(Refused::Revoked);
        }
        if let Some(old) = sessions.insert(device.to_owned(), entry) {
            let _ = old.signal.send(Signal::TakenOver);
        }
        drop(sessions);
        let _ = ACCEPTED.try_with(|(slot, _)| slot.establish());
        Ok((id, rx, outbox))
    }

    /// The revocation number a connection's authentication is checked against: the one at
    /// its accept, when the accept loop admitted it (others are not checked).
    pub(crate) fn accepted_revocation_seq() -> Option<u64> {
        ACCEPTED.try_with(|(_, seq)| *seq).ok()
    }

    /// The sequence number of a revocation of `device` after `seq` that applies to a session
    /// authenticated at `epoch`, if any.
    fn revoked_since(&self, device: &str, seq: u64, epoch: u64) -> Option<u64> {
        let revocations = self.revocations.lock().ok()?;
        revocations
            .by_device
            .get(device)
            .filter(|(s, _, below)| *s > seq && epoch < *below)
            .map(|(s, _, _)| *s)
    }

    /// Records a revocation of `device` that applies to sessions authenticated below `epoch`.
    fn record_revocation(&self, device: &str, epoch: u64) {
        if let Ok(mut r) = self.revocations.lock() {
            r.seq += 1;
            let seq = r.seq;
            let now = std::time::Instant::now();
            if r.by_device.len() >= 4096 {
                r.by_device
                    .retain(|_, (_, at, _)| now.duration_since(*at) < REVOCATION_MEMORY);
            }
            // One record a device: the latest number, the highest epoch (events arrive in
            // the order of their epochs; the maximum keeps an earlier, wider one in force).
            let below = r
                .by_device
                .get(device)
                .map_or(epoch, |(_, _, b)| epoch.max(*b));
            r.by_device.insert(device.to_owned(), (seq, now, below));
        }
    }

    /// The sequence number of the latest revocation.
    pub(crate) fn revocation_seq(&self) -> u64 {
        self.revocations.lock().map(|r| r.seq).unwrap_or(0)
    }

    /// Forgets session `id` of `device` (unless another session replaced it).
    pub(crate) fn unregister(&self, device: &str, id: u64) {
        if let Ok(mut sessions) = self.sessions.lock()
            && sessions.get(device).is_some_and(|e| e.id == id)
        {
            sessions.remove(device);
        }
    }

    fn signal_all(&self, signal: Signal) {
        if let Ok(sessions) = self.sessions.lock() {
            for entry in sessions.values() {
                let _ = entry.signal.send(signal);
            }
        }
    }
}
