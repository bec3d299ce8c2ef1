//! Device twins: per device a `desired` section (written by applications) and a `reported`
//! section (written by the device), each a JSON object with a `$version` that grows by one per
//! patch and per-property metadata, stored in the `twins` table (device id → [`TwinRecord`] JSON,
//! format in `docs/format.md`). Every patch is one committed (fsynced) redb transaction. A device
//! without a stored twin has an empty one (both versions 0); deleting the device deletes it.
//!
//! The ETag (`"{desired $version}.{reported $version}"`) names one state of the whole twin; a
//! patch given an `If-Match` that names another state is refused with
//! [`RegistryError::PreconditionFailed`]. Limits ([`TwinLimits`]): the serialized size of a
//! section after the patch ([`RegistryError::TooLarge`]) and the nesting depth of a patch.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{RegistryError, Result};
use crate::registry::Registry;
use crate::store::{IDENTITIES, TWINS, get_json, put_json};
use crate::sync::now_ns;
use crate::twin_doc::{self, Stamp};
use crate::validate::validate_device_id;

/// Default largest section (serialized properties, compact JSON), as in IoT Hub.
pub const DEFAULT_TWIN_MAX_BYTES: usize = 32 * 1024;
/// Default deepest nesting of a patch.
pub const DEFAULT_TWIN_MAX_DEPTH: usize = 10;

/// Size and depth limits of twin sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwinLimits {
    /// Largest serialized section (bytes of compact JSON of its properties).
    pub max_bytes: usize,
    /// Deepest nesting of a patch (`{"a": 1}` is 1).
    pub max_depth: usize,
}

impl Default for TwinLimits {
    fn default() -> Self {
        TwinLimits {
            max_bytes: DEFAULT_TWIN_MAX_BYTES,
            max_depth: DEFAULT_TWIN_MAX_DEPTH,
        }
    }
}

/// Which section of a twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinSection {
    /// Written by applications.
    Desired,
    /// Written by the device.
    Reported,
}

impl TwinSection {
    /// The section's JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            TwinSection::Desired => "desired",
            TwinSection::Reported => "reported",
        }
    }
}

/// One section as stored and as returned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SectionState {
    /// `$version`: how many patches the section has taken.
    pub version: u64,
    /// The properties.
    pub properties: Map<String, Value>,
    /// Per-property metadata, nested like the properties: `$lastUpdatedNs`,
    /// `$lastUpdatedVersion`.
    pub metadata: Map<String, Value>,
    /// When the last patch was applied (ns since the epoch).
    pub updated_ns: Option<i64>,
}

impl SectionState {
    /// The properties with `$version` (what a device receives as the full document).
    pub fn document(&self) -> Value {
        let mut doc = self.properties.clone();
        doc.insert("$version".into(), json!(self.version));
        Value::Object(doc)
    }

    /// The properties with `$version` and `$metadata` (the section as the HTTP API shows it).
    fn with_metadata(&self) -> Value {
        let mut doc = self.properties.clone();
        doc.insert("$version".into(), json!(self.version));
        doc.insert("$metadata".into(), Value::Object(self.metadata.clone()));
        Value::Object(doc)
    }
}

/// A stored twin: `{"desired": SectionState, "reported": SectionState}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TwinRecord {
    pub desired: SectionState,
    pub reported: SectionState,
}

/// A device's twin.
#[derive(Debug, Clone, PartialEq)]
pub struct Twin {
    /// The device.
    pub device: String,
    /// Written by applications.
    pub desired: SectionState,
    /// Written by the device.
    pub reported: SectionState,
}

impl Twin {
    fn from_record(device: &str, rec: TwinRecord) -> Self {
        Twin {
            device: device.to_owned(),
            desired: rec.desired,
            reported: rec.reported,
        }
    }

    /// The ETag of this state of the twin, quoted as in HTTP: `"3.2"`.
    pub fn etag(&self) -> String {
        format!("\"{}.{}\"", self.desired.version, self.reported.version)
    }

    /// One section.
    pub fn section(&self, which: TwinSection) -> &SectionState {
        match which {
            TwinSection::Desired => &self.desired,
            TwinSection::Reported => &self.reported,
        }
    }

    /// The desired properties whose value differs from the reported one.
    pub fn delta(&self) -> Map<String, Value> {
        twin_doc::delta(&self.desired.properties, &self.reported.properties)
    }

    /// The twin as the HTTP API returns it.
    pub fn to_json(&self) -> Value {
        json!({
            "device": self.device,
            "etag": self.etag(),
            "desired": self.desired.with_metadata(),
            "reported": self.reported.with_metadata(),
        })
    }
}

/// Whether `if_match` (an `If-Match` header value: `*`, or ETags separated by commas, quoted or
/// not, possibly weak `W/`) names the twin's current state.
fn etag_matches(twin: &Twin, if_match: &str) -> bool {
    let current = twin.etag();
    let current = current.trim_matches('"');
    if_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == current)
}

impl Registry {
    /// The twin of `device` (which must exist); empty when nothing was ever written.
    pub fn twin(&self, device: &str) -> Result<Twin> {
        validate_device_id(device)?;
        let txn = self.inner.read_txn()?;
        if txn.open_table(IDENTITIES)?.get(device)?.is_none() {
            return Err(RegistryError::not_found("device", device));
        }
        let rec = get_json::<TwinRecord, _>(&txn.open_table(TWINS)?, device)?.unwrap_or_default();
        Ok(Twin::from_record(device, rec))
    }

    /// Applies a JSON merge patch to one section of `device`'s twin and returns the twin after
    /// it; the section's `$version` grows by one. `if_match`, when given, must name the current
    /// state ([`Twin::etag`], or `*`).
    pub fn patch_twin(
        &self,
        device: &str,
        which: TwinSection,
        patch: &Value,
        if_match: Option<&str>,
        limits: TwinLimits,
    ) -> Result<Twin> {
        validate_device_id(device)?;
        let patch = twin_doc::check_patch(patch, limits.max_depth)?;
        let txn = self.inner.write_txn()?;
        let twin = {
            if txn.open_table(IDENTITIES)?.get(device)?.is_none() {
                return Err(RegistryError::not_found("device", device));
            }
            let mut table = txn.open_table(TWINS)?;
            let rec = get_json::<TwinRecord, _>(&table, device)?.unwrap_or_default();
            let mut twin = Twin::from_record(device, rec);
            if let Some(tag) = if_match
                && !etag_matches(&twin, tag)
            {
                return Err(RegistryError::PreconditionFailed(format!(
                    "If-Match {tag} does not match the twin's current ETag {}",
                    twin.etag()
                )));
            }
            let section = match which {
                TwinSection::Desired => &mut twin.desired,
                TwinSection::Reported => &mut twin.reported,
            };
            apply(section, which, patch, limits)?;
            let rec = TwinRecord {
                desired: twin.desired.clone(),
                reported: twin.reported.clone(),
            };
            put_json(&mut table, device, &rec)?;
            twin
        };
        txn.commit()?;
        Ok(twin)
    }

    /// The twin of every registered device, ordered by device id (the `twins` SQL table).
    pub fn twins_snapshot(&self) -> Result<Vec<Twin>> {
        let txn = self.inner.read_txn()?;
        let ids = txn.open_table(IDENTITIES)?;
        let twins = txn.open_table(TWINS)?;
        let mut out = Vec::new();
        for item in ids.iter()? {
            let (k, _) = item?;
            let id = k.value();
            let rec = get_json::<TwinRecord, _>(&twins, id)?.unwrap_or_default();
            out.push(Twin::from_record(id, rec));
        }
        Ok(out)
    }
}

/// Applies `patch` to `section` as its next version, within `limits`.
fn apply(
    section: &mut SectionState,
    which: TwinSection,
    patch: &Map<String, Value>,
    limits: TwinLimits,
) -> Result<()> {
    let now = now_ns();
    let stamp = Stamp {
        now_ns: now,
        version: section.version + 1,
    };
    twin_doc::merge(&mut section.properties, &mut section.metadata, patch, stamp);
    let size = serde_json::to_vec(&section.properties)?.len();
    if size > limits.max_bytes {
        return Err(RegistryError::TooLarge(format!(
            "the {} section would be {size} bytes, above the limit of {} bytes",
            which.as_str(),
            limits.max_bytes
        )));
    }
    section.version = stamp.version;
    section.updated_ns = Some(now);
    Ok(())
}

/// Deletes the twin of a deleted device (inside its deletion transaction).
pub(crate) fn delete_device_twin(txn: &redb::WriteTransaction, device: &str) -> Result<()> {
    txn.open_table(TWINS)?.remove(device)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceRegistration;

    fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("r.redb")).unwrap();
        reg.register_device("t", DeviceRegistration::new("d1"))
            .unwrap();
        (dir, reg)
    }

    #[test]
    fn versions_etags_and_conditions() {
        let (_d, reg) = registry();
        let empty = reg.twin("d1").unwrap();
        assert_eq!(empty.etag(), "\"0.0\"");
        let limits = TwinLimits::default();
        let t = reg
            .patch_twin(
                "d1",
                TwinSection::Desired,
                &json!({"t": 21}),
                Some("\"0.0\""),
                limits,
            )
            .unwrap();
        assert_eq!((t.desired.version, t.etag().as_str()), (1, "\"1.0\""));
        let stale = reg.patch_twin(
            "d1",
            TwinSection::Desired,
            &json!({"t": 22}),
            Some("\"0.0\""),
            limits,
        );
        assert!(
            matches!(stale, Err(RegistryError::PreconditionFailed(_))),
            "{stale:?}"
        );
        let t = reg
            .patch_twin("d1", TwinSection::Reported, &json!({"t": 20}), None, limits)
            .unwrap();
        assert_eq!(t.delta(), json!({"t": 21}).as_object().cloned().unwrap());
        reg.patch_twin(
            "d1",
            TwinSection::Desired,
            &json!({"t": 20}),
            Some("*"),
            limits,
        )
        .unwrap();
        let t = reg.twin("d1").unwrap();
        assert!(t.delta().is_empty());
        assert_eq!(t.to_json()["desired"]["$version"], 2);
        assert_eq!(reg.twins_snapshot().unwrap(), vec![t]);
        assert!(matches!(
            reg.twin("nope"),
            Err(RegistryError::NotFound { .. })
        ));
    }

    #[test]
    fn limits_refuse_and_change_nothing() {
        let (_d, reg) = registry();
        let limits = TwinLimits {
            max_bytes: 64,
            max_depth: 2,
        };
        let big = json!({"blob": "x".repeat(100)});
        let r = reg.patch_twin("d1", TwinSection::Desired, &big, None, limits);
        assert!(matches!(r, Err(RegistryError::TooLarge(_))), "{r:?}");
        let deep = json!({"a": {"b": {"c": 1}}});
        let r = reg.patch_twin("d1", TwinSection::Reported, &deep, None, limits);
        assert!(matches!(r, Err(RegistryError::Invalid(_))), "{r:?}");
        assert_eq!(reg.twin("d1").unwrap().etag(), "\"0.0\"");
    }

    #[test]
    fn twins_go_with_their_device() {
        let (_d, reg) = registry();
        reg.patch_twin(
            "d1",
            TwinSection::Desired,
            &json!({"a": 1}),
            None,
            TwinLimits::default(),
        )
        .unwrap();
        reg.delete_device("t", "d1").unwrap();
        reg.register_device("t", DeviceRegistration::new("d1"))
            .unwrap();
        assert_eq!(reg.twin("d1").unwrap().desired.version, 0);
    }
}
