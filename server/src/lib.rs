//! The Strata server as a library: the transports (HTTP(S) with axum, Flight SQL with tonic, the
//! MQTT(S) listeners of `strata_ingest::mqtt`) wired to the write pipeline
//! (`strata_ingest::pipeline`), the query engine and the registry; authentication, TLS, metrics,
//! the serve loop with graceful shutdown, and the `strata devices|entities|tokens|sql` client
//! commands. `main.rs` is a thin wrapper: only what it uses is public.

mod admin;
mod api;
mod auth;
mod backup_sessions;
mod body;
mod bootstrap;
mod bridge;
pub mod cli;
mod console;
mod credentials;
pub mod ctl;
mod error;
mod flight;
mod group_commit;
mod lifecycle;
mod lifecycle_sql;
mod listen;
pub mod logging;
mod methods;
mod metrics;
mod mqtt;
mod pg;
mod plane;
mod precision;
mod query;
mod read;
pub mod repair;
mod rollups;
mod routes;
pub mod serve;
mod sql_tables;
mod state;
mod time;
mod tls;
mod twin_feed;
mod validation;
mod write;
