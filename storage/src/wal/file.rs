//! WAL file naming, the file currently being appended to, and directory fsync.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
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
    /// fsyncs the file and the directory.
    pub fn create(dir: &Path, id: u64, base_seq: u64, fsync: bool) -> io::Result<ActiveFile> {
        let path = dir.join(file_name(id));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all(
            &FileHeader {
                file_id: id,
                base_seq,
            }
            .encode(),
        )?;
        if fsync {
            crate::fsutil::sync_file(&file, &path, false)?;
            sync_dir(dir)?;
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

    /// Writes `buf` at the end of the file with write(2), no fsync.
    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.len = self.len.saturating_add(buf.len() as u64);
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
