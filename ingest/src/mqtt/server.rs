//! The [`MqttServer`]: accept loop, connection limit, the registry of open sessions (takeover by
//! a second connection of the same device, [`MqttServer::disconnect_device`]), shutdown and
//! statistics. [`Handshake`] makes the accept loop generic over the stream: plain TCP, or TLS
//! (the server crate implements it with rustls), both served by the same session code.

use std::sync::Arc;
use std::time::Duration;

use strata_storage::Engine;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use super::auth::{ClientCertificate, DeviceAuthenticator};
use super::commit::Committer;
use super::config::MqttConfig;
use super::connection;
use super::limit::{ConnectionLimit, LimitedIo};
use super::session::Env;
use super::shared::{ACCEPTED, Shared};
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
        let env = Arc::new(Env::new(config, counters));
        Ok(MqttServer {
            shared: Arc::new(Shared::new(env, auth, committer)),
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
        let mut stop = self.shared.shutdown_flag();
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
        self.shared.revoke(device, u64::MAX)
    }

    /// As [`MqttServer::disconnect_device`], for a revocation the authenticator had taken by
    /// `epoch` ([`DeviceAuthenticator::epoch`]): a session authenticated at `epoch` or later
    /// checked the revoked state already and stays open, and so does a CONNECT being
    /// authenticated then.
    ///
    /// [`DeviceAuthenticator::epoch`]: super::DeviceAuthenticator::epoch
    pub fn disconnect_device_before(&self, device: &str, epoch: u64) -> bool {
        self.shared.revoke(device, epoch)
    }

    /// Tells the open session of `device`, if any, that messages wait for it (the session
    /// fetches them from its [`DeviceChannel`](super::DeviceChannel)); whether one is open.
    pub fn notify(&self, device: &str) -> bool {
        self.shared.notify(device)
    }

    /// Whether `device` has an open session.
    pub fn is_connected(&self, device: &str) -> bool {
        self.shared.is_open(device)
    }

    /// Devices with an open session, sorted.
    pub fn connected_devices(&self) -> Vec<String> {
        self.shared.devices()
    }

    /// Stops accepting, asks every session to store and acknowledge what it received and close,
    /// and waits up to `grace` for the connections to end.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.begin_shutdown();
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
