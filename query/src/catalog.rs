//! The SQL catalog over the engine: one schema per database, one table per stream, resolved on
//! every lookup so streams and databases created after startup are visible at once.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result;
use strata_storage::{DEFAULT_DATABASE, Engine};

use crate::table::{ScanOptions, StreamTable};

/// Catalog whose schemas are the engine's databases (`default` always exists).
#[derive(Debug, Clone)]
pub struct StrataCatalog {
    engine: Arc<Engine>,
    options: ScanOptions,
}

impl StrataCatalog {
    /// A catalog over `engine` whose scans behave as `options` say.
    pub fn new(engine: Arc<Engine>, options: ScanOptions) -> StrataCatalog {
        StrataCatalog { engine, options }
    }
}

impl CatalogProvider for StrataCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.engine.databases();
        if !names.iter().any(|n| n == DEFAULT_DATABASE) {
            names.push(DEFAULT_DATABASE.to_string());
            names.sort();
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let known = name == DEFAULT_DATABASE || self.engine.databases().iter().any(|d| d == name);
        known.then(|| {
            Arc::new(DatabaseSchema::new(self.engine.clone(), name, self.options))
                as Arc<dyn SchemaProvider>
        })
    }
}

/// The tables (streams) of one database.
#[derive(Debug, Clone)]
pub struct DatabaseSchema {
    engine: Arc<Engine>,
    database: String,
    options: ScanOptions,
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
        }
    }
}

#[async_trait]
impl SchemaProvider for DatabaseSchema {
    fn table_names(&self) -> Vec<String> {
        self.engine.streams(&self.database)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(
            StreamTable::load(self.engine.clone(), &self.database, name, self.options)
                .map(|t| Arc::new(t) as Arc<dyn TableProvider>),
        )
    }

    fn table_exist(&self, name: &str) -> bool {
        self.engine.schema(&self.database, name).is_some()
    }
}
