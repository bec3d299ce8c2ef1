//! The `strata` binary: parses the command line, sets up logging and runs the server.

use std::process::ExitCode;

use clap::Parser;
use strata_server::cli::{Cli, Command};

/// mimalloc: the write path allocates many short-lived buffers from several threads; glibc malloc
/// cost about a quarter of the server's CPU under line-protocol load (see ARCHITECTURE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
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
    }
}
