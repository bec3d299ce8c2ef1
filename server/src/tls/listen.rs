//! The TLS listeners. HTTPS runs the same axum router as plain HTTP through `axum-server`'s
//! rustls acceptor, which puts the verified client certificates of the connection into every
//! request's extensions ([`axum_server::tls::TlsInfo`]); MQTTS hands the MQTT server a
//! [`MqttsHandshake`] (tokio-rustls) so plain and TLS connections share the session code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use strata_ingest::mqtt::{ClientCertificate, Handshake};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::identity::certificate_identity;

/// Longest a client may take to complete the TLS handshake of an HTTPS connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running HTTPS listener.
#[derive(Debug)]
pub struct HttpsServer {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: JoinHandle<std::io::Result<()>>,
}

impl HttpsServer {
    /// Binds `addr` and serves `app` over TLS with `config` in the background.
    pub fn start(
        addr: SocketAddr,
        config: Arc<rustls::ServerConfig>,
        app: Router,
    ) -> std::io::Result<HttpsServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(config))
            .handshake_timeout(HANDSHAKE_TIMEOUT)
            .acceptor(NoDelayAcceptor::new());
        let handle = Handle::new();
        let server = axum_server::from_tcp(listener)?
            .acceptor(acceptor)
            .handle(handle.clone());
        let task = tokio::spawn(server.serve(app.into_make_service()));
        Ok(HttpsServer {
            addr: local,
            handle,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and lets in-flight requests finish for at most `drain`.
    pub fn begin_shutdown(&self, drain: Duration) {
        self.handle.graceful_shutdown(Some(drain));
    }

    /// Waits for the listener to stop (at most `limit`), aborting it after that.
    pub async fn finish(mut self, limit: Duration) {
        match tokio::time::timeout(limit, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTPS listener failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "HTTPS listener task failed"),
            Err(_) => {
                tracing::warn!("HTTPS requests did not finish in time; closing them");
                self.task.abort();
            }
        }
    }
}

/// The TLS handshake of an MQTTS connection, yielding the device identity of a verified client
/// certificate. A certificate that verifies but names no device id fails the handshake.
#[derive(Clone)]
pub struct MqttsHandshake {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for MqttsHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttsHandshake").finish_non_exhaustive()
    }
}

impl MqttsHandshake {
    /// A handshake with `config`.
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        MqttsHandshake {
            acceptor: TlsAcceptor::from(config),
        }
    }
}

impl Handshake for MqttsHandshake {
    type Stream = TlsStream<TcpStream>;

    async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<(Self::Stream, Option<ClientCertificate>)> {
        let tls = self.acceptor.accept(tcp).await?;
        let certificate = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
            Some(der) => Some(certificate_identity(der).map_err(|message| {
                tracing::info!(%message, "mqtts client certificate refused");
                std::io::Error::new(std::io::ErrorKind::InvalidData, message)
            })?),
            None => None,
        };
        Ok((tls, certificate))
    }
}
