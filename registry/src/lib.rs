//! Strata device registry: identity store (device ids, enabled flag, salted key hashes,
//! certificate thumbprints), entity/topology store (device metadata, device models, entities,
//! typed relationships), API tokens, audit log, the device plane's durable state (command
//! inboxes, device twins, enrollment groups) and consistent snapshots for SQL.
//!
//! Everything is persisted in one `redb` file; the crate is plain synchronous Rust and
//! [`Registry`] is `Send + Sync` (share it behind an `Arc`). See `docs/registry.md`.
//!
//! ```no_run
//! use strata_registry::{DeviceRegistration, Registry};
//! let reg = Registry::open("/tmp/registry.redb")?;
//! let created = reg.register_device("admin", DeviceRegistration::new("sensor-1"))?;
//! reg.authenticate_device("sensor-1", &created.primary_key)?;
//! # Ok::<(), strata_registry::RegistryError>(())
//! ```

mod audit;
mod auth;
mod cache;
mod commands;
mod crypto;
pub mod csv;
mod devices;
mod enrollments;
mod entities;
mod error;
mod model;
mod models;
mod provision_batch;
mod registry;
mod snapshot;
mod store;
mod sync;
mod tokens;
mod topology;
mod twin_doc;
mod twins;
pub mod validate;

pub use commands::{
    COMMAND_RETENTION_NS, Command, CommandAck, CommandStatus, DEFAULT_COMMAND_MAX_ATTEMPTS,
    DEFAULT_COMMAND_QUEUE_DEPTH, DEFAULT_COMMAND_TTL_NS, MAX_COMMAND_PAYLOAD, MAX_COMMAND_TTL_NS,
    NewCommand, POLL_LEASE_NS, Poll,
};
pub use csv::{CsvRowError, parse_devices_csv};
pub use enrollments::{
    CreatedEnrollment, Enrollment, NewEnrollment, Provisioned, derive_device_key,
};
pub use error::{RegistryError, Result};
pub use model::*;
pub use provision_batch::{ProvisionCredential, ProvisionRequest};
pub use registry::{REGISTRY_FILE, Registry, RegistryOptions};
pub use store::ENV_ADMIN_TOKEN_ID;
pub use tokens::TOKEN_PREFIX;
pub use twin_doc::{MAX_TWIN_KEY, delta as twin_delta};
pub use twins::{
    DEFAULT_TWIN_MAX_BYTES, DEFAULT_TWIN_MAX_DEPTH, SectionState, Twin, TwinLimits, TwinSection,
};
pub use validate::validate_device_id;

/// Default page size when a [`PageRequest`] has `limit == 0`.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// Largest page size; larger limits are clamped.
pub const MAX_PAGE_LIMIT: usize = 10_000;
/// Most items accepted by one bulk registration call.
pub const MAX_BULK_ITEMS: usize = 100_000;
/// Most ancestor paths reported per device/entity in snapshots.
pub const MAX_PATHS: usize = 16;
