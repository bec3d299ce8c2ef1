//! Wire formats that turn client payloads into columnar [`strata_storage::WriteBatch`]es.

pub mod json;
pub mod line_protocol;
mod lp_scan;
mod lp_table;
mod lp_value;
