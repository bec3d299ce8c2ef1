//! Consistent snapshots for the SQL layer: the `devices` and `entities` tables and the list of
//! relationships, each read from one redb read transaction while the topology index is
//! read-locked (so ancestor paths match the committed relationships).

use redb::ReadableTable;

use crate::devices::to_device;
use crate::error::Result;
use crate::model::{DeviceRow, Entity, EntityRow, NodeRef, Relationship};
use crate::registry::Registry;
use crate::store::{
    self, DEVICES, ENTITIES, IDENTITIES, IdentityRecord, MetaRecord, RELATIONSHIPS,
    RelationshipRecord,
};
use crate::sync::read;

impl Registry {
    /// Every device with its metadata and ancestor entities, ordered by id.
    pub fn devices_snapshot(&self) -> Result<Vec<DeviceRow>> {
        let topo = read(&self.inner.topology);
        let txn = self.inner.read_txn()?;
        let idt = txn.open_table(IDENTITIES)?;
        let mt = txn.open_table(DEVICES)?;
        let mut rows = Vec::new();
        for item in mt.iter()? {
            let (k, v) = item?;
            let id = k.value();
            let meta: MetaRecord = serde_json::from_slice(v.value())?;
            let Some(ident) = store::get_json::<IdentityRecord, _>(&idt, id)? else {
                continue;
            };
            let node = NodeRef::Device(id.to_string());
            let d = to_device(id, &ident, meta);
            let last_seen = match (d.last_seen_ns, self.inner.identities.pending_seen(id)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            rows.push(DeviceRow {
                attributes: serde_json::Value::Object(d.attributes).to_string(),
                id: d.id,
                enabled: d.enabled,
                model: d.model,
                tags: d.tags,
                location: d.location,
                created_ns: d.created_ns,
                updated_ns: d.updated_ns,
                last_seen_ns: last_seen,
                ancestors: topo.ancestors(&node),
                paths: topo.paths(&node, crate::MAX_PATHS),
            });
        }
        Ok(rows)
    }

    /// Every entity with its parents and ancestor paths, ordered by id.
    pub fn entities_snapshot(&self) -> Result<Vec<EntityRow>> {
        let topo = read(&self.inner.topology);
        let txn = self.inner.read_txn()?;
        let t = txn.open_table(ENTITIES)?;
        let mut rows = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            let e: Entity = serde_json::from_slice(v.value())?;
            let node = NodeRef::Entity(e.id.clone());
            rows.push(EntityRow {
                parents: topo.parent_entities(&node),
                ancestors: topo.ancestors(&node),
                paths: topo.paths(&node, crate::MAX_PATHS),
                attributes: serde_json::Value::Object(e.attributes).to_string(),
                id: e.id,
                kind: e.kind,
                name: e.name,
                created_ns: e.created_ns,
                updated_ns: e.updated_ns,
            });
        }
        Ok(rows)
    }

    /// Every relationship, ordered by its storage key (source, kind, target).
    pub fn relationships_snapshot(&self) -> Result<Vec<Relationship>> {
        let txn = self.inner.read_txn()?;
        let t = txn.open_table(RELATIONSHIPS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            out.push(serde_json::from_slice::<RelationshipRecord>(v.value())?.relationship);
        }
        Ok(out)
    }
}
