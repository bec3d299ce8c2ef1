//! The layout of a backup target (a directory or bucket prefix; byte by byte in `docs/format.md`)
//! and the checks `strata backup verify` and `strata restore` make on what they read.
//!
//! ```text
//! segments/{id:016}-{crc32c:08x}.seg   segment files, immutable, shared by every backup
//! backups/{backup id}/STARTED           written first: the run exists (JSON id, time, source)
//! backups/{backup id}/MANIFEST          per backup: the engine's MANIFEST at the snapshot
//! backups/{backup id}/catalog.log       the catalog log
//! backups/{backup id}/wal/wal-….log     closed WAL files the MANIFEST still needs
//! backups/{backup id}/registry.redb     consistent copy of the registry
//! backups/{backup id}/rules.redb        consistent copy of the rule store (when the server has one)
//! backups/{backup id}/LIFECYCLE         lifecycle policies (when any is set)
//! backups/{backup id}/rollups.json      rollup configuration and back-fill cursors (when any)
//! backups/{backup id}/COLD              cold-tier reference: store URL, manifest number, objects
//! backups/{backup id}/tombstones        erases not yet physically complete (when any)
//! backups/{backup id}/BACKUP            the backup manifest, written last
//! cold/{cold object key}                 cold objects (`backup --with-cold`), shared by every backup
//! ```
//!
//! A backup exists only once its `BACKUP` object exists, and `BACKUP` is written after every
//! object it lists, so an interrupted run leaves nothing that looks complete; the next run skips
//! the segment objects already there (their names carry id and checksum, and their size is
//! compared). `BACKUP` is JSON behind the same checksummed header as the MANIFEST
//! (`STRATA-BACKUP v1 crc32c=… len=…`), listing every file with its data-directory path, object
//! key, size and CRC32C.

use crate::error::{Result, StorageError};
use crate::fsutil::{check_checksum_header, with_checksum_header};

/// Header tag of the `BACKUP` object.
const TAG: &str = "STRATA-BACKUP";
/// Current version of the backup manifest.
pub const BACKUP_VERSION: u32 = 1;
/// Name of the backup manifest inside a backup's directory.
pub const BACKUP_FILE: &str = "BACKUP";
/// Marker written before anything else of a backup run (JSON: id, snapshot time, source), so
/// an interrupted run shows up as incomplete even before its first per-backup file.
pub const STARTED_FILE: &str = "STARTED";
/// Directory of the per-backup objects.
pub const BACKUPS_DIR: &str = "backups";
/// Directory of the shared segment objects.
pub const SEGMENTS_DIR: &str = "segments";

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackupFile {
    /// Path inside the data directory (`segments/0000000000000007.seg`, `wal/…`, `MANIFEST`).
    pub path: String,
    /// Object key relative to the target's prefix.
    pub object: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC32C of the whole file.
    pub crc32c: u32,
}

/// The backup manifest (`backups/{id}/BACKUP`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackupManifest {
    /// Format version ([`BACKUP_VERSION`]).
    pub version: u32,
    /// Backup id (sortable: UTC time of the snapshot, then a random suffix).
    pub id: String,
    /// When the server took the snapshot, ns since the epoch.
    pub created_ns: i64,
    /// Server the backup was taken from (its URL as given to the client).
    pub source: String,
    /// Version of the `strata` binary that wrote it.
    pub strata_version: String,
    /// Every file, segments first.
    pub files: Vec<BackupFile>,
}

impl BackupManifest {
    /// The `BACKUP` object's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec_pretty(self).unwrap_or_default();
        with_checksum_header(TAG, &body)
    }

    /// Parses a `BACKUP` object (`what` names it in errors).
    pub fn decode(bytes: &[u8], what: &str) -> Result<BackupManifest> {
        let path = std::path::Path::new(what);
        let body = check_checksum_header(TAG, bytes, path)?;
        let m: BackupManifest =
            serde_json::from_slice(body).map_err(|e| StorageError::Corrupt {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        if m.version != BACKUP_VERSION {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "backup manifest version {} is not supported by this build (expected {BACKUP_VERSION})",
                    m.version
                ),
            });
        }
        Ok(m)
    }

    /// Total bytes of the files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Object key of a segment file (relative to the target's prefix).
pub fn segment_object(id: u64, crc32c: u32) -> String {
    format!("{SEGMENTS_DIR}/{id:016}-{crc32c:08x}.seg")
}

/// Object key of a per-backup file.
pub fn backup_object(backup: &str, path: &str) -> String {
    format!("{BACKUPS_DIR}/{backup}/{path}")
}

/// Checks a backup id: `[0-9A-Za-z-]`, 1 to 64 characters (it becomes an object key segment).
pub fn check_backup_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    match ok {
        true => Ok(()),
        false => Err(StorageError::InvalidInput(format!(
            "'{id}' is not a backup id (letters, digits and '-', at most 64)"
        ))),
    }
}

/// Checks a path a backup lists before a restore writes it: relative, no `..`, only the
/// directories a data directory has.
pub fn check_restore_path(path: &str) -> Result<()> {
    let bad = || StorageError::InvalidInput(format!("backup lists an unsafe path '{path}'"));
    let parts: Vec<&str> = path.split('/').collect();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n != "."
            && n != ".."
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    match parts.as_slice() {
        [name] if name_ok(name) => Ok(()),
        [dir, name] if matches!(*dir, "segments" | "wal") && name_ok(name) => Ok(()),
        _ => Err(bad()),
    }
}

/// The first bytes of every redb database file.
const REDB_MAGIC: &[u8] = b"redb";

/// Structural checks of one restored file's bytes beyond its CRC32C (which the caller checks):
/// a segment's every chunk and footer, the checksummed headers of the MANIFEST, the tombstone
/// list, `LIFECYCLE` and `rollups.json`, the catalog log's frames, the cold reference's JSON and
/// the redb files' magic. Returns one line per problem; empty when intact. `scratch` is a
/// directory for the temporary file a segment check maps.
pub fn check_file(path: &str, bytes: &[u8], scratch: &std::path::Path) -> Vec<String> {
    let problem = |e: StorageError| vec![format!("{path}: {e}")];
    if path.starts_with("segments/") {
        let tmp = scratch.join("verify.seg");
        if let Err(e) = std::fs::write(&tmp, bytes) {
            return vec![format!("{path}: cannot write a scratch copy: {e}")];
        }
        let found = match crate::segment::verify_segment_file(&tmp) {
            Ok(problems) => problems
                .into_iter()
                .map(|p| format!("{path}: {p}"))
                .collect(),
            Err(e) => problem(e),
        };
        let _ = std::fs::remove_file(&tmp);
        return found;
    }
    let tagged = |tag: &str| match check_checksum_header(tag, bytes, std::path::Path::new(path)) {
        Ok(_) => Vec::new(),
        Err(e) => problem(e),
    };
    match path {
        "MANIFEST" => tagged("STRATA-MANIFEST"),
        "tombstones" => tagged("STRATA-TOMBSTONES"),
        "LIFECYCLE" => tagged("STRATA-LIFECYCLE"),
        "rollups.json" => tagged("strata-rollups"),
        crate::COLD_REFERENCE_FILE => match crate::ColdReference::decode(bytes, path) {
            Ok(_) => Vec::new(),
            Err(e) => problem(e),
        },
        "registry.redb" | "rules.redb" if !bytes.starts_with(REDB_MAGIC) => {
            vec![format!("{path}: not a redb database file")]
        }
        "catalog.log" if bytes.is_empty() => Vec::new(),
        "catalog.log" => match crate::parse_catalog_log(bytes) {
            Ok((_, valid)) if valid == bytes.len() as u64 => Vec::new(),
            Ok((_, valid)) => vec![format!(
                "{path}: only the first {valid} of {} bytes are intact",
                bytes.len()
            )],
            Err(e) => problem(e),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip_and_damage() {
        let m = BackupManifest {
            version: BACKUP_VERSION,
            id: "20261204T170000Z-ab12".into(),
            created_ns: 5,
            source: "http://h".into(),
            strata_version: "0".into(),
            files: vec![BackupFile {
                path: "MANIFEST".into(),
                object: backup_object("x", "MANIFEST"),
                size: 3,
                crc32c: 7,
            }],
        };
        let bytes = m.encode();
        assert_eq!(BackupManifest::decode(&bytes, "BACKUP").unwrap(), m);
        let mut bad = bytes.clone();
        let last = bad.len() - 3;
        bad[last] ^= 1;
        assert!(BackupManifest::decode(&bad, "BACKUP").is_err());
    }

    #[test]
    fn names_and_paths() {
        assert_eq!(
            segment_object(7, 0xab),
            "segments/0000000000000007-000000ab.seg"
        );
        assert!(check_backup_id("20261204T170000Z-ab12").is_ok());
        for bad in ["", "a/b", "..", "a b"] {
            assert!(check_backup_id(bad).is_err(), "{bad}");
        }
        for ok in ["MANIFEST", "segments/0000000000000001.seg", "wal/wal-1.log"] {
            assert!(check_restore_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "../x",
            "/etc/passwd",
            "segments/../../x",
            "other/x",
            "a//b",
            "",
        ] {
            assert!(check_restore_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policies_rollups_cold_reference_and_redb_files_are_checked() {
        let scratch = tempfile::tempdir().unwrap();
        let lifecycle = with_checksum_header("STRATA-LIFECYCLE", b"{}");
        assert!(check_file("LIFECYCLE", &lifecycle, scratch.path()).is_empty());
        let mut bad = lifecycle.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(check_file("LIFECYCLE", &bad, scratch.path()).len(), 1);
        let rollups = with_checksum_header("strata-rollups", b"{}");
        assert!(check_file("rollups.json", &rollups, scratch.path()).is_empty());
        assert_eq!(
            check_file("rollups.json", &lifecycle, scratch.path()).len(),
            1
        );
        let cold = crate::ColdReference {
            url: "file:///c".into(),
            manifest_number: 3,
            objects: Vec::new(),
        };
        assert!(check_file("COLD", &cold.encode(), scratch.path()).is_empty());
        assert_eq!(check_file("COLD", b"{", scratch.path()).len(), 1);
        assert!(check_file("rules.redb", b"redb\x1a\n", scratch.path()).is_empty());
        assert_eq!(check_file("rules.redb", b"nope", scratch.path()).len(), 1);
    }
}
