//! Authentication: constant-time verification of device keys, certificate thumbprints and API
//! tokens against the caches in `cache.rs`.

use std::sync::Arc;

use crate::cache::CachedIdentity;
use crate::crypto::{ct_eq, from_hex};
use crate::error::{RegistryError, Result};
use crate::model::{KeySlot, TokenInfo};
use crate::registry::Registry;
use crate::store::ENV_ADMIN_TOKEN_ID;
use crate::tokens::TOKEN_PREFIX;
use crate::validate::{MAX_KEY_LEN, normalize_thumbprint, validate_device_id};

const BAD_CREDENTIALS: &str = "unknown device or wrong key";

impl Registry {
    /// Verifies a device key (primary or secondary) in constant time and returns which slot
    /// matched. Refuses (`Unauthorized`) unknown devices, wrong keys and disabled devices.
    /// Served from an in-memory cache after the first call; records last-seen in memory
    /// (persisted every few seconds, see [`crate::RegistryOptions`]).
    pub fn authenticate_device(&self, id: &str, key: &str) -> Result<KeySlot> {
        let cache = &self.inner.identities;
        let ident = self.lookup_identity(id)?;
        let Some(ident) = ident.filter(|_| key.len() <= MAX_KEY_LEN) else {
            // Same work as a wrong key (two MACs), so timing does not reveal which ids exist.
            for _ in 0..2 {
                std::hint::black_box(cache.dummy.verify(key.as_bytes()));
            }
            return Err(RegistryError::Unauthorized(BAD_CREDENTIALS.into()));
        };
        let slot = if ident.primary.verify(key.as_bytes()) {
            KeySlot::Primary
        } else if ident.secondary.verify(key.as_bytes()) {
            KeySlot::Secondary
        } else {
            return Err(RegistryError::Unauthorized(BAD_CREDENTIALS.into()));
        };
        if !ident.enabled {
            return Err(RegistryError::Unauthorized(format!(
                "device '{id}' is disabled"
            )));
        }
        cache.mark_seen(&ident, id);
        Ok(slot)
    }

    /// Verifies that `thumbprint` (hex SHA-256 of the presented client certificate, ':'
    /// separators allowed) is the one registered for device `id`, and that the device is enabled.
    pub fn authenticate_device_cert(&self, id: &str, thumbprint: &str) -> Result<()> {
        let refused = || RegistryError::Unauthorized("unknown device or certificate".into());
        let presented = normalize_thumbprint(thumbprint)
            .ok()
            .and_then(|t| from_hex(&t))
            .ok_or_else(refused)?;
        let ident = self.lookup_identity(id)?.ok_or_else(refused)?;
        let registered = ident.thumbprint.as_deref().ok_or_else(refused)?;
        if !ct_eq(registered, &presented) {
            return Err(refused());
        }
        if !ident.enabled {
            return Err(RegistryError::Unauthorized(format!(
                "device '{id}' is disabled"
            )));
        }
        self.inner.identities.mark_seen(&ident, id);
        Ok(())
    }

    /// Records that device `id` was seen now (for authentication paths outside the registry).
    /// Cheap: in memory, debounced to one update per second per device.
    pub fn record_seen(&self, id: &str) -> Result<()> {
        if let Some(ident) = self.lookup_identity(id)? {
            self.inner.identities.mark_seen(&ident, id);
        }
        Ok(())
    }

    /// Authenticates a bearer token (`strata_<id>_<secret>`, or the value installed from
    /// `STRATA_ADMIN_TOKEN`) and returns its description. Refuses unknown, wrong and revoked
    /// tokens with `Unauthorized`. Served from memory.
    pub fn authenticate_token(&self, token: &str) -> Result<TokenInfo> {
        let tokens = &self.inner.tokens;
        let refused = || RegistryError::Unauthorized("unknown or invalid token".into());
        if token.is_empty() || token.len() > 512 {
            return Err(refused());
        }
        let by_id = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(id, _)| tokens.get(id))
            .filter(|t| t.info.id != ENV_ADMIN_TOKEN_ID);
        let candidate = by_id
            .or_else(|| tokens.get(ENV_ADMIN_TOKEN_ID))
            .ok_or_else(refused)?;
        if !candidate.hash.verify(token.as_bytes()) {
            return Err(refused());
        }
        if candidate.info.revoked_ns.is_some() {
            return Err(RegistryError::Unauthorized(format!(
                "token '{}' has been revoked",
                candidate.info.id
            )));
        }
        Ok(candidate.info.clone())
    }

    fn lookup_identity(&self, id: &str) -> Result<Option<Arc<CachedIdentity>>> {
        if validate_device_id(id).is_err() {
            return Ok(None);
        }
        self.inner.identities.lookup(&self.inner.db, id)
    }
}
