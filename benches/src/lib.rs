//! Benchmark crate: see `benches/` for the criterion benches.
