//! Device-model schemas for telemetry validation, looked up in the registry and cached per
//! device so a publish does not read `registry.redb`. The cache is invalidated by registry
//! events: a device's model changed or the device was deleted drops its entry, any model change
//! (create, replace, delete) drops every entry. Devices the registry does not hold are remembered
//! apart, as of the registry's write generation: any committed registry write (a registration
//! among them) makes them all stale, so a device written to before it is registered is checked
//! against its model as soon as it is registered. At most [`MAX_UNKNOWN_DEVICES`] are remembered
//! (the set starts over when full), since anyone who may write can name any number of them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use strata_ingest::validate::{FieldKind, FieldRule, Policy, Schema, SchemaSource};
use strata_registry::{DeviceModel, Registry, RegistryEvent, ValidationPolicy, ValueKind};

/// Most unregistered devices remembered: about 10 MB. A flood of invented device names costs a
/// registry read per device past it, never memory.
pub const MAX_UNKNOWN_DEVICES: usize = 100_000;

/// What the registry said about one device.
#[derive(Debug, Clone)]
enum Loaded {
    /// The device is registered; its schema, if its model has one.
    Known(Option<Arc<Schema>>),
    /// The registry did not hold the device.
    Unknown,
}

/// Devices the registry did not hold at one write generation.
#[derive(Debug, Default)]
struct UnknownDevices {
    generation: u64,
    devices: HashSet<String>,
}

impl UnknownDevices {
    /// Whether `device` was unknown at `generation` (the registry's current one).
    fn holds(&self, device: &str, generation: u64) -> bool {
        self.generation == generation && self.devices.contains(device)
    }

    /// Remembers `device` as unknown at `generation`: a newer generation starts the set over, an
    /// older one is not recorded, and a full set starts over.
    fn insert(&mut self, device: &str, generation: u64) {
        if generation < self.generation {
            return;
        }
        if generation > self.generation || self.devices.len() >= MAX_UNKNOWN_DEVICES {
            self.devices.clear();
            self.generation = generation;
        }
        self.devices.insert(device.to_owned());
    }
}

/// Per-device cache of model schemas, backed by the registry.
pub struct ModelSchemas {
    registry: Arc<Registry>,
    cache: RwLock<HashMap<String, Option<Arc<Schema>>>>,
    unknown: RwLock<UnknownDevices>,
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
            unknown: RwLock::new(UnknownDevices::default()),
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

    /// Unregistered devices remembered (for tests).
    #[cfg(test)]
    fn unknown_count(&self) -> usize {
        self.unknown.read().map_or(0, |u| u.devices.len())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Option<Arc<Schema>>>> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Option<Arc<Schema>>>> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the device's model from the registry. `Err` when the registry fails (not cached
    /// then).
    fn load(&self, device: &str) -> Result<Loaded, strata_registry::RegistryError> {
        let model_id = match self.registry.get_device(device) {
            Ok(d) => d.model,
            Err(strata_registry::RegistryError::NotFound { .. }) => {
                return Ok(Loaded::Unknown);
            }
            Err(e) => return Err(e),
        };
        let Some(model_id) = model_id else {
            return Ok(Loaded::Known(None));
        };
        match self.registry.get_model(&model_id) {
            Ok(model) => Ok(Loaded::Known(schema_of(&model).map(Arc::new))),
            Err(strata_registry::RegistryError::NotFound { .. }) => Ok(Loaded::Known(None)),
            Err(e) => Err(e),
        }
    }
}

impl SchemaSource for ModelSchemas {
    fn schema(&self, device: &str) -> Option<Arc<Schema>> {
        let registry_generation = self.registry.write_generation();
        if let Some(hit) = self.read().get(device) {
            return hit.clone();
        }
        let unknown = |u: &UnknownDevices| u.holds(device, registry_generation);
        if self.unknown.read().is_ok_and(|u| unknown(&u)) {
            return None;
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let loaded = match self.load(device) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(device, error = %e, "no model schema for device");
                return None;
            }
        };
        match loaded {
            Loaded::Known(schema) => {
                let mut cache = self.write();
                if self.generation.load(Ordering::SeqCst) == generation && generation != u64::MAX {
                    cache.insert(device.to_owned(), schema.clone());
                }
                schema
            }
            Loaded::Unknown => {
                if let Ok(mut u) = self.unknown.write() {
                    u.insert(device, registry_generation);
                }
                None
            }
        }
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
    fn unknown_devices_are_bounded_and_follow_the_generation() {
        let mut u = UnknownDevices::default();
        for i in 0..MAX_UNKNOWN_DEVICES {
            u.insert(&format!("d{i}"), 0);
        }
        assert!(u.holds("d0", 0) && u.devices.len() == MAX_UNKNOWN_DEVICES);
        u.insert("one-more", 0);
        assert_eq!(u.devices.len(), 1, "a full set starts over");
        assert!(u.holds("one-more", 0) && !u.holds("d0", 0));
        assert!(!u.holds("one-more", 1), "stale once the registry changed");
        u.insert("newer", 2);
        assert!(
            u.holds("newer", 2) && !u.holds("one-more", 2),
            "a newer generation starts over"
        );
        u.insert("older", 1);
        assert!(
            !u.holds("older", 1) && !u.holds("older", 2),
            "an older answer is not kept"
        );
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
        assert_eq!(schemas.cached(), 2, "registered devices only");
        assert_eq!(
            schemas.unknown_count(),
            1,
            "the unknown one is remembered apart"
        );
        assert!(schemas.schema("nope").is_none(), "and answered from there");
        // Registering it (any registry write) makes that answer stale at once, no event needed.
        let mut r = DeviceRegistration::new("nope");
        r.model = Some("m".into());
        reg.register_device("t", r).unwrap();
        assert_eq!(
            schemas.schema("nope").map(|s| s.policy()),
            Some(Policy::Reject),
            "a device registered after a write checks against its model at once"
        );
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
