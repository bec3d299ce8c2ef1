//! Test builds only: a power-loss simulator in the spirit of redb's crash backend and ALICE's
//! crash points. Every fsync / fdatasync of a file and every directory fsync the engine makes goes
//! through `fsutil::sync_file` / `fsutil::sync_dir_io`, which report here. While recording is on
//! (per thread), the simulator keeps what a power cut would leave: for each inode, the bytes it
//! held at its last sync; for each directory, its entries (name → inode) at its last sync.
//! [`Recorder::image`] builds that state as a new directory (only synced names, only synced
//! bytes; optionally with half of each file's unsynced appended bytes, a torn write), so a test can
//! open the engine on the state after every sync point of a workload.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Durable state seen so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorder {
    root: PathBuf,
    /// inode → bytes at its last sync.
    files: BTreeMap<u64, Vec<u8>>,
    /// directory (relative to root) → name → inode, at its last sync.
    dirs: BTreeMap<PathBuf, BTreeMap<String, u64>>,
    /// Number of sync calls recorded.
    pub syncs: usize,
}

/// What runs after each recorded sync.
type OnSync = Box<dyn FnMut(&Recorder)>;

thread_local! {
    static ACTIVE: RefCell<Option<Recorder>> = const { RefCell::new(None) };
    static ON_SYNC: RefCell<Option<OnSync>> = RefCell::new(None);
}

impl Recorder {
    /// Starts recording syncs under `root` on this thread; everything now on disk counts as
    /// durable. `on_sync` runs after every recorded sync with the durable state.
    pub fn start(root: &Path, on_sync: impl FnMut(&Recorder) + 'static) {
        let mut rec = Recorder {
            root: root.to_path_buf(),
            ..Recorder::default()
        };
        rec.baseline(root);
        ACTIVE.with(|a| *a.borrow_mut() = Some(rec));
        ON_SYNC.with(|s| *s.borrow_mut() = Some(Box::new(on_sync)));
    }

    /// Stops recording on this thread.
    pub fn stop() {
        ACTIVE.with(|a| *a.borrow_mut() = None);
        ON_SYNC.with(|s| *s.borrow_mut() = None);
    }

    fn baseline(&mut self, dir: &Path) {
        self.record_dir(dir);
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                self.baseline(&path);
            } else {
                self.record_file(&path);
            }
        }
    }

    fn record_file(&mut self, path: &Path) {
        if let (Ok(meta), Ok(bytes)) = (std::fs::metadata(path), std::fs::read(path)) {
            self.files.insert(meta.ino(), bytes);
        }
    }

    fn record_dir(&mut self, dir: &Path) {
        let Ok(rel) = dir.strip_prefix(&self.root) else {
            return;
        };
        let mut names = BTreeMap::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if let Ok(meta) = entry.metadata()
                && meta.is_file()
            {
                names.insert(entry.file_name().to_string_lossy().into_owned(), meta.ino());
            }
        }
        self.dirs.insert(rel.to_path_buf(), names);
    }

    /// Writes the state a power cut now would leave into `out`: synced names with their synced
    /// bytes. With `torn`, a file whose current content extends its synced bytes also keeps the
    /// first half of the unsynced extension (a write torn by the power cut).
    pub fn image(&self, out: &Path, torn: bool) {
        for (rel, names) in &self.dirs {
            let dir = out.join(rel);
            std::fs::create_dir_all(&dir).expect("image dir");
            for (name, ino) in names {
                let mut bytes = self.files.get(ino).cloned().unwrap_or_default();
                if torn {
                    let now = self.root.join(rel).join(name);
                    if let Ok(current) = std::fs::read(&now)
                        && std::fs::metadata(&now).map(|m| m.ino()).ok() == Some(*ino)
                        && current.len() > bytes.len()
                        && current.starts_with(&bytes)
                    {
                        let extra = (current.len() - bytes.len()) / 2;
                        bytes = current[..bytes.len() + extra].to_vec();
                    }
                }
                std::fs::write(dir.join(name), bytes).expect("image file");
            }
        }
    }
}

/// A file at `path` was just synced.
pub(crate) fn file_synced(path: &Path) {
    synced(|rec| rec.record_file(path));
}

/// The directory `dir` was just synced.
pub(crate) fn dir_synced(dir: &Path) {
    synced(|rec| rec.record_dir(dir));
}

fn synced(update: impl FnOnce(&mut Recorder)) {
    let snapshot = ACTIVE.with(|a| {
        let mut active = a.borrow_mut();
        let rec = active.as_mut()?;
        update(rec);
        rec.syncs += 1;
        Some(rec.clone())
    });
    if let Some(rec) = snapshot {
        ON_SYNC.with(|s| {
            if let Some(f) = s.borrow_mut().as_mut() {
                f(&rec);
            }
        });
    }
}
