//! The `strata` binary: parses the command line, then either sets up logging and runs the server
//! or runs a client command against a running server.

use std::process::ExitCode;

use clap::Parser;
use strata_server::cli::{Cli, Command};
use strata_server::ctl;

/// mimalloc: the write and query paths allocate many short-lived buffers from several threads, and
/// glibc malloc (10–15 % of the server's samples in `perf` profiles of queries and ingest) keeps
/// freed memory in its arenas, so RSS stayed high after a flush freed the memtables. Built with
/// `no_thp` (workspace `Cargo.toml`): mimalloc would otherwise advise transparent huge pages for
/// its arenas, and each 2 MiB page it touches for the first time (again after every purge) is
/// zeroed whole in the page fault; see ARCHITECTURE.md for the figures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => return serve(*args),
        Command::Devices(args) => ctl::devices::run(args),
        Command::Entities(args) => ctl::entities::run(args),
        Command::Tokens(args) => ctl::tokens::run(args),
        Command::Audit(args) => ctl::tokens::run_audit(args),
        Command::Sql(args) => ctl::sql::run(args),
        Command::Repair(args) => strata_server::repair::run(args),
        Command::Lifecycle(args) => ctl::lifecycle::run(args),
        Command::Backup(args) => ctl::backup::run(args),
        Command::Restore(args) => ctl::backup::restore(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: strata_server::cli::ServeArgs) -> ExitCode {
    if let Err(e) = strata_server::logging::init(args.log_format, &args.log_level) {
        eprintln!("strata: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    match strata_server::serve::run_blocking(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "strata failed");
            ExitCode::FAILURE
        }
    }
}
