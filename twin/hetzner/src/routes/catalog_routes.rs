//! Read-only catalogue endpoints: locations, datacenters, server types, load balancer types.

use axum::Router;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::{ListCtx, ok, parse_id};
use crate::catalog::{LOAD_BALANCER_TYPES, LOCATIONS, SERVER_TYPES};
use crate::error::ApiError;
use crate::handle::TwinState;

/// Routes of this module.
pub fn routes() -> Router<TwinState> {
    Router::new()
        .route("/v1/locations", get(locations_list))
        .route("/v1/locations/{id}", get(locations_get))
        .route("/v1/datacenters", get(datacenters_list))
        .route("/v1/datacenters/{id}", get(datacenters_get))
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

fn one(key: &str, kind: &str, id: &str, items: Vec<Value>) -> Result<Response, ApiError> {
    let id = parse_id(id, kind)?;
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

/// `GET /datacenters`.
pub async fn datacenters_list(ctx: ListCtx) -> Result<Response, ApiError> {
    let mut items: Vec<Value> = LOCATIONS.iter().map(|l| l.datacenter_json()).collect();
    ctx.filter_name(&mut items);
    ctx.sort(&mut items, &["id", "name"])?;
    let mut extra = serde_json::Map::new();
    extra.insert("recommendation".into(), json!(LOCATIONS[0].datacenter_id));
    ctx.paginate_with("datacenters", items, extra)
}

/// `GET /datacenters/{id}`.
pub async fn datacenters_get(Path(id): Path<String>) -> Result<Response, ApiError> {
    one(
        "datacenter",
        "datacenter",
        &id,
        LOCATIONS.iter().map(|l| l.datacenter_json()).collect(),
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
