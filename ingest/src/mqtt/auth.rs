//! Device authentication for CONNECT: the [`DeviceAuthenticator`] trait (the server implements
//! it with the registry), the [`AuthFailure`] outcomes and their CONNACK return codes, and a
//! [`StaticAuthenticator`] over a fixed id → key map for tests and development. A connection
//! that arrived over TLS with a verified client certificate is authenticated through
//! [`DeviceAuthenticator::authenticate_certificate`] instead (mTLS, no password needed).

use std::collections::HashMap;

use rumqttc::ConnectReturnCode;

/// A device id (`[A-Za-z0-9._:-]{1,128}`), as returned by a successful authentication.
pub type DeviceId = String;

/// Why a CONNECT was refused by the authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// Unknown device, missing or wrong key (CONNACK 0x04, bad user name or password).
    #[error("bad user name or password")]
    BadCredentials,
    /// The device exists and the key matches, but it may not connect, e.g. it is disabled
    /// (CONNACK 0x05, not authorized).
    #[error("not authorized")]
    NotAuthorized,
    /// The client id is not acceptable (CONNACK 0x02, identifier rejected).
    #[error("identifier rejected")]
    BadClientId,
    /// The identity store could not be consulted (CONNACK 0x03, server unavailable).
    #[error("server unavailable")]
    Unavailable,
}

impl AuthFailure {
    /// The MQTT 3.1.1 CONNACK return code sent for this failure.
    pub fn return_code(self) -> ConnectReturnCode {
        match self {
            AuthFailure::BadCredentials => ConnectReturnCode::BadUserNamePassword,
            AuthFailure::NotAuthorized => ConnectReturnCode::NotAuthorized,
            AuthFailure::BadClientId => ConnectReturnCode::BadClientId,
            AuthFailure::Unavailable => ConnectReturnCode::ServiceUnavailable,
        }
    }
}

/// A client certificate the TLS layer has verified against the client CA, reduced to what
/// authentication needs. The server's TLS code builds it; this crate never parses X.509.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The device id the certificate names (its subject common name, or else its first DNS
    /// subject alternative name).
    pub device: String,
    /// Lowercase hex SHA-256 of the certificate's DER bytes.
    pub thumbprint: String,
    /// `Some(group)` when the certificate chains only to enrollment group `group`'s CA (not
    /// to the server's client CA): it then authenticates only a device whose pinned
    /// thumbprint it is, or provisions an unknown device through that group.
    pub enrollment: Option<String>,
}

/// Checks a device's CONNECT credentials. Called once per CONNECT on a blocking thread, so it
/// may consult a disk-backed store.
pub trait DeviceAuthenticator: Send + Sync {
    /// Returns the device id the connection acts as. Strata's convention: the client id and the
    /// user name are the device id and the password is the device key. The server additionally
    /// requires the returned id to equal the client id (else CONNACK 0x02).
    fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<DeviceId, AuthFailure>;

    /// Authenticates a CONNECT that arrived with a verified client certificate. The default
    /// refuses (not authorized): an authenticator must opt in to certificate authentication.
    /// Implementations should start with [`certificate_credentials`].
    fn authenticate_certificate(
        &self,
        client_id: &str,
        certificate: &ClientCertificate,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<DeviceId, AuthFailure> {
        let _ = (client_id, certificate, username, password);
        Err(AuthFailure::NotAuthorized)
    }

    /// A number that never decreases and has grown past every revocation the authenticator
    /// has taken (the registry's write generation). The endpoint reads it before it
    /// authenticates a CONNECT; [`MqttServer::disconnect_device_before`] with a revocation's
    /// number then closes only sessions authenticated before that revocation. `0` (the
    /// default) when unknown: every revocation applies.
    ///
    /// [`MqttServer::disconnect_device_before`]: super::MqttServer::disconnect_device_before
    fn epoch(&self) -> u64 {
        0
    }
}

/// Strata's convention for a CONNECT with a client certificate: the client id must be the
/// certificate's device id, and so must the user name when one is sent (else identifier
/// rejected). A password, when sent, is the device key and is checked too by the caller.
/// Returns the device id.
pub fn certificate_credentials<'a>(
    client_id: &str,
    certificate: &'a ClientCertificate,
    username: Option<&str>,
) -> Result<&'a str, AuthFailure> {
    if client_id != certificate.device || username.is_some_and(|u| u != client_id) {
        return Err(AuthFailure::BadClientId);
    }
    Ok(&certificate.device)
}

/// Authenticates against a fixed map of device id → key (tests and development only: keys are
/// held in memory in clear).
#[derive(Debug, Clone, Default)]
pub struct StaticAuthenticator {
    keys: HashMap<String, String>,
    disabled: Vec<String>,
}

impl StaticAuthenticator {
    /// An authenticator for the given `(id, key)` pairs.
    pub fn new<I, K, V>(devices: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        StaticAuthenticator {
            keys: devices
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            disabled: Vec::new(),
        }
    }

    /// Marks a device as disabled: its correct key gets [`AuthFailure::NotAuthorized`].
    pub fn disable(&mut self, id: &str) {
        self.disabled.push(id.to_owned());
    }
}

/// Strata's CONNECT convention, shared by every authenticator: user name and password must both be
/// present (else bad credentials) and the user name must equal the client id (else identifier
/// rejected). Returns `(device id, key)`.
pub fn connect_credentials<'a>(
    client_id: &str,
    username: Option<&'a str>,
    password: Option<&'a str>,
) -> Result<(&'a str, &'a str), AuthFailure> {
    let (Some(user), Some(pass)) = (username, password) else {
        return Err(AuthFailure::BadCredentials);
    };
    if user != client_id {
        return Err(AuthFailure::BadClientId);
    }
    Ok((user, pass))
}

impl DeviceAuthenticator for StaticAuthenticator {
    fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<DeviceId, AuthFailure> {
        let (user, pass) = connect_credentials(client_id, username, password)?;
        match self.keys.get(user) {
            Some(key) if constant_time_eq(key.as_bytes(), pass.as_bytes()) => {
                if self.disabled.iter().any(|d| d == user) {
                    Err(AuthFailure::NotAuthorized)
                } else {
                    Ok(user.to_owned())
                }
            }
            _ => Err(AuthFailure::BadCredentials),
        }
    }

    fn authenticate_certificate(
        &self,
        client_id: &str,
        certificate: &ClientCertificate,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<DeviceId, AuthFailure> {
        let device = certificate_credentials(client_id, certificate, username)?;
        if password.is_some() {
            return self.authenticate(client_id, Some(device), password);
        }
        if !self.keys.contains_key(device) {
            return Err(AuthFailure::BadCredentials);
        }
        if self.disabled.iter().any(|d| d == device) {
            return Err(AuthFailure::NotAuthorized);
        }
        Ok(device.to_owned())
    }
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_authenticator() {
        let mut auth = StaticAuthenticator::new([("d1", "k1"), ("d2", "k2")]);
        auth.disable("d2");
        assert_eq!(
            auth.authenticate("d1", Some("d1"), Some("k1")),
            Ok("d1".into())
        );
        assert_eq!(
            auth.authenticate("d1", Some("d1"), Some("k2")),
            Err(AuthFailure::BadCredentials)
        );
        assert_eq!(
            auth.authenticate("d1", Some("d1"), None),
            Err(AuthFailure::BadCredentials)
        );
        assert_eq!(
            auth.authenticate("x", Some("d1"), Some("k1")),
            Err(AuthFailure::BadClientId)
        );
        assert_eq!(
            auth.authenticate("d2", Some("d2"), Some("k2")),
            Err(AuthFailure::NotAuthorized)
        );
        assert_eq!(
            AuthFailure::BadCredentials.return_code() as u8,
            4,
            "bad user name or password"
        );
        assert_eq!(AuthFailure::NotAuthorized.return_code() as u8, 5);
    }

    #[test]
    fn certificate_authentication() {
        let mut auth = StaticAuthenticator::new([("d1", "k1"), ("d2", "k2")]);
        auth.disable("d2");
        let cert = |d: &str| ClientCertificate {
            device: d.into(),
            thumbprint: "00".repeat(32),
            enrollment: None,
        };
        let ok = auth.authenticate_certificate("d1", &cert("d1"), None, None);
        assert_eq!(ok, Ok("d1".into()));
        let same_user = auth.authenticate_certificate("d1", &cert("d1"), Some("d1"), None);
        assert_eq!(same_user, Ok("d1".into()));
        for (client, user) in [("d2", None), ("d1", Some("d2"))] {
            assert_eq!(
                auth.authenticate_certificate(client, &cert("d1"), user, None),
                Err(AuthFailure::BadClientId),
                "{client} {user:?}"
            );
        }
        assert_eq!(
            auth.authenticate_certificate("d1", &cert("d1"), None, Some("wrong")),
            Err(AuthFailure::BadCredentials)
        );
        assert_eq!(
            auth.authenticate_certificate("d2", &cert("d2"), None, None),
            Err(AuthFailure::NotAuthorized)
        );
        assert_eq!(
            auth.authenticate_certificate("d9", &cert("d9"), None, None),
            Err(AuthFailure::BadCredentials)
        );
        struct PasswordOnly;
        impl DeviceAuthenticator for PasswordOnly {
            fn authenticate(
                &self,
                c: &str,
                _: Option<&str>,
                _: Option<&str>,
            ) -> Result<DeviceId, AuthFailure> {
                Ok(c.into())
            }
        }
        assert_eq!(
            PasswordOnly.authenticate_certificate("d1", &cert("d1"), None, None),
            Err(AuthFailure::NotAuthorized)
        );
    }
}
