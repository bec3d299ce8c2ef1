//! Fleet simulator.
fn main() {}
