//! The serve loop: open (recover) the engine, open the registry (and bootstrap the admin token),
//! log the recovery report, serve HTTP until SIGTERM or SIGINT, drain in-flight requests (bounded
//! by the shutdown timeout), then flush the registry and flush and stop the engine.

use std::sync::Arc;

use anyhow::Context;
use strata_storage::{Engine, RecoveryReport};
use tokio::net::TcpListener;

pub use crate::listen::{HttpServer, HttpTimeouts};

use crate::bootstrap::{Announce, admin_source, open_registry};
use strata_ingest::mqtt::{ConnectionLimit, MqttConfig, MqttServer};
use strata_query::QueryEngine;

use crate::cli::{MqttListener, ServeArgs, durability_name};
use crate::mqtt::{RegistryAuthenticator, watch_revocations};
use crate::plane::RegistryChannel;
use crate::routes::router;
use crate::state::AppState;
use crate::tls::issue::CertIssuer;
use crate::tls::{ClientVerifier, HANDSHAKE_TIMEOUT, MqttsHandshake, Tls};
use axum::Extension;
use std::net::SocketAddr;

/// Builds a multi-threaded Tokio runtime and runs [`run`] on it.
pub fn run_blocking(args: ServeArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(run(args))
}

/// Runs the server until a shutdown signal, then shuts the engine down cleanly.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.engine_config();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), data_dir = %args.data_dir.display(),
        durability = %durability_name(config.durability), memtable_bytes = config.memtable_bytes, "starting strata");
    // Listen for SIGTERM/SIGINT before anything can answer: a signal that arrives once the server
    // is reachable must start a graceful shutdown, not kill the process.
    let mut signals = ShutdownSignals::install();
    // Bind first so a taken port fails fast, before a possibly long WAL replay.
    let listener = std::net::TcpListener::bind(args.http_addr)
        .with_context(|| format!("cannot listen on {}", args.http_addr))?;
    let tls = setup_tls(&args).await?;
    let engine = tokio::task::spawn_blocking(move || Engine::open(config))
        .await
        .context("engine open task failed")?
        .with_context(|| format!("cannot open the data directory {}", args.data_dir.display()))?;
    let engine = Arc::new(engine);
    let addr = listener.local_addr().context("no local address")?;
    let source = admin_source(args.admin_token_file.as_deref())?;
    let announce = if args.no_print_admin_token {
        Announce::Quiet
    } else {
        Announce::Print(format!("http://{addr}"))
    };
    let data_dir = args.data_dir.clone();
    let registry =
        tokio::task::spawn_blocking(move || open_registry(&data_dir, &source, &announce))
            .await
            .context("registry open task failed")??;
    let registry = Arc::new(registry);
    let verifier = tls.as_ref().and_then(|t| t.verifier.clone());
    if let Some(v) = &verifier {
        let n = v
            .enrolled()
            .load(&registry)
            .context("cannot load the enrollment CA certificates")?;
        tracing::info!(
            groups = n,
            "enrollment CA certificates trusted for device certificates"
        );
    }
    let query = QueryEngine::with_config(engine.clone(), args.query_config())
        .context("cannot start the SQL engine")?;
    crate::sql_tables::register(&query, &registry);
    crate::lifecycle_sql::register(&query, &engine);
    let query = Arc::new(query);
    let rules = open_rules(&args, &engine, &query).await?;
    let state = AppState::new(
        engine.clone(),
        registry.clone(),
        query,
        (
            args.max_body_bytes(),
            usize::try_from(args.max_read_rows).unwrap_or(usize::MAX),
        ),
        args.device_tags.clone(),
        args.device_database.clone(),
    );
    log_recovery(&state.recovery);
    let mqtts = match (args.tls.mqtts_addr, &tls) {
        (Some(a), Some(t)) => Some((a, t.mqtts.clone(), t.verifier.clone())),
        _ => None,
    };
    let mqtt_config = MqttConfig {
        database: state.pipeline.admission().device_database().to_owned(),
        schemas: Some(state.schemas.clone()),
        max_connections: usize::try_from(args.max_connections_mqtt).unwrap_or(usize::MAX),
        device_tags: args.device_tags.clone(),
        channel: Some(Arc::new(RegistryChannel::new(state.plane.clone()))),
        ..MqttConfig::default()
    };
    state.backups.set_idle(args.backup_session_idle);
    release_idle_backups(state.clone());
    state
        .plane
        .set_queue_depth(usize::try_from(args.command_queue_depth).unwrap_or(usize::MAX));
    state.plane.set_max_attempts(args.command_max_attempts);
    state.plane.set_twin_limits(strata_registry::TwinLimits {
        max_bytes: usize::try_from(args.twin_max_bytes).unwrap_or(usize::MAX),
        max_depth: usize::try_from(args.twin_max_depth).unwrap_or(usize::MAX),
    });
    state
        .plane
        .start_sweeper()
        .context("cannot start the command sweeper")?;
    let mqtt = start_mqtt(
        args.mqtt_listener(),
        mqtts,
        &engine,
        &registry,
        &state,
        mqtt_config,
    )
    .await?;
    let bridge = crate::bridge::start(&args.bridge, &args.device_tags, &engine, &state)?;
    let limit = |listener: &'static str, max: u64| {
        let limit = ConnectionLimit::new(usize::try_from(max).unwrap_or(usize::MAX));
        state.metrics.attach_limit(listener, limit.clone());
        limit
    };
    let issuer = CertIssuer(tls.as_ref().and_then(|t| t.dev_ca.clone()));
    let https = match (args.tls.https_addr, &tls) {
        (Some(a), Some(t)) => {
            let app = with_verifier(router(state.clone()), &verifier)
                .layer(Extension(issuer.clone()))
                .layer(Extension(rules.clone()));
            let listener = std::net::TcpListener::bind(a)
                .with_context(|| format!("cannot listen for HTTPS on {a}"))?;
            let https = HttpServer::start_tls(
                listener,
                limit("https", args.max_connections_https),
                app,
                args.http_timeouts(),
                t.https.clone(),
                HANDSHAKE_TIMEOUT,
            )
            .with_context(|| format!("cannot serve HTTPS on {a}"))?;
            tracing::info!(addr = %https.local_addr(), "HTTPS listening");
            Some(https)
        }
        _ => None,
    };
    let flight = match args.flight_addr {
        Some(flight_addr) => Some(
            crate::flight::start(
                flight_addr,
                state.clone(),
                limit("flight", args.max_connections_flight),
            )
            .await?,
        ),
        None => None,
    };
    let pg = match args.pg_addr {
        Some(pg_addr) => Some(
            crate::pg::start(
                pg_addr,
                state.clone(),
                tls.as_ref().map(|t| t.pg.clone()),
                limit("pg", args.max_connections_pg),
            )
            .await?,
        ),
        None => None,
    };
    if let Some(broker) = args.rules_broker() {
        tracing::info!(broker = %broker.addr, "rules publish mqtt actions to this broker");
        rules.set_mqtt_broker(broker);
    }
    rules.set_command_sink(Arc::new(crate::plane::RuleCommands::new(
        state.plane.clone(),
        registry.clone(),
    )));
    let http_limit = limit("http", args.max_connections_http);
    let app = with_verifier(router(state), &verifier)
        .layer(Extension(issuer))
        .layer(Extension(rules.clone()));
    rules.start();
    let http = HttpServer::start_plain(listener, http_limit, app, args.http_timeouts())
        .with_context(|| format!("cannot serve HTTP on {addr}"))?;
    tracing::info!(addr = %addr, "listening");
    wait_for_signal(&mut signals, &http, https.as_ref(), args.shutdown_timeout).await;
    http.finish(args.shutdown_timeout).await;
    if let Some(https) = https {
        https.finish(args.shutdown_timeout).await;
    }
    if let Some(flight) = flight {
        flight.shutdown(args.shutdown_timeout).await;
    }
    if let Some(pg) = pg {
        pg.shutdown(args.shutdown_timeout).await;
    }
    if let Some(mqtt) = mqtt {
        mqtt.shutdown(args.shutdown_timeout).await;
    }
    if let Some(bridge) = bridge {
        bridge.stop(args.shutdown_timeout).await;
    }
    rules.shutdown();
    tracing::info!("HTTP server stopped; flushing the engine");
    if let Err(e) = registry.flush() {
        tracing::warn!(error = %e, "could not persist the registry's last-seen times");
    }
    tokio::task::spawn_blocking(move || engine.shutdown())
        .await
        .context("engine shutdown task failed")?
        .context("engine shutdown failed")?;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Opens the rule store (`DATA/rules.redb`) and registers the `alerts` and `rules` SQL tables.
async fn open_rules(
    args: &ServeArgs,
    engine: &Arc<Engine>,
    query: &Arc<QueryEngine>,
) -> anyhow::Result<Arc<strata_rules::Rules>> {
    let (dir, engine, q) = (args.data_dir.clone(), engine.clone(), query.clone());
    let rules = tokio::task::spawn_blocking(move || strata_rules::Rules::open(&dir, engine, q))
        .await
        .context("rule store open task failed")?
        .context("cannot open the rule store")?;
    rules.rebuild_windows().await;
    rules.register_tables(query);
    Ok(rules)
}

/// Sets TLS up (operator certificate or development CA, see `docs/tls.md`) when a TLS listener
/// is configured, and logs which CA certificate clients should trust.
async fn setup_tls(args: &ServeArgs) -> anyhow::Result<Option<Tls>> {
    // The PostgreSQL listener always offers TLS (sslmode=require), with the same certificate.
    if !args.tls.enabled() && args.pg_addr.is_none() {
        return Ok(None);
    }
    let (tls_args, data_dir) = (args.tls.clone(), args.data_dir.clone());
    let tls = tokio::task::spawn_blocking(move || Tls::setup(&tls_args, &data_dir))
        .await
        .context("TLS setup task failed")?
        .context("cannot set up TLS")?;
    tracing::info!(
        trust = %tls.trust.display(),
        client_ca = ?tls.client_ca.as_ref().map(|p| p.display().to_string()),
        device_certificates = tls.dev_ca.is_some(),
        "TLS ready: clients trust {} (e.g. curl --cacert {})",
        tls.trust.display(),
        tls.trust.display()
    );
    Ok(Some(tls))
}

/// The MQTTS address, its TLS configuration and client-certificate verifier.
type MqttsListener = (
    SocketAddr,
    Arc<rustls::ServerConfig>,
    Option<Arc<ClientVerifier>>,
);

/// The router with the TLS client-certificate verifier as an extension (read by the mTLS
/// device authentication and the enrollment handlers), when client certificates are on.
fn with_verifier(app: axum::Router, verifier: &Option<Arc<ClientVerifier>>) -> axum::Router {
    match verifier {
        Some(v) => app.layer(Extension(v.clone())),
        None => app,
    }
}

/// Binds the MQTT device endpoints (plain and/or TLS), wires registry revocations to them and
/// serves them in the background; `None` when neither is configured.
async fn start_mqtt(
    plain: MqttListener,
    secure: Option<MqttsListener>,
    engine: &Arc<Engine>,
    registry: &Arc<strata_registry::Registry>,
    state: &AppState,
    config: MqttConfig,
) -> anyhow::Result<Option<MqttServer>> {
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for {what} on {addr}"))
    };
    let plain = match plain {
        MqttListener::Off => None,
        MqttListener::Explicit(a) => Some(bind(a, "MQTT").await?),
        MqttListener::Default(a) => match TcpListener::bind(a).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::warn!(addr = %a, error = %e,
                    "default MQTT address unavailable; running without plain MQTT (set --mqtt-addr, or --no-mqtt to silence this)");
                None
            }
        },
    };
    if plain.is_none() && secure.is_none() {
        return Ok(None);
    }
    let secure = match secure {
        Some((a, config, verifier)) => Some((bind(a, "MQTTS").await?, config, verifier)),
        None => None,
    };
    let auth = Arc::new(RegistryAuthenticator::new(registry.clone()));
    let mqtt =
        MqttServer::new(config, engine.clone(), auth).context("cannot start the MQTT endpoint")?;
    state.plane.attach_mqtt(mqtt.clone());
    state.metrics.attach_mqtt("mqtt", mqtt.clone());
    state
        .metrics
        .attach_limit("mqtt", mqtt.connection_limit().clone());
    watch_revocations(registry, mqtt.clone()).context("cannot watch registry revocations")?;
    if let Some(listener) = plain {
        let local = listener.local_addr().context("no local MQTT address")?;
        state.plane.set_mqtt_port(local.port());
        let serving = mqtt.clone();
        tokio::spawn(async move {
            if let Err(e) = serving.serve(listener).await {
                tracing::error!(error = %e, "MQTT endpoint failed");
            }
        });
        tracing::info!(addr = %local, "MQTT device endpoint listening");
    }
    if let Some((listener, config, verifier)) = secure {
        let local = listener.local_addr().context("no local MQTTS address")?;
        state.plane.set_mqtts_port(local.port());
        let serving = mqtt.clone();
        let handshake = Arc::new(MqttsHandshake::new(config, verifier));
        tokio::spawn(async move {
            if let Err(e) = serving.serve_with(listener, handshake).await {
                tracing::error!(error = %e, "MQTTS endpoint failed");
            }
        });
        tracing::info!(addr = %local, "MQTTS device endpoint listening");
    }
    Ok(Some(mqtt))
}

/// Releases abandoned backup sessions even when no backup call comes (a session pins segments
/// and cold objects an erase or retention would otherwise delete): checks every quarter of
/// `--backup-session-idle`, at most every 30 s.
fn release_idle_backups(state: AppState) {
    let every = (state.backups.idle() / 4).clamp(
        std::time::Duration::from_millis(250),
        std::time::Duration::from_secs(30),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            state.backups.expire();
        }
    });
}

/// Logs what recovery found: a summary, and each damage item as a warning.
fn log_recovery(r: &RecoveryReport) {
    tracing::info!(
        wal_records = r.wal_records,
        wal_warnings = r.wal_warnings.len(),
        segment_errors = r.segment_errors.len(),
        "recovery finished"
    );
    for w in &r.wal_warnings {
        tracing::warn!(damage = %w, "WAL damage found during recovery");
    }
    for e in &r.segment_errors {
        tracing::warn!(damage = %e, "segment damage found during recovery");
    }
}

/// Waits for a shutdown signal, then asks the HTTP(S) listeners to stop accepting and let
/// in-flight requests finish for at most `drain`.
async fn wait_for_signal(
    signals: &mut ShutdownSignals,
    http: &HttpServer,
    https: Option<&HttpServer>,
    drain: std::time::Duration,
) {
    let sig = signals.recv().await;
    tracing::info!(signal = sig, "shutdown signal received; draining requests");
    http.begin_shutdown(drain);
    if let Some(https) = https {
        https.begin_shutdown(drain);
    }
}

/// SIGTERM and SIGINT handlers, installed when made (signals received before [`Self::recv`]
/// is awaited are kept, not lost).
struct ShutdownSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn install() -> ShutdownSignals {
        use tokio::signal::unix::{SignalKind, signal};
        let one = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, signal = name, "cannot install a shutdown signal handler");
                None
            }
        };
        ShutdownSignals {
            term: one(SignalKind::terminate(), "SIGTERM"),
            int: one(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Waits for SIGTERM or SIGINT and names it (forever if neither handler is installed).
    async fn recv(&mut self) -> &'static str {
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.term) => "SIGTERM",
            _ = next(&mut self.int) => "SIGINT",
        }
    }
}
