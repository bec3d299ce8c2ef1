//! `strata sql`: run SQL against a server's `POST /api/v1/query`, one-shot (`strata sql "SELECT …"`,
//! `-f file.sql`, or statements piped on stdin) or as an interactive shell (statements end with `;`
//! and may span lines; `\q` quits, `\dt` lists tables, `\d TABLE` shows columns, `\timing` toggles
//! the elapsed time). Results print as an aligned table (with row count and elapsed time), as
//! the server's CSV or JSON, or as a terminal line chart (`--format chart`) with `--format`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use strata_query::arrow::array::RecordBatch;
use strata_query::arrow::datatypes::SchemaRef;
use strata_query::arrow::ipc::reader::StreamReader;
use strata_query::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::ctl::Connection;
use crate::ctl::client::describe_error;

/// The query endpoint.
const QUERY_PATH: &str = "/api/v1/query";
/// MIME type of an Arrow IPC stream (what the table format asks for).
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// `\dt`: every table except DataFusion's own `information_schema`.
const LIST_TABLES: &str = "SELECT table_schema, table_name, table_type FROM information_schema.tables \
     WHERE table_schema <> 'information_schema' ORDER BY table_schema, table_name";

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns, then `(N rows, T ms)`.
    Table,
    /// The server's CSV (header line, nulls as empty cells).
    Csv,
    /// The server's JSON (an array of row objects).
    Json,
    /// A line chart in the terminal: the first timestamp column across, each numeric column a
    /// line (one per value of the first text column, e.g. per device); see `ctl/chart.rs`.
    Chart,
}

/// Flags of `strata sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    conn: Connection,

    /// SQL to run (several statements separated by `;` run in order). Without it and without
    /// `-f`, statements are read from stdin when it is piped, else an interactive shell starts.
    #[arg(conflicts_with = "file")]
    query: Option<String>,

    /// Run the statements of this file (`-` for stdin).
    #[arg(short, long)]
    file: Option<PathBuf>,

    /// Output format (`--json` is the same as `--format json`).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,

    /// Start the interactive shell even when stdin is not a terminal (prompts are printed).
    #[arg(short, long, conflicts_with_all = ["query", "file"])]
    interactive: bool,

    /// Do not print the elapsed time (the shell's `\timing` toggles it).
    #[arg(long)]
    no_timing: bool,
}

/// Runs `strata sql`.
pub fn run(args: SqlArgs) -> anyhow::Result<()> {
    let format = if args.conn.json {
        Format::Json
    } else {
        args.format
    };
    let mut session = Session {
        client: SqlClient::new(&args.conn)?,
        format,
        timing: !args.no_timing,
    };
    if let Some(sql) = &args.query {
        return session.run_script(sql);
    }
    match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            session.run_script(&text)
        }
        Some(_) => session.run_script(&read_stdin()?),
        None if args.interactive || std::io::stdin().is_terminal() => session.shell(),
        None => session.run_script(&read_stdin()?),
    }
}

fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .context("cannot read SQL from stdin")?;
    Ok(text)
}

/// An answer of the query endpoint.
struct Answer {
    body: Vec<u8>,
    elapsed: Duration,
}

/// Posts SQL over one keep-alive connection with the API token.
struct SqlClient {
    agent: ureq::Agent,
    url: String,
    auth: String,
}

impl SqlClient {
    fn new(conn: &Connection) -> anyhow::Result<Self> {
        Ok(SqlClient {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(3600))
                .build(),
            url: format!("{}{QUERY_PATH}", conn.url.trim_end_matches('/')),
            auth: format!("Bearer {}", conn.resolve_token()?),
        })
    }

    /// Runs one statement; a non-2xx answer becomes an error carrying the server's message.
    fn query(&self, sql: &str, accept: &str) -> anyhow::Result<Answer> {
        let start = Instant::now();
        let res = self
            .agent
            .post(&self.url)
            .set("Authorization", &self.auth)
            .set("Accept", accept)
            .set("Content-Type", "text/plain; charset=utf-8")
            .send_bytes(sql.as_bytes());
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                bail!(
                    "{}",
                    describe_error(code, &r.into_string().unwrap_or_default())
                )
            }
            Err(ureq::Error::Transport(t)) => bail!("cannot reach the server: {t}"),
        };
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut body)
            .context("reading the query result")?;
        Ok(Answer {
            body,
            elapsed: start.elapsed(),
        })
    }
}

/// Output settings and the connection of one `strata sql` run.
struct Session {
    client: SqlClient,
    format: Format,
    timing: bool,
}

impl Session {
    /// Runs every statement of `text` in order, stopping at the first error.
    fn run_script(&mut self, text: &str) -> anyhow::Result<()> {
        let statements = split_statements(text);
        if statements.is_empty() {
            bail!("no SQL statement given");
        }
        for sql in statements {
            self.execute(&sql)?;
        }
        Ok(())
    }

    /// Runs one statement and prints its result.
    fn execute(&self, sql: &str) -> anyhow::Result<()> {
        let accept = match self.format {
            Format::Table | Format::Chart => ARROW_STREAM,
            Format::Csv => "text/csv",
            Format::Json => "application/json",
        };
        let answer = self.client.query(sql, accept)?;
        let mut out = std::io::stdout().lock();
        match self.format {
            Format::Table => {
                let (schema, batches) = decode_arrow(&answer.body)?;
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                out.write_all(render_table(&schema, &batches)?.as_bytes())?;
                let noun = if rows == 1 { "row" } else { "rows" };
                match self.timing {
                    true => writeln!(out, "({rows} {noun}, {})", fmt_elapsed(answer.elapsed))?,
                    false => writeln!(out, "({rows} {noun})")?,
                }
            }
            Format::Chart => {
                let (schema, batches) = decode_arrow(&answer.body)?;
                let lines = crate::ctl::chart::series(&schema, &batches)?;
                let style = crate::ctl::chart::Style::for_terminal(std::io::stdout().is_terminal());
                let chart = crate::ctl::chart::render(&lines, style, crate::time::format_rfc3339);
                out.write_all(chart.as_bytes())?;
                if self.timing {
                    writeln!(out, "({})", fmt_elapsed(answer.elapsed))?;
                }
            }
            Format::Csv | Format::Json => {
                out.write_all(&answer.body)?;
                if !answer.body.ends_with(b"\n") {
                    out.write_all(b"\n")?;
                }
                if self.timing && std::io::stderr().is_terminal() {
                    eprintln!("Time: {}", fmt_elapsed(answer.elapsed));
                }
            }
        }
        out.flush()?;
        Ok(())
    }

    /// The interactive shell: reads lines until `\q` or end of input.
    fn shell(&mut self) -> anyhow::Result<()> {
        println!("strata sql: statements end with ';'. \\? for help, \\q to quit.");
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        let mut buffer = String::new();
        loop {
            prompt(if buffer.trim().is_empty() {
                "strata> "
            } else {
                "   ...> "
            })?;
            let Some(line) = lines.next() else { break };
            let line = line.context("reading stdin")?;
            if buffer.trim().is_empty() && line.trim_start().starts_with('\\') {
                if !self.meta(line.trim()) {
                    break;
                }
                continue;
            }
            buffer.push_str(&line);
            buffer.push('\n');
            if ends_statement(&buffer) {
                for sql in split_statements(&buffer) {
                    self.report(self.execute(&sql));
                }
                buffer.clear();
            }
        }
        if !buffer.trim().is_empty() {
            for sql in split_statements(&buffer) {
                self.report(self.execute(&sql));
            }
        }
        Ok(())
    }

    /// Prints an error of the shell without leaving it.
    fn report(&self, result: anyhow::Result<()>) {
        if let Err(e) = result {
            eprintln!("ERROR: {e:#}");
        }
    }

    /// Handles a backslash command; false means quit.
    fn meta(&mut self, cmd: &str) -> bool {
        let mut words = cmd.split_whitespace();
        match (words.next().unwrap_or(""), words.next()) {
            ("\\q" | "\\quit", _) => return false,
            ("\\dt", _) => self.report(self.execute(LIST_TABLES)),
            ("\\d", Some(table)) => self.report(self.execute(&describe_sql(table))),
            ("\\d", None) => self.report(self.execute(LIST_TABLES)),
            ("\\timing", _) => {
                self.timing = !self.timing;
                println!("Timing is {}.", if self.timing { "on" } else { "off" });
            }
            ("\\format" | "\\f", Some(f)) => match Format::from_str(f, true) {
                Ok(f) => self.format = f,
                Err(_) => eprintln!("ERROR: unknown format '{f}' (table, csv, json or chart)"),
            },
            ("\\?" | "\\h" | "\\help", _) => println!("{HELP}"),
            (other, _) => eprintln!("ERROR: unknown command '{other}'; \\? lists them"),
        }
        true
    }
}

/// Help text of the shell.
const HELP: &str = "\
  SQL;              run a statement (it may span lines; ';' ends it)
  \\dt               list tables
  \\d TABLE          columns of a table (TABLE or SCHEMA.TABLE)
  \\timing           toggle the elapsed time
  \\format FORMAT    table, csv, json or chart (a line chart of a time-indexed result)
  \\q                quit";

fn prompt(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `\d TABLE`: the columns of a (possibly schema-qualified) table from `information_schema`.
fn describe_sql(table: &str) -> String {
    let (schema, name) = match table.split_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (None, table),
    };
    let quote = |s: &str| s.trim_matches('"').replace('\'', "''");
    let schema_filter = schema
        .map(|s| format!(" AND table_schema = '{}'", quote(s)))
        .unwrap_or_default();
    format!(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
         WHERE table_name = '{}'{schema_filter} ORDER BY table_schema, ordinal_position",
        quote(name)
    )
}

/// `1.234 ms` below a second, `1.234 s` above.
fn fmt_elapsed(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1000.0 {
        format!("{ms:.3} ms")
    } else {
        format!("{:.3} s", ms / 1e3)
    }
}

/// Decodes an Arrow IPC stream into its schema and batches.
fn decode_arrow(bytes: &[u8]) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .context("the server's answer is not an Arrow IPC stream")?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .context("decoding the server's Arrow IPC stream")?;
    Ok((schema, batches))
}

/// Renders batches as an aligned text table: header, separator, rows; numbers right-aligned,
/// nulls as `NULL`.
pub fn render_table(schema: &SchemaRef, batches: &[RecordBatch]) -> anyhow::Result<String> {
    let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let right: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().is_numeric())
        .collect();
    let rows = format_cells(batches, header.len())?;
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_right = vec![false; header.len()];
    push_line(&mut out, &header, &widths, &header_right);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&rule.join("-+-"));
    out.push('\n');
    for row in &rows {
        push_line(&mut out, row, &widths, &right);
    }
    Ok(out)
}

/// Every cell of every batch as text.
fn format_cells(batches: &[RecordBatch], columns: usize) -> anyhow::Result<Vec<Vec<String>>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .context("formatting the result")?;
        for r in 0..batch.num_rows() {
            let mut row = Vec::with_capacity(columns);
            for f in &formatters {
                row.push(f.value(r).try_to_string().context("formatting a value")?);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

fn push_line(out: &mut String, cells: &[String], widths: &[usize], right: &[bool]) {
    let parts: Vec<String> = cells
        .iter()
        .zip(widths)
        .zip(right)
        .map(|((c, &w), &r)| {
            let pad = " ".repeat(w.saturating_sub(c.chars().count()));
            if r {
                format!("{pad}{c}")
            } else {
                format!("{c}{pad}")
            }
        })
        .collect();
    out.push_str(parts.join(" | ").trim_end());
    out.push('\n');
}

/// Whether the buffer holds a complete statement: it ends with `;` outside quotes and comments.
fn ends_statement(buffer: &str) -> bool {
    let mut scanner = Scanner::default();
    let mut last_significant = None;
    let chars: Vec<char> = buffer.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let was_plain = scanner.is_plain();
        scanner.step(c, chars.get(i + 1).copied());
        if was_plain && scanner.is_plain() && !c.is_whitespace() {
            last_significant = Some(c);
        }
    }
    scanner.is_plain() && last_significant == Some(';')
}

/// Splits SQL text into statements at `;` outside quotes and comments; drops empty ones.
pub fn split_statements(text: &str) -> Vec<String> {
    let mut scanner = Scanner::default();
    let mut out = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let was_plain = scanner.is_plain();
        scanner.step(c, chars.get(i + 1).copied());
        if was_plain && scanner.is_plain() && c == ';' {
            push_statement(&mut out, &current);
            current.clear();
        } else {
            current.push(c);
        }
    }
    push_statement(&mut out, &current);
    out
}

fn push_statement(out: &mut Vec<String>, sql: &str) {
    if has_code(sql) {
        out.push(sql.trim().to_owned());
    }
}

/// Whether the text has anything but whitespace and comments.
fn has_code(sql: &str) -> bool {
    let mut scanner = Scanner::default();
    let chars: Vec<char> = sql.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let was_plain = scanner.is_plain();
        scanner.step(c, chars.get(i + 1).copied());
        if (was_plain && scanner.is_plain() && !c.is_whitespace()) || scanner.in_quote() {
            return true;
        }
    }
    false
}

/// Lexical state while scanning SQL: inside quotes or comments, or plain code.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Scanner {
    #[default]
    Plain,
    Single,
    Double,
    LineComment,
    BlockComment,
    /// The second character of a two-character comment delimiter.
    Skip(Inner),
}

/// Where [`Scanner::Skip`] continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Plain,
    LineComment,
    BlockComment,
}

impl Scanner {
    fn is_plain(self) -> bool {
        self == Scanner::Plain
    }

    fn in_quote(self) -> bool {
        matches!(self, Scanner::Single | Scanner::Double)
    }

    /// Advances over `c` (`next` is the following character, for `--`, `/*` and `*/`).
    fn step(&mut self, c: char, next: Option<char>) {
        *self = match (*self, c) {
            (Scanner::Skip(Inner::Plain), _) => Scanner::Plain,
            (Scanner::Skip(Inner::LineComment), _) => Scanner::LineComment,
            (Scanner::Skip(Inner::BlockComment), _) => Scanner::BlockComment,
            (Scanner::Plain, '\'') => Scanner::Single,
            (Scanner::Plain, '"') => Scanner::Double,
            (Scanner::Plain, '-') if next == Some('-') => Scanner::Skip(Inner::LineComment),
            (Scanner::Plain, '/') if next == Some('*') => Scanner::Skip(Inner::BlockComment),
            (Scanner::Single, '\'') => Scanner::Plain,
            (Scanner::Double, '"') => Scanner::Plain,
            (Scanner::LineComment, '\n') => Scanner::Plain,
            (Scanner::BlockComment, '*') if next == Some('/') => Scanner::Skip(Inner::Plain),
            (s, _) => s,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use strata_query::arrow::array::{Float64Array, Int64Array, StringArray};
    use strata_query::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        assert_eq!(
            split_statements("SELECT 1; SELECT ';' AS x ;\n-- a; comment\nSELECT \"a;b\" FROM t"),
            vec![
                "SELECT 1",
                "SELECT ';' AS x",
                "-- a; comment\nSELECT \"a;b\" FROM t"
            ]
        );
        assert_eq!(
            split_statements("/* ; */ SELECT 'it''s'; ;  \n"),
            vec!["/* ; */ SELECT 'it''s'"]
        );
        assert!(split_statements("  ;\n -- only a comment\n").is_empty());
        assert!(split_statements("/* x */").is_empty());
    }

    #[test]
    fn statement_end_detection() {
        assert!(ends_statement("SELECT 1;"));
        assert!(ends_statement("SELECT 1\nFROM t ;  \n"));
        assert!(!ends_statement("SELECT 1"));
        assert!(!ends_statement("SELECT ';"));
        assert!(!ends_statement("SELECT 1 -- done;"));
        assert!(ends_statement("SELECT 1; -- done\n"));
    }

    #[test]
    fn tables_align_and_show_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("mean", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("truck_1"), None])),
                Arc::new(Int64Array::from(vec![Some(12), Some(3)])),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
            ],
        )
        .unwrap();
        let text = render_table(&schema, &[batch]).unwrap();
        assert_eq!(
            text,
            "device  | n  | mean\n\
             --------+----+-----\n\
             truck_1 | 12 |  1.5\n\
             NULL    |  3 | NULL\n"
        );
        let empty = render_table(&schema, &[]).unwrap();
        assert_eq!(empty, "device | n | mean\n-------+---+-----\n");
    }

    #[test]
    fn describe_quotes_names() {
        let sql = describe_sql("plant.o'x");
        assert!(sql.contains("table_name = 'o''x'"), "{sql}");
        assert!(sql.contains("table_schema = 'plant'"), "{sql}");
        assert!(!describe_sql("readings").contains("table_schema ="));
    }

    #[test]
    fn elapsed_formats() {
        assert_eq!(fmt_elapsed(Duration::from_micros(1500)), "1.500 ms");
        assert_eq!(fmt_elapsed(Duration::from_millis(2500)), "2.500 s");
    }
}
