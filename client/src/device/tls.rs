//! TLS for MQTTS: a rustls client configuration (ring provider) trusting given CA certificates
//! and, for certificate authentication, presenting a client certificate whose CN is the device id.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::DeviceError;

fn bad(what: &str, e: impl std::fmt::Display) -> DeviceError {
    DeviceError::Tls(format!("{what}: {e}"))
}

/// A client configuration trusting the CA certificates in `ca_pem`, presenting the client
/// certificate `cert` (PEM chain, PEM private key) when given.
pub fn client_config(
    ca_pem: &[u8],
    cert: Option<(&[u8], &[u8])>,
) -> Result<Arc<rustls::ClientConfig>, DeviceError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(c.map_err(|e| bad("CA certificate", e))?)
            .map_err(|e| bad("CA certificate", e))?;
    }
    if roots.is_empty() {
        return Err(DeviceError::Tls("no CA certificate in the PEM".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS versions", e))?
        .with_root_certificates(roots);
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("client certificate", e))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("client key", e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("client certificate", e))?
        }
    };
    Ok(Arc::new(config))
}
