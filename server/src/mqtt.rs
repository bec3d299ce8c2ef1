//! The MQTT device endpoint inside the server: authenticates CONNECTs against the registry and
//! closes a device's sessions when the registry disables it, rotates its keys or deletes it.

use std::sync::Arc;

use strata_ingest::mqtt::{
    AuthFailure, ClientCertificate, DeviceAuthenticator, DeviceId, MqttServer,
    certificate_credentials, connect_credentials,
};
use strata_registry::{Registry, RegistryError, RegistryEvent};

/// CONNECT authentication with the registry: client id = user name = device id, password = key.
pub struct RegistryAuthenticator {
    registry: Arc<Registry>,
}

impl std::fmt::Debug for RegistryAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuthenticator")
            .field("registry", &self.registry.path())
            .finish()
    }
}

impl RegistryAuthenticator {
    /// Authenticates against `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        RegistryAuthenticator { registry }
    }
}

impl DeviceAuthenticator for RegistryAuthenticator {
    /// The registry's write generation (revocation events carry the one they advanced to).
    fn epoch(&self) -> u64 {
        self.registry.write_generation()
    }

    fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<DeviceId, AuthFailure> {
        let (user, key) = connect_credentials(client_id, username, password)?;
        match self.registry.authenticate_device(user, key) {
            Ok(_) => Ok(user.to_owned()),
            Err(e) => Err(auth_failure(e)),
        }
    }

    /// mTLS: the client id (and user name, if sent) must be the certificate's device, which
    /// must exist, be enabled and match its pinned thumbprint; a password, if sent, is checked
    /// as the device key too.
    fn authenticate_certificate(
        &self,
        client_id: &str,
        certificate: &ClientCertificate,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<DeviceId, AuthFailure> {
        let device = certificate_credentials(client_id, certificate, username)?;
        if let Some(key) = password {
            self.registry
                .authenticate_device(device, key)
                .map_err(auth_failure)?;
        }
        match crate::tls::check_device(&self.registry, certificate) {
            Err(RegistryError::NotFound { .. }) if certificate.enrollment.is_some() => {
                self.provision(certificate)?;
            }
            other => other.map_err(auth_failure)?,
        }
        Ok(device.to_owned())
    }
}

impl RegistryAuthenticator {
    /// Zero-touch provisioning on first MQTTS connect: an unknown device presenting a
    /// certificate from enrollment group `g`'s CA is registered through `g` (pinned to that
    /// certificate). A disabled group refuses with "not authorized".
    fn provision(&self, certificate: &ClientCertificate) -> Result<(), AuthFailure> {
        let group = certificate.enrollment.as_deref().unwrap_or_default();
        let done = self
            .registry
            .provision_certificate(group, &certificate.device, &certificate.thumbprint)
            .map_err(|e| match e {
                RegistryError::Forbidden(_) => AuthFailure::NotAuthorized,
                RegistryError::Conflict(_) => AuthFailure::BadCredentials,
                e => auth_failure(e),
            })?;
        if done.created {
            tracing::info!(device = %certificate.device, enrollment = group, "device provisioned on first MQTTS connect");
        }
        Ok(())
    }
}

/// The CONNACK refusal for a registry error.
fn auth_failure(e: RegistryError) -> AuthFailure {
    match e {
        RegistryError::Unauthorized(m) if m.contains("disabled") => AuthFailure::NotAuthorized,
        RegistryError::Unauthorized(_)
        | RegistryError::Invalid(_)
        | RegistryError::NotFound { .. } => AuthFailure::BadCredentials,
        e => {
            tracing::error!(error = %e, "registry unavailable for MQTT authentication");
            AuthFailure::Unavailable
        }
    }
}

/// The device whose open sessions an event must close, if any.
pub fn device_to_disconnect(event: &RegistryEvent) -> Option<&str> {
    match event {
        RegistryEvent::DeviceDisabled { device_id }
        | RegistryEvent::KeysRotated { device_id, .. }
        | RegistryEvent::DeviceDeleted { device_id }
        | RegistryEvent::ThumbprintChanged { device_id } => Some(device_id),
        _ => None,
    }
}

/// Starts a thread that closes a device's MQTT sessions as soon as the registry revokes it
/// (well within the 1 s bound: events are delivered synchronously on the channel).
pub fn watch_revocations(registry: &Registry, mqtt: MqttServer) -> std::io::Result<()> {
    let events = registry.subscribe_stamped();
    std::thread::Builder::new()
        .name("strata-mqtt-revocations".into())
        .spawn(move || {
            for (stamp, event) in events {
                if let Some(device) = device_to_disconnect(&event) {
                    // Sessions authenticated after the event's publication saw the change.
                    let closed = mqtt.disconnect_device_before(device, stamp);
                    tracing::info!(
                        device,
                        closed,
                        "registry revoked a device; closing its MQTT sessions"
                    );
                }
            }
        })
        .map(|_| ())
}
