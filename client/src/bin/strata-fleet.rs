//! `strata-fleet`: simulate a truck fleet as line protocol (`generate`), or drive a Strata server's
//! write endpoint with it (or with a file) and report throughput and latency (`load`); device-plane
//! scale benchmarks: many devices provisioned through one enrollment group (`provision`), one
//! command fanned out to many connected MQTT devices (`commands`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use strata_client::devbench::{FanoutBench, ProvisionBench};
use strata_client::fleet::{FleetConfig, FleetGenerator};
use strata_client::load::{LoadConfig, Source, run};

/// Truck-fleet telemetry simulator and Strata load driver.
#[derive(Debug, Parser)]
#[command(name = "strata-fleet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write the simulated fleet's line protocol to a file.
    Generate {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Output file (`-` for stdout).
        #[arg(long)]
        out: PathBuf,
    },
    /// POST line protocol to a server's /api/v1/write and report rows/s, values/s, MB/s and latency.
    Load {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:7086")]
        url: String,
        /// Target database.
        #[arg(long, default_value = "default")]
        db: String,
        /// Write endpoint path (`/write` targets any InfluxDB-1.x-compatible server).
        #[arg(long, default_value = "/api/v1/write")]
        write_path: String,
        /// Concurrent connections.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Lines per request.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        /// Send this file instead of generating data on the fly.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Do not print progress lines.
        #[arg(long)]
        quiet: bool,
        /// API token with the `write` scope, sent as `Authorization: Bearer <token>`
        /// (e.g. `$(cat strata-data/admin-token)`).
        #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// For an https:// URL: trust only the CA certificates in this PEM file (e.g. the
        /// server's DATA/tls/ca.pem), like `curl --cacert`.
        #[arg(long)]
        cacert: Option<PathBuf>,
    },
    /// Provision N devices through one enrollment group (key derived from the group key) and
    /// report the total time and request latency.
    Provision {
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:8086")]
        url: String,
        /// Enrollment group id.
        #[arg(long)]
        enrollment: String,
        /// The group key returned when the group was created.
        #[arg(long, env = "STRATA_GROUP_KEY", hide_env_values = true)]
        group_key: String,
        /// Devices to provision.
        #[arg(long, default_value_t = 100_000)]
        devices: usize,
        /// Device id prefix (ids are PREFIX0, PREFIX1, ...).
        #[arg(long, default_value = "dev-")]
        prefix: String,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Register N devices, connect each over MQTT (persistent session, subscribed to its
    /// commands), enqueue one command for all and report when each device received it.
    Commands {
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:8086")]
        url: String,
        /// Admin API token (registers the devices).
        #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
        token: String,
        /// MQTT host.
        #[arg(long, default_value = "127.0.0.1")]
        mqtt_host: String,
        /// MQTT port.
        #[arg(long, default_value_t = 1883)]
        mqtt_port: u16,
        /// Devices (each one MQTT connection: mind `ulimit -n` on both sides).
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        /// Device id prefix; must not be registered yet.
        #[arg(long, default_value = "fan-")]
        prefix: String,
        /// Connections opened at a time.
        #[arg(long, default_value_t = 200)]
        connect_batch: usize,
        /// One `POST /api/v1/devices/{id}/commands` per device instead of one bulk
        /// `POST /api/v1/commands`.
        #[arg(long)]
        per_device: bool,
        /// Concurrent HTTP clients with --per-device.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds to wait for every device to receive its command.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

/// Shape of the simulated fleet.
#[derive(Debug, Args)]
struct FleetArgs {
    /// Number of trucks.
    #[arg(long, default_value_t = 100)]
    trucks: usize,
    /// First timestamp: integer nanoseconds since the epoch, or `now` (the data then ends now).
    #[arg(long, default_value = "1704067200000000000")]
    start: String,
    /// Simulated time span (e.g. 1h, 30m, 7d).
    #[arg(long, default_value = "1h", value_parser = strata_client::duration::parse)]
    duration: Duration,
    /// Reporting interval of each truck.
    #[arg(long, default_value = "10s", value_parser = strata_client::duration::parse)]
    interval: Duration,
    /// RNG seed (same seed, same data).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fraction of points never sent.
    #[arg(long, default_value_t = 0.01)]
    missing: f64,
    /// Per-tick probability that a truck goes offline and later delivers its points late.
    #[arg(long, default_value_t = 0.002)]
    offline: f64,
}

impl FleetArgs {
    fn config(&self) -> anyhow::Result<FleetConfig> {
        for (name, p) in [("--missing", self.missing), ("--offline", self.offline)] {
            if !(0.0..=1.0).contains(&p) {
                bail!("{name} must be between 0 and 1");
            }
        }
        if self.interval.is_zero() {
            bail!("--interval must be positive");
        }
        let start_ns = match self.start.as_str() {
            "now" => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
                i64::try_from(now.saturating_sub(self.duration.as_nanos()))?
            }
            s => s
                .parse()
                .context("--start must be integer nanoseconds or 'now'")?,
        };
        Ok(FleetConfig {
            trucks: self.trucks,
            start_ns,
            duration: self.duration,
            interval: self.interval,
            seed: self.seed,
            missing_rate: self.missing,
            offline_rate: self.offline,
            ..FleetConfig::default()
        })
    }
}

fn generate(fleet: &FleetConfig, out: &PathBuf) -> anyhow::Result<()> {
    use std::io::Write;
    let mut sink: Box<dyn Write> = if out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(out)
                .with_context(|| format!("cannot create {}", out.display()))?,
        )
    };
    let mut generator = FleetGenerator::new(fleet);
    let (mut buf, mut rows, mut values) = (Vec::with_capacity(1 << 20), 0, 0);
    loop {
        buf.clear();
        let c = generator.next_batch(4096, &mut buf);
        if c.rows == 0 {
            break;
        }
        (rows, values) = (rows + c.rows, values + c.values);
        sink.write_all(&buf)?;
    }
    sink.flush()?;
    eprintln!("wrote {rows} rows, {values} values");
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run_cli(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-fleet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_cli(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Generate { fleet, out } => generate(&fleet.config()?, &out),
        Cmd::Provision {
            url,
            enrollment,
            group_key,
            devices,
            prefix,
            concurrency,
        } => {
            let report = strata_client::devbench::provision_many(&ProvisionBench {
                url,
                enrollment,
                group_key,
                devices,
                prefix,
                concurrency,
            });
            println!("{report}");
            if report.errors > 0 {
                bail!("{} provisioning requests failed", report.errors);
            }
            Ok(())
        }
        Cmd::Commands {
            url,
            token,
            mqtt_host,
            mqtt_port,
            devices,
            prefix,
            connect_batch,
            per_device,
            concurrency,
            timeout,
        } => {
            let report = strata_client::devbench::command_fanout(FanoutBench {
                url,
                token,
                mqtt_host,
                mqtt_port,
                devices,
                prefix,
                connect_batch,
                bulk: !per_device,
                concurrency,
                timeout: Duration::from_secs(timeout),
            })
            .map_err(anyhow::Error::msg)?;
            println!("{report}");
            if report.received < devices {
                bail!(
                    "{} of {devices} devices received their command",
                    report.received
                );
            }
            Ok(())
        }
        Cmd::Load {
            fleet,
            url,
            db,
            write_path,
            connections,
            batch,
            file,
            quiet,
            token,
            cacert,
        } => {
            let tls = match &cacert {
                Some(path) => Some(
                    strata_client::load::tls_config(path)
                        .with_context(|| format!("cannot use --cacert {}", path.display()))?,
                ),
                None => None,
            };
            let source = match file {
                Some(path) => Source::File(Arc::new(
                    std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                )),
                None => Source::Fleet(fleet.config()?),
            };
            let progress = (!quiet).then_some(Duration::from_secs(2));
            let report = run(
                &LoadConfig {
                    url,
                    db,
                    write_path,
                    connections,
                    batch,
                    progress,
                    token,
                    tls,
                },
                source,
            );
            println!("{report}");
            if report.errors > 0 {
                bail!("{} requests failed", report.errors);
            }
            Ok(())
        }
    }
}
