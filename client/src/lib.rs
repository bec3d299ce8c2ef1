//! Strata client tools: a deterministic truck-fleet telemetry generator that writes InfluxDB line
//! protocol ([`fleet`]), an HTTP load driver for the write endpoint ([`load`]), and small helpers
//! for counting line-protocol rows and values ([`lineproto`]) and for durations ([`duration`]).

pub mod duration;
pub mod fleet;
pub mod lineproto;
pub mod load;
