//! Public data types of the registry: devices, device models, entities, relationships,
//! API tokens, audit records, events, pagination and SQL snapshot rows.
//!
//! Every type derives `Serialize`/`Deserialize` so the HTTP layer can use them as JSON bodies
//! directly. Times are `i64` nanoseconds since the Unix epoch (UTC), like telemetry timestamps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Free-form JSON attributes of a device or entity (top-level keys → any JSON value).
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// Public view of a device: identity state (without any secret) joined with its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Device id, `[A-Za-z0-9._:-]{1,128}`.
    pub id: String,
    /// Whether the device may authenticate.
    pub enabled: bool,
    /// Id of the device model, if any (a reference; the model need not exist).
    pub model: Option<String>,
    /// Free-form JSON attributes.
    pub attributes: Attributes,
    /// Free-form location text (e.g. "site-1/building-7/floor-2" or "52.52,13.40").
    pub location: Option<String>,
    /// Tags, sorted and deduplicated.
    pub tags: Vec<String>,
    /// SHA-256 thumbprint (64 lowercase hex chars) of the device's X.509 client certificate.
    pub thumbprint: Option<String>,
    /// Creation time (ns since epoch).
    pub created_ns: i64,
    /// Last modification time (ns since epoch).
    pub updated_ns: i64,
    /// Last successful authentication (ns since epoch; second granularity, persisted lazily).
    pub last_seen_ns: Option<i64>,
}

/// Request to register one device (JSON body of `POST /api/v1/devices`, one item of a bulk call).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceRegistration {
    /// Device id, `[A-Za-z0-9._:-]{1,128}`.
    pub id: String,
    /// Model id (optional).
    #[serde(default)]
    pub model: Option<String>,
    /// Free-form JSON attributes (must be an object; `null`/absent means empty).
    #[serde(default, deserialize_with = "null_as_default")]
    pub attributes: Attributes,
    /// Free-form location text.
    #[serde(default)]
    pub location: Option<String>,
    /// Tags (`null`/absent means none).
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    /// Whether the device starts enabled (default `true`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Primary key to install instead of a generated one (16..=256 printable ASCII chars).
    #[serde(default)]
    pub primary_key: Option<String>,
    /// Secondary key to install instead of a generated one (16..=256 printable ASCII chars).
    #[serde(default)]
    pub secondary_key: Option<String>,
    /// X.509 client-certificate thumbprint (hex SHA-256; colons allowed, case-insensitive).
    #[serde(default)]
    pub thumbprint: Option<String>,
}

fn default_true() -> bool {
    true
}

/// Deserializes `null` as the type's default.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl DeviceRegistration {
    /// A registration with only an id (enabled, generated keys, no metadata).
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            enabled: true,
            ..Self::default()
        }
    }
}

/// A freshly registered device with its keys: the only time the keys are ever returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredDevice {
    /// The device as stored.
    #[serde(flatten)]
    pub device: Device,
    /// Primary symmetric key (generated: 64 lowercase hex chars = 256 bits).
    pub primary_key: String,
    /// Secondary symmetric key (generated: 64 lowercase hex chars = 256 bits).
    pub secondary_key: String,
}

/// Partial update of a device's metadata; absent (`None`) fields are left unchanged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceUpdate {
    /// New model id; `Some("")` clears it.
    #[serde(default)]
    pub model: Option<String>,
    /// Replaces all attributes.
    #[serde(default)]
    pub attributes: Option<Attributes>,
    /// New location; `Some("")` clears it.
    #[serde(default)]
    pub location: Option<String>,
    /// Replaces all tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// New certificate thumbprint; `Some("")` clears it.
    #[serde(default)]
    pub thumbprint: Option<String>,
}

/// Which of a device's two keys to rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySlot {
    /// The primary key only.
    Primary,
    /// The secondary key only.
    Secondary,
    /// Both keys.
    #[default]
    Both,
}

/// New keys produced by a rotation (only the rotated slots are set); shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotatedKeys {
    /// Device id.
    pub id: String,
    /// New primary key, when rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<String>,
    /// New secondary key, when rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
}

/// Result of one item of a bulk registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BulkItemResult {
    /// The device was created; its keys are shown once.
    Created(RegisteredDevice),
    /// A device with this id and identical metadata exists: nothing changed (idempotent repeat).
    Exists {
        /// Device id.
        id: String,
    },
    /// This item failed (bad input, or the id exists with different metadata).
    Error {
        /// Device id as given (may be empty or invalid).
        id: String,
        /// Human-readable reason.
        error: String,
    },
}

impl BulkItemResult {
    /// The device id this result is about.
    pub fn id(&self) -> &str {
        match self {
            Self::Created(d) => &d.device.id,
            Self::Exists { id } | Self::Error { id, .. } => id,
        }
    }
}

/// Filter for [`crate::Registry::list_devices`]; all set conditions must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceFilter {
    /// Only devices of this model.
    #[serde(default)]
    pub model: Option<String>,
    /// Only enabled (`true`) or disabled (`false`) devices.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Only devices carrying this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Top-level attribute equality conditions (`attributes[key] == value`).
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Only devices under this entity through the hierarchy (transitive).
    #[serde(default)]
    pub under: Option<String>,
}

/// Cursor pagination request: items with id strictly greater than `after`, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PageRequest {
    /// Exclusive lower bound (the `next_after` of the previous page).
    #[serde(default)]
    pub after: Option<String>,
    /// Maximum number of items; `0` means the default (100); capped at [`crate::MAX_PAGE_LIMIT`].
    #[serde(default)]
    pub limit: usize,
}

impl PageRequest {
    /// First page with the given limit.
    pub fn first(limit: usize) -> Self {
        Self { after: None, limit }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, ordered by id.
    pub items: Vec<T>,
    /// Cursor for the next page (`after`), `None` when this is the last page.
    pub next_after: Option<String>,
}

/// Value type of a telemetry field or parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// 64-bit float.
    Float,
    /// Signed 64-bit integer.
    Integer,
    /// Unsigned 64-bit integer.
    Unsigned,
    /// Boolean.
    Boolean,
    /// UTF-8 string.
    String,
}

/// One telemetry field of a device model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryField {
    /// Field name (`[A-Za-z0-9._:-]{1,128}`).
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub kind: ValueKind,
    /// Unit (e.g. "°C", "kWh").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Lowest allowed value (numeric types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Highest allowed value (numeric types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Every telemetry record of a device of this model must carry the field (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What the device endpoints (MQTT, HTTP device API) do with telemetry that violates the
/// device's model: an undeclared field, a wrong type, a value outside `[min, max]`, a missing
/// required field. Models without telemetry fields are never checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationPolicy {
    /// Refuse the whole message, naming the field and the reason (the default).
    #[default]
    Reject,
    /// Store the message; each offending row gets the reason in the string field `_invalid`.
    Flag,
    /// Do not check.
    Off,
}

/// A parameter of a command, or a configuration parameter of a device model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterDef {
    /// Parameter name (`[A-Za-z0-9._:-]{1,128}`).
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub kind: ValueKind,
    /// Unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Lowest allowed value (numeric types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Highest allowed value (numeric types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Default value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A command a device of this model accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandDef {
    /// Command name (`[A-Za-z0-9._:-]{1,128}`).
    pub name: String,
    /// Parameters of the command.
    #[serde(default)]
    pub parameters: Vec<ParameterDef>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A device model: telemetry schema, commands and configuration parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceModel {
    /// Model id (`[A-Za-z0-9._:-]{1,128}`).
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Telemetry fields (unique names).
    #[serde(default)]
    pub fields: Vec<TelemetryField>,
    /// What happens to telemetry that violates `fields` (default `reject`).
    #[serde(default)]
    pub validation: ValidationPolicy,
    /// Commands (unique names).
    #[serde(default)]
    pub commands: Vec<CommandDef>,
    /// Configuration parameters (unique names).
    #[serde(default)]
    pub config: Vec<ParameterDef>,
}

/// Request to create an entity.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EntitySpec {
    /// Entity id (`[A-Za-z0-9._:-]{1,128}`; its own namespace, separate from device ids).
    pub id: String,
    /// Kind (`[A-Za-z0-9_-]{1,64}`), e.g. "site", "building", "floor", "room", "fleet", "vehicle".
    pub kind: String,
    /// Display name (defaults to the id).
    #[serde(default)]
    pub name: Option<String>,
    /// Free-form JSON attributes (`null`/absent means empty).
    #[serde(default, deserialize_with = "null_as_default")]
    pub attributes: Attributes,
}

/// Partial update of an entity; absent fields are left unchanged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EntityUpdate {
    /// New kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Replaces all attributes.
    #[serde(default)]
    pub attributes: Option<Attributes>,
}

/// A stored entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Entity id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Display name.
    pub name: String,
    /// Free-form JSON attributes.
    pub attributes: Attributes,
    /// Creation time (ns since epoch).
    pub created_ns: i64,
    /// Last modification time (ns since epoch).
    pub updated_ns: i64,
}

/// A node of the topology graph: an entity or a device. JSON: `{"entity": "b1"}` / `{"device": "d1"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRef {
    /// An entity id.
    Entity(String),
    /// A device id.
    Device(String),
}

impl NodeRef {
    /// The id inside.
    pub fn id(&self) -> &str {
        match self {
            Self::Entity(id) | Self::Device(id) => id,
        }
    }
}

/// Type of a relationship. Serialized as a plain string.
///
/// `contains` (source is the parent of target) and `member_of` (source is a child of target)
/// form the hierarchy that "everything under X" follows; any other kind is a custom,
/// non-hierarchical link (`[a-z0-9_-]{1,64}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum RelationKind {
    /// Source contains target (site contains building, room contains device).
    Contains,
    /// Source is a member of target (vehicle member_of fleet).
    MemberOf,
    /// Any other named link, not followed by hierarchy queries.
    Custom(String),
}

impl RelationKind {
    /// The string form.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Contains => "contains",
            Self::MemberOf => "member_of",
            Self::Custom(s) => s,
        }
    }
}

impl From<String> for RelationKind {
    fn from(s: String) -> Self {
        match s.as_str() {
            "contains" => Self::Contains,
            "member_of" => Self::MemberOf,
            _ => Self::Custom(s),
        }
    }
}

impl From<RelationKind> for String {
    fn from(k: RelationKind) -> Self {
        match k {
            RelationKind::Custom(s) => s,
            other => other.as_str().to_string(),
        }
    }
}

/// A typed, directed relationship `source --kind--> target`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Relationship {
    /// Source node.
    pub source: NodeRef,
    /// Relationship type.
    pub kind: RelationKind,
    /// Target node.
    pub target: NodeRef,
}

/// Everything reachable below a node through `contains`/`member_of` links (the node excluded).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Descendants {
    /// Entity ids, sorted.
    pub entities: Vec<String>,
    /// Device ids, sorted.
    pub devices: Vec<String>,
}

/// Scope of an API token. Scopes are hierarchical: `admin` ⊇ `write` ⊇ `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Query data and read the registry.
    Read,
    /// Write telemetry (and read).
    Write,
    /// Administer the registry, tokens and streams (and write, read).
    Admin,
}

/// Request to create an API token.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NewToken {
    /// Display name (defaults to "token").
    #[serde(default)]
    pub name: Option<String>,
    /// Granted scopes (at least one).
    pub scopes: Vec<Scope>,
    /// When set, the token is limited to these entries: `db` (every stream of database `db`)
    /// or `db/stream` (that one stream). See `docs/security.md`.
    #[serde(default)]
    pub streams: Option<Vec<String>>,
}

/// Public description of an API token (never contains the secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Token id (the `<id>` part of `strata_<id>_<secret>`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Granted scopes, sorted.
    pub scopes: Vec<Scope>,
    /// Limits: `db` or `db/stream` entries the token is confined to (`None` = all).
    pub streams: Option<Vec<String>>,
    /// Who created it.
    pub created_by: String,
    /// Creation time (ns since epoch).
    pub created_ns: i64,
    /// Revocation time, when revoked.
    pub revoked_ns: Option<i64>,
}

/// A created token: its description plus the secret, shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The full bearer token `strata_<id>_<secret>`.
    pub token: String,
    /// Its description.
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// One audit-log record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number (strictly increasing; the pagination cursor).
    pub seq: u64,
    /// Time (ns since epoch).
    pub time_ns: i64,
    /// Who did it (token id, "cli", "system", ...).
    pub actor: String,
    /// What was done, e.g. "device.register", "token.revoke".
    pub action: String,
    /// What it was done to (device id, token id, ...).
    pub target: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// Error message when it failed, or a short detail (e.g. bulk counts).
    pub detail: Option<String>,
}

/// Event published after a security-relevant change, so open connections can be closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RegistryEvent {
    /// The device was disabled: drop its connections.
    DeviceDisabled {
        /// Device id.
        device_id: String,
    },
    /// The device was enabled.
    DeviceEnabled {
        /// Device id.
        device_id: String,
    },
    /// Some of the device's keys were replaced: drop connections authenticated with old keys.
    KeysRotated {
        /// Device id.
        device_id: String,
        /// Which keys changed.
        slot: KeySlot,
    },
    /// The device was deleted: drop its connections.
    DeviceDeleted {
        /// Device id.
        device_id: String,
    },
    /// The device's certificate thumbprint was changed or cleared: drop connections that
    /// authenticated with a client certificate.
    ThumbprintChanged {
        /// Device id.
        device_id: String,
    },
    /// An API token was revoked.
    TokenRevoked {
        /// Token id.
        token_id: String,
    },
    /// The device's model was set, changed or cleared.
    DeviceModelChanged {
        /// Device id.
        device_id: String,
    },
    /// A device model was created, replaced or deleted.
    ModelChanged {
        /// Model id.
        model_id: String,
    },
}

impl RegistryEvent {
    /// The device concerned, if the event is about a device.
    pub fn device_id(&self) -> Option<&str> {
        match self {
            Self::DeviceDisabled { device_id }
            | Self::DeviceEnabled { device_id }
            | Self::KeysRotated { device_id, .. }
            | Self::DeviceDeleted { device_id }
            | Self::ThumbprintChanged { device_id }
            | Self::DeviceModelChanged { device_id } => Some(device_id),
            Self::TokenRevoked { .. } | Self::ModelChanged { .. } => None,
        }
    }
}

/// One row of the SQL `devices` table ([`crate::Registry::devices_snapshot`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRow {
    /// Device id.
    pub id: String,
    /// Enabled flag.
    pub enabled: bool,
    /// Model id.
    pub model: Option<String>,
    /// Attributes as a JSON object text.
    pub attributes: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Location text.
    pub location: Option<String>,
    /// Creation time (ns).
    pub created_ns: i64,
    /// Last modification (ns).
    pub updated_ns: i64,
    /// Last authentication (ns).
    pub last_seen_ns: Option<i64>,
    /// Every ancestor entity id (transitive, all parents), sorted.
    pub ancestors: Vec<String>,
    /// Ancestor paths, each root-first and ending at a direct parent entity, joined with '/'
    /// (e.g. "site-1/b-7/floor-2/room-3"); at most [`crate::MAX_PATHS`] paths.
    pub paths: Vec<String>,
}

/// One row of the SQL `entities` table ([`crate::Registry::entities_snapshot`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityRow {
    /// Entity id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Display name.
    pub name: String,
    /// Attributes as a JSON object text.
    pub attributes: String,
    /// Direct parent entity ids, sorted.
    pub parents: Vec<String>,
    /// Every ancestor entity id, sorted.
    pub ancestors: Vec<String>,
    /// Ancestor paths (root-first, '/'-joined), at most [`crate::MAX_PATHS`].
    pub paths: Vec<String>,
    /// Creation time (ns).
    pub created_ns: i64,
    /// Last modification (ns).
    pub updated_ns: i64,
}
