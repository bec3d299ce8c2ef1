//! Typed errors of the storage engine.

use std::path::PathBuf;

use crate::FieldType;

/// Everything that can go wrong inside the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation on a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A write names a field with a type different from the one the stream already has.
    #[error(
        "field type conflict in stream '{stream}' of database '{database}': field '{field}' is {existing}, the write has {requested}"
    )]
    SchemaConflict {
        /// Database name.
        database: String,
        /// Stream name.
        stream: String,
        /// Field name.
        field: String,
        /// Type the stream already has.
        existing: FieldType,
        /// Type in the rejected write.
        requested: FieldType,
    },
    /// A write or request is malformed (bad name, ragged columns, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Stored data failed a checksum or structural check.
    #[error("corrupt data in {path}: {detail}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong and where.
        detail: String,
    },
    /// A chunk could not be decoded.
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    /// The engine is shutting down or shut down.
    #[error("the storage engine is shut down")]
    ShutDown,
    /// A write would exceed a per-database limit; nothing of it was stored.
    #[error(
        "write refused: {limit} = {value} would be exceeded in stream '{stream}' of database '{database}' ({detail}); nothing from this write was stored; {advice}",
        advice = limit.advice()
    )]
    LimitExceeded {
        /// The limit.
        limit: crate::Limit,
        /// Its value for the database.
        value: usize,
        /// Database name.
        database: String,
        /// Stream name.
        stream: String,
        /// What the write tried (counts, the offending name or size).
        detail: String,
    },
    /// Memtables are full because flush has fallen behind or is failing; the write was not
    /// stored and can be retried later.
    #[error("storage engine overloaded: {0}; nothing from this write was stored, retry later")]
    Overloaded(String),
}

/// Result alias for the storage engine.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Helper to attach a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StorageError::Io {
            path: path.into(),
            source,
        })
    }
}
