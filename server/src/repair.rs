//! `strata repair --data-dir DIR`: opens a data directory that `strata serve` refuses (a lost or
//! damaged MANIFEST, damage in the middle of a WAL file, a WAL record that cannot be applied) with
//! the engine's forced recovery: everything that verifies is kept, damaged files are set aside in
//! `DIR/damaged/<time>/` (never deleted), the salvaged data is flushed, and what was done is printed.
//! Run it with the server stopped (the data directory's lock is taken like `serve` does).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strata_storage::{Engine, EngineConfig, RecoveryReport};

/// Flags of `strata repair`.
#[derive(Debug, Clone, Args)]
pub struct RepairArgs {
    /// The data directory to repair (the server must be stopped).
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Length of a time partition for the segments the repair flushes: give the server's
    /// `--partition` if it is not the default.
    #[arg(long, env = "STRATA_PARTITION", default_value = "1d", value_parser = crate::time::parse_duration)]
    pub partition: Duration,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl RepairArgs {
    /// The engine configuration of a forced recovery (no background work, `sync` durability).
    pub fn engine_config(&self) -> EngineConfig {
        let mut cfg = EngineConfig::new(self.data_dir.clone());
        cfg.background = false;
        cfg.force_recovery = true;
        cfg.partition_ns = i64::try_from(self.partition.as_nanos())
            .unwrap_or(i64::MAX)
            .max(1);
        cfg
    }
}

/// Runs the repair and prints its report.
pub fn run(args: RepairArgs) -> anyhow::Result<()> {
    if !args.data_dir.is_dir() {
        anyhow::bail!("{} is not a directory", args.data_dir.display());
    }
    let engine = Engine::open(args.engine_config())
        .with_context(|| format!("cannot repair {}", args.data_dir.display()))?;
    let report = engine.recovery_report();
    engine
        .shutdown()
        .context("flushing the repaired data directory")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&args.data_dir, &report));
    }
    Ok(())
}

/// The text report: what was repaired, what was set aside, what damage remains.
fn render(dir: &std::path::Path, report: &RecoveryReport) -> String {
    let mut out = format!(
        "repaired {}: {} WAL records replayed\n",
        dir.display(),
        report.wal_records
    );
    let sections = [
        ("repairs", &report.repairs),
        ("set aside (kept, not deleted)", &report.set_aside),
        ("WAL damage found", &report.wal_warnings),
        (
            "segment damage remaining (reads of these blocks fail; restore from a backup)",
            &report.segment_errors,
        ),
    ];
    for (title, lines) in sections {
        if lines.is_empty() {
            continue;
        }
        out.push_str(&format!("{title}:\n"));
        for line in lines {
            out.push_str(&format!("  - {line}\n"));
        }
    }
    if report.repairs.is_empty() && report.set_aside.is_empty() && report.wal_warnings.is_empty() {
        out.push_str("nothing needed repair\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_repairs_and_set_aside_files() {
        let report = RecoveryReport {
            wal_records: 3,
            repairs: vec!["rebuilt the MANIFEST".into()],
            set_aside: vec!["/d/damaged/x/MANIFEST".into()],
            ..RecoveryReport::default()
        };
        let text = render(std::path::Path::new("/d"), &report);
        assert!(
            text.starts_with("repaired /d: 3 WAL records replayed\n"),
            "{text}"
        );
        assert!(
            text.contains("repairs:\n  - rebuilt the MANIFEST\n"),
            "{text}"
        );
        assert!(text.contains("set aside (kept, not deleted):\n  - /d/damaged/x/MANIFEST\n"));
        assert!(!text.contains("nothing needed repair"));
        let clean = render(std::path::Path::new("/d"), &RecoveryReport::default());
        assert!(clean.ends_with("nothing needed repair\n"), "{clean}");
    }
}
