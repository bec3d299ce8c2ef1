//! Setting damaged files aside instead of deleting them: `DATA/damaged/<UTC timestamp>/`.
//!
//! Recovery never deletes bytes it cannot prove worthless. A WAL file with damage in the middle,
//! the torn tail cut from a WAL file, a MANIFEST that fails its checksum, a segment that cannot be
//! opened: each is moved or copied here (created on first use, one directory per open) and the
//! destination is reported, so an operator can inspect it or send it to support.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The directory of one open's set-aside files; created lazily.
#[derive(Debug)]
pub(crate) struct SetAside {
    dir: PathBuf,
    /// Destinations written so far, for the recovery report.
    pub placed: Vec<String>,
}

impl SetAside {
    /// Files set aside by an open of the data directory `root` go to `root/damaged/<now>/`.
    pub fn new(root: &Path) -> SetAside {
        SetAside::in_dir(root.join("damaged").join(utc_stamp()))
    }

    /// Files go to `dir` itself.
    pub fn in_dir(dir: PathBuf) -> SetAside {
        SetAside {
            dir,
            placed: Vec::new(),
        }
    }

    /// Where files go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves `src` into the set-aside directory (same file name); returns the destination.
    pub fn move_file(&mut self, src: &Path) -> io::Result<PathBuf> {
        let dest = self.destination(src)?;
        if fs::rename(src, &dest).is_err() {
            fs::copy(src, &dest)?;
            fs::remove_file(src)?;
        }
        self.done(&dest)?;
        Ok(dest)
    }

    /// Copies `src` into the set-aside directory (same file name); returns the destination.
    pub fn copy_file(&mut self, src: &Path) -> io::Result<PathBuf> {
        let dest = self.destination(src)?;
        fs::copy(src, &dest)?;
        self.done(&dest)?;
        Ok(dest)
    }

    /// Writes `bytes` as `name` in the set-aside directory; returns the destination.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        let dest = self.dir.join(name);
        fs::write(&dest, bytes)?;
        self.done(&dest)?;
        Ok(dest)
    }

    fn destination(&self, src: &Path) -> io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        let name = src.file_name().unwrap_or(src.as_os_str());
        Ok(self.dir.join(name))
    }

    /// Makes the new file durable before the caller changes the original, and records it.
    fn done(&mut self, dest: &Path) -> io::Result<()> {
        fs::File::open(dest)?.sync_all()?;
        fs::File::open(&self.dir)?.sync_all()?;
        self.placed.push(dest.display().to_string());
        Ok(())
    }
}

/// The current UTC time as `YYYYMMDDTHHMMSSZ` (sorts by time, safe in a file name).
pub(crate) fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (H. Hinnant).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_791), (2026, 12, 4));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(utc_stamp().len(), 16);
    }

    #[test]
    fn files_are_moved_and_copied_into_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::write(&a, b"bytes").unwrap();
        let mut aside = SetAside::in_dir(d.path().join("damaged/x"));
        let copy = aside.copy_file(&a).unwrap();
        assert!(a.exists());
        assert_eq!(std::fs::read(&copy).unwrap(), b"bytes");
        std::fs::remove_file(&copy).unwrap();
        let moved = aside.move_file(&a).unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read(moved).unwrap(), b"bytes");
        assert_eq!(aside.placed.len(), 2);
    }
}
