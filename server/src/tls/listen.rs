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

use super::ClientVerifier;
use super::identity::chain_identity;

/// Longest a client may take to complete the TLS handshake of an HTTPS connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS handshake of an MQTTS connection, yielding the device identity of a verified client
/// certificate. A certificate that verifies but names no device id fails the handshake.
#[derive(Clone)]
pub struct MqttsHandshake {
    acceptor: TlsAcceptor,
    verifier: Option<Arc<ClientVerifier>>,
}

impl std::fmt::Debug for MqttsHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttsHandshake").finish_non_exhaustive()
    }
}

impl MqttsHandshake {
    /// A handshake with `config`, whose client certificates `verifier` checks (to tell client
    /// CA certificates from enrollment CA ones).
    pub fn new(config: Arc<rustls::ServerConfig>, verifier: Option<Arc<ClientVerifier>>) -> Self {
        MqttsHandshake {
            acceptor: TlsAcceptor::from(config),
            verifier,
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
        let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
        let certificate = if chain.is_empty() {
            None
        } else {
            Some(
                chain_identity(chain, self.verifier.as_deref()).map_err(|message| {
                    tracing::info!(%message, "mqtts client certificate refused");
                    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
                })?,
            )
        };
        Ok((tls, certificate))
    }
}
