//! Images: `GET /images`, `GET|PUT|DELETE /images/{id}`; snapshots come from `create_image` or
//! from seeding Talos snapshots through the control API.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::{JsonBody, ListCtx, labels_json, no_content, ok, parse_id, ts};
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::model::Image;

/// Routes of this module.
pub fn routes() -> Router<TwinState> {
    Router::new().route("/v1/images", get(images_list)).route(
        "/v1/images/{id}",
        get(images_get).put(images_update).delete(images_delete),
    )
}

/// The API representation of an image.
pub fn render(i: &Image) -> Value {
    json!({
        "id": i.id,
        "type": i.kind,
        "status": i.status,
        "name": i.name,
        "description": i.description,
        "image_size": i.image_size,
        "disk_size": i.disk_size,
        "created": ts(i.created),
        "created_from": i.created_from.as_ref().map(|(id, n)| json!({"id": id, "name": n})),
        "bound_to": i.bound_to,
        "os_flavor": i.os_flavor,
        "os_version": i.os_version,
        "rapid_deploy": false,
        "protection": {"delete": false},
        "deprecated": null,
        "deleted": null,
        "labels": labels_json(&i.labels),
        "architecture": i.architecture,
    })
}

/// `GET /images` (filters `type`, `status`, `bound_to`, `name`, `label_selector`,
/// `architecture`, `include_deprecated`; sort id, name, created).
pub async fn images_list(State(st): State<TwinState>, ctx: ListCtx) -> Result<Response, ApiError> {
    let w = st.world();
    let mut items: Vec<Value> = w.images.values().map(render).collect();
    ctx.filter_name(&mut items);
    for (key, field) in [("type", "type"), ("status", "status")] {
        let wanted = ctx.query.all(key);
        if !wanted.is_empty() {
            items.retain(|i| wanted.iter().any(|v| i[field] == v.as_str()));
        }
    }
    let bound = ctx.query.all("bound_to");
    if !bound.is_empty() {
        items.retain(|i| {
            bound
                .iter()
                .any(|b| i["bound_to"].as_i64().is_some_and(|x| b.parse() == Ok(x)))
        });
    }
    if let Some(a) = ctx.query.get("architecture") {
        if a != "x86" && a != "arm" {
            return Err(ApiError::invalid_field(
                "architecture",
                "architecture must be x86 or arm",
            ));
        }
        items.retain(|i| i["architecture"] == a);
    }
    ctx.filter_labels(&w, &mut items)?;
    ctx.sort(&mut items, &["id", "name", "created"])?;
    ctx.paginate("images", items)
}

/// `GET /images/{id}`.
pub async fn images_get(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "image")?;
    let w = st.world();
    let i = w
        .images
        .get(&id)
        .ok_or_else(|| ApiError::not_found("image"))?;
    Ok(ok(json!({"image": render(i)})))
}

/// `PUT /images/{id}` (description, labels, `type: snapshot` converts a backup).
pub async fn images_update(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "image")?;
    let description = body.opt_str("description")?;
    let labels = body.opt_labels()?;
    let kind = body.opt_str("type")?;
    if kind.as_deref().is_some_and(|k| k != "snapshot") {
        return Err(ApiError::invalid_field(
            "type",
            "type can only be changed to snapshot",
        ));
    }
    st.mutate(|w| {
        let i = w
            .images
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("image"))?;
        if i.kind == "system" {
            return Err(ApiError::forbidden("system images cannot be changed"));
        }
        if let Some(d) = description {
            i.description = d;
        }
        if let Some(l) = labels {
            i.labels = l;
        }
        if kind.is_some() {
            i.kind = "snapshot";
            i.bound_to = None;
        }
        Ok(ok(json!({"image": render(i)})))
    })
}

/// `DELETE /images/{id}` (snapshots and backups only).
pub async fn images_delete(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "image")?;
    st.mutate(|w| {
        let i = w
            .images
            .get(&id)
            .ok_or_else(|| ApiError::not_found("image"))?;
        if i.kind == "system" {
            return Err(ApiError::forbidden("system images cannot be deleted"));
        }
        w.images.remove(&id);
        Ok(no_content())
    })
}
