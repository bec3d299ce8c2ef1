//! Sign-in over the PostgreSQL protocol: the password is an API token (any user name), sent as a
//! cleartext password message, which the server accepts only over TLS or from a loopback
//! address. The token must be allowed to run SQL exactly as over HTTP (`read` scope, not limited
//! to named streams); the session keeps it and checks it again before every statement, so a
//! revoked token stops working at once.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::sink::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, ServerParameterProvider, StartupHandler, finish_authentication,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use strata_ingest::mqtt::Establish;

use crate::auth::{Access, Principal, authorize};
use crate::error::ApiError;
use crate::query::refuse_limited_tokens;
use crate::state::AppState;

/// What an authenticated connection keeps: the token (to check it again) and who it is.
pub struct Session {
    token: String,
    /// The token's principal at sign-in.
    pub principal: Principal,
}

impl Debug for Session {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("actor", &self.principal.actor())
            .finish_non_exhaustive()
    }
}

/// A principal allowed to run SQL over this transport, or the refusal.
fn sql_principal(st: &AppState, token: &str) -> Result<Principal, ApiError> {
    let info = st.registry.authenticate_token(token)?;
    let p = authorize(Principal::Token(info), Access::Read)?;
    refuse_limited_tokens(&p)?;
    Ok(p)
}

impl Session {
    /// The session's principal as of now (the token may have been revoked since sign-in).
    pub fn check(&self, st: &AppState) -> Result<Principal, ApiError> {
        sql_principal(st, &self.token)
    }
}

/// The startup handler: cleartext password = API token.
pub struct TokenStartup {
    st: AppState,
    parameters: DefaultServerParameterProvider,
}

impl TokenStartup {
    /// A handler checking tokens against `st`'s registry.
    pub fn new(st: AppState) -> TokenStartup {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = format!("16.6 (Strata {})", env!("CARGO_PKG_VERSION"));
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        parameters.search_path = strata_query::pg_setting("search_path")
            .unwrap_or(strata_storage::DEFAULT_DATABASE)
            .to_owned();
        parameters.time_zone = "UTC".to_owned();
        TokenStartup { st, parameters }
    }

    /// The parameters sent after sign-in (also answered by `SHOW`).
    pub fn parameters<C: ClientInfo>(&self, client: &C) -> HashMap<String, String> {
        self.parameters
            .server_parameters(client)
            .unwrap_or_default()
    }
}

/// A `FATAL` refusal of the sign-in.
fn refuse(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message,
    )))
}

#[async_trait]
impl StartupHandler for TokenStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if !client.is_secure() && !client.socket_addr().ip().is_loopback() {
                    return Err(refuse(
                        "28000",
                        "the password (an API token) is accepted only over TLS from a remote \
                         address: connect with sslmode=require"
                            .into(),
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let token = message.into_password()?.password;
                let principal = sql_principal(&self.st, &token).map_err(|e| {
                    let code = if e.status().as_u16() == 403 {
                        "42501"
                    } else {
                        "28P01"
                    };
                    refuse(code, format!("password authentication failed: {e}"))
                })?;
                tracing::debug!(actor = %principal.actor(), peer = %client.socket_addr(), "PostgreSQL sign-in");
                client
                    .session_extensions()
                    .insert(Session { token, principal });
                finish_authentication(client, &self.parameters).await
            }
            _ => Ok(()),
        }
    }
}

/// The sign-in of one connection: [`TokenStartup`], then marks the connection's slot under
/// `--max-connections-pg` established, so that only connections that signed in hold their place.
pub struct EstablishOnSignIn {
    inner: Arc<TokenStartup>,
    slot: Establish,
}

impl EstablishOnSignIn {
    /// Sign-in through `inner` for the connection holding `slot`.
    pub fn new(inner: Arc<TokenStartup>, slot: Establish) -> Self {
        EstablishOnSignIn { inner, slot }
    }
}

#[async_trait]
impl StartupHandler for EstablishOnSignIn {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.inner.on_startup(client, message).await?;
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            self.slot.establish();
        }
        Ok(())
    }
}
