//! Client certificates as device identities: the device id a verified certificate names (its
//! subject common name, else its first DNS subject alternative name, which must be a valid device
//! id), its SHA-256 thumbprint, and the registry check that the device exists, is enabled and,
//! when it has a pinned thumbprint, presented exactly that certificate. Used by MQTTS CONNECT
//! and by HTTPS requests that carry no other credentials.

use std::sync::Arc;

use axum::extract::Request;
use axum_server::tls::TlsInfo;
use sha2::{Digest, Sha256};
use strata_ingest::mqtt::ClientCertificate;
use strata_registry::{Registry, RegistryError};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// The identity a verified client certificate (DER) claims, or why it names no device.
pub fn certificate_identity(der: &[u8]) -> Result<ClientCertificate, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let device = device_name(&cert).ok_or_else(|| {
        "the client certificate names no device: its subject CN (or a DNS SAN) must be a device id"
            .to_string()
    })?;
    Ok(ClientCertificate {
        device,
        thumbprint: thumbprint(der),
    })
}

/// The subject CN if it is a valid device id, else the first DNS SAN that is one.
fn device_name(cert: &X509Certificate<'_>) -> Option<String> {
    let cn = cert
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .find(|s| valid_id(s));
    if let Some(cn) = cn {
        return Some(cn.to_owned());
    }
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|g| match g {
        GeneralName::DNSName(d) if valid_id(d) => Some((*d).to_owned()),
        _ => None,
    })
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
    if !device.enabled {
        return Err(RegistryError::Unauthorized(format!(
            "device '{}' is disabled",
            cert.device
        )));
    }
    registry.record_seen(&cert.device)
}

/// The device principal of an HTTPS request whose connection presented a client certificate;
/// `None` when there is no such certificate (plain HTTP, or TLS without one).
pub fn request_device(st: &AppState, req: &Request) -> Option<Result<Principal, ApiError>> {
    let info = req.extensions().get::<Arc<TlsInfo>>()?;
    let der = info.peer_certificates.first()?;
    Some(device_principal(&st.registry, der))
}

fn device_principal(registry: &Registry, der: &[u8]) -> Result<Principal, ApiError> {
    let cert = certificate_identity(der).map_err(ApiError::Unauthorized)?;
    match check_device(registry, &cert) {
        Ok(()) => Ok(Principal::Device(cert.device)),
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

    #[test]
    fn names_and_thumbprints() {
        let der = cert(Some("dev-1"), &["other"]);
        let id = certificate_identity(&der).unwrap();
        assert_eq!(id.device, "dev-1");
        assert_eq!(id.thumbprint.len(), 64);
        assert_eq!(id.thumbprint, thumbprint(&der));
        // CN not a device id: the first DNS SAN that is one.
        let der = cert(Some("not a device id"), &["sensor.7"]);
        assert_eq!(certificate_identity(&der).unwrap().device, "sensor.7");
        assert!(certificate_identity(&cert(None, &[])).is_err());
        assert!(certificate_identity(b"garbage").is_err());
        assert_eq!(
            thumbprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
