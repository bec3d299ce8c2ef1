//! State shared by the accept loop ([`super::server`]) and every connection
//! ([`super::connection`]): the session environment, the authenticator, the committer and the
//! registry of open sessions (takeover by a second connection of the same device, revocation,
//! shutdown). Both sides import this module, neither imports the other's internals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::auth::DeviceAuthenticator;
use super::commit::Committer;
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

#[derive(Debug)]
struct Entry {
    id: u64,
    signal: watch::Sender<Signal>,
}

/// State shared by the accept loop and every connection.
pub(crate) struct Shared {
    pub(crate) env: Arc<Env>,
    pub(crate) auth: Arc<dyn DeviceAuthenticator>,
    pub(crate) committer: Committer,
    sessions: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
}

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
        Shared {
            env,
            auth,
            committer,
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            shutdown,
        }
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

    /// Closes the open session of `device`; whether there was one.
    pub(crate) fn revoke(&self, device: &str) -> bool {
        let entry = self.sessions.lock().ok().and_then(|mut s| s.remove(device));
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

    /// Registers a session of `device`, closing the one it replaces. `None` during shutdown.
    pub(crate) fn register(&self, device: &str) -> Option<(u64, watch::Receiver<Signal>)> {
        if *self.shutdown.borrow() {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Signal::Run);
        let mut sessions = self.sessions.lock().ok()?;
        if let Some(old) = sessions.insert(device.to_owned(), Entry { id, signal: tx }) {
            let _ = old.signal.send(Signal::TakenOver);
        }
        Some((id, rx))
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
