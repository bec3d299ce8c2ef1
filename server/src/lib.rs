//! The Strata server as a library: command-line configuration, logging, the HTTP API (write, read,
//! health, metrics, admin) and the serve loop with graceful shutdown. `main.rs` is a thin wrapper.

pub mod admin;
pub mod body;
pub mod cli;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod precision;
pub mod read;
pub mod routes;
pub mod serve;
pub mod state;
pub mod time;
pub mod write;
