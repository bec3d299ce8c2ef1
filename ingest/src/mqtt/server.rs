//! The [`MqttServer`]: accept loop, connection limit, the registry of open sessions (takeover by
//! a second connection of the same device, [`MqttServer::disconnect_device`]), shutdown and
//! statistics. [`Handshake`] makes the accept loop generic over the stream: plain TCP, or TLS
//! (the server crate implements it with rustls), both served by the same session code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_storage::Engine;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::auth::{ClientCertificate, DeviceAuthenticator};
use super::commit::Committer;
use super::config::MqttConfig;
use super::connection;
use super::limit::{ConnectionLimit, Establish, LimitedIo};
use super::session::Env;
use super::stats::{Counters, MqttStats};

/// Turns an accepted TCP connection into the stream an MQTT session runs on: nothing for plain
/// MQTT ([`PlainTcp`]), a TLS handshake for MQTTS. [`MqttServer::serve_with`] runs it on the
/// connection's own task, bounded by the CONNECT timeout.
pub trait Handshake: Send + Sync + 'static {
    /// The stream after the handshake.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Performs the handshake. Returns the stream and, when the peer presented one that the
    /// handshake verified, its client certificate.
    fn handshake(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = std::io::Result<(Self::Stream, Option<ClientCertificate>)>> + Send;
}

/// The handshake of plain MQTT over TCP: none.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainTcp;

impl Handshake for PlainTcp {
    type Stream = TcpStream;

    async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<(TcpStream, Option<ClientCertificate>)> {
        Ok((tcp, None))
    }
}

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

tokio::task_local! {
    /// The connection served by the current task: its slot under the connection limit (made
    /// established once its session is registered) and the revocation sequence number at the
    /// moment it was accepted.
    static ACCEPTED: (Establish, u64);
}

/// Whether the current task serves a connection admitted by the accept loop's
/// [`ConnectionLimit`] (which then enforces the cap).
pub(crate) fn admitted_under_limit() -> bool {
    ACCEPTED.try_with(|_| ()).is_ok()
}

/// Recent revocations ([`MqttServer::disconnect_device`]) by device, so a session registered
/// after its device was revoked mid-CONNECT is refused (the registration race).
#[derive(Debug, Default)]
struct Revocations {
    seq: u64,
    by_device: HashMap<String, (u64, std::time::Instant)>,
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
    limit: ConnectionLimit,
    revocations: Mutex<Revocations>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.env.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
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
        drop(sessions);
        // A revocation recorded after this connection was accepted means the authentication
        // may predate it: refuse (disconnect_device records before it removes sessions, so a
        // revocation after this check finds the session inserted above).
        if let Ok(Some(since)) = ACCEPTED.try_with(|(_, seq)| self.revoked_since(device, *seq)) {
            tracing::info!(
                device,
                revoked = since,
                "device revoked during CONNECT; session refused"
            );
            self.unregister(device, id);
            return None;
        }
        let _ = ACCEPTED.try_with(|(slot, _)| slot.establish());
        Some((id, rx))
    }

    /// The sequence number of a revocation of `device` after `seq`, if any.
    fn revoked_since(&self, device: &str, seq: u64) -> Option<u64> {
        let revocations = self.revocations.lock().ok()?;
        revocations
            .by_device
            .get(device)
            .map(|(s, _)| *s)
            .filter(|s| *s > seq)
    }

    /// Records a revocation of `device` and returns its sequence number.
    fn record_revocation(&self, device: &str) {
        if let Ok(mut r) = self.revocations.lock() {
            r.seq += 1;
            let seq = r.seq;
            let now = std::time::Instant::now();
            if r.by_device.len() >= 4096 {
                r.by_device
                    .retain(|_, (_, at)| now.duration_since(*at) < REVOCATION_MEMORY);
            }
            r.by_device.insert(device.to_owned(), (seq, now));
        }
    }

    fn revocation_seq(&self) -> u64 {
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

/// The MQTT 3.1.1 device endpoint. Cheap to clone; all clones share one server.
#[derive(Debug, Clone)]
pub struct MqttServer {
    shared: Arc<Shared>,
}

impl MqttServer {
    /// A server writing to `engine` and authenticating CONNECTs with `auth`. Starts the commit
    /// threads; fails only if they cannot be spawned.
    pub fn new(
        config: MqttConfig,
        engine: Arc<Engine>,
        auth: Arc<dyn DeviceAuthenticator>,
    ) -> std::io::Result<Self> {
        let counters = Arc::new(Counters::default());
        let committer = Committer::start(
            engine,
            counters.clone(),
            config.commit_threads,
            config.max_commit_rows,
        )?;
        let (shutdown, _) = watch::channel(false);
        let config_max = config.max_connections;
        Ok(MqttServer {
            shared: Arc::new(Shared {
                env: Arc::new(Env::new(config, counters)),
                auth,
                committer,
                sessions: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                shutdown,
                limit: ConnectionLimit::new(config_max),
                revocations: Mutex::new(Revocations::default()),
            }),
        })
    }

    /// Accepts plain-TCP connections on `listener` until [`MqttServer::shutdown`], serving each
    /// on its own task. Accept errors (e.g. out of file descriptors) are logged and retried.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        self.serve_with(listener, Arc::new(PlainTcp)).await
    }

    /// Like [`MqttServer::serve`], with `handshake` (e.g. TLS) run on each accepted connection
    /// before its session. Several listeners may serve one server: sessions, takeover, limits
    /// and shutdown are shared.
    pub async fn serve_with<H: Handshake>(
        &self,
        listener: TcpListener,
        handshake: Arc<H>,
    ) -> std::io::Result<()> {
        let mut stop = self.shared.shutdown.subscribe();
        loop {
            tokio::select! {
                () = async { let _ = stop.wait_for(|s| *s).await; } => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // At the cap, the oldest connection that has not completed CONNECT
                        // makes room; with none, the new one is closed at once (counted).
                        let Some(slot) = self.shared.limit.admit() else {
                            tracing::debug!(%peer, "mqtt connection refused: connection limit");
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let stream = LimitedIo::new(stream, slot);
                        let server = self.clone();
                        let handshake = handshake.clone();
                        tokio::spawn(async move {
                            server.handshake_and_serve(stream, peer, &*handshake).await;
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "mqtt accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    /// Runs `handshake` on an accepted connection (within the CONNECT timeout), then its session.
    async fn handshake_and_serve<H: Handshake>(
        &self,
        tcp: LimitedIo<TcpStream>,
        peer: std::net::SocketAddr,
        handshake: &H,
    ) {
        let limit = self.shared.env.config.connect_timeout;
        let accepted = (tcp.slot().handle(), self.shared.revocation_seq());
        let (tcp, slot) = tcp.into_parts();
        let handshaken = tokio::select! {
            r = tokio::time::timeout(limit, handshake.handshake(tcp)) => r,
            () = slot.evicted() => {
                tracing::debug!(%peer, "mqtt connection evicted during its handshake");
                return;
            }
        };
        match handshaken {
            Ok(Ok((io, certificate))) => {
                let io = LimitedIo::new(io, slot);
                ACCEPTED
                    .scope(accepted, self.serve_connection_as(io, certificate))
                    .await;
            }
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "mqtt handshake failed"),
            Err(_) => tracing::debug!(%peer, "mqtt handshake timed out"),
        }
    }

    /// Serves one already accepted connection (plain TCP, or TLS layered by the caller) until it
    /// closes.
    pub async fn serve_connection<S>(&self, io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        connection::run(&self.shared, io, None).await;
    }

    /// Serves one accepted connection whose peer presented `certificate`, already verified by
    /// the caller's TLS layer: a CONNECT on it may authenticate with the certificate instead
    /// of a key ([`DeviceAuthenticator::authenticate_certificate`]).
    pub async fn serve_connection_as<S>(&self, io: S, certificate: Option<ClientCertificate>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        connection::run(&self.shared, io, certificate).await;
    }

    /// Closes every open session of `device` (e.g. after it was disabled or its key rotated);
    /// returns whether one was open. The session's socket is closed as soon as its task runs,
    /// well within a second; messages not yet acknowledged are not stored.
    pub fn disconnect_device(&self, device: &str) -> bool {
        self.shared.record_revocation(device);
        let entry = self
            .shared
            .sessions
            .lock()
            .ok()
            .and_then(|mut s| s.remove(device));
        match entry {
            Some(e) => {
                let _ = e.signal.send(Signal::Revoked);
                true
            }
            None => false,
        }
    }

    /// Devices with an open session, sorted.
    pub fn connected_devices(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .shared
            .sessions
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Stops accepting, asks every session to store and acknowledge what it received and close,
    /// and waits up to `grace` for the connections to end.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.shared.shutdown.send(true);
        self.shared.signal_all(Signal::Shutdown);
        let deadline = tokio::time::Instant::now() + grace;
        while self.stats().connections_open > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MqttStats {
        self.shared.env.counters.snapshot()
    }

    /// The cap on open connections of all its listeners (`MqttConfig::max_connections`).
    pub fn connection_limit(&self) -> &ConnectionLimit {
        &self.shared.limit
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &MqttConfig {
        &self.shared.env.config
    }
}
