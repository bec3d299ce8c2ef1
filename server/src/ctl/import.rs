//! `strata devices import`: registers devices from a JSON array or CSV in batches of
//! `--batch` items (one `POST /api/v1/devices/bulk` each, one registry transaction per batch),
//! with a progress bar (rate, ETA) on a terminal. Prints `id,primary_key,secondary_key` for the
//! created devices; repeating an import is harmless (identical devices answer `exists`).

use anyhow::{Context, bail};
use serde_json::Value;

use crate::ctl::client::Body;
use crate::ctl::progress;
use crate::ctl::table::cell;

/// Input format of `strata devices import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A JSON array of devices.
    Json,
    /// CSV with a header row (`id,model,location,tags,...`).
    Csv,
}

/// The import endpoint.
const BULK_PATH: &str = "/api/v1/devices/bulk";

/// Totals and per-item results of every batch, in input order.
#[derive(Debug, Default)]
struct Outcome {
    created: u64,
    exists: u64,
    errors: u64,
    results: Vec<Value>,
}

impl Outcome {
    fn add(&mut self, answer: &Value) {
        let n = |k: &str| answer[k].as_u64().unwrap_or(0);
        self.created += n("created");
        self.exists += n("exists");
        self.errors += n("errors");
        if let Some(items) = answer["results"].as_array() {
            self.results.extend(items.iter().cloned());
        }
    }
}

/// Imports `data` in batches of `batch` items; `quiet` hides the bar.
pub fn import(
    client: &crate::ctl::Client,
    data: &[u8],
    format: Format,
    batch: usize,
    json: bool,
) -> anyhow::Result<()> {
    let batch = batch.max(1);
    let chunks = match format {
        Format::Json => json_chunks(data, batch)?,
        Format::Csv => csv_chunks(data, batch)?,
    };
    let total: u64 = chunks.iter().map(|c| c.1 as u64).sum();
    let bar = progress::items(total, json, "import", "devices");
    let mut outcome = Outcome::default();
    for (bytes, items) in chunks {
        let content_type = match format {
            Format::Csv => "text/csv",
            Format::Json => "application/json",
        };
        let body = Body::Raw {
            content_type: content_type.into(),
            bytes,
        };
        let answer = client.send("POST", BULK_PATH, body)?;
        outcome.add(&answer);
        bar.inc(items as u64);
    }
    bar.finish_and_clear();
    report(&outcome, json)
}

/// Prints the created devices' keys (CSV) and the errors; fails when any item failed.
fn report(o: &Outcome, json: bool) -> anyhow::Result<()> {
    if json {
        crate::ctl::print_json(&serde_json::json!({
            "created": o.created, "exists": o.exists, "errors": o.errors, "results": o.results,
        }));
    } else {
        let created: Vec<&Value> = o
            .results
            .iter()
            .filter(|r| r["status"] == "created")
            .collect();
        if !created.is_empty() {
            println!("id,primary_key,secondary_key");
            for r in created {
                println!(
                    "{},{},{}",
                    cell(&r["id"]),
                    cell(&r["primary_key"]),
                    cell(&r["secondary_key"])
                );
            }
        }
        for r in o.results.iter().filter(|r| r["status"] == "error") {
            eprintln!("error: {}: {}", cell(&r["id"]), cell(&r["error"]));
        }
        eprintln!(
            "created {}, already present {}, failed {}",
            o.created, o.exists, o.errors
        );
    }
    if o.errors > 0 {
        bail!("some devices were not imported");
    }
    Ok(())
}

/// Splits a JSON array into arrays of at most `batch` items: (body, items).
fn json_chunks(data: &[u8], batch: usize) -> anyhow::Result<Vec<(Vec<u8>, usize)>> {
    let all: Vec<Value> = serde_json::from_slice(data)
        .context("the import file must be a JSON array of devices (or CSV: --format csv)")?;
    all.chunks(batch)
        .map(|c| Ok((serde_json::to_vec(c)?, c.len())))
        .collect()
}

/// Splits CSV into bodies of the header plus at most `batch` records each: (body, records).
/// Records end at line breaks outside double quotes, so quoted fields may hold line breaks.
fn csv_chunks(data: &[u8], batch: usize) -> anyhow::Result<Vec<(Vec<u8>, usize)>> {
    let text = std::str::from_utf8(data).context("the CSV file is not UTF-8")?;
    let mut records = csv_records(text).into_iter();
    let Some(header) = records.next() else {
        bail!("the CSV file is empty; it needs a header line (id,model,...)");
    };
    let rows: Vec<&str> = records.filter(|r| !r.trim().is_empty()).collect();
    Ok(rows
        .chunks(batch)
        .map(|c| {
            let mut body =
                String::with_capacity(header.len() + c.iter().map(|r| r.len() + 1).sum::<usize>());
            body.push_str(header.trim_end_matches(['\r', '\n']));
            body.push('\n');
            for r in c {
                body.push_str(r.trim_end_matches(['\r', '\n']));
                body.push('\n');
            }
            (body.into_bytes(), c.len())
        })
        .collect())
}

/// CSV records (each with its line break) split outside quotes.
fn csv_records(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => {
                out.push(&text[start..=i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_batches_repeat_the_header_and_keep_quoted_line_breaks() {
        let csv = "id,model,attributes\nd1,m,\"{\"\"a\"\":\n1}\"\r\nd2,m,\n\nd3,m,\n";
        let chunks = csv_chunks(csv.as_bytes(), 2).unwrap();
        let texts: Vec<(String, usize)> = chunks
            .into_iter()
            .map(|(b, n)| (String::from_utf8(b).unwrap(), n))
            .collect();
        assert_eq!(
            texts,
            vec![
                (
                    "id,model,attributes\nd1,m,\"{\"\"a\"\":\n1}\"\nd2,m,\n".to_string(),
                    2
                ),
                ("id,model,attributes\nd3,m,\n".to_string(), 1),
            ]
        );
        assert!(csv_chunks(b"", 10).is_err());
        assert_eq!(csv_chunks(b"id,model\n", 10).unwrap().len(), 0);
    }

    #[test]
    fn json_batches_split_the_array() {
        let data = br#"[{"id":"a"},{"id":"b"},{"id":"c"}]"#;
        let chunks = json_chunks(data, 2).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0], (br#"[{"id":"a"},{"id":"b"}]"#.to_vec(), 2));
        assert_eq!(chunks[1].1, 1);
        let e = json_chunks(br#"{"id":"a"}"#, 2).unwrap_err();
        assert!(format!("{e:#}").contains("JSON array"), "{e:#}");
    }
}
