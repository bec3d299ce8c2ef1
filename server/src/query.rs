//! `POST /api/v1/query`: SQL over HTTP. The body is the SQL text, or `{"sql": "..."}` with
//! `Content-Type: application/json`; the `Accept` header picks JSON rows, CSV or an Arrow IPC
//! stream. Planner errors are 400 with the planner's message. An answer that encodes to more than
//! [`WHOLE_UP_TO`] bytes streams (chunked transfer encoding) as it is computed, so no answer size
//! can exhaust the server; an error after the first bytes cuts the response short (no final
//! chunk), which HTTP clients report as an incomplete transfer.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use strata_query::{Answer, OutputFormat, QueryError};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// JSON request body.
#[derive(Debug, serde::Deserialize)]
struct SqlBody {
    sql: String,
}

/// `POST /api/v1/query`.
pub async fn query(
    State(st): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    refuse_limited_tokens(&principal)?;
    let sql = sql_text(&headers, &body)?;
    let format = output_format(&headers)?;
    let answer = st
        .query
        .answer(&sql, format, WHOLE_UP_TO)
        .await
        .map_err(query_error)?;
    Ok(match answer {
        Answer::Whole {
            content_type,
            bytes,
        } => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, content_type)],
            bytes,
        )
            .into_response(),
        Answer::Streaming {
            content_type,
            head,
            rest,
        } => {
            let rest = rest.map(|chunk| {
                chunk.map(Bytes::from).map_err(|e| {
                    tracing::warn!(error = %e, "a streamed query answer failed; response cut short");
                    std::io::Error::other(e)
                })
            });
            let body = Body::from_stream(
                futures::stream::once(async { Ok(Bytes::from(head)) }).chain(rest),
            );
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
    })
}

/// Answers up to this many encoded bytes are sent whole (with a `Content-Length`, and an error
/// status if anything fails); larger ones stream.
pub const WHOLE_UP_TO: usize = 1 << 20;

/// Tokens limited to named streams cannot run SQL, which may name any table (HTTP and Flight SQL).
pub fn refuse_limited_tokens(principal: &Principal) -> Result<(), ApiError> {
    match principal {
        Principal::Token(t) if t.streams.is_some() => Err(ApiError::Forbidden(
            "this token is limited to named streams; SQL needs a token with read scope on all streams".into(),
        )),
        Principal::Device(_) => Err(ApiError::Forbidden("devices cannot run SQL queries".into())),
        Principal::Token(_) => Ok(()),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The SQL text from a plain or JSON body.
fn sql_text(headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    let sql = if is_json(headers) {
        serde_json::from_slice::<SqlBody>(body)
            .map_err(|e| ApiError::BadRequest(format!("expected {{\"sql\": \"...\"}}: {e}")))?
            .sql
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::BadRequest("the SQL text is not valid UTF-8".into()))?
    };
    if sql.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "empty query: send the SQL as the request body".into(),
        ));
    }
    Ok(sql)
}

/// JSON unless `Accept` names CSV or Arrow IPC; an `Accept` naming none of them is a 400.
fn output_format(headers: &HeaderMap) -> Result<OutputFormat, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    OutputFormat::from_accept(accept).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "cannot produce '{accept}': Accept application/json, text/csv or application/vnd.apache.arrow.stream"
        ))
    })
}

/// Maps a query failure to an API error: SQL errors are the client's (400), limits 503.
pub fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::Sql(m) => ApiError::BadRequest(m),
        QueryError::Timeout(_) | QueryError::ResourcesExhausted(_) => {
            ApiError::Unavailable(e.to_string())
        }
        QueryError::Storage { kind, message } => ApiError::StorageKind { kind, message },
        QueryError::Execution(_) | QueryError::Encoding(_) => ApiError::Internal(e.to_string()),
    }
}
