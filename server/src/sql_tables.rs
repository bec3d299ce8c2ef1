//! The registry as SQL tables: `devices`, `entities`, `device_entities` (one row per device
//! and each of its ancestor entities, for joins such as "average speed per fleet") and `twins`
//! (one row per device: desired and reported properties, their versions, and the desired
//! properties the device has not reported yet). Each is a [`SnapshotSource`] read from
//! [`Registry::devices_snapshot`] / [`Registry::entities_snapshot`] /
//! [`Registry::twins_snapshot`] when a query uses it (the registry has no cheap change counter, so every query sees the
//! committed state). Column shapes are documented in `docs/sql.md`.

use std::sync::Arc;

use strata_query::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use strata_query::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use strata_query::{QueryEngine, SnapshotSource};
use strata_registry::{DeviceRow, EntityRow, Registry, Twin};

/// Registers the registry tables in `query`.
pub fn register(query: &QueryEngine, registry: &Arc<Registry>) {
    for table in [
        Table::Devices,
        Table::Entities,
        Table::DeviceEntities,
        Table::Twins,
    ] {
        let source = RegistryTable {
            registry: registry.clone(),
            table,
            schema: table.schema(),
        };
        query.register_snapshot_table(table.name(), Arc::new(source));
    }
}

/// Which registry table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Devices,
    Entities,
    DeviceEntities,
    Twins,
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Devices => "devices",
            Table::Entities => "entities",
            Table::DeviceEntities => "device_entities",
            Table::Twins => "twins",
        }
    }

    fn schema(self) -> SchemaRef {
        let fields = match self {
            Table::Devices => vec![
                utf8("id", false),
                utf8("status", false),
                Field::new("enabled", DataType::Boolean, false),
                utf8("model", true),
                utf8("attributes", false),
                utf8("tags", false),
                utf8("location", true),
                utf8("path", true),
                utf8("paths", false),
                Field::new("created", ts_type(), false),
                Field::new("updated", ts_type(), false),
                Field::new("last_seen", ts_type(), true),
            ],
            Table::Entities => vec![
                utf8("id", false),
                utf8("kind", false),
                utf8("name", false),
                utf8("attributes", false),
                utf8("parent", true),
                utf8("parents", false),
                utf8("path", true),
                utf8("paths", false),
                Field::new("created", ts_type(), false),
                Field::new("updated", ts_type(), false),
            ],
            Table::DeviceEntities => vec![utf8("device", false), utf8("entity", false)],
            Table::Twins => vec![
                utf8("device", false),
                utf8("desired", false),
                utf8("reported", false),
                Field::new("desired_version", DataType::Int64, false),
                Field::new("reported_version", DataType::Int64, false),
                utf8("delta", false),
                utf8("etag", false),
                Field::new("desired_updated", ts_type(), true),
                Field::new("reported_updated", ts_type(), true),
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

/// One registry table as a snapshot source.
struct RegistryTable {
    registry: Arc<Registry>,
    table: Table,
    schema: SchemaRef,
}

impl std::fmt::Debug for RegistryTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryTable")
            .field("table", &self.table)
            .finish()
    }
}

impl SnapshotSource for RegistryTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn snapshot(&self) -> Result<Vec<RecordBatch>, String> {
        let columns = match self.table {
            Table::Devices => device_columns(
                &self
                    .registry
                    .devices_snapshot()
                    .map_err(|e| e.to_string())?,
            ),
            Table::Entities => entity_columns(
                &self
                    .registry
                    .entities_snapshot()
                    .map_err(|e| e.to_string())?,
            ),
            Table::DeviceEntities => membership_columns(
                &self
                    .registry
                    .devices_snapshot()
                    .map_err(|e| e.to_string())?,
            ),
            Table::Twins => {
                twin_columns(&self.registry.twins_snapshot().map_err(|e| e.to_string())?)
            }
        };
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())?;
        Ok(vec![batch])
    }
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn times(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(
        values
            .collect::<TimestampNanosecondArray>()
            .with_timezone("UTC"),
    )
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn device_columns(rows: &[DeviceRow]) -> Vec<ArrayRef> {
    let tags: Vec<String> = rows.iter().map(|r| json_list(&r.tags)).collect();
    let paths: Vec<String> = rows.iter().map(|r| json_list(&r.paths)).collect();
    vec![
        strings(rows.iter().map(|r| Some(r.id.as_str()))),
        strings(
            rows.iter()
                .map(|r| Some(if r.enabled { "enabled" } else { "disabled" })),
        ),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.enabled))
                .collect::<BooleanArray>(),
        ),
        strings(rows.iter().map(|r| r.model.as_deref())),
        strings(rows.iter().map(|r| Some(r.attributes.as_str()))),
        strings(tags.iter().map(|t| Some(t.as_str()))),
        strings(rows.iter().map(|r| r.location.as_deref())),
        strings(rows.iter().map(|r| r.paths.first().map(String::as_str))),
        strings(paths.iter().map(|p| Some(p.as_str()))),
        times(rows.iter().map(|r| Some(r.created_ns))),
        times(rows.iter().map(|r| Some(r.updated_ns))),
        times(rows.iter().map(|r| r.last_seen_ns)),
    ]
}

fn entity_columns(rows: &[EntityRow]) -> Vec<ArrayRef> {
    let parents: Vec<String> = rows.iter().map(|r| json_list(&r.parents)).collect();
    let paths: Vec<String> = rows.iter().map(|r| json_list(&r.paths)).collect();
    vec![
        strings(rows.iter().map(|r| Some(r.id.as_str()))),
        strings(rows.iter().map(|r| Some(r.kind.as_str()))),
        strings(rows.iter().map(|r| Some(r.name.as_str()))),
        strings(rows.iter().map(|r| Some(r.attributes.as_str()))),
        strings(rows.iter().map(|r| r.parents.first().map(String::as_str))),
        strings(parents.iter().map(|p| Some(p.as_str()))),
        strings(rows.iter().map(|r| r.paths.first().map(String::as_str))),
        strings(paths.iter().map(|p| Some(p.as_str()))),
        times(rows.iter().map(|r| Some(r.created_ns))),
        times(rows.iter().map(|r| Some(r.updated_ns))),
    ]
}

fn membership_columns(rows: &[DeviceRow]) -> Vec<ArrayRef> {
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .flat_map(|r| r.ancestors.iter().map(move |a| (r.id.as_str(), a.as_str())))
        .collect();
    vec![
        strings(pairs.iter().map(|(d, _)| Some(*d))),
        strings(pairs.iter().map(|(_, e)| Some(*e))),
    ]
}

fn twin_columns(rows: &[Twin]) -> Vec<ArrayRef> {
    let json = |m: &serde_json::Map<String, serde_json::Value>| {
        serde_json::Value::Object(m.clone()).to_string()
    };
    let desired: Vec<String> = rows.iter().map(|t| json(&t.desired.properties)).collect();
    let reported: Vec<String> = rows.iter().map(|t| json(&t.reported.properties)).collect();
    let delta: Vec<String> = rows.iter().map(|t| json(&t.delta())).collect();
    let etags: Vec<String> = rows.iter().map(Twin::etag).collect();
    let version = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    vec![
        strings(rows.iter().map(|t| Some(t.device.as_str()))),
        strings(desired.iter().map(|s| Some(s.as_str()))),
        strings(reported.iter().map(|s| Some(s.as_str()))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|t| version(t.desired.version)),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|t| version(t.reported.version)),
        )),
        strings(delta.iter().map(|s| Some(s.as_str()))),
        strings(etags.iter().map(|s| Some(s.as_str()))),
        times(rows.iter().map(|t| t.desired.updated_ns)),
        times(rows.iter().map(|t| t.reported.updated_ns)),
    ]
}
