//! Read-only catalogue endpoints: locations, server types, load balancer types, and the removed
//! datacenters endpoints (410).

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::{ListCtx, ok};
use crate::catalog::{LOAD_BALANCER_TYPES, LOCATIONS, SERVER_TYPES};
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::model::Id;

/// Routes of this module.
pub fn routes() -> Router<TwinState> {
    Router::new()
        .route("/v1/locations", get(locations_list))
        .route("/v1/locations/{id}", get(locations_get))
        .route("/v1/datacenters", get(datacenters_gone))
        .route("/v1/datacenters/{id}", get(datacenters_gone))
        .route("/v1/server_types", get(server_types_list))
        .route("/v1/server_types/{id}", get(server_types_get))
        .route("/v1/load_balancer_types", get(load_balancer_types_list))
        .route("/v1/load_balancer_types/{id}", get(load_balancer_types_get))
}

fn list(
    ctx: &ListCtx,
    key: &str,
    mut items: Vec<Value>,
    sortable: &[&str],
) -> Result<Response, ApiError> {
    ctx.filter_name(&mut items);
    ctx.sort(&mut items, sortable)?;
    ctx.paginate(key, items)
}

/// One catalog entry by id; `kind` (`location`, `server_type`, ...) names it in `not_found`.
fn one(key: &str, kind: &str, id: &str, items: Vec<Value>) -> Result<Response, ApiError> {
    let id: Id = id.parse().map_err(|_| ApiError::not_found(kind))?;
    items
        .into_iter()
        .find(|i| i["id"] == id)
        .map(|i| ok(json!({ key: i })))
        .ok_or_else(|| ApiError::not_found(kind))
}

/// `GET /locations`.
pub async fn locations_list(ctx: ListCtx) -> Result<Response, ApiError> {
    list(
        &ctx,
        "locations",
        LOCATIONS.iter().map(|l| l.to_json()).collect(),
        &["id", "name"],
    )
}

/// `GET /locations/{id}`.
pub async fn locations_get(Path(id): Path<String>) -> Result<Response, ApiError> {
    one(
        "location",
        "location",
        &id,
        LOCATIONS.iter().map(|l| l.to_json()).collect(),
    )
}

/// `GET /datacenters` and `GET /datacenters/{id}`: removed after 2026-10-01 (changelog
/// 2026-06-02 `datacenters-deprecated`), 410 `deprecated_api_endpoint` since.
pub async fn datacenters_gone() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "deprecated_api_endpoint",
        "this endpoint was deprecated and has been removed; use /locations and server_types[].locations[] instead",
    )
}

/// `GET /server_types`.
pub async fn server_types_list(ctx: ListCtx) -> Result<Response, ApiError> {
    list(
        &ctx,
        "server_types",
        SERVER_TYPES.iter().map(|t| t.to_json()).collect(),
        &["id", "name"],
    )
}

/// `GET /server_types/{id}`.
pub async fn server_types_get(Path(id): Path<String>) -> Result<Response, ApiError> {
    one(
        "server_type",
        "server_type",
        &id,
        SERVER_TYPES.iter().map(|t| t.to_json()).collect(),
    )
}

/// `GET /load_balancer_types`.
pub async fn load_balancer_types_list(ctx: ListCtx) -> Result<Response, ApiError> {
    list(
        &ctx,
        "load_balancer_types",
        LOAD_BALANCER_TYPES.iter().map(|t| t.to_json()).collect(),
        &["id", "name"],
    )
}

/// `GET /load_balancer_types/{id}`.
pub async fn load_balancer_types_get(Path(id): Path<String>) -> Result<Response, ApiError> {
    one(
        "load_balancer_type",
        "load_balancer_type",
        &id,
        LOAD_BALANCER_TYPES.iter().map(|t| t.to_json()).collect(),
    )
}
