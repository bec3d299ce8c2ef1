//! The MQTT listener's integration tests (protocol, limits, clients, bridge, load), in one test
//! binary instead of one per file: each links the server side of the engine, about 80 MB of debug
//! build and a link apiece.

mod harness;

mod bench;
mod bridge;
mod clients;
mod limits;
mod protocol;
