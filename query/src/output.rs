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
    match format {
        OutputFormat::Json => encode_json(batches),
        OutputFormat::Csv => encode_csv(schema, batches),
        OutputFormat::ArrowIpcStream => encode_ipc(schema, batches),
    }
}

fn encode_json(batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut out);
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    if out.is_empty() {
        out.extend_from_slice(b"[]");
    }
    Ok(out)
}

fn encode_csv(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        if batches.is_empty() {
            writer.write(&RecordBatch::new_empty(schema.clone()))?;
        }
        for batch in batches {
            writer.write(batch)?;
        }
    }
    Ok(out)
}

fn encode_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    Ok(out)
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
