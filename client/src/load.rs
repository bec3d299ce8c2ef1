//! The HTTP load driver: `C` threads, each with its own keep-alive `ureq` agent, POST batches of
//! line protocol to `/api/v1/write` and record per-request latency; the result is a [`LoadReport`].
//! `https://` URLs work too, trusting the CA of [`tls_config`] (e.g. Strata's development CA).
//!
//! A file is cut into batches and each batch's rows and values are counted once, before the clock
//! starts: the timed part only sends bytes, so the loader leaves the CPU to the server it measures
//! (counting during the run cost as much CPU as the server's own parsing).

use std::fmt;
use std::io::IsTerminal;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::fleet::{FleetConfig, FleetGenerator};
use crate::lineproto::{Counts, split_counted};

/// Where the line protocol comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file's content, cut into batches of whole lines.
    File(Arc<Vec<u8>>),
    /// The fleet simulator, trucks split between the connections.
    Fleet(FleetConfig),
}

/// Load settings.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL, e.g. `http://127.0.0.1:7086`.
    pub url: String,
    /// Target database.
    pub db: String,
    /// Write endpoint path: `/api/v1/write` (Strata) or `/write` (InfluxDB 1.x compatible, also
    /// served by Strata, InfluxDB and VictoriaMetrics — used by the side-by-side comparison).
    pub write_path: String,
    /// Concurrent connections (threads).
    pub connections: usize,
    /// Lines per request.
    pub batch: usize,
    /// Print a progress line on stderr every this often (`None`: quiet).
    pub progress: Option<Duration>,
    /// API token sent as `Authorization: Bearer <token>` (needs the `write` scope).
    pub token: Option<String>,
    /// TLS settings for an `https://` URL ([`tls_config`]); `None` trusts the public web roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A TLS client configuration (rustls, ring) trusting only the CA certificates of the PEM file
/// `cacert`, like `curl --cacert`.
pub fn tls_config(cacert: &std::path::Path) -> std::io::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let pem = std::fs::read(cacert)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| invalid(format!("{}: {e}", cacert.display())))?;
        roots
            .add(cert)
            .map_err(|e| invalid(format!("{}: {e}", cacert.display())))?;
    }
    if roots.is_empty() {
        return Err(invalid(format!("{}: no CA certificate", cacert.display())));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Counters shared by the workers.
#[derive(Debug, Default)]
struct Shared {
    rows: AtomicU64,
    values: AtomicU64,
    bytes: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    next_chunk: AtomicUsize,
}

/// What a load run achieved.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Rows acknowledged by the server.
    pub rows: u64,
    /// Field values acknowledged.
    pub values: u64,
    /// Body bytes acknowledged.
    pub bytes: u64,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (non-2xx or transport error).
    pub errors: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Latency of every successful request, sorted, in microseconds.
    pub latencies_us: Vec<u64>,
}

impl LoadReport {
    /// Latency percentile `q` in [0, 1], in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let idx = ((self.latencies_us.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        self.latencies_us[idx] as f64 / 1000.0
    }

    fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "requests   {} ({} failed) in {:.2} s",
            self.requests,
            self.errors,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "rows       {} ({:.0} rows/s)",
            self.rows,
            self.per_sec(self.rows)
        )?;
        writeln!(
            f,
            "values     {} ({:.0} values/s)",
            self.values,
            self.per_sec(self.values)
        )?;
        writeln!(
            f,
            "bytes      {} ({:.1} MB/s)",
            self.bytes,
            self.per_sec(self.bytes) / 1e6
        )?;
        write!(
            f,
            "latency ms p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            self.percentile_ms(0.5),
            self.percentile_ms(0.9),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0)
        )
    }
}

/// Runs the load to completion.
pub fn run(cfg: &LoadConfig, source: Source) -> LoadReport {
    let shared = Arc::new(Shared::default());
    let chunks = match &source {
        Source::File(data) => Arc::new(split_counted(data, cfg.batch)),
        Source::Fleet(_) => Arc::new(Vec::new()),
    };
    let expected_rows = match &source {
        Source::File(_) => chunks.iter().map(|(_, c)| c.rows).sum(),
        Source::Fleet(fleet) => fleet.ticks() * fleet.trucks as u64,
    };
    let connections = cfg.connections.max(1);
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|part| {
            let (cfg, source, shared, chunks) =
                (cfg.clone(), source.clone(), shared.clone(), chunks.clone());
            std::thread::spawn(move || worker(&cfg, &source, part, connections, &shared, &chunks))
        })
        .collect();
    report_progress(cfg.progress, expected_rows, &shared, started, &workers);
    let mut latencies: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap_or_default())
        .collect();
    latencies.sort_unstable();
    LoadReport {
        rows: shared.rows.load(Relaxed),
        values: shared.values.load(Relaxed),
        bytes: shared.bytes.load(Relaxed),
        requests: shared.requests.load(Relaxed),
        errors: shared.errors.load(Relaxed),
        elapsed: started.elapsed(),
        latencies_us: latencies,
    }
}

/// Shows progress until the workers finish: a bar with rate and ETA on a terminal, else (logs,
/// pipes) a line every `every`. `None` is quiet. `expected_rows` is the bar's length (the
/// simulator's is an upper bound: missing points are never sent).
fn report_progress(
    every: Option<Duration>,
    expected_rows: u64,
    shared: &Shared,
    started: Instant,
    workers: &[std::thread::JoinHandle<Vec<u64>>],
) {
    let bar = (every.is_some() && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(expected_rows);
        let style = indicatif::ProgressStyle::with_template(
            "load [{bar:30}] {human_pos}/{human_len} rows {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar
    });
    let mut last_print = Instant::now();
    while workers.iter().any(|w| !w.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        let rows = shared.rows.load(Relaxed);
        let errors = shared.errors.load(Relaxed);
        if let Some(bar) = &bar {
            bar.set_position(rows);
            if errors > 0 {
                bar.set_message(format!("{errors} failed requests"));
            }
        } else if every.is_some_and(|e| last_print.elapsed() >= e) {
            last_print = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "[{secs:6.1}s] rows {rows} ({:.0}/s), requests {}, errors {errors}",
                rows as f64 / secs,
                shared.requests.load(Relaxed),
            );
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// One connection: sends batches until the source is exhausted; returns its latencies.
fn worker(
    cfg: &LoadConfig,
    source: &Source,
    part: usize,
    parts: usize,
    shared: &Shared,
    chunks: &[(Range<usize>, Counts)],
) -> Vec<u64> {
    let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120));
    if let Some(tls) = &cfg.tls {
        agent = agent.tls_config(tls.clone());
    }
    let agent = agent.build();
    let url = format!(
        "{}{}?db={}",
        cfg.url.trim_end_matches('/'),
        cfg.write_path,
        cfg.db
    );
    let auth = cfg.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut latencies = Vec::new();
    let mut send = |body: &[u8], counts: Counts| {
        if let Some(us) = post(&agent, &url, auth.as_deref(), body, shared) {
            latencies.push(us);
            shared.rows.fetch_add(counts.rows, Relaxed);
            shared.values.fetch_add(counts.values, Relaxed);
            shared.bytes.fetch_add(body.len() as u64, Relaxed);
        }
    };
    match source {
        Source::File(data) => loop {
            let i = shared.next_chunk.fetch_add(1, Relaxed);
            let Some((range, counts)) = chunks.get(i) else {
                break;
            };
            send(&data[range.clone()], *counts);
        },
        Source::Fleet(fleet) => {
            let mut generator = FleetGenerator::partition(fleet, part, parts);
            let mut buf = Vec::with_capacity(cfg.batch * 256);
            loop {
                buf.clear();
                let counts = generator.next_batch(cfg.batch, &mut buf);
                if counts.rows == 0 {
                    break;
                }
                send(&buf, counts);
            }
        }
    }
    latencies
}

/// Sends one batch (with the `Authorization` header value, if any); returns its latency in
/// microseconds on success.
fn post(
    agent: &ureq::Agent,
    url: &str,
    auth: Option<&str>,
    body: &[u8],
    shared: &Shared,
) -> Option<u64> {
    let started = Instant::now();
    let mut req = agent
        .post(url)
        .set("Content-Type", "text/plain; charset=utf-8");
    if let Some(auth) = auth {
        req = req.set("Authorization", auth);
    }
    let res = req.send_bytes(body);
    let us = started.elapsed().as_micros() as u64;
    let n = shared.requests.fetch_add(1, Relaxed);
    match res {
        Ok(_) => Some(us),
        Err(e) => {
            let errors = shared.errors.fetch_add(1, Relaxed);
            if errors < 5 {
                eprintln!("request {n} failed: {}", describe(e));
            }
            None
        }
    }
}

fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, resp) => {
            format!("HTTP {code}: {}", resp.into_string().unwrap_or_default())
        }
        ureq::Error::Transport(t) => t.to_string(),
    }
}
