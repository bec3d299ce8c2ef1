//! The broker bridge of `strata serve --bridge-broker`: the `--bridge-*` flags ([`BridgeArgs`])
//! and the start of a [`strata_ingest::mqtt::Bridge`] that subscribes to an existing broker
//! (Mosquitto, EMQX, HiveMQ), stores what devices publish there through the write pipeline
//! (confined to the topic's device, validated against its model) and acknowledges each QoS 1
//! message after its commit. `docs/mqtt.md` ("Broker bridge") describes it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use strata_ingest::mqtt::{Bridge, BridgeConfig, BridgeRoute};
use strata_storage::Engine;

use crate::state::AppState;

/// Routes used when no `--bridge-route` is given: the device endpoint's own topics.
pub const DEFAULT_ROUTES: [&str; 2] = [
    "devices/{device}/telemetry/{stream}",
    "devices/{device}/telemetry",
];

/// Broker-bridge flags of `strata serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct BridgeArgs {
    /// Subscribe to an existing MQTT 3.1.1 broker (HOST or HOST:PORT, port 1883 by default) and
    /// store what devices publish there; each QoS 1 message is acknowledged to the broker only
    /// once its rows are durable. Off unless given. See docs/mqtt.md ("Broker bridge").
    #[arg(long, env = "STRATA_BRIDGE_BROKER")]
    pub bridge_broker: Option<String>,

    /// Topic pattern that maps a broker topic to a device and a stream (repeatable or
    /// comma-separated; the first match wins): literal levels, `+`, one `{device}` and at most
    /// one `{stream}`. Default: devices/{device}/telemetry/{stream} and
    /// devices/{device}/telemetry (stream `telemetry`), the device endpoint's own topics.
    #[arg(
        long = "bridge-route",
        env = "STRATA_BRIDGE_ROUTES",
        value_delimiter = ','
    )]
    pub bridge_routes: Vec<String>,

    /// Client id at the broker (default strata-bridge-HOSTNAME). Keep it stable across
    /// restarts: the broker keeps this session's unacknowledged messages for it.
    #[arg(long, env = "STRATA_BRIDGE_CLIENT_ID")]
    pub bridge_client_id: Option<String>,

    /// Shared-subscription group: subscribe to $share/GROUP/FILTER so that the Strata nodes of
    /// one group split the broker's messages.
    #[arg(long, env = "STRATA_BRIDGE_SHARE_GROUP")]
    pub bridge_share_group: Option<String>,

    /// User name at the broker (the password comes from STRATA_BRIDGE_PASSWORD).
    #[arg(long, env = "STRATA_BRIDGE_USERNAME")]
    pub bridge_username: Option<String>,

    /// Database the bridged rows go to (default: the device database, --device-database).
    #[arg(long, env = "STRATA_BRIDGE_DATABASE")]
    pub bridge_database: Option<String>,

    /// Wait after a commit failed on storage (a full disk) before connecting to the broker
    /// again, which then delivers the unacknowledged messages again.
    #[arg(long, env = "STRATA_BRIDGE_STORAGE_RETRY", default_value = "5s", value_parser = crate::time::parse_duration)]
    pub bridge_storage_retry: Duration,
}

impl BridgeArgs {
    /// The bridge configuration these flags describe (`None`: no `--bridge-broker`), for rows
    /// of devices identified by `device_tags` going by default to `device_database`.
    pub fn config(
        &self,
        device_tags: &[String],
        device_database: &str,
    ) -> anyhow::Result<Option<BridgeConfig>> {
        let Some(broker) = &self.bridge_broker else {
            return Ok(None);
        };
        let (host, port) = split_host_port(broker)?;
        let client_id = self
            .bridge_client_id
            .clone()
            .unwrap_or_else(|| format!("strata-bridge-{}", hostname()));
        let mut config = BridgeConfig::new(host, port, client_id);
        config.routes = if self.bridge_routes.is_empty() {
            DEFAULT_ROUTES
                .iter()
                .map(|r| BridgeRoute::new(*r))
                .collect()
        } else {
            self.bridge_routes.iter().map(BridgeRoute::new).collect()
        };
        config.share_group = self.bridge_share_group.clone();
        config.credentials = self.bridge_username.clone().map(|user| {
            let password = std::env::var("STRATA_BRIDGE_PASSWORD").unwrap_or_default();
            (user, password)
        });
        config.database = self
            .bridge_database
            .clone()
            .unwrap_or_else(|| device_database.to_owned());
        config.device_tags = device_tags.to_vec();
        config.storage_retry_delay = self.bridge_storage_retry;
        Ok(Some(config))
    }
}

/// Starts the bridge these flags ask for (inside the runtime), validating rows against the
/// devices' models like every other write path; its counters go to `/metrics`.
pub fn start(
    args: &BridgeArgs,
    device_tags: &[String],
    engine: &Arc<Engine>,
    state: &AppState,
) -> anyhow::Result<Option<RunningBridge>> {
    let device_database = state.pipeline.admission().device_database().to_owned();
    let Some(mut config) = args.config(device_tags, &device_database)? else {
        return Ok(None);
    };
    config.schemas = Some(state.schemas.clone());
    let (host, port, routes) = (
        config.host.clone(),
        config.port,
        config.subscriptions().join(","),
    );
    let bridge = Arc::new(
        Bridge::new(config, engine.clone())
            .context("cannot start the broker bridge (check --bridge-route)")?,
    );
    state.metrics.attach_bridge(bridge.clone());
    let running = bridge.clone();
    let task = tokio::spawn(async move { running.run().await });
    tracing::info!(broker = %format!("{host}:{port}"), subscriptions = %routes, "broker bridge started");
    Ok(Some(RunningBridge { bridge, task }))
}

/// A started bridge and its task.
pub struct RunningBridge {
    bridge: Arc<Bridge>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningBridge {
    /// Stops the bridge and waits (at most `timeout`) until it answered its commit in flight
    /// (acknowledging what became durable) and disconnected, so that the engine shuts down
    /// after it; messages not acknowledged come again at the next start.
    pub async fn stop(self, timeout: Duration) {
        self.bridge.stop();
        let mut task = self.task;
        if tokio::time::timeout(timeout, &mut task).await.is_err() {
            tracing::warn!("the broker bridge did not stop in time");
            task.abort();
        }
    }
}

/// `HOST` or `HOST:PORT` (an IPv6 address in brackets with a port); the port defaults to 1883.
fn split_host_port(broker: &str) -> anyhow::Result<(String, u16)> {
    if let Ok(ip) = broker.parse::<std::net::Ipv6Addr>() {
        return Ok((ip.to_string(), 1883));
    }
    if let Ok(addr) = broker.parse::<std::net::SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    let bad = || {
        anyhow::anyhow!(
            "invalid --bridge-broker {broker:?}: expected HOST or HOST:PORT, e.g. mosquitto.local:1883"
        )
    };
    let (host, port) = match broker.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (broker, 1883),
    };
    if host.is_empty() || host.contains([':', '/', '[', ']', ' ']) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// This machine's host name, for the default client id.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        let ok = |s: &str| split_host_port(s).unwrap();
        assert_eq!(ok("mosquitto"), ("mosquitto".into(), 1883));
        assert_eq!(ok("10.0.0.5:1884"), ("10.0.0.5".into(), 1884));
        assert_eq!(ok("[::1]:1885"), ("::1".into(), 1885));
        assert_eq!(ok("::1"), ("::1".into(), 1883));
        for bad in ["", "host:", "host:99999", ":1883", "mqtt://host/x"] {
            assert!(split_host_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_routes_are_the_device_endpoint_topics() {
        let args = BridgeArgs {
            bridge_broker: Some("broker:1883".into()),
            bridge_storage_retry: Duration::from_secs(5),
            ..BridgeArgs::default()
        };
        let tags = vec!["device".to_string()];
        let c = args.config(&tags, "telemetry").unwrap().unwrap();
        assert_eq!(
            c.subscriptions(),
            vec!["devices/+/telemetry/+", "devices/+/telemetry"]
        );
        assert_eq!(c.database, "telemetry");
        assert!(c.client_id.starts_with("strata-bridge-"));
        let r = &c.routes;
        assert_eq!(
            r[0].resolve("devices/d1/telemetry/power"),
            Some(("d1", "power"))
        );
        assert_eq!(
            r[1].resolve("devices/d1/telemetry"),
            Some(("d1", "telemetry"))
        );
        let none = BridgeArgs::default().config(&tags, "x").unwrap();
        assert!(none.is_none());
    }
}
