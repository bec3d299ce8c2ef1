//! Opening a data directory: lock it, load manifest and catalog (log, or the older JSON snapshot,
//! converted), open and verify segments in age order, delete orphan files from interrupted flushes
//! or compactions, and replay the WAL into the memtable.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use super::{
    BrokenSegment, Counters, EngineConfig, Inner, LiveSegment, Paths, RecoveryReport, State, write,
};
use crate::catalog_log::CatalogLog;
use crate::error::{IoContext, Result, StorageError};
use crate::manifest::{Manifest, segment_file_name};
use crate::segment::Segment;
use crate::wal::{Wal, WalOptions};
use crate::wal_record;

pub(super) fn open(config: EngineConfig) -> Result<Inner> {
    let paths = Paths::new(&config.data_dir);
    for dir in [&config.data_dir, &paths.wal, &paths.segments] {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    let lock = lock_dir(&config.data_dir)?;
    let manifest = Manifest::load(&paths.manifest)?;
    let mut report = RecoveryReport::default();
    let (catalog_log, catalog) = CatalogLog::open(&catalog_log_path(&paths), &paths.catalog)?;
    let mut state = State {
        catalog,
        rollups: super::rollups::load(&config.data_dir)?,
        ..State::default()
    };
    open_segments(
        &paths,
        &manifest,
        config.verify_on_open,
        &mut state,
        &mut report,
    );
    remove_orphans(&paths.segments, &manifest)?;
    remove_stale_temporaries(&paths)?;
    load_last_values(&mut state, &mut report);
    let opts = WalOptions {
        dir: paths.wal.clone(),
        durability: config.durability,
        max_file_bytes: config.wal_file_bytes,
    };
    let (wal, replay) = Wal::open(opts, manifest.wal_min_file)?;
    for w in &replay.warnings {
        tracing::warn!(damage = %w, "WAL damage found during replay");
    }
    report.wal_warnings.extend(replay.warnings);
    for rec in &replay.records {
        let applied = wal_record::decode(&rec.payload)
            .map_err(|e| e.to_string())
            .and_then(|batch| write::replay(&mut state, &batch).map_err(|e| e.to_string()));
        match applied {
            Ok(()) => report.wal_records += 1,
            Err(e) => {
                let msg = format!("WAL file {} record {}: {e}", rec.file_id, rec.seq);
                tracing::warn!(damage = %msg, "skipped an unreadable WAL record");
                report.wal_warnings.push(msg);
            }
        }
    }
    tracing::info!(
        segments = state.segments.len(),
        series = state.catalog.series.len(),
        wal_records = report.wal_records,
        "storage engine opened"
    );
    Ok(Inner {
        config,
        paths,
        wal,
        state: RwLock::new(state),
        maintenance: Mutex::new(manifest),
        flush_lock: Mutex::new(()),
        compaction_lock: Mutex::new(()),
        catalog_log: Mutex::new(catalog_log),
        counters: Counters::default(),
        shutdown: Default::default(),
        wake: (Mutex::new(false), Condvar::new()),
        recovery: report,
        rollup: Default::default(),
        _lock: lock,
    })
}

/// The catalog log, `DATA/catalog.log` (the older JSON snapshot was `DATA/catalog`).
pub(super) fn catalog_log_path(paths: &Paths) -> std::path::PathBuf {
    paths.catalog.with_extension("log")
}

/// Fills the last-value cache from the segments (newest data first, so older segments are
/// mostly skipped); the WAL replay then applies newer writes on top. A segment whose data cannot
/// be read is reported like other damage and skipped.
fn load_last_values(state: &mut State, report: &mut RecoveryReport) {
    let State {
        segments,
        catalog,
        last,
        ..
    } = state;
    let mut order: Vec<usize> = (0..segments.len()).collect();
    order.sort_by_key(|&i| {
        let m = &segments[i].meta;
        std::cmp::Reverse((m.max_time, m.age()))
    });
    for i in order {
        let live = &mut segments[i];
        let Some(stream) = catalog.stream_id(&live.meta.database, &live.meta.stream) else {
            continue;
        };
        let meta = catalog.stream(stream);
        // The cache breaks ties between segments by `meta.id` as "newer"; the age order is `seq`
        // (a compaction output has a higher id than segments flushed while it was merged). `seq`
        // is unique among live segments, so lend it as the id for the load. The Arcs are not
        // shared yet at open.
        let loaded = match Arc::get_mut(live) {
            Some(l) => {
                let id = std::mem::replace(&mut l.meta.id, l.meta.seq);
                let r = last.load_segment(l, |name| meta.field_id(name));
                l.meta.id = id;
                r
            }
            None => last.load_segment(live, |name| meta.field_id(name)),
        };
        if let Err(e) = loaded {
            tracing::error!(error = %e, "cannot read latest values from a segment");
            let msg = e.to_string();
            if !report.segment_errors.contains(&msg) {
                report.segment_errors.push(msg);
            }
        }
    }
}

/// Takes an exclusive lock on `DATA/LOCK` so two servers never share a data directory.
fn lock_dir(root: &Path) -> Result<File> {
    let path = root.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at(&path)?;
    file.try_lock().map_err(|_| {
        StorageError::InvalidInput(format!(
            "data directory {} is in use by another Strata process (lock file {})",
            root.display(),
            path.display()
        ))
    })?;
    Ok(file)
}

fn open_segments(
    paths: &Paths,
    manifest: &Manifest,
    verify: bool,
    state: &mut State,
    report: &mut RecoveryReport,
) {
    for meta in &manifest.segments {
        let path = paths.segment(meta.id);
        let opened = Segment::open(&path).and_then(|segment| {
            let matches = segment.database == meta.database
                && segment.stream == meta.stream
                && segment.partition_start == meta.partition_start;
            match matches {
                true => Ok(segment),
                false => Err(StorageError::Corrupt {
                    path: path.clone(),
                    detail: format!(
                        "footer names {}/{} partition {}, the manifest says {}/{} partition {}",
                        segment.database,
                        segment.stream,
                        segment.partition_start,
                        meta.database,
                        meta.stream,
                        meta.partition_start
                    ),
                }),
            }
        });
        match opened {
            Ok(segment) => {
                if verify {
                    for damage in segment.verify() {
                        tracing::error!(damage = %damage, "segment damage found at open");
                        report.segment_errors.push(damage);
                    }
                }
                state.segments.push(Arc::new(LiveSegment {
                    meta: meta.clone(),
                    segment,
                }));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open segment; reads of its time range will fail");
                report.segment_errors.push(e.to_string());
                state.broken.push(BrokenSegment {
                    meta: meta.clone(),
                    error: e.to_string(),
                });
            }
        }
    }
    state.segments.sort_by_key(|l| l.meta.age());
}

/// Deletes the temporary files of an interrupted atomic replace (`MANIFEST.tmp`, `catalog.tmp`):
/// the file they were to replace is intact.
fn remove_stale_temporaries(paths: &Paths) -> Result<()> {
    for path in [
        paths.manifest.with_extension("tmp"),
        catalog_log_path(paths).with_extension("tmp"),
    ] {
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(file = %path.display(), "removed a temporary file of an interrupted write")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&path),
        }
    }
    Ok(())
}

/// Deletes segment files the manifest does not name (leftovers of interrupted flushes/compactions).
fn remove_orphans(dir: &Path, manifest: &Manifest) -> Result<()> {
    let live: HashSet<String> = manifest
        .segments
        .iter()
        .map(|m| segment_file_name(m.id))
        .collect();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !live.contains(&name) {
            tracing::info!(file = %name, "removing orphan file from an interrupted flush or compaction");
            std::fs::remove_file(entry.path()).at(entry.path())?;
        }
    }
    Ok(())
}
