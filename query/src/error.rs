//! The query layer's error type and how DataFusion errors map onto it.

use std::time::Duration;

use datafusion::error::DataFusionError;
use strata_storage::{ErrorKind, StorageError};

/// Why a query failed. [`QueryError::is_client_error`] tells the caller whether the SQL text is at fault.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL does not parse, names an unknown table or column, mistypes an expression, or uses
    /// something not allowed (DDL, `SET`, ...). The message is the planner's.
    #[error("{0}")]
    Sql(String),
    /// The query ran longer than the configured timeout.
    #[error("query exceeded the timeout of {0:?}")]
    Timeout(Duration),
    /// The query needed more memory than the configured limit (operators or result size).
    #[error("query exceeded its memory limit: {0}")]
    ResourcesExhausted(String),
    /// The storage engine failed while the query ran; `kind` is the engine's
    /// ([`StorageError::kind`]), so damage, shutdown and a full disk stay distinguishable.
    #[error("query execution failed: {message}")]
    Storage {
        /// What kind of storage failure.
        kind: ErrorKind,
        /// The storage error's message.
        message: String,
    },
    /// The query failed while running (internal error).
    #[error("query execution failed: {0}")]
    Execution(String),
    /// The result could not be encoded in the requested format.
    #[error("result encoding failed: {0}")]
    Encoding(String),
}

impl QueryError {
    /// True when the query text is at fault (an HTTP server answers 400).
    pub fn is_client_error(&self) -> bool {
        matches!(self, QueryError::Sql(_))
    }
}

impl From<StorageError> for QueryError {
    fn from(e: StorageError) -> Self {
        QueryError::Storage {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// The storage error somewhere in `e`'s chain of causes, if any.
fn storage_cause(e: &DataFusionError) -> Option<&StorageError> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(s) = c.downcast_ref::<StorageError>() {
            return Some(s);
        }
        cause = c.source();
    }
    None
}

/// The timeout somewhere in `e`'s chain of causes (a stream that stalled past it), if any.
fn timeout_cause(e: &DataFusionError) -> Option<Duration> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(QueryError::Timeout(d)) = c.downcast_ref::<QueryError>() {
            return Some(*d);
        }
        cause = c.source();
    }
    None
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        if let Some(d) = timeout_cause(&e) {
            return QueryError::Timeout(d);
        }
        if let Some(s) = storage_cause(&e) {
            return QueryError::Storage {
                kind: s.kind(),
                message: s.to_string(),
            };
        }
        let message = e.to_string();
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_) => QueryError::Sql(strip_prefix(message)),
            DataFusionError::ResourcesExhausted(_) => QueryError::ResourcesExhausted(message),
            _ => QueryError::Execution(message),
        }
    }
}

impl From<arrow::error::ArrowError> for QueryError {
    fn from(e: arrow::error::ArrowError) -> Self {
        QueryError::Encoding(e.to_string())
    }
}

/// Drops DataFusion's "Error during planning: " style prefix only when it is the whole context
/// (keeps the planner's own words).
fn strip_prefix(message: String) -> String {
    for prefix in ["Error during planning: ", "SQL error: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planning_errors_are_client_errors() {
        let e: QueryError = DataFusionError::Plan("table 'x' not found".into()).into();
        assert!(e.is_client_error());
        assert_eq!(e.to_string(), "table 'x' not found");
        let e: QueryError =
            DataFusionError::Context("ctx".into(), Box::new(DataFusionError::Plan("bad".into())))
                .into();
        assert!(e.is_client_error());
    }

    #[test]
    fn resource_and_execution_errors_are_not_client_errors() {
        let e: QueryError = DataFusionError::ResourcesExhausted("pool".into()).into();
        assert!(matches!(e, QueryError::ResourcesExhausted(_)));
        assert!(!e.is_client_error());
        let e: QueryError = DataFusionError::Execution("disk".into()).into();
        assert!(matches!(e, QueryError::Execution(_)));
        assert!(!QueryError::Timeout(Duration::from_secs(1)).is_client_error());
    }

    /// A stream that stalled past the timeout while batches were being produced is a timeout,
    /// however DataFusion wraps it.
    #[test]
    fn a_timeout_raised_inside_a_stream_stays_a_timeout() {
        let stalled =
            DataFusionError::External(Box::new(QueryError::Timeout(Duration::from_secs(30))));
        let wrapped = DataFusionError::Context("collect".into(), Box::new(stalled));
        let e: QueryError = wrapped.into();
        assert!(
            matches!(e, QueryError::Timeout(d) if d == Duration::from_secs(30)),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "query exceeded the timeout of 30s");
    }

    #[test]
    fn storage_errors_keep_their_kind_through_datafusion() {
        let corrupt = StorageError::Corrupt {
            path: "seg-1".into(),
            detail: "checksum".into(),
        };
        let wrapped = DataFusionError::Context(
            "scan".into(),
            Box::new(DataFusionError::External(Box::new(corrupt))),
        );
        let e = QueryError::from(wrapped);
        assert!(
            matches!(e, QueryError::Storage { kind: ErrorKind::Corruption, ref message } if message.contains("seg-1")),
            "{e:?}"
        );
        let e = QueryError::from(DataFusionError::External(Box::new(StorageError::ShutDown)));
        assert!(
            matches!(
                e,
                QueryError::Storage {
                    kind: ErrorKind::Unavailable,
                    ..
                }
            ),
            "{e:?}"
        );
        let arrow = datafusion::arrow::error::ArrowError::ExternalError(Box::new(
            StorageError::InvalidInput("bad".into()),
        ));
        let e = QueryError::from(DataFusionError::ArrowError(Box::new(arrow), None));
        assert!(
            matches!(
                e,
                QueryError::Storage {
                    kind: ErrorKind::InvalidInput,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(!e.is_client_error());
    }
}
