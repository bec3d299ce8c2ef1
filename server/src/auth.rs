//! Authentication and authorization of HTTP requests. A route layer looks up what the matched
//! route needs ([`policy`]), checks the presented credentials against the registry (API tokens
//! with scopes `read` ⊂ `write` ⊂ `admin`, or device id + key), and stores the resulting
//! [`Principal`] in the request extensions for handlers (audit actor, stream limits, the device a
//! write is forced to). Missing or bad credentials answer 401, a too narrow scope 403, both with a
//! JSON message. No secret is ever logged or echoed.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use strata_registry::{RegistryError, Scope, TOKEN_PREFIX, TokenInfo};

use crate::credentials::{self, Presented};
use crate::error::ApiError;
use crate::state::AppState;

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (`/health`, `/ping`).
    Public,
    /// An API token with the `read` scope.
    Read,
    /// An API token with the `read` scope, or device credentials (the handler confines a device
    /// to its own resources, e.g. its twin).
    ReadOrDevice,
    /// An API token with the `write` scope, or device credentials (rows are then forced to the
    /// device).
    Write,
    /// An API token with the `admin` scope.
    Admin,
    /// An API token with the `admin` scope and no stream limits: endpoints whose effect or
    /// answer reaches every database (rules run SQL over all of them and write where their
    /// actions say; lifecycle policies expire data).
    UnlimitedAdmin,
}

/// Who made a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// An API token (never the secret, only its description).
    Token(TokenInfo),
    /// An authenticated, enabled device.
    Device(String),
}

impl Principal {
    /// The actor recorded in the audit log: `token:<id>` or `device:<id>`.
    pub fn actor(&self) -> String {
        match self {
            Principal::Token(t) => format!("token:{}", t.id),
            Principal::Device(d) => format!("device:{d}"),
        }
    }

    /// The device a write is forced to, for device credentials.
    pub fn device(&self) -> Option<&str> {
        match self {
            Principal::Device(d) => Some(d),
            Principal::Token(_) => None,
        }
    }

    /// Whether this principal may touch `stream` of `database`: devices may (they are confined
    /// to their own rows instead); a limited token needs the entry `database` or
    /// `database/stream` (see `docs/security.md`).
    pub fn allows(&self, database: &str, stream: &str) -> bool {
        match self {
            Principal::Device(_) => true,
            Principal::Token(t) => t.allows_stream(database, stream),
        }
    }

    /// Whether this principal may touch every stream of `database`.
    pub fn allows_database(&self, database: &str) -> bool {
        match self {
            Principal::Device(_) => true,
            Principal::Token(t) => t.allows_database(database),
        }
    }

    /// `Ok` when [`Principal::allows`], else 403 naming the token, database and stream.
    pub fn check_stream(&self, database: &str, stream: &str) -> Result<(), ApiError> {
        if self.allows(database, stream) {
            return Ok(());
        }
        let id = match self {
            Principal::Token(t) => t.id.as_str(),
            Principal::Device(d) => d.as_str(),
        };
        Err(ApiError::Forbidden(format!(
            "token '{id}' is limited to other streams: not allowed on database '{database}', stream '{stream}'"
        )))
    }
}

/// The access a route needs, by method and route pattern. Unknown routes need `admin`
/// (deny by default); registry reads need `read`, registry changes `admin`.
pub fn policy(method: &Method, route: &str) -> Access {
    match route {
        // Authenticated by the device's derived key in the handler (docs/devices.md).
        "/health" | "/ping" | "/api/v1/provision/{enrollment}" => Access::Public,
        "/api/v1/write"
        | "/write"
        | "/api/v2/write"
        | "/api/v1/devices/{id}/telemetry/{stream}" => Access::Write,
        "/api/v1/read" | "/api/v1/query" | "/api/v1/databases" | "/api/v1/streams"
        | "/api/v1/health" | "/metrics" => Access::Read,
        "/api/v1/flush" | "/api/v1/compact" | "/api/v1/audit" => Access::Admin,
        // Device plane: devices fetch and acknowledge their commands; applications send and
        // cancel them with `write`, read them with `read` (docs/devices.md).
        "/api/v1/devices/{id}/commands/next" | "/api/v1/devices/{id}/commands/{cid}/ack" => {
            Access::Write
        }
        "/api/v1/devices/{id}/commands" | "/api/v1/devices/{id}/commands/{cid}"
            if method != Method::GET && method != Method::HEAD =>
        {
            Access::Write
        }
        // One command to many devices at once (docs/devices.md).
        "/api/v1/commands" if method != Method::GET && method != Method::HEAD => Access::Write,
        // Twins: applications read with `read` and write desired with `write`; a device reads
        // its twin and writes reported. Methods: applications with `write`.
        "/api/v1/devices/{id}/twin" => Access::ReadOrDevice,
        "/api/v1/devices/{id}/twin/desired"
        | "/api/v1/devices/{id}/twin/reported"
        | "/api/v1/devices/{id}/methods/{name}" => Access::Write,
        r if r == "/api/v1/tokens" || r.starts_with("/api/v1/tokens/") => Access::Admin,
        r if r == "/api/v1/rules"
            || r.starts_with("/api/v1/rules/")
            || r == "/api/v1/databases/{db}/lifecycle"
            || r == "/api/v1/lifecycle/run" =>
        {
            Access::UnlimitedAdmin
        }
        r if is_registry(r) && (method == Method::GET || method == Method::HEAD) => Access::Read,
        _ => Access::Admin,
    }
}

fn is_registry(route: &str) -> bool {
    ["devices", "entities", "relationships", "models"]
        .iter()
        .any(|p| {
            let base = format!("/api/v1/{p}");
            route == base || route.starts_with(&format!("{base}/"))
        })
}

/// Route layer: authenticates and authorizes the request for its matched route, then runs it
/// with the [`Principal`] in its extensions.
pub async fn enforce(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let access = policy(req.method(), &route);
    if access == Access::Public {
        return next.run(req).await;
    }
    match authenticate(&st, &req).and_then(|p| authorize(p, access)) {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Checks the presented credentials against the registry.
pub fn authenticate(st: &AppState, req: &Request) -> Result<Principal, ApiError> {
    let presented = credentials::from_request(req.headers(), req.uri().query())
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    match presented {
        Some(presented) => resolve(st, presented),
        // No credentials: an HTTPS client certificate may name the device (mTLS).
        None => crate::tls::identity::request_device(st, req)
            .unwrap_or_else(|| Err(ApiError::Unauthorized(MISSING.into())))
            .map(Principal::Device),
    }
}

/// The message of a 401 without credentials.
pub const MISSING: &str = "missing credentials: send 'Authorization: Bearer <token>' (API token) \
     or 'Authorization: Basic base64(device_id:key)' (device)";

/// Resolves presented credentials to a principal (also used by the Flight SQL server).
pub fn resolve(st: &AppState, presented: Presented) -> Result<Principal, ApiError> {
    let reg = &st.registry;
    match presented {
        Presented::Token(t) => Ok(Principal::Token(reg.authenticate_token(&t)?)),
        Presented::Basic { password, .. } if password.starts_with(TOKEN_PREFIX) => {
            Ok(Principal::Token(reg.authenticate_token(&password)?))
        }
        Presented::Basic { user, password } => match reg.authenticate_device(&user, &password) {
            Ok(_) => Ok(Principal::Device(user)),
            Err(device_err) => match reg.authenticate_token(&password) {
                Ok(info) => Ok(Principal::Token(info)),
                Err(token_err) => Err(basic_error(device_err, token_err)),
            },
        },
    }
}

/// The clearer of the two refusals of a Basic login that is neither a device key nor a token.
fn basic_error(device_err: RegistryError, token_err: RegistryError) -> ApiError {
    let generic = |e: &RegistryError| {
        matches!(e, RegistryError::Unauthorized(m)
            if m == "unknown device or wrong key" || m == "unknown or invalid token")
    };
    if !generic(&device_err) {
        return device_err.into();
    }
    if !generic(&token_err) {
        return token_err.into();
    }
    ApiError::Unauthorized(
        "invalid credentials: unknown device or wrong key (and not a valid API token)".into(),
    )
}

/// Checks that `principal` has `access`.
pub fn authorize(principal: Principal, access: Access) -> Result<Principal, ApiError> {
    let scope = match access {
        Access::Public => return Ok(principal),
        Access::Read | Access::ReadOrDevice => Scope::Read,
        Access::Write => Scope::Write,
        Access::Admin | Access::UnlimitedAdmin => Scope::Admin,
    };
    match &principal {
        Principal::Token(t) => {
            t.check(scope, None)?;
            if access == Access::UnlimitedAdmin && t.streams.is_some() {
                return Err(ApiError::Forbidden(format!(
                    "token '{}' is limited to named streams; rules and lifecycle policies reach every database, so they need an admin token without stream limits",
                    t.id
                )));
            }
        }
        Principal::Device(d) if !matches!(access, Access::Write | Access::ReadOrDevice) => {
            return Err(ApiError::Forbidden(format!(
                "device '{d}' may only write telemetry; this endpoint needs an API token with the '{}' scope",
                scope_name(scope)
            )));
        }
        Principal::Device(_) => {}
    }
    Ok(principal)
}

/// The JSON name of a scope.
pub fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::Read => "read",
        Scope::Write => "write",
        Scope::Admin => "admin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(scopes: &[Scope], streams: Option<&[&str]>) -> Principal {
        Principal::Token(TokenInfo {
            id: "t1".into(),
            name: "t".into(),
            scopes: scopes.to_vec(),
            streams: streams.map(|s| s.iter().map(|x| x.to_string()).collect()),
            created_by: "test".into(),
            created_ns: 0,
            revoked_ns: None,
        })
    }

    #[test]
    fn route_policy() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(policy(&get, "/health"), Access::Public);
        assert_eq!(policy(&get, "/ping"), Access::Public);
        assert_eq!(policy(&post, "/write"), Access::Write);
        assert_eq!(
            policy(&post, "/api/v1/devices/{id}/telemetry/{stream}"),
            Access::Write
        );
        assert_eq!(policy(&get, "/api/v1/read"), Access::Read);
        assert_eq!(policy(&get, "/metrics"), Access::Read);
        assert_eq!(policy(&get, "/api/v1/devices"), Access::Read);
        assert_eq!(policy(&get, "/api/v1/entities/{id}/devices"), Access::Read);
        assert_eq!(policy(&post, "/api/v1/devices"), Access::Admin);
        assert_eq!(
            policy(&Method::DELETE, "/api/v1/devices/{id}"),
            Access::Admin
        );
        assert_eq!(policy(&get, "/api/v1/tokens"), Access::Admin);
        assert_eq!(policy(&get, "/api/v1/audit"), Access::Admin);
        assert_eq!(policy(&post, "/api/v1/flush"), Access::Admin);
        assert_eq!(policy(&get, "/api/v1/unknown"), Access::Admin);
        assert_eq!(policy(&get, "/api/v1/devicesX"), Access::Admin);
        assert_eq!(
            policy(&get, "/api/v1/devices/{id}/twin"),
            Access::ReadOrDevice
        );
        assert_eq!(
            policy(&Method::PATCH, "/api/v1/devices/{id}/twin/desired"),
            Access::Write
        );
        assert_eq!(
            policy(&post, "/api/v1/devices/{id}/methods/{name}"),
            Access::Write
        );
        let device = Principal::Device("d1".into());
        assert!(authorize(device.clone(), Access::ReadOrDevice).is_ok());
        assert!(authorize(device, Access::Read).is_err());
    }

    #[test]
    fn scopes_are_hierarchical() {
        let read = token(&[Scope::Read], None);
        assert!(authorize(read.clone(), Access::Read).is_ok());
        let e = authorize(read, Access::Write).unwrap_err();
        assert_eq!(e.status().as_u16(), 403);
        assert!(e.to_string().contains("write"), "{e}");
        let admin = token(&[Scope::Admin], None);
        for a in [Access::Read, Access::Write, Access::Admin] {
            assert!(authorize(admin.clone(), a).is_ok());
        }
        let write = token(&[Scope::Write], None);
        assert!(authorize(write.clone(), Access::Read).is_ok());
        assert_eq!(
            authorize(write, Access::Admin)
                .unwrap_err()
                .status()
                .as_u16(),
            403
        );
    }

    #[test]
    fn devices_only_write() {
        let d = Principal::Device("d1".into());
        assert!(authorize(d.clone(), Access::Write).is_ok());
        let e = authorize(d.clone(), Access::Read).unwrap_err();
        assert_eq!(e.status().as_u16(), 403);
        assert!(e.to_string().contains("d1"));
        assert_eq!(d.actor(), "device:d1");
        assert_eq!(d.device(), Some("d1"));
    }

    #[test]
    fn stream_limits() {
        let t = token(&[Scope::Write], Some(&["fleet", "default/cpu"]));
        assert!(t.allows("fleet", "anything"));
        assert!(t.allows("default", "cpu"));
        assert!(!t.allows("other", "cpu"));
        assert!(!t.allows("other", "fleet"));
        assert!(!t.allows("other", "mem"));
        assert!(!t.allows_database("default"));
        assert!(t.allows_database("fleet"));
        assert!(!t.allows_database("other"));
        let e = t.check_stream("other", "mem").unwrap_err();
        assert_eq!(e.status().as_u16(), 403);
        assert!(e.to_string().contains("mem"));
        assert!(token(&[Scope::Read], None).allows("x", "y"));
        assert_eq!(t.actor(), "token:t1");
    }

    #[test]
    fn basic_errors_prefer_the_specific_reason() {
        let generic_dev = RegistryError::Unauthorized("unknown device or wrong key".into());
        let generic_tok = RegistryError::Unauthorized("unknown or invalid token".into());
        let disabled = RegistryError::Unauthorized("device 'd' is disabled".into());
        assert!(
            basic_error(disabled, generic_tok.clone())
                .to_string()
                .contains("disabled")
        );
        let e = basic_error(generic_dev, generic_tok);
        assert_eq!(e.status().as_u16(), 401);
        assert!(e.to_string().contains("invalid credentials"));
    }
}
