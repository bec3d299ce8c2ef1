//! Zero-touch provisioning with enrollment groups (table `enrollments`: id → group record).
//!
//! An operator creates a group (model, attributes, entity to link); the registry generates its
//! group key, returned once. A factory-fresh device derives its own key as the lowercase hex of
//! HMAC-SHA256 keyed with the group key string (its UTF-8 bytes) over its device id, and calls
//! [`Registry::provision`]: the device is registered with the derived key as its primary key,
//! with the group's model and attributes, and linked `entity contains device`. Provisioning again
//! with the same key is idempotent; a disabled group refuses.
//!
//! A group may instead carry a CA certificate (`ca_cert`, PEM): a device then attests itself
//! with a client certificate signed by that CA (the server verifies the chain over TLS; this
//! crate never parses X.509) and is registered by [`Registry::provision_certificate`] with the
//! certificate's thumbprint pinned, so from then on it authenticates with that certificate.
//!
//! The group key must be kept to verify derived keys, so unlike device keys and tokens it is
//! stored as issued (in the registry file, like IoT Hub DPS keeps its group keys); see
//! `docs/security.md`.

use hmac::{Hmac, KeyInit, Mac};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::crypto::{ct_eq, generate_key, to_hex};
use crate::error::{RegistryError, Result};
use crate::model::{Attributes, Device, DeviceRegistration, NodeRef, RelationKind, Relationship};
use crate::registry::Registry;
use crate::store::{ENROLLMENTS, get_json, put_json};
use crate::sync::now_ns;
use crate::validate::{validate_attributes, validate_device_id, validate_id};

/// An enrollment group as shown by the API (never its key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Group id.
    pub id: String,
    /// Model given to provisioned devices.
    pub model: Option<String>,
    /// Attributes given to provisioned devices.
    pub attributes: Attributes,
    /// Entity provisioned devices are linked into (`entity contains device`).
    pub entity: Option<String>,
    /// The CA certificate (PEM) that attests devices, for a certificate group (`None`: the
    /// group attests devices by keys derived from its group key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// Whether devices may provision through it.
    pub enabled: bool,
    /// Devices provisioned through it so far (first provisioning only).
    pub provisioned: u64,
    /// Creation time (ns since the epoch).
    pub created_ns: i64,
    /// Last change (ns since the epoch).
    pub updated_ns: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EnrollmentRecord {
    pub(crate) enrollment: Enrollment,
    /// `None` for a certificate group.
    #[serde(default)]
    pub(crate) group_key: Option<String>,
}

/// A group to create.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnrollment {
    /// Group id, `[A-Za-z0-9._:-]{1,128}`.
    pub id: String,
    /// Model of provisioned devices (must exist).
    #[serde(default)]
    pub model: Option<String>,
    /// Attributes of provisioned devices (an object).
    #[serde(default)]
    pub attributes: Attributes,
    /// Entity to link provisioned devices into (must exist).
    #[serde(default)]
    pub entity: Option<String>,
    /// A CA certificate (PEM) instead of a group key: devices attest with client certificates
    /// it signed. The server checks that it is a usable certificate before creating the group.
    #[serde(default)]
    pub ca_cert: Option<String>,
    /// Whether it starts enabled (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A created group with its key (shown once).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreatedEnrollment {
    /// The group.
    #[serde(flatten)]
    pub enrollment: Enrollment,
    /// The group key: devices derive theirs from it (absent for a certificate group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_key: Option<String>,
}

/// The outcome of [`Registry::provision`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provisioned {
    /// The device as registered.
    pub device: Device,
    /// False when it was provisioned before (an idempotent repeat).
    pub created: bool,
}

/// The group, unless it is disabled ([`RegistryError::Forbidden`]).
pub(crate) fn enabled_group(group: Enrollment) -> Result<Enrollment> {
    if group.enabled {
        Ok(group)
    } else {
        Err(RegistryError::Forbidden(format!(
            "enrollment '{}' is disabled",
            group.id
        )))
    }
}

/// A cheap shape check of a CA certificate (the server parses it for real): one or more PEM
/// certificate blocks, at most 64 KiB.
fn check_ca_pem(pem: &str) -> Result<()> {
    if pem.len() > 64 * 1024 || !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(RegistryError::invalid(
            "ca_cert must be a PEM certificate (-----BEGIN CERTIFICATE-----), at most 64 KiB",
        ));
    }
    Ok(())
}

/// A device's key in enrollment group `group_key`: lowercase hex HMAC-SHA256(group key, id).
pub fn derive_device_key(group_key: &str, device_id: &str) -> String {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(group_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(device_id.as_bytes());
    to_hex(&mac.finalize().into_bytes())
}

pub(crate) const REFUSED: &str =
    "unknown enrollment, or a device key not derived from its group key";

impl Registry {
    /// Creates an enrollment group and its key.
    pub fn create_enrollment(&self, actor: &str, new: NewEnrollment) -> Result<CreatedEnrollment> {
        validate_id("enrollment", &new.id)?;
        // Every device the group provisions gets these attributes: refuse now what each
        // registration would refuse later.
        validate_attributes(&new.attributes)?;
        if let Some(m) = &new.model {
            self.get_model(m)?;
        }
        if let Some(e) = &new.entity {
            self.get_entity(e)?;
        }
        if let Some(pem) = &new.ca_cert {
            check_ca_pem(pem)?;
        }
        let now = now_ns();
        let group_key = new.ca_cert.is_none().then(generate_key);
        let record = EnrollmentRecord {
            enrollment: Enrollment {
                id: new.id.clone(),
                model: new.model,
                attributes: new.attributes,
                entity: new.entity,
                ca_cert: new.ca_cert,
                enabled: new.enabled,
                provisioned: 0,
                created_ns: now,
                updated_ns: now,
            },
            group_key,
        };
        self.audited(actor, "enrollment.create", &new.id, |txn| {
            let mut t = txn.open_table(ENROLLMENTS)?;
            if t.get(new.id.as_str())?.is_some() {
                return Err(RegistryError::exists("enrollment", new.id.clone()));
            }
            put_json(&mut t, &new.id, &record)
        })?;
        Ok(CreatedEnrollment {
            enrollment: record.enrollment,
            group_key: record.group_key,
        })
    }

    pub(crate) fn enrollment_record(&self, id: &str) -> Result<Option<EnrollmentRecord>> {
        let txn = self.inner.read_txn()?;
        let t = txn.open_table(ENROLLMENTS)?;
        get_json(&t, id)
    }

    /// One enrollment group (without its key).
    pub fn enrollment(&self, id: &str) -> Result<Enrollment> {
        self.enrollment_record(id)?
            .map(|r| r.enrollment)
            .ok_or_else(|| RegistryError::not_found("enrollment", id))
    }

    /// Every enrollment group, by id.
    pub fn enrollments(&self) -> Result<Vec<Enrollment>> {
        let txn = self.inner.read_txn()?;
        let t = txn.open_table(ENROLLMENTS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            out.push(serde_json::from_slice::<EnrollmentRecord>(v.value())?.enrollment);
        }
        Ok(out)
    }

    /// Changes a group: `f` edits it; returns it after.
    fn change_enrollment(
        &self,
        actor: &str,
        action: &str,
        id: &str,
        f: impl FnOnce(&mut Enrollment),
    ) -> Result<Enrollment> {
        self.audited(actor, action, id, |txn| {
            let mut t = txn.open_table(ENROLLMENTS)?;
            let mut rec: EnrollmentRecord =
                get_json(&t, id)?.ok_or_else(|| RegistryError::not_found("enrollment", id))?;
            f(&mut rec.enrollment);
            rec.enrollment.updated_ns = now_ns();
            put_json(&mut t, id, &rec)?;
            Ok(rec.enrollment)
        })
    }

    /// Enables or disables a group (a disabled group refuses provisioning; devices already
    /// provisioned keep working).
    pub fn set_enrollment_enabled(
        &self,
        actor: &str,
        id: &str,
        enabled: bool,
    ) -> Result<Enrollment> {
        let action = if enabled {
            "enrollment.enable"
        } else {
            "enrollment.disable"
        };
        self.change_enrollment(actor, action, id, |e| e.enabled = enabled)
    }

    /// Deletes a group (its devices stay registered).
    pub fn delete_enrollment(&self, actor: &str, id: &str) -> Result<()> {
        self.audited(actor, "enrollment.delete", id, |txn| {
            let mut t = txn.open_table(ENROLLMENTS)?;
            if t.remove(id)?.is_none() {
                return Err(RegistryError::not_found("enrollment", id));
            }
            Ok(())
        })
    }

    /// Provisions `device_id` through group `enrollment` with its derived `key`: registers it
    /// (primary key = the derived key, the group's model and attributes) and links it into the
    /// group's entity. A repeat with the same key returns the device (`created: false`) and
    /// restores a missing link. Refusals: unknown group or wrong key →
    /// [`RegistryError::Unauthorized`]; disabled group or device → [`RegistryError::Forbidden`];
    /// a device of that id registered with other credentials → [`RegistryError::Conflict`].
    pub fn provision(&self, enrollment: &str, device_id: &str, key: &str) -> Result<Provisioned> {
        let unauthorized = || RegistryError::Unauthorized(REFUSED.into());
        let rec = self
            .enrollment_record(enrollment)?
            .ok_or_else(unauthorized)?;
        validate_device_id(device_id)?;
        let Some(group_key) = &rec.group_key else {
            return Err(RegistryError::Unauthorized(format!(
                "enrollment '{enrollment}' attests devices by CA certificate: provision over HTTPS with a client certificate"
            )));
        };
        let expected = derive_device_key(group_key, device_id);
        if !ct_eq(expected.as_bytes(), key.as_bytes()) {
            return Err(unauthorized());
        }
        let group = enabled_group(rec.enrollment)?;
        let actor = format!("enrollment:{enrollment}");
        let created = match self.get_device(device_id) {
            Ok(_) => {
                match self.authenticate_device(device_id, key) {
                    Ok(_) => {}
                    Err(RegistryError::Unauthorized(m)) if m.contains("disabled") => {
                        return Err(RegistryError::Forbidden(format!(
                            "device '{device_id}' is disabled"
                        )));
                    }
                    Err(RegistryError::Unauthorized(_)) => {
                        return Err(RegistryError::Conflict(format!(
                            "device '{device_id}' is registered with other credentials"
                        )));
                    }
                    Err(e) => return Err(e),
                }
                false
            }
            Err(RegistryError::NotFound { .. }) => {
                let mut reg = DeviceRegistration::new(device_id);
                reg.model = group.model.clone();
                reg.attributes = group.attributes.clone();
                reg.primary_key = Some(key.to_owned());
                match self.register_device(&actor, reg) {
                    Ok(_) => true,
                    // A concurrent repeat registered it first.
                    Err(RegistryError::AlreadyExists { .. }) => false,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        self.finish_provisioning(&group, device_id, created)
    }

    /// Provisions `device_id` through certificate group `enrollment`, for a client certificate
    /// with `thumbprint` that the caller has verified chains to the group's CA and names
    /// `device_id`. The device is registered with the thumbprint pinned (it then authenticates
    /// with exactly that certificate), the group's model and attributes, a generated key that is
    /// never returned, and linked into the group's entity. A repeat with the same certificate is
    /// idempotent. Refusals: unknown group or a key group → [`RegistryError::Unauthorized`];
    /// disabled group or device → [`RegistryError::Forbidden`]; the id registered with other
    /// credentials (another or no pinned certificate) → [`RegistryError::Conflict`].
    pub fn provision_certificate(
        &self,
        enrollment: &str,
        device_id: &str,
        thumbprint: &str,
    ) -> Result<Provisioned> {
        let rec = self.enrollment_record(enrollment)?.ok_or_else(|| {
            RegistryError::Unauthorized(format!("unknown enrollment '{enrollment}'"))
        })?;
        validate_device_id(device_id)?;
        if rec.enrollment.ca_cert.is_none() {
            return Err(RegistryError::Unauthorized(format!(
                "enrollment '{enrollment}' attests devices by group key, not by certificate"
            )));
        }
        let group = enabled_group(rec.enrollment)?;
        let actor = format!("enrollment:{enrollment}");
        let created = match self.get_device(device_id) {
            Ok(d) if d.thumbprint.as_deref() == Some(thumbprint) && !d.enabled => {
                return Err(RegistryError::Forbidden(format!(
                    "device '{device_id}' is disabled"
                )));
            }
            Ok(d) if d.thumbprint.as_deref() == Some(thumbprint) => false,
            Ok(_) => {
                return Err(RegistryError::Conflict(format!(
                    "device '{device_id}' is registered with other credentials"
                )));
            }
            Err(RegistryError::NotFound { .. }) => {
                let mut reg = DeviceRegistration::new(device_id);
                reg.model = group.model.clone();
                reg.attributes = group.attributes.clone();
                reg.thumbprint = Some(thumbprint.to_owned());
                match self.register_device(&actor, reg) {
                    Ok(_) => true,
                    Err(RegistryError::AlreadyExists { .. }) => {
                        return self.provision_certificate(enrollment, device_id, thumbprint);
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        self.finish_provisioning(&group, device_id, created)
    }

    /// Links a provisioned device into its group's entity and counts a first provisioning.
    fn finish_provisioning(
        &self,
        group: &Enrollment,
        device_id: &str,
        created: bool,
    ) -> Result<Provisioned> {
        let actor = format!("enrollment:{}", group.id);
        if let Some(entity) = &group.entity {
            self.link_provisioned(&actor, entity, device_id)?;
        }
        if created {
            self.change_enrollment(&actor, "enrollment.provisioned", &group.id, |e| {
                e.provisioned += 1;
            })?;
        }
        Ok(Provisioned {
            device: self.get_device(device_id)?,
            created,
        })
    }

    /// Adds `entity contains device` unless present.
    fn link_provisioned(&self, actor: &str, entity: &str, device: &str) -> Result<()> {
        let rel = Relationship {
            source: NodeRef::Entity(entity.to_owned()),
            kind: RelationKind::Contains,
            target: NodeRef::Device(device.to_owned()),
        };
        if self.relationships_of(&rel.target)?.contains(&rel) {
            return Ok(());
        }
        match self.add_relationship(actor, rel) {
            Ok(()) | Err(RegistryError::AlreadyExists { .. }) => Ok(()),
            // The entity was deleted since the group was created: the device stays registered.
            Err(RegistryError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("r.redb")).unwrap();
        (dir, reg)
    }

    #[test]
    fn derived_key_is_hmac_sha256_hex() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            derive_device_key("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// A group whose attributes no device registration would accept is refused when created,
    /// not when every one of its devices tries to provision.
    #[test]
    fn a_group_with_attributes_too_large_for_a_device_is_refused() {
        let (_d, reg) = registry();
        let big = "x".repeat(crate::validate::MAX_ATTRIBUTES_BYTES);
        let group = NewEnrollment {
            id: "big".into(),
            model: None,
            attributes: serde_json::from_value(serde_json::json!({ "blob": big })).unwrap(),
            entity: None,
            ca_cert: None,
            enabled: true,
        };
        let e = reg.create_enrollment("t", group).unwrap_err();
        assert!(matches!(e, RegistryError::Invalid(_)), "{e}");
        assert!(reg.enrollment("big").is_err());
    }

    #[test]
    fn provisioning_refusals_and_idempotence() {
        let (_d, reg) = registry();
        let group = NewEnrollment {
            id: "line-7".into(),
            model: None,
            attributes: serde_json::from_str(r#"{"line": 7}"#).unwrap(),
            entity: None,
            ca_cert: None,
            enabled: true,
        };
        let created = reg.create_enrollment("t", group.clone()).unwrap();
        let group_key = created.group_key.clone().unwrap();
        assert!(matches!(
            reg.create_enrollment("t", group),
            Err(RegistryError::AlreadyExists { .. })
        ));
        let key = derive_device_key(&group_key, "dev-1");
        let first = reg.provision("line-7", "dev-1", &key).unwrap();
        assert!(first.created);
        assert_eq!(first.device.attributes["line"], 7);
        reg.authenticate_device("dev-1", &key).unwrap();
        let again = reg.provision("line-7", "dev-1", &key).unwrap();
        assert!(!again.created);
        assert_eq!(reg.enrollment("line-7").unwrap().provisioned, 1);
        let wrong = derive_device_key("other-key", "dev-2");
        assert!(matches!(
            reg.provision("line-7", "dev-2", &wrong),
            Err(RegistryError::Unauthorized(_))
        ));
        assert!(matches!(
            reg.provision("nope", "dev-2", &key),
            Err(RegistryError::Unauthorized(_))
        ));
        reg.set_enrollment_enabled("t", "line-7", false).unwrap();
        let key2 = derive_device_key(&group_key, "dev-2");
        assert!(matches!(
            reg.provision("line-7", "dev-2", &key2),
            Err(RegistryError::Forbidden(_))
        ));
    }

    #[test]
    fn certificate_groups_pin_the_thumbprint() {
        let (_d, reg) = registry();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let new = |id: &str, ca: Option<&str>| NewEnrollment {
            id: id.into(),
            model: None,
            attributes: Attributes::default(),
            entity: None,
            ca_cert: ca.map(str::to_owned),
            enabled: true,
        };
        assert!(matches!(
            reg.create_enrollment("t", new("bad", Some("not pem"))),
            Err(RegistryError::Invalid(_))
        ));
        let created = reg
            .create_enrollment("t", new("ca-line", Some(pem)))
            .unwrap();
        assert!(created.group_key.is_none());
        assert_eq!(created.enrollment.ca_cert.as_deref(), Some(pem));
        let keyed = reg.create_enrollment("t", new("key-line", None)).unwrap();
        let tp = "ab".repeat(32);
        let first = reg.provision_certificate("ca-line", "cam-1", &tp).unwrap();
        assert!(first.created);
        assert_eq!(first.device.thumbprint.as_deref(), Some(tp.as_str()));
        reg.authenticate_device_cert("cam-1", &tp).unwrap();
        assert!(
            !reg.provision_certificate("ca-line", "cam-1", &tp)
                .unwrap()
                .created
        );
        assert_eq!(reg.enrollment("ca-line").unwrap().provisioned, 1);
        // Another certificate for the same id, a key group, a group key on a CA group.
        assert!(matches!(
            reg.provision_certificate("ca-line", "cam-1", &"cd".repeat(32)),
            Err(RegistryError::Conflict(_))
        ));
        assert!(matches!(
            reg.provision_certificate("key-line", "cam-2", &tp),
            Err(RegistryError::Unauthorized(_))
        ));
        let key = derive_device_key(keyed.group_key.as_deref().unwrap(), "cam-2");
        assert!(matches!(
            reg.provision("ca-line", "cam-2", &key),
            Err(RegistryError::Unauthorized(_))
        ));
        reg.set_enrollment_enabled("t", "ca-line", false).unwrap();
        assert!(matches!(
            reg.provision_certificate("ca-line", "cam-3", &"ef".repeat(32)),
            Err(RegistryError::Forbidden(_))
        ));
    }
}
