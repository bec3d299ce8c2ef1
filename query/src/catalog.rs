//! The SQL catalog over the engine: one schema per database, one table per stream, resolved on
//! every lookup so streams and databases created after startup are visible at once. Extra tables
//! registered by the embedder (the registry's `devices`, `entities`, ...) live in schema
//! [`EXTRA_SCHEMA`] and are also reachable unqualified.
//!
//! System tables win lookups: while extra tables are registered, schema `registry` is always
//! theirs (a database of that name is not reachable through SQL), and in `default` an extra
//! table's name resolves to the extra table even when a stream of that name exists (such a
//! stream is hidden from SQL and stays readable through `GET /api/v1/read?db=..&stream=..`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result;
use strata_storage::{DEFAULT_DATABASE, Engine};

use crate::snapshot::ExtraTables;
use crate::table::{ScanOptions, StreamTable};

/// Schema holding the extra (non-stream) tables.
pub const EXTRA_SCHEMA: &str = "registry";

/// Catalog whose schemas are the engine's databases (`default` always exists).
#[derive(Debug, Clone)]
pub struct StrataCatalog {
    engine: Arc<Engine>,
    options: ScanOptions,
    extra: ExtraTables,
}

impl StrataCatalog {
    /// A catalog over `engine` whose scans behave as `options` say.
    pub fn new(engine: Arc<Engine>, options: ScanOptions) -> StrataCatalog {
        Self::with_extra_tables(engine, options, ExtraTables::default())
    }

    /// Same, also serving the (shared, growable) `extra` tables.
    pub fn with_extra_tables(
        engine: Arc<Engine>,
        options: ScanOptions,
        extra: ExtraTables,
    ) -> StrataCatalog {
        StrataCatalog {
            engine,
            options,
            extra,
        }
    }

    fn has_extra(&self) -> bool {
        self.extra.read().is_ok_and(|t| !t.is_empty())
    }
}

impl CatalogProvider for StrataCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.engine.databases();
        if !names.iter().any(|n| n == DEFAULT_DATABASE) {
            names.push(DEFAULT_DATABASE.to_string());
        }
        if self.has_extra() && !names.iter().any(|n| n == EXTRA_SCHEMA) {
            names.push(EXTRA_SCHEMA.to_string());
        }
        names.sort();
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == crate::pg_catalog::PG_CATALOG {
            let me: Arc<dyn CatalogProvider> = Arc::new(self.clone());
            return Some(Arc::new(crate::pg_catalog::PgCatalogSchema::new(me)));
        }
        if name == EXTRA_SCHEMA && self.has_extra() {
            return Some(Arc::new(ExtraSchema(self.extra.clone())));
        }
        let known = name == DEFAULT_DATABASE || self.engine.databases().iter().any(|d| d == name);
        known.then(|| {
            let mut schema = DatabaseSchema::new(self.engine.clone(), name, self.options);
            if name == DEFAULT_DATABASE {
                schema.extra = Some(self.extra.clone());
            }
            Arc::new(schema) as Arc<dyn SchemaProvider>
        })
    }
}

/// The tables (streams) of one database.
#[derive(Debug, Clone)]
pub struct DatabaseSchema {
    engine: Arc<Engine>,
    database: String,
    options: ScanOptions,
    /// Extra tables reachable unqualified (the `default` database only).
    extra: Option<ExtraTables>,
}

impl DatabaseSchema {
    /// The schema of `database` (which need not exist yet).
    pub fn new(
        engine: Arc<Engine>,
        database: impl Into<String>,
        options: ScanOptions,
    ) -> DatabaseSchema {
        DatabaseSchema {
            engine,
            database: database.into(),
            options,
            extra: None,
        }
    }
}

#[async_trait]
impl SchemaProvider for DatabaseSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.engine.streams(&self.database);
        names.retain(|n| self.system_table(n).is_none());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(system) = self.system_table(name) {
            return Ok(Some(system));
        }
        Ok(
            StreamTable::load(self.engine.clone(), &self.database, name, self.options)
                .map(|t| Arc::new(t) as Arc<dyn TableProvider>),
        )
    }

    fn table_exist(&self, name: &str) -> bool {
        self.system_table(name).is_some() || self.engine.schema(&self.database, name).is_some()
    }
}

impl DatabaseSchema {
    /// The extra (system) table `name` reachable in this schema, which wins over a stream.
    fn system_table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        extra_table(self.extra.as_ref()?, name)
    }
}

fn extra_table(extra: &ExtraTables, name: &str) -> Option<Arc<dyn TableProvider>> {
    extra.read().ok()?.get(name).cloned()
}

/// The schema of the extra tables.
#[derive(Debug)]
struct ExtraSchema(ExtraTables);

#[async_trait]
impl SchemaProvider for ExtraSchema {
    fn table_names(&self) -> Vec<String> {
        self.0
            .read()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(extra_table(&self.0, name))
    }

    fn table_exist(&self, name: &str) -> bool {
        extra_table(&self.0, name).is_some()
    }
}
