//! Arrow Flight SQL server (`strata serve --flight-addr HOST:PORT`): SQL statement queries,
//! prepared statements with parameters, catalog metadata (`GetCatalogs`, `GetDbSchemas`,
//! `GetTables`, `GetTableTypes`, `GetSqlInfo`), token authentication (the `authorization` header
//! on every call, and the Basic-auth handshake), and `DoPut` bulk ingest of Arrow record batches.
//! See `docs/flight-sql.md`.
//!
//! | module | holds |
//! |---|---|
//! | [`service`] | the `FlightSqlService` implementation: dispatch, tickets, flight infos |
//! | [`auth`] | credentials of a call → [`crate::auth::Principal`], handshake, error → `Status` |
//! | [`statements`] | open prepared statements, their owners and bound parameters |
//! | [`metadata`] | catalog, schema and table listings, SQL info |
//! | [`put`] | `DoPut`: descriptor path, Arrow schema → Strata layout, batch → `WriteBatch` |

pub mod auth;
pub mod metadata;
pub mod put;
pub mod service;
pub mod statements;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::AppState;
use service::StrataFlightSql;

/// A running Flight SQL listener; [`FlightServer::shutdown`] stops it.
#[derive(Debug)]
pub struct FlightServer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Binds `addr` (port 0 picks a free port) and serves Flight SQL over `state` in the background.
/// The largest accepted gRPC message is the HTTP body limit (`--max-body-mb`).
pub async fn start(
    addr: SocketAddr,
    state: AppState,
    limit: strata_ingest::mqtt::ConnectionLimit,
) -> anyhow::Result<FlightServer> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for Flight SQL on {addr}"))?;
    let local = listener
        .local_addr()
        .context("no local Flight SQL address")?;
    let max_message = state.max_body;
    let service = FlightServiceServer::new(StrataFlightSql::new(state))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let (stop, mut stopped) = watch::channel(false);
    let signal = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let task = tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            // Dead peers of idle connections are found and closed.
            .http2_keepalive_interval(Some(Duration::from_secs(60)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_service(service)
            .serve_with_incoming_shutdown(crate::listen::flight_incoming(listener, limit), signal)
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "Flight SQL server failed");
        }
    });
    tracing::info!(addr = %local, "Flight SQL listening");
    Ok(FlightServer { stop, task })
}

impl FlightServer {
    /// Stops accepting calls, lets running calls finish for at most `drain`, then aborts them.
    pub async fn shutdown(self, drain: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(drain, &mut task).await.is_err() {
            tracing::warn!(
                timeout_ms = drain.as_millis() as u64,
                "Flight SQL calls did not finish in time; stopping anyway"
            );
            task.abort();
        }
        tracing::info!("Flight SQL server stopped");
    }
}
