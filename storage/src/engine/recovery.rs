//! Opening a data directory: lock it, load manifest and catalog (log, or the older JSON snapshot,
//! converted), open and verify segments in age order, delete orphan files from interrupted flushes
//! or compactions, and replay the WAL into the memtable.
//!
//! Recovery refuses rather than destroys (`StorageError::Refused`, naming the file and the fix):
//! a missing MANIFEST is a new directory only when no segment exists and the WAL is complete from
//! its first file; a missing catalog with segments present, damage in the middle of a WAL file
//! (intact records after it) and a WAL record that cannot be applied all refuse. With
//! `EngineConfig::force_recovery` (`strata repair`) the same cases salvage what verifies, set the
//! damaged files aside in `DATA/damaged/<time>/`, and [`checkpoint`] flushes the result so the
//! damaged WAL files are no longer needed.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use super::{
    BrokenSegment, Counters, EngineConfig, Inner, LiveSegment, Paths, RecoveryReport, State, apply,
};
use crate::catalog_log::CatalogLog;
use crate::damaged::SetAside;
use crate::error::{IoContext, Result, StorageError};
use crate::manifest::{Manifest, SegmentMeta, segment_file_name};
use crate::segment::Segment;
use crate::wal::{RecoverOptions, Wal, WalError, WalOptions, file_name, parse_file_name};
use crate::wal_record;

pub(super) fn open(config: EngineConfig) -> Result<Inner> {
    let paths = Paths::new(&config.data_dir);
    for dir in [&config.data_dir, &paths.wal, &paths.segments] {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    let lock = lock_dir(&config.data_dir)?;
    let lifecycle = super::policy::LifecycleState::open(&config.data_dir)?;
    let mut aside = SetAside::new(&config.data_dir);
    let mut report = RecoveryReport::default();
    let mut manifest = load_manifest(&config, &paths, &mut aside, &mut report)?;
    let (cold, cold_objects, cold_manifest) = match &config.cold_store {
        Some(url) => {
            let tier = crate::cold::ColdTier::open(url, config.cold_cache_bytes)?;
            let (committed, objects, notes) =
                super::cold_move::reconcile(&tier, &mut manifest, &paths.manifest)?;
            for n in &notes {
                tracing::warn!(note = %n, "cold tier reconciliation");
            }
            report.cold_notes = notes;
            (Some(Arc::new(tier)), objects, committed)
        }
        None => (None, Vec::new(), crate::cold::ColdManifest::default()),
    };
    let mut state = State {
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
    let series_needed = state
        .segments
        .iter()
        .filter_map(|l| l.segment.series_ids().max())
        .max()
        .map_or(0, |id| id as usize + 1);
    let (catalog_log, mut catalog) = open_catalog(&paths, &manifest, series_needed)?;
    if let Some(tier) = &cold {
        super::cold_move::learn_catalog(tier, &cold_objects, &mut catalog, &mut report.cold_notes);
    }
    state.catalog = catalog;
    state.cold = cold_objects;
    remove_orphans(&paths.segments, &manifest)?;
    remove_stale_temporaries(&paths)?;
    load_last_values(&mut state, &mut report);
    let opts = WalOptions {
        dir: paths.wal.clone(),
        durability: config.durability,
        max_file_bytes: config.wal_file_bytes,
    };
    let recover = RecoverOptions {
        salvage: config.force_recovery,
        aside_dir: aside.dir().to_path_buf(),
    };
    let (wal, replay) = Wal::open_with(opts, manifest.wal_min_file, &recover)
        .map_err(|e| refuse_wal(&config, e))?;
    for w in &replay.warnings {
        tracing::warn!(damage = %w, "WAL damage found during replay");
    }
    report.wal_warnings.extend(replay.warnings);
    report.set_aside.extend(replay.set_aside);
    apply_replay(
        &config,
        &paths,
        &replay.records,
        &mut state,
        &mut aside,
        &mut report,
    )?;
    report.set_aside.append(&mut aside.placed);
    tracing::info!(
        segments = state.segments.len(),
        series = state.catalog.series.len(),
        wal_records = report.wal_records,
        "storage engine opened"
    );
    let runs_cache = Arc::new(super::runs_cache::RunsCache::new(config.runs_cache_bytes));
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
        lifecycle,
        cold,
        cold_manifest: Mutex::new(cold_manifest),
        runs_cache,
        _lock: lock,
    })
}

/// What the operator can do about damage that a forced recovery salvages.
fn repair_hint(config: &EngineConfig) -> String {
    let dir = config.data_dir.display();
    format!(
        "run `strata repair --data-dir {dir}` (keeps everything that verifies and sets the damaged files aside in {dir}/damaged/), or restore the data directory from a backup"
    )
}

fn refused(path: &Path, problem: String, fix: String) -> StorageError {
    StorageError::Refused {
        path: path.to_path_buf(),
        problem,
        fix,
    }
}

/// Loads the MANIFEST; a missing or damaged one is a new directory, a refusal, or (forced) rebuilt.
fn load_manifest(
    config: &EngineConfig,
    paths: &Paths,
    aside: &mut SetAside,
    report: &mut RecoveryReport,
) -> Result<Manifest> {
    let problem = match Manifest::load_existing(&paths.manifest) {
        Ok(Some(manifest)) => return Ok(manifest),
        Ok(None) => match missing_manifest_problem(paths)? {
            None => {
                // A new directory (or one that never flushed: the WAL holds everything).
                let manifest = Manifest::empty();
                manifest.save(&paths.manifest)?;
                return Ok(manifest);
            }
            Some(problem) => problem,
        },
        Err(e @ StorageError::Corrupt { .. }) => {
            let problem = format!("the MANIFEST fails its checks ({e})");
            if config.force_recovery {
                let moved = aside.move_file(&paths.manifest).at(aside.dir())?;
                report
                    .repairs
                    .push(format!("{problem}; moved it to {}", moved.display()));
            }
            problem
        }
        Err(e) => return Err(e),
    };
    if !config.force_recovery {
        return Err(refused(
            &paths.manifest,
            problem,
            format!(
                "{}; a repair rebuilds the MANIFEST from the segment footers and replays every WAL file",
                repair_hint(config)
            ),
        ));
    }
    tracing::warn!(problem = %problem, "forced recovery: rebuilding the MANIFEST from the segment files");
    report.repairs.push(format!(
        "{problem}: rebuilt the MANIFEST from the segment footers (segments ordered by file id) and replayed every WAL file"
    ));
    rebuild_manifest(paths, aside, report)
}

/// Why a missing MANIFEST does not mean a new data directory, if it does not.
fn missing_manifest_problem(paths: &Paths) -> Result<Option<String>> {
    let segments = segment_ids(&paths.segments)?;
    if !segments.is_empty() {
        return Ok(Some(format!(
            "the MANIFEST is missing but {} holds {} segment files, so this is not a new data directory (opening it as one would delete them as orphans)",
            paths.segments.display(),
            segments.len()
        )));
    }
    let mut wal: Vec<u64> = std::fs::read_dir(&paths.wal)
        .at(&paths.wal)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(parse_file_name))
        .collect();
    wal.sort_unstable();
    let complete = wal.iter().enumerate().all(|(i, &id)| id == i as u64 + 1);
    if complete {
        return Ok(None);
    }
    Ok(Some(format!(
        "the MANIFEST is missing but the WAL files in {} are not complete from the first one (ids {:?}): earlier ones were removed after their data went into segments, so this is not a new data directory",
        paths.wal.display(),
        wal
    )))
}

/// Ids of the `*.seg` files in `dir`.
fn segment_ids(dir: &Path) -> Result<Vec<u64>> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let digits = name.strip_suffix(".seg")?;
            (digits.len() == 16).then(|| digits.parse().ok())?
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Forced recovery: a MANIFEST naming every segment file that opens (in id order; a compaction
/// output's age is approximated by its id) and replaying every WAL file. Segments that cannot be
/// opened are set aside.
fn rebuild_manifest(
    paths: &Paths,
    aside: &mut SetAside,
    report: &mut RecoveryReport,
) -> Result<Manifest> {
    let mut manifest = Manifest::empty();
    for id in segment_ids(&paths.segments)? {
        manifest.next_segment_id = manifest.next_segment_id.max(id + 1);
        let path = paths.segment(id);
        match Segment::open(&path).and_then(|s| segment_meta(id, &path, &s)) {
            Ok(meta) => manifest.segments.push(meta),
            Err(e) => {
                let moved = aside.move_file(&path).at(aside.dir())?;
                report.repairs.push(format!(
                    "segment {} cannot be opened ({e}); moved it to {}",
                    path.display(),
                    moved.display()
                ));
            }
        }
    }
    manifest.save(&paths.manifest)?;
    Ok(manifest)
}

/// The manifest entry of a segment, from its footer.
fn segment_meta(id: u64, path: &Path, segment: &Segment) -> Result<SegmentMeta> {
    let (mut rows, mut min_time, mut max_time) = (0u64, i64::MAX, i64::MIN);
    for (block, _) in segment.blocks() {
        rows += u64::from(block.rows);
        min_time = min_time.min(block.min_time);
        max_time = max_time.max(block.max_time);
    }
    Ok(SegmentMeta {
        id,
        seq: id,
        database: segment.database.clone(),
        stream: segment.stream.clone(),
        partition_start: segment.partition_start,
        min_time,
        max_time,
        rows,
        bytes: std::fs::metadata(path).at(path)?.len(),
    })
}

/// Opens the catalog; a missing one with segments present, a damaged one, or one defining fewer
/// series than the segments hold (`series_needed`) refuses (forced or not: series ids in
/// segments cannot be resolved without it, and new series would take their ids).
fn open_catalog(
    paths: &Paths,
    manifest: &Manifest,
    series_needed: usize,
) -> Result<(CatalogLog, crate::catalog::Catalog)> {
    let log = catalog_log_path(paths);
    let fix = format!(
        "restore {} from a backup of this data directory (the series ids in the segments are only resolved by it; `strata repair` cannot rebuild it)",
        log.display()
    );
    if !log.exists() && !paths.catalog.exists() && !manifest.segments.is_empty() {
        let problem = format!(
            "the catalog is missing but the MANIFEST names {} segments; a new catalog would give their series ids to other series",
            manifest.segments.len()
        );
        return Err(refused(&log, problem, fix));
    }
    CatalogLog::open_needing(&log, &paths.catalog, series_needed).map_err(|e| match e {
        StorageError::Corrupt { path, detail } => {
            refused(&path, format!("the catalog is damaged: {detail}"), fix)
        }
        other => other,
    })
}

/// A WAL refusal with the fix named.
fn refuse_wal(config: &EngineConfig, e: WalError) -> StorageError {
    match e {
        WalError::Damaged {
            path,
            offset,
            detail,
        } => refused(
            &path,
            format!("damage at byte offset {offset}: {detail}"),
            repair_hint(config),
        ),
        other => other.into(),
    }
}

/// Applies the replayed records to the memtable. A record that cannot be applied refuses the open
/// (its WAL file would otherwise be deleted at the next flush); forced, it is skipped and a copy of
/// its file set aside.
fn apply_replay(
    config: &EngineConfig,
    paths: &Paths,
    records: &[crate::wal::WalRecord],
    state: &mut State,
    aside: &mut SetAside,
    report: &mut RecoveryReport,
) -> Result<()> {
    let mut copied = HashSet::new();
    for rec in records {
        let applied = wal_record::decode(&rec.payload)
            .map_err(|e| e.to_string())
            .and_then(|batch| apply::replay(state, &batch).map_err(|e| e.to_string()));
        let Err(e) = applied else {
            report.wal_records += 1;
            continue;
        };
        let path = paths.wal.join(file_name(rec.file_id));
        let problem = format!(
            "WAL record {} ({} bytes) passes its checksum but cannot be applied: {e}",
            rec.seq,
            rec.payload.len()
        );
        if !config.force_recovery {
            let fix = format!(
                "{} (a repair skips the record and keeps a copy of the file)",
                repair_hint(config)
            );
            return Err(refused(&path, problem, fix));
        }
        if copied.insert(rec.file_id) && path.exists() {
            aside.copy_file(&path).at(aside.dir())?;
        }
        tracing::warn!(damage = %problem, file = %path.display(), "forced recovery: skipped a WAL record");
        report
            .repairs
            .push(format!("{}: {problem}; skipped it", path.display()));
    }
    Ok(())
}

/// After a forced recovery: flushes what was salvaged and moves the WAL checkpoint past every
/// replayed file, so damaged WAL files (copies kept in `DATA/damaged/`) are no longer needed and a
/// normal open succeeds. Runs before the engine is shared (no writer, no background thread).
pub(super) fn checkpoint(inner: &Inner) -> Result<()> {
    super::flush::flush(inner)?;
    let cut = inner.wal.rotate()?;
    {
        let mut manifest = inner.maintenance.lock().map_err(|_| super::poisoned())?;
        let mut next = manifest.clone();
        next.wal_min_file = next.wal_min_file.max(cut);
        next.save(&inner.paths.manifest)?;
        *manifest = next;
    }
    inner.wal.remove_before(cut)?;
    Ok(())
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
///
/// A lock held by someone else is retried for [`LOCK_PATIENCE`] before the open is refused: a
/// child process forked by this one (a subprocess spawned anywhere in the program) briefly
/// shares every open file, this lock included, until it execs, so an engine reopened right after
/// it was dropped can find its own old lock still held for a moment.
fn lock_dir(root: &Path) -> Result<File> {
    let path = root.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at(&path)?;
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError::InvalidInput(format!(
                    "data directory {} is in use by another Strata process (lock file {}); stop it, or use another --data-dir",
                    root.display(),
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StorageError::Io { path, source });
            }
        }
    }
}

/// How long [`lock_dir`] waits for a lock held by someone else.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

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

/// Deletes the temporary files of an interrupted atomic replace (`MANIFEST.tmp`, `catalog.tmp`,
/// and the `*.prev` old copies): the file they were to replace is intact, or replaced.
fn remove_stale_temporaries(paths: &Paths) -> Result<()> {
    for path in [
        paths.manifest.with_extension("tmp"),
        paths
            .manifest
            .with_file_name(crate::lifecycle::store::FILE_NAME)
            .with_extension("tmp"),
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
    // The old contents an atomic replace keeps until its directory fsync (`fsutil::write_atomic`).
    let dir = paths.manifest.parent().unwrap_or(Path::new("."));
    for entry in std::fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        if path.extension().is_some_and(|e| e == "prev") && path.is_file() {
            std::fs::remove_file(&path).at(&path)?;
            tracing::info!(file = %path.display(), "removed the old copy of an interrupted replace");
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
