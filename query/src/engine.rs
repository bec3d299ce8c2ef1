//! [`QueryEngine`]: a DataFusion session over the storage engine, with limits, and the
//! SQL → encoded result entry point.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{LogicalPlan, Statement as PlanStatement};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{DataType as SqlDataType, Ident, Statement as SqlStatement};
use futures::StreamExt;
use strata_storage::{DEFAULT_DATABASE, Engine};

use crate::catalog::StrataCatalog;
use crate::output::{OutputFormat, encode};
use crate::table::ScanOptions;
use crate::{QueryConfig, QueryError};

/// Name of the SQL catalog holding one schema per database.
pub const CATALOG_NAME: &str = "strata";

/// A query result: its schema and record batches.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Result schema (also for an empty result).
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Runs SQL over an [`Engine`]. Share it behind an `Arc`; queries may run concurrently.
pub struct QueryEngine {
    pub(crate) ctx: SessionContext,
    pub(crate) config: QueryConfig,
    options: SQLOptions,
    extra: crate::snapshot::ExtraTables,
    engine: Arc<Engine>,
    plans: crate::plan_cache::PlanCache,
    /// The session's task context, made once: statements that change settings are refused, so
    /// a run's context is this one's settings plus its own [`crate::ReadViews`] (no copy of the
    /// whole session state per query).
    task_base: Arc<TaskContext>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("session", &self.ctx.session_id())
            .field("config", &self.config)
            .finish()
    }
}

impl QueryEngine {
    /// A query engine with the default [`QueryConfig`].
    pub fn new(engine: Arc<Engine>) -> Result<QueryEngine, QueryError> {
        Self::with_config(engine, QueryConfig::default())
    }

    /// A query engine with explicit limits.
    pub fn with_config(
        engine: Arc<Engine>,
        config: QueryConfig,
    ) -> Result<QueryEngine, QueryError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(config.memory_limit, 1.0)
            .build_arc()?;
        let session = SessionConfig::new()
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_DATABASE)
            .with_information_schema(true)
            .with_target_partitions(config.target_partitions.max(1))
            .with_batch_size(config.batch_size.max(1))
            // The scan already has one partition per chunk of devices; re-splitting a
            // single-device scan costs more than it saves on small time-series queries.
            .with_round_robin_repartition(false)
            // The scans' partitions aggregate in place (in-scan folds, partial aggregates) and
            // leave few groups: merging them in one final aggregate costs less than hashing them
            // across partitions, a hop between threads per query.
            .with_repartition_aggregations(false)
            // Stream scans cannot use dynamic filters, and plans without them can be cached.
            .set_bool("datafusion.optimizer.enable_dynamic_filter_pushdown", false);
        let mut state = datafusion::execution::SessionStateBuilder::new()
            .with_config(session)
            .with_runtime_env(runtime)
            .with_default_features();
        if config.fast_paths {
            state = state
                .with_physical_optimizer_rule(Arc::new(crate::last_row::LastRowFromCache))
                .with_physical_optimizer_rule(Arc::new(crate::aggregate::AggregateInScan))
                .with_physical_optimizer_rule(Arc::new(crate::newest::NewestFromCache))
                .with_optimizer_rule(Arc::new(crate::rollup::RollupRewrite::new(
                    engine.clone(),
                    ScanOptions {
                        read_all_fields: config.read_all_fields,
                    },
                )));
        }
        let mut ctx = SessionContext::new_with_state(state.build());
        let options = ScanOptions {
            read_all_fields: config.read_all_fields,
        };
        let extra = crate::snapshot::ExtraTables::default();
        let catalog = StrataCatalog::with_extra_tables(engine.clone(), options, extra.clone());
        ctx.register_catalog(CATALOG_NAME, Arc::new(catalog));
        crate::functions::register(&mut ctx)?;
        crate::gapfill::register(&ctx);
        crate::pg_catalog::register_functions(&ctx);
        ctx.register_udtf(
            "last_values",
            Arc::new(crate::latest::LastValuesFunction::new(engine.clone())),
        );
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let task_base = ctx.task_ctx();
        Ok(QueryEngine {
            task_base,
            plans: crate::plan_cache::PlanCache::new(config.plan_cache_entries),
            ctx,
            config,
            options,
            extra,
            engine,
        })
    }

    /// The DataFusion session (for Flight SQL, prepared statements, custom planning).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Adds (or replaces) a table whose rows come from `source` (the server's registry tables),
    /// reachable as `registry.<name>` and as `<name>`; it wins over a stream of `default` or a
    /// database `registry` of the same name (see `catalog.rs`).
    pub fn register_snapshot_table(
        &self,
        name: &str,
        source: Arc<dyn crate::snapshot::SnapshotSource>,
    ) {
        let table = Arc::new(crate::snapshot::SnapshotTable::new(name, source));
        if let Ok(mut tables) = self.extra.write() {
            tables.insert(name.to_string(), table);
        }
    }

    /// A task context for one query run: the session's, plus a fresh [`crate::ReadViews`] so
    /// that every scan of the run reads one engine snapshot. Run plans from
    /// [`QueryEngine::plan`] with it.
    pub fn task_ctx(&self) -> Arc<TaskContext> {
        let base = &self.task_base;
        let config = base
            .session_config()
            .clone()
            .with_extension(crate::views::ReadViews::new());
        // Function registries stay empty: physical plans hold their functions, and nothing
        // that runs a plan looks one up by name (copying the ~400 entries cost ~10 µs a query).
        Arc::new(TaskContext::new(
            None,
            base.session_id(),
            config,
            Default::default(),
            Default::default(),
            Default::default(),
            Default::default(),
            base.runtime_env(),
        ))
    }

    /// The limits in force.
    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// Runs `sql` and encodes the result; returns the MIME type and the bytes.
    pub async fn execute(
        &self,
        sql: &str,
        format: OutputFormat,
    ) -> Result<(&'static str, Vec<u8>), QueryError> {
        self.with_timeout(async {
            let result = self.collect(sql).await?;
            let bytes = encode(format, &result.schema, &result.batches)?;
            Ok((format.content_type(), bytes))
        })
        .await
    }

    /// Runs `sql` and collects the result (at most `memory_limit` bytes of batches).
    pub async fn query(&self, sql: &str) -> Result<QueryResult, QueryError> {
        self.with_timeout(self.collect(sql)).await
    }

    /// Plans `sql` (read-only statements only) into an optimized physical plan, or takes a fresh
    /// copy of the plan cached for the same text and catalog (see [`QueryConfig::plan_cache_entries`]).
    pub async fn plan(&self, sql: &str) -> Result<Arc<dyn ExecutionPlan>, QueryError> {
        let version = self.engine.catalog_version();
        if let Some(plan) = self.plans.get(sql, version)? {
            return Ok(plan);
        }
        let state = self.ctx.state();
        let logical = state.create_logical_plan(sql).await?;
        self.options.verify_plan(&logical)?;
        let plan = state.create_physical_plan(&logical).await?;
        self.plans.put(sql, version, &logical, &plan);
        Ok(plan)
    }

    /// Plans and starts `sql`, returning the result as a stream of batches (no timeout or result
    /// size limit applied: the caller consumes it at its own pace).
    pub async fn stream(&self, sql: &str) -> Result<SendableRecordBatchStream, QueryError> {
        let plan = self.plan(sql).await?;
        Ok(execute_stream(plan, self.task_ctx())?)
    }

    /// Parses and plans `sql` (read-only statements only) into a logical plan without running it.
    /// `?` placeholders become `$1`, `$2`, ... in source order; bind values with
    /// `LogicalPlan::with_param_values` and run the plan with [`QueryEngine::query_plan`].
    pub async fn logical_plan(&self, sql: &str) -> Result<LogicalPlan, QueryError> {
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let mut statement = state.sql_to_statement(sql, &dialect)?;
        crate::params::number_placeholders(&mut statement);
        let logical = state.statement_to_plan(statement).await?;
        self.options.verify_plan(&logical)?;
        Ok(logical)
    }

    /// Plans one statement already parsed (the PostgreSQL transport parses with PostgreSQL's
    /// dialect and rewrites its syntax first, see [`crate::postgres_compat`]); read-only
    /// statements only, `?` placeholders numbered as in [`QueryEngine::logical_plan`].
    pub async fn statement_plan(
        &self,
        mut statement: datafusion::sql::parser::Statement,
    ) -> Result<LogicalPlan, QueryError> {
        let state = self.ctx.state();
        crate::params::number_placeholders(&mut statement);
        let logical = state.statement_to_plan(statement).await?;
        self.options.verify_plan(&logical)?;
        Ok(logical)
    }

    /// [`QueryEngine::statement_plan`] with the types a client declared for its parameters:
    /// placeholder `$i` takes `types[i - 1]`, and placeholders past the list are typed from
    /// their use as usual. `SELECT $1` declared `bigint` is then an `Int64` column, and
    /// `int_col >= $1` declared `double precision` compares as floats, as PostgreSQL does.
    /// Statements that are not plain SQL (DataFusion's own, e.g. `EXPLAIN`) ignore `types`.
    pub async fn statement_plan_typed(
        &self,
        mut statement: datafusion::sql::parser::Statement,
        types: Vec<SqlDataType>,
    ) -> Result<LogicalPlan, QueryError> {
        use datafusion::sql::parser::Statement as DfStatement;
        crate::params::number_placeholders(&mut statement);
        let inner = match statement {
            DfStatement::Statement(inner) if !types.is_empty() => inner,
            other => return self.statement_plan(other).await,
        };
        // Planned as `PREPARE strata_typed(types) AS statement`, whose input is the statement
        // with its placeholders typed.
        let prepare = SqlStatement::Prepare {
            name: Ident::new("strata_typed"),
            data_types: types,
            statement: inner,
        };
        let state = self.ctx.state();
        let logical = state
            .statement_to_plan(DfStatement::Statement(Box::new(prepare)))
            .await?;
        let LogicalPlan::Statement(PlanStatement::Prepare(prepared)) = logical else {
            return Err(QueryError::Execution(
                "a PREPARE statement was not planned as one".into(),
            ));
        };
        let plan = Arc::unwrap_or_clone(prepared.input);
        self.options.verify_plan(&plan)?;
        Ok(plan)
    }

    /// A fresh copy of the physical plan cached under `key` for the current catalog, if any. A
    /// transport that plans its own statements (the PostgreSQL wire protocol) keys its entries
    /// apart from SQL texts (e.g. with a prefix) and caches with [`QueryEngine::physical_plan`].
    pub fn cached_plan(&self, key: &str) -> Result<Option<Arc<dyn ExecutionPlan>>, QueryError> {
        Ok(self.plans.get(key, self.engine.catalog_version())?)
    }

    /// The catalog version plans are cached under (read it before planning).
    pub fn plan_version(&self) -> u64 {
        self.engine.catalog_version()
    }

    /// Plans `logical` (parameters bound) into an optimized physical plan; with `cache =
    /// Some((key, version))` the plan is cached under `key` when it can be reused (no
    /// parameters, no volatile functions), `version` being [`QueryEngine::plan_version`] read
    /// before the logical plan was made.
    pub async fn physical_plan(
        &self,
        logical: &LogicalPlan,
        cache: Option<(&str, u64)>,
    ) -> Result<Arc<dyn ExecutionPlan>, QueryError> {
        let plan = self.ctx.state().create_physical_plan(logical).await?;
        if let Some((key, version)) = cache {
            self.plans.put(key, version, logical, &plan);
        }
        Ok(plan)
    }

    /// Runs a physical plan and collects the result, with the same timeout and result-size limit
    /// as [`QueryEngine::query`].
    pub async fn run_plan(&self, plan: Arc<dyn ExecutionPlan>) -> Result<QueryResult, QueryError> {
        self.with_timeout(async {
            self.collect_stream(execute_stream(plan, self.task_ctx())?)
                .await
        })
        .await
    }

    /// Runs a plan from [`QueryEngine::logical_plan`] (parameters bound) and collects the result,
    /// with the same timeout and result-size limit as [`QueryEngine::query`].
    pub async fn query_plan(&self, plan: LogicalPlan) -> Result<QueryResult, QueryError> {
        self.with_timeout(async {
            let physical = self.ctx.state().create_physical_plan(&plan).await?;
            self.collect_stream(execute_stream(physical, self.task_ctx())?)
                .await
        })
        .await
    }

    async fn collect(&self, sql: &str) -> Result<QueryResult, QueryError> {
        self.collect_stream(self.stream(sql).await?).await
    }

    async fn collect_stream(
        &self,
        mut stream: SendableRecordBatchStream,
    ) -> Result<QueryResult, QueryError> {
        let schema = stream.schema();
        let mut batches = Vec::new();
        let mut bytes = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            bytes = bytes.saturating_add(batch.get_array_memory_size());
            if bytes > self.config.memory_limit {
                return Err(QueryError::ResourcesExhausted(format!(
                    "result is larger than {} bytes",
                    self.config.memory_limit
                )));
            }
            if batch.num_rows() > 0 {
                batches.push(batch);
            }
        }
        Ok(QueryResult { schema, batches })
    }

    pub(crate) async fn with_timeout<T>(
        &self,
        work: impl Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError> {
        match tokio::time::timeout(self.config.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(QueryError::Timeout(self.config.timeout)),
        }
    }
}
