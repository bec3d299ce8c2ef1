//! Errors of the PostgreSQL transport as PostgreSQL clients expect them: a severity, a SQLSTATE
//! code and a message. Query failures keep the planner's words; the SQLSTATE follows the HTTP
//! status the same failure gets over `/api/v1/query`.

use pgwire::error::{ErrorInfo, PgWireError};
use strata_query::QueryError;

use crate::error::ApiError;
use crate::query::query_error;

/// A refusal or failure sent to the client as an `ErrorResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    /// `ERROR` or `FATAL`.
    pub severity: &'static str,
    /// The SQLSTATE.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
}

impl PgError {
    /// An `ERROR` with `code`.
    pub fn new(code: &'static str, message: impl Into<String>) -> PgError {
        PgError {
            severity: "ERROR",
            code,
            message: message.into(),
        }
    }

    /// `XX000` internal error.
    pub fn internal(message: impl Into<String>) -> PgError {
        PgError::new("XX000", message)
    }

    /// `0A000` feature not supported.
    pub fn unsupported(message: impl Into<String>) -> PgError {
        PgError::new("0A000", message)
    }
}

/// `22023` for parameter `index` (0-based; the message counts from 1 like `$1`).
pub fn invalid_parameter(index: usize, why: &str) -> PgError {
    PgError::new("22023", format!("parameter ${}: {why}", index + 1))
}

impl From<PgError> for PgWireError {
    fn from(e: PgError) -> PgWireError {
        PgWireError::UserError(Box::new(ErrorInfo::new(
            e.severity.to_owned(),
            e.code.to_owned(),
            e.message,
        )))
    }
}

impl From<ApiError> for PgError {
    /// 400 → `42601`/`42P01`-like syntax or semantic errors (`42000`), 401 → `28000`, 403 →
    /// `42501`, 413 and 422 (a database limit) → `54000`, 429 → `53300`, 503 (timeout, memory)
    /// → `53000`/`57014`, disk full → `53100`, the rest `XX000`.
    fn from(e: ApiError) -> PgError {
        let message = e.to_string();
        let code = match e.status().as_u16() {
            400 | 404 | 415 => "42000",
            401 => "28000",
            403 => "42501",
            413 | 422 => "54000",
            429 => "53300",
            503 if message.contains("timed out") || message.contains("timeout") => "57014",
            503 => "53000",
            507 => "53100",
            _ => "XX000",
        };
        PgError::new(code, message)
    }
}

impl From<QueryError> for PgError {
    fn from(e: QueryError) -> PgError {
        PgError::from(query_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use strata_storage::ErrorKind;

    /// SQLSTATEs follow the HTTP status of the same failure: a database limit is a program
    /// limit (54000), a timeout a cancel (57014), a full disk 53100, damage an internal error.
    #[test]
    fn failures_map_to_sqlstates() {
        let storage = |kind| ApiError::StorageKind {
            kind,
            message: "m".into(),
        };
        let cases = [
            (ApiError::BadRequest("b".into()), "42000"),
            (ApiError::Forbidden("f".into()), "42501"),
            (storage(ErrorKind::LimitExceeded), "54000"),
            (storage(ErrorKind::OutOfSpace), "53100"),
            (storage(ErrorKind::Unavailable), "53000"),
            (storage(ErrorKind::Corruption), "XX000"),
            (
                ApiError::Registry(strata_registry::RegistryError::LimitExceeded("q".into())),
                "53300",
            ),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            assert_eq!(PgError::from(e).code, code, "{text}");
        }
        let timeout = PgError::from(QueryError::Timeout(Duration::from_secs(30)));
        assert_eq!(timeout.code, "57014", "{}", timeout.message);
    }
}
