//! The `strata` binary: parses the command line, then either sets up logging and runs the server
//! or runs a client command against a running server.

use std::process::ExitCode;

use clap::Parser;
use strata_server::cli::{Cli, Command};
use strata_server::ctl;

/// mimalloc: the write and query paths allocate many short-lived buffers from several threads, and
/// glibc malloc (10–15 % of the server's samples in `perf` profiles of queries and ingest) keeps
/// freed memory in its arenas, so RSS stayed high after a flush freed the memtables. Without
/// transparent huge pages ([`no_huge_pages`]; mimalloc is also built with `no_thp`, workspace
/// `Cargo.toml`): each 2 MiB page touched for the first time (again after every purge) would be
/// zeroed whole in the page fault; see ARCHITECTURE.md for the figures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (Linux `PR_SET_THP_DISABLE`, whatever the
/// host's THP setting); elsewhere nothing. Failure only costs speed, so it is ignored.
#[allow(unsafe_code)]
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call with integer arguments; no memory is passed or shared.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    no_huge_pages();
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
