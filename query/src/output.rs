//! Result encoding: JSON (array of row objects), CSV with a header, Arrow IPC stream.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::QueryError;

/// How a result is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `application/json`: a JSON array of objects, one per row, nulls explicit.
    Json,
    /// `text/csv`: CSV with a header line.
    Csv,
    /// `application/vnd.apache.arrow.stream`: an Arrow IPC stream (schema, then batches).
    ArrowIpcStream,
}

impl OutputFormat {
    /// The MIME type of the encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Json => "application/json",
            OutputFormat::Csv => "text/csv",
            OutputFormat::ArrowIpcStream => "application/vnd.apache.arrow.stream",
        }
    }

    /// Picks the format from an HTTP `Accept` header: the first listed type that is supported
    /// (`*/*` and `application/*` mean JSON); `None` when nothing listed is supported.
    pub fn from_accept(accept: &str) -> Option<OutputFormat> {
        accept.split(',').find_map(|part| {
            let mime = part.split(';').next().unwrap_or("").trim();
            match mime.to_ascii_lowercase().as_str() {
                "application/json" | "*/*" | "application/*" | "" => Some(OutputFormat::Json),
                "text/csv" | "text/*" => Some(OutputFormat::Csv),
                "application/vnd.apache.arrow.stream" => Some(OutputFormat::ArrowIpcStream),
                _ => None,
            }
        })
    }
}

/// Encodes batches (all of `schema`) in `format`.
pub fn encode(
    format: OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, QueryError> {
    let mut encoder = Encoder::new(format, schema)?;
    let mut out = encoder.take_head();
    for batch in batches {
        out.extend(encoder.batch(batch)?);
    }
    out.extend(encoder.finish()?);
    Ok(out)
}

/// Encodes an answer batch by batch, so it can be sent while it is computed: the bytes of
/// [`Encoder::take_head`], then of each [`Encoder::batch`], then of [`Encoder::finish`], joined,
/// are exactly what encoding all batches at once gives.
pub struct Encoder {
    format: OutputFormat,
    schema: SchemaRef,
    /// JSON: a row was written (`[` is out); CSV: the header was written.
    started: bool,
    /// The Arrow IPC stream writer, writing into its own buffer (drained after each step).
    ipc: Option<arrow::ipc::writer::StreamWriter<Vec<u8>>>,
}

impl Encoder {
    /// An encoder of answers with `schema` in `format`.
    pub fn new(format: OutputFormat, schema: &SchemaRef) -> Result<Encoder, QueryError> {
        let ipc = match format {
            OutputFormat::ArrowIpcStream => Some(arrow::ipc::writer::StreamWriter::try_new(
                Vec::new(),
                schema,
            )?),
            OutputFormat::Json | OutputFormat::Csv => None,
        };
        Ok(Encoder {
            format,
            schema: schema.clone(),
            started: false,
            ipc,
        })
    }

    /// What precedes the first batch (the IPC schema message; nothing for JSON and CSV, whose
    /// opening comes with the first row).
    pub fn take_head(&mut self) -> Vec<u8> {
        self.ipc
            .as_mut()
            .map(|w| std::mem::take(w.get_mut()))
            .unwrap_or_default()
    }

    /// The bytes of one batch.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, QueryError> {
        match self.format {
            OutputFormat::Json => self.json(batch),
            OutputFormat::Csv => self.csv(batch),
            OutputFormat::ArrowIpcStream => self.ipc_batch(batch),
        }
    }

    /// The closing bytes (`]` of the JSON array, the CSV header of an empty answer, the IPC
    /// end-of-stream marker).
    pub fn finish(mut self) -> Result<Vec<u8>, QueryError> {
        match self.format {
            OutputFormat::Json if self.started => Ok(b"]".to_vec()),
            OutputFormat::Json => Ok(b"[]".to_vec()),
            OutputFormat::Csv if self.started => Ok(Vec::new()),
            OutputFormat::Csv => self.csv(&RecordBatch::new_empty(self.schema.clone())),
            OutputFormat::ArrowIpcStream => match self.ipc.take() {
                Some(mut w) => {
                    w.finish()?;
                    Ok(w.into_inner()?)
                }
                None => Ok(Vec::new()),
            },
        }
    }

    /// Rows as `[{...},{...}` (first batch) or `,{...},{...}`: the array writer's output without
    /// its brackets, so batches join into one array.
    fn json(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, QueryError> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let mut one = Vec::new();
        {
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut one);
            writer.write(batch)?;
            writer.finish()?;
        }
        let rows = one
            .strip_prefix(b"[")
            .and_then(|r| r.strip_suffix(b"]"))
            .ok_or_else(|| QueryError::Encoding("the JSON writer did not write an array".into()))?;
        let mut out = Vec::with_capacity(rows.len() + 1);
        out.push(if self.started { b',' } else { b'[' });
        out.extend_from_slice(rows);
        self.started = true;
        Ok(out)
    }

    fn csv(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, QueryError> {
        if batch.num_rows() == 0 && self.started {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(!self.started)
                .build(&mut out);
            writer.write(batch)?;
        }
        self.started = true;
        Ok(out)
    }

    fn ipc_batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, QueryError> {
        match self.ipc.as_mut() {
            Some(w) => {
                w.write(batch)?;
                Ok(std::mem::take(w.get_mut()))
            }
            None => Err(QueryError::Encoding("the IPC stream was finished".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_picks_the_first_supported_type() {
        assert_eq!(
            OutputFormat::from_accept("text/csv"),
            Some(OutputFormat::Csv)
        );
        assert_eq!(
            OutputFormat::from_accept("text/html, application/vnd.apache.arrow.stream;q=0.9"),
            Some(OutputFormat::ArrowIpcStream)
        );
        assert_eq!(OutputFormat::from_accept("*/*"), Some(OutputFormat::Json));
        assert_eq!(OutputFormat::from_accept(""), Some(OutputFormat::Json));
        assert_eq!(OutputFormat::from_accept("image/png"), None);
    }
}
