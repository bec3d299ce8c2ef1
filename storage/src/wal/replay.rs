//! Recovery at open: lists the WAL files, deletes those below the caller's minimum id, replays the
//! rest in id order and deals with damage without destroying acknowledged records:
//!
//! - a torn or corrupt *tail* (nothing intact after the damage: a crash in the middle of an append)
//!   is cut off, its bytes copied to the set-aside directory first;
//! - damage with intact records *after* it (found by resynchronising on the checksummed frames)
//!   refuses to open, naming file and offset, unless the caller salvages: then every record that
//!   verifies is replayed and a copy of the file is set aside;
//! - a file whose header is broken refuses the same way (salvage: moved aside, its records found by
//!   resynchronising); an empty, all-zero or shorter-than-a-header file (a crash while creating it)
//!   is moved aside;
//!
//! and every repair is reported.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::file::{parse_file_name, sync_dir};
use super::format::{self, DamageKind, FILE_HEADER_LEN, FileHeader, ScannedRecord};
use super::{WalError, WalRecord, WalReplay, io_error};
use crate::damaged::SetAside;

/// Suffix an older version gave to a WAL file whose header was damaged (still counted for ids).
const CORRUPT_SUFFIX: &str = ".corrupt";

/// How recovery treats damage that a truncation would make worse.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    /// Replay every record that verifies around damage (setting the file aside) instead of
    /// refusing to open.
    pub salvage: bool,
    /// Where damaged files and cut tails are set aside.
    pub aside_dir: PathBuf,
}

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
pub(crate) fn recover(
    dir: &Path,
    min_file_id: u64,
    fsync: bool,
    options: &RecoverOptions,
) -> Result<Recovered, WalError> {
    create_dir(dir, fsync)?;
    let listing = list_files(dir)?;
    let mut rec = Recovery::new(dir, fsync, options);
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
    rec.replay.set_aside = std::mem::take(&mut rec.aside.placed);
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
    salvage: bool,
    aside: SetAside,
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
    fn new(dir: &'d Path, fsync: bool, options: &RecoverOptions) -> Self {
        Recovery {
            dir,
            fsync,
            salvage: options.salvage,
            aside: SetAside::in_dir(options.aside_dir.clone()),
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
        let later = if is_last {
            ""
        } else {
            "; later WAL files may still hold acknowledged records and are replayed"
        };
        let Some(header) = scan.header else {
            let kind = scan.damage.map(|d| d.kind);
            return self.header_damage(id, path, &data, kind, later);
        };
        self.max_base_seq = self.max_base_seq.max(header.base_seq);
        self.take_records(id, path, header.base_seq, &scan.records);
        let Some(damage) = scan.damage else {
            self.disk_bytes = self.disk_bytes.saturating_add(data.len() as u64);
            return Ok(());
        };
        let start = damage.offset as usize;
        let min_seq = self.last_seq.saturating_add(1).max(header.base_seq);
        let Some(next) = format::resync(&data, start + 1, min_seq) else {
            // A torn or corrupt tail: nothing intact follows. Keep its bytes, then cut it off.
            let tail = format!("{}.tail-at-{start}", path_name(path));
            let kept = self
                .aside
                .write(&tail, &data[start..])
                .map_err(|e| io_error(self.aside.dir(), e))?;
            self.truncate(path, scan.valid_len)?;
            self.warn(format!(
                "WAL file {}: {damage}; replay of this file stops after {} intact records and the file was truncated from {} to {} bytes (the cut bytes are kept in {}){later}",
                path.display(),
                scan.records.len(),
                data.len(),
                scan.valid_len,
                kept.display(),
            ));
            return Ok(());
        };
        if !self.salvage {
            return Err(WalError::Damaged {
                path: path.to_path_buf(),
                offset: damage.offset,
                detail: format!(
                    "{}; intact records follow it from byte offset {next}, so the damage is not a torn tail and cutting the file there would destroy acknowledged writes",
                    damage.kind
                ),
            });
        }
        let kept = self
            .aside
            .copy_file(path)
            .map_err(|e| io_error(self.aside.dir(), e))?;
        self.warn(format!(
            "WAL file {}: {damage}; salvaging: records that verify after it are replayed (a copy of the file is kept in {})",
            path.display(),
            kept.display()
        ));
        self.salvage_from(id, path, &data, next, header.base_seq);
        self.disk_bytes = self.disk_bytes.saturating_add(data.len() as u64);
        Ok(())
    }

    /// Salvage: replays every record that verifies from `offset` on, skipping damaged stretches.
    fn salvage_from(&mut self, id: u64, path: &Path, data: &[u8], offset: usize, base: u64) {
        let mut next = Some(offset);
        while let Some(at) = next {
            let min_seq = self.last_seq.saturating_add(1).max(base);
            let run = format::scan_records(data, at, min_seq);
            self.take_records(id, path, base, &run.records);
            next = run.damage.and_then(|d| {
                let min_seq = self.last_seq.saturating_add(1).max(base);
                let found = format::resync(data, d.offset as usize + 1, min_seq);
                self.warn(format!(
                    "WAL file {}: {d}; {}",
                    path.display(),
                    match found {
                        Some(n) => format!("salvage continues at byte offset {n}"),
                        None => "nothing intact follows".to_string(),
                    }
                ));
                found
            });
        }
    }

    /// A file whose header cannot be trusted: a crash while creating it (short, empty or all
    /// zeros) is moved aside; other damage refuses, or under salvage is moved aside with the
    /// records that verify in it replayed.
    fn header_damage(
        &mut self,
        id: u64,
        path: &Path,
        data: &[u8],
        kind: Option<DamageKind>,
        later: &str,
    ) -> Result<(), WalError> {
        let kind = kind.unwrap_or(DamageKind::ShortHeader { len: data.len() });
        if let DamageKind::UnsupportedVersion(_) = kind {
            let detail = format!("{kind}; refusing to open a WAL written by another version");
            return Err(io_error(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, detail),
            ));
        }
        let torn_creation =
            matches!(kind, DamageKind::ShortHeader { .. }) || data.iter().all(|&b| b == 0);
        if !torn_creation && !self.salvage {
            return Err(WalError::Damaged {
                path: path.to_path_buf(),
                offset: 0,
                detail: format!("{kind} ({} bytes)", data.len()),
            });
        }
        let shown = path.display().to_string();
        if torn_creation {
            self.dir_dirty = true;
            let aside = self
                .aside
                .move_file(path)
                .map_err(|e| io_error(self.aside.dir(), e))?;
            self.warn(format!(
                "WAL file {shown}: {kind} at byte offset 0 (crash while creating it); moved it to {}{later}",
                aside.display()
            ));
            return Ok(());
        }
        // Salvage: the file stays until a checkpoint makes its records part of segments.
        let aside = self
            .aside
            .copy_file(path)
            .map_err(|e| io_error(self.aside.dir(), e))?;
        self.warn(format!(
            "WAL file {shown}: {kind} at byte offset 0; salvaging the records that verify in it (a copy is kept in {}){later}",
            aside.display()
        ));
        let base = self.last_seq.saturating_add(1);
        if let Some(start) = format::resync(data, FILE_HEADER_LEN, base) {
            self.salvage_from(id, path, data, start, base);
        }
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

    /// Truncates a damaged file to its intact prefix.
    fn truncate(&mut self, path: &Path, valid_len: u64) -> Result<(), WalError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        file.set_len(valid_len).map_err(|e| io_error(path, e))?;
        if self.fsync {
            crate::fsutil::sync_file(&file, path, false).map_err(|e| io_error(path, e))?;
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

/// The file name of `path`, for naming what is set aside.
fn path_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The error for a counter that reached its maximum.
fn exhausted(dir: &Path, what: &str) -> WalError {
    let detail = format!("WAL {what} are exhausted");
    io_error(
        dir,
        std::io::Error::new(std::io::ErrorKind::InvalidData, detail),
    )
}
