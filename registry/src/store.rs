//! On-disk layout: redb table definitions, stored record types and JSON (de)serialization
//! helpers. Identity records (with key hashes) live only in `identities`; every other table
//! is secret-free except `tokens`, which holds salted token hashes.

use std::collections::HashMap;

use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{RegistryError, Result};
use crate::model::{Attributes, NodeRef, Relationship, TokenInfo};

/// Type of every keyed-by-string table: id → JSON record.
pub(crate) type StrTable = TableDefinition<'static, &'static str, &'static [u8]>;

/// Identity store: device id → [`IdentityRecord`] (enabled, key hashes, thumbprint, times).
pub(crate) const IDENTITIES: StrTable = TableDefinition::new("identities");
/// Entity store: device id → [`MetaRecord`] (model, attributes, location, tags).
pub(crate) const DEVICES: StrTable = TableDefinition::new("devices");
/// Device models: model id → `DeviceModel`.
pub(crate) const MODELS: StrTable = TableDefinition::new("models");
/// Commands: `{device}/{command id}` → `commands::Command` (JSON).
pub(crate) const COMMANDS: StrTable = TableDefinition::new("commands");
/// Persistent MQTT sessions: device id → subscribed topic filters (JSON array).
pub(crate) const MQTT_SESSIONS: StrTable = TableDefinition::new("mqtt_sessions");
/// Enrollment groups: id → `enrollments::EnrollmentRecord` (JSON, holds the group key).
pub(crate) const ENROLLMENTS: StrTable = TableDefinition::new("enrollments");
/// Twins: device id → `twins::TwinRecord` (JSON).
pub(crate) const TWINS: StrTable = TableDefinition::new("twins");
/// Entities: entity id → `Entity`.
pub(crate) const ENTITIES: StrTable = TableDefinition::new("entities");
/// Relationships: `relationship_key` → [`RelationshipRecord`].
pub(crate) const RELATIONSHIPS: StrTable = TableDefinition::new("relationships");
/// API tokens: token id → [`TokenRecord`] (info + salted hash).
pub(crate) const TOKENS: StrTable = TableDefinition::new("tokens");
/// Audit log: sequence number → `AuditRecord`.
pub(crate) const AUDIT: TableDefinition<'static, u64, &'static [u8]> =
    TableDefinition::new("audit");
/// Registry metadata: key → value (schema version).
pub(crate) const META: StrTable = TableDefinition::new("meta");

/// Current on-disk schema version.
pub(crate) const SCHEMA_VERSION: &str = "1";

/// Stored identity of a device. Never serialized outside the `identities` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IdentityRecord {
    pub enabled: bool,
    /// `salt:hash` hex of the primary key.
    pub primary: String,
    /// `salt:hash` hex of the secondary key.
    pub secondary: String,
    pub thumbprint: Option<String>,
    pub created_ns: i64,
    pub updated_ns: i64,
    pub last_seen_ns: Option<i64>,
}

/// Stored metadata of a device (entity store; no secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MetaRecord {
    pub model: Option<String>,
    pub attributes: Attributes,
    pub location: Option<String>,
    pub tags: Vec<String>,
    pub created_ns: i64,
    pub updated_ns: i64,
}

/// Stored relationship.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RelationshipRecord {
    pub relationship: Relationship,
    pub created_ns: i64,
}

/// Stored API token: public info plus the `salt:hash` hex of its secret, and the format of its
/// limits (`limit_format`, absent in records of versions before 2). Loading a record of the
/// older format rewrites its limits to the exact form ([`upgrade_limits`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredTokenRecord")]
pub(crate) struct TokenRecord {
    pub info: TokenInfo,
    pub secret_hash: String,
    pub limit_format: u32,
}

/// Id under which a token supplied through `STRATA_ADMIN_TOKEN` is stored.
pub const ENV_ADMIN_TOKEN_ID: &str = "env-admin";
/// Format of the limits in stored token records: 2 = exact `db` / `db/stream` entries. Records
/// without a format (older versions) held bare names that matched a database *or* a stream.
pub(crate) const LIMIT_FORMAT: u32 = 2;
/// The database that bare stream names of older tokens are taken to live in.
const OLD_LIMIT_DATABASE: &str = "default";

/// Rewrites the limits of a token stored by an older version: a bare name `x` (which then matched
/// database `x` or a stream `x` of any database) becomes `x` (database `x`) and `default/x`
/// (stream `x` of the default database) — never broader than before, and both common uses keep
/// working.
pub(crate) fn upgrade_limits(old: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(old.len() * 2);
    for name in old {
        if name.contains('/') {
            out.push(name);
            continue;
        }
        out.push(format!("{OLD_LIMIT_DATABASE}/{name}"));
        out.push(name);
    }
    out.sort();
    out.dedup();
    out
}

/// A token record as stored, before its limits are upgraded.
#[derive(Deserialize)]
struct StoredTokenRecord {
    info: TokenInfo,
    secret_hash: String,
    #[serde(default)]
    limit_format: u32,
}

impl From<StoredTokenRecord> for TokenRecord {
    fn from(raw: StoredTokenRecord) -> Self {
        let mut info = raw.info;
        if raw.limit_format < LIMIT_FORMAT {
            info.streams = info.streams.map(upgrade_limits);
        }
        TokenRecord {
            info,
            secret_hash: raw.secret_hash,
            limit_format: LIMIT_FORMAT,
        }
    }
}

/// Creates every table (so read transactions never miss one) and stamps the schema version.
pub(crate) fn create_tables(db: &Database) -> Result<()> {
    let txn = db.begin_write()?;
    for def in [IDENTITIES, DEVICES, MODELS, ENTITIES, RELATIONSHIPS, TOKENS] {
        txn.open_table(def)?;
    }
    txn.open_table(AUDIT)?;
    txn.open_table(COMMANDS)?;
    txn.open_table(MQTT_SESSIONS)?;
    txn.open_table(ENROLLMENTS)?;
    txn.open_table(TWINS)?;
    {
        let mut meta = txn.open_table(META)?;
        let version = meta.get("schema_version")?.map(|v| v.value().to_vec());
        match version {
            None => {
                meta.insert("schema_version", SCHEMA_VERSION.as_bytes())?;
            }
            Some(v) if v == SCHEMA_VERSION.as_bytes() => {}
            Some(v) => {
                return Err(RegistryError::Storage(format!(
                    "unsupported registry schema version {:?}",
                    String::from_utf8_lossy(&v)
                )));
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// Reads and decodes the JSON record at `key`.
pub(crate) fn get_json<T, R>(table: &R, key: &str) -> Result<Option<T>>
where
    T: DeserializeOwned,
    R: ReadableTable<&'static str, &'static [u8]>,
{
    match table.get(key)? {
        None => Ok(None),
        Some(guard) => Ok(Some(serde_json::from_slice(guard.value())?)),
    }
}

/// Encodes `value` as JSON and stores it at `key`.
pub(crate) fn put_json<T: Serialize>(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    key: &str,
    value: &T,
) -> Result<()> {
    let bytes = serde_json::to_vec(value)?;
    table.insert(key, bytes.as_slice())?;
    Ok(())
}

/// Key of a relationship in [`RELATIONSHIPS`]: `<node>/<kind>/<node>` with nodes as
/// `e:<id>` or `d:<id>` ('/' cannot occur in ids or kinds, so the key is unambiguous).
pub(crate) fn relationship_key(r: &Relationship) -> String {
    format!(
        "{}/{}/{}",
        node_key(&r.source),
        r.kind.as_str(),
        node_key(&r.target)
    )
}

fn node_key(n: &NodeRef) -> String {
    match n {
        NodeRef::Entity(id) => format!("e:{id}"),
        NodeRef::Device(id) => format!("d:{id}"),
    }
}

/// Writes pending last-seen times into the identity records that still exist.
pub(crate) fn apply_last_seen(
    txn: &WriteTransaction,
    pending: &HashMap<String, i64>,
) -> Result<()> {
    let mut table = txn.open_table(IDENTITIES)?;
    for (id, ts) in pending {
        let Some(mut rec) = get_json::<IdentityRecord, _>(&table, id)? else {
            continue;
        };
        if rec.last_seen_ns.is_none_or(|old| old < *ts) {
            rec.last_seen_ns = Some(*ts);
            put_json(&mut table, id, &rec)?;
        }
    }
    Ok(())
}

/// One page of JSON records from a string-keyed table, ordered by key, keeping those for
/// which `keep` holds.
pub(crate) fn list_page<T, R>(
    table: &R,
    page: &crate::model::PageRequest,
    keep: impl Fn(&T) -> bool,
) -> Result<crate::model::Page<T>>
where
    T: DeserializeOwned,
    R: ReadableTable<&'static str, &'static [u8]>,
{
    let limit = crate::sync::page_limit(page.limit);
    let after = page.after.clone().unwrap_or_default();
    let range = table.range::<&str>((
        std::ops::Bound::Excluded(after.as_str()),
        std::ops::Bound::Unbounded,
    ))?;
    let mut items = Vec::new();
    let mut last_key = None;
    let mut more = false;
    for item in range {
        let (k, v) = item?;
        let value: T = serde_json::from_slice(v.value())?;
        if !keep(&value) {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        last_key = Some(k.value().to_string());
        items.push(value);
    }
    Ok(crate::model::Page {
        items,
        next_after: if more { last_key } else { None },
    })
}

#[cfg(test)]
mod tests {
    use super::{LIMIT_FORMAT, TokenRecord};

    #[test]
    fn old_bare_limits_load_as_database_or_default_stream() {
        let old = br#"{"info":{"id":"t1","name":"n","scopes":["write"],"streams":["fleet","cpu"],
            "created_by":"a","created_ns":1,"revoked_ns":null},"secret_hash":"x"}"#;
        let rec: TokenRecord = serde_json::from_slice(old).unwrap();
        assert_eq!(rec.limit_format, LIMIT_FORMAT);
        let limits = rec.info.streams.clone().unwrap();
        assert_eq!(limits, ["cpu", "default/cpu", "default/fleet", "fleet"]);
        assert!(rec.info.allows_database("fleet"));
        assert!(rec.info.allows_stream("default", "cpu"));
        assert!(!rec.info.allows_stream("other", "fleet"));
        assert!(!rec.info.allows_stream("other", "cpu"));
        // Stored again, it keeps the exact form.
        let again: TokenRecord =
            serde_json::from_slice(&serde_json::to_vec(&rec).unwrap()).unwrap();
        assert_eq!(again, rec);
    }
}
