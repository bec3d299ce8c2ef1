//! The development CA: created in `DATA/tls/` (`ca.pem`, `ca.key` mode 0600) on the first start
//! with TLS and no operator certificate, reused afterwards. It signs the server certificate
//! (`server.pem`, `server.key` 0600, reissued when the wanted host names change, the CA changed
//! or it expires within 30 days) and, on request, device client certificates for mTLS.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::TlsError;

/// Common name of the generated CA.
pub const CA_NAME: &str = "Strata development CA";
/// Years the generated CA is valid.
const CA_YEARS: i64 = 10;
/// Days a generated server certificate is valid.
const SERVER_DAYS: i64 = 825;
/// A server certificate expiring sooner than this many days is reissued at startup.
const RENEW_DAYS: i64 = 30;
/// Longest validity of an issued device certificate, in days.
pub const MAX_DEVICE_DAYS: u32 = 3650;

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The certificate's DER bytes.
    pub der: Vec<u8>,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
}

impl std::fmt::Debug for Issued {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The development CA: its certificate and signing key.
pub struct DevCa {
    cert_path: PathBuf,
    cert_pem: String,
    /// The CA certificate's DER bytes.
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl DevCa {
    /// Loads `dir/ca.pem` + `dir/ca.key`, or creates both (and `dir`) when either is missing.
    pub fn load_or_create(dir: &Path) -> Result<DevCa, TlsError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        if cert_path.exists() && key_path.exists() {
            let cert_pem = read_text(&cert_path)?;
            let key = KeyPair::from_pem(&read_text(&key_path)?).map_err(|e| TlsError::Pem {
                path: key_path.clone(),
                message: format!("not a usable CA key: {e}"),
            })?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| TlsError::Pem {
                path: cert_path.clone(),
                message: format!("not a usable CA certificate: {e}"),
            })?;
            let der = first_der(&cert_pem, &cert_path)?;
            return Ok(DevCa {
                cert_path,
                cert_pem,
                der,
                issuer,
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, CA_NAME);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Strata");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_YEARS * 365);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
        let cert_pem = cert.pem();
        let der = cert.der().to_vec();
        Ok(DevCa {
            cert_path,
            cert_pem,
            der,
            issuer: Issuer::new(params, key),
        })
    }

    /// Path of the CA certificate (what clients pass to `curl --cacert`).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses) with a new key.
    pub fn issue_server(&self, names: &[String]) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Strata server");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, SERVER_DAYS)
    }

    /// A client certificate for device `id` (subject CN = id) valid for `days`, with a new key.
    pub fn issue_device(&self, id: &str, days: u32) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, id);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, i64::from(days.clamp(1, MAX_DEVICE_DAYS)))
    }

    fn sign(&self, mut params: CertificateParams, days: i64) -> Result<Issued, TlsError> {
        let not_after = set_validity(&mut params, days);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            not_after,
        })
    }
}

/// The server certificate chain and key from `dir/server.pem` + `dir/server.key`, reissued by
/// `ca` (and written back) unless the stored pair is signed by `ca`, covers every name in
/// `names`, matches its key and stays valid for at least 30 more days.
pub fn server_certificate(
    ca: &DevCa,
    dir: &Path,
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server.key");
    let reusable = match (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        (Ok(cert), Ok(key)) => reusable(ca, &cert, &key, names),
        _ => false,
    };
    if !reusable {
        let issued = ca.issue_server(names)?;
        write_file(&key_path, issued.key_pem.as_bytes(), 0o600)?;
        write_file(&cert_path, issued.cert_pem.as_bytes(), 0o644)?;
        tracing::info!(path = %cert_path.display(), names = ?names, "issued a development server certificate");
    }
    Ok((
        super::pem::certificates(&cert_path)?,
        super::pem::private_key(&key_path)?,
    ))
}

/// Whether a stored server certificate can be used as it is.
fn reusable(ca: &DevCa, cert_pem: &str, key_pem: &str, names: &[String]) -> bool {
    let Ok(ders) = super::pem::certificates_from(cert_pem.as_bytes()) else {
        return false;
    };
    let Ok(key) = KeyPair::from_pem(key_pem) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca_cert))) = (
        X509Certificate::from_der(&ders[0]),
        X509Certificate::from_der(&ca.der),
    ) else {
        return false;
    };
    let renew_at = now_secs() + RENEW_DAYS * 86_400;
    cert.issuer().as_raw() == ca_cert.subject().as_raw()
        && cert.verify_signature(Some(ca_cert.public_key())).is_ok()
        && cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
        && cert.validity().not_after.timestamp() > renew_at
        && names.iter().all(|n| covers(&cert, n))
}

/// Whether `cert` has `name` among its subject alternative names.
fn covers(cert: &X509Certificate<'_>, name: &str) -> bool {
    let ip: Option<IpAddr> = name.parse().ok();
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(|g| match (g, ip) {
        (GeneralName::DNSName(d), None) => d.eq_ignore_ascii_case(name),
        (GeneralName::IPAddress(b), Some(IpAddr::V4(v4))) => *b == v4.octets(),
        (GeneralName::IPAddress(b), Some(IpAddr::V6(v6))) => *b == v6.octets(),
        _ => false,
    })
}

/// The DER bytes of the first certificate of `pem` (read from `path`).
fn first_der(pem: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let ders = super::pem::certificates_from(pem.as_bytes()).map_err(|message| TlsError::Pem {
        path: path.to_path_buf(),
        message,
    })?;
    Ok(ders[0].to_vec())
}

/// Sets validity from yesterday (clock skew) to `days` from today; returns the end in seconds.
fn set_validity(params: &mut CertificateParams, days: i64) -> i64 {
    let today = now_secs().div_euclid(86_400);
    let (y, m, d) = civil_from_days(today - 1);
    params.not_before = date_time_ymd(y, m, d);
    let end = today + days;
    let (y, m, d) = civil_from_days(end);
    params.not_after = date_time_ymd(y, m, d);
    end * 86_400
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The (year, month, day) of a day number (days since 1970-01-01), in rcgen's types.
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let (y, m, d) = crate::time::civil_from_days(z);
    (y as i32, m as u8, d as u8)
}

fn read_text(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename) with `mode`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn ca_and_server_certificate_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let ca = DevCa::load_or_create(&tls).unwrap();
        let mode = |p: &str| std::fs::metadata(tls.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("ca.key"), 0o600);
        let names = super::super::hostnames(&[]);
        server_certificate(&ca, &tls, &names).unwrap();
        assert_eq!(mode("server.key"), 0o600);
        let first = std::fs::read(tls.join("server.pem")).unwrap();
        // Same CA, same names: reused.
        let ca = DevCa::load_or_create(&tls).unwrap();
        server_certificate(&ca, &tls, &names).unwrap();
        assert_eq!(std::fs::read(tls.join("server.pem")).unwrap(), first);
        // A new name: reissued, and it covers the name.
        let more = super::super::hostnames(&["strata.test".into(), "10.1.2.3".into()]);
        server_certificate(&ca, &tls, &more).unwrap();
        let second = std::fs::read_to_string(tls.join("server.pem")).unwrap();
        assert_ne!(second.as_bytes(), first.as_slice());
        let ders = super::super::pem::certificates_from(second.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(&ders[0]).unwrap();
        for n in &more {
            assert!(covers(&cert, n), "{n}");
        }
        assert!(!covers(&cert, "other.test"));
        // A different CA: the old server certificate is not reused.
        let other = DevCa::load_or_create(&dir.path().join("other")).unwrap();
        let key = std::fs::read_to_string(tls.join("server.key")).unwrap();
        assert!(reusable(&ca, &second, &key, &more));
        assert!(!reusable(&other, &second, &key, &more));
    }

    #[test]
    fn device_certificates_name_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::load_or_create(dir.path()).unwrap();
        let issued = ca.issue_device("truck-7", 30).unwrap();
        let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "truck-7");
        let (_, ca_cert) = X509Certificate::from_der(&ca.der).unwrap();
        assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
        assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());
        assert!(issued.not_after > now_secs() + 29 * 86_400);
        assert!(!format!("{issued:?}").contains("PRIVATE"));
    }
}
