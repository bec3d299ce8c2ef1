//! File-system helpers: atomic replace (temp file, fsync, rename, directory fsync), checksummed
//! small metadata files, and read-only memory maps.
//!
//! This is also the engine's file-operation seam for tests: every fsync reports to the power-loss
//! simulator (`powerloss.rs`), and every create, write, fsync and rename that can fail at run time
//! on a full or failing disk first asks the error-injecting layer (`faults.rs`, test builds only;
//! release builds compile [`fault`] to nothing).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result, StorageError};

/// fsyncs a directory so that renames and unlinks inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    sync_dir_io(dir).at(dir)
}

/// fsyncs a directory. Every directory fsync of the engine goes through here (test builds report
/// it to the power-loss simulator, `powerloss.rs`; release builds only fsync).
pub(crate) fn sync_dir_io(dir: &Path) -> std::io::Result<()> {
    fault(Op::Sync, dir)?;
    File::open(dir)?.sync_all()?;
    #[cfg(test)]
    crate::powerloss::dir_synced(dir);
    Ok(())
}

/// fsyncs (`data_only`: fdatasyncs) `file`, which is `path`. Every file sync of the engine goes
/// through here (test builds report it to the power-loss simulator; release builds only sync).
pub(crate) fn sync_file(file: &File, path: &Path, data_only: bool) -> std::io::Result<()> {
    fault(Op::Sync, path)?;
    match data_only {
        true => file.sync_data()?,
        false => file.sync_all()?,
    }
    #[cfg(test)]
    crate::powerloss::file_synced(path);
    #[cfg(not(test))]
    let _ = path;
    Ok(())
}

/// The kinds of file operation the test fault layer can fail.
#[cfg(test)]
pub(crate) use crate::faults::Op;

/// The kinds of file operation the test fault layer can fail (release builds: never).
#[cfg(not(test))]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    /// Creating or opening a file for writing.
    Create,
    /// `write(2)`.
    Write,
    /// fsync / fdatasync.
    Sync,
    /// `rename(2)`.
    Rename,
}

/// Test builds: the fault injected for `op` on `path`, if any (`faults.rs`).
#[cfg(test)]
pub(crate) fn fault(op: Op, path: &Path) -> std::io::Result<()> {
    crate::faults::check(op, path)
}

/// Release builds: never a fault.
#[cfg(not(test))]
#[inline(always)]
pub(crate) fn fault(_op: Op, _path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Creates (truncating) `path` for writing.
pub(crate) fn create_file(path: &Path) -> std::io::Result<File> {
    fault(Op::Create, path)?;
    File::create(path)
}

/// Creates `path` for writing; fails if it exists.
pub(crate) fn create_new_file(path: &Path) -> std::io::Result<File> {
    fault(Op::Create, path)?;
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// `write_all` of `buf` to `out`, which writes to `path`. An injected write fault writes the
/// first half of `buf` and then fails, like a disk that fills up in the middle of a write.
pub(crate) fn write_all(out: &mut impl Write, path: &Path, buf: &[u8]) -> std::io::Result<()> {
    if let Err(e) = fault(Op::Write, path) {
        out.write_all(&buf[..buf.len() / 2])?;
        out.flush()?;
        return Err(e);
    }
    out.write_all(buf)
}

/// `rename(2)`.
pub(crate) fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    fault(Op::Rename, to)?;
    std::fs::rename(from, to)
}

/// Replaces `path` with `bytes` atomically and durably. On failure `path` is left as it was
/// and the temporary file is removed (on a full disk it would hold space): callers then delete
/// what only the new contents name (a flush's new segments, a compaction's output).
///
/// The old contents stay reachable under `path` + `.prev` (a hard link) until the directory fsync
/// that makes the rename durable has succeeded; when that fsync fails, the rename is undone, so
/// the file in place never names what a failed caller is about to delete.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let prev = appended(path, ".prev");
    let mut old = Old::Absent;
    let written = (|| {
        let mut f = create_file(&tmp).at(&tmp)?;
        write_all(&mut f, &tmp, bytes).at(&tmp)?;
        sync_file(&f, &tmp, false).at(&tmp)?;
        drop(f);
        remove_if_present(&prev)?;
        old = match std::fs::hard_link(path, &prev) {
            Ok(()) => Old::Linked,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Old::Absent,
            // A filesystem without hard links: the replace still works, it cannot be undone.
            Err(_) => Old::Unkept,
        };
        rename(&tmp, path).at(path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&prev);
        return Err(e);
    }
    match sync_dir(path.parent().unwrap_or(Path::new("."))) {
        Ok(()) => {
            let _ = std::fs::remove_file(&prev);
            Ok(())
        }
        Err(e) => Err(undo_replace(path, &prev, old, e)),
    }
}

/// What `write_atomic` kept of the file it replaces.
#[derive(Clone, Copy)]
enum Old {
    /// There was no file.
    Absent,
    /// Linked under the `.prev` name.
    Linked,
    /// Not kept (the filesystem refused the hard link).
    Unkept,
}

/// `path` with `suffix` appended to its file name (`MANIFEST` → `MANIFEST.prev`).
fn appended(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Removes `path` unless it does not exist.
fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(path),
        _ => Ok(()),
    }
}

/// After the directory fsync following `write_atomic`'s rename failed: puts the old contents
/// back in place (`old`) and returns `failed`, or a fatal error saying the new contents stay in
/// place when that cannot be done.
fn undo_replace(path: &Path, prev: &Path, old: Old, failed: StorageError) -> StorageError {
    let undone = match old {
        Old::Linked => std::fs::rename(prev, path),
        Old::Absent => std::fs::remove_file(path),
        Old::Unkept => Err(std::io::Error::other("the old file was not kept")),
    };
    match undone {
        Ok(()) => failed,
        Err(undo) => StorageError::Internal(format!(
            "{failed}; the new {} stays in place, since restoring the old one failed too \
             ({undo}): stop the server and check the disk",
            path.display()
        )),
    }
}

/// Prefixes `body` with a one-line header `TAG v1 crc32c=XXXXXXXX len=N\n`.
pub(crate) fn with_checksum_header(tag: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{tag} v1 crc32c={:08x} len={}\n",
        crc32c::crc32c(body),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Verifies the header written by [`with_checksum_header`] and returns the body.
pub(crate) fn check_checksum_header<'a>(
    tag: &str,
    bytes: &'a [u8],
    path: &Path,
) -> Result<&'a [u8]> {
    let corrupt = |detail: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| corrupt("missing header line".into()))?;
    let header =
        std::str::from_utf8(&bytes[..nl]).map_err(|_| corrupt("header is not UTF-8".into()))?;
    let body = &bytes[nl + 1..];
    let mut parts = header.split(' ');
    if parts.next() != Some(tag) || parts.next() != Some("v1") {
        return Err(corrupt(format!(
            "bad header '{header}', expected '{tag} v1 ...'"
        )));
    }
    let crc = parts
        .next()
        .and_then(|p| p.strip_prefix("crc32c="))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| corrupt(format!("bad checksum field in header '{header}'")))?;
    let len = parts
        .next()
        .and_then(|p| p.strip_prefix("len="))
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| corrupt(format!("bad length field in header '{header}'")))?;
    if len != body.len() {
        return Err(corrupt(format!(
            "body is {} bytes, header says {len} (truncated?)",
            body.len()
        )));
    }
    if crc32c::crc32c(body) != crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    Ok(body)
}

/// Maps a file read-only.
#[allow(unsafe_code)]
pub(crate) fn map_readonly(path: &Path) -> Result<memmap2::Mmap> {
    let file = File::open(path).at(path)?;
    // SAFETY: segment files are immutable once renamed into place; Strata never writes to or truncates
    // a published segment, it only unlinks it (the mapping stays valid after unlink on Unix).
    unsafe { memmap2::Mmap::map(&file) }.at(path)
}

/// Environment variable naming the crash point at which a test child process aborts: `step`
/// (its first occurrence) or `step#n` (its n-th).
#[cfg(test)]
pub(crate) const CRASH_ENV: &str = "STRATA_TEST_CRASH_AT";

/// Test builds only: aborts the process (like `kill -9`: no destructor, no flush) when the
/// environment variable [`CRASH_ENV`] names this occurrence of `step`. Release builds compile
/// this to nothing.
#[cfg(test)]
pub(crate) fn crash_point(step: &str) {
    static SEEN: std::sync::Mutex<Vec<(String, usize)>> = std::sync::Mutex::new(Vec::new());
    let Ok(target) = std::env::var(CRASH_ENV) else {
        return;
    };
    let (name, nth) = match target.split_once('#') {
        Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
        None => (target, 1),
    };
    if name != step {
        return;
    }
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let count = match seen.iter_mut().find(|(s, _)| s == step) {
        Some((_, c)) => {
            *c += 1;
            *c
        }
        None => {
            seen.push((step.to_string(), 1));
            1
        }
    };
    if count == nth {
        std::process::abort();
    }
}

/// Release builds: crash points do nothing.
#[cfg(not(test))]
#[inline(always)]
pub(crate) fn crash_point(_step: &str) {}

/// A closure a test runs when the engine of data directory `dir` reaches step `step`.
#[cfg(test)]
type Hook = (std::path::PathBuf, &'static str, Box<dyn FnOnce() + Send>);

#[cfg(test)]
static HOOKS: std::sync::Mutex<Vec<Hook>> = std::sync::Mutex::new(Vec::new());

/// Test builds only: runs `f` (once) when the engine of `dir` next reaches `step` (see [`step`]).
#[cfg(test)]
pub(crate) fn on_step(dir: &Path, step: &'static str, f: impl FnOnce() + Send + 'static) {
    let mut hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    hooks.push((dir.to_path_buf(), step, Box::new(f)));
}

/// A named step of flush or compaction in the engine of `dir`: a crash point, and in test builds
/// the place where a hook registered with [`on_step`] runs. Nothing in release builds.
pub(crate) fn step(dir: &Path, step: &'static str) {
    crash_point(step);
    #[cfg(test)]
    {
        let hook = {
            let mut hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
            let at = hooks.iter().position(|(d, s, _)| d == dir && *s == step);
            at.map(|i| hooks.remove(i).2)
        };
        if let Some(f) = hook {
            f();
        }
    }
    #[cfg(not(test))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{self, EIO, Op};

    /// The directory fsync after the rename fails: the old contents are back in place, and
    /// neither the temporary file nor the old contents' second name is left.
    #[test]
    fn a_replace_whose_directory_fsync_fails_leaves_the_old_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("MANIFEST");
        write_atomic(&path, b"old").unwrap();
        // The first fsync (the temporary file's) passes, the directory's fails.
        faults::inject_after(dir.path(), Op::Sync, EIO, 1);
        let err = write_atomic(&path, b"new").unwrap_err();
        faults::clear(dir.path());
        assert!(err.to_string().contains("os error 5"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["MANIFEST"]);
        // A first write whose directory fsync fails leaves no file at all.
        let fresh = dir.path().join("fresh");
        faults::inject_after(dir.path(), Op::Sync, EIO, 1);
        assert!(write_atomic(&fresh, b"x").is_err());
        faults::clear(dir.path());
        assert!(!fresh.exists());
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!appended(&path, ".prev").exists());
    }
}
