//! TLS for the HTTPS and MQTTS listeners (rustls with the ring provider): the `serve` flags
//! ([`TlsArgs`]), the certificate set-up ([`Tls::setup`]: operator-provided files, or a
//! development CA and server certificate generated into `DATA/tls/`), optional client-certificate
//! (mTLS) device authentication, and the listeners themselves. `docs/tls.md` describes it all.

pub mod devca;
pub mod enrolled;
pub mod identity;
pub mod issue;
pub mod listen;
pub mod pem;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;

pub use devca::DevCa;
pub use enrolled::{ClientVerifier, EnrollmentCas};
pub use identity::check_device;
pub use listen::{HANDSHAKE_TIMEOUT, MqttsHandshake};

/// Names the generated development server certificate always covers.
pub const DEFAULT_HOSTNAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// TLS flags of `strata serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// HTTPS listen address (HOST:PORT, e.g. 127.0.0.1:7443; port 0 picks a free port). Serves
    /// the same API as --http-addr. Off unless given.
    #[arg(long, env = "STRATA_HTTPS_ADDR")]
    pub https_addr: Option<SocketAddr>,

    /// MQTT 3.1.1 over TLS device endpoint (HOST:PORT, e.g. 0.0.0.0:8883). Off unless given.
    #[arg(long, env = "STRATA_MQTTS_ADDR")]
    pub mqtts_addr: Option<SocketAddr>,

    /// Server certificate chain (PEM, leaf first). Without it a development CA and a server
    /// certificate signed by it are generated into DATA/tls/ on first start and reused.
    #[arg(long, env = "STRATA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "STRATA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM) whose client certificates authenticate devices without a key
    /// (mTLS). Default: the development CA when it is the one in use, else none.
    #[arg(long, env = "STRATA_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// Do not ask clients for certificates, even with the development CA.
    #[arg(
        long,
        env = "STRATA_NO_TLS_CLIENT_AUTH",
        conflicts_with = "tls_client_ca"
    )]
    pub no_tls_client_auth: bool,

    /// Extra host names or IP addresses for the generated development server certificate
    /// (repeatable or comma-separated); localhost, 127.0.0.1 and ::1 are always included.
    #[arg(
        long = "tls-hostname",
        env = "STRATA_TLS_HOSTNAMES",
        value_delimiter = ','
    )]
    pub tls_hostnames: Vec<String>,
}

impl TlsArgs {
    /// Whether any TLS listener is configured.
    pub fn enabled(&self) -> bool {
        self.https_addr.is_some() || self.mqtts_addr.is_some()
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Generating or signing a certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificates or key (e.g. the key does not match the certificate).
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// The TLS material the listeners use, built once at startup.
#[derive(Debug, Clone)]
pub struct Tls {
    /// Configuration of the HTTPS listener (ALPN http/1.1).
    pub https: Arc<rustls::ServerConfig>,
    /// Configuration of the MQTTS listener (no ALPN).
    pub mqtts: Arc<rustls::ServerConfig>,
    /// Configuration of the PostgreSQL listener's TLS upgrade (ALPN `postgresql`, no client
    /// certificates: clients sign in with a token).
    pub pg: Arc<rustls::ServerConfig>,
    /// The development CA, when it signed the server certificate and is the client CA: it can
    /// then issue device certificates.
    pub dev_ca: Option<Arc<DevCa>>,
    /// Where the certificate clients should trust is (DATA/tls/ca.pem for the development CA,
    /// else --tls-cert), for the startup log.
    pub trust: PathBuf,
    /// The client CA file, when client certificates are accepted.
    pub client_ca: Option<PathBuf>,
    /// The client-certificate verifier of HTTPS and MQTTS (client CA and enrollment CAs); `None`
    /// with `--no-tls-client-auth`.
    pub verifier: Option<Arc<ClientVerifier>>,
}

/// The ring crypto provider, shared by every configuration.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// Loads the operator's certificate, or creates/reuses the development CA and server
    /// certificate under `data_dir/tls`, and the client CA. Blocking (file I/O, key generation).
    pub fn setup(args: &TlsArgs, data_dir: &Path) -> Result<Tls, TlsError> {
        let (chain, key, dev_ca, trust) = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => (
                pem::certificates(cert)?,
                pem::private_key(key)?,
                None,
                cert.clone(),
            ),
            _ => {
                let dir = data_dir.join("tls");
                let ca = DevCa::load_or_create(&dir)?;
                let names = hostnames(&args.tls_hostnames);
                let (chain, key) = devca::server_certificate(&ca, &dir, &names)?;
                let trust = ca.cert_path().to_path_buf();
                (chain, key, Some(Arc::new(ca)), trust)
            }
        };
        let client_ca = match (&args.tls_client_ca, &dev_ca) {
            _ if args.no_tls_client_auth => None,
            (Some(path), _) => Some(path.clone()),
            (None, Some(ca)) => Some(ca.cert_path().to_path_buf()),
            (None, None) => None,
        };
        let fixed = match &client_ca {
            Some(path) => Some(client_verifier(&pem::certificates(path)?)?),
            None => None,
        };
        // Enrollment groups' CAs join at run time (loaded once the registry is open).
        let verifier = (!args.no_tls_client_auth)
            .then(|| Arc::new(ClientVerifier::new(fixed, EnrollmentCas::new())));
        let dyn_verifier = verifier.clone().map(|v| v as Arc<dyn ClientCertVerifier>);
        // The development CA issues device certificates only when it is the client CA.
        let issuer = dev_ca.filter(|ca| client_ca.as_deref() == Some(ca.cert_path()));
        // HTTP/1.1 only: with HTTP/2, an early refusal (e.g. 401 before the body was read)
        // resets the stream and curl reports a framing error instead of the status.
        let https = server_config(&chain, &key, dyn_verifier.clone(), &[b"http/1.1"])?;
        let mqtts = server_config(&chain, &key, dyn_verifier, &[])?;
        let pg = server_config(&chain, &key, None, &[b"postgresql"])?;
        Ok(Tls {
            https,
            mqtts,
            pg,
            dev_ca: issuer,
            trust,
            client_ca,
            verifier,
        })
    }
}

/// The default names plus `extra`, without duplicates or empty entries.
pub fn hostnames(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = DEFAULT_HOSTNAMES.iter().map(|s| s.to_string()).collect();
    for name in extra.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

/// A verifier that checks client certificates against `roots` but lets clients without one in
/// (they then authenticate with a key or token as over plain TCP).
fn client_verifier(
    roots: &[CertificateDer<'static>],
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    enrolled::roots_verifier(roots).map_err(|e| TlsError::Config(format!("client CA: {e}")))
}

/// A rustls server configuration (TLS 1.2 and 1.3, ring).
fn server_config(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain.to_vec(), key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_dedupe() {
        let names = hostnames(&["db.example".into(), " localhost ".into(), String::new()]);
        assert_eq!(names, ["localhost", "127.0.0.1", "::1", "db.example"]);
    }

    #[test]
    fn dev_setup_is_reused_and_operator_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let args = TlsArgs {
            https_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..TlsArgs::default()
        };
        let first = Tls::setup(&args, dir.path()).unwrap();
        let ca_pem = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
        assert!(first.dev_ca.is_some());
        assert_eq!(first.client_ca.as_deref(), Some(first.trust.as_path()));
        let again = Tls::setup(&args, dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("tls/ca.pem")).unwrap(),
            ca_pem
        );
        assert!(again.dev_ca.is_some());
        // The generated files work as operator-provided ones; no client CA by default then.
        let operator = TlsArgs {
            tls_cert: Some(dir.path().join("tls/server.pem")),
            tls_key: Some(dir.path().join("tls/server.key")),
            ..args.clone()
        };
        let op = Tls::setup(&operator, dir.path()).unwrap();
        assert!(op.dev_ca.is_none() && op.client_ca.is_none());
        // A key that does not belong to the certificate is refused.
        let mismatched = TlsArgs {
            tls_key: Some(dir.path().join("tls/ca.key")),
            ..operator
        };
        let err = Tls::setup(&mismatched, dir.path()).unwrap_err();
        assert!(matches!(err, TlsError::Config(_)), "{err}");
        let off = TlsArgs {
            no_tls_client_auth: true,
            ..args
        };
        let off = Tls::setup(&off, dir.path()).unwrap();
        assert!(off.dev_ca.is_none() && off.client_ca.is_none());
    }
}
