//! `strata entities ...`: list, get, create, update, delete entities, show everything under an
//! entity, and link/unlink nodes (`contains`, `member_of` or custom relationships).

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::ctl::client::{Body, enc, query};
use crate::ctl::table::{Table, cell, print_object};
use crate::ctl::{Connection, parse_key_value, print_json};

/// `strata entities`: manage entities (sites, buildings, fleets...) and their relationships.
#[derive(Debug, Args)]
pub struct EntitiesArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: EntitiesCommand,
}

#[derive(Debug, Subcommand)]
enum EntitiesCommand {
    /// List entities.
    List {
        /// Only entities of this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this id.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one entity.
    Get {
        /// Entity id.
        id: String,
    },
    /// Create an entity.
    Create {
        /// Entity id ([A-Za-z0-9._:-], up to 128 characters).
        id: String,
        /// Kind, e.g. site, building, floor, room, fleet, vehicle.
        #[arg(long)]
        kind: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Attribute KEY=VALUE (repeatable).
        #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        attrs: Vec<(String, Value)>,
    },
    /// Change an entity's kind, name or attributes (only what is given).
    Update {
        /// Entity id.
        id: String,
        /// New kind.
        #[arg(long)]
        kind: Option<String>,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// Replace all attributes with these KEY=VALUE pairs (repeatable).
        #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        attrs: Option<Vec<(String, Value)>>,
    },
    /// Delete an entity and its relationships (children stay).
    Delete {
        /// Entity id.
        id: String,
    },
    /// List every device under an entity, through the whole hierarchy.
    Devices {
        /// Entity id.
        id: String,
    },
    /// Link SOURCE to TARGET. Nodes are entity ids, or `device:ID` / `entity:ID`.
    Link {
        /// Source node (the parent for `contains`).
        source: String,
        /// Target node.
        target: String,
        /// Relationship kind: contains, member_of, or a custom name.
        #[arg(long, default_value = "contains")]
        kind: String,
    },
    /// Remove the link SOURCE --kind--> TARGET.
    Unlink {
        /// Source node.
        source: String,
        /// Target node.
        target: String,
        /// Relationship kind.
        #[arg(long, default_value = "contains")]
        kind: String,
    },
}

/// Runs `strata entities ...`.
pub fn run(args: EntitiesArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let json = args.conn.json;
    match args.command {
        EntitiesCommand::List { kind, limit, after } => {
            let mut q = vec![("limit".to_string(), limit.to_string())];
            q.extend(kind.map(|k| ("kind".to_string(), k)));
            q.extend(after.map(|a| ("after".to_string(), a)));
            let page = client.get(&format!("/api/v1/entities{}", query(&q)))?;
            if json {
                print_json(&page);
                return Ok(());
            }
            let mut t = Table::new(&["ID", "KIND", "NAME", "ATTRIBUTES"]);
            for e in page["items"].as_array().into_iter().flatten() {
                t.row(vec![
                    cell(&e["id"]),
                    cell(&e["kind"]),
                    cell(&e["name"]),
                    cell(&e["attributes"]),
                ]);
            }
            t.print();
            if let Some(a) = page["next_after"].as_str() {
                eprintln!("more entities: --after {a}");
            }
            Ok(())
        }
        EntitiesCommand::Get { id } => {
            show(
                json,
                &client.get(&format!("/api/v1/entities/{}", enc(&id)))?,
            );
            Ok(())
        }
        EntitiesCommand::Create {
            id,
            kind,
            name,
            attrs,
        } => {
            let attributes: Map<String, Value> = attrs.into_iter().collect();
            let body = json!({"id": id, "kind": kind, "name": name, "attributes": attributes});
            show(json, &client.post("/api/v1/entities", body)?);
            Ok(())
        }
        EntitiesCommand::Update {
            id,
            kind,
            name,
            attrs,
        } => {
            let mut body = Map::new();
            if let Some(k) = kind {
                body.insert("kind".into(), Value::String(k));
            }
            if let Some(n) = name {
                body.insert("name".into(), Value::String(n));
            }
            if let Some(a) = attrs {
                body.insert("attributes".into(), Value::Object(a.into_iter().collect()));
            }
            if body.is_empty() {
                bail!("nothing to update: give --kind, --name or --attr");
            }
            let path = format!("/api/v1/entities/{}", enc(&id));
            show(
                json,
                &client.send("PATCH", &path, Body::Json(Value::Object(body)))?,
            );
            Ok(())
        }
        EntitiesCommand::Delete { id } => {
            client.delete(&format!("/api/v1/entities/{}", enc(&id)))?;
            println!("deleted entity {id}");
            Ok(())
        }
        EntitiesCommand::Devices { id } => {
            let v = client.get(&format!("/api/v1/entities/{}/devices", enc(&id)))?;
            if json {
                print_json(&v);
            } else {
                for d in v["devices"].as_array().into_iter().flatten() {
                    println!("{}", cell(d));
                }
                eprintln!("{} devices under {id}", cell(&v["count"]));
            }
            Ok(())
        }
        EntitiesCommand::Link {
            source,
            target,
            kind,
        } => {
            let rel = relationship(&source, &target, &kind)?;
            client.post("/api/v1/relationships", rel)?;
            println!("linked {source} --{kind}--> {target}");
            Ok(())
        }
        EntitiesCommand::Unlink {
            source,
            target,
            kind,
        } => {
            let rel = relationship(&source, &target, &kind)?;
            client.send("DELETE", "/api/v1/relationships", Body::Json(rel))?;
            println!("unlinked {source} --{kind}--> {target}");
            Ok(())
        }
    }
}

fn show(json: bool, v: &Value) {
    if json {
        print_json(v);
    } else {
        print_object(v);
    }
}

/// `device:ID` → `{"device": ID}`, `entity:ID` or a bare id → `{"entity": ID}`.
fn node(s: &str) -> anyhow::Result<Value> {
    let (kind, id) = match s.split_once(':') {
        Some(("device", id)) => ("device", id),
        Some(("entity", id)) => ("entity", id),
        _ => ("entity", s),
    };
    if id.is_empty() {
        bail!("empty node id in '{s}'");
    }
    Ok(json!({ kind: id }))
}

fn relationship(source: &str, target: &str, kind: &str) -> anyhow::Result<Value> {
    Ok(json!({"source": node(source)?, "kind": kind, "target": node(target)?}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes() {
        assert_eq!(node("b1").unwrap(), json!({"entity": "b1"}));
        assert_eq!(node("device:d:1").unwrap(), json!({"device": "d:1"}));
        assert_eq!(node("entity:x").unwrap(), json!({"entity": "x"}));
        assert_eq!(node("site:1").unwrap(), json!({"entity": "site:1"}));
        assert!(node("device:").is_err());
    }
}
