//! Client-certificate verification with the enrollment groups' CA certificates: the rustls
//! [`ClientVerifier`] of the HTTPS and MQTTS listeners accepts a certificate that chains to the
//! server's client CA (`--tls-client-ca`, or the development CA) *or* to the CA of any enrollment
//! group created with a `ca_cert` ([`EnrollmentCas`], reloaded from the registry whenever an
//! enrollment changes through the API). [`ClientVerifier::enrollment_of`] tells the two apart:
//! a certificate vouched for only by an enrollment CA authenticates only the device whose pinned
//! thumbprint it is, or provisions a new device through that group (`docs/devices.md`).

use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use strata_registry::{Registry, RegistryError};

use super::provider;

/// One enrollment group's CA as a verifier.
struct GroupCa {
    id: String,
    verifier: Arc<dyn ClientCertVerifier>,
}

/// The CA certificates of the certificate enrollment groups (enabled or not: a disabled group
/// refuses new provisioning, but devices it provisioned keep authenticating).
#[derive(Default)]
pub struct EnrollmentCas {
    groups: RwLock<Arc<Vec<GroupCa>>>,
}

impl std::fmt::Debug for EnrollmentCas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.snapshot().iter().map(|g| g.id.clone()).collect();
        f.debug_struct("EnrollmentCas")
            .field("groups", &ids)
            .finish()
    }
}

/// A verifier trusting exactly the certificates of `pem` (letting clients without a
/// certificate through: the caller decides what a missing certificate means).
pub fn ca_verifier(pem: &str) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let certs = super::pem::certificates_from(pem.as_bytes())?;
    roots_verifier(&certs)
}

/// A verifier trusting `roots`, letting clients without a certificate through.
pub fn roots_verifier(
    roots: &[CertificateDer<'static>],
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut store = RootCertStore::empty();
    for cert in roots {
        store
            .add(cert.clone())
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))
}

impl EnrollmentCas {
    /// An empty set (filled by [`EnrollmentCas::load`]).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn snapshot(&self) -> Arc<Vec<GroupCa>> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the set with the CA certificates of every certificate group in `registry`. A
    /// stored certificate that no longer parses is skipped with a warning.
    pub fn load(&self, registry: &Registry) -> Result<usize, RegistryError> {
        let mut groups = Vec::new();
        for group in registry.enrollments()? {
            let Some(pem) = &group.ca_cert else { continue };
            match ca_verifier(pem) {
                Ok(verifier) => groups.push(GroupCa {
                    id: group.id,
                    verifier,
                }),
                Err(e) => {
                    tracing::warn!(enrollment = %group.id, error = %e, "enrollment CA unusable")
                }
            }
        }
        let n = groups.len();
        *self.groups.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(groups);
        Ok(n)
    }

    /// Whether no group has a CA.
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// The first group (by id) whose CA verifies `chain` (leaf first).
    pub fn group_of(&self, chain: &[CertificateDer<'_>]) -> Option<String> {
        let (leaf, rest) = chain.split_first()?;
        self.snapshot()
            .iter()
            .find(|g| verified(g.verifier.as_ref(), leaf, rest))
            .map(|g| g.id.clone())
    }

    /// Whether group `id`'s CA verifies `chain` (leaf first).
    pub fn verifies(&self, id: &str, chain: &[CertificateDer<'_>]) -> bool {
        let Some((leaf, rest)) = chain.split_first() else {
            return false;
        };
        self.snapshot()
            .iter()
            .any(|g| g.id == id && verified(g.verifier.as_ref(), leaf, rest))
    }
}

fn verified(
    v: &dyn ClientCertVerifier,
    leaf: &CertificateDer<'_>,
    rest: &[CertificateDer<'_>],
) -> bool {
    v.verify_client_cert(leaf, rest, UnixTime::now()).is_ok()
}

/// The client-certificate verifier of the TLS listeners: the server's client CA (`fixed`) or
/// any enrollment group's CA. Clients without a certificate are let through (they authenticate
/// with a key or token); client certificates are asked for only when some CA is configured.
pub struct ClientVerifier {
    fixed: Option<Arc<dyn ClientCertVerifier>>,
    enrolled: Arc<EnrollmentCas>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("client_ca", &self.fixed.is_some())
            .field("enrolled", &self.enrolled)
            .finish()
    }
}

impl ClientVerifier {
    /// A verifier over the server's client CA (if any) and the enrollment CAs.
    pub fn new(fixed: Option<Arc<dyn ClientCertVerifier>>, enrolled: Arc<EnrollmentCas>) -> Self {
        ClientVerifier {
            fixed,
            enrolled,
            provider: provider(),
        }
    }

    /// The enrollment CAs.
    pub fn enrolled(&self) -> &Arc<EnrollmentCas> {
        &self.enrolled
    }

    /// How a verified `chain` is trusted: `Ok(None)` through the server's client CA (it may
    /// name any registered device), `Ok(Some(group))` only through enrollment `group`'s CA, or
    /// `Err` when neither verifies it now (e.g. its group was deleted since the handshake).
    pub fn enrollment_of(&self, chain: &[CertificateDer<'_>]) -> Result<Option<String>, String> {
        let Some((leaf, rest)) = chain.split_first() else {
            return Err("no client certificate".into());
        };
        if self
            .fixed
            .as_ref()
            .is_some_and(|f| verified(f.as_ref(), leaf, rest))
        {
            return Ok(None);
        }
        self.enrolled
            .group_of(chain)
            .map(Some)
            .ok_or_else(|| "the client certificate is not signed by a trusted CA".into())
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.fixed.is_some() || !self.enrolled.is_empty()
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// The client CA's names only (enrollment CAs change at run time and are not hinted;
    /// clients send their certificate regardless).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.fixed.as_ref().map_or(&[], |f| f.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let fixed = match &self.fixed {
            Some(f) => match f.verify_client_cert(end_entity, intermediates, now) {
                Ok(ok) => return Ok(ok),
                Err(e) => Some(e),
            },
            None => None,
        };
        for group in self.enrolled.snapshot().iter() {
            if let Ok(ok) = group
                .verifier
                .verify_client_cert(end_entity, intermediates, now)
            {
                return Ok(ok);
            }
        }
        Err(fixed.unwrap_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };

    fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(p, key))
    }

    fn leaf(cn: &str, issuer: &Issuer<'static, KeyPair>) -> CertificateDer<'static> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        p.signed_by(&key, issuer).unwrap().der().clone()
    }

    #[test]
    fn enrollment_cas_classify_chains() {
        let (fixed_pem, fixed_ca) = ca("fixed");
        let (a_pem, a_ca) = ca("group a");
        let (_, other_ca) = ca("other");
        let cas = EnrollmentCas::new();
        *cas.groups.write().unwrap() = Arc::new(vec![GroupCa {
            id: "line-a".into(),
            verifier: ca_verifier(&a_pem).unwrap(),
        }]);
        let v = ClientVerifier::new(Some(ca_verifier(&fixed_pem).unwrap()), cas.clone());
        assert!(v.offer_client_auth());
        let now = UnixTime::now();
        let from_fixed = leaf("dev-1", &fixed_ca);
        let from_a = leaf("dev-2", &a_ca);
        let from_other = leaf("dev-3", &other_ca);
        assert!(v.verify_client_cert(&from_fixed, &[], now).is_ok());
        assert!(v.verify_client_cert(&from_a, &[], now).is_ok());
        assert!(v.verify_client_cert(&from_other, &[], now).is_err());
        assert_eq!(v.enrollment_of(&[from_fixed]), Ok(None));
        assert_eq!(
            v.enrollment_of(std::slice::from_ref(&from_a)),
            Ok(Some("line-a".into()))
        );
        assert!(v.enrollment_of(std::slice::from_ref(&from_other)).is_err());
        assert!(cas.verifies("line-a", std::slice::from_ref(&from_a)));
        assert!(!cas.verifies("line-b", &[from_a]));
        assert!(!cas.verifies("line-a", &[from_other]));
        assert!(ca_verifier("not a certificate").is_err());
        let none = ClientVerifier::new(None, EnrollmentCas::new());
        assert!(!none.offer_client_auth());
    }
}
