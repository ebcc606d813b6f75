//! Actions: `GET /actions?id=..`, `GET /actions/{id}` and, per resource type,
//! `GET /{res}/actions`, `GET /{res}/actions/{id}`, `GET /{res}/{id}/actions`,
//! `GET /{res}/{id}/actions/{action_id}`.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::{ListCtx, action_json, ok, parse_id};
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::model::{Action, Id};
use crate::world::World;

/// Resource collections with action endpoints, with the `type` their actions carry.
pub const RESOURCES: &[(&str, &str)] = &[
    ("servers", "server"),
    ("images", "image"),
    ("networks", "network"),
    ("firewalls", "firewall"),
    ("load_balancers", "load_balancer"),
    ("volumes", "volume"),
];

const SORTABLE: &[&str] = &["id", "command", "status", "started", "finished", "progress"];

/// Routes of this module.
pub fn routes() -> Router<TwinState> {
    let mut r = Router::new()
        .route("/v1/actions", get(actions_list))
        .route("/v1/actions/{id}", get(actions_get));
    for (res, kind) in RESOURCES {
        let kind: &'static str = kind;
        let res: &'static str = res;
        r = r
            .route(
                &format!("/v1/{res}/actions"),
                get(move |st: State<TwinState>, ctx: ListCtx| resource_actions_list(st, ctx, kind)),
            )
            .route(
                &format!("/v1/{res}/actions/{{id}}"),
                get(move |st: State<TwinState>, p: Path<String>| resource_actions_get(st, p, kind)),
            )
            .route(
                &format!("/v1/{res}/{{id}}/actions"),
                get(move |st: State<TwinState>, p: Path<String>, ctx: ListCtx| {
                    resource_actions_of(st, p, ctx, kind)
                }),
            )
            .route(
                &format!("/v1/{res}/{{id}}/actions/{{action_id}}"),
                get(move |st: State<TwinState>, p: Path<(String, String)>| {
                    resource_action_of(st, p, kind)
                }),
            );
    }
    r
}

fn concerns(a: &Action, kind: &str, id: Option<Id>) -> bool {
    a.resources
        .iter()
        .any(|(rid, t)| *t == kind && id.is_none_or(|x| x == *rid))
}

fn resource_exists(w: &World, kind: &str, id: Id) -> bool {
    match kind {
        "server" => w.servers.contains_key(&id),
        "image" => w.images.contains_key(&id),
        "network" => w.networks.contains_key(&id),
        "firewall" => w.firewalls.contains_key(&id),
        "load_balancer" => w.load_balancers.contains_key(&id),
        "volume" => w.volumes.contains_key(&id),
        _ => false,
    }
}

fn list(ctx: &ListCtx, mut items: Vec<Value>) -> Result<Response, ApiError> {
    let ids = ctx.query.all("id");
    if !ids.is_empty() {
        items.retain(|a| {
            ids.iter()
                .any(|i| a["id"].as_i64().is_some_and(|x| i.parse() == Ok(x)))
        });
    }
    let statuses = ctx.query.all("status");
    if !statuses.is_empty() {
        items.retain(|a| statuses.iter().any(|s| a["status"] == s.as_str()));
    }
    ctx.sort(&mut items, SORTABLE)?;
    ctx.paginate("actions", items)
}

/// `GET /actions?id=1&id=2` (`id` is required since 2025-01-30; unknown ids are left out).
pub async fn actions_list(State(st): State<TwinState>, ctx: ListCtx) -> Result<Response, ApiError> {
    let ids = ctx.query.all("id");
    if ids.is_empty() {
        return Err(ApiError::invalid_field(
            "id",
            "Missing data for required field.",
        ));
    }
    for i in &ids {
        i.parse::<Id>()
            .map_err(|_| ApiError::invalid_field("id", format!("'{i}' is not a valid id")))?;
    }
    let w = st.world();
    let items: Vec<Value> = w.actions.values().map(action_json).collect();
    drop(w);
    list(&ctx, items)
}

/// `GET /actions/{id}`.
pub async fn actions_get(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "action")?;
    let w = st.world();
    let a = w
        .actions
        .get(&id)
        .ok_or_else(|| ApiError::not_found("action"))?;
    Ok(ok(json!({"action": action_json(a)})))
}

/// `GET /{res}/actions`.
pub async fn resource_actions_list(
    State(st): State<TwinState>,
    ctx: ListCtx,
    kind: &'static str,
) -> Result<Response, ApiError> {
    let items: Vec<Value> = {
        let w = st.world();
        w.actions
            .values()
            .filter(|a| concerns(a, kind, None))
            .map(action_json)
            .collect()
    };
    list(&ctx, items)
}

/// `GET /{res}/actions/{id}`.
pub async fn resource_actions_get(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    kind: &'static str,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "action")?;
    let w = st.world();
    let a = w
        .actions
        .get(&id)
        .filter(|a| concerns(a, kind, None))
        .ok_or_else(|| ApiError::not_found("action"))?;
    Ok(ok(json!({"action": action_json(a)})))
}

/// `GET /{res}/{id}/actions`.
pub async fn resource_actions_of(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    ctx: ListCtx,
    kind: &'static str,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, kind)?;
    let items: Vec<Value> = {
        let w = st.world();
        if !resource_exists(&w, kind, id) {
            return Err(ApiError::not_found(kind));
        }
        w.actions
            .values()
            .filter(|a| concerns(a, kind, Some(id)))
            .map(action_json)
            .collect()
    };
    list(&ctx, items)
}

/// `GET /{res}/{id}/actions/{action_id}`.
pub async fn resource_action_of(
    State(st): State<TwinState>,
    Path((id, action)): Path<(String, String)>,
    kind: &'static str,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, kind)?;
    let action = parse_id(&action, "action")?;
    let w = st.world();
    let a = w
        .actions
        .get(&action)
        .filter(|a| concerns(a, kind, Some(id)))
        .ok_or_else(|| ApiError::not_found("action"))?;
    Ok(ok(json!({"action": action_json(a)})))
}
