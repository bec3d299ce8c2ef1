//! Catalog metadata for Flight SQL clients, read from the SQL engine's own catalog so it always
//! matches what queries see: one catalog ([`CATALOG_NAME`]), one schema per database (plus
//! `information_schema`), one table per stream (plus whatever other tables the SQL layer
//! registers). Filtering by catalog, schema/table name patterns and table types is done by
//! arrow-flight's builders. Also the small `GetSqlInfo` table.

use std::sync::{Arc, LazyLock};

use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables, SqlInfo,
};
use strata_query::arrow::array::RecordBatch;
use strata_query::arrow::datatypes::Schema;
use strata_query::datafusion::catalog::CatalogProvider;
use strata_query::datafusion::datasource::TableType;
use strata_query::{CATALOG_NAME, QueryEngine};
use tonic::Status;

/// Table types Strata reports.
pub const TABLE_TYPES: [&str; 2] = ["TABLE", "VIEW"];

/// The server's `GetSqlInfo` answers: name, version, Arrow format version, read-only SQL.
pub static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Strata");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.build()
        .unwrap_or_else(|e| panic!("static SqlInfo table is invalid: {e}"))
});

fn arrow_status(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("cannot build the metadata result: {e}"))
}

/// The single catalog.
pub fn catalogs(cmd: CommandGetCatalogs) -> Result<RecordBatch, Status> {
    let mut b = cmd.into_builder();
    b.append(CATALOG_NAME);
    b.build().map_err(arrow_status)
}

fn catalog(query: &QueryEngine) -> Result<Arc<dyn CatalogProvider>, Status> {
    query
        .context()
        .catalog(CATALOG_NAME)
        .ok_or_else(|| Status::internal("the SQL catalog is missing"))
}

/// Database schemas, filtered by the command.
pub fn schemas(query: &QueryEngine, cmd: CommandGetDbSchemas) -> Result<RecordBatch, Status> {
    let catalog = catalog(query)?;
    let mut b = cmd.into_builder();
    for name in sorted(catalog.schema_names()) {
        b.append(CATALOG_NAME, name);
    }
    b.build().map_err(arrow_status)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Tables, filtered by the command, with their Arrow schemas when asked for.
pub async fn tables(query: &QueryEngine, cmd: CommandGetTables) -> Result<RecordBatch, Status> {
    let catalog = catalog(query)?;
    let mut b = cmd.into_builder();
    for schema_name in sorted(catalog.schema_names()) {
        let Some(schema) = catalog.schema(&schema_name) else {
            continue;
        };
        for table_name in sorted(schema.table_names()) {
            let table = schema
                .table(&table_name)
                .await
                .map_err(|e| Status::internal(format!("cannot open table '{table_name}': {e}")))?;
            let Some(table) = table else { continue };
            let kind = match table.table_type() {
                TableType::Base => "TABLE",
                TableType::View => "VIEW",
                TableType::Temporary => "LOCAL TEMPORARY",
            };
            let arrow_schema: Arc<Schema> = table.schema();
            b.append(CATALOG_NAME, &schema_name, &table_name, kind, &arrow_schema)
                .map_err(arrow_status)?;
        }
    }
    b.build().map_err(arrow_status)
}

/// The table types.
pub fn table_types(cmd: CommandGetTableTypes) -> Result<RecordBatch, Status> {
    let mut b = cmd.into_builder();
    for t in TABLE_TYPES {
        b.append(t);
    }
    b.build().map_err(arrow_status)
}
