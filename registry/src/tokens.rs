//! API tokens: creation (secret shown once), listing, revocation, scope checks and the
//! bootstrap admin token.
//!
//! Format: `strata_<id>_<secret>` with a 16-hex-char id and a 64-hex-char (256-bit) secret.
//! The whole token string is stored as a salted HMAC-SHA256 hash under its id.
//!
//! Limits: a token may be confined to entries `db` (every stream of database `db`) or
//! `db/stream` (one stream of one database). A token created by another token is never broader
//! than its creator: its scope is at most the creator's and, when the creator is limited, each of
//! its entries lies inside one of the creator's ([`TokenInfo::covers`]).

use redb::ReadableTable;

use crate::crypto::{SecretHash, random_hex};
use crate::error::{RegistryError, Result};
use crate::model::{CreatedToken, NewToken, Page, PageRequest, RegistryEvent, Scope, TokenInfo};
use crate::registry::Registry;
use crate::store::{self, ENV_ADMIN_TOKEN_ID, LIMIT_FORMAT, TOKENS, TokenRecord};
use crate::sync::{now_ns, page_limit};
use crate::validate::{validate_id, validate_text};

/// Prefix of every generated token.
pub const TOKEN_PREFIX: &str = "strata_";
/// Shortest value accepted from `STRATA_ADMIN_TOKEN`.
pub const MIN_ENV_TOKEN_LEN: usize = 16;
/// Most limit entries a token may have.
pub const MAX_TOKEN_STREAMS: usize = 256;
/// One limit entry: a database, or a stream of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit<'a> {
    Database(&'a str),
    Stream(&'a str, &'a str),
}

impl<'a> Limit<'a> {
    fn parse(entry: &'a str) -> Limit<'a> {
        match entry.split_once('/') {
            Some((db, stream)) => Limit::Stream(db, stream),
            None => Limit::Database(entry),
        }
    }

    /// Whether this entry grants everything `other` grants.
    fn contains(self, other: Limit<'_>) -> bool {
        match (self, other) {
            (Limit::Database(a), Limit::Database(b)) => a == b,
            (Limit::Database(a), Limit::Stream(b, _)) => a == b,
            (Limit::Stream(a, s), Limit::Stream(b, t)) => a == b && s == t,
            (Limit::Stream(..), Limit::Database(_)) => false,
        }
    }
}

impl TokenInfo {
    /// Whether the token grants `scope` (scopes are hierarchical: admin ⊇ write ⊇ read).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| *s >= scope)
    }

    /// Whether the token may touch `stream` of `database` (always, when not limited): its
    /// limits hold `database` or `database/stream`.
    pub fn allows_stream(&self, database: &str, stream: &str) -> bool {
        let wanted = Limit::Stream(database, stream);
        self.streams
            .as_ref()
            .is_none_or(|list| list.iter().any(|e| Limit::parse(e).contains(wanted)))
    }

    /// Whether the token may touch every stream of `database` (and create it): its limits
    /// hold the entry `database`.
    pub fn allows_database(&self, database: &str) -> bool {
        let wanted = Limit::Database(database);
        self.streams
            .as_ref()
            .is_none_or(|list| list.iter().any(|e| Limit::parse(e).contains(wanted)))
    }

    /// The highest scope granted.
    pub fn max_scope(&self) -> Option<Scope> {
        self.scopes.iter().max().copied()
    }

    /// Whether a token asked for by `req` would be no broader than this one: scope at most this
    /// token's, and (when this token is limited) limited to entries inside this token's.
    pub fn covers(&self, req: &NewToken) -> bool {
        let scope_ok = req.scopes.iter().max() <= self.max_scope().as_ref();
        let limits_ok = match (&self.streams, &req.streams) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs.iter().all(|t| {
                let t = Limit::parse(t);
                mine.iter().any(|m| Limit::parse(m).contains(t))
            }),
        };
        scope_ok && limits_ok
    }

    /// `Ok` when the token grants `scope` (and, if given, access to `(database, stream)`);
    /// otherwise `Forbidden` with a message naming what is missing.
    pub fn check(&self, scope: Scope, stream: Option<(&str, &str)>) -> Result<()> {
        if !self.allows(scope) {
            return Err(RegistryError::Forbidden(format!(
                "token '{}' lacks the '{}' scope",
                self.id,
                scope_name(scope)
            )));
        }
        match stream {
            Some((db, name)) if !self.allows_stream(db, name) => {
                Err(RegistryError::Forbidden(format!(
                    "token '{}' is not allowed on database '{db}', stream '{name}'",
                    self.id
                )))
            }
            _ => Ok(()),
        }
    }
}

fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::Read => "read",
        Scope::Write => "write",
        Scope::Admin => "admin",
    }
}

fn validate_new_token(req: &NewToken) -> Result<()> {
    if req.scopes.is_empty() {
        return Err(RegistryError::invalid("a token needs at least one scope"));
    }
    if let Some(name) = &req.name {
        validate_text("token name", name)?;
    }
    if let Some(streams) = &req.streams {
        if streams.len() > MAX_TOKEN_STREAMS {
            return Err(RegistryError::invalid(format!(
                "a token may be limited to at most {MAX_TOKEN_STREAMS} streams"
            )));
        }
        for entry in streams {
            validate_limit(entry)?;
        }
    }
    Ok(())
}

/// Checks one limit entry: `db` or `db/stream`, each part a valid id.
fn validate_limit(entry: &str) -> Result<()> {
    match Limit::parse(entry) {
        Limit::Database(db) => validate_id("token limit database", db),
        Limit::Stream(db, stream) => {
            validate_id("token limit database", db)?;
            validate_id("token limit stream", stream)
        }
    }
    .map_err(|e| {
        RegistryError::invalid(format!(
            "token limit '{}' must be 'db' or 'db/stream': {e}",
            entry.escape_debug()
        ))
    })
}

fn sorted_scopes(scopes: &[Scope]) -> Vec<Scope> {
    let mut v = scopes.to_vec();
    v.sort();
    v.dedup();
    v
}

impl Registry {
    /// Creates a token; the returned [`CreatedToken::token`] is the only copy of the secret.
    /// For a token created on behalf of another token use [`Registry::create_token_by`].
    pub fn create_token(&self, actor: &str, req: NewToken) -> Result<CreatedToken> {
        self.create_token_inner(actor, req, None)
    }

    /// Creates a token on behalf of `creator` (audited as `token:<id>`), refusing with
    /// `Forbidden` one broader than the creator ([`TokenInfo::covers`]).
    pub fn create_token_by(&self, creator: &TokenInfo, req: NewToken) -> Result<CreatedToken> {
        let actor = format!("token:{}", creator.id);
        let refused = validate_new_token(&req).err().or_else(|| {
            (!creator.covers(&req)).then(|| {
                RegistryError::Forbidden(format!(
                    "token '{}' cannot create a token broader than itself (scope or limits)",
                    creator.id
                ))
            })
        });
        if let Some(e) = refused {
            // Refused before a token id exists: audited under the creator's own id.
            return self.audited(&actor, "token.create", &creator.id, |_| Err(e));
        }
        self.create_token_inner(&actor, req, None)
    }

    fn create_token_inner(
        &self,
        actor: &str,
        req: NewToken,
        fixed: Option<(&str, &str)>,
    ) -> Result<CreatedToken> {
        let (id, token) = match fixed {
            Some((id, secret)) => (id.to_string(), secret.to_string()),
            None => {
                let id = random_hex(8);
                let token = format!("{TOKEN_PREFIX}{id}_{}", random_hex(32));
                (id, token)
            }
        };
        let action = "token.create";
        let rec = self.audited(actor, action, &id, |txn| {
            validate_new_token(&req)?;
            let info = TokenInfo {
                id: id.clone(),
                name: req.name.clone().unwrap_or_else(|| "token".into()),
                scopes: sorted_scopes(&req.scopes),
                streams: req.streams.clone(),
                created_by: actor.to_string(),
                created_ns: now_ns(),
                revoked_ns: None,
            };
            let rec = TokenRecord {
                info,
                secret_hash: SecretHash::new(token.as_bytes()).encode(),
                limit_format: LIMIT_FORMAT,
            };
            let mut table = txn.open_table(TOKENS)?;
            if fixed.is_none() && table.get(id.as_str())?.is_some() {
                return Err(RegistryError::exists("token", id.clone()));
            }
            store::put_json(&mut table, &id, &rec)?;
            Ok(rec)
        })?;
        let info = rec.info.clone();
        self.inner.tokens.put(rec)?;
        Ok(CreatedToken { token, info })
    }

    /// Lists tokens (never their secrets), ordered by id.
    pub fn list_tokens(&self, page: &PageRequest) -> Result<Page<TokenInfo>> {
        let txn = self.inner.read_txn()?;
        let table = txn.open_table(TOKENS)?;
        let limit = page_limit(page.limit);
        let after = page.after.clone().unwrap_or_default();
        let mut items = Vec::new();
        let mut more = false;
        let range = table.range::<&str>((
            std::ops::Bound::Excluded(after.as_str()),
            std::ops::Bound::Unbounded,
        ))?;
        for item in range {
            let (_, v) = item?;
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(serde_json::from_slice::<TokenRecord>(v.value())?.info);
        }
        let next_after = if more {
            items.last().map(|t: &TokenInfo| t.id.clone())
        } else {
            None
        };
        Ok(Page { items, next_after })
    }

    /// One token's description.
    pub fn get_token(&self, id: &str) -> Result<TokenInfo> {
        let txn = self.inner.read_txn()?;
        let table = txn.open_table(TOKENS)?;
        store::get_json::<TokenRecord, _>(&table, id)?
            .map(|r| r.info)
            .ok_or_else(|| RegistryError::not_found("token", id))
    }

    /// Revokes a token: it is refused from the moment this returns. Revoking twice is a no-op.
    pub fn revoke_token(&self, actor: &str, id: &str) -> Result<TokenInfo> {
        self.revoke_checked(actor, id, None)
    }

    /// Revokes a token on behalf of `revoker` (audited as `token:<id>`), refusing with
    /// `Forbidden` a token broader than the revoker ([`TokenInfo::covers`]): a token limited to
    /// some streams cannot take away access it could not grant.
    pub fn revoke_token_by(&self, revoker: &TokenInfo, id: &str) -> Result<TokenInfo> {
        self.revoke_checked(&format!("token:{}", revoker.id), id, Some(revoker))
    }

    fn revoke_checked(
        &self,
        actor: &str,
        id: &str,
        revoker: Option<&TokenInfo>,
    ) -> Result<TokenInfo> {
        let rec = self.audited(actor, "token.revoke", id, |txn| {
            let mut table = txn.open_table(TOKENS)?;
            let mut rec: TokenRecord = store::get_json(&table, id)?
                .ok_or_else(|| RegistryError::not_found("token", id))?;
            let target = NewToken {
                name: None,
                scopes: rec.info.scopes.clone(),
                streams: rec.info.streams.clone(),
            };
            if let Some(r) = revoker
                && !r.covers(&target)
            {
                return Err(RegistryError::Forbidden(format!(
                    "token '{}' cannot revoke token '{id}', which is broader than itself (scope or limits)",
                    r.id
                )));
            }
            if rec.info.revoked_ns.is_none() {
                rec.info.revoked_ns = Some(now_ns());
                store::put_json(&mut table, id, &rec)?;
            }
            Ok(rec)
        })?;
        let info = rec.info.clone();
        self.inner.tokens.put(rec)?;
        self.inner.publish(RegistryEvent::TokenRevoked {
            token_id: id.to_string(),
        });
        Ok(info)
    }

    /// Bootstraps administrator access at server start.
    ///
    /// - `Some(value)` (from `STRATA_ADMIN_TOKEN`): installs `value` (at least 16 printable
    ///   ASCII characters) as the admin token stored under id [`ENV_ADMIN_TOKEN_ID`],
    ///   replacing a previous env value; returns `None`.
    /// - `None`: when no active admin token exists (first start, or all revoked), creates one
    ///   and returns its secret once so the server can print it and write it to a 0600 file;
    ///   otherwise returns `None`.
    pub fn ensure_admin_token(&self, env_value: Option<&str>) -> Result<Option<String>> {
        match env_value {
            Some(value) => self.install_env_admin(value).map(|()| None),
            None if self.inner.tokens.has_active_admin() => Ok(None),
            None => {
                let req = NewToken {
                    name: Some("bootstrap admin".into()),
                    scopes: vec![Scope::Admin],
                    streams: None,
                };
                Ok(Some(self.create_token("system", req)?.token))
            }
        }
    }

    fn install_env_admin(&self, value: &str) -> Result<()> {
        if value.len() < MIN_ENV_TOKEN_LEN
            || value.len() > 512
            || !value.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(RegistryError::invalid(format!(
                "STRATA_ADMIN_TOKEN must be {MIN_ENV_TOKEN_LEN}..=512 printable ASCII characters"
            )));
        }
        if self.inner.tokens.env_admin_matches(value) {
            return Ok(());
        }
        if self.inner.tokens.env_admin_revoked_with(value) {
            return Err(RegistryError::invalid(format!(
                "STRATA_ADMIN_TOKEN holds a value that was revoked (token '{ENV_ADMIN_TOKEN_ID}'); \
                 set a new value, or unset it to use the tokens in the registry"
            )));
        }
        let req = NewToken {
            name: Some("STRATA_ADMIN_TOKEN".into()),
            scopes: vec![Scope::Admin],
            streams: None,
        };
        self.create_token_inner("system", req, Some((ENV_ADMIN_TOKEN_ID, value)))
            .map(|_| ())
    }
}
