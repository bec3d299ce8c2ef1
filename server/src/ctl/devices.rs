//! `strata devices ...`: list, get, create, update, delete, enable, disable, rotate-keys and
//! import (JSON array or CSV) over the HTTP API.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use crate::ctl::client::{Body, enc, query};
use crate::ctl::import::Format;
use crate::ctl::table::{Table, cell, print_object, time_cell};
use crate::ctl::{Connection, parse_key_value, print_json};

/// `strata devices`: manage registered devices.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: DevicesCommand,
}

/// Filters and paging of `strata devices list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only devices of this model.
    #[arg(long)]
    model: Option<String>,
    /// Only devices with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Only devices whose attribute KEY equals VALUE (repeatable), e.g. --attr floor=3.
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    attrs: Vec<(String, Value)>,
    /// Only devices under this entity (transitively), e.g. a building.
    #[arg(long)]
    under: Option<String>,
    /// Only enabled (true) or disabled (false) devices.
    #[arg(long)]
    enabled: Option<bool>,
    /// Page size.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Start after this device id (the `next_after` of a previous page).
    #[arg(long)]
    after: Option<String>,
    /// Follow every page.
    #[arg(long)]
    all: bool,
}

/// Which keys `rotate-keys` replaces.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Slot {
    /// The primary key.
    Primary,
    /// The secondary key.
    Secondary,
    /// Both keys.
    Both,
}

#[derive(Debug, Subcommand)]
enum DevicesCommand {
    /// List devices (filters combine), one page or --all.
    List(ListArgs),
    /// Show one device (never its keys).
    Get {
        /// Device id.
        id: String,
    },
    /// Register a device and print its two keys (shown only this once).
    Create {
        /// Device id ([A-Za-z0-9._:-], up to 128 characters).
        id: String,
        /// Device model id.
        #[arg(long)]
        model: Option<String>,
        /// Attribute KEY=VALUE (repeatable; VALUE is JSON when it parses, else a string).
        #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        attrs: Vec<(String, Value)>,
        /// Location text.
        #[arg(long)]
        location: Option<String>,
        /// Tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Register the device disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Change a device's model, location, tags or attributes (only what is given).
    Update {
        /// Device id.
        id: String,
        /// New model id ("" clears it).
        #[arg(long)]
        model: Option<String>,
        /// New location ("" clears it).
        #[arg(long)]
        location: Option<String>,
        /// Replace all tags with these (repeatable).
        #[arg(long = "tag")]
        tags: Option<Vec<String>>,
        /// Replace all attributes with these KEY=VALUE pairs (repeatable).
        #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        attrs: Option<Vec<(String, Value)>>,
    },
    /// Delete a device (its identity, metadata and relationships).
    Delete {
        /// Device id.
        id: String,
    },
    /// Enable a device.
    Enable {
        /// Device id.
        id: String,
    },
    /// Disable a device: its next authentication fails.
    Disable {
        /// Device id.
        id: String,
    },
    /// Replace a device's keys and print the new ones (shown only this once).
    RotateKeys {
        /// Device id.
        id: String,
        /// Which keys to replace.
        #[arg(long, value_enum, default_value = "both")]
        slot: Slot,
    },
    /// Register many devices from a JSON array or a CSV file ('-' reads stdin). Prints
    /// `id,primary_key,secondary_key` for the created devices; repeating an import is harmless.
    /// Sent in batches of `--batch` devices with a progress bar (rate, ETA) on a terminal.
    Import {
        /// The file.
        file: PathBuf,
        /// Input format (default: from the file extension, else JSON).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Devices per request (one registry transaction each).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch: u64,
    },
    /// Issue a client certificate for mTLS from the server's development CA (docs/tls.md):
    /// writes DIR/ID.pem, DIR/ID.key (mode 0600) and DIR/ca.pem. Supersedes earlier ones.
    Cert {
        /// Device id.
        id: String,
        /// Directory to write the files to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days (1..=3650).
        #[arg(long, default_value_t = crate::tls::issue::DEFAULT_DAYS)]
        days: u32,
    },
}

/// Runs `strata devices ...`.
pub fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let conn = args.conn;
    let client = conn.client()?;
    let json = conn.json;
    match args.command {
        DevicesCommand::List(l) => list(&client, &l, json),
        DevicesCommand::Get { id } => {
            show(json, &client.get(&format!("/api/v1/devices/{}", enc(&id)))?);
            Ok(())
        }
        DevicesCommand::Create {
            id,
            model,
            attrs,
            location,
            tags,
            disabled,
        } => {
            let body = json!({
                "id": id, "model": model, "attributes": to_map(attrs),
                "location": location, "tags": tags, "enabled": !disabled,
            });
            print_keys(json, &client.post("/api/v1/devices", body)?);
            Ok(())
        }
        DevicesCommand::Update {
            id,
            model,
            location,
            tags,
            attrs,
        } => {
            let mut body = Map::new();
            insert_some(&mut body, "model", model.map(Value::String));
            insert_some(&mut body, "location", location.map(Value::String));
            insert_some(&mut body, "tags", tags.map(|t| json!(t)));
            insert_some(
                &mut body,
                "attributes",
                attrs.map(|a| Value::Object(to_map(a))),
            );
            if body.is_empty() {
                bail!("nothing to update: give --model, --location, --tag or --attr");
            }
            let path = format!("/api/v1/devices/{}", enc(&id));
            show(
                json,
                &client.send("PATCH", &path, Body::Json(Value::Object(body)))?,
            );
            Ok(())
        }
        DevicesCommand::Delete { id } => {
            client.delete(&format!("/api/v1/devices/{}", enc(&id)))?;
            println!("deleted device {id}");
            Ok(())
        }
        DevicesCommand::Enable { id } => action(&client, &id, "enable", json),
        DevicesCommand::Disable { id } => action(&client, &id, "disable", json),
        DevicesCommand::RotateKeys { id, slot } => {
            let slot = match slot {
                Slot::Primary => "primary",
                Slot::Secondary => "secondary",
                Slot::Both => "both",
            };
            let path = format!("/api/v1/devices/{}/rotate-keys", enc(&id));
            print_keys(json, &client.post(&path, json!({ "slot": slot }))?);
            Ok(())
        }
        DevicesCommand::Import {
            file,
            format,
            batch,
        } => {
            let (data, format) = read_input(&file, format)?;
            crate::ctl::import::import(&client, &data, format, batch as usize, json)
        }
        DevicesCommand::Cert { id, out, days } => {
            let path = format!("/api/v1/devices/{}/certificate", enc(&id));
            let issued = client.post(&path, json!({ "days": days }))?;
            crate::tls::issue::write_files(&issued, &id, &out, json)
        }
    }
}

fn insert_some(map: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        map.insert(key.into(), v);
    }
}

fn to_map(pairs: Vec<(String, Value)>) -> Map<String, Value> {
    pairs.into_iter().collect()
}

fn show(json: bool, v: &Value) {
    if json {
        print_json(v);
    } else {
        print_object(v);
    }
}

fn action(client: &crate::ctl::Client, id: &str, what: &str, json: bool) -> anyhow::Result<()> {
    let v = client.post(&format!("/api/v1/devices/{}/{what}", enc(id)), Value::Null)?;
    if json {
        print_json(&v);
    } else {
        println!("device {id}: enabled = {}", cell(&v["enabled"]));
    }
    Ok(())
}

/// Prints newly issued keys (creation or rotation) with a reminder that they are shown once.
fn print_keys(json: bool, v: &Value) {
    if json {
        print_json(v);
        return;
    }
    println!("device         {}", cell(&v["id"]));
    for slot in ["primary_key", "secondary_key"] {
        if let Some(k) = v[slot].as_str() {
            println!("{slot:<14} {k}");
        }
    }
    eprintln!("store these keys now: the server never shows them again");
}

fn list(client: &crate::ctl::Client, l: &ListArgs, json: bool) -> anyhow::Result<()> {
    let mut pairs = Vec::new();
    let mut push = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            pairs.push((k.to_owned(), v));
        }
    };
    push("model", l.model.clone());
    push("tag", l.tag.clone());
    push("under", l.under.clone());
    push("enabled", l.enabled.map(|b| b.to_string()));
    push("limit", Some(l.limit.to_string()));
    for (k, v) in &l.attrs {
        pairs.push((format!("attr.{k}"), v.to_string()));
    }
    let mut after = l.after.clone();
    let mut items = Vec::new();
    loop {
        let mut q = pairs.clone();
        if let Some(a) = &after {
            q.push(("after".into(), a.clone()));
        }
        let page = client.get(&format!("/api/v1/devices{}", query(&q)))?;
        if json && !l.all {
            print_json(&page);
            return Ok(());
        }
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        after = page["next_after"].as_str().map(str::to_owned);
        if !l.all || after.is_none() {
            break;
        }
    }
    if json {
        print_json(&Value::Array(items));
        return Ok(());
    }
    let mut t = Table::new(&["ID", "ENABLED", "MODEL", "LOCATION", "TAGS", "LAST SEEN"]);
    for d in &items {
        t.row(vec![
            cell(&d["id"]),
            cell(&d["enabled"]),
            cell(&d["model"]),
            cell(&d["location"]),
            cell(&d["tags"]),
            time_cell(&d["last_seen_ns"]),
        ]);
    }
    t.print();
    if let Some(a) = after.filter(|_| !l.all) {
        eprintln!("more devices: --after {a} (or --all)");
    }
    Ok(())
}

/// Reads the import file (or stdin) and decides its format.
fn read_input(file: &PathBuf, format: Option<Format>) -> anyhow::Result<(Vec<u8>, Format)> {
    let mut data = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut data)?;
    } else {
        data = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    }
    let by_ext = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let format = format.unwrap_or(if by_ext { Format::Csv } else { Format::Json });
    Ok((data, format))
}
