//! How a stream maps onto a SQL table: `time`, `device`, one Utf8 column per tag key, then the
//! fields. Names that collide (a tag or field called `time`, a field named like a tag) get a
//! `_tag` / `_field` suffix so no data becomes unreachable.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use strata_storage::FieldType;

/// Name of the time column.
pub const TIME_COLUMN: &str = "time";
/// Name of the device column.
pub const DEVICE_COLUMN: &str = "device";
/// Timezone of the time column.
pub const TIME_ZONE: &str = "UTC";

/// What a table column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    /// The point's timestamp.
    Time,
    /// The series' device id.
    Device,
    /// The value of this tag key (null for series without it).
    Tag(String),
    /// This field of the stream.
    Field(String, FieldType),
}

/// The SQL view of one stream.
#[derive(Debug, Clone)]
pub struct TableLayout {
    /// Database of the stream.
    pub database: String,
    /// Stream name.
    pub stream: String,
    /// Arrow schema of the table.
    pub schema: SchemaRef,
    /// What each schema column holds, by position.
    pub kinds: Vec<ColumnKind>,
}

/// The Arrow type of the time column.
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some(TIME_ZONE.into()))
}

/// The Arrow type of a field.
pub fn field_data_type(ty: FieldType) -> DataType {
    match ty {
        FieldType::Float => DataType::Float64,
        FieldType::Integer => DataType::Int64,
        FieldType::Unsigned => DataType::UInt64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::String => DataType::Utf8,
    }
}

impl TableLayout {
    /// Builds the layout from the tag keys and the fields of a stream.
    pub fn new(
        database: &str,
        stream: &str,
        tag_keys: &[String],
        fields: &[(String, FieldType)],
    ) -> TableLayout {
        let mut used: HashSet<String> = HashSet::new();
        let mut columns = vec![
            Field::new(TIME_COLUMN, time_type(), false),
            Field::new(DEVICE_COLUMN, DataType::Utf8, false),
        ];
        let mut kinds = vec![ColumnKind::Time, ColumnKind::Device];
        used.insert(TIME_COLUMN.into());
        used.insert(DEVICE_COLUMN.into());
        for key in tag_keys {
            let name = unique_name(&mut used, key, "_tag");
            columns.push(Field::new(name, DataType::Utf8, true));
            kinds.push(ColumnKind::Tag(key.clone()));
        }
        for (field, ty) in fields {
            let name = unique_name(&mut used, field, "_field");
            columns.push(Field::new(name, field_data_type(*ty), true));
            kinds.push(ColumnKind::Field(field.clone(), *ty));
        }
        TableLayout {
            database: database.to_string(),
            stream: stream.to_string(),
            schema: Arc::new(Schema::new(columns)),
            kinds,
        }
    }

    /// The kind of the column called `name`, if any.
    pub fn kind_of(&self, name: &str) -> Option<&ColumnKind> {
        let index = self.schema.index_of(name).ok()?;
        self.kinds.get(index)
    }
}

/// `base` if free, else `base` + `suffix`, else with a counter; records the chosen name.
fn unique_name(used: &mut HashSet<String>, base: &str, suffix: &str) -> String {
    let mut name = base.to_string();
    if used.contains(&name) {
        name = format!("{base}{suffix}");
        let mut n = 2u32;
        while used.contains(&name) {
            name = format!("{base}{suffix}{n}");
            n = n.saturating_add(1);
        }
    }
    used.insert(name.clone());
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_time_device_tags_fields() {
        let layout = TableLayout::new(
            "default",
            "readings",
            &["fleet".into(), "model".into()],
            &[
                ("speed".into(), FieldType::Float),
                ("ok".into(), FieldType::Boolean),
            ],
        );
        let names: Vec<&str> = layout
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["time", "device", "fleet", "model", "speed", "ok"]);
        assert_eq!(layout.schema.field(0).data_type(), &time_type());
        assert_eq!(layout.schema.field(5).data_type(), &DataType::Boolean);
        assert_eq!(
            layout.kind_of("fleet"),
            Some(&ColumnKind::Tag("fleet".into()))
        );
    }

    #[test]
    fn colliding_names_get_suffixes() {
        let layout = TableLayout::new(
            "db",
            "s",
            &["time".into(), "x".into()],
            &[
                ("x".into(), FieldType::Integer),
                ("device".into(), FieldType::String),
            ],
        );
        let names: Vec<&str> = layout
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            ["time", "device", "time_tag", "x", "x_field", "device_field"]
        );
        assert_eq!(
            layout.kind_of("x_field"),
            Some(&ColumnKind::Field("x".into(), FieldType::Integer))
        );
    }
}
