//! Client commands of the `strata` binary (`strata devices|entities|tokens|audit ...`): they call
//! the server's HTTP API with an API token and print a table (or the server's JSON with `--json`).
//! The token comes from `--token`, `STRATA_TOKEN`, or the `admin-token` file of `--data-dir`.

pub mod backup;
pub mod chart;
pub mod client;
pub mod devices;
pub mod entities;
pub mod import;
pub mod lifecycle;
pub mod progress;
pub mod sql;
pub mod table;
pub mod tokens;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

pub use client::Client;

/// Default server URL of the client commands.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7086";

/// How the client commands reach the server (flags accepted after any subcommand).
#[derive(Clone, Args)]
pub struct Connection {
    /// Server base URL.
    #[arg(long, env = "STRATA_URL", default_value = DEFAULT_URL, global = true)]
    pub url: String,

    /// API token (changes need the `admin` scope). Default: $STRATA_TOKEN, else the
    /// `admin-token` file in --data-dir.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,

    /// Data directory whose `admin-token` file is used when no token is given.
    #[arg(
        long,
        env = "STRATA_DATA_DIR",
        default_value = "./strata-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Print the server's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

impl std::fmt::Debug for Connection {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("data_dir", &self.data_dir)
            .field("json", &self.json)
            .finish()
    }
}

impl Connection {
    /// The token to send: `--token`/`STRATA_TOKEN`, else `DATA/admin-token`.
    pub fn resolve_token(&self) -> anyhow::Result<String> {
        if let Some(t) = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            return Ok(t.to_owned());
        }
        let path = self.data_dir.join(crate::bootstrap::ADMIN_TOKEN_FILE);
        match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
            Ok(_) => bail!(
                "{} is empty; pass --token or set STRATA_TOKEN",
                path.display()
            ),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "no API token: pass --token, set STRATA_TOKEN, or point --data-dir at the \
                     server's data directory (cannot read {})",
                    path.display()
                )
            }),
        }
    }

    /// A client for this connection.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, &self.resolve_token()?))
    }
}

/// Parses `key=value` (the value as JSON when it is a number, boolean, null, array, object or
/// quoted string; otherwise as a plain string).
pub fn parse_key_value(s: &str) -> Result<(String, serde_json::Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("'{s}' has an empty key"));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
    Ok((k.to_owned(), value))
}

/// Prints a JSON value, pretty.
pub fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_value("floor=3").unwrap(),
            ("floor".into(), json!(3))
        );
        assert_eq!(
            parse_key_value("c=red").unwrap(),
            ("c".into(), json!("red"))
        );
        assert_eq!(
            parse_key_value("c=\"3\"").unwrap(),
            ("c".into(), json!("3"))
        );
        assert_eq!(
            parse_key_value("x=a=b").unwrap(),
            ("x".into(), json!("a=b"))
        );
        assert!(parse_key_value("nokey").is_err());
        assert!(parse_key_value("=v").is_err());
    }

    #[test]
    fn token_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection {
            url: DEFAULT_URL.into(),
            token: None,
            data_dir: dir.path().to_owned(),
            json: false,
        };
        let e = c.resolve_token().unwrap_err();
        assert!(format!("{e:#}").contains("--token"), "{e:#}");
        std::fs::write(dir.path().join("admin-token"), "secret-from-file\n").unwrap();
        assert_eq!(c.resolve_token().unwrap(), "secret-from-file");
        c.token = Some("flag".into());
        assert_eq!(c.resolve_token().unwrap(), "flag");
        assert!(!format!("{c:?}").contains("flag"));
    }
}
