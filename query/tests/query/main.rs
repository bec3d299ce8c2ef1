//! The query crate's integration tests, in one test binary: each links DataFusion, so one binary
//! instead of one per file saves about 270 MB of debug build and a link per file.

mod support;

mod rollup;
mod sql;
mod system_tables;
mod timeseries;
