//! Prometheus metrics, hand-written text exposition (no metrics crates): HTTP requests by endpoint
//! and status, rows/values/bytes written, write and read latency histograms, engine gauges, and
//! the per-protocol ingest families (`strata_ingest_*{protocol="http"|"mqtt"}`: connections,
//! messages, bytes, rejects by reason, flagged rows) with the MQTT endpoint's own counters read
//! from [`MqttServer::stats`] at scrape time (never counted twice), and the broker bridge's
//! counters (`strata_bridge_*`, from [`Bridge::stats`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use strata_ingest::mqtt::{Bridge, BridgeStats, ConnectionLimit, MqttServer, MqttStats};
use strata_storage::{EngineStats, WriteReceipt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

/// Why an ingest request was refused, when its status alone does not say (e.g. `validation`
/// for a 400). A handler inserts it into the response's extensions; [`track`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectClass(pub &'static str);

/// Routes whose refusals count as ingest rejects.
const INGEST_ROUTES: [&str; 4] = [
    "/api/v1/write",
    "/write",
    "/api/v2/write",
    "/api/v1/devices/{id}/telemetry/{stream}",
];

/// Connection counters of one listener.
#[derive(Debug)]
pub struct ConnCounters {
    open: AtomicU64,
    total: AtomicU64,
    bytes: AtomicU64,
}

impl ConnCounters {
    /// Zeroed counters.
    pub const fn new() -> Self {
        ConnCounters {
            open: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }
}

impl Default for ConnCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// Connections of the plain HTTP listener (one per process).
pub static HTTP_CONNECTIONS: ConnCounters = ConnCounters::new();

/// A connection counted as open until dropped; bytes read are added to its counters.
#[derive(Debug)]
pub struct CountedIo<T> {
    inner: T,
    counters: &'static ConnCounters,
}

impl<T> Drop for CountedIo<T> {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.counters.bytes.fetch_add(n as u64, Relaxed);
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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
    http_messages: AtomicU64,
    http_flagged: AtomicU64,
    http_rejects: Mutex<BTreeMap<(&'static str, u16), u64>>,
    mqtt: Mutex<Vec<(&'static str, MqttServer)>>,
    bridge: Mutex<Option<Arc<Bridge>>>,
    limits: Mutex<Vec<(&'static str, ConnectionLimit)>>,
}

/// Counts a new connection of a listener in `counters` (open until the result is dropped);
/// without counters the connection is only wrapped.
pub fn count<T>(io: T, counters: Option<&'static ConnCounters>) -> CountedIo<T> {
    static UNCOUNTED: ConnCounters = ConnCounters::new();
    let counters = counters.unwrap_or(&UNCOUNTED);
    counters.open.fetch_add(1, Relaxed);
    counters.total.fetch_add(1, Relaxed);
    CountedIo {
        inner: io,
        counters,
    }
}

impl Metrics {
    /// Counts one finished HTTP request.
    pub fn count_request(&self, endpoint: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((endpoint.to_owned(), status)).or_insert(0) += 1;
    }

    /// Exposes the counters of an MQTT endpoint under `protocol` (e.g. `mqtt`).
    pub fn attach_mqtt(&self, protocol: &'static str, server: MqttServer) {
        let mut list = self.mqtt.lock().unwrap_or_else(|p| p.into_inner());
        list.push((protocol, server));
    }

    /// Exposes the counters of the broker bridge (`strata_bridge_*`).
    pub fn attach_bridge(&self, bridge: Arc<Bridge>) {
        *self.bridge.lock().unwrap_or_else(|p| p.into_inner()) = Some(bridge);
    }

    /// Exposes the connection limit of `listener` (`http`, `https`, `mqtt`, `flight`).
    pub fn attach_limit(&self, listener: &'static str, limit: ConnectionLimit) {
        let mut list = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        list.push((listener, limit));
    }

    /// `strata_connections_{open,max}{listener}` and
    /// `strata_connections_refused_total{listener,reason="limit"|"evicted"}`.
    fn render_limits(&self, out: &mut String) {
        let list = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP strata_connections_open Open connections by listener (under its cap).\n# TYPE strata_connections_open gauge"
        );
        for (l, limit) in list.iter() {
            let _ = writeln!(
                out,
                "strata_connections_open{{listener=\"{l}\"}} {}",
                limit.open()
            );
        }
        let _ = writeln!(
            out,
            "# HELP strata_connections_max Connection cap by listener.\n# TYPE strata_connections_max gauge"
        );
        for (l, limit) in list.iter() {
            let _ = writeln!(
                out,
                "strata_connections_max{{listener=\"{l}\"}} {}",
                limit.max()
            );
        }
        let _ = writeln!(
            out,
            "# HELP strata_connections_refused_total Connections refused at the cap (reason limit) or closed before their first request or CONNECT to make room (reason evicted).\n# TYPE strata_connections_refused_total counter"
        );
        for (l, limit) in list.iter() {
            let _ = writeln!(
                out,
                "strata_connections_refused_total{{listener=\"{l}\",reason=\"limit\"}} {}",
                limit.refused()
            );
            let _ = writeln!(
                out,
                "strata_connections_refused_total{{listener=\"{l}\",reason=\"evicted\"}} {}",
                limit.evicted()
            );
        }
    }

    /// Counts rows stored with an `_invalid` flag by the HTTP device API.
    pub fn record_flagged(&self, protocol: &str, rows: usize) {
        if protocol == "http" {
            self.http_flagged.fetch_add(rows as u64, Relaxed);
        }
    }

    /// Counts a refused HTTP ingest request.
    pub fn record_reject(&self, class: &'static str, status: u16) {
        let mut map = self.http_rejects.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((class, status)).or_insert(0) += 1;
    }

    /// Records a successful write (one accepted HTTP ingest message).
    pub fn record_write(&self, receipt: WriteReceipt, body_bytes: usize, took: Duration) {
        self.http_messages.fetch_add(1, Relaxed);
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
        self.render_write_amplification(&mut out, engine);
        self.render_ingest(&mut out);
        self.render_limits(&mut out);
        out
    }

    /// Segment bytes written by flush + compaction per payload byte accepted (HTTP bodies as
    /// sent, MQTT payloads): the engine's write amplification since start.
    fn render_write_amplification(&self, out: &mut String, s: &EngineStats) {
        let mqtt: u64 = self
            .mqtt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, m)| m.stats().payload_bytes)
            .sum();
        let accepted = self.write_bytes.load(Relaxed) + mqtt;
        let written = s.flush_bytes_written + s.compaction_bytes_written;
        counter(
            out,
            "strata_flush_bytes_written_total",
            "Segment bytes written by flushes since start.",
            s.flush_bytes_written,
        );
        counter(
            out,
            "strata_compaction_bytes_written_total",
            "Segment bytes written by compactions since start.",
            s.compaction_bytes_written,
        );
        gauge(
            out,
            "strata_write_amplification",
            "Segment bytes written by flush and compaction per payload byte accepted since start (0 before any write).",
            match accepted {
                0 => 0.0,
                n => written as f64 / n as f64,
            },
        );
        gauge(
            out,
            "strata_frozen_memtables",
            "Memtables frozen and waiting for flush.",
            s.frozen_memtables as f64,
        );
        counter(
            out,
            "strata_writes_refused_limit_total",
            "Writes refused because they would exceed a database limit.",
            s.writes_refused_limit,
        );
        counter(
            out,
            "strata_writes_refused_overloaded_total",
            "Writes refused because memtables stayed over their memory bound (flush behind).",
            s.writes_refused_overloaded,
        );
        write_refusals(out, s);
    }

    /// The `strata_ingest_*` families (every protocol) and the `strata_mqtt_*` details.
    fn render_ingest(&self, out: &mut String) {
        let mqtt: Vec<(&'static str, MqttStats)> = self
            .mqtt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(p, s)| (*p, s.stats()))
            .collect();
        let http = &HTTP_CONNECTIONS;
        let family = |out: &mut String,
                      name: &str,
                      kind: &str,
                      help: &str,
                      http_v: u64,
                      f: &dyn Fn(&MqttStats) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{protocol=\"http\"}} {http_v}");
            for (p, st) in &mqtt {
                let _ = writeln!(out, "{name}{{protocol=\"{p}\"}} {}", f(st));
            }
        };
        family(
            out,
            "strata_ingest_connections_open",
            "gauge",
            "Open client connections.",
            http.open.load(Relaxed),
            &|s| s.connections_open,
        );
        family(
            out,
            "strata_ingest_connections_total",
            "counter",
            "Client connections accepted.",
            http.total.load(Relaxed),
            &|s| s.connections_accepted,
        );
        family(
            out,
            "strata_ingest_messages_total",
            "counter",
            "Messages accepted for storage (HTTP: write requests; MQTT: PUBLISH packets).",
            self.http_messages.load(Relaxed),
            &|s| s.messages_received,
        );
        family(
            out,
            "strata_ingest_payload_bytes_total",
            "counter",
            "Payload bytes of accepted messages (HTTP: bodies as sent).",
            self.write_bytes.load(Relaxed),
            &|s| s.payload_bytes,
        );
        family(
            out,
            "strata_ingest_received_bytes_total",
            "counter",
            "Bytes read from client connections.",
            http.bytes.load(Relaxed),
            &|s| s.bytes_received,
        );
        family(
            out,
            "strata_ingest_flagged_rows_total",
            "counter",
            "Rows stored with an _invalid flag (device model policy 'flag').",
            self.http_flagged.load(Relaxed),
            &|s| s.rows_flagged,
        );
        self.render_rejects(out, &mqtt);
        render_mqtt_details(out, &mqtt);
        let bridge = self
            .bridge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(b) = bridge {
            render_bridge(out, &b.stats());
        }
    }

    fn render_rejects(&self, out: &mut String, mqtt: &[(&'static str, MqttStats)]) {
        let name = "strata_ingest_rejects_total";
        let _ = writeln!(
            out,
            "# HELP {name} Refused requests, messages and connections by protocol, reason class \
             and detail (HTTP: status code; MQTT: the endpoint's reason).\n# TYPE {name} counter"
        );
        let map = self.http_rejects.lock().unwrap_or_else(|p| p.into_inner());
        for ((class, status), n) in map.iter() {
            let _ = writeln!(
                out,
                "{name}{{protocol=\"http\",reason=\"{class}\",detail=\"{status}\"}} {n}"
            );
        }
        for (p, st) in mqtt {
            for (reason, n) in &st.rejects {
                let _ = writeln!(
                    out,
                    "{name}{{protocol=\"{p}\",reason=\"{}\",detail=\"{}\"}} {n}",
                    reason.class(),
                    reason.as_str()
                );
            }
        }
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

/// MQTT-only counters: sessions, QoS split, PUBACKs, group commits, throttling, pending bytes.
fn render_mqtt_details(out: &mut String, mqtt: &[(&'static str, MqttStats)]) {
    type Get = fn(&MqttStats) -> u64;
    let families: [(&str, &str, &str, Get); 8] = [
        (
            "strata_mqtt_sessions_open",
            "gauge",
            "Authenticated MQTT sessions open.",
            |s| s.sessions_open,
        ),
        (
            "strata_mqtt_sessions_total",
            "counter",
            "Successful MQTT CONNECTs.",
            |s| s.sessions_started,
        ),
        (
            "strata_mqtt_qos1_messages_total",
            "counter",
            "QoS 1 PUBLISH packets accepted.",
            |s| s.messages_qos1,
        ),
        (
            "strata_mqtt_pubacks_total",
            "counter",
            "PUBACKs sent, each after its message was durable.",
            |s| s.pubacks_sent,
        ),
        (
            "strata_mqtt_commits_total",
            "counter",
            "Engine writes (group commits) of MQTT messages.",
            |s| s.commits,
        ),
        (
            "strata_mqtt_rows_written_total",
            "counter",
            "Rows written to the engine from MQTT.",
            |s| s.rows_written,
        ),
        (
            "strata_mqtt_throttled_total",
            "counter",
            "Messages that put a device over its rate limit.",
            |s| s.messages_throttled,
        ),
        (
            "strata_mqtt_pending_bytes",
            "gauge",
            "Payload bytes received and not yet committed.",
            |s| s.pending_bytes,
        ),
    ];
    if mqtt.is_empty() {
        return;
    }
    for (name, kind, help, get) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (p, st) in mqtt {
            let _ = writeln!(out, "{name}{{protocol=\"{p}\"}} {}", get(st));
        }
    }
}

/// The broker bridge's counters (`--bridge-broker`).
fn render_bridge(out: &mut String, s: &BridgeStats) {
    let families: [(&str, &str, u64); 8] = [
        (
            "connects",
            "Successful connections to the broker.",
            s.connects,
        ),
        (
            "connection_errors",
            "Broker connection failures (each followed by a reconnect).",
            s.connection_errors,
        ),
        (
            "messages_received",
            "Messages received from the broker.",
            s.messages_received,
        ),
        (
            "messages_acked",
            "Messages acknowledged to the broker (stored, or refused for their content).",
            s.messages_acked,
        ),
        (
            "messages_invalid",
            "Messages dropped for their topic or content (acknowledged: redelivery cannot fix them).",
            s.messages_invalid,
        ),
        (
            "rows_written",
            "Rows written to the engine from the broker.",
            s.rows_written,
        ),
        (
            "commits",
            "Engine writes (group commits) of bridged messages.",
            s.commits,
        ),
        (
            "storage_failures",
            "Commits that failed on storage; each ends the broker session, whose unacknowledged messages come again.",
            s.storage_failures,
        ),
    ];
    for (name, help, value) in families {
        counter(out, &format!("strata_bridge_{name}_total"), help, value);
    }
}

/// The reject class of an HTTP ingest refusal with `status`.
fn status_class(status: u16) -> &'static str {
    match status {
        401 | 403 => "auth",
        404 => "not_found",
        413 => "too_large",
        429 => "rate",
        503 => "unavailable",
        s if s >= 500 => "server",
        _ => "malformed",
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
    render_runs_cache(out, &s.runs_cache);
}

/// The runs cache: stored blocks' per-bucket statistics kept for the next aggregate over them.
fn render_runs_cache(out: &mut String, c: &strata_storage::RunsCacheStats) {
    counter(
        out,
        "strata_runs_cache_hits_total",
        "Blocks whose per-bucket runs an aggregate took from the runs cache (not decoded).",
        c.hits,
    );
    counter(
        out,
        "strata_runs_cache_misses_total",
        "Blocks an aggregate decoded and reduced to runs and offered to the runs cache.",
        c.misses,
    );
    gauge(
        out,
        "strata_runs_cache_bytes",
        "Bytes held by the runs cache (bounded by --runs-cache-mb).",
        c.bytes as f64,
    );
    gauge(
        out,
        "strata_runs_cache_entries",
        "Blocks whose runs the runs cache holds.",
        c.entries as f64,
    );
}

/// `strata_write_refusals_total{reason}`: writes the engine refused, by reason (`no_space`: the
/// disk is full, HTTP 507; `io_error`: another I/O error, 503; `overloaded`: flush is behind, 503;
/// `limit`: a database limit, 422).
fn write_refusals(out: &mut String, s: &EngineStats) {
    let name = "strata_write_refusals_total";
    let _ = writeln!(
        out,
        "# HELP {name} Writes the storage engine refused, by reason (no_space, io_error, overloaded, limit).\n# TYPE {name} counter"
    );
    for (reason, v) in [
        ("no_space", s.writes_refused_no_space),
        ("io_error", s.writes_refused_io),
        ("overloaded", s.writes_refused_overloaded),
        ("limit", s.writes_refused_limit),
    ] {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {v}");
    }
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
pub(crate) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Route middleware: counts each request under its route pattern and status, and writes a
/// `debug` access-log line. Generic over the router state (the server's `AppState`), so this
/// module does not depend on the state that holds it.
pub async fn track<S>(State(st): State<S>, req: Request, next: Next) -> Response
where
    S: AsRef<Metrics> + Send + Sync + 'static,
{
    let metrics = st.as_ref();
    let started = std::time::Instant::now();
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = req.method().clone();
    let resp = next.run(req).await;
    let endpoint = endpoint.as_deref().unwrap_or("unmatched");
    let status = resp.status().as_u16();
    metrics.count_request(endpoint, status);
    if status >= 400 && INGEST_ROUTES.contains(&endpoint) {
        let class = resp
            .extensions()
            .get::<RejectClass>()
            .map_or_else(|| status_class(status), |c| c.0);
        metrics.record_reject(class, status);
    }
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
        assert!(text.contains("strata_ingest_messages_total{protocol=\"http\"} 1"));
        assert!(text.contains("strata_ingest_payload_bytes_total{protocol=\"http\"} 100"));
    }

    #[test]
    fn rejects_by_class_and_status() {
        let m = Metrics::default();
        m.record_reject(status_class(401), 401);
        m.record_reject("validation", 400);
        m.record_reject("validation", 400);
        m.record_flagged("http", 3);
        let text = m.render(&EngineStats::default(), Duration::from_secs(1));
        assert!(text.contains(
            "strata_ingest_rejects_total{protocol=\"http\",reason=\"auth\",detail=\"401\"} 1"
        ));
        assert!(text.contains(
            "strata_ingest_rejects_total{protocol=\"http\",reason=\"validation\",detail=\"400\"} 2"
        ));
        assert!(text.contains("strata_ingest_flagged_rows_total{protocol=\"http\"} 3"));
        assert!(!text.contains("strata_mqtt_"), "no MQTT endpoint attached");
        assert_eq!(status_class(413), "too_large");
        assert_eq!(status_class(400), "malformed");
    }
}
