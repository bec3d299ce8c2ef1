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
    /// Opening the data directory would destroy or mix data (a missing MANIFEST or catalog with
    /// data present, damage in the middle of the WAL, a WAL record that cannot be applied):
    /// nothing was deleted; the message names the file and the fix.
    #[error(
        "refusing to open the data directory: {path}: {problem}. Nothing was deleted. To fix: {fix}"
    )]
    Refused {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// What the operator can do.
        fix: String,
    },
    /// A chunk could not be decoded.
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    /// The write-ahead log failed (a full disk or an I/O fault become [`StorageError::NoSpace`]
    /// and [`StorageError::IoFault`] instead).
    #[error(transparent)]
    Wal(crate::wal::error::WalError),
    /// A write was refused because the disk holding the data directory (or a quota) is full
    /// (ENOSPC, EDQUOT). Nothing acknowledged is lost; writes resume by themselves once space is
    /// freed.
    #[error(
        "no space left on device: {detail}; retry the write later (retrying is safe: a point is stored once per series and timestamp)"
    )]
    NoSpace {
        /// The file or directory that could not be written.
        path: PathBuf,
        /// What failed and what to do.
        detail: String,
    },
    /// A write was refused because of an I/O error other than a full disk (EIO, EMFILE, ...).
    /// Nothing acknowledged is lost; each later write retries.
    #[error(
        "I/O error: {detail}; retry the write later (retrying is safe: a point is stored once per series and timestamp)"
    )]
    IoFault {
        /// The file or directory that could not be written.
        path: PathBuf,
        /// What failed and what to do.
        detail: String,
    },
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
    /// An internal failure that is neither the caller's input nor damaged data (e.g. a lock
    /// poisoned by an earlier panic).
    #[error("internal storage error: {0}")]
    Internal(String),
    /// The cold-tier object store failed or refused (unreachable, denied, a lost race for the
    /// next manifest number); the data involved stays where it was.
    #[error("{0}")]
    Cold(String),
}

impl From<crate::wal::error::WalError> for StorageError {
    fn from(e: crate::wal::error::WalError) -> StorageError {
        use crate::wal::error::WalError;
        match e {
            WalError::NoSpace { ref path, .. } => StorageError::NoSpace {
                path: path.clone(),
                detail: e.to_string(),
            },
            WalError::IoFault { ref path, .. } => StorageError::IoFault {
                path: path.clone(),
                detail: e.to_string(),
            },
            other => StorageError::Wal(other),
        }
    }
}

/// What kind of failure a [`StorageError`] is, for callers that map errors onto protocol
/// statuses (HTTP, gRPC, MQTT): see [`StorageError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is at fault (bad name, schema conflict): the same request fails again.
    InvalidInput,
    /// The request would exceed a per-database limit (series, fields, tag values, string
    /// bytes): the same request fails again until the limit is raised.
    LimitExceeded,
    /// The engine cannot take the request now (shutting down, overloaded, WAL refusing writes
    /// after a failure): retry later.
    Unavailable,
    /// The disk (or quota) is full.
    OutOfSpace,
    /// Stored data is damaged.
    Corruption,
    /// Any other server-side failure (I/O, a poisoned lock).
    Internal,
}

impl StorageError {
    /// The kind of this failure. Variants without a mapping here are [`ErrorKind::Internal`].
    pub fn kind(&self) -> ErrorKind {
        use crate::wal::error::WalError;
        match self {
            StorageError::SchemaConflict { .. }
            | StorageError::InvalidInput(_)
            | StorageError::Wal(WalError::RecordTooLarge(_)) => ErrorKind::InvalidInput,
            StorageError::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            StorageError::ShutDown
            | StorageError::Overloaded(_)
            | StorageError::Wal(WalError::Poisoned(_) | WalError::IoFault { .. })
            | StorageError::IoFault { .. }
            | StorageError::Cold(_) => ErrorKind::Unavailable,
            StorageError::NoSpace { .. } | StorageError::Wal(WalError::NoSpace { .. }) => {
                ErrorKind::OutOfSpace
            }
            StorageError::Io { source, .. } | StorageError::Wal(WalError::Io { source, .. })
                if is_out_of_space(source) =>
            {
                ErrorKind::OutOfSpace
            }
            StorageError::Corrupt { .. }
            | StorageError::Codec(_)
            | StorageError::Refused { .. }
            | StorageError::Wal(WalError::Damaged { .. }) => ErrorKind::Corruption,
            _ => ErrorKind::Internal,
        }
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn is_out_of_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28 | 122))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let io = |e: std::io::Error| StorageError::Io {
            path: "x".into(),
            source: e,
        };
        let full = std::io::Error::from_raw_os_error(28);
        assert_eq!(io(full).kind(), ErrorKind::OutOfSpace);
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(io(denied).kind(), ErrorKind::Internal);
        assert_eq!(StorageError::ShutDown.kind(), ErrorKind::Unavailable);
        assert_eq!(
            StorageError::Internal("lock".into()).kind(),
            ErrorKind::Internal
        );
        assert_eq!(
            StorageError::InvalidInput("x".into()).kind(),
            ErrorKind::InvalidInput
        );
        let corrupt = StorageError::Corrupt {
            path: "s".into(),
            detail: "crc".into(),
        };
        assert_eq!(corrupt.kind(), ErrorKind::Corruption);
        let poisoned = StorageError::Wal(crate::wal::error::WalError::Poisoned("fsync".into()));
        assert_eq!(poisoned.kind(), ErrorKind::Unavailable);
        let wal_full = StorageError::Wal(crate::wal::error::WalError::Io {
            path: "w".into(),
            source: std::io::Error::from_raw_os_error(28),
        });
        assert_eq!(wal_full.kind(), ErrorKind::OutOfSpace);
        let no_space = StorageError::from(crate::wal::error::WalError::NoSpace {
            path: "w".into(),
            detail: "write to w failed".into(),
        });
        assert!(
            matches!(no_space, StorageError::NoSpace { .. }),
            "{no_space:?}"
        );
        assert_eq!(no_space.kind(), ErrorKind::OutOfSpace);
        let fault = StorageError::from(crate::wal::error::WalError::IoFault {
            path: "w".into(),
            detail: "fdatasync of w failed".into(),
        });
        assert!(matches!(fault, StorageError::IoFault { .. }), "{fault:?}");
        assert_eq!(fault.kind(), ErrorKind::Unavailable);
    }
}
