//! Authentication: the in-memory identity cache (id → enabled, salts, hashes, thumbprint),
//! the token cache, constant-time verification and debounced last-seen tracking.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::crypto::{SecretHash, ct_eq, from_hex};
use crate::error::{RegistryError, Result};
use crate::model::{KeySlot, TokenInfo};
use crate::registry::{Registry, lock, now_ns, read, write};
use crate::store::{self, IDENTITIES, IdentityRecord, TOKENS, TokenRecord};
use crate::tokens::{ENV_ADMIN_TOKEN_ID, TOKEN_PREFIX};
use crate::validate::{MAX_KEY_LEN, normalize_thumbprint, validate_device_id};

/// Minimum spacing of recorded last-seen updates per device (1 s).
const SEEN_GRANULARITY_NS: i64 = 1_000_000_000;

const BAD_CREDENTIALS: &str = "unknown device or wrong key";

/// Cached identity of one device.
pub(crate) struct CachedIdentity {
    enabled: bool,
    primary: SecretHash,
    secondary: SecretHash,
    thumbprint: Option<Vec<u8>>,
    last_seen: AtomicI64,
    /// Used since the eviction clock last passed it (second chance).
    referenced: AtomicBool,
}

impl CachedIdentity {
    fn from_record(rec: &IdentityRecord) -> Result<Self> {
        let decode = |s: &str| {
            SecretHash::decode(s)
                .ok_or_else(|| RegistryError::Storage("undecodable key hash".into()))
        };
        Ok(Self {
            enabled: rec.enabled,
            primary: decode(&rec.primary)?,
            secondary: decode(&rec.secondary)?,
            thumbprint: rec.thumbprint.as_deref().and_then(from_hex),
            last_seen: AtomicI64::new(rec.last_seen_ns.unwrap_or(0)),
            referenced: AtomicBool::new(false),
        })
    }
}

/// Read-through cache of existing identities. Unknown ids are never cached (a client trying
/// random ids cannot fill it); at capacity one entry is evicted by a CLOCK (second-chance)
/// sweep over insertion order, so recently used identities stay.
pub(crate) struct IdentityCache {
    map: RwLock<HashMap<String, Arc<CachedIdentity>>>,
    /// Cached ids in insertion order, for the eviction clock (may hold stale ids).
    order: Mutex<VecDeque<String>>,
    generation: AtomicU64,
    capacity: usize,
    seen: Mutex<HashMap<String, i64>>,
    dummy: SecretHash,
}

impl IdentityCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            order: Mutex::new(VecDeque::new()),
            generation: AtomicU64::new(0),
            capacity: capacity.max(1),
            seen: Mutex::new(HashMap::new()),
            dummy: SecretHash::new(b"dummy key used to equalize timing"),
        }
    }

    /// The cached identity, loading it from `db` on a miss.
    fn lookup(&self, db: &Database, id: &str) -> Result<Option<Arc<CachedIdentity>>> {
        if let Some(hit) = read(&self.map).get(id) {
            hit.referenced.store(true, Ordering::Relaxed);
            return Ok(Some(hit.clone()));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let txn = db.begin_read()?;
        let table = txn.open_table(IDENTITIES)?;
        let rec: Option<IdentityRecord> = store::get_json(&table, id)?;
        let entry = rec
            .as_ref()
            .map(CachedIdentity::from_record)
            .transpose()?
            .map(Arc::new);
        let Some(found) = entry else {
            return Ok(None);
        };
        let mut map = write(&self.map);
        // Only fill if nothing was invalidated since the read began (else the read may be stale).
        if self.generation.load(Ordering::Acquire) == generation {
            let mut order = lock(&self.order);
            while map.len() >= self.capacity {
                if !evict_one(&mut map, &mut order) {
                    break;
                }
            }
            if map.insert(id.to_string(), found.clone()).is_none() {
                order.push_back(id.to_string());
            }
            if order.len() > self.capacity.saturating_mul(2) {
                order.retain(|k| map.contains_key(k));
            }
        }
        Ok(Some(found))
    }

    /// The ids cached now (tests).
    #[cfg(test)]
    fn cached_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = read(&self.map).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Drops cached state of the given devices (call after committing a change to them).
    pub(crate) fn invalidate<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut map = write(&self.map);
        for id in ids {
            map.remove(id);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Forgets a pending last-seen time (device deleted).
    pub(crate) fn forget_seen(&self, id: &str) {
        lock(&self.seen).remove(id);
    }

    /// Pending (not yet persisted) last-seen time of a device.
    pub(crate) fn pending_seen(&self, id: &str) -> Option<i64> {
        lock(&self.seen).get(id).copied()
    }

    /// Takes all pending last-seen times.
    pub(crate) fn take_seen(&self) -> HashMap<String, i64> {
        std::mem::take(&mut *lock(&self.seen))
    }

    fn mark_seen(&self, ident: &CachedIdentity, id: &str) {
        let now = now_ns();
        let last = ident.last_seen.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SEEN_GRANULARITY_NS {
            ident.last_seen.store(now, Ordering::Relaxed);
            lock(&self.seen).insert(id.to_string(), now);
        }
    }
}

/// Cached token.
struct CachedToken {
    hash: SecretHash,
    info: TokenInfo,
}

/// All tokens, loaded at open and updated after every committed token change.
pub(crate) struct TokenCache {
    map: RwLock<HashMap<String, Arc<CachedToken>>>,
}

impl TokenCache {
    pub(crate) fn load(db: &Database) -> Result<Self> {
        let txn = db.begin_read()?;
        let table = txn.open_table(TOKENS)?;
        let mut map = HashMap::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let rec: TokenRecord = serde_json::from_slice(v.value())?;
            map.insert(k.value().to_string(), Arc::new(cached_token(rec)?));
        }
        Ok(Self {
            map: RwLock::new(map),
        })
    }

    /// Installs (or replaces) the cached copy of a committed token record.
    pub(crate) fn put(&self, rec: TokenRecord) -> Result<()> {
        let id = rec.info.id.clone();
        let cached = Arc::new(cached_token(rec)?);
        write(&self.map).insert(id, cached);
        Ok(())
    }

    fn get(&self, id: &str) -> Option<Arc<CachedToken>> {
        read(&self.map).get(id).cloned()
    }

    /// True when a non-revoked token with the admin scope exists.
    pub(crate) fn has_active_admin(&self) -> bool {
        read(&self.map).values().any(|t| {
            t.info.revoked_ns.is_none() && t.info.scopes.contains(&crate::model::Scope::Admin)
        })
    }

    /// Whether the stored env-admin token has exactly this secret.
    pub(crate) fn env_admin_matches(&self, secret: &str) -> bool {
        self.get(ENV_ADMIN_TOKEN_ID)
            .is_some_and(|t| t.info.revoked_ns.is_none() && t.hash.verify(secret.as_bytes()))
    }
}

fn cached_token(rec: TokenRecord) -> Result<CachedToken> {
    let hash = SecretHash::decode(&rec.secret_hash)
        .ok_or_else(|| RegistryError::Storage("undecodable token hash".into()))?;
    Ok(CachedToken {
        hash,
        info: rec.info,
    })
}

/// Evicts one entry: the first in insertion order not used since the clock last passed it
/// (used ones get a second chance at the back). False when nothing is left to evict.
fn evict_one(map: &mut HashMap<String, Arc<CachedIdentity>>, order: &mut VecDeque<String>) -> bool {
    while let Some(key) = order.pop_front() {
        match map.get(&key) {
            None => continue,
            Some(e) if e.referenced.swap(false, Ordering::Relaxed) => order.push_back(key),
            Some(_) => {
                map.remove(&key);
                return true;
            }
        }
    }
    false
}

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

#[cfg(test)]
mod tests {
    use crate::{DeviceRegistration, Registry, RegistryOptions};

    /// Issue 14, defect 7: unknown ids are not cached, and a full cache evicts one entry (not
    /// the one just used) instead of being cleared.
    #[test]
    fn identity_cache_skips_unknown_ids_and_evicts_one() {
        let dir = tempfile::tempdir().unwrap();
        let options = RegistryOptions {
            identity_cache_capacity: 2,
            ..RegistryOptions::default()
        };
        let reg = Registry::open_with(dir.path().join(crate::REGISTRY_FILE), options).unwrap();
        let key = |id: &str| {
            reg.register_device("a", DeviceRegistration::new(id))
                .unwrap()
                .primary_key
        };
        let (k1, k2, k3) = (key("d1"), key("d2"), key("d3"));
        for i in 0..50 {
            assert!(
                reg.authenticate_device(&format!("nobody-{i}"), "x")
                    .is_err()
            );
        }
        assert!(
            reg.inner.identities.cached_ids().is_empty(),
            "unknown ids cached"
        );
        reg.authenticate_device("d1", &k1).unwrap();
        reg.authenticate_device("d2", &k2).unwrap();
        reg.authenticate_device("d1", &k1).unwrap();
        reg.authenticate_device("d3", &k3).unwrap();
        assert_eq!(reg.inner.identities.cached_ids(), ["d1", "d3"]);
    }
}
