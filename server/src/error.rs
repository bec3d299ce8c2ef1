//! API errors: one enum for everything a handler can fail with, its HTTP status, and its JSON body
//! `{"error": "...", "line": N, "column": M}` (line and column only for line-protocol errors).
//! Registry errors map to 400 (invalid), 401, 403, 404, 409 (already exists), 412 (stale
//! `If-Match`), 413 (too large), 429 (limit) and 500 (storage); a device that does not answer a
//! method call in time is 504;
//! 401 answers also carry a `WWW-Authenticate` header.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use strata_ingest::line_protocol::ParseError;
use strata_ingest::pipeline::PipelineError;
use strata_registry::RegistryError;
use strata_storage::{ErrorKind, StorageError};

/// Everything an HTTP handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The line-protocol payload is malformed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The storage engine refused or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The storage engine failed under a query (the kind survives the query layer).
    #[error("query execution failed: {message}")]
    StorageKind {
        /// What kind of storage failure.
        kind: ErrorKind,
        /// The storage error's message.
        message: String,
    },
    /// A query parameter or header is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The body (as sent or decompressed) exceeds the configured limit.
    #[error("request body exceeds the limit of {limit} bytes (see --max-body-mb)")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body uses a `Content-Encoding` the server does not decode.
    #[error("unsupported Content-Encoding '{0}' (supported: gzip, identity)")]
    UnsupportedEncoding(String),
    /// The named database or stream does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The device registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Credentials are missing, malformed, unknown, revoked or belong to a disabled device.
    #[error("{0}")]
    Unauthorized(String),
    /// The credentials are valid but do not allow this request.
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// The request hit a resource limit (query timeout or memory limit); retrying later or with a
    /// narrower request may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A device did not answer in time (a direct method call's timeout).
    #[error("{0}")]
    GatewayTimeout(String),
    /// A server-side failure that is not the storage engine's (e.g. a panicked task).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Parse(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Storage(e) => kind_status(e.kind()),
            ApiError::StorageKind { kind, .. } => kind_status(*kind),
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Registry(e) => registry_status(e),
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Wraps a failed `spawn_blocking` join.
    pub fn from_join(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(format!("request task failed: {e}"))
    }
}

impl From<PipelineError> for ApiError {
    /// Confinement refusals are 403, a wrong stream or a model violation 400, engine errors keep
    /// their kind.
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Storage(e) => ApiError::Storage(e),
            e if e.is_forbidden() => ApiError::Forbidden(e.to_string()),
            e => ApiError::BadRequest(e.to_string()),
        }
    }
}

/// Status for a kind of storage failure: the request's fault is 400 (422 past a limit), an engine that cannot take
/// requests now (shutdown, overload) 503, a full disk 507, damage and other failures 500.
pub fn kind_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::LimitExceeded => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::OutOfSpace => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Corruption | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Status for a registry error.
fn registry_status(e: &RegistryError) -> StatusCode {
    match e {
        RegistryError::NotFound { .. } => StatusCode::NOT_FOUND,
        RegistryError::AlreadyExists { .. } => StatusCode::CONFLICT,
        RegistryError::Invalid(_) => StatusCode::BAD_REQUEST,
        RegistryError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        RegistryError::Forbidden(_) => StatusCode::FORBIDDEN,
        RegistryError::Conflict(_) => StatusCode::CONFLICT,
        RegistryError::LimitExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
        RegistryError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        RegistryError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
        RegistryError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// JSON body of an error response.
#[derive(Debug, serde::Serialize)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let error = self.to_string();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %error, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %error, "request rejected");
        }
        let (line, column) = match &self {
            ApiError::Parse(p) => (Some(p.line), Some(p.column)),
            _ => (None, None),
        };
        let mut resp = (
            status,
            Json(ErrorBody {
                error,
                line,
                column,
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(
                    "Bearer realm=\"strata\", Basic realm=\"strata\"",
                ),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storage::FieldType;

    #[test]
    fn statuses() {
        let conflict = StorageError::SchemaConflict {
            database: "d".into(),
            stream: "s".into(),
            field: "f".into(),
            existing: FieldType::Float,
            requested: FieldType::String,
        };
        assert_eq!(ApiError::from(conflict).status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            ApiError::from(StorageError::ShutDown).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let corrupt = StorageError::Corrupt {
            path: "x".into(),
            detail: "crc".into(),
        };
        assert_eq!(
            ApiError::from(corrupt).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let full = StorageError::Io {
            path: "wal".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        assert_eq!(ApiError::from(full).status().as_u16(), 507);
        let no_space = StorageError::NoSpace {
            path: "wal".into(),
            detail: "no space left for the write-ahead log".into(),
        };
        let refused = ApiError::from(no_space);
        assert_eq!(refused.status().as_u16(), 507);
        assert!(
            refused.to_string().contains("retry the write later"),
            "{refused}"
        );
        let fault = StorageError::IoFault {
            path: "wal".into(),
            detail: "fdatasync failed".into(),
        };
        assert_eq!(ApiError::from(fault).status().as_u16(), 503);
        let poisoned = StorageError::Internal("lock poisoned".into());
        assert_eq!(ApiError::from(poisoned).status().as_u16(), 500);
        let query = ApiError::StorageKind {
            kind: ErrorKind::Corruption,
            message: "crc".into(),
        };
        assert_eq!(query.status().as_u16(), 500);
        let parse = ParseError {
            line: 2,
            column: 5,
            message: "bad".into(),
        };
        assert_eq!(ApiError::from(parse).status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            ApiError::PayloadTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let statuses = [
            (RegistryError::not_found("device", "d"), 404),
            (RegistryError::exists("device", "d"), 409),
            (RegistryError::invalid("bad id"), 400),
            (RegistryError::Unauthorized("wrong key".into()), 401),
            (RegistryError::Forbidden("scope".into()), 403),
            (RegistryError::Storage("io".into()), 500),
        ];
        for (e, code) in statuses {
            assert_eq!(ApiError::from(e).status().as_u16(), code);
        }
    }
}
