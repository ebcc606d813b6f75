//! Placement groups (type `spread`, at most 10 servers): CRUD, no actions.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use chrono::Utc;
use serde_json::{Value, json};

use super::{JsonBody, ListCtx, check_name, created, labels_json, no_content, ok, parse_id, ts};
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::model::{Id, PlacementGroup};
use crate::world::World;

/// Routes of this module.
pub fn routes() -> Router<TwinState> {
    Router::new()
        .route(
            "/v1/placement_groups",
            get(placement_groups_list).post(placement_groups_create),
        )
        .route(
            "/v1/placement_groups/{id}",
            get(placement_groups_get)
                .put(placement_groups_update)
                .delete(placement_groups_delete),
        )
}

/// The API representation of a placement group.
pub fn render(w: &World, p: &PlacementGroup) -> Value {
    let servers: Vec<Id> = w
        .servers
        .values()
        .filter(|s| s.placement_group == Some(p.id))
        .map(|s| s.id)
        .collect();
    json!({
        "id": p.id, "name": p.name, "type": p.kind, "servers": servers,
        "labels": labels_json(&p.labels), "created": ts(p.created),
    })
}

/// `GET /placement_groups` (filters `name`, `label_selector`, `type`).
pub async fn placement_groups_list(
    State(st): State<TwinState>,
    ctx: ListCtx,
) -> Result<Response, ApiError> {
    let w = st.world();
    let mut items: Vec<Value> = w.placement_groups.values().map(|p| render(&w, p)).collect();
    ctx.filter_name(&mut items);
    let types = ctx.query.all("type");
    if !types.is_empty() {
        items.retain(|i| types.iter().any(|t| i["type"] == t.as_str()));
    }
    ctx.filter_labels(&w, &mut items)?;
    ctx.sort(&mut items, &["id", "name", "created"])?;
    ctx.paginate("placement_groups", items)
}

/// `GET /placement_groups/{id}`.
pub async fn placement_groups_get(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "placement_group")?;
    let w = st.world();
    let p = w
        .placement_groups
        .get(&id)
        .ok_or_else(|| ApiError::not_found("placement_group"))?;
    Ok(ok(json!({"placement_group": render(&w, p)})))
}

/// `POST /placement_groups` → `{placement_group, action: null}`.
pub async fn placement_groups_create(
    State(st): State<TwinState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let name = body.req_str("name")?;
    check_name(&name)?;
    let kind = body.req_str("type")?;
    if kind != "spread" {
        return Err(ApiError::invalid_field("type", "type must be spread"));
    }
    let labels = body.opt_labels()?.unwrap_or_default();
    st.mutate(|w| {
        if w.placement_groups.values().any(|p| p.name == name) {
            return Err(ApiError::uniqueness("name"));
        }
        let id = w.next_id();
        let p = PlacementGroup {
            id,
            name,
            kind,
            labels,
            created: Utc::now(),
        };
        let v = render(w, &p);
        w.placement_groups.insert(id, p);
        Ok(created(json!({"placement_group": v, "action": null})))
    })
}

/// `PUT /placement_groups/{id}` (name, labels).
pub async fn placement_groups_update(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "placement_group")?;
    let name = body.opt_str("name")?;
    let labels = body.opt_labels()?;
    st.mutate(|w| {
        if !w.placement_groups.contains_key(&id) {
            return Err(ApiError::not_found("placement_group"));
        }
        if let Some(n) = &name {
            check_name(n)?;
            if w.placement_groups
                .values()
                .any(|p| &p.name == n && p.id != id)
            {
                return Err(ApiError::uniqueness("name"));
            }
        }
        let p = w
            .placement_groups
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("placement_group"))?;
        if let Some(n) = name {
            p.name = n;
        }
        if let Some(l) = labels {
            p.labels = l;
        }
        let p = w
            .placement_groups
            .get(&id)
            .ok_or_else(|| ApiError::not_found("placement_group"))?;
        Ok(ok(json!({"placement_group": render(w, p)})))
    })
}

/// `DELETE /placement_groups/{id}`: 422 `resource_in_use` while it holds servers.
pub async fn placement_groups_delete(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "placement_group")?;
    st.mutate(|w| {
        if !w.placement_groups.contains_key(&id) {
            return Err(ApiError::not_found("placement_group"));
        }
        if w.servers.values().any(|s| s.placement_group == Some(id)) {
            return Err(ApiError::unprocessable(
                "resource_in_use",
                "placement group still holds servers",
            ));
        }
        w.placement_groups.remove(&id);
        Ok(no_content())
    })
}
