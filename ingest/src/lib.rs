//! Wire formats that turn client payloads into columnar [`strata_storage::WriteBatch`]es (line
//! protocol, JSON), and the MQTT 3.1.1 device endpoint that feeds them to the storage engine.

pub mod json;
pub mod line_protocol;
mod lp_scan;
mod lp_table;
mod lp_value;
pub mod mqtt;
pub mod pipeline;
pub mod text;
pub mod validate;
