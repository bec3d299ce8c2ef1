//! The WAL's error type, in a file of its own so that the crate's error type can wrap it without
//! importing the WAL itself.

use std::path::{Path, PathBuf};

/// WAL errors.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// I/O failure.
    #[error("WAL I/O error on {path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The WAL can never accept another record (sequence numbers or file ids are exhausted).
    #[error("the WAL refuses writes for good ({0}); restart the server")]
    Poisoned(String),
    /// A write or fdatasync failed because the disk (or a quota) is full. The file was cut back
    /// to its last good record; writes are refused until a retry succeeds.
    #[error(
        "no space left for the write-ahead log ({detail}); writes are refused until space is freed on the disk holding {path}, then resume by themselves"
    )]
    NoSpace {
        /// The WAL file or directory.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// A write, fdatasync or file creation failed for another reason (EIO, EMFILE, ...). The file
    /// was cut back to its last good record; writes are refused until a retry succeeds.
    #[error(
        "I/O error writing the write-ahead log ({detail}); writes are refused and retried with each new write; check the disk holding {path} and the process's open-file limit"
    )]
    IoFault {
        /// The WAL file or directory.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The record is larger than the format allows.
    #[error("WAL record of {0} bytes exceeds the maximum record size")]
    RecordTooLarge(usize),
    /// Damage that a truncation would make worse (intact records after it, or a broken header on
    /// a file with content): recovery refuses and leaves the file as it is.
    #[error(
        "WAL file {path} is damaged at byte offset {offset}: {detail}; the file was left as it is"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong, and what follows it.
        detail: String,
    },
}

/// Builds [`WalError::Io`].
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> WalError {
    WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}
