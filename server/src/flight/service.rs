//! [`StrataFlightSql`]: the `FlightSqlService` over the server's [`AppState`]. Every call is
//! authenticated first (see [`super::auth`]). Statement queries are stateless: `GetFlightInfo`
//! plans the SQL (so errors surface there, as `InvalidArgument` with the planner's message) and
//! returns a ticket holding the SQL text, which `DoGet` runs through the shared
//! [`strata_query::QueryEngine`] (same timeout and result limit as HTTP). Prepared statements keep
//! their SQL and bound parameters in [`Statements`]; parameters are bound by DataFusion, never
//! pasted into SQL text.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{DoPutError, FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementIngest, CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt,
    SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, IpcMessage,
    SchemaAsIpc, Ticket,
};
use futures::{Stream, TryStreamExt};
use prost::Message;
use strata_query::QueryError;
use strata_query::arrow::array::RecordBatch;
use strata_query::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use strata_query::arrow::ipc::writer::IpcWriteOptions;
use strata_query::datafusion::execution::SendableRecordBatchStream;
use strata_query::datafusion::logical_expr::LogicalPlan;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{self, HandshakeStream, status};
use super::metadata;
use super::put;
use super::statements::{Statements, params_from_batches};
use crate::query::query_error;
use crate::state::AppState;

/// The `DoGet` response stream.
type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

/// Strata's Flight SQL service.
#[derive(Debug)]
pub struct StrataFlightSql {
    st: AppState,
    statements: Arc<Statements>,
}

impl StrataFlightSql {
    /// A service over the server's shared state.
    pub fn new(st: AppState) -> Self {
        StrataFlightSql {
            st,
            statements: Arc::default(),
        }
    }

    /// Plans `sql` (placeholders unbound) into a logical plan; SQL errors → `InvalidArgument`.
    async fn plan(&self, sql: &str) -> Result<LogicalPlan, Status> {
        self.st.query.logical_plan(sql).await.map_err(sql_status)
    }

    /// Plans `sql` and binds `params` (`$1`... / `?` in order).
    async fn bound_plan(
        &self,
        sql: &str,
        params: Vec<strata_query::datafusion::scalar::ScalarValue>,
    ) -> Result<LogicalPlan, Status> {
        let plan = self.plan(sql).await?;
        if params.is_empty() {
            return Ok(plan);
        }
        plan.with_param_values(params)
            .map_err(|e| sql_status(QueryError::from(e)))
    }
}

/// A query failure as a gRPC status (SQL errors are `InvalidArgument` with the planner's words).
fn sql_status(e: QueryError) -> Status {
    status(query_error(e))
}

/// The UTF-8 SQL text of a ticket or command.
fn utf8(bytes: &[u8], what: &str) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Status::invalid_argument(format!("the {what} is not valid UTF-8")))
}

/// A `FlightInfo` with one endpoint whose ticket is `ticket`.
fn flight_info(
    schema: &Schema,
    ticket: impl ProstMessageExt,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("cannot encode the result schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_ordered(true))
}

/// The `FlightInfo` answer of a metadata command: checks the read scope, then points the client
/// at a ticket carrying `command`.
fn metadata_info(
    st: &AppState,
    request: Request<FlightDescriptor>,
    schema: &Schema,
    command: impl ProstMessageExt,
) -> Result<Response<FlightInfo>, Status> {
    auth::reader(st, &request)?;
    Ok(Response::new(flight_info(
        schema,
        command,
        request.into_inner(),
    )?))
}

/// Streams record batches as Flight data (the schema first, also for an empty result).
fn batches_stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> DoGetStream {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Box::pin(stream)
}

/// Streams a query's batches as Flight data while they are computed (the answer is never held
/// whole; an execution error ends the stream with an error status).
fn batch_stream(stream: SendableRecordBatchStream) -> DoGetStream {
    let schema = stream.schema();
    // An error while running keeps its kind (a timeout or the memory limit is `UNAVAILABLE`,
    // storage errors as their kind says), like one while planning.
    let batches = stream.map_err(|e| FlightError::Tonic(Box::new(sql_status(QueryError::from(e)))));
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Box::pin(stream)
}

fn one_batch(batch: RecordBatch) -> DoGetStream {
    batches_stream(batch.schema(), vec![batch])
}

/// IPC-encapsulated schema bytes, as prepared-statement results carry them.
fn ipc_schema(schema: &Schema) -> Result<Vec<u8>, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| Status::internal(format!("cannot encode a schema: {e}")))?;
    Ok(bytes.to_vec())
}

/// The parameters of a plan as a schema (`$1`, `$2`, ...; unknown types as Null).
fn parameter_schema(plan: &LogicalPlan) -> Result<Schema, Status> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| sql_status(e.into()))?;
    let mut names: Vec<(usize, String)> = types
        .keys()
        .map(|k| {
            (
                k.trim_start_matches('$').parse().unwrap_or(usize::MAX),
                k.clone(),
            )
        })
        .collect();
    names.sort();
    let fields: Vec<Field> = names
        .into_iter()
        .map(|(_, name)| {
            let ty = types
                .get(&name)
                .cloned()
                .flatten()
                .unwrap_or(DataType::Null);
            Field::new(name, ty, true)
        })
        .collect();
    Ok(Schema::new(fields))
}

#[tonic::async_trait]
impl FlightSqlService for StrataFlightSql {
    type FlightService = StrataFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        auth::handshake(&self.st, &request)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        auth::reader(&self.st, &request)?;
        let plan = self.plan(&query.query).await?;
        let schema = plan.schema().as_arrow().clone();
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        Ok(Response::new(flight_info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        auth::reader(&self.st, &request)?;
        let sql = utf8(&ticket.statement_handle, "statement ticket")?;
        let stream = self.st.query.stream_paced(&sql).await.map_err(sql_status)?;
        Ok(Response::new(batch_stream(stream)))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let principal = auth::reader(&self.st, &request)?;
        let plan = self.plan(&query.query).await?;
        let dataset_schema = ipc_schema(plan.schema().as_arrow())?;
        let parameter_schema = ipc_schema(&parameter_schema(&plan)?)?;
        let handle = self.statements.create(&principal.actor(), &query.query)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into_bytes().into(),
            dataset_schema: dataset_schema.into(),
            parameter_schema: parameter_schema.into(),
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let principal = auth::reader(&self.st, &request)?;
        let owner = principal.actor();
        let handle = query.prepared_statement_handle;
        self.statements.get(&handle, &owner)?;
        let mut stream = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            request
                .into_inner()
                .map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))),
        );
        // Read as it comes, refusing a second row at once: a client must not make the server
        // hold an unbounded stream of batches only to be told it sent too many rows.
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut rows = 0usize;
        while let Some(batch) = stream
            .try_next()
            .await
            .map_err(|e| Status::invalid_argument(format!("cannot decode the parameters: {e}")))?
        {
            rows = rows.saturating_add(batch.num_rows());
            if rows > 1 {
                return Err(Status::invalid_argument(format!(
                    "bind exactly one row of parameters per execution (got {rows} rows or more)"
                )));
            }
            // Empty batches bind nothing; keep at most one (its columns: no parameters).
            if batch.num_rows() > 0 || batches.is_empty() {
                batches.push(batch);
            }
        }
        let params = params_from_batches(&batches)?;
        self.statements.bind(&handle, &owner, params)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = auth::reader(&self.st, &request)?;
        let prepared = self
            .statements
            .get(&cmd.prepared_statement_handle, &principal.actor())?;
        let plan = self.bound_plan(&prepared.sql, prepared.params).await?;
        let schema = plan.schema().as_arrow().clone();
        Ok(Response::new(flight_info(
            &schema,
            cmd,
            request.into_inner(),
        )?))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = auth::reader(&self.st, &request)?;
        let prepared = self
            .statements
            .get(&cmd.prepared_statement_handle, &principal.actor())?;
        let plan = self.bound_plan(&prepared.sql, prepared.params).await?;
        let stream = self
            .st
            .query
            .stream_logical(plan)
            .await
            .map_err(sql_status)?;
        Ok(Response::new(batch_stream(stream)))
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let principal = auth::reader(&self.st, &request)?;
        self.statements
            .close(&query.prepared_statement_handle, &principal.actor())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&self.st, request, &schema, query)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        auth::reader(&self.st, &request)?;
        Ok(Response::new(one_batch(metadata::catalogs(query)?)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&self.st, request, &schema, query)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        auth::reader(&self.st, &request)?;
        Ok(Response::new(one_batch(metadata::schemas(
            &self.st.query,
            query,
        )?)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&self.st, request, &schema, query)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        auth::reader(&self.st, &request)?;
        let batch = metadata::tables(&self.st.query, query).await?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&self.st, request, &schema, query)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        auth::reader(&self.st, &request)?;
        Ok(Response::new(one_batch(metadata::table_types(query)?)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&metadata::SQL_INFO).schema();
        metadata_info(&self.st, request, &schema, query)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        auth::reader(&self.st, &request)?;
        let batch = query
            .into_builder(&metadata::SQL_INFO)
            .build()
            .map_err(|e| Status::internal(format!("cannot build SqlInfo: {e}")))?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn do_put_statement_ingest(
        &self,
        ticket: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let principal = auth::writer(&self.st, &request)?;
        put::ingest_statement(self.st.clone(), principal, &ticket, request.into_inner()).await
    }

    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        let principal = auth::writer(&self.st, &request)?;
        if !message.type_url.is_empty() {
            return Err(Status::unimplemented(format!(
                "DoPut command {} is not supported; bulk ingest uses a PATH descriptor [database, stream]",
                message.type_url
            )));
        }
        let mut input = request.into_inner();
        let descriptor = match Pin::new(&mut input).peek().await {
            Some(Ok(first)) => first.flight_descriptor.clone().unwrap_or_default(),
            _ => FlightDescriptor::default(),
        };
        let out = put::do_put(self.st.clone(), principal, &descriptor, input)?;
        Ok(Response::new(out))
    }

    async fn do_put_error_callback(
        &self,
        request: Request<PeekableFlightDataStream>,
        error: DoPutError,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        auth::principal(&self.st, &request)?;
        Err(Status::invalid_argument(format!(
            "{error} DoPut needs a FlightDescriptor in its first message: a PATH [database, stream] \
             for bulk ingest, or a Flight SQL command"
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
