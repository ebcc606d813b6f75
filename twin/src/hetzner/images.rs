//! Images: `GET /images`, `GET|PUT|DELETE /images/{id}`; snapshots come from `create_image` or
//! from seeding Talos snapshots through the control API.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use chrono::Utc;
use serde_json::{Value, json};

use super::{JsonBody, ListCtx, labels_json, no_content, ok, parse_id, ts};
use crate::error::ApiError;
use crate::labels::Labels;
use crate::state::{Id, Image, TwinState, World};

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

/// Maps `x86`/`amd64` → `x86` and `arm`/`arm64`/`aarch64` → `arm`.
pub fn hetzner_arch(arch: &str) -> Option<&'static str> {
    match arch {
        "x86" | "amd64" | "x86_64" => Some("x86"),
        "arm" | "arm64" | "aarch64" => Some("arm"),
        _ => None,
    }
}

/// Adds an available Talos snapshot labelled `os=talos,arch=<arch>,version=<version>` (plus
/// `extra` labels) and returns its id. `arch` is kept verbatim in the label; the image's
/// architecture is derived from it.
pub fn seed_talos(w: &mut World, arch: &str, version: &str, extra: Labels) -> Result<Id, ApiError> {
    let architecture = hetzner_arch(arch)
        .ok_or_else(|| ApiError::invalid_field("arch", "arch must be x86/amd64 or arm/arm64"))?;
    let mut labels = extra;
    labels.insert("os".into(), "talos".into());
    labels.insert("arch".into(), arch.to_string());
    labels.insert("version".into(), version.to_string());
    crate::labels::validate(&labels).map_err(|m| ApiError::invalid_field("labels", m))?;
    let id = w.next_id();
    w.images.insert(
        id,
        Image {
            id,
            kind: "snapshot",
            status: "available",
            name: None,
            description: format!("Talos Linux {version} ({arch})"),
            image_size: Some(0.2),
            disk_size: 20.0,
            created: Utc::now(),
            created_from: None,
            bound_to: None,
            os_flavor: "unknown".into(),
            os_version: None,
            architecture,
            labels,
        },
    );
    Ok(id)
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
