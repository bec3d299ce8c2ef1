//! Device models: telemetry schema (fields with type, unit, range), commands and
//! configuration parameters.

use std::collections::HashSet;

use redb::ReadableTable;

use crate::error::{RegistryError, Result};
use crate::model::{
    DeviceModel, Page, PageRequest, ParameterDef, RegistryEvent, TelemetryField, ValueKind,
};
use crate::registry::Registry;
use crate::store::{self, MODELS};
use crate::validate::{validate_id, validate_text};

/// Most fields, commands or configuration parameters in one model.
pub const MAX_MODEL_ITEMS: usize = 1024;

fn check_range(what: &str, name: &str, min: Option<f64>, max: Option<f64>) -> Result<()> {
    let bad = |v: Option<f64>| v.is_some_and(|x| !x.is_finite());
    if bad(min) || bad(max) {
        return Err(RegistryError::invalid(format!(
            "{what} '{name}': min/max must be finite numbers"
        )));
    }
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        return Err(RegistryError::invalid(format!(
            "{what} '{name}': min {lo} is greater than max {hi}"
        )));
    }
    Ok(())
}

fn check_unique<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = HashSet::new();
    let mut count = 0usize;
    for n in names {
        count += 1;
        validate_id(what, n)?;
        if !seen.insert(n) {
            return Err(RegistryError::invalid(format!("duplicate {what} '{n}'")));
        }
    }
    if count > MAX_MODEL_ITEMS {
        return Err(RegistryError::invalid(format!(
            "at most {MAX_MODEL_ITEMS} entries of {what} per model"
        )));
    }
    Ok(())
}

fn check_params(what: &str, params: &[ParameterDef]) -> Result<()> {
    check_unique(what, params.iter().map(|p| p.name.as_str()))?;
    for p in params {
        check_range(what, &p.name, p.min, p.max)?;
    }
    Ok(())
}

/// The name the telemetry validator reserves for its flags (see `ValidationPolicy::Flag`).
pub const FLAG_FIELD: &str = "_invalid";

/// A field may not be the flag field, and only numeric fields take a range.
fn check_field(f: &TelemetryField) -> Result<()> {
    if f.name == FLAG_FIELD {
        return Err(RegistryError::invalid(format!(
            "field name '{FLAG_FIELD}' is reserved for validation flags"
        )));
    }
    let numeric = matches!(
        f.kind,
        ValueKind::Float | ValueKind::Integer | ValueKind::Unsigned
    );
    if !numeric && (f.min.is_some() || f.max.is_some()) {
        return Err(RegistryError::invalid(format!(
            "field '{}': min/max apply only to numeric types",
            f.name
        )));
    }
    Ok(())
}

/// Validates a model: ids, unique names, finite and ordered ranges.
pub(crate) fn validate_model(m: &DeviceModel) -> Result<()> {
    validate_id("model id", &m.id)?;
    for text in [&m.name, &m.description].into_iter().flatten() {
        validate_text("model text", text)?;
    }
    check_unique("field name", m.fields.iter().map(|f| f.name.as_str()))?;
    for f in &m.fields {
        check_range("field", &f.name, f.min, f.max)?;
        check_field(f)?;
    }
    check_unique("command name", m.commands.iter().map(|c| c.name.as_str()))?;
    for c in &m.commands {
        check_params("command parameter", &c.parameters)?;
    }
    check_params("configuration parameter", &m.config)
}

impl Registry {
    /// Creates a device model. `AlreadyExists` if the id is taken. Publishes
    /// [`RegistryEvent::ModelChanged`].
    pub fn create_model(&self, actor: &str, model: DeviceModel) -> Result<DeviceModel> {
        let created = self.audited(actor, "model.create", &model.id, |txn| {
            validate_model(&model)?;
            let mut t = txn.open_table(MODELS)?;
            if t.get(model.id.as_str())?.is_some() {
                return Err(RegistryError::exists("model", model.id.clone()));
            }
            store::put_json(&mut t, &model.id, &model)?;
            Ok(model.clone())
        })?;
        self.model_changed(&created.id);
        Ok(created)
    }

    /// Creates or replaces a device model. Publishes [`RegistryEvent::ModelChanged`].
    pub fn put_model(&self, actor: &str, model: DeviceModel) -> Result<DeviceModel> {
        let stored = self.audited(actor, "model.put", &model.id, |txn| {
            validate_model(&model)?;
            let mut t = txn.open_table(MODELS)?;
            store::put_json(&mut t, &model.id, &model)?;
            Ok(model.clone())
        })?;
        self.model_changed(&stored.id);
        Ok(stored)
    }

    fn model_changed(&self, id: &str) {
        self.inner.publish(RegistryEvent::ModelChanged {
            model_id: id.to_owned(),
        });
    }

    /// One device model.
    pub fn get_model(&self, id: &str) -> Result<DeviceModel> {
        let txn = self.inner.read_txn()?;
        let t = txn.open_table(MODELS)?;
        store::get_json(&t, id)?.ok_or_else(|| RegistryError::not_found("model", id))
    }

    /// Deletes a device model (devices keep referring to its id). Publishes
    /// [`RegistryEvent::ModelChanged`].
    pub fn delete_model(&self, actor: &str, id: &str) -> Result<()> {
        self.audited(actor, "model.delete", id, |txn| {
            let mut t = txn.open_table(MODELS)?;
            match t.remove(id)? {
                Some(_) => Ok(()),
                None => Err(RegistryError::not_found("model", id)),
            }
        })?;
        self.model_changed(id);
        Ok(())
    }

    /// Lists device models ordered by id.
    pub fn list_models(&self, page: &PageRequest) -> Result<Page<DeviceModel>> {
        let txn = self.inner.read_txn()?;
        let t = txn.open_table(MODELS)?;
        store::list_page(&t, page, |_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ValidationPolicy;

    fn field(name: &str, kind: ValueKind, max: Option<f64>) -> TelemetryField {
        TelemetryField {
            name: name.into(),
            kind,
            unit: None,
            min: None,
            max,
            required: false,
            description: None,
        }
    }

    fn model(fields: Vec<TelemetryField>) -> DeviceModel {
        DeviceModel {
            id: "m".into(),
            name: None,
            description: None,
            fields,
            validation: ValidationPolicy::Flag,
            commands: vec![],
            config: vec![],
        }
    }

    #[test]
    fn schema_rules_and_change_events() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("r.redb")).unwrap();
        let events = reg.subscribe();
        let bad = reg.create_model("a", model(vec![field(FLAG_FIELD, ValueKind::String, None)]));
        assert!(matches!(bad, Err(RegistryError::Invalid(m)) if m.contains("reserved")));
        let bad = reg.create_model("a", model(vec![field("on", ValueKind::Boolean, Some(1.0))]));
        assert!(matches!(bad, Err(RegistryError::Invalid(m)) if m.contains("numeric")));
        assert!(events.try_recv().is_err(), "refused models publish nothing");
        let m = model(vec![field("t", ValueKind::Float, Some(1.0))]);
        assert_eq!(reg.create_model("a", m.clone()).unwrap(), m);
        assert_eq!(
            reg.get_model("m").unwrap().validation,
            ValidationPolicy::Flag
        );
        reg.delete_model("a", "m").unwrap();
        for _ in 0..2 {
            assert_eq!(
                events.try_recv().unwrap(),
                RegistryEvent::ModelChanged {
                    model_id: "m".into()
                }
            );
        }
    }
}
