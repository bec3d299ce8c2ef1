//! Device provisioning: register (single and bulk), get, update, delete, enable/disable,
//! key rotation and filtered listing.

use std::ops::Bound;

use redb::{ReadableTable, Table, WriteTransaction};

use crate::crypto::{SecretHash, generate_key};
use crate::csv::parse_devices_csv;
use crate::error::{RegistryError, Result};
use crate::model::{
    BulkItemResult, Device, DeviceFilter, DeviceRegistration, DeviceUpdate, KeySlot, NodeRef, Page,
    PageRequest, RegisteredDevice, RegistryEvent, RotatedKeys,
};
use crate::registry::Registry;
use crate::store::{self, DEVICES, ENTITIES, IDENTITIES, IdentityRecord, MetaRecord};
use crate::sync::{now_ns, page_limit, read};
use crate::validate::{
    non_empty, normalize_tags, normalize_thumbprint, validate_attributes, validate_device_id,
    validate_id, validate_key, validate_text,
};

type StrTableMut<'t> = Table<'t, &'static str, &'static [u8]>;

/// A validated registration ready to be stored, with the clear keys to return once.
pub(crate) struct Prepared {
    ident: IdentityRecord,
    meta: MetaRecord,
    primary_key: String,
    secondary_key: String,
}

/// Validated metadata of a registration (for comparison with an existing device).
fn normalized_meta(req: &DeviceRegistration, now: i64) -> Result<MetaRecord> {
    validate_device_id(&req.id)?;
    let model = non_empty(req.model.clone());
    if let Some(m) = &model {
        validate_id("model id", m)?;
    }
    let location = non_empty(req.location.clone());
    if let Some(l) = &location {
        validate_text("location", l)?;
    }
    validate_attributes(&req.attributes)?;
    Ok(MetaRecord {
        model,
        attributes: req.attributes.clone(),
        location,
        tags: normalize_tags(&req.tags)?,
        created_ns: now,
        updated_ns: now,
    })
}

fn supplied_or_generated(what: &str, key: Option<&String>) -> Result<String> {
    match key {
        Some(k) => validate_key(what, k).map(|()| k.clone()),
        None => Ok(generate_key()),
    }
}

fn normalized_thumbprint(raw: Option<&String>) -> Result<Option<String>> {
    raw.filter(|t| !t.is_empty())
        .map(|t| normalize_thumbprint(t))
        .transpose()
}

pub(crate) fn prepare(req: &DeviceRegistration, now: i64) -> Result<Prepared> {
    let meta = normalized_meta(req, now)?;
    let thumbprint = normalized_thumbprint(req.thumbprint.as_ref())?;
    let primary_key = supplied_or_generated("primary key", req.primary_key.as_ref())?;
    let secondary_key = supplied_or_generated("secondary key", req.secondary_key.as_ref())?;
    let ident = IdentityRecord {
        enabled: req.enabled,
        primary: SecretHash::new(primary_key.as_bytes()).encode(),
        secondary: SecretHash::new(secondary_key.as_bytes()).encode(),
        thumbprint,
        created_ns: now,
        updated_ns: now,
        last_seen_ns: None,
    };
    Ok(Prepared {
        ident,
        meta,
        primary_key,
        secondary_key,
    })
}

/// Joins an identity record and a metadata record into the public view.
pub(crate) fn to_device(id: &str, ident: &IdentityRecord, meta: MetaRecord) -> Device {
    Device {
        id: id.to_string(),
        enabled: ident.enabled,
        model: meta.model,
        attributes: meta.attributes,
        location: meta.location,
        tags: meta.tags,
        thumbprint: ident.thumbprint.clone(),
        created_ns: ident.created_ns,
        updated_ns: ident.updated_ns.max(meta.updated_ns),
        last_seen_ns: ident.last_seen_ns,
    }
}

pub(crate) fn insert_prepared(
    idt: &mut StrTableMut<'_>,
    mt: &mut StrTableMut<'_>,
    id: &str,
    p: Prepared,
) -> Result<RegisteredDevice> {
    store::put_json(idt, id, &p.ident)?;
    store::put_json(mt, id, &p.meta)?;
    Ok(RegisteredDevice {
        device: to_device(id, &p.ident, p.meta),
        primary_key: p.primary_key,
        secondary_key: p.secondary_key,
    })
}

/// Whether an existing device equals a repeated registration (keys checked when supplied).
fn same_as_existing(
    req: &DeviceRegistration,
    ident: &IdentityRecord,
    meta: &MetaRecord,
) -> Result<bool> {
    let want = normalized_meta(req, 0)?;
    let thumb = normalized_thumbprint(req.thumbprint.as_ref())?;
    let key_ok = |supplied: Option<&String>, stored: &str| {
        supplied.is_none_or(|k| SecretHash::decode(stored).is_some_and(|h| h.verify(k.as_bytes())))
    };
    Ok(want.model == meta.model
        && want.attributes == meta.attributes
        && want.location == meta.location
        && want.tags == meta.tags
        && thumb == ident.thumbprint
        && req.enabled == ident.enabled
        && key_ok(req.primary_key.as_ref(), &ident.primary)
        && key_ok(req.secondary_key.as_ref(), &ident.secondary))
}

/// Registers one item of a bulk call. `Err` only for storage failures (aborting the call).
fn bulk_one(
    idt: &mut StrTableMut<'_>,
    mt: &mut StrTableMut<'_>,
    req: &DeviceRegistration,
    now: i64,
) -> Result<BulkItemResult> {
    let item_error = |e: RegistryError| BulkItemResult::Error {
        id: req.id.clone(),
        error: e.to_string(),
    };
    if let Err(e) = validate_device_id(&req.id) {
        return Ok(item_error(e));
    }
    let existing: Option<IdentityRecord> = store::get_json(idt, &req.id)?;
    if let Some(ident) = existing {
        let meta: Option<MetaRecord> = store::get_json(mt, &req.id)?;
        let meta = meta.ok_or_else(|| missing_meta(&req.id))?;
        return Ok(match same_as_existing(req, &ident, &meta) {
            Ok(true) => BulkItemResult::Exists { id: req.id.clone() },
            Ok(false) => BulkItemResult::Error {
                id: req.id.clone(),
                error: format!(
                    "device '{}' already exists with different metadata or keys",
                    req.id
                ),
            },
            Err(e) => item_error(e),
        });
    }
    match prepare(req, now) {
        Ok(p) => insert_prepared(idt, mt, &req.id, p).map(BulkItemResult::Created),
        Err(e) => Ok(item_error(e)),
    }
}

fn missing_meta(id: &str) -> RegistryError {
    RegistryError::Storage(format!(
        "device '{id}' has an identity but no metadata record"
    ))
}

/// Loads both records of a device inside a write transaction.
fn load_both(
    idt: &StrTableMut<'_>,
    mt: &StrTableMut<'_>,
    id: &str,
) -> Result<(IdentityRecord, MetaRecord)> {
    let ident: IdentityRecord =
        store::get_json(idt, id)?.ok_or_else(|| RegistryError::not_found("device", id))?;
    let meta: MetaRecord = store::get_json(mt, id)?.ok_or_else(|| missing_meta(id))?;
    Ok((ident, meta))
}

/// Applies a metadata update, validating every field.
fn apply_update(
    ident: &mut IdentityRecord,
    meta: &mut MetaRecord,
    upd: &DeviceUpdate,
    now: i64,
) -> Result<()> {
    if let Some(m) = &upd.model {
        if !m.is_empty() {
            validate_id("model id", m)?;
        }
        meta.model = non_empty(Some(m.clone()));
    }
    if let Some(a) = &upd.attributes {
        validate_attributes(a)?;
        meta.attributes = a.clone();
    }
    if let Some(l) = &upd.location {
        validate_text("location", l)?;
        meta.location = non_empty(Some(l.clone()));
    }
    if let Some(t) = &upd.tags {
        meta.tags = normalize_tags(t)?;
    }
    if let Some(t) = &upd.thumbprint {
        ident.thumbprint = normalized_thumbprint(Some(t))?;
        ident.updated_ns = now;
    }
    meta.updated_ns = now;
    Ok(())
}

/// Whether a device's metadata/identity satisfies the non-hierarchical parts of a filter.
fn matches(filter: &DeviceFilter, ident: &IdentityRecord, meta: &MetaRecord) -> bool {
    filter
        .model
        .as_ref()
        .is_none_or(|m| meta.model.as_ref() == Some(m))
        && filter.enabled.is_none_or(|e| ident.enabled == e)
        && filter.tag.as_ref().is_none_or(|t| meta.tags.contains(t))
        && filter
            .attributes
            .iter()
            .all(|(k, v)| meta.attributes.get(k) == Some(v))
}

impl Registry {
    /// Registers a device. Keys not supplied are generated (256-bit random, 64 hex chars) and
    /// returned here only. `AlreadyExists` if the id is taken.
    pub fn register_device(
        &self,
        actor: &str,
        req: DeviceRegistration,
    ) -> Result<RegisteredDevice> {
        let id = req.id.clone();
        let created = self.audited(actor, "device.register", &id, |txn| {
            let p = prepare(&req, now_ns())?;
            let mut idt = txn.open_table(IDENTITIES)?;
            let mut mt = txn.open_table(DEVICES)?;
            if idt.get(id.as_str())?.is_some() {
                return Err(RegistryError::exists("device", id.clone()));
            }
            insert_prepared(&mut idt, &mut mt, &id, p)
        })?;
        self.inner.identities.invalidate([id.as_str()]);
        Ok(created)
    }

    /// Registers many devices in one transaction, with one result per item in input order:
    /// `created` (with keys), `exists` (same id and identical metadata — an idempotent
    /// repeat) or `error`. At most [`crate::MAX_BULK_ITEMS`] items. `Err` only when the whole
    /// call fails (too many items, storage failure).
    pub fn bulk_register(
        &self,
        actor: &str,
        reqs: Vec<DeviceRegistration>,
    ) -> Result<Vec<BulkItemResult>> {
        let target = format!("{} devices", reqs.len());
        let results = self.audited_detail(actor, "device.bulk_register", &target, |txn| {
            if reqs.len() > crate::MAX_BULK_ITEMS {
                return Err(RegistryError::invalid(format!(
                    "at most {} devices per bulk call, got {}",
                    crate::MAX_BULK_ITEMS,
                    reqs.len()
                )));
            }
            let results = bulk_in_txn(txn, &reqs)?;
            let detail = bulk_detail(&results);
            Ok((results, Some(detail)))
        })?;
        let created = results.iter().filter_map(|r| match r {
            BulkItemResult::Created(d) => Some(d.device.id.as_str()),
            _ => None,
        });
        self.inner.identities.invalidate(created);
        Ok(results)
    }

    /// Parses CSV (see [`crate::csv`]) and registers the rows like [`Registry::bulk_register`];
    /// malformed rows become `error` results in their place. A malformed header is `Invalid`.
    pub fn bulk_register_csv(&self, actor: &str, csv: &str) -> Result<Vec<BulkItemResult>> {
        let rows = parse_devices_csv(csv)?;
        let mut regs = Vec::with_capacity(rows.len());
        let mut slots = Vec::with_capacity(rows.len());
        for row in rows {
            match row {
                Ok(reg) => {
                    slots.push(None);
                    regs.push(reg);
                }
                Err(e) => slots.push(Some(BulkItemResult::Error {
                    id: e.id.clone(),
                    error: e.to_string(),
                })),
            }
        }
        let mut registered = self.bulk_register(actor, regs)?.into_iter();
        Ok(slots
            .into_iter()
            .filter_map(|slot| slot.or_else(|| registered.next()))
            .collect())
    }

    /// A device's public view (never any key).
    pub fn get_device(&self, id: &str) -> Result<Device> {
        let txn = self.inner.read_txn()?;
        let idt = txn.open_table(IDENTITIES)?;
        let mt = txn.open_table(DEVICES)?;
        let ident: IdentityRecord =
            store::get_json(&idt, id)?.ok_or_else(|| RegistryError::not_found("device", id))?;
        let meta: MetaRecord = store::get_json(&mt, id)?.ok_or_else(|| missing_meta(id))?;
        Ok(self.with_pending_seen(to_device(id, &ident, meta)))
    }

    /// Whether a device with this id is registered.
    pub fn device_exists(&self, id: &str) -> Result<bool> {
        let txn = self.inner.read_txn()?;
        let idt = txn.open_table(IDENTITIES)?;
        Ok(idt.get(id)?.is_some())
    }

    /// Number of registered devices.
    pub fn device_count(&self) -> Result<u64> {
        let txn = self.inner.read_txn()?;
        let idt = txn.open_table(IDENTITIES)?;
        Ok(redb::ReadableTableMetadata::len(&idt)?)
    }

    /// Updates metadata (model, attributes, location, tags) and/or the certificate thumbprint.
    pub fn update_device(&self, actor: &str, id: &str, update: DeviceUpdate) -> Result<Device> {
        let device = self.audited(actor, "device.update", id, |txn| {
            let mut idt = txn.open_table(IDENTITIES)?;
            let mut mt = txn.open_table(DEVICES)?;
            let (mut ident, mut meta) = load_both(&idt, &mt, id)?;
            apply_update(&mut ident, &mut meta, &update, now_ns())?;
            store::put_json(&mut idt, id, &ident)?;
            store::put_json(&mut mt, id, &meta)?;
            Ok(to_device(id, &ident, meta))
        })?;
        if update.thumbprint.is_some() {
            self.inner.identities.invalidate([id]);
            self.inner.publish(RegistryEvent::ThumbprintChanged {
                device_id: id.to_string(),
            });
        }
        if update.model.is_some() {
            self.inner.publish(RegistryEvent::DeviceModelChanged {
                device_id: id.to_string(),
            });
        }
        Ok(self.with_pending_seen(device))
    }

    /// Deletes a device: identity, metadata and every relationship touching it. Publishes
    /// [`RegistryEvent::DeviceDeleted`].
    pub fn delete_device(&self, actor: &str, id: &str) -> Result<()> {
        let node = NodeRef::Device(id.to_string());
        self.with_topology_change(|topo| {
            let removed = self.audited(actor, "device.delete", id, |txn| {
                delete_device_records(txn, id)?;
                crate::entities::delete_links_in_txn(txn, topo, &node)
            })?;
            for r in &removed {
                topo.remove(r);
            }
            Ok(())
        })?;
        self.inner.identities.invalidate([id]);
        self.inner.identities.forget_seen(id);
        self.inner.publish(RegistryEvent::DeviceDeleted {
            device_id: id.to_string(),
        });
        Ok(())
    }

    /// Disables a device: its next authentication fails. Publishes
    /// [`RegistryEvent::DeviceDisabled`] (also when it was already disabled).
    pub fn disable_device(&self, actor: &str, id: &str) -> Result<Device> {
        self.set_device_enabled(actor, id, false)
    }

    /// Enables a device. Publishes [`RegistryEvent::DeviceEnabled`].
    pub fn enable_device(&self, actor: &str, id: &str) -> Result<Device> {
        self.set_device_enabled(actor, id, true)
    }

    /// Sets the enabled flag (see [`Registry::disable_device`] / [`Registry::enable_device`]).
    pub fn set_device_enabled(&self, actor: &str, id: &str, enabled: bool) -> Result<Device> {
        let action = if enabled {
            "device.enable"
        } else {
            "device.disable"
        };
        let device = self.audited(actor, action, id, |txn| {
            let mut idt = txn.open_table(IDENTITIES)?;
            let mt = txn.open_table(DEVICES)?;
            let (mut ident, meta) = load_both(&idt, &mt, id)?;
            if ident.enabled != enabled {
                ident.enabled = enabled;
                ident.updated_ns = now_ns();
                store::put_json(&mut idt, id, &ident)?;
            }
            Ok(to_device(id, &ident, meta))
        })?;
        self.inner.identities.invalidate([id]);
        let device_id = id.to_string();
        self.inner.publish(if enabled {
            RegistryEvent::DeviceEnabled { device_id }
        } else {
            RegistryEvent::DeviceDisabled { device_id }
        });
        Ok(self.with_pending_seen(device))
    }

    /// Replaces the primary, secondary or both keys with new random keys, returned here only.
    /// The old keys are refused from the moment this returns. Publishes
    /// [`RegistryEvent::KeysRotated`].
    pub fn rotate_keys(&self, actor: &str, id: &str, slot: KeySlot) -> Result<RotatedKeys> {
        let rotated = self.audited(actor, "device.rotate_keys", id, |txn| {
            let mut idt = txn.open_table(IDENTITIES)?;
            let mut ident: IdentityRecord =
                store::get_json(&idt, id)?.ok_or_else(|| RegistryError::not_found("device", id))?;
            let mut out = RotatedKeys {
                id: id.to_string(),
                primary_key: None,
                secondary_key: None,
            };
            if matches!(slot, KeySlot::Primary | KeySlot::Both) {
                let key = generate_key();
                ident.primary = SecretHash::new(key.as_bytes()).encode();
                out.primary_key = Some(key);
            }
            if matches!(slot, KeySlot::Secondary | KeySlot::Both) {
                let key = generate_key();
                ident.secondary = SecretHash::new(key.as_bytes()).encode();
                out.secondary_key = Some(key);
            }
            ident.updated_ns = now_ns();
            store::put_json(&mut idt, id, &ident)?;
            Ok(out)
        })?;
        self.inner.identities.invalidate([id]);
        self.inner.publish(RegistryEvent::KeysRotated {
            device_id: id.to_string(),
            slot,
        });
        Ok(rotated)
    }

    /// Lists devices matching `filter`, ordered by id, with cursor pagination.
    /// `filter.under` restricts to devices below an entity (`NotFound` if it does not exist).
    pub fn list_devices(&self, filter: &DeviceFilter, page: &PageRequest) -> Result<Page<Device>> {
        let limit = page_limit(page.limit);
        let after = page.after.clone().unwrap_or_default();
        let under = match &filter.under {
            Some(entity) => Some(self.devices_under(entity)?),
            None => None,
        };
        let txn = self.inner.read_txn()?;
        let idt = txn.open_table(IDENTITIES)?;
        let mt = txn.open_table(DEVICES)?;
        let mut items = Vec::new();
        let mut more = false;
        let mut consider = |id: &str, meta: MetaRecord| -> Result<bool> {
            let Some(ident) = store::get_json::<IdentityRecord, _>(&idt, id)? else {
                return Ok(true);
            };
            if !matches(filter, &ident, &meta) {
                return Ok(true);
            }
            if items.len() == limit {
                more = true;
                return Ok(false);
            }
            items.push(to_device(id, &ident, meta));
            Ok(true)
        };
        match under {
            Some(ids) => {
                let start = ids.partition_point(|d| d.as_str() <= after.as_str());
                for id in &ids[start..] {
                    let Some(meta) = store::get_json::<MetaRecord, _>(&mt, id)? else {
                        continue;
                    };
                    if !consider(id, meta)? {
                        break;
                    }
                }
            }
            None => {
                let range =
                    mt.range::<&str>((Bound::Excluded(after.as_str()), Bound::Unbounded))?;
                for item in range {
                    let (k, v) = item?;
                    let meta: MetaRecord = serde_json::from_slice(v.value())?;
                    if !consider(k.value(), meta)? {
                        break;
                    }
                }
            }
        }
        let items: Vec<Device> = items
            .into_iter()
            .map(|d| self.with_pending_seen(d))
            .collect();
        let next_after = if more {
            items.last().map(|d| d.id.clone())
        } else {
            None
        };
        Ok(Page { items, next_after })
    }

    /// Ids of every device below entity `entity_id` through `contains`/`member_of` links
    /// (transitive, cycle-safe, multi-parent aware), sorted. `NotFound` if the entity does not exist.
    pub fn devices_under(&self, entity_id: &str) -> Result<Vec<String>> {
        validate_id("entity id", entity_id)?;
        {
            let txn = self.inner.read_txn()?;
            let et = txn.open_table(ENTITIES)?;
            if et.get(entity_id)?.is_none() {
                return Err(RegistryError::not_found("entity", entity_id));
            }
        }
        let node = NodeRef::Entity(entity_id.to_string());
        Ok(read(&self.inner.topology).descendants(&node).devices)
    }

    /// Overlays a last-seen time still pending in memory.
    fn with_pending_seen(&self, mut d: Device) -> Device {
        if let Some(ts) = self.inner.identities.pending_seen(&d.id) {
            d.last_seen_ns = Some(d.last_seen_ns.map_or(ts, |old| old.max(ts)));
        }
        d
    }
}

fn bulk_in_txn(txn: &WriteTransaction, reqs: &[DeviceRegistration]) -> Result<Vec<BulkItemResult>> {
    let mut idt = txn.open_table(IDENTITIES)?;
    let mut mt = txn.open_table(DEVICES)?;
    let now = now_ns();
    let mut results = Vec::with_capacity(reqs.len());
    for req in reqs {
        results.push(bulk_one(&mut idt, &mut mt, req, now)?);
    }
    Ok(results)
}

fn bulk_detail(results: &[BulkItemResult]) -> String {
    let (mut created, mut exists, mut errors) = (0usize, 0usize, 0usize);
    for r in results {
        match r {
            BulkItemResult::Created(_) => created += 1,
            BulkItemResult::Exists { .. } => exists += 1,
            BulkItemResult::Error { .. } => errors += 1,
        }
    }
    format!("created {created}, exists {exists}, errors {errors}")
}

fn delete_device_records(txn: &WriteTransaction, id: &str) -> Result<()> {
    let mut idt = txn.open_table(IDENTITIES)?;
    let mut mt = txn.open_table(DEVICES)?;
    if idt.remove(id)?.is_none() {
        return Err(RegistryError::not_found("device", id));
    }
    mt.remove(id)?;
    crate::commands::delete_device_commands(txn, id)?;
    crate::twins::delete_device_twin(txn, id)
}
