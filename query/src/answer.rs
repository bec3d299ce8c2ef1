//! Answers that stream. A result is encoded batch by batch while it is computed: small answers
//! are returned whole (so their errors still map to a status before anything is sent), larger
//! ones as the bytes so far plus a stream of the rest. The server never holds a whole large
//! answer: memory is bounded by the query's pool and a few batches in flight, whatever the size
//! of the result (`SELECT *` over months of a fleet streams).
//!
//! A streamed answer has no total timeout (a slow reader is not the query's fault); instead each
//! batch must be computed within the query timeout of the previous one. An error after the first
//! bytes were sent ends the stream with that error, which a transport reports as an aborted
//! response (HTTP: the chunked body is cut without its final chunk; Flight: an error status).

use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::output::{Encoder, OutputFormat};
use crate::{QueryEngine, QueryError};

/// An encoded answer.
pub enum Answer {
    /// The whole answer (it fit in the size asked for).
    Whole {
        /// MIME type of the encoding.
        content_type: &'static str,
        /// The encoded answer.
        bytes: Vec<u8>,
    },
    /// The first part of the answer and a stream of the rest, in order.
    Streaming {
        /// MIME type of the encoding.
        content_type: &'static str,
        /// The bytes encoded so far.
        head: Vec<u8>,
        /// The remaining bytes, a chunk per batch; an error ends it.
        rest: BoxStream<'static, Result<Vec<u8>, QueryError>>,
    },
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Whole { bytes, .. } => write!(f, "Answer::Whole({} bytes)", bytes.len()),
            Answer::Streaming { head, .. } => {
                write!(f, "Answer::Streaming({} bytes so far)", head.len())
            }
        }
    }
}

impl QueryEngine {
    /// Runs `sql` and encodes its answer in `format`: whole when it encodes to at most
    /// `whole_up_to` bytes, else streaming (see the module documentation). Planning and the
    /// batches up to `whole_up_to` run under the query timeout.
    pub async fn answer(
        &self,
        sql: &str,
        format: OutputFormat,
        whole_up_to: usize,
    ) -> Result<Answer, QueryError> {
        let content_type = format.content_type();
        let (head, more) = self
            .with_timeout(async {
                let mut stream = self.stream(sql).await?;
                let mut encoder = Encoder::new(format, &stream.schema())?;
                let mut head = encoder.take_head();
                while let Some(batch) = stream.next().await {
                    head.extend(encoder.batch(&batch?)?);
                    if head.len() > whole_up_to {
                        return Ok((head, Some((stream, encoder))));
                    }
                }
                head.extend(encoder.finish()?);
                Ok((head, None))
            })
            .await?;
        Ok(match more {
            None => Answer::Whole {
                content_type,
                bytes: head,
            },
            Some((stream, encoder)) => Answer::Streaming {
                content_type,
                head,
                rest: encoded_rest(paced(stream, self.config.timeout), encoder),
            },
        })
    }

    /// `sql`'s batches as they are computed, each within the query timeout of the previous one;
    /// planning errors are returned here, execution errors end the stream.
    pub async fn stream_paced(&self, sql: &str) -> Result<SendableRecordBatchStream, QueryError> {
        let stream = self.with_timeout(self.stream(sql)).await?;
        Ok(paced(stream, self.config.timeout))
    }

    /// [`QueryEngine::stream_paced`] for a plan from [`QueryEngine::logical_plan`] (parameters
    /// bound).
    pub async fn stream_logical(
        &self,
        plan: LogicalPlan,
    ) -> Result<SendableRecordBatchStream, QueryError> {
        let stream = self
            .with_timeout(async {
                let physical = self.ctx.state().create_physical_plan(&plan).await?;
                Ok(execute_stream(physical, self.task_ctx())?)
            })
            .await?;
        Ok(paced(stream, self.config.timeout))
    }
}

/// The rest of an answer: each batch of `stream` (already [`paced`]) encoded as it arrives, then
/// the closing bytes.
fn encoded_rest(
    stream: SendableRecordBatchStream,
    encoder: Encoder,
) -> BoxStream<'static, Result<Vec<u8>, QueryError>> {
    futures::stream::unfold(Some((stream, encoder)), |state| async move {
        let (mut stream, mut encoder) = state?;
        loop {
            match stream.next().await {
                None => return Some((encoder.finish(), None)),
                Some(Err(e)) => return Some((Err(e.into()), None)),
                Some(Ok(batch)) => match encoder.batch(&batch) {
                    Ok(bytes) if bytes.is_empty() => continue,
                    Ok(bytes) => return Some((Ok(bytes), Some((stream, encoder)))),
                    Err(e) => return Some((Err(e), None)),
                },
            }
        }
    })
    .boxed()
}

/// `stream` with each batch due within `stall` of the previous one; a late batch ends the stream
/// with a timeout error.
fn paced(stream: SendableRecordBatchStream, stall: Duration) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let batches = futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(stall, stream.next()).await {
            // A timeout, not an execution failure: `QueryError::from` finds it in the chain.
            Err(_) => Some((
                Err(DataFusionError::External(Box::new(QueryError::Timeout(
                    stall,
                )))),
                None,
            )),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some((Err(e), None)),
            Ok(Some(Ok(batch))) => Some((Ok(batch), Some(stream))),
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}
