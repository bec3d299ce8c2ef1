//! `GET /api/v1/audit?after=SEQ&limit=N` (admin only): the persisted audit log of administrative
//! actions (actor, action, target, time, result), oldest first, with cursor pagination.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use strata_registry::{AuditRecord, Page};

use crate::api::{PageParams, blocking};
use crate::error::ApiError;
use crate::state::AppState;
use crate::write::bad_query;

/// `GET /api/v1/audit`.
pub async fn list(
    State(st): State<AppState>,
    q: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Page<AuditRecord>>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let page = q.page();
    Ok(Json(blocking(&st, move |r| r.list_audit(&page)).await?))
}
