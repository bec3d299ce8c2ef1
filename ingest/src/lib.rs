//! Everything between a client's bytes and `Engine::write`: the wire formats that turn payloads
//! into columnar [`strata_storage::WriteBatch`]es (line protocol, JSON, Arrow record batches), the
//! one write pipeline every transport shares ([`pipeline`]: confine → validate → engine write),
//! model validation, the shared text forms (names, RFC 3339, durations), and the MQTT 3.1.1
//! device endpoint and broker bridge, which serve TCP themselves (HTTP and Flight are served by
//! the server crate, which calls the pipeline).

pub mod arrow_batch;
pub mod json;
pub mod line_protocol;
mod lp_scan;
mod lp_table;
mod lp_value;
pub mod mqtt;
pub mod pipeline;
pub mod text;
pub mod validate;
