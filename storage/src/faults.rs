//! Test builds only: an error-injecting file layer. Every file operation of the engine that can
//! fail at run time on a full or failing disk (creating a file, writing to it, fsyncing it or a
//! directory, renaming) goes through `fsutil`, which asks [`check`] first. A test arms a fault for
//! every path under a directory ([`inject`]) with an errno (ENOSPC, EIO, EMFILE): the operation
//! then fails with that error (a write first writes half of its bytes, a torn write) until
//! [`clear`] is called, which is how a test models "space returns". Faults are keyed by
//! directory, so tests running in parallel do not see each other's faults.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A kind of file operation that a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Creating or opening a file for writing.
    Create,
    /// `write(2)`.
    Write,
    /// fsync / fdatasync of a file or a directory.
    Sync,
    /// `rename(2)`.
    Rename,
}

/// errno values the tests inject.
pub(crate) const ENOSPC: i32 = 28;
pub(crate) const EIO: i32 = 5;
pub(crate) const EMFILE: i32 = 24;

/// An armed fault: every `op` on a path under `dir` fails with `errno`; `after` operations
/// that would match are let through first.
struct Fault {
    dir: PathBuf,
    op: Op,
    errno: i32,
    after: usize,
}

static FAULTS: Mutex<Vec<Fault>> = Mutex::new(Vec::new());

fn faults() -> std::sync::MutexGuard<'static, Vec<Fault>> {
    FAULTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes every `op` on a path under `dir` fail with `errno` until [`clear`].
pub(crate) fn inject(dir: &Path, op: Op, errno: i32) {
    inject_after(dir, op, errno, 0);
}

/// [`inject`], but the first `after` matching operations still succeed.
pub(crate) fn inject_after(dir: &Path, op: Op, errno: i32, after: usize) {
    faults().push(Fault {
        dir: dir.to_path_buf(),
        op,
        errno,
        after,
    });
}

/// Removes every fault armed under `dir` ("the disk has space again").
pub(crate) fn clear(dir: &Path) {
    faults().retain(|f| !f.dir.starts_with(dir) && !dir.starts_with(&f.dir));
}

/// The injected outcome of `op` on `path`.
pub(crate) fn check(op: Op, path: &Path) -> std::io::Result<()> {
    let mut all = faults();
    let Some(fault) = all
        .iter_mut()
        .find(|f| f.op == op && path.starts_with(&f.dir))
    else {
        return Ok(());
    };
    if fault.after > 0 {
        fault.after -= 1;
        return Ok(());
    }
    Err(std::io::Error::from_raw_os_error(fault.errno))
}
