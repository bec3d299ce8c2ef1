//! Typed errors of the registry.

use thiserror::Error;

/// Result alias used throughout the registry.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Everything that can go wrong in a registry call.
///
/// HTTP mapping suggested for the server: `NotFound` → 404, `AlreadyExists` → 409,
/// `Invalid` → 400, `Unauthorized` → 401, `Forbidden` → 403, `TooLarge` → 413,
/// `PreconditionFailed` → 412, `Storage` → 500.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// The named object does not exist.
    #[error("{kind} '{id}' not found")]
    NotFound {
        /// What was looked up: "device", "entity", "model", "token", "relationship".
        kind: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// An object with this id exists already (and, for bulk registration, differs).
    #[error("{kind} '{id}' already exists")]
    AlreadyExists {
        /// What was created: "device", "entity", "model", "relationship".
        kind: &'static str,
        /// The id that exists.
        id: String,
    },
    /// The request is malformed: bad id, bad JSON shape, limits exceeded...
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Credentials are missing, unknown, wrong, revoked or belong to a disabled device.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Credentials are valid but do not grant the requested scope or resource.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request conflicts with the object's state (e.g. cancelling a finished command).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The object would exceed its size limit (e.g. a twin section above 32 KiB).
    #[error("too large: {0}")]
    TooLarge(String),
    /// A conditional update's precondition (`If-Match` ETag) does not hold.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// A per-object limit is reached (e.g. a full command queue); retry later.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The embedded database failed (I/O, corruption, undecodable record).
    #[error("registry storage error: {0}")]
    Storage(String),
}

impl RegistryError {
    /// Shorthand for [`RegistryError::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }

    /// Shorthand for [`RegistryError::NotFound`].
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// Shorthand for [`RegistryError::AlreadyExists`].
    pub fn exists(kind: &'static str, id: impl Into<String>) -> Self {
        Self::AlreadyExists {
            kind,
            id: id.into(),
        }
    }
}

macro_rules! storage_from {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for RegistryError {
            fn from(e: $t) -> Self {
                RegistryError::Storage(e.to_string())
            }
        })*
    };
}

storage_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);

impl From<serde_json::Error> for RegistryError {
    fn from(e: serde_json::Error) -> Self {
        RegistryError::Storage(format!("undecodable record: {e}"))
    }
}
