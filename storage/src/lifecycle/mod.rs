//! Data lifecycle: per-database (overridable per stream) policies for how long data stays hot,
//! how long it is kept, and which rollups are maintained. This module holds the policy types,
//! their persisted store (`store.rs`) and the report of a maintenance run (`run.rs`); the engine
//! applies them in `engine/lifecycle.rs`.

mod policy;
mod run;
pub mod store;

pub use policy::{LifecyclePolicy, RollupSpec};
pub use run::{ColdMove, ColdStatus, LifecycleRun, RetentionDrop, TierStatus};
pub use store::{PolicySource, PolicyStore, check_policy, format_duration};
