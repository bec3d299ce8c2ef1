//! Zero-touch provisioning from an enrollment group: derive the device key from the group key
//! (lowercase hex HMAC-SHA256 keyed with the group key string over the device id) and call
//! `POST /api/v1/provision/{enrollment}` with `Basic base64(device_id:derived_key)`; or, for a
//! group created with a CA certificate, call it over HTTPS presenting a client certificate that
//! CA signed (subject CN = device id) with [`provision_with_certificate`].

use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::DeviceError;

/// The device key derived from an enrollment group key: the lowercase hex of HMAC-SHA256 keyed
/// with the group key's UTF-8 bytes over the device id's UTF-8 bytes.
pub fn derive_key(group_key: &str, device_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(group_key.as_bytes())
        .unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default()));
    mac.update(device_id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the provisioning endpoint answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioned {
    /// The device id.
    pub device_id: String,
    /// The device key (the derived key); empty for a device provisioned by certificate.
    pub key: String,
    /// The pinned certificate thumbprint (hex SHA-256) of a device provisioned by certificate;
    /// empty otherwise.
    pub thumbprint: String,
    /// Whether this call registered the device (`false`: it already was, idempotent repeat).
    pub created: bool,
    /// The MQTT endpoint, e.g. `mqtt://127.0.0.1:1883` (empty without a plain listener).
    pub mqtt: String,
    /// The MQTTS endpoint, e.g. `mqtts://localhost:8883` (empty without one).
    pub mqtts: String,
    /// The HTTP endpoint.
    pub http: String,
    /// The whole answer.
    pub raw: serde_json::Value,
}

/// Provisions `device_id` through enrollment group `enrollment` at `http_base`
/// (`http://host:port`), deriving its key from `group_key`. `tls`: a rustls configuration for
/// `https://` (e.g. trusting Strata's development CA); `None` trusts the public web roots.
pub fn provision(
    http_base: &str,
    enrollment: &str,
    device_id: &str,
    group_key: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Provisioned, DeviceError> {
    let key = derive_key(group_key, device_id);
    let auth = format!("Basic {}", base64(format!("{device_id}:{key}").as_bytes()));
    call(http_base, enrollment, Some(&auth), tls)
}

/// Provisions a device through certificate enrollment group `enrollment` at `https_base`
/// (`https://host:port`): the device id is the subject CN of the client certificate
/// `cert_pem` (chain, PEM) with private key `key_pem`, which the group's CA signed; `ca_pem`
/// is the CA that signed the server's certificate (e.g. `DATA/tls/ca.pem`). The device is
/// registered with that certificate pinned: connect with [`super::Auth::Certificate`] and
/// [`super::DeviceConfig::from_certificate`].
pub fn provision_with_certificate(
    https_base: &str,
    enrollment: &str,
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Provisioned, DeviceError> {
    let tls = super::tls::client_config(ca_pem, Some((cert_pem, key_pem)))?;
    call(https_base, enrollment, None, Some(tls))
}

/// `POST {base}/api/v1/provision/{enrollment}` and the answer.
fn call(
    base: &str,
    enrollment: &str,
    auth: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Provisioned, DeviceError> {
    let url = format!(
        "{}/api/v1/provision/{enrollment}",
        base.trim_end_matches('/')
    );
    let mut agent = ureq::AgentBuilder::new();
    if let Some(tls) = tls {
        agent = agent.tls_config(tls);
    }
    let mut req = agent.build().post(&url);
    if let Some(auth) = auth {
        req = req.set("Authorization", auth);
    }
    let resp = req.call();
    let body: serde_json::Value = match resp {
        Ok(r) => r
            .into_json()
            .map_err(|e| DeviceError::Provisioning(format!("unreadable answer: {e}")))?,
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            return Err(DeviceError::Provisioning(format!("HTTP {code}: {text}")));
        }
        Err(e) => return Err(DeviceError::Provisioning(e.to_string())),
    };
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    Ok(Provisioned {
        device_id: s(&body["id"]),
        key: s(&body["credentials"]["key"]),
        thumbprint: s(&body["credentials"]["thumbprint"]),
        created: body["created"].as_bool().unwrap_or(false),
        mqtt: s(&body["endpoints"]["mqtt"]),
        mqtts: s(&body["endpoints"]["mqtts"]),
        http: s(&body["endpoints"]["http"]),
        raw: body,
    })
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_derivation_matches_the_documented_hmac() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"key",b"The quick brown fox jumps over the lazy dog",hashlib.sha256).hexdigest())'
        assert_eq!(
            derive_key("key", "The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"dev:key"), "ZGV2OmtleQ==");
    }
}
