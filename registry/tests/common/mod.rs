//! Shared helpers for the registry integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use strata_registry::{Registry, RegistryOptions};
use tempfile::TempDir;

/// A registry in a fresh temporary directory.
pub struct Fixture {
    /// Keeps the directory alive.
    pub dir: TempDir,
    /// The registry.
    pub reg: Registry,
}

impl Fixture {
    /// Opens a new, empty registry.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = Registry::open_in_dir(dir.path()).expect("open");
        Self { dir, reg }
    }

    /// Path of the database file.
    pub fn file(&self) -> PathBuf {
        self.dir.path().join(strata_registry::REGISTRY_FILE)
    }

    /// Closes and reopens the registry.
    pub fn reopen(self) -> Self {
        let Fixture { dir, reg } = self;
        drop(reg);
        let reg = Registry::open_in_dir(dir.path()).expect("reopen");
        Self { dir, reg }
    }

    /// Reopens with options.
    pub fn reopen_with(self, options: RegistryOptions) -> Self {
        let Fixture { dir, reg } = self;
        drop(reg);
        let reg = Registry::open_with(dir.path().join(strata_registry::REGISTRY_FILE), options)
            .expect("reopen");
        Self { dir, reg }
    }

    /// Closes the registry and returns the raw bytes of its file.
    pub fn close_and_read(self) -> (TempDir, Vec<u8>) {
        let Fixture { dir, reg } = self;
        drop(reg);
        let bytes = std::fs::read(dir.path().join(strata_registry::REGISTRY_FILE)).expect("read");
        (dir, bytes)
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
