//! Query limits and execution settings.

use std::time::Duration;

/// Settings of a [`crate::QueryEngine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryConfig {
    /// Longest a query may run (planning, execution and encoding) before it fails with
    /// [`crate::QueryError::Timeout`].
    pub timeout: Duration,
    /// Memory limit in bytes of DataFusion's memory pool, shared by the queries running at once
    /// (sorts, hash aggregates and joins reserve from it), and also the largest result one query
    /// may collect before encoding.
    pub memory_limit: usize,
    /// Parallel partitions per scan and per operator (defaults to the number of CPUs).
    pub target_partitions: usize,
    /// Rows per Arrow record batch inside operators.
    pub batch_size: usize,
    /// Decode every field of a stream even when the query reads only some (default `true`).
    ///
    /// The engine returns a point only if it has a value in at least one of the fields it is asked
    /// for. With `true` every stored point is a row, as SQL expects (`count(*)` is the same whatever
    /// else the query selects). With `false` only the fields the query references are decoded —
    /// faster on wide streams — and a query does not see points that have none of them; the
    /// results differ only for streams whose points carry different sets of fields.
    pub read_all_fields: bool,
    /// Physical plans kept for reuse, keyed by SQL text (0 turns plan caching off). See
    /// `docs/sql.md` ("Performance") for which queries are cached.
    pub plan_cache_entries: usize,
    /// Answer recognized query shapes from faster sources (last-value cache, aggregation inside
    /// the scan). Results are the same either way; `false` forces the general plan.
    pub fast_paths: bool,
}

impl Default for QueryConfig {
    /// 30 s timeout, 1 GiB memory, one partition per CPU, 8192-row batches, every point a row,
    /// 256 cached plans, fast paths on.
    fn default() -> Self {
        QueryConfig {
            timeout: Duration::from_secs(30),
            memory_limit: 1 << 30,
            target_partitions: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            batch_size: 8192,
            read_all_fields: true,
            plan_cache_entries: 256,
            fast_paths: true,
        }
    }
}
