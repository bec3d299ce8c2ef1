//! `strata tokens create|list|revoke` and `strata audit`: API tokens and the audit log over the
//! HTTP API (admin scope).

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::ctl::client::{enc, query};
use crate::ctl::table::{Table, cell, time_cell};
use crate::ctl::{Connection, print_json};

/// `strata tokens`: manage API tokens.
#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: TokensCommand,
}

/// A token scope.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScopeArg {
    /// Read data and the registry.
    Read,
    /// Write telemetry (and read).
    Write,
    /// Everything, including the registry and tokens.
    Admin,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create a token and print it (shown only this once).
    Create {
        /// Scope (repeatable): read, write or admin.
        #[arg(long = "scope", value_enum, required = true)]
        scopes: Vec<ScopeArg>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Limit the token to this database or stream name (repeatable).
        #[arg(long = "stream")]
        streams: Option<Vec<String>>,
    },
    /// List tokens (never their secrets).
    List {
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this token id.
        #[arg(long)]
        after: Option<String>,
    },
    /// Revoke a token: it is refused from now on.
    Revoke {
        /// Token id (see `strata tokens list`).
        id: String,
    },
}

/// Runs `strata tokens ...`.
pub fn run(args: TokensArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let json = args.conn.json;
    match args.command {
        TokensCommand::Create {
            scopes,
            name,
            streams,
        } => {
            let scopes: Vec<&str> = scopes
                .iter()
                .map(|s| match s {
                    ScopeArg::Read => "read",
                    ScopeArg::Write => "write",
                    ScopeArg::Admin => "admin",
                })
                .collect();
            let body = json!({"scopes": scopes, "name": name, "streams": streams});
            let v = client.post("/api/v1/tokens", body)?;
            if json {
                print_json(&v);
            } else {
                println!("id     {}", cell(&v["id"]));
                println!("token  {}", cell(&v["token"]));
                eprintln!("store this token now: the server never shows it again");
            }
            Ok(())
        }
        TokensCommand::List { limit, after } => {
            let mut q = vec![("limit".to_string(), limit.to_string())];
            q.extend(after.map(|a| ("after".to_string(), a)));
            let page = client.get(&format!("/api/v1/tokens{}", query(&q)))?;
            if json {
                print_json(&page);
                return Ok(());
            }
            let mut t = Table::new(&["ID", "NAME", "SCOPES", "STREAMS", "CREATED", "REVOKED"]);
            for tok in page["items"].as_array().into_iter().flatten() {
                t.row(vec![
                    cell(&tok["id"]),
                    cell(&tok["name"]),
                    cell(&tok["scopes"]),
                    cell(&tok["streams"]),
                    time_cell(&tok["created_ns"]),
                    time_cell(&tok["revoked_ns"]),
                ]);
            }
            t.print();
            Ok(())
        }
        TokensCommand::Revoke { id } => {
            let v = client.delete(&format!("/api/v1/tokens/{}", enc(&id)))?;
            if json {
                print_json(&v);
            } else {
                println!("revoked token {id}");
            }
            Ok(())
        }
    }
}

/// `strata audit`: the audit log of administrative actions.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    conn: Connection,
    /// Page size.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Start after this sequence number.
    #[arg(long)]
    after: Option<String>,
}

/// Runs `strata audit`.
pub fn run_audit(args: AuditArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let mut q = vec![("limit".to_string(), args.limit.to_string())];
    q.extend(args.after.map(|a| ("after".to_string(), a)));
    let page = client.get(&format!("/api/v1/audit{}", query(&q)))?;
    if args.conn.json {
        print_json(&page);
        return Ok(());
    }
    let mut t = Table::new(&["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OK", "DETAIL"]);
    for r in page["items"].as_array().into_iter().flatten() {
        t.row(vec![
            cell(&r["seq"]),
            time_cell(&r["time_ns"]),
            cell(&r["actor"]),
            cell(&r["action"]),
            cell(&r["target"]),
            cell(&r["ok"]),
            cell(&r["detail"]),
        ]);
    }
    t.print();
    if let Some(a) = page["next_after"].as_str().map(Value::from) {
        eprintln!("more records: --after {}", cell(&a));
    }
    Ok(())
}
