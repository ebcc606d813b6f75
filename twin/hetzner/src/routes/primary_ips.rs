//! Primary IPs: the public IPv4 and IPv6 a server gets at creation are Primary IPs (created
//! with the server, `auto_delete: true`, deleted with it), listed by `GET /primary_ips` and
//! `GET /primary_ips/{id}`, whose ids are the `public_net.ipv4.id` / `ipv6.id` of the server.
//! No `datacenter` (removed 2026-07-01, changelog `removing-datacenters`).

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::{ListCtx, labels_json, ok, ts};
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::model::{Id, Server};
use crate::world::World;

/// Routes of this module.
pub fn routes() -> Router<TwinState> {
    Router::new()
        .route("/v1/primary_ips", get(primary_ips_list))
        .route("/v1/primary_ips/{id}", get(primary_ips_get))
}

/// The API representation of one of server `s`'s Primary IPs (`ipv4` or `ipv6`).
fn render(s: &Server, id: Id, ip_type: &str, ip: String, dns_ptr: Value) -> Value {
    json!({
        "id": id,
        "name": format!("primary_ip-{id}"),
        "labels": labels_json(&Default::default()),
        "created": ts(s.created),
        "blocked": false,
        "location": s.location.to_json(),
        "ip": ip,
        "dns_ptr": dns_ptr,
        "protection": {"delete": false},
        "type": ip_type,
        "auto_delete": true,
        "assignee_type": "server",
        "assignee_id": s.id,
    })
}

/// Every Primary IP of the world, by id.
fn all(w: &World) -> Vec<Value> {
    let mut out = Vec::new();
    for s in w.servers.values() {
        if let (Some(id), Some(ip)) = (s.primary_ipv4, s.public_ipv4) {
            let ptr = json!([{"ip": ip.to_string(), "dns_ptr": format!("static.{ip}.clients.your-server.de")}]);
            out.push(render(s, id, "ipv4", ip.to_string(), ptr));
        }
        if let (Some(id), Some(ip)) = (s.primary_ipv6, s.public_ipv6.clone()) {
            out.push(render(s, id, "ipv6", ip, json!([])));
        }
    }
    out
}

/// `GET /primary_ips` (filters `name`, `ip`, `label_selector`; sort id, name, created).
pub async fn primary_ips_list(
    State(st): State<TwinState>,
    ctx: ListCtx,
) -> Result<Response, ApiError> {
    let w = st.world();
    let mut items = all(&w);
    ctx.filter_name(&mut items);
    if let Some(ip) = ctx.query.get("ip") {
        items.retain(|i| i["ip"] == ip);
    }
    ctx.filter_labels(&w, &mut items)?;
    ctx.sort(&mut items, &["id", "name", "created"])?;
    ctx.paginate("primary_ips", items)
}

/// `GET /primary_ips/{id}`.
pub async fn primary_ips_get(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: Id = id.parse().map_err(|_| ApiError::not_found("primary_ip"))?;
    let w = st.world();
    all(&w)
        .into_iter()
        .find(|i| i["id"] == id)
        .map(|i| ok(json!({"primary_ip": i})))
        .ok_or_else(|| ApiError::not_found("primary_ip"))
}
