//! Write-ahead log (contract stub, being implemented).

use std::path::PathBuf;
use std::time::Duration;

/// How the WAL makes appended records durable before a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after fdatasync; concurrent writers share one sync (group commit).
    Sync,
    /// Acknowledge after write(2); a background thread fdatasyncs every interval.
    Interval(Duration),
    /// Acknowledge after write(2); never fsync.
    None,
}

/// WAL configuration.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Directory holding the WAL files.
    pub dir: PathBuf,
    /// Durability mode.
    pub durability: Durability,
    /// A file is rotated once it exceeds this many bytes.
    pub max_file_bytes: u64,
}

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
    /// An earlier fsync or write failed; the WAL refuses writes until restart.
    #[error("the WAL is poisoned by an earlier failure ({0}); restart the server after fixing the disk")]
    Poisoned(String),
    /// The record is larger than the format allows.
    #[error("WAL record of {0} bytes exceeds the maximum record size")]
    RecordTooLarge(usize),
}

/// One record recovered by replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// Id of the WAL file that held it.
    pub file_id: u64,
    /// Sequence number of the record.
    pub seq: u64,
    /// The payload as appended.
    pub payload: Vec<u8>,
}

/// What replay found.
#[derive(Debug, Default)]
pub struct WalReplay {
    /// Intact records, in append order.
    pub records: Vec<WalRecord>,
    /// Human-readable descriptions of damage found (file, offset, what).
    pub warnings: Vec<String>,
}

/// The write-ahead log.
#[derive(Debug)]
pub struct Wal {}

impl Wal {
    /// Opens (creating if needed) the WAL in `opts.dir`, replaying files with id >= `min_file_id`
    /// and deleting older ones.
    pub fn open(_opts: WalOptions, _min_file_id: u64) -> Result<(Wal, WalReplay), WalError> {
        todo!()
    }

    /// Appends a record to the in-memory buffer and returns its sequence number. Cheap; does not wait.
    pub fn append(&self, _payload: &[u8]) -> Result<u64, WalError> {
        todo!()
    }

    /// Blocks until the record `seq` is durable under the configured mode (group commit).
    pub fn sync_to(&self, _seq: u64) -> Result<(), WalError> {
        todo!()
    }

    /// Makes everything appended so far durable in the current file, then starts a new file.
    /// Returns the new file's id; all records appended later land in files with id >= it.
    pub fn rotate(&self) -> Result<u64, WalError> {
        todo!()
    }

    /// Deletes every WAL file with id < `file_id`.
    pub fn remove_before(&self, _file_id: u64) -> Result<(), WalError> {
        todo!()
    }

    /// Total bytes of WAL files on disk.
    pub fn disk_bytes(&self) -> u64 {
        todo!()
    }
}
