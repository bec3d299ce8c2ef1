//! MQTT 3.1.1 device endpoint (server side of the `rumqttc` packet codec).
//!
//! Devices connect with client id = user name = their device id and password = their key,
//! publish telemetry (JSON or line protocol) to `devices/{id}/telemetry[/{stream}]` at QoS 0
//! or 1, and may subscribe to `devices/{id}/commands/#`. A QoS 1 PUBACK leaves only after the
//! message's rows are durable in the engine; messages of many connections share one engine
//! write (group commit), and each connection's PUBACKs leave in order. `docs/mqtt.md` describes
//! topics, payloads, limits and every refusal.
//!
//! [`Bridge`] is the other way in: it subscribes to an existing broker and acknowledges each
//! message only after its rows are durable.
//!
//! ```no_run
//! # async fn demo(engine: std::sync::Arc<strata_storage::Engine>) -> std::io::Result<()> {
//! use std::sync::Arc;
//! use strata_ingest::mqtt::{MqttConfig, MqttServer, StaticAuthenticator};
//! let auth = Arc::new(StaticAuthenticator::new([("sensor-1", "secret")]));
//! let server = MqttServer::new(MqttConfig::default(), engine, auth)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:1883").await?;
//! server.serve(listener).await
//! # }
//! ```

mod auth;
mod bridge;
mod bucket;
mod channel;
mod commit;
mod config;
mod connect;
mod connection;
mod limit;
mod merge;
mod payload;
mod replay;
mod server;
mod session;
mod shared;
mod stats;
mod topic;

pub use auth::{
    AuthFailure, ClientCertificate, DeviceAuthenticator, DeviceId, StaticAuthenticator,
    certificate_credentials, connect_credentials,
};
pub use bridge::{Bridge, BridgeConfig, BridgeConfigError, BridgeError, BridgeRoute, BridgeStats};
pub use channel::{DeviceChannel, InboundError, Outgoing, filter_matches};
pub use config::{MqttConfig, RateLimit};
pub use limit::{ConnectionLimit, Establish, LimitedIo, Slot};
pub use payload::is_json;
pub use replay::{Replay, replay};
pub use server::{Handshake, MqttServer, PlainTcp};
pub use stats::{MqttStats, RejectReason};
pub use topic::{TopicError, subscription_allowed, telemetry_stream};
