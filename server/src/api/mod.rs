//! The registry HTTP API (`/api/v1/devices`, `/entities`, `/relationships`, `/models`, `/tokens`,
//! `/audit`) and the device telemetry endpoint, plus the helpers they share: JSON bodies with
//! clear errors, registry calls on the blocking pool, pagination parameters.

pub mod audit;
pub mod backup;
pub mod bulk;
pub mod commands;
pub mod devices;
pub mod enrollments;
pub mod entities;
pub mod erase;
pub mod methods;
pub mod models;
pub mod rules;
pub mod telemetry;
pub mod tokens;
pub mod twins;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde::de::DeserializeOwned;
use strata_registry::{PageRequest, Registry, RegistryError};

use crate::auth::Principal;
use crate::body;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest JSON body of the single-object registry endpoints (bulk import uses `--max-body-mb`).
pub const REGISTRY_BODY_LIMIT: usize = 1 << 20;

/// Runs a registry call on the blocking pool (registry writes fsync).
pub async fn blocking<T, F>(st: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
{
    let reg = st.registry.clone();
    tokio::task::spawn_blocking(move || f(&reg))
        .await
        .map_err(ApiError::from_join)?
        .map_err(ApiError::from)
}

/// Refuses device credentials on an application endpoint: `what` says what a device may not do.
pub fn only_applications(p: &Principal, what: &str) -> Result<(), ApiError> {
    match p {
        Principal::Token(_) => Ok(()),
        Principal::Device(d) => Err(ApiError::Forbidden(format!(
            "device '{d}' may not {what}; use an API token"
        ))),
    }
}

/// Minting or re-enabling device credentials (registering devices, rotating keys, issuing or
/// pinning certificates, provisioning groups): a device writes to any stream of the device database, so
/// a token limited to other streams may not do it (it could then write through the device).
pub fn may_mint_device_credentials(st: &AppState, p: &Principal) -> Result<(), ApiError> {
    let db = st.pipeline.admission().device_database();
    if p.allows_database(db) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "{} may not create or enable device credentials: devices write to every stream of database '{db}', which it is not allowed; use a token allowed on '{db}' or one without stream limits",
        p.actor()
    )))
}

/// A device acts only on its own inbox, twin and methods (tokens act for any device).
pub fn same_device(p: &Principal, id: &str) -> Result<(), ApiError> {
    match p {
        Principal::Device(d) if d != id => Err(ApiError::Forbidden(format!(
            "device '{d}' may not act for device '{id}'"
        ))),
        _ => Ok(()),
    }
}

/// Parses a JSON request body into `T`; a missing body, invalid JSON or a wrong shape is a 400
/// naming the problem, an oversized body a 413.
pub fn json_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| body::rejection(r, limit))?;
    parse_json(&bytes)
}

/// Parses JSON bytes into `T` (400 with serde's message on failure).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the request needs a JSON body".into()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Parses an optional JSON body: empty means `T::default()`.
pub fn optional_json<T: DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| body::rejection(r, limit))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(&bytes)
}

/// `after` and `limit` query parameters.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PageParams {
    /// Exclusive cursor: the `next_after` of the previous page.
    pub after: Option<String>,
    /// Page size (default 100, at most 10,000).
    pub limit: Option<usize>,
}

impl PageParams {
    /// The registry's page request.
    pub fn page(&self) -> PageRequest {
        PageRequest {
            after: self.after.clone().filter(|a| !a.is_empty()),
            limit: self.limit.unwrap_or(0),
        }
    }
}

/// Parses a `limit` value.
pub fn parse_limit(v: &str) -> Result<usize, ApiError> {
    v.parse()
        .map_err(|_| ApiError::BadRequest(format!("limit '{v}' is not a non-negative integer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_are_400() {
        assert!(matches!(
            parse_json::<serde_json::Value>(b"  "),
            Err(ApiError::BadRequest(m)) if m.contains("needs a JSON body")
        ));
        assert!(matches!(
            parse_json::<PageParams>(b"{"),
            Err(ApiError::BadRequest(m)) if m.contains("invalid JSON")
        ));
        assert!(parse_json::<serde_json::Value>(b"{\"a\":1}").is_ok());
    }

    #[test]
    fn page_params() {
        let p = PageParams {
            after: Some(String::new()),
            limit: None,
        };
        assert_eq!(p.page(), PageRequest::default());
        assert!(parse_limit("x").is_err());
        assert_eq!(parse_limit("5").unwrap(), 5);
    }
}
