//! Command-line interface (clap derive): the `serve` subcommand, its flags and environment
//! variables, and their conversion into an [`EngineConfig`]; and the client subcommands
//! (`devices`, `entities`, `tokens`, `audit`) that drive a running server over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use strata_storage::{Durability, EngineConfig};

use crate::time::parse_duration;

/// Default HTTP listen address. 7086 keeps clear of a local InfluxDB (8086) used for side-by-side runs.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7086";

/// Strata: a time-series database for IoT telemetry.
///
/// `strata serve` runs the server. The other commands talk to a running server over its HTTP API
/// with an API token (--token, $STRATA_TOKEN, or the admin-token file of --data-dir).
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands of `strata`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: open (and recover) the data directory, then serve the HTTP API until SIGTERM/SIGINT.
    Serve(Box<ServeArgs>),
    /// Manage devices: list, get, create, update, delete, enable, disable, rotate-keys, import.
    Devices(crate::ctl::devices::DevicesArgs),
    /// Manage entities (sites, buildings, fleets...) and their relationships.
    Entities(crate::ctl::entities::EntitiesArgs),
    /// Manage API tokens: create, list, revoke.
    Tokens(crate::ctl::tokens::TokensArgs),
    /// Show the audit log of administrative actions.
    Audit(crate::ctl::tokens::AuditArgs),
    /// Back up a running server to a directory or bucket (incremental, resumable), or check
    /// (`verify`) and list (`list`) the backups of a target.
    Backup(crate::ctl::backup::BackupArgs),
    /// Restore a backup into a new data directory.
    Restore(crate::ctl::backup::RestoreArgs),
    /// Run SQL: one-shot (`strata sql "SELECT ..."`, `-f FILE`, piped stdin) or an interactive shell.
    Sql(crate::ctl::sql::SqlArgs),
    /// Repair a data directory that `serve` refuses to open (server stopped): salvage everything
    /// that verifies, set damaged files aside in DATA/damaged/<time>/, flush, report what was done.
    Repair(crate::repair::RepairArgs),
    /// Data lifecycle: show or set retention / hot-cold / rollup policies, run maintenance now.
    Lifecycle(crate::ctl::lifecycle::LifecycleArgs),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable text.
    Text,
}

/// Where plain MQTT listens when `--mqtt-addr` is not given.
pub const DEFAULT_MQTT_ADDR: &str = "127.0.0.1:1883";

/// The plain-MQTT listener requested on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttListener {
    /// `--no-mqtt`.
    Off,
    /// `--mqtt-addr ADDR`: failing to bind it stops the server.
    Explicit(SocketAddr),
    /// Nothing said: [`DEFAULT_MQTT_ADDR`]; a taken port only logs a warning.
    Default(SocketAddr),
}

/// Flags of `strata serve`. Every flag can also be set through the environment variable shown.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Data directory (WAL, segments, catalog); created if missing.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./strata-data")]
    pub data_dir: PathBuf,

    /// Open a data directory that a normal start refuses (lost MANIFEST, damaged WAL, a WAL
    /// record that cannot be applied) by salvaging what verifies, like `strata repair`, then serve.
    #[arg(long, env = "STRATA_FORCE_RECOVERY")]
    pub force_recovery: bool,

    /// HTTP listen address (HOST:PORT; port 0 picks a free port, logged at startup).
    #[arg(long, env = "STRATA_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,

    /// Plain-TCP MQTT 3.1.1 device endpoint (HOST:PORT; port 0 picks a free port). Default
    /// 127.0.0.1:1883 for local development: if that default port is taken (say, by a local
    /// Mosquitto) the server warns and runs without plain MQTT, while an address given here that
    /// cannot be bound stops it. Devices connect with client id = user name = device id and the
    /// device key as password; see docs/mqtt.md.
    #[arg(long, env = "STRATA_MQTT_ADDR")]
    pub mqtt_addr: Option<SocketAddr>,

    /// Do not serve plain-TCP MQTT at all (not even on the default 127.0.0.1:1883).
    #[arg(long, env = "STRATA_NO_MQTT", conflicts_with = "mqtt_addr")]
    pub no_mqtt: bool,

    /// The MQTT broker (HOST:PORT, plain MQTT 3.1.1) that rules' `mqtt` actions publish to at
    /// QoS 1, e.g. the Mosquitto your devices and bridge use. Without it, rules with `mqtt`
    /// actions are refused. See docs/rules.md.
    #[arg(long, env = "STRATA_RULES_MQTT_BROKER")]
    pub rules_mqtt_broker: Option<String>,

    /// MQTT client id of the rules publisher (default `strata-rules-<pid>`).
    #[arg(long, env = "STRATA_RULES_MQTT_CLIENT_ID")]
    pub rules_mqtt_client_id: Option<String>,

    /// User name for --rules-mqtt-broker (the password comes from STRATA_RULES_MQTT_PASSWORD).
    #[arg(long, env = "STRATA_RULES_MQTT_USERNAME")]
    pub rules_mqtt_username: Option<String>,

    /// TLS: --https-addr, --mqtts-addr, certificates and client-certificate auth (docs/tls.md).
    #[command(flatten)]
    pub tls: Box<crate::tls::TlsArgs>,

    /// Broker bridge: --bridge-broker and its --bridge-* settings (docs/mqtt.md).
    #[command(flatten)]
    pub bridge: Box<crate::bridge::BridgeArgs>,

    /// Arrow Flight SQL endpoint (HOST:PORT, e.g. 127.0.0.1:7087; port 0 picks a free port,
    /// logged as "Flight SQL listening"). Off unless given. SQL queries, prepared statements,
    /// catalog metadata and DoPut bulk ingest with API tokens; see docs/flight-sql.md.
    #[arg(long, env = "STRATA_FLIGHT_ADDR")]
    pub flight_addr: Option<SocketAddr>,

    /// PostgreSQL wire protocol endpoint (HOST:PORT, e.g. 127.0.0.1:5432; port 0 picks a free
    /// port, logged as "PostgreSQL listening"). Off unless given. Read-only SQL with an API token
    /// as the password; TLS with the server's certificate; see docs/postgres.md.
    #[arg(long, env = "STRATA_PG_ADDR")]
    pub pg_addr: Option<SocketAddr>,

    /// When a write is acknowledged: `sync` (after fdatasync, group commit), `interval:<ms>`
    /// (fsync every <ms> milliseconds, e.g. interval:100) or `none` (never fsync).
    #[arg(long, env = "STRATA_DURABILITY", default_value = "sync", value_parser = parse_durability)]
    pub durability: Durability,

    /// Flush the in-memory table to a segment once it holds this many MiB (fractions allowed).
    #[arg(long, env = "STRATA_MEMTABLE_MB", default_value_t = 64.0, value_parser = parse_positive_f64)]
    pub memtable_mb: f64,

    /// Flush the in-memory table once its oldest write is this old (e.g. 10m, 30s, 500ms).
    #[arg(long, env = "STRATA_FLUSH_AGE", default_value = "10m", value_parser = parse_duration)]
    pub flush_age: Duration,

    /// Flush the in-memory table once no write has arrived for this long and it holds at least
    /// 1/64 of --memtable-mb (after a burst or a bulk load the WAL and memory go soon; steady
    /// writers are flushed by size and --flush-age). 0s disables it.
    #[arg(long, env = "STRATA_FLUSH_IDLE", default_value = "30s", value_parser = parse_duration)]
    pub flush_idle: Duration,

    /// Release a backup session (`strata backup`) unused for this long; the client keeps its
    /// session alive while it paces a copy with --max-rate.
    #[arg(long, env = "STRATA_BACKUP_SESSION_IDLE", default_value = "10m", value_parser = parse_duration)]
    pub backup_session_idle: Duration,

    /// Length of a time partition: one segment file per stream and partition (e.g. 1d, 6h).
    #[arg(long, env = "STRATA_PARTITION", default_value = "1d", value_parser = parse_duration)]
    pub partition: Duration,

    /// Start a new WAL file once the current one exceeds this many MiB.
    #[arg(long, env = "STRATA_WAL_FILE_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub wal_file_mb: u64,

    /// How often the background thread checks for flush-by-age and compaction work.
    #[arg(long, env = "STRATA_BACKGROUND_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub background_interval: Duration,

    /// Compact a partition once it holds this many segment files.
    #[arg(long, env = "STRATA_COMPACTION_TRIGGER", default_value_t = 4, value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub compaction_trigger: u64,

    /// Most rows one `GET /api/v1/read` returns; a larger result is refused with 400 (SQL streams any size).
    #[arg(long, env = "STRATA_MAX_READ_ROWS", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_read_rows: u64,

    /// Most streams per database; a write that would create one more is refused with 422.
    #[arg(long, env = "STRATA_MAX_STREAMS_PER_DATABASE", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_streams_per_database: u64,

    /// Most series (device + tag set) over all streams of a database; a write past it is refused with 422.
    #[arg(long, env = "STRATA_MAX_SERIES_PER_DATABASE", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_series_per_database: u64,

    /// Most fields over all streams of a database; a write past it is refused with 422.
    #[arg(long, env = "STRATA_MAX_FIELDS_PER_DATABASE", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_fields_per_database: u64,

    /// Most series (device + tag set) per stream in every database; a write past it is refused with 422.
    #[arg(long, env = "STRATA_MAX_SERIES_PER_STREAM", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_series_per_stream: u64,

    /// Most fields per stream in every database; a write past it is refused with 422.
    #[arg(long, env = "STRATA_MAX_FIELDS_PER_STREAM", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_fields_per_stream: u64,

    /// Most distinct values of one tag key per stream (the device id is bounded by the series limit).
    #[arg(long, env = "STRATA_MAX_VALUES_PER_TAG", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_values_per_tag: u64,

    /// Most bytes of one string field value.
    #[arg(long, env = "STRATA_MAX_STRING_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_string_bytes: u64,

    /// Check every chunk checksum of every segment at startup (damage then shows in /health at once).
    #[arg(long, env = "STRATA_VERIFY_ON_OPEN", default_value_t = true, action = clap::ArgAction::Set)]
    pub verify_on_open: bool,

    /// Tag names that identify the device of a line-protocol point, tried in order (repeatable or comma-separated).
    #[arg(long = "device-tag", env = "STRATA_DEVICE_TAGS", value_delimiter = ',', default_values_t = ["device".to_string(), "name".to_string()])]
    pub device_tags: Vec<String>,

    /// The database device credentials write into (HTTP, MQTT, Flight); a device writing to
    /// another database is refused with 403.
    #[arg(long, env = "STRATA_DEVICE_DATABASE", default_value = "default", value_parser = parse_database)]
    pub device_database: String,

    /// Largest accepted request body in MiB, applied both to the body as sent and after gzip decompression.
    #[arg(long, env = "STRATA_MAX_BODY_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_body_mb: u64,

    /// Most open plain-HTTP connections. At the cap the oldest connection that has not sent a
    /// complete request yet is closed to make room; only when all are busy is a new one refused
    /// (`strata_connections_refused_total`). See docs/operations.md.
    #[arg(long, env = "STRATA_MAX_CONNECTIONS_HTTP", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections_http: u64,

    /// Most open HTTPS connections (same rules as --max-connections-http).
    #[arg(long, env = "STRATA_MAX_CONNECTIONS_HTTPS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections_https: u64,

    /// Most open MQTT connections, plain and TLS together; one that has not completed CONNECT
    /// makes room for a new one at the cap.
    #[arg(long, env = "STRATA_MAX_CONNECTIONS_MQTT", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_connections_mqtt: u64,

    /// Most open (queued, or delivered and awaiting acknowledgement) cloud-to-device commands
    /// per device; a further `POST /api/v1/devices/{id}/commands` answers 429 (docs/devices.md).
    #[arg(long, env = "STRATA_COMMAND_QUEUE_DEPTH", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub command_queue_depth: u64,

    /// Most times a cloud-to-device command is sent to its device (MQTT PUBLISHes the device did
    /// not PUBACK before its connection ended, long-poll hand-outs whose lease passed without an
    /// acknowledgement) before it is given up as `undeliverable` (docs/devices.md).
    #[arg(long, env = "STRATA_COMMAND_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub command_max_attempts: u32,

    /// Largest twin section (desired or reported properties as compact JSON, in bytes); a patch
    /// that would make a section larger answers 413 (docs/devices.md).
    #[arg(long, env = "STRATA_TWIN_MAX_BYTES", default_value_t = 32_768, value_parser = clap::value_parser!(u64).range(64..=16_777_216))]
    pub twin_max_bytes: u64,

    /// Deepest nesting of a twin patch (`{"a": 1}` is 1); a deeper patch answers 400.
    #[arg(long, env = "STRATA_TWIN_MAX_DEPTH", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub twin_max_depth: u64,

    /// Most open Flight SQL connections; one that has made no call with valid credentials makes room at the cap.
    #[arg(long, env = "STRATA_MAX_CONNECTIONS_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections_flight: u64,

    /// Most open PostgreSQL connections; one that has not signed in yet makes room at the cap.
    #[arg(long, env = "STRATA_MAX_CONNECTIONS_PG", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections_pg: u64,

    /// HTTP(S): longest wait for a complete request header, counted from the moment the server
    /// is ready for a request (a new connection, or the previous response sent, so it is also
    /// the keep-alive idle limit). The connection is closed after it.
    #[arg(long, env = "STRATA_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// HTTP(S): longest pause before or between two chunks of a request body; the request then
    /// fails and the connection is closed.
    #[arg(long, env = "STRATA_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// How often lifecycle maintenance runs in the background (retention drops, cold moves);
    /// `POST /api/v1/lifecycle/run` runs it at once.
    #[arg(long, env = "STRATA_LIFECYCLE_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub lifecycle_interval: Duration,

    /// Cold tier: object store that data older than a policy's `hot` moves to, as Parquet
    /// (`file:///abs/dir`, `s3://bucket/prefix` with AWS_* variables, `az://container/prefix`
    /// with AZURE_STORAGE_* variables). Without it everything stays hot. See docs/lifecycle.md.
    #[arg(long, env = "STRATA_COLD_STORE")]
    pub cold_store: Option<String>,

    /// MiB of memory for cold objects fetched by queries and the row groups decoded from them
    /// (least recently used out first; 0 disables the cache).
    #[arg(long, env = "STRATA_COLD_CACHE_MB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    pub cold_cache_mb: u64,

    /// MiB of memory for the runs cache: the per-bucket statistics (count, sum, min, max, first,
    /// last) that aggregates over `date_bin`/`time_bucket` reduced stored blocks to, kept so the
    /// next query over the same blocks and buckets does not decode them again (least recently
    /// used out first; 0 disables it). See docs/sql.md.
    #[arg(long, env = "STRATA_RUNS_CACHE_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    pub runs_cache_mb: u64,

    /// Longest a SQL query may run before it fails (`POST /api/v1/query`).
    #[arg(long, env = "STRATA_QUERY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub query_timeout: Duration,

    /// Memory in MiB that running SQL queries may use together (sorts, aggregates, joins, results).
    #[arg(long, env = "STRATA_QUERY_MEMORY_MB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    pub query_memory_mb: u64,

    /// On SIGTERM/SIGINT, wait at most this long for in-flight requests before flushing and exiting.
    #[arg(long, env = "STRATA_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log format.
    #[arg(long, env = "STRATA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter (tracing env-filter syntax, e.g. `info` or `info,strata_server=debug`).
    #[arg(long, env = "STRATA_LOG", default_value = "info")]
    pub log_level: String,

    /// Read the admin token from this file instead of the STRATA_ADMIN_TOKEN environment variable
    /// (either one replaces the token bootstrapped into DATA/admin-token on first start).
    #[arg(long, env = "STRATA_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Do not print a newly bootstrapped admin token to stderr (it is still written to
    /// DATA/admin-token with mode 0600).
    #[arg(long, env = "STRATA_NO_PRINT_ADMIN_TOKEN")]
    pub no_print_admin_token: bool,
}

impl ServeArgs {
    /// The plain-MQTT listener this invocation asks for: off, the given address, or the
    /// development default.
    pub fn mqtt_listener(&self) -> MqttListener {
        match (self.mqtt_addr, self.no_mqtt) {
            (_, true) => MqttListener::Off,
            (Some(addr), false) => MqttListener::Explicit(addr),
            (None, false) => {
                MqttListener::Default(DEFAULT_MQTT_ADDR.parse().expect("valid default"))
            }
        }
    }

    /// The broker of rules' `mqtt` actions, if one was given.
    pub fn rules_broker(&self) -> Option<strata_rules::mqtt::Broker> {
        let addr = self.rules_mqtt_broker.clone()?;
        Some(strata_rules::mqtt::Broker {
            addr,
            client_id: self
                .rules_mqtt_client_id
                .clone()
                .unwrap_or_else(|| format!("strata-rules-{}", std::process::id())),
            username: self.rules_mqtt_username.clone(),
            password: std::env::var("STRATA_RULES_MQTT_PASSWORD").ok(),
        })
    }

    /// The SQL engine's limits these flags describe.
    pub fn query_config(&self) -> strata_query::QueryConfig {
        strata_query::QueryConfig {
            timeout: self.query_timeout,
            memory_limit: mib_to_bytes(self.query_memory_mb as f64),
            ..strata_query::QueryConfig::default()
        }
    }

    /// The storage-engine configuration these flags describe.
    pub fn engine_config(&self) -> EngineConfig {
        let mut cfg = EngineConfig::new(self.data_dir.clone());
        cfg.durability = self.durability;
        cfg.memtable_bytes = mib_to_bytes(self.memtable_mb);
        cfg.flush_age = self.flush_age;
        cfg.flush_idle = self.flush_idle;
        cfg.partition_ns = i64::try_from(self.partition.as_nanos())
            .unwrap_or(i64::MAX)
            .max(1);
        cfg.wal_file_bytes = self.wal_file_mb.saturating_mul(1 << 20);
        cfg.background_interval = self.background_interval;
        cfg.compaction_trigger = usize::try_from(self.compaction_trigger).unwrap_or(usize::MAX);
        cfg.verify_on_open = self.verify_on_open;
        cfg.force_recovery = self.force_recovery;
        cfg.lifecycle_interval = self.lifecycle_interval;
        cfg.cold_store = self.cold_store.clone();
        cfg.cold_cache_bytes =
            usize::try_from(self.cold_cache_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        cfg.runs_cache_bytes =
            usize::try_from(self.runs_cache_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        cfg.limits = strata_storage::Limits {
            max_streams_per_database: size(self.max_streams_per_database),
            max_series_per_database: size(self.max_series_per_database),
            max_fields_per_database: size(self.max_fields_per_database),
            max_series_per_stream: size(self.max_series_per_stream),
            max_fields_per_stream: size(self.max_fields_per_stream),
            max_values_per_tag: size(self.max_values_per_tag),
            max_string_bytes: size(self.max_string_bytes),
        };
        cfg
    }

    /// The HTTP(S) timeouts these flags describe.
    pub fn http_timeouts(&self) -> crate::listen::HttpTimeouts {
        crate::listen::HttpTimeouts {
            header: self.header_timeout,
            body: self.body_timeout,
        }
    }

    /// The body-size limit in bytes.
    pub fn max_body_bytes(&self) -> usize {
        usize::try_from(self.max_body_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// Converts MiB (possibly fractional) to bytes, at least 1.
fn mib_to_bytes(mib: f64) -> usize {
    let bytes = (mib * 1_048_576.0).round();
    if bytes >= usize::MAX as f64 {
        usize::MAX
    } else {
        (bytes as usize).max(1)
    }
}

/// Parses a positive, finite float.
fn parse_positive_f64(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number")),
    }
}

/// Parses `sync`, `none`, `interval:<ms>` or `interval:<duration>`.
pub fn parse_durability(s: &str) -> Result<Durability, String> {
    let s = s.trim();
    match s {
        "sync" => return Ok(Durability::Sync),
        "none" => return Ok(Durability::None),
        _ => {}
    }
    let Some(rest) = s.strip_prefix("interval:") else {
        return Err(format!(
            "unknown durability '{s}' (expected sync, interval:<ms> or none)"
        ));
    };
    let interval = match rest.parse::<u64>() {
        Ok(ms) => Duration::from_millis(ms),
        Err(_) => parse_duration(rest)?,
    };
    if interval.is_zero() {
        return Err("the fsync interval must be greater than zero".into());
    }
    Ok(Durability::Interval(interval))
}

/// The flag spelling of a durability mode (`sync`, `interval:<ms>`, `none`), for logs.
pub fn durability_name(d: Durability) -> String {
    match d {
        Durability::Sync => "sync".into(),
        Durability::Interval(i) => format!("interval:{}", i.as_millis()),
        Durability::None => "none".into(),
    }
}

/// Checks a database name (`[A-Za-z0-9_-]{1,64}`).
pub fn parse_database(s: &str) -> Result<String, String> {
    strata_ingest::text::check_database(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("x5s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn durability_parses() {
        assert_eq!(parse_durability("sync"), Ok(Durability::Sync));
        assert_eq!(parse_durability("none"), Ok(Durability::None));
        assert_eq!(
            parse_durability("interval:100"),
            Ok(Durability::Interval(Duration::from_millis(100)))
        );
        assert_eq!(
            parse_durability("interval:2s"),
            Ok(Durability::Interval(Duration::from_secs(2)))
        );
        assert!(parse_durability("interval:0").is_err());
        assert!(parse_durability("fsync").is_err());
        for name in ["sync", "interval:250", "none"] {
            assert_eq!(durability_name(parse_durability(name).unwrap()), name);
        }
    }

    #[test]
    fn defaults_map_to_engine_config() {
        let cli = Cli::try_parse_from([
            "strata",
            "serve",
            "--memtable-mb",
            "0.5",
            "--device-tag",
            "id,vin",
            "--verify-on-open",
            "false",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve");
        };
        let cfg = args.engine_config();
        assert_eq!(cfg.memtable_bytes, 512 * 1024);
        assert_eq!(cfg.durability, Durability::Sync);
        assert!(!cfg.verify_on_open);
        assert_eq!(cfg.compaction_trigger, 4);
        assert_eq!(args.device_tags, vec!["id".to_string(), "vin".to_string()]);
        assert_eq!(args.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(args.max_body_bytes(), 64 << 20);
        assert!(!args.no_print_admin_token);
        assert!(args.admin_token_file.is_none());
    }

    #[test]
    fn client_commands_parse() {
        let cli = Cli::try_parse_from([
            "strata",
            "devices",
            "list",
            "--attr",
            "floor=3",
            "--json",
            "--url",
            "http://h:1",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Devices(_)));
        let cli = Cli::try_parse_from([
            "strata", "tokens", "create", "--scope", "read", "--token", "t",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Tokens(_)));
        assert!(Cli::try_parse_from(["strata", "tokens", "create"]).is_err());
        assert!(
            Cli::try_parse_from(["strata", "devices", "rotate-keys", "d", "--slot", "x"]).is_err()
        );
        assert!(Cli::try_parse_from(["strata", "entities", "link", "a", "b"]).is_ok());
        assert!(Cli::try_parse_from(["strata", "audit", "--limit", "5"]).is_ok());
    }
}
