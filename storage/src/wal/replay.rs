//! Recovery at open: lists the WAL files, deletes those below the caller's minimum id, replays the
//! rest in id order and repairs damage: a torn or corrupt tail is truncated to the last intact
//! record, a file whose header is broken is set aside as `*.corrupt`, and every repair is reported.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::file::{parse_file_name, sync_dir};
use super::format::{self, DamageKind, FILE_HEADER_LEN, FileHeader, ScannedRecord};
use super::{WalError, WalRecord, WalReplay, io_error};

/// Suffix given to a WAL file whose header is damaged; such files are never replayed again.
const CORRUPT_SUFFIX: &str = ".corrupt";

/// What recovery leaves for the writer.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Records and warnings for the caller.
    pub replay: WalReplay,
    /// Id for the file new appends go to (above every existing file, and >= the caller's minimum).
    pub next_file_id: u64,
    /// Sequence number of the next append.
    pub next_seq: u64,
    /// Bytes of the WAL files kept on disk.
    pub disk_bytes: u64,
}

/// Replays the WAL in `dir` (creating the directory if needed).
pub(crate) fn recover(dir: &Path, min_file_id: u64, fsync: bool) -> Result<Recovered, WalError> {
    create_dir(dir, fsync)?;
    let listing = list_files(dir)?;
    let mut rec = Recovery::new(dir, fsync);
    rec.max_file_id = listing.max_id;
    let last_id = listing.files.keys().next_back().copied();
    for (&id, path) in &listing.files {
        if id < min_file_id {
            rec.discard(path)?;
        } else {
            rec.replay_file(id, path, Some(id) == last_id)?;
        }
    }
    if rec.dir_dirty && fsync {
        sync_dir(dir).map_err(|e| io_error(dir, e))?;
    }
    rec.finish(min_file_id)
}

/// Creates the WAL directory if it does not exist (and makes its creation durable).
fn create_dir(dir: &Path, fsync: bool) -> Result<(), WalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    match dir.parent() {
        Some(parent) if fsync && !parent.as_os_str().is_empty() => {
            sync_dir(parent).map_err(|e| io_error(parent, e))
        }
        _ => Ok(()),
    }
}

/// The WAL files of a directory.
struct Listing {
    /// Live files by id.
    files: BTreeMap<u64, PathBuf>,
    /// Largest id of any WAL file, live or set aside.
    max_id: Option<u64>,
}

/// Lists `wal-{id}.log` files (and notes the ids of files set aside as corrupt).
fn list_files(dir: &Path) -> Result<Listing, WalError> {
    let mut listing = Listing {
        files: BTreeMap::new(),
        max_id: None,
    };
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let live = parse_file_name(name);
        let id = live.or_else(|| name.strip_suffix(CORRUPT_SUFFIX).and_then(parse_file_name));
        listing.max_id = listing.max_id.max(id);
        if let Some(id) = live {
            listing.files.insert(id, entry.path());
        }
    }
    Ok(listing)
}

/// Recovery state while walking the files.
struct Recovery<'d> {
    dir: &'d Path,
    fsync: bool,
    replay: WalReplay,
    /// Sequence number of the last replayed record (0: none yet).
    last_seq: u64,
    /// Largest base sequence number of any intact header.
    max_base_seq: u64,
    max_file_id: Option<u64>,
    disk_bytes: u64,
    dir_dirty: bool,
}

impl<'d> Recovery<'d> {
    fn new(dir: &'d Path, fsync: bool) -> Self {
        Recovery {
            dir,
            fsync,
            replay: WalReplay::default(),
            last_seq: 0,
            max_base_seq: 0,
            max_file_id: None,
            disk_bytes: 0,
            dir_dirty: false,
        }
    }

    /// Computes where the writer continues.
    fn finish(self, min_file_id: u64) -> Result<Recovered, WalError> {
        let next_file_id = match self.max_file_id {
            Some(max) => max
                .checked_add(1)
                .ok_or_else(|| exhausted(self.dir, "file ids"))?,
            None => 1,
        };
        let next_seq = self
            .last_seq
            .saturating_add(1)
            .max(self.max_base_seq)
            .max(1);
        Ok(Recovered {
            replay: self.replay,
            next_file_id: next_file_id.max(min_file_id),
            next_seq,
            disk_bytes: self.disk_bytes,
        })
    }

    /// Deletes a file below the caller's minimum id, keeping its base sequence number.
    fn discard(&mut self, path: &Path) -> Result<(), WalError> {
        let mut head = Vec::with_capacity(FILE_HEADER_LEN);
        let read =
            File::open(path).and_then(|f| f.take(FILE_HEADER_LEN as u64).read_to_end(&mut head));
        read.map_err(|e| io_error(path, e))?;
        if let Ok(header) = FileHeader::decode(&head) {
            self.max_base_seq = self.max_base_seq.max(header.base_seq);
        }
        fs::remove_file(path).map_err(|e| io_error(path, e))?;
        self.dir_dirty = true;
        Ok(())
    }

    /// Replays one file and repairs it if it is damaged.
    fn replay_file(&mut self, id: u64, path: &Path, is_last: bool) -> Result<(), WalError> {
        let data = fs::read(path).map_err(|e| io_error(path, e))?;
        let scan = format::scan_file(&data, Some(id), self.last_seq);
        if let Some(header) = scan.header {
            self.max_base_seq = self.max_base_seq.max(header.base_seq);
            self.take_records(id, path, header.base_seq, &scan.records);
        }
        let Some(damage) = scan.damage else {
            self.disk_bytes = self.disk_bytes.saturating_add(data.len() as u64);
            return Ok(());
        };
        let later = if is_last {
            ""
        } else {
            "; later WAL files may still hold acknowledged records and are replayed"
        };
        if damage.kind.is_header_damage() {
            return self.set_aside(path, &damage.kind, data.len(), later);
        }
        self.truncate(path, scan.valid_len)?;
        self.warn(format!(
            "WAL file {}: {damage}; replay of this file stops after {} intact records and the file was truncated from {} to {} bytes{later}",
            path.display(),
            scan.records.len(),
            data.len(),
            scan.valid_len,
        ));
        Ok(())
    }

    /// Copies the scanned records into the replay, warning about gaps in the sequence numbers.
    fn take_records(&mut self, id: u64, path: &Path, base_seq: u64, records: &[ScannedRecord<'_>]) {
        let mut expected = if self.last_seq == 0 {
            base_seq
        } else {
            self.last_seq.saturating_add(1)
        };
        for record in records {
            if record.seq > expected {
                self.warn(format!(
                    "WAL records {expected}..={} are missing: the record at byte offset {} of WAL file {} has sequence number {}",
                    record.seq - 1,
                    record.offset,
                    path.display(),
                    record.seq,
                ));
            }
            expected = record.seq.saturating_add(1);
            self.last_seq = record.seq;
            let payload = record.payload.to_vec();
            self.replay.records.push(WalRecord {
                file_id: id,
                seq: record.seq,
                payload,
            });
        }
    }

    /// Handles a file whose header is damaged: deleted if it is a torn creation, otherwise
    /// renamed to `*.corrupt` so that its bytes are kept but never replayed again.
    fn set_aside(
        &mut self,
        path: &Path,
        kind: &DamageKind,
        len: usize,
        later: &str,
    ) -> Result<(), WalError> {
        if let DamageKind::UnsupportedVersion(_) = kind {
            let detail = format!("{kind}; refusing to open a WAL written by another version");
            return Err(io_error(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, detail),
            ));
        }
        self.dir_dirty = true;
        let shown = path.display();
        if let DamageKind::ShortHeader { .. } = kind {
            fs::remove_file(path).map_err(|e| io_error(path, e))?;
            self.warn(format!("WAL file {shown}: {kind} at byte offset 0 (crash while creating it); deleted it{later}"));
            return Ok(());
        }
        let mut aside = path.as_os_str().to_owned();
        aside.push(CORRUPT_SUFFIX);
        let aside = PathBuf::from(aside);
        fs::rename(path, &aside).map_err(|e| io_error(path, e))?;
        self.warn(format!(
            "WAL file {shown}: {kind} at byte offset 0; none of its {len} bytes were replayed and it was renamed to {}{later}",
            aside.display()
        ));
        Ok(())
    }

    /// Truncates a damaged file to its intact prefix.
    fn truncate(&mut self, path: &Path, valid_len: u64) -> Result<(), WalError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        file.set_len(valid_len).map_err(|e| io_error(path, e))?;
        if self.fsync {
            file.sync_all().map_err(|e| io_error(path, e))?;
        }
        self.disk_bytes = self.disk_bytes.saturating_add(valid_len);
        Ok(())
    }

    /// Records a warning for the caller and logs it.
    fn warn(&mut self, message: String) {
        tracing::warn!(target: "strata::wal", "{message}");
        self.replay.warnings.push(message);
    }
}

/// The error for a counter that reached its maximum.
fn exhausted(dir: &Path, what: &str) -> WalError {
    let detail = format!("WAL {what} are exhausted");
    io_error(
        dir,
        std::io::Error::new(std::io::ErrorKind::InvalidData, detail),
    )
}
