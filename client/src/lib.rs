//! The client side of Strata.
//!
//! - [`device`]: the **device SDK** — connect over MQTT or MQTTS (device key or client
//!   certificate, persistent session), publish telemetry through an on-disk store-and-forward
//!   buffer, receive and acknowledge commands, keep the twin in sync, serve direct methods, and
//!   provision from an enrollment group. Examples in `client/examples/`; guide in `docs/sdk.md`.
//! - [`query`]: the **application-side query client** — SQL over Arrow Flight SQL, answers as
//!   Arrow record batches.
//! - [`fleet`]: the **fleet simulator** — a deterministic truck-fleet telemetry generator that
//!   writes InfluxDB line protocol (the `strata-fleet` binary), with [`load`], an HTTP load driver
//!   for the write endpoint.
//! - [`devbench`]: device-plane scale benchmarks (provisioning through one enrollment group,
//!   one command fanned out to many connected MQTT devices), `strata-fleet provision|commands`.
//! - [`lineproto`] and [`duration`]: small helpers for counting line-protocol rows and values and
//!   for durations.

pub mod devbench;
pub mod device;
pub mod duration;
pub mod fleet;
pub mod lineproto;
pub mod load;
pub mod query;
