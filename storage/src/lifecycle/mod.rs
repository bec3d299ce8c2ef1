//! Data lifecycle: per-database (overridable per stream) policies for how long data stays hot,
//! how long it is kept, and which rollups are maintained. This module holds the policy types;
//! the cold tier, retention and rollup machinery build on them.

mod policy;

pub use policy::{LifecyclePolicy, RollupSpec};
