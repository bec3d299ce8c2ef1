//! The persisted lifecycle policies: one per database, optionally overridden per stream, in the
//! checksummed file `DATA/LIFECYCLE` (format in `docs/format.md`). A stream override replaces its
//! database's policy as a whole. Every change is written (temp file, fsync, rename, directory
//! fsync) before it is applied in memory, so a change that was acknowledged survives a crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LifecyclePolicy;
use crate::error::{IoContext, Result, StorageError};
use crate::fsutil::{check_checksum_header, with_checksum_header, write_atomic};

/// Header tag of `DATA/LIFECYCLE`.
const TAG: &str = "STRATA-LIFECYCLE";
/// Version of the JSON body.
const VERSION: u32 = 1;
/// File name inside the data directory.
pub const FILE_NAME: &str = "LIFECYCLE";

/// The contents of `DATA/LIFECYCLE`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct PolicyDoc {
    version: u32,
    /// Policy per database.
    databases: BTreeMap<String, LifecyclePolicy>,
    /// Stream overrides: database → stream → policy.
    streams: BTreeMap<String, BTreeMap<String, LifecyclePolicy>>,
}

/// Where a stream's effective policy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// The stream's own override.
    Stream,
    /// Its database's policy.
    Database,
    /// Nothing set: keep everything hot, forever.
    Default,
    /// An internal rollup stream (`_rollup_{every}_{stream}`): kept as long as its raw
    /// stream's policy says in that rollup's `keep` (forever when unset or no longer listed),
    /// always hot, no rollups of its own.
    Rollup,
}

/// The policies of every database and stream, loaded from and saved to one file.
#[derive(Debug)]
pub struct PolicyStore {
    path: PathBuf,
    doc: PolicyDoc,
}

impl PolicyStore {
    /// Loads `path`, or an empty store when it does not exist. A damaged file is an error (the
    /// engine refuses to open rather than silently forgetting a retention policy).
    pub fn load(path: &Path) -> Result<PolicyStore> {
        let doc = match std::fs::read(path) {
            Ok(bytes) => {
                let body = check_checksum_header(TAG, &bytes, path)?;
                let doc: PolicyDoc =
                    serde_json::from_slice(body).map_err(|e| StorageError::Corrupt {
                        path: path.to_path_buf(),
                        detail: e.to_string(),
                    })?;
                if doc.version != VERSION {
                    return Err(StorageError::Corrupt {
                        path: path.to_path_buf(),
                        detail: format!(
                            "lifecycle file version {} is not supported by this build (expected {VERSION})",
                            doc.version
                        ),
                    });
                }
                doc
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PolicyDoc {
                version: VERSION,
                ..PolicyDoc::default()
            },
            Err(e) => return Err(e).at(path),
        };
        Ok(PolicyStore {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// The policy set on `database` itself (no stream override), if any.
    pub fn database(&self, database: &str) -> Option<&LifecyclePolicy> {
        self.doc.databases.get(database)
    }

    /// The override set on one stream, if any.
    pub fn stream(&self, database: &str, stream: &str) -> Option<&LifecyclePolicy> {
        self.doc.streams.get(database)?.get(stream)
    }

    /// Stream overrides of `database`, by stream name.
    pub fn stream_overrides(&self, database: &str) -> BTreeMap<String, LifecyclePolicy> {
        self.doc.streams.get(database).cloned().unwrap_or_default()
    }

    /// Databases with a policy or a stream override.
    pub fn databases(&self) -> Vec<String> {
        let mut names: Vec<String> = self.doc.databases.keys().cloned().collect();
        names.extend(self.doc.streams.keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    /// The policy in force for `stream` of `database`, and where it comes from.
    pub fn effective(&self, database: &str, stream: &str) -> (LifecyclePolicy, PolicySource) {
        if let Some((raw, every)) = crate::rollup::parse_rollup_stream_name(stream) {
            let (parent, _) = self.effective(database, raw);
            let keep = parent.rollups.iter().find(|r| r.every == every);
            let policy = LifecyclePolicy {
                retention: keep.and_then(|r| r.keep),
                ..LifecyclePolicy::default()
            };
            return (policy, PolicySource::Rollup);
        }
        if let Some(p) = self.stream(database, stream) {
            return (p.clone(), PolicySource::Stream);
        }
        match self.database(database) {
            Some(p) => (p.clone(), PolicySource::Database),
            None => (LifecyclePolicy::default(), PolicySource::Default),
        }
    }

    /// Sets (`Some`) or removes (`None`) the policy of a database (`stream = None`) or a stream
    /// override, durably. The caller has validated the policy ([`check_policy`]).
    pub fn set(
        &mut self,
        database: &str,
        stream: Option<&str>,
        policy: Option<LifecyclePolicy>,
    ) -> Result<()> {
        let mut next = self.doc.clone();
        match (stream, policy) {
            (None, Some(p)) => {
                next.databases.insert(database.to_string(), p);
            }
            (None, None) => {
                next.databases.remove(database);
            }
            (Some(s), Some(p)) => {
                next.streams
                    .entry(database.to_string())
                    .or_default()
                    .insert(s.to_string(), p);
            }
            (Some(s), None) => {
                if let Some(m) = next.streams.get_mut(database) {
                    m.remove(s);
                    if m.is_empty() {
                        next.streams.remove(database);
                    }
                }
            }
        }
        if next == self.doc {
            return Ok(());
        }
        let body = serde_json::to_vec_pretty(&next)
            .map_err(|e| StorageError::Internal(format!("lifecycle policy encoding: {e}")))?;
        write_atomic(&self.path, &with_checksum_header(TAG, &body))?;
        self.doc = next;
        Ok(())
    }
}

/// Checks a policy on its own: positive durations, data hot no longer than it is kept, rollups
/// with distinct growing windows each kept at least one window. The message says what to change.
pub fn check_policy(p: &LifecyclePolicy) -> std::result::Result<(), String> {
    let positive = |what: &str, v: Option<i64>| match v {
        Some(n) if n <= 0 => Err(format!("{what} must be longer than 0")),
        _ => Ok(()),
    };
    positive("hot", p.hot)?;
    positive("retention", p.retention)?;
    if let (Some(hot), Some(keep)) = (p.hot, p.retention)
        && hot > keep
    {
        return Err(format!(
            "hot ({}) is longer than retention ({}): data would be deleted before it moves to the cold tier; make hot at most the retention, or leave hot unset",
            format_duration(hot),
            format_duration(keep)
        ));
    }
    let mut previous: Option<i64> = None;
    for r in &p.rollups {
        if r.every <= 0 {
            return Err("a rollup's every must be longer than 0".into());
        }
        positive("a rollup's keep", r.keep)?;
        if let Some(prev) = previous
            && r.every <= prev
        {
            return Err(format!(
                "rollups must be listed finest first with distinct windows: {} follows {}",
                format_duration(r.every),
                format_duration(prev)
            ));
        }
        if let Some(keep) = r.keep
            && keep < r.every
        {
            return Err(format!(
                "rollup every {} keeps {}, less than one window",
                format_duration(r.every),
                format_duration(keep)
            ));
        }
        previous = Some(r.every);
    }
    Ok(())
}

/// Formats nanoseconds in the largest unit that divides them exactly (`7d`, `90s`, `1500ms`),
/// the inverse of `strata_ingest::text::duration` for what it produces.
pub fn format_duration(ns: i64) -> String {
    const S: i64 = 1_000_000_000;
    const UNITS: [(&str, i64); 8] = [
        ("y", 365 * 86_400 * S),
        ("d", 86_400 * S),
        ("h", 3_600 * S),
        ("m", 60 * S),
        ("s", S),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    if ns <= 0 {
        return format!("{ns}ns");
    }
    let (unit, per) = UNITS
        .iter()
        .find(|(_, per)| ns % per == 0)
        .copied()
        .unwrap_or(("ns", 1));
    format!("{}{unit}", ns / per)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::RollupSpec;

    const D: i64 = 86_400 * 1_000_000_000;

    fn policy(hot: Option<i64>, retention: Option<i64>) -> LifecyclePolicy {
        LifecyclePolicy {
            hot,
            retention,
            rollups: vec![],
        }
    }

    #[test]
    fn set_survives_reload_and_overrides_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut store = PolicyStore::load(&path).unwrap();
        assert_eq!(store.effective("db", "s").1, PolicySource::Default);
        store
            .set("db", None, Some(policy(Some(7 * D), Some(400 * D))))
            .unwrap();
        store
            .set("db", Some("s"), Some(policy(None, Some(30 * D))))
            .unwrap();
        let store = PolicyStore::load(&path).unwrap();
        assert_eq!(
            store.effective("db", "s"),
            (policy(None, Some(30 * D)), PolicySource::Stream)
        );
        assert_eq!(
            store.effective("db", "t"),
            (policy(Some(7 * D), Some(400 * D)), PolicySource::Database)
        );
        assert_eq!(store.effective("other", "t").1, PolicySource::Default);
        let mut store = store;
        store.set("db", Some("s"), None).unwrap();
        assert_eq!(store.effective("db", "s").1, PolicySource::Database);
        assert!(
            PolicyStore::load(&path)
                .unwrap()
                .stream_overrides("db")
                .is_empty()
        );
    }

    #[test]
    fn a_damaged_file_is_refused_not_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut store = PolicyStore::load(&path).unwrap();
        store.set("db", None, Some(policy(None, Some(D)))).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
        let err = PolicyStore::load(&path).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn checks_explain_what_is_wrong() {
        assert!(check_policy(&policy(Some(D), Some(7 * D))).is_ok());
        let e = check_policy(&policy(Some(8 * D), Some(7 * D))).unwrap_err();
        assert!(e.contains("hot (8d) is longer than retention (7d)"), "{e}");
        assert!(check_policy(&policy(Some(0), None)).is_err());
        let mut p = policy(None, None);
        p.rollups = vec![
            RollupSpec {
                every: 3_600_000_000_000,
                keep: None,
            },
            RollupSpec {
                every: 60_000_000_000,
                keep: None,
            },
        ];
        let e = check_policy(&p).unwrap_err();
        assert!(e.contains("finest first"), "{e}");
    }

    #[test]
    fn durations_format_in_their_largest_exact_unit() {
        assert_eq!(format_duration(7 * D), "7d");
        assert_eq!(format_duration(90_000_000_000), "90s");
        assert_eq!(format_duration(1_500_000_000), "1500ms");
        assert_eq!(format_duration(365 * 5 * D), "5y");
        assert_eq!(format_duration(7), "7ns");
    }
}
