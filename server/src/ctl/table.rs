//! Plain-text tables for the client commands: left-aligned columns separated by two spaces.

use serde_json::Value;

/// A table being built.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text (one line per row, trailing spaces trimmed).
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(c.chars().count());
                }
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, c) in cells.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                out.push_str(&format!("{c:<w$}  "));
            }
            out.trim_end().to_owned()
        };
        let mut out = line(&self.header);
        for r in &self.rows {
            out.push('\n');
            out.push_str(&line(r));
        }
        out
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        println!("{}", self.render());
    }
}

/// A JSON value as a table cell: strings bare, null as `-`, arrays joined with `,`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(o) if o.is_empty() => "-".into(),
        other => other.to_string(),
    }
}

/// A nanosecond timestamp as RFC 3339 seconds (`-` when absent).
pub fn time_cell(v: &Value) -> String {
    v.as_i64()
        .map(|ns| crate::time::format_rfc3339(ns - ns.rem_euclid(1_000_000_000)))
        .unwrap_or_else(|| "-".into())
}

/// Prints `key  value` lines for every field of a JSON object.
pub fn print_object(v: &Value) {
    let mut t = Table::new(&["FIELD", "VALUE"]);
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            let text = if k.ends_with("_ns") {
                time_cell(val)
            } else {
                cell(val)
            };
            t.row(vec![k.clone(), text]);
        }
    }
    t.print();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_aligned() {
        let mut t = Table::new(&["ID", "MODEL"]);
        t.row(vec!["sensor-1".into(), "m".into()]);
        t.row(vec!["d".into(), "-".into()]);
        assert_eq!(t.render(), "ID        MODEL\nsensor-1  m\nd         -");
    }

    #[test]
    fn cells() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(cell(&json!(["a", "b"])), "a,b");
        assert_eq!(cell(&json!({"a": 1})), "{\"a\":1}");
        assert_eq!(time_cell(&json!(1_500_000_000)), "1970-01-01T00:00:01Z");
        assert_eq!(time_cell(&json!(null)), "-");
    }
}
