//! WAL file naming, the file currently being appended to, and directory fsync.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{FILE_HEADER_LEN, FileHeader};

/// Name of the WAL file with id `id`: `wal-{id:020}.log`.
pub fn file_name(id: u64) -> String {
    format!("wal-{id:020}.log")
}

/// Parses a WAL file name back into its id; `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Fsyncs a directory so that file creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    crate::fsutil::sync_dir_io(dir)
}

/// The WAL file that appends go to.
#[derive(Debug)]
pub struct ActiveFile {
    file: File,
    id: u64,
    path: PathBuf,
    len: u64,
}

impl ActiveFile {
    /// Creates file `id` in `dir` (it must not exist), writes its header and, when `fsync`,
    /// fsyncs the file and the directory. On failure the file is removed again (best effort), so
    /// a later attempt can create it.
    pub fn create(dir: &Path, id: u64, base_seq: u64, fsync: bool) -> io::Result<ActiveFile> {
        let path = dir.join(file_name(id));
        let mut file = crate::fsutil::create_new_file(&path)?;
        let header = FileHeader {
            file_id: id,
            base_seq,
        }
        .encode();
        let written = crate::fsutil::write_all(&mut file, &path, &header).and_then(|()| {
            if fsync {
                crate::fsutil::sync_file(&file, &path, false)?;
                sync_dir(dir)?;
            }
            Ok(())
        });
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(ActiveFile {
            file,
            id,
            path,
            len: FILE_HEADER_LEN as u64,
        })
    }

    /// The file's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file (header included).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the file holds no record yet.
    pub fn has_no_records(&self) -> bool {
        self.len <= FILE_HEADER_LEN as u64
    }

    /// Writes `buf` at the end of the file with write(2), no fsync. On failure part of `buf` may
    /// have reached the file: [`ActiveFile::len`] still counts only what fully succeeded, and
    /// [`ActiveFile::truncate_to`] cuts the rest.
    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        crate::fsutil::write_all(&mut self.file, &self.path, buf)?;
        self.len = self.len.saturating_add(buf.len() as u64);
        Ok(())
    }

    /// Cuts the file back to `len` bytes and continues writing there (after a failed write or
    /// fdatasync, so that no later record follows a torn or unsynced one).
    pub fn truncate_to(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.seek(SeekFrom::Start(len))?;
        self.len = len;
        Ok(())
    }

    /// fdatasync: makes the written bytes durable.
    pub fn sync_data(&self) -> io::Result<()> {
        crate::fsutil::sync_file(&self.file, &self.path, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(file_name(12), "wal-00000000000000000012.log");
        assert_eq!(parse_file_name(&file_name(12)), Some(12));
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("wal-99999999999999999999.log"), None);
        assert_eq!(parse_file_name("wal-12.log"), None);
        assert_eq!(parse_file_name("wal-0000000000000000001x.log"), None);
        assert_eq!(
            parse_file_name("wal-00000000000000000012.log.corrupt"),
            None
        );
    }
}
