//! Client certificates as device identities: the device id a verified certificate names (its one
//! subject common name, which must be a valid device id; subject alternative names are never
//! read, so an extra DNS SAN cannot claim another device), its SHA-256 thumbprint, and the registry check that the device exists, is enabled and,
//! when it has a pinned thumbprint, presented exactly that certificate. A certificate trusted
//! only through an enrollment group's CA ([`ClientCertificate::enrollment`]) authenticates only
//! a device with exactly that pinned thumbprint. Used by MQTTS CONNECT and by HTTPS requests
//! that carry no other credentials.

use std::sync::Arc;

use axum::extract::Request;
use axum_server::tls::TlsInfo;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use strata_ingest::mqtt::ClientCertificate;
use strata_registry::{Registry, RegistryError};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::ClientVerifier;
use crate::error::ApiError;
use crate::state::AppState;

/// The identity a verified client certificate (DER) claims, or why it names no device.
pub fn certificate_identity(der: &[u8]) -> Result<ClientCertificate, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let device = device_name(&cert).ok_or_else(|| {
        "the client certificate names no device: it needs exactly one subject CN, a valid device id (SANs are not used)"
            .to_string()
    })?;
    Ok(ClientCertificate {
        device,
        thumbprint: thumbprint(der),
        enrollment: None,
    })
}

/// The identity of a verified `chain` (leaf first), with [`ClientCertificate::enrollment`] set
/// when only an enrollment group's CA vouches for it (see [`ClientVerifier::enrollment_of`]).
pub fn chain_identity(
    chain: &[CertificateDer<'_>],
    verifier: Option<&ClientVerifier>,
) -> Result<ClientCertificate, String> {
    let leaf = chain.first().ok_or("no client certificate")?;
    let mut identity = certificate_identity(leaf)?;
    if let Some(v) = verifier {
        identity.enrollment = v.enrollment_of(chain)?;
    }
    Ok(identity)
}

/// The subject CN when there is exactly one and it is a valid device id. Subject alternative
/// names are ignored: the device id is pinned to this one field (see `docs/tls.md`).
fn device_name(cert: &X509Certificate<'_>) -> Option<String> {
    let mut cns = cert.subject().iter_common_name();
    let cn = cns.next()?.as_str().ok()?;
    (cns.next().is_none() && valid_id(cn)).then(|| cn.to_owned())
}

fn valid_id(s: &str) -> bool {
    strata_registry::validate_device_id(s).is_ok()
}

/// Lowercase hex SHA-256 of a certificate's DER bytes (the registry's thumbprint format).
pub fn thumbprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks a certificate identity against the registry: the device must exist and be enabled,
/// and when the device has a registered thumbprint the certificate must be that one.
pub fn check_device(registry: &Registry, cert: &ClientCertificate) -> Result<(), RegistryError> {
    let device = registry.get_device(&cert.device)?;
    if device.thumbprint.is_some() {
        return registry.authenticate_device_cert(&cert.device, &cert.thumbprint);
    }
    if let Some(group) = &cert.enrollment {
        return Err(RegistryError::Unauthorized(format!(
            "a certificate from enrollment '{group}''s CA authenticates only the device provisioned with it"
        )));
    }
    if !device.enabled {
        return Err(RegistryError::Unauthorized(format!(
            "device '{}' is disabled",
            cert.device
        )));
    }
    registry.record_seen(&cert.device)
}

/// The enabled device named by the client certificate of an HTTPS request; `None` when the
/// connection presented no certificate (plain HTTP, or TLS without one).
pub fn request_device(st: &AppState, req: &Request) -> Option<Result<String, ApiError>> {
    let info = req.extensions().get::<Arc<TlsInfo>>()?;
    info.peer_certificates.first()?;
    let verifier = req.extensions().get::<Arc<ClientVerifier>>();
    Some(device_principal(
        &st.registry,
        &der_chain(&info.peer_certificates),
        verifier.map(|v| v.as_ref()),
    ))
}

/// The peer certificates of an HTTPS connection (DER, leaf first) as rustls types.
pub fn der_chain(certs: &[Vec<u8>]) -> Vec<CertificateDer<'_>> {
    certs
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect()
}

fn device_principal(
    registry: &Registry,
    chain: &[CertificateDer<'_>],
    verifier: Option<&ClientVerifier>,
) -> Result<String, ApiError> {
    let cert = chain_identity(chain, verifier).map_err(ApiError::Unauthorized)?;
    match check_device(registry, &cert) {
        Ok(()) => Ok(cert.device),
        Err(RegistryError::NotFound { .. }) => Err(ApiError::Unauthorized(format!(
            "client certificate for unknown device '{}'",
            cert.device
        ))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert(cn: Option<&str>, sans: &[&str]) -> Vec<u8> {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        p.self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec()
    }

    /// Issue 14, defect 7: only the subject CN names the device; a DNS SAN naming another
    /// device is ignored, and a certificate without a usable CN names none.
    #[test]
    fn only_the_common_name_names_the_device() {
        let der = cert(Some("dev-1"), &["dev-2", "victim"]);
        assert_eq!(certificate_identity(&der).unwrap().device, "dev-1");
        assert!(certificate_identity(&cert(Some("not a device id"), &["victim"])).is_err());
        assert!(certificate_identity(&cert(None, &["victim"])).is_err());
    }

    #[test]
    fn names_and_thumbprints() {
        let der = cert(Some("dev-1"), &["other"]);
        let id = certificate_identity(&der).unwrap();
        assert_eq!(id.device, "dev-1");
        assert_eq!(id.thumbprint.len(), 64);
        assert_eq!(id.thumbprint, thumbprint(&der));
        assert!(certificate_identity(&cert(None, &[])).is_err());
        assert!(certificate_identity(b"garbage").is_err());
        assert_eq!(
            thumbprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
