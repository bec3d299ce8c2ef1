//! Credentials as clients send them, before any check against the registry: `Authorization:
//! Bearer <token>` and `Token <token>` (InfluxDB 2.x clients), `Authorization: Basic
//! base64(user:password)` (device credentials, or InfluxDB 1.x clients with the token as the
//! password), and InfluxDB 1.x's `u`/`p` query parameters. Also the small base64 decoder Basic
//! auth needs. Parsing never panics and never echoes a secret in an error message.

use axum::http::{HeaderMap, header};

/// Longest accepted `Authorization` header value or `p` parameter, in bytes.
pub const MAX_CREDENTIAL_LEN: usize = 4096;

/// What a request presented.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    /// A bare secret: `Bearer`/`Token` header, or the `p` query parameter.
    Token(String),
    /// `Basic` credentials: a device id and key, or any user name with a token as the password.
    Basic {
        /// The user part (a device id, or ignored when the password is a token).
        user: String,
        /// The password part.
        password: String,
    },
}

impl std::fmt::Debug for Presented {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Token(_) => f.write_str("Token(<redacted>)"),
            Presented::Basic { user, .. } => write!(f, "Basic({user:?}, <redacted>)"),
        }
    }
}

/// Why the presented credentials could not even be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The `Authorization` header uses a scheme other than Bearer, Token or Basic.
    #[error(
        "unsupported Authorization scheme '{0}' (use 'Bearer <token>', 'Token <token>' or 'Basic <base64 id:key>')"
    )]
    UnsupportedScheme(String),
    /// The header value is not valid text, is empty after the scheme, or is too long.
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
}

/// Reads the credentials of a request: the `Authorization` header first, then the `u`/`p` query
/// parameters. `Ok(None)` when the request carries none.
pub fn from_request(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Presented>, CredentialError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| CredentialError::Malformed("not visible ASCII"))?;
        return parse_authorization(text).map(Some);
    }
    Ok(query.and_then(from_query))
}

/// Parses an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Presented, CredentialError> {
    if value.len() > MAX_CREDENTIAL_LEN {
        return Err(CredentialError::Malformed("too long"));
    }
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(CredentialError::Malformed(
            "no credentials after the scheme",
        ));
    }
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        return Ok(Presented::Token(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        return parse_basic(rest);
    }
    Err(CredentialError::UnsupportedScheme(scheme_for_message(
        scheme,
    )))
}

/// A scheme name safe to echo: at most 32 alphanumeric characters.
fn scheme_for_message(scheme: &str) -> String {
    scheme
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect()
}

/// Decodes `base64(user:password)`.
fn parse_basic(encoded: &str) -> Result<Presented, CredentialError> {
    let bytes = base64_decode(encoded).ok_or(CredentialError::Malformed("invalid base64"))?;
    let text = String::from_utf8(bytes).map_err(|_| CredentialError::Malformed("not UTF-8"))?;
    let (user, password) = text.split_once(':').ok_or(CredentialError::Malformed(
        "Basic credentials need 'id:key'",
    ))?;
    if password.is_empty() {
        return Err(CredentialError::Malformed("empty password"));
    }
    Ok(Presented::Basic {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// InfluxDB 1.x query credentials: `p` is the token (or key), `u` the user (device id).
fn from_query(query: &str) -> Option<Presented> {
    let mut user = None;
    let mut password = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "u" => user = Some(percent_decode(v)?),
            "p" => password = Some(percent_decode(v)?),
            _ => {}
        }
    }
    let password = password.filter(|p| !p.is_empty() && p.len() <= MAX_CREDENTIAL_LEN)?;
    Some(match user {
        Some(user) if !user.is_empty() => Presented::Basic { user, password },
        _ => Presented::Token(password),
    })
}

/// Decodes `%XX` escapes and `+` (as a space) in a query component; `None` when invalid.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push((hi << 4) | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Value of one base64 symbol (standard or URL-safe alphabet).
fn base64_value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes base64 (RFC 4648, standard or URL-safe alphabet, padding optional). `None` on any
/// invalid symbol, misplaced padding or impossible length.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let trimmed = s.trim_end_matches('=');
    if s.len() - trimmed.len() > 2 || trimmed.len() % 4 == 1 {
        return None;
    }
    let bytes = trimmed.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= base64_value(*c)? << (18 - 6 * i);
        }
        let produced = chunk.len() * 6 / 8;
        for i in 0..produced {
            out.push(((n >> (16 - 8 * i)) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference encoder for the round-trip property.
    fn encode(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn header_schemes() {
        assert_eq!(
            parse_authorization("Bearer abc").unwrap(),
            Presented::Token("abc".into())
        );
        assert_eq!(
            parse_authorization("token  abc ").unwrap(),
            Presented::Token("abc".into())
        );
        assert_eq!(
            parse_authorization(&format!("Basic {}", encode(b"dev-1:s3:cret"))).unwrap(),
            Presented::Basic {
                user: "dev-1".into(),
                password: "s3:cret".into()
            }
        );
        assert!(matches!(
            parse_authorization("Digest x"),
            Err(CredentialError::UnsupportedScheme(s)) if s == "Digest"
        ));
        assert!(parse_authorization("Bearer").is_err());
        assert!(parse_authorization("Basic !!!").is_err());
        assert!(parse_authorization(&format!("Basic {}", encode(b"nocolon"))).is_err());
        assert!(parse_authorization(&format!("Basic {}", encode(b"dev:"))).is_err());
        assert!(parse_authorization(&format!("Bearer {}", "x".repeat(5000))).is_err());
    }

    #[test]
    fn query_credentials() {
        assert_eq!(
            from_query("db=x&u=app&p=t%2Bk"),
            Some(Presented::Basic {
                user: "app".into(),
                password: "t+k".into()
            })
        );
        assert_eq!(
            from_query("p=tok&db=x"),
            Some(Presented::Token("tok".into()))
        );
        assert_eq!(from_query("u=app&db=x"), None);
        assert_eq!(from_query("p=%zz"), None);
        assert_eq!(from_query(""), None);
    }

    #[test]
    fn header_wins_over_query() {
        let mut h = HeaderMap::new();
        assert_eq!(
            from_request(&h, Some("p=q")).unwrap(),
            Some(Presented::Token("q".into()))
        );
        h.insert(header::AUTHORIZATION, "Bearer h".parse().unwrap());
        assert_eq!(
            from_request(&h, Some("p=q")).unwrap(),
            Some(Presented::Token("h".into()))
        );
        assert_eq!(from_request(&HeaderMap::new(), None).unwrap(), None);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let p = Presented::Basic {
            user: "d".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{p:?}").contains("hunter2"));
        assert!(!format!("{:?}", Presented::Token("hunter2".into())).contains("hunter2"));
    }

    #[test]
    fn base64_edge_cases() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode("TWE").unwrap(), b"Ma");
        assert_eq!(base64_decode("TQ==").unwrap(), b"M");
        assert!(base64_decode("T").is_none());
        assert!(base64_decode("TQ===").is_none());
        assert!(base64_decode("T=Q=").is_none());
    }

    proptest! {
        #[test]
        fn base64_round_trip(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(base64_decode(&encode(&data)), Some(data));
        }

        #[test]
        fn arbitrary_input_never_panics(s in ".{0,80}", q in ".{0,80}") {
            let _ = parse_authorization(&s);
            let _ = base64_decode(&s);
            let _ = from_query(&q);
            let _ = percent_decode(&q);
        }
    }
}
