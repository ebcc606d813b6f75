//! Networks with subnets and routes: CRUD plus `add_subnet`, `delete_subnet`, `add_route`,
//! `delete_route`.

use std::net::Ipv4Addr;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::Utc;
use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::{
    JsonBody, ListCtx, action_by_id, check_name, created, labels_json, no_content, ok, parse_id, ts,
};
use crate::catalog;
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::model::{Id, Kind, Network, Route, Subnet};
use crate::world::World;

/// Routes of this module.
pub fn routes() -> Router<TwinState> {
    Router::new()
        .route("/v1/networks", get(networks_list).post(networks_create))
        .route(
            "/v1/networks/{id}",
            get(networks_get)
                .put(networks_update)
                .delete(networks_delete),
        )
        .route(
            "/v1/networks/{id}/actions/add_subnet",
            post(networks_add_subnet),
        )
        .route(
            "/v1/networks/{id}/actions/delete_subnet",
            post(networks_delete_subnet),
        )
        .route(
            "/v1/networks/{id}/actions/add_route",
            post(networks_add_route),
        )
        .route(
            "/v1/networks/{id}/actions/delete_route",
            post(networks_delete_route),
        )
}

/// The API representation of a network.
pub fn render(w: &World, n: &Network) -> Value {
    let servers: Vec<Id> = w
        .servers
        .values()
        .filter(|s| s.private_net.iter().any(|p| p.network == n.id))
        .map(|s| s.id)
        .collect();
    let lbs: Vec<Id> = w
        .load_balancers
        .values()
        .filter(|lb| lb.private_net.iter().any(|(x, _)| *x == n.id))
        .map(|lb| lb.id)
        .collect();
    json!({
        "id": n.id,
        "name": n.name,
        "ip_range": n.ip_range.to_string(),
        "subnets": n.subnets.iter().map(|s| json!({
            "type": s.kind, "ip_range": s.ip_range.to_string(), "network_zone": s.network_zone,
            "gateway": s.gateway.to_string(), "vswitch_id": s.vswitch_id,
        })).collect::<Vec<_>>(),
        "routes": n.routes,
        "servers": servers,
        "load_balancers": lbs,
        "protection": {"delete": false},
        "labels": labels_json(&n.labels),
        "created": ts(n.created),
        "expose_routes_to_vswitch": n.expose_routes_to_vswitch,
    })
}

fn is_private(net: &Ipv4Net) -> bool {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .iter()
        .filter_map(|p| p.parse::<Ipv4Net>().ok())
        .any(|p| p.contains(net))
}

fn parse_net(s: &str, field: &str) -> Result<Ipv4Net, ApiError> {
    let n: Ipv4Net = s
        .parse()
        .map_err(|_| ApiError::invalid_field(field, format!("'{s}' is not an IPv4 CIDR range")))?;
    if n != n.trunc() {
        return Err(ApiError::invalid_field(
            field,
            format!("'{s}' is not a network address"),
        ));
    }
    Ok(n)
}

/// Builds and checks a subnet of `range` (auto-picks a free /24 when `ip_range` is absent).
fn make_subnet(range: Ipv4Net, existing: &[Subnet], spec: &Value) -> Result<Subnet, ApiError> {
    let kind = spec.get("type").and_then(Value::as_str).unwrap_or("");
    if !["cloud", "server", "vswitch"].contains(&kind) {
        return Err(ApiError::invalid_field(
            "type",
            "subnet type must be cloud, server or vswitch",
        ));
    }
    let zone = spec
        .get("network_zone")
        .and_then(Value::as_str)
        .unwrap_or("");
    if catalog::first_location_in_zone(zone).is_none() {
        return Err(ApiError::invalid_field(
            "network_zone",
            format!("unknown network zone '{zone}'"),
        ));
    }
    let overlaps = |n: &Ipv4Net| {
        existing
            .iter()
            .any(|s| s.ip_range.contains(n) || n.contains(&s.ip_range))
    };
    let ip_range = match spec.get("ip_range").and_then(Value::as_str) {
        Some(r) => {
            let n = parse_net(r, "ip_range")?;
            if !range.contains(&n) || n.prefix_len() > 30 {
                return Err(ApiError::invalid_field(
                    "ip_range",
                    "subnet must be inside the network range and at least /30",
                ));
            }
            if overlaps(&n) {
                return Err(ApiError::invalid_field(
                    "ip_range",
                    "subnet overlaps an existing subnet",
                ));
            }
            n
        }
        None => {
            let len = range.prefix_len().max(24);
            range
                .subnets(len)
                .ok()
                .and_then(|mut it| it.find(|n| !overlaps(n)))
                .ok_or_else(|| {
                    ApiError::invalid_field("ip_range", "no free subnet left in the network")
                })?
        }
    };
    let gateway = Ipv4Addr::from(u32::from(range.network()) + 1);
    Ok(Subnet {
        kind: kind.to_string(),
        ip_range,
        network_zone: zone.to_string(),
        gateway,
        vswitch_id: spec.get("vswitch_id").and_then(Value::as_i64),
    })
}

fn parse_route(v: &Value) -> Result<Route, ApiError> {
    let r: Route = serde_json::from_value(v.clone())
        .map_err(|e| ApiError::invalid_field("routes", e.to_string()))?;
    parse_net(&r.destination, "destination")?;
    r.gateway
        .parse::<Ipv4Addr>()
        .map_err(|_| ApiError::invalid_field("gateway", "not an IPv4 address"))?;
    Ok(r)
}

/// `GET /networks` (filters `name`, `label_selector`).
pub async fn networks_list(
    State(st): State<TwinState>,
    ctx: ListCtx,
) -> Result<Response, ApiError> {
    let w = st.world();
    let mut items: Vec<Value> = w.networks.values().map(|n| render(&w, n)).collect();
    ctx.filter_name(&mut items);
    ctx.filter_labels(&w, &mut items)?;
    ctx.sort(&mut items, &["id", "name", "created"])?;
    ctx.paginate("networks", items)
}

/// `GET /networks/{id}`.
pub async fn networks_get(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "network")?;
    let w = st.world();
    let n = w
        .networks
        .get(&id)
        .ok_or_else(|| ApiError::not_found("network"))?;
    Ok(ok(json!({"network": render(&w, n)})))
}

/// `POST /networks`.
pub async fn networks_create(
    State(st): State<TwinState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let name = body.req_str("name")?;
    check_name(&name)?;
    let range = parse_net(&body.req_str("ip_range")?, "ip_range")?;
    if !is_private(&range) || range.prefix_len() > 30 {
        return Err(ApiError::invalid_field(
            "ip_range",
            "ip_range must be an RFC 1918 range",
        ));
    }
    let labels = body.opt_labels()?.unwrap_or_default();
    let subnet_specs: Vec<Value> = body.opt_typed("subnets")?.unwrap_or_default();
    let route_specs: Vec<Value> = body.opt_typed("routes")?.unwrap_or_default();
    let mut subnets = Vec::new();
    for s in &subnet_specs {
        let sub = make_subnet(range, &subnets, s)?;
        subnets.push(sub);
    }
    let routes = route_specs
        .iter()
        .map(parse_route)
        .collect::<Result<Vec<_>, _>>()?;
    let expose = body.opt_bool("expose_routes_to_vswitch")?.unwrap_or(false);
    st.mutate(|w| {
        if w.networks.values().any(|n| n.name == name) {
            return Err(ApiError::uniqueness("name"));
        }
        let id = w.next_id();
        let n = Network {
            id,
            name,
            ip_range: range,
            subnets,
            routes,
            labels,
            created: Utc::now(),
            expose_routes_to_vswitch: expose,
        };
        let v = render(w, &n);
        w.networks.insert(id, n);
        Ok(created(json!({"network": v})))
    })
}

/// `PUT /networks/{id}` (name, labels, expose_routes_to_vswitch).
pub async fn networks_update(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "network")?;
    let name = body.opt_str("name")?;
    let labels = body.opt_labels()?;
    let expose = body.opt_bool("expose_routes_to_vswitch")?;
    st.mutate(|w| {
        if !w.networks.contains_key(&id) {
            return Err(ApiError::not_found("network"));
        }
        if let Some(n) = &name {
            check_name(n)?;
            if w.networks.values().any(|x| &x.name == n && x.id != id) {
                return Err(ApiError::uniqueness("name"));
            }
        }
        let n = w
            .networks
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("network"))?;
        if let Some(x) = name {
            n.name = x;
        }
        if let Some(l) = labels {
            n.labels = l;
        }
        if let Some(e) = expose {
            n.expose_routes_to_vswitch = e;
        }
        let n = w
            .networks
            .get(&id)
            .ok_or_else(|| ApiError::not_found("network"))?;
        Ok(ok(json!({"network": render(w, n)})))
    })
}

/// `DELETE /networks/{id}`: attached servers and load balancers are detached.
pub async fn networks_delete(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "network")?;
    st.mutate(|w| {
        if !w.networks.contains_key(&id) {
            return Err(ApiError::not_found("network"));
        }
        w.ensure_unlocked(Kind::Network, id)?;
        w.networks.remove(&id);
        for s in w.servers.values_mut() {
            s.private_net.retain(|p| p.network != id);
        }
        for lb in w.load_balancers.values_mut() {
            lb.private_net.retain(|(n, _)| *n != id);
        }
        Ok(no_content())
    })
}

fn network_action(
    st: &TwinState,
    id: &str,
    command: &'static str,
    change: impl FnOnce(&mut Network) -> Result<(), ApiError>,
) -> Result<Response, ApiError> {
    let id = parse_id(id, "network")?;
    st.mutate(|w| {
        if !w.networks.contains_key(&id) {
            return Err(ApiError::not_found("network"));
        }
        w.ensure_unlocked(Kind::Network, id)?;
        let n = w
            .networks
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("network"))?;
        change(n)?;
        let secs = w.latency.network_action;
        let a = w.start_action(
            command,
            vec![(id, "network")],
            Some((Kind::Network, id)),
            secs,
            Box::new(|_| Vec::new()),
        );
        Ok(created(json!({"action": action_by_id(w, a)})))
    })
}

/// `POST /networks/{id}/actions/add_subnet`.
pub async fn networks_add_subnet(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    network_action(&st, &id, "add_subnet", |n| {
        let sub = make_subnet(n.ip_range, &n.subnets, &body.0)?;
        n.subnets.push(sub);
        Ok(())
    })
}

/// `POST /networks/{id}/actions/delete_subnet`.
pub async fn networks_delete_subnet(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let range = parse_net(&body.req_str("ip_range")?, "ip_range")?;
    network_action(&st, &id, "delete_subnet", |n| {
        let before = n.subnets.len();
        n.subnets.retain(|s| s.ip_range != range);
        if n.subnets.len() == before {
            return Err(ApiError::invalid_field("ip_range", "subnet not found"));
        }
        Ok(())
    })
}

/// `POST /networks/{id}/actions/add_route`.
pub async fn networks_add_route(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let r = parse_route(&body.0)?;
    network_action(&st, &id, "add_route", |n| {
        if n.routes.contains(&r) {
            return Err(ApiError::invalid_field(
                "destination",
                "route already exists",
            ));
        }
        n.routes.push(r);
        Ok(())
    })
}

/// `POST /networks/{id}/actions/delete_route`.
pub async fn networks_delete_route(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let r = parse_route(&body.0)?;
    network_action(&st, &id, "delete_route", |n| {
        let before = n.routes.len();
        n.routes.retain(|x| x != &r);
        if n.routes.len() == before {
            return Err(ApiError::invalid_field("destination", "route not found"));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_auto_pick_free_24s_and_refuse_overlaps() {
        let range: Ipv4Net = "10.0.0.0/16".parse().unwrap();
        let a = make_subnet(
            range,
            &[],
            &json!({"type":"cloud","network_zone":"eu-central"}),
        )
        .unwrap();
        assert_eq!(a.ip_range.to_string(), "10.0.0.0/24");
        assert_eq!(a.gateway, Ipv4Addr::new(10, 0, 0, 1));
        let b = make_subnet(
            range,
            std::slice::from_ref(&a),
            &json!({"type":"cloud","network_zone":"eu-central"}),
        )
        .unwrap();
        assert_eq!(b.ip_range.to_string(), "10.0.1.0/24");
        let bad = make_subnet(
            range,
            &[a],
            &json!({"type":"cloud","network_zone":"eu-central","ip_range":"10.0.0.0/25"}),
        );
        assert!(bad.is_err());
        assert!(make_subnet(range, &[], &json!({"type":"cloud","network_zone":"mars"})).is_err());
        assert!(
            make_subnet(
                range,
                &[],
                &json!({"type":"cloud","network_zone":"eu-central","ip_range":"10.1.0.0/24"})
            )
            .is_err()
        );
    }

    #[test]
    fn private_ranges() {
        assert!(is_private(&"10.0.0.0/16".parse().unwrap()));
        assert!(is_private(&"172.20.0.0/16".parse().unwrap()));
        assert!(!is_private(&"8.8.0.0/16".parse().unwrap()));
    }
}
