//! Provisioning many devices in one transaction (group commit): [`Registry::provision_many`]
//! checks each request exactly like [`Registry::provision`] / [`Registry::provision_certificate`]
//! and registers every new device of the batch — identity, metadata, the `entity contains
//! device` link, the group's counter and the audit records — in **one** committed (fsynced)
//! redb transaction, instead of three per device. The server hands it the requests that arrive
//! while the previous batch commits, so a request is answered only once its device is durable.
//! Requests for a device that already exists (idempotent repeats, conflicts) and repeated ids
//! within a batch take the one-by-one path after the batch. The audit log gets one
//! `device.register` record per device (detail: the link it got) and one
//! `enrollment.provisioned` record per group and batch (detail: `+N`).

use std::collections::{HashMap, HashSet};

use redb::ReadableTable;

use crate::audit::append_to;
use crate::crypto::ct_eq;
use crate::devices::{insert_prepared, prepare};
use crate::enrollments::{EnrollmentRecord, REFUSED, derive_device_key, enabled_group};
use crate::error::{RegistryError, Result};
use crate::model::{DeviceRegistration, NodeRef, RelationKind, Relationship};
use crate::registry::Registry;
use crate::store::{
    AUDIT, DEVICES, ENROLLMENTS, ENTITIES, IDENTITIES, RELATIONSHIPS, RelationshipRecord, get_json,
    put_json, relationship_key,
};
use crate::sync::now_ns;
use crate::validate::validate_device_id;
use crate::{Enrollment, Provisioned};

/// How a device proves it belongs to the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionCredential {
    /// The key derived from the group key.
    Key(String),
    /// The thumbprint of a client certificate the caller verified against the group's CA.
    Thumbprint(String),
}

/// One provisioning request of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionRequest {
    /// Enrollment group id.
    pub enrollment: String,
    /// Device id.
    pub device_id: String,
    /// Its proof.
    pub credential: ProvisionCredential,
}

/// A request that passed the checks and registers a new device.
struct Fresh {
    index: usize,
    group: Enrollment,
    registration: DeviceRegistration,
}

impl Registry {
    /// Provisions every request, new devices in one transaction; one result per request in
    /// order, each what [`Registry::provision`] (key) or [`Registry::provision_certificate`]
    /// (thumbprint) would have answered.
    pub fn provision_many(&self, reqs: &[ProvisionRequest]) -> Vec<Result<Provisioned>> {
        let mut results: Vec<Option<Result<Provisioned>>> = vec![None; reqs.len()];
        let mut fresh = Vec::new();
        let mut slow = Vec::new();
        let mut groups: HashMap<String, Option<EnrollmentRecord>> = HashMap::new();
        let mut seen = HashSet::new();
        for (index, req) in reqs.iter().enumerate() {
            match self.check(req, &mut groups) {
                Err(e) => results[index] = Some(Err(e)),
                Ok(_) if !seen.insert(req.device_id.as_str()) => slow.push(index),
                Ok(None) => slow.push(index),
                Ok(Some((group, registration))) => fresh.push(Fresh {
                    index,
                    group,
                    registration,
                }),
            }
        }
        match self.register_fresh(&fresh) {
            Ok(done) => {
                for (f, outcome) in fresh.iter().zip(done) {
                    match outcome {
                        Some(p) => results[f.index] = Some(Ok(p)),
                        None => slow.push(f.index),
                    }
                }
            }
            Err(e) => {
                for f in &fresh {
                    results[f.index] = Some(Err(e.clone()));
                }
            }
        }
        for index in slow {
            results[index] = Some(self.provision_one(&reqs[index]));
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(RegistryError::Storage("not provisioned".into()))))
            .collect()
    }

    /// The one-by-one path.
    fn provision_one(&self, req: &ProvisionRequest) -> Result<Provisioned> {
        match &req.credential {
            ProvisionCredential::Key(k) => self.provision(&req.enrollment, &req.device_id, k),
            ProvisionCredential::Thumbprint(t) => {
                self.provision_certificate(&req.enrollment, &req.device_id, t)
            }
        }
    }

    /// Checks a request: `Ok(None)` when the one-by-one path must decide, `Ok(Some(..))` with
    /// the group and the registration of a device that is new unless the transaction finds it.
    fn check(
        &self,
        req: &ProvisionRequest,
        groups: &mut HashMap<String, Option<EnrollmentRecord>>,
    ) -> Result<Option<(Enrollment, DeviceRegistration)>> {
        if !groups.contains_key(&req.enrollment) {
            let rec = self.enrollment_record(&req.enrollment)?;
            groups.insert(req.enrollment.clone(), rec);
        }
        let rec = groups
            .get(&req.enrollment)
            .and_then(Option::as_ref)
            .ok_or_else(|| RegistryError::Unauthorized(REFUSED.into()))?;
        validate_device_id(&req.device_id)?;
        let mut reg = DeviceRegistration::new(&req.device_id);
        match (&req.credential, &rec.group_key) {
            (ProvisionCredential::Key(key), Some(group_key)) => {
                let expected = derive_device_key(group_key, &req.device_id);
                if !ct_eq(expected.as_bytes(), key.as_bytes()) {
                    return Err(RegistryError::Unauthorized(REFUSED.into()));
                }
                reg.primary_key = Some(key.clone());
            }
            (ProvisionCredential::Thumbprint(t), None) => reg.thumbprint = Some(t.clone()),
            // A key for a certificate group or the other way round: the one-by-one path
            // answers with its precise refusal.
            _ => return Ok(None),
        }
        // Whether the device exists is checked inside the batch's transaction.
        let group = enabled_group(rec.enrollment.clone())?;
        reg.model = group.model.clone();
        reg.attributes = group.attributes.clone();
        Ok(Some((group, reg)))
    }

    /// Registers the new devices in one transaction; `None` for a device that appeared in the
    /// meantime (it goes the one-by-one path).
    fn register_fresh(&self, fresh: &[Fresh]) -> Result<Vec<Option<Provisioned>>> {
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ns();
        self.with_topology_change(|topo| {
            let txn = self.inner.write_txn()?;
            let mut out = Vec::with_capacity(fresh.len());
            let mut links = Vec::new();
            let mut counts: HashMap<&str, u64> = HashMap::new();
            {
                let mut idt = txn.open_table(IDENTITIES)?;
                let mut mt = txn.open_table(DEVICES)?;
                let entities = txn.open_table(ENTITIES)?;
                let mut rels = txn.open_table(RELATIONSHIPS)?;
                let mut audit = txn.open_table(AUDIT)?;
                for f in fresh {
                    let id = f.registration.id.as_str();
                    if idt.get(id)?.is_some() {
                        out.push(None);
                        continue;
                    }
                    let actor = format!("enrollment:{}", f.group.id);
                    // A request this batch cannot take (its registration is invalid) is left
                    // to the one-at-a-time path, which answers it with its own error: one bad
                    // request must not fail the others.
                    let Ok(prepared) = prepare(&f.registration, now) else {
                        out.push(None);
                        continue;
                    };
                    let registered = insert_prepared(&mut idt, &mut mt, id, prepared)?;
                    let mut detail = None;
                    if let Some(entity) = &f.group.entity
                        && entities.get(entity.as_str())?.is_some()
                    {
                        let rel = Relationship {
                            source: NodeRef::Entity(entity.clone()),
                            kind: RelationKind::Contains,
                            target: NodeRef::Device(id.to_owned()),
                        };
                        let key = relationship_key(&rel);
                        let rec = RelationshipRecord {
                            relationship: rel.clone(),
                            created_ns: now,
                        };
                        put_json(&mut rels, &key, &rec)?;
                        detail = Some(format!("linked {key}"));
                        links.push(rel);
                    }
                    // One audit record per device (its link in the detail).
                    append_to(&mut audit, &actor, "device.register", id, Ok(detail))?;
                    *counts.entry(f.group.id.as_str()).or_default() += 1;
                    out.push(Some(Provisioned {
                        device: registered.device,
                        created: true,
                    }));
                }
                let mut groups = txn.open_table(ENROLLMENTS)?;
                for (group, n) in &counts {
                    let Some(mut rec): Option<EnrollmentRecord> = get_json(&groups, group)? else {
                        continue;
                    };
                    rec.enrollment.provisioned += n;
                    rec.enrollment.updated_ns = now;
                    put_json(&mut groups, group, &rec)?;
                    let actor = format!("enrollment:{group}");
                    let detail = Some(format!("+{n}"));
                    append_to(
                        &mut audit,
                        &actor,
                        "enrollment.provisioned",
                        group,
                        Ok(detail),
                    )?;
                }
            }
            txn.commit()?;
            for rel in &links {
                topo.add(rel);
            }
            let ids = fresh.iter().zip(&out).filter(|(_, o)| o.is_some());
            self.inner
                .identities
                .invalidate(ids.map(|(f, _)| f.registration.id.as_str()));
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EntitySpec, NewEnrollment};

    #[test]
    fn a_batch_answers_like_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("r.redb")).unwrap();
        let spec: EntitySpec = serde_json::from_str(r#"{"id": "plant", "kind": "site"}"#).unwrap();
        reg.create_entity("t", spec).unwrap();
        let new = NewEnrollment {
            id: "g".into(),
            model: None,
            attributes: serde_json::from_str(r#"{"line": 1}"#).unwrap(),
            entity: Some("plant".into()),
            ca_cert: None,
            enabled: true,
        };
        let gk = reg.create_enrollment("t", new).unwrap().group_key.unwrap();
        let key = |d: &str| ProvisionCredential::Key(derive_device_key(&gk, d));
        let req = |d: &str, c: ProvisionCredential| ProvisionRequest {
            enrollment: "g".into(),
            device_id: d.into(),
            credential: c,
        };
        reg.provision("g", "old", &derive_device_key(&gk, "old"))
            .unwrap();
        let reqs = vec![
            req("a", key("a")),
            req("b", key("b")),
            req("a", key("a")),
            req("old", key("old")),
            req("c", ProvisionCredential::Key("wrong".into())),
            req("d", ProvisionCredential::Thumbprint("ab".repeat(32))),
        ];
        let out = reg.provision_many(&reqs);
        assert!(out[0].as_ref().unwrap().created);
        assert!(out[1].as_ref().unwrap().created);
        assert!(!out[2].as_ref().unwrap().created, "repeat within the batch");
        assert!(!out[3].as_ref().unwrap().created, "existing device");
        assert!(matches!(out[4], Err(RegistryError::Unauthorized(_))));
        assert!(matches!(out[5], Err(RegistryError::Unauthorized(_))));
        assert_eq!(out[0].as_ref().unwrap().device.attributes["line"], 1);
        reg.authenticate_device("a", &derive_device_key(&gk, "a"))
            .unwrap();
        assert_eq!(reg.enrollment("g").unwrap().provisioned, 3);
        let under = reg
            .relationships_of(&NodeRef::Entity("plant".into()))
            .unwrap();
        assert_eq!(under.len(), 3);
        // Durable: a reopened registry has them.
        drop(reg);
        let reg = Registry::open(dir.path().join("r.redb")).unwrap();
        assert!(reg.get_device("b").is_ok());
        reg.set_enrollment_enabled("t", "g", false).unwrap();
        let out = reg.provision_many(&[req("e", key("e"))]);
        assert!(matches!(out[0], Err(RegistryError::Forbidden(_))));
    }
}
