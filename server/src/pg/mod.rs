//! PostgreSQL wire protocol (`strata serve --pg-addr HOST:PORT`, off unless given), on the
//! `pgwire` crate: psql, Grafana's PostgreSQL data source, psycopg, SQLAlchemy and pandas connect
//! with an API token as the password. Only the transport lives here; SQL, the `pg_catalog` shim
//! and the type mapping are in the query crate. See `docs/postgres.md`.
//!
//! | module | holds |
//! |---|---|
//! | [`auth`] | sign-in: cleartext password = API token (TLS or loopback only), the session |
//! | [`handler`] | simple and extended query protocols, session commands, read-only refusals |
//! | [`encode`] | Arrow columns → text/binary `DataRow`s; bound parameters → scalars |
//! | [`error`] | errors with SQLSTATE codes |

pub mod auth;
pub mod encode;
pub mod error;
pub mod handler;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pgwire::api::PgWireServerHandlers;
use pgwire::api::auth::StartupHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::tokio::process_socket;
use strata_ingest::mqtt::ConnectionLimit;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::AppState;
use auth::TokenStartup;
use handler::PgHandler;

/// The handlers of one connection: the shared query handler, and a sign-in that marks the
/// connection's slot established once it signed in.
struct Handlers {
    query: Arc<PgHandler>,
    startup: Arc<auth::EstablishOnSignIn>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

/// A running PostgreSQL listener; [`PgServer::shutdown`] stops it.
#[derive(Debug)]
pub struct PgServer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Binds `addr` (port 0 picks a free port, logged as "PostgreSQL listening") and serves the
/// protocol over `state` in the background. With `tls`, clients may upgrade (`sslmode=require`);
/// at most `limit` connections are open at once: a new one takes the place of the oldest that
/// has not signed in yet, and is closed at accept when every one has.
pub async fn start(
    addr: SocketAddr,
    state: AppState,
    tls: Option<Arc<rustls::ServerConfig>>,
    limit: ConnectionLimit,
) -> anyhow::Result<PgServer> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for PostgreSQL on {addr}"))?;
    let local = listener
        .local_addr()
        .context("no local PostgreSQL address")?;
    let startup = Arc::new(TokenStartup::new(state.clone()));
    let query = Arc::new(PgHandler::new(state, startup.clone()));
    let acceptor = tls.map(pgwire::tokio::TlsAcceptor::from);
    let tls_on = acceptor.is_some();
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped.wait_for(|s| *s) => break,
            };
            let socket = match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = limit.admit() else {
                tracing::warn!(
                    max = limit.max(),
                    "PostgreSQL connection refused: too many open connections"
                );
                continue;
            };
            // Pending until it signs in: a silent or unauthenticated connection is the first to
            // go when the cap is reached (evicted), so it cannot keep clients out.
            let handlers = Arc::new(Handlers {
                query: query.clone(),
                startup: Arc::new(auth::EstablishOnSignIn::new(startup.clone(), slot.handle())),
            });
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                tokio::select! {
                    served = process_socket(socket, acceptor, handlers) => {
                        if let Err(e) = served {
                            tracing::debug!(error = %e, "PostgreSQL connection ended with an error");
                        }
                    }
                    () = slot.evicted() => {
                        tracing::debug!("PostgreSQL connection closed before sign-in to make room");
                    }
                }
            });
        }
    });
    tracing::info!(addr = %local, tls = tls_on, "PostgreSQL listening");
    Ok(PgServer { stop, task })
}

impl PgServer {
    /// Stops accepting connections (open sessions end with the process).
    pub async fn shutdown(self, drain: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(drain, &mut task).await.is_err() {
            task.abort();
        }
        tracing::info!("PostgreSQL listener stopped");
    }
}
