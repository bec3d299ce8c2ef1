//! The TLS listeners. HTTPS runs the same axum router as plain HTTP through `axum-server`'s
//! rustls acceptor (set up in `serve/limits.rs` with the connection limit and timeouts), which
//! puts the verified client certificates of the connection into every request's extensions
//! ([`axum_server::tls::TlsInfo`]); MQTTS hands the MQTT server a [`MqttsHandshake`]
//! (tokio-rustls) so plain and TLS connections share the session code.

use std::sync::Arc;
use std::time::Duration;

use strata_ingest::mqtt::{ClientCertificate, Handshake};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::identity::certificate_identity;

/// Longest a client may take to complete the TLS handshake of an HTTPS connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
