//! Device-model schemas for telemetry validation, looked up in the registry and cached per
//! device so a publish does not read `registry.redb`. The cache is invalidated by registry
//! events: a device's model changed or the device was deleted drops its entry, any model change
//! (create, replace, delete) drops every entry. MQTT and the HTTP device API share one
//! [`ModelSchemas`]; the checks themselves are `strata_ingest::validate`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use strata_ingest::validate::{FieldKind, FieldRule, Policy, Schema, SchemaSource};
use strata_registry::{DeviceModel, Registry, RegistryEvent, ValidationPolicy, ValueKind};

/// Per-device cache of model schemas, backed by the registry.
pub struct ModelSchemas {
    registry: Arc<Registry>,
    cache: RwLock<HashMap<String, Option<Arc<Schema>>>>,
    /// Bumped by every invalidation, so a lookup racing with one does not cache a stale answer.
    generation: AtomicU64,
}

impl std::fmt::Debug for ModelSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSchemas")
            .field("cached", &self.read().len())
            .finish_non_exhaustive()
    }
}

impl ModelSchemas {
    /// A cache over `registry`, with a background thread that applies its events.
    pub fn new(registry: Arc<Registry>) -> Arc<Self> {
        let schemas = Arc::new(ModelSchemas {
            registry: registry.clone(),
            cache: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        });
        let events = registry.subscribe();
        let weak: Weak<ModelSchemas> = Arc::downgrade(&schemas);
        let spawned = std::thread::Builder::new()
            .name("strata-model-schemas".into())
            .spawn(move || {
                for event in events {
                    let Some(schemas) = weak.upgrade() else {
                        return;
                    };
                    schemas.on_event(&event);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot watch registry events; model schemas are not cached");
            schemas.generation.store(u64::MAX, Ordering::SeqCst);
        }
        schemas
    }

    /// Applies one registry event to the cache.
    pub fn on_event(&self, event: &RegistryEvent) {
        match event {
            RegistryEvent::ModelChanged { .. } => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.write().clear();
            }
            RegistryEvent::DeviceModelChanged { device_id }
            | RegistryEvent::DeviceDeleted { device_id } => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.write().remove(device_id);
            }
            _ => {}
        }
    }

    /// Devices with a cached answer (for tests).
    #[cfg(test)]
    pub fn cached(&self) -> usize {
        self.read().len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Option<Arc<Schema>>>> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Option<Arc<Schema>>>> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the device's model from the registry. `Err` when the device is unknown or the
    /// registry fails (not cached then).
    fn load(&self, device: &str) -> Result<Option<Arc<Schema>>, strata_registry::RegistryError> {
        let Some(model_id) = self.registry.get_device(device)?.model else {
            return Ok(None);
        };
        match self.registry.get_model(&model_id) {
            Ok(model) => Ok(schema_of(&model).map(Arc::new)),
            Err(strata_registry::RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl SchemaSource for ModelSchemas {
    fn schema(&self, device: &str) -> Option<Arc<Schema>> {
        if let Some(hit) = self.read().get(device) {
            return hit.clone();
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let loaded = match self.load(device) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(device, error = %e, "no model schema for device");
                return None;
            }
        };
        let mut cache = self.write();
        if self.generation.load(Ordering::SeqCst) == generation && generation != u64::MAX {
            cache.insert(device.to_owned(), loaded.clone());
        }
        loaded
    }
}

/// The validation schema of a model: `None` when it declares no telemetry fields or its policy
/// is `off`.
pub fn schema_of(model: &DeviceModel) -> Option<Schema> {
    let policy = match model.validation {
        ValidationPolicy::Off => return None,
        ValidationPolicy::Reject => Policy::Reject,
        ValidationPolicy::Flag => Policy::Flag,
    };
    if model.fields.is_empty() {
        return None;
    }
    let rules = model
        .fields
        .iter()
        .map(|f| FieldRule {
            name: f.name.clone(),
            kind: kind_of(f.kind),
            min: f.min,
            max: f.max,
            required: f.required,
        })
        .collect();
    Some(Schema::new(model.id.clone(), policy, rules))
}

fn kind_of(k: ValueKind) -> FieldKind {
    match k {
        ValueKind::Float => FieldKind::Float,
        ValueKind::Integer => FieldKind::Integer,
        ValueKind::Unsigned => FieldKind::Unsigned,
        ValueKind::Boolean => FieldKind::Boolean,
        ValueKind::String => FieldKind::String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_registry::{DeviceRegistration, DeviceUpdate, TelemetryField};

    fn model(id: &str, max: f64, validation: ValidationPolicy) -> DeviceModel {
        DeviceModel {
            id: id.into(),
            name: None,
            description: None,
            fields: vec![TelemetryField {
                name: "t".into(),
                kind: ValueKind::Float,
                unit: None,
                min: None,
                max: Some(max),
                required: true,
                description: None,
            }],
            validation,
            commands: vec![],
            config: vec![],
        }
    }

    fn wait_until(f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "condition not met in 5 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn cache_follows_registry_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        let reg = Arc::new(Registry::open(&path).unwrap());
        reg.create_model("t", model("m", 10.0, ValidationPolicy::Reject))
            .unwrap();
        let mut r = DeviceRegistration::new("d1");
        r.model = Some("m".into());
        reg.register_device("t", r).unwrap();
        reg.register_device("t", DeviceRegistration::new("d2"))
            .unwrap();
        let schemas = ModelSchemas::new(reg.clone());
        let max = |s: &ModelSchemas| s.schema("d1").map(|s| (s.model().to_owned(), s.policy()));
        assert_eq!(max(&schemas), Some(("m".into(), Policy::Reject)));
        assert!(schemas.schema("d2").is_none());
        assert!(schemas.schema("nope").is_none());
        assert_eq!(schemas.cached(), 2, "unknown devices are not cached");
        let put = |p| reg.put_model("t", model("m", 10.0, p)).unwrap();
        put(ValidationPolicy::Flag);
        wait_until(|| max(&schemas) == Some(("m".into(), Policy::Flag)));
        put(ValidationPolicy::Off);
        wait_until(|| max(&schemas).is_none());
        put(ValidationPolicy::Reject);
        wait_until(|| max(&schemas) == Some(("m".into(), Policy::Reject)));
        let upd = DeviceUpdate {
            model: Some(String::new()),
            ..DeviceUpdate::default()
        };
        reg.update_device("t", "d1", upd).unwrap();
        wait_until(|| max(&schemas).is_none());
        reg.delete_model("t", "m").unwrap();
    }
}
