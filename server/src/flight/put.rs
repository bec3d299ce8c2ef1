//! Flight transport of the write pipeline: `DoPut` with a `FlightDescriptor` of type PATH naming
//! `[database, stream]`, and Flight SQL `CommandStatementIngest` (ADBC). The Arrow record batches
//! (columns described in `strata_ingest::arrow_batch`) are converted by that module and each one
//! goes through the pipeline (`crate::write::submit`: confined to what the caller may write — a
//! token's stream limits, a device's own rows in the device database — validated against the
//! devices' models, durably written); one `PutResult` per batch (`app_metadata` = `{"rows": N}`)
//! is sent only once its rows are durable. A schema that does not fit is refused with
//! `InvalidArgument` before any row is written.

use std::pin::Pin;
use std::time::Instant;

use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use arrow_flight::{FlightDescriptor, PutResult, flight_descriptor::DescriptorType};
use futures::{Stream, StreamExt, TryStreamExt};
use strata_ingest::arrow_batch::{ArrowError, Layout, layout, to_table};
use strata_ingest::line_protocol::Precision;
use strata_query::CATALOG_NAME;
use strata_query::arrow::array::RecordBatch;
use strata_storage::{DEFAULT_DATABASE, WriteBatch};
use tonic::Status;

use crate::auth::Principal;
use crate::flight::auth::status;
use crate::state::AppState;
use crate::write::{Target, database_name, submit};

/// The `DoPut` response stream.
pub type PutStream = Pin<Box<dyn Stream<Item = Result<PutResult, Status>> + Send>>;

/// `[database, stream]` from a PATH descriptor.
pub fn target_of(descriptor: &FlightDescriptor) -> Result<(String, String), Status> {
    let path = &descriptor.path;
    if descriptor.r#type() != DescriptorType::Path || path.len() != 2 {
        return Err(Status::invalid_argument(format!(
            "DoPut needs a FlightDescriptor of type PATH with two elements [database, stream], \
             got type {:?} with path {path:?}",
            descriptor.r#type()
        )));
    }
    Ok((path[0].clone(), path[1].clone()))
}

/// A record batch that cannot be converted is an `InvalidArgument`.
fn invalid(e: ArrowError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Where a `DoPut` writes and who sends it.
struct Ingest {
    st: AppState,
    target: Target,
    stream: String,
    layout: Option<Layout>,
}

impl Ingest {
    /// Checks the database name and the caller's right to write `stream` of `db`.
    fn new(st: AppState, principal: Principal, db: &str, stream: String) -> Result<Self, Status> {
        let db = database_name(db).map_err(status)?;
        principal.check_stream(&db, &stream).map_err(status)?;
        if let Some(device) = principal.device()
            && db != st.pipeline.admission().device_database()
        {
            let e = strata_ingest::pipeline::PipelineError::Database {
                device: device.to_owned(),
                allowed: st.pipeline.admission().device_database().to_owned(),
                requested: db,
            };
            return Err(status(e.into()));
        }
        let mut target = Target::new(db, Precision::Nanoseconds, principal);
        target.only_stream = Some(stream.clone());
        Ok(Ingest {
            st,
            target,
            stream,
            layout: None,
        })
    }
}

fn decoder(input: PeekableFlightDataStream) -> FlightDataDecoder {
    FlightDataDecoder::new(input.map_err(|s| FlightError::Tonic(Box::new(s))))
}

/// Handles a `DoPut` with a PATH descriptor: checks the target, then ingests batch by batch,
/// acknowledging each durable batch with a `PutResult`.
pub fn do_put(
    st: AppState,
    principal: Principal,
    descriptor: &FlightDescriptor,
    input: PeekableFlightDataStream,
) -> Result<PutStream, Status> {
    let (db, stream) = target_of(descriptor)?;
    let ingest = Ingest::new(st, principal, &db, stream)?;
    let out = futures::stream::unfold(Some((ingest, decoder(input))), |state| async move {
        let (mut ingest, mut decoder) = state?;
        match next_batch(&mut ingest, &mut decoder).await {
            Ok(Some(rows)) => {
                let ack = PutResult {
                    app_metadata: format!("{{\"rows\": {rows}}}").into_bytes().into(),
                };
                Some((Ok(ack), Some((ingest, decoder))))
            }
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(Box::pin(out))
}

/// Flight SQL bulk ingest (`CommandStatementIngest`, e.g. ADBC's `adbc_ingest`): table = stream,
/// schema = database (default `default`). Modes: create (refused if the stream exists), append
/// (refused if it does not), create-or-append; replace and temporary tables are not supported.
/// Returns the number of rows written, once all of them are durable.
pub async fn ingest_statement(
    st: AppState,
    principal: Principal,
    cmd: &CommandStatementIngest,
    input: PeekableFlightDataStream,
) -> Result<i64, Status> {
    if cmd.catalog.as_deref().is_some_and(|c| c != CATALOG_NAME) {
        return Err(Status::invalid_argument(format!(
            "unknown catalog {:?}: the only catalog is '{CATALOG_NAME}'",
            cmd.catalog
        )));
    }
    if cmd.temporary || cmd.transaction_id.is_some() {
        return Err(Status::unimplemented(
            "temporary tables and transactions are not supported",
        ));
    }
    let db = cmd.schema.as_deref().unwrap_or(DEFAULT_DATABASE);
    // The caller's rights first: whether a stream exists is not told to who may not write it.
    let mut ingest = Ingest::new(st.clone(), principal, db, cmd.table.clone())?;
    check_ingest_mode(&st, cmd, db)?;
    let mut input = decoder(input);
    let mut rows = 0i64;
    while let Some(n) = next_batch(&mut ingest, &mut input).await? {
        rows = rows.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
    }
    Ok(rows)
}

/// Refuses an ingest whose table-definition options conflict with whether the stream exists.
fn check_ingest_mode(st: &AppState, cmd: &CommandStatementIngest, db: &str) -> Result<(), Status> {
    let opts = cmd.table_definition_options.unwrap_or_default();
    let exists = st.engine.streams(db).contains(&cmd.table);
    let if_exists = TableExistsOption::try_from(opts.if_exists).unwrap_or_default();
    let if_not_exist = TableNotExistOption::try_from(opts.if_not_exist).unwrap_or_default();
    let table = &cmd.table;
    match (exists, if_exists, if_not_exist) {
        (true, TableExistsOption::Fail, _) => Err(Status::already_exists(format!(
            "stream '{table}' already exists in database '{db}' (ingest with mode 'append')"
        ))),
        (true, TableExistsOption::Replace, _) => Err(Status::unimplemented(
            "mode 'replace' is not supported: Flight SQL never drops a stream; use 'append'",
        )),
        (false, _, TableNotExistOption::Fail) => Err(Status::not_found(format!(
            "stream '{table}' does not exist in database '{db}' (ingest with mode 'create')"
        ))),
        _ => Ok(()),
    }
}

/// Reads messages until one record batch is written; its row count, or `None` at the end.
async fn next_batch(
    ingest: &mut Ingest,
    decoder: &mut FlightDataDecoder,
) -> Result<Option<usize>, Status> {
    while let Some(msg) = decoder.next().await {
        let msg = msg.map_err(flight_status)?;
        match msg.payload {
            DecodedPayload::Schema(schema) => {
                ingest.layout = Some(layout(&schema).map_err(invalid)?)
            }
            DecodedPayload::RecordBatch(batch) => return ingest.write(batch).await.map(Some),
            DecodedPayload::None => {}
        }
    }
    Ok(None)
}

fn flight_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(s) => *s,
        other => Status::invalid_argument(format!("cannot decode the Arrow stream: {other}")),
    }
}

impl Ingest {
    /// Converts one batch and hands it to the pipeline; returns its row count once durable.
    async fn write(&mut self, batch: RecordBatch) -> Result<usize, Status> {
        let started = Instant::now();
        let layout = match &self.layout {
            Some(l) => l,
            None => self
                .layout
                .insert(layout(&batch.schema()).map_err(invalid)?),
        };
        let rows = batch.num_rows();
        let bytes = batch.get_array_memory_size();
        let table = to_table(layout, &self.stream, &batch).map_err(invalid)?;
        let write = WriteBatch {
            database: self.target.db.clone(),
            tables: vec![table],
        };
        submit(
            &self.st,
            "flight",
            self.target.clone(),
            bytes,
            started,
            move |_| Ok(write),
        )
        .await
        .map_err(|r| status(r.0))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_must_be_a_two_element_path() {
        let ok = FlightDescriptor::new_path(vec!["db".into(), "env".into()]);
        assert_eq!(target_of(&ok).unwrap(), ("db".into(), "env".into()));
        assert!(target_of(&FlightDescriptor::new_path(vec!["env".into()])).is_err());
        assert!(target_of(&FlightDescriptor::new_cmd(b"x".to_vec())).is_err());
    }
}
