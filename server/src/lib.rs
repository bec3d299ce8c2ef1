//! The Strata server as a library: command-line configuration, logging, the HTTP API (write, read,
//! health, metrics, admin, SQL queries, the device registry and tokens), authentication, the serve loop with
//! graceful shutdown, and the `strata devices|entities|tokens` client commands. `main.rs` is a
//! thin wrapper.

pub mod admin;
pub mod api;
pub mod auth;
pub mod body;
pub mod bootstrap;
pub mod cli;
pub mod credentials;
pub mod ctl;
pub mod error;
pub mod flight;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod precision;
pub mod query;
pub mod read;
pub mod routes;
pub mod serve;
pub mod sql_tables;
pub mod state;
pub mod time;
pub mod tls;
pub mod validation;
pub mod write;
