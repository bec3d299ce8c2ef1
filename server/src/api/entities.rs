//! Entity and relationship endpoints: entities CRUD (`/api/v1/entities[/{id}]`), everything under
//! an entity (`/devices`, `/descendants`), its ancestors, and typed relationships
//! (`/api/v1/relationships`) that form the hierarchy (`contains`, `member_of`) and other links.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use strata_registry::{Descendants, Entity, EntitySpec, EntityUpdate, NodeRef, Page, Relationship};

use crate::api::{PageParams, REGISTRY_BODY_LIMIT, blocking, json_body};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use crate::write::bad_query;

/// `POST /api/v1/entities` with `{"id","kind","name","attributes"}`: `201` with the entity.
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Entity>), ApiError> {
    let spec: EntitySpec = json_body(body, REGISTRY_BODY_LIMIT)?;
    let actor = p.actor();
    let e = blocking(&st, move |r| r.create_entity(&actor, spec)).await?;
    Ok((StatusCode::CREATED, Json(e)))
}

/// `GET /api/v1/entities/{id}`.
pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Entity>, ApiError> {
    Ok(Json(st.registry.get_entity(&id)?))
}

/// `PATCH` or `PUT /api/v1/entities/{id}` with any of `kind`, `name`, `attributes`.
pub async fn update(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Entity>, ApiError> {
    let update: EntityUpdate = json_body(body, REGISTRY_BODY_LIMIT)?;
    let actor = p.actor();
    let e = blocking(&st, move |r| r.update_entity(&actor, &id, update)).await?;
    Ok(Json(e))
}

/// `DELETE /api/v1/entities/{id}`: `204`; its relationships go too (children stay).
pub async fn delete(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let actor = p.actor();
    blocking(&st, move |r| r.delete_entity(&actor, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /api/v1/entities`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListParams {
    /// Only entities of this kind.
    pub kind: Option<String>,
    /// Cursor.
    pub after: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
}

/// `GET /api/v1/entities?kind=&after=&limit=`.
pub async fn list(
    State(st): State<AppState>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<Entity>>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let page = PageParams {
        after: q.after,
        limit: q.limit,
    }
    .page();
    let kind = q.kind.filter(|k| !k.is_empty());
    let result = blocking(&st, move |r| r.list_entities(kind.as_deref(), &page)).await?;
    Ok(Json(result))
}

/// `GET /api/v1/entities/{id}/devices`: every device under the entity through the hierarchy
/// (transitive, multi-parent aware): `{"entity": id, "count": n, "devices": [ids]}`.
pub async fn devices(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let devices = st.registry.devices_under(&id)?;
    Ok(Json(
        json!({ "entity": id, "count": devices.len(), "devices": devices }),
    ))
}

/// `GET /api/v1/entities/{id}/descendants`: entities and devices under the entity.
pub async fn descendants(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Descendants>, ApiError> {
    st.registry.get_entity(&id)?;
    Ok(Json(st.registry.descendants(&NodeRef::Entity(id))?))
}

/// `GET /api/v1/entities/{id}/ancestors`: ancestor entity ids and root-first paths.
pub async fn ancestors(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    st.registry.get_entity(&id)?;
    let node = NodeRef::Entity(id.clone());
    let ancestors = st.registry.ancestors(&node)?;
    let paths = st.registry.ancestor_paths(&node)?;
    Ok(Json(
        json!({ "entity": id, "ancestors": ancestors, "paths": paths }),
    ))
}

/// `POST /api/v1/relationships` with `{"source": {"entity": "b1"}, "kind": "contains",
/// "target": {"device": "d1"}}`: `201`.
pub async fn add_relationship(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Relationship>), ApiError> {
    let rel: Relationship = json_body(body, REGISTRY_BODY_LIMIT)?;
    let actor = p.actor();
    let stored = rel.clone();
    blocking(&st, move |r| r.add_relationship(&actor, rel)).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// `DELETE /api/v1/relationships` with the relationship as the JSON body: `204`.
pub async fn remove_relationship(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let rel: Relationship = json_body(body, REGISTRY_BODY_LIMIT)?;
    let actor = p.actor();
    blocking(&st, move |r| r.remove_relationship(&actor, &rel)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /api/v1/relationships`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct RelationshipParams {
    /// Only relationships touching this entity.
    pub entity: Option<String>,
    /// Only relationships touching this device.
    pub device: Option<String>,
}

/// `GET /api/v1/relationships[?entity=ID|device=ID]`: `{"relationships": [...]}` — all of them,
/// or those touching one node.
pub async fn list_relationships(
    State(st): State<AppState>,
    q: Result<Query<RelationshipParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let node = match (q.entity, q.device) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give either 'entity' or 'device', not both".into(),
            ));
        }
        (Some(e), None) => Some(NodeRef::Entity(e)),
        (None, Some(d)) => Some(NodeRef::Device(d)),
        (None, None) => None,
    };
    let rels = blocking(&st, move |r| match node {
        Some(n) => r.relationships_of(&n),
        None => r.relationships_snapshot(),
    })
    .await?;
    Ok(Json(json!({ "relationships": rels })))
}
