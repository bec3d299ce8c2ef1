//! The application-side query client: SQL over Arrow Flight SQL, answers as Arrow record batches
//! (`strata serve --flight-addr`; see `docs/flight-sql.md`). A blocking wrapper around
//! `arrow_flight::sql::client::FlightSqlServiceClient` on its own single-threaded Tokio runtime.

use arrow::record_batch::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::{Channel, Endpoint};

/// Errors of the query client.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The runtime or the connection could not be set up.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The endpoint.
        url: String,
        /// Why.
        message: String,
    },
    /// The server refused or failed the query (the gRPC status text).
    #[error("query failed: {0}")]
    Query(String),
}

/// A Flight SQL connection authenticated with an API token (`read` scope).
pub struct QueryClient {
    runtime: tokio::runtime::Runtime,
    client: FlightSqlServiceClient<Channel>,
}

impl QueryClient {
    /// Connects to `url` (`http://host:port`, the Flight SQL listener) with an API token.
    pub fn connect(url: &str, token: &str) -> Result<QueryClient, QueryError> {
        let err = |m: String| QueryError::Connect {
            url: url.to_owned(),
            message: m,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| err(e.to_string()))?;
        let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| err(e.to_string()))?;
        let channel = runtime
            .block_on(endpoint.connect())
            .map_err(|e| err(e.to_string()))?;
        let mut client = FlightSqlServiceClient::new(channel);
        client.set_header("authorization", format!("Bearer {token}"));
        Ok(QueryClient { runtime, client })
    }

    /// Runs a SQL query and returns its record batches (every endpoint of the answer, in order).
    pub fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let client = &mut self.client;
        self.runtime.block_on(async {
            let qe = |e: arrow_flight::error::FlightError| QueryError::Query(e.to_string());
            let info = client.execute(sql.to_owned(), None).await.map_err(qe)?;
            let mut batches = Vec::new();
            for ep in info.endpoint {
                let Some(ticket) = ep.ticket else { continue };
                let stream = client.do_get(ticket).await.map_err(qe)?;
                let mut got: Vec<RecordBatch> = stream
                    .try_collect()
                    .await
                    .map_err(|e| QueryError::Query(e.to_string()))?;
                batches.append(&mut got);
            }
            Ok(batches)
        })
    }
}
