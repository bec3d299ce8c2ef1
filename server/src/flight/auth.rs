//! Authentication of Flight calls with the same credentials and checks as HTTP: every call carries
//! an `authorization` header (`Bearer <API token>`, or `Basic base64(user:token)`), resolved by
//! [`crate::auth::resolve`] against the registry and authorized by [`crate::auth::authorize`]
//! (`read` for queries and metadata, `write` for `DoPut`). The handshake takes Basic credentials
//! whose password is an API token and hands the token back as a bearer token. Also the mapping of
//! [`ApiError`] onto gRPC status codes.

use std::pin::Pin;

use arrow_flight::HandshakeResponse;
use futures::Stream;
use strata_ingest::mqtt::Establish;
use strata_registry::TokenInfo;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::auth::{Access, Principal, authorize, resolve};
use crate::credentials::{Presented, parse_authorization};
use crate::error::ApiError;
use crate::query::refuse_limited_tokens;
use crate::state::AppState;

/// The message of an `Unauthenticated` status for a call without credentials.
pub const MISSING: &str = "missing credentials: send the header 'authorization: Bearer <API token>' \
     (or run the Flight handshake with Basic auth, password = API token)";

/// The handshake's response stream.
pub type HandshakeStream = Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

/// The gRPC status of an API error: 400 → `InvalidArgument`, 401 → `Unauthenticated`, 403 →
/// `PermissionDenied`, 404 → `NotFound`, 409 → `AlreadyExists`, 412 → `FailedPrecondition`,
/// 413, 422 (a database limit), 429 and 507 (disk full) → `ResourceExhausted`, 503 →
/// `Unavailable`, 504 → `DeadlineExceeded`, the rest `Internal`. The message is the error's text.
pub fn status(e: ApiError) -> Status {
    let message = e.to_string();
    match e.status().as_u16() {
        400 | 415 => Status::invalid_argument(message),
        401 => Status::unauthenticated(message),
        403 => Status::permission_denied(message),
        404 => Status::not_found(message),
        409 => Status::already_exists(message),
        412 => Status::failed_precondition(message),
        413 | 422 | 429 | 507 => Status::resource_exhausted(message),
        503 => Status::unavailable(message),
        504 => Status::deadline_exceeded(message),
        _ => Status::internal(message),
    }
}

/// The principal behind a call's `authorization` header. Valid credentials also make the
/// call's connection hold its place under `--max-connections-flight` (see [`signed_in`]).
pub fn principal<T>(st: &AppState, req: &Request<T>) -> Result<Principal, Status> {
    let presented = presented(req)?;
    let principal = resolve(st, presented).map_err(status)?;
    signed_in(req);
    Ok(principal)
}

/// Marks the call's connection established: until a call with valid credentials, a connection
/// is the first to be closed when the cap is reached, so sockets without a token (silent, a
/// half-sent HTTP/2 preface, calls that fail authentication) cannot keep clients out. The
/// listener puts the connection's handle in every request's extensions.
fn signed_in<T>(req: &Request<T>) {
    if let Some(slot) = req.extensions().get::<Establish>() {
        slot.establish();
    }
}

/// A principal allowed to run SQL: `read` scope, not limited to named streams, not a device.
pub fn reader<T>(st: &AppState, req: &Request<T>) -> Result<Principal, Status> {
    let p = authorize(principal(st, req)?, Access::Read).map_err(status)?;
    refuse_limited_tokens(&p).map_err(status)?;
    Ok(p)
}

/// A principal allowed to write (`write` scope, or device credentials confined to their device).
pub fn writer<T>(st: &AppState, req: &Request<T>) -> Result<Principal, Status> {
    authorize(principal(st, req)?, Access::Write).map_err(status)
}

/// The parsed `authorization` header of a call.
fn presented<T>(req: &Request<T>) -> Result<Presented, Status> {
    let value = req
        .metadata()
        .get("authorization")
        .ok_or_else(|| Status::unauthenticated(MISSING))?;
    let text = value.to_str().map_err(|_| {
        Status::unauthenticated("malformed authorization header: not visible ASCII")
    })?;
    parse_authorization(text).map_err(|e| Status::unauthenticated(e.to_string()))
}

/// The Flight handshake: the `authorization` header carries `Basic base64(user:token)` (any user
/// name) or `Bearer <token>`; a valid API token is returned as the payload and as the response
/// header `authorization: Bearer <token>`, which clients then send on every call.
pub fn handshake<T>(st: &AppState, req: &Request<T>) -> Result<Response<HandshakeStream>, Status> {
    let token = match presented(req)? {
        Presented::Token(t) => t,
        Presented::Basic { password, .. } => password,
    };
    let info: TokenInfo = st
        .registry
        .authenticate_token(&token)
        .map_err(|e| status(ApiError::Registry(e)))?;
    tracing::debug!(token_id = %info.id, "Flight handshake");
    signed_in(req);
    let header = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| Status::unauthenticated("the token is not a valid header value"))?;
    let reply = HandshakeResponse {
        protocol_version: 0,
        payload: token.into_bytes().into(),
    };
    let mut response: Response<HandshakeStream> =
        Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
    response.metadata_mut().insert("authorization", header);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_map_to_grpc_codes() {
        use tonic::Code;
        let cases = [
            (ApiError::BadRequest("b".into()), Code::InvalidArgument),
            (ApiError::Unauthorized("u".into()), Code::Unauthenticated),
            (ApiError::Forbidden("f".into()), Code::PermissionDenied),
            (ApiError::NotFound("n".into()), Code::NotFound),
            (ApiError::Unavailable("t".into()), Code::Unavailable),
            (ApiError::Internal("i".into()), Code::Internal),
            (
                ApiError::StorageKind {
                    kind: strata_storage::ErrorKind::LimitExceeded,
                    message: "series limit".into(),
                },
                Code::ResourceExhausted,
            ),
            (
                ApiError::StorageKind {
                    kind: strata_storage::ErrorKind::Unavailable,
                    message: "shutting down".into(),
                },
                Code::Unavailable,
            ),
            (
                ApiError::Registry(strata_registry::RegistryError::LimitExceeded("q".into())),
                Code::ResourceExhausted,
            ),
            (ApiError::GatewayTimeout("g".into()), Code::DeadlineExceeded),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let s = status(e);
            assert_eq!(s.code(), code, "{text}");
            assert_eq!(s.message(), text);
        }
    }

    #[test]
    fn missing_and_malformed_headers_are_unauthenticated() {
        let req = Request::new(());
        assert_eq!(
            presented(&req).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let mut req = Request::new(());
        req.metadata_mut()
            .insert("authorization", "Digest abc".parse().unwrap());
        let e = presented(&req).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("Digest"), "{}", e.message());
        let mut req = Request::new(());
        req.metadata_mut()
            .insert("authorization", "Bearer strata_x".parse().unwrap());
        assert_eq!(
            presented(&req).unwrap(),
            Presented::Token("strata_x".into())
        );
    }
}
