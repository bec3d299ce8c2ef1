//! A small blocking HTTP client for the client commands: JSON requests with the API token,
//! server errors turned into readable messages (`HTTP 403: token 't1' lacks the 'admin' scope`).

use std::time::Duration;

use anyhow::bail;
use serde_json::Value;

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    Empty,
    /// A JSON document.
    Json(Value),
    /// Raw bytes with a content type (e.g. CSV).
    Raw {
        /// The `Content-Type`.
        content_type: String,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

/// Connection to one server with one token.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl std::fmt::Debug for Client {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:7086`) sending `Authorization: Bearer <token>`.
    pub fn new(base: &str, token: &str) -> Self {
        Client {
            // Per-operation timeouts, not one for the whole request: a large segment on a slow
            // link may take longer than any fixed total, as long as bytes keep arriving.
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(30))
                .timeout_read(Duration::from_secs(300))
                .timeout_write(Duration::from_secs(300))
                .build(),
            base: base.trim_end_matches('/').to_owned(),
            auth: format!("Bearer {token}"),
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` → the body's bytes (a non-2xx answer becomes an error with the server's message).
    pub fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        match self.agent.get(&url).set("Authorization", &self.auth).call() {
            Ok(resp) => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut resp.into_reader(), &mut bytes)?;
                Ok(bytes)
            }
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                bail!("GET {path}: {}", describe_error(code, &text))
            }
            Err(ureq::Error::Transport(t)) => {
                bail!("cannot reach the server at {}: {t}", self.base)
            }
        }
    }

    /// `GET path` → JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send("GET", path, Body::Empty)
    }

    /// `POST path` with a JSON body → JSON (null for an empty answer).
    pub fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send("POST", path, Body::Json(body))
    }

    /// `DELETE path` → JSON (null for `204`).
    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send("DELETE", path, Body::Empty)
    }

    /// Sends a request; a non-2xx answer becomes an error with the server's message.
    pub fn send(&self, method: &str, path: &str, body: Body) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let req = self
            .agent
            .request(method, &url)
            .set("Authorization", &self.auth);
        let res = match body {
            Body::Empty => req.call(),
            Body::Json(v) => req
                .set("Content-Type", "application/json")
                .send_bytes(v.to_string().as_bytes()),
            Body::Raw {
                content_type,
                bytes,
            } => req.set("Content-Type", &content_type).send_bytes(&bytes),
        };
        match res {
            Ok(resp) => parse_answer(resp),
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                bail!("{method} {path}: {}", describe_error(code, &text))
            }
            Err(ureq::Error::Transport(t)) => {
                bail!("cannot reach the server at {}: {t}", self.base)
            }
        }
    }
}

/// Percent-encodes a path segment or query value (everything but `A-Za-z0-9-._~`).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string (`?k=v&...`, empty when there are no pairs), values encoded.
pub fn query(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

fn parse_answer(resp: ureq::Response) -> anyhow::Result<Value> {
    let text = resp.into_string()?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// `HTTP <code>: <error message>` plus a hint for 401.
pub fn describe_error(code: u16, body: &str) -> String {
    let msg = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    let hint = if code == 401 {
        " (check --token, STRATA_TOKEN or --data-dir)"
    } else {
        ""
    };
    format!("HTTP {code}: {msg}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_readable() {
        assert_eq!(
            describe_error(404, r#"{"error":"device 'x' not found"}"#),
            "HTTP 404: device 'x' not found"
        );
        assert!(describe_error(401, "{}").contains("--token"));
        assert_eq!(describe_error(500, "boom\n"), "HTTP 500: boom");
        assert_eq!(enc("a b/c:d"), "a%20b%2Fc%3Ad");
        assert_eq!(
            query(&[
                ("attr.x".into(), "1 2".into()),
                ("limit".into(), "5".into())
            ]),
            "?attr.x=1%202&limit=5"
        );
        assert_eq!(query(&[]), "");
        let c = Client::new("http://h:1/", "secret");
        assert!(!format!("{c:?}").contains("secret"));
    }
}
