//! Prometheus metrics, hand-written text exposition (no metrics crates): HTTP requests by endpoint
//! and status, rows/values/bytes written, write and read latency histograms, and engine gauges.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use strata_storage::{EngineStats, WriteReceipt};

use crate::state::AppState;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// All server-side counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    rows: AtomicU64,
    values: AtomicU64,
    write_bytes: AtomicU64,
    write_latency: Histogram,
    read_latency: Histogram,
}

impl Metrics {
    /// Counts one finished HTTP request.
    pub fn count_request(&self, endpoint: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((endpoint.to_owned(), status)).or_insert(0) += 1;
    }

    /// Records a successful write.
    pub fn record_write(&self, receipt: WriteReceipt, body_bytes: usize, took: Duration) {
        self.rows.fetch_add(receipt.rows as u64, Relaxed);
        self.values.fetch_add(receipt.values as u64, Relaxed);
        self.write_bytes.fetch_add(body_bytes as u64, Relaxed);
        self.write_latency.observe(took);
    }

    /// Records a successful read.
    pub fn record_read(&self, took: Duration) {
        self.read_latency.observe(took);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, engine: &EngineStats, uptime: Duration) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP strata_build_info Build information.\n# TYPE strata_build_info gauge"
        );
        let _ = writeln!(
            out,
            "strata_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        gauge(
            &mut out,
            "strata_uptime_seconds",
            "Seconds since the server started.",
            uptime.as_secs_f64(),
        );
        self.render_requests(&mut out);
        counter(
            &mut out,
            "strata_http_rows_written_total",
            "Rows accepted over HTTP.",
            self.rows.load(Relaxed),
        );
        counter(
            &mut out,
            "strata_http_values_written_total",
            "Field values accepted over HTTP.",
            self.values.load(Relaxed),
        );
        counter(
            &mut out,
            "strata_http_write_bytes_total",
            "Request body bytes of accepted writes (as sent).",
            self.write_bytes.load(Relaxed),
        );
        self.write_latency.render(
            &mut out,
            "strata_write_duration_seconds",
            "Latency of successful writes (decode, parse, durable commit).",
        );
        self.read_latency.render(
            &mut out,
            "strata_read_duration_seconds",
            "Latency of successful range reads.",
        );
        render_engine(&mut out, engine);
        out
    }

    fn render_requests(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP strata_http_requests_total HTTP requests by endpoint and status."
        );
        let _ = writeln!(out, "# TYPE strata_http_requests_total counter");
        let map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((endpoint, status), n) in map.iter() {
            let _ = writeln!(
                out,
                "strata_http_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}",
                escape(endpoint)
            );
        }
    }
}

fn render_engine(out: &mut String, s: &EngineStats) {
    gauge(
        out,
        "strata_series",
        "Series in the catalog.",
        s.series as f64,
    );
    gauge(
        out,
        "strata_memtable_bytes",
        "Approximate bytes held by memtables.",
        s.memtable_bytes as f64,
    );
    gauge(out, "strata_segments", "Segment files.", s.segments as f64);
    gauge(
        out,
        "strata_segment_bytes",
        "Bytes of segment files.",
        s.segment_bytes as f64,
    );
    gauge(
        out,
        "strata_wal_bytes",
        "Bytes of WAL files.",
        s.wal_bytes as f64,
    );
    counter(
        out,
        "strata_engine_rows_written_total",
        "Rows written to the engine since start.",
        s.rows_written,
    );
    counter(
        out,
        "strata_engine_values_written_total",
        "Field values written to the engine since start.",
        s.values_written,
    );
    counter(
        out,
        "strata_flushes_total",
        "Memtable flushes since start.",
        s.flushes,
    );
    counter(
        out,
        "strata_compactions_total",
        "Compactions since start.",
        s.compactions,
    );
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

/// Escapes a label value (backslash, quote, newline).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Route middleware: counts each request under its route pattern and status, and writes a
/// `debug` access-log line.
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = req.method().clone();
    let resp = next.run(req).await;
    let endpoint = endpoint.as_deref().unwrap_or("unmatched");
    let status = resp.status().as_u16();
    st.metrics.count_request(endpoint, status);
    tracing::debug!(%method, endpoint, status, micros = started.elapsed().as_micros() as u64, "request");
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counters_and_buckets() {
        let m = Metrics::default();
        m.count_request("/api/v1/write", 204);
        m.count_request("/api/v1/write", 204);
        m.record_write(
            WriteReceipt { rows: 3, values: 7 },
            100,
            Duration::from_millis(2),
        );
        let text = m.render(&EngineStats::default(), Duration::from_secs(1));
        assert!(
            text.contains(
                "strata_http_requests_total{endpoint=\"/api/v1/write\",status=\"204\"} 2"
            )
        );
        assert!(text.contains("strata_http_rows_written_total 3"));
        assert!(text.contains("strata_write_duration_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("strata_write_duration_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("strata_write_duration_seconds_count 1"));
    }
}
