//! Wire formats that turn client payloads into columnar [`strata_storage::WriteBatch`]es.

pub mod line_protocol;
