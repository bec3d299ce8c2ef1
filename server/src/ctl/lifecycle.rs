//! `strata lifecycle show|set|unset|run`: the data-lifecycle policies of a running server over
//! `/api/v1/databases/{db}/lifecycle` and `/api/v1/lifecycle/run` (admin scope).

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::ctl::client::{Body, enc, query};
use crate::ctl::table::{Table, cell};
use crate::ctl::{Connection, print_json};

/// `strata lifecycle`: retention, hot/cold tiering and rollup policies.
#[derive(Debug, Args)]
pub struct LifecycleArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: LifecycleCommand,
}

#[derive(Debug, Subcommand)]
enum LifecycleCommand {
    /// Show a database's policy, stream overrides, effective policy per stream and tier status.
    Show {
        /// Database name.
        db: String,
        /// Only this stream.
        #[arg(long)]
        stream: Option<String>,
    },
    /// Set (replace) the policy of a database, or of one stream with --stream.
    Set {
        /// Database name.
        db: String,
        /// Set this stream's override instead of the database's policy.
        #[arg(long)]
        stream: Option<String>,
        /// How long data stays in local segments before moving to the cold store (e.g. 7d);
        /// `none` keeps it hot.
        #[arg(long, default_value = "none")]
        hot: String,
        /// How long data is kept at all (e.g. 400d); `forever` keeps it.
        #[arg(long, default_value = "forever")]
        retention: String,
        /// A rollup EVERY[:KEEP] (e.g. 1m:90d, 1h); repeatable, finest first.
        #[arg(long = "rollup")]
        rollups: Vec<String>,
    },
    /// Remove the policy of a database (or a stream's override with --stream).
    Unset {
        /// Database name.
        db: String,
        /// Remove this stream's override instead.
        #[arg(long)]
        stream: Option<String>,
    },
    /// Run lifecycle maintenance now (retention, cold moves) and print what it did.
    Run,
}

/// Runs `strata lifecycle ...`.
pub fn run(args: LifecycleArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let json = args.conn.json;
    let path = |db: &str, stream: &Option<String>| {
        let q: Vec<(String, String)> = stream
            .iter()
            .map(|s| ("stream".to_string(), s.clone()))
            .collect();
        format!("/api/v1/databases/{}/lifecycle{}", enc(db), query(&q))
    };
    let answer = match args.command {
        LifecycleCommand::Show { db, stream } => client.get(&path(&db, &stream))?,
        LifecycleCommand::Set {
            db,
            stream,
            hot,
            retention,
            rollups,
        } => {
            let body = policy_body(&hot, &retention, &rollups)?;
            client.send("PUT", &path(&db, &stream), Body::Json(body))?
        }
        LifecycleCommand::Unset { db, stream } => client.delete(&path(&db, &stream))?,
        LifecycleCommand::Run => {
            let v = client.post("/api/v1/lifecycle/run", json!({}))?;
            print_json(&v);
            return Ok(());
        }
    };
    if json {
        print_json(&answer);
    } else {
        print_policies(&answer);
    }
    Ok(())
}

/// The PUT body for the flags of `set`.
fn policy_body(hot: &str, retention: &str, rollups: &[String]) -> anyhow::Result<Value> {
    let opt = |v: &str, none: &str| (v != none).then(|| v.to_string());
    let mut list = Vec::new();
    for r in rollups {
        let (every, keep) = match r.split_once(':') {
            Some((e, k)) => (e, Some(k)),
            None => (r.as_str(), None),
        };
        if every.is_empty() || keep.is_some_and(str::is_empty) {
            bail!("--rollup '{r}': expected EVERY[:KEEP], e.g. 1m:90d");
        }
        list.push(json!({"every": every, "keep": keep}));
    }
    Ok(json!({
        "hot": opt(hot, "none"),
        "retention": opt(retention, "forever"),
        "rollups": list,
    }))
}

fn print_policies(v: &Value) {
    let show = |p: &Value| -> (String, String, String) {
        let rollups: Vec<String> = p["rollups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| match r["keep"].as_str() {
                Some(k) => format!("{}:{k}", cell(&r["every"])),
                None => cell(&r["every"]),
            })
            .collect();
        (
            p["hot"].as_str().unwrap_or("-").to_string(),
            p["retention"].as_str().unwrap_or("forever").to_string(),
            rollups.join(","),
        )
    };
    let mut t = Table::new(&["STREAM", "SOURCE", "HOT", "RETENTION", "ROLLUPS"]);
    let (hot, keep, rollups) = show(&v["policy"]);
    t.row(vec![
        "(database)".into(),
        if v["policy"].is_null() {
            "default"
        } else {
            "database"
        }
        .into(),
        hot,
        keep,
        rollups,
    ]);
    for s in v["streams"].as_array().into_iter().flatten() {
        let (hot, keep, rollups) = show(&s["policy"]);
        t.row(vec![
            cell(&s["stream"]),
            cell(&s["source"]),
            hot,
            keep,
            rollups,
        ]);
    }
    t.print();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_the_documented_body() {
        let b = policy_body("7d", "400d", &["1m:90d".into(), "1h".into()]).unwrap();
        assert_eq!(
            b,
            json!({"hot": "7d", "retention": "400d", "rollups": [
                {"every": "1m", "keep": "90d"}, {"every": "1h", "keep": null}]})
        );
        let b = policy_body("none", "forever", &[]).unwrap();
        assert_eq!(b, json!({"hot": null, "retention": null, "rollups": []}));
        assert!(policy_body("none", "forever", &["1m:".into()]).is_err());
    }
}
