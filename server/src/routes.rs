//! The HTTP router: every endpoint, the body-size limit on write routes and the metrics middleware.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use crate::state::AppState;
use crate::{admin, metrics, read, write};

/// Builds the router with all endpoints.
pub fn router(state: AppState) -> Router {
    let writes = Router::new()
        .route("/api/v1/write", post(write::write_db))
        .route("/write", post(write::write_db))
        .route("/api/v2/write", post(write::write_v2))
        .layer(DefaultBodyLimit::max(state.max_body));
    Router::new()
        .merge(writes)
        .route("/api/v1/read", get(read::read))
        .route("/api/v1/flush", post(admin::flush))
        .route("/api/v1/compact", post(admin::compact))
        .route("/api/v1/databases", get(admin::databases))
        .route("/api/v1/streams", get(admin::streams))
        .route("/health", get(admin::health))
        .route("/ping", get(admin::ping).head(admin::ping))
        .route("/metrics", get(admin::metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(admin::not_found)
        .with_state(state)
}
