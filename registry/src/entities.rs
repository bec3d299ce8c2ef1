//! Entities (sites, buildings, floors, rooms, fleets, vehicles...) and typed relationships
//! between entities and devices, plus hierarchy queries served from the in-memory index.

use redb::{ReadableTable, WriteTransaction};

use crate::error::{RegistryError, Result};
use crate::model::{
    Descendants, Entity, EntitySpec, EntityUpdate, NodeRef, Page, PageRequest, RelationKind,
    Relationship,
};
use crate::registry::Registry;
use crate::store::{
    self, ENTITIES, IDENTITIES, RELATIONSHIPS, RelationshipRecord, relationship_key,
};
use crate::sync::{now_ns, read, write};
use crate::topology::Topology;
use crate::validate::{validate_attributes, validate_id, validate_kind, validate_text};

fn validate_spec(spec: &EntitySpec) -> Result<()> {
    validate_id("entity id", &spec.id)?;
    validate_kind("entity kind", &spec.kind)?;
    if let Some(name) = &spec.name {
        validate_text("entity name", name)?;
    }
    validate_attributes(&spec.attributes)
}

fn validate_relationship(r: &Relationship) -> Result<()> {
    for n in [&r.source, &r.target] {
        match n {
            NodeRef::Entity(id) => validate_id("entity id", id)?,
            NodeRef::Device(id) => validate_id("device id", id)?,
        }
    }
    if let RelationKind::Custom(k) = &r.kind {
        validate_kind("relationship kind", k)?;
    }
    if r.source == r.target {
        return Err(RegistryError::invalid("a node cannot be related to itself"));
    }
    Ok(())
}

/// Fails with `NotFound` unless the node exists in the transaction's view.
fn require_node(txn: &WriteTransaction, node: &NodeRef) -> Result<()> {
    let (table, kind) = match node {
        NodeRef::Entity(_) => (ENTITIES, "entity"),
        NodeRef::Device(_) => (IDENTITIES, "device"),
    };
    let t = txn.open_table(table)?;
    if t.get(node.id())?.is_none() {
        return Err(RegistryError::not_found(kind, node.id()));
    }
    Ok(())
}

/// Deletes every stored relationship touching `node` (found through the index) and returns
/// them so the caller can update the index after commit.
pub(crate) fn delete_links_in_txn(
    txn: &WriteTransaction,
    topo: &Topology,
    node: &NodeRef,
) -> Result<Vec<Relationship>> {
    let links = topo.links_of(node);
    let mut table = txn.open_table(RELATIONSHIPS)?;
    for r in &links {
        table.remove(relationship_key(r).as_str())?;
    }
    Ok(links)
}

fn add_relationships_in_txn(
    txn: &WriteTransaction,
    rels: &[Relationship],
) -> Result<Vec<Relationship>> {
    if rels.len() > crate::MAX_BULK_ITEMS {
        return Err(RegistryError::invalid(format!(
            "at most {} relationships per call",
            crate::MAX_BULK_ITEMS
        )));
    }
    let now = now_ns();
    let mut added = Vec::new();
    for (i, rel) in rels.iter().enumerate() {
        let at = |e: RegistryError| RegistryError::invalid(format!("item {i}: {e}"));
        validate_relationship(rel).map_err(at)?;
        require_node(txn, &rel.source).map_err(at)?;
        require_node(txn, &rel.target).map_err(at)?;
        let key = relationship_key(rel);
        let mut t = txn.open_table(RELATIONSHIPS)?;
        if t.get(key.as_str())?.is_some() {
            continue;
        }
        let rec = RelationshipRecord {
            relationship: rel.clone(),
            created_ns: now,
        };
        store::put_json(&mut t, &key, &rec)?;
        added.push(rel.clone());
    }
    Ok(added)
}

impl Registry {
    /// Runs a change to relationships while holding the topology index write lock, so the
    /// index never disagrees with committed data as seen by snapshots.
    pub(crate) fn with_topology_change<T>(
        &self,
        f: impl FnOnce(&mut Topology) -> Result<T>,
    ) -> Result<T> {
        let mut topo = write(&self.inner.topology);
        f(&mut topo)
    }

    /// Creates an entity. `AlreadyExists` if the id is taken.
    pub fn create_entity(&self, actor: &str, spec: EntitySpec) -> Result<Entity> {
        self.audited(actor, "entity.create", &spec.id, |txn| {
            validate_spec(&spec)?;
            let mut t = txn.open_table(ENTITIES)?;
            if t.get(spec.id.as_str())?.is_some() {
                return Err(RegistryError::exists("entity", spec.id.clone()));
            }
            let now = now_ns();
            let entity = Entity {
                id: spec.id.clone(),
                kind: spec.kind.clone(),
                name: spec.name.clone().unwrap_or_else(|| spec.id.clone()),
                attributes: spec.attributes.clone(),
                created_ns: now,
                updated_ns: now,
            };
            store::put_json(&mut t, &entity.id, &entity)?;
            Ok(entity)
        })
    }

    /// One entity.
    pub fn get_entity(&self, id: &str) -> Result<Entity> {
        let txn = self.inner.read_txn()?;
        let t = txn.open_table(ENTITIES)?;
        store::get_json(&t, id)?.ok_or_else(|| RegistryError::not_found("entity", id))
    }

    /// Updates an entity's kind, name and/or attributes.
    pub fn update_entity(&self, actor: &str, id: &str, update: EntityUpdate) -> Result<Entity> {
        self.audited(actor, "entity.update", id, |txn| {
            let mut t = txn.open_table(ENTITIES)?;
            let mut e: Entity =
                store::get_json(&t, id)?.ok_or_else(|| RegistryError::not_found("entity", id))?;
            if let Some(kind) = &update.kind {
                validate_kind("entity kind", kind)?;
                e.kind = kind.clone();
            }
            if let Some(name) = &update.name {
                validate_text("entity name", name)?;
                e.name = name.clone();
            }
            if let Some(attrs) = &update.attributes {
                validate_attributes(attrs)?;
                e.attributes = attrs.clone();
            }
            e.updated_ns = now_ns();
            store::put_json(&mut t, id, &e)?;
            Ok(e)
        })
    }

    /// Deletes an entity and every relationship touching it (children are not deleted; they
    /// just lose this parent).
    pub fn delete_entity(&self, actor: &str, id: &str) -> Result<()> {
        let node = NodeRef::Entity(id.to_string());
        self.with_topology_change(|topo| {
            let removed = self.audited(actor, "entity.delete", id, |txn| {
                let mut t = txn.open_table(ENTITIES)?;
                if t.remove(id)?.is_none() {
                    return Err(RegistryError::not_found("entity", id));
                }
                drop(t);
                delete_links_in_txn(txn, topo, &node)
            })?;
            for r in &removed {
                topo.remove(r);
            }
            Ok(())
        })
    }

    /// Lists entities ordered by id, optionally only those of one kind.
    pub fn list_entities(&self, kind: Option<&str>, page: &PageRequest) -> Result<Page<Entity>> {
        let txn = self.inner.read_txn()?;
        let t = txn.open_table(ENTITIES)?;
        store::list_page(&t, page, |e: &Entity| kind.is_none_or(|k| e.kind == k))
    }

    /// Adds a relationship; both nodes must exist. `AlreadyExists` if the same
    /// (source, kind, target) exists. Cycles are allowed (queries are cycle-safe).
    pub fn add_relationship(&self, actor: &str, rel: Relationship) -> Result<()> {
        let key = relationship_key(&rel);
        self.with_topology_change(|topo| {
            self.audited(actor, "relationship.add", &key, |txn| {
                validate_relationship(&rel)?;
                require_node(txn, &rel.source)?;
                require_node(txn, &rel.target)?;
                let mut t = txn.open_table(RELATIONSHIPS)?;
                if t.get(key.as_str())?.is_some() {
                    return Err(RegistryError::exists("relationship", key.clone()));
                }
                let rec = RelationshipRecord {
                    relationship: rel.clone(),
                    created_ns: now_ns(),
                };
                store::put_json(&mut t, &key, &rec)
            })?;
            topo.add(&rel);
            Ok(())
        })
    }

    /// Adds many relationships in one transaction (topology import). All-or-nothing: an
    /// invalid or dangling item fails the whole call with a message naming its index.
    /// Relationships that already exist are skipped. Returns how many were added.
    /// At most [`crate::MAX_BULK_ITEMS`] items.
    pub fn add_relationships(&self, actor: &str, rels: Vec<Relationship>) -> Result<usize> {
        let target = format!("{} relationships", rels.len());
        self.with_topology_change(|topo| {
            let added = self.audited_detail(actor, "relationship.bulk_add", &target, |txn| {
                let added = add_relationships_in_txn(txn, &rels)?;
                let detail = format!("added {}", added.len());
                Ok((added, Some(detail)))
            })?;
            for r in &added {
                topo.add(r);
            }
            Ok(added.len())
        })
    }

    /// Removes a relationship. `NotFound` if it does not exist.
    pub fn remove_relationship(&self, actor: &str, rel: &Relationship) -> Result<()> {
        let key = relationship_key(rel);
        self.with_topology_change(|topo| {
            self.audited(actor, "relationship.remove", &key, |txn| {
                let mut t = txn.open_table(RELATIONSHIPS)?;
                match t.remove(key.as_str())? {
                    Some(_) => Ok(()),
                    None => Err(RegistryError::not_found("relationship", key.clone())),
                }
            })?;
            topo.remove(rel);
            Ok(())
        })
    }

    /// Every relationship (any kind, either direction) touching `node`, sorted.
    pub fn relationships_of(&self, node: &NodeRef) -> Result<Vec<Relationship>> {
        Ok(read(&self.inner.topology).links_of(node))
    }

    /// Everything below `node` through `contains`/`member_of` links (transitive, cycle-safe).
    pub fn descendants(&self, node: &NodeRef) -> Result<Descendants> {
        Ok(read(&self.inner.topology).descendants(node))
    }

    /// Every ancestor entity of `node` (transitive, all parents), sorted.
    pub fn ancestors(&self, node: &NodeRef) -> Result<Vec<String>> {
        Ok(read(&self.inner.topology).ancestors(node))
    }

    /// Up to [`crate::MAX_PATHS`] root-first ancestor paths of `node` ('/'-joined entity ids).
    pub fn ancestor_paths(&self, node: &NodeRef) -> Result<Vec<String>> {
        Ok(read(&self.inner.topology).paths(node, crate::MAX_PATHS))
    }
}
