//! The registry's in-memory caches: identities (id → enabled, salts, hashes, thumbprint, with a
//! CLOCK eviction and debounced last-seen tracking) and tokens (all of them, loaded at open).
//! Verification against them lives in `auth.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::crypto::{SecretHash, from_hex};
use crate::error::{RegistryError, Result};
use crate::model::TokenInfo;
use crate::store::{self, ENV_ADMIN_TOKEN_ID, IDENTITIES, IdentityRecord, TOKENS, TokenRecord};
use crate::sync::{lock, now_ns, read, write};

/// Minimum spacing of recorded last-seen updates per device (1 s).
const SEEN_GRANULARITY_NS: i64 = 1_000_000_000;

/// Cached identity of one device.
pub(crate) struct CachedIdentity {
    pub(crate) enabled: bool,
    pub(crate) primary: SecretHash,
    pub(crate) secondary: SecretHash,
    pub(crate) thumbprint: Option<Vec<u8>>,
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
    pub(crate) dummy: SecretHash,
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
    pub(crate) fn lookup(&self, db: &Database, id: &str) -> Result<Option<Arc<CachedIdentity>>> {
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

    pub(crate) fn mark_seen(&self, ident: &CachedIdentity, id: &str) {
        let now = now_ns();
        let last = ident.last_seen.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SEEN_GRANULARITY_NS {
            ident.last_seen.store(now, Ordering::Relaxed);
            lock(&self.seen).insert(id.to_string(), now);
        }
    }
}

/// Cached token.
pub(crate) struct CachedToken {
    pub(crate) hash: SecretHash,
    pub(crate) info: TokenInfo,
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

    pub(crate) fn get(&self, id: &str) -> Option<Arc<CachedToken>> {
        read(&self.map).get(id).cloned()
    }

    /// True when a non-revoked admin token without stream limits exists (a limited admin cannot
    /// give back unlimited access, so it does not count).
    pub(crate) fn has_active_admin(&self) -> bool {
        read(&self.map).values().any(|t| {
            t.info.revoked_ns.is_none()
                && t.info.streams.is_none()
                && t.info.scopes.contains(&crate::model::Scope::Admin)
        })
    }

    /// Whether the stored env-admin token is revoked and had exactly this secret.
    pub(crate) fn env_admin_revoked_with(&self, secret: &str) -> bool {
        self.get(ENV_ADMIN_TOKEN_ID)
            .is_some_and(|t| t.info.revoked_ns.is_some() && t.hash.verify(secret.as_bytes()))
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
