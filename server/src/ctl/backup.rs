//! `strata backup --to URL` (a running server, over its admin HTTP API), `strata backup verify
//! --from URL`, `strata backup list --from URL` and `strata restore --from URL --data-dir NEW`.
//!
//! A backup run opens a session on the server (one consistent snapshot, `POST /api/v1/backup`),
//! lists the target's segment objects, copies the segments it lacks (their object names carry id
//! and CRC32C, so an incremental or resumed run skips what is there) and the per-backup files,
//! checks each file's CRC32C against the server's, writes the backup manifest `BACKUP` last and
//! releases the session. With `--with-cold` it also copies the cold objects the snapshot's `COLD`
//! reference lists, straight from the cold store, into `cold/`; a restore checks the cold store
//! still holds them, or with `--cold-to` rebuilds a cold store from the copies. Layout and
//! manifest: `strata_storage::backup` and `docs/format.md`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};
use strata_storage::backup::{
    BACKUP_FILE, BACKUP_VERSION, BACKUPS_DIR, BackupFile, BackupManifest, SEGMENTS_DIR,
    STARTED_FILE, backup_object, check_backup_id, check_file, check_restore_path, segment_object,
};
use strata_storage::objstore::StoreUrl;
use strata_storage::{COLD_REFERENCE_FILE, ColdReference};

use crate::ctl::client::enc;
use crate::ctl::{Connection, print_json};

/// `strata backup`: back up a running server, or check / list the backups of a target.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// Target: a directory (DIR or file:///absolute/dir), s3://bucket/prefix or az://container/prefix (credentials
    /// from the AWS_* / AZURE_STORAGE_* environment variables).
    #[arg(long, value_name = "URL")]
    to: Option<String>,
    /// Copy at most this many MB per second (0: no limit).
    #[arg(long, value_name = "MB_PER_S", default_value_t = 0.0)]
    max_rate: f64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Also copy the cold tier's objects (from the server's `--cold-store`, read directly by this
    /// client with its credentials) into the target under `cold/`, each once for all backups.
    #[arg(long)]
    with_cold: bool,
    /// Read the cold objects from this URL instead of the one the server reports.
    #[arg(long, value_name = "URL", requires = "with_cold")]
    cold_from: Option<String>,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Check every file of the target's backups: presence, size, CRC32C, and each segment's,
    /// MANIFEST's and catalog's own checksums. Exits non-zero on any damage.
    Verify {
        /// The backup target.
        #[arg(long, value_name = "URL")]
        from: String,
        /// Only this backup (default: every complete backup).
        #[arg(long)]
        backup: Option<String>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// List the complete backups of a target, oldest first.
    List {
        /// The backup target.
        #[arg(long, value_name = "URL")]
        from: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `strata restore`: write a backup into a new data directory.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup target.
    #[arg(long, value_name = "URL")]
    from: String,
    /// The data directory to create (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Which backup (default: the newest complete one).
    #[arg(long)]
    backup: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// The cold store the restored server will run with (`--cold-store`): checked to still hold
    /// every cold object the backup's snapshot read (default: the URL the backup recorded).
    #[arg(long, value_name = "URL")]
    cold_store: Option<String>,
    /// Do not check the cold store (restore offline; the server checks at start).
    #[arg(long)]
    no_cold_check: bool,
    /// Write the cold objects copied by `backup --with-cold` into this (empty) cold store, with a
    /// cold manifest listing them; start the restored server with `--cold-store` this URL.
    #[arg(long, value_name = "URL", conflicts_with = "cold_store")]
    cold_to: Option<String>,
}

/// Runs `strata backup ...`.
pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    match args.command {
        Some(BackupCommand::Verify { from, backup, json }) => {
            verify(&from, backup.as_deref(), json)
        }
        Some(BackupCommand::List { from, json }) => list(&from, json),
        None => {
            let to = args.to.ok_or_else(|| {
                anyhow!("--to URL is required (or use `strata backup verify|list`)")
            })?;
            let cold = args.with_cold.then_some(ColdCopy {
                from: args.cold_from,
            });
            backup(&args.conn, &to, args.max_rate, args.quiet, cold)
        }
    }
}

/// An opened target: the store, its key prefix and a runtime to drive it.
struct Target {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    rt: tokio::runtime::Runtime,
    url: String,
}

impl Target {
    fn open(url: &str) -> anyhow::Result<Target> {
        let parsed = StoreUrl::parse(url)?;
        let (store, prefix) = parsed.open()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Target {
            store,
            prefix: prefix.as_ref().to_owned(),
            rt,
            url: url.to_owned(),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        match self.prefix.is_empty() {
            true => ObjectPath::from(key),
            false => ObjectPath::from(format!("{}/{key}", self.prefix)),
        }
    }

    /// Keys (relative to the prefix) and sizes of the objects under `dir`.
    fn list(&self, dir: &str) -> anyhow::Result<BTreeMap<String, u64>> {
        let path = self.path(dir);
        let strip = match self.prefix.is_empty() {
            true => String::new(),
            false => format!("{}/", self.prefix),
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.store.list(Some(&path)).try_collect())
            .with_context(|| format!("cannot list {dir}/ in {}", self.url))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let key = m.location.as_ref().strip_prefix(&strip)?.to_owned();
                Some((key, m.size))
            })
            .collect())
    }

    fn get(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.path(key);
        let bytes = self
            .rt
            .block_on(async { self.store.get(&path).await?.bytes().await });
        Ok(bytes
            .with_context(|| format!("cannot read {key} from {}", self.url))?
            .to_vec())
    }

    fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let path = self.path(key);
        self.rt
            .block_on(self.store.put(&path, bytes.into()))
            .with_context(|| format!("cannot write {key} to {}", self.url))?;
        Ok(())
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = self.path(key);
        self.rt
            .block_on(self.store.delete(&path))
            .with_context(|| format!("cannot delete {key} from {}", self.url))
    }

    /// Backup ids with a `BACKUP` object (complete), and those without (interrupted runs).
    fn backups(&self) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let mut dirs: BTreeMap<String, bool> = BTreeMap::new();
        for key in self.list(BACKUPS_DIR)?.into_keys() {
            let mut parts = key.splitn(3, '/');
            let (_, Some(id), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let complete = dirs.entry(id.to_owned()).or_default();
            *complete |= rest == BACKUP_FILE;
        }
        let complete = dirs.iter().filter(|(_, c)| **c).map(|(id, _)| id.clone());
        let partial = dirs.iter().filter(|(_, c)| !**c).map(|(id, _)| id.clone());
        Ok((complete.collect(), partial.collect()))
    }

    fn manifest(&self, id: &str) -> anyhow::Result<BackupManifest> {
        check_backup_id(id)?;
        let key = backup_object(id, BACKUP_FILE);
        let bytes = self.get(&key)?;
        Ok(BackupManifest::decode(&bytes, &key)?)
    }
}

/// The longest a copy goes without a keep-alive call to its session: a quarter of the idle
/// release the server announces (`idle_release_s`), at most a minute.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// How long to wait so that `done` bytes since `started` stay under `mb_per_s` (0: no limit).
fn throttle_wait(done: u64, started: Instant, mb_per_s: f64) -> Duration {
    if mb_per_s <= 0.0 {
        return Duration::ZERO;
    }
    let due = Duration::from_secs_f64(done as f64 / (mb_per_s * 1e6));
    due.saturating_sub(started.elapsed())
}

/// Paces a backup's copy (`--max-rate`, segment files and cold objects alike) and keeps its
/// server session alive: a slow copy calls `GET /api/v1/backup/{id}` at least every
/// [`KEEP_ALIVE`] (or a quarter of the server's idle release, when shorter), also while it
/// waits, so the server never releases the snapshot mid-run.
struct Pacer<'a> {
    client: &'a crate::ctl::Client,
    session: String,
    mb_per_s: f64,
    started: Instant,
    done: u64,
    touched: Instant,
    /// `None` for a server that announces no idle release (and has no keep-alive call).
    every: Option<Duration>,
}

impl<'a> Pacer<'a> {
    fn new(client: &'a crate::ctl::Client, id: &str, session: &Value, mb_per_s: f64) -> Self {
        let every = session["idle_release_s"]
            .as_f64()
            .and_then(|s| Duration::try_from_secs_f64(s / 4.0).ok())
            .map(|d| d.clamp(Duration::from_millis(250), KEEP_ALIVE));
        Pacer {
            client,
            session: format!("/api/v1/backup/{}", enc(id)),
            mb_per_s,
            started: Instant::now(),
            done: 0,
            touched: Instant::now(),
            every,
        }
    }

    /// After `bytes` more were copied: waits for the rate, touching the session as it goes.
    fn copied(&mut self, bytes: u64) -> anyhow::Result<()> {
        self.done += bytes;
        let mut wait = throttle_wait(self.done, self.started, self.mb_per_s);
        loop {
            let slice = match self.every {
                Some(every) => {
                    if self.touched.elapsed() >= every {
                        self.touch()?;
                    }
                    wait.min(every.saturating_sub(self.touched.elapsed()))
                }
                None => wait,
            };
            if wait.is_zero() {
                return Ok(());
            }
            std::thread::sleep(slice);
            wait -= slice;
        }
    }

    fn touch(&mut self) -> anyhow::Result<()> {
        self.client.get(&self.session).with_context(|| {
            format!(
                "the backup session {} could not be kept alive (released by the server?)",
                self.session
            )
        })?;
        self.touched = Instant::now();
        Ok(())
    }
}

/// One file of the server's session.
#[derive(Debug, Clone, serde::Deserialize)]
struct SessionFile {
    path: String,
    size: u64,
    crc32c: u32,
}

/// Where a session file goes in the target.
fn object_of(backup: &str, f: &SessionFile) -> anyhow::Result<String> {
    check_restore_path(&f.path)?;
    Ok(match f.path.strip_prefix("segments/") {
        Some(name) => {
            let id = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| anyhow!("server listed an unexpected segment name '{}'", f.path))?;
            segment_object(id, f.crc32c)
        }
        None => backup_object(backup, &f.path),
    })
}

/// `--with-cold`: copy the cold objects too.
#[derive(Debug, Clone)]
struct ColdCopy {
    /// Where to read them (default: the URL in the snapshot's cold reference).
    from: Option<String>,
}

/// Directory of the cold objects in a backup target (`cold/{object key}`).
const COLD_DIR: &str = "cold";

fn backup(
    conn: &Connection,
    to: &str,
    max_rate: f64,
    quiet: bool,
    cold: Option<ColdCopy>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let target = Target::open(to)?;
    let client = conn.client()?;
    let session = client.post("/api/v1/backup", json!({}))?;
    let id = session["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the server's backup session has no id: {session}"))?
        .to_owned();
    check_backup_id(&id)?;
    let result = copy_session(&client, &target, &id, &session, (max_rate, quiet), cold);
    // Release the pinned snapshot whatever happened (it also expires on the server).
    if let Err(e) = client.delete(&format!("/api/v1/backup/{}", enc(&id))) {
        eprintln!("warning: could not release backup session {id}: {e:#}");
    }
    let report = result?;
    let secs = started.elapsed().as_secs_f64();
    let copied_mb = report.copied_bytes as f64 / 1e6;
    if conn.json {
        print_json(&json!({
            "backup": id, "target": to, "files": report.files,
            "copied_files": report.copied_files, "copied_bytes": report.copied_bytes,
            "skipped_segments": report.skipped, "skipped_bytes": report.skipped_bytes,
            "cold_objects_copied": report.cold_copied, "cold_objects_skipped": report.cold_skipped,
            "seconds": secs, "mb_per_s": copied_mb / secs.max(1e-9),
        }));
    } else {
        println!(
            "backup {id} complete in {to}: {} files, copied {} ({copied_mb:.1} MB), skipped {} segments and {} cold objects already there ({:.1} MB), {secs:.1} s, {:.1} MB/s",
            report.files,
            report.copied_files,
            report.skipped,
            report.cold_skipped,
            report.skipped_bytes as f64 / 1e6,
            copied_mb / secs.max(1e-9),
        );
    }
    Ok(())
}

#[derive(Debug, Default)]
struct CopyReport {
    files: usize,
    copied_files: usize,
    copied_bytes: u64,
    skipped: usize,
    skipped_bytes: u64,
    /// Cold objects copied and already in the target (`--with-cold`).
    cold_copied: usize,
    cold_skipped: usize,
}

fn copy_session(
    client: &crate::ctl::Client,
    target: &Target,
    id: &str,
    session: &Value,
    (max_rate, quiet): (f64, bool),
    cold: Option<ColdCopy>,
) -> anyhow::Result<CopyReport> {
    let files: Vec<SessionFile> = serde_json::from_value(session["files"].clone())
        .context("the server's backup session lists no files")?;
    // Written first: an interrupted run is listed as incomplete from its first byte on.
    let started = json!({"id": id, "created_ns": session["created_ns"], "source": client.base()});
    target.put(
        &backup_object(id, STARTED_FILE),
        started.to_string().into_bytes(),
    )?;
    let present = target.list(SEGMENTS_DIR)?;
    let mut report = CopyReport {
        files: files.len(),
        ..CopyReport::default()
    };
    let mut listed = Vec::with_capacity(files.len());
    let mut todo = Vec::new();
    for f in &files {
        let object = object_of(id, f)?;
        let have = f.path.starts_with("segments/") && present.get(&object) == Some(&f.size);
        if have {
            report.skipped += 1;
            report.skipped_bytes += f.size;
        } else {
            todo.push((f, object.clone()));
        }
        listed.push(BackupFile {
            path: f.path.clone(),
            object,
            size: f.size,
            crc32c: f.crc32c,
        });
    }
    let total: u64 = todo.iter().map(|(f, _)| f.size).sum();
    let bar = super::progress::bytes(total, quiet, &format!("backup {id}"));
    let mut pace = Pacer::new(client, id, session, max_rate);
    for (f, object) in todo {
        let path = format!("/api/v1/backup/{}/files/{}", enc(id), f.path);
        let bytes = client.get_bytes(&path)?;
        let crc = crc32c::crc32c(&bytes);
        if bytes.len() as u64 != f.size || crc != f.crc32c {
            bail!(
                "{} arrived damaged: {} bytes with CRC32C {crc:08x}, expected {} bytes with {:08x}",
                f.path,
                bytes.len(),
                f.size,
                f.crc32c
            );
        }
        target.put(&object, bytes)?;
        report.copied_files += 1;
        report.copied_bytes += f.size;
        bar.inc(f.size);
        pace.copied(f.size)?;
    }
    bar.finish_and_clear();
    if let Some(c) = cold {
        listed.extend(copy_cold(target, id, &c, &mut report, &mut pace)?);
    }
    let manifest = BackupManifest {
        version: BACKUP_VERSION,
        id: id.to_owned(),
        created_ns: session["created_ns"].as_i64().unwrap_or(0),
        source: client.base().to_owned(),
        strata_version: env!("CARGO_PKG_VERSION").to_owned(),
        files: listed,
    };
    // Written last: the backup exists from here on.
    target.put(&backup_object(id, BACKUP_FILE), manifest.encode())?;
    // Objects of interrupted runs (no BACKUP) are of no use to anyone: remove them.
    let (_, partial) = target.backups()?;
    for old in partial.iter().filter(|p| p.as_str() != id) {
        for key in target.list(&format!("{BACKUPS_DIR}/{old}"))?.into_keys() {
            target.delete(&key)?;
        }
    }
    Ok(report)
}

/// Copies the cold objects the snapshot read (its `COLD` reference, already in the target) into
/// `cold/{key}`, skipping those already there (keys are unique and objects never rewritten in
/// place). Each object is verified against the reference (size and CRC32C) when read.
fn copy_cold(
    target: &Target,
    id: &str,
    c: &ColdCopy,
    report: &mut CopyReport,
    pace: &mut Pacer,
) -> anyhow::Result<Vec<BackupFile>> {
    let key = backup_object(id, COLD_REFERENCE_FILE);
    let bytes = target.get(&key).with_context(
        || "--with-cold: the server runs without a cold store (its backup has no COLD reference)",
    )?;
    let reference = ColdReference::decode(&bytes, &key)?;
    let url = c.from.clone().unwrap_or(reference.url.clone());
    let tier = strata_storage::cold::ColdTier::open(&url, 0)
        .with_context(|| format!("cannot open the cold store {url}"))?;
    let present = target.list(COLD_DIR)?;
    let mut out = Vec::with_capacity(reference.objects.len());
    for o in &reference.objects {
        let object = format!("{COLD_DIR}/{}", o.key);
        if present.get(&object) == Some(&o.bytes) {
            report.cold_skipped += 1;
            report.skipped_bytes += o.bytes;
        } else {
            let bytes = tier
                .fetch(o)
                .with_context(|| format!("cannot copy cold object {} from {url}", o.key))?;
            target.put(&object, bytes.to_vec())?;
            report.cold_copied += 1;
            report.copied_files += 1;
            report.copied_bytes += o.bytes;
            pace.copied(o.bytes)?;
        }
        report.files += 1;
        out.push(BackupFile {
            path: object.clone(),
            object,
            size: o.bytes,
            crc32c: o.crc32c,
        });
    }
    Ok(out)
}

fn list(from: &str, json_out: bool) -> anyhow::Result<()> {
    let target = Target::open(from)?;
    let (complete, partial) = target.backups()?;
    let mut rows = Vec::new();
    for id in &complete {
        let m = target.manifest(id)?;
        rows.push(json!({
            "id": id,
            "created": crate::time::format_rfc3339(m.created_ns),
            "files": m.files.len(),
            "bytes": m.bytes(),
            "source": m.source,
        }));
    }
    if json_out {
        print_json(&json!({"backups": rows, "incomplete": partial}));
        return Ok(());
    }
    for r in &rows {
        println!(
            "{}  {}  {} files  {:.1} MB  from {}",
            r["id"].as_str().unwrap_or_default(),
            r["created"].as_str().unwrap_or_default(),
            r["files"],
            r["bytes"].as_u64().unwrap_or(0) as f64 / 1e6,
            r["source"].as_str().unwrap_or_default(),
        );
    }
    for p in &partial {
        println!("{p}  incomplete (interrupted run; removed by the next successful backup)");
    }
    Ok(())
}

fn verify(from: &str, only: Option<&str>, json_out: bool) -> anyhow::Result<()> {
    let target = Target::open(from)?;
    let (complete, partial) = target.backups()?;
    let ids: Vec<String> = match only {
        Some(id) => vec![id.to_owned()],
        None => complete.clone(),
    };
    if ids.is_empty() {
        bail!("no complete backup in {from}");
    }
    let scratch = tempfile_dir()?;
    // Object key → problems found (each object checked once, however many backups share it).
    let mut checked: HashMap<String, Vec<String>> = HashMap::new();
    let mut report = Vec::new();
    let mut damaged = 0usize;
    for id in &ids {
        let mut problems = Vec::new();
        let manifest = match target.manifest(id) {
            Ok(m) => m,
            Err(e) => {
                damaged += 1;
                report.push(json!({"backup": id, "ok": false, "problems": [format!("{e:#}")]}));
                continue;
            }
        };
        for f in &manifest.files {
            let found = checked
                .entry(f.object.clone())
                .or_insert_with(|| check_object(&target, f, scratch.path()));
            problems.extend(found.iter().cloned());
        }
        damaged += usize::from(!problems.is_empty());
        report.push(json!({
            "backup": id, "ok": problems.is_empty(), "files": manifest.files.len(),
            "bytes": manifest.bytes(), "problems": problems,
        }));
    }
    if json_out {
        print_json(&json!({"backups": report, "incomplete": partial}));
    } else {
        for r in &report {
            match r["ok"].as_bool() {
                Some(true) => println!(
                    "backup {}: ok ({} files, {:.1} MB, every checksum verified)",
                    r["backup"].as_str().unwrap_or_default(),
                    r["files"],
                    r["bytes"].as_u64().unwrap_or(0) as f64 / 1e6
                ),
                _ => {
                    println!(
                        "backup {}: DAMAGED",
                        r["backup"].as_str().unwrap_or_default()
                    );
                    for p in r["problems"].as_array().into_iter().flatten() {
                        println!("  {}", p.as_str().unwrap_or_default());
                    }
                }
            }
        }
    }
    if damaged > 0 {
        bail!("{damaged} of {} backups in {from} are damaged", ids.len());
    }
    Ok(())
}

/// Problems of one object against its manifest entry (empty when intact).
fn check_object(target: &Target, f: &BackupFile, scratch: &Path) -> Vec<String> {
    let bytes = match target.get(&f.object) {
        Ok(b) => b,
        Err(e) => return vec![format!("{}: missing or unreadable: {e:#}", f.object)],
    };
    if bytes.len() as u64 != f.size {
        return vec![format!(
            "{}: {} bytes, the backup manifest says {}",
            f.object,
            bytes.len(),
            f.size
        )];
    }
    let crc = crc32c::crc32c(&bytes);
    let mut problems = Vec::new();
    if crc != f.crc32c {
        problems.push(format!(
            "{}: CRC32C {crc:08x}, the backup manifest says {:08x}",
            f.object, f.crc32c
        ));
    }
    problems.extend(check_file(&f.path, &bytes, scratch));
    problems
}

fn tempfile_dir() -> anyhow::Result<TempDir> {
    let base = std::env::temp_dir().join(format!("strata-verify-{}", std::process::id()));
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    Ok(TempDir(base))
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `strata restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let target = Target::open(&args.from)?;
    let id = match args.backup {
        Some(id) => id,
        None => target
            .backups()?
            .0
            .pop()
            .ok_or_else(|| anyhow!("no complete backup in {}", args.from))?,
    };
    let manifest = target.manifest(&id)?;
    let dest = &args.data_dir;
    if dest.exists()
        && std::fs::read_dir(dest)
            .with_context(|| format!("cannot read {}", dest.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty; restore into a new directory",
            dest.display()
        );
    }
    let name = dest
        .file_name()
        .ok_or_else(|| anyhow!("--data-dir {} has no final component", dest.display()))?;
    let staging = dest.with_file_name(format!("{}.restoring", name.to_string_lossy()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove the leftover {}", staging.display()))?;
    }
    for dir in [
        staging.clone(),
        staging.join("segments"),
        staging.join("wal"),
    ] {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let bar = super::progress::bytes(manifest.bytes(), args.quiet, &format!("restore {id}"));
    let is_cold = |f: &&BackupFile| f.path.starts_with("cold/");
    for f in manifest.files.iter().filter(|f| !is_cold(f)) {
        check_restore_path(&f.path)?;
        let bytes = target.get(&f.object)?;
        let crc = crc32c::crc32c(&bytes);
        if bytes.len() as u64 != f.size || crc != f.crc32c {
            bail!(
                "{} in {} is damaged ({} bytes, CRC32C {crc:08x}; expected {} bytes, {:08x}); nothing was restored to {} (run `strata backup verify`)",
                f.object,
                args.from,
                bytes.len(),
                f.size,
                f.crc32c,
                dest.display()
            );
        }
        write_synced(&staging.join(&f.path), &bytes)?;
        bar.inc(f.size);
    }
    bar.finish_and_clear();
    for dir in [
        staging.join("segments"),
        staging.join("wal"),
        staging.clone(),
    ] {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    let reference = cold_reference(&target, &manifest)?;
    if let (Some(url), Some(r)) = (&args.cold_to, &reference) {
        restore_cold(&target, &manifest, r, url)?;
    }
    if dest.exists() {
        std::fs::remove_dir(dest).with_context(|| format!("cannot replace {}", dest.display()))?;
    }
    std::fs::rename(&staging, dest)
        .with_context(|| format!("cannot rename {} to {}", staging.display(), dest.display()))?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
    }
    let copies = manifest.files.iter().filter(is_cold).count();
    if copies > 0 && args.cold_to.is_none() {
        println!(
            "the backup holds copies of {copies} cold objects; `--cold-to URL` writes them into a new cold store"
        );
    }
    let cold_flag = match reference {
        None => String::new(),
        Some(reference) => {
            let url = (args.cold_to.clone())
                .or(args.cold_store.clone())
                .unwrap_or(reference.url.clone());
            if !args.no_cold_check {
                check_cold(&reference, &url);
            }
            format!(" --cold-store {url}")
        }
    };
    println!(
        "restored backup {id} ({} files, {:.1} MB) into {} in {:.1} s; start it with `strata serve --data-dir {}{cold_flag}`",
        manifest.files.len(),
        manifest.bytes() as f64 / 1e6,
        dest.display(),
        started.elapsed().as_secs_f64(),
        dest.display()
    );
    Ok(())
}

/// Writes the backup's copies of the cold objects into the empty cold store `url` (each verified
/// against the reference, put with `PutMode::Create` and read back), then a cold manifest listing
/// them, numbered as the one the backup saw.
fn restore_cold(
    target: &Target,
    manifest: &BackupManifest,
    reference: &ColdReference,
    url: &str,
) -> anyhow::Result<()> {
    let copies: HashMap<&str, &BackupFile> = manifest
        .files
        .iter()
        .filter_map(|f| Some((f.path.strip_prefix("cold/")?, f)))
        .collect();
    let tier = strata_storage::cold::ColdTier::open(url, 0)
        .with_context(|| format!("cannot open the cold store {url}"))?;
    let mut next = tier.load_manifest()?;
    if next.number != 0 || !tier.list_objects()?.is_empty() {
        bail!("--cold-to {url} is not an empty cold store; give a new prefix");
    }
    for o in &reference.objects {
        let f = copies.get(o.key.as_str()).ok_or_else(|| {
            anyhow!(
                "the backup holds no copy of cold object {} (it was taken without --with-cold)",
                o.key
            )
        })?;
        let bytes = target.get(&f.object)?;
        if bytes.len() as u64 != o.bytes || crc32c::crc32c(&bytes) != o.crc32c {
            bail!(
                "{} in the backup is damaged (run `strata backup verify`)",
                f.object
            );
        }
        tier.put_verified(&o.key, bytes.into(), o.crc32c)?;
    }
    // The number the backup saw, so the store reads as that state of the original.
    next.number = reference.manifest_number.max(1);
    next.objects = reference.objects.clone();
    tier.commit_manifest(&next)?;
    println!(
        "wrote {} cold objects and cold manifest {} to {url}",
        reference.objects.len(),
        next.number
    );
    Ok(())
}

/// The backup's cold-tier reference, when the server it was taken from ran with a cold store.
fn cold_reference(
    target: &Target,
    manifest: &BackupManifest,
) -> anyhow::Result<Option<ColdReference>> {
    let Some(f) = manifest
        .files
        .iter()
        .find(|f| f.path == COLD_REFERENCE_FILE)
    else {
        return Ok(None);
    };
    let bytes = target.get(&f.object)?;
    Ok(Some(ColdReference::decode(&bytes, &f.object)?))
}

/// Checks that the cold store at `url` still holds every object the backup's snapshot read and
/// prints what it found (warnings only: the restore itself is complete). Objects gone since
/// (cold retention dropped them, an erase rewrote them) are named: their rows are not in the
/// restored server.
fn check_cold(reference: &ColdReference, url: &str) {
    if let Err(e) = try_check_cold(reference, url) {
        println!("warning: cold store check: {e:#}");
    }
}

fn try_check_cold(reference: &ColdReference, url: &str) -> anyhow::Result<()> {
    let tier = strata_storage::cold::ColdTier::open(url, 0)
        .with_context(|| format!("cannot open the cold store {url}"))?;
    let newest = tier
        .load_manifest()
        .with_context(|| format!("cannot read the cold manifest of {url}"))?;
    if newest.number < reference.manifest_number {
        bail!(
            "the cold store {url} is at manifest {} but the backup saw manifest {}: it is not the store the backup was taken with (or it was rolled back); pass the right one with --cold-store",
            newest.number,
            reference.manifest_number
        );
    }
    let present: std::collections::HashSet<String> = tier.list_objects()?.into_iter().collect();
    let missing: Vec<&str> = reference
        .objects
        .iter()
        .filter(|o| !present.contains(&o.key))
        .map(|o| o.key.as_str())
        .collect();
    println!(
        "cold store {url}: manifest {} (the backup saw {}), {} of the backup's {} cold objects present",
        newest.number,
        reference.manifest_number,
        reference.objects.len() - missing.len(),
        reference.objects.len()
    );
    for key in &missing {
        println!("  gone since the backup (cold retention or an erase rewrote it): {key}");
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    if path
        .file_name()
        .is_some_and(|n| n == "registry.redb" || n == "rules.redb")
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_files_map_to_objects() {
        let seg = SessionFile {
            path: "segments/0000000000000012.seg".into(),
            size: 10,
            crc32c: 0xabc,
        };
        assert_eq!(
            object_of("b1", &seg).unwrap(),
            "segments/0000000000000012-00000abc.seg"
        );
        let wal = SessionFile {
            path: "wal/wal-00000000000000000003.log".into(),
            size: 1,
            crc32c: 1,
        };
        assert_eq!(
            object_of("b1", &wal).unwrap(),
            "backups/b1/wal/wal-00000000000000000003.log"
        );
        let evil = SessionFile {
            path: "../../etc/passwd".into(),
            size: 1,
            crc32c: 1,
        };
        assert!(object_of("b1", &evil).is_err());
    }

    #[test]
    fn throttle_waits_for_the_rate() {
        let t = Instant::now();
        let wait = throttle_wait(200_000, t, 1.0); // 0.2 MB at 1 MB/s
        assert!(wait > Duration::from_millis(150) && wait <= Duration::from_millis(200));
        assert_eq!(throttle_wait(u64::MAX, t, 0.0), Duration::ZERO);
        if let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(10)) {
            assert_eq!(throttle_wait(1_000_000, long_ago, 1.0), Duration::ZERO);
        }
    }
}
