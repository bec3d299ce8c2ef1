//! The HTTP router: every endpoint, the body-size limits (`--max-body-mb` for writes and bulk
//! registration, 1 MiB for other registry calls), authentication ([`auth::enforce`]) and the
//! metrics middleware (outermost, so refused requests are counted too).

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use crate::api::{self, REGISTRY_BODY_LIMIT};
use crate::state::AppState;
use crate::{admin, auth, lifecycle, metrics, query, read, write};

/// Builds the router with all endpoints.
pub fn router(state: AppState) -> Router {
    let large_bodies = Router::new()
        .route("/api/v1/write", post(write::write_db))
        .route("/write", post(write::write_db))
        .route("/api/v2/write", post(write::write_v2))
        .route(
            "/api/v1/devices/{id}/telemetry/{stream}",
            post(api::telemetry::telemetry),
        )
        .route("/api/v1/devices/bulk", post(api::bulk::bulk))
        .layer(DefaultBodyLimit::max(state.max_body));
    Router::new()
        .merge(large_bodies)
        .merge(registry_routes())
        .route("/api/v1/read", get(read::read))
        .route("/api/v1/query", post(query::query))
        .route("/api/v1/flush", post(admin::flush))
        .route("/api/v1/compact", post(admin::compact))
        .route("/api/v1/databases", get(admin::databases))
        .route("/api/v1/streams", get(admin::streams))
        .route(
            "/api/v1/databases/{db}/lifecycle",
            get(lifecycle::get)
                .put(lifecycle::put)
                .delete(lifecycle::delete),
        )
        .route("/api/v1/lifecycle/run", post(lifecycle::run))
        .route("/health", get(admin::health))
        .route("/api/v1/health", get(admin::health_detail))
        .route("/ping", get(admin::ping).head(admin::ping))
        .route("/metrics", get(admin::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::enforce))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track::<AppState>,
        ))
        // The web console's static assets are public; what they call passes the auth layer.
        .merge(crate::console::router())
        .fallback(admin::not_found)
        .with_state(state)
}

/// The device plane: cloud-to-device commands, twins, direct methods and provisioning
/// (`docs/devices.md`).
fn device_plane_routes() -> Router<AppState> {
    use api::{commands, enrollments, methods, twins};
    use axum::routing::patch;
    Router::new()
        .route(
            "/api/v1/devices/{id}/commands",
            get(commands::list).post(commands::create),
        )
        .route("/api/v1/commands", post(commands::create_bulk))
        .route("/api/v1/devices/{id}/commands/next", get(commands::next))
        .route(
            "/api/v1/devices/{id}/commands/{cid}",
            get(commands::get).delete(commands::cancel),
        )
        .route(
            "/api/v1/devices/{id}/commands/{cid}/ack",
            post(commands::ack),
        )
        .route("/api/v1/devices/{id}/twin", get(twins::get))
        .route(
            "/api/v1/devices/{id}/twin/desired",
            patch(twins::patch_desired),
        )
        .route(
            "/api/v1/devices/{id}/twin/reported",
            patch(twins::patch_reported),
        )
        .route("/api/v1/devices/{id}/methods/{name}", post(methods::call))
        .route(
            "/api/v1/enrollments",
            get(enrollments::list).post(enrollments::create),
        )
        .route(
            "/api/v1/enrollments/{id}",
            get(enrollments::get).delete(enrollments::delete),
        )
        .route(
            "/api/v1/enrollments/{id}/disable",
            post(enrollments::disable),
        )
        .route("/api/v1/enrollments/{id}/enable", post(enrollments::enable))
        .route(
            "/api/v1/provision/{enrollment}",
            post(enrollments::provision),
        )
}

/// Devices, entities, relationships, models, tokens, the audit log and rules.
fn registry_routes() -> Router<AppState> {
    use api::{audit, devices, entities, models, rules, tokens};
    Router::new()
        .route("/api/v1/devices", get(devices::list).post(devices::create))
        .route(
            "/api/v1/devices/{id}",
            get(devices::get)
                .patch(devices::patch)
                .put(devices::put)
                .delete(devices::delete),
        )
        .route(
            "/api/v1/devices/{id}/data",
            axum::routing::delete(api::erase::erase),
        )
        .route("/api/v1/devices/{id}/disable", post(devices::disable))
        .route("/api/v1/devices/{id}/enable", post(devices::enable))
        .route(
            "/api/v1/devices/{id}/certificate",
            post(crate::tls::issue::issue),
        )
        .route(
            "/api/v1/devices/{id}/rotate-keys",
            post(devices::rotate_keys),
        )
        .route(
            "/api/v1/entities",
            get(entities::list).post(entities::create),
        )
        .route(
            "/api/v1/entities/{id}",
            get(entities::get)
                .patch(entities::update)
                .put(entities::update)
                .delete(entities::delete),
        )
        .route("/api/v1/entities/{id}/devices", get(entities::devices))
        .route(
            "/api/v1/entities/{id}/descendants",
            get(entities::descendants),
        )
        .route("/api/v1/entities/{id}/ancestors", get(entities::ancestors))
        .route(
            "/api/v1/relationships",
            get(entities::list_relationships)
                .post(entities::add_relationship)
                .delete(entities::remove_relationship),
        )
        .route("/api/v1/models", get(models::list).post(models::create))
        .route(
            "/api/v1/models/{id}",
            get(models::get).put(models::put).delete(models::delete),
        )
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route(
            "/api/v1/tokens/{id}",
            get(tokens::get).delete(tokens::revoke),
        )
        .route("/api/v1/audit", get(audit::list))
        .merge(device_plane_routes())
        .route("/api/v1/rules", get(rules::list).post(rules::create))
        .route(
            "/api/v1/rules/{name}",
            get(rules::get).put(rules::put).delete(rules::delete),
        )
        .route("/api/v1/rules/{name}/enable", post(rules::enable))
        .route("/api/v1/rules/{name}/disable", post(rules::disable))
        .route("/api/v1/rules/{name}/outbox", get(rules::outbox))
        .route("/api/v1/rules/{name}/dry-run", post(rules::dry_run))
        .route("/api/v1/rules/{name}/replay", post(rules::replay))
        .route("/api/v1/backup", post(api::backup::create))
        .route(
            "/api/v1/backup/{id}",
            get(api::backup::status).delete(api::backup::release),
        )
        .route("/api/v1/backup/{id}/files/{*path}", get(api::backup::file))
        .layer(DefaultBodyLimit::max(REGISTRY_BODY_LIMIT))
}
